//! The message unit (docs/REGISTERS.md, "Message unit"): doorbells and message registers between the host
//! (through PCI) and the agent. Registers are little-endian; this model holds their values, and the IMMR
//! layer converts what the core's load or store carries with [`crate::le_register`].
//!
//! Agent side: OMR0/1 and ODR raise outbound status (OMISR) towards the host, which asserts INTA# while an
//! unmasked OMISR bit is set; the host writes IMR0/1 and IDR, which raise inbound status (IMISR), pending
//! IPIC vector 69 while unmasked.

use std::fmt;
use std::rc::Rc;

pub const OM0I: u32 = 0x1;
pub const OM1I: u32 = 0x2;
pub const ODI: u32 = 0x8;
pub const IM0I: u32 = 0x1;
pub const IM1I: u32 = 0x2;
pub const IDI: u32 = 0x8;
/// Status and mask bits that exist.
const STATUS_BITS: u32 = 0xB;
/// Bits the message interrupts leave in the status registers (the doorbell bit follows its register).
const MESSAGE_BITS: u32 = 0x3;

pub const OMISR: u32 = 0x8030;
pub const OMIMR: u32 = 0x8034;
pub const IMR0: u32 = 0x8050;
pub const IMR1: u32 = 0x8054;
pub const OMR0: u32 = 0x8058;
pub const OMR1: u32 = 0x805C;
pub const ODR: u32 = 0x8060;
pub const IDR: u32 = 0x8068;
pub const IMISR: u32 = 0x8080;
pub const IMIMR: u32 = 0x8084;

/// Where outbound doorbells go when the host has no ODR to read (the ivshmem personality: each bit is an
/// MSI-X vector). Called with the bits the agent rang; the message unit then acknowledges them itself.
#[derive(Clone)]
pub struct OutboundDoorbells(pub Rc<dyn Fn(u32)>);

impl fmt::Debug for OutboundDoorbells {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutboundDoorbells")
    }
}

#[derive(Debug, Clone, Default)]
pub struct MessageUnit {
    imr: [u32; 2],
    omr: [u32; 2],
    odr: u32,
    idr: u32,
    /// OM0I/OM1I; ODI is derived from ODR.
    omisr: u32,
    omimr: u32,
    /// IM0I/IM1I; IDI is derived from IDR.
    imisr: u32,
    imimr: u32,
    /// INTA# level after the last change, and how often it went from deasserted to asserted.
    inta: bool,
    inta_assertions: u64,
    /// Outbound doorbells forwarded as they are rung instead of held in ODR for a host read.
    outbound: Option<OutboundDoorbells>,
}

impl MessageUnit {
    pub fn outbound_status(&self) -> u32 {
        self.omisr | if self.odr != 0 { ODI } else { 0 }
    }

    pub fn inbound_status(&self) -> u32 {
        self.imisr | if self.idr != 0 { IDI } else { 0 }
    }

    /// INTA# towards the host: an unmasked outbound status bit.
    pub fn inta(&self) -> bool {
        self.outbound_status() & !self.omimr & STATUS_BITS != 0
    }

    /// IPIC vector 69: an unmasked inbound status bit.
    pub fn agent_interrupt(&self) -> bool {
        self.inbound_status() & !self.imimr & STATUS_BITS != 0
    }

    pub fn inta_assertions(&self) -> u64 {
        self.inta_assertions
    }

    /// Count a rising edge of INTA#; called after every change.
    fn track_inta(&mut self) {
        let now = self.inta();
        if now && !self.inta {
            self.inta_assertions += 1;
        }
        self.inta = now;
    }

    /// A register read by the core (the value as the register holds it).
    pub fn read(&self, offset: u32) -> Option<u32> {
        Some(match offset {
            OMISR => self.outbound_status(),
            OMIMR => self.omimr,
            IMR0 => self.imr[0],
            IMR1 => self.imr[1],
            OMR0 => self.omr[0],
            OMR1 => self.omr[1],
            ODR => self.odr,
            IDR => self.idr,
            IMISR => self.inbound_status(),
            IMIMR => self.imimr,
            _ => return None,
        })
    }

    /// A register write by the core; `Err` for what the agent side cannot do.
    pub fn write(&mut self, offset: u32, value: u32) -> Result<(), String> {
        match offset {
            // The agent may acknowledge outbound message status too (write-1-to-clear); ODI follows ODR.
            OMISR => self.omisr &= !(value & MESSAGE_BITS),
            OMIMR => self.omimr = value & STATUS_BITS,
            IMR0 | IMR1 => {
                return Err("inbound message registers are written by the host through PCI; an agent write is \
                     not modelled"
                    .to_string())
            }
            OMR0 => {
                self.omr[0] = value;
                self.omisr |= OM0I;
            }
            OMR1 => {
                self.omr[1] = value;
                self.omisr |= OM1I;
            }
            // The agent sets outbound doorbell bits, the host clears them; with a forwarding host the bits go
            // out at once and are acknowledged here, as that host never reads ODR.
            ODR => {
                self.odr |= value;
                if let Some(sink) = &self.outbound {
                    let bits = std::mem::take(&mut self.odr);
                    if bits != 0 {
                        (sink.0)(bits);
                    }
                }
            }
            // The host sets inbound doorbell bits, the agent clears them.
            IDR => self.idr &= !value,
            IMISR => self.imisr &= !(value & MESSAGE_BITS),
            IMIMR => self.imimr = value & STATUS_BITS,
            _ => return Err("not a message unit register".to_string()),
        }
        self.track_inta();
        Ok(())
    }

