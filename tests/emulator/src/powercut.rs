//! Power cuts during a firmware update, at every flash step ([`Cuts`]): the real boot stage starts the real
//! firmware from slot A; the host sends a new signed image to the firmware's control service (FLASH);
//! the emulator cuts the power half-way through the N-th erase or program (a write-buffer page, the
//! board's part advertising a write buffer); the board powers up
//! again into the boot stage, which must start an image that verifies — the old one, or the new one
//! once the update had recorded it — and nothing else.
//!
//! A reference run without a cut counts the flash operations the update makes, and those of the first
//! boot after it (the boot stage records one trial boot fewer before it starts the new image), and
//! checks that this boot starts the new image; then each selected operation ([`Cuts`]: all of them, or a
//! sample) is cut in a run of its own. The new image is small on purpose (one sector, about 20 buffer
//! programs, plus the boot-state records before and after), so that every step of a whole update can
//! be cut; its payload starts with `b .`, so a board that starts it halts
//! at its entry, which is how the check tells the new image was started.
//!
//! Slot B starts out holding a rejected image, so the update first records slot B as empty (a
//! boot-state write), then erases and programs it, reads it back, and records the trial (a second
//! boot-state write): every kind of step an update makes is among the cut points. A cut during the
//! update must bring the old image back (the new one is not recorded as startable until it verified
//! in flash); a cut during the first boot after it, the new one (still on trial).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bpnet_update::record::BootState;
use bpnet_update::{Slot, SlotInfo, SlotState, MPC8349EMDS};

use crate::control::Session;
use crate::host::{self, Params, RunError};
use crate::netbench::IMAGE_LOAD;
use crate::{Board, Config, Outcome};

/// What the runs need: the boot stage, the firmware (its ELF for the log, its signed image in slot A),
/// and the new image the update writes.
pub struct Setup {
    pub boot_elf: Vec<u8>,
    pub firmware_elf: Vec<u8>,
    pub firmware_image: Vec<u8>,
    pub new_image: Vec<u8>,
}

/// Bytes of the new image's payload: one word of `b .`, then a pattern.
pub const NEW_PAYLOAD_LEN: usize = 1024;

/// The `b .` instruction (branch to itself), big-endian.
const BRANCH_TO_SELF: [u8; 4] = [0x48, 0x00, 0x00, 0x00];

/// The new image's version.
pub const NEW_VERSION: u32 = 0x00_02_00_00;

/// A signed image whose payload halts at its entry: what the update writes.
pub fn new_image(key: &bpnet_image::SigningKey) -> Result<Vec<u8>, String> {
    let mut payload = crate::netbench::pattern(NEW_PAYLOAD_LEN);
    payload[..4].copy_from_slice(&BRANCH_TO_SELF);
    bpnet_image::sign(&payload, IMAGE_LOAD, IMAGE_LOAD, NEW_VERSION, key).map_err(|e| e.to_string())
}

/// How one run ended after the cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The boot stage started the old image (slot A) and the firmware came up.
    Old,
    /// The boot stage started the new image (slot B) and it halted at its entry, as it does.
    New,
}

/// The result of cutting every step.
#[derive(Debug, Default)]
pub struct Report {
    /// Flash operations (erases and programs) before the update began, the update's own, those
    /// of the first boot after it, and the two together: the cut points.
    pub before: u64,
    pub update: u64,
    pub first_boot: u64,
    pub steps: u64,
    /// Of those, the steps selected to be cut ([`Cuts`]), and how many of the update's they are.
    pub selected: u64,
    pub selected_update: u64,
    /// Cut points run, and those after which the board started a verified image.
    pub tested: u64,
    pub survived: u64,
    /// Runs that started the old image and the new one.
    pub old: u64,
    pub new: u64,
    /// What went wrong where, for the ones that did not survive.
    pub failures: Vec<String>,
}

/// Which steps are cut: all of them (the campaign `bpnet-powercut` and the benchmark run), or the ones
/// where the kind of step changes plus a stride through the image's programs in between (the test
/// suite's run, about half of the steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cuts {
    Every,
    /// Every step of the first and last `edge` steps of the update (the boot-state record before it, the
    /// erase and the first page of slot B; the last page and the trial record), every `stride`-th
    /// step in between, and every step of the first boot after it.
    Sample {
        edge: u64,
        stride: u64,
    },
}

