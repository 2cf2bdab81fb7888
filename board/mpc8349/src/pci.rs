//! PCI agent windows: the PCI local access windows, outbound ATMU windows (agent addresses onto host
//! memory) and inbound windows (host BAR accesses onto agent RAM). Big-endian registers.

use crate::regs::Reg;

const PCILAWBAR0: usize = 0x060;
const POTAR0: usize = 0x8400;
const POBAR0: usize = 0x8408;
const POCMR0: usize = 0x8410;
const OUTBOUND_STRIDE: usize = 0x18;
/// (PITAR, PIBAR, PIWAR) offsets of inbound windows 0, 1, 2.
const INBOUND: [(usize, usize, usize); 3] =
    [(0x8568, 0x8570, 0x8578), (0x8550, 0x8558, 0x8560), (0x8538, 0x8540, 0x8548)];

pub const EN: u32 = 0x8000_0000;
const PIWAR_PF: u32 = 0x2000_0000;
const PIWAR_SNOOP: u32 = 0x0005_5000;

/// Why a window cannot be set up as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not a power of two between 4 KiB and 2 GiB.
    Size(u64),
    /// An address not aligned to the window size.
    Alignment(u32),
    /// No such window.
    Index(usize),
}

/// The SIZE/IWS encoding for a window of `size` bytes: log2(size) − 1.
pub const fn size_code(size: u64) -> Result<u32, Error> {
    if !size.is_power_of_two() || size < 4096 || size > (1 << 31) {
        return Err(Error::Size(size));
    }
    Ok(size.trailing_zeros() - 1)
}

fn check(addr: u32, size: u64) -> Result<u32, Error> {
    let code = size_code(size)?;
    if u64::from(addr) & (size - 1) != 0 {
        return Err(Error::Alignment(addr));
    }
    Ok(code)
}

pub struct Windows {
    base: usize,
}

impl Windows {
    /// # Safety
    /// `base` is the IMMR base, and no other driver owns the PCI LAWs and ATMU.
    pub const unsafe fn new(base: usize) -> Self {
        Windows { base }
    }

    fn reg(&self, offset: usize) -> Reg<u32> {
        // SAFETY: every offset used is a 32-bit LAW or ATMU register (docs/REGISTERS.md).
        unsafe { Reg::at(self.base + offset) }
    }

    /// Route local `[base, base + size)` to the PCI controller (PCI LAW 0 or 1).
    pub fn set_pci_law(&self, n: usize, base: u32, size: u64) -> Result<(), Error> {
        if n > 1 {
            return Err(Error::Index(n));
        }
        let code = check(base, size)?;
        self.reg(PCILAWBAR0 + 8 * n).write(base & 0xFFFF_F000);
        self.reg(PCILAWBAR0 + 8 * n + 4).write(EN | code);
        Ok(())
    }

    /// Outbound window `n`: local `[local, local + size)` reaches PCI (host) address `pci`.
    /// Moving a window is rewriting it; the caller puts a `sync` between this and the next access
    /// through the window, so no access is translated with a half-written window.
    pub fn set_outbound(&self, n: usize, local: u32, pci: u32, size: u64) -> Result<(), Error> {
        if n > 5 {
            return Err(Error::Index(n));
        }
        check(local, size)?;
        check(pci, size)?;
        let at = OUTBOUND_STRIDE * n;
        let mask = (!((size - 1) as u32) >> 12) & 0x000F_FFFF;
        self.reg(POCMR0 + at).write(0);
        self.reg(POTAR0 + at).write(pci >> 12);
        self.reg(POBAR0 + at).write(local >> 12);
        self.reg(POCMR0 + at).write(EN | mask);
        Ok(())
    }

    pub fn disable_outbound(&self, n: usize) {
        if n <= 5 {
            self.reg(POCMR0 + OUTBOUND_STRIDE * n).write(0);
        }
    }

    /// Inbound window `n`: host accesses to the window's BAR reach local `[local, local + size)`,
    /// snooped, prefetchable. Only the translation and the size are the agent's: where the window
    /// sits on the PCI bus (PIBARn) is the host's, assigned by its enumeration (for window 0, BAR1
    /// of the configuration header is PIBAR0), so PIBAR is never written here.
    pub fn set_inbound(&self, n: usize, local: u32, size: u64) -> Result<(), Error> {
        let (pitar, _, piwar) = *INBOUND.get(n).ok_or(Error::Index(n))?;
        let code = check(local, size)?;
        self.reg(piwar).write(0);
        self.reg(pitar).write(local >> 12);
        self.reg(piwar).write(EN | PIWAR_PF | PIWAR_SNOOP | code);
        Ok(())
    }

    /// The PCI address the host's enumeration gave inbound window `n` (PIBARn; 0 while unassigned).
    pub fn inbound_base(&self, n: usize) -> Option<u32> {
        let &(_, pibar, _) = INBOUND.get(n)?;
        Some(self.reg(pibar).read() << 12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_codes() {
        assert_eq!(size_code(4096), Ok(0x0B));
        assert_eq!(size_code(1 << 20), Ok(0x13));
        assert_eq!(size_code(1 << 30), Ok(0x1D));
        assert_eq!(size_code(3 << 20), Err(Error::Size(3 << 20)));
        assert_eq!(size_code(2048), Err(Error::Size(2048)));
        assert_eq!(check(0x8010_0000, 1 << 30), Err(Error::Alignment(0x8010_0000)));
    }
}
