//! `cargo xtask bench`: figures from virtual time and exact counts on the board emulator, plus the
//! emulator's own speed on this machine (the one wall-clock figure, labelled as such).

use std::process::ExitCode;

use crate::emu::Summary;
use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

/// Sustained rates of the modelled 32-bit/33 MHz bus (shared/bus-model.md), bytes per second:
/// back-to-back 256-byte bursts of 64 data clocks plus 7 (write) or 21 (read) overhead clocks,
/// which is what "≈ 120 MB/s" and "≈ 100 MB/s" are in the model's own terms.
const PCI_CLOCK_HZ: f64 = 100e6 / 3.0;
const WRITE_RATE: f64 = PCI_CLOCK_HZ * 256.0 / 71.0;
const READ_RATE: f64 = PCI_CLOCK_HZ * 256.0 / 85.0;
/// Chained transfer sizes the self-test measures, in marker order (firmware/app/src/selftest.rs).
const CHAIN_SIZES: [u64; 4] = [64, 1500, 9000, 65536];

fn marker(run: &Summary, id: u64) -> Result<(u64, u64)> {
    run.markers
        .iter()
        .find(|m| m.0 == id)
        .map(|m| (m.1, m.2))
        .ok_or_else(|| Error::Failed(format!("self-test left no benchmark marker {id:#x}")))
}

/// Bytes the self-test moves per chained run: max(4, 256 KiB / size) descriptors of `size`.
fn chain_bytes(size: u64) -> u64 {
    size * (256 * 1024 / size).max(4)
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    let json = util::take_flag(&mut args, "--json");
    util::no_more(&args)?;
    let emulator = crate::emu::build()?;
    let release = firmware::build(Variant::Release)?;
    let text_bytes = firmware::text_bytes(&release)?;

    let cpu = crate::emu::run_for_summary(&emulator, &firmware::build(Variant::CpuBench)?, &[])?;
    if cpu.outcome != "idle" {
        return Err(Error::Failed(format!("cpu-bench firmware ended `{}`, not idle", cpu.outcome)));
    }
    let boot = crate::emu::run_for_summary(&emulator, &release, &[])?;
    let st = crate::emu::run_for_summary(&emulator, &firmware::build(Variant::SelfTest)?, &["--echo-host"])?;

    let (submit_start, _) = marker(&st, 0x01)?;
    let (submit_end, _) = marker(&st, 0x02)?;
    // Two marker stores and their address set-up sit inside the span; they are not submission work.
    let submit_insns = submit_end.saturating_sub(submit_start);
    let mut fractions = Vec::new();
    for (i, &size) in CHAIN_SIZES.iter().enumerate() {
        let i = i as u64;
        let bytes = chain_bytes(size) as f64;
        let span = |a: u64, b: u64| -> Result<f64> {
            let (_, t0) = marker(&st, a)?;
            let (_, t1) = marker(&st, b)?;
            Ok((t1.saturating_sub(t0)) as f64 / 1e12)
        };
        let write = bytes / span(0x10 + i, 0x20 + i)? / WRITE_RATE;
        let read = bytes / span(0x30 + i, 0x40 + i)? / READ_RATE;
        fractions.push((size, write, read));
    }

    println!("bpnet benchmarks");
    println!("  (virtual time: e300 core 533.33 MHz, one instruction per cycle; DMA over the modelled");
    println!(
        "   32-bit/33 MHz PCI bus: {:.1} MB/s sustained into host RAM, {:.1} MB/s from it; shared/bus-model.md)",
        WRITE_RATE / 1e6,
        READ_RATE / 1e6
    );
    println!("  firmware .text                      {text_bytes} bytes");
    println!(
        "  boot to idle                        {} instructions, {:.1} µs virtual",
        boot.instructions,
        boot.virtual_ns as f64 / 1e3
    );
    println!("  chained DMA submission (1 desc.)    {submit_insns} instructions");
    for (size, write, read) in &fractions {
        println!("  chained DMA {size:>5} B, bus fraction   into host {write:.3}, from host {read:.3}");
    }
    println!(
        "  emulator speed (wall clock)         {:.1} MIPS ({} instructions in {:.2} s on this machine)",
        cpu.mips(),
        cpu.instructions,
        cpu.wall_ns as f64 / 1e9
    );
    if json {
        let mut fields = vec![
            format!("\"emu_mips\":{:.1}", cpu.mips()),
            format!("\"firmware_text_bytes\":{text_bytes}"),
            format!("\"boot_instructions\":{}", boot.instructions),
            format!("\"dma_submit_insns\":{submit_insns}"),
        ];
        for (size, write, read) in &fractions {
            fields.push(format!("\"dma_bus_fraction_{size}\":{write:.4}"));
            fields.push(format!("\"dma_bus_fraction_{size}_read\":{read:.4}"));
        }
        println!("{{{}}}", fields.join(","));
    }
    Ok(ExitCode::SUCCESS)
}
