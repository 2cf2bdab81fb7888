//! A TFTP server model at the UDP level, for tests: it takes datagrams and ticks with the time they
//! happen at and returns the datagrams it sends, each with the port it comes from. It serves read
//! requests as a standard server does (a new port per transfer, the options of RFC 2347–2349 and
//! 7440 up to what it allows, windows, retransmission on timeout, block numbers rolling over to 0)
//! and misbehaves on purpose as its [`Faults`] say.

use std::vec;
use std::vec::Vec;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::wire::{ErrorCode, Options, Repr, DEFAULT_BLKSIZE, SERVER_PORT};

/// A stray copy of a DATA packet (fault [`Faults::stray_every`]) comes from its transfer's port plus this.
pub const STRAY_PORT_OFFSET: u16 = 1000;
/// The first transfer's port; each new one takes the next.
pub const FIRST_PORT: u16 = 40_000;

/// Word `n` of the test pattern (splitmix64): neighbouring blocks, and the same block 65536 blocks
/// apart, all differ, so a misplaced or wrapped block is seen.
fn pattern_word(n: u64) -> u64 {
    let mut z = n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `buf` with the pattern's bytes from `offset`: byte `i` is byte `i % 8` of word `i / 8`,
/// little-endian. Whole words at a time where aligned, so tens of MiB stay quick in a debug build.
pub fn pattern(offset: u64, buf: &mut [u8]) {
    let mut at = offset;
    let mut rest = &mut buf[..];
    while !at.is_multiple_of(8) && !rest.is_empty() {
        rest[0] = pattern_word(at / 8).to_le_bytes()[(at % 8) as usize];
        rest = &mut rest[1..];
        at += 1;
    }
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&pattern_word(at / 8).to_le_bytes());
        at += 8;
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b = pattern_word(at / 8).to_le_bytes()[i];
    }
}

/// A file's contents.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// `len` bytes of [`pattern`]: large files without the memory.
    Pattern(u64),
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Pattern(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self, offset: u64, buf: &mut [u8]) {
        match self {
            Content::Bytes(b) => buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]),
            Content::Pattern(_) => pattern(offset, buf),
        }
    }
}

/// What the server does wrong, on purpose. "One in n" is drawn at random (from [`Faults::seed`], so
/// a run repeats exactly): a fixed period would hit the same block of every window sent again when
/// it divides the window, which no network does and no client could get through. 0 is never.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Serve requests with options as plain RFC 1350 (no OACK).
    pub ignore_options: bool,
    /// Answer a request with options with ERROR 8.
    pub refuse_options: bool,
    /// Put this blksize in the OACK whatever was asked.
    pub oack_blksize: Option<u16>,
    /// Announce this tsize instead of the file's.
    pub tsize: Option<u64>,
    /// Serve only the first this many bytes (the tsize stays the file's).
    pub truncate_to: Option<u64>,
    /// Lose one DATA sent in n.
    pub lose_data_every: u64,
    /// Lose one ACK received in n.
    pub lose_ack_every: u64,
    /// Send one DATA in n twice.
    pub duplicate_every: u64,
    /// Send one DATA in n after the one that follows it.
    pub reorder_every: u64,
    /// Also send one DATA in n from a port that is not the transfer's.
    pub stray_every: u64,
    /// Where the random choices start.
    pub seed: u64,
    /// Send ERROR 2 in place of this block and end the transfer.
    pub error_at: Option<u64>,
    /// Never send a block after this one (the server hangs).
    pub stall_after: Option<u64>,
    /// Server-side limit on the window (0: 65535).
    pub max_windowsize: u16,
}

/// A datagram the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub from_port: u16,
    pub to: IpEndpoint,
    pub packet: Vec<u8>,
}

/// What the server saw.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// The options of every read request, in order.
    pub requests: Vec<Options>,
    /// ERRORs the client sent to a transfer's port: (port, code).
    pub errors: Vec<(u16, ErrorCode)>,
    /// ERRORs the client sent to a stray port (its answer to a wrong transfer ID).
    pub stray_errors: Vec<ErrorCode>,
    /// DATA packets put on the wire (after losses, with duplicates and stray copies).
    pub data_sent: u64,
    /// Transfers whose last block was ACKed.
    pub completed: u32,
    /// Transfers given up after too many retransmissions.
    pub abandoned: u32,
}

#[derive(Clone, Debug)]
struct Session {
    client: IpEndpoint,
    port: u16,
    file: usize,
    /// Bytes served (the file's, or less if truncated).
    len: u64,
    blksize: u16,
    windowsize: u16,
    timeout: Duration,
    /// The OACK, while it waits for ACK 0.
    oack: Option<Options>,
    /// The last block ACKed.
    acked: u64,
    /// The highest block sent.
    sent: u64,
    deadline: Instant,
    retries: u32,
}

