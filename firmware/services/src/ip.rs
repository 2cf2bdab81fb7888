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
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};

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

/// Where `frame` (a whole Ethernet frame from the host) goes. Reads the Ethernet and IPv4 headers
/// through smoltcp's own checked views, so what is refused here is what its parser refuses.
pub fn ingress(frame: &[u8]) -> Ingress {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Ingress::Unparsed;
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => return Ingress::Stack,
        EthernetProtocol::Ipv4 => {}
        _ => return Ingress::Unparsed,
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Ingress::Unparsed;
    };
    if ip.version() != 4 {
        return Ingress::Unparsed;
    }
    if !ip.more_frags() && ip.frag_offset() == 0 {
        return Ingress::Stack;
    }
    // Where this fragment's payload ends in the datagram's: checked by new_checked to be within the
    // frame, so total_len >= header_len.
    let end = usize::from(ip.frag_offset()) + usize::from(ip.total_len()) - usize::from(ip.header_len());
    if end > DATAGRAM_MAX - HEADER_MIN {
        return Ingress::FragmentPastLimit;
    }
    Ingress::Fragment
}

/// Whether `frame` (a whole Ethernet frame the stack built) is an IPv4 fragment.
pub fn is_fragment(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    Ipv4Packet::new_checked(eth.payload()).is_ok_and(|ip| ip.more_frags() || ip.frag_offset() != 0)
}
