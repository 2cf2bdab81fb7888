//! Which IPIC register and bit each interrupt vector uses: the table in Linux's
//! `arch/powerpc/sysdev/ipic.c` (`ipic_info[]`, the `.mask` register and `.bit` of every entry), copied
//! entry for entry. There is no formula: vectors 1–16 use SIMSR_H bits 16–31, 32–47 bits 0–15 of the same
//! register, 17–23 and 48 the external mask register SEMSR, 64–91 and 94 SIMSR_L. Bits are numbered as the
//! manual and Linux number them (0 = most significant), so a vector's mask is `1 << (31 - bit)`
//! (Linux's `ipic_unmask_irq`).
//!
//! Register offsets are from the IPIC block (IMMR + 0x700), as in Linux's `ipic.h`. A source's pending
//! bit sits at the same position in the pending register of its group (SIPNR_H, SIPNR_L, SEPNR).

/// The register pair a source belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Internal sources in SIMSR_H / SIPNR_H.
    InternalHigh,
    /// Internal sources in SIMSR_L / SIPNR_L.
    InternalLow,
    /// External interrupt pins IRQ0–IRQ7 in SEMSR / SEPNR.
    External,
}

/// SIPNR_H: internal pending, high word.
pub const SIPNR_H: usize = 0x08;
/// SIPNR_L: internal pending, low word.
pub const SIPNR_L: usize = 0x0C;
/// SIMSR_H: internal mask, high word.
pub const SIMSR_H: usize = 0x20;
/// SIMSR_L: internal mask, low word.
pub const SIMSR_L: usize = 0x24;
/// SEPNR: external pending.
pub const SEPNR: usize = 0x2C;
/// SEMSR: external mask.
pub const SEMSR: usize = 0x38;

impl Group {
    /// Offset of the mask register (1 = enabled) from the IPIC block.
    pub const fn mask_offset(self) -> usize {
        match self {
            Group::InternalHigh => SIMSR_H,
            Group::InternalLow => SIMSR_L,
            Group::External => SEMSR,
        }
    }

    /// Offset of the pending register from the IPIC block.
    pub const fn pending_offset(self) -> usize {
        match self {
            Group::InternalHigh => SIPNR_H,
            Group::InternalLow => SIPNR_L,
            Group::External => SEPNR,
        }
    }
}

/// One entry of `ipic_info[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub vector: u8,
    pub group: Group,
    /// Bit number, 0 = most significant.
    pub bit: u8,
}

impl Source {
    /// The source's bit in its mask and pending registers.
    pub const fn mask(self) -> u32 {
        1 << (31 - self.bit as u32)
    }
}

/// Vectors of the sources the firmware uses (Linux `mpc834x_mds.dts`: serial 9 and 10; the message
/// unit 69 and the DMA controller 71 as in arch/ppc's `mpc83xx.h`).
pub mod vector {
    pub const UART0: u8 = 9;
    pub const UART1: u8 = 10;
    pub const MESSAGE_UNIT: u8 = 69;
    pub const DMA: u8 = 71;
}

