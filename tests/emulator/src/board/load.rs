//! Loading a program (an ELF, or the boot stage with a firmware image in flash), the hand-over to it, and
//! the resets and power cuts that start it again.

use super::*;

impl Board {
    /// Power the board on with this firmware, as U-Boot's `go` would hand over to it: segments loaded
    /// (the rest of each segment zeroed), PC = entry, MSR = ME|RI, r1 = [`INITIAL_SP`], r3 = 1 (argc),
    /// r4 = 0. Loading again powers the board on afresh.
    pub fn load_elf(&mut self, elf: &[u8]) -> Result<LoadInfo, LoadError> {
        self.load_program(elf, None)
    }

    /// Power the board on with a boot stage (`bpnet-boot.elf`), as U-Boot's `bootcmd` would start it
    /// from flash: the boot stage is what is loaded and started at power-on and at every reset; it starts
    /// the firmware it finds in flash (or receives through the BAR) itself. `firmware` is the ELF of the
    /// image it will start (the payload of `bpnet-firmware.img`): its defmt table decodes the log ring,
    /// and its timebase instructions are hooked at the addresses the payload is copied to (a payload
    /// that differs from this ELF runs with unhooked timebase instructions there).
    pub fn load_boot(&mut self, boot: &[u8], firmware: Option<&[u8]>) -> Result<LoadInfo, LoadError> {
        self.load_program(boot, firmware)
    }

