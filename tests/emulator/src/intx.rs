//! INTx for agents behind QEMU's proxy device under TCG (agent-function.md, "INTx under TCG"): the proxy's
//! own INTx path needs KVM, so the level of each agent's INTA# goes to one broker process that owns QEMU's
//! qtest socket and sets the I/O APIC input with `set_irq_in /machine/q35/ioapic unnamed-gpio-in <GSI>
//! <0|1>` (QEMU answers `OK`). qtest takes one client, and several slots share a GSI on a backplane, so
//! the broker ORs the levels of every agent on each GSI: the line is asserted while any agent asserts it.
//!
//! Client protocol (one line each way, ASCII): the emulator sends `<gsi> <0|1>\n` and gets `OK\n` once the
//! OR of all clients' levels on that GSI is what QEMU has (or, before QEMU's qtest socket is up, once the
//! level is recorded: the current ORs are pushed when it comes up). A malformed line gets `ERR <why>\n`.
//! A client that goes away stops asserting its lines.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use crate::ivshmem::{poll_readable, Listener, Signals};

/// The I/O APIC has 24 inputs.
pub const GSIS: u32 = 24;
/// How long QEMU may take to answer one qtest command.
const QTEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the broker tries to reach QEMU's qtest socket until it is up.
const QTEST_RETRY: Duration = Duration::from_millis(50);

/// The qtest command that sets `gsi` to `level`.
pub fn qtest_command(gsi: u32, level: bool) -> String {
    format!("set_irq_in /machine/q35/ioapic unnamed-gpio-in {gsi} {}\n", u8::from(level))
}

/// Parse a client's line: `<gsi> <0|1>`.
pub fn parse_level(line: &str) -> Result<(u32, bool), String> {
    let mut words = line.split_ascii_whitespace();
    let (Some(gsi), Some(level), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("expected `<gsi> <0|1>`, got {line:?}"));
    };
    let gsi: u32 = gsi.parse().ok().filter(|&g| g < GSIS).ok_or(format!("not a GSI (0..{GSIS}): {gsi:?}"))?;
    let level = match level {
        "0" => false,
        "1" => true,
        other => return Err(format!("not a level (0 or 1): {other:?}")),
    };
    Ok((gsi, level))
}

/// An emulator's connection to the broker for its one INTA# pin.
#[derive(Debug)]
pub struct IntxClient {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    gsi: u32,
}

impl IntxClient {
    /// Connect to the broker at `path` for `gsi` (retrying for a few seconds while the broker starts).
    pub fn connect(path: &Path, gsi: u32) -> io::Result<IntxClient> {
        if gsi >= GSIS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("GSI {gsi} is not an I/O APIC input")));
        }
        let mut tries = 0;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if tries < 100 && e.kind() != io::ErrorKind::PermissionDenied => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        };
        let reader = BufReader::new(stream.try_clone()?);
        Ok(IntxClient { stream, reader, gsi })
    }

    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Set this agent's level and wait until the broker has applied the OR.
    pub fn set(&mut self, level: bool) -> io::Result<()> {
        self.stream.write_all(format!("{} {}\n", self.gsi, u8::from(level)).as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the INTx broker closed the connection"));
        }
        if line.trim_end() != "OK" {
            return Err(io::Error::other(format!("the INTx broker answered {:?}", line.trim_end())));
        }
        Ok(())
    }
}

/// What the broker did, for its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    pub clients: u64,
    pub level_requests: u64,
    /// `set_irq_in` commands QEMU acknowledged.
    pub qtest_commands: u64,
    pub bad_lines: u64,
}

struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
    levels: BTreeMap<u32, bool>,
}

struct Qtest {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qtest {
    fn connect(path: &Path) -> Option<Qtest> {
        let stream = UnixStream::connect(path).ok()?;
        stream.set_read_timeout(Some(QTEST_TIMEOUT)).ok()?;
        let reader = BufReader::new(stream.try_clone().ok()?);
        Some(Qtest { stream, reader })
    }

    /// Send a command and wait for QEMU's `OK` (other lines, such as interrupt notifications, are
    /// skipped).
    fn command(&mut self, text: &str) -> io::Result<()> {
        self.stream.write_all(text.as_bytes())?;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QEMU closed the qtest connection"));
            }
            let line = line.trim_end();
            if line == "OK" || line.starts_with("OK ") {
                return Ok(());
            }
            if line.starts_with("FAIL") || line.starts_with("ERR") {
                return Err(io::Error::other(format!("QEMU refused {:?}: {line}", text.trim_end())));
            }
        }
    }
}

/// The broker: owns the listening socket and, once it is up, QEMU's qtest connection.
pub struct Broker {
    listener: Listener,
    qtest_path: std::path::PathBuf,
    qtest: Option<Qtest>,
    qtest_was_up: bool,
    clients: Vec<Client>,
    /// The OR on each GSI as last recorded (and, while qtest is up, applied).
    applied: BTreeMap<u32, bool>,
    stats: BrokerStats,
}

