//! The state U-Boot leaves at `go` (`crate::uboot`) and what a program that does not take its own state
//! first runs into: U-Boot's decrementer and leftover vectors, overlapping BATs, a locked data cache; and
//! the translation-miss vectors.

use super::asm::*;
use super::*;
use crate::ppc::{bat_spr, hid0, spr, BatKind, BAT_PAIRS};
use crate::uboot;

/// A program at BASE that takes nothing over: it runs in U-Boot's state.
fn bare() -> Asm {
    Asm::new(BASE)
}

/// `mtdec` with the largest positive count: U-Boot's decrementer no longer fires.
fn park_dec(a: &mut Asm) {
    a.emit(lis(0, 0x7FFF)).emit(ori(0, 0, 0xFFFF)).emit(mtspr(spr::DEC, 0));
}

/// `rfi` to the next instruction with this MSR.
fn set_msr(a: &mut Asm, msr: u32) {
    a.li32(0, msr).emit(mtspr(27, 0));
    let after = a.here() + 16;
    a.li32(0, after).emit(mtspr(26, 0)).emit(RFI);
}

#[test]
fn go_hands_over_uboots_bats_hid0_msr_and_a_running_decrementer() {
    let mut a = bare();
    a.emit(mfspr(3, spr::DEC)).emit(mfmsr(4));
    park_dec(&mut a);
    a.li32(D, DATA).emit(stw(3, 0, D)).emit(stw(4, 4, D));
    a.emit(mfspr(5, spr::HID0)).emit(stw(5, 8, D));
    let mut at = 0x10;
    for kind in [BatKind::Instruction, BatKind::Data] {
        for pair in 0..BAT_PAIRS {
            a.emit(mfspr(5, bat_spr(kind, pair, true))).emit(stw(5, at, D));
            a.emit(mfspr(5, bat_spr(kind, pair, false))).emit(stw(5, at + 4, D));
            at += 8;
        }
    }
    a.emit(HALT);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }), "EE is still on: {outcome:?}");
    assert_eq!(word(&board, DATA), uboot::DEC, "DEC at the first instruction");
    assert_eq!(word(&board, DATA + 4), uboot::MSR);
    assert_eq!(word(&board, DATA + 4) & 0x8030, 0x8030, "EE, IR and DR on");
    assert_eq!(word(&board, DATA + 8), uboot::HID0);
    assert_ne!(word(&board, DATA + 8) & hid0::DLOCK, 0, "data cache locked");
    let mut at = DATA + 0x10;
    for _kind in 0..2 {
        for bat in uboot::BATS {
            assert_eq!((word(&board, at), word(&board, at + 4)), (bat.upper, bat.lower), "at {at:#x}");
            at += 8;
        }
    }
    // Pairs 4-7 are really loaded: IMMR and the flash are mapped by pairs 5 and 6.
    assert_eq!(board.bats_covering(0xE000_0000), (vec![5], vec![5]));
    assert_eq!(board.bats_covering(0xFE00_0000), (vec![6], vec![6]));
    assert!(board.dcache_locked(), "nothing unlocked it");
}

