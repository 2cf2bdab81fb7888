//! The MPC8349EMDS board in PCI agent configuration, as U-Boot leaves it: IMMR moved to
//! 0xE000_0000, DDR at 0, the system PLL fed by the 66.67 MHz PCI clock.
#![no_std]

use core::sync::atomic::{AtomicBool, Ordering};

use bpnet_contract::shared;
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
/// Local addresses routed to PCI by U-Boot's agent set-up (PCI LAW 0, 1 GiB); the first 256 MiB of
/// it are what one BAT maps for the CPU (the self-test's window, which the CPU reads and writes).
pub const PCI_OUTBOUND_BASE: u32 = 0x8000_0000;
pub const PCI_OUTBOUND_BYTES: u32 = 256 << 20;

/// One piece of the data path's reach into the host: PCI LAW `law` routes local `[local, local +
/// size)` to the PCI controller and outbound window `window` maps it onto PCI `[pci, pci + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostWindow {
    pub law: usize,
    pub window: usize,
    pub local: u32,
    pub pci: u32,
    pub size: u64,
}

/// Where the data path's DMA reaches host RAM: local `HOST_REACH_LOCAL + a` is PCI (host bus)
/// address `a`, for every `a` below [`HOST_REACH_BYTES`].
///
/// Why 2 GiB, in two 1 GiB pieces (docs/REGISTERS.md, "Local access windows for PCI" and "PCI agent
/// windows"): a PCI LAW is a power of two up to 2 GiB, aligned on its size, and the agent has two;
/// an outbound window is a power of two aligned on its size on both sides. A 2 GiB LAW could only
/// start at 0 (DDR) or 0x8000_0000 (over IMMR at 0xE000_0000 and the flash at 0xFE00_0000), so the
/// largest free aligned pieces of this board's local map are the 1 GiB at 0x4000_0000 and the 1 GiB
/// at 0x8000_0000 (DDR ends at 0x1000_0000). PCI LAW 0 keeps U-Boot's 1 GiB at 0x8000_0000 (U-Boot
/// board/freescale/mpc8349emds/pci.c); PCI LAW 1, which U-Boot's agent set-up points at an unused
/// 4 MiB PCI I/O range, is moved to 0x4000_0000. Host RAM above 2 GiB would need a window moved per
/// transfer (rewriting POTAR), which the data path does not do: the host's DMA mask keeps its buffers
/// below the reach instead (`bpnet_contract::bar::AgentInfo`).
pub const HOST_REACH_LOCAL: u32 = 0x4000_0000;
pub const HOST_REACH_BYTES: u64 = 2 << 30;
pub const HOST_REACH_WINDOWS: [HostWindow; 2] = [
    HostWindow { law: 1, window: 0, local: HOST_REACH_LOCAL, pci: 0, size: 1 << 30 },
    HostWindow { law: 0, window: 1, local: 0x8000_0000, pci: 0x4000_0000, size: 1 << 30 },
];

const _: () = {
    let mut i = 0;
    let mut end = 0u64;
    while i < HOST_REACH_WINDOWS.len() {
        let w = HOST_REACH_WINDOWS[i];
        // Contiguous on both sides, local = HOST_REACH_LOCAL + PCI.
        assert!(w.pci as u64 == end && w.local as u64 == HOST_REACH_LOCAL as u64 + end, "reach not linear");
        assert!(
            w.size.is_power_of_two()
                && (w.local as u64).is_multiple_of(w.size)
                && (w.pci as u64).is_multiple_of(w.size)
        );
        end += w.size;
        i += 1;
    }
    assert!(end == HOST_REACH_BYTES, "the windows do not add up to the reach");
    assert!(HOST_REACH_LOCAL as u64 + HOST_REACH_BYTES <= IMMR_BASE as u64, "the reach runs into IMMR");
    assert!(DDR_BYTES as u64 <= HOST_REACH_LOCAL as u64, "the reach overlaps DDR");
};

/// DDR as U-Boot sets it up on this board (DDR LAW 0, docs/REGISTERS.md).
pub const DDR_BYTES: u32 = 256 << 20;

/// Agent RAM the data path keeps for itself (DMA descriptors, staged completions, frame buffers):
/// above the image and the shared region (`memory.x`). Nothing the linker places lives here, so the
/// DMA engine writing it never aliases a Rust object. (The self-test image, which has no data path,
/// uses RAM from 16 MiB up as its scratch.)
pub const NET_RAM_BASE: u32 = 0x0100_0000;
pub const NET_RAM_BYTES: u32 = 16 << 20;

