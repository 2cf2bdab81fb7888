//! The DUART: two 16550-compatible UARTs clocked from CSB. Polled transmit only; the console.

use crate::regs::Reg;

const RBR_THR_DLB: usize = 0;
const IER_DMB: usize = 1;
const IIR_FCR: usize = 2;
const LCR: usize = 3;
const MCR: usize = 4;
const LSR: usize = 5;
const SCR: usize = 7;

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
const FCR_ENABLE_RESET: u8 = 0x07;
const MCR_DTR_RTS: u8 = 0x03;
const LSR_THRE: u8 = 0x20;

pub struct Uart {
    base: usize,
}

/// Divisor latch value for a baud rate: CSB / (16 × baud), rounded to nearest.
pub const fn divisor(csb_hz: u32, baud: u32) -> u16 {
    let d = (csb_hz + 8 * baud) / (16 * baud);
    if d == 0 {
        1
    } else if d > 0xFFFF {
        0xFFFF
    } else {
        d as u16
    }
}

impl Uart {
    /// # Safety
    /// `base` is IMMR + 0x4500 or + 0x4600.
    pub const unsafe fn new(base: usize) -> Self {
        Uart { base }
    }

    fn reg(&self, offset: usize) -> Reg<u8> {
        // SAFETY: offsets 0..=7 are the byte registers of this 16550 block.
        unsafe { Reg::at(self.base + offset) }
    }

    /// 8N1 at `baud`, FIFOs on, interrupts off.
    pub fn init(&self, csb_hz: u32, baud: u32) {
        let div = divisor(csb_hz, baud);
        self.reg(LCR).write(LCR_DLAB);
        self.reg(RBR_THR_DLB).write(div as u8);
        self.reg(IER_DMB).write((div >> 8) as u8);
        self.reg(LCR).write(LCR_8N1);
        self.reg(IER_DMB).write(0);
        self.reg(IIR_FCR).write(FCR_ENABLE_RESET);
        self.reg(MCR).write(MCR_DTR_RTS);
    }

    /// The scratch register: no effect on the UART. Benchmarks write markers to UART1's, which the
    /// board emulator records with the instruction count and virtual time.
    pub fn write_scratch(&self, value: u8) {
        self.reg(SCR).write(value);
    }

    pub fn write_byte(&self, byte: u8) {
        while self.reg(LSR).read() & LSR_THRE == 0 {}
        self.reg(RBR_THR_DLB).write(byte);
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn divisor_for_emds_csb() {
        // 266.67 MHz / (16 * 115200) = 144.68 -> 145
        assert_eq!(super::divisor(266_666_666, 115_200), 145);
        assert_eq!(super::divisor(1_000, 115_200), 1);
    }
}
