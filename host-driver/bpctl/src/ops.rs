//! `flash`, `boot` and `reset`: the commands that change what an agent runs. Each talks to the agent
//! over its control service (TCP port 5020 through its netdev) or through the module's control files
//! (the BAR), then watches the agent's header state and boot block in the shared region until it is
//! back as asked.

use std::io::{IsTerminal, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bpctl::agents::{self, Agent, Paths};
use bpctl::boot::BootInfo;
use bpctl::control::{self, Connection};
use bpctl::region::Region;
use bpctl::table::{render, Align};
use bpctl::update::{self, ImageInfo, Snapshot, Want};
use bpctl::Error;
use bpnet_contract::control::Request;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::{discover, emit, one_agent};

/// How agents are reached and how long they may take.
#[derive(Clone, Copy)]
pub struct Limits {
    pub addr: Option<Ipv4Addr>,
    /// A transfer, a flash write or a TFTP fetch.
    pub transfer: Duration,
    /// Coming back after a reset or a boot.
    pub come_back: Duration,
}

fn netdev(agent: &Agent) -> Result<&str, Error> {
    agent
        .netdev
        .as_deref()
        .ok_or_else(|| Error::Agent(format!("{}: no netdev (has bpnet finished probing it?)", agent.pci)))
}

/// The agent's address: --addr, else its neighbour entry.
fn address(paths: &Paths, agent: &Agent, limits: &Limits) -> Result<Ipv4Addr, Error> {
    let dev = netdev(agent)?;
    limits.addr.or_else(|| agents::neighbour(paths, dev)).ok_or_else(|| {
        Error::Usage(format!(
            "{dev}: the agent's address is unknown (no neighbour entry on {dev}): ping it once through {dev}, \
             or pass --addr"
        ))
    })
}

fn open_region(agent: &Agent) -> Result<Region, Error> {
    Region::open(&agent.shared_resource()?)
}

/// Progress as plain lines on stderr: set when stderr is not a terminal (a log, a serial console, a
/// pipe), where indicatif draws nothing, and the output is not JSON.
static PLAIN: AtomicBool = AtomicBool::new(false);

fn bar(multi: &MultiProgress, json: bool, name: &str) -> ProgressBar {
    PLAIN.store(!json && !std::io::stderr().is_terminal(), Ordering::Relaxed);
    let bar = if json { ProgressBar::hidden() } else { multi.add(ProgressBar::new(0)) };
    if json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{prefix:6} {msg:36} [{bar:30}] {bytes}/{total_bytes}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_string());
    bar
}

/// A PROGRESS line on the bar: the phase and its bytes. As plain lines: one per phase and per tenth.
fn show_progress(bar: &ProgressBar, phase: &str, done: u64, total: u64) {
    let tenth = |done: u64, total: u64| done.saturating_mul(10) / total.max(1);
    let same_phase = bar.message() == phase;
    let (was, now) = (tenth(bar.position(), bar.length().unwrap_or(0)), tenth(done, total));
    bar.set_message(phase.to_string());
    bar.set_length(total);
    bar.set_position(done);
    if PLAIN.load(Ordering::Relaxed) && (!same_phase || was != now) {
        // The agent counts sectors while it erases, bytes otherwise.
        let unit = if phase == "erase" { "sectors" } else { "bytes" };
        eprintln!("{}: {phase} {}% ({done} of {total} {unit})", bar.prefix(), done.saturating_mul(100) / total.max(1));
    }
}

/// What the agent is doing now, on its bar (and as a plain line, see [`PLAIN`]).
fn note(bar: &ProgressBar, text: impl Into<String>) {
    let text = text.into();
    if PLAIN.load(Ordering::Relaxed) {
        eprintln!("{}: {text}", bar.prefix());
    }
    bar.set_message(text);
}

