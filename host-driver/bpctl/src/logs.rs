//! The agent's defmt log, read from its log ring in the shared region and decoded with the firmware
//! ELF's defmt table, as the emulator does (`tests/emulator/src/log.rs`). It needs nothing of the
//! agent but its memory: it works while the agent's network is down.
//!
//! One poll: the ring's header (magic, capacity, head, generation) once, then only the bytes published
//! since the last poll, then the header again. The contract's [`LogReader`] parses the snapshot. A
//! writer that moved on while the bytes were copied may have overwritten the oldest of them: those
//! are counted as lost and dropped, and decoding resynchronises at the next frame boundary (rzCOBS
//! frames end with 0x00). A writer that re-initialised the ring meanwhile (a reboot) makes the poll
//! start again.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use bpnet_contract::logring::{self, LogReader, LogRing, HEADER_LEN, MIN_CAPACITY};
use defmt_decoder::{DecodeError, Table};
use serde::Serialize;

use crate::region::Region;
use crate::Error;

/// Where the firmware ELF is looked for when neither `--elf` nor an image next to an ELF is given.
pub const DEFAULT_ELF: &str = "/lib/firmware/bpnet/bpnet-firmware.elf";

/// Bytes of one frame the writer may have stored but not yet published when the head is read: the
/// largest defmt frame the firmware writes is far below this.
pub const MAX_FRAME_IN_FLIGHT: u32 = 1024;

/// How many times a poll starts again when the ring was re-initialised while it was copied.
const RETRIES: usize = 5;

/// A partial frame longer than this is garbage (no frame separator for 64 KiB): drop it.
const MAX_PENDING: usize = 64 * 1024;

/// Word reads of shared memory: the agent's [`Region`], or a test's simulated one.
pub trait Memory {
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error>;
}

impl Memory for Region {
    fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        Region::read(self, offset, buf)
    }
}

/// What one poll of the ring found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes published since the last poll that survived the copy, oldest first.
    pub bytes: Vec<u8>,
    /// Bytes overwritten before they could be read: by a lap of the writer before the poll, or while
    /// they were copied.
    pub lost: u64,
    /// The agent re-initialised the ring (rebooted) since the last poll.
    pub restarted: bool,
}

struct RingHeader {
    magic: u32,
    capacity: u32,
    head: u32,
    generation: u32,
}

/// Reads a log ring at a fixed offset of the shared region, poll after poll.
pub struct RingSource {
    offset: usize,
    margin: u32,
    reader: LogReader,
    /// What `reader` has consumed (its own cursor and generation are private): decides which bytes
    /// the next poll must copy.
    cursor: u32,
    generation: Option<u32>,
    snapshot: Vec<u8>,
}

impl RingSource {
    /// A reader of the ring at `offset`; `margin` is [`MAX_FRAME_IN_FLIGHT`] except in tests.
    pub fn new(offset: usize, margin: u32) -> RingSource {
        RingSource { offset, margin, reader: LogReader::new(), cursor: 0, generation: None, snapshot: Vec::new() }
    }

    fn header(&self, mem: &impl Memory) -> Result<RingHeader, Error> {
        let mut h = [0u8; HEADER_LEN];
        mem.read(self.offset, &mut h)?;
        // The header alone: the capacity it states is checked before any data is read.
        let ring = LogRing::new_unchecked(&h[..]);
        Ok(RingHeader {
            magic: ring.magic(),
            capacity: ring.capacity(),
            head: ring.head(),
            generation: ring.generation(),
        })
    }

