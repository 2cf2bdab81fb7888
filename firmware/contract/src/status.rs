//! The status block in host RAM: everything the agent tells the host, written only by the agent's
//! DMA engine and read only by the host, so the host never reads across the bus to learn it.
//!
//! The host allocates [`block_len`] bytes, aligned to [`crate::bar::STATUS_BLOCK_ALIGN`], and
//! publishes the address in the BAR header (`status_block_addr`).
//!
//! | offset | bytes | field | meaning |
//! | --- | --- | --- | --- |
//! | `0x00` | 4 | tx_used | TX descriptors ever completed (free-running) |
//! | `0x04` | 4 | rx_used | RX buffers ever filled (free-running) |
//! | `0x08` | 4 | tx_prod_event | the agent wants a doorbell once `tx_prod` passes this |
//! | `0x0c` | 4 | rx_prod_event | the agent wants a doorbell once `rx_prod` passes this |
//! | `0x10` | 4 | interrupt_cause | [`cause`] bits of the agent's latest interrupt |
//! | `0x14` | 4 | agent_generation | echo of the header's, so the host sees an agent reset without a BAR read |
//! | `0x18` | 8 | reserved | zero |
//! | `0x20` | 8 × entries | TX completions | [`Completion`] for index `n` in slot `n % entries` |
//! | `0x20 + 8 × entries` | 8 × entries | RX completions | likewise |
//!
//! Order: the agent DMAs completions first and the 32-byte header after them, in one DMA chain
//! (which the controller performs in order), so a host that sees a new `tx_used` or `rx_used` sees
//! the completions below it. Then, if [`crate::ring::need_event`] says the host asked, it interrupts.
//!
//! `interrupt_cause` is a hint for the interrupt handler (which work to schedule first), rewritten
//! with every header DMA; correctness never depends on it, because the host compares the indexes and
//! the generation on every interrupt anyway.

use crate::ring::{self, Entries};
use crate::schema::{Field, Struct, Type};
use crate::{get_le16, get_le32, put_le16, put_le32, Error};

/// Size of the status header in front of the completions.
pub const HEADER_LEN: usize = 32;
/// Size of one [`Completion`].
pub const COMPLETION_LEN: usize = 8;

/// Bytes of a status block for rings of `entries`.
pub const fn block_len(entries: Entries) -> usize {
    HEADER_LEN + 2 * entries.get() as usize * COMPLETION_LEN
}

/// Offset in the block of the TX completion for free-running index `index`.
pub const fn tx_completion_offset(entries: Entries, index: u32) -> usize {
    HEADER_LEN + ring::slot(index, entries) * COMPLETION_LEN
}

/// Offset in the block of the RX completion for free-running index `index`.
pub const fn rx_completion_offset(entries: Entries, index: u32) -> usize {
    HEADER_LEN + (entries.get() as usize + ring::slot(index, entries)) * COMPLETION_LEN
}

/// `interrupt_cause` bits.
pub mod cause {
    /// RX completions were added.
    pub const RX: u32 = 1 << 0;
    /// TX completions were added.
    pub const TX: u32 = 1 << 1;
    /// The agent's generation or state changed (a reset, BROKEN): the host re-reads the header.
    pub const LINK: u32 = 1 << 2;
    /// The agent refused something of the host's (see the counters and the log).
    pub const ERROR: u32 = 1 << 3;
    /// Every bit this version defines.
    pub const ALL: u32 = RX | TX | LINK | ERROR;
}

