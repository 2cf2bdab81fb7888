//! Virtual time: the core executes one instruction per cycle, so the exact instruction count *is* the
//! clock. Everything else (timebase, decrementer, watchdog) is derived from it, which makes every run
//! deterministic and independent of the host's speed.
//!
//! Clocks of the MPC8349EMDS as the agent runs it (docs/REGISTERS.md, "Board"): input clock 66.666… MHz
//! (200/3 MHz; "66 666 666 Hz" is its truncation), CSB = 4 × input = 266.666… MHz, core = 2 × CSB =
//! 533.333… MHz, timebase = CSB / 4. With these exact ratios one instruction takes 1.875 ns = 1875 ps.

/// Picoseconds per core cycle (= per instruction) at 1600/3 MHz.
pub const PS_PER_INSTRUCTION: u64 = 1875;
/// Core frequency in Hz, for reports.
pub const CORE_HZ: f64 = 1600.0e6 / 3.0;
/// Core cycles per timebase tick: core = 2 × CSB, timebase = CSB / 4.
pub const INSTRUCTIONS_PER_TB_TICK: u64 = 8;
/// Core cycles per CSB cycle.
pub const INSTRUCTIONS_PER_CSB_CYCLE: u64 = 2;

/// Timebase ticks happen at every 8th core cycle counted from power-on (the CSB/4 clock is free-running),
/// so a tick count is a pure function of the instruction count.
pub const fn tb_ticks(instructions: u64) -> u64 {
    instructions / INSTRUCTIONS_PER_TB_TICK
}

/// The core's timebase and decrementer. Unicorn has neither (it reads plain SPR storage that nothing
/// updates), so the emulator keeps them here and performs `mftb`/`mttb*`/`mfdec`/`mtdec` itself.
///
/// Both count only while SPCR[TBEN] is set. The state is an anchor (values at a tick) plus the rule
/// "TB += 1, DEC -= 1 per tick", so reading them costs nothing while the core runs.
#[derive(Debug, Clone)]
pub struct TimeBase {
    enabled: bool,
    anchor_tick: u64,
    tb_at_anchor: u64,
    dec_at_anchor: u32,
    /// The decrementer is a wake-up source for idle detection: the firmware wrote it since the last reset
    /// with less than [`DEC_PARKED`] (the power-on value counts down for 64 s before it would fire, and
    /// firmware parks the decrementer by loading 0x7FFF_FFFF, about 32 s).
    pub dec_armed: bool,
    /// A decrementer exception is waiting for MSR[EE].
    pub dec_pending: bool,
}

/// A decrementer loaded with this many ticks or more (2^30, 16 s) is parked, not a timer being waited for.
pub const DEC_PARKED: u32 = 0x4000_0000;

/// DEC at hand-over: all ones, so the first 0 → -1 transition (the exception) is 2^32 ticks away.
pub const DEC_AT_GO: u32 = 0xFFFF_FFFF;

impl TimeBase {
    pub fn new(enabled: bool, now: u64) -> TimeBase {
        TimeBase {
            enabled,
            anchor_tick: tb_ticks(now),
            tb_at_anchor: 0,
            dec_at_anchor: DEC_AT_GO,
            dec_armed: false,
            dec_pending: false,
        }
    }

    fn elapsed(&self, now: u64) -> u64 {
        if self.enabled {
            tb_ticks(now).saturating_sub(self.anchor_tick)
        } else {
            0
        }
    }

    pub fn tb(&self, now: u64) -> u64 {
        self.tb_at_anchor.wrapping_add(self.elapsed(now))
    }

    pub fn dec(&self, now: u64) -> u32 {
        // DEC is 32 bits: truncating the elapsed tick count is the wrap-around.
        self.dec_at_anchor.wrapping_sub(self.elapsed(now) as u32)
    }

    fn rebase(&mut self, now: u64) {
        self.tb_at_anchor = self.tb(now);
        self.dec_at_anchor = self.dec(now);
        self.anchor_tick = tb_ticks(now);
    }

    pub fn set_enabled(&mut self, now: u64, enabled: bool) {
        self.rebase(now);
        self.enabled = enabled;
    }

    pub fn write_tbl(&mut self, now: u64, value: u32) {
        self.rebase(now);
        self.tb_at_anchor = (self.tb_at_anchor & !0xFFFF_FFFF) | u64::from(value);
    }

    pub fn write_tbu(&mut self, now: u64, value: u32) {
        self.rebase(now);
        self.tb_at_anchor = (self.tb_at_anchor & 0xFFFF_FFFF) | (u64::from(value) << 32);
    }

    /// `mtdec`. As the PowerPC architecture says, software changing DEC bit 0 from 0 to 1 also signals the
    /// exception.
    pub fn write_dec(&mut self, now: u64, value: u32) {
        let old = self.dec(now);
        self.rebase(now);
        self.dec_at_anchor = value;
        self.dec_armed = value < DEC_PARKED;
        if old & 0x8000_0000 == 0 && value & 0x8000_0000 != 0 {
            self.dec_pending = true;
        }
    }

    /// Instruction count at which DEC next goes from 0 to -1 (bit 0 from 0 to 1), if it is counting.
    /// From a value v that takes v + 1 ticks, whatever the sign of v.
    pub fn dec_expiry(&self) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let tick = self.anchor_tick + u64::from(self.dec_at_anchor) + 1;
        Some(tick * INSTRUCTIONS_PER_TB_TICK)
    }

    /// Called once the core has passed [`TimeBase::dec_expiry`]: latch the exception and re-anchor so the
    /// next expiry is the following wrap.
    pub fn dec_expired(&mut self, now: u64) {
        self.dec_pending = true;
        self.rebase(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timebase_ticks_every_eight_instructions_while_enabled() {
        let mut tb = TimeBase::new(true, 0);
        assert_eq!(tb.tb(7), 0);
        assert_eq!(tb.tb(8), 1);
        assert_eq!(tb.tb(800), 100);
        tb.set_enabled(800, false);
        assert_eq!(tb.tb(10_000), 100);
        tb.set_enabled(10_000, true);
        assert_eq!(tb.tb(10_080), 110);
        tb.write_tbu(10_080, 1);
        assert_eq!(tb.tb(10_080), (1 << 32) | 110);
        tb.write_tbl(10_080, 5);
        assert_eq!(tb.tb(10_088), (1 << 32) | 6);
    }

    #[test]
    fn decrementer_expires_after_value_plus_one_ticks() {
        let mut tb = TimeBase::new(true, 0);
        tb.write_dec(0, 10);
        assert_eq!(tb.dec(8 * 4), 6);
        assert_eq!(tb.dec_expiry(), Some(8 * 11));
        assert_eq!(tb.dec(8 * 11), 0xFFFF_FFFF);
        tb.dec_expired(8 * 11);
        assert!(tb.dec_pending);
        assert_eq!(tb.dec_expiry(), Some(8 * 11 + 8 * (1 << 32)));
        // Writing a negative value over a positive one signals the exception at once.
        let mut tb = TimeBase::new(true, 0);
        tb.write_dec(0, 100);
        tb.write_dec(8, 0x8000_0000);
        assert!(tb.dec_pending);
        // Stopped timebase: no expiry.
        tb.set_enabled(16, false);
        assert_eq!(tb.dec_expiry(), None);
    }
}
