//! The bulk-send pattern: what the agent sends on the chargen and sized ports, so a host tool can
//! check every byte it receives.
//!
//! Byte `i` (counted from 0, the first byte of the connection) is byte `i % 4` of the little-endian
//! encoding of `mix(i / 4)`, where `mix` is the 32-bit finaliser of MurmurHash3 applied to the word
//! index truncated to 32 bits:
//!
//! ```text
//! mix(w): w ^= w >> 16; w *= 0x85eb_ca6b; w ^= w >> 13; w *= 0xc2b2_ae35; w ^= w >> 16
//! ```
//!
//! (wrapping multiplications). `mix` is a bijection, so the stream repeats only every 16 GiB: a lost,
//! duplicated or reordered segment never lines up with an identical stretch. One hash per four bytes
//! keeps it cheap enough to generate at the bus's speed.

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

/// Byte `offset` of the pattern.
pub const fn byte(offset: u64) -> u8 {
    mix((offset / 4) as u32).to_le_bytes()[(offset % 4) as usize]
}

/// Fill `buf` with the pattern from `offset` on.
pub fn fill(offset: u64, buf: &mut [u8]) {
    let mut at = offset;
    let mut rest = buf;
    // Up to the next word boundary byte by byte, then whole words.
    while !at.is_multiple_of(4) {
        let Some((first, tail)) = rest.split_first_mut() else { return };
        *first = byte(at);
        at += 1;
        rest = tail;
    }
    let mut chunks = rest.chunks_exact_mut(4);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&mix((at / 4) as u32).to_le_bytes());
        at += 4;
    }
    for b in chunks.into_remainder() {
        *b = byte(at);
        at += 1;
    }
}

/// The first position in `data` that differs from the pattern at `offset`, if any.
pub fn mismatch(offset: u64, data: &[u8]) -> Option<usize> {
    data.iter().enumerate().position(|(i, &b)| b != byte(offset + i as u64))
}
