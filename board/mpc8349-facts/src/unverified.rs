//! Facts no available source settles. Each is one constant both sides use, so a correction is one edit;
//! docs/REGISTERS.md ("Unverified facts") lists them with what is known.

/// DMA link word (CDAR, or a descriptor's NDAR field) bits, as RTEMS's mpc83xx.h names them.
pub mod dma_link {
    /// End of transfer descriptor: this descriptor is the last of the chain.
    pub const EOTD: u32 = 0x1;
    /// Snoop enable for the next descriptor fetch.
    pub const SNEN: u32 = 0x10;
}

/// The link word of the last descriptor of a chain. Linux's fsldma (`set_ld_eol`) ORs SNEN into the
/// end-of-list link as well as EOTD; what SNEN means in a link that points nowhere is not documented in
/// any source at hand. Both the firmware and the emulator's DMA model use this one value.
pub const DMA_END_OF_LIST_LINK: u32 = dma_link::EOTD | dma_link::SNEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_list_link_has_eotd_and_snen_and_no_address() {
        assert_eq!(DMA_END_OF_LIST_LINK, 0x11);
        assert_eq!(DMA_END_OF_LIST_LINK & !0x1F, 0, "an end-of-list link carries no next address");
    }
}
