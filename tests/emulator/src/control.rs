//! The agent's control service (TCP [`control::PORT`]) from the host's side, over the host model:
//! a [`Session`] boots the firmware with a flash file, brings the link up, and talks to the agent
//! through [`HostStack`]; requests are sent as `bpctl` sends them and the response lines parsed with
//! the contract's grammar. A TFTP server ([`TftpHost`], `bpnet-tftp`'s server model) answers the
//! agent's netboot requests at the host's address, at the UDP level below the host's smoltcp.

use std::path::PathBuf;

pub use bpnet_contract::control::Phase;
use bpnet_contract::control::{self, Response};
use bpnet_tftp::server::{Content, Server};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use crate::host::{self, HostLink, Params, RunError};
use crate::netbench::{self, virtual_now, HostStack, AGENT_IP, HOST_IP, HOST_MAC};
use crate::{Board, Config, PS_PER_INSTRUCTION};
use bpnet_test_support::frames::{self, be16, ETHERTYPE_IPV4};

const IPPROTO_UDP: u8 = 17;

/// The TFTP server model on the host's address: datagrams to it are taken out of the frames the
/// agent sends before the host's smoltcp sees them, and its answers are queued to the agent as
/// frames (Ethernet, IPv4, UDP with its checksum).
pub struct TftpHost {
    pub server: Server,
    agent_mac: Option<[u8; 6]>,
    /// Datagrams taken and sent.
    pub datagrams_in: u64,
    pub datagrams_out: u64,
}

impl Default for TftpHost {
    fn default() -> Self {
        Self::new()
    }
}

/// The UDP datagram in an Ethernet frame from the agent to the host: (source endpoint, destination
/// port, payload); `None` for anything else (or a fragment).
fn udp_to_host(frame: &[u8]) -> Option<(IpEndpoint, u16, &[u8])> {
    if frame.len() < 14 + 20 + 8 || be16(frame, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0xF) * 4;
    let total = usize::from(be16(ip, 2));
    let fragment = be16(ip, 6) & 0x3FFF;
    if ip[0] >> 4 != 4 || ihl < 20 || total > ip.len() || total < ihl + 8 || ip[9] != IPPROTO_UDP || fragment != 0 {
        return None;
    }
    if ip[16..20] != HOST_IP.octets() {
        return None;
    }
    let udp = &ip[ihl..total];
    let len = usize::from(be16(udp, 4));
    if len < 8 || len > udp.len() {
        return None;
    }
    let src = Ipv4Address::new(ip[12], ip[13], ip[14], ip[15]);
    Some((IpEndpoint::new(IpAddress::Ipv4(src), be16(udp, 0)), be16(udp, 2), &udp[8..len]))
}

/// A UDP datagram in an Ethernet frame, with its checksum.
fn udp_frame(dst_mac: [u8; 6], src_port: u16, to: IpEndpoint, payload: &[u8]) -> Vec<u8> {
    let IpAddress::Ipv4(dst) = to.addr;
    let len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(usize::from(len));
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&to.port.to_be_bytes());
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12 + udp.len());
    pseudo.extend_from_slice(&HOST_IP.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let c = match frames::checksum(&pseudo) {
        0 => 0xFFFF,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    frames::ethernet(
        dst_mac,
        HOST_MAC,
        ETHERTYPE_IPV4,
        &frames::ipv4(HOST_IP.octets(), dst.octets(), IPPROTO_UDP, &udp),
    )
}

impl TftpHost {
    pub fn new() -> TftpHost {
        TftpHost { server: Server::new(IpAddress::Ipv4(HOST_IP)), agent_mac: None, datagrams_in: 0, datagrams_out: 0 }
    }

    pub fn add_file(&mut self, name: &str, content: Vec<u8>) {
        self.server.add_file(name.as_bytes(), Content::Bytes(content));
    }

    fn queue(&mut self, stack: &mut HostStack, out: Vec<bpnet_tftp::server::Out>) {
        let Some(mac) = self.agent_mac else { return };
        for o in out {
            stack.dev.tx.push_back(udp_frame(mac, o.from_port, o.to, &o.packet));
            self.datagrams_out += 1;
        }
    }

    /// Take the server's datagrams out of what the agent sent, answer them, and let the server's
    /// timers run. True if anything moved.
    pub fn turn(&mut self, stack: &mut HostStack, now: Instant) -> bool {
        let mut rest = std::collections::VecDeque::with_capacity(stack.dev.rx.len());
        let mut moved = false;
        while let Some(frame) = stack.dev.rx.pop_front() {
            let Some((from, port, payload)) = udp_to_host(&frame) else {
                rest.push_back(frame);
                continue;
            };
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&frame[6..12]);
            self.agent_mac = Some(mac);
            self.datagrams_in += 1;
            moved = true;
            let out = self.server.receive(now, payload, from, port);
            self.queue(stack, out);
        }
        stack.dev.rx = rest;
        if self.server.poll_at().is_some_and(|at| at <= now) {
            let out = self.server.tick(now);
            moved |= !out.is_empty();
            self.queue(stack, out);
        }
        moved
    }
}

