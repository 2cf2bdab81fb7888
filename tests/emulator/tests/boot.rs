//! The boot stage, boot info, recovery through the BAR and the host's requests, end to end: the real
//! boot stage (`bpnet-boot.elf`) loaded at every reset as U-Boot's `bootcmd` would start it, the real
//! firmware signed into `bpnet-firmware.img` in the flash slots or written through the BAR, the host
//! model bringing the link up.
//!
//! Slot offsets and the boot-state record are the flash layout of `bpnet-update` (its crate
//! documentation): the tests write flash as a programmer or an interrupted update would leave it.

mod common;

use bpnet_contract::bar::{
    boot_flags, boot_source, AgentState, BootBlock, BootRepr, BootStage, HostRequest, BOOT_BLOCK_LEN, HEADER_LEN,
    RECOVERY_ERROR_LENGTH,
};
use bpnet_contract::{notify, shared, EMULATED_BAR_ADDRESS};
use bpnet_emu::host::{self, Params};
use bpnet_emu::{Board, Config};

use bpnet_update::record::{BootState, Record};
use bpnet_update::{Slot, SlotInfo, SlotState, MPC8349EMDS, TRIAL_BOOTS};

/// `recovery_error` values: the image error codes docs/IMAGE.md lists, written out because they are part of
/// the format (`bpnet_image::Error::code` must give the same).
const ERR_BAD_MAGIC: u32 = 2;
const ERR_BAD_IMAGE_LEN: u32 = 10;
const ERR_OUTSIDE_RAM: u32 = 11;
const ERR_UNKNOWN_KEY: u32 = 12;
const ERR_BAD_SIGNATURE: u32 = 13;
/// Emulator slices (2 M instructions each) for one step: verifying an image takes ~150 of them.
const STEPS: usize = 1500;

fn slot_offset(slot: Slot) -> u32 {
    MPC8349EMDS.slot(slot).offset
}

struct Images {
    boot: Vec<u8>,
    firmware_elf: Vec<u8>,
    image: Vec<u8>,
}

fn images() -> Images {
    let read = |var: &str| std::fs::read(common::firmware(var)).unwrap_or_else(|e| panic!("{var}: {e}"));
    Images { boot: read("BPNET_BOOT_ELF"), firmware_elf: read("BPNET_FIRMWARE_ELF"), image: read("BPNET_FIRMWARE_IMG") }
}

/// The image's version word.
fn image_version(image: &[u8]) -> u32 {
    bpnet_image::Header::new_checked(image).expect("an image header").image_version()
}

/// A fresh board (erased flash) with `slots` provisioned, powered on into the boot stage.
fn board(images: &Images, slots: &[(Slot, &[u8])]) -> Board {
    let mut board = Board::new(Config::default()).expect("board");
    for &(slot, image) in slots {
        board.provision_flash(slot_offset(slot), image).expect("slot fits the flash");
    }
    board.load_boot(&images.boot, Some(&images.firmware_elf)).expect("boot stage loads");
    board
}

fn console(board: &Board) -> String {
    String::from_utf8_lossy(board.console()).into_owned()
}

/// Run until the console, from byte `from`, holds `needle`; the byte after it.
fn until_console(board: &mut Board, from: usize, needle: &str) -> usize {
    for _ in 0..STEPS {
        if let Some(at) = console(board).get(from..).and_then(|c| c.find(needle)) {
            return from + at + needle.len();
        }
        host::run_slice(board).unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", console(board)));
    }
    panic!("no {needle:?} on the console after byte {from}:\n{}", console(board));
}

/// The boot block as the host reads it through the BAR.
fn boot_block(board: &mut Board) -> BootRepr {
    let mut buf = [0u8; BOOT_BLOCK_LEN];
    board.host_bar_read(EMULATED_BAR_ADDRESS + shared::BOOT_OFFSET as u32, &mut buf).expect("BAR open");
    BootRepr::parse(&BootBlock::new_unchecked(&buf[..])).expect("boot block parses")
}

fn request_seq(board: &mut Board) -> u32 {
    let mut buf = [0u8; BOOT_BLOCK_LEN];
    board.host_bar_read(EMULATED_BAR_ADDRESS + shared::BOOT_OFFSET as u32, &mut buf).expect("BAR open");
    BootBlock::new_unchecked(&buf[..]).request_seq()
}

