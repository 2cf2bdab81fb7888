//! Cross-building the firmware with Debian's toolchain (build-std core from its Rust sources).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::util::{self, Error, Result};

pub const TARGET: &str = "powerpc-e300-none-eabi";

/// The firmware programs the tests use: the firmware, its test images and the boot stage, each a
/// binary of its own (`firmware/app/src/main.rs`, `firmware/app/src/bin/`, `firmware/boot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Release,
    FaultTest,
    PanicTest,
    /// A CPU-bound workload before idling, to measure the emulator's speed.
    CpuBench,
    /// The peripheral self-test image.
    SelfTest,
    /// The ring engine without the stack, for bpnet-netbench's ring-path run.
    RingBench,
    /// A normal bring-up, then one contract violation per connection (the backplane's hostile suite).
    HostileAgent,
    /// The boot stage (bpnet-boot.elf), linked at 64 MiB.
    BootStage,
}

/// The test images, each `bpnet-firmware-<name>` (binary and ELF), for `--variant <name>`.
const TEST_IMAGES: [Variant; 6] = [
    Variant::FaultTest,
    Variant::PanicTest,
    Variant::CpuBench,
    Variant::SelfTest,
    Variant::RingBench,
    Variant::HostileAgent,
];

impl Variant {
    /// The cargo package and binary that build the variant; its ELF is `<binary>.elf`.
    fn binary(self) -> (&'static str, &'static str) {
        let firmware = "bpnet-firmware";
        match self {
            Variant::Release => (firmware, "bpnet-firmware"),
            Variant::FaultTest => (firmware, "bpnet-firmware-fault-test"),
            Variant::PanicTest => (firmware, "bpnet-firmware-panic-test"),
            Variant::CpuBench => (firmware, "bpnet-firmware-cpu-bench"),
            Variant::SelfTest => (firmware, "bpnet-firmware-selftest"),
            Variant::RingBench => (firmware, "bpnet-firmware-ring-bench"),
            Variant::HostileAgent => (firmware, "bpnet-firmware-hostile-agent"),
            Variant::BootStage => ("bpnet-boot", "bpnet-boot"),
        }
    }

    /// A test image's name: its binary without the `bpnet-firmware-` prefix.
    fn test_image_name(self) -> Option<&'static str> {
        self.binary().1.strip_prefix("bpnet-firmware-")
    }
}

/// Build a variant; returns the path of its ELF (copied out so variants do not overwrite each
/// other), with a raw binary for U-Boot's `go` next to it. The release firmware also gets its signed
/// image (`bpnet-firmware.img`, [`image`]), and the same payload signed with security counter 1
/// ([`image_counter_1`]), which the update suite flashes to check that an older counter is refused
/// after it.
pub fn build(variant: Variant) -> Result<PathBuf> {
    let (package, binary) = variant.binary();
    let elf = build_binary(package, binary)?;
    if variant == Variant::Release {
        sign(&elf.with_extension("bin"), &image(&elf), 0)?;
        sign(&elf.with_extension("bin"), &image_counter_1(&elf), 1)?;
    }
    Ok(elf)
}

/// Where the development key lives: made at set-up ([`dev_key`]), never committed.
pub fn key_dir() -> PathBuf {
    util::root().join("target/keys")
}

/// The development signing key (`target/keys/dev-key.secret`, `.pub`), made on first use. The firmware
/// built here trusts its public half; a production build would pass its release key instead.
pub fn dev_key() -> Result<bpnet_image::SigningKey> {
    bpnet_image::keyfile::ensure_dev_key(&key_dir())
        .map_err(|e| Error::Failed(format!("development signing key in {}: {e}", key_dir().display())))
}

/// The signed firmware image next to the ELF: `bpnet-firmware.img`.
pub fn image(elf: &Path) -> PathBuf {
    elf.with_extension("img")
}

/// The signed image with security counter 1, next to the ELF: `bpnet-firmware-counter1.img`.
pub fn image_counter_1(elf: &Path) -> PathBuf {
    let stem = elf.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    elf.with_file_name(format!("{stem}-counter1.img"))
}

