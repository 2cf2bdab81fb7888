//! PowerPC (e300c1) facts the emulator needs: MSR bits, exception vectors, and the few instruction
//! decodings it does itself because Unicorn does not model them (timebase, decrementer) or does not
//! report them (which instruction made an access).

/// MSR bits (docs/REGISTERS.md, "e300c1 core").
pub mod msr {
    /// Temporary GPRs r0-r3 (603 family): set while a software table-search (TLB miss) handler runs.
    pub const TGPR: u32 = 0x0002_0000;
    pub const EE: u32 = 0x8000;
    pub const PR: u32 = 0x4000;
    pub const ME: u32 = 0x1000;
    pub const IP: u32 = 0x0040;
    pub const IR: u32 = 0x0020;
    pub const DR: u32 = 0x0010;
    pub const RI: u32 = 0x0002;
}

/// HID0 bits (603e/e300 numbering as U-Boot's `mpc83xx.h` and Linux's `reg.h` name them).
pub mod hid0 {
    /// Enable machine check pin.
    pub const EMCP: u32 = 0x8000_0000;
    pub const ICE: u32 = 0x8000;
    pub const DCE: u32 = 0x4000;
    /// Data cache lock: no line is allocated or replaced; every miss is handled as cache-inhibited.
    pub const DLOCK: u32 = 0x1000;
}

/// Bits of MSR that survive taking an exception. The architecture clears POW, EE, PR, FP, FE0/1, SE, BE,
/// IR, DR and RI (and LE/ILE, which the emulator never sets); ME and IP are kept (ME is cleared too for a
/// machine check).
pub const MSR_KEPT_ON_EXCEPTION: u32 = msr::ME | msr::IP;

/// MSR bits copied into SRR1: everything except SRR1 bits 1-4 and 10-15 (IBM numbering), which carry the
/// exception-specific reason.
pub const SRR1_MSR_MASK: u32 = !0x783F_0000;

/// SRR1 reason bits of a program exception.
pub mod srr1 {
    pub const ILLEGAL: u32 = 0x0008_0000;
    pub const PRIVILEGED: u32 = 0x0004_0000;
    pub const TRAP: u32 = 0x0002_0000;
    /// ISI "protection violation": the only ISI cause a BAT-translated e300 can take.
    pub const ISI_PROTECTION: u32 = 0x0800_0000;
}

/// Exception vector offsets (added to 0 or 0xFFF0_0000 by MSR[IP]).
pub mod vector {
    pub const MACHINE_CHECK: u32 = 0x200;
    pub const DSI: u32 = 0x300;
    pub const ISI: u32 = 0x400;
    pub const EXTERNAL: u32 = 0x500;
    pub const ALIGNMENT: u32 = 0x600;
    pub const PROGRAM: u32 = 0x700;
    pub const FP_UNAVAILABLE: u32 = 0x800;
    pub const DECREMENTER: u32 = 0x900;
    pub const SYSTEM_CALL: u32 = 0xC00;
    /// The e300's software table-search vectors (603e family; Linux head_book3s_32.S, U-Boot start.S):
    /// an access with translation on that no BAT covers (the firmware keeps no page table).
    pub const ITLB_MISS: u32 = 0x1000;
    pub const DTLB_LOAD_MISS: u32 = 0x1100;
    pub const DTLB_STORE_MISS: u32 = 0x1200;
}

/// Where the vector table lives for a given MSR.
pub fn vector_address(msr: u32, offset: u32) -> u32 {
    if msr & msr::IP != 0 {
        0xFFF0_0000 + offset
    } else {
        offset
    }
}

/// `b .`: how bare-metal code parks the core.
pub const BRANCH_TO_SELF: u32 = 0x4800_0000;

/// SPR numbers used by the emulator.
pub mod spr {
    pub const DSISR: u32 = 18;
    pub const DAR: u32 = 19;
    pub const DEC: u32 = 22;
    pub const SRR0: u32 = 26;
    pub const SRR1: u32 = 27;
    pub const TBL_READ: u32 = 268;
    pub const TBU_READ: u32 = 269;
    pub const TBL_WRITE: u32 = 284;
    pub const TBU_WRITE: u32 = 285;
    pub const DMISS: u32 = 976;
    pub const IMISS: u32 = 980;
    pub const HID0: u32 = 1008;
}

