//! What the service needs from the board: the staging area, the flash (a job that writes the
//! inactive slot, the boot state), and the system (image verification, what runs, reset, launch).
//! Time comes with every [`crate::Control::poll`], from the main loop's clock.

use bpnet_contract::bar::BootRepr;
use bpnet_update::{BootState, Layout, Slot};
use smoltcp::time::Instant;

/// RAM where images are received and verified before they are written or started, at least
/// [`crate::STAGING_MIN`] bytes; nothing else uses it while the service holds it.
pub trait Staging {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// Why a flash job stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobError {
    Update(bpnet_update::Error),
    Flash(norflash::Error),
    /// The image read back from the slot differs from what was received or fails verification.
    Readback,
}

impl core::fmt::Display for JobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JobError::Update(e) => write!(f, "update: {e:?}"),
            JobError::Flash(e) => write!(f, "flash: {e:?}"),
            JobError::Readback => f.write_str("the slot read back differs from the image or fails verification"),
        }
    }
}

/// How far a flash job has come (bytes, sectors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub erased: u32,
    pub sectors: u32,
    pub programmed: u32,
    pub total: u32,
    pub read_back: u32,
}

/// One image being written into the inactive slot, a little per main-loop iteration so the network
/// keeps being served.
pub trait FlashJob {
    /// The slot being written, once the update has begun.
    fn target(&self) -> Option<Slot>;
    fn progress(&self) -> JobProgress;
    /// When the job should be stepped again even if nothing else happens; `None` when it can step at
    /// once.
    fn due(&self) -> Option<Instant>;
    /// Advance a little. `image` is the whole image (as received); `readback` a buffer at least as
    /// long, for the read back at the end. `Ok(Some(slot))` once the image is written, read back,
    /// verified by `verify` and recorded for trial.
    fn step(
        &mut self,
        image: &[u8],
        readback: &mut [u8],
        verify: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<Slot>, JobError>;
}

/// The board's flash: two slots and the boot state (`bpnet-update`).
pub trait Flash {
    type Job: FlashJob;
    /// The flash layout (the slots' size bounds a FLASH request).
    fn layout(&self) -> &Layout;
    /// A job for an image of `len` bytes, version `version`; nothing is written before its first
    /// step.
    fn start(&mut self, len: u32, version: u32) -> Self::Job;
    /// The boot state as the flash holds it now, for `STATUS`; `None` if it cannot be read.
    fn boot_state(&mut self) -> Option<BootState>;
}

/// The running system.
pub trait System {
    /// Check an image as the board starts images (its trusted keys, its RAM range).
    fn verify<'i>(&self, image: &'i [u8]) -> Result<bpnet_image::Verified<'i>, bpnet_image::Error>;
    /// How the running program was started and its uptime (the boot block it publishes), if known.
    fn boot(&self) -> Option<BootRepr>;
    /// The running program's own version, when [`System::boot`] knows nothing.
    fn version(&self) -> u32;
    /// Reset the board (on the board this does not return).
    fn reset(&mut self);
    /// Take a fault on purpose (on the board this does not return: the fault handler records it and
    /// waits for the host's reset).
    fn fault(&mut self);
    /// Start `image`, verified, from the staging area (on the board this does not return).
    fn launch(&mut self, image: &[u8]);
}
