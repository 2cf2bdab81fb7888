//! The client's state machine for one read transfer, without sockets or clocks: the caller hands it
//! received datagrams and the time ([`Transfer::poll`]) and sends what it returns. The payload goes
//! to a [`Sink`].
//!
//! What it does, and why:
//!
//! * The request asks for [`Config::blksize`], [`Config::windowsize`], [`Config::timeout`] and
//!   `tsize=0` (RFC 2347–2349, 7440). An OACK is checked against the request: nothing unrequested,
//!   blksize and windowsize no larger than asked, the timeout as asked (RFC 2349). A server that
//!   ignores the options answers with DATA 1: the transfer is then plain RFC 1350 (512-byte blocks,
//!   one ACK per block). A server that refuses them (ERROR 8), or an OACK this client cannot accept
//!   (ERROR 8 sent), leads to one new plain request.
//! * The server's transfer ID is the port its first reply came from (RFC 1350). Anything from
//!   another port is answered with ERROR 5 and otherwise ignored; the transfer carries on.
//! * Windows (RFC 7440): the client ACKs after every `windowsize` blocks in order, and after the
//!   last. A gap (a block ahead of the next expected) or a duplicate of a block already ACKed (the
//!   ACK was lost and the server went back) is answered with an ACK of the last block in order,
//!   once until the transfer moves again or the server goes back (a block number lower than the
//!   last), so a window full of them does not send a burst of ACKs that would each restart the
//!   server's window. Other duplicates are dropped.
//! * Blocks are counted in a `u64` and matched to the 16-bit block number modulo 2^16, so files of
//!   more than 65535 blocks work with servers that roll the block number over to 0 (tftp-hpa and
//!   most others do).
//! * Without progress for the retransmission timeout, the last RRQ or ACK is sent again, the timeout
//!   doubling each time up to [`Config::max_timeout`]; after [`Config::retries`] in a row the
//!   transfer fails. Progress resets both.
//! * A file larger than the sink's capacity is refused with ERROR 3 before any data (tsize) or as
//!   soon as it overflows. A file that ends at another size than the tsize announced fails.
//! * After the last block the transfer is done at once, and still answers the last DATA with its ACK
//!   if the server sends it again (its ACK was lost) for as long as the caller keeps polling.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::wire::{self, ErrorCode, Mode, OptionName, Options, Packet, Repr, Request, DEFAULT_BLKSIZE};

/// The longest filename a request carries.
pub const FILENAME_MAX: usize = 128;
/// Bytes of a server's error message kept for the report (the rest is cut).
pub const MESSAGE_MAX: usize = 64;
/// The buffer the client builds its datagrams in: a request fits in [`wire::REQUEST_MAX`].
const OUT_MAX: usize = wire::REQUEST_MAX;

/// What the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The block size to ask for ([`wire::BLKSIZE_MIN`]..=[`wire::BLKSIZE_MAX`]). [`Config::blksize_for_mtu`].
    pub blksize: u16,
    /// Blocks per window to ask for (1 = lock-step).
    pub windowsize: u16,
    /// Seconds before a retransmission, asked of the server and used by the client (1..=255).
    pub timeout: u8,
    /// The longest the client's retransmission timeout grows to by doubling.
    pub max_timeout: Duration,
    /// Retransmissions in a row without progress before the transfer fails.
    pub retries: u8,
    /// Ask for the options at all; without, the request is plain RFC 1350.
    pub options: bool,
}

impl Config {
    /// The largest block whose DATA packet fits an IPv4 MTU without fragments: 1468 for 1500.
    pub const fn blksize_for_mtu(mtu: usize) -> u16 {
        let payload = mtu.saturating_sub(20 + 8 + wire::HEADER_LEN);
        if payload < wire::BLKSIZE_MIN as usize {
            wire::BLKSIZE_MIN
        } else if payload > wire::BLKSIZE_MAX as usize {
            wire::BLKSIZE_MAX
        } else {
            payload as u16
        }
    }
}

impl Default for Config {
    /// A 1500-byte MTU, windows of 16, 1 s doubling up to 8 s, 6 retries.
    fn default() -> Self {
        Config {
            blksize: Config::blksize_for_mtu(1500),
            windowsize: 16,
            timeout: 1,
            max_timeout: Duration::from_secs(8),
            retries: 6,
            options: true,
        }
    }
}

