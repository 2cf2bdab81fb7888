//! The board: its files (agent RAM, host RAM, flash), Unicorn instance, loader hand-over, the run loop, and
//! the host's side of the PCI bus.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bpnet_test_support::host::HostAccessError;
use unicorn_engine::unicorn_const::{uc_error, Arch, HookType, Mode, Prot};
use unicorn_engine::{Context, PpcCpuModel, RegisterPPC, UcHookId, Unicorn};

use crate::bus::BusModel;
use crate::dma::{DmaStats, CHANNELS};
use crate::elf::{self, Image, LoadError, RAM_SIZE};
use crate::flash::{FLASH_BASE, FLASH_SIZE};
use crate::immr::{Immr, IMMR_BASE, IMMR_SIZE, RSR_HRS, RSR_SWRS};
use crate::log::LogDecoder;
use crate::machine::{self, Machine, Stop, Uc, Wiring, STUB_PAGE, STUB_PAGE_SIZE, VECTOR_AREA_END};
use crate::memory::{open_existing_shared, open_shared, overlay_memfd, Memory, Region, SharedFile};
use crate::msgunit::OutboundDoorbells;
use crate::outcome::{Exception, Outcome};
use crate::pci::INBOUND_OFFSETS;
use crate::ppc::{self, msr, srr1, vector, TimeInsn};
use crate::realtime::{self, HostLink, Wake};
use crate::time::{TimeBase, PS_PER_INSTRUCTION};

/// Name of the symbol marking the log ring.
pub const LOG_RING_SYMBOL: &str = "__bpnet_log_ring";
/// Names of the symbols giving the shared region (the RAM behind the agent's BAR): start and length.
pub const SHARED_SYMBOL: &str = "__bpnet_shared";
pub const SHARED_LEN_SYMBOL: &str = "__bpnet_shared_len";
/// Stack pointer at hand-over (U-Boot leaves r1 on its own stack; this one is below 16 MiB and 16-byte
/// aligned).
pub const INITIAL_SP: u32 = 0x00FF_FFF0;
/// Instructions per slice: between slices console output and the log ring are passed on, so a slice is a
/// few milliseconds of host time.
const SLICE: u64 = 4_000_000;
/// `until` address for firmware runs: unaligned, so it is never a PC.
const NEVER: u64 = 0xFFFF_FFFF;

/// Host RAM when nothing else is said: 64 MiB.
pub const DEFAULT_HOST_RAM_SIZE: u64 = 64 << 20;

/// How to build a board.
#[derive(Debug, Clone)]
pub struct Config {
    /// File backing the 256 MiB of DDR, mapped shared so other processes can map the same RAM. Created
    /// if missing and sized to 256 MiB; existing contents are kept. `None`: a temporary file.
    pub ram_file: Option<PathBuf>,
    /// Stop with [`Outcome::InstructionLimit`] after exactly this many instructions.
    pub max_instructions: Option<u64>,
    /// File standing for the host's physical memory (PCI memory address = file offset), mapped shared: a
    /// Linux guest's RAM file. Created if missing; a shorter file is extended to `host_ram_size`, a longer
    /// one keeps its length (its owner decides the size) and all of it is host RAM. `None`: a temporary
    /// file.
    pub host_ram_file: Option<PathBuf>,
    /// Size of host RAM (at least; see `host_ram_file`).
    pub host_ram_size: u64,
    /// The host RAM file belongs to a live host (a guest's RAM file): it must exist and be at least
    /// `host_ram_size` bytes, and is neither created nor resized.
    pub host_ram_existing: bool,
    /// File holding the 32 MiB NOR flash image, so its contents survive restarts. Created erased (0xFF) if
    /// missing. `None`: a temporary erased flash.
    pub flash_file: Option<PathBuf>,
    /// Cut the power half-way through the N-th flash program/erase operation of the run (1-based).
    pub power_cut_at: Option<u64>,
    /// Timing of DMA across the backplane.
    pub bus: BusModel,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ram_file: None,
            max_instructions: None,
            host_ram_file: None,
            host_ram_size: DEFAULT_HOST_RAM_SIZE,
            host_ram_existing: false,
            flash_file: None,
            power_cut_at: None,
            bus: BusModel::default(),
        }
    }
}

/// The board could not be built.
#[derive(Debug)]
pub enum SetupError {
    RamFile(PathBuf, std::io::Error),
    HostRamFile(PathBuf, std::io::Error),
    FlashFile(PathBuf, std::io::Error),
    Unicorn(&'static str, uc_error),
    SharedRegion(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::RamFile(path, e) => write!(f, "RAM file {}: {e}", path.display()),
            SetupError::HostRamFile(path, e) => {
                write!(f, "host RAM file {}: {e}", path.display())
            }
            SetupError::FlashFile(path, e) => write!(f, "flash file {}: {e}", path.display()),
            SetupError::Unicorn(what, e) => write!(f, "Unicorn: {what}: {e:?}"),
            SetupError::SharedRegion(why) => write!(f, "shared region: {why}"),
        }
    }
}

/// A value the firmware wrote to UART1's scratch register (USCR) to mark a point in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub value: u8,
    /// Instruction count of the store.
    pub instructions: u64,
    /// Virtual time of the store in picoseconds.
    pub virtual_ps: u64,
}

impl std::error::Error for SetupError {}

/// Guest RAM access outside the 256 MiB of DDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutsideRam {
    pub addr: u32,
    pub len: usize,
}

impl fmt::Display for OutsideRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes at {:#x} are outside RAM (0..{RAM_SIZE:#x})", self.len, self.addr)
    }
}

impl std::error::Error for OutsideRam {}

