//! The agent's ring engine: moves Ethernet frames between the host's RAM and the agent's RAM over
//! the bpnet contract ([`bpnet_contract`]).
//!
//! Each side reads only its own memory. The host posts descriptors and producer indexes into the
//! shared region (the BAR, agent RAM, reached here through [`Shared`]); the agent's DMA engine
//! ([`Dma`]) moves every payload byte both ways and then writes completions and the status header
//! into the host's status block, all in one chain per [`Engine::poll`]; only when the host asked
//! for it ([`bpnet_contract::ring::need_event`]) does it raise an interrupt ([`Notify`]).
//!
//! Everything read from the shared region is hostile input: a descriptor is copied out once and
//! checked on the copy, a producer index is checked against the consumer's, and a host bus address
//! must lie inside the outbound window ([`Window`]). A refused value is counted in the contract's
//! counters and never acted on. Agent RAM addresses come only from the [`Config`], so the DMA engine
//! never writes agent RAM outside the frame buffers and the status staging area.
//!
//! Self-repair: everything the agent publishes (its header fields and state byte, the agent info
//! block, the counters) is kept here too. [`Engine::tick`] (the board's timer, about once a second)
//! advances the heartbeat and compares the published copy with its own; so do a host's
//! re-initialisation and any doorbell outside RUNNING. Whatever was overwritten is written again and
//! counted (`header_repairs`): a host that scribbled over the region finds a valid header at its next
//! set-up.
//!
//! Re-initialisation: a host that re-initialises writes `host_state` DOWN (or a new generation)
//! and waits for `agent_state` to leave RUNNING before it reuses its status block and buffers. The
//! engine publishes that only once its last chain has completed, since a submitted chain cannot be
//! recalled.
//!
//! The stack side: frames from the host queue up for [`Engine::receive`] (the stack reads them from
//! the frame buffer in agent RAM and gives the buffer back with [`Engine::release`]); frames for the
//! host go through [`Engine::transmit`].
#![no_std]
#![forbid(unsafe_code)]

use bpnet_contract::bar::{
    self, counter, feature, field, AgentInfo, AgentRepr, AgentState, Counters, Descriptor, DescriptorRepr, Doorbells,
    Header, HostRepr, HostState, AGENT_INFO_LEN, COUNTERS_LEN, DESCRIPTOR_LEN, DOORBELLS_LEN,
};
use bpnet_contract::ring::{self, Entries};
use bpnet_contract::status::{self, cause, compl_flags, Completion, CompletionRepr, COMPLETION_LEN};
use bpnet_contract::{shared, Error};

/// Most descriptors of one ring handled in one DMA chain: bounds the chain, the staging area and the
/// time between two looks at the host's state. Half the board's buffer pool, so the next chain can
/// fill buffers while the stack still holds the frames of the last one; the next chain is started
/// whenever the stack takes or sends a frame (the board's device polls the engine then), not only
/// once per main loop. The host's interrupts follow [`INTERRUPT_BATCH`], not the chains.
pub const MAX_BATCH: usize = 32;
/// Completions after which an interrupt the host asked for is raised even though the agent is still
/// busy (see [`Engine::poll`]): at saturation one interrupt per this many frames.
pub const INTERRUPT_BATCH: u32 = 64;
/// Most frame buffers of each pool.
pub const MAX_BUFFERS: usize = 64;
/// Most copies in one chain: a frame per descriptor of each ring, the completions of each ring in up
/// to two pieces (the ring wraps), and the status header.
pub const MAX_COPIES: usize = 2 * MAX_BATCH + 5;
/// Bytes of agent RAM the engine composes completions and the status header in before it DMAs them.
pub const STAGING_LEN: usize = status::HEADER_LEN + 2 * MAX_BATCH * COMPLETION_LEN;
/// An Ethernet header: a frame is at most the MTU plus this (no FCS crosses the backplane).
pub const ETHERNET_HEADER_LEN: u32 = 14;

// With RX_MULTI_BUFFER the largest frame takes at most RX_CHAIN_MAX buffers, and always fits one chain.
const _: () = assert!(
    (bar::MTU_MAX as u32 + ETHERNET_HEADER_LEN).div_ceil(bar::RX_BUFFER_MIN) <= bar::RX_CHAIN_MAX
        && bar::RX_CHAIN_MAX as usize <= MAX_BATCH
);

/// The agent's fields end where the `agent_state` byte starts; the agent writes that byte alone, so it
/// never overwrites the host's byte next to it.
const AGENT_FIELDS_LEN: usize = field::header::AGENT_STATE;
/// The doorbell block's four indexes; the rest is reserved.
const DOORBELL_INDEXES_LEN: usize = field::doorbells::RESERVED;
/// While RUNNING only the host's state byte, MTU and the rest of its fields are looked at.
const HOST_FIELDS: core::ops::Range<usize> = field::header::AGENT_STATE..bar::HEADER_LEN;
const STAGING_TX: usize = status::HEADER_LEN;
const STAGING_RX: usize = status::HEADER_LEN + MAX_BATCH * COMPLETION_LEN;

/// One end of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// A host bus address, reached through the agent's outbound PCI window.
    Host(u64),
    /// An address in agent RAM.
    Agent(u32),
}

/// One transfer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    pub src: Addr,
    pub dst: Addr,
    pub len: u32,
}

/// Names one submitted chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub u32);

/// Why a chain was not submitted or did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    /// The channel is still busy or out of chain descriptors: try again later.
    Busy,
    /// The controller reported a transfer error (an address outside RAM and the open windows).
    Transfer,
}

/// The DMA controller, as the engine uses it: a batch of copies performed in order as one chain.
pub trait Dma {
    /// Start `copies` (at most [`MAX_COPIES`]) as one chain, performed in the order given.
    fn submit(&mut self, copies: &[Copy]) -> Result<Ticket, DmaError>;
    /// The next finished chain, if any. Completions arrive in submission order; an error means some
    /// copies of that chain may not have happened. The engine keeps at most one chain in flight.
    fn poll(&mut self) -> Option<Result<Ticket, DmaError>>;
}

/// The agent's own shared region (the memory behind the BAR), [`shared::LEN`] bytes.
pub trait Shared {
    fn read(&self, offset: usize, buf: &mut [u8]);
    fn write(&mut self, offset: usize, data: &[u8]);
}

/// Agent RAM the engine writes before a DMA reads it (frames for the host, staged completions) and
/// the stack reads frames from.
pub trait AgentRam {
    fn read(&self, addr: u32, buf: &mut [u8]);
    fn write(&mut self, addr: u32, data: &[u8]);
}

