//! Structures in agent RAM, the shared region the host sees through the BAR.
//!
//! The host writes here only with posted writes and reads here only at set-up and on slow paths
//! (counters, log); the agent reads the host's fields from its own RAM, cheaply, and trusts none.
//!
//! # Regions (offsets from the start of the shared region, [`crate::shared`])
//!
//! | offset | bytes | region | written by |
//! | --- | --- | --- | --- |
//! | `0x0_0000` | 64 | [`Header`] | both, field by field (below) |
//! | `0x0_0040` | 64 | [`Doorbells`] | host |
//! | `0x0_0080` | 256 | [`Counters`] (default; `counters_offset`) | agent |
//! | `0x0_0180` | 64 | [`AgentInfo`] (fixed, [`crate::shared::AGENT_INFO_OFFSET`]; minor version 2, heartbeat 3) | agent |
//! | `0x0_0200` | 64 | [`BootBlock`] (fixed, [`crate::shared::BOOT_OFFSET`]) | both, field by field |
//! | `0x0_0240` | 64 | [`BoardInfo`] (fixed, [`crate::shared::BOARD_INFO_OFFSET`]; minor version 4) | agent |
//! | `0x1_0000` | 64 KiB + 16 | log ring ([`crate::logring`]; `log_ring_offset`) | agent |
//! | `0x3_0000` | 16 × entries | TX [`Descriptor`]s (default; `tx_ring_offset`) | host |
//! | `0x4_0000` | 16 × entries | RX [`Descriptor`]s (default; `rx_ring_offset`) | host |
//! | `0x3_0000` | `0xD_0000` | recovery area, only in [`AgentState::Recovery`] (over the dead rings) | host |
//!
//! # Header
//!
//! | offset | field | type | written by | meaning |
//! | --- | --- | --- | --- | --- |
//! | `0x00` | magic | u32 | agent | [`MAGIC`], "BPNT" in memory order |
//! | `0x04` | version_major | u16 | agent | [`VERSION_MAJOR`]; the host refuses another major |
//! | `0x06` | version_minor | u16 | agent | [`VERSION_MINOR`]; additions only |
//! | `0x08` | agent_features | u32 | agent | [`feature`] bits offered |
//! | `0x0c` | agent_generation | u32 | agent | bumped at every agent boot or reset |
//! | `0x10` | firmware_version | u32 | agent | `major << 16 \| minor << 8 \| patch` |
//! | `0x14` | tx_ring_offset | u32 | agent | where the TX descriptors are |
//! | `0x18` | rx_ring_offset | u32 | agent | where the RX descriptors are |
//! | `0x1c` | log_ring_offset | u32 | agent | where the log ring is ([`crate::shared::LOG_RING_OFFSET`]) |
//! | `0x20` | counters_offset | u32 | agent | where the [`Counters`] are |
//! | `0x24` | mac | [u8; 6] | agent | the host interface's MAC address |
//! | `0x2a` | ring_entries | u16 | agent | size of both rings, a power of two, 2..=4096 |
//! | `0x2c` | agent_state | u8 | agent | [`AgentState`] |
//! | `0x2d` | host_state | u8 | host | [`HostState`] |
//! | `0x2e` | mtu | u16 | host | the host's current MTU, [`MTU_MIN`]..=[`MTU_MAX`] |
//! | `0x30` | status_block_addr | u64 | host | bus address of the [`crate::status`] block in host RAM |
//! | `0x38` | host_features | u32 | host | [`feature`] bits accepted, a subset of the offered ones |
//! | `0x3c` | host_generation | u32 | host | bumped at every host (re)initialisation |
//!
//! The agent's fields come first and the host's last, so only the word at `0x2c` holds fields of
//! both writers; its two state bytes are written one byte at a time, never as a word, so neither
//! side's store can overwrite the other's. The states are bytes (and the MTU a `u16`) so that the
//! whole header, offsets table included, fits one 64-byte line.
//!
//! Bring-up: the agent writes `agent_state` = RESET, then every agent field ([`AgentRepr::emit`]),
//! then, after a barrier, READY. The host reads the header once (the only BAR reads of set-up),
//! writes its fields ([`HostRepr::emit`]) and, last, `host_state` = UP; posted writes arrive in
//! order, so an agent that sees UP sees the rest. The agent then validates them
//! ([`HostRepr::parse`]) and goes RUNNING, or BROKEN if they are refused.
//!
//! ring_entries is the agent's: it reserved the ring space in its own RAM, and the host sizes its
//! status block from it.

use crate::ring::Entries;
use crate::schema::{Field, Struct, Type};
use crate::{get_le16, get_le32, get_le64, get_u8, put_le16, put_le32, put_le64, shared, Error};

/// "BPNT" in memory order.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BPNT");
/// A host refuses a header with another major version.
pub const VERSION_MAJOR: u16 = 1;
/// Minor versions only add (fields in reserved space, feature bits, blocks in unused space), never
/// change. 2 added [`AgentInfo`]; 3 its `heartbeat`, the agent's self-repair counter and the counters
/// of its IP stack (slots 13 to 17); 4 the [`BoardInfo`] block (identity, boot stage, last fault) and
/// [`feature::RX_MULTI_BUFFER`].
pub const VERSION_MINOR: u16 = 4;
/// The first minor version with a [`BoardInfo`] block.
pub const VERSION_MINOR_BOARD_INFO: u16 = 4;
/// The first minor version with an [`AgentInfo`] block.
pub const VERSION_MINOR_AGENT_INFO: u16 = 2;
/// The first minor version whose [`AgentInfo`] carries a `heartbeat`.
pub const VERSION_MINOR_HEARTBEAT: u16 = 3;
/// The first minor version whose agent counts its IP stack's drops and fragments
/// ([`counter::RX_FRAMES_UNPARSED`] to [`counter::UDP_DROPPED`]); an older agent leaves them zero.
pub const VERSION_MINOR_IP_COUNTERS: u16 = 3;
/// The first minor version that may offer [`feature::RX_MULTI_BUFFER`].
pub const VERSION_MINOR_RX_MULTI_BUFFER: u16 = 4;

/// With [`feature::RX_MULTI_BUFFER`]: the shortest RX buffer the agent fills. Shorter ones are refused
/// (completed with [`crate::status::compl_flags::ERROR`] and counted in `bad_descriptors`), so a host
/// cannot make the agent split a frame into many tiny DMA segments. A page: the host's buffers are
/// pages or page fragments, and [`RX_CHAIN_MAX`] of them hold the largest frame.
pub const RX_BUFFER_MIN: u32 = 4096;
/// With [`feature::RX_MULTI_BUFFER`]: the most RX buffers (completions) one frame takes. The largest
/// frame ([`MTU_MAX`] plus the Ethernet header) takes 17 buffers of [`RX_BUFFER_MIN`] bytes; a host
/// drops a chain longer than this.
pub const RX_CHAIN_MAX: u32 = 32;

/// Size of [`Header`].
pub const HEADER_LEN: usize = 64;
/// Size of [`Doorbells`].
pub const DOORBELLS_LEN: usize = 64;
/// Size of [`Descriptor`].
pub const DESCRIPTOR_LEN: usize = 16;
/// Slots of [`Counters`].
pub const COUNTER_SLOTS: usize = 64;
/// Size of [`Counters`].
pub const COUNTERS_LEN: usize = 4 * COUNTER_SLOTS;
/// Size of [`AgentInfo`].
pub const AGENT_INFO_LEN: usize = 64;
/// Size of [`BoardInfo`].
pub const BOARD_INFO_LEN: usize = 64;

/// Smallest MTU (IPv4's minimum).
pub const MTU_MIN: u16 = 68;
/// Largest MTU the 16-bit field and the descriptors' frame lengths allow.
pub const MTU_MAX: u16 = 65535;
/// The MTU when [`feature::MTU`] is not negotiated (Ethernet's).
pub const MTU_DEFAULT: u16 = 1500;

/// Alignment of the host's status block, so completions never straddle a cache line.
pub const STATUS_BLOCK_ALIGN: u64 = 64;

/// Feature bits: the agent offers (`agent_features`), the host accepts a subset (`host_features`).
pub mod feature {
    /// Frames need no checksums across the backplane (PCI protects the transfer), as virtio's
    /// `CSUM`/`GUEST_CSUM`: each side may leave a TCP/UDP checksum out and say so
    /// ([`super::desc_flags::NEEDS_CSUM`] host to agent, [`crate::status::compl_flags::NEEDS_CSUM`]
    /// agent to host), and whoever receives such a frame does not verify it; it completes it only if
    /// the frame goes on to a real wire. Frames with complete checksums the agent marks
    /// [`crate::status::compl_flags::CSUM_VALID`]. Without the feature both sides compute and verify.
    pub const CSUM_OFFLOAD: u32 = 1 << 0;
    /// Notification suppression through the event indexes ([`crate::ring::need_event`]). Without it
    /// the event fields are ignored and every index update notifies.
    pub const EVENT_INDEX: u32 = 1 << 1;
    /// The host may set an MTU other than [`super::MTU_DEFAULT`].
    pub const MTU: u32 = 1 << 2;
    /// A frame to the host may span several consecutive RX buffers, as virtio's mergeable RX buffers:
    /// every completion of the frame but its last carries [`crate::status::compl_flags::MORE`], the
    /// first carries the frame's checksum flags. The agent fills each buffer whole before the next,
    /// refuses buffers shorter than [`super::RX_BUFFER_MIN`], takes at most [`super::RX_CHAIN_MAX`]
    /// buffers for one frame, and completes a frame only whole (in one chain). So the host's buffers
    /// need not hold a whole frame: pages at any MTU. Without it each buffer holds one whole frame.
    pub const RX_MULTI_BUFFER: u32 = 1 << 3;
    /// Every bit this version defines.
    pub const ALL: u32 = CSUM_OFFLOAD | EVENT_INDEX | MTU | RX_MULTI_BUFFER;
}

/// Descriptor flag bits.
pub mod desc_flags {
    /// TX only: the frame's TCP/UDP checksum is not filled in. The agent's stack, the frame's final
    /// consumer, does not verify it. Only with [`super::feature::CSUM_OFFLOAD`].
    pub const NEEDS_CSUM: u16 = 1 << 0;
    /// Every bit this version defines.
    pub const ALL: u16 = NEEDS_CSUM;
}

/// `major << 16 | minor << 8 | patch`, the header's `firmware_version`.
pub const fn firmware_version(major: u8, minor: u8, patch: u8) -> u32 {
    (major as u32) << 16 | (minor as u32) << 8 | patch as u32
}

/// The agent's state, `agent_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AgentState {
    /// Booting or resetting: nothing else in the header is valid.
    Reset = 0,
    /// The header is valid; waiting for the host.
    Ready = 1,
    /// The host's fields were accepted; the rings are live.
    Running = 2,
    /// The agent refused the host's fields or hit a fatal error; the host must re-initialise.
    Broken = 3,
    /// Waiting for an image from the host through the BAR (the boot stage found no slot to start, or
    /// the firmware was asked to): the rings are not live; the [`BootBlock`] says more.
    Recovery = 4,
}

