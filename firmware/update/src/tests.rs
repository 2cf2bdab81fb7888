//! Tests over a fake NOR part driven through the real `norflash` driver.
//!
//! The fake is the one the project's tests share (`bpnet-test-support`'s `nor`): the AMD command set
//! at the driver's level and the board emulator's semantics (program only clears bits, erase sets a
//! sector to 0xFF). A power cut is injected at the Nth program or erase operation and leaves it
//! half-done in one of several ways ([`Cut`]); the part is then dead (writes ignored, reads all
//! ones) until the test restarts it.
extern crate std;

use core::cell::RefCell;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use bpnet_test_support::nor::{Cut, FakeNor};
use norflash::{Bus, Clock, Flash};

use super::*;
use crate::record::{Record, RECORD_LEN};
use crate::storage::Storage;

// ---------------------------------------------------------------------------------------------------
// The fake part

/// The fake part as the driver's bus, shared with the test that cuts its power.
struct Port<'a>(&'a RefCell<FakeNor>);

impl Bus for Port<'_> {
    fn read(&mut self, word: u32) -> u16 {
        self.0.borrow_mut().read(word)
    }

    fn write(&mut self, word: u32, value: u16) {
        self.0.borrow_mut().write(word, value)
    }
}

struct Ticks(u64);
impl Clock for Ticks {
    fn now_us(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

type Fake<'a> = Nor<Port<'a>, Ticks>;

fn nor(part: &RefCell<FakeNor>) -> Fake<'_> {
    Nor::new(Flash::probe(Port(part)).expect("the fake part answers CFI"), Ticks(0))
}

// ---------------------------------------------------------------------------------------------------
// Test images: "TIMG", length, version, payload, CRC-32 of everything before it (little-endian).

fn image(version: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(b"TIMG");
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    let mut x = version.wrapping_mul(0x9E37_79B9) | 1;
    while v.len() < len - 4 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // No 0xFF bytes: every word of the image takes a program step of its own.
        v.push((x as u8) & 0xFE);
    }
    let crc = record::crc32(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

fn image_ok(bytes: &[u8]) -> bool {
    if bytes.len() < 16 || &bytes[..4] != b"TIMG" {
        return false;
    }
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if len != bytes.len() {
        return false;
    }
    let stored = u32::from_le_bytes([bytes[len - 4], bytes[len - 3], bytes[len - 2], bytes[len - 1]]);
    record::crc32(&bytes[..len - 4]) == stored
}

/// The verifier the logic is given: the image at the start of `region`, its length from its header
/// (as the board's does with `bpnet-image`'s `image_len`).
fn verify<S: Storage>(flash: &mut S, region: Region) -> bool {
    read_image(flash, region).is_some_and(|b| image_ok(&b))
}

fn read_image<S: Storage>(flash: &mut S, region: Region) -> Option<Vec<u8>> {
    let mut head = [0u8; 8];
    flash.read(region.offset, &mut head).ok()?;
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(16..=region.len).contains(&len) {
        return None;
    }
    let mut bytes = vec![0u8; len as usize];
    flash.read(region.offset, &mut bytes).ok()?;
    Some(bytes)
}

// ---------------------------------------------------------------------------------------------------
// A small layout over a 4 KiB part of sixteen 256-byte sectors.

const SMALL: Layout = Layout {
    flash_bytes: 4096,
    sector_bytes: 256,
    reserved: Region::new(0, 256),
    state: [Region::new(256, 256), Region::new(512, 256)],
    slots: [Region::new(768, 1280), Region::new(2048, 1280)],
    identity: Region::new(3840, 256),
};
const _: () = assert!(SMALL.check().is_ok());

fn small_part() -> RefCell<FakeNor> {
    let mut part = FakeNor::new(12, 256);
    // Something to notice if it were touched: the reserved area, the unused sectors, the identity.
    for (i, w) in part.words_mut().iter_mut().enumerate() {
        let byte = 2 * i as u32;
        if SMALL.reserved.holds(byte, 2) || byte >= SMALL.slots[1].end() as u32 {
            *w = 0x5A00 | (i as u16 & 0xFF);
        }
    }
    RefCell::new(part)
}

fn protected(part: &RefCell<FakeNor>) -> Vec<u16> {
    let p = part.borrow();
    let r = SMALL.reserved;
    let mut v = p.words()[..(r.len / 2) as usize].to_vec();
    v.extend_from_slice(&p.words()[(SMALL.slots[1].end() / 2) as usize..]);
    v
}

fn slot_content(part: &RefCell<FakeNor>, slot: Slot) -> Option<Vec<u8>> {
    read_image(&mut nor(part), SMALL.slot(slot))
}

fn write_update(part: &RefCell<FakeNor>, img: &[u8], version: u32, chunk: usize) -> Result<Slot, Error> {
    let mut f = nor(part);
    let mut u = Update::begin(&mut f, &SMALL, img.len() as u32, version)?;
    for c in img.chunks(chunk) {
        u.write(&mut f, c)?;
    }
    u.finish(&mut f, verify)
}

fn choose_small(part: &RefCell<FakeNor>) -> Result<Decision, Error> {
    choose(&mut nor(part), &SMALL, verify)
}

// ---------------------------------------------------------------------------------------------------
// Exhaustive power cuts

/// One step of a board's life.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Write this image (version) with `Update`, in 77-byte chunks (odd, so words straddle chunks).
    Update(u32),
    /// The boot stage runs.
    Choose,
    /// The firmware the last `Choose` started confirms itself.
    ConfirmRunning,
}

const OLD: u32 = 1;
const NEW: u32 = 2;
/// A third image, written over a slot that still holds a rejected one.
const THIRD: u32 = 3;
const OLD_LEN: usize = 900;
/// Odd, and five sectors: the pad byte and every sector boundary are exercised.
const NEW_LEN: usize = 1031;

fn image_of(version: u32) -> Vec<u8> {
    image(version, if version == OLD { OLD_LEN } else { NEW_LEN })
}

/// How a run of steps ended.
#[derive(Debug)]
enum Stop {
    /// The power was cut and the step in progress said so (an error, or for the boot stage a failed
    /// state write).
    Cut,
    /// The power was cut but the step claimed success.
    Unnoticed(String),
    /// A step failed with the power on.
    Failed(Error),
}

/// Run `steps` until the power is cut; the op count after each finished step.
fn run(part: &RefCell<FakeNor>, steps: &[Step]) -> Result<Vec<u64>, Stop> {
    let mut marks = Vec::new();
    let mut running = None;
    for step in steps {
        let (result, noticed) = match *step {
            Step::Update(v) => {
                let r = write_update(part, &image_of(v), v, 77).map(|_| ());
                (r, r.is_err())
            }
            Step::Choose => match choose_small(part) {
                Ok(d) => {
                    running = match d.boot {
                        Boot::Slot { slot, .. } => Some(slot),
                        Boot::Recovery => None,
                    };
                    (Ok(()), d.state_write_failed)
                }
                Err(e) => (Err(e), true),
            },
            Step::ConfirmRunning => {
                let r = match running {
                    Some(slot) => confirm(&mut nor(part), &SMALL, slot, 0).map(|_| ()),
                    None => Err(Error::NoState),
                };
                (r, r.is_err())
            }
        };
        if part.borrow().dead {
            return Err(if noticed { Stop::Cut } else { Stop::Unnoticed(format!("{step:?} claimed success")) });
        }
        if let Err(e) = result {
            return Err(Stop::Failed(e));
        }
        marks.push(part.borrow().ops);
    }
    Ok(marks)
}

/// Ops of a clean run up to the end of the first update's writes (before `finish`): until then the
/// new image is not complete in flash.
fn ops_until_image_written(base: &RefCell<FakeNor>, version: u32) -> u64 {
    let part = base.clone();
    part.borrow_mut().restart();
    let img = image_of(version);
    let mut f = nor(&part);
    let mut u = Update::begin(&mut f, &SMALL, img.len() as u32, version).unwrap();
    for c in img.chunks(77) {
        u.write(&mut f, c).unwrap();
    }
    let ops = part.borrow().ops;
    ops
}

fn cut_outcome(r: Result<Vec<u64>, Stop>) -> Result<(), String> {
    match r {
        Err(Stop::Cut) => Ok(()),
        Err(Stop::Unnoticed(s)) => Err(s),
        Err(Stop::Failed(e)) => Err(format!("failed with the power on: {e:?}")),
        Ok(_) => Err("the run finished although the power was cut".into()),
    }
}

/// What the boot stage started after a restart, checked: a slot whose bytes are exactly the old or
/// the new image (never torn), or recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Started {
    Version { version: u32, slot: Slot, trial: bool },
    Recovery,
}

