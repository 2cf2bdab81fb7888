//! Board-level tests with small hand-assembled PowerPC programs packed into ELF images.

mod agent;
mod asm;
mod devices;
mod elfbuild;

use std::cell::RefCell;
use std::rc::Rc;

use asm::*;
use elfbuild::{ElfSpec, SymbolSection, PF_R, PF_X};

use crate::immr::{RSR_HRS, RSR_SWHR, RSR_SWRS, SWCRR_SWEN, SWCRR_SWRI};
use crate::{Board, Config, LoadError, Outcome, Output};

/// Where test programs are linked (the firmware's load address).
const BASE: u32 = 0x0010_0000;
/// Scratch RAM the programs report results into (outside every segment, so it survives resets).
const DATA: u32 = 0x0020_0000;
/// By convention r12 holds the IMMR base and r11 the DATA address.
const IMMR: u32 = 12;
const D: u32 = 11;

fn new_board() -> Board {
    Board::new(Config::default()).expect("board")
}

fn boot(spec: &ElfSpec) -> Board {
    let mut board = new_board();
    board.load_elf(&spec.build()).expect("load");
    board
}

fn run(spec: &ElfSpec) -> (Board, Outcome) {
    let mut board = boot(spec);
    let outcome = board.run();
    (board, outcome)
}

/// A program at BASE starting with the register conventions.
fn program() -> Asm {
    let mut a = Asm::new(BASE);
    a.emit(lis(IMMR, 0xE000)).li32(D, DATA);
    a
}

fn spec(a: &Asm) -> ElfSpec {
    ElfSpec::code(a.base, a.bytes())
}

/// Set MSR[EE] and park in `b .`: idle, waiting for an interrupt.
fn idle(a: &mut Asm) {
    a.emit(mfmsr(0)).emit(ori(0, 0, 0x8000)).emit(mtmsr(0)).emit(HALT);
}

/// A vector handler that stores SRR0/SRR1 at DATA+0x100/0x104 and parks with interrupts off.
fn recording_handler(vector: u32) -> Asm {
    let mut h = Asm::new(vector);
    h.emit(mfspr(20, 26)).emit(mfspr(21, 27)).li32(22, DATA + 0x100);
    h.emit(stw(20, 0, 22)).emit(stw(21, 4, 22)).emit(HALT);
    h
}

fn word(board: &Board, addr: u32) -> u32 {
    board.read_u32(addr).unwrap()
}

#[test]
fn console_output_through_uart0() {
    let mut a = program();
    a.emit(li(3, 0x03)).emit(stb(3, 0x4503, IMMR)); // ULCR = 8N1
    for &byte in b"hello, board\n" {
        // Wait for THRE like a real driver, then write UTHR.
        // lbz r4,ULSR; andi. r4,r4,0x20; beq .-8
        a.emit(lbz(4, 0x4505, IMMR)).emit(0x7084_0020).emit(bc(12, 2, -8));
        a.emit(li(3, i16::from(byte))).emit(stb(3, 0x4500, IMMR));
    }
    idle(&mut a);
    let mut board = boot(&spec(&a));
    let streamed = Rc::new(RefCell::new(Vec::new()));
    let sink = streamed.clone();
    board.set_output(move |out| {
        if let Output::Console(bytes) = out {
            sink.borrow_mut().extend_from_slice(bytes);
        }
    });
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome}");
    assert_eq!(board.console(), b"hello, board\n");
    assert_eq!(&streamed.borrow()[..], b"hello, board\n");
}

#[test]
fn spridr_and_pvr_are_readable() {
    let mut a = program();
    a.emit(lwz(5, 0x108, IMMR)).emit(mfspr(6, 287)).emit(lwz(7, 0x904, IMMR)).emit(lwz(8, 0xA00, IMMR));
    a.emit(stw(5, 0, D)).emit(stw(6, 4, D)).emit(stw(7, 8, D)).emit(stw(8, 12, D));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome}");
    assert_eq!(word(&board, DATA), 0x8030_0300);
    assert_eq!(word(&board, DATA + 4) & 0x7FFF_0000, 0x0083_0000, "PVR {:#x}", word(&board, DATA + 4));
    assert_eq!(word(&board, DATA + 8), 0x4000_0000);
    assert_eq!(word(&board, DATA + 12), 0x0404_0000);
}

#[test]
fn unmodelled_immr_register_stops_with_address_and_exact_pc() {
    let mut a = program();
    a.emit(li(3, 1)).emit(li(4, 2));
    let pc = a.here();
    a.emit(lwz(5, 0x7F0, IMMR)).emit(li(6, 3));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    let text = outcome.to_string();
    assert_eq!(
        outcome,
        Outcome::Unmodelled {
            addr: 0xE000_07F0,
            size: 4,
            write: false,
            pc,
            what: "IMMR offset 0x7f0 is not a modelled register".into()
        }
    );
    assert!(text.contains("0xe00007f0") && text.contains(&format!("{pc:#010x}")), "{text}");
    assert_eq!(outcome.exit_code(), 2);
    assert!(board.instructions() >= 6);
}

