//! A test image (`bpnet-firmware-fault-test.elf`): a fault on purpose right after the banner, for the
//! tests of the fault report. Which fault is the value of `FAULT_TEST_KIND` (in .data, so a test can
//! write it into the loaded image before the board runs; see [`kind`]): a program exception (trap) by
//! default, or an access outside every BAT, which the e300 takes at its translation-miss vectors.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use bpnet_firmware::println;

/// Values of `FAULT_TEST_KIND`.
pub mod kind {
    /// `tw 31,0,0` in `e300_trap`: vector 0x700.
    pub const TRAP: u32 = 1;
    /// A load from [`super::OUTSIDE_EVERY_BAT`]: vector 0x1100.
    pub const LOAD_OUTSIDE_BATS: u32 = 2;
    /// A store there: vector 0x1200.
    pub const STORE_OUTSIDE_BATS: u32 = 3;
    /// A jump there: vector 0x1000.
    pub const FETCH_OUTSIDE_BATS: u32 = 4;
}

/// An address the board's translation table leaves unmapped (DDR 0-256 MiB, PCI 0x8000_0000-0x8FFF_FFFF,
/// IMMR 0xE000_0000 1 MiB and flash 0xFE00_0000 32 MiB are mapped), with nothing behind it on the board.
const OUTSIDE_EVERY_BAT: usize = 0xD000_0000;

/// Which fault to take; non-zero so it is linked into .data, which the loader fills, rather than .bss,
/// which the start code clears.
#[no_mangle]
static FAULT_TEST_KIND: AtomicU32 = AtomicU32::new(kind::TRAP);

#[no_mangle]
fn __e300_main() -> ! {
    bpnet_firmware::start();
    match FAULT_TEST_KIND.load(Ordering::Relaxed) {
        kind::LOAD_OUTSIDE_BATS => {
            println!("fault-test: loading from {:#010x} on purpose", OUTSIDE_EVERY_BAT);
            // SAFETY: no BAT maps the address, so the load never completes: the core takes the DTLB load
            // miss vector, whose handler reports and halts.
            let _ = unsafe { core::ptr::read_volatile(OUTSIDE_EVERY_BAT as *const u32) };
        }
        kind::STORE_OUTSIDE_BATS => {
            println!("fault-test: storing to {:#010x} on purpose", OUTSIDE_EVERY_BAT);
            // SAFETY: as for the load: the DTLB store miss vector reports and halts.
            unsafe { core::ptr::write_volatile(OUTSIDE_EVERY_BAT as *mut u32, 0) };
        }
        kind::FETCH_OUTSIDE_BATS => {
            println!("fault-test: jumping to {:#010x} on purpose", OUTSIDE_EVERY_BAT);
            // SAFETY: no BAT maps the address, so its first instruction is never fetched: the ITLB miss
            // vector reports and halts.
            let f: extern "C" fn() = unsafe { core::mem::transmute(OUTSIDE_EVERY_BAT) };
            f();
        }
        _ => {}
    }
    println!("fault-test: trapping on purpose");
    e300::exception::trap()
}
