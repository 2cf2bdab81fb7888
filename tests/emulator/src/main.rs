//! `bpnet-emu`: run a firmware ELF on the emulated MPC8349EMDS board.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use bpnet_emu::intx::{Broker, IntxClient};
use bpnet_emu::ivshmem::{self, Listener, Server, Signals};
use bpnet_emu::proxy::{AgentFunction, ProxyStats, Source};
use bpnet_emu::{Board, BusModel, Config, OutboundDoorbells, Outcome, Output, CORE_HZ, DEFAULT_HOST_RAM_SIZE};
use bpnet_update::{Slot, MPC8349EMDS};

const USAGE: &str = "\
usage: bpnet-emu --firmware ELF [--boot ELF] [--provision-slot A|B=IMG]... [--max-insns N] [--ram-file PATH] [--host-ram-file PATH]
                 [--host-ram-size BYTES] [--flash-file PATH] [--power-cut-at N] [--bus pci32|pci64]
                 [--echo-host] [--quiet-log] [--summary-json PATH]
       bpnet-emu --firmware ELF --ivshmem-server SOCKET --host-ram-file GUEST_RAM [--slot N] [...]
       bpnet-emu --firmware ELF --agent-function SOCKET --host-ram-file GUEST_RAM
                 [--intx-broker BROKER --intx-gsi N] [--config-retry-limit SECONDS] [--slot N] [...]
       bpnet-emu --intx-broker SOCKET --qtest QTEST_SOCKET
       bpnet-emu --describe-bus-model [--bus pci32|pci64]

