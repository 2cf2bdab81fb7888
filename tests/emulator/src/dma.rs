//! The DMA controller (docs/REGISTERS.md, "DMA controller"): four channels, direct and chaining mode,
//! little-endian registers and descriptors. The model holds register values; the IMMR layer converts what
//! the core's load or store carries with [`crate::le_register`].
//!
//! # Time
//! A channel is busy in virtual time: starting it plans the current descriptor (where each byte comes from
//! and goes, how long the bus takes, [`crate::BusModel`]) and schedules its end. At that instruction count
//! the data is copied (natively, between the mapped files), status is raised, and in chaining mode the next
//! descriptor is fetched from memory as it is then and planned. The run loop ends slices at the next event
//! and register reads bring the model up to the reading instruction first, so a firmware polling SR sees
//! CB exactly until the modelled end.
//!
//! Descriptors that cross the PCI bus (a host RAM source or destination, or a descriptor fetched from host
//! RAM) are serialised on it: one starts when the previous one has finished with the bus. Real channels
//! interleave bursts; the total throughput is the same.
//!
//! # Decisions the register table leaves open
//! * EOSIE/SNEN in a link word (CDAR, or a descriptor's NDAR field) belong to the descriptor the link points
//!   to, as the hardware's names say (NDAR's are "next descriptor" bits); EOTD belongs to the descriptor whose
//!   NDAR field holds it (the last one).
//! * MR[CS]: a 0→1 write starts the channel; hardware does not clear it (the driver clears it after the
//!   transfer). Clearing it while the channel is busy would halt the channel mid-transfer: not modelled.
//! * MR[CC] asks a chaining-mode channel stopped at an EOTD descriptor to continue: it re-reads that
//!   descriptor's NDAR field from memory and, if EOTD is now clear, continues with the descriptor it points
//!   to. Written while busy, the request waits for the next stop at EOTD. The channel clears CC once it has
//!   acted on it.
//! * While busy, SAR/DAR/BCR hold the current descriptor's values; at its end SAR and DAR have advanced and
//!   BCR has counted down by the bytes moved.
//! * Source/destination address hold (SAHE/DAHE), external start (EMSEN) and interrupt steering to PCI
//!   (IRQS) are not modelled: setting them stops the run. A descriptor byte count above 0x03FF_FFFF is a
//!   transfer error.

use crate::bus::{BusModel, Direction};
use crate::memory::{Memory, Region};
use crate::pci::{PciWindows, Target};

pub const CHANNELS: usize = 4;
pub const BASE: u32 = 0x8100;
pub const STRIDE: u32 = 0x80;
pub const DGSR: u32 = 0x82A8;

/// Register offsets within a channel.
pub const MR: u32 = 0x00;
pub const SR: u32 = 0x04;
pub const CDAR: u32 = 0x08;
pub const SAR: u32 = 0x10;
pub const DAR: u32 = 0x18;
pub const BCR: u32 = 0x20;
pub const NDAR: u32 = 0x24;
pub const REGISTERS: [(u32, &str); 7] =
    [(MR, "MR"), (SR, "SR"), (CDAR, "CDAR"), (SAR, "SAR"), (DAR, "DAR"), (BCR, "BCR"), (NDAR, "NDAR")];

pub mod mode {
    pub const CS: u32 = 0x1;
    pub const CC: u32 = 0x2;
    pub const CTM: u32 = 0x4;
    pub const EOTIE: u32 = 0x80;
    pub const SAHE: u32 = 0x1000;
    pub const DAHE: u32 = 0x2000;
    pub const EMSEN: u32 = 0x4_0000;
    pub const IRQS: u32 = 0x8_0000;
}

pub mod status {
    pub const EOCDI: u32 = 0x1;
    pub const EOSI: u32 = 0x2;
    pub const CB: u32 = 0x4;
    pub const TE: u32 = 0x80;
    /// The write-1-to-clear bits.
    pub const STICKY: u32 = EOCDI | EOSI | TE;
}

/// Link word (CDAR, NDAR) bits. SNEN (0x10, snoop) has no effect: the model's memory is coherent.
pub mod link {
    pub use mpc8349_facts::unverified::dma_link::EOTD;
    pub const EOSIE: u32 = 0x8;
    pub const ADDRESS: u32 = !0x1F;
}

pub const MAX_BYTES: u32 = 0x03FF_FFFF;

