//! The boot-state record: a typed view over bytes read from flash (one length check), and the
//! parsed, checked value ([`BootState`]). The table is in the crate documentation.
//!
//! Flash is untrusted input here too: a record may be erased, half-programmed, half-erased garbage or
//! from another firmware. [`BootState::parse`] refuses every bad value and never panics.

use crate::layout::Slot;
use bpnet_contract::{get_le16, get_le32};

/// Bytes of the record (format 2; a format-1 record is [`RECORD_LEN_V1`], and reading this many
/// bytes of a sector holding one reads it whole).
pub const RECORD_LEN: usize = 0x28;
/// Bytes of a format-1 record (no minimum security counter).
pub const RECORD_LEN_V1: usize = 0x24;
/// "BPBS" as the little-endian magic word.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BPBS");
/// The record format this firmware writes.
pub const VERSION: u16 = 2;
/// The format before the minimum security counter, still read (its minimum is 0).
pub const VERSION_V1: u16 = 1;
/// The slot byte of "no slot".
pub const NO_SLOT: u8 = 0xFF;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0x00..0x04;
    pub const VERSION: Range<usize> = 0x04..0x06;
    pub const ACTIVE: usize = 0x06;
    pub const TRIAL: usize = 0x07;
    pub const TRIAL_BOOTS_LEFT: usize = 0x08;
    pub const RESERVED: usize = 0x09;
    pub const SLOT_STATE: [usize; 2] = [0x0A, 0x0B];
    pub const SEQ: Range<usize> = 0x0C..0x10;
    pub const SLOT_VERSION: [Range<usize>; 2] = [0x10..0x14, 0x18..0x1C];
    pub const SLOT_LEN: [Range<usize>; 2] = [0x14..0x18, 0x1C..0x20];
    pub const MIN_SECURITY_COUNTER: Range<usize> = 0x20..0x24;
    pub const CRC: Range<usize> = 0x24..0x28;
    /// Format 1's CRC, where format 2 has the minimum security counter.
    pub const CRC_V1: Range<usize> = 0x20..0x24;
}

/// Why a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer than [`RECORD_LEN`] bytes.
    Truncated,
    /// The magic reads all ones: erased flash, nothing written.
    Missing,
    /// Not the record's magic (garbage, a torn write).
    BadMagic(u32),
    /// A format this firmware does not know.
    Version(u16),
    /// The CRC does not match (stored, computed): a torn write or decayed flash.
    Crc { stored: u32, computed: u32 },
    /// A slot byte that is neither 0 (A), 1 (B) nor [`NO_SLOT`].
    Slot(u8),
    /// A slot state outside [`SlotState`].
    SlotState(u8),
    /// Values a writer never produces together (see [`BootState::parse`]).
    Inconsistent,
}

/// The record's CRC (the project's one CRC-32, as zlib's).
pub use bpnet_contract::crc32;

bpnet_contract::fixed_view! {
    /// A typed view of the record (smoltcp's `wire` style): one length check, then little-endian
    /// accessors. Values are checked by [`BootState::parse`].
    Record, RECORD_LEN, RecordError
}

