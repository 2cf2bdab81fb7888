//! The agent's network services ([`bpnet_services`]) on this board: the identity record read from
//! the NOR flash, the sockets' storage in a static, and the logs of every address change.

use core::sync::atomic::{AtomicBool, Ordering};

use bpnet_services::identity::{self, Identity, RECORD_LEN, RECORD_OFFSET};
use bpnet_services::{Change, PacketMeta, Source, Storage, FALLBACK_AFTER};
use mpc8349emds::FlashBus;
use norflash::Bus;
use smoltcp::iface::{Interface, SocketSet};
use smoltcp::time::Instant;

use crate::println;

pub use bpnet_services::SOCKETS;

const _: () = assert!(identity::FLASH_BYTES == mpc8349emds::FLASH_BYTES, "the identity sector is not the board's last");

/// The board's identity from the record in the flash's last sector, or [`Identity::UNKNOWN`].
pub fn identity() -> (Identity, Result<(), identity::Error>) {
    // The flash is in read-array mode (nothing here issues commands) and mapped through a BAT: plain
    // 16-bit reads, big-endian as the bus presents them, give the bytes in flash order.
    let mut bus = FlashBus::take();
    let mut raw = [0u8; RECORD_LEN];
    for (i, pair) in raw.chunks_exact_mut(2).enumerate() {
        pair.copy_from_slice(&bus.read(RECORD_OFFSET / 2 + i as u32).to_be_bytes());
    }
    identity::identify(&raw)
}

fn describe(e: identity::Error) -> &'static str {
    match e {
        identity::Error::Truncated => "truncated",
        identity::Error::Missing => "missing (erased)",
        identity::Error::BadMagic(_) => "bad magic",
        identity::Error::Version(_) => "unknown version",
        identity::Error::Crc { .. } => "CRC mismatch",
        identity::Error::Slot(_) => "slot out of range",
        identity::Error::Serial(_) => "serial out of range",
    }
}

/// The services with their static storage, logging what changes.
pub struct Services<'s> {
    inner: bpnet_services::Services<'s>,
    /// The first address goes to the console too.
    announced: bool,
    /// `udp_dropped` of the services' stats as last counted.
    udp_dropped: u32,
}

impl<'s> Services<'s> {
    /// Read the identity and open every service's sockets in `sockets` (room for [`SOCKETS`]).
    /// Call once: the storage is a single static.
    pub fn new(sockets: &mut SocketSet<'s>) -> Self {
        static TAKEN: AtomicBool = AtomicBool::new(false);
        static mut STORAGE: Storage = Storage::new();
        static mut META: PacketMeta = PacketMeta::new();
        if TAKEN.swap(true, Ordering::Relaxed) {
            panic!("net services started twice");
        }
        // SAFETY: TAKEN lets exactly one caller past this point, and nothing else names STORAGE or
        // META, so these are the only references ever made to them. Static rather than on the stack.
        let (storage, meta) = unsafe { (&mut *core::ptr::addr_of_mut!(STORAGE), &mut *core::ptr::addr_of_mut!(META)) };

        let (identity, record) = identity();
        match record {
            Ok(()) => {
                defmt::info!("identity: serial {=u32}, slot {=?}", identity.serial, identity.slot);
                match identity.slot {
                    Some(slot) => println!("identity: serial {}, slot {}", identity.serial, slot),
                    None => println!("identity: serial {}, slot unknown", identity.serial),
                }
            }
            Err(e) => {
                defmt::warn!("identity record missing or corrupt ({=str}): serial 0, slot unknown", describe(e));
                println!("identity: record missing or corrupt ({}): serial 0, slot unknown", describe(e));
            }
        }
        let s = identity.static_address();
        println!(
            "net: DHCP at link-up; static {}/{} (host {}) after {} ms without a lease",
            s.address(),
            s.prefix_len(),
            identity.host_address(),
            FALLBACK_AFTER.total_millis()
        );
        let inner = bpnet_services::Services::new(storage, meta, sockets, &identity, FALLBACK_AFTER);
        println!(
            "net: echo on UDP/TCP {}, discard on UDP/TCP {}, chargen on TCP {}, sized bulk send on TCP {}",
            bpnet_services::ECHO_PORT,
            bpnet_services::DISCARD_PORT,
            bpnet_services::CHARGEN_PORT,
            bpnet_services::SIZED_PORT
        );
        Services { inner, announced: false, udp_dropped: 0 }
    }

    /// After smoltcp's poll: follow the link, take address changes, move the services' data. True
    /// if anything happened, so the main loop polls again rather than sleeps.
    pub fn poll(&mut self, iface: &mut Interface, sockets: &mut SocketSet<'_>, now: Instant, link_up: bool) -> bool {
        let poll = self.inner.poll(iface, sockets, now, link_up);
        if let Some(change) = poll.change {
            self.log(change);
        }
        poll.busy
    }

    /// UDP datagrams the services dropped since the last call (the contract's `udp_dropped`).
    pub fn take_udp_dropped(&mut self) -> u32 {
        let now = self.inner.stats().udp_dropped;
        let new = now.wrapping_sub(self.udp_dropped);
        self.udp_dropped = now;
        new
    }

    /// Put the address in use on a new interface.
    pub fn reapply(&self, iface: &mut Interface) {
        self.inner.reapply(iface);
    }

    /// When the services need a poll even if nothing arrives.
    pub fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn log(&mut self, change: Change) {
        let a = change.assigned();
        let (addr, prefix) = (a.cidr.address().octets(), a.cidr.prefix_len());
        let why = match change {
            Change::Fallback(_) => "no DHCP lease in time: static",
            Change::Leased(_) => "DHCP lease",
            Change::LeaseLost(_) => "DHCP lease lost: static",
        };
        defmt::info!("net: address {=[u8]:?}/{=u8} ({=str})", addr[..], prefix, why);
        if !self.announced {
            self.announced = true;
            println!("net: address {}/{} ({})", a.cidr.address(), prefix, why);
        }
        if a.source == Source::Lease {
            if let Some(gateway) = a.gateway {
                defmt::info!("net: gateway {=[u8]:?}", gateway.octets()[..]);
            }
        }
    }
}