fn boot_and_check(part: &RefCell<FakeNor>) -> Result<Started, String> {
    let d = choose_small(part).map_err(|e| format!("choose failed after restart: {e:?}"))?;
    match d.boot {
        Boot::Recovery => Ok(Started::Recovery),
        Boot::Slot { slot, image: region, trial } => {
            let bytes = read_image(&mut nor(part), region).ok_or("started slot has no image header")?;
            for v in [OLD, NEW, THIRD] {
                if bytes == image_of(v) && region.offset == SMALL.slot(slot).offset {
                    return Ok(Started::Version { version: v, slot, trial });
                }
            }
            Err(format!("started slot {slot:?} holds neither the old nor the new image"))
        }
    }
}

/// After a cut and the first boot, carry on to the end of the story: updates lost to the cut are
/// redone, trials are confirmed (or not, per `confirm`), until the board runs `want` unconfirmed-free.
fn complete(part: &RefCell<FakeNor>, mut started: Started, confirm_new: bool, new: u32) -> Result<(), String> {
    for _ in 0..(2 * TRIAL_BOOTS as usize + 6) {
        let state = status(&mut nor(part), &SMALL).map_err(|e| format!("{e:?}"))?;
        match started {
            Started::Recovery => {
                write_update(part, &image_of(OLD), OLD, 77).map_err(|e| format!("re-provisioning: {e:?}"))?;
            }
            Started::Version { version, slot, trial: true } => {
                if confirm_new || version == OLD {
                    confirm(&mut nor(part), &SMALL, slot, 0).map_err(|e| format!("confirm: {e:?}"))?;
                }
            }
            Started::Version { version, trial: false, .. } if confirm_new && version == new => return Ok(()),
            Started::Version { version: OLD, trial: false, .. } => {
                let b = state.map(|s| s.slot(Slot::B).state);
                if !confirm_new && b == Some(SlotState::Rejected) {
                    return Ok(());
                }
                // The update was lost to the cut (or never reached): run it again.
                write_update(part, &image_of(new), new, 77).map_err(|e| format!("redoing the update: {e:?}"))?;
            }
            Started::Version { .. } => return Err(format!("unexpected steady state {started:?}")),
        }
        started = boot_and_check(part)?;
        if started == Started::Recovery {
            return Err("recovery while a good image exists".into());
        }
    }
    Err(format!("no steady state reached; last {started:?}"))
}

