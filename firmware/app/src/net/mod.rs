//! The data path: the ring engine over this board's DMA, BAR and message unit, smoltcp on top, and
//! the main loop that polls while there is work and, when there is none, sleeps until the doorbell
//! interrupt or the decrementer armed for smoltcp's next timer. Services: ICMP echo, and echo
//! (RFC 862) on port 7 over UDP and TCP.
//!
//! Conventions a host follows (beyond the wire contract):
//! * the BAR is inbound window 0 at PCI [`bpnet_contract::EMULATED_BAR_ADDRESS`] (1 MiB, the
//!   shared region); host RAM is reached through outbound window 0, PCI `[0, 256 MiB)`;
//! * the agent sleeps whenever it has no work: the host rings inbound doorbell bit
//!   [`bpnet_contract::notify::WORK`] after writing `host_state` (UP, DOWN, a new generation) and
//!   whenever the event indexes ask for it; any doorbell bit wakes the agent;
//! * the agent rings outbound doorbell bit [`bpnet_contract::notify::STATUS`] after a status block
//!   DMA the host asked to hear about, or a state change.

mod hw;

use bpnet_contract::bar::{self, feature, AgentRepr, AgentState, Header, Layout};
use bpnet_contract::ring::Entries;
use bpnet_contract::{shared, EMULATED_BAR_ADDRESS};
use bpnet_ring::{Config, Engine, Window};
use mpc8349::ipic::vector;
use mpc8349::msgunit::inbound;
use mpc8349emds::{PCI_OUTBOUND_BASE, PCI_OUTBOUND_BYTES};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use self::hw::{ChainDma, Doorbell, NetRam, SharedRegion, BUFFERS, BUFFER_LEN};
use crate::{irq, println};

type RingEngine = Engine<ChainDma, SharedRegion, NetRam, Doorbell>;

/// Descriptors per ring: 64 KiB between the default TX and RX ring offsets hold up to 4096; 256
/// keeps the host's status block within one page.
const RING_ENTRIES: u32 = 256;
/// The static address until DHCP: the host's end of the backplane is expected at 10.83.49.1.
const ADDRESS: Ipv4Address = Ipv4Address::new(10, 83, 49, 2);
const PREFIX_LEN: u8 = 24;
/// The echo service (RFC 862), over UDP and TCP.
const ECHO_PORT: u16 = 7;
/// TCP echo buffers, each way: the receive side is the window offered to the peer.
const TCP_BUFFER: usize = 8 * 1024;
/// Features offered to the host.
const FEATURES: u32 = feature::CSUM_OFFLOAD | feature::EVENT_INDEX | feature::MTU;
/// The largest frame smoltcp builds: the default MTU and the Ethernet header.
const FRAME_DEFAULT: usize = bar::MTU_DEFAULT as usize + bpnet_ring::ETHERNET_HEADER_LEN as usize;

/// The interface's MAC: locally administered, 02:83:49 (the SoC), then the slot. The slot is not
/// known yet (no chassis identity is read), so every agent is slot 0 and gets ...:00:00:01.
fn mac_address(slot: u8) -> [u8; 6] {
    [0x02, 0x83, 0x49, 0x00, 0x00, slot.wrapping_add(1)]
}

const fn parse_u8(s: &str) -> u8 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v: u8 = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0');
        i += 1;
    }
    v
}

const FIRMWARE_VERSION: u32 = bar::firmware_version(
    parse_u8(env!("CARGO_PKG_VERSION_MAJOR")),
    parse_u8(env!("CARGO_PKG_VERSION_MINOR")),
    parse_u8(env!("CARGO_PKG_VERSION_PATCH")),
);