#[test]
fn wrong_width_and_relocation_are_refused() {
    let mut a = program();
    a.emit(lhz(5, 0x108, IMMR));
    idle(&mut a);
    let (_, outcome) = run(&spec(&a));
    assert!(outcome.to_string().contains("2-byte access to SPRIDR"), "{outcome}");

    let mut a = program();
    a.emit(lis(3, 0xF000));
    let pc = a.here();
    a.emit(stw(3, 0, IMMR));
    idle(&mut a);
    let (_, outcome) = run(&spec(&a));
    assert!(matches!(&outcome, Outcome::Unmodelled { write: true, pc: p, .. } if *p == pc), "{outcome:?}");
    assert!(outcome.to_string().contains("IMMR relocation not modelled"), "{outcome}");
}

#[test]
fn unmapped_access_stops_with_address_and_pc() {
    // 0xF000_0000: the EMDS's local-bus SDRAM, which the agent setup leaves unused and nothing models.
    let mut a = program();
    a.emit(lis(3, 0xF000)).emit(li(4, 7));
    let pc = a.here();
    a.emit(lwz(5, 0, 3));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    match &outcome {
        Outcome::Unmapped { addr: 0xF000_0000, size: 4, write: false, pc: p, what } => {
            assert_eq!(*p, pc);
            assert!(what.contains("nothing is mapped"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert!(outcome.to_string().contains("0xf0000000"));
    // Exactly the instructions before the faulting load ran.
    assert_eq!(board.instructions(), u64::from((pc - BASE) / 4));
}

#[test]
fn the_stub_page_is_not_the_firmwares() {
    let mut a = program();
    a.emit(lis(3, 0xC000)).emit(stw(3, 0, 3));
    idle(&mut a);
    let (_, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmapped { addr: 0xC000_0000, write: true, what, .. } if what.contains("emulator-private")),
        "{outcome:?}"
    );

    let mut a = program();
    a.emit(lis(3, 0xC000)).emit(mtctr(3)).emit(0x4E80_0420); // bctr
    let (_, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmapped { addr: 0xC000_0000, what, .. } if what.contains("instruction fetch")),
        "{outcome:?}"
    );
}

#[test]
fn trap_delivers_program_exception_and_halts() {
    let mut a = program();
    let trap_at = a.here() + 4;
    a.emit(li(3, 5)).emit(TRAP).emit(li(3, 6));
    idle(&mut a);
    let spec = spec(&a).segment(0x700, recording_handler(0x700).bytes(), PF_R | PF_X);
    let (board, outcome) = run(&spec);
    let Outcome::Halted { last_exception: Some(e), checkstop: false, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!((e.vector, e.address, e.srr0), (0x700, 0x700, trap_at));
    assert_eq!(e.srr1, 0x0002_0000 | 0x1002, "trap bit plus MSR ME|RI");
    // The handler saw the same values in the real SRR0/SRR1.
    assert_eq!(word(&board, DATA + 0x100), trap_at);
    assert_eq!(word(&board, DATA + 0x104), 0x0002_1002);
    assert_eq!(board.exceptions().len(), 1);
    assert_eq!(board.msr() & 0x8032, 0, "EE, IR, DR, RI clear in the handler");
    assert_eq!(board.gpr(3), 5, "the instruction after the trap did not run");
}

#[test]
fn system_call_and_illegal_instruction() {
    let mut a = program();
    let sc_at = a.here();
    a.emit(SC);
    let spec_sc = spec(&a).segment(0xC00, recording_handler(0xC00).bytes(), PF_R | PF_X);
    let (board, _) = run(&spec_sc);
    assert_eq!(word(&board, DATA + 0x100), sc_at + 4, "SRR0 = next instruction");
    assert_eq!(board.exceptions()[0].vector, 0xC00);

    let mut a = program();
    let bad_at = a.here();
    a.emit(ILLEGAL);
    let spec_ill = spec(&a).segment(0x700, recording_handler(0x700).bytes(), PF_R | PF_X);
    let (board, _) = run(&spec_ill);
    assert_eq!(word(&board, DATA + 0x100), bad_at);
    assert_eq!(word(&board, DATA + 0x104) & 0xFFFF_0000, 0x0008_0000);
}

#[test]
fn rfi_returns_from_a_handler_with_state_restored() {
    // The handler skips the trap and returns; the program then idles with EE set.
    let mut a = program();
    a.emit(mfmsr(0)).emit(ori(0, 0, 0x8000)).emit(mtmsr(0));
    a.emit(TRAP).emit(li(3, 42)).emit(stw(3, 0, D)).emit(HALT);
    let mut h = Asm::new(0x700);
    h.emit(mfspr(20, 26)).emit(addi(20, 20, 4)).emit(mtspr(26, 20)).emit(RFI);
    let (board, outcome) = run(&spec(&a).segment(0x700, h.bytes(), PF_R | PF_X));
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), 42);
    assert_ne!(board.msr() & 0x8000, 0, "rfi restored EE from SRR1");
}

#[test]
fn idle_versus_halt() {
    let mut a = program();
    idle(&mut a);
    let (_, outcome) = run(&spec(&a));
    assert_eq!(outcome, Outcome::Idle { pc: a.here() - 4 });
    assert_eq!(outcome.exit_code(), 0);

    let mut a = program();
    a.emit(HALT);
    let (_, outcome) = run(&spec(&a));
    assert_eq!(outcome, Outcome::Halted { pc: a.here() - 4, last_exception: None, checkstop: false });
    assert_eq!(outcome.exit_code(), 1);
}

#[test]
fn parked_decrementer_does_not_keep_the_board_busy() {
    // Firmware parks DEC at its largest positive value before idling; that is not a timer to wait for.
    let mut a = program();
    a.li32(3, 0x7FFF_FFFF).emit(mtspr(22, 3));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert_eq!(outcome, Outcome::Idle { pc: a.here() - 4 });
    assert!(board.exceptions().is_empty());
    assert_eq!(board.skipped_instructions(), 0);
}

#[test]
fn exact_instruction_count_of_a_loop() {
    // lis, lis, ori (prologue) + li + mtctr + 1000 × (addi, bdnz) = 2005, then parked in `b .`.
    let mut a = program();
    a.emit(li(3, 1000)).emit(mtctr(3)).label("loop").emit(addi(4, 4, 1)).bdnz_to("loop").emit(HALT);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Halted { .. }));
    assert_eq!(board.instructions(), 3 + 2 + 2000);
    assert_eq!(board.gpr(4), 1000);
    assert_eq!(board.virtual_time_ps(), 2005 * 1875);

    // A limit stops exactly, in the middle of a block, and the run resumes from there.
    for limit in [1, 2, 5, 1001, 1002, 2004, 2005] {
        let mut board = boot(&spec(&a));
        board.set_max_instructions(Some(limit));
        assert_eq!(board.run(), Outcome::InstructionLimit);
        assert_eq!(board.instructions(), limit, "limit {limit}");
        board.set_max_instructions(None);
        assert!(matches!(board.run(), Outcome::Halted { .. }));
        assert_eq!(board.instructions(), 2005, "resumed after limit {limit}");
        assert_eq!(board.gpr(4), 1000);
    }
}

