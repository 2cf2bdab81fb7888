//! The run loop: slices of instructions, the timers and devices between them, exceptions delivered to
//! the firmware, and the output they produce.

use super::*;

/// How often a two-instruction stub is resumed after a stop it did not ask for (each stop request ends
/// one run; the host side makes at most one per request it hands over).
const STUB_RESUMES: usize = 8;

impl Board {
    /// Set the instruction limit for later runs (`None`: no limit).
    pub fn set_max_instructions(&mut self, limit: Option<u64>) {
        self.max_instructions = limit;
    }

    /// End the next runs at the first block boundary at or after `count` instructions (or earlier), as
    /// [`Outcome::InstructionLimit`]: a host model's turn, which need not be exact, and so costs none of
    /// the translated-code flushing an exact limit ([`Board::set_max_instructions`]) needs.
    pub fn set_turn_end(&mut self, count: Option<u64>) {
        self.turn_end = count;
    }

    /// Whether [`Board::run`] returns [`Outcome::Idle`] when the firmware starts waiting for a timer or
    /// a device, before the wait passes, so whoever drives the board (a host model that is never the
    /// bottleneck) can act first. Each wait stops once: the next run lets it pass.
    pub fn set_stop_at_wait(&mut self, on: bool) {
        self.stop_at_wait = on;
    }

