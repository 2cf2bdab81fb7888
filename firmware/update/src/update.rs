//! Writing a new image into the inactive slot: [`Update::begin`] / [`Update::write`] /
//! [`Update::finish`], and [`flash_image`] for an image already in RAM.

use crate::layout::{Layout, Region, Slot};
use crate::record::{BootState, SlotInfo, SlotState};
use crate::storage::{self, Storage};
use crate::{Error, TRIAL_BOOTS};

/// Bytes [`flash_image`] hands to [`Update::write`] at a time: one progress report per 4 KiB (about
/// 31 ms of write-buffer programming on the board's part, 0.12 s a word at a time).
pub const CHUNK: usize = 4096;

/// How far an update has come, for `bpctl`'s progress bars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the image taken so far (programmed, or held for the next 16-bit word).
    pub bytes_written: u32,
    pub bytes_total: u32,
    pub sectors_erased: u32,
    /// Sectors the image covers: each is erased just before its first byte is programmed.
    pub sectors_total: u32,
}

/// The slot an update writes: never the active (confirmed) one. Without a confirmed slot, not the one
/// on trial (it may be what is running); otherwise the first that holds nothing startable.
pub fn target(state: &BootState) -> Slot {
    if let Some(active) = state.active {
        return active.other();
    }
    if let Some(trial) = state.trial {
        return trial.other();
    }
    Slot::BOTH.into_iter().find(|&s| !state.slot(s).state.startable()).unwrap_or(Slot::A)
}

/// An update in progress. Dropping it mid-way is safe: the target slot is marked empty until
/// [`Update::finish`] has read the whole image back and verified it.
#[derive(Debug)]
pub struct Update {
    layout: Layout,
    target: Slot,
    len: u32,
    version: u32,
    /// Bytes taken from [`Update::write`].
    accepted: u32,
    /// Bytes programmed (always even).
    programmed: u32,
    /// An odd byte waiting for its partner to make a 16-bit word.
    pending: Option<u8>,
    /// Bytes of the slot erased, from its start.
    erased: u32,
    sectors_erased: u32,
    /// A flash operation failed: the update cannot continue.
    broken: bool,
}

impl Update {
    /// Start an update of `len` bytes (the image's `version` is recorded with it). Before anything is
    /// erased the target slot is persisted as empty, so no record ever describes a torn image.
    pub fn begin<S: Storage>(flash: &mut S, layout: &Layout, len: u32, version: u32) -> Result<Update, Error> {
        layout.check().map_err(Error::Layout)?;
        let max = layout.slots[0].len;
        if len == 0 || len > max {
            return Err(Error::Length { len, max });
        }
        let loaded = storage::load(flash, layout)?;
        let state = loaded.current();
        let target = target(&state);
        if loaded.state.is_some() && (state.slot(target).state != SlotState::Empty || state.trial == Some(target)) {
            let mut next = state;
            *next.slot_mut(target) = SlotInfo::EMPTY;
            if next.trial == Some(target) {
                next.trial = None;
                next.trial_boots_left = 0;
            }
            storage::store(flash, layout, &loaded, next)?;
        }
        Ok(Update {
            layout: *layout,
            target,
            len,
            version,
            accepted: 0,
            programmed: 0,
            pending: None,
            erased: 0,
            sectors_erased: 0,
            broken: false,
        })
    }

    pub fn target(&self) -> Slot {
        self.target
    }

    pub fn progress(&self) -> Progress {
        Progress {
            bytes_written: self.accepted,
            bytes_total: self.len,
            sectors_erased: self.sectors_erased,
            sectors_total: self.len.div_ceil(self.layout.sector_bytes),
        }
    }