impl TryFrom<u8> for AgentState {
    type Error = Error;
    fn try_from(value: u8) -> Result<Self, Error> {
        match value {
            0 => Ok(AgentState::Reset),
            1 => Ok(AgentState::Ready),
            2 => Ok(AgentState::Running),
            3 => Ok(AgentState::Broken),
            4 => Ok(AgentState::Recovery),
            other => Err(Error::BadState(other)),
        }
    }
}

/// The host's state, `host_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HostState {
    /// The interface is down: the agent must not touch host RAM.
    Down = 0,
    /// The host's fields are valid and its status block is allocated.
    Up = 1,
}

impl TryFrom<u8> for HostState {
    type Error = Error;
    fn try_from(value: u8) -> Result<Self, Error> {
        match value {
            0 => Ok(HostState::Down),
            1 => Ok(HostState::Up),
            other => Err(Error::BadState(other)),
        }
    }
}

/// Byte offsets of every field, each from the start of its structure: [`Header`] (at
/// [`shared::HEADER_OFFSET`](crate::shared::HEADER_OFFSET)), [`Doorbells`] (at
/// [`shared::DOORBELLS_OFFSET`](crate::shared::DOORBELLS_OFFSET)), a [`Descriptor`] and the
/// [`BootBlock`] (at [`shared::BOOT_OFFSET`](crate::shared::BOOT_OFFSET)). The typed views read through
/// them, and so does whatever must touch one field alone: a byte store of a state, a posted write of
/// one index, a test that corrupts exactly one field. Multi-byte fields are little-endian
/// ([`crate::get_le32`] and its siblings).
pub mod field {
    /// [`Header`](super::Header): the agent's fields up to `AGENT_STATE`, the host's from `HOST_STATE`.
    pub mod header {
        pub const MAGIC: usize = 0x00;
        pub const VERSION_MAJOR: usize = 0x04;
        pub const VERSION_MINOR: usize = 0x06;
        pub const AGENT_FEATURES: usize = 0x08;
        pub const AGENT_GENERATION: usize = 0x0c;
        pub const FIRMWARE_VERSION: usize = 0x10;
        pub const TX_RING_OFFSET: usize = 0x14;
        pub const RX_RING_OFFSET: usize = 0x18;
        pub const LOG_RING_OFFSET: usize = 0x1c;
        pub const COUNTERS_OFFSET: usize = 0x20;
        pub const MAC: usize = 0x24;
        pub const RING_ENTRIES: usize = 0x2a;
        pub const AGENT_STATE: usize = 0x2c;
        pub const HOST_STATE: usize = 0x2d;
        pub const MTU: usize = 0x2e;
        pub const STATUS_BLOCK_ADDR: usize = 0x30;
        pub const HOST_FEATURES: usize = 0x38;
        pub const HOST_GENERATION: usize = 0x3c;
    }

    /// The [`AgentInfo`](super::AgentInfo) block: agent-written, the rest of the 64 bytes zero.
    /// `HEARTBEAT` is the block's last word, so fields added later grow from the front.
    pub mod agent_info {
        pub const DMA_REACH: usize = 0x00;
        pub const RESERVED: usize = 0x08;
        pub const HEARTBEAT: usize = 0x3c;
    }

    /// The [`BoardInfo`](super::BoardInfo) block: the identity from `SERIAL` to `BOOT_STAGE_VERSION`,
    /// the fault record from `FAULT_SEQ`, whose word is written last.
    pub mod board_info {
        pub const SERIAL: usize = 0x00;
        pub const SLOT: usize = 0x04;
        pub const BOARD: usize = 0x05;
        pub const RESERVED: usize = 0x06;
        pub const SPRIDR: usize = 0x08;
        pub const PVR: usize = 0x0c;
        pub const BOOT_STAGE_VERSION: usize = 0x10;
        pub const RESERVED2: usize = 0x14;
        pub const FAULT_SEQ: usize = 0x20;
        pub const FAULT_VECTOR: usize = 0x24;
        pub const FAULT_SRR0: usize = 0x28;
        pub const FAULT_SRR1: usize = 0x2c;
        pub const FAULT_DAR: usize = 0x30;
        pub const FAULT_DSISR: usize = 0x34;
        pub const FAULT_GENERATION: usize = 0x38;
        pub const FAULT_UPTIME_S: usize = 0x3c;
    }

    /// [`Doorbells`](super::Doorbells): `RX_USED_EVENT` and `TX_USED_EVENT` are adjacent, so a host
    /// may post both in one write.
    pub mod doorbells {
        pub const TX_PROD: usize = 0;
        pub const RX_PROD: usize = 4;
        pub const RX_USED_EVENT: usize = 8;
        pub const TX_USED_EVENT: usize = 12;
        pub const RESERVED: usize = 16;
    }
    /// A [`Descriptor`](super::Descriptor).
    pub mod descriptor {
        pub const ADDR: usize = 0;
        pub const LEN: usize = 8;
        pub const ID: usize = 12;
        pub const FLAGS: usize = 14;
    }
    /// The [`BootBlock`](super::BootBlock): the agent's fields up to `HOST`, the host's from there.
    pub mod boot_block {

        pub const BOOT_SOURCE: usize = 0x00;
        pub const BOOT_SLOT: usize = 0x01;
        pub const BOOT_FLAGS: usize = 0x02;
        pub const STAGE: usize = 0x03;
        pub const UPTIME_S: usize = 0x04;
        pub const IMAGE_VERSION: usize = 0x08;
        pub const RECOVERY_OFFSET: usize = 0x0c;
        pub const RECOVERY_CAPACITY: usize = 0x10;
        pub const RECOVERY_ERROR: usize = 0x14;
        pub const SLOT_A_VERSION: usize = 0x18;
        pub const SLOT_B_VERSION: usize = 0x1c;
        pub const SLOT_A_STATE: usize = 0x20;
        pub const SLOT_B_STATE: usize = 0x21;
        pub const RESERVED: usize = 0x22;
        /// The agent's fields end here; the host's start.
        pub const HOST: usize = 0x30;
        pub const HOST_REQUEST: usize = 0x30;
        pub const RECOVERY_LEN: usize = 0x34;
        pub const REQUEST_SEQ: usize = 0x38;
        pub const HOST_RESERVED: usize = 0x3c;
    }
}

/// [`Header`] for the C header.
pub const HEADER_SCHEMA: Struct = Struct {
    name: "header",
    len: HEADER_LEN,
    doc: "Agent RAM at BPNET_HEADER_OFFSET. Agent fields up to agent_state, host fields from host_state; \
          the host reads it only at set-up and writes only its own fields, byte-sized ones as bytes.",
    fields: &[
        Field::new("magic", field::header::MAGIC, Type::Le32),
        Field::new("version_major", field::header::VERSION_MAJOR, Type::Le16),
        Field::new("version_minor", field::header::VERSION_MINOR, Type::Le16),
        Field::new("agent_features", field::header::AGENT_FEATURES, Type::Le32),
        Field::new("agent_generation", field::header::AGENT_GENERATION, Type::Le32),
        Field::new("firmware_version", field::header::FIRMWARE_VERSION, Type::Le32),
        Field::new("tx_ring_offset", field::header::TX_RING_OFFSET, Type::Le32),
        Field::new("rx_ring_offset", field::header::RX_RING_OFFSET, Type::Le32),
        Field::new("log_ring_offset", field::header::LOG_RING_OFFSET, Type::Le32),
        Field::new("counters_offset", field::header::COUNTERS_OFFSET, Type::Le32),
        Field::new("mac", field::header::MAC, Type::Bytes(6)),
        Field::new("ring_entries", field::header::RING_ENTRIES, Type::Le16),
        Field::new("agent_state", field::header::AGENT_STATE, Type::U8),
        Field::new("host_state", field::header::HOST_STATE, Type::U8),
        Field::new("mtu", field::header::MTU, Type::Le16),
        Field::new("status_block_addr", field::header::STATUS_BLOCK_ADDR, Type::Le64),
        Field::new("host_features", field::header::HOST_FEATURES, Type::Le32),
        Field::new("host_generation", field::header::HOST_GENERATION, Type::Le32),
    ],
};

/// [`Doorbells`] for the C header.
pub const DOORBELLS_SCHEMA: Struct = Struct {
    name: "doorbells",
    len: DOORBELLS_LEN,
    doc: "Agent RAM at BPNET_DOORBELLS_OFFSET. Host-written with posted writes, never read by the host.",
    fields: &[
        Field::new("tx_prod", field::doorbells::TX_PROD, Type::Le32),
        Field::new("rx_prod", field::doorbells::RX_PROD, Type::Le32),
        Field::new("rx_used_event", field::doorbells::RX_USED_EVENT, Type::Le32),
        Field::new("tx_used_event", field::doorbells::TX_USED_EVENT, Type::Le32),
        Field::new("reserved", field::doorbells::RESERVED, Type::Bytes(DOORBELLS_LEN - field::doorbells::RESERVED)),
    ],
};

/// [`Descriptor`] for the C header.
pub const DESCRIPTOR_SCHEMA: Struct = Struct {
    name: "descriptor",
    len: DESCRIPTOR_LEN,
    doc: "Agent RAM, TX and RX rings. Host-written: a frame to send (TX) or an empty buffer (RX).",
    fields: &[
        Field::new("addr", field::descriptor::ADDR, Type::Le64),
        Field::new("len", field::descriptor::LEN, Type::Le32),
        Field::new("id", field::descriptor::ID, Type::Le16),
        Field::new("flags", field::descriptor::FLAGS, Type::Le16),
    ],
};

/// [`AgentInfo`] for the C header.
pub const AGENT_INFO_SCHEMA: Struct = Struct {
    name: "agent_info",
    len: AGENT_INFO_LEN,
    doc: "Agent RAM at BPNET_AGENT_INFO_OFFSET, from contract minor version 2. Agent-written before READY, \
          read by the host at set-up with the header. dma_reach: the agent's DMA reaches host bus addresses \
          [0, dma_reach). heartbeat (minor 3): advanced by the agent's timer about once a second while \
          RUNNING, never 0 once started; 0 means no heartbeat yet. The host reads it on its slow path.",
    fields: &[
        Field::new("dma_reach", field::agent_info::DMA_REACH, Type::Le64),
        Field::new(
            "reserved",
            field::agent_info::RESERVED,
            Type::Bytes(field::agent_info::HEARTBEAT - field::agent_info::RESERVED),
        ),
        Field::new("heartbeat", field::agent_info::HEARTBEAT, Type::Le32),
    ],
};