    /// Receive console output and log lines as they happen (between slices of a few milliseconds).
    pub fn set_output(&mut self, sink: impl FnMut(Output<'_>) + 'static) {
        self.output = Some(Box::new(sink));
    }

    /// Run until the firmware idles, halts, faults or reaches the instruction limit, or a live host side
    /// ends (reported as [`Outcome::Idle`] at the current PC; see [`Board::host_end`]). Can be called again
    /// after [`Outcome::InstructionLimit`] with a higher limit.
    pub fn run(&mut self) -> Outcome {
        if self.image.is_none() {
            return Outcome::Unmodelled {
                addr: 0,
                size: 0,
                write: false,
                pc: 0,
                what: "no firmware loaded".to_string(),
            };
        }
        let outcome = self.run_loop();
        self.pass_output();
        outcome
    }

    pub(super) fn run_loop(&mut self) -> Outcome {
        loop {
            if let Some(outcome) = self.timer_events() {
                return outcome;
            }
            if self.device_events() {
                continue;
            }
            let now = self.instructions();
            let pc = self.pc();
            let msr = self.msr();
            // The external interrupt outranks the decrementer.
            if self.uc.get_data().irq && msr & msr::EE != 0 {
                self.deliver(vector::EXTERNAL, pc, 0, None, false);
                continue;
            }
            if self.uc.get_data().tb.dec_pending && msr & msr::EE != 0 {
                self.uc.get_data_mut().tb.dec_pending = false;
                self.deliver(vector::DECREMENTER, pc, 0, None, false);
                continue;
            }
            if self.max_instructions.is_some_and(|l| now >= l) || self.turn_end.is_some_and(|l| now >= l) {
                return Outcome::InstructionLimit;
            }
            if machine::fetch_word(&self.uc, pc) == Some(ppc::BRANCH_TO_SELF) {
                let wake_up = self.wake_up_time(msr);
                // With a live host, a wait with interrupts on passes in real time.
                if self.live.is_some() && msr & msr::EE != 0 {
                    if let Some(outcome) = self.wait_live(now, wake_up) {
                        return outcome;
                    }
                    continue;
                }
                match wake_up {
                    // A driver that wants its turn before the wait: once per wait.
                    Some(at) if self.stop_at_wait && at > now && self.wait_stop != Some(now) => {
                        self.wait_stop = Some(now);
                        return Outcome::Idle { pc };
                    }
                    // Spinning in `b .` until the event: one instruction per cycle, so jump there directly.
                    Some(at) => {
                        let at =
                            [self.max_instructions, self.turn_end].into_iter().flatten().fold(at, u64::min).max(now);
                        self.skipped += at - now;
                        self.uc.get_data_mut().done = at;
                        continue;
                    }
                    None if msr & msr::EE != 0 => return Outcome::Idle { pc },
                    None => {
                        return Outcome::Halted {
                            pc,
                            last_exception: self.exceptions.last().copied(),
                            checkstop: false,
                        };
                    }
                }
            }

            let slice = self.slice;
            let turn_end = self.turn_end;
            let m = self.uc.get_data_mut();
            m.deadline = [
                Some(now + slice),
                turn_end,
                m.tb.dec_expiry(),
                m.immr.watchdog.expiry(),
                m.immr.next_event(),
                m.flash.cut_time(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX);
            m.limit = self.max_instructions;
            m.limit_reached = false;
            let result = self.uc.emu_start(u64::from(pc), NEVER, 0, 0);
            self.settle();
            self.pass_output();
            if let Some(outcome) = self.after_slice(result) {
                return outcome;
            }
            if let Some(outcome) = self.live_checks() {
                return outcome;
            }
            let m = self.uc.get_data_mut();
            if m.limit_reached && m.stop.is_none() {
                if let Some(outcome) = self.final_approach() {
                    return outcome;
                }
            }
        }
    }

    /// Run exactly up to the instruction limit with a counted run (only for the last partial block, so
    /// the cost of counting every instruction is paid once).
    pub(super) fn final_approach(&mut self) -> Option<Outcome> {
        let limit = self.max_instructions?;
        let remaining = limit.saturating_sub(self.instructions());
        if remaining == 0 {
            return None;
        }
        let pc = self.pc();
        let m = self.uc.get_data_mut();
        m.final_approach = true;
        m.deadline = u64::MAX;
        // Blocks translated without Unicorn's per-instruction counter would ignore the count.
        let _ = self.uc.ctl_flush_tb();
        let result = self.uc.emu_start(u64::from(pc), NEVER, 0, remaining as usize);
        self.uc.get_data_mut().final_approach = false;
        self.settle();
        self.pass_output();
        self.after_slice(result)
    }

    /// Close the block the slice ended in (see [`machine`] for the counting rules).
    pub(super) fn settle(&mut self) {
        let pc = self.pc();
        self.uc.get_data_mut().settle_at(pc, false);
    }

    /// Act on why the slice ended.
    pub(super) fn after_slice(&mut self, result: Result<(), uc_error>) -> Option<Outcome> {
        let stop = self.uc.get_data_mut().stop.take();
        match stop {
            Some(Stop::Fault(outcome)) => Some(outcome),
            Some(Stop::Exception { intno, pc }) => self.cpu_exception(intno, pc),
            Some(Stop::Reset(cause)) => {
                self.board_reset(cause);
                None
            }
            Some(Stop::Interrupt | Stop::SelfLoop) => None,
            None => result.err().map(|e| {
                let pc = self.pc();
                Outcome::Unmodelled { addr: pc, size: 0, write: false, pc, what: format!("Unicorn stopped with {e:?}") }
            }),
        }
    }

    /// Decrementer and watchdog events due at the current instruction count.
    pub(super) fn timer_events(&mut self) -> Option<Outcome> {
        let now = self.instructions();
        let m = self.uc.get_data_mut();
        if m.tb.dec_expiry().is_some_and(|at| at <= now) {
            m.tb.dec_expired(now);
        }
        if m.immr.watchdog.expiry().is_some_and(|at| at <= now) {
            if m.immr.watchdog.resets_on_expiry() {
                self.board_reset(RSR_SWRS);
                return None;
            }
            m.immr.watchdog.reload(now);
            let (pc, msr) = (self.pc(), self.msr());
            if msr & msr::ME == 0 {
                return Some(Outcome::Halted { pc, last_exception: self.exceptions.last().copied(), checkstop: true });
            }
            self.deliver(vector::MACHINE_CHECK, pc, 0, None, true);
        }
        None
    }

    /// Device events due now: a power cut (`true`: the board restarted), DMA completions, the end of a
    /// flash operation, the PCI map following the LAWs, translated code over RAM that DMA wrote dropped, and
    /// the interrupt line.
    pub(super) fn device_events(&mut self) -> bool {
        let now = self.instructions();
        let m = self.uc.get_data_mut();
        if m.flash.cut_time().is_some_and(|t| t <= now) {
            self.power_cut();
            return true;
        }
        m.immr.advance(now);
        m.flash.advance(now);
        if m.pci_remap {
            machine::sync_pci_mappings(&mut self.uc);
        }
        if self.uc.get_data().bats_changed {
            self.watch_overlapping_bats();
        }
        let m = self.uc.get_data_mut();
        let dirty = m.immr.dma.take_dirty();
        m.irq = m.immr.external_interrupt();
        for (start, len) in dirty {
            let _ = self.uc.ctl_remove_cache(start, start + len);
        }
        false
    }

    /// Hook the address ranges two valid BATs of one kind cover, so an access there with translation on
    /// stops the run (`machine::on_overlapping_data`, `machine::on_overlapping_code`). Called whenever the
    /// BATs changed; with sound BATs no hook is left (they would slow every access down).
    pub(super) fn watch_overlapping_bats(&mut self) {
        for hook in self.overlap_hooks.drain(..) {
            let _ = self.uc.remove_hook(hook);
        }
        let m = self.uc.get_data_mut();
        m.bats_changed = false;
        let core = m.core;
        for (_, _, start, len) in ppc::bat_overlaps(&core.dbat) {
            let hook = self.uc.add_mem_hook(
                HookType::MEM_READ | HookType::MEM_WRITE,
                start,
                start + len - 1,
                |uc, kind, addr, size, _| {
                    machine::on_overlapping_data(uc, addr, size, kind == unicorn_engine::unicorn_const::MemType::WRITE);
                    true
                },
            );
            self.overlap_hooks.extend(hook.ok());
        }
        for (_, _, start, len) in ppc::bat_overlaps(&core.ibat) {
            let hook = self.uc.add_code_hook(start, start + len - 1, machine::on_overlapping_code);
            self.overlap_hooks.extend(hook.ok());
        }
        // Blocks translated before the hooks existed do not call them. And QEMU's BAT store flushes its
        // translation cache over the first 128 KiB of the old block only (helper_store_ibatu computes the
        // range from the new value's length), so a cleared BAT kept translating: flush it all, as the
        // hardware, which has no such cache of BAT hits, behaves.
        let _ = self.uc.ctl_flush_tb();
        let _ = self.uc.ctl_flush_tlb();
    }

    /// When the core, parked in `b .`, would next be woken or something would happen: the watchdog always
    /// (not maskable), the decrementer if interrupts are on and the firmware has programmed it, a DMA
    /// completion, the end of a flash operation, a power cut.
    pub(super) fn wake_up_time(&self, msr: u32) -> Option<u64> {
        let m = self.uc.get_data();
        let dec = (msr & msr::EE != 0 && m.tb.dec_armed).then(|| m.tb.dec_expiry()).flatten();
        [dec, m.immr.watchdog.expiry(), m.immr.next_event(), m.flash.busy_until(), m.flash.cut_time()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Deliver an exception the way the core would: SRR0/SRR1 (and DAR/DSISR) through an emulator stub,
    /// since Unicorn's API cannot write those SPRs; new MSR per the architecture; PC to the vector.
    pub(super) fn deliver(
        &mut self,
        offset: u32,
        srr0: u32,
        reason: u32,
        dar_dsisr: Option<(u32, u32)>,
        machine_check: bool,
    ) {
        let old_msr = self.msr();
        let srr1 = (old_msr & ppc::SRR1_MSR_MASK) | reason;
        let mut new_msr = old_msr & ppc::MSR_KEPT_ON_EXCEPTION;
        if machine_check {
            new_msr &= !msr::ME;
        }
        // Translation and problem state off first: the stubs are fetched physically and use mtspr.
        let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(new_msr));
        self.run_stub(machine::STUB_SET_SRR, srr0, srr1);
        if let Some((dar, dsisr)) = dar_dsisr {
            self.run_stub(machine::STUB_SET_DAR_DSISR, dar, dsisr);
        }
        let address = ppc::vector_address(old_msr, offset);
        let _ = self.uc.reg_write(RegisterPPC::PC, u64::from(address));
        let instructions = self.instructions();
        self.exceptions.push(Exception { vector: offset, address, srr0, srr1, instructions });
    }

    /// Run a two-instruction stub with r3 = `a`, r4 = `b`; returns r3, r4 after it. The firmware's r3/r4
    /// are preserved. Stub instructions are not counted.
    pub(super) fn run_stub(&mut self, entry: u32, a: u32, b: u32) -> (u32, u32) {
        let saved = (machine::read_gpr(&self.uc, 3), machine::read_gpr(&self.uc, 4));
        let _ = self.uc.reg_write(machine::gpr_id(3), u64::from(a));
        let _ = self.uc.reg_write(machine::gpr_id(4), u64::from(b));
        self.uc.get_data_mut().in_stub = true;
        // A live host's request ends the core's current run from another thread (CoreStopper), and
        // may end this one before both instructions ran: run on from where it stopped until the stub
        // is done, or the firmware would resume with half of what the stub sets (SRR1 or DSISR stale).
        let end = entry + machine::STUB_LEN;
        let mut pc = entry;
        for _ in 0..STUB_RESUMES {
            let _ = self.uc.emu_start(u64::from(pc), u64::from(end), 0, 0);
            pc = machine::read_pc(&self.uc);
            if pc == end {
                break;
            }
        }
        self.uc.get_data_mut().in_stub = false;
        let out = (machine::read_gpr(&self.uc, 3), machine::read_gpr(&self.uc, 4));
        let _ = self.uc.reg_write(machine::gpr_id(3), u64::from(saved.0));
        let _ = self.uc.reg_write(machine::gpr_id(4), u64::from(saved.1));
        out
    }

    /// A CPU exception Unicorn reported (its interrupt numbering) at the instruction `pc`.
    pub(super) fn cpu_exception(&mut self, intno: u32, pc: u32) -> Option<Outcome> {
        let word = machine::fetch_word(&self.uc, pc).unwrap_or(0);
        // A handler that faults on its very first instruction (typically: no vector installed, so it
        // reads as an illegal instruction) would loop forever taking the same exception.
        if let Some(last) = self.exceptions.last().copied() {
            if pc == last.address && self.instructions() == last.instructions + 1 {
                return Some(Outcome::Halted { pc, last_exception: Some(last), checkstop: false });
            }
        }
        match intno {
            // Program: trap or privileged instruction (Unicorn uses one number for both).
            6 => {
                let reason = if ppc::is_trap(word) { srr1::TRAP } else { srr1::PRIVILEGED };
                self.deliver(vector::PROGRAM, pc, reason, None, false);
            }
            // "Hypervisor emulation assistance": what this QEMU raises for an illegal instruction.
            96 => self.deliver(vector::PROGRAM, pc, srr1::ILLEGAL, None, false),
            8 => self.deliver(vector::SYSTEM_CALL, pc + 4, 0, None, false),
            7 => self.deliver(vector::FP_UNAVAILABLE, pc, 0, None, false),
            // DSI: QEMU already set DAR and DSISR when it detected the fault.
            2 => self.deliver(vector::DSI, pc, 0, None, false),
            3 => self.deliver(vector::ISI, pc, srr1::ISI_PROTECTION, None, false),
            5 => {
                // QEMU raises alignment exceptions without DAR; form DAR and DSISR from the instruction.
                let dar = ppc::decode_mem_access(word).map_or(0, |a| {
                    let base = a.ra.map_or(0, |r| machine::read_gpr(&self.uc, r));
                    let index = a.rb.map_or(0, |r| machine::read_gpr(&self.uc, r));
                    base.wrapping_add(index).wrapping_add(a.displacement as u32)
                });
                self.deliver(vector::ALIGNMENT, pc, 0, Some((dar, ppc::alignment_dsisr(word))), false);
            }
            // The 603 family's software table-search exceptions: translation is on and no BAT maps the
            // address. The e300 takes them at 0x1000 (instruction fetch), 0x1100 (data load) and 0x1200
            // (data store) with IMISS/DMISS holding the address (QEMU set them when it raised the miss)
            // and MSR[TGPR] set; SRR0 is the instruction that missed or whose fetch missed.
            machine::INTNO_ITLB_MISS | machine::INTNO_DTLB_LOAD_MISS | machine::INTNO_DTLB_STORE_MISS => {
                let msr = self.msr();
                let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(msr & !(msr::IR | msr::DR | msr::PR)));
                let (_, imiss) = self.run_stub(machine::STUB_GET_MISS, 0, 0);
                let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(msr));
                let (offset, srr0) = match intno {
                    machine::INTNO_ITLB_MISS => (vector::ITLB_MISS, imiss),
                    machine::INTNO_DTLB_LOAD_MISS => (vector::DTLB_LOAD_MISS, pc),
                    _ => (vector::DTLB_STORE_MISS, pc),
                };
                self.deliver(offset, srr0, 0, None, false);
                let new_msr = self.msr() | msr::TGPR;
                let _ = self.uc.reg_write(RegisterPPC::MSR, u64::from(new_msr));
            }
            _ => {
                return Some(Outcome::Unmodelled {
                    addr: pc,
                    size: 4,
                    write: false,
                    pc,
                    what: format!("CPU exception {intno} (Unicorn numbering) is not modelled"),
                });
            }
        }
        None
    }

    /// Hand new UART output and log lines to the accessors and the live sink.
    pub(super) fn pass_output(&mut self) {
        let m = self.uc.get_data_mut();
        let console = std::mem::take(&mut m.immr.uarts[0].output);
        let uart1 = std::mem::take(&mut m.immr.uarts[1].output);
        self.uart1.extend_from_slice(&uart1);
        let lines = match &mut self.log {
            Some(log) => {
                let ram = self.mem.ram;
                log.poll(|addr, len| {
                    let mut buf = vec![0u8; len];
                    ram.read(u64::from(addr), &mut buf).then_some(buf)
                })
            }
            None => Vec::new(),
        };
        if let Some(sink) = &mut self.output {
            if !console.is_empty() {
                sink(Output::Console(&console));
            }
            for line in &lines {
                sink(Output::Log(line));
            }
        }
        self.console.extend_from_slice(&console);
        self.log_lines.extend(lines);
    }
}
