//! End to end over the data path: the real firmware ELF on the emulated board, the host model
//! ([`bpnet_emu::host`]) in the kernel module's place, ARP and ping against the agent's stack at 10.83.49.2.
//! Frames are built and parsed by hand: Ethernet II, ARP for IPv4, IPv4 without options, ICMP echo.

mod common;

use bpnet_emu::host::{self, HostLink, Params};
use bpnet_emu::{Board, Config};

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const HOST_IP: [u8; 4] = [10, 83, 49, 1];
const AGENT_IP: [u8; 4] = [10, 83, 49, 2];
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
/// Emulator slices to wait for one answer: generous, a reply takes a few.
const STEPS: usize = 200;

fn boot() -> (Board, HostLink) {
    let elf = std::fs::read(common::firmware("BPNET_FIRMWARE_ELF")).expect("firmware ELF readable");
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

/// The host's smoltcp device: frames queue here both ways and the test loop carries them over the
/// [`HostLink`], so smoltcp never needs the board.
#[derive(Default)]
struct Queues {
    to_agent: std::collections::VecDeque<Vec<u8>>,
    from_agent: std::collections::VecDeque<Vec<u8>>,
}

struct QueueRx(Vec<u8>);

impl smoltcp::phy::RxToken for QueueRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct QueueTx<'a>(&'a mut std::collections::VecDeque<Vec<u8>>);

impl smoltcp::phy::TxToken for QueueTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl smoltcp::phy::Device for Queues {
    type RxToken<'a> = QueueRx;
    type TxToken<'a> = QueueTx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(QueueRx, QueueTx<'_>)> {
        let frame = self.from_agent.pop_front()?;
        Some((QueueRx(frame), QueueTx(&mut self.to_agent)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<QueueTx<'_>> {
        Some(QueueTx(&mut self.to_agent))
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut caps = smoltcp::phy::DeviceCapabilities::default();
        caps.medium = smoltcp::phy::Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The board's virtual time as the host's clock: both sides agree on how long things took.
fn virtual_now(board: &Board) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((board.virtual_time_ns() / 1000) as i64)
}

/// A pattern that does not repeat with any period a lost or duplicated segment could hide behind.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A host-side TCP client (smoltcp at 10.83.49.1) over the host model, driven slice by slice.
struct HostTcp {
    iface: smoltcp::iface::Interface,
    dev: Queues,
    sockets: smoltcp::iface::SocketSet<'static>,
    handle: smoltcp::iface::SocketHandle,
    /// Frames handed to the agent.
    frames: u64,
}

impl HostTcp {
    /// Connect (SYN queued) to the agent's echo port. Buffers are leaked: a test lives shorter than that.
    fn connect(board: &Board) -> HostTcp {
        use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
        use smoltcp::socket::tcp;
        use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

        let mut dev = Queues::default();
        let mut config = IfaceConfig::new(EthernetAddress(HOST_MAC).into());
        config.random_seed = 0x0bad_5eed;
        let mut iface = Interface::new(config, &mut dev, virtual_now(board));
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(10, 83, 49, 1), 24)).unwrap());
        let buffer = || tcp::SocketBuffer::new(&mut Box::leak(vec![0u8; 64 * 1024].into_boxed_slice())[..]);
        let storage = Box::leak(Box::new([SocketStorage::EMPTY; 1]));
        let mut sockets = SocketSet::new(&mut storage[..]);
        let handle = sockets.add(tcp::Socket::new(buffer(), buffer()));
        let agent = (Ipv4Address::new(AGENT_IP[0], AGENT_IP[1], AGENT_IP[2], AGENT_IP[3]), 7);
        sockets.get_mut::<tcp::Socket>(handle).connect(iface.context(), agent, 49152).expect("connect");
        HostTcp { iface, dev, sockets, handle, frames: 0 }
    }

    fn socket(&mut self) -> &mut smoltcp::socket::tcp::Socket<'static> {
        self.sockets.get_mut(self.handle)
    }

    /// Let smoltcp act and hand what it built to the agent, as far as the TX ring takes it.
    fn host_turn(&mut self, board: &mut Board, link: &mut HostLink) {
        self.iface.poll(virtual_now(board), &mut self.dev, &mut self.sockets);
        while let Some(frame) = self.dev.to_agent.front() {
            if !link.send(board, frame).expect("frame accepted") {
                break;
            }
            self.dev.to_agent.pop_front();
            self.frames += 1;
        }
    }

    /// One slice of the agent, then what it sent, in order.
    fn agent_turn(board: &mut Board, link: &mut HostLink) -> Vec<Vec<u8>> {
        host::run_slice(board)
            .unwrap_or_else(|e| panic!("board: {e}\nconsole:\n{}", String::from_utf8_lossy(board.console())));
        link.poll(board).expect("link poll");
        std::iter::from_fn(|| link.recv()).collect()
    }

    /// Host turn, agent turn, and the agent's frames back to smoltcp.
    fn step(&mut self, board: &mut Board, link: &mut HostLink) {
        self.host_turn(board, link);
        let got = Self::agent_turn(board, link);
        self.dev.from_agent.extend(got);
    }

    /// Step until the handshake is done.
    fn establish(&mut self, board: &mut Board, link: &mut HostLink) {
        for _ in 0..STEPS {
            if self.socket().may_send() {
                return;
            }
            self.step(board, link);
        }
        panic!("no connection: {:?}\nconsole:\n{}", self.socket().state(), String::from_utf8_lossy(board.console()));
    }
}

