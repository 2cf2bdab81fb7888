//! `cargo xtask backplane`: the virtual backplane end to end, and the suite driver the demo and the
//! bench use too. A Linux guest (Debian's kernel in qemu-system-x86_64, TCG) with its RAM in a shared
//! file and one PCI function per agent (an MPC834x agent function through QEMU's `x-pci-proxy-dev`, or
//! an ivshmem-doorbell device: [`Personality`]), each served by a board emulator running the
//! firmware ([`rig`]), boots an image of the suites' scripts, the `bpnet-guest` tool, bpctl and
//! `bpnet.ko` ([`image`]) and reports on its second serial port ([`results`]). A suite passes when
//! every check the guest reported passes, the guest reached its end, every agent ran until its host
//! left, the agents' summaries meet the guest's expectations and the guest's kernel log is clean.
//! Artefacts stay under `target/backplane/`.

mod image;
mod results;
mod rig;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub(crate) use image::{prepare, Tools};
pub(crate) use results::json_u64;
pub(crate) use results::Check;
use results::{json_str, Channel};
use rig::Rig;

use crate::util::{self, Error, Result};

/// Bytes each agent echoes in the network suites: 10 MiB.
const ECHO_BYTES: u64 = 10 << 20;
/// A full chassis: the most agents a backplane holds, and `--agents` accepts.
const CHASSIS: u32 = 20;
/// Bytes each of a full chassis' agents echoes per transfer in `cargo xtask test`.
const CHASSIS_BYTES: u64 = 256 << 10;
/// Suites `cargo xtask test` runs at a time (see [`run_suites`]).
const TEST_JOBS: usize = 2;

/// How the guest sees each agent: the module's two bus personalities. One personality per run: a run
/// never mixes MSI-X devices and proxied INTx agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Personality {
    /// The real board's face, as in a chassis: an MPC834x PCI agent function (1957:0080, class 0b20
    /// prog-if 1, BAR0 = IMMR, BAR1 = inbound window 0, INTA#) that the emulator serves through QEMU's
    /// `x-pci-proxy-dev`; its INTx level reaches the guest's IOAPIC through the INTx broker.
    Mpc834x,
    /// The virtual backplane's shortcut: an ivshmem-doorbell device (BAR2 = the shared region, MSI-X).
    Ivshmem,
}

impl Personality {
    /// The name the module gives it (`ethtool -i`, `bpctl list`) and `--personality` takes.
    pub fn name(self) -> &'static str {
        match self {
            Personality::Mpc834x => "mpc834x",
            Personality::Ivshmem => "ivshmem",
        }
    }

    /// `--personality P`, default mpc834x.
    pub fn from_args(args: &mut Vec<String>) -> Result<Personality> {
        match util::take_value(args, "--personality")?.as_deref() {
            None | Some("mpc834x") => Ok(Personality::Mpc834x),
            Some("ivshmem") => Ok(Personality::Ivshmem),
            Some(other) => Err(Error::Usage(format!("--personality: `{other}` is not mpc834x or ivshmem"))),
        }
    }

    /// The emulator's summary counter that shows the guest reached the agent (rang it at least once).
    fn reached_key(self) -> &'static str {
        match self {
            Personality::Mpc834x => "bar0_writes",
            Personality::Ivshmem => "ivshmem_work_doorbells",
        }
    }
}

/// One boot of the guest.
#[derive(Debug, Clone)]
pub(crate) struct Suite {
    /// Name in reports and of the run directory.
    pub name: String,
    pub personality: Personality,
    /// Script in the initramfs (`tests/backplane/<guest>.sh`).
    pub guest: &'static str,
    pub agents: u32,
    pub needs_module: bool,
    pub bytes: u64,
    pub timeout: Duration,
    /// The agents run the boot stage from their flash file, slot A provisioned with the signed
    /// firmware image (as a board fresh from production), instead of the firmware ELF loaded directly.
    pub boot_stage: bool,
    /// Show the guest's `SAY` lines and each check as they come (the demo), not only the report.
    pub live: bool,
    /// One more ivshmem device after the agents' (ivshmem-plain, 1 MiB of zeros): someone else's
    /// shared memory, which bpnet.ko must leave alone.
    pub unrelated_ivshmem: bool,
    /// Each agent's flash holds a board identity record (serial 1001 + n, slot n), so agent n takes
    /// 10.83.n.2 and MACs of its own, as boards in a chassis do; otherwise every agent is 10.83.49.2.
    pub identities: bool,
    /// How long the guest's script keeps going (the soak: `bptest.minutes`); 0 for the suites that
    /// run their steps once.
    pub minutes: u32,
}

