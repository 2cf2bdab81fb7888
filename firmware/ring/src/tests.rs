//! The engine against a model of the host half: a fake shared region, fake host RAM, a fake DMA
//! controller that copies between them and refuses (by panicking) any copy outside host RAM or the
//! agent's configured buffers, and a host that posts and reaps exactly as the kernel module does,
//! reading completions only from its own RAM.

extern crate std;

use super::*;
use bpnet_contract::bar::{desc_flags, Layout};
use bpnet_contract::status::Block;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

const HOST_BASE: u64 = 0x1_0000_0000;
const AGENT_BASE: u32 = 0x0100_0000;
const BUF_LEN: u32 = 9216;
const N_BUFS: usize = 8;
/// Each host buffer slot (TX frames, RX buffers) in host RAM.
const HOST_SLOT: usize = 9216;

struct World {
    shared: Vec<u8>,
    host: Vec<u8>,
    agent: Vec<u8>,
    /// Agent RAM ranges a DMA may touch: the configured buffers and the staging area.
    allowed: Vec<(u32, u32)>,
    chains: VecDeque<(Ticket, Vec<Copy>, usize)>,
    next_ticket: u32,
    /// Polls a chain takes to complete.
    latency: usize,
    submits: usize,
    interrupts: usize,
    link_changes: usize,
    /// Fail the next n chains (after performing nothing).
    fail: usize,
    /// Refuse the next n submissions as busy.
    busy: usize,
}

impl World {
    fn host_range(&self, addr: u64, len: u32) -> core::ops::Range<usize> {
        assert!(addr >= HOST_BASE, "host copy below host RAM: {addr:#x}");
        let at = (addr - HOST_BASE) as usize;
        assert!(at + len as usize <= self.host.len(), "host copy past host RAM: {addr:#x}+{len}");
        at..at + len as usize
    }

    fn agent_range(&self, addr: u32, len: u32) -> core::ops::Range<usize> {
        let end = addr as u64 + len as u64;
        assert!(
            self.allowed.iter().any(|&(a, l)| addr >= a && end <= a as u64 + l as u64),
            "agent copy outside the buffers: {addr:#x}+{len}"
        );
        let at = (addr - AGENT_BASE) as usize;
        at..at + len as usize
    }

    fn check(&self, copy: &Copy) {
        for end in [copy.src, copy.dst] {
            match end {
                Addr::Host(a) => drop(self.host_range(a, copy.len)),
                Addr::Agent(a) => drop(self.agent_range(a, copy.len)),
            }
        }
    }

    fn perform(&mut self, copy: &Copy) {
        let mut data = vec![0u8; copy.len as usize];
        match copy.src {
            Addr::Host(a) => data.copy_from_slice(&self.host[self.host_range(a, copy.len)]),
            Addr::Agent(a) => data.copy_from_slice(&self.agent[self.agent_range(a, copy.len)]),
        }
        match copy.dst {
            Addr::Host(a) => {
                let r = self.host_range(a, copy.len);
                self.host[r].copy_from_slice(&data)
            }
            Addr::Agent(a) => {
                let r = self.agent_range(a, copy.len);
                self.agent[r].copy_from_slice(&data)
            }
        }
    }
}

type W = Rc<RefCell<World>>;
struct FakeDma(W);
struct FakeShared(W);
struct FakeRam(W);
struct FakeNotify(W);

impl Dma for FakeDma {
    fn submit(&mut self, copies: &[Copy]) -> Result<Ticket, DmaError> {
        let mut w = self.0.borrow_mut();
        assert!(copies.len() <= MAX_COPIES);
        assert!(w.chains.is_empty(), "the engine keeps one chain in flight");
        copies.iter().for_each(|c| w.check(c));
        if w.busy > 0 {
            w.busy -= 1;
            return Err(DmaError::Busy);
        }
        w.submits += 1;
        w.next_ticket += 1;
        let (ticket, latency) = (Ticket(w.next_ticket), w.latency);
        w.chains.push_back((ticket, copies.to_vec(), latency));
        Ok(ticket)
    }

    fn poll(&mut self) -> Option<Result<Ticket, DmaError>> {
        let mut w = self.0.borrow_mut();
        let front = w.chains.front_mut()?;
        if front.2 > 0 {
            front.2 -= 1;
            return None;
        }
        let (ticket, copies, _) = w.chains.pop_front()?;
        if w.fail > 0 {
            w.fail -= 1;
            return Some(Err(DmaError::Transfer));
        }
        copies.iter().for_each(|c| w.perform(c));
        Some(Ok(ticket))
    }
}

impl Shared for FakeShared {
    fn read(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow().shared[offset..offset + buf.len()]);
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        self.0.borrow_mut().shared[offset..offset + data.len()].copy_from_slice(data);
    }
}

impl AgentRam for FakeRam {
    fn read(&self, addr: u32, buf: &mut [u8]) {
        let at = (addr - AGENT_BASE) as usize;
        buf.copy_from_slice(&self.0.borrow().agent[at..at + buf.len()]);
    }
    fn write(&mut self, addr: u32, data: &[u8]) {
        let at = (addr - AGENT_BASE) as usize;
        self.0.borrow_mut().agent[at..at + data.len()].copy_from_slice(data);
    }
}

impl Notify for FakeNotify {
    fn interrupt_host(&mut self) {
        self.0.borrow_mut().interrupts += 1;
    }
    fn link_changed(&mut self) {
        self.0.borrow_mut().link_changes += 1;
    }
}

type TestEngine = Engine<FakeDma, FakeShared, FakeRam, FakeNotify>;

fn entries(n: u32) -> Entries {
    Entries::new(n).unwrap()
}

fn agent_repr(ring: u32) -> AgentRepr {
    AgentRepr {
        features: feature::ALL,
        generation: 5,
        firmware_version: bar::firmware_version(0, 1, 0),
        layout: Layout::DEFAULT,
        mac: [2, 0, 0, 0, 0, 1],
        ring_entries: entries(ring),
    }
}

/// A world and an engine over it.
fn engine(ring: u32, latency: usize) -> (TestEngine, W) {
    engine_with(ring, latency, N_BUFS)
}

