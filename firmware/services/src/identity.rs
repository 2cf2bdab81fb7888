//! The board identity record and what the agent derives from it: its MAC, the MAC the host
//! interface should use, and the static address plan.
//!
//! The record sits at the start of the last 128 KiB sector of the NOR flash ([`RECORD_OFFSET`] from
//! the flash base), written once when a board is provisioned. All fields are little-endian:
//!
//! | offset | bytes | field | value |
//! | --- | --- | --- | --- |
//! | `0x0` | 4 | magic | "BPID" (`42 50 49 44`) |
//! | `0x4` | 2 | version | [`VERSION`] (1) |
//! | `0x6` | 1 | slot | chassis slot `0..=19`, or [`SLOT_UNKNOWN`] (`0xFF`) |
//! | `0x7` | 1 | reserved | 0 when written; covered by the CRC, otherwise ignored |
//! | `0x8` | 4 | serial | board serial number, `1..=0xFF_FFFF` |
//! | `0xC` | 4 | crc | CRC-32 (IEEE 802.3, as zlib's `crc32`) of bytes `0x0..0xC` |
//!
//! The serial is limited to 24 bits because the MACs carry it whole: two provisioned boards then
//! never share a MAC. Serial 0 is what a board without a record uses, so no record may claim it.
//!
//! Flash is written by tools and may be erased, half-programmed or from another firmware: the
//! record is untrusted input. [`Record::new_checked`] is the one length check; [`Identity::parse`]
//! refuses every bad value with an [`Error`] and never panics.

use bpnet_contract::{get_le16, get_le32};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// Bytes of the NOR flash the record's sector is the last of (the board's 32 MiB part).
pub const FLASH_BYTES: u32 = 32 << 20;
/// Bytes of the identity sector.
pub const SECTOR_BYTES: u32 = 128 << 10;
/// Offset of the record from the flash base: the last sector.
pub const RECORD_OFFSET: u32 = FLASH_BYTES - SECTOR_BYTES;
/// Bytes of the record.
pub const RECORD_LEN: usize = 16;
/// "BPID" as the little-endian magic word.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BPID");
/// The record format this firmware reads and writes.
pub const VERSION: u16 = 1;
/// Chassis slots are `0..SLOTS`.
pub const SLOTS: u8 = 20;
/// The slot byte of a board that does not know its slot.
pub const SLOT_UNKNOWN: u8 = 0xFF;
/// The largest serial number a record may hold (24 bits: see the module documentation).
pub const SERIAL_MAX: u32 = 0xFF_FFFF;
/// The third octet of the static address when the slot is unknown: outside `0..SLOTS`, so it never
/// collides with a slot's network, and the address agents have always used without identity.
pub const SUBNET_UNKNOWN_SLOT: u8 = 49;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: Range<usize> = 4..6;
    pub const SLOT: usize = 6;
    pub const RESERVED: usize = 7;
    pub const SERIAL: Range<usize> = 8..12;
    pub const CRC: Range<usize> = 12..16;
}

/// Why a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer than [`RECORD_LEN`] bytes.
    Truncated,
    /// The magic is all ones: erased flash, no record was ever written.
    Missing,
    /// Not the record's magic: something else is in the sector.
    BadMagic(u32),
    /// A format this firmware does not know.
    Version(u16),
    /// The CRC does not match the contents (stored, computed).
    Crc { stored: u32, computed: u32 },
    /// A slot outside `0..SLOTS` that is not [`SLOT_UNKNOWN`].
    Slot(u8),
    /// A serial of 0 (reserved for "no record") or above [`SERIAL_MAX`].
    Serial(u32),
}

/// The record's CRC (the project's one CRC-32, as zlib's).
pub use bpnet_contract::crc32;

bpnet_contract::fixed_view! {
    /// A typed view of the record over a byte buffer (smoltcp's `wire` style): one length check, then
    /// accessors that read each field little-endian. Values are checked by [`Identity::parse`].
    Record, RECORD_LEN, Error
}

impl<T: AsRef<[u8]>> Record<T> {
    pub fn magic(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::MAGIC.start)
    }
    pub fn version(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::VERSION.start)
    }
    pub fn slot(&self) -> u8 {
        self.buffer.as_ref()[field::SLOT]
    }
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED]
    }
    pub fn serial(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::SERIAL.start)
    }
    pub fn crc(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::CRC.start)
    }
    /// The CRC the contents call for.
    pub fn computed_crc(&self) -> u32 {
        crc32(&self.buffer.as_ref()[..field::CRC.start])
    }
}

