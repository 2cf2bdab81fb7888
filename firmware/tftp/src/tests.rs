//! The codec against hand-written packets and arbitrary bytes; the client against the server model
//! (datagrams passed by hand, time moved by hand to the next timer) and over two smoltcp interfaces
//! joined by an in-memory wire.

use std::boxed::Box;
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use bpnet_test_support::wire::WireEnd;
use proptest::prelude::*;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::socket::udp as udp_socket;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

use crate::client::{Config, Failure, Memory, Sink, SinkError, Status, Transfer};
use crate::server::{self, Content, Faults, Server};
use crate::wire::{self, ErrorCode, Mode, OptionName, Options, Packet, Repr, Request};

// ---- the codec ----

fn emit(repr: &Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut buf), Ok(buf.len()), "{repr:?}");
    buf
}

#[test]
fn a_request_has_the_documented_bytes() {
    let request = Request {
        filename: b"boot/agent.img",
        mode: Mode::Octet,
        options: Options { blksize: Some(1468), windowsize: Some(16), timeout: Some(1), tsize: Some(0) },
    };
    let bytes = emit(&Repr::ReadRequest(request));
    assert_eq!(
        &bytes[..],
        &b"\x00\x01boot/agent.img\0octet\0blksize\x001468\0windowsize\x0016\0timeout\x001\0tsize\x000\0"[..]
    );
    assert_eq!(Repr::parse(&bytes), Ok(Repr::ReadRequest(request)));
    assert_eq!(emit(&Repr::Ack { block: 0x1234 }), [0, 4, 0x12, 0x34]);
    assert_eq!(emit(&Repr::Data { block: 0xFFFF, data: b"ab" }), [0, 3, 0xFF, 0xFF, b'a', b'b']);
    assert_eq!(emit(&Repr::Error { code: ErrorCode::DiskFull, message: b"full" }), *b"\x00\x05\x00\x03full\0");
    let oack = Options { blksize: Some(8), windowsize: None, timeout: None, tsize: Some(u64::MAX) };
    assert_eq!(emit(&Repr::OptionAck(oack)), *b"\x00\x06blksize\x008\0tsize\x0018446744073709551615\0");
}

#[test]
fn names_and_modes_are_case_insensitive() {
    let bytes = b"\x00\x01f\0OcTeT\0BLKSIZE\x00512\0WindowSize\x004\0TimeOut\x002\0TSize\x000\0";
    let Ok(Repr::ReadRequest(r)) = Repr::parse(bytes) else { panic!() };
    assert_eq!(r.mode, Mode::Octet);
    assert_eq!(r.options, Options { blksize: Some(512), windowsize: Some(4), timeout: Some(2), tsize: Some(0) });
    assert_eq!(
        Repr::parse(b"\x00\x06BlkSize\x00100\0"),
        Ok(Repr::OptionAck(Options { blksize: Some(100), ..Options::NONE }))
    );
}

fn oack(name: &str, value: &str) -> Result<Options, wire::Error> {
    let mut bytes = vec![0, 6];
    for s in [name, value] {
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
    }
    match Repr::parse(&bytes)? {
        Repr::OptionAck(o) => Ok(o),
        other => panic!("{other:?}"),
    }
}

#[test]
fn option_values_are_checked() {
    use wire::Error::Value;
    let ok = |o: Options| Ok::<_, wire::Error>(o);
    assert_eq!(oack("blksize", "7"), Err(Value(OptionName::Blksize)));
    assert_eq!(oack("blksize", "8"), ok(Options { blksize: Some(8), ..Options::NONE }));
    assert_eq!(oack("blksize", "65464"), ok(Options { blksize: Some(65464), ..Options::NONE }));
    assert_eq!(oack("blksize", "65465"), Err(Value(OptionName::Blksize)));
    assert_eq!(oack("blksize", "99999999999999999999999"), Err(Value(OptionName::Blksize)));
    assert_eq!(oack("windowsize", "0"), Err(Value(OptionName::Windowsize)));
    assert_eq!(oack("windowsize", "65535"), ok(Options { windowsize: Some(65535), ..Options::NONE }));
    assert_eq!(oack("windowsize", "65536"), Err(Value(OptionName::Windowsize)));
    assert_eq!(oack("timeout", "0"), Err(Value(OptionName::Timeout)));
    assert_eq!(oack("timeout", "255"), ok(Options { timeout: Some(255), ..Options::NONE }));
    assert_eq!(oack("timeout", "256"), Err(Value(OptionName::Timeout)));
    assert_eq!(oack("tsize", "18446744073709551615"), ok(Options { tsize: Some(u64::MAX), ..Options::NONE }));
    assert_eq!(oack("tsize", "18446744073709551616"), Err(Value(OptionName::Tsize)));
    for bad in ["", "-1", "+1", " 1", "1 ", "0x10", "1.0"] {
        assert_eq!(oack("tsize", bad), Err(Value(OptionName::Tsize)), "{bad:?}");
    }
    assert_eq!(oack("tsize", "007"), ok(Options { tsize: Some(7), ..Options::NONE }));
    assert_eq!(oack("multicast", ""), Err(wire::Error::UnknownOption));
    assert_eq!(
        Repr::parse(b"\x00\x06tsize\x001\0TSIZE\x002\0"),
        Err(wire::Error::Duplicate(OptionName::Tsize)),
        "an ambiguous packet is refused"
    );
    assert_eq!(Repr::parse(b"\x00\x06tsize\0"), Err(wire::Error::MissingValue));
    assert_eq!(Repr::parse(b"\x00\x06tsize\x001"), Err(wire::Error::Unterminated));
    // A server skips what it does not know; the rest of the request still counts.
    let Ok(Repr::ReadRequest(r)) = Repr::parse(b"\x00\x01f\0octet\0rollover\x000\0blksize\x001024\0") else { panic!() };
    assert_eq!(r.options, Options { blksize: Some(1024), ..Options::NONE });
}