/// A world and an engine with `bufs` buffers in each pool.
fn engine_with(ring: u32, latency: usize, bufs: usize) -> (TestEngine, W) {
    let rx: Vec<u32> = (0..bufs as u32).map(|i| AGENT_BASE + i * BUF_LEN).collect();
    let tx: Vec<u32> = (0..bufs as u32).map(|i| AGENT_BASE + (bufs as u32 + i) * BUF_LEN).collect();
    let staging = AGENT_BASE + 2 * bufs as u32 * BUF_LEN;
    let mut allowed: Vec<(u32, u32)> = rx.iter().chain(&tx).map(|&a| (a, BUF_LEN)).collect();
    allowed.push((staging, STAGING_LEN as u32));
    let host_len = status::block_len(entries(ring)).next_multiple_of(64) + 2 * ring as usize * HOST_SLOT;
    let world = Rc::new(RefCell::new(World {
        shared: vec![0; shared::LEN],
        host: vec![0; host_len],
        agent: vec![0; (staging - AGENT_BASE) as usize + STAGING_LEN],
        allowed,
        chains: VecDeque::new(),
        next_ticket: 0,
        latency,
        submits: 0,
        interrupts: 0,
        link_changes: 0,
        fail: 0,
        busy: 0,
    }));
    let config = Config {
        agent: agent_repr(ring),
        window: Window { base: HOST_BASE, len: host_len as u64 },
        from_host_buffers: &rx,
        to_host_buffers: &tx,
        buffer_len: BUF_LEN,
        staging,
    };
    let w = world.clone();
    let engine =
        Engine::new(config, FakeDma(w.clone()), FakeShared(w.clone()), FakeRam(w.clone()), FakeNotify(w)).unwrap();
    (engine, world)
}

/// The kernel module's half, in Rust: posted writes into the shared region, reads of host RAM only.
struct HostModel {
    w: W,
    entries: Entries,
    features: u32,
    mtu: u16,
    generation: u32,
    tx_prod: u32,
    tx_seen: u32,
    rx_prod: u32,
    rx_seen: u32,
    /// Frames posted and not yet completed, by TX index: (id, frame).
    tx_posted: VecDeque<(u16, Vec<u8>)>,
    /// Buffers posted and not yet filled, by RX index: (id, capacity).
    rx_posted: VecDeque<(u16, u32)>,
    /// Bytes of each RX buffer posted: the MTU plus the Ethernet header, or a page with
    /// RX_MULTI_BUFFER.
    rx_cap: u32,
    /// With RX_MULTI_BUFFER: the frame being reassembled and its check.
    chain: status::RxChain,
    partial: Vec<u8>,
    /// Chains the host refused (RxChain).
    rx_bad_chains: usize,
    received: Vec<Vec<u8>>,
    tx_errors: usize,
    rx_errors: usize,
    tx_done: usize,
    /// Frames the agent marked NEEDS_CSUM.
    needs_csum: usize,
    doorbells: usize,
    /// How many completions past the last seen the host lets go by before it wants an interrupt.
    event_delay: u32,
    next_id: u16,
}

impl HostModel {
    fn new(w: W, ring: u32, features: u32, mtu: u16) -> Self {
        HostModel {
            w,
            entries: entries(ring),
            features,
            mtu,
            generation: 1,
            tx_prod: 0,
            tx_seen: 0,
            rx_prod: 0,
            rx_seen: 0,
            tx_posted: VecDeque::new(),
            rx_posted: VecDeque::new(),
            rx_cap: if features & feature::RX_MULTI_BUFFER != 0 { bar::RX_BUFFER_MIN } else { mtu as u32 + 14 },
            chain: status::RxChain::new(),
            partial: Vec::new(),
            rx_bad_chains: 0,
            received: Vec::new(),
            tx_errors: 0,
            rx_errors: 0,
            tx_done: 0,
            needs_csum: 0,
            doorbells: 0,
            event_delay: 0,
            next_id: 0,
        }
    }

    fn block_len(&self) -> usize {
        status::block_len(self.entries).next_multiple_of(64)
    }
    fn tx_buffer(&self, index: u32) -> usize {
        self.block_len() + ring::slot(index, self.entries) * HOST_SLOT
    }
    fn rx_buffer(&self, index: u32) -> usize {
        self.block_len() + (self.entries.get() as usize + ring::slot(index, self.entries)) * HOST_SLOT
    }

    /// A posted write of doorbell words into the shared region.
    fn set_doorbells(&self, f: impl FnOnce(&mut Doorbells<&mut [u8]>)) {
        let at = shared::DOORBELLS_OFFSET;
        let mut w = self.w.borrow_mut();
        f(&mut Doorbells::new_unchecked(&mut w.shared[at..at + DOORBELLS_LEN]));
    }

    fn status(&self) -> (u32, u32, u32, u32) {
        let w = self.w.borrow();
        let h = status::Header::new_unchecked(&w.host[..status::HEADER_LEN]);
        (h.tx_used(), h.rx_used(), h.tx_prod_event(), h.rx_prod_event())
    }

    /// Set-up: zero the doorbells and the status block, write the host fields, then UP.
    fn init(&mut self) {
        self.generation += 1;
        (self.tx_prod, self.tx_seen, self.rx_prod, self.rx_seen) = (0, 0, 0, 0);
        self.tx_posted.clear();
        self.rx_posted.clear();
        self.chain = status::RxChain::new();
        self.partial.clear();
        let mut w = self.w.borrow_mut();
        let block_len = status::block_len(self.entries);
        w.host[..block_len].fill(0);
        w.shared[shared::DOORBELLS_OFFSET..shared::DOORBELLS_OFFSET + DOORBELLS_LEN].fill(0);
        let mut header = Header::new_unchecked(&mut w.shared[..bar::HEADER_LEN]);
        HostRepr { features: self.features, generation: self.generation, mtu: self.mtu, status_block_addr: HOST_BASE }
            .emit(&mut header);
        header.set_host_state(HostState::Up);
    }

    fn down(&mut self) {
        let mut w = self.w.borrow_mut();
        Header::new_unchecked(&mut w.shared[..bar::HEADER_LEN]).set_host_state(HostState::Down);
    }

    fn write_descriptor(&self, ring_offset: usize, index: u32, d: DescriptorRepr) {
        let at = ring_offset + ring::slot(index, self.entries) * DESCRIPTOR_LEN;
        let mut w = self.w.borrow_mut();
        d.emit(&mut Descriptor::new_unchecked(&mut w.shared[at..at + DESCRIPTOR_LEN]));
    }

    /// Ring the doorbell only if the agent asked ([`ring::need_event`] on its tx/rx_prod_event).
    fn ring_if_wanted(&mut self, engine: &mut TestEngine, event: u32, new: u32, old: u32) {
        if self.features & feature::EVENT_INDEX == 0 || ring::need_event(event, new, old) {
            self.doorbells += 1;
            engine.doorbell();
        }
    }

    /// Queue a frame to the agent; false when the ring is full.
    fn send(&mut self, engine: &mut TestEngine, frame: &[u8]) -> bool {
        if self.tx_prod.wrapping_sub(self.tx_seen) == self.entries.get() {
            return false;
        }
        let at = self.tx_buffer(self.tx_prod);
        self.w.borrow_mut().host[at..at + frame.len()].copy_from_slice(frame);
        self.next_id = self.next_id.wrapping_add(1);
        let d = DescriptorRepr { addr: HOST_BASE + at as u64, len: frame.len() as u32, id: self.next_id, flags: 0 };
        self.write_descriptor(shared::TX_RING_OFFSET, self.tx_prod, d);
        self.tx_posted.push_back((self.next_id, frame.to_vec()));
        let old = self.tx_prod;
        self.tx_prod = self.tx_prod.wrapping_add(1);
        let prod = self.tx_prod;
        self.set_doorbells(|d| d.set_tx_prod(prod));
        let event = self.status().2;
        self.ring_if_wanted(engine, event, self.tx_prod, old);
        true
    }

