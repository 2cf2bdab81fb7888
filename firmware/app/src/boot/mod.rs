//! Booting, as the firmware and the boot stage share it: the boot info the firmware reads at start,
//! the boot block it publishes in the shared region (how it was started, uptime, the slots), the
//! confirmation of a trial slot once the host has brought the link up, the host's requests through
//! the boot block (reset, enter recovery), recovery through the BAR ([`recovery`]) and starting a
//! verified image ([`launch`]).
//!
//! The boot stage (`firmware/boot`, `bpnet-boot.elf`) logs to the console only: the defmt table in
//! its ELF is not the firmware's, so nothing it runs may log through defmt.

pub mod recovery;

use core::cell::RefCell;

use bpnet_contract::bar::{
    self, boot_flags, AgentState, BootBlock, BootRepr, BootStage, HostRequest, RequestRepr, BOOT_BLOCK_LEN,
    BOOT_HOST_FIELDS, BOOT_SLOT_NONE, SLOT_STATE_UNKNOWN,
};
use bpnet_contract::{notify, shared};
use bpnet_image::Verified;
use bpnet_update::bootinfo::BootInfo;
pub use bpnet_update::bootinfo::Source;
use bpnet_update::{BootState, Nor, Slot, Storage, MPC8349EMDS};
use critical_section::Mutex;
use mpc8349::ipic::vector;
use mpc8349emds::{Clock, FlashBus, SharedWindow, FIRMWARE_BASE, FIRMWARE_END};

use crate::println;

// The boot block's slot states are the boot-state record's, byte for byte.
const _: () = assert!(
    bpnet_update::SlotState::Empty as u8 == bar::slot_state::EMPTY
        && bpnet_update::SlotState::Written as u8 == bar::slot_state::WRITTEN
        && bpnet_update::SlotState::Confirmed as u8 == bar::slot_state::CONFIRMED
        && bpnet_update::SlotState::Rejected as u8 == bar::slot_state::REJECTED
);

/// The RAM range every image's payload must load into.
pub const IMAGE_RAM: core::ops::Range<u64> = FIRMWARE_BASE as u64..FIRMWARE_END as u64;

/// The boot block of this program when nothing is known of how it started: started directly, no
/// slot, nothing known of the slots, at `stage`.
pub fn unknown_start(stage: BootStage) -> BootRepr {
    BootRepr {
        boot_source: Source::Direct as u8,
        boot_slot: BOOT_SLOT_NONE,
        boot_flags: 0,
        stage,
        uptime_s: 0,
        image_version: OWN_VERSION,
        recovery_offset: 0,
        recovery_capacity: 0,
        recovery_error: 0,
        slot_versions: [0; 2],
        slot_states: [SLOT_STATE_UNKNOWN; 2],
    }
}

/// The crate version as an image version word (the same encoding as the contract's
/// `firmware_version`, which the BAR header publishes).
pub const OWN_VERSION: u32 = bpnet_image::image_version(
    parse_u8(env!("CARGO_PKG_VERSION_MAJOR")),
    parse_u8(env!("CARGO_PKG_VERSION_MINOR")),
    parse_u8(env!("CARGO_PKG_VERSION_PATCH")),
);

const fn parse_u8(s: &str) -> u8 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v: u8 = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0');
        i += 1;
    }
    v
}

/// The NOR flash through the update crate's adapter.
pub type Flash = Nor<FlashBus, Clock>;

/// Probe the flash (CFI) and wrap it for the update logic.
pub fn flash(timebase_hz: u32) -> Option<Flash> {
    let nor = norflash::Flash::probe(FlashBus::take()).ok()?;
    Some(Nor::new(nor, Clock(e300::timebase::Timebase::new(timebase_hz))))
}

/// The slots' versions and states as the boot block shows them (from the boot-state record).
pub fn slot_fields(state: Option<&BootState>) -> ([u32; 2], [u8; 2]) {
    match state {
        Some(s) => (
            [s.slot(Slot::A).version, s.slot(Slot::B).version],
            [s.slot(Slot::A).state as u8, s.slot(Slot::B).state as u8],
        ),
        None => ([0; 2], [SLOT_STATE_UNKNOWN; 2]),
    }
}

