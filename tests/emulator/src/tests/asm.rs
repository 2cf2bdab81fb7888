//! A small PowerPC assembler for the tests: instruction encoders (checked against powerpc-linux-gnu-as in
//! `encoders_match_binutils`) and a program builder with labels.

use std::collections::HashMap;

pub use crate::ppc::{mfspr, mftb, mtspr};

pub const NOP: u32 = 0x6000_0000;
pub const RFI: u32 = 0x4C00_0064;
pub const ISYNC: u32 = 0x4C00_012C;
/// `trap` (`tw 31,0,0`).
pub const TRAP: u32 = 0x7FE0_0008;
pub const SC: u32 = 0x4400_0002;
/// `b .`
pub const HALT: u32 = 0x4800_0000;
/// An illegal instruction (primary opcode 0).
pub const ILLEGAL: u32 = 0x0000_0000;
pub const BLR: u32 = 0x4E80_0020;
pub const BCTRL: u32 = 0x4E80_0421;

pub fn addi(rt: u32, ra: u32, si: i16) -> u32 {
    (14 << 26) | (rt << 21) | (ra << 16) | u32::from(si as u16)
}
pub fn li(rt: u32, si: i16) -> u32 {
    addi(rt, 0, si)
}
pub fn addis(rt: u32, ra: u32, si: u16) -> u32 {
    (15 << 26) | (rt << 21) | (ra << 16) | u32::from(si)
}
pub fn lis(rt: u32, v: u16) -> u32 {
    addis(rt, 0, v)
}
pub fn ori(ra: u32, rs: u32, ui: u16) -> u32 {
    (24 << 26) | (rs << 21) | (ra << 16) | u32::from(ui)
}
pub fn oris(ra: u32, rs: u32, ui: u16) -> u32 {
    (25 << 26) | (rs << 21) | (ra << 16) | u32::from(ui)
}
fn d_form(op: u32, rt: u32, d: i16, ra: u32) -> u32 {
    (op << 26) | (rt << 21) | (ra << 16) | u32::from(d as u16)
}
pub fn lwz(rt: u32, d: i16, ra: u32) -> u32 {
    d_form(32, rt, d, ra)
}
pub fn lbz(rt: u32, d: i16, ra: u32) -> u32 {
    d_form(34, rt, d, ra)
}
pub fn stw(rs: u32, d: i16, ra: u32) -> u32 {
    d_form(36, rs, d, ra)
}
pub fn stb(rs: u32, d: i16, ra: u32) -> u32 {
    d_form(38, rs, d, ra)
}
/// `stmw rs, d(ra)`: rs..r31 to consecutive words.
pub fn stmw(rs: u32, d: i16, ra: u32) -> u32 {
    d_form(47, rs, d, ra)
}
pub fn lhz(rt: u32, d: i16, ra: u32) -> u32 {
    d_form(40, rt, d, ra)
}
pub fn sth(rs: u32, d: i16, ra: u32) -> u32 {
    d_form(44, rs, d, ra)
}
/// `lwbrx rt, ra, rb`: a little-endian load.
pub fn lwbrx(rt: u32, ra: u32, rb: u32) -> u32 {
    0x7C00_042C | (rt << 21) | (ra << 16) | (rb << 11)
}
/// `stwbrx rs, ra, rb`: a little-endian store.
pub fn stwbrx(rs: u32, ra: u32, rb: u32) -> u32 {
    0x7C00_052C | (rs << 21) | (ra << 16) | (rb << 11)
}
/// `andi. ra, rs, ui`.
pub fn andi_(ra: u32, rs: u32, ui: u16) -> u32 {
    (28 << 26) | (rs << 21) | (ra << 16) | u32::from(ui)
}
/// `xor ra, rs, rb`.
pub fn xor(ra: u32, rs: u32, rb: u32) -> u32 {
    0x7C00_0278 | (rs << 21) | (ra << 16) | (rb << 11)
}
/// `cmplwi cr0, ra, ui`.
pub fn cmplwi(ra: u32, ui: u16) -> u32 {
    (10 << 26) | (ra << 16) | u32::from(ui)
}
pub fn subf(rt: u32, ra: u32, rb: u32) -> u32 {
    0x7C00_0050 | (rt << 21) | (ra << 16) | (rb << 11)
}
pub fn mfmsr(rt: u32) -> u32 {
    0x7C00_00A6 | (rt << 21)
}
pub fn mtmsr(rs: u32) -> u32 {
    0x7C00_0124 | (rs << 21)
}
pub fn mtctr(rs: u32) -> u32 {
    mtspr(9, rs)
}
/// `cmpwi cr0, ra, si`.
pub fn cmpwi(ra: u32, si: i16) -> u32 {
    (11 << 26) | (ra << 16) | u32::from(si as u16)
}
pub fn b(offset: i32) -> u32 {
    0x4800_0000 | (offset as u32 & 0x03FF_FFFC)
}
pub fn bc(bo: u32, bi: u32, offset: i32) -> u32 {
    (16 << 26) | (bo << 21) | (bi << 16) | (offset as u32 & 0xFFFC)
}

