//! The host model (`bpnet-test-support`'s [`HostLink`], the one the board emulator drives) against the
//! agent's real ring engine over fake memories: the contract both ways without the firmware or the
//! emulator.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bpnet_contract::bar::{self, feature, field, AgentRepr, AgentState, Header, HostRepr, Layout};
use bpnet_contract::ring::Entries;
use bpnet_contract::status;
use bpnet_contract::{notify, put_le32, shared, Error};
use bpnet_ring::{Addr, AgentRam, Config, Copy, Dma, DmaError, Engine, Notify, Shared, Ticket, Window};
use bpnet_test_support::host::{Backplane, HostAccessError, HostLink, LinkError, Params};

const AGENT_BASE: u32 = 0x0100_0000;
const AGENT_BUF: u32 = 2048;
const AGENT_BUFS: usize = 8;
const HOST_RAM: usize = 2 << 20;
const RING: u32 = 16;

struct World {
    bar: Vec<u8>,
    host: Vec<u8>,
    agent: Vec<u8>,
    done: VecDeque<Ticket>,
    next_ticket: u32,
    odr: u32,
    reads: u64,
    writes: u64,
}
type W = Rc<RefCell<World>>;

fn host_range(addr: u64, len: u32) -> core::ops::Range<usize> {
    assert!(addr + u64::from(len) <= HOST_RAM as u64, "DMA outside host RAM");
    addr as usize..addr as usize + len as usize
}
fn agent_range(addr: u32, len: u32) -> core::ops::Range<usize> {
    let at = (addr - AGENT_BASE) as usize;
    at..at + len as usize
}

/// A DMA controller that finishes each chain by the next poll.
struct FakeDma(W);
impl Dma for FakeDma {
    fn submit(&mut self, copies: &[Copy]) -> Result<Ticket, DmaError> {
        let mut w = self.0.borrow_mut();
        for c in copies {
            let data = match c.src {
                Addr::Host(a) => w.host[host_range(a, c.len)].to_vec(),
                Addr::Agent(a) => w.agent[agent_range(a, c.len)].to_vec(),
            };
            match c.dst {
                Addr::Host(a) => w.host[host_range(a, c.len)].copy_from_slice(&data),
                Addr::Agent(a) => w.agent[agent_range(a, c.len)].copy_from_slice(&data),
            }
        }
        let ticket = Ticket(w.next_ticket);
        w.next_ticket += 1;
        w.done.push_back(ticket);
        Ok(ticket)
    }
    fn poll(&mut self) -> Option<Result<Ticket, DmaError>> {
        self.0.borrow_mut().done.pop_front().map(Ok)
    }
}
struct FakeShared(W);
impl Shared for FakeShared {
    fn read(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow().bar[offset..offset + buf.len()]);
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        self.0.borrow_mut().bar[offset..offset + data.len()].copy_from_slice(data);
    }
}
struct FakeRam(W);
impl AgentRam for FakeRam {
    fn read(&self, addr: u32, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow().agent[agent_range(addr, buf.len() as u32)]);
    }
    fn write(&mut self, addr: u32, data: &[u8]) {
        self.0.borrow_mut().agent[agent_range(addr, data.len() as u32)].copy_from_slice(data);
    }
}
struct FakeNotify(W);
impl Notify for FakeNotify {
    fn interrupt_host(&mut self) {
        self.0.borrow_mut().odr |= notify::STATUS;
    }
    fn link_changed(&mut self) {
        self.0.borrow_mut().odr |= notify::LINK;
    }
}

/// An agent whose stack echoes every frame from the host back to it.
struct Fake {
    w: W,
    engine: Engine<FakeDma, FakeShared, FakeRam, FakeNotify>,
    doorbells: u32,
}

