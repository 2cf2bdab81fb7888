//! A hostile host for the agent firmware's data path: turns arbitrary bytes (or a list of [`Action`]s)
//! into BAR writes, host RAM writes and doorbells against the real firmware on the emulated board, mixed
//! with valid traffic through [`HostLink`], and checks what the contract promises about hostile input
//! ("Not trusted" in the design): the agent does not halt, fault or stop on an unmodelled access, does not
//! hang, never lets its DMA reach outside its RAM and the outbound window, never writes host RAM outside
//! the status block and the buffers the host posted, and counts every refused value in the BAR counters.
//!
//! How counting is checked. The firmware sleeps until a doorbell, so a write the agent has not been rung
//! for may be seen at any later wake-up. A *checked* action therefore first flushes (rings the agent and
//! runs it until it sleeps), takes the counters, the agent state and the DMA statistics, acts, rings,
//! runs until the agent sleeps again and compares the differences with what the ring engine's rules
//! predict for that input and that starting state (a bad descriptor counts once when the agent consumes
//! it; a bad producer index counts once and breaks the link, and only a RUNNING agent looks at indexes; a
//! refused host configuration counts once per host generation). *Chaos* actions (scribbles, torn updates,
//! event indexes, stray doorbells, runs of arbitrary length) are checked only by the invariants.
//!
//! Host RAM is small ([`HOST_RAM_SIZE`]) and filled with a canary pattern, so the outbound window (256 MiB)
//! reaches past it: a descriptor inside the window but beyond host RAM is one the agent cannot know to be
//! bad, and its DMA ends in a PCI master abort (a transfer error the test provokes on purpose and
//! predicts). Every other transfer error is a firmware bug: a bad address must be refused before the DMA.
//!
//! Recovery: after the actions, a fresh host initialisation (new generation, valid fields) must bring the
//! link back to RUNNING and an ARP exchange and a ping must go through [`HostLink`].

use std::fmt;
use std::ops::Range;

use bpnet_contract::bar::{
    self, counter, desc_flags, feature, field, AgentState, Counters, Descriptor, DescriptorRepr, HostState,
    COUNTERS_LEN, COUNTER_SLOTS, DESCRIPTOR_LEN, MTU_DEFAULT,
};
use bpnet_contract::ring::{self, Entries};
use bpnet_contract::status;
use bpnet_contract::{logring, notify, put_le16, put_le32, put_le64, shared, EMULATED_BAR_ADDRESS, HOST_WINDOW_BYTES};
use bpnet_test_support::frames;

use crate::host::{self, HostLink, Params, RunError};
use crate::{Board, Config, Outcome};

