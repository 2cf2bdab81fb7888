//! Clock decoding from SPMR: CSB = input × (1 + CKID) × SPMF; core = CSB × ratio(COREPLL).

use crate::regs::Reg;

const SPMR: usize = 0x0;

pub struct Clocks {
    base: usize,
}

impl Clocks {
    /// # Safety
    /// `base` is IMMR + 0xA00.
    pub const unsafe fn new(base: usize) -> Self {
        Clocks { base }
    }

    pub fn spmr(&self) -> u32 {
        // SAFETY: SPMR is a 32-bit read-only register at offset 0 of this block.
        unsafe { Reg::<u32>::at(self.base + SPMR) }.read()
    }
}

/// The frequencies that follow from one SPMR value and the system PLL's input clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frequencies {
    pub csb_hz: u32,
    pub core_hz: u32,
    /// The e300 timebase and decrementer: CSB / 4.
    pub timebase_hz: u32,
}

/// Why SPMR could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// SPMF = 0 is not a valid multiplier.
    SpmfZero,
    /// A COREPLL ratio encoding outside the documented table.
    CorePll(u8),
    /// The result does not fit a u32 of hertz.
    Overflow,
}

/// Core/CSB ratio as (numerator, denominator) for COREPLL bits 4:0.
const fn core_ratio(corepll: u8) -> Option<(u32, u32)> {
    match corepll & 0x1F {
        0x00..=0x02 => Some((1, 1)), // 0x00/0x01 bypass the core PLL
        0x03 => Some((3, 2)),
        0x04 => Some((2, 1)),
        0x05 => Some((5, 2)),
        0x06 => Some((3, 1)),
        _ => None,
    }
}

pub fn decode(spmr: u32, input_hz: u32) -> Result<Frequencies, Error> {
    let spmf = (spmr >> 24) & 0xF;
    if spmf == 0 {
        return Err(Error::SpmfZero);
    }
    let ckid = (spmr >> 23) & 1;
    let corepll = ((spmr >> 16) & 0x7F) as u8;
    let csb = u64::from(input_hz) * u64::from(1 + ckid) * u64::from(spmf);
    let (num, den) = core_ratio(corepll).ok_or(Error::CorePll(corepll))?;
    let core = csb * u64::from(num) / u64::from(den);
    let csb_hz = u32::try_from(csb).map_err(|_| Error::Overflow)?;
    let core_hz = u32::try_from(core).map_err(|_| Error::Overflow)?;
    Ok(Frequencies { csb_hz, core_hz, timebase_hz: csb_hz / 4 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emds_agent_clocks() {
        let f = decode(0x0404_0000, 66_666_666).unwrap();
        assert_eq!(f.csb_hz, 266_666_664);
        assert_eq!(f.core_hz, 533_333_328);
        assert_eq!(f.timebase_hz, 66_666_666);
    }

    #[test]
    fn ratios_and_errors() {
        assert_eq!(decode(0x0405_0000, 50_000_000).unwrap().core_hz, 500_000_000);
        assert_eq!(decode(0x0483_0000, 33_333_333).unwrap().csb_hz, 266_666_664); // CKID doubles
        assert_eq!(decode(0x0004_0000, 66_666_666), Err(Error::SpmfZero));
        assert_eq!(decode(0x041F_0000, 66_666_666), Err(Error::CorePll(0x1F)));
        assert_eq!(decode(0x0F06_0000, u32::MAX), Err(Error::Overflow));
    }
}
