//! State shared between the run loop and Unicorn's hooks, and the hooks themselves.
//!
//! Hooks run inside Unicorn's C code: a Rust panic there aborts the process, so every hook records what it
//! found in [`Machine`] and asks the loop to stop; nothing in here unwraps.
//!
//! # Exact instruction count
//! A block hook adds the size of each translation block when the block starts. A block can be left early
//! (a hooked timebase instruction, a CPU exception, a count-limited stop); the hook that knows the exact PC
//! then "settles" the block: `done` = instructions before the block + instructions of the block before PC.
//! The count at any instruction inside the current block is `done + (pc - block_start) / 4`.
//!
//! # Stopping
//! `uc_emu_stop` from an MMIO callback is not honoured by this Unicorn version (the core runs on), while it
//! is from block, code and interrupt hooks. So MMIO callbacks only record a [`Stop`]; the block hook of the
//! next block sees it and stops before that block runs. The rest of the faulting block still executes, which
//! does not matter for a run that is over, and makes a requested reset take effect a few instructions late,
//! as a real reset request does.

use unicorn_engine::unicorn_const::{MemType, Prot};
use unicorn_engine::{RegisterPPC, Unicorn};

use crate::board::Marker;
use crate::bus::BusModel;
use crate::elf::RAM_SIZE;
use crate::flash::{Flash, FLASH_BASE, FLASH_SIZE};
use crate::immr::{Effect, Immr, IMMR_BASE, IMMR_SIZE, UART1_USCR};
use crate::memory::{Memory, Region};
use crate::outcome::Outcome;
use crate::pci::Target;
use crate::ppc::{self, msr, Bat, BatKind, TimeInsn, TrackedWrite, BAT_PAIRS};
use crate::time::{TimeBase, PS_PER_INSTRUCTION};
use crate::uboot;

pub type Uc<'a> = Unicorn<'a, Machine>;

/// The emulator-private page holding the exception-delivery stubs. 0xC000_0000 is decoded by nothing on
/// the MPC8349EMDS as U-Boot sets it up (PCI windows at 0x8000_0000-0xBFFF_FFFF, IMMR 0xE000_0000, local-bus
/// SDRAM 0xF000_0000, init RAM 0xFD00_0000, flash 0xFE00_0000), so the firmware has no business there: it is
/// mapped execute-only, any firmware load or store to it is reported as an unmapped access, and a firmware
/// jump into it as an unmapped fetch.
pub const STUB_PAGE: u32 = 0xC000_0000;
pub const STUB_PAGE_SIZE: u32 = 0x1000;
/// `mtsrr0 r3; mtsrr1 r4`.
pub const STUB_SET_SRR: u32 = STUB_PAGE;
/// `mtdar r3; mtdsisr r4`.
pub const STUB_SET_DAR_DSISR: u32 = STUB_PAGE + 0x10;
/// `mfspr r3, DMISS; mfspr r4, IMISS`.
pub const STUB_GET_MISS: u32 = STUB_PAGE + 0x20;
/// `mtspr HID0, r3; mfspr r4, HID0`.
pub const STUB_SET_HID0: u32 = STUB_PAGE + 0x30;
/// `mfspr r3, HID0; mfspr r4, HID0`.
pub const STUB_GET_HID0: u32 = STUB_PAGE + 0x38;
/// `mtspr xBATnU, r3; mtspr xBATnL, r4`, one per pair: instruction BATs 0-7, then data BATs 0-7.
const STUB_SET_BAT: u32 = STUB_PAGE + 0x100;
/// `mfspr r3, xBATnU; mfspr r4, xBATnL`, in the same order.
const STUB_GET_BAT: u32 = STUB_PAGE + 0x200;
/// Each stub is two instructions.
pub const STUB_LEN: u32 = 8;

fn bat_stub_index(kind: BatKind, pair: usize) -> u32 {
    (if kind == BatKind::Data { BAT_PAIRS } else { 0 } + pair) as u32
}

/// The stub writing a BAT pair (r3 = upper, r4 = lower).
pub fn stub_set_bat(kind: BatKind, pair: usize) -> u32 {
    STUB_SET_BAT + STUB_LEN * bat_stub_index(kind, pair)
}

/// The stub reading a BAT pair into r3 (upper), r4 (lower).
pub fn stub_get_bat(kind: BatKind, pair: usize) -> u32 {
    STUB_GET_BAT + STUB_LEN * bat_stub_index(kind, pair)
}

