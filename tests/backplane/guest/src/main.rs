//! `bpnet-guest`: what the virtual backplane's guest needs that busybox and Debian's ip, ethtool and
//! devlink do not have. Runs inside the
//! Linux guest (static binary), prints one result line per command on stdout, exits non-zero on failure.
//!
//! * `echo DEV ADDR BYTES [SECONDS]` — TCP echo of BYTES to ADDR port 7 through DEV (SO_BINDTODEVICE: every
//!   agent may have the same address), sending a pseudo-random stream while reading the echo back, verified
//!   byte for byte; prints `bytes=N seconds=S mbit=M` or where the first difference is.
//! * `send DEV ADDR BYTES [SECONDS]` — TCP throughput host → agent: BYTES to the agent's discard service
//!   (port 9), then the host's FIN; done when the agent closes in turn (it has taken every byte); prints
//!   `bytes=N seconds=S mbit=M`.
//! * `recv DEV ADDR BYTES [SECONDS]` — TCP throughput agent → host: asks the agent's sized bulk service
//!   (port 5019) for BYTES, checks every byte against the services' pattern and that exactly BYTES arrive
//!   before the agent closes; prints `bytes=N seconds=S mbit=M` or where the first difference is.
//! * `soak DEV ADDR BYTES STOP STATUS` — until the file STOP exists: an echo and a recv of BYTES in turn,
//!   every byte checked; a transfer a fault cut (broken, stalled for 20 s, short) is restarted and counted
//!   as interrupted, a differing byte as corrupt; after each transfer STATUS holds `transfers=N
//!   bytes_checked=N interrupted=N no_connection=N corrupt=N` and, on a second line, the first corruption.
//! * `udp-echo DEV ADDR SIZES [SECONDS]` — UDP echo (port 7) through DEV of one datagram of each size in
//!   SIZES (comma-separated), one after the other, each answered byte for byte within SECONDS (sent again
//!   up to twice meanwhile); prints `sizes=N bytes=B tries=T` or the first size not echoed and why.
//! * `frag-past-limit DEV ADDR` — one IPv4 fragment to ADDR through DEV whose payload ends past the largest
//!   datagram's (offset 65512, 16 bytes: no reassembly can hold it), sent by a raw socket; prints `sent`.
//! * `carrier DEV up|down SECONDS` — wait until the carrier is as asked; prints how long it took.
//! * `csum DEV SECONDS MIN` — for SECONDS, every IPv4 TCP/UDP frame DEV receives as a packet socket
//!   (tcpdump, a DHCP server) sees it, GRO off meanwhile: its IPv4 header and TCP/UDP checksums must be
//!   valid; fails with fewer than MIN frames checked.
//! * `bar-time PCI-DIR BAR OFFSET COUNT` — the mean cost of one 32-bit read of BAR `BAR` at `OFFSET`
//!   through the sysfs `resourceBAR` mapping of the PCI device directory `PCI-DIR` (the BAR must be
//!   enabled and not held by a driver): `reads=N us_per_read=T value=V`.
//! * `scribble PCI-DIR BAR LEN` — a host gone wrong: LEN pseudo-random bytes (seeded from the clock) over
//!   the start of BAR `BAR`, written a 32-bit word at a time through its sysfs `resourceBAR` mapping (with
//!   a driver holding the BAR, the kernel maps it only with `iomem=relaxed`): `scribbled=LEN first=V`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: bpnet-guest echo DEV ADDR BYTES [SECONDS]
       bpnet-guest send DEV ADDR BYTES [SECONDS]
       bpnet-guest recv DEV ADDR BYTES [SECONDS]
       bpnet-guest soak DEV ADDR BYTES STOP STATUS
       bpnet-guest udp-echo DEV ADDR SIZES [SECONDS]
       bpnet-guest frag-past-limit DEV ADDR
       bpnet-guest carrier DEV up|down SECONDS
       bpnet-guest csum DEV SECONDS MIN
       bpnet-guest bar-time PCI-DIR BAR OFFSET COUNT
       bpnet-guest scribble PCI-DIR BAR LEN";