#[derive(Default)]
struct Tally {
    tested: u64,
    survived: u64,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: String, outcome: Result<(), String>) {
        self.tested += 1;
        match outcome {
            Ok(()) => self.survived += 1,
            Err(e) if self.failures.len() < 10 => self.failures.push(format!("{what}: {e}")),
            Err(_) => {}
        }
    }
}

/// Which image must start after a cut at op `k` (`None`: either), given the uncut run's marks.
type Expect = dyn Fn(u64, &[u64]) -> Option<u32>;

/// Cut the power at every program/erase step of `steps` (run on `base`), in every [`Cut`]; after
/// each cut restart, boot, and check the image started (intact, the expected one) and carry the board
/// on to its steady state. The first boot after a cut may write the boot state itself: the power is
/// cut at each of those steps too (a second cut), then the board boots again and is checked the same way.
fn exhaust(base: &RefCell<FakeNor>, steps: &[Step], confirm_new: bool, new: u32, expect: &Expect, tally: &mut Tally) {
    base.borrow_mut().restart();
    let guard = protected(base);
    let marks = run(&base.clone(), steps).expect("the uncut run succeeds");
    let total = *marks.last().unwrap();
    for k in 1..=total {
        for effect in Cut::ALL {
            let part = base.clone();
            part.borrow_mut().cut = Some((k, effect));
            let what = format!("cut at step {k}/{total} ({effect:?})");
            let outcome = cut_outcome(run(&part, steps)).and_then(|()| {
                part.borrow_mut().restart();
                let ops_of_boot = {
                    let probe = part.clone();
                    boot_and_check(&probe)?;
                    let n = probe.borrow().ops;
                    n
                };
                for j in 1..=ops_of_boot {
                    for effect2 in [Cut::EmulatorHalf, Cut::Scrambled] {
                        let again = part.clone();
                        again.borrow_mut().cut = Some((j, effect2));
                        let noticed = choose_small(&again).map_or(true, |d| d.state_write_failed);
                        again.borrow_mut().restart();
                        let outcome = if noticed { Ok(()) } else { Err("boot claimed its state write".into()) }
                            .and_then(|()| check_start(&again, None))
                            .and_then(|s| complete(&again, s, confirm_new, new))
                            .and_then(|()| untouched(&again, &guard));
                        tally.record(format!("{what}, then at boot step {j} ({effect2:?})"), outcome);
                    }
                }
                let started = check_start(&part, expect(k, &marks))?;
                complete(&part, started, confirm_new, new)?;
                untouched(&part, &guard)
            });
            tally.record(what, outcome);
        }
    }
}

fn untouched(part: &RefCell<FakeNor>, guard: &[u16]) -> Result<(), String> {
    if protected(part) != guard {
        return Err("the reserved area, the unused sectors or the identity sector changed".into());
    }
    Ok(())
}

/// Boot after a restart: an intact image, never recovery (a good image always exists), the
/// `expected` version if one is.
fn check_start(part: &RefCell<FakeNor>, expected: Option<u32>) -> Result<Started, String> {
    let started = boot_and_check(part)?;
    match (started, expected) {
        (Started::Recovery, _) => Err("recovery while a good image existed".into()),
        (Started::Version { version, .. }, Some(want)) if version != want => {
            Err(format!("started version {version}, expected {want}"))
        }
        _ => Ok(started),
    }
}

/// A board with the old image confirmed in slot A.
fn provisioned() -> RefCell<FakeNor> {
    let part = small_part();
    write_update(&part, &image_of(OLD), OLD, 64).unwrap();
    assert!(matches!(choose_small(&part).unwrap().boot, Boot::Slot { slot: Slot::A, trial: true, .. }));
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::A, 0), Ok(Confirmed::Now));
    part
}

/// The minimum security counter: raised by the confirm of an image carrying a higher one (in the
/// confirm's own record write), raised by an already-confirmed image that carries a higher one, never
/// lowered; a trial that is not confirmed does not raise it.
#[test]
fn confirm_raises_the_minimum_security_counter_and_never_lowers_it() {
    let part = provisioned();
    let min = |part: &RefCell<FakeNor>| status(&mut nor(part), &SMALL).unwrap().unwrap().min_security_counter;
    assert_eq!(min(&part), 0);
    // A new image on trial: the minimum stays until it confirms.
    write_update(&part, &image_of(NEW), NEW, 64).unwrap();
    assert!(matches!(choose_small(&part).unwrap().boot, Boot::Slot { slot: Slot::B, trial: true, .. }));
    assert_eq!(min(&part), 0);
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 7), Ok(Confirmed::Now));
    assert_eq!(min(&part), 7);
    // Confirming again with a lower counter (an older image) does not lower it, and writes nothing.
    let writes = part.borrow().ops;
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 3), Ok(Confirmed::Already));
    assert_eq!((min(&part), part.borrow().ops), (7, writes));
    // The active image carrying a higher counter than recorded raises it.
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 9), Ok(Confirmed::Already));
    assert_eq!(min(&part), 9);
    // A slot that is neither on trial nor active raises nothing.
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::A, 50), Err(Error::NotRunning(Slot::A)));
    assert_eq!(min(&part), 9);
    // Later records (an update, a trial) carry the minimum on.
    write_update(&part, &image_of(OLD), OLD, 64).unwrap();
    choose_small(&part).unwrap();
    assert_eq!(min(&part), 9);
}