#[test]
fn short_and_strange_packets_are_refused() {
    use wire::Error::*;
    for (bytes, want) in [
        (&b""[..], Truncated),
        (b"\x00", Truncated),
        (b"\x00\x03", Truncated),
        (b"\x00\x04\x00", Truncated),
        (b"\x00\x05\x00", Truncated),
        (b"\x00\x07\x00\x00", Opcode(7)),
        (b"\x00\x00", Opcode(0)),
        (b"\x00\x01", Unterminated),
        (b"\x00\x01f\0", Unterminated),
        (b"\x00\x01f\0octet", Unterminated),
        (b"\x00\x01\0octet\0", Filename),
        (b"\x00\x01f\0binary\0", Mode),
    ] {
        assert_eq!(Repr::parse(bytes), Err(want), "{bytes:?}");
    }
    assert_eq!(Repr::parse(b"\x00\x03\x00\x01"), Ok(Repr::Data { block: 1, data: b"" }));
    assert_eq!(Repr::parse(b"\x00\x06"), Ok(Repr::OptionAck(Options::NONE)));
    // A message without its NUL is taken as it is; what follows a NUL is not part of it.
    assert_eq!(
        Repr::parse(b"\x00\x05\x00\x01nope"),
        Ok(Repr::Error { code: ErrorCode::FileNotFound, message: b"nope" })
    );
    assert_eq!(Repr::parse(b"\x00\x05\x01\x00a\0b"), Ok(Repr::Error { code: ErrorCode::Other(256), message: b"a" }));
    // Emitting refuses what would not read back the same.
    assert_eq!(Repr::Ack { block: 1 }.emit(&mut [0; 3]), Err(Emit));
    let nul = Request { filename: b"a\0b", mode: wire::Mode::Octet, options: Options::NONE };
    assert_eq!(Repr::ReadRequest(nul).emit(&mut [0; 64]), Err(Emit));
    assert_eq!(Repr::Error { code: ErrorCode::Undefined, message: b"x\0" }.emit(&mut [0; 64]), Err(Emit));
}

fn options_strategy() -> impl Strategy<Value = Options> {
    (
        proptest::option::of(wire::BLKSIZE_MIN..=wire::BLKSIZE_MAX),
        proptest::option::of(1u16..),
        proptest::option::of(1u8..),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(blksize, windowsize, timeout, tsize)| Options { blksize, windowsize, timeout, tsize })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(packet) = Packet::new_checked(&bytes[..]) {
            let _ = (packet.opcode(), packet.strings());
            if matches!(packet.opcode(), 3..=5) {
                let _ = (packet.block(), packet.error_code(), packet.rest());
            }
        }
        // What parses emits back to a packet that parses the same.
        if let Ok(repr) = Repr::parse(&bytes) {
            let mut out = vec![0u8; repr.buffer_len()];
            if let Ok(n) = repr.emit(&mut out) {
                prop_assert_eq!(n, out.len());
                prop_assert_eq!(Repr::parse(&out), Ok(repr));
            }
        }
    }

    #[test]
    fn packets_made_of_options_never_panic(
        opcode in 0u16..8,
        parts in proptest::collection::vec(
            prop_oneof![Just("blksize"), Just("TSIZE"), Just("windowsize"), Just("timeout"), Just("octet"), Just(""),
                        Just("0"), Just("8"), Just("65464"), Just("65536"), Just("18446744073709551616"), Just("x")],
            0..8),
        nul_end in any::<bool>(),
    ) {
        let mut bytes = opcode.to_be_bytes().to_vec();
        for p in &parts {
            bytes.extend_from_slice(p.as_bytes());
            bytes.push(0);
        }
        if !nul_end {
            bytes.pop();
        }
        let _ = Repr::parse(&bytes);
    }

    #[test]
    fn reprs_round_trip(
        options in options_strategy(),
        block in any::<u16>(),
        data in proptest::collection::vec(any::<u8>(), 0..600),
        message in "[ -~]{0,40}",
        code in any::<u16>(),
        name in "[!-~]{1,100}",
    ) {
        let reprs = [
            Repr::ReadRequest(Request { filename: name.as_bytes(), mode: Mode::Octet, options }),
            Repr::WriteRequest(Request { filename: name.as_bytes(), mode: Mode::Netascii, options }),
            Repr::OptionAck(options),
            Repr::Data { block, data: &data },
            Repr::Ack { block },
            Repr::Error { code: ErrorCode::from_u16(code), message: message.as_bytes() },
        ];
        for repr in reprs {
            let bytes = emit(&repr);
            prop_assert_eq!(Repr::parse(&bytes), Ok(repr));
            prop_assert_eq!(ErrorCode::from_u16(code).as_u16(), code);
        }
    }
}

// ---- sinks ----

/// Collects the payload.
struct VecSink {
    data: Vec<u8>,
    capacity: u64,
}

impl VecSink {
    fn new(capacity: u64) -> Self {
        VecSink { data: Vec::new(), capacity }
    }
}

impl Sink for VecSink {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        assert_eq!(offset, self.data.len() as u64, "writes follow each other");
        assert!(offset + data.len() as u64 <= self.capacity, "writes stay within the capacity");
        self.data.extend_from_slice(data);
        Ok(())
    }
}

/// Keeps nothing: checks each write against the server's pattern at its offset.
struct PatternSink {
    bytes: u64,
    capacity: u64,
    bad_writes: u64,
    scratch: Vec<u8>,
}

impl PatternSink {
    fn new(capacity: u64) -> Self {
        PatternSink { bytes: 0, capacity, bad_writes: 0, scratch: Vec::new() }
    }
}

impl Sink for PatternSink {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        self.scratch.resize(data.len(), 0);
        server::pattern(offset, &mut self.scratch);
        if offset != self.bytes || self.scratch != data {
            self.bad_writes += 1;
        }
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// Refuses every write from `fail_at` on.
struct FailingSink(VecSink, u64);

impl Sink for FailingSink {
    fn capacity(&self) -> u64 {
        self.0.capacity()
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        if offset >= self.1 {
            return Err(SinkError);
        }
        self.0.write(offset, data)
    }
}

// ---- the client against the server model, datagrams passed by hand ----

const SERVER_ADDR: IpAddress = IpAddress::v4(10, 83, 49, 1);
const CLIENT: IpEndpoint = IpEndpoint { addr: IpAddress::v4(10, 83, 49, 2), port: 50_000 };
const SERVER: IpEndpoint = IpEndpoint { addr: SERVER_ADDR, port: wire::SERVER_PORT };
const T0: Instant = Instant::from_micros_const(1_000_000_000);

fn bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    server::pattern(0, &mut v);
    v
}

