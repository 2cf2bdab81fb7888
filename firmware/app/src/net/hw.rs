//! The ring engine's traits over this board: DMA channel 0 in chaining mode, the data path's agent
//! RAM and the message unit's outbound doorbell (the shared region behind the BAR is the board's
//! `mpc8349emds::SharedWindow`).
//!
//! Agent RAM for the data path (`mpc8349emds::NET_RAM_BASE`, outside everything the linker places):
//!
//! | offset | bytes | what |
//! | --- | --- | --- |
//! | `0x0_0000` | 8 KiB | DMA chain descriptors (32-byte aligned, [`MAX_COPIES`] of them) |
//! | `0x0_2000` | 4 KiB | the engine's staging area (completions and status header) |
//! | `0x0_3000` | [`BUFFERS`] × [`BUFFER_LEN`] | frames from the host |
//! | then | [`BUFFERS`] × [`BUFFER_LEN`] | frames to the host |
//! | then | [`BUFFER_LEN`] | the discard area: frames the stack builds that cannot be sent |

use bpnet_contract::{bar, notify};
use bpnet_ring::{Addr, AgentRam, Copy, Dma, DmaError, Notify, Ticket, MAX_COPIES, STAGING_LEN};
use mpc8349::dma::{self, link, Descriptor};
use mpc8349emds::{HOST_REACH_BYTES, HOST_REACH_LOCAL, NET_RAM_BASE, NET_RAM_BYTES};

/// Frame buffers of each pool.
pub const BUFFERS: usize = 64;
/// Bytes of each frame buffer: the largest MTU (65535) plus the Ethernet header, rounded up to a
/// cache line. One size for every MTU keeps the pools simple; 4 MiB of 256 is the price.
pub const BUFFER_LEN: u32 = (bar::MTU_MAX as u32 + bpnet_ring::ETHERNET_HEADER_LEN).next_multiple_of(32);

const DESCRIPTORS: u32 = NET_RAM_BASE;
pub const STAGING: u32 = NET_RAM_BASE + 0x2000;
const BUFFERS_BASE: u32 = NET_RAM_BASE + 0x3000;
const DISCARD: u32 = BUFFERS_BASE + 2 * BUFFERS as u32 * BUFFER_LEN;
const BUFFERS_END: u32 = DISCARD + BUFFER_LEN;

const _: () = assert!(MAX_COPIES * dma::DESCRIPTOR_LEN <= 0x2000, "chain descriptors outgrow their area");
const _: () = assert!(STAGING_LEN <= 0x1000, "staging outgrows its area");
const _: () = assert!(BUFFERS_END <= NET_RAM_BASE + NET_RAM_BYTES, "frame buffers outgrow the data path's RAM");

/// Agent RAM address of buffer `i` of the frames from the host.
pub const fn from_host_buffer(i: usize) -> u32 {
    BUFFERS_BASE + i as u32 * BUFFER_LEN
}

/// Agent RAM address of buffer `i` of the frames to the host.
pub const fn to_host_buffer(i: usize) -> u32 {
    BUFFERS_BASE + (BUFFERS + i) as u32 * BUFFER_LEN
}

/// DMA channel 0, one chain at a time.
pub struct ChainDma {
    channel: dma::Channel,
    in_flight: Option<Ticket>,
    next: u32,
}

impl ChainDma {
    pub fn new() -> Self {
        ChainDma { channel: mpc8349emds::immr().dma(0), in_flight: None, next: 0 }
    }

    /// A chain was submitted and its end not yet reported: the main loop polls rather than sleeps
    /// (the channel's interrupt stays off; a chain of a few frames lasts microseconds).
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    fn local(addr: Addr) -> Option<u32> {
        match addr {
            Addr::Agent(a) => Some(a),
            // The outbound windows map PCI [0, HOST_REACH_BYTES) at HOST_REACH_LOCAL; a range that
            // starts inside may run to the reach's end (the engine checked it against its window).
            Addr::Host(a) if a < HOST_REACH_BYTES => Some(HOST_REACH_LOCAL + a as u32),
            Addr::Host(_) => None,
        }
    }
}