fn report(name: &str, tally: &Tally) {
    std::eprintln!("{name}: powercut_points_tested={} powercut_points_survived={}", tally.tested, tally.survived);
    assert!(
        tally.failures.is_empty(),
        "{name}: {} of {} cut points failed:\n{}",
        tally.tested - tally.survived,
        tally.tested,
        tally.failures.join("\n")
    );
    assert_eq!(tally.tested, tally.survived);
    assert!(tally.tested > 0);
}

#[test]
fn power_cut_at_every_step_of_update_trial_and_confirm() {
    let base = provisioned();
    let written = ops_until_image_written(&base, NEW);
    // Marks: update, trial boot, confirm. Old until the image is complete, new once the trial is
    // recorded.
    let expect = move |k: u64, marks: &[u64]| match k {
        k if k <= written => Some(OLD),
        k if k > marks[0] => Some(NEW),
        _ => None,
    };
    let mut tally = Tally::default();
    exhaust(&base, &[Step::Update(NEW), Step::Choose, Step::ConfirmRunning], true, NEW, &expect, &mut tally);
    report("update, trial boot, confirm", &tally);
}

#[test]
fn power_cut_at_every_step_of_update_and_rollback() {
    let base = provisioned();
    let written = ops_until_image_written(&base, NEW);
    let mut steps = vec![Step::Update(NEW)];
    // N trial boots without a confirm, the rollback boot, and one more boot of the old image.
    steps.extend([Step::Choose; TRIAL_BOOTS as usize + 2]);
    let n = TRIAL_BOOTS as usize;
    // Marks: update, N trial boots, rollback, old. New while a recorded trial boot is left; old once
    // the last trial boot's record is written.
    let expect = move |k: u64, marks: &[u64]| match k {
        k if k <= written => Some(OLD),
        k if k > marks[0] && k <= marks[n - 1] => Some(NEW),
        k if k > marks[n] => Some(OLD),
        _ => None,
    };
    let mut tally = Tally::default();
    exhaust(&base, &steps, false, NEW, &expect, &mut tally);
    report("update, unconfirmed trials, rollback", &tally);
}

#[test]
fn power_cut_at_every_step_of_an_update_over_a_rejected_image() {
    // Slot B holds an image that ran out of trial boots; the update first records B as empty.
    let base = provisioned();
    write_update(&base, &image_of(NEW), NEW, 100).unwrap();
    for _ in 0..=TRIAL_BOOTS {
        choose_small(&base).unwrap();
    }
    assert_eq!(status(&mut nor(&base), &SMALL).unwrap().unwrap().slot(Slot::B).state, SlotState::Rejected);
    let written = ops_until_image_written(&base, THIRD);
    let expect = move |k: u64, marks: &[u64]| match k {
        k if k <= written => Some(OLD),
        k if k > marks[0] => Some(THIRD),
        _ => None,
    };
    let mut tally = Tally::default();
    exhaust(&base, &[Step::Update(THIRD), Step::Choose, Step::ConfirmRunning], true, THIRD, &expect, &mut tally);
    report("update over a rejected image, trial boot, confirm", &tally);
}

#[test]
fn power_cut_at_every_step_of_first_provisioning() {
    // A new board: nothing in flash; the image comes in through recovery and is written to a slot.
    let base = small_part();
    let steps = [Step::Update(OLD), Step::Choose, Step::ConfirmRunning];
    let marks = run(&base.clone(), &steps).expect("the uncut run succeeds");
    // Recovery is right until the image is complete in flash: then the scan without a record finds it.
    let image_done = ops_until_image_written(&base, OLD);
    let mut tally = Tally::default();
    let guard = protected(&base);
    let total = *marks.last().unwrap();
    for k in 1..=total {
        for effect in Cut::ALL {
            let p = base.clone();
            p.borrow_mut().cut = Some((k, effect));
            let outcome = cut_outcome(run(&p, &steps)).and_then(|()| {
                p.borrow_mut().restart();
                match boot_and_check(&p)? {
                    Started::Recovery if k > image_done => return Err("recovery with a complete image".into()),
                    Started::Recovery => {
                        write_update(&p, &image_of(OLD), OLD, 77).map_err(|e| format!("{e:?}"))?;
                    }
                    Started::Version { version: OLD, .. } => {}
                    other => return Err(format!("unexpected {other:?}")),
                }
                let mut s = boot_and_check(&p)?;
                if let Started::Version { slot, trial: true, .. } = s {
                    confirm(&mut nor(&p), &SMALL, slot, 0).map_err(|e| format!("{e:?}"))?;
                    s = boot_and_check(&p)?;
                }
                if !matches!(s, Started::Version { version: OLD, trial: false, .. }) {
                    return Err(format!("not settled: {s:?}"));
                }
                untouched(&p, &guard)
            });
            tally.record(format!("cut at step {k}/{total} ({effect:?})"), outcome);
        }
    }
    report("first provisioning", &tally);
}

// ---------------------------------------------------------------------------------------------------
// Trial boots, rollback, verification failures

fn boot(part: &RefCell<FakeNor>) -> Boot {
    choose_small(part).unwrap().boot
}

#[test]
fn unconfirmed_trial_rolls_back_after_n_boots() {
    let part = provisioned();
    assert_eq!(write_update(&part, &image_of(NEW), NEW, 100), Ok(Slot::B));
    for left in (0..TRIAL_BOOTS).rev() {
        assert!(matches!(boot(&part), Boot::Slot { slot: Slot::B, trial: true, .. }));
        assert_eq!(status(&mut nor(&part), &SMALL).unwrap().unwrap().trial_boots_left, left);
    }
    let d = choose_small(&part).unwrap();
    assert_eq!(d.rolled_back, Some(Slot::B));
    assert!(matches!(d.boot, Boot::Slot { slot: Slot::A, trial: false, .. }));
    let s = status(&mut nor(&part), &SMALL).unwrap().unwrap();
    assert_eq!((s.active, s.trial, s.slot(Slot::B).state), (Some(Slot::A), None, SlotState::Rejected));
    // Rejected stays rejected, and a late confirm from it is refused.
    assert!(matches!(boot(&part), Boot::Slot { slot: Slot::A, trial: false, .. }));
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 0), Err(Error::NotRunning(Slot::B)));
}

