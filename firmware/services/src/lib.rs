//! The agent's network services over smoltcp, portable so they are tested on the host.
//!
//! * [`identity`]: the board identity record in NOR flash and what follows from it: the agent's MAC,
//!   the MAC the host interface should use, the static address plan.
//! * [`address`]: DHCP with static fallback.
//! * The UDP services, one socket each, and the TCP services, [`POOL`] sockets each: while one
//!   connection lingers (its host gone without a FIN or an RST, e.g. the host's driver reloaded), the
//!   next is accepted; TCP keep-alive ([`KEEP_ALIVE`]) and a timeout ([`TIMEOUT`]) reclaim the lingering
//!   one:
//!
//! | port | protocol | service |
//! | --- | --- | --- |
//! | 7 | UDP, TCP | echo (RFC 862) |
//! | 9 | UDP, TCP | discard (RFC 863): the host → agent benchmark, a [`DISCARD_WINDOW`] window |
//! | 19 | TCP | chargen (RFC 864): the [`pattern`] until the peer closes (agent → host benchmark) |
//! | 5019 | TCP | sized bulk send: the client sends a byte count in ASCII decimal and a newline (`"1048576\n"`, an optional `\r` before the newline), the agent sends exactly that many bytes of the [`pattern`] and closes |
//!
//! ICMP echo and ARP are smoltcp's own, and so are IPv4 fragmentation and reassembly ([`ip`]): ICMP
//! and UDP echo answer datagrams up to the largest IPv4 allows ([`ip::UDP_PAYLOAD_MAX`] bytes of UDP
//! payload) at every MTU. The sockets' buffers and the [`pattern`]'s table live in a
//! [`Storage`] the board keeps in a static: they are far larger than its stack.
#![no_std]
#![forbid(unsafe_code)]

pub mod address;
pub mod identity;
pub mod ip;
pub mod pattern;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpCidr;

pub use address::{Addressing, Assigned, Change, Source, FALLBACK_AFTER};
pub use identity::Identity;

/// Echo (RFC 862), UDP and TCP.
pub const ECHO_PORT: u16 = 7;
/// Discard (RFC 863), UDP and TCP.
pub const DISCARD_PORT: u16 = 9;
/// Character generator (RFC 864), TCP: the [`pattern`] until the peer closes.
pub const CHARGEN_PORT: u16 = 19;
/// Sized bulk send, TCP: a byte count in, that many [`pattern`] bytes out.
pub const SIZED_PORT: u16 = 5019;

/// Sockets per TCP service: one connection is accepted while another lingers. Each is a listening
/// socket until a connection comes; smoltcp gives a SYN to the first listening one.
pub const POOL: usize = 2;
/// Idle time after which a TCP service's connection sends a keep-alive: a host that is gone (its
/// driver reloaded, its stack restarted) answers with an RST or not at all, and then [`TIMEOUT`]
/// reclaims the socket; a live host's ACK keeps the connection however long it is idle.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Silence from the peer after which a TCP service's connection is dropped and its socket listens
/// again: three keep-alives unanswered, or data unacknowledged that long (a host gone mid-transfer).
/// It also bounds a handshake left half-open.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The first TCP echo socket's buffers, each way: the receive side is the window offered to the peer.
/// The first listening socket takes every new connection, so a lone client (the echo benchmark)
/// always has this window.
const ECHO_BUFFER: usize = 64 * 1024;
/// The other echo sockets' buffers, each way: they serve only while the first is busy or lingering,
/// and an echo moves no more than its client sends; a quarter of the window saves 96 KiB each.
const ECHO_SPARE_BUFFER: usize = 16 * 1024;
/// The bulk direction of discard, chargen and sized: the window the host may fill (discard) or the
/// bytes in flight towards it (chargen, sized). 64 KiB keeps a 33 MHz PCI link busy across the
/// host's ACK latency; smoltcp scales the window beyond 65535 by itself.
pub const BULK_BUFFER: usize = 64 * 1024;
/// The discard service's window: the agent acknowledges the segments of one DMA chain only in a
/// later chain, so the window must cover about two chains and the host's turn, or the host waits
/// with the bus idle. smoltcp scales the window beyond 65535 by itself.
pub const DISCARD_WINDOW: usize = 192 * 1024;
/// The quiet direction of the bulk services: a request line, or data they ignore.
const QUIET_BUFFER: usize = 512;
/// UDP payload storage, each way: two of the largest datagrams (a smoltcp packet buffer keeps a
/// datagram contiguous, so one of the largest always fits once the other is taken).
const UDP_BUFFER: usize = 2 * ip::UDP_PAYLOAD_MAX;
/// Datagrams queued each way.
const UDP_PACKETS: usize = 16;
/// The longest request line the sized service accepts: 20 digits (`u64::MAX`), `\r`, `\n`.
pub const REQUEST_MAX: usize = 22;
/// Sockets the services use together: size the [`SocketSet`] with this. UDP echo and discard, the
/// four TCP services' pools, DHCP.
pub const SOCKETS: usize = 2 + 4 * POOL + 1;