fn agent_state(board: &mut Board) -> Option<AgentState> {
    let mut buf = [0u8; HEADER_LEN];
    board.host_bar_read(EMULATED_BAR_ADDRESS, &mut buf).expect("BAR open");
    AgentState::try_from(buf[bpnet_contract::bar::field::header::AGENT_STATE]).ok()
}

/// Run until the boot block satisfies `done`.
fn until_block(board: &mut Board, what: &str, mut done: impl FnMut(&BootRepr) -> bool) -> BootRepr {
    for _ in 0..STEPS {
        let block = boot_block(board);
        if done(&block) {
            return block;
        }
        host::run_slice(board).unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", console(board)));
    }
    panic!("boot block never showed {what}: {:?}\nconsole:\n{}", boot_block(board), console(board));
}

/// The host's side of a request, as the module does it: recovery_len, host_request, then request_seq
/// (posted writes, in order), then the CONTROL doorbell.
fn request(board: &mut Board, request: HostRequest, len: u32) {
    let seq = request_seq(board).wrapping_add(1);
    let mut block = [0u8; BOOT_BLOCK_LEN];
    BootBlock::new_unchecked(&mut block[..]).set_host_request(request, len, seq);
    let base = EMULATED_BAR_ADDRESS + shared::BOOT_OFFSET as u32;
    use bpnet_contract::bar::field::boot_block::{HOST_REQUEST, RECOVERY_LEN, REQUEST_SEQ};
    for at in [RECOVERY_LEN, HOST_REQUEST, REQUEST_SEQ] {
        board.host_bar_write(base + at as u32, &block[at..at + 4]).expect("BAR open");
    }
    board.host_ring_doorbell(notify::CONTROL);
}

/// Write `bytes` into the recovery area through the BAR.
fn write_recovery(board: &mut Board, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(4096).enumerate() {
        let at = EMULATED_BAR_ADDRESS + (shared::RECOVERY_OFFSET + i * 4096) as u32;
        board.host_bar_write(at, chunk).expect("recovery area inside the BAR");
    }
}

/// Bring the link up with the host model and run until the agent is RUNNING.
fn link_up(board: &mut Board) -> host::HostLink {
    let mut link = host::connect(board, Params::default(), STEPS)
        .unwrap_or_else(|e| panic!("link up: {e}\nconsole:\n{}", console(board)));
    host::run_until(board, &mut link, |l| l.is_running(), STEPS)
        .unwrap_or_else(|e| panic!("RUNNING: {e}\nconsole:\n{}", console(board)));
    link
}

fn trial_confirmed(block: &BootRepr) -> bool {
    block.boot_flags & boot_flags::CONFIRMED != 0
}

#[test]
fn flash_slot_starts_on_trial_confirms_once_running_and_stays_confirmed() {
    let images = images();
    let version = image_version(&images.image);
    let mut board = board(&images, &[(Slot::A, &images.image)]);
    let at = until_console(&mut board, 0, "boot: slot A holds image");
    let at = until_console(&mut board, at, "boot: starting slot A on trial");
    let at = until_console(&mut board, at, "bpnet firmware");
    let at = until_console(&mut board, at, "boot: source flash slot A trial");
    let block = boot_block(&mut board);
    assert_eq!((block.boot_source, block.boot_slot, block.stage), (boot_source::FLASH, 0, BootStage::Firmware));
    assert_eq!(block.boot_flags, boot_flags::TRIAL, "on trial, not confirmed before the link is up");
    assert_eq!(block.image_version, version);
    // Boot info is read once and cleared.
    let mut info = [0u8; 64];
    board.read_ram(0x2000, &mut info).unwrap();
    assert!(info.iter().all(|&b| b == 0), "boot info cleared by the firmware");

    let _link = link_up(&mut board);
    let at = until_console(&mut board, at, "boot: slot A confirmed");
    let block = until_block(&mut board, "confirmed", trial_confirmed);
    assert_eq!(block.boot_flags, boot_flags::TRIAL | boot_flags::CONFIRMED);
    assert_eq!((block.slot_states[0], block.slot_versions[0]), (SlotState::Confirmed as u8, version));
    let up = until_block(&mut board, "uptime 2 s", |b| b.uptime_s >= 2);
    assert_eq!(up.stage, BootStage::Firmware);

    // The next reset starts A confirmed, without a trial.
    board.hard_reset();
    let at = until_console(&mut board, at, "bpnet boot stage");
    let at = until_console(&mut board, at, "boot: starting slot A\r\n");
    until_console(&mut board, at, "boot: source flash slot A confirmed");
    let block = boot_block(&mut board);
    assert_eq!((block.boot_source, block.boot_slot), (boot_source::FLASH, 0));
    assert_eq!(block.boot_flags, boot_flags::CONFIRMED);
    assert!(block.uptime_s <= 1, "uptime counts from this start");
}