#[test]
fn confirmed_trial_stays() {
    let part = provisioned();
    write_update(&part, &image_of(NEW), NEW, 100).unwrap();
    assert!(matches!(boot(&part), Boot::Slot { slot: Slot::B, trial: true, .. }));
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 0), Ok(Confirmed::Now));
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 0), Ok(Confirmed::Already));
    for _ in 0..2 * TRIAL_BOOTS {
        assert!(matches!(boot(&part), Boot::Slot { slot: Slot::B, trial: false, .. }));
    }
    let s = status(&mut nor(&part), &SMALL).unwrap().unwrap();
    assert_eq!(s.active, Some(Slot::B));
    assert_eq!(s.slot(Slot::B).version, NEW);
    assert_eq!(s.slot(Slot::A).state, SlotState::Confirmed, "the old image stays as the fallback");
    // The next update replaces the old one, never the running, confirmed one.
    assert_eq!(write_update(&part, &image_of(OLD), OLD, 100), Ok(Slot::A));
}

#[test]
fn a_slot_failing_verification_is_never_started() {
    // The trial image decays: rejected, the confirmed one starts.
    let part = provisioned();
    write_update(&part, &image_of(NEW), NEW, 100).unwrap();
    corrupt(&part, SMALL.slot(Slot::B).offset + 500);
    let d = choose_small(&part).unwrap();
    assert_eq!(d.refused, [false, true]);
    assert!(matches!(d.boot, Boot::Slot { slot: Slot::A, trial: false, .. }));
    assert_eq!(status(&mut nor(&part), &SMALL).unwrap().unwrap().slot(Slot::B).state, SlotState::Rejected);

    // The confirmed image decays while another confirmed one exists: that one starts, on trial.
    let part = provisioned();
    write_update(&part, &image_of(NEW), NEW, 100).unwrap();
    boot(&part);
    confirm(&mut nor(&part), &SMALL, Slot::B, 0).unwrap();
    corrupt(&part, SMALL.slot(Slot::B).offset + 20);
    let d = choose_small(&part).unwrap();
    assert_eq!(d.refused, [false, true]);
    assert!(matches!(d.boot, Boot::Slot { slot: Slot::A, trial: true, .. }));
    assert_eq!(slot_content(&part, Slot::A).unwrap(), image_of(OLD));

    // Both bad: recovery.
    corrupt(&part, SMALL.slot(Slot::A).offset + 20);
    let d = choose_small(&part).unwrap();
    assert_eq!(d.boot, Boot::Recovery);
    assert_eq!(d.refused, [true, true]);
}

/// Clear one bit that is set (as decay or a stray program would).
fn corrupt(part: &RefCell<FakeNor>, byte: u32) {
    let mut p = part.borrow_mut();
    let w = &mut p.words_mut()[(byte / 2) as usize];
    assert_ne!(*w, 0, "a word with a bit to clear");
    *w &= *w - 1;
}

#[test]
fn empty_board_waits_for_recovery_and_a_raw_image_is_adopted() {
    let part = small_part();
    assert_eq!(choose_small(&part).unwrap().boot, Boot::Recovery);
    assert_eq!(status(&mut nor(&part), &SMALL).unwrap(), None);
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::A, 0), Err(Error::NoState));
    // An image programmed into slot B by other means (no record): found, started on trial, recorded.
    let img = image_of(OLD);
    {
        let mut f = nor(&part);
        f.erase_sector(SMALL.slots[1].offset).unwrap();
        for s in 1..4 {
            f.erase_sector(SMALL.slots[1].offset + s * 256).unwrap();
        }
        f.program(SMALL.slots[1].offset, &img).unwrap();
    }
    let d = choose_small(&part).unwrap();
    assert!(matches!(d.boot, Boot::Slot { slot: Slot::B, trial: true, .. }));
    let s = status(&mut nor(&part), &SMALL).unwrap().unwrap();
    assert_eq!(
        (s.trial, s.trial_boots_left, s.slot(Slot::B).state),
        (Some(Slot::B), TRIAL_BOOTS - 1, SlotState::Written)
    );
    assert_eq!(confirm(&mut nor(&part), &SMALL, Slot::B, 0), Ok(Confirmed::Now));
    assert!(matches!(boot(&part), Boot::Slot { slot: Slot::B, trial: false, .. }));
}

#[test]
fn garbage_in_both_state_sectors_is_no_record() {
    let part = provisioned();
    {
        let mut p = part.borrow_mut();
        for (i, w) in p.words_mut()[128..384].iter_mut().enumerate() {
            *w &= (i as u16).wrapping_mul(0x9E37);
        }
    }
    assert_eq!(status(&mut nor(&part), &SMALL).unwrap(), None);
    // Nothing known: slot A's image is found whole and started on trial.
    assert!(matches!(boot(&part), Boot::Slot { slot: Slot::A, trial: true, .. }));
}

// ---------------------------------------------------------------------------------------------------
// The update procedure

