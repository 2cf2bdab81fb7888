//! The bulk-send pattern: what the agent sends on the chargen and sized ports, so a host tool can
//! check every byte it receives.
//!
//! The pattern is periodic with a period of [`PERIOD`] = 65524 bytes = 4 × 16381 words, 16381 being
//! prime. Byte `i` (counted from 0, the first byte of the connection) is byte `i % 4` of the
//! little-endian encoding of `mix((i / 4) % 16381)`, where `mix` is the 32-bit finaliser of
//! MurmurHash3:
//!
//! ```text
//! mix(w): w ^= w >> 16; w *= 0x85eb_ca6b; w ^= w >> 13; w *= 0xc2b2_ae35; w ^= w >> 16
//! ```
//!
//! (wrapping multiplications). Equivalently: the first 65524 bytes of the stream `mix(0)`, `mix(1)`,
//! ... (each little-endian), repeated.
//!
//! `mix` is a bijection, so no two words within a period are equal: a lost, duplicated or
//! reordered stretch goes unnoticed only if its length is a multiple of the period. A prime number
//! of words keeps the period from sharing factors with the sizes such stretches come in (segments,
//! windows and buffers are multiples of powers of two, 1460 = 4 × 365, 8960 = 4 × 2240), and
//! 65524 is a multiple of 4 so that the pattern and a buffer it is copied into stay equally aligned
//! when both start word-aligned (the agent's send buffers do): the copy then moves whole words.
//!
//! The agent fills its send buffers from one period computed once at start-up ([`Table`],
//! [`Generator`]): a memory copy per byte rather than a hash per word. [`byte`], [`fill`] and
//! [`mismatch`] compute the pattern from its definition, for hosts and tests.

/// The period of the pattern, in bytes: a prime number (16381) of 4-byte words.
pub const PERIOD: usize = 4 * PERIOD_WORDS;
/// The period in words; prime.
const PERIOD_WORDS: usize = 16381;

/// The MurmurHash3 32-bit finaliser.
pub const fn mix(word: u32) -> u32 {
    let mut w = word;
    w ^= w >> 16;
    w = w.wrapping_mul(0x85eb_ca6b);
    w ^= w >> 13;
    w = w.wrapping_mul(0xc2b2_ae35);
    w ^= w >> 16;
    w
}

/// Byte `at` of one period (`at < PERIOD`).
const fn period_byte(at: usize) -> u8 {
    mix((at / 4) as u32).to_le_bytes()[at % 4]
}

/// Byte `offset` of the pattern.
pub const fn byte(offset: u64) -> u8 {
    period_byte((offset % PERIOD as u64) as usize)
}

/// Where `offset` falls in the period.
fn phase(offset: u64) -> usize {
    (offset % PERIOD as u64) as usize
}

/// Fill `buf` with the pattern from `offset` on (from the definition: see [`Generator::fill`] for
/// the agent's fast way).
pub fn fill(offset: u64, buf: &mut [u8]) {
    let mut at = phase(offset);
    for b in buf {
        *b = period_byte(at);
        at += 1;
        if at == PERIOD {
            at = 0;
        }
    }
}

/// The first position in `data` that differs from the pattern at `offset`, if any.
pub fn mismatch(offset: u64, data: &[u8]) -> Option<usize> {
    let mut at = phase(offset);
    data.iter().position(|&b| {
        let differs = b != period_byte(at);
        at += 1;
        if at == PERIOD {
            at = 0;
        }
        differs
    })
}

/// Room for one period of the pattern; all zeros until [`Table::build`] computes it, so a static of
/// it costs no space in the image (`.bss`). Word-aligned, so that copies from it into word-aligned
/// send buffers move whole words (see the module's documentation).
#[repr(C, align(4))]
pub struct Table {
    period: [u8; PERIOD],
}

impl Table {
    pub const fn new() -> Self {
        Table { period: [0; PERIOD] }
    }

    /// Compute the period (once: [`PERIOD_WORDS`] hashes) and hand out the generator that copies
    /// from it.
    pub fn build(&mut self) -> Generator<'_> {
        for (i, word) in self.period.chunks_exact_mut(4).enumerate() {
            word.copy_from_slice(&mix(i as u32).to_le_bytes());
        }
        Generator { period: &self.period }
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

/// The pattern from a computed [`Table`]: only [`Table::build`] makes one, so it never copies from
/// a table not yet computed.
#[derive(Clone, Copy)]
pub struct Generator<'t> {
    period: &'t [u8; PERIOD],
}

impl Generator<'_> {
    /// Fill `buf` with the pattern from `offset` on, as [`fill`] does: copies from the period, at
    /// most one per period boundary crossed.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut at = phase(offset);
        let mut rest = buf;
        while !rest.is_empty() {
            let n = rest.len().min(PERIOD - at);
            let (head, tail) = rest.split_at_mut(n);
            head.copy_from_slice(&self.period[at..at + n]);
            rest = tail;
            at = 0;
        }
    }
}