/// Write the agent's half of the boot block (the host's half is never written here).
pub fn publish(window: &mut SharedWindow, repr: &BootRepr) {
    let mut block = [0u8; BOOT_BLOCK_LEN];
    repr.emit(&mut BootBlock::new_unchecked(&mut block[..]));
    window.write(shared::BOOT_OFFSET, &block[..BOOT_HOST_FIELDS]);
}

/// The host's request, if `request_seq` moved past `last_seq`. A request word the contract does not
/// define is refused once (its sequence number is taken as seen) and reported.
pub fn take_request(window: &SharedWindow, last_seq: &mut u32) -> Option<RequestRepr> {
    let mut block = [0u8; BOOT_BLOCK_LEN];
    window.read(shared::BOOT_OFFSET, &mut block);
    match RequestRepr::parse(&BootBlock::new_unchecked(&block[..]), *last_seq) {
        Ok(Some(r)) => {
            *last_seq = r.seq;
            Some(r)
        }
        Ok(None) => None,
        Err((seq, e)) => {
            *last_seq = seq;
            println!("boot: host request refused: {}", e);
            None
        }
    }
}

/// The host's request sequence number as it stands: a program takes it as seen when it starts, so
/// a request meant for the program before it is not acted on again.
pub fn current_seq(window: &SharedWindow) -> u32 {
    let mut block = [0u8; BOOT_BLOCK_LEN];
    window.read(shared::BOOT_OFFSET, &mut block);
    BootBlock::new_unchecked(&block[..]).request_seq()
}

/// Change `agent_state` with one byte store into the live header and tell the host (LINK).
pub fn set_agent_state(window: &mut SharedWindow, state: AgentState) {
    window.write(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, &[state as u8]);
    mpc8349emds::immr().message_unit().ring_host(notify::LINK);
}

/// Stop everything that could write RAM or interrupt while an image is copied over the running
/// program: interrupts off at the core and the IPIC, the DMA channel the data path uses drained
/// (bounded: a chain lasts microseconds; a stuck one is aborted by the reset the new program does).
pub fn quiesce() {
    let immr = mpc8349emds::immr();
    let ipic = immr.ipic();
    ipic.disable(vector::MESSAGE_UNIT);
    ipic.disable(vector::DMA);
    let dma = immr.dma(0);
    for _ in 0..1_000_000 {
        if !dma.is_busy() {
            break;
        }
    }
}

/// Start a verified image: quiesce, agent_state RESET with LINK (the host sees the agent go), boot
/// block stage "starting", boot info, then the launch trampoline. Never returns.
pub fn start_image(window: &mut SharedWindow, image: &Verified<'_>, info: BootInfo, repr: &mut BootRepr) -> ! {
    quiesce();
    set_agent_state(window, AgentState::Reset);
    repr.stage = BootStage::Starting;
    publish(window, repr);
    mpc8349emds::write_boot_info(&info.to_bytes());
    let (major, minor, patch) = bpnet_image::version_parts(image.image_version);
    println!(
        "boot: starting image {}.{}.{} ({} bytes at {:#010x}, entry {:#010x}) from {}",
        major,
        minor,
        patch,
        image.payload.len(),
        image.load,
        image.entry,
        source_name(info.source)
    );
    e300::launch(image.payload.as_ptr() as u32, image.payload.len() as u32, image.load, image.entry)
}

pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::Direct => "direct",
        Source::Flash => "flash",
        Source::Netboot => "netboot",
        Source::Recovery => "recovery",
    }
}

/// Seconds since `start_tb`.
fn uptime_s(start_tb: u64, timebase_hz: u32) -> u32 {
    let ticks = e300::timebase::read().wrapping_sub(start_tb);
    u32::try_from(ticks / u64::from(timebase_hz.max(1))).unwrap_or(u32::MAX)
}

/// A software hard reset (the boot stage runs again, as at power-on).
pub fn reset() -> ! {
    println!("boot: reset requested by the host");
    quiesce();
    mpc8349emds::immr().reset().hard_reset()
}

// ---- The firmware's side ----