pub fn stub_code() -> Vec<(u32, [u32; 2])> {
    use ppc::spr;
    let mut stubs = vec![
        (STUB_SET_SRR, [ppc::mtspr(spr::SRR0, 3), ppc::mtspr(spr::SRR1, 4)]),
        (STUB_SET_DAR_DSISR, [ppc::mtspr(spr::DAR, 3), ppc::mtspr(spr::DSISR, 4)]),
        (STUB_GET_MISS, [ppc::mfspr(3, spr::DMISS), ppc::mfspr(4, spr::IMISS)]),
        (STUB_SET_HID0, [ppc::mtspr(spr::HID0, 3), ppc::mfspr(4, spr::HID0)]),
        (STUB_GET_HID0, [ppc::mfspr(3, spr::HID0), ppc::mfspr(4, spr::HID0)]),
    ];
    for kind in [BatKind::Instruction, BatKind::Data] {
        for pair in 0..BAT_PAIRS {
            let (upper, lower) = (ppc::bat_spr(kind, pair, true), ppc::bat_spr(kind, pair, false));
            stubs.push((stub_set_bat(kind, pair), [ppc::mtspr(upper, 3), ppc::mtspr(lower, 4)]));
            stubs.push((stub_get_bat(kind, pair), [ppc::mfspr(3, upper), ppc::mfspr(4, lower)]));
        }
    }
    stubs
}

/// Unicorn's number for an instruction-fetch TLB miss (QEMU's POWERPC_EXCP_IFTLB); 79 and 80 are the data
/// load and store misses (POWERPC_EXCP_DLTLB, POWERPC_EXCP_DSTLB).
pub const INTNO_ITLB_MISS: u32 = 78;
pub const INTNO_DTLB_LOAD_MISS: u32 = 79;
pub const INTNO_DTLB_STORE_MISS: u32 = 80;

/// Exception vectors live here once the firmware copies them; their code is decoded as it runs.
pub const VECTOR_AREA_END: u32 = 0x3000;

/// Why a slice must end before its deadline.
#[derive(Debug, Clone)]
pub enum Stop {
    /// The run is over: unmodelled register, unmapped access.
    Fault(Outcome),
    /// Unicorn reported a CPU exception (its interrupt number) at instruction `pc`; the loop delivers it.
    Exception { intno: u32, pc: u32 },
    /// A board reset was requested; the RSR bit to record.
    Reset(u32),
    /// MSR[EE] is set while a decrementer exception is pending.
    Interrupt,
    /// The core reached `b .`: the loop decides between idle, halt and waiting for a timer.
    SelfLoop,
}

pub struct Machine {
    pub immr: Immr,
    pub tb: TimeBase,
    /// Instructions completed before the current block.
    pub done: u64,
    pub block_start: u32,
    /// Instructions of the current block not yet added to `done` (0: no block open).
    pub block_len: u64,
    /// Last instruction of the current block identified as making an MMIO access, the end of the bytes it
    /// accessed there, and the end of all the bytes the instruction touches.
    pub last_access_pc: Option<u32>,
    pub last_access_end: u32,
    pub last_access_span_end: u32,
    /// Stop at the first block boundary at or after this count.
    pub deadline: u64,
    /// Never start a block that would run past this count (exact limits finish with a counted run).
    pub limit: Option<u64>,
    /// Set when the block hook stopped because the next block would cross `limit`.
    pub limit_reached: bool,
    /// The counted final run towards `limit` is in progress: the block hook does not check the limit.
    pub final_approach: bool,
    pub stop: Option<Stop>,
    /// An emulator stub is running: its instructions are not the firmware's.
    pub in_stub: bool,
    /// Set by another thread (a live host's request, [`crate::realtime::CoreStopper`]): end the run at
    /// the next block boundary, where the core's state is whole (never inside a stub).
    pub host_request: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// A one-instruction self-loop at this address was found not to be `b .` (e.g. `bdnz .`).
    pub not_self_branch: Option<u32>,
    /// The core's external interrupt input (IPIC output), refreshed whenever a device may have changed.
    pub irq: bool,
    pub flash: Flash,
    /// Bench markers written to UART1's scratch register.
    pub markers: Vec<Marker>,
    /// Instructions per translation-block start address, when profiling ([`crate::Board::set_profiling`]).
    pub profile: Option<std::collections::HashMap<u32, u64>>,
    /// When profiling: entry points whose callers are recorded (memcpy and its kind), and per (entry,
    /// caller's return address) the calls and the sum of their third argument (the length).
    pub watched: Vec<u32>,
    pub calls: std::collections::HashMap<(u32, u32), (u64, u64)>,
    /// PCI memory ranges currently mapped as MMIO in Unicorn (start, length).
    pub pci_mapped: Vec<(u64, u64)>,
    /// A PCI LAW changed: the mappings must follow at the next slice boundary.
    pub pci_remap: bool,
    /// The core's BAT pairs and HID0 as the firmware last wrote them (Unicorn holds the values it translates
    /// with; these are the model's copy, kept by hooks on every `mtspr` to them).
    pub core: CoreState,
    /// A BAT changed: the overlap checks must follow at the next slice boundary.
    pub bats_changed: bool,
    pub wiring: Wiring,
}

