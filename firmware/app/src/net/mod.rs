//! The data path: the ring engine over this board's DMA, BAR and message unit, smoltcp on top, and
//! the main loop that polls while there is work and, when there is none, sleeps until the doorbell
//! interrupt or the decrementer armed for smoltcp's next timer. ICMP echo comes with smoltcp; the
//! other services are in [`services`].
//!
//! Conventions a host follows (beyond the wire contract):
//! * the BAR is inbound window 0 at PCI [`bpnet_contract::EMULATED_BAR_ADDRESS`] (1 MiB, the
//!   shared region); host RAM is reached through outbound window 0, PCI `[0, 256 MiB)`;
//! * the agent sleeps whenever it has no work: the host rings inbound doorbell bit
//!   [`bpnet_contract::notify::WORK`] after writing `host_state` (UP, DOWN, a new generation) and
//!   whenever the event indexes ask for it; any doorbell bit wakes the agent;
//! * the agent rings outbound doorbell bit [`bpnet_contract::notify::STATUS`] after a status block
//!   DMA the host asked to hear about, or a state change.

mod device;
mod hw;
mod services;

use bpnet_contract::bar::{self, feature, AgentRepr, Layout};
use bpnet_contract::ring::Entries;
use bpnet_contract::{shared, EMULATED_BAR_ADDRESS, HOST_WINDOW_BYTES};
use bpnet_ring::{Config, Engine, Window};
use mpc8349::ipic::vector;
use mpc8349::msgunit::inbound;
use mpc8349emds::{PCI_OUTBOUND_BASE, PCI_OUTBOUND_BYTES};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};

use self::device::NetDevice;
use self::hw::{ChainDma, Doorbell, NetRam, SharedRegion, BUFFERS, BUFFER_LEN};
use crate::{irq, println};

const _: () =
    assert!(HOST_WINDOW_BYTES <= PCI_OUTBOUND_BYTES as u64, "the contract's host window outgrows the board's");

type RingEngine = Engine<ChainDma, SharedRegion, NetRam, Doorbell>;

/// Descriptors per ring: 64 KiB between the default TX and RX ring offsets hold up to 4096; 256
/// keeps the host's status block within one page.
const RING_ENTRIES: u32 = 256;
/// The static address until DHCP: the host's end of the backplane is expected at 10.83.49.1.
const ADDRESS: Ipv4Address = Ipv4Address::new(10, 83, 49, 2);
const PREFIX_LEN: u8 = 24;
/// Features offered to the host.
const FEATURES: u32 = feature::CSUM_OFFLOAD | feature::EVENT_INDEX | feature::MTU;

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
    if let Err(e) = windows.set_outbound(0, PCI_OUTBOUND_BASE, 0, HOST_WINDOW_BYTES) {
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
        window: Window { base: 0, len: HOST_WINDOW_BYTES },
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

    static mut SERVICES: services::Storage = services::Storage::new();
    // SAFETY: `run` is entered once and never returns, and nothing else names SERVICES, so this is
    // the only reference ever made to it. Static rather than on the 64 KiB stack.
    let storage = unsafe { &mut *core::ptr::addr_of_mut!(SERVICES) };
    let mut socket_storage = [SocketStorage::EMPTY; services::SOCKETS];
    let mut sockets = SocketSet::new(&mut socket_storage[..]);
    let mut services = services::Services::new(storage, &mut sockets);

    let m = mac;
    println!(
        "net: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {}/{}, rings {}, BAR at PCI {:#010x}",
        m[0], m[1], m[2], m[3], m[4], m[5], ADDRESS, PREFIX_LEN, RING_ENTRIES, EMULATED_BAR_ADDRESS
    );
    defmt::info!("net: ready, {=u32} ring entries, features {=u32:#x}", RING_ENTRIES, FEATURES);
    defmt::info!("idle");
    println!("idle");

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

        let served = services.poll(&mut sockets);

        let busy =
            changed || served || device.take_activity() || polled == smoltcp::iface::PollResult::SocketStateChanged;
        if !busy {
            // Nothing to do until the host rings, the chain in flight ends or smoltcp's next timer
            // (retransmission, delayed ACK, ...) is due: arm the decrementer for the timer, let the
            // chain's end interrupt (a chain that has already ended interrupts at once), then
            // sleep, unless a doorbell came in since it was last taken (checked with interrupts
            // off, so none can slip in between; a decrementer that expires before the wait is
            // taken as the wait starts).
            match iface.poll_delay(now(), &sockets) {
                Some(delay) => {
                    let ticks = delay.total_micros().saturating_mul(ticks_per_micro);
                    e300::timebase::arm_decrementer(u32::try_from(ticks).unwrap_or(u32::MAX));
                }
                None => e300::timebase::park_decrementer(),
            }
            if device.engine.dma().in_flight() {
                // The handler masks it again once it has fired (irq.rs).
                immr.ipic().enable(vector::DMA);
            }
            e300::msr::without_interrupts(|| {
                if !irq::doorbells_pending() {
                    e300::wait_for_interrupt();
                }
            });
        }
    }
}
