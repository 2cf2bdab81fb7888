//! `cargo xtask test`: everything, in the order that fails fastest; the virtual backplane's suites run
//! beside the host steps (they mostly wait, the host steps keep the cores busy).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

/// Portable crates that also run big-endian (PowerPC Linux user mode under qemu-ppc).
const BIG_ENDIAN_CRATES: &[&str] = &[
    "bpnet-contract",
    "bpnet-ring",
    "bpnet-services",
    "bpnet-image",
    "bpnet-tftp",
    "bpnet-control",
    "norflash",
    "mpc8349",
    "mpc8349-facts",
];
/// Crates that only build for the firmware target; linted there, every library and binary of each:
/// the firmware, its test images and the boot stage.
const FIRMWARE_CRATES: &[&str] = &["bpnet-firmware", "bpnet-boot", "e300", "mpc8349", "mpc8349-facts", "mpc8349emds"];

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--backplane") {
        util::no_more(&args)?;
        return crate::backplane::test();
    }
    util::no_more(&args)?;
    let started = Instant::now();
    let mut steps: Vec<(&str, f64)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        eprintln!("xtask: test: {name}");
        let t = Instant::now();
        f()?;
        steps.push((name, t.elapsed().as_secs_f64()));
        Ok(())
    };

    step("set-up", &mut || crate::setup::ensure())?;
    step("generated C header is current", &mut || crate::header::check(&util::root()).map_err(util::Error::Failed))?;
    step("formatting", &mut || util::run(util::host_cargo().args(["fmt", "--all", "--check"]), "cargo fmt --check"))?;
    let mut test_env = Vec::new();
    let mut firmware_elf = PathBuf::new();
    let mut ring_bench = PathBuf::new();
    // ring-bench is only run by the benchmarks; built here so the image cannot rot.
    step(
        "firmware builds (release + signed image, fault-test, panic-test, selftest, ring-bench, boot stage)",
        &mut || {
            firmware_elf = firmware::build(Variant::Release)?;
            test_env = firmware::test_env(&firmware_elf)?;
            ring_bench = firmware::build(Variant::RingBench)?;
            Ok(())
        },
    )?;
    let module = util::root().join("host-driver/bpnet");
    step("kernel module build (make -C host-driver/bpnet)", &mut || {
        util::run(Command::new("make").arg("-C").arg(&module).arg("-j2"), "bpnet.ko build")
    })?;
    step("kernel module: sparse (make C=2), no warnings from bpnet's files", &mut || sparse(&module))?;
    step("kernel module: checkpatch.pl --strict, clean", &mut || checkpatch(&module))?;
    let mut suites = None;
    step("virtual backplane: emulator, guest image and module built", &mut || {
        suites = Some(crate::backplane::test_prepared()?);
        Ok(())
    })?;
    let suites = suites.ok_or_else(|| Error::Failed("the virtual backplane was not prepared".into()))?;

    // The suites mostly wait (guest timers, the agents' virtual time, proxy round trips): they run
    // beside the host steps, which keep the cores busy, instead of after them.
    let backplane_started = Instant::now();
    let (host, backplane) = std::thread::scope(|scope| {
        let backplane = scope.spawn(suites);
        let host = (|| -> Result<()> {
            step("firmware lints (clippy, PowerPC target: firmware, test images and boot stage)", &mut || {
                firmware_clippy()
            })?;
            step("host lints (clippy)", &mut || {
                util::run(
                    util::host_cargo().args(["clippy", "--all-targets", "-j2", "--", "-D", "warnings"]),
                    "host clippy",
                )
            })?;
            step("host tests (x86: unit, property, emulator, firmware on the emulator)", &mut || {
                util::run(
                    util::host_cargo().args(["test", "-j2"]).envs(test_env.iter().map(|(var, path)| (var, path))),
                    "host tests",
                )
            })?;
            step("big-endian tests (PowerPC under qemu-ppc)", &mut || {
                let mut cmd = util::debian_cargo();
                cmd.args(["test", "-j2", "--target", "powerpc-unknown-linux-gnu", "-Zbuild-std=std,panic_unwind"])
                    .env("CARGO_TARGET_POWERPC_UNKNOWN_LINUX_GNU_LINKER", "powerpc-linux-gnu-gcc")
                    .env("CARGO_TARGET_POWERPC_UNKNOWN_LINUX_GNU_RUNNER", "qemu-ppc -L /usr/powerpc-linux-gnu");
                for c in BIG_ENDIAN_CRATES {
                    cmd.args(["-p", c]);
                }
                util::run(&mut cmd, "big-endian tests")
            })?;
            step("data-path benchmark run (bpnet-netbench) against the committed baseline", &mut || {
                // The run fails by itself if a transfer stalls or arrives corrupted; its figures are exact
                // counts and virtual time, so the gate compares them with the baseline on any machine.
                let emulator = crate::emu::build()?;
                let net = crate::bench::netbench(&emulator, &firmware_elf, &ring_bench, None)?;
                eprintln!("xtask: test: bpnet-netbench: {} figures", net.fields.len());
                crate::baseline::check(&net)
            })
        })();
        let backplane = backplane.join().unwrap_or_else(|_| Err(Error::Failed("the backplane suites panicked".into())));
        (host, backplane)
    });
    steps.push(("virtual backplane suites (beside the host steps)", backplane_started.elapsed().as_secs_f64()));
    // Both are waited for, so a failing host step leaves no rig running; the host's error first.
    host?;
    backplane?;

    eprintln!("xtask: test: summary");
    for (name, secs) in &steps {
        eprintln!("  {secs:7.1} s  {name}");
    }
    eprintln!("  {:7.1} s  total", started.elapsed().as_secs_f64());
    println!("xtask test: {} passed, 0 failed", steps.len());
    Ok(ExitCode::SUCCESS)
}

