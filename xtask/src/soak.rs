//! `cargo xtask soak`: a full chassis for a long time (tests/backplane/soak.sh). Every agent carries
//! checked traffic both ways while faults are injected on a schedule and must each be seen and healed;
//! at the end, per-agent totals, no corruption, a clean kernel log and the guest's memory back within
//! a tolerance. Its figures go to `target/soak.json`, which `cargo xtask bench --json --soak` adds to
//! the benchmark's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::backplane::{self, Check, Personality, Suite};
use crate::util::{self, Error, Result};

/// Agents by default: a full chassis.
const AGENTS: u32 = 20;
/// Minutes of traffic under faults by default.
const MINUTES: u32 = 30;
/// Bytes per transfer of each agent's traffic: a full chassis still completes one every few seconds.
const TRANSFER_BYTES: u64 = 256 << 10;
/// The figures the guest must report; the run fails without any of them.
const KEYS: &[&str] = &[
    "soak_bytes_checked",
    "soak_corrupt",
    "soak_interrupted",
    "soak_faults_injected",
    "soak_faults_healed",
    "soak_leak_kib",
    "soak_seconds",
];

const HELP: &str = "\
cargo xtask soak [--agents N] [--minutes M] [--personality ivshmem|mpc834x] [--json]

A full chassis for a long time on the virtual backplane (tests/backplane/soak.sh): every agent
carries traffic both ways (bpnet-guest soak: a TCP echo and a bulk receive in turn, 256 KiB each,
every byte checked) for M minutes while faults are injected on a schedule, one every M/kinds
minutes, each kind in turn on the next agent, every kind at least once however short the run:
  chassis reset (the rig's HRESET), bpctl reset, bpctl reset --hard, a module reload under
  traffic, MTU 1500 -> 9000 -> 65535 -> 1500, bpctl flash (back confirmed), a netboot from the
  guest's TFTP server, the agent's processor paused past the heartbeat bound and resumed, random
  bytes over its shared region through the BAR.
Each fault must be seen (carrier drops, heartbeat_lost, the module's log and counters, bpctl's boot
info) and healed (carrier up and two more checked transfers within 90 s + 6 s per agent). Transfers
a fault cuts are restarted and counted as interrupted; one differing byte fails the soak. At the
end: per-agent bytes checked, corrupt 0, every fault healed, no WARN/BUG/oops/'nobody cared' in the
guest's log, every emulator alive to the end, and, with the module reloaded, the guest's SUnreclaim
grown by at most 2 MiB + 128 KiB per agent and MemAvailable down by at most 8 MiB + 512 KiB per
agent from before the traffic (kernel caches and per-CPU page lists, not the run's length).
--agents N: 1..20 (default 20). --minutes M: 1..1440 (default 30).
--personality: ivshmem by default, the one that takes every fault; on mpc834x the pause is left
out (a paused agent's emulator serves its BARs, so the guest's accesses to it would freeze too).
Figures: target/soak.json (soak_minutes, soak_agents, soak_bytes_checked, soak_corrupt,
soak_faults_injected, soak_faults_healed, soak_leak_kib, per-agent soak_agentN_* ...); --json
prints them as one JSON object on the last line; `cargo xtask bench --json --soak` includes them.
Artefacts: target/backplane/soak-<agents>-<personality>/.";

/// Where the last soak's figures are kept.
pub fn figures_path() -> PathBuf {
    util::root().join("target/soak.json")
}

/// How long the guest may take: the minutes asked, a full round of faults however short the run (each
/// takes up to a few heal bounds), booting and bringing up every agent, and the end's reload.
fn timeout(minutes: u32, agents: u32) -> Duration {
    Duration::from_secs(u64::from(minutes) * 60 + 2400 + 60 * u64::from(agents))
}

/// `name N` with N in `range`, if given.
fn number<T>(args: &mut Vec<String>, name: &str, range: std::ops::RangeInclusive<T>) -> Result<Option<T>>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    util::take_value(args, name)?
        .map(|v| {
            v.parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| Error::Usage(format!("{name}: {v} is not {}..{}", range.start(), range.end())))
        })
        .transpose()
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--help") {
        println!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let json = util::take_flag(&mut args, "--json");
    let agents = number(&mut args, "--agents", 1..=AGENTS)?.unwrap_or(AGENTS);
    let minutes = number(&mut args, "--minutes", 1..=1440)?.unwrap_or(MINUTES);
    // ivshmem unless asked: the personality on which every fault can be injected.
    let personality = if args.iter().any(|a| a == "--personality") {
        Personality::from_args(&mut args)?
    } else {
        Personality::Ivshmem
    };
    util::no_more(&args)?;
    let suite = Suite {
        name: format!("soak-{agents}-{}", personality.name()),
        personality,
        guest: "soak",
        agents,
        needs_module: true,
        bytes: TRANSFER_BYTES,
        timeout: timeout(minutes, agents),
        // Flashing and netbooting need agents started by the boot stage from their flash.
        boot_stage: true,
        live: false,
        // Agent n is 10.83.n.2 on a subnet of its own: the guest's TFTP server, which does not bind
        // to a device, then answers each agent's netboot through that agent's netdev.
        identities: true,
        unrelated_ivshmem: false,
        minutes,
    };
    if personality == Personality::Mpc834x {
        eprintln!("xtask: soak: on mpc834x the pause fault is left out (a paused agent's emulator serves its BARs)");
    }
    let tools = backplane::prepare(true, true, false)?;
    eprintln!("xtask: soak: {agents} agent(s), {minutes} min, {}", personality.name());
    let mut report = backplane::run_suite(&tools, &suite)?;
    let text = std::fs::read_to_string(report.dir.join("results.log")).unwrap_or_default();
    let figures = crate::bench::parse_figures(&text);
    let (fields, checks) = match figures {
        Ok(f) => soak_fields(minutes, agents, &f),
        Err(e) => (Vec::new(), vec![Check { name: "soak-figures".into(), pass: false, detail: e.to_string() }]),
    };
    report.checks.extend(checks);
    report.print();
    let passed = report.passed();
    let mut all = fields.clone();
    all.push(("soak_passed".into(), u64::from(passed).to_string()));
    let line = format!("{{{}}}", all.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","));
    let path = figures_path();
    std::fs::write(&path, format!("{line}\n")).map_err(|e| Error::Io(format!("writing {}", path.display()), e))?;
    print_totals(&fields);
    println!("xtask soak: figures in {}", path.display());
    if json {
        println!("{line}");
    }
    if passed {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Failed(format!("the soak failed; artefacts in {}", report.dir.display())))
    }
}