#[test]
fn one_instruction_counted_loop_is_not_idle() {
    let mut a = program();
    a.emit(li(3, 100)).emit(mtctr(3)).emit(bc(16, 0, 0)).emit(HALT); // bdnz .
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Halted { .. }), "{outcome:?}");
    assert_eq!(board.instructions(), 3 + 2 + 100);
}

/// Store mftb/mftbu into DATA+off, DATA+off+4.
fn store_tb(a: &mut Asm, off: i16) {
    a.emit(mftb(5, 269)).emit(mftb(6, 268)).emit(stw(5, off, D)).emit(stw(6, off + 4, D));
}

#[test]
fn timebase_advances_one_tick_per_eight_instructions() {
    let mut a = program();
    // count 3: li; 4: mtctr; 5: mftb (TB = 5/8 = 0)
    a.emit(li(3, 1000)).emit(mtctr(3)).emit(mftb(5, 268));
    a.label("loop").emit(NOP).bdnz_to("loop");
    // count 6 + 2000 = 2006: mftb (TB = 2006/8 = 250)
    a.emit(mftb(6, 268)).emit(mfspr(7, 268)).emit(stw(5, 0, D)).emit(stw(6, 4, D)).emit(stw(7, 8, D));
    a.emit(HALT);
    let (board, _) = run(&spec(&a));
    assert_eq!(word(&board, DATA), 0);
    assert_eq!(word(&board, DATA + 4), 2006 / 8);
    assert_eq!(word(&board, DATA + 8), 2007 / 8, "the mfspr 268 form too");
    assert_eq!(board.timebase(), board.instructions() / 8);
}

