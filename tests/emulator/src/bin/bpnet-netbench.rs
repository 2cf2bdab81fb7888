//! `bpnet-netbench`: the data-path benchmarks on the emulated board, through the real firmware.

use std::path::PathBuf;
use std::process::ExitCode;

use bpnet_emu::netbench::{self, Figures, Flow};
use bpnet_emu::{Board, Config, Direction};

const USAGE: &str = "\
usage: bpnet-netbench --firmware ELF --ring-firmware ELF [--image-key SECRET] [--json] [--profile]

Runs the data-path benchmarks on the emulated MPC8349EMDS board with the host model in the kernel
module's place, and prints their figures. Time is virtual (e300 core at 533.33 MHz, one instruction per
cycle; DMA timed by the bus model, see `bpnet-emu --describe-bus-model`); instruction counts are exact.

  --firmware ELF       the release firmware (smoltcp and its services)
  --ring-firmware ELF  the ring-bench image, bpnet-firmware-ring-bench.elf (the ring path without a stack)
  --image-key SECRET   also run the control service's figures (NETBOOT of a 4 MiB payload, FLASH of
                       1 MiB), with images signed by this secret key file (the key the firmware
                       trusts: target/keys/dev-key.secret)
  --json               also print every figure as one JSON object on the last line
  --profile            also print where the agent's instructions went in each run (per function, and
                       memcpy/memset calls by call site)
  -h, --help           this text
";

