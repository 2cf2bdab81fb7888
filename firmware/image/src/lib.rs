//! The bpnet signed firmware image: a fixed header, then the payload (the raw binary U-Boot's `go`
//! or a boot stage starts at its load address).
//!
//! Every image is verified before it is started or written over a good one: [`verify`] checks the
//! header's values, that the payload lands inside a RAM range the caller gives, that the signer's key
//! is one the caller trusts, the ed25519 signature, and the payload's SHA-256. A corrupt, truncated,
//! unsigned or foreign image is refused with an [`Error`] naming the first check it failed; nothing
//! here panics on hostile bytes.
//!
//! Threat model: whoever can hand the agent bytes (the TFTP server, the network path, the host that
//! writes flash, a half-finished flash write) may be hostile or broken, and must not get code of
//! their choosing started or a good image replaced by a bad one. The holder of a trusted secret key is
//! trusted completely. Rollback to an older signed image is prevented by the security counter (format
//! 2): the header carries it, signed, and the update logic (`bpnet-update`) refuses an image whose
//! counter is below the minimum the boot state keeps. Denial of service is not prevented here.
//!
//! # The header
//!
//! All multi-byte fields are little-endian, as in the wire contract (`bpnet-contract`): the host tools
//! that write images run on x86, one byte order serves every structure the project defines, and the
//! e300 can read a little-endian word with one byte-reversed load. Offsets are from the image's first byte.
//!
//! | offset | bytes | field | meaning |
//! | --- | --- | --- | --- |
//! | `0x00` | 4 | magic | "BPIM" (`42 50 49 4D`) |
//! | `0x04` | 2 | format_version | [`FORMAT_VERSION`] (2) or 1; a reader refuses any other |
//! | `0x06` | 2 | header_len | [`HEADER_LEN`] (`0x88`, 136) in format 2, [`HEADER_LEN_V1`] (`0x84`) in format 1: the payload starts here |
//! | `0x08` | 4 | image_version | `major << 16 \| minor << 8 \| patch`, the contract's `firmware_version`; top byte 0 |
//! | `0x0C` | 4 | flags | none defined: must be 0 |
//! | `0x10` | 4 | load | where the payload's first byte goes; 4-byte aligned |
//! | `0x14` | 4 | entry | where execution starts; 4-byte aligned, inside `load .. load + payload_len` |
//! | `0x18` | 4 | payload_len | bytes of payload after the header, at least 1 |
//! | `0x1C` | 32 | payload_sha256 | SHA-256 of the payload |
//! | `0x3C` | 8 | key_id | the first 8 bytes of SHA-256 of the signer's 32-byte ed25519 public key |
//! | `0x44` | 4 | security_counter | anti-rollback counter (format 2; a format-1 image's is 0) |
//! | `0x48` | 64 | signature | ed25519 (RFC 8032, pure) signature of header bytes `0x00..0x48` |
//! | `0x88` | `payload_len` | payload | the bytes loaded at `load` |
//!
//! Format 1 has no security counter: its signature is at `0x44..0x84` over bytes `0x00..0x44`, its
//! payload at `0x84`. It is still read (counter 0); images are written in format 2.
//!
//! The signed message is exactly the header bytes before the signature (`0x00..0x48`); they hold
//! the payload's SHA-256, so the signature covers the payload through it. An image is exactly
//! `header_len + payload_len` bytes; [`image_len`] reads that from a header, for a reader that finds
//! the image at the start of a larger region (a flash partition).
//!
//! Signing the header rather than the whole image keeps the expensive part of the check (ed25519's own
//! SHA-512, 64-bit arithmetic on a 32-bit core) to 72 bytes; the payload is hashed once, with SHA-256.
//! Verification is strict ([`ed25519_dalek::VerifyingKey::verify_strict`]): non-canonical and
//! small-order signatures and weak keys are refused.
//!
//! # Keys
//!
//! The verifier is given its trusted keys as [`TrustedKey`]s (the firmware builds its own public key
//! in). Key files (with the `sign` feature, module `keyfile`) hold 64 lowercase hex digits and a newline:
//! the 32-byte ed25519 seed in the secret file (mode 0600), the public key in the public file.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "sign")]
extern crate std;

