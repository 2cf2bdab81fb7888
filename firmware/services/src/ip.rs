//! The agent's IPv4 around smoltcp's: what the board's device drops before the stack (and counts),
//! and which frames are fragments (counted both ways).
//!
//! smoltcp reassembles and fragments IPv4 datagrams itself (its `proto-ipv4-fragmentation`, with
//! buffers for the largest datagram, [`DATAGRAM_MAX`] bytes, and four datagrams reassembled at once),
//! but counts none of its drops. What the device can decide from a frame alone it decides here, before
//! the stack, so the drop is the board's and is counted:
//! * a frame the stack has no protocol for (it would drop it unread);
//! * a fragment that reaches past the largest datagram: smoltcp would drop it too, but only after
//!   taking one of its reassembly buffers for it until [`REASSEMBLY_TIMEOUT`].

use smoltcp::iface::Interface;
use smoltcp::time::Duration;

/// The largest IPv4 datagram, header included (the total length field's limit).
pub const DATAGRAM_MAX: usize = 65535;
/// The shortest IPv4 header: a datagram's payload ends at most this far before [`DATAGRAM_MAX`].
const HEADER_MIN: usize = 20;
/// The largest UDP payload over IPv4: what the echo service answers at most.
pub const UDP_PAYLOAD_MAX: usize = DATAGRAM_MAX - HEADER_MIN - 8;
/// The largest ICMP echo payload over IPv4.
pub const ICMP_PAYLOAD_MAX: usize = DATAGRAM_MAX - HEADER_MIN - 8;
/// How long a datagram may take to arrive whole before its fragments are dropped (smoltcp's default
/// is 60 s). Fragments cross the backplane in order within microseconds: one missing after this long
/// is lost, and its reassembly buffer is better freed for the next datagram.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The IP MTU to announce to smoltcp for a link of IP MTU `mtu`. smoltcp 0.12 cuts a datagram into
/// fragments of the whole IP MTU, but a fragment's offset counts 8-byte units, so every fragment but
/// the last must carry a multiple of 8 bytes: at MTU 9000 (8980 bytes after the header) the second
/// fragment's offset would be 4 bytes short and the datagram corrupt. The largest MTU at or below
/// `mtu` whose payload is a multiple of 8 keeps them aligned; frames are then at most 7 bytes
/// shorter than the link allows (MTU 1500: none).
pub const fn stack_mtu(mtu: usize) -> usize {
    if mtu < HEADER_MIN {
        return mtu;
    }
    (mtu - HEADER_MIN) / 8 * 8 + HEADER_MIN
}

/// Set a new interface up for the agent's IPv4: the reassembly timeout.
pub fn configure(iface: &mut Interface) {
    iface.set_reassembly_timeout(REASSEMBLY_TIMEOUT);
}

/// What becomes of a frame from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// For the stack, whole.
    Stack,
    /// For the stack: an IPv4 fragment, to be reassembled.
    Fragment,
    /// Dropped: shorter than an Ethernet header, neither IPv4 nor ARP, or an IPv4 header that does
    /// not parse (smoltcp would drop it unread).
    Unparsed,
    /// Dropped: an IPv4 fragment whose payload reaches past the largest datagram's.
    FragmentPastLimit,
}

/// Byte offsets in an Ethernet frame carrying IPv4 (the Ethernet header, then the IPv4 header).
mod field {
    use core::ops::Range;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const IP: usize = 14;
    pub const VER_IHL: usize = IP;
    pub const TOTAL_LEN: Range<usize> = IP + 2..IP + 4;
    pub const FLAGS_OFFSET: Range<usize> = IP + 6..IP + 8;
    /// The end of the shortest IPv4 header.
    pub const IP_END: usize = IP + 20;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
/// More fragments and the fragment offset (in 8-byte units) in the flags and offset field.
const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET: u16 = 0x1fff;

fn be16(frame: &[u8], at: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([frame[at.start], frame[at.start + 1]])
}

/// Where `frame` (a whole Ethernet frame from the host) goes. Reads the few header fields it needs
/// directly (every frame passes here, so it costs a handful of instructions) and refuses an IPv4
/// header on the grounds smoltcp's parser would: a version other than 4, a header or a total length
/// the frame does not hold.
pub fn ingress(frame: &[u8]) -> Ingress {
    if frame.len() < field::IP {
        return Ingress::Unparsed;
    }
    match be16(frame, field::ETHERTYPE) {
        ETHERTYPE_IPV4 => {}
        ETHERTYPE_ARP => return Ingress::Stack,
        _ => return Ingress::Unparsed,
    }
    if frame.len() < field::IP_END {
        return Ingress::Unparsed;
    }
    let ver_ihl = frame[field::VER_IHL];
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    let total_len = usize::from(be16(frame, field::TOTAL_LEN));
    let ip_len = frame.len() - field::IP;
    if ver_ihl >> 4 != 4 || header_len > ip_len || header_len > total_len || total_len > ip_len {
        return Ingress::Unparsed;
    }
    let flags_offset = be16(frame, field::FLAGS_OFFSET);
    if flags_offset & (MORE_FRAGMENTS | OFFSET) == 0 {
        return Ingress::Stack;
    }
    // Where this fragment's payload ends in the datagram's (total_len >= header_len, checked above).
    let end = usize::from(flags_offset & OFFSET) * 8 + total_len - header_len;
    if end > DATAGRAM_MAX - HEADER_MIN {
        return Ingress::FragmentPastLimit;
    }
    Ingress::Fragment
}

/// Whether `frame` (a whole Ethernet frame the stack built) is an IPv4 fragment.
pub fn is_fragment(frame: &[u8]) -> bool {
    frame.len() >= field::IP_END
        && be16(frame, field::ETHERTYPE) == ETHERTYPE_IPV4
        && be16(frame, field::FLAGS_OFFSET) & (MORE_FRAGMENTS | OFFSET) != 0
}
