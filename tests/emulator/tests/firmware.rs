//! End to end: the real firmware ELF (built by `cargo xtask test`, which passes the paths in the
//! environment) boots on the emulated MPC8349EMDS through the `bpnet-emu` command line.

mod common;

use std::path::PathBuf;

use common::{firmware, Run};
use object::{Object, ObjectSymbol};

fn emulate(elf: &std::path::Path, extra: &[&str]) -> Run {
    let extra: Vec<&std::ffi::OsStr> = extra.iter().map(|a| a.as_ref()).collect();
    common::emulate(elf, &extra)
}

fn symbol(elf: &std::path::Path, name: &str) -> u64 {
    let data = std::fs::read(elf).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols().find(|s| s.name() == Ok(name)).unwrap_or_else(|| panic!("{name} not in {}", elf.display())).address()
}

#[test]
fn boots_to_idle_with_banner_and_log() {
    let run = emulate(&firmware("BPNET_FIRMWARE_ELF"), &[]);
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let version = env!("CARGO_PKG_VERSION");
    for expected in [
        format!("bpnet firmware {version} (MPC8349EMDS)"),
        "PVR 0x00830010 (e300c1)".to_string(),
        "SPRIDR 0x80300300 (MPC8349E, revision 0x0300)".to_string(),
        "core 533.333 MHz, CSB 266.666 MHz, timebase 66.666 MHz (SPMR 0x04040000)".to_string(),
        "ram:    256 MiB DDR".to_string(),
        "reset:  hard reset (RSR 0x00000001)".to_string(),
        "defmt ring at 0x00810000".to_string(),
        // PIBAR0 is the host's (BAR1): the firmware releases the configuration lock and reads the
        // address the emulator's stand-in enumeration assigned; it never writes it.
        "net: configuration lock released: the host put BAR1 (PIBAR0) at PCI 0x90000000".to_string(),
    ] {
        assert!(run.stdout.contains(&expected), "missing `{expected}` in:\n{}", run.stdout);
    }
    // Decoded from the log ring with the ELF's defmt table, not printed on the console.
    let line = run.stdout.lines().find(|l| l.starts_with("log: ")).expect("a decoded log line");
    assert!(
        line.contains(&format!("INFO bpnet firmware {version} up: core 533333328 Hz, CSB 266666664 Hz, 256 MiB RAM")),
        "{line}"
    );
    assert!(run.stderr.contains("idle after"), "{}", run.stderr);
}

#[test]
fn trap_is_reported_with_vector_and_address() {
    let elf = firmware("BPNET_FIRMWARE_FAULT_ELF");
    let run = emulate(&elf, &[]);
    assert_eq!(run.code, 1, "a fault halts the firmware; stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let trap = symbol(&elf, "e300_trap");
    let expected = format!("FAULT: vector 0x700 program: trap SRR0={trap:#010x} SRR1=0x0002");
    assert!(run.stdout.contains(&expected), "missing `{expected}` in:\n{}", run.stdout);
    assert!(run.stdout.contains("halted"));
}

/// The fault-test image with `FAULT_TEST_KIND` set to `kind` before it runs (the value lives in .data,
/// which the loader fills and the start code leaves alone).
fn fault_test_run(kind: u32) -> (bpnet_emu::Board, bpnet_emu::Outcome) {
    let elf = firmware("BPNET_FIRMWARE_FAULT_ELF");
    let mut board = bpnet_emu::Board::new(bpnet_emu::Config::default()).unwrap();
    board.load_elf(&std::fs::read(&elf).unwrap()).unwrap();
    board.write_u32(symbol(&elf, "FAULT_TEST_KIND") as u32, kind).unwrap();
    let outcome = board.run();
    (board, outcome)
}

#[test]
fn access_outside_every_bat_is_reported_from_the_translation_miss_vectors() {
    // Values of the image's fault_test::kind: 2 load, 3 store, 4 jump, each at 0xD000_0000.
    for (kind, vector, what) in [
        (2, 0x1100, "data load outside every BAT (DTLB load miss)"),
        (3, 0x1200, "data store outside every BAT (DTLB store miss)"),
        (4, 0x1000, "instruction fetch outside every BAT (ITLB miss)"),
    ] {
        let (board, outcome) = fault_test_run(kind);
        let console = String::from_utf8_lossy(board.console());
        assert!(matches!(outcome, bpnet_emu::Outcome::Halted { .. }), "{outcome}\n{console}");
        let expected = format!("FAULT: vector {vector:#05x} {what} SRR0=");
        assert!(console.contains(&expected), "missing `{expected}` in:\n{console}");
        assert!(console.contains("DAR=0xd0000000"), "the missed address is reported:\n{console}");
        assert_eq!(board.exceptions().last().map(|e| e.vector), Some(vector));
    }
}

#[test]
fn firmware_takes_its_own_state_from_uboots_handover() {
    let elf = firmware("BPNET_FIRMWARE_ELF");
    let mut board = bpnet_emu::Board::new(bpnet_emu::Config::default()).unwrap();
    board.load_elf(&std::fs::read(&elf).unwrap()).unwrap();
    assert!(board.dcache_locked(), "U-Boot hands over with the data cache locked");
    let outcome = board.run();
    assert!(matches!(outcome, bpnet_emu::Outcome::Idle { .. }), "{outcome}");
    assert!(!board.dcache_locked(), "HID0[DLOCK] still set when the firmware is idle");
    // U-Boot's pairs 5 (IMMR, 256 MiB) and 6 (0xF000_0000, 256 MiB) are gone; the firmware's own table
    // maps IMMR and the flash once each.
    assert_eq!(board.bats_covering(0xE000_0000).1.len(), 1);
    assert_eq!(board.bats_covering(0xE800_0000), (vec![], vec![]));
    assert_eq!(board.bats_covering(0xF000_0000), (vec![], vec![]));
    assert_eq!(board.bats_covering(0xFE00_0000).1.len(), 1);
    // U-Boot's decrementer never reached U-Boot's vector (the run would have stopped), nor the
    // firmware's: EE was masked and DEC parked before it could fire.
    assert!(board.exceptions().iter().all(|e| e.vector != 0x900 || e.instructions > 1000), "{:?}", board.exceptions());
}

#[test]
fn panic_is_reported_with_location_and_message() {
    let run = emulate(&firmware("BPNET_FIRMWARE_PANIC_ELF"), &[]);
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("PANIC: panicked at firmware/app/src/bin/panic-test.rs:"), "{}", run.stdout);
    assert!(run.stdout.contains("panic-test: panicking on purpose"), "{}", run.stdout);
}

#[test]
fn instruction_limit_stops_cleanly() {
    let run = emulate(&firmware("BPNET_FIRMWARE_ELF"), &["--max-insns", "1000"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("idle"), "1000 instructions are not enough to boot:\n{}", run.stdout);
}

#[test]
fn files_that_are_not_firmware_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an ELF").unwrap();
    let host_binary = PathBuf::from(env!("CARGO_BIN_EXE_bpnet-emu"));
    for (file, says) in [
        (text, "not an ELF"),
        (host_binary, "not a 32-bit big-endian PowerPC ELF"),
        (dir.path().join("missing.elf"), "No such file"),
    ] {
        let run = emulate(&file, &[]);
        assert_eq!(run.code, 3, "{}: {}", file.display(), run.stderr);
        assert!(
            run.stderr.contains("bpnet-emu: error:") && run.stderr.contains(says),
            "{}: {}",
            file.display(),
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}
