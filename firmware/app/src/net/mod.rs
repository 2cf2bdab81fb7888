//! The data path: the ring engine over this board's DMA, BAR and message unit, smoltcp on top, and
//! the main loop that polls while there is work and, when there is none, sleeps until the doorbell
//! interrupt or the decrementer armed for smoltcp's next timer. ICMP echo comes with smoltcp; the
//! other services are in [`services`].
//!
//! Conventions a host follows (beyond the wire contract):
//! * the shared region (1 MiB) is BAR1, inbound window 0, wherever the host's enumeration puts it
//!   (PIBAR0 is the host's: the agent sets only PITAR0/PIWAR0, then releases the configuration
//!   lock so the host can enumerate it); host RAM is reached through outbound windows 0 and 1, PCI
//!   `[0, mpc8349emds::HOST_REACH_BYTES)` (2 GiB), published as the agent info block's `dma_reach`;
//! * the agent sleeps whenever it has no work: the host rings inbound doorbell bit
//!   [`bpnet_contract::notify::WORK`] after writing `host_state` (UP, DOWN, a new generation) and
//!   whenever the event indexes ask for it; any doorbell bit wakes the agent;
//! * the agent rings outbound doorbell bit [`bpnet_contract::notify::STATUS`] after a status block
//!   DMA the host asked to hear about, and [`bpnet_contract::notify::LINK`] when it is READY (after
//!   boot) or BROKEN.

mod bench;
mod control;
mod device;
mod flash;
mod hostile;
mod hw;
mod services;

use core::convert::Infallible;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use bpnet_contract::bar::{self, feature, AgentRepr, Layout};
use bpnet_contract::ring::Entries;
use bpnet_contract::shared;
use bpnet_ring::{Config, Engine, Window};
use mpc8349::ipic::vector;
use mpc8349::msgunit::inbound;
use mpc8349emds::{SharedWindow, HOST_REACH_BYTES, HOST_REACH_LOCAL, HOST_REACH_WINDOWS};

use self::hw::{ChainDma, Doorbell, NetRam, BUFFERS, BUFFER_LEN};
use crate::irq;

type RingEngine = Engine<ChainDma, SharedWindow, NetRam, Doorbell>;

/// Descriptors per ring: 64 KiB between the default TX and RX ring offsets hold up to 4096; 256
/// keeps the host's status block within one page.
const RING_ENTRIES: u32 = 256;
/// How long a frame waits for a host buffer before smoltcp tries again, if the host's doorbell does
/// not come first.
const TX_BLOCKED_RETRY: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(10);
/// Features offered to the host.
const FEATURES: u32 = feature::CSUM_OFFLOAD | feature::EVENT_INDEX | feature::MTU | feature::RX_MULTI_BUFFER;

/// Bring the data path up and serve the network (smoltcp, the services, the control service); never
/// returns. `generation` changes at every boot.
pub fn run(timebase_hz: u32, generation: u32) -> ! {
    start(generation, |engine, mac| serve(engine, mac, timebase_hz))
}

/// The ring-bench image's data path: the ring engine alone, no stack ([`bench`]); never returns.
pub fn run_ring_bench(generation: u32) -> ! {
    start(generation, |engine, mac| bench::run(engine, mac))
}

/// The hostile-agent image's data path: the ring engine alone, then one contract violation per
/// connection ([`hostile`]); never returns.
pub fn run_hostile_agent(timebase_hz: u32, generation: u32) -> ! {
    start(generation, |engine, _| hostile::run(engine, timebase_hz))
}

