//! The log ring: a byte ring in agent RAM that the agent's `defmt` logger fills and the host reads
//! (through the BAR on hardware, from the emulator's RAM on the virtual backplane).
//!
//! Layout (all fields little-endian):
//!
//! | offset | field | meaning |
//! | --- | --- | --- |
//! | 0 | magic | [`MAGIC`] once the ring is initialised |
//! | 4 | capacity | bytes of data, a power of two |
//! | 8 | head | bytes ever written, wrapping at 2^32; byte `n` lives at `data[n % capacity]` |
//! | 12 | generation | bumped each time the agent (re)initialises the ring, so a reader notices a reboot |
//! | 16 | data | `capacity` bytes |
//!
//! The writer stores data bytes first and `head` last; the agent puts a barrier between the two
//! ([`LogRing::write`] then [`LogRing::publish`]) so a reader that sees a new `head` also sees the
//! bytes before it. The content is a stream of rzCOBS frames (defmt's encoding), which lets a reader
//! that lost bytes to an overrun resynchronise at the next frame boundary.

use crate::{get_le32, put_le32};

/// "BPLG" in memory order.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BPLG");
/// Size of the header in front of the data.
pub const HEADER_LEN: usize = 16;
/// Smallest capacity a ring may have.
pub const MIN_CAPACITY: u32 = 64;

/// Byte offsets of the header's fields (the table above), for a reader that copies the header alone
/// before it knows the capacity.
pub mod field {
    pub const MAGIC: usize = 0;
    pub const CAPACITY: usize = 4;
    pub const HEAD: usize = 8;
    pub const GENERATION: usize = 12;
}

/// Why a buffer is not a usable log ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header plus the data it claims.
    Truncated,
    /// The magic word is wrong: not initialised yet, or not a log ring.
    BadMagic(u32),
    /// The capacity is not a power of two of at least [`MIN_CAPACITY`].
    BadCapacity(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => write!(f, "log ring truncated"),
            Error::BadMagic(m) => write!(f, "log ring magic {m:#010x}, expected {MAGIC:#010x}"),
            Error::BadCapacity(c) => write!(f, "log ring capacity {c} is not a power of two >= {MIN_CAPACITY}"),
        }
    }
}

/// A typed view of a log ring over a byte buffer.
#[derive(Debug)]
pub struct LogRing<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LogRing<T> {
    /// Wrap a buffer without checking it; accessors may then panic. Use [`LogRing::new_checked`].
    pub const fn new_unchecked(buffer: T) -> Self {
        LogRing { buffer }
    }

    /// Wrap a buffer written by the other side, checking everything the accessors rely on.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let ring = Self::new_unchecked(buffer);
        ring.check_len()?;
        Ok(ring)
    }

    /// The one check: header present, magic right, capacity sane and within the buffer.
    pub fn check_len(&self) -> Result<(), Error> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let magic = get_le32(buf, field::MAGIC);
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let capacity = get_le32(buf, field::CAPACITY);
        if capacity < MIN_CAPACITY || !capacity.is_power_of_two() {
            return Err(Error::BadCapacity(capacity));
        }
        if buf.len() - HEADER_LEN < capacity as usize {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// [`MAGIC`] once the ring is initialised. Like the other accessors it needs only the header: a
    /// reader may wrap a copy of the header alone with [`LogRing::new_unchecked`].
    pub fn magic(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::MAGIC)
    }

    pub fn capacity(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::CAPACITY)
    }

    pub fn head(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::HEAD)
    }

    pub fn generation(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::GENERATION)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> LogRing<T> {
    /// Initialise a ring over `buffer` using as much of it as a power of two allows, and return its
    /// writer. `generation` should differ from the previous boot's (the agent keeps a boot counter).
    pub fn init(mut buffer: T, generation: u32) -> Result<LogWriter<T>, Error> {
        let buf = buffer.as_mut();
        let room = buf.len().checked_sub(HEADER_LEN).ok_or(Error::Truncated)?;
        let room = u32::try_from(room).unwrap_or(u32::MAX);
        if room < MIN_CAPACITY {
            return Err(Error::Truncated);
        }
        // Largest power of two that fits.
        let capacity = 1u32 << (31 - room.leading_zeros());
        put_le32(buf, field::CAPACITY, capacity);
        put_le32(buf, field::HEAD, 0);
        put_le32(buf, field::GENERATION, generation);
        put_le32(buf, field::MAGIC, MAGIC);
        Ok(LogWriter { buffer, mask: capacity - 1 })
    }
}