/// Branch kinds the builder can resolve to a label.
#[derive(Clone, Copy)]
enum Branch {
    Always,
    Bdnz,
    Bne,
}

/// A program at a fixed address, with forward and backward labels.
pub struct Asm {
    pub base: u32,
    words: Vec<u32>,
    labels: HashMap<&'static str, usize>,
    fixups: Vec<(usize, &'static str, Branch)>,
}

impl Asm {
    pub fn new(base: u32) -> Asm {
        Asm { base, words: Vec::new(), labels: HashMap::new(), fixups: Vec::new() }
    }

    /// Address of the next instruction.
    pub fn here(&self) -> u32 {
        self.base + 4 * self.words.len() as u32
    }

    pub fn emit(&mut self, word: u32) -> &mut Asm {
        self.words.push(word);
        self
    }

    pub fn label(&mut self, name: &'static str) -> &mut Asm {
        self.labels.insert(name, self.words.len());
        self
    }

    /// `lis rt, hi; ori rt, rt, lo`.
    pub fn li32(&mut self, rt: u32, value: u32) -> &mut Asm {
        self.emit(lis(rt, (value >> 16) as u16)).emit(ori(rt, rt, value as u16))
    }

    fn branch(&mut self, label: &'static str, kind: Branch) -> &mut Asm {
        self.fixups.push((self.words.len(), label, kind));
        self.emit(NOP)
    }
    pub fn b_to(&mut self, label: &'static str) -> &mut Asm {
        self.branch(label, Branch::Always)
    }
    pub fn bdnz_to(&mut self, label: &'static str) -> &mut Asm {
        self.branch(label, Branch::Bdnz)
    }
    pub fn bne_to(&mut self, label: &'static str) -> &mut Asm {
        self.branch(label, Branch::Bne)
    }

    pub fn words(&self) -> Vec<u32> {
        let mut words = self.words.clone();
        for &(at, label, kind) in &self.fixups {
            let offset = (self.labels[label] as i32 - at as i32) * 4;
            words[at] = match kind {
                Branch::Always => b(offset),
                Branch::Bdnz => bc(16, 0, offset),
                Branch::Bne => bc(4, 2, offset),
            };
        }
        words
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.words().iter().flat_map(|w| w.to_be_bytes()).collect()
    }
}

#[test]
fn encoders_match_binutils() {
    // Words from powerpc-linux-gnu-as -me300 for the mnemonic in the comment.
    assert_eq!(li(9, 0x1234), 0x3920_1234); // li r9,4660
    assert_eq!(lis(10, 0x20), 0x3D40_0020); // lis r10,32
    assert_eq!(ori(5, 5, 0x1FFE), 0x60A5_1FFE); // ori r5,r5,8190
    assert_eq!(stw(9, 0, 10), 0x912A_0000); // stw r9,0(r10)
    assert_eq!(lwz(13, 0x108, 12), 0x81AC_0108); // lwz r13,264(r12)
    assert_eq!(stb(14, 0x4500, 12), 0x99CC_4500); // stb r14,17664(r12)
    assert_eq!(mfmsr(8), 0x7D00_00A6); // mfmsr r8
    assert_eq!(mtspr(27, 8), 0x7D1B_03A6); // mtsrr1 r8
    assert_eq!(mtspr(538, 5), 0x7CBA_83A6); // mtdbatu 1,r5
    assert_eq!(b(0), HALT); // b .
    assert_eq!(bc(16, 0, -8), 0x4200_FFF8); // bdnz .-8
    assert_eq!(addi(7, 7, 0x54), 0x38E7_0054); // addi r7,r7,84
    assert_eq!(mtmsr(3), 0x7C60_0124); // mtmsr r3
    assert_eq!(cmpwi(3, 5), 0x2C03_0005); // cmpwi r3,5
    assert_eq!(subf(3, 4, 5), 0x7C64_2850); // subf r3,r4,r5
    assert_eq!(sth(3, 2, 4), 0xB064_0002); // sth r3,2(r4)
    assert_eq!(lhz(3, 2, 4), 0xA064_0002); // lhz r3,2(r4)
    assert_eq!(mfspr(3, 26), 0x7C7A_02A6); // mfsrr0 r3
    assert_eq!(oris(3, 3, 0x8000), 0x6463_8000); // oris r3,r3,32768
    assert_eq!(bc(12, 2, -40), 0x4182_FFD8); // beq .-40
    assert_eq!(bc(4, 2, -44), 0x4082_FFD4); // bne .-44
    assert_eq!(lwbrx(3, 4, 5), 0x7C64_2C2C); // lwbrx r3,r4,r5
    assert_eq!(stwbrx(3, 4, 5), 0x7C64_2D2C); // stwbrx r3,r4,r5
    assert_eq!(andi_(4, 4, 0x20), 0x7084_0020); // andi. r4,r4,32
    assert_eq!(xor(7, 5, 6), 0x7CA7_3278); // xor r7,r5,r6
    assert_eq!(cmplwi(5, 0xFFFF), 0x2805_FFFF); // cmplwi r5,65535
    assert_eq!(stmw(30, 32, 4), 0xBFC4_0020); // stmw r30,32(r4)
}
