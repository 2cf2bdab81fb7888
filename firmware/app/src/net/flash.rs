//! Writing an image into the inactive flash slot while the network keeps being served: the
//! update procedure of `bpnet-update` ([`Update`]) over a flash [`Part`] that starts an erase or a
//! word program and returns, and a [`FlashJob`] the main loop advances a few words at a time.
//!
//! A write-buffer page takes about 480 µs to program (a word 60 µs) and a sector 0.5 s to erase;
//! `norflash`'s driver polls the part until each is done, which would hold the main loop for the whole
//! update. Here (with
//! `norflash::command`'s cycles and data polling):
//!
//! * a program (a write-buffer page at a time when the part's CFI advertises a write buffer, else a
//!   word) is started and left pending; the next operation (or [`Part::poll`]) waits for it and checks
//!   the words read back, and a mismatch fails the next operation, so [`Update`] sees every failure as
//!   its own;
//! * the job erases each sector of the target slot itself, before [`Update`] reaches it, and polls
//!   the erase from the main loop; when [`Update`] then asks for that erase, the part knows the sector
//!   was erased (and nothing programmed since) and does not erase it again. The slot is already
//!   recorded empty by then ([`Update::begin`]), so erasing a sector early changes nothing a power cut
//!   could expose;
//! * between words of a step the job sleeps on the decrementer, not in a polling loop, and a step
//!   ends early when the host rings.
//!
//! * the boot-state sector each record write of [`Update::begin`] and [`Update::finish`] goes to is
//!   erased ahead the same way, so the writes themselves take one short record program each.
//!
//! What still holds the main loop: the read back and verification of the whole image at the end
//! (bus reads and SHA-256 of the image, tens of milliseconds per MiB).

use bpnet_control::{JobError, JobProgress};
use bpnet_update::{Layout, Region, Slot, Storage, Update, MPC8349EMDS};
use e300::timebase::Timebase;
use mpc8349emds::FlashBus;
use norflash::{command, Bus, Status, WriteBuffer, MAX_BUFFER_BYTES};
use smoltcp::time::Instant;

use crate::irq;

/// Typical durations (the part's CFI: word 2^6 µs, sector 2^9 ms): when to look first.
const PROGRAM_TYPICAL_US: u64 = 64;
const ERASE_TYPICAL_US: u64 = 512_000;
/// While an erase runs, look again this often.
const ERASE_POLL_US: u64 = 8_000;
/// Bytes a step reads back (2048 bus reads).
const READBACK_CHUNK: usize = 4096;
/// Programs (and waits for them) a step makes at most before the main loop runs again.
const STEP_PROGRAMS: u32 = 32;
/// And the time a step takes at most (the main loop runs again after about this long).
const STEP_US: u64 = 2_000;
/// Words of the largest buffer program.
const BUFFER_WORDS: usize = MAX_BUFFER_BYTES as usize / 2;

/// The board's flash layout, checked at compile time by `bpnet-update`.
pub const LAYOUT: Layout = MPC8349EMDS;

#[derive(Clone, Copy, Debug)]
enum Op {
    Program {
        word: u32,
        value: u16,
    },
    /// A buffer program of `count` words from `word`.
    Buffer {
        word: u32,
        count: usize,
        data: [u16; BUFFER_WORDS],
    },
    Erase {
        offset: u32,
    },
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    op: Op,
    started_us: u64,
}

/// The NOR flash, one operation in flight at a time.
pub struct Part {
    bus: FlashBus,
    tb: Timebase,
    pending: Option<Pending>,
    /// A sector erased (and verified blank at its first word) with nothing programmed since.
    erased: Option<u32>,
    /// A failed operation: every later one fails with it.
    fault: Option<norflash::Error>,
    /// The part's write buffer (CFI), if it has one.
    buffer: Option<WriteBuffer>,
}

impl Part {
    /// The flash in read-array mode (nothing else issues commands while a part exists), its write
    /// buffer as CFI describes it.
    pub fn take(tb: Timebase) -> Part {
        let mut bus = FlashBus::take();
        let buffer = norflash::query(&mut bus).ok().and_then(|g| g.write_buffer);
        Part { bus, tb, pending: None, erased: None, fault: None, buffer }
    }

    /// Bytes one program takes: a write-buffer page, or a word.
    pub fn program_bytes(&self) -> u32 {
        self.buffer.map_or(2, |b| b.bytes)
    }

    fn now_us(&self) -> u64 {
        self.tb.micros()
    }

    fn fail(&mut self, e: norflash::Error) -> norflash::Error {
        self.pending = None;
        self.erased = None;
        self.fault = Some(e);
        e
    }

