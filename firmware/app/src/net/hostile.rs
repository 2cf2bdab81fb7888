//! A test image that breaks the contract on purpose (the hostile-agent image), for the backplane's
//! `hostile` suite: the host must refuse every violation, mark the device broken and keep serving
//! its other agents.
//!
//! Each phase is one connection: the ring engine brings the link up as usual (so the host binds and
//! sees the carrier), carries the host's frames for [`ACT_DELAY`], then stops and the phase's
//! violation is made with the board's own objects: crafted completions and status headers DMA'd
//! into the host's status block (inside the outbound window, at the address the host gave), a
//! storm of outbound doorbells, a garbage header, a flapping state byte. Once the host has
//! re-initialised, the agent leaves its set-ups unanswered (so the carrier stays off while the test
//! looks) until the host sets up with a new MTU: that connection is the next phase's. After the
//! last phase the agent behaves.
//!
//! The engine is never left with a chain in flight while this runs (each violation starts from
//! a quiet engine), so no DMA of the engine's reaches a status block the host has taken back.

use bpnet_contract::bar::{self, Doorbells, HostState};
use bpnet_contract::ring::Entries;
use bpnet_contract::shared;
use bpnet_contract::status::{self, cause, Completion, CompletionRepr, COMPLETION_LEN};
use bpnet_ring::{Addr, AgentRam, Copy, Dma, Notify};
use mpc8349emds::HOST_REACH_BYTES;

use super::hw;
use super::RingEngine;
use crate::irq;

/// The violations, one per connection, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// An RX completion whose id names a buffer the host never posted.
    WrongId,
    /// A TX completion (and `tx_used`) for a frame the host never posted.
    NeverPosted,
    /// An RX completion longer than the buffer the host posted (with RX_MULTI_BUFFER a page: the host
    /// drops and counts it and keeps the link, so the phase ends at the host's next set-up).
    LongCompletion,
    /// `rx_used` far beyond what the host posted.
    UsedBeyond,
    /// STATUS and LINK rung without pause for [`STORM`].
    InterruptStorm,
    /// A wrong magic in the header the host reads at its next set-up.
    BadMagic,
    /// A wrong major version in the header the host reads at its next set-up.
    BadVersion,
    /// The state byte cycling through READY, RUNNING, an undefined value, BROKEN and RESET, LINK rung
    /// at each, for [`FLAP`].
    StateFlap,
    /// Malformed RX_MULTI_BUFFER chains ([`BAD_CHAINS`]): one past RX_CHAIN_MAX buffers, a
    /// completion longer than a page, a frame longer than the MTU, and a frame left open (MORE with
    /// no continuation). The host drops and counts the first three and waits on the last; none of
    /// them is a reason to re-initialise, so the phase ends at the host's next set-up.
    BadChains,
}

/// The completions of [`Phase::BadChains`] in ring order, as (flags, len): a chain of
/// RX_CHAIN_MAX + 1 buffers, the end of it, a page and a half in one buffer, 2000 bytes in two (the
/// host's MTU is below 1986 by then), and a chain's first buffer with nothing after it.
const BAD_CHAINS: [(u16, u32); 38] = {
    const MORE: u16 = status::compl_flags::MORE;
    let mut c = [(MORE, 0); 38];
    c[0] = (MORE, 60);
    c[33] = (0, 60);
    c[34] = (0, 6144);
    c[35] = (MORE, 1000);
    c[36] = (0, 1000);
    c[37] = (MORE, 60);
    c
};
const _: () = assert!(BAD_CHAINS.len() == bar::RX_CHAIN_MAX as usize + 6);

const PHASES: [Phase; 9] = [
    Phase::WrongId,
    Phase::NeverPosted,
    Phase::LongCompletion,
    Phase::UsedBeyond,
    Phase::InterruptStorm,
    Phase::BadMagic,
    Phase::BadVersion,
    Phase::StateFlap,
    Phase::BadChains,
];

/// Normal operation after the link is up, before the violation.
const ACT_DELAY: u64 = 3_000_000;
/// How long a garbage header stays.
const HOLD: u64 = 4_000_000;
/// Longest wait for the host to re-initialise after a violation; the next phase starts anyway.
const REACTION: u64 = 15_000_000;
/// The storm's length; each doorbell costs the emulated board a host system call, so it is also
/// bounded by a count (the board's clock runs slower than the wall clock while it is busy).
const STORM: u64 = 500_000;
const STORM_RINGS: u32 = 2_000_000;
const FLAP: u64 = 3_000_000;
/// Between two values of the flapping state byte.
const FLAP_STEP: u64 = 50_000;