    pub fn poll(&mut self, mem: &impl Memory) -> Result<Chunk, Error> {
        for _ in 0..RETRIES {
            let first = self.header(mem)?;
            if first.magic != logring::MAGIC {
                return Err(Error::Agent(format!(
                    "no log ring at {:#x} (magic {:#010x}): the firmware has not initialised it",
                    self.offset, first.magic
                )));
            }
            if first.capacity < MIN_CAPACITY || !first.capacity.is_power_of_two() {
                return Err(Error::Agent(format!(
                    "log ring capacity {} is not a power of two >= {MIN_CAPACITY}",
                    first.capacity
                )));
            }
            let cap = first.capacity;
            self.snapshot.resize(HEADER_LEN + cap as usize, 0);
            self.snapshot[..4].copy_from_slice(&first.magic.to_le_bytes());
            self.snapshot[4..8].copy_from_slice(&cap.to_le_bytes());
            self.snapshot[8..12].copy_from_slice(&first.head.to_le_bytes());
            self.snapshot[12..16].copy_from_slice(&first.generation.to_le_bytes());
            // The stream positions the reader will hand out: [start, head).
            let from = if self.generation == Some(first.generation) { self.cursor } else { 0 };
            let pending = first.head.wrapping_sub(from).min(cap);
            let start = first.head.wrapping_sub(pending);
            let at = (start & (cap - 1)) as usize;
            let n = pending as usize;
            let first_len = n.min(cap as usize - at);
            for (s, len) in [(at, first_len), (0, n - first_len)] {
                if len == 0 {
                    continue;
                }
                // Whole words: ring slots are word-aligned (capacity is a power of two >= 64).
                let lo = s & !3;
                let hi = ((s + len + 3) & !3).min(cap as usize);
                let off = self.offset + HEADER_LEN + lo;
                mem.read(off, &mut self.snapshot[HEADER_LEN + lo..HEADER_LEN + hi])?;
            }
            let second = self.header(mem)?;
            if second.magic != first.magic || second.generation != first.generation || second.capacity != cap {
                // Re-initialised while copied: what was copied may be from either boot.
                continue;
            }
            let mut bytes = Vec::with_capacity(n);
            let polled = self
                .reader
                .poll(&self.snapshot, |b| bytes.extend_from_slice(b))
                .map_err(|e| Error::Agent(e.to_string()))?;
            self.generation = Some(first.generation);
            self.cursor = first.head;
            // Bytes before `second.head + margin - cap` may have been overwritten during the copy (the
            // writer's published bytes up to `second.head`, and one frame it may be storing).
            let oldest_safe = second.head.wrapping_add(self.margin).wrapping_sub(cap);
            let read_from = first.head.wrapping_sub(polled.read);
            // Distances are below 2^31: a signed difference tells which is ahead.
            let cut = oldest_safe.wrapping_sub(read_from) as i32;
            let mut lost = u64::from(polled.lost);
            if cut > 0 {
                let drop = (cut as usize).min(bytes.len());
                bytes.drain(..drop);
                lost += drop as u64;
            }
            return Ok(Chunk { bytes, lost, restarted: polled.restarted });
        }
        Err(Error::Agent(format!("the log ring was re-initialised {RETRIES} times while being read")))
    }
}

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    /// A decoded defmt frame.
    Log { timestamp: Option<String>, level: Option<String>, message: String },
    /// Something about the stream: lost bytes, a reboot, an undecodable frame.
    Notice { text: String },
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Line::Log { timestamp, level, message } => {
                if let Some(ts) = timestamp {
                    write!(f, "{ts} ")?;
                }
                if let Some(level) = level {
                    write!(f, "{level:<5} ")?;
                }
                write!(f, "{message}")
            }
            Line::Notice { text } => write!(f, "({text})"),
        }
    }
}

fn notice(text: impl Into<String>) -> Line {
    Line::Notice { text: text.into() }
}

/// Turns chunks into complete frames: keeps a partial frame for the next chunk, and after lost bytes
/// skips to the next frame boundary.
#[derive(Default)]
pub struct Framer {
    pending: Vec<u8>,
    resync: bool,
}

impl Framer {
    /// Notices for the chunk, and its complete frames (each ending with its 0x00) as one buffer.
    pub fn feed(&mut self, chunk: &Chunk) -> (Vec<Line>, Vec<u8>) {
        let mut lines = Vec::new();
        if chunk.restarted {
            lines.push(notice("the agent re-initialised its log ring: it rebooted"));
            self.pending.clear();
            self.resync = false;
        }
        if chunk.lost > 0 {
            lines.push(notice(format!(
                "{} bytes lost: the ring was overwritten before it was read; resynchronising at the next frame",
                chunk.lost
            )));
            self.pending.clear();
            self.resync = true;
        }
        let mut fresh = &chunk.bytes[..];
        if self.resync {
            match fresh.iter().position(|&b| b == 0) {
                Some(zero) => {
                    fresh = &fresh[zero + 1..];
                    self.resync = false;
                }
                None => return (lines, Vec::new()),
            }
        }
        self.pending.extend_from_slice(fresh);
        let frames = match self.pending.iter().rposition(|&b| b == 0) {
            Some(last) => self.pending.drain(..=last).collect(),
            None => Vec::new(),
        };
        if self.pending.len() > MAX_PENDING {
            lines.push(notice(format!("{} bytes without a frame end dropped", self.pending.len())));
            self.pending.clear();
            self.resync = true;
        }
        (lines, frames)
    }
}