impl Broker {
    pub fn new(socket: &Path, qtest: &Path) -> io::Result<Broker> {
        let listener = Listener::bind(socket)?;
        listener_socket(&listener).set_nonblocking(true)?;
        Ok(Broker {
            listener,
            qtest_path: qtest.to_path_buf(),
            qtest: None,
            qtest_was_up: false,
            clients: Vec::new(),
            applied: BTreeMap::new(),
            stats: BrokerStats::default(),
        })
    }

    pub fn stats(&self) -> BrokerStats {
        self.stats
    }

    fn or_of(&self, gsi: u32) -> bool {
        self.clients.iter().any(|c| c.levels.get(&gsi).copied().unwrap_or(false))
    }

    /// Bring QEMU's line `gsi` to the clients' OR; `Err` when QEMU's qtest connection broke.
    fn apply(&mut self, gsi: u32) -> io::Result<()> {
        let level = self.or_of(gsi);
        if self.applied.get(&gsi) == Some(&level) {
            return Ok(());
        }
        self.applied.insert(gsi, level);
        if let Some(q) = &mut self.qtest {
            q.command(&qtest_command(gsi, level))?;
            self.stats.qtest_commands += 1;
        }
        Ok(())
    }

    /// Serve until SIGTERM/SIGINT (`signals`), or QEMU's qtest connection closes after having been up
    /// (`Ok`: why it ended).
    pub fn run(&mut self, signals: Option<&Signals>) -> io::Result<String> {
        loop {
            if let Some(s) = signals.and_then(Signals::stop) {
                return Ok(format!("stopped by {}", crate::ivshmem::signal_name(s)));
            }
            if self.qtest.is_none() {
                if let Some(q) = Qtest::connect(&self.qtest_path) {
                    self.qtest = Some(q);
                    self.qtest_was_up = true;
                    // Push every recorded OR: QEMU starts with all lines low.
                    let known: Vec<(u32, bool)> = self.applied.iter().map(|(&g, &l)| (g, l)).collect();
                    for (gsi, level) in known {
                        if let Some(q) = &mut self.qtest {
                            if let Err(e) = q.command(&qtest_command(gsi, level)) {
                                return Ok(format!("QEMU's qtest connection ended: {e}"));
                            }
                            self.stats.qtest_commands += 1;
                        }
                    }
                }
            }
            let mut fds: Vec<RawFd> = vec![listener_socket(&self.listener).as_raw_fd()];
            fds.extend(self.clients.iter().map(|c| c.stream.as_raw_fd()));
            let qtest_index = fds.len();
            if let Some(q) = &self.qtest {
                fds.push(q.stream.as_raw_fd());
            }
            let signal_index = fds.len();
            if let Some(s) = signals {
                fds.push(s.raw());
            }
            let timeout = if self.qtest.is_none() { Some(QTEST_RETRY) } else { None };
            let revents = poll_readable(&fds, timeout)?;
            // Clients that had something to say (before new ones are accepted below).
            let mut ready: Vec<bool> = revents[1..1 + self.clients.len()].iter().map(|&r| r != 0).collect();
            if signals.is_some() && revents[signal_index] != 0 {
                if let Some(s) = signals {
                    s.drain();
                }
            }
            if self.qtest.is_some() && revents[qtest_index] != 0 {
                // QEMU sends nothing unasked: readable means it closed (or an unasked line, skipped).
                let mut buf = [0u8; 256];
                let closed = match self.qtest.as_ref().map(|q| (&q.stream).read(&mut buf)) {
                    Some(Ok(0)) | Some(Err(_)) => true,
                    _ => false,
                };
                if closed {
                    return Ok("QEMU's qtest connection closed".to_string());
                }
            }
            if revents[0] != 0 {
                while let Ok((stream, _)) = listener_socket(&self.listener).accept() {
                    stream.set_nonblocking(true)?;
                    self.clients.push(Client { stream, pending: Vec::new(), levels: BTreeMap::new() });
                    self.stats.clients += 1;
                }
            }
            // Clients in order; one that closed is removed and its lines re-evaluated.
            let mut i = 0;
            while i < self.clients.len() {
                if !ready.get(i).copied().unwrap_or(false) {
                    i += 1;
                    continue;
                }
                match self.serve_client(i) {
                    Ok(true) => i += 1,
                    Ok(false) => {
                        let gone = self.clients.remove(i);
                        ready.remove(i);
                        for gsi in gone.levels.keys() {
                            if let Err(e) = self.apply(*gsi) {
                                return Ok(format!("QEMU's qtest connection ended: {e}"));
                            }
                        }
                    }
                    Err(e) => return Ok(format!("QEMU's qtest connection ended: {e}")),
                }
            }
        }
    }

