//! Exception vectors, 0x100 to 0x1200. Every fault vector reports what the architecture saved (vector,
//! SRR0, SRR1, DAR, DSISR; for the translation-miss vectors the missed address) to the board's
//! `__e300_fault` and halts; the decrementer vector re-arms the
//! decrementer and returns, ending a [`wait_for_interrupt`] it arrived in (it is a timer, not a
//! fault); the external interrupt vector saves the interrupted context, calls the board's
//! `__e300_external` and returns.
//!
//! The stubs are linked into the image (between `__e300_vectors_start` and `__e300_vectors_end`,
//! one every 256 bytes, starting with vector 0x100) and copied to 0x100 by [`install`]. Loading
//! them straight to 0x100 would overwrite U-Boot's vectors while U-Boot still runs.

/// What the hardware saved when a fault vector was taken.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub vector: u32,
    pub srr0: u32,
    pub srr1: u32,
    /// The data address: DAR, or for the translation-miss vectors (0x1000-0x1200), where the e300 leaves
    /// DAR alone, the address that no BAT mapped (IMISS for 0x1000, DMISS for 0x1100/0x1200).
    pub dar: u32,
    pub dsisr: u32,
}

/// The e300's software table-search vectors (603e family; Linux head_book3s_32.S): the firmware keeps no
/// page table, so reaching one means an access outside every BAT.
pub mod vector {
    pub const ITLB_MISS: u32 = 0x1000;
    pub const DTLB_LOAD_MISS: u32 = 0x1100;
    pub const DTLB_STORE_MISS: u32 = 0x1200;
}

impl Fault {
    /// The architecture's name for the vector.
    pub fn name(&self) -> &'static str {
        match self.vector {
            0x100 => "system reset",
            0x200 => "machine check",
            0x300 => "DSI (data storage)",
            0x400 => "ISI (instruction storage)",
            0x500 => "external interrupt",
            0x600 => "alignment",
            0x700 => "program",
            0x800 => "floating-point unavailable",
            0x900 => "decrementer",
            0xC00 => "system call",
            0xD00 => "trace",
            vector::ITLB_MISS => "instruction fetch outside every BAT (ITLB miss)",
            vector::DTLB_LOAD_MISS => "data load outside every BAT (DTLB load miss)",
            vector::DTLB_STORE_MISS => "data store outside every BAT (DTLB store miss)",
            _ => "unexpected",
        }
    }

    /// For a program exception: what SRR1 says happened.
    pub fn program_cause(&self) -> Option<&'static str> {
        if self.vector != 0x700 {
            return None;
        }
        Some(match self.srr1 {
            s if s & 0x0002_0000 != 0 => "trap",
            s if s & 0x0004_0000 != 0 => "privileged instruction",
            s if s & 0x0008_0000 != 0 => "illegal instruction",
            s if s & 0x0010_0000 != 0 => "floating-point enabled",
            _ => "unknown cause",
        })
    }
}

extern "Rust" {
    /// The board's fault report (console, log); must not return.
    fn __e300_fault(fault: &Fault) -> !;
}

// One stub per vector, 256 bytes apart, copied to 0x100 + 0x100 * n. Each saves r3 and r1 in
// SPRG0/SPRG1, loads the vector number and jumps (absolutely: the stub runs from its copy) to the
// common fault entry. The decrementer stub (0x900) re-arms DEC and returns with rfi (past the wait
// loop if it was waiting).
macro_rules! fault_stub {
    ($vector:literal) => {
        concat!(
            "    .balign 256\n",
            "    mtsprg0 %r3\n",
            "    mtsprg1 %r1\n",
            "    li      %r3, ",
            $vector,
            "\n",
            "    lis     %r1, e300_fault_entry@ha\n",
            "    addi    %r1, %r1, e300_fault_entry@l\n",
            "    mtctr   %r1\n",
            "    bctr\n",
        )
    };
}

