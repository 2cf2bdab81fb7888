//! The services against a host made of another smoltcp interface, over an in-memory wire, with
//! time driven by hand.

extern crate std;

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use bpnet_test_support::wire::{self, WireEnd};
use proptest::prelude::*;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress,
    IpCidr, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, DHCP_CLIENT_PORT,
    DHCP_SERVER_PORT,
};

use super::*;
use crate::identity::{self, Error, Record, RECORD_LEN};

// ---- identity ----

const BOARD: Identity = Identity { serial: 0x00A1_B2C3, slot: Some(7) };

#[test]
fn record_round_trips_and_has_the_documented_layout() {
    let bytes = BOARD.to_bytes().unwrap();
    assert_eq!(&bytes[0..4], b"BPID");
    assert_eq!(&bytes[4..6], &[1, 0], "version 1, little-endian");
    assert_eq!(bytes[6], 7, "slot");
    assert_eq!(bytes[7], 0, "reserved");
    assert_eq!(&bytes[8..12], &[0xC3, 0xB2, 0xA1, 0x00], "serial, little-endian");
    assert_eq!(&bytes[12..16], &identity::crc32(&bytes[..12]).to_le_bytes());
    assert_eq!(Identity::from_bytes(&bytes), Ok(BOARD));
    let unknown_slot = Identity { serial: 1, slot: None };
    let bytes = unknown_slot.to_bytes().unwrap();
    assert_eq!(bytes[6], 0xFF);
    assert_eq!(Identity::from_bytes(&bytes), Ok(unknown_slot));
}

#[test]
fn crc_is_zlibs() {
    // The check value of CRC-32/ISO-HDLC.
    assert_eq!(identity::crc32(b"123456789"), 0xCBF4_3926);
}

