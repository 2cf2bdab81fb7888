//! The internal memory-mapped registers (IMMR, 1 MiB at 0xE000_0000) as U-Boot leaves them on the
//! MPC8349EMDS, modelled from docs/REGISTERS.md and nothing else.
//!
//! Every register is accessed with exactly the width in the table; any other width, and any offset not in
//! the table, is refused with a message naming the register (or the lack of one), so that a driver bug or a
//! register the model lacks stops the run instead of reading zero.
//!
//! Blocks: system configuration (with the local bus and PCI local access windows), watchdog, IPIC, reset,
//! clocks, DUART, message unit, DMA controller, PCI outbound (ATMU) and inbound windows. The devices with
//! behaviour live in their own modules; this one decodes offsets, widths and byte order.
//!
//! Byte order: most blocks are big-endian, the core's own order. Unicorn passes MMIO values as the CPU
//! register holds them (a big-endian `stw 0xAABBCCDD` arrives as 0xAABBCCDD), so a big-endian register just
//! stores the value. The little-endian blocks (DMA, message unit) go through [`le_register`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::agentcfg::{self, AgentConfig, CMD_MASTER, CMD_MEMORY, CONFIG_ADDRESS, CONFIG_DATA};
use crate::bus::BusModel;
use crate::dma::{self, Dma};
use crate::duart::{self, Duart};
use crate::ipic::{self, Ipic, Sources};
use crate::memory::Memory;
use crate::msgunit::{self, MessageUnit};
use crate::pci::{self, PciWindows};
use crate::time::INSTRUCTIONS_PER_CSB_CYCLE;

pub const IMMR_BASE: u32 = 0xE000_0000;
pub const IMMR_SIZE: u32 = 0x10_0000;

/// The value a little-endian register holds when the core accesses it with `size` bytes and its register
/// holds `value` (or: the value to hand back for a read). A firmware that forgets `lwbrx`/`stwbrx` on such a
/// block then sees, and writes, byte-swapped values, exactly as on hardware.
pub fn le_register(value: u32, size: u32) -> u32 {
    match size {
        2 => u32::from((value as u16).swap_bytes()),
        4 => value.swap_bytes(),
        _ => value,
    }
}

/// System configuration.
pub const SPRIDR_VALUE: u32 = 0x8030_0300;
pub const SPCR_TBEN: u32 = 0x0040_0000;
const DDRLAWAR0_VALUE: u32 = 0x8000_001B;
const LAWBAR_MASK: u32 = 0xFFFF_F000;
const LAWAR_MASK: u32 = 0x8000_003F;
const LAWAR_EN: u32 = 0x8000_0000;

/// Watchdog.
pub const SWCRR_SWEN: u32 = 0x4;
pub const SWCRR_SWRI: u32 = 0x2;
pub const SWCRR_SWPR: u32 = 0x1;
const SWCRR_MASK: u32 = 0xFFFF_0007;
const SWSRR_FIRST: u32 = 0x556C;
const SWSRR_SECOND: u32 = 0xAA39;
const WATCHDOG_PRESCALE: u64 = 65536;

/// Reset block.
pub const RCWLR_VALUE: u32 = 0x0404_0000;
/// Agent reset configuration: PCIHOST = 0 (agent), PCI64 = 1, BMS = 0, SWEN = 0 (watchdog off).
pub const RCWHR_VALUE: u32 = 0x4000_0000;
const RCWHR_SWEN: u32 = 0x0080_0000;
pub const RSR_SWHR: u32 = 0x1000;
pub const RSR_SWRS: u32 = 0x8;
pub const RSR_HRS: u32 = 0x1;
const RPR_KEY: u32 = 0x5253_5445;
const RCR_SWHR: u32 = 0x2;
const RCR_SWSR: u32 = 0x1;
const RCER_CRE: u32 = 0x1;

/// Clocks.
pub const SPMR_VALUE: u32 = 0x0404_0000;

/// Local bus LAW 0 as U-Boot leaves it on the EMDS: the flash, 32 MiB at 0xFE00_0000.
const LBLAWBAR0_VALUE: u32 = 0xFE00_0000;
const LBLAWAR0_VALUE: u32 = 0x8000_0018;

const UART_BASES: [u32; 2] = [0x4500, 0x4600];
/// UART1's scratch register: firmware writes bench markers there.
pub const UART1_USCR: u32 = 0x4607;

