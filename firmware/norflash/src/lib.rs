//! CFI NOR flash with the AMD/Spansion command set (CFI primary vendor 0x0002) on a 16-bit port.
//!
//! Portable: it sees the flash only through [`Bus`] (16-bit reads and writes at word offsets) and time
//! only through [`Clock`]. The board implements both over the local bus window.
//! Command sequences and status bits are in docs/REGISTERS.md ("Local bus NOR flash").
//!
//! A part whose CFI advertises a write buffer (its size at 0x2A, its typical time at 0x20) is programmed
//! a write-buffer page at a time, as the data sheets recommend for more than a few words; a part without
//! one, a word at a time.
#![no_std]
#![forbid(unsafe_code)]

/// 16-bit access to the flash at word offsets from its base.
pub trait Bus {
    fn read(&mut self, word: u32) -> u16;
    fn write(&mut self, word: u32, value: u16);
}

/// Microseconds since some fixed point.
pub trait Clock {
    fn now_us(&mut self) -> u64;
}

const CMD_CFI: u16 = 0x98;

/// Worst cases we wait for before calling the part broken (several times the typical figures).
pub const PROGRAM_TIMEOUT_US: u64 = 2_000;
pub const ERASE_TIMEOUT_US: u64 = 5_000_000;

/// What data polling says about the operation running at a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing running there: the part reads array data again.
    Ready,
    /// Still erasing or programming.
    Busy,
    /// The part gave up (DQ5 while still busy); it needs [`command::reset`].
    Failed,
}

/// One operation's command cycles and its status, without waiting: for a caller that keeps other
/// work going while the part is busy and looks again later. [`Flash`] issues the same cycles and
/// waits in place.
pub mod command {
    use super::{Bus, Status};

    pub(crate) const CMD_RESET: u16 = 0xF0;
    pub(crate) const CMD_PROGRAM: u16 = 0xA0;
    pub(crate) const CMD_ERASE: u16 = 0x80;
    pub(crate) const CMD_SECTOR_ERASE: u16 = 0x30;
    pub(crate) const CMD_WRITE_TO_BUFFER: u16 = 0x25;
    pub(crate) const CMD_BUFFER_CONFIRM: u16 = 0x29;
    pub(crate) const UNLOCK1: (u32, u16) = (0x555, 0xAA);
    pub(crate) const UNLOCK2: (u32, u16) = (0x2AA, 0x55);
    /// Toggles on every status read while the part is busy.
    pub(crate) const DQ6_TOGGLE: u16 = 0x40;
    /// Set while busy when the part has given up.
    pub(crate) const DQ5_TIMEOUT: u16 = 0x20;
    /// Set while a write-buffer sequence is aborted.
    pub(crate) const DQ1_BUFFER_ABORT: u16 = 0x02;

    fn unlock(bus: &mut impl Bus) {
        bus.write(UNLOCK1.0, UNLOCK1.1);
        bus.write(UNLOCK2.0, UNLOCK2.1);
    }

    /// Back to read-array mode (after CFI, or after a failed operation). A part in write-buffer abort
    /// leaves it only on the abort reset (unlock, then the reset command), so that is what is written;
    /// in any other state the unlock cycles followed by the reset command are a plain reset.
    pub fn reset(bus: &mut impl Bus) {
        unlock(bus);
        bus.write(UNLOCK1.0, CMD_RESET);
    }

    /// Start erasing the sector holding `word` (the caller checks it is a sector start).
    pub fn erase_sector(bus: &mut impl Bus, word: u32) {
        unlock(bus);
        bus.write(UNLOCK1.0, CMD_ERASE);
        unlock(bus);
        bus.write(word, CMD_SECTOR_ERASE);
    }

    /// Start programming `value` at `word`: bits only go from 1 to 0.
    pub fn program(bus: &mut impl Bus, word: u32, value: u16) {
        unlock(bus);
        bus.write(UNLOCK1.0, CMD_PROGRAM);
        bus.write(word, value);
    }

    /// Program `data` (at most the write buffer's words, all in one write-buffer page) from `word` on:
    /// the write-to-buffer command at the sector, the count less one, each word, the confirm. Poll
    /// [`status`] at the last word.
    pub fn program_buffer(bus: &mut impl Bus, word: u32, data: &[u16]) {
        let Some(count) = data.len().checked_sub(1) else { return };
        unlock(bus);
        bus.write(word, CMD_WRITE_TO_BUFFER);
        bus.write(word, count as u16);
        for (i, &value) in data.iter().enumerate() {
            bus.write(word + i as u32, value);
        }
        bus.write(word, CMD_BUFFER_CONFIRM);
    }

