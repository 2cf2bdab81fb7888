//! The `bpnet-emu` command: output streams and exit codes.

#[allow(dead_code)]
#[path = "../src/tests/elfbuild.rs"]
mod elfbuild;

use std::process::Command;

use elfbuild::ElfSpec;

fn firmware(dir: &tempfile::TempDir, name: &str, words: &[u32]) -> std::path::PathBuf {
    let code = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let path = dir.path().join(name);
    std::fs::write(&path, ElfSpec::code(0x0010_0000, code).build()).unwrap();
    path
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bpnet-emu"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const IDLE: [u32; 4] = [
    0x7C00_00A6, // mfmsr r0
    0x6000_8000, // ori r0,r0,0x8000
    0x7C00_0124, // mtmsr r0
    0x4800_0000, // b .
];

#[test]
fn console_goes_to_stdout_and_summary_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut words = vec![
        0x3D80_E000, // lis r12,0xE000
        0x3860_0068, // li r3,'h'
        0x986C_4500, // stb r3,0x4500(r12)
        0x3860_0069, // li r3,'i'
        0x986C_4500, // stb r3,0x4500(r12)
    ];
    words.extend(IDLE);
    let elf = firmware(&dir, "hi.elf", &words);
    let (code, stdout, stderr) = run(&["--firmware".as_ref(), elf.as_os_str()]);
    assert_eq!((code, stdout.as_str()), (0, "hi"), "{stderr}");
    assert!(
        stderr.starts_with("bpnet-emu: idle after 8 instructions ("),
        "{stderr}"
    );
    assert!(
        stderr.contains("533.33 MHz core") && stderr.contains("MIPS"),
        "{stderr}"
    );
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let halt = firmware(&dir, "halt.elf", &[0x4800_0000]);
    let (code, _, stderr) = run(&["--firmware".as_ref(), halt.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("halted at PC 0x00100000 with interrupts off"),
        "{stderr}"
    );

    let flash = firmware(&dir, "flash.elf", &[0x3C60_FE00, 0x8083_0000]); // lis r3,0xFE00; lwz r4,0(r3)
    let (code, _, stderr) = run(&["--firmware".as_ref(), flash.as_os_str()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("0xfe000000") && stderr.contains("NOR flash"),
        "{stderr}"
    );

    let spin = firmware(&dir, "spin.elf", &[0x6000_0000, 0x4BFF_FFFC]); // 1: nop; b 1b
    let (code, _, stderr) = run(&[
        "--firmware".as_ref(),
        spin.as_os_str(),
        "--max-insns".as_ref(),
        "1000".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("instruction limit reached after 1000 instructions"),
        "{stderr}"
    );
}

#[test]
fn bad_firmware_and_usage_exit_3_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not firmware").unwrap();
    let (code, _, stderr) = run(&["--firmware".as_ref(), text.as_os_str()]);
    assert_eq!(code, 3);
    assert_eq!(
        stderr,
        format!("bpnet-emu: error: {}: not an ELF file\n", text.display())
    );

    let missing = dir.path().join("missing.elf");
    let (code, _, stderr) = run(&["--firmware".as_ref(), missing.as_os_str()]);
    assert_eq!(code, 3);
    assert!(
        stderr.starts_with("bpnet-emu: error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["--frimware".as_ref()]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("unknown argument --frimware") && stderr.contains("usage:"),
        "{stderr}"
    );

    let (code, stdout, _) = run(&["--help".as_ref()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--max-insns") && stdout.contains("exit status"));
}