/// What the model tracks of the core's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreState {
    pub ibat: [Bat; BAT_PAIRS],
    pub dbat: [Bat; BAT_PAIRS],
    pub hid0: u32,
}

impl CoreState {
    /// As U-Boot leaves it at `go` ([`uboot`]).
    pub const AT_GO: CoreState = CoreState { ibat: uboot::BATS, dbat: uboot::BATS, hid0: uboot::HID0 };

    /// HID0[DLOCK]: the data cache allocates nothing, so every data access is handled as cache-inhibited.
    pub fn dcache_locked(&self) -> bool {
        self.hid0 & ppc::hid0::DLOCK != 0
    }
}

/// What the board connects the devices to; kept when the machine state is rebuilt.
#[derive(Debug, Clone, Copy)]
pub struct Wiring {
    pub mem: Memory,
    pub flash: Region,
    pub bus: BusModel,
    pub power_cut_at: Option<u64>,
}

impl Wiring {
    /// Nothing attached (unit tests of the hooks' bookkeeping).
    pub const NONE: Wiring =
        Wiring { mem: Memory::EMPTY, flash: Region::EMPTY, bus: BusModel::Pci32At33, power_cut_at: None };
}

impl Machine {
    pub fn new(wiring: Wiring) -> Machine {
        let mut immr = Immr::new(0);
        immr.attach(wiring.mem, wiring.bus);
        Machine {
            immr,
            tb: TimeBase::new(true, 0),
            done: 0,
            block_start: 0,
            block_len: 0,
            last_access_pc: None,
            last_access_end: 0,
            last_access_span_end: 0,
            deadline: u64::MAX,
            limit: None,
            limit_reached: false,
            final_approach: false,
            stop: None,
            in_stub: false,
            host_request: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            not_self_branch: None,
            irq: false,
            flash: Flash::new(wiring.flash, wiring.power_cut_at),
            markers: Vec::new(),
            profile: None,
            watched: Vec::new(),
            calls: std::collections::HashMap::new(),
            pci_mapped: Vec::new(),
            pci_remap: false,
            core: CoreState::AT_GO,
            bats_changed: true,
            wiring,
        }
    }

    /// After a device access or a host operation: the interrupt line, the next device event (the slice must
    /// end there) and RAM written behind the core's back (translated code must be dropped before the next
    /// block runs).
    pub fn after_device_change(&mut self) {
        self.irq = self.immr.external_interrupt();
        if let Some(t) = self.immr.next_event() {
            self.deadline = self.deadline.min(t);
        }
        // A new INTA# level ends the slice too: a live host hears it between slices.
        if self.immr.dma.has_dirty() || self.pci_remap || self.immr.take_intx_change() {
            self.deadline = 0;
        }
    }

    fn in_block(&self, pc: u32) -> bool {
        self.block_len > 0 && pc >= self.block_start && u64::from(pc - self.block_start) / 4 < self.block_len
    }

    /// Exact instruction count before the instruction at `pc` (inside the current block).
    pub fn count_at(&self, pc: u32) -> u64 {
        if self.in_block(pc) {
            self.done + u64::from(pc - self.block_start) / 4
        } else {
            self.done
        }
    }

    /// Close the current block at `pc`; `executed` says whether the instruction at `pc` itself ran.
    pub fn settle_at(&mut self, pc: u32, executed: bool) {
        if self.in_block(pc) {
            self.done = self.count_at(pc) + u64::from(executed);
        } else {
            self.done += self.block_len;
        }
        self.block_len = 0;
    }

    /// Record the first reason to stop; later ones are consequences of it.
    pub fn request_stop(&mut self, stop: Stop) {
        if self.stop.is_none() {
            self.stop = Some(stop);
        }
    }
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new(Wiring::NONE)
    }
}

pub fn gpr_id(n: u32) -> i32 {
    RegisterPPC::R0 as i32 + n as i32
}

pub fn read_gpr(uc: &Uc<'_>, n: u32) -> u32 {
    uc.reg_read(gpr_id(n)).unwrap_or(0) as u32
}

pub fn read_pc(uc: &Uc<'_>) -> u32 {
    uc.reg_read(RegisterPPC::PC).unwrap_or(0) as u32
}

pub fn read_msr(uc: &Uc<'_>) -> u32 {
    uc.reg_read(RegisterPPC::MSR).unwrap_or(0) as u32
}

/// The instruction word at `addr` as the core would fetch it (through the BATs when MSR[IR] is set).
pub fn fetch_word(uc: &Uc<'_>, addr: u32) -> Option<u32> {
    let mut b = [0u8; 4];
    if read_msr(uc) & msr::IR != 0 {
        uc.vmem_read(u64::from(addr), Prot::EXEC, &mut b).ok()?;
    } else {
        uc.mem_read(u64::from(addr), &mut b).ok()?;
    }
    Some(u32::from_be_bytes(b))
}