struct Clock {
    ticks_per_micro: u64,
}

impl Clock {
    fn now(&self) -> u64 {
        e300::timebase::read() / self.ticks_per_micro
    }

    /// Sleep until a doorbell or `micros` pass.
    fn nap(&self, engine: &mut RingEngine, micros: u64) {
        let ticks = micros.saturating_mul(self.ticks_per_micro);
        e300::timebase::arm_decrementer(u32::try_from(ticks).unwrap_or(u32::MAX));
        e300::msr::without_interrupts(|| {
            if !irq::doorbells_pending() {
                e300::wait_for_interrupt();
            }
        });
        e300::timebase::park_decrementer();
        if irq::take_doorbells() != 0 {
            engine.doorbell();
        }
    }
}

/// The host's fields as they are now: (host_state UP, host_generation).
fn host_fields(engine: &mut RingEngine) -> (bool, u32) {
    let mut raw = [0u8; bar::HEADER_LEN];
    engine.shared().read(shared::HEADER_OFFSET, &mut raw);
    let header = bar::Header::new_unchecked(&raw[..]);
    (header.host_state() == Ok(HostState::Up), header.host_generation())
}

pub fn run(engine: &mut RingEngine, timebase_hz: u32) -> ! {
    let clock = Clock { ticks_per_micro: u64::from(timebase_hz / 1_000_000).max(1) };
    defmt::warn!("hostile-agent: a test image that breaks the contract on purpose");
    // Its garbage headers must reach the host as they are.
    engine.set_repairs(false);
    let mut mtu = None;
    for phase in PHASES {
        if let Some(mtu) = mtu {
            wait_for_go(engine, &clock, mtu);
        }
        let host = connect(engine, &clock, Some(ACT_DELAY));
        mtu = Some(host.mtu);
        defmt::warn!("hostile-agent: phase {=u8} ({=str})", phase as u8 + 1, phase.name());
        let restore = act(engine, &clock, phase, host);
        settle(engine, &clock, host.generation, restore);
    }
    if let Some(mtu) = mtu {
        wait_for_go(engine, &clock, mtu);
    }
    defmt::warn!("hostile-agent: every phase done, behaving from now on");
    connect(engine, &clock, None);
    // `connect` without a delay never returns.
    loop {
        clock.nap(engine, 1_000_000);
    }
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::WrongId => "wrong-id",
            Phase::NeverPosted => "never-posted",
            Phase::LongCompletion => "long-completion",
            Phase::UsedBeyond => "used-beyond",
            Phase::InterruptStorm => "interrupt-storm",
            Phase::BadMagic => "bad-magic",
            Phase::BadVersion => "bad-version",
            Phase::StateFlap => "state-flap",
            Phase::BadChains => "bad-chains",
        }
    }
}

/// Run the engine as the data path does (the host's frames are taken and dropped, none is sent)
/// until the link has been up for `delay` and no chain is in flight; then the host's fields. Without
/// a delay, for ever.
fn connect(engine: &mut RingEngine, clock: &Clock, delay: Option<u64>) -> bar::HostRepr {
    let mut since = None;
    loop {
        if irq::take_doorbells() != 0 {
            engine.doorbell();
        }
        engine.poll();
        super::log_refusal(engine);
        while let Some(received) = engine.receive() {
            engine.release(received.buffer);
        }
        let quiet = !engine.dma().in_flight();
        match (engine.host(), delay) {
            (Some(host), Some(delay)) => {
                let at = *since.get_or_insert(clock.now());
                if quiet && clock.now() - at >= delay {
                    return host;
                }
            }
            _ => since = None,
        }
        if quiet {
            clock.nap(engine, 10_000);
        }
    }
}

/// One DMA chain, waited for (a few words: microseconds).
fn dma(engine: &mut RingEngine, copies: &[Copy]) -> bool {
    if engine.dma().submit(copies).is_err() {
        return false;
    }
    loop {
        if let Some(done) = engine.dma().poll() {
            return done.is_ok();
        }
    }
}

