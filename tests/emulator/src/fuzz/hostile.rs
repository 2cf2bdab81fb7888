//! The hostile host: performs actions against the firmware on the emulated board through the BAR,
//! host RAM and the doorbell, with valid traffic through the host model's link in between.

use std::ops::Range;

use bpnet_contract::bar::{
    self, counter, feature, field, AgentState, Descriptor, DescriptorRepr, HostState, COUNTERS_LEN, DESCRIPTOR_LEN,
    MTU_DEFAULT,
};
use bpnet_contract::ring::{self, Entries};
use bpnet_contract::status;
use bpnet_contract::{notify, put_le16, put_le32, put_le64, shared, EMULATED_BAR_ADDRESS};

use super::action::{Action, AddrKind, BadField};
use super::oracle::{verdict, Expect, Failure, Report, Span};
use super::traffic::exchange;
use super::*;
use crate::host::{self, HostLink, Params};
use crate::{Board, Config, Outcome};

/// The data path's DMA channel (the firmware's `ChainDma` uses channel 0).
pub(super) const DATA_CHANNEL: usize = 0;

/// The hostile host and the board it drives.
pub struct HostileHost {
    pub board: Board,
    pub(super) link: Option<HostLink>,
    /// The next host generation: every initialisation takes a new one, never reused.
    pub(super) generation: u32,
    /// The status block the agent was last configured with validly (what it writes, if RUNNING).
    pub(super) status_addr: u64,
    pub(super) mtu: u16,
    /// Host RAM as the host last wrote it (the canary, its own frames): compared outside `writable`.
    pub(super) shadow: Vec<u8>,
    /// Host RAM the agent may write: status blocks and buffers ever handed over.
    pub(super) writable: Vec<Range<u64>>,
    /// What was injected and predicted so far.
    pub(super) report: Report,
    /// The host wrote the log ring's header: the emulator's reader may no longer decode the log.
    pub(super) log_tampered: bool,
}

/// The canary byte at host RAM address `addr`: no run of zeros or of any DMA'd structure looks like it.
fn canary(addr: u64) -> u8 {
    let x = (addr as u32).wrapping_mul(0x9E37_79B1);
    (x >> 24) as u8 ^ 0xA5
}

impl HostileHost {
    /// Boot the firmware `elf` on a fresh board with canary-filled host RAM and bring the link up.
    pub fn boot(elf: &[u8]) -> Result<HostileHost, Failure> {
        let config = Config { host_ram_size: HOST_RAM_SIZE, ..Config::default() };
        let mut board = Board::new(config).map_err(|e| setup_failure(format!("board: {e}")))?;
        board.load_elf(elf).map_err(|e| setup_failure(format!("firmware does not load: {e}")))?;
        let shadow: Vec<u8> = (0..HOST_RAM_SIZE).map(canary).collect();
        board.write_host_ram(0, &shadow).map_err(|e| setup_failure(format!("canary: {e}")))?;
        let mut host = HostileHost {
            board,
            link: None,
            generation: 1,
            status_addr: LINK_BASE,
            mtu: MTU_DEFAULT,
            shadow,
            writable: Vec::new(),
            report: Report::default(),
            log_tampered: false,
        };
        let params = host.next_params();
        let mut link =
            host::connect(&mut host.board, params, 500).map_err(|e| host.fail(None, format!("boot: {e}")))?;
        host.link_region(&link);
        host::run_until(&mut host.board, &mut link, |l| l.is_running(), ANSWER_STEPS)
            .map_err(|e| host.fail(None, format!("first link up: {e}")))?;
        if link.agent().ring_entries.get() != RING_ENTRIES {
            return Err(host.fail(None, format!("ring of {} entries", link.agent().ring_entries.get())));
        }
        if link.dma_reach() != DMA_REACH {
            return Err(host.fail(None, format!("the agent publishes a DMA reach of {:#x}", link.dma_reach())));
        }
        host.link = Some(link);
        host.report.reinits += 1;
        // The agent has an address (and the host's MAC) before the hostile host starts.
        host.exchange(false, 0).map_err(|e| host.fail(None, format!("first ARP exchange: {e}")))?;
        Ok(host)
    }

    fn next_params(&mut self) -> Params {
        self.generation = self.generation.wrapping_add(1);
        self.status_addr = LINK_BASE;
        self.mtu = MTU_DEFAULT;
        Params { host_ram_base: LINK_BASE, generation: self.generation, ..Params::default() }
    }

