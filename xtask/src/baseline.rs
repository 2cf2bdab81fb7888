//! The regression gate for the deterministic benchmark figures. `cargo xtask test` runs
//! `bpnet-netbench --json` once (its data-path smoke run); every figure that run prints is an exact
//! instruction count or a rate in the emulator's virtual time (fixed TCP seed, the host model stepped by
//! the agent's instructions, no wall clock), so it is the same on every machine and in every run: two runs
//! print byte-identical JSON. Those figures are compared with the committed baseline [`PATH`], one flat
//! JSON object of the same keys, and a figure that is worse by [`TOLERANCE`] or more (in the direction
//! [`GATED`] declares for it) fails the test. Wall-clock figures (the emulator's speed, the virtual
//! backplane's `rig_*` and BAR access times) depend on the machine and its load and are never gated.
//!
//! `cargo xtask bench --update-baseline` rewrites the file from a fresh run; an intended change of a
//! figure updates it in the same commit, the reason in the commit message.

use std::path::PathBuf;

use crate::bench::{parse_flat_numbers, Netbench};
use crate::util::{self, Error, Result};

/// The baseline, relative to the repository's root.
pub const PATH: &str = "xtask/bench-baseline.json";

/// A figure worse than its baseline by this fraction or more fails: 1.01 × a lower-is-better count,
/// 1/1.01 × a higher-is-better fraction.
pub const TOLERANCE: f64 = 0.01;

/// The direction in which a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// Every figure the test's `bpnet-netbench --json` run prints (without `--image-key`), with its
/// direction; the baseline holds exactly these keys, in this order. A figure the run prints that is not
/// here is an error too: a new figure is declared here and baselined in the commit that adds it.
pub const GATED: &[(&str, Better)] = &[
    ("agent_insns_per_frame_ring", Better::Lower),
    ("agent_insns_per_frame_tcp", Better::Lower),
    ("agent_insns_per_frame_tcp_echo", Better::Lower),
    ("tx_bus_fraction_1500", Better::Higher),
    ("rx_bus_fraction_1500", Better::Higher),
    ("notifications_per_packet", Better::Lower),
    ("host_bar_reads_per_packet", Better::Lower),
    ("host_copied_bytes", Better::Lower),
];

fn path() -> PathBuf {
    util::root().join(PATH)
}

/// How many times worse `run` is than `base` (below 1: better). A zero baseline of a lower-is-better
/// figure (bytes the host copies) makes anything above zero infinitely worse.
fn worsening(better: Better, base: f64, run: f64) -> f64 {
    let (num, den) = match better {
        Better::Lower => (run, base),
        Better::Higher => (base, run),
    };
    if num == den {
        1.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        num / den
    }
}

/// Rounding slack for a factor of exactly 1 + [`TOLERANCE`] computed from decimal figures.
const SLACK: f64 = 1e-9;

/// Whether `run` is worse than `base` by [`TOLERANCE`] or more.
fn regressed(better: Better, base: f64, run: f64) -> bool {
    worsening(better, base, run) >= 1.0 + TOLERANCE - SLACK
}

/// Whether `run` is better than `base` by [`TOLERANCE`] or more (time to update the baseline).
fn improved(better: Better, base: f64, run: f64) -> bool {
    worsening(better, base, run) * (1.0 + TOLERANCE) <= 1.0 + SLACK
}

/// The outcome of comparing a run with the baseline: one line per gated figure, and every problem (a
/// regression, a key missing on either side, a key nobody declared).
#[derive(Debug, Default)]
pub struct Comparison {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
    pub improved: usize,
}

