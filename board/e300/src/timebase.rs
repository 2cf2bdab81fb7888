//! The timebase (64-bit, counting at CSB/4 on the MPC83xx) and the decrementer.

/// Read the 64-bit timebase, retrying if the upper half changed in between.
pub fn read() -> u64 {
    loop {
        let (hi, lo, hi2): (u32, u32, u32);
        // The 603e family reads the timebase with `mftb` (primary 31, extended opcode 371);
        // LLVM assembles the mnemonic as `mfspr 268/269` (opcode 339), which older cores treat as
        // an illegal SPR access. So the words are spelled out, with fixed registers:
        // mftbu r3 = 0x7C6D42E6, mftb r4 = 0x7C8C42E6, mftbu r5 = 0x7CAD42E6.
        // SAFETY: mftb/mftbu only read the timebase.
        unsafe {
            core::arch::asm!(
                ".long 0x7C6D42E6", ".long 0x7C8C42E6", ".long 0x7CAD42E6",
                out("r3") hi, out("r4") lo, out("r5") hi2,
                options(nomem, nostack, preserves_flags)
            )
        };
        if hi == hi2 {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// Load the decrementer with its largest positive value, so it fires as late as possible.
pub fn park_decrementer() {
    // SAFETY: writing DEC only schedules the next decrementer exception.
    unsafe { core::arch::asm!("mtdec {0}", in(reg) DEC_MAX, options(nomem, nostack, preserves_flags)) };
}

/// The largest count DEC takes without firing at once: a negative value raises the exception.
const DEC_MAX: u32 = 0x7fff_ffff;

/// Load the decrementer so it fires after `ticks` timebase ticks (clamped to 1..=0x7FFF_FFFF); taken
/// in [`crate::wait_for_interrupt`], it ends the wait.
pub fn arm_decrementer(ticks: u32) {
    let ticks = ticks.clamp(1, DEC_MAX);
    // SAFETY: writing DEC only schedules the next decrementer exception.
    unsafe { core::arch::asm!("mtdec {0}", in(reg) ticks, options(nomem, nostack, preserves_flags)) };
}

/// A clock and `DelayNs` over the timebase.
#[derive(Clone, Copy, Debug)]
pub struct Timebase {
    hz: u32,
}

impl Timebase {
    /// `hz` is the timebase frequency (CSB / 4 on the MPC83xx).
    pub const fn new(hz: u32) -> Self {
        Timebase { hz }
    }

    pub const fn hz(&self) -> u32 {
        self.hz
    }

    pub fn ticks(&self) -> u64 {
        read()
    }

    /// Time since the timebase started (power-on or the last write), in microseconds.
    pub fn micros(&self) -> u64 {
        // Whole seconds, then the remainder: exact for any frequency (66.67 MHz is not a whole number
        // of MHz), and no product that could overflow in the board's lifetime.
        let hz = u64::from(self.hz).max(1);
        let ticks = read();
        ticks / hz * 1_000_000 + ticks % hz * 1_000_000 / hz
    }

    fn wait_ticks(&self, ticks: u64) {
        let start = read();
        while read().wrapping_sub(start) < ticks {}
    }
}

impl embedded_hal::delay::DelayNs for Timebase {
    fn delay_ns(&mut self, ns: u32) {
        let ticks = (u64::from(ns) * u64::from(self.hz)).div_ceil(1_000_000_000);
        self.wait_ticks(ticks);
    }
}