/// The interrupt to the host (INTx through the message unit, or MSI).
pub trait Notify {
    /// The status block changed and the host asked to hear of it ([`bpnet_contract::notify::STATUS`]).
    /// Called only after the chain carrying the status header has completed.
    fn interrupt_host(&mut self);
    /// `agent_state` changed to READY or BROKEN and the status block may not say so (the agent has just
    /// booted, or it cannot reach the host's RAM): the host reads the header ([`bpnet_contract::notify::LINK`]).
    fn link_changed(&mut self);
}

/// The host bus addresses the outbound window reaches: a descriptor or status block outside it is
/// refused rather than left for the DMA controller to fault on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub base: u64,
    pub len: u64,
}

impl Window {
    /// Whether `len` bytes at `addr` lie wholly inside the window.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let (Some(end), Some(window_end)) = (addr.checked_add(len), self.base.checked_add(self.len)) else {
            return false;
        };
        addr >= self.base && end <= window_end
    }
}

/// What the board gives the engine.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// The agent's half of the header, written at start.
    pub agent: AgentRepr,
    /// The outbound window onto host RAM.
    pub window: Window,
    /// Agent RAM buffers for frames from the host, each `buffer_len` bytes.
    pub from_host_buffers: &'a [u32],
    /// Agent RAM buffers for frames to the host, each `buffer_len` bytes.
    pub to_host_buffers: &'a [u32],
    /// Bytes of each buffer: at least [`bar::MTU_MIN`] + [`ETHERNET_HEADER_LEN`].
    pub buffer_len: u32,
    /// [`STAGING_LEN`] bytes of agent RAM for completions and the status header.
    pub staging: u32,
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The agent header's layout does not hold its rings (the contract's reason).
    Layout(Error),
    /// A pool is empty or has more than [`MAX_BUFFERS`] buffers.
    BufferCount,
    /// Buffers too small for the smallest MTU.
    BufferLen,
    /// Two agent RAM areas overlap, or one wraps the address space.
    Overlap,
}

/// Why [`Engine::transmit`] did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitError {
    /// The host is not connected.
    NotRunning,
    /// Empty, or longer than the MTU allows or a buffer holds.
    Length,
    /// Every agent buffer is waiting for the host: the caller keeps the frame and tries later.
    Busy,
    /// The host has posted no buffer for it: dropped and counted (`rx_no_buffer`), as a NIC whose
    /// receive ring is empty drops.
    NoBuffer,
}

/// A frame from the host, in agent RAM, for the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Give it back with [`Engine::release`].
    pub buffer: usize,
    /// Where the frame starts in agent RAM.
    pub addr: u32,
    pub len: u32,
    /// The host left the TCP/UDP checksum to the agent ([`bar::desc_flags::NEEDS_CSUM`]).
    pub needs_csum: bool,
}

/// Host input the engine refused ([`Engine::take_refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The counter it was counted in ([`bar::counter`]), and how many were refused at once.
    pub counter: usize,
    pub count: u32,
    /// Why (the first, when several were refused together).
    pub error: Error,
}

/// An agent buffer [`Engine::transmit_buffer`] found for a frame to the host: the stack builds the
/// frame in place and hands it over with [`Engine::commit_transmit`], so no copy is made.
#[derive(Debug, PartialEq, Eq)]
pub struct TxBuffer {
    buffer: usize,
    /// Where to build the frame in agent RAM.
    pub addr: u32,
    /// Longest frame it may hold: the MTU plus the Ethernet header, within the buffer.
    pub max_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buf {
    Free,
    /// A DMA is filling (host frames) or reading (frames to the host) it.
    Dma,
    /// Filled, waiting for [`Engine::receive`] or for a host buffer.
    Queued,
    /// Lent to the stack.
    Stack,
}

/// A fixed-size FIFO of small copyable items.
#[derive(Debug, Clone, Copy)]
struct Fifo<T: core::marker::Copy, const N: usize> {
    items: [T; N],
    head: usize,
    len: usize,
}

impl<T: core::marker::Copy, const N: usize> Fifo<T, N> {
    const fn new(fill: T) -> Self {
        Fifo { items: [fill; N], head: 0, len: 0 }
    }
    fn push(&mut self, item: T) -> bool {
        if self.len == N {
            return false;
        }
        self.items[(self.head + self.len) % N] = item;
        self.len += 1;
        true
    }
    fn peek(&self, i: usize) -> Option<T> {
        (i < self.len).then(|| self.items[(self.head + i) % N])
    }
    fn pop(&mut self) -> Option<T> {
        let item = self.peek(0)?;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(item)
    }
}

/// One TX descriptor of a batch: the host's frame into agent buffer `buffer`, or refused.
#[derive(Debug, Clone, Copy, Default)]
struct TxEntry {
    id: u16,
    flags: u16,
    len: u32,
    addr: u64,
    buffer: Option<u8>,
}

/// One RX descriptor of a batch: `len` bytes at `offset` of agent buffer `buffer` into the host's
/// buffer, or refused. With [`feature::RX_MULTI_BUFFER`] a frame takes several entries in a row, all
/// but its last `more`.
#[derive(Debug, Clone, Copy, Default)]
struct RxEntry {
    id: u16,
    len: u32,
    addr: u64,
    buffer: Option<u8>,
    offset: u32,
    more: bool,
}

/// What [`Engine::gather_chain`] did with a frame that spans buffers.
enum Chain {
    /// Its entries are in the batch.
    Placed,
    /// Not enough buffers posted, or left in this chain: it waits.
    Wait,
    /// A buffer it would have taken was refused (counted by the caller); it starts again after it.
    Refused(Error),
}

/// Everything one chain carries, kept until it completes.
#[derive(Debug, Clone, Copy)]
struct Batch {
    tx: [TxEntry; MAX_BATCH],
    n_tx: usize,
    rx: [RxEntry; MAX_BATCH],
    n_rx: usize,
    /// `tx_used` and `rx_used` before this batch.
    tx_used: u32,
    rx_used: u32,
    cause: u32,
    /// Interrupt whatever the event indexes say (state changes).
    notify: bool,
    /// This is the error completions' second attempt: a failure now means the status block itself
    /// is unreachable.
    retry: bool,
}

impl Batch {
    fn empty(tx_used: u32, rx_used: u32) -> Self {
        let mut batch = Batch::EMPTY;
        batch.reset(tx_used, rx_used);
        batch
    }

    const EMPTY: Batch = Batch {
        tx: [TxEntry { id: 0, flags: 0, len: 0, addr: 0, buffer: None }; MAX_BATCH],
        n_tx: 0,
        rx: [RxEntry { id: 0, len: 0, addr: 0, buffer: None, offset: 0, more: false }; MAX_BATCH],
        n_rx: 0,
        tx_used: 0,
        rx_used: 0,
        cause: 0,
        notify: false,
        retry: false,
    };