/// The message unit and DMA blocks: little-endian registers.
const MU_BLOCK: std::ops::Range<u32> = 0x8000..0x8100;
const DMA_BLOCK: std::ops::Range<u32> = 0x8100..0x8300;
const IPIC_BLOCK: std::ops::Range<u32> = 0x700..0x800;

/// Fixed registers: offset, width in bytes, name.
const REGISTERS: &[(u32, u32, &str)] = &[
    (0x000, 4, "IMMRBAR"),
    (0x020, 4, "LBLAWBAR0"),
    (0x024, 4, "LBLAWAR0"),
    (0x060, 4, "PCILAWBAR0"),
    (0x064, 4, "PCILAWAR0"),
    (0x068, 4, "PCILAWBAR1"),
    (0x06C, 4, "PCILAWAR1"),
    (0x0A0, 4, "DDRLAWBAR0"),
    (0x0A4, 4, "DDRLAWAR0"),
    (0x0A8, 4, "DDRLAWBAR1"),
    (0x0AC, 4, "DDRLAWAR1"),
    (0x108, 4, "SPRIDR"),
    (0x110, 4, "SPCR"),
    (0x204, 4, "SWCRR"),
    (0x208, 4, "SWCNR"),
    (0x20E, 2, "SWSRR"),
    (0x900, 4, "RCWLR"),
    (0x904, 4, "RCWHR"),
    (0x910, 4, "RSR"),
    (0x914, 4, "RMR"),
    (0x918, 4, "RPR"),
    (0x91C, 4, "RCR"),
    (0x920, 4, "RCER"),
    (0xA00, 4, "SPMR"),
    (0xA04, 4, "OCCR"),
    (0xA08, 4, "SCCR"),
    (ipic::SICFR, 4, "SICFR"),
    (ipic::SIVCR, 4, "SIVCR"),
    (ipic::SIPNR_H, 4, "SIPNR_H"),
    (ipic::SIPNR_L, 4, "SIPNR_L"),
    (ipic::SIPRR_A, 4, "SIPRR_A"),
    (ipic::SIPRR_A + 4, 4, "SIPRR_B"),
    (ipic::SIPRR_A + 8, 4, "SIPRR_C"),
    (ipic::SIPRR_D, 4, "SIPRR_D"),
    (ipic::SIMSR_H, 4, "SIMSR_H"),
    (ipic::SIMSR_L, 4, "SIMSR_L"),
    (ipic::SICNR, 4, "SICNR"),
    (ipic::SEPNR, 4, "SEPNR"),
    (ipic::SMPRR_A, 4, "SMPRR_A"),
    (ipic::SMPRR_B, 4, "SMPRR_B"),
    (ipic::SEMSR, 4, "SEMSR"),
    (ipic::SECNR, 4, "SECNR"),
    (ipic::SERSR, 4, "SERSR"),
    (ipic::SERMR, 4, "SERMR"),
    (ipic::SERCR, 4, "SERCR"),
    (ipic::SEFCR, 4, "SEFCR"),
    (msgunit::OMISR, 4, "OMISR"),
    (msgunit::OMIMR, 4, "OMIMR"),
    (msgunit::IMR0, 4, "IMR0"),
    (msgunit::IMR1, 4, "IMR1"),
    (msgunit::OMR0, 4, "OMR0"),
    (msgunit::OMR1, 4, "OMR1"),
    (msgunit::ODR, 4, "ODR"),
    (msgunit::IDR, 4, "IDR"),
    (msgunit::IMISR, 4, "IMISR"),
    (msgunit::IMIMR, 4, "IMIMR"),
    (dma::DGSR, 4, "DGSR"),
    (CONFIG_ADDRESS, 4, "CONFIG_ADDRESS"),
    (CONFIG_DATA, 4, "CONFIG_DATA"),
    (pci::PMCR, 4, "PMCR"),
    (pci::DTCR, 4, "DTCR"),
];

