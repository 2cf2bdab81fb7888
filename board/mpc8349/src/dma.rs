//! The DMA controller ("Elo"): four channels, little-endian registers and descriptors.
//! Thin: start, poll, acknowledge. Building descriptor chains is the caller's job, through the typed
//! [`Descriptor`] view, so the ring engine can keep its descriptors where it likes.

use crate::regs::Reg;

const MR: usize = 0x00;
const SR: usize = 0x04;
const CDAR: usize = 0x08;
const SAR: usize = 0x10;
const DAR: usize = 0x18;
const BCR: usize = 0x20;

pub mod mode {
    pub const CS: u32 = 0x1;
    pub const CC: u32 = 0x2;
    pub const CTM: u32 = 0x4;
    pub const EOTIE: u32 = 0x80;
    pub const PRC_READ_MULTIPLE: u32 = 0x800;
    pub const DMSEN: u32 = 0x10_0000;
}

pub mod status {
    pub const EOCDI: u32 = 0x1;
    pub const EOSI: u32 = 0x2;
    pub const CB: u32 = 0x4;
    pub const TE: u32 = 0x80;
}

/// Bits in CDAR/NDAR next to the 32-byte-aligned address.
pub mod link {
    pub use mpc8349_facts::unverified::dma_link::{EOTD, SNEN};
    pub const EOSIE: u32 = 0x8;
    pub const ADDRESS: u32 = !0x1F;
    /// The last descriptor's link word (docs/REGISTERS.md, "Unverified facts"): one value shared with the
    /// board emulator.
    pub const END_OF_LIST: u32 = mpc8349_facts::unverified::DMA_END_OF_LIST_LINK;
}

/// Largest byte count of one transfer or descriptor.
pub const MAX_BYTES: u32 = 0x03FF_FFFF;
/// Descriptor size and alignment.
pub const DESCRIPTOR_LEN: usize = 32;

/// Why a transfer did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The byte count exceeds [`MAX_BYTES`].
    TooLong(u32),
    /// The channel is still busy with an earlier transfer.
    Busy,
    /// The controller reported a transfer error (an address outside RAM and the open windows).
    Transfer,
    /// A descriptor address that is not 32-byte aligned.
    Misaligned(u32),
}

pub struct Channel {
    base: usize,
}

impl Channel {
    /// # Safety
    /// `base` is IMMR + 0x8100 + 0x80·n for n in 0..4, and no other driver owns that channel.
    pub const unsafe fn new(base: usize) -> Self {
        Channel { base }
    }

    fn reg(&self, offset: usize) -> Reg<u32> {
        // SAFETY: every offset used is a 32-bit register of this channel (docs/REGISTERS.md).
        unsafe { Reg::at(self.base + offset) }
    }

    pub fn status(&self) -> u32 {
        self.reg(SR).read_le()
    }

    pub fn is_busy(&self) -> bool {
        self.status() & status::CB != 0
    }

    /// Write-1-to-clear status bits.
    pub fn clear(&self, bits: u32) {
        self.reg(SR).write_le(bits);
    }

    /// Start a direct-mode copy. `snoop` makes the controller snoop the core's cache, which the
    /// firmware's coherent RAM mapping relies on.
    pub fn start_direct(&self, src: u32, dst: u32, len: u32, snoop: bool) -> Result<(), Error> {
        if len > MAX_BYTES {
            return Err(Error::TooLong(len));
        }
        if self.is_busy() {
            return Err(Error::Busy);
        }
        self.clear(status::EOCDI | status::EOSI | status::TE);
        let mode = mode::CTM | if snoop { mode::DMSEN } else { 0 };
        self.reg(MR).write_le(mode);
        self.reg(SAR).write_le(src);
        self.reg(DAR).write_le(dst);
        self.reg(BCR).write_le(len);
        self.reg(MR).write_le(mode | mode::CS);
        Ok(())
    }