/// `bytes` with the CRC recomputed, so only the field under test is wrong.
fn resealed(mut bytes: [u8; RECORD_LEN]) -> [u8; RECORD_LEN] {
    let crc = identity::crc32(&bytes[..12]);
    bytes[12..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn bad_records_are_refused_with_the_reason() {
    let good = BOARD.to_bytes().unwrap();
    assert_eq!(Identity::from_bytes(&[0xFF; 4096]), Err(Error::Missing));
    assert_eq!(Identity::from_bytes(&good[..RECORD_LEN - 1]), Err(Error::Truncated));
    let mut b = good;
    b[0] = b'X';
    assert_eq!(Identity::from_bytes(&b), Err(Error::BadMagic(u32::from_le_bytes(*b"XPID"))));
    let mut b = good;
    b[4] = 2;
    assert_eq!(Identity::from_bytes(&resealed(b)), Err(Error::Version(2)));
    let mut b = good;
    b[9] ^= 0x10;
    assert!(matches!(Identity::from_bytes(&b), Err(Error::Crc { .. })));
    let mut b = good;
    b[6] = 20;
    assert_eq!(Identity::from_bytes(&resealed(b)), Err(Error::Slot(20)));
    let mut b = good;
    b[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(Identity::from_bytes(&resealed(b)), Err(Error::Serial(0)));
    let mut b = good;
    b[8..12].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    assert_eq!(Identity::from_bytes(&resealed(b)), Err(Error::Serial(0x0100_0000)));
    // What a reader refuses, a writer refuses too.
    assert_eq!(Identity { serial: 0, slot: None }.to_bytes(), Err(Error::Serial(0)));
    assert_eq!(Identity { serial: 5, slot: Some(20) }.to_bytes(), Err(Error::Slot(20)));
    assert_eq!(BOARD.emit(&mut [0; RECORD_LEN - 1]), Err(Error::Truncated));
    // A corrupt record leaves the board unknown, and says why.
    assert_eq!(identity::identify(&resealed(b)), (Identity::UNKNOWN, Err(Error::Serial(0x0100_0000))));
}

#[test]
fn addresses_follow_the_identity() {
    assert_eq!(BOARD.agent_mac(), [0x02, 0x83, 0x49, 0xA1, 0xB2, 0xC3]);
    assert_eq!(BOARD.host_mac(), [0x06, 0x83, 0x49, 0xA1, 0xB2, 0xC3]);
    assert_eq!(BOARD.static_address(), Ipv4Cidr::new(Ipv4Address::new(10, 83, 7, 2), 24));
    assert_eq!(BOARD.host_address(), Ipv4Address::new(10, 83, 7, 1));
    let unknown = Identity::UNKNOWN;
    assert_eq!(unknown.static_address(), Ipv4Cidr::new(Ipv4Address::new(10, 83, 49, 2), 24));
    assert_eq!(unknown.host_address(), Ipv4Address::new(10, 83, 49, 1));
    assert_eq!(unknown.agent_mac(), [0x02, 0x83, 0x49, 0, 0, 0]);
    for slot in 0..identity::SLOTS {
        let id = Identity { serial: 1, slot: Some(slot) };
        assert_eq!(id.static_address().address().octets()[2], slot);
        assert!(id.static_address().contains_addr(&id.host_address()));
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Identity::from_bytes(&bytes);
        let record = Record::new_unchecked(&bytes[..]);
        if record.check_len().is_ok() {
            let _ = (record.magic(), record.version(), record.slot(), record.serial(), record.crc());
        }
        let (identity, result) = identity::identify(&bytes);
        prop_assert!(result.is_ok() || identity == Identity::UNKNOWN);
    }

    #[test]
    fn valid_records_round_trip(serial in 1u32..=identity::SERIAL_MAX, slot in proptest::option::of(0u8..identity::SLOTS)) {
        let id = Identity { serial, slot };
        prop_assert_eq!(Identity::from_bytes(&id.to_bytes().unwrap()), Ok(id));
    }

    #[test]
    fn every_single_bit_error_is_caught(serial in 1u32..=identity::SERIAL_MAX, bit in 0usize..RECORD_LEN * 8) {
        let mut bytes = Identity { serial, slot: Some(3) }.to_bytes().unwrap();
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Identity::from_bytes(&bytes).is_err());
    }

    #[test]
    fn macs_never_collide(a in 1u32..=identity::SERIAL_MAX, b in 1u32..=identity::SERIAL_MAX) {
        let (x, y) = (Identity { serial: a, slot: None }, Identity { serial: b, slot: None });
        for mac in [x.agent_mac(), x.host_mac()] {
            prop_assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
        }
        prop_assert_ne!(x.agent_mac(), x.host_mac());
        prop_assert_ne!(x.agent_mac(), y.host_mac());
        prop_assert_eq!(x.agent_mac() == y.agent_mac(), a == b);
        prop_assert_ne!(x.agent_mac(), Identity::UNKNOWN.agent_mac());
    }

    #[test]
    fn pattern_fill_matches_byte(offset in 0u64..(1 << 40), len in 0usize..100) {
        let mut buf = vec![0u8; len];
        pattern::fill(offset, &mut buf);
        prop_assert_eq!(pattern::mismatch(offset, &buf), None);
        for (i, &b) in buf.iter().enumerate() {
            prop_assert_eq!(b, pattern::byte(offset + i as u64));
        }
    }

    #[test]
    fn the_table_fills_as_the_definition(offset in 0u64..(1 << 40), len in 0usize..(3 * pattern::PERIOD)) {
        let mut table = Box::new(pattern::Table::new());
        let generator = table.build();
        let mut buf = vec![0u8; len];
        generator.fill(offset, &mut buf);
        let mut want = vec![0u8; len];
        pattern::fill(offset, &mut want);
        prop_assert!(buf == want, "first difference at {:?}", buf.iter().zip(&want).position(|(a, b)| a != b));
        prop_assert_eq!(pattern::mismatch(offset, &buf), None);
    }

    #[test]
    fn requests_never_panic(line in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(Some((_, used))) = parse_request(&line) {
            prop_assert!(used <= line.len() && line[used - 1] == b'\n');
        }
    }
}

#[test]
fn pattern_is_the_documented_one() {
    // mix(0) = 0; mix(1) = 0x514e28b7 (MurmurHash3's fmix32), little-endian.
    let mut head = [0u8; 8];
    pattern::fill(0, &mut head);
    assert_eq!(head, [0, 0, 0, 0, 0xb7, 0x28, 0x4e, 0x51]);
    // 65524 bytes: 16381 words, a prime number of them.
    assert_eq!(pattern::PERIOD, 65524);
    let words = pattern::PERIOD / 4;
    assert!((2..words).take_while(|d| d * d <= words).all(|d| !words.is_multiple_of(d)), "{words} is prime");
    // Byte i is byte i % 4 of mix((i / 4) % 16381), little-endian.
    for i in (0..3 * pattern::PERIOD as u64).chain([u64::MAX - 5, u64::MAX, 1 << 40]) {
        let want = pattern::mix(((i / 4) % words as u64) as u32).to_le_bytes()[(i % 4) as usize];
        assert_eq!(pattern::byte(i), want, "byte {i}");
    }
    // No shorter period: within one, the words all differ.
    let distinct: std::collections::HashSet<u32> = (0..words as u32).map(pattern::mix).collect();
    assert_eq!(distinct.len(), words);
    // The period ends where it starts again, and the table says so too.
    let mut table = Box::new(pattern::Table::new());
    let generator = table.build();
    let mut across = vec![0u8; 16];
    generator.fill(pattern::PERIOD as u64 - 8, &mut across);
    assert_eq!(&across[8..], &head[..]);
    assert_eq!(pattern::mismatch(pattern::PERIOD as u64 - 8, &across), None);
    // A stretch lost or repeated is seen unless its length is a multiple of the period.
    let mut stream = vec![0u8; 4 * pattern::PERIOD];
    pattern::fill(0, &mut stream);
    for lost in [1, 4, 1460, 8960, 65536, pattern::PERIOD - 4] {
        assert!(pattern::mismatch(0, &[&stream[..1000], &stream[1000 + lost..]].concat()).is_some(), "{lost} lost");
    }
    assert_eq!(pattern::mismatch(0, &[&stream[..1000], &stream[1000 + pattern::PERIOD..]].concat()), None);
}

#[test]
fn requests_parse_as_documented() {
    assert_eq!(parse_request(b"1048576\n"), Ok(Some((1_048_576, 8))));
    assert_eq!(parse_request(b"0\r\nextra"), Ok(Some((0, 3))));
    assert_eq!(parse_request(b"123"), Ok(None));
    assert_eq!(parse_request(b"123\r"), Ok(None));
    assert_eq!(parse_request(b""), Ok(None));
    assert_eq!(parse_request(b"\n"), Err(RequestError::Syntax));
    assert_eq!(parse_request(b"12a\n"), Err(RequestError::Syntax));
    assert_eq!(parse_request(b"-1\n"), Err(RequestError::Syntax));
    assert_eq!(parse_request(b"1\r2\n"), Err(RequestError::Syntax));
    assert_eq!(parse_request(b"18446744073709551615\n"), Ok(Some((u64::MAX, 21))));
    assert_eq!(parse_request(b"18446744073709551616\n"), Err(RequestError::TooLong));
    assert_eq!(parse_request(&[b'0'; REQUEST_MAX]), Err(RequestError::TooLong));
}

// ---- addressing, without sockets ----

fn ms(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn lease(addr: [u8; 4], router: Option<Ipv4Address>) -> dhcpv4::Config<'static> {
    dhcpv4::Config {
        server: dhcpv4::ServerInfo {
            address: Ipv4Address::new(10, 83, 7, 1),
            identifier: Ipv4Address::new(10, 83, 7, 1),
        },
        address: Ipv4Cidr::new(Ipv4Address::from(addr), 24),
        router,
        dns_servers: heapless::Vec::new(),
        packet: None,
    }
}

#[test]
fn static_address_only_after_the_wait() {
    let mut a = Addressing::new(BOARD.static_address(), Some(BOARD.host_address()), FALLBACK_AFTER);
    assert_eq!(a.tick(ms(100_000)), None, "no wait starts before the link is up");
    assert!(!a.link(ms(0), false));
    assert!(a.link(ms(1000), true), "discovery starts at link-up");
    assert_eq!(a.poll_at(), Some(ms(4000)));
    assert!(!a.link(ms(1500), true), "only the rising edge counts");
    assert_eq!(a.tick(ms(3999)), None);
    assert_eq!(a.current(), None);
    let fallback =
        Assigned { cidr: BOARD.static_address(), gateway: Some(BOARD.host_address()), source: Source::Static };
    assert_eq!(a.tick(ms(4000)), Some(Change::Fallback(fallback)));
    assert_eq!(a.tick(ms(9000)), None, "once");
    assert_eq!(a.poll_at(), None);

    // A later lease replaces it; losing the lease returns to it at once.
    let leased = lease([10, 83, 7, 50], None);
    let want = Assigned { cidr: leased.address, gateway: None, source: Source::Lease };
    assert_eq!(a.dhcp(&dhcpv4::Event::Configured(leased.clone())), Some(Change::Leased(want)));
    assert_eq!(a.dhcp(&dhcpv4::Event::Configured(leased)), None, "a renewal changes nothing");
    assert_eq!(a.dhcp(&dhcpv4::Event::Deconfigured), Some(Change::LeaseLost(fallback)));
    assert_eq!(a.dhcp(&dhcpv4::Event::Deconfigured), None, "nothing leased, nothing lost");

    // Link bounce: discovery restarts while the static address stays.
    assert!(!a.link(ms(10_000), false));
    assert!(a.link(ms(11_000), true));
    assert_eq!(a.current(), Some(fallback));
    assert_eq!(a.tick(ms(20_000)), None);
}

#[test]
fn a_lease_in_time_means_no_static_address() {
    let mut a = Addressing::new(BOARD.static_address(), Some(BOARD.host_address()), FALLBACK_AFTER);
    assert!(a.link(ms(0), true));
    let leased = lease([10, 83, 7, 60], Some(Ipv4Address::new(10, 83, 7, 1)));
    assert!(matches!(a.dhcp(&dhcpv4::Event::Configured(leased)), Some(Change::Leased(_))));
    assert_eq!(a.tick(ms(60_000)), None);
    assert_eq!(a.current().map(|c| c.source), Some(Source::Lease));
    // With a lease, a link bounce leaves renewal to DHCP.
    assert!(!a.link(ms(61_000), false));
    assert!(!a.link(ms(62_000), true));
}

// ---- the services over a wire ----

const HOST_TCP_BUFFER: usize = 256 * 1024;

/// The agent (the services) and a host (smoltcp with TCP sockets, and optionally a DHCP server).
struct World {
    now: Instant,
    /// Boxed, as the board keeps its interface in a static: its fragment buffers are too large for a
    /// test thread's stack.
    agent: Box<Interface>,
    agent_end: WireEnd,
    agent_sockets: SocketSet<'static>,
    services: Services<'static>,
    host: Box<Interface>,
    host_end: WireEnd,
    host_sockets: SocketSet<'static>,
    link_up: bool,
    /// Answer DHCP with this address, if set.
    dhcp_offer: Option<(Ipv4Address, u32)>,
    /// Every DHCP message type the agent sent, with when.
    dhcp_seen: Vec<(Instant, DhcpMessageType)>,
    changes: Vec<(Instant, Change)>,
    /// Host TCP ports whose frames from the agent are lost: connections a host forgot without a
    /// word, and does not answer for either (its stack gone).
    gone: Vec<u16>,
}

fn leak<T>(v: T) -> &'static mut T {
    Box::leak(Box::new(v))
}

/// Socket storage for the host side (smoltcp is built without `alloc`).
fn slice<T: Clone>(value: T, len: usize) -> &'static mut [T] {
    Vec::leak(vec![value; len])
}