/// Where the payload goes, in order: offsets start at 0 and each write follows the last.
pub trait Sink {
    /// The most bytes the sink takes: a larger file is refused.
    fn capacity(&self) -> u64;
    /// Store `data` at `offset`; `offset + data.len() <= capacity()` always holds.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError>;
}

/// The sink could not store the data (the transfer fails with [`Failure::Sink`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkError;

/// A sink over a byte slice: the firmware's load area.
#[derive(Debug)]
pub struct Memory<'a> {
    buf: &'a mut [u8],
}

impl<'a> Memory<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Memory { buf }
    }
}

impl Sink for Memory<'_> {
    fn capacity(&self) -> u64 {
        self.buf.len() as u64
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let start = usize::try_from(offset).map_err(|_| SinkError)?;
        let end = start.checked_add(data.len()).ok_or(SinkError)?;
        self.buf.get_mut(start..end).ok_or(SinkError)?.copy_from_slice(data);
        Ok(())
    }
}

/// Why the filename was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilenameError {
    /// Empty, or longer than [`FILENAME_MAX`].
    Length,
    /// It holds a NUL, which would end it early on the wire.
    Nul,
}

/// A server's error message, cut to [`MESSAGE_MAX`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message {
    bytes: [u8; MESSAGE_MAX],
    len: u8,
}

impl Message {
    fn new(text: &[u8]) -> Self {
        let len = text.len().min(MESSAGE_MAX);
        let mut bytes = [0; MESSAGE_MAX];
        bytes[..len].copy_from_slice(&text[..len]);
        Message { bytes, len: len as u8 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The message up to its first byte that is not UTF-8 (servers send ASCII).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            // `valid_up_to` is a character boundary: this cannot fail.
            Err(e) => core::str::from_utf8(&self.as_bytes()[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl core::fmt::Debug for Message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Why a transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No progress after [`Config::retries`] retransmissions of the request (`bytes == 0`, no reply
    /// at all) or of an ACK (the server stopped sending).
    Timeout { bytes: u64 },
    /// The server sent ERROR.
    Server { code: ErrorCode, message: Message },
    /// The file is larger than the sink (ERROR 3 sent): `size` is the tsize the server announced
    /// (`announced`) or the bytes received when it overflowed.
    TooLarge { size: u64, capacity: u64, announced: bool },
    /// The file ended at, or ran past, a size other than the tsize the server announced (ERROR 0
    /// sent): a truncated or padded file.
    SizeMismatch { announced: u64, received: u64 },
    /// An OACK this client cannot accept, after the plain request was tried too (ERROR 8 sent).
    Options(wire::Error),
    /// The sink refused to store the bytes at `offset` (ERROR 3 sent).
    Sink { offset: u64 },
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Failure::Timeout { bytes: 0 } => write!(f, "no answer from the server"),
            Failure::Timeout { bytes } => write!(f, "the server stopped sending after {bytes} bytes"),
            Failure::Server { code, message } => {
                write!(f, "server error {}: {}", code.as_u16(), message.as_str())
            }
            Failure::TooLarge { size, capacity, announced: true } => {
                write!(f, "file of {size} bytes announced, room for {capacity}")
            }
            Failure::TooLarge { size, capacity, announced: false } => {
                write!(f, "file larger than the room for it ({size} bytes received, room for {capacity})")
            }
            Failure::SizeMismatch { announced, received } => {
                write!(f, "file of {announced} bytes announced, {received} received")
            }
            Failure::Options(e) => write!(f, "options refused: {e}"),
            Failure::Sink { offset } => write!(f, "could not store the bytes at offset {offset}"),
        }
    }
}

/// What a finished transfer moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub blocks: u64,
    /// The block size and window used (512 and 1 if the server ignored the options).
    pub blksize: u16,
    pub windowsize: u16,
}

/// Where a transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Done(Summary),
    Failed(Failure),
}

/// Progress and the events counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes written to the sink.
    pub bytes: u64,
    /// Blocks received in order.
    pub blocks: u64,
    /// The size the server announced (tsize), if it did.
    pub expected: Option<u64>,
    /// The block size and window in use.
    pub blksize: u16,
    pub windowsize: u16,
    /// Requests or ACKs sent again after a timeout.
    pub retransmissions: u32,
    /// Blocks received more than once.
    pub duplicates: u32,
    /// Blocks received ahead of a missing one (then dropped).
    pub out_of_order: u32,
    /// Datagrams from the server dropped as malformed or out of place.
    pub ignored: u32,
    /// Datagrams from another address or port (answered with ERROR 5).
    pub foreign: u32,
    /// Plain requests after the server refused the options, or sent an OACK that was refused.
    pub fallbacks: u32,
}

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub to: IpEndpoint,
    pub packet: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The request is sent (or about to be); no reply yet.
    Requesting,
    /// Replies come from the server's transfer ID.
    Receiving,
    Done(Summary),
    Failed(Failure),
}