#[cfg(feature = "sign")]
pub mod keyfile;
#[cfg(feature = "sign")]
mod sign;
#[cfg(feature = "sign")]
pub use sign::{sign, sign_counter, sign_with, SigningKey};

use bpnet_contract::{get_le16, get_le32};
use core::ops::Range;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// "BPIM" as the little-endian magic word.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BPIM");
/// The header format this crate reads and writes.
pub const FORMAT_VERSION: u16 = 2;
/// The format before the security counter, still read.
pub const FORMAT_VERSION_V1: u16 = 1;
/// Bytes of the header: the payload starts here.
pub const HEADER_LEN: usize = 0x88;
/// A format-1 header's bytes.
pub const HEADER_LEN_V1: usize = 0x84;
/// Bytes of the header the signature covers (everything before the signature field).
pub const SIGNED_LEN: usize = field::SIGNATURE.start;
/// Bytes a format-1 signature covers.
pub const SIGNED_LEN_V1: usize = field::SIGNATURE_V1.start;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Bytes of an ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Flag bits the formats define (none): any other bit is refused, so a later flag is never ignored.
pub const FLAGS_KNOWN: u32 = 0;
/// Instructions are words: load and entry addresses must be multiples of this.
pub const ALIGN: u32 = 4;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0x00..0x04;
    pub const FORMAT_VERSION: Range<usize> = 0x04..0x06;
    pub const HEADER_LEN: Range<usize> = 0x06..0x08;
    pub const IMAGE_VERSION: Range<usize> = 0x08..0x0C;
    pub const FLAGS: Range<usize> = 0x0C..0x10;
    pub const LOAD: Range<usize> = 0x10..0x14;
    pub const ENTRY: Range<usize> = 0x14..0x18;
    pub const PAYLOAD_LEN: Range<usize> = 0x18..0x1C;
    pub const PAYLOAD_SHA256: Range<usize> = 0x1C..0x3C;
    pub const KEY_ID: Range<usize> = 0x3C..0x44;
    pub const SECURITY_COUNTER: Range<usize> = 0x44..0x48;
    pub const SIGNATURE: Range<usize> = 0x48..0x88;
    /// Format 1's signature, where format 2 has the security counter.
    pub const SIGNATURE_V1: Range<usize> = 0x44..0x84;
}

// The table in the crate documentation and the field ranges are one layout.
const _: () = assert!(field::SIGNATURE.end == HEADER_LEN && SIGNED_LEN == 0x48);
const _: () = assert!(field::SIGNATURE_V1.end == HEADER_LEN_V1 && SIGNED_LEN_V1 == 0x44);

/// Why an image (or a key) was refused. Each variant is one check; [`verify`] reports the first that
/// failed, in the order the variants are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than a header.
    Truncated,
    /// Not "BPIM": not an image, or erased flash.
    BadMagic(u32),
    /// A header format this reader does not know.
    BadFormatVersion(u16),
    /// A header length other than [`HEADER_LEN`].
    BadHeaderLen(u16),
    /// An image version with bits above `major.minor.patch` set.
    BadImageVersion(u32),
    /// Flag bits no format defines.
    BadFlags(u32),
    /// A payload length of zero.
    EmptyPayload,
    /// Load or entry address not a multiple of [`ALIGN`].
    Misaligned(u32),
    /// The entry point is not inside the payload.
    EntryOutsidePayload { entry: u32, load: u32, payload_len: u32 },
    /// The image's length is not `header_len + payload_len` (the header says, the bytes are).
    BadImageLen { expected: u64, actual: u64 },
    /// The payload would not lie inside the RAM the caller allows.
    OutsideRam { load: u32, payload_len: u32 },
    /// Signed with a key the caller does not trust (the key id in the header).
    UnknownKey([u8; KEY_ID_LEN]),
    /// The signature does not verify under the trusted key with this key id.
    BadSignature,
    /// The payload's SHA-256 is not the one the (signed) header holds.
    BadPayloadHash,
    /// A public key that is not a valid, non-weak ed25519 point.
    BadKey,
    /// A payload longer than the header's 32-bit length field (signing only).
    PayloadTooLong,
    /// A good image whose security counter is below the minimum the board accepts (the boot
    /// state's): an older image, refused so that a downgrade cannot bring back what a newer one
    /// fixed ([`check_security_counter`]; not one of [`verify`]'s checks).
    Rollback { counter: u32, minimum: u32 },
}

