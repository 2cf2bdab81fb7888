//! A fake NOR part with the AMD command set at the level the driver sees it: unlock cycles, word
//! program, sector erase, CFI query, a short busy period with DQ6 toggling, DQ5 on a failed
//! operation, and the board emulator's semantics (program only clears bits, erase sets a sector to
//! ones). A power cut can be scheduled at the Nth program or erase ([`Cut`]): it leaves that operation
//! half-done and the part dead (writes ignored, reads all ones) until [`FakeNor::restart`].
//!
//! The part is addressed in 16-bit words, as `norflash::Bus` is; a test wraps it in that trait (the
//! trait is the crate under test's own, so the wrapper lives with the test).

/// Command words (docs/REGISTERS.md, "Local bus NOR flash").
const CMD_RESET: u16 = 0xF0;
const CMD_CFI: u16 = 0x98;
const CMD_PROGRAM: u16 = 0xA0;
const CMD_ERASE: u16 = 0x80;
const CMD_SECTOR_ERASE: u16 = 0x30;
const UNLOCK1: (u32, u16) = (0x555, 0xAA);
const UNLOCK2: (u32, u16) = (0x2AA, 0x55);
/// Where the CFI query is written.
const CFI_ADDRESS: u32 = 0x55;
/// Status bits while busy: DQ6 toggles at every read, DQ5 says the operation failed.
const DQ6_TOGGLE: u16 = 0x40;
const DQ5_TIMEOUT: u16 = 0x20;

/// What a power cut leaves of the operation it interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Nothing happened yet.
    Untouched,
    /// The board emulator's cut: a word keeps the lower half of the bits it was to lose cleared; a
    /// sector has its first half erased, the rest untouched.
    EmulatorHalf,
    /// A word keeps the upper half of those bits cleared; a sector is left with garbage throughout.
    Scrambled,
    /// The operation finished, but nothing after it ran.
    Complete,
}

impl Cut {
    pub const ALL: [Cut; 4] = [Cut::Untouched, Cut::EmulatorHalf, Cut::Scrambled, Cut::Complete];
}

/// The part.
#[derive(Clone, Debug)]
pub struct FakeNor {
    words: Vec<u16>,
    sector_words: u32,
    size_log2: u16,
    cfi: bool,
    seq: Vec<(u32, u16)>,
    /// Status reads left in the current operation (0: not busy).
    busy: u32,
    /// The current operation failed: DQ5 is set and stays until a reset.
    failed: bool,
    toggle: u16,
    /// Status reads each operation takes before it completes.
    pub busy_reads: u32,
    /// The next operation fails (DQ5) instead of completing.
    pub fail_next: bool,
    /// Program and erase operations started since power-on.
    pub ops: u64,
    /// The power cut to come: at which operation, leaving what.
    pub cut: Option<(u64, Cut)>,
    /// The power is off (after a cut).
    pub dead: bool,
}

impl FakeNor {
    /// An erased part of `1 << size_log2` bytes in uniform sectors of `sector_bytes`.
    pub fn new(size_log2: u16, sector_bytes: u32) -> Self {
        FakeNor {
            words: vec![0xFFFF; (1usize << size_log2) / 2],
            sector_words: sector_bytes / 2,
            size_log2,
            cfi: false,
            seq: Vec::new(),
            busy: 0,
            failed: false,
            toggle: 0,
            busy_reads: 2,
            fail_next: false,
            ops: 0,
            cut: None,
            dead: false,
        }
    }

    /// Power comes back: read mode, no cut pending, operation count from zero.
    pub fn restart(&mut self) {
        self.cfi = false;
        self.seq.clear();
        self.busy = 0;
        self.failed = false;
        self.ops = 0;
        self.cut = None;
        self.dead = false;
    }

    /// The array as it stands, word by word.
    pub fn words(&self) -> &[u16] {
        &self.words
    }

    /// The array, for a test that lays out or damages the content directly.
    pub fn words_mut(&mut self) -> &mut [u16] {
        &mut self.words
    }

    /// The part reads the array: no CFI query and no operation in progress.
    pub fn reads_array(&self) -> bool {
        !self.cfi && self.busy == 0 && !self.failed
    }

    fn cfi_word(&self, word: u32) -> u16 {
        let sectors = (1u32 << self.size_log2) / (self.sector_words * 2);
        let unit = self.sector_words * 2 / 256;
        match word {
            0x10 => u16::from(b'Q'),
            0x11 => u16::from(b'R'),
            0x12 => u16::from(b'Y'),
            0x13 => 0x02,
            0x14 => 0x00,
            0x27 => self.size_log2,
            0x2C => 1,
            0x2D => ((sectors - 1) & 0xFF) as u16,
            0x2E => ((sectors - 1) >> 8) as u16,
            0x2F => (unit & 0xFF) as u16,
            0x30 => (unit >> 8) as u16,
            _ => 0,
        }
    }