/// The writing side of a ring it initialised ([`LogRing::init`]).
///
/// It keeps the capacity it chose rather than reading the header again: the ring lies in memory the
/// reader (the host, through the BAR) can write, and a capacity written there must not move the
/// writer outside its buffer.
#[derive(Debug)]
pub struct LogWriter<T: AsRef<[u8]> + AsMut<[u8]>> {
    buffer: T,
    mask: u32,
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> LogWriter<T> {
    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// The ring's header and data, as a reader sees them.
    pub fn ring(&self) -> LogRing<&[u8]> {
        LogRing::new_unchecked(self.buffer.as_ref())
    }

    /// Append bytes at `head` (not yet visible to readers). Returns the new, unpublished head.
    pub fn write(&mut self, head: u32, bytes: &[u8]) -> u32 {
        let buf = self.buffer.as_mut();
        let mut at = head;
        for &b in bytes {
            // `mask` < the data length (init), so the index is inside the buffer.
            buf[HEADER_LEN + (at & self.mask) as usize] = b;
            at = at.wrapping_add(1);
        }
        at
    }

    /// Make everything up to `head` visible. The caller orders the data stores before this one.
    pub fn publish(&mut self, head: u32) {
        put_le32(self.buffer.as_mut(), field::HEAD, head);
    }
}

/// What one [`LogReader::poll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Poll {
    /// Bytes handed to the sink.
    pub read: u32,
    /// Bytes overwritten before they could be read (the writer lapped the reader).
    pub lost: u32,
    /// The writer re-initialised the ring (a reboot) since the last poll.
    pub restarted: bool,
}

/// The reading side: remembers how far it has read.
#[derive(Debug, Clone, Default)]
pub struct LogReader {
    cursor: u32,
    generation: Option<u32>,
}

impl LogReader {
    pub const fn new() -> Self {
        LogReader { cursor: 0, generation: None }
    }

    /// Hand every byte published since the last poll to `sink`, oldest first, in at most two slices.
    /// `ring` is a snapshot of the whole ring (header and data).
    pub fn poll(&mut self, ring: &[u8], mut sink: impl FnMut(&[u8])) -> Result<Poll, Error> {
        let ring = LogRing::new_checked(ring)?;
        let mut poll = Poll::default();
        let generation = ring.generation();
        if self.generation != Some(generation) {
            poll.restarted = self.generation.is_some();
            self.generation = Some(generation);
            self.cursor = 0;
        }
        let head = ring.head();
        let capacity = ring.capacity();
        let mut pending = head.wrapping_sub(self.cursor);
        if pending > capacity {
            poll.lost = pending - capacity;
            self.cursor = head.wrapping_sub(capacity);
            pending = capacity;
        }
        let data = &ring.buffer[HEADER_LEN..HEADER_LEN + capacity as usize];
        let start = (self.cursor & (capacity - 1)) as usize;
        let first = core::cmp::min(pending as usize, capacity as usize - start);
        if first > 0 {
            sink(&data[start..start + first]);
        }
        let rest = pending as usize - first;
        if rest > 0 {
            sink(&data[..rest]);
        }
        self.cursor = head;
        poll.read = pending;
        Ok(poll)
    }
}

