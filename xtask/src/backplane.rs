//! `cargo xtask backplane`: the virtual backplane end to end. A Linux guest (Debian's kernel in
//! qemu-system-x86_64, TCG) with its RAM in a shared file and one ivshmem-doorbell device per agent;
//! one board emulator per agent as that device's ivshmem server (`bpnet-emu --ivshmem-server`), whose
//! DMA reaches the guest's RAM file. The guest runs a test suite from its initramfs
//! (`tests/backplane/*.sh`, the `bpnet-guest` tool, `bpnet.ko`) and reports on its second serial port,
//! a file parsed here:
//!
//! * `RESULT name pass|fail detail` — one check;
//! * `EXPECT agent N key op value` — a check of agent N's emulator summary (op `=` or `>=`), made here
//!   once the emulators have stopped;
//! * `REQUEST reset-agent N` — reset agent N now (SIGUSR1 to its emulator: the chassis' HRESET);
//! * `END` — the suite is over (the guest then powers off).
//!
//! Every process started is stopped again, on success, failure or error. Artefacts stay under
//! `target/backplane/`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

/// Guest RAM; the agents' outbound window covers exactly this much host RAM.
const GUEST_RAM: u64 = bpnet_contract::HOST_WINDOW_BYTES;
/// The guest's device bus: agent n's ivshmem device is at slot FIRST_SLOT + n, so sysfs order is agent
/// order.
const FIRST_PCI_SLOT: u32 = 0x10;
/// Bytes each agent echoes in the network suites (the issue's 10 MB).
const ECHO_BYTES: u64 = 10 << 20;
/// How long an emulator may take to listen, and to stop after its host left.
const EMULATOR_START: Duration = Duration::from_secs(30);
const EMULATOR_STOP: Duration = Duration::from_secs(10);

/// One boot of the guest.
#[derive(Debug, Clone)]
struct Suite {
    /// Name in reports and of the run directory.
    name: String,
    /// Script in the initramfs (`tests/backplane/<guest>.sh`).
    guest: &'static str,
    agents: u32,
    needs_module: bool,
    bytes: u64,
    timeout: Duration,
    /// The agents run the boot stage from their flash file, slot A provisioned with the signed
    /// firmware image (as a board fresh from production), instead of the firmware ELF loaded directly.
    boot_stage: bool,
    /// Show the guest's `SAY` lines and each check as they come (the demo), not only the report.
    live: bool,
    /// Each agent's flash holds a board identity record (serial 1001 + n, slot n), so agent n takes
    /// 10.83.n.2 and MACs of its own, as boards in a chassis do; otherwise every agent is 10.83.49.2.
    identities: bool,
}

fn suites(agents: Option<u32>, bytes: Option<u64>) -> Vec<Suite> {
    let infra = |n: u32| Suite {
        name: format!("infra-{n}"),
        guest: "infra",
        agents: n,
        needs_module: false,
        bytes: 0,
        timeout: Duration::from_secs(120),
        boot_stage: false,
        live: false,
        identities: false,
    };
    let net = |n: u32| Suite {
        name: format!("net-{n}"),
        guest: "net",
        agents: n,
        needs_module: true,
        bytes: bytes.unwrap_or(ECHO_BYTES),
        timeout: Duration::from_secs(420),
        boot_stage: false,
        live: false,
        identities: false,
    };
    // Agent 0 runs the hostile image, agent 1 the normal one (see agent_firmware).
    let hostile = Suite {
        name: "hostile-2".into(),
        guest: "hostile",
        agents: 2,
        needs_module: true,
        bytes: 300 << 10,
        timeout: Duration::from_secs(600),
        boot_stage: false,
        live: false,
        identities: false,
    };
    // bpctl (tests/backplane/bpctl.sh) against two agents.
    let bpctl = Suite {
        name: "bpctl-2".into(),
        guest: "bpctl",
        agents: 2,
        needs_module: true,
        bytes: 2 << 20,
        timeout: Duration::from_secs(420),
        boot_stage: false,
        live: false,
        identities: false,
    };
    // Flashing, netbooting, recovery and reset (tests/backplane/update.sh), two agents in boot-stage
    // mode; the guest serves TFTP.
    let update = Suite {
        name: "update-2".into(),
        guest: "update",
        agents: 2,
        needs_module: true,
        bytes: 0,
        timeout: Duration::from_secs(1200),
        boot_stage: true,
        live: false,
        identities: false,
    };
    match agents {
        Some(n) => vec![infra(n), net(n), hostile, bpctl, update],
        None => vec![infra(4), net(1), net(4), hostile, bpctl, update],
    }
}

/// The image agent `n` of `suite` runs: the hostile suite's agent 0 breaks the contract on purpose.
fn agent_firmware(tools: &Tools, suite: &Suite, n: u32) -> Result<PathBuf> {
    match (suite.guest, n) {
        ("hostile", 0) => firmware::build(Variant::HostileAgent),
        _ => Ok(tools.firmware.clone()),
    }
}

