//! What the end-to-end suites share: the firmware images `cargo xtask test` builds, and runs of the
//! `bpnet-emu` command line.
#![allow(dead_code)] // each suite uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

/// The firmware image named by `var`; these tests need the real firmware, so a missing variable
/// fails them rather than skipping.
pub fn firmware(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => panic!("{var} is not set: these tests run the real firmware; run them with `cargo xtask test`"),
    }
}

/// What one `bpnet-emu` run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `bpnet-emu --firmware elf extra…` to the end.
pub fn emulate(elf: &Path, extra: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bpnet-emu"))
        .arg("--firmware")
        .arg(elf)
        .args(extra)
        .output()
        .expect("bpnet-emu starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