/// Per-channel statistics since the board was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Payload bytes moved from agent RAM into host RAM.
    pub bytes_to_host: u64,
    /// Payload bytes moved from host RAM into agent RAM.
    pub bytes_from_host: u64,
    /// Payload bytes moved within agent RAM.
    pub bytes_local: u64,
    /// Payload bytes moved from host RAM to host RAM.
    pub bytes_host_to_host: u64,
    /// Of the bytes written into host RAM (from agent RAM or host RAM), those at host bus addresses
    /// at or above [`HOST_ABOVE_256M`] and at or above [`HOST_ABOVE_1G`]: proof that the outbound
    /// windows reach high host RAM, whoever placed the buffers there.
    pub bytes_to_host_above_256m: u64,
    pub bytes_to_host_above_1g: u64,
    /// Writes into host RAM (one per contiguous piece of a descriptor) made while the shared region's
    /// header showed the host gone and the agent stopped ([`Context::host_released`]): memory the host
    /// may already have given back, or a rebooted host's next kernel owns. Always a fault.
    pub host_writes_after_release: u64,
    /// Descriptors (and direct transfers) completed or ended by an error.
    pub descriptors: u64,
    /// Channel starts (MR[CS] 0→1, and continuations through MR[CC]).
    pub starts: u64,
    /// Transfer errors (TE).
    pub errors: u64,
    /// What the last transfer error hit.
    pub last_error: Option<String>,
    /// Virtual time the channel was busy (CB), in core cycles (instructions).
    pub busy_instructions: u64,
}

impl DmaStats {
    /// Busy virtual time in picoseconds.
    pub fn busy_ps(&self) -> u64 {
        self.busy_instructions * crate::PS_PER_INSTRUCTION
    }
}

/// Host bus addresses the statistics split host RAM writes at (256 MiB, the reach of the firmware's
/// first single window, and 1 GiB, one outbound window).
pub const HOST_ABOVE_256M: u64 = 256 << 20;
pub const HOST_ABOVE_1G: u64 = 1 << 30;

/// Bytes of `[at, at + len)` at or above `limit`.
fn bytes_above(at: u64, len: u64, limit: u64) -> u64 {
    (at + len).saturating_sub(at.max(limit))
}

/// A contiguous piece of a transfer.
#[derive(Debug, Clone, Copy)]
struct Segment {
    src: Target,
    dst: Target,
    len: u64,
}

impl Segment {
    fn direction(&self) -> Direction {
        match (self.src, self.dst) {
            (Target::Ram(_), Target::Ram(_)) => Direction::Local,
            (Target::Ram(_), Target::Host(_)) => Direction::ToHost,
            (Target::Host(_), Target::Ram(_)) => Direction::FromHost,
            (Target::Host(_), Target::Host(_)) => Direction::HostToHost,
        }
    }
}

/// One descriptor (or a direct transfer) planned at its start.
#[derive(Debug, Clone)]
struct Plan {
    segments: Vec<Segment>,
    moved: u64,
    /// The transfer stops after `moved` bytes with this transfer error.
    error: Option<String>,
    cycles: u64,
    uses_pci: bool,
}

#[derive(Debug, Clone)]
enum Step {
    /// Data moving; complete at the job's time.
    Transfer {
        plan: Plan,
        /// EOSI at the end.
        eosie: bool,
        /// EOCDI at the end (direct transfer, or a descriptor with EOTD).
        last: bool,
    },
    /// A transfer error at the job's time (descriptor fetch failed, bad descriptor).
    Error(String),
}

#[derive(Debug, Clone)]
struct Job {
    at: u64,
    chained: bool,
    step: Step,
}

#[derive(Debug, Clone, Default)]
struct Channel {
    mr: u32,
    sr: u32,
    cdar: u32,
    sar: u32,
    dar: u32,
    bcr: u32,
    ndar: u32,
    job: Option<Job>,
    /// Stopped at a descriptor with EOTD in chaining mode: MR[CC] can continue from there.
    after_eotd: bool,
    busy_since: u64,
    stats: DmaStats,
}

impl Channel {
    fn busy(&self) -> bool {
        self.job.is_some()
    }

    fn status(&self) -> u32 {
        self.sr | if self.busy() { status::CB } else { 0 }
    }

    fn interrupt(&self) -> bool {
        (self.sr & status::EOCDI != 0 && self.mr & mode::EOTIE != 0) || self.sr & (status::EOSI | status::TE) != 0
    }
}

#[derive(Debug, Clone)]
pub struct Dma {
    channels: [Channel; CHANNELS],
    bus: BusModel,
    /// When the PCI bus is next free.
    pci_free_at: u64,
    /// Agent RAM ranges (offset, length) written by transfers, for the emulator to drop translated code.
    dirty: Vec<(u64, u64)>,
}

/// What the DMA engine needs to know about the rest of the board.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub mem: Memory,
    pub pci: &'a PciWindows,
}

