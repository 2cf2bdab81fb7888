//! The peripheral self-test image (`bpnet-firmware-selftest.elf`, built by `cargo xtask test`) on
//! the emulated board with the echo host: DMA, windows, message unit and interrupts, NOR flash — and
//! what a power cut in the middle of a flash program or erase leaves behind.

mod common;

use std::ffi::OsStr;
use std::path::Path;

struct Run {
    code: i32,
    stdout: String,
    summary: String,
}

fn run(flash: &Path, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let mut args: Vec<&OsStr> = vec![
        "--echo-host".as_ref(),
        "--flash-file".as_ref(),
        flash.as_os_str(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| -> &OsStr { a.as_ref() }));
    let run = common::emulate(&common::firmware("BPNET_FIRMWARE_SELFTEST_ELF"), &args);
    Run { code: run.code, stdout: run.stdout, summary: std::fs::read_to_string(&summary).unwrap_or_default() }
}

fn assert_all_passed(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("selftest: 9 passed, 0 failed"), "{}", run.stdout);
    assert!(!run.stdout.contains("FAILED"), "{}", run.stdout);
    assert!(run.stdout.lines().any(|l| l.starts_with("log: ") && l.ends_with("INFO selftest: 9 passed, 0 failed")));
}

#[test]
fn every_peripheral_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(&dir.path().join("flash.bin"), &[]);
    assert_all_passed(&run);
    for check in [
        "dma direct, RAM to RAM, sizes and alignments ... ok",
        "dma chained, agent -> host -> agent, 64/1500/9000/65536 ... ok",
        "dma largest count (2^26 - 1) and one more refused ... ok",
        "dma transfer error on a bad address, channel recovers ... ok",
        "outbound window moves ... ok",
        "inbound window, doorbell and message round trip with the host ... ok",
        "flash erase, program, verify ... ok",
    ] {
        assert!(run.stdout.contains(check), "missing `{check}`:\n{}", run.stdout);
    }
    // A fresh flash file is erased; the DMA really crossed the modelled bus both ways.
    assert!(run.stdout.contains("flash scratch sector found erased"), "{}", run.stdout);
    assert!(run.summary.contains("\"inta_assertions\":"), "{}", run.summary);
    assert!(!run.summary.contains("\"dma_bytes_to_host\":0,"), "{}", run.summary);
}

#[test]
fn flash_survives_a_power_cut_mid_program() {
    let dir = tempfile::tempdir().unwrap();
    let flash = dir.path().join("flash.bin");
    // Operation 1 is the sector erase, 2..=9 the eight write-buffer programs of 32 words each (the
    // emulated part's CFI offers a buffer): cut in the middle of them.
    let run = run(&flash, &["--power-cut-at", "5"]);
    assert!(run.summary.contains("\"power_cuts\":1"), "{}", run.summary);
    // The reboot finds a sector that is neither erased nor programmed, then repairs it.
    assert!(run.stdout.contains("flash scratch sector found torn"), "{}", run.stdout);
    assert_all_passed(&run);
    // And the next boot finds it programmed.
    let again = self::run(&flash, &[]);
    assert!(again.stdout.contains("flash scratch sector found programmed (0 of 256 words differ)"), "{}", again.stdout);
    assert_all_passed(&again);
}

#[test]
fn flash_survives_a_power_cut_mid_erase() {
    let dir = tempfile::tempdir().unwrap();
    let flash = dir.path().join("flash.bin");
    assert_all_passed(&run(&flash, &[]));
    // The next boot's first flash operation erases the programmed sector: cut it halfway.
    let run = run(&flash, &["--power-cut-at", "1"]);
    assert!(run.summary.contains("\"power_cuts\":1"), "{}", run.summary);
    assert!(run.stdout.contains("flash scratch sector found torn"), "{}", run.stdout);
    assert_all_passed(&run);
}