/// Completion flag bits.
pub mod compl_flags {
    /// RX only: the frame's checksums are complete and correct; the host need not verify them
    /// (the backplane is a memory copy, [`crate::bar::feature::CSUM_OFFLOAD`]).
    pub const CSUM_VALID: u16 = 1 << 0;
    /// RX only, with [`crate::bar::feature::CSUM_OFFLOAD`]: an IPv4 TCP or UDP frame whose L4 checksum
    /// the agent left out (the field is zero), as virtio's `NEEDS_CSUM`. Delivered locally, nobody needs
    /// it; a host that forwards the frame completes it (Linux: `CHECKSUM_PARTIAL`).
    pub const NEEDS_CSUM: u16 = 1 << 1;
    /// RX only, with [`crate::bar::feature::RX_MULTI_BUFFER`]: this buffer is not the frame's last; the
    /// frame continues in the next RX completion (of the same status update). The checksum flags are
    /// on the frame's first completion.
    pub const MORE: u16 = 1 << 2;
    /// The descriptor was refused or its DMA failed; for RX the buffer holds no frame.
    pub const ERROR: u16 = 1 << 15;
    /// Every bit this version defines.
    pub const ALL: u16 = CSUM_VALID | NEEDS_CSUM | MORE | ERROR;
}

/// Byte offsets of every field: the [`Header`] from the start of the block, a [`Completion`] from the
/// start of its entry ([`tx_completion_offset`], [`rx_completion_offset`]). Little-endian, as
/// everything the contract defines.
pub mod field {
    /// The status block's [`Header`](super::Header).
    pub mod header {
        pub const TX_USED: usize = 0x00;
        pub const RX_USED: usize = 0x04;
        pub const TX_PROD_EVENT: usize = 0x08;
        pub const RX_PROD_EVENT: usize = 0x0c;
        pub const INTERRUPT_CAUSE: usize = 0x10;
        pub const AGENT_GENERATION: usize = 0x14;
        pub const RESERVED: usize = 0x18;
    }
    /// A [`Completion`](super::Completion).
    pub mod completion {
        pub const ID: usize = 0;
        pub const FLAGS: usize = 2;
        pub const LEN: usize = 4;
    }
}

/// [`Header`] for the C header.
pub const HEADER_SCHEMA: Struct = Struct {
    name: "status",
    len: HEADER_LEN,
    doc: "Host RAM at status_block_addr, followed by ring_entries TX then ring_entries RX completions. \
          Written only by the agent's DMA.",
    fields: &[
        Field::new("tx_used", field::header::TX_USED, Type::Le32),
        Field::new("rx_used", field::header::RX_USED, Type::Le32),
        Field::new("tx_prod_event", field::header::TX_PROD_EVENT, Type::Le32),
        Field::new("rx_prod_event", field::header::RX_PROD_EVENT, Type::Le32),
        Field::new("interrupt_cause", field::header::INTERRUPT_CAUSE, Type::Le32),
        Field::new("agent_generation", field::header::AGENT_GENERATION, Type::Le32),
        Field::new("reserved", field::header::RESERVED, Type::Bytes(HEADER_LEN - field::header::RESERVED)),
    ],
};

/// [`Completion`] for the C header.
pub const COMPLETION_SCHEMA: Struct = Struct {
    name: "completion",
    len: COMPLETION_LEN,
    doc: "Host RAM, in the status block. One per TX descriptor sent or RX buffer filled.",
    fields: &[
        Field::new("id", field::completion::ID, Type::Le16),
        Field::new("flags", field::completion::FLAGS, Type::Le16),
        Field::new("len", field::completion::LEN, Type::Le32),
    ],
};

fixed_view! {
    /// A typed view of the status header (the agent composes it in its RAM, then DMAs it).
    ///
    /// The host checks the indexes against its own producer indexes with [`crate::ring::pending`].
    Header, HEADER_LEN
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn tx_used(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::TX_USED)
    }
    pub fn rx_used(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::RX_USED)
    }
    pub fn tx_prod_event(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::TX_PROD_EVENT)
    }
    pub fn rx_prod_event(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::RX_PROD_EVENT)
    }
    /// Undefined bits are dropped: the cause is a hint, and a newer agent may add some.
    pub fn interrupt_cause(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::INTERRUPT_CAUSE) & cause::ALL
    }
    pub fn agent_generation(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::AGENT_GENERATION)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    pub fn set_tx_used(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::header::TX_USED, value);
    }
    pub fn set_rx_used(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::header::RX_USED, value);
    }
    pub fn set_tx_prod_event(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::header::TX_PROD_EVENT, value);
    }
    pub fn set_rx_prod_event(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::header::RX_PROD_EVENT, value);
    }
    pub fn set_interrupt_cause(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::header::INTERRUPT_CAUSE, value);
    }
    pub fn set_agent_generation(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::header::AGENT_GENERATION, value);
    }
    /// Zero the header, reserved bytes included.
    pub fn clear(&mut self) {
        self.buffer.as_mut()[..HEADER_LEN].fill(0);
    }
}