/// Make the phase's violation. Returns the header bytes to put back after the hold, if it changed
/// them.
fn act(engine: &mut RingEngine, clock: &Clock, phase: Phase, host: bar::HostRepr) -> Option<[u8; 8]> {
    let Ok(entries) = Entries::new(super::RING_ENTRIES) else { return None };
    let block = host.status_block_addr;
    // The hostile content goes only where the host said, inside the window: the engine checked the
    // block at set-up; this image checks again rather than rely on it.
    let block_len = status::block_len(entries) as u64;
    if block.checked_add(block_len).is_none_or(|end| end > HOST_REACH_BYTES) {
        return None;
    }
    let staged = hw::STAGING;
    match phase {
        Phase::WrongId | Phase::NeverPosted | Phase::LongCompletion | Phase::UsedBeyond => {
            // The host must still be on this connection: its block is ours to write only then.
            if host_fields(engine) != (true, host.generation) {
                return None;
            }
            // What the host has seen so far: the status header as last DMA'd.
            let read_back = [Copy { src: Addr::Host(block), dst: Addr::Agent(staged), len: status::HEADER_LEN as u32 }];
            if !dma(engine, &read_back) {
                return None;
            }
            let mut raw = [0u8; status::HEADER_LEN];
            engine.ram().read(staged, &mut raw);
            let mut header = status::Header::new_unchecked(&mut raw[..]);
            let (tx_used, rx_used) = (header.tx_used(), header.rx_used());
            let (completion, reason) = match phase {
                Phase::WrongId => {
                    header.set_rx_used(rx_used.wrapping_add(1));
                    let id = (rx_used as u16).wrapping_add(0x8000);
                    (Some((status::rx_completion_offset(entries, rx_used), id, 60)), cause::RX)
                }
                Phase::NeverPosted => {
                    let mut doorbells = [0u8; bar::DOORBELLS_LEN];
                    engine.shared().read(shared::DOORBELLS_OFFSET, &mut doorbells[..16]);
                    let tx_prod = Doorbells::new_unchecked(&doorbells[..]).tx_prod();
                    header.set_tx_used(tx_prod.wrapping_add(1));
                    (Some((status::tx_completion_offset(entries, tx_prod), tx_prod as u16, 60)), cause::TX)
                }
                Phase::LongCompletion => {
                    header.set_rx_used(rx_used.wrapping_add(1));
                    let len = u32::from(host.mtu) + 14 + 4096;
                    (Some((status::rx_completion_offset(entries, rx_used), rx_used as u16, len)), cause::RX)
                }
                _ => {
                    header.set_rx_used(rx_used.wrapping_add(0x4000_0000));
                    (None, cause::RX)
                }
            };
            header.set_interrupt_cause(reason);
            defmt::warn!("hostile-agent: status block had tx_used {=u32} rx_used {=u32}", tx_used, rx_used);
            let mut copies = [Copy { src: Addr::Agent(staged), dst: Addr::Host(block), len: 0 }; 2];
            let mut n = 0;
            if let Some((offset, id, len)) = completion {
                let mut c = [0u8; COMPLETION_LEN];
                CompletionRepr { id, flags: 0, len }.emit(&mut Completion::new_unchecked(&mut c[..]));
                let at = staged + status::HEADER_LEN as u32;
                engine.ram().write(at, &c);
                copies[n] =
                    Copy { src: Addr::Agent(at), dst: Addr::Host(block + offset as u64), len: COMPLETION_LEN as u32 };
                n += 1;
            }
            // The header last, as the engine does: the host sees the completion with the index.
            engine.ram().write(staged, &raw);
            copies[n] = Copy { src: Addr::Agent(staged), dst: Addr::Host(block), len: status::HEADER_LEN as u32 };
            n += 1;
            if dma(engine, &copies[..n]) {
                engine.notify().interrupt_host();
            }
            None
        }
        Phase::BadChains => {
            if host_fields(engine) != (true, host.generation)
                || host.features & bar::feature::RX_MULTI_BUFFER == 0
                || status::HEADER_LEN + BAD_CHAINS.len() * COMPLETION_LEN > bpnet_ring::STAGING_LEN
            {
                return None;
            }
            let read_back = [Copy { src: Addr::Host(block), dst: Addr::Agent(staged), len: status::HEADER_LEN as u32 }];
            if !dma(engine, &read_back) {
                return None;
            }
            let mut raw = [0u8; status::HEADER_LEN];
            engine.ram().read(staged, &mut raw);
            let mut header = status::Header::new_unchecked(&mut raw[..]);
            let rx_used = header.rx_used();
            // Buffers the host posted, with their ids (index mod 2^16): only the chains are wrong.
            let mut copies = [Copy { src: Addr::Agent(staged), dst: Addr::Host(block), len: 0 }; BAD_CHAINS.len() + 1];
            for (i, &(flags, len)) in BAD_CHAINS.iter().enumerate() {
                let index = rx_used.wrapping_add(i as u32);
                let mut c = [0u8; COMPLETION_LEN];
                CompletionRepr { id: index as u16, flags, len }.emit(&mut Completion::new_unchecked(&mut c[..]));
                let at = staged + (status::HEADER_LEN + i * COMPLETION_LEN) as u32;
                engine.ram().write(at, &c);
                let dst = block + status::rx_completion_offset(entries, index) as u64;
                copies[i] = Copy { src: Addr::Agent(at), dst: Addr::Host(dst), len: COMPLETION_LEN as u32 };
            }
            header.set_rx_used(rx_used.wrapping_add(BAD_CHAINS.len() as u32));
            header.set_interrupt_cause(cause::RX);
            engine.ram().write(staged, &raw);
            copies[BAD_CHAINS.len()] =
                Copy { src: Addr::Agent(staged), dst: Addr::Host(block), len: status::HEADER_LEN as u32 };
            defmt::warn!(
                "hostile-agent: {=usize} malformed RX completions from rx_used {=u32}",
                BAD_CHAINS.len(),
                rx_used
            );
            if dma(engine, &copies) {
                engine.notify().interrupt_host();
            }
            None
        }
        Phase::InterruptStorm => {
            let start = clock.now();
            let mut rung = 0u32;
            while clock.now() - start < STORM && rung < STORM_RINGS {
                engine.notify().interrupt_host();
                engine.notify().link_changed();
                rung = rung.wrapping_add(1);
            }
            defmt::warn!("hostile-agent: rang STATUS and LINK {=u32} times", rung);
            None
        }
        Phase::BadMagic | Phase::BadVersion => {
            let mut saved = [0u8; 8];
            engine.shared().read(shared::HEADER_OFFSET + bar::field::header::MAGIC, &mut saved);
            if phase == Phase::BadMagic {
                engine.shared().write(shared::HEADER_OFFSET + bar::field::header::MAGIC, b"EVIL");
            } else {
                let major = bar::VERSION_MAJOR.wrapping_add(0x7e).to_le_bytes();
                engine.shared().write(shared::HEADER_OFFSET + bar::field::header::VERSION_MAJOR, &major);
            }
            // BROKEN makes the host re-initialise, and so read the header again.
            engine
                .shared()
                .write(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, &[bar::AgentState::Broken as u8]);
            engine.notify().link_changed();
            Some(saved)
        }
        Phase::StateFlap => {
            // READY, RUNNING, an undefined value, BROKEN, RESET: the undefined one comes while the
            // host believes the link is up, so its link check reads it.
            const STATES: [u8; 5] = [1, 2, 0x7f, 3, 0];
            let start = clock.now();
            let mut step = 0;
            while clock.now() - start < FLAP {
                let value = STATES[step % STATES.len()];
                step += 1;
                engine.shared().write(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, &[value]);
                engine.notify().link_changed();
                let at = clock.now();
                while clock.now() - at < FLAP_STEP {
                    clock.nap(engine, FLAP_STEP);
                }
            }
            // Back to what the engine last published, so it takes over consistently.
            engine
                .shared()
                .write(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, &[bar::AgentState::Running as u8]);
            None
        }
    }
}

