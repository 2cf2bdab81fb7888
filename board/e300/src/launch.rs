//! Starting another program from RAM: what U-Boot's `go` does, for a payload that may have to be
//! copied over the very code that starts it (the firmware starting a netboot image at its own load
//! address).
//!
//! [`launch`] turns external interrupts off, copies a small position-independent trampoline to
//! [`TRAMPOLINE_ADDR`] (below every program's load address, above the exception vectors), makes it
//! visible to instruction fetch and branches there. The trampoline copies the payload to its load
//! address (forward, or backward when the destination overlaps the source from above), writes the
//! copied range back from the data cache and invalidates it in the instruction cache, then enters
//! the payload with `rfi`, MSR = ME | RI (translation and interrupts off), r3 = 1, r4 = 0, as
//! U-Boot's `go` passes argc/argv. The payload's start code takes its own state from there as it does
//! from U-Boot's (`_start`: DEC, HID0, MSR, all eight BAT pairs).

/// Where the trampoline runs: RAM no program is loaded into (the programs start at 0x0010_0000, the
/// exception vectors end below 0x2000, the boot info record is at 0x2000..0x2040).
pub const TRAMPOLINE_ADDR: u32 = 0x2100;
/// Bytes set aside for it (0x2100..0x3000).
pub const TRAMPOLINE_ROOM: usize = 0xF00;

/// MSR at the payload's first instruction: machine check and recoverable interrupt, nothing else (a
/// gentler start than U-Boot's, which leaves EE and translation on).
const MSR_AT_GO: u32 = crate::msr::ME | crate::msr::RI;

core::arch::global_asm!(
    r#"
    .section .text.e300_launch, "ax"
    .global __e300_trampoline_start
    .global __e300_trampoline_end
    .balign 4
# r3 = source, r4 = length, r5 = load address, r6 = entry, r9 = MSR for the payload.
# Position independent: only relative branches, no data references.
__e300_trampoline_start:
    cmplwi  %r4, 0
    beq     5f
    # Backward when load > source and the ranges overlap, else forward.
    cmplw   %r5, %r3
    ble     1f
    add     %r7, %r3, %r4
    cmplw   %r5, %r7
    bge     1f
    # Backward, a byte at a time (rare: an image staged just below its load address).
    add     %r3, %r3, %r4
    add     %r7, %r5, %r4
    mtctr   %r4
0:  lbzu    %r8, -1(%r3)
    stbu    %r8, -1(%r7)
    bdnz    0b
    b       4f
1:  # Forward: words while at least 4 bytes remain (source and load are word aligned), then bytes.
    addi    %r3, %r3, -4
    addi    %r7, %r5, -4
    srwi.   %r8, %r4, 2
    beq     2f
    mtctr   %r8
6:  lwzu    %r8, 4(%r3)
    stwu    %r8, 4(%r7)
    bdnz    6b
2:  andi.   %r8, %r4, 3
    beq     4f
    addi    %r3, %r3, 3
    addi    %r7, %r7, 3
    mtctr   %r8
3:  lbzu    %r8, 1(%r3)
    stbu    %r8, 1(%r7)
    bdnz    3b
4:  # Write the copy back and drop stale instructions over [load, load + length).
    rlwinm  %r7, %r5, 0, 0, 26
    add     %r8, %r5, %r4
7:  cmplw   %r7, %r8
    bge     8f
    dcbst   0, %r7
    addi    %r7, %r7, 32
    b       7b
8:  sync
    rlwinm  %r7, %r5, 0, 0, 26
9:  cmplw   %r7, %r8
    bge     5f
    icbi    0, %r7
    addi    %r7, %r7, 32
    b       9b
5:  sync
    isync
    li      %r3, 1
    li      %r4, 0
    mtsrr0  %r6
    mtsrr1  %r9
    rfi
__e300_trampoline_end:
"#
);

extern "C" {
    static __e300_trampoline_start: u8;
    static __e300_trampoline_end: u8;
}

/// Copy `len` bytes at `src` to `load` and start the copy at `entry`; never returns.
///
/// `src` and `load` must be word aligned (a signed image's load address is; its payload starts at a
/// word-aligned offset of the image), `entry` inside `load..load + len`, and neither range may touch
/// `TRAMPOLINE_ADDR..+TRAMPOLINE_ROOM` or the exception vectors: the caller has verified the image
/// (`bpnet-image` keeps payloads inside the FIRMWARE RAM range). The caller stops every DMA and
/// interrupt source first; the payload starts as from U-Boot's `go`.
pub fn launch(src: u32, len: u32, load: u32, entry: u32) -> ! {
    let tramp_end = TRAMPOLINE_ADDR + TRAMPOLINE_ROOM as u32;
    let outside = |a: u32, n: u32| u64::from(a) >= u64::from(tramp_end) || u64::from(a) + u64::from(n) <= 0x2000;
    if !src.is_multiple_of(4) || !load.is_multiple_of(4) || !outside(src, len) || !outside(load, len) {
        panic!("launch: payload {:#x} ({} bytes) to {:#x} misaligned or over the trampoline", src, len, load);
    }
    let start = core::ptr::addr_of!(__e300_trampoline_start) as usize;
    let end = core::ptr::addr_of!(__e300_trampoline_end) as usize;
    let code_len = end - start;
    assert!(code_len <= TRAMPOLINE_ROOM, "launch: trampoline outgrows its room");
    // SAFETY: clearing EE only keeps interrupts out; translation is unchanged.
    unsafe { crate::msr::write(crate::msr::read() & !crate::msr::EE) };
    // SAFETY: the trampoline's bytes are linked into .text (start..end); TRAMPOLINE_ADDR..+ROOM is RAM
    // that no program is linked into or loads into (checked above for the payload) and that nothing
    // else uses once interrupts are off; the copy does not overlap its source.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE_ADDR as *mut u8, code_len) };
    crate::cache::sync_icache(TRAMPOLINE_ADDR as usize, code_len);
    // SAFETY: the trampoline was just copied and made visible to instruction fetch; it uses only the
    // registers it is given and r7, r8, CTR, SRR0/1, and leaves this program for good.
    unsafe {
        core::arch::asm!(
            "mtctr {t}",
            "bctr",
            t = in(reg) TRAMPOLINE_ADDR,
            in("r3") src,
            in("r4") len,
            in("r5") load,
            in("r6") entry,
            in("r9") MSR_AT_GO,
            options(noreturn, nostack)
        )
    }
}