impl Cuts {
    /// The sample the test suite runs: the records either side are 2 steps each (an erase and one
    /// buffer program), so 4 steps at each edge reach into the image's pages.
    pub const SAMPLE: Cuts = Cuts::Sample { edge: 4, stride: 4 };

    /// Whether step `k` (1-based) of `update` update steps followed by the first boot's is cut.
    pub fn includes(self, k: u64, update: u64) -> bool {
        match self {
            Cuts::Every => true,
            Cuts::Sample { edge, stride } => k <= edge || k + edge > update || k.is_multiple_of(stride.max(1)),
        }
    }
}

const BOOT_STEPS: usize = 4000;
const FLASH_TURNS: u64 = 2_000_000;

/// The flash as the runs start it: slot A the firmware, confirmed and active; slot B a rejected image.
fn provision(board: &mut Board, setup: &Setup) -> Result<(), String> {
    let a = MPC8349EMDS.slot(Slot::A);
    let b = MPC8349EMDS.slot(Slot::B);
    board.provision_flash(a.offset, &setup.firmware_image)?;
    // Whatever an earlier image left: bytes that do not verify.
    board.provision_flash(b.offset, &vec![0x5A; 4096])?;
    let version =
        bpnet_image::Header::new_checked(&setup.firmware_image[..]).map_err(|_| "short image")?.image_version();
    let len = u32::try_from(setup.firmware_image.len()).map_err(|_| "image too long")?;
    let mut slots = [SlotInfo::EMPTY; 2];
    slots[0] = SlotInfo { state: SlotState::Confirmed, version, len };
    slots[1] = SlotInfo { state: SlotState::Rejected, version: 0x00_00_09_00, len: 4096 };
    let state =
        BootState { seq: 41, active: Some(Slot::A), trial: None, trial_boots_left: 0, slots, min_security_counter: 0 };
    board.provision_flash(MPC8349EMDS.state[0].offset, &state.to_bytes())
}

/// A board powered on into the boot stage with the provisioned flash, the firmware up and its address
/// taken; `cut` arms the power cut.
fn start(setup: &Setup, cut: Option<u64>) -> Result<Session, String> {
    let mut board = Board::new(Config { power_cut_at: cut, ..Config::default() }).map_err(|e| format!("board: {e}"))?;
    provision(&mut board, setup)?;
    board.load_boot(&setup.boot_elf, Some(&setup.firmware_elf)).map_err(|e| format!("boot stage: {e}"))?;
    Session::start(board, Params::default())
}

/// The reference run: flash operations before the update, the update's own, and those of the first
/// boot after it (the boot stage records one trial boot fewer before it starts the new image).
fn reference(setup: &Setup) -> Result<(u64, u64, u64), String> {
    let mut s = start(setup, None)?;
    let before = s.board.flash_operations();
    let line = format!("FLASH {}\n", setup.new_image.len());
    let reply = s.request(line.as_bytes(), &setup.new_image, FLASH_TURNS)?;
    if !reply.is_ok() {
        return Err(format!("the uncut update failed: {:?}", reply.lines));
    }
    let update = s.board.flash_operations() - before;
    let mut board = s.board;
    board.hard_reset();
    let from = board.console().len();
    match after_restart(&mut board, from)? {
        Ending::New => Ok((before, update, board.flash_operations() - before - update)),
        Ending::Old => Err("after the uncut update the board started the old image, not the new one on trial".into()),
    }
}

/// After a reset or a power cut (console output from byte `from` on): run until the boot stage has
/// started an image, and say which.
fn after_restart(board: &mut Board, from: usize) -> Result<Ending, String> {
    let since = |board: &Board| String::from_utf8_lossy(&board.console()[from..]).into_owned();
    for _ in 0..BOOT_STEPS {
        let text = since(board);
        if let Some(at) = text.find("boot: starting slot A") {
            if text[at..].contains("bpnet firmware") {
                return Ok(Ending::Old);
            }
        }
        match host::run_slice(board) {
            Ok(()) => {}
            Err(RunError::Board(Outcome::Halted { pc, .. })) if pc == IMAGE_LOAD => {
                let text = since(board);
                return if text.contains("boot: starting slot B") {
                    Ok(Ending::New)
                } else {
                    Err(format!("halted at the new image's entry without the boot stage starting slot B:\n{text}"))
                };
            }
            Err(e) => return Err(format!("{e}\nconsole:\n{}", since(board))),
        }
    }
    Err(format!("nothing started:\n{}", since(board)))
}