#[test]
fn timebase_stops_without_tben_and_can_be_written() {
    let mut a = program();
    a.emit(li(3, 0)).emit(stw(3, 0x110, IMMR)); // SPCR: TBEN off
    store_tb(&mut a, 0);
    a.emit(li(3, 100)).emit(mtctr(3)).label("l1").emit(NOP).bdnz_to("l1");
    store_tb(&mut a, 8);
    // Write TB = 0x0000_0001_FFFF_FFF0 while stopped, then run it again.
    a.emit(li(3, -16)).emit(mtspr(284, 3)).emit(li(3, 1)).emit(mtspr(285, 3));
    a.li32(3, 0x0040_0000).emit(stw(3, 0x110, IMMR)); // TBEN on
    a.emit(li(3, 100)).emit(mtctr(3)).label("l2").emit(NOP).bdnz_to("l2");
    store_tb(&mut a, 16);
    a.emit(HALT);
    let (board, _) = run(&spec(&a));
    let tb = |off| (u64::from(word(&board, DATA + off)) << 32) | u64::from(word(&board, DATA + off + 4));
    assert_eq!(tb(0), tb(8), "frozen while TBEN is clear");
    let expected = 0x1_FFFF_FFF0u64 + 200 / 8;
    assert!((expected..=expected + 2).contains(&tb(16)), "{:#x}", tb(16));
}

#[test]
fn decrementer_exception_when_enabled() {
    let mut a = program();
    a.emit(li(3, 100));
    let mtdec_at = a.here();
    a.emit(mtspr(22, 3)).emit(mfspr(4, 22)).emit(stw(4, 0, D));
    idle(&mut a);
    let halt_at = a.here() - 4;
    let (board, outcome) = run(&spec(&a).segment(0x900, recording_handler(0x900).bytes(), PF_R | PF_X));
    assert!(matches!(outcome, Outcome::Halted { .. }), "{outcome:?}");
    // mtdec at count c, mfdec at c + 1: the ticks in between were taken off.
    let c = u64::from((mtdec_at - BASE) / 4);
    assert_eq!(u64::from(word(&board, DATA)), 100 - ((c + 1) / 8 - c / 8));
    let e = board.exceptions()[0];
    assert_eq!((e.vector, e.srr0), (0x900, halt_at));
    assert_eq!(e.srr1 & 0x8000, 0x8000, "EE was set");
    assert!(board.skipped_instructions() > 0, "the wait in `b .` was skipped, not emulated");
    // DEC written at count c expires 101 ticks after c's tick.
    assert_eq!(e.instructions, (c / 8 + 101) * 8);
    assert_eq!(word(&board, DATA + 0x100), halt_at);
}

#[test]
fn pending_decrementer_is_taken_when_ee_is_set() {
    let mut a = program();
    a.emit(li(3, 10)).emit(mtspr(22, 3));
    a.emit(li(3, 200)).emit(mtctr(3)).label("spin").emit(NOP).bdnz_to("spin"); // DEC expires in here
    a.emit(mfmsr(0)).emit(ori(0, 0, 0x8000)).emit(mtmsr(0));
    let after_mtmsr = a.here();
    a.emit(li(3, 1)).emit(HALT);
    let (board, _) = run(&spec(&a).segment(0x900, recording_handler(0x900).bytes(), PF_R | PF_X));
    let e = board.exceptions()[0];
    assert_eq!((e.vector, e.srr0), (0x900, after_mtmsr), "taken right after mtmsr set EE");
    assert_eq!(board.gpr(3), 200, "the instruction after mtmsr waited for the handler");
}

/// Program that counts its boots at DATA and records RSR and r1 at DATA+4/8 on the second boot.
fn boot_counter(a: &mut Asm) {
    a.emit(lwz(3, 0, D)).emit(addi(3, 3, 1)).emit(stw(3, 0, D)).emit(cmpwi(3, 2)).bne_to("first");
    a.emit(lwz(4, 0x910, IMMR)).emit(stw(4, 4, D)).emit(stw(1, 8, D));
    idle(a);
    a.label("first");
}

#[test]
fn software_hard_reset_restarts_at_entry() {
    let mut a = program();
    boot_counter(&mut a);
    a.li32(3, 0x5253_5445).emit(stw(3, 0x918, IMMR)).emit(li(3, 2)).emit(stw(3, 0x91C, IMMR));
    a.emit(li(1, 0)).emit(HALT);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(board.resets(), 1);
    assert_eq!(word(&board, DATA), 2, "second boot");
    assert_eq!(word(&board, DATA + 4), RSR_SWHR | RSR_HRS);
    assert_eq!(word(&board, DATA + 8), crate::INITIAL_SP, "registers reset");
}

#[test]
fn rcr_without_rpr_key_does_nothing() {
    let mut a = program();
    a.emit(li(3, 2)).emit(stw(3, 0x91C, IMMR));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }));
    assert_eq!(board.resets(), 0);
}