impl Context<'_> {
    fn region(&self, t: Target) -> (Region, u64) {
        match t {
            Target::Ram(o) => (self.mem.ram, o),
            Target::Host(o) => (self.mem.host, o),
        }
    }

    /// Whether the host has released the agent: the shared region (agent RAM behind inbound window 0,
    /// on either personality) holds a contract header whose `host_state` is DOWN and whose
    /// `agent_state` is READY, RESET or RECOVERY. The agent publishes those states only once no DMA
    /// chain of the old connection is in flight, and bpnet.ko frees (or a rebooting host abandons) its
    /// buffers as soon as it sees one, so no DMA may write host RAM until the host's next UP.
    pub fn host_released(&self) -> bool {
        use bpnet_contract::bar::{field::header, AgentState, HostState, HEADER_LEN, MAGIC};
        let Some((base, size)) = self.pci.inbound_target(0) else { return false };
        let mut h = [0u8; HEADER_LEN];
        if size < HEADER_LEN as u64 || !self.mem.ram.read(base, &mut h) {
            return false;
        }
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let agent = AgentState::try_from(h[header::AGENT_STATE]);
        magic == MAGIC
            && h[header::HOST_STATE] == HostState::Down as u8
            && matches!(agent, Ok(AgentState::Ready | AgentState::Reset | AgentState::Recovery))
    }

    /// Read `buf.len()` contiguous bytes at local `addr`; `Ok(true)` if they came from host RAM.
    fn read_local(&self, addr: u32, buf: &mut [u8]) -> Result<bool, String> {
        let (target, n) = self.pci.resolve(addr, buf.len() as u64, self.mem.host.len())?;
        let (region, offset) = self.region(target);
        if n < buf.len() as u64 || !region.read(offset, buf) {
            return Err(format!("{} bytes at local address {addr:#010x} do not fit one memory", buf.len()));
        }
        Ok(matches!(target, Target::Host(_)))
    }
}

impl Dma {
    pub fn new(bus: BusModel) -> Dma {
        Dma { channels: Default::default(), bus, pci_free_at: 0, dirty: Vec::new() }
    }

    pub fn bus(&self) -> BusModel {
        self.bus
    }

    /// The state after a board reset: channels idle, transfers in flight abandoned, statistics kept.
    pub fn after_reset(&self) -> Dma {
        let mut next = Dma::new(self.bus);
        for (new, old) in next.channels.iter_mut().zip(&self.channels) {
            new.stats = old.stats.clone();
        }
        next.dirty.clone_from(&self.dirty);
        next
    }

    /// Statistics of channel `n` at instruction count `now` (a busy period in progress counts up to `now`).
    pub fn stats(&self, n: usize, now: u64) -> DmaStats {
        let ch = &self.channels[n];
        let mut s = ch.stats.clone();
        if ch.busy() {
            s.busy_instructions += now.saturating_sub(ch.busy_since);
        }
        s
    }

    /// The earliest scheduled event.
    pub fn next_event(&self) -> Option<u64> {
        self.channels.iter().filter_map(|c| c.job.as_ref().map(|j| j.at)).min()
    }

    /// IPIC vector 71: some channel requests an interrupt.
    pub fn interrupt(&self) -> bool {
        self.channels.iter().any(Channel::interrupt)
    }

    /// Agent RAM ranges written since the last call.
    pub fn take_dirty(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.dirty)
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Complete every event due at or before `now`, in time order.
    pub fn advance(&mut self, now: u64, cx: Context<'_>) {
        loop {
            let due = (0..CHANNELS)
                .filter_map(|n| self.channels[n].job.as_ref().map(|j| (j.at, n)))
                .filter(|&(at, _)| at <= now)
                .min();
            let Some((_, n)) = due else { return };
            self.complete(n, cx);
        }
    }

    /// Register read at `offset` (within the DMA block); `None` if not a DMA register.
    pub fn read(&self, offset: u32) -> Option<u32> {
        if offset == DGSR {
            return Some(
                self.channels
                    .iter()
                    .enumerate()
                    .map(|(n, c)| (c.status() & 0xFF) << (24 - 8 * n))
                    .fold(0, |a, b| a | b),
            );
        }
        let (n, reg) = locate(offset)?;
        let c = &self.channels[n];
        Some(match reg {
            MR => c.mr,
            SR => c.status(),
            CDAR => c.cdar,
            SAR => c.sar,
            DAR => c.dar,
            BCR => c.bcr,
            _ => c.ndar,
        })
    }

    /// Register write at `offset` at instruction count `now`; `Err` for what the model does not have.
    pub fn write(&mut self, offset: u32, value: u32, now: u64, cx: Context<'_>) -> Result<(), String> {
        if offset == DGSR {
            return Err("read-only".to_string());
        }
        let Some((n, reg)) = locate(offset) else {
            return Err("not a DMA register".to_string());
        };
        let busy = self.channels[n].busy();
        let c = &mut self.channels[n];
        match reg {
            MR => return self.write_mr(n, value, now, cx),
            SR => c.sr &= !(value & status::STICKY),
            _ if busy => {
                return Err("writing the channel's address/count registers while it is busy (SR[CB]) \
                            is not modelled"
                    .to_string())
            }
            CDAR => c.cdar = value,
            SAR => c.sar = value,
            DAR => c.dar = value,
            BCR if value > MAX_BYTES => return Err(format!("byte count {value:#x} exceeds {MAX_BYTES:#x}")),
            BCR => c.bcr = value,
            _ => c.ndar = value,
        }
        Ok(())
    }

