//! The boot info handoff: a 64-byte record in agent RAM (`mpc8349emds::BOOT_INFO_ADDR`, 0x2000) that
//! whoever starts an image (the boot stage, or the firmware for a netboot or recovery image) writes
//! just before the jump, and that the firmware reads and clears first thing. It says where the
//! running image came from, so the firmware knows whether it must confirm a trial slot.
//!
//! | offset | bytes | field | value |
//! | --- | --- | --- | --- |
//! | `0x00` | 4 | magic | "BPBI" (`42 50 42 49`) |
//! | `0x04` | 2 | version | [`VERSION`] (1) |
//! | `0x06` | 1 | source | [`Source`]: 0 direct, 1 flash, 2 netboot, 3 recovery (as the boot block's `boot_source`) |
//! | `0x07` | 1 | slot | 0 A, 1 B, `0xFF` none (a flash source names a slot; the others none) |
//! | `0x08` | 1 | flags | bit 0: trial (the image must confirm its slot) |
//! | `0x09` | 3 | reserved | 0 |
//! | `0x0C` | 4 | image_version | the started image's header version |
//! | `0x10` | 44 | reserved | 0 |
//! | `0x3C` | 4 | crc | CRC-32 of bytes `0x00..0x3C` |
//!
//! Little-endian like every record of the project. RAM survives a reset, so a record is cleared once
//! read: a later reset that starts the firmware directly must not find a stale one. Anything that is
//! not a valid record (never written, cleared, torn, garbage left by another program) reads as
//! "started directly" ([`BootInfo::DIRECT`]); [`BootInfo::parse`] never panics.

use crate::layout::Slot;
use bpnet_contract::bar::boot_source;
use bpnet_contract::{get_le16, get_le32};

/// Bytes of the record.
pub const LEN: usize = 64;
/// "BPBI" as the little-endian magic word.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BPBI");
/// The record format.
pub const VERSION: u16 = 1;
/// `flags` bit: started on trial.
pub const FLAG_TRIAL: u8 = 1 << 0;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0x00..0x04;
    pub const VERSION: Range<usize> = 0x04..0x06;
    pub const SOURCE: usize = 0x06;
    pub const SLOT: usize = 0x07;
    pub const FLAGS: usize = 0x08;
    pub const IMAGE_VERSION: Range<usize> = 0x0C..0x10;
    pub const CRC: Range<usize> = 0x3C..0x40;
}

/// How the running image was started: the boot block's `boot_source`, with its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// Loaded by a debugger, U-Boot's `go` or the emulator: no record.
    Direct = boot_source::DIRECT,
    /// From a flash slot, by the boot stage.
    Flash = boot_source::FLASH,
    /// Fetched over TFTP by the firmware.
    Netboot = boot_source::NETBOOT,
    /// Written by the host into the recovery area through the BAR.
    Recovery = boot_source::RECOVERY,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Truncated,
    BadMagic(u32),
    Version(u16),
    Crc {
        stored: u32,
        computed: u32,
    },
    Source(u8),
    Slot(u8),
    Flags(u8),
    /// A slot with a source other than flash, a flash source without one, or a trial that is not
    /// from flash.
    Inconsistent,
}

/// The record's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    pub source: Source,
    pub slot: Option<Slot>,
    /// The image must confirm `slot` (only with [`Source::Flash`]).
    pub trial: bool,
    pub image_version: u32,
}

impl BootInfo {
    /// What a program started without a record assumes.
    pub const DIRECT: BootInfo = BootInfo { source: Source::Direct, slot: None, trial: false, image_version: 0 };

    /// Parse a record, refusing anything a writer never produces.
    pub fn parse(bytes: &[u8]) -> Result<BootInfo, Error> {
        let b = bytes.get(..LEN).ok_or(Error::Truncated)?;
        let magic = get_le32(b, field::MAGIC.start);
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let version = get_le16(b, field::VERSION.start);
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let stored = get_le32(b, field::CRC.start);
        let computed = crate::record::crc32(&b[..field::CRC.start]);
        if stored != computed {
            return Err(Error::Crc { stored, computed });
        }
        let source = match b[field::SOURCE] {
            boot_source::DIRECT => Source::Direct,
            boot_source::FLASH => Source::Flash,
            boot_source::NETBOOT => Source::Netboot,
            boot_source::RECOVERY => Source::Recovery,
            other => return Err(Error::Source(other)),
        };
        let slot = match b[field::SLOT] {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            crate::record::NO_SLOT => None,
            other => return Err(Error::Slot(other)),
        };
        let flags = b[field::FLAGS];
        if flags & !FLAG_TRIAL != 0 {
            return Err(Error::Flags(flags));
        }
        let trial = flags & FLAG_TRIAL != 0;
        if (source == Source::Flash) != slot.is_some() || (trial && source != Source::Flash) {
            return Err(Error::Inconsistent);
        }
        Ok(BootInfo { source, slot, trial, image_version: get_le32(b, field::IMAGE_VERSION.start) })
    }