impl Fake {
    fn new(agent_features: u32) -> Fake {
        let from_host: Vec<u32> = (0..AGENT_BUFS as u32).map(|i| AGENT_BASE + i * AGENT_BUF).collect();
        let to_host: Vec<u32> =
            (0..AGENT_BUFS as u32).map(|i| AGENT_BASE + (AGENT_BUFS as u32 + i) * AGENT_BUF).collect();
        let staging = AGENT_BASE + 2 * AGENT_BUFS as u32 * AGENT_BUF;
        let w = Rc::new(RefCell::new(World {
            bar: vec![0; shared::LEN],
            host: vec![0; HOST_RAM],
            agent: vec![0; (staging - AGENT_BASE) as usize + bpnet_ring::STAGING_LEN],
            done: VecDeque::new(),
            next_ticket: 0,
            odr: 0,
            reads: 0,
            writes: 0,
        }));
        let config = Config {
            agent: AgentRepr {
                features: agent_features,
                generation: 5,
                firmware_version: bar::firmware_version(0, 1, 0),
                layout: Layout::DEFAULT,
                mac: [2, 0xb0, 0, 0, 0, 2],
                ring_entries: Entries::new(RING).unwrap(),
            },
            window: Window { base: 0, len: HOST_RAM as u64 },
            from_host_buffers: &from_host,
            to_host_buffers: &to_host,
            buffer_len: AGENT_BUF,
            staging,
        };
        let engine =
            Engine::new(config, FakeDma(w.clone()), FakeShared(w.clone()), FakeRam(w.clone()), FakeNotify(w.clone()))
                .unwrap();
        Fake { w, engine, doorbells: 0 }
    }

    /// A few turns of the agent's main loop.
    fn step(&mut self) {
        for _ in 0..4 {
            self.engine.poll();
            // A frame waits in its buffer until there is room to echo it.
            while self.engine.can_transmit() {
                let Some(r) = self.engine.receive() else { break };
                let mut frame = vec![0u8; r.len as usize];
                self.engine.ram().read(r.addr, &mut frame);
                self.engine.release(r.buffer);
                self.engine.transmit(&frame).unwrap();
            }
        }
    }
}