/// The longest the agent runs without the host acting when the host has no timer of its own.
const HOST_IDLE_MAX_US: u64 = 100_000;

/// [`netbench::agent_turn`] with a budget of `instructions` before the host acts again.
fn agent_turn_for(board: &mut Board, link: &mut HostLink, instructions: u64) -> Result<(), RunError> {
    board.set_stop_at_wait(true);
    board.set_max_instructions(None);
    board.set_turn_end(Some(board.instructions() + instructions));
    let outcome = board.run();
    board.set_turn_end(None);
    board.set_stop_at_wait(false);
    match outcome {
        crate::Outcome::Idle { .. } | crate::Outcome::InstructionLimit => {}
        other => return Err(RunError::Board(other)),
    }
    link.poll(board)?;
    Ok(())
}

/// What the agent answered to one request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Every line, as received.
    pub lines: Vec<String>,
    /// The PROGRESS lines, parsed.
    pub progress: Vec<(Phase, u64, u64)>,
}

impl Reply {
    /// The final line (OK or ERROR).
    pub fn last(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }

    pub fn is_ok(&self) -> bool {
        self.last().starts_with("OK")
    }

    /// A field of the OK line.
    pub fn field(&self, key: &str) -> Option<String> {
        match Response::parse(self.last().as_bytes()) {
            Ok(Response::Ok(fields)) => fields.get(key).map(str::to_owned),
            _ => None,
        }
    }

    /// The code of the ERROR line.
    pub fn error_code(&self) -> Option<control::ErrorCode> {
        match Response::parse(self.last().as_bytes()) {
            Ok(Response::Error { code, .. }) => Some(code),
            _ => None,
        }
    }
}

/// A request in flight ([`Session::open`]).
pub struct Pending {
    sock: smoltcp::iface::SocketHandle,
    out: Vec<u8>,
    sent: usize,
    text: Vec<u8>,
    pub reply: Reply,
}

/// The firmware on a board with a flash file, the link up, the host's stack and TFTP server.
pub struct Session {
    pub board: Board,
    pub link: HostLink,
    pub stack: HostStack,
    pub tftp: TftpHost,
    next_port: u16,
    /// Let the agent sleep up to the host's next timer in one round (see [`Session::turn`]); off,
    /// the host acts every [`netbench::HOST_TURN_INSTRUCTIONS`] as in the data-path benchmarks, which
    /// keeps a busy agent (verifying an image) from holding back what it already sent.
    pub idle_skip: bool,
    /// Where the agent's console stood when this program started.
    pub console_from: usize,
}

fn console(board: &Board) -> String {
    String::from_utf8_lossy(board.console()).into_owned()
}

impl Session {
    /// Boot `elf` with `flash_file` (a temporary erased flash if `None`), bring the link up at the
    /// default MTU and wait until the agent has its address.
    pub fn boot(elf: &[u8], flash_file: Option<PathBuf>) -> Result<Session, String> {
        Self::boot_with(elf, flash_file, Params::default())
    }

    pub fn boot_with(elf: &[u8], flash_file: Option<PathBuf>, params: Params) -> Result<Session, String> {
        let mut board = Board::new(Config { flash_file, ..Config::default() }).map_err(|e| format!("board: {e}"))?;
        board.load_elf(elf).map_err(|e| format!("firmware: {e}"))?;
        Self::start(board, params)
    }