/// A bulk send buffer: word-aligned like the [`pattern::Table`], so filling it is a copy of whole
/// words (see [`pattern`]).
#[repr(C, align(4))]
struct BulkTx([u8; BULK_BUFFER]);

/// Storage the services' sockets and the pattern's table live in; static, so it stays off the stack.
pub struct Storage {
    udp_echo_rx: [u8; UDP_BUFFER],
    udp_echo_tx: [u8; UDP_BUFFER],
    udp_discard_rx: [u8; UDP_BUFFER],
    echo_rx: [u8; ECHO_BUFFER],
    echo_tx: [u8; ECHO_BUFFER],
    echo_spare_rx: [[u8; ECHO_SPARE_BUFFER]; POOL - 1],
    echo_spare_tx: [[u8; ECHO_SPARE_BUFFER]; POOL - 1],
    discard_rx: [[u8; DISCARD_WINDOW]; POOL],
    discard_tx: [[u8; QUIET_BUFFER]; POOL],
    chargen_rx: [[u8; QUIET_BUFFER]; POOL],
    chargen_tx: [BulkTx; POOL],
    sized_rx: [[u8; QUIET_BUFFER]; POOL],
    sized_tx: [BulkTx; POOL],
    pattern: pattern::Table,
    scratch: [u8; 2048],
    /// One datagram on its way through the UDP echo.
    udp_scratch: [u8; ip::UDP_PAYLOAD_MAX],
}

impl Storage {
    /// All zeros, so a static of it costs no space in the image (`.bss`).
    pub const fn new() -> Self {
        Storage {
            udp_echo_rx: [0; UDP_BUFFER],
            udp_echo_tx: [0; UDP_BUFFER],
            udp_discard_rx: [0; UDP_BUFFER],
            echo_rx: [0; ECHO_BUFFER],
            echo_tx: [0; ECHO_BUFFER],
            echo_spare_rx: [[0; ECHO_SPARE_BUFFER]; POOL - 1],
            echo_spare_tx: [[0; ECHO_SPARE_BUFFER]; POOL - 1],
            discard_rx: [[0; DISCARD_WINDOW]; POOL],
            discard_tx: [[0; QUIET_BUFFER]; POOL],
            chargen_rx: [[0; QUIET_BUFFER]; POOL],
            chargen_tx: [const { BulkTx([0; BULK_BUFFER]) }; POOL],
            sized_rx: [[0; QUIET_BUFFER]; POOL],
            sized_tx: [const { BulkTx([0; BULK_BUFFER]) }; POOL],
            pattern: pattern::Table::new(),
            scratch: [0; 2048],
            udp_scratch: [0; ip::UDP_PAYLOAD_MAX],
        }
    }
}

/// The UDP sockets' packet metadata: apart from [`Storage`] because its empty value is not all zeros
/// (a static of it is initialised data in the image), and it is small.
pub struct PacketMeta {
    udp_echo_rx: [udp::PacketMetadata; UDP_PACKETS],
    udp_echo_tx: [udp::PacketMetadata; UDP_PACKETS],
    udp_discard_rx: [udp::PacketMetadata; UDP_PACKETS],
}

impl PacketMeta {
    pub const fn new() -> Self {
        PacketMeta {
            udp_echo_rx: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
            udp_echo_tx: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
            udp_discard_rx: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
        }
    }
}

impl Default for PacketMeta {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self::new()
    }
}