const HELP: &str = "\
cargo xtask backplane [--suite infra|net|hostile|bpctl|update] [--agents N] [--bytes N]

Boots Debian's kernel in qemu-system-x86_64 with one ivshmem-doorbell device per agent, each served
by a board emulator running the firmware, and runs the guest's test suites:
  infra  the devices, the shared region behind BAR2 and the doorbells (no kernel module needed)
  net    bpnet.ko: ping, TCP echo verified byte for byte, MTUs, agent reset, rmmod/insmod under
         traffic, counters, a clean kernel log
  hostile  2 agents, agent 0 running an image that breaks the contract in phases (bad completions,
         indexes, an interrupt storm, a garbage header, a flapping state): bp0 is marked broken each
         time, bp1 keeps carrying traffic, the kernel stays clean (--agents does not apply)
  bpctl  2 agents: `bpctl list` (link, firmware version), `list --json`, `logs` decoded with the
         firmware ELF, `bench` both ways (--agents does not apply)
  update 2 agents started by the boot stage from their flash (slot A = the signed firmware image):
         `bpctl list` boot info, `bpctl flash all` (both come back confirmed on slot B), netboot from
         the guest's TFTP server (in.tftpd), `boot --via-bar` (recovery), `reset` (network and
         --hard), `logs`, a bad image refused while the agent keeps working (--agents does not apply)
Default: infra with 4 agents, net with 1 and with 4, hostile, bpctl, update. Artefacts:
target/backplane/<suite>-<agents>/.";

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--help") {
        println!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let only = util::take_value(&mut args, "--suite")?;
    let agents = util::take_value(&mut args, "--agents")?
        .map(|v| v.parse::<u32>().ok().filter(|n| (1..=20).contains(n)).ok_or(v))
        .transpose()
        .map_err(|v| Error::Usage(format!("--agents: {v} is not 1..20")))?;
    let bytes = util::take_value(&mut args, "--bytes")?
        .map(|v| v.parse::<u64>().map_err(|_| Error::Usage(format!("--bytes: {v} is not a number"))))
        .transpose()?;
    util::no_more(&args)?;
    let mut chosen = suites(agents, bytes);
    if let Some(only) = &only {
        chosen.retain(|s| s.guest == only);
        if chosen.is_empty() {
            return Err(Error::Usage(format!("--suite: no suite `{only}` (infra, net, hostile, bpctl, update)")));
        }
    }
    run_suites(&chosen)
}

/// `cargo xtask test --backplane`: every suite.
pub fn test() -> Result<ExitCode> {
    run_suites(&suites(None, None))
}

fn run_suites(chosen: &[Suite]) -> Result<ExitCode> {
    let started = Instant::now();
    let tools = prepare(chosen.iter().any(|s| s.needs_module), chosen.iter().any(|s| s.boot_stage))?;
    let mut reports = Vec::new();
    for suite in chosen {
        eprintln!("xtask: backplane: {} ({} agent(s))", suite.name, suite.agents);
        let report = run_suite(&tools, suite)?;
        report.print();
        reports.push(report);
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

// ---- the demo ----

/// `cargo xtask demo`: four agents started by the boot stage from their flash, the guest shows them with
/// `bpctl list`, pings each, netboots one, flashes one with progress, shows its log and a summary
/// (tests/backplane/demo.sh), printed as it happens. Every step is also a check: the demo fails if one
/// does.
pub fn demo() -> Result<ExitCode> {
    let suite = Suite {
        name: "demo-4".into(),
        guest: "demo",
        agents: 4,
        needs_module: true,
        bytes: 0,
        timeout: Duration::from_secs(900),
        boot_stage: true,
        live: true,
        identities: true,
    };
    let tools = prepare(true, true)?;
    eprintln!(
        "xtask: demo: starting the guest and {} agents (the guest boots in about a minute under TCG)",
        suite.agents
    );
    let report = run_suite(&tools, &suite)?;
    report.print();
    if report.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Failed(format!("the demo failed; artefacts in {}", report.dir.display())))
    }
}

// ---- the bench suite ----

/// Bytes the bench suite moves each way, per configuration: long enough that connection set-up and the
/// slow start are a small part of the time.
const BENCH_BYTES: u64 = 32 << 20;