/// Instruction or data BAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatKind {
    Instruction,
    Data,
}

/// The e300 has eight IBAT/DBAT pairs (Linux cputable.c e300c1: MMU_FTR_USE_HIGH_BATS): pairs 0-3 at SPRs
/// 528-543, pairs 4-7 at 560-575 (Linux reg.h SPRN_IBAT4U = 560, SPRN_DBAT4U = 568).
pub const BAT_PAIRS: usize = 8;

/// SPR number of a BAT word.
pub const fn bat_spr(kind: BatKind, n: usize, upper: bool) -> u32 {
    let base = match (kind, n < 4) {
        (BatKind::Instruction, true) => 528,
        (BatKind::Data, true) => 536,
        (BatKind::Instruction, false) => 560,
        (BatKind::Data, false) => 568,
    };
    base + 2 * (n as u32 % 4) + if upper { 0 } else { 1 }
}

/// Which BAT word an SPR number is: (kind, pair, upper).
pub fn decode_bat_spr(spr: u32) -> Option<(BatKind, usize, bool)> {
    let (kind, first) = match spr {
        528..=535 => (BatKind::Instruction, 0),
        536..=543 => (BatKind::Data, 0),
        560..=567 => (BatKind::Instruction, 4),
        568..=575 => (BatKind::Data, 4),
        _ => return None,
    };
    let base = bat_spr(kind, first, true);
    Some((kind, first + ((spr - base) / 2) as usize, (spr - base).is_multiple_of(2)))
}

/// An `mtspr` to a register the emulator keeps track of (Unicorn keeps the value; the model needs to know
/// it): a BAT word or HID0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackedWrite {
    Bat { kind: BatKind, pair: usize, upper: bool, rs: u32 },
    Hid0 { rs: u32 },
}

impl TrackedWrite {
    pub fn decode(word: u32) -> Option<TrackedWrite> {
        if word & 0xFC00_07FE != 0x7C00_03A6 {
            return None;
        }
        let rs = (word >> 21) & 0x1F;
        let field = (word >> 11) & 0x3FF;
        let spr = ((field & 0x1F) << 5) | (field >> 5);
        if spr == spr::HID0 {
            return Some(TrackedWrite::Hid0 { rs });
        }
        decode_bat_spr(spr).map(|(kind, pair, upper)| TrackedWrite::Bat { kind, pair, upper, rs })
    }
}

/// One BAT pair's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bat {
    pub upper: u32,
    pub lower: u32,
}

impl Bat {
    /// The block (start, length) the pair maps for supervisor accesses (BATU[Vs]), if valid. The firmware
    /// runs in supervisor state only.
    pub fn supervisor_block(self) -> Option<(u64, u64)> {
        if self.upper & 0x2 == 0 {
            return None;
        }
        let length = u64::from(((self.upper >> 2) & 0x7FF) + 1) << 17;
        Some((u64::from(self.upper & 0xFFFE_0000), length))
    }
}

/// Address ranges covered by two valid BATs of one kind: (first pair, second pair, start, length). On the
/// e300 such a hit is a programming error with undefined results (the 603e manual; Linux clears BATs 4-7
/// at boot so its own never overlap U-Boot's), while QEMU quietly takes the lower-numbered pair.
pub fn bat_overlaps(bats: &[Bat; BAT_PAIRS]) -> Vec<(usize, usize, u64, u64)> {
    let mut out = Vec::new();
    for i in 0..BAT_PAIRS {
        let Some((a, al)) = bats[i].supervisor_block() else { continue };
        for (j, bat) in bats.iter().enumerate().skip(i + 1) {
            let Some((b, bl)) = bat.supervisor_block() else { continue };
            let (start, end) = (a.max(b), (a + al).min(b + bl));
            if start < end {
                out.push((i, j, start, end - start));
            }
        }
    }
    out
}

/// The split SPR field of `mfspr`/`mtspr`/`mftb`: the two 5-bit halves are swapped in the encoding.
const fn spr_field(spr: u32) -> u32 {
    ((spr & 0x1F) << 16) | ((spr >> 5) << 11)
}

/// `mfspr rD, spr`.
pub const fn mfspr(rd: u32, spr: u32) -> u32 {
    0x7C00_02A6 | (rd << 21) | spr_field(spr)
}

