//! Register-level emulator of the MPC8349EMDS board (an agent in the bpnet backplane) running the real
//! firmware ELF on Unicorn's e300c1 core.
//!
//! What is modelled: 256 MiB of DDR in a shared file, the IMMR blocks listed in docs/REGISTERS.md (system
//! configuration, watchdog, reset, clocks, DUART, IPIC, message unit, DMA controller, PCI windows), host RAM
//! behind the PCI outbound windows (a second shared file), the local-bus NOR flash (a third), the core's
//! timebase and decrementer, exception delivery (external interrupts included), and an exact instruction
//! count that is the virtual clock (533.33 MHz, one instruction per cycle). DMA takes the time the bus model
//! ([`BusModel`]) gives it. Anything else the firmware touches stops the run with the address, the access and
//! the PC.
//!
//! Unicorn facts this relies on are written down where they are used; the BAT finding is in BATS.md.

pub mod agentcfg;
mod board;
mod bus;
mod dma;
mod duart;
mod elf;
mod flash;
mod immr;
mod ipic;
pub mod ivshmem;
mod log;
mod machine;
mod memory;
mod msgunit;
mod outcome;
mod pci;
mod ppc;
pub mod realtime;
mod time;
mod uboot;

pub mod control;
pub mod fuzz;
pub mod host;
pub mod intx;
pub mod netbench;
pub mod powercut;
pub mod proxy;
pub use board::{
    Board, BusError, Config, FunctionStats, LoadInfo, Marker, Output, OutsideRam, SetupError, DEFAULT_HOST_RAM_SIZE,
    INITIAL_SP, LOG_RING_SYMBOL, SHARED_LEN_SYMBOL, SHARED_SYMBOL,
};
pub use bpnet_test_support::host::HostAccessError;
pub use bus::{BusModel, BusTiming, Direction};
pub use dma::DmaStats;
pub use elf::{LoadError, RAM_SIZE};
pub use flash::{BUFFER_WORDS as FLASH_BUFFER_WORDS, FLASH_BASE, FLASH_SIZE};
pub use immr::{le_register, ConfigRetry, Immr, IMMR_BASE, STANDALONE_BAR0_ADDRESS};
pub use machine::STUB_PAGE;
pub use msgunit::OutboundDoorbells;
pub use outcome::{Exception, Outcome};
pub use time::{CORE_HZ, PS_PER_INSTRUCTION};

#[cfg(test)]
mod tests;
