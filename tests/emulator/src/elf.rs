//! The firmware loader: what U-Boot's `go` would run, checked before anything touches the board.
//!
//! The ELF and program headers are parsed by hand so that every refusal can say exactly what is wrong
//! (class, byte order, machine) instead of a generic parse error; the symbol table is read with `object`.

use std::fmt;

use object::{Object, ObjectSymbol};

/// Size of the board's RAM (DDR at 0).
pub const RAM_SIZE: u32 = 0x1000_0000;

const EM_PPC: u16 = 20;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const EHDR_SIZE: usize = 52;
const PHDR_SIZE: usize = 32;

/// Why an image cannot be run on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    NotElf,
    /// Not ELFCLASS32 / ELFDATA2MSB / EM_PPC; the raw header values.
    NotPowerPc {
        class: u8,
        data: u8,
        machine: u16,
    },
    NotExecutable {
        elf_type: u16,
    },
    NoEntry,
    NoLoadSegments,
    SegmentOutsideRam {
        start: u64,
        end: u64,
    },
    /// Virtual and physical addresses differ: the board runs 1:1.
    SegmentNotIdentityMapped {
        vaddr: u32,
        paddr: u32,
    },
    EntryNotExecutable {
        entry: u32,
    },
    Malformed(String),
}

fn class_name(class: u8) -> String {
    match class {
        1 => "32".to_string(),
        2 => "64".to_string(),
        other => format!("unknown {other}"),
    }
}

fn data_name(data: u8) -> String {
    match data {
        1 => "little-endian".to_string(),
        2 => "big-endian".to_string(),
        other => format!("unknown {other}"),
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotElf => write!(f, "not an ELF file"),
            LoadError::NotPowerPc { class, data, machine } => write!(
                f,
                "not a 32-bit big-endian PowerPC ELF (class {}, data {}, machine {machine})",
                class_name(*class),
                data_name(*data)
            ),
            LoadError::NotExecutable { elf_type } => {
                write!(f, "not an executable ELF (type {elf_type}; a linked image has type 2)")
            }
            LoadError::NoEntry => write!(f, "no entry point"),
            LoadError::NoLoadSegments => write!(f, "no loadable (PT_LOAD) segment"),
            LoadError::SegmentOutsideRam { start, end } => {
                write!(f, "segment {start:#x}..{end:#x} does not fit the board's RAM (0..{RAM_SIZE:#x})")
            }
            LoadError::SegmentNotIdentityMapped { vaddr, paddr } => write!(
                f,
                "segment virtual address {vaddr:#x} differs from its load address {paddr:#x}; the board runs 1:1"
            ),
            LoadError::EntryNotExecutable { entry } => {
                write!(f, "entry point {entry:#x} is not inside an executable loaded segment")
            }
            LoadError::Malformed(why) => write!(f, "malformed ELF: {why}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// One loadable segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub addr: u32,
    /// File bytes; the rest up to `mem_size` is zero.
    pub data: Vec<u8>,
    pub mem_size: u32,
    pub executable: bool,
}

/// A checked firmware image.
#[derive(Debug, Clone)]
pub struct Image {
    pub entry: u32,
    pub segments: Vec<Segment>,
    /// Symbol table (name, address), empty if the file has none.
    pub symbols: Vec<(String, u32)>,
}

impl Image {
    pub fn symbol(&self, name: &str) -> Option<u32> {
        self.symbols.iter().find(|(n, _)| n == name).map(|&(_, a)| a)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Check and parse an image.
pub fn parse(elf: &[u8]) -> Result<Image, LoadError> {
    if elf.len() < 16 || &elf[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    let (class, data) = (elf[4], elf[5]);
    let machine = if elf.len() >= 20 {
        let raw = [elf[18], elf[19]];
        if data == 1 {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        }
    } else {
        0
    };
    if class != 1 || data != 2 || machine != EM_PPC {
        return Err(LoadError::NotPowerPc { class, data, machine });
    }
    if elf.len() < EHDR_SIZE {
        return Err(LoadError::Malformed("file shorter than the ELF header".into()));
    }
    let elf_type = be16(elf, 16);
    if elf_type != ET_EXEC {
        return Err(LoadError::NotExecutable { elf_type });
    }
    let entry = be32(elf, 24);
    if entry == 0 {
        return Err(LoadError::NoEntry);
    }
    let phoff = be32(elf, 28) as usize;
    let phentsize = usize::from(be16(elf, 42));
    let phnum = usize::from(be16(elf, 44));
    if phnum > 0 && phentsize < PHDR_SIZE {
        return Err(LoadError::Malformed(format!("program header size {phentsize}")));
    }
    let table_end = phnum.checked_mul(phentsize).and_then(|n| n.checked_add(phoff));
    if table_end.is_none_or(|end| end > elf.len()) {
        return Err(LoadError::Malformed("program headers outside the file".into()));
    }

    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = &elf[phoff + i * phentsize..][..PHDR_SIZE];
        if be32(ph, 0) != PT_LOAD {
            continue;
        }
        let (offset, vaddr, paddr) = (be32(ph, 4) as usize, be32(ph, 8), be32(ph, 12));
        let (file_size, mem_size, flags) = (be32(ph, 16), be32(ph, 20), be32(ph, 24));
        if mem_size == 0 {
            continue;
        }
        if file_size > mem_size {
            return Err(LoadError::Malformed(format!("segment {i}: file size larger than memory size")));
        }
        let file_end = offset.checked_add(file_size as usize);
        if file_end.is_none_or(|end| end > elf.len()) {
            return Err(LoadError::Malformed(format!("segment {i}: file bytes outside the file")));
        }
        let end = u64::from(paddr) + u64::from(mem_size);
        if end > u64::from(RAM_SIZE) {
            return Err(LoadError::SegmentOutsideRam { start: u64::from(paddr), end });
        }
        if vaddr != paddr {
            return Err(LoadError::SegmentNotIdentityMapped { vaddr, paddr });
        }
        segments.push(Segment {
            addr: paddr,
            data: elf[offset..offset + file_size as usize].to_vec(),
            mem_size,
            executable: flags & PF_X != 0,
        });
    }
    if segments.is_empty() {
        return Err(LoadError::NoLoadSegments);
    }
    let entry_ok = segments.iter().any(|s| {
        s.executable && (u64::from(s.addr)..u64::from(s.addr) + u64::from(s.mem_size)).contains(&u64::from(entry))
    });
    if !entry_ok {
        return Err(LoadError::EntryNotExecutable { entry });
    }

    // Symbols are optional (a stripped image still runs, only without the log ring).
    let symbols = object::read::elf::ElfFile32::<object::BigEndian>::parse(elf)
        .map(|file| {
            file.symbols()
                .filter_map(|s| Some((s.name().ok()?.to_string(), u32::try_from(s.address()).ok()?)))
                .filter(|(name, _)| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();

    Ok(Image { entry, segments, symbols })
}

/// A Rust symbol name as source shows it, without the hash (`bpnet_ring::Engine<..>::poll`); any
/// other name as it is.
pub fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

#[cfg(test)]
mod demangle_tests {
    use super::demangle;

    #[test]
    fn rust_names_lose_their_hash() {
        assert_eq!(demangle("_ZN10bpnet_ring6Engine4poll17h0123456789abcdefE"), "bpnet_ring::Engine::poll");
        assert_eq!(demangle("memcpy"), "memcpy");
    }
}