    /// Post RX buffers until the ring is full.
    fn fill_rx(&mut self, engine: &mut TestEngine) {
        self.post_rx(engine, self.entries.get());
    }

    /// Post RX buffers until `n` are posted (or the ring is full).
    fn post_rx(&mut self, engine: &mut TestEngine, n: u32) {
        let old = self.rx_prod;
        while self.rx_prod.wrapping_sub(self.rx_seen) < n.min(self.entries.get()) {
            let at = self.rx_buffer(self.rx_prod);
            self.next_id = self.next_id.wrapping_add(1);
            let cap = self.rx_cap;
            let d = DescriptorRepr { addr: HOST_BASE + at as u64, len: cap, id: self.next_id, flags: 0 };
            self.write_descriptor(shared::RX_RING_OFFSET, self.rx_prod, d);
            self.rx_posted.push_back((self.next_id, cap));
            self.rx_prod = self.rx_prod.wrapping_add(1);
        }
        if self.rx_prod != old {
            let prod = self.rx_prod;
            self.set_doorbells(|d| d.set_rx_prod(prod));
            let event = self.status().3;
            self.ring_if_wanted(engine, event, self.rx_prod, old);
        }
    }

    /// Read completions from host RAM, check them, and ask for the next interrupt.
    fn reap(&mut self) {
        let (tx_used, rx_used, _, _) = self.status();
        assert!(ring::pending(tx_used, self.tx_seen, self.entries).is_ok(), "tx_used {tx_used} vs {}", self.tx_seen);
        assert!(ring::pending(rx_used, self.rx_seen, self.entries).is_ok());
        let w = self.w.borrow().host.clone();
        let block = Block::new_checked(&w[..], self.entries).unwrap();
        while self.tx_seen != tx_used {
            let (id, frame) = self.tx_posted.pop_front().expect("completion for an unposted frame");
            let c = block.tx_completion(self.tx_seen).check(u32::MAX).unwrap();
            assert_eq!(c.id, id);
            if c.flags & compl_flags::ERROR != 0 {
                self.tx_errors += 1;
            } else {
                assert_eq!(c.len as usize, frame.len());
                self.tx_done += 1;
            }
            self.tx_seen = self.tx_seen.wrapping_add(1);
        }
        while self.rx_seen != rx_used {
            let (id, cap) = self.rx_posted.pop_front().expect("completion for an unposted buffer");
            let c = block.rx_completion(self.rx_seen).check(cap).unwrap();
            assert_eq!(c.id, id);
            let multi = self.features & feature::RX_MULTI_BUFFER != 0;
            assert!(multi || c.flags & compl_flags::MORE == 0, "MORE without RX_MULTI_BUFFER");
            if c.flags & compl_flags::ERROR != 0 {
                self.rx_errors += 1;
                assert_eq!(self.chain.abort(), 0, "the agent never breaks off a frame");
                self.partial.clear();
            } else {
                let at = self.rx_buffer(self.rx_seen);
                self.partial.extend_from_slice(&w[at..at + c.len as usize]);
                if c.flags & compl_flags::MORE != 0 {
                    assert_eq!(c.len, cap, "the agent fills a buffer whole before the next");
                }
                let max_frame = self.mtu as u32 + 14;
                let done = match self.chain.push(c, max_frame) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        self.rx_seen = self.rx_seen.wrapping_add(1);
                        continue;
                    }
                    Err(_) => {
                        self.rx_bad_chains += 1;
                        self.partial.clear();
                        self.rx_seen = self.rx_seen.wrapping_add(1);
                        continue;
                    }
                };
                assert_eq!(done.len as usize, self.partial.len());
                let offload = self.features & feature::CSUM_OFFLOAD != 0;
                match done.flags & (compl_flags::CSUM_VALID | compl_flags::NEEDS_CSUM) {
                    compl_flags::CSUM_VALID => assert!(offload),
                    compl_flags::NEEDS_CSUM => {
                        assert!(offload);
                        self.needs_csum += 1;
                    }
                    other => assert!(other == 0 && !offload, "checksum flags {other:#x}"),
                }
                self.received.push(core::mem::take(&mut self.partial));
            }
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }
        let (tx_event, rx_event) =
            (self.tx_seen.wrapping_add(self.event_delay), self.rx_seen.wrapping_add(self.event_delay));
        self.set_doorbells(|d| {
            d.set_tx_used_event(tx_event);
            d.set_rx_used_event(rx_event);
        });
    }
}

/// A frame of `len` bytes whose content depends on `seed`.
fn frame(len: usize, seed: u32) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed.wrapping_mul(7919)) as u8).collect()
}

/// Frames the stack got from the engine, read from agent RAM, buffers released.
fn drain(engine: &mut TestEngine, w: &W) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    while let Some(r) = engine.receive() {
        let at = (r.addr - AGENT_BASE) as usize;
        out.push((w.borrow().agent[at..at + r.len as usize].to_vec(), r.needs_csum));
        engine.release(r.buffer);
    }
    out
}

fn connect(ring: u32, latency: usize, features: u32, mtu: u16) -> (TestEngine, HostModel) {
    connect_with(ring, latency, features, mtu, N_BUFS)
}

fn connect_with(ring: u32, latency: usize, features: u32, mtu: u16, bufs: usize) -> (TestEngine, HostModel) {
    let (mut engine, w) = engine_with(ring, latency, bufs);
    assert_eq!(engine.state(), AgentState::Ready);
    let mut host = HostModel::new(w, ring, features, mtu);
    host.init();
    for _ in 0..(latency + 2) {
        engine.poll();
    }
    assert_eq!(engine.state(), AgentState::Running);
    (engine, host)
}

/// Run both sides until nothing moves; frames the stack got come back.
fn settle(engine: &mut TestEngine, host: &mut HostModel, polls: usize) -> Vec<(Vec<u8>, bool)> {
    let w = host.w.clone();
    let mut got = Vec::new();
    for _ in 0..polls {
        engine.poll();
        got.extend(drain(engine, &w));
        host.reap();
    }
    got
}