/// Where every program's payload loads and starts (linker/mpc8349emds/memory.x's FIRMWARE, U-Boot's
/// `go` address): the RAM range a signed image's payload must lie in.
pub const FIRMWARE_BASE: u32 = 0x0010_0000;
pub const FIRMWARE_END: u32 = 0x0080_0000;

/// Where images are received and verified before they are started or written to flash (TFTP, the
/// control service's FLASH, a flash slot copied into RAM by the boot stage): 32..64 MiB, above the
/// data path's RAM and below the boot stage (linker/mpc8349emds-boot).
pub const STAGING_BASE: u32 = 0x0200_0000;
pub const STAGING_LEN: u32 = 32 << 20;

/// The boot info record (`bpnet_update::bootinfo`): written by whoever starts an image, just before
/// the jump, and read then cleared by the firmware at start.
pub const BOOT_INFO_ADDR: u32 = 0x2000;
pub const BOOT_INFO_LEN: usize = 64;

const _: () = assert!(NET_RAM_BASE + NET_RAM_BYTES <= STAGING_BASE, "staging overlaps the data path's RAM");
const _: () = assert!(
    (BOOT_INFO_ADDR as usize + BOOT_INFO_LEN) <= e300::launch::TRAMPOLINE_ADDR as usize,
    "the boot info record overlaps the launch trampoline"
);

/// Read the boot info record's bytes.
pub fn read_boot_info() -> [u8; BOOT_INFO_LEN] {
    let mut out = [0u8; BOOT_INFO_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: BOOT_INFO_ADDR..+BOOT_INFO_LEN is DDR below every program's image and above the
        // exception vectors, reserved for this record; volatile because the previous program wrote it.
        *b = unsafe { core::ptr::read_volatile((BOOT_INFO_ADDR as usize + i) as *const u8) };
    }
    out
}

/// Write the boot info record's bytes (the whole record; zeros clear it).
pub fn write_boot_info(bytes: &[u8; BOOT_INFO_LEN]) {
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: as for `read_boot_info`; nothing else lives in the record's bytes.
        unsafe { core::ptr::write_volatile((BOOT_INFO_ADDR as usize + i) as *mut u8, b) };
    }
    // The next program reads it after a jump that may run with the cache bypassed.
    e300::cache::clean(BOOT_INFO_ADDR as usize, BOOT_INFO_LEN);
}

/// The staging area as bytes; one owner at a time (the boot stage, or the firmware's control
/// service / netboot / recovery, which never run at once).
pub struct Staging {
    _private: (),
}