    /// Write bytes into the flash file as a programmer would before the board runs (provisioning a slot
    /// with an image): no command cycles, no timing. `Err` if the range leaves the 32 MiB.
    pub fn provision_flash(&mut self, offset: u32, data: &[u8]) -> Result<(), String> {
        let end = u64::from(offset) + data.len() as u64;
        if end > u64::from(FLASH_SIZE) {
            return Err(format!(
                "{} bytes at flash offset {offset:#x} run past the {FLASH_SIZE:#x}-byte flash",
                data.len()
            ));
        }
        self.flash.map[offset as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    pub(super) fn load_program(&mut self, elf: &[u8], firmware: Option<&[u8]>) -> Result<LoadInfo, LoadError> {
        let image = elf::parse(elf)?;
        let extra = firmware.map(elf::parse).transpose()?;
        let mut notes = Vec::new();

        // The defmt table and the ring symbol are both needed for logging; with a boot stage, the
        // firmware's (the boot stage logs to the console only).
        self.log = None;
        let (table_elf, ring) = match (&extra, firmware) {
            (Some(fw), Some(bytes)) => (bytes, fw.symbol(LOG_RING_SYMBOL)),
            _ => (elf, image.symbol(LOG_RING_SYMBOL)),
        };
        match (defmt_decoder::Table::parse(table_elf), ring) {
            (Ok(Some(table)), Some(ring)) => self.log = Some(LogDecoder::new(table, ring)),
            (Ok(Some(_)), None) => notes.push(format!("defmt table but no {LOG_RING_SYMBOL} symbol: log decoding off")),
            (Ok(None), Some(_)) => notes.push("log ring but no .defmt table: log decoding off".to_string()),
            (Ok(None), None) => {}
            (Err(e), _) => notes.push(format!("defmt table unusable ({e}): log decoding off")),
        }

        for hook in self.time_hooks.drain(..) {
            let _ = self.uc.remove_hook(hook);
        }
        for segment in
            image.segments.iter().chain(extra.iter().flat_map(|e| e.segments.iter())).filter(|s| s.executable)
        {
            for (i, w) in segment.data.chunks_exact(4).enumerate() {
                let addr = segment.addr + 4 * i as u32;
                let word = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
                // The vector area has its own hook that decodes as it runs.
                let Some(insn) = TimeInsn::decode(word).filter(|_| addr >= VECTOR_AREA_END) else {
                    continue;
                };
                let hook = self
                    .uc
                    .add_code_hook(u64::from(addr), u64::from(addr), move |uc, _, _| {
                        machine::on_time_insn(uc, addr, insn)
                    })
                    .map_err(|e| LoadError::Malformed(format!("cannot hook instruction at {addr:#x}: {e:?}")))?;
                self.time_hooks.push(hook);
            }
        }

        let shared_region = image.symbol(SHARED_SYMBOL).zip(image.symbol(SHARED_LEN_SYMBOL));
        let info = LoadInfo {
            entry: image.entry,
            segments: image.segments.iter().map(|s| (s.addr, s.mem_size)).collect(),
            log_ring: self.log.as_ref().and(ring),
            shared_region,
            time_instructions: self.time_hooks.len(),
            notes,
        };
        self.image = Some(image);
        self.console.clear();
        self.uart1.clear();
        self.log_lines.clear();
        self.exceptions.clear();
        self.resets = 0;
        self.skipped = 0;
        self.power_cuts = 0;
        self.console_at_power_cut = 0;
        self.host_bar_reads = 0;
        self.host_bar_writes = 0;
        let m = self.uc.get_data_mut();
        m.flash.reset();
        let mut fresh = Machine::new(m.wiring);
        fresh.immr.set_standalone_host(m.immr.standalone_host());
        fresh.pci_mapped = std::mem::take(&mut m.pci_mapped);
        fresh.immr.mu.set_outbound_doorbells(self.outbound.clone());
        *m = fresh;
        machine::sync_pci_mappings(&mut self.uc);
        self.hand_over();
        Ok(info)
    }

    /// Reset the CPU, reload the image and start it at its entry point.
    pub(super) fn hand_over(&mut self) {
        let Some(image) = &self.image else { return };
        let _ = self.uc.context_restore(&self.initial_cpu);
        for s in &image.segments {
            // The loader checked addr + mem_size <= RAM_SIZE and data.len() <= mem_size.
            let at = u64::from(s.addr);
            self.mem.ram.write(at, &s.data);
            let tail = u64::from(s.mem_size) - s.data.len() as u64;
            self.mem.ram.fill(at + s.data.len() as u64, tail, 0);
        }
        // RAM was written behind Unicorn's back and the BATs were reset: drop translations and code.
        let _ = self.uc.ctl_flush_tlb();
        let _ = self.uc.ctl_flush_tb();
        let regs = [
            (RegisterPPC::MSR as i32, ppc::MSR_AT_GO),
            (machine::gpr_id(1), INITIAL_SP),
            (machine::gpr_id(3), 1),
            (machine::gpr_id(4), 0),
            (RegisterPPC::PC as i32, image.entry),
        ];
        for (reg, value) in regs {
            let _ = self.uc.reg_write(reg, u64::from(value));
        }
    }

    /// The agent is reset from outside, by its hard-reset line (a chassis manager, or the host through the
    /// board's reset control): the firmware starts again as after U-Boot's `go`, RAM outside the loaded
    /// image kept.
    pub fn hard_reset(&mut self) {
        self.board_reset(RSR_HRS);
    }

    /// Software hard reset or watchdog reset: devices back to reset values except RSR, which records
    /// `cause`; RAM outside the loaded segments is kept.
    pub(super) fn board_reset(&mut self, cause: u32) {
        self.resets += 1;
        let m = self.uc.get_data_mut();
        let now = m.done;
        m.immr = m.immr.after_reset(now, cause);
        m.flash.reset();
        self.devices_restarted(now);
    }

    /// Power fails half-way through a flash operation: the flash keeps what the operation had done, RAM
    /// loses everything, and the board starts as at power-on (RSR reports only the hard reset).
    pub(super) fn power_cut(&mut self) {
        self.power_cuts += 1;
        self.console_at_power_cut = self.console.len();
        let m = self.uc.get_data_mut();
        let now = m.done;
        m.flash.power_cut();
        m.immr = m.immr.power_on(now);
        self.mem.ram.fill(0, u64::from(RAM_SIZE), 0);
        self.devices_restarted(now);
    }

    /// After a reset of the devices at `now`: core-side state, the PCI map and the log follow; the image is
    /// reloaded and started.
    pub(super) fn devices_restarted(&mut self, now: u64) {
        let m = self.uc.get_data_mut();
        m.tb = TimeBase::new(m.immr.timebase_enabled(), now);
        m.stop = None;
        m.not_self_branch = None;
        m.irq = false;
        m.immr.dma.take_dirty();
        machine::sync_pci_mappings(&mut self.uc);
        if let Some(log) = &mut self.log {
            log.after_board_reset();
        }
        self.hand_over();
    }
}
