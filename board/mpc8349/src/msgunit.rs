//! The message unit: doorbells and message registers between the host and the agent
//! (little-endian registers).

use crate::regs::Reg;

const OMISR: usize = 0x30;
const OMIMR: usize = 0x34;
const IMR0: usize = 0x50;
const OMR0: usize = 0x58;
const ODR: usize = 0x60;
const IDR: usize = 0x68;
const IMISR: usize = 0x80;
const IMIMR: usize = 0x84;

/// IMISR / IMIMR bits.
pub mod inbound {
    pub const IM0I: u32 = 0x1;
    pub const IM1I: u32 = 0x2;
    pub const IDI: u32 = 0x8;
}

/// OMISR / OMIMR bits.
pub mod outbound {
    pub const OM0I: u32 = 0x1;
    pub const OM1I: u32 = 0x2;
    pub const ODI: u32 = 0x8;
}

pub struct MessageUnit {
    base: usize,
}

impl MessageUnit {
    /// # Safety
    /// `base` is IMMR + 0x8000, and no other driver owns the message unit.
    pub const unsafe fn new(base: usize) -> Self {
        MessageUnit { base }
    }

    fn reg(&self, offset: usize) -> Reg<u32> {
        // SAFETY: every offset used is a 32-bit register of the message unit (docs/REGISTERS.md).
        unsafe { Reg::at(self.base + offset) }
    }

    pub fn inbound_status(&self) -> u32 {
        self.reg(IMISR).read_le()
    }

    /// Acknowledge inbound message interrupts (IM0I/IM1I, write-1-to-clear).
    pub fn clear_inbound(&self, bits: u32) {
        self.reg(IMISR).write_le(bits);
    }

    /// 1 = masked.
    pub fn mask_inbound(&self, bits: u32) {
        self.reg(IMIMR).write_le(bits);
    }

    pub fn mask_outbound(&self, bits: u32) {
        self.reg(OMIMR).write_le(bits);
    }

    pub fn outbound_status(&self) -> u32 {
        self.reg(OMISR).read_le()
    }

    /// The doorbell bits the host has rung.
    pub fn doorbell(&self) -> u32 {
        self.reg(IDR).read_le()
    }

    /// Clear the given inbound doorbell bits (write-1-to-clear).
    pub fn ack_doorbell(&self, bits: u32) {
        self.reg(IDR).write_le(bits);
    }

    /// Inbound message register 0 or 1 (written by the host).
    pub fn inbound_message(&self, n: usize) -> u32 {
        self.reg(IMR0 + 4 * (n & 1)).read_le()
    }

    /// Outbound message register 0 or 1; raises OM0I/OM1I towards the host.
    pub fn send_message(&self, n: usize, value: u32) {
        self.reg(OMR0 + 4 * (n & 1)).write_le(value);
    }

    /// Ring the host: set outbound doorbell bits (the host clears them).
    pub fn ring_host(&self, bits: u32) {
        self.reg(ODR).write_le(bits);
    }
}