fixed_view! {
    /// A typed view of one completion.
    Completion, COMPLETION_LEN
}

/// A completion the host may act on ([`Completion::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionRepr {
    /// The descriptor's `id`.
    pub id: u16,
    /// [`compl_flags`].
    pub flags: u16,
    /// TX: bytes sent; RX: bytes of the frame in the buffer.
    pub len: u32,
}

impl<T: AsRef<[u8]>> Completion<T> {
    pub fn id(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::completion::ID)
    }
    pub fn flags(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::completion::FLAGS)
    }
    pub fn len(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::completion::LEN)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host's check before it hands a buffer up: a length within the buffer the descriptor
    /// offered (`max_len`) and only defined flags. The host also checks `id` against its own table.
    pub fn check(&self, max_len: u32) -> Result<CompletionRepr, Error> {
        let (flags, len) = (self.flags(), self.len());
        if flags & !compl_flags::ALL != 0 {
            return Err(Error::BadFlags(flags));
        }
        if len > max_len {
            return Err(Error::BadLength(len));
        }
        Ok(CompletionRepr { id: self.id(), flags, len })
    }
}

impl CompletionRepr {
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, completion: &mut Completion<T>) {
        let buf = completion.buffer.as_mut();
        put_le16(buf, field::completion::ID, self.id);
        put_le16(buf, field::completion::FLAGS, self.flags);
        put_le32(buf, field::completion::LEN, self.len);
    }
}

/// A frame [`RxChain::push`] completed: its length over all its buffers, the checksum flags of its
/// first completion, and how many buffers it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFrame {
    pub len: u32,
    pub flags: u16,
    pub buffers: u32,
}

/// The host's reassembly of one frame from its RX completions with
/// [`crate::bar::feature::RX_MULTI_BUFFER`]: each accepted completion ([`Completion::check`], without
/// [`compl_flags::ERROR`]) is pushed in ring order. The agent's chains are trusted for nothing: a chain
/// longer than [`crate::bar::RX_CHAIN_MAX`] or a frame longer than the host's largest is refused once,
/// and the rest of that chain (up to its last completion, the first without [`compl_flags::MORE`]) is
/// swallowed, so each buffer is returned to the host exactly once and never handed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxChain {
    buffers: u32,
    len: u32,
    flags: u16,
    discarding: bool,
}

impl RxChain {
    pub const fn new() -> Self {
        RxChain { buffers: 0, len: 0, flags: 0, discarding: false }
    }

    /// Buffers of the frame (or refused chain) taken so far: nonzero while it waits for its next one.
    pub fn buffers(&self) -> u32 {
        self.buffers
    }

    /// Whether a refused chain is being swallowed.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// An [`compl_flags::ERROR`] completion: it holds no frame and ends whatever chain was open.
    /// Returns the buffers of a frame that was still open (0: none), which are dropped.
    pub fn abort(&mut self) -> u32 {
        let open = if self.discarding { 0 } else { self.buffers };
        *self = RxChain::new();
        open
    }

