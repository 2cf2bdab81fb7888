//! The boot stage (`bpnet-boot.elf`, linked at 64 MiB by `linker/mpc8349emds-boot/memory.x`): what
//! U-Boot's `bootcmd` starts from flash offset 0xC_0000 (the emulator: what it loads at every reset).
//!
//! 1. A header in RESET (a new generation, so the host sees the agent restart) and the boot block
//!    with stage "choosing".
//! 2. [`bpnet_update::choose`] over the flash: each candidate slot's image is read into STAGING and
//!    verified there ([`bpnet_image::verify`], the built-in key, the FIRMWARE RAM range), trial boots
//!    are counted and a trial out of boots is rolled back, all persisted before anything starts.
//! 3. The chosen image is started from STAGING with boot info (source flash, slot, trial): the
//!    trampoline copies it to its load address. No slot verifies (or no flash): recovery through the
//!    BAR ([`recovery`]), the host writes an image into the recovery area.
//!
//! The verified bytes are the ones started: the image is read out of flash once, into RAM only this
//! program writes, and verified there. What it shares with the firmware (the boot block, recovery,
//! starting an image, the trusted key, the console) is `bpnet-firmware`'s library
//! ([`bpnet_firmware::boot`]); it prints on the console only, never through defmt.
#![no_std]
#![no_main]

use bpnet_contract::bar::{AgentRepr, AgentState, BootStage, Header, Layout, HEADER_LEN};
use bpnet_contract::ring::Entries;
use bpnet_contract::shared;
use bpnet_image::{TrustedKey, Verified, HEADER_LEN as IMAGE_HEADER_LEN};
use bpnet_update::bootinfo::{BootInfo, Source};
use bpnet_update::{choose, Boot, Region, Slot, MPC8349EMDS};
use mpc8349emds::{FlashBus, SharedWindow, Staging, FLASH_BYTES};
use norflash::Bus;

use bpnet_firmware::boot::{
    current_seq, flash, publish, recovery, slot_fields, start_image, unknown_start, IMAGE_RAM, OWN_VERSION,
};
use bpnet_firmware::println;

/// Ring size the boot stage's header announces (no ring is live; the host's checks of the header
/// pass as for the firmware's).
const RING_ENTRIES: u32 = 256;

fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "A",
        Slot::B => "B",
    }
}

/// Bytes from flash (read-array mode: plain 16-bit reads, big-endian words in flash order).
fn read_flash(offset: u32, buf: &mut [u8]) -> bool {
    if u64::from(offset) + buf.len() as u64 > u64::from(FLASH_BYTES) || !offset.is_multiple_of(2) {
        return false;
    }
    let mut bus = FlashBus::take();
    for (i, pair) in buf.chunks_mut(2).enumerate() {
        let word = bus.read(offset / 2 + i as u32).to_be_bytes();
        pair.copy_from_slice(&word[..pair.len()]);
    }
    true
}

/// What was verified in STAGING (the slice is rebuilt from these after [`choose`] returns).
#[derive(Clone, Copy)]
struct Loaded {
    region: Region,
    len: usize,
    image_version: u32,
    security_counter: u32,
    /// Where the payload starts (the header's length in its format).
    header_len: usize,
    flags: u32,
    load: u32,
    entry: u32,
    key_id: [u8; bpnet_image::KEY_ID_LEN],
}

/// Read the image at the start of `region` into `staging` and verify it there; an image whose security
/// counter is below `minimum` (the boot state's) is refused as a failed one is.
fn load(region: Region, staging: &mut [u8], key: &TrustedKey, minimum: u32) -> Result<Loaded, &'static str> {
    let mut head = [0u8; IMAGE_HEADER_LEN];
    if !read_flash(region.offset, &mut head) {
        return Err("outside the flash");
    }
    let len = match bpnet_image::image_len(&head) {
        Ok(len) => len,
        Err(bpnet_image::Error::BadMagic(0xFFFF_FFFF)) => return Err("empty (erased)"),
        Err(_) => return Err("no image header"),
    };
    if len > u64::from(region.len) || len > staging.len() as u64 {
        return Err("image longer than its slot");
    }
    let len = len as usize;
    if !read_flash(region.offset, &mut staging[..len]) {
        return Err("outside the flash");
    }
    let checked = bpnet_image::verify(&staging[..len], core::slice::from_ref(key), IMAGE_RAM)
        .and_then(|v| bpnet_image::check_security_counter(&v, minimum).map(|()| v));
    match checked {
        Ok(v) => Ok(Loaded {
            region,
            len,
            image_version: v.image_version,
            security_counter: v.security_counter,
            header_len: len - v.payload.len(),
            flags: v.flags,
            load: v.load,
            entry: v.entry,
            key_id: v.key_id,
        }),
        Err(e @ bpnet_image::Error::Rollback { .. }) => {
            println!("boot: image at flash {:#x} refused: {}", region.offset, e);
            Err("older than the board's minimum security counter")
        }
        Err(e) => {
            println!("boot: image at flash {:#x} refused: {}", region.offset, e);
            Err("does not verify")
        }
    }
}