/// What the running firmware knows about its own start.
struct Firmware {
    info: BootInfo,
    repr: BootRepr,
    timebase_hz: u32,
    start_tb: u64,
    last_seq: u32,
    /// Confirmation was tried (successfully or not): it is not tried again in this boot.
    confirm_tried: bool,
    /// The boot state's minimum security counter: images below it are refused ([`verify`]).
    min_security_counter: u32,
}

static FIRMWARE: Mutex<RefCell<Option<Firmware>>> = Mutex::new(RefCell::new(None));

/// A slot the boot stage found without a boot-state record is recorded with version 0 (the update
/// logic learns versions when it writes a slot); the image running from it knows its own.
fn fill_version(versions: &mut [u32; 2], info: &BootInfo) {
    if let Some(slot) = info.slot {
        if versions[slot.index()] == 0 {
            versions[slot.index()] = info.image_version;
        }
    }
}

/// The firmware's first boot step, before the data path: read and clear the boot info, publish the
/// boot block (stage "firmware running"), take the host's current request as seen.
pub fn start(timebase_hz: u32) {
    let start_tb = e300::timebase::read();
    let raw = mpc8349emds::read_boot_info();
    mpc8349emds::write_boot_info(&[0; mpc8349emds::BOOT_INFO_LEN]);
    let (info, error) = BootInfo::read(&raw);
    if let Some(e) = error {
        defmt::warn!("boot: boot info refused ({}), taken as a direct start", defmt::Debug2Format(&e));
    }
    let state = flash(timebase_hz).and_then(|mut f| bpnet_update::status(&mut f, &MPC8349EMDS).ok().flatten());
    let (mut slot_versions, slot_states) = slot_fields(state.as_ref());
    fill_version(&mut slot_versions, &info);
    let confirmed = info
        .slot
        .is_some_and(|s| !info.trial && state.is_some_and(|st| st.slot(s).state == bpnet_update::SlotState::Confirmed));
    let repr = BootRepr {
        boot_source: info.source as u8,
        boot_slot: info.slot.map_or(BOOT_SLOT_NONE, |s| s.index() as u8),
        boot_flags: if info.trial { boot_flags::TRIAL } else { 0 } | if confirmed { boot_flags::CONFIRMED } else { 0 },
        stage: BootStage::Firmware,
        uptime_s: 0,
        image_version: if info.image_version != 0 { info.image_version } else { OWN_VERSION },
        recovery_offset: 0,
        recovery_capacity: 0,
        recovery_error: 0,
        slot_versions,
        slot_states,
    };
    let mut window = SharedWindow::take();
    publish(&mut window, &repr);
    let last_seq = current_seq(&window);
    let slot_name = match info.slot {
        Some(Slot::A) => "A",
        Some(Slot::B) => "B",
        None => "-",
    };
    println!(
        "boot: source {} slot {}{}",
        source_name(info.source),
        slot_name,
        if info.trial {
            " trial"
        } else if confirmed {
            " confirmed"
        } else {
            ""
        }
    );
    defmt::info!(
        "boot: source {=str}, slot {=str}, trial {=bool}, image {=u32:#x}",
        source_name(info.source),
        slot_name,
        info.trial,
        repr.image_version
    );
    critical_section::with(|cs| {
        *FIRMWARE.borrow_ref_mut(cs) = Some(Firmware {
            info,
            repr,
            timebase_hz,
            start_tb,
            last_seq,
            confirm_tried: false,
            min_security_counter: state.map_or(0, |s| s.min_security_counter),
        })
    });
}

