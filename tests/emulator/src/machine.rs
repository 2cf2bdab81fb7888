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

use crate::immr::{Effect, Immr, IMMR_BASE};
use crate::outcome::Outcome;
use crate::ppc::{self, msr, TimeInsn};
use crate::time::TimeBase;

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
/// Each stub is two instructions.
pub const STUB_LEN: u32 = 8;

pub fn stub_code() -> Vec<(u32, [u32; 2])> {
    use ppc::spr;
    vec![
        (
            STUB_SET_SRR,
            [ppc::mtspr(spr::SRR0, 3), ppc::mtspr(spr::SRR1, 4)],
        ),
        (
            STUB_SET_DAR_DSISR,
            [ppc::mtspr(spr::DAR, 3), ppc::mtspr(spr::DSISR, 4)],
        ),
        (
            STUB_GET_MISS,
            [ppc::mfspr(3, spr::DMISS), ppc::mfspr(4, spr::IMISS)],
        ),
    ]
}

/// Unicorn's number for an instruction-fetch TLB miss (QEMU's POWERPC_EXCP_IFTLB).
pub const INTNO_ITLB_MISS: u32 = 78;

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
    /// Last instruction of the current block identified as making an IMMR access.
    pub last_access_pc: Option<u32>,
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
    /// A one-instruction self-loop at this address was found not to be `b .` (e.g. `bdnz .`).
    pub not_self_branch: Option<u32>,
}

impl Machine {
    pub fn new() -> Machine {
        Machine {
            immr: Immr::new(0),
            tb: TimeBase::new(true, 0),
            done: 0,
            block_start: 0,
            block_len: 0,
            last_access_pc: None,
            deadline: u64::MAX,
            limit: None,
            limit_reached: false,
            final_approach: false,
            stop: None,
            in_stub: false,
            not_self_branch: None,
        }
    }

    fn in_block(&self, pc: u32) -> bool {
        self.block_len > 0
            && pc >= self.block_start
            && u64::from(pc - self.block_start) / 4 < self.block_len
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
        Machine::new()
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
    let over_limit = !m.final_approach && m.limit.is_some_and(|l| m.done + n > l);
    if over_limit {
        m.limit_reached = true;
    }
    let mut stop = m.stop.is_some() || m.done >= m.deadline || over_limit;
    if !stop && m.tb.dec_pending && read_msr(uc) & msr::EE != 0 {
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
    uc.get_data_mut().block_len = n;
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

/// Code hook over the exception-vector area: the firmware copies its vectors there at run time, so the
/// timebase instructions in them cannot be found by scanning the ELF.
pub fn on_vector_code(uc: &mut Uc<'_>, address: u64, _size: u32) {
    if let Some(insn) = fetch_word(uc, address as u32).and_then(TimeInsn::decode) {
        on_time_insn(uc, address as u32, insn);
    }
}

/// Which instruction of the current block made the access to `addr`, and the instruction count there.
///
/// Unicorn only updates PC at block starts, so MMIO callbacks see the block's first address. The block is
/// straight-line code, the registers are up to date when the callback runs, and accesses happen in order:
/// the first load/store from the last identified one on whose effective address range covers `addr` is it.
/// If none matches (code not identity-mapped, unusual instruction) the block start is reported.
fn locate_access(uc: &Uc<'_>, addr: u32) -> (u32, u64) {
    let m = uc.get_data();
    if m.block_len == 0 {
        return (read_pc(uc), m.done);
    }
    let start = m.last_access_pc.unwrap_or(m.block_start);
    let end = m.block_start + (m.block_len as u32) * 4;
    for pc in (start..end).step_by(4) {
        let Some(access) = fetch_word(uc, pc).and_then(ppc::decode_mem_access) else {
            continue;
        };
        let base = access.ra.map_or(0, |r| read_gpr(uc, r));
        let index = access.rb.map_or(0, |r| read_gpr(uc, r));
        let ea = base
            .wrapping_add(index)
            .wrapping_add(access.displacement as u32);
        if addr.wrapping_sub(ea) < access.span {
            return (pc, m.count_at(pc));
        }
    }
    (m.block_start, m.done)
}

/// MMIO read of the IMMR block.
pub fn on_immr_read(uc: &mut Uc<'_>, offset: u64, size: usize) -> u64 {
    let addr = IMMR_BASE + offset as u32;
    let (pc, now) = locate_access(uc, addr);
    let m = uc.get_data_mut();
    m.last_access_pc = Some(pc);
    match m.immr.read(offset as u32, size as u32, now) {
        Ok(v) => u64::from(v),
        Err(what) => {
            m.request_stop(Stop::Fault(Outcome::Unmodelled {
                addr,
                size: size as u32,
                write: false,
                pc,
                what,
            }));
            0
        }
    }
}

/// MMIO write of the IMMR block.
pub fn on_immr_write(uc: &mut Uc<'_>, offset: u64, size: usize, value: u64) {
    let addr = IMMR_BASE + offset as u32;
    let (pc, now) = locate_access(uc, addr);
    let m = uc.get_data_mut();
    m.last_access_pc = Some(pc);
    match m.immr.write(offset as u32, size as u32, value as u32, now) {
        Ok(None) => {}
        Ok(Some(Effect::TimebaseEnable(on))) => {
            m.tb.set_enabled(now, on);
            m.deadline = 0;
        }
        Ok(Some(Effect::WatchdogChanged)) => m.deadline = 0,
        Ok(Some(Effect::Reset(cause))) => m.request_stop(Stop::Reset(cause)),
        Err(what) => m.request_stop(Stop::Fault(Outcome::Unmodelled {
            addr,
            size: size as u32,
            write: true,
            pc,
            what,
        })),
    }
}

/// What lives (or does not) at an address outside RAM and IMMR.
pub fn describe_unmapped(addr: u32) -> String {
    if (0xFE00_0000..=0xFFFF_FFFF).contains(&addr) {
        "NOR flash (0xFE000000, 32 MiB) is not modelled yet".to_string()
    } else if (STUB_PAGE..STUB_PAGE + STUB_PAGE_SIZE).contains(&addr) {
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
    let mut what = describe_unmapped(addr);
    if fetch {
        what = format!("instruction fetch: {what}");
    }
    let m = uc.get_data_mut();
    m.settle_at(pc, false);
    m.request_stop(Stop::Fault(Outcome::Unmapped {
        addr,
        size: size as u32,
        write,
        pc,
        what,
    }));
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
