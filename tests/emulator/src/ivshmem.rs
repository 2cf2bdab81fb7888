//! The agent as the ivshmem server of QEMU's `ivshmem-doorbell` device (QEMU's docs/specs/ivshmem-spec.rst):
//! the virtual backplane's bus personality.
//!
//! One server serves one QEMU client, the host. On connect it sends little-endian 64-bit integers, each in
//! its own message so a passed descriptor travels with the right one: the protocol version (0); the
//! client's peer id ([`GUEST_PEER`]); -1 with the shared memory (the agent's shared region, which is the
//! device's BAR2); then the agent's peer id ([`AGENT_PEER`]) once per vector with that vector's eventfd,
//! and the client's own id once per vector with its eventfds.
//!
//! * Host → agent: the guest writes BAR0+12 = `(AGENT_PEER << 16) | vector`; QEMU writes the agent's
//!   eventfd for that vector. Vector [`ivshmem::VECTOR_WORK`] is the inbound doorbell bit
//!   [`notify::WORK`].
//! * Agent → host: the emulator writes the guest's eventfd for a vector; QEMU raises that MSI-X vector.
//!   The firmware rings outbound doorbell bits ([`notify::STATUS`] → [`ivshmem::VECTOR_STATUS`],
//!   [`notify::LINK`] → [`ivshmem::VECTOR_LINK`]). This personality has no host read of ODR (an MSI-X
//!   message is a posted write ordered behind the agent's DMA, so the host owes no read), so the emulator
//!   forwards and acknowledges ODR itself.
//!
//! The server also owns the process's stop signals (SIGTERM, SIGINT) and the agent-reset request
//! (SIGUSR1, the chassis asserting the agent's HRESET), delivered through a pipe so every wait sees them.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use bpnet_contract::{ivshmem, notify};

use crate::realtime::{HostLink, Wake};

/// Protocol version the server announces.
pub const PROTOCOL_VERSION: i64 = 0;
/// The agent's peer id: the server's own eventfds, which the host rings.
pub const AGENT_PEER: i64 = ivshmem::AGENT_PEER as i64;
/// The id given to the QEMU client, the host.
pub const GUEST_PEER: i64 = 1;
/// Vectors per peer (the device must be created with `vectors=` this many).
pub const VECTORS: usize = ivshmem::VECTORS as usize;