/// `mtspr spr, rS`.
pub const fn mtspr(spr: u32, rs: u32) -> u32 {
    0x7C00_03A6 | (rs << 21) | spr_field(spr)
}

/// `mftb rD, tbr` (the dedicated timebase-read opcode, XO 371).
pub const fn mftb(rd: u32, tbr: u32) -> u32 {
    0x7C00_02E6 | (rd << 21) | spr_field(tbr)
}

/// The timebase and decrementer instructions Unicorn gets wrong (it reads plain SPR storage that nothing
/// updates), which the emulator performs itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInsn {
    /// `mftb rD` / `mfspr rD, 268`.
    ReadTbl(u32),
    /// `mftbu rD` / `mfspr rD, 269`.
    ReadTbu(u32),
    /// `mttbl rS`.
    WriteTbl(u32),
    /// `mttbu rS`.
    WriteTbu(u32),
    /// `mfdec rD`.
    ReadDec(u32),
    /// `mtdec rS`.
    WriteDec(u32),
}

impl TimeInsn {
    /// Decode one instruction word; `None` for anything else.
    pub fn decode(word: u32) -> Option<TimeInsn> {
        // Everything but the rD/rS field.
        let pattern = word & !(0x1F << 21);
        let reg = (word >> 21) & 0x1F;
        let table = [
            (mftb(0, spr::TBL_READ), TimeInsn::ReadTbl as fn(u32) -> TimeInsn),
            (mfspr(0, spr::TBL_READ), TimeInsn::ReadTbl),
            (mftb(0, spr::TBU_READ), TimeInsn::ReadTbu),
            (mfspr(0, spr::TBU_READ), TimeInsn::ReadTbu),
            (mtspr(spr::TBL_WRITE, 0), TimeInsn::WriteTbl),
            (mtspr(spr::TBU_WRITE, 0), TimeInsn::WriteTbu),
            (mfspr(0, spr::DEC), TimeInsn::ReadDec),
            (mtspr(spr::DEC, 0), TimeInsn::WriteDec),
        ];
        table.iter().find(|(p, _)| *p == pattern).map(|(_, make)| make(reg))
    }

    /// Writing TB or DEC is privileged; reading TB is not.
    pub fn privileged(self) -> bool {
        !matches!(self, TimeInsn::ReadTbl(_) | TimeInsn::ReadTbu(_))
    }
}

/// Is `word` a trap (`tw`, `twi`)? Used to tell a trap from a privileged-instruction program exception,
/// which Unicorn reports with the same interrupt number.
pub fn is_trap(word: u32) -> bool {
    let opcode = word >> 26;
    opcode == 3 || (opcode == 31 && (word >> 1) & 0x3FF == 4)
}

/// A load or store: how its effective address is formed and how many bytes it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemAccess {
    /// Base register (`None` when the `rA|0` field is 0).
    pub ra: Option<u32>,
    /// Index register of X-form accesses.
    pub rb: Option<u32>,
    /// Displacement of D-form accesses.
    pub displacement: i32,
    /// Bytes the instruction touches starting at its effective address.
    pub span: u32,
    /// Register field rD/rS (for DSISR).
    pub rd: u32,
    pub x_form: bool,
}

