//! The agent's own PCI configuration header, reached through the configuration port at IMMR
//! 0x8300/0x8304 (docs/REGISTERS.md, "PCI configuration header (agent mode)"). The one job it has
//! here: release the configuration lock (PBFR[ACL]) once the agent is ready to be enumerated, as
//! U-Boot's `mpc83xx_pcislave_unlock` does (arch/powerpc/cpu/mpc83xx/pci.c).
//!
//! CONFIG_ADDRESS is big-endian (a plain store, as U-Boot's indirect configuration access writes
//! it); CONFIG_DATA is little-endian, and a 16-bit register at header offset `r` is the 16 bits at
//! CONFIG_DATA + (r & 2) (U-Boot drivers/pci/pci_indirect.c).

use crate::regs::Reg;

const CONFIG_ADDRESS: usize = 0x0;
const CONFIG_DATA: usize = 0x4;
/// CONFIG_ADDRESS enable bit; bus 0, device 0, function 0 is the agent's own header.
const ENABLE: u32 = 0x8000_0000;

/// PCI bus function register (header offset 0x44) and its agent configuration lock bit.
pub const PBFR: u8 = 0x44;
pub const PBFR_ACL: u16 = 0x20;

pub struct ConfigPort {
    base: usize,
}

impl ConfigPort {
    /// # Safety
    /// `base` is IMMR + 0x8300, and no other driver uses the configuration port.
    pub const unsafe fn new(base: usize) -> Self {
        ConfigPort { base }
    }

    /// Select header register `reg` (its 32-bit word) for the next data access.
    fn select(&self, reg: u8) {
        // SAFETY: CONFIG_ADDRESS is a 32-bit register of the port `new` vouched for.
        let address: Reg<u32> = unsafe { Reg::at(self.base + CONFIG_ADDRESS) };
        address.write(ENABLE | u32::from(reg & 0xFC));
    }

    fn data16(&self, reg: u8) -> Reg<u16> {
        // SAFETY: the data port's bytes 0..4 are its 16-bit halves at +0 and +2.
        unsafe { Reg::at(self.base + CONFIG_DATA + usize::from(reg & 2)) }
    }

    /// The 16-bit header register at `reg` (even).
    pub fn read16(&self, reg: u8) -> u16 {
        self.select(reg);
        u16::from_le(self.data16(reg).read())
    }

    pub fn write16(&self, reg: u8, value: u16) {
        self.select(reg);
        self.data16(reg).write(value.to_le());
    }

    pub fn locked(&self) -> bool {
        self.read16(PBFR) & PBFR_ACL != 0
    }

    /// Let the host's configuration cycles in: from now on its enumeration can read the header and
    /// assign BAR0 and BAR1 (= PIBAR0). A hard reset sets the lock again.
    pub fn release_lock(&self) {
        let pbfr = self.read16(PBFR);
        self.write16(PBFR, pbfr & !PBFR_ACL);
    }
}
