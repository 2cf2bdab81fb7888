//! The local-bus NOR flash (docs/REGISTERS.md, "Local bus NOR flash"): 32 MiB at 0xFE00_0000 on a 16-bit
//! port, a Spansion S29GL256-class part with the AMD command set, 256 uniform 128 KiB sectors.
//!
//! The array lives in a file (the flash image as the core reads it: word w is the big-endian 16-bit value at
//! byte 2w), so contents survive emulator restarts. Programming and erasing take virtual time (word 60 µs,
//! write buffer 480 µs, sector 500 ms); meanwhile reads return status and the result appears when the
//! operation ends.
//!
//! # Write-buffer programming (S29GL-P data sheet, "Write Buffer Programming")
//! Unlock, 0x25 at the sector address, the number of words less one at the sector address, that many
//! address/data pairs, 0x29 at the sector address. The first pair selects the write-buffer page (32 words,
//! aligned); pairs may come in any order and a location loaded twice keeps its last data (each load counts).
//! The part aborts the sequence (DQ1) on a count above 32 words, a write to another sector than the 0x25's,
//! a pair outside the selected page, or anything but 0x29 at the sector after the last pair. Aborted, every
//! read returns status (DQ7 = complement of bit 7 of the last data loaded, DQ6 toggling, DQ1 set) and only
//! the write-to-buffer-abort reset (unlock, 0xF0 at 0x555) returns to read mode. A read while loading is
//! not modelled and stops the run.
//!
//! # Decisions the register table leaves open
//! * Command addresses are decoded on word-offset bits 10:0 (0x555, 0x2AA), as the parts do, so commands
//!   work at any sector's base; the CFI query (0x98) is accepted where bits 7:0 are 0x55.
//! * Status while busy: DQ7 (complement of the programmed bit 7, 0 while erasing) and DQ6 (toggling on every
//!   read); every other bit reads 0. Writes while busy are ignored, except erase suspend (0xB0) and a second
//!   sector-erase command (multi-sector erase), which are not modelled and stop the run. So are autoselect,
//!   unlock bypass and chip erase.
//! * A buffer program takes the full buffer's typical time whatever the count (the data sheet gives only
//!   that figure).
//! * A 32-bit read is two 16-bit reads (the local bus splits it), a byte read one 16-bit read; command writes
//!   must be 16 bits wide.
//! * A board reset (not a power cut) puts the part in read mode; an operation in progress completes first.
//! * CFI: besides the table's fields, typical/maximum timeouts (word program 2^6 µs typical, ×2^3 maximum;
//!   buffer program 2^9 µs, ×2^3; sector erase 2^9 ms, ×2^3), Vcc 2.7-3.6 V, interface x8/x16, a 2^6-byte
//!   write buffer, no chip erase, and a minimal "PRI" extended table at 0x40 (version 1.3, no erase suspend,
//!   no protection, uniform sectors).

use bpnet_update::MPC8349EMDS;

use crate::memory::Region;
use crate::time::PS_PER_INSTRUCTION;

pub const FLASH_BASE: u32 = 0xFE00_0000;
/// The part's size and sector: the board's flash layout's (`bpnet_update::MPC8349EMDS`).
pub const FLASH_SIZE: u32 = MPC8349EMDS.flash_bytes;
pub const SECTOR_BYTES: u32 = MPC8349EMDS.sector_bytes;
const SECTOR_WORDS: u32 = SECTOR_BYTES / 2;

/// Instructions (core cycles) for a duration in picoseconds, rounded up.
const fn instructions(ps: u64) -> u64 {
    ps.div_ceil(PS_PER_INSTRUCTION)
}
/// Word program: 60 µs.
pub const PROGRAM_INSTRUCTIONS: u64 = instructions(60_000_000);
/// Write-buffer program of up to [`BUFFER_WORDS`] words: 480 µs.
pub const BUFFER_PROGRAM_INSTRUCTIONS: u64 = instructions(480_000_000);
/// Sector erase: 500 ms.
pub const ERASE_INSTRUCTIONS: u64 = instructions(500_000_000_000);

/// Words in the write buffer (a write-buffer page: aligned, within one sector).
pub const BUFFER_WORDS: u32 = 32;

const DQ7: u16 = 0x80;
const DQ6: u16 = 0x40;
/// Set in status reads while a write-buffer sequence is aborted.
const DQ1: u16 = 0x02;