/// Sign a raw firmware binary with the development key: loaded and started at the FIRMWARE region's
/// start, as U-Boot's `go` would, versioned with the workspace's version, with `security_counter`.
fn sign(bin: &Path, img: &Path, security_counter: u32) -> Result<()> {
    let payload = std::fs::read(bin).map_err(|e| Error::Io(format!("reading {}", bin.display()), e))?;
    let version = workspace_version()?;
    let key = dev_key()?;
    let signed = bpnet_image::sign_counter(&payload, FIRMWARE_ORIGIN, FIRMWARE_ORIGIN, version, security_counter, &key)
        .map_err(|e| Error::Failed(format!("signing {}: {e}", bin.display())))?;
    std::fs::write(img, signed).map_err(|e| Error::Io(format!("writing {}", img.display()), e))
}

/// linker/mpc8349emds/memory.x's FIRMWARE origin: where the payload loads and starts.
pub const FIRMWARE_ORIGIN: u32 = 0x0010_0000;

/// The workspace version (`major.minor.patch`) as the image header's version word.
fn workspace_version() -> Result<u32> {
    let text = env!("CARGO_PKG_VERSION");
    let parts: Vec<u8> = text.split('.').filter_map(|p| p.parse().ok()).collect();
    match parts[..] {
        [major, minor, patch] => Ok(bpnet_image::image_version(major, minor, patch)),
        _ => Err(Error::Failed(format!("workspace version {text} is not major.minor.patch (each 0..=255)"))),
    }
}

/// Build one program (`binary` of `package`) and copy it out as `target/firmware/<binary>.elf`.
fn build_binary(package: &str, binary: &str) -> Result<PathBuf> {
    crate::setup::ensure()?;
    let root = util::root();
    // Each program is linked to one path under target/ppc and copied out from there: two builds at
    // once (two terminals, a test run) could copy an image the other is linking. One at a time.
    let out_dir = root.join("target/firmware");
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::Io(format!("creating {}", out_dir.display()), e))?;
    let lock_path = out_dir.join(".build.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| Error::Io(format!("creating {}", lock_path.display()), e))?;
    lock.lock().map_err(|e| Error::Io(format!("locking {}", lock_path.display()), e))?;
    let mut cmd = util::debian_cargo();
    cmd.args(["build", "-p", package, "--bin", binary, "--profile", "firmware", "-j2"])
        .arg("--target")
        .arg(root.join("firmware").join(format!("{TARGET}.json")))
        .args([
            "-Zbuild-std=core,compiler_builtins",
            "-Zbuild-std-features=compiler-builtins-mem",
            "-Zjson-target-spec",
        ])
        // Log level compiled into the image; defmt keeps only `error` without it.
        .env("DEFMT_LOG", "info")
        .env(PUBLIC_KEY_VAR, public_key()?);
    util::run(&mut cmd, "firmware build")?;
    let built = root.join("target/ppc").join(TARGET).join("firmware").join(binary);
    let elf = out_dir.join(format!("{binary}.elf"));
    std::fs::copy(&built, &elf).map_err(|e| Error::Io(format!("copying {}", built.display()), e))?;
    let bin = elf.with_extension("bin");
    write_raw_binary(&elf, &bin)?;
    Ok(elf)
}

/// What firmware/app/build.rs reads: the public key file the images must be signed with.
pub const PUBLIC_KEY_VAR: &str = "BPNET_IMAGE_PUBKEY";

/// The development key's public file, made first if needed.
pub fn public_key() -> Result<PathBuf> {
    dev_key()?;
    Ok(key_dir().join(bpnet_image::keyfile::PUBLIC_FILE))
}

/// The development key's secret file (tests sign their own payloads with it).
pub fn secret_key() -> Result<PathBuf> {
    dev_key()?;
    Ok(key_dir().join(bpnet_image::keyfile::SECRET_FILE))
}

/// The loadable segments as one flat image starting at the lowest load address, what U-Boot's
/// `tftp` + `go` expect. Gaps and .bss are not included (the start code clears .bss).
fn write_raw_binary(elf: &PathBuf, bin: &PathBuf) -> Result<()> {
    let data = std::fs::read(elf).map_err(|e| Error::Io(format!("reading {}", elf.display()), e))?;
    let segments = elf32_be_load_segments(&data).ok_or_else(|| {
        Error::Failed(format!("{}: not a 32-bit big-endian ELF with loadable segments", elf.display()))
    })?;
    let start = segments.iter().map(|s| s.0).min().unwrap_or(0);
    let end = segments.iter().map(|s| s.0 + s.2.len() as u32).max().unwrap_or(0);
    let mut image = vec![0u8; (end - start) as usize];
    for (addr, _, bytes) in &segments {
        let at = (addr - start) as usize;
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }
    std::fs::write(bin, image).map_err(|e| Error::Io(format!("writing {}", bin.display()), e))
}

