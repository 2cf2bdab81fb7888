//! A host on the other side of the bus that runs in real time (the ivshmem server mode): attaching it,
//! and what the run loop does for it while the firmware waits.

use super::*;

impl Board {
    /// Give the shared region (`len` bytes of RAM at `addr`) a memory file of its own, mapped shared in
    /// place of the RAM file's pages, and return it: handed to another process (QEMU's ivshmem device),
    /// it shows exactly what the firmware sees there. Once a live host is attached, inbound window 0 must
    /// translate onto exactly this region (checked between slices; a mismatch stops the run).
    pub fn share_region(&mut self, addr: u32, len: u32) -> Result<File, SetupError> {
        if self.shared.is_some() {
            return Err(SetupError::SharedRegion("already shared".to_string()));
        }
        if !len.is_power_of_two() {
            return Err(SetupError::SharedRegion(format!("{len:#x} bytes is not a power of two (a BAR's size)")));
        }
        let file = overlay_memfd(&mut self.ram.map, u64::from(addr), u64::from(len), "bpnet-shared-region")
            .map_err(|e| SetupError::SharedRegion(format!("{len:#x} bytes at {addr:#x}: {e}")))?;
        // Unicorn reads and writes RAM through the same addresses; translated code there (none is
        // expected in the shared region) must not outlive the pages it came from.
        let _ = self.uc.ctl_remove_cache(u64::from(addr), u64::from(addr) + u64::from(len));
        self.shared = Some((addr, len));
        self.shared_files.push(file.try_clone().map_err(|e| SetupError::SharedRegion(e.to_string()))?);
        Ok(file)
    }

    /// Forward the firmware's outbound doorbells to `sink` as they are rung, acknowledging them (the host
    /// never reads ODR then); `None` holds them in ODR for [`Board::host_read_odr`] again. Kept across
    /// resets and firmware loads.
    pub fn connect_outbound_doorbells(&mut self, sink: Option<OutboundDoorbells>) {
        self.outbound = sink.clone();
        self.uc.get_data_mut().immr.mu.set_outbound_doorbells(sink);
    }

    /// Attach a live host: from now on waits in `b .` with interrupts on pass in real time on `link`,
    /// slices are shorter so the host is heard while the firmware is busy, and [`Board::run`] also
    /// returns (as [`Outcome::Idle`]) when the host side ends ([`Board::host_end`]).
    pub fn attach_live_host(&mut self, link: Box<dyn HostLink>) {
        self.live = Some(LiveHost { link, end: None, resets: 0 });
        self.slice = realtime::LIVE_SLICE;
    }

    /// Ends the core's current run from another thread (a live host's request arrived).
    pub fn core_stopper(&self) -> CoreStopper {
        CoreStopper::new(self.uc.get_data().host_request.clone())
    }

    /// Let the live host serve what it asked of the bus side (configuration and BAR cycles).
    pub(super) fn serve_host(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        live.link.serve(self);
        self.live = Some(live);
    }

    /// Why the live host side ended, if it did.
    pub fn host_end(&self) -> Option<&str> {
        self.live.as_ref().and_then(|l| l.end.as_deref())
    }

    /// Agent resets the live host requested.
    pub fn host_resets(&self) -> u32 {
        self.live.as_ref().map_or(0, |l| l.resets)
    }

    /// The firmware waits in `b .` with interrupts on and a live host is attached: block on the host for at
    /// most the time to `wake_up` (the next scheduled event, or the instruction limit), then advance
    /// virtual time by what was waited, capped there ([`crate::realtime`]).
    pub(super) fn wait_live(&mut self, now: u64, wake_up: Option<u64>) -> Option<Outcome> {
        if let Some(outcome) = self.check_shared_window() {
            return Some(outcome);
        }
        let at = match (wake_up, self.max_instructions) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        }
        .map(|a| a.max(now));
        let timeout = at.map(|a| realtime::duration_of(a - now));
        let short = timeout.is_some_and(|t| t < realtime::MIN_REAL_WAIT);
        let live = self.live.as_mut()?;
        let started = Instant::now();
        let wake = if short { live.link.poll() } else { live.link.wait(timeout) };
        let waited = realtime::instructions_in(started.elapsed());
        let advance = match at {
            Some(a) if short => a - now,
            Some(a) => waited.min(a - now),
            None => waited,
        };
        self.skipped += advance;
        self.uc.get_data_mut().done = now + advance;
        let outcome = self.take_wake(wake);
        self.serve_host();
        outcome
    }

    /// Between slices with a live host: what it did meanwhile, and the shared region's window.
    pub(super) fn live_checks(&mut self) -> Option<Outcome> {
        let wake = self.live.as_mut()?.link.poll();
        if let Some(outcome) = self.check_shared_window() {
            return Some(outcome);
        }
        let outcome = self.take_wake(wake);
        self.serve_host();
        outcome
    }

    /// Act on what the live host did: a reset of the agent first (the doorbells that came with it are for
    /// the agent after it), then the doorbells; the end of the host side ends the run.
    pub(super) fn take_wake(&mut self, wake: Wake) -> Option<Outcome> {
        if wake.reset {
            if let Some(live) = &mut self.live {
                live.resets += 1;
            }
            self.board_reset(RSR_HRS);
        }
        if wake.doorbells != 0 {
            self.host_ring_doorbell(wake.doorbells);
        }
        if let Some(end) = wake.end {
            if let Some(live) = &mut self.live {
                live.end = Some(end);
            }
            return Some(Outcome::Idle { pc: self.pc() });
        }
        None
    }

    /// The shared region is what the host sees as the agent's BAR; inbound window 0 must translate onto
    /// exactly it, or the firmware's BAR and the host's would differ without anyone noticing.
    pub(super) fn check_shared_window(&self) -> Option<Outcome> {
        let (base, len) = self.shared?;
        let (local, size) = self.uc.get_data().immr.pci.inbound_target(0)?;
        if (local, size) == (u64::from(base), u64::from(len)) {
            return None;
        }
        let pc = self.pc();
        Some(Outcome::Unmodelled {
            addr: IMMR_BASE + INBOUND_OFFSETS[0].3,
            size: 4,
            write: true,
            pc,
            what: format!(
                "inbound window 0 translates onto agent RAM {local:#x}..{:#x}, but the host's view of the BAR \
                 (the ivshmem shared memory) is the shared region {base:#x}..{:#x}",
                local + size,
                u64::from(base) + u64::from(len)
            ),
        })
    }
}
