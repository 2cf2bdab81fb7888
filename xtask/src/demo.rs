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
    if !status.success() {
        eprintln!("xtask: demo: the emulator stopped with {status}");
        return Ok(ExitCode::FAILURE);
    }
    eprintln!("xtask: demo: the firmware booted and reached its idle loop");
    eprintln!("xtask: demo: now the peripheral self-test image: DMA across the modelled PCI bus, windows,");
    eprintln!("xtask: demo: doorbells and interrupts with the emulator's echo host, NOR flash");
    eprintln!("---------------------------------------------------------------------------");
    let selftest = firmware::build(Variant::SelfTest)?;
    let result = crate::emu::run_selftest(crate::emu::command(&emulator, &selftest));
    eprintln!("---------------------------------------------------------------------------");
    result?;
    eprintln!("xtask: demo: done: the firmware boots, and every peripheral check passed");
    Ok(ExitCode::SUCCESS)
}