/// [`BoardInfo`] for the C header.
pub const BOARD_INFO_SCHEMA: Struct = Struct {
    name: "board_info",
    len: BOARD_INFO_LEN,
    doc: "Agent RAM at BPNET_BOARD_INFO_OFFSET, from contract minor version 4. Agent-written. serial (0: no \
          identity record), slot (0..19, 0xff unknown), board (BPNET_BOARD_*), spridr and pvr: written by \
          the firmware at start. boot_stage_version: by the boot stage (0: not started by it). The fault \
          record (fault_*): by the firmware's exception handler before it waits for the host's reset, \
          fault_seq last (0: no fault since power-on); nothing else writes it, so it outlives the reset.",
    fields: &[
        Field::new("serial", field::board_info::SERIAL, Type::Le32),
        Field::new("slot", field::board_info::SLOT, Type::U8),
        Field::new("board", field::board_info::BOARD, Type::U8),
        Field::new("reserved", field::board_info::RESERVED, Type::Le16),
        Field::new("spridr", field::board_info::SPRIDR, Type::Le32),
        Field::new("pvr", field::board_info::PVR, Type::Le32),
        Field::new("boot_stage_version", field::board_info::BOOT_STAGE_VERSION, Type::Le32),
        Field::new(
            "reserved2",
            field::board_info::RESERVED2,
            Type::Bytes(field::board_info::FAULT_SEQ - field::board_info::RESERVED2),
        ),
        Field::new("fault_seq", field::board_info::FAULT_SEQ, Type::Le32),
        Field::new("fault_vector", field::board_info::FAULT_VECTOR, Type::Le32),
        Field::new("fault_srr0", field::board_info::FAULT_SRR0, Type::Le32),
        Field::new("fault_srr1", field::board_info::FAULT_SRR1, Type::Le32),
        Field::new("fault_dar", field::board_info::FAULT_DAR, Type::Le32),
        Field::new("fault_dsisr", field::board_info::FAULT_DSISR, Type::Le32),
        Field::new("fault_generation", field::board_info::FAULT_GENERATION, Type::Le32),
        Field::new("fault_uptime_s", field::board_info::FAULT_UPTIME_S, Type::Le32),
    ],
};

/// [`Counters`] for the C header.
pub const COUNTERS_SCHEMA: Struct = Struct {
    name: "counters",
    len: COUNTERS_LEN,
    doc: "Agent RAM at counters_offset. Agent-written, read by the host on slow paths; each slot wraps.",
    fields: &[Field::new("slots", 0, Type::Le32Array(COUNTER_SLOTS))],
};

fixed_view! {
    /// A typed view of the header over a byte buffer (the first [`HEADER_LEN`] bytes of the BAR).
    ///
    /// Values are checked by [`AgentRepr::parse`] and [`HostRepr::parse`].
    Header, HEADER_LEN
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn magic(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::MAGIC)
    }
    pub fn version_major(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::header::VERSION_MAJOR)
    }
    pub fn version_minor(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::header::VERSION_MINOR)
    }
    pub fn agent_features(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::AGENT_FEATURES)
    }
    pub fn agent_generation(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::AGENT_GENERATION)
    }
    pub fn firmware_version(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::FIRMWARE_VERSION)
    }
    pub fn tx_ring_offset(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::TX_RING_OFFSET)
    }
    pub fn rx_ring_offset(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::RX_RING_OFFSET)
    }
    pub fn log_ring_offset(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::LOG_RING_OFFSET)
    }
    pub fn counters_offset(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::COUNTERS_OFFSET)
    }
    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::header::MAC..field::header::MAC + 6]);
        mac
    }
    /// The raw ring size; [`Entries::new`] validates it.
    pub fn ring_entries(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::header::RING_ENTRIES)
    }
    pub fn agent_state(&self) -> Result<AgentState, Error> {
        AgentState::try_from(get_u8(self.buffer.as_ref(), field::header::AGENT_STATE))
    }
    pub fn host_state(&self) -> Result<HostState, Error> {
        HostState::try_from(get_u8(self.buffer.as_ref(), field::header::HOST_STATE))
    }
    pub fn mtu(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::header::MTU)
    }
    pub fn status_block_addr(&self) -> u64 {
        get_le64(self.buffer.as_ref(), field::header::STATUS_BLOCK_ADDR)
    }
    pub fn host_features(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::HOST_FEATURES)
    }
    pub fn host_generation(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::header::HOST_GENERATION)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Written alone, as one byte, after a barrier: see the module documentation.
    pub fn set_agent_state(&mut self, state: AgentState) {
        self.buffer.as_mut()[field::header::AGENT_STATE] = state as u8;
    }
    /// Written alone, as one byte, after the host's other fields: see the module documentation.
    pub fn set_host_state(&mut self, state: HostState) {
        self.buffer.as_mut()[field::header::HOST_STATE] = state as u8;
    }
    /// The agent bumps its generation on its own (a reset without a full re-initialisation).
    pub fn set_agent_generation(&mut self, generation: u32) {
        put_le32(self.buffer.as_mut(), field::header::AGENT_GENERATION, generation);
    }
}

/// Where the agent put its regions, as offsets from the start of the shared region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub tx_ring: u32,
    pub rx_ring: u32,
    pub log_ring: u32,
    pub counters: u32,
}

impl Layout {
    /// The agent's layout: every region at its [`crate::shared`] default.
    pub const DEFAULT: Layout = Layout {
        tx_ring: shared::TX_RING_OFFSET as u32,
        rx_ring: shared::RX_RING_OFFSET as u32,
        log_ring: shared::LOG_RING_OFFSET as u32,
        counters: shared::COUNTERS_OFFSET as u32,
    };

    /// Every region as (offset, bytes, alignment), the fixed ones first. The boot block is one of
    /// them: the boot stage and the host's recovery requests use it whatever the rings do.
    fn regions(&self, entries: Entries) -> [(u32, usize, u32); 9] {
        let ring = ring_len(entries);
        [
            (shared::HEADER_OFFSET as u32, HEADER_LEN, 64),
            (shared::DOORBELLS_OFFSET as u32, DOORBELLS_LEN, 64),
            (shared::BOOT_OFFSET as u32, BOOT_BLOCK_LEN, 64),
            (shared::AGENT_INFO_OFFSET as u32, AGENT_INFO_LEN, 64),
            (shared::BOARD_INFO_OFFSET as u32, BOARD_INFO_LEN, 64),
            (self.counters, COUNTERS_LEN, 4),
            (self.log_ring, shared::LOG_RING_LEN, 4),
            (self.tx_ring, ring, DESCRIPTOR_LEN as u32),
            (self.rx_ring, ring, DESCRIPTOR_LEN as u32),
        ]
    }

    /// Every region aligned, inside [`shared::LEN`] and apart from every other, so a host that uses
    /// the offsets can never be steered onto another region or out of the BAR.
    pub fn check(&self, entries: Entries) -> Result<(), Error> {
        let regions = self.regions(entries);
        for (i, &(at, len, align)) in regions.iter().enumerate() {
            let end = at as u64 + len as u64;
            if !at.is_multiple_of(align) || end > shared::LEN as u64 {
                return Err(Error::BadLayout(at));
            }
            for &(other, other_len, _) in &regions[..i] {
                if (at as u64) < other as u64 + other_len as u64 && (other as u64) < end {
                    return Err(Error::BadLayout(at));
                }
            }
        }
        Ok(())
    }
}

/// Bytes of one descriptor ring.
pub const fn ring_len(entries: Entries) -> usize {
    entries.get() as usize * DESCRIPTOR_LEN
}

/// The agent's half of the header, as the host sees it at set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentRepr {
    pub features: u32,
    pub generation: u32,
    pub firmware_version: u32,
    pub layout: Layout,
    pub mac: [u8; 6],
    pub ring_entries: Entries,
}

impl AgentRepr {
    /// The host's check of the agent's fields: magic, major version, ring size and layout. The
    /// agent's state is read separately ([`Header::agent_state`]): only READY or RUNNING promise the
    /// rest is valid.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<Self, Error> {
        if header.magic() != MAGIC {
            return Err(Error::BadMagic(header.magic()));
        }
        if header.version_major() != VERSION_MAJOR {
            return Err(Error::BadVersion(header.version_major(), header.version_minor()));
        }
        let ring_entries = Entries::new(header.ring_entries() as u32)?;
        let layout = Layout {
            tx_ring: header.tx_ring_offset(),
            rx_ring: header.rx_ring_offset(),
            log_ring: header.log_ring_offset(),
            counters: header.counters_offset(),
        };
        layout.check(ring_entries)?;
        Ok(AgentRepr {
            features: header.agent_features(),
            generation: header.agent_generation(),
            firmware_version: header.firmware_version(),
            layout,
            mac: header.mac(),
            ring_entries,
        })
    }

    /// Write every agent field but the state, which the agent publishes last
    /// ([`Header::set_agent_state`]) after a barrier.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        let buf = header.buffer.as_mut();
        put_le32(buf, field::header::MAGIC, MAGIC);
        put_le16(buf, field::header::VERSION_MAJOR, VERSION_MAJOR);
        put_le16(buf, field::header::VERSION_MINOR, VERSION_MINOR);
        put_le32(buf, field::header::AGENT_FEATURES, self.features);
        put_le32(buf, field::header::AGENT_GENERATION, self.generation);
        put_le32(buf, field::header::FIRMWARE_VERSION, self.firmware_version);
        put_le32(buf, field::header::TX_RING_OFFSET, self.layout.tx_ring);
        put_le32(buf, field::header::RX_RING_OFFSET, self.layout.rx_ring);
        put_le32(buf, field::header::LOG_RING_OFFSET, self.layout.log_ring);
        put_le32(buf, field::header::COUNTERS_OFFSET, self.layout.counters);
        buf[field::header::MAC..field::header::MAC + 6].copy_from_slice(&self.mac);
        // Entries::MAX fits a u16.
        put_le16(buf, field::header::RING_ENTRIES, self.ring_entries.get() as u16);
    }
}

/// The host's half of the header, as the agent accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRepr {
    pub features: u32,
    pub generation: u32,
    pub mtu: u16,
    pub status_block_addr: u64,
}

impl HostRepr {
    /// The agent's check of the host's fields against what it offered (`offered` features, its
    /// ring size): `None` while the host is down, the accepted configuration when it is up.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>, offered: u32, entries: Entries) -> Result<Option<Self>, Error> {
        if header.host_state()? == HostState::Down {
            return Ok(None);
        }
        let features = header.host_features();
        if features & !(offered & feature::ALL) != 0 {
            return Err(Error::BadFeatures(features));
        }
        let mtu = header.mtu();
        if mtu < MTU_MIN || (features & feature::MTU == 0 && mtu != MTU_DEFAULT) {
            return Err(Error::BadMtu(mtu as u32));
        }
        let addr = header.status_block_addr();
        let len = crate::status::block_len(entries) as u64;
        if addr == 0 || !addr.is_multiple_of(STATUS_BLOCK_ALIGN) || addr.checked_add(len).is_none() {
            return Err(Error::BadAddress(addr));
        }
        Ok(Some(HostRepr { features, generation: header.host_generation(), mtu, status_block_addr: addr }))
    }

    /// Write every host field but the state, which the host writes last ([`Header::set_host_state`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        let buf = header.buffer.as_mut();
        put_le16(buf, field::header::MTU, self.mtu);
        put_le64(buf, field::header::STATUS_BLOCK_ADDR, self.status_block_addr);
        put_le32(buf, field::header::HOST_FEATURES, self.features);
        put_le32(buf, field::header::HOST_GENERATION, self.generation);
    }
}

fixed_view! {
    /// A typed view of the agent info block at [`shared::AGENT_INFO_OFFSET`] (contract minor version 2
    /// and later): the agent's fields the header's one line has no room for. The agent writes it
    /// before READY, the host reads it at set-up together with the header.
    AgentInfo, AGENT_INFO_LEN
}