    fn write_mr(&mut self, n: usize, value: u32, now: u64, cx: Context<'_>) -> Result<(), String> {
        let unmodelled = mode::SAHE | mode::DAHE | mode::EMSEN | mode::IRQS;
        if value & unmodelled != 0 {
            return Err(format!(
                "MR = {value:#010x}: address hold (SAHE/DAHE), external start (EMSEN) and interrupt \
                 steering (IRQS) are not modelled"
            ));
        }
        let c = &mut self.channels[n];
        if c.busy() && value & mode::CS == 0 {
            return Err("clearing MR[CS] while the channel is busy (halting a transfer) is not modelled".to_string());
        }
        let old = c.mr;
        c.mr = value;
        if old & mode::CS == 0 && value & mode::CS != 0 {
            self.start(n, now, cx);
        } else if value & mode::CC != 0 && !self.channels[n].busy() {
            self.continue_chain(n, now, cx);
        }
        Ok(())
    }

    /// MR[CS] 0→1.
    fn start(&mut self, n: usize, now: u64, cx: Context<'_>) {
        let c = &mut self.channels[n];
        c.after_eotd = false;
        c.busy_since = now;
        c.stats.starts += 1;
        if c.mr & mode::CTM != 0 {
            let plan = plan(self.bus, cx, c.sar, c.dar, u64::from(c.bcr));
            let step = Step::Transfer { plan, eosie: false, last: true };
            self.schedule(n, now, 0, false, step);
        } else {
            let link = self.channels[n].cdar;
            self.fetch(n, now, link, cx);
        }
    }

    /// MR[CC] on an idle channel.
    fn continue_chain(&mut self, n: usize, now: u64, cx: Context<'_>) {
        let c = &mut self.channels[n];
        c.mr &= !mode::CC;
        if !c.after_eotd || c.mr & (mode::CS | mode::CTM) != mode::CS {
            return;
        }
        // Re-read the NDAR field of the descriptor the channel stopped at.
        let at = (c.cdar & link::ADDRESS).wrapping_add(0x10);
        let mut word = [0u8; 4];
        if cx.read_local(at, &mut word).is_err() {
            return;
        }
        let ndar = u32::from_le_bytes(word);
        if ndar & link::EOTD != 0 {
            return;
        }
        c.ndar = ndar;
        c.after_eotd = false;
        c.busy_since = now;
        c.stats.starts += 1;
        let refetch = self.bus.descriptor_fetch_cycles(false);
        self.fetch(n, now + refetch, ndar & !link::EOTD, cx);
    }

    /// Fetch the descriptor `link` points to at `at` and plan it.
    fn fetch(&mut self, n: usize, at: u64, link: u32, cx: Context<'_>) {
        let addr = link & link::ADDRESS;
        let c = &mut self.channels[n];
        c.cdar = link;
        let mut raw = [0u8; 32];
        let from_host = match cx.read_local(addr, &mut raw) {
            Ok(from_host) => from_host,
            Err(e) => {
                let step = Step::Error(format!("descriptor fetch at {addr:#010x}: {e}"));
                let cost = self.bus.descriptor_fetch_cycles(false);
                self.schedule(n, at, cost, false, step);
                return;
            }
        };
        let word = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let (sar, dar, ndar, bcr) = (word(0x00), word(0x08), word(0x10), word(0x18));
        let c = &mut self.channels[n];
        c.sar = sar;
        c.dar = dar;
        c.ndar = ndar;
        c.bcr = bcr;
        let fetch = self.bus.descriptor_fetch_cycles(from_host);
        let step = if bcr > MAX_BYTES {
            Step::Error(format!("descriptor at {addr:#010x}: byte count {bcr:#x} exceeds {MAX_BYTES:#x}"))
        } else {
            Step::Transfer {
                plan: plan(self.bus, cx, sar, dar, u64::from(bcr)),
                eosie: link & link::EOSIE != 0,
                last: ndar & link::EOTD != 0,
            }
        };
        self.schedule(n, at, fetch, from_host, step);
    }

    /// Put a step on the channel: it starts at `at` (after the bus is free if it needs it), spends
    /// `extra` cycles before its data moves, and ends after its planned cycles.
    fn schedule(&mut self, n: usize, at: u64, extra: u64, fetch_uses_pci: bool, step: Step) {
        let (cycles, uses_pci) = match &step {
            Step::Transfer { plan, .. } => (plan.cycles, plan.uses_pci || fetch_uses_pci),
            Step::Error(_) => (0, fetch_uses_pci),
        };
        let start = if uses_pci { at.max(self.pci_free_at) } else { at };
        let end = start + extra + cycles;
        if uses_pci {
            self.pci_free_at = end;
        }
        self.channels[n].job = Some(Job { at: end, chained: self.channels[n].mr & mode::CTM == 0, step });
    }

