//! The reset block: why the chip last reset, and a software hard reset.

use crate::regs::Reg;

const RSR: usize = 0x10;
const RPR: usize = 0x18;
const RCR: usize = 0x1C;
const RCER: usize = 0x20;

const RPR_UNLOCK: u32 = 0x5253_5445; // "RSTE"
const RCR_SWHR: u32 = 0x2;
const RCER_CRE: u32 = 0x1;

pub mod cause {
    pub const SWHR: u32 = 0x1000;
    pub const SWRS: u32 = 0x8;
    pub const HRS: u32 = 0x1;
}

pub struct Reset {
    base: usize,
}

impl Reset {
    /// # Safety
    /// `base` is IMMR + 0x900.
    pub const unsafe fn new(base: usize) -> Self {
        Reset { base }
    }

    fn reg(&self, offset: usize) -> Reg<u32> {
        // SAFETY: every offset used is a 32-bit register of this block.
        unsafe { Reg::at(self.base + offset) }
    }

    /// The reset status register (write-1-to-clear).
    pub fn status(&self) -> u32 {
        self.reg(RSR).read()
    }

    /// Clear the recorded causes, so the next boot reports only the next reset.
    pub fn clear_status(&self, bits: u32) {
        self.reg(RSR).write(bits);
    }

    /// Software hard reset: unlock with RPR, wait for RCER[CRE], then RCR[SWHR]. Does not return.
    pub fn hard_reset(&self) -> ! {
        self.reg(RPR).write(RPR_UNLOCK);
        while self.reg(RCER).read() & RCER_CRE == 0 {}
        self.reg(RCR).write(RCR_SWHR);
        loop {
            core::hint::spin_loop();
        }
    }
}

/// A short description of RSR's cause bits.
pub const fn describe(rsr: u32) -> &'static str {
    if rsr & cause::SWHR != 0 {
        "software hard reset"
    } else if rsr & cause::SWRS != 0 {
        "watchdog reset"
    } else if rsr & cause::HRS != 0 {
        "hard reset"
    } else {
        "unknown"
    }
}