    /// Start a new batch in place: the entries beyond the counts are never read.
    fn reset(&mut self, tx_used: u32, rx_used: u32) {
        (self.n_tx, self.n_rx, self.tx_used, self.rx_used) = (0, 0, tx_used, rx_used);
        (self.cause, self.notify, self.retry) = (0, false, false);
    }
}

/// What the engine accepted from the host.
#[derive(Debug, Clone, Copy)]
struct Host {
    config: HostRepr,
    /// Largest frame either way: the MTU plus the Ethernet header, within a buffer.
    max_frame: u32,
}

/// The ring engine. Call [`Engine::poll`] from the main loop; it never blocks.
pub struct Engine<D: Dma, S: Shared, M: AgentRam, N: Notify> {
    dma: D,
    shared: S,
    ram: M,
    notify: N,
    agent: AgentRepr,
    window: Window,
    buffer_len: u32,
    staging_addr: u32,
    from_host_addrs: [u32; MAX_BUFFERS],
    from_host_state: [Buf; MAX_BUFFERS],
    rx_flags: [u16; MAX_BUFFERS],
    rx_len: [u32; MAX_BUFFERS],
    n_from_host_buffers: usize,
    to_host_addrs: [u32; MAX_BUFFERS],
    to_host_state: [Buf; MAX_BUFFERS],
    tx_len: [u32; MAX_BUFFERS],
    tx_csum_left_out: [bool; MAX_BUFFERS],
    n_to_host_buffers: usize,
    /// Where the search for a free to-host buffer starts: after the one last queued.
    to_host_next: usize,
    /// Frames from the host for the stack, in ring order.
    received: Fifo<u8, MAX_BUFFERS>,
    /// Frames for the host waiting for its buffers, in transmit order.
    outgoing: Fifo<u8, MAX_BUFFERS>,
    state: AgentState,
    host: Option<Host>,
    /// The host generation that broke the link: BROKEN lasts until the host re-initialises.
    broken_generation: u32,
    /// The last host generation accepted, to count re-initialisations.
    last_generation: Option<u32>,
    /// The state last written to the header's state byte.
    published: Option<AgentState>,
    /// The agent info block's `dma_reach` (the window's end) and the heartbeat last published.
    dma_reach: u64,
    heartbeat: u32,
    /// [`Engine::repair`] writes what it finds overwritten (off only in a test image that overwrites
    /// its own header on purpose).
    repairs: bool,
    tx_cons: u32,
    tx_used: u32,
    rx_cons: u32,
    rx_used: u32,
    /// `rx_prod` as last read: buffers the host has posted, so a frame can be queued for one without
    /// reading the doorbells each time.
    rx_prod: u32,
    /// The chain being gathered, then in flight: built and completed in place, never moved, since
    /// it is large and this is the per-frame path.
    batch: Batch,
    in_flight: Option<Ticket>,
    /// A chain owed to the host (error completions, a state change) once the channel is free.
    owed: Option<Batch>,
    refusal: Option<Refusal>,
    /// An interrupt the host asked for, not raised yet ([`Engine::moderate_interrupt`]), and the
    /// completions since the last one.
    interrupt_owed: bool,
    since_interrupt: u32,
    counters: [u8; COUNTERS_LEN],
    staging: [u8; STAGING_LEN],
    copies: [Copy; MAX_COPIES],
}

impl<D: Dma, S: Shared, M: AgentRam, N: Notify> Engine<D, S, M, N> {
    /// Check the configuration, clear the counters and publish the agent's header: RESET, the agent
    /// fields and the agent info block (the window's end as `dma_reach`), then READY.
    pub fn new(config: Config<'_>, dma: D, shared: S, ram: M, notify: N) -> Result<Self, ConfigError> {
        let agent = config.agent;
        agent.layout.check(agent.ring_entries).map_err(ConfigError::Layout)?;
        let pools = [config.from_host_buffers, config.to_host_buffers];
        if pools.iter().any(|p| p.is_empty() || p.len() > MAX_BUFFERS) {
            return Err(ConfigError::BufferCount);
        }
        if config.buffer_len < bar::MTU_MIN as u32 + ETHERNET_HEADER_LEN {
            return Err(ConfigError::BufferLen);
        }
        check_disjoint(&config)?;
        let mut from_host_addrs = [0; MAX_BUFFERS];
        from_host_addrs[..config.from_host_buffers.len()].copy_from_slice(config.from_host_buffers);
        let mut to_host_addrs = [0; MAX_BUFFERS];
        to_host_addrs[..config.to_host_buffers.len()].copy_from_slice(config.to_host_buffers);
        let empty = Copy { src: Addr::Agent(0), dst: Addr::Agent(0), len: 0 };
        let mut engine = Engine {
            dma,
            shared,
            ram,
            notify,
            agent,
            window: config.window,
            buffer_len: config.buffer_len,
            staging_addr: config.staging,
            from_host_addrs,
            from_host_state: [Buf::Free; MAX_BUFFERS],
            rx_flags: [0; MAX_BUFFERS],
            rx_len: [0; MAX_BUFFERS],
            n_from_host_buffers: config.from_host_buffers.len(),
            to_host_addrs,
            to_host_state: [Buf::Free; MAX_BUFFERS],
            tx_len: [0; MAX_BUFFERS],
            tx_csum_left_out: [false; MAX_BUFFERS],
            n_to_host_buffers: config.to_host_buffers.len(),
            to_host_next: 0,
            received: Fifo::new(0),
            outgoing: Fifo::new(0),
            state: AgentState::Reset,
            host: None,
            broken_generation: 0,
            last_generation: None,
            published: None,
            dma_reach: config.window.base.saturating_add(config.window.len),
            heartbeat: 0,
            repairs: true,
            tx_cons: 0,
            tx_used: 0,
            rx_cons: 0,
            rx_used: 0,
            rx_prod: 0,
            batch: Batch::EMPTY,
            in_flight: None,
            owed: None,
            refusal: None,
            interrupt_owed: false,
            since_interrupt: 0,
            counters: [0; COUNTERS_LEN],
            staging: [0; STAGING_LEN],
            copies: [empty; MAX_COPIES],
        };
        engine.set_state(AgentState::Reset);
        engine.shared.write(shared::HEADER_OFFSET, &engine.agent_fields()[..AGENT_FIELDS_LEN]);
        engine.shared.write(shared::AGENT_INFO_OFFSET, &engine.agent_info());
        engine.shared.write(agent.layout.counters as usize, &engine.counters);
        engine.set_state(AgentState::Ready);
        Ok(engine)
    }

    /// The header as the agent publishes it (its fields; the host's are zero here).
    fn agent_fields(&self) -> [u8; bar::HEADER_LEN] {
        let mut header = [0u8; bar::HEADER_LEN];
        self.agent.emit(&mut Header::new_unchecked(&mut header[..]));
        header
    }

