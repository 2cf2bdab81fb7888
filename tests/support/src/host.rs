//! The host half of the bpnet data path, in Rust: what the kernel module does for one agent, driven against
//! any [`Backplane`]: the emulated board, or the ring engine over fake memories in its own tests.
//!
//! It keeps to the contract's rule: the host reads only its own RAM on the fast path. The agent's header is
//! read once through the BAR at set-up; after that the host tells the agent things with posted BAR writes
//! (descriptors, producer and event indexes, the doorbell) and learns everything from the status block the
//! agent DMAs into host RAM. The one BAR read outside set-up is the ODR read after an interrupt, which on a
//! real PCI bus also flushes the agent's DMA writes ahead of it; while the host keeps polling it asks for no
//! interrupts (virtio's event index), so a busy link costs no BAR reads at all.
//!
//! Host RAM layout from [`Params::host_ram_base`]: the status block (64-byte aligned), then one buffer of
//! [`Params::buffer_len`] per TX ring slot, then one per RX ring slot. A slot's buffer never moves, so the
//! buffer of free-running index `n` is the one at `slot(n)`.

use std::collections::VecDeque;
use std::fmt;

use bpnet_contract::bar::{
    self, feature, field, AgentRepr, AgentState, Descriptor, DescriptorRepr, Header, HostRepr, HostState,
    DESCRIPTOR_LEN, DOORBELLS_LEN,
};
use bpnet_contract::ring::{self, Entries};
use bpnet_contract::status::{self, compl_flags, Completion, COMPLETION_LEN};
use bpnet_contract::{notify, shared, Error};

/// The host's fields after its state byte (which it writes alone, last): mtu, status_block_addr,
/// host_features, host_generation.
const HOST_FIELDS: core::ops::Range<usize> = field::header::MTU..bar::HEADER_LEN;
// `rx_used_event` and `tx_used_event` are adjacent, so both go in one posted write.
const _: () = assert!(field::doorbells::TX_USED_EVENT == field::doorbells::RX_USED_EVENT + 4);
/// An event index this far ahead of the consumer is never passed while a ring's worth of entries is in
/// flight: the agent's interrupts stay off until the host asks again.
const FAR: u32 = 1 << 31;
/// A host access across PCI that reaches nothing on the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAccessError {
    pub pci_addr: u64,
    pub len: usize,
    pub reason: String,
}

impl fmt::Display for HostAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host access of {} bytes at PCI address {:#010x}: {}", self.len, self.pci_addr, self.reason)
    }
}

impl std::error::Error for HostAccessError {}

/// The host's view of one agent on the bus: what the kernel module's bus personality provides.
pub trait Backplane {
    /// Read `buf.len()` bytes at `offset` in the agent's BAR (a stalling read across the bus).
    fn bar_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), HostAccessError>;
    /// Posted write of `data` at `offset` in the agent's BAR.
    fn bar_write(&mut self, offset: usize, data: &[u8]) -> Result<(), HostAccessError>;
    /// Write IDR: set doorbell `bits` towards the agent (posted).
    fn ring_doorbell(&mut self, bits: u32);
    /// The interrupt line from the agent (a wire: no bus access).
    fn interrupt_asserted(&self) -> bool;
    /// Read ODR, the doorbell bits the agent rang (a read across the bus).
    fn read_odr(&mut self) -> u32;
    /// Write ODR: 1s clear doorbell bits (posted).
    fn clear_odr(&mut self, bits: u32);
    /// The host reading its own RAM at bus address `addr`.
    fn read_ram(&self, addr: u64, buf: &mut [u8]) -> Result<(), HostAccessError>;
    /// The host writing its own RAM at bus address `addr`.
    fn write_ram(&mut self, addr: u64, data: &[u8]) -> Result<(), HostAccessError>;
    /// Reads across the bus so far (BAR and message-unit registers alike).
    fn bar_reads(&self) -> u64;
    /// Posted writes across the bus so far.
    fn bar_writes(&self) -> u64;
}