impl<T: AsRef<[u8]>> Record<T> {
    pub fn magic(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::MAGIC.start)
    }
    pub fn version(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::VERSION.start)
    }
    pub fn active(&self) -> u8 {
        self.buffer.as_ref()[field::ACTIVE]
    }
    pub fn trial(&self) -> u8 {
        self.buffer.as_ref()[field::TRIAL]
    }
    pub fn trial_boots_left(&self) -> u8 {
        self.buffer.as_ref()[field::TRIAL_BOOTS_LEFT]
    }
    pub fn slot_state(&self, slot: Slot) -> u8 {
        self.buffer.as_ref()[field::SLOT_STATE[slot.index()]]
    }
    pub fn seq(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::SEQ.start)
    }
    pub fn slot_version(&self, slot: Slot) -> u32 {
        get_le32(self.buffer.as_ref(), field::SLOT_VERSION[slot.index()].start)
    }
    pub fn slot_len(&self, slot: Slot) -> u32 {
        get_le32(self.buffer.as_ref(), field::SLOT_LEN[slot.index()].start)
    }
    /// The minimum security counter an image must carry (0 in a format-1 record, which has none).
    pub fn min_security_counter(&self) -> u32 {
        if self.version() == VERSION_V1 {
            0
        } else {
            get_le32(self.buffer.as_ref(), field::MIN_SECURITY_COUNTER.start)
        }
    }
    fn crc_at(&self) -> usize {
        if self.version() == VERSION_V1 {
            field::CRC_V1.start
        } else {
            field::CRC.start
        }
    }
    pub fn crc(&self) -> u32 {
        get_le32(self.buffer.as_ref(), self.crc_at())
    }
    /// The CRC the contents call for.
    pub fn computed_crc(&self) -> u32 {
        crc32(&self.buffer.as_ref()[..self.crc_at()])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Record<T> {
    fn put32(&mut self, r: core::ops::Range<usize>, v: u32) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_magic(&mut self, v: u32) {
        self.put32(field::MAGIC, v);
    }
    pub fn set_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::VERSION].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_active(&mut self, v: u8) {
        self.buffer.as_mut()[field::ACTIVE] = v;
    }
    pub fn set_trial(&mut self, v: u8) {
        self.buffer.as_mut()[field::TRIAL] = v;
    }
    pub fn set_trial_boots_left(&mut self, v: u8) {
        self.buffer.as_mut()[field::TRIAL_BOOTS_LEFT] = v;
    }
    pub fn set_reserved(&mut self, v: u8) {
        self.buffer.as_mut()[field::RESERVED] = v;
    }
    pub fn set_slot_state(&mut self, slot: Slot, v: u8) {
        self.buffer.as_mut()[field::SLOT_STATE[slot.index()]] = v;
    }
    pub fn set_seq(&mut self, v: u32) {
        self.put32(field::SEQ, v);
    }
    pub fn set_slot_version(&mut self, slot: Slot, v: u32) {
        self.put32(field::SLOT_VERSION[slot.index()].clone(), v);
    }
    pub fn set_slot_len(&mut self, slot: Slot, v: u32) {
        self.put32(field::SLOT_LEN[slot.index()].clone(), v);
    }
    /// Format 2 only (call after [`Record::set_version`]).
    pub fn set_min_security_counter(&mut self, v: u32) {
        self.put32(field::MIN_SECURITY_COUNTER, v);
    }
    /// Store the CRC of everything before it; call last.
    pub fn fill_crc(&mut self) {
        let (crc, at) = (self.computed_crc(), self.crc_at());
        self.put32(at..at + 4, crc);
    }
}

/// What a slot holds, as far as the boot state knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Nothing usable: never written, or being written (an update marks its target empty before the
    /// first erase, so a torn image is never described as anything else).
    Empty = 0,
    /// A complete image that verified after it was written; its firmware has not confirmed yet.
    Written = 1,
    /// Its firmware booted and confirmed itself: known good.
    Confirmed = 2,
    /// It ran out of trial boots without confirming, or failed verification while on trial: not
    /// started again until rewritten.
    Rejected = 3,
}

impl SlotState {
    fn from_byte(b: u8) -> Result<Self, RecordError> {
        Ok(match b {
            0 => SlotState::Empty,
            1 => SlotState::Written,
            2 => SlotState::Confirmed,
            3 => SlotState::Rejected,
            other => return Err(RecordError::SlotState(other)),
        })
    }

    /// A slot the boot stage may start (after verifying it).
    pub const fn startable(self) -> bool {
        matches!(self, SlotState::Written | SlotState::Confirmed)
    }
}

/// One slot's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    pub state: SlotState,
    /// The image's version as the updater was told it (the image header's `image_version`); 0 unknown.
    pub version: u32,
    /// Bytes of the image from the slot's start.
    pub len: u32,
}

impl SlotInfo {
    pub const EMPTY: SlotInfo = SlotInfo { state: SlotState::Empty, version: 0, len: 0 };
}

