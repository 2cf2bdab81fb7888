//! The agent's control service on TCP port [`control::PORT`] (grammar in `bpnet_contract::control`):
//! one request per connection, `FLASH`, `NETBOOT`, `RESET` or `STATUS`.
//!
//! * `FLASH <len>`: the image is received into the staging area and verified there (a bad image
//!   is refused before anything is erased), then written into the inactive slot by the board's
//!   [`FlashJob`], which the main loop advances a little per iteration, read back, verified again
//!   and recorded for trial. `PROGRESS` lines for each phase; `OK slot=B version=.. bytes=..`.
//! * `NETBOOT <server> <file>`: TFTP (`bpnet-tftp`) into the staging area, then verification; a
//!   failed attempt (timeout, TFTP error, truncated, oversized, refused image) is logged with its
//!   cause and retried after 1 s, 2 s, 4 s; then `ERROR`. On success `OK`, the connection closes,
//!   and the image is started.
//! * `RESET`: `OK`, close, reset.
//! * `STATUS`: what runs and what the slots hold.
//!
//! One request at a time: a client that connects while a request is served is answered
//! `ERROR busy` on a second socket (which also keeps the port listening while the last connection
//! closes); one that connects while the last connection closes after its answer waits and is served.
//!
//! Portable: what the board provides is behind the traits of [`board`] (the staging area, the flash
//! and its job, the system); the board's main loop calls [`Control::poll`] after smoltcp's poll and
//! sleeps no later than [`Control::poll_at`].
#![no_std]
#![forbid(unsafe_code)]

pub mod board;
#[cfg(test)]
mod tests;

use bpnet_contract::bar::boot_flags;
use bpnet_contract::control::{self, ErrorCode, Phase, Request, SlotReport, Source, Status, Version, LINE_MAX};
use bpnet_tftp::udp::{Client, PacketMeta as TftpMeta, Storage as TftpStorage};
use bpnet_tftp::{Config as TftpConfig, Failure, Memory, Status as TftpStatus, Transfer};
use bpnet_update::{Slot, SlotState};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

pub use board::{Flash, FlashJob, JobError, JobProgress, Staging, System};

/// Logged through defmt when the firmware enables it; nothing otherwise (host tests).
macro_rules! info {
    ($($t:tt)*) => {
        #[cfg(feature = "defmt")]
        defmt::info!($($t)*);
    };
}
macro_rules! warn {
    ($($t:tt)*) => {
        #[cfg(feature = "defmt")]
        defmt::warn!($($t)*);
    };
}

/// Sockets the control service adds: its TCP connections and the TFTP client's UDP socket.
pub const SOCKETS: usize = CONNECTIONS + 1;
/// TCP sockets: while one serves a request, another listens (and answers `ERROR busy`), so a
/// client that connects as the last connection closes is never refused by TCP.
const CONNECTIONS: usize = 2;

/// The connection's receive window: a FLASH image streams through it.
const RX_BUFFER: usize = 64 * 1024;
/// Room for the response lines queued at once.
const TX_BUFFER: usize = 4 * LINE_MAX;
/// Where the image goes in the staging area, and where it is read back into.
const IMAGE_MAX: u32 = 8 << 20;
const READBACK_AT: usize = 16 << 20;
const _: () = assert!(IMAGE_MAX as usize <= READBACK_AT, "the image overlaps its read back copy");
/// The staging area the service needs: the image and its read back copy.
pub const STAGING_MIN: usize = READBACK_AT + IMAGE_MAX as usize;
/// A request line or image bytes must keep coming at least this often.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to deliver its last line before what follows (the
/// reset, the launch) goes ahead anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// NETBOOT attempts after the first, and the wait before each (1 s, 2 s, 4 s).
pub const NETBOOT_RETRIES: u32 = 3;
/// PROGRESS lines at most this often per phase (bytes).
const PROGRESS_STEP: u64 = 64 * 1024;
/// TFTP local ports: a new one for each transfer (RFC 1350).
const TFTP_PORT_BASE: u16 = 49_152;

