//! Building and reading the few frames tests exchange by hand (Ethernet II, ARP for IPv4, IPv4
//! without options, ICMP echo): what the tests share, so each of them only says what it sends and
//! what it checks of the answer.

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// The header of an ARP request or reply for IPv4 over Ethernet, up to the operation's high byte.
const ARP_IPV4_OVER_ETHERNET: [u8; 7] = [0, 1, 8, 0, 6, 4, 0];
/// ARP operations.
const ARP_REQUEST: u8 = 1;
const ARP_REPLY: u8 = 2;
/// ICMP message types.
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// The IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;

/// The big-endian u16 at `at`.
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet II frame.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes(), payload].concat()
}

/// An IPv4 packet without options (don't fragment, TTL 64), header checksum filled in.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

/// "Who has `target`?" from `mac`/`ip`, broadcast.
pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let a = [&ARP_IPV4_OVER_ETHERNET[..], &[ARP_REQUEST], &mac, &ip, &[0; 6], &target].concat();
    ethernet([0xff; 6], mac, ETHERTYPE_ARP, &a)
}

/// An ICMP echo request (identifier `id`, sequence `seq`) from `src` to `dst`.
pub fn echo_request(src: ([u8; 6], [u8; 4]), dst: ([u8; 6], [u8; 4]), id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![ICMP_ECHO_REQUEST, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ethernet(dst.0, src.0, ETHERTYPE_IPV4, &ipv4(src.1, dst.1, IPPROTO_ICMP, &icmp))
}

/// An ARP reply read out of an Ethernet frame; the caller judges the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpReply {
    /// The Ethernet header's destination and source.
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    /// Who answers, and whom: (hardware address, protocol address).
    pub sender: ([u8; 6], [u8; 4]),
    pub target: ([u8; 6], [u8; 4]),
}

/// `f` as an ARP reply for IPv4 over Ethernet; `None` for anything else.
pub fn arp_reply(f: &[u8]) -> Option<ArpReply> {
    if f.len() < 42 || be16(f, 12) != ETHERTYPE_ARP {
        return None;
    }
    let a = &f[14..];
    if a[..7] != ARP_IPV4_OVER_ETHERNET || a[7] != ARP_REPLY {
        return None;
    }
    let part = |r: core::ops::Range<usize>| &a[r];
    Some(ArpReply {
        eth_dst: f[..6].try_into().ok()?,
        eth_src: f[6..12].try_into().ok()?,
        sender: (part(8..14).try_into().ok()?, part(14..18).try_into().ok()?),
        target: (part(18..24).try_into().ok()?, part(24..28).try_into().ok()?),
    })
}

/// An ICMP echo reply read out of an Ethernet frame, not yet judged: the caller checks what it cares
/// about (addresses, checksums, payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply<'a> {
    /// The Ethernet header's destination and source.
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub ip_src: [u8; 4],
    pub ip_dst: [u8; 4],
    /// The IPv4 header, options included: its checksum sums to zero when it is intact.
    pub ip_header: &'a [u8],
    /// The IPv4 total length the header states (it may claim more than the frame holds).
    pub ip_total_len: usize,
    /// The ICMP message, header and payload, up to the total length or the end of the frame.
    pub icmp: &'a [u8],
    pub id: u16,
    pub seq: u16,
    pub payload: &'a [u8],
}

/// `f` as an ICMP echo reply (type 0, code 0) in IPv4 over Ethernet; `None` for anything else.
pub fn echo_reply(f: &[u8]) -> Option<EchoReply<'_>> {
    if f.len() < 42 || be16(f, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(be16(ip, 2));
    let end = total.min(ip.len());
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_ICMP || end < ihl + 8 {
        return None;
    }
    let icmp = &ip[ihl..end];
    if icmp[0] != ICMP_ECHO_REPLY || icmp[1] != 0 {
        return None;
    }
    Some(EchoReply {
        eth_dst: f[..6].try_into().ok()?,
        eth_src: f[6..12].try_into().ok()?,
        ip_src: ip[12..16].try_into().ok()?,
        ip_dst: ip[16..20].try_into().ok()?,
        ip_header: &ip[..ihl],
        ip_total_len: total,
        icmp,
        id: be16(icmp, 4),
        seq: be16(icmp, 6),
        payload: &icmp[8..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_header_checks_out_to_zero() {
        let ip = ipv4([10, 83, 49, 1], [10, 83, 49, 2], 1, &[8, 0, 0, 0]);
        assert_eq!(checksum(&ip[..20]), 0);
        assert_eq!(be16(&ip, 2), 24);
    }

    #[test]
    fn an_echo_request_checks_out_to_zero() {
        let f = echo_request(([2; 6], [10, 0, 0, 1]), ([4; 6], [10, 0, 0, 2]), 7, 9, b"abc");
        assert_eq!(be16(&f, 12), ETHERTYPE_IPV4);
        assert_eq!(checksum(&f[34..]), 0);
        assert_eq!(checksum(&f[14..34]), 0);
    }

    /// A request turned into its reply the way a stack answers it.
    #[test]
    fn replies_read_back() {
        let (host, agent) = (([2; 6], [10, 0, 0, 1]), ([4; 6], [10, 0, 0, 2]));
        let mut arp = arp_request(host.0, host.1, agent.1);
        arp[..6].copy_from_slice(&host.0);
        arp[6..12].copy_from_slice(&agent.0);
        arp[14 + 7] = ARP_REPLY;
        arp[14 + 8..14 + 28].copy_from_slice(&[&agent.0[..], &agent.1, &host.0, &host.1].concat());
        let r = arp_reply(&arp).expect("an ARP reply");
        assert_eq!((r.eth_dst, r.eth_src, r.sender, r.target), (host.0, agent.0, agent, host));
        assert_eq!(arp_reply(&arp_request(host.0, host.1, agent.1)), None, "a request is no reply");

        let mut echo = echo_request(agent, host, 7, 9, b"abc");
        assert_eq!(echo_reply(&echo), None, "a request is no reply");
        echo[34] = 0;
        let r = echo_reply(&echo).expect("an echo reply");
        assert_eq!(
            (r.eth_dst, r.ip_src, r.ip_dst, r.id, r.seq, r.payload),
            (host.0, agent.1, host.1, 7, 9, &b"abc"[..])
        );
        assert_eq!((r.ip_header.len(), r.ip_total_len, r.icmp.len()), (20, 31, 11));
    }
}