    /// A read of `word` on the bus.
    pub fn read(&mut self, word: u32) -> u16 {
        if self.dead {
            return 0xFFFF;
        }
        if self.failed {
            self.toggle ^= DQ6_TOGGLE;
            return self.toggle | DQ5_TIMEOUT;
        }
        if self.busy > 0 {
            self.busy -= 1;
            self.toggle ^= DQ6_TOGGLE;
            if self.busy == 0 && std::mem::take(&mut self.fail_next) {
                self.failed = true;
            }
            return self.toggle;
        }
        if self.cfi {
            return self.cfi_word(word);
        }
        self.words[word as usize]
    }

    /// A write of `value` to `word` on the bus.
    pub fn write(&mut self, word: u32, value: u16) {
        if self.dead {
            return;
        }
        // A reset leaves a failed operation; an operation still running ignores every write.
        if self.failed && value == CMD_RESET {
            self.failed = false;
            self.seq.clear();
            return;
        }
        if self.busy > 0 || self.failed {
            return;
        }
        // The word after a program set-up is data, whatever its value (0x00F0 is not a reset there).
        let program_data = self.seq.len() == 3 && self.seq[2] == (0x555, CMD_PROGRAM);
        if value == CMD_RESET && !program_data {
            self.cfi = false;
            self.seq.clear();
            return;
        }
        if word == CFI_ADDRESS && value == CMD_CFI && !program_data {
            self.cfi = true;
            return;
        }
        self.seq.push((word, value));
        let s = &self.seq;
        let unlock = |i: usize| s[i] == UNLOCK1 && s[i + 1] == UNLOCK2;
        if s.len() == 4 && unlock(0) && s[2] == (0x555, CMD_PROGRAM) {
            self.seq.clear();
            self.operate(Some((word, value)), 0);
        } else if s.len() == 6 && unlock(0) && s[2] == (0x555, CMD_ERASE) && unlock(3) && value == CMD_SECTOR_ERASE {
            self.seq.clear();
            let sector = word / self.sector_words;
            self.operate(None, sector);
        } else if s.len() >= 6 || (s.len() == 4 && s[2] != (0x555, CMD_ERASE)) {
            self.seq.clear();
        }
    }

    fn operate(&mut self, program: Option<(u32, u16)>, sector: u32) {
        self.ops += 1;
        let effect = match self.cut {
            Some((at, effect)) if at == self.ops => {
                self.dead = true;
                effect
            }
            _ if self.fail_next && self.busy_reads == 0 => {
                // No status read to fail at: fail now.
                self.fail_next = false;
                self.failed = true;
                Cut::Untouched
            }
            _ => Cut::Complete,
        };
        if let Some((word, value)) = program {
            let old = self.words[word as usize];
            let to_clear = old & !value;
            let low = lowest_bits(to_clear, to_clear.count_ones() / 2);
            let cleared = match effect {
                Cut::Untouched => 0,
                Cut::EmulatorHalf => low,
                Cut::Scrambled => {
                    to_clear & !lowest_bits(to_clear, to_clear.count_ones().div_ceil(2)) | {
                        // At least one bit, so the word is visibly torn whenever it had any to lose.
                        if to_clear.count_ones() == 1 {
                            to_clear
                        } else {
                            0
                        }
                    }
                }
                Cut::Complete => to_clear,
            };
            self.words[word as usize] = old & !cleared;
        } else {
            let start = (sector * self.sector_words) as usize;
            let words = &mut self.words[start..start + self.sector_words as usize];
            match effect {
                Cut::Untouched => {}
                Cut::EmulatorHalf => {
                    let half = words.len() / 2;
                    words[..half].fill(0xFFFF)
                }
                Cut::Scrambled => {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ self.ops;
                    for w in words.iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *w = x as u16;
                    }
                }
                Cut::Complete => words.fill(0xFFFF),
            }
        }
        if !self.dead && !self.failed {
            self.busy = self.busy_reads;
        }
    }
}

/// The `n` lowest set bits of `bits`.
fn lowest_bits(mut bits: u16, mut n: u32) -> u16 {
    let mut out = 0;
    while n > 0 && bits != 0 {
        let lowest = bits & bits.wrapping_neg();
        out |= lowest;
        bits &= !lowest;
        n -= 1;
    }
    out
}
