//! `bpctl`: bpnet's operator tool. See `bpctl --help`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bpctl::agents::{self, Agent, Paths};
use bpctl::list::{agent_errors, list_entry, module_view, Source};
use bpctl::logs::{self, Decoder, Framer, Line, RingSource};
use bpctl::region::{self, Region};
use bpctl::table::{render, Align};
use bpctl::{bench, ethtool, Error};

mod ops;
use bpnet_contract::shared;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;

const AGENT_NAMES: &str = "An agent is named by its netdev (bp0), its PCI address (0000:00:10.0 or 00:10.0), \
its index in PCI address order (0), or `all`.";

#[derive(Parser)]
#[command(
    name = "bpctl",
    version,
    about = "bpnet's operator tool: the agent boards behind bpnet.ko (one netdev bpN per agent)",
    long_about = "bpnet's operator tool: the agent boards behind bpnet.ko (one netdev bpN per agent).\n\n\
Agents are the PCI functions bound to the bpnet driver, in PCI address order. Reading an agent's \
shared region (header, counters, log) maps its BAR through sysfs and needs root.",
    after_help = AGENT_NAMES
)]
struct Cli {
    /// Print one JSON document on stdout and nothing else (logs --follow: one JSON object per line)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every agent: PCI address, netdev, link, agent state, firmware, boot source, version, IP, uptime, counters, bus
    #[command(long_about = "Every agent: PCI address, netdev, carrier, the agent's state and firmware version \
from its BAR header; from its boot block how it started (BOOT: direct, flash/A, flash/B, netboot, recovery), \
whether it runs on trial and has confirmed, the running image's VERSION and its UPTIME in seconds; its IPv4 \
address as the host's neighbour table knows it (`-` when it has none: the agent's address plan is not \
visible to the host), and the agent's frame and error counters (from its BAR; ERRORS sums its DMA errors \
and refused descriptors, indexes and host configurations); BUS is the bus personality from the PCI IDs \
(mpc834x: an MPC834x board in agent mode, as in a real chassis; ivshmem: the virtual backplane's \
ivshmem-doorbell device). --json adds both flash slots and the recovery \
area. An agent in recovery shows STATE recovery. When the kernel refuses to \
map an agent's BAR (CONFIG_IO_STRICT_DEVMEM while bpnet.ko holds it; boot with iomem=relaxed), the \
firmware version and counters come from the module (ethtool -i / -S) and STATE is `-`.")]
    List,
    /// An agent's defmt log, read from its log ring through the BAR (works with its network down)
    #[command(after_help = "The defmt format strings are in the firmware ELF, not in the ring: --elf PATH, \
else the .elf beside --image PATH (bpnet-firmware.bin -> bpnet-firmware.elf), else \
/lib/firmware/bpnet/bpnet-firmware.elf. Without an ELF only the frames are counted.\n\n\
Lost bytes (the agent wrote faster than the ring was read) and reboots are reported in parentheses.\n\n\
--dump FILE decodes a health dump of bpnet.ko's `agent` reporter instead of a live ring: save it with \
`devlink -j health dump show pci/<address> reporter agent > FILE`; the fault record it holds is printed \
first, then the log ring's tail as the module read it.")]
    Logs {
        /// The agent (bp0, 0000:00:10.0, 0)
        #[arg(required_unless_present = "dump")]
        agent: Option<String>,
        /// Decode a saved devlink health dump (JSON) instead of the agent's live ring
        #[arg(long, value_name = "FILE", conflicts_with_all = ["agent", "follow"])]
        dump: Option<PathBuf>,
        /// Keep printing new lines until interrupted
        #[arg(short, long)]
        follow: bool,
        /// The firmware ELF the agent runs (for its defmt table)
        #[arg(long, value_name = "PATH")]
        elf: Option<PathBuf>,
        /// The image the agent was loaded with; its .elf beside it is used
        #[arg(long, value_name = "PATH", conflicts_with = "elf")]
        image: Option<PathBuf>,
        /// Milliseconds between reads of the ring with --follow
        #[arg(long, default_value_t = 200, value_name = "MS")]
        interval: u64,
    },
    /// TCP throughput to (discard, port 9) and from (sized bulk send, port 5019) each agent in turn
    #[command(after_help = "Every byte received is checked against the services' pattern. The agent's address \
is its neighbour entry on its netdev (ping it once, or pass --addr). NOTIFY/PKT is the module's doorbells \
plus interrupts over its frames both ways during the run (ethtool -S before and after).")]
    Bench {
        /// The agents (bp0 bp1, 0 1, all)
        #[arg(required = true)]
        agents: Vec<String>,
        /// Bytes each way
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
        /// The agents' IPv4 address, when the neighbour table has none (the connection is bound to the
        /// agent's netdev, so one address serves every agent)
        #[arg(long)]
        addr: Option<Ipv4Addr>,
        /// Seconds each transfer may take
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Write a signed image into agents' inactive flash slot (in parallel), reset them, and wait for
    /// each to come back on the new version, confirmed
    #[command(after_help = "Each agent receives the image over its control service (TCP port 5020, through \
its netdev), verifies it (nothing is erased for a bad image), writes its inactive slot, reads it back and \
marks it on trial. Then bpctl sends RESET and waits until the agent runs the image's version from that \
slot and has confirmed it (the firmware confirms once the host's link is up: keep the netdevs up). \
One progress bar per agent; a summary table at the end.\n\n\
Exit status: 0 every agent done; 1 an agent refused the image, failed, or did not come back in time; \
2 bad arguments (an unknown agent, a file that is not a bpnet image).")]
    Flash {
        /// The agents (bp0 bp1, 0 1, all), then the image
        #[arg(required = true, num_args = 2.., value_names = ["AGENT", "IMAGE"])]
        args: Vec<String>,
        /// Write the slot only: the new image starts at the agent's next reset
        #[arg(long)]
        no_reset: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Start an image on an agent without flashing it: netboot (TFTP), or --via-bar through the BAR
    #[command(after_help = "Netboot (default): the image is copied under the TFTP root (--tftp-root, default \
/srv/tftp; a TFTP server such as tftpd-hpa must serve it), and the agent is asked over its control service \
to fetch it from the host's IPv4 address on its link, verify and start it. bpctl waits for it to run the \
image's version with boot source netboot.\n\n\
--via-bar needs no network: bpctl asks the agent to enter recovery (bpnet_control \"recover\"), waits for \
agent state RECOVERY, writes the image into its recovery area (bpnet_recovery), asks it to boot it \
(\"boot <len>\") and waits for it to run the image's version with boot source recovery. A refused image \
is reported with the agent's reason.\n\n\
Exit status: 0 the agent runs the image; 1 it refused, failed or did not come back in time; 2 bad arguments.")]
    Boot {
        /// The agent (bp0, 0000:00:10.0, 0)
        agent: String,
        /// The signed image
        image: PathBuf,
        /// Through the BAR (recovery), not the network
        #[arg(long)]
        via_bar: bool,
        /// Where the TFTP server serves files from
        #[arg(long, value_name = "DIR", default_value = "/srv/tftp", conflicts_with = "via_bar")]
        tftp_root: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Reset an agent: over its control service, or through the BAR (--hard, or when it has no network)
    #[command(after_help = "Without --hard bpctl sends RESET to the agent's control service; when the agent \
cannot be reached over its network (no netdev, no address, no connection) or with --hard, it writes \
\"reset\" to the module's bpnet_control, which the agent's firmware or boot stage acts on through the BAR. \
Then it waits until the agent has restarted and is ready again (--no-wait: it does not).\n\n\
Exit status: 0 reset (and back); 1 the reset failed or the agent did not come back in time; 2 bad arguments.")]
    Reset {
        /// The agent (bp0, 0000:00:10.0, 0)
        agent: String,
        /// Through the BAR (bpnet_control), not the network
        #[arg(long)]
        hard: bool,
        /// Return once the request is sent
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// How an agent is reached and how long to wait for it.
#[derive(clap::Args, Clone, Copy)]
struct NetArgs {
    /// The agents' IPv4 address when the neighbour table has none (connections are bound to each
    /// agent's netdev, so one address serves every agent)
    #[arg(long)]
    addr: Option<Ipv4Addr>,
    /// Seconds a transfer, a flash write or a fetch may take
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Seconds an agent may take to come back after a reset or boot
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    boot_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::List => list(&Paths::system(), json),
        Command::Logs { dump: Some(file), elf, image, .. } => logs_dump(&file, elf.as_deref(), image.as_deref(), json),
        Command::Logs { agent, follow, elf, image, interval, .. } => logs(
            &Paths::system(),
            agent.as_deref().unwrap_or_default(),
            follow,
            elf.as_deref(),
            image.as_deref(),
            interval,
            json,
        ),
        Command::Bench { agents, bytes, addr, timeout } => {
            bench(&Paths::system(), &agents, bytes, addr, Duration::from_secs(timeout), json)
        }
        Command::Flash { args, no_reset, net } => ops::flash(&Paths::system(), &args, no_reset, net.into(), json),
        Command::Boot { agent, image, via_bar: false, tftp_root, net } => {
            ops::netboot(&Paths::system(), &agent, &image, &tftp_root, net.into(), json)
        }
        Command::Boot { agent, image, via_bar: true, net, .. } => {
            ops::boot_via_bar(&Paths::system(), &agent, &image, net.into(), json)
        }
        Command::Reset { agent, hard, no_wait, net } => {
            ops::reset(&Paths::system(), &agent, hard, !no_wait, net.into(), json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Already in the output (a summary with each agent's outcome): only the exit status.
        Err(Error::Reported(e)) => {
            eprintln!("bpctl: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            if json {
                emit(&json!({ "error": e.to_string() }).to_string());
            }
            eprintln!("bpctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

impl From<NetArgs> for ops::Limits {
    fn from(n: NetArgs) -> Self {
        ops::Limits {
            addr: n.addr,
            transfer: Duration::from_secs(n.timeout.max(1)),
            come_back: Duration::from_secs(n.boot_timeout.max(1)),
        }
    }
}

/// One line on stdout; a closed pipe (`bpctl logs -f | head`) ends the program quietly.
pub(crate) fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

pub(crate) fn discover(paths: &Paths) -> Result<Vec<Agent>, Error> {
    let found = agents::discover(paths)?;
    if found.is_empty() {
        return Err(Error::NoAgents);
    }
    Ok(found)
}

fn list(paths: &Paths, json: bool) -> Result<(), Error> {
    let found = discover(paths)?;
    let entries = found.iter().map(|a| list_entry(paths, a, module_view)).collect::<Result<Vec<_>, _>>()?;
    if json {
        emit(&serde_json::to_string_pretty(&entries).map_err(|e| Error::Agent(e.to_string()))?);
        return Ok(());
    }
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let counter = |name: &str| {
                e.counters
                    .as_ref()
                    .and_then(|c| c.get(name))
                    .and_then(|v| v.as_u64())
                    .map_or_else(dash, |v| v.to_string())
            };
            vec![
                e.index.to_string(),
                e.netdev.clone().unwrap_or_else(dash),
                e.pci.clone(),
                e.link.as_ref().map_or_else(dash, |l| {
                    if l.carrier {
                        "up".into()
                    } else {
                        format!("down ({})", l.operstate)
                    }
                }),
                match &e.heartbeat {
                    Some(h) if h.unresponsive => format!("unresponsive ({} s since last beat)", h.since_beat_s),
                    _ => e.agent_state.clone().unwrap_or_else(dash),
                },
                e.firmware_version.clone().unwrap_or_else(dash),
                e.boot.as_ref().map_or_else(dash, |b| b.summary()),
                e.boot.as_ref().map_or_else(dash, |b| yes_no(b.trial)),
                e.boot.as_ref().map_or_else(dash, |b| yes_no(b.confirmed)),
                e.boot.as_ref().and_then(|b| b.version.clone()).unwrap_or_else(dash),
                e.ip.clone().unwrap_or_else(dash),
                e.uptime_s.map_or_else(dash, |s| s.to_string()),
                counter("tx_frames"),
                counter("rx_frames"),
                e.counters.as_ref().map_or_else(dash, |c| agent_errors(c).to_string()),
                e.personality.map_or_else(dash, |p| p.name().to_string()),
            ]
        })
        .collect();
    let columns = [
        ("#", Align::Right),
        ("AGENT", Align::Left),
        ("PCI", Align::Left),
        ("LINK", Align::Left),
        ("STATE", Align::Left),
        ("FIRMWARE", Align::Left),
        ("BOOT", Align::Left),
        ("TRIAL", Align::Left),
        ("CONFIRMED", Align::Left),
        ("VERSION", Align::Left),
        ("IP", Align::Left),
        ("UPTIME", Align::Right),
        ("TX-FRAMES", Align::Right),
        ("RX-FRAMES", Align::Right),
        ("ERRORS", Align::Right),
        ("BUS", Align::Left),
    ];
    emit(render(&columns, &rows).trim_end());
    // Why an agent's BAR could not be read, on stderr so the table stays a table.
    for e in &entries {
        if let Some(why) = &e.header_error {
            let shown = match e.source {
                Some(Source::Ethtool) => "firmware version and counters from the module (ethtool)",
                _ => "no firmware version or counters",
            };
            eprintln!("bpctl: {}: {why}; {shown}", e.netdev.as_deref().unwrap_or(&e.pci));
        }
    }
    Ok(())
}

pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

pub(crate) fn one_agent<'a>(found: &'a [Agent], name: &str) -> Result<&'a Agent, Error> {
    let chosen = agents::select(found, &[name.to_string()])?;
    match chosen.as_slice() {
        [one] => Ok(one),
        _ => Err(Error::Usage(format!("`{name}` names {} agents; this command takes one", chosen.len()))),
    }
}

#[allow(clippy::too_many_arguments)]
/// `bpctl logs --dump FILE`: a saved health dump's fault record and log tail, decoded with the ELF.
fn logs_dump(file: &Path, elf: Option<&Path>, image: Option<&Path>, json: bool) -> Result<(), Error> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io(format!("reading {}", file.display()), e))?;
    let dump = bpctl::dump::parse(&text)?;
    let elf = logs::find_elf(elf, image, Path::new(logs::DEFAULT_ELF))?;
    let decoder = elf.as_deref().map(Decoder::from_elf).transpose()?;
    let mut lines = Vec::new();
    if let Some(chunk) = &dump.log {
        let mut framer = Framer::default();
        let (notices, frames) = framer.feed(chunk);
        lines.extend(notices);
        match &decoder {
            Some(d) => lines.extend(d.decode(&frames)),
            None => lines.push(Line::Notice {
                text: format!(
                    "{} bytes in {} defmt frames, not decoded: pass --elf PATH (the firmware ELF)",
                    frames.len(),
                    logs::count_frames(&frames)
                ),
            }),
        }
    }
    if json {
        emit(
            &json!({ "fault": dump.fault, "head": dump.head, "generation": dump.generation, "lines": lines })
                .to_string(),
        );
        return Ok(());
    }
    match &dump.fault {
        Some(f) => emit(&f.to_string()),
        None => emit("no fault record in the dump"),
    }
    for line in &lines {
        emit(&line.to_string());
    }
    Ok(())
}

fn logs(
    paths: &Paths,
    name: &str,
    follow: bool,
    elf: Option<&Path>,
    image: Option<&Path>,
    interval: u64,
    json: bool,
) -> Result<(), Error> {
    let found = discover(paths)?;
    let agent = one_agent(&found, name)?;
    let elf = logs::find_elf(elf, image, Path::new(logs::DEFAULT_ELF))?;
    let decoder = elf.as_deref().map(Decoder::from_elf).transpose()?;
    let region = Region::open(&agent.shared_resource()?)?;
    // The ring is where the header says; before the agent wrote a valid header (or while it resets)
    // it is at the contract's fixed offset.
    let offset = region::read_header(&region).map(|h| h.log_ring_offset as usize).unwrap_or(shared::LOG_RING_OFFSET);
    if decoder.is_none() {
        eprintln!(
            "bpctl: no firmware ELF (--elf PATH, --image PATH, or {}): the log's frames are counted, not decoded",
            logs::DEFAULT_ELF
        );
    }
    let mut source = RingSource::new(offset, logs::MAX_FRAME_IN_FLIGHT);
    let mut framer = Framer::default();
    let (mut raw_bytes, mut raw_frames) = (0u64, 0usize);
    let mut all: Vec<Line> = Vec::new();
    let mut last_error: Option<String> = None;
    loop {
        let mut lines = Vec::new();
        match source.poll(&region) {
            Ok(chunk) => {
                last_error = None;
                let (notices, frames) = framer.feed(&chunk);
                lines.extend(notices);
                match &decoder {
                    Some(d) => lines.extend(d.decode(&frames)),
                    None => {
                        raw_bytes += frames.len() as u64;
                        raw_frames += logs::count_frames(&frames);
                        if follow && !frames.is_empty() {
                            lines.push(Line::Notice {
                                text: format!("{} bytes, {} frames", frames.len(), logs::count_frames(&frames)),
                            });
                        }
                    }
                }
            }
            // While following, a ring not (yet) initialised is a rebooting agent: wait for it.
            Err(e) if follow => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    lines.push(Line::Notice { text: text.clone() });
                    last_error = Some(text);
                }
            }
            Err(e) => return Err(e),
        }
        if follow {
            for line in &lines {
                emit(&if json { json!({ "agent": agent.name(), "line": line }).to_string() } else { line.to_string() });
            }
            std::thread::sleep(Duration::from_millis(interval.max(10)));
            continue;
        }
        all.extend(lines);
        break;
    }
    if json {
        let doc = json!({
            "agent": agent.name(),
            "pci": agent.pci,
            "elf": elf.as_ref().map(|p| p.display().to_string()),
            "lines": all,
            "undecoded_bytes": raw_bytes,
            "undecoded_frames": raw_frames,
        });
        emit(&doc.to_string());
        return Ok(());
    }
    for line in &all {
        emit(&line.to_string());
    }
    if decoder.is_none() {
        emit(&format!(
            "{raw_bytes} bytes in {raw_frames} defmt frames in {}'s log ring, not decoded: pass --elf PATH (the firmware ELF)",
            agent.name()
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct BenchEntry {
    agent: String,
    pci: String,
    addr: String,
    bytes: u64,
    tx_seconds: f64,
    tx_mbit_per_s: f64,
    rx_seconds: f64,
    rx_mbit_per_s: f64,
    notifications: u64,
    packets: u64,
    notifications_per_packet: Option<f64>,
}

/// doorbells + interrupts, tx_frames + rx_frames: the module's counters (not the agent_* ones).
fn notifications_and_packets(stats: &[(String, u64)], dev: &str) -> Result<(u64, u64), Error> {
    let get = |n: &str| {
        ethtool::get(stats, n).ok_or_else(|| Error::Agent(format!("{dev}: ethtool -S has no `{n}` (not bpnet?)")))
    };
    Ok((get("doorbells")? + get("interrupts")?, get("tx_frames")? + get("rx_frames")?))
}

fn progress(json: bool, bytes: u64, what: String) -> ProgressBar {
    let bar = ProgressBar::new(bytes);
    if json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

fn bench(
    paths: &Paths,
    names: &[String],
    bytes: u64,
    addr: Option<Ipv4Addr>,
    limit: Duration,
    json: bool,
) -> Result<(), Error> {
    if bytes == 0 {
        return Err(Error::Usage("--bytes must be at least 1".into()));
    }
    let found = discover(paths)?;
    let chosen = agents::select(&found, names)?;
    let mut results = Vec::new();
    for agent in chosen {
        let dev = agent
            .netdev
            .as_deref()
            .ok_or_else(|| Error::Agent(format!("{}: no netdev (has bpnet finished probing it?)", agent.pci)))?;
        let target = match addr.or_else(|| agents::neighbour(paths, dev)) {
            Some(a) => a,
            None => {
                return Err(Error::Usage(format!(
                    "{dev}: the agent's address is unknown (no neighbour entry on {dev}): ping it once through \
                     {dev}, or pass --addr"
                )))
            }
        };
        let (n0, p0) = notifications_and_packets(&ethtool::stats(dev)?, dev)?;
        let bar = progress(json, bytes, format!("{dev} host -> agent"));
        let tx = bench::send(dev, target, bytes, limit, &bar);
        bar.finish_and_clear();
        let tx = tx?;
        let bar = progress(json, bytes, format!("{dev} agent -> host"));
        let rx = bench::recv(dev, target, bytes, limit, &bar);
        bar.finish_and_clear();
        let rx = rx?;
        let (n1, p1) = notifications_and_packets(&ethtool::stats(dev)?, dev)?;
        let (notifications, packets) = (n1.wrapping_sub(n0), p1.wrapping_sub(p0));
        results.push(BenchEntry {
            agent: dev.to_string(),
            pci: agent.pci.clone(),
            addr: target.to_string(),
            bytes,
            tx_seconds: tx.seconds,
            tx_mbit_per_s: tx.mbit_per_s(),
            rx_seconds: rx.seconds,
            rx_mbit_per_s: rx.mbit_per_s(),
            notifications,
            packets,
            notifications_per_packet: (packets > 0).then(|| notifications as f64 / packets as f64),
        });
    }
    if json {
        emit(&serde_json::to_string_pretty(&results).map_err(|e| Error::Agent(e.to_string()))?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.agent.clone(),
                r.addr.clone(),
                r.bytes.to_string(),
                format!("{:.2}", r.tx_mbit_per_s),
                format!("{:.2}", r.rx_mbit_per_s),
                r.notifications.to_string(),
                r.packets.to_string(),
                r.notifications_per_packet.map_or_else(|| "-".into(), |v| format!("{v:.4}")),
            ]
        })
        .collect();
    let columns = [
        ("AGENT", Align::Left),
        ("ADDR", Align::Left),
        ("BYTES", Align::Right),
        ("TX-MBIT/S", Align::Right),
        ("RX-MBIT/S", Align::Right),
        ("NOTIFY", Align::Right),
        ("PACKETS", Align::Right),
        ("NOTIFY/PKT", Align::Right),
    ];
    emit(render(&columns, &rows).trim_end());
    Ok(())
}
