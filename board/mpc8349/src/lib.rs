//! Thin drivers for the MPC8349E's on-chip blocks, each reached through the IMMR window.
//! Register offsets and bits come from `docs/REGISTERS.md`, the table the board emulator is
//! written from too.
//!
//! Pure decoding (clock ratios, IDs) is plain Rust and unit-tested on the host; register access is
//! volatile and only meaningful on the board.
#![no_std]

pub mod clocks;
pub mod dma;
pub mod duart;
pub mod ipic;
pub mod msgunit;
pub mod pci;
pub mod pcicfg;
pub mod regs;
pub mod reset;
pub mod sysconf;

/// The IMMR window: the base address of every block below.
#[derive(Clone, Copy, Debug)]
pub struct Immr {
    base: usize,
}

impl Immr {
    /// The drivers are stateless views of their registers; code that uses one block from both the
    /// main loop and an interrupt handler masks interrupts around the main loop's use.
    ///
    /// # Safety
    /// `base` must be where the IMMR window really is (IMMRBAR), mapped cache-inhibited and
    /// guarded.
    pub const unsafe fn new(base: usize) -> Self {
        Immr { base }
    }

    pub const fn base(&self) -> usize {
        self.base
    }

    pub fn sysconf(&self) -> sysconf::SysConf {
        // SAFETY: the block sits at its documented offset inside the IMMR window `new` vouched for.
        unsafe { sysconf::SysConf::new(self.base) }
    }

    pub fn clocks(&self) -> clocks::Clocks {
        // SAFETY: as above, offset 0xA00.
        unsafe { clocks::Clocks::new(self.base + 0xA00) }
    }

    pub fn reset(&self) -> reset::Reset {
        // SAFETY: as above, offset 0x900.
        unsafe { reset::Reset::new(self.base + 0x900) }
    }

    /// DMA channel 0..=3.
    pub fn dma(&self, n: usize) -> dma::Channel {
        // SAFETY: as above, offset 0x8100 + 0x80·n with n masked to 0..=3.
        unsafe { dma::Channel::new(self.base + 0x8100 + 0x80 * (n & 3)) }
    }

    pub fn message_unit(&self) -> msgunit::MessageUnit {
        // SAFETY: as above, offset 0x8000.
        unsafe { msgunit::MessageUnit::new(self.base + 0x8000) }
    }

    pub fn ipic(&self) -> ipic::Ipic {
        // SAFETY: as above, offset 0x700.
        unsafe { ipic::Ipic::new(self.base + 0x700) }
    }

    pub fn pci_windows(&self) -> pci::Windows {
        // SAFETY: as above; the LAW and ATMU registers sit at their documented offsets.
        unsafe { pci::Windows::new(self.base) }
    }

    /// The configuration port onto the agent's own PCI header (0x8300).
    pub fn pci_config(&self) -> pcicfg::ConfigPort {
        // SAFETY: as above, offset 0x8300.
        unsafe { pcicfg::ConfigPort::new(self.base + 0x8300) }
    }

    /// UART0 (0x4500) or UART1 (0x4600).
    pub fn duart(&self, n: usize) -> duart::Uart {
        // SAFETY: as above, offsets 0x4500 and 0x4600.
        unsafe { duart::Uart::new(self.base + 0x4500 + 0x100 * (n & 1)) }
    }
}
