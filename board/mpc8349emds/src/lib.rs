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

/// 1:1 data mappings: DDR cacheable and coherent (the DMA engine and PCI inbound writes snoop),
/// the IMMR window cache-inhibited and guarded.
const DATA_BLOCKS: [Block; 2] = [
    Block {
        base: 0,
        size: 256 << 20,
        wimg: wimg::COHERENT,
    },
    Block {
        base: IMMR_BASE,
        size: 1 << 20,
        wimg: wimg::CACHE_INHIBITED | wimg::GUARDED,
    },
];
/// Code runs from DDR only.
const CODE_BLOCKS: [Block; 1] = [Block {
    base: 0,
    size: 256 << 20,
    wimg: wimg::COHERENT,
}];

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

/// Install the exception vectors, turn translation on, start the timebase and the console.
/// Call exactly once, first thing in `__e300_main`.
pub fn init() -> Result<Board, Error> {
    e300::exception::install();
    bat::enable(&DATA_BLOCKS, &CODE_BLOCKS).map_err(Error::Translation)?;
    // SAFETY: U-Boot moved IMMR to IMMR_BASE on this board, and DATA_BLOCKS maps it
    // cache-inhibited and guarded; `init` runs once, so each block gets one driver.
    let immr = unsafe { Immr::new(IMMR_BASE as usize) };
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