/// Frames each way in the ring-path run: enough to wrap the 256-entry rings many times.
const RING_FRAMES: u64 = 4096;
/// Frame length of the ring-path run: a full 1500-byte-MTU Ethernet frame.
const RING_FRAME_LEN: usize = 1514;
/// TCP payload of the stack runs.
const TCP_BYTES: usize = 4 << 20;
/// Payload of the signed image the NETBOOT run fetches, and of the one the FLASH run writes.
const NETBOOT_BYTES: usize = 4 << 20;
const FLASH_BYTES: usize = 1 << 20;
/// The MTU of the NETBOOT run (its TFTP block size follows: the largest unfragmented).
const NETBOOT_MTU: u16 = 1500;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bpnet-netbench: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut firmware, mut ring_firmware, mut json, mut profile) = (None, None, false, false);
    let mut image_key = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--firmware" => firmware = args.next().map(PathBuf::from),
            "--ring-firmware" => ring_firmware = args.next().map(PathBuf::from),
            "--image-key" => image_key = args.next().map(PathBuf::from),
            "--json" => json = true,
            "--profile" => profile = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let read = |p: Option<PathBuf>, what: &str| -> Result<Vec<u8>, String> {
        let p = p.ok_or_else(|| format!("{what} is required\n{USAGE}"))?;
        std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let firmware = read(firmware, "--firmware")?;
    let ring_firmware = read(ring_firmware, "--ring-firmware")?;

    let board = Board::new(Config::default()).map_err(|e| e.to_string())?;
    let (to_host_rate, from_host_rate) =
        (netbench::sustained_rate(&board, Direction::ToHost), netbench::sustained_rate(&board, Direction::FromHost));
    drop(board);

    let (ring, ring_profile) = netbench::ring(&ring_firmware, RING_FRAMES, RING_FRAME_LEN, profile)?;
    let (echo, echo_profile) = netbench::tcp_echo(&firmware, TCP_BYTES, 1500, profile)?;
    let (tx, tx_profile) = netbench::tcp_one_way(&firmware, Flow::ToAgent, TCP_BYTES, 1500, profile)?;
    let (rx, rx_profile) = netbench::tcp_one_way(&firmware, Flow::ToHost, TCP_BYTES, 1500, profile)?;
    let control = match &image_key {
        Some(path) => Some(control_figures(&firmware, path, profile)?),
        None => None,
    };
    let tx_fraction = tx.rate() / from_host_rate;
    let rx_fraction = rx.rate() / to_host_rate;

    println!("bpnet data-path benchmarks (virtual time under the bus model; instruction counts exact)");
    println!(
        "  bus model sustained rates           {:.1} MB/s into host RAM, {:.1} MB/s from it",
        to_host_rate / 1e6,
        from_host_rate / 1e6
    );
    let show = |name: &str, f: &Figures| {
        println!(
            "  {name:<35} {:.0} instructions/frame, {:.4} notifications/packet ({} doorbells, {} interrupts), {} \
             host BAR reads, {} bytes copied by the host, {} + {} frames, {:.1} MB/s, DMA busy {:.0} %",
            f.instructions_per_frame(),
            f.notifications_per_packet(),
            f.doorbells,
            f.interrupts,
            f.host_bar_reads,
            f.host_copied_bytes,
            f.frames_to_agent,
            f.frames_to_host,
            f.rate() / 1e6,
            100.0 * f.dma_busy_fraction(),
        )
    };
    show("ring path, 1514-byte frames", &ring);
    if profile {
        print!("{}", ring_profile.report(25));
    }
    show("TCP echo, MTU 1500", &echo);
    if profile {
        print!("{}", echo_profile.report(25));
    }
    show("TCP host to agent (discard), MTU 1500", &tx);
    if profile {
        print!("{}", tx_profile.report(25));
    }
    show("TCP agent to host (bulk), MTU 1500", &rx);
    if profile {
        print!("{}", rx_profile.report(25));
    }
    println!("  TCP payload, host to agent          {tx_fraction:.3} of the bus's sustained rate from host RAM");
    println!("  TCP payload, agent to host          {rx_fraction:.3} of the bus's sustained rate into host RAM");
    // The NETBOOT payload moves host to agent as TFTP DATA: compared with the bus's rate from host
    // RAM, as the TCP host-to-agent figure is.
    let netboot_fraction = control.map(|(n, _)| n.figures.rate() / from_host_rate);
    if let (Some((n, f)), Some(fraction)) = (control, netboot_fraction) {
        let secs = |x: &Figures| x.virtual_ps as f64 / 1e12;
        println!(
            "  NETBOOT of a {} MiB signed payload   {:.3} s to verified in staging ({:.3} s fetching), {:.1} MB/s (MTU \
             {NETBOOT_MTU}, TFTP blksize {}, windowsize {}), {fraction:.3} of the bus's sustained rate from host RAM, \
             {:.0} instructions/frame",
            NETBOOT_BYTES >> 20,
            secs(&n.figures),
            n.fetch_ps as f64 / 1e12,
            n.figures.rate() / 1e6,
            n.blksize,
            n.windowsize,
            n.figures.instructions_per_frame()
        );
        println!(
            "  FLASH of a {} MiB signed image       {:.2} s (receive, verify, erase, program, read back, verify, record \
             the trial), {:.1} KB/s",
            FLASH_BYTES >> 20,
            secs(&f.figures),
            f.figures.rate() / 1e3
        );
    }
    if json {
        let all = [ring, echo, tx, rx];
        let mut fields = vec![
            format!("\"agent_insns_per_frame_ring\":{:.1}", ring.instructions_per_frame()),
            format!(
                "\"agent_insns_per_frame_tcp\":{:.1}",
                (tx.instructions + rx.instructions) as f64 / (tx.frames() + rx.frames()) as f64
            ),
            format!("\"agent_insns_per_frame_tcp_echo\":{:.1}", echo.instructions_per_frame()),
            format!("\"tx_bus_fraction_1500\":{tx_fraction:.4}"),
            format!("\"rx_bus_fraction_1500\":{rx_fraction:.4}"),
            format!("\"notifications_per_packet\":{:.5}", ring.notifications_per_packet()),
            format!(
                "\"host_bar_reads_per_packet\":{:.5}",
                all.iter().map(|f| f.host_bar_reads).sum::<u64>() as f64
                    / all.iter().map(|f| f.frames()).sum::<u64>() as f64
            ),
            format!("\"host_copied_bytes\":{}", all.iter().map(|f| f.host_copied_bytes).sum::<u64>()),
        ];
        if let (Some((n, f)), Some(fraction)) = (control, netboot_fraction) {
            fields.push(format!("\"netboot_4mib_s\":{:.4}", n.figures.virtual_ps as f64 / 1e12));
            fields.push(format!("\"netboot_bus_fraction\":{fraction:.4}"));
            fields.push(format!("\"netboot_blksize\":{}", n.blksize));
            fields.push(format!("\"netboot_fetch_s\":{:.4}", n.fetch_ps as f64 / 1e12));
            fields.push(format!(
                "\"netboot_fetch_bus_fraction\":{:.4}",
                NETBOOT_BYTES as f64 / (n.fetch_ps.max(1) as f64 / 1e12) / from_host_rate
            ));
            fields.push(format!("\"flash_update_1mib_s\":{:.3}", f.figures.virtual_ps as f64 / 1e12));
        }
        println!("{{{}}}", fields.join(","));
    }
    Ok(())
}

/// The control service's runs: NETBOOT of a [`NETBOOT_BYTES`] payload at [`NETBOOT_MTU`], FLASH of a
/// [`FLASH_BYTES`] one, both signed with `key`.
fn control_figures(
    firmware: &[u8],
    key: &std::path::Path,
    profile: bool,
) -> Result<(netbench::ControlFigures, netbench::ControlFigures), String> {
    let key = bpnet_image::keyfile::read_secret(key).map_err(|e| format!("{}: {e:?}", key.display()))?;
    let netboot_image = netbench::signed_image(&key, NETBOOT_BYTES, 0x00_01_00)?;
    let (netboot, netboot_profile) = netbench::netboot(firmware, &netboot_image, NETBOOT_MTU, profile)?;
    if profile {
        println!("  NETBOOT profile:");
        print!("{}", netboot_profile.report(25));
    }
    let flash_image = netbench::signed_image(&key, FLASH_BYTES, 0x00_01_00)?;
    let flash = netbench::flash_update(firmware, &flash_image)?;
    Ok((netboot, flash))
}