/// Block hook: counting, deadlines, and the stops MMIO callbacks could not perform themselves.
pub fn on_block(uc: &mut Uc<'_>, address: u64, size: u32) {
    let addr = address as u32;
    let n = u64::from(size / 4);
    let m = uc.get_data_mut();
    if m.in_stub {
        return;
    }
    let self_loop = n == 1 && m.block_len == 1 && m.block_start == addr;
    m.done += m.block_len;
    m.block_len = 0;
    m.block_start = addr;
    m.last_access_pc = None;
    m.last_access_end = 0;
    let over_limit = !m.final_approach && m.limit.is_some_and(|l| m.done + n > l);
    if over_limit {
        m.limit_reached = true;
    }
    let host = m.host_request.swap(false, std::sync::atomic::Ordering::AcqRel);
    let mut stop = m.stop.is_some() || m.done >= m.deadline || over_limit || host;
    if !stop && (m.tb.dec_pending || m.irq) && read_msr(uc) & msr::EE != 0 {
        uc.get_data_mut().request_stop(Stop::Interrupt);
        stop = true;
    }
    if !stop && self_loop && uc.get_data().not_self_branch != Some(addr) {
        if fetch_word(uc, addr) == Some(ppc::BRANCH_TO_SELF) {
            // The count stops where the firmware parked: the pass through `b .` that revealed the loop
            // is not counted, so the result does not depend on whether a slice ended just before it.
            let m = uc.get_data_mut();
            m.done -= 1;
            m.request_stop(Stop::SelfLoop);
            stop = true;
        } else {
            uc.get_data_mut().not_self_branch = Some(addr);
        }
    }
    if stop {
        let _ = uc.emu_stop();
        return;
    }
    let m = uc.get_data_mut();
    m.block_len = n;
    if let Some(profile) = &mut m.profile {
        // A block left early is counted whole: a profile, not the exact count.
        *profile.entry(addr).or_default() += n;
        if m.watched.contains(&addr) {
            let lr = uc.reg_read(RegisterPPC::LR).unwrap_or(0) as u32;
            let len = read_gpr(uc, 5);
            let call = uc.get_data_mut().calls.entry((addr, lr)).or_default();
            call.0 += 1;
            call.1 += u64::from(len);
        }
    }
}

/// Interrupt hook: Unicorn reports CPU exceptions here (with PC already advanced past the instruction) and
/// would otherwise skip them. Record and stop; the loop delivers it between slices.
pub fn on_interrupt(uc: &mut Uc<'_>, intno: u32) {
    let pc = read_pc(uc).wrapping_sub(4);
    let m = uc.get_data_mut();
    if m.in_stub {
        m.request_stop(Stop::Fault(Outcome::Unmodelled {
            addr: pc,
            size: 4,
            write: false,
            pc,
            what: format!("CPU exception {intno} inside an emulator stub"),
        }));
    } else {
        // The faulting instruction counts (it occupied the core), except a fetch that found no translation.
        m.settle_at(pc, intno != INTNO_ITLB_MISS);
        m.request_stop(Stop::Exception { intno, pc });
    }
    let _ = uc.emu_stop();
}

/// Code hook on a timebase/decrementer instruction: perform it on the emulator's model and skip it.
///
/// Why a code hook and not patching TBL/DEC in a saved CPU context between slices: a hook gives the exact
/// value at the exact instruction and depends only on Unicorn's public API, not on the layout of its
/// internal CPU state. Writing PC inside a code hook makes Unicorn leave the translation block right after
/// the hook (it checks for an exit request there), so the original instruction never executes; the
/// `timebase_*` tests check this.
pub fn on_time_insn(uc: &mut Uc<'_>, addr: u32, insn: TimeInsn) {
    if uc.get_data().in_stub {
        return;
    }
    if insn.privileged() && read_msr(uc) & msr::PR != 0 {
        // Let the core execute it: it raises the privileged-instruction program exception.
        return;
    }
    let now = uc.get_data().count_at(addr);
    let set = |uc: &mut Uc<'_>, rd: u32, v: u32| {
        let _ = uc.reg_write(gpr_id(rd), u64::from(v));
    };
    match insn {
        TimeInsn::ReadTbl(rd) => {
            let v = uc.get_data().tb.tb(now) as u32;
            set(uc, rd, v);
        }
        TimeInsn::ReadTbu(rd) => {
            let v = (uc.get_data().tb.tb(now) >> 32) as u32;
            set(uc, rd, v);
        }
        TimeInsn::ReadDec(rd) => {
            let v = uc.get_data().tb.dec(now);
            set(uc, rd, v);
        }
        TimeInsn::WriteTbl(rs) => {
            let v = read_gpr(uc, rs);
            uc.get_data_mut().tb.write_tbl(now, v);
        }
        TimeInsn::WriteTbu(rs) => {
            let v = read_gpr(uc, rs);
            uc.get_data_mut().tb.write_tbu(now, v);
        }
        TimeInsn::WriteDec(rs) => {
            let v = read_gpr(uc, rs);
            let m = uc.get_data_mut();
            m.tb.write_dec(now, v);
            // The next expiry moved: end the slice at the next block so the loop recomputes deadlines.
            m.deadline = 0;
        }
    }
    uc.get_data_mut().settle_at(addr, true);
    let _ = uc.reg_write(RegisterPPC::PC, u64::from(addr) + 4);
}