/// Every register: offset → (width, name). Built once from [`REGISTERS`] and the repeated blocks.
fn register_map() -> &'static BTreeMap<u32, (u32, String)> {
    static MAP: OnceLock<BTreeMap<u32, (u32, String)>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: BTreeMap<u32, (u32, String)> =
            REGISTERS.iter().map(|&(offset, width, name)| (offset, (width, name.to_string()))).collect();
        for (channel, &base) in UART_BASES.iter().enumerate() {
            for &(reg, name) in &duart::REGISTERS {
                let name = if channel == 0 { name.to_string() } else { format!("UART1 {name}") };
                map.insert(base + reg, (1, name));
            }
        }
        for n in 0..dma::CHANNELS {
            for &(reg, name) in &dma::REGISTERS {
                map.insert(dma::BASE + dma::STRIDE * n as u32 + reg, (4, format!("DMA{n} {name}")));
            }
        }
        for n in 0..6 {
            let (t, b, c) = pci::outbound_offsets(n);
            map.insert(t, (4, format!("POTAR{n}")));
            map.insert(b, (4, format!("POBAR{n}")));
            map.insert(c, (4, format!("POCMR{n}")));
        }
        for (n, &(t, b, e, w)) in pci::INBOUND_OFFSETS.iter().enumerate() {
            map.insert(t, (4, format!("PITAR{n}")));
            map.insert(b, (4, format!("PIBAR{n}")));
            if let Some(e) = e {
                map.insert(e, (4, format!("PIEBAR{n}")));
            }
            map.insert(w, (4, format!("PIWAR{n}")));
        }
        map
    })
}

/// A register found for an access.
#[derive(Debug, Clone, Copy)]
struct Register {
    offset: u32,
    width: u32,
    name: &'static str,
}

fn find_register(offset: u32) -> Option<Register> {
    let (&start, (width, name)) = register_map().range(..=offset).next_back()?;
    (offset < start + width).then_some(Register { offset: start, width: *width, name: name.as_str() })
}

/// Something a register write asks of the rest of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// SPCR[TBEN] changed.
    TimebaseEnable(bool),
    /// A software hard reset was requested (RCR[SWHR] while RCER[CRE]); the value is the RSR bit to record.
    Reset(u32),
    /// The watchdog was configured or serviced: its expiry moved.
    WatchdogChanged,
    /// A PCI local access window moved: the local memory map must follow.
    PciLawChanged,
}

/// Where the emulator's stand-in for the host's enumeration puts BAR0 (IMMR) when no real host enumerates
/// (see [`Immr::set_standalone_host`]): the 1 MiB below BAR1.
pub const STANDALONE_BAR0_ADDRESS: u32 = bpnet_contract::EMULATED_BAR_ADDRESS - agentcfg::BAR0_SIZE;

/// A host configuration cycle the function did not accept: the configuration lock is set, so the host
/// bridge must retry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRetry;

/// The system watchdog (block at 0x200). It counts CSB cycles (÷65536 with SWPR) from its last load.
#[derive(Debug, Clone)]
pub struct Watchdog {
    swcrr: u32,
    written: bool,
    /// Instruction count at which the counter was last loaded with SWTC.
    loaded_at: u64,
    /// 0x556C has been written and 0xAA39 is expected.
    armed_service: bool,
}

impl Watchdog {
    /// The reset value: SWTC = 0xFFFF, SWRI and SWPR set, SWEN from the reset configuration word. The table
    /// gives the fields but not this value; SWRI/SWPR set is the conservative choice (a forgotten watchdog
    /// resets the board after the longest period rather than raising a machine check quickly).
    fn new(now: u64) -> Watchdog {
        let swen = if RCWHR_VALUE & RCWHR_SWEN != 0 { SWCRR_SWEN } else { 0 };
        Watchdog {
            swcrr: 0xFFFF_0000 | SWCRR_SWRI | SWCRR_SWPR | swen,
            written: false,
            loaded_at: now,
            armed_service: false,
        }
    }

    fn enabled(&self) -> bool {
        self.swcrr & SWCRR_SWEN != 0
    }

    fn instructions_per_count(&self) -> u64 {
        let prescale = if self.swcrr & SWCRR_SWPR != 0 { WATCHDOG_PRESCALE } else { 1 };
        prescale * INSTRUCTIONS_PER_CSB_CYCLE
    }

    fn start_count(&self) -> u64 {
        u64::from(self.swcrr >> 16)
    }

    fn count(&self, now: u64) -> u32 {
        if !self.enabled() {
            return self.swcrr >> 16;
        }
        let elapsed = now.saturating_sub(self.loaded_at) / self.instructions_per_count();
        self.start_count().saturating_sub(elapsed) as u32
    }

    /// Instruction count at which the counter reaches zero, if it is running.
    pub fn expiry(&self) -> Option<u64> {
        self.enabled().then(|| self.loaded_at + self.start_count().max(1) * self.instructions_per_count())
    }

    /// On expiry: does it reset the board (SWRI) or raise a machine check?
    pub fn resets_on_expiry(&self) -> bool {
        self.swcrr & SWCRR_SWRI != 0
    }