/// Host RAM of a hostile run: the link's status block and buffers, scratch space and canary, and small
/// enough to check byte by byte after every input. The outbound window reaches far beyond it.
pub const HOST_RAM_SIZE: u64 = 4 << 20;
/// Where [`HostLink`] keeps its status block and buffers ([`Params::host_ram_base`]).
pub const LINK_BASE: u64 = 0x10_0000;
/// Host RAM the hostile host puts its own frames in (read by the agent's DMA only).
pub const SCRATCH_TX: u64 = 0x30_0000;
/// Host RAM the hostile host posts its own RX buffers in.
pub const SCRATCH_RX: u64 = 0x31_0000;
/// Bytes of each scratch area.
pub const SCRATCH_LEN: u64 = 0x1_0000;
/// Instructions per slice while waiting for the agent to go back to sleep: about 1 ms of virtual time.
const SETTLE_SLICE: u64 = 500_000;
/// Slices a settle may take before the agent counts as hung: 100 ms of virtual time without sleeping.
const SETTLE_SLICES: usize = 200;
/// Slices (of [`host::SLICE_INSTRUCTIONS`], less when the agent idles) to wait for an answer through
/// the link before asking again, and how often to ask.
const ANSWER_STEPS: usize = 100;
const ATTEMPTS: usize = 20;
/// The agent's and the host model's addresses (the firmware's static configuration).
const AGENT_IP: [u8; 4] = [10, 83, 49, 2];
const HOST_IP: [u8; 4] = [10, 83, 49, 1];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// BAR offsets of the header's `agent_state` byte, and of the host's state byte after it.
const AGENT_STATE: usize = shared::HEADER_OFFSET + field::header::AGENT_STATE;
const HOST_STATE: usize = shared::HEADER_OFFSET + field::header::HOST_STATE;
/// BAR offsets of the doorbell words; `rx_used_event` and `tx_used_event` go in one write.
const TX_PROD: usize = shared::DOORBELLS_OFFSET + field::doorbells::TX_PROD;
const RX_PROD: usize = shared::DOORBELLS_OFFSET + field::doorbells::RX_PROD;
const USED_EVENTS: usize = shared::DOORBELLS_OFFSET + field::doorbells::RX_USED_EVENT;
/// The log ring's header in the BAR: magic, capacity, head, generation.
const LOG_RING_HEADER: Range<usize> = shared::LOG_RING_OFFSET..shared::LOG_RING_OFFSET + logring::HEADER_LEN;
/// The shortest frame the agent's stack sends (an ARP reply, unpadded).
const MIN_FRAME: u64 = 42;
/// The ring size the firmware publishes (checked against the header at set-up).
const RING_ENTRIES: u32 = 256;

/// Which part of the bus a descriptor or status block address is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind {
    /// The hostile host's scratch area: valid.
    Scratch,
    /// Anywhere in host RAM, canary included (the host may post any of its RAM): valid.
    HostRam,
    /// Inside the outbound window, beyond host RAM: the agent cannot tell; its DMA is master-aborted.
    BeyondHostRam,
    /// Straddling the end of the outbound window or outside it: refused.
    OutsideWindow,
    /// Near 2^64: the range wraps; refused.
    Wrapping,
    /// Any value.
    Raw,
}

impl AddrKind {
    fn from_byte(b: u8) -> AddrKind {
        match b % 6 {
            0 => AddrKind::Scratch,
            1 => AddrKind::HostRam,
            2 => AddrKind::BeyondHostRam,
            3 => AddrKind::OutsideWindow,
            4 => AddrKind::Wrapping,
            _ => AddrKind::Raw,
        }
    }

    /// An address of this kind for `len` bytes, from the entropy in `raw`.
    pub fn pick(self, raw: u64, len: u64, scratch: u64) -> u64 {
        let len = len.min(SCRATCH_LEN);
        match self {
            AddrKind::Scratch => scratch + (raw % (SCRATCH_LEN - len + 1)),
            AddrKind::HostRam => raw % (HOST_RAM_SIZE - len + 1),
            AddrKind::BeyondHostRam => HOST_RAM_SIZE + raw % (HOST_WINDOW_BYTES - HOST_RAM_SIZE - len.max(1) + 1),
            AddrKind::OutsideWindow => HOST_WINDOW_BYTES - len.min(HOST_WINDOW_BYTES) + 1 + (raw >> 8),
            AddrKind::Wrapping => u64::MAX - (raw % 0x1_0000),
            AddrKind::Raw => raw,
        }
    }
}

/// A host configuration field made bad, for [`Action::BadConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadField {
    /// A `host_state` other than DOWN and UP.
    HostState(u8),
    /// Feature bits the agent never offered.
    Features(u32),
    /// An MTU below the minimum.
    MtuTooSmall(u16),
    /// An MTU other than the default without the MTU feature.
    MtuWithoutFeature(u16),
    /// A null status block.
    StatusBlockNull,
    /// A status block not 64-byte aligned.
    StatusBlockMisaligned(u64),
    /// A status block reaching outside the window or wrapping.
    StatusBlockOutside(u64),
}

