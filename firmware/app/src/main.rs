//! bpnet agent firmware for the MPC8349EMDS: the board's main, which wires the SoC drivers to the
//! portable crates.
#![no_std]
#![no_main]
// The boot stage ends `__e300_main` early: the firmware's bring-up after it is built but never runs.
#![cfg_attr(feature = "boot-stage", allow(unreachable_code, dead_code))]
// The test images without the data path (or with a stand-in for it) use only part of what the boot
// module offers the firmware (launch, recovery, confirm).
#![cfg_attr(
    any(
        feature = "fault-test",
        feature = "panic-test",
        feature = "selftest",
        feature = "cpu-bench",
        feature = "ring-bench",
        feature = "hostile-agent"
    ),
    allow(dead_code)
)]

mod boot;
mod console;
mod irq;
mod key;
mod log;
#[cfg(not(any(feature = "fault-test", feature = "panic-test", feature = "selftest", feature = "boot-stage")))]
mod net;
#[cfg(feature = "selftest")]
mod selftest;

use e300::exception::Fault;
use mpc8349::{reset, sysconf};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[no_mangle]
fn __e300_main() -> ! {
    let board = match mpc8349emds::init() {
        Ok(board) => board,
        // Without translation or clocks there is no console to say why.
        Err(_) => e300::halt(),
    };
    console::set(&board.immr);
    #[cfg(feature = "boot-stage")]
    boot::stage::run(&board);
    let log = log::init(board.clocks.timebase_hz);

    banner(&board, &log);
    defmt::info!(
        "bpnet firmware {=str} up: core {=u32} Hz, CSB {=u32} Hz, {=u64} MiB RAM",
        VERSION,
        board.clocks.core_hz,
        board.clocks.csb_hz,
        board.ram_bytes >> 20
    );
    boot::start(board.clocks.timebase_hz);

    #[cfg(feature = "cpu-bench")]
    cpu_bench();

    #[cfg(feature = "selftest")]
    selftest::run();

    #[cfg(feature = "fault-test")]
    {
        println!("fault-test: trapping on purpose");
        e300::exception::trap();
    }
    #[cfg(feature = "panic-test")]
    panic!("panic-test: panicking on purpose");

    #[cfg(not(any(feature = "fault-test", feature = "panic-test", feature = "selftest", feature = "boot-stage")))]
    net::run(board.clocks.timebase_hz, log.generation)
}

/// CRC-32 (bitwise, no table) over the first 16 KiB of the image, 64 times: about 40 million
/// instructions of plain integer work.
#[cfg(feature = "cpu-bench")]
fn cpu_bench() {
    extern "C" {
        static __image_start: u8;
    }
    let start = core::ptr::addr_of!(__image_start);
    let mut crc = 0xFFFF_FFFFu32;
    for round in 0..64u32 {
        for i in 0..16 * 1024 {
            // SAFETY: the image is at least 16 KiB of loaded, readable text and data.
            let byte = unsafe { core::ptr::read_volatile(start.add(i)) };
            crc ^= u32::from(byte) ^ round;
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
    }
    println!("cpu-bench: crc {:#010x}", !crc);
    defmt::info!("cpu-bench done: crc {=u32:#010x}", !crc);
}

fn banner(board: &mpc8349emds::Board, log: &log::Info) {
    let mhz = |hz: u32| (hz / 1_000_000, (hz % 1_000_000) / 1_000);
    let (core, core_k) = mhz(board.clocks.core_hz);
    let (csb, csb_k) = mhz(board.clocks.csb_hz);
    let (tb, tb_k) = mhz(board.clocks.timebase_hz);
    println!();
    println!("bpnet firmware {} (MPC8349EMDS)", VERSION);
    println!(
        "  cpu:    PVR {:#010x} ({})",
        board.pvr,
        if e300::is_e300c1(board.pvr) { "e300c1" } else { "not an e300c1" }
    );
    println!(
        "  soc:    SPRIDR {:#010x} ({}, revision {:#06x})",
        board.spridr,
        sysconf::part_name(board.spridr),
        board.spridr & 0xFFFF
    );
    println!(
        "  clocks: core {}.{:03} MHz, CSB {}.{:03} MHz, timebase {}.{:03} MHz (SPMR {:#010x})",
        core, core_k, csb, csb_k, tb, tb_k, board.spmr
    );
    println!("  ram:    {} MiB DDR", board.ram_bytes >> 20);
    println!("  reset:  {} (RSR {:#010x})", reset::describe(board.reset_status), board.reset_status);
    println!("  log:    defmt ring at {:#010x}, {} bytes, boot {}", log.addr, log.capacity, log.generation);
}

#[no_mangle]
fn __e300_fault(fault: &Fault) -> ! {
    println!(
        "FAULT: vector {:#05x} {}{}{} SRR0={:#010x} SRR1={:#010x} DAR={:#010x} DSISR={:#010x}",
        fault.vector,
        fault.name(),
        if fault.program_cause().is_some() { ": " } else { "" },
        fault.program_cause().unwrap_or(""),
        fault.srr0,
        fault.srr1,
        fault.dar,
        fault.dsisr
    );
    println!("halted");
    e300::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    println!("halted");
    e300::halt()
}