/// Receives [`Output`] as it happens.
type OutputSink = Box<dyn FnMut(Output<'_>)>;

/// Output as it happens, for a live console.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Bytes the firmware wrote to UART0's transmitter, verbatim.
    Console(&'a [u8]),
    /// One decoded log line, `log: …`, without newline.
    Log(&'a str),
}

/// What [`Board::load_elf`] found.
#[derive(Debug, Clone)]
pub struct LoadInfo {
    pub entry: u32,
    /// (address, memory size) of each loaded segment.
    pub segments: Vec<(u32, u32)>,
    /// Address of the log ring, when the image has one and a defmt table to decode it.
    pub log_ring: Option<u32>,
    /// The shared region (address, length), when the image names it ([`SHARED_SYMBOL`],
    /// [`SHARED_LEN_SYMBOL`]).
    pub shared_region: Option<(u32, u32)>,
    /// Timebase/decrementer instructions found and hooked.
    pub time_instructions: usize,
    /// Things worth telling the user (logging off and why).
    pub notes: Vec<String>,
}

/// The emulated MPC8349EMDS.
pub struct Board {
    // Field order is drop order: Unicorn (and the device models inside it, which hold regions of the files)
    // must go before the mappings.
    uc: Uc<'static>,
    initial_cpu: Context,
    ram: SharedFile,
    host_ram: SharedFile,
    flash: SharedFile,
    mem: Memory,
    image: Option<Image>,
    time_hooks: Vec<UcHookId>,
    log: Option<LogDecoder>,
    console: Vec<u8>,
    uart1: Vec<u8>,
    log_lines: Vec<String>,
    exceptions: Vec<Exception>,
    resets: u32,
    skipped: u64,
    max_instructions: Option<u64>,
    /// Return [`Outcome::Idle`] when the firmware starts to wait for a timer or a device, before the
    /// wait passes ([`Board::set_stop_at_wait`]); `wait_stop` is the count where it last did.
    stop_at_wait: bool,
    wait_stop: Option<u64>,
    /// [`Board::set_turn_end`].
    turn_end: Option<u64>,
    output: Option<OutputSink>,
    host_bar_reads: u64,
    host_bar_writes: u64,
    power_cuts: u32,
    /// Bytes of console output before the last power cut: what the board printed after it starts there.
    console_at_power_cut: usize,
    /// Instructions per slice.
    slice: u64,
    /// A live host paced in real time (see [`crate::realtime`]).
    live: Option<LiveHost>,
    /// Where outbound doorbells are forwarded (kept across firmware loads).
    outbound: Option<OutboundDoorbells>,
    /// The part of RAM with a memory file of its own (see [`Board::share_region`]): address, length.
    shared: Option<(u32, u32)>,
    /// The memory files of shared regions, kept open (and mapped) for the board's life.
    shared_files: Vec<File>,
}

/// A host on the other side of the bus that runs in real time.
struct LiveHost {
    link: Box<dyn HostLink>,
    /// Why the host side ended, once it has.
    end: Option<String>,
    /// Board resets the host requested.
    resets: u32,
}

fn uc_err(what: &'static str) -> impl FnOnce(uc_error) -> SetupError {
    move |e| SetupError::Unicorn(what, e)
}

impl Board {
    /// Build the board: RAM, IMMR model, stubs and hooks. Load firmware with [`Board::load_elf`].
    pub fn new(config: Config) -> Result<Board, SetupError> {
        // A longer RAM file keeps its length; the board uses its first 256 MiB.
        let mut ram = open_shared(config.ram_file.as_deref(), "bpnet-emu-ram-", u64::from(RAM_SIZE), 0, true)
            .map_err(|(p, e)| SetupError::RamFile(p, e))?;
        let mut host_ram = match (&config.host_ram_file, config.host_ram_existing) {
            (Some(path), true) => open_existing_shared(path, config.host_ram_size)
                .map_err(|e| SetupError::HostRamFile(path.clone(), e))?,
            (path, _) => open_shared(path.as_deref(), "bpnet-emu-host-ram-", config.host_ram_size, 0, true)
                .map_err(|(p, e)| SetupError::HostRamFile(p, e))?,
        };
        let mut flash =
            open_shared(config.flash_file.as_deref(), "bpnet-emu-flash-", u64::from(FLASH_SIZE), 0xFF, false)
                .map_err(|(p, e)| SetupError::FlashFile(p, e))?;
        // SAFETY: the three mappings are fields of the Board and are dropped after `uc`, whose device models
        // hold these regions (field order in Board); the Board itself keeps them in `mem` only while it lives.
        let (mem, flash_region) = unsafe {
            (
                Memory {
                    ram: Region::new(ram.map.as_mut_ptr(), u64::from(RAM_SIZE)),
                    host: Region::of(&mut host_ram.map),
                },
                Region::of(&mut flash.map),
            )
        };

        let wiring = Wiring { mem, flash: flash_region, bus: config.bus, power_cut_at: config.power_cut_at };
        let mut uc = Unicorn::new_with_data(Arch::PPC, Mode::PPC32 | Mode::BIG_ENDIAN, Machine::new(wiring))
            .map_err(uc_err("create PPC32 engine"))?;
        // The CPU model must be chosen before anything is mapped.
        uc.ctl_set_cpu_model(PpcCpuModel::UC_CPU_PPC32_E300C1 as i32).map_err(uc_err("select e300c1"))?;
        // SAFETY: the mapping is at least RAM_SIZE bytes, page aligned, and outlives `uc` (field order in
        // Board).
        unsafe { uc.mem_map_ptr(0, u64::from(RAM_SIZE), Prot::ALL, ram.map.as_mut_ptr().cast()) }
            .map_err(uc_err("map DDR"))?;
        uc.mmio_map(
            u64::from(IMMR_BASE),
            u64::from(IMMR_SIZE),
            Some(machine::on_immr_read),
            Some(machine::on_immr_write),
        )
        .map_err(uc_err("map IMMR"))?;
        uc.mmio_map(
            u64::from(FLASH_BASE),
            u64::from(FLASH_SIZE),
            Some(machine::on_flash_read),
            Some(machine::on_flash_write),
        )
        .map_err(uc_err("map flash"))?;
        machine::sync_pci_mappings(&mut uc);
        uc.mem_map(u64::from(STUB_PAGE), u64::from(STUB_PAGE_SIZE), Prot::ALL).map_err(uc_err("map stub page"))?;
        for (addr, words) in machine::stub_code() {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            uc.mem_write(u64::from(addr), &bytes).map_err(uc_err("write stubs"))?;
        }
        uc.mem_protect(u64::from(STUB_PAGE), u64::from(STUB_PAGE_SIZE), Prot::EXEC).map_err(uc_err("protect stubs"))?;

        // begin > end: the hook covers every address.
        uc.add_block_hook(1, 0, machine::on_block).map_err(uc_err("block hook"))?;
        uc.add_intr_hook(machine::on_interrupt).map_err(uc_err("interrupt hook"))?;
        uc.add_mem_hook(HookType::MEM_UNMAPPED, 1, 0, |uc, kind, addr, size, _| {
            machine::on_bad_access(uc, kind, addr, size)
        })
        .map_err(uc_err("unmapped hook"))?;
        // Fetching from an MMIO region (flash, PCI windows) is a protection fault in Unicorn.
        uc.add_mem_hook(HookType::MEM_FETCH_PROT, 1, 0, |uc, kind, addr, size, _| {
            machine::on_bad_access(uc, kind, addr, size)
        })
        .map_err(uc_err("fetch protection hook"))?;
        let stub_end = u64::from(STUB_PAGE + STUB_PAGE_SIZE - 1);
        uc.add_mem_hook(
            HookType::MEM_READ_PROT | HookType::MEM_WRITE_PROT,
            u64::from(STUB_PAGE),
            stub_end,
            |uc, kind, addr, size, _| machine::on_bad_access(uc, kind, addr, size),
        )
        .map_err(uc_err("stub page hook"))?;
        uc.add_code_hook(u64::from(STUB_PAGE), stub_end, machine::on_stub_code).map_err(uc_err("stub code hook"))?;
        uc.add_code_hook(0, u64::from(VECTOR_AREA_END - 1), machine::on_vector_code).map_err(uc_err("vector hook"))?;

        let initial_cpu = uc.context_init().map_err(uc_err("save reset CPU state"))?;
        Ok(Board {
            uc,
            initial_cpu,
            ram,
            host_ram,
            flash,
            mem,
            image: None,
            time_hooks: Vec::new(),
            log: None,
            console: Vec::new(),
            uart1: Vec::new(),
            log_lines: Vec::new(),
            exceptions: Vec::new(),
            resets: 0,
            skipped: 0,
            max_instructions: config.max_instructions,
            stop_at_wait: false,
            wait_stop: None,
            turn_end: None,
            output: None,
            host_bar_reads: 0,
            host_bar_writes: 0,
            power_cuts: 0,
            console_at_power_cut: 0,
            slice: SLICE,
            live: None,
            outbound: None,
            shared: None,
            shared_files: Vec::new(),
        })
    }

    /// Power the board on with this firmware, as U-Boot's `go` would hand over to it: segments loaded
    /// (the rest of each segment zeroed), PC = entry, MSR = ME|RI, r1 = [`INITIAL_SP`], r3 = 1 (argc),
    /// r4 = 0. Loading again powers the board on afresh.
    pub fn load_elf(&mut self, elf: &[u8]) -> Result<LoadInfo, LoadError> {
        self.load_program(elf, None)
    }

    /// Power the board on with a boot stage (`bpnet-boot.elf`), as U-Boot's `bootcmd` would start it
    /// from flash: the boot stage is what is loaded and started at power-on and at every reset; it starts
    /// the firmware it finds in flash (or receives through the BAR) itself. `firmware` is the ELF of the
    /// image it will start (the payload of `bpnet-firmware.img`): its defmt table decodes the log ring,
    /// and its timebase instructions are hooked at the addresses the payload is copied to (a payload
    /// that differs from this ELF runs with unhooked timebase instructions there).
    pub fn load_boot(&mut self, boot: &[u8], firmware: Option<&[u8]>) -> Result<LoadInfo, LoadError> {
        self.load_program(boot, firmware)
    }

    /// Write bytes into the flash file as a programmer would before the board runs (provisioning a slot
    /// with an image): no command cycles, no timing. `Err` if the range leaves the 32 MiB.
    pub fn provision_flash(&mut self, offset: u32, data: &[u8]) -> Result<(), String> {
        let end = u64::from(offset) + data.len() as u64;
        if end > u64::from(FLASH_SIZE) {
            return Err(format!(
                "{} bytes at flash offset {offset:#x} run past the {FLASH_SIZE:#x}-byte flash",
                data.len()
            ));
        }
        self.flash.map[offset as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn load_program(&mut self, elf: &[u8], firmware: Option<&[u8]>) -> Result<LoadInfo, LoadError> {
        let image = elf::parse(elf)?;
        let extra = firmware.map(elf::parse).transpose()?;
        let mut notes = Vec::new();

        // The defmt table and the ring symbol are both needed for logging; with a boot stage, the
        // firmware's (the boot stage logs to the console only).
        self.log = None;
        let (table_elf, ring) = match (&extra, firmware) {
            (Some(fw), Some(bytes)) => (bytes, fw.symbol(LOG_RING_SYMBOL)),
            _ => (elf, image.symbol(LOG_RING_SYMBOL)),
        };
        match (defmt_decoder::Table::parse(table_elf), ring) {
            (Ok(Some(table)), Some(ring)) => self.log = Some(LogDecoder::new(table, ring)),
            (Ok(Some(_)), None) => notes.push(format!("defmt table but no {LOG_RING_SYMBOL} symbol: log decoding off")),
            (Ok(None), Some(_)) => notes.push("log ring but no .defmt table: log decoding off".to_string()),
            (Ok(None), None) => {}
            (Err(e), _) => notes.push(format!("defmt table unusable ({e}): log decoding off")),
        }

        for hook in self.time_hooks.drain(..) {
            let _ = self.uc.remove_hook(hook);
        }
        for segment in
            image.segments.iter().chain(extra.iter().flat_map(|e| e.segments.iter())).filter(|s| s.executable)
        {
            for (i, w) in segment.data.chunks_exact(4).enumerate() {
                let addr = segment.addr + 4 * i as u32;
                let word = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
                // The vector area has its own hook that decodes as it runs.
                let Some(insn) = TimeInsn::decode(word).filter(|_| addr >= VECTOR_AREA_END) else {
                    continue;
                };
                let hook = self
                    .uc
                    .add_code_hook(u64::from(addr), u64::from(addr), move |uc, _, _| {
                        machine::on_time_insn(uc, addr, insn)
                    })
                    .map_err(|e| LoadError::Malformed(format!("cannot hook instruction at {addr:#x}: {e:?}")))?;
                self.time_hooks.push(hook);
            }
        }

        let shared_region = image.symbol(SHARED_SYMBOL).zip(image.symbol(SHARED_LEN_SYMBOL));
        let info = LoadInfo {
            entry: image.entry,
            segments: image.segments.iter().map(|s| (s.addr, s.mem_size)).collect(),
            log_ring: self.log.as_ref().and(ring),
            shared_region,
            time_instructions: self.time_hooks.len(),
            notes,
        };
        self.image = Some(image);
        self.console.clear();
        self.uart1.clear();
        self.log_lines.clear();
        self.exceptions.clear();
        self.resets = 0;
        self.skipped = 0;
        self.power_cuts = 0;
        self.console_at_power_cut = 0;
        self.host_bar_reads = 0;
        self.host_bar_writes = 0;
        let m = self.uc.get_data_mut();
        m.flash.reset();
        let mut fresh = Machine::new(m.wiring);
        fresh.pci_mapped = std::mem::take(&mut m.pci_mapped);
        fresh.immr.mu.set_outbound_doorbells(self.outbound.clone());
        *m = fresh;
        machine::sync_pci_mappings(&mut self.uc);
        self.hand_over();
        Ok(info)
    }

    /// Reset the CPU, reload the image and start it at its entry point.
    fn hand_over(&mut self) {
        let Some(image) = &self.image else { return };
        let _ = self.uc.context_restore(&self.initial_cpu);
        for s in &image.segments {
            // The loader checked addr + mem_size <= RAM_SIZE and data.len() <= mem_size.
            let at = u64::from(s.addr);
            self.mem.ram.write(at, &s.data);
            let tail = u64::from(s.mem_size) - s.data.len() as u64;
            self.mem.ram.fill(at + s.data.len() as u64, tail, 0);
        }
        // RAM was written behind Unicorn's back and the BATs were reset: drop translations and code.
        let _ = self.uc.ctl_flush_tlb();
        let _ = self.uc.ctl_flush_tb();
        let regs = [
            (RegisterPPC::MSR as i32, ppc::MSR_AT_GO),
            (machine::gpr_id(1), INITIAL_SP),
            (machine::gpr_id(3), 1),
            (machine::gpr_id(4), 0),
            (RegisterPPC::PC as i32, image.entry),
        ];
        for (reg, value) in regs {
            let _ = self.uc.reg_write(reg, u64::from(value));
        }
    }

    /// The agent is reset from outside, by its hard-reset line (a chassis manager, or the host through the
    /// board's reset control): the firmware starts again as after U-Boot's `go`, RAM outside the loaded
    /// image kept.
    pub fn hard_reset(&mut self) {
        self.board_reset(RSR_HRS);
    }

    /// Software hard reset or watchdog reset: devices back to reset values except RSR, which records
    /// `cause`; RAM outside the loaded segments is kept.
    fn board_reset(&mut self, cause: u32) {
        self.resets += 1;
        let m = self.uc.get_data_mut();
        let now = m.done;
        m.immr = m.immr.after_reset(now, cause);
        m.flash.reset();
        self.devices_restarted(now);
    }

    /// Power fails half-way through a flash operation: the flash keeps what the operation had done, RAM
    /// loses everything, and the board starts as at power-on (RSR reports only the hard reset).
    fn power_cut(&mut self) {
        self.power_cuts += 1;
        self.console_at_power_cut = self.console.len();
        let m = self.uc.get_data_mut();
        let now = m.done;
        m.flash.power_cut();
        m.immr = m.immr.power_on(now);
        self.mem.ram.fill(0, u64::from(RAM_SIZE), 0);
        self.devices_restarted(now);
    }

    /// After a reset of the devices at `now`: core-side state, the PCI map and the log follow; the image is
    /// reloaded and started.
    fn devices_restarted(&mut self, now: u64) {
        let m = self.uc.get_data_mut();
        m.tb = TimeBase::new(m.immr.timebase_enabled(), now);
        m.stop = None;
        m.not_self_branch = None;
        m.irq = false;
        m.immr.dma.take_dirty();
        machine::sync_pci_mappings(&mut self.uc);
        if let Some(log) = &mut self.log {
            log.after_board_reset();
        }
        self.hand_over();
    }

    /// Set the instruction limit for later runs (`None`: no limit).
    pub fn set_max_instructions(&mut self, limit: Option<u64>) {
        self.max_instructions = limit;
    }

    /// End the next runs at the first block boundary at or after `count` instructions (or earlier), as
    /// [`Outcome::InstructionLimit`]: a host model's turn, which need not be exact, and so costs none of
    /// the translated-code flushing an exact limit ([`Board::set_max_instructions`]) needs.
    pub fn set_turn_end(&mut self, count: Option<u64>) {
        self.turn_end = count;
    }

    /// Whether [`Board::run`] returns [`Outcome::Idle`] when the firmware starts waiting for a timer or
    /// a device, before the wait passes, so whoever drives the board (a host model that is never the
    /// bottleneck) can act first. Each wait stops once: the next run lets it pass.
    pub fn set_stop_at_wait(&mut self, on: bool) {
        self.stop_at_wait = on;
    }

    /// Receive console output and log lines as they happen (between slices of a few milliseconds).
    pub fn set_output(&mut self, sink: impl FnMut(Output<'_>) + 'static) {
        self.output = Some(Box::new(sink));
    }

    /// Run until the firmware idles, halts, faults or reaches the instruction limit, or a live host side
    /// ends (reported as [`Outcome::Idle`] at the current PC; see [`Board::host_end`]). Can be called again
    /// after [`Outcome::InstructionLimit`] with a higher limit.
    pub fn run(&mut self) -> Outcome {
        if self.image.is_none() {
            return Outcome::Unmodelled {
                addr: 0,
                size: 0,
                write: false,
                pc: 0,
                what: "no firmware loaded".to_string(),
            };
        }
        let outcome = self.run_loop();
        self.pass_output();
        outcome
    }

    fn run_loop(&mut self) -> Outcome {
        loop {
            if let Some(outcome) = self.timer_events() {
                return outcome;
            }
            if self.device_events() {
                continue;
            }
            let now = self.instructions();
            let pc = self.pc();
            let msr = self.msr();
            // The external interrupt outranks the decrementer.
            if self.uc.get_data().irq && msr & msr::EE != 0 {
                self.deliver(vector::EXTERNAL, pc, 0, None, false);
                continue;
            }
            if self.uc.get_data().tb.dec_pending && msr & msr::EE != 0 {
                self.uc.get_data_mut().tb.dec_pending = false;
                self.deliver(vector::DECREMENTER, pc, 0, None, false);
                continue;
            }
            if self.max_instructions.is_some_and(|l| now >= l) || self.turn_end.is_some_and(|l| now >= l) {
                return Outcome::InstructionLimit;
            }
            if machine::fetch_word(&self.uc, pc) == Some(ppc::BRANCH_TO_SELF) {
                let wake_up = self.wake_up_time(msr);
                // With a live host, a wait with interrupts on passes in real time.
                if self.live.is_some() && msr & msr::EE != 0 {
                    if let Some(outcome) = self.wait_live(now, wake_up) {
                        return outcome;
                    }
                    continue;
                }
                match wake_up {
                    // A driver that wants its turn before the wait: once per wait.
                    Some(at) if self.stop_at_wait && at > now && self.wait_stop != Some(now) => {
                        self.wait_stop = Some(now);
                        return Outcome::Idle { pc };
                    }
                    // Spinning in `b .` until the event: one instruction per cycle, so jump there directly.
                    Some(at) => {
                        let at =
                            [self.max_instructions, self.turn_end].into_iter().flatten().fold(at, u64::min).max(now);
                        self.skipped += at - now;
                        self.uc.get_data_mut().done = at;
                        continue;
                    }
                    None if msr & msr::EE != 0 => return Outcome::Idle { pc },
                    None => {
                        return Outcome::Halted {
                            pc,
                            last_exception: self.exceptions.last().copied(),
                            checkstop: false,
                        };
                    }
                }
            }

            let slice = self.slice;
            let turn_end = self.turn_end;
            let m = self.uc.get_data_mut();
            m.deadline = [
                Some(now + slice),
                turn_end,
                m.tb.dec_expiry(),
                m.immr.watchdog.expiry(),
                m.immr.next_event(),
                m.flash.cut_time(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX);
            m.limit = self.max_instructions;
            m.limit_reached = false;
            let result = self.uc.emu_start(u64::from(pc), NEVER, 0, 0);
            self.settle();
            self.pass_output();
            if let Some(outcome) = self.after_slice(result) {
                return outcome;
            }
            if let Some(outcome) = self.live_checks() {
                return outcome;
            }
            let m = self.uc.get_data_mut();
            if m.limit_reached && m.stop.is_none() {
                if let Some(outcome) = self.final_approach() {
                    return outcome;
                }
            }
        }
    }

    /// The firmware waits in `b .` with interrupts on and a live host is attached: block on the host for at
    /// most the time to `wake_up` (the next scheduled event, or the instruction limit), then advance
    /// virtual time by what was waited, capped there ([`crate::realtime`]).
    fn wait_live(&mut self, now: u64, wake_up: Option<u64>) -> Option<Outcome> {
        if let Some(outcome) = self.check_shared_window() {
            return Some(outcome);
        }
        let at = match (wake_up, self.max_instructions) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        }
        .map(|a| a.max(now));
        let timeout = at.map(|a| realtime::duration_of(a - now));
        let short = timeout.is_some_and(|t| t < realtime::MIN_REAL_WAIT);
        let live = self.live.as_mut()?;
        let started = Instant::now();
        let wake = if short { live.link.poll() } else { live.link.wait(timeout) };
        let waited = realtime::instructions_in(started.elapsed());
        let advance = match at {
            Some(a) if short => a - now,
            Some(a) => waited.min(a - now),
            None => waited,
        };
        self.skipped += advance;
        self.uc.get_data_mut().done = now + advance;
        self.take_wake(wake)
    }

    /// Between slices with a live host: what it did meanwhile, and the shared region's window.
    fn live_checks(&mut self) -> Option<Outcome> {
        let wake = self.live.as_mut()?.link.poll();
        if let Some(outcome) = self.check_shared_window() {
            return Some(outcome);
        }
        self.take_wake(wake)
    }

    /// Act on what the live host did: a reset of the agent first (the doorbells that came with it are for
    /// the agent after it), then the doorbells; the end of the host side ends the run.
    fn take_wake(&mut self, wake: Wake) -> Option<Outcome> {
        if wake.reset {
            if let Some(live) = &mut self.live {
                live.resets += 1;
            }
            self.board_reset(RSR_HRS);
        }
        if wake.doorbells != 0 {
            self.host_ring_doorbell(wake.doorbells);
        }
        if let Some(end) = wake.end {
            if let Some(live) = &mut self.live {
                live.end = Some(end);
            }
            return Some(Outcome::Idle { pc: self.pc() });
        }
        None
    }

    /// The shared region is what the host sees as the agent's BAR; inbound window 0 must translate onto
    /// exactly it, or the firmware's BAR and the host's would differ without anyone noticing.
    fn check_shared_window(&self) -> Option<Outcome> {
        let (base, len) = self.shared?;
        let (local, size) = self.uc.get_data().immr.pci.inbound_target(0)?;
        if (local, size) == (u64::from(base), u64::from(len)) {
            return None;
        }
        let pc = self.pc();
        Some(Outcome::Unmodelled {
            addr: IMMR_BASE + INBOUND_OFFSETS[0].3,
            size: 4,
            write: true,
            pc,
            what: format!(
                "inbound window 0 translates onto agent RAM {local:#x}..{:#x}, but the host's view of the BAR \
                 (the ivshmem shared memory) is the shared region {base:#x}..{:#x}",
                local + size,
                u64::from(base) + u64::from(len)
            ),
        })
    }

    // ---- a live host (the ivshmem server mode) ----

    /// Give the shared region (`len` bytes of RAM at `addr`) a memory file of its own, mapped shared in
    /// place of the RAM file's pages, and return it: handed to another process (QEMU's ivshmem device),
    /// it shows exactly what the firmware sees there. Once a live host is attached, inbound window 0 must
    /// translate onto exactly this region (checked between slices; a mismatch stops the run).
    pub fn share_region(&mut self, addr: u32, len: u32) -> Result<File, SetupError> {
        if self.shared.is_some() {
            return Err(SetupError::SharedRegion("already shared".to_string()));
        }
        if !len.is_power_of_two() {
            return Err(SetupError::SharedRegion(format!("{len:#x} bytes is not a power of two (a BAR's size)")));
        }
        let file = overlay_memfd(&mut self.ram.map, u64::from(addr), u64::from(len), "bpnet-shared-region")
            .map_err(|e| SetupError::SharedRegion(format!("{len:#x} bytes at {addr:#x}: {e}")))?;
        // Unicorn reads and writes RAM through the same addresses; translated code there (none is
        // expected in the shared region) must not outlive the pages it came from.
        let _ = self.uc.ctl_remove_cache(u64::from(addr), u64::from(addr) + u64::from(len));
        self.shared = Some((addr, len));
        self.shared_files.push(file.try_clone().map_err(|e| SetupError::SharedRegion(e.to_string()))?);
        Ok(file)
    }

    /// Forward the firmware's outbound doorbells to `sink` as they are rung, acknowledging them (the host
    /// never reads ODR then); `None` holds them in ODR for [`Board::host_read_odr`] again. Kept across
    /// resets and firmware loads.
    pub fn connect_outbound_doorbells(&mut self, sink: Option<OutboundDoorbells>) {
        self.outbound = sink.clone();
        self.uc.get_data_mut().immr.mu.set_outbound_doorbells(sink);
    }

    /// Attach a live host: from now on waits in `b .` with interrupts on pass in real time on `link`,
    /// slices are shorter so the host is heard while the firmware is busy, and [`Board::run`] also
    /// returns (as [`Outcome::Idle`]) when the host side ends ([`Board::host_end`]).
    pub fn attach_live_host(&mut self, link: Box<dyn HostLink>) {
        self.live = Some(LiveHost { link, end: None, resets: 0 });
        self.slice = realtime::LIVE_SLICE;
    }

    /// Why the live host side ended, if it did.
    pub fn host_end(&self) -> Option<&str> {
        self.live.as_ref().and_then(|l| l.end.as_deref())
    }

    /// Agent resets the live host requested.
    pub fn host_resets(&self) -> u32 {
        self.live.as_ref().map_or(0, |l| l.resets)
    }

    /// Run exactly up to the instruction limit with a counted run (only for the last partial block, so
    /// the cost of counting every instruction is paid once).
    fn final_approach(&mut self) -> Option<Outcome> {
        let limit = self.max_instructions?;
        let remaining = limit.saturating_sub(self.instructions());
        if remaining == 0 {
            return None;
        }
        let pc = self.pc();
        let m = self.uc.get_data_mut();
        m.final_approach = true;
        m.deadline = u64::MAX;
        // Blocks translated without Unicorn's per-instruction counter would ignore the count.
        let _ = self.uc.ctl_flush_tb();
        let result = self.uc.emu_start(u64::from(pc), NEVER, 0, remaining as usize);
        self.uc.get_data_mut().final_approach = false;
        self.settle();
        self.pass_output();
        self.after_slice(result)
    }

    /// Close the block the slice ended in (see [`machine`] for the counting rules).
    fn settle(&mut self) {
        let pc = self.pc();
        self.uc.get_data_mut().settle_at(pc, false);
    }

    /// Act on why the slice ended.
    fn after_slice(&mut self, result: Result<(), uc_error>) -> Option<Outcome> {
        let stop = self.uc.get_data_mut().stop.take();
        match stop {
            Some(Stop::Fault(outcome)) => Some(outcome),
            Some(Stop::Exception { intno, pc }) => self.cpu_exception(intno, pc),
            Some(Stop::Reset(cause)) => {
                self.board_reset(cause);
                None
            }
            Some(Stop::Interrupt | Stop::SelfLoop) => None,
            None => result.err().map(|e| {
                let pc = self.pc();
                Outcome::Unmodelled { addr: pc, size: 0, write: false, pc, what: format!("Unicorn stopped with {e:?}") }
            }),
        }
    }

    /// Decrementer and watchdog events due at the current instruction count.
    fn timer_events(&mut self) -> Option<Outcome> {
        let now = self.instructions();
        let m = self.uc.get_data_mut();
        if m.tb.dec_expiry().is_some_and(|at| at <= now) {
            m.tb.dec_expired(now);
        }
        if m.immr.watchdog.expiry().is_some_and(|at| at <= now) {
            if m.immr.watchdog.resets_on_expiry() {
                self.board_reset(RSR_SWRS);
                return None;
            }
            m.immr.watchdog.reload(now);
            let (pc, msr) = (self.pc(), self.msr());
            if msr & msr::ME == 0 {
                return Some(Outcome::Halted { pc, last_exception: self.exceptions.last().copied(), checkstop: true });
            }
            self.deliver(vector::MACHINE_CHECK, pc, 0, None, true);
        }
        None
    }

    /// Device events due now: a power cut (`true`: the board restarted), DMA completions, the end of a
    /// flash operation, the PCI map following the LAWs, translated code over RAM that DMA wrote dropped, and
    /// the interrupt line.
    fn device_events(&mut self) -> bool {
        let now = self.instructions();
        let m = self.uc.get_data_mut();
        if m.flash.cut_time().is_some_and(|t| t <= now) {
            self.power_cut();
            return true;
        }
        m.immr.advance(now);
        m.flash.advance(now);
        if m.pci_remap {
            machine::sync_pci_mappings(&mut self.uc);
        }
        let m = self.uc.get_data_mut();
        let dirty = m.immr.dma.take_dirty();
        m.irq = m.immr.external_interrupt();
        for (start, len) in dirty {
            let _ = self.uc.ctl_remove_cache(start, start + len);
        }
        false
    }

    /// When the core, parked in `b .`, would next be woken or something would happen: the watchdog always
    /// (not maskable), the decrementer if interrupts are on and the firmware has programmed it, a DMA
    /// completion, the end of a flash operation, a power cut.
    fn wake_up_time(&self, msr: u32) -> Option<u64> {
        let m = self.uc.get_data();
        let dec = (msr & msr::EE != 0 && m.tb.dec_armed).then(|| m.tb.dec_expiry()).flatten();
        [dec, m.immr.watchdog.expiry(), m.immr.next_event(), m.flash.busy_until(), m.flash.cut_time()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Deliver an exception the way the core would: SRR0/SRR1 (and DAR/DSISR) through an emulator stub,
    /// since Unicorn's API cannot write those SPRs; new MSR per the architecture; PC to the vector.
    fn deliver(&mut self, offset: u32, srr0: u32, reason: u32, dar_dsisr: Option<(u32, u32)>, machine_check: bool) {
        let old_msr = self.msr();
        let srr1 = (old_msr & ppc::SRR1_MSR_MASK) | reason;
        let mut new_msr = old_msr & ppc::MSR_KEPT_ON_EXCEPTION;
        if machine_check {
            new_msr &= !msr::ME;
        }
        // Translation and problem state off first: the stubs are fetched physically and use mtspr.
        let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(new_msr));
        self.run_stub(machine::STUB_SET_SRR, srr0, srr1);
        if let Some((dar, dsisr)) = dar_dsisr {
            self.run_stub(machine::STUB_SET_DAR_DSISR, dar, dsisr);
        }
        let address = ppc::vector_address(old_msr, offset);
        let _ = self.uc.reg_write(RegisterPPC::PC, u64::from(address));
        let instructions = self.instructions();
        self.exceptions.push(Exception { vector: offset, address, srr0, srr1, instructions });
    }

    /// Run a two-instruction stub with r3 = `a`, r4 = `b`; returns r3, r4 after it. The firmware's r3/r4
    /// are preserved. Stub instructions are not counted.
    fn run_stub(&mut self, entry: u32, a: u32, b: u32) -> (u32, u32) {
        let saved = (machine::read_gpr(&self.uc, 3), machine::read_gpr(&self.uc, 4));
        let _ = self.uc.reg_write(machine::gpr_id(3), u64::from(a));
        let _ = self.uc.reg_write(machine::gpr_id(4), u64::from(b));
        self.uc.get_data_mut().in_stub = true;
        let _ = self.uc.emu_start(u64::from(entry), u64::from(entry + machine::STUB_LEN), 0, 0);
        self.uc.get_data_mut().in_stub = false;
        let out = (machine::read_gpr(&self.uc, 3), machine::read_gpr(&self.uc, 4));
        let _ = self.uc.reg_write(machine::gpr_id(3), u64::from(saved.0));
        let _ = self.uc.reg_write(machine::gpr_id(4), u64::from(saved.1));
        out
    }

    /// A CPU exception Unicorn reported (its interrupt numbering) at the instruction `pc`.
    fn cpu_exception(&mut self, intno: u32, pc: u32) -> Option<Outcome> {
        let word = machine::fetch_word(&self.uc, pc).unwrap_or(0);
        // A handler that faults on its very first instruction (typically: no vector installed, so it
        // reads as an illegal instruction) would loop forever taking the same exception.
        if let Some(last) = self.exceptions.last().copied() {
            if pc == last.address && self.instructions() == last.instructions + 1 {
                return Some(Outcome::Halted { pc, last_exception: Some(last), checkstop: false });
            }
        }
        match intno {
            // Program: trap or privileged instruction (Unicorn uses one number for both).
            6 => {
                let reason = if ppc::is_trap(word) { srr1::TRAP } else { srr1::PRIVILEGED };
                self.deliver(vector::PROGRAM, pc, reason, None, false);
            }
            // "Hypervisor emulation assistance": what this QEMU raises for an illegal instruction.
            96 => self.deliver(vector::PROGRAM, pc, srr1::ILLEGAL, None, false),
            8 => self.deliver(vector::SYSTEM_CALL, pc + 4, 0, None, false),
            7 => self.deliver(vector::FP_UNAVAILABLE, pc, 0, None, false),
            // DSI: QEMU already set DAR and DSISR when it detected the fault.
            2 => self.deliver(vector::DSI, pc, 0, None, false),
            3 => self.deliver(vector::ISI, pc, srr1::ISI_PROTECTION, None, false),
            5 => {
                // QEMU raises alignment exceptions without DAR; form DAR and DSISR from the instruction.
                let dar = ppc::decode_mem_access(word).map_or(0, |a| {
                    let base = a.ra.map_or(0, |r| machine::read_gpr(&self.uc, r));
                    let index = a.rb.map_or(0, |r| machine::read_gpr(&self.uc, r));
                    base.wrapping_add(index).wrapping_add(a.displacement as u32)
                });
                self.deliver(vector::ALIGNMENT, pc, 0, Some((dar, ppc::alignment_dsisr(word))), false);
            }
            // 603-style software TLB misses: nothing maps the address through a BAT.
            78..=80 => {
                let msr = self.msr();
                let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(msr & !(msr::IR | msr::DR | msr::PR)));
                let (dmiss, imiss) = self.run_stub(machine::STUB_GET_MISS, 0, 0);
                let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(msr));
                let (addr, kind) = match intno {
                    78 => (imiss, "instruction fetch"),
                    79 => (dmiss, "data load"),
                    _ => (dmiss, "data store"),
                };
                return Some(Outcome::Unmodelled {
                    addr,
                    size: if intno == 78 { 4 } else { 0 },
                    write: intno == 80,
                    pc,
                    what: format!(
                        "{kind} with translation on and no BAT mapping (or permitting) the address; \
                         page-table translation is not modelled"
                    ),
                });
            }
            _ => {
                return Some(Outcome::Unmodelled {
                    addr: pc,
                    size: 4,
                    write: false,
                    pc,
                    what: format!("CPU exception {intno} (Unicorn numbering) is not modelled"),
                });
            }
        }
        None
    }

    /// Hand new UART output and log lines to the accessors and the live sink.
    fn pass_output(&mut self) {
        let m = self.uc.get_data_mut();
        let console = std::mem::take(&mut m.immr.uarts[0].output);
        let uart1 = std::mem::take(&mut m.immr.uarts[1].output);
        self.uart1.extend_from_slice(&uart1);
        let lines = match &mut self.log {
            Some(log) => {
                let ram = self.mem.ram;
                log.poll(|addr, len| {
                    let mut buf = vec![0u8; len];
                    ram.read(u64::from(addr), &mut buf).then_some(buf)
                })
            }
            None => Vec::new(),
        };
        if let Some(sink) = &mut self.output {
            if !console.is_empty() {
                sink(Output::Console(&console));
            }
            for line in &lines {
                sink(Output::Log(line));
            }
        }
        self.console.extend_from_slice(&console);
        self.log_lines.extend(lines);
    }

    /// Exact number of instructions executed since power-on (resets do not restart it).
    pub fn instructions(&self) -> u64 {
        self.uc.get_data().done
    }

    /// Count instructions per translation block from now on (on) or stop and forget (off). For finding
    /// where the firmware spends its instructions; [`Board::profile`] reports them per function.
    pub fn set_profiling(&mut self, on: bool) {
        let watched: Vec<u32> = self
            .image
            .iter()
            .flat_map(|i| i.symbols.iter())
            .filter(|(n, _)| ["memcpy", "memset", "memmove"].iter().any(|w| crate::elf::demangle(n).ends_with(w)))
            .map(|&(_, a)| a)
            .collect();
        let m = self.uc.get_data_mut();
        m.profile = on.then(Default::default);
        m.watched = if on { watched } else { Vec::new() };
        m.calls.clear();
    }

    /// When profiling, the calls of memcpy, memset and memmove by call site, most bytes first:
    /// (function, calling function, calls, bytes).
    pub fn profile_calls(&self) -> Vec<(String, String, u64, u64)> {
        let name = |addr: u32| self.symbol_at(addr).unwrap_or_else(|| format!("{addr:#010x}"));
        let mut out: Vec<_> = self
            .uc
            .get_data()
            .calls
            .iter()
            .map(|(&(callee, lr), &(calls, bytes))| (name(callee), name(lr.wrapping_sub(4)), calls, bytes))
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.3));
        out
    }

    fn symbol_at(&self, addr: u32) -> Option<String> {
        let image = self.image.as_ref()?;
        let best = image.symbols.iter().filter(|(n, a)| *a <= addr && !n.is_empty()).max_by_key(|(_, a)| *a)?;
        Some(crate::elf::demangle(&best.0))
    }

    /// Instructions per firmware function since profiling was turned on, most first: (function, count).
    /// Blocks outside every symbol are reported by address.
    pub fn profile(&self) -> Vec<(String, u64)> {
        let Some(blocks) = &self.uc.get_data().profile else { return Vec::new() };
        let mut symbols: Vec<(u32, &str)> =
            self.image.iter().flat_map(|i| i.symbols.iter().map(|(n, a)| (*a, n.as_str()))).collect();
        symbols.sort_unstable();
        let mut per: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (&addr, &n) in blocks {
            let at = symbols.partition_point(|&(a, _)| a <= addr);
            let name = match at.checked_sub(1) {
                Some(i) => crate::elf::demangle(symbols[i].1),
                None => format!("{addr:#010x}"),
            };
            *per.entry(name).or_default() += n;
        }
        let mut out: Vec<(String, u64)> = per.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Instructions counted without being emulated: the core spinning in `b .` until a timer fired.
    pub fn skipped_instructions(&self) -> u64 {
        self.skipped
    }

    /// Virtual time since power-on in picoseconds (1.875 ns per instruction at 533.33 MHz).
    pub fn virtual_time_ps(&self) -> u64 {
        self.instructions() * PS_PER_INSTRUCTION
    }

    /// Virtual time since power-on in nanoseconds.
    pub fn virtual_time_ns(&self) -> u64 {
        self.virtual_time_ps() / 1000
    }

    /// Everything the firmware wrote to UART0 (the console).
    pub fn console(&self) -> &[u8] {
        &self.console
    }

    /// Everything the firmware wrote to UART1.
    pub fn uart1_output(&self) -> &[u8] {
        &self.uart1
    }

    /// Queue bytes for the firmware to read from UART `channel` (0 or 1).
    pub fn uart_input(&mut self, channel: usize, bytes: &[u8]) {
        let m = self.uc.get_data_mut();
        if let Some(uart) = m.immr.uarts.get_mut(channel) {
            uart.receive(bytes);
        }
        m.irq = m.immr.external_interrupt();
    }

    /// Decoded log lines so far (`log: …`).
    pub fn log_lines(&self) -> &[String] {
        &self.log_lines
    }

    /// Exceptions delivered since the firmware was loaded.
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// Board resets (software hard reset, watchdog) since the firmware was loaded.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// The reset status register (cause of the last resets).
    pub fn rsr(&self) -> u32 {
        self.uc.get_data().immr.rsr()
    }

    pub fn pc(&self) -> u32 {
        machine::read_pc(&self.uc)
    }

    pub fn msr(&self) -> u32 {
        machine::read_msr(&self.uc)
    }

    /// General-purpose register `n` (0..=31).
    pub fn gpr(&self, n: u32) -> u32 {
        machine::read_gpr(&self.uc, n & 31)
    }

    /// The timebase as the firmware would read it now.
    pub fn timebase(&self) -> u64 {
        let m = self.uc.get_data();
        m.tb.tb(m.done)
    }

    /// The decrementer as the firmware would read it now.
    pub fn decrementer(&self) -> u32 {
        let m = self.uc.get_data();
        m.tb.dec(m.done)
    }

    /// Path of the file backing RAM (a temporary file unless configured).
    pub fn ram_path(&self) -> &Path {
        self.ram.file.path()
    }

    fn check_ram(addr: u32, len: usize) -> Result<usize, OutsideRam> {
        let start = addr as usize;
        match start.checked_add(len) {
            Some(end) if end <= RAM_SIZE as usize => Ok(start),
            _ => Err(OutsideRam { addr, len }),
        }
    }

    /// Copy guest RAM at physical `addr` into `buf`.
    pub fn read_ram(&self, addr: u32, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let start = Self::check_ram(addr, buf.len())?;
        self.mem.ram.read(start as u64, buf);
        Ok(())
    }

    /// Write guest RAM at physical `addr`. Translated code covering the range is discarded, so writing
    /// code works too.
    pub fn write_ram(&mut self, addr: u32, data: &[u8]) -> Result<(), OutsideRam> {
        let start = Self::check_ram(addr, data.len())?;
        self.mem.ram.write(start as u64, data);
        let _ = self.uc.ctl_remove_cache(u64::from(addr), u64::from(addr) + data.len() as u64);
        Ok(())
    }

    /// Read a big-endian word of guest RAM.
    pub fn read_u32(&self, addr: u32) -> Result<u32, OutsideRam> {
        let mut b = [0u8; 4];
        self.read_ram(addr, &mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Write a big-endian word of guest RAM.
    pub fn write_u32(&mut self, addr: u32, value: u32) -> Result<(), OutsideRam> {
        self.write_ram(addr, &value.to_be_bytes())
    }

    /// The IMMR model (register state), for inspection.
    pub fn immr(&self) -> &Immr {
        &self.uc.get_data().immr
    }

    /// Bench markers: every value written to UART1's scratch register, with when.
    pub fn markers(&self) -> &[Marker] {
        &self.uc.get_data().markers
    }

    // ---- NOR flash ----

    /// Path of the file holding the flash image.
    pub fn flash_path(&self) -> &Path {
        self.flash.file.path()
    }

    /// Copy the flash array at byte `offset` (from 0xFE00_0000) into `buf`, as the file holds it now (an
    /// operation in progress has not changed it yet). `false` if the range is outside the 32 MiB.
    pub fn read_flash(&self, offset: u32, buf: &mut [u8]) -> bool {
        self.uc.get_data().wiring.flash.read(u64::from(offset), buf)
    }

    /// Flash program-word and sector-erase operations started since the firmware was loaded.
    pub fn flash_operations(&self) -> u64 {
        self.uc.get_data().flash.operations()
    }

    /// Whether the flash is erasing a sector now.
    pub fn flash_erasing(&self) -> bool {
        self.uc.get_data().flash.erasing()
    }

    /// Power cuts injected since the firmware was loaded.
    pub fn power_cuts(&self) -> u32 {
        self.power_cuts
    }

    /// The console output since the last power cut (all of it if there was none).
    pub fn console_since_power_cut(&self) -> &[u8] {
        &self.console[self.console_at_power_cut.min(self.console.len())..]
    }

    // ---- DMA ----

    /// The timing model DMA transfers are charged with.
    pub fn bus_model(&self) -> BusModel {
        self.uc.get_data().immr.dma.bus()
    }

    /// Per-channel DMA statistics up to now (bytes moved per direction, busy virtual time, errors).
    pub fn dma_stats(&self) -> [DmaStats; CHANNELS] {
        let now = self.instructions();
        let dma = &self.uc.get_data().immr.dma;
        std::array::from_fn(|n| dma.stats(n, now))
    }

    // ---- the host's side of the PCI bus ----
    //
    // Each call is one host transaction on the bus; BAR reads and writes are counted (the message unit's
    // registers are in BAR0 on the real board, so its accessors count too). The calls are made between runs:
    // devices are brought up to the current virtual time first.

    /// Path of the file standing for host RAM.
    pub fn host_ram_path(&self) -> &Path {
        self.host_ram.file.path()
    }

    /// Size of host RAM in bytes.
    pub fn host_ram_size(&self) -> u64 {
        self.mem.host.len()
    }

    fn host_ram_error(pci_addr: u64, len: usize, size: u64) -> HostAccessError {
        HostAccessError { pci_addr, len, reason: format!("outside host RAM (0..{size:#x})") }
    }

    /// Read host RAM at PCI address `pci_addr` (the host reading its own memory: not a bus access).
    pub fn read_host_ram(&self, pci_addr: u64, buf: &mut [u8]) -> Result<(), HostAccessError> {
        if self.mem.host.read(pci_addr, buf) {
            Ok(())
        } else {
            Err(Self::host_ram_error(pci_addr, buf.len(), self.mem.host.len()))
        }
    }

    /// Write host RAM at PCI address `pci_addr` (the host writing its own memory: not a bus access).
    pub fn write_host_ram(&mut self, pci_addr: u64, data: &[u8]) -> Result<(), HostAccessError> {
        if self.mem.host.write(pci_addr, data) {
            Ok(())
        } else {
            Err(Self::host_ram_error(pci_addr, data.len(), self.mem.host.len()))
        }
    }

    /// Devices up to the current virtual time before the host looks at them.
    fn host_sync(&mut self) {
        let now = self.instructions();
        let m = self.uc.get_data_mut();
        m.immr.advance(now);
        m.flash.advance(now);
        self.host_changed();
    }

    /// After a host operation: translated code over RAM written behind the core dropped, the interrupt
    /// line refreshed.
    fn host_changed(&mut self) {
        let m = self.uc.get_data_mut();
        m.irq = m.immr.external_interrupt();
        for (start, len) in m.immr.dma.take_dirty() {
            let _ = self.uc.ctl_remove_cache(start, start + len);
        }
    }

    fn inbound(&self, pci_addr: u32, len: usize) -> Result<u64, HostAccessError> {
        self.uc.get_data().immr.pci.inbound(pci_addr, len as u64).map_err(|reason| HostAccessError {
            pci_addr: u64::from(pci_addr),
            len,
            reason,
        })
    }

    /// A host read through the agent's BAR: PCI address `pci_addr` translated by the enabled inbound windows
    /// into agent RAM.
    pub fn host_bar_read(&mut self, pci_addr: u32, buf: &mut [u8]) -> Result<(), HostAccessError> {
        self.host_bar_reads += 1;
        self.host_sync();
        let local = self.inbound(pci_addr, buf.len())?;
        self.mem.ram.read(local, buf);
        Ok(())
    }

    /// A host write through the agent's BAR into agent RAM (see [`Board::host_bar_read`]).
    pub fn host_bar_write(&mut self, pci_addr: u32, data: &[u8]) -> Result<(), HostAccessError> {
        self.host_bar_writes += 1;
        self.host_sync();
        let local = self.inbound(pci_addr, data.len())?;
        self.mem.ram.write(local, data);
        let _ = self.uc.ctl_remove_cache(local, local + data.len() as u64);
        Ok(())
    }

    /// Host BAR reads so far (each one stalls a real host for a bus round trip).
    pub fn host_bar_reads(&self) -> u64 {
        self.host_bar_reads
    }

    /// Host BAR writes so far (posted).
    pub fn host_bar_writes(&self) -> u64 {
        self.host_bar_writes
    }

    fn message_index(n: usize) -> Result<usize, HostAccessError> {
        (n < 2).then_some(n).ok_or_else(|| HostAccessError {
            pci_addr: 0,
            len: 4,
            reason: format!("there are message registers 0 and 1, not {n}"),
        })
    }

    /// Ring the agent: the host writes `bits` to IDR (1s set doorbell bits).
    pub fn host_ring_doorbell(&mut self, bits: u32) {
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_ring_doorbell(bits);
        self.host_changed();
    }

    /// The host writes inbound message register `n` (IMR0/IMR1), raising IM0I/IM1I.
    pub fn host_write_message(&mut self, n: usize, value: u32) -> Result<(), HostAccessError> {
        let n = Self::message_index(n)?;
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_write_message(n, value);
        self.host_changed();
        Ok(())
    }

    /// The host reads outbound message register `n` (OMR0/OMR1).
    pub fn host_read_message(&mut self, n: usize) -> Result<u32, HostAccessError> {
        let n = Self::message_index(n)?;
        self.host_bar_reads += 1;
        self.host_sync();
        Ok(self.uc.get_data().immr.mu.host_read_message(n))
    }

    /// The host reads OMISR (outbound status: OM0I 0x1, OM1I 0x2, ODI 0x8).
    pub fn host_outbound_status(&mut self) -> u32 {
        self.host_bar_reads += 1;
        self.host_sync();
        self.uc.get_data().immr.mu.outbound_status()
    }

    /// The host writes OMISR: 1s clear OM0I/OM1I.
    pub fn host_clear_outbound(&mut self, bits: u32) {
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_clear_outbound(bits);
        self.host_changed();
    }

    /// The host reads ODR (the doorbell bits the agent rang).
    pub fn host_read_odr(&mut self) -> u32 {
        self.host_bar_reads += 1;
        self.host_sync();
        self.uc.get_data().immr.mu.host_read_odr()
    }

    /// The host writes ODR: 1s clear doorbell bits.
    pub fn host_clear_odr(&mut self, bits: u32) {
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_clear_odr(bits);
        self.host_changed();
    }

    /// INTA# towards the host: an unmasked bit in OMISR. (A wire, not a bus access: not counted.)
    pub fn inta_asserted(&self) -> bool {
        self.uc.get_data().immr.mu.inta()
    }

    /// How often INTA# went from deasserted to asserted.
    pub fn inta_assertions(&self) -> u64 {
        self.uc.get_data().immr.mu.inta_assertions()
    }
}
