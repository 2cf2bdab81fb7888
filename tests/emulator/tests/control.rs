//! The control service end to end: the real firmware ELF on the emulated board, the host model in the
//! kernel module's place and smoltcp as the host's stack ([`bpnet_emu::control::Session`]); images
//! signed here with the development key; the flash checked in the flash file and through
//! `bpnet-update`'s own record parser.

mod common;

use std::io::Write;
use std::path::PathBuf;

use bpnet_contract::control::{ErrorCode, Phase, Response, SlotReport, Source, Status, Version};
use bpnet_emu::control::Session;
use bpnet_emu::netbench::{self, HOST_IP};
use bpnet_tftp::server::{Content, Faults};
use bpnet_update::record::{BootState, Record};
use bpnet_update::{Slot, SlotInfo, SlotState, MPC8349EMDS};

const FLASH_BYTES: usize = bpnet_emu::FLASH_SIZE as usize;
/// A FLASH or NETBOOT answer comes within this many host/agent rounds.
const TURNS: u64 = 5_000_000;

fn elf() -> Vec<u8> {
    std::fs::read(common::firmware("BPNET_FIRMWARE_ELF")).expect("firmware ELF readable")
}

fn key() -> bpnet_image::SigningKey {
    let path = common::firmware("BPNET_IMAGE_KEY");
    bpnet_image::keyfile::read_secret(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

/// `major.minor.patch` as an image version.
fn version(major: u8, minor: u8, patch: u8) -> u32 {
    u32::from(major) << 16 | u32::from(minor) << 8 | u32::from(patch)
}

/// An erased flash file whose boot state says slot A holds confirmed image 1.0.0 (the state a
/// board is in after its first image confirmed): an update must then go to slot B.
fn flash_with_a_confirmed() -> tempfile::NamedTempFile {
    let mut image = vec![0xFFu8; FLASH_BYTES];
    let mut slots = [SlotInfo::EMPTY; 2];
    slots[0] = SlotInfo { state: SlotState::Confirmed, version: version(1, 0, 0), len: 4096 };
    let state =
        BootState { seq: 7, active: Some(Slot::A), trial: None, trial_boots_left: 0, slots, min_security_counter: 0 };
    let at = MPC8349EMDS.state[0].offset as usize;
    let record = state.to_bytes();
    image[at..at + record.len()].copy_from_slice(&record);
    let mut file = tempfile::NamedTempFile::new().expect("temporary flash file");
    file.write_all(&image).expect("flash file written");
    file
}

fn boot(flash: &tempfile::NamedTempFile) -> Session {
    Session::boot(&elf(), Some(PathBuf::from(flash.path()))).unwrap_or_else(|e| panic!("boot: {e}"))
}

fn console(s: &Session) -> String {
    String::from_utf8_lossy(s.board.console()).into_owned()
}

/// The newest valid boot-state record in the board's flash, parsed by `bpnet-update`.
fn boot_state(s: &Session) -> Option<BootState> {
    MPC8349EMDS
        .state
        .iter()
        .filter_map(|sector| {
            let mut bytes = [0u8; bpnet_update::record::RECORD_LEN];
            assert!(s.board.read_flash(sector.offset, &mut bytes));
            BootState::parse(&Record::new_unchecked(&bytes[..])).ok()
        })
        .max_by_key(|st| st.seq)
}

fn status(s: &mut Session) -> Status {
    let reply = s.request(b"STATUS\n", &[], 100_000).unwrap_or_else(|e| panic!("STATUS: {e}"));
    let Ok(Response::Ok(fields)) = Response::parse(reply.last().as_bytes()) else {
        panic!("STATUS: {:?}", reply.lines)
    };
    Status::parse(&fields).unwrap_or_else(|| panic!("STATUS fields: {}", reply.last()))
}

fn whole_flash(s: &Session) -> Vec<u8> {
    let mut all = vec![0u8; FLASH_BYTES];
    assert!(s.board.read_flash(0, &mut all));
    all
}

#[test]
fn status_reports_the_running_program_and_the_slots() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    let st = status(&mut s);
    let own = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse::<u8>().unwrap()).collect::<Vec<_>>();
    assert_eq!(st.source, Source::Direct, "loaded by the emulator");
    assert_eq!(st.slot, None);
    assert!(!st.trial && !st.confirmed);
    assert_eq!(st.version, Version(version(own[0], own[1], own[2])));
    // Whole seconds since the firmware started (at virtual time 0), as the board counts them.
    let now_s = s.board.virtual_time_ns() / 1_000_000_000;
    assert!((now_s.saturating_sub(1)..=now_s).contains(&u64::from(st.uptime)), "uptime {} at {now_s} s", st.uptime);
    assert!(st.uptime >= 2, "the address came after the wait for a DHCP lease");
    assert_eq!(st.a, SlotReport::Confirmed(Version(version(1, 0, 0))));
    assert_eq!(st.b, SlotReport::Empty);
    // Bad requests are answered, and the service takes the next one.
    for (line, code) in [
        (&b"HELLO\n"[..], ErrorCode::BadRequest),
        (b"FLASH 0\n", ErrorCode::BadRequest),
        (b"NETBOOT 10.83.49 x\n", ErrorCode::BadRequest),
        (b"FLASH 99999999\n", ErrorCode::TooLarge),
    ] {
        let reply = s.request(line, &[], 100_000).unwrap();
        assert_eq!(reply.error_code(), Some(code), "{:?}: {:?}", String::from_utf8_lossy(line), reply.lines);
    }
    assert_eq!(status(&mut s).a, SlotReport::Confirmed(Version(version(1, 0, 0))));
}