fn suites(agents: Option<u32>, bytes: Option<u64>, personality: Personality) -> Vec<Suite> {
    let p = personality.name();
    let infra = |n: u32| Suite {
        name: format!("infra-{n}-{p}"),
        personality,
        guest: "infra",
        agents: n,
        needs_module: false,
        bytes: 0,
        timeout: Duration::from_secs(120),
        boot_stage: false,
        live: false,
        identities: false,
        unrelated_ivshmem: false,
        minutes: 0,
    };
    let net = |n: u32| Suite {
        name: format!("net-{n}-{p}"),
        personality,
        guest: "net",
        agents: n,
        needs_module: true,
        bytes: bytes.unwrap_or(ECHO_BYTES),
        // Every agent is brought up, pinged and echoed at three MTUs, one after the other.
        timeout: Duration::from_secs(420 + 20 * u64::from(n.saturating_sub(4))),
        boot_stage: false,
        live: false,
        identities: false,
        unrelated_ivshmem: true,
        minutes: 0,
    };
    // Agent 0 runs the hostile image, agent 1 the normal one (see agent_firmware).
    let hostile = Suite {
        name: format!("hostile-2-{p}"),
        personality,
        guest: "hostile",
        agents: 2,
        needs_module: true,
        bytes: 300 << 10,
        timeout: Duration::from_secs(600),
        boot_stage: false,
        live: false,
        identities: false,
        unrelated_ivshmem: false,
        minutes: 0,
    };
    // bpctl (tests/backplane/bpctl.sh) against two agents.
    let bpctl = Suite {
        name: format!("bpctl-2-{p}"),
        personality,
        guest: "bpctl",
        agents: 2,
        needs_module: true,
        bytes: 2 << 20,
        timeout: Duration::from_secs(420),
        boot_stage: false,
        live: false,
        identities: false,
        unrelated_ivshmem: false,
        minutes: 0,
    };
    // Flashing, netbooting, recovery and reset (tests/backplane/update.sh), two agents in boot-stage
    // mode; the guest serves TFTP. Identity records, so devlink shows each agent's serial and slot.
    let update = Suite {
        name: format!("update-2-{p}"),
        personality,
        guest: "update",
        agents: 2,
        needs_module: true,
        bytes: 0,
        timeout: Duration::from_secs(1200),
        boot_stage: true,
        live: false,
        identities: true,
        unrelated_ivshmem: false,
        minutes: 0,
    };
    // infra looks at ivshmem-doorbell devices without the module: ivshmem only.
    match (agents, personality) {
        (Some(n), Personality::Ivshmem) => vec![infra(n), net(n), hostile, bpctl, update],
        (Some(n), Personality::Mpc834x) => vec![net(n), hostile, bpctl, update],
        (None, Personality::Ivshmem) => vec![infra(4), net(1), net(4), hostile, bpctl, update],
        (None, Personality::Mpc834x) => vec![net(1), net(4), hostile, bpctl, update],
    }
}

/// `cargo xtask test`'s runs: the data path, the hostile agent, bpctl and updates on the real board's
/// personality (the hostile agent's interrupt storm on a shared level-triggered INTx pin included), and
/// on ivshmem a full chassis ([`CHASSIS`] agents: the infrastructure and the data path, with
/// [`CHASSIS_BYTES`] per echo) and one agent's data path (the MSI-X path stays tested).
fn test_suites() -> Vec<Suite> {
    let mut all: Vec<Suite> = suites(None, None, Personality::Mpc834x);
    all.extend(
        suites(Some(CHASSIS), Some(CHASSIS_BYTES), Personality::Ivshmem)
            .into_iter()
            .filter(|s| s.guest == "infra" || s.guest == "net"),
    );
    all.extend(suites(None, None, Personality::Ivshmem).into_iter().filter(|s| s.guest == "net" && s.agents == 1));
    all
}

