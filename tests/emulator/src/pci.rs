//! The PCI agent's address windows (docs/REGISTERS.md, "Local access windows for PCI" and "PCI agent
//! windows"): which local addresses reach the PCI bus (PCI LAWs), where on the bus they land (outbound ATMU
//! windows), and which PCI addresses the host reaches agent RAM through (inbound windows).
//!
//! Host RAM is the PCI memory space the agent sees: PCI memory address = offset in the host RAM file.
//! Registers are big-endian and all 32 bits wide.

use crate::elf::RAM_SIZE;

pub const EN: u32 = 0x8000_0000;
const LAWBAR_MASK: u32 = 0xFFFF_F000;
const LAWAR_MASK: u32 = 0x8000_003F;
const POCMR_IO: u32 = 0x4000_0000;
const POCMR_SE: u32 = 0x2000_0000;
const POCMR_DST: u32 = 0x1000_0000;
const POCMR_CM: u32 = 0x000F_FFFF;
const PAGE_FIELD: u32 = 0x000F_FFFF;
const PIWAR_MASK: u32 = 0xA00F_F03F;
const PIWAR_PF: u32 = 0x2000_0000;
/// BAR flag: prefetchable memory.
const BAR_PREFETCHABLE: u32 = 0x8;
/// Smallest window the hardware supports (SIZE/IWS 0x0B: 4 KiB).
const MIN_SIZE_CODE: u32 = 0x0B;

/// PCI LAW 0 as U-Boot's agent setup leaves it: 1 GiB at 0x8000_0000 (CONFIG_SYS_PCI1_MEM_PHYS,
/// LAWAR_SIZE_1G in board/freescale/mpc8349emds/pci.c, `pci_init_board` under CONFIG_PCISLAVE).
pub const PCILAWBAR0_AT_GO: u32 = 0x8000_0000;
pub const PCILAWAR0_AT_GO: u32 = EN | 0x1D;
/// PCI LAW 1 as the same function leaves it: 4 MiB at 0xE200_0000 (CONFIG_SYS_PCI1_IO_PHYS,
/// LAWAR_SIZE_4M), the PCI I/O window; a firmware that wants LAW 1 for itself must rewrite it.
pub const PCILAWBAR1_AT_GO: u32 = 0xE200_0000;
pub const PCILAWAR1_AT_GO: u32 = EN | 0x15;

/// Outbound window n: POTAR, POBAR, POCMR offsets.
pub fn outbound_offsets(n: usize) -> (u32, u32, u32) {
    let base = 0x8400 + 0x18 * n as u32;
    (base, base + 0x08, base + 0x10)
}

/// Inbound window n: PITAR, PIBAR, PIEBAR (none for window 0), PIWAR offsets.
pub const INBOUND_OFFSETS: [(u32, u32, Option<u32>, u32); 3] =
    [(0x8568, 0x8570, None, 0x8578), (0x8550, 0x8558, Some(0x855C), 0x8560), (0x8538, 0x8540, Some(0x8544), 0x8548)];
pub const PMCR: u32 = 0x84F0;
pub const DTCR: u32 = 0x84F8;

/// Where a local address leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Agent RAM at this offset.
    Ram(u64),
    /// Host RAM (PCI memory space) at this address.
    Host(u64),
}

/// A window size code (LAW SIZE, PIWAR IWS): window = 2^(code + 1) bytes. Codes above 0x1F are reserved;
/// they count as the whole 4 GiB address space rather than overflowing.
fn window_size(code: u32) -> u64 {
    1u64 << ((code & 0x3F).min(0x1F) + 1)
}

#[derive(Debug, Clone)]
pub struct PciWindows {
    lawbar: [u32; 2],
    lawar: [u32; 2],
    potar: [u32; 6],
    pobar: [u32; 6],
    pocmr: [u32; 6],
    pmcr: u32,
    dtcr: u32,
    pitar: [u32; 3],
    pibar: [u32; 3],
    piebar: [u32; 3],
    piwar: [u32; 3],
}

impl Default for PciWindows {
    fn default() -> Self {
        PciWindows::new()
    }
}

/// Why a register write is refused.
pub type Refusal = String;