    /// Whether the pending operation (if any) has ended; its failure (timeout, a word that reads
    /// back wrong, a sector not blank) is returned once and then by every later operation.
    pub fn poll(&mut self) -> Result<bool, norflash::Error> {
        if let Some(e) = self.fault {
            return Err(e);
        }
        let Some(p) = self.pending else { return Ok(true) };
        let (word, timeout) = match p.op {
            Op::Program { word, .. } => (word, norflash::PROGRAM_TIMEOUT_US),
            // Polled at the last word loaded.
            Op::Buffer { word, count, .. } => {
                (word + count as u32 - 1, self.buffer.map_or(norflash::PROGRAM_TIMEOUT_US, |b| b.timeout_us))
            }
            Op::Erase { offset } => (offset / 2, norflash::ERASE_TIMEOUT_US),
        };
        let failed = match command::status(&mut self.bus, word) {
            Status::Ready => false,
            Status::Failed => true,
            Status::Busy if self.now_us().wrapping_sub(p.started_us) > timeout => true,
            Status::Busy => return Ok(false),
        };
        if failed {
            command::reset(&mut self.bus);
            return Err(self.fail(norflash::Error::Timeout { word }));
        }
        self.pending = None;
        match p.op {
            Op::Program { word, value } => {
                let read = self.bus.read(word);
                if read != value {
                    return Err(self.fail(norflash::Error::Verify { word, wrote: value, read }));
                }
            }
            Op::Buffer { word, count, data } => {
                for (i, &value) in data[..count].iter().enumerate() {
                    let at = word + i as u32;
                    let read = self.bus.read(at);
                    if read != value {
                        return Err(self.fail(norflash::Error::Verify { word: at, wrote: value, read }));
                    }
                }
            }
            Op::Erase { offset } => {
                let read = self.bus.read(offset / 2);
                if read != 0xFFFF {
                    return Err(self.fail(norflash::Error::Verify { word: offset / 2, wrote: 0xFFFF, read }));
                }
                self.erased = Some(offset);
            }
        }
        Ok(true)
    }

    /// When the pending operation should be looked at next (timebase microseconds).
    pub fn due_us(&self) -> Option<u64> {
        let p = self.pending?;
        let now = self.now_us();
        Some(
            match p.op {
                Op::Program { .. } => p.started_us + PROGRAM_TYPICAL_US,
                Op::Buffer { .. } => p.started_us + self.buffer.map_or(PROGRAM_TYPICAL_US, |b| u64::from(b.typical_us)),
                Op::Erase { .. } => (p.started_us + ERASE_TYPICAL_US).max(now + ERASE_POLL_US),
            }
            .max(now),
        )
    }

    /// A program is pending: worth sleeping for inside a step.
    fn short_wait(&self) -> bool {
        matches!(self.pending, Some(Pending { op: Op::Program { .. } | Op::Buffer { .. }, .. }))
    }

    /// Sleep on the decrementer until `due_us` (at most 1 ms at a time); an interrupt ends it early.
    fn sleep_until(&self, due_us: u64) {
        let us = due_us.saturating_sub(self.now_us()).clamp(1, 1_000);
        let ticks = us * u64::from(self.tb.hz() / 1_000_000).max(1);
        e300::timebase::arm_decrementer(ticks as u32);
        e300::msr::without_interrupts(e300::wait_for_interrupt);
    }

    /// Wait (sleeping) until nothing is pending.
    fn settle(&mut self) -> Result<(), norflash::Error> {
        while !self.poll()? {
            let due = self.due_us().unwrap_or(0);
            self.sleep_until(due);
        }
        Ok(())
    }

    /// Start erasing the sector at `offset`; [`Part::poll`] says when it is done.
    fn start_erase(&mut self, offset: u32) -> Result<(), norflash::Error> {
        self.settle()?;
        if !offset.is_multiple_of(LAYOUT.sector_bytes) || offset >= LAYOUT.flash_bytes {
            return Err(norflash::Error::Address(offset));
        }
        self.erased = None;
        command::erase_sector(&mut self.bus, offset / 2);
        self.pending = Some(Pending { op: Op::Erase { offset }, started_us: self.now_us() });
        Ok(())
    }

    fn start_program(&mut self, word: u32, value: u16) {
        command::program(&mut self.bus, word, value);
        self.pending = Some(Pending { op: Op::Program { word, value }, started_us: self.now_us() });
    }

    /// Start a buffer program of `words` (one write-buffer page at most) from `word`.
    fn start_buffer(&mut self, word: u32, words: &[u16]) {
        let mut data = [0xFFFF; BUFFER_WORDS];
        data[..words.len()].copy_from_slice(words);
        command::program_buffer(&mut self.bus, word, words);
        let op = Op::Buffer { word, count: words.len(), data };
        self.pending = Some(Pending { op, started_us: self.now_us() });
    }
}