impl Backplane for Fake {
    fn bar_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), HostAccessError> {
        let mut w = self.w.borrow_mut();
        w.reads += 1;
        buf.copy_from_slice(&w.bar[offset..offset + buf.len()]);
        Ok(())
    }
    fn bar_write(&mut self, offset: usize, data: &[u8]) -> Result<(), HostAccessError> {
        let mut w = self.w.borrow_mut();
        w.writes += 1;
        w.bar[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn ring_doorbell(&mut self, bits: u32) {
        assert_eq!(bits, notify::WORK);
        self.w.borrow_mut().writes += 1;
        self.doorbells += 1;
        self.engine.doorbell();
    }
    fn interrupt_asserted(&self) -> bool {
        self.w.borrow().odr != 0
    }
    fn read_odr(&mut self) -> u32 {
        let mut w = self.w.borrow_mut();
        w.reads += 1;
        w.odr
    }
    fn clear_odr(&mut self, bits: u32) {
        let mut w = self.w.borrow_mut();
        w.writes += 1;
        w.odr &= !bits;
    }
    fn read_ram(&self, addr: u64, buf: &mut [u8]) -> Result<(), HostAccessError> {
        let w = self.w.borrow();
        let at = addr as usize;
        let src = w.host.get(at..at + buf.len()).ok_or_else(|| HostAccessError {
            pci_addr: addr,
            len: buf.len(),
            reason: "outside host RAM".into(),
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_ram(&mut self, addr: u64, data: &[u8]) -> Result<(), HostAccessError> {
        let mut w = self.w.borrow_mut();
        let at = addr as usize;
        let dst = w.host.get_mut(at..at + data.len()).ok_or_else(|| HostAccessError {
            pci_addr: addr,
            len: data.len(),
            reason: "outside host RAM".into(),
        })?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn bar_reads(&self) -> u64 {
        self.w.borrow().reads
    }
    fn bar_writes(&self) -> u64 {
        self.w.borrow().writes
    }
}

fn frame(len: usize, seed: u32) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed.wrapping_mul(7919)) as u8).collect()
}

/// Set-up and the agent's answer: RUNNING, the LINK interrupt taken.
fn connected(agent_features: u32, params: Params) -> (Fake, HostLink) {
    let mut fake = Fake::new(agent_features);
    let mut link = HostLink::up(&mut fake, params).unwrap();
    for _ in 0..4 {
        fake.step();
        link.poll(&mut fake).unwrap();
    }
    assert_eq!(fake.engine.state(), AgentState::Running);
    assert!(link.is_running());
    (fake, link)
}

#[test]
fn set_up_reads_the_header_and_agent_info_once_and_the_agent_accepts_the_host_fields() {
    let mut fake = Fake::new(feature::ALL);
    let link = HostLink::up(&mut fake, Params::default()).unwrap();
    assert_eq!(link.stats().setup_bar_reads, 2, "the header and the agent info block");
    assert_eq!(fake.bar_reads(), 2);
    assert_eq!(link.dma_reach(), HOST_RAM as u64, "the engine publishes its window's end");
    // 2 KiB buffers are below the agent's minimum for a part of a frame: each takes a whole one.
    assert_eq!(link.features(), feature::ALL & !feature::RX_MULTI_BUFFER);
    assert_eq!(link.mac(), [2, 0xb0, 0, 0, 0, 2]);
    let w = fake.w.borrow();
    let header = Header::new_unchecked(&w.bar[..bar::HEADER_LEN]);
    let host = HostRepr::parse(&header, feature::ALL, Entries::new(RING).unwrap()).unwrap().unwrap();
    assert_eq!(host.status_block_addr, Params::default().host_ram_base);
    assert_eq!(host.mtu, bar::MTU_DEFAULT);
    // The agent's byte next to the host's state byte is untouched.
    assert_eq!(header.agent_state(), Ok(AgentState::Ready));
    drop(w);
    let (_fake, link) = connected(feature::ALL, Params::default());
    // The LINK interrupt cost one ODR read; nothing else was read.
    assert_eq!(link.stats().interrupts, 1);
}

#[test]
fn set_up_keeps_everything_below_the_agents_reach() {
    let mut fake = Fake::new(feature::ALL);
    // An agent that reaches only the first 64 KiB: the status block and buffers do not fit below it.
    let at = shared::AGENT_INFO_OFFSET + bar::field::agent_info::DMA_REACH;
    fake.w.borrow_mut().bar[at..at + 8].copy_from_slice(&(64u64 << 10).to_le_bytes());
    match HostLink::up(&mut fake, Params::default()) {
        Err(LinkError::Unreachable { need, reach: 0x1_0000 }) => assert!(need > 0x1_0000),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // A reach below one page is refused as a contract violation.
    fake.w.borrow_mut().bar[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(HostLink::up(&mut fake, Params::default()), Err(LinkError::Contract(Error::BadReach(0)))));
}

#[test]
fn features_are_the_intersection() {
    let (_, link) = connected(feature::EVENT_INDEX, Params::default());
    assert_eq!(link.features(), feature::EVENT_INDEX);
    let params = Params { features: feature::CSUM_OFFLOAD, ..Params::default() };
    let (_, link) = connected(feature::ALL, params);
    assert_eq!(link.features(), feature::CSUM_OFFLOAD);
    let params = Params { buffer_len: bar::RX_BUFFER_MIN, ..Params::default() };
    let (_, link) = connected(feature::ALL, params);
    assert_eq!(link.features(), feature::ALL);
}

#[test]
fn frames_echo_byte_for_byte_across_many_wraps_without_bar_reads() {
    for features in [feature::ALL, 0] {
        let (mut fake, mut link) = connected(features, Params { features, ..Params::default() });
        let reads = fake.bar_reads();
        let sent: Vec<Vec<u8>> = (0..200u32).map(|i| frame(14 + (i as usize * 37) % 1501, i)).collect();
        let mut next = 0;
        let mut got = Vec::new();
        for _ in 0..1000 {
            // No more frames out than the host has RX buffers for their echoes, which the agent
            // would otherwise drop as a NIC with an empty receive ring does.
            while next < sent.len() && next - got.len() < RING as usize && link.send(&mut fake, &sent[next]).unwrap() {
                next += 1;
            }
            fake.step();
            link.poll(&mut fake).unwrap();
            while let Some(f) = link.recv() {
                got.push(f);
            }
            if got.len() == sent.len() {
                break;
            }
        }
        assert_eq!(got, sent, "features {features:#x}");
        // Each read is the ODR read of an interrupt; only the event index lets a polling host turn
        // them off.
        let interrupts = link.stats().interrupts - 1;
        assert_eq!(fake.bar_reads() - reads, interrupts);
        if features & feature::EVENT_INDEX != 0 {
            assert_eq!(fake.bar_reads(), reads, "the fast path reads nothing across the bus");
        }
        let stats = link.stats();
        assert_eq!((stats.tx_done, stats.tx_errors, stats.rx_frames, stats.rx_errors), (200, 0, 200, 0));
        assert_eq!(fake.engine.counter(bar::counter::RX_NO_BUFFER), 0);
    }
}

#[test]
fn doorbells_follow_the_agents_event_index() {
    // With the event index a burst posted while the agent sleeps rings once.
    let (mut fake, mut link) = connected(feature::ALL, Params::default());
    let before = fake.doorbells;
    for i in 0..8 {
        assert!(link.send(&mut fake, &frame(60, i)).unwrap());
    }
    assert_eq!(fake.doorbells - before, 1);
    // Without it every frame rings.
    let (mut fake, mut link) = connected(0, Params { features: 0, ..Params::default() });
    let before = fake.doorbells;
    for i in 0..8 {
        assert!(link.send(&mut fake, &frame(60, i)).unwrap());
    }
    assert_eq!(fake.doorbells - before, 8);
}

#[test]
fn interrupts_only_when_asked_and_each_acknowledged_with_one_read() {
    let (mut fake, mut link) = connected(feature::ALL, Params::default());
    for i in 0..4 {
        link.send(&mut fake, &frame(100, i)).unwrap();
        fake.step();
        assert!(!fake.interrupt_asserted(), "a polling host asked for no interrupt");
        link.poll(&mut fake).unwrap();
        assert_eq!(link.recv().unwrap(), frame(100, i));
    }
    link.set_interrupts(true);
    link.poll(&mut fake).unwrap();
    let reads = fake.bar_reads();
    link.send(&mut fake, &frame(100, 9)).unwrap();
    fake.step();
    assert!(fake.interrupt_asserted());
    link.poll(&mut fake).unwrap();
    assert!(!fake.interrupt_asserted());
    assert_eq!(fake.bar_reads(), reads + 1);
    assert_eq!(link.stats().interrupts, 2);
    assert_eq!(link.recv().unwrap(), frame(100, 9));
}

#[test]
fn full_tx_ring_refuses_until_reaped() {
    let (mut fake, mut link) = connected(feature::ALL, Params::default());
    for i in 0..RING {
        assert!(link.send(&mut fake, &frame(64, i)).unwrap());
    }
    assert!(!link.send(&mut fake, &frame(64, 99)).unwrap());
    assert_eq!(link.tx_in_flight(), RING);
    fake.step();
    link.poll(&mut fake).unwrap();
    assert!(link.send(&mut fake, &frame(64, 99)).unwrap());
}

#[test]
fn set_up_refusals() {
    // No header yet.
    let mut fake = Fake::new(feature::ALL);
    fake.w.borrow_mut().bar[..4].fill(0);
    assert!(matches!(HostLink::up(&mut fake, Params::default()), Err(LinkError::Contract(Error::BadMagic(0)))));
    // Not READY.
    let mut fake = Fake::new(feature::ALL);
    fake.w.borrow_mut().bar[shared::HEADER_OFFSET + field::header::AGENT_STATE] = AgentState::Running as u8;
    assert!(matches!(HostLink::up(&mut fake, Params::default()), Err(LinkError::NotReady(AgentState::Running))));
    // Host RAM too small for the buffers.
    let mut fake = Fake::new(feature::ALL);
    let params = Params { host_ram_base: HOST_RAM as u64 - 4096, ..Params::default() };
    assert!(matches!(HostLink::up(&mut fake, params), Err(LinkError::HostRam { .. })));
    // An MTU the agent did not agree to.
    let mut fake = Fake::new(0);
    let params = Params { mtu: 9000, buffer_len: 9216, ..Params::default() };
    assert!(matches!(HostLink::up(&mut fake, params), Err(LinkError::Params(_))));
    // Buffers too small for the MTU.
    let mut fake = Fake::new(feature::ALL);
    let params = Params { buffer_len: 1024, ..Params::default() };
    assert!(matches!(HostLink::up(&mut fake, params), Err(LinkError::Params(_))));
}

#[test]
fn hostile_status_is_refused() {
    let (mut fake, mut link) = connected(feature::ALL, Params::default());
    let at = Params::default().host_ram_base as usize;
    // rx_used more than a ring ahead of what the host has seen.
    put_le32(&mut fake.w.borrow_mut().host, at + status::field::header::RX_USED, 100);
    assert!(matches!(link.poll(&mut fake), Err(LinkError::Contract(Error::BadIndex { .. }))));
    // tx_used beyond what was posted.
    let (mut fake, mut link) = connected(feature::ALL, Params::default());
    put_le32(&mut fake.w.borrow_mut().host, at + status::field::header::TX_USED, 1);
    assert!(matches!(link.poll(&mut fake), Err(LinkError::Contract(Error::BadIndex { .. }))));
}