/// `cargo xtask bench`: the `bench` guest suite (tests/backplane/bench.sh) on one agent. Every check must
/// pass; returns its figures, the `FIGURE key value` lines of the results channel, in order.
pub fn bench() -> Result<Vec<(String, f64)>> {
    let suite = Suite {
        name: "bench-1".into(),
        guest: "bench",
        agents: 1,
        needs_module: true,
        bytes: BENCH_BYTES,
        timeout: Duration::from_secs(600),
        boot_stage: false,
        live: false,
        identities: false,
    };
    let tools = prepare(true, false)?;
    eprintln!("xtask: backplane: {} ({} agent(s))", suite.name, suite.agents);
    let report = run_suite(&tools, &suite)?;
    if !report.passed() {
        report.print();
        return Err(Error::Failed(format!("backplane suite {} failed", suite.name)));
    }
    eprintln!("xtask: backplane: {}: {} checks passed, {:.0} s", suite.name, report.checks.len(), report.seconds);
    let results = report.dir.join("results.log");
    let text = std::fs::read_to_string(&results).map_err(io(format!("reading {}", results.display())))?;
    parse_figures(&text)
}

/// The `FIGURE key value` lines: a key of word characters and a finite number, or the run is refused.
fn parse_figures(text: &str) -> Result<Vec<(String, f64)>> {
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

// ---- set-up and builds ----

/// What every suite runs.
struct Tools {
    vmlinux: PathBuf,
    emulator: PathBuf,
    firmware: PathBuf,
    /// Initramfs without and with the module.
    initramfs: PathBuf,
    initramfs_module: Option<PathBuf>,
    /// Boot-stage suites: the boot stage's ELF and the signed firmware image slot A is provisioned
    /// with.
    boot: Option<BootStage>,
}

struct BootStage {
    elf: PathBuf,
    image: PathBuf,
}

fn out_dir() -> PathBuf {
    util::root().join("target/backplane")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::Io(what, e)
}

fn prepare(with_module: bool, with_boot_stage: bool) -> Result<Tools> {
    // The backplane's Debian packages are in the set-up's list.
    crate::setup::ensure()?;
    std::fs::create_dir_all(out_dir()).map_err(io("creating target/backplane"))?;
    let version = kernel_version()?;
    let vmlinux = extract_vmlinux(&version)?;
    let firmware = firmware::build(Variant::Release)?;
    let boot = if with_boot_stage {
        let image = firmware::image(&firmware);
        if !image.exists() {
            return Err(Error::Failed(format!("{}: no signed firmware image", image.display())));
        }
        Some(BootStage { elf: firmware::build(Variant::BootStage)?, image })
    } else {
        None
    };
    let emulator = crate::emu::build()?;
    let guest_tool = build_guest_tool()?;
    let module = if with_module { Some(build_module(&version)?) } else { None };
    let initramfs = build_initramfs(&guest_tool, &firmware, None, "initramfs.cpio")?;
    let initramfs_module = match &module {
        Some(ko) => Some(build_initramfs(&guest_tool, &firmware, Some(ko), "initramfs-bpnet.cpio")?),
        None => None,
    };
    Ok(Tools { vmlinux, emulator, firmware, initramfs, initramfs_module, boot })
}

/// The kernel `linux-image-amd64` depends on, e.g. `6.1.0-56-amd64`.
fn kernel_version() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Depends}", "linux-image-amd64"])
        .output()
        .map_err(io("dpkg-query linux-image-amd64"))?;
    let depends = String::from_utf8_lossy(&out.stdout);
    depends
        .split([',', '|'])
        .map(str::trim)
        .find_map(|d| {
            d.strip_prefix("linux-image-").map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::Failed(format!("linux-image-amd64 depends on no kernel image: `{depends}`")))
}

/// The uncompressed kernel (boots in half the time of the bzImage under TCG), cached per version.
fn extract_vmlinux(version: &str) -> Result<PathBuf> {
    let out = out_dir().join(format!("vmlinux-{version}"));
    if out.exists() {
        return Ok(out);
    }
    let image = PathBuf::from(format!("/boot/vmlinuz-{version}"));
    let data = std::fs::read(&image).map_err(io(format!("reading {}", image.display())))?;
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
    let at = data
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or_else(|| Error::Failed(format!("{}: no XZ stream (not an XZ-compressed bzImage)", image.display())))?;
    let tmp = out.with_extension("part");
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?)
        .spawn()
        .map_err(io("starting xz"))?;
    let mut stdin = child.stdin.take().ok_or_else(|| Error::Failed("xz has no stdin".into()))?;
    // The bzImage goes on after the XZ stream; xz stops at the stream's end and may close its input early.
    let _ = std::io::Write::write_all(&mut stdin, &data[at..]);
    drop(stdin);
    let status = child.wait().map_err(io("waiting for xz"))?;
    let elf = std::fs::read(&tmp).map(|d| d.starts_with(b"\x7fELF")).unwrap_or(false);
    if !status.success() || !elf {
        return Err(Error::Failed(format!("extracting vmlinux from {} failed ({status})", image.display())));
    }
    std::fs::rename(&tmp, &out).map_err(io("renaming vmlinux"))?;
    Ok(out)
}