impl World {
    fn new(identity: Identity) -> World {
        World::with_mtu(identity, 1500)
    }

    /// Both ends of the wire at IP MTU `mtu`.
    fn with_mtu(identity: Identity, mtu: usize) -> World {
        let now = Instant::from_secs(100);
        // Both ends as the board's device announces the link to smoltcp.
        let mut agent_end = WireEnd::new(ip::stack_mtu(mtu), false);
        let mut config = IfaceConfig::new(EthernetAddress(identity.agent_mac()).into());
        config.random_seed = 7;
        let mut agent = wire::interface(config, &mut agent_end, now);
        ip::configure(&mut agent);
        let mut agent_sockets = SocketSet::new(&mut leak([SocketStorage::EMPTY; SOCKETS])[..]);
        // Storage is large (the board keeps it in .bss): made on a thread with room for it on its stack.
        let storage = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| leak(Storage::new()))
            .and_then(|t| t.join().map_err(|_| std::io::Error::other("storage")))
            .expect("storage");
        let services = Services::new(storage, leak(PacketMeta::new()), &mut agent_sockets, &identity, FALLBACK_AFTER);

        let mut host_end = WireEnd::new(ip::stack_mtu(mtu), false);
        let mut config = IfaceConfig::new(EthernetAddress(identity.host_mac()).into());
        config.random_seed = 11;
        let mut host = wire::interface(config, &mut host_end, now);
        host.update_ip_addrs(|a| a.push(IpCidr::new(identity.host_address().into(), 24)).unwrap());
        let host_sockets = SocketSet::new(&mut leak([SocketStorage::EMPTY; 4])[..]);
        World {
            now,
            agent,
            agent_end,
            agent_sockets,
            services,
            host,
            host_end,
            host_sockets,
            link_up: true,
            dhcp_offer: None,
            dhcp_seen: Vec::new(),
            changes: Vec::new(),
            gone: Vec::new(),
        }
    }

    /// One round: both sides poll, frames cross the wire, then time moves by `dt`.
    fn step(&mut self, dt: Duration) {
        self.agent.poll(self.now, &mut self.agent_end, &mut self.agent_sockets);
        let p = self.services.poll(&mut self.agent, &mut self.agent_sockets, self.now, self.link_up);
        if let Some(change) = p.change {
            self.changes.push((self.now, change));
        }
        while let Some(frame) = self.agent_end.tx.pop_front() {
            if let Some(reply) = self.dhcp(&frame) {
                self.agent_end.rx.push_back(reply);
            } else if tcp_dst_port(&frame).is_some_and(|port| self.gone.contains(&port)) {
                // Lost: nobody there.
            } else {
                self.host_end.rx.push_back(frame);
            }
        }
        self.host.poll(self.now, &mut self.host_end, &mut self.host_sockets);
        self.agent_end.rx.extend(self.host_end.tx.drain(..));
        self.now += dt;
    }

    /// Steps of 1 ms until `done`, at most `limit` of them.
    fn run_until(&mut self, limit: usize, mut done: impl FnMut(&mut World) -> bool) {
        for _ in 0..limit {
            if done(self) {
                return;
            }
            self.step(Duration::from_millis(1));
        }
        assert!(done(self), "not done within {limit} steps");
    }

    /// The host's DHCP server: an OFFER for a DISCOVER, an ACK for a REQUEST.
    fn dhcp(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        if ip.next_header() != IpProtocol::Udp || udp.dst_port() != DHCP_SERVER_PORT {
            return None;
        }
        let packet = DhcpPacket::new_checked(udp.payload()).ok()?;
        let request = DhcpRepr::parse(&packet).ok()?;
        self.dhcp_seen.push((self.now, request.message_type));
        let (address, lease) = self.dhcp_offer?;
        let message_type = match request.message_type {
            DhcpMessageType::Discover => DhcpMessageType::Offer,
            DhcpMessageType::Request => DhcpMessageType::Ack,
            _ => return Some(Vec::new()).filter(|v: &Vec<u8>| !v.is_empty()),
        };
        let server = Ipv4Address::new(10, 83, 7, 1);
        let reply = DhcpRepr {
            message_type,
            transaction_id: request.transaction_id,
            secs: 0,
            client_hardware_address: request.client_hardware_address,
            client_ip: Ipv4Address::UNSPECIFIED,
            your_ip: address,
            server_ip: server,
            router: Some(server),
            subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(server),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: Some(lease),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let udp_repr = UdpRepr { src_port: DHCP_SERVER_PORT, dst_port: DHCP_CLIENT_PORT };
        let ip_repr = Ipv4Repr {
            src_addr: server,
            dst_addr: Ipv4Address::BROADCAST,
            next_header: IpProtocol::Udp,
            payload_len: 8 + reply.buffer_len(),
            hop_limit: 64,
        };
        let eth_repr = EthernetRepr {
            src_addr: EthernetAddress(BOARD.host_mac()),
            dst_addr: request.client_hardware_address,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut out = vec![0u8; 14 + 20 + 8 + reply.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut out[..]);
        eth_repr.emit(&mut eth);
        let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip_repr.emit(&mut ip, &Default::default());
        let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
        udp_repr.emit(
            &mut udp,
            &server.into(),
            &Ipv4Address::BROADCAST.into(),
            reply.buffer_len(),
            |buf| reply.emit(&mut DhcpPacket::new_unchecked(buf)).unwrap(),
            &Default::default(),
        );
        Some(out)
    }

    fn agent_address(&self) -> Option<Ipv4Address> {
        self.agent.ipv4_addr()
    }

    /// A host TCP socket connecting to the agent's `port` (at its current address).
    fn connect(&mut self, port: u16, local_port: u16) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(slice(0u8, HOST_TCP_BUFFER));
        let tx = tcp::SocketBuffer::new(slice(0u8, HOST_TCP_BUFFER));
        let handle = self.host_sockets.add(tcp::Socket::new(rx, tx));
        let remote = (IpAddress::Ipv4(self.agent_address().expect("agent has an address")), port);
        self.host_sockets.get_mut::<tcp::Socket>(handle).connect(self.host.context(), remote, local_port).unwrap();
        self.run_until(2000, |w| w.host_sockets.get::<tcp::Socket>(handle).may_send());
        handle
    }

    fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.host_sockets.get_mut(handle)
    }
}