core::arch::global_asm!(
    "    .section .text.e300_vectors, \"ax\"",
    fault_stub!("0x100"),
    fault_stub!("0x200"),
    fault_stub!("0x300"),
    fault_stub!("0x400"),
    // 0x500: external interrupt. Free r3 and CTR through SPRG0/SPRG1 and jump to the common entry.
    "    .balign 256",
    "    mtsprg0 %r3",
    "    mfctr   %r3",
    "    mtsprg1 %r3",
    "    lis     %r3, e300_external_entry@ha",
    "    addi    %r3, %r3, e300_external_entry@l",
    "    mtctr   %r3",
    "    bctr",
    fault_stub!("0x600"),
    fault_stub!("0x700"),
    fault_stub!("0x800"),
    // 0x900: decrementer. Re-arm with the largest positive count (whoever armed it re-arms it
    // before the next wait) and return; if it fired in `e300_wait`'s loop, return past the loop so
    // the wait ends, as the external entry does. Branch-free (cntlzw is 32 only for a zero
    // difference), so CR and XER stay untouched and r3/r4 are the only registers to save; they go
    // to SPRG2/SPRG3, which nothing else uses (the other handlers run with EE off, so none of them
    // is interrupted by this one).
    "    .balign 256",
    "    mtsprg2 %r3",
    "    mtsprg3 %r4",
    "    lis     %r3, 0x7fff",
    "    ori     %r3, %r3, 0xffff",
    "    mtdec   %r3",
    "    lis     %r4, e300_wait_loop@ha",
    "    addi    %r4, %r4, e300_wait_loop@l",
    "    mfsrr0  %r3",
    "    xor     %r4, %r3, %r4",
    "    cntlzw  %r4, %r4",
    // 32 (in the loop) becomes 4, 0..=31 become 0.
    "    rlwinm  %r4, %r4, 29, 29, 29",
    "    add     %r3, %r3, %r4",
    "    mtsrr0  %r3",
    "    mfsprg3 %r4",
    "    mfsprg2 %r3",
    "    rfi",
    fault_stub!("0xA00"),
    fault_stub!("0xB00"),
    fault_stub!("0xC00"),
    fault_stub!("0xD00"),
    fault_stub!("0xE00"),
    fault_stub!("0xF00"),
    // 0x1000-0x1200: the translation misses. The core has set MSR[TGPR], so r0-r3 here are the temporary
    // registers: r1 in the stub is one of them, and the common entry loads its own stack anyway.
    fault_stub!("0x1000"),
    fault_stub!("0x1100"),
    fault_stub!("0x1200"),
    "    .balign 4",
    "",
    // Common entry: a stack of its own (the fault may be a stack overflow), translation back on
    // (taking the exception turned it off; the BATs map 1:1), then Rust.
    "    .section .text.e300_fault_entry, \"ax\"",
    "    .global e300_fault_entry",
    "e300_fault_entry:",
    "    lis     %r1, __fault_stack_top@ha",
    "    addi    %r1, %r1, __fault_stack_top@l",
    "    li      %r0, 0",
    "    stwu    %r0, -16(%r1)",
    "    mfmsr   %r4",
    "    ori     %r4, %r4, 0x2030",
    "    mtmsr   %r4",
    "    isync",
    "    bl      e300_fault_report",
    "1:  b       1b",
);

// External interrupt entry: save the volatile registers, CR, LR, CTR, XER, SRR0 and SRR1 in a frame
// on the interrupted stack (1:1 mapped RAM, so real mode can store there), turn data and instruction
// translation back on (device registers must be reached cache-inhibited) with FP off (an interrupt
// handler has no business with FP state we do not save), call the board, restore, rfi.
// If the interrupt arrived in `e300_wait`'s loop, return past the loop: that is how `wait` ends.
core::arch::global_asm!(
    "    .section .text.e300_external_entry, \"ax\"",
    "    .global e300_external_entry",
    "e300_external_entry:",
    "    stwu    %r1, -96(%r1)",
    "    stw     %r0, 8(%r1)",
    "    mfsprg0 %r0",
    "    stw     %r0, 12(%r1)",
    "    mfsprg1 %r0",
    "    stw     %r0, 16(%r1)",
    "    stw     %r4, 20(%r1)",
    "    stw     %r5, 24(%r1)",
    "    stw     %r6, 28(%r1)",
    "    stw     %r7, 32(%r1)",
    "    stw     %r8, 36(%r1)",
    "    stw     %r9, 40(%r1)",
    "    stw     %r10, 44(%r1)",
    "    stw     %r11, 48(%r1)",
    "    stw     %r12, 52(%r1)",
    "    mflr    %r0",
    "    stw     %r0, 56(%r1)",
    "    mfcr    %r0",
    "    stw     %r0, 60(%r1)",
    "    mfxer   %r0",
    "    stw     %r0, 64(%r1)",
    "    mfsrr0  %r0",
    "    lis     %r3, e300_wait_loop@ha",
    "    addi    %r3, %r3, e300_wait_loop@l",
    "    cmplw   %r0, %r3",
    "    bne     1f",
    "    addi    %r0, %r3, 4",
    "1:  stw     %r0, 68(%r1)",
    "    mfsrr1  %r0",
    "    stw     %r0, 72(%r1)",
    "    li      %r0, 0x1032",
    "    mtmsr   %r0",
    "    isync",
    "    bl      __e300_external",
    // Translation can stay on for the restore: everything is mapped 1:1. EE is still off.
    "    lwz     %r0, 68(%r1)",
    "    mtsrr0  %r0",
    "    lwz     %r0, 72(%r1)",
    "    mtsrr1  %r0",
    "    lwz     %r0, 56(%r1)",
    "    mtlr    %r0",
    "    lwz     %r0, 60(%r1)",
    "    mtcr    %r0",
    "    lwz     %r0, 64(%r1)",
    "    mtxer   %r0",
    "    lwz     %r0, 16(%r1)",
    "    mtctr   %r0",
    "    lwz     %r3, 12(%r1)",
    "    lwz     %r4, 20(%r1)",
    "    lwz     %r5, 24(%r1)",
    "    lwz     %r6, 28(%r1)",
    "    lwz     %r7, 32(%r1)",
    "    lwz     %r8, 36(%r1)",
    "    lwz     %r9, 40(%r1)",
    "    lwz     %r10, 44(%r1)",
    "    lwz     %r11, 48(%r1)",
    "    lwz     %r12, 52(%r1)",
    "    lwz     %r0, 8(%r1)",
    "    addi    %r1, %r1, 96",
    "    rfi",
    "",
    // Wait for one interrupt: EE on, branch to self (the board emulator's 'idle'); the external
    // entry and the decrementer stub return past the loop; EE off again.
    "    .section .text.e300_wait, \"ax\"",
    "    .global e300_wait",
    "    .type e300_wait, @function",
    "e300_wait:",
    "    mfmsr   %r3",
    "    ori     %r3, %r3, 0x8000",
    "    mtmsr   %r3",
    "    .global e300_wait_loop",
    "e300_wait_loop:",
    "    b       e300_wait_loop",
    "    mfmsr   %r3",
    "    rlwinm  %r3, %r3, 0, 17, 15",
    "    mtmsr   %r3",
    "    isync",
    "    blr",
    "    .size e300_wait, . - e300_wait",
);