    /// A board already loaded (the firmware directly, or a boot stage that starts it from flash):
    /// bring the link up and wait until the agent has its address.
    pub fn start(mut board: Board, params: Params) -> Result<Session, String> {
        let mtu = params.mtu;
        let mut link =
            host::connect(&mut board, params, 500).map_err(|e| format!("link up: {e}\n{}", console(&board)))?;
        host::run_until(&mut board, &mut link, |l| l.is_running(), 200)
            .map_err(|e| format!("agent RUNNING: {e}\n{}", console(&board)))?;
        netbench::wait_for_address(&mut board, &mut link, 0)?;
        let stack = HostStack::new(&board, mtu);
        Ok(Session { board, link, stack, tftp: TftpHost::new(), next_port: 49_300, idle_skip: true, console_from: 0 })
    }

    /// After the agent started another program (RESET, NETBOOT): bring the link up again, as the
    /// module does when the agent's generation changes, and wait for the new program's address (its
    /// console from byte `console_from` on). The host's stack starts afresh.
    pub fn reconnect(&mut self, console_from: usize) -> Result<(), String> {
        let params = Params::default();
        let mtu = params.mtu;
        self.link = host::connect(&mut self.board, params, 2000)
            .map_err(|e| format!("link up again: {e}\n{}", console(&self.board)))?;
        host::run_until(&mut self.board, &mut self.link, |l| l.is_running(), 200)
            .map_err(|e| format!("agent RUNNING again: {e}\n{}", console(&self.board)))?;
        netbench::wait_for_address(&mut self.board, &mut self.link, console_from)?;
        self.stack = HostStack::new(&self.board, mtu);
        self.console_from = console_from;
        Ok(())
    }

    /// One round: the host's stack and TFTP server act, then the agent until it waits. With
    /// [`Session::idle_skip`], the round lasts until the host's next timer (TCP, the TFTP server's
    /// retransmission) rather than [`netbench::HOST_TURN_INSTRUCTIONS`]: the host still acts as soon
    /// as the agent waits, and the NETBOOT retries' seconds of backoff pass in a few rounds.
    pub fn turn(&mut self) -> Result<(), String> {
        let now = virtual_now(&self.board);
        self.tftp.turn(&mut self.stack, now);
        let busy = self.stack.host_turn(&mut self.board, now, &mut self.link);
        self.link.set_interrupts(!busy);
        let host_next = [self.stack.iface.poll_at(now, &self.stack.sockets), self.tftp.server.poll_at()]
            .into_iter()
            .flatten()
            .min();
        let idle_us = match host_next {
            Some(at) if at > now => (at - now).total_micros(),
            Some(_) => 0,
            None => HOST_IDLE_MAX_US,
        }
        .min(HOST_IDLE_MAX_US);
        let budget = if self.idle_skip {
            (idle_us * 1_000_000 / PS_PER_INSTRUCTION).max(netbench::HOST_TURN_INSTRUCTIONS)
        } else {
            netbench::HOST_TURN_INSTRUCTIONS
        };
        agent_turn_for(&mut self.board, &mut self.link, budget).map_err(|e| self.fail(e))?;
        self.stack.take_received(&mut self.link);
        Ok(())
    }

    fn fail(&self, e: RunError) -> String {
        format!("{e}\nconsole:\n{}", console(&self.board))
    }

    /// Open a connection to the control service and queue `line` and `body` after it; [`Session::pump`]
    /// moves the data, [`Session::close`] ends it.
    pub fn open(&mut self, line: &[u8], body: &[u8]) -> Pending {
        self.next_port = if self.next_port >= 65_000 { 49_300 } else { self.next_port + 1 };
        let sock = self.stack.connect(control::PORT, self.next_port, 256 * 1024);
        Pending { sock, out: [line, body].concat(), sent: 0, text: Vec::new(), reply: Reply::default() }
    }