/// One run with the power cut half-way through flash operation `n` (of the update, or of the first
/// boot after it, which a reset starts once the update is done): how the board came back.
fn cut_at(setup: &Setup, n: u64) -> Result<Ending, String> {
    let mut s = start(setup, Some(n))?;
    let line = format!("FLASH {}\n", setup.new_image.len());
    let mut p = s.open(line.as_bytes(), &setup.new_image);
    let mut turns = 0u64;
    let mut updated = false;
    while s.board.power_cuts() == 0 && !updated {
        turns += 1;
        if turns > FLASH_TURNS {
            return Err(format!(
                "no power cut after {FLASH_TURNS} rounds ({} flash operations)",
                s.board.flash_operations()
            ));
        }
        if let Some(done) = s.pump(&mut p) {
            done?;
            if !p.reply.is_ok() {
                return Err(format!("the update failed before the cut: {:?}", p.reply.lines));
            }
            updated = true;
            continue;
        }
        // The cut restarts the board inside the round: the host's link then fails, which is expected.
        if let Err(e) = s.turn() {
            if s.board.power_cuts() == 0 {
                return Err(e);
            }
        }
    }
    let mut board = s.board;
    if board.power_cuts() == 0 {
        // The update is done: the cut point is in the first boot after it.
        board.hard_reset();
        for _ in 0..BOOT_STEPS {
            if board.power_cuts() > 0 {
                break;
            }
            host::run_slice(&mut board).map_err(|e| format!("first boot after the update, before the cut: {e}"))?;
        }
        if board.power_cuts() == 0 {
            return Err(format!(
                "no power cut in the first boot after the update ({} flash operations)",
                board.flash_operations()
            ));
        }
    }
    let from = board.console().len() - board.console_since_power_cut().len();
    after_restart(&mut board, from)
}

/// Cut the power at the selected flash steps of the update, on `threads` threads (each run is its own
/// board). `progress` is called after every run with (runs done, runs in all).
pub fn run(setup: &Setup, cuts: Cuts, threads: usize, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<Report, String> {
    let (before, update, first_boot) = reference(setup)?;
    if update == 0 {
        return Err("the update made no flash operations".into());
    }
    let steps = update + first_boot;
    let chosen: Vec<u64> = (1..=steps).filter(|&k| cuts.includes(k, update)).collect();
    let selected = chosen.len() as u64;
    let selected_update = chosen.iter().filter(|&&k| k <= update).count() as u64;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let report =
        Mutex::new(Report { before, update, first_boot, steps, selected, selected_update, ..Report::default() });
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while let Some(&k) = chosen.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
                    let n = before + k;
                    let ending = cut_at(setup, n);
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    r.tested += 1;
                    match ending {
                        Ok(Ending::Old) => {
                            r.survived += 1;
                            r.old += 1;
                        }
                        Ok(Ending::New) => {
                            r.survived += 1;
                            r.new += 1;
                        }
                        Err(e) => r.failures.push(format!("cut at flash operation {n} (update step {k}): {e}")),
                    }
                    drop(r);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, selected);
                }
            });
        }
    });
    Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Read the three ELF/image files and the secret key the runs need.
pub fn setup_from_files(
    boot_elf: &Path,
    firmware_elf: &Path,
    firmware_image: &Path,
    key: &Path,
) -> Result<Setup, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let key = bpnet_image::keyfile::read_secret(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(Setup {
        boot_elf: read(boot_elf)?,
        firmware_elf: read(firmware_elf)?,
        firmware_image: read(firmware_image)?,
        new_image: new_image(&key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::Cuts;

    #[test]
    fn the_sample_keeps_both_edges_a_stride_and_the_first_boot() {
        let cuts = Cuts::Sample { edge: 3, stride: 4 };
        let update = 20;
        let chosen: Vec<u64> = (1..=25).filter(|&k| cuts.includes(k, update)).collect();
        assert_eq!(chosen, [1, 2, 3, 4, 8, 12, 16, 18, 19, 20, 21, 22, 23, 24, 25]);
        assert!((1..=25).all(|k| Cuts::Every.includes(k, update)));
    }
}
