//! `bpnet-powercut`: cut the power at every flash step of a firmware update and check that the board
//! always starts a verified image (see the `powercut` module).

use std::path::PathBuf;
use std::process::ExitCode;

use bpnet_emu::powercut;

const USAGE: &str = "\
usage: bpnet-powercut --boot ELF --firmware ELF --image IMG --key SECRET [--threads N] [--json]

The real boot stage starts the real firmware from slot A of the emulated board's flash; the host
model sends a new signed image to the firmware's control service (FLASH); the power is cut half-way
through each erase and program (a write-buffer page, or a word on a part without a buffer) of that
update, and of the first boot after it, in turn, one run per step, and the board must come back up on
a verified image: the old one, or the new one once the update recorded it. Exit 0 only if every cut
point survived.

  --boot ELF       the boot stage (bpnet-boot.elf)
  --firmware ELF   the firmware (bpnet-firmware.elf, for its log) whose signed image is --image
  --image IMG      the signed firmware image slot A holds (bpnet-firmware.img)
  --key SECRET     the secret key the firmware trusts, to sign the new image with
  --threads N      runs at once (default: the machine's cores)
  --json           also print the counts as one JSON object on the last line
  -h, --help       this text
";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bpnet-powercut: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let (mut boot, mut firmware, mut image, mut key, mut threads, mut json) = (None, None, None, None, None, false);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--boot" => boot = Some(PathBuf::from(value("--boot")?)),
            "--firmware" => firmware = Some(PathBuf::from(value("--firmware")?)),
            "--image" => image = Some(PathBuf::from(value("--image")?)),
            "--key" => key = Some(PathBuf::from(value("--key")?)),
            "--threads" => {
                let text = value("--threads")?;
                threads = Some(text.parse::<usize>().ok().filter(|&n| n > 0).ok_or(format!("--threads {text}"))?)
            }
            "--json" => json = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(true);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let need = |v: Option<PathBuf>, name: &str| v.ok_or_else(|| format!("{name} is required\n{USAGE}"));
    let setup = powercut::setup_from_files(
        &need(boot, "--boot")?,
        &need(firmware, "--firmware")?,
        &need(image, "--image")?,
        &need(key, "--key")?,
    )?;
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let every = |done: u64, all: u64| {
        if done.is_multiple_of(50) || done == all {
            eprintln!("bpnet-powercut: {done}/{all} cut points run");
        }
    };
    let report = powercut::run(&setup, powercut::Cuts::Every, threads, &every)?;
    println!(
        "update of a {}-byte image: {} flash operations before it, {} in it, {} in the first boot after it",
        setup.new_image.len(),
        report.before,
        report.update,
        report.first_boot
    );
    println!(
        "power cut at each step: {} tested, {} survived ({} came back on the old image, {} on the new)",
        report.tested, report.survived, report.old, report.new
    );
    for failure in &report.failures {
        println!("FAILED: {failure}");
    }
    if json {
        println!(
            "{{\"powercut_points_tested\":{},\"powercut_points_survived\":{},\"powercut_update_steps\":{}}}",
            report.tested, report.survived, report.steps
        );
    }
    Ok(report.failures.is_empty() && report.tested == report.steps && report.survived == report.tested)
}
