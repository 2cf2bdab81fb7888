//! The board as the outside half of QEMU's `x-pci-proxy-dev` (QEMU 7.2's multi-process PCI proxy,
//! hw/remote/proxy.c, hw/remote/mpqemu-link.c, include/hw/remote/mpqemu-link.h): QEMU forwards every
//! configuration cycle and every BAR access of the device over one Unix stream socket and waits for the
//! answer, so the guest sees the agent's real PCI function ([`crate::agentcfg`], BAR0 = IMMR, BAR1 =
//! inbound window 0).
//!
//! Messages (x86-64, little-endian): `i32 cmd`, 4 bytes of padding, `u64 size`, then `size` bytes; file
//! descriptors travel as SCM_RIGHTS with the header. Replies are `RET` with an 8-byte value.
//!
//! | cmd | name | body | reply |
//! | --- | --- | --- | --- |
//! | 0 | SYNC_SYSMEM | guest RAM regions, with their fds | none (the fds are closed: guest RAM is the `--host-ram-file`) |
//! | 2 | PCI_CFGWRITE | u32 addr, u32 value, i32 len | RET 0 |
//! | 3 | PCI_CFGREAD | u32 addr, u32 value, i32 len | RET value |
//! | 4 | BAR_WRITE | u64 address, u64 value, u32 size, u8 memory, padding | RET 0 |
//! | 5 | BAR_READ | same | RET value |
//! | 6 | SET_IRQFD | two fds | none (closed: under TCG nothing raises them; INTx goes through [`crate::intx`]) |
//! | 7 | DEVICE_RESET | — | RET 0 |
//!
//! Threading: a reader thread owns the receiving side; it hands each request to the board's thread and
//! ends the core's current run ([`CoreStopper`]), and wakes a board that waits for the host (an eventfd).
//! The board serves requests between runs ([`HostLink::serve`]) and writes the replies itself, after
//! the level of INTA# has been passed on, so an access that clears the interrupt's cause has lowered
//! the line before the guest's CPU resumes.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::BusError;
use crate::intx::IntxClient;
use crate::ivshmem::{poll_readable, signal_name, EventFd, Listener, Signals};
use crate::realtime::{CoreStopper, HostLink, Wake};
use crate::Board;

pub const CMD_SYNC_SYSMEM: i32 = 0;
pub const CMD_RET: i32 = 1;
pub const CMD_PCI_CFGWRITE: i32 = 2;
pub const CMD_PCI_CFGREAD: i32 = 3;
pub const CMD_BAR_WRITE: i32 = 4;
pub const CMD_BAR_READ: i32 = 5;
pub const CMD_SET_IRQFD: i32 = 6;
pub const CMD_DEVICE_RESET: i32 = 7;

/// `cmd`, padding, `size`.
pub const HEADER_LEN: usize = 16;
/// PciConfDataMsg: addr, val, len.
pub const CONFIG_BODY_LEN: usize = 12;
/// BarAccessMsg: addr, val, size, memory, padding.
pub const BAR_BODY_LEN: usize = 24;
/// At most REMOTE_MAX_FDS (8) descriptors come with a message.
const MAX_FDS: usize = 8;
/// Nothing QEMU sends is longer than SyncSysmemMsg (3 × 8 × 8 bytes); a larger size is a broken stream.
const MAX_BODY_LEN: u64 = 4096;

/// How long a host configuration cycle is held while the configuration lock is set before the host
/// bridge gives up (answered as a master abort).
pub const DEFAULT_CONFIG_RETRY_LIMIT: Duration = Duration::from_secs(30);