/// Compare `run` (key, value) with `baseline`, both checked against [`GATED`].
pub fn compare(baseline: &[(String, f64)], run: &[(String, f64)]) -> Comparison {
    let mut c = Comparison::default();
    let get = |fields: &[(String, f64)], key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    for (key, better) in GATED {
        let (base, now) = match (get(baseline, key), get(run, key)) {
            (Some(base), Some(now)) => (base, now),
            (None, _) => {
                c.problems.push(format!(
                    "`{key}` is gated but missing from the baseline {PATH}: `cargo xtask bench --update-baseline`"
                ));
                continue;
            }
            (_, None) => {
                c.problems.push(format!("`{key}` is gated but bpnet-netbench did not print it"));
                continue;
            }
        };
        let dir = match better {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
        };
        let line = format!("{key}: {now} (baseline {base}, {dir})");
        if regressed(*better, base, now) {
            let by = (worsening(*better, base, now) - 1.0) * 100.0;
            c.problems.push(format!("{line}: {by:.2} % worse, the gate allows less than {:.0} %", TOLERANCE * 100.0));
        } else if improved(*better, base, now) {
            c.improved += 1;
        }
        c.lines.push(line);
    }
    let declared = |key: &str| GATED.iter().any(|(k, _)| *k == key);
    for (key, _) in baseline.iter().filter(|(k, _)| !declared(k)) {
        c.problems.push(format!(
            "the baseline {PATH} holds `{key}`, which the gate's table (xtask/src/baseline.rs) does not declare"
        ));
    }
    for (key, _) in run.iter().filter(|(k, _)| !declared(k)) {
        c.problems.push(format!(
            "bpnet-netbench printed `{key}`, which the gate's table (xtask/src/baseline.rs) does not declare: \
             add it with its direction and `cargo xtask bench --update-baseline`"
        ));
    }
    c
}

/// The baseline file's figures: one flat JSON object of numbers, each key once.
fn parse(text: &str) -> Result<Vec<(String, f64)>> {
    let bad = |why: &str| Error::Failed(format!("{PATH}: {why}"));
    let fields = parse_flat_numbers(text).ok_or_else(|| bad("not one flat JSON object of numbers"))?;
    let mut figures: Vec<(String, f64)> = Vec::new();
    for (key, value) in fields {
        if figures.iter().any(|(k, _)| *k == key) {
            return Err(bad(&format!("`{key}` twice")));
        }
        let value = value.parse().map_err(|_| bad(&format!("`{key}`: not a number")))?;
        figures.push((key, value));
    }
    Ok(figures)
}

fn numbers(net: &Netbench) -> Vec<(String, f64)> {
    // run_figures accepted only finite numbers.
    net.fields.iter().map(|(k, v)| (k.clone(), v.parse().unwrap_or(f64::NAN))).collect()
}

