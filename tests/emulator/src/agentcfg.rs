//! The PCI configuration header of the MPC8349E in agent mode (docs/REGISTERS.md, "PCI configuration
//! header (agent mode)"): what the host's enumeration reads and writes, and what the agent itself reaches
//! through its configuration port (CONFIG_ADDRESS/CONFIG_DATA at IMMR 0x8300/0x8304).
//!
//! Two of its registers are not stored here because the hardware has one register for them: BAR1 is
//! inbound window 0's PIBAR0 ([`PciWindows::bar1`]), sized from PIWAR0's IWS; status bit 3 is the message
//! unit's INTA# cause. Both are passed in by the IMMR model that owns those blocks.
//!
//! The configuration lock (PBFR[ACL], offset 0x44 bit 0x20) is set at every hard reset; while it is set the
//! host's configuration cycles are not accepted (the caller holds them: a host bridge retries), the agent's
//! own cycles through the configuration port are.

use crate::pci::PciWindows;

/// Freescale's vendor ID.
pub const VENDOR_ID: u16 = 0x1957;
/// MPC8349E (docs/REGISTERS.md: the PCI ID table, with 0x0086 = MPC8343E confirmed independently).
pub const DEVICE_ID: u16 = 0x0080;
/// Decision: the SPRIDR revision field (0x0300 on the modelled part) as major/minor nibbles.
pub const REVISION_ID: u8 = 0x30;
/// Class 0x0B (processor), subclass 0x20 (PowerPC), programming interface 1 (agent; 0 is a host bridge).
pub const CLASS_CODE: u32 = 0x0B_20_01;
/// U-Boot's CONFIG_SYS_PCI_SUBSYS_VENDORID for the MPC8349EMDS.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1957;
/// Decision: the device ID again (no source gives the EMDS's subsystem ID).
pub const SUBSYSTEM_ID: u16 = 0x0080;
/// INTA#.
pub const INTERRUPT_PIN: u8 = 1;

/// BAR0: the 1 MiB IMMR block (PCSRBAR), 32-bit memory, not prefetchable.
pub const BAR0_SIZE: u32 = 1 << 20;
const BAR0_MASK: u32 = !(BAR0_SIZE - 1);
/// BAR flag: prefetchable memory.
pub const BAR_PREFETCHABLE: u32 = 0x8;

/// Header offsets.
pub const COMMAND: u32 = 0x04;
pub const BAR0: u32 = 0x10;
pub const BAR1: u32 = 0x14;
pub const INTERRUPT_LINE: u32 = 0x3C;
/// PCI bus function register: holds the configuration lock.
pub const PBFR: u32 = 0x44;
/// PBFR[ACL]: agent configuration lock.
pub const PBFR_ACL: u16 = 0x20;

/// Command register bits the model keeps; the others read 0.
pub const CMD_IO: u16 = 0x1;
pub const CMD_MEMORY: u16 = 0x2;
pub const CMD_MASTER: u16 = 0x4;
pub const CMD_INTX_DISABLE: u16 = 0x400;
const CMD_WRITABLE: u16 = CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE;
/// Status bit 3: the function's interrupt cause, whatever INTx-disable says.
pub const STATUS_INTERRUPT: u16 = 0x8;

/// CONFIG_ADDRESS: enable bit, bus 23:16, device 15:11, function 10:8, register 7:2.
pub const CONFIG_ADDRESS: u32 = 0x8300;
pub const CONFIG_DATA: u32 = 0x8304;
pub const CONFIG_ENABLE: u32 = 0x8000_0000;
const CONFIG_ADDRESS_MASK: u32 = 0x80FF_FFFC;

/// The header's own state (everything else is constant or lives in another block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    command: u16,
    bar0: u32,
    cache_line: u8,
    latency: u8,
    interrupt_line: u8,
    pbfr: u16,
    /// The agent's configuration port.
    config_address: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig::new()
    }
}

/// An access that is not a naturally aligned 1, 2 or 4 bytes inside the 256-byte header.
pub fn valid_access(offset: u32, len: u32) -> bool {
    matches!(len, 1 | 2 | 4) && offset < 0x100 && offset % len == 0
}

impl AgentConfig {
    /// After a hard reset: everything 0 except the configuration lock, which is set.
    pub fn new() -> AgentConfig {
        AgentConfig {
            command: 0,
            bar0: 0,
            cache_line: 0,
            latency: 0,
            interrupt_line: 0,
            pbfr: PBFR_ACL,
            config_address: 0,
        }
    }

    /// PCI RST# from the bus (QEMU's device reset): the registers the host's enumeration writes go back to
    /// their reset values; the configuration lock and the agent's configuration port are the agent's and
    /// stay (a bus reset does not restart the agent's core, which released the lock once).
    pub fn bus_reset(&mut self) {
        *self = AgentConfig { pbfr: self.pbfr, config_address: self.config_address, ..AgentConfig::new() };
    }

    pub fn locked(&self) -> bool {
        self.pbfr & PBFR_ACL != 0
    }

