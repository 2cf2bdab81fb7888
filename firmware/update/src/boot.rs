//! The boot stage's decision ([`choose`]) and the running firmware's confirmation ([`confirm`]).

use crate::layout::{Layout, Region, Slot};
use crate::record::{BootState, SlotInfo, SlotState};
use crate::storage::{self, Storage};
use crate::{Error, TRIAL_BOOTS};

/// What the boot stage starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// The image at the start of `image` (which verified just now) in `slot`; `trial` if it has not
    /// confirmed yet and must call [`confirm`] before its boots run out.
    Slot { slot: Slot, image: Region, trial: bool },
    /// No slot holds an image that verifies: wait for one from the host through the BAR.
    Recovery,
}

/// The decision, with what happened on the way (for the boot stage's log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub boot: Boot,
    /// Slots whose image was verified and refused this time.
    pub refused: [bool; 2],
    /// A trial slot that ran out of boots without confirming and was rejected.
    pub rolled_back: Option<Slot>,
    /// A boot-state write failed (the decision stands; the write is retried at the next boot).
    pub state_write_failed: bool,
}

/// The region `verify` is given for a slot: the recorded image, or the whole slot when the record
/// does not say (the verifier then takes the image's length from its header). `None` if the recorded
/// length cannot be right.
fn image_region(layout: &Layout, slot: Slot, info: &SlotInfo, known: bool) -> Option<Region> {
    let whole = layout.slot(slot);
    if !known {
        return Some(whole);
    }
    (info.len != 0 && info.len <= whole.len).then_some(Region::new(whole.offset, info.len))
}

/// Decide what to boot, persisting any change of state before the image is started:
///
/// 1. A trial slot with boots left that verifies: decrement its boots, persist, start it. If the
///    decrement cannot be persisted the trial is not started while a confirmed image verifies (it
///    could never run out).
/// 2. A trial slot out of boots (or failing verification): mark it rejected and persist (roll back).
/// 3. The active (confirmed) slot, if it verifies.
/// 4. Otherwise another slot whose image is written or confirmed and verifies, as a new trial; with no
///    record at all, any slot that verifies (whole-slot region).
/// 5. Otherwise [`Boot::Recovery`].
///
/// `verify(flash, region)` must check the image at the start of `region` (signature, hash) and is
/// given the flash to read it through; a slot whose image fails it is never started.
pub fn choose<S: Storage>(
    flash: &mut S,
    layout: &Layout,
    mut verify: impl FnMut(&mut S, Region) -> bool,
) -> Result<Decision, Error> {
    layout.check().map_err(Error::Layout)?;
    let mut loaded = storage::load(flash, layout)?;
    let known = loaded.state.is_some();
    let mut state = loaded.current();
    let mut decision =
        Decision { boot: Boot::Recovery, refused: [false; 2], rolled_back: None, state_write_failed: false };
    // Each slot is verified at most once per decision.
    let mut verdict: [Option<Option<Region>>; 2] = [None; 2];
    let mut check = |flash: &mut S, slot: Slot, state: &BootState, decision: &mut Decision| -> Option<Region> {
        *verdict[slot.index()].get_or_insert_with(|| {
            let region = image_region(layout, slot, state.slot(slot), known)?;
            let ok = verify(flash, region);
            decision.refused[slot.index()] = !ok;
            ok.then_some(region)
        })
    };

    if let Some(trial) = state.trial {
        let image = if state.trial_boots_left > 0 { check(flash, trial, &state, &mut decision) } else { None };
        if let Some(image) = image {
            let next = BootState { trial_boots_left: state.trial_boots_left - 1, ..state };
            match storage::store(flash, layout, &loaded, next) {
                Ok(_) => {
                    decision.boot = Boot::Slot { slot: trial, image, trial: true };
                    return Ok(decision);
                }
                Err(_) => decision.state_write_failed = true,
            }
        } else {
            if state.trial_boots_left == 0 {
                decision.rolled_back = Some(trial);
            }
            let mut next = BootState { trial: None, trial_boots_left: 0, ..state };
            next.slot_mut(trial).state = SlotState::Rejected;
            match storage::store(flash, layout, &loaded, next) {
                Ok(l) => loaded = l,
                Err(_) => decision.state_write_failed = true,
            }
            state = next;
        }
    }

    if let Some(active) = state.active {
        if let Some(image) = check(flash, active, &state, &mut decision) {
            decision.boot = Boot::Slot { slot: active, image, trial: false };
            return Ok(decision);
        }
    }

    // The confirmed image is missing or bad: start another verified one on trial, so that it either
    // confirms (and becomes active) or runs out and is rejected, ending in recovery rather than in a
    // loop. Without a record nothing is known: every slot is a candidate.
    for slot in Slot::BOTH {
        if state.active == Some(slot) || (known && !state.slot(slot).state.startable()) {
            continue;
        }
        let Some(image) = check(flash, slot, &state, &mut decision) else { continue };
        let mut next = BootState { trial: Some(slot), trial_boots_left: TRIAL_BOOTS - 1, ..state };
        if !known {
            *next.slot_mut(slot) = SlotInfo { state: SlotState::Written, version: 0, len: image.len };
        }
        // A failed write still starts the image: it verified, and the alternative is recovery.
        if storage::store(flash, layout, &loaded, next).is_err() {
            decision.state_write_failed = true;
        }
        decision.boot = Boot::Slot { slot, image, trial: true };
        return Ok(decision);
    }
    Ok(decision)
}

/// What [`confirm`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// The trial slot is now the active one.
    Now,
    /// The slot was already the active, confirmed one: nothing written (unless its security
    /// counter raised the minimum).
    Already,
}

/// The running firmware (started from `running`, an image carrying `security_counter`) marks its
/// slot good: the trial ends and the slot becomes the active one. The previously active slot stays
/// confirmed, as the fallback and as the next update's target. The boot state's minimum security
/// counter is raised to `security_counter` if that is higher, in the same record write (so a power cut
/// leaves either the old trial and minimum or both new), and never lowered.
pub fn confirm<S: Storage>(
    flash: &mut S,
    layout: &Layout,
    running: Slot,
    security_counter: u32,
) -> Result<Confirmed, Error> {
    layout.check().map_err(Error::Layout)?;
    let loaded = storage::load(flash, layout)?;
    let state = loaded.state.ok_or(Error::NoState)?;
    let min_security_counter = state.min_security_counter.max(security_counter);
    if state.trial == Some(running) {
        let mut next =
            BootState { active: Some(running), trial: None, trial_boots_left: 0, min_security_counter, ..state };
        next.slot_mut(running).state = SlotState::Confirmed;
        storage::store(flash, layout, &loaded, next)?;
        return Ok(Confirmed::Now);
    }
    if state.active == Some(running) {
        if min_security_counter != state.min_security_counter {
            storage::store(flash, layout, &loaded, BootState { min_security_counter, ..state })?;
        }
        return Ok(Confirmed::Already);
    }
    // Rejected, or replaced by an update since it was started.
    Err(Error::NotRunning(running))
}

/// The boot state for status reports (`bpctl`): the newest valid record, if any.
pub fn status<S: Storage>(flash: &mut S, layout: &Layout) -> Result<Option<BootState>, Error> {
    layout.check().map_err(Error::Layout)?;
    Ok(storage::load(flash, layout)?.state)
}
