//! `cargo xtask bench`: figures from virtual time and exact counts on the board emulator (the DMA
//! self-test, and the data path through `bpnet-netbench`), plus two kinds of wall-clock figures, labelled
//! as such: the emulator's own speed on this machine, and the virtual backplane's (Linux under QEMU with
//! the real kernel module, firmware and emulator).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::backplane::{self, Personality};
use crate::emu::Summary;
use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

/// Sustained rates of the modelled 32-bit/33 MHz bus (shared/bus-model.md), bytes per second:
/// back-to-back 256-byte bursts of 64 data clocks plus 7 (write) or 21 (read) overhead clocks,
/// which is what "≈ 120 MB/s" and "≈ 100 MB/s" are in the model's own terms.
const PCI_CLOCK_HZ: f64 = 100e6 / 3.0;
const WRITE_RATE: f64 = PCI_CLOCK_HZ * 256.0 / 71.0;
const READ_RATE: f64 = PCI_CLOCK_HZ * 256.0 / 85.0;
/// Chained transfer sizes the self-test measures, in marker order (firmware/app/src/bin/selftest.rs).
const CHAIN_SIZES: [u64; 4] = [64, 1500, 9000, 65536];

fn marker(run: &Summary, id: u64) -> Result<(u64, u64)> {
    run.markers
        .iter()
        .find(|m| m.0 == id)
        .map(|m| (m.1, m.2))
        .ok_or_else(|| Error::Failed(format!("self-test left no benchmark marker {id:#x}")))
}

/// Bytes the self-test moves per chained run: max(4, 256 KiB / size) descriptors of `size`.
fn chain_bytes(size: u64) -> u64 {
    size * (256 * 1024 / size).max(4)
}

/// Keys `bpnet-netbench --json` must print (it may print more; all of them are passed on).
const NETBENCH_KEYS: &[&str] = &[
    "agent_insns_per_frame_ring",
    "agent_insns_per_frame_tcp",
    "tx_bus_fraction_1500",
    "rx_bus_fraction_1500",
    "notifications_per_packet",
    "host_bar_reads_per_packet",
    "host_copied_bytes",
];

/// Keys `bpnet-netbench --json --image-key` must also print: the control service's figures.
const CONTROL_KEYS: &[&str] = &["netboot_4mib_s", "netboot_bus_fraction", "flash_update_1mib_s"];

/// Keys `bpnet-powercut --json` prints.
const POWERCUT_KEYS: &[&str] = &["powercut_points_tested", "powercut_points_survived"];

/// Run `bpnet-powercut --json` (built next to the emulator): a power cut at every flash step of an
/// update through the real boot stage and firmware. Its counts are the figures; a cut that did not end
/// with a verified image started fails the run, and the benchmark with it.
fn powercut(emulator: &Path, release: &Path, boot: &Path) -> Result<Netbench> {
    let mut cmd = Command::new(emulator.with_file_name("bpnet-powercut"));
    cmd.arg("--boot").arg(boot).arg("--firmware").arg(release).arg("--image").arg(firmware::image(release));
    cmd.arg("--key").arg(firmware::secret_key()?).arg("--json");
    run_figures(cmd, POWERCUT_KEYS)
}

/// What one `bpnet-netbench --json` (or `bpnet-powercut --json`) run printed.
pub struct Netbench {
    /// Its human lines (everything before the JSON object).
    pub lines: Vec<String>,
    /// The JSON object's fields, in order: key and the number's text as printed.
    pub fields: Vec<(String, String)>,
}

/// Run `bpnet-netbench --json` (built next to the emulator by [`crate::emu::build`]) on the release and
/// ring-bench firmware. Fails if it fails (a run that stalls or a transfer that arrives corrupted is an
/// error there), or if its JSON is not a flat object of numbers with at least [`NETBENCH_KEYS`].
/// With `image_key` (the secret key the firmware trusts) it also runs the control service's figures
/// (NETBOOT of 4 MiB, FLASH of 1 MiB; [`CONTROL_KEYS`]).
pub fn netbench(emulator: &Path, release: &Path, ring: &Path, image_key: Option<&Path>) -> Result<Netbench> {
    let mut cmd = Command::new(emulator.with_file_name("bpnet-netbench"));
    cmd.arg("--firmware").arg(release).arg("--ring-firmware").arg(ring).arg("--json");
    let mut keys = NETBENCH_KEYS.to_vec();
    if let Some(key) = image_key {
        cmd.arg("--image-key").arg(key);
        keys.extend_from_slice(CONTROL_KEYS);
    }
    run_figures(cmd, &keys)
}