    /// After a machine-check expiry the counter starts over from SWTC.
    pub fn reload(&mut self, now: u64) {
        self.loaded_at = now;
    }
}

/// The whole IMMR model.
#[derive(Debug)]
pub struct Immr {
    lblaw: [u32; 2],
    ddrlawbar: [u32; 2],
    ddrlawar: [u32; 2],
    spcr: u32,
    pub watchdog: Watchdog,
    rsr: u32,
    rmr: u32,
    rcer: u32,
    occr: u32,
    sccr: u32,
    pub uarts: [Duart; 2],
    pub(crate) ipic: Ipic,
    pub(crate) mu: MessageUnit,
    pub(crate) dma: Dma,
    pub(crate) pci: PciWindows,
    /// The PCI configuration header (agent mode).
    pub(crate) cfg: AgentConfig,
    /// No host enumerates this board: when the firmware releases the configuration lock the model assigns
    /// the BARs itself, as a host's enumeration would (kept across resets).
    standalone_host: bool,
    /// What DMA reaches (nothing until the board attaches its memories).
    pub(crate) mem: Memory,
}

/// Why an access was refused: the text names the register or says there is none.
pub type Refusal = String;

impl Immr {
    /// The state at hand-over after power-on.
    pub fn new(now: u64) -> Immr {
        Immr {
            lblaw: [LBLAWBAR0_VALUE, LBLAWAR0_VALUE],
            ddrlawbar: [0, 0],
            ddrlawar: [DDRLAWAR0_VALUE, 0],
            spcr: SPCR_TBEN,
            watchdog: Watchdog::new(now),
            rsr: RSR_HRS,
            rmr: 0,
            rcer: 0,
            occr: 0,
            sccr: 0,
            uarts: [Duart::default(), Duart::default()],
            ipic: Ipic::default(),
            mu: MessageUnit::default(),
            dma: Dma::new(BusModel::default()),
            pci: PciWindows::new(),
            cfg: AgentConfig::new(),
            standalone_host: false,
            mem: Memory::EMPTY,
        }
    }

    /// The board's memories and bus model (kept across resets).
    pub(crate) fn attach(&mut self, mem: Memory, bus: BusModel) {
        self.mem = mem;
        self.dma = Dma::new(bus);
    }

    /// The state after a software hard reset or a watchdog reset: everything back to reset values except
    /// RSR, which accumulates `cause`. Unread UART output survives (it was already on the wire).
    /// DMA transfers in flight are abandoned; statistics and the INTA# count are kept.
    pub fn after_reset(&self, now: u64, cause: u32) -> Immr {
        let mut next = self.power_on(now);
        next.rsr = self.rsr | cause;
        next
    }

    /// The state after power returns: as [`Immr::new`] (RSR reports only the hard reset), with the board's
    /// memories, bus model, statistics and the UART output already on the wire kept.
    pub fn power_on(&self, now: u64) -> Immr {
        let mut next = Immr::new(now);
        for (new, old) in next.uarts.iter_mut().zip(&self.uarts) {
            new.output.clone_from(&old.output);
        }
        next.mem = self.mem;
        next.standalone_host = self.standalone_host;
        next.dma = self.dma.after_reset();
        next.mu.carry_count(&self.mu);
        next
    }

    /// Play the host's enumeration on this board (no real host will): once the firmware releases the
    /// configuration lock, BAR1 = [`bpnet_contract::EMULATED_BAR_ADDRESS`], BAR0 =
    /// [`STANDALONE_BAR0_ADDRESS`], command = memory | bus master, written through the header as a host's
    /// configuration cycles would be.
    pub fn set_standalone_host(&mut self, on: bool) {
        self.standalone_host = on;
        if on && !self.cfg.locked() {
            self.enumerate();
        }
    }

    pub fn standalone_host(&self) -> bool {
        self.standalone_host
    }

    fn enumerate(&mut self) {
        let writes = [
            (agentcfg::BAR0, STANDALONE_BAR0_ADDRESS),
            (agentcfg::BAR1, bpnet_contract::EMULATED_BAR_ADDRESS),
            (agentcfg::COMMAND, u32::from(CMD_MEMORY | CMD_MASTER)),
        ];
        for (offset, value) in writes {
            self.cfg.write(offset, 4, value, &mut self.pci, false);
        }
    }