#[test]
fn watchdog_expiry_resets_the_board() {
    let mut a = program();
    boot_counter(&mut a);
    // SWTC = 10 CSB cycles, no prescaler, reset on expiry; then hang with interrupts off.
    a.li32(3, (10 << 16) | SWCRR_SWEN | SWCRR_SWRI).emit(stw(3, 0x204, IMMR)).emit(HALT);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(board.resets(), 1);
    assert_eq!(word(&board, DATA + 4), RSR_SWRS | RSR_HRS);
}

#[test]
fn serviced_watchdog_does_not_fire_and_unserviced_one_raises_machine_check() {
    // Serviced: SWTC = 100 CSB cycles (200 instructions); serviced every 33 instructions.
    let mut a = program();
    a.li32(3, (100 << 16) | SWCRR_SWEN).emit(stw(3, 0x204, IMMR));
    a.li32(5, 0x556C).li32(6, 0xAA39);
    a.label("l").emit(sth(5, 0x20E, IMMR)).emit(sth(6, 0x20E, IMMR));
    for _ in 0..30 {
        a.emit(NOP);
    }
    a.b_to("l");
    let mut board = boot(&spec(&a));
    board.set_max_instructions(Some(20_000));
    assert_eq!(board.run(), Outcome::InstructionLimit);
    assert!(board.exceptions().is_empty());
    assert_eq!(board.resets(), 0);

    // Not serviced, SWRI clear: machine check (ME set), then again with ME clear: checkstop.
    let mut a = program();
    a.li32(3, (100 << 16) | SWCRR_SWEN).emit(stw(3, 0x204, IMMR)).emit(HALT);
    let mut h = Asm::new(0x200);
    h.emit(mfspr(20, 26)).emit(stw(20, 0x100, D)).emit(HALT);
    let (board, outcome) = run(&spec(&a).segment(0x200, h.bytes(), PF_R | PF_X));
    assert!(matches!(outcome, Outcome::Halted { checkstop: true, .. }), "{outcome:?}");
    assert_eq!(board.exceptions()[0].vector, 0x200);
    assert_eq!(word(&board, DATA + 0x100), a.here() - 4);
}

fn loader_error(spec: &ElfSpec) -> String {
    new_board().load_elf(&spec.build()).unwrap_err().to_string()
}

#[test]
fn loader_refuses_what_uboot_could_not_run() {
    let good = || ElfSpec::code(BASE, HALT.to_be_bytes().to_vec());
    assert_eq!(new_board().load_elf(b"hello").unwrap_err(), LoadError::NotElf);
    assert_eq!(new_board().load_elf(b"hello").unwrap_err().to_string(), "not an ELF file");

    let mut elf64 = good();
    elf64.class = 2;
    assert!(loader_error(&elf64).starts_with("not a 32-bit big-endian PowerPC ELF (class 64, data big-endian"));

    // An x86-64 little-endian object: the machine field is read in the file's byte order.
    let mut x86 = good();
    (x86.class, x86.data) = (2, 1);
    let mut bytes = x86.build();
    bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
    assert_eq!(
        new_board().load_elf(&bytes).unwrap_err().to_string(),
        "not a 32-bit big-endian PowerPC ELF (class 64, data little-endian, machine 62)"
    );

    let mut le = good();
    le.data = 1;
    let mut bytes = le.build();
    bytes[18..20].copy_from_slice(&20u16.to_le_bytes());
    assert!(new_board().load_elf(&bytes).unwrap_err().to_string().contains("data little-endian, machine 20"));

    let mut arm = good();
    arm.machine = 40;
    assert!(loader_error(&arm).ends_with("machine 40)"));

    let mut relocatable = good();
    relocatable.elf_type = 1;
    assert!(loader_error(&relocatable).contains("not an executable"));

    let mut no_entry = good();
    no_entry.entry = 0;
    assert_eq!(loader_error(&no_entry), "no entry point");

    let outside = ElfSpec::code(0x1000_0000, vec![0; 0x1000]);
    assert_eq!(loader_error(&outside), "segment 0x10000000..0x10001000 does not fit the board's RAM (0..0x10000000)");

    let straddling = ElfSpec::code(0x0FFF_F000, vec![0; 0x2000]);
    assert!(loader_error(&straddling).starts_with("segment 0xffff000..0x10001000"));

    let mut entry_in_data = good().segment(DATA, vec![0; 16], PF_R);
    entry_in_data.entry = DATA;
    assert!(loader_error(&entry_in_data).contains("not inside an executable loaded segment"));

    let mut no_segments = good();
    no_segments.segments.clear();
    assert!(loader_error(&no_segments).contains("no loadable"));
}