/// The destination port of a TCP segment in `frame`, if it is one.
fn tcp_dst_port(frame: &[u8]) -> Option<u16> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = smoltcp::wire::TcpPacket::new_checked(ip.payload()).ok()?;
    Some(tcp.dst_port())
}

/// A world whose agent already has the static address.
fn with_static_address() -> World {
    let mut w = World::new(BOARD);
    w.run_until(10_000, |w| w.agent_address().is_some());
    w
}

#[test]
fn without_dhcp_server_the_static_address_comes_after_the_wait() {
    let mut w = World::new(BOARD);
    let start = w.now;
    // Before link-up: no address however long it takes.
    w.link_up = false;
    for _ in 0..100 {
        w.step(Duration::from_millis(100));
    }
    assert_eq!(w.agent_address(), None);
    w.link_up = true;
    let up = w.now;
    w.run_until(10_000, |w| w.agent_address().is_some());
    let waited = w.now - up;
    assert!(waited >= FALLBACK_AFTER && waited <= FALLBACK_AFTER + Duration::from_millis(2), "waited {waited}");
    assert_eq!(w.agent_address(), Some(Ipv4Address::new(10, 83, 7, 2)));
    assert_eq!(w.changes.len(), 1);
    assert!(matches!(w.changes[0].1, Change::Fallback(_)));
    // DHCP was asked right at link-up, and keeps being asked in the background.
    let discovers: Vec<Instant> =
        w.dhcp_seen.iter().filter(|(_, t)| *t == DhcpMessageType::Discover).map(|(at, _)| *at).collect();
    assert!(discovers.iter().any(|&at| at >= up && at <= up + Duration::from_millis(2)), "{discovers:?} from {start}");
    // The wait's end is a smoltcp timer: a main loop that sleeps until smoltcp's next timer whenever
    // a pass finds nothing to do (the firmware's) takes the static address on time.
    let mut w = World::new(BOARD);
    let up = w.now;
    let mut wakeups = 0;
    while w.agent_address().is_none() {
        w.step(Duration::ZERO);
        let delay = w.agent.poll_delay(w.now, &w.agent_sockets).expect("a timer is armed");
        w.now += delay;
        wakeups += 1;
        assert!(wakeups < 10, "no address after {wakeups} wake-ups, at {}", w.now - up);
    }
    assert_eq!(w.changes[0].0 - up, FALLBACK_AFTER, "taken at the first wake-up after the wait");

    // The host reaches it: TCP echo.
    let mut w = with_static_address();
    let h = w.connect(ECHO_PORT, 40000);
    w.tcp(h).send_slice(b"hello backplane").unwrap();
    let mut got = Vec::new();
    w.run_until(2000, |w| {
        let s = w.tcp(h);
        while let Ok(n) = s.recv(|b| (b.len(), b.to_vec())) {
            if n.is_empty() {
                break;
            }
            got.extend(n);
        }
        got.len() == 15
    });
    assert_eq!(got, b"hello backplane");
}