/// Every entry of Linux's `ipic_info[]`, in vector order.
pub const SOURCES: [Source; 69] = [
    Source { vector: 1, group: Group::InternalHigh, bit: 16 },
    Source { vector: 2, group: Group::InternalHigh, bit: 17 },
    Source { vector: 3, group: Group::InternalHigh, bit: 18 },
    Source { vector: 4, group: Group::InternalHigh, bit: 19 },
    Source { vector: 5, group: Group::InternalHigh, bit: 20 },
    Source { vector: 6, group: Group::InternalHigh, bit: 21 },
    Source { vector: 7, group: Group::InternalHigh, bit: 22 },
    Source { vector: 8, group: Group::InternalHigh, bit: 23 },
    Source { vector: 9, group: Group::InternalHigh, bit: 24 },
    Source { vector: 10, group: Group::InternalHigh, bit: 25 },
    Source { vector: 11, group: Group::InternalHigh, bit: 26 },
    Source { vector: 12, group: Group::InternalHigh, bit: 27 },
    Source { vector: 13, group: Group::InternalHigh, bit: 28 },
    Source { vector: 14, group: Group::InternalHigh, bit: 29 },
    Source { vector: 15, group: Group::InternalHigh, bit: 30 },
    Source { vector: 16, group: Group::InternalHigh, bit: 31 },
    Source { vector: 17, group: Group::External, bit: 1 },
    Source { vector: 18, group: Group::External, bit: 2 },
    Source { vector: 19, group: Group::External, bit: 3 },
    Source { vector: 20, group: Group::External, bit: 4 },
    Source { vector: 21, group: Group::External, bit: 5 },
    Source { vector: 22, group: Group::External, bit: 6 },
    Source { vector: 23, group: Group::External, bit: 7 },
    Source { vector: 32, group: Group::InternalHigh, bit: 0 },
    Source { vector: 33, group: Group::InternalHigh, bit: 1 },
    Source { vector: 34, group: Group::InternalHigh, bit: 2 },
    Source { vector: 35, group: Group::InternalHigh, bit: 3 },
    Source { vector: 36, group: Group::InternalHigh, bit: 4 },
    Source { vector: 37, group: Group::InternalHigh, bit: 5 },
    Source { vector: 38, group: Group::InternalHigh, bit: 6 },
    Source { vector: 39, group: Group::InternalHigh, bit: 7 },
    Source { vector: 40, group: Group::InternalHigh, bit: 8 },
    Source { vector: 41, group: Group::InternalHigh, bit: 9 },
    Source { vector: 42, group: Group::InternalHigh, bit: 10 },
    Source { vector: 43, group: Group::InternalHigh, bit: 11 },
    Source { vector: 44, group: Group::InternalHigh, bit: 12 },
    Source { vector: 45, group: Group::InternalHigh, bit: 13 },
    Source { vector: 46, group: Group::InternalHigh, bit: 14 },
    Source { vector: 47, group: Group::InternalHigh, bit: 15 },
    Source { vector: 48, group: Group::External, bit: 0 },
    Source { vector: 64, group: Group::InternalLow, bit: 0 },
    Source { vector: 65, group: Group::InternalLow, bit: 1 },
    Source { vector: 66, group: Group::InternalLow, bit: 2 },
    Source { vector: 67, group: Group::InternalLow, bit: 3 },
    Source { vector: 68, group: Group::InternalLow, bit: 4 },
    Source { vector: 69, group: Group::InternalLow, bit: 5 },
    Source { vector: 70, group: Group::InternalLow, bit: 6 },
    Source { vector: 71, group: Group::InternalLow, bit: 7 },
    Source { vector: 72, group: Group::InternalLow, bit: 8 },
    Source { vector: 73, group: Group::InternalLow, bit: 9 },
    Source { vector: 74, group: Group::InternalLow, bit: 10 },
    Source { vector: 75, group: Group::InternalLow, bit: 11 },
    Source { vector: 76, group: Group::InternalLow, bit: 12 },
    Source { vector: 77, group: Group::InternalLow, bit: 13 },
    Source { vector: 78, group: Group::InternalLow, bit: 14 },
    Source { vector: 79, group: Group::InternalLow, bit: 15 },
    Source { vector: 80, group: Group::InternalLow, bit: 16 },
    Source { vector: 81, group: Group::InternalLow, bit: 17 },
    Source { vector: 82, group: Group::InternalLow, bit: 18 },
    Source { vector: 83, group: Group::InternalLow, bit: 19 },
    Source { vector: 84, group: Group::InternalLow, bit: 20 },
    Source { vector: 85, group: Group::InternalLow, bit: 21 },
    Source { vector: 86, group: Group::InternalLow, bit: 22 },
    Source { vector: 87, group: Group::InternalLow, bit: 23 },
    Source { vector: 88, group: Group::InternalLow, bit: 24 },
    Source { vector: 89, group: Group::InternalLow, bit: 25 },
    Source { vector: 90, group: Group::InternalLow, bit: 26 },
    Source { vector: 91, group: Group::InternalLow, bit: 27 },
    Source { vector: 94, group: Group::InternalLow, bit: 30 },
];