#[test]
fn loader_copies_file_bytes_and_zeroes_the_rest() {
    let mut a = program();
    a.emit(HALT);
    let mut spec = spec(&a);
    spec.segments.push(elfbuild::Segment { addr: DATA, data: vec![0xAA; 8], mem_size: 32, flags: PF_R });
    let mut board = new_board();
    board.write_ram(DATA, &[0x55; 64]).unwrap();
    let info = board.load_elf(&spec.build()).unwrap();
    assert_eq!(info.entry, BASE);
    let mut buf = [0u8; 40];
    board.read_ram(DATA, &mut buf).unwrap();
    assert_eq!(&buf[..8], &[0xAA; 8]);
    assert_eq!(&buf[8..32], &[0; 24]);
    assert_eq!(&buf[32..], &[0x55; 8], "RAM past the segment untouched");
    assert_eq!((board.pc(), board.msr(), board.gpr(1), board.gpr(3), board.gpr(4)), (BASE, 0x1002, 0x00FF_FFF0, 1, 0));
}

/// Set IBAT0/DBAT0 (virtual `virt` → physical 0, 256 MiB) and DBAT1 (IMMR, cache-inhibited + guarded),
/// then `rfi` to `target` (virtual) with IR|DR set.
fn bat_setup(a: &mut Asm, virt: u32, bats: bool) {
    if bats {
        a.li32(3, virt | 0x1FFE).emit(li(4, 2));
        a.emit(mtspr(529, 4)).emit(mtspr(528, 3)).emit(mtspr(537, 4)).emit(mtspr(536, 3));
        a.li32(5, 0xE000_1FFE).li32(6, 0xE000_002A).emit(mtspr(539, 6)).emit(mtspr(538, 5));
    }
    a.emit(ISYNC);
}

#[test]
fn bat_translation_identity() {
    let mut a = program();
    bat_setup(&mut a, 0, true);
    let target = a.here() + 7 * 4;
    a.li32(7, target).emit(mtspr(26, 7)).emit(mfmsr(8)).emit(ori(8, 8, 0x30)).emit(mtspr(27, 8)).emit(RFI);
    assert_eq!(a.here(), target);
    a.emit(li(9, 0x1234)).emit(stw(9, 0, D)).emit(lwz(10, 0, D)).emit(lwz(13, 0x108, IMMR)).emit(stw(13, 4, D));
    a.emit(li(14, b'B' as i16)).emit(stb(14, 0x4500, IMMR)).emit(mfmsr(15)).emit(stw(15, 8, D));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), 0x1234);
    assert_eq!(word(&board, DATA + 4), 0x8030_0300, "IMMR through DBAT1");
    assert_eq!(board.console(), b"B");
    assert_eq!(word(&board, DATA + 8) & 0x30, 0x30, "ran with IR|DR on");
}

#[test]
fn bat_translation_really_translates() {
    // IBAT0/DBAT0 map virtual 0x3000_0000 to physical 0: code runs at 0x301x_xxxx.
    let mut a = program();
    bat_setup(&mut a, 0x3000_0000, true);
    let target = a.here() + 7 * 4;
    a.li32(7, target + 0x3000_0000)
        .emit(mtspr(26, 7))
        .emit(mfmsr(8))
        .emit(ori(8, 8, 0x30))
        .emit(mtspr(27, 8))
        .emit(RFI);
    a.li32(9, 0x3000_0000 + DATA).emit(li(10, 0x77)).emit(stw(10, 0, 9)).emit(HALT);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Halted { pc, .. } if pc >= 0x3000_0000), "{outcome:?}");
    assert_eq!(word(&board, DATA), 0x77, "store landed at the physical address");
}

