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
    let out = Command::new(env!("CARGO_BIN_EXE_bpnet-emu")).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// What every program does first after U-Boot's `go` (docs/REGISTERS.md, "Entry state at go"): park
/// the decrementer U-Boot left armed and mask MSR[EE], or U-Boot's decrementer enters U-Boot's vector.
const START: [u32; 6] = [
    0x3C00_7FFF, // lis r0,0x7fff
    0x6000_FFFF, // ori r0,r0,0xffff
    0x7C16_03A6, // mtdec r0
    0x7C00_00A6, // mfmsr r0
    0x5400_045E, // rlwinm r0,r0,0,17,15  (clear EE)
    0x7C00_0124, // mtmsr r0
];

const IDLE: [u32; 4] = [
    0x7C00_00A6, // mfmsr r0
    0x6000_8000, // ori r0,r0,0x8000
    0x7C00_0124, // mtmsr r0
    0x4800_0000, // b .
];

#[test]
fn console_goes_to_stdout_and_summary_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut words = START.to_vec();
    words.extend([
        0x3D80_E000, // lis r12,0xE000
        0x3860_0068, // li r3,'h'
        0x986C_4500, // stb r3,0x4500(r12)
        0x3860_0069, // li r3,'i'
        0x986C_4500, // stb r3,0x4500(r12)
    ]);
    words.extend(IDLE);
    let elf = firmware(&dir, "hi.elf", &words);
    let (code, stdout, stderr) = run(&["--firmware".as_ref(), elf.as_os_str()]);
    assert_eq!((code, stdout.as_str()), (0, "hi"), "{stderr}");
    assert!(stderr.starts_with("bpnet-emu: idle after 14 instructions ("), "{stderr}");
    assert!(stderr.contains("533.33 MHz core") && stderr.contains("MIPS"), "{stderr}");
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let halt = firmware(&dir, "halt.elf", &[START.as_slice(), &[0x4800_0000]].concat());
    let (code, _, stderr) = run(&["--firmware".as_ref(), halt.as_os_str()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("halted at PC 0x00100018 with interrupts off"), "{stderr}");

    // Without START, U-Boot's decrementer fires into U-Boot's vector: a loud stop.
    let halt = firmware(&dir, "halt-in-uboot-state.elf", &[0x4800_0000]);
    let (code, _, stderr) = run(&["--firmware".as_ref(), halt.as_os_str()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("entered U-Boot's exception vector 0x900"), "{stderr}");
    assert!(stderr.contains("D-cache left locked"), "{stderr}");

    // lis r3,0x8000; lwz r4,0(r3): PCI LAW 0 covers it, no outbound window does.
    let abort = firmware(&dir, "abort.elf", &[0x3C60_8000, 0x8083_0000]);
    let (code, _, stderr) = run(&["--firmware".as_ref(), abort.as_os_str()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("0x80000000") && stderr.contains("PCI master abort") && stderr.contains("PC 0x00100004"),
        "{stderr}"
    );

    let spin = firmware(&dir, "spin.elf", &[START.as_slice(), &[0x6000_0000, 0x4BFF_FFFC]].concat()); // 1: nop; b 1b
    let (code, _, stderr) = run(&["--firmware".as_ref(), spin.as_os_str(), "--max-insns".as_ref(), "1000".as_ref()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("instruction limit reached after 1000 instructions"), "{stderr}");
}

#[test]
fn bad_firmware_and_usage_exit_3_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not firmware").unwrap();
    let (code, _, stderr) = run(&["--firmware".as_ref(), text.as_os_str()]);
    assert_eq!(code, 3);
    assert_eq!(stderr, format!("bpnet-emu: error: {}: not an ELF file\n", text.display()));

    let missing = dir.path().join("missing.elf");
    let (code, _, stderr) = run(&["--firmware".as_ref(), missing.as_os_str()]);
    assert_eq!(code, 3);
    assert!(stderr.starts_with("bpnet-emu: error: ") && !stderr.contains("panicked"), "{stderr}");

    let (code, _, stderr) = run(&["--frimware".as_ref()]);
    assert_eq!(code, 3);
    assert!(stderr.contains("unknown argument --frimware") && stderr.contains("usage:"), "{stderr}");

    let (code, stdout, _) = run(&["--help".as_ref()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--max-insns") && stdout.contains("exit status"));
}

#[test]
fn markers_and_device_counters_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut words = START.to_vec();
    words.extend([
        0x3D80_E000, // lis r12,0xE000
        0x3860_0011, // li r3,0x11
        0x986C_4607, // stb r3,0x4607(r12)  (UART1 USCR)
        0x3860_0022, // li r3,0x22
        0x986C_4607, // stb r3,0x4607(r12)
    ]);
    words.extend(IDLE);
    let elf = firmware(&dir, "markers.elf", &words);
    let summary = dir.path().join("summary.json");
    let (code, _, stderr) = run(&[
        "--firmware".as_ref(),
        elf.as_os_str(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
        "--bus".as_ref(),
        "pci64".as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json = std::fs::read_to_string(&summary).unwrap();
    assert!(json.contains(r#""markers":[[17,8,15000],[34,10,18750]]"#), "{json}");
    assert!(json.contains(r#""dcache_locked":true"#), "nothing unlocked it: {json}");
    assert!(json.contains(r#""bus_model":"pci64""#), "{json}");
    assert!(json.contains(r#""power_cuts":0,"flash_operations":0"#), "{json}");
    assert!(json.contains(r#""outcome":"idle""#), "{json}");
}

#[test]
fn describe_bus_model() {
    let (code, stdout, _) = run(&["--describe-bus-model".as_ref()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("bus model pci32") && stdout.contains("120.2 MB/s") && stdout.contains("100.4 MB/s"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["--describe-bus-model".as_ref(), "--bus=pci64".as_ref()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("bus model pci64") && stdout.contains("480.8 MB/s"), "{stdout}");
    let (_, stdout, _) = run(&["--help".as_ref()]);
    for flag in ["--host-ram-file", "--flash-file", "--power-cut-at", "--bus pci32|pci64"] {
        assert!(stdout.contains(flag), "{flag}");
    }
}

#[test]
fn echo_host_answers_the_self_test_handshake() {
    use elfbuild::{PF_R, PF_X};
    let dir = tempfile::tempdir().unwrap();
    let mut main = START.to_vec();
    main.extend([
        0x3D80_E000, // lis r12,0xE000
        0x3C60_0400, // lis r3,0x0400
        0x906C_0724, // stw r3,0x724(r12)      SIMSR_L: message unit
        0x3C60_5E1F, // lis r3,0x5E1F
        0x6063_7E57, // ori r3,r3,0x7E57       READY
        0x3C80_E000, // lis r4,0xE000
        0x6084_8058, // ori r4,r4,0x8058
        0x7C60_252C, // stwbrx r3,0,r4         OMR0 = READY
    ]);
    main.extend(IDLE);
    let handler: [u32; 15] = [
        0x3E80_E000, // lis r20,0xE000
        0x6294_8050, // ori r20,r20,0x8050
        0x7EA0_A42C, // lwbrx r21,0,r20        IMR0: the challenge
        0x7EB5_A8F8, // not r21,r21
        0x3A94_000C, // addi r20,r20,12
        0x7EA0_A52C, // stwbrx r21,0,r20       OMR1 = reply
        0x3AC0_0001, // li r22,1
        0x3A94_0004, // addi r20,r20,4
        0x7EC0_A52C, // stwbrx r22,0,r20       ODR: ring the host
        0x3A94_0008, // addi r20,r20,8
        0x7EC0_A52C, // stwbrx r22,0,r20       IDR: acknowledge
        0x3A94_0018, // addi r20,r20,24
        0x7EC0_A52C, // stwbrx r22,0,r20       IMISR: clear IM0I
        0x4C00_0064, // rfi
        0x4800_0000, // b .
    ];
    let bytes = |w: &[u32]| w.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    let elf = dir.path().join("handshake.elf");
    std::fs::write(&elf, ElfSpec::code(0x0010_0000, bytes(&main)).segment(0x500, bytes(&handler), PF_R | PF_X).build())
        .unwrap();
    let summary = dir.path().join("summary.json");
    let (code, _, stderr) = run(&[
        "--firmware".as_ref(),
        elf.as_os_str(),
        "--echo-host".as_ref(),
        // A handler that leaves its source pending would be re-entered for ever.
        "--max-insns".as_ref(),
        "1e7".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // This program opens no inbound window: the echo host says its BAR read failed and sends a
    // marked challenge instead, and the round trip still completes.
    assert!(
        stderr.contains("echo-host: BAR read at 0x90010000 failed")
            && stderr.contains("echo-host: agent ready, challenge 0xbad00001 sent")
            && stderr.contains("echo-host: reply 0x452ffffe to challenge 0xbad00001: ok"),
        "{stderr}"
    );
    let json = std::fs::read_to_string(&summary).unwrap();
    assert!(json.contains(r#""inta_assertions":2"#), "{json}");
    // The failed BAR read is still a read the host issued.
    assert!(json.contains(r#""host_bar_reads":6,"host_bar_writes":5"#), "{json}");
}
