//! A TFTP client for netbooting the agent: RFC 1350 with the options of RFC 2347 (negotiation),
//! RFC 2348 (blksize), RFC 2349 (timeout, tsize) and RFC 7440 (windowsize), over smoltcp, portable
//! so it is tested on the host.
//!
//! * [`wire`]: the packets, as typed views over bytes; nothing there panics on hostile input.
//! * [`client`]: one read transfer as a state machine without sockets or clocks
//!   ([`Transfer::poll`] takes a datagram or a tick and returns the datagram to send), writing the
//!   payload through a [`Sink`].
//! * [`udp`]: the transfer over a smoltcp UDP socket whose buffers the caller keeps.
//! * `server` (feature `test-server`, needs `std`): a UDP-level server model that misbehaves on
//!   purpose (ignores or refuses options, loses, duplicates and reorders packets, sends ERROR,
//!   truncates, stalls, sends from a wrong port), for this crate's tests and the emulator's.
//!
//! The firmware drives it as it drives the services: build a [`Transfer`] for a filename and the
//! host's address, [`udp::Client::start`] it on a fresh local port, call [`udp::Client::poll`]
//! after each interface poll and sleep no longer than [`udp::Client::poll_at`]; the status says
//! when the payload is in the sink or why it is not.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "test-server"))]
extern crate std;

pub mod client;
#[cfg(any(test, feature = "test-server"))]
pub mod server;
pub mod udp;
pub mod wire;

pub use client::{Config, Datagram, Failure, Memory, Progress, Sink, SinkError, Status, Summary, Transfer};

#[cfg(test)]
mod tests;
