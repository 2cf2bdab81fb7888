//! System configuration: IMMRBAR, local access windows, SPRIDR, SPCR.

use crate::regs::Reg;

const IMMRBAR: usize = 0x000;
const DDRLAWBAR0: usize = 0x0A0;
const DDRLAWAR0: usize = 0x0A4;
const SPRIDR: usize = 0x108;
const SPCR: usize = 0x110;

/// LAWAR enable bit.
pub const LAWAR_EN: u32 = 0x8000_0000;
/// SPCR: the core's timebase runs.
pub const SPCR_TBEN: u32 = 0x0040_0000;

pub struct SysConf {
    base: usize,
}

impl SysConf {
    /// # Safety
    /// `base` is the IMMR base.
    pub const unsafe fn new(base: usize) -> Self {
        SysConf { base }
    }

    fn reg(&self, offset: usize) -> Reg<u32> {
        // SAFETY: every offset used is a 32-bit register of this block (docs/REGISTERS.md).
        unsafe { Reg::at(self.base + offset) }
    }

    pub fn immrbar(&self) -> u32 {
        self.reg(IMMRBAR).read()
    }

    pub fn spridr(&self) -> u32 {
        self.reg(SPRIDR).read()
    }

    /// Start the core timebase (U-Boot normally has).
    pub fn enable_timebase(&self) {
        self.reg(SPCR).modify(|v| v | SPCR_TBEN);
    }

    /// The DDR window(s) the boot loader set up: total bytes of the enabled DDR LAWs.
    pub fn ddr_size(&self) -> u64 {
        (0..2).map(|n| law_size(self.reg(DDRLAWAR0 + 8 * n).read())).sum()
    }

    /// Base of DDR LAW 0.
    pub fn ddr_base(&self) -> u32 {
        self.reg(DDRLAWBAR0).read() & 0xFFFF_F000
    }
}

/// Bytes covered by a LAWAR value (0 when disabled): 2^(SIZE+1).
pub const fn law_size(lawar: u32) -> u64 {
    if lawar & LAWAR_EN == 0 {
        return 0;
    }
    let size = lawar & 0x3F;
    if size < 0x0B {
        return 0; // reserved encodings: smaller than 4 KiB
    }
    1u64 << (size + 1)
}

/// A readable name for an SPRIDR value.
pub const fn part_name(spridr: u32) -> &'static str {
    match spridr >> 16 {
        0x8030 => "MPC8349E",
        0x8031 => "MPC8349",
        0x8032 => "MPC8347E (TBGA)",
        0x8033 => "MPC8347 (TBGA)",
        0x8034 => "MPC8347E (PBGA)",
        0x8035 => "MPC8347 (PBGA)",
        0x8036 => "MPC8343E",
        0x8037 => "MPC8343",
        _ => "unknown MPC83xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn law_sizes() {
        assert_eq!(law_size(0x8000_001B), 256 << 20);
        assert_eq!(law_size(0x8000_0018), 32 << 20);
        assert_eq!(law_size(0x0000_001B), 0);
        assert_eq!(law_size(0x8000_0000), 0);
    }

    #[test]
    fn part_names() {
        assert_eq!(part_name(0x8030_0300), "MPC8349E");
        assert_eq!(part_name(0x8036_0100), "MPC8343E");
        assert_eq!(part_name(0x1234_0000), "unknown MPC83xx");
    }
}
