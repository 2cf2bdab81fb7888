//! The board: its files (agent RAM, host RAM, flash) and Unicorn instance, built here; loading and
//! resets ([`load`]), the run loop ([`run`]), a host in real time ([`live`]), what tests and tools read
//! of it ([`inspect`]) and the host's side of the PCI bus ([`pci_host`]).

mod agent;
mod inspect;
mod live;
mod load;
mod pci_host;
mod run;

pub use agent::{BusError, FunctionStats};

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
use crate::ppc::{self, msr, srr1, vector, BatKind, TimeInsn, TrackedWrite};
use crate::realtime::{self, CoreStopper, HostLink, Wake};
use crate::time::{TimeBase, PS_PER_INSTRUCTION};
use crate::uboot;

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
    /// The host's cycles into the PCI function ([`agent`]).
    function_stats: FunctionStats,
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
    /// Hooks watching the address ranges two valid BATs cover (none while the BATs are sound).
    overlap_hooks: Vec<UcHookId>,
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

        // Nothing enumerates the board unless a host is attached that does (`set_standalone_host`).
        uc.get_data_mut().immr.set_standalone_host(true);
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
            function_stats: FunctionStats::default(),
            power_cuts: 0,
            console_at_power_cut: 0,
            slice: SLICE,
            live: None,
            outbound: None,
            shared: None,
            shared_files: Vec::new(),
            overlap_hooks: Vec::new(),
        })
    }
}
