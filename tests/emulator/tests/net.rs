//! End to end over the data path: the real firmware ELF on the emulated board, the host model
//! ([`bpnet_emu::host`]) in the kernel module's place, ARP and ping against the agent's stack at 10.83.49.2.
//! Frames are built and parsed by hand: Ethernet II, ARP for IPv4, IPv4 without options, ICMP echo.

mod common;

use bpnet_emu::host::{self, HostLink, Params};
use bpnet_emu::netbench::{self, HostStack};
use bpnet_emu::{Board, Config};
use bpnet_test_support::frames::{self, be16, checksum, ETHERTYPE_IPV4};

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const HOST_IP: [u8; 4] = [10, 83, 49, 1];
const AGENT_IP: [u8; 4] = [10, 83, 49, 2];
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
    netbench::wait_for_address(&mut board, &mut link, 0).unwrap_or_else(|e| panic!("{e}"));
    (board, link)
}

fn arp_request() -> Vec<u8> {
    frames::arp_request(HOST_MAC, HOST_IP, AGENT_IP)
}

fn echo_request(agent_mac: [u8; 6], id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    frames::echo_request((HOST_MAC, HOST_IP), (agent_mac, AGENT_IP), id, seq, payload)
}

/// The agent's MAC from an ARP reply to our request, if `f` is one.
fn arp_reply(f: &[u8]) -> Option<[u8; 6]> {
    let r = frames::arp_reply(f)?;
    if r.eth_dst != HOST_MAC || r.sender.1 != AGENT_IP || r.target != (HOST_MAC, HOST_IP) {
        return None;
    }
    assert_eq!(r.eth_src, r.sender.0, "Ethernet source is the sender hardware address");
    Some(r.sender.0)
}

/// (id, seq, payload) of an echo reply from the agent to us, checksums verified.
fn echo_reply(f: &[u8], agent_mac: [u8; 6]) -> Option<(u16, u16, Vec<u8>)> {
    let r = frames::echo_reply(f)?;
    if r.eth_dst != HOST_MAC || r.eth_src != agent_mac || r.ip_src != AGENT_IP || r.ip_dst != HOST_IP {
        return None;
    }
    assert_eq!(checksum(r.ip_header), 0, "IPv4 header checksum");
    let ip_len = f.len() - 14;
    assert!(r.ip_total_len <= ip_len, "IPv4 total length {} beyond the frame's {ip_len}", r.ip_total_len);
    assert_eq!(checksum(r.icmp), 0, "ICMP checksum");
    Some((r.id, r.seq, r.payload.to_vec()))
}

/// Send `frame` and run until a received frame satisfies `want`; other frames are skipped.
fn exchange<T>(board: &mut Board, link: &mut HostLink, frame: &[u8], want: impl FnMut(&[u8]) -> Option<T>) -> T {
    assert!(link.send(board, frame).expect("frame accepted"), "TX ring full");
    host::await_frame(board, link, want, STEPS)
        .unwrap_or_else(|e| panic!("no answer: {e}\nconsole:\n{}", String::from_utf8_lossy(board.console())))
}