#[test]
fn handshake_publishes_header_and_goes_running() {
    let (mut engine, w) = engine(64, 0);
    {
        let world = w.borrow();
        let header = Header::new_unchecked(&world.shared[..bar::HEADER_LEN]);
        assert_eq!(AgentRepr::parse(&header), Ok(agent_repr(64)));
        assert_eq!(header.agent_state(), Ok(AgentState::Ready));
        // The reach: the window's end, in the agent info block published with the header.
        let at = shared::AGENT_INFO_OFFSET;
        let info = bar::AgentInfo::new_checked(&world.shared[at..at + bar::AGENT_INFO_LEN]).unwrap();
        let end = HOST_BASE + world.host.len() as u64;
        assert_eq!(bar::parse_dma_reach(header.version_minor(), &info), Ok(end));
    }
    assert_eq!(w.borrow().link_changes, 1, "READY at boot is announced");
    engine.poll();
    assert_eq!(engine.state(), AgentState::Ready, "host still down");
    let mut host = HostModel::new(w.clone(), 64, feature::ALL, 9000);
    host.init();
    engine.poll();
    assert_eq!(engine.state(), AgentState::Running);
    assert_eq!(w.borrow().shared[field::header::AGENT_STATE], AgentState::Running as u8);
    engine.poll();
    engine.poll();
    // The LINK status reached host RAM, with an interrupt.
    let world = w.borrow();
    let h = status::Header::new_unchecked(&world.host[..status::HEADER_LEN]);
    assert_eq!(h.agent_generation(), 5);
    assert_eq!(h.interrupt_cause(), cause::LINK);
    assert_eq!(world.interrupts, 1);
    assert_eq!(world.link_changes, 1, "RUNNING is announced by the status block, not by LINK");
}

#[test]
fn handshake_status_arrives_after_the_chain() {
    let (mut engine, w) = engine(64, 0);
    let mut host = HostModel::new(w.clone(), 64, feature::ALL, 9000);
    host.init();
    engine.poll();
    engine.poll();
    assert_eq!(w.borrow().interrupts, 0, "no interrupt before the status chain completes");
}

#[test]
fn agent_state_byte_is_where_the_contract_puts_it() {
    let mut buf = [0u8; bar::HEADER_LEN];
    Header::new_unchecked(&mut buf[..]).set_agent_state(AgentState::Broken);
    assert_eq!(buf.iter().position(|&b| b != 0), Some(field::header::AGENT_STATE));
}

#[test]
fn refused_host_config_breaks_until_reinit() {
    let (mut engine, w) = engine(64, 0);
    let mut host = HostModel::new(w.clone(), 64, feature::ALL, 9000);
    host.init();
    // Accepts a feature the agent never offered.
    w.borrow_mut().shared[field::header::HOST_FEATURES] = 0x80;
    engine.poll();
    assert_eq!(engine.state(), AgentState::Broken);
    assert_eq!(engine.counter(counter::BAD_HOST_CONFIG), 1);
    engine.poll();
    assert_eq!(engine.state(), AgentState::Broken);
    host.init();
    engine.poll();
    engine.poll();
    assert_eq!(engine.state(), AgentState::Running);
}

#[test]
fn frames_both_ways_byte_for_byte_across_many_wraps() {
    for latency in [0, 3] {
        let (mut engine, mut host) = connect(16, latency, feature::ALL, 9000);
        host.event_delay = 0;
        let sizes: Vec<usize> = (0..600).map(|i| 60 + (i * 1237) % (9014 - 60 + 1)).collect();
        let (mut sent, mut expect_to_host) = (0, Vec::new());
        let mut got = Vec::new();
        let mut tx_i = 0;
        for round in 0..20_000 {
            if got.len() == sizes.len() && host.received.len() == sizes.len() {
                break;
            }
            host.fill_rx(&mut engine);
            while sent < sizes.len() && host.send(&mut engine, &frame(sizes[sent], sent as u32)) {
                sent += 1;
            }
            if tx_i < sizes.len() {
                let f = frame(sizes[sizes.len() - 1 - tx_i], 1_000_000 + tx_i as u32);
                match engine.transmit(&f) {
                    Ok(()) => {
                        expect_to_host.push(f);
                        tx_i += 1;
                    }
                    Err(TransmitError::Busy | TransmitError::NoBuffer) => {}
                    Err(e) => panic!("{e:?} at round {round}"),
                }
            }
            got.extend(settle(&mut engine, &mut host, 1));
        }
        assert_eq!(got.len(), sizes.len());
        for (i, (f, needs_csum)) in got.iter().enumerate() {
            assert_eq!(f, &frame(sizes[i], i as u32), "host->agent frame {i}");
            assert!(!needs_csum);
        }
        // NoBuffer drops are allowed by the API but never happen here: the host keeps RX posted.
        assert_eq!(engine.counter(counter::RX_NO_BUFFER), 0);
        assert_eq!(host.received, expect_to_host);
        assert_eq!(engine.counter(counter::TX_FRAMES) as usize, sizes.len());
        assert_eq!(engine.counter(counter::RX_FRAMES) as usize, sizes.len());
        let bytes: usize = sizes.iter().sum();
        assert_eq!(engine.counter(counter::TX_BYTES) as usize, bytes);
        assert_eq!(engine.counter(counter::RX_BYTES) as usize, bytes);
        assert_eq!((host.tx_errors, host.rx_errors), (0, 0));
        // 600 frames through a 16-entry ring: many wraps of both rings.
        assert!(host.tx_prod > 16 * 30 && host.rx_seen > 16 * 30);
        // The counters in the BAR match the engine's.
        let w = host.w.borrow();
        let c = Counters::new_checked(&w.shared[shared::COUNTERS_OFFSET..][..COUNTERS_LEN]).unwrap();
        assert_eq!(c.get(counter::TX_FRAMES), Ok(600));
    }
}

#[test]
fn one_chain_per_poll_for_many_frames() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 2);
    host.fill_rx(&mut engine);
    for i in 0..8 {
        assert!(host.send(&mut engine, &frame(100 + i, i as u32)));
    }
    for i in 0..8 {
        engine.transmit(&frame(200 + i, i as u32)).unwrap();
    }
    let before = w.borrow().submits;
    engine.poll();
    assert_eq!(w.borrow().submits, before + 1);
    // 8 frames each way, 2 completion pieces, 1 header.
    assert_eq!(w.borrow().chains.front().unwrap().1.len(), 19);
    engine.poll();
    assert_eq!(drain(&mut engine, &w).len(), 8);
    host.reap();
    assert_eq!((host.tx_done, host.received.len()), (8, 8));
}

#[test]
fn frames_wait_for_agent_buffers() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    for i in 0..20 {
        assert!(host.send(&mut engine, &frame(64, i)));
    }
    // The stack holds every buffer: the engine stops taking descriptors, then resumes.
    for _ in 0..4 {
        engine.poll();
    }
    let mut held = Vec::new();
    while let Some(r) = engine.receive() {
        held.push(r);
    }
    assert_eq!(held.len(), N_BUFS);
    for _ in 0..4 {
        engine.poll();
    }
    assert!(engine.receive().is_none());
    host.reap();
    assert_eq!(host.tx_done, N_BUFS);
    for r in held {
        engine.release(r.buffer);
    }
    let got = settle(&mut engine, &mut host, 10);
    assert_eq!(got.len(), 20 - N_BUFS);
    assert_eq!(host.tx_done, 20);
    let _ = w;
}

