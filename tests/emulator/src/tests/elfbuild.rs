//! Builds small ELF32 big-endian PowerPC executables for the tests: program headers for the segments,
//! plus section headers, a symbol table and extra non-allocated sections (e.g. `.defmt`), so both the
//! loader and `object`/`defmt_decoder` see a well-formed file.

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
const SHN_ABS: u16 = 0xFFF1;

pub struct Segment {
    pub addr: u32,
    pub data: Vec<u8>,
    pub mem_size: u32,
    pub flags: u32,
}

/// Where a symbol lives.
pub enum SymbolSection {
    Absolute,
    /// Index into [`ElfSpec::extra_sections`].
    Extra(usize),
}

pub struct ElfSpec {
    pub entry: u32,
    pub segments: Vec<Segment>,
    pub symbols: Vec<(String, u32, SymbolSection)>,
    pub extra_sections: Vec<(String, Vec<u8>)>,
    /// Header fields the loader checks, overridable to build bad files.
    pub class: u8,
    pub data: u8,
    pub machine: u16,
    pub elf_type: u16,
}

impl ElfSpec {
    /// An executable with one RWX code segment at `addr` and entry at its start.
    pub fn code(addr: u32, code: Vec<u8>) -> ElfSpec {
        let mem_size = code.len() as u32;
        ElfSpec {
            entry: addr,
            segments: vec![Segment { addr, data: code, mem_size, flags: PF_R | PF_W | PF_X }],
            symbols: Vec::new(),
            extra_sections: Vec::new(),
            class: 1,
            data: 2,
            machine: 20,
            elf_type: 2,
        }
    }

    pub fn segment(mut self, addr: u32, data: Vec<u8>, flags: u32) -> ElfSpec {
        let mem_size = data.len() as u32;
        self.segments.push(Segment { addr, data, mem_size, flags });
        self
    }

    pub fn symbol(mut self, name: &str, value: u32) -> ElfSpec {
        self.symbols.push((name.to_string(), value, SymbolSection::Absolute));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        build(self)
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn align(out: &mut Vec<u8>, to: usize) {
    while !out.len().is_multiple_of(to) {
        out.push(0);
    }
}

struct SectionHeader {
    name: u32,
    kind: u32,
    flags: u32,
    addr: u32,
    offset: u32,
    size: u32,
    link: u32,
    info: u32,
    align: u32,
    entsize: u32,
}

fn build(spec: &ElfSpec) -> Vec<u8> {
    let phnum = spec.segments.len();
    let mut out = vec![0u8; 52 + 32 * phnum];

    // Segment contents.
    let mut seg_offsets = Vec::new();
    for s in &spec.segments {
        align(&mut out, 4);
        seg_offsets.push(out.len() as u32);
        out.extend_from_slice(&s.data);
    }

    // Section name table and string table built as we go.
    let mut shstrtab = vec![0u8];
    let mut name = |n: &str| {
        let at = shstrtab.len() as u32;
        shstrtab.extend_from_slice(n.as_bytes());
        shstrtab.push(0);
        at
    };
    let mut headers = vec![SectionHeader {
        name: 0,
        kind: 0,
        flags: 0,
        addr: 0,
        offset: 0,
        size: 0,
        link: 0,
        info: 0,
        align: 0,
        entsize: 0,
    }];
    for (i, s) in spec.segments.iter().enumerate() {
        let flags = 0x2 | if s.flags & PF_X != 0 { 0x4 } else { 0 } | if s.flags & PF_W != 0 { 0x1 } else { 0 };
        headers.push(SectionHeader {
            name: name(&format!(".seg{i}")),
            kind: 1,
            flags,
            addr: s.addr,
            offset: seg_offsets[i],
            size: s.data.len() as u32,
            link: 0,
            info: 0,
            align: 4,
            entsize: 0,
        });
    }
    let first_extra = headers.len();
    for (section_name, data) in &spec.extra_sections {
        align(&mut out, 4);
        let offset = out.len() as u32;
        out.extend_from_slice(data);
        headers.push(SectionHeader {
            name: name(section_name),
            kind: 1,
            flags: 0,
            addr: 0,
            offset,
            size: data.len() as u32,
            link: 0,
            info: 0,
            align: 1,
            entsize: 0,
        });
    }

    // Symbols.
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 16];
    for (sym_name, value, section) in &spec.symbols {
        let at = strtab.len() as u32;
        strtab.extend_from_slice(sym_name.as_bytes());
        strtab.push(0);
        put32(&mut symtab, at);
        put32(&mut symtab, *value);
        put32(&mut symtab, 0);
        symtab.push(0x10); // STB_GLOBAL, STT_NOTYPE
        symtab.push(0);
        put16(
            &mut symtab,
            match section {
                SymbolSection::Absolute => SHN_ABS,
                SymbolSection::Extra(i) => (first_extra + i) as u16,
            },
        );
    }
    let symtab_index = headers.len() as u32;
    align(&mut out, 4);
    let symtab_offset = out.len() as u32;
    out.extend_from_slice(&symtab);
    let strtab_offset = out.len() as u32;
    out.extend_from_slice(&strtab);
    headers.push(SectionHeader {
        name: name(".symtab"),
        kind: 2,
        flags: 0,
        addr: 0,
        offset: symtab_offset,
        size: symtab.len() as u32,
        link: symtab_index + 1,
        info: 1,
        align: 4,
        entsize: 16,
    });
    headers.push(SectionHeader {
        name: name(".strtab"),
        kind: 3,
        flags: 0,
        addr: 0,
        offset: strtab_offset,
        size: strtab.len() as u32,
        link: 0,
        info: 0,
        align: 1,
        entsize: 0,
    });
    let shstrndx = headers.len() as u16;
    let shstrtab_name = name(".shstrtab");
    let shstrtab_offset = out.len() as u32;
    out.extend_from_slice(&shstrtab);
    headers.push(SectionHeader {
        name: shstrtab_name,
        kind: 3,
        flags: 0,
        addr: 0,
        offset: shstrtab_offset,
        size: shstrtab.len() as u32,
        link: 0,
        info: 0,
        align: 1,
        entsize: 0,
    });
    align(&mut out, 4);
    let shoff = out.len() as u32;
    for h in &headers {
        for v in [h.name, h.kind, h.flags, h.addr, h.offset, h.size, h.link, h.info, h.align, h.entsize] {
            put32(&mut out, v);
        }
    }

    // ELF header.
    let mut eh = Vec::new();
    eh.extend_from_slice(b"\x7fELF");
    eh.extend_from_slice(&[spec.class, spec.data, 1, 0]);
    eh.extend_from_slice(&[0; 8]);
    put16(&mut eh, spec.elf_type);
    put16(&mut eh, spec.machine);
    put32(&mut eh, 1);
    put32(&mut eh, spec.entry);
    put32(&mut eh, 52);
    put32(&mut eh, shoff);
    put32(&mut eh, 0);
    put16(&mut eh, 52);
    put16(&mut eh, 32);
    put16(&mut eh, phnum as u16);
    put16(&mut eh, 40);
    put16(&mut eh, headers.len() as u16);
    put16(&mut eh, shstrndx);
    // Program headers.
    for (s, offset) in spec.segments.iter().zip(&seg_offsets) {
        for v in [1, *offset, s.addr, s.addr, s.data.len() as u32, s.mem_size, s.flags, 4] {
            put32(&mut eh, v);
        }
    }
    out[..eh.len()].copy_from_slice(&eh);
    out
}
