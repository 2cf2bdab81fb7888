//! Runtime for the Freescale e300 core (MPC83xx): the first instructions, the exception vectors,
//! machine state, block address translation, cache maintenance, barriers and the timebase.
//!
//! This crate and the SoC crates next to it are the only places with `unsafe` and inline assembly;
//! the portable crates above see only safe functions and traits.
#![no_std]

pub mod barrier;
pub mod bat;
pub mod cache;
pub mod exception;
pub mod launch;
mod mem;
pub mod msr;
mod start;
pub mod timebase;

pub use exception::wait_for_interrupt;
pub use launch::launch;
pub use start::{halt, idle};

/// Read the Processor Version Register.
pub fn pvr() -> u32 {
    let pvr: u32;
    // SAFETY: mfpvr reads a read-only register and has no side effects.
    unsafe { core::arch::asm!("mfpvr {0}", out(reg) pvr, options(nomem, nostack, preserves_flags)) };
    pvr
}

/// True for an e300c1 PVR; silicon reads 0x8083_xxxx, QEMU-derived models 0x0083_xxxx, so bit 31
/// is ignored (as Linux's cputable does).
pub const fn is_e300c1(pvr: u32) -> bool {
    pvr & 0x7fff_0000 == 0x0083_0000
}
