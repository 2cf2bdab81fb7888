//! A [`Transfer`] over a smoltcp UDP socket. The socket's buffers live in a [`Storage`] and a
//! [`PacketMeta`] the caller keeps (the firmware: in statics), and the socket stays in the caller's
//! [`SocketSet`] across transfers: [`Client::start`] rebinds it for each.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant;

use crate::client::{Sink, Status, Transfer};
use crate::wire;

/// Receive buffer bytes: a window of 16 blocks of 1468 bytes (about 23 KiB of payload) with room to
/// spare, and one datagram of the largest block size.
pub const RX_BUFFER: usize = 64 * 1024;
/// Datagrams the receive buffer holds: more than a window of 16, so a window is not lost to a
/// short stall of the caller.
pub const RX_PACKETS: usize = 48;
/// Transmit buffer bytes: the client sends requests, ACKs and ERRORs only.
pub const TX_BUFFER: usize = 4 * wire::REQUEST_MAX;
/// Datagrams queued for transmission.
pub const TX_PACKETS: usize = 4;

// The largest DATA must fit in the receive buffer, or a server could never deliver it.
const _: () = assert!(RX_BUFFER >= wire::BLKSIZE_MAX as usize + wire::HEADER_LEN);

/// The socket's payload buffers: all zeros, so a static of it costs no space in the image.
pub struct Storage {
    rx: [u8; RX_BUFFER],
    tx: [u8; TX_BUFFER],
}

impl Storage {
    pub const fn new() -> Self {
        Storage { rx: [0; RX_BUFFER], tx: [0; TX_BUFFER] }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self::new()
    }
}

/// The socket's packet metadata: apart from [`Storage`] because its empty value is not all zeros.
pub struct PacketMeta {
    rx: [udp::PacketMetadata; RX_PACKETS],
    tx: [udp::PacketMetadata; TX_PACKETS],
}

impl PacketMeta {
    pub const fn new() -> Self {
        PacketMeta { rx: [udp::PacketMetadata::EMPTY; RX_PACKETS], tx: [udp::PacketMetadata::EMPTY; TX_PACKETS] }
    }
}

impl Default for PacketMeta {
    fn default() -> Self {
        Self::new()
    }
}

/// What one [`Client::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// Datagrams moved: poll again rather than sleep.
    pub busy: bool,
    /// The transfer's status (`None`: no transfer started).
    pub status: Option<Status>,
}

/// The TFTP client's socket and its current transfer.
pub struct Client {
    handle: SocketHandle,
    transfer: Option<Transfer>,
    /// Datagrams the socket could not queue (each is then lost, and retransmitted on timeout).
    send_failures: u32,
}

impl Client {
    /// Add the client's socket (unbound) to `sockets`, over `storage` and `meta`.
    pub fn new<'s>(storage: &'s mut Storage, meta: &'s mut PacketMeta, sockets: &mut SocketSet<'s>) -> Client {
        let socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut meta.rx[..], &mut storage.rx[..]),
            udp::PacketBuffer::new(&mut meta.tx[..], &mut storage.tx[..]),
        );
        Client { handle: sockets.add(socket), transfer: None, send_failures: 0 }
    }

    /// Start `transfer` from local port `port` (a new one for each transfer, RFC 1350: a late
    /// datagram of an earlier transfer must not be taken for this one's). Whatever the socket still
    /// held is dropped. The request goes out at the next [`Client::poll`].
    pub fn start(&mut self, sockets: &mut SocketSet<'_>, port: u16, transfer: Transfer) -> Result<(), udp::BindError> {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        socket.close();
        socket.bind(port)?;
        self.transfer = Some(transfer);
        Ok(())
    }

    /// Stop the transfer and unbind the socket (after a failure, or when done and the last ACK has
    /// had its time to be answered again); the transfer as it ended.
    pub fn stop(&mut self, sockets: &mut SocketSet<'_>) -> Option<Transfer> {
        sockets.get_mut::<udp::Socket>(self.handle).close();
        self.transfer.take()
    }

    pub fn transfer(&self) -> Option<&Transfer> {
        self.transfer.as_ref()
    }

    pub fn send_failures(&self) -> u32 {
        self.send_failures
    }

    /// When the client needs a poll even if nothing arrives (beyond smoltcp's own timers).
    pub fn poll_at(&self) -> Option<Instant> {
        self.transfer.as_ref()?.poll_at()
    }

    /// After smoltcp's poll: feed every datagram received to the transfer, send its answers, then let
    /// it check its timer. The payload goes to `sink`.
    pub fn poll<S: Sink + ?Sized>(&mut self, sockets: &mut SocketSet<'_>, now: Instant, sink: &mut S) -> Poll {
        let Some(transfer) = self.transfer.as_mut() else { return Poll { busy: false, status: None } };
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        let mut busy = false;
        while let Ok((data, meta)) = socket.recv() {
            busy = true;
            // The datagram is taken from the socket as it is; what the transfer answers borrows
            // only the transfer, so it can go to the same socket.
            if let Some(out) = transfer.poll(now, Some((data, meta.endpoint)), sink) {
                if socket.send_slice(out.packet, out.to).is_err() {
                    self.send_failures = self.send_failures.saturating_add(1);
                }
            }
        }
        // Due requests and retransmissions: at most a few in a row (a fallback request after an
        // ERROR), each one moves the transfer's timer.
        while let Some(out) = transfer.poll(now, None, sink) {
            busy = true;
            if socket.send_slice(out.packet, out.to).is_err() {
                self.send_failures = self.send_failures.saturating_add(1);
            }
        }
        Poll { busy, status: Some(transfer.status()) }
    }
}