#[test]
fn translation_without_bats_stops_clearly() {
    let mut a = program();
    bat_setup(&mut a, 0, false);
    let target = a.here() + 7 * 4;
    a.li32(7, target).emit(mtspr(26, 7)).emit(mfmsr(8)).emit(ori(8, 8, 0x30)).emit(mtspr(27, 8)).emit(RFI);
    a.emit(HALT);
    let (_, outcome) = run(&spec(&a));
    match &outcome {
        Outcome::Unmodelled { addr, what, .. } => {
            assert_eq!(*addr, target);
            assert!(what.contains("no BAT"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ram_file_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ram");
    let mut a = program();
    a.li32(3, 0xCAFE_F00D).emit(stw(3, 0, D));
    idle(&mut a);
    let mut board = Board::new(Config { ram_file: Some(path.clone()), ..Config::default() }).unwrap();
    board.load_elf(&spec(&a).build()).unwrap();
    board.run();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 256 << 20);
    assert_eq!(&bytes[DATA as usize..DATA as usize + 4], &0xCAFE_F00Du32.to_be_bytes());
    assert_eq!(board.ram_path(), path);
}

// ---- log ring ----

/// rzCOBS, as defmt's encoder writes it (the decoder is defmt-decoder's).
fn rzcobs(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut run, mut zeros) = (0u8, 0u8);
    for &byte in data {
        if run < 7 {
            if byte == 0 {
                zeros |= 1 << run;
            } else {
                out.push(byte);
            }
            run += 1;
            if run == 7 && zeros != 0 {
                out.push(zeros);
                (run, zeros) = (0, 0);
            }
        } else if byte == 0 {
            out.push((run - 7) | 0x80);
            (run, zeros) = (0, 0);
        } else {
            out.push(byte);
            run += 1;
            if run == 134 {
                out.push(0xFF);
                (run, zeros) = (0, 0);
            }
        }
    }
    match run {
        0 => {}
        1..=6 => out.push((zeros | (0xFF << run)) & 0x7F),
        _ => out.push((run - 7) | 0x80),
    }
    out.push(0);
    out
}

const RING: u32 = 0x0030_0000;

/// An idle program whose ELF has a one-message defmt table ("hello {=u8}" at index 1, level info) and
/// a log ring symbol.
fn logging_spec() -> ElfSpec {
    let mut a = program();
    idle(&mut a);
    let mut spec = spec(&a)
        .symbol("__bpnet_log_ring", RING)
        .symbol("_defmt_version_ = 4", 0)
        .symbol("_defmt_encoding_ = rzcobs", 0);
    spec.extra_sections.push((".defmt".into(), vec![0; 4]));
    let message = r#"{"package":"t","tag":"defmt_info","data":"hello {=u8}","disambiguator":"1","crate_name":"t"}"#;
    spec.symbols.push((message.to_string(), 1, SymbolSection::Extra(0)));
    spec
}

/// Write a ring header (capacity 64, generation `gen`) with `data` published from head 0.
fn write_ring(board: &mut Board, generation: u32, head: u32, data: &[u8]) {
    use bpnet_contract::logring::{self, field};
    let mut ring = vec![0u8; logring::HEADER_LEN + 64];
    bpnet_contract::put_le32(&mut ring, field::MAGIC, logring::MAGIC);
    bpnet_contract::put_le32(&mut ring, field::CAPACITY, 64);
    bpnet_contract::put_le32(&mut ring, field::HEAD, head);
    bpnet_contract::put_le32(&mut ring, field::GENERATION, generation);
    let buf = &mut ring[logring::HEADER_LEN..];
    for (i, &b) in data.iter().enumerate() {
        buf[(head as usize - data.len() + i) % 64] = b;
    }
    board.write_ram(RING, &ring).unwrap();
}

#[test]
fn log_ring_frames_are_decoded() {
    let mut board = new_board();
    let info = board.load_elf(&logging_spec().build()).unwrap();
    assert_eq!(info.log_ring, Some(RING), "{:?}", info.notes);
    let mut stream = rzcobs(&[1, 0, 42]);
    stream.extend(rzcobs(&[1, 0, 7]));
    write_ring(&mut board, 1, stream.len() as u32, &stream);
    let lines = Rc::new(RefCell::new(Vec::new()));
    let sink = lines.clone();
    board.set_output(move |out| {
        if let Output::Log(line) = out {
            sink.borrow_mut().push(line.to_string());
        }
    });
    board.run();
    assert_eq!(board.log_lines(), ["log: INFO hello 42", "log: INFO hello 7"]);
    assert_eq!(*lines.borrow(), board.log_lines());
}

#[test]
fn log_ring_garbage_is_reported_not_fatal() {
    let mut board = new_board();
    board.load_elf(&logging_spec().build()).unwrap();
    // Not valid rzCOBS/defmt: unknown indexes, truncated frames, a zero in the middle.
    let garbage = [0xFF, 0x12, 0x00, 0x55, 0x01, 0x00, 0x09, 0x09, 0x09, 0x00];
    write_ring(&mut board, 1, garbage.len() as u32, &garbage);
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }));
    assert!(!board.log_lines().is_empty());
    assert!(board.log_lines().iter().all(|l| l.contains("malformed")), "{:?}", board.log_lines());
}

#[test]
fn log_ring_overrun_resynchronises() {
    let mut board = new_board();
    board.load_elf(&logging_spec().build()).unwrap();
    // The writer is 100 bytes ahead of a 64-byte ring: 36 lost; what remains starts mid-frame.
    let mut stream = Vec::new();
    while stream.len() < 100 {
        stream.extend(rzcobs(&[1, 0, 5]));
    }
    let head = stream.len() as u32;
    write_ring(&mut board, 1, head, &stream[stream.len() - 64..]);
    board.run();
    let lines = board.log_lines();
    assert!(lines[0].contains("bytes lost"), "{lines:?}");
    assert!(lines[1..].iter().all(|l| l == "log: INFO hello 5"), "{lines:?}");
    assert!(lines.len() > 2);
}