#[test]
fn update_refuses_bad_lengths_and_order() {
    let part = provisioned();
    let mut f = nor(&part);
    assert_eq!(Update::begin(&mut f, &SMALL, 0, 1).err(), Some(Error::Length { len: 0, max: 1280 }));
    assert_eq!(Update::begin(&mut f, &SMALL, 1281, 1).err(), Some(Error::Length { len: 1281, max: 1280 }));
    let mut u = Update::begin(&mut f, &SMALL, 10, 1).unwrap();
    assert_eq!(u.write(&mut f, &[0; 11]), Err(Error::TooLong { len: 10 }));
    u.write(&mut f, &[1; 9]).unwrap();
    assert_eq!(u.finish(&mut f, |_, _| true), Err(Error::Incomplete { written: 9, len: 10 }));

    // A write that fails verification is not marked for trial; the old image keeps booting.
    let img = image_of(NEW);
    let mut u = Update::begin(&mut f, &SMALL, img.len() as u32, NEW).unwrap();
    u.write(&mut f, &img).unwrap();
    assert_eq!(u.finish(&mut f, |_, _| false), Err(Error::Verify));
    assert!(matches!(boot(&part), Boot::Slot { slot: Slot::A, trial: false, .. }));
    let s = status(&mut nor(&part), &SMALL).unwrap().unwrap();
    assert_eq!(s.slot(Slot::B), &SlotInfo::EMPTY);
}

#[test]
fn flash_image_verifies_before_and_after_and_reports_progress() {
    let part = provisioned();
    let img = image(NEW, 1200);
    let mut f = nor(&part);
    // Refused in RAM: nothing is touched, not even the boot state.
    let before = part.borrow().words().to_vec();
    let r = flash_image(&mut f, &SMALL, &img[..1199], NEW, image_ok, verify, |_| {});
    assert_eq!(r, Err(Error::ImageRefused));
    assert_eq!(part.borrow().words(), before);

    let mut reports = Vec::new();
    let r = flash_image(&mut f, &SMALL, &img, NEW, image_ok, verify, |p| reports.push(p));
    assert_eq!(r, Ok(Slot::B));
    let last = *reports.last().unwrap();
    assert_eq!(last, Progress { bytes_written: 1200, bytes_total: 1200, sectors_erased: 5, sectors_total: 5 });
    assert!(reports.windows(2).all(|w| w[0].bytes_written <= w[1].bytes_written));
    assert_eq!(slot_content(&part, Slot::B).unwrap(), img);
}

#[test]
fn progress_counts_sectors_as_they_are_erased() {
    let part = provisioned();
    let img = image_of(NEW);
    let mut f = nor(&part);
    let mut u = Update::begin(&mut f, &SMALL, img.len() as u32, NEW).unwrap();
    assert_eq!(u.progress(), Progress { bytes_written: 0, bytes_total: 1031, sectors_erased: 0, sectors_total: 5 });
    u.write(&mut f, &img[..257]).unwrap();
    // 257 bytes: 256 programmed in sector 0, one held back; only the first sector erased so far.
    assert_eq!((u.progress().bytes_written, u.progress().sectors_erased), (257, 1));
    u.write(&mut f, &img[257..258]).unwrap();
    assert_eq!(u.progress().sectors_erased, 2);
    u.write(&mut f, &img[258..]).unwrap();
    assert_eq!(u.finish(&mut f, verify), Ok(Slot::B));
}

#[test]
fn writes_outside_the_state_sectors_and_slots_are_refused() {
    for offset in [0, 254, SMALL.identity.offset, SMALL.slots[1].end() as u32, SMALL.state[1].end() as u32 - 2] {
        let part = small_part();
        let mut f = nor(&part);
        let len = if offset == SMALL.state[1].end() as u32 - 2 { 4 } else { 2 };
        assert_eq!(
            storage::program(&mut f, &SMALL, offset, &vec![0; len]),
            Err(Error::Refused { offset, len: len as u32 })
        );
    }
    let part = small_part();
    let mut f = nor(&part);
    assert!(storage::erase(&mut f, &SMALL, SMALL.identity.offset).is_err());
    assert!(storage::erase(&mut f, &SMALL, 0).is_err());
    assert!(storage::erase(&mut f, &SMALL, SMALL.slots[0].offset + 2).is_err());
}

#[test]
fn update_during_a_trial_replaces_the_trial_not_the_confirmed_slot() {
    let part = provisioned();
    write_update(&part, &image_of(NEW), NEW, 100).unwrap();
    assert!(matches!(boot(&part), Boot::Slot { slot: Slot::B, trial: true, .. }));
    // The trial firmware is replaced before it confirms: slot B again, slot A untouched.
    assert_eq!(write_update(&part, &image(3, 700), 3, 100), Ok(Slot::B));
    assert_eq!(slot_content(&part, Slot::A).unwrap(), image_of(OLD));
    // Slot B is on trial again, with the new image and a full set of boots.
    let s = status(&mut nor(&part), &SMALL).unwrap().unwrap();
    assert_eq!((s.trial, s.trial_boots_left, s.slot(Slot::B).version), (Some(Slot::B), TRIAL_BOOTS, 3));
}

// ---------------------------------------------------------------------------------------------------
// The board's layout on a part of the board's geometry