/// One thing the hostile host does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Valid traffic through [`HostLink`] (set up again first if the hostile host broke it): an ARP
    /// exchange, or a ping with `payload` bytes. Checked: the answer must come.
    Traffic { ping: bool, payload: u16 },
    /// Checked. One TX descriptor at the agent's next slot, `tx_prod` one past the agent's consumer, a
    /// doorbell.
    TxDescriptor { addr: AddrKind, raw_addr: u64, len: u32, id: u16, flags: u16 },
    /// Checked. An ARP request by a valid TX descriptor, and one RX descriptor at the agent's next RX
    /// slot for the reply (or whatever frame the agent sends next), `rx_prod` one past the agent's
    /// consumer.
    RxDescriptor { addr: AddrKind, raw_addr: u64, len: u32, id: u16, flags: u16 },
    /// Checked. `tx_prod` (or `rx_prod`) set to the agent's consumer plus `ahead` (wrapping: a producer
    /// behind the consumer is `ahead` near 2^32).
    ProducerIndex { rx: bool, ahead: u32 },
    /// Checked. The host's state byte alone.
    HostStateByte(u8),
    /// Checked. A host re-initialisation (new generation) with one bad field.
    BadConfig(BadField),
    /// Checked. A valid host re-initialisation with the status block at an address of `addr` kind (only
    /// the kinds that can be valid are used; beyond host RAM the agent's status DMA is master-aborted).
    Reinit { addr: AddrKind, raw_addr: u64, mtu_feature: bool },
    /// Chaos. The used-event indexes.
    EventIndexes { rx_used_event: u32, tx_used_event: u32 },
    /// Chaos. A doorbell with any bits.
    Doorbell(u32),
    /// Chaos. `bytes` written in the host-writable BAR: the low 3 bits of `offset` choose the area
    /// (modulo 6: the host's header fields, the doorbells, the TX ring, the RX ring, the unused space
    /// after the counters, the unused space after the log ring), the rest the position in it;
    /// `doorbell` rings after.
    Scribble { offset: u32, bytes: Vec<u8>, doorbell: bool },
    /// Chaos. A multi-byte update at `offset` (as in [`Action::Scribble`]) torn in two: the first `split` bytes, the agent rung and
    /// run for `pause` instructions, then the rest.
    Torn { offset: u32, bytes: Vec<u8>, split: u8, pause: u32 },
    /// Chaos. The agent runs `instructions` with nothing new.
    Run(u32),
    /// Chaos, off unless [`Options::log_ring`]: bytes over the log ring's header (magic, capacity, head,
    /// generation), which sits in the BAR too.
    LogRingHeader { offset: u8, bytes: Vec<u8> },
}

/// What the interpreter may do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most actions decoded from one input.
    pub max_actions: usize,
    /// Decode [`Action::LogRingHeader`] too.
    pub log_ring: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_actions: 24, log_ring: false }
    }
}

/// Reads numbers from fuzz input; zeros once it runs out.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + usize::from(self.u8()) % max;
        (0..n).map(|_| self.u8()).collect()
    }
    /// A length that is often interesting: 0, tiny, around the MTU, around the buffer, or anything.
    fn len(&mut self) -> u32 {
        let raw = self.u32();
        match self.u8() % 6 {
            0 => 0,
            1 => raw % 64,
            2 => 1500 + raw % 40,
            3 => 2040 + raw % 16,
            4 => 60 + raw % 1454,
            _ => raw,
        }
    }
    /// An index distance: small (valid), just past a ring, near 2^31, or behind the consumer.
    fn ahead(&mut self) -> u32 {
        let raw = self.u32();
        match self.u8() % 5 {
            0 => raw % (RING_ENTRIES + 1),
            1 => RING_ENTRIES + 1 + raw % 16,
            2 => (1 << 31) + raw % 64,
            3 => 0u32.wrapping_sub(1 + raw % 64),
            _ => raw,
        }
    }
}