/// The client and the server, and the datagrams between them.
struct Net {
    now: Instant,
    client: Transfer,
    server: Server,
    to_client: VecDeque<(Vec<u8>, IpEndpoint)>,
    to_server: VecDeque<(Vec<u8>, u16)>,
    /// Every datagram the client sent.
    sent: Vec<Vec<u8>>,
    /// Datagrams the client received.
    delivered: u64,
}

impl Net {
    fn new(content: Content, config: Config, faults: Faults) -> Net {
        let mut server = Server::new(SERVER_ADDR);
        server.faults = faults;
        server.add_file(b"agent.img", content);
        Net {
            now: T0,
            client: Transfer::new(SERVER, b"agent.img", config).unwrap(),
            server,
            to_client: VecDeque::new(),
            to_server: VecDeque::new(),
            sent: Vec::new(),
            delivered: 0,
        }
    }

    fn client_sent(&mut self, d: Option<(IpEndpoint, Vec<u8>)>) -> bool {
        let Some((to, packet)) = d else { return false };
        assert_eq!(to.addr, SERVER_ADDR);
        self.sent.push(packet.clone());
        self.to_server.push_back((packet, to.port));
        true
    }

    /// Run until the transfer ends and nothing is in flight; time jumps to the next timer whenever
    /// both sides wait.
    fn run<S: Sink>(&mut self, sink: &mut S) -> Status {
        loop {
            while let Some((packet, from)) = self.to_client.pop_front() {
                self.delivered += 1;
                assert!(self.delivered < 10_000_000, "the transfer goes round in circles");
                let d = self.client.poll(self.now, Some((&packet, from)), sink).map(|d| (d.to, d.packet.to_vec()));
                self.client_sent(d);
            }
            loop {
                let d = self.client.poll(self.now, None, sink).map(|d| (d.to, d.packet.to_vec()));
                if !self.client_sent(d) {
                    break;
                }
            }
            while let Some((packet, port)) = self.to_server.pop_front() {
                for o in self.server.receive(self.now, &packet, CLIENT, port) {
                    self.to_client.push_back((o.packet, IpEndpoint::new(SERVER_ADDR, o.from_port)));
                }
            }
            for o in self.server.tick(self.now) {
                self.to_client.push_back((o.packet, IpEndpoint::new(SERVER_ADDR, o.from_port)));
            }
            if !self.to_client.is_empty() {
                continue;
            }
            let status = self.client.status();
            if status != Status::Running {
                return status;
            }
            let next = [self.client.poll_at(), self.server.poll_at()].into_iter().flatten().min().expect("a timer");
            self.now = self.now.max(next);
            assert!(self.now < T0 + Duration::from_secs(3600), "the transfer never ends");
        }
    }

    /// ACKs the client sent.
    fn acks(&self) -> usize {
        self.sent.iter().filter(|p| p.get(..2) == Some(&[0, 4])).count()
    }
}

fn plain() -> Config {
    Config { options: false, ..Config::default() }
}

fn done(status: Status) -> crate::Summary {
    match status {
        Status::Done(summary) => summary,
        other => panic!("transfer not done: {other:?}"),
    }
}

#[test]
fn small_files_in_every_mode() {
    let modes: [(&str, Config, Faults, u16, u16); 4] = [
        ("plain request", plain(), Faults::default(), 512, 1),
        ("options", Config::default(), Faults::default(), 1468, 16),
        ("options ignored", Config::default(), Faults { ignore_options: true, ..Faults::default() }, 512, 1),
        ("512-byte blocks in windows", Config { blksize: 512, ..Config::default() }, Faults::default(), 512, 16),
    ];
    for (what, config, faults, blksize, windowsize) in modes {
        for len in [0usize, 1, 511, 512, 513, 1467, 1468, 1469, 16 * 1468, 16 * 1468 + 1, 40_000] {
            let content = bytes(len);
            let mut net = Net::new(Content::Bytes(content.clone()), config, faults);
            let mut sink = VecSink::new(1 << 20);
            let summary = done(net.run(&mut sink));
            assert!(sink.data == content, "{what}, {len} bytes: payload differs");
            let blocks = (len / usize::from(blksize) + 1) as u64;
            assert_eq!(
                summary,
                crate::Summary { bytes: len as u64, blocks, blksize, windowsize },
                "{what}, {len} bytes"
            );
            assert_eq!(net.server.log.completed, 1, "{what}, {len} bytes: the last ACK arrived");
            let p = net.client.progress();
            assert_eq!(
                p.retransmissions + p.duplicates + p.out_of_order + p.ignored + p.foreign,
                0,
                "{what} {len}: {p:?}"
            );
            assert_eq!(p.expected, (windowsize > 1).then_some(len as u64), "{what}: tsize known with options");
            // One ACK per window (and the last block's, and ACK 0 after an OACK).
            let oack = u64::from(windowsize > 1);
            let want = (blocks - 1) / u64::from(windowsize) + 1 + oack;
            assert_eq!(net.acks() as u64, want, "{what}, {len} bytes: ACKs");
        }
    }
}

#[test]
fn request_asks_for_every_option() {
    let mut net = Net::new(Content::Bytes(bytes(10)), Config::default(), Faults::default());
    done(net.run(&mut VecSink::new(100)));
    let want = Options { blksize: Some(1468), windowsize: Some(16), timeout: Some(1), tsize: Some(0) };
    assert_eq!(net.server.log.requests, [want]);
    let Ok(Repr::ReadRequest(r)) = Repr::parse(&net.sent[0]) else { panic!() };
    assert_eq!((r.filename, r.mode), (&b"agent.img"[..], Mode::Octet));
    assert_eq!(Config::blksize_for_mtu(1500), 1468);
    assert_eq!(Config::blksize_for_mtu(9000), 8968);
    assert_eq!(Config::blksize_for_mtu(65535), wire::BLKSIZE_MAX);
    assert_eq!(Config::blksize_for_mtu(0), wire::BLKSIZE_MIN);
    // Windows of 1 are not asked for: that is the default.
    let mut net = Net::new(Content::Bytes(bytes(10)), Config { windowsize: 1, ..Config::default() }, Faults::default());
    done(net.run(&mut VecSink::new(100)));
    assert_eq!(net.server.log.requests[0].windowsize, None);
}