/// What to send: built into the transfer's buffer by [`Transfer::build`].
#[derive(Clone, Copy, Debug)]
enum Send {
    Request,
    Ack(u16),
    Error(IpEndpoint, ErrorCode, &'static str),
}

/// One read transfer.
#[derive(Debug)]
pub struct Transfer {
    config: Config,
    filename: [u8; FILENAME_MAX],
    filename_len: usize,
    /// The server's address and well-known port (the request goes there).
    server: IpEndpoint,
    phase: Phase,
    /// The server's transfer ID (its port), once it replied.
    tid: Option<u16>,
    /// The port of a server transfer that refused the options: its late packets are foreign.
    refused_tid: Option<u16>,
    /// The current request asks for options.
    with_options: bool,
    /// A request is due at the next poll (the start, or the fallback to a plain one).
    request_due: bool,
    /// The last block ACKed.
    acked: u64,
    /// A gap or duplicate was answered since the transfer last moved or the server went back.
    answered: bool,
    /// The block number of the last DATA from the server.
    last_seen: Option<u16>,
    deadline: Instant,
    /// The current retransmission timeout, doubled after each.
    rto: Duration,
    /// Retransmissions in a row without progress.
    timeouts: u8,
    progress: Progress,
    out: [u8; OUT_MAX],
}

impl Transfer {
    /// A transfer of `filename` from `server` (the server's address and port, usually
    /// [`wire::SERVER_PORT`]). Its request goes out at the first [`Transfer::poll`].
    pub fn new(server: IpEndpoint, filename: &[u8], config: Config) -> Result<Transfer, FilenameError> {
        if filename.is_empty() || filename.len() > FILENAME_MAX {
            return Err(FilenameError::Length);
        }
        if filename.contains(&0) {
            return Err(FilenameError::Nul);
        }
        let mut name = [0; FILENAME_MAX];
        name[..filename.len()].copy_from_slice(filename);
        let config = Config {
            blksize: config.blksize.clamp(wire::BLKSIZE_MIN, wire::BLKSIZE_MAX),
            windowsize: config.windowsize.max(1),
            timeout: config.timeout.max(1),
            ..config
        };
        Ok(Transfer {
            config,
            filename: name,
            filename_len: filename.len(),
            server,
            phase: Phase::Requesting,
            tid: None,
            refused_tid: None,
            with_options: config.options,
            request_due: true,
            acked: 0,
            answered: false,
            last_seen: None,
            deadline: Instant::ZERO,
            rto: initial_rto(&config),
            timeouts: 0,
            progress: Progress { blksize: DEFAULT_BLKSIZE, windowsize: 1, ..Progress::default() },
            out: [0; OUT_MAX],
        })
    }

    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Requesting | Phase::Receiving => Status::Running,
            Phase::Done(summary) => Status::Done(summary),
            Phase::Failed(failure) => Status::Failed(failure),
        }
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// When [`Transfer::poll`] must be called without a datagram (a retransmission is due). `None`
    /// once finished.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Requesting | Phase::Receiving if self.request_due => Some(Instant::ZERO),
            Phase::Requesting | Phase::Receiving => Some(self.deadline),
            Phase::Done(_) | Phase::Failed(_) => None,
        }
    }

    /// Take `rx` (a datagram and where it came from), if any, or else check the timer; the datagram
    /// to send, if any. Call it with each datagram received, then with `None` until it returns
    /// `None` (a fallback request or a retransmission may be due), and again at [`Self::poll_at`].
    pub fn poll<S: Sink + ?Sized>(
        &mut self,
        now: Instant,
        rx: Option<(&[u8], IpEndpoint)>,
        sink: &mut S,
    ) -> Option<Datagram<'_>> {
        let send = match rx {
            Some((bytes, from)) => self.receive(now, bytes, from, sink),
            None => self.tick(now),
        }?;
        self.build(send)
    }

    fn tick(&mut self, now: Instant) -> Option<Send> {
        if !matches!(self.phase, Phase::Requesting | Phase::Receiving) {
            return None;
        }
        if self.request_due {
            self.request_due = false;
            self.arm(now);
            return Some(Send::Request);
        }
        if now < self.deadline {
            return None;
        }
        if self.timeouts >= self.config.retries {
            self.phase = Phase::Failed(Failure::Timeout { bytes: self.progress.bytes });
            return None;
        }
        self.timeouts += 1;
        self.progress.retransmissions = self.progress.retransmissions.saturating_add(1);
        self.rto = Duration::from_micros(self.rto.total_micros().saturating_mul(2)).min(self.config.max_timeout);
        self.deadline = now + self.rto;
        self.answered = false;
        match self.phase {
            Phase::Requesting => Some(Send::Request),
            _ => {
                self.acked = self.progress.blocks;
                Some(Send::Ack(self.progress.blocks as u16))
            }
        }
    }

    /// Progress: the timer restarts at the initial timeout.
    fn arm(&mut self, now: Instant) {
        self.timeouts = 0;
        self.rto = initial_rto(&self.config);
        self.deadline = now + self.rto;
    }

    fn fail(&mut self, failure: Failure) {
        self.phase = Phase::Failed(failure);
    }

    /// Whether `from` is the server of this transfer (its transfer ID once known, its address
    /// before).
    fn is_server(&self, from: IpEndpoint) -> bool {
        if from.addr != self.server.addr {
            return false;
        }
        match self.tid {
            Some(port) => from.port == port,
            None => Some(from.port) != self.refused_tid,
        }
    }

    fn receive<S: Sink + ?Sized>(
        &mut self,
        now: Instant,
        bytes: &[u8],
        from: IpEndpoint,
        sink: &mut S,
    ) -> Option<Send> {
        let parsed = Repr::parse(bytes);
        if !self.is_server(from) {
            self.progress.foreign = self.progress.foreign.saturating_add(1);
            // Never answer an ERROR with one: two confused peers would echo errors forever.
            if matches!(parsed, Ok(Repr::Error { .. })) {
                return None;
            }
            return Some(Send::Error(from, ErrorCode::UnknownTransferId, "unknown transfer ID"));
        }
        let repr = match parsed {
            Ok(repr) => repr,
            Err(e) => {
                let oack = Packet::new_checked(bytes).is_ok_and(|p| p.opcode() == wire::Opcode::OptionAck as u16);
                if oack && self.phase == Phase::Requesting {
                    return self.refuse_options(from, e);
                }
                self.progress.ignored = self.progress.ignored.saturating_add(1);
                return None;
            }
        };
        match (self.phase, repr) {
            (Phase::Requesting, Repr::OptionAck(options)) => self.accept_options(now, from, options, sink),
            (Phase::Requesting, Repr::Data { block: 1, data }) => {
                // The server ignored the options: plain RFC 1350.
                self.tid = Some(from.port);
                self.phase = Phase::Receiving;
                self.progress.blksize = DEFAULT_BLKSIZE;
                self.progress.windowsize = 1;
                self.data(now, 1, data, sink)
            }
            (Phase::Requesting, Repr::Error { code: ErrorCode::OptionsRefused, .. }) if self.with_options => {
                self.fallback(from.port);
                None
            }
            (Phase::Requesting | Phase::Receiving, Repr::Error { code, message }) => {
                self.fail(Failure::Server { code, message: Message::new(message) });
                None
            }
            (Phase::Receiving, Repr::Data { block, data }) => self.data(now, block, data, sink),
            (Phase::Receiving, Repr::OptionAck(_)) if self.progress.blocks == 0 => {
                // The OACK again: the server did not get ACK 0.
                self.progress.duplicates = self.progress.duplicates.saturating_add(1);
                self.answer()
            }
            (Phase::Done(summary), Repr::Data { block, .. }) if block == summary.blocks as u16 => {
                // The last block again: the last ACK was lost.
                Some(Send::Ack(block))
            }
            _ => {
                self.progress.ignored = self.progress.ignored.saturating_add(1);
                None
            }
        }
    }

    /// Refuse an OACK (ERROR 8 to its sender) and ask again without options, or fail if the request
    /// had none.
    fn refuse_options(&mut self, from: IpEndpoint, why: wire::Error) -> Option<Send> {
        let send = Some(Send::Error(from, ErrorCode::OptionsRefused, "options refused"));
        if self.with_options {
            self.fallback(from.port);
        } else {
            self.fail(Failure::Options(why));
        }
        send
    }

    /// A plain request at the next poll; the server transfer at `port` is over.
    fn fallback(&mut self, port: u16) {
        self.progress.fallbacks = self.progress.fallbacks.saturating_add(1);
        self.with_options = false;
        self.refused_tid = Some(port);
        self.tid = None;
        self.request_due = true;
    }

    fn accept_options<S: Sink + ?Sized>(
        &mut self,
        now: Instant,
        from: IpEndpoint,
        options: Options,
        sink: &mut S,
    ) -> Option<Send> {
        if let Err(e) = self.check_options(&options) {
            return self.refuse_options(from, e);
        }
        self.tid = Some(from.port);
        self.phase = Phase::Receiving;
        self.progress.blksize = options.blksize.unwrap_or(DEFAULT_BLKSIZE);
        self.progress.windowsize = options.windowsize.unwrap_or(1);
        self.progress.expected = options.tsize;
        let capacity = sink.capacity();
        if let Some(size) = options.tsize.filter(|&size| size > capacity) {
            self.fail(Failure::TooLarge { size, capacity, announced: true });
            return Some(Send::Error(from, ErrorCode::DiskFull, "file too large"));
        }
        self.arm(now);
        self.acked = 0;
        Some(Send::Ack(0))
    }

    /// An OACK may only narrow what was asked (RFC 2347–2349, 7440).
    fn check_options(&self, options: &Options) -> Result<(), wire::Error> {
        let asked = self.request_options();
        let over = |got: Option<u16>, want: Option<u16>, name| match (got, want) {
            (Some(_), None) => Err(wire::Error::UnknownOption),
            (Some(g), Some(w)) if g > w => Err(wire::Error::Value(name)),
            _ => Ok(()),
        };
        over(options.blksize, asked.blksize, OptionName::Blksize)?;
        over(options.windowsize, asked.windowsize, OptionName::Windowsize)?;
        match (options.timeout, asked.timeout) {
            (Some(_), None) => return Err(wire::Error::UnknownOption),
            (Some(g), Some(w)) if g != w => return Err(wire::Error::Value(OptionName::Timeout)),
            _ => {}
        }
        if options.tsize.is_some() && asked.tsize.is_none() {
            return Err(wire::Error::UnknownOption);
        }
        Ok(())
    }

    fn request_options(&self) -> Options {
        if !self.with_options {
            return Options::NONE;
        }
        Options {
            blksize: Some(self.config.blksize),
            // 1 is the default: asking for it only risks a server that does not know the option.
            windowsize: Some(self.config.windowsize).filter(|&w| w > 1),
            timeout: Some(self.config.timeout),
            tsize: Some(0),
        }
    }

    /// An ACK of the last block in order, once until the transfer moves again.
    fn answer(&mut self) -> Option<Send> {
        if self.answered {
            return None;
        }
        self.answered = true;
        self.acked = self.progress.blocks;
        Some(Send::Ack(self.progress.blocks as u16))
    }

    fn data<S: Sink + ?Sized>(&mut self, now: Instant, block: u16, data: &[u8], sink: &mut S) -> Option<Send> {
        let p = self.progress;
        if data.len() > usize::from(p.blksize) {
            self.progress.ignored = self.progress.ignored.saturating_add(1);
            return None;
        }
        // A block number lower than the last one: the server went back (its answer to an ACK, or its
        // timeout), so a gap or a duplicate in what it sends now is worth one answer again.
        let went_back = self.last_seen.is_some_and(|last| block.wrapping_sub(last) >= 0x8000);
        if went_back {
            self.answered = false;
        }
        self.last_seen = Some(block);
        let next = (p.blocks + 1) as u16;
        let ahead = block.wrapping_sub(next);
        if ahead != 0 {
            if ahead < 0x8000 {
                self.progress.out_of_order = self.progress.out_of_order.saturating_add(1);
                return self.answer();
            }
            self.progress.duplicates = self.progress.duplicates.saturating_add(1);
            // Which block this was: `behind` blocks before the next one.
            let behind = u64::from(next.wrapping_sub(block));
            let acked = (p.blocks + 1).checked_sub(behind).is_some_and(|b| b <= self.acked);
            // Lock-step (RFC 1350): a block already ACKed came again, the ACK was lost; each copy is
            // ACKed, the server ignores duplicate ACKs (RFC 1123). In windows only a server going
            // back to a block already ACKed is answered: a network's copy of the block just ACKed
            // answered would restart a window the server has already moved past. A block received
            // but not yet ACKed coming twice is the network's copy either way.
            if acked && p.windowsize == 1 {
                self.acked = p.blocks;
                return Some(Send::Ack(p.blocks as u16));
            }
            if acked && went_back {
                return self.answer();
            }
            return None;
        }
        let tid = IpEndpoint::new(self.server.addr, self.tid.unwrap_or(self.server.port));
        let total = p.bytes + data.len() as u64;
        let capacity = sink.capacity();
        if total > capacity {
            self.fail(Failure::TooLarge { size: total, capacity, announced: false });
            return Some(Send::Error(tid, ErrorCode::DiskFull, "file too large"));
        }
        if let Some(announced) = p.expected.filter(|&a| total > a) {
            self.fail(Failure::SizeMismatch { announced, received: total });
            return Some(Send::Error(tid, ErrorCode::Undefined, "file larger than its tsize"));
        }
        if sink.write(p.bytes, data).is_err() {
            self.fail(Failure::Sink { offset: p.bytes });
            return Some(Send::Error(tid, ErrorCode::DiskFull, "cannot store the file"));
        }
        self.progress.blocks += 1;
        self.progress.bytes = total;
        self.answered = false;
        self.arm(now);
        if data.len() < usize::from(p.blksize) {
            if let Some(announced) = p.expected.filter(|&a| a != total) {
                self.fail(Failure::SizeMismatch { announced, received: total });
                return Some(Send::Error(tid, ErrorCode::Undefined, "file shorter than its tsize"));
            }
            let p = self.progress;
            self.phase =
                Phase::Done(Summary { bytes: p.bytes, blocks: p.blocks, blksize: p.blksize, windowsize: p.windowsize });
            self.acked = p.blocks;
            return Some(Send::Ack(p.blocks as u16));
        }
        if self.progress.blocks - self.acked >= u64::from(p.windowsize) {
            self.acked = self.progress.blocks;
            return Some(Send::Ack(self.progress.blocks as u16));
        }
        None
    }

    fn build(&mut self, send: Send) -> Option<Datagram<'_>> {
        let (to, repr) = match send {
            Send::Request => {
                let request = Request {
                    filename: &self.filename[..self.filename_len],
                    mode: Mode::Octet,
                    options: self.request_options(),
                };
                (self.server, Repr::ReadRequest(request))
            }
            Send::Ack(block) => {
                let tid = IpEndpoint::new(self.server.addr, self.tid.unwrap_or(self.server.port));
                (tid, Repr::Ack { block })
            }
            Send::Error(to, code, message) => (to, Repr::Error { code, message: message.as_bytes() }),
        };
        // Every packet above fits: the filename is at most FILENAME_MAX bytes, the options and the
        // messages are short.
        let n = repr.emit(&mut self.out).ok()?;
        Some(Datagram { to, packet: &self.out[..n] })
    }
}

fn initial_rto(config: &Config) -> Duration {
    Duration::from_secs(u64::from(config.timeout)).min(config.max_timeout)
}
