//! bpnet agent firmware for the MPC8349EMDS: the board's main wiring, which joins the SoC drivers to
//! the portable crates, as a library every program for the board is built on. The firmware
//! (`src/main.rs`), its test images (`src/bin/`) and the boot stage (`firmware/boot`) are each a
//! binary that calls what it needs of it: bring-up ([`board`], [`start`]), the console, the defmt
//! logger, interrupt dispatch, the trusted key, booting ([`boot`]) and the data path ([`net`]); the
//! fault and panic reports are here for all of them. A program links only what it calls.
#![no_std]

pub mod boot;
pub mod console;
pub mod fault;
pub mod irq;
pub mod key;
pub mod log;
pub mod net;

use e300::exception::Fault;
use mpc8349::{reset, sysconf};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bring the board up (translation, clocks, RAM) and its console.
pub fn board() -> mpc8349emds::Board {
    let board = match mpc8349emds::init() {
        Ok(board) => board,
        // Without translation or clocks there is no console to say why.
        Err(_) => e300::halt(),
    };
    console::set(&board.immr);
    board
}

/// A firmware program once [`start`] has run.
pub struct Started {
    pub board: mpc8349emds::Board,
    pub log: log::Info,
}

/// The start every firmware program shares (the boot stage has its own): the board and its console,
/// the defmt log ring, the banner, then the boot info the program was started with
/// ([`boot::start`]).
pub fn start() -> Started {
    let board = board();
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
    Started { board, log }
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
    // A host with the link up reads the record and resets the board (bpnet.ko's health reporter);
    // with none, nothing would, and the board halts as it always did.
    if fault::record(fault) {
        println!("fault recorded in the board info block; waiting for the host's reset");
        fault::await_reset()
    }
    println!("halted");
    e300::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC: {}", info);
    println!("halted");
    e300::halt()
}