/// Decodes complete frames with the ELF's defmt table.
pub struct Decoder {
    table: Table,
}

impl Decoder {
    /// The table of the ELF at `path`.
    pub fn from_elf(path: &Path) -> Result<Decoder, Error> {
        let elf =
            std::fs::read(path).map_err(|e| Error::Io(format!("reading the firmware ELF {}", path.display()), e))?;
        match Table::parse(&elf) {
            Ok(Some(table)) => Ok(Decoder { table }),
            Ok(None) => Err(Error::Usage(format!("{}: no .defmt section: not a bpnet firmware ELF", path.display()))),
            Err(e) => Err(Error::Usage(format!("{}: defmt table unusable: {e}", path.display()))),
        }
    }

    pub fn decode(&self, frames: &[u8]) -> Vec<Line> {
        if frames.is_empty() {
            return Vec::new();
        }
        let table = &self.table;
        // The decoder is third-party code fed with bytes the agent wrote: a panic in it must not end
        // a `--follow`.
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            let mut out = Vec::new();
            let mut decoder = table.new_stream_decoder();
            decoder.received(frames);
            loop {
                match decoder.decode() {
                    Ok(frame) => out.push(Line::Log {
                        timestamp: frame.display_timestamp().map(|t| t.to_string()),
                        level: frame.level().map(|l| l.as_str().to_uppercase()),
                        message: frame.display_message().to_string(),
                    }),
                    Err(DecodeError::UnexpectedEof) => break,
                    Err(DecodeError::Malformed) => {
                        out.push(notice("malformed frame skipped (does the ELF match the firmware the agent runs?)"))
                    }
                }
            }
            out
        }));
        decoded.unwrap_or_else(|_| vec![notice("the defmt decoder failed on these frames; skipped")])
    }
}

/// The firmware ELF to decode with: `--elf`, else the ELF next to `--image` (same name, `.elf`), else
/// [`DEFAULT_ELF`] if present; `None` when there is none.
pub fn find_elf(elf: Option<&Path>, image: Option<&Path>, default: &Path) -> Result<Option<PathBuf>, Error> {
    if let Some(elf) = elf {
        if !elf.is_file() {
            return Err(Error::Usage(format!("--elf {}: no such file", elf.display())));
        }
        return Ok(Some(elf.to_path_buf()));
    }
    if let Some(image) = image {
        let beside = image.with_extension("elf");
        if beside.is_file() {
            return Ok(Some(beside));
        }
        return Err(Error::Usage(format!(
            "--image {}: no firmware ELF beside it ({} does not exist); pass --elf",
            image.display(),
            beside.display()
        )));
    }
    Ok(default.is_file().then(|| default.to_path_buf()))
}

