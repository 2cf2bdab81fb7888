//! Real-time pacing for a board that has a live host on the other side of the bus (the ivshmem server mode).
//!
//! Without a live host the board skips every wait in virtual time (deterministic runs). With one, the host's
//! clock is the wall clock and the agent's virtual clock must neither run ahead of it while the firmware
//! waits nor freeze: when the firmware parks in `b .` with interrupts on, the board blocks on the host link
//! for at most the time to the next scheduled event (1 virtual ns = 1 wall ns) and advances virtual time by
//! what was actually waited, capped at that event. While the firmware is busy the core runs as fast as the
//! machine allows, so virtual time then runs slower than the wall clock, never faster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::time::PS_PER_INSTRUCTION;
use crate::Board;

/// Shorter waits are not worth a system call and a wake-up (tens of microseconds of scheduler latency,
/// more than the wait): the link is checked without blocking and the wait is skipped in virtual time.
pub const MIN_REAL_WAIT: Duration = Duration::from_micros(50);

/// Instructions per slice while a live host is attached: the link is checked between slices, so this
/// bounds how long a doorbell waits while the firmware is busy (about a millisecond of host time).
pub const LIVE_SLICE: u64 = 500_000;

/// Virtual duration of `instructions` core cycles.
pub fn duration_of(instructions: u64) -> Duration {
    Duration::from_nanos(instructions.saturating_mul(PS_PER_INSTRUCTION) / 1000)
}

/// Core cycles in a wall-clock duration (rounded down).
pub fn instructions_in(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().saturating_mul(1000) / u128::from(PS_PER_INSTRUCTION)).unwrap_or(u64::MAX)
}

/// What the host side did, collected by [`HostLink::poll`] or [`HostLink::wait`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wake {
    /// Inbound doorbell (IDR) bits the host rang.
    pub doorbells: u32,
    /// The agent's reset was requested (the chassis asserting HRESET).
    pub reset: bool,
    /// The host side is gone (disconnected, or the emulator was told to stop): why.
    pub end: Option<String>,
}

impl Wake {
    pub fn is_empty(&self) -> bool {
        self.doorbells == 0 && !self.reset && self.end.is_none()
    }
}

/// A live host the board waits for in real time.
pub trait HostLink {
    /// What happened since the last call, without blocking.
    fn poll(&mut self) -> Wake;
    /// Block until something happens or `timeout` passes (`None`: no timeout).
    fn wait(&mut self, timeout: Option<Duration>) -> Wake;
    /// Serve what the host asked of the board's bus side since the last call (called after every
    /// `poll` and `wait`). A link whose host only rings doorbells has nothing to serve.
    fn serve(&mut self, _board: &mut Board) {}
}

/// Ends the core's current run from another thread, so that a request from a live host is served
/// between runs without waiting for the slice to end. It raises a flag the block hook takes at the next
/// block boundary ([`crate::machine::on_block`]) rather than calling `uc_emu_stop` from this thread:
/// that could land inside an emulator stub or anywhere in a block and left the firmware's state
/// corrupted under BAR traffic.
#[derive(Clone)]
pub struct CoreStopper(Arc<AtomicBool>);

impl CoreStopper {
    /// A stopper raising `flag`, the one the board's block hook reads (`Machine::host_request`).
    pub(crate) fn new(flag: Arc<AtomicBool>) -> CoreStopper {
        CoreStopper(flag)
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_use_the_core_clock() {
        // 533.33 MHz: 1.875 ns per instruction.
        assert_eq!(duration_of(1000), Duration::from_nanos(1875));
        assert_eq!(instructions_in(Duration::from_nanos(1875)), 1000);
        assert_eq!(instructions_in(Duration::from_millis(1)), 533_333);
        // Whole nanoseconds every 8 instructions (15 ns): those round-trip exactly, others lose the fraction.
        assert_eq!(instructions_in(duration_of(123_456_784)), 123_456_784);
        assert_eq!(instructions_in(duration_of(123_456_789)), 123_456_788);
        assert_eq!(duration_of(u64::MAX), Duration::from_nanos(u64::MAX / 1000));
        assert!(duration_of(LIVE_SLICE) < Duration::from_millis(1));
    }
}
