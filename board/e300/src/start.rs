//! The first instructions after U-Boot's `go` (or the emulator's loader) and the two ways to stop.
//!
//! U-Boot hands over with its own BATs and translation on, the caches on, EE off, r3/r4 = argc/argv.
//! The start code takes a known state with `rfi` (translation off, EE off, FP available), sets the
//! stack, clears .bss and calls the board's `__e300_main`, which installs vectors and BATs.

core::arch::global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
    .type _start, @function
_start:
    # New MSR: ME | FP | RI, keeping IP (the vectors are still U-Boot's until ours are installed).
    mfmsr   %r6
    andi.   %r6, %r6, 0x0040
    ori     %r5, %r6, 0x3002
    lis     %r6, 1f@ha
    addi    %r6, %r6, 1f@l
    mtsrr0  %r6
    mtsrr1  %r5
    rfi
1:
    lis     %r1, __stack_top@ha
    addi    %r1, %r1, __stack_top@l
    li      %r0, 0
    stwu    %r0, -16(%r1)
    lis     %r3, __bss_start@ha
    addi    %r3, %r3, __bss_start@l
    lis     %r4, __bss_end@ha
    addi    %r4, %r4, __bss_end@l
2:
    cmplw   %r3, %r4
    bge     3f
    stw     %r0, 0(%r3)
    addi    %r3, %r3, 4
    b       2b
3:
    bl      __e300_main
4:
    b       4b
    .size _start, . - _start
"#
);

extern "Rust" {
    /// The board's entry point, called once with a stack and a cleared .bss.
    fn __e300_main() -> !;
}

/// Keep the symbol referenced so LTO cannot drop the board's entry point.
#[used]
static KEEP_MAIN: unsafe fn() -> ! = __e300_main;

/// Stop for good: external interrupts off, then a branch to itself. Nothing but a reset leaves it;
/// the board emulator recognises it as "halted".
pub fn halt() -> ! {
    // SAFETY: clearing EE cannot break anything; the loop never returns.
    unsafe {
        crate::msr::write(crate::msr::read() & !crate::msr::EE);
        core::arch::asm!("1: b 1b", options(noreturn, nomem, nostack));
    }
}

/// Wait for interrupts forever: EE on, then a branch to itself. The decrementer handler keeps the
/// decrementer from firing more than once every ~32 s; the emulator recognises the loop as "idle".
pub fn idle() -> ! {
    crate::timebase::park_decrementer();
    // SAFETY: the vectors are installed (the board calls `exception::install` first); the loop
    // never returns.
    unsafe {
        crate::msr::write(crate::msr::read() | crate::msr::EE);
        core::arch::asm!("1: b 1b", options(noreturn, nomem, nostack));
    }
}