    pub fn command(&self) -> u16 {
        self.command
    }

    /// The PCI address BAR0 (IMMR) answers at; `None` until the host assigned one.
    pub fn bar0_base(&self) -> Option<u32> {
        (self.bar0 != 0).then_some(self.bar0)
    }

    pub fn memory_enabled(&self) -> bool {
        self.command & CMD_MEMORY != 0
    }

    /// INTA# as driven on the bus: the cause gated by command bit 10.
    pub fn intx_level(&self, cause: bool) -> bool {
        cause && self.command & CMD_INTX_DISABLE == 0
    }

    /// The 32-bit header register at `reg` (a multiple of 4).
    fn read_dword(&self, reg: u32, pci: &PciWindows, cause: bool) -> u32 {
        match reg {
            0x00 => (u32::from(DEVICE_ID) << 16) | u32::from(VENDOR_ID),
            0x04 => {
                let status = if cause { STATUS_INTERRUPT } else { 0 };
                (u32::from(status) << 16) | u32::from(self.command)
            }
            0x08 => (CLASS_CODE << 8) | u32::from(REVISION_ID),
            // BIST 0, header type 0 (single function).
            0x0C => (u32::from(self.latency) << 8) | u32::from(self.cache_line),
            BAR0 => self.bar0,
            BAR1 => pci.bar1(),
            0x2C => (u32::from(SUBSYSTEM_ID) << 16) | u32::from(SUBSYSTEM_VENDOR_ID),
            INTERRUPT_LINE => (u32::from(INTERRUPT_PIN) << 8) | u32::from(self.interrupt_line),
            PBFR => u32::from(self.pbfr),
            // BAR2..5 absent, no CardBus CIS, no expansion ROM, no capabilities; the rest is reserved.
            _ => 0,
        }
    }

    /// A read of `len` bytes at `offset` (checked with [`valid_access`] by the caller).
    pub fn read(&self, offset: u32, len: u32, pci: &PciWindows, cause: bool) -> u32 {
        let dword = self.read_dword(offset & !3, pci, cause);
        let shift = (offset & 3) * 8;
        match len {
            4 => dword,
            n => (dword >> shift) & ((1u32 << (n * 8)) - 1),
        }
    }

    /// A write of `len` bytes of `value` at `offset` (checked with [`valid_access`] by the caller). Bytes of
    /// read-only or reserved registers are ignored, as PCI requires. The configuration lock is the
    /// agent's: only its own cycles (`by_agent`, through the configuration port) change it.
    pub fn write(&mut self, offset: u32, len: u32, value: u32, pci: &mut PciWindows, by_agent: bool) {
        let reg = offset & !3;
        let shift = (offset & 3) * 8;
        let mask = if len == 4 { u32::MAX } else { ((1u32 << (len * 8)) - 1) << shift };
        let old = self.read_dword(reg, pci, false);
        let new = (old & !mask) | ((value << shift) & mask);
        match reg {
            // The command register only; status has no write-1-to-clear bits modelled.
            0x04 if mask & 0xFFFF != 0 => self.command = new as u16 & CMD_WRITABLE,
            0x0C => {
                self.cache_line = new as u8;
                self.latency = (new >> 8) as u8;
            }
            BAR0 => self.bar0 = new & BAR0_MASK,
            BAR1 => pci.set_bar1(new),
            INTERRUPT_LINE => self.interrupt_line = new as u8,
            PBFR if by_agent => self.pbfr = new as u16 & PBFR_ACL,
            _ => {}
        }
    }

    pub fn config_address(&self) -> u32 {
        self.config_address
    }

    pub fn set_config_address(&mut self, value: u32) {
        self.config_address = value & CONFIG_ADDRESS_MASK;
    }