/// Turn fuzz input into actions. Every input is valid: the bytes only choose among actions and values.
pub fn decode(bytes: &[u8], options: Options) -> Vec<Action> {
    let mut input = Input { bytes, at: 0 };
    let mut actions = Vec::new();
    while !input.done() && actions.len() < options.max_actions {
        let kinds = if options.log_ring { 15 } else { 14 };
        let action = match input.u8() % kinds {
            0 => Action::Traffic { ping: input.u8() & 1 == 1, payload: input.u16() % 1473 },
            1 | 2 => Action::TxDescriptor {
                addr: AddrKind::from_byte(input.u8()),
                raw_addr: input.u64(),
                len: input.len(),
                id: input.u16(),
                flags: if input.u8() & 3 == 0 { input.u16() } else { input.u16() & desc_flags::ALL },
            },
            3 => Action::RxDescriptor {
                addr: AddrKind::from_byte(input.u8()),
                raw_addr: input.u64(),
                len: input.len(),
                id: input.u16(),
                flags: if input.u8() & 3 == 0 { input.u16() } else { 0 },
            },
            4 => Action::ProducerIndex { rx: input.u8() & 1 == 1, ahead: input.ahead() },
            5 => Action::HostStateByte(input.u8()),
            6 => Action::BadConfig(match input.u8() % 7 {
                0 => BadField::HostState(2 + input.u8() % 254),
                1 => BadField::Features(input.u32() | 1 << (3 + input.u8() % 29)),
                2 => BadField::MtuTooSmall(input.u16() % bar::MTU_MIN),
                3 => BadField::MtuWithoutFeature(match input.u16() {
                    MTU_DEFAULT => MTU_DEFAULT + 1,
                    m => m,
                }),
                4 => BadField::StatusBlockNull,
                5 => BadField::StatusBlockMisaligned(input.u64() | 1 << (input.u8() % 6)),
                _ => BadField::StatusBlockOutside(input.u64() | HOST_WINDOW_BYTES),
            }),
            7 => Action::Reinit {
                addr: [AddrKind::Scratch, AddrKind::HostRam, AddrKind::BeyondHostRam][usize::from(input.u8() % 3)],
                raw_addr: input.u64(),
                mtu_feature: input.u8() & 1 == 1,
            },
            8 => Action::EventIndexes { rx_used_event: input.u32(), tx_used_event: input.u32() },
            9 => Action::Doorbell(input.u32()),
            10 | 11 => Action::Scribble { offset: input.u32(), bytes: input.bytes(32), doorbell: input.u8() & 1 == 1 },
            12 => Action::Torn { offset: input.u32(), bytes: input.bytes(32), split: input.u8(), pause: input.u32() },
            13 => Action::Run(input.u32() % 4_000_000),
            _ => Action::LogRingHeader { offset: input.u8(), bytes: input.bytes(16) },
        };
        actions.push(action);
    }
    actions
}

/// Why a hostile run failed: which invariant, after which action.
#[derive(Debug)]
pub struct Failure {
    /// Index of the action in the sequence (`None`: set-up or the final recovery).
    pub action: Option<usize>,
    pub what: String,
    /// The end of the console and the last log lines, for the report.
    pub context: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Some(i) => write!(f, "after action {i}: {}", self.what)?,
            None => write!(f, "{}", self.what)?,
        }
        write!(f, "\n{}", self.context)
    }
}

impl std::error::Error for Failure {}

/// What a hostile run injected and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub actions: usize,
    /// Checked actions whose counter differences matched.
    pub checked: usize,
    /// Bad inputs injected per class (each predicted to be counted).
    pub bad_descriptors: u64,
    pub bad_indexes: u64,
    pub bad_host_config: u64,
    /// DMA transfer errors provoked on purpose (addresses beyond host RAM inside the window).
    pub provoked_transfer_errors: u64,
    /// Valid exchanges through the link, recovery included.
    pub exchanges: usize,
    /// Host re-initialisations.
    pub reinits: usize,
    /// Counters at the end.
    pub counters: Vec<(&'static str, u32)>,
}

impl Report {
    /// The counter `name` (as [`bar::COUNTERS`] names it) at the end of the run.
    pub fn counter(&self, name: &str) -> u32 {
        self.counters.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v)
    }
}