/// [`Error::code`]'s numbers and a short name for each, in code order (code 1 first): what a reader
/// that has only the number (the host reading the boot block's `recovery_error`) prints.
const CODE_NAMES: [&str; 17] = [
    "truncated (shorter than an image header)",
    "bad magic: not a bpnet image",
    "unknown image format version",
    "bad header length",
    "bad image version",
    "undefined flag bits",
    "empty payload",
    "misaligned load or entry address",
    "entry point outside the payload",
    "image length does not match its header",
    "payload outside the allowed RAM",
    "signed with a key the agent does not trust",
    "bad signature",
    "payload hash does not match the signed header",
    "bad public key",
    "payload too long",
    "security counter below the board's minimum (downgrade refused)",
];

impl Error {
    /// A stable number for the kind of error, 1 and up (0 is "no error" where a field carries it):
    /// the boot block's `recovery_error`. Numbers are never reused; [`Error::code_name`] names them.
    pub const fn code(&self) -> u32 {
        match self {
            Error::Truncated => 1,
            Error::BadMagic(_) => 2,
            Error::BadFormatVersion(_) => 3,
            Error::BadHeaderLen(_) => 4,
            Error::BadImageVersion(_) => 5,
            Error::BadFlags(_) => 6,
            Error::EmptyPayload => 7,
            Error::Misaligned(_) => 8,
            Error::EntryOutsidePayload { .. } => 9,
            Error::BadImageLen { .. } => 10,
            Error::OutsideRam { .. } => 11,
            Error::UnknownKey(_) => 12,
            Error::BadSignature => 13,
            Error::BadPayloadHash => 14,
            Error::BadKey => 15,
            Error::PayloadTooLong => 16,
            Error::Rollback { .. } => 17,
        }
    }

    /// The short name of [`Error::code`] `code` (without the details the error itself carries);
    /// `None` for 0 and for numbers this version does not define.
    pub fn code_name(code: u32) -> Option<&'static str> {
        CODE_NAMES.get((code as usize).checked_sub(1)?).copied()
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Truncated => write!(f, "shorter than the {HEADER_LEN}-byte image header"),
            Error::BadMagic(m) => write!(f, "magic {m:#010x} is not \"BPIM\" ({MAGIC:#010x}): not a bpnet image"),
            Error::BadFormatVersion(v) => {
                write!(f, "image format {v}, this reader knows {FORMAT_VERSION_V1} and {FORMAT_VERSION}")
            }
            Error::BadHeaderLen(n) => {
                write!(f, "header length {n}, format {FORMAT_VERSION} has {HEADER_LEN}, format 1 {HEADER_LEN_V1}")
            }
            Error::Rollback { counter, minimum } => {
                write!(f, "security counter {counter} is below this board's minimum {minimum}: downgrade refused")
            }
            Error::BadImageVersion(v) => write!(f, "image version {v:#010x} has bits above major.minor.patch"),
            Error::BadFlags(bits) => write!(f, "undefined flag bits {bits:#010x}"),
            Error::EmptyPayload => write!(f, "payload length 0"),
            Error::Misaligned(addr) => write!(f, "address {addr:#010x} is not a multiple of {ALIGN}"),
            Error::EntryOutsidePayload { entry, load, payload_len } => write!(
                f,
                "entry {entry:#010x} outside the payload {load:#010x}..{:#x}",
                u64::from(load) + u64::from(payload_len)
            ),
            Error::BadImageLen { expected, actual } => {
                write!(f, "image is {actual} bytes, its header says {expected}")
            }
            Error::OutsideRam { load, payload_len } => write!(
                f,
                "payload {load:#010x}..{:#x} outside the allowed RAM",
                u64::from(load) + u64::from(payload_len)
            ),
            Error::UnknownKey(id) => {
                write!(f, "signed with key id ")?;
                for b in id {
                    write!(f, "{b:02x}")?;
                }
                write!(f, ", which is not trusted")
            }
            Error::BadSignature => write!(f, "signature does not verify"),
            Error::BadPayloadHash => write!(f, "payload SHA-256 differs from the signed header's"),
            Error::BadKey => write!(f, "not a valid ed25519 public key"),
            Error::PayloadTooLong => write!(f, "payload longer than 4 GiB - 1"),
        }
    }
}

