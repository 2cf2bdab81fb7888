//! The main job: the virtual backplane with four agents, shown working through `bpctl`
//! (tests/backplane/demo.sh): list, ping, netboot one, flash one with progress, its log, a summary.

use std::process::ExitCode;
use std::time::Duration;

use crate::backplane::{self, Personality, Suite};
use crate::util::{self, Error, Result};

/// `cargo xtask demo [--personality mpc834x|ivshmem]`: four agents (MPC834x agent functions by
/// default, as in a chassis) started by the boot stage from their flash, the guest shows them with
/// `bpctl list`, pings each, netboots one, flashes one with progress, shows its log and a summary,
/// printed as it happens. Every step is also a check: the demo fails if one does.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    // The real board's face by default: MPC834x agent functions on a shared-INTx bus.
    let personality = Personality::from_args(&mut args)?;
    util::no_more(&args)?;
    eprintln!("xtask: demo: building the firmware, the boot stage, the emulator, bpnet.ko and the guest");
    let suite = Suite {
        name: format!("demo-4-{}", personality.name()),
        personality,
        guest: "demo",
        agents: 4,
        needs_module: true,
        bytes: 0,
        timeout: Duration::from_secs(900),
        boot_stage: true,
        live: true,
        identities: true,
        unrelated_ivshmem: false,
        minutes: 0,
    };
    let tools = backplane::prepare(true, true, false)?;
    eprintln!(
        "xtask: demo: starting the guest and {} agents ({}; the guest boots in about a minute under TCG)",
        suite.agents,
        personality.name()
    );
    let report = backplane::run_suite(&tools, &suite)?;
    report.print();
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Failed(format!("the demo failed; artefacts in {}", report.dir.display())))
    }
}