/// What the services counted since they started (each wraps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the discard service took in, TCP and UDP.
    pub discarded: u64,
    /// Pattern bytes queued by chargen and the sized service.
    pub bulk_sent: u64,
    /// Sized-service requests refused (not a decimal count and a newline): the connection is reset.
    pub refused_requests: u32,
    /// UDP datagrams the echo service took but could not answer: larger than its buffer, or the reply
    /// refused by the socket (its queue full, or no route back).
    pub udp_dropped: u32,
}

/// What one [`Services::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Data moved or a socket or the address changed: poll again rather than sleep.
    pub busy: bool,
    /// The address changed (and is already applied to the interface).
    pub change: Option<Change>,
}

/// The sized service's connection.
#[derive(Clone, Copy, Debug)]
enum Sized {
    /// Collecting the request line.
    Request { line: [u8; REQUEST_MAX], len: usize },
    /// Sending pattern bytes `offset..total`.
    Sending { offset: u64, total: u64 },
    /// Everything was queued and the connection closed from our side.
    Done,
}

const SIZED_IDLE: Sized = Sized::Request { line: [0; REQUEST_MAX], len: 0 };

/// Why a sized request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// A byte other than a digit before the line's end, or no digit at all.
    Syntax,
    /// More than `u64::MAX` bytes, or a line longer than [`REQUEST_MAX`].
    TooLong,
}

/// Parse a sized-service request: ASCII decimal digits, an optional `\r`, then `\n`. `Ok(None)` while
/// the line is incomplete (and may still become valid); otherwise the count and the bytes consumed.
pub fn parse_request(line: &[u8]) -> Result<Option<(u64, usize)>, RequestError> {
    let mut count: u64 = 0;
    let mut digits = 0usize;
    for (i, &b) in line.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                count = count
                    .checked_mul(10)
                    .and_then(|c| c.checked_add(u64::from(b - b'0')))
                    .ok_or(RequestError::TooLong)?;
                digits += 1;
            }
            b'\n' if digits > 0 => return Ok(Some((count, i + 1))),
            b'\r' if digits > 0 && line.get(i + 1).is_none_or(|&n| n == b'\n') => {}
            _ => return Err(RequestError::Syntax),
        }
    }
    if line.len() >= REQUEST_MAX {
        return Err(RequestError::TooLong);
    }
    Ok(None)
}

/// Every service's sockets, and what moving data between them needs.
pub struct Services<'s> {
    udp_echo: SocketHandle,
    udp_discard: SocketHandle,
    echo: [SocketHandle; POOL],
    discard: [SocketHandle; POOL],
    chargen: [SocketHandle; POOL],
    sized: [SocketHandle; POOL],
    dhcp: SocketHandle,
    addressing: Addressing,
    /// Each chargen connection's position in the pattern.
    chargen_offset: [u64; POOL],
    /// Each sized connection's progress.
    sized_state: [Sized; POOL],
    pattern: pattern::Generator<'s>,
    stats: Stats,
    scratch: &'s mut [u8],
    udp_scratch: &'s mut [u8],
}

/// A TCP service's socket over `rx` and `tx`, set to reclaim itself from a peer gone silent.
fn tcp_socket<'s>(rx: &'s mut [u8], tx: &'s mut [u8]) -> tcp::Socket<'s> {
    let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    // Both survive the socket's resets (listen, close, abort): set once, for every connection.
    socket.set_keep_alive(Some(KEEP_ALIVE));
    socket.set_timeout(Some(TIMEOUT));
    // Acknowledge at once. Across the backplane an ACK is one small frame in a DMA chain that goes
    // anyway; a delayed one leaves the host's window closed and the bus idle at the end of every
    // burst (host to agent at 1500 MTU: 0.75 of the bus with smoltcp's 10 ms delay, 0.91 without).
    socket.set_ack_delay(None);
    socket
}

/// Add a pool of TCP sockets, one per pair of buffers, to `sockets`.
fn add_pool<'s>(
    sockets: &mut SocketSet<'s>,
    buffers: impl Iterator<Item = (&'s mut [u8], &'s mut [u8])>,
) -> [SocketHandle; POOL] {
    let mut handles = [SocketHandle::default(); POOL];
    for (handle, (rx, tx)) in handles.iter_mut().zip(buffers) {
        *handle = sockets.add(tcp_socket(rx, tx));
    }
    handles
}