    /// Take the next completion of the ring: `Ok(Some(frame))` when it ends a frame, `Ok(None)` when
    /// the frame continues (or a refused chain is still being swallowed), `Err` once for a refused
    /// chain. `max_frame` is the longest frame the host takes (its MTU plus the Ethernet header).
    pub fn push(&mut self, completion: CompletionRepr, max_frame: u32) -> Result<Option<RxFrame>, Error> {
        let more = completion.flags & compl_flags::MORE != 0;
        self.buffers += 1;
        if self.discarding {
            if !more {
                *self = RxChain::new();
            }
            return Ok(None);
        }
        if self.buffers == 1 {
            self.flags = completion.flags & (compl_flags::CSUM_VALID | compl_flags::NEEDS_CSUM);
        }
        let len = self.len.saturating_add(completion.len);
        let refused = if self.buffers > crate::bar::RX_CHAIN_MAX {
            Some(Error::BadChain(self.buffers))
        } else if len > max_frame {
            Some(Error::BadLength(len))
        } else {
            None
        };
        if let Some(e) = refused {
            *self = RxChain::new();
            if more {
                // Count the buffer taken; the rest of the chain is swallowed.
                self.buffers = 1;
                self.discarding = true;
            }
            return Err(e);
        }
        self.len = len;
        if more {
            return Ok(None);
        }
        let frame = RxFrame { len, flags: self.flags, buffers: self.buffers };
        *self = RxChain::new();
        Ok(Some(frame))
    }
}

/// A typed view of a whole status block (the host's side, and the host model in tests).
#[derive(Debug)]
pub struct Block<T: AsRef<[u8]>> {
    buffer: T,
    entries: Entries,
}

impl<T: AsRef<[u8]>> Block<T> {
    /// Wrap a buffer without checking it; accessors may then panic. Use [`Block::new_checked`].
    pub const fn new_unchecked(buffer: T, entries: Entries) -> Self {
        Block { buffer, entries }
    }

    pub fn new_checked(buffer: T, entries: Entries) -> Result<Self, Error> {
        let block = Self::new_unchecked(buffer, entries);
        block.check_len()?;
        Ok(block)
    }