/// At saturation both directions, the host asks to be woken only every 64 completions (it is busy
/// polling in between) and the agent publishes its consumer index: interrupts and doorbells per
/// packet fall far below one.
#[test]
fn suppression_at_saturation() {
    let (mut engine, mut host) = connect(256, 1, feature::ALL, 1500);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 3);
    host.event_delay = 64;
    let (irq0, bells0) = (w.borrow().interrupts, host.doorbells);
    let mut n = 0u32;
    for _ in 0..4000 {
        host.fill_rx(&mut engine);
        while host.send(&mut engine, &frame(1514, n)) {
            n += 1;
        }
        while engine.transmit(&frame(1514, n)).is_ok() {}
        engine.poll();
        drain(&mut engine, &w);
        host.reap();
    }
    let packets = (host.tx_done + host.received.len()) as f64;
    let irqs = (w.borrow().interrupts - irq0) as f64;
    let bells = (host.doorbells - bells0) as f64;
    assert!(packets > 10_000.0, "{packets}");
    assert!(irqs / packets < 1.0 / 16.0, "{irqs} interrupts for {packets} packets");
    assert!(bells / packets < 1.0 / 16.0, "{bells} doorbells for {packets} packets");
    assert_eq!(engine.counter(counter::INTERRUPTS) as f64, w.borrow().interrupts as f64);
}

/// A host that asks to be woken at every completion still gets one interrupt per INTERRUPT_BATCH
/// completions while the agent stays busy, and one as soon as the agent runs out of work.
#[test]
fn interrupts_are_moderated_while_busy() {
    // As many agent buffers as the board has: the next chain goes out while the stack still holds
    // frames of the last one.
    let (mut engine, mut host) = connect_with(256, 1, feature::ALL, 1500, MAX_BUFFERS);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 3);
    host.event_delay = 0;
    let irq0 = w.borrow().interrupts;
    let mut n = 0u32;
    for _ in 0..2000 {
        host.fill_rx(&mut engine);
        while host.send(&mut engine, &frame(1514, n)) {
            n += 1;
        }
        engine.poll();
        drain(&mut engine, &w);
        host.reap();
    }
    let packets = host.tx_done as f64;
    let irqs = (w.borrow().interrupts - irq0) as f64;
    assert!(packets > 4_000.0, "{packets}");
    assert!(irqs / packets <= 1.0 / f64::from(INTERRUPT_BATCH) * 1.1, "{irqs} interrupts for {packets} packets");
    // Quiet: one frame, and its interrupt comes without waiting for more.
    // Everything the saturation phase posted is taken first.
    settle(&mut engine, &mut host, 400);
    let (irq1, done1) = (w.borrow().interrupts, host.tx_done);
    assert!(host.send(&mut engine, &frame(60, 1)));
    settle(&mut engine, &mut host, 8);
    assert_eq!(host.tx_done, done1 + 1);
    assert_eq!(w.borrow().interrupts, irq1 + 1);
}

#[test]
fn without_event_index_every_batch_interrupts() {
    let (mut engine, mut host) = connect(64, 0, feature::MTU, 1500);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 2);
    let irq0 = w.borrow().interrupts;
    for round in 0..10 {
        assert!(host.send(&mut engine, &frame(60, round)));
        settle(&mut engine, &mut host, 2);
    }
    assert_eq!(w.borrow().interrupts - irq0, 10);
    assert_eq!(host.doorbells, 10);
}

#[test]
fn frames_built_in_place_reach_the_host() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    host.fill_rx(&mut engine);
    let w = host.w.clone();
    let tx = engine.transmit_buffer().unwrap();
    assert_eq!(tx.max_len, 1514);
    let f = frame(300, 9);
    let at = (tx.addr - AGENT_BASE) as usize;
    w.borrow_mut().agent[at..at + f.len()].copy_from_slice(&f);
    let too_long = engine.transmit_buffer().unwrap();
    assert_eq!(
        engine.commit_transmit(too_long, 1515, false),
        Err(TransmitError::Length),
        "refused, the buffer stays free"
    );
    engine.commit_transmit(tx, f.len(), false).unwrap();
    // A frame whose checksum the stack left out is marked so for the host.
    let tx = engine.transmit_buffer().unwrap();
    let at = (tx.addr - AGENT_BASE) as usize;
    w.borrow_mut().agent[at..at + f.len()].copy_from_slice(&f);
    engine.commit_transmit(tx, f.len(), true).unwrap();
    settle(&mut engine, &mut host, 3);
    assert_eq!(host.received, vec![f.clone(), f]);
    assert_eq!(host.needs_csum, 1);
}

#[test]
fn no_host_buffer_drops_and_counts() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    assert_eq!(engine.transmit(&frame(60, 0)), Err(TransmitError::NoBuffer));
    assert_eq!(engine.counter(counter::RX_NO_BUFFER), 1);
    assert_eq!(engine.transmit(&frame(1515, 0)), Err(TransmitError::Length));
    assert_eq!(engine.transmit(&[]), Err(TransmitError::Length));
    host.fill_rx(&mut engine);
    assert_eq!(engine.transmit(&frame(1514, 0)), Ok(()));
    settle(&mut engine, &mut host, 3);
    assert_eq!(host.received, vec![frame(1514, 0)]);
}

#[test]
fn bad_descriptors_are_completed_with_error_never_copied() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    host.fill_rx(&mut engine);
    settle(&mut engine, &mut host, 2);
    let window_end = HOST_BASE + host.w.borrow().host.len() as u64;
    let bad = [
        DescriptorRepr { addr: HOST_BASE, len: 0, id: 0, flags: 0 },
        DescriptorRepr { addr: HOST_BASE, len: 1515, id: 0, flags: 0 },
        DescriptorRepr { addr: HOST_BASE, len: u32::MAX, id: 0, flags: 0 },
        DescriptorRepr { addr: u64::MAX - 10, len: 60, id: 0, flags: 0 },
        DescriptorRepr { addr: window_end - 10, len: 60, id: 0, flags: 0 },
        DescriptorRepr { addr: 0x1000, len: 60, id: 0, flags: 0 },
        DescriptorRepr { addr: HOST_BASE, len: 60, id: 0, flags: 0xfff0 },
    ];
    for d in bad {
        // Post a good frame, then overwrite its descriptor with the bad one (same id).
        assert!(host.send(&mut engine, &frame(60, 9)));
        let index = host.tx_prod.wrapping_sub(1);
        let id = host.tx_posted.back().unwrap().0;
        host.write_descriptor(shared::TX_RING_OFFSET, index, DescriptorRepr { id, ..d });
    }
    assert!(host.send(&mut engine, &frame(61, 1)));
    let got = settle(&mut engine, &mut host, 4);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, frame(61, 1));
    assert_eq!(host.tx_errors, bad.len());
    assert_eq!(engine.counter(counter::BAD_DESCRIPTORS) as usize, bad.len());
    assert_eq!(engine.state(), AgentState::Running);

    // RX: a buffer too small for the frame is refused and the frame takes the next one.
    let index = host.rx_seen;
    let id = host.rx_posted.front().unwrap().0;
    host.write_descriptor(shared::RX_RING_OFFSET, index, DescriptorRepr { addr: HOST_BASE, len: 10, id, flags: 0 });
    engine.transmit(&frame(100, 3)).unwrap();
    settle(&mut engine, &mut host, 3);
    assert_eq!(host.rx_errors, 1);
    assert_eq!(host.received, vec![frame(100, 3)]);
}

