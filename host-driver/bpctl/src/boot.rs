//! The boot block (shared offset `shared::BOOT_OFFSET`, 64 bytes): what the agent says about how it
//! started (source, slot, trial, confirmed), its uptime and version, its flash slots and, in recovery,
//! where the host writes an image and why the last one was refused. Agent-written: every value is
//! checked and an undefined one is shown as such, never trusted.

use bpnet_contract::bar::{self, boot_flags, boot_source, BootBlock, BootStage, BOOT_BLOCK_LEN, BOOT_SLOT_NONE};
use bpnet_contract::control::Source;
use bpnet_contract::shared;
use serde::Serialize;

use crate::region::{self, Region};
use crate::Error;

/// The boot block as bpctl shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootInfo {
    /// direct, flash, netboot, recovery (or `undefined N`).
    pub source: String,
    /// A, B, or `none`.
    pub slot: String,
    pub trial: bool,
    pub confirmed: bool,
    /// firmware, choosing, recovery-waiting, recovery-verifying, recovery-refused, starting.
    pub stage: String,
    pub uptime_s: u32,
    /// `major.minor.patch` of the running program, `None` when the agent does not know (0).
    pub version: Option<String>,
    pub recovery_offset: u32,
    pub recovery_capacity: u32,
    /// Why the last recovery image was refused, `None` when none was.
    pub recovery_error: Option<String>,
    pub slot_a: SlotInfo,
    pub slot_b: SlotInfo,
    pub request_seq: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// empty, written, confirmed, rejected, unknown (or `undefined N`).
    pub state: String,
    pub version: Option<String>,
}

impl BootInfo {
    /// `flash/B`, `netboot`: the source and the slot, the way `list` prints them.
    pub fn summary(&self) -> String {
        if self.slot == "none" {
            self.source.clone()
        } else {
            format!("{}/{}", self.source, self.slot)
        }
    }
}

fn version(v: u32) -> Option<String> {
    (v != 0).then(|| region::firmware_version_text(v))
}

pub fn source_text(b: u8) -> String {
    let source = match b {
        boot_source::DIRECT => Source::Direct,
        boot_source::FLASH => Source::Flash,
        boot_source::NETBOOT => Source::Netboot,
        boot_source::RECOVERY => Source::Recovery,
        other => return format!("undefined {other}"),
    };
    source.as_str().to_string()
}

fn slot_text(b: u8) -> String {
    match b {
        0 => "A".into(),
        1 => "B".into(),
        BOOT_SLOT_NONE => "none".into(),
        other => format!("undefined {other}"),
    }
}

pub fn stage_text(b: u8) -> String {
    match BootStage::try_from(b) {
        Ok(BootStage::Firmware) => "firmware".into(),
        Ok(BootStage::Choosing) => "choosing".into(),
        Ok(BootStage::RecoveryWaiting) => "recovery-waiting".into(),
        Ok(BootStage::RecoveryVerifying) => "recovery-verifying".into(),
        Ok(BootStage::RecoveryRefused) => "recovery-refused".into(),
        Ok(BootStage::Starting) => "starting".into(),
        Err(_) => format!("undefined {b}"),
    }
}

fn slot_state_text(b: u8) -> String {
    match b {
        0 => "empty".into(),
        1 => "written".into(),
        2 => "confirmed".into(),
        3 => "rejected".into(),
        bar::SLOT_STATE_UNKNOWN => "unknown".into(),
        other => format!("undefined {other}"),
    }
}

/// recovery_error: [`bpnet_image::Error::code`], or `RECOVERY_ERROR_LENGTH` for a length over the area.
pub fn recovery_error_text(code: u32) -> Option<String> {
    match code {
        0 => None,
        bar::RECOVERY_ERROR_LENGTH => Some("longer than the recovery area".into()),
        n => Some(bpnet_image::Error::code_name(n).map_or_else(|| format!("undefined error {n}"), str::to_string)),
    }
}

/// The boot block from its 64 bytes.
pub fn parse(bytes: &[u8]) -> Result<BootInfo, Error> {
    let b = BootBlock::new_checked(bytes).map_err(|e| Error::Agent(format!("boot block: {e}")))?;
    let flags = b.boot_flags();
    Ok(BootInfo {
        source: source_text(b.boot_source()),
        slot: slot_text(b.boot_slot()),
        trial: flags & boot_flags::TRIAL != 0,
        confirmed: flags & boot_flags::CONFIRMED != 0,
        stage: stage_text(bytes[3]),
        uptime_s: b.uptime_s(),
        version: version(b.image_version()),
        recovery_offset: b.recovery_offset(),
        recovery_capacity: b.recovery_capacity(),
        recovery_error: recovery_error_text(b.recovery_error()),
        slot_a: SlotInfo { state: slot_state_text(b.slot_state(0)), version: version(b.slot_version(0)) },
        slot_b: SlotInfo { state: slot_state_text(b.slot_state(1)), version: version(b.slot_version(1)) },
        request_seq: b.request_seq(),
    })
}