/// Bring the data path up and run it; never returns. `generation` changes at every boot.
pub fn run(timebase_hz: u32, generation: u32) -> ! {
    let immr = mpc8349emds::immr();
    let mut region = SharedRegion::new();
    let entries = match Entries::new(RING_ENTRIES) {
        Ok(e) => e,
        Err(_) => panic!("ring entries {} refused by the contract", RING_ENTRIES),
    };
    // A previous boot's header, doorbells and rings must not be taken for this one's.
    region.zero(shared::HEADER_OFFSET, bar::HEADER_LEN);
    region.zero(shared::DOORBELLS_OFFSET, bar::DOORBELLS_LEN);
    region.zero(shared::COUNTERS_OFFSET, bar::COUNTERS_LEN);
    region.zero(shared::TX_RING_OFFSET, bar::ring_len(entries));
    region.zero(shared::RX_RING_OFFSET, bar::ring_len(entries));

    let windows = immr.pci_windows();
    if let Err(e) = windows.set_outbound(0, PCI_OUTBOUND_BASE, 0, u64::from(PCI_OUTBOUND_BYTES)) {
        panic!("outbound window 0: {:?}", e);
    }
    extern "C" {
        static __bpnet_shared: u8;
    }
    let shared_base = core::ptr::addr_of!(__bpnet_shared) as u32;
    if let Err(e) = windows.set_inbound(0, EMULATED_BAR_ADDRESS, shared_base, shared::LEN as u64) {
        panic!("inbound window 0: {:?}", e);
    }
    // Windows before anything can use them.
    e300::barrier::sync();

    let mac = mac_address(0);
    let agent = AgentRepr {
        features: FEATURES,
        generation,
        firmware_version: FIRMWARE_VERSION,
        layout: Layout::DEFAULT,
        mac,
        ring_entries: entries,
    };
    let from_host: [u32; BUFFERS] = core::array::from_fn(hw::from_host_buffer);
    let to_host: [u32; BUFFERS] = core::array::from_fn(hw::to_host_buffer);
    let config = Config {
        agent,
        window: Window { base: 0, len: u64::from(PCI_OUTBOUND_BYTES) },
        from_host_buffers: &from_host,
        to_host_buffers: &to_host,
        buffer_len: BUFFER_LEN,
        staging: hw::STAGING,
    };
    let mut engine = match Engine::new(config, ChainDma::new(), region, NetRam::new(), Doorbell) {
        Ok(engine) => engine,
        Err(e) => panic!("ring engine refused its configuration: {:?}", e),
    };

    // Doorbells interrupt (IDI unmasked, the message registers' interrupts masked).
    let mu = immr.message_unit();
    mu.mask_inbound(inbound::IM0I | inbound::IM1I);
    irq::take_doorbells();
    immr.ipic().enable(vector::MESSAGE_UNIT);

    let timebase = e300::timebase::Timebase::new(timebase_hz);
    let now = || Instant::from_micros(timebase.micros() as i64);
    let mut device = NetDevice::new(&mut engine);
    let mut iface_config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    iface_config.random_seed = e300::timebase::read();
    let mut iface = Interface::new(iface_config, &mut device, now());
    iface.update_ip_addrs(|addrs| {
        // One address in a list with room for at least one.
        let _ = addrs.push(IpCidr::new(ADDRESS.into(), PREFIX_LEN));
    });

    let mut rx_meta = [udp::PacketMetadata::EMPTY; 4];
    let mut rx_payload = [0u8; 4096];
    let mut tx_meta = [udp::PacketMetadata::EMPTY; 4];
    let mut tx_payload = [0u8; 4096];
    let mut storage = [SocketStorage::EMPTY; 2];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let mut echo = udp::Socket::new(
        udp::PacketBuffer::new(&mut rx_meta[..], &mut rx_payload[..]),
        udp::PacketBuffer::new(&mut tx_meta[..], &mut tx_payload[..]),
    );
    if echo.bind(ECHO_PORT).is_err() {
        panic!("udp echo: bind refused");
    }
    let echo = sockets.add(echo);
    static mut TCP_RX: [u8; TCP_BUFFER] = [0; TCP_BUFFER];
    static mut TCP_TX: [u8; TCP_BUFFER] = [0; TCP_BUFFER];
    // SAFETY: `run` is entered once and never returns, and nothing else names these buffers, so
    // these are the only references ever made to them. Static rather than on the 64 KiB stack.
    let (tcp_rx, tcp_tx) = unsafe { (&mut *core::ptr::addr_of_mut!(TCP_RX), &mut *core::ptr::addr_of_mut!(TCP_TX)) };
    let tcp_echo =
        sockets.add(tcp::Socket::new(tcp::SocketBuffer::new(&mut tcp_rx[..]), tcp::SocketBuffer::new(&mut tcp_tx[..])));

    let m = mac;
    println!(
        "net: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {}/{}, rings {}, BAR at PCI {:#010x}",
        m[0], m[1], m[2], m[3], m[4], m[5], ADDRESS, PREFIX_LEN, RING_ENTRIES, EMULATED_BAR_ADDRESS
    );
    defmt::info!("net: ready, {=u32} ring entries, features {=u32:#x}", RING_ENTRIES, FEATURES);
    defmt::info!("idle");
    println!("idle");

    let mut buf = [0u8; 2048];
    let mut last_state = device.engine.state();
    device.refresh();
    // Until the first sleep arms it for smoltcp's next timer, keep the decrementer quiet.
    e300::timebase::park_decrementer();
    let ticks_per_micro = u64::from(timebase_hz / 1_000_000).max(1);
    loop {
        if irq::take_doorbells() != 0 {
            device.engine.doorbell();
        }
        device.engine.poll();
        let state = device.engine.state();
        let changed = state != last_state;
        if changed {
            defmt::info!("net: agent state {=u8}", state as u8);
            last_state = state;
            // The host's fields are fixed while RUNNING: the engine leaves RUNNING if they change.
            device.refresh();
        }
        let polled = iface.poll(now(), &mut device, &mut sockets);
        device.release();

        let socket = sockets.get_mut::<udp::Socket>(echo);
        while socket.can_send() {
            let Ok((n, meta)) = socket.recv_slice(&mut buf) else { break };
            // A full transmit queue drops the echo, as a busy echo server may.
            let _ = socket.send_slice(&buf[..n], meta);
        }

        let echoed = tcp_echo_pass(sockets.get_mut::<tcp::Socket>(tcp_echo), &mut buf);

        let busy = changed
            || echoed
            || device.take_activity()
            || device.engine.dma().in_flight()
            || polled == smoltcp::iface::PollResult::SocketStateChanged;
        if !busy {
            // Nothing to do until the host rings or smoltcp's next timer (retransmission, delayed
            // ACK, ...) is due: arm the decrementer for the timer, then sleep, unless a doorbell
            // came in since it was last taken (checked with interrupts off, so none can slip in
            // between; a decrementer that expires before the wait is taken as the wait starts).
            match iface.poll_delay(now(), &sockets) {
                Some(delay) => {
                    let ticks = delay.total_micros().saturating_mul(ticks_per_micro);
                    e300::timebase::arm_decrementer(u32::try_from(ticks).unwrap_or(u32::MAX));
                }
                None => e300::timebase::park_decrementer(),
            }
            e300::msr::without_interrupts(|| {
                if !irq::doorbells_pending() {
                    e300::wait_for_interrupt();
                }
            });
        }
    }
}