#[test]
fn needs_csum_reaches_the_stack() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    assert!(host.send(&mut engine, &frame(80, 1)));
    let index = host.tx_prod.wrapping_sub(1);
    let at = host.tx_buffer(index);
    let id = host.tx_posted.back().unwrap().0;
    let d = DescriptorRepr { addr: HOST_BASE + at as u64, len: 80, id, flags: desc_flags::NEEDS_CSUM };
    host.write_descriptor(shared::TX_RING_OFFSET, index, d);
    let got = settle(&mut engine, &mut host, 3);
    assert_eq!(got, vec![(frame(80, 1), true)]);
}

#[test]
fn descriptor_changed_after_it_was_read_is_not_used() {
    let (mut engine, mut host) = connect(64, 3, feature::ALL, 1500);
    settle(&mut engine, &mut host, 5);
    assert!(host.send(&mut engine, &frame(300, 4)));
    engine.poll();
    assert_eq!(host.w.borrow().chains.len(), 1);
    // While the chain is in flight the host scribbles over the descriptor.
    let index = host.tx_prod.wrapping_sub(1);
    host.write_descriptor(
        shared::TX_RING_OFFSET,
        index,
        DescriptorRepr { addr: 1, len: u32::MAX, id: 7, flags: 0xffff },
    );
    let got = settle(&mut engine, &mut host, 6);
    assert_eq!(got, vec![(frame(300, 4), false)]);
    assert_eq!(host.tx_done, 1);
    assert_eq!(engine.counter(counter::BAD_DESCRIPTORS), 0);
}

#[test]
fn hostile_index_breaks_the_link_until_reinit() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 2);
    host.set_doorbells(|d| d.set_tx_prod(65));
    engine.poll();
    assert_eq!(engine.state(), AgentState::Broken);
    assert_eq!(engine.counter(counter::BAD_INDEXES), 1);
    let refusal = engine.take_refusal().expect("the refusal is kept for the log");
    assert_eq!((refusal.counter, refusal.count), (counter::BAD_INDEXES, 1));
    assert!(matches!(refusal.error, bpnet_contract::Error::BadIndex { prod: 65, cons: 0 }), "{:?}", refusal.error);
    assert_eq!(engine.take_refusal(), None, "taken once");
    let irq = w.borrow().interrupts;
    engine.poll();
    engine.poll();
    // The host is told by a LINK|ERROR status and an interrupt.
    assert_eq!(w.borrow().interrupts, irq + 1);
    let cause_now = status::Header::new_unchecked(&w.borrow().host[..status::HEADER_LEN]).interrupt_cause();
    assert_eq!(cause_now, cause::LINK | cause::ERROR);
    for _ in 0..5 {
        engine.poll();
    }
    assert_eq!(engine.state(), AgentState::Broken);
    assert_eq!(w.borrow().link_changes, 2, "READY at boot, then BROKEN");
    assert_eq!(engine.transmit(&frame(60, 0)), Err(TransmitError::NotRunning));
    host.init();
    settle(&mut engine, &mut host, 3);
    assert_eq!(engine.state(), AgentState::Running);
    assert!(host.send(&mut engine, &frame(60, 0)));
    assert_eq!(settle(&mut engine, &mut host, 3).len(), 1);
}

#[test]
fn host_reinit_mid_traffic_recovers() {
    let (mut engine, mut host) = connect(32, 2, feature::ALL, 1500);
    let w = host.w.clone();
    host.fill_rx(&mut engine);
    for i in 0..20 {
        host.send(&mut engine, &frame(500, i));
        let _ = engine.transmit(&frame(400, i));
    }
    engine.poll();
    engine.poll();
    // Re-initialise while a chain is in flight and frames are queued both ways: DOWN, wait for the
    // agent to leave RUNNING (the chain drains first), then set up again with a new generation.
    assert_eq!(w.borrow().chains.len(), 1);
    host.down();
    let mut polls = 0;
    while w.borrow().shared[field::header::AGENT_STATE] == AgentState::Running as u8 {
        engine.poll();
        polls += 1;
        assert!(polls < 10);
    }
    assert!(polls > 1, "the state byte waited for the chain");
    assert!(w.borrow().chains.is_empty());
    host.init();
    drain(&mut engine, &w);
    settle(&mut engine, &mut host, 6);
    assert_eq!(engine.state(), AgentState::Running);
    assert_eq!(engine.counter(counter::HOST_RESETS_SEEN), 1);
    host.received.clear();
    host.fill_rx(&mut engine);
    for i in 0..100 {
        assert!(
            host.send(&mut engine, &frame(60 + i, i as u32)) || {
                settle(&mut engine, &mut host, 4);
                true
            }
        );
        let _ = engine.transmit(&frame(70, i as u32));
        settle(&mut engine, &mut host, 1);
        host.fill_rx(&mut engine);
    }
    settle(&mut engine, &mut host, 10);
    assert!(host.tx_done >= 90, "{}", host.tx_done);
    assert!(!host.received.is_empty());
    assert_eq!((host.tx_errors, host.rx_errors), (0, 0));

    // Host DOWN, then UP again.
    host.down();
    engine.poll();
    assert_eq!(engine.state(), AgentState::Ready);
    host.init();
    settle(&mut engine, &mut host, 4);
    assert_eq!(engine.state(), AgentState::Running);
}

