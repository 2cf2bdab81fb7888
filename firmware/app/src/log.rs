//! The defmt global logger: rzCOBS frames into the log ring in host-visible shared memory, where
//! the host (`bpctl logs`, the board emulator) decodes them with the ELF's defmt table.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, Ordering};

use bpnet_contract::logring::{LogRing, LogWriter};
use mpc8349emds::SharedWindow;

struct State {
    ring: Option<LogWriter<&'static mut [u8]>>,
    head: u32,
    encoder: defmt::Encoder,
    taken: bool,
    restore: critical_section::RestoreState,
}

static mut STATE: State = State {
    ring: None,
    head: 0,
    encoder: defmt::Encoder::new(),
    taken: false,
    restore: critical_section::RestoreState::invalid(),
};

static TIMEBASE_HZ: AtomicU32 = AtomicU32::new(0);

/// Where the ring is and how big, for the banner.
pub struct Info {
    pub addr: usize,
    pub capacity: u32,
    pub generation: u32,
}

/// Set up the ring (its previous generation + 1, so readers notice the reboot) and the timestamp.
pub fn init(timebase_hz: u32) -> Info {
    TIMEBASE_HZ.store(timebase_hz, Ordering::Relaxed);
    let Some(bytes) = SharedWindow::take().log_ring() else { panic!("log ring set up twice") };
    let addr = bytes.as_ptr() as usize;
    let generation = LogRing::new_checked(&*bytes).map(|r| r.generation().wrapping_add(1)).unwrap_or(1);
    let ring = LogRing::init(bytes, generation).expect("log ring larger than its header");
    let capacity = ring.capacity();
    critical_section::with(|_| {
        // SAFETY: inside a critical section, and the logger is not taken (no log call has run yet).
        let state = unsafe { &mut *addr_of_mut!(STATE) };
        state.ring = Some(ring);
        state.head = 0;
    });
    Info { addr, capacity, generation }
}

defmt::timestamp!("{=u64:us}", {
    let hz = u64::from(TIMEBASE_HZ.load(Ordering::Relaxed)).max(1_000_000);
    e300::timebase::read() / (hz / 1_000_000)
});

#[defmt::global_logger]
struct Logger;

fn write_bytes(state: &mut State, bytes: &[u8]) {
    if let Some(ring) = state.ring.as_mut() {
        state.head = ring.write(state.head, bytes);
    }
}

// SAFETY: acquire/release bracket every frame inside a critical section; `taken` refuses nesting.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        // SAFETY: paired with the release in `Logger::release`.
        let restore = unsafe { critical_section::acquire() };
        // SAFETY: inside the critical section just taken; nothing else touches STATE meanwhile.
        let state = unsafe { &mut *addr_of_mut!(STATE) };
        if state.taken {
            panic!("defmt logger taken twice");
        }
        state.taken = true;
        state.restore = restore;
        let mut encoder = core::mem::replace(&mut state.encoder, defmt::Encoder::new());
        encoder.start_frame(|b| write_bytes(state, b));
        state.encoder = encoder;
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: defmt calls release only after acquire, inside its critical section.
        let state = unsafe { &mut *addr_of_mut!(STATE) };
        let mut encoder = core::mem::replace(&mut state.encoder, defmt::Encoder::new());
        encoder.end_frame(|b| write_bytes(state, b));
        state.encoder = encoder;
        // The frame's bytes reach memory before the head that publishes them; pairs with the
        // reader's load of `head` before it copies the data (host: `LogReader::poll`).
        e300::barrier::sync();
        if let Some(ring) = state.ring.as_mut() {
            ring.publish(state.head);
        }
        state.taken = false;
        let restore = state.restore;
        // SAFETY: restores exactly what `acquire` saved.
        unsafe { critical_section::release(restore) };
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: between acquire and release, inside the critical section.
        let state = unsafe { &mut *addr_of_mut!(STATE) };
        let mut encoder = core::mem::replace(&mut state.encoder, defmt::Encoder::new());
        encoder.write(bytes, |b| write_bytes(state, b));
        state.encoder = encoder;
    }
}