#[test]
fn uboots_decrementer_enters_uboots_vector_unless_ee_is_masked_first() {
    // 200 instructions with EE on: U-Boot's decrementer fires (16 ticks = 128 instructions) and the core
    // enters U-Boot's 0x900, which the emulator reports.
    let mut a = bare();
    a.emit(li(3, 200)).emit(mtctr(3)).label("spin").bdnz_to("spin").emit(HALT);
    let (board, outcome) = run(&spec(&a));
    match &outcome {
        Outcome::Unmodelled { addr: 0x900, what, .. } => {
            assert!(what.contains("U-Boot's exception vector 0x900"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(board.exceptions()[0].vector, 0x900);
    assert!(board.exceptions()[0].instructions <= 8 * u64::from(uboot::DEC + 1));
    // The same loop after masking EE and parking DEC, as the firmware's start code does, finishes.
    let mut a = bare();
    a.emit(mfmsr(0)).emit(andi_(0, 0, 0x7FFF)).emit(mtmsr(0));
    park_dec(&mut a);
    a.emit(li(3, 200)).emit(mtctr(3)).label("spin").bdnz_to("spin").emit(HALT);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Halted { .. }), "{outcome:?}");
    assert!(board.exceptions().is_empty());
}

/// U-Boot's state, EE off and DEC parked, translation off; then DBAT1 = IMMR 1 MiB (the board's table),
/// optionally after clearing pairs 4-7, translation back on and one IMMR read.
fn reload_bats_and_read_immr(clear_high_pairs: bool) -> (Board, Outcome) {
    let mut a = bare();
    park_dec(&mut a);
    set_msr(&mut a, 0x1002);
    if clear_high_pairs {
        a.emit(li(0, 0));
        for pair in 4..BAT_PAIRS {
            a.emit(mtspr(bat_spr(BatKind::Data, pair, true), 0))
                .emit(mtspr(bat_spr(BatKind::Instruction, pair, true), 0));
        }
    }
    a.li32(5, 0xE000_0002).li32(6, 0xE000_002A);
    a.emit(mtspr(bat_spr(BatKind::Data, 1, false), 6)).emit(mtspr(bat_spr(BatKind::Data, 1, true), 5)).emit(ISYNC);
    set_msr(&mut a, 0x1032);
    a.emit(lis(IMMR, 0xE000)).li32(D, DATA).emit(lwz(3, 0x108, IMMR)).emit(stw(3, 0, D)).emit(HALT);
    run(&spec(&a))
}

#[test]
fn uboots_high_bats_left_in_place_overlap_the_board_table_and_stop_the_run() {
    let (board, outcome) = reload_bats_and_read_immr(false);
    match &outcome {
        Outcome::Unmodelled { addr: 0xE000_0108, what, .. } => {
            assert!(what.contains("two valid BATs") && what.contains("DBAT1") && what.contains("DBAT5"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(board.bats_covering(0xE000_0108).1, vec![1, 5]);
    // Cleared first, the same table runs.
    let (board, outcome) = reload_bats_and_read_immr(true);
    assert!(matches!(outcome, Outcome::Halted { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), 0x8030_0300, "SPRIDR through DBAT1");
    assert_eq!(board.bats_covering(0xE000_0108).1, vec![1]);
}

#[test]
fn a_program_that_leaves_the_data_cache_locked_is_told() {
    let mut a = bare();
    park_dec(&mut a);
    a.emit(HALT);
    let (board, _) = run(&spec(&a));
    assert!(board.dcache_locked());
    // Invalidate and unlock as U-Boot's unlock_ram_in_cache does.
    let mut a = bare();
    park_dec(&mut a);
    // HID0[DCFI], data cache flash invalidate.
    const DCFI: u32 = 0x0400;
    let (dlock_dcfi, dcfi) = ((hid0::DLOCK | DCFI) as i16, DCFI as u16);
    a.emit(mfspr(5, spr::HID0)).emit(li(7, dlock_dcfi)).emit(0x7CA5_3878); // andc r5,r5,r7
    a.emit(ori(7, 5, dcfi)).emit(mtspr(spr::HID0, 7)).emit(mtspr(spr::HID0, 5)).emit(HALT);
    let (board, _) = run(&spec(&a));
    assert!(!board.dcache_locked());
    assert_eq!(board.hid0(), uboot::HID0 & !hid0::DLOCK);
}

/// With the known state, IBAT0/DBAT0 over DDR and DBAT1 over IMMR, a handler recording SRR0, SRR1, DMISS,
/// IMISS and MSR at `vector`; then translation on and `access`.
fn miss(vector: u32, access: impl FnOnce(&mut Asm)) -> (Board, Outcome, u32) {
    let mut a = program();
    a.li32(3, 0x1FFE).emit(li(4, 0x12));
    a.emit(mtspr(bat_spr(BatKind::Instruction, 0, false), 4)).emit(mtspr(bat_spr(BatKind::Instruction, 0, true), 3));
    a.emit(mtspr(bat_spr(BatKind::Data, 0, false), 4)).emit(mtspr(bat_spr(BatKind::Data, 0, true), 3));
    set_msr(&mut a, 0x1032);
    let at = a.here();
    access(&mut a);
    let mut h = Asm::new(vector);
    h.emit(mfspr(20, 26)).emit(mfspr(21, 27)).emit(mfspr(22, spr::DMISS)).emit(mfspr(23, spr::IMISS)).emit(mfmsr(24));
    h.li32(25, DATA);
    for (n, r) in (20..=24).enumerate() {
        h.emit(stw(r, 0x100 + 4 * n as i16, 25));
    }
    h.emit(HALT);
    let (board, outcome) = run(&spec(&a).segment(vector, h.bytes(), PF_R | PF_X));
    (board, outcome, at)
}

#[test]
fn accesses_outside_every_bat_take_the_e300_translation_miss_vectors() {
    let (board, outcome, at) = miss(0x1100, |a| {
        a.li32(5, 0xD000_0000).emit(lwz(6, 0, 5)).emit(HALT);
    });
    let load_at = at + 8;
    assert!(matches!(outcome, Outcome::Halted { pc: 0x1100.., .. }), "{outcome:?}");
    assert_eq!(board.exceptions().last().map(|e| (e.vector, e.srr0)), Some((0x1100, load_at)));
    assert_eq!(word(&board, DATA + 0x100), load_at, "SRR0");
    assert_eq!(word(&board, DATA + 0x108), 0xD000_0000, "DMISS");
    assert_ne!(word(&board, DATA + 0x110) & crate::ppc::msr::TGPR, 0, "MSR[TGPR]");
    assert_eq!(word(&board, DATA + 0x110) & 0x30, 0, "translation off in the handler");

    let (board, _, at) = miss(0x1200, |a| {
        a.li32(5, 0xD000_0000).emit(stw(6, 4, 5)).emit(HALT);
    });
    assert_eq!(board.exceptions().last().map(|e| (e.vector, e.srr0)), Some((0x1200, at + 8)));
    assert_eq!(word(&board, DATA + 0x108), 0xD000_0004, "DMISS");

    let (board, _, _) = miss(0x1000, |a| {
        a.li32(5, 0xD000_0000).emit(mtctr(5)).emit(BCTRL);
    });
    assert_eq!(board.exceptions().last().map(|e| (e.vector, e.srr0)), Some((0x1000, 0xD000_0000)));
    assert_eq!(word(&board, DATA + 0x10C), 0xD000_0000, "IMISS");
}