impl core::error::Error for Error {}

fn array<const N: usize>(b: &[u8], r: Range<usize>) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[r]);
    a
}

/// A typed view of the image header over a byte buffer (the contract's `wire` style): one length
/// check, then accessors that read each field little-endian. Values are checked by
/// [`HeaderRepr::parse`] and [`verify`].
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wrap a buffer without checking it; accessors may then panic. Use `new_checked`.
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wrap bytes that came from outside (network, flash, a file), checking their length.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// The one check the accessors rely on: the buffer holds the whole header (format 1's when it
    /// says it is format 1, else format 2's).
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN.end || len < self.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Whether the header says format 1 (no security counter).
    fn v1(&self) -> bool {
        get_le16(self.buffer.as_ref(), field::FORMAT_VERSION.start) == FORMAT_VERSION_V1
    }

    /// Bytes of the header in its format.
    fn len(&self) -> usize {
        if self.v1() {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }

    pub fn magic(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::MAGIC.start)
    }
    pub fn format_version(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::FORMAT_VERSION.start)
    }
    pub fn header_len(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::HEADER_LEN.start)
    }
    pub fn image_version(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::IMAGE_VERSION.start)
    }
    pub fn flags(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::FLAGS.start)
    }
    pub fn load(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::LOAD.start)
    }
    pub fn entry(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::ENTRY.start)
    }
    pub fn payload_len(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }
    pub fn payload_sha256(&self) -> [u8; 32] {
        array(self.buffer.as_ref(), field::PAYLOAD_SHA256)
    }
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        array(self.buffer.as_ref(), field::KEY_ID)
    }
    /// The anti-rollback counter: 0 in a format-1 header, which has none.
    pub fn security_counter(&self) -> u32 {
        if self.v1() {
            0
        } else {
            get_le32(self.buffer.as_ref(), field::SECURITY_COUNTER.start)
        }
    }
    pub fn signature(&self) -> [u8; SIGNATURE_LEN] {
        array(self.buffer.as_ref(), if self.v1() { field::SIGNATURE_V1 } else { field::SIGNATURE })
    }
    /// The bytes the signature covers: the header before the signature field.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..if self.v1() { SIGNED_LEN_V1 } else { SIGNED_LEN }]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// An image version in the contract's `firmware_version` encoding.
pub const fn image_version(major: u8, minor: u8, patch: u8) -> u32 {
    bpnet_contract::bar::firmware_version(major, minor, patch)
}

/// `(major, minor, patch)` of an image version (the top byte is ignored: [`HeaderRepr::parse`]
/// refuses it set).
pub const fn version_parts(version: u32) -> (u8, u8, u8) {
    ((version >> 16) as u8, (version >> 8) as u8, version as u8)
}

/// The header's values, checked (the `Repr` of [`Header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// [`FORMAT_VERSION`], or [`FORMAT_VERSION_V1`] (whose security counter is 0).
    pub format_version: u16,
    /// `major << 16 | minor << 8 | patch`.
    pub image_version: u32,
    /// The anti-rollback counter.
    pub security_counter: u32,
    /// Flag bits (none defined).
    pub flags: u32,
    pub load: u32,
    pub entry: u32,
    pub payload_len: u32,
    pub payload_sha256: [u8; 32],
    pub key_id: [u8; KEY_ID_LEN],
    pub signature: [u8; SIGNATURE_LEN],
}