impl PciWindows {
    /// As U-Boot's agent setup leaves them: PCI LAW 0 = 1 GiB at 0x8000_0000, LAW 1 = 4 MiB at
    /// 0xE200_0000; every ATMU window disabled (U-Boot leaves inbound window 0 enabled, 4 KiB onto local 0:
    /// not modelled, see docs/REGISTERS.md).
    pub fn new() -> PciWindows {
        PciWindows {
            lawbar: [PCILAWBAR0_AT_GO, PCILAWBAR1_AT_GO],
            lawar: [PCILAWAR0_AT_GO, PCILAWAR1_AT_GO],
            potar: [0; 6],
            pobar: [0; 6],
            pocmr: [0; 6],
            pmcr: 0,
            dtcr: 0,
            pitar: [0; 3],
            pibar: [0; 3],
            piebar: [0; 3],
            piwar: [0; 3],
        }
    }

    /// Enabled PCI LAW ranges (start, length); a base is aligned down to the window size, as the hardware
    /// compares only the address bits above the size.
    pub fn law_ranges(&self) -> Vec<(u64, u64)> {
        (0..2)
            .filter(|&i| self.lawar[i] & EN != 0)
            .map(|i| {
                let size = window_size(self.lawar[i]);
                (u64::from(self.lawbar[i]) & !(size - 1), size)
            })
            .collect()
    }

    /// The end of the PCI LAW covering `addr`, if one does.
    fn law_end(&self, addr: u32) -> Option<u64> {
        let a = u64::from(addr);
        self.law_ranges()
            .into_iter()
            .filter(|&(start, len)| (start..start + len).contains(&a))
            .map(|(start, len)| start + len)
            .max()
    }

    /// The enabled outbound window covering local `addr` (the lowest-numbered if several do): its PCI address
    /// for `addr` and the local end of the window.
    fn outbound(&self, addr: u32) -> Option<(u64, u64)> {
        (0..6).find_map(|n| {
            let cm = self.pocmr[n] & POCMR_CM;
            if self.pocmr[n] & EN == 0 || ((addr >> 12) ^ self.pobar[n]) & cm != 0 {
                return None;
            }
            let size = (u64::from(!cm & POCMR_CM) + 1) << 12;
            let offset = u64::from(addr) & (size - 1);
            let pci = (u64::from(self.potar[n] & cm) << 12) | offset;
            Some((pci, u64::from(addr) - offset + size))
        })
    }

    /// Where `len` bytes at local `addr` go: the target of the first byte and how many bytes from there stay
    /// contiguous in the same file (at most `len`). `host_size` is the size of host RAM. `Err` says why the
    /// first byte reaches nothing.
    pub fn resolve(&self, addr: u32, len: u64, host_size: u64) -> Result<(Target, u64), String> {
        let a = u64::from(addr);
        if a < u64::from(RAM_SIZE) {
            return Ok((Target::Ram(a), len.min(u64::from(RAM_SIZE) - a)));
        }
        let Some(law_end) = self.law_end(addr) else {
            return Err(format!("local address {addr:#010x} is outside RAM and the PCI local access windows"));
        };
        let Some((pci, window_end)) = self.outbound(addr) else {
            return Err(format!("PCI master abort: no enabled outbound window covers local address {addr:#010x}"));
        };
        if pci >= host_size {
            return Err(format!(
                "PCI master abort: local address {addr:#010x} reaches PCI address {pci:#x}, beyond host RAM \
                 ({host_size:#x} bytes)"
            ));
        }
        let n = len.min(law_end - a).min(window_end - a).min(host_size - pci);
        Ok((Target::Host(pci), n))
    }

    /// The agent RAM offset the host reaches at PCI address `pci` for `len` bytes through an enabled inbound
    /// window; `Err` says why not.
    pub fn inbound(&self, pci: u32, len: u64) -> Result<u64, String> {
        let p = u64::from(pci);
        for n in 0..3 {
            if self.piwar[n] & EN == 0 || self.piebar[n] != 0 {
                continue;
            }
            let size = window_size(self.piwar[n]);
            let base = (u64::from(self.pibar[n] & PAGE_FIELD) << 12) & !(size - 1);
            if !(base..base + size).contains(&p) {
                continue;
            }
            if p + len > base + size {
                return Err(format!(
                    "{len} bytes at PCI address {pci:#010x} run past the end of inbound window {n} \
                     ({:#x}..{:#x})",
                    base,
                    base + size
                ));
            }
            let local = ((u64::from(self.pitar[n] & PAGE_FIELD) << 12) & !(size - 1)) + (p - base);
            if local + len > u64::from(RAM_SIZE) {
                return Err(format!(
                    "inbound window {n} maps PCI address {pci:#010x} to local {local:#x}, outside RAM"
                ));
            }
            return Ok(local);
        }
        Err(format!("PCI address {pci:#010x} is not inside an enabled inbound window"))
    }