/// What the host asks for at set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Bus address of the host RAM the link may use (status block first): not 0, which the contract
    /// reserves for "no status block".
    pub host_ram_base: u64,
    /// Bytes of each TX frame buffer and RX buffer.
    pub buffer_len: u32,
    /// Feature bits the host would like; it accepts only those the agent also offers.
    pub features: u32,
    /// The MTU to ask for; anything but [`bar::MTU_DEFAULT`] needs [`feature::MTU`] on both sides.
    pub mtu: u16,
    /// Bumped at every host (re)initialisation, so the agent sees a reset.
    pub generation: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            host_ram_base: 0x10_0000,
            buffer_len: 2048,
            features: feature::ALL,
            mtu: bar::MTU_DEFAULT,
            generation: 1,
        }
    }
}

/// Why the link could not be brought up or had to be dropped.
#[derive(Debug)]
pub enum LinkError {
    /// A bus or host RAM access failed.
    Access(HostAccessError),
    /// The agent wrote something the contract refuses (header fields, an index, a completion).
    Contract(Error),
    /// The agent is not READY at set-up.
    NotReady(AgentState),
    /// Host RAM cannot hold the status block and buffers.
    HostRam { need: u64 },
    /// The status block and buffers would end above what the agent's DMA reaches (its `dma_reach`).
    Unreachable { need: u64, reach: u64 },
    /// The buffers cannot hold a frame of the MTU, or the MTU is not one the agent allows.
    Params(&'static str),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Access(e) => write!(f, "{e}"),
            LinkError::Contract(e) => write!(f, "agent broke the contract: {e}"),
            LinkError::NotReady(state) => write!(f, "agent is {state:?}, not Ready"),
            LinkError::HostRam { need } => write!(f, "host RAM too small: the link needs up to {need:#x}"),
            LinkError::Unreachable { need, reach } => {
                write!(f, "the link needs host RAM up to {need:#x}; the agent's DMA reaches only below {reach:#x}")
            }
            LinkError::Params(why) => write!(f, "bad parameters: {why}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<HostAccessError> for LinkError {
    fn from(e: HostAccessError) -> Self {
        LinkError::Access(e)
    }
}

impl From<Error> for LinkError {
    fn from(e: Error) -> Self {
        LinkError::Contract(e)
    }
}

/// What the link did, as the kernel module would count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// BAR reads of set-up (the header).
    pub setup_bar_reads: u64,
    /// Frames the agent confirmed sent, and those it refused.
    pub tx_done: u64,
    pub tx_errors: u64,
    /// Frames received, and RX completions refused (flagged ERROR, or failing the host's checks).
    pub rx_frames: u64,
    pub rx_errors: u64,
    /// IDR doorbells rung.
    pub doorbells: u64,
    /// Interrupts taken (each costs one ODR read).
    pub interrupts: u64,
    /// LINK doorbells: the agent's state changed without a status block to say so.
    pub link_events: u64,
    /// Header reads after LINK doorbells ([`HostLink::agent_state`]).
    pub slow_bar_reads: u64,
    /// Frames received with their TCP/UDP checksum left out (checksum offload).
    pub rx_csum_left_out: u64,
}

/// One agent's link, up: the host's rings, buffers and indexes.
#[derive(Debug)]
pub struct HostLink {
    agent: AgentRepr,
    /// The agent's `dma_reach`: every bus address handed over lies below it.
    dma_reach: u64,
    features: u32,
    mtu: u16,
    entries: Entries,
    buffer_len: u32,
    status_addr: u64,
    tx_base: u64,
    rx_base: u64,
    tx_prod: u32,
    tx_seen: u32,
    rx_prod: u32,
    rx_seen: u32,
    /// Frames posted and not yet completed, in TX index order: (id, length).
    tx_posted: VecDeque<(u16, u32)>,
    /// Buffers posted and not yet filled, in RX index order: their ids.
    rx_posted: VecDeque<u16>,
    next_id: u16,
    received: VecDeque<Vec<u8>>,
    /// With [`feature::RX_MULTI_BUFFER`]: the frame being reassembled from its buffers, and its check.
    chain: status::RxChain,
    partial: Vec<u8>,
    /// Whether the host wants an interrupt at the next completion (it is about to sleep) or none (it is
    /// polling).
    interrupts: bool,
    /// The (rx_used_event, tx_used_event) last written.
    published: Option<(u32, u32)>,
    /// The agent has written the status block since UP (it took the host's fields and went RUNNING).
    running: bool,
    /// A LINK doorbell came in since [`HostLink::take_link_event`] was last asked.
    link_event: bool,
    stats: Stats,
}

impl HostLink {
    /// Set-up, once the agent is READY: read the header and the agent info block (the only BAR
    /// reads), allocate and clear the status block below the agent's reach, write the host's fields
    /// and zero the doorbells with posted writes, then UP, then post every RX buffer.
    pub fn up(bp: &mut impl Backplane, params: Params) -> Result<HostLink, LinkError> {
        let reads_before = bp.bar_reads();
        let mut raw = [0u8; bar::HEADER_LEN];
        bp.bar_read(shared::HEADER_OFFSET, &mut raw)?;
        let header = Header::new_unchecked(&raw[..]);
        let agent = AgentRepr::parse(&header)?;
        let state = header.agent_state()?;
        if state != AgentState::Ready {
            return Err(LinkError::NotReady(state));
        }
        let mut info = [0u8; bar::AGENT_INFO_LEN];
        if header.version_minor() >= bar::VERSION_MINOR_AGENT_INFO {
            bp.bar_read(shared::AGENT_INFO_OFFSET, &mut info)?;
        }
        let dma_reach = bar::parse_dma_reach(header.version_minor(), &bar::AgentInfo::new_unchecked(&info[..]))?;
        let mut features = params.features & agent.features & feature::ALL;
        // Buffers below the agent's minimum cannot take part of a frame: each holds a whole one.
        if params.buffer_len < bar::RX_BUFFER_MIN {
            features &= !feature::RX_MULTI_BUFFER;
        }
        if params.mtu < bar::MTU_MIN || (features & feature::MTU == 0 && params.mtu != bar::MTU_DEFAULT) {
            return Err(LinkError::Params("MTU not allowed without the MTU feature"));
        }
        if features & feature::RX_MULTI_BUFFER == 0 && params.buffer_len < u32::from(params.mtu) + 14 {
            return Err(LinkError::Params("buffers smaller than the MTU plus the Ethernet header"));
        }
        if params.host_ram_base == 0 || !params.host_ram_base.is_multiple_of(bar::STATUS_BLOCK_ALIGN) {
            return Err(LinkError::Params("host RAM base must be non-zero and 64-byte aligned"));
        }
        let entries = agent.ring_entries;
        let block_len = status::block_len(entries) as u64;
        let pool = u64::from(entries.get()) * u64::from(params.buffer_len);
        let status_addr = params.host_ram_base;
        let tx_base = status_addr + block_len.next_multiple_of(bar::STATUS_BLOCK_ALIGN);
        let rx_base = tx_base + pool;
        let end = rx_base + pool;
        // The last byte must exist; an absent one means host RAM is too small.
        if bp.read_ram(end - 1, &mut [0u8]).is_err() {
            return Err(LinkError::HostRam { need: end });
        }
        if end > dma_reach {
            return Err(LinkError::Unreachable { need: end, reach: dma_reach });
        }
        bp.write_ram(status_addr, &vec![0u8; block_len as usize])?;

        let mut mine = [0u8; bar::HEADER_LEN];
        HostRepr { features, generation: params.generation, mtu: params.mtu, status_block_addr: status_addr }
            .emit(&mut Header::new_unchecked(&mut mine[..]));
        bp.bar_write(shared::HEADER_OFFSET + HOST_FIELDS.start, &mine[HOST_FIELDS])?;
        bp.bar_write(shared::DOORBELLS_OFFSET, &[0u8; DOORBELLS_LEN])?;
        // Last, alone and as one byte: an agent that sees UP sees everything before it.
        bp.bar_write(shared::HEADER_OFFSET + field::header::HOST_STATE, &[HostState::Up as u8])?;

        let mut link = HostLink {
            agent,
            dma_reach,
            features,
            mtu: params.mtu,
            entries,
            buffer_len: params.buffer_len,
            status_addr,
            tx_base,
            rx_base,
            tx_prod: 0,
            tx_seen: 0,
            rx_prod: 0,
            rx_seen: 0,
            tx_posted: VecDeque::new(),
            rx_posted: VecDeque::new(),
            next_id: 0,
            received: VecDeque::new(),
            chain: status::RxChain::new(),
            partial: Vec::new(),
            interrupts: false,
            published: None,
            running: false,
            link_event: false,
            stats: Stats { setup_bar_reads: bp.bar_reads() - reads_before, ..Stats::default() },
        };
        link.publish_events(bp)?;
        link.fill_rx(bp)?;
        Ok(link)
    }