#[test]
fn dma_failure_completes_the_batch_with_errors() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 2);
    host.fill_rx(&mut engine);
    for i in 0..3 {
        assert!(host.send(&mut engine, &frame(100, i)));
    }
    engine.transmit(&frame(90, 0)).unwrap();
    w.borrow_mut().fail = 1;
    let got = settle(&mut engine, &mut host, 4);
    assert!(got.is_empty());
    assert_eq!((host.tx_errors, host.rx_errors), (3, 1));
    assert_eq!(engine.counter(counter::TX_DMA_ERRORS), 3);
    assert_eq!(engine.counter(counter::RX_DMA_ERRORS), 1);
    assert_eq!(engine.state(), AgentState::Running);
    // Both attempts fail: the status block is unreachable, the link breaks.
    assert!(host.send(&mut engine, &frame(100, 9)));
    w.borrow_mut().fail = 2;
    settle(&mut engine, &mut host, 4);
    assert_eq!(engine.state(), AgentState::Broken);
}

#[test]
fn busy_dma_retries_the_same_work() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    settle(&mut engine, &mut host, 2);
    assert!(host.send(&mut engine, &frame(100, 1)));
    w.borrow_mut().busy = 3;
    let got = settle(&mut engine, &mut host, 6);
    assert_eq!(got, vec![(frame(100, 1), false)]);
    assert_eq!(host.tx_done, 1);
}

#[test]
fn config_refusals() {
    let rx = [AGENT_BASE];
    let tx = [AGENT_BASE + BUF_LEN];
    let base = Config {
        agent: agent_repr(64),
        window: Window { base: HOST_BASE, len: 1 << 20 },
        from_host_buffers: &rx,
        to_host_buffers: &tx,
        buffer_len: BUF_LEN,
        staging: AGENT_BASE + 2 * BUF_LEN,
    };
    let (_, w) = engine(64, 0);
    let make = |c: Config<'_>| {
        Engine::new(c, FakeDma(w.clone()), FakeShared(w.clone()), FakeRam(w.clone()), FakeNotify(w.clone())).err()
    };
    assert_eq!(make(base), None);
    assert_eq!(make(Config { from_host_buffers: &[], ..base }), Some(ConfigError::BufferCount));
    assert_eq!(make(Config { buffer_len: 60, ..base }), Some(ConfigError::BufferLen));
    assert_eq!(make(Config { staging: AGENT_BASE + 100, ..base }), Some(ConfigError::Overlap));
    assert_eq!(make(Config { staging: u32::MAX - 10, ..base }), Some(ConfigError::Overlap));
    let mut agent = agent_repr(64);
    agent.layout.rx_ring = agent.layout.tx_ring;
    assert!(matches!(make(Config { agent, ..base }), Some(ConfigError::Layout(_))));
}

#[test]
fn window_bounds() {
    let w = Window { base: 0x1000, len: 0x1000 };
    assert!(w.contains(0x1000, 0x1000));
    assert!(!w.contains(0xfff, 2));
    assert!(!w.contains(0x1fff, 2));
    assert!(!w.contains(u64::MAX, 2));
    assert!(!Window { base: u64::MAX, len: 2 }.contains(u64::MAX, 0));
}

#[test]
fn random_doorbells_never_panic_and_are_counted() {
    let (mut engine, mut host) = connect(64, 1, feature::ALL, 1500);
    let mut x = 0x1234_5678u32;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let v = x;
        host.set_doorbells(|d| if v & 1 == 0 { d.set_tx_prod(v) } else { d.set_rx_prod(v) });
        let _ = engine.transmit(&frame(60, v));
        engine.poll();
        drain(&mut engine, &host.w.clone());
        if engine.state() == AgentState::Broken {
            host.init();
        }
    }
    assert!(engine.counter(counter::BAD_INDEXES) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes into the shared region between polls (the host's header fields, the
    /// doorbells, the rings, anywhere): the engine never panics and the fake DMA, which asserts
    /// every copy's range, never sees one outside host RAM or the agent buffers.
    #[test]
    fn arbitrary_shared_writes_never_escape(
        writes in proptest::collection::vec(
            (0usize..6, any::<u16>(), proptest::collection::vec(any::<u8>(), 1..24), any::<bool>()),
            1..120,
        ),
        latency in 0usize..3,
    ) {
        let (mut engine, mut host) = connect(16, latency, feature::ALL, 9000);
        let w = host.w.clone();
        host.fill_rx(&mut engine);
        for (region, offset, bytes, traffic) in writes {
            let base = [0, shared::DOORBELLS_OFFSET, shared::TX_RING_OFFSET, shared::RX_RING_OFFSET,
                        shared::COUNTERS_OFFSET, field::header::HOST_STATE][region];
            let span = [bar::HEADER_LEN, DOORBELLS_LEN, 256, 256, COUNTERS_LEN,
                        bar::HEADER_LEN - field::header::HOST_STATE][region];
            let at = base + offset as usize % span;
            {
                let mut world = w.borrow_mut();
                let end = (at + bytes.len()).min(shared::LEN);
                let n = end - at;
                world.shared[at..end].copy_from_slice(&bytes[..n]);
            }
            if traffic {
                let _ = host.send(&mut engine, &frame(60 + bytes.len() * 300, offset as u32));
                let _ = engine.transmit(&frame(61 + bytes.len() * 200, offset as u32));
            }
            engine.poll();
            drain(&mut engine, &w);
            engine.doorbell();
        }
        for _ in 0..5 {
            engine.poll();
            drain(&mut engine, &w);
        }
    }
}

/// The heartbeat word as the host reads it.
fn heartbeat_seen(w: &W) -> Option<u32> {
    let world = w.borrow();
    let header = Header::new_unchecked(&world.shared[..bar::HEADER_LEN]);
    let at = shared::AGENT_INFO_OFFSET;
    bar::parse_heartbeat(header.version_minor(), &bar::AgentInfo::new_unchecked(&world.shared[at..at + AGENT_INFO_LEN]))
}

/// Bytes no field of the contract holds as such: a host scribbling over the region's first 4 KiB.
fn scribble(w: &W) {
    let mut world = w.borrow_mut();
    let mut x = 0x2545_f491_u32;
    for b in world.shared[..4096].iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
}

#[test]
fn heartbeat_starts_unknown_and_advances_per_tick() {
    let (mut engine, w) = engine(64, 0);
    assert_eq!(heartbeat_seen(&w), None, "no beat before the first tick");
    engine.tick();
    assert_eq!(heartbeat_seen(&w), Some(1));
    engine.poll();
    assert_eq!(heartbeat_seen(&w), Some(1), "polls do not beat, the timer does");
    engine.tick();
    engine.tick();
    assert_eq!((heartbeat_seen(&w), engine.heartbeat()), (Some(3), 3));
    assert_eq!(engine.counter(counter::HEADER_REPAIRS), 0, "a clean region needs no repair");
}

#[test]
fn a_scribbled_region_is_repaired_at_the_next_tick() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    engine.tick();
    let before: Vec<u8> = w.borrow().shared[..4096].to_vec();
    scribble(&w);
    engine.tick();
    {
        let world = w.borrow();
        let header = Header::new_unchecked(&world.shared[..bar::HEADER_LEN]);
        assert_eq!(AgentRepr::parse(&header), Ok(agent_repr(64)), "the agent's fields are back");
        assert_eq!(header.agent_state(), Ok(AgentState::Running), "and its state byte");
        let at = shared::AGENT_INFO_OFFSET;
        assert_eq!(world.shared[at..at + AGENT_INFO_LEN - 4], before[at..at + AGENT_INFO_LEN - 4], "dma_reach");
        let at = shared::COUNTERS_OFFSET;
        let counters = Counters::new_unchecked(&world.shared[at..at + COUNTERS_LEN]);
        assert_eq!(counters.get(counter::HEADER_REPAIRS), Ok(1), "the repair is counted where the host sees it");
        assert_eq!(counters.get(counter::TX_FRAMES), Ok(engine.counter(counter::TX_FRAMES)));
    }
    assert_eq!(heartbeat_seen(&w), Some(2));
    engine.tick();
    assert_eq!(engine.counter(counter::HEADER_REPAIRS), 1, "once repaired, nothing more to repair");
    // The host's fields are garbage too: the engine leaves RUNNING, and the host's next set-up works.
    engine.poll();
    assert_ne!(engine.state(), AgentState::Running);
    host.down();
    engine.poll();
    host.init();
    for _ in 0..3 {
        engine.poll();
    }
    assert_eq!(engine.state(), AgentState::Running);
    host.fill_rx(&mut engine);
    assert!(host.send(&mut engine, &frame(100, 1)));
    assert_eq!(settle(&mut engine, &mut host, 8).len(), 1, "frames flow again");
}