#[test]
fn arp_and_ping_over_the_data_path() {
    let (mut board, mut link) = boot();
    assert_eq!(link.stats().setup_bar_reads, 2, "the header and the agent info block");
    assert_eq!(link.dma_reach(), 2 << 30, "the firmware reaches 2 GiB of host bus addresses");

    let agent_mac = exchange(&mut board, &mut link, &arp_request(), arp_reply);
    // No identity record in the flash: serial 0.
    assert_eq!(agent_mac, [0x02, 0x83, 0x49, 0, 0, 0], "the agent's MAC");
    assert_eq!(link.mac(), [0x06, 0x83, 0x49, 0, 0, 0], "the host interface's MAC, from the header");

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

/// A host-side TCP client over the host model, stepped one emulator slice at a time (idle waits pass in
/// virtual time, so timers run).
struct HostTcp {
    stack: HostStack,
    handle: smoltcp::iface::SocketHandle,
}

impl HostTcp {
    /// Connect (SYN queued) to the agent's echo port.
    fn connect(board: &Board, mtu: u16) -> HostTcp {
        let mut stack = HostStack::new(board, mtu);
        let handle = stack.connect(netbench::ECHO_PORT, 49152, 256 * 1024);
        HostTcp { stack, handle }
    }

    fn socket(&mut self) -> &mut smoltcp::socket::tcp::Socket<'static> {
        self.stack.tcp(self.handle)
    }

    fn host_turn(&mut self, board: &mut Board, link: &mut HostLink) {
        let now = netbench::virtual_now(board);
        self.stack.host_turn(board, now, link);
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
        self.stack.dev.rx.extend(got);
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

fn firmware_elf() -> Vec<u8> {
    std::fs::read(common::firmware("BPNET_FIRMWARE_ELF")).expect("firmware ELF readable")
}

/// A TCP echo of `bytes` at `mtu`, verified byte for byte (inside [`netbench::tcp_echo`]); the host copies
/// nothing across the bus and reads the BAR only for the interrupts it asked for (one ODR read each).
fn tcp_echo(bytes: usize, mtu: u16) {
    let wall = std::time::Instant::now();
    let (f, _) = netbench::tcp_echo(&firmware_elf(), bytes, mtu, false).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "tcp echo of {bytes} bytes at MTU {mtu}: {:.2} s wall, {:.0} agent instructions per frame, {} + {} frames, \
         {:.1} MB/s virtual",
        wall.elapsed().as_secs_f64(),
        f.instructions_per_frame(),
        f.frames_to_agent,
        f.frames_to_host,
        f.rate() / 1e6
    );
    assert_eq!(f.host_copied_bytes, 0, "the host moves no payload across the bus");
    assert!(
        f.host_bar_reads <= f.interrupts,
        "BAR reads only for interrupts: {} reads, {} interrupts",
        f.host_bar_reads,
        f.interrupts
    );
    // Frames as large as the MTU allows went both ways: at 1500, full segments are 1514-byte frames.
    assert!(f.frames_to_agent > 0 && f.frames_to_host > 0);
}

#[test]
fn tcp_echo_of_ten_megabytes() {
    tcp_echo(10_000_000, 1500);
}

#[test]
fn tcp_echo_at_mtu_9000() {
    tcp_echo(2 << 20, 9000);
}

#[test]
fn tcp_echo_at_mtu_65535() {
    tcp_echo(2 << 20, 65535);
}

/// Ping with payloads up to the MTU at 9000 and 65535: frames of every size cross both ways, each reply
/// in one frame. The agent's stack sends IP packets of at most `stack_mtu` bytes (the link's MTU rounded
/// down so fragments stay 8-byte aligned: 8996 at 9000), so the largest payload is that less 28.
#[test]
fn ping_up_to_jumbo_mtus() {
    for mtu in [9000u16, 65535] {
        let elf = firmware_elf();
        let params = Params { mtu, buffer_len: (u32::from(mtu) + 14).next_multiple_of(64), ..Params::default() };
        let (mut board, mut link) = netbench::boot(&elf, params).unwrap_or_else(|e| panic!("{e}"));
        let agent_mac = exchange(&mut board, &mut link, &arp_request(), arp_reply);
        let largest = bpnet_services::ip::stack_mtu(usize::from(mtu)) - 28;
        for len in [1472usize, 8972.min(largest), largest] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let request = echo_request(agent_mac, 0x7e57, len as u16, &payload);
            assert_eq!(request.len(), 14 + 28 + len);
            let (_, seq, echoed) = exchange(&mut board, &mut link, &request, |f| echo_reply(f, agent_mac));
            assert_eq!(seq, len as u16);
            assert!(echoed == payload, "{len}-byte payload at MTU {mtu} comes back unchanged");
        }
    }
}

/// A TCP echo in progress: what was sent of `data` and what came back.
struct Echo {
    data: Vec<u8>,
    sent: usize,
    echoed: Vec<u8>,
}

impl Echo {
    fn new(len: usize) -> Echo {
        Echo { data: netbench::pattern(len), sent: 0, echoed: Vec::new() }
    }

    /// Step until `until` bytes came back (or `steps` ran out); send no more than `send_limit`.
    fn pump(&mut self, board: &mut Board, link: &mut HostLink, tcp: &mut HostTcp, send_limit: usize, until: usize) {
        for _ in 0..200_000 {
            if self.echoed.len() >= until {
                return;
            }
            let s = tcp.socket();
            while self.sent < send_limit.min(self.data.len()) && s.can_send() {
                self.sent += s.send_slice(&self.data[self.sent..send_limit.min(self.data.len())]).expect("send");
            }
            while s.can_recv() {
                s.recv(|b| {
                    self.echoed.extend_from_slice(b);
                    (b.len(), ())
                })
                .expect("recv");
            }
            tcp.step(board, link);
        }
        panic!(
            "echo stalled at {} of {until} bytes\nconsole:\n{}",
            self.echoed.len(),
            String::from_utf8_lossy(board.console())
        );
    }
}