    /// Take the link down (before a re-initialisation, an MTU change or unloading): `host_state` DOWN
    /// and a doorbell. The host's RAM stays the agent's until the header shows it left RUNNING
    /// ([`HostLink::agent_state`]); the owner of the link waits for that and brings a new link up.
    pub fn down(self, bp: &mut impl Backplane) -> Result<(), LinkError> {
        bp.bar_write(shared::HEADER_OFFSET + field::header::HOST_STATE, &[HostState::Down as u8])?;
        bp.ring_doorbell(notify::WORK);
        Ok(())
    }

    /// The agent's half of the header as read at set-up.
    pub fn agent(&self) -> &AgentRepr {
        &self.agent
    }
    /// The agent's published `dma_reach`, as read at set-up.
    pub fn dma_reach(&self) -> u64 {
        self.dma_reach
    }
    /// The features both sides agreed on.
    pub fn features(&self) -> u32 {
        self.features
    }
    pub fn mac(&self) -> [u8; 6] {
        self.agent.mac
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// The agent has answered UP through the status block (it is RUNNING).
    pub fn is_running(&self) -> bool {
        self.running
    }
    /// Whether a LINK doorbell came in since the last call: the agent's state changed on its own (it was
    /// reset, or broke the link) and the header must be read.
    pub fn take_link_event(&mut self) -> bool {
        std::mem::take(&mut self.link_event)
    }

    /// The agent's state and generation, read from the header through the BAR: the slow path after a
    /// LINK doorbell.
    pub fn agent_state(&mut self, bp: &mut impl Backplane) -> Result<(AgentState, u32), LinkError> {
        let mut raw = [0u8; bar::HEADER_LEN];
        bp.bar_read(shared::HEADER_OFFSET, &mut raw)?;
        self.stats.slow_bar_reads += 1;
        let header = Header::new_unchecked(&raw[..]);
        Ok((header.agent_state()?, header.agent_generation()))
    }

    /// TX descriptors the host can still post before the ring is full.
    pub fn tx_room(&self) -> u32 {
        self.entries.get() - self.tx_in_flight()
    }

    /// TX frames posted and not yet completed.
    pub fn tx_in_flight(&self) -> u32 {
        self.tx_prod.wrapping_sub(self.tx_seen)
    }

    /// Ask for an interrupt at the next completion (about to sleep) or for none (polling). Takes effect
    /// with the next [`HostLink::poll`].
    pub fn set_interrupts(&mut self, on: bool) {
        self.interrupts = on;
    }

    /// Queue `frame` for the agent. `Ok(false)`: the TX ring is full, try after a poll.
    pub fn send(&mut self, bp: &mut impl Backplane, frame: &[u8]) -> Result<bool, LinkError> {
        let max = (u32::from(self.mtu) + 14).min(self.buffer_len) as usize;
        if frame.is_empty() || frame.len() > max {
            return Err(LinkError::Params("frame empty or longer than the MTU allows"));
        }
        if self.tx_in_flight() == self.entries.get() {
            return Ok(false);
        }
        let slot = ring::slot(self.tx_prod, self.entries);
        let addr = self.tx_base + slot as u64 * u64::from(self.buffer_len);
        bp.write_ram(addr, frame)?;
        let id = self.take_id();
        // frame.len() <= buffer_len, a u32.
        let len = frame.len() as u32;
        // With checksum offload the host's stack leaves TCP/UDP checksums out, and says so.
        let flags = if self.features & feature::CSUM_OFFLOAD != 0 && is_ipv4_tcp_udp(frame) {
            bar::desc_flags::NEEDS_CSUM
        } else {
            0
        };
        self.write_descriptor(bp, self.agent.layout.tx_ring, self.tx_prod, DescriptorRepr { addr, len, id, flags })?;
        self.tx_posted.push_back((id, len));
        let old = self.tx_prod;
        self.tx_prod = self.tx_prod.wrapping_add(1);
        bp.bar_write(shared::DOORBELLS_OFFSET + field::doorbells::TX_PROD, &self.tx_prod.to_le_bytes())?;
        let event = self.status_header(bp)?.tx_prod_event();
        self.notify_if_wanted(bp, event, self.tx_prod, old);
        Ok(true)
    }

    /// The next frame received, in arrival order.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        self.received.pop_front()
    }