    /// The header offset of a CONFIG_DATA access at byte `lane` (0..3) of the data port, if CONFIG_ADDRESS
    /// selects the agent's own header (enabled, bus 0, device 0, function 0 as U-Boot's
    /// `mpc83xx_pcislave_unlock` addresses it); `Err` says what else it selects.
    pub fn own_register(&self, lane: u32) -> Result<u32, String> {
        let a = self.config_address;
        if a & CONFIG_ENABLE == 0 {
            return Err(format!("CONFIG_DATA accessed while CONFIG_ADDRESS ({a:#010x}) is not enabled"));
        }
        let (bus, device, function) = ((a >> 16) & 0xFF, (a >> 11) & 0x1F, (a >> 8) & 0x7);
        if (bus, device, function) != (0, 0, 0) {
            return Err(format!(
                "configuration cycle to bus {bus} device {device} function {function}: an agent reaches only \
                 its own header (bus 0 device 0 function 0); cycles onto the bus are not modelled"
            ));
        }
        Ok((a & 0xFC) | lane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::INBOUND_OFFSETS;

    fn windows_with_1mib_window0() -> PciWindows {
        let mut w = PciWindows::new();
        w.write(INBOUND_OFFSETS[0].3, 0xA005_5013, "PIWAR0").unwrap();
        w
    }

    #[test]
    fn identity_and_reset_state() {
        let cfg = AgentConfig::new();
        let w = PciWindows::new();
        assert_eq!(cfg.read(0x00, 4, &w, false), 0x0080_1957);
        assert_eq!(cfg.read(0x02, 2, &w, false), 0x0080);
        assert_eq!(cfg.read(0x08, 4, &w, false), 0x0B20_0130);
        assert_eq!(cfg.read(0x0E, 1, &w, false), 0, "header type 0");
        assert_eq!(cfg.read(0x2C, 4, &w, false), 0x0080_1957);
        assert_eq!(cfg.read(0x3D, 1, &w, false), 1, "INTA#");
        assert_eq!(cfg.read(0x44, 2, &w, false), 0x20, "locked after reset");
        assert!(cfg.locked());
        for bar in [0x18, 0x1C, 0x20, 0x24] {
            assert_eq!(cfg.read(bar, 4, &w, false), 0, "BAR at {bar:#x} absent");
        }
        assert_eq!(cfg.read(0x06, 2, &w, true), u32::from(STATUS_INTERRUPT));
    }

    #[test]
    fn bars_size_and_assign() {
        let mut cfg = AgentConfig::new();
        let mut w = windows_with_1mib_window0();
        cfg.write(BAR0, 4, u32::MAX, &mut w, false);
        assert_eq!(cfg.read(BAR0, 4, &w, false), 0xFFF0_0000, "1 MiB, 32-bit, not prefetchable");
        cfg.write(BAR1, 4, u32::MAX, &mut w, false);
        assert_eq!(cfg.read(BAR1, 4, &w, false), 0xFFF0_0000 | BAR_PREFETCHABLE, "PIWAR0: 1 MiB, PF");
        cfg.write(BAR0, 4, 0xFEB0_0000, &mut w, false);
        cfg.write(BAR1, 4, 0xFE80_0000, &mut w, false);
        assert_eq!(cfg.bar0_base(), Some(0xFEB0_0000));
        assert_eq!(w.read(INBOUND_OFFSETS[0].1), Some(0xFE800), "BAR1 is PIBAR0");
        // Sizes the BAR from the window: a 4 MiB window.
        w.write(INBOUND_OFFSETS[0].3, 0x8005_5015, "PIWAR0").unwrap();
        cfg.write(BAR1, 4, u32::MAX, &mut w, false);
        assert_eq!(cfg.read(BAR1, 4, &w, false), 0xFFC0_0000);
    }

    #[test]
    fn command_bits_and_lock() {
        let mut cfg = AgentConfig::new();
        let mut w = PciWindows::new();
        cfg.write(COMMAND, 4, 0xFFFF_FFFF, &mut w, false);
        assert_eq!(cfg.command(), CMD_WRITABLE);
        assert!(!cfg.intx_level(true), "INTx disabled");
        cfg.write(COMMAND + 1, 1, 0, &mut w, false);
        assert!(cfg.intx_level(true));
        assert_eq!(cfg.command(), CMD_IO | CMD_MEMORY | CMD_MASTER);
        cfg.write(INTERRUPT_LINE, 1, 11, &mut w, false);
        assert_eq!(cfg.read(INTERRUPT_LINE, 2, &w, false), 0x010B);
        cfg.write(PBFR, 2, 0xFFFF & !u32::from(PBFR_ACL), &mut w, false);
        assert!(cfg.locked(), "the host cannot release the lock");
        cfg.write(PBFR, 2, 0xFFFF & !u32::from(PBFR_ACL), &mut w, true);
        assert!(!cfg.locked());
        cfg.write(PBFR, 4, u32::MAX, &mut w, false);
        assert!(!cfg.locked(), "nor set it");
        assert_eq!(cfg.read(PBFR, 4, &w, false), 0);
        // Read-only registers keep their values.
        cfg.write(0x00, 4, 0, &mut w, false);
        cfg.write(0x08, 4, 0, &mut w, false);
        assert_eq!(cfg.read(0x00, 4, &w, false), 0x0080_1957);
        assert_eq!(cfg.read(0x08, 4, &w, false), 0x0B20_0130);
    }

    #[test]
    fn configuration_port_addresses_only_the_own_header() {
        let mut cfg = AgentConfig::new();
        assert!(cfg.own_register(0).unwrap_err().contains("not enabled"));
        cfg.set_config_address(CONFIG_ENABLE | 0x44);
        assert_eq!(cfg.own_register(0), Ok(0x44));
        assert_eq!(cfg.own_register(2), Ok(0x46));
        cfg.set_config_address(CONFIG_ENABLE | (1 << 11) | 0x44);
        assert!(cfg.own_register(0).unwrap_err().contains("device 1"));
        assert!(valid_access(0x44, 2) && !valid_access(0x45, 2) && !valid_access(0x100, 1) && !valid_access(0, 3));
    }
}
