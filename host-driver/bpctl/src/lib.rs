//! `bpctl`, bpnet's operator tool: the agents on this host, their firmware's defmt log read through
//! the BAR, their TCP throughput, and flashing, netbooting, recovering and resetting them. The binary (`main.rs`) is the command line; this library is
//! what it is built from, tested against fake sysfs trees and fake BAR files.

pub mod agents;
pub mod bench;
pub mod boot;
pub mod control;
pub mod dump;
pub mod ethtool;
pub mod list;
pub mod logs;
pub mod region;
pub mod table;
pub mod update;

#[cfg(test)]
mod fake;

use std::path::PathBuf;

/// Why a command failed; each says what to do about it.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong (an agent name that matches nothing, a bad option value): exit 2.
    Usage(String),
    /// No PCI function is bound to bpnet.
    NoAgents,
    /// Opening an agent's BAR needs root.
    NotRoot(PathBuf),
    /// The firmware does not offer what the command needs: exit 2.
    Unsupported(String),
    /// Something about one agent (its header, its ring, its services).
    Agent(String),
    Io(String, std::io::Error),
    /// Agents failed and the output already says which and why (a summary): exit 1, nothing more
    /// on stdout.
    Reported(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(s) | Error::Agent(s) | Error::Unsupported(s) | Error::Reported(s) => f.write_str(s),
            Error::NoAgents => write!(
                f,
                "no agents: no PCI function is bound to the bpnet driver (is bpnet.ko loaded? see `lsmod` and \
                 `dmesg | grep bpnet`)"
            ),
            Error::NotRoot(path) => write!(
                f,
                "permission denied opening {}: reading an agent's shared region through its BAR needs root",
                path.display()
            ),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The process exit status: 2 for what the caller must change (usage, unsupported), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Unsupported(_) => 2,
            _ => 1,
        }
    }
}