/// Outbound doorbell bit → the host's MSI-X vector.
const OUTBOUND_VECTORS: [(u32, usize); 2] =
    [(notify::STATUS, ivshmem::VECTOR_STATUS as usize), (notify::LINK, ivshmem::VECTOR_LINK as usize)];

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A Linux eventfd (non-blocking).
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` is a fresh descriptor owned by nothing else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Add one to the counter (wakes whoever polls it).
    pub fn signal(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to a descriptor this value owns.
        let n = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n == 8 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The count since the last take, resetting it (0 if none).
    pub fn take(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local buffer from a descriptor this value owns.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 8 {
            return Ok(u64::from_ne_bytes(buf));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        }
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Send one protocol message: `value` little-endian, with `fd` attached (SCM_RIGHTS) if given.
pub fn send_message(stream: &UnixStream, value: i64, fd: Option<RawFd>) -> io::Result<()> {
    let bytes = value.to_le_bytes();
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // Room for one control message carrying one descriptor, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic on the length.
        let (space, len) = unsafe { (libc::CMSG_SPACE(4) as usize, libc::CMSG_LEN(4) as usize) };
        debug_assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed, aligned bytes that live for the call, so the first
        // header is inside them and its data has room for one int.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = len as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: `msg` points at the live iovec and control buffer above for the duration of the call.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != bytes.len() {
        return Err(io::Error::other(format!("short send: {n} of 8 bytes")));
    }
    Ok(())
}

// ---- signals ----

/// Write end of the signal pipe (-1 before [`Signals::install`]).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
/// The stop signal received (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Agent reset requests not yet taken.
static RESET_REQUESTS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    if signal == libc::SIGUSR1 {
        RESET_REQUESTS.fetch_add(1, Ordering::SeqCst);
    } else {
        STOP_SIGNAL.store(signal, Ordering::SeqCst);
    }
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 0u8;
        // SAFETY: write(2) is async-signal-safe; one byte from a live local. A full pipe (EAGAIN) is fine:
        // the reader is already due to wake.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// SIGTERM/SIGINT (stop) and SIGUSR1 (reset the agent), as a descriptor to poll and flags to read.
#[derive(Debug)]
pub struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

impl Signals {
    /// Install the handlers (once per process).
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the live array.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
        // SAFETY: both descriptors are fresh and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1] {
            // SAFETY: sigaction is plain data; the handler only touches atomics and write(2).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                check(libc::sigaction(signal, &action, std::ptr::null_mut()))?;
            }
        }
        Ok(Signals { read, _write: write })
    }

    /// The stop signal received, if any.
    pub fn stop(&self) -> Option<i32> {
        match STOP_SIGNAL.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Reset requests since the last call.
    pub fn take_resets(&self) -> u32 {
        RESET_REQUESTS.swap(0, Ordering::SeqCst)
    }

    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a live local buffer from a non-blocking descriptor this value owns.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// Wait for any of `fds` to be readable (or hung up); `None` timeout: no limit. Returns the revents.
pub(crate) fn poll_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<libc::c_short>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        // SAFETY: `pfds` and `ts` are live for the call; a null timeout means no limit.
        let n = unsafe { libc::ppoll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ts_ptr, std::ptr::null()) };
        if n >= 0 {
            return Ok(pfds.iter().map(|p| p.revents).collect());
        }
        let e = io::Error::last_os_error();
        // A signal interrupted the wait: the signal pipe is readable now, poll again without waiting.
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

// ---- the listening socket ----

/// The server's listening Unix socket; the socket file is removed on drop.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Listen at `path` (a stale socket file left there is replaced; any other file is refused).
    pub fn bind(path: &Path) -> io::Result<Listener> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        Ok(Listener { listener, path: path.to_path_buf() })
    }

    /// Wait for the client; `Ok(None)` if a stop signal came first.
    pub fn accept(&self, signals: &Signals) -> io::Result<Option<UnixStream>> {
        loop {
            if signals.stop().is_some() {
                return Ok(None);
            }
            let revents = poll_readable(&[self.listener.as_raw_fd(), signals.raw()], None)?;
            if revents[1] != 0 {
                signals.drain();
            }
            if revents[0] != 0 {
                return self.listener.accept().map(|(stream, _)| Some(stream));
            }
        }
    }
}

impl Listener {
    pub fn socket(&self) -> &UnixListener {
        &self.listener
    }

    /// Accept one client and stop listening (the socket file goes with the listener).
    pub fn accept_one(self) -> io::Result<UnixStream> {
        self.listener.accept().map(|(stream, _)| stream)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---- one served client ----

/// What the server saw and did, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Host rings of [`ivshmem::VECTOR_WORK`] (eventfd counts: rings that came close together count each).
    pub work_doorbells: u64,
    /// Host rings of [`ivshmem::VECTOR_CONTROL`] (a request in the boot block).
    pub control_doorbells: u64,
    /// Host rings of agent vectors that mean nothing (refused).
    pub unknown_doorbells: u64,
    /// Interrupts sent to the host, per vector.
    pub interrupts: [u64; VECTORS],
    /// Outbound doorbell bits with no vector in this personality (refused), counted per ring.
    pub unmapped_outbound: u64,
    /// Bytes the client sent after the set-up (the protocol has none: read and ignored).
    pub unexpected_bytes: u64,
}

/// The connection to the host: the socket, the agent's eventfds (rung by the host) and the host's
/// (rung by the agent).
#[derive(Debug)]
pub struct Server {
    stream: UnixStream,
    agent: Vec<EventFd>,
    guest: Vec<EventFd>,
    signals: Signals,
    stats: Cell<Stats>,
    ended: Cell<bool>,
}

impl Server {
    /// Accept the client and send it the set-up; `Ok(None)` if a stop signal came first.
    pub fn accept(listener: &Listener, shared: &File, signals: Signals) -> io::Result<Option<Server>> {
        let Some(stream) = listener.accept(&signals)? else {
            return Ok(None);
        };
        let agent = (0..VECTORS).map(|_| EventFd::new()).collect::<io::Result<Vec<_>>>()?;
        let guest = (0..VECTORS).map(|_| EventFd::new()).collect::<io::Result<Vec<_>>>()?;
        send_message(&stream, PROTOCOL_VERSION, None)?;
        send_message(&stream, GUEST_PEER, None)?;
        send_message(&stream, -1, Some(shared.as_raw_fd()))?;
        for fd in &agent {
            send_message(&stream, AGENT_PEER, Some(fd.raw()))?;
        }
        for fd in &guest {
            send_message(&stream, GUEST_PEER, Some(fd.raw()))?;
        }
        // From here the client sends nothing; reads only detect its end.
        stream.set_nonblocking(true)?;
        Ok(Some(Server { stream, agent, guest, signals, stats: Cell::new(Stats::default()), ended: Cell::new(false) }))
    }

    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// The agent rang outbound doorbell `bits`: interrupt the host on each bit's vector.
    pub fn ring_outbound(&self, bits: u32) {
        let mut stats = self.stats.get();
        let mut rest = bits;
        for (bit, vector) in OUTBOUND_VECTORS {
            if bits & bit != 0 {
                rest &= !bit;
                // A failed write means the host is gone; the next wait reports the disconnect.
                if self.guest[vector].signal().is_ok() {
                    stats.interrupts[vector] += 1;
                }
            }
        }
        if rest != 0 {
            stats.unmapped_outbound += 1;
        }
        self.stats.set(stats);
    }

    /// Collect what is pending (the caller polled or waited first).
    fn collect(&self, revents: &[libc::c_short]) -> Wake {
        let mut wake = Wake::default();
        let mut stats = self.stats.get();
        for (vector, fd) in self.agent.iter().enumerate() {
            if revents.get(vector).is_some_and(|&r| r == 0) {
                continue;
            }
            let n = match fd.take() {
                Ok(n) => n,
                Err(e) => {
                    wake.end = Some(format!("reading the eventfd of vector {vector}: {e}"));
                    0
                }
            };
            if n == 0 {
                continue;
            }
            if vector == ivshmem::VECTOR_WORK as usize {
                stats.work_doorbells += n;
                wake.doorbells |= notify::WORK;
            } else if vector == ivshmem::VECTOR_CONTROL as usize {
                stats.control_doorbells += n;
                wake.doorbells |= notify::CONTROL;
            } else {
                stats.unknown_doorbells += n;
            }
        }
        if revents.get(VECTORS).is_some_and(|&r| r != 0) {
            let mut buf = [0u8; 256];
            match (&self.stream).read(&mut buf) {
                Ok(0) => wake.end = Some("the host closed the connection".to_string()),
                Ok(n) => stats.unexpected_bytes += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => wake.end = Some(format!("the host connection failed: {e}")),
            }
        }
        if revents.get(VECTORS + 1).is_some_and(|&r| r != 0) {
            self.signals.drain();
        }
        if self.signals.take_resets() > 0 {
            wake.reset = true;
        }
        if let Some(signal) = self.signals.stop() {
            wake.end = Some(format!("stopped by {}", signal_name(signal)));
        }
        self.stats.set(stats);
        if wake.end.is_some() {
            self.ended.set(true);
        }
        wake
    }

    fn wait_for(&self, timeout: Option<Duration>) -> Wake {
        if self.ended.get() {
            return Wake { end: Some("the host side already ended".to_string()), ..Wake::default() };
        }
        let mut fds: Vec<RawFd> = self.agent.iter().map(EventFd::raw).collect();
        fds.push(self.stream.as_raw_fd());
        fds.push(self.signals.raw());
        match poll_readable(&fds, timeout) {
            Ok(revents) => self.collect(&revents),
            Err(e) => {
                self.ended.set(true);
                Wake { end: Some(format!("waiting for the host: {e}")), ..Wake::default() }
            }
        }
    }
}

/// The board's view of the server.
impl HostLink for std::rc::Rc<Server> {
    fn poll(&mut self) -> Wake {
        self.wait_for(Some(Duration::ZERO))
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Wake {
        self.wait_for(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// Receive one message: the value and the descriptor passed with it, if any.
    fn recv_message(stream: &UnixStream) -> (i64, Option<OwnedFd>) {
        let mut bytes = [0u8; 8];
        let mut iov = libc::iovec { iov_base: bytes.as_mut_ptr().cast(), iov_len: 8 };
        let mut control = [0u64; 4];
        // SAFETY: plain data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: buffers live for the call.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
        assert_eq!(n, 8);
        // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR checks the length.
        let fd = unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (!cmsg.is_null()).then(|| {
                assert_eq!(((*cmsg).cmsg_level, (*cmsg).cmsg_type), (libc::SOL_SOCKET, libc::SCM_RIGHTS));
                OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()))
            })
        };
        (i64::from_le_bytes(bytes), fd)
    }

    fn write_eventfd(fd: &OwnedFd) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: 8 bytes from a live buffer.
        assert_eq!(unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) }, 8);
    }

    fn read_eventfd(fd: &OwnedFd) -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: 8 bytes into a live buffer (the eventfd is non-blocking: -1 when zero).
        let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
        if n == 8 {
            u64::from_ne_bytes(b)
        } else {
            0
        }
    }

    /// Plays QEMU's side of the protocol against the real server, over a real socket.
    #[test]
    fn setup_doorbells_interrupts_and_disconnect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ivs.sock");
        let listener = Listener::bind(&path).unwrap();
        let shm = tempfile::tempfile().unwrap();
        shm.set_len(4096).unwrap();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let stream = UnixStream::connect(&client_path).unwrap();
            let mut msgs = Vec::new();
            for _ in 0..3 + 2 * VECTORS {
                msgs.push(recv_message(&stream));
            }
            (stream, msgs)
        });
        let signals = Signals::install().unwrap();
        let server = std::rc::Rc::new(Server::accept(&listener, &shm, signals).unwrap().unwrap());
        let (stream, msgs) = client.join().unwrap();
        let values: Vec<i64> = msgs.iter().map(|m| m.0).collect();
        assert_eq!(values, [0, 1, -1, 0, 0, 1, 1]);
        assert!(msgs[0].1.is_none() && msgs[1].1.is_none());
        let shm_fd = msgs[2].1.as_ref().unwrap();
        // SAFETY: stat is plain data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat into a live struct.
        assert_eq!(unsafe { libc::fstat(shm_fd.as_raw_fd(), &mut st) }, 0);
        assert_eq!(st.st_size, 4096, "the shared memory itself was passed");
        let agent_work = msgs[3].1.as_ref().unwrap();
        let agent_other = msgs[4].1.as_ref().unwrap();
        let guest_status = msgs[5].1.as_ref().unwrap();
        let guest_link = msgs[6].1.as_ref().unwrap();

        let mut link = server.clone();
        assert!(link.poll().is_empty());
        // The host rings the work vector (twice before the agent looks: one wake, both counted).
        write_eventfd(agent_work);
        write_eventfd(agent_work);
        let wake = link.wait(Some(Duration::from_secs(5)));
        assert_eq!(wake, Wake { doorbells: notify::WORK, ..Wake::default() });
        assert_eq!(server.stats().work_doorbells, 2);
        // The control vector is the inbound doorbell's CONTROL bit.
        write_eventfd(agent_other);
        let wake = link.wait(Some(Duration::from_secs(5)));
        assert_eq!(wake, Wake { doorbells: notify::CONTROL, ..Wake::default() });
        assert_eq!(server.stats().control_doorbells, 1);
        assert_eq!(server.stats().unknown_doorbells, 0);
        // Nothing pending: the wait times out.
        let t = std::time::Instant::now();
        assert!(link.wait(Some(Duration::from_millis(20))).is_empty());
        assert!(t.elapsed() >= Duration::from_millis(20));

        server.ring_outbound(notify::STATUS);
        server.ring_outbound(notify::STATUS | notify::LINK | 0x1);
        assert_eq!((read_eventfd(guest_status), read_eventfd(guest_link)), (2, 1));
        let stats = server.stats();
        assert_eq!((stats.interrupts, stats.unmapped_outbound), ([2, 1], 1));

        drop(stream);
        let wake = link.wait(Some(Duration::from_secs(5)));
        assert_eq!(wake.end.as_deref(), Some("the host closed the connection"));
        assert!(link.poll().end.is_some(), "stays ended");
        drop(listener);
        assert!(!path.exists(), "socket file removed");
    }
}
