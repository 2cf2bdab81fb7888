//! Where things live in the NOR flash: a `const` the board passes in (tests pass small fakes).

/// A byte range of the flash, as offsets from its base (the board adds `FLASH_BASE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u32,
    pub len: u32,
}

impl Region {
    pub const fn new(offset: u32, len: u32) -> Self {
        Region { offset, len }
    }

    /// One past the last byte, in 64 bits so a hostile length cannot wrap.
    pub const fn end(&self) -> u64 {
        self.offset as u64 + self.len as u64
    }

    /// Whether `offset .. offset + len` lies inside this region.
    pub const fn holds(&self, offset: u32, len: u32) -> bool {
        offset >= self.offset && offset as u64 + len as u64 <= self.end()
    }
}

/// One of the two firmware slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const BOTH: [Slot; 2] = [Slot::A, Slot::B];

    pub const fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub const fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

/// Why a layout was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The sector size is not a power of two, or the flash not a whole number of sectors.
    Geometry,
    /// A region is empty, not sector-aligned, or runs past the end of the flash.
    Region(Region),
    /// A boot-state area is not exactly one sector.
    StateSector,
    /// The slots differ in size.
    SlotSizes,
    /// The regions are not in the documented order without overlap (reserved, state, state, slot A,
    /// slot B, identity), or the reserved area does not start the flash.
    Order,
    /// The identity sector is not the last sector of the flash.
    IdentityNotLast,
}

/// The flash map the update logic works in. Only the two boot-state sectors and the two slots are
/// ever erased or programmed; the reserved area and the identity sector are never touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub flash_bytes: u32,
    pub sector_bytes: u32,
    /// U-Boot, its two environment sectors and the boot stage: written at provisioning only.
    pub reserved: Region,
    /// The two ping-pong boot-state sectors.
    pub state: [Region; 2],
    /// Slot A and slot B, in that order.
    pub slots: [Region; 2],
    /// The board identity record's sector (`bpnet-services`' `identity`), the last one.
    pub identity: Region,
}

const SECTOR: u32 = 128 << 10;
const MIB: u32 = 1 << 20;

/// The MPC8349EMDS: 32 MiB at `FLASH_BASE` (0xFE00_0000), 256 uniform sectors of 128 KiB.
pub const MPC8349EMDS: Layout = Layout {
    flash_bytes: 32 * MIB,
    sector_bytes: SECTOR,
    reserved: Region::new(0, MIB),
    state: [Region::new(MIB, SECTOR), Region::new(MIB + SECTOR, SECTOR)],
    slots: [Region::new(MIB + 2 * SECTOR, 8 * MIB), Region::new(9 * MIB + 2 * SECTOR, 8 * MIB)],
    identity: Region::new(32 * MIB - SECTOR, SECTOR),
};

const _: () = assert!(MPC8349EMDS.check().is_ok(), "the board's flash layout is inconsistent");

impl Layout {
    /// Check the invariants the update logic relies on. A `const fn`, so a board can assert its layout
    /// at compile time.
    pub const fn check(&self) -> Result<(), LayoutError> {
        let sector = self.sector_bytes;
        if sector == 0 || !sector.is_power_of_two() || self.flash_bytes == 0 || !self.flash_bytes.is_multiple_of(sector)
        {
            return Err(LayoutError::Geometry);
        }
        let all = [self.reserved, self.state[0], self.state[1], self.slots[0], self.slots[1], self.identity];
        let mut i = 0;
        while i < all.len() {
            let r = all[i];
            if r.len == 0
                || !r.offset.is_multiple_of(sector)
                || !r.len.is_multiple_of(sector)
                || r.end() > self.flash_bytes as u64
            {
                return Err(LayoutError::Region(r));
            }
            if i > 0 && all[i - 1].end() > r.offset as u64 {
                return Err(LayoutError::Order);
            }
            i += 1;
        }
        if self.reserved.offset != 0 {
            return Err(LayoutError::Order);
        }
        if self.state[0].len != sector || self.state[1].len != sector {
            return Err(LayoutError::StateSector);
        }
        if self.slots[0].len != self.slots[1].len {
            return Err(LayoutError::SlotSizes);
        }
        if self.identity.len != sector || self.identity.end() != self.flash_bytes as u64 {
            return Err(LayoutError::IdentityNotLast);
        }
        Ok(())
    }

    pub const fn slot(&self, slot: Slot) -> Region {
        self.slots[slot.index()]
    }

    /// Whether the update logic may erase or program `offset .. offset + len`: inside one boot-state
    /// sector or one slot. Every erase and program goes through this check.
    pub const fn writable(&self, offset: u32, len: u32) -> bool {
        self.state[0].holds(offset, len)
            || self.state[1].holds(offset, len)
            || self.slots[0].holds(offset, len)
            || self.slots[1].holds(offset, len)
    }
}