    /// The next bytes of the image, in order, any size (odd sizes too).
    pub fn write<S: Storage>(&mut self, flash: &mut S, chunk: &[u8]) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Aborted);
        }
        let fits =
            u32::try_from(chunk.len()).ok().filter(|&n| self.accepted.checked_add(n).is_some_and(|t| t <= self.len));
        let Some(n) = fits else { return Err(Error::TooLong { len: self.len }) };
        let result = self.take(flash, chunk);
        if result.is_err() {
            self.broken = true;
        } else {
            self.accepted += n;
        }
        result
    }

    fn take<S: Storage>(&mut self, flash: &mut S, chunk: &[u8]) -> Result<(), Error> {
        let mut data = chunk;
        if let Some(first) = self.pending {
            let Some((&second, rest)) = data.split_first() else { return Ok(()) };
            self.program(flash, &[first, second])?;
            self.pending = None;
            data = rest;
        }
        let even = data.len() & !1;
        self.program(flash, &data[..even])?;
        if even < data.len() {
            self.pending = Some(data[even]);
        }
        Ok(())
    }

    /// Program the next bytes (even count), erasing each sector just before its first byte.
    fn program<S: Storage>(&mut self, flash: &mut S, bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        let slot = self.layout.slot(self.target);
        // Fits: at most `len + 1` (an odd length padded), and the slot is a whole number of sectors.
        let end = self.programmed + bytes.len() as u32;
        while self.erased < end {
            storage::erase(flash, &self.layout, slot.offset + self.erased)?;
            self.erased += self.layout.sector_bytes;
            self.sectors_erased += 1;
        }
        storage::program(flash, &self.layout, slot.offset + self.programmed, bytes)?;
        self.programmed = end;
        Ok(())
    }

    /// All bytes written: program the last odd byte (padded with 0xFF), read the image back through
    /// `verify`, and only then persist "trial this slot" with [`TRIAL_BOOTS`] boots. Returns the slot
    /// the next boot starts on trial.
    pub fn finish<S: Storage>(
        mut self,
        flash: &mut S,
        verify: impl FnOnce(&mut S, Region) -> bool,
    ) -> Result<Slot, Error> {
        if self.broken {
            return Err(Error::Aborted);
        }
        if self.accepted != self.len {
            return Err(Error::Incomplete { written: self.accepted, len: self.len });
        }
        if let Some(last) = self.pending.take() {
            self.program(flash, &[last, 0xFF])?;
        }
        let image = Region::new(self.layout.slot(self.target).offset, self.len);
        if !verify(flash, image) {
            return Err(Error::Verify);
        }
        let loaded = storage::load(flash, &self.layout)?;
        let state = loaded.current();
        if state.slot(self.target).state != SlotState::Empty || state.active == Some(self.target) {
            return Err(Error::StateChanged);
        }
        let mut next = BootState { trial: Some(self.target), trial_boots_left: TRIAL_BOOTS, ..state };
        *next.slot_mut(self.target) = SlotInfo { state: SlotState::Written, version: self.version, len: self.len };
        storage::store(flash, &self.layout, &loaded, next)?;
        Ok(self.target)
    }
}

/// Write an image received into RAM: verify it there first (`verify_ram`; nothing is erased for an
/// image that fails), write it with progress reports, read it back and verify it in flash
/// (`verify_flash`), then mark it for trial.
pub fn flash_image<S: Storage>(
    flash: &mut S,
    layout: &Layout,
    image: &[u8],
    version: u32,
    verify_ram: impl FnOnce(&[u8]) -> bool,
    verify_flash: impl FnOnce(&mut S, Region) -> bool,
    mut progress: impl FnMut(Progress),
) -> Result<Slot, Error> {
    if !verify_ram(image) {
        return Err(Error::ImageRefused);
    }
    let len = u32::try_from(image.len()).map_err(|_| Error::Length { len: u32::MAX, max: layout.slots[0].len })?;
    let mut update = Update::begin(flash, layout, len, version)?;
    progress(update.progress());
    for chunk in image.chunks(CHUNK) {
        update.write(flash, chunk)?;
        progress(update.progress());
    }
    update.finish(flash, verify_flash)
}
