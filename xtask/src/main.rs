//! `cargo xtask`: the project's only entry point. Set-up, builds, the board emulator, tests,
//! benchmarks and the demo. Each subcommand lives in its own module.

mod backplane;
mod baseline;
mod bench;
mod demo;
mod emu;
mod firmware;
mod header;
mod setup;
mod soak;
mod test;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  demo [--personality P]   the main job: the virtual backplane with 4 agents started from their
                           flash; bpctl list, ping, netboot one, flash one with progress, its log
                           (P: mpc834x, the default, as in a real chassis, or ivshmem)
  test                     run every test: unit tests (x86 and big-endian PowerPC), lints,
                           the firmware on the board emulator, a data-path benchmark run whose
                           figures must stay within 1 % of xtask/bench-baseline.json, bpnet.ko's
                           build with sparse and checkpatch.pl --strict clean, and the virtual
                           backplane's suites
  test --backplane         only the virtual backplane's end-to-end suites (see backplane)
  backplane [--personality P] [--suite S] [--agents N] [--bytes N] [--jobs J]
                           Linux (qemu-system-x86_64) with one PCI function per agent (1 to 20;
                           J suites at a time; P: mpc834x,
                           the default: an MPC834x agent function through QEMU's x-pci-proxy-dev
                           with shared INTx; ivshmem: an ivshmem-doorbell device), each served by
                           a board emulator; runs the guest's suites, prints a summary
  soak [--agents N] [--minutes M] [--personality P] [--json]
                           a full chassis (default 20 agents, 30 minutes, ivshmem) on the virtual
                           backplane: checked traffic both ways on every agent while resets,
                           module reloads, MTU changes, a flash, a netboot, a paused processor and
                           hostile BAR writes are injected, each seen and healed; no corruption,
                           the guest's memory back within a tolerance; figures in
                           target/soak.json (not part of test)
  firmware [--variant V]   build the firmware, its signed image and the boot stage (their paths
                           are printed; with --variant, that test image's ELF only: fault-test,
                           panic-test, cpu-bench, selftest, ring-bench, hostile-agent)
  firmware --test-env      build what the host tests run on the emulator and print their
                           environment (VAR=path lines), as a plain `cargo test` asks for it
  emu [--firmware ELF] [--max-insns N] [--selftest] [--from-flash]
                           boot a firmware ELF on the board emulator (console on stdout);
                           --from-flash: power on into the boot stage, which starts the ELF's
                           signed image from flash slot A;
                           exit 0 at the firmware's idle loop or after N instructions,
                           non-zero on a fault or an unmodelled access
  bench [--json] [--personality P] [--soak]
                           figures in virtual time and exact counts (DMA, the data path), then
                           the virtual backplane's wall-clock TCP throughput, notifications and
                           fast-path BAR reads per packet with and without suppression, and the
                           guest's cost per BAR read (mpc834x: through the proxy, with the
                           emulator's share), one guest boot per personality: both, or P only
                           (--json: one JSON object on the last line; rig keys end in _<P>;
                           --soak: the last soak's figures from target/soak.json too)
  bench --check-baseline   only the data-path run `test` makes, its exact-count and virtual-time
                           figures against xtask/bench-baseline.json (fails 1 % worse or more)
  bench --update-baseline  rewrite xtask/bench-baseline.json from that run (commit it with the
                           change that moved a figure, the reason in the message)
  gen-header               regenerate host-driver/include/bpnet_contract.h from the contract crate
  setup                    install the Debian packages the project needs (done by every
                           command when something is missing)

Every command installs what it needs first (Debian packages via apt-get, as root).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        print!("{HELP}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "demo" => demo::run(rest),
        "test" => test::run(rest),
        "firmware" => firmware::run(rest),
        "emu" => emu::run(rest),
        "bench" => bench::run(rest),
        "backplane" => backplane::run(rest),
        "soak" => soak::run(rest),
        "setup" => setup::run(rest),
        "gen-header" => util::no_more(rest).and_then(|()| {
            header::write(&util::root()).map_err(|e| util::Error::Io(format!("writing {}", header::PATH), e))?;
            println!("{}", header::PATH);
            Ok(ExitCode::SUCCESS)
        }),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        other => Err(util::Error::Usage(format!("unknown command `{other}`"))),
    };
    match result {
        Ok(code) => code,
        Err(util::Error::Usage(msg)) => {
            eprintln!("xtask: {msg}\n\n{HELP}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