/// The agent's echo service.
const ECHO_PORT: u16 = 7;
/// The agent's services for the two bulk directions.
const DISCARD_PORT: u16 = bpnet_services::DISCARD_PORT;
const SIZED_PORT: u16 = bpnet_services::SIZED_PORT;
/// Bytes per socket call in the bulk transfers.
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["echo", dev, addr, bytes] => echo(dev, addr, bytes, "120"),
        ["echo", dev, addr, bytes, secs] => echo(dev, addr, bytes, secs),
        ["send", dev, addr, bytes] => send(dev, addr, bytes, "120"),
        ["send", dev, addr, bytes, secs] => send(dev, addr, bytes, secs),
        ["recv", dev, addr, bytes] => recv(dev, addr, bytes, "120"),
        ["recv", dev, addr, bytes, secs] => recv(dev, addr, bytes, secs),
        ["soak", dev, addr, bytes, stop, status] => soak(dev, addr, bytes, stop, status),
        ["udp-echo", dev, addr, sizes] => udp_echo(dev, addr, sizes, "10"),
        ["udp-echo", dev, addr, sizes, secs] => udp_echo(dev, addr, sizes, secs),
        ["frag-past-limit", dev, addr] => frag_past_limit(dev, addr),
        ["carrier", dev, want, secs] => carrier(dev, want, secs),
        ["csum", dev, secs, min] => csum(dev, secs, min),
        ["bar-time", dir, bar, offset, count] => bar_time(dir, bar, offset, count),
        ["scribble", dir, bar, len] => scribble(dir, bar, len),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{what}: cannot parse `{text}`"))
}

/// The byte stream sent: xorshift32, so a shifted, dropped or repeated segment shows at once.
struct Pattern(u32);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(4) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// A TCP connection to `addr:port` leaving through `dev` only.
fn connect_via(
    dev: &str,
    addr: Ipv4Addr,
    port: u16,
    timeout: Duration,
    syn_retries: Option<i32>,
) -> Result<TcpStream, String> {
    let stream = TcpStream::from(socket_via(dev, libc::SOCK_STREAM, 0)?);
    let fd = stream.as_raw_fd();
    if let Some(count) = syn_retries {
        // SAFETY: the option value is a live c_int and its length.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_SYNCNT,
                (&count as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(format!("TCP_SYNCNT: {}", std::io::Error::last_os_error()));
        }
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(addr).to_be() },
        sin_zero: [0; 8],
    };
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    // SAFETY: `sa` is a live sockaddr_in of the length given.
    let r = unsafe {
        libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as libc::socklen_t)
    };
    if r != 0 {
        return Err(format!(
            "connect to {} via {dev}: {}",
            SocketAddrV4::new(addr, port),
            std::io::Error::last_os_error()
        ));
    }
    Ok(stream)
}

fn echo(dev: &str, addr: &str, bytes: &str, secs: &str) -> Result<String, String> {
    let addr: Ipv4Addr = parse("address", addr)?;
    let total: u64 = parse("bytes", bytes)?;
    let limit = Duration::from_secs(parse("seconds", secs)?);
    let started = Instant::now();
    // Nothing may stall for longer than the whole transfer may take.
    echo_checked(dev, addr, total, limit, limit, None, &mut 0).map_err(Cut::into_message)?;
    Ok(throughput(total, started.elapsed().as_secs_f64()))
}

/// Why a checked transfer did not complete.
#[derive(Debug)]
enum Cut {
    /// Bytes arrived that differ from what was sent (or from the services' pattern), or more of them
    /// than asked for: corruption, whatever else happened on the link.
    Corrupt(String),
    /// No connection was made (no device, no route, no answer to the SYNs).
    NoConnection(String),
    /// The connection broke, stalled or ended before every byte was back.
    Broken(String),
}

impl Cut {
    fn into_message(self) -> String {
        match self {
            Cut::Corrupt(m) | Cut::NoConnection(m) | Cut::Broken(m) => m,
        }
    }
}

/// TCP echo of `total` bytes of the pattern through `dev`, every byte read back checked; `checked`
/// counts the bytes verified so far (also when the transfer is cut). `stall` bounds each wait for the
/// socket, `limit` the whole transfer; `syn_retries` (TCP_SYNCNT), when given, how long a connection
/// attempt to an agent that does not answer lasts.
fn echo_checked(
    dev: &str,
    addr: Ipv4Addr,
    total: u64,
    limit: Duration,
    stall: Duration,
    syn_retries: Option<i32>,
    checked: &mut u64,
) -> Result<(), Cut> {
    let started = Instant::now();
    let stream = connect_via(dev, addr, ECHO_PORT, stall, syn_retries).map_err(Cut::NoConnection)?;
    stream.set_read_timeout(Some(stall)).map_err(|e| Cut::Broken(e.to_string()))?;
    let mut writer = stream.try_clone().map_err(|e| Cut::Broken(e.to_string()))?;
    const SEED: u32 = 0x8349_0001;
    let sender = std::thread::spawn(move || -> Result<(), String> {
        let mut pattern = Pattern(SEED);
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = buf.len().min((total - sent) as usize);
            pattern.fill(&mut buf[..n]);
            writer.write_all(&buf[..n]).map_err(|e| format!("send after {sent} bytes: {e}"))?;
            sent += n as u64;
        }
        Ok(())
    });
    let received = echo_receive(&stream, SEED, total, started, limit, checked);
    // The sender must not outlive a cut transfer: shutting the socket down ends its write at once.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().map_err(|_| Cut::Broken("the sending thread panicked".to_string()))?;
    received?;
    sent.map_err(Cut::Broken)
}

