//! The agent's services end to end: the real firmware ELF on the emulated board, the host model
//! ([`bpnet_emu::host`]) in the kernel module's place. The identity record, the DHCP messages and the
//! bulk pattern are built here from their documentation (`bpnet_services`' crate docs), not from
//! the firmware's code, so a disagreement between the two shows up as a failure.

mod common;

use std::io::Write;

use bpnet_emu::host::{self, HostLink, Params};
use bpnet_emu::{Board, Config};
use bpnet_test_support::frames::{self, arp_request, be16, ethernet, ipv4, ETHERTYPE_IPV4};
use bpnet_test_support::wire::WireEnd;

const STEPS: usize = 200;
/// The wait for a DHCP lease the firmware documents, and a slice of virtual time (~4 ms) to spare.
const FALLBACK_MS: u64 = 3000;
/// Emulator slices that cover the fallback wait: a slice skips at most ~4 ms of idle time.
const FALLBACK_STEPS: usize = 1200;

// ---- the identity record (bpnet_services::identity) ----

const FLASH_BYTES: usize = bpnet_emu::FLASH_SIZE as usize;
const RECORD_OFFSET: usize = FLASH_BYTES - (128 << 10);

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// "BPID", version 1, slot, reserved 0, serial, CRC-32 of the first 12 bytes; all little-endian.
fn record(serial: u32, slot: u8) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[0..4].copy_from_slice(b"BPID");
    r[4..6].copy_from_slice(&1u16.to_le_bytes());
    r[6] = slot;
    r[8..12].copy_from_slice(&serial.to_le_bytes());
    let crc = crc32(&r[..12]);
    r[12..16].copy_from_slice(&crc.to_le_bytes());
    r
}

/// An erased flash file with `record` at the identity sector.
fn flash_with(record: &[u8]) -> tempfile::NamedTempFile {
    let mut image = vec![0xFFu8; FLASH_BYTES];
    image[RECORD_OFFSET..RECORD_OFFSET + record.len()].copy_from_slice(record);
    let mut file = tempfile::NamedTempFile::new().expect("temporary flash file");
    file.write_all(&image).expect("flash file written");
    file
}

// ---- the bulk pattern (bpnet_services::pattern) ----

/// Periodic: 65524 bytes, 16381 words (a prime number), each word the MurmurHash3 finaliser of its
/// index within the period, little-endian.
fn pattern_byte(offset: u64) -> u8 {
    let mut w = ((offset / 4) % 16381) as u32;
    w ^= w >> 16;
    w = w.wrapping_mul(0x85eb_ca6b);
    w ^= w >> 13;
    w = w.wrapping_mul(0xc2b2_ae35);
    w ^= w >> 16;
    w.to_le_bytes()[(offset % 4) as usize]
}

// ---- boot ----

struct Agent {
    board: Board,
    link: HostLink,
    /// Virtual time when the host saw the agent RUNNING (the agent's link-up is shortly before).
    running_ns: u64,
    /// Keeps the flash file alive as long as the board.
    _flash: Option<tempfile::NamedTempFile>,
}

fn boot(flash: Option<tempfile::NamedTempFile>) -> Agent {
    let elf = std::fs::read(common::firmware("BPNET_FIRMWARE_ELF")).expect("firmware ELF readable");
    let config = Config { flash_file: flash.as_ref().map(|f| f.path().to_path_buf()), ..Config::default() };
    let mut board = Board::new(config).expect("board");
    board.load_elf(&elf).expect("firmware loads");
    let mut link = host::connect(&mut board, Params::default(), 500)
        .unwrap_or_else(|e| panic!("link up: {e}\nconsole:\n{}", console(&board)));
    host::run_until(&mut board, &mut link, |l| l.is_running(), STEPS)
        .unwrap_or_else(|e| panic!("agent RUNNING: {e}\nconsole:\n{}", console(&board)));
    let running_ns = board.virtual_time_ns();
    Agent { board, link, running_ns, _flash: flash }
}

fn console(board: &Board) -> String {
    String::from_utf8_lossy(board.console()).into_owned()
}