    /// Host: write IDR (1s set doorbell bits).
    pub fn host_ring_doorbell(&mut self, bits: u32) {
        self.idr |= bits;
    }

    /// Host: write IMR0/IMR1 (`n` is 0 or 1), raising IM0I/IM1I.
    pub fn host_write_message(&mut self, n: usize, value: u32) {
        self.imr[n & 1] = value;
        self.imisr |= if n & 1 == 0 { IM0I } else { IM1I };
    }

    /// Host: read OMR0/OMR1.
    pub fn host_read_message(&self, n: usize) -> u32 {
        self.omr[n & 1]
    }

    /// Host: write OMISR (write-1-to-clear OM0I/OM1I).
    pub fn host_clear_outbound(&mut self, bits: u32) {
        self.omisr &= !(bits & MESSAGE_BITS);
        self.track_inta();
    }

    pub fn host_read_odr(&self) -> u32 {
        self.odr
    }

    /// Host: write ODR (1s clear doorbell bits).
    pub fn host_clear_odr(&mut self, bits: u32) {
        self.odr &= !bits;
        self.track_inta();
    }

    /// Keep the host's side across a board reset: the INTA# edge count (the host's view of the agent's life)
    /// and where outbound doorbells are forwarded (the host stays connected while the agent resets).
    pub fn carry_count(&mut self, before: &MessageUnit) {
        self.inta_assertions = before.inta_assertions;
        self.outbound.clone_from(&before.outbound);
    }

    /// Forward outbound doorbells to `sink` as they are rung (`None`: hold them in ODR for a host read).
    pub fn set_outbound_doorbells(&mut self, sink: Option<OutboundDoorbells>) {
        self.outbound = sink;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn forwarded_outbound_doorbells_are_acknowledged_and_survive_a_reset() {
        let rung = Rc::new(RefCell::new(Vec::new()));
        let seen = rung.clone();
        let mut mu = MessageUnit::default();
        mu.set_outbound_doorbells(Some(OutboundDoorbells(Rc::new(move |bits| seen.borrow_mut().push(bits)))));
        mu.write(ODR, 0x2).unwrap();
        mu.write(ODR, 0x6).unwrap();
        mu.write(ODR, 0).unwrap();
        assert_eq!(*rung.borrow(), [0x2, 0x6], "one call per ring, none for no bits");
        assert_eq!(mu.host_read_odr(), 0, "acknowledged by the forwarding");
        assert!(!mu.inta());
        let mut after = MessageUnit::default();
        after.carry_count(&mu);
        after.write(ODR, 0x4).unwrap();
        assert_eq!(*rung.borrow(), [0x2, 0x6, 0x4]);
        after.set_outbound_doorbells(None);
        after.write(ODR, 0x4).unwrap();
        assert_eq!(after.host_read_odr(), 0x4, "held for a host read again");
    }

    #[test]
    fn doorbells_set_and_clear_from_opposite_sides() {
        let mut mu = MessageUnit::default();
        mu.host_ring_doorbell(0x5);
        assert_eq!(mu.read(IDR), Some(0x5));
        assert_eq!(mu.read(IMISR), Some(IDI));
        assert!(mu.agent_interrupt());
        mu.write(IMIMR, IDI).unwrap();
        assert!(!mu.agent_interrupt(), "masked");
        mu.write(IMIMR, 0).unwrap();
        // IDI cannot be cleared in IMISR: it follows IDR.
        mu.write(IMISR, IDI).unwrap();
        assert_eq!(mu.read(IMISR), Some(IDI));
        mu.write(IDR, 0x1).unwrap();
        assert_eq!(mu.read(IDR), Some(0x4));
        mu.write(IDR, 0x4).unwrap();
        assert_eq!(mu.read(IMISR), Some(0));
        assert!(!mu.agent_interrupt());

        mu.write(ODR, 0x3).unwrap();
        assert_eq!(mu.outbound_status(), ODI);
        assert!(mu.inta());
        assert_eq!(mu.inta_assertions(), 1);
        mu.write(ODR, 0x4).unwrap();
        assert_eq!(mu.host_read_odr(), 0x7);
        assert_eq!(mu.inta_assertions(), 1, "still asserted: no new edge");
        mu.host_clear_odr(0x7);
        assert!(!mu.inta());
        mu.write(ODR, 0x1).unwrap();
        assert_eq!(mu.inta_assertions(), 2);
    }

    #[test]
    fn messages_raise_status_and_masks_hold_it_back() {
        let mut mu = MessageUnit::default();
        mu.host_write_message(1, 0xDEAD_BEEF);
        assert_eq!(mu.read(IMR1), Some(0xDEAD_BEEF));
        assert_eq!(mu.inbound_status(), IM1I);
        mu.write(IMISR, IM1I).unwrap();
        assert_eq!(mu.inbound_status(), 0);
        assert!(mu.write(IMR0, 1).is_err());

        mu.write(OMIMR, OM0I).unwrap();
        mu.write(OMR0, 42).unwrap();
        assert_eq!(mu.outbound_status(), OM0I);
        assert!(!mu.inta(), "OM0I masked");
        assert_eq!(mu.inta_assertions(), 0);
        mu.write(OMR1, 7).unwrap();
        assert!(mu.inta());
        assert_eq!(mu.host_read_message(0), 42);
        assert_eq!(mu.host_read_message(1), 7);
        mu.host_clear_outbound(OM1I | OM0I);
        assert_eq!(mu.outbound_status(), 0);
        assert!(!mu.inta());
        assert_eq!(mu.read(OMIMR), Some(OM0I));
    }
}
