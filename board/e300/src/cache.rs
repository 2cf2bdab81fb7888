//! Cache maintenance for 32-byte lines. Used at every DMA boundary with non-snooped memory and
//! after writing code (the exception vectors).

pub const LINE: usize = 32;

fn lines(addr: usize, len: usize) -> impl Iterator<Item = usize> {
    let start = addr & !(LINE - 1);
    let end = addr.saturating_add(len);
    (start..end).step_by(LINE)
}

/// Write dirty lines back to memory (before a device reads the range).
pub fn clean(addr: usize, len: usize) {
    for line in lines(addr, len) {
        // SAFETY: dcbst only writes back a cache line; it never changes memory contents.
        unsafe { core::arch::asm!("dcbst 0, {0}", in(reg) line, options(nostack, preserves_flags)) };
    }
    crate::barrier::sync();
}

/// Write back and invalidate lines (before a device writes the range the CPU will read).
pub fn flush(addr: usize, len: usize) {
    for line in lines(addr, len) {
        // SAFETY: dcbf writes back and drops a line; memory contents are preserved.
        unsafe { core::arch::asm!("dcbf 0, {0}", in(reg) line, options(nostack, preserves_flags)) };
    }
    crate::barrier::sync();
}

/// Make code written through the data cache visible to instruction fetch.
pub fn sync_icache(addr: usize, len: usize) {
    for line in lines(addr, len) {
        // SAFETY: dcbst writes back the new instructions.
        unsafe { core::arch::asm!("dcbst 0, {0}", in(reg) line, options(nostack, preserves_flags)) };
    }
    crate::barrier::sync();
    for line in lines(addr, len) {
        // SAFETY: icbi drops stale instructions; it has no other effect.
        unsafe { core::arch::asm!("icbi 0, {0}", in(reg) line, options(nostack, preserves_flags)) };
    }
    crate::barrier::sync();
    crate::barrier::isync();
}
