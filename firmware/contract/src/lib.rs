//! The bpnet wire contract.
//!
//! Everything the agent and the host share through memory is defined here, once, as typed views over
//! byte buffers (the way smoltcp's `wire` module parses packets): a private `field` module holds each
//! field's byte range, every accessor reads with an explicit byte order, and one `check_len` call
//! guards all accessors. Shared memory is written by the other side and is therefore untrusted input:
//! nothing here panics on a hostile value, it reports an error instead.
//!
//! Every multi-byte field is little-endian, as PCI is; the agent (a big-endian e300) swaps.
#![no_std]
#![forbid(unsafe_code)]

pub mod logring;

/// Layout of the agent RAM the host sees through the inbound PCI window (the BAR).
pub mod shared {
    /// Offset of the log ring from the start of the shared region.
    pub const LOG_RING_OFFSET: usize = 0x1_0000;
    /// Data bytes of the log ring (a power of two).
    pub const LOG_RING_CAPACITY: usize = 0x1_0000;
    /// Bytes reserved for the log ring: its header and the data.
    pub const LOG_RING_LEN: usize = crate::logring::HEADER_LEN + LOG_RING_CAPACITY;
}

/// The message-unit handshake the firmware's self-test performs with a host peer (the board
/// emulator's `--echo-host`, or a host tool during bring-up): proves doorbells, message registers
/// and interrupts both ways without any shared-memory contract.
pub mod selftest {
    /// The agent writes this to OMR0 (raising OM0I, hence INTA#) when it waits for the host.
    pub const READY: u32 = 0x5E1F_7E57;
    /// The PCI address the self-test opens inbound window 0 at, over the shared region (standing in
    /// for the BAR address a host would assign).
    pub const BAR_PCI_ADDRESS: u32 = 0x9000_0000;
    /// The host answers: as the challenge in IMR0, the word it reads through the BAR at
    /// [`crate::shared::LOG_RING_OFFSET`] (the log ring's magic, proving the inbound window), then
    /// doorbell bit [`DOORBELL`].
    pub const DOORBELL: u32 = 0x1;
    /// The agent replies with the challenge's complement in OMR1 and rings ODR with [`DOORBELL`].
    pub const fn reply(challenge: u32) -> u32 {
        !challenge
    }
}

/// Read a little-endian `u32` at `at`. Callers have checked the length.
fn get_le32(buf: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Write a little-endian `u32` at `at`. Callers have checked the length.
fn put_le32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
