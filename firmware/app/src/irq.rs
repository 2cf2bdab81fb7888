//! External interrupts: the IPIC names the source, the source's own status says what happened.
//! Handlers only record and quiet the source; the main loop does the work. The doorbells are taken by
//! the data path and the self-test, the DMA events and the count by the self-test only (the data
//! path only sleeps on the DMA interrupt).

use core::sync::atomic::{AtomicU32, Ordering};

use mpc8349::ipic::vector;
use mpc8349::msgunit::inbound;

/// Doorbell bits the host rang since the main loop last took them.
static DOORBELLS: AtomicU32 = AtomicU32::new(0);
/// DMA channel status bits (channel n in byte 3 − n, as DGSR has them) seen by the handler.
static DMA_EVENTS: AtomicU32 = AtomicU32::new(0);
/// Interrupts taken, for counters.
static TAKEN: AtomicU32 = AtomicU32::new(0);

/// Take (and clear) the doorbell bits rung so far.
pub fn take_doorbells() -> u32 {
    e300::msr::without_interrupts(|| DOORBELLS.swap(0, Ordering::Relaxed))
}

/// Whether a doorbell was rung since the bits were last taken. Call with interrupts off before
/// sleeping, so a doorbell cannot arrive between the check and the sleep.
pub fn doorbells_pending() -> bool {
    DOORBELLS.load(Ordering::Relaxed) != 0
}

pub fn take_dma_events() -> u32 {
    e300::msr::without_interrupts(|| DMA_EVENTS.swap(0, Ordering::Relaxed))
}

pub fn taken() -> u32 {
    TAKEN.load(Ordering::Relaxed)
}

#[no_mangle]
fn __e300_external() {
    let immr = mpc8349emds::immr();
    let ipic = immr.ipic();
    TAKEN.store(TAKEN.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    match ipic.current() {
        Some(vector::MESSAGE_UNIT) => {
            let mu = immr.message_unit();
            let status = mu.inbound_status();
            if status & inbound::IDI != 0 {
                let bells = mu.doorbell();
                mu.ack_doorbell(bells);
                DOORBELLS.store(DOORBELLS.load(Ordering::Relaxed) | bells, Ordering::Relaxed);
            }
            mu.clear_inbound(status & (inbound::IM0I | inbound::IM1I));
        }
        Some(vector::DMA) => {
            // Record what the channels say and mask the source; the status itself stays for the
            // channel's owner, who reads it (a transfer error included) when it finishes the
            // transfer, and who enables the vector again when it next wants to be woken.
            let mut events = 0;
            for n in 0..4 {
                events |= (immr.dma(n).status() & 0xFF) << (24 - 8 * n);
            }
            ipic.disable(vector::DMA);
            DMA_EVENTS.store(DMA_EVENTS.load(Ordering::Relaxed) | events, Ordering::Relaxed);
        }
        Some(other) => {
            // A source nobody enabled on purpose: silence it rather than loop on it.
            ipic.disable(other);
            defmt::error!("unexpected interrupt vector {=u8}, masked", other);
        }
        None => {}
    }
}