    /// The one check: the buffer holds the header and both completion arrays.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < block_len(self.entries) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn entries(&self) -> Entries {
        self.entries
    }

    pub fn header(&self) -> Header<&[u8]> {
        Header::new_unchecked(&self.buffer.as_ref()[..HEADER_LEN])
    }

    /// The TX completion for free-running index `index` (any index: it is reduced to its slot).
    pub fn tx_completion(&self, index: u32) -> Completion<&[u8]> {
        let at = tx_completion_offset(self.entries, index);
        Completion::new_unchecked(&self.buffer.as_ref()[at..at + COMPLETION_LEN])
    }

    /// The RX completion for free-running index `index`.
    pub fn rx_completion(&self, index: u32) -> Completion<&[u8]> {
        let at = rx_completion_offset(self.entries, index);
        Completion::new_unchecked(&self.buffer.as_ref()[at..at + COMPLETION_LEN])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Block<T> {
    pub fn header_mut(&mut self) -> Header<&mut [u8]> {
        Header::new_unchecked(&mut self.buffer.as_mut()[..HEADER_LEN])
    }

    pub fn tx_completion_mut(&mut self, index: u32) -> Completion<&mut [u8]> {
        let at = tx_completion_offset(self.entries, index);
        Completion::new_unchecked(&mut self.buffer.as_mut()[at..at + COMPLETION_LEN])
    }

    pub fn rx_completion_mut(&mut self, index: u32) -> Completion<&mut [u8]> {
        let at = rx_completion_offset(self.entries, index);
        Completion::new_unchecked(&mut self.buffer.as_mut()[at..at + COMPLETION_LEN])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec;

    #[test]
    fn block_len_and_offsets() {
        let e = Entries::new(4).unwrap();
        assert_eq!(block_len(e), 32 + 64);
        assert_eq!(tx_completion_offset(e, 0), 32);
        assert_eq!(tx_completion_offset(e, 5), 40);
        assert_eq!(rx_completion_offset(e, 0), 64);
        assert_eq!(rx_completion_offset(e, u32::MAX), 88);
        assert_eq!(block_len(Entries::new(Entries::MAX).unwrap()), 32 + 65536);
    }

    /// The exact bytes the agent DMAs, so a big-endian agent and the x86 host agree.
    #[test]
    fn bytes_are_little_endian() {
        let e = Entries::new(2).unwrap();
        let mut buf = vec![0u8; block_len(e)];
        let mut block = Block::new_checked(&mut buf[..], e).unwrap();
        let mut h = block.header_mut();
        h.set_tx_used(0x0102_0304);
        h.set_rx_used(5);
        h.set_tx_prod_event(6);
        h.set_rx_prod_event(7);
        h.set_interrupt_cause(cause::RX | cause::LINK);
        h.set_agent_generation(0xa0b0_c0d0);
        CompletionRepr { id: 0x1234, flags: compl_flags::ERROR, len: 60 }.emit(&mut block.tx_completion_mut(1));
        CompletionRepr { id: 2, flags: compl_flags::CSUM_VALID, len: 0x10203 }.emit(&mut block.rx_completion_mut(2));
        assert_eq!(block.header().interrupt_cause(), 5);
        assert_eq!(
            buf,
            [
                4, 3, 2, 1, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, // indexes and events
                5, 0, 0, 0, 0xd0, 0xc0, 0xb0, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, // cause, generation, reserved
                0, 0, 0, 0, 0, 0, 0, 0, 0x34, 0x12, 0, 0x80, 60, 0, 0, 0, // TX completions 0 and 1
                2, 0, 1, 0, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, // RX completions 0 (index 2) and 1
            ]
        );
    }

    #[test]
    fn refusals() {
        let e = Entries::new(8).unwrap();
        assert_eq!(Block::new_checked(&[0u8; 32 + 127][..], e).unwrap_err(), Error::Truncated);
        assert_eq!(Header::new_checked(&[0u8; 31][..]).unwrap_err(), Error::Truncated);
        let mut c = [0u8; COMPLETION_LEN];
        CompletionRepr { id: 1, flags: 0x4000, len: 10 }.emit(&mut Completion::new_unchecked(&mut c[..]));
        assert_eq!(Completion::new_checked(&c[..]).unwrap().check(1514), Err(Error::BadFlags(0x4000)));
        CompletionRepr { id: 1, flags: 0, len: 1515 }.emit(&mut Completion::new_unchecked(&mut c[..]));
        assert_eq!(Completion::new_checked(&c[..]).unwrap().check(1514), Err(Error::BadLength(1515)));
    }

    fn rx(flags: u16, len: u32) -> CompletionRepr {
        CompletionRepr { id: 0, flags, len }
    }

    #[test]
    fn rx_chain_assembles_and_refuses() {
        use compl_flags::{CSUM_VALID, MORE, NEEDS_CSUM};
        let mut chain = RxChain::new();
        // One buffer, one frame (the only case without the feature).
        assert_eq!(chain.push(rx(CSUM_VALID, 60), 1514), Ok(Some(RxFrame { len: 60, flags: CSUM_VALID, buffers: 1 })));
        // Three buffers: the checksum flags are the first completion's.
        assert_eq!(chain.push(rx(NEEDS_CSUM | MORE, 4096), 9014), Ok(None));
        assert_eq!(chain.buffers(), 1);
        assert_eq!(chain.push(rx(MORE, 4096), 9014), Ok(None));
        assert_eq!(chain.push(rx(0, 822), 9014), Ok(Some(RxFrame { len: 9014, flags: NEEDS_CSUM, buffers: 3 })));
        assert_eq!(chain, RxChain::new());
        // Longer than the host's largest frame: refused at the buffer that passes it, the rest swallowed.
        assert_eq!(chain.push(rx(MORE, 4096), 5000), Ok(None));
        assert_eq!(chain.push(rx(MORE, 4096), 5000), Err(Error::BadLength(8192)));
        assert!(chain.is_discarding());
        assert_eq!(chain.push(rx(MORE, 4096), 5000), Ok(None));
        assert_eq!(chain.push(rx(0, 10), 5000), Ok(None));
        assert_eq!(chain, RxChain::new());
        assert_eq!(chain.push(rx(0, 10), 5000), Ok(Some(RxFrame { len: 10, flags: 0, buffers: 1 })));
        // MORE forever: refused once past the bound, then swallowed without end or overflow.
        for _ in 0..bar_chain_max() {
            assert_eq!(chain.push(rx(MORE, 0), 5000), Ok(None));
        }
        assert_eq!(chain.push(rx(MORE, 0), 5000), Err(Error::BadChain(bar_chain_max() + 1)));
        for _ in 0..1000 {
            assert_eq!(chain.push(rx(MORE, 0), 5000), Ok(None));
        }
        // An ERROR completion ends an open frame; the host drops its buffers.
        let mut chain = RxChain::new();
        assert_eq!(chain.push(rx(MORE, 4096), 9014), Ok(None));
        assert_eq!(chain.abort(), 1);
        assert_eq!(chain.abort(), 0);
    }

    fn bar_chain_max() -> u32 {
        crate::bar::RX_CHAIN_MAX
    }

    proptest! {
        /// Whatever the agent writes, a frame handed up is within the host's bound, took at most
        /// RX_CHAIN_MAX buffers, and its length is the sum of its completions; every completion is
        /// accounted for exactly once (in a frame, or refused and swallowed).
        #[test]
        fn rx_chain_frames_are_bounded(steps in proptest::collection::vec((any::<bool>(), 0u32..20000), 0..200),
                                       max_frame in 60u32..70000) {
            let mut chain = RxChain::new();
            let (mut sum, mut open) = (0u32, 0u32);
            for (more, len) in steps {
                let flags = if more { compl_flags::MORE } else { 0 };
                let discarding = chain.is_discarding();
                sum = sum.saturating_add(len);
                open += 1;
                match chain.push(rx(flags, len), max_frame) {
                    Ok(Some(f)) => {
                        prop_assert!(!more && !discarding);
                        prop_assert!(f.len <= max_frame && f.buffers <= crate::bar::RX_CHAIN_MAX);
                        prop_assert_eq!((f.len, f.buffers), (sum, open));
                        (sum, open) = (0, 0);
                    }
                    Ok(None) => prop_assert!(more || discarding),
                    Err(_) => prop_assert!(!discarding && (sum > max_frame || open > crate::bar::RX_CHAIN_MAX)),
                }
                if chain.buffers() == 0 || chain.is_discarding() {
                    (sum, open) = (0, 0);
                }
            }
        }
    }

    proptest! {
        /// Completions of any index land inside their own array, never in the header or the other
        /// array.
        #[test]
        fn completions_stay_in_their_array(index in any::<u32>(), shift in 1u32..=12) {
            let e = Entries::new(1 << shift).unwrap();
            let n = e.get() as usize;
            let tx = tx_completion_offset(e, index);
            let rx = rx_completion_offset(e, index);
            prop_assert!(tx >= HEADER_LEN && tx + COMPLETION_LEN <= HEADER_LEN + n * COMPLETION_LEN);
            prop_assert!(rx >= HEADER_LEN + n * COMPLETION_LEN && rx + COMPLETION_LEN <= block_len(e));
        }

        /// An accepted completion keeps its fields and respects the bound.
        #[test]
        fn accepted_completions_are_bounded(id in any::<u16>(), flags in any::<u16>(), len in any::<u32>(),
                                            max in any::<u32>()) {
            let mut c = [0u8; COMPLETION_LEN];
            CompletionRepr { id, flags, len }.emit(&mut Completion::new_unchecked(&mut c[..]));
            if let Ok(r) = Completion::new_unchecked(&c[..]).check(max) {
                prop_assert!(r.len <= max && r.flags & !compl_flags::ALL == 0);
                prop_assert_eq!(r, CompletionRepr { id, flags, len });
            }
        }
    }
}