/// Once the host has brought the link up (ring RUNNING): a firmware started on trial from a slot
/// confirms it, so the next reset starts it again instead of rolling back. Cheap when there is
/// nothing to do; tried once per boot.
// Inlined into its one caller, the data path's main loop: smaller there than as a call.
#[inline]
pub fn confirm_if_trial() {
    let todo = critical_section::with(|cs| {
        let mut fw = FIRMWARE.borrow_ref_mut(cs);
        let fw = fw.as_mut()?;
        if fw.confirm_tried || !fw.info.trial {
            return None;
        }
        fw.confirm_tried = true;
        Some((fw.info.slot?, fw.timebase_hz))
    });
    let Some((slot, timebase_hz)) = todo else { return };
    let name = if slot == Slot::A { "A" } else { "B" };
    let Some(mut flash) = flash(timebase_hz) else {
        defmt::error!("boot: no flash, slot {=str} stays on trial", name);
        return;
    };
    // The running image's security counter, from its header in the slot (verified by the boot stage
    // at this boot; nothing writes the running slot).
    let mut head = [0u8; bpnet_image::HEADER_LEN];
    let counter = flash
        .read(MPC8349EMDS.slot(slot).offset, &mut head)
        .ok()
        .and_then(|()| bpnet_image::Header::new_checked(&head[..]).ok())
        .map_or(0, |h| h.security_counter());
    match bpnet_update::confirm(&mut flash, &MPC8349EMDS, slot, counter) {
        Ok(how) => {
            defmt::info!(
                "boot: slot {=str} confirmed ({=str})",
                name,
                if how == bpnet_update::Confirmed::Now { "now" } else { "already" }
            );
            println!("boot: slot {} confirmed", name);
            let state = bpnet_update::status(&mut flash, &MPC8349EMDS).ok().flatten();
            let (mut versions, states) = slot_fields(state.as_ref());
            critical_section::with(|cs| {
                if let Some(fw) = FIRMWARE.borrow_ref_mut(cs).as_mut() {
                    fill_version(&mut versions, &fw.info);
                    fw.repr.boot_flags |= boot_flags::CONFIRMED;
                    fw.repr.slot_versions = versions;
                    fw.repr.slot_states = states;
                    if let Some(s) = state {
                        fw.min_security_counter = s.min_security_counter;
                    }
                    publish(&mut SharedWindow::take(), &fw.repr);
                }
            });
        }
        Err(e) => defmt::error!("boot: confirming slot {=str} failed: {}", name, defmt::Debug2Format(&e)),
    }
}

/// The boot block's agent fields as last published (with the current uptime), for status reports.
pub fn status() -> Option<BootRepr> {
    critical_section::with(|cs| {
        FIRMWARE
            .borrow_ref(cs)
            .as_ref()
            .map(|fw| BootRepr { uptime_s: uptime_s(fw.start_tb, fw.timebase_hz), ..fw.repr })
    })
}

/// The boot block's agent fields checked against what was published (the data path's timer, once a
/// second) and written again if a host overwrote them; true if they were. The host's fields (its
/// request words) are the host's and left alone.
pub fn repair() -> bool {
    let Some(repr) = status() else {
        return false;
    };
    let mut window = SharedWindow::take();
    let mut seen = [0u8; BOOT_BLOCK_LEN];
    window.read(shared::BOOT_OFFSET, &mut seen);
    let mut want = seen;
    repr.emit(&mut BootBlock::new_unchecked(&mut want[..]));
    // The uptime is the one field published as it changes: compare it as last written.
    want[bar::field::boot_block::UPTIME_S..bar::field::boot_block::UPTIME_S + 4]
        .copy_from_slice(&seen[bar::field::boot_block::UPTIME_S..bar::field::boot_block::UPTIME_S + 4]);
    if want[..BOOT_HOST_FIELDS] == seen[..BOOT_HOST_FIELDS] {
        return false;
    }
    publish(&mut window, &repr);
    true
}