impl Dma for ChainDma {
    fn submit(&mut self, copies: &[Copy]) -> Result<Ticket, DmaError> {
        if self.in_flight.is_some() || self.channel.is_busy() || copies.len() > MAX_COPIES {
            return Err(DmaError::Busy);
        }
        if copies.is_empty() {
            return Err(DmaError::Transfer);
        }
        // SAFETY: the descriptor area is data-path RAM nothing else uses (NET_RAM_BASE, mapped by
        // the DDR BAT); no chain is in flight, so the controller is not fetching from it.
        let area = unsafe { core::slice::from_raw_parts_mut(DESCRIPTORS as *mut u8, MAX_COPIES * dma::DESCRIPTOR_LEN) };
        let last = copies.len() - 1;
        for (i, (copy, raw)) in copies.iter().zip(area.chunks_exact_mut(dma::DESCRIPTOR_LEN)).enumerate() {
            // The engine only names host addresses inside its window (Config::window), which is
            // this one; anything else is refused here rather than sent across the bus.
            let (Some(src), Some(dst)) = (Self::local(copy.src), Self::local(copy.dst)) else {
                return Err(DmaError::Transfer);
            };
            let at = DESCRIPTORS + (i * dma::DESCRIPTOR_LEN) as u32;
            let next = if i == last { link::END_OF_LIST } else { (at + dma::DESCRIPTOR_LEN as u32) | link::SNEN };
            let mut d = Descriptor::new_checked(raw).ok_or(DmaError::Transfer)?;
            d.set(src, dst, copy.len, next).map_err(|_| DmaError::Transfer)?;
        }
        // The controller snoops its descriptor fetches (SNEN); order the descriptor stores, and
        // the engine's stores of frames and staged completions, before the start. The chain then
        // writes completions before the status header, which bpnet.ko's dma_rmb in bpnet_reap pairs
        // with.
        e300::barrier::sync();
        self.channel.start_chain(DESCRIPTORS, true).map_err(|_| DmaError::Busy)?;
        self.next = self.next.wrapping_add(1);
        let ticket = Ticket(self.next);
        self.in_flight = Some(ticket);
        Ok(ticket)
    }

    fn poll(&mut self) -> Option<Result<Ticket, DmaError>> {
        let ticket = self.in_flight?;
        if self.channel.is_busy() {
            return None;
        }
        self.in_flight = None;
        // Not busy: `wait` returns at once, stops the channel and clears its status.
        let result = self.channel.wait();
        // What the chain wrote is read only after its end was seen (and the compiler may not
        // move those reads above this point); the doorbells read after it pair with bpnet.ko's mb()
        // between writing an index and reading the event the chain carried (bpnet_fill_rx,
        // bpnet_publish_tx_prod, bpnet_poll).
        e300::barrier::sync();
        Some(result.map(|()| ticket).map_err(|_| DmaError::Transfer))
    }
}

/// The staging area and the frame buffers.
pub struct NetRam {
    _private: (),
}

impl NetRam {
    pub fn new() -> Self {
        NetRam { _private: () }
    }

    fn check(addr: u32, len: usize) {
        let ok = |start: u32, end: u32| {
            u64::from(addr) >= u64::from(start) && u64::from(addr) + len as u64 <= u64::from(end)
        };
        assert!(
            ok(STAGING, STAGING + STAGING_LEN as u32) || ok(BUFFERS_BASE, BUFFERS_END),
            "agent RAM access outside the data path's buffers"
        );
    }

    /// The buffer the engine found for a frame to the host ([`bpnet_ring::Engine::transmit_buffer`]),
    /// for the stack to build the frame in.
    ///
    /// The caller keeps the slice only until it commits the frame: until then the buffer is free,
    /// and the engine lets neither the DMA nor itself touch a free buffer.
    pub fn frame_mut<'a>(addr: u32, len: u32) -> &'a mut [u8] {
        Self::check(addr, len as usize);
        // SAFETY: inside the frame buffers (checked), which no Rust object occupies; the engine
        // handed this free buffer to the one caller building a frame, which drops the slice before
        // committing it.
        unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len as usize) }
    }

    /// Room to build a frame that will be dropped (no host buffer, link down): smoltcp's transmit
    /// token must be consumed with a buffer even then. Nothing reads it.
    pub fn discard<'a>(len: u32) -> &'a mut [u8] {
        Self::frame_mut(DISCARD, len)
    }

    /// A frame the engine lent to the stack ([`bpnet_ring::Engine::receive`]).
    ///
    /// The caller keeps the slice only until it releases the buffer: the engine never lets the DMA
    /// write a buffer it has lent.
    pub fn frame<'a>(addr: u32, len: u32) -> &'a [u8] {
        Self::check(addr, len as usize);
        // The DMA wrote it; read it only after the completion was seen.
        e300::barrier::sync();
        // SAFETY: inside the frame buffers (checked), which no Rust object occupies; the buffer is
        // lent to the stack, so neither the DMA nor the engine writes it while the slice lives.
        unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
    }
}

impl AgentRam for NetRam {
    fn read(&self, addr: u32, buf: &mut [u8]) {
        buf.copy_from_slice(Self::frame(addr, buf.len() as u32));
    }

    fn write(&mut self, addr: u32, data: &[u8]) {
        Self::check(addr, data.len());
        // SAFETY: inside the staging area or the frame buffers (checked), which no Rust object
        // occupies; the engine writes only buffers no DMA is using.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
    }
}

/// The interrupts to the host: outbound doorbell bits STATUS and LINK (INTx on the board).
pub struct Doorbell;

impl Notify for Doorbell {
    fn interrupt_host(&mut self) {
        // The status block DMA has completed (the engine calls this only then).
        mpc8349emds::immr().message_unit().ring_host(notify::STATUS);
    }

    fn link_changed(&mut self) {
        // The state byte is written and synced (SharedWindow::write) before the host is told.
        mpc8349emds::immr().message_unit().ring_host(notify::LINK);
    }
}
