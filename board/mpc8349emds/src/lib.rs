//! The MPC8349EMDS board in PCI agent configuration, as U-Boot leaves it: IMMR moved to
//! 0xE000_0000, DDR at 0, the system PLL fed by the 66.67 MHz PCI clock.
#![no_std]

use e300::bat::{self, wimg, Block};
use mpc8349::clocks::{self, Frequencies};
use mpc8349::Immr;

/// Where U-Boot moves IMMR on this board.
pub const IMMR_BASE: u32 = 0xE000_0000;
/// The system PLL's input in agent mode: the PCI clock.
pub const INPUT_CLOCK_HZ: u32 = 66_666_666;
/// Console baud rate (the board's U-Boot default).
pub const CONSOLE_BAUD: u32 = 115_200;

/// NOR flash on the local bus (chip select 0).
pub const FLASH_BASE: u32 = 0xFE00_0000;
pub const FLASH_BYTES: u32 = 32 << 20;
/// Local addresses routed to PCI by U-Boot's agent set-up (PCI LAW 0, 1 GiB); the outbound windows
/// the firmware opens live in the first 256 MiB of it, which one BAT covers.
pub const PCI_OUTBOUND_BASE: u32 = 0x8000_0000;
pub const PCI_OUTBOUND_BYTES: u32 = 256 << 20;

/// Agent RAM the data path keeps for itself (DMA descriptors, staged completions, frame buffers):
/// above the image and the shared region (`memory.x`). Nothing the linker places lives here, so the
/// DMA engine writing it never aliases a Rust object. (The self-test image, which has no data path,
/// uses RAM from 16 MiB up as its scratch.)
pub const NET_RAM_BASE: u32 = 0x0100_0000;
pub const NET_RAM_BYTES: u32 = 16 << 20;

/// 1:1 data mappings: DDR cacheable and coherent (the DMA engine and PCI inbound writes snoop);
/// the IMMR window, the flash (its status reads must reach the part) and the PCI outbound range
/// cache-inhibited and guarded.
const DATA_BLOCKS: [Block; 4] = [
    Block { base: 0, size: 256 << 20, wimg: wimg::COHERENT },
    Block { base: IMMR_BASE, size: 1 << 20, wimg: wimg::CACHE_INHIBITED | wimg::GUARDED },
    Block { base: FLASH_BASE, size: FLASH_BYTES, wimg: wimg::CACHE_INHIBITED | wimg::GUARDED },
    Block { base: PCI_OUTBOUND_BASE, size: PCI_OUTBOUND_BYTES, wimg: wimg::CACHE_INHIBITED | wimg::GUARDED },
];
/// Code runs from DDR only.
const CODE_BLOCKS: [Block; 1] = [Block { base: 0, size: 256 << 20, wimg: wimg::COHERENT }];

/// The NOR flash as a 16-bit bus for the portable flash driver.
pub struct FlashBus {
    _private: (),
}

impl FlashBus {
    /// The flash window; one instance at a time (the command state machine is shared).
    pub fn take() -> Self {
        FlashBus { _private: () }
    }
}

impl norflash::Bus for FlashBus {
    fn read(&mut self, word: u32) -> u16 {
        let word = word % (FLASH_BYTES / 2);
        // SAFETY: the offset is reduced into the 32 MiB flash window, which DATA_BLOCKS maps
        // cache-inhibited and guarded; 16-bit accesses match the port width.
        unsafe { core::ptr::read_volatile((FLASH_BASE + 2 * word) as *const u16) }
    }

    fn write(&mut self, word: u32, value: u16) {
        let word = word % (FLASH_BYTES / 2);
        // SAFETY: as for `read`; a write to flash is a command cycle, never a memory store.
        unsafe { core::ptr::write_volatile((FLASH_BASE + 2 * word) as *mut u16, value) };
        // Command cycles must reach the part in order (pairs with the part's command decoder).
        e300::barrier::eieio();
    }
}

/// Microseconds from the timebase, for drivers that poll with a timeout.
pub struct Clock(pub e300::timebase::Timebase);

impl norflash::Clock for Clock {
    fn now_us(&mut self) -> u64 {
        self.0.micros()
    }
}

/// What bring-up found out about the board.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    pub immr: Immr,
    pub pvr: u32,
    pub spridr: u32,
    pub spmr: u32,
    pub clocks: Frequencies,
    pub ram_bytes: u64,
    pub reset_status: u32,
}

/// Why bring-up stopped. The console may not work yet, so the caller can only halt.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    Translation(bat::Error),
    Clocks(clocks::Error),
}

/// The IMMR window. Only meaningful after `init` has mapped it.
pub fn immr() -> Immr {
    // SAFETY: U-Boot moved IMMR to IMMR_BASE on this board, and DATA_BLOCKS maps it
    // cache-inhibited and guarded once `init` has run.
    unsafe { Immr::new(IMMR_BASE as usize) }
}

/// Install the exception vectors, turn translation on, start the timebase and the console.
/// Call exactly once, first thing in `__e300_main`.
pub fn init() -> Result<Board, Error> {
    e300::exception::install();
    bat::enable(&DATA_BLOCKS, &CODE_BLOCKS).map_err(Error::Translation)?;
    let immr = immr();
    let sysconf = immr.sysconf();
    sysconf.enable_timebase();
    let spmr = immr.clocks().spmr();
    let clocks = clocks::decode(spmr, INPUT_CLOCK_HZ).map_err(Error::Clocks)?;
    immr.duart(0).init(clocks.csb_hz, CONSOLE_BAUD);
    let reset = immr.reset();
    let reset_status = reset.status();
    reset.clear_status(reset_status);
    Ok(Board {
        immr,
        pvr: e300::pvr(),
        spridr: sysconf.spridr(),
        spmr,
        clocks,
        ram_bytes: sysconf.ddr_size(),
        reset_status,
    })
}