impl Session {
    /// The number of the last block (the short one, maybe empty).
    fn last(&self) -> u64 {
        self.len / u64::from(self.blksize) + 1
    }
}

/// The server.
pub struct Server {
    pub addr: IpAddress,
    pub faults: Faults,
    /// Retransmissions without an answer before a transfer is given up.
    pub retries: u32,
    pub log: Log,
    files: Vec<(Vec<u8>, Content)>,
    sessions: Vec<Session>,
    next_port: u16,
    /// The random choices' state (xorshift64*).
    rng: u64,
}

impl Server {
    pub fn new(addr: IpAddress) -> Server {
        Server {
            addr,
            faults: Faults::default(),
            retries: 5,
            log: Log::default(),
            files: Vec::new(),
            sessions: Vec::new(),
            next_port: FIRST_PORT,
            rng: 0,
        }
    }

    /// True one time in `n` (never for 0).
    fn one_in(&mut self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        if self.rng == 0 {
            // xorshift must not start at 0.
            self.rng = self.faults.seed ^ 0x2545_F491_4F6C_DD1D;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).is_multiple_of(n)
    }

    pub fn add_file(&mut self, name: &[u8], content: Content) {
        self.files.push((name.to_vec(), content));
    }

    /// The ports the server may send from or receive at besides [`SERVER_PORT`]: `count` transfers'
    /// ports and their stray ports (a socket-based harness binds these).
    pub fn ports(count: u16) -> impl Iterator<Item = u16> {
        (0..count).flat_map(|i| [FIRST_PORT + i, FIRST_PORT + i + STRAY_PORT_OFFSET])
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    /// When [`Server::tick`] has retransmissions to do.
    pub fn poll_at(&self) -> Option<Instant> {
        self.sessions.iter().map(|s| s.deadline).min()
    }

    /// Take a datagram that arrived at `port` from `from`.
    pub fn receive(&mut self, now: Instant, packet: &[u8], from: IpEndpoint, port: u16) -> Vec<Out> {
        let mut out = Vec::new();
        let Ok(repr) = Repr::parse(packet) else { return out };
        if port == SERVER_PORT {
            if let Repr::ReadRequest(request) = repr {
                self.request(now, request.filename, request.options, from, &mut out);
            }
            return out;
        }
        if (FIRST_PORT + STRAY_PORT_OFFSET..self.next_port + STRAY_PORT_OFFSET).contains(&port) {
            if let Repr::Error { code, .. } = repr {
                self.log.stray_errors.push(code);
            }
            return out;
        }
        let Some(i) = self.sessions.iter().position(|s| s.port == port && s.client == from) else { return out };
        match repr {
            Repr::Ack { block } => {
                if self.one_in(self.faults.lose_ack_every) {
                    return out;
                }
                self.ack(now, i, block, &mut out);
            }
            Repr::Error { code, .. } => {
                self.log.errors.push((port, code));
                self.sessions.remove(i);
            }
            _ => {}
        }
        out
    }

    /// Retransmit where a timeout passed.
    pub fn tick(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.sessions.len() {
            if self.sessions[i].deadline > now {
                i += 1;
                continue;
            }
            self.sessions[i].retries += 1;
            if self.sessions[i].retries > self.retries {
                self.log.abandoned += 1;
                self.sessions.remove(i);
                continue;
            }
            let s = &mut self.sessions[i];
            if let Some(options) = s.oack {
                s.deadline = now + s.timeout;
                out.push(Out { from_port: s.port, to: s.client, packet: emit(&Repr::OptionAck(options)) });
            } else {
                self.send_window(now, i, &mut out);
            }
            i += 1;
        }
        out
    }

    fn request(&mut self, now: Instant, name: &[u8], options: Options, client: IpEndpoint, out: &mut Vec<Out>) {
        self.log.requests.push(options);
        let port = self.next_port;
        self.next_port += 1;
        let Some(file) = self.files.iter().position(|(n, _)| n == name) else {
            let repr = Repr::Error { code: ErrorCode::FileNotFound, message: b"File not found" };
            out.push(Out { from_port: port, to: client, packet: emit(&repr) });
            return;
        };
        let faults = self.faults;
        if !options.is_empty() && faults.refuse_options {
            let repr = Repr::Error { code: ErrorCode::OptionsRefused, message: b"options not supported" };
            out.push(Out { from_port: port, to: client, packet: emit(&repr) });
            return;
        }
        let real_len = self.files[file].1.len();
        let len = faults.truncate_to.map_or(real_len, |t| t.min(real_len));
        let negotiate = !options.is_empty() && !faults.ignore_options;
        let max_window = if faults.max_windowsize == 0 { u16::MAX } else { faults.max_windowsize };
        let oack = negotiate.then(|| Options {
            blksize: options.blksize.map(|b| faults.oack_blksize.unwrap_or(b)),
            windowsize: options.windowsize.map(|w| w.min(max_window)),
            timeout: options.timeout,
            tsize: options.tsize.map(|_| faults.tsize.unwrap_or(real_len)),
        });
        let o = oack.unwrap_or(Options::NONE);
        let timeout = Duration::from_secs(u64::from(o.timeout.unwrap_or(1)));
        self.sessions.push(Session {
            client,
            port,
            file,
            len,
            blksize: o.blksize.unwrap_or(DEFAULT_BLKSIZE),
            windowsize: o.windowsize.unwrap_or(1),
            timeout,
            oack,
            acked: 0,
            sent: 0,
            deadline: now + timeout,
            retries: 0,
        });
        let i = self.sessions.len() - 1;
        match oack {
            Some(options) => out.push(Out { from_port: port, to: client, packet: emit(&Repr::OptionAck(options)) }),
            None => self.send_window(now, i, out),
        }
    }

    fn ack(&mut self, now: Instant, i: usize, block: u16, out: &mut Vec<Out>) {
        let s = &mut self.sessions[i];
        if s.oack.is_some() {
            if block == 0 {
                s.oack = None;
                s.acked = 0;
                s.retries = 0;
                self.send_window(now, i, out);
            }
            return;
        }
        // The ACKed block is at or after the last ACK and no later than the last sent.
        let acked = s.acked + u64::from(block.wrapping_sub(s.acked as u16));
        if acked > s.sent {
            return;
        }
        if acked == s.last() {
            self.log.completed += 1;
            self.sessions.remove(i);
            return;
        }
        // An ACK that moves nothing is ignored, as tftp-hpa does (RFC 1123: answering duplicate ACKs
        // is the Sorcerer's Apprentice, every copy doubling the traffic); the timeout sends again.
        // In a window, an ACK short of the window's end says where to start again (RFC 7440).
        if acked == s.acked {
            return;
        }
        s.acked = acked;
        s.retries = 0;
        self.send_window(now, i, out);
    }

    /// Send the window after the last ACK.
    fn send_window(&mut self, now: Instant, i: usize, out: &mut Vec<Out>) {
        let faults = self.faults;
        let before = out.len();
        let s = &mut self.sessions[i];
        s.deadline = now + s.timeout;
        let first = s.acked + 1;
        let end = (s.acked + u64::from(s.windowsize)).min(s.last());
        let mut held: Option<Out> = None;
        for block in first..=end {
            if faults.stall_after.is_some_and(|n| block > n) {
                break;
            }
            let s = &self.sessions[i];
            if faults.error_at == Some(block) {
                let repr = Repr::Error { code: ErrorCode::AccessViolation, message: b"read failed" };
                out.push(Out { from_port: s.port, to: s.client, packet: emit(&repr) });
                self.sessions.remove(i);
                self.log.data_sent += out[before..].len() as u64 - 1;
                return;
            }
            let offset = (block - 1) * u64::from(s.blksize);
            let n = (s.len - offset).min(u64::from(s.blksize)) as usize;
            let mut packet = vec![0u8; 4 + n];
            packet[0..2].copy_from_slice(&3u16.to_be_bytes());
            packet[2..4].copy_from_slice(&(block as u16).to_be_bytes());
            self.files[s.file].1.read(offset, &mut packet[4..]);
            let (port, client) = (s.port, s.client);
            self.sessions[i].sent = self.sessions[i].sent.max(block);

            if self.one_in(faults.lose_data_every) {
                continue;
            }
            let data = Out { from_port: port, to: client, packet };
            // Not block 1: before the first reply any port of the server is the transfer's.
            let stray = (block > 1 && self.one_in(faults.stray_every))
                .then(|| Out { from_port: port + STRAY_PORT_OFFSET, ..data.clone() });
            if self.one_in(faults.duplicate_every) {
                out.push(data.clone());
            }
            if self.one_in(faults.reorder_every) && held.is_none() {
                held = Some(data);
            } else {
                out.push(data);
                out.extend(held.take());
            }
            out.extend(stray);
        }
        out.extend(held);
        self.log.data_sent += out[before..].len() as u64;
    }
}

fn emit(repr: &Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    // Sized by `buffer_len`, and the server's strings hold no NUL.
    let n = repr.emit(&mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}
