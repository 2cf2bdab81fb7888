//! Flashing, booting and resetting agents: the image's header (what version to expect back), the
//! module's control files (`bpnet_control`, `bpnet_recovery`), the TFTP root, and waiting for an agent
//! to come back as asked, read from its header state and boot block through the shared region.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agents::Agent;
use crate::boot::{self, BootInfo};
use crate::region::{self, Region};
use crate::Error;

/// The module's write-only control file on the PCI device.
pub const CONTROL_FILE: &str = "bpnet_control";
/// The module's write-only recovery area file on the PCI device.
pub const RECOVERY_FILE: &str = "bpnet_recovery";
/// header agent_state values bpctl waits for.
pub const STATE_RUNNING: u8 = 2;
pub const STATE_RECOVERY: u8 = 4;
/// How often the shared region is looked at while waiting.
const POLL: Duration = Duration::from_millis(200);

/// What an image file says about itself (its header; the agent verifies the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// `major.minor.patch`.
    pub version: String,
}

/// Read an image and check its header's form, so a file that is no image at all is refused here with
/// a clear message; a bad signature is the agent's to find.
pub fn read_image(path: &Path) -> Result<ImageInfo, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let (header, repr) = bpnet_image::Header::new_checked(&bytes[..])
        .and_then(|h| bpnet_image::HeaderRepr::parse(&h).map(|r| (h, r)))
        .map_err(|e| match e {
            // Its text says "not a bpnet image" already.
            bpnet_image::Error::BadMagic(_) => Error::Usage(format!("{}: {e}", path.display())),
            _ => Error::Usage(format!("{}: not a bpnet image: {e}", path.display())),
        })?;
    let expected = repr.image_len();
    if expected != bytes.len() as u64 {
        return Err(Error::Usage(format!(
            "{}: not a bpnet image: {} bytes, its header says {expected}",
            path.display(),
            bytes.len()
        )));
    }
    let version = region::firmware_version_text(header.image_version());
    Ok(ImageInfo { path: path.to_path_buf(), bytes, version })
}

/// Write `text` to the agent's `bpnet_control`.
pub fn control(agent: &Agent, text: &str) -> Result<(), Error> {
    let path = agent.dir.join(CONTROL_FILE);
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| control_error(&path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| control_error(&path, e))
}

fn control_error(path: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::Agent(format!(
            "{}: missing: bpnet.ko is older than the recovery interface (reload the module)",
            path.display()
        )),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::NotRoot(path.to_path_buf()),
        Some(libc::EBUSY) => Error::Agent(format!("{}: the agent is not in recovery (EBUSY)", path.display())),
        Some(libc::EFBIG) => {
            Error::Agent(format!("{}: the image does not fit the agent's recovery area (EFBIG)", path.display()))
        }
        _ => Error::Io(format!("writing {}", path.display()), e),
    }
}

/// Write `image` into the agent's recovery area through `bpnet_recovery`, `progress` after each chunk.
pub fn write_recovery(agent: &Agent, image: &[u8], mut progress: impl FnMut(u64)) -> Result<(), Error> {
    const CHUNK: usize = 64 << 10;
    let path = agent.dir.join(RECOVERY_FILE);
    let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| control_error(&path, e))?;
    let mut done = 0usize;
    while done < image.len() {
        let end = (done + CHUNK).min(image.len());
        let n = f.write_at(&image[done..end], done as u64).map_err(|e| control_error(&path, e))?;
        if n == 0 {
            return Err(Error::Agent(format!("{}: the module took no bytes at offset {done}", path.display())));
        }
        done += n;
        progress(done as u64);
    }
    Ok(())
}

/// Put `image` under the TFTP root; the file name the agent asks the server for. An image already
/// under the root is used where it is.
pub fn stage_tftp(root: &Path, image: &Path) -> Result<String, Error> {
    let root_c = root
        .canonicalize()
        .map_err(|e| Error::Usage(format!("TFTP root {}: {e} (create it, or pass --tftp-root)", root.display())))?;
    let image_c = image.canonicalize().map_err(|e| Error::Usage(format!("{}: {e}", image.display())))?;
    if let Ok(rel) = image_c.strip_prefix(&root_c) {
        return Ok(rel.to_string_lossy().into_owned());
    }
    let name = image_c
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("{}: no file name", image.display())))?;
    let target = root_c.join(&name);
    let tmp = root_c.join(format!(".{name}.bpctl-{}", std::process::id()));
    std::fs::copy(&image_c, &tmp).and_then(|_| std::fs::rename(&tmp, &target)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io(format!("copying {} to {}", image.display(), target.display()), e)
    })?;
    Ok(name)
}

/// The agent as the waits see it: the header's state byte and the boot block.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub agent_state: u8,
    pub boot: BootInfo,
}

pub fn snapshot(region: &Region) -> Result<Snapshot, Error> {
    Ok(Snapshot { agent_state: boot::agent_state(region)?, boot: boot::read(region)? })
}

fn state_name(s: u8) -> String {
    match bpnet_contract::bar::AgentState::try_from(s) {
        Ok(state) => region::state_text(Ok(state)),
        Err(e) => region::state_text(Err(e)),
    }
}

/// How an agent must come back.
#[derive(Debug, Clone, Default)]
pub struct Want {
    /// `major.minor.patch` of the running program.
    pub version: Option<String>,
    /// Boot source: flash, netboot, recovery.
    pub source: Option<&'static str>,
    /// A or B.
    pub slot: Option<String>,
    /// Confirmed (a trial boot from flash that took the host's link).
    pub confirmed: bool,
}