    /// The link's status block and buffers: handed to the agent.
    fn link_region(&mut self, link: &HostLink) {
        let entries = link.agent().ring_entries;
        let block = (status::block_len(entries) as u64).next_multiple_of(bar::STATUS_BLOCK_ALIGN);
        let end = LINK_BASE + block + 2 * u64::from(entries.get()) * u64::from(Params::default().buffer_len);
        self.allow(LINK_BASE..end);
    }

    fn allow(&mut self, range: Range<u64>) {
        let range = range.start.min(HOST_RAM_SIZE)..range.end.min(HOST_RAM_SIZE);
        if !range.is_empty() && !self.writable.iter().any(|r| r.start <= range.start && range.end <= r.end) {
            self.writable.push(range);
        }
    }

    fn context(&self) -> String {
        let console = String::from_utf8_lossy(self.board.console());
        let tail: String = console.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
        let logs = self.board.log_lines();
        let logs = logs[logs.len().saturating_sub(12)..].join("\n");
        format!("console (end):\n{tail}\nlog (end):\n{logs}")
    }

    fn fail(&self, action: Option<usize>, what: String) -> Failure {
        Failure { action, what, context: self.context() }
    }

    // ---- the bus, as the hostile host uses it ----

    fn bar_write(&mut self, offset: usize, data: &[u8]) -> Result<(), String> {
        let pci = EMULATED_BAR_ADDRESS + offset as u32;
        self.board.host_bar_write(pci, data).map_err(|e| format!("BAR write: {e}"))
    }

