//! Paths, processes and errors shared by the subcommands.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

#[derive(Debug)]
pub enum Error {
    Usage(String),
    Failed(String),
    Io(String, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The repository root (xtask lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

/// The cargo that runs xtask: the host toolchain.
pub fn host_cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Debian's cargo and rustc, which have the Rust sources `build-std` needs; the host toolchain has
/// none. They get their own target directory (one per toolchain keeps both caches valid).
pub fn debian_cargo() -> Command {
    let mut cmd = Command::new("/usr/bin/cargo");
    // /usr/bin first, so `cargo clippy` finds Debian's clippy, not a rustup proxy.
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.current_dir(root())
        .env("PATH", format!("/usr/bin:{path}"))
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTDOC", "/usr/bin/rustdoc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", root().join("target/ppc"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_MAKEFLAGS");
    cmd
}

/// Run a command, failing with `what` if it does not exit 0.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = status(cmd, what)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed(format!("{what} failed ({status})")))
    }
}

pub fn status(cmd: &mut Command, what: &str) -> Result<ExitStatus> {
    cmd.status().map_err(|e| Error::Io(format!("{what}: cannot start {:?}", cmd.get_program()), e))
}

/// Take `--name value` out of `args`.
pub fn take_value(args: &mut Vec<String>, name: &str) -> Result<Option<String>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) if i + 1 < args.len() => {
            let value = args.remove(i + 1);
            args.remove(i);
            Ok(Some(value))
        }
        Some(_) => Err(Error::Usage(format!("{name} needs a value"))),
    }
}

/// Take a `--flag` out of `args`.
pub fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    match args.iter().position(|a| a == name) {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    }
}

/// Refuse anything left over.
pub fn no_more(args: &[String]) -> Result<()> {
    match args.first() {
        None => Ok(()),
        Some(a) => Err(Error::Usage(format!("unexpected argument `{a}`"))),
    }
}