/// The image agent `n` of `suite` runs: the hostile suite's agent 0 breaks the contract on purpose.
fn agent_firmware(tools: &Tools, suite: &Suite, n: u32) -> Result<PathBuf> {
    match (suite.guest, n) {
        ("hostile", 0) => tools
            .hostile_agent
            .clone()
            .ok_or_else(|| Error::Failed("the hostile agent image was not built (prepare)".into())),
        _ => Ok(tools.firmware.clone()),
    }
}

const HELP: &str = "\
cargo xtask backplane [--personality mpc834x|ivshmem] [--suite infra|net|hostile|bpctl|update]
                      [--agents N] [--bytes N] [--jobs J]

Boots Debian's kernel in qemu-system-x86_64 with one PCI function per agent, each served by a board
emulator running the firmware, and runs the guest's test suites. --personality (default mpc834x)
chooses how the guest sees an agent:
  mpc834x  as in a real chassis: an MPC834x PCI agent function (1957:0080, class 0b20, BAR0 = IMMR,
           BAR1 = inbound window 0), served by the emulator through QEMU's x-pci-proxy-dev; INTA#
           through the INTx broker (q35: slot s on GSI 20 + s mod 4, shared from 5 agents on)
  ivshmem  the virtual backplane's ivshmem-doorbell device (BAR2 = the shared region, MSI-X)
Suites:
  infra  ivshmem only: the devices, the shared region behind BAR2 and the doorbells (no kernel
         module needed)
  net    bpnet.ko: ping, TCP echo verified byte for byte, MTUs, agent reset, rmmod/insmod under
         traffic, counters, a clean kernel log; an unrelated ivshmem-plain device left alone, IRQ
         names, features with and without checksum offload, checksums a packet socket sees, a
         stop that does not wait for a frozen agent
  hostile  2 agents, agent 0 running an image that breaks the contract in phases (bad completions,
         indexes, an interrupt storm, a garbage header, a flapping state): bp0 is marked broken each
         time, bp1 keeps carrying traffic, the kernel stays clean (--agents does not apply)
  bpctl  2 agents: `bpctl list` (link, firmware version), `list --json`, `logs` decoded with the
         firmware ELF, `bench` both ways (--agents does not apply)
  update 2 agents started by the boot stage from their flash (slot A = the signed firmware image):
         `bpctl list` boot info, `bpctl flash all` (both come back confirmed on slot B), netboot from
         the guest's TFTP server (in.tftpd), `boot --via-bar` (recovery), `reset` (network and
         --hard), `logs`, a bad image refused while the agent keeps working; identity records:
         `devlink dev info` and port, a FAULT on purpose reported, dumped and recovered by the
         devlink health reporter (--agents does not apply)
On mpc834x the hostile suite's two agents sit in slots 0x08 and 0x0c, which share one INTx pin.
--agents N: 1..20, one PCI slot each from 0x08 (a chassis holds 20 boards). --bytes N: what each
agent echoes in net (default 10 MiB; the per-MTU echoes take at most 1 MiB of it). --jobs J: run
up to J suites at a time, each on a rig of its own (default 1; `cargo xtask test` runs 2).
Default: net with 1 and with 4 agents, hostile, bpctl, update (and infra with 4 agents first on
ivshmem). Artefacts: target/backplane/<suite>-<agents>-<personality>/.";

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--help") {
        println!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let only = util::take_value(&mut args, "--suite")?;
    let agents = util::take_value(&mut args, "--agents")?
        .map(|v| v.parse::<u32>().ok().filter(|n| (1..=CHASSIS).contains(n)).ok_or(v))
        .transpose()
        .map_err(|v| Error::Usage(format!("--agents: {v} is not 1..{CHASSIS}")))?;
    let bytes = util::take_value(&mut args, "--bytes")?
        .map(|v| v.parse::<u64>().map_err(|_| Error::Usage(format!("--bytes: {v} is not a number"))))
        .transpose()?;
    let personality = Personality::from_args(&mut args)?;
    let jobs = util::take_value(&mut args, "--jobs")?
        .map(|v| v.parse::<usize>().ok().filter(|n| (1..=8).contains(n)).ok_or(v))
        .transpose()
        .map_err(|v| Error::Usage(format!("--jobs: {v} is not 1..8")))?
        .unwrap_or(1);
    util::no_more(&args)?;
    let mut chosen = suites(agents, bytes, personality);
    if let Some(only) = &only {
        chosen.retain(|s| s.guest == only);
        if chosen.is_empty() && only == "infra" {
            return Err(Error::Usage(
                "--suite infra checks the ivshmem-doorbell devices: use it with --personality ivshmem".into(),
            ));
        }
        if chosen.is_empty() {
            return Err(Error::Usage(format!("--suite: no suite `{only}` (infra, net, hostile, bpctl, update)")));
        }
    }
    run_suites(&chosen, jobs)
}

