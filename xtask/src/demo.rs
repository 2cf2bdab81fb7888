//! The main job: the firmware booting on the emulated board, console and decoded log on screen.

use std::process::ExitCode;

use crate::firmware::{self, Variant};
use crate::util::{self, Result};

pub fn run(args: &[String]) -> Result<ExitCode> {
    util::no_more(args)?;
    eprintln!("xtask: demo: building the firmware and the board emulator");
    let elf = firmware::build(Variant::Release)?;
    let emulator = crate::emu::build()?;
    eprintln!("xtask: demo: booting {} on the emulated MPC8349EMDS", elf.display());
    eprintln!("xtask: demo: serial console as printed; `log:` lines are defmt frames decoded from the log ring");
    eprintln!("---------------------------------------------------------------------------");
    let status = util::status(&mut crate::emu::command(&emulator, &elf), "emulator")?;
    eprintln!("---------------------------------------------------------------------------");
    if status.success() {
        eprintln!("xtask: demo: the firmware booted and reached its idle loop");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: demo: the emulator stopped with {status}");
        Ok(ExitCode::FAILURE)
    }
}