/// What is still missing for `want`, `None` when the agent is there.
pub fn missing(s: &Snapshot, want: &Want) -> Option<String> {
    let b = &s.boot;
    if s.agent_state != STATE_RUNNING {
        return Some(format!("agent state {} (stage {}), not running", state_name(s.agent_state), b.stage));
    }
    if let Some(v) = &want.version {
        if b.version.as_ref() != Some(v) {
            return Some(format!("version {}, not {v}", b.version.as_deref().unwrap_or("unknown")));
        }
    }
    if let Some(src) = want.source {
        if b.source != src {
            return Some(format!("boot source {}, not {src}", b.source));
        }
    }
    if let Some(slot) = &want.slot {
        if &b.slot != slot {
            return Some(format!("slot {}, not {slot}", b.slot));
        }
    }
    if want.confirmed && !b.confirmed {
        return Some(format!(
            "running from {} but not confirmed yet (it confirms once the host's link is up: is the netdev up?)",
            b.summary()
        ));
    }
    None
}

/// Poll the agent's shared region until `done` says it is there (`Ok(None)`), fails (`Err`) or
/// `limit` passes (an error naming what was missing last).
pub fn wait(
    agent: &Agent,
    region: &Region,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&Snapshot) -> Result<Option<String>, Error>,
) -> Result<Snapshot, Error> {
    let deadline = Instant::now() + limit;
    loop {
        let last = match snapshot(region) {
            Ok(s) => match done(&s)? {
                None => return Ok(s),
                Some(why) => why,
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::Agent(format!("{}: {what}: not within {} s: {last}", agent.name(), limit.as_secs())));
        }
        std::thread::sleep(POLL);
    }
}

/// A restart is seen when the agent's state is not the one it had before, or its uptime went back (a
/// new program counts from 0).
pub fn reset_seen(before: &Snapshot, now: &Snapshot) -> bool {
    now.agent_state != before.agent_state || now.boot.uptime_s < before.boot.uptime_s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: u8, source: &str, slot: &str, confirmed: bool, version: Option<&str>) -> Snapshot {
        Snapshot {
            agent_state: state,
            boot: BootInfo {
                source: source.into(),
                slot: slot.into(),
                trial: !confirmed,
                confirmed,
                stage: "firmware".into(),
                uptime_s: 5,
                version: version.map(str::to_string),
                recovery_offset: 0,
                recovery_capacity: 0,
                recovery_error: None,
                slot_a: boot::SlotInfo { state: "confirmed".into(), version: None },
                slot_b: boot::SlotInfo { state: "written".into(), version: None },
                request_seq: 0,
            },
        }
    }

    #[test]
    fn coming_back_after_a_flash() {
        let want =
            Want { version: Some("1.2.4".into()), source: Some("flash"), slot: Some("B".into()), confirmed: true };
        assert!(missing(&snap(0, "flash", "B", true, Some("1.2.4")), &want).unwrap().contains("reset"));
        assert!(missing(&snap(2, "flash", "A", true, Some("1.2.3")), &want).unwrap().contains("version 1.2.3"));
        assert!(missing(&snap(2, "flash", "A", true, Some("1.2.4")), &want).unwrap().contains("slot A"));
        assert!(missing(&snap(2, "netboot", "none", false, Some("1.2.4")), &want).unwrap().contains("source"));
        assert!(missing(&snap(2, "flash", "B", false, Some("1.2.4")), &want).unwrap().contains("not confirmed"));
        assert_eq!(missing(&snap(2, "flash", "B", true, Some("1.2.4")), &want), None);
        assert!(missing(&snap(9, "flash", "B", true, None), &Want::default()).unwrap().contains("undefined 9"));
    }

    #[test]
    fn a_reset_is_a_state_change_or_a_younger_uptime() {
        let before = snap(2, "flash", "A", true, None);
        let mut after = before.clone();
        assert!(!reset_seen(&before, &after));
        after.boot.uptime_s = 1;
        assert!(reset_seen(&before, &after));
        assert!(reset_seen(&before, &snap(0, "direct", "none", false, None)));
        // An agent that was only READY (its netdev down) has restarted once it shows another state.
        let ready = snap(1, "flash", "A", true, None);
        assert!(!reset_seen(&ready, &ready.clone()));
        assert!(reset_seen(&ready, &snap(0, "flash", "A", true, None)));
    }

    #[test]
    fn images_are_checked_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.img");
        std::fs::write(&junk, b"not an image at all, but long enough to hold a header? no").unwrap();
        let e = read_image(&junk).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("not a bpnet image"), "{e}");
        assert!(read_image(&dir.path().join("missing.img")).is_err());
    }

    #[test]
    fn tftp_staging_copies_once_and_uses_files_already_there() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let image = elsewhere.path().join("fw.img");
        std::fs::write(&image, b"image").unwrap();
        assert_eq!(stage_tftp(root.path(), &image).unwrap(), "fw.img");
        assert_eq!(std::fs::read(root.path().join("fw.img")).unwrap(), b"image");
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/x.img"), b"x").unwrap();
        assert_eq!(stage_tftp(root.path(), &root.path().join("sub/x.img")).unwrap(), "sub/x.img");
        let e = stage_tftp(&root.path().join("nope"), &image).unwrap_err();
        assert!(e.to_string().contains("--tftp-root"), "{e}");
    }
}