    pub(super) fn bar_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), String> {
        let pci = EMULATED_BAR_ADDRESS + offset as u32;
        self.board.host_bar_read(pci, buf).map_err(|e| format!("BAR read: {e}"))
    }

    fn write_host(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.board.write_host_ram(addr, data).map_err(|e| format!("host RAM: {e}"))?;
        self.shadow[addr as usize..addr as usize + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn doorbell(&mut self) {
        self.board.host_ring_doorbell(notify::WORK);
    }

    /// Run the agent until it sleeps with nothing to do: a slice that ends idle, or one it spent mostly
    /// asleep waiting for a timer. Anything else than running or sleeping is a failure; so is never
    /// sleeping.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..SETTLE_SLICES {
            let (start, skipped) = (self.board.instructions(), self.board.skipped_instructions());
            self.board.set_max_instructions(Some(start + SETTLE_SLICE));
            match self.board.run() {
                Outcome::Idle { .. } => return Ok(()),
                Outcome::InstructionLimit => {
                    if self.board.skipped_instructions() - skipped > SETTLE_SLICE / 2 {
                        return Ok(());
                    }
                }
                other => return Err(format!("board stopped: {other}")),
            }
        }
        Err(format!(
            "hang: the agent did not go back to sleep within {} instructions",
            SETTLE_SLICES as u64 * SETTLE_SLICE
        ))
    }

    /// Run `n` instructions (or less if the agent idles first).
    fn run_for(&mut self, n: u64) -> Result<(), String> {
        self.board.set_max_instructions(Some(self.board.instructions() + n));
        match self.board.run() {
            Outcome::Idle { .. } | Outcome::InstructionLimit => Ok(()),
            other => Err(format!("board stopped: {other}")),
        }
    }

    /// The agent's consumer indexes, from the status block it last wrote (`tx_prod_event` and
    /// `rx_prod_event` are what it has taken: virtio's avail_event).
    fn consumers(&self) -> Result<(u32, u32), String> {
        let mut raw = [0u8; status::HEADER_LEN];
        if self.status_addr + status::HEADER_LEN as u64 > HOST_RAM_SIZE {
            return Ok((0, 0));
        }
        self.board.read_host_ram(self.status_addr, &mut raw).map_err(|e| format!("status block: {e}"))?;
        let h = status::Header::new_unchecked(&raw[..]);
        Ok((h.tx_prod_event(), h.rx_prod_event()))
    }

    fn write_descriptor(&mut self, ring_offset: usize, index: u32, d: DescriptorRepr) -> Result<(), String> {
        let mut raw = [0u8; DESCRIPTOR_LEN];
        d.emit(&mut Descriptor::new_unchecked(&mut raw[..]));
        let entries = Entries::new(RING_ENTRIES).map_err(|e| e.to_string())?;
        self.bar_write(ring_offset + ring::slot(index, entries) * DESCRIPTOR_LEN, &raw)
    }

    /// The host's fields and `host_state` UP last, as [`HostLink::up`] writes them.
    fn write_host_fields(&mut self, mtu: u16, addr: u64, features: u32, generation: u32) -> Result<(), String> {
        // Any values, valid or not, at the contract's offsets: the fields after `host_state`.
        let mut raw = [0u8; bar::HEADER_LEN];
        put_le16(&mut raw, field::header::MTU, mtu);
        put_le64(&mut raw, field::header::STATUS_BLOCK_ADDR, addr);
        put_le32(&mut raw, field::header::HOST_FEATURES, features);
        put_le32(&mut raw, field::header::HOST_GENERATION, generation);
        self.bar_write(shared::HEADER_OFFSET + field::header::MTU, &raw[field::header::MTU..])
    }

    /// Valid traffic needs the link: set it up again (DOWN, a doorbell, the agent READY, then a new
    /// generation through [`HostLink::up`]) if the hostile host broke it.
    fn ensure_link(&mut self) -> Result<(), String> {
        if self.link.is_some() {
            return Ok(());
        }
        self.bar_write(HOST_STATE, &[HostState::Down as u8])?;
        self.doorbell();
        self.settle()?;
        let params = self.next_params();
        let mut link = HostLink::up(&mut self.board, params).map_err(|e| format!("host re-initialisation: {e}"))?;
        self.link_region(&link);
        self.doorbell();
        host::run_until(&mut self.board, &mut link, |l| l.is_running(), ANSWER_STEPS)
            .map_err(|e| format!("link not RUNNING after re-initialisation: {e}"))?;
        self.link = Some(link);
        self.report.reinits += 1;
        Ok(())
    }

    /// The host wrote its state behind this model's back (through [`HostileHost::board`]): the next
    /// traffic sets the link up again.
    pub fn forget_link(&mut self) {
        self.link = None;
    }

    /// An ARP exchange or a ping through the link; the answer must come back.
    fn exchange(&mut self, ping: bool, payload: u16) -> Result<(), String> {
        self.ensure_link()?;
        let mut link = self.link.take().expect("ensure_link leaves a link");
        let result = exchange(&mut self.board, &mut link, ping, payload);
        if result.is_ok() {
            self.link = Some(link);
            self.report.exchanges += 1;
        }
        result
    }

    /// Perform `actions`, then the recovery, checking the invariants.
    pub fn run(mut self, actions: &[Action]) -> Result<Report, Failure> {
        self.report.actions = actions.len();
        for (i, action) in actions.iter().enumerate() {
            self.act(action).map_err(|what| self.fail(Some(i), format!("{action:?}: {what}")))?;
            let dma = &self.board.dma_stats()[DATA_CHANNEL];
            if let Some(e) = &dma.last_error {
                if !e.contains("beyond host RAM") {
                    return Err(self.fail(Some(i), format!("{action:?}: DMA outside the windows: {e}")));
                }
            }
        }
        self.recover().map_err(|what| self.fail(None, format!("recovery: {what}")))?;
        self.check_canary().map_err(|what| self.fail(None, what))?;
        let dma = self.board.dma_stats()[DATA_CHANNEL].clone();
        if dma.errors < self.report.provoked_transfer_errors {
            return Err(self.fail(None, format!("{} transfer errors, fewer than provoked", dma.errors)));
        }
        let end = self.snapshot().map_err(|what| self.fail(None, what))?;
        let totals = [
            ("bad_descriptors", counter::BAD_DESCRIPTORS, self.report.bad_descriptors),
            ("bad_indexes", counter::BAD_INDEXES, self.report.bad_indexes),
            ("bad_host_config", counter::BAD_HOST_CONFIG, self.report.bad_host_config),
        ];
        for (name, slot, injected) in totals {
            if u64::from(end.counters[slot]) < injected {
                return Err(self.fail(None, format!("{name} is {}, {injected} injected", end.counters[slot])));
            }
        }
        self.report.counters = bar::COUNTERS.iter().map(|&(name, slot)| (name, end.counters[slot])).collect();
        Ok(self.report)
    }

    /// A fresh host initialisation must bring the link back, and traffic must flow.
    fn recover(&mut self) -> Result<(), String> {
        self.link = None;
        self.ensure_link()?;
        self.exchange(false, 0)?;
        self.exchange(true, 56)?;
        self.exchange(true, 1472)
    }

    fn act(&mut self, action: &Action) -> Result<(), String> {
        match action {
            Action::Traffic { ping, payload } => self.exchange(*ping, *payload),
            Action::Run(n) => self.run_for(u64::from(*n)),
            Action::Doorbell(bits) => {
                self.board.host_ring_doorbell(*bits);
                self.run_for(SETTLE_SLICE)
            }
            Action::EventIndexes { rx_used_event, tx_used_event } => {
                self.link = None;
                let mut words = [0u8; 8];
                words[..4].copy_from_slice(&rx_used_event.to_le_bytes());
                words[4..].copy_from_slice(&tx_used_event.to_le_bytes());
                self.bar_write(USED_EVENTS, &words)?;
                self.run_for(SETTLE_SLICE)
            }
            Action::Scribble { offset, bytes, doorbell } => {
                self.link = None;
                let at = host_writable(*offset, bytes.len());
                self.bar_write(at, bytes)?;
                if *doorbell {
                    self.doorbell();
                }
                self.run_for(SETTLE_SLICE)
            }
            Action::Torn { offset, bytes, split, pause } => {
                self.link = None;
                let at = host_writable(*offset, bytes.len());
                let split = usize::from(*split) % bytes.len();
                self.bar_write(at, &bytes[..split])?;
                self.doorbell();
                self.run_for(u64::from(*pause % 200_000))?;
                self.bar_write(at + split, &bytes[split..])?;
                self.doorbell();
                self.run_for(SETTLE_SLICE)
            }
            Action::LogRingHeader { offset, bytes } => {
                let at = LOG_RING_HEADER.start + usize::from(*offset) % LOG_RING_HEADER.len();
                let len = bytes.len().min(LOG_RING_HEADER.end - at);
                self.bar_write(at, &bytes[..len])?;
                self.log_tampered = true;
                // Anything the firmware logs from here writes the ring: a state change does.
                self.link = None;
                self.bar_write(HOST_STATE, &[HostState::Down as u8])?;
                self.doorbell();
                self.settle()
            }
            checked => self.checked(checked),
        }
    }

    /// Flush, snapshot, act, settle, compare.
    fn checked(&mut self, action: &Action) -> Result<(), String> {
        self.doorbell();
        self.settle()?;
        let before = self.snapshot()?;
        let expect = self.inject(action, before.state)?;
        self.doorbell();
        self.settle()?;
        let after = self.snapshot()?;
        self.compare(action, &before, &after, &expect)?;
        self.report.checked += 1;
        Ok(())
    }

    /// Do `action` and say what the agent, `state` before, must make of it.
    fn inject(&mut self, action: &Action, state: AgentState) -> Result<Expect, String> {
        let running = state == AgentState::Running;
        let mut expect = Expect::nothing();
        match *action {
            Action::TxDescriptor { addr, raw_addr, len, id, flags } => {
                self.link = None;
                let addr = addr.pick(raw_addr, u64::from(len), SCRATCH_TX);
                let (tx_cons, rx_cons) = self.consumers()?;
                self.write_descriptor(shared::TX_RING_OFFSET, tx_cons, DescriptorRepr { addr, len, id, flags })?;
                // No RX buffer posted: frames the agent still owes the host stay queued, so the chain
                // carries only this descriptor.
                self.bar_write(RX_PROD, &rx_cons.to_le_bytes())?;
                self.bar_write(TX_PROD, &tx_cons.wrapping_add(1).to_le_bytes())?;
                if running {
                    // The contract bounds a frame by the MTU plus the Ethernet header; the agent may
                    // bound it further by its buffers (at least 2 KiB: the default MTU's frame fits).
                    let max_frame = u64::from(self.mtu) + 14;
                    let max_len = Span(max_frame.min(2048), max_frame);
                    let (refused, faults) = verdict(addr, len, flags, max_len, Span::exactly(u64::from(len)));
                    expect.bad_descriptors = refused;
                    expect.tx_dma_errors = faults;
                    expect.transfer_errors = faults;
                    self.report.bad_descriptors += refused.0;
                    self.report.provoked_transfer_errors += faults.0;
                    expect.state = Some(AgentState::Running);
                }
            }
            Action::RxDescriptor { addr, raw_addr, len, id, flags } => {
                self.link = None;
                let addr = addr.pick(raw_addr, u64::from(len), SCRATCH_RX);
                let (tx_cons, rx_cons) = self.consumers()?;
                // The agent's stack answers an ARP request with a frame for the host.
                let request = arp_request();
                self.write_host(SCRATCH_TX, &request)?;
                let d = DescriptorRepr { addr: SCRATCH_TX, len: request.len() as u32, id: 0x7a7a, flags: 0 };
                self.write_descriptor(shared::TX_RING_OFFSET, tx_cons, d)?;
                self.write_descriptor(shared::RX_RING_OFFSET, rx_cons, DescriptorRepr { addr, len, id, flags })?;
                self.bar_write(RX_PROD, &rx_cons.wrapping_add(1).to_le_bytes())?;
                self.bar_write(TX_PROD, &tx_cons.wrapping_add(1).to_le_bytes())?;
                // The host handed this buffer over: the agent may write it.
                if let Some(end) = addr.checked_add(u64::from(len)) {
                    if addr < DMA_REACH && end <= DMA_REACH {
                        self.allow(addr..end);
                    }
                }
                if running {
                    // The RX check is against the length of the frame the agent sends next, which
                    // its stack decides: this ARP reply, or one queued by an earlier action, or a
                    // frame of its own (DHCP discovery), anything from an ARP reply to the MTU.
                    let frame = Span(MIN_FRAME, u64::from(self.mtu) + 14);
                    let (refused, faults) = verdict(addr, len, flags, Span(u64::MAX, u64::MAX), frame);
                    let short = Span(u64::from(u64::from(len) < frame.0), u64::from(u64::from(len) < frame.1));
                    let refused = Span(refused.0.max(short.0), refused.1.max(short.1));
                    let faults = if refused.0 == 1 { Span::ZERO } else { Span(faults.0 * (1 - refused.1), faults.1) };
                    expect.bad_descriptors = refused;
                    expect.rx_dma_errors = faults;
                    expect.transfer_errors = faults;
                    // The ARP request's TX copy shares the chain with the RX copy when a reply from an
                    // earlier action was queued: a transfer error then fails the TX frame too.
                    expect.tx_dma_errors = Span(0, faults.1);
                    self.report.bad_descriptors += refused.0;
                    self.report.provoked_transfer_errors += faults.0;
                    expect.state = Some(AgentState::Running);
                }
            }
            Action::ProducerIndex { rx, ahead } => {
                self.link = None;
                let (tx_cons, rx_cons) = self.consumers()?;
                let (at, cons) = if rx { (RX_PROD, rx_cons) } else { (TX_PROD, tx_cons) };
                self.bar_write(at, &cons.wrapping_add(ahead).to_le_bytes())?;
                if running && ahead > RING_ENTRIES {
                    expect.bad_indexes = Span::exactly(1);
                    expect.state = Some(AgentState::Broken);
                    self.report.bad_indexes += 1;
                } else if running {
                    // Within a ring: whatever the slots hold is consumed, each refused one counted.
                    expect.bad_descriptors = Span(0, u64::from(ahead));
                    expect.tx_dma_errors = Span(0, u64::from(ahead));
                    expect.rx_dma_errors = Span(0, u64::from(ahead) + 2);
                    expect.transfer_errors = Span(0, u64::from(ahead) + 2);
                }
            }
            Action::HostStateByte(value) => {
                self.link = None;
                self.bar_write(HOST_STATE, &[value])?;
                if value > HostState::Up as u8 && state != AgentState::Broken {
                    expect.bad_host_config = Span::exactly(1);
                    expect.state = Some(AgentState::Broken);
                    self.report.bad_host_config += 1;
                } else if value == HostState::Down as u8 {
                    expect.state = Some(AgentState::Ready);
                } else if value == HostState::Up as u8 && state == AgentState::Ready {
                    // UP again without a new set-up: the agent starts a connection with its consumers
                    // at zero against whatever the producer indexes and rings hold. A host that does
                    // this gets what it wrote: stale descriptors consumed or refused, or a bad index.
                    let ring = 2 * u64::from(RING_ENTRIES);
                    expect.bad_descriptors = Span(0, ring);
                    expect.bad_indexes = Span(0, 1);
                    expect.tx_dma_errors = Span(0, ring);
                    expect.rx_dma_errors = Span(0, ring + 2);
                    expect.transfer_errors = Span(0, ring + 2);
                }
            }
            Action::BadConfig(field) => {
                self.link = None;
                self.generation = self.generation.wrapping_add(1);
                let (mut mtu, mut addr, mut features, mut host_state) =
                    (MTU_DEFAULT, LINK_BASE, feature::ALL, HostState::Up as u8);
                match field {
                    BadField::HostState(s) => host_state = s.max(2),
                    BadField::Features(f) => features = f | 1 << 31,
                    BadField::MtuTooSmall(m) => mtu = m.min(bar::MTU_MIN - 1),
                    BadField::MtuWithoutFeature(m) => {
                        features = feature::ALL & !feature::MTU;
                        mtu = if m == MTU_DEFAULT { MTU_DEFAULT + 1 } else { m };
                    }
                    BadField::StatusBlockNull => addr = 0,
                    BadField::StatusBlockMisaligned(a) => addr = a | 1 << (a.trailing_zeros() % 6),
                    BadField::StatusBlockOutside(a) => addr = (a | DMA_REACH) & !63,
                }
                self.bar_write(HOST_STATE, &[HostState::Down as u8])?;
                self.write_host_fields(mtu, addr, features, self.generation)?;
                self.bar_write(HOST_STATE, &[host_state])?;
                expect.bad_host_config = Span::exactly(1);
                expect.state = Some(AgentState::Broken);
                self.report.bad_host_config += 1;
            }
            Action::Reinit { addr, raw_addr, mtu_feature } => {
                self.link = None;
                self.generation = self.generation.wrapping_add(1);
                let entries = Entries::new(RING_ENTRIES).map_err(|e| e.to_string())?;
                let len = status::block_len(entries) as u64;
                let base = match addr {
                    AddrKind::BeyondHostRam => AddrKind::BeyondHostRam,
                    AddrKind::HostRam => AddrKind::HostRam,
                    _ => AddrKind::Scratch,
                };
                let at = base.pick(raw_addr, len, SCRATCH_RX) & !(bar::STATUS_BLOCK_ALIGN - 1);
                let at = at.max(bar::STATUS_BLOCK_ALIGN);
                // Its RX buffers are HostLink's (Params::default), below RX_BUFFER_MIN: each holds a
                // whole frame, so RX_MULTI_BUFFER is not accepted, as HostLink::up does not.
                let whole = feature::ALL & !feature::RX_MULTI_BUFFER;
                let (mtu, features) = if mtu_feature {
                    (bar::MTU_MIN + (raw_addr as u16) % 9000, whole)
                } else {
                    (MTU_DEFAULT, whole & !feature::MTU)
                };
                self.bar_write(HOST_STATE, &[HostState::Down as u8])?;
                self.write_host_fields(mtu, at, features, self.generation)?;
                // A new connection starts its indexes at zero, as HostLink::up writes them.
                self.bar_write(shared::DOORBELLS_OFFSET, &[0u8; bar::DOORBELLS_LEN])?;
                self.bar_write(HOST_STATE, &[HostState::Up as u8])?;
                self.status_addr = at;
                self.mtu = mtu;
                self.allow(at..at + len);
                if at + len > HOST_RAM_SIZE {
                    // The LINK status DMA is master-aborted, retried once with error completions,
                    // aborted again: the status block is unreachable and the link breaks.
                    expect.rx_dma_errors = Span::exactly(2);
                    expect.transfer_errors = Span::exactly(2);
                    expect.state = Some(AgentState::Broken);
                    self.report.provoked_transfer_errors += 2;
                } else {
                    expect.state = Some(AgentState::Running);
                }
            }
            _ => unreachable!("chaos actions are not checked"),
        }
        Ok(expect)
    }
}

/// An offset in the BAR the host may write: its header fields, the doorbells, the descriptor rings, or
/// space no one uses; never the agent's fields, the counters or the log ring.
fn host_writable(offset: u32, len: usize) -> usize {
    const AREAS: [(usize, usize); 6] = [
        (HOST_STATE, bar::HEADER_LEN),
        (shared::DOORBELLS_OFFSET, shared::DOORBELLS_OFFSET + bar::DOORBELLS_LEN),
        (shared::TX_RING_OFFSET, shared::TX_RING_OFFSET + RING_ENTRIES as usize * DESCRIPTOR_LEN),
        (shared::RX_RING_OFFSET, shared::RX_RING_OFFSET + RING_ENTRIES as usize * DESCRIPTOR_LEN),
        (shared::COUNTERS_OFFSET + COUNTERS_LEN, shared::LOG_RING_OFFSET),
        (shared::LOG_RING_OFFSET + shared::LOG_RING_LEN, shared::LEN),
    ];
    let (start, end) = AREAS[(offset as usize & 7) % AREAS.len()];
    let room = (end - start).saturating_sub(len);
    start + (offset as usize >> 3) % (room + 1)
}