    /// The current step of channel `n` ends (at its scheduled time).
    fn complete(&mut self, n: usize, cx: Context<'_>) {
        let Some(job) = self.channels[n].job.take() else {
            return;
        };
        let at = job.at;
        let c = &mut self.channels[n];
        c.stats.descriptors += 1;
        let mut error = None;
        let mut done = None;
        match job.step {
            Step::Error(e) => error = Some(e),
            Step::Transfer { plan, eosie, last } => {
                let released = plan.segments.iter().any(|s| matches!(s.dst, Target::Host(_))) && cx.host_released();
                for s in &plan.segments {
                    let (src, so) = cx.region(s.src);
                    let (dst, doff) = cx.region(s.dst);
                    if !Region::copy(src, so, dst, doff, s.len) {
                        // `plan` sized every segment against the memories; nothing else can end here.
                        error = Some(format!("{} bytes do not fit the memories", s.len));
                        break;
                    }
                    let st = &mut c.stats;
                    match s.dst {
                        Target::Ram(o) => self.dirty.push((o, s.len)),
                        Target::Host(o) => {
                            st.bytes_to_host_above_256m += bytes_above(o, s.len, HOST_ABOVE_256M);
                            st.bytes_to_host_above_1g += bytes_above(o, s.len, HOST_ABOVE_1G);
                            st.host_writes_after_release += u64::from(released);
                        }
                    }
                    match s.direction() {
                        Direction::Local => st.bytes_local += s.len,
                        Direction::ToHost => st.bytes_to_host += s.len,
                        Direction::FromHost => st.bytes_from_host += s.len,
                        Direction::HostToHost => st.bytes_host_to_host += s.len,
                    }
                }
                c.sar = c.sar.wrapping_add(plan.moved as u32);
                c.dar = c.dar.wrapping_add(plan.moved as u32);
                c.bcr = c.bcr.wrapping_sub(plan.moved as u32);
                error = error.or(plan.error);
                if error.is_none() {
                    done = Some((eosie, last));
                }
            }
        }
        if let Some(e) = error {
            c.sr |= status::TE;
            c.stats.errors += 1;
            c.stats.last_error = Some(e);
            c.stats.busy_instructions += at - c.busy_since;
            return;
        }
        let Some((eosie, last)) = done else { return };
        if eosie {
            c.sr |= status::EOSI;
        }
        if !last {
            let next = c.ndar & !link::EOTD;
            self.fetch(n, at, next, cx);
            return;
        }
        c.sr |= status::EOCDI;
        c.after_eotd = job.chained;
        c.stats.busy_instructions += at - c.busy_since;
        if job.chained && c.mr & mode::CC != 0 {
            self.continue_chain(n, at, cx);
        }
    }
}

/// (channel, register offset within it) of a DMA block offset.
fn locate(offset: u32) -> Option<(usize, u32)> {
    let rel = offset.checked_sub(BASE)?;
    let n = (rel / STRIDE) as usize;
    let reg = rel % STRIDE;
    (n < CHANNELS && REGISTERS.iter().any(|&(r, _)| r == reg)).then_some((n, reg))
}