/// Code hook on an `mtspr` to a BAT word or HID0: the model's copy follows (the instruction itself runs, so
/// Unicorn translates with the new value). A BAT write ends the slice so the overlap checks follow it.
pub fn on_tracked_write(uc: &mut Uc<'_>, write: TrackedWrite) {
    if uc.get_data().in_stub {
        return;
    }
    match write {
        TrackedWrite::Hid0 { rs } => {
            let v = read_gpr(uc, rs);
            uc.get_data_mut().core.hid0 = v;
        }
        TrackedWrite::Bat { kind, pair, upper, rs } => {
            let v = read_gpr(uc, rs);
            let m = uc.get_data_mut();
            let bat = match kind {
                BatKind::Instruction => &mut m.core.ibat[pair],
                BatKind::Data => &mut m.core.dbat[pair],
            };
            if upper {
                bat.upper = v;
            } else {
                bat.lower = v;
            }
            m.bats_changed = true;
            m.deadline = 0;
        }
    }
}

/// Code hook over the exception-vector area: the firmware copies its vectors there at run time, so the
/// timebase and tracked instructions in them cannot be found by scanning the ELF; and U-Boot's leftover
/// vectors (see [`uboot::LEFTOVER_VECTOR_WORD`]) stop the run when entered.
pub fn on_vector_code(uc: &mut Uc<'_>, address: u64, _size: u32) {
    let Some(word) = fetch_word(uc, address as u32) else { return };
    if let Some(insn) = TimeInsn::decode(word) {
        on_time_insn(uc, address as u32, insn);
    } else if let Some(write) = TrackedWrite::decode(word) {
        on_tracked_write(uc, write);
    } else if word == uboot::LEFTOVER_VECTOR_WORD && !uc.get_data().in_stub {
        let addr = address as u32;
        let m = uc.get_data_mut();
        m.settle_at(addr, false);
        m.request_stop(Stop::Fault(Outcome::Unmodelled {
            addr,
            size: 4,
            write: false,
            pc: addr,
            what: format!(
                "entered U-Boot's exception vector {:#x}, left over from before `go`: an exception was taken \
                 before the program installed its own vectors",
                addr & !0xFF
            ),
        }));
        let _ = uc.emu_stop();
    }
}

/// Memory hook over a range two valid data BATs cover: with data translation on, the access is hit by both.
pub fn on_overlapping_data(uc: &mut Uc<'_>, addr: u64, size: usize, write: bool) {
    if uc.get_data().in_stub || read_msr(uc) & msr::DR == 0 {
        return;
    }
    let (pc, _) = locate_access(uc, addr as u32, size);
    let what = overlap_report(&uc.get_data().core.dbat, "DBAT", addr);
    uc.get_data_mut().request_stop(Stop::Fault(Outcome::Unmodelled {
        addr: addr as u32,
        size: size as u32,
        write,
        pc,
        what,
    }));
}

/// Code hook over a range two valid instruction BATs cover: with instruction translation on, the fetch is
/// hit by both.
pub fn on_overlapping_code(uc: &mut Uc<'_>, address: u64, _size: u32) {
    if uc.get_data().in_stub || read_msr(uc) & msr::IR == 0 {
        return;
    }
    let addr = address as u32;
    let what = overlap_report(&uc.get_data().core.ibat, "IBAT", address);
    let m = uc.get_data_mut();
    m.settle_at(addr, false);
    m.request_stop(Stop::Fault(Outcome::Unmodelled { addr, size: 4, write: false, pc: addr, what }));
    let _ = uc.emu_stop();
}

fn overlap_report(bats: &[Bat; BAT_PAIRS], name: &str, addr: u64) -> String {
    let hits: Vec<String> = bats
        .iter()
        .enumerate()
        .filter_map(|(n, b)| b.supervisor_block().map(|(s, l)| (n, s, l)))
        .filter(|&(_, s, l)| (s..s + l).contains(&addr))
        .map(|(n, s, l)| format!("{name}{n} ({s:#010x}, {} MiB)", l >> 20))
        .collect();
    format!(
        "access hit by two valid BATs, {}: overlapping BATs are a programming error on the e300 (U-Boot's \
         BATs 4-7 left in place?)",
        hits.join(" and ")
    )
}

