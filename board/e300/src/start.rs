//! The first instructions after U-Boot's `go` (or the emulator's loader, or [`crate::launch`]) and the
//! two ways to stop.
//!
//! U-Boot hands over with its own state in force (docs/REGISTERS.md, "Entry state at go"): MSR[EE] set
//! with its decrementer armed, translation on through its eight BAT pairs, the data cache locked
//! (HID0[DLOCK]) and its exception vectors at 0x100. `_start` takes the machine before anything can fire:
//!
//! 1. MSR[EE] off (the very first instructions), then DEC loaded with the largest positive count, so
//!    U-Boot's decrementer cannot reach U-Boot's vector.
//! 2. The data cache invalidated and unlocked, in U-Boot's own order (cpu/mpc83xx/start.S
//!    `unlock_ram_in_cache`): HID0 with DCFI set and DLOCK clear, then DCFI clear. Flash invalidation
//!    drops U-Boot's locked init-RAM lines without writing them anywhere; nothing of ours is in the cache
//!    yet (with the cache locked, U-Boot loaded this image straight to memory).
//! 3. A known MSR with `rfi`: translation off, FP available (the compiler may use FP registers), ME, RI,
//!    MSR[IP] kept (the vectors stay U-Boot's until ours are installed, with EE off nothing reaches them).
//! 4. All eight IBAT/DBAT pairs cleared (translation is off, so no half-written pair is used): U-Boot's
//!    pairs 4-7 would overlap the board's own table otherwise.
//!
//! Then the stack, .bss, and the board's `__e300_main`, which installs vectors and BATs.

core::arch::global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
    .type _start, @function
_start:
    mfmsr   %r6
    rlwinm  %r6, %r6, 0, 17, 15
    mtmsr   %r6
    isync
    lis     %r5, 0x7fff
    ori     %r5, %r5, 0xffff
    mtdec   %r5
    # HID0 (SPR 1008): DLOCK 0x1000, DCFI 0x0400.
    mfspr   %r5, 1008
    li      %r7, 0x1400
    andc    %r5, %r5, %r7
    ori     %r7, %r5, 0x0400
    sync
    mtspr   1008, %r7
    mtspr   1008, %r5
    sync
    isync
    # New MSR: ME | FP | RI, keeping IP.
    andi.   %r6, %r6, 0x0040
    ori     %r5, %r6, 0x3002
    lis     %r6, 1f@ha
    addi    %r6, %r6, 1f@l
    mtsrr0  %r6
    mtsrr1  %r5
    rfi
1:
    li      %r0, 0
    mtspr   528, %r0
    mtspr   530, %r0
    mtspr   532, %r0
    mtspr   534, %r0
    mtspr   536, %r0
    mtspr   538, %r0
    mtspr   540, %r0
    mtspr   542, %r0
    mtspr   560, %r0
    mtspr   562, %r0
    mtspr   564, %r0
    mtspr   566, %r0
    mtspr   568, %r0
    mtspr   570, %r0
    mtspr   572, %r0
    mtspr   574, %r0
    isync
    lis     %r1, __stack_top@ha
    addi    %r1, %r1, __stack_top@l
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