#[test]
fn a_request_right_after_an_answer_is_served_not_refused() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    // The first client has its answer but has not closed yet, so the agent's connection is still
    // closing when the second client asks.
    let mut first = s.open(b"STATUS\n", &[]);
    s.await_answer(&mut first, 100_000).unwrap();
    let second = s.request(b"STATUS\n", &[], 400_000).unwrap();
    assert!(second.is_ok(), "the second request: {:?}", second.lines);
    let first = s.close(first);
    assert!(first.is_ok(), "{:?}", first.lines);
}

#[test]
fn flash_writes_the_inactive_slot_on_trial() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    // Over a sector boundary (128 KiB sectors), and odd, so the last byte is padded.
    let image = netbench::signed_image(&key(), 140_001, version(1, 2, 4)).unwrap();
    let started = s.board.virtual_time_ns();
    let reply = s.request(format!("FLASH {}\n", image.len()).as_bytes(), &image, TURNS).unwrap();
    let secs = (s.board.virtual_time_ns() - started) as f64 / 1e9;
    assert!(reply.is_ok(), "{:?}\nconsole:\n{}", reply.lines, console(&s));
    assert_eq!(reply.field("slot").as_deref(), Some("B"));
    assert_eq!(reply.field("version").as_deref(), Some("1.2.4"));
    assert_eq!(reply.field("bytes"), Some(image.len().to_string()));
    let phases: Vec<Phase> = reply.progress.iter().map(|p| p.0).collect();
    for phase in [Phase::Receive, Phase::Verify, Phase::Erase, Phase::Program, Phase::Readback] {
        assert!(phases.contains(&phase), "no {phase:?} progress: {:?}", reply.lines);
    }
    assert!(reply.progress.contains(&(Phase::Erase, 2, 2)), "{:?}", reply.lines);
    assert!(reply.progress.contains(&(Phase::Program, image.len() as u64, image.len() as u64)), "{:?}", reply.lines);
    eprintln!("FLASH of {} bytes: {secs:.2} s virtual, {} lines", image.len(), reply.lines.len());

    // The slot holds the image, the record says it is on trial.
    let b = MPC8349EMDS.slot(Slot::B);
    let mut back = vec![0u8; image.len()];
    assert!(s.board.read_flash(b.offset, &mut back));
    assert!(back == image, "slot B differs from the image");
    let state = boot_state(&s).expect("a valid boot-state record");
    assert_eq!(state.trial, Some(Slot::B));
    assert_eq!(state.active, Some(Slot::A), "the running slot stays the confirmed fallback");
    assert_eq!(state.slot(Slot::B).state, SlotState::Written);
    assert_eq!(state.slot(Slot::B).version, version(1, 2, 4));
    assert_eq!(state.slot(Slot::B).len, image.len() as u32);
    assert_eq!(status(&mut s).b, SlotReport::Trial(Version(version(1, 2, 4))));
    // The network was served all along and still is.
    s.ping(1).unwrap();
}

