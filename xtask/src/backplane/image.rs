//! The guest image and what runs it: Debian's kernel (extracted once), the firmware, the emulator, the
//! guest tool and bpctl, `bpnet.ko`, and the initramfs that carries them with the suites' scripts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{io, out_dir};
use crate::firmware::{self, Variant};
use crate::util::{self, Error, Result};

/// What every suite runs.
pub(crate) struct Tools {
    pub vmlinux: PathBuf,
    pub emulator: PathBuf,
    pub firmware: PathBuf,
    /// Initramfs without and with the module.
    pub initramfs: PathBuf,
    pub initramfs_module: Option<PathBuf>,
    /// Boot-stage suites: the boot stage's ELF and the signed firmware image slot A is provisioned
    /// with.
    pub boot: Option<BootStage>,
    /// The hostile suite's misbehaving agent image, when a suite needs it.
    pub hostile_agent: Option<PathBuf>,
}

pub(crate) struct BootStage {
    pub elf: PathBuf,
    pub image: PathBuf,
}

/// Build (or find current) everything a run needs; the module, the boot stage and the hostile agent
/// only when asked. Nothing is built once the suites run.
pub(crate) fn prepare(with_module: bool, with_boot_stage: bool, with_hostile_agent: bool) -> Result<Tools> {
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
    let hostile_agent = if with_hostile_agent { Some(firmware::build(Variant::HostileAgent)?) } else { None };
    Ok(Tools { vmlinux, emulator, firmware, initramfs, initramfs_module, boot, hostile_agent })
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

/// Debian's programs the guest runs, each with its package: the TFTP server the update suite serves
/// from, and the tools an operator manages a NIC with (ahead of busybox's applets on the guest's PATH).
const GUEST_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/sbin/in.tftpd", "tftpd-hpa"),
    ("/usr/bin/ip", "iproute2"),
    ("/usr/sbin/devlink", "iproute2"),
    ("/usr/sbin/ethtool", "ethtool"),
];

/// Debian's dynamic executables ([`GUEST_PROGRAMS`]) with the libraries `ldd` names, at the same
/// paths, and the few /etc files the TFTP server looks up (users, groups, services).
fn add_debian_programs(stage: &Path) -> Result<()> {
    for (program, package) in GUEST_PROGRAMS {
        let path = Path::new(program);
        if !path.exists() {
            return Err(Error::Failed(format!("{program} missing: install {package} (cargo xtask setup)")));
        }
        let out = Command::new("ldd").arg(path).output().map_err(io(format!("ldd {program}")))?;
        if !out.status.success() {
            return Err(Error::Failed(format!("ldd {program} failed: {}", String::from_utf8_lossy(&out.stderr))));
        }
        let mut files = vec![path.to_path_buf()];
        files.extend(ldd_paths(&String::from_utf8_lossy(&out.stdout)));
        for file in files {
            let to = stage.join(file.strip_prefix("/").unwrap_or(&file));
            if to.exists() {
                continue;
            }
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            }
            copy(&file, &to)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                .map_err(io(format!("making {} executable", to.display())))?;
        }
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
    // The same with security counter 1: the update suite's downgrade check.
    let newer = firmware::image_counter_1(firmware);
    if newer.exists() {
        copy(&newer, &stage.join("lib/firmware/bpnet/bpnet-firmware-counter1.img"))?;
    }
    add_debian_programs(&stage)?;
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
    for exe in ["init", "bin/busybox", "bin/bpnet-guest", "bin/bpctl"] {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
