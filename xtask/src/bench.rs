//! `cargo xtask bench`: figures from virtual time and exact counts on the board emulator, plus the
//! emulator's own speed on this machine (the one wall-clock figure, labelled as such).

use std::process::ExitCode;

use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    let json = util::take_flag(&mut args, "--json");
    util::no_more(&args)?;
    let elf = firmware::build(Variant::CpuBench)?;
    let emulator = crate::emu::build()?;
    let text_bytes = firmware::text_bytes(&firmware::build(Variant::Release)?)?;

    let run = crate::emu::run_for_summary(&emulator, &elf, &[])?;
    if run.outcome != "idle" {
        return Err(Error::Failed(format!("cpu-bench firmware ended `{}`, not idle", run.outcome)));
    }
    let boot = crate::emu::run_for_summary(&emulator, &firmware::build(Variant::Release)?, &[])?;

    println!(
        "bpnet benchmarks (virtual time: e300 core at 533.33 MHz, one instruction per cycle; see docs/ARCHITECTURE.md)"
    );
    println!("  firmware .text                  {text_bytes} bytes");
    println!(
        "  boot to idle                    {} instructions, {:.1} µs virtual",
        boot.instructions,
        boot.virtual_ns as f64 / 1e3
    );
    println!(
        "  emulator speed (wall clock)     {:.1} MIPS ({} instructions in {:.2} s on this machine)",
        run.mips(),
        run.instructions,
        run.wall_ns as f64 / 1e9
    );
    if json {
        println!(
            "{{\"emu_mips\":{:.1},\"firmware_text_bytes\":{},\"boot_instructions\":{},\"boot_virtual_us\":{:.1}}}",
            run.mips(),
            text_bytes,
            boot.instructions,
            boot.virtual_ns as f64 / 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