#[test]
fn corrupt_slot_a_falls_back_to_slot_b() {
    let images = images();
    let mut corrupt = images.image.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    let mut board = board(&images, &[(Slot::A, &corrupt), (Slot::B, &images.image)]);
    let at = until_console(&mut board, 0, "payload SHA-256 differs");
    let at = until_console(&mut board, at, "boot: slot A: does not verify");
    let at = until_console(&mut board, at, "boot: starting slot B on trial");
    until_console(&mut board, at, "boot: source flash slot B trial");
    let block = boot_block(&mut board);
    assert_eq!((block.boot_source, block.boot_slot, block.boot_flags), (boot_source::FLASH, 1, boot_flags::TRIAL));
}

#[test]
fn both_slots_bad_wait_in_recovery() {
    let images = images();
    let mut payload_flip = images.image.clone();
    let last = payload_flip.len() - 1;
    payload_flip[last] ^= 0x01;
    let mut signature_flip = images.image.clone();
    signature_flip[bpnet_image::HEADER_LEN - 1] ^= 0x80;
    let mut board = board(&images, &[(Slot::A, &payload_flip), (Slot::B, &signature_flip)]);
    let at = until_console(&mut board, 0, "boot: slot A: does not verify");
    let at = until_console(&mut board, at, "signature does not verify");
    let at = until_console(&mut board, at, "boot: slot B: does not verify");
    until_console(&mut board, at, "boot: no slot holds an image that verifies: recovery");
    until_recovery(&mut board);
    assert!(!console(&board).contains("bpnet firmware"), "nothing started");
}

