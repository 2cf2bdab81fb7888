//! Safe firmware update for the agent: two image slots in the NOR flash, a boot-state record kept
//! in two ping-pong sectors, a boot stage that picks the slot ([`choose`]), trial boots that the new
//! firmware must [`confirm`], rollback after [`TRIAL_BOOTS`] unconfirmed boots, and the update
//! procedure ([`Update`]) that writes the inactive slot so that a power cut at any point leaves a
//! verified image to start.
//!
//! Portable (`no_std`, no `unsafe`): the flash is a [`Storage`] ([`Nor`] adapts the `norflash` driver),
//! image verification is a closure the caller passes (the board's wraps `bpnet-image`'s `verify`).
//!
//! # Flash layout (MPC8349EMDS, [`MPC8349EMDS`])
//!
//! 32 MiB at `FLASH_BASE` (0xFE00_0000), 256 uniform sectors of 128 KiB. Offsets from the base:
//!
//! | offset | bytes | sectors | what | written by |
//! | --- | --- | --- | --- | --- |
//! | `0x000_0000` | 1 MiB | 8 | reserved: U-Boot (512 KiB), its environment and redundant environment (`0x8_0000`, `0xA_0000`), the boot stage (`0xC_0000`, 256 KiB) | provisioning only; never here |
//! | `0x010_0000` | 128 KiB | 1 | boot state, sector 0 | [`choose`], [`confirm`], [`Update`] |
//! | `0x012_0000` | 128 KiB | 1 | boot state, sector 1 | as sector 0, alternately |
//! | `0x014_0000` | 8 MiB | 64 | slot A | [`Update`] |
//! | `0x094_0000` | 8 MiB | 64 | slot B | [`Update`] |
//! | `0x114_0000` | 14.625 MiB | 117 | unused | nobody |
//! | `0x1FE_0000` | 128 KiB | 1 | identity record (`bpnet-services`) | provisioning only; never here |
//!
//! * **1 MiB reserved.** U-Boot's MPC8349EMDS configuration puts the monitor (512 KiB, the hard-reset
//!   configuration word in its first bytes) at the base and the environment with its redundant copy
//!   in the next two sectors, so the first free sector is `0xC_0000`; the boot stage goes there, in
//!   the two sectors left before the megabyte boundary (U-Boot's `bootcmd` starts it). A round
//!   megabyte keeps every update area clear of whatever U-Boot and its environment do, and an
//!   older 256 KiB monitor fits as well.
//! * **Two boot-state sectors.** A record is never erased in place: each write goes to the sector that
//!   does not hold the newest record, so an interrupted write leaves the previous record intact.
//! * **8 MiB slots.** Eight times today's image, both the same size so either can hold what the other
//!   did; a full slot takes about 95 s to write on the board's part (64 sector erases, 131,072 write-buffer
//!   programs of 64 bytes; 250 s a 16-bit word at a time). The unused space after
//!   them lets a later layout grow the slots or add areas without moving the identity sector.
//!
//! [`Layout`] is a `const` the board passes in ([`Layout::check`] is a `const fn`; the board's layout is
//! asserted at compile time); tests use small fakes. Every erase and program is refused outside the
//! boot-state sectors and the slots ([`Layout::writable`]).
//!
//! # The boot-state record
//!
//! At the start of each boot-state sector, 40 bytes, little-endian as every structure of the project
//! (`bpnet-contract`, `bpnet-image`):
//!
//! | offset | bytes | field | value |
//! | --- | --- | --- | --- |
//! | `0x00` | 4 | magic | "BPBS" (`42 50 42 53`) |
//! | `0x04` | 2 | version | [`record::VERSION`] (2); format 1 (no minimum security counter, CRC at `0x20`) is still read, its minimum 0 |
//! | `0x06` | 1 | active | the confirmed slot booted when no trial is pending: 0 = A, 1 = B, `0xFF` none |
//! | `0x07` | 1 | trial | the slot on trial, or `0xFF` |
//! | `0x08` | 1 | trial_boots_left | boots the trial slot may still be started unconfirmed (starts at [`TRIAL_BOOTS`]) |
//! | `0x09` | 1 | reserved | 0 when written; covered by the CRC, otherwise ignored |
//! | `0x0A` | 1 | state A | [`SlotState`]: 0 empty, 1 written (verified, not confirmed), 2 confirmed, 3 rejected |
//! | `0x0B` | 1 | state B | as state A |
//! | `0x0C` | 4 | seq | sequence number: the valid record with the higher one wins |
//! | `0x10` | 4 | version A | slot A's image version (the image header's `image_version`) |
//! | `0x14` | 4 | length A | bytes of slot A's image |
//! | `0x18` | 4 | version B | |
//! | `0x1C` | 4 | length B | |
//! | `0x20` | 4 | min_security_counter | the lowest image security counter the board accepts (docs/IMAGE.md): raised when an image carrying a higher one is confirmed ([`confirm`]), never lowered |
//! | `0x24` | 4 | crc | CRC-32 (IEEE 802.3, as zlib's `crc32`) of bytes `0x00..0x24` |
//!
//! The confirmed flag is per slot (state 2): the active slot is always a confirmed one, and the slot
//! an update replaces keeps its state until the update begins. [`BootState::parse`] refuses any
//! combination a writer never produces. No valid record at all (a new board, both sectors damaged)
//! means nothing is known: [`choose`] verifies both slots whole and starts one that verifies on trial.
//! Sequence numbers do not wrap in practice: each write costs an erase, and a sector endures about
//! 10^5 of them.
//!
//! # Why every power cut ends with a verified image
//!
//! The boot stage never starts an image that fails verification, and an image is only ever described
//! as startable by a record written after the whole image was read back and verified. The order of an
//! update, each step persisted before the next begins:
//!
//! 1. [`Update::begin`]: the target slot (never the active one) is recorded as empty.
//! 2. [`Update::write`]: each sector of the target is erased just before its first byte, then
//!    programmed, in order.
//! 3. [`Update::finish`]: the image is read back and verified, then "trial the target,
//!    [`TRIAL_BOOTS`] boots" is recorded.
//! 4. [`choose`] at each boot: one boot fewer is recorded before the trial image is started; with
//!    none left the slot is recorded as rejected and the active one started.
//! 5. [`confirm`] by the new firmware: the trial slot becomes the active one.
//!
//! A cut during a record write leaves the previous record the newest valid one (a torn record fails
//! its CRC; a half-erased sector held only an older record), so the step is simply not done; a cut
//! during steps 2-3 leaves a slot recorded as empty, which is never started. The tests cut the power
//! at every erase and program step of these sequences, with the part left half-way in several ways,
//! and check that the next [`choose`] starts the old or the new image, intact.
#![no_std]
#![forbid(unsafe_code)]