/// The table entry of `vector`, or `None` for a vector the IPIC does not have (0, 24–31, 49–63, 92, 93,
/// 95 and up).
pub const fn lookup(vector: u8) -> Option<Source> {
    let mut i = 0;
    while i < SOURCES.len() {
        if SOURCES[i].vector == vector {
            return Some(SOURCES[i]);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the firmware and the emulator used to compute: vector v < 32 → SIMSR_H bit v, 64–95 → SIMSR_L
    /// bit v − 64, nothing else.
    fn old_formula(vector: u8) -> Option<(usize, u32)> {
        match vector {
            0..=31 => Some((SIMSR_H, 1 << (31 - u32::from(vector)))),
            64..=95 => Some((SIMSR_L, 1 << (31 - (u32::from(vector) - 64)))),
            _ => None,
        }
    }

    #[test]
    fn firmware_sources_use_linux_registers_and_bits() {
        let at = |v: u8| lookup(v).map(|s| (s.group.mask_offset(), s.mask()));
        // ipic_info[9] = { SIMSR_H, bit 24 }, [10] = { SIMSR_H, bit 25 }.
        assert_eq!(at(vector::UART0), Some((SIMSR_H, 0x0000_0080)));
        assert_eq!(at(vector::UART1), Some((SIMSR_H, 0x0000_0040)));
        // ipic_info[69] = { SIMSR_L, bit 5 }, [71] = { SIMSR_L, bit 7 }.
        assert_eq!(at(vector::MESSAGE_UNIT), Some((SIMSR_L, 0x0400_0000)));
        assert_eq!(at(vector::DMA), Some((SIMSR_L, 0x0100_0000)));
        // The old formula got both UARTs wrong (and the two SIMSR_L sources right).
        assert_ne!(old_formula(vector::UART0), at(vector::UART0));
        assert_ne!(old_formula(vector::UART1), at(vector::UART1));
        assert_eq!(old_formula(vector::MESSAGE_UNIT), at(vector::MESSAGE_UNIT));
    }

    #[test]
    fn table_matches_linux_entry_for_entry() {
        // Spot checks of each run of the table against ipic.c.
        assert_eq!(lookup(1), Some(Source { vector: 1, group: Group::InternalHigh, bit: 16 }));
        assert_eq!(lookup(16), Some(Source { vector: 16, group: Group::InternalHigh, bit: 31 }));
        assert_eq!(lookup(17), Some(Source { vector: 17, group: Group::External, bit: 1 }));
        assert_eq!(lookup(23), Some(Source { vector: 23, group: Group::External, bit: 7 }));
        assert_eq!(lookup(32), Some(Source { vector: 32, group: Group::InternalHigh, bit: 0 }));
        assert_eq!(lookup(47), Some(Source { vector: 47, group: Group::InternalHigh, bit: 15 }));
        assert_eq!(lookup(48), Some(Source { vector: 48, group: Group::External, bit: 0 }));
        assert_eq!(lookup(64), Some(Source { vector: 64, group: Group::InternalLow, bit: 0 }));
        assert_eq!(lookup(91), Some(Source { vector: 91, group: Group::InternalLow, bit: 27 }));
        assert_eq!(lookup(94), Some(Source { vector: 94, group: Group::InternalLow, bit: 30 }));
        for missing in [0, 24, 31, 49, 63, 92, 93, 95, 127] {
            assert_eq!(lookup(missing), None, "vector {missing}");
        }
        // Vectors ascend, and no two sources share a register bit.
        for pair in SOURCES.windows(2) {
            assert!(pair[0].vector < pair[1].vector);
        }
        for (i, a) in SOURCES.iter().enumerate() {
            for b in &SOURCES[i + 1..] {
                assert!(a.group != b.group || a.bit != b.bit, "vectors {} and {} share a bit", a.vector, b.vector);
            }
        }
    }

    #[test]
    fn old_formula_disagrees_for_vectors_below_32_and_cannot_reach_32_to_47() {
        let wrong = SOURCES.iter().filter(|s| old_formula(s.vector) != Some((s.group.mask_offset(), s.mask()))).count();
        // Every source in 1–23 and 32–48 is placed differently; only SIMSR_L's agree.
        assert_eq!(wrong, 23 + 17);
    }
}