/// The boot state, parsed and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// Written by the store: one more than the newest record's.
    pub seq: u32,
    /// The confirmed slot booted when no trial is pending.
    pub active: Option<Slot>,
    /// A slot on trial.
    pub trial: Option<Slot>,
    /// Boots the trial slot may still be started without confirming.
    pub trial_boots_left: u8,
    /// Slot A, slot B.
    pub slots: [SlotInfo; 2],
    /// The lowest image security counter the board accepts (FLASH, NETBOOT, recovery, the boot
    /// stage): raised to a confirmed image's counter, never lowered.
    pub min_security_counter: u32,
}

fn slot_from_byte(b: u8) -> Result<Option<Slot>, RecordError> {
    match b {
        0 => Ok(Some(Slot::A)),
        1 => Ok(Some(Slot::B)),
        NO_SLOT => Ok(None),
        other => Err(RecordError::Slot(other)),
    }
}

fn slot_to_byte(s: Option<Slot>) -> u8 {
    match s {
        Some(Slot::A) => 0,
        Some(Slot::B) => 1,
        None => NO_SLOT,
    }
}

impl BootState {
    /// The state of a board no record describes: nothing known.
    pub const UNKNOWN: BootState = BootState {
        seq: 0,
        active: None,
        trial: None,
        trial_boots_left: 0,
        slots: [SlotInfo::EMPTY; 2],
        min_security_counter: 0,
    };

    pub fn slot(&self, slot: Slot) -> &SlotInfo {
        &self.slots[slot.index()]
    }

    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotInfo {
        &mut self.slots[slot.index()]
    }

    /// Parse and check a record. Besides magic, version and CRC it refuses what no writer produces:
    /// an active slot that is not confirmed, a trial slot that is the active one or not startable,
    /// trial boots without a trial, an empty slot with a version or length.
    pub fn parse<T: AsRef<[u8]>>(record: &Record<T>) -> Result<BootState, RecordError> {
        record.check_len()?;
        match record.magic() {
            MAGIC => {}
            u32::MAX => return Err(RecordError::Missing),
            other => return Err(RecordError::BadMagic(other)),
        }
        if record.version() != VERSION && record.version() != VERSION_V1 {
            return Err(RecordError::Version(record.version()));
        }
        let (stored, computed) = (record.crc(), record.computed_crc());
        if stored != computed {
            return Err(RecordError::Crc { stored, computed });
        }
        let mut slots = [SlotInfo::EMPTY; 2];
        for slot in Slot::BOTH {
            let state = SlotState::from_byte(record.slot_state(slot))?;
            let info = SlotInfo { state, version: record.slot_version(slot), len: record.slot_len(slot) };
            if state == SlotState::Empty && (info.version != 0 || info.len != 0) {
                return Err(RecordError::Inconsistent);
            }
            slots[slot.index()] = info;
        }
        let state = BootState {
            seq: record.seq(),
            active: slot_from_byte(record.active())?,
            trial: slot_from_byte(record.trial())?,
            trial_boots_left: record.trial_boots_left(),
            slots,
            min_security_counter: record.min_security_counter(),
        };
        if let Some(a) = state.active {
            if state.slot(a).state != SlotState::Confirmed {
                return Err(RecordError::Inconsistent);
            }
        }
        match state.trial {
            Some(t) if state.active == Some(t) || !state.slot(t).state.startable() => {
                return Err(RecordError::Inconsistent)
            }
            None if state.trial_boots_left != 0 => return Err(RecordError::Inconsistent),
            _ => {}
        }
        Ok(state)
    }

    /// Write the record into `record` (at least [`RECORD_LEN`] bytes), CRC last.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, record: &mut Record<T>) {
        record.set_magic(MAGIC);
        record.set_version(VERSION);
        record.set_active(slot_to_byte(self.active));
        record.set_trial(slot_to_byte(self.trial));
        record.set_trial_boots_left(self.trial_boots_left);
        record.set_reserved(0);
        record.set_seq(self.seq);
        for slot in Slot::BOTH {
            let info = self.slot(slot);
            record.set_slot_state(slot, info.state as u8);
            record.set_slot_version(slot, info.version);
            record.set_slot_len(slot, info.len);
        }
        record.set_min_security_counter(self.min_security_counter);
        record.fill_crc();
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; RECORD_LEN] {
        let mut bytes = [0u8; RECORD_LEN];
        self.emit(&mut Record::new_unchecked(&mut bytes[..]));
        bytes
    }
}