/// Wait for the agent to restart (it leaves RUNNING or its uptime goes back), then for `want`.
fn come_back(
    agent: &Agent,
    region: &Region,
    before: &Snapshot,
    want: &Want,
    limit: Duration,
    bar: &ProgressBar,
) -> Result<Snapshot, Error> {
    let started = Instant::now();
    note(bar, "restarting");
    let mut restarted = false;
    update::wait(agent, region, limit, "coming back", |now| {
        restarted |= update::reset_seen(before, now);
        if !restarted {
            return Ok(Some("it has not restarted yet".into()));
        }
        let missing = update::missing(now, want);
        match &missing {
            Some(m) => bar.set_message(format!("back: {}", short(m))),
            None => note(bar, format!("back after {:.0} s", started.elapsed().as_secs_f64())),
        }
        Ok(missing)
    })
}

fn short(s: &str) -> String {
    s.chars().take(34).collect()
}

// ---- flash ----

#[derive(Debug, Serialize)]
struct FlashResult {
    agent: String,
    pci: String,
    ok: bool,
    /// The slot written (A or B).
    slot: Option<String>,
    version: Option<String>,
    bytes: Option<u64>,
    /// Seconds from the first byte sent to OK.
    write_seconds: Option<f64>,
    reset: bool,
    /// The boot block once it came back.
    boot: Option<BootInfo>,
    error: Option<String>,
}

impl FlashResult {
    /// Nothing done yet for this agent.
    fn new(agent: &str, pci: &str) -> FlashResult {
        FlashResult {
            agent: agent.to_string(),
            pci: pci.to_string(),
            ok: false,
            slot: None,
            version: None,
            bytes: None,
            write_seconds: None,
            reset: false,
            boot: None,
            error: None,
        }
    }
}