/// Which instruction of the current block made the access to `addr`, and the instruction count there; the
/// access is remembered for the next one in the block.
///
/// Unicorn only updates PC at block starts, so MMIO callbacks see the block's first address. The block is
/// straight-line code, the registers are up to date when the callback runs, and accesses happen in order:
/// an instruction making several accesses (multiple-word, split floating-point) makes them one after the
/// other at consecutive addresses; otherwise the first load/store after the last identified one whose effective address range
/// covers `addr` is it. If none matches (code not identity-mapped, unusual instruction) the block start is
/// reported.
fn locate_access(uc: &mut Uc<'_>, addr: u32, size: usize) -> (u32, u64) {
    let (pc, count, span_end) = find_access(uc, addr);
    let m = uc.get_data_mut();
    m.last_access_pc = Some(pc);
    m.last_access_end = addr.wrapping_add(size as u32);
    m.last_access_span_end = span_end;
    (pc, count)
}

/// (PC, instruction count there, end of the bytes the instruction touches).
fn find_access(uc: &Uc<'_>, addr: u32) -> (u32, u64, u32) {
    let m = uc.get_data();
    if m.block_len == 0 {
        return (read_pc(uc), m.done, addr);
    }
    if let Some(last) = m.last_access_pc {
        // The next part of the instruction found last (its bytes as computed then, when its registers held
        // what it used).
        if addr == m.last_access_end && addr < m.last_access_span_end {
            return (last, m.count_at(last), m.last_access_span_end);
        }
    }
    let start = m.last_access_pc.map_or(m.block_start, |last| last + 4);
    let end = m.block_start + (m.block_len as u32) * 4;
    for pc in (start..end).step_by(4) {
        let Some(access) = fetch_word(uc, pc).and_then(ppc::decode_mem_access) else {
            continue;
        };
        // Before an update-form access completes, rA still holds the base.
        let base = access.ra.map_or(0, |r| read_gpr(uc, r));
        let index = access.rb.map_or(0, |r| read_gpr(uc, r));
        let ea = base.wrapping_add(index).wrapping_add(access.displacement as u32);
        if addr.wrapping_sub(ea) < access.span {
            return (pc, m.count_at(pc), ea.wrapping_add(access.span));
        }
    }
    (m.block_start, m.done, addr)
}

/// MMIO read of the IMMR block.
pub fn on_immr_read(uc: &mut Uc<'_>, offset: u64, size: usize) -> u64 {
    let addr = IMMR_BASE + offset as u32;
    let (pc, now) = locate_access(uc, addr, size);
    let m = uc.get_data_mut();
    let result = m.immr.read(offset as u32, size as u32, now);
    m.after_device_change();
    match result {
        Ok(v) => u64::from(v),
        Err(what) => {
            m.request_stop(Stop::Fault(Outcome::Unmodelled { addr, size: size as u32, write: false, pc, what }));
            0
        }
    }
}

/// MMIO write of the IMMR block.
pub fn on_immr_write(uc: &mut Uc<'_>, offset: u64, size: usize, value: u64) {
    let addr = IMMR_BASE + offset as u32;
    let (pc, now) = locate_access(uc, addr, size);
    let m = uc.get_data_mut();
    let result = m.immr.write(offset as u32, size as u32, value as u32, now);
    if result.is_ok() && offset as u32 == UART1_USCR {
        m.markers.push(Marker { value: value as u8, instructions: now, virtual_ps: now * PS_PER_INSTRUCTION });
    }
    match result {
        Ok(None) => {}
        Ok(Some(Effect::TimebaseEnable(on))) => {
            m.tb.set_enabled(now, on);
            m.deadline = 0;
        }
        Ok(Some(Effect::WatchdogChanged)) => m.deadline = 0,
        Ok(Some(Effect::Reset(cause))) => m.request_stop(Stop::Reset(cause)),
        Ok(Some(Effect::PciLawChanged)) => m.pci_remap = true,
        Err(what) => {
            m.request_stop(Stop::Fault(Outcome::Unmodelled { addr, size: size as u32, write: true, pc, what }))
        }
    }
    m.after_device_change();
}

/// Host RAM offset of a CPU access of `size` bytes at local `addr` through a PCI outbound window.
fn pci_target(m: &Machine, addr: u32, size: usize) -> Result<u64, String> {
    match m.immr.pci.resolve(addr, size as u64, m.immr.mem.host.len())? {
        (Target::Host(offset), n) if n == size as u64 => Ok(offset),
        (Target::Host(_), _) => {
            Err(format!("PCI master abort: the {size}-byte access at {addr:#010x} crosses the end of its window"))
        }
        // PCI mappings never cover RAM (they are clipped around it).
        (Target::Ram(_), _) => Err("PCI window over RAM".to_string()),
    }
}