#[test]
fn a_host_reinitialising_finds_the_header_repaired_without_a_tick() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    scribble(&w);
    // The host takes the link down (as rmmod does) and rings: the agent repairs before it answers.
    host.down();
    engine.doorbell();
    engine.poll();
    let world = w.borrow();
    let header = Header::new_unchecked(&world.shared[..bar::HEADER_LEN]);
    assert_eq!(AgentRepr::parse(&header), Ok(agent_repr(64)));
    assert_eq!(header.agent_state(), Ok(AgentState::Ready));
    drop(world);
    assert_eq!(engine.counter(counter::HEADER_REPAIRS), 1);
    // Asleep outside RUNNING: a doorbell (the host's next set-up or request) repairs again.
    scribble(&w);
    engine.doorbell();
    let world = w.borrow();
    assert_eq!(AgentRepr::parse(&Header::new_unchecked(&world.shared[..bar::HEADER_LEN])), Ok(agent_repr(64)));
    drop(world);
    assert_eq!(engine.counter(counter::HEADER_REPAIRS), 2);
}

#[test]
fn repairs_can_be_turned_off_for_an_image_that_breaks_its_header_on_purpose() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 1500);
    let w = host.w.clone();
    engine.set_repairs(false);
    w.borrow_mut().shared[field::header::MAGIC..field::header::MAGIC + 4].copy_from_slice(b"EVIL");
    host.down();
    engine.doorbell();
    engine.poll();
    engine.tick();
    assert_eq!(&w.borrow().shared[..4], b"EVIL", "the garbage stays for the host to see");
    assert_eq!(engine.counter(counter::HEADER_REPAIRS), 0);
    engine.set_repairs(true);
    engine.tick();
    assert_eq!(Header::new_unchecked(&w.borrow().shared[..bar::HEADER_LEN]).magic(), bar::MAGIC);
}

#[test]
fn multi_buffer_frames_fill_buffers_in_order_and_go_only_whole() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 9000);
    assert_eq!(host.rx_cap, bar::RX_BUFFER_MIN);
    // Two pages posted, a frame needing three: it waits, nothing is completed, nothing dropped.
    host.post_rx(&mut engine, 2);
    assert_eq!(engine.transmit(&frame(9014, 1)), Ok(()));
    settle(&mut engine, &mut host, 4);
    assert_eq!(host.status().1, 0, "no completion for part of a frame");
    assert!(host.received.is_empty());
    // A third page: the frame goes, in three buffers, each whole but the last (the host model
    // checks the MORE flags, the checksum flags on the first and the reassembly).
    host.post_rx(&mut engine, 3);
    settle(&mut engine, &mut host, 4);
    assert_eq!(host.received, vec![frame(9014, 1)]);
    assert_eq!(host.rx_seen, 3);
    assert_eq!(engine.counter(counter::RX_FRAMES), 1);
    assert_eq!(engine.counter(counter::RX_BYTES), 9014);
    // Small frames still take one buffer each, several frames per chain.
    host.fill_rx(&mut engine);
    for i in 0..5 {
        engine.transmit(&frame(60 + i, i as u32)).unwrap();
    }
    settle(&mut engine, &mut host, 4);
    assert_eq!(host.rx_seen, 8);
    assert_eq!(host.received.len(), 6);
    assert_eq!((host.rx_errors, host.rx_bad_chains), (0, 0));
    assert_eq!(engine.counter(counter::RX_NO_BUFFER), 0);
}

#[test]
fn multi_buffer_refuses_short_buffers_and_restarts_a_frame_after_one() {
    let (mut engine, mut host) = connect(64, 0, feature::ALL, 9000);
    host.fill_rx(&mut engine);
    // Buffer 1 is short: buffer 0, which the frame had taken, and 1 come back with ERROR, and the
    // frame takes 2, 3 and 4. No segment of fewer than RX_BUFFER_MIN bytes is ever copied.
    let (index, id) = (host.rx_seen.wrapping_add(1), host.rx_posted[1].0);
    let short = DescriptorRepr { addr: HOST_BASE, len: bar::RX_BUFFER_MIN - 1, id, flags: 0 };
    host.write_descriptor(shared::RX_RING_OFFSET, index, short);
    engine.transmit(&frame(9000, 7)).unwrap();
    settle(&mut engine, &mut host, 4);
    assert_eq!(host.received, vec![frame(9000, 7)]);
    assert_eq!(host.rx_errors, 2);
    assert_eq!(host.rx_seen, 5);
    assert_eq!(engine.counter(counter::BAD_DESCRIPTORS), 1);
    assert_eq!(engine.state(), AgentState::Running);

    // Without the feature a buffer shorter than the frame is refused, however long it is.
    let (mut engine, mut host) = connect(64, 0, feature::ALL & !feature::RX_MULTI_BUFFER, 9000);
    host.fill_rx(&mut engine);
    let (index, id) = (host.rx_seen, host.rx_posted[0].0);
    host.write_descriptor(shared::RX_RING_OFFSET, index, DescriptorRepr { addr: HOST_BASE, len: 8000, id, flags: 0 });
    engine.transmit(&frame(9014, 8)).unwrap();
    settle(&mut engine, &mut host, 4);
    assert_eq!(host.received, vec![frame(9014, 8)]);
    assert_eq!((host.rx_errors, host.rx_seen), (1, 2));
}
