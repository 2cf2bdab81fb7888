//! The main job: the virtual backplane with four agents, shown working through `bpctl`
//! (tests/backplane/demo.sh): list, ping, netboot one, flash one with progress, its log, a summary.

use std::process::ExitCode;

use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result<ExitCode> {
    util::no_more(args)?;
    eprintln!("xtask: demo: building the firmware, the boot stage, the emulator, bpnet.ko and the guest");
    crate::backplane::demo()
}