/// Plan moving `len` bytes from local `src` to local `dst`: the contiguous pieces, where it stops if an
/// address reaches nothing, and the bus time.
fn plan(bus: BusModel, cx: Context<'_>, src: u32, dst: u32, len: u64) -> Plan {
    let host = cx.mem.host.len();
    let mut p = Plan { segments: Vec::new(), moved: 0, error: None, cycles: 0, uses_pci: false };
    while p.moved < len {
        let (s, d) = (u64::from(src) + p.moved, u64::from(dst) + p.moved);
        if s > u64::from(u32::MAX) || d > u64::from(u32::MAX) {
            p.error = Some("the transfer runs past the end of the 32-bit address space".to_string());
            break;
        }
        let rest = len - p.moved;
        let (src_t, sn) = match cx.pci.resolve(s as u32, rest, host) {
            Ok(r) => r,
            Err(e) => {
                p.error = Some(format!("source: {e}"));
                break;
            }
        };
        let (dst_t, dn) = match cx.pci.resolve(d as u32, rest, host) {
            Ok(r) => r,
            Err(e) => {
                p.error = Some(format!("destination: {e}"));
                break;
            }
        };
        let seg = Segment { src: src_t, dst: dst_t, len: sn.min(dn) };
        p.cycles += bus.transfer_cycles(seg.direction(), seg.len);
        p.uses_pci |= seg.direction() != Direction::Local;
        p.moved += seg.len;
        p.segments.push(seg);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::open_shared;
    use crate::pci::outbound_offsets;

    /// 1 MiB of "agent RAM" and 1 MiB of host RAM, with outbound window 0: local 0x8000_0000 → PCI 0, 1 MiB.
    struct Rig {
        _ram: crate::memory::SharedFile,
        _host: crate::memory::SharedFile,
        mem: Memory,
        pci: PciWindows,
        dma: Dma,
    }

    fn rig() -> Rig {
        let mut ram = open_shared(None, "bpnet-emu-test-", 1 << 20, 0, false).unwrap();
        let mut host = open_shared(None, "bpnet-emu-test-", 1 << 20, 0, false).unwrap();
        // SAFETY: the mappings live in the rig next to the regions and are dropped with them.
        let mem = unsafe { Memory { ram: Region::of(&mut ram.map), host: Region::of(&mut host.map) } };
        let mut pci = PciWindows::new();
        let (t, b, c) = outbound_offsets(0);
        pci.write(t, 0, "POTAR0").unwrap();
        pci.write(b, 0x8000_0000 >> 12, "POBAR0").unwrap();
        pci.write(c, 0x8000_0000 | 0xF_FF00, "POCMR0").unwrap();
        Rig { _ram: ram, _host: host, mem, pci, dma: Dma::new(BusModel::Pci32At33) }
    }

    impl Rig {
        fn write(&mut self, ch: u32, reg: u32, v: u32, now: u64) -> Result<(), String> {
            let cx = Context { mem: self.mem, pci: &self.pci };
            self.dma.advance(now, cx);
            self.dma.write(BASE + STRIDE * ch + reg, v, now, cx)
        }
        fn read(&mut self, ch: u32, reg: u32, now: u64) -> u32 {
            let cx = Context { mem: self.mem, pci: &self.pci };
            self.dma.advance(now, cx);
            self.dma.read(BASE + STRIDE * ch + reg).unwrap()
        }
        fn descriptor(&self, at: u32, src: u32, dst: u32, next: u32, count: u32) {
            let mut d = [0u8; 32];
            for (off, v) in [(0, src), (8, dst), (0x10, next), (0x18, count)] {
                d[off..off + 4].copy_from_slice(&v.to_le_bytes());
            }
            assert!(self.mem.ram.write(u64::from(at), &d));
        }
    }

    #[test]
    fn direct_transfer_to_host_is_busy_for_its_modelled_time() {
        let mut r = rig();
        let data: Vec<u8> = (0..=255).collect();
        assert!(r.mem.ram.write(0x1000, &data));
        r.write(0, SAR, 0x1000, 0).unwrap();
        r.write(0, DAR, 0x8000_0100, 0).unwrap();
        r.write(0, BCR, 256, 0).unwrap();
        r.write(0, MR, mode::CTM | mode::CS, 100).unwrap();
        let end = 100 + 71 * 16;
        assert_eq!(r.dma.next_event(), Some(end));
        assert_eq!(r.read(0, SR, end - 1), status::CB);
        let mut host = [0u8; 256];
        assert!(r.mem.host.read(0x100, &mut host));
        assert_eq!(host, [0u8; 256], "data not visible before the end");
        assert_eq!(r.read(0, SR, end), status::EOCDI);
        assert!(r.mem.host.read(0x100, &mut host));
        assert_eq!(&host[..], &data[..]);
        assert_eq!(r.read(0, BCR, end), 0);
        assert_eq!(r.read(0, SAR, end), 0x1100);
        assert!(!r.dma.interrupt(), "EOTIE clear");
        let s = r.dma.stats(0, end);
        assert_eq!((s.bytes_to_host, s.busy_instructions, s.starts), (256, 71 * 16, 1));
        // Write-1-to-clear; CS stays set until the driver clears it.
        r.write(0, SR, status::EOCDI, end).unwrap();
        assert_eq!(r.read(0, SR, end), 0);
        assert_eq!(r.read(0, MR, end), mode::CTM | mode::CS);
        assert!(r.dma.take_dirty().is_empty(), "host RAM is not agent code");
    }

    #[test]
    fn host_writes_are_counted_by_bus_address_and_after_the_host_released_the_agent() {
        use bpnet_contract::bar::{field::header, AgentState, HostState, MAGIC};
        assert_eq!(bytes_above(0, 100, 50), 50);
        assert_eq!(bytes_above(60, 100, 50), 100);
        assert_eq!(bytes_above(0, 50, 50), 0);
        // Agent RAM, and 1 GiB + 1 MiB of (sparse) host RAM; outbound window 0 maps local 0x8000_0000 onto
        // PCI 0x4000_0000 (1 MiB), inbound window 0 puts the shared region at agent RAM 0x1_0000.
        let mut ram = open_shared(None, "bpnet-emu-test-", 1 << 20, 0, false).unwrap();
        let mut host = open_shared(None, "bpnet-emu-test-", (1 << 30) + (1 << 20), 0, false).unwrap();
        // SAFETY: the mappings outlive every use of the regions in this test.
        let mem = unsafe { Memory { ram: Region::of(&mut ram.map), host: Region::of(&mut host.map) } };
        let mut pci = PciWindows::new();
        let (t, b, c) = outbound_offsets(0);
        pci.write(t, 0x4000_0000 >> 12, "POTAR0").unwrap();
        pci.write(b, 0x8000_0000 >> 12, "POBAR0").unwrap();
        pci.write(c, 0x8000_0000 | 0xF_FF00, "POCMR0").unwrap();
        let (pitar, _, _, piwar) = crate::pci::INBOUND_OFFSETS[0];
        pci.write(pitar, 0x1_0000 >> 12, "PITAR0").unwrap();
        pci.write(piwar, 0x8000_0000 | 0x0F, "PIWAR0").unwrap();
        assert!(mem.ram.write(0x1_0000, &MAGIC.to_le_bytes()));
        let set_states = |agent: AgentState, host: HostState| {
            assert!(mem.ram.write(0x1_0000 + header::AGENT_STATE as u64, &[agent as u8, host as u8]));
        };
        let mut dma = Dma::new(BusModel::Pci32At33);
        let mut now = 0;
        let send = |dma: &mut Dma, now: &mut u64| {
            let cx = Context { mem, pci: &pci };
            for (reg, v) in [(SAR, 0x1000), (DAR, 0x8000_0100), (BCR, 256), (MR, 0), (MR, mode::CTM | mode::CS)] {
                dma.write(BASE + reg, v, *now, cx).unwrap();
            }
            *now = dma.next_event().unwrap();
            dma.advance(*now, cx);
            dma.write(BASE + SR, status::EOCDI, *now, cx).unwrap();
        };
        set_states(AgentState::Running, HostState::Up);
        send(&mut dma, &mut now);
        let s = dma.stats(0, now);
        assert_eq!((s.bytes_to_host, s.bytes_to_host_above_256m, s.bytes_to_host_above_1g), (256, 256, 256));
        assert_eq!(s.host_writes_after_release, 0, "the host is up");
        // DOWN while the agent still runs: the agent has not seen it yet, its chain may still land.
        set_states(AgentState::Running, HostState::Down);
        send(&mut dma, &mut now);
        assert_eq!(dma.stats(0, now).host_writes_after_release, 0);
        // The agent said it stopped: from now on a write lands in memory the host gave back.
        set_states(AgentState::Ready, HostState::Down);
        send(&mut dma, &mut now);
        assert_eq!(dma.stats(0, now).host_writes_after_release, 1);
        // Writes into agent RAM are nobody's business here.
        let cx = Context { mem, pci: &pci };
        for (reg, v) in [(SAR, 0x1000), (DAR, 0x2000), (BCR, 16), (MR, 0), (MR, mode::CTM | mode::CS)] {
            dma.write(BASE + reg, v, now, cx).unwrap();
        }
        now = dma.next_event().unwrap();
        dma.advance(now, cx);
        assert_eq!(dma.stats(0, now).host_writes_after_release, 1);
    }

    #[test]
    fn chain_completes_each_descriptor_at_its_own_time() {
        let mut r = rig();
        assert!(r.mem.host.write(0x2000, &[0xAB; 64]));
        assert!(r.mem.ram.write(0x3000, &[0xCD; 100]));
        // d0: host → RAM 64 bytes, link to d1 with EOSIE (for d1); d1: RAM → RAM 100 bytes, last.
        r.descriptor(0x100, 0x8000_2000, 0x4000, 0x120 | link::EOSIE, 64);
        // The last link as the firmware writes it (docs/REGISTERS.md, "Unverified facts"): EOTD ends the
        // chain whatever else the word carries.
        r.descriptor(0x120, 0x3000, 0x5000, mpc8349_facts::unverified::DMA_END_OF_LIST_LINK, 100);
        r.write(1, MR, mode::EOTIE, 0).unwrap();
        r.write(1, CDAR, 0x100, 0).unwrap();
        r.write(1, MR, mode::EOTIE | mode::CS, 0).unwrap();
        let d0_end = 16 + (16 + 21) * 16;
        let d1_end = d0_end + 16 + 104;
        assert_eq!(r.dma.next_event(), Some(d0_end));
        assert_eq!(r.read(1, SR, d0_end - 1), status::CB);
        assert_eq!(r.read(1, SR, d0_end), status::CB, "EOSIE in d0's link is d1's");
        let mut b = [0u8; 100];
        assert!(r.mem.ram.read(0x4000, &mut b[..64]));
        assert_eq!(&b[..64], &[0xAB; 64]);
        assert!(r.mem.ram.read(0x5000, &mut b));
        assert_eq!(b, [0; 100], "d1 not done yet");
        assert_eq!(r.read(1, BCR, d0_end), 100, "d1 loaded");
        assert_eq!(r.read(1, SR, d1_end), status::EOSI | status::EOCDI);
        assert!(r.mem.ram.read(0x5000, &mut b));
        assert_eq!(b, [0xCD; 100]);
        assert!(r.dma.interrupt());
        let dgsr = r.dma.read(DGSR).unwrap();
        assert_eq!(dgsr, (status::EOSI | status::EOCDI) << 16);
        let s = r.dma.stats(1, d1_end);
        assert_eq!((s.bytes_from_host, s.bytes_local, s.descriptors), (64, 100, 2));
        assert_eq!(r.dma.take_dirty(), vec![(0x4000, 64), (0x5000, 100)], "agent RAM written");
    }

    #[test]
    fn errors_stop_the_channel_at_the_point_reached() {
        let mut r = rig();
        // Direct: RAM → host crossing the end of the 1 MiB window after 16 bytes.
        r.write(2, SAR, 0x1000, 0).unwrap();
        r.write(2, DAR, 0x800F_FFF0, 0).unwrap();
        r.write(2, BCR, 64, 0).unwrap();
        r.write(2, MR, mode::CTM | mode::CS, 0).unwrap();
        let end = (4 + 7) * 16;
        assert_eq!(r.read(2, SR, end), status::TE);
        assert_eq!(r.read(2, BCR, end), 48);
        let s = r.dma.stats(2, end);
        assert_eq!(s.bytes_to_host, 16);
        assert!(s.last_error.as_deref().unwrap().contains("no enabled outbound window"), "{s:?}");
        assert!(r.dma.interrupt(), "TE requests an interrupt");
        // Chain with a descriptor outside everything.
        r.write(3, CDAR, 0xC000_0000, 0).unwrap();
        r.write(3, MR, mode::CS, 0).unwrap();
        assert_eq!(r.read(3, SR, 16), status::TE);
        assert!(r.dma.stats(3, 16).last_error.unwrap().contains("descriptor fetch"));
        // Host RAM is 1 MiB: a 2 MiB window reaches past it.
        let (_, _, c) = outbound_offsets(0);
        r.pci.write(c, 0x8000_0000 | 0xF_FE00, "POCMR0").unwrap();
        r.write(0, SAR, 0x1000, 0).unwrap();
        r.write(0, DAR, 0x800F_FFFC, 0).unwrap();
        r.write(0, BCR, 8, 0).unwrap();
        r.write(0, MR, mode::CTM | mode::CS, 0).unwrap();
        assert_eq!(r.read(0, SR, 1000), status::TE);
        assert!(r.dma.stats(0, 1000).last_error.unwrap().contains("beyond host RAM"));
        assert_eq!(r.dma.stats(0, 1000).bytes_to_host, 4);
    }

    #[test]
    fn refusals() {
        let mut r = rig();
        assert!(r.write(0, BCR, MAX_BYTES + 1, 0).is_err());
        assert!(r.write(0, MR, mode::IRQS, 0).is_err());
        r.write(0, BCR, 1 << 20, 0).unwrap();
        r.write(0, MR, mode::CTM | mode::CS, 0).unwrap();
        assert!(r.write(0, SAR, 0, 1).unwrap_err().contains("busy"));
        assert!(r.write(0, MR, mode::CTM, 1).unwrap_err().contains("MR[CS]"));
        let cx = Context { mem: r.mem, pci: &r.pci };
        assert!(r.dma.write(DGSR, 0, 1, cx).is_err());
        assert_eq!(locate(BASE + 0x0C), None);
        assert_eq!(locate(BASE + 4 * STRIDE), None);
    }

    #[test]
    fn channel_continue_after_end_of_chain() {
        let mut r = rig();
        r.descriptor(0x100, 0x1000, 0x2000, 0x120 | link::EOTD, 8);
        r.write(0, CDAR, 0x100, 0).unwrap();
        r.write(0, MR, mode::CS, 0).unwrap();
        let end = 16 + 8;
        assert_eq!(r.read(0, SR, end), status::EOCDI);
        // CC with the chain not extended: nothing happens, CC clears.
        r.write(0, MR, mode::CS | mode::CC, end).unwrap();
        assert_eq!(r.read(0, SR, end), status::EOCDI);
        assert_eq!(r.read(0, MR, end), mode::CS);
        // Append d1 and clear EOTD in d0, then continue.
        r.descriptor(0x120, 0x1000, 0x3000, link::EOTD, 16);
        r.descriptor(0x100, 0x1000, 0x2000, 0x120, 8);
        r.write(0, SR, status::EOCDI, end).unwrap();
        r.write(0, MR, mode::CS | mode::CC, end).unwrap();
        assert_eq!(r.read(0, SR, end), status::CB);
        let end2 = end + 16 + 16 + 16;
        assert_eq!(r.read(0, SR, end2 - 1), status::CB);
        assert_eq!(r.read(0, SR, end2), status::EOCDI);
        assert_eq!(r.dma.stats(0, end2).bytes_local, 24);
    }

    #[test]
    fn pci_descriptors_are_serialised_across_channels() {
        let mut r = rig();
        for ch in 0..2 {
            r.write(ch, SAR, 0x1000, 0).unwrap();
            r.write(ch, DAR, 0x8000_0000 + 0x1000 * ch, 0).unwrap();
            r.write(ch, BCR, 256, 0).unwrap();
        }
        r.write(0, MR, mode::CTM | mode::CS, 0).unwrap();
        r.write(1, MR, mode::CTM | mode::CS, 0).unwrap();
        assert_eq!(r.read(0, SR, 71 * 16), status::EOCDI);
        assert_eq!(r.read(1, SR, 71 * 16), status::CB);
        assert_eq!(r.read(1, SR, 2 * 71 * 16), status::EOCDI);
    }
}
