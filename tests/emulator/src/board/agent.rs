//! The board as a PCI function seen from the bus: the host's configuration cycles into the agent-mode
//! header ([`crate::agentcfg`]) and its memory cycles into BAR0 (the IMMR registers, through the same
//! model the firmware's loads and stores reach) and BAR1 (inbound window 0 into agent RAM), each decoded
//! from the absolute PCI address as a target device decodes it.

use super::*;
use crate::agentcfg::BAR0_SIZE;
use crate::immr::{ConfigRetry, Effect};

/// What the function did with the host's cycles, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionStats {
    pub config_reads: u64,
    pub config_writes: u64,
    /// Host configuration cycles not accepted while the configuration lock was set (each is retried).
    pub config_retries: u64,
    pub bar0_reads: u64,
    pub bar0_writes: u64,
    pub bar1_reads: u64,
    pub bar1_writes: u64,
    /// Host accesses to IMMR offsets with no modelled register (or the wrong width): reads answered
    /// with all ones, writes dropped, each logged.
    pub refused: u64,
    /// Memory cycles no BAR claimed (outside both, or memory decoding off): reads all ones, writes
    /// dropped.
    pub master_aborts: u64,
}

/// Where a memory cycle lands.
enum Decoded {
    Bar0(u32),
    Bar1(u64),
}