#[test]
fn a_lease_is_taken_and_replaces_the_static_address() {
    let mut w = World::new(BOARD);
    w.dhcp_offer = Some((Ipv4Address::new(10, 83, 7, 77), 3600));
    w.run_until(100, |w| w.agent_address().is_some());
    assert_eq!(w.agent_address(), Some(Ipv4Address::new(10, 83, 7, 77)));
    assert!(matches!(w.changes[..], [(_, Change::Leased(_))]));
    for _ in 0..60 {
        w.step(Duration::from_millis(100));
    }
    assert_eq!(w.changes.len(), 1, "no static address once leased: {:?}", w.changes);

    // A server that answers only after the fallback: the lease replaces the static address.
    let mut w = with_static_address();
    w.dhcp_offer = Some((Ipv4Address::new(10, 83, 7, 78), 20));
    w.run_until(10_000, |w| w.agent_address() == Some(Ipv4Address::new(10, 83, 7, 78)));
    assert!(w.agent.ip_addrs().len() == 1, "the static address is gone: {:?}", w.agent.ip_addrs());
    // The server goes away: at the lease's end the static address is back.
    w.dhcp_offer = None;
    for _ in 0..300 {
        w.step(Duration::from_millis(100));
    }
    assert_eq!(w.agent_address(), Some(Ipv4Address::new(10, 83, 7, 2)));
    assert!(matches!(w.changes.last(), Some((_, Change::LeaseLost(_)))), "{:?}", w.changes);
}

#[test]
fn discard_takes_a_mebibyte() {
    let mut w = with_static_address();
    let h = w.connect(DISCARD_PORT, 40001);
    let data = vec![0x5au8; 1 << 20];
    let mut sent = 0;
    w.run_until(100_000, |w| {
        let s = w.tcp(h);
        if sent < data.len() && s.can_send() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        sent == data.len() && s.send_queue() == 0
    });
    assert_eq!(w.services.stats().discarded, 1 << 20, "all acknowledged and all dropped");
    // A close is answered with a close, and the port takes the next client.
    w.tcp(h).close();
    w.run_until(2000, |w| w.tcp(h).state() == tcp::State::TimeWait || w.tcp(h).state() == tcp::State::Closed);
    let again = w.connect(DISCARD_PORT, 40002);
    assert!(w.tcp(again).may_send());

    // UDP discard.
    let mut w = with_static_address();
    let meta = udp::PacketMetadata::EMPTY;
    let u = w.host_sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(slice(meta, 4), slice(0u8, 4096)),
        udp::PacketBuffer::new(slice(meta, 4), slice(0u8, 4096)),
    ));
    let sock = w.host_sockets.get_mut::<udp::Socket>(u);
    sock.bind(5555).unwrap();
    sock.send_slice(&[1u8; 1000], (Ipv4Address::new(10, 83, 7, 2), DISCARD_PORT)).unwrap();
    w.run_until(1000, |w| w.services.stats().discarded == 1000);
}

/// Read from `h` into `got` until the peer closed; true once it has.
fn read_all(w: &mut World, h: SocketHandle, got: &mut Vec<u8>) -> bool {
    let s = w.tcp(h);
    while s.can_recv() {
        s.recv(|b| {
            got.extend_from_slice(b);
            (b.len(), ())
        })
        .unwrap();
    }
    !s.may_recv()
}