impl<T: AsRef<[u8]>> AgentInfo<T> {
    /// The end of the host bus addresses the agent's DMA reaches through its outbound windows: it
    /// reaches `[0, dma_reach)`. The host keeps every bus address it hands over below it.
    pub fn dma_reach(&self) -> u64 {
        get_le64(self.buffer.as_ref(), field::agent_info::DMA_REACH)
    }
    /// The raw heartbeat word (minor version 3 and later; [`parse_heartbeat`] says what it means).
    pub fn heartbeat(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::agent_info::HEARTBEAT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AgentInfo<T> {
    /// The agent's write of the whole block: `dma_reach` and `heartbeat`, the rest zero.
    pub fn emit(&mut self, dma_reach: u64, heartbeat: u32) {
        let buf = self.buffer.as_mut();
        buf[..AGENT_INFO_LEN].fill(0);
        put_le64(buf, field::agent_info::DMA_REACH, dma_reach);
        put_le32(buf, field::agent_info::HEARTBEAT, heartbeat);
    }
    /// The agent's timer: the heartbeat word alone.
    pub fn set_heartbeat(&mut self, heartbeat: u32) {
        put_le32(self.buffer.as_mut(), field::agent_info::HEARTBEAT, heartbeat);
    }
}

/// The heartbeat after `beat`: it wraps past 0, which stays "no heartbeat yet".
pub const fn next_heartbeat(beat: u32) -> u32 {
    match beat.wrapping_add(1) {
        0 => 1,
        next => next,
    }
}

/// The host's view of the heartbeat: `None` when none is known (an agent of minor version 2 or
/// older, or one whose timer has not ticked yet: neither may be taken for dead), else the beat.
pub fn parse_heartbeat<T: AsRef<[u8]>>(version_minor: u16, info: &AgentInfo<T>) -> Option<u32> {
    if version_minor < VERSION_MINOR_HEARTBEAT {
        return None;
    }
    Some(info.heartbeat()).filter(|&beat| beat != 0)
}

/// The host's check of the agent's DMA reach: an agent of minor version 1 has no [`AgentInfo`] and
/// reaches [`crate::DMA_REACH_MINOR_1`]; a later one publishes its reach, which must cover at least
/// one page (anything less could not even hold the status block).
pub fn parse_dma_reach<T: AsRef<[u8]>>(version_minor: u16, info: &AgentInfo<T>) -> Result<u64, Error> {
    if version_minor < VERSION_MINOR_AGENT_INFO {
        return Ok(crate::DMA_REACH_MINOR_1);
    }
    match info.dma_reach() {
        reach if reach < DMA_REACH_MIN => Err(Error::BadReach(reach)),
        reach => Ok(reach),
    }
}

/// The smallest `dma_reach` a host accepts: one 4 KiB page.
pub const DMA_REACH_MIN: u64 = 4096;

/// `board` in [`BoardInfo`]: which board the firmware was built for.
pub mod board {
    /// Not known (a block of minor version 4 always names one; 0 is what an unwritten block holds).
    pub const UNKNOWN: u8 = 0;
    /// Freescale's MPC8349E-MDS (MPC8349EMDS) development system.
    pub const MPC8349EMDS: u8 = 1;
}

/// `slot` in [`BoardInfo`] when the board has no identity record or its record names no slot.
pub const BOARD_SLOT_UNKNOWN: u8 = 0xFF;
/// Chassis slots are `0..BOARD_SLOTS` (the identity record's limit).
pub const BOARD_SLOTS: u8 = 20;
/// The largest serial an identity record holds (24 bits: the MACs carry it whole).
pub const BOARD_SERIAL_MAX: u32 = 0xFF_FFFF;

fixed_view! {
    /// A typed view of the board info block at [`shared::BOARD_INFO_OFFSET`] (contract minor version 4
    /// and later): the board's identity (from its identity record in flash and the SoC's registers),
    /// the boot stage's version, and the record of the last fault the firmware took.
    ///
    /// The fault record is written by the exception handler only, the words first and `fault_seq`
    /// last after a barrier, so a host that sees a new sequence number sees the rest. Neither the boot
    /// stage nor the firmware's start touches it: RAM keeps it across the reset that follows, and the
    /// host reads it once per sequence number.
    BoardInfo, BOARD_INFO_LEN
}

/// The identity half of [`BoardInfo`], as the agent writes it and the host accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardRepr {
    /// Board serial, `1..=BOARD_SERIAL_MAX`, or 0 without an identity record.
    pub serial: u32,
    /// Chassis slot, `0..BOARD_SLOTS`, or [`BOARD_SLOT_UNKNOWN`].
    pub slot: u8,
    /// [`board`].
    pub board: u8,
    /// The SoC's System Part and Revision ID register.
    pub spridr: u32,
    /// The core's Processor Version Register.
    pub pvr: u32,
    /// The boot stage that started this program (`major << 16 | minor << 8 | patch`), 0 if none did.
    pub boot_stage_version: u32,
}

/// The last fault the firmware took, as its exception handler recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRepr {
    /// Bumped at every fault (never 0: 0 means none since power-on).
    pub seq: u32,
    /// The exception vector's offset (0x300 DSI, 0x700 program, ...).
    pub vector: u32,
    pub srr0: u32,
    pub srr1: u32,
    pub dar: u32,
    pub dsisr: u32,
    /// The header's `agent_generation` of the program that faulted.
    pub generation: u32,
    /// Seconds the faulting program had run.
    pub uptime_s: u32,
}

impl<T: AsRef<[u8]>> BoardInfo<T> {
    pub fn fault_seq(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::board_info::FAULT_SEQ)
    }
}

impl BoardRepr {
    /// The host's view of the identity: `None` for an agent older than minor version 4. A serial or
    /// slot outside what an identity record may hold is refused as [`Error::BadIdentity`] (the host
    /// counts it and shows no identity); the rest are numbers the host only prints.
    pub fn parse<T: AsRef<[u8]>>(version_minor: u16, info: &BoardInfo<T>) -> Result<Option<Self>, Error> {
        if version_minor < VERSION_MINOR_BOARD_INFO {
            return Ok(None);
        }
        let buf = info.buffer.as_ref();
        let serial = get_le32(buf, field::board_info::SERIAL);
        let slot = get_u8(buf, field::board_info::SLOT);
        if serial > BOARD_SERIAL_MAX || (slot >= BOARD_SLOTS && slot != BOARD_SLOT_UNKNOWN) {
            return Err(Error::BadIdentity(serial, slot));
        }
        Ok(Some(BoardRepr {
            serial,
            slot,
            board: get_u8(buf, field::board_info::BOARD),
            spridr: get_le32(buf, field::board_info::SPRIDR),
            pvr: get_le32(buf, field::board_info::PVR),
            boot_stage_version: get_le32(buf, field::board_info::BOOT_STAGE_VERSION),
        }))
    }

    /// The firmware's write of the identity at start: every identity field and the reserved bytes
    /// between them, never the fault record.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, info: &mut BoardInfo<T>) {
        let buf = info.buffer.as_mut();
        put_le32(buf, field::board_info::SERIAL, self.serial);
        buf[field::board_info::SLOT] = self.slot;
        buf[field::board_info::BOARD] = self.board;
        put_le16(buf, field::board_info::RESERVED, 0);
        put_le32(buf, field::board_info::SPRIDR, self.spridr);
        put_le32(buf, field::board_info::PVR, self.pvr);
        put_le32(buf, field::board_info::BOOT_STAGE_VERSION, self.boot_stage_version);
        buf[field::board_info::RESERVED2..field::board_info::FAULT_SEQ].fill(0);
    }
}

impl FaultRepr {
    /// The host's view of the fault record: a fault it has not seen (`fault_seq` non-zero and not
    /// `last_seq`), or `None`. An agent older than minor version 4 has none. A vector that is no
    /// exception vector (not a multiple of 0x100 in 0x100..=[`FAULT_VECTOR_MAX`]) is refused as
    /// [`Error::BadFault`] with the sequence number, which the host then takes as seen. The other
    /// words are numbers the host only prints and keeps, never uses for lengths or addresses.
    pub fn parse<T: AsRef<[u8]>>(
        version_minor: u16,
        info: &BoardInfo<T>,
        last_seq: u32,
    ) -> Result<Option<Self>, (u32, Error)> {
        let seq = info.fault_seq();
        if version_minor < VERSION_MINOR_BOARD_INFO || seq == 0 || seq == last_seq {
            return Ok(None);
        }
        let buf = info.buffer.as_ref();
        let vector = get_le32(buf, field::board_info::FAULT_VECTOR);
        if vector == 0 || vector > FAULT_VECTOR_MAX || !vector.is_multiple_of(0x100) {
            return Err((seq, Error::BadFault(vector)));
        }
        Ok(Some(FaultRepr {
            seq,
            vector: get_le32(buf, field::board_info::FAULT_VECTOR),
            srr0: get_le32(buf, field::board_info::FAULT_SRR0),
            srr1: get_le32(buf, field::board_info::FAULT_SRR1),
            dar: get_le32(buf, field::board_info::FAULT_DAR),
            dsisr: get_le32(buf, field::board_info::FAULT_DSISR),
            generation: get_le32(buf, field::board_info::FAULT_GENERATION),
            uptime_s: get_le32(buf, field::board_info::FAULT_UPTIME_S),
        }))
    }

    /// The exception handler's write: every word but the sequence number, which the caller writes
    /// last ([`fault_seq_after`]) after a barrier.
    pub fn emit_words<T: AsRef<[u8]> + AsMut<[u8]>>(&self, info: &mut BoardInfo<T>) {
        let buf = info.buffer.as_mut();
        put_le32(buf, field::board_info::FAULT_VECTOR, self.vector);
        put_le32(buf, field::board_info::FAULT_SRR0, self.srr0);
        put_le32(buf, field::board_info::FAULT_SRR1, self.srr1);
        put_le32(buf, field::board_info::FAULT_DAR, self.dar);
        put_le32(buf, field::board_info::FAULT_DSISR, self.dsisr);
        put_le32(buf, field::board_info::FAULT_GENERATION, self.generation);
        put_le32(buf, field::board_info::FAULT_UPTIME_S, self.uptime_s);
    }
}

/// The largest exception vector offset a fault record may hold: the 603e/e300 vector area ends at
/// 0x2FFF, and every vector is a multiple of 0x100 from 0x100.
pub const FAULT_VECTOR_MAX: u32 = 0x2F00;

/// The fault sequence number after `seq`: it wraps past 0, which stays "no fault".
pub const fn fault_seq_after(seq: u32) -> u32 {
    next_heartbeat(seq)
}

fixed_view! {
    /// A typed view of the doorbell block: the host's ring indexes and event indexes, free-running.
    ///
    /// The indexes themselves are checked against the consumer's with [`crate::ring::pending`].
    Doorbells, DOORBELLS_LEN
}

