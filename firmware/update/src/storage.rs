//! The flash as the update logic sees it, the adapter over `norflash`, and the ping-pong store of
//! the boot-state record.

use norflash::{Bus, Clock, Flash};

use crate::layout::Layout;
use crate::record::{BootState, Record, RECORD_LEN};
use crate::Error;

/// Byte-addressed NOR flash: reads anywhere, erases whole sectors, programs by clearing bits.
/// Offsets are from the flash base.
pub trait Storage {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), norflash::Error>;
    /// Erase the sector that starts at `offset`.
    fn erase_sector(&mut self, offset: u32) -> Result<(), norflash::Error>;
    /// Program `data` at `offset` (both even: the part is 16 bits wide), verifying what was written.
    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), norflash::Error>;
}

/// [`Storage`] over the portable CFI/AMD driver and a clock for its timeouts.
pub struct Nor<B: Bus, C: Clock> {
    flash: Flash<B>,
    clock: C,
}

impl<B: Bus, C: Clock> Nor<B, C> {
    pub fn new(flash: Flash<B>, clock: C) -> Self {
        Nor { flash, clock }
    }

    pub fn release(self) -> (Flash<B>, C) {
        (self.flash, self.clock)
    }
}

impl<B: Bus, C: Clock> Storage for Nor<B, C> {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), norflash::Error> {
        let size = self.flash.geometry().size_bytes;
        if u64::from(offset) + buf.len() as u64 > u64::from(size) {
            return Err(norflash::Error::Address(offset));
        }
        // Words are big-endian on the bus: the byte at an even offset is the high half.
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = offset + i as u32;
            let word = self.flash.read(at / 2);
            *byte = if at.is_multiple_of(2) { (word >> 8) as u8 } else { word as u8 };
        }
        Ok(())
    }

    fn erase_sector(&mut self, offset: u32) -> Result<(), norflash::Error> {
        self.flash.erase_sector(offset, &mut self.clock)
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), norflash::Error> {
        self.flash.program(offset, data, &mut self.clock)
    }
}

/// Erase, refused outside the boot-state sectors and the slots.
pub(crate) fn erase<S: Storage>(flash: &mut S, layout: &Layout, offset: u32) -> Result<(), Error> {
    if !layout.writable(offset, layout.sector_bytes) || !offset.is_multiple_of(layout.sector_bytes) {
        return Err(Error::Refused { offset, len: layout.sector_bytes });
    }
    flash.erase_sector(offset).map_err(Error::Flash)
}

/// Program, refused outside the boot-state sectors and the slots.
pub(crate) fn program<S: Storage>(flash: &mut S, layout: &Layout, offset: u32, data: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(data.len()).map_err(|_| Error::Refused { offset, len: u32::MAX })?;
    if !layout.writable(offset, len) {
        return Err(Error::Refused { offset, len });
    }
    flash.program(offset, data).map_err(Error::Flash)
}

/// The boot state as found in flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The newest valid record, if any.
    pub state: Option<BootState>,
    /// Which boot-state sector holds it.
    pub sector: Option<usize>,
}

impl Loaded {
    /// The state to act on: the record's, or [`BootState::UNKNOWN`].
    pub fn current(&self) -> BootState {
        self.state.unwrap_or(BootState::UNKNOWN)
    }
}

/// Read both boot-state sectors; the valid record with the higher sequence number wins.
pub fn load<S: Storage>(flash: &mut S, layout: &Layout) -> Result<Loaded, Error> {
    let mut best = Loaded { state: None, sector: None };
    for (i, sector) in layout.state.iter().enumerate() {
        let mut bytes = [0u8; RECORD_LEN];
        flash.read(sector.offset, &mut bytes).map_err(Error::Flash)?;
        let Ok(state) = BootState::parse(&Record::new_unchecked(&bytes[..])) else { continue };
        if best.state.is_none_or(|b| state.seq > b.seq) {
            best = Loaded { state: Some(state), sector: Some(i) };
        }
    }
    Ok(best)
}

/// Persist `next` as the new boot state: sequence number one past the newest record's, written into
/// the other sector (erase, program, read back). The newest record is never erased, so a power cut
/// at any point leaves either it or the new record as the newest valid one.
pub fn store<S: Storage>(flash: &mut S, layout: &Layout, loaded: &Loaded, next: BootState) -> Result<Loaded, Error> {
    let seq = match loaded.state {
        Some(s) => s.seq.checked_add(1).ok_or(Error::SequenceExhausted)?,
        None => 1,
    };
    let next = BootState { seq, ..next };
    let target = match loaded.sector {
        Some(i) => 1 - i,
        None => 0,
    };
    let offset = layout.state[target].offset;
    erase(flash, layout, offset)?;
    program(flash, layout, offset, &next.to_bytes())?;
    let mut back = [0u8; RECORD_LEN];
    flash.read(offset, &mut back).map_err(Error::Flash)?;
    match BootState::parse(&Record::new_unchecked(&back[..])) {
        Ok(read) if read == next => Ok(Loaded { state: Some(next), sector: Some(target) }),
        _ => Err(Error::StateWrite),
    }
}