    /// Start a descriptor chain at `first` (32-byte aligned). The descriptors must already be in
    /// memory the controller sees (snooped, or cleaned from the cache).
    pub fn start_chain(&self, first: u32, snoop: bool) -> Result<(), Error> {
        if first & !link::ADDRESS != 0 {
            return Err(Error::Misaligned(first));
        }
        if self.is_busy() {
            return Err(Error::Busy);
        }
        self.clear(status::EOCDI | status::EOSI | status::TE);
        let mode = mode::EOTIE | mode::PRC_READ_MULTIPLE;
        self.reg(MR).write_le(mode);
        self.reg(CDAR).write_le(first | if snoop { link::SNEN } else { 0 });
        self.reg(MR).write_le(mode | mode::CS);
        Ok(())
    }

    /// Poll until the channel is idle; report a transfer error.
    pub fn wait(&self) -> Result<(), Error> {
        let mut sr;
        loop {
            sr = self.status();
            if sr & status::CB == 0 {
                break;
            }
        }
        self.reg(MR).modify(|m| (u32::from_le(m) & !mode::CS).to_le());
        self.clear(sr & (status::EOCDI | status::EOSI | status::TE));
        if sr & status::TE != 0 {
            Err(Error::Transfer)
        } else {
            Ok(())
        }
    }
}

/// A typed view of one 32-byte chaining-mode descriptor (little-endian words).
pub struct Descriptor<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    pub const SAR: usize = 0x00;
    pub const DAR: usize = 0x08;
    pub const NDAR: usize = 0x10;
    pub const BCR: usize = 0x18;
}

impl<T: AsRef<[u8]>> Descriptor<T> {
    /// `None` if the buffer is shorter than a descriptor.
    pub fn new_checked(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= DESCRIPTOR_LEN).then_some(Descriptor { buffer })
    }

    fn get(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    pub fn source(&self) -> u32 {
        self.get(field::SAR)
    }
    pub fn destination(&self) -> u32 {
        self.get(field::DAR)
    }
    pub fn next(&self) -> u32 {
        self.get(field::NDAR)
    }
    pub fn count(&self) -> u32 {
        self.get(field::BCR)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Descriptor<T> {
    fn put(&mut self, at: usize, v: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Fill the whole descriptor (reserved words zero). `next` carries its own EOTD/EOSIE/SNEN bits.
    pub fn set(&mut self, src: u32, dst: u32, count: u32, next: u32) -> Result<(), Error> {
        if count > MAX_BYTES {
            return Err(Error::TooLong(count));
        }
        self.buffer.as_mut()[..DESCRIPTOR_LEN].fill(0);
        self.put(field::SAR, src);
        self.put(field::DAR, dst);
        self.put(field::NDAR, next);
        self.put(field::BCR, count);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_is_little_endian_at_documented_offsets() {
        let mut raw = [0xAAu8; 32];
        let mut d = Descriptor::new_checked(&mut raw[..]).unwrap();
        d.set(0x0102_0304, 0x1112_1314, 0x40, 0x2000 | link::EOTD).unwrap();
        assert_eq!(&raw[0..4], &[4, 3, 2, 1]);
        assert_eq!(&raw[4..8], &[0; 4]);
        assert_eq!(&raw[8..12], &[0x14, 0x13, 0x12, 0x11]);
        assert_eq!(&raw[16..20], &[0x01, 0x20, 0, 0]);
        assert_eq!(&raw[24..28], &[0x40, 0, 0, 0]);
        let d = Descriptor::new_checked(&raw[..]).unwrap();
        assert_eq!((d.source(), d.destination(), d.count()), (0x0102_0304, 0x1112_1314, 0x40));
    }

    #[test]
    fn descriptor_refuses_short_buffer_and_long_count() {
        assert!(Descriptor::new_checked(&[0u8; 31][..]).is_none());
        let mut raw = [0u8; 32];
        let mut d = Descriptor::new_checked(&mut raw[..]).unwrap();
        assert_eq!(d.set(0, 0, MAX_BYTES + 1, 0), Err(Error::TooLong(MAX_BYTES + 1)));
    }
}