#[test]
fn sized_sends_exactly_the_pattern_then_closes() {
    let mut w = with_static_address();
    for (n, size) in [1_000_003usize, 0, 1].into_iter().enumerate() {
        let h = w.connect(SIZED_PORT, 41000 + n as u16);
        w.tcp(h).send_slice(std::format!("{size}\r\n").as_bytes()).unwrap();
        let mut got = Vec::new();
        w.run_until(100_000, |w| read_all(w, h, &mut got));
        assert_eq!(got.len(), size);
        assert_eq!(pattern::mismatch(0, &got), None);
        w.tcp(h).close();
        w.run_until(5000, |w| !w.tcp(h).is_open());
        w.host_sockets.remove(h);
    }
    assert_eq!(w.services.stats().bulk_sent, 1_000_004);

    // A request that is not a count is refused with a reset.
    let h = w.connect(SIZED_PORT, 42000);
    w.tcp(h).send_slice(b"lots\n").unwrap();
    w.run_until(2000, |w| w.tcp(h).state() == tcp::State::Closed);
    assert_eq!(w.services.stats().refused_requests, 1);
}

#[test]
fn chargen_sends_the_pattern_until_the_peer_closes() {
    let mut w = with_static_address();
    let h = w.connect(CHARGEN_PORT, 43000);
    let mut got = Vec::new();
    w.run_until(100_000, |w| {
        read_all(w, h, &mut got);
        got.len() >= 300_000
    });
    assert_eq!(pattern::mismatch(0, &got), None);
    w.tcp(h).close();
    let mut rest = Vec::new();
    w.run_until(10_000, |w| read_all(w, h, &mut rest));
    assert_eq!(pattern::mismatch(got.len() as u64, &rest), None, "the rest continues the pattern");
    w.run_until(10_000, |w| !w.tcp(h).is_open());
    // The next connection starts the pattern over.
    let h = w.connect(CHARGEN_PORT, 43001);
    let mut got = Vec::new();
    w.run_until(10_000, |w| {
        read_all(w, h, &mut got);
        got.len() >= 1000
    });
    assert_eq!(pattern::mismatch(0, &got), None);
}

/// The pool of `port`'s sockets on the agent.
fn pool(w: &World, port: u16) -> [SocketHandle; POOL] {
    match port {
        ECHO_PORT => w.services.echo,
        DISCARD_PORT => w.services.discard,
        CHARGEN_PORT => w.services.chargen,
        SIZED_PORT => w.services.sized,
        _ => unreachable!("not a TCP service: {port}"),
    }
}

fn all_listening(w: &World, port: u16) -> bool {
    pool(w, port).iter().all(|&h| w.agent_sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen)
}

/// Use a connection to `port` the way its service is used, and check the service answered.
fn exercise(w: &mut World, h: SocketHandle, port: u16) {
    let mut got = Vec::new();
    match port {
        ECHO_PORT => {
            w.tcp(h).send_slice(b"still there?").unwrap();
            w.run_until(2000, |w| {
                read_all(w, h, &mut got);
                got.len() >= 12
            });
            assert_eq!(got, b"still there?");
        }
        DISCARD_PORT => {
            let before = w.services.stats().discarded;
            w.tcp(h).send_slice(&[7u8; 1000]).unwrap();
            w.run_until(2000, |w| w.services.stats().discarded == before + 1000);
        }
        CHARGEN_PORT => {
            w.run_until(2000, |w| {
                read_all(w, h, &mut got);
                got.len() >= 3000
            });
            assert_eq!(pattern::mismatch(0, &got), None);
        }
        SIZED_PORT => {
            w.tcp(h).send_slice(b"3000\n").unwrap();
            w.run_until(2000, |w| read_all(w, h, &mut got));
            assert_eq!((got.len(), pattern::mismatch(0, &got)), (3000, None));
        }
        _ => unreachable!("not a TCP service: {port}"),
    }
}

/// Connect to `port` from `local_port`: the host's socket once established or closed (refused).
fn try_connect(w: &mut World, port: u16, local_port: u16) -> SocketHandle {
    let rx = tcp::SocketBuffer::new(slice(0u8, HOST_TCP_BUFFER));
    let tx = tcp::SocketBuffer::new(slice(0u8, HOST_TCP_BUFFER));
    let h = w.host_sockets.add(tcp::Socket::new(rx, tx));
    let remote = (IpAddress::Ipv4(w.agent_address().unwrap()), port);
    w.host_sockets.get_mut::<tcp::Socket>(h).connect(w.host.context(), remote, local_port).unwrap();
    w.run_until(2000, |w| w.tcp(h).may_send() || w.tcp(h).state() == tcp::State::Closed);
    h
}

/// A host connects to `port` from `local_port`, uses it, then forgets it: its socket goes without
/// a FIN or an RST. With `gone`, nothing the agent sends there reaches anyone; without, the host's
/// stack answers for the connection it no longer knows (with an RST).
fn connect_use_forget(w: &mut World, port: u16, local_port: u16, gone: bool) {
    let h = try_connect(w, port, local_port);
    assert!(w.tcp(h).may_send(), "port {port} refused a connection: {:?}", w.tcp(h).state());
    exercise(w, h, port);
    w.host_sockets.remove(h);
    if gone {
        w.gone.push(local_port);
    }
}