#[test]
fn four_mib_in_windows_of_16() {
    let len = 4 << 20;
    let mut net = Net::new(Content::Pattern(len), Config::default(), Faults::default());
    let mut sink = PatternSink::new(len);
    let summary = done(net.run(&mut sink));
    assert_eq!((sink.bytes, sink.bad_writes), (len, 0));
    assert_eq!(summary, crate::Summary { bytes: len, blocks: len / 1468 + 1, blksize: 1468, windowsize: 16 });
    assert_eq!(net.acks() as u64, (len / 1468) / 16 + 1 + 1);
    assert_eq!(net.now, T0, "no timer ever ran out");
}

#[test]
fn more_than_65535_blocks_wrap_the_block_number() {
    // 65,600 full blocks of 512 bytes and a short one: the block number goes through 0 once.
    let len = 65_600 * 512 + 100;
    for config in [Config { blksize: 512, ..Config::default() }, plain()] {
        let mut net = Net::new(Content::Pattern(len), config, Faults { lose_data_every: 20_011, ..Faults::default() });
        let mut sink = PatternSink::new(u64::MAX);
        let summary = done(net.run(&mut sink));
        assert_eq!((sink.bytes, sink.bad_writes), (len, 0), "{config:?}");
        assert_eq!(summary.blocks, 65_601);
        assert!(
            net.client.progress().retransmissions + net.client.progress().out_of_order > 0,
            "losses were recovered"
        );
    }
}

/// Run `faults` against lock-step and windowed transfers of a few sizes; each must end with the
/// whole file.
fn recovers(faults: Faults) -> Vec<crate::Progress> {
    let mut seen = Vec::new();
    for config in [plain(), Config::default(), Config { windowsize: 4, blksize: 600, ..Config::default() }] {
        for len in [0usize, 1, 512, 5000, 100_000] {
            let content = bytes(len);
            let mut net = Net::new(Content::Bytes(content.clone()), config, faults);
            let mut sink = VecSink::new(1 << 20);
            let status = net.run(&mut sink);
            assert!(matches!(status, Status::Done(_)), "{faults:?} {config:?} {len}: {status:?}");
            assert!(sink.data == content, "{faults:?} {config:?} {len}: payload differs");
            seen.push(net.client.progress());
        }
    }
    seen
}

fn total(seen: &[crate::Progress], f: impl Fn(&crate::Progress) -> u32) -> u32 {
    seen.iter().map(f).sum()
}

#[test]
fn lost_data_is_asked_for_again() {
    let seen = recovers(Faults { lose_data_every: 7, ..Faults::default() });
    assert!(total(&seen, |p| p.retransmissions) > 0);
    assert!(total(&seen, |p| p.out_of_order) > 0, "gaps in windows are seen");
    recovers(Faults { lose_data_every: 4, ..Faults::default() });
    recovers(Faults { lose_data_every: 3, seed: 1, ..Faults::default() });
}

#[test]
fn lost_acks_are_sent_again() {
    let seen = recovers(Faults { lose_ack_every: 3, ..Faults::default() });
    assert!(total(&seen, |p| p.retransmissions) > 0);
    recovers(Faults { lose_ack_every: 4, seed: 1, ..Faults::default() });
}

#[test]
fn duplicates_and_reordering_are_harmless() {
    let seen = recovers(Faults { duplicate_every: 5, ..Faults::default() });
    assert!(total(&seen, |p| p.duplicates) > 0);
    let seen = recovers(Faults { reorder_every: 4, ..Faults::default() });
    assert!(total(&seen, |p| p.out_of_order) > 0);
    recovers(Faults { duplicate_every: 1, ..Faults::default() });
}

#[test]
fn everything_at_once() {
    recovers(Faults {
        lose_data_every: 11,
        lose_ack_every: 13,
        duplicate_every: 7,
        reorder_every: 5,
        stray_every: 9,
        ..Faults::default()
    });
}

#[test]
fn a_wrong_port_gets_error_5_and_the_transfer_goes_on() {
    let content = bytes(50_000);
    let mut net =
        Net::new(Content::Bytes(content.clone()), Config::default(), Faults { stray_every: 3, ..Faults::default() });
    let mut sink = VecSink::new(1 << 20);
    done(net.run(&mut sink));
    assert!(sink.data == content);
    let foreign = net.client.progress().foreign;
    assert!(foreign > 5);
    assert_eq!(net.server.log.stray_errors, vec![ErrorCode::UnknownTransferId; foreign as usize]);
    assert!(net.server.log.errors.is_empty(), "the real transfer ID got no error");
}

#[test]
fn options_ignored_refused_or_bad_fall_back_to_plain() {
    let content = bytes(3000);
    let mut net = Net::new(
        Content::Bytes(content.clone()),
        Config::default(),
        Faults { refuse_options: true, ..Faults::default() },
    );
    let mut sink = VecSink::new(1 << 20);
    assert_eq!(done(net.run(&mut sink)).blksize, 512);
    assert!(sink.data == content);
    assert_eq!(net.server.log.requests.len(), 2);
    assert!(net.server.log.requests[1].is_empty(), "the second request is plain");
    assert_eq!(net.client.progress().fallbacks, 1);

    // An OACK with a block larger than asked: refused with ERROR 8, then plain.
    let mut net = Net::new(
        Content::Bytes(content.clone()),
        Config::default(),
        Faults { oack_blksize: Some(2000), ..Faults::default() },
    );
    let mut sink = VecSink::new(1 << 20);
    assert_eq!(done(net.run(&mut sink)).blksize, 512);
    assert!(sink.data == content);
    assert_eq!(net.server.log.errors, [(server::FIRST_PORT, ErrorCode::OptionsRefused)]);
    assert!(net.server.log.requests[1].is_empty());

    // A smaller block is fine.
    let mut net = Net::new(
        Content::Bytes(content.clone()),
        Config::default(),
        Faults { oack_blksize: Some(100), ..Faults::default() },
    );
    let mut sink = VecSink::new(1 << 20);
    assert_eq!(done(net.run(&mut sink)), crate::Summary { bytes: 3000, blocks: 31, blksize: 100, windowsize: 16 });
    // A server window smaller than asked is used.
    let mut net =
        Net::new(Content::Bytes(content.clone()), Config::default(), Faults { max_windowsize: 3, ..Faults::default() });
    let mut sink = VecSink::new(1 << 20);
    assert_eq!(done(net.run(&mut sink)).windowsize, 3);
    assert!(sink.data == content);
}