impl<'s> Services<'s> {
    /// Open every service's sockets in `sockets` (which needs room for [`SOCKETS`]) for a board of
    /// `identity`, taking its static address `fallback_after` after link-up without a DHCP lease.
    /// Fails only if `sockets` is too small.
    pub fn new(
        storage: &'s mut Storage,
        meta: &'s mut PacketMeta,
        sockets: &mut SocketSet<'s>,
        identity: &Identity,
        fallback_after: Duration,
    ) -> Self {
        let mut udp_echo = udp::Socket::new(
            udp::PacketBuffer::new(&mut meta.udp_echo_rx[..], &mut storage.udp_echo_rx[..]),
            udp::PacketBuffer::new(&mut meta.udp_echo_tx[..], &mut storage.udp_echo_tx[..]),
        );
        // Binding a fresh socket to a non-zero port cannot fail.
        let _ = udp_echo.bind(ECHO_PORT);
        let mut udp_discard = udp::Socket::new(
            udp::PacketBuffer::new(&mut meta.udp_discard_rx[..], &mut storage.udp_discard_rx[..]),
            udp::PacketBuffer::new(&mut [][..], &mut [][..]),
        );
        let _ = udp_discard.bind(DISCARD_PORT);
        let mut dhcp = dhcpv4::Socket::new();
        // A DHCP retry is then due when the wait for a lease ends: the board's main loop sleeps until
        // smoltcp's next timer, so this wakes it to take the static address on time. It also bounds
        // how long a server that starts late waits to be asked again.
        let mut retry = dhcp.get_retry_config();
        retry.discover_timeout = fallback_after;
        dhcp.set_retry_config(retry);
        Services {
            udp_echo: sockets.add(udp_echo),
            udp_discard: sockets.add(udp_discard),
            // The big echo socket first: a SYN goes to the first listening socket.
            echo: add_pool(
                sockets,
                core::iter::once((&mut storage.echo_rx[..], &mut storage.echo_tx[..])).chain(
                    storage
                        .echo_spare_rx
                        .iter_mut()
                        .zip(storage.echo_spare_tx.iter_mut())
                        .map(|(r, t)| (&mut r[..], &mut t[..])),
                ),
            ),
            discard: add_pool(
                sockets,
                storage.discard_rx.iter_mut().zip(storage.discard_tx.iter_mut()).map(|(r, t)| (&mut r[..], &mut t[..])),
            ),
            chargen: add_pool(
                sockets,
                storage
                    .chargen_rx
                    .iter_mut()
                    .zip(storage.chargen_tx.iter_mut())
                    .map(|(r, t)| (&mut r[..], &mut t.0[..])),
            ),
            sized: add_pool(
                sockets,
                storage.sized_rx.iter_mut().zip(storage.sized_tx.iter_mut()).map(|(r, t)| (&mut r[..], &mut t.0[..])),
            ),
            dhcp: sockets.add(dhcp),
            addressing: Addressing::new(identity.static_address(), Some(identity.host_address()), fallback_after),
            chargen_offset: [0; POOL],
            sized_state: [SIZED_IDLE; POOL],
            pattern: storage.pattern.build(),
            stats: Stats::default(),
            scratch: &mut storage.scratch[..],
            udp_scratch: &mut storage.udp_scratch[..],
        }
    }

    /// The address in use, if any.
    pub fn address(&self) -> Option<Assigned> {
        self.addressing.current()
    }

    /// Put the address in use on `iface` again: a new interface (built for a new MTU) has none.
    pub fn reapply(&self, iface: &mut Interface) {
        if let Some(assigned) = self.address() {
            apply(iface, assigned);
        }
    }