/// The guest's test tool and bpctl: static x86-64 binaries (bpctl beside bpnet-guest).
fn build_guest_tool() -> Result<PathBuf> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    util::run(
        util::host_cargo()
            .args(["build", "--release", "-p", "bpnet-guest", "-p", "bpctl", "-j2", "--target", TARGET])
            .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static"),
        "guest tool build",
    )?;
    Ok(util::root().join("target").join(TARGET).join("release/bpnet-guest"))
}

fn build_module(version: &str) -> Result<PathBuf> {
    let dir = util::root().join("host-driver/bpnet");
    if !dir.join("Makefile").exists() && !dir.join("Kbuild").exists() {
        return Err(Error::Failed(format!("{}: no kernel module to build (no Makefile)", dir.display())));
    }
    // The module's Makefile builds against the running Debian kernel's headers; the guest boots that
    // version (`linux-image-amd64`), so say which. make's lines go to stderr with the other build
    // output: stdout is the command's own (`bench --json` ends it with its JSON object).
    util::run(
        Command::new("make")
            .arg("-C")
            .arg(&dir)
            .arg("-j2")
            .env("BPNET_KERNEL_VERSION", version)
            .stdout(std::io::stderr()),
        "bpnet.ko build (make -C host-driver/bpnet)",
    )?;
    let ko = dir.join("bpnet.ko");
    if !ko.exists() {
        return Err(Error::Failed(format!("make -C host-driver/bpnet left no {}", ko.display())));
    }
    Ok(ko)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map(|_| ()).map_err(io(format!("copying {} to {}", from.display(), to.display())))
}

/// Debian's TFTP server (tftpd-hpa's in.tftpd, a dynamic executable) with the libraries `ldd` names,
/// at the same paths, and the few /etc files it looks up (users, groups, services).
fn add_tftp_server(stage: &Path) -> Result<()> {
    let tftpd = Path::new(TFTPD);
    if !tftpd.exists() {
        return Err(Error::Failed(format!("{TFTPD} missing: install tftpd-hpa (cargo xtask setup)")));
    }
    let out = Command::new("ldd").arg(tftpd).output().map_err(io(format!("ldd {TFTPD}")))?;
    if !out.status.success() {
        return Err(Error::Failed(format!("ldd {TFTPD} failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let mut files = vec![tftpd.to_path_buf()];
    files.extend(ldd_paths(&String::from_utf8_lossy(&out.stdout)));
    for file in files {
        let to = stage.join(file.strip_prefix("/").unwrap_or(&file));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        copy(&file, &to)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("making {} executable", to.display())))?;
    }
    let etc = stage.join("etc");
    std::fs::create_dir_all(stage.join("srv/tftp")).map_err(io("creating srv/tftp"))?;
    std::fs::create_dir_all(&etc).map_err(io("creating etc"))?;
    for (name, text) in [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
        ("services", "tftp\t\t69/udp\n"),
    ] {
        std::fs::write(etc.join(name), text).map_err(io(format!("writing etc/{name}")))?;
    }
    Ok(())
}

/// The TFTP server the update suite runs in the guest.
const TFTPD: &str = "/usr/sbin/in.tftpd";

/// The absolute paths in `ldd`'s output (`name => /path (addr)`, `/path (addr)`); the vDSO has none.
fn ldd_paths(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// An uncompressed newc cpio (the kernel unpacks it faster than a compressed one) of busybox, the guest
/// tool, bpctl with the firmware ELF (its defmt table), the scripts and, when given, the module.
fn build_initramfs(guest_tool: &Path, firmware: &Path, module: Option<&Path>, name: &str) -> Result<PathBuf> {
    let stage = out_dir().join(format!("{name}.d"));
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "dev", "proc", "sys", "tmp", "tests", "lib/modules", "lib/firmware/bpnet"] {
        std::fs::create_dir_all(stage.join(d)).map_err(io(format!("creating {}", stage.join(d).display())))?;
    }
    copy(Path::new("/bin/busybox"), &stage.join("bin/busybox"))?;
    // The interpreter of /init; /init installs the other applets.
    std::os::unix::fs::symlink("busybox", stage.join("bin/sh")).map_err(io("linking /bin/sh"))?;
    copy(guest_tool, &stage.join("bin/bpnet-guest"))?;
    copy(&guest_tool.with_file_name("bpctl"), &stage.join("bin/bpctl"))?;
    copy(firmware, &stage.join("lib/firmware/bpnet/bpnet-firmware.elf"))?;
    // The signed image the update suite flashes and boots, when the firmware build made one.
    let image = firmware::image(firmware);
    if image.exists() {
        copy(&image, &stage.join("lib/firmware/bpnet/bpnet-firmware.img"))?;
    }
    add_tftp_server(&stage)?;
    let scripts = util::root().join("tests/backplane");
    copy(&scripts.join("init"), &stage.join("init"))?;
    for entry in std::fs::read_dir(&scripts).map_err(io(format!("reading {}", scripts.display())))? {
        let path = entry.map_err(io("reading tests/backplane"))?.path();
        if path.extension().is_some_and(|e| e == "sh") {
            copy(&path, &stage.join("tests").join(path.file_name().unwrap_or_default()))?;
        }
    }
    if let Some(ko) = module {
        copy(ko, &stage.join("lib/modules/bpnet.ko"))?;
    }
    // The kernel runs /init only if it is executable, whatever the checkout's modes are.
    for exe in ["init", "bin/busybox", "bin/bpnet-guest", "bin/bpctl", "usr/sbin/in.tftpd"] {
        use std::os::unix::fs::PermissionsExt;
        let path = stage.join(exe);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("making {} executable", path.display())))?;
    }
    let out = out_dir().join(name);
    let list = Command::new("find").arg(".").current_dir(&stage).output().map_err(io("listing the initramfs"))?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--owner", "0:0", "--quiet"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(File::create(&out).map_err(io(format!("creating {}", out.display())))?)
        .spawn()
        .map_err(io("starting cpio"))?;
    if let Some(mut stdin) = cpio.stdin.take() {
        std::io::Write::write_all(&mut stdin, &list.stdout).map_err(io("feeding cpio"))?;
    }
    let status = cpio.wait().map_err(io("waiting for cpio"))?;
    if !status.success() {
        return Err(Error::Failed(format!("cpio failed ({status})")));
    }
    Ok(out)
}