#[test]
fn a_lingering_connection_neither_blocks_the_next_nor_stays_forever() {
    for (n, port) in [ECHO_PORT, DISCARD_PORT, CHARGEN_PORT, SIZED_PORT].into_iter().enumerate() {
        let mut w = with_static_address();
        assert!(all_listening(&w, port), "every socket of port {port} listens");
        let base = 50000 + 100 * n as u16;
        // Two hosts connect, one after the other, and vanish: the second is accepted at once.
        connect_use_forget(&mut w, port, base, true);
        connect_use_forget(&mut w, port, base + 1, true);
        let last_heard = w.now;
        // The pool is spent while both linger: a third is refused, not left hanging.
        let h = try_connect(&mut w, port, base + 2);
        assert_eq!(w.tcp(h).state(), tcp::State::Closed, "port {port}: a third connection with {POOL} sockets");
        w.host_sockets.remove(h);
        // Keep-alives go unanswered: the timeout reclaims both sockets.
        w.run_until(40_000, |w| all_listening(w, port));
        let reclaimed = w.now - last_heard;
        assert!(
            reclaimed >= TIMEOUT && reclaimed <= TIMEOUT + Duration::from_secs(1),
            "port {port}: reclaimed after {reclaimed}"
        );
        // Both sockets take connections again. This time the host's stack is still there and answers
        // the agent's next segment for a connection it forgot with a bare RST (no ACK, as Linux
        // does). smoltcp hands such an RST to the first socket of the port that accepts it, which
        // may be a listening one that drops it: the timeout is what bounds the linger either way.
        connect_use_forget(&mut w, port, base + 3, false);
        connect_use_forget(&mut w, port, base + 4, false);
        let forgotten = w.now;
        w.run_until(40_000, |w| all_listening(w, port));
        let reclaimed = w.now - forgotten;
        assert!(reclaimed <= TIMEOUT + Duration::from_secs(1), "port {port}: reclaimed after {reclaimed}");
        connect_use_forget(&mut w, port, base + 5, false);
    }
}

// ---- IPv4 fragments, ICMP and UDP echo of every size ----

const AGENT: Ipv4Address = Ipv4Address::new(10, 83, 7, 2);

/// An Ethernet frame from the host to the agent carrying an IPv4 packet of `payload_len` bytes with
/// the fragment fields `more` and `offset` (in bytes).
fn ipv4_frame(payload_len: usize, more: bool, offset: u16) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: Ipv4Address::new(10, 83, 7, 1),
        dst_addr: AGENT,
        next_header: IpProtocol::Udp,
        payload_len,
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + 20 + payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: EthernetAddress(BOARD.host_mac()),
        dst_addr: EthernetAddress(BOARD.agent_mac()),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    repr.emit(&mut ip, &Default::default());
    ip.set_more_frags(more);
    ip.set_frag_offset(offset);
    ip.fill_checksum();
    frame
}

#[test]
fn the_stack_mtu_keeps_fragments_aligned() {
    assert_eq!(ip::stack_mtu(1500), 1500);
    assert_eq!(ip::stack_mtu(9000), 8996);
    assert_eq!(ip::stack_mtu(65535), 65532);
    assert_eq!(ip::stack_mtu(68), 68);
    for mtu in 68..=65535 {
        let m = ip::stack_mtu(mtu);
        assert!(m <= mtu && mtu - m < 8 && (m - 20).is_multiple_of(8), "{mtu}");
    }
}

#[test]
fn frames_are_sorted_before_the_stack() {
    use crate::ip::{ingress, is_fragment, Ingress};
    assert_eq!(ingress(&ipv4_frame(100, false, 0)), Ingress::Stack);
    assert_eq!(ingress(&ipv4_frame(1480, true, 0)), Ingress::Fragment);
    assert_eq!(ingress(&ipv4_frame(100, false, 1480)), Ingress::Fragment);
    // The last byte a datagram can carry (65535 less a 20-byte header) is the 65515th of its payload.
    assert_eq!(ingress(&ipv4_frame(3, false, 65512)), Ingress::Fragment);
    assert_eq!(ingress(&ipv4_frame(4, false, 65512)), Ingress::FragmentPastLimit);
    assert_eq!(ingress(&ipv4_frame(100, true, 65512)), Ingress::FragmentPastLimit);
    let mut arp = ipv4_frame(28, false, 0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(ingress(&arp), Ingress::Stack);
    let mut ipv6 = ipv4_frame(100, false, 0);
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(ingress(&ipv6), Ingress::Unparsed);
    assert_eq!(ingress(&ipv4_frame(100, false, 0)[..13]), Ingress::Unparsed);
    // A total length beyond the frame, a version other than 4.
    assert_eq!(ingress(&ipv4_frame(100, false, 0)[..100]), Ingress::Unparsed);
    let mut v5 = ipv4_frame(100, false, 0);
    v5[14] = 0x55;
    assert_eq!(ingress(&v5), Ingress::Unparsed);

    assert!(is_fragment(&ipv4_frame(1480, true, 0)));
    assert!(is_fragment(&ipv4_frame(100, false, 8)));
    assert!(!is_fragment(&ipv4_frame(100, false, 0)));
    assert!(!is_fragment(&arp));
}

impl World {
    /// A host UDP socket on `port` with room for the largest datagrams.
    fn udp_socket(&mut self, port: u16) -> SocketHandle {
        let meta = udp::PacketMetadata::EMPTY;
        let h = self.host_sockets.add(udp::Socket::new(
            udp::PacketBuffer::new(slice(meta, 16), slice(0u8, 4 * 65536)),
            udp::PacketBuffer::new(slice(meta, 16), slice(0u8, 4 * 65536)),
        ));
        self.host_sockets.get_mut::<udp::Socket>(h).bind(port).unwrap();
        h
    }

    fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.host_sockets.get_mut(h)
    }

    /// Poll the host alone until it has sent everything queued (smoltcp sends one fragment per poll),
    /// queueing its frames for the agent: they arrive together.
    fn host_flush(&mut self) {
        for _ in 0..1000 {
            self.host.poll(self.now, &mut self.host_end, &mut self.host_sockets);
            if self.host.poll_at(self.now, &self.host_sockets) != Some(Instant::ZERO) {
                break;
            }
        }
        self.agent_end.rx.extend(self.host_end.tx.drain(..));
    }
}

