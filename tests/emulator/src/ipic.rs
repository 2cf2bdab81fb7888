//! The integrated programmable interrupt controller (docs/REGISTERS.md, "Interrupt controller, IPIC"):
//! internal sources UART0 (9), UART1 (10), message unit (69) and DMA (71), level-sensitive, routed to the
//! core's external interrupt (0x500). The register and bit of each vector come from the table of Linux's
//! `ipic_info[]` (`mpc8349_facts::ipic`), the one the firmware's driver uses.
//!
//! Priorities are stored but not used: among pending enabled sources the lowest vector number wins (the
//! firmware reads SIVCR and services what it finds; it does not depend on the order). External interrupt
//! pins, the error and the critical/management paths have no sources on this board model: their pending
//! registers read zero.

use mpc8349_facts::ipic::{self as table, Group};

pub const UART0: u32 = table::vector::UART0 as u32;
pub const UART1: u32 = table::vector::UART1 as u32;
pub const MESSAGE_UNIT: u32 = table::vector::MESSAGE_UNIT as u32;
pub const DMA: u32 = table::vector::DMA as u32;

pub const SICFR: u32 = 0x700;
pub const SIVCR: u32 = 0x704;
pub const SIPNR_H: u32 = 0x708;
pub const SIPNR_L: u32 = 0x70C;
pub const SIPRR_A: u32 = 0x710;
pub const SIPRR_D: u32 = 0x71C;
pub const SIMSR_H: u32 = 0x720;
pub const SIMSR_L: u32 = 0x724;
pub const SICNR: u32 = 0x728;
pub const SEPNR: u32 = 0x72C;
pub const SMPRR_A: u32 = 0x730;
pub const SMPRR_B: u32 = 0x734;
pub const SEMSR: u32 = 0x738;
pub const SECNR: u32 = 0x73C;
pub const SERSR: u32 = 0x740;
pub const SERMR: u32 = 0x744;
pub const SERCR: u32 = 0x748;
pub const SEFCR: u32 = 0x758;

/// (SIPNR_H, SIPNR_L, SEPNR) bits of a vector, from the table of Linux's `ipic_info[]`
/// (`mpc8349_facts::ipic`, shared with the firmware's driver); all zero for a vector the IPIC lacks.
pub fn bit(vector: u32) -> (u32, u32, u32) {
    match u8::try_from(vector).ok().and_then(table::lookup) {
        Some(s) => match s.group {
            Group::InternalHigh => (s.mask(), 0, 0),
            Group::InternalLow => (0, s.mask(), 0),
            Group::External => (0, 0, s.mask()),
        },
        None => (0, 0, 0),
    }
}

/// Which sources are asserting right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sources {
    pub uart: [bool; 2],
    pub message_unit: bool,
    pub dma: bool,
}

impl Sources {
    fn asserting(self) -> impl Iterator<Item = u32> {
        [(self.uart[0], UART0), (self.uart[1], UART1), (self.message_unit, MESSAGE_UNIT), (self.dma, DMA)]
            .into_iter()
            .filter_map(|(on, v)| on.then_some(v))
    }