/// One pass of the TCP echo: move what was received to the send queue, as much as fits; close
/// when the peer has, listen again once closed. True if anything was moved or the state changed.
fn tcp_echo_pass(socket: &mut tcp::Socket<'_>, buf: &mut [u8]) -> bool {
    if !socket.is_open() {
        // Closed or TIME-WAIT: take the next connection (a port number is always accepted).
        let _ = socket.listen(ECHO_PORT);
        return true;
    }
    let mut moved = false;
    while socket.can_recv() && socket.can_send() {
        let room = (socket.send_capacity() - socket.send_queue()).min(buf.len());
        let n = match socket.recv_slice(&mut buf[..room]) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        // The room was measured above: all of it is queued.
        let _ = socket.send_slice(&buf[..n]);
        moved = true;
    }
    if !socket.may_recv() && socket.may_send() && !socket.can_recv() {
        // The peer closed its side and everything it sent is queued back: close ours.
        socket.close();
        moved = true;
    }
    moved
}

/// smoltcp's view of the engine.
struct NetDevice<'e> {
    engine: &'e mut RingEngine,
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
    fn new(engine: &'e mut RingEngine) -> Self {
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
    fn refresh(&mut self) {
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

    fn release(&mut self) {
        if let Some(buffer) = self.lent.take() {
            self.engine.release(buffer);
        }
    }

    fn take_activity(&mut self) -> bool {
        core::mem::take(&mut self.activity)
    }
}

struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

struct TxToken<'a> {
    engine: &'a mut RingEngine,
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
