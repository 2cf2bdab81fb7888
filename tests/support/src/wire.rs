//! One end of an in-memory Ethernet wire, as a smoltcp device: frames arrive in one queue and the
//! stack's frames leave in another; whoever owns the two ends moves frames between them.

use std::collections::VecDeque;

use smoltcp::iface::{Config, Interface};
use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::ETHERNET_HEADER_LEN;

/// One end of the wire.
#[derive(Debug)]
pub struct WireEnd {
    /// Frames arriving for the stack, oldest first.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames the stack sent, oldest first.
    pub tx: VecDeque<Vec<u8>>,
    /// The IP MTU; frames are this plus the Ethernet header.
    pub mtu: usize,
    /// TCP and UDP checksums neither computed nor verified, as Linux with the module's checksum
    /// offload (`CHECKSUM_PARTIAL` out, `NEEDS_CSUM` / `CSUM_VALID` in).
    pub csum_offload: bool,
}

impl Default for WireEnd {
    /// MTU 1500, checksums computed and verified.
    fn default() -> Self {
        WireEnd::new(1500, false)
    }
}

impl WireEnd {
    pub fn new(mtu: usize, csum_offload: bool) -> Self {
        WireEnd { rx: VecDeque::new(), tx: VecDeque::new(), mtu, csum_offload }
    }
}

/// A frame that arrived.
pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one frame on the way out.
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl phy::Device for WireEnd {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        if self.csum_offload {
            caps.checksum.tcp = Checksum::None;
            caps.checksum.udp = Checksum::None;
        }
        // smoltcp counts the Ethernet header in an Ethernet device's MTU.
        caps.max_transmission_unit = self.mtu + ETHERNET_HEADER_LEN;
        caps
    }
}

/// A smoltcp interface over `end`, boxed and made on a thread with room for it: with the agent's IPv4
/// fragmentation and reassembly (64 KiB buffers inline, about 330 KiB, and more while smoltcp makes it),
/// an interface outgrows a test thread's stack.
pub fn interface(config: Config, end: &mut WireEnd, now: Instant) -> Box<Interface> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn_scoped(s, move || Box::new(Interface::new(config, end, now)))
            .expect("a thread to make the interface on")
            .join()
            .expect("the interface")
    })
}