    /// When the services need a poll even if nothing arrives (the end of the wait for a lease),
    /// beyond smoltcp's own timers.
    pub fn poll_at(&self) -> Option<Instant> {
        self.addressing.poll_at()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// After smoltcp's poll: follow the link (`link_up`: frames can reach the host), apply address
    /// changes to `iface`, and move data between the services' sockets.
    pub fn poll(&mut self, iface: &mut Interface, sockets: &mut SocketSet<'_>, now: Instant, link_up: bool) -> Poll {
        let mut busy = false;
        let dhcp = sockets.get_mut::<dhcpv4::Socket>(self.dhcp);
        if self.addressing.link(now, link_up) {
            // Discover now: what was sent while the link was down went nowhere.
            dhcp.reset();
            busy = true;
        }
        let mut change = dhcp.poll().and_then(|event| self.addressing.dhcp(&event));
        if change.is_none() {
            change = self.addressing.tick(now);
        }
        if let Some(change) = change {
            apply(iface, change.assigned());
            busy = true;
        }

        busy |= self.udp(iface, sockets, now);
        for &h in &self.echo {
            busy |= echo_pass(sockets.get_mut(h), self.scratch);
        }
        for &h in &self.discard {
            busy |= discard_pass(sockets.get_mut(h), &mut self.stats);
        }
        for (&h, offset) in self.chargen.iter().zip(&mut self.chargen_offset) {
            busy |= chargen_pass(sockets.get_mut(h), offset, &self.pattern, &mut self.stats);
        }
        for (&h, state) in self.sized.iter().zip(&mut self.sized_state) {
            busy |= sized_pass(sockets.get_mut(h), state, &self.pattern, &mut self.stats);
        }
        Poll { busy, change }
    }

    fn udp(&mut self, iface: &mut Interface, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let mut busy = false;
        // One echo at a time, and none while the interface has a frame to send now: smoltcp sends a
        // datagram larger than the MTU one fragment per poll, from a single fragmentation buffer that
        // the next such datagram it sends overwrites. "Now" is also a socket with data ready (a TCP
        // transfer): the echo then waits in the receive queue for a later poll. The interface is
        // asked only when there is an echo to send (it asks every socket).
        let echo = sockets.get::<udp::Socket>(self.udp_echo);
        let ready = echo.can_recv() && echo.send_queue() == 0 && iface.poll_at(now, sockets) != Some(Instant::ZERO);
        let echo = sockets.get_mut::<udp::Socket>(self.udp_echo);
        if ready {
            match echo.recv_slice(self.udp_scratch) {
                Ok((n, meta)) => {
                    if echo.send_slice(&self.udp_scratch[..n], meta).is_err() {
                        self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
                    }
                    busy = true;
                }
                Err(udp::RecvError::Truncated) => {
                    self.stats.udp_dropped = self.stats.udp_dropped.wrapping_add(1);
                    busy = true;
                }
                Err(udp::RecvError::Exhausted) => {}
            }
        }
        // Still more to echo: poll again rather than sleep.
        busy |= echo.can_recv();
        let discard = sockets.get_mut::<udp::Socket>(self.udp_discard);
        while let Ok((payload, _)) = discard.recv() {
            self.stats.discarded = self.stats.discarded.wrapping_add(payload.len() as u64);
            busy = true;
        }
        busy
    }
}

/// Put `assigned` on the interface in place of any other address, with its default route.
fn apply(iface: &mut Interface, assigned: Assigned) {
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        // One address in a list just emptied, with room for at least one.
        let _ = addrs.push(IpCidr::Ipv4(assigned.cidr));
    });
    let routes = iface.routes_mut();
    routes.remove_default_ipv4_route();
    if let Some(gateway) = assigned.gateway {
        // The route table was just freed of its default: room for it.
        let _ = routes.add_default_ipv4_route(gateway);
    }
}

/// Listen on `port` again once the last connection is over. True if it did (a state change).
fn relisten(socket: &mut tcp::Socket<'_>, port: u16) -> bool {
    if socket.is_open() {
        return false;
    }
    // Closed or TIME-WAIT: take the next connection (a non-zero port is always accepted).
    let _ = socket.listen(port);
    true
}