/// (physical address, memory size, file bytes) of each PT_LOAD segment.
fn elf32_be_load_segments(data: &[u8]) -> Option<Vec<(u32, u32, &[u8])>> {
    let be16 = |at: usize| data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |at: usize| data.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if data.get(0..6)? != b"\x7fELF\x01\x02" {
        return None;
    }
    let phoff = be32(28)? as usize;
    let phentsize = be16(42)? as usize;
    let phnum = be16(44)? as usize;
    let mut out = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if be32(ph)? != 1 {
            continue; // not PT_LOAD
        }
        let offset = be32(ph + 4)? as usize;
        let paddr = be32(ph + 12)?;
        let filesz = be32(ph + 16)? as usize;
        let memsz = be32(ph + 20)?;
        if filesz > 0 {
            out.push((paddr, memsz, data.get(offset..offset + filesz)?));
        }
    }
    Some(out)
}

/// Size of `.text` from the section headers.
pub fn text_bytes(elf: &PathBuf) -> Result<u64> {
    let data = std::fs::read(elf).map_err(|e| Error::Io(format!("reading {}", elf.display()), e))?;
    section_size(&data, ".text").ok_or_else(|| Error::Failed(format!("{}: no .text section", elf.display())))
}

fn section_size(data: &[u8], name: &str) -> Option<u64> {
    let be16 = |at: usize| data.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |at: usize| data.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let shoff = be32(32)? as usize;
    let shentsize = be16(46)? as usize;
    let shnum = be16(48)? as usize;
    let shstrndx = be16(50)? as usize;
    let strtab = be32(shoff + shstrndx * shentsize + 16)? as usize;
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        let name_at = strtab + be32(sh)? as usize;
        let end = data.get(name_at..)?.iter().position(|&b| b == 0)?;
        if &data[name_at..name_at + end] == name.as_bytes() {
            return Some(u64::from(be32(sh + 20)?));
        }
    }
    None
}

/// What the host tests that run the real firmware read (`tests/emulator/tests/common`): each variable
/// with the file it names, every program built first. `cargo xtask test` passes them to `cargo test`;
/// a plain `cargo test` gets them from `cargo xtask firmware --test-env`. `release` is the firmware
/// [`build`] made for [`Variant::Release`] (its signed image lies beside it).
pub fn test_env(release: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    Ok(vec![
        ("BPNET_FIRMWARE_IMG", image(release)),
        ("BPNET_FIRMWARE_ELF", release.to_path_buf()),
        ("BPNET_FIRMWARE_FAULT_ELF", build(Variant::FaultTest)?),
        ("BPNET_FIRMWARE_PANIC_ELF", build(Variant::PanicTest)?),
        ("BPNET_FIRMWARE_SELFTEST_ELF", build(Variant::SelfTest)?),
        ("BPNET_BOOT_ELF", build(Variant::BootStage)?),
        ("BPNET_IMAGE_KEY", secret_key()?),
    ])
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--test-env") {
        util::no_more(&args)?;
        for (var, path) in test_env(&build(Variant::Release)?)? {
            println!("{var}={}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let variant = util::take_value(&mut args, "--variant")?;
    util::no_more(&args)?;
    match variant.as_deref() {
        None => {
            // The firmware, its signed image and the boot stage: what a board's flash holds.
            let elf = build(Variant::Release)?;
            println!("{}", elf.display());
            println!("{}", image(&elf).display());
            println!("{}", build(Variant::BootStage)?.display());
        }
        Some(name) => {
            let Some(variant) = TEST_IMAGES.into_iter().find(|v| v.test_image_name() == Some(name)) else {
                let names: Vec<&str> = TEST_IMAGES.iter().filter_map(|v| v.test_image_name()).collect();
                return Err(Error::Usage(format!("--variant {name}: not a test image (one of {})", names.join(", "))));
            };
            println!("{}", build(variant)?.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
