//! The rig of one run: the guest's RAM file, one board emulator per agent serving its PCI function,
//! and QEMU with the guest. For the `mpc834x` personality each emulator is an MPC834x agent function
//! behind QEMU's `x-pci-proxy-dev` (`bpnet-emu --agent-function`: the rig connects one stream socket to
//! it and hands that descriptor to QEMU) and one more emulator process, the INTx broker, owns QEMU's
//! qtest socket and drives the IOAPIC input of each agent's INTA#. For `ivshmem` each emulator is its
//! ivshmem-doorbell device's server (`bpnet-emu --ivshmem-server`). Every DMA reaches the guest's RAM
//! file. Every process started is stopped again, on success, failure or error.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::image::Tools;
use super::results::AgentRequest;
use super::{agent_firmware, io, Personality, Suite};
use crate::util::{Error, Result};

/// Guest RAM: 2 GiB, so the kernel's buffers land above 256 MiB and above 1 GiB as on a real host
/// (the agents' outbound windows reach all of it, the module's DMA mask follows their `dma_reach`).
/// On q35 all of it lies below the PCI hole, so guest-physical address = file offset. The file is
/// created sparse (set_len) and only what the guest touches takes memory in /dev/shm.
const GUEST_RAM: u64 = 2 << 30;
/// The guest's device bus: agent n's PCI function is at slot FIRST_PCI_SLOT + n (the hostile suite on
/// mpc834x: + INTX_PINS · n), so sysfs order is agent order. q35 keeps slot 0 (host bridge), 1 (VGA)
/// and 0x1f (LPC, SATA, SMBus) for itself; from 0x08, twenty agents and the unrelated ivshmem-plain
/// device after them (up to slot 0x1c) stay clear of all three.
const FIRST_PCI_SLOT: u32 = 0x08;
/// The last slot an agent or the unrelated device may take: 0x1f is the chipset's.
const LAST_PCI_SLOT: u32 = 0x1e;
/// q35's root bus routes INTA# of slot s to IOAPIC input 20 + (s mod 4) (checked with QEMU 7.2:
/// /work/shared/agent-function.md); slots INTX_PINS apart share a pin, as CompactPCI slots do.
const INTX_PINS: u32 = 4;
const INTA_FIRST_GSI: u32 = 20;
/// What an agent function's emulator prints (stderr) once it listens, and what its firmware or boot
/// stage prints on its console (the emulator's stdout) once it released the configuration lock
/// (PBFR[ACL]: until then the host's configuration cycles are retried).
const AGENT_FUNCTION_LISTENING: &str = "agent function listening";
const CONFIG_UNLOCKED: &str = "configuration lock released";
const BROKER_LISTENING: &str = "intx broker listening";
/// How long an emulator may take to listen, and to stop after its host left.
const EMULATOR_START: Duration = Duration::from_secs(30);
const EMULATOR_STOP: Duration = Duration::from_secs(10);

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

/// The processes of one run, started by [`Rig::start`].
pub(super) struct Rig {
    procs: Processes,
}

/// How an agent's emulator ended.
pub(super) struct AgentStop {
    /// Its exit status, if it exited at all.
    pub status: Option<ExitStatus>,
    /// It stopped by itself once its host left, not because the rig stopped it.
    pub by_itself: bool,
}

/// The PCI slot of agent `n`: consecutive, except that the hostile suite's agents on mpc834x are
/// INTX_PINS slots apart, so the misbehaving agent and its neighbour share one INTx pin.
fn pci_slot(suite: &Suite, n: u32) -> u32 {
    if suite.personality == Personality::Mpc834x && suite.guest == "hostile" {
        FIRST_PCI_SLOT + INTX_PINS * n
    } else {
        FIRST_PCI_SLOT + n
    }
}

/// The slot of the unrelated ivshmem-plain device: right after the agents'.
fn unrelated_slot(suite: &Suite) -> u32 {
    FIRST_PCI_SLOT + suite.agents
}

/// The IOAPIC input (GSI) INTA# of `slot` reaches on q35's root bus.
fn inta_gsi(slot: u32) -> u32 {
    INTA_FIRST_GSI + slot % INTX_PINS
}