/// `cargo xtask test --backplane`: every suite on mpc834x, infra and net-1 on ivshmem.
pub fn test() -> Result<ExitCode> {
    run_suites(&test_suites(), TEST_JOBS)
}

/// `cargo xtask test`'s suites, built now and run by the returned closure (on another thread while the
/// host tests run: see `crate::test`).
pub fn test_prepared() -> Result<impl FnOnce() -> Result<ExitCode> + Send> {
    let suites = test_suites();
    let tools = prepare_for(&suites)?;
    Ok(move || run_prepared(&tools, &suites, TEST_JOBS))
}

/// What `suites` need, built.
fn prepare_for(suites: &[Suite]) -> Result<Tools> {
    prepare(
        suites.iter().any(|s| s.needs_module),
        suites.iter().any(|s| s.boot_stage),
        suites.iter().any(|s| s.guest == "hostile"),
    )
}

/// Run `chosen`, up to `jobs` suites at a time, each on a rig of its own. A rig spends most of its
/// time waiting (the guest's timers, the agents' virtual time, round trips through the proxy): one
/// suite keeps about a quarter of one core busy, so two at a time on two cores finish sooner without
/// starving either. Reports print as suites end and once more, in order, at the end.
fn run_suites(chosen: &[Suite], jobs: usize) -> Result<ExitCode> {
    let tools = prepare_for(chosen)?;
    run_prepared(&tools, chosen, jobs)
}

fn run_prepared(tools: &Tools, chosen: &[Suite], jobs: usize) -> Result<ExitCode> {
    let started = Instant::now();
    // Longest first, so the last suite to start is a short one.
    let mut order: Vec<usize> = (0..chosen.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(chosen[i].timeout));
    let queue = std::sync::Mutex::new(order.into_iter());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, chosen.len().max(1)) {
            scope.spawn(|| loop {
                let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else { break };
                let suite = &chosen[i];
                eprintln!("xtask: backplane: {} ({} agent(s), {})", suite.name, suite.agents, suite.personality.name());
                let report = run_suite(tools, suite);
                if let Ok(report) = &report {
                    report.print();
                }
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, report));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    let mut reports = Vec::new();
    for (_, report) in done {
        reports.push(report?);
    }
    if jobs > 1 && reports.len() > 1 {
        for report in &reports {
            println!("{}", report.summary());
        }
    }
    let failed: Vec<&str> = reports.iter().filter(|r| !r.passed()).map(|r| r.suite.as_str()).collect();
    let checks: usize = reports.iter().map(|r| r.checks.len()).sum();
    let bad: usize = reports.iter().map(|r| r.checks.iter().filter(|c| !c.pass).count()).sum();
    println!(
        "xtask backplane: {} suite(s), {checks} checks, {bad} failed, {:.0} s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Failed(format!("backplane suites failed: {}", failed.join(", "))))
    }
}

fn out_dir() -> PathBuf {
    util::root().join("target/backplane")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io(what, e)
}