    /// Data polling at the word being erased or programmed (the last word of a buffer): DQ6 toggles
    /// while busy; DQ5 while it still toggles means the part gave up, DQ1 that a write-buffer sequence
    /// was aborted (either: read twice more, as it may have finished in between).
    pub fn status(bus: &mut impl Bus, word: u32) -> Status {
        let (a, b) = (bus.read(word), bus.read(word));
        if (a ^ b) & DQ6_TOGGLE == 0 {
            return Status::Ready;
        }
        if b & (DQ5_TIMEOUT | DQ1_BUFFER_ABORT) == 0 {
            return Status::Busy;
        }
        let (c, d) = (bus.read(word), bus.read(word));
        if (c ^ d) & DQ6_TOGGLE == 0 {
            Status::Ready
        } else {
            Status::Failed
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No "QRY" at the CFI query address: no flash, or not CFI.
    NotCfi,
    /// A command set other than AMD/Spansion.
    CommandSet(u16),
    /// Geometry this driver does not handle (more than one erase region, odd sizes).
    Geometry,
    /// An address outside the part or not at a sector start.
    Address(u32),
    /// The part reported a failure (DQ5) or did not finish in time.
    Timeout { word: u32 },
    /// Read-back after programming differs.
    Verify { word: u32, wrote: u16, read: u16 },
}

/// What CFI says about the part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub size_bytes: u32,
    pub sector_bytes: u32,
    pub sectors: u32,
    /// The write buffer, if the part has one.
    pub write_buffer: Option<WriteBuffer>,
}

/// A write buffer as CFI describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBuffer {
    /// Bytes per buffer program (2^N at CFI 0x2A): also the write-buffer page, which a buffer
    /// program must not cross.
    pub bytes: u32,
    /// Typical time of a full buffer program (2^N µs at CFI 0x20).
    pub typical_us: u32,
    /// How long to wait before calling the part broken: the maximum (typical × 2^N at CFI 0x24),
    /// at least [`PROGRAM_TIMEOUT_US`].
    pub timeout_us: u64,
}

impl WriteBuffer {
    pub const fn words(&self) -> u32 {
        self.bytes / 2
    }
}

/// Largest write buffer taken (bytes): a part advertising more is driven this much at a time (a
/// smaller aligned chunk never crosses its page), which keeps a buffer's copy small on the stack.
pub const MAX_BUFFER_BYTES: u32 = 64;

impl Geometry {
    pub const fn sector_words(&self) -> u32 {
        self.sector_bytes / 2
    }
}

pub struct Flash<B: Bus> {
    bus: B,
    geometry: Geometry,
}

/// Split `data` (big-endian 16-bit words at byte offset `offset`) into write-buffer pages of
/// `page_words` words and hand `program` each page's first word address and its words from the first
/// to the last that is not 0xFFFF (the erased state already); a page wholly erased is skipped. The
/// one page walk of every buffered programmer (the driver's, the FLASH job's).
pub fn for_each_buffer_page<E>(
    offset: u32,
    data: &[u8],
    page_words: u32,
    mut program: impl FnMut(u32, &[u16]) -> Result<(), E>,
) -> Result<(), E> {
    let mut words = [0u16; MAX_BUFFER_BYTES as usize / 2];
    let mut at = 0;
    while at < data.len() {
        let word = (offset as usize + at) as u32 / 2;
        let n = ((page_words - word % page_words) as usize).min((data.len() - at) / 2);
        for (w, pair) in words.iter_mut().zip(data[at..at + 2 * n].chunks_exact(2)) {
            *w = u16::from_be_bytes([pair[0], pair[1]]);
        }
        at += 2 * n;
        let page = &words[..n];
        let (Some(first), Some(last)) =
            (page.iter().position(|&w| w != 0xFFFF), page.iter().rposition(|&w| w != 0xFFFF))
        else {
            continue;
        };
        program(word + first as u32, &page[first..=last])?;
    }
    Ok(())
}

/// Query CFI for the geometry and write buffer (the part is left in read-array mode), accepting only
/// what this driver handles.
pub fn query(bus: &mut impl Bus) -> Result<Geometry, Error> {
    command::reset(bus);
    bus.write(0x55, CMD_CFI);
    let qry = [bus.read(0x10), bus.read(0x11), bus.read(0x12)];
    let result = (|| {
        if qry != [u16::from(b'Q'), u16::from(b'R'), u16::from(b'Y')] {
            return Err(Error::NotCfi);
        }
        let command_set = bus.read(0x13) | (bus.read(0x14) << 8);
        if command_set != 0x0002 {
            return Err(Error::CommandSet(command_set));
        }
        let size_log2 = u32::from(bus.read(0x27) & 0xFF);
        let regions = bus.read(0x2C) & 0xFF;
        // Region 1: number of sectors - 1 (16 bits), sector size / 256 (16 bits).
        let count = u32::from(bus.read(0x2D) & 0xFF) | (u32::from(bus.read(0x2E) & 0xFF) << 8);
        let unit = u32::from(bus.read(0x2F) & 0xFF) | (u32::from(bus.read(0x30) & 0xFF) << 8);
        if regions != 1 || !(12..=31).contains(&size_log2) || unit == 0 {
            return Err(Error::Geometry);
        }
        let sector_bytes = unit * 256;
        let write_buffer = write_buffer(bus, sector_bytes);
        let geometry = Geometry { size_bytes: 1 << size_log2, sector_bytes, sectors: count + 1, write_buffer };
        if geometry.sectors.checked_mul(geometry.sector_bytes) != Some(geometry.size_bytes) {
            return Err(Error::Geometry);
        }
        Ok(geometry)
    })();
    command::reset(bus);
    result
}