    /// The record's bytes, reserved bytes zero, CRC last.
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        b[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        b[field::SOURCE] = self.source as u8;
        b[field::SLOT] = self.slot.map_or(crate::record::NO_SLOT, |s| s.index() as u8);
        b[field::FLAGS] = if self.trial { FLAG_TRIAL } else { 0 };
        b[field::IMAGE_VERSION].copy_from_slice(&self.image_version.to_le_bytes());
        let crc = crate::record::crc32(&b[..field::CRC.start]);
        b[field::CRC].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// What the firmware acts on: the record, or [`BootInfo::DIRECT`] for anything else (the error
    /// is returned alongside so the caller can say why when it is not simply absent).
    pub fn read(bytes: &[u8]) -> (BootInfo, Option<Error>) {
        match BootInfo::parse(bytes) {
            Ok(info) => (info, None),
            // All zeros (cleared) or all ones: nothing was handed over.
            Err(Error::BadMagic(0 | 0xFFFF_FFFF)) => (BootInfo::DIRECT, None),
            Err(e) => (BootInfo::DIRECT, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flash_trial() -> BootInfo {
        BootInfo { source: Source::Flash, slot: Some(Slot::B), trial: true, image_version: 0x01_02_03 }
    }

    #[test]
    fn round_trips() {
        for info in [
            flash_trial(),
            BootInfo { source: Source::Flash, slot: Some(Slot::A), trial: false, image_version: 7 },
            BootInfo { source: Source::Recovery, slot: None, trial: false, image_version: 1 },
            BootInfo { source: Source::Netboot, slot: None, trial: false, image_version: 2 },
            BootInfo::DIRECT,
        ] {
            assert_eq!(BootInfo::parse(&info.to_bytes()), Ok(info));
        }
        let b = flash_trial().to_bytes();
        assert_eq!(&b[..4], b"BPBI");
        assert_eq!(&b[6..10], &[1, 1, 1, 0]);
        assert_eq!(&b[12..16], &[3, 2, 1, 0]);
    }

    #[test]
    fn absent_is_direct_without_complaint() {
        assert_eq!(BootInfo::read(&[0u8; LEN]), (BootInfo::DIRECT, None));
        assert_eq!(BootInfo::read(&[0xFFu8; LEN]), (BootInfo::DIRECT, None));
        assert_eq!(BootInfo::read(&[0u8; LEN - 1]), (BootInfo::DIRECT, Some(Error::Truncated)));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let good = flash_trial().to_bytes();
        for byte in 0..LEN {
            for bit in 0..8 {
                let mut b = good;
                b[byte] ^= 1 << bit;
                assert!(BootInfo::parse(&b).is_err(), "byte {byte} bit {bit}");
                assert_eq!(BootInfo::read(&b).0, BootInfo::DIRECT);
            }
        }
    }

    /// A writer never produces these; a correct CRC does not make them acceptable.
    #[test]
    fn inconsistent_values_are_refused() {
        let resign = |mut b: [u8; LEN]| {
            let crc = crate::record::crc32(&b[..0x3C]);
            b[0x3C..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut b = flash_trial().to_bytes();
        b[field::SLOT] = crate::record::NO_SLOT;
        assert_eq!(BootInfo::parse(&resign(b)), Err(Error::Inconsistent));
        let mut b = BootInfo { source: Source::Recovery, slot: None, trial: false, image_version: 1 }.to_bytes();
        b[field::FLAGS] = FLAG_TRIAL;
        assert_eq!(BootInfo::parse(&resign(b)), Err(Error::Inconsistent));
        b[field::FLAGS] = 0x80;
        assert_eq!(BootInfo::parse(&resign(b)), Err(Error::Flags(0x80)));
        b[field::FLAGS] = 0;
        b[field::SOURCE] = 4;
        assert_eq!(BootInfo::parse(&resign(b)), Err(Error::Source(4)));
        b[field::SOURCE] = 3;
        b[field::SLOT] = 2;
        assert_eq!(BootInfo::parse(&resign(b)), Err(Error::Slot(2)));
    }
}