/// Clippy over the firmware crates for the PowerPC target: cargo's default targets, every library and
/// binary, so every program is linted.
fn firmware_clippy() -> Result<()> {
    let root = util::root();
    let mut cmd = util::debian_cargo();
    cmd.args(["clippy", "--profile", "firmware", "-j2"])
        .arg("--target")
        .arg(root.join("firmware").join(format!("{}.json", firmware::TARGET)))
        .args([
            "-Zbuild-std=core,compiler_builtins",
            "-Zbuild-std-features=compiler-builtins-mem",
            "-Zjson-target-spec",
        ])
        .env("DEFMT_LOG", "info")
        .env(firmware::PUBLIC_KEY_VAR, firmware::public_key()?);
    for c in FIRMWARE_CRATES {
        cmd.args(["-p", c]);
    }
    cmd.args(["--", "-D", "warnings"]);
    util::run(&mut cmd, "firmware clippy")
}

/// Run sparse over every file of the module (`C=2`: also the ones already built; `C=1` would check only
/// what it recompiles) and refuse any warning or error in bpnet's own files, the module's and the
/// contract header's. The kernel's own headers are not ours to fix and are not counted.
fn sparse(module: &Path) -> Result<()> {
    crate::setup::ensure()?;
    let out = Command::new("make")
        .arg("-C")
        .arg(module)
        .args(["C=2", "-j2"])
        .output()
        .map_err(|e| Error::Io("starting make C=2".into(), e))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(Error::Failed(format!("make -C {} C=2 failed ({}):\n{text}", module.display(), out.status)));
    }
    let ours = util::root().join("host-driver");
    let ours = ours.to_string_lossy();
    let findings = sparse_findings(&text, &ours);
    let checked = text.lines().filter(|l| l.trim_start().starts_with("CHECK")).count();
    if checked == 0 {
        return Err(Error::Failed(format!("make C=2 ran sparse on no file:\n{text}")));
    }
    if findings.is_empty() {
        eprintln!("xtask: test: sparse: {checked} files checked, no warnings");
        Ok(())
    } else {
        Err(Error::Failed(format!("sparse: {} finding(s) in bpnet's files:\n{}", findings.len(), findings.join("\n"))))
    }
}

/// The warning and error lines of a sparse (or compiler) run that point into `ours`.
fn sparse_findings<'a>(text: &'a str, ours: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(ours) && (l.contains(": warning:") || l.contains(": error:"))).collect()
}

/// The module's sources: every .c and .h in its directory but kbuild's generated `*.mod.c`.
fn module_sources(module: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(module).map_err(|e| Error::Io(format!("reading {}", module.display()), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c" || x == "h"))
        .filter(|p| !p.to_string_lossy().ends_with(".mod.c"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Failed(format!("{}: no .c or .h files", module.display())));
    }
    Ok(files)
}

/// checkpatch.pl --strict on every source of the module and the generated contract header it
/// includes: 0 errors, 0 warnings, 0 checks in each.
fn checkpatch(module: &Path) -> Result<()> {
    let script = crate::setup::checkpatch()?;
    let mut files = module_sources(module)?;
    files.push(util::root().join(crate::header::PATH));
    let out = Command::new("perl")
        .arg(&script)
        .args(["--strict", "--no-tree", "--no-summary", "--terse", "--show-types", "--file"])
        .args(&files)
        .current_dir(module)
        .output()
        .map_err(|e| Error::Io(format!("starting {}", script.display()), e))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let findings: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if out.status.success() && findings.is_empty() {
        eprintln!("xtask: test: checkpatch: {} files, 0 errors, 0 warnings, 0 checks", files.len());
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "checkpatch.pl --strict ({}): {} finding(s):\n{}",
            out.status,
            findings.len(),
            findings.join("\n")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_findings_are_ours_only() {
        let text = "  CHECK   /r/host-driver/bpnet/bpnet_netdev.c\n\
                    /r/host-driver/bpnet/bpnet_netdev.c:12:5: warning: incorrect type in assignment\n\
                    /usr/src/linux-headers-6.1.0-56-common/include/linux/x.h:3:1: warning: theirs\n\
                    /r/host-driver/include/bpnet_contract.h:4:2: error: bad constant expression\n";
        assert_eq!(
            sparse_findings(text, "/r/host-driver"),
            [
                "/r/host-driver/bpnet/bpnet_netdev.c:12:5: warning: incorrect type in assignment",
                "/r/host-driver/include/bpnet_contract.h:4:2: error: bad constant expression"
            ]
        );
        assert!(sparse_findings("  CHECK   /r/host-driver/bpnet/a.c\n", "/r/host-driver").is_empty());
    }
}
