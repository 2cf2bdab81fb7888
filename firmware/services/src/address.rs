//! Which IPv4 address the agent uses: a DHCP lease when there is one, the identity's static address
//! otherwise, and nothing until DHCP had its chance.
//!
//! At the first link-up the agent starts DHCP and waits [`FALLBACK_AFTER`] for a lease. Without one
//! it takes the static address (`10.83.<slot>.2/24`, the host at `.1` as gateway) and keeps DHCP
//! running; a later lease replaces the static address, and losing the lease returns to it at once
//! (the wait is only for the first address). A link-up after a link-down restarts discovery unless
//! a lease is held (smoltcp renews that on its own), keeping whichever address is in use meanwhile.
//!
//! [`Addressing`] is the decision alone, with no sockets: [`crate::Services`] feeds it the link
//! state, the DHCP socket's events and the time, and applies its [`Change`]s to the interface.

use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// How long the agent waits for a DHCP lease before using its static address. On the backplane the
/// only DHCP server is on the host, one hop away: it answers in milliseconds or not at all, so
/// waiting longer only delays reaching the agent. Long enough for the host to finish bringing its
/// interface up after the link (its side goes UP first, its DHCP server may start right after).
pub const FALLBACK_AFTER: Duration = Duration::from_secs(3);

/// Where an address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The identity's static plan.
    Static,
    /// A DHCP lease.
    Lease,
}

/// An address in use, with the default gateway that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub cidr: Ipv4Cidr,
    pub gateway: Option<Ipv4Address>,
    pub source: Source,
}

/// Why the address changed; each carries the address now in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// No lease within [`FALLBACK_AFTER`] of the link coming up: the static address.
    Fallback(Assigned),
    /// A lease was obtained or its address changed.
    Leased(Assigned),
    /// The lease expired or the server refused it: back to the static address.
    LeaseLost(Assigned),
}

impl Change {
    pub fn assigned(&self) -> Assigned {
        match *self {
            Change::Fallback(a) | Change::Leased(a) | Change::LeaseLost(a) => a,
        }
    }
}

/// The address decision, driven by [`Addressing::link`], [`Addressing::dhcp`] and [`Addressing::tick`].
#[derive(Clone, Debug)]
pub struct Addressing {
    fallback: Assigned,
    fallback_after: Duration,
    link_up: bool,
    /// When the static address is due if no lease comes first.
    deadline: Option<Instant>,
    current: Option<Assigned>,
}

impl Addressing {
    /// The static plan `cidr` via `gateway`, taken `fallback_after` after link-up without a lease.
    pub fn new(cidr: Ipv4Cidr, gateway: Option<Ipv4Address>, fallback_after: Duration) -> Self {
        Addressing {
            fallback: Assigned { cidr, gateway, source: Source::Static },
            fallback_after,
            link_up: false,
            deadline: None,
            current: None,
        }
    }

    /// The address in use, if any.
    pub fn current(&self) -> Option<Assigned> {
        self.current
    }

    /// When [`Addressing::tick`] has something to do, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        self.deadline
    }

    /// Follow the link. True when the link just came up and discovery should start now.
    pub fn link(&mut self, now: Instant, up: bool) -> bool {
        let rising = up && !self.link_up;
        self.link_up = up;
        if !rising {
            return false;
        }
        match self.current {
            Some(Assigned { source: Source::Lease, .. }) => false,
            Some(_) => true,
            None => {
                if self.deadline.is_none() {
                    self.deadline = Some(now + self.fallback_after);
                }
                true
            }
        }
    }

    /// Take the DHCP socket's event.
    pub fn dhcp(&mut self, event: &dhcpv4::Event<'_>) -> Option<Change> {
        match event {
            dhcpv4::Event::Configured(config) => {
                let leased = Assigned { cidr: config.address, gateway: config.router, source: Source::Lease };
                self.deadline = None;
                if self.current == Some(leased) {
                    return None;
                }
                self.current = Some(leased);
                Some(Change::Leased(leased))
            }
            dhcpv4::Event::Deconfigured => match self.current {
                Some(Assigned { source: Source::Lease, .. }) => {
                    self.current = Some(self.fallback);
                    Some(Change::LeaseLost(self.fallback))
                }
                // Nothing was leased: the socket merely restarted discovery.
                _ => None,
            },
        }
    }

    /// Take the static address once the wait for a lease is over.
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        let deadline = self.deadline?;
        if now < deadline {
            return None;
        }
        self.deadline = None;
        if self.current.is_some() {
            return None;
        }
        self.current = Some(self.fallback);
        Some(Change::Fallback(self.fallback))
    }
}