    /// Where enabled inbound window `n` (0..3) leads: (agent RAM base, size), as [`PciWindows::inbound`]
    /// translates. `None` if the window is disabled, does not exist, or is a 64-bit (PIEBAR) window.
    pub fn inbound_target(&self, n: usize) -> Option<(u64, u64)> {
        if n >= 3 || self.piwar[n] & EN == 0 || self.piebar[n] != 0 {
            return None;
        }
        let size = window_size(self.piwar[n]);
        Some(((u64::from(self.pitar[n] & PAGE_FIELD) << 12) & !(size - 1), size))
    }

    /// Size of inbound window 0 as BAR1 decodes it: from PIWAR0's IWS whether or not the window is
    /// enabled (the header always has BAR1); reserved codes below 4 KiB count as 4 KiB.
    fn window0_size(&self) -> u64 {
        window_size((self.piwar[0] & 0x3F).max(MIN_SIZE_CODE))
    }

    /// BAR1 of the agent's configuration header, which is PIBAR0: its address bits above the window
    /// size, 32-bit memory, prefetchable as PIWAR0[PF] says (docs/REGISTERS.md).
    pub fn bar1(&self) -> u32 {
        let mask = !(self.window0_size() - 1) as u32;
        let pf = if self.piwar[0] & PIWAR_PF != 0 { BAR_PREFETCHABLE } else { 0 };
        ((self.pibar[0] << 12) & mask) | pf
    }

    /// A configuration write of BAR1 by the host's enumeration: sets PIBAR0 (the bits below the window
    /// size read as 0, which is how the host sizes the BAR).
    pub fn set_bar1(&mut self, value: u32) {
        let mask = !(self.window0_size() - 1) as u32;
        self.pibar[0] = ((value & mask) >> 12) & PAGE_FIELD;
    }

    /// Register read; `None` if `offset` is not one of these registers.
    pub fn read(&self, offset: u32) -> Option<u32> {
        Some(match offset {
            0x060 => self.lawbar[0],
            0x064 => self.lawar[0],
            0x068 => self.lawbar[1],
            0x06C => self.lawar[1],
            PMCR => self.pmcr,
            DTCR => self.dtcr,
            _ => {
                if let Some(n) = (0..6).find(|&n| {
                    let (t, b, c) = outbound_offsets(n);
                    [t, b, c].contains(&offset)
                }) {
                    let (t, b, _) = outbound_offsets(n);
                    return Some(if offset == t {
                        self.potar[n]
                    } else if offset == b {
                        self.pobar[n]
                    } else {
                        self.pocmr[n]
                    });
                }
                let (n, which) = inbound_register(offset)?;
                match which {
                    0 => self.pitar[n],
                    1 => self.pibar[n],
                    2 => self.piebar[n],
                    _ => self.piwar[n],
                }
            }
        })
    }

    /// Register write. `Ok(true)` if the PCI LAWs changed (the local memory map must follow); `Err` refuses a
    /// setting the model does not have.
    pub fn write(&mut self, offset: u32, value: u32, name: &str) -> Result<bool, Refusal> {
        match offset {
            0x060 | 0x068 => {
                let i = ((offset - 0x60) / 8) as usize;
                let v = value & LAWBAR_MASK;
                let changed = v != self.lawbar[i];
                self.lawbar[i] = v;
                return Ok(changed);
            }
            0x064 | 0x06C => {
                let i = ((offset - 0x64) / 8) as usize;
                let v = value & LAWAR_MASK;
                if v & EN != 0 && (v & 0x3F) < MIN_SIZE_CODE {
                    return Err(format!("{name} = {value:#010x}: window sizes below 4 KiB are reserved"));
                }
                let changed = v != self.lawar[i];
                self.lawar[i] = v;
                return Ok(changed);
            }
            PMCR => self.pmcr = value,
            DTCR => self.dtcr = value,
            _ => {
                if let Some(n) = (0..6).find(|&n| {
                    let (t, b, c) = outbound_offsets(n);
                    [t, b, c].contains(&offset)
                }) {
                    let (t, b, _) = outbound_offsets(n);
                    if offset == t {
                        self.potar[n] = value & PAGE_FIELD;
                    } else if offset == b {
                        self.pobar[n] = value & PAGE_FIELD;
                    } else {
                        check_pocmr(value, name)?;
                        self.pocmr[n] = value & (EN | POCMR_IO | POCMR_SE | POCMR_DST | POCMR_CM);
                    }
                    return Ok(false);
                }
                let Some((n, which)) = inbound_register(offset) else {
                    return Err(format!("{name} write is not modelled"));
                };
                match which {
                    0 => self.pitar[n] = value & PAGE_FIELD,
                    1 if n == 0 => {
                        return Err(format!(
                            "{name} = {value:#010x}: in agent mode PIBAR0 is BAR1 of the PCI configuration header, \
                             assigned by the host's enumeration; the agent sets PITAR0/PIWAR0 only"
                        ))
                    }
                    1 => self.pibar[n] = value & PAGE_FIELD,
                    2 => self.piebar[n] = value & PAGE_FIELD,
                    _ => {
                        if value & EN != 0 && (value & 0x3F) < MIN_SIZE_CODE {
                            return Err(format!("{name} = {value:#010x}: window sizes below 4 KiB are reserved"));
                        }
                        self.piwar[n] = value & PIWAR_MASK;
                    }
                }
            }
        }
        Ok(false)
    }
}