/// Inclusive bounds of a predicted counter difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span(u64, u64);

impl Span {
    const ZERO: Span = Span(0, 0);
    fn exactly(n: u64) -> Span {
        Span(n, n)
    }
    fn contains(self, n: u64) -> bool {
        (self.0..=self.1).contains(&n)
    }
}

/// A checked action's prediction.
#[derive(Debug, Clone, Copy)]
struct Expect {
    bad_descriptors: Span,
    bad_indexes: Span,
    bad_host_config: Span,
    tx_dma_errors: Span,
    rx_dma_errors: Span,
    /// DMA transfer errors (TE) on the data path's channel.
    transfer_errors: Span,
    /// The agent state after, if predictable.
    state: Option<AgentState>,
}

impl Expect {
    fn nothing() -> Expect {
        Expect {
            bad_descriptors: Span::ZERO,
            bad_indexes: Span::ZERO,
            bad_host_config: Span::ZERO,
            tx_dma_errors: Span::ZERO,
            rx_dma_errors: Span::ZERO,
            transfer_errors: Span::ZERO,
            state: None,
        }
    }
}

/// What is observed before and after a checked action.
#[derive(Debug, Clone)]
struct Snapshot {
    counters: [u32; COUNTER_SLOTS],
    state: AgentState,
    transfer_errors: u64,
    log_lines: usize,
}

/// The data path's DMA channel (the firmware's `ChainDma` uses channel 0).
const DATA_CHANNEL: usize = 0;

/// The hostile host and the board it drives.
pub struct HostileHost {
    pub board: Board,
    link: Option<HostLink>,
    /// The next host generation: every initialisation takes a new one, never reused.
    generation: u32,
    /// The status block the agent was last configured with validly (what it writes, if RUNNING).
    status_addr: u64,
    mtu: u16,
    /// Host RAM as the host last wrote it (the canary, its own frames): compared outside `writable`.
    shadow: Vec<u8>,
    /// Host RAM the agent may write: status blocks and buffers ever handed over.
    writable: Vec<Range<u64>>,
    /// What was injected and predicted so far.
    report: Report,
    /// The host wrote the log ring's header: the emulator's reader may no longer decode the log.
    log_tampered: bool,
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