/// Who this board is: what a valid record says, or [`Identity::UNKNOWN`] without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Board serial number; 0 only for [`Identity::UNKNOWN`].
    pub serial: u32,
    /// Chassis slot, `0..SLOTS`, if known.
    pub slot: Option<u8>,
}

impl Identity {
    /// A board without a (valid) record.
    pub const UNKNOWN: Identity = Identity { serial: 0, slot: None };

    /// Parse a record, refusing any bad value.
    pub fn parse<T: AsRef<[u8]>>(record: &Record<T>) -> Result<Identity, Error> {
        record.check_len()?;
        match record.magic() {
            MAGIC => {}
            u32::MAX => return Err(Error::Missing),
            other => return Err(Error::BadMagic(other)),
        }
        if record.version() != VERSION {
            return Err(Error::Version(record.version()));
        }
        let (stored, computed) = (record.crc(), record.computed_crc());
        if stored != computed {
            return Err(Error::Crc { stored, computed });
        }
        let slot = match record.slot() {
            SLOT_UNKNOWN => None,
            s if s < SLOTS => Some(s),
            s => return Err(Error::Slot(s)),
        };
        let serial = record.serial();
        if serial == 0 || serial > SERIAL_MAX {
            return Err(Error::Serial(serial));
        }
        Ok(Identity { serial, slot })
    }

    /// Parse the bytes at [`RECORD_OFFSET`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Identity, Error> {
        Identity::parse(&Record::new_checked(bytes)?)
    }

    /// Write the record for this identity into `buf` (provisioning tools, tests). Refuses values a
    /// reader would refuse, so an emitted record always parses back to `self`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        if buf.len() < RECORD_LEN {
            return Err(Error::Truncated);
        }
        if self.serial == 0 || self.serial > SERIAL_MAX {
            return Err(Error::Serial(self.serial));
        }
        let slot = match self.slot {
            None => SLOT_UNKNOWN,
            Some(s) if s < SLOTS => s,
            Some(s) => return Err(Error::Slot(s)),
        };
        buf[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        buf[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        buf[field::SLOT] = slot;
        buf[field::RESERVED] = 0;
        buf[field::SERIAL].copy_from_slice(&self.serial.to_le_bytes());
        let crc = crc32(&buf[..field::CRC.start]);
        buf[field::CRC].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> Result<[u8; RECORD_LEN], Error> {
        let mut buf = [0u8; RECORD_LEN];
        self.emit(&mut buf)?;
        Ok(buf)
    }

    /// The agent's MAC: locally administered unicast `02:83:49` (the SoC) and the 24-bit serial.
    pub fn agent_mac(&self) -> [u8; 6] {
        let s = self.serial.to_be_bytes();
        [0x02, 0x83, 0x49, s[1], s[2], s[3]]
    }

    /// The MAC the host's interface to this agent should use (the BAR header's `mac`): locally
    /// administered unicast `06:83:49` and the serial, so it differs from the agent's in the first
    /// octet only and never collides with any agent's or another host interface's.
    pub fn host_mac(&self) -> [u8; 6] {
        let s = self.serial.to_be_bytes();
        [0x06, 0x83, 0x49, s[1], s[2], s[3]]
    }

    /// The third octet of the slot's network: the slot, or [`SUBNET_UNKNOWN_SLOT`].
    pub fn subnet(&self) -> u8 {
        self.slot.unwrap_or(SUBNET_UNKNOWN_SLOT)
    }

    /// The agent's static fallback address: `10.83.<slot>.2/24`.
    pub fn static_address(&self) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Address::new(10, 83, self.subnet(), 2), 24)
    }

    /// Where the host's end of the backplane is expected: `10.83.<slot>.1`, the static plan's gateway.
    pub fn host_address(&self) -> Ipv4Address {
        Ipv4Address::new(10, 83, self.subnet(), 1)
    }
}

/// Read the identity from the record's bytes, or fall back to [`Identity::UNKNOWN`], returning why.
pub fn identify(bytes: &[u8]) -> (Identity, Result<(), Error>) {
    match Identity::from_bytes(bytes) {
        Ok(identity) => (identity, Ok(())),
        Err(e) => (Identity::UNKNOWN, Err(e)),
    }
}
