//! The machine state U-Boot's MPC8349EMDS_SLAVE configuration leaves at `go <addr>` (docs/REGISTERS.md,
//! "Entry state at go"), which the board emulator hands every program over with. Each value names the
//! U-Boot file it comes from, with the paths of the 2008-2010 trees that carry the MPC8349EMDS_SLAVE
//! configuration (cpu/mpc83xx/, lib_ppc/; later moved to arch/powerpc/cpu/mpc83xx/ and arch/powerpc/lib/):
//! `go` is a plain call (common/cmd_boot.c, do_go_exec), so everything U-Boot set up is still in force.

use crate::ppc::{hid0, msr, Bat, BAT_PAIRS};

/// BATU: BL = 256 MiB, Vs, Vp (include/configs/MPC8349EMDS.h: `BATU_BL_256M | BATU_VS | BATU_VP`).
const U_256M: u32 = 0x1FFF;
/// BATL: PP = read/write (`BATL_PP_10`).
const PP_RW: u32 = 0x2;
const M: u32 = 0x10;
const I: u32 = 0x20;
const G: u32 = 0x08;

/// IBATn = DBATn (MPC8349EMDS.h defines `CONFIG_SYS_DBATnx` as `CONFIG_SYS_IBATnx`), loaded by start.S
/// `setup_bats` including pairs 4-7 (`CONFIG_HIGH_BATS`). The slave configuration defines CONFIG_PCI
/// (`CONFIG_PCISLAVE`), so pairs 1 and 2 map PCI1; PCI2 is not configured, so pairs 3 and 4 are zero.
pub const BATS: [Bat; BAT_PAIRS] = [
    // DDR at 0, 256 MiB, coherent.
    Bat { upper: U_256M, lower: PP_RW | M },
    // PCI1 memory 0x8000_0000, 256 MiB, coherent.
    Bat { upper: 0x8000_0000 | U_256M, lower: 0x8000_0000 | PP_RW | M },
    // PCI1 MMIO 0x9000_0000, 256 MiB, cache-inhibited and guarded.
    Bat { upper: 0x9000_0000 | U_256M, lower: 0x9000_0000 | PP_RW | I | G },
    Bat { upper: 0, lower: 0 },
    Bat { upper: 0, lower: 0 },
    // IMMR 0xE000_0000 (with PCI I/O and BCSR), 256 MiB, cache-inhibited and guarded.
    Bat { upper: 0xE000_0000 | U_256M, lower: 0xE000_0000 | PP_RW | I | G },
    // 0xF000_0000 (local-bus SDRAM, init RAM, flash), 256 MiB, coherent and guarded: the flash is
    // cacheable through it.
    Bat { upper: 0xF000_0000 | U_256M, lower: 0xF000_0000 | PP_RW | M | G },
    Bat { upper: 0, lower: 0 },
];

/// HID0: `CONFIG_SYS_HID0_FINAL` = EMCP | ICE (MPC8349EMDS.h, written by start.S `init_e300_core`), then
/// start.S `dcache_enable` (DCE) and `lock_ram_in_cache` (DLOCK, for the init-RAM stack). Only `bootm`
/// unlocks it (lib_ppc/bootm.c calls `unlock_ram_in_cache`); `go` does not.
pub const HID0: u32 = hid0::EMCP | hid0::ICE | hid0::DCE | hid0::DLOCK;

/// MSR: ME | RI (start.S `init_e300_core`, "Set ME and RI flags"), IR | DR (start.S
/// `enable_addr_trans`), IP cleared once the vectors are at 0x100 (start.S `trap_init`), EE set by
/// lib_ppc/interrupts.c `interrupt_init`.
pub const MSR: u32 = msr::EE | msr::ME | msr::IR | msr::DR | msr::RI;

/// DEC: lib_ppc/interrupts.c `interrupt_init` arms it with `decrementer_count` = tbclk / CONFIG_SYS_HZ
/// (cpu/mpc83xx/interrupts.c; 1000 Hz, so 66 666 ticks) and its handler re-arms it every millisecond, so
/// at `go` it holds anything below that. The emulator takes an early phase: 16 ticks (128 core cycles)
/// before it fires, so a program that does not mask MSR[EE] first thing takes U-Boot's decrementer.
pub const DEC: u32 = 16;

/// U-Boot's exception vectors occupy 0x100..0x3000 (start.S `trap_init` copies them there; `_end_of_vectors`
/// is at 0x3000). What they would do with the firmware's state is undefined, so the emulator fills the area
/// with this word (primary opcode 0: no PowerPC instruction) and stops loudly when the core executes one:
/// the firmware took an exception before its own vectors were in place.
pub const LEFTOVER_VECTOR_WORD: u32 = 0x00B0_0700;
/// Where U-Boot's vectors lie.
pub const VECTORS: std::ops::Range<u32> = 0x100..0x3000;