#[test]
fn board_layout_on_a_32_mib_part() {
    let layout = MPC8349EMDS;
    let part = RefCell::new(FakeNor::new(25, 128 << 10));
    {
        let mut p = part.borrow_mut();
        let identity = (layout.identity.offset / 2) as usize;
        p.words_mut()[identity..identity + 8].copy_from_slice(&[0x4250, 0x4944, 1, 7, 0x1234, 0x5678, 0xAAAA, 0x5555]);
        p.words_mut()[0..4].copy_from_slice(&[0x2705, 0x1956, 0, 0]);
    }
    let snapshot = |p: &RefCell<FakeNor>| {
        let p = p.borrow();
        let identity = (layout.identity.offset / 2) as usize;
        (p.words()[..(layout.reserved.len / 2) as usize].to_vec(), p.words()[identity..].to_vec())
    };
    let before = snapshot(&part);
    let mut f = nor(&part);
    assert_eq!(choose(&mut f, &layout, verify).unwrap().boot, Boot::Recovery);
    let v1 = image(OLD, 5000);
    assert_eq!(flash_image(&mut f, &layout, &v1, OLD, image_ok, verify, |_| {}), Ok(Slot::A));
    assert!(matches!(choose(&mut f, &layout, verify).unwrap().boot, Boot::Slot { slot: Slot::A, trial: true, .. }));
    confirm(&mut f, &layout, Slot::A, 0).unwrap();
    let v2 = image(NEW, 140_001);
    assert_eq!(flash_image(&mut f, &layout, &v2, NEW, image_ok, verify, |_| {}), Ok(Slot::B));
    let Boot::Slot { slot: Slot::B, image: region, trial: true } = choose(&mut f, &layout, verify).unwrap().boot else {
        panic!("slot B on trial expected")
    };
    assert_eq!(region, Region::new(0x94_0000, 140_001));
    assert_eq!(read_image(&mut f, region).unwrap(), v2);
    assert_eq!(snapshot(&part), before);
}

#[test]
fn layouts_are_checked() {
    assert_eq!(MPC8349EMDS.check(), Ok(()));
    let bad = |l: Layout| l.check().err();
    assert_eq!(bad(Layout { sector_bytes: 3000, ..SMALL }), Some(LayoutError::Geometry));
    assert_eq!(
        bad(Layout { slots: [Region::new(768, 1024), Region::new(2048, 1280)], ..SMALL }),
        Some(LayoutError::SlotSizes)
    );
    assert_eq!(
        bad(Layout { state: [Region::new(256, 512), Region::new(768, 256)], ..SMALL }),
        Some(LayoutError::Order)
    );
    assert_eq!(
        bad(Layout { state: [Region::new(256, 256), Region::new(256, 256)], ..SMALL }),
        Some(LayoutError::Order)
    );
    assert_eq!(bad(Layout { identity: Region::new(3584, 256), ..SMALL }), Some(LayoutError::IdentityNotLast));
    assert_eq!(
        bad(Layout { identity: Region::new(3840, 512), ..SMALL }),
        Some(LayoutError::Region(Region::new(3840, 512)))
    );
    assert_eq!(bad(Layout { reserved: Region::new(0, 100), ..SMALL }), Some(LayoutError::Region(Region::new(0, 100))));
    assert_eq!(bad(Layout { reserved: Region::new(0, 0), ..SMALL }), Some(LayoutError::Region(Region::new(0, 0))));
    let part = small_part();
    let mut f = nor(&part);
    let broken = Layout { sector_bytes: 3000, ..SMALL };
    assert_eq!(choose(&mut f, &broken, verify).err(), Some(Error::Layout(LayoutError::Geometry)));
    assert_eq!(Update::begin(&mut f, &broken, 10, 1).err(), Some(Error::Layout(LayoutError::Geometry)));
}

// ---------------------------------------------------------------------------------------------------
// Recovery

#[test]
fn recovery_image_checks_the_hosts_length_before_verifying() {
    let mut area = vec![0u8; 2048];
    let img = image(9, 1500);
    area[..1500].copy_from_slice(&img);
    assert_eq!(recovery_image(&area, 1500, image_ok), Ok(&img[..]));
    assert_eq!(recovery_image(&area, 1499, image_ok), Err(RecoveryError::Verify));
    assert_eq!(recovery_image(&area, 0, |_| true), Err(RecoveryError::Length { declared: 0, area: 2048 }));
    assert_eq!(recovery_image(&area, 2049, |_| true), Err(RecoveryError::Length { declared: 2049, area: 2048 }));
    assert_eq!(
        recovery_image(&area, u32::MAX, |_| true),
        Err(RecoveryError::Length { declared: u32::MAX, area: 2048 })
    );
}

// ---------------------------------------------------------------------------------------------------
// The record

fn sample() -> BootState {
    BootState {
        seq: 41,
        active: Some(Slot::A),
        trial: Some(Slot::B),
        trial_boots_left: 2,
        slots: [
            SlotInfo { state: SlotState::Confirmed, version: 0x01_0203, len: 900 },
            SlotInfo { state: SlotState::Written, version: 0x01_0300, len: 1031 },
        ],
        min_security_counter: 0x0506_0708,
    }
}

#[test]
fn record_layout_is_the_documented_one() {
    let b = sample().to_bytes();
    assert_eq!(&b[0..4], b"BPBS");
    assert_eq!(&b[4..6], &[2, 0]);
    assert_eq!(&b[6..10], &[0, 1, 2, 0]);
    assert_eq!(&b[10..12], &[2, 1]);
    assert_eq!(&b[12..16], &41u32.to_le_bytes());
    assert_eq!(&b[16..20], &0x01_0203u32.to_le_bytes());
    assert_eq!(&b[20..24], &900u32.to_le_bytes());
    assert_eq!(&b[24..28], &0x01_0300u32.to_le_bytes());
    assert_eq!(&b[28..32], &1031u32.to_le_bytes());
    assert_eq!(&b[32..36], &0x0506_0708u32.to_le_bytes());
    assert_eq!(&b[36..40], &record::crc32(&b[..36]).to_le_bytes());
    assert_eq!(b.len(), 40);
    assert_eq!(record::crc32(b"123456789"), 0xCBF4_3926);
}