impl HeaderRepr {
    /// Parse a header, refusing every value a format-1 reader does not accept. This checks the
    /// header alone: the image's length, the RAM range, the key, the signature and the hash are
    /// [`verify`]'s.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<HeaderRepr, Error> {
        header.check_len()?;
        if header.magic() != MAGIC {
            return Err(Error::BadMagic(header.magic()));
        }
        if header.format_version() != FORMAT_VERSION && header.format_version() != FORMAT_VERSION_V1 {
            return Err(Error::BadFormatVersion(header.format_version()));
        }
        if usize::from(header.header_len()) != header.len() {
            return Err(Error::BadHeaderLen(header.header_len()));
        }
        let repr = HeaderRepr {
            format_version: header.format_version(),
            image_version: header.image_version(),
            security_counter: header.security_counter(),
            flags: header.flags(),
            load: header.load(),
            entry: header.entry(),
            payload_len: header.payload_len(),
            payload_sha256: header.payload_sha256(),
            key_id: header.key_id(),
            signature: header.signature(),
        };
        repr.check()?;
        Ok(repr)
    }

    /// The checks on values (shared by parse and emit, so an emitted header always parses back).
    fn check(&self) -> Result<(), Error> {
        if self.format_version != FORMAT_VERSION && self.format_version != FORMAT_VERSION_V1 {
            return Err(Error::BadFormatVersion(self.format_version));
        }
        if self.format_version == FORMAT_VERSION_V1 && self.security_counter != 0 {
            // Format 1 has no field for it: emitting it would lose it.
            return Err(Error::BadFormatVersion(self.format_version));
        }
        if self.image_version >> 24 != 0 {
            return Err(Error::BadImageVersion(self.image_version));
        }
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(Error::BadFlags(self.flags & !FLAGS_KNOWN));
        }
        if self.payload_len == 0 {
            return Err(Error::EmptyPayload);
        }
        for addr in [self.load, self.entry] {
            if addr % ALIGN != 0 {
                return Err(Error::Misaligned(addr));
            }
        }
        // In u64: load + payload_len may pass 4 GiB, and such an image is refused by the RAM check.
        let end = u64::from(self.load) + u64::from(self.payload_len);
        if self.entry < self.load || u64::from(self.entry) >= end {
            return Err(Error::EntryOutsidePayload {
                entry: self.entry,
                load: self.load,
                payload_len: self.payload_len,
            });
        }
        Ok(())
    }

    /// Write the header into `buf`, refusing values a reader would refuse.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        self.check()?;
        if buf.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        buf[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        buf[field::FORMAT_VERSION].copy_from_slice(&self.format_version.to_le_bytes());
        buf[field::HEADER_LEN].copy_from_slice(&(self.header_len() as u16).to_le_bytes());
        buf[field::IMAGE_VERSION].copy_from_slice(&self.image_version.to_le_bytes());
        buf[field::FLAGS].copy_from_slice(&self.flags.to_le_bytes());
        buf[field::LOAD].copy_from_slice(&self.load.to_le_bytes());
        buf[field::ENTRY].copy_from_slice(&self.entry.to_le_bytes());
        buf[field::PAYLOAD_LEN].copy_from_slice(&self.payload_len.to_le_bytes());
        buf[field::PAYLOAD_SHA256].copy_from_slice(&self.payload_sha256);
        buf[field::KEY_ID].copy_from_slice(&self.key_id);
        if self.format_version == FORMAT_VERSION_V1 {
            buf[field::SIGNATURE_V1].copy_from_slice(&self.signature);
        } else {
            buf[field::SECURITY_COUNTER].copy_from_slice(&self.security_counter.to_le_bytes());
            buf[field::SIGNATURE].copy_from_slice(&self.signature);
        }
        Ok(())
    }

    /// Bytes of the header in this format.
    pub fn header_len(&self) -> usize {
        if self.format_version == FORMAT_VERSION_V1 {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }

    /// Bytes the signature covers in this format (the header before it).
    pub fn signed_len(&self) -> usize {
        if self.format_version == FORMAT_VERSION_V1 {
            SIGNED_LEN_V1
        } else {
            SIGNED_LEN
        }
    }

    /// Bytes of the whole image this header describes.
    pub fn image_len(&self) -> u64 {
        self.header_len() as u64 + u64::from(self.payload_len)
    }
}

/// The key id of a public key: the first [`KEY_ID_LEN`] bytes of its SHA-256. It only selects the
/// key; the signature is what proves the signer.
pub fn key_id(public_key: &[u8; PUBLIC_KEY_LEN]) -> [u8; KEY_ID_LEN] {
    let digest = Sha256::digest(public_key);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// A public key the verifier accepts images from, decoded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    id: [u8; KEY_ID_LEN],
}