    /// INTA# as driven on the bus: the message unit's outbound interrupt through OMIMR, gated by the
    /// command register's INTx-disable bit.
    pub fn intx_level(&self) -> bool {
        self.cfg.intx_level(self.mu.inta())
    }

    /// A host configuration read of `len` bytes at `offset`; all ones for an access that is not a
    /// naturally aligned 1, 2 or 4 bytes in the header.
    pub fn host_config_read(&self, offset: u32, len: u32) -> Result<u32, ConfigRetry> {
        if self.cfg.locked() {
            return Err(ConfigRetry);
        }
        if !agentcfg::valid_access(offset, len) {
            return Ok(u32::MAX);
        }
        Ok(self.cfg.read(offset, len, &self.pci, self.mu.inta()))
    }

    /// A host configuration write; an access that is not naturally aligned in the header is dropped.
    pub fn host_config_write(&mut self, offset: u32, len: u32, value: u32) -> Result<(), ConfigRetry> {
        if self.cfg.locked() {
            return Err(ConfigRetry);
        }
        if agentcfg::valid_access(offset, len) {
            self.cfg.write(offset, len, value, &mut self.pci, false);
        }
        Ok(())
    }

    /// The header offset a CONFIG_DATA access of `size` bytes at IMMR `offset` reaches.
    fn config_data_register(&self, offset: u32, size: u32) -> Result<u32, Refusal> {
        let lane = offset - CONFIG_DATA;
        if !matches!(size, 1 | 2 | 4) || lane % size != 0 {
            return Err(format!("{size}-byte access to CONFIG_DATA+{lane}: not naturally aligned in the data port"));
        }
        self.cfg.own_register(lane)
    }

    /// PCI RST# from the bus (docs/REGISTERS.md): the host-written header registers to their reset values
    /// (BAR0, BAR1 = PIBAR0, command, interrupt line); the lock stays as the agent left it.
    pub fn pci_bus_reset(&mut self) {
        self.cfg.bus_reset();
        self.pci.set_bar1(0);
    }

    /// Which interrupt sources assert.
    fn sources(&self) -> Sources {
        Sources {
            uart: [self.uarts[0].interrupt_pending(), self.uarts[1].interrupt_pending()],
            message_unit: self.mu.agent_interrupt(),
            dma: self.dma.interrupt(),
        }
    }

    /// The core's external interrupt input: a pending source enabled in the IPIC.
    pub fn external_interrupt(&self) -> bool {
        self.ipic.active(self.sources()).is_some()
    }

    /// The next instruction count at which a device changes state by itself.
    pub fn next_event(&self) -> Option<u64> {
        self.dma.next_event()
    }

    /// Bring the devices up to instruction count `now`.
    pub(crate) fn advance(&mut self, now: u64) {
        if self.dma.next_event().is_some_and(|t| t <= now) {
            let cx = dma::Context { mem: self.mem, pci: &self.pci };
            self.dma.advance(now, cx);
        }
    }

    /// Enabled PCI local access windows (start, length).
    pub fn pci_law_ranges(&self) -> Vec<(u64, u64)> {
        self.pci.law_ranges()
    }

    pub fn timebase_enabled(&self) -> bool {
        self.spcr & SPCR_TBEN != 0
    }

    pub fn rsr(&self) -> u32 {
        self.rsr
    }

    /// Check an access against the table: the register, or a refusal naming what is wrong.
    fn check(offset: u32, size: u32) -> Result<Register, Refusal> {
        match find_register(offset) {
            None => Err(format!("IMMR offset {offset:#x} is not a modelled register")),
            Some(reg) if reg.offset != offset || reg.width != size => Err(format!(
                "{size}-byte access to {} (IMMR+{:#x}, a {}-byte register)",
                reg.name, reg.offset, reg.width
            )),
            Some(reg) => Ok(reg),
        }
    }

    fn uart(offset: u32) -> Option<(usize, u32)> {
        UART_BASES
            .iter()
            .enumerate()
            .find(|(_, base)| (**base..**base + 0x100).contains(&offset))
            .map(|(i, base)| (i, offset - base))
    }