/// A request from QEMU, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    ConfigRead {
        offset: u32,
        len: u32,
    },
    ConfigWrite {
        offset: u32,
        value: u32,
        len: u32,
    },
    BarRead {
        addr: u64,
        size: u32,
        memory: bool,
    },
    BarWrite {
        addr: u64,
        value: u64,
        size: u32,
        memory: bool,
    },
    DeviceReset,
    /// A command this side does not know: answered with all ones, counted.
    Unknown(i32),
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Parse one message's body (QEMU's input: one length check per command, no casts of raw memory).
/// `Ok(None)`: a message that needs no answer. `Err`: a body of the wrong length for its command.
pub fn parse(cmd: i32, body: &[u8]) -> Result<Option<Request>, String> {
    let need = |n: usize| {
        if body.len() == n {
            Ok(())
        } else {
            Err(format!("command {cmd}: {} body bytes, expected {n}", body.len()))
        }
    };
    Ok(Some(match cmd {
        CMD_SYNC_SYSMEM | CMD_SET_IRQFD => return Ok(None),
        CMD_PCI_CFGREAD | CMD_PCI_CFGWRITE => {
            need(CONFIG_BODY_LEN)?;
            let (offset, value, len) = (le_u32(body, 0), le_u32(body, 4), le_u32(body, 8));
            if cmd == CMD_PCI_CFGREAD {
                Request::ConfigRead { offset, len }
            } else {
                Request::ConfigWrite { offset, value, len }
            }
        }
        CMD_BAR_READ | CMD_BAR_WRITE => {
            need(BAR_BODY_LEN)?;
            let (addr, value, size, memory) = (le_u64(body, 0), le_u64(body, 8), le_u32(body, 16), body[20] != 0);
            if cmd == CMD_BAR_READ {
                Request::BarRead { addr, size, memory }
            } else {
                Request::BarWrite { addr, value, size, memory }
            }
        }
        CMD_DEVICE_RESET => Request::DeviceReset,
        other => Request::Unknown(other),
    }))
}

/// A header: `cmd`, padding, `size`.
pub fn header(cmd: i32, size: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&cmd.to_le_bytes());
    h[8..].copy_from_slice(&size.to_le_bytes());
    h
}

/// Receive a header (with the descriptors that came with it, closed at once) and the body; `Ok(None)`
/// at the end of the stream.
fn receive(stream: &UnixStream) -> io::Result<Option<(i32, Vec<u8>, usize)>> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    let mut fds = 0;
    while got < HEADER_LEN {
        let mut iov = libc::iovec { iov_base: head[got..].as_mut_ptr().cast(), iov_len: HEADER_LEN - got };
        // Room for MAX_FDS descriptors, aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is its empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: the iovec and control buffer are live locals for the call.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the kernel filled `msg`'s control buffer; CMSG_FIRSTHDR/NXTHDR stay inside
        // msg_controllen, and each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors,
        // now owned by this process and closed here.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    for i in 0..count.min(MAX_FDS * 2) {
                        drop(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                        fds += 1;
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a header"));
        }
        got += n as usize;
    }
    let cmd = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let size = le_u64(&head, 8);
    if size > MAX_BODY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("command {cmd} announces {size} body bytes (at most {MAX_BODY_LEN})"),
        ));
    }
    let mut body = vec![0u8; size as usize];
    (&*stream).read_exact(&mut body)?;
    Ok(Some((cmd, body, fds)))
}

/// What the reader thread (and a [`ResetButton`]) hands over, in order.
enum Event {
    Connected(UnixStream),
    Request(Request, Instant),
    Reset,
    End(String),
}

/// A queued item: requests, and resets in their order among them.
enum Item {
    Request(Request, Instant),
    Reset,
}

/// Where the connection comes from.
pub enum Source {
    /// Accept one client on this socket (in the reader thread: the board runs meanwhile).
    Listen(Listener),
    /// Already connected (tests: one end of a socket pair).
    Connected(UnixStream),
}

/// Request an agent hard reset from any thread (the chassis asserting HRESET; SIGUSR1 does the same).
/// Requests sent after the press are served after the reset.
#[derive(Clone)]
pub struct ResetButton {
    events: Sender<Event>,
    wake: Arc<EventFd>,
}

impl ResetButton {
    pub fn press(&self) {
        let _ = self.events.send(Event::Reset);
        let _ = self.wake.signal();
    }
}