// ---- one suite ----

/// The processes of a run; whatever is still running when this drops is killed, so no error path leaves
/// a QEMU or an emulator behind.
#[derive(Default)]
struct Processes {
    running: Vec<(String, Child)>,
    /// Files removed at the end (the guest's RAM in /dev/shm).
    files: Vec<PathBuf>,
}

impl Processes {
    fn child(&mut self, name: &str) -> Option<&mut Child> {
        self.running.iter_mut().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    fn signal(&mut self, name: &str, signal: &str) -> bool {
        match self.child(name) {
            Some(c) => Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status()
                .is_ok_and(|s| s.success()),
            None => false,
        }
    }

    /// Wait up to `limit` for `name` to exit; its exit status, if it did.
    fn wait(&mut self, name: &str, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child(name)?;
            if let Ok(Some(status)) = child.try_wait() {
                self.running.retain(|(n, _)| n != name);
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ask politely (SIGTERM), then kill.
    fn stop(&mut self, name: &str, limit: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.wait(name, Duration::ZERO) {
            return Some(status);
        }
        self.signal(name, "TERM");
        if let Some(status) = self.wait(name, limit) {
            return Some(status);
        }
        if let Some(c) = self.child(name) {
            let _ = c.kill();
        }
        self.wait(name, Duration::from_secs(5))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone)]
struct Check {
    name: String,
    pass: bool,
    detail: String,
}

struct Report {
    suite: String,
    checks: Vec<Check>,
    seconds: f64,
    dir: PathBuf,
    agents: u32,
}

impl Report {
    fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }

    fn print(&self) {
        for c in &self.checks {
            println!("  {} {:<28} {}", if c.pass { "PASS" } else { "FAIL" }, c.name, c.detail);
        }
        let bad = self.checks.iter().filter(|c| !c.pass).count();
        println!(
            "backplane {}: {} checks, {bad} failed, {:.1} s ({})",
            self.suite,
            self.checks.len(),
            self.seconds,
            self.dir.display()
        );
        if bad > 0 {
            print_tail(&self.dir.join("console.log"), 40);
            for n in 0..self.agents {
                print_tail(&self.dir.join(format!("agent{n}.err")), 8);
                print_tail(&self.dir.join(format!("agent{n}.log")), 15);
            }
            print_tail(&self.dir.join("qemu.log"), 10);
        }
    }
}

fn print_tail(path: &Path, lines: usize) {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return;
    }
    println!("  --- last {} lines of {} ---", lines.min(all.len()), path.display());
    for l in &all[all.len().saturating_sub(lines)..] {
        println!("  | {l}");
    }
}

/// Wait for `needle` to appear in the file at `path` while `child` runs.
fn wait_for_text(procs: &mut Processes, name: &str, path: &Path, needle: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return Ok(());
        }
        if let Some(status) = procs.wait(name, Duration::ZERO) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return Err(Error::Failed(format!("{name} exited ({status}) before `{needle}`:\n{text}")));
        }
        if Instant::now() > deadline {
            return Err(Error::Failed(format!("{name}: no `{needle}` in {} after {limit:?}", path.display())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_suite(tools: &Tools, suite: &Suite) -> Result<Report> {
    let started = Instant::now();
    let dir = out_dir().join(&suite.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let initramfs = if suite.needs_module {
        tools.initramfs_module.as_ref().ok_or_else(|| Error::Failed("the module was not built".into()))?
    } else {
        &tools.initramfs
    };

    let mut procs = Processes::default();
    // The guest's RAM: created full size before anyone maps it; QEMU and every emulator map it shared.
    let ram = PathBuf::from(format!("/dev/shm/bpnet-backplane-{}-{}.ram", std::process::id(), suite.name));
    procs.files.push(ram.clone());
    File::create(&ram)
        .and_then(|f| f.set_len(GUEST_RAM))
        .map_err(io(format!("creating the guest RAM file {}", ram.display())))?;

    for n in 0..suite.agents {
        let name = format!("agent{n}");
        let err = dir.join(format!("{name}.err"));
        let mut emulator = Command::new(&tools.emulator);
        if suite.boot_stage {
            // Power-on runs the boot stage, which starts slot A of this agent's flash file.
            let boot = tools.boot.as_ref().ok_or_else(|| Error::Failed("the boot stage was not built".into()))?;
            emulator.arg("--boot").arg(&boot.elf).arg("--provision-slot").arg(format!("A={}", boot.image.display()));
        }
        if suite.identities {
            emulator.args(["--provision-identity", &(1001 + n).to_string()]);
        }
        let child = emulator
            .arg("--firmware")
            .arg(agent_firmware(tools, suite, n)?)
            .arg("--ivshmem-server")
            .arg(dir.join(format!("ivs{n}.sock")))
            .arg("--host-ram-file")
            .arg(&ram)
            .args(["--slot", &n.to_string()])
            .arg("--flash-file")
            .arg(dir.join(format!("flash{n}.img")))
            .arg("--summary-json")
            .arg(dir.join(format!("{name}.json")))
            .stdin(Stdio::null())
            .stdout(File::create(dir.join(format!("{name}.log"))).map_err(io("creating the agent log"))?)
            .stderr(File::create(&err).map_err(io("creating the agent log"))?)
            .spawn()
            .map_err(io("starting bpnet-emu"))?;
        procs.running.push((name.clone(), child));
        wait_for_text(&mut procs, &name, &err, "ivshmem server listening", EMULATOR_START)?;
    }

    let append = format!(
        "console=ttyS0 panic=-1 loglevel=7 bptest.suite={} bptest.agents={} bptest.bytes={}",
        suite.guest, suite.agents, suite.bytes
    );
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-machine", "q35,memory-backend=mem", "-m"])
        .arg(format!("{}M", GUEST_RAM >> 20))
        .arg("-object")
        .arg(format!("memory-backend-file,id=mem,size={}M,mem-path={},share=on", GUEST_RAM >> 20, ram.display()))
        .args(["-accel", "tcg", "-smp", "1", "-nographic", "-no-reboot", "-monitor", "none", "-nic", "none"])
        .arg("-kernel")
        .arg(&tools.vmlinux)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(&append)
        .arg("-serial")
        .arg(format!("file:{}", dir.join("console.log").display()))
        .arg("-serial")
        .arg(format!("file:{}", dir.join("results.log").display()));
    for n in 0..suite.agents {
        qemu.arg("-chardev")
            .arg(format!("socket,path={},id=ivs{n}", dir.join(format!("ivs{n}.sock")).display()))
            .arg("-device")
            .arg(format!(
                "ivshmem-doorbell,chardev=ivs{n},vectors={},addr={:#x}",
                bpnet_contract::ivshmem::VECTORS,
                FIRST_PCI_SLOT + n
            ));
    }
    let log = File::create(dir.join("qemu.log")).map_err(io("creating qemu.log"))?;
    let child = qemu
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("qemu.log"))?)
        .stderr(log)
        .spawn()
        .map_err(io("starting qemu-system-x86_64"))?;
    procs.running.push(("qemu".into(), child));

    let mut checks = Vec::new();
    let mut expects = Vec::new();
    let results = dir.join("results.log");
    let mut reader = LineReader::default();
    let deadline = Instant::now() + suite.timeout;
    let mut ended = false;
    let mut qemu_status = None;
    while !ended {
        for line in reader.new_lines(&results) {
            if suite.live {
                show_live(&line);
            }
            match parse_line(&line) {
                Some(Line::Result(c)) => checks.push(c),
                Some(Line::Expect(e)) => expects.push(e),
                Some(Line::ResetAgent(n)) if n < suite.agents => {
                    let ok = procs.signal(&format!("agent{n}"), "USR1");
                    eprintln!(
                        "xtask: backplane: reset of agent {n} requested by the guest{}",
                        if ok { "" } else { ": agent not running" }
                    );
                }
                Some(Line::ResetAgent(n)) => checks.push(Check {
                    name: "guest-request".into(),
                    pass: false,
                    detail: format!("reset of agent {n} requested; there are {}", suite.agents),
                }),
                Some(Line::End) => ended = true,
                Some(Line::Malformed(text)) => checks.push(Check {
                    name: "results-channel".into(),
                    pass: false,
                    detail: format!("unparsable line: {text}"),
                }),
                None => {}
            }
        }
        if ended {
            break;
        }
        if let Some(status) = procs.wait("qemu", Duration::ZERO) {
            qemu_status = Some(status);
            // A last look: the guest may have written its last lines just before powering off.
            for line in reader.new_lines(&results) {
                match parse_line(&line) {
                    Some(Line::Result(c)) => checks.push(c),
                    Some(Line::Expect(e)) => expects.push(e),
                    Some(Line::End) => ended = true,
                    _ => {}
                }
            }
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let finished = ended;
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
        qemu_status =
            procs.wait("qemu", Duration::from_secs(20)).or_else(|| procs.stop("qemu", Duration::from_secs(5)));
    }
    let _ = qemu_status;
    for n in 0..suite.agents {
        let name = format!("agent{n}");
        let status = procs.wait(&name, EMULATOR_STOP).or_else(|| procs.stop(&name, Duration::from_secs(5)));
        let summary = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_default();
        let end = json_str(&summary, "host_end");
        let outcome = json_str(&summary, "outcome").unwrap_or_else(|| "no summary".into());
        let pass = status.is_some_and(|s| s.success()) && outcome == "idle" && end.is_some();
        checks.push(Check {
            name: format!("{name}-ran-to-the-end"),
            pass,
            detail: match (&status, &end) {
                (Some(s), Some(e)) if pass => format!("stopped when {e} ({s})"),
                _ => format!(
                    "emulator {}, outcome {outcome}: {}",
                    status.map_or("did not stop".to_string(), |s| s.to_string()),
                    json_str(&summary, "message").unwrap_or_default()
                ),
            },
        });
        for e in expects.iter().filter(|e| e.agent == n) {
            checks.push(e.check(&summary));
        }
    }
    checks.push(console_clean(&dir.join("console.log")));
    drop(procs);
    Ok(Report {
        suite: suite.name.clone(),
        checks,
        seconds: started.elapsed().as_secs_f64(),
        dir,
        agents: suite.agents,
    })
}

/// The guest's kernel log (the console) has no warning, BUG or oops.
fn console_clean(path: &Path) -> Check {
    const BAD: &[&str] = &["WARNING:", "BUG:", "Oops", "general protection fault", "Call Trace", "Kernel panic"];
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let hits: Vec<&str> = text.lines().filter(|l| BAD.iter().any(|b| l.contains(b))).take(3).collect();
    Check {
        name: "guest-console-clean".into(),
        pass: !text.is_empty() && hits.is_empty(),
        detail: if text.is_empty() {
            "the console log is empty".into()
        } else if hits.is_empty() {
            "no WARN/BUG/oops/panic in the console log".into()
        } else {
            hits.join(" | ")
        },
    }
}

// ---- the results channel ----

/// Reads the complete lines appended to a file since the last call.
#[derive(Default)]
struct LineReader {
    offset: u64,
    partial: String,
}

impl LineReader {
    fn new_lines(&mut self, path: &Path) -> Vec<String> {
        let Ok(mut f) = File::open(path) else { return Vec::new() };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut lines = Vec::new();
        while let Some(at) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=at).collect();
            let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string();
            if !line.is_empty() {
                lines.push(line);
            }
        }
        lines
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Expect {
    agent: u32,
    key: String,
    at_least: bool,
    value: u64,
}

impl Expect {
    fn check(&self, summary: &str) -> Check {
        let op = if self.at_least { ">=" } else { "=" };
        let name = format!("agent{}-{}", self.agent, self.key.replace('_', "-"));
        let got = json_u64(summary, &self.key);
        let pass = got.is_some_and(|v| if self.at_least { v >= self.value } else { v == self.value });
        let detail = match got {
            Some(v) => format!("{} = {v} (expected {op} {})", self.key, self.value),
            None => format!("no {} in the emulator's summary", self.key),
        };
        Check { name, pass, detail }
    }
}

#[derive(Debug, Clone)]
enum Line {
    Result(Check),
    Expect(Expect),
    ResetAgent(u32),
    End,
    Malformed(String),
}

/// A results-channel line as the demo shows it: the guest's `SAY` text as it is, each check as a tick
/// or a cross; nothing else.
fn show_live(line: &str) {
    if let Some(text) = line.strip_prefix("SAY ") {
        println!("{text}");
    } else if line == "SAY" {
        println!();
    } else if let Some(Line::Result(c)) = parse_line(line) {
        if c.pass {
            println!("  ✓ {}", c.name);
        } else {
            println!("  ✗ {}: {}", c.name, c.detail);
        }
    }
}

/// One line of the results channel; `None` for lines that are not for the harness (BEGIN, SAY, noise).
fn parse_line(line: &str) -> Option<Line> {
    let mut words = line.split_whitespace();
    let bad = || Some(Line::Malformed(line.to_string()));
    match words.next()? {
        "RESULT" => {
            let (Some(name), Some(status)) = (words.next(), words.next()) else { return bad() };
            let pass = match status {
                "pass" => true,
                "fail" => false,
                _ => return bad(),
            };
            let detail = words.collect::<Vec<_>>().join(" ");
            Some(Line::Result(Check { name: name.to_string(), pass, detail }))
        }
        "EXPECT" => {
            let fields: Vec<&str> = words.collect();
            let ["agent", n, key, op, value] = fields.as_slice() else { return bad() };
            let (Ok(agent), Ok(value)) = (n.parse(), value.parse()) else { return bad() };
            let at_least = match *op {
                "=" => false,
                ">=" => true,
                _ => return bad(),
            };
            Some(Line::Expect(Expect { agent, key: key.to_string(), at_least, value }))
        }
        "REQUEST" => match (words.next(), words.next().map(str::parse::<u32>)) {
            (Some("reset-agent"), Some(Ok(n))) => Some(Line::ResetAgent(n)),
            _ => bad(),
        },
        "END" => Some(Line::End),
        _ => None,
    }
}

/// The raw text of `"key":` in the emulator's flat summary object.
fn json_raw<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[at..].trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return Some(&s[..s.find('"')?]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn json_u64(text: &str, key: &str) -> Option<u64> {
    json_raw(text, key)?.parse().ok()
}

fn json_str(text: &str, key: &str) -> Option<String> {
    json_raw(text, key).filter(|v| *v != "null").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_channel_lines() {
        let Some(Line::Result(c)) = parse_line("RESULT agent0-ping pass 3 packets  transmitted") else { panic!() };
        assert_eq!((c.name.as_str(), c.pass, c.detail.as_str()), ("agent0-ping", true, "3 packets transmitted"));
        let Some(Line::Result(c)) = parse_line("RESULT x fail") else { panic!() };
        assert!(!c.pass && c.detail.is_empty());
        assert!(matches!(parse_line("RESULT x maybe"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("RESULT"), Some(Line::Malformed(_))));
        let Some(Line::Expect(e)) = parse_line("EXPECT agent 2 ivshmem_work_doorbells >= 3") else { panic!() };
        assert_eq!(e, Expect { agent: 2, key: "ivshmem_work_doorbells".into(), at_least: true, value: 3 });
        assert!(matches!(parse_line("EXPECT agent x k = 1"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("EXPECT agent 1 k < 1"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("REQUEST reset-agent 3"), Some(Line::ResetAgent(3))));
        assert!(matches!(parse_line("REQUEST reboot"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("END"), Some(Line::End)));
        assert!(parse_line("BEGIN suite=net").is_none());
        assert!(parse_line("").is_none());
    }

    #[test]
    fn expectations_against_a_summary() {
        let summary = r#"{"outcome":"idle","ivshmem_work_doorbells":3,"host_end":"the host closed","slot":null}"#;
        let e = |at_least, value| Expect { agent: 0, key: "ivshmem_work_doorbells".into(), at_least, value };
        assert!(e(false, 3).check(summary).pass);
        assert!(!e(false, 4).check(summary).pass);
        assert!(e(true, 1).check(summary).pass);
        let missing = Expect { key: "nope".into(), ..e(false, 0) }.check(summary);
        assert!(!missing.pass && missing.detail.contains("no nope"));
        assert_eq!(json_str(summary, "host_end").as_deref(), Some("the host closed"));
        assert_eq!(json_str(summary, "slot"), None);
        assert_eq!(json_str(summary, "outcome").as_deref(), Some("idle"));
    }

    #[test]
    fn lines_are_read_once_and_only_when_complete() {
        let dir = std::env::temp_dir().join(format!("bpnet-xtask-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.log");
        let mut r = LineReader::default();
        assert!(r.new_lines(&path).is_empty(), "no file yet");
        std::fs::write(&path, "RESULT a pass x\r\nRESU").unwrap();
        assert_eq!(r.new_lines(&path), ["RESULT a pass x"]);
        std::fs::write(&path, "RESULT a pass x\r\nRESULT b fail y\nEND\n").unwrap();
        assert_eq!(r.new_lines(&path), ["RESULT b fail y", "END"]);
        assert!(r.new_lines(&path).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn libraries_from_ldd() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibwrap.so.0 => /lib/x86_64-linux-gnu/libwrap.so.0 (0x7f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n\
                    \tlibgone.so => not found\n";
        let paths: Vec<String> = ldd_paths(text).iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            paths,
            ["/lib/x86_64-linux-gnu/libwrap.so.0", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
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