/// A write-buffer sequence being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Buffer {
    sector: u32,
    /// The write-buffer page (word offset / [`BUFFER_WORDS`]) the first pair selected.
    page: Option<u32>,
    /// Loads still expected.
    left: u32,
    data: [u16; BUFFER_WORDS as usize],
    /// Bit i: location i of the page was loaded.
    loaded: u32,
    /// The last data loaded (DQ7 of the status is its complement).
    last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Unlocked1,
    Unlocked2,
    ProgramSetup,
    EraseSetup,
    EraseUnlocked1,
    EraseUnlocked2,
    Cfi,
    /// 0x25 written at `sector`: the count comes next.
    BufferCount {
        sector: u32,
    },
    BufferLoad(Buffer),
    /// Every pair loaded: 0x29 at the sector comes next.
    BufferConfirm(Buffer),
    /// The sequence was aborted (DQ1); the abort reset's unlock cycles seen so far.
    Aborted {
        last: u16,
        unlocked: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Program { word: u32, value: u16 },
    Buffer { page: u32, data: [u16; BUFFER_WORDS as usize], loaded: u32, last: u16 },
    Erase { sector: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Operation {
    kind: Kind,
    started: u64,
    ends: u64,
    /// 1-based count since power-on of the emulator run.
    number: u64,
}

pub struct Flash {
    array: Region,
    mode: Mode,
    op: Option<Operation>,
    dq6: bool,
    operations: u64,
    power_cut_at: Option<u64>,
}

/// The CFI query table: (word offset, value).
const CFI: &[(u32, u16)] = &[
    (0x10, b'Q' as u16),
    (0x11, b'R' as u16),
    (0x12, b'Y' as u16),
    (0x13, 0x02),
    (0x14, 0x00),
    (0x15, 0x40),
    (0x16, 0x00),
    (0x1B, 0x27),
    (0x1C, 0x36),
    (0x1F, 0x06),
    (0x20, 0x09),
    (0x21, 0x09),
    (0x23, 0x03),
    (0x24, 0x03),
    (0x25, 0x03),
    (0x27, 25),
    (0x28, 0x02),
    (0x2A, 0x06),
    (0x2C, 0x01),
    (0x2D, 0xFF),
    (0x2E, 0x00),
    (0x2F, 0x00),
    (0x30, 0x02),
    (0x40, b'P' as u16),
    (0x41, b'R' as u16),
    (0x42, b'I' as u16),
    (0x43, b'1' as u16),
    (0x44, b'3' as u16),
];

impl Flash {
    /// `array` must be [`FLASH_SIZE`] bytes.
    pub fn new(array: Region, power_cut_at: Option<u64>) -> Flash {
        Flash { array, mode: Mode::Read, op: None, dq6: false, operations: 0, power_cut_at }
    }

    /// Program and erase operations started so far.
    pub fn operations(&self) -> u64 {
        self.operations
    }

    /// When the operation in progress ends.
    pub fn busy_until(&self) -> Option<u64> {
        self.op.map(|o| o.ends)
    }

    /// Whether a sector erase is in progress.
    pub fn erasing(&self) -> bool {
        matches!(self.op, Some(Operation { kind: Kind::Erase { .. }, .. }))
    }

    /// When the power is to be cut: half-way through the operation chosen by `power_cut_at`, once it runs.
    pub fn cut_time(&self) -> Option<u64> {
        let op = self.op?;
        (Some(op.number) == self.power_cut_at).then(|| op.started + (op.ends - op.started) / 2)
    }

    fn word(&self, w: u32) -> u16 {
        let mut b = [0xFF; 2];
        self.array.read(u64::from(w) * 2, &mut b);
        u16::from_be_bytes(b)
    }

    fn set_word(&self, w: u32, v: u16) {
        self.array.write(u64::from(w) * 2, &v.to_be_bytes());
    }

    /// Finish an operation whose time has come.
    pub fn advance(&mut self, now: u64) {
        if self.op.is_some_and(|o| o.ends <= now) {
            self.finish();
        }
    }

    fn finish(&mut self) {
        let Some(op) = self.op.take() else { return };
        match op.kind {
            Kind::Program { word, value } => self.set_word(word, self.word(word) & value),
            Kind::Buffer { page, data, loaded, .. } => self.program_buffer(page, &data, loaded),
            Kind::Erase { sector } => {
                self.array.fill(u64::from(sector * SECTOR_BYTES), u64::from(SECTOR_BYTES), 0xFF);
            }
        }
        self.mode = Mode::Read;
    }

    /// Program the locations of `page` that `loaded` names with their `data`.
    fn program_buffer(&self, page: u32, data: &[u16; BUFFER_WORDS as usize], loaded: u32) {
        for (i, &value) in data.iter().enumerate() {
            if loaded & (1 << i) != 0 {
                let w = page * BUFFER_WORDS + i as u32;
                self.set_word(w, self.word(w) & value);
            }
        }
    }

    /// A board reset: read mode; an operation in progress completes first.
    pub fn reset(&mut self) {
        self.finish();
        self.mode = Mode::Read;
    }

    /// Power fails half-way through the operation in progress: a word keeps the lower-order half of the bits
    /// it was to lose cleared (rounded down), a write buffer has the lower-addressed half of its loaded
    /// locations (rounded down) programmed and the rest untouched, a sector has its first half erased and the
    /// rest untouched. The part comes back in read mode.
    pub fn power_cut(&mut self) {
        if let Some(op) = self.op.take() {
            match op.kind {
                Kind::Program { word, value } => {
                    let old = self.word(word);
                    let mut to_clear = old & !value;
                    let mut keep = to_clear.count_ones() / 2;
                    let mut cleared = 0u16;
                    while keep > 0 {
                        let lowest = to_clear & to_clear.wrapping_neg();
                        cleared |= lowest;
                        to_clear &= !lowest;
                        keep -= 1;
                    }
                    self.set_word(word, old & !cleared);
                }
                Kind::Buffer { page, data, loaded, .. } => {
                    let mut half = loaded;
                    for _ in 0..loaded.count_ones().div_ceil(2) {
                        half &= !(1 << (31 - half.leading_zeros()));
                    }
                    self.program_buffer(page, &data, half);
                }
                Kind::Erase { sector } => {
                    self.array.fill(u64::from(sector * SECTOR_BYTES), u64::from(SECTOR_BYTES / 2), 0xFF);
                }
            }
        }
        self.mode = Mode::Read;
    }

    fn status(&mut self, op: Operation) -> u16 {
        let dq7 = match op.kind {
            Kind::Program { value, .. } | Kind::Buffer { last: value, .. } => !value & DQ7,
            Kind::Erase { .. } => 0,
        };
        self.dq6 = !self.dq6;
        dq7 | if self.dq6 { DQ6 } else { 0 }
    }

    fn read_word(&mut self, w: u32) -> u16 {
        if let Some(op) = self.op {
            return self.status(op);
        }
        match self.mode {
            Mode::Cfi => CFI.iter().find(|&&(at, _)| at == w).map_or(0, |&(_, v)| v),
            Mode::Aborted { last, .. } => {
                self.dq6 = !self.dq6;
                (!last & DQ7) | if self.dq6 { DQ6 } else { 0 } | DQ1
            }
            _ => self.word(w),
        }
    }

    /// A core read of `size` bytes at byte `offset` in the flash window at instruction count `now`.
    pub fn read(&mut self, offset: u32, size: u32, now: u64) -> Result<u32, String> {
        self.advance(now);
        if !matches!(size, 1 | 2 | 4) || !offset.is_multiple_of(size) {
            return Err(format!("unaligned {size}-byte flash read"));
        }
        if matches!(self.mode, Mode::BufferCount { .. } | Mode::BufferLoad(_) | Mode::BufferConfirm(_))
            && self.op.is_none()
        {
            return Err("a read while loading the write buffer is not modelled".to_string());
        }
        let w = offset / 2;
        Ok(match size {
            1 => {
                let v = self.read_word(w);
                u32::from(if offset.is_multiple_of(2) { v >> 8 } else { v & 0xFF })
            }
            2 => u32::from(self.read_word(w)),
            _ => (u32::from(self.read_word(w)) << 16) | u32::from(self.read_word(w + 1)),
        })
    }

    /// A core write at byte `offset`: a command cycle. `Ok(true)` if it started a program or erase
    /// operation.
    pub fn write(&mut self, offset: u32, size: u32, value: u32, now: u64) -> Result<bool, String> {
        self.advance(now);
        if size != 2 || !offset.is_multiple_of(2) {
            return Err(format!(
                "{size}-byte flash write: commands and data go to the 16-bit port as aligned 16-bit writes"
            ));
        }
        let w = offset / 2;
        let cmd = value as u16;
        let addr = w & 0x7FF;
        if self.op.is_some() {
            return match cmd {
                0xB0 => Err("erase suspend is not modelled".to_string()),
                0x30 => Err("multi-sector erase (a second 0x30 while erasing) is not modelled".to_string()),
                _ => Ok(false),
            };
        }
        // Every cycle leaves the part in read mode unless it continues a sequence (a refused command too).
        let mode = std::mem::replace(&mut self.mode, Mode::Read);
        if let Some(next) = self.buffer_cycle(mode, w, cmd, now) {
            self.mode = next?;
            return Ok(self.op.is_some());
        }
        if cmd == 0xF0 && mode != Mode::ProgramSetup {
            return Ok(false);
        }
        let next = match (mode, addr, cmd) {
            (Mode::Cfi, _, _) => Mode::Cfi,
            (Mode::Read, 0x555, 0xAA) => Mode::Unlocked1,
            (Mode::Read, _, 0x98) if w & 0xFF == 0x55 => Mode::Cfi,
            (Mode::Unlocked1, 0x2AA, 0x55) => Mode::Unlocked2,
            (Mode::Unlocked2, 0x555, 0xA0) => Mode::ProgramSetup,
            (Mode::Unlocked2, 0x555, 0x80) => Mode::EraseSetup,
            (Mode::Unlocked2, 0x555, 0x90) => return Err("autoselect is not modelled".to_string()),
            (Mode::Unlocked2, 0x555, 0x20) => return Err("unlock bypass is not modelled".to_string()),
            (Mode::Unlocked2, _, 0x25) => Mode::BufferCount { sector: w / SECTOR_WORDS },
            (Mode::ProgramSetup, _, _) => {
                self.start(Kind::Program { word: w, value: cmd }, now, PROGRAM_INSTRUCTIONS);
                return Ok(true);
            }
            (Mode::EraseSetup, 0x555, 0xAA) => Mode::EraseUnlocked1,
            (Mode::EraseUnlocked1, 0x2AA, 0x55) => Mode::EraseUnlocked2,
            (Mode::EraseUnlocked2, _, 0x30) => {
                let sector = w / SECTOR_WORDS;
                self.start(Kind::Erase { sector }, now, ERASE_INSTRUCTIONS);
                return Ok(true);
            }
            (Mode::EraseUnlocked2, 0x555, 0x10) => return Err("chip erase is not modelled".to_string()),
            // Anything else breaks the sequence: back to reading the array.
            _ => Mode::Read,
        };
        self.mode = next;
        Ok(false)
    }

    /// A cycle of a write-buffer sequence (or of the abort reset): the next mode, or `None` when `mode` is
    /// not one of those.
    fn buffer_cycle(&mut self, mode: Mode, w: u32, cmd: u16, now: u64) -> Option<Result<Mode, String>> {
        let in_sector = |sector: u32| w / SECTOR_WORDS == sector;
        let abort = |last: u16| Some(Ok(Mode::Aborted { last, unlocked: 0 }));
        match mode {
            Mode::BufferCount { sector } => {
                if !in_sector(sector) || u32::from(cmd) >= BUFFER_WORDS {
                    return abort(0xFFFF);
                }
                let left = u32::from(cmd) + 1;
                let buffer =
                    Buffer { sector, page: None, left, data: [0xFFFF; BUFFER_WORDS as usize], loaded: 0, last: 0xFFFF };
                Some(Ok(Mode::BufferLoad(buffer)))
            }
            Mode::BufferLoad(mut b) => {
                let page = *b.page.get_or_insert(w / BUFFER_WORDS);
                if !in_sector(b.sector) || w / BUFFER_WORDS != page {
                    return abort(b.last);
                }
                let i = w % BUFFER_WORDS;
                b.data[i as usize] = cmd;
                b.loaded |= 1 << i;
                b.last = cmd;
                b.left -= 1;
                Some(Ok(if b.left == 0 { Mode::BufferConfirm(b) } else { Mode::BufferLoad(b) }))
            }
            Mode::BufferConfirm(b) => {
                if cmd != 0x29 || !in_sector(b.sector) {
                    return abort(b.last);
                }
                let page = b.page.unwrap_or(0);
                let kind = Kind::Buffer { page, data: b.data, loaded: b.loaded, last: b.last };
                self.start(kind, now, BUFFER_PROGRAM_INSTRUCTIONS);
                Some(Ok(Mode::Read))
            }
            // Only the write-to-buffer-abort reset leaves the abort; any other cycle starts it over.
            Mode::Aborted { last, unlocked } => Some(Ok(match (unlocked, w & 0x7FF, cmd) {
                (0, 0x555, 0xAA) => Mode::Aborted { last, unlocked: 1 },
                (1, 0x2AA, 0x55) => Mode::Aborted { last, unlocked: 2 },
                (2, 0x555, 0xF0) => Mode::Read,
                _ => Mode::Aborted { last, unlocked: 0 },
            })),
            _ => None,
        }
    }

    fn start(&mut self, kind: Kind, now: u64, duration: u64) {
        self.operations += 1;
        self.op = Some(Operation { kind, started: now, ends: now + duration, number: self.operations });
        self.mode = Mode::Read;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{open_shared, SharedFile};

    fn part(cut: Option<u64>) -> (SharedFile, Flash) {
        let mut f = open_shared(None, "bpnet-emu-test-", u64::from(FLASH_SIZE), 0xFF, false).unwrap();
        // SAFETY: the mapping is returned with the flash and outlives it in every test.
        let r = unsafe { Region::of(&mut f.map) };
        (f, Flash::new(r, cut))
    }

    fn cmd(f: &mut Flash, word: u32, v: u16, now: u64) -> bool {
        f.write(word * 2, 2, u32::from(v), now).unwrap()
    }

    fn unlock(f: &mut Flash, now: u64) {
        cmd(f, 0x555, 0xAA, now);
        cmd(f, 0x2AA, 0x55, now);
    }

    fn program(f: &mut Flash, word: u32, v: u16, now: u64) -> bool {
        unlock(f, now);
        cmd(f, 0x555, 0xA0, now);
        cmd(f, word, v, now)
    }

    fn erase(f: &mut Flash, word: u32, now: u64) -> bool {
        unlock(f, now);
        cmd(f, 0x555, 0x80, now);
        unlock(f, now);
        cmd(f, word, 0x30, now)
    }

    #[test]
    fn timings_are_the_tables() {
        assert_eq!(PROGRAM_INSTRUCTIONS, 32_000);
        assert_eq!(BUFFER_PROGRAM_INSTRUCTIONS, 256_000);
        assert_eq!(ERASE_INSTRUCTIONS, 266_666_667);
    }

    #[test]
    fn cfi_query_describes_the_part() {
        let (_f, mut flash) = part(None);
        cmd(&mut flash, 0x55, 0x98, 0);
        let r = |flash: &mut Flash, w: u32| flash.read(w * 2, 2, 0).unwrap();
        assert_eq!([r(&mut flash, 0x10), r(&mut flash, 0x11), r(&mut flash, 0x12)], [0x51, 0x52, 0x59]);
        assert_eq!(r(&mut flash, 0x13) | (r(&mut flash, 0x14) << 8), 0x0002);
        assert_eq!(r(&mut flash, 0x27), 25);
        assert_eq!(r(&mut flash, 0x2C), 1);
        let count = r(&mut flash, 0x2D) | (r(&mut flash, 0x2E) << 8);
        let unit = r(&mut flash, 0x2F) | (r(&mut flash, 0x30) << 8);
        assert_eq!((count + 1) * unit * 256, FLASH_SIZE);
        cmd(&mut flash, 0, 0xF0, 0);
        assert_eq!(r(&mut flash, 0x10), 0xFFFF, "back to the erased array");
    }

    #[test]
    fn program_ands_and_takes_sixty_microseconds() {
        let (_f, mut flash) = part(None);
        assert!(program(&mut flash, 0x100, 0x12F4, 1000));
        assert_eq!(flash.operations(), 1);
        // Busy: DQ6 toggles, DQ7 = !bit 7 of the data (0x12F4 has bit 7 set → 0).
        let a = flash.read(0x200, 2, 1001).unwrap();
        let b = flash.read(0x200, 2, 1002).unwrap();
        assert_ne!(a & 0x40, b & 0x40);
        assert_eq!((a | b) & 0xFFBF, 0);
        let end = 1000 + PROGRAM_INSTRUCTIONS;
        assert_eq!(flash.busy_until(), Some(end));
        assert_eq!(flash.read(0x200, 2, end).unwrap(), 0x12F4);
        // Bits only go 1 → 0.
        program(&mut flash, 0x100, 0xFF0F, end);
        assert_eq!(flash.read(0x200, 2, end + PROGRAM_INSTRUCTIONS).unwrap(), 0x1204);
        // 32-bit and byte reads of the array.
        assert_eq!(flash.read(0x200, 4, end * 3).unwrap(), 0x1204_FFFF);
        assert_eq!(flash.read(0x201, 1, end * 3).unwrap(), 0x04);
    }

    #[test]
    fn sector_erase_takes_half_a_second_and_dq7_is_zero() {
        let (_f, mut flash) = part(None);
        program(&mut flash, 3 * SECTOR_WORDS + 5, 0, 0);
        flash.advance(PROGRAM_INSTRUCTIONS);
        program(&mut flash, 4 * SECTOR_WORDS, 0, PROGRAM_INSTRUCTIONS);
        let t = 2 * PROGRAM_INSTRUCTIONS;
        assert!(erase(&mut flash, 3 * SECTOR_WORDS + 77, t));
        let s = flash.read(0, 2, t + 1).unwrap();
        assert_eq!(s & 0x80, 0);
        // Writes while busy are ignored; suspend is not modelled.
        assert!(!cmd(&mut flash, 0, 0xF0, t + 2));
        assert!(flash.write(0, 2, 0xB0, t + 3).is_err());
        let end = t + ERASE_INSTRUCTIONS;
        assert_eq!(flash.read((3 * SECTOR_WORDS + 5) * 2, 2, end).unwrap(), 0xFFFF);
        assert_eq!(flash.read(4 * SECTOR_WORDS * 2, 2, end).unwrap(), 0, "other sector kept");
        assert_eq!(flash.operations(), 3);
    }

    #[test]
    fn wrong_sequences_return_to_read_mode_and_refusals() {
        let (_f, mut flash) = part(None);
        cmd(&mut flash, 0x555, 0xAA, 0);
        cmd(&mut flash, 0x2AB, 0x55, 0); // wrong address
        cmd(&mut flash, 0x555, 0xA0, 0);
        assert!(!cmd(&mut flash, 0x10, 0x0000, 0), "not programming");
        assert_eq!(flash.read(0x20, 2, 0).unwrap(), 0xFFFF);
        assert!(flash.write(0, 4, 0xF0, 0).is_err());
        assert!(flash.write(1, 2, 0xF0, 0).is_err());
        let (_g, mut other) = part(None);
        unlock(&mut other, 0);
        assert!(other.write(0x555 * 2, 2, 0x90, 0).is_err());
        unlock(&mut other, 0);
        cmd(&mut other, 0x555, 0x80, 0);
        unlock(&mut other, 0);
        assert!(other.write(0x555 * 2, 2, 0x10, 0).is_err());
        let base = 7 * SECTOR_WORDS;
        cmd(&mut other, base + 0x555, 0xAA, 0);
        cmd(&mut other, base + 0x2AA, 0x55, 0);
        cmd(&mut other, base + 0x555, 0xA0, 0);
        assert!(cmd(&mut other, base + 3, 0x00FF, 0));
    }

    #[test]
    fn power_cut_leaves_half_done_work() {
        let (_f, mut flash) = part(Some(2));
        program(&mut flash, 0, 0x0000, 0);
        assert_eq!(flash.cut_time(), None, "operation 1 is not the one");
        flash.advance(PROGRAM_INSTRUCTIONS);
        let t = PROGRAM_INSTRUCTIONS;
        program(&mut flash, 1, 0xF00F, t); // 8 bits to clear: 0x0FF0
        assert_eq!(flash.cut_time(), Some(t + PROGRAM_INSTRUCTIONS / 2));
        flash.power_cut();
        assert_eq!(flash.busy_until(), None);
        // Of the eight bits 0x0FF0 to clear, the lower four (0x00F0) are.
        assert_eq!(flash.read(2, 2, t + 1).unwrap(), 0xFF0F);
        assert_eq!(flash.read(0, 2, t + 1).unwrap(), 0x0000);

        let (_g, mut flash) = part(Some(1));
        flash.set_word(5 * SECTOR_WORDS, 0x1111);
        flash.set_word(5 * SECTOR_WORDS + SECTOR_WORDS / 2, 0x2222);
        erase(&mut flash, 5 * SECTOR_WORDS, 0);
        assert_eq!(flash.cut_time(), Some(ERASE_INSTRUCTIONS / 2));
        flash.power_cut();
        assert_eq!(flash.word(5 * SECTOR_WORDS), 0xFFFF);
        assert_eq!(flash.word(5 * SECTOR_WORDS + SECTOR_WORDS / 2), 0x2222);
    }

    /// Unlock, write-to-buffer at `sector_word`, the count less one, the pairs, the confirm.
    fn load_buffer(f: &mut Flash, sector_word: u32, pairs: &[(u32, u16)], now: u64) {
        unlock(f, now);
        cmd(f, sector_word, 0x25, now);
        cmd(f, sector_word, pairs.len() as u16 - 1, now);
        for &(w, v) in pairs {
            cmd(f, w, v, now);
        }
    }

    fn aborted(f: &mut Flash, now: u64) -> bool {
        let (a, b) = (f.read(0, 2, now).unwrap(), f.read(0, 2, now).unwrap());
        (a ^ b) & u32::from(DQ6) != 0 && b & u32::from(DQ1) != 0
    }

    #[test]
    fn cfi_describes_the_write_buffer() {
        let (_f, mut flash) = part(None);
        cmd(&mut flash, 0x55, 0x98, 0);
        let r = |flash: &mut Flash, w: u32| flash.read(w * 2, 2, 0).unwrap();
        assert_eq!(1 << (r(&mut flash, 0x2A) | (r(&mut flash, 0x2B) << 8)), BUFFER_WORDS * 2);
        // Typical times: 2^N µs, the figures the model takes rounded up to a power of two.
        assert_eq!(1 << r(&mut flash, 0x1F), 64);
        assert_eq!(1 << r(&mut flash, 0x20), 512);
        assert!(BUFFER_PROGRAM_INSTRUCTIONS <= instructions(512_000_000));
        assert!(PROGRAM_INSTRUCTIONS <= instructions(64_000_000));
        assert_ne!(r(&mut flash, 0x24), 0, "a maximum buffer time");
    }

    #[test]
    fn buffer_program_loads_confirms_and_takes_480_microseconds() {
        let (_f, mut flash) = part(None);
        let sector = 9 * SECTOR_WORDS;
        let page = sector + 3 * BUFFER_WORDS;
        // In any order, a location loaded twice keeps its last data.
        let pairs = [(page + 5, 0x1234), (page, 0xFF7F), (page + 31, 0x0000), (page + 5, 0x5678)];
        load_buffer(&mut flash, sector + 100, &pairs, 10);
        assert!(flash.write(0, 2, 0x0000, 10).is_ok());
        // That 0x0000 at word 0 was not the confirm at the sector: aborted.
        assert!(aborted(&mut flash, 11));
        let (_g, mut flash) = part(None);
        load_buffer(&mut flash, sector + 100, &pairs, 10);
        assert!(flash.read(0, 2, 10).is_err(), "a read while loading is not modelled");
        let (_g, mut flash) = part(None);
        load_buffer(&mut flash, sector + 100, &pairs, 10);
        assert!(cmd(&mut flash, sector + 7, 0x29, 10), "the confirm starts it");
        assert_eq!(flash.operations(), 1);
        let end = 10 + BUFFER_PROGRAM_INSTRUCTIONS;
        assert_eq!(flash.busy_until(), Some(end));
        // Busy: DQ7 is the complement of the last data loaded's (0x5678: bit 7 clear → DQ7 set).
        let (a, b) = (flash.read(0, 2, 11).unwrap(), flash.read(0, 2, 12).unwrap());
        assert_ne!(a & 0x40, b & 0x40);
        assert_eq!((a | b) & 0xFFBF, 0x80);
        assert_eq!(flash.read((page + 5) * 2, 2, end).unwrap(), 0x5678);
        assert_eq!(flash.read(page * 2, 2, end).unwrap(), 0xFF7F);
        assert_eq!(flash.read((page + 31) * 2, 2, end).unwrap(), 0x0000);
        assert_eq!(flash.read((page + 1) * 2, 2, end).unwrap(), 0xFFFF);
        assert_eq!(flash.read((page + 32) * 2, 2, end).unwrap(), 0xFFFF);
    }

    #[test]
    fn buffer_aborts_as_the_part_does_and_the_abort_reset_ends_it() {
        let sector = 2 * SECTOR_WORDS;
        // Count too large: 33 words.
        let (_f, mut flash) = part(None);
        unlock(&mut flash, 0);
        cmd(&mut flash, sector, 0x25, 0);
        cmd(&mut flash, sector, BUFFER_WORDS as u16, 0);
        assert!(aborted(&mut flash, 0));
        // Count written in another sector.
        let (_f, mut flash) = part(None);
        unlock(&mut flash, 0);
        cmd(&mut flash, sector, 0x25, 0);
        cmd(&mut flash, sector + SECTOR_WORDS, 1, 0);
        assert!(aborted(&mut flash, 0));
        // A pair in another sector, a pair outside the selected page.
        for stray in [sector + SECTOR_WORDS + 1, sector + BUFFER_WORDS] {
            let (_f, mut flash) = part(None);
            load_buffer(&mut flash, sector, &[(sector + 1, 0), (stray, 0)], 0);
            assert!(aborted(&mut flash, 0), "{stray:#x}");
            // Aborted: nothing programmed, no operation, a plain reset and other cycles are ignored.
            assert!(!cmd(&mut flash, 0, 0xF0, 0));
            assert!(!cmd(&mut flash, sector, 0x29, 0));
            assert!(aborted(&mut flash, 0));
            assert_eq!(flash.operations(), 0);
            // The write-to-buffer-abort reset: unlock, 0xF0.
            unlock(&mut flash, 0);
            cmd(&mut flash, 0x555, 0xF0, 0);
            assert!(!aborted(&mut flash, 0));
            assert_eq!(flash.word(sector + 1), 0xFFFF);
            assert_eq!(flash.word(stray), 0xFFFF);
            // And the part takes commands again.
            assert!(program(&mut flash, sector + 1, 0x1111, 0));
        }
        // A confirm at another sector.
        let (_f, mut flash) = part(None);
        load_buffer(&mut flash, sector, &[(sector + 1, 0)], 0);
        assert!(!cmd(&mut flash, sector + SECTOR_WORDS, 0x29, 0));
        assert!(aborted(&mut flash, 0));
        // A board reset ends an abort too.
        flash.reset();
        assert!(!aborted(&mut flash, 0));
    }

    #[test]
    fn power_cut_mid_buffer_programs_the_lower_half_of_its_words() {
        let (_f, mut flash) = part(Some(1));
        let pairs: Vec<(u32, u16)> = (0..5).map(|i| (64 + i * 3, 0x0000)).collect();
        load_buffer(&mut flash, 0, &pairs, 0);
        assert!(cmd(&mut flash, 0, 0x29, 0));
        assert_eq!(flash.cut_time(), Some(BUFFER_PROGRAM_INSTRUCTIONS / 2));
        flash.power_cut();
        assert_eq!(flash.busy_until(), None);
        // Of five loaded words, the two lowest-addressed are programmed, the rest untouched.
        let words: Vec<u16> = pairs.iter().map(|&(w, _)| flash.word(w)).collect();
        assert_eq!(words, [0, 0, 0xFFFF, 0xFFFF, 0xFFFF]);
    }

    /// The flash driver on this model: the board's bus (a 16-bit access per word) and a clock that
    /// advances the model's virtual time as it is read.
    struct DriverBus<'a>(&'a mut Flash, u64);

    impl norflash::Bus for DriverBus<'_> {
        fn read(&mut self, word: u32) -> u16 {
            self.1 += 100;
            self.0.read(word * 2, 2, self.1).unwrap() as u16
        }
        fn write(&mut self, word: u32, value: u16) {
            self.0.write(word * 2, 2, u32::from(value), self.1).unwrap();
        }
    }

    struct ModelClock;
    impl norflash::Clock for ModelClock {
        fn now_us(&mut self) -> u64 {
            0
        }
    }

    #[test]
    fn driver_programs_through_the_write_buffer_the_model_advertises() {
        let (_f, mut flash) = part(None);
        let mut driver = norflash::Flash::probe(DriverBus(&mut flash, 0)).unwrap();
        let buffer = driver.geometry().write_buffer.expect("the model advertises a write buffer");
        assert_eq!(buffer.bytes, BUFFER_WORDS * 2);
        assert_eq!(buffer.typical_us, 512);
        // 200 bytes from an odd word of a page: one partial page, then whole and partial ones, with a
        // run of erased words skipped.
        let offset = 3 * SECTOR_BYTES + 2 * 7;
        let mut data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        data[60..130].fill(0xFF);
        driver.program(offset, &data, &mut ModelClock).unwrap();
        let bus = driver.release();
        let ops = bus.0.operations();
        // Words 7..32 of the first page, 32..64 (to byte 60 of the data, then erased to 130), the
        // next pages: 4 buffer programs, not one per word.
        assert_eq!(ops, 4, "buffer programs");
        for (i, pair) in data.chunks_exact(2).enumerate() {
            assert_eq!(bus.0.word(offset / 2 + i as u32), u16::from_be_bytes([pair[0], pair[1]]), "word {i}");
        }
    }

    #[test]
    fn driver_reports_a_failed_buffer_and_leaves_the_part_reading() {
        let (_f, mut flash) = part(None);
        let mut driver = norflash::Flash::probe(DriverBus(&mut flash, 0)).unwrap();
        // Programming a 0 to 1 fails read-back: the driver says which word.
        driver.program(0, &[0, 0], &mut ModelClock).unwrap();
        assert_eq!(
            driver.program(0, &[0x12, 0x34, 0x56, 0x78], &mut ModelClock),
            Err(norflash::Error::Verify { word: 0, wrote: 0x1234, read: 0 })
        );
        let bus = driver.release();
        // A sequence the part aborts (a count at another sector) is a failure, and the driver's reset
        // brings the part back from the abort.
        let DriverBus(flash, t) = bus;
        unlock(flash, t);
        cmd(flash, 0, 0x25, t);
        cmd(flash, SECTOR_WORDS, 0, t);
        assert!(aborted(flash, t));
        let mut part = DriverBus(flash, t);
        assert_eq!(norflash::command::status(&mut part, 0), norflash::Status::Failed);
        norflash::command::reset(&mut part);
        assert_eq!(norflash::command::status(&mut part, 0), norflash::Status::Ready);
        assert_eq!(part.0.read(0, 2, part.1).unwrap(), 0);
    }

    #[test]
    fn reset_completes_an_operation_in_progress() {
        let (_f, mut flash) = part(None);
        program(&mut flash, 9, 0x1234, 0);
        flash.reset();
        assert_eq!(flash.read(18, 2, 1).unwrap(), 0x1234);
    }
}