    /// (SIPNR_H, SIPNR_L, SEPNR).
    fn pending(self) -> (u32, u32, u32) {
        self.asserting().map(bit).fold((0, 0, 0), |p, b| (p.0 | b.0, p.1 | b.1, p.2 | b.2))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ipic {
    sicfr: u32,
    siprr: [u32; 4],
    simsr: [u32; 2],
    sicnr: u32,
    smprr: [u32; 2],
    semsr: u32,
    secnr: u32,
    sermr: u32,
    sercr: u32,
}

impl Ipic {
    /// The lowest pending enabled vector, if any.
    pub fn active(&self, sources: Sources) -> Option<u32> {
        sources
            .asserting()
            .filter(|&v| {
                let (h, l, e) = bit(v);
                h & self.simsr[0] != 0 || l & self.simsr[1] != 0 || e & self.semsr != 0
            })
            .min()
    }

    /// A register read; `None` if not an IPIC register.
    pub fn read(&self, offset: u32, sources: Sources) -> Option<u32> {
        let (h, l, e) = sources.pending();
        Some(match offset {
            SICFR => self.sicfr,
            SIVCR => self.active(sources).unwrap_or(0),
            SIPNR_H => h,
            SIPNR_L => l,
            SIPRR_A..=SIPRR_D if offset.is_multiple_of(4) => self.siprr[((offset - SIPRR_A) / 4) as usize],
            SIMSR_H => self.simsr[0],
            SIMSR_L => self.simsr[1],
            SICNR => self.sicnr,
            SEPNR => e,
            SERSR | SEFCR => 0,
            SMPRR_A => self.smprr[0],
            SMPRR_B => self.smprr[1],
            SEMSR => self.semsr,
            SECNR => self.secnr,
            SERMR => self.sermr,
            SERCR => self.sercr,
            _ => return None,
        })
    }

    /// A register write; `Err` for what the model cannot do.
    pub fn write(&mut self, offset: u32, value: u32) -> Result<(), String> {
        match offset {
            SICFR => self.sicfr = value,
            SIVCR | SIPNR_H | SIPNR_L => return Err("read-only".to_string()),
            SIPRR_A..=SIPRR_D if offset.is_multiple_of(4) => self.siprr[((offset - SIPRR_A) / 4) as usize] = value,
            SIMSR_H => self.simsr[0] = value,
            SIMSR_L => self.simsr[1] = value,
            SICNR => self.sicnr = value,
            // Write-1-to-clear registers of sources that never assert.
            SEPNR | SERSR => {}
            SMPRR_A => self.smprr[0] = value,
            SMPRR_B => self.smprr[1] = value,
            SEMSR => self.semsr = value,
            SECNR => self.secnr = value,
            SERMR => self.sermr = value,
            SERCR => self.sercr = value,
            SEFCR if value == 0 => {}
            SEFCR => return Err("forcing external interrupts is not modelled".to_string()),
            _ => return Err("not an IPIC register".to_string()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_bits_match_linux_ipic_info() {
        // ipic_info[9], [10]: SIMSR_H bits 24, 25 (the formula 1 << (31 - v) gave bits 9, 10).
        assert_eq!(bit(UART0), (0x0000_0080, 0, 0));
        assert_eq!(bit(UART1), (0x0000_0040, 0, 0));
        // ipic_info[69], [71]: SIMSR_L bits 5, 7.
        assert_eq!(bit(MESSAGE_UNIT), (0, 0x0400_0000, 0));
        assert_eq!(bit(DMA), (0, 0x0100_0000, 0));
        // Vectors 32-47 exist (SIMSR_H bits 0-15), 17-23 and 48 are external pins (SEMSR).
        assert_eq!(bit(32), (0x8000_0000, 0, 0));
        assert_eq!(bit(17), (0, 0, 0x4000_0000));
        assert_eq!(bit(48), (0, 0, 0x8000_0000));
        assert_eq!(bit(24), (0, 0, 0));
    }

    #[test]
    fn a_uart_is_masked_by_its_table_bit_not_the_formula_bit() {
        let mut ipic = Ipic::default();
        let uart0 = Sources { uart: [true, false], ..Sources::default() };
        // The old formula's bit for vector 9 enables nothing.
        ipic.write(SIMSR_H, 0x0040_0000).unwrap();
        assert_eq!(ipic.active(uart0), None);
        ipic.write(SIMSR_H, 0x0000_0080).unwrap();
        assert_eq!(ipic.active(uart0), Some(UART0));
        assert_eq!(ipic.read(SIPNR_H, uart0), Some(0x0000_0080));
    }

    #[test]
    fn pending_masked_and_lowest_vector_first() {
        let mut ipic = Ipic::default();
        let both = Sources { message_unit: true, dma: true, ..Sources::default() };
        assert_eq!(ipic.read(SIPNR_L, both), Some(0x0500_0000));
        assert_eq!(ipic.active(both), None, "nothing enabled");
        assert_eq!(ipic.read(SIVCR, both), Some(0));
        ipic.write(SIMSR_L, 0x0100_0000).unwrap();
        assert_eq!(ipic.active(both), Some(DMA));
        ipic.write(SIMSR_L, 0x0500_0000).unwrap();
        assert_eq!(ipic.read(SIVCR, both), Some(MESSAGE_UNIT));
        ipic.write(SIMSR_H, 0x0000_00C0).unwrap();
        let uart = Sources { uart: [false, true], dma: true, ..Sources::default() };
        assert_eq!(ipic.active(uart), Some(UART1));
        assert_eq!(ipic.read(SIPNR_H, uart), Some(0x0000_0040));
        assert!(ipic.write(SIPNR_H, 0).is_err());
        assert!(ipic.write(SEFCR, 1).is_err());
        ipic.write(SIPRR_A + 8, 0x1234).unwrap();
        assert_eq!(ipic.read(SIPRR_A + 8, uart), Some(0x1234));
        assert_eq!(ipic.read(SEPNR, uart), Some(0));
    }
}