    /// A read of `size` bytes at `offset` at instruction count `now`.
    pub(crate) fn read(&mut self, offset: u32, size: u32, now: u64) -> Result<u32, Refusal> {
        if (CONFIG_DATA..CONFIG_DATA + 4).contains(&offset) {
            // The data port is little-endian: the core's load sees the header's bytes swapped.
            let reg = self.config_data_register(offset, size)?;
            return Ok(le_register(self.cfg.read(reg, size, &self.pci, self.mu.inta()), size));
        }
        let reg = Self::check(offset, size)?;
        self.advance(now);
        if let Some((channel, r)) = Self::uart(offset) {
            return self.uarts[channel].read(r).map(u32::from).map_err(|e| format!("{}: {e}", reg.name));
        }
        let unmodelled = || format!("{} read is not modelled", reg.name);
        if MU_BLOCK.contains(&offset) {
            return self.mu.read(offset).map(|v| le_register(v, 4)).ok_or_else(unmodelled);
        }
        if DMA_BLOCK.contains(&offset) {
            return self.dma.read(offset).map(|v| le_register(v, 4)).ok_or_else(unmodelled);
        }
        if IPIC_BLOCK.contains(&offset) {
            return self.ipic.read(offset, self.sources()).ok_or_else(unmodelled);
        }
        if let Some(v) = self.pci.read(offset) {
            return Ok(v);
        }
        Ok(match offset {
            0x000 => IMMR_BASE,
            0x020 => self.lblaw[0],
            0x024 => self.lblaw[1],
            0x0A0 => self.ddrlawbar[0],
            0x0A4 => self.ddrlawar[0],
            0x0A8 => self.ddrlawbar[1],
            0x0AC => self.ddrlawar[1],
            0x108 => SPRIDR_VALUE,
            0x110 => self.spcr,
            0x204 => self.watchdog.swcrr,
            0x208 => self.watchdog.count(now),
            0x20E => 0,
            CONFIG_ADDRESS => self.cfg.config_address(),
            0x900 => RCWLR_VALUE,
            0x904 => RCWHR_VALUE,
            0x910 => self.rsr,
            0x914 => self.rmr,
            // Write-only in effect: the key and the command do not read back.
            0x918 | 0x91C => 0,
            0x920 => self.rcer,
            0xA00 => SPMR_VALUE,
            0xA04 => self.occr,
            0xA08 => self.sccr,
            _ => return Err(format!("{} read is not modelled", reg.name)),
        })
    }

    /// A write of `size` bytes of `value` at `offset` at instruction count `now`.
    pub(crate) fn write(&mut self, offset: u32, size: u32, value: u32, now: u64) -> Result<Option<Effect>, Refusal> {
        if (CONFIG_DATA..CONFIG_DATA + 4).contains(&offset) {
            let reg = self.config_data_register(offset, size)?;
            // The agent's own cycles are accepted with the lock set: that is how it releases it.
            let was_locked = self.cfg.locked();
            self.cfg.write(reg, size, le_register(value, size), &mut self.pci, true);
            if was_locked && !self.cfg.locked() && self.standalone_host {
                self.enumerate();
            }
            return Ok(None);
        }
        let reg = Self::check(offset, size)?;
        self.advance(now);
        let named = |e: String| format!("{}: {e}", reg.name);
        if let Some((channel, r)) = Self::uart(offset) {
            self.uarts[channel].write(r, value as u8).map_err(|e| named(e.to_string()))?;
            return Ok(None);
        }
        if MU_BLOCK.contains(&offset) {
            self.mu.write(offset, le_register(value, 4)).map_err(named)?;
            return Ok(None);
        }
        if DMA_BLOCK.contains(&offset) {
            let cx = dma::Context { mem: self.mem, pci: &self.pci };
            self.dma.write(offset, le_register(value, 4), now, cx).map_err(named)?;
            return Ok(None);
        }
        if IPIC_BLOCK.contains(&offset) {
            self.ipic.write(offset, value).map_err(named)?;
            return Ok(None);
        }
        if self.pci.read(offset).is_some() {
            let moved = self.pci.write(offset, value, reg.name)?;
            return Ok(moved.then_some(Effect::PciLawChanged));
        }
        let read_only = || Err(format!("{} is read-only", reg.name));
        match offset {
            0x000 => return Err("IMMR relocation not modelled (write to IMMRBAR)".to_string()),
            // Plain registers: the flash stays where U-Boot put it.
            0x020 => self.lblaw[0] = value,
            0x024 => self.lblaw[1] = value,
            0x0A0 | 0x0A4 | 0x0A8 | 0x0AC => return self.write_law(offset, value, reg.name),
            0x108 | 0x208 | 0x900 | 0x904 | 0x920 | 0xA00 => return read_only(),
            0x110 => {
                let before = self.timebase_enabled();
                self.spcr = value;
                let after = self.timebase_enabled();
                return Ok((before != after).then_some(Effect::TimebaseEnable(after)));
            }
            0x204 => {
                // Write-once after reset: later writes are ignored by the hardware.
                if self.watchdog.written {
                    return Ok(None);
                }
                self.watchdog.written = true;
                self.watchdog.swcrr = value & SWCRR_MASK;
                self.watchdog.loaded_at = now;
                self.watchdog.armed_service = false;
                return Ok(Some(Effect::WatchdogChanged));
            }
            0x20E => {
                let wd = &mut self.watchdog;
                if value == SWSRR_SECOND && wd.armed_service {
                    wd.armed_service = false;
                    wd.loaded_at = now;
                    return Ok(Some(Effect::WatchdogChanged));
                }
                wd.armed_service = value == SWSRR_FIRST;
            }
            0x910 => self.rsr &= !value,
            0x914 => self.rmr = value,
            0x918 => {
                if value == RPR_KEY {
                    self.rcer |= RCER_CRE;
                }
            }
            0x91C => {
                if self.rcer & RCER_CRE != 0 {
                    if value & RCR_SWHR != 0 {
                        return Ok(Some(Effect::Reset(RSR_SWHR)));
                    }
                    if value & RCR_SWSR != 0 {
                        return Err("software soft reset (RCR[SWSR]) not modelled".to_string());
                    }
                }
            }
            0xA04 => self.occr = value,
            0xA08 => self.sccr = value,
            CONFIG_ADDRESS => self.cfg.set_config_address(value),
            _ => return Err(format!("{} write is not modelled", reg.name)),
        }
        Ok(None)
    }