impl Staging {
    /// Take the staging area. The caller keeps one instance: two would alias the same RAM.
    pub fn take() -> Self {
        Staging { _private: () }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: STAGING_BASE..+STAGING_LEN is DDR that the linker places nothing in (asserted against
        // the data path's RAM above; the boot stage is linked above it); the borrow of `self` keeps the
        // one owner from mutating it meanwhile.
        unsafe { core::slice::from_raw_parts(STAGING_BASE as *const u8, STAGING_LEN as usize) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, and `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(STAGING_BASE as *mut u8, STAGING_LEN as usize) }
    }
}

/// The shared region (the RAM behind the BAR, laid out by `bpnet_contract::shared`), the one way
/// the firmware reaches it: the boot code's blocks, the ring engine's header, doorbells, counters and
/// rings ([`bpnet_ring::Shared`]), and the log ring, handed once to the logger ([`SharedWindow::log_ring`]).
///
/// The host writes the region at any time, so every access is a volatile copy in or out, bounds-checked
/// (whole aligned words where the range allows: every contract field is naturally aligned, so a word
/// never mixes two of the host's stores). Any number of windows may exist: they hold no reference to
/// the region, only its address. The log ring is left out of them: once handed out it belongs to the
/// logger's slice.
pub struct SharedWindow {
    base: usize,
}

/// The log ring's bytes in the region (`bpnet_contract::shared`).
const LOG_RING: core::ops::Range<usize> = shared::LOG_RING_OFFSET..shared::LOG_RING_OFFSET + shared::LOG_RING_LEN;

impl SharedWindow {
    /// Bytes of the region.
    pub const LEN: usize = shared::LEN;

    /// The window over the region the linker placed (`__bpnet_shared`, `__bpnet_shared_len` bytes).
    pub fn take() -> Self {
        extern "C" {
            static __bpnet_shared: u8;
            static __bpnet_shared_len: u8;
        }
        // Only the symbols' addresses are used.
        let (base, len) =
            (core::ptr::addr_of!(__bpnet_shared) as usize, core::ptr::addr_of!(__bpnet_shared_len) as usize);
        assert!(len >= Self::LEN, "SHARED smaller than the contract's region");
        SharedWindow { base }
    }

    /// The region's local address (what inbound window 0 maps).
    pub fn base(&self) -> u32 {
        self.base as u32
    }

    /// `len` bytes at `offset` lie in the region and outside the log ring.
    fn fits(offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= Self::LEN && (end <= LOG_RING.start || offset >= LOG_RING.end))
    }

    /// Copy `buf.len()` bytes at `offset` out; `false` (nothing read) if the range leaves the region
    /// or enters the log ring.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if !Self::fits(offset, buf.len()) {
            return false;
        }
        // Loads of one call happen after those of the previous one (an index before the
        // descriptors it covers: pairs with bpnet.ko posting a descriptor's writes before the index
        // that covers it, bpnet_write_descriptor).
        e300::barrier::sync();
        let at = self.base + offset;
        let words = if at.is_multiple_of(4) { buf.len() / 4 } else { 0 };
        let (head, tail) = buf.split_at_mut(words * 4);
        for (i, w) in head.chunks_exact_mut(4).enumerate() {
            // SAFETY: inside the shared region (checked above), DDR mapped by the data BAT that no
            // Rust object lives in; `at + 4 i` is word-aligned.
            let word = unsafe { core::ptr::read_volatile((at + 4 * i) as *const u32) };
            // Native order is memory order: the bytes as they lie in the region.
            w.copy_from_slice(&word.to_ne_bytes());
        }
        for (i, b) in tail.iter_mut().enumerate() {
            // SAFETY: as for the words.
            *b = unsafe { core::ptr::read_volatile((at + 4 * words + i) as *const u8) };
        }
        true
    }

    /// Copy `data` in at `offset`, then `sync` so the host (and the DMA engine) see one write
    /// complete before the next (the agent's fields before READY); `false` (nothing written) if the
    /// range leaves the region or enters the log ring.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        if !Self::fits(offset, data.len()) {
            return false;
        }
        let at = self.base + offset;
        let words = if at.is_multiple_of(4) { data.len() / 4 } else { 0 };
        let (head, tail) = data.split_at(words * 4);
        for (i, w) in head.chunks_exact(4).enumerate() {
            let word = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile((at + 4 * i) as *mut u32, word) };
        }
        for (i, &b) in tail.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile((at + 4 * words + i) as *mut u8, b) };
        }
        // The agent's fields before READY: bpnet.ko's set-up (bpnet_link_up) takes the fields only
        // from a header that shows READY.
        e300::barrier::sync();
        true
    }

    /// Zero `len` bytes at `offset`, as [`SharedWindow::write`] would.
    pub fn zero(&mut self, offset: usize, len: usize) -> bool {
        if !Self::fits(offset, len) {
            return false;
        }
        for i in 0..len {
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile((self.base + offset + i) as *mut u8, 0) };
        }
        e300::barrier::sync();
        true
    }

    /// The log ring's bytes, for the logger: the first call only (`None` after), so the slice is the
    /// one reference to them. The host only reads them; the logger orders its writes before the head
    /// that publishes them.
    pub fn log_ring(&mut self) -> Option<&'static mut [u8]> {
        static TAKEN: AtomicBool = AtomicBool::new(false);
        extern "C" {
            static __bpnet_log_ring: u8;
        }
        let at = self.base + LOG_RING.start;
        assert_eq!(at, core::ptr::addr_of!(__bpnet_log_ring) as usize, "link.x's log ring disagrees with the contract");
        if TAKEN.swap(true, Ordering::Relaxed) {
            return None;
        }
        // SAFETY: the range lies inside the region (the contract's layout, asserted against SHARED in
        // `take`), which the linker reserves for host-visible data; every window refuses it, and
        // TAKEN lets this slice be made once.
        Some(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, LOG_RING.len()) })
    }
}

/// The ring engine's view: its fields are the contract's, always inside the region, so a range
/// outside it is a bug of the engine's.
impl bpnet_ring::Shared for SharedWindow {
    fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(SharedWindow::read(self, offset, buf), "shared read outside the region or into the log ring");
    }

    fn write(&mut self, offset: usize, data: &[u8]) {
        assert!(SharedWindow::write(self, offset, data), "shared write outside the region or into the log ring");
    }
}

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