/// The receiving half of [`echo_checked`]: the echo compared with the stream sent, generated in the
/// sender's chunk size (a multiple of the pattern's 4-byte word, so both sides produce the same bytes).
fn echo_receive(
    stream: &TcpStream,
    seed: u32,
    total: u64,
    started: Instant,
    limit: Duration,
    checked: &mut u64,
) -> Result<(), Cut> {
    let mut expected = Pattern(seed);
    let mut want = vec![0u8; 16 * 1024];
    let (mut want_len, mut want_at, mut generated) = (0usize, 0usize, 0u64);
    let mut got = vec![0u8; 16 * 1024];
    let mut received = 0u64;
    let mut reader = stream;
    while received < total {
        if started.elapsed() > limit {
            return Err(Cut::Broken(format!(
                "timed out after {received} of {total} bytes echoed ({} s)",
                limit.as_secs()
            )));
        }
        let room = got.len().min((total - received) as usize);
        let n = reader
            .read(&mut got[..room])
            .map_err(|e| Cut::Broken(format!("receive after {received} of {total} bytes: {e}")))?;
        if n == 0 {
            return Err(Cut::Broken(format!("the agent closed the connection after {received} of {total} bytes")));
        }
        let mut at = 0;
        while at < n {
            if want_at == want_len {
                want_len = want.len().min((total - generated) as usize);
                expected.fill(&mut want[..want_len]);
                generated += want_len as u64;
                want_at = 0;
            }
            let take = (want_len - want_at).min(n - at);
            if let Some(i) = (0..take).find(|&i| got[at + i] != want[want_at + i]) {
                *checked += i as u64;
                return Err(Cut::Corrupt(format!(
                    "echo differs at byte {} of {total}: got {:#04x}, sent {:#04x}",
                    received + i as u64,
                    got[at + i],
                    want[want_at + i]
                )));
            }
            at += take;
            want_at += take;
            received += take as u64;
            *checked += take as u64;
        }
    }
    Ok(())
}

/// A socket of `kind` and `protocol` leaving through `dev` only, closed on drop.
fn socket_via(dev: &str, kind: libc::c_int, protocol: libc::c_int) -> Result<std::os::fd::OwnedFd, String> {
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh socket owned by nothing else.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let name = dev.as_bytes();
    // SAFETY: the option value is the live device name and its length.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("SO_BINDTODEVICE {dev}: {}", std::io::Error::last_os_error()));
    }
    Ok(owned)
}

fn sockaddr(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(addr).to_be() },
        sin_zero: [0; 8],
    }
}

