//! `bpnet-emu-fuzz`: the hostile-host fuzz target ([`bpnet_emu::fuzz`]) as a command: runs the real
//! firmware on the emulated board against inputs read from files and directories, or against random
//! inputs for a number of runs or a time. Coverage-less: each input is independent, nothing steers the
//! generator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bpnet_emu::fuzz::{self, Options, Rng};

const USAGE: &str = "\
usage: bpnet-emu-fuzz --firmware ELF [options] [INPUT...]

Runs the bpnet agent firmware on the emulated board against a hostile host. Each input (a file, or
every file in a directory) is decoded into host actions: BAR writes of header fields, descriptors
with bad addresses, lengths, flags and ids, producer and event indexes out of range, torn updates,
doorbells, host_state flips, generation changes, status blocks outside host RAM, mixed with valid
traffic. After each input the firmware must not have halted, faulted or hung, its DMA must have
stayed inside its RAM and the outbound window, host RAM outside the status block and posted buffers
must be untouched, every bad input must be counted, and a fresh host initialisation must bring the
link back with working ARP and ping.

With no INPUT, random inputs are generated (--runs and/or --time; default 100 runs).

This is coverage-less fuzzing: cargo-fuzz/libFuzzer would need a nightly toolchain, which this
machine does not have. Inputs are plain byte files, so a corpus from any fuzzer can be replayed here.

options:
  --firmware ELF     the firmware image (default: env BPNET_FIRMWARE_ELF)
  --runs N           random inputs to try
  --time SECONDS     stop generating after this long
  --seed N           seed of the generator (default 1)
  --max-len N        longest random input in bytes (default 256)
  --max-actions N    most actions decoded from one input (default 24)
  --log-ring         also let the host write the log ring's header (the firmware trusts its capacity)
  --save-dir DIR     write each failing random input there (fuzz-<seed>-<n>.bin)
  -v, --verbose      print a line per input
  -h, --help         this text
exit status: 0 all inputs passed, 1 an input failed, 2 usage or set-up error";

struct Args {
    firmware: Option<PathBuf>,
    runs: Option<u64>,
    time: Option<Duration>,
    seed: u64,
    max_len: usize,
    options: Options,
    save_dir: Option<PathBuf>,
    verbose: bool,
    inputs: Vec<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        firmware: std::env::var_os("BPNET_FIRMWARE_ELF").map(PathBuf::from),
        runs: None,
        time: None,
        seed: 1,
        max_len: 256,
        options: Options::default(),
        save_dir: None,
        verbose: false,
        inputs: Vec::new(),
    };
    let mut it = std::env::args_os().skip(1);
    let number = |v: Option<std::ffi::OsString>, what: &str| -> Result<u64, String> {
        v.and_then(|s| s.to_str().and_then(|s| s.parse().ok())).ok_or_else(|| format!("{what} needs a number"))
    };
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-h" | "--help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Some("--firmware") => args.firmware = Some(it.next().ok_or("--firmware needs a path")?.into()),
            Some("--runs") => args.runs = Some(number(it.next(), "--runs")?),
            Some("--time") => args.time = Some(Duration::from_secs(number(it.next(), "--time")?)),
            Some("--seed") => args.seed = number(it.next(), "--seed")?,
            Some("--max-len") => args.max_len = number(it.next(), "--max-len")? as usize,
            Some("--max-actions") => args.options.max_actions = number(it.next(), "--max-actions")? as usize,
            Some("--log-ring") => args.options.log_ring = true,
            Some("--save-dir") => args.save_dir = Some(it.next().ok_or("--save-dir needs a path")?.into()),
            Some("-v" | "--verbose") => args.verbose = true,
            Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => args.inputs.push(arg.into()),
        }
    }
    Ok(args)
}

/// Every file named, directories expanded one level, in name order.
fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn one(elf: &[u8], name: &str, input: &[u8], args: &Args) -> bool {
    let start = Instant::now();
    match fuzz::run_input(elf, input, args.options) {
        Ok(report) => {
            if args.verbose {
                println!(
                    "ok   {name}: {} actions ({} checked), injected {} bad descriptors, {} bad indexes, {} bad host \
                     configs, {} provoked transfer errors; {:.2} s",
                    report.actions,
                    report.checked,
                    report.bad_descriptors,
                    report.bad_indexes,
                    report.bad_host_config,
                    report.provoked_transfer_errors,
                    start.elapsed().as_secs_f64()
                );
            }
            true
        }
        Err(failure) => {
            println!("FAIL {name}: {failure}");
            println!("actions: {:#?}", fuzz::decode(input, args.options));
            false
        }
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bpnet-emu-fuzz: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(firmware) = args.firmware.as_deref() else {
        eprintln!("bpnet-emu-fuzz: no firmware: --firmware ELF or BPNET_FIRMWARE_ELF\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let elf = match std::fs::read(firmware) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bpnet-emu-fuzz: {}: {e}", Path::new(firmware).display());
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0u64, 0u64);
    let started = Instant::now();
    if !args.inputs.is_empty() {
        let files = match files(&args.inputs) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("bpnet-emu-fuzz: {e}");
                return ExitCode::from(2);
            }
        };
        for f in &files {
            let input = match std::fs::read(f) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("bpnet-emu-fuzz: {}: {e}", f.display());
                    return ExitCode::from(2);
                }
            };
            if one(&elf, &f.display().to_string(), &input, &args) {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    } else {
        let runs = match (args.runs, args.time) {
            (None, None) => Some(100),
            (runs, _) => runs,
        };
        let mut rng = Rng::new(args.seed);
        let mut n = 0u64;
        while runs.is_none_or(|r| n < r) && args.time.is_none_or(|t| started.elapsed() < t) {
            let input = rng.input(args.max_len);
            let name = format!("seed {} input {n}", args.seed);
            if one(&elf, &name, &input, &args) {
                passed += 1;
            } else {
                failed += 1;
                if let Some(dir) = &args.save_dir {
                    let path = dir.join(format!("fuzz-{}-{n}.bin", args.seed));
                    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &input)) {
                        eprintln!("bpnet-emu-fuzz: {}: {e}", path.display());
                    } else {
                        println!("saved {}", path.display());
                    }
                }
            }
            n += 1;
        }
    }
    println!("bpnet-emu-fuzz: {passed} passed, {failed} failed in {:.1} s", started.elapsed().as_secs_f64());
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
