//! The hostile host's actions, and how arbitrary bytes become them.

use bpnet_contract::bar::{self, desc_flags, MTU_DEFAULT};

use super::{DMA_REACH, HOST_RAM_SIZE, RING_ENTRIES, SCRATCH_LEN};

/// Which part of the bus a descriptor or status block address is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind {
    /// The hostile host's scratch area: valid.
    Scratch,
    /// Anywhere in host RAM, canary included (the host may post any of its RAM): valid.
    HostRam,
    /// Inside the outbound windows, beyond host RAM: the agent cannot tell; its DMA is master-aborted.
    BeyondHostRam,
    /// Straddling the end of the outbound windows' reach or outside it: refused.
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
            AddrKind::BeyondHostRam => HOST_RAM_SIZE + raw % (DMA_REACH - HOST_RAM_SIZE - len.max(1) + 1),
            AddrKind::OutsideWindow => DMA_REACH - len.min(DMA_REACH) + 1 + (raw >> 8),
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
                _ => BadField::StatusBlockOutside(input.u64() | DMA_REACH),
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