/// The command line: `--boot` with `--provision-slot`, the log decoded with the firmware's table.
#[test]
fn command_line_boots_a_provisioned_slot() {
    let image = common::firmware("BPNET_FIRMWARE_IMG");
    let boot = common::firmware("BPNET_BOOT_ELF");
    let mut slot = std::ffi::OsString::from("A=");
    slot.push(&image);
    let run = common::emulate(
        &common::firmware("BPNET_FIRMWARE_ELF"),
        &["--boot".as_ref(), boot.as_os_str(), "--provision-slot".as_ref(), &slot, "--max-insns=400e6".as_ref()],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for needle in [
        "bpnet boot stage",
        "boot: starting slot A on trial",
        "boot: source flash slot A trial",
        "INFO boot: source flash, slot A, trial true",
    ] {
        assert!(run.stdout.contains(needle), "no {needle:?} in:\n{}\n{}", run.stdout, run.stderr);
    }
}

/// Run until the agent waits in recovery; the boot block at that point.
fn until_recovery(board: &mut Board) -> BootRepr {
    let block = until_block(board, "recovery waiting", |b| b.stage == BootStage::RecoveryWaiting);
    assert_eq!(agent_state(board), Some(AgentState::Recovery));
    assert_eq!(block.recovery_offset as usize, shared::RECOVERY_OFFSET);
    assert_eq!(block.recovery_capacity as usize, shared::RECOVERY_LEN);
    assert_eq!(block.recovery_error, 0);
    block
}

/// Offer `bytes` declaring `len`; the agent must refuse with `error` and keep waiting.
fn refused(board: &mut Board, bytes: &[u8], len: u32, error: u32) {
    write_recovery(board, bytes);
    request(board, HostRequest::BootImage, len);
    let block =
        until_block(board, "the image refused", |b| b.stage == BootStage::RecoveryRefused && b.recovery_error == error);
    assert_eq!(agent_state(board), Some(AgentState::Recovery), "still waiting after {block:?}");
}

#[test]
fn empty_flash_waits_for_recovery_refuses_bad_images_then_starts_a_good_one() {
    let images = images();
    let version = image_version(&images.image);
    let mut board = board(&images, &[]);
    let at = until_console(&mut board, 0, "boot: slot A: empty (erased)");
    let at = until_console(&mut board, at, "recovery: waiting for an image in the BAR");
    until_recovery(&mut board);

    // Unsigned: the raw payload, no image header.
    refused(
        &mut board,
        &images.image[bpnet_image::HEADER_LEN..],
        (images.image.len() - bpnet_image::HEADER_LEN) as u32,
        ERR_BAD_MAGIC,
    );
    // Truncated: one byte short of what the header says.
    refused(&mut board, &images.image, images.image.len() as u32 - 1, ERR_BAD_IMAGE_LEN);
    // A length beyond the recovery area, and zero: refused before a byte is read.
    request(&mut board, HostRequest::BootImage, shared::RECOVERY_LEN as u32 + 1);
    until_block(&mut board, "length refused", |b| b.recovery_error == RECOVERY_ERROR_LENGTH);
    request(&mut board, HostRequest::BootImage, 0);
    let b = until_block(&mut board, "zero refused", |b| b.stage == BootStage::RecoveryRefused);
    assert_eq!(b.recovery_error, RECOVERY_ERROR_LENGTH);
    // A forged signature.
    let mut forged = images.image.clone();
    forged[bpnet_image::HEADER_LEN - 1] ^= 0x80;
    refused(&mut board, &forged, forged.len() as u32, ERR_BAD_SIGNATURE);

    // Signed, but with a key the agent does not trust.
    let payload = &images.image[bpnet_image::HEADER_LEN..];
    let foreign = bpnet_image::SigningKey::from_bytes(&[7; 32]);
    let stranger = bpnet_image::sign(payload, 0x0010_0000, 0x0010_0000, version, &foreign).unwrap();
    refused(&mut board, &stranger, stranger.len() as u32, ERR_UNKNOWN_KEY);
    // Signed with the trusted key, but loading outside the FIRMWARE range (over the shared region).
    let key = bpnet_image::keyfile::read_secret(&common::firmware("BPNET_IMAGE_KEY")).expect("development key");
    let outside = bpnet_image::sign(payload, 0x0080_0000, 0x0080_0000, version, &key).unwrap();
    refused(&mut board, &outside, outside.len() as u32, ERR_OUTSIDE_RAM);

    // A good image: the same firmware, signed as version 1.2.3.
    let good = bpnet_image::sign(payload, 0x0010_0000, 0x0010_0000, bpnet_image::image_version(1, 2, 3), &key).unwrap();
    write_recovery(&mut board, &good);
    request(&mut board, HostRequest::BootImage, good.len() as u32);
    let at = until_console(&mut board, at, "from recovery");
    until_console(&mut board, at, "boot: source recovery slot -");
    let block = until_block(&mut board, "firmware running", |b| b.stage == BootStage::Firmware);
    assert_eq!((block.boot_source, block.boot_slot, block.boot_flags), (boot_source::RECOVERY, 0xFF, 0));
    assert_eq!(block.image_version, bpnet_image::image_version(1, 2, 3), "the started image's version");
    let _link = link_up(&mut board);
}

/// The newest boot-state record and its sector.
fn newest_record(board: &Board) -> (BootState, usize) {
    let mut best: Option<(BootState, usize)> = None;
    for (i, sector) in MPC8349EMDS.state.iter().enumerate() {
        let mut r = [0u8; bpnet_update::record::RECORD_LEN];
        assert!(board.read_flash(sector.offset, &mut r));
        if let Ok(state) = BootState::parse(&Record::new_unchecked(&r[..])) {
            if best.is_none_or(|(b, _)| state.seq > b.seq) {
                best = Some((state, i));
            }
        }
    }
    best.expect("a boot-state record was written")
}

#[test]
fn trial_that_never_confirms_is_rolled_back_to_the_confirmed_slot() {
    let images = images();
    let version = image_version(&images.image);
    let mut board = board(&images, &[(Slot::A, &images.image)]);
    // Slot A confirmed through a first boot with the link up.
    let at = until_console(&mut board, 0, "boot: source flash slot A trial");
    let _link = link_up(&mut board);
    let mut at = until_console(&mut board, at, "boot: slot A confirmed");

    // An update wrote slot B and put it on trial (the record it leaves, in the other sector).
    board.provision_flash(slot_offset(Slot::B), &images.image).unwrap();
    let (state, sector) = newest_record(&board);
    assert_eq!((state.active, state.trial), (Some(Slot::A), None));
    let len = images.image.len() as u32;
    let mut next = BootState { seq: state.seq + 1, trial: Some(Slot::B), trial_boots_left: TRIAL_BOOTS, ..state };
    *next.slot_mut(Slot::B) = SlotInfo { state: SlotState::Written, version, len };
    let other = MPC8349EMDS.state[1 - sector];
    let mut fresh = vec![0xFFu8; other.len as usize];
    fresh[..bpnet_update::record::RECORD_LEN].copy_from_slice(&next.to_bytes());
    board.provision_flash(other.offset, &fresh).unwrap();

    // The host never brings the link up: each start of B is reset before it can confirm.
    for boot in 0..TRIAL_BOOTS {
        board.hard_reset();
        at = until_console(&mut board, at, "boot: starting slot B on trial");
        at = until_console(&mut board, at, "boot: source flash slot B trial");
        let block = boot_block(&mut board);
        assert_eq!((block.boot_slot, block.boot_flags), (1, boot_flags::TRIAL), "start {boot} of B");
    }
    board.hard_reset();
    at = until_console(&mut board, at, "boot: slot B ran out of trial boots without confirming: rolled back");
    at = until_console(&mut board, at, "boot: starting slot A\r\n");
    until_console(&mut board, at, "boot: source flash slot A confirmed");
    let block = boot_block(&mut board);
    assert_eq!((block.boot_slot, block.boot_flags), (0, boot_flags::CONFIRMED));
    assert_eq!(block.slot_states, [SlotState::Confirmed as u8, SlotState::Rejected as u8]);
}

#[test]
fn running_firmware_enters_recovery_and_resets_on_request() {
    let images = images();
    let mut board = board(&images, &[(Slot::A, &images.image)]);
    let at = until_console(&mut board, 0, "boot: source flash slot A trial");
    let mut link = link_up(&mut board);
    let at = until_console(&mut board, at, "boot: slot A confirmed");

    // Enter recovery: the rings stop (agent_state RECOVERY, LINK rung), the same protocol as the boot
    // stage's.
    link.take_link_event();
    let asked = board.virtual_time_ns();
    request(&mut board, HostRequest::EnterRecovery, 0);
    let at = until_console(&mut board, at, "recovery: waiting for an image in the BAR");
    // The CONTROL ring has the main loop poll the boot block at once, not at the uptime's next second.
    let waited_ms = (board.virtual_time_ns() - asked) / 1_000_000;
    assert!(waited_ms < 50, "a request waited {waited_ms} ms of virtual time for the agent to see it");
    until_recovery(&mut board);
    link.poll(&mut board).ok();
    assert!(link.take_link_event(), "LINK rung when the rings stopped");
    refused(&mut board, &images.image, images.image.len() as u32 - 1, ERR_BAD_IMAGE_LEN);
    write_recovery(&mut board, &images.image);
    request(&mut board, HostRequest::BootImage, images.image.len() as u32);
    let at = until_console(&mut board, at, "boot: source recovery slot -");
    let block = until_block(&mut board, "firmware from recovery", |b| b.stage == BootStage::Firmware);
    assert_eq!(block.boot_source, boot_source::RECOVERY);

    // Reset: the boot stage runs again and starts the confirmed slot.
    let resets = board.resets();
    request(&mut board, HostRequest::Reset, 0);
    let at = until_console(&mut board, at, "boot: reset requested by the host");
    let at = until_console(&mut board, at, "bpnet boot stage");
    until_console(&mut board, at, "boot: source flash slot A confirmed");
    assert_eq!(board.resets(), resets + 1, "a software reset");
}
