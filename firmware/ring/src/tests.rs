//! The engine against a model of the host half: a fake shared region, fake host RAM, a fake DMA
//! controller that copies between them and refuses (by panicking) any copy outside host RAM or the
//! agent's configured buffers, and a host that posts and reaps exactly as the kernel module does,
//! reading completions only from its own RAM.

extern crate std;

use super::*;
use bpnet_contract::bar::{desc_flags, Layout, MTU_DEFAULT};
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
    let rx: Vec<u32> = (0..N_BUFS as u32).map(|i| AGENT_BASE + i * BUF_LEN).collect();
    let tx: Vec<u32> = (0..N_BUFS as u32).map(|i| AGENT_BASE + (N_BUFS as u32 + i) * BUF_LEN).collect();
    let staging = AGENT_BASE + 2 * N_BUFS as u32 * BUF_LEN;
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
        fail: 0,
        busy: 0,
    }));
    let config = Config {
        agent: agent_repr(ring),
        window: Window { base: HOST_BASE, len: host_len as u64 },
        rx_buffers: &rx,
        tx_buffers: &tx,
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
    received: Vec<Vec<u8>>,
    tx_errors: usize,
    rx_errors: usize,
    tx_done: usize,
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
            received: Vec::new(),
            tx_errors: 0,
            rx_errors: 0,
            tx_done: 0,
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

    fn doorbells(&self) -> Doorbells<Vec<u8>> {
        let at = shared::DOORBELLS_OFFSET;
        Doorbells::new_unchecked(self.w.borrow().shared[at..at + DOORBELLS_LEN].to_vec())
    }
    fn write_doorbells(&self, d: &Doorbells<Vec<u8>>) {
        let at = shared::DOORBELLS_OFFSET;
        self.w.borrow_mut().shared[at..at + DOORBELLS_LEN].copy_from_slice(d_bytes(d));
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
        let mut d = self.doorbells();
        d.set_tx_prod(self.tx_prod);
        self.write_doorbells(&d);
        let event = self.status().2;
        self.ring_if_wanted(engine, event, self.tx_prod, old);
        true
    }

    /// Post RX buffers until the ring is full.
    fn fill_rx(&mut self, engine: &mut TestEngine) {
        let old = self.rx_prod;
        while self.rx_prod.wrapping_sub(self.rx_seen) < self.entries.get() {
            let at = self.rx_buffer(self.rx_prod);
            self.next_id = self.next_id.wrapping_add(1);
            let cap = self.mtu as u32 + 14;
            let d = DescriptorRepr { addr: HOST_BASE + at as u64, len: cap, id: self.next_id, flags: 0 };
            self.write_descriptor(shared::RX_RING_OFFSET, self.rx_prod, d);
            self.rx_posted.push_back((self.next_id, cap));
            self.rx_prod = self.rx_prod.wrapping_add(1);
        }
        if self.rx_prod != old {
            let mut d = self.doorbells();
            d.set_rx_prod(self.rx_prod);
            self.write_doorbells(&d);
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
            if c.flags & compl_flags::ERROR != 0 {
                self.rx_errors += 1;
            } else {
                let csum = self.features & feature::CSUM_OFFLOAD != 0;
                assert_eq!(c.flags & compl_flags::CSUM_VALID != 0, csum);
                let at = self.rx_buffer(self.rx_seen);
                self.received.push(w[at..at + c.len as usize].to_vec());
            }
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }
        let mut d = self.doorbells();
        d.set_tx_used_event(self.tx_seen.wrapping_add(self.event_delay));
        d.set_rx_used_event(self.rx_seen.wrapping_add(self.event_delay));
        self.write_doorbells(&d);
    }
}

fn d_bytes(d: &Doorbells<Vec<u8>>) -> &[u8] {
    // The view has no accessor for its buffer; rebuild it from the fields the host writes.
    let _ = d;
    unreachable!()
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
    let (mut engine, w) = engine(ring, latency);
    assert_eq!(engine.state(), AgentState::Ready);
    let mut host = HostModel::new(w, ring, features, mtu);
    host.init();
    for _ in 0..(latency + 2) {
        engine.poll();
    }
    assert_eq!(engine.state(), AgentState::Running);
    (engine, host)
}