fn pci_fault(m: &mut Machine, addr: u32, size: usize, write: bool, pc: u32, what: String) {
    m.request_stop(Stop::Fault(Outcome::Unmapped { addr, size: size as u32, write, pc, what }));
}

/// MMIO read in a PCI local access window: a PCI memory read of host RAM through an outbound window. The
/// bytes are in bus (address) order, so the core sees them big-endian, as on hardware.
pub fn on_pci_read(uc: &mut Uc<'_>, addr: u32, size: usize) -> u64 {
    let (pc, _) = locate_access(uc, addr, size);
    let m = uc.get_data_mut();
    let mut buf = [0u8; 8];
    let size = size.min(8);
    match pci_target(m, addr, size) {
        Ok(offset) if m.immr.mem.host.read(offset, &mut buf[..size]) => {
            buf[..size].iter().fold(0u64, |v, &b| (v << 8) | u64::from(b))
        }
        Ok(_) => {
            pci_fault(m, addr, size, false, pc, "PCI master abort: beyond host RAM".into());
            0
        }
        Err(what) => {
            pci_fault(m, addr, size, false, pc, what);
            0
        }
    }
}

/// MMIO write in a PCI local access window: a posted PCI memory write into host RAM.
pub fn on_pci_write(uc: &mut Uc<'_>, addr: u32, size: usize, value: u64) {
    let (pc, _) = locate_access(uc, addr, size);
    let m = uc.get_data_mut();
    let size = size.min(8);
    let bytes = value.to_be_bytes();
    match pci_target(m, addr, size) {
        Ok(offset) if m.immr.mem.host.write(offset, &bytes[8 - size..]) => {}
        Ok(_) => pci_fault(m, addr, size, true, pc, "PCI master abort: beyond host RAM".into()),
        Err(what) => pci_fault(m, addr, size, true, pc, what),
    }
}

/// MMIO read of the NOR flash window.
pub fn on_flash_read(uc: &mut Uc<'_>, offset: u64, size: usize) -> u64 {
    let addr = FLASH_BASE.wrapping_add(offset as u32);
    let (pc, now) = locate_access(uc, addr, size);
    let m = uc.get_data_mut();
    match m.flash.read(offset as u32, size as u32, now) {
        Ok(v) => u64::from(v),
        Err(e) => {
            m.request_stop(Stop::Fault(Outcome::Unmodelled {
                addr,
                size: size as u32,
                write: false,
                pc,
                what: format!("NOR flash: {e}"),
            }));
            0
        }
    }
}

/// MMIO write of the NOR flash window: a command cycle.
pub fn on_flash_write(uc: &mut Uc<'_>, offset: u64, size: usize, value: u64) {
    let addr = FLASH_BASE.wrapping_add(offset as u32);
    let (pc, now) = locate_access(uc, addr, size);
    let m = uc.get_data_mut();
    match m.flash.write(offset as u32, size as u32, value as u32, now) {
        Ok(started) => {
            // A power cut half-way through this operation must happen at its time.
            if let Some(t) = m.flash.cut_time().filter(|_| started) {
                m.deadline = m.deadline.min(t);
            }
        }
        Err(e) => m.request_stop(Stop::Fault(Outcome::Unmodelled {
            addr,
            size: size as u32,
            write: true,
            pc,
            what: format!("NOR flash: {e}"),
        })),
    }
}

/// Address ranges of the board that PCI local access windows must not be mapped over.
const FIXED_REGIONS: [(u64, u64); 4] = [
    (0, RAM_SIZE as u64),
    (IMMR_BASE as u64, IMMR_SIZE as u64),
    (STUB_PAGE as u64, STUB_PAGE_SIZE as u64),
    (FLASH_BASE as u64, FLASH_SIZE as u64),
];

/// The ranges the enabled PCI LAWs cover, merged and with the board's fixed regions cut out (an overlap is a
/// configuration error on hardware; here the fixed region wins and the rest of the window works).
pub fn pci_ranges(immr: &Immr) -> Vec<(u64, u64)> {
    let mut ranges = immr.pci_law_ranges();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, len) in ranges {
        match merged.last_mut() {
            Some((s, l)) if start <= *s + *l => *l = (*l).max(start + len - *s),
            _ => merged.push((start, len)),
        }
    }
    let mut out = Vec::new();
    for (start, len) in merged {
        let mut pieces = vec![(start, start + len)];
        for &(fs, fl) in &FIXED_REGIONS {
            let fe = fs + fl;
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    if fe <= a || fs >= b {
                        vec![(a, b)]
                    } else {
                        [(a, fs.max(a)), (fe.min(b), b)].into_iter().filter(|(x, y)| x < y).collect()
                    }
                })
                .collect();
        }
        out.extend(pieces.into_iter().map(|(a, b)| (a, b - a)));
    }
    out
}