pub mod boot;
pub mod bootinfo;
pub mod layout;
pub mod record;
pub mod recovery;
pub mod storage;
pub mod update;

pub use boot::{choose, confirm, status, Boot, Confirmed, Decision};
pub use layout::{Layout, LayoutError, Region, Slot, MPC8349EMDS};
pub use record::{BootState, RecordError, SlotInfo, SlotState};
pub use recovery::{recovery_image, RecoveryError};
pub use storage::{Nor, Storage};
pub use update::{flash_image, Progress, Update};

/// Boots a new image gets to confirm itself before it is rolled back.
pub const TRIAL_BOOTS: u8 = 3;

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The flash driver failed (timeout, verify after program, address).
    Flash(norflash::Error),
    /// The layout breaks an invariant.
    Layout(LayoutError),
    /// An erase or program outside the boot-state sectors and the slots was refused before it reached
    /// the part.
    Refused { offset: u32, len: u32 },
    /// An image length of zero or beyond a slot.
    Length { len: u32, max: u32 },
    /// More bytes than [`Update::begin`] was told.
    TooLong { len: u32 },
    /// [`Update::finish`] before every byte was written.
    Incomplete { written: u32, len: u32 },
    /// An earlier write of this update failed; start again.
    Aborted,
    /// The image failed verification before anything was written.
    ImageRefused,
    /// The image read back from flash failed verification; it is not marked for trial.
    Verify,
    /// The boot-state record read back differs from what was written.
    StateWrite,
    /// The boot state changed between [`Update::begin`] and [`Update::finish`].
    StateChanged,
    /// No valid boot-state record.
    NoState,
    /// [`confirm`] from a slot that is neither on trial nor active (rejected, or replaced since).
    NotRunning(Slot),
    /// The sequence number cannot grow.
    SequenceExhausted,
}

#[cfg(test)]
mod tests;