    /// The agent info block as the agent publishes it.
    fn agent_info(&self) -> [u8; AGENT_INFO_LEN] {
        let mut info = [0u8; AGENT_INFO_LEN];
        AgentInfo::new_unchecked(&mut info[..]).emit(self.dma_reach, self.heartbeat);
        info
    }

    /// The board's timer, about once a second (the host reads the beat to tell a live agent from one
    /// whose processor stopped): advance the heartbeat, then check what the agent publishes
    /// ([`Engine::repair`]).
    pub fn tick(&mut self) {
        self.heartbeat = bar::next_heartbeat(self.heartbeat);
        let at = shared::AGENT_INFO_OFFSET + field::agent_info::HEARTBEAT;
        self.shared.write(at, &self.heartbeat.to_le_bytes());
        self.repair();
    }

    /// Turn self-repair ([`Engine::repair`]) off or back on: for an image that breaks the contract on
    /// purpose by writing its own header, which must stay broken until the host has seen it.
    pub fn set_repairs(&mut self, on: bool) {
        self.repairs = on;
    }

    /// The heartbeat last published (0 before the first [`Engine::tick`]).
    pub fn heartbeat(&self) -> u32 {
        self.heartbeat
    }

    /// Compare every field the agent publishes (its header fields, the state byte once published, the
    /// agent info block, the counters) with the engine's own copy and write again whatever differs,
    /// counting one `header_repairs` per call that found something. Plain reads of the agent's own
    /// RAM; true if something was repaired.
    pub fn repair(&mut self) -> bool {
        if !self.repairs {
            return false;
        }
        let mut repaired = false;
        let fields = self.agent_fields();
        let mut seen = [0u8; bar::HEADER_LEN];
        self.shared.read(shared::HEADER_OFFSET, &mut seen[..=field::header::AGENT_STATE]);
        if seen[..AGENT_FIELDS_LEN] != fields[..AGENT_FIELDS_LEN] {
            self.shared.write(shared::HEADER_OFFSET, &fields[..AGENT_FIELDS_LEN]);
            repaired = true;
        }
        // The byte of the state last published: a chain in flight may still hold back a newer one.
        if let Some(state) = self.published.filter(|&s| seen[field::header::AGENT_STATE] != s as u8) {
            self.shared.write(shared::HEADER_OFFSET + field::header::AGENT_STATE, &[state as u8]);
            repaired = true;
        }
        let info = self.agent_info();
        let mut seen = [0u8; AGENT_INFO_LEN];
        self.shared.read(shared::AGENT_INFO_OFFSET, &mut seen);
        if seen != info {
            self.shared.write(shared::AGENT_INFO_OFFSET, &info);
            repaired = true;
        }
        let mut seen = [0u8; COUNTERS_LEN];
        self.shared.read(self.agent.layout.counters as usize, &mut seen);
        if seen != self.counters {
            repaired = true;
        }
        if repaired {
            // The counters are written back whole, the repair counted in them.
            let _ = Counters::new_unchecked(&mut self.counters[..]).add(counter::HEADER_REPAIRS, 1);
            self.shared.write(self.agent.layout.counters as usize, &self.counters);
        }
        repaired
    }

    /// The agent's state as published in the header.
    pub fn state(&self) -> AgentState {
        self.state
    }

    /// The host's configuration the engine accepted, while RUNNING.
    pub fn host(&self) -> Option<HostRepr> {
        self.host.filter(|_| self.state == AgentState::Running).map(|h| h.config)
    }

    /// The first value refused since the last call, for the board to log: the engine counts every
    /// refusal in the contract's counters but has no log of its own.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.refusal.take()
    }

    /// A frame for the host was dropped because the host had posted no buffer for it
    /// ([`TransmitError::NoBuffer`] from [`Engine::transmit_buffer`]): count it (`rx_no_buffer`).
    pub fn count_no_buffer(&mut self) {
        self.count(counter::RX_NO_BUFFER, 1);
    }

    /// Add `n` to a counter the engine does not keep itself (the board's IP stack: its drops and
    /// fragments), in the same block and the same way as the engine's own.
    pub fn count_stack(&mut self, slot: usize, n: u32) {
        if n != 0 {
            self.count(slot, n);
        }
    }

    /// A counter slot ([`bar::counter`]), as the engine keeps it (the host's copy is in the BAR).
    pub fn counter(&self, slot: usize) -> u32 {
        Counters::new_unchecked(&self.counters[..]).get(slot).unwrap_or(0)
    }

    /// The board's doorbell interrupt: counted; the work itself is found by [`Engine::poll`]. Outside
    /// RUNNING a doorbell is rare (the host setting up or asking for something) and the host is about
    /// to read the header: check it first ([`Engine::repair`]).
    pub fn doorbell(&mut self) {
        self.count(counter::DOORBELLS, 1);
        if self.state != AgentState::Running {
            self.repair();
        }
    }

    pub fn dma(&mut self) -> &mut D {
        &mut self.dma
    }
    pub fn shared(&mut self) -> &mut S {
        &mut self.shared
    }
    pub fn ram(&mut self) -> &mut M {
        &mut self.ram
    }
    pub fn notify(&mut self) -> &mut N {
        &mut self.notify
    }

    /// One step: finish a completed chain, follow the host's state, and start the next chain.
    pub fn poll(&mut self) {
        if let Some(done) = self.dma.poll() {
            self.complete(done);
        }
        let mut raw = [0u8; bar::HEADER_LEN];
        // RUNNING looks only for a change of the host's fields; the other states need them all.
        let range = if self.state == AgentState::Running { HOST_FIELDS } else { 0..bar::HEADER_LEN };
        self.shared.read(shared::HEADER_OFFSET + range.start, &mut raw[range]);
        let header = Header::new_unchecked(&raw[..]);
        match self.state {
            AgentState::Running => {
                let generation = self.host.map(|h| h.config.generation);
                if header.host_state() != Ok(HostState::Up) || Some(header.host_generation()) != generation {
                    self.stop(AgentState::Ready);
                    return;
                }
                if self.in_flight.is_none() {
                    if let Some(owed) = self.owed.take() {
                        self.batch = owed;
                        self.submit();
                    } else {
                        self.run();
                    }
                }
                self.moderate_interrupt();
            }
            AgentState::Broken => {
                if self.in_flight.is_none() {
                    if let Some(owed) = self.owed.take() {
                        self.batch = owed;
                        self.submit();
                    }
                }
                let down = header.host_state() == Ok(HostState::Down);
                if down || header.host_generation() != self.broken_generation {
                    self.stop(AgentState::Ready);
                }
            }
            _ => {
                // A chain of an earlier connection may still write agent buffers: wait for it.
                if self.in_flight.is_none() {
                    self.start(&header);
                }
            }
        }
    }

