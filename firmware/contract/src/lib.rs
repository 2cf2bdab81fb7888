//! The bpnet wire contract.
//!
//! Everything the agent and the host share through memory is defined here, once, as typed views over
//! byte buffers (the way smoltcp's `wire` module parses packets): a private `field` module holds each
//! field's byte range, every accessor reads with an explicit byte order, and one `check_len` call
//! guards all accessors. Shared memory is written by the other side and is therefore untrusted input:
//! nothing here panics on a hostile value, it reports an error instead.
//!
//! Every multi-byte field is little-endian, as PCI is; the agent (a big-endian e300) swaps.
//!
//! One rule shapes the layout: each side reads only its own memory, because a read across PCI stalls
//! for a full round trip while a posted write does not. So the host writes into agent RAM (the BAR,
//! [`bar`]) only with posted writes and reads it only at set-up and on slow paths (counters, log);
//! the agent writes into host RAM ([`status`]) only by DMA. [`ring`] holds the index arithmetic both
//! sides share, [`schema`] describes every structure for the generated C header.
#![no_std]
#![forbid(unsafe_code)]

/// A typed view over a fixed-length structure: the wrapper, its constructors, and the one length
/// check every accessor relies on (values are checked where they are used, by each `Repr`).
///
/// Exported for the project's other byte formats (the identity record, the boot-state record): name
/// an error type in scope with a `Truncated` variant as the third argument; the default is this
/// crate's [`Error`].
#[macro_export]
macro_rules! fixed_view {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $crate::fixed_view! { $(#[$doc])* $name, $len, Error }
    };
    ($(#[$doc:meta])* $name:ident, $len:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wrap a buffer without checking it; accessors may then panic. Use `new_checked`.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Wrap a buffer the other side (or a flash) may have written, checking its length.
            pub fn new_checked(buffer: T) -> Result<Self, $err> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// The one check the accessors rely on: the buffer holds the whole structure.
            pub fn check_len(&self) -> Result<(), $err> {
                if self.buffer.as_ref().len() < $len {
                    return Err($err::Truncated);
                }
                Ok(())
            }

            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

pub mod bar;
pub mod control;
pub mod logring;
pub mod ring;
pub mod schema;
pub mod status;

/// Layout of the agent RAM the host sees through the inbound PCI window (the BAR).
///
/// The header and the doorbells sit at fixed offsets, and the log ring is at [`LOG_RING_OFFSET`] before
/// any header exists (the self-test reads it there). The other regions are where the agent puts them
/// by default; the header's offsets table says where they really are, and the host uses only that.
pub mod shared {
    /// Bytes of the shared region (the BAR's size).
    pub const LEN: usize = 0x10_0000;
    /// Offset of [`crate::bar::Header`] (fixed: the host finds everything else from it).
    pub const HEADER_OFFSET: usize = 0;
    /// Offset of [`crate::bar::Doorbells`] (fixed).
    pub const DOORBELLS_OFFSET: usize = 0x40;
    /// Default offset of [`crate::bar::Counters`].
    pub const COUNTERS_OFFSET: usize = 0x80;
    /// Offset of [`crate::bar::AgentInfo`] (fixed; contract minor version 2 and later): the agent's
    /// fields that no longer fit the header's one line.
    pub const AGENT_INFO_OFFSET: usize = 0x180;
    /// Default offset of the TX descriptor ring, with room for [`crate::ring::Entries::MAX`] entries.
    pub const TX_RING_OFFSET: usize = 0x3_0000;
    /// Default offset of the RX descriptor ring, with room for [`crate::ring::Entries::MAX`] entries.
    pub const RX_RING_OFFSET: usize = 0x4_0000;
    /// Offset of the log ring from the start of the shared region.
    pub const LOG_RING_OFFSET: usize = 0x1_0000;
    /// Data bytes of the log ring (a power of two).
    pub const LOG_RING_CAPACITY: usize = 0x1_0000;
    /// Bytes reserved for the log ring: its header and the data.
    pub const LOG_RING_LEN: usize = crate::logring::HEADER_LEN + LOG_RING_CAPACITY;
    /// Offset of [`crate::bar::BootBlock`] (fixed: the boot stage publishes it before any header
    /// exists, and the host finds it with no header to read).
    pub const BOOT_OFFSET: usize = 0x200;
    /// Offset of [`crate::bar::BoardInfo`] (fixed; contract minor version 4 and later): the board's
    /// identity and the record of its last fault, which must outlive the fault and the reset after it.
    pub const BOARD_INFO_OFFSET: usize = 0x240;
    /// Offset of the recovery area, where the host writes an image in [`crate::bar::AgentState::Recovery`].
    /// It overlaps the rings, which are dead in that state.
    pub const RECOVERY_OFFSET: usize = 0x3_0000;
    /// Bytes of the recovery area: the rest of the shared region.
    pub const RECOVERY_LEN: usize = LEN - RECOVERY_OFFSET;
}

// The agent info block and the boot block sit between the counters and the log ring; the recovery
// area after the log ring.
const _: () = assert!(shared::COUNTERS_OFFSET + bar::COUNTERS_LEN <= shared::AGENT_INFO_OFFSET);
const _: () = assert!(shared::AGENT_INFO_OFFSET + bar::AGENT_INFO_LEN <= shared::BOOT_OFFSET);
const _: () = assert!(shared::BOOT_OFFSET + bar::BOOT_BLOCK_LEN <= shared::BOARD_INFO_OFFSET);
const _: () = assert!(shared::BOARD_INFO_OFFSET + bar::BOARD_INFO_LEN <= shared::LOG_RING_OFFSET);
const _: () = assert!(shared::LOG_RING_OFFSET + shared::LOG_RING_LEN <= shared::RECOVERY_OFFSET);

/// Message-unit bits of the data path (the self-test uses its own handshake, [`selftest`]).
pub mod notify {
    /// Inbound doorbell (IDR) bit the host rings after posting work the agent asked to hear about
    /// (its `tx_prod_event` / `rx_prod_event`), and after every change of its own header fields.
    pub const WORK: u32 = 0x2;
    /// Outbound doorbell (ODR) bit the agent rings after the status block DMA the host asked to hear
    /// about (its `rx_used_event` / `tx_used_event`).
    pub const STATUS: u32 = 0x2;
    /// Outbound doorbell (ODR) bit the agent rings when `agent_state` changed without a status block
    /// DMA to say so: it (re)booted and is READY, or it left RUNNING. The host reads the header (a
    /// slow-path BAR read) and follows: a new `agent_generation` means the agent was reset.
    pub const LINK: u32 = 0x4;
    /// Inbound doorbell (IDR) bit the host rings after writing a request into the boot block
    /// ([`crate::bar::BootBlock`]: `host_request`, `recovery_len`, then `request_seq`).
    pub const CONTROL: u32 = 0x8;
}

/// The ivshmem-doorbell personality (the virtual backplane): the shared region is the device's
/// BAR2, the two directions of [`notify`] travel as doorbell vectors.
pub mod ivshmem {
    /// The agent's ivshmem peer id: the host rings it at `(AGENT_PEER << 16) | vector`.
    pub const AGENT_PEER: u32 = 0;
    /// Vector the host rings for [`crate::notify::WORK`].
    pub const VECTOR_WORK: u32 = 0;
    /// The host's MSI-X vector for [`crate::notify::STATUS`].
    pub const VECTOR_STATUS: u32 = 0;
    /// The host's MSI-X vector for [`crate::notify::LINK`].
    pub const VECTOR_LINK: u32 = 1;
    /// Vector the host rings for [`crate::notify::CONTROL`].
    pub const VECTOR_CONTROL: u32 = 1;
    /// Vectors the device has.
    pub const VECTORS: u32 = 2;
}

/// The host bus addresses an agent reaches when its header's minor version is 1 (it publishes no
/// [`bar::AgentInfo::dma_reach`]): its one outbound window mapped PCI `[0, 256 MiB)`.
pub const DMA_REACH_MINOR_1: u64 = 256 << 20;

/// Where the agent's BAR1 (the shared region, inbound window 0) sits on the PCI bus when nothing
/// else enumerates the board: the board emulator then plays the host's enumeration and assigns it here
/// once the firmware releases the configuration lock. On a real chassis (and behind QEMU's proxy
/// device) the host's enumeration chooses the address; the firmware never writes it (PIBAR0 is BAR1).
pub const EMULATED_BAR_ADDRESS: u32 = 0x9000_0000;

/// The message-unit handshake the firmware's self-test performs with a host peer (the board
/// emulator's `--echo-host`, or a host tool during bring-up): proves doorbells, message registers
/// and interrupts both ways without any shared-memory contract.
pub mod selftest {
    /// The agent writes this to OMR0 (raising OM0I, hence INTA#) when it waits for the host.
    pub const READY: u32 = 0x5E1F_7E57;
    /// The PCI address of BAR1 (inbound window 0 over the shared region) the self-test's host reads
    /// the challenge at: the emulator's stand-in enumeration puts BAR1 there.
    pub const BAR_PCI_ADDRESS: u32 = crate::EMULATED_BAR_ADDRESS;
    /// The host answers: as the challenge in IMR0, the word it reads through the BAR at
    /// [`crate::shared::LOG_RING_OFFSET`] (the log ring's magic, proving the inbound window), then
    /// doorbell bit [`DOORBELL`].
    pub const DOORBELL: u32 = 0x1;
    /// The agent replies with the challenge's complement in OMR1 and rings ODR with [`DOORBELL`].
    pub const fn reply(challenge: u32) -> u32 {
        !challenge
    }
}

/// CRC-32 (IEEE 802.3, reflected: zlib's `crc32`), bitwise. What guards the project's persistent
/// records (the board identity, the boot state): a few dozen bytes, read once at boot.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Why shared memory written by the other side was refused. Every variant is a value that would
/// have been acted on; the caller counts it, logs it and does nothing else with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the structure it should hold.
    Truncated,
    /// The header's magic word is wrong: the agent has not initialised it, or this is not bpnet.
    BadMagic(u32),
    /// A major version this side does not speak (major, minor).
    BadVersion(u16, u16),
    /// A ring size that is not a power of two within [`ring::Entries::MIN`]..=[`ring::Entries::MAX`].
    BadRingEntries(u32),
    /// A region at this offset is misaligned, leaves the shared region or overlaps another.
    BadLayout(u32),
    /// A state value outside its enumeration.
    BadState(u8),
    /// Feature bits the host accepted although the agent never offered them.
    BadFeatures(u32),
    /// An MTU outside [`bar::MTU_MIN`]..=[`bar::MTU_MAX`], or not the default without [`bar::feature::MTU`].
    BadMtu(u32),
    /// A bus address that is null, misaligned, or whose range wraps past the end of the bus.
    BadAddress(u64),
    /// A descriptor length of zero or above what the receiver allows.
    BadLength(u32),
    /// Flag bits this version does not define.
    BadFlags(u16),
    /// A producer index more than a ring's worth ahead of its consumer (or behind it).
    BadIndex { prod: u32, cons: u32 },
    /// A counter slot outside [`bar::COUNTER_SLOTS`].
    BadCounter(usize),
    /// A boot block `host_request` outside [`bar::HostRequest`].
    BadRequest(u32),
    /// An [`bar::AgentInfo::dma_reach`] below [`bar::DMA_REACH_MIN`].
    BadReach(u64),
    /// A board info block's serial or slot outside what an identity record may hold.
    BadIdentity(u32, u8),
    /// A fault record whose vector is no exception vector.
    BadFault(u32),
    /// An RX completion chain ([`status::RxChain`]) of more than [`bar::RX_CHAIN_MAX`] buffers.
    BadChain(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Truncated => write!(f, "buffer too short for the structure"),
            Error::BadMagic(m) => write!(f, "magic {m:#010x}, expected {:#010x}", bar::MAGIC),
            Error::BadVersion(major, minor) => {
                write!(f, "contract version {major}.{minor}, expected major {}", bar::VERSION_MAJOR)
            }
            Error::BadRingEntries(n) => {
                write!(f, "ring size {n} is not a power of two in {}..={}", ring::Entries::MIN, ring::Entries::MAX)
            }
            Error::BadLayout(at) => write!(f, "region at {at:#x} misaligned, outside the BAR or overlapping"),
            Error::BadState(s) => write!(f, "state {s} is not defined"),
            Error::BadFeatures(bits) => write!(f, "features {bits:#x} accepted but not offered"),
            Error::BadMtu(mtu) => write!(f, "MTU {mtu} not allowed"),
            Error::BadAddress(addr) => write!(f, "bus address {addr:#x} null, misaligned or wrapping"),
            Error::BadLength(len) => write!(f, "length {len} is zero or too large"),
            Error::BadFlags(flags) => write!(f, "undefined flag bits {flags:#06x}"),
            Error::BadIndex { prod, cons } => write!(f, "producer index {prod} not within a ring of consumer {cons}"),
            Error::BadCounter(slot) => write!(f, "counter slot {slot} out of range"),
            Error::BadRequest(r) => write!(f, "host request {r} is not defined"),
            Error::BadChain(n) => write!(f, "RX frame of {n} buffers or more, above the bound"),
            Error::BadReach(reach) => write!(f, "DMA reach {reach:#x} is below one page"),
            Error::BadIdentity(serial, slot) => write!(f, "identity serial {serial:#x} slot {slot} out of range"),
            Error::BadFault(vector) => write!(f, "fault record with vector {vector:#x}, not an exception vector"),
        }
    }
}

/// Read a byte at `at`. Callers have checked the length.
fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf[at]
}

// The little-endian reads and writes every view is built on, public so that code which must touch a
// single field (a byte store of a state, a posted write of one index, a test corrupting one field)
// uses the contract's offsets (`bar::field`, `status::field`, `logring::field`) and these helpers
// instead of its own. Each panics if `buf` is shorter than `at` plus the field: callers check the
// length first, as the views' `check_len` does.

/// Read a little-endian `u16` at `at`.
pub fn get_le16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

/// Read a little-endian `u32` at `at`.
pub fn get_le32(buf: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Read a little-endian `u64` at `at`.
pub fn get_le64(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Write a little-endian `u16` at `at`.
pub fn put_le16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// Write a little-endian `u32` at `at`.
pub fn put_le32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Write a little-endian `u64` at `at`.
pub fn put_le64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
