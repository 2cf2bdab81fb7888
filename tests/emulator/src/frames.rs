//! Building and reading the few frames the end-to-end tests exchange by hand (Ethernet II, ARP for
//! IPv4, IPv4 without options): what the tests share, so each of them only says what it sends.

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;

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
    let a = [&[0, 1, 8, 0, 6, 4, 0, 1][..], &mac, &ip, &[0; 6], &target].concat();
    ethernet([0xff; 6], mac, ETHERTYPE_ARP, &a)
}

/// An ICMP echo request (identifier `id`, sequence `seq`) from `src` to `dst`.
pub fn echo_request(src: ([u8; 6], [u8; 4]), dst: ([u8; 6], [u8; 4]), id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ethernet(dst.0, src.0, ETHERTYPE_IPV4, &ipv4(src.1, dst.1, 1, &icmp))
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
}
