//! Recovery through the BAR, the same in the boot stage (no slot verifies) and in the firmware (the
//! host asked for it): `agent_state` RECOVERY (the rings are not live; LINK tells the host), the boot
//! block's recovery area (`recovery_offset`, `recovery_capacity`) and stage "waiting", then one
//! request at a time from the boot block:
//!
//! * boot image: `recovery_len` is the host's word, so it is checked against the area before a byte
//!   is read; the declared bytes are copied out of the BAR into STAGING (where the host cannot change
//!   them after they are checked), verified there and started (boot info source "recovery"). A refused
//!   image sets `recovery_error` (`bpnet_image::Error::code`, or `RECOVERY_ERROR_LENGTH`) and
//!   stage "refused", and the agent keeps waiting;
//! * reset: a software hard reset;
//! * anything else: nothing.
//!
//! The agent sleeps between requests (the host rings CONTROL after writing one) and wakes every
//! second to publish its uptime.

use bpnet_contract::bar::{AgentState, BootRepr, BootStage, HostRequest, RECOVERY_ERROR_LENGTH};
use bpnet_contract::shared;
use bpnet_update::bootinfo::{BootInfo, Source};
use mpc8349::ipic::vector;
use mpc8349::msgunit::inbound;
use mpc8349emds::{SharedWindow, Staging};

use super::{publish, set_agent_state, start_image, take_request, uptime_s, IMAGE_RAM};
use crate::{irq, println};

/// Wait for and start an image from the host; never returns (a good image is started, a reset
/// request resets). `staging` is where an image is copied to be verified and started from.
pub fn serve(
    mut window: SharedWindow,
    mut staging: Staging,
    mut repr: BootRepr,
    timebase_hz: u32,
    start_tb: u64,
    mut last_seq: u32,
) -> ! {
    // The downgrade floor: the boot state's, if a flash and a valid record answer (else 0).
    let minimum = super::min_security_counter(timebase_hz);
    repr.stage = BootStage::RecoveryWaiting;
    repr.recovery_offset = shared::RECOVERY_OFFSET as u32;
    repr.recovery_capacity = shared::RECOVERY_LEN as u32;
    repr.recovery_error = 0;
    publish(&mut window, &repr);
    set_agent_state(&mut window, AgentState::Recovery);
    println!(
        "recovery: waiting for an image in the BAR at offset {:#x} (up to {} bytes)",
        shared::RECOVERY_OFFSET,
        shared::RECOVERY_LEN
    );

    // The host's CONTROL doorbell wakes the agent (IDI unmasked, message registers masked).
    let immr = mpc8349emds::immr();
    immr.message_unit().mask_inbound(inbound::IM0I | inbound::IM1I);
    irq::take_doorbells();
    immr.ipic().enable(vector::MESSAGE_UNIT);
    let second = u64::from(timebase_hz.max(1));
    loop {
        let uptime = uptime_s(start_tb, timebase_hz);
        if uptime != repr.uptime_s {
            repr.uptime_s = uptime;
            publish(&mut window, &repr);
        }
        if let Some(request) = take_request(&window, &mut last_seq) {
            match request.request {
                HostRequest::BootImage => {
                    repr.stage = BootStage::RecoveryVerifying;
                    repr.recovery_error = 0;
                    publish(&mut window, &repr);
                    match fetch(&window, &mut staging, request.recovery_len) {
                        Ok(len) => {
                            let image = &staging.bytes()[..len];
                            let checked = bpnet_image::verify(image, &[crate::key::trusted()], IMAGE_RAM)
                                .and_then(|v| bpnet_image::check_security_counter(&v, minimum).map(|()| v));
                            match checked {
                                Ok(verified) => {
                                    let info = BootInfo {
                                        source: Source::Recovery,
                                        slot: None,
                                        trial: false,
                                        image_version: verified.image_version,
                                    };
                                    start_image(&mut window, &verified, info, &mut repr)
                                }
                                Err(e) => {
                                    println!("recovery: image refused: {}", e);
                                    repr.recovery_error = e.code();
                                }
                            }
                        }
                        Err(code) => repr.recovery_error = code,
                    }
                    repr.stage = BootStage::RecoveryRefused;
                    publish(&mut window, &repr);
                }
                HostRequest::Reset => super::reset(),
                HostRequest::EnterRecovery | HostRequest::None => {}
            }
        }
        // Sleep until the host rings or the next second.
        let ticks = second - e300::timebase::read().wrapping_sub(start_tb) % second;
        e300::timebase::arm_decrementer(u32::try_from(ticks).unwrap_or(u32::MAX));
        e300::msr::without_interrupts(|| {
            if !irq::doorbells_pending() {
                e300::wait_for_interrupt();
            }
        });
        irq::take_doorbells();
    }
}

/// Copy the host's declared image out of the recovery area into STAGING; its length, or the
/// `recovery_error` code. The length is checked before a byte is read.
fn fetch(window: &SharedWindow, staging: &mut Staging, declared: u32) -> Result<usize, u32> {
    let Some(len) = usize::try_from(declared).ok().filter(|&n| n != 0 && n <= shared::RECOVERY_LEN) else {
        println!("recovery: declared length {} refused (area {} bytes)", declared, shared::RECOVERY_LEN);
        return Err(RECOVERY_ERROR_LENGTH);
    };
    if !window.read(shared::RECOVERY_OFFSET, &mut staging.bytes_mut()[..len]) {
        return Err(RECOVERY_ERROR_LENGTH);
    }
    Ok(len)
}