/// One suite on a rig of its own: the guest's checks as they come (the guest's reset requests acted on),
/// then the harness's own: the guest reached END, every agent ran until its host left and meets the
/// guest's expectations, the guest's kernel log is clean.
pub(crate) fn run_suite(tools: &Tools, suite: &Suite) -> Result<Report> {
    let started = Instant::now();
    let dir = out_dir().join(&suite.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut rig = Rig::start(tools, suite, &dir)?;

    let mut channel = Channel::default();
    let mut checks = Vec::new();
    let results = dir.join("results.log");
    let deadline = Instant::now() + suite.timeout;
    let mut qemu_status = None;
    while !channel.ended {
        for (request, n) in channel.take(&results, suite.agents, suite.live) {
            if rig.agent_request(request, n) {
                eprintln!("xtask: backplane: {}: {} of agent {n} requested by the guest", suite.name, request.word());
            } else {
                checks.push(Check {
                    name: format!("agent{n}-{}", request.word()),
                    pass: false,
                    detail: format!("{} requested by the guest; its emulator is not running", request.word()),
                });
            }
        }
        if channel.ended {
            break;
        }
        if let Some(status) = rig.qemu_exited() {
            qemu_status = Some(status);
            // A last look: the guest may have written its last lines just before powering off. A reset
            // it asked for then has no guest left to see it.
            channel.take(&results, suite.agents, suite.live);
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let finished = channel.ended;
    checks.append(&mut channel.checks);
    checks.push(Check {
        name: "guest-finished".into(),
        pass: finished,
        detail: if finished {
            format!("suite ran to its end in {:.1} s", started.elapsed().as_secs_f64())
        } else if let Some(status) = qemu_status {
            format!("QEMU exited ({status}) before the suite's END")
        } else {
            format!("no END within {} s", suite.timeout.as_secs())
        },
    });
    // The guest powers off after END; then every emulator sees its host disconnect and stops by itself.
    if qemu_status.is_none() {
        rig.stop_qemu();
    }
    for n in 0..suite.agents {
        let stop = rig.stop_agent(n);
        let summary = std::fs::read_to_string(dir.join(format!("agent{n}.json"))).unwrap_or_default();
        checks.push(agent_ran(n, &stop, &summary, suite.personality));
        for e in channel.expects.iter().filter(|e| e.agent == n) {
            checks.push(e.check(&summary));
        }
    }
    checks.push(console_clean(&dir.join("console.log")));
    rig.stop_rest();
    drop(rig);
    Ok(Report {
        suite: suite.name.clone(),
        checks,
        seconds: started.elapsed().as_secs_f64(),
        dir,
        agents: suite.agents,
    })
}

/// Agent `n` ran until its host left: the guest reached it (it rang its doorbell at least once, which
/// every suite does, so an agent whose guest never booted fails), and once the host left it stopped
/// by itself, cleanly, at its idle loop.
fn agent_ran(n: u32, stop: &rig::AgentStop, summary: &str, personality: Personality) -> Check {
    let end = json_str(summary, "host_end");
    let outcome = json_str(summary, "outcome").unwrap_or_else(|| "no summary".into());
    let rung = results::json_u64(summary, personality.reached_key()).unwrap_or(0);
    let status = stop.status.map_or("did not stop".to_string(), |s| s.to_string());
    let clean = stop.status.is_some_and(|s| s.success()) && outcome == "idle";
    let detail = match &end {
        _ if !clean => {
            format!("emulator {status}, outcome {outcome}: {}", json_str(summary, "message").unwrap_or_default())
        }
        None => format!("emulator {status}: its host never connected"),
        Some(_) if rung == 0 => "the guest never rang it: its host never ran a suite".to_string(),
        Some(e) if !stop.by_itself => format!("still running after its host left ({e}): stopped ({status})"),
        Some(e) => format!("stopped when {e} ({status}), rung {rung} times"),
    };
    Check {
        name: format!("agent{n}-ran-to-the-end"),
        pass: clean && end.is_some() && rung > 0 && stop.by_itself,
        detail,
    }
}

/// The guest's kernel log (the console) has no warning, BUG or oops.
fn console_clean(path: &Path) -> Check {
    const BAD: &[&str] =
        &["WARNING:", "BUG:", "Oops", "general protection fault", "Call Trace", "Kernel panic", "nobody cared"];
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let hits: Vec<&str> = text.lines().filter(|l| BAD.iter().any(|b| l.contains(b))).take(3).collect();
    Check {
        name: "guest-console-clean".into(),
        pass: !text.is_empty() && hits.is_empty(),
        detail: if text.is_empty() {
            "the console log is empty".into()
        } else if hits.is_empty() {
            "no WARN/BUG/oops/panic/unhandled IRQ in the console log".into()
        } else {
            hits.join(" | ")
        },
    }
}

pub(crate) struct Report {
    pub suite: String,
    pub checks: Vec<Check>,
    pub seconds: f64,
    pub dir: PathBuf,
    agents: u32,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    /// Every check, the summary line and, when something failed, the tails of the rig's logs: in one
    /// piece, so reports of suites that end together do not interleave.
    pub fn print(&self) {
        let mut text = String::new();
        for c in &self.checks {
            text += &format!("  {} {:<28} {}\n", if c.pass { "PASS" } else { "FAIL" }, c.name, c.detail);
        }
        text += &self.summary();
        text += "\n";
        if self.checks.iter().any(|c| !c.pass) {
            text += &tail(&self.dir.join("console.log"), 40);
            for n in 0..self.agents {
                text += &tail(&self.dir.join(format!("agent{n}.err")), 8);
                text += &tail(&self.dir.join(format!("agent{n}.log")), 15);
            }
            text += &tail(&self.dir.join("qemu.log"), 10);
        }
        print!("{text}");
    }

    pub fn summary(&self) -> String {
        let bad = self.checks.iter().filter(|c| !c.pass).count();
        format!(
            "backplane {}: {} checks, {bad} failed, {:.1} s ({})",
            self.suite,
            self.checks.len(),
            self.seconds,
            self.dir.display()
        )
    }
}

/// The last `lines` lines of a log, framed.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return String::new();
    }
    let mut out = format!("  --- last {} lines of {} ---\n", lines.min(all.len()), path.display());
    for l in &all[all.len().saturating_sub(lines)..] {
        out += &format!("  | {l}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    fn stop(by_itself: bool) -> rig::AgentStop {
        rig::AgentStop { status: Some(ExitStatus::from_raw(0)), by_itself }
    }

    #[test]
    fn an_agent_runs_to_the_end_only_for_a_guest_that_ran() {
        let iv = Personality::Ivshmem;
        let ran = r#"{"outcome":"idle","host_end":"the host closed the connection","ivshmem_work_doorbells":5}"#;
        assert!(agent_ran(0, &stop(true), ran, iv).pass);
        // QEMU connected to the agent's socket and went away before booting a guest.
        let no_guest = r#"{"outcome":"idle","host_end":"the host closed the connection","ivshmem_work_doorbells":0}"#;
        let c = agent_ran(0, &stop(true), no_guest, iv);
        assert!(!c.pass && c.detail.contains("never rang"), "{}", c.detail);
        // Still running after its host left: stopped by the harness, whatever it then wrote.
        let stopped = r#"{"outcome":"idle","host_end":"stopped by SIGTERM","ivshmem_work_doorbells":5}"#;
        assert!(!agent_ran(0, &stop(false), stopped, iv).pass);
        // Stopped before any host connected: no summary at all.
        assert!(!agent_ran(0, &stop(true), "", iv).pass);
        // The agent function counts the guest's BAR0 writes (its IDR doorbells among them) instead.
        let mpc = Personality::Mpc834x;
        let proxied = r#"{"outcome":"idle","host_end":"the host closed the connection","bar0_writes":40}"#;
        assert!(agent_ran(0, &stop(true), proxied, mpc).pass);
        assert!(!agent_ran(0, &stop(true), ran, mpc).pass);
    }

    #[test]
    fn the_test_runs_every_suite_on_mpc834x_and_the_msix_path_on_ivshmem() {
        let names: Vec<String> = test_suites().iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            names,
            [
                "net-1-mpc834x",
                "net-4-mpc834x",
                "hostile-2-mpc834x",
                "bpctl-2-mpc834x",
                "update-2-mpc834x",
                "infra-20-ivshmem",
                "net-20-ivshmem",
                "net-1-ivshmem"
            ]
        );
        assert!(test_suites().iter().all(|s| s.name.ends_with(s.personality.name())));
        let chassis = test_suites().into_iter().find(|s| s.name == "net-20-ivshmem").unwrap();
        assert_eq!(chassis.bytes, CHASSIS_BYTES);
    }

    #[test]
    fn personality_option() {
        let mut args = vec!["--personality".to_string(), "ivshmem".to_string()];
        assert_eq!(Personality::from_args(&mut args).unwrap(), Personality::Ivshmem);
        assert!(args.is_empty());
        assert_eq!(Personality::from_args(&mut vec![]).unwrap(), Personality::Mpc834x);
        assert!(Personality::from_args(&mut vec!["--personality".into(), "pci".into()]).is_err());
    }
}
