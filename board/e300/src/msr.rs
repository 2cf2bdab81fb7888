//! The Machine State Register.

pub const EE: u32 = 0x8000;
pub const PR: u32 = 0x4000;
pub const FP: u32 = 0x2000;
pub const ME: u32 = 0x1000;
pub const IP: u32 = 0x0040;
pub const IR: u32 = 0x0020;
pub const DR: u32 = 0x0010;
pub const RI: u32 = 0x0002;

/// What the firmware runs with: translation on through the BATs, FP available (the compiler may
/// use floating-point registers), machine checks enabled, external interrupts off.
pub const RUN: u32 = ME | RI | FP | IR | DR;

pub fn read() -> u32 {
    let msr: u32;
    // SAFETY: mfmsr only reads the MSR.
    unsafe { core::arch::asm!("mfmsr {0}", out(reg) msr, options(nomem, nostack, preserves_flags)) };
    msr
}

/// Write the MSR. Only bits that do not change address translation may be changed this way (EE,
/// IP, FP, ...): IR/DR changes go through `rfi` in the start code.
///
/// # Safety
/// Enabling EE lets interrupts in: the vectors must be installed. Callers keep IR/DR unchanged.
pub unsafe fn write(msr: u32) {
    // SAFETY: the caller upholds the contract above; isync makes the new state take effect before
    // the next instruction.
    unsafe { core::arch::asm!("mtmsr {0}", "isync", in(reg) msr, options(nostack, preserves_flags)) };
}

/// Run `f` with external interrupts masked, restoring MSR[EE] afterwards.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let saved = read();
    // SAFETY: only EE changes, and it is cleared: nothing can arrive that needs vectors.
    unsafe { write(saved & !EE) };
    let r = f();
    // SAFETY: restores the caller's EE as it was.
    unsafe { write(saved) };
    r
}

struct SingleCore;
critical_section::set_impl!(SingleCore);

// SAFETY: the e300 is single-core and the firmware runs nothing below MSR[EE]-masked interrupts
// except machine checks, which do not return; masking EE is therefore a complete critical section.
unsafe impl critical_section::Impl for SingleCore {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        let saved = read();
        // SAFETY: clears EE only.
        unsafe { write(saved & !EE) };
        saved
    }

    unsafe fn release(saved: critical_section::RawRestoreState) {
        // SAFETY: restores the EE state `acquire` saved.
        unsafe { write(saved) };
    }
}