/// The write buffer CFI advertises (in query mode): none if its size (0x2A) or its typical time
/// (0x20) is 0, or it is not a whole number of words dividing the sector.
fn write_buffer(bus: &mut impl Bus, sector_bytes: u32) -> Option<WriteBuffer> {
    let size_log2 = u32::from(bus.read(0x2A) & 0xFF) | (u32::from(bus.read(0x2B) & 0xFF) << 8);
    let typical_log2 = u32::from(bus.read(0x20) & 0xFF);
    let max_log2 = u32::from(bus.read(0x24) & 0xFF);
    if !(1..=16).contains(&size_log2) || !(1..=16).contains(&typical_log2) || max_log2 > 8 {
        return None;
    }
    let bytes = (1u32 << size_log2).min(MAX_BUFFER_BYTES);
    if !sector_bytes.is_multiple_of(bytes) {
        return None;
    }
    let typical_us = 1u32 << typical_log2;
    let timeout_us = (u64::from(typical_us) << max_log2).max(PROGRAM_TIMEOUT_US);
    Some(WriteBuffer { bytes, typical_us, timeout_us })
}

impl<B: Bus> Flash<B> {
    /// Query CFI and accept only what this driver handles.
    pub fn probe(mut bus: B) -> Result<Self, Error> {
        let geometry = query(&mut bus)?;
        Ok(Flash { geometry, bus })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn read(&mut self, word: u32) -> u16 {
        self.bus.read(word)
    }

    /// Wait until the operation at `word` ends.
    fn wait(&mut self, word: u32, clock: &mut impl Clock, timeout_us: u64) -> Result<(), Error> {
        let start = clock.now_us();
        loop {
            let failed = match command::status(&mut self.bus, word) {
                Status::Ready => return Ok(()),
                Status::Failed => true,
                Status::Busy => clock.now_us().wrapping_sub(start) > timeout_us,
            };
            if failed {
                command::reset(&mut self.bus);
                return Err(Error::Timeout { word });
            }
        }
    }

    /// Erase the sector that starts at byte offset `offset`.
    pub fn erase_sector(&mut self, offset: u32, clock: &mut impl Clock) -> Result<(), Error> {
        if !offset.is_multiple_of(self.geometry.sector_bytes) || offset >= self.geometry.size_bytes {
            return Err(Error::Address(offset));
        }
        let word = offset / 2;
        command::erase_sector(&mut self.bus, word);
        self.wait(word, clock, ERASE_TIMEOUT_US)
    }

    /// Program `data` (big-endian 16-bit words, as the bus presents them) at byte offset `offset`,
    /// verifying each word. Bits can only go from 1 to 0: erase first. Through the write buffer, a
    /// write-buffer page at a time, if the part has one.
    pub fn program(&mut self, offset: u32, data: &[u8], clock: &mut impl Clock) -> Result<(), Error> {
        let end = u64::from(offset) + data.len() as u64;
        if !offset.is_multiple_of(2) || !data.len().is_multiple_of(2) || end > u64::from(self.geometry.size_bytes) {
            return Err(Error::Address(offset));
        }
        if let Some(buffer) = self.geometry.write_buffer {
            return self.program_buffered(offset, data, buffer, clock);
        }
        for (i, pair) in data.chunks_exact(2).enumerate() {
            let word = offset / 2 + i as u32;
            let value = u16::from_be_bytes([pair[0], pair[1]]);
            if value == 0xFFFF {
                continue; // erased state already
            }
            command::program(&mut self.bus, word, value);
            self.wait(word, clock, PROGRAM_TIMEOUT_US)?;
            let read = self.bus.read(word);
            if read != value {
                return Err(Error::Verify { word, wrote: value, read });
            }
        }
        Ok(())
    }

    /// [`Flash::program`] through the write buffer: each page's words from the first to the last that
    /// is not 0xFFFF (the erased state already), one buffer program each.
    fn program_buffered(
        &mut self,
        offset: u32,
        data: &[u8],
        buffer: WriteBuffer,
        clock: &mut impl Clock,
    ) -> Result<(), Error> {
        for_each_buffer_page(offset, data, buffer.words(), |start, words| {
            command::program_buffer(&mut self.bus, start, words);
            self.wait(start + words.len() as u32 - 1, clock, buffer.timeout_us)?;
            for (word, &value) in (start..).zip(words) {
                let read = self.bus.read(word);
                if read != value {
                    return Err(Error::Verify { word, wrote: value, read });
                }
            }
            Ok(())
        })
    }

    pub fn release(self) -> B {
        self.bus
    }
}

#[cfg(test)]
mod tests;