/// Run a figures tool: it must succeed and end with a flat JSON object of numbers holding `keys`.
fn run_figures(mut cmd: Command, keys: &[&str]) -> Result<Netbench> {
    let name = Path::new(cmd.get_program()).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out = cmd.output().map_err(|e| Error::Io(format!("starting {}", cmd.get_program().to_string_lossy()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "{name} failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect();
    let last = lines.pop().unwrap_or_default();
    let fields = parse_flat_numbers(&last)
        .ok_or_else(|| Error::Failed(format!("{name}: last line is not a JSON object of numbers: `{last}`")))?;
    if let Some(missing) = keys.iter().find(|k| !fields.iter().any(|(f, _)| f == *k)) {
        return Err(Error::Failed(format!("{name} printed no `{missing}`: `{last}`")));
    }
    Ok(Netbench { lines, fields })
}

/// `{"key":number,...}` (what bpnet-netbench prints) as (key, number text); `None` for anything else.
pub(crate) fn parse_flat_numbers(line: &str) -> Option<Vec<(String, String)>> {
    let inner = line.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut fields = Vec::new();
    for field in inner.split(',').filter(|f| !f.trim().is_empty()) {
        let (key, value) = field.split_once(':')?;
        let key = key.trim().strip_prefix('"')?.strip_suffix('"')?;
        let value = value.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        if !value.parse::<f64>().is_ok_and(f64::is_finite) {
            return None;
        }
        fields.push((key.to_string(), value.to_string()));
    }
    Some(fields)
}

/// Bytes the bench suite moves each way, per configuration: long enough that connection set-up and the
/// slow start are a small part of the time.
const BENCH_BYTES: u64 = 32 << 20;

/// The `bench` guest suite (tests/backplane/bench.sh) on one agent of the virtual backplane with the
/// given personality. Every check must pass; returns its figures, the `FIGURE key value` lines of the
/// results channel, in order.
fn rig_figures(personality: Personality) -> Result<Vec<(String, f64)>> {
    let suite = backplane::Suite {
        name: format!("bench-1-{}", personality.name()),
        personality,
        guest: "bench",
        agents: 1,
        needs_module: true,
        bytes: BENCH_BYTES,
        timeout: Duration::from_secs(600),
        boot_stage: false,
        live: false,
        identities: false,
        unrelated_ivshmem: false,
        minutes: 0,
    };
    let tools = backplane::prepare(true, false, false)?;
    eprintln!("xtask: backplane: {} ({} agent(s))", suite.name, suite.agents);
    let report = backplane::run_suite(&tools, &suite)?;
    if !report.passed() {
        report.print();
        return Err(Error::Failed(format!("backplane suite {} failed", suite.name)));
    }
    eprintln!("xtask: backplane: {}: {} checks passed, {:.0} s", suite.name, report.checks.len(), report.seconds);
    let results = report.dir.join("results.log");
    let text = std::fs::read_to_string(&results).map_err(|e| Error::Io(format!("reading {}", results.display()), e))?;
    let mut figures = parse_figures(&text)?;
    if personality == Personality::Mpc834x {
        let path = report.dir.join("agent0.json");
        let summary =
            std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("reading {}", path.display()), e))?;
        figures.extend(service_figures(&summary)?);
    }
    Ok(figures)
}

/// The emulator's side of a BAR access through the proxy (mpc834x): its mean time from receiving a BAR0
/// or BAR1 access to sending the reply, in µs, from its summary's `bar0_service_ns_mean` and
/// `bar1_service_ns_mean`. The summary has one mean over every access of the run, reads and writes, the
/// timed reads and the module's, so it is not the timed reads' share of their cost.
fn service_figures(summary: &str) -> Result<Vec<(String, f64)>> {
    ["bar0", "bar1"]
        .iter()
        .map(|bar| {
            let key = format!("{bar}_service_ns_mean");
            let ns = backplane::json_u64(summary, &key)
                .ok_or_else(|| Error::Failed(format!("agent 0's summary has no `{key}`")))?;
            Ok((format!("{bar}_service_us"), ns as f64 / 1e3))
        })
        .collect()
}

/// The `FIGURE key value` lines: a key of word characters and a finite number, or the run is refused.
pub(crate) fn parse_figures(text: &str) -> Result<Vec<(String, f64)>> {
    let mut figures = Vec::new();
    for line in text.lines() {
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        let Some(rest) = line.strip_prefix("FIGURE ") else { continue };
        let bad = || Error::Failed(format!("unparsable figure from the guest: `{line}`"));
        let (key, value) = rest.split_once(' ').ok_or_else(bad)?;
        let value: f64 = value.trim().parse().map_err(|_| bad())?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || !value.is_finite() {
            return Err(bad());
        }
        figures.push((key.to_string(), value));
    }
    Ok(figures)
}

/// The virtual backplane's figures: the bench guest suite's, and the suppression gain from them.
struct Rig {
    figures: Vec<(String, f64)>,
}

/// The personalities `cargo xtask bench` measures: both, or the one `--personality` names. The default
/// personality (mpc834x, the real board's) comes first: its figures also carry the unsuffixed keys.
fn bench_personalities(args: &mut Vec<String>) -> Result<Vec<Personality>> {
    if args.iter().any(|a| a == "--personality") {
        Ok(vec![Personality::from_args(args)?])
    } else {
        Ok(vec![Personality::Mpc834x, Personality::Ivshmem])
    }
}

/// One personality's rig figures as JSON fields: every key suffixed `_<personality>`; the default
/// personality's `rig_*` and BAR access keys (`bar0_access_us`, `bar1_access_us`) also unsuffixed, as
/// they were before there were two.
fn rig_json_fields(personality: Personality, rig: &Rig, gain: f64) -> Vec<String> {
    let p = personality.name();
    let mut fields = Vec::new();
    let all = rig
        .figures
        .iter()
        .map(|(k, v)| (k.as_str(), format!("{v}")))
        .chain([("rig_suppression_gain", format!("{gain:.4}"))]);
    for (key, value) in all {
        fields.push(format!("\"{key}_{p}\":{value}"));
        let unsuffixed = key.starts_with("rig_") || key.ends_with("_access_us");
        if personality == Personality::Mpc834x && unsuffixed {
            fields.push(format!("\"{key}\":{value}"));
        }
    }
    fields
}

impl Rig {
    fn get(&self, key: &str) -> Result<f64> {
        self.figures
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| Error::Failed(format!("the backplane's bench suite reported no `{key}`")))
    }

    /// Notifications per packet without event-index suppression over those with it, both measured in
    /// the same guest boot.
    fn suppression_gain(&self) -> Result<f64> {
        let on = self.get("rig_notifications_per_packet")?;
        let off = self.get("rig_notifications_per_packet_no_event_index")?;
        if on > 0.0 {
            Ok(off / on)
        } else {
            Err(Error::Failed(format!("no notifications at all with suppression on ({on}): no gain to report")))
        }
    }
}