#[cfg(test)]
// The tests `drop` a writer view to end its borrow of the buffer before reading the buffer back.
#[allow(clippy::drop_non_drop)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn collect(reader: &mut LogReader, ring: &[u8]) -> (Poll, Vec<u8>) {
        let mut out = Vec::new();
        let poll = reader.poll(ring, |b| out.extend_from_slice(b)).unwrap();
        (poll, out)
    }

    #[test]
    fn init_picks_power_of_two_and_writes_le_header() {
        let mut buf = [0u8; HEADER_LEN + 100];
        let ring = LogRing::init(&mut buf[..], 7).unwrap();
        assert_eq!(ring.capacity(), 64);
        assert_eq!(ring.ring().generation(), 7);
        assert_eq!(&buf[0..4], b"BPLG");
        assert_eq!(&buf[4..8], &[64, 0, 0, 0]);
        assert_eq!(&buf[12..16], &[7, 0, 0, 0]);
    }

    #[test]
    fn a_capacity_written_by_the_reader_does_not_move_the_writer() {
        let mut buf = [0u8; HEADER_LEN + 64];
        let mut ring = LogRing::init(&mut buf[..], 1).unwrap();
        for hostile in [0u32, 1 << 20, u32::MAX] {
            ring.buffer[4..8].copy_from_slice(&hostile.to_le_bytes());
            let head = ring.write(0, &[0x5a; 200]);
            ring.publish(head);
            assert_eq!(head, 200);
        }
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(LogRing::new_checked(&[0u8; 8][..]).unwrap_err(), Error::Truncated);
        let mut buf = [0u8; HEADER_LEN + 64];
        assert_eq!(LogRing::new_checked(&buf[..]).unwrap_err(), Error::BadMagic(0));
        LogRing::init(&mut buf[..], 0).unwrap();
        buf[4] = 65;
        assert_eq!(LogRing::new_checked(&buf[..]).unwrap_err(), Error::BadCapacity(65));
        buf[4] = 0;
        buf[5] = 1; // 256: larger than the buffer
        assert_eq!(LogRing::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        assert!(LogRing::init(&mut [0u8; HEADER_LEN + 63][..], 0).is_err());
    }

    #[test]
    fn reads_what_was_published_only() {
        let mut buf = [0u8; HEADER_LEN + 64];
        let mut ring = LogRing::init(&mut buf[..], 1).unwrap();
        let head = ring.write(0, b"hello");
        let mut reader = LogReader::new();
        drop(ring);
        assert_eq!(collect(&mut reader, &buf).1, b"");
        let mut ring = LogWriter { buffer: &mut buf[..], mask: 63 };
        ring.publish(head);
        drop(ring);
        let (poll, out) = collect(&mut reader, &buf);
        assert_eq!(out, b"hello");
        assert_eq!(poll, Poll { read: 5, lost: 0, restarted: false });
    }

    #[test]
    fn overrun_reports_lost_bytes_and_keeps_newest() {
        let mut buf = [0u8; HEADER_LEN + 64];
        let mut ring = LogRing::init(&mut buf[..], 1).unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        let head = ring.write(0, &data);
        ring.publish(head);
        let (poll, out) = collect(&mut LogReader::new(), &buf);
        assert_eq!(poll.lost, 36);
        assert_eq!(out, &data[36..]);
    }

    #[test]
    fn generation_change_restarts_reader() {
        let mut buf = [0u8; HEADER_LEN + 64];
        let mut ring = LogRing::init(&mut buf[..], 1).unwrap();
        let head = ring.write(0, b"first");
        ring.publish(head);
        let mut reader = LogReader::new();
        collect(&mut reader, &buf);
        let mut ring = LogRing::init(&mut buf[..], 2).unwrap();
        let head = ring.write(0, b"xy");
        ring.publish(head);
        let (poll, out) = collect(&mut reader, &buf);
        assert!(poll.restarted);
        assert_eq!(out, b"xy");
    }

    #[test]
    fn head_wraps_at_u32() {
        let mut buf = [0u8; HEADER_LEN + 64];
        let mut ring = LogRing::init(&mut buf[..], 1).unwrap();
        let start = u32::MAX - 2;
        ring.publish(start);
        let mut reader = LogReader::new();
        // Reader starts at 0, far behind: everything but the last capacity bytes is lost.
        let (poll, _) = collect(&mut reader, &buf);
        assert_eq!(poll.lost, start - 64);
        let mut ring = LogWriter { buffer: &mut buf[..], mask: 63 };
        let head = ring.write(start, b"wrap!");
        ring.publish(head);
        let (poll, out) = collect(&mut reader, &buf);
        assert_eq!((poll.read, poll.lost), (5, 0));
        assert_eq!(out, b"wrap!");
    }

    proptest::proptest! {
        /// A hostile writer controls every header byte and every data byte: the reader never panics
        /// and never hands out more than the capacity.
        #[test]
        fn reader_survives_any_ring(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                                    polls in 1usize..4) {
            let mut reader = LogReader::new();
            for _ in 0..polls {
                let mut total = 0usize;
                if let Ok(p) = reader.poll(&bytes, |b| total += b.len()) {
                    proptest::prop_assert_eq!(total, p.read as usize);
                    proptest::prop_assert!(total <= bytes.len());
                }
            }
        }

        /// Whatever the writer appends in whatever chunks, a reader polling in between sees exactly
        /// the stream, or the newest `capacity` bytes of it with the rest counted as lost.
        #[test]
        fn stream_round_trips(chunks in proptest::collection::vec(
                proptest::collection::vec(proptest::num::u8::ANY, 0..90), 0..20)) {
            let mut buf = [0u8; HEADER_LEN + 64];
            LogRing::init(&mut buf[..], 3).unwrap();
            let mut reader = LogReader::new();
            let mut head = 0;
            for chunk in &chunks {
                let mut ring = LogWriter { buffer: &mut buf[..], mask: 63 };
                head = ring.write(head, chunk);
                ring.publish(head);
                drop(ring);
                let (poll, out) = collect(&mut reader, &buf);
                let keep = chunk.len().min(64);
                proptest::prop_assert_eq!(poll.lost as usize, chunk.len() - keep);
                proptest::prop_assert_eq!(&out[..], &chunk[chunk.len() - keep..]);
            }
        }
    }
}
