//! The board emulator (`tests/emulator`, binary `bpnet-emu`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

/// Build the emulator and its companion binaries (`bpnet-netbench`, `bpnet-powercut`, `bpnet-emu-fuzz`)
/// and return the emulator's path. The dev profile: the workspace builds the emulator and every dependency at
/// opt-level 2 there (as fast as release, measured), and the host tests already built it, so Unicorn
/// is compiled once, not once per profile.
pub fn build() -> Result<PathBuf> {
    crate::setup::ensure()?;
    util::run(util::host_cargo().args(["build", "-p", "bpnet-emu", "--bins", "-j2"]), "emulator build")?;
    Ok(util::root().join("target/debug/bpnet-emu"))
}

pub fn command(emulator: &Path, elf: &Path) -> Command {
    let mut cmd = Command::new(emulator);
    cmd.arg("--firmware").arg(elf);
    cmd
}

/// What one run reported about itself (`--summary-json`).
#[derive(Debug, Default)]
pub struct Summary {
    pub outcome: String,
    pub instructions: u64,
    pub virtual_ns: u64,
    pub wall_ns: u64,
    /// Benchmark markers: (value, instructions, virtual picoseconds) per write to UART1's scratch.
    pub markers: Vec<(u64, u64, u64)>,
}

impl Summary {
    pub fn mips(&self) -> f64 {
        self.instructions as f64 / (self.wall_ns.max(1) as f64 / 1e9) / 1e6
    }
}

/// Run the emulator quietly and read its summary.
pub fn run_for_summary(emulator: &Path, elf: &Path, extra: &[&str]) -> Result<Summary> {
    let summary_path = util::root().join("target/emu-summary.json");
    let _ = std::fs::remove_file(&summary_path);
    let out = command(emulator, elf)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .map_err(|e| Error::Io("starting the emulator".into(), e))?;
    let text = std::fs::read_to_string(&summary_path).map_err(|e| {
        Error::Io(format!("emulator left no summary (stderr: {})", String::from_utf8_lossy(&out.stderr).trim()), e)
    })?;
    Ok(Summary {
        outcome: json_str(&text, "outcome").unwrap_or_default(),
        instructions: json_u64(&text, "instructions").unwrap_or(0),
        virtual_ns: json_u64(&text, "virtual_ns").unwrap_or(0),
        wall_ns: json_u64(&text, "wall_ns").unwrap_or(0),
        markers: json_markers(&text),
    })
}

/// Minimal readers for the emulator's flat summary object (xtask stays dependency-free so it
/// builds in a second).
fn json_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\""))?;
    let rest = text[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// `"markers":[[v,i,p],...]`: every run of three numbers inside the array.
fn json_markers(text: &str) -> Vec<(u64, u64, u64)> {
    let Some(at) = text.find("\"markers\"") else { return Vec::new() };
    let rest = &text[at..];
    let Some(open) = rest.find('[') else { return Vec::new() };
    let end = rest.find("]]").map(|e| e + 2).unwrap_or(rest.len());
    let numbers: Vec<u64> = rest[open..end]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    numbers.chunks_exact(3).map(|c| (c[0], c[1], c[2])).collect()
}

fn json_u64(text: &str, key: &str) -> Option<u64> {
    json_field(text, key)?.parse().ok()
}

fn json_str(text: &str, key: &str) -> Option<String> {
    Some(json_field(text, key)?.trim_matches('"').to_string())
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    let elf = util::take_value(&mut args, "--firmware")?;
    let max = util::take_value(&mut args, "--max-insns")?;
    let selftest = util::take_flag(&mut args, "--selftest");
    let from_flash = util::take_flag(&mut args, "--from-flash");
    util::no_more(&args)?;
    if from_flash && selftest {
        return Err(Error::Usage("--from-flash starts the signed firmware image, not the self-test".into()));
    }
    let elf = match (elf, selftest) {
        (Some(path), _) => PathBuf::from(path),
        (None, true) => firmware::build(Variant::SelfTest)?,
        (None, false) => firmware::build(Variant::Release)?,
    };
    let emulator = build()?;
    let mut cmd = command(&emulator, &elf);
    if let Some(n) = max {
        cmd.args(["--max-insns", &n]);
    }
    if from_flash {
        // Power on into the boot stage, slot A holding the ELF's signed image (as `cargo xtask firmware`
        // writes it beside the ELF).
        let image = firmware::image(&elf);
        if !image.exists() {
            return Err(Error::Failed(format!("{}: no signed image beside the ELF", image.display())));
        }
        let boot = firmware::build(Variant::BootStage)?;
        cmd.arg("--boot").arg(boot).arg("--provision-slot").arg(format!("A={}", image.display()));
    }
    if !selftest {
        let status = util::status(&mut cmd, "emulator")?;
        return Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8));
    }
    run_selftest(cmd)?;
    Ok(ExitCode::SUCCESS)
}

/// Run a self-test image (its console shown as it comes) and insist on every check passing: the
/// emulator's exit status alone says only that the firmware reached its idle loop.
pub fn run_selftest(mut cmd: Command) -> Result<()> {
    // The self-test's doorbell check needs a host peer: the emulator's echo host plays it.
    cmd.arg("--echo-host").stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Io("running the emulator".into(), e))?;
    let mut verdict = None;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(std::result::Result::ok) {
            println!("{line}");
            if line.starts_with("selftest: ") && line.contains(" passed, ") {
                verdict = Some(line);
            }
        }
    }
    let status = child.wait().map_err(|e| Error::Io("waiting for the emulator".into(), e))?;
    match verdict {
        Some(line) if line.ends_with(" 0 failed") && status.success() => Ok(()),
        Some(line) => Err(Error::Failed(format!("self-test: {}", line.trim_start_matches("selftest: ")))),
        None => Err(Error::Failed(format!("self-test did not finish (emulator {status})"))),
    }
}
