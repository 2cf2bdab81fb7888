//! End to end over the data path: the real firmware ELF on the emulated board, the host model
//! ([`bpnet_emu::host`]) in the kernel module's place, ARP and ping against the agent's stack at 10.83.49.2.
//! Frames are built and parsed by hand: Ethernet II, ARP for IPv4, IPv4 without options, ICMP echo.

use bpnet_emu::host::{self, HostLink, Params};
use bpnet_emu::{Board, Config};

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const HOST_IP: [u8; 4] = [10, 83, 49, 1];
const AGENT_IP: [u8; 4] = [10, 83, 49, 2];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
/// Emulator slices to wait for one answer: generous, a reply takes a few.
const STEPS: usize = 200;

fn firmware(var: &str) -> std::path::PathBuf {
    match std::env::var_os(var) {
        Some(path) => path.into(),
        None => panic!("{var} is not set: these tests run the real firmware; run them with `cargo xtask test`"),
    }
}

fn boot() -> (Board, HostLink) {
    let elf = std::fs::read(firmware("BPNET_FIRMWARE_ELF")).expect("firmware ELF readable");
    let mut board = Board::new(Config::default()).expect("board");
    board.load_elf(&elf).expect("firmware loads");
    let mut link = host::connect(&mut board, Params::default(), 500)
        .unwrap_or_else(|e| panic!("link up: {e}\nconsole:\n{}", String::from_utf8_lossy(board.console())));
    host::run_until(&mut board, &mut link, |l| l.is_running(), STEPS)
        .unwrap_or_else(|e| panic!("agent RUNNING: {e}\nconsole:\n{}", String::from_utf8_lossy(board.console())));
    (board, link)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request() -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    a.extend_from_slice(&HOST_MAC);
    a.extend_from_slice(&HOST_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&AGENT_IP);
    ethernet([0xff; 6], ETHERTYPE_ARP, &a)
}

fn echo_request(agent_mac: [u8; 6], id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&seq.to_be_bytes()); // identification
    ip.extend_from_slice(&[0x40, 0, 64, 1, 0, 0]); // don't fragment, TTL 64, ICMP
    ip.extend_from_slice(&HOST_IP);
    ip.extend_from_slice(&AGENT_IP);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ethernet(agent_mac, ETHERTYPE_IPV4, &ip)
}

/// The agent's MAC from an ARP reply to our request, if `f` is one.
fn arp_reply(f: &[u8]) -> Option<[u8; 6]> {
    if f.len() < 42 || be16(f, 12) != ETHERTYPE_ARP || f[..6] != HOST_MAC {
        return None;
    }
    let a = &f[14..];
    if a[..8] != [0, 1, 0x08, 0, 6, 4, 0, 2] || a[14..18] != AGENT_IP || a[18..24] != HOST_MAC || a[24..28] != HOST_IP {
        return None;
    }
    assert_eq!(f[6..12], a[8..14], "Ethernet source is the sender hardware address");
    Some(a[8..14].try_into().unwrap())
}

/// (id, seq, payload) of an echo reply from the agent to us, checksums verified.
fn echo_reply(f: &[u8], agent_mac: [u8; 6]) -> Option<(u16, u16, Vec<u8>)> {
    if f.len() < 42 || be16(f, 12) != ETHERTYPE_IPV4 || f[..6] != HOST_MAC || f[6..12] != agent_mac {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    if ip[0] >> 4 != 4 || ip[9] != 1 || ip[12..16] != AGENT_IP || ip[16..20] != HOST_IP {
        return None;
    }
    assert_eq!(checksum(&ip[..ihl]), 0, "IPv4 header checksum");
    let total = usize::from(be16(ip, 2));
    assert!(total <= ip.len(), "IPv4 total length {total} beyond the frame's {}", ip.len());
    let icmp = &ip[ihl..total];
    if icmp[0] != 0 || icmp[1] != 0 {
        return None;
    }
    assert_eq!(checksum(icmp), 0, "ICMP checksum");
    Some((be16(icmp, 4), be16(icmp, 6), icmp[8..].to_vec()))
}

/// Send `frame` and run until a received frame satisfies `want`; other frames are skipped.
fn exchange<T>(board: &mut Board, link: &mut HostLink, frame: &[u8], mut want: impl FnMut(&[u8]) -> Option<T>) -> T {
    assert!(link.send(board, frame).expect("frame accepted"), "TX ring full");
    let mut got = None;
    host::run_until(
        board,
        link,
        |l| {
            while got.is_none() {
                let Some(f) = l.recv() else { break };
                got = want(&f);
            }
            got.is_some()
        },
        STEPS,
    )
    .unwrap_or_else(|e| panic!("no answer: {e}\nconsole:\n{}", String::from_utf8_lossy(board.console())));
    got.unwrap()
}

#[test]
fn arp_and_ping_over_the_data_path() {
    let (mut board, mut link) = boot();
    assert_eq!(link.stats().setup_bar_reads, 1);

    let agent_mac = exchange(&mut board, &mut link, &arp_request(), arp_reply);
    assert_eq!(agent_mac, link.mac(), "the agent answers with the MAC its header gives the host");

    let reads = board.host_bar_reads();
    for (seq, len) in [0usize, 1, 56, 64, 100, 512, 1000, 1400, 1471, 1472].into_iter().enumerate() {
        let seq = seq as u16;
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seq as u8)).collect();
        let request = echo_request(agent_mac, 0xb9e7, seq, &payload);
        assert!(request.len() <= 1514);
        let (id, got_seq, echoed) = exchange(&mut board, &mut link, &request, |f| echo_reply(f, agent_mac));
        assert_eq!((id, got_seq), (0xb9e7, seq));
        assert_eq!(echoed, payload, "payload of {len} bytes comes back unchanged");
    }
    assert_eq!(board.host_bar_reads() - reads, 0, "the ping phase reads nothing across the bus");
    let stats = link.stats();
    assert_eq!((stats.tx_errors, stats.rx_errors), (0, 0));
}