/// What the proxy saw, for the summary (the board counts the cycles themselves: [`Board::function_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProxyStats {
    pub requests: u64,
    /// Host configuration cycles held while the lock was set, and those given up (answered all ones).
    pub config_held: u64,
    pub config_given_up: u64,
    /// Time from receiving a BAR access to sending its reply, summed, and the accesses.
    pub bar0_service_ns: u64,
    pub bar0_accesses: u64,
    pub bar1_service_ns: u64,
    pub bar1_accesses: u64,
    /// INTA# level changes passed to the broker.
    pub intx_changes: u64,
    /// Descriptors received (and closed) with SYNC_SYSMEM / SET_IRQFD.
    pub fds_closed: u64,
    /// Commands not known (answered all ones).
    pub unknown_commands: u64,
}

impl ProxyStats {
    pub fn bar0_mean_ns(&self) -> u64 {
        self.bar0_service_ns.checked_div(self.bar0_accesses).unwrap_or(0)
    }

    pub fn bar1_mean_ns(&self) -> u64 {
        self.bar1_service_ns.checked_div(self.bar1_accesses).unwrap_or(0)
    }
}

/// The board's end of the proxy connection: a [`HostLink`].
pub struct AgentFunction {
    /// For replies; `None` until the client connected.
    stream: Option<UnixStream>,
    events: Receiver<Event>,
    /// For [`ResetButton`]s.
    sender: Sender<Event>,
    queue: VecDeque<Item>,
    /// A reset reached the front of the queue: reported by the next poll or wait.
    reset_due: bool,
    /// A configuration cycle held while the lock is set: the request, when it arrived.
    held: Option<(Request, Instant)>,
    retry_limit: Duration,
    wake: Arc<EventFd>,
    signals: Option<Signals>,
    intx: Option<IntxClient>,
    /// The level last passed on.
    intx_level: bool,
    stats: Rc<Cell<ProxyStats>>,
    fds: Arc<AtomicU32>,
    end: Option<String>,
    who: String,
    /// Host accesses that failed in a row (master abort, refused register), for the log: a host
    /// still using the BARs its agent's reset cleared fails every access until it restores them.
    failed_in_a_row: u64,
}

/// Failed host accesses in a row logged one by one; the rest of the run of failures is counted in
/// the summary (`master_aborts`, `refused_*`) and reported as one line when it ends.
const BUS_ERRORS_LOGGED: u64 = 16;

impl AgentFunction {
    /// Start serving: the reader thread takes `source` (accepting its one client first if it listens).
    /// `stopper` ends the core's run (at its next block boundary) when a request arrives; `signals` (SIGTERM/SIGINT end, SIGUSR1
    /// resets the agent); `intx` passes INTA# on; `who` prefixes log lines.
    pub fn start(
        source: Source,
        stopper: CoreStopper,
        signals: Option<Signals>,
        intx: Option<IntxClient>,
        who: &str,
    ) -> io::Result<AgentFunction> {
        let wake = Arc::new(EventFd::new()?);
        let (tx, events) = mpsc::channel();
        let fds = Arc::new(AtomicU32::new(0));
        let (thread_wake, thread_fds, sender) = (wake.clone(), fds.clone(), tx.clone());
        std::thread::Builder::new()
            .name("agent-function".to_string())
            .spawn(move || read_requests(source, &tx, &thread_wake, &stopper, &thread_fds))?;
        Ok(AgentFunction {
            stream: None,
            events,
            sender,
            queue: VecDeque::new(),
            reset_due: false,
            held: None,
            retry_limit: DEFAULT_CONFIG_RETRY_LIMIT,
            wake,
            signals,
            intx,
            intx_level: false,
            stats: Rc::new(Cell::new(ProxyStats::default())),
            fds,
            end: None,
            who: who.to_string(),
            failed_in_a_row: 0,
        })
    }

    pub fn set_config_retry_limit(&mut self, limit: Duration) {
        self.retry_limit = limit;
    }

    pub fn reset_button(&self) -> ResetButton {
        ResetButton { events: self.sender.clone(), wake: self.wake.clone() }
    }