/// Bring the data path up: a clean shared region, the PCI windows, the ring engine over this board's
/// DMA, BAR and message unit, the doorbell interrupt; then hand the engine and the agent's MAC to
/// `main_loop`, which never returns (its `Infallible` says so: a closure cannot be declared `-> !`).
/// The engine stays in this frame: returning it (about 8 KiB) would copy it.
fn start(generation: u32, main_loop: impl FnOnce(&mut RingEngine, [u8; 6]) -> Infallible) -> ! {
    let immr = mpc8349emds::immr();
    let mut region = SharedWindow::take();
    let entries = match Entries::new(RING_ENTRIES) {
        Ok(e) => e,
        Err(_) => panic!("ring entries {} refused by the contract", RING_ENTRIES),
    };
    // A previous boot's header, doorbells and rings must not be taken for this one's.
    for (offset, len) in [
        (shared::HEADER_OFFSET, bar::HEADER_LEN),
        (shared::DOORBELLS_OFFSET, bar::DOORBELLS_LEN),
        (shared::COUNTERS_OFFSET, bar::COUNTERS_LEN),
        (shared::TX_RING_OFFSET, bar::ring_len(entries)),
        (shared::RX_RING_OFFSET, bar::ring_len(entries)),
    ] {
        assert!(region.zero(offset, len), "the contract's layout leaves the shared region");
    }

    let windows = immr.pci_windows();
    let ddr_end = u64::from(immr.sysconf().ddr_base()) + immr.sysconf().ddr_size();
    assert!(ddr_end <= u64::from(HOST_REACH_LOCAL), "DDR ends at {:#x}, over the host reach windows", ddr_end);
    for w in HOST_REACH_WINDOWS {
        if let Err(e) = windows.set_pci_law(w.law, w.local, w.size) {
            panic!("PCI LAW {}: {:?}", w.law, e);
        }
        if let Err(e) = windows.set_outbound(w.window, w.local, w.pci, w.size) {
            panic!("outbound window {}: {:?}", w.window, e);
        }
    }
    if let Err(e) = windows.set_inbound(0, region.base(), shared::LEN as u64) {
        panic!("inbound window 0: {:?}", e);
    }
    // Windows before anything can use them.
    e300::barrier::sync();

    // The agent's MAC and, in the header, the host interface's: both from the board identity.
    let (identity, _) = services::identity();
    publish_board_info(&mut region, &identity);
    let mac = identity.agent_mac();
    let agent = AgentRepr {
        features: FEATURES,
        generation,
        firmware_version: crate::boot::OWN_VERSION,
        layout: Layout::DEFAULT,
        mac: identity.host_mac(),
        ring_entries: entries,
    };
    let from_host: [u32; BUFFERS] = core::array::from_fn(hw::from_host_buffer);
    let to_host: [u32; BUFFERS] = core::array::from_fn(hw::to_host_buffer);
    let config = Config {
        agent,
        window: Window { base: 0, len: HOST_REACH_BYTES },
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
    // The shared region holds this boot's header: the host may enumerate the agent now.
    e300::barrier::sync();
    immr.pci_config().release_lock();
    log_bar1("configuration lock released");
    immr.ipic().enable(vector::MESSAGE_UNIT);
    match main_loop(&mut engine, mac) {}
}

/// smoltcp and the services over the engine, and the main loop; never returns.
fn serve(engine: &mut RingEngine, mac: [u8; 6], timebase_hz: u32) -> ! {
    use smoltcp::iface::{Interface, SocketSet, SocketStorage};
    use smoltcp::time::Instant;

    use self::device::NetDevice;
    use crate::println;

    let immr = mpc8349emds::immr();
    let timebase = e300::timebase::Timebase::new(timebase_hz);
    let now = || Instant::from_micros(timebase.micros() as i64);
    let mut device = NetDevice::new(engine);
    // The interface holds its fragmentation and reassembly buffers (5 × 64 KiB): a static, not the
    // stack.
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut IFACE: MaybeUninit<Interface> = MaybeUninit::uninit();
    if TAKEN.swap(true, Ordering::Relaxed) {
        panic!("net interface made twice");
    }
    // SAFETY: TAKEN lets exactly one caller past this point and nothing else names IFACE, so this is
    // the only reference ever made to it.
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(IFACE) };
    let mut iface: &mut Interface = new_iface(slot, &mut device, mac, now());
    let mut iface_terms = device.terms();
    // No address until DHCP or the static fallback gives one (the services, at link-up).

    let mut socket_storage = [SocketStorage::EMPTY; services::SOCKETS + control::SOCKETS];
    let mut sockets = SocketSet::new(&mut socket_storage[..]);
    let mut services = services::Services::new(&mut sockets);
    let mut control = control::new(&mut sockets, timebase);
    println!("net: control service on TCP {}", bpnet_contract::control::PORT);

    let m = mac;
    println!(
        "net: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, rings {}",
        m[0], m[1], m[2], m[3], m[4], m[5], RING_ENTRIES
    );
    defmt::info!("net: ready, {=u32} ring entries, features {=u32:#x}", RING_ENTRIES, FEATURES);
    defmt::info!("idle");
    println!("idle");

    let mut last_state = device.engine.state();
    // The timebase tick of the next heartbeat: the timer below wakes the agent every second while the
    // host watches (the uptime's wake), and each new second beats once. Kept in ticks, so the loop's
    // check is one compare (microseconds would cost 64-bit divisions every turn, on the data path).
    let second = u64::from(timebase_hz);
    let mut next_beat = timebase.ticks() + second;
    let mut repairs = device.engine.counter(bar::counter::HEADER_REPAIRS);
    device.refresh();
    // Until the first sleep arms it for smoltcp's next timer, keep the decrementer quiet.
    e300::timebase::park_decrementer();
    let ticks_per_micro = u64::from(timebase_hz / 1_000_000).max(1);
    // The timebase tick at which the boot block next needs its poll (the uptime's next second).
    let mut boot_next = 0u64;
    loop {
        let bells = irq::take_doorbells();
        if bells != 0 {
            device.engine.doorbell();
        }
        device.engine.poll();
        log_refusal(device.engine);
        let state = device.engine.state();
        let changed = state != last_state;
        if changed {
            defmt::info!("net: agent state {=u8}", state as u8);
            last_state = state;
            if state == bar::AgentState::Running {
                log_bar1("link up");
                // The host brought the link up: a firmware on trial has shown it works.
                crate::boot::confirm_if_trial();
            }
            // The host's fields are fixed while RUNNING: the engine leaves RUNNING if they change.
            device.refresh();
            if device.terms() != iface_terms {
                iface_terms = device.terms();
                // SAFETY: an Interface is valid as a MaybeUninit<Interface> (same layout), and the
                // old one is overwritten rather than dropped: it owns nothing beyond its own bytes.
                let slot = unsafe { &mut *(iface as *mut Interface).cast::<MaybeUninit<Interface>>() };
                iface = new_iface(slot, &mut device, mac, now());
                services.reapply(iface);
                defmt::info!("net: interface for MTU {=usize}", iface_terms.0 - 14);
            }
        }
        // One reading of the clock for the whole pass: each costs three 64-bit divisions (software
        // calls on the e300), and the interface, the services and the control service see the same
        // instant, so nothing the pass does is timed against two clocks. With a reading each, the
        // netbench's agent→host run drew 982 frames from the host (its ACKs) for 2,881 segments, with
        // this one change alone 277: with three readings the agent fell behind the bus and the host
        // acknowledged shorter bursts. The sleep below reads the clock again: it counts from when it
        // sleeps.
        let now_pass = now();
        let polled = iface.poll(now_pass, &mut device, &mut sockets);
        device.release();

        let served = services.poll(iface, &mut sockets, now_pass, state == bar::AgentState::Running);
        device.engine.count_stack(bar::counter::UDP_DROPPED, services.take_udp_dropped());
        let ticks = timebase.ticks();
        // The boot block's uptime and the host's requests through it (reset, recovery): not on every
        // pass (it reads the whole block and divides), but when the host rings CONTROL, which it
        // does after every request (so a request is acted on in the pass that takes its ring, as
        // when this ran every pass), when the uptime's next second is due, on every pass while the
        // link is not up (no data path to spare, and the uptime kept up to date at each wake), and
        // on the pass the link comes up (the poll before it had no deadline: the uptime is published
        // every second only while RUNNING). A request whose ring was lost waits at most for the next
        // second (link up).
        let boot_wanted = bells & bpnet_contract::notify::CONTROL != 0
            || ticks >= boot_next
            || changed
            || state != bar::AgentState::Running;
        if boot_wanted {
            boot_next = crate::boot::poll();
        }
        if ticks >= next_beat {
            next_beat = ticks + second;
            device.engine.tick();
            if crate::boot::repair() {
                defmt::warn!("boot: the boot block's agent fields were overwritten: written again");
            }
            // Repairs the engine made since the last beat (this one's, a doorbell's, a set-up's).
            let repaired = device.engine.counter(bar::counter::HEADER_REPAIRS);
            if repaired != repairs {
                repairs = repaired;
                defmt::warn!(
                    "net: the agent's published fields were overwritten: written again ({=u32} repairs)",
                    repaired
                );
            }
        }
        // Requests on the control service; a flash job advances a few words here.
        let controlled = control.poll(iface, &mut sockets, now_pass, iface_terms.0 - 14);

        let busy = changed
            || served
            || controlled
            || device.take_activity()
            || polled == smoltcp::iface::PollResult::SocketStateChanged;
        if !busy {
            // Nothing to do until the host rings, the chain in flight ends or smoltcp's or the
            // services' next timer (retransmission, delayed ACK, the end of the wait for a DHCP
            // lease, ...) is due: arm the decrementer for the earliest, let the
            // chain's end interrupt (a chain that has already ended interrupts at once), then
            // sleep, unless a doorbell came in since it was last taken (checked with interrupts
            // off, so none can slip in between; a decrementer that expires before the wait is
            // taken as the wait starts).
            let t = now();
            // A frame smoltcp could not hand over for want of a host buffer is retried when the host
            // posts one (it rings then), not in a busy loop: its "send now" waits a little.
            let floor = if device.take_blocked() { TX_BLOCKED_RETRY } else { smoltcp::time::Duration::ZERO };
            let until = |at: Instant| if at > t { at - t } else { smoltcp::time::Duration::ZERO };
            let services_delay = services.poll_at().map(until);
            // A flash job keeps its pace whatever the link does.
            let control_delay = control.poll_at(t).map(until);
            let delay = match (iface.poll_delay(t, &sockets), services_delay) {
                // With the link down no frame can leave: smoltcp's timers (retransmissions, DHCP)
                // would only wake the agent for nothing. The host's doorbell at link-up wakes it,
                // and overdue timers run then.
                _ if state != bar::AgentState::Running => None,
                (Some(a), Some(b)) => Some(a.min(b).max(floor)),
                (a, b) => a.or(b).map(|d| d.max(floor)),
            };
            let delay = match (delay, control_delay) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // The uptime is published every second while the link is up (the boot block's deadline).
            let boot_due = boot_next.saturating_sub(timebase.ticks());
            let ticks = delay.map_or(boot_due, |d| d.total_micros().saturating_mul(ticks_per_micro).min(boot_due));
            e300::timebase::arm_decrementer(u32::try_from(ticks).unwrap_or(u32::MAX));
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

/// Make the interface in `slot` for the device's current terms. smoltcp takes the device's MTU and
/// checksum duties when the interface is made and never asks again: a new agreement with the host
/// (MTU, checksum offload) needs a new interface. Never inlined: smoltcp builds the interface's
/// 5 × 64 KiB of fragment buffers on the stack before they reach `slot` (about 580 KiB, which the
/// linker's 1 MiB stack allows for), and that frame is gone once the interface is made.
#[inline(never)]
fn new_iface<'a>(
    slot: &'a mut MaybeUninit<smoltcp::iface::Interface>,
    device: &mut device::NetDevice<'_>,
    mac: [u8; 6],
    now: smoltcp::time::Instant,
) -> &'a mut smoltcp::iface::Interface {
    use smoltcp::wire::{EthernetAddress, HardwareAddress};
    let mut config = smoltcp::iface::Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = e300::timebase::read();
    let iface = slot.write(smoltcp::iface::Interface::new(config, device, now));
    bpnet_services::ip::configure(iface);
    iface
}

/// Log what the engine refused (it counts every refusal in the contract's counters; the log says
/// which value and why).
fn log_refusal(engine: &mut RingEngine) {
    if let Some(r) = engine.take_refusal() {
        let name = bar::COUNTERS.iter().find(|&&(_, slot)| slot == r.counter).map_or("?", |&(name, _)| name);
        defmt::warn!("net: refused host input ({=str} +{=u32}): {}", name, r.count, defmt::Display2Format(&r.error));
    }
}

/// Log where the host's enumeration put the shared region (BAR1 = PIBAR0): read, never written here.
fn log_bar1(when: &str) {
    match mpc8349emds::immr().pci_windows().inbound_base(0) {
        Some(0) | None => crate::println!("net: {}: BAR1 not assigned by the host yet", when),
        Some(at) => crate::println!("net: {}: the host put BAR1 (PIBAR0) at PCI {:#010x}", when, at),
    }
}

/// The board info block's identity half ([`bar::BoardRepr`]): the identity record, the board, the
/// SoC's and core's IDs and the boot stage's version, which the boot stage wrote there itself (kept
/// unless this program was started directly, when no boot stage ran). The fault record is left alone.
fn publish_board_info(region: &mut SharedWindow, identity: &bpnet_services::identity::Identity) {
    let mut block = [0u8; bar::BOARD_INFO_LEN];
    region.read(shared::BOARD_INFO_OFFSET, &mut block);
    let direct = crate::boot::status().is_none_or(|b| b.boot_source == crate::boot::Source::Direct as u8);
    let at = bar::field::board_info::BOOT_STAGE_VERSION;
    let boot_stage_version =
        if direct { 0 } else { u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]) };
    let repr = bar::BoardRepr {
        serial: identity.serial,
        slot: identity.slot.unwrap_or(bar::BOARD_SLOT_UNKNOWN),
        board: bar::board::MPC8349EMDS,
        spridr: mpc8349emds::immr().sysconf().spridr(),
        pvr: e300::pvr(),
        boot_stage_version,
    };
    repr.emit(&mut bar::BoardInfo::new_unchecked(&mut block[..]));
    region.write(shared::BOARD_INFO_OFFSET, &block[..bar::field::board_info::FAULT_SEQ]);
}
