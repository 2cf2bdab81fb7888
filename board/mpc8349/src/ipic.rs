//! The integrated programmable interrupt controller: enough for the sources the firmware uses.

use crate::regs::Reg;

const SIVCR: usize = 0x04;
const SIPNR_H: usize = 0x08;
const SIMSR_H: usize = 0x20;

/// IPIC vectors of the sources used.
pub mod vector {
    pub const UART0: u8 = 9;
    pub const UART1: u8 = 10;
    pub const MESSAGE_UNIT: u8 = 69;
    pub const DMA: u8 = 71;
}

/// (offset within the H/L register pair, bit) for an internal vector: 0..=31 in the H registers,
/// 64..=95 in the L registers; `None` for the others (external and reserved vectors).
pub const fn locate(vector: u8) -> Option<(usize, u32)> {
    match vector {
        0..=31 => Some((0, 1 << (31 - vector as u32))),
        64..=95 => Some((4, 1 << (31 - (vector as u32 - 64)))),
        _ => None,
    }
}

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
        // SAFETY: every offset used is a 32-bit IPIC register (docs/REGISTERS.md).
        unsafe { Reg::at(self.base + offset) }
    }

    pub fn enable(&self, vector: u8) {
        if let Some((half, bit)) = locate(vector) {
            self.reg(SIMSR_H + half).modify(|m| m | bit);
        }
    }

    pub fn disable(&self, vector: u8) {
        if let Some((half, bit)) = locate(vector) {
            self.reg(SIMSR_H + half).modify(|m| m & !bit);
        }
    }

    pub fn is_pending(&self, vector: u8) -> bool {
        locate(vector).is_some_and(|(half, bit)| self.reg(SIPNR_H + half).read() & bit != 0)
    }

    /// The highest-priority pending enabled vector, if any.
    pub fn current(&self) -> Option<u8> {
        match self.reg(SIVCR).read() & 0x7F {
            0 => None,
            v => Some(v as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_bits_match_the_table() {
        assert_eq!(locate(vector::UART0), Some((0, 0x0040_0000)));
        assert_eq!(locate(vector::UART1), Some((0, 0x0020_0000)));
        assert_eq!(locate(vector::MESSAGE_UNIT), Some((4, 0x0400_0000)));
        assert_eq!(locate(vector::DMA), Some((4, 0x0100_0000)));
        assert_eq!(locate(96), None);
        assert_eq!(locate(48), None);
    }
}