/// The data-path run `cargo xtask test` makes (no control-service figures), as the regression gate
/// ([`crate::baseline`]) compares it.
fn gated_netbench() -> Result<Netbench> {
    let emulator = crate::emu::build()?;
    netbench(&emulator, &firmware::build(Variant::Release)?, &firmware::build(Variant::RingBench)?, None)
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--update-baseline") {
        util::no_more(&args)?;
        crate::baseline::update(&gated_netbench()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if util::take_flag(&mut args, "--check-baseline") {
        util::no_more(&args)?;
        crate::baseline::check(&gated_netbench()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let json = util::take_flag(&mut args, "--json");
    // The last soak's figures (cargo xtask soak), only when asked: a soak takes half an hour.
    let soak = if util::take_flag(&mut args, "--soak") { Some(crate::soak::last_figures()?) } else { None };
    let personalities = bench_personalities(&mut args)?;
    util::no_more(&args)?;
    let emulator = crate::emu::build()?;
    let release = firmware::build(Variant::Release)?;
    let text_bytes = firmware::text_bytes(&release)?;

    let cpu = crate::emu::run_for_summary(&emulator, &firmware::build(Variant::CpuBench)?, &[])?;
    if cpu.outcome != "idle" {
        return Err(Error::Failed(format!("cpu-bench firmware ended `{}`, not idle", cpu.outcome)));
    }
    let boot = crate::emu::run_for_summary(&emulator, &release, &[])?;
    let st = crate::emu::run_for_summary(&emulator, &firmware::build(Variant::SelfTest)?, &["--echo-host"])?;
    let net = netbench(&emulator, &release, &firmware::build(Variant::RingBench)?, Some(&firmware::secret_key()?))?;
    let cuts = powercut(&emulator, &release, &firmware::build(Variant::BootStage)?)?;
    let mut rigs = Vec::new();
    for &p in &personalities {
        let rig = Rig { figures: rig_figures(p)? };
        let gain = rig.suppression_gain()?;
        rigs.push((p, rig, gain));
    }

    let (submit_start, _) = marker(&st, 0x01)?;
    let (submit_end, _) = marker(&st, 0x02)?;
    // Two marker stores and their address set-up sit inside the span; they are not submission work.
    let submit_insns = submit_end.saturating_sub(submit_start);
    let mut fractions = Vec::new();
    for (i, &size) in CHAIN_SIZES.iter().enumerate() {
        let i = i as u64;
        let bytes = chain_bytes(size) as f64;
        let span = |a: u64, b: u64| -> Result<f64> {
            let (_, t0) = marker(&st, a)?;
            let (_, t1) = marker(&st, b)?;
            Ok((t1.saturating_sub(t0)) as f64 / 1e12)
        };
        let write = bytes / span(0x10 + i, 0x20 + i)? / WRITE_RATE;
        let read = bytes / span(0x30 + i, 0x40 + i)? / READ_RATE;
        fractions.push((size, write, read));
    }

    println!("bpnet benchmarks");
    println!("  (virtual time: e300 core 533.33 MHz, one instruction per cycle; DMA over the modelled");
    println!(
        "   32-bit/33 MHz PCI bus: {:.1} MB/s sustained into host RAM, {:.1} MB/s from it; shared/bus-model.md)",
        WRITE_RATE / 1e6,
        READ_RATE / 1e6
    );
    println!("  firmware .text                      {text_bytes} bytes");
    println!(
        "  boot to idle                        {} instructions, {:.1} µs virtual",
        boot.instructions,
        boot.virtual_ns as f64 / 1e3
    );
    println!("  chained DMA submission (1 desc.)    {submit_insns} instructions");
    for (size, write, read) in &fractions {
        println!("  chained DMA {size:>5} B, bus fraction   into host {write:.3}, from host {read:.3}");
    }
    println!(
        "  emulator speed (wall clock)         {:.1} MIPS ({} instructions in {:.2} s on this machine)",
        cpu.mips(),
        cpu.instructions,
        cpu.wall_ns as f64 / 1e9
    );
    // bpnet-netbench's and bpnet-powercut's own lines, indented under ours.
    for line in &net.lines {
        println!("  {line}");
    }
    println!("  power cuts during a firmware update (bpnet-powercut: boot stage + firmware, every flash step)");
    for line in &cuts.lines {
        println!("    {line}");
    }
    println!("virtual backplane (wall clock on this machine: Linux in QEMU under TCG, bpnet.ko, the firmware on");
    println!("  the emulator paced to real time; not virtual time, and slower than the hardware; the emulator's");
    println!("  virtual time still follows the bus model, shared/bus-model.md)");
    for (p, rig, gain) in &rigs {
        println!("  personality {}", p.name());
        println!(
            "    TCP host to agent (discard)       {:.1} Mbit/s ({:.1} without event-index suppression)",
            rig.get("rig_tcp_tx_mbps")?,
            rig.get("rig_tcp_tx_mbps_no_event_index")?
        );
        println!(
            "    TCP agent to host (sized bulk)    {:.1} Mbit/s ({:.1} without event-index suppression)",
            rig.get("rig_tcp_rx_mbps")?,
            rig.get("rig_tcp_rx_mbps_no_event_index")?
        );
        println!(
            "    notifications per packet          {:.4} with event-index suppression, {:.4} without: gain {gain:.2}",
            rig.get("rig_notifications_per_packet")?,
            rig.get("rig_notifications_per_packet_no_event_index")?
        );
        println!(
            "      (doorbells + interrupts over frames, from the module's ethtool -S, both ways of both transfers)"
        );
        println!(
            "    fast-path BAR reads per packet    {:.5} (the module's counters in the guest, suppression on)",
            rig.get("host_bar_reads_per_packet")?
        );
        match p {
            Personality::Mpc834x => {
                println!(
                    "    one BAR access through the proxy  BAR0 {:.1} µs, BAR1 {:.1} µs (mean of 5000 reads from the guest)",
                    rig.get("bar0_access_us")?,
                    rig.get("bar1_access_us")?
                );
                println!(
                    "      emulator's service time           BAR0 {:.1} µs, BAR1 {:.1} µs (mean over every access of the run)",
                    rig.get("bar0_service_us")?,
                    rig.get("bar1_service_us")?
                );
            }
            Personality::Ivshmem => println!(
                "    one BAR read from the guest       BAR0 {:.2} µs (QEMU's ivshmem registers), BAR2 {:.3} µs (RAM)",
                rig.get("bar0_access_us")?,
                rig.get("bar2_access_us")?
            ),
        }
    }
    if let Some(soak) = &soak {
        let text: Vec<String> =
            soak.iter().filter(|(k, _)| !k.starts_with("soak_agent")).map(|(k, v)| format!("{k} {v}")).collect();
        println!("the last soak ({}): {}", crate::soak::figures_path().display(), text.join(", "));
    }
    if json {
        let mut fields = vec![
            format!("\"emu_mips\":{:.1}", cpu.mips()),
            format!("\"firmware_text_bytes\":{text_bytes}"),
            format!("\"boot_instructions\":{}", boot.instructions),
            format!("\"dma_submit_insns\":{submit_insns}"),
        ];
        for (size, write, read) in &fractions {
            fields.push(format!("\"dma_bus_fraction_{size}\":{write:.4}"));
            fields.push(format!("\"dma_bus_fraction_{size}_read\":{read:.4}"));
        }
        for (key, value) in net.fields.iter().chain(&cuts.fields) {
            fields.push(format!("\"{key}\":{value}"));
        }
        for (p, rig, gain) in &rigs {
            fields.extend(rig_json_fields(*p, rig, *gain));
        }
        for (key, value) in soak.iter().flatten() {
            fields.push(format!("\"{key}\":{value}"));
        }
        println!("{{{}}}", fields.join(","));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netbench_json_is_a_flat_object_of_numbers() {
        let fields = parse_flat_numbers(r#"{"a_1":12.5,"b":3,"c":0.00012}"#).unwrap();
        assert_eq!(fields, [("a_1".into(), "12.5".into()), ("b".into(), "3".into()), ("c".into(), "0.00012".into())]);
        assert_eq!(parse_flat_numbers("{}").unwrap(), []);
        assert!(parse_flat_numbers(r#"{"a":"x"}"#).is_none(), "a string");
        assert!(parse_flat_numbers(r#"{"a":NaN}"#).is_none(), "not finite");
        assert!(parse_flat_numbers(r#"{a:1}"#).is_none(), "an unquoted key");
        assert!(parse_flat_numbers(r#""a":1"#).is_none(), "no braces");
        assert!(parse_flat_numbers("bpnet data-path benchmarks").is_none());
    }

    #[test]
    fn suppression_gain_is_off_over_on() {
        let rig = |on: f64, off: f64| Rig {
            figures: vec![
                ("rig_notifications_per_packet".into(), on),
                ("rig_notifications_per_packet_no_event_index".into(), off),
            ],
        };
        assert!((rig(0.25, 1.0).suppression_gain().unwrap() - 4.0).abs() < 1e-12);
        assert!(rig(0.0, 1.0).suppression_gain().is_err());
        assert!(Rig { figures: vec![] }.suppression_gain().is_err());
    }

    #[test]
    fn rig_keys_carry_their_personality_and_the_default_keeps_the_old_names() {
        let rig = Rig {
            figures: vec![
                ("rig_tcp_tx_mbps".into(), 12.5),
                ("host_bar_reads_per_packet".into(), 0.01),
                ("bar0_access_us".into(), 9.0),
                ("bar0_service_us".into(), 4.5),
            ],
        };
        let mpc = rig_json_fields(Personality::Mpc834x, &rig, 2.0).join(",");
        assert_eq!(
            mpc,
            "\"rig_tcp_tx_mbps_mpc834x\":12.5,\"rig_tcp_tx_mbps\":12.5,\"host_bar_reads_per_packet_mpc834x\":0.01,\
             \"bar0_access_us_mpc834x\":9,\"bar0_access_us\":9,\"bar0_service_us_mpc834x\":4.5,\
             \"rig_suppression_gain_mpc834x\":2.0000,\"rig_suppression_gain\":2.0000"
        );
        // The model's host_bar_reads_per_packet (bpnet-netbench) keeps its unsuffixed key; on ivshmem every
        // key carries the suffix.
        let iv = rig_json_fields(
            Personality::Ivshmem,
            &Rig { figures: vec![("host_bar_reads_per_packet".into(), 0.0), ("bar2_access_us".into(), 0.05)] },
            1.0,
        );
        assert_eq!(
            iv,
            [
                "\"host_bar_reads_per_packet_ivshmem\":0",
                "\"bar2_access_us_ivshmem\":0.05",
                "\"rig_suppression_gain_ivshmem\":1.0000"
            ]
        );
        let mut args = vec![];
        assert_eq!(bench_personalities(&mut args).unwrap(), [Personality::Mpc834x, Personality::Ivshmem]);
        let mut args = vec!["--personality".to_string(), "ivshmem".to_string()];
        assert_eq!(bench_personalities(&mut args).unwrap(), [Personality::Ivshmem]);
    }

    #[test]
    fn the_emulators_service_time_from_its_summary() {
        let summary = r#"{"outcome":"idle","bar0_service_ns_mean":41250,"bar1_service_ns_mean":800,"x":1}"#;
        assert_eq!(
            service_figures(summary).unwrap(),
            [("bar0_service_us".to_string(), 41.25), ("bar1_service_us".to_string(), 0.8)]
        );
        let err = service_figures(r#"{"bar0_service_ns_mean":1}"#).unwrap_err();
        assert!(format!("{err:?}").contains("bar1_service_ns_mean"), "{err:?}");
    }

    #[test]
    fn bench_figures_from_the_results_channel() {
        let text = "BEGIN suite=bench\nRESULT a pass x\nFIGURE rig_tcp_tx_mbps 81.25\r\nFIGURE k_2 0.50000\nEND\n";
        let figures = parse_figures(text).unwrap();
        assert_eq!(figures, [("rig_tcp_tx_mbps".to_string(), 81.25), ("k_2".to_string(), 0.5)]);
        assert!(parse_figures("FIGURE rig_tcp_tx_mbps\n").is_err(), "no value");
        assert!(parse_figures("FIGURE rig_tcp_tx_mbps fast\n").is_err(), "not a number");
        assert!(parse_figures("FIGURE rig\"x 1\n").is_err(), "a key that would break the JSON");
        assert!(parse_figures("FIGURE k NaN\n").is_err(), "not finite");
        assert!(parse_figures("RESULT figure pass FIGURE k 1\n").unwrap().is_empty());
    }
}
