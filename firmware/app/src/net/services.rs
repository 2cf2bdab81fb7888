//! The agent's network services on top of smoltcp: echo (RFC 862) on port 7 over UDP and TCP.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};

use crate::println;

/// The echo service (RFC 862), over UDP and TCP.
pub const ECHO_PORT: u16 = 7;
/// TCP echo buffers, each way: the receive side is the window offered to the peer.
const TCP_BUFFER: usize = 8 * 1024;
/// UDP echo payload storage, each way.
const UDP_BUFFER: usize = 4096;
/// Datagrams queued each way.
const UDP_PACKETS: usize = 4;
/// Sockets every service together needs ([`Services::new`]).
pub const SOCKETS: usize = 2;

/// Storage the services' sockets live in; static, so it stays off the 64 KiB stack.
pub struct Storage {
    udp_rx_meta: [udp::PacketMetadata; UDP_PACKETS],
    udp_rx: [u8; UDP_BUFFER],
    udp_tx_meta: [udp::PacketMetadata; UDP_PACKETS],
    udp_tx: [u8; UDP_BUFFER],
    tcp_rx: [u8; TCP_BUFFER],
    tcp_tx: [u8; TCP_BUFFER],
    scratch: [u8; 2048],
}

impl Storage {
    pub const fn new() -> Self {
        Storage {
            udp_rx_meta: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
            udp_rx: [0; UDP_BUFFER],
            udp_tx_meta: [udp::PacketMetadata::EMPTY; UDP_PACKETS],
            udp_tx: [0; UDP_BUFFER],
            tcp_rx: [0; TCP_BUFFER],
            tcp_tx: [0; TCP_BUFFER],
            scratch: [0; 2048],
        }
    }
}

/// Every service's sockets, and what moving data between them needs.
pub struct Services<'s> {
    udp_echo: SocketHandle,
    tcp_echo: SocketHandle,
    scratch: &'s mut [u8],
}

impl<'s> Services<'s> {
    /// Open every service's sockets in `sockets`.
    pub fn new(storage: &'s mut Storage, sockets: &mut SocketSet<'s>) -> Self {
        let mut udp_echo = udp::Socket::new(
            udp::PacketBuffer::new(&mut storage.udp_rx_meta[..], &mut storage.udp_rx[..]),
            udp::PacketBuffer::new(&mut storage.udp_tx_meta[..], &mut storage.udp_tx[..]),
        );
        if udp_echo.bind(ECHO_PORT).is_err() {
            panic!("udp echo: bind refused");
        }
        let udp_echo = sockets.add(udp_echo);
        let tcp_echo = sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut storage.tcp_rx[..]),
            tcp::SocketBuffer::new(&mut storage.tcp_tx[..]),
        ));
        println!("net: echo on UDP and TCP port {}", ECHO_PORT);
        Services { udp_echo, tcp_echo, scratch: &mut storage.scratch[..] }
    }

    /// Move data between the services' sockets after smoltcp's poll. True if anything moved or a
    /// socket changed state, so the main loop polls again rather than sleeps.
    pub fn poll(&mut self, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<udp::Socket>(self.udp_echo);
        let mut busy = false;
        while socket.can_send() {
            let Ok((n, meta)) = socket.recv_slice(self.scratch) else { break };
            // A full transmit queue drops the echo, as a busy echo server may.
            let _ = socket.send_slice(&self.scratch[..n], meta);
            busy = true;
        }
        busy | tcp_echo_pass(sockets.get_mut::<tcp::Socket>(self.tcp_echo), self.scratch)
    }
}

/// One pass of the TCP echo: move what was received to the send queue, as much as fits; close
/// when the peer has, listen again once closed. True if anything was moved or the state changed.
fn tcp_echo_pass(socket: &mut tcp::Socket<'_>, buf: &mut [u8]) -> bool {
    if !socket.is_open() {
        // Closed or TIME-WAIT: take the next connection (a port number is always accepted).
        let _ = socket.listen(ECHO_PORT);
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