    /// Frames from the host, in the order it sent them.
    pub fn receive(&mut self) -> Option<Received> {
        let buffer = self.received.pop()? as usize;
        self.from_host_state[buffer] = Buf::Stack;
        Some(Received {
            buffer,
            addr: self.from_host_addrs[buffer],
            len: self.rx_len[buffer],
            needs_csum: self.rx_flags[buffer] & bar::desc_flags::NEEDS_CSUM != 0,
        })
    }

    /// Give back a buffer [`Engine::receive`] lent. Anything else is ignored.
    pub fn release(&mut self, buffer: usize) {
        if buffer < self.n_from_host_buffers && self.from_host_state[buffer] == Buf::Stack {
            self.from_host_state[buffer] = Buf::Free;
        }
    }

    /// Whether [`Engine::transmit`] has a buffer to copy a frame into.
    pub fn can_transmit(&self) -> bool {
        self.state == AgentState::Running && self.to_host_state[..self.n_to_host_buffers].contains(&Buf::Free)
    }

    /// A free agent buffer for a frame to the host, if the host has posted a buffer to take it.
    pub fn transmit_buffer(&mut self) -> Result<TxBuffer, TransmitError> {
        let Some(host) = self.host.filter(|_| self.state == AgentState::Running) else {
            return Err(TransmitError::NotRunning);
        };
        if !self.host_buffer_for(self.outgoing.len) {
            return Err(TransmitError::NoBuffer);
        }
        // Buffers come back in the order they were queued, so the search starts after the last one
        // queued and usually ends there.
        let n = self.n_to_host_buffers;
        let wrap = |b: usize| if b >= n { b - n } else { b };
        let free = (0..n).map(|i| wrap(self.to_host_next + i)).find(|&b| self.to_host_state[b] == Buf::Free);
        let Some(buffer) = free else {
            return Err(TransmitError::Busy);
        };
        Ok(TxBuffer { buffer, addr: self.to_host_addrs[buffer], max_len: host.max_frame })
    }

    /// Queue the `len` bytes built in `tx` for the host; the next [`Engine::poll`] DMAs them into a
    /// buffer the host posted. `csum_left_out`: an IPv4 TCP/UDP frame whose L4 checksum the stack did
    /// not compute, which the host is told of ([`compl_flags::NEEDS_CSUM`]) when checksum offload was
    /// negotiated (without it the stack computes every checksum and this is false).
    pub fn commit_transmit(&mut self, tx: TxBuffer, len: usize, csum_left_out: bool) -> Result<(), TransmitError> {
        if self.state != AgentState::Running || self.to_host_state.get(tx.buffer) != Some(&Buf::Free) {
            return Err(TransmitError::NotRunning);
        }
        if len == 0 || len > tx.max_len as usize {
            return Err(TransmitError::Length);
        }
        self.to_host_state[tx.buffer] = Buf::Queued;
        self.to_host_next = if tx.buffer + 1 == self.n_to_host_buffers { 0 } else { tx.buffer + 1 };
        // len <= max_len, a u32.
        self.tx_len[tx.buffer] = len as u32;
        self.tx_csum_left_out[tx.buffer] = csum_left_out;
        self.outgoing.push(tx.buffer as u8);
        Ok(())
    }