#[test]
fn server_errors_are_reported() {
    let mut net =
        Net::new(Content::Bytes(bytes(100_000)), Config::default(), Faults { error_at: Some(20), ..Faults::default() });
    let mut sink = VecSink::new(1 << 20);
    let Status::Failed(failure) = net.run(&mut sink) else { panic!() };
    let Failure::Server { code, message } = failure else { panic!("{failure:?}") };
    assert_eq!((code, message.as_str()), (ErrorCode::AccessViolation, "read failed"));
    assert_eq!(sink.data.len(), 19 * 1468);
    assert_eq!(std::format!("{failure}"), "server error 2: read failed");

    let mut net = Net::new(Content::Bytes(bytes(1)), Config::default(), Faults::default());
    net.client = Transfer::new(SERVER, b"missing", Config::default()).unwrap();
    let Status::Failed(Failure::Server { code, message }) = net.run(&mut sink) else { panic!() };
    assert_eq!((code, message.as_str()), (ErrorCode::FileNotFound, "File not found"));
}

#[test]
fn too_large_for_the_sink_is_refused_with_error_3() {
    // Announced by tsize: refused before any data.
    let mut net = Net::new(Content::Bytes(bytes(5000)), Config::default(), Faults::default());
    let mut sink = VecSink::new(4999);
    assert_eq!(net.run(&mut sink), Status::Failed(Failure::TooLarge { size: 5000, capacity: 4999, announced: true }));
    assert!(sink.data.is_empty());
    assert_eq!(net.server.log.errors, [(server::FIRST_PORT, ErrorCode::DiskFull)]);
    // Found while receiving (no tsize): refused at the block that does not fit.
    let mut net = Net::new(Content::Bytes(bytes(5000)), plain(), Faults::default());
    let mut sink = VecSink::new(4000);
    assert_eq!(net.run(&mut sink), Status::Failed(Failure::TooLarge { size: 4096, capacity: 4000, announced: false }));
    assert_eq!(sink.data.len(), 3584);
    assert_eq!(net.server.log.errors, [(server::FIRST_PORT, ErrorCode::DiskFull)]);
    // Exactly the capacity fits.
    let mut net = Net::new(Content::Bytes(bytes(4000)), plain(), Faults::default());
    done(net.run(&mut VecSink::new(4000)));
}

#[test]
fn a_file_that_is_not_its_tsize_fails() {
    // Truncated: the last block comes early.
    let mut net = Net::new(
        Content::Bytes(bytes(10_000)),
        Config::default(),
        Faults { truncate_to: Some(6000), ..Faults::default() },
    );
    let mut sink = VecSink::new(1 << 20);
    assert_eq!(net.run(&mut sink), Status::Failed(Failure::SizeMismatch { announced: 10_000, received: 6000 }));
    assert_eq!(net.server.log.errors, [(server::FIRST_PORT, ErrorCode::Undefined)]);
    // Longer than announced: refused as soon as it runs past.
    let mut net =
        Net::new(Content::Bytes(bytes(10_000)), Config::default(), Faults { tsize: Some(2000), ..Faults::default() });
    assert_eq!(
        net.run(&mut VecSink::new(1 << 20)),
        Status::Failed(Failure::SizeMismatch { announced: 2000, received: 2936 })
    );
    // Without tsize a truncated file cannot be told from a whole one: the payload's own check must.
    let mut net =
        Net::new(Content::Bytes(bytes(10_000)), plain(), Faults { truncate_to: Some(6000), ..Faults::default() });
    assert_eq!(done(net.run(&mut VecSink::new(1 << 20))).bytes, 6000);
}

#[test]
fn a_stalled_server_times_out_with_backoff() {
    let mut net = Net::new(
        Content::Bytes(bytes(100_000)),
        Config::default(),
        Faults { stall_after: Some(5), ..Faults::default() },
    );
    let mut sink = VecSink::new(1 << 20);
    assert_eq!(net.run(&mut sink), Status::Failed(Failure::Timeout { bytes: 5 * 1468 }));
    let p = net.client.progress();
    assert_eq!(p.retransmissions, 6);
    // Timeouts of 1, 2, 4, 8, 8, 8 and 8 s after the last block.
    assert_eq!(net.now - T0, Duration::from_secs(39));
    assert_eq!(std::format!("{}", Failure::Timeout { bytes: 7340 }), "the server stopped sending after 7340 bytes");
}

#[test]
fn no_answer_at_all_times_out_with_backoff() {
    let mut t = Transfer::new(SERVER, b"f", Config::default()).unwrap();
    let mut sink = VecSink::new(10);
    assert_eq!(t.poll_at(), Some(Instant::ZERO), "the request is due at once");
    let rrq = t.poll(T0, None, &mut sink).unwrap();
    assert_eq!(rrq.to, SERVER);
    let rrq = rrq.packet.to_vec();
    assert!(t.poll(T0, None, &mut sink).is_none());
    let mut at = T0;
    for wait in [1, 2, 4, 8, 8, 8] {
        at += Duration::from_secs(wait);
        assert_eq!(t.poll_at(), Some(at));
        assert!(t.poll(at - Duration::from_millis(1), None, &mut sink).is_none(), "not before its time");
        let again = t.poll(at, None, &mut sink).expect("the request again");
        assert_eq!(again.packet, &rrq[..]);
    }
    at += Duration::from_secs(8);
    assert!(t.poll(at, None, &mut sink).is_none());
    assert_eq!(t.status(), Status::Failed(Failure::Timeout { bytes: 0 }));
    assert_eq!(t.poll_at(), None);
    assert_eq!(std::format!("{}", Failure::Timeout { bytes: 0 }), "no answer from the server");
}

/// A client that sent its request, for tests that play the server by hand.
fn requested(config: Config) -> Transfer {
    let mut t = Transfer::new(SERVER, b"f", config).unwrap();
    assert!(t.poll(T0, None, &mut VecSink::new(0)).is_some());
    t
}

fn data(block: u16, len: usize) -> Vec<u8> {
    emit(&Repr::Data { block, data: &vec![block as u8; len] })
}