/// The soak's JSON fields (the run's shape, then the guest's figures) and the harness's own checks of
/// them: every figure there, nothing corrupt, every fault injected healed.
fn soak_fields(minutes: u32, agents: u32, figures: &[(String, f64)]) -> (Vec<(String, String)>, Vec<Check>) {
    let mut fields =
        vec![("soak_minutes".to_string(), minutes.to_string()), ("soak_agents".into(), agents.to_string())];
    fields.extend(figures.iter().filter(|(k, _)| k.starts_with("soak_")).map(|(k, v)| (k.clone(), format!("{v}"))));
    let get = |key: &str| figures.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    let mut checks = Vec::new();
    let missing: Vec<&str> = KEYS.iter().copied().filter(|k| get(k).is_none()).collect();
    checks.push(Check {
        name: "soak-figures".into(),
        pass: missing.is_empty(),
        detail: if missing.is_empty() {
            format!("{} figures from the guest", figures.len())
        } else {
            format!("the guest reported no {}", missing.join(", "))
        },
    });
    if let (Some(corrupt), Some(checked)) = (get("soak_corrupt"), get("soak_bytes_checked")) {
        checks.push(Check {
            name: "soak-corrupt-0".into(),
            pass: corrupt == 0.0 && checked > 0.0,
            detail: format!("{corrupt} corrupt transfers, {checked} bytes checked"),
        });
    }
    if let (Some(injected), Some(healed)) = (get("soak_faults_injected"), get("soak_faults_healed")) {
        checks.push(Check {
            name: "soak-faults-healed".into(),
            pass: injected > 0.0 && healed == injected,
            detail: format!("{healed} of {injected} faults healed"),
        });
    }
    (fields, checks)
}