/// A format-1 record (36 bytes, CRC at 0x20, no minimum) as older firmware wrote it: still read, its
/// minimum security counter 0; the next write is format 2.
#[test]
fn format_1_record_is_read_with_minimum_0() {
    let mut b = sample().to_bytes();
    b[4..6].copy_from_slice(&1u16.to_le_bytes());
    let crc = record::crc32(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b[36..40].fill(0xFF); // erased after a 36-byte record
    let parsed = BootState::parse(&Record::new_unchecked(&b[..])).unwrap();
    assert_eq!(parsed, BootState { min_security_counter: 0, ..sample() });
    // A format-2 reading of those bytes would take 0x20..0x24 as the minimum: the version decides.
    b[4] = 2;
    assert!(matches!(BootState::parse(&Record::new_unchecked(&b[..])), Err(RecordError::Crc { .. })));
}

#[test]
fn record_refusals() {
    let parse = |b: &[u8]| Record::new_checked(b).and_then(|r| BootState::parse(&r));
    assert_eq!(parse(&[0; RECORD_LEN - 1]), Err(RecordError::Truncated));
    assert_eq!(parse(&[0xFF; RECORD_LEN]), Err(RecordError::Missing));
    assert_eq!(parse(&[0; RECORD_LEN]), Err(RecordError::BadMagic(0)));
    let with = |f: &dyn Fn(&mut [u8])| {
        let mut b = sample().to_bytes();
        f(&mut b);
        Record::new_unchecked(&mut b[..]).fill_crc();
        parse(&b)
    };
    assert_eq!(with(&|b| b[4] = 3), Err(RecordError::Version(3)));
    assert_eq!(with(&|b| b[6] = 2), Err(RecordError::Slot(2)));
    assert_eq!(with(&|b| b[11] = 4), Err(RecordError::SlotState(4)));
    assert_eq!(with(&|b| b[6] = 1), Err(RecordError::Inconsistent), "trial and active the same");
    assert_eq!(with(&|b| b[10] = 1), Err(RecordError::Inconsistent), "active not confirmed");
    assert_eq!(with(&|b| b[11] = 3), Err(RecordError::Inconsistent), "trial of a rejected slot");
    assert_eq!(with(&|b| b[7] = 0xFF), Err(RecordError::Inconsistent), "boots left without a trial");
    assert_eq!(with(&|b| b[11] = 0), Err(RecordError::Inconsistent), "empty slot with a length");
    assert_eq!(with(&|b| b[9] = 7), Ok(sample()), "reserved byte ignored");
    let mut b = sample().to_bytes();
    b[20] ^= 1;
    assert!(matches!(parse(&b), Err(RecordError::Crc { .. })));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn slot() -> impl Strategy<Value = Option<Slot>> {
        prop_oneof![Just(None), Just(Some(Slot::A)), Just(Some(Slot::B))]
    }

    fn info() -> impl Strategy<Value = SlotInfo> {
        (0u8..4, any::<u32>(), any::<u32>()).prop_map(|(s, version, len)| match s {
            0 => SlotInfo::EMPTY,
            1 => SlotInfo { state: SlotState::Written, version, len },
            2 => SlotInfo { state: SlotState::Confirmed, version, len },
            _ => SlotInfo { state: SlotState::Rejected, version, len },
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(r) = Record::new_checked(&bytes[..]) {
                let _ = BootState::parse(&r);
            }
        }

        #[test]
        fn what_parses_round_trips(seq in any::<u32>(), active in slot(), trial in slot(), left in any::<u8>(),
                                   a in info(), b in info()) {
            let state = BootState { seq, active, trial, trial_boots_left: left, slots: [a, b], min_security_counter: seq ^ 0x5A5A };
            let bytes = state.to_bytes();
            match BootState::parse(&Record::new_unchecked(&bytes[..])) {
                Ok(parsed) => prop_assert_eq!(parsed, state),
                Err(e) => prop_assert_eq!(e, RecordError::Inconsistent),
            }
        }

        #[test]
        fn any_single_bit_flip_is_refused(bit in 0usize..RECORD_LEN * 8) {
            let mut bytes = sample().to_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(BootState::parse(&Record::new_unchecked(&bytes[..])).is_err());
        }

        /// Whatever the two sectors hold, loading picks a valid record with the highest sequence
        /// number, or none.
        #[test]
        fn newest_valid_record_wins(s0 in any::<u32>(), s1 in any::<u32>(), tear0 in any::<bool>(), tear1 in any::<bool>()) {
            let part = small_part();
            let mut f = nor(&part);
            for (i, (seq, tear)) in [(s0, tear0), (s1, tear1)].into_iter().enumerate() {
                let mut bytes = BootState { seq, ..sample() }.to_bytes();
                if tear {
                    // A record whose last word did not program as meant: its CRC no longer matches.
                    let crc = !record::crc32(&bytes[..RECORD_LEN - 4]);
                    bytes[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
                }
                f.program(SMALL.state[i].offset, &bytes).unwrap();
            }
            let loaded = storage::load(&mut f, &SMALL).unwrap();
            let want = [(s0, tear0, 0), (s1, tear1, 1)].into_iter().filter(|t| !t.1).max_by_key(|t| (t.0, 1 - t.2));
            prop_assert_eq!(loaded.state.map(|s| s.seq), want.map(|t| t.0));
            prop_assert_eq!(loaded.sector, want.map(|t| t.2));
        }
    }
}
