//! What the end-to-end suites share: the firmware images `cargo xtask test` builds, and runs of the
//! `bpnet-emu` command line.
#![allow(dead_code)] // each suite uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The firmware file named by `var`. `cargo xtask test` sets these variables; under a plain
/// `cargo test` they are not set, so the programs are built here, once per test binary, with
/// `cargo xtask firmware --test-env` (which prints `VAR=path` lines). These tests need the real
/// firmware: a build that fails fails them rather than skipping.
pub fn firmware(var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    static BUILT: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    let built = BUILT.get_or_init(build_firmware);
    match built.iter().find(|(name, _)| name == var) {
        Some((_, path)) => path.clone(),
        None => panic!("`cargo xtask firmware --test-env` names no {var}"),
    }
}

fn build_firmware() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["xtask", "firmware", "--test-env"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("cargo starts");
    assert!(
        out.status.success(),
        "`cargo xtask firmware --test-env` failed; these tests run the real firmware (or run `cargo xtask test`)"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(var, path)| (var.to_string(), PathBuf::from(path)))
        .collect()
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