impl<T: AsRef<[u8]>> Doorbells<T> {
    /// TX descriptors the host has ever posted.
    pub fn tx_prod(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::doorbells::TX_PROD)
    }
    /// RX buffers the host has ever posted.
    pub fn rx_prod(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::doorbells::RX_PROD)
    }
    /// The host wants an interrupt once `rx_used` passes this.
    pub fn rx_used_event(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::doorbells::RX_USED_EVENT)
    }
    /// The host wants an interrupt once `tx_used` passes this.
    pub fn tx_used_event(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::doorbells::TX_USED_EVENT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Doorbells<T> {
    pub fn set_tx_prod(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::doorbells::TX_PROD, value);
    }
    pub fn set_rx_prod(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::doorbells::RX_PROD, value);
    }
    pub fn set_rx_used_event(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::doorbells::RX_USED_EVENT, value);
    }
    pub fn set_tx_used_event(&mut self, value: u32) {
        put_le32(self.buffer.as_mut(), field::doorbells::TX_USED_EVENT, value);
    }
}

fixed_view! {
    /// A typed view of one descriptor, TX (a frame to send) or RX (an empty buffer to fill).
    ///
    /// values are checked by [`Descriptor::check`].
    Descriptor, DESCRIPTOR_LEN
}

/// A descriptor that passed [`Descriptor::check`]: safe for the ring engine to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorRepr {
    /// Host bus address of the frame (TX) or buffer (RX).
    pub addr: u64,
    /// TX: the frame's length; RX: the buffer's capacity.
    pub len: u32,
    /// The host's cookie, returned in the completion.
    pub id: u16,
    /// [`desc_flags`].
    pub flags: u16,
}

impl<T: AsRef<[u8]>> Descriptor<T> {
    pub fn addr(&self) -> u64 {
        get_le64(self.buffer.as_ref(), field::descriptor::ADDR)
    }
    pub fn len(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::descriptor::LEN)
    }
    /// Whether `len` is zero (such a descriptor is refused by [`Descriptor::check`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn id(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::descriptor::ID)
    }
    pub fn flags(&self) -> u16 {
        get_le16(self.buffer.as_ref(), field::descriptor::FLAGS)
    }

    /// Validate the host's descriptor before the agent programs a DMA from it: a length of 1 to
    /// `max_len` bytes, an address range that does not wrap past the end of the 64-bit bus, and
    /// only defined flags.
    pub fn check(&self, max_len: u32) -> Result<DescriptorRepr, Error> {
        let (addr, len, flags) = (self.addr(), self.len(), self.flags());
        if len == 0 || len > max_len {
            return Err(Error::BadLength(len));
        }
        if addr.checked_add(len as u64).is_none() {
            return Err(Error::BadAddress(addr));
        }
        if flags & !desc_flags::ALL != 0 {
            return Err(Error::BadFlags(flags));
        }
        Ok(DescriptorRepr { addr, len, id: self.id(), flags })
    }
}

impl DescriptorRepr {
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, descriptor: &mut Descriptor<T>) {
        let buf = descriptor.buffer.as_mut();
        put_le64(buf, field::descriptor::ADDR, self.addr);
        put_le32(buf, field::descriptor::LEN, self.len);
        put_le16(buf, field::descriptor::ID, self.id);
        put_le16(buf, field::descriptor::FLAGS, self.flags);
    }
}

/// Counter slots, named from the host's point of view (TX is the host transmitting to the agent).
pub mod counter {
    /// TX descriptors completed without error.
    pub const TX_FRAMES: usize = 0;
    /// Bytes of those frames.
    pub const TX_BYTES: usize = 1;
    /// RX completions delivered to the host without error.
    pub const RX_FRAMES: usize = 2;
    /// Bytes of those frames.
    pub const RX_BYTES: usize = 3;
    /// DMA transfers of TX frames that failed.
    pub const TX_DMA_ERRORS: usize = 4;
    /// DMA transfers of RX frames or completions that failed.
    pub const RX_DMA_ERRORS: usize = 5;
    /// Descriptors refused by [`super::Descriptor::check`].
    pub const BAD_DESCRIPTORS: usize = 6;
    /// Producer indexes refused by [`crate::ring::pending`].
    pub const BAD_INDEXES: usize = 7;
    /// Frames for the host dropped because it had posted no RX buffer.
    pub const RX_NO_BUFFER: usize = 8;
    /// Doorbells the agent received.
    pub const DOORBELLS: usize = 9;
    /// Interrupts the agent raised.
    pub const INTERRUPTS: usize = 10;
    /// Host (re)initialisations the agent saw (changes of `host_generation`).
    pub const HOST_RESETS_SEEN: usize = 11;
    /// Host header fields refused by [`super::HostRepr::parse`].
    pub const BAD_HOST_CONFIG: usize = 12;
    /// Frames from the host the agent's IP stack has no use for, dropped before it: shorter than an
    /// Ethernet header, neither IPv4 nor ARP (IPv6, VLAN-tagged, ...), or an IPv4 header that does
    /// not parse.
    pub const RX_FRAMES_UNPARSED: usize = 13;
    /// IPv4 fragments from the host handed to the stack's reassembly.
    pub const IP_FRAGMENTS_RECEIVED: usize = 14;
    /// IPv4 fragments from the host dropped before the stack: they reach past the largest IPv4
    /// datagram (65535 bytes), so no reassembly could hold them.
    pub const IP_FRAGMENTS_DROPPED: usize = 15;
    /// IPv4 fragments the stack sent to the host (a datagram larger than the MTU).
    pub const IP_FRAGMENTS_SENT: usize = 16;
    /// UDP datagrams the agent's UDP services received but could not answer (the reply not queued).
    pub const UDP_DROPPED: usize = 17;
    /// The agent found one of its own published fields (header, agent info block) overwritten and
    /// wrote it again.
    pub const HEADER_REPAIRS: usize = 24;
}

/// Every counter with its name (as `ethtool -S` shows it) and slot.
pub const COUNTERS: &[(&str, usize)] = &[
    ("tx_frames", counter::TX_FRAMES),
    ("tx_bytes", counter::TX_BYTES),
    ("rx_frames", counter::RX_FRAMES),
    ("rx_bytes", counter::RX_BYTES),
    ("tx_dma_errors", counter::TX_DMA_ERRORS),
    ("rx_dma_errors", counter::RX_DMA_ERRORS),
    ("bad_descriptors", counter::BAD_DESCRIPTORS),
    ("bad_indexes", counter::BAD_INDEXES),
    ("rx_no_buffer", counter::RX_NO_BUFFER),
    ("doorbells", counter::DOORBELLS),
    ("interrupts", counter::INTERRUPTS),
    ("host_resets_seen", counter::HOST_RESETS_SEEN),
    ("bad_host_config", counter::BAD_HOST_CONFIG),
    ("rx_frames_unparsed", counter::RX_FRAMES_UNPARSED),
    ("ip_fragments_received", counter::IP_FRAGMENTS_RECEIVED),
    ("ip_fragments_dropped", counter::IP_FRAGMENTS_DROPPED),
    ("ip_fragments_sent", counter::IP_FRAGMENTS_SENT),
    ("udp_dropped", counter::UDP_DROPPED),
    ("header_repairs", counter::HEADER_REPAIRS),
];

fixed_view! {
    /// A typed view of the counters: [`COUNTER_SLOTS`] little-endian `u32`, each wrapping at 2^32 (a
    /// reader takes differences).
    Counters, COUNTERS_LEN
}

impl<T: AsRef<[u8]>> Counters<T> {
    pub fn get(&self, slot: usize) -> Result<u32, Error> {
        if slot >= COUNTER_SLOTS {
            return Err(Error::BadCounter(slot));
        }
        Ok(get_le32(self.buffer.as_ref(), 4 * slot))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Counters<T> {
    /// Add `n`, wrapping.
    pub fn add(&mut self, slot: usize, n: u32) -> Result<(), Error> {
        let value = self.get(slot)?.wrapping_add(n);
        put_le32(self.buffer.as_mut(), 4 * slot, value);
        Ok(())
    }

    /// Zero every slot (at agent boot).
    pub fn clear(&mut self) {
        self.buffer.as_mut()[..COUNTERS_LEN].fill(0);
    }
}

/// Bytes of the [`BootBlock`].
pub const BOOT_BLOCK_LEN: usize = 64;

/// `boot_source`: how the running program was started.
pub mod boot_source {
    /// Loaded by a debugger, U-Boot's `go` or the emulator, with no boot info.
    pub const DIRECT: u8 = 0;
    /// From a flash slot by the boot stage.
    pub const FLASH: u8 = 1;
    /// Fetched over TFTP by the firmware.
    pub const NETBOOT: u8 = 2;
    /// Written by the host into the recovery area through the BAR.
    pub const RECOVERY: u8 = 3;
}

/// `boot_slot` when the program did not come from a slot.
pub const BOOT_SLOT_NONE: u8 = 0xFF;
/// `slot_a_state` / `slot_b_state` when the boot state is unknown.
pub const SLOT_STATE_UNKNOWN: u8 = 0xFF;

/// `slot_a_state` / `slot_b_state`: the slot's state in the boot-state record (`bpnet_update`'s
/// `SlotState`, as its byte).
pub mod slot_state {
    /// Nothing usable (never written, or being written).
    pub const EMPTY: u8 = 0;
    /// A complete image that verified; its firmware has not confirmed yet (the next boot tries it).
    pub const WRITTEN: u8 = 1;
    /// Its firmware booted and confirmed itself.
    pub const CONFIRMED: u8 = 2;
    /// Ran out of trial boots or failed verification on trial: not started until rewritten.
    pub const REJECTED: u8 = 3;
}

/// `boot_flags` bits.
pub mod boot_flags {
    /// Started on trial: it must confirm before its boots run out.
    pub const TRIAL: u8 = 1 << 0;
    /// The slot it runs from is confirmed (now, or it was already).
    pub const CONFIRMED: u8 = 1 << 1;
}

/// `stage`: what the agent is doing, as far as booting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BootStage {
    /// The firmware is running.
    Firmware = 0,
    /// The boot stage is reading the boot state and verifying slots.
    Choosing = 1,
    /// Waiting for an image in the recovery area.
    RecoveryWaiting = 2,
    /// Verifying the image the host declared.
    RecoveryVerifying = 3,
    /// The last image was refused (`recovery_error` says why); still waiting.
    RecoveryRefused = 4,
    /// An image verified and is being started.
    Starting = 5,
}

impl TryFrom<u8> for BootStage {
    type Error = Error;
    fn try_from(value: u8) -> Result<Self, Error> {
        match value {
            0 => Ok(BootStage::Firmware),
            1 => Ok(BootStage::Choosing),
            2 => Ok(BootStage::RecoveryWaiting),
            3 => Ok(BootStage::RecoveryVerifying),
            4 => Ok(BootStage::RecoveryRefused),
            5 => Ok(BootStage::Starting),
            other => Err(Error::BadState(other)),
        }
    }
}

/// `host_request`: what the host asks for when it bumps `request_seq` and rings
/// [`crate::notify::CONTROL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HostRequest {
    /// Nothing.
    None = 0,
    /// Reset the agent (a software hard reset; the boot stage runs again).
    Reset = 1,
    /// Stop the rings and wait for an image in the recovery area ([`AgentState::Recovery`]).
    EnterRecovery = 2,
    /// Verify and start the `recovery_len` bytes at `recovery_offset` (in [`AgentState::Recovery`]).
    BootImage = 3,
}