/// The boot block read from the shared region.
pub fn read(region: &Region) -> Result<BootInfo, Error> {
    parse(&region.read_vec(shared::BOOT_OFFSET, BOOT_BLOCK_LEN)?)
}

/// The header's raw agent_state byte: valid even when the rest of the header is not (a boot stage in
/// recovery).
pub fn agent_state(region: &Region) -> Result<u8, Error> {
    let word = region.read_vec(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, 4)?;
    Ok(word[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpnet_contract::bar::field::boot_block as f;
    use bpnet_contract::put_le32;

    /// A boot block as the agent writes it.
    pub fn block(source: u8, slot: u8, flags: u8, stage: u8, version: u32) -> Vec<u8> {
        let mut b = vec![0u8; BOOT_BLOCK_LEN];
        b[f::BOOT_SOURCE] = source;
        b[f::BOOT_SLOT] = slot;
        b[f::BOOT_FLAGS] = flags;
        b[f::STAGE] = stage;
        put_le32(&mut b, f::UPTIME_S, 42);
        put_le32(&mut b, f::IMAGE_VERSION, version);
        put_le32(&mut b, f::RECOVERY_OFFSET, 0x3_0000);
        put_le32(&mut b, f::RECOVERY_CAPACITY, 0xd_0000);
        put_le32(&mut b, f::SLOT_A_VERSION, 0x0001_0203);
        put_le32(&mut b, f::SLOT_B_VERSION, version);
        b[f::SLOT_A_STATE] = 2;
        b[f::SLOT_B_STATE] = 1;
        put_le32(&mut b, f::REQUEST_SEQ, 7);
        b
    }

    #[test]
    fn a_trial_boot_from_slot_b() {
        let info = parse(&block(1, 1, boot_flags::TRIAL, 0, 0x0001_0204)).unwrap();
        assert_eq!((info.source.as_str(), info.slot.as_str(), info.trial, info.confirmed), ("flash", "B", true, false));
        assert_eq!((info.stage.as_str(), info.uptime_s, info.version.as_deref()), ("firmware", 42, Some("1.2.4")));
        assert_eq!((info.recovery_offset, info.recovery_capacity, info.request_seq), (0x3_0000, 0xd_0000, 7));
        assert_eq!(info.slot_a, SlotInfo { state: "confirmed".into(), version: Some("1.2.3".into()) });
        assert_eq!(info.slot_b.state, "written");
        assert_eq!(info.recovery_error, None);
        assert_eq!(info.summary(), "flash/B");
        let confirmed = parse(&block(1, 1, boot_flags::TRIAL | boot_flags::CONFIRMED, 0, 1)).unwrap();
        assert!(confirmed.confirmed && confirmed.trial);
        assert_eq!(parse(&block(2, 0xff, 0, 0, 0)).unwrap().summary(), "netboot");
    }

    #[test]
    fn undefined_values_are_named_not_trusted() {
        let mut b = block(9, 7, 0, 200, 0);
        b[f::SLOT_A_STATE] = 0x42;
        put_le32(&mut b, f::RECOVERY_ERROR, 0xffff_ffff);
        let info = parse(&b).unwrap();
        assert_eq!(
            (info.source.as_str(), info.slot.as_str(), info.stage.as_str(), info.slot_a.state.as_str()),
            ("undefined 9", "undefined 7", "undefined 200", "undefined 66")
        );
        assert_eq!(info.version, None);
        assert_eq!(info.recovery_error.as_deref(), Some("undefined error 4294967295"));
        assert!(parse(&b[..63]).is_err());
    }

    #[test]
    fn recovery_errors_are_named() {
        assert_eq!(recovery_error_text(0), None);
        assert_eq!(recovery_error_text(13).as_deref(), Some("bad signature"));
        assert_eq!(recovery_error_text(2).as_deref(), Some("bad magic: not a bpnet image"));
        assert_eq!(recovery_error_text(0x100).as_deref(), Some("longer than the recovery area"));
        assert_eq!(recovery_error_text(99).as_deref(), Some("undefined error 99"));
    }
}
