//! Set-up from nothing: the Debian packages the project builds and tests with. Idempotent: only
//! missing packages are installed, in small groups (one huge apt line was seen to fail on
//! "breaks" conflicts).

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
];

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
        return Ok(());
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
    Ok(())
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