#[test]
fn no_defmt_table_means_no_log_decoding() {
    let mut a = program();
    idle(&mut a);
    let mut board = new_board();
    let info = board.load_elf(&spec(&a).symbol("__bpnet_log_ring", RING).build()).unwrap();
    assert_eq!(info.log_ring, None);
    assert!(info.notes.iter().any(|n| n.contains("no .defmt")), "{:?}", info.notes);
    write_ring(&mut board, 1, 3, &rzcobs(&[1, 0, 1])[..3]);
    board.run();
    assert!(board.log_lines().is_empty());
}

#[test]
fn alignment_exception_gets_dar_and_dsisr() {
    let mut a = program();
    a.emit(addi(3, D, 2));
    let at = a.here();
    a.emit(0x7C80_1828); // lwarx r4,0,r3 (unaligned reservation)
    let mut h = Asm::new(0x600);
    h.emit(mfspr(20, 26)).emit(mfspr(21, 19)).emit(mfspr(22, 18));
    h.emit(stw(20, 0x100, D)).emit(stw(21, 0x104, D)).emit(stw(22, 0x108, D)).emit(HALT);
    let (board, outcome) = run(&spec(&a).segment(0x600, h.bytes(), PF_R | PF_X));
    assert!(matches!(outcome, Outcome::Halted { .. }), "{outcome:?}");
    assert_eq!(board.exceptions()[0].vector, 0x600);
    assert_eq!(word(&board, DATA + 0x100), at);
    assert_eq!(word(&board, DATA + 0x104), DATA + 2, "DAR");
    assert_eq!(word(&board, DATA + 0x108), crate::ppc::alignment_dsisr(0x7C80_1828), "DSISR");
}

#[test]
fn store_through_a_read_only_bat_stops_with_the_address() {
    // DBAT2: virtual 0x4000_0000 -> physical 0, read-only. Unicorn reports the protection failure as a
    // store TLB miss (see BATS.md), which the emulator turns into a stop naming the address.
    let mut a = program();
    bat_setup(&mut a, 0, true);
    a.li32(5, 0x4000_1FFE).emit(li(6, 1)).emit(mtspr(541, 6)).emit(mtspr(540, 5)).emit(ISYNC);
    let target = a.here() + 7 * 4;
    a.li32(7, target).emit(mtspr(26, 7)).emit(mfmsr(8)).emit(ori(8, 8, 0x30)).emit(mtspr(27, 8)).emit(RFI);
    assert_eq!(a.here(), target);
    a.li32(9, 0x4000_0000 + DATA).emit(lwz(10, 0, 9)); // reading is allowed
    let store_at = a.here();
    a.emit(stw(10, 4, 9)).emit(HALT);
    let (_, outcome) = run(&spec(&a));
    match &outcome {
        Outcome::Unmodelled { addr, write: true, pc, what, .. } => {
            assert_eq!((*addr, *pc), (0x4000_0000 + DATA + 4, store_at));
            assert!(what.contains("data store") && what.contains("no BAT"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timebase_instructions_in_copied_vectors_work() {
    // The handler is not scanned at load (it is in the vector area); it reads TB and DEC as it runs.
    let mut a = program();
    a.emit(li(3, 10)).emit(mtspr(22, 3));
    idle(&mut a);
    let mut h = Asm::new(0x900);
    h.emit(mftb(20, 268)).emit(mfspr(21, 22)).emit(stw(20, 0x100, D)).emit(stw(21, 0x104, D)).emit(HALT);
    let (board, _) = run(&spec(&a).segment(0x900, h.bytes(), PF_R | PF_X));
    let delivered = board.exceptions()[0].instructions;
    assert_eq!(u64::from(word(&board, DATA + 0x100)), delivered / 8);
    assert_eq!(word(&board, DATA + 0x104), 0xFFFF_FFFF, "DEC just went negative");
}

#[test]
fn exception_without_a_handler_halts_instead_of_looping() {
    // Nothing at 0x700: the vector reads as an illegal instruction, which would take 0x700 forever.
    let mut a = program();
    a.emit(TRAP);
    let (board, outcome) = run(&spec(&a));
    match outcome {
        Outcome::Halted { pc: 0x700, last_exception: Some(e), checkstop: false } => assert_eq!(e.vector, 0x700),
        other => panic!("{other:?}"),
    }
    assert_eq!(board.exceptions().len(), 1);
}
