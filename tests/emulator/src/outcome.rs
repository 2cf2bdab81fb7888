//! How a run ends, and what the emulator reports about exceptions.

use std::fmt;

/// An exception the emulator delivered to the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// Vector offset: 0x200 machine check, 0x700 program, 0x900 decrementer, 0xC00 system call, …
    pub vector: u32,
    /// Address the core jumped to (the offset, or 0xFFF0_0000 + offset with MSR[IP]).
    pub address: u32,
    pub srr0: u32,
    pub srr1: u32,
    /// Instruction count at delivery.
    pub instructions: u64,
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exception {:#05x} (SRR0 {:#010x}, SRR1 {:#010x})", self.vector, self.srr0, self.srr1)
    }
}

/// Why [`crate::Board::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The core sits in `b .` with MSR[EE] set and no modelled source will interrupt it.
    Idle { pc: u32 },
    /// The configured instruction limit was reached exactly.
    InstructionLimit,
    /// The core sits in `b .` with MSR[EE] clear (it can never leave), or a machine check hit it with
    /// MSR[ME] clear (`checkstop`). `last_exception` is the last one delivered, typically the fault that
    /// led here.
    Halted { pc: u32, last_exception: Option<Exception>, checkstop: bool },
    /// The firmware used a register or feature the board model does not have (or not that way).
    Unmodelled { addr: u32, size: u32, write: bool, pc: u32, what: String },
    /// The firmware accessed an address where the board has nothing (or nothing modelled yet).
    Unmapped { addr: u32, size: u32, write: bool, pc: u32, what: String },
}

impl Outcome {
    /// A short machine-readable name: `idle`, `instruction_limit`, `halted`, `unmodelled`, `unmapped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Idle { .. } => "idle",
            Outcome::InstructionLimit => "instruction_limit",
            Outcome::Halted { .. } => "halted",
            Outcome::Unmodelled { .. } => "unmodelled",
            Outcome::Unmapped { .. } => "unmapped",
        }
    }

    /// Exit status of the `bpnet-emu` command for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Idle { .. } | Outcome::InstructionLimit => 0,
            Outcome::Halted { .. } => 1,
            Outcome::Unmodelled { .. } | Outcome::Unmapped { .. } => 2,
        }
    }
}

fn access(f: &mut fmt::Formatter<'_>, addr: u32, size: u32, write: bool, pc: u32) -> fmt::Result {
    let dir = if write { "write" } else { "read" };
    write!(f, "{size}-byte {dir} at {addr:#010x}")?;
    if (crate::immr::IMMR_BASE..crate::immr::IMMR_BASE + crate::immr::IMMR_SIZE).contains(&addr) {
        write!(f, " (IMMR+{:#x})", addr - crate::immr::IMMR_BASE)?;
    }
    write!(f, ", PC {pc:#010x}")
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Idle { pc } => write!(f, "idle (waiting for an interrupt at PC {pc:#010x})"),
            Outcome::InstructionLimit => write!(f, "instruction limit reached"),
            Outcome::Halted { pc, last_exception, checkstop } => {
                if *checkstop {
                    write!(f, "checkstop: machine check with MSR[ME] clear at PC {pc:#010x}")
                } else {
                    write!(f, "halted at PC {pc:#010x} with interrupts off")?;
                    if let Some(e) = last_exception {
                        write!(f, " (last {e})")?;
                    }
                    Ok(())
                }
            }
            Outcome::Unmodelled { addr, size, write, pc, what } => {
                write!(f, "unmodelled: {what}: ")?;
                access(f, *addr, *size, *write, *pc)
            }
            Outcome::Unmapped { addr, size, write, pc, what } => {
                write!(f, "unmapped access: {what}: ")?;
                access(f, *addr, *size, *write, *pc)
            }
        }
    }
}