/// Run slices until the console shows the agent's first address; (the line, virtual ms since the
/// host saw the agent RUNNING).
fn await_address(a: &mut Agent, steps: usize) -> (String, u64) {
    for _ in 0..steps {
        if let Some(line) = console(&a.board).lines().find(|l| l.starts_with("net: address ")) {
            return (line.to_string(), (a.board.virtual_time_ns() - a.running_ns) / 1_000_000);
        }
        host::run_slice(&mut a.board).unwrap_or_else(|e| panic!("board: {e}\nconsole:\n{}", console(&a.board)));
        a.link.poll(&mut a.board).expect("link poll");
        // Frames the agent sends meanwhile (DHCP discovery) have nowhere to go.
        while a.link.recv().is_some() {}
    }
    panic!("no address after {steps} slices\nconsole:\n{}", console(&a.board));
}

// ---- frames ----

fn echo_request(host: ([u8; 6], [u8; 4]), agent: ([u8; 6], [u8; 4]), seq: u16) -> Vec<u8> {
    frames::echo_request(host, agent, 0x5e71, seq, b"services")
}

/// The sender MAC of an ARP reply from `agent_ip` to us.
fn arp_reply(f: &[u8], host_mac: [u8; 6], agent_ip: [u8; 4]) -> Option<[u8; 6]> {
    frames::arp_reply(f).filter(|r| r.eth_dst == host_mac && r.sender.1 == agent_ip).map(|r| r.sender.0)
}

fn echo_reply(f: &[u8], host_mac: [u8; 6], agent_ip: [u8; 4], seq: u16) -> Option<()> {
    frames::echo_reply(f)
        .filter(|r| r.eth_dst == host_mac && r.ip_src == agent_ip && r.seq == seq && r.payload == b"services")
        .map(|_| ())
}

/// Send `frame` and run until a received frame satisfies `want`; others are skipped.
fn exchange<T>(a: &mut Agent, frame: &[u8], want: impl FnMut(&[u8]) -> Option<T>) -> T {
    assert!(a.link.send(&mut a.board, frame).expect("frame accepted"), "TX ring full");
    host::await_frame(&mut a.board, &mut a.link, want, STEPS)
        .unwrap_or_else(|e| panic!("no answer: {e}\nconsole:\n{}", console(&a.board)))
}

/// ARP for `agent_ip`, then ping it: the agent's MAC.
fn arp_and_ping(a: &mut Agent, host: ([u8; 6], [u8; 4]), agent_ip: [u8; 4]) -> [u8; 6] {
    let mac = exchange(a, &arp_request(host.0, host.1, agent_ip), |f| arp_reply(f, host.0, agent_ip));
    for seq in 0..3 {
        exchange(a, &echo_request(host, (mac, agent_ip), seq), |f| echo_reply(f, host.0, agent_ip, seq));
    }
    mac
}

// ---- identity and static fallback ----

#[test]
fn identity_sets_the_macs_and_the_static_address_answers_after_the_wait() {
    let serial = 0x00C0_FFEE;
    let mut a = boot(Some(flash_with(&record(serial, 5))));
    let host_mac = [0x06, 0x83, 0x49, 0xC0, 0xFF, 0xEE];
    assert_eq!(a.link.mac(), host_mac, "the header gives the host its MAC from the identity");
    assert!(console(&a.board).contains(&format!("identity: serial {serial}, slot 5")), "{}", console(&a.board));

    let (line, ms) = await_address(&mut a, FALLBACK_STEPS);
    assert_eq!(line, "net: address 10.83.5.2/24 (no DHCP lease in time: static)");
    // The agent went RUNNING a few slices (~4 ms each) before the host saw it; a slice may overshoot.
    assert!((FALLBACK_MS - 50..FALLBACK_MS + 50).contains(&ms), "static address {ms} ms after link-up");
    eprintln!("static fallback after {ms} ms virtual");

    let agent_mac = arp_and_ping(&mut a, (host_mac, [10, 83, 5, 1]), [10, 83, 5, 2]);
    assert_eq!(agent_mac, [0x02, 0x83, 0x49, 0xC0, 0xFF, 0xEE], "the agent's MAC follows the serial");
}