    /// The statistics, shared: still readable once the board owns the link.
    pub fn stats(&self) -> Rc<Cell<ProxyStats>> {
        self.stats.clone()
    }

    fn update(&self, f: impl FnOnce(&mut ProxyStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Move what the reader thread handed over into the queue; the connection's end is noted.
    fn drain_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(Event::Connected(stream)) => {
                    eprintln!("{}: host connected to the agent function", self.who);
                    self.stream = Some(stream);
                }
                Ok(Event::Request(r, at)) => self.queue.push_back(Item::Request(r, at)),
                Ok(Event::Reset) => self.queue.push_back(Item::Reset),
                Ok(Event::End(why)) => {
                    if self.end.is_none() {
                        self.end = Some(why);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.end.is_none() {
                        self.end = Some("the reader thread ended".to_string());
                    }
                    break;
                }
            }
        }
    }

    fn collect(&mut self) -> Wake {
        let _ = self.wake.take();
        if let Some(signals) = &self.signals {
            signals.drain();
        }
        self.drain_events();
        let mut wake = Wake::default();
        let signalled = self.signals.as_ref().map_or(0, |s| s.take_resets()) > 0;
        wake.reset = std::mem::take(&mut self.reset_due) || signalled;
        if let Some(signal) = self.signals.as_ref().and_then(Signals::stop) {
            self.end.get_or_insert_with(|| format!("stopped by {}", signal_name(signal)));
        }
        // Replies owed are sent before the end is reported (the queue is served first).
        if self.queue.is_empty() && self.held.is_none() {
            wake.end.clone_from(&self.end);
        }
        wake
    }

    fn reply(&mut self, value: u64) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        let mut msg = [0u8; HEADER_LEN + 8];
        msg[..HEADER_LEN].copy_from_slice(&header(CMD_RET, 8));
        msg[HEADER_LEN..].copy_from_slice(&value.to_le_bytes());
        if let Err(e) = stream.write_all(&msg) {
            self.end.get_or_insert_with(|| format!("replying to the host: {e}"));
        }
    }

    /// Pass INTA#'s level on if it changed (synchronously: the broker has set it when this returns).
    fn update_intx(&mut self, board: &Board) {
        let level = board.intx_level();
        if level == self.intx_level {
            return;
        }
        self.intx_level = level;
        self.update(|s| s.intx_changes += 1);
        if let Some(intx) = &mut self.intx {
            if let Err(e) = intx.set(level) {
                self.end.get_or_insert_with(|| format!("INTx broker: {e}"));
            }
        }
    }

    /// Log a failed host access, or `None` (a good one) ending a run of failures.
    fn log_bus_error(&mut self, e: Option<&BusError>) {
        match e {
            Some(e) => {
                self.failed_in_a_row += 1;
                if self.failed_in_a_row <= BUS_ERRORS_LOGGED {
                    eprintln!("{}: host access {e}", self.who);
                }
                if self.failed_in_a_row == BUS_ERRORS_LOGGED {
                    eprintln!("{}: further failed host accesses are counted, not logged, until one succeeds", self.who);
                }
            }
            None => {
                if self.failed_in_a_row > BUS_ERRORS_LOGGED {
                    eprintln!("{}: {} host accesses in a row failed", self.who, self.failed_in_a_row);
                }
                self.failed_in_a_row = 0;
            }
        }
    }

    /// Serve one request; `false` if it is a configuration cycle held by the lock.
    fn serve_one(&mut self, board: &mut Board, request: Request, at: Instant) -> bool {
        let bars = |b: &Board| {
            let f = b.function_stats();
            (f.bar0_reads + f.bar0_writes, f.bar1_reads + f.bar1_writes)
        };
        let before = bars(board);
        let value = match request {
            Request::ConfigRead { offset, len } => match board.host_config_read(offset, len) {
                Ok(v) => u64::from(v),
                Err(_) => return false,
            },
            Request::ConfigWrite { offset, value, len } => match board.host_config_write(offset, len, value) {
                Ok(()) => 0,
                Err(_) => return false,
            },
            Request::BarRead { addr, size, memory } => {
                let (v, e) = if memory && matches!(size, 1 | 2 | 4 | 8) {
                    board.host_memory_read(addr, size)
                } else {
                    board.count_master_abort();
                    (u64::MAX, Some(BusError::MasterAbort(format!("{size}-byte I/O or odd-sized read at {addr:#x}"))))
                };
                self.log_bus_error(e.as_ref());
                v
            }
            Request::BarWrite { addr, value, size, memory } => {
                let e = if memory && matches!(size, 1 | 2 | 4 | 8) {
                    board.host_memory_write(addr, size, value)
                } else {
                    board.count_master_abort();
                    Some(BusError::MasterAbort(format!("{size}-byte I/O or odd-sized write at {addr:#x}")))
                };
                self.log_bus_error(e.as_ref());
                0
            }
            Request::DeviceReset => {
                board.pci_function_reset();
                0
            }
            Request::Unknown(cmd) => {
                eprintln!("{}: unknown proxy command {cmd}: answered with all ones", self.who);
                self.update(|s| s.unknown_commands += 1);
                u64::MAX
            }
        };
        self.update_intx(board);
        self.reply(value);
        let ns = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if matches!(request, Request::BarRead { .. } | Request::BarWrite { .. }) {
            let after = bars(board);
            let (bar0, bar1) = (after.0 > before.0, after.1 > before.1);
            self.update(|s| {
                if bar0 {
                    s.bar0_service_ns += ns;
                    s.bar0_accesses += 1;
                } else if bar1 {
                    s.bar1_service_ns += ns;
                    s.bar1_accesses += 1;
                }
            });
        }
        true
    }
}