/// Send `data` on `fd` to `to`.
fn send_to(fd: &std::os::fd::OwnedFd, data: &[u8], to: &libc::sockaddr_in) -> Result<(), String> {
    // SAFETY: `data` and `to` are live for the call, with the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            (to as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(to) as libc::socklen_t,
        )
    };
    if n != data.len() as isize {
        return Err(format!("sendto of {} bytes: {}", data.len(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// UDP echo of one datagram of each size, checked byte for byte.
fn udp_echo(dev: &str, addr: &str, sizes: &str, secs: &str) -> Result<String, String> {
    let addr: Ipv4Addr = parse("address", addr)?;
    let sizes: Vec<usize> = sizes.split(',').map(|s| parse("size", s)).collect::<Result<_, _>>()?;
    let limit = Duration::from_secs(parse("seconds", secs)?);
    let fd = socket_via(dev, libc::SOCK_DGRAM, 0)?;
    let to = sockaddr(addr, ECHO_PORT);
    // SAFETY: connect(2) with a live sockaddr_in: replies from anyone else are not taken.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&to) as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("connect: {}", std::io::Error::last_os_error()));
    }
    let socket = std::net::UdpSocket::from(fd);
    let mut got = vec![0u8; 65536];
    let (mut bytes, mut tries) = (0usize, 0u32);
    for (i, &n) in sizes.iter().enumerate() {
        let mut data = vec![0u8; n];
        Pattern(0x8349_0100 + i as u32).fill(&mut data);
        let started = Instant::now();
        let mut echoed = false;
        for attempt in 1..=3u32 {
            socket.send(&data).map_err(|e| format!("send of {n} bytes: {e}"))?;
            tries += 1;
            let until = started + limit * attempt / 3;
            while !echoed {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
                match socket.recv(&mut got) {
                    // A late echo of an earlier try of this datagram is the same bytes.
                    Ok(m) if got[..m] == data[..] => echoed = true,
                    Ok(m) => return Err(format!("echo of {n} bytes: {m} bytes back, or different")),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => return Err(format!("receive of the echo of {n} bytes: {e}")),
                }
            }
            if echoed {
                break;
            }
        }
        if !echoed {
            return Err(format!("no echo of {n} bytes within {} s ({tries} datagrams sent so far)", limit.as_secs()));
        }
        bytes += n;
    }
    Ok(format!("sizes={} bytes={bytes} tries={tries}", sizes.len()))
}

/// One IPv4 fragment whose payload ends past the largest datagram's, through a raw socket (the kernel
/// fills in the source address and the header checksum).
fn frag_past_limit(dev: &str, addr: &str) -> Result<String, String> {
    let addr: Ipv4Addr = parse("address", addr)?;
    let fd = socket_via(dev, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    let mut packet = [0u8; 36];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&36u16.to_be_bytes());
    packet[4..6].copy_from_slice(&0x8349u16.to_be_bytes());
    // No more fragments, offset 8189 units of 8 bytes: 65512 + 16 bytes of payload > 65515.
    packet[6..8].copy_from_slice(&8189u16.to_be_bytes());
    packet[8] = 64;
    packet[9] = libc::IPPROTO_UDP as u8;
    packet[16..20].copy_from_slice(&addr.octets());
    send_to(&fd, &packet, &sockaddr(addr, 0))?;
    Ok("sent".to_string())
}

fn throughput(total: u64, seconds: f64) -> String {
    format!("bytes={total} seconds={seconds:.3} mbit={:.2}", total as f64 * 8.0 / seconds.max(1e-9) / 1e6)
}

/// Host → agent through the discard service. The clock stops when the agent answers the host's FIN
/// with its own, which it sends only once it has read everything before it.
fn send(dev: &str, addr: &str, bytes: &str, secs: &str) -> Result<String, String> {
    let addr: Ipv4Addr = parse("address", addr)?;
    let total: u64 = parse("bytes", bytes)?;
    let limit = Duration::from_secs(parse("seconds", secs)?);
    let started = Instant::now();
    let mut stream = connect_via(dev, addr, DISCARD_PORT, limit, None)?;
    stream.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    let mut pattern = Pattern(0x8349_0009);
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < total {
        if started.elapsed() > limit {
            return Err(format!("timed out after {sent} of {total} bytes sent ({} s)", limit.as_secs()));
        }
        let n = buf.len().min((total - sent) as usize);
        pattern.fill(&mut buf[..n]);
        stream.write_all(&buf[..n]).map_err(|e| format!("send after {sent} of {total} bytes: {e}"))?;
        sent += n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown after {total} bytes: {e}"))?;
    // The discard service sends nothing: anything but the end of the stream is wrong.
    let mut probe = [0u8; 64];
    match stream.read(&mut probe) {
        Ok(0) => {}
        Ok(n) => return Err(format!("the discard service sent {n} bytes")),
        Err(e) => return Err(format!("waiting for the agent to close after {total} bytes: {e}")),
    }
    Ok(throughput(total, started.elapsed().as_secs_f64()))
}

/// Agent → host through the sized bulk service: exactly `bytes` of the services' pattern, then the
/// agent's FIN.
fn recv(dev: &str, addr: &str, bytes: &str, secs: &str) -> Result<String, String> {
    let addr: Ipv4Addr = parse("address", addr)?;
    let total: u64 = parse("bytes", bytes)?;
    let limit = Duration::from_secs(parse("seconds", secs)?);
    let started = Instant::now();
    recv_checked(dev, addr, total, limit, limit, None, &mut 0).map_err(Cut::into_message)?;
    Ok(throughput(total, started.elapsed().as_secs_f64()))
}

/// [`recv`]'s transfer, every byte checked against the services' pattern and counted in `checked`
/// (the arguments as for [`echo_checked`]).
fn recv_checked(
    dev: &str,
    addr: Ipv4Addr,
    total: u64,
    limit: Duration,
    stall: Duration,
    syn_retries: Option<i32>,
    checked: &mut u64,
) -> Result<(), Cut> {
    let started = Instant::now();
    let mut stream = connect_via(dev, addr, SIZED_PORT, stall, syn_retries).map_err(Cut::NoConnection)?;
    stream.set_read_timeout(Some(stall)).map_err(|e| Cut::Broken(e.to_string()))?;
    stream.write_all(format!("{total}\n").as_bytes()).map_err(|e| Cut::Broken(format!("sending the request: {e}")))?;
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        if started.elapsed() > limit {
            return Err(Cut::Broken(format!(
                "timed out after {received} of {total} bytes received ({} s)",
                limit.as_secs()
            )));
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| Cut::Broken(format!("receive after {received} of {total} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        if received + n as u64 > total {
            return Err(Cut::Corrupt(format!("the agent sent more than the {total} bytes asked for")));
        }
        if let Some(i) = bpnet_services::pattern::mismatch(received, &buf[..n]) {
            let at = received + i as u64;
            *checked += i as u64;
            return Err(Cut::Corrupt(format!(
                "byte {at} of {total} differs from the pattern: got {:#04x}, expected {:#04x}",
                buf[i],
                bpnet_services::pattern::byte(at)
            )));
        }
        received += n as u64;
        *checked += n as u64;
    }
    if received != total {
        return Err(Cut::Broken(format!("the agent closed the connection after {received} of {total} bytes")));
    }
    Ok(())
}

/// What one agent's soak traffic has done so far.
#[derive(Debug, Default, Clone, PartialEq)]
struct SoakTotals {
    /// Transfers that completed, every byte checked.
    transfers: u64,
    /// Bytes compared with what they must be, of completed and of cut transfers.
    bytes_checked: u64,
    /// Transfers a broken, stalled or short connection cut (restarted, not failures).
    interrupted: u64,
    /// Connection attempts that found no agent (its device gone, its link down, no answer).
    no_connection: u64,
    /// Transfers in which a byte differed: always a failure.
    corrupt: u64,
    /// The first corruption seen, as the transfer reported it.
    first_corrupt: String,
}

impl SoakTotals {
    /// The status file's text: `key=value` words on one line, then the first corruption, if any.
    fn line(&self) -> String {
        format!(
            "transfers={} bytes_checked={} interrupted={} no_connection={} corrupt={}\n{}\n",
            self.transfers, self.bytes_checked, self.interrupted, self.no_connection, self.corrupt, self.first_corrupt
        )
    }

    fn count(&mut self, checked: u64, outcome: Result<(), Cut>) {
        self.bytes_checked += checked;
        match outcome {
            Ok(()) => self.transfers += 1,
            Err(Cut::Corrupt(why)) => {
                self.corrupt += 1;
                if self.first_corrupt.is_empty() {
                    self.first_corrupt = why;
                }
            }
            Err(Cut::NoConnection(_)) => self.no_connection += 1,
            Err(Cut::Broken(_)) => self.interrupted += 1,
        }
    }
}

/// How long the soak traffic waits on a socket before it takes the connection for cut: far longer than
/// any pause of a working link on a busy rig, far shorter than TCP's own retransmission give-up, so a
/// connection a fault killed is restarted soon after the link is back.
const SOAK_STALL: Duration = Duration::from_secs(20);
/// SYNs per connection attempt of the soak traffic (about 7 s to an agent that does not answer).
const SOAK_SYN_RETRIES: i32 = 2;

/// `soak DEV ADDR BYTES STOP STATUS`: transfers of BYTES through DEV, an echo (host to agent and back)
/// and a sized bulk receive (agent to host) in turn, every byte checked, until the file STOP exists;
/// after each transfer the totals are written to STATUS (replaced whole, so a reader never sees half a
/// line). A cut transfer is restarted after a second.
fn soak(dev: &str, addr: &str, bytes: &str, stop: &str, status: &str) -> Result<String, String> {
    let addr: Ipv4Addr = parse("address", addr)?;
    let total: u64 = parse("bytes", bytes)?;
    let limit = Duration::from_secs(600);
    let mut totals = SoakTotals::default();
    let partial = format!("{status}.new");
    let write = |totals: &SoakTotals| -> Result<(), String> {
        std::fs::write(&partial, totals.line()).map_err(|e| format!("{partial}: {e}"))?;
        std::fs::rename(&partial, status).map_err(|e| format!("{status}: {e}"))
    };
    write(&totals)?;
    let mut echo_next = true;
    while !std::path::Path::new(stop).exists() {
        let mut checked = 0;
        let outcome = if echo_next {
            echo_checked(dev, addr, total, limit, SOAK_STALL, Some(SOAK_SYN_RETRIES), &mut checked)
        } else {
            recv_checked(dev, addr, total, limit, SOAK_STALL, Some(SOAK_SYN_RETRIES), &mut checked)
        };
        echo_next = !echo_next;
        let cut = outcome.is_err();
        totals.count(checked, outcome);
        write(&totals)?;
        if cut {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    Ok(totals.line().lines().next().unwrap_or_default().to_string())
}

// ---- ethtool (the csum check turns GRO off for its watch and back on) ----

/// SIOCETHTOOL on `dev` with `buf` (its first word is the command).
fn ethtool(dev: &str, buf: &mut [u8]) -> Result<(), String> {
    if dev.len() >= libc::IFNAMSIZ {
        return Err(format!("{dev}: interface name too long"));
    }
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor, closed when this value drops.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(dev.as_bytes()) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: `ifr` names the device and points at `buf`, which is as long as the command's reply
    // (sized by the caller from the driver's own counts) and lives for the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if r != 0 {
        return Err(format!("SIOCETHTOOL on {dev}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A shared mapping of one BAR through its sysfs resource file, unmapped on drop.
struct BarMap {
    base: *mut u8,
    len: usize,
}

impl BarMap {
    fn open(path: &str) -> Result<BarMap, String> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("{path}: {e}"))?;
        let len = file.metadata().map_err(|e| format!("{path}: {e}"))?.len() as usize;
        if len == 0 {
            return Err(format!("{path}: an empty BAR"));
        }
        // Writable for scribble; bar-time only reads.
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh shared mapping of a file this function holds open; the result is checked
        // and the mapping lives until drop.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(BarMap { base: base.cast(), len })
    }

    /// One 32-bit read across the bus at `offset` (checked against the BAR's length once, by the caller).
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `offset + 4 <= len` (checked in bar_time) and 4-byte aligned, inside a live mapping;
        // a volatile read so every call is one bus access.
        unsafe { std::ptr::read_volatile(self.base.add(offset).cast::<u32>()) }
    }
}

impl BarMap {
    /// One posted 32-bit write across the bus at `offset` (checked by the caller, as for read32).
    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as read32: aligned, inside a live writable mapping; volatile, one bus access.
        unsafe { std::ptr::write_volatile(self.base.add(offset).cast::<u32>(), value) }
    }
}

fn scribble(dir: &str, bar: &str, len: &str) -> Result<String, String> {
    let bar: u8 = parse("BAR", bar)?;
    let len = parse_number(len).ok_or_else(|| format!("length: cannot parse `{len}`"))?;
    let map = BarMap::open(&format!("{dir}/resource{bar}"))?;
    if len % 4 != 0 || len > map.len {
        return Err(format!("length {len:#x}: not whole words inside the {}-byte BAR", map.len));
    }
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x2545_f491, |d| d.subsec_nanos() | 1);
    let mut first = 0;
    for offset in (0..len).step_by(4) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if offset == 0 {
            first = x;
        }
        map.write32(offset, x);
    }
    Ok(format!("scribbled={len} first={first:#010x}"))
}

impl Drop for BarMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in open, not used after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn bar_time(dir: &str, bar: &str, offset: &str, count: &str) -> Result<String, String> {
    let bar: u8 = parse("BAR", bar)?;
    let offset = parse_number(offset).ok_or_else(|| format!("offset: cannot parse `{offset}`"))?;
    let count: u32 = parse("count", count)?;
    if count == 0 {
        return Err("count: at least one read".into());
    }
    let map = BarMap::open(&format!("{dir}/resource{bar}"))?;
    if offset % 4 != 0 || offset.checked_add(4).is_none_or(|end| end > map.len) {
        return Err(format!("offset {offset:#x}: not an aligned word inside the {}-byte BAR", map.len));
    }
    let mut value = map.read32(offset);
    let started = Instant::now();
    for _ in 0..count {
        value = map.read32(offset);
    }
    let us = started.elapsed().as_secs_f64() * 1e6 / f64::from(count);
    Ok(format!("reads={count} us_per_read={us:.2} value={value:#010x}"))
}

/// A decimal or 0x-prefixed number.
fn parse_number(text: &str) -> Option<usize> {
    match text.strip_prefix("0x") {
        Some(hex) => usize::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn carrier(dev: &str, want: &str, secs: &str) -> Result<String, String> {
    let want = match want {
        "up" => "1",
        "down" => "0",
        other => return Err(format!("carrier: `{other}` is neither up nor down")),
    };
    let limit = Duration::from_secs(parse("seconds", secs)?);
    let path = format!("/sys/class/net/{dev}/carrier");
    // A device that is not there has no carrier to be down: that is an error, not "down".
    if !std::path::Path::new(&format!("/sys/class/net/{dev}")).exists() {
        return Err(format!("{dev}: no such network device"));
    }
    let started = Instant::now();
    loop {
        // Reading carrier of an interface that is down fails (EINVAL): that counts as no carrier.
        let now = std::fs::read_to_string(&path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "0".to_string());
        if now == want {
            return Ok(format!(
                "carrier {} after {:.3} s",
                if want == "1" { "up" } else { "down" },
                started.elapsed().as_secs_f64()
            ));
        }
        if started.elapsed() > limit {
            return Err(format!("{dev}: carrier still {now} after {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ones' complement sum of `data` (as 16-bit big-endian words) added to `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Fold a ones' complement sum to 16 bits; a valid packet's checksum folds to 0xffff.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One received frame's checksums: None if it is not IPv4 TCP/UDP, Some(Err(why)) if one is wrong.
fn check_frame(frame: &[u8]) -> Option<Result<(), String>> {
    const ETH_HLEN: usize = 14;
    if frame.len() < ETH_HLEN + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || (proto != 6 && proto != 17) {
        return None;
    }
    // Fragments carry no whole transport header to check.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    if fold(sum16(0, &ip[..ihl])) != 0xffff {
        return Some(Err(format!("IPv4 header checksum wrong ({} bytes)", total)));
    }
    let l4 = &ip[ihl..total];
    let (name, check_at) = if proto == 6 { ("TCP", 16) } else { ("UDP", 6) };
    if l4.len() < check_at + 2 {
        return Some(Err(format!("{name} segment of {} bytes is truncated", l4.len())));
    }
    // UDP over IPv4 may carry no checksum at all (0): valid as it stands.
    if proto == 17 && l4[6..8] == [0, 0] {
        return Some(Ok(()));
    }
    let mut sum = sum16(0, &ip[12..20]);
    sum += u32::from(proto) + l4.len() as u32;
    sum = sum16(sum, l4);
    if fold(sum) != 0xffff {
        let field = u16::from_be_bytes([l4[check_at], l4[check_at + 1]]);
        return Some(Err(format!("{name} checksum {field:#06x} wrong ({} bytes)", l4.len())));
    }
    Some(Ok(()))
}

/// `ETHTOOL_GGRO`, `ETHTOOL_SGRO`: GRO off and on (`struct ethtool_value`: cmd, data).
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// Whether GRO is on for `dev`; set it to `on` and return what it was.
fn set_gro(dev: &str, on: bool) -> Result<bool, String> {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&ETHTOOL_GGRO.to_ne_bytes());
    ethtool(dev, &mut v)?;
    let was = u32_at(&v, 4) != 0;
    v[..4].copy_from_slice(&ETHTOOL_SGRO.to_ne_bytes());
    v[4..].copy_from_slice(&u32::from(on).to_ne_bytes());
    ethtool(dev, &mut v)?;
    Ok(was)
}

/// What a packet socket on `dev` receives for `secs` seconds: every IPv4 TCP/UDP frame's checksums.
/// GRO is off meanwhile: a segment it merged carries the stack's own partial checksum (as on any
/// device), and the check is of the frames as the device delivered them.
fn csum(dev: &str, secs: &str, min: &str) -> Result<String, String> {
    let gro = set_gro(dev, false)?;
    let result = csum_watch(dev, secs, min);
    set_gro(dev, gro)?;
    result
}

fn csum_watch(dev: &str, secs: &str, min: &str) -> Result<String, String> {
    let limit = Duration::from_secs(parse("seconds", secs)?);
    let min: u64 = parse("minimum frames", min)?;
    let index = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))
        .map_err(|e| format!("{dev}: {e}"))?
        .trim()
        .parse::<i32>()
        .map_err(|e| format!("{dev}: ifindex: {e}"))?;
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(all)) };
    if fd < 0 {
        return Err(format!("packet socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor, closed when this value drops.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = all;
    sll.sll_ifindex = index;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("binding the packet socket to {dev}: {}", std::io::Error::last_os_error()));
    }
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
    // SAFETY: `timeout` is a timeval of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("SO_RCVTIMEO: {}", std::io::Error::last_os_error()));
    }
    let mtu: usize = std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .map_err(|e| format!("{dev}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{dev}: mtu: {e}"))?;
    let mut frame = vec![0u8; 65536 + 14];
    let (mut checked, mut bad, mut first_bad, mut merged) = (0u64, 0u64, None, 0u64);
    let started = Instant::now();
    while started.elapsed() < limit {
        // SAFETY: as above; `from` and `len` describe a sockaddr_ll the kernel fills.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `frame` is writable for its length; `from`/`len` as above.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) {
                continue;
            }
            return Err(format!("receiving on {dev}: {e}"));
        }
        // Only what the device received; the host's own frames are the kernel's to checksum.
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        // Longer than the device can deliver: segments GRO merged before it was turned off (traffic may
        // start while this tool sets up); the stack's own partial checksum is in them, not the device's.
        if n as usize > mtu + 14 {
            merged += 1;
            continue;
        }
        match check_frame(&frame[..n as usize]) {
            None => {}
            Some(Ok(())) => checked += 1,
            Some(Err(why)) => {
                checked += 1;
                bad += 1;
                first_bad.get_or_insert(why);
            }
        }
    }
    match first_bad {
        Some(why) => Err(format!("{bad} of {checked} received TCP/UDP frames with a wrong checksum; first: {why}")),
        None if checked < min => {
            Err(format!("only {checked} TCP/UDP frames received in {} s (wanted {min})", limit.as_secs()))
        }
        None => Ok(format!(
            "{checked} received TCP/UDP frames, every checksum valid ({merged} longer than the MTU, merged by GRO, not checked)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN as Linux sent it (checksums filled in), then the same with a wrong TCP checksum.
    #[test]
    fn frame_checksums() {
        let mut frame: Vec<u8> = vec![
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // Ethernet
            0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 83, 49, 2, 10, 83, 49,
            1, // IPv4, checksum filled below
            0x00, 0x07, 0xc0, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x20, 0x00, 0x00, 0x00, 0x00,
            0x00, // TCP, checksum filled below
        ];
        let ip_sum = !fold(sum16(0, &frame[14..34]));
        frame[24..26].copy_from_slice(&ip_sum.to_be_bytes());
        let mut sum = sum16(0, &frame[26..34]);
        sum += 6 + 20;
        let tcp_sum = !fold(sum16(sum, &frame[34..54]));
        frame[50..52].copy_from_slice(&tcp_sum.to_be_bytes());
        assert_eq!(check_frame(&frame), Some(Ok(())));
        // What a packet socket saw before: the pseudo-header sum only (CHECKSUM_PARTIAL).
        frame[50..52].copy_from_slice(&(!tcp_sum).to_be_bytes());
        assert!(matches!(check_frame(&frame), Some(Err(_))));
        // Not IPv4 TCP/UDP: not checked.
        frame[12] = 0x86;
        assert_eq!(check_frame(&frame), None);
    }

    #[test]
    fn soak_totals_keep_corruption_apart_from_cuts() {
        let mut t = SoakTotals::default();
        t.count(100, Ok(()));
        t.count(40, Err(Cut::Broken("reset".into())));
        t.count(0, Err(Cut::NoConnection("no route".into())));
        t.count(7, Err(Cut::Corrupt("byte 7 differs".into())));
        t.count(3, Err(Cut::Corrupt("byte 3 differs".into())));
        assert_eq!((t.transfers, t.bytes_checked, t.interrupted, t.no_connection, t.corrupt), (1, 150, 1, 1, 2));
        assert_eq!(t.line(), "transfers=1 bytes_checked=150 interrupted=1 no_connection=1 corrupt=2\nbyte 7 differs\n");
    }

    #[test]
    fn offsets_are_decimal_or_hex() {
        assert_eq!(parse_number("0x8034"), Some(0x8034));
        assert_eq!(parse_number("16"), Some(16));
        assert_eq!(parse_number("0xg"), None);
        assert_eq!(parse_number("-1"), None);
    }
}