#[test]
fn bad_images_are_refused_before_anything_is_erased() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    let good = netbench::signed_image(&key(), 5000, version(1, 2, 5)).unwrap();
    let mut corrupt = good.clone();
    corrupt[bpnet_image::HEADER_LEN + 100] ^= 0x40;
    let mut foreign_key_signed = good.clone();
    foreign_key_signed[0x44] ^= 1; // the signature
    let unsigned = netbench::pattern(6000);
    let truncated = good[..good.len() - 16].to_vec();
    let before = whole_flash(&s);
    let ops = s.board.flash_operations();
    for (what, image) in [
        ("corrupt", &corrupt),
        ("bad signature", &foreign_key_signed),
        ("unsigned", &unsigned),
        ("truncated", &truncated),
    ] {
        let reply = s.request(format!("FLASH {}\n", image.len()).as_bytes(), image, TURNS).unwrap();
        assert_eq!(reply.error_code(), Some(ErrorCode::Refused), "{what}: {:?}", reply.lines);
        assert!(!reply.progress.iter().any(|p| p.0 == Phase::Erase), "{what}: {:?}", reply.lines);
    }
    assert_eq!(s.board.flash_operations(), ops, "no erase or program for a refused image");
    assert!(whole_flash(&s) == before, "the flash changed");
    s.ping(2).unwrap();
    assert_eq!(status(&mut s).b, SlotReport::Empty);
}

#[test]
fn netboot_failures_retry_with_backoff_then_error() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    let good = netbench::signed_image(&key(), 3000, version(1, 3, 0)).unwrap();
    let mut bad = good.clone();
    bad[bpnet_image::HEADER_LEN] ^= 1;
    s.tftp.add_file("bad.img", bad);
    s.tftp.add_file("good.img", good.clone());
    // Beyond the 8 MiB an image may have (a slot): refused from its announced size.
    s.tftp.server.add_file(b"big.img", Content::Pattern(9 << 20));

    let cases: [(&str, &str, Faults, ErrorCode); 5] = [
        ("missing file", "nothing.img", Faults::default(), ErrorCode::Tftp),
        ("oversized", "big.img", Faults::default(), ErrorCode::TooLarge),
        ("bad signature", "bad.img", Faults::default(), ErrorCode::Refused),
        ("truncated", "good.img", Faults { truncate_to: Some(2000), ..Faults::default() }, ErrorCode::Tftp),
        ("timeout", "good.img", Faults { stall_after: Some(0), ..Faults::default() }, ErrorCode::Timeout),
    ];
    for (what, file, faults, code) in cases {
        s.tftp.server.faults = faults;
        let requests = s.tftp.server.log.requests.len();
        let started = s.board.virtual_time_ns();
        let reply = s.request(format!("NETBOOT {HOST_IP} {file}\n").as_bytes(), &[], TURNS).unwrap();
        let secs = (s.board.virtual_time_ns() - started) as f64 / 1e9;
        assert_eq!(reply.error_code(), Some(code), "{what}: {:?}", reply.lines);
        // The first attempt and three retries, 1 + 2 + 4 s apart at least. The firmware's clock
        // (e300 `Timebase::micros`) divides the timebase by whole MHz (66 for 66.67 MHz), so its
        // seconds are 1 % short of the board's.
        assert_eq!(s.tftp.server.log.requests.len() - requests, 4, "{what}");
        assert!(secs >= 7.0 * 66.0 / 66.667, "{what}: gave up after {secs:.2} s");
        eprintln!("{what}: {} after {secs:.1} s virtual", reply.last());
        // Still serving.
        s.ping(10).unwrap();
        assert_eq!(status(&mut s).source, Source::Direct);
    }
    let log = console(&s);
    assert!(s.board.log_lines().iter().any(|l| l.contains("retrying in 4 s")), "{log}");
}

#[test]
fn netboot_fetches_verifies_and_starts_the_image() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    let img = std::fs::read(common::firmware("BPNET_FIRMWARE_IMG")).expect("signed firmware image readable");
    s.tftp.add_file("bpnet/firmware.img", img.clone());
    let reply = s.request(format!("NETBOOT {HOST_IP} bpnet/firmware.img\n").as_bytes(), &[], TURNS).unwrap();
    assert!(reply.is_ok(), "{:?}\nconsole:\n{}", reply.lines, console(&s));
    assert_eq!(reply.field("bytes"), Some(img.len().to_string()));
    assert!(reply.progress.contains(&(Phase::Fetch, img.len() as u64, img.len() as u64)), "{:?}", reply.lines);
    // The TFTP client asked for the largest block an unfragmented datagram carries at MTU 1500.
    assert_eq!(s.tftp.server.log.requests[0].blksize, Some(1468));
    // Then the firmware starts what it fetched: a second banner, started by netboot.
    let before = console(&s).matches("bpnet firmware").count();
    for _ in 0..400 {
        if console(&s).contains("boot: source netboot") {
            break;
        }
        bpnet_emu::host::run_slice(&mut s.board).unwrap();
    }
    let log = console(&s);
    assert!(log.contains("boot: source netboot"), "{log}");
    assert!(log.matches("bpnet firmware").count() > before, "{log}");
    // The new program serves the link and says where it came from.
    let from = log.rfind("\nbpnet firmware").expect("the new program's banner");
    s.reconnect(from).unwrap();
    let st = status(&mut s);
    assert_eq!(st.source, Source::Netboot);
    assert_eq!(st.slot, None);
    assert!(!st.trial && !st.confirmed);
    assert_eq!(st.a, SlotReport::Confirmed(Version(version(1, 0, 0))));
    let image_version = bpnet_image::Header::new_checked(&img[..]).expect("an image header").image_version();
    assert_eq!(st.version, Version(image_version));
    s.ping(3).unwrap();
}