#[test]
fn without_identity_the_agent_is_unknown_at_the_old_address() {
    let mut corrupt = record(0x1234, 3);
    corrupt[9] ^= 1;
    for flash in [None, Some(flash_with(&corrupt))] {
        let mut a = boot(flash);
        assert_eq!(a.link.mac(), [0x06, 0x83, 0x49, 0, 0, 0]);
        assert!(console(&a.board).contains("identity: record missing or corrupt"), "{}", console(&a.board));
        let (line, _) = await_address(&mut a, FALLBACK_STEPS);
        assert_eq!(line, "net: address 10.83.49.2/24 (no DHCP lease in time: static)");
        let mac = arp_and_ping(&mut a, ([0x02, 0, 0, 0, 0, 1], [10, 83, 49, 1]), [10, 83, 49, 2]);
        assert_eq!(mac, [0x02, 0x83, 0x49, 0, 0, 0]);
    }
}

// ---- DHCP ----

const DHCP_MAGIC: [u8; 4] = [99, 130, 83, 99];

/// (message type, transaction id, client MAC) of a DHCP message from the agent, if `f` is one.
fn dhcp_request(f: &[u8]) -> Option<(u8, u32, [u8; 6])> {
    if f.len() < 14 + 20 + 8 + 240 || be16(f, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let udp = &ip[ihl..];
    if ip[9] != 17 || be16(udp, 0) != 68 || be16(udp, 2) != 67 {
        return None;
    }
    let bootp = &udp[8..usize::from(be16(udp, 4))];
    if bootp[0] != 1 || bootp[236..240] != DHCP_MAGIC {
        return None;
    }
    let xid = u32::from_be_bytes(bootp[4..8].try_into().unwrap());
    let chaddr: [u8; 6] = bootp[28..34].try_into().unwrap();
    let mut options = &bootp[240..];
    while let [code, rest @ ..] = options {
        match code {
            0 => options = rest,
            255 => break,
            _ => {
                let len = usize::from(*rest.first()?);
                let value = rest.get(1..1 + len)?;
                if *code == 53 && len == 1 {
                    return Some((value[0], xid, chaddr));
                }
                options = &rest[1 + len..];
            }
        }
    }
    None
}

/// A DHCP reply (2 = OFFER, 5 = ACK) from `server` leasing `yiaddr`/24 for an hour, broadcast.
fn dhcp_reply(kind: u8, xid: u32, chaddr: [u8; 6], server: ([u8; 6], [u8; 4]), yiaddr: [u8; 4]) -> Vec<u8> {
    let mut bootp = vec![0u8; 240];
    bootp[..4].copy_from_slice(&[2, 1, 6, 0]);
    bootp[4..8].copy_from_slice(&xid.to_be_bytes());
    bootp[16..20].copy_from_slice(&yiaddr);
    bootp[20..24].copy_from_slice(&server.1);
    bootp[28..34].copy_from_slice(&chaddr);
    bootp[236..240].copy_from_slice(&DHCP_MAGIC);
    bootp.extend_from_slice(&[53, 1, kind]);
    bootp.extend_from_slice(&[54, 4]);
    bootp.extend_from_slice(&server.1);
    bootp.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]);
    bootp.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
    bootp.extend_from_slice(&[3, 4]);
    bootp.extend_from_slice(&server.1);
    bootp.push(255);
    let mut udp = vec![0, 67, 0, 68];
    udp.extend_from_slice(&((8 + bootp.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    udp.extend_from_slice(&bootp);
    ethernet([0xff; 6], server.0, ETHERTYPE_IPV4, &ipv4(server.1, [255; 4], 17, &udp))
}

#[test]
fn a_dhcp_lease_is_taken_and_answers_ping() {
    let mut a = boot(Some(flash_with(&record(0x0000_0042, 2))));
    let host = (a.link.mac(), [10, 83, 2, 1]);
    let leased = [10, 83, 2, 100];
    let start = a.board.virtual_time_ns();
    // Serve DISCOVER with an OFFER and REQUEST with an ACK until the agent says it has the lease.
    let mut served = Vec::new();
    for _ in 0..STEPS {
        if console(&a.board).lines().any(|l| l.starts_with("net: address ")) {
            break;
        }
        host::run_slice(&mut a.board).unwrap_or_else(|e| panic!("board: {e}\nconsole:\n{}", console(&a.board)));
        a.link.poll(&mut a.board).expect("link poll");
        while let Some(f) = a.link.recv() {
            let Some((kind, xid, chaddr)) = dhcp_request(&f) else { continue };
            let reply = match kind {
                1 => 2, // DISCOVER → OFFER
                3 => 5, // REQUEST → ACK
                _ => continue,
            };
            served.push(kind);
            assert!(a.link.send(&mut a.board, &dhcp_reply(reply, xid, chaddr, host, leased)).unwrap(), "TX ring full");
        }
    }
    let ms = (a.board.virtual_time_ns() - start) / 1_000_000;
    // A DISCOVER may already be on its way when the agent restarts discovery at link-up: one or two.
    assert!(
        served == [1, 3] || served == [1, 1, 3],
        "DISCOVER then REQUEST, not {served:?}\nconsole:\n{}",
        console(&a.board)
    );
    assert!(console(&a.board).contains("net: address 10.83.2.100/24 (DHCP lease)"), "{}", console(&a.board));
    assert!(ms < FALLBACK_MS, "leased after {ms} ms, before any fallback");
    arp_and_ping(&mut a, host, leased);
    // The static address is not in use. (With the lease held the idle agent's next timer is the
    // renewal, half an hour away: virtual time stands still here, so the fallback's cancellation is
    // shown by the unit tests of bpnet-services, not by waiting.)
    let probe = arp_request(host.0, host.1, [10, 83, 2, 2]);
    assert!(a.link.send(&mut a.board, &probe).unwrap());
    for _ in 0..50 {
        host::run_slice(&mut a.board).unwrap();
        a.link.poll(&mut a.board).unwrap();
        while let Some(f) = a.link.recv() {
            assert_eq!(arp_reply(&f, host.0, [10, 83, 2, 2]), None, "the static address answered");
        }
    }
    assert!(!console(&a.board).contains("no DHCP lease in time"), "{}", console(&a.board));
}

// ---- TCP discard and bulk send, with a smoltcp client on the host model ----

fn virtual_now(board: &Board) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((board.virtual_time_ns() / 1000) as i64)
}

/// A host TCP client at 10.83.49.1 connected to the agent's static address, port `port`.
struct Client {
    iface: smoltcp::iface::Interface,
    dev: WireEnd,
    sockets: smoltcp::iface::SocketSet<'static>,
    handle: smoltcp::iface::SocketHandle,
}

impl Client {
    fn connect(a: &mut Agent, port: u16) -> Client {
        use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
        use smoltcp::socket::tcp;
        use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

        // The link negotiates checksum offload (the host model's default): TCP/UDP checksums are
        // left out both ways, as Linux does with the module.
        let mut dev = WireEnd::new(1500, true);
        let mut config = IfaceConfig::new(EthernetAddress(a.link.mac()).into());
        config.random_seed = 0x05e7_1ce5;
        let mut iface = Interface::new(config, &mut dev, virtual_now(&a.board));
        iface.update_ip_addrs(|x| x.push(IpCidr::new(IpAddress::v4(10, 83, 49, 1), 24)).unwrap());
        let buffer = || tcp::SocketBuffer::new(&mut Box::leak(vec![0u8; 256 * 1024].into_boxed_slice())[..]);
        let storage = Box::leak(Box::new([SocketStorage::EMPTY; 1]));
        let mut sockets = SocketSet::new(&mut storage[..]);
        let handle = sockets.add(tcp::Socket::new(buffer(), buffer()));
        sockets
            .get_mut::<tcp::Socket>(handle)
            .connect(iface.context(), (Ipv4Address::new(10, 83, 49, 2), port), 49152)
            .expect("connect");
        let mut c = Client { iface, dev, sockets, handle };
        for _ in 0..STEPS {
            if c.socket().may_send() {
                return c;
            }
            c.step(a);
        }
        panic!("no connection to port {port}: {:?}\nconsole:\n{}", c.socket().state(), console(&a.board));
    }

    fn socket(&mut self) -> &mut smoltcp::socket::tcp::Socket<'static> {
        self.sockets.get_mut(self.handle)
    }

    /// The host's smoltcp acts, its frames go to the agent, one agent slice, its frames come back.
    fn step(&mut self, a: &mut Agent) {
        self.iface.poll(virtual_now(&a.board), &mut self.dev, &mut self.sockets);
        while let Some(frame) = self.dev.tx.front() {
            if !a.link.send(&mut a.board, frame).expect("frame accepted") {
                break;
            }
            self.dev.tx.pop_front();
        }
        host::run_slice(&mut a.board).unwrap_or_else(|e| panic!("board: {e}\nconsole:\n{}", console(&a.board)));
        a.link.poll(&mut a.board).expect("link poll");
        self.dev.rx.extend(std::iter::from_fn(|| a.link.recv()));
        self.iface.poll(virtual_now(&a.board), &mut self.dev, &mut self.sockets);
    }
}