/// Decode a load/store instruction (integer, floating point, string, multiple, reservation, `dcbz`).
pub fn decode_mem_access(word: u32) -> Option<MemAccess> {
    let opcode = word >> 26;
    let rd = (word >> 21) & 0x1F;
    let ra_field = (word >> 16) & 0x1F;
    let rb = (word >> 11) & 0x1F;
    let update = |ra: u32| Some(ra);
    let base = |ra: u32| if ra == 0 { None } else { Some(ra) };
    let d_form = |span: u32, updates: bool| {
        Some(MemAccess {
            ra: if updates { update(ra_field) } else { base(ra_field) },
            rb: None,
            displacement: i32::from((word & 0xFFFF) as u16 as i16),
            span,
            rd,
            x_form: false,
        })
    };
    match opcode {
        32 | 36 | 48 | 52 => d_form(4, false),
        33 | 37 | 49 | 53 => d_form(4, true),
        34 | 38 => d_form(1, false),
        35 | 39 => d_form(1, true),
        40 | 42 | 44 => d_form(2, false),
        41 | 43 | 45 => d_form(2, true),
        46 | 47 => d_form(4 * (32 - rd), false),
        50 | 54 => d_form(8, false),
        51 | 55 => d_form(8, true),
        31 => {
            let xo = (word >> 1) & 0x3FF;
            let span = match xo {
                23 | 55 | 151 | 183 | 534 | 662 | 20 | 150 | 535 | 567 | 663 | 695 | 983 | 310 | 438 => 4,
                87 | 119 | 215 | 247 => 1,
                279 | 311 | 343 | 375 | 407 | 439 | 790 | 918 => 2,
                599 | 631 | 727 | 759 => 8,
                533 | 661 => 128,
                1014 => 32,
                597 | 725 => {
                    // lswi/stswi: EA = (rA|0), NB from the rB field (0 means 32).
                    let nb = if rb == 0 { 32 } else { rb };
                    return Some(MemAccess {
                        ra: base(ra_field),
                        rb: None,
                        displacement: 0,
                        span: nb,
                        rd,
                        x_form: true,
                    });
                }
                _ => return None,
            };
            let updates = matches!(xo, 55 | 119 | 183 | 247 | 311 | 375 | 439 | 567 | 631 | 695 | 759);
            Some(MemAccess {
                ra: if updates { update(ra_field) } else { base(ra_field) },
                rb: Some(rb),
                displacement: 0,
                span,
                rd,
                x_form: true,
            })
        }
        _ => None,
    }
}