fn parsed(d: Option<crate::Datagram<'_>>) -> Option<(u16, Repr<'static>)> {
    let d = d?;
    Some((d.to.port, Repr::parse(Box::leak(d.packet.to_vec().into_boxed_slice())).unwrap()))
}

#[test]
fn the_transfer_id_is_the_first_reply_s_port() {
    let mut t = requested(plain());
    let mut sink = VecSink::new(1 << 20);
    let tid = IpEndpoint::new(SERVER_ADDR, 4000);
    let other = IpEndpoint::new(SERVER_ADDR, 4001);
    let stranger = IpEndpoint::new(IpAddress::v4(10, 83, 49, 9), 4000);
    // Before any reply, another address is a stranger.
    assert_eq!(parsed(t.poll(T0, Some((&data(1, 512), stranger)), &mut sink)).map(|p| p.0), Some(4000));
    assert_eq!(parsed(t.poll(T0, Some((&data(1, 512), tid)), &mut sink)), Some((4000, Repr::Ack { block: 1 })));
    // Another port of the server: ERROR 5 to it, the transfer unchanged.
    let error5 = Repr::Error { code: ErrorCode::UnknownTransferId, message: b"unknown transfer ID" };
    assert_eq!(parsed(t.poll(T0, Some((&data(2, 512), other)), &mut sink)), Some((4001, error5)));
    // An ERROR from a stranger is not answered (and does not end the transfer).
    let err = emit(&Repr::Error { code: ErrorCode::Undefined, message: b"x" });
    assert_eq!(t.poll(T0, Some((&err, other)), &mut sink), None);
    assert_eq!(parsed(t.poll(T0, Some((&data(2, 10), tid)), &mut sink)), Some((4000, Repr::Ack { block: 2 })));
    assert_eq!(sink.data.len(), 522);
    assert_eq!(t.progress().foreign, 3);
    // Done: the last block again is ACKed again (the ACK was lost), a stranger still gets ERROR 5.
    assert!(matches!(t.status(), Status::Done(_)));
    assert_eq!(parsed(t.poll(T0, Some((&data(2, 10), tid)), &mut sink)), Some((4000, Repr::Ack { block: 2 })));
    assert_eq!(t.poll(T0, Some((&data(1, 512), tid)), &mut sink), None);
    assert_eq!(sink.data.len(), 522, "nothing written after the end");
}

#[test]
fn gaps_and_duplicates_are_answered_once() {
    let config = Config { windowsize: 4, blksize: 8, ..Config::default() };
    let mut t = requested(config);
    let mut sink = VecSink::new(1 << 20);
    let tid = IpEndpoint::new(SERVER_ADDR, 4000);
    let oack = emit(&Repr::OptionAck(Options { blksize: Some(8), windowsize: Some(4), ..Options::NONE }));
    let mut feed = |t: &mut Transfer, p: Vec<u8>| parsed(t.poll(T0, Some((&p, tid)), &mut sink)).map(|(_, r)| r);
    assert_eq!(feed(&mut t, oack.clone()), Some(Repr::Ack { block: 0 }));
    // The OACK again (ACK 0 lost): ACK 0 again, once.
    assert_eq!(feed(&mut t, oack.clone()), Some(Repr::Ack { block: 0 }));
    assert_eq!(feed(&mut t, oack), None);
    assert_eq!(feed(&mut t, data(1, 8)), None);
    // Block 2 lost: 3 and 4 are out of order; one ACK of 1, not two.
    assert_eq!(feed(&mut t, data(3, 8)), Some(Repr::Ack { block: 1 }));
    assert_eq!(feed(&mut t, data(4, 8)), None);
    // The server goes back to 2.
    for b in 2..=4 {
        assert_eq!(feed(&mut t, data(b, 8)), None);
    }
    assert_eq!(feed(&mut t, data(5, 8)), Some(Repr::Ack { block: 5 }), "the window from 2 is full");
    // A duplicate of a block not yet ACKed (the network doubled it) is dropped silently.
    assert_eq!(feed(&mut t, data(6, 8)), None);
    assert_eq!(feed(&mut t, data(6, 8)), None);
    // A duplicate of an ACKed block (the server did not get ACK 5) is answered, once.
    assert_eq!(feed(&mut t, data(4, 8)), Some(Repr::Ack { block: 6 }));
    assert_eq!(feed(&mut t, data(5, 8)), None);
    // A DATA larger than the block size is dropped.
    assert_eq!(feed(&mut t, data(7, 9)), None);
    assert_eq!(feed(&mut t, data(7, 3)), Some(Repr::Ack { block: 7 }));
    let p = t.progress();
    assert_eq!((p.blocks, p.bytes, p.duplicates, p.out_of_order, p.ignored), (7, 51, 5, 2, 1));
    assert_eq!(sink.data.len(), 51);
}

#[test]
fn unacceptable_oacks_are_refused() {
    let tid = IpEndpoint::new(SERVER_ADDR, 4000);
    // Each OACK, and why it is refused for good when it answers the plain request too (any option is
    // then one not asked for), if it is refused.
    let cases: [(&[u8], Option<wire::Error>); 6] = [
        (b"\x00\x06blksize\x001469\0", Some(wire::Error::UnknownOption)),
        (b"\x00\x06windowsize\x0017\0", Some(wire::Error::UnknownOption)),
        (b"\x00\x06timeout\x002\0", Some(wire::Error::UnknownOption)),
        (b"\x00\x06rollover\x000\0", Some(wire::Error::UnknownOption)),
        (b"\x00\x06blksize\x00x\0", Some(wire::Error::Value(OptionName::Blksize))),
        (b"\x00\x06timeout\x001\0blksize\x001468\0windowsize\x0016\0tsize\x005\0", None),
    ];
    for (oack, refusal) in cases {
        let mut t = requested(Config::default());
        let mut sink = VecSink::new(100);
        let answer = parsed(t.poll(T0, Some((oack, tid)), &mut sink));
        if refusal.is_none() {
            assert_eq!(answer, Some((4000, Repr::Ack { block: 0 })));
            continue;
        }
        let refused = Repr::Error { code: ErrorCode::OptionsRefused, message: b"options refused" };
        assert_eq!(answer, Some((4000, refused)), "{oack:?}");
        // Then a plain request, to the well-known port.
        let (port, again) = parsed(t.poll(T0, None, &mut sink)).unwrap();
        let Repr::ReadRequest(r) = again else { panic!() };
        assert_eq!((port, r.options), (wire::SERVER_PORT, Options::NONE));
        // The refused transfer's late packets are a stranger's now.
        let e = parsed(t.poll(T0, Some((oack, tid)), &mut sink));
        assert!(matches!(e, Some((4000, Repr::Error { code: ErrorCode::UnknownTransferId, .. }))));
        // An OACK to the plain request is refused for good.
        let other = IpEndpoint::new(SERVER_ADDR, 4001);
        assert!(parsed(t.poll(T0, Some((oack, other)), &mut sink)).is_some());
        assert_eq!(t.status(), Status::Failed(Failure::Options(refusal.unwrap())), "{oack:?}");
    }
}