/// Frames in a buffer of complete frames (each ends with 0x00).
pub fn count_frames(frames: &[u8]) -> usize {
    frames.iter().filter(|&&b| b == 0).count()
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::fake::{self, FakeHost};
    use bpnet_contract::shared::LOG_RING_OFFSET;

    /// Shared memory whose writer can act between a reader's accesses: `between(n, mem)` runs before
    /// read number `n` (0 = the first header read).
    struct SimMem<F: FnMut(usize, &mut Vec<u8>)> {
        mem: RefCell<Vec<u8>>,
        reads: Cell<usize>,
        between: RefCell<F>,
    }

    impl<F: FnMut(usize, &mut Vec<u8>)> SimMem<F> {
        fn new(mem: Vec<u8>, between: F) -> Self {
            SimMem { mem: RefCell::new(mem), reads: Cell::new(0), between: RefCell::new(between) }
        }
    }

    impl<F: FnMut(usize, &mut Vec<u8>)> Memory for SimMem<F> {
        fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
            let n = self.reads.get();
            self.reads.set(n + 1);
            (self.between.borrow_mut())(n, &mut self.mem.borrow_mut());
            let mem = self.mem.borrow();
            let src = mem.get(offset..offset + buf.len()).ok_or_else(|| Error::Agent("outside".into()))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn quiet() -> SimMem<impl FnMut(usize, &mut Vec<u8>)> {
        SimMem::new(fake::region(&[b"one\0", b"two\0"]), |_, _| {})
    }

    #[test]
    fn reads_the_ring_through_a_bar_file() {
        let host = FakeHost::new();
        host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        let path = host.write_bar("0000:00:10.0", 2, &fake::region(&[b"net: ready\0"]));
        let region = Region::open(&path).unwrap();
        let mut source = RingSource::new(LOG_RING_OFFSET, MAX_FRAME_IN_FLIGHT);
        let chunk = source.poll(&region).unwrap();
        assert_eq!(chunk, Chunk { bytes: b"net: ready\0".to_vec(), lost: 0, restarted: false });
        assert_eq!(source.poll(&region).unwrap(), Chunk::default());
    }

    #[test]
    fn each_poll_copies_only_what_is_new() {
        let mem = quiet();
        let mut source = RingSource::new(LOG_RING_OFFSET, MAX_FRAME_IN_FLIGHT);
        assert_eq!(source.poll(&mem).unwrap().bytes, b"one\0two\0");
        // Only the new bytes' words are copied, in one read, not the whole ring.
        fake::append(&mut mem.mem.borrow_mut(), LOG_RING_OFFSET, b"three\0");
        let before = mem.reads.get();
        assert_eq!(source.poll(&mem).unwrap().bytes, b"three\0");
        // header, the new bytes, header.
        assert_eq!(mem.reads.get() - before, 3);
    }

    #[test]
    fn a_ring_not_initialised_is_an_error_naming_it() {
        let mem = SimMem::new(vec![0u8; bpnet_contract::shared::LEN], |_, _| {});
        let e = RingSource::new(LOG_RING_OFFSET, MAX_FRAME_IN_FLIGHT).poll(&mem).unwrap_err();
        assert!(e.to_string().contains("no log ring at 0x10000"), "{e}");
        let mut mem = fake::region(&[]);
        mem[LOG_RING_OFFSET + 4] = 65;
        let e = RingSource::new(LOG_RING_OFFSET, MAX_FRAME_IN_FLIGHT).poll(&SimMem::new(mem, |_, _| {})).unwrap_err();
        assert!(e.to_string().contains("capacity"), "{e}");
    }

    /// The writer laps the reader while it copies: the bytes it may have overwritten are counted as
    /// lost, and what is handed out is exactly the stream's bytes at their positions.
    #[test]
    fn bytes_overwritten_during_the_copy_are_dropped_and_counted() {
        let cap = bpnet_contract::shared::LOG_RING_CAPACITY;
        // The stream: byte i is i % 251, so any byte handed out can be checked against its position.
        let stream: Vec<u8> = (0..3 * cap).map(|i| (i % 251) as u8).collect();
        let first = cap / 2;
        let burst = cap - 100;
        let mut written = first;
        let mem = SimMem::new(fake::region(&[&stream[..first]]), |n, mem: &mut Vec<u8>| {
            // Between the data copy (read 1) and the second header read (read 2), the writer adds
            // `burst` bytes: it overwrites the oldest unread bytes.
            if n == 2 {
                fake::append(mem, LOG_RING_OFFSET, &stream[written..written + burst]);
                written += burst;
            }
        });
        let mut source = RingSource::new(LOG_RING_OFFSET, 64);
        let chunk = source.poll(&mem).unwrap();
        // Positions before second_head + margin - cap = first + burst + 64 - cap are unsafe.
        let safe_from = first + burst + 64 - cap;
        assert_eq!(chunk.lost as usize, safe_from);
        assert_eq!(chunk.bytes, &stream[safe_from..first]);
        // The next poll picks up exactly the burst.
        let chunk = source.poll(&mem).unwrap();
        assert_eq!((chunk.lost, &chunk.bytes[..]), (0, &stream[first..first + burst]));
    }

    #[test]
    fn a_ring_re_initialised_during_the_copy_is_read_again() {
        let mut done = false;
        let mem = SimMem::new(fake::region(&[b"old boot\0"]), |n, mem: &mut Vec<u8>| {
            if n == 2 && !done {
                done = true;
                let ring = &mut mem[LOG_RING_OFFSET..LOG_RING_OFFSET + bpnet_contract::shared::LOG_RING_LEN];
                let mut w = logring::LogRing::init(ring, 10).unwrap();
                let head = w.write(0, b"new\0");
                w.publish(head);
            }
        });
        let mut source = RingSource::new(LOG_RING_OFFSET, MAX_FRAME_IN_FLIGHT);
        assert_eq!(source.poll(&mem).unwrap(), Chunk { bytes: b"new\0".to_vec(), lost: 0, restarted: false });
        // A reboot between polls is reported.
        {
            let mut m = mem.mem.borrow_mut();
            let ring = &mut m[LOG_RING_OFFSET..LOG_RING_OFFSET + bpnet_contract::shared::LOG_RING_LEN];
            let mut w = logring::LogRing::init(ring, 11).unwrap();
            let head = w.write(0, b"third\0");
            w.publish(head);
        }
        assert_eq!(source.poll(&mem).unwrap(), Chunk { bytes: b"third\0".to_vec(), lost: 0, restarted: true });
    }

    #[test]
    fn framer_holds_partial_frames_and_resyncs_after_loss() {
        let mut framer = Framer::default();
        let chunk = |bytes: &[u8], lost, restarted| Chunk { bytes: bytes.to_vec(), lost, restarted };
        assert_eq!(framer.feed(&chunk(b"ab\0cd", 0, false)), (vec![], b"ab\0".to_vec()));
        assert_eq!(framer.feed(&chunk(b"e\0", 0, false)), (vec![], b"cde\0".to_vec()));
        // After a loss the first partial frame is skipped up to its end.
        let (lines, frames) = framer.feed(&chunk(b"tail\0next\0", 7, false));
        assert_eq!(frames, b"next\0");
        assert!(matches!(&lines[..], [Line::Notice { text }] if text.starts_with("7 bytes lost")));
        let (lines, frames) = framer.feed(&chunk(b"x\0", 0, true));
        assert_eq!(frames, b"x\0");
        assert!(matches!(&lines[..], [Line::Notice { text }] if text.contains("rebooted")));
        assert_eq!(count_frames(b"a\0b\0\0"), 3);
    }

    #[test]
    fn the_elf_is_the_one_given_then_beside_the_image_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("x.elf");
        let image = dir.path().join("bpnet-firmware.bin");
        let beside = dir.path().join("bpnet-firmware.elf");
        let default = dir.path().join("default.elf");
        std::fs::write(&elf, b"").unwrap();
        std::fs::write(&image, b"").unwrap();
        assert_eq!(find_elf(Some(&elf), None, &default).unwrap(), Some(elf.clone()));
        assert!(find_elf(Some(&dir.path().join("none.elf")), None, &default).is_err());
        assert!(find_elf(None, Some(&image), &default).is_err());
        std::fs::write(&beside, b"").unwrap();
        assert_eq!(find_elf(None, Some(&image), &default).unwrap(), Some(beside));
        assert_eq!(find_elf(None, None, &default).unwrap(), None);
        std::fs::write(&default, b"").unwrap();
        assert_eq!(find_elf(None, None, &default).unwrap(), Some(default));
        assert!(matches!(Decoder::from_elf(&elf), Err(Error::Usage(_))));
    }

    #[test]
    fn lines_print_as_operators_read_them() {
        let l =
            Line::Log { timestamp: Some("1.000200".into()), level: Some("INFO".into()), message: "net: ready".into() };
        assert_eq!(l.to_string(), "1.000200 INFO  net: ready");
        assert_eq!(serde_json::to_value(&l).unwrap()["kind"], "log");
        assert_eq!(notice("x").to_string(), "(x)");
    }
}