/// A payload of `len` bytes that differs from any other length's.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

/// Send each of `sizes` to the agent's UDP echo, all at once (their frames queued for the agent
/// together), and require every echo back byte for byte.
fn udp_echo_all(w: &mut World, h: SocketHandle, sizes: &[usize]) {
    for &n in sizes {
        w.udp(h).send_slice(&payload(n), (AGENT, ECHO_PORT)).unwrap();
        w.host_flush();
    }
    let mut got = Vec::new();
    w.run_until(20_000, |w| {
        while let Ok((data, _)) = w.udp(h).recv() {
            got.push(data.to_vec());
        }
        got.len() == sizes.len()
    });
    for (data, &n) in got.iter().zip(sizes) {
        assert!(*data == payload(n), "echo of {n} bytes: {} bytes back, or different", data.len());
    }
}

const UDP_SIZES: [usize; 7] = [1, 1472, 1473, 2049, 8972, 8973, ip::UDP_PAYLOAD_MAX];

#[test]
fn udp_echo_answers_every_size_at_every_mtu() {
    for mtu in [1500, 9000, 65535] {
        let mut w = World::with_mtu(BOARD, mtu);
        w.run_until(10_000, |w| w.agent_address().is_some());
        let h = w.udp_socket(6000);
        // One at a time, then all at once: the echoes of datagrams larger than the MTU leave one
        // after the other, never mixing their fragments.
        for n in UDP_SIZES {
            udp_echo_all(&mut w, h, &[n]);
        }
        udp_echo_all(&mut w, h, &[8973, 65507, 1, 8973]);
        assert_eq!(w.services.stats().udp_dropped, 0, "MTU {mtu}");
    }
}

#[test]
fn udp_discard_takes_the_largest_datagram() {
    let mut w = World::with_mtu(BOARD, 1500);
    w.run_until(10_000, |w| w.agent_address().is_some());
    let h = w.udp_socket(6001);
    w.udp(h).send_slice(&payload(ip::UDP_PAYLOAD_MAX), (AGENT, DISCARD_PORT)).unwrap();
    w.run_until(1000, |w| w.services.stats().discarded == ip::UDP_PAYLOAD_MAX as u64);
}

#[test]
fn fragmented_pings_are_answered() {
    use smoltcp::socket::icmp;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr};
    for (mtu, sizes) in [(1500, [1473, 8973, ip::ICMP_PAYLOAD_MAX]), (9000, [8972, 8973, ip::ICMP_PAYLOAD_MAX])] {
        let mut w = World::with_mtu(BOARD, mtu);
        w.run_until(10_000, |w| w.agent_address().is_some());
        let meta = icmp::PacketMetadata::EMPTY;
        let h = w.host_sockets.add(icmp::Socket::new(
            icmp::PacketBuffer::new(slice(meta, 4), slice(0u8, 2 * 65536)),
            icmp::PacketBuffer::new(slice(meta, 4), slice(0u8, 2 * 65536)),
        ));
        w.host_sockets.get_mut::<icmp::Socket>(h).bind(icmp::Endpoint::Ident(0x4242)).unwrap();
        for (seq_no, n) in sizes.into_iter().enumerate() {
            let data = payload(n);
            let request = Icmpv4Repr::EchoRequest { ident: 0x4242, seq_no: seq_no as u16, data: &data };
            let s = w.host_sockets.get_mut::<icmp::Socket>(h);
            let buf = s.send(request.buffer_len(), IpAddress::Ipv4(AGENT)).unwrap();
            request.emit(&mut Icmpv4Packet::new_unchecked(buf), &Default::default());
            let mut reply = None;
            w.run_until(5000, |w| {
                let s = w.host_sockets.get_mut::<icmp::Socket>(h);
                if let Ok((bytes, _)) = s.recv() {
                    let packet = Icmpv4Packet::new_checked(bytes).unwrap();
                    if let Icmpv4Repr::EchoReply { seq_no, data, .. } =
                        Icmpv4Repr::parse(&packet, &Default::default()).unwrap()
                    {
                        reply = Some((seq_no, data.to_vec()));
                    }
                }
                reply.is_some()
            });
            assert_eq!(reply, Some((seq_no as u16, data)), "MTU {mtu}: ping of {n} bytes");
        }
    }
}

proptest! {
    /// What the sorting refuses as an IPv4 header is what smoltcp's checked view refuses (or a version
    /// other than 4), and what it passes smoltcp parses.
    #[test]
    fn sorting_agrees_with_smoltcps_parser(
        mut frame in proptest::collection::vec(any::<u8>(), 0..80),
        ipv4 in any::<bool>(),
    ) {
        use crate::ip::{ingress, Ingress};
        if ipv4 && frame.len() >= 14 {
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
        }
        let verdict = ingress(&frame);
        let parsed = EthernetFrame::new_checked(&frame[..]).ok().and_then(|eth| match eth.ethertype() {
            EthernetProtocol::Ipv4 => Some(Ipv4Packet::new_checked(eth.payload()).is_ok_and(|ip| ip.version() == 4)),
            _ => None,
        });
        match parsed {
            Some(ok) => prop_assert_eq!(ok, verdict != Ingress::Unparsed, "{:?}", verdict),
            None => prop_assert!(matches!(verdict, Ingress::Unparsed | Ingress::Stack)),
        }
    }
}
