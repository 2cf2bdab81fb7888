//! What tests and tools read of the board: counts, time, console and log, the core's registers, RAM,
//! the flash and the DMA controller.

use super::*;

impl Board {
    /// Exact number of instructions executed since power-on (resets do not restart it).
    pub fn instructions(&self) -> u64 {
        self.uc.get_data().done
    }

    /// Count instructions per translation block from now on (on) or stop and forget (off). For finding
    /// where the firmware spends its instructions; [`Board::profile`] reports them per function.
    pub fn set_profiling(&mut self, on: bool) {
        let watched: Vec<u32> = self
            .image
            .iter()
            .flat_map(|i| i.symbols.iter())
            .filter(|(n, _)| ["memcpy", "memset", "memmove"].iter().any(|w| crate::elf::demangle(n).ends_with(w)))
            .map(|&(_, a)| a)
            .collect();
        let m = self.uc.get_data_mut();
        m.profile = on.then(Default::default);
        m.watched = if on { watched } else { Vec::new() };
        m.calls.clear();
    }

    /// When profiling, the calls of memcpy, memset and memmove by call site, most bytes first:
    /// (function, calling function, calls, bytes).
    pub fn profile_calls(&self) -> Vec<(String, String, u64, u64)> {
        let name = |addr: u32| self.symbol_at(addr).unwrap_or_else(|| format!("{addr:#010x}"));
        let mut out: Vec<_> = self
            .uc
            .get_data()
            .calls
            .iter()
            .map(|(&(callee, lr), &(calls, bytes))| (name(callee), name(lr.wrapping_sub(4)), calls, bytes))
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.3));
        out
    }

    pub(super) fn symbol_at(&self, addr: u32) -> Option<String> {
        let image = self.image.as_ref()?;
        let best = image.symbols.iter().filter(|(n, a)| *a <= addr && !n.is_empty()).max_by_key(|(_, a)| *a)?;
        Some(crate::elf::demangle(&best.0))
    }

    /// Instructions per firmware function since profiling was turned on, most first: (function, count).
    /// Blocks outside every symbol are reported by address.
    pub fn profile(&self) -> Vec<(String, u64)> {
        let Some(blocks) = &self.uc.get_data().profile else { return Vec::new() };
        let mut symbols: Vec<(u32, &str)> =
            self.image.iter().flat_map(|i| i.symbols.iter().map(|(n, a)| (*a, n.as_str()))).collect();
        symbols.sort_unstable();
        let mut per: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (&addr, &n) in blocks {
            let at = symbols.partition_point(|&(a, _)| a <= addr);
            let name = match at.checked_sub(1) {
                Some(i) => crate::elf::demangle(symbols[i].1),
                None => format!("{addr:#010x}"),
            };
            *per.entry(name).or_default() += n;
        }
        let mut out: Vec<(String, u64)> = per.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Instructions counted without being emulated: the core spinning in `b .` until a timer fired.
    pub fn skipped_instructions(&self) -> u64 {
        self.skipped
    }

    /// Virtual time since power-on in picoseconds (1.875 ns per instruction at 533.33 MHz).
    pub fn virtual_time_ps(&self) -> u64 {
        self.instructions() * PS_PER_INSTRUCTION
    }

    /// Virtual time since power-on in nanoseconds.
    pub fn virtual_time_ns(&self) -> u64 {
        self.virtual_time_ps() / 1000
    }

    /// Everything the firmware wrote to UART0 (the console).
    pub fn console(&self) -> &[u8] {
        &self.console
    }

    /// Everything the firmware wrote to UART1.
    pub fn uart1_output(&self) -> &[u8] {
        &self.uart1
    }

    /// Queue bytes for the firmware to read from UART `channel` (0 or 1).
    pub fn uart_input(&mut self, channel: usize, bytes: &[u8]) {
        let m = self.uc.get_data_mut();
        if let Some(uart) = m.immr.uarts.get_mut(channel) {
            uart.receive(bytes);
        }
        m.irq = m.immr.external_interrupt();
    }

    /// Decoded log lines so far (`log: …`).
    pub fn log_lines(&self) -> &[String] {
        &self.log_lines
    }

    /// Exceptions delivered since the firmware was loaded.
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// HID0[DLOCK] is set: the data cache is locked (as U-Boot leaves it at `go`), so every data access
    /// runs cache-inhibited. A program that leaves it so has not taken its own cache state.
    pub fn dcache_locked(&self) -> bool {
        self.uc.get_data().core.dcache_locked()
    }

    /// HID0 as the program last wrote it (U-Boot's value until it does).
    pub fn hid0(&self) -> u32 {
        self.uc.get_data().core.hid0
    }

    /// The valid BAT pairs of each kind that cover `addr` for supervisor accesses, as the program last
    /// wrote them: (instruction pairs, data pairs).
    pub fn bats_covering(&self, addr: u32) -> (Vec<usize>, Vec<usize>) {
        let core = &self.uc.get_data().core;
        let hits = |bats: &[crate::ppc::Bat]| {
            bats.iter()
                .enumerate()
                .filter(|(_, b)| b.supervisor_block().is_some_and(|(s, l)| (s..s + l).contains(&u64::from(addr))))
                .map(|(n, _)| n)
                .collect()
        };
        (hits(&core.ibat), hits(&core.dbat))
    }

    /// Board resets (software hard reset, watchdog) since the firmware was loaded.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// The reset status register (cause of the last resets).
    pub fn rsr(&self) -> u32 {
        self.uc.get_data().immr.rsr()
    }

    pub fn pc(&self) -> u32 {
        machine::read_pc(&self.uc)
    }

    pub fn msr(&self) -> u32 {
        machine::read_msr(&self.uc)
    }

    /// General-purpose register `n` (0..=31).
    pub fn gpr(&self, n: u32) -> u32 {
        machine::read_gpr(&self.uc, n & 31)
    }

    /// The timebase as the firmware would read it now.
    pub fn timebase(&self) -> u64 {
        let m = self.uc.get_data();
        m.tb.tb(m.done)
    }

    /// The decrementer as the firmware would read it now.
    pub fn decrementer(&self) -> u32 {
        let m = self.uc.get_data();
        m.tb.dec(m.done)
    }

    /// Path of the file backing RAM (a temporary file unless configured).
    pub fn ram_path(&self) -> &Path {
        self.ram.file.path()
    }

    pub(super) fn check_ram(addr: u32, len: usize) -> Result<usize, OutsideRam> {
        let start = addr as usize;
        match start.checked_add(len) {
            Some(end) if end <= RAM_SIZE as usize => Ok(start),
            _ => Err(OutsideRam { addr, len }),
        }
    }

    /// Copy guest RAM at physical `addr` into `buf`.
    pub fn read_ram(&self, addr: u32, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let start = Self::check_ram(addr, buf.len())?;
        self.mem.ram.read(start as u64, buf);
        Ok(())
    }

    /// Write guest RAM at physical `addr`. Translated code covering the range is discarded, so writing
    /// code works too.
    pub fn write_ram(&mut self, addr: u32, data: &[u8]) -> Result<(), OutsideRam> {
        let start = Self::check_ram(addr, data.len())?;
        self.mem.ram.write(start as u64, data);
        let _ = self.uc.ctl_remove_cache(u64::from(addr), u64::from(addr) + data.len() as u64);
        Ok(())
    }

    /// Read a big-endian word of guest RAM.
    pub fn read_u32(&self, addr: u32) -> Result<u32, OutsideRam> {
        let mut b = [0u8; 4];
        self.read_ram(addr, &mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Write a big-endian word of guest RAM.
    pub fn write_u32(&mut self, addr: u32, value: u32) -> Result<(), OutsideRam> {
        self.write_ram(addr, &value.to_be_bytes())
    }

    /// The IMMR model (register state), for inspection.
    pub fn immr(&self) -> &Immr {
        &self.uc.get_data().immr
    }

    /// Bench markers: every value written to UART1's scratch register, with when.
    pub fn markers(&self) -> &[Marker] {
        &self.uc.get_data().markers
    }

    /// Path of the file holding the flash image.
    pub fn flash_path(&self) -> &Path {
        self.flash.file.path()
    }

    /// Copy the flash array at byte `offset` (from 0xFE00_0000) into `buf`, as the file holds it now (an
    /// operation in progress has not changed it yet). `false` if the range is outside the 32 MiB.
    pub fn read_flash(&self, offset: u32, buf: &mut [u8]) -> bool {
        self.uc.get_data().wiring.flash.read(u64::from(offset), buf)
    }

    /// Flash program-word and sector-erase operations started since the firmware was loaded.
    pub fn flash_operations(&self) -> u64 {
        self.uc.get_data().flash.operations()
    }

    /// Whether the flash is erasing a sector now.
    pub fn flash_erasing(&self) -> bool {
        self.uc.get_data().flash.erasing()
    }

    /// Power cuts injected since the firmware was loaded.
    pub fn power_cuts(&self) -> u32 {
        self.power_cuts
    }

    /// The console output since the last power cut (all of it if there was none).
    pub fn console_since_power_cut(&self) -> &[u8] {
        &self.console[self.console_at_power_cut.min(self.console.len())..]
    }

    /// The timing model DMA transfers are charged with.
    pub fn bus_model(&self) -> BusModel {
        self.uc.get_data().immr.dma.bus()
    }

    /// Per-channel DMA statistics up to now (bytes moved per direction, busy virtual time, errors).
    pub fn dma_stats(&self) -> [DmaStats; CHANNELS] {
        let now = self.instructions();
        let dma = &self.uc.get_data().immr.dma;
        std::array::from_fn(|n| dma.stats(n, now))
    }

    /// The shared region's header now shows the host gone and the agent stopped (`host_state` DOWN,
    /// `agent_state` READY, RESET or RECOVERY: [`crate::dma::Context::host_released`]): what a host that
    /// shut down cleanly (bpnet.ko's `.shutdown`) leaves behind.
    pub fn host_released(&self) -> bool {
        let immr = &self.uc.get_data().immr;
        crate::dma::Context { mem: immr.mem, pci: &immr.pci }.host_released()
    }
}