    fn bar_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), String> {
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

    fn snapshot(&mut self) -> Result<Snapshot, String> {
        let mut raw = [0u8; COUNTERS_LEN];
        self.bar_read(shared::COUNTERS_OFFSET, &mut raw)?;
        let view = Counters::new_unchecked(&raw[..]);
        let counters = std::array::from_fn(|slot| view.get(slot).unwrap_or(0));
        let mut state = [0u8];
        self.bar_read(AGENT_STATE, &mut state)?;
        let state = AgentState::try_from(state[0]).map_err(|e| format!("agent_state in the BAR: {e}"))?;
        let dma = &self.board.dma_stats()[DATA_CHANNEL];
        Ok(Snapshot { counters, state, transfer_errors: dma.errors, log_lines: self.board.log_lines().len() })
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

    /// Host RAM outside what the agent may write must still hold what the host wrote.
    fn check_canary(&self) -> Result<(), String> {
        let mut ram = vec![0u8; HOST_RAM_SIZE as usize];
        self.board.read_host_ram(0, &mut ram).map_err(|e| format!("host RAM: {e}"))?;
        let mut writable = self.writable.clone();
        writable.sort_by_key(|r| r.start);
        let mut at = 0u64;
        let check = |from: u64, to: u64| -> Result<(), String> {
            let (f, t) = (from as usize, to as usize);
            if let Some(i) = ram[f..t].iter().zip(&self.shadow[f..t]).position(|(a, b)| a != b) {
                let addr = from + i as u64;
                return Err(format!(
                    "host RAM at {addr:#x} was written ({:#04x}, expected {:#04x}) outside the status block and \
                     the posted buffers",
                    ram[f + i],
                    self.shadow[f + i]
                ));
            }
            Ok(())
        };
        for r in &writable {
            if r.start > at {
                check(at, r.start)?;
            }
            at = at.max(r.end);
        }
        check(at, HOST_RAM_SIZE)
    }

    // ---- actions ----

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
                    if addr < HOST_WINDOW_BYTES && end <= HOST_WINDOW_BYTES {
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
                    BadField::StatusBlockOutside(a) => addr = (a | HOST_WINDOW_BYTES) & !63,
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
                let (mtu, features) = if mtu_feature {
                    (bar::MTU_MIN + (raw_addr as u16) % 9000, feature::ALL)
                } else {
                    (MTU_DEFAULT, feature::ALL & !feature::MTU)
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

    fn compare(&self, action: &Action, before: &Snapshot, after: &Snapshot, expect: &Expect) -> Result<(), String> {
        let delta = |slot: usize| u64::from(after.counters[slot].wrapping_sub(before.counters[slot]));
        let checks = [
            ("bad_descriptors", delta(counter::BAD_DESCRIPTORS), expect.bad_descriptors),
            ("bad_indexes", delta(counter::BAD_INDEXES), expect.bad_indexes),
            ("bad_host_config", delta(counter::BAD_HOST_CONFIG), expect.bad_host_config),
            ("tx_dma_errors", delta(counter::TX_DMA_ERRORS), expect.tx_dma_errors),
            ("rx_dma_errors", delta(counter::RX_DMA_ERRORS), expect.rx_dma_errors),
            ("DMA transfer errors", after.transfer_errors - before.transfer_errors, expect.transfer_errors),
        ];
        for (name, got, want) in checks {
            if !want.contains(got) {
                return Err(format!(
                    "{name} grew by {got}, expected {}..={} (agent {:?} before, {:?} after)",
                    want.0, want.1, before.state, after.state
                ));
            }
        }
        if let Some(state) = expect.state {
            if after.state != state {
                return Err(format!("agent {:?} after, expected {state:?} (was {:?})", after.state, before.state));
            }
        }
        // The firmware logs its state changes; a refusal that breaks the link must show in the log.
        if !self.log_tampered && before.state != AgentState::Broken && after.state == AgentState::Broken {
            let logged = self.board.log_lines()[before.log_lines..].iter().any(|l| l.contains("agent state 3"));
            if !logged {
                return Err(format!("{action:?} broke the link without a log line saying so"));
            }
        }
        Ok(())
    }
}

/// How a descriptor fares: (refused, transfer errors of its DMA), each as the bounds over the agent's
/// largest frame (`max_len`: between the smallest and the largest the agent may allow) and the lengths its
/// DMA may move (`copy`).
fn verdict(addr: u64, len: u32, flags: u16, max_len: Span, copy: Span) -> (Span, Span) {
    let refused = |max: u64| {
        let window = addr.checked_add(u64::from(len)).is_some_and(|end| end <= HOST_WINDOW_BYTES);
        len == 0 || u64::from(len) > max || !window || flags & !desc_flags::ALL != 0
    };
    let faults = |n: u64| u64::from(addr.saturating_add(n) > HOST_RAM_SIZE);
    let (strict, lenient) = (refused(max_len.0), refused(max_len.1));
    let refused = Span(u64::from(lenient), u64::from(strict));
    let faults = if lenient { Span::ZERO } else { Span(if strict { 0 } else { faults(copy.0) }, faults(copy.1)) };
    (refused, faults)
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

fn setup_failure(what: String) -> Failure {
    Failure { action: None, what, context: String::new() }
}

/// Boot `elf`, perform `actions` and the recovery; the invariants hold or the failure says which broke.
pub fn run_actions(elf: &[u8], actions: &[Action]) -> Result<Report, Failure> {
    HostileHost::boot(elf)?.run(actions)
}

/// The fuzz target: any bytes.
pub fn run_input(elf: &[u8], input: &[u8], options: Options) -> Result<Report, Failure> {
    run_actions(elf, &decode(input, options))
}

// ---- valid frames ----

/// "Who has 10.83.49.2?" from the host.
pub fn arp_request() -> Vec<u8> {
    frames::arp_request(HOST_MAC, HOST_IP, AGENT_IP)
}

fn echo_request(agent_mac: [u8; 6], seq: u16, payload: &[u8]) -> Vec<u8> {
    frames::echo_request((HOST_MAC, HOST_IP), (agent_mac, AGENT_IP), 0xf022, seq, payload)
}

/// The sender's MAC, if `f` is an ARP reply to the host.
fn arp_reply_mac(f: &[u8]) -> Option<[u8; 6]> {
    frames::arp_reply(f).filter(|r| r.eth_dst == HOST_MAC).map(|r| r.sender.0)
}

/// The echo's payload, if `f` is the reply to `seq`.
fn echo_reply(f: &[u8], seq: u16) -> Option<Vec<u8>> {
    frames::echo_reply(f)
        .filter(|r| r.eth_dst == HOST_MAC && r.ip_src == AGENT_IP && r.seq == seq)
        .map(|r| r.payload.to_vec())
}

/// Send an ARP request or a ping through `link` and wait for its answer, asking again every
/// [`ANSWER_STEPS`] slices up to [`ATTEMPTS`] times: the agent's stack answers only once it has an
/// address (a DHCP lease, or the static fallback some seconds after its first link-up), and it drops a
/// frame it cannot answer yet. A ping is preceded by an ARP exchange: the stack learns the host's MAC
/// address only from ARP, and a link that the hostile host broke may come back to an agent that never saw
/// one.
fn exchange(board: &mut Board, link: &mut HostLink, ping: bool, payload: u16) -> Result<(), String> {
    exchange_for(board, link, ping, payload).map(|_| ())
}

/// [`exchange`], returning the agent's MAC from its ARP reply (the ping goes to it).
fn exchange_for(board: &mut Board, link: &mut HostLink, ping: bool, payload: u16) -> Result<[u8; 6], String> {
    let mut agent_mac = [0u8; 6];
    if ping {
        agent_mac = exchange_for(board, link, false, 0)?;
    }
    let seq = payload;
    let data: Vec<u8> = (0..payload).map(|i| (i as u8).wrapping_mul(13).wrapping_add(7)).collect();
    let frame = if ping { echo_request(agent_mac, seq, &data) } else { arp_request() };
    let what = if ping { "ping" } else { "ARP" };
    for _ in 0..ATTEMPTS {
        // A full TX ring empties as the agent runs; the answer check below drives it.
        let sent = link.send(board, &frame).map_err(|e| format!("send: {e}"))?;
        let mut got = false;
        let mut wrong = None;
        let answered = host::run_until(
            board,
            link,
            |l| {
                while let Some(f) = l.recv() {
                    if ping {
                        match echo_reply(&f, seq) {
                            Some(p) if p == data => got = true,
                            Some(_) => wrong = Some("echo payload differs"),
                            None => {}
                        }
                    } else if let Some(mac) = arp_reply_mac(&f) {
                        agent_mac = mac;
                        got = true;
                    }
                }
                got || wrong.is_some()
            },
            ANSWER_STEPS,
        );
        match answered {
            Ok(_) if wrong.is_some() => return Err(format!("{what} of {payload} bytes: {}", wrong.unwrap_or(""))),
            Ok(_) => return Ok(agent_mac),
            Err(RunError::Timeout { .. }) if !sent || !got => continue,
            Err(e) => return Err(format!("{what} of {payload} bytes: {e}")),
        }
    }
    Err(format!("{what} of {payload} bytes: no answer after {ATTEMPTS} attempts of {ANSWER_STEPS} slices"))
}

/// A small deterministic generator (xorshift64*) for inputs when no coverage-guided fuzzer is at hand.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// An input of up to `max_len` bytes.
    pub fn input(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next_u64() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