#[test]
fn sink_failures_end_the_transfer() {
    let mut net = Net::new(Content::Bytes(bytes(5000)), plain(), Faults::default());
    let mut sink = FailingSink(VecSink::new(1 << 20), 1024);
    assert_eq!(net.run(&mut sink), Status::Failed(Failure::Sink { offset: 1024 }));
    assert_eq!(net.server.log.errors, [(server::FIRST_PORT, ErrorCode::DiskFull)]);
    // The memory sink: exactly its slice.
    let mut area = [0u8; 4];
    let mut m = Memory::new(&mut area);
    assert_eq!(m.capacity(), 4);
    assert_eq!(m.write(1, b"abc"), Ok(()));
    assert_eq!(m.write(2, b"abc"), Err(SinkError));
    assert_eq!(m.write(u64::MAX, b"a"), Err(SinkError));
    assert_eq!(area, *b"\0abc");
}

#[test]
fn bad_filenames_are_refused() {
    use crate::client::{FilenameError, FILENAME_MAX};
    assert_eq!(Transfer::new(SERVER, b"", Config::default()).err(), Some(FilenameError::Length));
    assert_eq!(Transfer::new(SERVER, &[b'a'; FILENAME_MAX + 1], Config::default()).err(), Some(FilenameError::Length));
    assert_eq!(Transfer::new(SERVER, b"a\0", Config::default()).err(), Some(FilenameError::Nul));
    // The longest name with every option still fits a 512-byte request.
    let mut t = Transfer::new(SERVER, &[b'a'; FILENAME_MAX], Config::default()).unwrap();
    let d = t.poll(T0, None, &mut VecSink::new(0)).unwrap();
    assert!(d.packet.len() <= wire::REQUEST_MAX);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Hostile datagrams from the server's address, any port: the client never panics, never
    /// writes past its sink, and answers with at most one small datagram each.
    #[test]
    fn hostile_datagrams_never_panic(
        packets in proptest::collection::vec(
            (prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(b, d)| {
                    let mut p = vec![0, 3];
                    p.extend_from_slice(&b.to_be_bytes());
                    p.extend_from_slice(&d);
                    p
                }),
                (1u16..4).prop_map(|b| data(b, 512)),
                Just(b"\x00\x06blksize\x00512\0tsize\x00700\0".to_vec()),
            ], prop_oneof![Just(69u16), Just(4000u16), any::<u16>()], 0u64..3000),
            0..60),
        options in any::<bool>(),
    ) {
        let mut t = requested(Config { options, ..Config::default() });
        let mut sink = VecSink::new(2000);
        let mut now = T0;
        for (packet, port, dt) in packets {
            now += Duration::from_millis(dt);
            if let Some(d) = t.poll(now, Some((&packet, IpEndpoint::new(SERVER_ADDR, port))), &mut sink) {
                prop_assert!(d.packet.len() <= wire::REQUEST_MAX);
            }
            while t.poll(now, None, &mut sink).is_some() {}
            prop_assert!(t.progress().bytes <= 2000);
            prop_assert_eq!(t.progress().bytes, sink.data.len() as u64);
        }
    }

    /// Any mix of the recoverable faults ends with the whole file.
    #[test]
    fn any_mix_of_faults_recovers(
        len in 0usize..20_000,
        lose in prop_oneof![Just(0u64), 6u64..20], lose_ack in prop_oneof![Just(0u64), 6u64..20],
        dup in 0u64..12, reorder in 0u64..12, stray in 0u64..12,
        windowsize in 1u16..20, blksize in 64u16..2000, options in any::<bool>(), ignore in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let faults = Faults {
            lose_data_every: lose, lose_ack_every: lose_ack, duplicate_every: dup, reorder_every: reorder,
            stray_every: stray, ignore_options: ignore, seed, ..Faults::default()
        };
        let content = bytes(len);
        let config = Config { windowsize, blksize, options, retries: 10, ..Config::default() };
        let mut net = Net::new(Content::Bytes(content.clone()), config, faults);
        let mut sink = VecSink::new(1 << 20);
        let status = net.run(&mut sink);
        prop_assert!(matches!(status, Status::Done(_)), "{:?}", status);
        prop_assert!(sink.data == content);
    }
}

// ---- over smoltcp ----

fn leak<T>(v: T) -> &'static mut T {
    Box::leak(Box::new(v))
}

/// The agent (the client over its UDP socket) and a host whose UDP sockets carry the server model.
struct World {
    now: Instant,
    agent: Box<Interface>,
    agent_end: WireEnd,
    agent_sockets: SocketSet<'static>,
    client: crate::udp::Client,
    host: Box<Interface>,
    host_end: WireEnd,
    host_sockets: SocketSet<'static>,
    /// (port, socket) for the server's well-known port and its transfer ports.
    host_ports: Vec<(u16, smoltcp::iface::SocketHandle)>,
    server: Server,
    /// Frames on the wire so far; each `lose_every`-th is lost (0: none).
    frames: u64,
    lose_every: u64,
}