/// A header in RESET with a generation past the previous program's, so the host notices the restart.
fn write_header(window: &mut SharedWindow) {
    let mut old = [0u8; HEADER_LEN];
    window.read(shared::HEADER_OFFSET, &mut old);
    let generation = Header::new_unchecked(&old[..]).agent_generation().wrapping_add(1);
    let Ok(entries) = Entries::new(RING_ENTRIES) else { unreachable!("256 is a valid ring size") };
    let agent = AgentRepr {
        features: 0,
        generation,
        firmware_version: OWN_VERSION,
        layout: Layout::DEFAULT,
        mac: [0; 6],
        ring_entries: entries,
    };
    let mut header = [0u8; HEADER_LEN];
    let mut view = Header::new_unchecked(&mut header[..]);
    agent.emit(&mut view);
    view.set_agent_state(AgentState::Reset);
    window.write(shared::HEADER_OFFSET, &header);
}

/// The boot stage's main; never returns.
#[no_mangle]
fn __e300_main() -> ! {
    let board = bpnet_firmware::board();
    let hz = board.clocks.timebase_hz;
    let start_tb = e300::timebase::read();
    let (major, minor, patch) = bpnet_image::version_parts(OWN_VERSION);
    println!();
    println!("bpnet boot stage {}.{}.{} (MPC8349EMDS)", major, minor, patch);

    let mut window = SharedWindow::take();
    // The host reaches the boot block and the recovery area through inbound window 0, BAR1 of the
    // configuration header: the agent sets the translation and size, the host's enumeration the
    // address (PIBAR0), once the configuration lock is released below.
    let immr = mpc8349emds::immr();
    if let Err(e) = immr.pci_windows().set_inbound(0, window.base(), shared::LEN as u64) {
        println!("boot: inbound window 0: {:?}", e);
    }
    e300::barrier::sync();
    write_header(&mut window);
    // The firmware publishes the rest of the board info block; the fault record is left alone.
    window.write(
        shared::BOARD_INFO_OFFSET + bpnet_contract::bar::field::board_info::BOOT_STAGE_VERSION,
        &OWN_VERSION.to_le_bytes(),
    );
    let mut repr = unknown_start(BootStage::Choosing);
    publish(&mut window, &repr);
    // The boot block and the recovery area are ready: the host may enumerate the agent.
    e300::barrier::sync();
    immr.pci_config().release_lock();
    match immr.pci_windows().inbound_base(0) {
        Some(0) | None => println!("boot: configuration lock released; BAR1 not assigned by the host yet"),
        Some(at) => println!("boot: configuration lock released; the host put BAR1 (PIBAR0) at PCI {:#010x}", at),
    }
    let last_seq = current_seq(&window);

    let mut staging = Staging::take();
    let Some(mut nor) = flash(hz) else {
        println!("boot: no CFI flash answers: recovery");
        recovery::serve(window, staging, repr, hz, start_tb, last_seq)
    };
    let key = bpnet_firmware::key::trusted();
    // The downgrade floor, from the record choose reads too (0 when there is none).
    let minimum = bpnet_update::status(&mut nor, &MPC8349EMDS).ok().flatten().map_or(0, |s| s.min_security_counter);
    let mut loaded: Option<Loaded> = None;
    let decision = choose(&mut nor, &MPC8349EMDS, |_, region| {
        loaded = None;
        let slot = if region.offset == MPC8349EMDS.slot(Slot::A).offset { "A" } else { "B" };
        match load(region, staging.bytes_mut(), &key, minimum) {
            Ok(l) => {
                let (ma, mi, pa) = bpnet_image::version_parts(l.image_version);
                println!("boot: slot {} holds image {}.{}.{}, {} bytes: verified", slot, ma, mi, pa, l.len);
                loaded = Some(l);
                true
            }
            Err(why) => {
                println!("boot: slot {}: {}", slot, why);
                false
            }
        }
    });
    let state = bpnet_update::status(&mut nor, &MPC8349EMDS).ok().flatten();
    (repr.slot_versions, repr.slot_states) = slot_fields(state.as_ref());
    let decision = match decision {
        Ok(d) => d,
        Err(e) => {
            println!("boot: boot state unusable ({:?}): recovery", e);
            publish(&mut window, &repr);
            recovery::serve(window, staging, repr, hz, start_tb, last_seq)
        }
    };
    if let Some(slot) = decision.rolled_back {
        println!("boot: slot {} ran out of trial boots without confirming: rolled back", slot_name(slot));
    }
    if decision.state_write_failed {
        println!("boot: the boot state could not be written (retried at the next boot)");
    }
    let Boot::Slot { slot, image, trial } = decision.boot else {
        println!("boot: no slot holds an image that verifies: recovery");
        publish(&mut window, &repr);
        recovery::serve(window, staging, repr, hz, start_tb, last_seq)
    };
    // The chosen slot was verified, but another may have been verified after it: load it again then.
    let l = match loaded.filter(|l| l.region == image) {
        Some(l) => l,
        None => match load(image, staging.bytes_mut(), &key, minimum) {
            Ok(l) => l,
            Err(why) => {
                println!("boot: slot {} changed since it verified ({}): recovery", slot_name(slot), why);
                publish(&mut window, &repr);
                recovery::serve(window, staging, repr, hz, start_tb, last_seq)
            }
        },
    };
    println!("boot: starting slot {}{}", slot_name(slot), if trial { " on trial" } else { "" });
    let verified = Verified {
        image_version: l.image_version,
        security_counter: l.security_counter,
        flags: l.flags,
        load: l.load,
        entry: l.entry,
        key_id: l.key_id,
        payload: &staging.bytes()[l.header_len..l.len],
    };
    let info = BootInfo { source: Source::Flash, slot: Some(slot), trial, image_version: l.image_version };
    start_image(&mut window, &verified, info, &mut repr)
}