fn map_pci(uc: &mut Uc<'_>, start: u64, len: u64) -> bool {
    uc.mmio_map(
        start,
        len,
        Some(move |uc: &mut Uc<'_>, off: u64, size: usize| on_pci_read(uc, (start + off) as u32, size)),
        Some(move |uc: &mut Uc<'_>, off: u64, size: usize, value: u64| {
            on_pci_write(uc, (start + off) as u32, size, value)
        }),
    )
    .is_ok()
}

/// Make Unicorn's MMIO mappings match the PCI LAWs (between slices).
pub fn sync_pci_mappings(uc: &mut Uc<'_>) {
    let desired = pci_ranges(&uc.get_data().immr);
    let mapped = std::mem::take(&mut uc.get_data_mut().pci_mapped);
    let mut now_mapped = Vec::new();
    for r in mapped {
        if desired.contains(&r) {
            now_mapped.push(r);
        } else {
            let _ = uc.mem_unmap(r.0, r.1);
        }
    }
    for r in desired {
        if !now_mapped.contains(&r) && map_pci(uc, r.0, r.1) {
            now_mapped.push(r);
        }
    }
    let m = uc.get_data_mut();
    m.pci_mapped = now_mapped;
    m.pci_remap = false;
}

/// An access to an unmapped address that a PCI LAW enabled during this slice covers: map that window now
/// (Unicorn retries the access) unless it overlaps a stale mapping, which only the slice boundary can undo.
fn map_pci_on_demand(uc: &mut Uc<'_>, addr: u64) -> bool {
    let m = uc.get_data();
    let Some(r) = pci_ranges(&m.immr).into_iter().find(|&(s, l)| (s..s + l).contains(&addr)) else {
        return false;
    };
    let overlaps = m.pci_mapped.iter().any(|&(s, l)| s < r.0 + r.1 && r.0 < s + l);
    if overlaps || !map_pci(uc, r.0, r.1) {
        return false;
    }
    uc.get_data_mut().pci_mapped.push(r);
    true
}

/// What lives (or does not) at an address outside RAM, IMMR, flash and the PCI windows.
pub fn describe_unmapped(addr: u32) -> String {
    if (STUB_PAGE..STUB_PAGE + STUB_PAGE_SIZE).contains(&addr) {
        "emulator-private page (exception stubs), not part of the board".to_string()
    } else {
        "nothing is mapped at this address on the board".to_string()
    }
}

/// Unmapped access (and firmware access to the stub page): Unicorn has synchronised PC to the exact
/// instruction before calling this.
pub fn on_bad_access(uc: &mut Uc<'_>, kind: MemType, address: u64, size: usize) -> bool {
    let pc = read_pc(uc);
    let addr = address as u32;
    let write = matches!(kind, MemType::WRITE_UNMAPPED | MemType::WRITE_PROT);
    let fetch = matches!(kind, MemType::FETCH_UNMAPPED | MemType::FETCH_PROT);
    if matches!(kind, MemType::READ_UNMAPPED | MemType::WRITE_UNMAPPED) && map_pci_on_demand(uc, address) {
        return true;
    }
    let mut what = describe_unmapped(addr);
    if uc.get_data().pci_remap {
        what = format!(
            "{what} (a PCI local access window moved in this block; the emulator follows the move at the \
             next branch, so access the new window after one)"
        );
    }
    if fetch {
        let mmio = (FLASH_BASE..=u32::MAX).contains(&addr)
            || uc.get_data().pci_mapped.iter().any(|&(s, l)| (s..s + l).contains(&address));
        what = if mmio {
            "instruction fetch: executing from the flash or a PCI window is not modelled".to_string()
        } else {
            format!("instruction fetch: {what}")
        };
    }
    let m = uc.get_data_mut();
    m.settle_at(pc, false);
    m.request_stop(Stop::Fault(Outcome::Unmapped { addr, size: size as u32, write, pc, what }));
    false
}

/// Code hook on the stub page: only the emulator may run code there.
pub fn on_stub_code(uc: &mut Uc<'_>, address: u64, _size: u32) {
    if uc.get_data().in_stub {
        return;
    }
    let addr = address as u32;
    let m = uc.get_data_mut();
    m.settle_at(addr, false);
    m.request_stop(Stop::Fault(Outcome::Unmapped {
        addr,
        size: 4,
        write: false,
        pc: addr,
        what: format!("instruction fetch: {}", describe_unmapped(addr)),
    }));
    let _ = uc.emu_stop();
}