impl HostLink for AgentFunction {
    fn poll(&mut self) -> Wake {
        self.collect()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Wake {
        self.drain_events();
        if !self.queue.is_empty() || self.end.is_some() || self.reset_due {
            return self.collect();
        }
        // A held configuration cycle must be given up in time even while the firmware waits.
        let timeout = match (&self.held, timeout) {
            (Some((_, at)), t) => {
                let left = self.retry_limit.saturating_sub(at.elapsed()).max(Duration::from_millis(1));
                Some(t.map_or(left, |t| t.min(left)))
            }
            (None, t) => t,
        };
        let mut fds = vec![self.wake.raw()];
        if let Some(s) = &self.signals {
            fds.push(s.raw());
        }
        if let Err(e) = poll_readable(&fds, timeout) {
            self.end.get_or_insert_with(|| format!("waiting for the host: {e}"));
        }
        self.collect()
    }

    fn serve(&mut self, board: &mut Board) {
        self.update(|s| s.fds_closed = u64::from(self.fds.load(Ordering::SeqCst)));
        loop {
            if let Some((request, at)) = self.held.take() {
                if board.config_locked() {
                    if at.elapsed() < self.retry_limit {
                        self.held = Some((request, at));
                        break;
                    }
                    // The host bridge gives up: a master abort, all ones for a read.
                    eprintln!(
                        "{}: host configuration cycle {request:?} held {:?} by the configuration lock: master abort",
                        self.who, self.retry_limit
                    );
                    board.count_master_abort();
                    self.update(|s| s.config_given_up += 1);
                    let value = if matches!(request, Request::ConfigRead { .. }) { u64::from(u32::MAX) } else { 0 };
                    self.reply(value);
                    continue;
                }
                if !self.serve_one(board, request, at) {
                    self.held = Some((request, at));
                    break;
                }
                continue;
            }
            self.drain_events();
            let (request, at) = match self.queue.pop_front() {
                None => break,
                // The board resets before anything queued after the reset is served.
                Some(Item::Reset) => {
                    self.reset_due = true;
                    break;
                }
                Some(Item::Request(request, at)) => (request, at),
            };
            self.update(|s| s.requests += 1);
            if !self.serve_one(board, request, at) {
                self.update(|s| s.config_held += 1);
                self.held = Some((request, at));
                break;
            }
        }
        self.update_intx(board);
    }
}

/// The reader thread: accept (if listening), then receive until the stream ends.
fn read_requests(source: Source, tx: &Sender<Event>, wake: &EventFd, stopper: &CoreStopper, fds: &AtomicU32) {
    let send = |event: Event| {
        let _ = tx.send(event);
        let _ = wake.signal();
        stopper.stop();
    };
    let stream = match source {
        Source::Connected(s) => s,
        Source::Listen(listener) => match listener.accept_one() {
            Ok(s) => s,
            Err(e) => return send(Event::End(format!("accepting the host: {e}"))),
        },
    };
    match stream.try_clone() {
        Ok(writer) => send(Event::Connected(writer)),
        Err(e) => return send(Event::End(format!("the host connection: {e}"))),
    }
    loop {
        match receive(&stream) {
            Ok(Some((cmd, body, n))) => {
                fds.fetch_add(n as u32, Ordering::SeqCst);
                match parse(cmd, &body) {
                    Ok(Some(request)) => send(Event::Request(request, Instant::now())),
                    Ok(None) => {}
                    Err(e) => return send(Event::End(format!("the host sent a malformed message: {e}"))),
                }
            }
            Ok(None) => return send(Event::End("the host closed the connection".to_string())),
            Err(e) => return send(Event::End(format!("the host connection failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_body(addr: u32, val: u32, len: i32) -> Vec<u8> {
        [addr.to_le_bytes(), val.to_le_bytes(), len.to_le_bytes()].concat()
    }

    #[test]
    fn parses_what_qemu_sends_and_refuses_bad_lengths() {
        assert_eq!(
            parse(CMD_PCI_CFGREAD, &config_body(0x10, 0, 4)),
            Ok(Some(Request::ConfigRead { offset: 0x10, len: 4 }))
        );
        assert_eq!(
            parse(CMD_PCI_CFGWRITE, &config_body(0x04, 0x406, 2)),
            Ok(Some(Request::ConfigWrite { offset: 0x04, value: 0x406, len: 2 }))
        );
        let mut bar = Vec::new();
        bar.extend_from_slice(&0xFEB0_8068u64.to_le_bytes());
        bar.extend_from_slice(&0x1u64.to_le_bytes());
        bar.extend_from_slice(&4u32.to_le_bytes());
        bar.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(
            parse(CMD_BAR_WRITE, &bar),
            Ok(Some(Request::BarWrite { addr: 0xFEB0_8068, value: 1, size: 4, memory: true }))
        );
        assert_eq!(parse(CMD_BAR_READ, &bar), Ok(Some(Request::BarRead { addr: 0xFEB0_8068, size: 4, memory: true })));
        assert!(parse(CMD_BAR_READ, &bar[..20]).is_err());
        assert!(parse(CMD_PCI_CFGREAD, &[0; 16]).is_err());
        assert_eq!(parse(CMD_SET_IRQFD, &[]), Ok(None));
        assert_eq!(parse(CMD_DEVICE_RESET, &[]), Ok(Some(Request::DeviceReset)));
        assert_eq!(parse(99, &[]), Ok(Some(Request::Unknown(99))));
        assert_eq!(header(CMD_RET, 8), [1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn receive_closes_passed_descriptors_and_refuses_huge_bodies() {
        let (a, b) = UnixStream::pair().unwrap();
        let fd = EventFd::new().unwrap();
        // SYNC_SYSMEM-like: a header with one descriptor, then a body.
        crate::ivshmem::send_message(&a, i64::from(CMD_SYNC_SYSMEM), Some(fd.raw())).unwrap();
        (&a).write_all(&[0u8; 8]).unwrap(); // the size half of the header: 0
        let (cmd, body, fds) = receive(&b).unwrap().unwrap();
        assert_eq!((cmd, body.len(), fds), (CMD_SYNC_SYSMEM, 0, 1));
        (&a).write_all(&header(CMD_BAR_READ, 1 << 20)).unwrap();
        assert!(receive(&b).is_err());
        drop(a);
        let (_, b2) = UnixStream::pair().unwrap();
        assert!(receive(&b2).unwrap().is_none());
    }
}
