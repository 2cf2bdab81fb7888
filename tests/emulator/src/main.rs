//! `bpnet-emu`: run a firmware ELF on the emulated MPC8349EMDS board.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bpnet_emu::{Board, Config, Outcome, Output, CORE_HZ};

const USAGE: &str = "\
usage: bpnet-emu --firmware ELF [--max-insns N] [--ram-file PATH] [--quiet-log] [--summary-json PATH]

Runs a bpnet agent firmware ELF (32-bit big-endian PowerPC, linked for the board's RAM) on an emulated
MPC8349EMDS board, handed over as U-Boot's `go` would. Console output (UART0) goes to stdout verbatim,
decoded defmt log lines go to stdout as `log: ...`, a one-line summary goes to stderr.

options:
  --firmware ELF     the firmware image to run (required)
  --max-insns N      stop after exactly N instructions (default: no limit); accepts 1e9-style and _ separators
  --ram-file PATH    back the board's 256 MiB of RAM with PATH, shared, so other processes can map it
                     (created if missing, contents kept; default: a temporary file)
  --quiet-log        do not print decoded log lines
  --summary-json PATH  also write the summary as one JSON object: outcome (idle, instruction_limit,
                     halted, unmodelled, unmapped), message, exit_code, instructions,
                     skipped_instructions (waited in `b .`), virtual_ns, wall_ns, resets
  -h, --help         this text

exit status:
  0  the firmware went idle, or the instruction limit was reached without a fault
  1  the firmware halted (after a fault or a panic)
  2  the firmware used an unmodelled register or touched an unmapped address
  3  bad firmware file or bad usage
";

struct Args {
    firmware: PathBuf,
    max_insns: Option<u64>,
    ram_file: Option<PathBuf>,
    quiet_log: bool,
    summary_json: Option<PathBuf>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_count(text: &str) -> Option<u64> {
    let text = text.replace('_', "");
    if let Some((mantissa, exp)) = text.split_once(['e', 'E']) {
        let mantissa: u64 = mantissa.parse().ok()?;
        let exp: u32 = exp.parse().ok()?;
        return mantissa.checked_mul(10u64.checked_pow(exp)?);
    }
    text.parse().ok()
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut firmware = None;
    let mut max_insns = None;
    let mut ram_file = None;
    let mut quiet_log = false;
    let mut summary_json = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs {what}"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--firmware" => firmware = Some(PathBuf::from(value("a file")?)),
            "--max-insns" => {
                let v = value("a number")?;
                max_insns = Some(parse_count(&v).ok_or(format!("--max-insns: not a number: {v}"))?);
            }
            "--ram-file" => ram_file = Some(PathBuf::from(value("a path")?)),
            "--quiet-log" => quiet_log = true,
            "--summary-json" => summary_json = Some(PathBuf::from(value("a path")?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let firmware = firmware.ok_or("--firmware is required")?;
    Ok(Parsed::Run(Args {
        firmware,
        max_insns,
        ram_file,
        quiet_log,
        summary_json,
    }))
}

fn virtual_time(ps: u64) -> String {
    let s = ps as f64 * 1e-12;
    if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("bpnet-emu: error: {message}");
    ExitCode::from(3)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("bpnet-emu: error: {e}\n{USAGE}");
            return ExitCode::from(3);
        }
    };
    let name = args.firmware.display().to_string();
    let elf = match std::fs::read(&args.firmware) {
        Ok(bytes) => bytes,
        Err(e) => return fail(format_args!("{name}: {e}")),
    };
    let mut board = match Board::new(Config {
        ram_file: args.ram_file,
        max_instructions: args.max_insns,
    }) {
        Ok(board) => board,
        Err(e) => return fail(e),
    };
    let info = match board.load_elf(&elf) {
        Ok(info) => info,
        Err(e) => return fail(format_args!("{name}: {e}")),
    };
    for note in &info.notes {
        eprintln!("bpnet-emu: note: {name}: {note}");
    }
    let quiet_log = args.quiet_log;
    board.set_output(move |out| {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (e.g. piped into `head`) must not stop the emulation.
        let _ = match out {
            Output::Console(bytes) => stdout.write_all(bytes),
            Output::Log(line) if !quiet_log => writeln!(stdout, "{line}"),
            Output::Log(_) => Ok(()),
        };
        let _ = stdout.flush();
    });

    let started = Instant::now();
    let outcome = board.run();
    let host = started.elapsed().as_secs_f64();
    let instructions = board.instructions();
    let headline = match &outcome {
        Outcome::Idle { .. } => "idle".to_string(),
        Outcome::InstructionLimit => "instruction limit reached".to_string(),
        other => other.to_string(),
    };
    // Host speed counts emulated instructions only, not time skipped while the core waited in `b .`.
    let emulated = instructions - board.skipped_instructions();
    let mips = if host > 0.0 {
        emulated as f64 / host / 1e6
    } else {
        0.0
    };
    let resets = match board.resets() {
        0 => String::new(),
        n => format!(", {n} board reset(s)"),
    };
    eprintln!(
        "bpnet-emu: {headline} after {instructions} instructions ({} virtual, {:.2} MHz core{resets}); host {mips:.1} MIPS",
        virtual_time(board.virtual_time_ps()),
        CORE_HZ / 1e6
    );
    if let Some(path) = &args.summary_json {
        let json = format!(
            "{{\"outcome\":\"{}\",\"exit_code\":{},\"instructions\":{instructions},\
             \"skipped_instructions\":{},\"virtual_ns\":{},\"wall_ns\":{},\"resets\":{},\"message\":\"{}\"}}\n",
            outcome.kind(),
            outcome.exit_code(),
            board.skipped_instructions(),
            board.virtual_time_ns(),
            (host * 1e9) as u64,
            board.resets(),
            json_escape(&outcome.to_string()),
        );
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("bpnet-emu: error: {}: {e}", path.display());
        }
    }
    ExitCode::from(outcome.exit_code() as u8)
}

/// Escape a string for a JSON string literal.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let Ok(Parsed::Run(a)) = parse(&["--firmware", "f.elf", "--max-insns=1e6", "--quiet-log"])
        else {
            panic!()
        };
        assert_eq!(
            (a.firmware, a.max_insns, a.quiet_log),
            (PathBuf::from("f.elf"), Some(1_000_000), true)
        );
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--firmware"]).is_err());
        assert!(parse(&["--firmware", "x", "--bogus"]).is_err());
        assert_eq!(parse_count("2_000"), Some(2000));
        assert_eq!(parse_count("x"), None);
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
