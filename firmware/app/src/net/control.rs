//! The control service (`bpnet-control`) on this board: its buffers, the staging area, the flash
//! job over the NOR part ([`super::flash`]) and the boot code's verification, status, reset and
//! launch.

use bpnet_contract::bar::BootRepr;
use bpnet_update::{BootState, Layout};
use core::sync::atomic::{AtomicBool, Ordering};
use e300::timebase::Timebase;
use mpc8349emds::Staging;
use smoltcp::iface::SocketSet;

use super::flash::{self, FlashJob, LAYOUT};

pub use bpnet_control::SOCKETS;

const _: () = assert!(
    bpnet_control::STAGING_MIN <= mpc8349emds::STAGING_LEN as usize,
    "the image and its read back copy must both fit the staging area"
);

/// The service over this board.
pub type Control = bpnet_control::Control<BoardStaging, BoardFlash, BoardSystem>;

/// Open the service's sockets in `sockets`. Call once.
pub fn new(sockets: &mut SocketSet<'_>, tb: Timebase) -> Control {
    Control::new(sockets, take_buffers(), BoardStaging(Staging::take()), BoardFlash(tb), BoardSystem)
}

fn take_buffers() -> &'static mut bpnet_control::Buffers {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut BUFFERS: bpnet_control::Buffers = bpnet_control::Buffers::new();
    if TAKEN.swap(true, Ordering::Relaxed) {
        panic!("control service started twice");
    }
    // SAFETY: TAKEN lets exactly one caller past this point and nothing else names the static, so
    // this is the only reference ever made to it. Static rather than on the stack.
    unsafe { &mut *core::ptr::addr_of_mut!(BUFFERS) }
}

/// The staging area, which the service owns while the firmware runs.
pub struct BoardStaging(Staging);

impl bpnet_control::Staging for BoardStaging {
    fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.bytes_mut()
    }
}

/// The NOR flash, taken for each job or boot-state read.
pub struct BoardFlash(Timebase);

impl bpnet_control::Flash for BoardFlash {
    type Job = FlashJob;

    fn layout(&self) -> &Layout {
        &LAYOUT
    }

    fn start(&mut self, len: u32, version: u32) -> FlashJob {
        FlashJob::new(self.0, len, version)
    }

    fn boot_state(&mut self) -> Option<BootState> {
        flash::boot_state(self.0)
    }
}

/// The boot code: what runs, and the doors out (reset, launch).
pub struct BoardSystem;

impl bpnet_control::System for BoardSystem {
    fn verify<'i>(&self, image: &'i [u8]) -> Result<bpnet_image::Verified<'i>, bpnet_image::Error> {
        crate::boot::verify(image)
    }

    fn boot(&self) -> Option<BootRepr> {
        crate::boot::status()
    }

    fn version(&self) -> u32 {
        crate::boot::OWN_VERSION
    }

    fn reset(&mut self) {
        crate::println!("control: resetting");
        mpc8349emds::immr().reset().hard_reset();
    }

    fn fault(&mut self) {
        crate::println!("control: faulting on purpose");
        e300::exception::trap();
    }

    fn launch(&mut self, image: &[u8]) {
        crate::boot::launch(image, crate::boot::Source::Netboot);
    }
}
