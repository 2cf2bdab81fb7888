//! The host's side of the PCI bus: its RAM, the agent's BAR through the inbound window, and the message
//! unit's registers, with every access across the bus counted.

use super::*;

impl Board {
    //
    // Each call is one host transaction on the bus; BAR reads and writes are counted (the message unit's
    // registers are in BAR0 on the real board, so its accessors count too). The calls are made between runs:
    // devices are brought up to the current virtual time first.

    /// Path of the file standing for host RAM.
    pub fn host_ram_path(&self) -> &Path {
        self.host_ram.file.path()
    }

    /// Size of host RAM in bytes.
    pub fn host_ram_size(&self) -> u64 {
        self.mem.host.len()
    }

    pub(super) fn host_ram_error(pci_addr: u64, len: usize, size: u64) -> HostAccessError {
        HostAccessError { pci_addr, len, reason: format!("outside host RAM (0..{size:#x})") }
    }

    /// Read host RAM at PCI address `pci_addr` (the host reading its own memory: not a bus access).
    pub fn read_host_ram(&self, pci_addr: u64, buf: &mut [u8]) -> Result<(), HostAccessError> {
        if self.mem.host.read(pci_addr, buf) {
            Ok(())
        } else {
            Err(Self::host_ram_error(pci_addr, buf.len(), self.mem.host.len()))
        }
    }

    /// Write host RAM at PCI address `pci_addr` (the host writing its own memory: not a bus access).
    pub fn write_host_ram(&mut self, pci_addr: u64, data: &[u8]) -> Result<(), HostAccessError> {
        if self.mem.host.write(pci_addr, data) {
            Ok(())
        } else {
            Err(Self::host_ram_error(pci_addr, data.len(), self.mem.host.len()))
        }
    }

    /// Devices up to the current virtual time before the host looks at them.
    pub(super) fn host_sync(&mut self) {
        let now = self.instructions();
        let m = self.uc.get_data_mut();
        m.immr.advance(now);
        m.flash.advance(now);
        self.host_changed();
    }

    /// After a host operation: translated code over RAM written behind the core dropped, the interrupt
    /// line refreshed.
    pub(super) fn host_changed(&mut self) {
        let m = self.uc.get_data_mut();
        m.irq = m.immr.external_interrupt();
        for (start, len) in m.immr.dma.take_dirty() {
            let _ = self.uc.ctl_remove_cache(start, start + len);
        }
    }

    pub(super) fn inbound(&self, pci_addr: u32, len: usize) -> Result<u64, HostAccessError> {
        self.uc.get_data().immr.pci.inbound(pci_addr, len as u64).map_err(|reason| HostAccessError {
            pci_addr: u64::from(pci_addr),
            len,
            reason,
        })
    }

    /// A host read through the agent's BAR: PCI address `pci_addr` translated by the enabled inbound windows
    /// into agent RAM.
    pub fn host_bar_read(&mut self, pci_addr: u32, buf: &mut [u8]) -> Result<(), HostAccessError> {
        self.host_bar_reads += 1;
        self.host_sync();
        let local = self.inbound(pci_addr, buf.len())?;
        self.mem.ram.read(local, buf);
        Ok(())
    }

    /// A host write through the agent's BAR into agent RAM (see [`Board::host_bar_read`]).
    pub fn host_bar_write(&mut self, pci_addr: u32, data: &[u8]) -> Result<(), HostAccessError> {
        self.host_bar_writes += 1;
        self.host_sync();
        let local = self.inbound(pci_addr, data.len())?;
        self.mem.ram.write(local, data);
        let _ = self.uc.ctl_remove_cache(local, local + data.len() as u64);
        Ok(())
    }

    /// Host BAR reads so far (each one stalls a real host for a bus round trip).
    pub fn host_bar_reads(&self) -> u64 {
        self.host_bar_reads
    }

    /// Host BAR writes so far (posted).
    pub fn host_bar_writes(&self) -> u64 {
        self.host_bar_writes
    }

    pub(super) fn message_index(n: usize) -> Result<usize, HostAccessError> {
        (n < 2).then_some(n).ok_or_else(|| HostAccessError {
            pci_addr: 0,
            len: 4,
            reason: format!("there are message registers 0 and 1, not {n}"),
        })
    }

    /// Ring the agent: the host writes `bits` to IDR (1s set doorbell bits).
    pub fn host_ring_doorbell(&mut self, bits: u32) {
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_ring_doorbell(bits);
        self.host_changed();
    }

    /// The host writes inbound message register `n` (IMR0/IMR1), raising IM0I/IM1I.
    pub fn host_write_message(&mut self, n: usize, value: u32) -> Result<(), HostAccessError> {
        let n = Self::message_index(n)?;
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_write_message(n, value);
        self.host_changed();
        Ok(())
    }

    /// The host reads outbound message register `n` (OMR0/OMR1).
    pub fn host_read_message(&mut self, n: usize) -> Result<u32, HostAccessError> {
        let n = Self::message_index(n)?;
        self.host_bar_reads += 1;
        self.host_sync();
        Ok(self.uc.get_data().immr.mu.host_read_message(n))
    }

    /// The host reads OMISR (outbound status: OM0I 0x1, OM1I 0x2, ODI 0x8).
    pub fn host_outbound_status(&mut self) -> u32 {
        self.host_bar_reads += 1;
        self.host_sync();
        self.uc.get_data().immr.mu.outbound_status()
    }

    /// The host writes OMISR: 1s clear OM0I/OM1I.
    pub fn host_clear_outbound(&mut self, bits: u32) {
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_clear_outbound(bits);
        self.host_changed();
    }

    /// The host reads ODR (the doorbell bits the agent rang).
    pub fn host_read_odr(&mut self) -> u32 {
        self.host_bar_reads += 1;
        self.host_sync();
        self.uc.get_data().immr.mu.host_read_odr()
    }

    /// The host writes ODR: 1s clear doorbell bits.
    pub fn host_clear_odr(&mut self, bits: u32) {
        self.host_bar_writes += 1;
        self.host_sync();
        self.uc.get_data_mut().immr.mu.host_clear_odr(bits);
        self.host_changed();
    }

    /// INTA# towards the host: an unmasked bit in OMISR. (A wire, not a bus access: not counted.)
    pub fn inta_asserted(&self) -> bool {
        self.uc.get_data().immr.mu.inta()
    }

    /// How often INTA# went from deasserted to asserted.
    pub fn inta_assertions(&self) -> u64 {
        self.uc.get_data().immr.mu.inta_assertions()
    }
}