impl World {
    fn new(content: Content) -> World {
        let now = T0;
        let mut agent_end = WireEnd::default();
        let mut config = IfaceConfig::new(EthernetAddress([2, 0x83, 0x49, 0, 0, 1]).into());
        config.random_seed = 7;
        let mut agent = bpnet_test_support::wire::interface(config, &mut agent_end, now);
        agent.update_ip_addrs(|a| a.push(IpCidr::new(CLIENT.addr, 24)).unwrap());
        let mut agent_sockets = SocketSet::new(&mut leak([SocketStorage::EMPTY; 1])[..]);
        let client = crate::udp::Client::new(
            leak(crate::udp::Storage::new()),
            leak(crate::udp::PacketMeta::new()),
            &mut agent_sockets,
        );

        let mut host_end = WireEnd::default();
        let mut config = IfaceConfig::new(EthernetAddress([6, 0x83, 0x49, 0, 0, 1]).into());
        config.random_seed = 11;
        let mut host = bpnet_test_support::wire::interface(config, &mut host_end, now);
        host.update_ip_addrs(|a| a.push(IpCidr::new(SERVER_ADDR, 24)).unwrap());
        let mut host_sockets = SocketSet::new(&mut leak([SocketStorage::EMPTY; 16])[..]);
        let mut host_ports = Vec::new();
        for port in core::iter::once(wire::SERVER_PORT).chain(Server::ports(4)) {
            let mut socket = udp_socket::Socket::new(
                udp_socket::PacketBuffer::new(
                    Vec::leak(vec![udp_socket::PacketMetadata::EMPTY; 64]),
                    Vec::leak(vec![0; 8192]),
                ),
                udp_socket::PacketBuffer::new(
                    Vec::leak(vec![udp_socket::PacketMetadata::EMPTY; 256]),
                    Vec::leak(vec![0; 1 << 18]),
                ),
            );
            socket.bind(port).unwrap();
            host_ports.push((port, host_sockets.add(socket)));
        }
        let mut server = Server::new(SERVER_ADDR);
        server.add_file(b"agent.img", content);
        World {
            now,
            agent,
            agent_end,
            agent_sockets,
            client,
            host,
            host_end,
            host_sockets,
            host_ports,
            server,
            frames: 0,
            lose_every: 0,
        }
    }

    fn wire(&mut self, from_agent: bool) {
        let (src, dst) = if from_agent {
            (&mut self.agent_end.tx, &mut self.host_end.rx)
        } else {
            (&mut self.host_end.tx, &mut self.agent_end.rx)
        };
        while let Some(frame) = src.pop_front() {
            self.frames += 1;
            if self.lose_every == 0 || !self.frames.is_multiple_of(self.lose_every) {
                dst.push_back(frame);
            }
        }
    }

    fn serve(&mut self, out: Vec<server::Out>) {
        for o in out {
            let (_, handle) = self.host_ports.iter().find(|(p, _)| *p == o.from_port).expect("a bound port");
            self.host_sockets.get_mut::<udp_socket::Socket>(*handle).send_slice(&o.packet, o.to).unwrap();
        }
    }

    /// One round: both sides poll, frames cross the wire, then time moves by `dt`.
    fn step(&mut self, sink: &mut dyn Sink, dt: Duration) -> crate::udp::Poll {
        self.agent.poll(self.now, &mut self.agent_end, &mut self.agent_sockets);
        let poll = self.client.poll(&mut self.agent_sockets, self.now, sink);
        self.agent.poll(self.now, &mut self.agent_end, &mut self.agent_sockets);
        self.wire(true);
        self.host.poll(self.now, &mut self.host_end, &mut self.host_sockets);
        for i in 0..self.host_ports.len() {
            let (port, handle) = self.host_ports[i];
            while let Ok((data, meta)) = self.host_sockets.get_mut::<udp_socket::Socket>(handle).recv() {
                let data = data.to_vec();
                let out = self.server.receive(self.now, &data, meta.endpoint, port);
                self.serve(out);
            }
        }
        let out = self.server.tick(self.now);
        self.serve(out);
        self.host.poll(self.now, &mut self.host_end, &mut self.host_sockets);
        self.wire(false);
        self.now += dt;
        poll
    }

    fn fetch(&mut self, area: &mut [u8], port: u16, config: Config) -> Status {
        let transfer = Transfer::new(SERVER, b"agent.img", config).unwrap();
        self.client.start(&mut self.agent_sockets, port, transfer).unwrap();
        for _ in 0..2_000_000 {
            let poll = self.step(&mut Memory::new(area), Duration::from_millis(1));
            if let Some(status) = poll.status.filter(|s| *s != Status::Running) {
                return status;
            }
        }
        panic!("not done");
    }
}

#[test]
fn four_mib_over_smoltcp() {
    let len = 4 << 20;
    let mut w = World::new(Content::Pattern(len as u64));
    let mut area = vec![0u8; 5 << 20];
    let summary = done(w.fetch(&mut area, 50_000, Config::default()));
    assert_eq!(
        summary,
        crate::Summary { bytes: len as u64, blocks: len as u64 / 1468 + 1, blksize: 1468, windowsize: 16 }
    );
    let mut want = vec![0u8; len];
    server::pattern(0, &mut want);
    assert!(area[..len] == want[..], "payload differs");
    assert!(area[len..].iter().all(|&b| b == 0), "nothing written past the file");
    assert_eq!(w.client.transfer().unwrap().progress().retransmissions, 0);
    assert_eq!(w.client.send_failures(), 0);
    assert!(w.now - T0 < Duration::from_secs(10), "{}", w.now - T0);
}

#[test]
fn lossy_wire_over_smoltcp_then_a_second_transfer() {
    let len = 300_000;
    let mut w = World::new(Content::Pattern(len as u64));
    w.lose_every = 37;
    w.server.faults.stray_every = 5;
    let mut area = vec![0u8; len];
    done(w.fetch(&mut area, 50_000, Config::default()));
    let mut want = vec![0u8; len];
    server::pattern(0, &mut want);
    assert!(area == want);
    let p = w.client.transfer().unwrap().progress();
    assert!(p.retransmissions > 0);
    assert!(p.foreign > 0 && !w.server.log.stray_errors.is_empty(), "strays answered with ERROR 5 over the wire");
    w.server.faults.stray_every = 0;
    // Too small an area: refused by tsize; the client is ready for the next transfer on a new port.
    w.lose_every = 0;
    let mut small = vec![0u8; len - 1];
    assert_eq!(
        w.fetch(&mut small, 50_001, Config::default()),
        Status::Failed(Failure::TooLarge { size: len as u64, capacity: len as u64 - 1, announced: true })
    );
    let mut area = vec![0u8; len];
    done(w.fetch(&mut area, 50_002, plain()));
    assert!(area == want);
    assert!(w.client.stop(&mut w.agent_sockets).is_some());
    assert_eq!(w.client.poll_at(), None);
}
