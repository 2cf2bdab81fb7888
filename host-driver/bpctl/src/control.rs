//! The agent's control service (TCP port 5020): one request per connection, ASCII lines. The agent
//! answers with `PROGRESS <phase> <done> <total>` lines, then one `OK key=value ...` or
//! `ERROR <code> <text>`, then closes. Every line is the agent's and parsed as untrusted: a line that
//! does not parse ends the request with an error naming it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::Error;

pub use bpnet_contract::control::PORT;
use bpnet_contract::control::{Request, Response, LINE_MAX};

/// One line of the agent's answer, owned (the contract's [`Response`] borrows the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Progress { phase: String, done: u64, total: u64 },
    Ok(Vec<(String, String)>),
    Error { code: String, text: String },
}

/// A line (with or without its `\n`), parsed with the contract's grammar.
pub fn parse_line(line: &str) -> Result<Reply, String> {
    match Response::parse(line.as_bytes()) {
        Ok(Response::Progress { phase, done, total }) => {
            Ok(Reply::Progress { phase: phase.as_str().to_string(), done, total })
        }
        Ok(Response::Ok(fields)) => Ok(Reply::Ok(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())),
        Ok(Response::Error { code, text }) => Ok(Reply::Error { code: code.as_str().to_string(), text: text.into() }),
        Err(e) => Err(format!("unparsable answer from the agent ({e:?}): `{}`", line.escape_default())),
    }
}

/// A request line, `\n` included, by the contract's grammar.
pub fn request_line(request: &Request<'_>) -> Result<Vec<u8>, Error> {
    let mut buf = [0u8; LINE_MAX];
    let n = request.emit(&mut buf).map_err(|_| {
        Error::Usage(format!(
            "{request:?} does not fit a control request line (TFTP file name too long or with spaces?)"
        ))
    })?;
    Ok(buf[..n].to_vec())
}

/// The value of `key` in an `OK` line's pairs.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn open_error((what, e): (String, std::io::Error)) -> Error {
    if timed_out(&e) {
        // Our own reason (the module's heartbeat) as it is; a socket's timeout said in words.
        return match e.get_ref() {
            Some(why) => Error::Agent(format!("{what}: {why}")),
            None => Error::Agent(format!(
                "{what}: no answer to the connection (timed out): the agent does not respond (frozen, hung or \
                 powered off? `bpctl list` shows its heartbeat)"
            )),
        };
    }
    Error::Agent(format!("{what}: {e} (is the agent up with an address, and its firmware one with a control service?)"))
}

/// A socket timeout: `EAGAIN` ("Resource temporarily unavailable") from a read or write timeout, or
/// `ETIMEDOUT`.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// An error of `doing` on the connection `what`, a timeout said as one: what did not answer and for how
/// long, rather than the raw `EAGAIN`.
fn io_error(what: &str, doing: &str, limit: Duration, e: std::io::Error) -> Error {
    if timed_out(&e) {
        return Error::Agent(format!(
            "{what}: {doing}: no answer within {} s (timed out): the agent stopped responding (frozen, hung or \
             powered off? `bpctl list` shows its heartbeat)",
            limit.as_secs_f64().ceil()
        ));
    }
    Error::Agent(format!("{what}: {doing}: {e}"))
}

/// How long a request answered `ERROR busy` is tried again.
pub const BUSY_RETRY: Duration = Duration::from_secs(15);

/// A connection to one agent's control service, bound to its netdev (every agent may have the same
/// address).
pub struct Connection {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    what: String,
    /// The read and write timeout.
    limit: Duration,
}

impl Connection {
    pub fn open(netdev: &str, addr: Ipv4Addr, limit: Duration) -> Result<Connection, Error> {
        Connection::connect(netdev, addr, limit).map_err(open_error)
    }