/// A board without identity, its static address in use.
fn static_agent() -> Agent {
    let mut a = boot(None);
    await_address(&mut a, FALLBACK_STEPS);
    a
}

#[test]
fn tcp_discard_takes_a_mebibyte() {
    let mut a = static_agent();
    let mut c = Client::connect(&mut a, 9);
    let total = 1usize << 20;
    let data: Vec<u8> = (0..total as u64).map(pattern_byte).collect();
    let mut sent = 0;
    let (start, wall) = (a.board.virtual_time_ns(), std::time::Instant::now());
    for _ in 0..100_000 {
        let s = c.socket();
        while sent < total && s.can_send() {
            sent += s.send_slice(&data[sent..]).expect("send");
        }
        if sent == total && s.send_queue() == 0 {
            break;
        }
        c.step(&mut a);
    }
    assert_eq!((sent, c.socket().send_queue()), (total, 0), "all sent and acknowledged");
    let ns = a.board.virtual_time_ns() - start;
    eprintln!(
        "tcp discard: {total} bytes in {:.1} ms virtual ({:.1} MB/s), {:.2} s wall",
        ns as f64 / 1e6,
        total as f64 * 1e3 / ns as f64,
        wall.elapsed().as_secs_f64()
    );
    // The discard closes when the client does.
    c.socket().close();
    for _ in 0..STEPS {
        if !c.socket().is_open() || c.socket().state() == smoltcp::socket::tcp::State::TimeWait {
            return;
        }
        c.step(&mut a);
    }
    panic!("no close: {:?}", c.socket().state());
}

#[test]
fn sized_bulk_send_is_the_documented_pattern() {
    let mut a = static_agent();
    let total = (1usize << 20) + 3;
    let mut c = Client::connect(&mut a, 5019);
    c.socket().send_slice(format!("{total}\n").as_bytes()).expect("request");
    let mut got = Vec::with_capacity(total);
    let (start, wall) = (a.board.virtual_time_ns(), std::time::Instant::now());
    for _ in 0..100_000 {
        let s = c.socket();
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .expect("recv");
        }
        if !s.may_recv() {
            break;
        }
        c.step(&mut a);
    }
    assert!(!c.socket().may_recv(), "the agent closed after the last byte");
    assert_eq!(got.len(), total, "exactly the bytes asked for");
    let first_bad = got.iter().enumerate().position(|(i, &b)| b != pattern_byte(i as u64));
    assert_eq!(first_bad, None, "the bytes are the documented pattern");
    let ns = a.board.virtual_time_ns() - start;
    eprintln!(
        "sized bulk send: {total} bytes in {:.1} ms virtual ({:.1} MB/s), {:.2} s wall",
        ns as f64 / 1e6,
        total as f64 * 1e3 / ns as f64,
        wall.elapsed().as_secs_f64()
    );
}
