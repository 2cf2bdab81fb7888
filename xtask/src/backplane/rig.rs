//! The rig of one run: the guest's RAM file, one board emulator per agent as its ivshmem-doorbell
//! device's server (`bpnet-emu --ivshmem-server`, whose DMA reaches that file), and QEMU with the
//! guest. Every process started is stopped again, on success, failure or error.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::image::Tools;
use super::results::AgentRequest;
use super::{agent_firmware, io, Suite};
use crate::util::{Error, Result};

/// Guest RAM: 2 GiB, so the kernel's buffers land above 256 MiB and above 1 GiB as on a real host
/// (the agents' outbound windows reach all of it, the module's DMA mask follows their `dma_reach`).
/// On q35 all of it lies below the PCI hole, so guest-physical address = file offset. The file is
/// created sparse (set_len) and only what the guest touches takes memory in /dev/shm.
const GUEST_RAM: u64 = 2 << 30;
/// The guest's device bus: agent n's ivshmem device is at slot FIRST_SLOT + n, so sysfs order is agent
/// order.
const FIRST_PCI_SLOT: u32 = 0x10;
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

impl Rig {
    /// The guest's RAM, every agent's emulator (each listening before the next starts), then QEMU;
    /// artefacts (sockets, logs, summaries, flash files, the two serial ports) in `dir`.
    pub fn start(tools: &Tools, suite: &Suite, dir: &Path) -> Result<Rig> {
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
                emulator
                    .arg("--boot")
                    .arg(&boot.elf)
                    .arg("--provision-slot")
                    .arg(format!("A={}", boot.image.display()));
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
        if suite.unrelated_ivshmem {
            qemu.arg("-object")
                .arg("memory-backend-ram,id=unrelated,size=1M")
                .arg("-device")
                .arg(format!("ivshmem-plain,memdev=unrelated,addr={:#x}", FIRST_PCI_SLOT + suite.agents));
        }
        let log = File::create(dir.join("qemu.log")).map_err(io("creating qemu.log"))?;
        let child = qemu
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("qemu.log"))?)
            .stderr(log)
            .spawn()
            .map_err(io("starting qemu-system-x86_64"))?;
        procs.running.push(("qemu".into(), child));
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

    /// Once its host has left, an emulator stops by itself; it is stopped if it does not.
    pub fn stop_agent(&mut self, n: u32) -> AgentStop {
        let name = format!("agent{n}");
        match self.procs.wait(&name, EMULATOR_STOP) {
            Some(status) => AgentStop { status: Some(status), by_itself: true },
            None => AgentStop { status: self.procs.stop(&name, Duration::from_secs(5)), by_itself: false },
        }
    }
}