    /// Take what the agent reported: acknowledge its interrupt, reap TX and RX completions from host RAM,
    /// re-post RX buffers and publish the event indexes. Returns the number of completions reaped.
    pub fn poll(&mut self, bp: &mut impl Backplane) -> Result<usize, LinkError> {
        if bp.interrupt_asserted() {
            // The read says the interrupt is ours and, on a real bus, pushes the agent's DMA writes
            // ahead of it into host RAM; only then is the status block trusted.
            let odr = bp.read_odr();
            if odr & notify::STATUS != 0 {
                bp.clear_odr(notify::STATUS);
                self.stats.interrupts += 1;
            }
            if odr & notify::LINK != 0 {
                // The agent booted or left RUNNING on its own: the header says how (a slow-path
                // read, made by whoever owns the link: HostLink::agent_state).
                bp.clear_odr(notify::LINK);
                self.stats.link_events += 1;
                self.link_event = true;
            }
        }
        let mut raw = vec![0u8; status::block_len(self.entries)];
        bp.read_ram(self.status_addr, &mut raw)?;
        let header = status::Header::new_unchecked(&raw[..status::HEADER_LEN]);
        if header.interrupt_cause() != 0 {
            self.running = true;
        }
        let (tx_used, rx_used) = (header.tx_used(), header.rx_used());
        // The agent may complete only what was posted.
        let tx_new = ring::pending(tx_used, self.tx_seen, self.entries)?;
        ring::pending(self.tx_prod, tx_used, self.entries)?;
        let rx_new = ring::pending(rx_used, self.rx_seen, self.entries)?;
        ring::pending(self.rx_prod, rx_used, self.entries)?;
        let block = status::Block::new_unchecked(&raw[..], self.entries);

        for _ in 0..tx_new {
            let (id, len) = self.tx_posted.pop_front().expect("pending() bounds completions by posted frames");
            match block.tx_completion(self.tx_seen).check(len) {
                Ok(c) if c.id == id && c.flags & compl_flags::ERROR == 0 => self.stats.tx_done += 1,
                _ => self.stats.tx_errors += 1,
            }
            self.tx_seen = self.tx_seen.wrapping_add(1);
        }

        for _ in 0..rx_new {
            let id = self.rx_posted.pop_front().expect("pending() bounds completions by posted buffers");
            let completion = Completion::new_unchecked(
                &raw[status::rx_completion_offset(self.entries, self.rx_seen)..][..COMPLETION_LEN],
            );
            let multi = self.features & feature::RX_MULTI_BUFFER != 0;
            match completion.check(self.buffer_len) {
                Ok(c)
                    if c.id == id
                        && c.flags & compl_flags::ERROR == 0
                        && (multi || c.flags & compl_flags::MORE == 0) =>
                {
                    let at = self.partial.len();
                    self.partial.resize(at + c.len as usize, 0);
                    bp.read_ram(self.rx_buffer(self.rx_seen), &mut self.partial[at..])?;
                    match self.chain.push(c, u32::from(self.mtu) + 14) {
                        Ok(Some(frame)) if frame.len > 0 => {
                            if frame.flags & compl_flags::NEEDS_CSUM != 0 {
                                self.stats.rx_csum_left_out += 1;
                            }
                            self.received.push_back(core::mem::take(&mut self.partial));
                            self.stats.rx_frames += 1;
                        }
                        Ok(None) => {}
                        Ok(Some(_)) | Err(_) => {
                            self.partial.clear();
                            self.stats.rx_errors += 1;
                        }
                    }
                }
                _ => {
                    // A refused or failed buffer also ends a frame it interrupts.
                    if self.chain.abort() > 0 {
                        self.stats.rx_errors += 1;
                    }
                    self.partial.clear();
                    self.stats.rx_errors += 1;
                }
            }
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }

        if rx_new > 0 {
            self.fill_rx(bp)?;
        }
        self.publish_events(bp)?;
        Ok((tx_new + rx_new) as usize)
    }