    /// The connection, or the error with what was being done.
    fn connect(netdev: &str, addr: Ipv4Addr, limit: Duration) -> Result<Connection, (String, std::io::Error)> {
        let what = format!("{netdev}: control service {addr}:{PORT}");
        if let Some(why) = crate::agents::unresponsive(netdev) {
            return Err((what, std::io::Error::new(std::io::ErrorKind::TimedOut, why)));
        }
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| (what.clone(), e))?;
        socket.bind_device(Some(netdev.as_bytes())).map_err(|e| (what.clone(), e))?;
        let target = SocketAddr::V4(SocketAddrV4::new(addr, PORT));
        socket.connect_timeout(&target.into(), limit.min(Duration::from_secs(30))).map_err(|e| (what.clone(), e))?;
        let stream: TcpStream = socket.into();
        let set = stream.set_read_timeout(Some(limit)).and_then(|_| stream.set_write_timeout(Some(limit)));
        let clone = set.and_then(|_| stream.try_clone()).map_err(|e| (what.clone(), e))?;
        Ok(Connection { stream, reader: BufReader::new(clone), what, limit })
    }

    /// Send bytes (the request line, an image).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).map_err(|e| io_error(&self.what, "sending", self.limit, e))
    }

    /// A writer for the request's payload on another thread while this one reads the answer.
    pub fn writer(&self) -> Result<TcpStream, Error> {
        self.stream.try_clone().map_err(|e| Error::Agent(format!("{}: {e}", self.what)))
    }

    /// End the connection both ways (a sender still blocked on a peer that stopped reading returns).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// The next line of the answer; `None` when the agent closed without a final line.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, Error> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(&self.what, "reading the answer", self.limit, e))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            return Err(Error::Agent(format!(
                "{}: an answer line longer than {LINE_MAX} bytes or cut short",
                self.what
            )));
        }
        buf.pop();
        let text = String::from_utf8(buf)
            .map_err(|_| Error::Agent(format!("{}: an answer line that is not text", self.what)))?;
        parse_line(&text).map(Some).map_err(|e| Error::Agent(format!("{}: {e}", self.what)))
    }

    /// Read until the final line, handing each PROGRESS to `progress`. The OK's pairs, or the agent's
    /// ERROR as an error.
    pub fn finish(&mut self, mut progress: impl FnMut(&str, u64, u64)) -> Result<Vec<(String, String)>, Error> {
        loop {
            match self.next_reply()? {
                Some(Reply::Progress { phase, done, total }) => progress(&phase, done, total),
                Some(Reply::Ok(pairs)) => return Ok(pairs),
                Some(Reply::Error { code, text }) => {
                    return Err(Error::Agent(format!("{}: the agent refused: {code}: {text}", self.what)))
                }
                None => {
                    return Err(Error::Agent(format!(
                        "{}: the agent closed the connection without an answer",
                        self.what
                    )))
                }
            }
        }
    }

    /// One whole request with no payload: the OK's pairs. `ERROR busy` (the agent is serving another
    /// client's request) and a refused connection are tried again every second for up to
    /// [`BUSY_RETRY`].
    pub fn request(
        netdev: &str,
        addr: Ipv4Addr,
        request: &Request<'_>,
        limit: Duration,
    ) -> Result<Vec<(String, String)>, Error> {
        let line = request_line(request)?;
        let deadline = std::time::Instant::now() + BUSY_RETRY;
        loop {
            // A refused connection is the agent between listening sockets (it closes one to serve
            // the next): as transient as busy.
            let mut c = match Connection::connect(netdev, addr, limit) {
                Err((_, e))
                    if e.kind() == std::io::ErrorKind::ConnectionRefused && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                Err(e) => return Err(open_error(e)),
                Ok(c) => c,
            };
            c.send(&line)?;
            let mut busy = false;
            let answer = loop {
                match c.next_reply()? {
                    Some(Reply::Progress { .. }) => continue,
                    Some(Reply::Ok(pairs)) => break Ok(pairs),
                    Some(Reply::Error { code, text }) => {
                        busy = code == "busy";
                        break Err(Error::Agent(format!("{}: the agent refused: {code}: {text}", c.what)));
                    }
                    None => {
                        break Err(Error::Agent(format!(
                            "{}: the agent closed the connection without an answer",
                            c.what
                        )))
                    }
                }
            };
            if !busy || std::time::Instant::now() >= deadline {
                return answer;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The host's IPv4 address on the link to `addr` through `netdev`: the source address the kernel picks
/// for it (a UDP socket connected, nothing sent).
pub fn host_address(netdev: &str, addr: Ipv4Addr) -> Result<Ipv4Addr, Error> {
    let io = |e: std::io::Error| Error::Agent(format!("{netdev}: the host's address towards {addr}: {e}"));
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
    socket.bind_device(Some(netdev.as_bytes())).map_err(io)?;
    socket.connect(&SocketAddr::V4(SocketAddrV4::new(addr, PORT)).into()).map_err(io)?;
    match socket.local_addr().map_err(io)?.as_socket() {
        Some(SocketAddr::V4(a)) if !a.ip().is_unspecified() => Ok(*a.ip()),
        _ => Err(Error::Agent(format!("{netdev}: the host has no IPv4 address on this link"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_lines() {
        assert_eq!(
            parse_line("PROGRESS program 4096 122444").unwrap(),
            Reply::Progress { phase: "program".into(), done: 4096, total: 122444 }
        );
        assert_eq!(
            parse_line("OK slot=B version=1.2.3 bytes=122444\r").unwrap(),
            Reply::Ok(vec![
                ("slot".into(), "B".into()),
                ("version".into(), "1.2.3".into()),
                ("bytes".into(), "122444".into())
            ])
        );
        assert_eq!(parse_line("OK").unwrap(), Reply::Ok(vec![]));
        assert_eq!(
            parse_line("ERROR refused bad signature").unwrap(),
            Reply::Error { code: "refused".into(), text: "bad signature".into() }
        );
        assert_eq!(parse_line("ERROR busy").unwrap(), Reply::Error { code: "busy".into(), text: String::new() });
        assert_eq!(request_line(&Request::Flash { len: 3 }).unwrap(), b"FLASH 3\n");
        let netboot = Request::Netboot { server: [10, 83, 49, 1], filename: "fw.img" };
        assert_eq!(request_line(&netboot).unwrap(), b"NETBOOT 10.83.49.1 fw.img\n");
        assert!(request_line(&Request::Netboot { server: [10, 83, 49, 1], filename: "a b" }).is_err());
        let pairs = match parse_line("OK source=flash slot=B trial=0").unwrap() {
            Reply::Ok(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!((get(&pairs, "slot"), get(&pairs, "nope")), (Some("B"), None));
    }

    #[test]
    fn malformed_answers_are_refused() {
        for bad in [
            "",
            "HELLO",
            "PROGRESS program 5",
            "PROGRESS program x 5",
            "PROGRESS program 6 5",
            "PROGRESS dance 1 5",
            "PROGRESS program 1 5 extra",
            "OK slot",
            "OK =B",
            "ERROR",
            "ERROR nonsense text",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_line("OK\u{1}").unwrap_err().contains("\\u{1}"));
    }

    #[test]
    fn a_conversation_over_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let agent = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "FLASH 3\n");
            let mut image = [0u8; 3];
            r.read_exact(&mut image).unwrap();
            assert_eq!(&image, b"abc");
            s.write_all(b"PROGRESS receive 3 3\nPROGRESS program 1 2\nOK slot=B bytes=3\n").unwrap();
        });
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut c = Connection { stream, reader, what: "test".into(), limit: Duration::from_secs(5) };
        c.send(b"FLASH 3\nabc").unwrap();
        let mut seen = Vec::new();
        let pairs = c.finish(|p, d, t| seen.push((p.to_string(), d, t))).unwrap();
        assert_eq!(seen, [("receive".to_string(), 3, 3), ("program".to_string(), 1, 2)]);
        assert_eq!(get(&pairs, "slot"), Some("B"));
        agent.join().unwrap();
    }

    /// An agent that accepts and then never answers (its processor stopped): the timeout says what did
    /// not answer, not the raw EAGAIN.
    #[test]
    fn a_silent_agent_times_out_with_a_clear_message() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _held = listener.accept().unwrap();
        let limit = Duration::from_millis(200);
        stream.set_read_timeout(Some(limit)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut c = Connection { stream, reader, what: "bp0: control service".into(), limit };
        let e = c.next_reply().expect_err("no answer is an error").to_string();
        assert!(e.contains("bp0: control service: reading the answer: no answer within 1 s (timed out)"), "{e}");
        assert!(!e.contains("temporarily unavailable"), "{e}");
    }
}