/// Agent `n`'s emulator with what every personality passes: firmware (or boot stage and flash slot A),
/// identity, the guest's RAM, slot, flash, summary; its logs in `dir`.
fn agent_command(tools: &Tools, suite: &Suite, dir: &Path, n: u32, ram: &Path) -> Result<Command> {
    let name = format!("agent{n}");
    let mut emulator = Command::new(&tools.emulator);
    if suite.boot_stage {
        // Power-on runs the boot stage, which starts slot A of this agent's flash file.
        let boot = tools.boot.as_ref().ok_or_else(|| Error::Failed("the boot stage was not built".into()))?;
        emulator.arg("--boot").arg(&boot.elf).arg("--provision-slot").arg(format!("A={}", boot.image.display()));
    }
    if suite.identities {
        emulator.args(["--provision-identity", &(1001 + n).to_string()]);
    }
    emulator
        .arg("--firmware")
        .arg(agent_firmware(tools, suite, n)?)
        .arg("--host-ram-file")
        .arg(ram)
        .args(["--slot", &n.to_string()])
        .arg("--flash-file")
        .arg(dir.join(format!("flash{n}.img")))
        .arg("--summary-json")
        .arg(dir.join(format!("{name}.json")))
        .stdin(Stdio::null())
        .stdout(File::create(dir.join(format!("{name}.log"))).map_err(io("creating the agent log"))?)
        .stderr(File::create(dir.join(format!("{name}.err"))).map_err(io("creating the agent log"))?);
    Ok(emulator)
}