    /// A host read through BAR0 of `size` bytes at IMMR `offset`, as the PCI bus carries it (byte `i` of
    /// the value = the byte at `offset + i`). The register is read with the code the core's loads use;
    /// PCI is little-endian, so a big-endian register's bytes arrive swapped and a little-endian
    /// register's (message unit, DMA) arrive as its value. `Err`: nothing answers there (no modelled
    /// register, or the width is not the register's).
    pub(crate) fn host_read(&mut self, offset: u32, size: u32, now: u64) -> Result<u32, Refusal> {
        let core = self.read(offset, size, now)?;
        Ok(le_register(core, size))
    }

    /// A host write through BAR0 (see [`Immr::host_read`] for the byte order). The message unit's registers
    /// have the host's meaning: IDR and IMR0/1 set inbound status, ODR and OMISR clear outbound status
    /// (write 1 to clear); the agent's own registers there (OMR0/1, IMISR, IMIMR) are refused. Everything
    /// else goes through the code the core's stores use.
    pub(crate) fn host_write(
        &mut self,
        offset: u32,
        size: u32,
        value: u32,
        now: u64,
    ) -> Result<Option<Effect>, Refusal> {
        if MU_BLOCK.contains(&offset) {
            let reg = Self::check(offset, size)?;
            self.advance(now);
            let v = value;
            match offset {
                msgunit::IDR => self.mu.host_ring_doorbell(v),
                msgunit::IMR0 => self.mu.host_write_message(0, v),
                msgunit::IMR1 => self.mu.host_write_message(1, v),
                msgunit::ODR => self.mu.host_clear_odr(v),
                msgunit::OMISR => self.mu.host_clear_outbound(v),
                msgunit::OMIMR => self.mu.write(offset, v).map_err(|e| format!("{}: {e}", reg.name))?,
                _ => return Err(format!("{} is written by the agent, not the host", reg.name)),
            }
            return Ok(None);
        }
        self.write(offset, size, le_register(value, size), now)
    }