/// Per-agent totals and the run's, as a table.
fn print_totals(fields: &[(String, String)]) {
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map_or("-", |(_, v)| v.as_str());
    println!("  agent  bytes checked  transfers  interrupted  corrupt");
    for n in 0.. {
        let key = |what: &str| format!("soak_agent{n}_{what}");
        if !fields.iter().any(|(k, _)| *k == key("bytes_checked")) {
            break;
        }
        println!(
            "  {n:>5}  {:>13}  {:>9}  {:>11}  {:>7}",
            get(&key("bytes_checked")),
            get(&key("transfers")),
            get(&key("interrupted")),
            get(&key("corrupt"))
        );
    }
    println!(
        "  total  {:>13} bytes checked, {} corrupt, {} interrupted; faults {} injected, {} healed; leak {} KiB",
        get("soak_bytes_checked"),
        get("soak_corrupt"),
        get("soak_interrupted"),
        get("soak_faults_injected"),
        get("soak_faults_healed"),
        get("soak_leak_kib")
    );
}

/// The last soak's figures for `cargo xtask bench --json --soak`: a flat JSON object of numbers.
pub fn last_figures() -> Result<Vec<(String, String)>> {
    let path = figures_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("reading {} (run `cargo xtask soak` first)", path.display()), e))?;
    parse(&path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>> {
    crate::bench::parse_flat_numbers(text)
        .filter(|f| KEYS.iter().all(|k| f.iter().any(|(key, _)| key == k)))
        .ok_or_else(|| Error::Failed(format!("{}: not a soak's figures", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(corrupt: f64, injected: f64, healed: f64) -> Vec<(String, f64)> {
        vec![
            ("soak_agent0_bytes_checked".into(), 1e6),
            ("soak_bytes_checked".into(), 1e6),
            ("soak_corrupt".into(), corrupt),
            ("soak_interrupted".into(), 3.0),
            ("soak_faults_injected".into(), injected),
            ("soak_faults_healed".into(), healed),
            ("soak_leak_kib".into(), 120.0),
            ("soak_seconds".into(), 240.0),
            ("rig_other".into(), 1.0),
        ]
    }

    #[test]
    fn a_soak_passes_only_clean_and_healed() {
        let (fields, checks) = soak_fields(4, 2, &figures(0.0, 9.0, 9.0));
        assert!(checks.iter().all(|c| c.pass), "{checks:?}");
        assert_eq!(fields[0], ("soak_minutes".to_string(), "4".to_string()));
        assert_eq!(fields[1], ("soak_agents".to_string(), "2".to_string()));
        assert!(fields.iter().all(|(k, _)| k.starts_with("soak_")));
        let failed = |f: Vec<(String, f64)>| {
            soak_fields(4, 2, &f).1.into_iter().filter(|c| !c.pass).map(|c| c.name).collect::<Vec<_>>()
        };
        assert_eq!(failed(figures(1.0, 9.0, 9.0)), ["soak-corrupt-0"]);
        assert_eq!(failed(figures(0.0, 9.0, 8.0)), ["soak-faults-healed"]);
        assert_eq!(failed(figures(0.0, 0.0, 0.0)), ["soak-faults-healed"]);
        let (_, checks) = soak_fields(4, 2, &[]);
        assert!(!checks[0].pass && checks[0].detail.contains("soak_leak_kib"), "{checks:?}");
    }

    #[test]
    fn the_figures_file_must_hold_a_soak() {
        let p = Path::new("soak.json");
        let good = r#"{"soak_minutes":4,"soak_agents":2,"soak_bytes_checked":1,"soak_corrupt":0,"soak_interrupted":0,"soak_faults_injected":9,"soak_faults_healed":9,"soak_leak_kib":0,"soak_seconds":240,"soak_passed":1}"#;
        assert_eq!(parse(p, good).unwrap().len(), 10);
        assert!(parse(p, r#"{"soak_minutes":4}"#).is_err());
        assert!(parse(p, "not json").is_err());
    }

    #[test]
    fn the_guest_has_time_for_a_round_of_faults() {
        assert!(timeout(1, 20) > Duration::from_secs(9 * (90 + 6 * 20)));
        assert!(timeout(30, 20) > Duration::from_secs(30 * 60));
    }
}