    /// Read what client `i` sent and answer each complete line; `Ok(false)` when it closed, `Err` when
    /// QEMU's side broke.
    fn serve_client(&mut self, i: usize) -> io::Result<bool> {
        let mut buf = [0u8; 512];
        let mut open = true;
        loop {
            match (&self.clients[i].stream).read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => self.clients[i].pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    open = false;
                    break;
                }
            }
        }
        while let Some(end) = self.clients[i].pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.clients[i].pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.stats.level_requests += 1;
            let answer = match parse_level(&text) {
                Ok((gsi, level)) => {
                    self.clients[i].levels.insert(gsi, level);
                    self.apply(gsi)?;
                    "OK\n".to_string()
                }
                Err(why) => {
                    self.stats.bad_lines += 1;
                    format!("ERR {why}\n")
                }
            };
            // A client that cannot take its answer is gone; it is removed at its end of stream.
            let stream = &self.clients[i].stream;
            let _ = stream.set_nonblocking(false);
            let _ = (&*stream).write_all(answer.as_bytes());
            let _ = stream.set_nonblocking(true);
        }
        if self.clients[i].pending.len() > 4096 {
            // No line is that long: a client sending garbage without newlines is cut off.
            return Ok(false);
        }
        Ok(open)
    }
}

fn listener_socket(l: &Listener) -> &UnixListener {
    l.socket()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    /// A stand-in for QEMU's qtest socket: records each command with the time it arrived, answers `OK`
    /// after `delay`, and closes after `count` commands.
    fn fake_qtest(path: &Path, delay: Duration, count: usize) -> mpsc::Receiver<(String, Instant)> {
        let listener = UnixListener::bind(path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            for _ in 0..count {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                tx.send((line, Instant::now())).unwrap();
                std::thread::sleep(delay);
                out.write_all(b"OK\n").unwrap();
            }
        });
        rx
    }

    #[test]
    fn lines_parse_strictly() {
        assert_eq!(parse_level("20 1"), Ok((20, true)));
        assert_eq!(parse_level("3 0"), Ok((3, false)));
        assert!(parse_level("24 1").is_err());
        assert!(parse_level("20 2").is_err());
        assert!(parse_level("20").is_err());
        assert!(parse_level("20 1 x").is_err());
        assert_eq!(qtest_command(21, true), "set_irq_in /machine/q35/ioapic unnamed-gpio-in 21 1\n");
    }

    #[test]
    fn ors_levels_records_before_qemu_and_answers_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, qtest) = (dir.path().join("broker"), dir.path().join("qtest"));
        let mut broker = Broker::new(&socket, &qtest).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let end = broker.run(None).unwrap();
            done_tx.send((end, broker.stats())).unwrap();
        });
        let mut a = IntxClient::connect(&socket, 20).unwrap();
        let mut b = IntxClient::connect(&socket, 20).unwrap();
        let mut c = IntxClient::connect(&socket, 21).unwrap();
        // Before QEMU is up: recorded and answered.
        a.set(true).unwrap();
        c.set(true).unwrap();
        c.set(false).unwrap();
        // QEMU comes up: the current ORs are pushed (GSI 20 high, 21 low), then every change.
        let commands = fake_qtest(&qtest, Duration::from_millis(50), 6);
        let pushed: Vec<String> = (0..2).map(|_| commands.recv_timeout(Duration::from_secs(5)).unwrap().0).collect();
        assert_eq!(pushed, [qtest_command(20, true), qtest_command(21, false)]);
        // B joins A on GSI 20: the OR does not change, no command. A leaves: still high (B).
        b.set(true).unwrap();
        a.set(false).unwrap();
        assert!(commands.try_recv().is_err(), "OR unchanged: nothing sent to QEMU");
        // B lowers: the line goes low, and B's OK comes only after QEMU's.
        let before = Instant::now();
        b.set(false).unwrap();
        let answered = Instant::now();
        let (cmd, at) = commands.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(cmd, qtest_command(20, false));
        assert!(at >= before && answered >= at + Duration::from_millis(50), "OK after QEMU's OK");
        // A client that goes away while asserting stops asserting.
        c.set(true).unwrap();
        assert_eq!(commands.recv_timeout(Duration::from_secs(5)).unwrap().0, qtest_command(21, true));
        drop(c);
        assert_eq!(commands.recv_timeout(Duration::from_secs(5)).unwrap().0, qtest_command(21, false));
        // Garbage gets an error, not a crash.
        let mut raw = UnixStream::connect(&socket).unwrap();
        raw.write_all(b"99 1\n").unwrap();
        let mut line = String::new();
        BufReader::new(raw.try_clone().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("ERR"), "{line}");
        // QEMU goes away (the fake closes after 6 commands; this is the 6th): the broker ends.
        a.set(true).unwrap();
        let (end, stats) = done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(end.contains("qtest"), "{end}");
        assert_eq!((stats.clients, stats.bad_lines), (4, 1));
    }
}