/// The host re-initialises the link (DOWN, a new generation, UP) in the middle of a TCP echo: the agent
/// leaves RUNNING, comes back, frames in flight are lost, and TCP's retransmission carries the transfer
/// to the end unchanged.
#[test]
fn host_reinit_mid_transfer_recovers() {
    let elf = firmware_elf();
    let (mut board, mut link) = netbench::boot(&elf, Params::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut tcp = HostTcp::connect(&board, 1500);
    tcp.establish(&mut board, &mut link);
    let mut echo = Echo::new(1 << 20);
    echo.pump(&mut board, &mut link, &mut tcp, 512 << 10, 256 << 10);

    // Mid-transfer, with frames in both rings: re-initialise.
    link.down(&mut board).expect("down");
    let generation = 2;
    let mut link = host::connect(&mut board, Params { generation, ..Params::default() }, 500)
        .unwrap_or_else(|e| panic!("link up again: {e}"));
    host::run_until(&mut board, &mut link, |l| l.is_running(), STEPS).expect("RUNNING again");
    assert_eq!(board_header(&mut board).host_generation(), generation);
    let seen = board_counter(&mut board, bpnet_contract::bar::counter::HOST_RESETS_SEEN);
    assert_eq!(seen, 1, "the agent counted the host's re-initialisation");

    echo.pump(&mut board, &mut link, &mut tcp, usize::MAX, 1 << 20);
    assert!(echo.echoed == echo.data, "the echo is byte for byte what was sent");
}

/// Checksum offload as virtio has it: with the feature, TCP checksums cross the backplane left out
/// both ways and the agent says so (NEEDS_CSUM); without it, both sides compute and verify (the host
/// stack here drops a frame with a wrong checksum, so a wrong one would stall the echo).
#[test]
fn checksums_follow_the_offload_agreement() {
    use bpnet_contract::bar::feature;
    let elf = firmware_elf();
    for offload in [true, false] {
        let features = if offload { feature::ALL } else { feature::ALL & !feature::CSUM_OFFLOAD };
        let (mut board, mut link) =
            netbench::boot(&elf, Params { features, ..Params::default() }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(link.features() & feature::CSUM_OFFLOAD != 0, offload);
        let mut stack = HostStack::with_checksums(&board, 1500, offload);
        let handle = stack.connect(netbench::ECHO_PORT, 49152, 256 * 1024);
        let mut tcp = HostTcp { stack, handle };
        tcp.establish(&mut board, &mut link);
        let mut echo = Echo::new(64 << 10);
        echo.pump(&mut board, &mut link, &mut tcp, usize::MAX, 64 << 10);
        assert!(echo.echoed == echo.data);
        let left_out = link.stats().rx_csum_left_out;
        if offload {
            assert!(left_out > 0, "the agent marks the TCP frames it left the checksum out of");
        } else {
            assert_eq!(left_out, 0, "without offload every checksum is computed");
        }
    }
}

/// The agent is reset in the middle of a TCP echo: its LINK doorbell after booting tells the host,
/// which reads the header (a new agent generation, READY), brings the link up again, and a new
/// connection works; the old one is gone with the agent's memory.
#[test]
fn agent_reset_mid_transfer_link_down_and_up() {
    let elf = firmware_elf();
    let (mut board, mut link) = netbench::boot(&elf, Params::default()).unwrap_or_else(|e| panic!("{e}"));
    let (_, generation_before) = link.agent_state(&mut board).expect("header");
    let mut tcp = HostTcp::connect(&board, 1500);
    tcp.establish(&mut board, &mut link);
    let mut echo = Echo::new(256 << 10);
    echo.pump(&mut board, &mut link, &mut tcp, 128 << 10, 32 << 10);

    let console_from = board.console().len();
    // The LINK of the first boot (READY before the host was there) is old news.
    link.take_link_event();
    board.hard_reset();
    let mut told = false;
    for _ in 0..STEPS {
        // The host stops sending into a link whose agent went away; it only listens.
        HostTcp::agent_turn(&mut board, &mut link);
        if link.take_link_event() {
            told = true;
            break;
        }
    }
    assert!(told, "the agent rang LINK after its reset");
    let (state, generation) = link.agent_state(&mut board).expect("header");
    assert_eq!(state, bpnet_contract::bar::AgentState::Ready);
    assert_ne!(generation, generation_before, "a reset agent has a new generation");

    // Link up again with a fresh host generation; the old connection is gone, a new one echoes.
    let mut link =
        host::connect(&mut board, Params { generation: 2, ..Params::default() }, 500).expect("link up again");
    host::run_until(&mut board, &mut link, |l| l.is_running(), STEPS).expect("RUNNING again");
    netbench::wait_for_address(&mut board, &mut link, console_from).unwrap_or_else(|e| panic!("{e}"));
    tcp.socket().abort();
    tcp.handle = tcp.stack.connect(netbench::ECHO_PORT, 49153, 256 * 1024);
    tcp.establish(&mut board, &mut link);
    let mut echo = Echo::new(256 << 10);
    echo.pump(&mut board, &mut link, &mut tcp, usize::MAX, 256 << 10);
    assert!(echo.echoed == echo.data, "traffic resumes after the agent's reset");
}

fn board_header(board: &mut Board) -> bpnet_contract::bar::Header<[u8; bpnet_contract::bar::HEADER_LEN]> {
    let mut raw = [0u8; bpnet_contract::bar::HEADER_LEN];
    host::Backplane::bar_read(board, bpnet_contract::shared::HEADER_OFFSET, &mut raw).expect("header");
    bpnet_contract::bar::Header::new_unchecked(raw)
}

fn board_counter(board: &mut Board, slot: usize) -> u32 {
    let mut raw = [0u8; 4];
    host::Backplane::bar_read(board, bpnet_contract::shared::COUNTERS_OFFSET + 4 * slot, &mut raw).expect("counter");
    u32::from_le_bytes(raw)
}

/// With no host activity at all, the agent's retransmission timer still runs: the decrementer wakes
/// the sleeping firmware and smoltcp sends the unacknowledged segment again.
#[test]
fn tcp_retransmits_on_the_decrementer_alone() {
    let (mut board, mut link) = boot();
    let mut tcp = HostTcp::connect(&board, 1500);
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

/// The agent's heartbeat word and its `header_repairs` counter, read through the BAR as the module does.
fn heartbeat_and_repairs(board: &mut Board) -> (Option<u32>, u32) {
    use bpnet_contract::{bar, shared};
    use bpnet_emu::host::Backplane;
    let mut header = [0u8; bar::HEADER_LEN];
    board.bar_read(shared::HEADER_OFFSET, &mut header).expect("header readable");
    let mut info = [0u8; bar::AGENT_INFO_LEN];
    board.bar_read(shared::AGENT_INFO_OFFSET, &mut info).expect("agent info readable");
    let minor = bar::Header::new_unchecked(&header[..]).version_minor();
    let beat = bar::parse_heartbeat(minor, &bar::AgentInfo::new_unchecked(&info[..]));
    let mut slot = [0u8; 4];
    board.bar_read(shared::COUNTERS_OFFSET + 4 * bar::counter::HEADER_REPAIRS, &mut slot).expect("counters");
    (beat, u32::from_le_bytes(slot))
}

/// Run the firmware alone (no host activity) for `ms` of virtual time, or until it sleeps with no timer
/// armed (outside RUNNING the agent waits for the host's doorbell).
fn idle_for(board: &mut Board, ms: u64) {
    let until = board.virtual_time_ns() + ms * 1_000_000;
    while board.virtual_time_ns() < until {
        let before = board.virtual_time_ns();
        host::run_slice(board)
            .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", String::from_utf8_lossy(board.console())));
        if board.virtual_time_ns() == before {
            return;
        }
    }
}

/// While RUNNING the agent's timer advances the heartbeat about once a second with nothing else going
/// on; a host that scribbles over the header and the agent info block finds them written again within
/// a second, the repair counted.
#[test]
fn heartbeat_beats_and_a_scribbled_header_is_repaired() {
    use bpnet_contract::{bar, shared};
    use bpnet_emu::host::Backplane;
    let (mut board, _link) = boot();
    let (first, repairs) = heartbeat_and_repairs(&mut board);
    idle_for(&mut board, 3_200);
    let (later, _) = heartbeat_and_repairs(&mut board);
    let (first, later) = (first.expect("a beat while RUNNING"), later.expect("still beating"));
    assert!((3..=4).contains(&later.wrapping_sub(first)), "beats {first} -> {later} in 3.2 s");
    assert_eq!(repairs, 0, "nothing to repair on a clean region");

    let garbage: Vec<u8> = (0..shared::BOOT_OFFSET).map(|i| (i as u8).wrapping_mul(37) ^ 0x5a).collect();
    board.bar_write(shared::HEADER_OFFSET, &garbage).expect("scribble");
    // The agent's next tick finds it; the host's fields are garbage too, so it leaves RUNNING and
    // sleeps until the host re-initialises, its own fields written again first.
    idle_for(&mut board, 1_500);
    let mut header = [0u8; bar::HEADER_LEN];
    board.bar_read(shared::HEADER_OFFSET, &mut header).expect("header readable");
    let header = bar::Header::new_unchecked(&header[..]);
    assert!(
        bar::AgentRepr::parse(&header).is_ok(),
        "the agent's fields are back: {:?}",
        bar::AgentRepr::parse(&header)
    );
    assert!(header.agent_state().is_ok(), "a defined state byte: {:?}", header.agent_state());
    let (beat, repairs) = heartbeat_and_repairs(&mut board);
    assert!(beat.is_some_and(|b| b.wrapping_sub(later) < 3), "the last beat published again: {beat:?} after {later}");
    assert!(repairs >= 1, "the repair is counted: {repairs}");
}