pub fn flash(paths: &Paths, args: &[String], no_reset: bool, limits: Limits, json: bool) -> Result<(), Error> {
    let (names, image) = args.split_at(args.len() - 1);
    let image = update::read_image(Path::new(&image[0]))?;
    let found = discover(paths)?;
    let chosen = agents::select(&found, names)?;
    // Every address first: a usage error before any agent is touched.
    let targets = chosen.iter().map(|a| Ok((*a, address(paths, a, &limits)?))).collect::<Result<Vec<_>, Error>>()?;
    let multi = MultiProgress::new();
    if json {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let results: Vec<FlashResult> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .map(|&(agent, addr)| {
                let bar = bar(&multi, json, agent.name());
                let image = &image;
                s.spawn(move || {
                    let mut r = FlashResult::new(agent.name(), &agent.pci);
                    if let Err(e) = flash_one(agent, addr, image, no_reset, &limits, &bar, &mut r) {
                        r.error = Some(e.to_string());
                        bar.abandon_with_message(format!("failed: {}", short(&e.to_string())));
                    } else {
                        r.ok = true;
                        bar.finish();
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| FlashResult {
                    error: Some("internal error: the agent's thread panicked".into()),
                    ..FlashResult::new("?", "?")
                })
            })
            .collect()
    });
    let failed = results.iter().filter(|r| !r.ok).count();
    if json {
        let doc = json!({ "image": image.path.display().to_string(), "version": image.version, "agents": results });
        emit(&serde_json::to_string_pretty(&doc).map_err(|e| Error::Agent(e.to_string()))?);
    } else {
        let dash = || "-".to_string();
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    r.agent.clone(),
                    if r.ok { "ok".into() } else { "FAILED".into() },
                    r.slot.clone().unwrap_or_else(dash),
                    r.version.clone().unwrap_or_else(dash),
                    r.bytes.map_or_else(dash, |b| b.to_string()),
                    r.write_seconds.map_or_else(dash, |s| format!("{s:.1}")),
                    r.boot.as_ref().map_or_else(
                        || if r.reset || !r.ok { dash() } else { "at next reset".into() },
                        |b| format!("{}{}", b.summary(), if b.confirmed { ",confirmed" } else { "" }),
                    ),
                    r.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let columns = [
            ("AGENT", Align::Left),
            ("RESULT", Align::Left),
            ("SLOT", Align::Left),
            ("VERSION", Align::Left),
            ("BYTES", Align::Right),
            ("WRITE-S", Align::Right),
            ("RUNNING", Align::Left),
            ("ERROR", Align::Left),
        ];
        emit(render(&columns, &rows).trim_end());
    }
    if failed > 0 {
        return Err(Error::Reported(format!("flash: {failed} of {} agent(s) failed", results.len())));
    }
    Ok(())
}

fn flash_one(
    agent: &Agent,
    addr: Ipv4Addr,
    image: &ImageInfo,
    no_reset: bool,
    limits: &Limits,
    bar: &ProgressBar,
    r: &mut FlashResult,
) -> Result<(), Error> {
    let dev = netdev(agent)?;
    let region = open_region(agent)?;
    note(bar, "connecting");
    let mut conn = Connection::open(dev, addr, limits.transfer)?;
    let started = Instant::now();
    let len = u32::try_from(image.bytes.len())
        .map_err(|_| Error::Usage(format!("{}: larger than 4 GiB", image.path.display())))?;
    let line = control::request_line(&Request::Flash { len })?;
    // The image goes out on its own thread while this one reads the agent's PROGRESS lines: an agent
    // that refuses early answers before it has read everything.
    let mut writer = conn.writer()?;
    let answer = std::thread::scope(|s| {
        let sender = s.spawn(move || writer.write_all(&line).and_then(|_| writer.write_all(&image.bytes)));
        let answer = conn.finish(|phase, done, total| show_progress(bar, phase, done, total));
        if answer.is_err() {
            conn.shutdown();
        }
        let sent = sender.join();
        match (answer, sent) {
            (Ok(pairs), Ok(Ok(()))) => Ok(pairs),
            (Ok(_), Ok(Err(e))) => Err(Error::Agent(format!("{dev}: sending the image: {e}"))),
            (Err(e), _) => Err(e),
            (Ok(_), Err(_)) => Err(Error::Agent(format!("{dev}: the sending thread panicked"))),
        }
    })?;
    r.write_seconds = Some(started.elapsed().as_secs_f64());
    let slot = control::get(&answer, "slot").unwrap_or("").to_string();
    if slot != "A" && slot != "B" {
        return Err(Error::Agent(format!("{dev}: the agent's OK names no slot A or B: {answer:?}")));
    }
    let version = control::get(&answer, "version").map(str::to_string);
    if version.as_deref() != Some(image.version.as_str()) {
        return Err(Error::Agent(format!(
            "{dev}: the agent wrote version {}, the image is {}",
            version.as_deref().unwrap_or("(none)"),
            image.version
        )));
    }
    r.slot = Some(slot.clone());
    r.version = version;
    r.bytes = control::get(&answer, "bytes").and_then(|b| b.parse().ok());
    if no_reset {
        note(bar, format!("slot {slot} written, on trial at next reset"));
        return Ok(());
    }
    let before = update::snapshot(&region)?;
    note(bar, "reset");
    Connection::request(dev, addr, &Request::Reset, limits.transfer)?;
    r.reset = true;
    let want = Want { version: Some(image.version.clone()), source: Some("flash"), slot: Some(slot), confirmed: true };
    let back = come_back(agent, &region, &before, &want, limits.come_back, bar)?;
    r.boot = Some(back.boot);
    Ok(())
}

// ---- boot ----

#[derive(Debug, Serialize)]
struct BootResult {
    agent: String,
    pci: String,
    via: &'static str,
    image: String,
    version: String,
    /// Netboot: the file the agent fetched and from where.
    tftp_file: Option<String>,
    server: Option<String>,
    seconds: f64,
    boot: BootInfo,
}

fn report_boot(r: &BootResult, json: bool) -> Result<(), Error> {
    if json {
        emit(&serde_json::to_string_pretty(r).map_err(|e| Error::Agent(e.to_string()))?);
    } else {
        emit(&format!(
            "{}: running {} from {} ({}), up {} s, {:.1} s in all",
            r.agent,
            r.boot.version.as_deref().unwrap_or("?"),
            r.boot.summary(),
            r.via,
            r.boot.uptime_s,
            r.seconds
        ));
    }
    Ok(())
}

pub fn netboot(
    paths: &Paths,
    name: &str,
    image_path: &Path,
    tftp_root: &Path,
    limits: Limits,
    json: bool,
) -> Result<(), Error> {
    let image = update::read_image(image_path)?;
    let found = discover(paths)?;
    let agent = one_agent(&found, name)?;
    let dev = netdev(agent)?;
    let addr = address(paths, agent, &limits)?;
    let region = open_region(agent)?;
    let file = update::stage_tftp(tftp_root, image_path)?;
    let server = control::host_address(dev, addr)?;
    let started = Instant::now();
    let multi = MultiProgress::new();
    let bar = bar(&multi, json, agent.name());
    let before = update::snapshot(&region)?;
    let request = Request::Netboot { server: server.octets(), filename: &file };
    let line = control::request_line(&request)?;
    note(&bar, "asking the agent to fetch");
    let mut conn = Connection::open(dev, addr, limits.transfer)?;
    conn.send(&line)?;
    let answer = conn.finish(|phase, done, total| show_progress(&bar, phase, done, total)).inspect_err(|_| {
        bar.abandon();
    })?;
    if let Some(v) = control::get(&answer, "version") {
        if v != image.version {
            bar.abandon();
            return Err(Error::Agent(format!("{dev}: the agent fetched version {v}, the image is {}", image.version)));
        }
    }
    let want = Want { version: Some(image.version.clone()), source: Some("netboot"), ..Want::default() };
    let back = come_back(agent, &region, &before, &want, limits.come_back, &bar).inspect_err(|_| bar.abandon())?;
    bar.finish_and_clear();
    report_boot(
        &BootResult {
            agent: agent.name().to_string(),
            pci: agent.pci.clone(),
            via: "netboot",
            image: image.path.display().to_string(),
            version: image.version.clone(),
            tftp_file: Some(file),
            server: Some(server.to_string()),
            seconds: started.elapsed().as_secs_f64(),
            boot: back.boot,
        },
        json,
    )
}

pub fn boot_via_bar(paths: &Paths, name: &str, image_path: &Path, limits: Limits, json: bool) -> Result<(), Error> {
    let image = update::read_image(image_path)?;
    let found = discover(paths)?;
    let agent = one_agent(&found, name)?;
    let region = open_region(agent)?;
    let started = Instant::now();
    let multi = MultiProgress::new();
    let bar = bar(&multi, json, agent.name());
    let result = (|| {
        let entered = update::snapshot(&region)?;
        let recovery = if entered.agent_state == update::STATE_RECOVERY {
            entered
        } else {
            note(&bar, "entering recovery");
            update::control(agent, "recover")?;
            update::wait(agent, &region, limits.come_back, "entering recovery", |s| {
                Ok((s.agent_state != update::STATE_RECOVERY
                    || !matches!(s.boot.stage.as_str(), "recovery-waiting" | "recovery-refused"))
                .then(|| format!("agent state {} stage {}", s.agent_state, s.boot.stage)))
            })?
        };
        let capacity = recovery.boot.recovery_capacity as usize;
        if image.bytes.len() > capacity {
            return Err(Error::Agent(format!(
                "{}: the image is {} bytes, the agent's recovery area holds {capacity}",
                agent.name(),
                image.bytes.len()
            )));
        }
        note(&bar, "writing the recovery area");
        bar.set_length(image.bytes.len() as u64);
        update::write_recovery(agent, &image.bytes, |done| bar.set_position(done))?;
        let refused_before = recovery.boot.recovery_error.clone();
        note(&bar, "starting");
        update::control(agent, &format!("boot {}", image.bytes.len()))?;
        let want = Want { version: Some(image.version.clone()), source: Some("recovery"), ..Want::default() };
        update::wait(agent, &region, limits.come_back, "starting the image", |s| {
            if s.agent_state == update::STATE_RECOVERY && s.boot.stage == "recovery-refused" {
                // A refusal of this image: the stage says so with a reason other than an earlier one's.
                if recovery.boot.stage != "recovery-refused" || s.boot.recovery_error != refused_before {
                    return Err(Error::Agent(format!(
                        "{}: the agent refused the image: {} (it stays in recovery: boot another image, or \
                         `bpctl reset --hard`)",
                        agent.name(),
                        s.boot.recovery_error.as_deref().unwrap_or("no reason given")
                    )));
                }
            }
            Ok(update::missing(s, &want))
        })
    })();
    let back = result.inspect_err(|_| bar.abandon())?;
    bar.finish_and_clear();
    report_boot(
        &BootResult {
            agent: agent.name().to_string(),
            pci: agent.pci.clone(),
            via: "recovery through the BAR",
            image: image.path.display().to_string(),
            version: image.version.clone(),
            tftp_file: None,
            server: None,
            seconds: started.elapsed().as_secs_f64(),
            boot: back.boot,
        },
        json,
    )
}

// ---- reset ----

pub fn reset(paths: &Paths, name: &str, hard: bool, wait: bool, limits: Limits, json: bool) -> Result<(), Error> {
    let found = discover(paths)?;
    let agent = one_agent(&found, name)?;
    let region = open_region(agent)?;
    let before = update::snapshot(&region)?;
    let started = Instant::now();
    let mut how = "bpnet_control";
    let mut note = None;
    let carrier = agents::link(agent).is_some_and(|l| l.carrier);
    if !hard && !carrier {
        note = Some(format!("{}: no carrier (no network to the agent); reset through bpnet_control", agent.name()));
    } else if !hard {
        let tcp = netdev(agent).and_then(|dev| {
            let addr = address(paths, agent, &limits)?;
            Connection::request(dev, addr, &Request::Reset, limits.transfer.min(Duration::from_secs(30)))
        });
        match tcp {
            Ok(_) => how = "control service",
            Err(e) => note = Some(format!("{e}; reset through bpnet_control instead")),
        }
    }
    if let Some(n) = &note {
        eprintln!("bpctl: {n}");
    }
    if how == "bpnet_control" {
        update::control(agent, "reset")?;
    }
    let mut back = None;
    if wait {
        let mut restarted = false;
        let s = update::wait(agent, &region, limits.come_back, "coming back after the reset", |now| {
            restarted |= update::reset_seen(&before, now);
            Ok(if !restarted {
                Some("it has not restarted yet".into())
            } else if now.agent_state == 1 || now.agent_state == update::STATE_RUNNING {
                None
            } else {
                Some(format!("agent state {} stage {}", now.agent_state, now.boot.stage))
            })
        })?;
        back = Some(s.boot);
    }
    if json {
        emit(
            &serde_json::to_string_pretty(&json!({
                "agent": agent.name(),
                "pci": agent.pci,
                "via": how,
                "note": note,
                "waited": wait,
                "seconds": started.elapsed().as_secs_f64(),
                "boot": back,
            }))
            .map_err(|e| Error::Agent(e.to_string()))?,
        );
    } else {
        match &back {
            Some(b) => emit(&format!(
                "{}: reset through the {how}; back after {:.1} s running {} from {}",
                agent.name(),
                started.elapsed().as_secs_f64(),
                b.version.as_deref().unwrap_or("?"),
                b.summary()
            )),
            None => emit(&format!("{}: reset requested through the {how}", agent.name())),
        }
    }
    Ok(())
}