/// One pass of the TCP echo: move what was received to the send queue, as much as fits; close
/// when the peer has, listen again once closed. True if anything was moved or the state changed.
fn echo_pass(socket: &mut tcp::Socket<'_>, buf: &mut [u8]) -> bool {
    if relisten(socket, ECHO_PORT) {
        return true;
    }
    let mut moved = false;
    while socket.can_recv() && socket.can_send() {
        let room = (socket.send_capacity() - socket.send_queue()).min(buf.len());
        let n = match socket.recv_slice(&mut buf[..room]) {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        // The room was measured above: all of it is queued.
        let _ = socket.send_slice(&buf[..n]);
        moved = true;
    }
    if !socket.may_recv() && socket.may_send() && !socket.can_recv() {
        // The peer closed its side and everything it sent is queued back: close ours.
        socket.close();
        moved = true;
    }
    moved
}

/// Take and drop whatever `socket` received; the bytes dropped.
fn drain(socket: &mut tcp::Socket<'_>) -> usize {
    let mut total = 0;
    // Consuming in place copies nothing: each call takes one contiguous part of the ring.
    while let Ok(n) = socket.recv(|data| (data.len(), data.len())) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

/// One pass of the TCP discard: drop everything received, close when the peer has.
fn discard_pass(socket: &mut tcp::Socket<'_>, stats: &mut Stats) -> bool {
    if relisten(socket, DISCARD_PORT) {
        return true;
    }
    let n = drain(socket);
    stats.discarded = stats.discarded.wrapping_add(n as u64);
    if !socket.may_recv() && socket.may_send() {
        socket.close();
        return true;
    }
    n > 0
}

/// Queue pattern bytes from `*offset` until `limit` or the send buffer is full; the bytes queued.
fn send_pattern(socket: &mut tcp::Socket<'_>, offset: &mut u64, limit: u64, pattern: &pattern::Generator<'_>) -> usize {
    let mut total = 0;
    while socket.can_send() && *offset < limit {
        let at = *offset;
        // Filled in place, in the send buffer's free contiguous part (twice when it wraps).
        let sent = socket.send(|buf| {
            let n = buf.len().min(usize::try_from(limit - at).unwrap_or(usize::MAX));
            pattern.fill(at, &mut buf[..n]);
            (n, n)
        });
        match sent {
            Ok(n) if n > 0 => {
                *offset += n as u64;
                total += n;
            }
            _ => break,
        }
    }
    total
}

/// One pass of chargen: send the pattern while the peer keeps the connection, ignore its data.
fn chargen_pass(
    socket: &mut tcp::Socket<'_>,
    offset: &mut u64,
    pattern: &pattern::Generator<'_>,
    stats: &mut Stats,
) -> bool {
    if relisten(socket, CHARGEN_PORT) {
        *offset = 0;
        return true;
    }
    let mut busy = drain(socket) > 0;
    if !socket.may_recv() && socket.may_send() {
        // The peer is done: stop generating.
        socket.close();
        return true;
    }
    let sent = send_pattern(socket, offset, u64::MAX, pattern);
    stats.bulk_sent = stats.bulk_sent.wrapping_add(sent as u64);
    busy |= sent > 0;
    busy
}

/// One pass of the sized bulk send.
fn sized_pass(
    socket: &mut tcp::Socket<'_>,
    state: &mut Sized,
    pattern: &pattern::Generator<'_>,
    stats: &mut Stats,
) -> bool {
    if relisten(socket, SIZED_PORT) {
        *state = SIZED_IDLE;
        return true;
    }
    if matches!(socket.state(), tcp::State::Listen | tcp::State::SynReceived) {
        return false;
    }
    let mut busy = false;
    if let Sized::Request { line, len } = state {
        while *len < REQUEST_MAX && socket.can_recv() {
            // Read no further than the line: whatever follows it is not part of the request.
            let room = REQUEST_MAX - *len;
            let Ok(n) = socket.recv(|data| {
                let end = data.iter().take(room).position(|&b| b == b'\n').map_or(data.len().min(room), |i| i + 1);
                line[*len..*len + end].copy_from_slice(&data[..end]);
                (end, end)
            }) else {
                break;
            };
            *len += n;
            busy = true;
            if line[..*len].last() == Some(&b'\n') {
                break;
            }
        }
        match parse_request(&line[..*len]) {
            Ok(Some((total, _))) => *state = Sized::Sending { offset: 0, total },
            Ok(None) if socket.may_recv() => return busy,
            // The peer closed before completing a request: nothing to send.
            Ok(None) => {
                socket.close();
                *state = Sized::Done;
                return true;
            }
            Err(_) => {
                stats.refused_requests = stats.refused_requests.wrapping_add(1);
                socket.abort();
                *state = Sized::Done;
                return true;
            }
        }
    }
    // Anything after the request is ignored, so the window stays open.
    busy |= drain(socket) > 0;
    if let Sized::Sending { offset, total } = state {
        let sent = send_pattern(socket, offset, *total, pattern);
        stats.bulk_sent = stats.bulk_sent.wrapping_add(sent as u64);
        busy |= sent > 0;
        if *offset == *total {
            // Everything is queued: the FIN follows the last byte.
            socket.close();
            *state = Sized::Done;
            busy = true;
        }
    }
    busy
}

#[cfg(test)]
mod tests;
