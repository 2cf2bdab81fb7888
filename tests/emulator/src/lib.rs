//! Register-level emulator of the MPC8349EMDS board (an agent in the bpnet backplane) running the real
//! firmware ELF on Unicorn's e300c1 core.
//!
//! What is modelled: 256 MiB of DDR in a shared file, the IMMR blocks listed in docs/REGISTERS.md (system
//! configuration, watchdog, reset, clocks, DUART), the core's timebase and decrementer, exception delivery,
//! and an exact instruction count that is the virtual clock (533.33 MHz, one instruction per cycle).
//! Anything else the firmware touches stops the run with the address, the access and the PC.
//!
//! Unicorn facts this relies on are written down where they are used; the BAT finding is in BATS.md.

mod board;
mod duart;
mod elf;
mod immr;
mod log;
mod machine;
mod outcome;
mod ppc;
mod time;

pub use board::{
    Board, Config, LoadInfo, Output, OutsideRam, SetupError, INITIAL_SP, LOG_RING_SYMBOL,
};
pub use elf::{LoadError, RAM_SIZE};
pub use immr::{le_register, Immr, IMMR_BASE};
pub use machine::STUB_PAGE;
pub use outcome::{Exception, Outcome};
pub use time::{CORE_HZ, PS_PER_INSTRUCTION};

#[cfg(test)]
mod tests;