/// DSISR for an alignment exception, formed from the instruction as the PowerPC architecture specifies
/// (bits in IBM numbering: 15-16 XO[29-30], 17 XO[25], 18-21 XO[21-24] for X-form; 17 opcode[5], 18-21
/// opcode[1-4] for D-form; 22-26 rD/rS; 27-31 rA).
pub fn alignment_dsisr(word: u32) -> u32 {
    let ibm = |bit: u32| (word >> (31 - bit)) & 1;
    let put = |value: u32, ibm_bit: u32| value << (31 - ibm_bit);
    let mut dsisr = 0;
    if word >> 26 == 31 {
        dsisr |= put(ibm(29), 15) | put(ibm(30), 16);
        dsisr |= put(ibm(25), 17);
        for (i, bit) in (21..=24).enumerate() {
            dsisr |= put(ibm(bit), 18 + i as u32);
        }
    } else {
        dsisr |= put(ibm(5), 17);
        for (i, bit) in (1..=4).enumerate() {
            dsisr |= put(ibm(bit), 18 + i as u32);
        }
    }
    dsisr | (((word >> 21) & 0x1F) << 5) | ((word >> 16) & 0x1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_assembler() {
        // Words produced by powerpc-linux-gnu-as for the same mnemonics.
        assert_eq!(mftb(9, spr::TBL_READ), 0x7D2C_42E6); // mftb r9
        assert_eq!(mfspr(3, spr::DEC), 0x7C76_02A6); // mfdec r3
        assert_eq!(mtspr(spr::DEC, 3), 0x7C76_03A6); // mtdec r3
        assert_eq!(mtspr(spr::TBL_WRITE, 3), 0x7C7C_43A6); // mttbl r3
        assert_eq!(mtspr(spr::SRR0, 7), 0x7CFA_03A6); // mtsrr0 r7
        assert_eq!(mtspr(529, 4), 0x7C91_83A6); // mtibatl 0,r4
    }

    #[test]
    fn bat_sprs_and_tracked_writes_decode() {
        assert_eq!(bat_spr(BatKind::Instruction, 0, true), 528);
        assert_eq!(bat_spr(BatKind::Data, 3, false), 543);
        assert_eq!(bat_spr(BatKind::Instruction, 4, true), 560);
        assert_eq!(bat_spr(BatKind::Data, 7, false), 575);
        for kind in [BatKind::Instruction, BatKind::Data] {
            for pair in 0..BAT_PAIRS {
                for upper in [true, false] {
                    assert_eq!(decode_bat_spr(bat_spr(kind, pair, upper)), Some((kind, pair, upper)));
                }
            }
        }
        assert_eq!(decode_bat_spr(544), None);
        assert_eq!(decode_bat_spr(559), None);
        // mtdbatu 1,r5 (binutils 0x7CBA83A6), mtspr 1008,r7 (HID0).
        assert_eq!(
            TrackedWrite::decode(0x7CBA_83A6),
            Some(TrackedWrite::Bat { kind: BatKind::Data, pair: 1, upper: true, rs: 5 })
        );
        assert_eq!(TrackedWrite::decode(mtspr(spr::HID0, 7)), Some(TrackedWrite::Hid0 { rs: 7 }));
        assert_eq!(
            TrackedWrite::decode(mtspr(574, 0)),
            Some(TrackedWrite::Bat { kind: BatKind::Data, pair: 7, upper: true, rs: 0 })
        );
        assert_eq!(TrackedWrite::decode(mfspr(3, 536)), None, "a read is not tracked");
        assert_eq!(TrackedWrite::decode(mtspr(spr::SRR0, 3)), None);
    }

    #[test]
    fn overlapping_bats_are_found() {
        let mut bats = [Bat::default(); BAT_PAIRS];
        bats[0] = Bat { upper: 0x1FFF, lower: 0x12 };
        bats[1] = Bat { upper: 0xE000_0002, lower: 0xE000_002A };
        bats[5] = Bat { upper: 0xE000_1FFF, lower: 0xE000_002A };
        assert_eq!(bats[1].supervisor_block(), Some((0xE000_0000, 128 << 10)));
        assert_eq!(bat_overlaps(&bats), vec![(1, 5, 0xE000_0000, 128 << 10)]);
        bats[5].upper &= !0x2; // Vs clear: not valid for supervisor accesses
        assert!(bat_overlaps(&bats).is_empty());
    }

    #[test]
    fn time_instructions_decode() {
        assert_eq!(TimeInsn::decode(0x7D2C_42E6), Some(TimeInsn::ReadTbl(9)));
        assert_eq!(TimeInsn::decode(mftb(4, spr::TBU_READ)), Some(TimeInsn::ReadTbu(4)));
        assert_eq!(TimeInsn::decode(mfspr(5, spr::TBL_READ)), Some(TimeInsn::ReadTbl(5)));
        assert_eq!(TimeInsn::decode(mtspr(spr::TBU_WRITE, 6)), Some(TimeInsn::WriteTbu(6)));
        assert_eq!(TimeInsn::decode(0x7C76_02A6), Some(TimeInsn::ReadDec(3)));
        assert_eq!(TimeInsn::decode(0x7C76_03A6), Some(TimeInsn::WriteDec(3)));
        assert_eq!(TimeInsn::decode(mtspr(spr::SRR0, 3)), None);
        assert_eq!(TimeInsn::decode(BRANCH_TO_SELF), None);
    }

    #[test]
    fn traps_and_accesses_decode() {
        assert!(is_trap(0x7FE0_0008)); // trap
        assert!(is_trap(0x0C80_0000)); // twi
        assert!(!is_trap(0x7C00_0214)); // add
        let lwz = decode_mem_access(0x81AC_07F0).unwrap(); // lwz r13,0x7f0(r12)
        assert_eq!((lwz.ra, lwz.displacement, lwz.span, lwz.rd), (Some(12), 0x7F0, 4, 13));
        let stb = decode_mem_access(0x99CC_4500).unwrap(); // stb r14,0x4500(r12)
        assert_eq!((stb.ra, stb.displacement, stb.span), (Some(12), 0x4500, 1));
        let lwzx = decode_mem_access(0x7C64_282E).unwrap(); // lwzx r3,r4,r5
        assert_eq!((lwzx.ra, lwzx.rb, lwzx.span), (Some(4), Some(5), 4));
        assert_eq!(decode_mem_access(0x7C64_2A14), None); // add r3,r4,r5
    }

    #[test]
    fn alignment_dsisr_follows_the_architecture() {
        // lwarx r3,r4,r5 (X-form, XO 20 = bits 26 and 28 set): nothing from XO lands in DSISR.
        assert_eq!(alignment_dsisr(0x7C64_2828), (3 << 5) | 4);
        // stwcx. r3,r4,r5 (XO 150 = 0b0010010110): bits 23, 26, 28, 29 set -> DSISR 15 and 20.
        assert_eq!(alignment_dsisr(0x7C64_292D), (1 << (31 - 15)) | (1 << (31 - 20)) | (3 << 5) | 4);
        // lwz r3,8(r4) (D-form, opcode 32 = 0b100000): opcode bit 5 = 0, bits 1-4 = 0b0000.
        assert_eq!(alignment_dsisr(0x8064_0008), (3 << 5) | 4);
    }
}