impl TryFrom<u32> for HostRequest {
    type Error = Error;
    fn try_from(value: u32) -> Result<Self, Error> {
        match value {
            0 => Ok(HostRequest::None),
            1 => Ok(HostRequest::Reset),
            2 => Ok(HostRequest::EnterRecovery),
            3 => Ok(HostRequest::BootImage),
            other => Err(Error::BadRequest(other)),
        }
    }
}

/// `recovery_error` for a declared length of zero or beyond `recovery_capacity` (the other values are
/// the image verifier's error codes, `bpnet_image::Error::code`, 1 to 16).
pub const RECOVERY_ERROR_LENGTH: u32 = 0x100;

/// The agent's half of the boot block ends here and the host's begins: the agent writes bytes
/// `0..BOOT_HOST_FIELDS` only, the host the rest only.
pub const BOOT_HOST_FIELDS: usize = field::boot_block::HOST;

/// [`BootBlock`] for the C header.
pub const BOOT_BLOCK_SCHEMA: Struct = Struct {
    name: "boot_block",
    len: BOOT_BLOCK_LEN,
    doc: "Agent RAM at BPNET_BOOT_OFFSET. Agent fields up to reserved, host fields from host_request; the \
          host writes recovery_len, host_request, then request_seq, then rings BPNET_NOTIFY_CONTROL.",
    fields: &[
        Field::new("boot_source", field::boot_block::BOOT_SOURCE, Type::U8),
        Field::new("boot_slot", field::boot_block::BOOT_SLOT, Type::U8),
        Field::new("boot_flags", field::boot_block::BOOT_FLAGS, Type::U8),
        Field::new("stage", field::boot_block::STAGE, Type::U8),
        Field::new("uptime_s", field::boot_block::UPTIME_S, Type::Le32),
        Field::new("image_version", field::boot_block::IMAGE_VERSION, Type::Le32),
        Field::new("recovery_offset", field::boot_block::RECOVERY_OFFSET, Type::Le32),
        Field::new("recovery_capacity", field::boot_block::RECOVERY_CAPACITY, Type::Le32),
        Field::new("recovery_error", field::boot_block::RECOVERY_ERROR, Type::Le32),
        Field::new("slot_a_version", field::boot_block::SLOT_A_VERSION, Type::Le32),
        Field::new("slot_b_version", field::boot_block::SLOT_B_VERSION, Type::Le32),
        Field::new("slot_a_state", field::boot_block::SLOT_A_STATE, Type::U8),
        Field::new("slot_b_state", field::boot_block::SLOT_B_STATE, Type::U8),
        Field::new(
            "reserved",
            field::boot_block::RESERVED,
            Type::Bytes(field::boot_block::HOST - field::boot_block::RESERVED),
        ),
        Field::new("host_request", field::boot_block::HOST_REQUEST, Type::Le32),
        Field::new("recovery_len", field::boot_block::RECOVERY_LEN, Type::Le32),
        Field::new("request_seq", field::boot_block::REQUEST_SEQ, Type::Le32),
        Field::new("host_reserved", field::boot_block::HOST_RESERVED, Type::Le32),
    ],
};

fixed_view! {
    /// A typed view of the boot block at [`crate::shared::BOOT_OFFSET`]: how the running program was
    /// started, the slots, recovery, and the host's requests.
    ///
    /// | offset | type | writer | field |
    /// | --- | --- | --- | --- |
    /// | `0x00` | u8 | agent | boot_source ([`boot_source`]) |
    /// | `0x01` | u8 | agent | boot_slot: 0 A, 1 B, [`BOOT_SLOT_NONE`] |
    /// | `0x02` | u8 | agent | boot_flags ([`boot_flags`]) |
    /// | `0x03` | u8 | agent | stage ([`BootStage`]) |
    /// | `0x04` | u32 | agent | uptime_s: seconds since this program started (at least every second) |
    /// | `0x08` | u32 | agent | image_version of the running program (0 unknown) |
    /// | `0x0c` | u32 | agent | recovery_offset in the shared region, or 0 |
    /// | `0x10` | u32 | agent | recovery_capacity in bytes, or 0 |
    /// | `0x14` | u32 | agent | recovery_error: why the last recovery image was refused (0 none) |
    /// | `0x18` | u32 | agent | slot_a_version |
    /// | `0x1c` | u32 | agent | slot_b_version |
    /// | `0x20` | u8 | agent | slot_a_state (empty, written, confirmed, rejected; [`SLOT_STATE_UNKNOWN`]) |
    /// | `0x21` | u8 | agent | slot_b_state |
    /// | `0x30` | u32 | host | host_request ([`HostRequest`]) |
    /// | `0x34` | u32 | host | recovery_len |
    /// | `0x38` | u32 | host | request_seq: bumped with every request; the agent acts once per value |
    ///
    /// The agent's fields and the host's never share a word, so neither side's store overwrites the
    /// other's. The host writes `recovery_len`, `host_request`, then `request_seq` (posted writes
    /// arrive in order) and rings [`crate::notify::CONTROL`]; an agent that sees the new sequence
    /// number sees the rest.
    BootBlock, BOOT_BLOCK_LEN
}

impl<T: AsRef<[u8]>> BootBlock<T> {
    pub fn boot_source(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::boot_block::BOOT_SOURCE)
    }
    pub fn boot_slot(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::boot_block::BOOT_SLOT)
    }
    pub fn boot_flags(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::boot_block::BOOT_FLAGS)
    }
    pub fn stage(&self) -> Result<BootStage, Error> {
        BootStage::try_from(get_u8(self.buffer.as_ref(), field::boot_block::STAGE))
    }
    pub fn uptime_s(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::UPTIME_S)
    }
    pub fn image_version(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::IMAGE_VERSION)
    }
    pub fn recovery_offset(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::RECOVERY_OFFSET)
    }
    pub fn recovery_capacity(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::RECOVERY_CAPACITY)
    }
    pub fn recovery_error(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::RECOVERY_ERROR)
    }
    pub fn slot_version(&self, slot: usize) -> u32 {
        let at = if slot == 0 { field::boot_block::SLOT_A_VERSION } else { field::boot_block::SLOT_B_VERSION };
        get_le32(self.buffer.as_ref(), at)
    }
    pub fn slot_state(&self, slot: usize) -> u8 {
        let at = if slot == 0 { field::boot_block::SLOT_A_STATE } else { field::boot_block::SLOT_B_STATE };
        get_u8(self.buffer.as_ref(), at)
    }
    /// The raw request word; [`HostRequest::try_from`] checks it.
    pub fn host_request(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::HOST_REQUEST)
    }
    pub fn recovery_len(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::RECOVERY_LEN)
    }
    pub fn request_seq(&self) -> u32 {
        get_le32(self.buffer.as_ref(), field::boot_block::REQUEST_SEQ)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BootBlock<T> {
    pub fn set_stage(&mut self, stage: BootStage) {
        self.buffer.as_mut()[field::boot_block::STAGE] = stage as u8;
    }
    pub fn set_boot_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::boot_block::BOOT_FLAGS] = flags;
    }
    pub fn set_uptime_s(&mut self, seconds: u32) {
        put_le32(self.buffer.as_mut(), field::boot_block::UPTIME_S, seconds);
    }
    pub fn set_recovery_error(&mut self, error: u32) {
        put_le32(self.buffer.as_mut(), field::boot_block::RECOVERY_ERROR, error);
    }
    /// Host side: write a request in the documented order (length, request, then the sequence
    /// number the agent acts on). A host on the other side of PCI writes the same three words as
    /// posted writes in this order.
    pub fn set_host_request(&mut self, request: HostRequest, recovery_len: u32, seq: u32) {
        let buf = self.buffer.as_mut();
        put_le32(buf, field::boot_block::RECOVERY_LEN, recovery_len);
        put_le32(buf, field::boot_block::HOST_REQUEST, request as u32);
        put_le32(buf, field::boot_block::REQUEST_SEQ, seq);
    }
}

/// The agent's fields of the boot block (everything before `host_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootRepr {
    pub boot_source: u8,
    pub boot_slot: u8,
    pub boot_flags: u8,
    pub stage: BootStage,
    pub uptime_s: u32,
    pub image_version: u32,
    pub recovery_offset: u32,
    pub recovery_capacity: u32,
    pub recovery_error: u32,
    pub slot_versions: [u32; 2],
    pub slot_states: [u8; 2],
}

impl BootRepr {
    /// Parse the agent's fields (the host's view); a stage outside [`BootStage`] is refused.
    pub fn parse<T: AsRef<[u8]>>(block: &BootBlock<T>) -> Result<Self, Error> {
        Ok(BootRepr {
            boot_source: block.boot_source(),
            boot_slot: block.boot_slot(),
            boot_flags: block.boot_flags(),
            stage: block.stage()?,
            uptime_s: block.uptime_s(),
            image_version: block.image_version(),
            recovery_offset: block.recovery_offset(),
            recovery_capacity: block.recovery_capacity(),
            recovery_error: block.recovery_error(),
            slot_versions: [block.slot_version(0), block.slot_version(1)],
            slot_states: [block.slot_state(0), block.slot_state(1)],
        })
    }

    /// Write the agent's fields, reserved bytes zeroed; the host's fields are left alone.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, block: &mut BootBlock<T>) {
        let buf = block.buffer.as_mut();
        buf[field::boot_block::BOOT_SOURCE] = self.boot_source;
        buf[field::boot_block::BOOT_SLOT] = self.boot_slot;
        buf[field::boot_block::BOOT_FLAGS] = self.boot_flags;
        buf[field::boot_block::STAGE] = self.stage as u8;
        put_le32(buf, field::boot_block::UPTIME_S, self.uptime_s);
        put_le32(buf, field::boot_block::IMAGE_VERSION, self.image_version);
        put_le32(buf, field::boot_block::RECOVERY_OFFSET, self.recovery_offset);
        put_le32(buf, field::boot_block::RECOVERY_CAPACITY, self.recovery_capacity);
        put_le32(buf, field::boot_block::RECOVERY_ERROR, self.recovery_error);
        put_le32(buf, field::boot_block::SLOT_A_VERSION, self.slot_versions[0]);
        put_le32(buf, field::boot_block::SLOT_B_VERSION, self.slot_versions[1]);
        buf[field::boot_block::SLOT_A_STATE] = self.slot_states[0];
        buf[field::boot_block::SLOT_B_STATE] = self.slot_states[1];
        buf[field::boot_block::RESERVED..field::boot_block::HOST].fill(0);
    }
}

/// A host request, checked (the agent's view of the host's fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRepr {
    pub request: HostRequest,
    pub recovery_len: u32,
    pub seq: u32,
}