impl Storage for Part {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), norflash::Error> {
        self.settle()?;
        if u64::from(offset) + buf.len() as u64 > u64::from(LAYOUT.flash_bytes) {
            return Err(norflash::Error::Address(offset));
        }
        // Words are big-endian on the bus: the byte at an even offset is the high half. One bus
        // read per word.
        let mut i = 0;
        while i < buf.len() {
            let at = offset + i as u32;
            let word = self.bus.read(at / 2).to_be_bytes();
            if at.is_multiple_of(2) {
                buf[i] = word[0];
                if let Some(next) = buf.get_mut(i + 1) {
                    *next = word[1];
                }
                i += 2;
            } else {
                buf[i] = word[1];
                i += 1;
            }
        }
        Ok(())
    }

    fn erase_sector(&mut self, offset: u32) -> Result<(), norflash::Error> {
        self.settle()?;
        if self.erased.take() == Some(offset) {
            // Erased ahead by the job, nothing programmed since: erasing again would only wear it.
            return Ok(());
        }
        self.start_erase(offset)?;
        self.settle()?;
        self.erased = None;
        Ok(())
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), norflash::Error> {
        self.settle()?;
        let end = u64::from(offset) + data.len() as u64;
        if !offset.is_multiple_of(2) || !data.len().is_multiple_of(2) || end > u64::from(LAYOUT.flash_bytes) {
            return Err(norflash::Error::Address(offset));
        }
        if self.erased.is_some_and(|s| offset / LAYOUT.sector_bytes == s / LAYOUT.sector_bytes) {
            self.erased = None;
        }
        if let Some(buffer) = self.buffer {
            return self.program_buffered(offset, data, buffer.words() as usize);
        }
        let words = data.len() / 2;
        for (i, pair) in data.chunks_exact(2).enumerate() {
            let value = u16::from_be_bytes([pair[0], pair[1]]);
            if value == 0xFFFF {
                continue; // the erased state already
            }
            self.start_program(offset / 2 + i as u32, value);
            // The last word is left to finish while the caller goes on (checked by the next
            // operation or poll); the others are waited for here.
            if i + 1 < words {
                self.settle()?;
            }
        }
        Ok(())
    }
}

impl Part {
    /// [`Storage::program`] through the write buffer: each page's words from the first to the last
    /// that is not 0xFFFF (the erased state already), one buffer program each; the last is left
    /// pending as a word program is.
    fn program_buffered(&mut self, offset: u32, data: &[u8], page_words: usize) -> Result<(), norflash::Error> {
        norflash::for_each_buffer_page(offset, data, page_words as u32, |start, words| {
            self.settle()?;
            self.start_buffer(start, words);
            Ok(())
        })
    }
}

/// One image being written into the inactive slot.
pub struct FlashJob {
    part: Part,
    update: Option<Update>,
    /// [`Update::begin`] has run.
    began: bool,
    len: u32,
    version: u32,
    /// Bytes handed to the update so far.
    pos: u32,
    /// The slot's first byte in flash.
    slot_offset: u32,
    /// The sector the job last started erasing (index within the slot).
    erase_started: Option<u32>,
    erased: u32,
    /// Bytes read back from the slot into the caller's buffer so far.
    read_back: usize,
}

impl FlashJob {
    /// A job for an image of `len` bytes (version `version`); nothing is written before the first
    /// [`FlashJob::step`].
    pub fn new(tb: Timebase, len: u32, version: u32) -> FlashJob {
        FlashJob {
            part: Part::take(tb),
            update: None,
            began: false,
            len,
            version,
            pos: 0,
            slot_offset: 0,
            erase_started: None,
            erased: 0,
            read_back: 0,
        }
    }

    /// Before a boot-state record write (in [`Update::begin`] when it must record the target slot
    /// empty, and in [`Update::finish`]): erase the sector the record will go to, from the main loop,
    /// so that the write itself does not hold the loop for an erase. That sector never holds the
    /// newest record (the store writes the other one), so erasing it early loses nothing a power
    /// cut could need. `Ok(true)` once it is erased.
    fn erase_state_sector(&mut self) -> Result<bool, JobError> {
        let loaded = bpnet_update::storage::load(&mut self.part, &LAYOUT).map_err(JobError::Update)?;
        let offset = LAYOUT.state[loaded.sector.map_or(0, |i| 1 - i)].offset;
        if self.part.erased == Some(offset) {
            return Ok(true);
        }
        self.part.start_erase(offset).map_err(JobError::Flash)?;
        Ok(false)
    }

