//! One channel of the MPC8349 DUART: a 16550 with byte registers at stride 1 (docs/REGISTERS.md, "DUART").
//!
//! Transmission is instantaneous (ULSR always shows THRE|TEMT), received bytes come from a queue the host
//! side fills. What the interrupt identification register reports as pending is the channel's IPIC source
//! (vector 9 or 10).

use std::collections::VecDeque;

const LCR_DLAB: u8 = 0x80;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const IER_ERDAI: u8 = 0x01;
const IER_ETHREI: u8 = 0x02;
const IIR_NONE: u8 = 0x01;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_FIFO: u8 = 0xC0;
const FCR_FEN: u8 = 0x01;
const FCR_RFR: u8 = 0x02;
const MCR_LOOP: u8 = 0x10;

/// Register offsets within a channel.
pub const REGISTERS: [(u32, &str); 9] = [
    (0x0, "URBR/UTHR/UDLB"),
    (0x1, "UIER/UDMB"),
    (0x2, "UIIR/UFCR/UAFR"),
    (0x3, "ULCR"),
    (0x4, "UMCR"),
    (0x5, "ULSR"),
    (0x6, "UMSR"),
    (0x7, "USCR"),
    (0x10, "UDSR"),
];

#[derive(Debug, Default, Clone)]
pub struct Duart {
    lcr: u8,
    ier: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    afr: u8,
    fcr: u8,
    thre_pending: bool,
    input: VecDeque<u8>,
    /// Bytes written to UTHR, not yet collected.
    pub output: Vec<u8>,
}

impl Duart {
    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    /// Queue bytes for the firmware to receive.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    pub fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }

    /// Read register `reg`; `Err` names a register that cannot be read.
    pub fn read(&mut self, reg: u32) -> Result<u8, &'static str> {
        Ok(match reg {
            0x0 if self.dlab() => self.dll,
            // An empty receiver reads as the last value a 16550 would hold; 0 is as good as any.
            0x0 => self.input.pop_front().unwrap_or(0),
            0x1 if self.dlab() => self.dlm,
            0x1 => self.ier,
            0x2 if self.dlab() => self.afr,
            0x2 => self.iir(),
            0x3 => self.lcr,
            0x4 => self.mcr,
            0x5 => LSR_THRE | LSR_TEMT | if self.input.is_empty() { 0 } else { LSR_DR },
            0x6 => self.msr(),
            0x7 => self.scr,
            // DMA mode is not used: no DMA request is ever active.
            0x10 => 0,
            _ => return Err("not a DUART register"),
        })
    }

    /// Write register `reg`; `Err` names a register that cannot be written.
    pub fn write(&mut self, reg: u32, value: u8) -> Result<(), &'static str> {
        match reg {
            0x0 if self.dlab() => self.dll = value,
            0x0 => {
                self.output.push(value);
                self.thre_pending = true;
            }
            0x1 if self.dlab() => self.dlm = value,
            0x1 => {
                // A 16550 raises THRE as soon as its interrupt is enabled while the holding register is empty.
                if value & IER_ETHREI != 0 && self.ier & IER_ETHREI == 0 {
                    self.thre_pending = true;
                }
                self.ier = value & 0x0F;
            }
            0x2 if self.dlab() => self.afr = value,
            0x2 => {
                if value & FCR_RFR != 0 {
                    self.input.clear();
                }
                self.fcr = value;
            }
            0x3 => self.lcr = value,
            0x4 => self.mcr = value,
            0x5 => return Err("ULSR is read-only"),
            0x6 => return Err("UMSR is read-only"),
            0x7 => self.scr = value,
            0x10 => return Err("UDSR is read-only"),
            _ => return Err("not a DUART register"),
        }
        Ok(())
    }

    /// The channel requests an interrupt: received data or an empty transmitter, each if enabled in UIER.
    pub fn interrupt_pending(&self) -> bool {
        (self.ier & IER_ERDAI != 0 && !self.input.is_empty()) || (self.ier & IER_ETHREI != 0 && self.thre_pending)
    }

    fn iir(&mut self) -> u8 {
        let fifo = if self.fcr & FCR_FEN != 0 { IIR_FIFO } else { 0 };
        if self.ier & IER_ERDAI != 0 && !self.input.is_empty() {
            IIR_RDA | fifo
        } else if self.ier & IER_ETHREI != 0 && self.thre_pending {
            // Reading IIR while it reports THRE acknowledges it.
            self.thre_pending = false;
            IIR_THRE | fifo
        } else {
            IIR_NONE | fifo
        }
    }

    fn msr(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
            let m = self.mcr;
            ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
        } else {
            // No modem lines are wired on the console port.
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_divisor_and_receive() {
        let mut u = Duart::default();
        u.write(3, 0x83).unwrap();
        u.write(0, 0x5A).unwrap();
        u.write(1, 0x00).unwrap();
        assert_eq!(u.divisor(), 0x5A);
        assert_eq!(u.read(0).unwrap(), 0x5A);
        u.write(3, 0x03).unwrap();
        u.write(0, b'h').unwrap();
        assert_eq!(u.output, b"h");
        assert_eq!(u.read(5).unwrap(), LSR_THRE | LSR_TEMT);
        u.receive(b"x");
        assert_eq!(u.read(5).unwrap() & LSR_DR, LSR_DR);
        assert_eq!(u.read(0).unwrap(), b'x');
        assert!(u.write(5, 0).is_err());
    }

    #[test]
    fn interrupt_identification() {
        let mut u = Duart::default();
        assert_eq!(u.read(2).unwrap(), IIR_NONE);
        u.write(1, IER_ETHREI).unwrap();
        assert_eq!(u.read(2).unwrap(), IIR_THRE);
        assert_eq!(u.read(2).unwrap(), IIR_NONE);
        u.write(2, FCR_FEN).unwrap();
        u.write(1, IER_ETHREI | IER_ERDAI).unwrap();
        u.receive(b"a");
        assert!(u.interrupt_pending());
        assert_eq!(u.read(2).unwrap(), IIR_RDA | IIR_FIFO);
        u.read(0).unwrap();
        u.read(2).unwrap();
        assert!(!u.interrupt_pending());
    }
}
