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
