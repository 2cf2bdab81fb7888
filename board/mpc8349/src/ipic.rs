//! The integrated programmable interrupt controller: enough for the sources the firmware uses.
//!
//! Which mask register and bit a vector uses comes from `mpc8349_facts::ipic`, the table taken from
//! Linux's `ipic_info[]` that the board emulator's model uses too; there is no formula.

use crate::regs::Reg;
pub use mpc8349_facts::ipic::vector;
use mpc8349_facts::ipic::{self as table, Source};

const SIVCR: usize = 0x04;

pub struct Ipic {
    base: usize,
}

impl Ipic {
    /// # Safety
    /// `base` is IMMR + 0x700, and no other driver owns the IPIC.
    pub const unsafe fn new(base: usize) -> Self {
        Ipic { base }
    }

    fn reg(&self, offset: usize) -> Reg<u32> {
        // SAFETY: every offset used is a 32-bit IPIC register (docs/REGISTERS.md; the table's mask and
        // pending registers, SIVCR).
        unsafe { Reg::at(self.base + offset) }
    }

    /// A vector the IPIC does not have is a programming error of the caller's.
    fn source(vector: u8) -> Source {
        match table::lookup(vector) {
            Some(source) => source,
            None => panic!("IPIC has no interrupt vector {}", vector),
        }
    }

    pub fn enable(&self, vector: u8) {
        let s = Self::source(vector);
        self.reg(s.group.mask_offset()).modify(|m| m | s.mask());
    }

    pub fn disable(&self, vector: u8) {
        let s = Self::source(vector);
        self.reg(s.group.mask_offset()).modify(|m| m & !s.mask());
    }

    pub fn is_pending(&self, vector: u8) -> bool {
        let s = Self::source(vector);
        self.reg(s.group.pending_offset()).read() & s.mask() != 0
    }

    /// The highest-priority pending enabled vector, if any.
    pub fn current(&self) -> Option<u8> {
        match self.reg(SIVCR).read() & 0x7F {
            0 => None,
            v => Some(v as u8),
        }
    }
}