    /// Move what the host's socket can take and collect the lines received (no round is run):
    /// `Some(Ok)` once the final line has come and the agent closed, `Some(Err)` if the connection
    /// closed without one.
    pub fn pump(&mut self, p: &mut Pending) -> Option<Result<(), String>> {
        let s = self.stack.tcp(p.sock);
        while p.sent < p.out.len() && s.can_send() {
            match s.send_slice(&p.out[p.sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => p.sent += n,
            }
        }
        while s.can_recv() {
            let _ = s.recv(|b| {
                p.text.extend_from_slice(b);
                (b.len(), ())
            });
        }
        while let Some(i) = p.text.iter().position(|&b| b == b'\n') {
            let l: Vec<u8> = p.text.drain(..=i).collect();
            if let Ok(Response::Progress { phase, done, total }) = Response::parse(&l) {
                p.reply.progress.push((phase, done, total));
            }
            p.reply.lines.push(String::from_utf8_lossy(&l[..l.len() - 1]).into_owned());
        }
        let state = s.state();
        let finished = p.reply.lines.last().is_some_and(|l| l.starts_with("OK") || l.starts_with("ERROR"));
        if finished && (!s.may_recv() || matches!(state, tcp::State::Closed | tcp::State::TimeWait)) {
            return Some(Ok(()));
        }
        if matches!(state, tcp::State::Closed) && p.sent > 0 {
            return Some(Err(format!("connection closed without a final line: {:?}", p.reply.lines)));
        }
        None
    }

    /// Done with the connection: a reset (RST) rather than the FIN exchange, so nothing more of the
    /// agent's has to run (it may be resetting or starting another program once the connection is
    /// gone). The RST is handed to the agent now, and the socket freed.
    pub fn close(&mut self, p: Pending) -> Reply {
        self.stack.tcp(p.sock).abort();
        let now = virtual_now(&self.board);
        self.stack.host_turn(&mut self.board, now, &mut self.link);
        self.stack.sockets.remove(p.sock);
        p.reply
    }

    /// Pump `p` and run rounds until its answer is complete and the agent has closed (at most
    /// `max_turns` rounds); the connection stays open until [`Session::close`].
    pub fn await_answer(&mut self, p: &mut Pending, max_turns: u64) -> Result<(), String> {
        for _ in 0..max_turns {
            match self.pump(p) {
                Some(done) => return done,
                None => self.turn()?,
            }
        }
        Err(format!(
            "no complete answer after {max_turns} rounds ({} bytes sent of {}), lines {:?}\nconsole:\n{}\nlog:\n{}",
            p.sent,
            p.out.len(),
            p.reply.lines,
            console(&self.board),
            self.board.log_lines().join("\n")
        ))
    }

    /// Send `line` (and `body` after it) on a new connection to the control service and collect the
    /// answer until the agent closes; at most `max_turns` rounds.
    pub fn request(&mut self, line: &[u8], body: &[u8], max_turns: u64) -> Result<Reply, String> {
        let mut p = self.open(line, body);
        let done = self.await_answer(&mut p, max_turns);
        let reply = self.close(p);
        done.map(|()| reply)
    }

    /// The agent's MAC: the host's with the locally administered unicast prefix 02 (its identity's
    /// serial in the low bytes of both).
    fn agent_mac(&self) -> [u8; 6] {
        let m = self.link.mac();
        [0x02, m[1], m[2], m[3], m[4], m[5]]
    }

    /// Queue an ICMP echo request (sequence `seq`) to the agent.
    pub fn send_ping(&mut self, seq: u16) {
        let req = frames::echo_request(
            (HOST_MAC, HOST_IP.octets()),
            (self.agent_mac(), AGENT_IP.octets()),
            0xC7,
            seq,
            b"ctl",
        );
        self.stack.dev.tx.push_back(req);
    }

    /// Take the echo reply to `seq` if it has come (before the host's stack sees it).
    pub fn take_pong(&mut self, seq: u16) -> bool {
        let pos = self.stack.dev.rx.iter().position(|f| frames::echo_reply(f).is_some_and(|r| r.seq == seq));
        pos.map(|i| self.stack.dev.rx.remove(i)).is_some()
    }

    /// Ping the agent (ICMP echo, sequence `seq`) and wait for the reply.
    pub fn ping(&mut self, seq: u16) -> Result<(), String> {
        self.send_ping(seq);
        for _ in 0..20_000 {
            if self.take_pong(seq) {
                return Ok(());
            }
            self.turn()?;
        }
        Err(format!("no echo reply to {seq}\nconsole:\n{}", console(&self.board)))
    }
}