#[test]
fn reset_resets_the_board() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    let resets = s.board.resets();
    let reply = s.request(b"RESET\n", &[], 100_000).unwrap();
    assert_eq!(reply.last(), "OK", "{:?}", reply.lines);
    for _ in 0..400 {
        if s.board.resets() > resets {
            break;
        }
        bpnet_emu::host::run_slice(&mut s.board).unwrap();
    }
    assert_eq!(s.board.resets(), resets + 1, "{}", console(&s));
    for _ in 0..400 {
        if console(&s).contains("software hard reset") {
            break;
        }
        bpnet_emu::host::run_slice(&mut s.board).unwrap();
    }
    assert!(console(&s).contains("reset:  software hard reset"), "{}", console(&s));
}

#[test]
fn the_network_is_served_while_the_flash_programs() {
    let flash = flash_with_a_confirmed();
    let mut s = boot(&flash);
    let image = netbench::signed_image(&key(), 300_000, version(1, 2, 6)).unwrap();
    let mut flashing = s.open(format!("FLASH {}\n", image.len()).as_bytes(), &image);
    // Into the program phase (past the first sector's erase).
    for _ in 0..TURNS {
        assert!(s.pump(&mut flashing).is_none(), "{:?}", flashing.reply.lines);
        if flashing.reply.progress.iter().any(|p| p.0 == Phase::Program) {
            break;
        }
        s.turn().unwrap();
    }
    assert!(flashing.reply.progress.iter().any(|p| p.0 == Phase::Program), "{:?}", flashing.reply.lines);
    // Pings are answered within milliseconds while words are programmed, and so are pings during
    // the second sector's erase (the job erases ahead, polling the part from the main loop).
    let mut worst_ms = 0.0f64;
    let mut latencies = Vec::new();
    let mut seq = 100;
    let mut during_erase = 0;
    while s.pump(&mut flashing).is_none() {
        seq += 1;
        let erasing = s.board.flash_erasing();
        let sent = s.board.virtual_time_ns();
        s.send_ping(seq);
        let mut answered = false;
        for _ in 0..10_000 {
            if s.take_pong(seq) {
                answered = true;
                break;
            }
            s.turn().unwrap();
        }
        assert!(answered, "no echo reply while flashing: {:?}", flashing.reply.lines);
        let ms = (s.board.virtual_time_ns() - sent) as f64 / 1e6;
        worst_ms = worst_ms.max(ms);
        latencies.push(ms);
        during_erase += usize::from(erasing);
        // A second client meanwhile is told the service is busy.
        if seq == 103 {
            let reply = s.request(b"STATUS\n", &[], 100_000).unwrap();
            assert_eq!(reply.error_code(), Some(ErrorCode::Busy), "{:?}", reply.lines);
        }
        // A ping every 50 ms of the update.
        let until = s.board.virtual_time_ns() + 50_000_000;
        while s.board.virtual_time_ns() < until && s.pump(&mut flashing).is_none() {
            s.turn().unwrap();
        }
    }
    let reply = s.close(flashing);
    assert!(reply.is_ok(), "{:?}", reply.lines);
    assert!(seq > 110, "only {} pings during the update", seq - 100);
    assert!(during_erase > 0, "no ping during an erase");
    // Every step of the update is short except the final verification of the image read back
    // (SHA-256 over it and the ed25519 check, in one go): about 30 ms for this image.
    latencies.sort_by(f64::total_cmp);
    let second = latencies[latencies.len() - 2];
    assert!(second < 10.0, "echo replies took up to {second:.1} ms while flashing: {latencies:?}");
    assert!(worst_ms < 60.0, "an echo reply took {worst_ms:.1} ms while flashing");
    eprintln!(
        "{} pings while flashing ({during_erase} during an erase), slowest {worst_ms:.2} ms, next {second:.2} ms",
        seq - 100
    );
}