impl TrustedKey {
    /// Decode a 32-byte ed25519 public key, refusing an invalid point or a weak (small-order) key,
    /// under which any message would verify.
    pub fn from_bytes(public_key: &[u8; PUBLIC_KEY_LEN]) -> Result<TrustedKey, Error> {
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| Error::BadKey)?;
        if key.is_weak() {
            return Err(Error::BadKey);
        }
        Ok(TrustedKey { key, id: key_id(public_key) })
    }

    /// Decode a key written as 64 hex digits (a key file's contents, or a key built in).
    pub fn from_hex(hex: &str) -> Result<TrustedKey, Error> {
        TrustedKey::from_bytes(&key_from_hex(hex).ok_or(Error::BadKey)?)
    }

    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.key.to_bytes()
    }
}

/// What a verified image says; `payload` is the bytes to load at `load` and start at `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a> {
    /// `major << 16 | minor << 8 | patch`.
    pub image_version: u32,
    /// The anti-rollback counter (0 for a format-1 image).
    pub security_counter: u32,
    pub flags: u32,
    pub load: u32,
    pub entry: u32,
    /// The trusted key it was signed with.
    pub key_id: [u8; KEY_ID_LEN],
    pub payload: &'a [u8],
}

/// Bytes of the image starting at `bytes[0]`, from its header alone (unverified: pass exactly this
/// many bytes to [`verify`]). For an image at the start of a larger region, such as a flash partition.
pub fn image_len(bytes: &[u8]) -> Result<u64, Error> {
    Ok(HeaderRepr::parse(&Header::new_checked(bytes)?)?.image_len())
}

/// Check an image completely: the header's values, that `image` is exactly the header and the
/// payload, that the payload lies inside `ram` (bus addresses, end exclusive), that its key id names
/// one of `trusted`, the signature under that key, then the payload's SHA-256. Only an `Ok` image may
/// be started or written to flash.
pub fn verify<'a>(image: &'a [u8], trusted: &[TrustedKey], ram: Range<u64>) -> Result<Verified<'a>, Error> {
    let header = Header::new_checked(image)?;
    let repr = HeaderRepr::parse(&header)?;
    let actual = image.len() as u64;
    if actual != repr.image_len() {
        return Err(Error::BadImageLen { expected: repr.image_len(), actual });
    }
    let end = u64::from(repr.load) + u64::from(repr.payload_len);
    if u64::from(repr.load) < ram.start || end > ram.end {
        return Err(Error::OutsideRam { load: repr.load, payload_len: repr.payload_len });
    }
    let key = trusted.iter().find(|k| k.id == repr.key_id).ok_or(Error::UnknownKey(repr.key_id))?;
    // The signature first: nothing in the header is acted on (even the hash compared) before it is
    // known to be the signer's.
    key.key
        .verify_strict(header.signed_bytes(), &Signature::from_bytes(&repr.signature))
        .map_err(|_| Error::BadSignature)?;
    let payload = &image[repr.header_len()..];
    if Sha256::digest(payload)[..] != repr.payload_sha256[..] {
        return Err(Error::BadPayloadHash);
    }
    Ok(Verified {
        image_version: repr.image_version,
        security_counter: repr.security_counter,
        flags: repr.flags,
        load: repr.load,
        entry: repr.entry,
        key_id: repr.key_id,
        payload,
    })
}

/// The anti-rollback check, after [`verify`]: an image whose security counter is below `minimum`
/// (the boot state's) is refused with [`Error::Rollback`].
pub fn check_security_counter(verified: &Verified<'_>, minimum: u32) -> Result<(), Error> {
    if verified.security_counter < minimum {
        return Err(Error::Rollback { counter: verified.security_counter, minimum });
    }
    Ok(())
}

/// 32 bytes from exactly 64 hex digits (either case), or `None`. A `const fn`, so a key given to the
/// firmware's build (`option_env!`) is checked when the firmware compiles.
pub const fn key_from_hex(hex: &str) -> Option<[u8; 32]> {
    const fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = hex.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let (Some(hi), Some(lo)) = (nibble(s[2 * i]), nibble(s[2 * i + 1])) else {
            return None;
        };
        out[i] = hi << 4 | lo;
        i += 1;
    }
    Some(out)
}