impl RequestRepr {
    /// The host's request if `request_seq` differs from `last_seq` (the agent acts once per value).
    /// `Ok(None)`: nothing new. A request word outside [`HostRequest`] is refused (the caller counts it
    /// and takes the sequence number as seen, so one bad request is refused once).
    pub fn parse<T: AsRef<[u8]>>(block: &BootBlock<T>, last_seq: u32) -> Result<Option<Self>, (u32, Error)> {
        let seq = block.request_seq();
        if seq == last_seq {
            return Ok(None);
        }
        let request = HostRequest::try_from(block.host_request()).map_err(|e| (seq, e))?;
        Ok(Some(RequestRepr { request, recovery_len: block.recovery_len(), seq }))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boot_block_round_trips() {
        let mut buf = [0xAAu8; BOOT_BLOCK_LEN];
        let mut block = BootBlock::new_checked(&mut buf[..]).unwrap();
        let repr = BootRepr {
            boot_source: boot_source::FLASH,
            boot_slot: 1,
            boot_flags: boot_flags::TRIAL,
            stage: BootStage::Firmware,
            uptime_s: 12,
            image_version: firmware_version(1, 2, 3),
            recovery_offset: shared::RECOVERY_OFFSET as u32,
            recovery_capacity: shared::RECOVERY_LEN as u32,
            recovery_error: 0,
            slot_versions: [firmware_version(1, 2, 2), firmware_version(1, 2, 3)],
            slot_states: [2, 1],
        };
        repr.emit(&mut block);
        // The host's half is the host's: emit leaves it alone.
        assert!(buf[BOOT_HOST_FIELDS..].iter().all(|&b| b == 0xAA));
        assert!(buf[0x22..BOOT_HOST_FIELDS].iter().all(|&b| b == 0));
        let block = BootBlock::new_checked(&buf[..]).unwrap();
        assert_eq!(BootRepr::parse(&block), Ok(repr));
        assert_eq!(&buf[0x18..0x1c], &firmware_version(1, 2, 2).to_le_bytes());
    }

    #[test]
    fn boot_block_refuses_bad_values() {
        assert_eq!(BootBlock::new_checked(&[0u8; BOOT_BLOCK_LEN - 1][..]).unwrap_err(), Error::Truncated);
        let mut buf = [0u8; BOOT_BLOCK_LEN];
        buf[0x03] = 6;
        assert_eq!(BootRepr::parse(&BootBlock::new_checked(&buf[..]).unwrap()), Err(Error::BadState(6)));
    }

    #[test]
    fn host_requests_are_taken_once_per_sequence_number() {
        let mut buf = [0u8; BOOT_BLOCK_LEN];
        let mut block = BootBlock::new_checked(&mut buf[..]).unwrap();
        assert_eq!(RequestRepr::parse(&block, 0), Ok(None));
        block.set_host_request(HostRequest::BootImage, 4096, 1);
        let r = RequestRepr::parse(&block, 0).unwrap().unwrap();
        assert_eq!(r, RequestRepr { request: HostRequest::BootImage, recovery_len: 4096, seq: 1 });
        assert_eq!(RequestRepr::parse(&block, 1), Ok(None));
        assert_eq!(&buf[0x30..0x3c], &[3, 0, 0, 0, 0, 0x10, 0, 0, 1, 0, 0, 0]);
        buf[0x30] = 9;
        buf[0x38] = 2;
        let block = BootBlock::new_checked(&buf[..]).unwrap();
        assert_eq!(RequestRepr::parse(&block, 1), Err((2, Error::BadRequest(9))));
    }

    #[test]
    fn recovery_state_is_a_state() {
        assert_eq!(AgentState::try_from(4), Ok(AgentState::Recovery));
        assert_eq!(AgentState::try_from(5), Err(Error::BadState(5)));
    }

    fn agent() -> AgentRepr {
        AgentRepr {
            features: feature::ALL,
            generation: 7,
            firmware_version: firmware_version(1, 2, 3),
            layout: Layout::DEFAULT,
            mac: [0x02, 0xb0, 0x00, 0x00, 0x00, 0x01],
            ring_entries: Entries::new(256).unwrap(),
        }
    }

    fn host() -> HostRepr {
        HostRepr {
            features: feature::EVENT_INDEX | feature::MTU,
            generation: 3,
            mtu: 9000,
            status_block_addr: 0x1234_5640,
        }
    }

    #[test]
    fn header_round_trips() {
        let mut buf = [0u8; HEADER_LEN];
        let mut header = Header::new_checked(&mut buf[..]).unwrap();
        agent().emit(&mut header);
        header.set_agent_state(AgentState::Ready);
        host().emit(&mut header);
        header.set_host_state(HostState::Up);
        assert_eq!(AgentRepr::parse(&header), Ok(agent()));
        assert_eq!(header.agent_state(), Ok(AgentState::Ready));
        let e = agent().ring_entries;
        assert_eq!(HostRepr::parse(&header, feature::ALL, e), Ok(Some(host())));
        header.set_host_state(HostState::Down);
        assert_eq!(HostRepr::parse(&header, feature::ALL, e), Ok(None));
    }

    /// The exact bytes, so a big-endian agent (these tests also run under qemu-ppc) and the x86 host
    /// agree.
    #[test]
    fn header_bytes_are_little_endian() {
        let mut buf = [0u8; HEADER_LEN];
        let mut header = Header::new_unchecked(&mut buf[..]);
        agent().emit(&mut header);
        header.set_agent_state(AgentState::Running);
        host().emit(&mut header);
        header.set_host_state(HostState::Up);
        let expected: [u8; HEADER_LEN] = [
            b'B', b'P', b'N', b'T', 1, 0, 4, 0, // magic, version 1.4
            15, 0, 0, 0, 7, 0, 0, 0, // features, agent generation
            3, 2, 1, 0, 0, 0, 3, 0, // firmware 1.2.3, tx ring 0x3_0000
            0, 0, 4, 0, 0, 0, 1, 0, // rx ring 0x4_0000, log ring 0x1_0000
            0x80, 0, 0, 0, 0x02, 0xb0, 0, 0, // counters 0x80, mac
            0, 1, 0, 1, 2, 1, 0x28, 0x23, // mac, 256 entries, RUNNING, UP, mtu 9000
            0x40, 0x56, 0x34, 0x12, 0, 0, 0, 0, // status block address
            6, 0, 0, 0, 3, 0, 0, 0, // host features, host generation
        ];
        assert_eq!(buf, expected);
    }

    #[test]
    fn agent_header_refusals() {
        let mut buf = [0u8; HEADER_LEN];
        assert_eq!(Header::new_checked(&buf[..HEADER_LEN - 1]).unwrap_err(), Error::Truncated);
        assert_eq!(AgentRepr::parse(&Header::new_unchecked(&buf[..])), Err(Error::BadMagic(0)));
        let mut header = Header::new_unchecked(&mut buf[..]);
        agent().emit(&mut header);
        header.buffer[field::header::VERSION_MAJOR] = 2;
        assert_eq!(AgentRepr::parse(&header), Err(Error::BadVersion(2, VERSION_MINOR)));
        agent().emit(&mut header);
        put_le16(header.buffer, field::header::RING_ENTRIES, 3);
        assert_eq!(AgentRepr::parse(&header), Err(Error::BadRingEntries(3)));
        let mut bad = agent();
        bad.layout.rx_ring = bad.layout.tx_ring + 16;
        bad.emit(&mut header);
        assert_eq!(AgentRepr::parse(&header), Err(Error::BadLayout(bad.layout.rx_ring)));
        header.buffer[field::header::AGENT_STATE] = 5;
        assert_eq!(header.agent_state(), Err(Error::BadState(5)));
    }

    #[test]
    fn host_header_refusals() {
        let e = Entries::new(256).unwrap();
        let mut buf = [0u8; HEADER_LEN];
        let mut header = Header::new_unchecked(&mut buf[..]);
        let parse = |h: &Header<&mut [u8]>, offered| HostRepr::parse(h, offered, e);
        header.buffer[field::header::HOST_STATE] = 2;
        assert_eq!(parse(&header, feature::ALL), Err(Error::BadState(2)));
        header.set_host_state(HostState::Up);
        host().emit(&mut header);
        assert_eq!(parse(&header, feature::EVENT_INDEX), Err(Error::BadFeatures(host().features)));
        let no_mtu = HostRepr { features: 0, ..host() };
        no_mtu.emit(&mut header);
        assert_eq!(parse(&header, feature::ALL), Err(Error::BadMtu(9000)));
        HostRepr { mtu: MTU_DEFAULT, ..no_mtu }.emit(&mut header);
        assert!(parse(&header, feature::ALL).is_ok());
        HostRepr { mtu: MTU_MIN - 1, ..host() }.emit(&mut header);
        assert_eq!(parse(&header, feature::ALL), Err(Error::BadMtu(67)));
        for addr in [0, 0x1000_0008, u64::MAX - 63] {
            HostRepr { status_block_addr: addr, ..host() }.emit(&mut header);
            assert_eq!(parse(&header, feature::ALL), Err(Error::BadAddress(addr)));
        }
    }

    /// The default layout holds for every ring size, and the regions tile the BAR without overlap.
    #[test]
    fn default_layout_fits_every_ring_size() {
        for shift in 1..=12 {
            let e = Entries::new(1 << shift).unwrap();
            assert_eq!(Layout::DEFAULT.check(e), Ok(()));
            for (at, len, _) in Layout::DEFAULT.regions(e) {
                assert!(at as usize + len <= shared::LEN);
            }
        }
        assert_eq!(shared::HEADER_OFFSET + HEADER_LEN, shared::DOORBELLS_OFFSET);
        assert_eq!(Layout::DEFAULT.log_ring as usize, shared::LOG_RING_OFFSET);
    }

    #[test]
    fn layout_refusals() {
        let e = Entries::new(Entries::MAX).unwrap();
        let at_end = (shared::LEN - ring_len(e) + 16) as u32;
        for (layout, bad) in [
            (Layout { counters: 0x40, ..Layout::DEFAULT }, 0x40),
            (Layout { counters: 0x82, ..Layout::DEFAULT }, 0x82),
            // Counters over the agent info block.
            (Layout { counters: 0x100, ..Layout::DEFAULT }, 0x100),
            (Layout { tx_ring: 0x3_0008, ..Layout::DEFAULT }, 0x3_0008),
            (Layout { rx_ring: at_end, ..Layout::DEFAULT }, at_end),
            (Layout { rx_ring: !15, ..Layout::DEFAULT }, !15),
            // An overlap is reported at the later of the two regions (here the TX ring).
            (Layout { log_ring: 0x2_fff0, ..Layout::DEFAULT }, 0x3_0000),
            // Nothing over the boot block, which a host writes recovery requests into.
            (Layout { tx_ring: shared::BOOT_OFFSET as u32, ..Layout::DEFAULT }, shared::BOOT_OFFSET as u32),
            (
                Layout { counters: shared::BOOT_OFFSET as u32 + 0x20, ..Layout::DEFAULT },
                shared::BOOT_OFFSET as u32 + 0x20,
            ),
            (
                Layout { rx_ring: shared::BOOT_OFFSET as u32 - 0x10, ..Layout::DEFAULT },
                shared::BOOT_OFFSET as u32 - 0x10,
            ),
        ] {
            assert_eq!(layout.check(e), Err(Error::BadLayout(bad)), "{layout:?}");
        }
    }

    #[test]
    fn agent_info_carries_the_dma_reach() {
        let mut buf = [0xAAu8; AGENT_INFO_LEN];
        AgentInfo::new_checked(&mut buf[..]).unwrap().emit(2 << 30, 0);
        assert_eq!(&buf[..8], &[0, 0, 0, 0x80, 0, 0, 0, 0], "little-endian, 2 GiB");
        assert!(buf[field::agent_info::RESERVED..].iter().all(|&b| b == 0), "reserved bytes zeroed");
        let info = AgentInfo::new_checked(&buf[..]).unwrap();
        assert_eq!(parse_dma_reach(VERSION_MINOR, &info), Ok(2 << 30));
        // A minor-1 agent has no block: whatever lies there, its reach is the old window's.
        assert_eq!(parse_dma_reach(1, &info), Ok(crate::DMA_REACH_MINOR_1));
        let zero = [0u8; AGENT_INFO_LEN];
        assert_eq!(parse_dma_reach(VERSION_MINOR, &AgentInfo::new_unchecked(&zero[..])), Err(Error::BadReach(0)));
        assert_eq!(AgentInfo::new_checked(&buf[..AGENT_INFO_LEN - 1]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn heartbeat_is_the_last_word_and_zero_means_none() {
        let mut buf = [0xAAu8; AGENT_INFO_LEN];
        AgentInfo::new_checked(&mut buf[..]).unwrap().emit(2 << 30, 0x0102_0304);
        assert_eq!(&buf[AGENT_INFO_LEN - 4..], &[4, 3, 2, 1], "little-endian, the block's last word");
        assert!(buf[field::agent_info::RESERVED..field::agent_info::HEARTBEAT].iter().all(|&b| b == 0));
        let info = AgentInfo::new_checked(&buf[..]).unwrap();
        assert_eq!(parse_dma_reach(VERSION_MINOR, &info), Ok(2 << 30), "the beat leaves the reach alone");
        assert_eq!(parse_heartbeat(VERSION_MINOR_HEARTBEAT, &info), Some(0x0102_0304));
        // An agent of minor version 2 has no heartbeat: whatever is there, none is known.
        assert_eq!(parse_heartbeat(VERSION_MINOR_HEARTBEAT - 1, &info), None);
        AgentInfo::new_checked(&mut buf[..]).unwrap().set_heartbeat(0);
        assert_eq!(parse_heartbeat(VERSION_MINOR, &AgentInfo::new_unchecked(&buf[..])), None, "not started");
        assert_eq!(&buf[..8], &[0, 0, 0, 0x80, 0, 0, 0, 0], "set_heartbeat writes its word only");
        assert_eq!((next_heartbeat(1), next_heartbeat(u32::MAX)), (2, 1), "wraps past 0");
    }

    #[test]
    fn board_info_identity_and_fault_record() {
        let mut buf = [0xAAu8; BOARD_INFO_LEN];
        let id = BoardRepr {
            serial: 0x12_3456,
            slot: 3,
            board: board::MPC8349EMDS,
            spridr: 0x8030_0030,
            pvr: 0x8083_0010,
            boot_stage_version: firmware_version(0, 1, 0),
        };
        BoardRepr::emit(&id, &mut BoardInfo::new_checked(&mut buf[..]).unwrap());
        assert_eq!(&buf[..8], &[0x56, 0x34, 0x12, 0, 3, 1, 0, 0], "little-endian serial, slot, board");
        assert!(buf[0x14..0x20].iter().all(|&b| b == 0), "reserved bytes zeroed");
        assert!(buf[0x20..].iter().all(|&b| b == 0xAA), "the identity's write leaves the fault record alone");
        assert_eq!(BoardRepr::parse(VERSION_MINOR, &BoardInfo::new_unchecked(&buf[..])), Ok(Some(id)));
        assert_eq!(BoardRepr::parse(3, &BoardInfo::new_unchecked(&buf[..])), Ok(None), "minor 3 has no block");
        buf[0x04] = BOARD_SLOTS;
        assert_eq!(
            BoardRepr::parse(VERSION_MINOR, &BoardInfo::new_unchecked(&buf[..])),
            Err(Error::BadIdentity(0x12_3456, BOARD_SLOTS))
        );
        buf[0x04] = BOARD_SLOT_UNKNOWN;
        buf[0x03] = 1;
        assert_eq!(
            BoardRepr::parse(VERSION_MINOR, &BoardInfo::new_unchecked(&buf[..])),
            Err(Error::BadIdentity(0x0112_3456, BOARD_SLOT_UNKNOWN))
        );

        let fault = FaultRepr {
            seq: 1,
            vector: 0x700,
            srr0: 0x0010_2040,
            srr1: 0x0002_9032,
            dar: 0xD000_0000,
            dsisr: 0x4200_0000,
            generation: 5,
            uptime_s: 9,
        };
        // Power-on RAM of a board that never faulted.
        put_le32(&mut buf, field::board_info::FAULT_SEQ, 0);
        let mut info = BoardInfo::new_checked(&mut buf[..]).unwrap();
        fault.emit_words(&mut info);
        assert_eq!(FaultRepr::parse(VERSION_MINOR, &BoardInfo::new_unchecked(&buf[..]), 0), Ok(None), "no seq yet");
        put_le32(&mut buf, field::board_info::FAULT_SEQ, fault_seq_after(0));
        let info = BoardInfo::new_unchecked(&buf[..]);
        assert_eq!(FaultRepr::parse(VERSION_MINOR, &info, 0), Ok(Some(fault)));
        assert_eq!(FaultRepr::parse(VERSION_MINOR, &info, 1), Ok(None), "seen once");
        assert_eq!(FaultRepr::parse(3, &info, 0), Ok(None), "minor 3 has no record");
        assert_eq!(&buf[0x24..0x28], &[0, 7, 0, 0]);
        // A vector no exception has: refused with its sequence number, so it is taken as seen.
        for bad in [0, 0x701, FAULT_VECTOR_MAX + 0x100, u32::MAX] {
            put_le32(&mut buf, field::board_info::FAULT_VECTOR, bad);
            let info = BoardInfo::new_unchecked(&buf[..]);
            assert_eq!(FaultRepr::parse(VERSION_MINOR, &info, 0), Err((1, Error::BadFault(bad))));
        }
        put_le32(&mut buf, field::board_info::FAULT_VECTOR, FAULT_VECTOR_MAX);
        assert!(FaultRepr::parse(VERSION_MINOR, &BoardInfo::new_unchecked(&buf[..]), 0).is_ok());
        assert_eq!(fault_seq_after(u32::MAX), 1, "wraps past 0");
        assert_eq!(BoardInfo::new_checked(&buf[..BOARD_INFO_LEN - 1]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn descriptor_checks() {
        let mut buf = [0u8; DESCRIPTOR_LEN];
        let mut d = Descriptor::new_checked(&mut buf[..]).unwrap();
        let good = DescriptorRepr { addr: 0x8000_0000, len: 1514, id: 9, flags: desc_flags::NEEDS_CSUM };
        good.emit(&mut d);
        assert_eq!(d.check(1514), Ok(good));
        assert_eq!(d.check(1513), Err(Error::BadLength(1514)));
        DescriptorRepr { len: 0, ..good }.emit(&mut d);
        assert_eq!(d.check(1514), Err(Error::BadLength(0)));
        DescriptorRepr { addr: u64::MAX - 100, ..good }.emit(&mut d);
        assert_eq!(d.check(1514), Err(Error::BadAddress(u64::MAX - 100)));
        DescriptorRepr { flags: 0x8001, ..good }.emit(&mut d);
        assert_eq!(d.check(1514), Err(Error::BadFlags(0x8001)));
        assert_eq!(buf, [0, 0, 0, 0x80, 0, 0, 0, 0, 0xea, 5, 0, 0, 9, 0, 1, 0x80]);
        assert_eq!(Descriptor::new_checked(&buf[..15]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn counters_wrap_and_are_named_once() {
        let mut buf = [0u8; COUNTERS_LEN];
        let mut c = Counters::new_checked(&mut buf[..]).unwrap();
        c.add(counter::TX_BYTES, u32::MAX).unwrap();
        c.add(counter::TX_BYTES, 2).unwrap();
        assert_eq!(c.get(counter::TX_BYTES), Ok(1));
        assert_eq!(c.add(COUNTER_SLOTS, 1), Err(Error::BadCounter(COUNTER_SLOTS)));
        assert_eq!(&buf[4..8], &[1, 0, 0, 0]);
        for (i, &(name, slot)) in COUNTERS.iter().enumerate() {
            assert!(slot < COUNTER_SLOTS);
            assert!(COUNTERS[i + 1..].iter().all(|&(n, s)| n != name && s != slot), "{name}");
        }
    }

    proptest! {
        /// Any 64 bytes: parsing never panics, and what it accepts re-emits to the same fields.
        #[test]
        fn header_parse_survives_anything(bytes in proptest::collection::vec(any::<u8>(), HEADER_LEN)) {
            let header = Header::new_checked(&bytes[..]).unwrap();
            let _ = header.agent_state();
            if let Ok(repr) = AgentRepr::parse(&header) {
                let mut again = [0u8; HEADER_LEN];
                let mut h = Header::new_unchecked(&mut again[..]);
                repr.emit(&mut h);
                prop_assert_eq!(AgentRepr::parse(&h), Ok(repr));
            }
            if let Ok(Some(repr)) = HostRepr::parse(&header, feature::ALL, Entries::new(4096).unwrap()) {
                prop_assert!(repr.mtu >= MTU_MIN && repr.status_block_addr.is_multiple_of(STATUS_BLOCK_ALIGN));
            }
        }

        /// Whatever the host wrote, an accepted descriptor is one the agent can DMA without overflow.
        #[test]
        fn accepted_descriptors_are_safe(addr in any::<u64>(), len in any::<u32>(), id in any::<u16>(),
                                         flags in any::<u16>(), max in 1u32..=65536) {
            let mut buf = [0u8; DESCRIPTOR_LEN];
            let mut d = Descriptor::new_unchecked(&mut buf[..]);
            DescriptorRepr { addr, len, id, flags }.emit(&mut d);
            if let Ok(r) = d.check(max) {
                prop_assert!(r.len >= 1 && r.len <= max);
                prop_assert!(r.addr.checked_add(r.len as u64).is_some());
                prop_assert_eq!(r.flags & !desc_flags::ALL, 0);
                prop_assert_eq!((r.addr, r.len, r.id, r.flags), (addr, len, id, flags));
            }
        }

        /// Any offsets: an accepted layout keeps every region inside the BAR and apart.
        #[test]
        fn accepted_layouts_never_overlap(tx in any::<u32>(), rx in any::<u32>(), log in any::<u32>(),
                                          counters in any::<u32>(), shift in 1u32..=12) {
            // Pull most offsets into the BAR so acceptance is common enough to test.
            let pick = |v: u32| if v & 1 == 0 { (v % shared::LEN as u32) & !15 } else { v };
            let layout = Layout { tx_ring: pick(tx), rx_ring: pick(rx), log_ring: pick(log), counters: pick(counters) };
            let e = Entries::new(1 << shift).unwrap();
            if layout.check(e).is_ok() {
                let regions = layout.regions(e);
                for (i, &(a, alen, _)) in regions.iter().enumerate() {
                    prop_assert!(a as usize + alen <= shared::LEN);
                    for &(b, blen, _) in &regions[..i] {
                        prop_assert!(a as usize >= b as usize + blen || b as usize >= a as usize + alen);
                    }
                }
            }
        }
    }
}
