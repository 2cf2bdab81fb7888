//! `cargo xtask test`: everything, in the order that fails fastest.

use std::process::ExitCode;
use std::time::Instant;

use crate::firmware::{self, Variant};
use crate::util::{self, Result};

/// Portable crates that also run big-endian (PowerPC Linux user mode under qemu-ppc).
const BIG_ENDIAN_CRATES: &[&str] = &["bpnet-contract", "bpnet-ring", "bpnet-services", "norflash", "mpc8349"];
/// Crates that only build for the firmware target; linted there.
const FIRMWARE_CRATES: &[&str] = &["bpnet-firmware", "e300", "mpc8349", "mpc8349emds"];

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = args.to_vec();
    if util::take_flag(&mut args, "--backplane") {
        util::no_more(&args)?;
        return crate::backplane::test();
    }
    util::no_more(&args)?;
    let started = Instant::now();
    let mut steps: Vec<(&str, f64)> = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        eprintln!("xtask: test: {name}");
        let t = Instant::now();
        f()?;
        steps.push((name, t.elapsed().as_secs_f64()));
        Ok(())
    };

    step("set-up", &mut || crate::setup::ensure())?;
    step("generated C header is current", &mut || crate::header::check(&util::root()).map_err(util::Error::Failed))?;
    step("formatting", &mut || util::run(util::host_cargo().args(["fmt", "--all", "--check"]), "cargo fmt --check"))?;
    let mut elfs = Vec::new();
    step("firmware builds (release, fault-test, panic-test, selftest)", &mut || {
        elfs = [Variant::Release, Variant::FaultTest, Variant::PanicTest, Variant::SelfTest]
            .into_iter()
            .map(firmware::build)
            .collect::<Result<Vec<_>>>()?;
        Ok(())
    })?;
    step("firmware lints (clippy, PowerPC target)", &mut || {
        let root = util::root();
        let mut cmd = util::debian_cargo();
        cmd.args(["clippy", "--profile", "firmware", "-j2"])
            .arg("--target")
            .arg(root.join("firmware").join(format!("{}.json", firmware::TARGET)))
            .args([
                "-Zbuild-std=core,compiler_builtins",
                "-Zbuild-std-features=compiler-builtins-mem",
                "-Zjson-target-spec",
            ])
            .env("DEFMT_LOG", "info");
        for c in FIRMWARE_CRATES {
            cmd.args(["-p", c]);
        }
        cmd.args(["--", "-D", "warnings"]);
        util::run(&mut cmd, "firmware clippy")
    })?;
    step("host lints (clippy)", &mut || {
        util::run(util::host_cargo().args(["clippy", "--all-targets", "-j2", "--", "-D", "warnings"]), "host clippy")
    })?;
    step("host tests (x86: unit, property, emulator, firmware on the emulator)", &mut || {
        util::run(
            util::host_cargo()
                .args(["test", "-j2"])
                .env("BPNET_FIRMWARE_ELF", &elfs[0])
                .env("BPNET_FIRMWARE_FAULT_ELF", &elfs[1])
                .env("BPNET_FIRMWARE_PANIC_ELF", &elfs[2])
                .env("BPNET_FIRMWARE_SELFTEST_ELF", &elfs[3]),
            "host tests",
        )
    })?;
    step("big-endian tests (PowerPC under qemu-ppc)", &mut || {
        let mut cmd = util::debian_cargo();
        cmd.args(["test", "-j2", "--target", "powerpc-unknown-linux-gnu", "-Zbuild-std=std,panic_unwind"])
            .env("CARGO_TARGET_POWERPC_UNKNOWN_LINUX_GNU_LINKER", "powerpc-linux-gnu-gcc")
            .env("CARGO_TARGET_POWERPC_UNKNOWN_LINUX_GNU_RUNNER", "qemu-ppc -L /usr/powerpc-linux-gnu");
        for c in BIG_ENDIAN_CRATES {
            cmd.args(["-p", c]);
        }
        util::run(&mut cmd, "big-endian tests")
    })?;

    eprintln!("xtask: test: summary");
    for (name, secs) in &steps {
        eprintln!("  {secs:7.1} s  {name}");
    }
    eprintln!("  {:7.1} s  total", started.elapsed().as_secs_f64());
    println!("xtask test: {} passed, 0 failed", steps.len());
    Ok(ExitCode::SUCCESS)
}