    /// Copy a frame for the host into an agent buffer and queue it ([`Engine::transmit_buffer`] and
    /// [`Engine::commit_transmit`] in one, for callers that have the frame elsewhere).
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), TransmitError> {
        let Some(host) = self.host.filter(|_| self.state == AgentState::Running) else {
            return Err(TransmitError::NotRunning);
        };
        if frame.is_empty() || frame.len() > host.max_frame as usize {
            return Err(TransmitError::Length);
        }
        let tx = self.transmit_buffer().inspect_err(|e| {
            if *e == TransmitError::NoBuffer {
                self.count(counter::RX_NO_BUFFER, 1);
            }
        })?;
        self.ram.write(tx.addr, frame);
        self.commit_transmit(tx, frame.len(), false)
    }

    /// Whether the host has posted a buffer beyond the first `queued` not yet taken. The doorbells are
    /// read again only when the last value read says no.
    fn host_buffer_for(&mut self, queued: usize) -> bool {
        let entries = self.agent.ring_entries;
        // A hostile index counts as no buffer here; the next poll refuses it and breaks the link.
        let posted = |prod| ring::pending(prod, self.rx_cons, entries).unwrap_or(0) as usize;
        if posted(self.rx_prod) > queued {
            return true;
        }
        self.rx_prod = self.doorbells().rx_prod();
        posted(self.rx_prod) > queued
    }

    fn count(&mut self, slot: usize, n: u32) {
        if Counters::new_unchecked(&mut self.counters[..]).add(slot, n).is_ok() {
            let at = 4 * slot;
            let offset = self.agent.layout.counters as usize + at;
            self.shared.write(offset, &self.counters[at..at + 4]);
        }
    }

    /// The state byte follows the engine's state only while no chain is in flight: a host that sees
    /// the agent leave RUNNING knows no DMA of the old connection will still write its RAM, and may
    /// reuse its status block and buffers.
    fn set_state(&mut self, state: AgentState) {
        self.state = state;
        self.publish_state();
    }

    fn publish_state(&mut self) {
        if self.in_flight.is_none() && self.published != Some(self.state) {
            self.published = Some(self.state);
            self.shared.write(shared::HEADER_OFFSET + field::header::AGENT_STATE, &[self.state as u8]);
            if matches!(self.state, AgentState::Ready | AgentState::Broken) {
                self.notify.link_changed();
            }
        }
    }

    /// The host's indexes (the rest of the block is reserved and not read).
    fn doorbells(&self) -> Doorbells<[u8; DOORBELLS_LEN]> {
        let mut raw = [0u8; DOORBELLS_LEN];
        self.shared.read(shared::DOORBELLS_OFFSET, &mut raw[..DOORBELL_INDEXES_LEN]);
        Doorbells::new_unchecked(raw)
    }

    /// The descriptor at free-running `index` of the ring at `ring_offset`, copied out of shared
    /// memory once so the host cannot change it between the check and the use.
    fn descriptor(&self, ring_offset: u32, index: u32) -> Descriptor<[u8; DESCRIPTOR_LEN]> {
        let mut raw = [0u8; DESCRIPTOR_LEN];
        let at = ring_offset as usize + ring::slot(index, self.agent.ring_entries) * DESCRIPTOR_LEN;
        self.shared.read(at, &mut raw);
        Descriptor::new_unchecked(raw)
    }

    /// READY: accept the host's fields once it says UP, or refuse them and break.
    fn start<T: AsRef<[u8]>>(&mut self, header: &Header<T>) {
        let entries = self.agent.ring_entries;
        let config = match HostRepr::parse(header, self.agent.features, entries) {
            Ok(None) => return,
            Ok(Some(config)) => config,
            Err(e) => {
                self.refuse(counter::BAD_HOST_CONFIG, 1, e);
                self.broken_generation = header.host_generation();
                self.set_state(AgentState::Broken);
                return;
            }
        };
        if !self.window.contains(config.status_block_addr, status::block_len(entries) as u64) {
            self.refuse(counter::BAD_HOST_CONFIG, 1, Error::BadAddress(config.status_block_addr));
            self.broken_generation = config.generation;
            self.set_state(AgentState::Broken);
            return;
        }
        if self.last_generation.is_some_and(|g| g != config.generation) {
            self.count(counter::HOST_RESETS_SEEN, 1);
        }
        self.last_generation = Some(config.generation);
        let max_frame = (config.mtu as u32 + ETHERNET_HEADER_LEN).min(self.buffer_len);
        self.host = Some(Host { config, max_frame });
        (self.tx_cons, self.tx_used, self.rx_cons, self.rx_used, self.rx_prod) = (0, 0, 0, 0, 0);
        self.set_state(AgentState::Running);
        // Tell the host the event indexes and that the link is up.
        let mut batch = Batch::empty(0, 0);
        batch.cause = cause::LINK;
        batch.notify = true;
        self.owed = Some(batch);
    }

    /// Leave RUNNING (or BROKEN): frames for the host are dropped, the connection forgotten. A chain
    /// in flight still completes; its buffers come back then.
    fn stop(&mut self, state: AgentState) {
        // The host re-initialises (or must): what it reads next must be the agent's header.
        self.repair();
        // The host learns of the state change itself; completions it waited for are void.
        self.interrupt_owed = false;
        while let Some(buffer) = self.outgoing.pop() {
            self.to_host_state[buffer as usize] = Buf::Free;
        }
        self.owed = None;
        if state == AgentState::Broken {
            self.broken_generation = self.host.map_or(0, |h| h.config.generation);
        } else {
            self.host = None;
        }
        self.set_state(state);
    }

    /// A producer index the host should never have written: refuse it, break the link, and tell
    /// the host (it can still be reached through its status block).
    fn bad_index(&mut self, error: Error) {
        self.refuse(counter::BAD_INDEXES, 1, error);
        self.stop(AgentState::Broken);
        let mut batch = Batch::empty(self.tx_used, self.rx_used);
        batch.cause = cause::LINK | cause::ERROR;
        batch.notify = true;
        self.owed = Some(batch);
    }

    /// RUNNING with the channel free: gather every ready descriptor of both rings into one chain.
    fn run(&mut self) {
        let Some(host) = self.host else { return };
        let entries = self.agent.ring_entries;
        let doorbells = self.doorbells();
        self.rx_prod = doorbells.rx_prod();
        let (tx_ready, rx_ready) = match (
            ring::pending(doorbells.tx_prod(), self.tx_cons, entries),
            ring::pending(doorbells.rx_prod(), self.rx_cons, entries),
        ) {
            (Ok(tx), Ok(rx)) => (tx, rx),
            (Err(e), _) | (_, Err(e)) => {
                self.bad_index(e);
                return;
            }
        };
        self.batch.reset(self.tx_used, self.rx_used);
        let mut bad = 0;
        let mut first_bad = None;

        // Host frames into free agent buffers; stop at the first good one with no buffer to take it.
        let mut free =
            self.from_host_state[..self.n_from_host_buffers].iter().enumerate().filter(|(_, &s)| s == Buf::Free);
        for i in 0..(tx_ready as usize).min(MAX_BATCH) {
            let descriptor = self.descriptor(self.agent.layout.tx_ring, self.tx_cons.wrapping_add(i as u32));
            let entry = match self.accept(&descriptor, host.max_frame) {
                Ok(d) => {
                    let Some((buffer, _)) = free.next() else { break };
                    TxEntry { id: d.id, flags: d.flags, len: d.len, addr: d.addr, buffer: Some(buffer as u8) }
                }
                Err(e) => {
                    bad += 1;
                    first_bad = first_bad.or(Some(e));
                    TxEntry { id: descriptor.id(), ..TxEntry::default() }
                }
            };
            self.batch.tx[self.batch.n_tx] = entry;
            self.batch.n_tx += 1;
        }

        // Frames for the host into the buffers it posted, in order; a refused buffer is returned
        // with the ERROR flag and the frame takes the next one. A frame that one buffer holds takes
        // it; with RX_MULTI_BUFFER a longer one spans several ([`Engine::gather_chain`]). Entry i
        // is descriptor rx_cons + i throughout.
        let multi = host.config.features & feature::RX_MULTI_BUFFER != 0;
        let min_len = if multi { bar::RX_BUFFER_MIN } else { 0 };
        let rx_ready = (rx_ready as usize).min(MAX_BATCH);
        let mut next_frame = 0;
        while self.batch.n_rx < rx_ready {
            let Some(buffer) = self.outgoing.peek(next_frame) else { break };
            let len = self.tx_len[buffer as usize];
            let i = self.batch.n_rx;
            let descriptor = self.descriptor(self.agent.layout.rx_ring, self.rx_cons.wrapping_add(i as u32));
            let entry = match self.accept(&descriptor, u32::MAX) {
                Ok(d) if d.len >= len && d.len >= min_len => {
                    next_frame += 1;
                    RxEntry { id: d.id, len, addr: d.addr, buffer: Some(buffer), offset: 0, more: false }
                }
                Ok(d) if multi && d.len >= min_len => match self.gather_chain(rx_ready, buffer, len) {
                    Chain::Placed => {
                        next_frame += 1;
                        continue;
                    }
                    Chain::Wait => break,
                    Chain::Refused(e) => {
                        bad += 1;
                        first_bad = first_bad.or(Some(e));
                        continue;
                    }
                },
                Ok(d) => {
                    bad += 1;
                    first_bad = first_bad.or(Some(Error::BadLength(d.len)));
                    RxEntry { id: descriptor.id(), ..RxEntry::default() }
                }
                Err(e) => {
                    bad += 1;
                    first_bad = first_bad.or(Some(e));
                    RxEntry { id: descriptor.id(), ..RxEntry::default() }
                }
            };
            self.batch.rx[i] = entry;
            self.batch.n_rx += 1;
        }

        if self.batch.n_tx == 0 && self.batch.n_rx == 0 {
            return;
        }
        if bad > 0 {
            self.batch.cause |= cause::ERROR;
        }
        if self.submit() {
            if let Some(e) = first_bad {
                self.refuse(counter::BAD_DESCRIPTORS, bad, e);
            }
        }
    }

    /// With RX_MULTI_BUFFER, a frame of `len` bytes in agent buffer `buffer` longer than the next
    /// posted buffer (which [`Engine::run`] accepted): entries for it from `batch.n_rx` on, one per
    /// buffer, each filled whole but the last. Fewer buffers posted (or left in this chain) than it
    /// needs: nothing is added and the frame waits. A refused buffer among them: the buffers it had
    /// taken and the refused one are completed with ERROR, and the frame starts again after them.
    #[inline(never)]
    fn gather_chain(&mut self, rx_ready: usize, buffer: u8, len: u32) -> Chain {
        let first = self.batch.n_rx;
        let mut offset = 0;
        let mut i = first;
        while offset < len {
            if i == rx_ready {
                return Chain::Wait;
            }
            let descriptor = self.descriptor(self.agent.layout.rx_ring, self.rx_cons.wrapping_add(i as u32));
            let d = match self.accept(&descriptor, u32::MAX) {
                Ok(d) if d.len >= bar::RX_BUFFER_MIN => d,
                refused => {
                    let e = refused.err().unwrap_or(Error::BadLength(descriptor.len()));
                    for j in first..=i {
                        let id = self.descriptor(self.agent.layout.rx_ring, self.rx_cons.wrapping_add(j as u32)).id();
                        self.batch.rx[j] = RxEntry { id, ..RxEntry::default() };
                    }
                    self.batch.n_rx = i + 1;
                    return Chain::Refused(e);
                }
            };
            let part = d.len.min(len - offset);
            self.batch.rx[i] =
                RxEntry { id: d.id, len: part, addr: d.addr, buffer: Some(buffer), offset, more: offset + part < len };
            offset += part;
            i += 1;
        }
        self.batch.n_rx = i;
        Chain::Placed
    }

    /// Count `n` refused values in counter `slot` and keep the first for [`Engine::take_refusal`].
    fn refuse(&mut self, slot: usize, n: u32, error: Error) {
        self.count(slot, n);
        self.refusal = self.refusal.or(Some(Refusal { counter: slot, count: n, error }));
    }

    /// The contract's check plus the outbound window.
    fn accept(&self, descriptor: &Descriptor<[u8; DESCRIPTOR_LEN]>, max_len: u32) -> Result<DescriptorRepr, Error> {
        let d = descriptor.check(max_len)?;
        if !self.window.contains(d.addr, d.len as u64) {
            return Err(Error::BadAddress(d.addr));
        }
        Ok(d)
    }

    /// Stage the batch's completions and status header, build the chain and submit it. On success the
    /// batch is committed: indexes advance and its buffers belong to the DMA until it completes.
    fn submit(&mut self) -> bool {
        let Some(host) = self.host else { return false };
        let entries = self.agent.ring_entries;
        let block = host.config.status_block_addr;
        let offload = host.config.features & feature::CSUM_OFFLOAD != 0;
        let batch = &mut self.batch;
        let (n_tx, n_rx) = (batch.n_tx as u32, batch.n_rx as u32);
        let tx_used = batch.tx_used.wrapping_add(n_tx);
        let rx_used = batch.rx_used.wrapping_add(n_rx);
        if n_tx > 0 {
            batch.cause |= cause::TX;
        }
        if n_rx > 0 {
            batch.cause |= cause::RX;
        }
        let mut n = 0;

        for (i, e) in batch.tx[..batch.n_tx].iter().enumerate() {
            let at = STAGING_TX + i * COMPLETION_LEN;
            let completion = match e.buffer {
                Some(buffer) => {
                    self.copies[n] = Copy {
                        src: Addr::Host(e.addr),
                        dst: Addr::Agent(self.from_host_addrs[buffer as usize]),
                        len: e.len,
                    };
                    n += 1;
                    CompletionRepr { id: e.id, flags: 0, len: e.len }
                }
                None => CompletionRepr { id: e.id, flags: compl_flags::ERROR, len: 0 },
            };
            completion.emit(&mut Completion::new_unchecked(&mut self.staging[at..at + COMPLETION_LEN]));
        }
        for (i, e) in batch.rx[..batch.n_rx].iter().enumerate() {
            let at = STAGING_RX + i * COMPLETION_LEN;
            let completion = match e.buffer {
                Some(buffer) => {
                    self.copies[n] = Copy {
                        src: Addr::Agent(self.to_host_addrs[buffer as usize] + e.offset),
                        dst: Addr::Host(e.addr),
                        len: e.len,
                    };
                    n += 1;
                    // The checksum flags on the frame's first completion only.
                    let mut flags = match (offload && e.offset == 0, self.tx_csum_left_out[buffer as usize]) {
                        (false, _) => 0,
                        (true, false) => compl_flags::CSUM_VALID,
                        (true, true) => compl_flags::NEEDS_CSUM,
                    };
                    if e.more {
                        flags |= compl_flags::MORE;
                    }
                    CompletionRepr { id: e.id, flags, len: e.len }
                }
                None => CompletionRepr { id: e.id, flags: compl_flags::ERROR, len: 0 },
            };
            completion.emit(&mut Completion::new_unchecked(&mut self.staging[at..at + COMPLETION_LEN]));
        }
        // Completions after the frames and the header after the completions: the chain runs in
        // order, so a host that sees an index sees everything below it.
        let rings = [
            (STAGING_TX, batch.tx_used, n_tx, status::tx_completion_offset as fn(Entries, u32) -> usize),
            (STAGING_RX, batch.rx_used, n_rx, status::rx_completion_offset),
        ];
        for (staged, first, count, offset) in rings {
            // The completions are contiguous in staging but wrap in the host's ring: at most two
            // pieces, the second starting at slot 0.
            let room = entries.get() - ring::slot(first, entries) as u32;
            let head = count.min(room);
            for (skip, len) in [(0, head), (head, count - head)] {
                if len > 0 {
                    let src = self.staging_addr + (staged + skip as usize * COMPLETION_LEN) as u32;
                    let dst = block + offset(entries, first.wrapping_add(skip)) as u64;
                    self.copies[n] =
                        Copy { src: Addr::Agent(src), dst: Addr::Host(dst), len: len * COMPLETION_LEN as u32 };
                    n += 1;
                }
            }
        }
        // A retry re-sends completions already counted in the consumer indexes.
        let (tx_cons, rx_cons) = match batch.retry {
            true => (self.tx_cons, self.rx_cons),
            false => (self.tx_cons.wrapping_add(n_tx), self.rx_cons.wrapping_add(n_rx)),
        };
        let mut header = status::Header::new_unchecked(&mut self.staging[..status::HEADER_LEN]);
        header.clear();
        header.set_tx_used(tx_used);
        header.set_rx_used(rx_used);
        // Virtio's avail_event: a doorbell is wanted once the host posts past what has been taken.
        header.set_tx_prod_event(tx_cons);
        header.set_rx_prod_event(rx_cons);
        header.set_interrupt_cause(batch.cause);
        header.set_agent_generation(self.agent.generation);
        self.copies[n] =
            Copy { src: Addr::Agent(self.staging_addr), dst: Addr::Host(block), len: status::HEADER_LEN as u32 };
        n += 1;

        // Only the staged bytes in use reach agent RAM.
        let staged = [
            0..status::HEADER_LEN,
            STAGING_TX..STAGING_TX + batch.n_tx * COMPLETION_LEN,
            STAGING_RX..STAGING_RX + batch.n_rx * COMPLETION_LEN,
        ];
        for range in staged.into_iter().filter(|r| !r.is_empty()) {
            self.ram.write(self.staging_addr + range.start as u32, &self.staging[range]);
        }
        let Ok(ticket) = self.dma.submit(&self.copies[..n]) else {
            // Nothing was committed; the same work is gathered again on the next poll.
            return false;
        };
        (self.tx_cons, self.rx_cons) = (tx_cons, rx_cons);
        self.tx_used = tx_used;
        self.rx_used = rx_used;
        let batch = &self.batch;
        for e in &batch.tx[..batch.n_tx] {
            if let Some(buffer) = e.buffer {
                self.from_host_state[buffer as usize] = Buf::Dma;
            }
        }
        for e in &batch.rx[..batch.n_rx] {
            if let Some(buffer) = e.buffer {
                if !e.more {
                    self.outgoing.pop();
                }
                self.to_host_state[buffer as usize] = Buf::Dma;
            }
        }
        self.in_flight = Some(ticket);
        true
    }

    /// A chain finished: hand its frames on, free its buffers, and interrupt the host if it asked.
    fn complete(&mut self, done: Result<Ticket, DmaError>) {
        let Some(ticket) = self.in_flight else { return };
        if done.is_ok_and(|t| t != ticket) {
            return;
        }
        self.in_flight = None;
        self.publish_state();
        let live = self.state == AgentState::Running;
        let ok = done.is_ok();
        let (mut tx_frames, mut tx_bytes, mut rx_frames, mut rx_bytes) = (0, 0, 0, 0);
        let batch = &self.batch;
        for e in &batch.tx[..batch.n_tx] {
            let Some(buffer) = e.buffer else { continue };
            let buffer = buffer as usize;
            if ok && live {
                self.from_host_state[buffer] = Buf::Queued;
                self.rx_len[buffer] = e.len;
                self.rx_flags[buffer] = e.flags;
                self.received.push(buffer as u8);
            } else {
                self.from_host_state[buffer] = Buf::Free;
            }
            tx_frames += 1;
            tx_bytes += e.len;
        }
        for e in &batch.rx[..batch.n_rx] {
            let Some(buffer) = e.buffer else { continue };
            self.to_host_state[buffer as usize] = Buf::Free;
            rx_frames += u32::from(!e.more);
            rx_bytes += e.len;
        }
        let (n_tx, n_rx) = (batch.n_tx as u32, batch.n_rx as u32);
        let (tx_used, rx_used, notify, retry) = (batch.tx_used, batch.rx_used, batch.notify, batch.retry);
        if !ok {
            self.count(counter::TX_DMA_ERRORS, tx_frames);
            self.count(counter::RX_DMA_ERRORS, rx_frames + u32::from(tx_frames == 0 && rx_frames == 0));
            if retry || !live {
                // The status block itself cannot be reached: the host must re-initialise.
                if live {
                    self.stop(AgentState::Broken);
                }
                return;
            }
            // Some copies may not have happened: complete the whole batch again, every entry with
            // ERROR, so the host gets its buffers back and drops what it sent. A rare path: the copy
            // of the batch is no cost here.
            let mut again = self.batch;
            for e in &mut again.tx[..again.n_tx] {
                e.buffer = None;
            }
            for e in &mut again.rx[..again.n_rx] {
                e.buffer = None;
            }
            again.cause |= cause::ERROR;
            again.retry = true;
            self.owed = Some(again);
            return;
        }
        self.count(counter::TX_FRAMES, tx_frames);
        self.count(counter::TX_BYTES, tx_bytes);
        self.count(counter::RX_FRAMES, rx_frames);
        self.count(counter::RX_BYTES, rx_bytes);
        let Some(host) = self.host else { return };
        self.since_interrupt = self.since_interrupt.saturating_add(n_tx + n_rx);
        let wanted = if notify {
            // A state change is told at once.
            self.interrupt_host();
            return;
        } else if host.config.features & feature::EVENT_INDEX != 0 {
            let doorbells = self.doorbells();
            ring::need_event(doorbells.tx_used_event(), tx_used.wrapping_add(n_tx), tx_used)
                || ring::need_event(doorbells.rx_used_event(), rx_used.wrapping_add(n_rx), rx_used)
        } else {
            n_tx > 0 || n_rx > 0
        };
        // Raised at the end of the poll, or later if more work keeps the agent busy (Engine::poll).
        self.interrupt_owed |= wanted;
    }

    /// An interrupt the host asked for is raised once the agent runs out of work (no chain went out
    /// after this one, so nothing more is coming soon), or after [`INTERRUPT_BATCH`] completions if
    /// it does not: moderation, as a NIC's, with no added latency when the link is quiet. The status
    /// block the interrupt announces has already reached host RAM.
    fn moderate_interrupt(&mut self) {
        if self.interrupt_owed && (self.in_flight.is_none() || self.since_interrupt >= INTERRUPT_BATCH) {
            self.interrupt_host();
        }
    }

    fn interrupt_host(&mut self) {
        self.interrupt_owed = false;
        self.since_interrupt = 0;
        self.count(counter::INTERRUPTS, 1);
        self.notify.interrupt_host();
    }
}

/// The agent RAM areas must not wrap the 32-bit space or overlap: a frame copied into one buffer
/// must never land in another or in the staging area.
fn check_disjoint(config: &Config<'_>) -> Result<(), ConfigError> {
    let areas = || {
        let buffers = config.from_host_buffers.iter().chain(config.to_host_buffers).map(|&a| (a, config.buffer_len));
        buffers.chain(core::iter::once((config.staging, STAGING_LEN as u32)))
    };
    for (i, (a, alen)) in areas().enumerate() {
        let a_end = a.checked_add(alen).ok_or(ConfigError::Overlap)?;
        for (b, blen) in areas().take(i) {
            let b_end = b as u64 + blen as u64;
            if (a as u64) < b_end && (b as u64) < a_end as u64 {
                return Err(ConfigError::Overlap);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
