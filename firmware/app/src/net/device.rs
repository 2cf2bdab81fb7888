//! smoltcp's view of the ring engine: a `phy::Device` whose frames are the engine's buffers. Frames
//! the stack has no use for are dropped here, before it, and counted ([`bpnet_services::ip`]); so are
//! IPv4 fragments, both ways.

use bpnet_contract::bar::{self, counter, feature};
use bpnet_ring::{TransmitError, TxBuffer};
use bpnet_services::ip::{self, Ingress};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::hw::{NetRam, BUFFER_LEN};
use super::RingEngine;

/// The largest frame smoltcp builds until the host negotiates: the default MTU and the Ethernet header.
const FRAME_DEFAULT: usize = bar::MTU_DEFAULT as usize + bpnet_ring::ETHERNET_HEADER_LEN as usize;

/// smoltcp's view of the engine.
pub struct NetDevice<'e> {
    pub engine: &'e mut RingEngine,
    /// The frame buffer lent to smoltcp, given back before the next one is taken.
    lent: Option<usize>,
    /// Frames moved since the main loop last asked.
    activity: bool,
    /// Checksums the host has agreed to leave out ([`feature::CSUM_OFFLOAD`]).
    csum_offload: bool,
    max_frame: usize,
    /// smoltcp had a frame to send and there was no buffer for it, since the main loop last asked.
    blocked: bool,
}

impl<'e> NetDevice<'e> {
    pub fn new(engine: &'e mut RingEngine) -> Self {
        NetDevice { engine, lent: None, activity: false, csum_offload: false, max_frame: FRAME_DEFAULT, blocked: false }
    }

    /// Follow what the host negotiated: its MTU and whether checksums are offloaded.
    pub fn refresh(&mut self) {
        // What the engine accepted when it went RUNNING (not the header again: the host may have
        // written it since).
        let Some(host) = self.engine.host() else {
            self.csum_offload = false;
            self.max_frame = FRAME_DEFAULT;
            return;
        };
        self.csum_offload = host.features & feature::CSUM_OFFLOAD != 0;
        self.max_frame = (host.mtu as usize + bpnet_ring::ETHERNET_HEADER_LEN as usize).min(BUFFER_LEN as usize);
    }

    /// What smoltcp must be told at the interface's creation: the largest frame and whether the
    /// host has taken over checksums.
    pub fn terms(&self) -> (usize, bool) {
        (self.max_frame, self.csum_offload)
    }

    pub fn release(&mut self) {
        if let Some(buffer) = self.lent.take() {
            self.engine.release(buffer);
        }
    }

    pub fn take_blocked(&mut self) -> bool {
        core::mem::take(&mut self.blocked)
    }

    pub fn take_activity(&mut self) -> bool {
        core::mem::take(&mut self.activity)
    }
}

pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

pub struct TxToken<'a> {
    engine: &'a mut RingEngine,
    /// The agent buffer the frame is built in, or none: the link is down or the host has posted no
    /// buffer, and the frame is built in the discard area and dropped, as a NIC drops.
    buffer: Option<TxBuffer>,
    activity: &'a mut bool,
    /// smoltcp leaves TCP/UDP checksums out (checksum offload negotiated).
    csum_offload: bool,
}

/// Whether `frame` is an IPv4 TCP or UDP frame: the ones whose checksum smoltcp leaves out under
/// checksum offload.
fn is_ipv4_tcp_udp(frame: &[u8]) -> bool {
    frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && matches!(frame[23], 6 | 17)
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp builds at most the MTU the capabilities announce, which fits a buffer.
        let len = len.min(BUFFER_LEN as usize);
        let Some(buffer) = self.buffer else {
            self.engine.count_no_buffer();
            return f(NetRam::discard(len as u32));
        };
        // Built in place: the DMA takes the frame from here to the host.
        let frame = NetRam::frame_mut(buffer.addr, len as u32);
        let r = f(frame);
        let frame = NetRam::frame(buffer.addr, len as u32);
        let fragment = ip::is_fragment(frame);
        // A fragment's UDP checksum covers the whole datagram, which the host cannot complete from
        // one fragment: smoltcp left it zero, "no checksum" for UDP over IPv4, and it is not marked.
        let left_out = self.csum_offload && is_ipv4_tcp_udp(frame) && !fragment;
        if self.engine.commit_transmit(buffer, len, left_out).is_ok() {
            if fragment {
                self.engine.count_stack(counter::IP_FRAGMENTS_SENT, 1);
            }
            *self.activity = true;
            // Start its DMA now if the channel is free (see `receive`).
            self.engine.poll();
        }
        r
    }
}

impl phy::Device for NetDevice<'_> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.release();
        // A reply needs a buffer towards the host: leave the frame queued until one is free (a
        // chain in flight frees them); with the link down or no host buffer posted, a reply is
        // dropped anyway.
        // Keep the DMA busy while the stack works: a chain that has ended is completed and the next
        // one started here, between frames, not only when the main loop comes round again.
        self.engine.poll();
        let buffer = match self.engine.transmit_buffer() {
            Ok(buffer) => Some(buffer),
            Err(TransmitError::Busy) => return None,
            Err(_) => None,
        };
        let (received, frame) = loop {
            let received = self.engine.receive()?;
            self.activity = true;
            let frame = NetRam::frame(received.addr, received.len);
            let dropped = match ip::ingress(frame) {
                Ingress::Stack => break (received, frame),
                Ingress::Fragment => {
                    self.engine.count_stack(counter::IP_FRAGMENTS_RECEIVED, 1);
                    break (received, frame);
                }
                Ingress::Unparsed => counter::RX_FRAMES_UNPARSED,
                Ingress::FragmentPastLimit => counter::IP_FRAGMENTS_DROPPED,
            };
            self.engine.count_stack(dropped, 1);
            self.engine.release(received.buffer);
        };
        self.lent = Some(received.buffer);
        let csum_offload = self.csum_offload;
        Some((RxToken { frame }, TxToken { engine: self.engine, buffer, activity: &mut self.activity, csum_offload }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let Ok(buffer) = self.engine.transmit_buffer() else {
            self.blocked = true;
            return None;
        };
        let csum_offload = self.csum_offload;
        Some(TxToken { engine: self.engine, buffer: Some(buffer), activity: &mut self.activity, csum_offload })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        let header = bpnet_ring::ETHERNET_HEADER_LEN as usize;
        caps.max_transmission_unit = ip::stack_mtu(self.max_frame - header) + header;
        caps.max_burst_size = None;
        if self.csum_offload {
            // The backplane is a memory copy: TCP/UDP checksums are neither verified nor computed
            // (frames to the host are marked NEEDS_CSUM, for a host that forwards them). The small
            // IPv4 header and ICMP checksums stay, both ways.
            caps.checksum = ChecksumCapabilities::default();
            caps.checksum.udp = Checksum::None;
            caps.checksum.tcp = Checksum::None;
        }
        caps
    }
}
