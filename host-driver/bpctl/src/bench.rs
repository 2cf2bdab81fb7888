//! TCP throughput through one agent's netdev: host to agent into its discard service (port 9), agent
//! to host from its sized bulk-send service (port 5019: the host sends `N\n`, the agent sends N bytes
//! of the services' documented pattern and closes), every received byte checked against
//! `bpnet_services::pattern`. Connections are bound to the netdev (SO_BINDTODEVICE): every agent may
//! have the same address.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use bpnet_services::{pattern, DISCARD_PORT, SIZED_PORT};
use indicatif::ProgressBar;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::Error;

/// Bytes per socket call.
const CHUNK: usize = 64 * 1024;

/// One timed transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub bytes: u64,
    pub seconds: f64,
}

impl Transfer {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds.max(1e-9) / 1e6
    }
}

/// A transfer's error; a socket timeout (the raw `EAGAIN`) said as what did not answer.
fn io(dev: &str, doing: &str, limit: Duration, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::Agent(format!(
            "{dev}: {doing}: the agent did not answer within {} s (timed out; `bpctl list` shows its heartbeat)",
            limit.as_secs()
        )),
        _ => Error::Agent(format!("{dev}: {doing}: {e}")),
    }
}

/// A TCP connection to `addr:port` leaving through `dev` only.
pub fn connect_via(dev: &str, addr: Ipv4Addr, port: u16, limit: Duration) -> Result<TcpStream, Error> {
    let target = SocketAddrV4::new(addr, port);
    if let Some(why) = crate::agents::unresponsive(dev) {
        return Err(Error::Agent(why));
    }
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| Error::Io("creating a TCP socket".into(), e))?;
    socket.bind_device(Some(dev.as_bytes())).map_err(|e| Error::Io(format!("SO_BINDTODEVICE {dev}"), e))?;
    socket.connect_timeout(&SockAddr::from(target), limit).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::Agent(format!(
            "connecting to {target} through {dev}: no answer within {} s (timed out): the agent does not \
                 respond (`bpctl list` shows its heartbeat)",
            limit.as_secs()
        )),
        _ => Error::Agent(format!("connecting to {target} through {dev}: {e}")),
    })?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(limit)).map_err(|e| Error::Io("setting a read timeout".into(), e))?;
    stream.set_write_timeout(Some(limit)).map_err(|e| Error::Io("setting a write timeout".into(), e))?;
    Ok(stream)
}

/// Host to agent: `total` bytes into the discard service, then the host's FIN. The clock stops when
/// the agent answers with its own FIN, which it sends only after reading everything before it.
pub fn send(dev: &str, addr: Ipv4Addr, total: u64, limit: Duration, bar: &ProgressBar) -> Result<Transfer, Error> {
    let started = Instant::now();
    let mut stream = connect_via(dev, addr, DISCARD_PORT, limit)?;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < total {
        if started.elapsed() > limit {
            return Err(Error::Agent(format!("{dev}: send timed out after {sent} of {total} bytes")));
        }
        let n = buf.len().min((total - sent) as usize);
        pattern::fill(sent, &mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| io(dev, &format!("send failed after {sent} of {total} bytes"), limit, e))?;
        sent += n as u64;
        bar.set_position(sent);
    }
    stream.shutdown(std::net::Shutdown::Write).map_err(|e| Error::Agent(format!("{dev}: shutdown: {e}")))?;
    let mut probe = [0u8; 64];
    match stream.read(&mut probe) {
        Ok(0) => {}
        Ok(n) => return Err(Error::Agent(format!("{dev}: the discard service sent {n} bytes"))),
        Err(e) => return Err(Error::Agent(format!("{dev}: waiting for the agent to close: {e}"))),
    }
    Ok(Transfer { bytes: total, seconds: started.elapsed().as_secs_f64() })
}

/// Agent to host: asks the sized service for `total` bytes; every byte must match the pattern and
/// exactly `total` must arrive before the agent closes.
pub fn recv(dev: &str, addr: Ipv4Addr, total: u64, limit: Duration, bar: &ProgressBar) -> Result<Transfer, Error> {
    let started = Instant::now();
    let mut stream = connect_via(dev, addr, SIZED_PORT, limit)?;
    stream.write_all(format!("{total}\n").as_bytes()).map_err(|e| io(dev, "sending the request", limit, e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        if started.elapsed() > limit {
            return Err(Error::Agent(format!("{dev}: receive timed out after {received} of {total} bytes")));
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| io(dev, &format!("receive failed after {received} of {total} bytes"), limit, e))?;
        if n == 0 {
            break;
        }
        check_received(received, &buf[..n], total).map_err(Error::Agent)?;
        received += n as u64;
        bar.set_position(received);
    }
    if received != total {
        return Err(Error::Agent(format!("{dev}: the agent closed the connection after {received} of {total} bytes")));
    }
    Ok(Transfer { bytes: total, seconds: started.elapsed().as_secs_f64() })
}

/// `data` arrived after `offset` bytes of a transfer of `total`: no more than asked, and the pattern.
pub fn check_received(offset: u64, data: &[u8], total: u64) -> Result<(), String> {
    if offset + data.len() as u64 > total {
        return Err(format!("the agent sent more than the {total} bytes asked for"));
    }
    if let Some(i) = pattern::mismatch(offset, data) {
        let at = offset + i as u64;
        return Err(format!(
            "byte {at} of {total} differs from the pattern: got {:#04x}, expected {:#04x}",
            data[i],
            pattern::byte(at)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_bytes_are_checked_against_the_pattern() {
        let mut data = vec![0u8; 70_000];
        pattern::fill(1000, &mut data);
        assert_eq!(check_received(1000, &data, 71_000), Ok(()));
        assert!(check_received(1000, &data, 70_999).unwrap_err().contains("more than"));
        // The same bytes one position later no longer match.
        assert!(check_received(1001, &data, 80_000).is_err());
        data[12_345] ^= 1;
        let e = check_received(1000, &data, 71_000).unwrap_err();
        assert!(e.starts_with("byte 13345 of 71000"), "{e}");
    }

    #[test]
    fn throughput_in_megabits() {
        let t = Transfer { bytes: 1_000_000, seconds: 0.5 };
        assert!((t.mbit_per_s() - 16.0).abs() < 1e-9);
    }
}