    /// Whether [`Update::begin`] will write a record (its condition): the target slot is not yet
    /// recorded empty, or is the one on trial.
    fn begin_writes_state(&mut self) -> Result<bool, JobError> {
        let loaded = bpnet_update::storage::load(&mut self.part, &LAYOUT).map_err(JobError::Update)?;
        let Some(state) = loaded.state else { return Ok(false) };
        let target = bpnet_update::update::target(&state);
        Ok(state.slot(target).state != bpnet_update::SlotState::Empty || state.trial == Some(target))
    }
}

impl bpnet_control::FlashJob for FlashJob {
    fn target(&self) -> Option<Slot> {
        self.update.as_ref().map(Update::target)
    }

    fn progress(&self) -> JobProgress {
        JobProgress {
            erased: self.erased,
            sectors: self.len.div_ceil(LAYOUT.sector_bytes),
            programmed: self.pos,
            total: self.len,
            read_back: self.read_back as u32,
        }
    }

    /// The flash part's next look (timebase microseconds, smoltcp's clock on this board).
    fn due(&self) -> Option<Instant> {
        self.part.due_us().map(|us| Instant::from_micros(us as i64))
    }

    /// Advance by up to [`STEP_PROGRAMS`] programs (or waits), for up to [`STEP_US`].
    fn step(
        &mut self,
        image: &[u8],
        readback: &mut [u8],
        verify: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<Slot>, JobError> {
        let sector = LAYOUT.sector_bytes;
        let unit = self.part.program_bytes();
        let step_start = self.part.now_us();
        for _ in 0..STEP_PROGRAMS {
            if self.part.now_us().wrapping_sub(step_start) > STEP_US {
                return Ok(None);
            }
            if !self.part.poll().map_err(JobError::Flash)? {
                // A word program ends within microseconds: sleep for it here unless the host rang.
                if self.part.short_wait() && !irq::doorbells_pending() {
                    let due = self.part.due_us().unwrap_or(0);
                    self.part.sleep_until(due);
                    continue;
                }
                return Ok(None);
            }
            if !self.began {
                if self.begin_writes_state()? && !self.erase_state_sector()? {
                    return Ok(None);
                }
                let update =
                    Update::begin(&mut self.part, &LAYOUT, self.len, self.version).map_err(JobError::Update)?;
                self.slot_offset = LAYOUT.slot(update.target()).offset;
                self.update = Some(update);
                self.began = true;
                continue;
            }
            if self.pos == self.len {
                let len = self.len as usize;
                let (Some(copy), Some(image)) = (readback.get_mut(..len), image.get(..len)) else {
                    return Err(JobError::Readback);
                };
                // The read back, a chunk per step, of everything programmed for good: all but an odd
                // last byte, which [`Update::finish`] programs (padded) before it verifies.
                let settled = (self.len & !1) as usize;
                if self.read_back < settled {
                    let end = (self.read_back + READBACK_CHUNK).min(settled);
                    let at = self.slot_offset + self.read_back as u32;
                    self.part.read(at, &mut copy[self.read_back..end]).map_err(JobError::Flash)?;
                    self.read_back = end;
                    return Ok(None);
                }
                if !self.erase_state_sector()? {
                    return Ok(None);
                }
                let update = self.update.take().ok_or(JobError::Update(bpnet_update::Error::Aborted))?;
                let from = self.read_back;
                let mut matched = false;
                let slot = update
                    .finish(&mut self.part, |part: &mut Part, region: Region| {
                        let tail = part.read(region.offset + from as u32, &mut copy[from..]).is_ok();
                        matched = tail && *copy == *image && verify(copy);
                        matched
                    })
                    .map_err(|e| if matched { JobError::Update(e) } else { JobError::Readback })?;
                self.read_back = len;
                return Ok(Some(slot));
            }
            let index = self.pos / sector;
            if self.pos.is_multiple_of(sector) && self.erase_started != Some(index) {
                let offset = self.slot_offset + self.pos;
                if !LAYOUT.writable(offset, sector) {
                    return Err(JobError::Update(bpnet_update::Error::Refused { offset, len: sector }));
                }
                self.part.start_erase(offset).map_err(JobError::Flash)?;
                self.erase_started = Some(index);
                self.erased += 1;
                return Ok(None);
            }
            // A write-buffer page (or a word) at a time: the slot starts a sector, so `pos` stays
            // page-aligned.
            let end = (self.pos + unit).min(self.len);
            let update = self.update.as_mut().ok_or(JobError::Update(bpnet_update::Error::Aborted))?;
            update.write(&mut self.part, &image[self.pos as usize..end as usize]).map_err(JobError::Update)?;
            self.pos = end;
            if irq::doorbells_pending() {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// The boot state for `STATUS` (a short read of the two boot-state sectors).
pub fn boot_state(tb: Timebase) -> Option<bpnet_update::BootState> {
    let mut part = Part::take(tb);
    bpnet_update::status(&mut part, &LAYOUT).ok().flatten()
}