    /// DDR local access windows: the RAM map is fixed (LAW0 = 256 MiB at 0, LAW1 off), so a write may store
    /// the value it already has, or disable LAW1 again, but a change of the map is refused.
    fn write_law(&mut self, offset: u32, value: u32, name: &str) -> Result<Option<Effect>, Refusal> {
        let index = ((offset - 0xA0) / 8) as usize;
        let is_bar = offset & 4 == 0;
        let masked = value & if is_bar { LAWBAR_MASK } else { LAWAR_MASK };
        let unchanged = if is_bar { masked == self.ddrlawbar[index] } else { masked == self.ddrlawar[index] };
        let law1_off = index == 1 && (is_bar || masked & LAWAR_EN == 0);
        if !(unchanged || law1_off) {
            return Err(format!("DDR local access window change not modelled ({name} = {value:#010x})"));
        }
        if is_bar {
            self.ddrlawbar[index] = masked;
        } else {
            self.ddrlawar[index] = masked;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_values() {
        let mut immr = Immr::new(0);
        assert_eq!(immr.read(0x108, 4, 0), Ok(SPRIDR_VALUE));
        assert_eq!(immr.read(0x000, 4, 0), Ok(IMMR_BASE));
        assert_eq!(immr.read(0x0A4, 4, 0), Ok(0x8000_001B));
        assert_eq!(immr.read(0x0AC, 4, 0), Ok(0));
        assert_eq!(immr.read(0x110, 4, 0), Ok(SPCR_TBEN));
        assert_eq!(immr.read(0xA00, 4, 0), Ok(0x0404_0000));
        assert_eq!(immr.read(0x910, 4, 0), Ok(RSR_HRS));
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut immr = Immr::new(0);
        assert!(immr.read(0x7F0, 4, 0).unwrap_err().contains("0x7f0"));
        assert!(immr.read(0x109, 1, 0).unwrap_err().contains("SPRIDR"));
        assert!(immr.read(0x108, 2, 0).unwrap_err().contains("4-byte register"));
        assert!(immr.write(0x000, 4, 0xF000_0000, 0).unwrap_err().contains("IMMR relocation not modelled"));
        assert!(immr.write(0x108, 4, 0, 0).unwrap_err().contains("read-only"));
        assert!(immr.read(0x4500, 4, 0).unwrap_err().contains("1-byte register"));
        assert!(immr.write(0x0A4, 4, 0x8000_001C, 0).is_err());
        assert_eq!(immr.write(0x0A4, 4, 0x8000_001B, 0), Ok(None));
        assert_eq!(immr.write(0x0AC, 4, 0, 0), Ok(None));
        assert!(immr.write(0x0AC, 4, 0x8000_001B, 0).is_err());
    }

    #[test]
    fn reset_control() {
        let mut immr = Immr::new(0);
        assert_eq!(immr.write(0x91C, 4, RCR_SWHR, 0), Ok(None), "RCR ignored without CRE");
        immr.write(0x918, 4, RPR_KEY, 0).unwrap();
        assert_eq!(immr.read(0x920, 4, 0), Ok(RCER_CRE));
        assert_eq!(immr.write(0x91C, 4, RCR_SWHR, 0), Ok(Some(Effect::Reset(RSR_SWHR))));
        let after = immr.after_reset(10, RSR_SWHR);
        assert_eq!(after.rsr(), RSR_HRS | RSR_SWHR);
        let mut after = after;
        after.write(0x910, 4, RSR_HRS, 0).unwrap();
        assert_eq!(after.rsr(), RSR_SWHR);
        assert_eq!(after.read(0x920, 4, 0), Ok(0));
    }

    #[test]
    fn watchdog_counts_and_is_serviced() {
        let mut immr = Immr::new(0);
        assert_eq!(immr.watchdog.expiry(), None, "SWEN clear in the agent's reset configuration");
        // SWTC = 100, enabled, machine check on expiry, no prescaler.
        immr.write(0x204, 4, (100 << 16) | SWCRR_SWEN, 1000).unwrap();
        assert_eq!(immr.watchdog.expiry(), Some(1000 + 200));
        assert_eq!(immr.read(0x208, 4, 1000 + 20), Ok(90));
        immr.write(0x20E, 2, SWSRR_FIRST, 1100).unwrap();
        immr.write(0x20E, 2, SWSRR_SECOND, 1100).unwrap();
        assert_eq!(immr.watchdog.expiry(), Some(1100 + 200));
        // A wrong sequence does not service it.
        immr.write(0x20E, 2, SWSRR_SECOND, 1150).unwrap();
        assert_eq!(immr.watchdog.expiry(), Some(1300));
        // Write-once.
        immr.write(0x204, 4, 0, 1200).unwrap();
        assert_eq!(immr.watchdog.expiry(), Some(1300));
        assert!(!immr.watchdog.resets_on_expiry());
        assert!(immr.read(0x20C, 2, 0).is_err());
    }

    #[test]
    fn le_helper_swaps() {
        assert_eq!(le_register(0xAABB_CCDD, 4), 0xDDCC_BBAA);
        assert_eq!(le_register(0xAABB, 2), 0xBBAA);
        assert_eq!(le_register(0xAA, 1), 0xAA);
    }
}