/// Publishes the uptime when a second has passed and acts on a new host request (reset; enter
/// recovery, which stops the rings and never returns). The main loop calls it when the host rings
/// [`bpnet_contract::notify::CONTROL`] (it does after every request), when the deadline this returned
/// has passed, and on every pass while the link is not up. Returns the timebase tick at which the
/// uptime next needs publishing: the next whole second while the link is up (RUNNING),
/// [`NO_DEADLINE`] otherwise (a board with no host up sleeps until it rings, as before; the uptime is
/// then as of the agent's last wake).
// Inlined into the data path's main loop, its one caller.
#[inline]
pub fn poll() -> u64 {
    let Some((mut repr, hz, start_tb, mut last_seq)) = critical_section::with(|cs| {
        FIRMWARE.borrow_ref(cs).as_ref().map(|fw| (fw.repr, fw.timebase_hz, fw.start_tb, fw.last_seq))
    }) else {
        // Not started through the boot stage: no boot block of ours to keep.
        return NO_DEADLINE;
    };
    let mut window = SharedWindow::take();
    let uptime = uptime_s(start_tb, hz);
    if uptime != repr.uptime_s {
        repr.uptime_s = uptime;
        window.write(shared::BOOT_OFFSET + 4, &uptime.to_le_bytes());
    }
    let request = take_request(&window, &mut last_seq);
    critical_section::with(|cs| {
        if let Some(fw) = FIRMWARE.borrow_ref_mut(cs).as_mut() {
            fw.repr.uptime_s = repr.uptime_s;
            fw.last_seq = last_seq;
        }
    });
    match request.map(|r| r.request) {
        Some(HostRequest::Reset) => reset(),
        Some(HostRequest::EnterRecovery) => {
            defmt::warn!("boot: the host asked for recovery: rings stopped, waiting for an image in the BAR");
            quiesce();
            // The main loop (and whatever of it held STAGING: the control service, netboot) never runs
            // again, so recovery is its only user from here on.
            recovery::serve(window, mpc8349emds::Staging::take(), repr, hz, start_tb, last_seq)
        }
        Some(HostRequest::BootImage) => {
            defmt::warn!("boot: boot-image request outside recovery ignored (enter recovery first)");
        }
        Some(HostRequest::None) | None => {}
    }
    // Every second while the host is watching (the link is up); otherwise the agent keeps sleeping
    // until the host rings, and the uptime is brought up to date at every wake.
    let mut agent_state = [0u8];
    window.read(shared::HEADER_OFFSET + bar::field::header::AGENT_STATE, &mut agent_state);
    if agent_state[0] != AgentState::Running as u8 {
        return NO_DEADLINE;
    }
    let now = e300::timebase::read();
    let hz = u64::from(hz.max(1));
    now + (hz - now.wrapping_sub(start_tb) % hz)
}

/// What [`poll`] returns when it needs no wake of its own.
pub const NO_DEADLINE: u64 = u64::MAX;

/// Check an image as [`launch`] will: signature under the built-in key, payload inside the
/// FIRMWARE RAM range, security counter not below the boot state's minimum (no downgrade: FLASH and
/// NETBOOT refuse through here). For a caller that wants to answer "refused" before it tears anything
/// down.
pub fn verify(image: &[u8]) -> Result<Verified<'_>, bpnet_image::Error> {
    let verified = bpnet_image::verify(image, &[crate::key::trusted()], IMAGE_RAM)?;
    bpnet_image::check_security_counter(&verified, min_security_counter_now())?;
    Ok(verified)
}

/// The minimum security counter as the running firmware last read it from the boot state (0 before
/// [`start`], or with no valid record).
fn min_security_counter_now() -> u32 {
    critical_section::with(|cs| FIRMWARE.borrow_ref(cs).as_ref().map_or(0, |fw| fw.min_security_counter))
}

/// The boot state's minimum security counter, read from the flash (0 when no flash or no valid record
/// answers).
pub fn min_security_counter(timebase_hz: u32) -> u32 {
    flash(timebase_hz)
        .and_then(|mut f| bpnet_update::status(&mut f, &MPC8349EMDS).ok().flatten())
        .map_or(0, |s| s.min_security_counter)
}

/// Start `image` (verified by the caller with [`verify`], held in STAGING where nothing overwrites
/// it: netboot, the control service) with boot info `source`; never returns. It is verified again
/// here, so nothing unsigned can be started through this door; an image that fails is a bug of the
/// caller and panics (the firmware halts with the reason on the console rather than run it).
pub fn launch(image: &[u8], source: Source) -> ! {
    let verified = match verify(image) {
        Ok(v) => v,
        Err(e) => panic!("boot: launch of an image that does not verify: {}", e),
    };
    let mut repr = status().unwrap_or(unknown_start(BootStage::Firmware));
    let info = BootInfo { source, slot: None, trial: false, image_version: verified.image_version };
    defmt::info!("boot: starting a {=str} image, version {=u32:#x}", source_name(source), verified.image_version);
    start_image(&mut SharedWindow::take(), &verified, info, &mut repr)
}