impl Rig {
    /// The guest's RAM, every agent's emulator (each listening before the next starts; on mpc834x the
    /// INTx broker first), then QEMU; artefacts (sockets, logs, summaries, flash files, the two serial
    /// ports) in `dir`.
    pub fn start(tools: &Tools, suite: &Suite, dir: &Path) -> Result<Rig> {
        let initramfs = if suite.needs_module {
            tools.initramfs_module.as_ref().ok_or_else(|| Error::Failed("the module was not built".into()))?
        } else {
            &tools.initramfs
        };

        let last = (0..suite.agents).map(|n| pci_slot(suite, n)).max().unwrap_or(FIRST_PCI_SLOT)
            + u32::from(suite.unrelated_ivshmem);
        if last > LAST_PCI_SLOT {
            return Err(Error::Usage(format!(
                "{}: {} agent(s) need PCI slots up to {last:#x}; the guest's bus has {FIRST_PCI_SLOT:#x}..={LAST_PCI_SLOT:#x}",
                suite.name, suite.agents
            )));
        }
        let mut procs = Processes::default();
        // The guest's RAM: created full size before anyone maps it; QEMU and every emulator map it shared.
        let ram = PathBuf::from(format!("/dev/shm/bpnet-backplane-{}-{}.ram", std::process::id(), suite.name));
        procs.files.push(ram.clone());
        File::create(&ram)
            .and_then(|f| f.set_len(GUEST_RAM))
            .map_err(io(format!("creating the guest RAM file {}", ram.display())))?;

        // no_timer_check: under TCG on a busy machine the kernel's early IO-APIC timer check can see too
        // few ticks and panic ("IO-APIC + timer doesn't work"), as on any slow virtual machine.
        // iomem=relaxed: the net suite scribbles over a live agent's shared region through the BAR's
        // sysfs resource file, which the kernel maps only so while bpnet.ko holds the BAR.
        let mut append = format!(
            "console=ttyS0 panic=-1 loglevel=7 no_timer_check iomem=relaxed bptest.suite={} bptest.agents={} bptest.bytes={} bptest.personality={}",
            suite.guest,
            suite.agents,
            suite.bytes,
            suite.personality.name()
        );
        if suite.minutes > 0 {
            append.push_str(&format!(" bptest.minutes={}", suite.minutes));
        }
        if suite.unrelated_ivshmem {
            // The guest leaves this one function alone and checks that the module did too.
            append.push_str(&format!(" bptest.unrelated=0000:00:{:02x}.0", unrelated_slot(suite)));
        }
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

        // The agent functions' connected sockets, handed to QEMU and closed here once it runs.
        let mut functions = Vec::new();
        match suite.personality {
            Personality::Ivshmem => {
                for n in 0..suite.agents {
                    let name = format!("agent{n}");
                    let child = agent_command(tools, suite, dir, n, &ram)?
                        .arg("--ivshmem-server")
                        .arg(dir.join(format!("ivs{n}.sock")))
                        .spawn()
                        .map_err(io("starting bpnet-emu"))?;
                    procs.running.push((name.clone(), child));
                    let err = dir.join(format!("{name}.err"));
                    wait_for_text(&mut procs, &name, &err, "ivshmem server listening", EMULATOR_START)?;
                    qemu.arg("-chardev")
                        .arg(format!("socket,path={},id=ivs{n}", dir.join(format!("ivs{n}.sock")).display()))
                        .arg("-device")
                        .arg(format!(
                            "ivshmem-doorbell,chardev=ivs{n},vectors={},addr={:#x}",
                            bpnet_contract::ivshmem::VECTORS,
                            pci_slot(suite, n)
                        ));
                }
            }
            Personality::Mpc834x => {
                functions = start_agent_functions(tools, suite, dir, &ram, &mut procs, &mut qemu)?;
            }
        }
        if suite.unrelated_ivshmem {
            qemu.arg("-object")
                .arg("memory-backend-ram,id=unrelated,size=1M")
                .arg("-device")
                .arg(format!("ivshmem-plain,memdev=unrelated,addr={:#x}", unrelated_slot(suite)));
        }
        let log = File::create(dir.join("qemu.log")).map_err(io("creating qemu.log"))?;
        // QEMU inherits each agent function's socket (its number is in -device ...,fd=N); the flag is
        // cleared only now, just before the one spawn that must inherit it.
        for f in &functions {
            rustix::io::fcntl_setfd(f, rustix::io::FdFlags::empty())
                .map_err(|e| Error::Io("handing an agent function's socket to QEMU".into(), e.into()))?;
        }
        let child = qemu
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("qemu.log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("starting qemu-system-x86_64"));
        // QEMU holds its copies; the rig's are closed whether or not it started.
        drop(functions);
        procs.running.push(("qemu".into(), child?));
        Ok(Rig { procs })
    }

    /// Reset agent `n` (the chassis' HRESET), freeze or resume its emulator; false if it is not running.
    pub fn agent_request(&mut self, request: AgentRequest, n: u32) -> bool {
        let signal = match request {
            AgentRequest::Reset => "USR1",
            AgentRequest::Pause => "STOP",
            AgentRequest::Resume => "CONT",
        };
        self.procs.signal(&format!("agent{n}"), signal)
    }

    /// QEMU's exit status, if it has exited.
    pub fn qemu_exited(&mut self) -> Option<ExitStatus> {
        self.procs.wait("qemu", Duration::ZERO)
    }

    /// After the suite's END the guest powers off by itself; QEMU is stopped if it does not.
    pub fn stop_qemu(&mut self) -> Option<ExitStatus> {
        self.procs.wait("qemu", Duration::from_secs(20)).or_else(|| self.procs.stop("qemu", Duration::from_secs(5)))
    }

    /// What is left once QEMU and the agents stopped: the INTx broker (mpc834x).
    pub fn stop_rest(&mut self) {
        self.procs.stop("intx-broker", Duration::from_secs(5));
    }

    /// Once its host has left, an emulator stops by itself; it is stopped if it does not.
    pub fn stop_agent(&mut self, n: u32) -> AgentStop {
        let name = format!("agent{n}");
        match self.procs.wait(&name, EMULATOR_STOP) {
            Some(status) => AgentStop { status: Some(status), by_itself: true },
            None => AgentStop { status: self.procs.stop(&name, Duration::from_secs(5)), by_itself: false },
        }
    }
}

/// mpc834x: the INTx broker (it connects to QEMU's qtest socket once QEMU listens), then each agent's
/// emulator as an agent function with its INTA# on the broker, a connected socket to each for QEMU,
/// and QEMU's arguments for all of it. Returns the connected sockets.
///
/// QEMU starts only after every agent's firmware released its configuration lock: QEMU reads each
/// function's configuration space while it builds the machine, and the guest's BIOS and kernel
/// enumerate the bus right after. A chassis does the same: the host's power-on reset is held (or its
/// firmware waits) until the boards are ready, which is why U-Boot's agent flow clears the lock "so that
/// the host system can begin booting". The lock is still modelled: a configuration cycle before
/// release is retried, which the module's recovery after an agent reset goes through.
fn start_agent_functions(
    tools: &Tools,
    suite: &Suite,
    dir: &Path,
    ram: &Path,
    procs: &mut Processes,
    qemu: &mut Command,
) -> Result<Vec<UnixStream>> {
    let broker = dir.join("intx.sock");
    let qtest = dir.join("qtest.sock");
    let child = Command::new(&tools.emulator)
        .arg("--intx-broker")
        .arg(&broker)
        .arg("--qtest")
        .arg(&qtest)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("intx-broker.log")).map_err(io("creating the broker log"))?)
        .stderr(File::create(dir.join("intx-broker.err")).map_err(io("creating the broker log"))?)
        .spawn()
        .map_err(io("starting bpnet-emu --intx-broker"))?;
    procs.running.push(("intx-broker".into(), child));
    wait_for_text(procs, "intx-broker", &dir.join("intx-broker.err"), BROKER_LISTENING, EMULATOR_START)?;

    let mut functions = Vec::new();
    for n in 0..suite.agents {
        let name = format!("agent{n}");
        let socket = dir.join(format!("agent{n}.sock"));
        let slot = pci_slot(suite, n);
        let child = agent_command(tools, suite, dir, n, ram)?
            .arg("--agent-function")
            .arg(&socket)
            .arg("--intx-broker")
            .arg(&broker)
            .args(["--intx-gsi", &inta_gsi(slot).to_string()])
            .spawn()
            .map_err(io("starting bpnet-emu"))?;
        procs.running.push((name.clone(), child));
        wait_for_text(procs, &name, &dir.join(format!("{name}.err")), AGENT_FUNCTION_LISTENING, EMULATOR_START)?;
        let stream = UnixStream::connect(&socket).map_err(io(format!("connecting to {}", socket.display())))?;
        qemu.arg("-device").arg(format!("x-pci-proxy-dev,fd={},addr={slot:#x},id={name}", stream.as_raw_fd()));
        functions.push(stream);
    }
    for n in 0..suite.agents {
        let name = format!("agent{n}");
        wait_for_text(procs, &name, &dir.join(format!("{name}.log")), CONFIG_UNLOCKED, EMULATOR_START)?;
    }
    qemu.arg("-qtest").arg(format!("unix:{},server=on,wait=off", qtest.display())).args(["-qtest-log", "none"]);
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(guest: &'static str, agents: u32, personality: Personality) -> Suite {
        Suite {
            name: guest.into(),
            personality,
            guest,
            agents,
            needs_module: true,
            bytes: 0,
            timeout: Duration::from_secs(1),
            boot_stage: false,
            live: false,
            identities: false,
            unrelated_ivshmem: false,
            minutes: 0,
        }
    }

    #[test]
    fn the_hostile_pair_shares_a_pin_on_mpc834x() {
        let hostile = suite("hostile", 2, Personality::Mpc834x);
        let (a, b) = (pci_slot(&hostile, 0), pci_slot(&hostile, 1));
        assert!(a < b, "sysfs order is agent order");
        assert_eq!(inta_gsi(a), inta_gsi(b));
        assert_eq!(inta_gsi(0x08), 20);
        assert_eq!(inta_gsi(0x10), 20);
        assert_eq!(inta_gsi(0x13), 23);
        // Up to four agents each have a pin of their own; the fifth shares the first one's.
        let net = suite("net", 5, Personality::Mpc834x);
        let gsis: Vec<u32> = (0..5).map(|n| inta_gsi(pci_slot(&net, n))).collect();
        assert_eq!(gsis, [20, 21, 22, 23, 20]);
        assert_eq!(pci_slot(&suite("hostile", 2, Personality::Ivshmem), 1), FIRST_PCI_SLOT + 1);
    }

    #[test]
    fn twenty_agents_and_the_unrelated_device_stay_off_the_chipsets_slots() {
        let mut net = suite("net", 20, Personality::Mpc834x);
        net.unrelated_ivshmem = true;
        let slots: Vec<u32> = (0..20).map(|n| pci_slot(&net, n)).chain([unrelated_slot(&net)]).collect();
        assert!(slots.iter().all(|&s| (2..0x1f).contains(&s) && s <= LAST_PCI_SLOT), "{slots:x?}");
        assert!(slots.windows(2).all(|w| w[0] < w[1]), "sysfs order is agent order");
    }
}
