//! smoltcp's view of the ring engine: a `phy::Device` whose frames are the engine's buffers.

use bpnet_contract::bar::{self, feature, AgentState, Header};
use bpnet_contract::shared;
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
    tx: [u8; BUFFER_LEN as usize],
}

impl<'e> NetDevice<'e> {
    pub fn new(engine: &'e mut RingEngine) -> Self {
        NetDevice {
            engine,
            lent: None,
            activity: false,
            csum_offload: false,
            max_frame: FRAME_DEFAULT,
            tx: [0; BUFFER_LEN as usize],
        }
    }

    /// Follow what the host negotiated: its MTU and whether checksums are offloaded.
    pub fn refresh(&mut self) {
        if self.engine.state() != AgentState::Running {
            self.csum_offload = false;
            self.max_frame = FRAME_DEFAULT;
            return;
        }
        let mut raw = [0u8; bar::HEADER_LEN];
        bpnet_ring::Shared::read(&*self.engine.shared(), shared::HEADER_OFFSET, &mut raw);
        let header = Header::new_unchecked(&raw[..]);
        // The fields the engine accepted when it went RUNNING.
        self.csum_offload = header.host_features() & feature::CSUM_OFFLOAD != 0;
        self.max_frame = (header.mtu() as usize + bpnet_ring::ETHERNET_HEADER_LEN as usize).min(BUFFER_LEN as usize);
    }

    pub fn release(&mut self) {
        if let Some(buffer) = self.lent.take() {
            self.engine.release(buffer);
        }
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
    pub engine: &'a mut RingEngine,
    buf: &'a mut [u8],
    activity: &'a mut bool,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp builds at most the MTU the capabilities announce, which fits the buffer.
        let fits = len <= self.buf.len();
        let len = len.min(self.buf.len());
        let r = f(&mut self.buf[..len]);
        // A refused frame is dropped and counted by the engine (no host buffer) or lost with the
        // link (not running), as a NIC drops.
        if fits && self.engine.transmit(&self.buf[..len]).is_ok() {
            *self.activity = true;
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
        // chain in flight frees them), unless the link is down and no reply can go anyway.
        if !self.engine.can_transmit() && self.engine.state() == AgentState::Running {
            return None;
        }
        let received = self.engine.receive()?;
        self.lent = Some(received.buffer);
        self.activity = true;
        let frame = NetRam::frame(received.addr, received.len);
        Some((RxToken { frame }, TxToken { engine: self.engine, buf: &mut self.tx, activity: &mut self.activity }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if !self.engine.can_transmit() {
            return None;
        }
        Some(TxToken { engine: self.engine, buf: &mut self.tx, activity: &mut self.activity })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame;
        caps.max_burst_size = None;
        if self.csum_offload {
            // The host may leave TCP/UDP checksums out (NEEDS_CSUM) and trusts the agent's: do not
            // verify them, still compute them (a frame may leave the host again). The IPv4 header
            // and ICMP checksums are always filled by the host.
            caps.checksum = ChecksumCapabilities::default();
            caps.checksum.udp = Checksum::Tx;
            caps.checksum.tcp = Checksum::Tx;
        }
        caps
    }
}