/// (window, 0 PITAR / 1 PIBAR / 2 PIEBAR / 3 PIWAR) of an inbound register offset.
fn inbound_register(offset: u32) -> Option<(usize, usize)> {
    INBOUND_OFFSETS.iter().enumerate().find_map(|(n, &(t, b, e, w))| {
        if offset == t {
            Some((n, 0))
        } else if offset == b {
            Some((n, 1))
        } else if Some(offset) == e {
            Some((n, 2))
        } else if offset == w {
            Some((n, 3))
        } else {
            None
        }
    })
}

/// Enabled outbound windows must be memory windows to PCI1 with a contiguous mask (a power-of-two size).
fn check_pocmr(value: u32, name: &str) -> Result<(), Refusal> {
    if value & EN == 0 {
        return Ok(());
    }
    if value & POCMR_IO != 0 {
        return Err(format!("{name} = {value:#010x}: outbound windows to PCI I/O space are not modelled"));
    }
    if value & POCMR_DST != 0 {
        return Err(format!("{name} = {value:#010x}: outbound windows to the second PCI controller are not modelled"));
    }
    let size_pages = (!value & POCMR_CM) + 1;
    if !size_pages.is_power_of_two() {
        return Err(format!(
            "{name} = {value:#010x}: the comparison mask is not contiguous (CM must be ~(size - 1) >> 12)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: u64 = 64 << 20;

    #[test]
    fn initial_state_is_uboots() {
        let w = PciWindows::new();
        assert_eq!(w.read(0x60), Some(0x8000_0000));
        assert_eq!(w.read(0x64), Some(0x8000_001D));
        assert_eq!(w.read(0x68), Some(0xE200_0000));
        assert_eq!(w.read(0x6C), Some(0x8000_0015));
        assert_eq!(w.law_ranges(), vec![(0x8000_0000, 1 << 30), (0xE200_0000, 4 << 20)]);
        assert_eq!((w.inbound_target(0), w.inbound_target(1), w.inbound_target(2)), (None, None, None));
        // Covered by LAW 0 but no outbound window: a master abort.
        let e = w.resolve(0x8000_1000, 4, HOST).unwrap_err();
        assert!(e.contains("no enabled outbound window"), "{e}");
        let e = w.resolve(0xC000_0000, 4, HOST).unwrap_err();
        assert!(e.contains("outside RAM and the PCI local access windows"), "{e}");
        assert_eq!(w.resolve(0x0FFF_FFFE, 4, HOST), Ok((Target::Ram(0x0FFF_FFFE), 2)));
        assert!(w.inbound(0, 4).is_err());
    }

    #[test]
    fn outbound_windows_translate_and_stop_at_their_end() {
        let mut w = PciWindows::new();
        // Window 1: local 0x8010_0000, 1 MiB, to PCI 0x0030_0000.
        let (t, b, c) = outbound_offsets(1);
        w.write(t, 0x0030_0000 >> 12, "POTAR1").unwrap();
        w.write(b, 0x8010_0000 >> 12, "POBAR1").unwrap();
        w.write(c, EN | (!((1u32 << 20) - 1) >> 12) & 0xF_FFFF, "POCMR1").unwrap();
        assert_eq!(w.resolve(0x8010_0010, 64, HOST), Ok((Target::Host(0x0030_0010), 64)));
        assert_eq!(w.resolve(0x801F_FFF0, 64, HOST), Ok((Target::Host(0x003F_FFF0), 16)));
        assert!(w.resolve(0x8020_0000, 4, HOST).is_err());
        // Beyond host RAM.
        w.write(t, 0x0400_0000 >> 12, "POTAR1").unwrap();
        let e = w.resolve(0x8010_0000, 4, HOST).unwrap_err();
        assert!(e.contains("beyond host RAM"), "{e}");
        // Disabling it.
        w.write(c, 0, "POCMR1").unwrap();
        assert!(w.resolve(0x8010_0000, 4, HOST).is_err());
        // Refusals.
        assert!(w.write(c, EN | POCMR_IO | 0xF_FF00, "POCMR1").is_err());
        assert!(w.write(c, EN | 0xF_0F00, "POCMR1").is_err());
        assert!(w.write(c, EN | POCMR_DST | 0xF_FF00, "POCMR1").is_err());
    }

    #[test]
    fn law_changes_are_reported_and_limit_the_windows() {
        let mut w = PciWindows::new();
        assert_eq!(w.write(0x68, 0x9000_0000, "PCILAWBAR1"), Ok(true));
        assert_eq!(w.write(0x6C, EN | 0x13, "PCILAWAR1"), Ok(true));
        assert_eq!(w.write(0x6C, EN | 0x13, "PCILAWAR1"), Ok(false));
        assert_eq!(w.law_ranges(), vec![(0x8000_0000, 1 << 30), (0x9000_0000, 1 << 20)]);
        assert!(w.write(0x64, EN | 0x05, "PCILAWAR0").is_err());
        // A reserved size code does not overflow.
        w.write(0x64, EN | 0x3F, "PCILAWAR0").unwrap();
        assert_eq!(w.law_ranges()[0], (0, 1 << 32));
        w.write(0x64, 0, "PCILAWAR0").unwrap();
        assert_eq!(w.law_ranges(), vec![(0x9000_0000, 1 << 20)]);
        // An outbound window larger than the LAW is cut at the LAW's end.
        let (t, b, c) = outbound_offsets(0);
        w.write(t, 0, "POTAR0").unwrap();
        w.write(b, 0x9000_0000 >> 12, "POBAR0").unwrap();
        w.write(c, EN | 0xF_F000, "POCMR0").unwrap(); // 16 MiB
        assert_eq!(w.resolve(0x900F_FFF0, 64, HOST), Ok((Target::Host(0x000F_FFF0), 16)));
        assert!(w.resolve(0x9010_0000, 4, HOST).is_err());
    }

    #[test]
    fn inbound_windows() {
        let mut w = PciWindows::new();
        let (t, b, _, a) = INBOUND_OFFSETS[1];
        // 1 MiB BAR at PCI 0xD000_0000 onto agent RAM 0x0040_0000.
        w.write(t, 0x0040_0000 >> 12, "PITAR1").unwrap();
        w.write(b, 0xD000_0000 >> 12, "PIBAR1").unwrap();
        w.write(a, EN | 0x2005_5013, "PIWAR1").unwrap();
        assert_eq!(w.inbound(0xD000_0010, 4), Ok(0x0040_0010));
        assert_eq!(w.inbound_target(1), Some((0x0040_0000, 1 << 20)));
        assert_eq!((w.inbound_target(0), w.inbound_target(3)), (None, None));
        assert!(w.inbound(0xD00F_FFFE, 4).unwrap_err().contains("past the end"));
        assert!(w.inbound(0xD010_0000, 4).is_err());
        // Translating outside RAM.
        w.write(t, 0x1000_0000 >> 12, "PITAR1").unwrap();
        assert!(w.inbound(0xD000_0000, 4).unwrap_err().contains("outside RAM"));
        assert!(w.write(a, EN | 0x04, "PIWAR1").is_err());
        // Window 0's base is BAR1, the host's.
        let (t0, b0, _, a0) = INBOUND_OFFSETS[0];
        assert!(w.write(b0, 0xD000_0000 >> 12, "PIBAR0").unwrap_err().contains("BAR1"));
        w.write(t0, 0x0080_0000 >> 12, "PITAR0").unwrap();
        w.write(a0, EN | 0x2005_5014, "PIWAR0").unwrap();
        w.set_bar1(0xFFFF_FFFF);
        assert_eq!(w.bar1(), 0xFFE0_0008, "2 MiB, prefetchable");
        w.set_bar1(0xC020_0000);
        assert_eq!(w.read(b0), Some(0xC0200));
        assert_eq!(w.inbound(0xC020_0010, 4), Ok(0x0080_0010));
        assert_eq!(w.read(0x855C), Some(0));
        assert_eq!(w.read(0x8574), None);
    }
}