/// The service's socket buffers (about 130 KiB and the TFTP client's: the board keeps them in a
/// static, not on its stack).
pub struct Buffers {
    rx: [[u8; RX_BUFFER]; CONNECTIONS],
    tx: [[u8; TX_BUFFER]; CONNECTIONS],
    tftp: TftpStorage,
    tftp_meta: TftpMeta,
}

impl Buffers {
    pub const fn new() -> Self {
        Buffers {
            rx: [[0; RX_BUFFER]; CONNECTIONS],
            tx: [[0; TX_BUFFER]; CONNECTIONS],
            tftp: TftpStorage::new(),
            tftp_meta: TftpMeta::new(),
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// What happens once the response has been delivered and the connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Listen,
    Reset,
    Fault,
    /// Start the verified image of this many bytes at the start of the staging area.
    Launch(u32),
}

enum State<J> {
    /// Waiting for a connection.
    Listen,
    /// Collecting the request line.
    Line { len: usize, since: Instant },
    /// Receiving a FLASH image into the staging area.
    Receive { len: u32, got: u32, since: Instant, reported: u64 },
    /// Writing the image into the inactive slot.
    Flash { job: J, len: u32, version: u32, reported: (u32, u64, u64) },
    /// Fetching by TFTP.
    Netboot(Netboot),
    /// The last line queued, the connection closing.
    Closing { after: After, since: Instant },
}

/// A NETBOOT in progress.
#[derive(Clone, Copy)]
struct Netboot {
    server: [u8; 4],
    name: [u8; control::FILENAME_MAX],
    name_len: usize,
    /// Attempts that failed so far.
    attempt: u32,
    /// Waiting for the next attempt (the first: now).
    retry_at: Option<Instant>,
    /// Bytes of the last PROGRESS line.
    reported: u64,
    /// The file is in the staging area; verification is next.
    fetched: Option<bpnet_tftp::Summary>,
}

/// The control service over the board's staging area `S`, flash `F` and system `Y`.
pub struct Control<S, F: Flash, Y> {
    tcp: [SocketHandle; CONNECTIONS],
    /// The socket serving the request (meaningful unless listening).
    conn: usize,
    /// Sockets answered `ERROR busy`, closing.
    refused: [bool; CONNECTIONS],
    tftp: Client,
    staging: S,
    flash: F,
    system: Y,
    state: State<F::Job>,
    line: [u8; LINE_MAX],
    /// The final line, queued as soon as the socket has room for it.
    last: Option<([u8; LINE_MAX], usize)>,
    transfers: u16,
}

fn slot_index(slot: Slot) -> u8 {
    slot.index() as u8
}

impl<S: Staging, F: Flash, Y: System> Control<S, F, Y> {
    /// Open the service's sockets in `sockets`, over `buffers`.
    pub fn new<'s>(sockets: &mut SocketSet<'s>, buffers: &'s mut Buffers, staging: S, flash: F, system: Y) -> Self {
        assert!(staging.bytes().len() >= STAGING_MIN, "the staging area is smaller than the control service needs");
        let Buffers { rx, tx, tftp, tftp_meta } = buffers;
        let mut buffers = rx.iter_mut().zip(tx.iter_mut());
        let tcp = core::array::from_fn(|_| {
            // Exactly CONNECTIONS pairs.
            let (rx, tx) = buffers.next().unwrap_or_else(|| unreachable!());
            sockets.add(tcp::Socket::new(tcp::SocketBuffer::new(&mut rx[..]), tcp::SocketBuffer::new(&mut tx[..])))
        });
        let tftp = Client::new(tftp, tftp_meta, sockets);
        Control {
            tcp,
            conn: 0,
            refused: [false; CONNECTIONS],
            tftp,
            staging,
            flash,
            system,
            state: State::Listen,
            line: [0; LINE_MAX],
            last: None,
            transfers: 0,
        }
    }

    /// When the service needs a poll even if nothing arrives.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        match &self.state {
            State::Listen => None,
            State::Line { since, .. } | State::Receive { since, .. } => Some(*since + IDLE_TIMEOUT),
            State::Closing { since, .. } => Some(*since + CLOSE_TIMEOUT),
            // Nothing pending in the part: the next step can run at once.
            State::Flash { job, .. } => Some(job.due().unwrap_or(now)),
            State::Netboot(Netboot { fetched: Some(_), .. }) => Some(now),
            State::Netboot(Netboot { retry_at: Some(at), .. }) => Some(*at),
            State::Netboot(_) => self.tftp.poll_at().or(Some(now + Duration::from_millis(100))),
        }
    }

    /// Queue a line if the socket has room for all of it; `false` otherwise (progress lines are
    /// dropped then: the next one says more).
    fn send(&mut self, sockets: &mut SocketSet<'_>, line: &[u8]) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(self.tcp[self.conn]);
        if !s.can_send() || s.send_capacity() - s.send_queue() < line.len() {
            return false;
        }
        s.send_slice(line).is_ok_and(|n| n == line.len())
    }

    fn progress(&mut self, sockets: &mut SocketSet<'_>, phase: Phase, done: u64, total: u64) {
        let mut buf = [0u8; LINE_MAX];
        if let Ok(n) = control::progress(&mut buf, phase, done, total) {
            self.send(sockets, &buf[..n]);
        }
    }

    /// End the request with `line` (OK or ERROR), then `after`.
    fn finish(&mut self, line: ([u8; LINE_MAX], usize), after: After, now: Instant) {
        self.last = Some(line);
        self.state = State::Closing { after, since: now };
    }

    fn error(&mut self, code: ErrorCode, text: core::fmt::Arguments<'_>, now: Instant) {
        let mut buf = [0u8; LINE_MAX];
        let n = control::error(&mut buf, code, text).unwrap_or(0);
        self.finish((buf, n), After::Listen, now);
    }

    fn ok(&mut self, fields: &[(&str, &dyn core::fmt::Display)], after: After, now: Instant) {
        let mut buf = [0u8; LINE_MAX];
        let n = control::ok(&mut buf, fields).unwrap_or(0);
        self.finish((buf, n), after, now);
    }

    /// After smoltcp's poll. True if anything happened.
    pub fn poll(&mut self, iface: &mut Interface, sockets: &mut SocketSet<'_>, now: Instant, mtu: usize) -> bool {
        let mut busy = self.advance(iface, sockets, now, mtu);
        busy |= self.others(sockets);
        // The final line goes out as soon as it fits, then the connection closes.
        if let Some((line, n)) = self.last {
            if self.send(sockets, &line[..n]) || !sockets.get::<tcp::Socket>(self.tcp[self.conn]).may_send() {
                self.last = None;
                sockets.get_mut::<tcp::Socket>(self.tcp[self.conn]).close();
            }
        }
        busy
    }

    /// Every socket not serving the request: listening again once closed, and a connection made
    /// while a request is served answered `ERROR busy`. Once a request has its final line and only
    /// its connection is closing (nothing follows), a new one is not refused: it waits for the close
    /// (at most [`CLOSE_TIMEOUT`]) and is served next, so a client may send its next request as soon
    /// as it has the answer to the last.
    fn others(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let mut busy = false;
        let serving = !matches!(self.state, State::Listen | State::Closing { after: After::Listen, .. });
        for i in 0..CONNECTIONS {
            let s = sockets.get_mut::<tcp::Socket>(self.tcp[i]);
            if !s.is_open() {
                self.refused[i] = false;
                // Listening on a closed socket with a non-zero port cannot fail.
                let _ = s.listen(control::PORT);
                continue;
            }
            if serving && i != self.conn && !self.refused[i] && s.may_send() {
                let mut buf = [0u8; LINE_MAX];
                let n = control::error(&mut buf, ErrorCode::Busy, format_args!("another request is in progress"))
                    .unwrap_or(0);
                // A fresh connection's send buffer holds the line.
                let _ = s.send_slice(&buf[..n]);
                s.close();
                self.refused[i] = true;
                busy = true;
            }
        }
        busy
    }

    fn advance(&mut self, iface: &mut Interface, sockets: &mut SocketSet<'_>, now: Instant, mtu: usize) -> bool {
        // Idle is the common case and runs on every pass of the data path's loop: look for a
        // connection in place, without moving the whole state (a job's buffers) out and back.
        if matches!(self.state, State::Listen) {
            let established = (0..CONNECTIONS).find(|&i| {
                let s = sockets.get_mut::<tcp::Socket>(self.tcp[i]);
                !self.refused[i] && s.may_recv()
            });
            return match established {
                Some(i) => {
                    self.conn = i;
                    self.state = State::Line { len: 0, since: now };
                    true
                }
                None => false,
            };
        }
        let state = core::mem::replace(&mut self.state, State::Listen);
        let (next, busy) = match state {
            // Taken above; kept for the match to be whole.
            State::Listen => (State::Listen, false),
            State::Line { len, since } => return self.read_line(iface, sockets, now, len, since),
            State::Receive { len, got, since, reported } => {
                return self.receive(sockets, now, len, got, since, reported)
            }
            State::Flash { job, len, version, reported } => {
                return self.flash(sockets, now, job, len, version, reported)
            }
            State::Netboot(job) => return self.netboot(sockets, now, mtu, job),
            State::Closing { after, since } => {
                let s = sockets.get_mut::<tcp::Socket>(self.tcp[self.conn]);
                let closed = !s.is_active() || matches!(s.state(), tcp::State::TimeWait);
                if self.last.is_none() && (closed || now >= since + CLOSE_TIMEOUT) {
                    s.abort();
                    match after {
                        After::Listen => {}
                        After::Reset => {
                            info!("control: resetting");
                            self.system.reset();
                        }
                        After::Fault => {
                            info!("control: faulting on purpose");
                            self.system.fault();
                        }
                        After::Launch(len) => {
                            info!("control: starting the netbooted image ({=u32} bytes)", len);
                            self.system.launch(&self.staging.bytes()[..len as usize]);
                        }
                    }
                    (State::Listen, true)
                } else {
                    (State::Closing { after, since }, false)
                }
            }
        };
        self.state = next;
        busy
    }

    fn read_line(
        &mut self,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        mut len: usize,
        since: Instant,
    ) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(self.tcp[self.conn]);
        if !s.may_recv() && !s.can_recv() {
            s.abort();
            self.state = State::Listen;
            return true;
        }
        // Take bytes up to the end of the line only: what follows a FLASH line is the image.
        let mut moved = false;
        let mut end = None;
        while end.is_none() && len < LINE_MAX {
            let mut byte = [0u8; 1];
            match s.recv_slice(&mut byte) {
                Ok(1) => {
                    self.line[len] = byte[0];
                    len += 1;
                    moved = true;
                    if byte[0] == b'\n' {
                        end = Some(len);
                    }
                }
                _ => break,
            }
        }
        let Some(end) = end else {
            if len >= LINE_MAX {
                self.error(ErrorCode::BadRequest, format_args!("{}", control::RequestError::TooLong), now);
            } else if now >= since + IDLE_TIMEOUT {
                self.error(ErrorCode::Timeout, format_args!("no request line"), now);
            } else {
                self.state = State::Line { len, since: if moved { now } else { since } };
            }
            return moved;
        };
        let line = self.line;
        match Request::parse(&line[..end]) {
            Err(e) => {
                warn!("control: bad request: {=str}", e.as_str());
                self.error(ErrorCode::BadRequest, format_args!("{e}"), now);
            }
            Ok(Request::Status) => self.status(now),
            Ok(Request::Reset) => {
                info!("control: RESET");
                self.ok(&[], After::Reset, now);
            }
            Ok(Request::Fault) => {
                info!("control: FAULT");
                self.ok(&[], After::Fault, now);
            }
            Ok(Request::Flash { len }) => {
                info!("control: FLASH of {=u32} bytes", len);
                if len > IMAGE_MAX.min(self.flash.layout().slots[0].len) {
                    self.error(ErrorCode::TooLarge, format_args!("{len} bytes, a slot holds {IMAGE_MAX}"), now);
                } else {
                    self.state = State::Receive { len, got: 0, since: now, reported: 0 };
                    self.progress(sockets, Phase::Receive, 0, u64::from(len));
                }
            }
            Ok(Request::Netboot { server, filename }) => {
                info!("control: NETBOOT {=[u8]:?} {=str}", server[..], filename);
                let mut name = [0u8; control::FILENAME_MAX];
                name[..filename.len()].copy_from_slice(filename.as_bytes());
                let name_len = filename.len();
                if iface.ipv4_addr().is_none() {
                    self.error(ErrorCode::Network, format_args!("no address yet"), now);
                } else {
                    self.state = State::Netboot(Netboot {
                        server,
                        name,
                        name_len,
                        attempt: 0,
                        retry_at: Some(now),
                        reported: 0,
                        fetched: None,
                    });
                }
            }
        }
        true
    }

    fn status(&mut self, now: Instant) {
        // How this program was started, from the boot block it publishes; the slots from the flash's
        // boot state as it is now (an update since the start shows).
        let boot = self.system.boot();
        let state = self.flash.boot_state();
        let report = |slot: Slot| -> SlotReport {
            let Some(s) = state else { return SlotReport::Unknown };
            let info = s.slot(slot);
            let v = Version(info.version);
            match info.state {
                SlotState::Empty => SlotReport::Empty,
                _ if s.trial == Some(slot) => SlotReport::Trial(v),
                SlotState::Written => SlotReport::Written(v),
                SlotState::Confirmed => SlotReport::Confirmed(v),
                SlotState::Rejected => SlotReport::Rejected(v),
            }
        };
        let source = boot.and_then(|b| Source::ALL.get(usize::from(b.boot_source)).copied()).unwrap_or(Source::Direct);
        let flags = boot.map_or(0, |b| b.boot_flags);
        let status = Status {
            source,
            slot: boot.map(|b| b.boot_slot).filter(|&s| s < 2),
            trial: flags & boot_flags::TRIAL != 0,
            confirmed: flags & boot_flags::CONFIRMED != 0,
            version: Version(boot.map_or(self.system.version(), |b| b.image_version)),
            uptime: boot.map_or((now.total_millis() / 1000) as u32, |b| b.uptime_s),
            a: report(Slot::A),
            b: report(Slot::B),
        };
        let mut buf = [0u8; LINE_MAX];
        let n = status.emit(&mut buf).unwrap_or(0);
        self.finish((buf, n), After::Listen, now);
    }

    fn receive(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        len: u32,
        mut got: u32,
        mut since: Instant,
        mut reported: u64,
    ) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(self.tcp[self.conn]);
        let image = &mut self.staging.bytes_mut()[..len as usize];
        let mut moved = false;
        while got < len {
            match s.recv_slice(&mut image[got as usize..]) {
                Ok(n) if n > 0 => {
                    got += n as u32;
                    moved = true;
                }
                _ => break,
            }
        }
        if moved {
            since = now;
        }
        if got < len {
            if !s.may_recv() {
                warn!("control: FLASH image truncated at {=u32} of {=u32} bytes", got, len);
                self.error(ErrorCode::Truncated, format_args!("connection closed after {got} of {len} bytes"), now);
            } else if now >= since + IDLE_TIMEOUT {
                warn!("control: FLASH image stalled at {=u32} of {=u32} bytes", got, len);
                self.error(ErrorCode::Timeout, format_args!("no image bytes for 10 s ({got} of {len})"), now);
            } else {
                if u64::from(got) >= reported + PROGRESS_STEP {
                    reported = u64::from(got);
                    self.progress(sockets, Phase::Receive, reported, u64::from(len));
                }
                self.state = State::Receive { len, got, since, reported };
            }
            return moved;
        }
        self.progress(sockets, Phase::Receive, u64::from(len), u64::from(len));
        // Verified in RAM first: a bad image is refused before anything is erased.
        let checked = self.system.verify(&self.staging.bytes()[..len as usize]).map(|v| v.image_version);
        let version = match checked {
            Ok(v) => v,
            Err(e) => {
                warn!("control: FLASH image refused: {}", defmt::Display2Format(&e));
                self.error(ErrorCode::Refused, format_args!("{e}"), now);
                return true;
            }
        };
        self.progress(sockets, Phase::Verify, u64::from(len), u64::from(len));
        info!("control: image version {=u32:#x} verified, writing the inactive slot", version);
        self.state = State::Flash { job: self.flash.start(len, version), len, version, reported: (0, 0, 0) };
        true
    }

    fn flash(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        mut job: F::Job,
        len: u32,
        version: u32,
        reported: (u32, u64, u64),
    ) -> bool {
        let p = job.progress();
        let mut reported = reported;
        if p.erased > reported.0 {
            reported.0 = p.erased;
            self.progress(sockets, Phase::Erase, u64::from(p.erased), u64::from(p.sectors));
        }
        if u64::from(p.programmed) >= reported.1 + PROGRESS_STEP && p.programmed < p.total {
            reported.1 = u64::from(p.programmed);
            self.progress(sockets, Phase::Program, reported.1, u64::from(p.total));
        }
        if p.programmed == p.total && reported.1 < u64::from(p.total) {
            reported.1 = u64::from(p.total);
            self.progress(sockets, Phase::Program, reported.1, reported.1);
        }
        if u64::from(p.read_back) >= reported.2 + PROGRESS_STEP {
            reported.2 = u64::from(p.read_back);
            self.progress(sockets, Phase::Readback, reported.2, u64::from(p.total));
        }
        let (image, readback) = self.staging.bytes_mut().split_at_mut(READBACK_AT);
        let system = &self.system;
        let result = job.step(&image[..len as usize], readback, |copy| system.verify(copy).is_ok());
        match result {
            Ok(None) => {
                self.state = State::Flash { job, len, version, reported };
                // Busy only if the part has nothing pending (the next step can run at once).
                job_ready(&self.state)
            }
            Ok(Some(slot)) => {
                // The last words, the read back and its verification can all end within one step.
                if reported.1 < u64::from(len) {
                    self.progress(sockets, Phase::Program, u64::from(len), u64::from(len));
                }
                self.progress(sockets, Phase::Readback, u64::from(len), u64::from(len));
                self.progress(sockets, Phase::Verify, u64::from(len), u64::from(len));
                info!("control: slot {=u8} written, {=u32} bytes, on trial from the next boot", slot_index(slot), len);
                let name = control::slot_name(Some(slot_index(slot)));
                self.ok(&[("slot", &name), ("version", &Version(version)), ("bytes", &len)], After::Listen, now);
                true
            }
            Err(e) => {
                warn!(
                    "control: writing slot {=u8} failed: {}",
                    job.target().map_or(0xFF, slot_index),
                    defmt::Display2Format(&e)
                );
                self.error(ErrorCode::Flash, format_args!("{e}"), now);
                true
            }
        }
    }

    fn netboot(&mut self, sockets: &mut SocketSet<'_>, now: Instant, mtu: usize, job: Netboot) -> bool {
        let Netboot { server, name, name_len, mut attempt, retry_at, mut reported, fetched } = job;
        let why: &str;
        // Room for the longest image error (a security counter refusal names both counters).
        let mut detail = [0u8; 160];
        let mut detail_len = 0;
        if let Some(summary) = fetched {
            // Verified one poll after the last block, so the final ACK has left before the
            // verification's tens of milliseconds (the server would send the last block again).
            let len = summary.bytes as usize;
            match self.system.verify(&self.staging.bytes()[..len]) {
                Ok(v) => {
                    let version = v.image_version;
                    self.progress(sockets, Phase::Verify, summary.bytes, summary.bytes);
                    info!(
                        "netboot: {=u64} bytes in {=u64} blocks of {=u16}, window {=u16}, verified",
                        summary.bytes, summary.blocks, summary.blksize, summary.windowsize
                    );
                    self.ok(
                        &[("version", &Version(version)), ("bytes", &summary.bytes)],
                        After::Launch(len as u32),
                        now,
                    );
                    return true;
                }
                Err(e) => {
                    warn!("netboot: image refused: {}", defmt::Display2Format(&e));
                    why = "image refused";
                    let mut w = control::Line::new(&mut detail);
                    let _ = core::fmt::Write::write_fmt(&mut w, format_args!("{e}"));
                    detail_len = w.finish().unwrap_or(0);
                }
            }
        } else {
            let endpoint = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(server)), bpnet_tftp::wire::SERVER_PORT);
            if let Some(at) = retry_at {
                if now < at {
                    self.state = State::Netboot(Netboot { retry_at, ..job });
                    return false;
                }
                let config =
                    TftpConfig { blksize: TftpConfig::blksize_for_mtu(mtu), retries: 4, ..TftpConfig::default() };
                let transfer = match Transfer::new(endpoint, &name[..name_len], config) {
                    Ok(t) => t,
                    Err(_) => {
                        self.error(ErrorCode::BadRequest, format_args!("filename refused"), now);
                        return true;
                    }
                };
                self.transfers = self.transfers.wrapping_add(1);
                let port = TFTP_PORT_BASE + self.transfers % 16_000;
                if self.tftp.start(sockets, port, transfer).is_err() {
                    self.error(ErrorCode::Tftp, format_args!("cannot bind UDP port {port}"), now);
                    return true;
                }
                info!("netboot: attempt {=u32}, blksize {=u16}", attempt + 1, config.blksize);
                reported = 0;
            }
            let capacity = IMAGE_MAX as usize;
            let mut sink = Memory::new(&mut self.staging.bytes_mut()[..capacity]);
            let poll = self.tftp.poll(sockets, now, &mut sink);
            if let Some(t) = self.tftp.transfer() {
                let p = t.progress();
                if p.bytes >= reported + PROGRESS_STEP {
                    reported = p.bytes;
                    self.progress(sockets, Phase::Fetch, p.bytes, p.expected.unwrap_or(0).max(p.bytes));
                }
            }
            match poll.status {
                Some(TftpStatus::Running) | None => {
                    self.state = State::Netboot(Netboot { retry_at: None, reported, ..job });
                    return poll.busy;
                }
                Some(TftpStatus::Done(summary)) => {
                    // The transfer keeps answering a repeated last block until it is stopped: stop
                    // it only once the verification is done, one poll later.
                    self.progress(sockets, Phase::Fetch, summary.bytes, summary.bytes);
                    self.state = State::Netboot(Netboot { retry_at: None, reported, fetched: Some(summary), ..job });
                    return true;
                }
                Some(TftpStatus::Failed(f)) => {
                    self.tftp.stop(sockets);
                    why = match f {
                        Failure::Timeout { .. } => "timeout",
                        Failure::Server { .. } => "TFTP error",
                        Failure::TooLarge { .. } => "oversized",
                        Failure::SizeMismatch { .. } => "truncated",
                        _ => "transfer failed",
                    };
                    // The code is only logged: unread in a build without the log.
                    if let Failure::Server { code: _code, message } = f {
                        warn!("netboot: server error {=u16}: {=str}", _code.as_u16(), message.as_str());
                        let mut w = control::Line::new(&mut detail);
                        let _ = core::fmt::Write::write_fmt(&mut w, format_args!("{}", message.as_str()));
                        detail_len = w.finish().unwrap_or(0);
                    } else {
                        warn!("netboot: {=str} ({=?})", why, defmt::Debug2Format(&f));
                    }
                }
            }
        }
        self.tftp.stop(sockets);
        attempt += 1;
        if attempt > NETBOOT_RETRIES {
            let code = match why {
                "timeout" => ErrorCode::Timeout,
                "image refused" => ErrorCode::Refused,
                "oversized" => ErrorCode::TooLarge,
                _ => ErrorCode::Tftp,
            };
            let detail = core::str::from_utf8(&detail[..detail_len]).unwrap_or("");
            warn!("netboot: giving up after {=u32} attempts", attempt);
            let sep = if detail.is_empty() { "" } else { ": " };
            self.error(code, format_args!("{why} after {attempt} attempts{sep}{detail}"), now);
            return true;
        }
        let wait = Duration::from_secs(1 << (attempt - 1));
        warn!("netboot: {=str}; retrying in {=u64} s", why, wait.secs());
        self.state = State::Netboot(Netboot { attempt, retry_at: Some(now + wait), reported: 0, fetched: None, ..job });
        true
    }
}

/// The flash job can step at once (nothing pending in the part).
fn job_ready<J: FlashJob>(state: &State<J>) -> bool {
    matches!(state, State::Flash { job, .. } if job.due().is_none())
}