Runs a bpnet agent firmware ELF (32-bit big-endian PowerPC, linked for the board's RAM) on an emulated
MPC8349EMDS board, handed over as U-Boot's `go` would. Console output (UART0) goes to stdout verbatim,
decoded defmt log lines go to stdout as `log: ...`, a one-line summary goes to stderr.

options:
  --firmware ELF     the firmware image to run (required); with --boot, the ELF of the image the boot
                     stage starts (its defmt table decodes the log, its timebase instructions are hooked)
  --boot ELF         power on and reset into this boot stage (bpnet-boot.elf) instead, as U-Boot's
                     `bootcmd` starts it from flash: it verifies and starts a slot's image, or waits
                     for one from the host through the BAR
  --provision-slot A=IMG  write the signed image IMG into flash slot A (or B) before the board starts,
                     as a programmer would (repeatable; the flash file keeps it)
  --max-insns N      stop after exactly N instructions (default: no limit); accepts 1e9-style and _ separators
  --ram-file PATH    back the board's 256 MiB of RAM with PATH, shared, so other processes can map it
                     (created if missing, contents kept; default: a temporary file)
  --host-ram-file PATH  the host's physical memory, shared (PCI memory address = file offset), e.g. a
                     Linux guest's RAM file; the agent reaches it through its PCI outbound windows
                     (created if missing, extended to --host-ram-size if shorter; default: a temporary file)
  --host-ram-size BYTES  size of host RAM (default 64 MiB; a longer existing file keeps its length;
                     with --ivshmem-server: the least the guest's file must hold, default any)
  --flash-file PATH  the 32 MiB NOR flash image; contents survive restarts (created erased if missing;
                     default: a temporary erased flash)
  --power-cut-at N   cut the power half-way through the N-th flash program/erase operation (1-based),
                     then restart the board as at power-on (RAM lost, flash keeps the half-done work)
  --bus pci32|pci64  backplane timing for DMA: 32-bit/33 MHz PCI (default) or 64-bit/66 MHz
  --describe-bus-model  print the bus model's parameters and the rates they give, then exit
  --echo-host        play the host peer of the firmware self-test's message-unit handshake: when the
                     firmware idles with OMR0 = READY, read the challenge through its BAR (inbound
                     window 0), answer with it in IMR0 and a doorbell; check the reply (OMR1, ODR)
                     and acknowledge it
  --ivshmem-server SOCKET  be the ivshmem server of one QEMU `ivshmem-doorbell` device (the virtual
                     backplane): listen on SOCKET (`ivshmem server listening on SOCKET` on stderr once
                     QEMU may start), serve one client: the shared region (the ELF's __bpnet_shared)
                     is the device's BAR2, the host's ring of vector 0 is inbound doorbell bit WORK,
                     outbound doorbell bits STATUS/LINK become MSI-X vectors 0/1 (acknowledged by the
                     emulator: this personality has no host read of ODR). --host-ram-file must be
                     the guest's RAM file (existing, at least --host-ram-size, default: any length,
                     all of it is host RAM; it is neither created nor resized); the outbound windows
                     reach it at PCI address = guest physical address. Waits pass in real time. Exit when QEMU disconnects or
                     on SIGTERM/SIGINT (summary as usual); SIGUSR1 resets the agent (hard reset)
  --agent-function SOCKET  be the MPC8349E's PCI agent function behind one QEMU `x-pci-proxy-dev`
                     (QEMU 7.2's proxy protocol): listen on SOCKET (`agent function listening on
                     SOCKET` on stderr once the rig may connect), accept one connection (the rig
                     hands it to QEMU as fd=N) and serve QEMU's configuration cycles (the agent-mode
                     header: 1957:0080, class 0x0b2001, BAR0 = IMMR 1 MiB, BAR1 = inbound window 0)
                     and BAR accesses. The firmware starts at once; the host's configuration cycles
                     are held while the firmware keeps the configuration lock set. --host-ram-file
                     is the guest's RAM file, as with --ivshmem-server. Waits pass in real time.
                     Exit when the connection closes or on SIGTERM/SIGINT; SIGUSR1 resets the agent
                     (hard reset: the configuration header too; the connection stays)
  --intx-broker BROKER  with --agent-function: pass INTA#'s level (the message unit's outbound
                     interrupt through OMIMR, gated by INTx-disable) to the INTx broker at BROKER
                     for I/O APIC input --intx-gsi N (0..23; on q35's root bus slot s is 20 + s % 4),
                     synchronously: a host write that clears the cause lowers it before its reply
  --intx-broker SOCKET --qtest QTEST_SOCKET  (no --firmware) be the INTx broker: listen on SOCKET
                     (`intx broker listening on SOCKET` on stderr), take `<gsi> <0|1>` lines from
                     emulators, OR the levels per GSI and set them in QEMU through its qtest socket
                     (`-qtest unix:QTEST_SOCKET,server=on,wait=off -qtest-log none`), answering
                     `OK` once QEMU has; levels set before QEMU is up are pushed when it comes up.
                     Exit on SIGTERM/SIGINT or when QEMU's qtest connection closes
  --config-retry-limit SECONDS  how long a host configuration cycle is held while the
                     configuration lock is set before it is answered as a master abort (all ones;
                     counted, logged); default 30
  --slot N           the agent's slot in the chassis (0..19), named in the emulator's messages and
                     the summary
  --provision-identity SERIAL  write the board identity record (SERIAL, and --slot's slot) into the
                     flash's last sector before the board starts: the agent then takes the MACs of
                     that serial and the address 10.83.<slot>.2
  --quiet-log        do not print decoded log lines
  --summary-json PATH  also write the summary as one JSON object: outcome (idle, instruction_limit,
                     halted, unmodelled, unmapped), message, exit_code, instructions,
                     skipped_instructions (waited in `b .`), virtual_ns, wall_ns, resets, power_cuts,
                     flash_operations, bus_model, dma_bytes_to_host, dma_bytes_from_host, dma_bytes_local,
                     dma_bytes_to_host_above_256m and _above_1g (bytes written at host bus addresses
                     from 256 MiB / 1 GiB), dma_host_writes_after_release (DMA writes into host RAM
                     while the header showed host_state DOWN and the agent stopped: always a fault),
                     host_released_at_end (1 if the header shows exactly that when the run ends),
                     host_bar_reads, host_bar_writes, inta_assertions, dcache_locked (the program
                     left HID0[DLOCK] set, as U-Boot hands over), the PCI function's counters
                     (config_reads, config_writes, config_retries: host cycles held by the lock,
                     config_given_up, bar0_reads, bar0_writes, bar1_reads, bar1_writes,
                     bar0_service_ns_mean, bar1_service_ns_mean: receipt to reply, host_writes_refused,
                     host_reads_refused: unmodelled IMMR registers, master_aborts, intx_changes), and
                     markers: every value the firmware wrote to UART1's scratch register as
                     [value, instructions, virtual_ps]
  -h, --help         this text

exit status:
  0  the firmware went idle, or the instruction limit was reached without a fault
  1  the firmware halted (after a fault or a panic)
  2  the firmware used an unmodelled register or touched an unmapped address
  3  bad firmware file or bad usage
";

/// Slots A and B and their names: the flash layout the boot stage uses.
const FLASH_SLOTS: [(char, Slot); 2] = [('A', Slot::A), ('B', Slot::B)];

struct Args {
    firmware: PathBuf,
    boot: Option<PathBuf>,
    provision: Vec<(u32, PathBuf)>,
    /// Write a board identity record (this serial, `slot`) into the flash before the board starts.
    identity_serial: Option<u32>,
    max_insns: Option<u64>,
    ram_file: Option<PathBuf>,
    host_ram_file: Option<PathBuf>,
    host_ram_size: u64,
    flash_file: Option<PathBuf>,
    power_cut_at: Option<u64>,
    bus: BusModel,
    echo_host: bool,
    quiet_log: bool,
    summary_json: Option<PathBuf>,
    ivshmem_server: Option<PathBuf>,
    agent_function: Option<PathBuf>,
    intx: Option<(PathBuf, u32)>,
    config_retry_limit: Option<std::time::Duration>,
    slot: Option<u32>,
}

/// Slots in a chassis.
const SLOTS: u32 = 20;

enum Parsed {
    // Boxed: the arguments dwarf the other variants.
    Run(Box<Args>),
    Help,
    DescribeBus(BusModel),
    Broker { socket: PathBuf, qtest: PathBuf },
}

fn parse_count(text: &str) -> Option<u64> {
    let text = text.replace('_', "");
    if let Some((mantissa, exp)) = text.split_once(['e', 'E']) {
        let mantissa: u64 = mantissa.parse().ok()?;
        let exp: u32 = exp.parse().ok()?;
        return mantissa.checked_mul(10u64.checked_pow(exp)?);
    }
    text.parse().ok()
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut firmware = None;
    let mut boot = None;
    let mut provision = Vec::new();
    let mut identity_serial = None;
    let mut max_insns = None;
    let mut ram_file = None;
    let mut host_ram_file = None;
    let mut host_ram_size = DEFAULT_HOST_RAM_SIZE;
    let mut flash_file = None;
    let mut power_cut_at = None;
    let mut bus = BusModel::default();
    let mut describe_bus = false;
    let mut echo_host = false;
    let mut quiet_log = false;
    let mut summary_json = None;
    let mut ivshmem_server = None;
    let mut agent_function = None;
    let mut intx_broker = None;
    let mut intx_gsi = None;
    let mut qtest = None;
    let mut config_retry_limit = None;
    let mut slot = None;
    let mut host_ram_size_given = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| inline.clone().or_else(|| args.next()).ok_or(format!("{name} needs {what}"));
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--firmware" => firmware = Some(PathBuf::from(value("a file")?)),
            "--boot" => boot = Some(PathBuf::from(value("a file")?)),
            "--provision-slot" => {
                let v = value("SLOT=IMAGE")?;
                let (slot, path) = v.split_once('=').ok_or(format!("--provision-slot: not SLOT=IMAGE: {v}"))?;
                let offset = FLASH_SLOTS
                    .iter()
                    .find(|(name, _)| slot.eq_ignore_ascii_case(&name.to_string()))
                    .map(|&(_, slot)| MPC8349EMDS.slot(slot).offset)
                    .ok_or(format!("--provision-slot: not a slot (A or B): {slot}"))?;
                provision.push((offset, PathBuf::from(path)));
            }
            "--max-insns" => {
                let v = value("a number")?;
                max_insns = Some(parse_count(&v).ok_or(format!("--max-insns: not a number: {v}"))?);
            }
            "--ram-file" => ram_file = Some(PathBuf::from(value("a path")?)),
            "--host-ram-file" => host_ram_file = Some(PathBuf::from(value("a path")?)),
            "--host-ram-size" => {
                let v = value("a number")?;
                host_ram_size =
                    parse_count(&v).filter(|&n| n > 0).ok_or(format!("--host-ram-size: not a size: {v}"))?;
                host_ram_size_given = true;
            }
            "--flash-file" => flash_file = Some(PathBuf::from(value("a path")?)),
            "--power-cut-at" => {
                let v = value("a number")?;
                power_cut_at = Some(
                    parse_count(&v)
                        .filter(|&n| n > 0)
                        .ok_or(format!("--power-cut-at: not an operation number (1, 2, ...): {v}"))?,
                );
            }
            "--bus" => {
                let v = value("pci32 or pci64")?;
                bus = BusModel::from_name(&v).ok_or(format!("--bus: {v} is not a bus model (pci32, pci64)"))?;
            }
            "--describe-bus-model" => describe_bus = true,
            "--echo-host" => echo_host = true,
            "--quiet-log" => quiet_log = true,
            "--summary-json" => summary_json = Some(PathBuf::from(value("a path")?)),
            "--ivshmem-server" => ivshmem_server = Some(PathBuf::from(value("a socket path")?)),
            "--agent-function" => agent_function = Some(PathBuf::from(value("a socket path")?)),
            "--intx-broker" => intx_broker = Some(PathBuf::from(value("a socket path")?)),
            "--qtest" => qtest = Some(PathBuf::from(value("a socket path")?)),
            "--intx-gsi" => {
                let v = value("a GSI")?;
                intx_gsi = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|&n| n < bpnet_emu::intx::GSIS)
                        .ok_or(format!("--intx-gsi: not an I/O APIC input (0..{}): {v}", bpnet_emu::intx::GSIS - 1))?,
                );
            }
            "--config-retry-limit" => {
                let v = value("seconds")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or(format!("--config-retry-limit: not a number of seconds (0 < s <= 3600): {v}"))?;
                config_retry_limit = Some(std::time::Duration::from_secs_f64(secs));
            }
            "--provision-identity" => {
                let v = value("a serial number")?;
                identity_serial = Some(
                    v.parse::<u32>().ok().filter(|&n| n != 0 && n <= bpnet_services::identity::SERIAL_MAX).ok_or(
                        format!(
                            "--provision-identity: not a serial (1..={}): {v}",
                            bpnet_services::identity::SERIAL_MAX
                        ),
                    )?,
                );
            }
            "--slot" => {
                let v = value("a slot number")?;
                slot = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|&n| n < SLOTS)
                        .ok_or(format!("--slot: not a slot (0..{}): {v}", SLOTS - 1))?,
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if describe_bus {
        return Ok(Parsed::DescribeBus(bus));
    }
    if let Some(qtest) = qtest {
        let socket = intx_broker.ok_or("--qtest belongs to the INTx broker: --intx-broker SOCKET --qtest QTEST")?;
        if firmware.is_some() {
            return Err("the INTx broker (--intx-broker with --qtest) runs no firmware".to_string());
        }
        return Ok(Parsed::Broker { socket, qtest });
    }
    let firmware = firmware.ok_or("--firmware is required")?;
    let intx = match (intx_broker, intx_gsi) {
        (Some(path), Some(gsi)) => Some((path, gsi)),
        (None, None) => None,
        (Some(_), None) => return Err("--intx-broker needs --intx-gsi (or --qtest to be the broker)".to_string()),
        (None, Some(_)) => return Err("--intx-gsi needs --intx-broker".to_string()),
    };
    // A live host on the other side of the bus: the guest, through one of the two personalities.
    let live = match (&agent_function, &ivshmem_server) {
        (Some(_), Some(_)) => {
            return Err("--agent-function and --ivshmem-server are two personalities: choose one".to_string())
        }
        (Some(_), None) => Some("--agent-function"),
        (None, Some(_)) => Some("--ivshmem-server"),
        (None, None) => None,
    };
    if agent_function.is_none() && (intx.is_some() || config_retry_limit.is_some()) {
        return Err("--intx-broker/--intx-gsi and --config-retry-limit need --agent-function".to_string());
    }
    if let Some(option) = live {
        if host_ram_file.is_none() {
            return Err(format!("{option} needs --host-ram-file (the guest's RAM file)"));
        }
        if echo_host {
            return Err(format!("--echo-host plays a host; with {option} the host is the QEMU guest"));
        }
        if !host_ram_size_given {
            // The guest decides its RAM's size: all of the existing file is host RAM.
            host_ram_size = 0;
        }
    }
    Ok(Parsed::Run(Box::new(Args {
        firmware,
        boot,
        provision,
        identity_serial,
        max_insns,
        ram_file,
        host_ram_file,
        host_ram_size,
        flash_file,
        power_cut_at,
        bus,
        echo_host,
        quiet_log,
        summary_json,
        ivshmem_server,
        agent_function,
        intx,
        config_retry_limit,
        slot,
    })))
}

fn virtual_time(ps: u64) -> String {
    let s = ps as f64 * 1e-12;
    if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("bpnet-emu: error: {message}");
    ExitCode::from(3)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => *args,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::DescribeBus(bus)) => {
            print!("{bus}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Broker { socket, qtest }) => return broker(&socket, &qtest),
        Err(e) => {
            eprint!("bpnet-emu: error: {e}\n{USAGE}");
            return ExitCode::from(3);
        }
    };
    let name = args.firmware.display().to_string();
    let elf = match std::fs::read(&args.firmware) {
        Ok(bytes) => bytes,
        Err(e) => return fail(format_args!("{name}: {e}")),
    };
    let mut board = match Board::new(Config {
        ram_file: args.ram_file,
        max_instructions: args.max_insns,
        host_ram_file: args.host_ram_file,
        host_ram_size: args.host_ram_size,
        host_ram_existing: args.ivshmem_server.is_some() || args.agent_function.is_some(),
        flash_file: args.flash_file,
        power_cut_at: args.power_cut_at,
        bus: args.bus,
    }) {
        Ok(board) => board,
        Err(e) => return fail(e),
    };
    for (offset, path) in &args.provision {
        let image = match std::fs::read(path) {
            Ok(bytes) if bytes.len() <= MPC8349EMDS.slot(Slot::A).len as usize => bytes,
            Ok(bytes) => return fail(format_args!("{}: {} bytes do not fit a slot", path.display(), bytes.len())),
            Err(e) => return fail(format_args!("{}: {e}", path.display())),
        };
        if let Err(e) = board.provision_flash(*offset, &image) {
            return fail(format_args!("{}: {e}", path.display()));
        }
    }
    if let Some(serial) = args.identity_serial {
        // The slot is the chassis's word (--slot); without it the board knows its serial only.
        let slot = args.slot.and_then(|n| u8::try_from(n).ok());
        let record = match (bpnet_services::identity::Identity { serial, slot }).to_bytes() {
            Ok(record) => record,
            Err(e) => return fail(format_args!("--provision-identity {serial}: {e:?}")),
        };
        if let Err(e) = board.provision_flash(bpnet_services::identity::RECORD_OFFSET, &record) {
            return fail(format_args!("--provision-identity: {e}"));
        }
    }
    let loaded = match &args.boot {
        Some(path) => match std::fs::read(path) {
            Ok(boot) => board.load_boot(&boot, Some(&elf)).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) => return fail(format_args!("{}: {e}", path.display())),
        },
        None => board.load_elf(&elf).map_err(|e| format!("{name}: {e}")),
    };
    let info = match loaded {
        Ok(info) => info,
        Err(e) => return fail(e),
    };
    for note in &info.notes {
        eprintln!("bpnet-emu: note: {name}: {note}");
    }
    let quiet_log = args.quiet_log;
    board.set_output(move |out| {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (e.g. piped into `head`) must not stop the emulation.
        let _ = match out {
            Output::Console(bytes) => stdout.write_all(bytes),
            Output::Log(line) if !quiet_log => writeln!(stdout, "{line}"),
            Output::Log(_) => Ok(()),
        };
        let _ = stdout.flush();
    });

    let who = match args.slot {
        Some(n) => format!("bpnet-emu[slot {n}]"),
        None => "bpnet-emu".to_string(),
    };
    let mut server = None;
    if let Some(socket) = &args.ivshmem_server {
        match serve(&mut board, &info, socket, &who) {
            Ok(Some(s)) => server = Some(s),
            Ok(None) => {
                eprintln!("{who}: stopped before the host connected");
                return ExitCode::SUCCESS;
            }
            Err(e) => return fail(e),
        }
    }

    let mut proxy = None;
    if let Some(socket) = &args.agent_function {
        match serve_agent_function(&mut board, socket, args.intx.as_ref(), args.config_retry_limit, &who) {
            Ok(stats) => proxy = Some(stats),
            Err(e) => return fail(e),
        }
    }

    let started = Instant::now();
    let mut echo = EchoHost::default();
    let outcome = loop {
        let outcome = board.run();
        // The firmware waits for the host with interrupts on: answer, then let it run on.
        if args.echo_host && matches!(outcome, Outcome::Idle { .. }) && echo.serve(&mut board) {
            continue;
        }
        break outcome;
    };
    let host = started.elapsed().as_secs_f64();
    let instructions = board.instructions();
    let headline = match &outcome {
        Outcome::Idle { .. } => "idle".to_string(),
        Outcome::InstructionLimit => "instruction limit reached".to_string(),
        other => other.to_string(),
    };
    // Host speed counts emulated instructions only, not time skipped while the core waited in `b .`.
    let emulated = instructions - board.skipped_instructions();
    let mips = if host > 0.0 { emulated as f64 / host / 1e6 } else { 0.0 };
    let resets = match board.resets() {
        0 => String::new(),
        n => format!(", {n} board reset(s)"),
    };
    let cuts = match board.power_cuts() {
        0 => String::new(),
        n => format!(", {n} power cut(s)"),
    };
    let headline = match board.host_end() {
        Some(end) => format!("host side ended ({end})"),
        None => headline,
    };
    eprintln!(
        "{who}: {headline} after {instructions} instructions ({} virtual, {:.2} MHz core{resets}{cuts}); host {mips:.1} MIPS",
        virtual_time(board.virtual_time_ps()),
        CORE_HZ / 1e6
    );
    if board.dcache_locked() {
        eprintln!(
            "{who}: D-cache left locked (HID0[DLOCK] = 1, as U-Boot leaves it at `go`): every data access of \
             the program ran cache-inhibited"
        );
    }
    let stats = board.dma_stats();
    let sum = |f: fn(&bpnet_emu::DmaStats) -> u64| stats.iter().map(f).sum::<u64>();
    let (to_host, from_host, local) = (sum(|s| s.bytes_to_host), sum(|s| s.bytes_from_host), sum(|s| s.bytes_local));
    let (above_256m, above_1g) = (sum(|s| s.bytes_to_host_above_256m), sum(|s| s.bytes_to_host_above_1g));
    let after_release = sum(|s| s.host_writes_after_release);
    if to_host + from_host + local > 0 {
        eprintln!(
            "{who}: DMA moved {to_host} bytes to the host, {from_host} from the host, {local} within RAM \
             (virtual time under the {} bus model; --describe-bus-model)",
            board.bus_model().name()
        );
        eprintln!(
            "{who}: DMA into host RAM: {above_256m} bytes at bus addresses from 256 MiB, {above_1g} from 1 GiB; \
             {after_release} writes after the host released the agent"
        );
    }
    let stats = server.as_ref().map(|s| s.stats()).unwrap_or_default();
    if server.is_some() {
        eprintln!(
            "{who}: ivshmem: {} work and {} control doorbells from the host, {} status and {} link interrupts to it, {} agent \
             resets; refused: {} rings of unknown vectors, {} outbound doorbells without a vector, {} stray bytes",
            stats.work_doorbells,
            stats.control_doorbells,
            stats.interrupts[bpnet_contract::ivshmem::VECTOR_STATUS as usize],
            stats.interrupts[bpnet_contract::ivshmem::VECTOR_LINK as usize],
            board.host_resets(),
            stats.unknown_doorbells,
            stats.unmapped_outbound,
            stats.unexpected_bytes,
        );
    }
    let function = board.function_stats();
    let pstats = proxy.as_ref().map(|p| p.get()).unwrap_or_default();
    if proxy.is_some() {
        eprintln!(
            "{who}: agent function: {} config reads, {} writes, {} held by the configuration lock ({} given up); \
             BAR0 {} reads {} writes (mean {} ns to reply), BAR1 {} reads {} writes (mean {} ns); refused {} \
             host writes and {} reads of unmodelled registers; {} master aborts; {} INTx level changes; {} agent resets",
            function.config_reads,
            function.config_writes,
            function.config_retries,
            pstats.config_given_up,
            function.bar0_reads,
            function.bar0_writes,
            pstats.bar0_mean_ns(),
            function.bar1_reads,
            function.bar1_writes,
            pstats.bar1_mean_ns(),
            function.refused_writes,
            function.refused_reads,
            function.master_aborts,
            pstats.intx_changes,
            board.host_resets(),
        );
    }
    if let Some(path) = &args.summary_json {
        let markers: Vec<String> =
            board.markers().iter().map(|m| format!("[{},{},{}]", m.value, m.instructions, m.virtual_ps)).collect();
        let json = format!(
            "{{\"outcome\":\"{}\",\"exit_code\":{},\"instructions\":{instructions},\
             \"skipped_instructions\":{},\"virtual_ns\":{},\"wall_ns\":{},\"resets\":{},\
             \"power_cuts\":{},\"flash_operations\":{},\"bus_model\":\"{}\",\"dma_bytes_to_host\":{to_host},\
             \"dma_bytes_from_host\":{from_host},\"dma_bytes_local\":{local},\
             \"dma_bytes_to_host_above_256m\":{above_256m},\"dma_bytes_to_host_above_1g\":{above_1g},\
             \"dma_host_writes_after_release\":{after_release},\"host_released_at_end\":{},\"host_bar_reads\":{},\
             \"host_bar_writes\":{},\"inta_assertions\":{},\"slot\":{},\"host_end\":{},\
             \"ivshmem_work_doorbells\":{},\"ivshmem_control_doorbells\":{},\"ivshmem_status_interrupts\":{},\"ivshmem_link_interrupts\":{},\
             \"host_resets\":{},\"config_reads\":{},\"config_writes\":{},\"config_retries\":{},\
             \"config_given_up\":{},\"bar0_reads\":{},\"bar0_writes\":{},\"bar1_reads\":{},\"bar1_writes\":{},\
             \"bar0_service_ns_mean\":{},\"bar1_service_ns_mean\":{},\"host_writes_refused\":{},\"host_reads_refused\":{},\
             \"master_aborts\":{},\"intx_changes\":{},\"dcache_locked\":{},\"markers\":[{}],\"message\":\"{}\"}}\n",
            outcome.kind(),
            outcome.exit_code(),
            board.skipped_instructions(),
            board.virtual_time_ns(),
            (host * 1e9) as u64,
            board.resets(),
            board.power_cuts(),
            board.flash_operations(),
            board.bus_model().name(),
            u8::from(board.host_released()),
            board.host_bar_reads(),
            board.host_bar_writes(),
            board.inta_assertions(),
            args.slot.map_or("null".to_string(), |n| n.to_string()),
            board.host_end().map_or("null".to_string(), |e| format!("\"{}\"", json_escape(e))),
            stats.work_doorbells,
            stats.control_doorbells,
            stats.interrupts[bpnet_contract::ivshmem::VECTOR_STATUS as usize],
            stats.interrupts[bpnet_contract::ivshmem::VECTOR_LINK as usize],
            board.host_resets(),
            function.config_reads,
            function.config_writes,
            function.config_retries,
            pstats.config_given_up,
            function.bar0_reads,
            function.bar0_writes,
            function.bar1_reads,
            function.bar1_writes,
            pstats.bar0_mean_ns(),
            pstats.bar1_mean_ns(),
            function.refused_writes,
            function.refused_reads,
            function.master_aborts,
            pstats.intx_changes,
            board.dcache_locked(),
            markers.join(","),
            json_escape(&outcome.to_string()),
        );
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("bpnet-emu: error: {}: {e}", path.display());
        }
    }
    ExitCode::from(outcome.exit_code() as u8)
}

/// Set up the ivshmem server mode: the shared region gets its own memory file, the socket listens, the
/// host (QEMU) connects and gets the set-up, and the board is wired to it. `Ok(None)`: stopped by a
/// signal before the host connected.
fn serve(
    board: &mut Board,
    info: &bpnet_emu::LoadInfo,
    socket: &std::path::Path,
    who: &str,
) -> Result<Option<Rc<Server>>, String> {
    let (addr, len) = info.shared_region.ok_or(format!(
        "the firmware names no shared region ({} / {})",
        bpnet_emu::SHARED_SYMBOL,
        bpnet_emu::SHARED_LEN_SYMBOL
    ))?;
    if len as usize != bpnet_contract::shared::LEN {
        return Err(format!(
            "the firmware's shared region is {len:#x} bytes, the contract's is {:#x}",
            bpnet_contract::shared::LEN
        ));
    }
    let file = board.share_region(addr, len).map_err(|e| e.to_string())?;
    let signals = Signals::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    let listener = Listener::bind(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    eprintln!("{who}: ivshmem server listening on {}", socket.display());
    let Some(server) = Server::accept(&listener, &file, signals).map_err(|e| format!("serving the host: {e}"))? else {
        return Ok(None);
    };
    eprintln!(
        "{who}: host connected: shared region {addr:#010x} ({len:#x} bytes) is its BAR2, {} vectors each way",
        ivshmem::VECTORS
    );
    let server = Rc::new(server);
    let doorbells = server.clone();
    board.connect_outbound_doorbells(Some(OutboundDoorbells(Rc::new(move |bits| doorbells.ring_outbound(bits)))));
    board.attach_live_host(Box::new(server.clone()));
    Ok(Some(server))
}

/// Set up the agent-function mode: the board's configuration header belongs to the host (no stand-in
/// enumeration), the socket listens, the INTx broker is reached, and the reader thread starts; the
/// firmware starts at once (QEMU's configuration reads wait for the lock anyway).
fn serve_agent_function(
    board: &mut Board,
    socket: &std::path::Path,
    intx: Option<&(PathBuf, u32)>,
    retry_limit: Option<std::time::Duration>,
    who: &str,
) -> Result<Rc<std::cell::Cell<ProxyStats>>, String> {
    board.set_standalone_host(false);
    let signals = Signals::install().map_err(|e| format!("installing signal handlers: {e}"))?;
    let intx = match intx {
        Some((path, gsi)) => {
            Some(IntxClient::connect(path, *gsi).map_err(|e| format!("INTx broker {}: {e}", path.display()))?)
        }
        None => None,
    };
    let listener = Listener::bind(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut function = AgentFunction::start(Source::Listen(listener), board.core_stopper(), Some(signals), intx, who)
        .map_err(|e| format!("starting the agent function: {e}"))?;
    if let Some(limit) = retry_limit {
        function.set_config_retry_limit(limit);
    }
    let stats = function.stats();
    board.attach_live_host(Box::new(function));
    eprintln!("{who}: agent function listening on {}", socket.display());
    Ok(stats)
}

/// The INTx broker's process mode.
fn broker(socket: &std::path::Path, qtest: &std::path::Path) -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(format_args!("installing signal handlers: {e}")),
    };
    let mut broker = match Broker::new(socket, qtest) {
        Ok(b) => b,
        Err(e) => return fail(format_args!("{}: {e}", socket.display())),
    };
    eprintln!("bpnet-emu: intx broker listening on {}", socket.display());
    match broker.run(Some(&signals)) {
        Ok(end) => {
            let s = broker.stats();
            eprintln!(
                "bpnet-emu: intx broker: {end}; {} clients, {} level requests ({} malformed), {} set_irq_in commands",
                s.clients, s.level_requests, s.bad_lines, s.qtest_commands
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("intx broker: {e}")),
    }
}

/// The host side of the self-test handshake (`bpnet_contract::selftest`), acting on INTA# between runs.
/// It answers in no virtual time: the firmware is idle while it waits.
#[derive(Default)]
struct EchoHost {
    challenge: Option<u32>,
    rounds: u32,
}

impl EchoHost {
    /// Act on what the agent raised; `true` if the agent was answered and should run on.
    fn serve(&mut self, board: &mut Board) -> bool {
        use bpnet_contract::selftest::{reply, BAR_PCI_ADDRESS, DOORBELL, READY};
        const OM0I: u32 = 0x1;
        const OM1I: u32 = 0x2;
        const ODI: u32 = 0x8;
        if !board.inta_asserted() {
            return false;
        }
        let status = board.host_outbound_status();
        let mut answered = false;
        if status & (OM1I | ODI) != 0 {
            let got = board.host_read_message(1).unwrap_or(0);
            let bells = board.host_read_odr();
            board.host_clear_outbound(OM1I);
            board.host_clear_odr(bells);
            match self.challenge.take() {
                Some(c) if got == reply(c) && bells & DOORBELL != 0 => {
                    eprintln!("bpnet-emu: echo-host: reply {got:#010x} to challenge {c:#010x}: ok")
                }
                c => eprintln!(
                    "bpnet-emu: echo-host: unexpected reply {got:#010x}, doorbell {bells:#x} (challenge {c:x?})"
                ),
            }
            answered = true;
        }
        if status & OM0I != 0 {
            let message = board.host_read_message(0).unwrap_or(0);
            board.host_clear_outbound(OM0I);
            if message == READY {
                self.rounds += 1;
                // Read the challenge through the agent's inbound window, as a host reads its BAR.
                let mut word = [0u8; 4];
                let at = BAR_PCI_ADDRESS + bpnet_contract::shared::LOG_RING_OFFSET as u32;
                let challenge = match board.host_bar_read(at, &mut word) {
                    Ok(()) => u32::from_le_bytes(word),
                    Err(e) => {
                        eprintln!("bpnet-emu: echo-host: BAR read at {at:#010x} failed: {e}");
                        0xBAD0_0000 | self.rounds
                    }
                };
                let _ = board.host_write_message(0, challenge);
                board.host_ring_doorbell(DOORBELL);
                self.challenge = Some(challenge);
                eprintln!("bpnet-emu: echo-host: agent ready, challenge {challenge:#010x} sent");
            }
            answered = true;
        }
        answered
    }
}

/// Escape a string for a JSON string literal.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let Ok(Parsed::Run(a)) = parse(&["--firmware", "f.elf", "--max-insns=1e6", "--quiet-log"]) else { panic!() };
        assert_eq!((a.firmware, a.max_insns, a.quiet_log), (PathBuf::from("f.elf"), Some(1_000_000), true));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        let Ok(Parsed::Run(a)) = parse(&[
            "--firmware=f",
            "--host-ram-file",
            "h",
            "--host-ram-size=128e6",
            "--flash-file",
            "fl",
            "--power-cut-at",
            "3",
            "--bus",
            "pci64",
        ]) else {
            panic!()
        };
        assert_eq!(
            (a.host_ram_file, a.host_ram_size, a.flash_file, a.power_cut_at, a.bus),
            (Some(PathBuf::from("h")), 128_000_000, Some(PathBuf::from("fl")), Some(3), BusModel::Pci64At66)
        );
        assert!(matches!(
            parse(&["--describe-bus-model", "--bus=pci64"]),
            Ok(Parsed::DescribeBus(BusModel::Pci64At66))
        ));
        assert!(parse(&["--firmware", "f", "--bus", "isa"]).is_err());
        let Ok(Parsed::Run(a)) = parse(&["--firmware=f", "--echo-host"]) else { panic!() };
        assert!(a.echo_host);
        assert!(parse(&["--firmware", "f", "--power-cut-at", "0"]).is_err());
        let Ok(Parsed::Run(a)) = parse(&["--firmware=f", "--ivshmem-server", "s", "--host-ram-file=g", "--slot", "3"])
        else {
            panic!()
        };
        assert_eq!((a.ivshmem_server, a.slot, a.host_ram_size), (Some(PathBuf::from("s")), Some(3), 0));
        assert!(parse(&["--firmware=f", "--ivshmem-server", "s"]).is_err(), "needs the guest's RAM");
        assert!(parse(&["--firmware=f", "--ivshmem-server=s", "--host-ram-file=g", "--echo-host"]).is_err());
        assert!(parse(&["--firmware=f", "--slot", "20"]).is_err());
        let Ok(Parsed::Run(a)) = parse(&[
            "--firmware=f",
            "--agent-function",
            "s",
            "--host-ram-file=g",
            "--intx-broker",
            "b",
            "--intx-gsi",
            "21",
            "--config-retry-limit",
            "2.5",
        ]) else {
            panic!()
        };
        assert_eq!(
            (a.agent_function, a.intx, a.config_retry_limit, a.host_ram_size),
            (Some(PathBuf::from("s")), Some((PathBuf::from("b"), 21)), Some(std::time::Duration::from_millis(2500)), 0)
        );
        assert!(parse(&["--firmware=f", "--agent-function", "s"]).is_err(), "needs the guest's RAM");
        assert!(parse(&["--firmware=f", "--agent-function=s", "--host-ram-file=g", "--intx-broker=b"]).is_err());
        assert!(parse(&["--firmware=f", "--agent-function=s", "--host-ram-file=g", "--intx-gsi=24"]).is_err());
        assert!(parse(&["--firmware=f", "--intx-broker=b", "--intx-gsi=20"]).is_err(), "needs --agent-function");
        assert!(parse(&["--firmware=f", "--agent-function=s", "--ivshmem-server=i", "--host-ram-file=g"]).is_err());
        assert!(matches!(
            parse(&["--intx-broker", "b", "--qtest", "q"]),
            Ok(Parsed::Broker { socket, qtest }) if socket == std::path::Path::new("b") && qtest == std::path::Path::new("q")
        ));
        assert!(parse(&["--qtest", "q"]).is_err());
        assert!(parse(&["--firmware=f", "--intx-broker", "b", "--qtest", "q"]).is_err());
        let Ok(Parsed::Run(a)) =
            parse(&["--firmware=f", "--boot", "b.elf", "--provision-slot", "A=a.img", "--provision-slot=b=b.img"])
        else {
            panic!()
        };
        assert_eq!(a.boot, Some(PathBuf::from("b.elf")));
        assert_eq!(a.provision, [(0x14_0000, PathBuf::from("a.img")), (0x94_0000, PathBuf::from("b.img"))]);
        assert!(parse(&["--firmware=f", "--provision-slot", "C=x.img"]).is_err());
        assert!(parse(&["--firmware=f", "--provision-slot", "x.img"]).is_err());
        let Ok(Parsed::Run(a)) = parse(&["--firmware=f", "--provision-identity", "1002", "--slot", "2"]) else {
            panic!()
        };
        assert_eq!((a.identity_serial, a.slot), (Some(1002), Some(2)));
        assert!(parse(&["--firmware=f", "--provision-identity", "0"]).is_err());
        assert!(parse(&["--firmware=f", "--provision-identity", "16777216"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--firmware"]).is_err());
        assert!(parse(&["--firmware", "x", "--bogus"]).is_err());
        assert_eq!(parse_count("2_000"), Some(2000));
        assert_eq!(parse_count("x"), None);
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
