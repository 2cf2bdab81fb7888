//! Memory barriers. Each call site names the access on the other side it pairs with.

/// `sync`: every earlier load and store is performed, as seen by every other bus master, before
/// any later one. Use before telling another master (host, DMA engine) to look at memory.
#[inline(always)]
pub fn sync() {
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe { core::arch::asm!("sync", options(nostack, preserves_flags)) };
}

/// `eieio`: orders stores to cache-inhibited (device) memory, and stores to ordinary memory among
/// themselves, without waiting for them to complete.
#[inline(always)]
pub fn eieio() {
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe { core::arch::asm!("eieio", options(nostack, preserves_flags)) };
}

/// `isync`: later instructions start only after earlier ones complete (context synchronisation).
#[inline(always)]
pub fn isync() {
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe { core::arch::asm!("isync", options(nostack, preserves_flags)) };
}
