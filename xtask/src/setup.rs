//! Set-up from nothing: the Debian packages the project builds and tests with. Idempotent: only
//! missing packages are installed, in small groups (one huge apt line was seen to fail on
//! "breaks" conflicts). Also the kernel's `checkpatch.pl`, which Debian ships only inside its kernel
//! source tarball: extracted once into `target/checkpatch/`.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{self, Error, Result};

/// (why, packages). Debian's Rust has the sources `build-std` needs and lld-22 is its linker.
const GROUPS: &[(&str, &[&str])] = &[
    ("firmware toolchain", &["rustc-web", "cargo-web", "rust-web-src", "rust-web-clippy", "lld-22"]),
    ("board emulator (Unicorn's build)", &["cmake", "libclang1-14", "libclang-common-14-dev"]),
    (
        "big-endian unit tests",
        &["qemu-user", "gcc-powerpc-linux-gnu", "libc6-dev-powerpc-cross", "binutils-powerpc-linux-gnu"],
    ),
    // The guest's kernel and its emulator, the guest's userland, the module's build (kbuild pulls the
    // compiler in through the headers), the initramfs and the extraction of the uncompressed kernel.
    (
        "virtual backplane (guest Linux in QEMU, bpnet.ko's build)",
        &["qemu-system-x86", "linux-image-amd64", "linux-headers-amd64", "busybox-static", "cpio", "xz-utils", "make"],
    ),
    // The standard TFTP server the agents netboot from: its `in.tftpd` (and the libraries it links) goes
    // into the guest's initramfs and runs there, never on this machine.
    ("netboot in the virtual backplane (TFTP server)", &["tftpd-hpa"]),
    // What an operator manages a NIC with: `ip`, `devlink` and `ethtool` go into the guest's initramfs
    // (with the libraries they link) and run there in place of busybox's applets.
    ("network tools in the virtual backplane's guest", &["iproute2", "ethtool"]),
    // sparse for `make C=1`; checkpatch.pl and its word lists from the kernel source of the headers' series
    // (6.1, as linux-headers-amd64 in bookworm); checkpatch is a Perl script.
    ("kernel module checks (sparse, checkpatch.pl)", &["sparse", LINUX_SOURCE, "perl"]),
];

/// The kernel source package whose `scripts/checkpatch.pl` checks the module: the series Debian's
/// `linux-headers-amd64` builds against, so the rules are the ones that kernel was held to.
const LINUX_SOURCE: &str = "linux-source-6.1";
/// What checkpatch.pl reads next to itself: the spelling list and the structs that should be const.
const CHECKPATCH_FILES: &[&str] = &["checkpatch.pl", "spelling.txt", "const_structs.checkpatch"];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with("install ok installed"))
        .unwrap_or(false)
}

/// Install whatever is missing; quiet when nothing is.
pub fn ensure() -> Result<()> {
    let missing: Vec<(&str, Vec<&str>)> = GROUPS
        .iter()
        .map(|(why, pkgs)| (*why, pkgs.iter().copied().filter(|p| !installed(p)).collect::<Vec<_>>()))
        .filter(|(_, pkgs)| !pkgs.is_empty())
        .collect();
    if missing.is_empty() {
        return crate::firmware::dev_key().map(|_| ());
    }
    let all: Vec<&str> = missing.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if !is_root() {
        return Err(Error::Failed(format!(
            "missing Debian packages: {}\n  install them as root: apt-get install --no-install-recommends {}",
            all.join(" "),
            all.join(" ")
        )));
    }
    eprintln!("xtask: setup: installing Debian packages: {}", all.join(" "));
    util::run(apt().args(["update", "-q"]), "apt-get update")?;
    for (why, pkgs) in &missing {
        eprintln!("xtask: setup: {why}: {}", pkgs.join(" "));
        util::run(apt().args(["install", "-y", "-q", "--no-install-recommends"]).args(pkgs), "apt-get install")?;
    }
    // The development signing key: the firmware built here trusts it (target/keys, never committed).
    crate::firmware::dev_key().map(|_| ())
}

/// `checkpatch.pl` from [`LINUX_SOURCE`]'s tarball, extracted once (with the files it reads beside it)
/// into `target/checkpatch/`; extracted again when the package was upgraded (the tarball is newer).
pub fn checkpatch() -> Result<PathBuf> {
    ensure()?;
    let tarball = PathBuf::from(format!("/usr/src/{LINUX_SOURCE}.tar.xz"));
    let out = util::root().join("target/checkpatch");
    let scripts = out.join(LINUX_SOURCE).join("scripts");
    let script = scripts.join("checkpatch.pl");
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let cached = CHECKPATCH_FILES.iter().all(|f| scripts.join(f).exists())
        && matches!((modified(&out.join(".extracted")), modified(&tarball)), (Some(a), Some(b)) if a >= b);
    if cached {
        return Ok(script);
    }
    eprintln!("xtask: setup: extracting checkpatch.pl from {}", tarball.display());
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| Error::Io(format!("creating {}", out.display()), e))?;
    let mut tar = Command::new("tar");
    tar.arg("-xJf").arg(&tarball).arg("-C").arg(&out);
    for f in CHECKPATCH_FILES {
        tar.arg(format!("{LINUX_SOURCE}/scripts/{f}"));
    }
    util::run(&mut tar, &format!("extracting checkpatch.pl from {}", tarball.display()))?;
    // Written last: a cut-short extraction is not taken for a finished one.
    std::fs::write(out.join(".extracted"), b"")
        .map_err(|e| Error::Io(format!("writing {}", out.join(".extracted").display()), e))?;
    Ok(script)
}

fn apt() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

pub fn run(args: &[String]) -> Result<std::process::ExitCode> {
    util::no_more(args)?;
    ensure()?;
    eprintln!("xtask: setup: all packages present");
    Ok(std::process::ExitCode::SUCCESS)
}
