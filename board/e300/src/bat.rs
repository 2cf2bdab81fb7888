//! Block address translation. The firmware maps everything 1:1 with BATs and runs with MSR[IR|DR]
//! on, because only translation gives device registers their cache-inhibited, guarded attributes
//! (with data translation off the e300 treats every access as cacheable).

/// Storage attributes (the WIMG bits of a BAT lower word, already shifted).
pub mod wimg {
    pub const WRITE_THROUGH: u32 = 0x40;
    pub const CACHE_INHIBITED: u32 = 0x20;
    pub const COHERENT: u32 = 0x10;
    pub const GUARDED: u32 = 0x08;
}

const PP_READ_WRITE: u32 = 0x2;
const VALID_SUPERVISOR: u32 = 0x2;

/// A 1:1 block mapping.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub base: u32,
    /// A power of two from 128 KiB to 256 MiB; `base` must be aligned to it.
    pub size: u32,
    pub wimg: u32,
}

impl Block {
    /// The (upper, lower) BAT words, or `None` for a size or alignment the hardware cannot map.
    pub const fn words(&self) -> Option<(u32, u32)> {
        if !self.size.is_power_of_two() || self.size < 0x2_0000 || self.size > 0x1000_0000 {
            return None;
        }
        if self.base & (self.size - 1) != 0 {
            return None;
        }
        let block_length = (self.size >> 17) - 1;
        let upper = self.base | (block_length << 2) | VALID_SUPERVISOR;
        let lower = self.base | self.wimg | PP_READ_WRITE;
        Some((upper, lower))
    }
}

macro_rules! write_bat {
    ($upper_spr:literal, $lower_spr:literal, $upper:expr, $lower:expr) => {
        // SAFETY: translation is off while BATs are written (the start code turned it off), so a
        // half-written pair is never used.
        unsafe {
            core::arch::asm!(
                concat!("mtspr ", $upper_spr, ", {0}"),
                concat!("mtspr ", $lower_spr, ", {1}"),
                in(reg) $upper, in(reg) $lower,
                options(nomem, nostack, preserves_flags)
            )
        }
    };
}

/// Why a BAT table was refused.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    TooMany,
    Unmappable(Block),
    /// Two blocks of one kind cover the same addresses: a hit by two valid BATs is undefined on the e300.
    Overlap(Block, Block),
}

/// The first two blocks of `blocks` that overlap, if any.
fn overlap(blocks: &[Block]) -> Option<(Block, Block)> {
    let end = |b: &Block| u64::from(b.base) + u64::from(b.size);
    blocks.iter().enumerate().find_map(|(n, a)| {
        blocks[n + 1..].iter().find(|b| u64::from(a.base) < end(b) && u64::from(b.base) < end(a)).map(|b| (*a, *b))
    })
}

/// BAT pairs of each kind on the e300 (Linux cputable.c e300c1: MMU_FTR_USE_HIGH_BATS): pairs 0-3 at
/// SPRs 528-543, pairs 4-7 at 560-575.
pub const PAIRS: usize = 8;

/// Load up to eight data BATs (and instruction BATs for the `code` ones), clearing every other pair of
/// the eight (U-Boot's pairs 4-7 among them), then turn translation on. Must run with translation off.
pub fn enable(data: &[Block], code: &[Block]) -> Result<(), Error> {
    if data.len() > PAIRS || code.len() > PAIRS {
        return Err(Error::TooMany);
    }
    if let Some((a, b)) = overlap(data).or_else(|| overlap(code)) {
        return Err(Error::Overlap(a, b));
    }
    let mut d = [(0u32, 0u32); PAIRS];
    for (slot, block) in d.iter_mut().zip(data) {
        *slot = block.words().ok_or(Error::Unmappable(*block))?;
    }
    let mut i = [(0u32, 0u32); PAIRS];
    for (slot, block) in i.iter_mut().zip(code) {
        // Instruction BATs must not be write-through or guarded.
        let block = Block { wimg: block.wimg & !(wimg::WRITE_THROUGH | wimg::GUARDED), ..*block };
        *slot = block.words().ok_or(Error::Unmappable(block))?;
    }
    write_bat!("536", "537", d[0].0, d[0].1);
    write_bat!("538", "539", d[1].0, d[1].1);
    write_bat!("540", "541", d[2].0, d[2].1);
    write_bat!("542", "543", d[3].0, d[3].1);
    write_bat!("568", "569", d[4].0, d[4].1);
    write_bat!("570", "571", d[5].0, d[5].1);
    write_bat!("572", "573", d[6].0, d[6].1);
    write_bat!("574", "575", d[7].0, d[7].1);
    write_bat!("528", "529", i[0].0, i[0].1);
    write_bat!("530", "531", i[1].0, i[1].1);
    write_bat!("532", "533", i[2].0, i[2].1);
    write_bat!("534", "535", i[3].0, i[3].1);
    write_bat!("560", "561", i[4].0, i[4].1);
    write_bat!("562", "563", i[5].0, i[5].1);
    write_bat!("564", "565", i[6].0, i[6].1);
    write_bat!("566", "567", i[7].0, i[7].1);
    // Turn IR|DR on with rfi so the change is context-synchronising; the mapping is 1:1 so
    // execution continues at the next instruction.
    // SAFETY: every address the firmware uses is covered by the BATs just loaded (the board's
    // table), and they map 1:1.
    unsafe {
        core::arch::asm!(
            "isync",
            "mfmsr {msr}",
            "ori   {msr}, {msr}, 0x0030",
            "bl    1f",
            "1: mflr {pc}",
            "addi  {pc}, {pc}, 2f - 1b",
            "mtsrr0 {pc}",
            "mtsrr1 {msr}",
            "rfi",
            "2:",
            msr = out(reg) _, pc = out(reg) _, out("lr") _,
            options(nostack)
        )
    };
    Ok(())
}