extern "C" {
    fn e300_wait();
}

extern "Rust" {
    /// The board's external interrupt handler: find the source (IPIC) and quiet it.
    fn __e300_external();
}

/// Keep the board's handler referenced so LTO cannot drop it (only assembly calls it).
#[used]
static KEEP_EXTERNAL: unsafe fn() = __e300_external;

/// Sleep until the next external interrupt has been handled or the decrementer has fired (see
/// [`crate::timebase::arm_decrementer`]). Call with EE off; returns with EE off. Check the
/// condition you wait for with EE off before calling, or a wake-up can be missed.
pub fn wait_for_interrupt() {
    // SAFETY: the vectors are installed before the board can call this (it runs after bring-up);
    // `e300_wait` clobbers only r3 and returns through the external entry's adjusted SRR0.
    unsafe { e300_wait() };
}

#[no_mangle]
extern "C" fn e300_fault_report(vector: u32) -> ! {
    let (srr0, srr1, dar, dsisr): (u32, u32, u32, u32);
    // SAFETY: reading the save/restore and fault-address registers has no side effects.
    unsafe {
        core::arch::asm!(
            "mfsrr0 {0}", "mfsrr1 {1}", "mfdar {2}", "mfdsisr {3}",
            out(reg) srr0, out(reg) srr1, out(reg) dar, out(reg) dsisr,
            options(nomem, nostack, preserves_flags)
        )
    };
    let dar = match vector {
        vector::ITLB_MISS => {
            let imiss: u32;
            // SAFETY: reading IMISS (SPR 980) has no side effects.
            unsafe { core::arch::asm!("mfspr {0}, 980", out(reg) imiss, options(nomem, nostack, preserves_flags)) };
            imiss
        }
        vector::DTLB_LOAD_MISS | vector::DTLB_STORE_MISS => {
            let dmiss: u32;
            // SAFETY: reading DMISS (SPR 976) has no side effects.
            unsafe { core::arch::asm!("mfspr {0}, 976", out(reg) dmiss, options(nomem, nostack, preserves_flags)) };
            dmiss
        }
        _ => dar,
    };
    let fault = Fault { vector, srr0, srr1, dar, dsisr };
    // SAFETY: the board provides `__e300_fault` with this signature (the link fails otherwise).
    unsafe { __e300_fault(&fault) }
}

extern "C" {
    static __e300_vectors_start: u8;
    static __e300_vectors_end: u8;
}

/// Where the vectors live once MSR[IP] is clear.
const VECTORS_AT: usize = 0x100;

/// Copy the vector stubs to 0x100, make them visible to instruction fetch and select them by
/// clearing MSR[IP]. Call once, early, with EE off.
pub fn install() {
    // The linker defines both symbols around the stub section; only their addresses are used.
    let (start, end) =
        (core::ptr::addr_of!(__e300_vectors_start) as usize, core::ptr::addr_of!(__e300_vectors_end) as usize);
    let len = end - start;
    // SAFETY: 0x100..0x2000 is reserved for the vectors by every board's memory map (link.x
    // asserts the stubs fit); nothing else lives there, and the source is our own text.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, VECTORS_AT as *mut u8, len) };
    crate::cache::sync_icache(VECTORS_AT, len);
    // SAFETY: only IP changes; the vectors at 0x100 are now ours.
    unsafe { crate::msr::write(crate::msr::read() & !crate::msr::IP) };
}

core::arch::global_asm!(
    "    .section .text.e300_trap, \"ax\"",
    "    .global e300_trap",
    "    .type e300_trap, @function",
    "e300_trap:",
    "    tw      31, 0, 0",
    "1:  b       1b",
    "    .size e300_trap, . - e300_trap",
);

extern "C" {
    fn e300_trap() -> !;
}

/// Trap on purpose (`tw 31,0,0`, a program exception): the trap instruction is the first one of the
/// global function `e300_trap`, so tests can check the reported SRR0 against the symbol's address.
pub fn trap() -> ! {
    // SAFETY: the trap is taken by our own vector, which reports and halts; control never returns.
    unsafe { e300_trap() }
}