/// The gate: the run's figures against the committed baseline. Prints one line per figure; fails with
/// every problem at once.
pub fn check(net: &Netbench) -> Result<()> {
    let file = path();
    let text = std::fs::read_to_string(&file).map_err(|e| Error::Io(format!("reading the baseline {PATH}"), e))?;
    let c = compare(&parse(&text)?, &numbers(net));
    for line in &c.lines {
        eprintln!("  {line}");
    }
    if !c.problems.is_empty() {
        return Err(Error::Failed(format!(
            "benchmark figures against {PATH} ({} tolerance): {} problem(s):\n  {}\n(an intended change: \
             `cargo xtask bench --update-baseline` and commit the file with the change, the reason in the message)",
            format_args!("{:.0} %", TOLERANCE * 100.0),
            c.problems.len(),
            c.problems.join("\n  ")
        )));
    }
    eprintln!(
        "xtask: bench baseline: {} figures within {:.0} % of {PATH}{}",
        c.lines.len(),
        TOLERANCE * 100.0,
        if c.improved > 0 {
            format!(
                " ({} better by {:.0} % or more: `cargo xtask bench --update-baseline` to keep the gain)",
                c.improved,
                TOLERANCE * 100.0
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The baseline file for a run: the gated figures in [`GATED`]'s order, as the run printed them.
fn render(net: &Netbench) -> Result<String> {
    let mut lines = Vec::new();
    for (key, _) in GATED {
        let (_, value) = net
            .fields
            .iter()
            .find(|(k, _)| k == key)
            .ok_or_else(|| Error::Failed(format!("`{key}` is gated but bpnet-netbench did not print it")))?;
        lines.push(format!("  \"{key}\": {value}"));
    }
    if let Some((key, _)) = net.fields.iter().find(|(k, _)| !GATED.iter().any(|(g, _)| g == k)) {
        return Err(Error::Failed(format!(
            "bpnet-netbench printed `{key}`, which the gate's table (xtask/src/baseline.rs) does not declare"
        )));
    }
    Ok(format!("{{\n{}\n}}\n", lines.join(",\n")))
}

/// `cargo xtask bench --update-baseline`: rewrite the baseline from this run; prints what changed.
pub fn update(net: &Netbench) -> Result<()> {
    let file = path();
    let old = std::fs::read_to_string(&file).ok().and_then(|t| parse(&t).ok()).unwrap_or_default();
    let text = render(net)?;
    for (key, value) in parse(&text)? {
        match old.iter().find(|(k, _)| *k == key) {
            Some((_, was)) if *was == value => println!("  {key}: {value} (unchanged)"),
            Some((_, was)) => println!("  {key}: {was} -> {value}"),
            None => println!("  {key}: {value} (new)"),
        }
    }
    std::fs::write(&file, text).map_err(|e| Error::Io(format!("writing {}", file.display()), e))?;
    println!("{PATH}: {} figures written", GATED.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// Every gated key at `value`, with `key` at `other`.
    fn all_but(key: &str, value: f64, other: f64) -> Vec<(String, f64)> {
        GATED.iter().map(|(k, _)| (k.to_string(), if *k == key { other } else { value })).collect()
    }

    #[test]
    fn a_one_percent_worsening_fails_in_the_figures_direction() {
        // Lower is better: 1.01 x fails, just under passes, any improvement passes.
        assert!(regressed(Better::Lower, 358.4, 358.4 * 1.01));
        assert!(!regressed(Better::Lower, 358.4, 358.4 * 1.0099));
        assert!(!regressed(Better::Lower, 358.4, 300.0));
        // Higher is better: the same worsening is a division.
        assert!(regressed(Better::Higher, 0.9113, 0.9113 / 1.01));
        assert!(!regressed(Better::Higher, 0.9113, 0.9113 / 1.0099));
        assert!(!regressed(Better::Higher, 0.9113, 0.99));
        // The direction matters: the same numbers are a regression one way and a gain the other.
        assert!(regressed(Better::Lower, 1.0, 2.0) && !regressed(Better::Higher, 1.0, 2.0));
        assert!(regressed(Better::Higher, 2.0, 1.0) && !regressed(Better::Lower, 2.0, 1.0));
        // A baseline of zero bytes copied allows none.
        assert!(regressed(Better::Lower, 0.0, 1.0));
        assert!(!regressed(Better::Lower, 0.0, 0.0));
        assert!(improved(Better::Lower, 100.0, 98.0) && !improved(Better::Lower, 100.0, 99.5));
        assert!(improved(Better::Higher, 0.5, 0.6) && !improved(Better::Higher, 0.5, 0.501));
    }

    #[test]
    fn the_comparison_reports_regressions_and_missing_keys() {
        let base = all_but("", 10.0, 0.0);
        let c = compare(&base, &base);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.lines.len(), GATED.len());

        let worse = all_but("agent_insns_per_frame_ring", 10.0, 10.1);
        assert!(regressed(Better::Lower, 10.0, 10.1), "10.1 over 10 is the 1 % itself");
        let c = compare(&base, &worse);
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert!(c.problems[0].starts_with("agent_insns_per_frame_ring: 10.1 (baseline 10"), "{}", c.problems[0]);

        let better = all_but("tx_bus_fraction_1500", 10.0, 11.0);
        let c = compare(&base, &better);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.improved, 1);
        let slower = all_but("tx_bus_fraction_1500", 10.0, 9.0);
        assert_eq!(compare(&base, &slower).problems.len(), 1);

        let mut short = base.clone();
        short.retain(|(k, _)| k != "host_copied_bytes");
        let c = compare(&short, &base);
        assert!(c.problems.len() == 1 && c.problems[0].contains("missing from the baseline"), "{:?}", c.problems);
        let c = compare(&base, &short);
        assert!(c.problems.len() == 1 && c.problems[0].contains("did not print it"), "{:?}", c.problems);

        let mut more = base.clone();
        more.extend(figures(&[("new_figure", 1.0)]));
        let c = compare(&base, &more);
        assert!(c.problems.len() == 1 && c.problems[0].contains("`new_figure`"), "{:?}", c.problems);
        let c = compare(&more, &base);
        assert!(c.problems.len() == 1 && c.problems[0].contains("baseline"), "{:?}", c.problems);
    }

    #[test]
    fn the_baseline_file_round_trips() {
        let net = Netbench {
            lines: vec![],
            fields: GATED.iter().enumerate().map(|(i, (k, _))| (k.to_string(), format!("{}.5", i))).collect(),
        };
        let text = render(&net).unwrap();
        assert!(text.starts_with("{\n  \"agent_insns_per_frame_ring\": 0.5,\n"), "{text}");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.len(), GATED.len());
        assert!(compare(&parsed, &numbers(&net)).problems.is_empty());
        assert!(parse("{\"a\": 1, \"a\": 2}").is_err(), "a key twice");
        assert!(parse("[1, 2]").is_err());
        let mut odd = net;
        odd.fields.push(("undeclared".into(), "1".into()));
        assert!(render(&odd).is_err());
    }
}