/// (sequence number, payload) of a TCP segment from the agent's echo port to us, if `f` is one.
fn tcp_segment(f: &[u8]) -> Option<(u32, Vec<u8>)> {
    if f.len() < 54 || be16(f, 12) != ETHERTYPE_IPV4 || f[..6] != HOST_MAC {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    if ip[9] != 6 || ip[12..16] != AGENT_IP {
        return None;
    }
    let total = usize::from(be16(ip, 2));
    let tcp = &ip[ihl..total];
    if be16(tcp, 0) != 7 {
        return None;
    }
    let offset = usize::from(tcp[12] >> 4) * 4;
    Some((u32::from_be_bytes(tcp[4..8].try_into().unwrap()), tcp[offset..].to_vec()))
}

/// Bytes pushed through the agent's TCP echo: 1 MiB.
const TCP_BYTES: usize = 1 << 20;

#[test]
fn tcp_echo_of_one_mebibyte() {
    let (mut board, mut link) = boot();
    let mut tcp = HostTcp::connect(&board);
    tcp.establish(&mut board, &mut link);

    let data = pattern(TCP_BYTES);
    let mut echoed = Vec::with_capacity(TCP_BYTES);
    let mut sent = 0usize;
    let reads = board.host_bar_reads();
    let frames = tcp.frames;
    let (instructions, skipped) = (board.instructions(), board.skipped_instructions());
    let received = link.stats().rx_frames;
    let decrementers = |board: &Board| board.exceptions().iter().filter(|e| e.vector == 0x900).count();
    let timer_wakeups = decrementers(&board);
    let wall = std::time::Instant::now();
    let mut steps = 0usize;
    while echoed.len() < TCP_BYTES {
        steps += 1;
        assert!(steps < 100_000, "stalled at {} of {TCP_BYTES} bytes echoed", echoed.len());
        tcp.iface.poll(virtual_now(&board), &mut tcp.dev, &mut tcp.sockets);
        let s = tcp.socket();
        while sent < TCP_BYTES && s.can_send() {
            sent += s.send_slice(&data[sent..]).expect("send");
        }
        while s.can_recv() {
            s.recv(|b| {
                echoed.extend_from_slice(b);
                (b.len(), ())
            })
            .expect("recv");
        }
        tcp.step(&mut board, &mut link);
    }
    let timer_wakeups = decrementers(&board) - timer_wakeups;
    let executed = (board.instructions() - instructions) - (board.skipped_instructions() - skipped);
    let (to_agent, from_agent) = (tcp.frames - frames, link.stats().rx_frames - received);
    eprintln!(
        "tcp echo: {TCP_BYTES} bytes in {:.2} s wall, {} slices; agent executed {executed} instructions for \
         {to_agent} frames in and {from_agent} out: {} per frame pair; {timer_wakeups} decrementer wake-ups",
        wall.elapsed().as_secs_f64(),
        steps,
        executed / to_agent.max(from_agent).max(1),
    );
    assert!(echoed == data, "the echo differs from what was sent");
    assert_eq!(board.host_bar_reads() - reads, 0, "the transfer reads nothing across the bus");
    let stats = link.stats();
    assert_eq!((stats.tx_errors, stats.rx_errors), (0, 0));
}

/// With no host activity at all, the agent's retransmission timer still runs: the decrementer wakes
/// the sleeping firmware and smoltcp sends the unacknowledged segment again.
#[test]
fn tcp_retransmits_on_the_decrementer_alone() {
    let (mut board, mut link) = boot();
    let mut tcp = HostTcp::connect(&board);
    tcp.establish(&mut board, &mut link);

    tcp.socket().send_slice(b"are you there?").expect("send");
    tcp.host_turn(&mut board, &mut link);
    // The echo is lost on its way to the host: smoltcp never sees it, so it is never acknowledged.
    let mut first = None;
    for _ in 0..STEPS {
        first =
            HostTcp::agent_turn(&mut board, &mut link).iter().find_map(|f| tcp_segment(f).filter(|s| !s.1.is_empty()));
        if first.is_some() {
            break;
        }
    }
    let first = first.expect("the agent echoes");
    assert_eq!(first.1, b"are you there?");

    // From here the host neither sends nor rings: only the agent's timer can produce the next frame.
    let doorbells = link.stats().doorbells;
    let decrementers = board.exceptions().iter().filter(|e| e.vector == 0x900).count();
    let start = board.virtual_time_ns();
    let mut again = None;
    // A slice skips at most its own length of idle time (~4 ms of virtual time): enough slices for
    // several seconds, well past smoltcp's first retransmission timeout.
    for _ in 0..2000 {
        again =
            HostTcp::agent_turn(&mut board, &mut link).iter().find_map(|f| tcp_segment(f).filter(|s| !s.1.is_empty()));
        if again.is_some() {
            break;
        }
    }
    let again =
        again.unwrap_or_else(|| panic!("no retransmission\nconsole:\n{}", String::from_utf8_lossy(board.console())));
    assert_eq!(again, first, "the same segment, sent again");
    assert_eq!(link.stats().doorbells, doorbells, "nothing rang the agent");
    assert!(
        board.exceptions().iter().filter(|e| e.vector == 0x900).count() > decrementers,
        "the decrementer woke the agent"
    );
    eprintln!("tcp retransmission after {} ms virtual", (board.virtual_time_ns() - start) / 1_000_000);
}