    /// Post empty buffers until the RX ring is full, then move `rx_prod` once and ring if the agent asked.
    fn fill_rx(&mut self, bp: &mut impl Backplane) -> Result<(), LinkError> {
        let old = self.rx_prod;
        while self.rx_prod.wrapping_sub(self.rx_seen) < self.entries.get() {
            let id = self.take_id();
            let d = DescriptorRepr { addr: self.rx_buffer(self.rx_prod), len: self.buffer_len, id, flags: 0 };
            self.write_descriptor(bp, self.agent.layout.rx_ring, self.rx_prod, d)?;
            self.rx_posted.push_back(id);
            self.rx_prod = self.rx_prod.wrapping_add(1);
        }
        if self.rx_prod != old {
            bp.bar_write(shared::DOORBELLS_OFFSET + field::doorbells::RX_PROD, &self.rx_prod.to_le_bytes())?;
            let event = self.status_header(bp)?.rx_prod_event();
            self.notify_if_wanted(bp, event, self.rx_prod, old);
        }
        Ok(())
    }

    /// Write the used-event indexes: the next completion when the host wants interrupts, far ahead when
    /// it polls. A write is spent only when the published value no longer says what the host wants.
    fn publish_events(&mut self, bp: &mut impl Backplane) -> Result<(), LinkError> {
        let entries = self.entries.get();
        // Far ahead stays far enough while the agent cannot reach it: more than a ring beyond the
        // consumer and not behind it.
        let far = |event: u32, seen: u32| (entries + 1..=FAR).contains(&event.wrapping_sub(seen));
        let (events, stale) = if self.interrupts {
            let events = (self.rx_seen, self.tx_seen);
            (events, self.published != Some(events))
        } else {
            let events = (self.rx_seen.wrapping_add(FAR), self.tx_seen.wrapping_add(FAR));
            let stale = self.published.is_none_or(|(rx, tx)| !far(rx, self.rx_seen) || !far(tx, self.tx_seen));
            (events, stale)
        };
        if stale {
            let mut words = [0u8; 8];
            words[..4].copy_from_slice(&events.0.to_le_bytes());
            words[4..].copy_from_slice(&events.1.to_le_bytes());
            bp.bar_write(shared::DOORBELLS_OFFSET + field::doorbells::RX_USED_EVENT, &words)?;
            self.published = Some(events);
        }
        Ok(())
    }

