//! A description of every shared structure, field by field, built from the same offsets the typed
//! views use. The host's C header is generated from it, so the two sides cannot drift apart; the
//! tests check that each description tiles its structure with no gap and no overlap.

/// How a field is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    U8,
    Le16,
    Le32,
    Le64,
    /// A byte array (a MAC address, reserved space).
    Bytes(usize),
    /// An array of little-endian `u32`.
    Le32Array(usize),
}

impl Type {
    /// Bytes the field occupies.
    pub const fn size(self) -> usize {
        match self {
            Type::U8 => 1,
            Type::Le16 => 2,
            Type::Le32 => 4,
            Type::Le64 => 8,
            Type::Bytes(n) => n,
            Type::Le32Array(n) => 4 * n,
        }
    }
}

/// One field of a structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub ty: Type,
}

impl Field {
    pub const fn new(name: &'static str, offset: usize, ty: Type) -> Self {
        Field { name, offset, ty }
    }
}

/// One structure: its name (lowercase, as in C), size, where it lives and who writes it, and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Struct {
    pub name: &'static str,
    pub len: usize,
    pub doc: &'static str,
    pub fields: &'static [Field],
}

/// Every structure of the contract, in the order the C header declares them.
pub const STRUCTS: &[Struct] = &[
    crate::bar::HEADER_SCHEMA,
    crate::bar::DOORBELLS_SCHEMA,
    crate::bar::DESCRIPTOR_SCHEMA,
    crate::bar::AGENT_INFO_SCHEMA,
    crate::bar::BOARD_INFO_SCHEMA,
    crate::bar::COUNTERS_SCHEMA,
    crate::bar::BOOT_BLOCK_SCHEMA,
    crate::status::HEADER_SCHEMA,
    crate::status::COMPLETION_SCHEMA,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_tile_each_struct() {
        for s in STRUCTS {
            let mut at = 0;
            for f in s.fields {
                assert_eq!(f.offset, at, "{}.{} leaves a gap or overlaps", s.name, f.name);
                // Natural alignment, so the C compiler adds no padding and needs no `__packed`.
                let align = match f.ty {
                    Type::U8 | Type::Bytes(_) => 1,
                    Type::Le16 => 2,
                    Type::Le32 | Type::Le32Array(_) => 4,
                    Type::Le64 => 8,
                };
                assert!(f.offset.is_multiple_of(align), "{}.{} misaligned", s.name, f.name);
                at += f.ty.size();
            }
            assert_eq!(at, s.len, "{} fields do not add up to its length", s.name);
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, s) in STRUCTS.iter().enumerate() {
            assert!(STRUCTS[i + 1..].iter().all(|t| t.name != s.name));
            for (j, f) in s.fields.iter().enumerate() {
                assert!(s.fields[j + 1..].iter().all(|g| g.name != f.name), "{}.{}", s.name, f.name);
            }
        }
    }
}