/// A memory cycle the function did not complete normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// No BAR claims the address (or memory decoding is off): the host sees a master abort.
    MasterAbort(String),
    /// BAR0 claims it but no modelled register answers: the access is refused and logged.
    Refused(String),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::MasterAbort(why) => write!(f, "master abort: {why}"),
            BusError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl Board {
    /// Whether the emulator plays the host's enumeration when the firmware releases the configuration
    /// lock (the default: nothing else enumerates a board in tests, benches and `bpnet-emu` runs). Off
    /// when a real host (QEMU's proxy device) owns the configuration header.
    pub fn set_standalone_host(&mut self, on: bool) {
        self.uc.get_data_mut().immr.set_standalone_host(on);
    }

    /// The configuration lock (PBFR[ACL]) is set: host configuration cycles are not accepted.
    pub fn config_locked(&self) -> bool {
        self.uc.get_data().immr.cfg.locked()
    }

    /// INTA# as driven on the bus: the message unit's outbound interrupt through OMIMR, gated by the
    /// command register's INTx-disable bit.
    pub fn intx_level(&self) -> bool {
        self.uc.get_data().immr.intx_level()
    }

    pub fn function_stats(&self) -> FunctionStats {
        self.function_stats
    }

    /// Count a held configuration cycle the host gave up on.
    pub fn count_master_abort(&mut self) {
        self.function_stats.master_aborts += 1;
    }

    /// A host configuration read (`len` 1, 2 or 4 bytes at header `offset`).
    pub fn host_config_read(&mut self, offset: u32, len: u32) -> Result<u32, ConfigRetry> {
        self.host_sync();
        let r = self.uc.get_data().immr.host_config_read(offset, len);
        match r {
            Ok(_) => self.function_stats.config_reads += 1,
            Err(ConfigRetry) => self.function_stats.config_retries += 1,
        }
        r
    }

    /// A host configuration write.
    pub fn host_config_write(&mut self, offset: u32, len: u32, value: u32) -> Result<(), ConfigRetry> {
        self.host_sync();
        let r = self.uc.get_data_mut().immr.host_config_write(offset, len, value);
        match r {
            Ok(()) => self.function_stats.config_writes += 1,
            Err(ConfigRetry) => self.function_stats.config_retries += 1,
        }
        self.host_changed();
        r
    }

    /// PCI RST# from the bus (QEMU's device reset): the header registers the host writes go back to their
    /// reset values; the configuration lock and the agent itself are untouched (docs/REGISTERS.md).
    pub fn pci_function_reset(&mut self) {
        self.uc.get_data_mut().immr.pci_bus_reset();
        self.host_changed();
    }

    fn decode(&self, addr: u64, size: u32) -> Result<Decoded, BusError> {
        let immr = &self.uc.get_data().immr;
        if !immr.cfg.memory_enabled() {
            return Err(BusError::MasterAbort(format!(
                "memory cycle at {addr:#x} while the command register's memory space bit is clear"
            )));
        }
        let end = addr + u64::from(size);
        if let Some(bar0) = immr.cfg.bar0_base().map(u64::from) {
            if (bar0..bar0 + u64::from(BAR0_SIZE)).contains(&addr) {
                if end > bar0 + u64::from(BAR0_SIZE) {
                    return Err(BusError::MasterAbort(format!("{size} bytes at {addr:#x} run past BAR0's end")));
                }
                return Ok(Decoded::Bar0((addr - bar0) as u32));
            }
        }
        let pci = u32::try_from(addr)
            .map_err(|_| BusError::MasterAbort(format!("{addr:#x} is above 4 GiB: both BARs are 32-bit")))?;
        // BAR1 is inbound window 0 at PIBAR0, decoding while the window is enabled and assigned.
        let bar1 = u64::from(immr.pci.bar1() & !0xF);
        if let Some((_, len)) = immr.pci.inbound_target(0).filter(|_| bar1 != 0) {
            if (bar1..bar1 + len).contains(&addr) {
                // Window 0 is the first the translation tries.
                return immr.pci.inbound(pci, u64::from(size)).map(Decoded::Bar1).map_err(BusError::MasterAbort);
            }
        }
        Err(BusError::MasterAbort(format!("no BAR claims {size} bytes at PCI address {addr:#x}")))
    }

    /// A host memory read of `size` bytes (1, 2, 4 or 8) at absolute PCI address `addr`; the value is
    /// little-endian (byte `i` is the byte at `addr + i`). A master abort or a refused register reads all
    /// ones, as the host sees it; the error is returned too, counted here, for the caller to log.
    pub fn host_memory_read(&mut self, addr: u64, size: u32) -> (u64, Option<BusError>) {
        let ones = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
        let decoded = match self.decode(addr, size) {
            Ok(d) => d,
            Err(e) => {
                self.function_stats.master_aborts += 1;
                return (ones, Some(e));
            }
        };
        self.host_bar_reads += 1;
        self.host_sync();
        match decoded {
            Decoded::Bar0(offset) => {
                self.function_stats.bar0_reads += 1;
                let now = self.instructions();
                let r = if size > 4 {
                    Err(format!("{size}-byte access: IMMR registers are at most 4 bytes wide"))
                } else {
                    self.uc.get_data_mut().immr.host_read(offset, size, now)
                };
                self.host_changed();
                match r {
                    Ok(v) => (u64::from(v), None),
                    Err(why) => {
                        self.function_stats.refused += 1;
                        (ones, Some(BusError::Refused(format!("BAR0 read at IMMR+{offset:#x}: {why}"))))
                    }
                }
            }
            Decoded::Bar1(local) => {
                self.function_stats.bar1_reads += 1;
                let mut bytes = [0u8; 8];
                self.mem.ram.read(local, &mut bytes[..size as usize]);
                (u64::from_le_bytes(bytes), None)
            }
        }
    }

    /// A host memory write (see [`Board::host_memory_read`]); master aborts and refused registers drop the
    /// write.
    pub fn host_memory_write(&mut self, addr: u64, size: u32, value: u64) -> Option<BusError> {
        let decoded = match self.decode(addr, size) {
            Ok(d) => d,
            Err(e) => {
                self.function_stats.master_aborts += 1;
                return Some(e);
            }
        };
        self.host_bar_writes += 1;
        self.host_sync();
        match decoded {
            Decoded::Bar0(offset) => {
                self.function_stats.bar0_writes += 1;
                let now = self.instructions();
                let r = if size > 4 {
                    Err(format!("{size}-byte access: IMMR registers are at most 4 bytes wide"))
                } else {
                    self.uc.get_data_mut().immr.host_write(offset, size, value as u32, now)
                };
                let error = match r {
                    Ok(effect) => {
                        self.apply_host_effect(effect, now);
                        None
                    }
                    Err(why) => {
                        self.function_stats.refused += 1;
                        Some(BusError::Refused(format!("BAR0 write of {value:#x} at IMMR+{offset:#x}: {why}")))
                    }
                };
                self.host_changed();
                error
            }
            Decoded::Bar1(local) => {
                self.function_stats.bar1_writes += 1;
                self.mem.ram.write(local, &value.to_le_bytes()[..size as usize]);
                let _ = self.uc.ctl_remove_cache(local, local + u64::from(size));
                None
            }
        }
    }

    /// What a host register write asks of the rest of the board, as a core store's would (machine.rs).
    fn apply_host_effect(&mut self, effect: Option<Effect>, now: u64) {
        match effect {
            None | Some(Effect::WatchdogChanged) => {}
            Some(Effect::TimebaseEnable(on)) => self.uc.get_data_mut().tb.set_enabled(now, on),
            Some(Effect::Reset(cause)) => self.board_reset(cause),
            Some(Effect::PciLawChanged) => machine::sync_pci_mappings(&mut self.uc),
        }
    }
}