    /// Ring IDR when the agent's published event lies between `old` and `new`, or always without the
    /// event index.
    fn notify_if_wanted(&mut self, bp: &mut impl Backplane, event: u32, new: u32, old: u32) {
        if self.features & feature::EVENT_INDEX == 0 || ring::need_event(event, new, old) {
            bp.ring_doorbell(notify::WORK);
            self.stats.doorbells += 1;
        }
    }

    fn status_header(&self, bp: &impl Backplane) -> Result<status::Header<[u8; status::HEADER_LEN]>, LinkError> {
        let mut raw = [0u8; status::HEADER_LEN];
        bp.read_ram(self.status_addr, &mut raw)?;
        Ok(status::Header::new_unchecked(raw))
    }

    fn write_descriptor(
        &self,
        bp: &mut impl Backplane,
        ring_offset: u32,
        index: u32,
        d: DescriptorRepr,
    ) -> Result<(), LinkError> {
        let mut raw = [0u8; DESCRIPTOR_LEN];
        d.emit(&mut Descriptor::new_unchecked(&mut raw[..]));
        let at = ring_offset as usize + ring::slot(index, self.entries) * DESCRIPTOR_LEN;
        bp.bar_write(at, &raw)?;
        Ok(())
    }

    fn rx_buffer(&self, index: u32) -> u64 {
        self.rx_base + ring::slot(index, self.entries) as u64 * u64::from(self.buffer_len)
    }

    fn take_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }
}

/// An IPv4 TCP or UDP frame: the ones whose checksum a stack leaves out under checksum offload.
pub fn is_ipv4_tcp_udp(frame: &[u8]) -> bool {
    frame.len() >= 34 && frame[12..14] == [0x08, 0x00] && matches!(frame[23], 6 | 17)
}