/// The host's cue for the next phase: a set-up (host_state UP) with an MTU other than `mtu`, the
/// last connection's. Until then the engine is left alone, so the host's set-ups go unanswered and
/// the carrier stays off while the host's side is examined.
fn wait_for_go(engine: &mut RingEngine, clock: &Clock, mtu: u16) {
    loop {
        let mut raw = [0u8; bar::HEADER_LEN];
        engine.shared().read(shared::HEADER_OFFSET, &mut raw);
        let header = bar::Header::new_unchecked(&raw[..]);
        if header.host_state() == Ok(HostState::Up) && header.mtu() != mtu {
            return;
        }
        clock.nap(engine, 50_000);
    }
}

/// Wait for the host to leave the connection and let the engine publish READY (no chain is in
/// flight); with `restore`, keep the garbage header for [`HOLD`], then put its bytes back.
fn settle(engine: &mut RingEngine, clock: &Clock, generation: u32, restore: Option<[u8; 8]>) {
    let start = clock.now();
    loop {
        if host_fields(engine) != (true, generation) {
            break;
        }
        if clock.now() - start >= REACTION {
            // Still connected: the next phase runs on this connection.
            defmt::warn!("hostile-agent: the host did not re-initialise");
            break;
        }
        clock.nap(engine, 10_000);
    }
    if host_fields(engine) != (true, generation) {
        engine.poll();
    }
    if let Some(saved) = restore {
        let held = clock.now();
        while clock.now() - held < HOLD {
            clock.nap(engine, 100_000);
        }
        engine.shared().write(shared::HEADER_OFFSET + bar::field::header::MAGIC, &saved);
    }
}
