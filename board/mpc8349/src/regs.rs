//! Volatile register access. IMMR registers are big-endian (native) unless a block says otherwise;
//! the little-endian blocks (DMA, message unit) use the `_le` accessors.

use core::marker::PhantomData;

/// A device register of type `T` at a fixed address.
pub struct Reg<T> {
    addr: usize,
    _t: PhantomData<T>,
}

impl<T: Copy> Reg<T> {
    /// # Safety
    /// `addr` must be a device register of width `size_of::<T>()`, mapped cache-inhibited.
    pub const unsafe fn at(addr: usize) -> Self {
        Reg { addr, _t: PhantomData }
    }

    pub fn read(&self) -> T {
        // SAFETY: `at`'s contract: a mapped register of this width.
        unsafe { core::ptr::read_volatile(self.addr as *const T) }
    }

    pub fn write(&self, value: T) {
        // SAFETY: `at`'s contract: a mapped register of this width.
        unsafe { core::ptr::write_volatile(self.addr as *mut T, value) };
        io_barrier();
    }
}

impl Reg<u32> {
    pub fn modify(&self, f: impl FnOnce(u32) -> u32) {
        self.write(f(self.read()));
    }

    /// Read a little-endian register.
    pub fn read_le(&self) -> u32 {
        u32::from_le(self.read())
    }

    /// Write a little-endian register.
    pub fn write_le(&self, value: u32) {
        self.write(value.to_le());
    }
}

/// Order a device store before whatever follows (`eieio` pairs with the device seeing our
/// earlier stores to the same block in program order).
#[inline(always)]
fn io_barrier() {
    #[cfg(target_arch = "powerpc")]
    // SAFETY: a barrier has no effect beyond ordering.
    unsafe {
        core::arch::asm!("eieio", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "powerpc"))]
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}
