//! Board-level tests of the PCI windows, message unit, IPIC, DMA controller and NOR flash with small
//! hand-assembled programs.

use super::asm::*;
use super::elfbuild::{PF_R, PF_X};
use super::{boot, idle, program, run, spec, word, D, DATA, IMMR};
use crate::flash::{ERASE_INSTRUCTIONS, PROGRAM_INSTRUCTIONS};
use crate::immr::RSR_HRS;
use crate::{Board, Config, Outcome};

const IMMR_BASE: u32 = 0xE000_0000;

/// Store `value` big-endian at IMMR + `offset` (through r4, so any offset works). Uses r3, r4.
fn store_be(a: &mut Asm, value: u32, offset: u32) {
    a.li32(3, value).li32(4, IMMR_BASE + offset).emit(stw(3, 0, 4));
}

/// Store `value` into a little-endian register with a byte-reversed store, as drivers do. Uses r3, r4.
fn store_le(a: &mut Asm, value: u32, offset: u32) {
    a.li32(3, value).li32(4, IMMR_BASE + offset).emit(stwbrx(3, 0, 4));
}

/// Outbound window `n`: local `local` onto PCI `pci`, `size` bytes.
fn outbound(a: &mut Asm, n: u32, local: u32, pci: u32, size: u32) {
    let at = 0x8400 + 0x18 * n;
    store_be(a, pci >> 12, at);
    store_be(a, local >> 12, at + 0x08);
    store_be(a, 0x8000_0000 | ((!(size - 1) >> 12) & 0xF_FFFF), at + 0x10);
}

/// A bench marker: UART1's scratch register. Uses r0.
fn marker(a: &mut Asm, value: i16) {
    a.emit(li(0, value)).emit(stb(0, 0x4607, IMMR));
}

/// An external interrupt (0x500) handler: `body`, then `rfi`.
fn external_handler(body: impl FnOnce(&mut Asm)) -> Vec<u8> {
    let mut h = Asm::new(0x500);
    body(&mut h);
    h.emit(RFI);
    h.bytes()
}

fn code(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// Poll DMA channel 0's SR (address in r13) until CB clears; the last SR value stays in r5.
fn poll_dma(a: &mut Asm, label: &'static str) {
    a.li32(13, IMMR_BASE + 0x8104);
    a.label(label).emit(lwbrx(5, 0, 13)).emit(andi_(6, 5, 4)).bne_to(label);
}

// ---- PCI windows ----

#[test]
fn cpu_accesses_reach_host_ram_through_an_outbound_window() {
    let mut a = program();
    outbound(&mut a, 0, 0x8000_0000, 0x0010_0000, 1 << 20);
    a.li32(5, 0x8000_0000).li32(6, 0xCAFE_F00D);
    a.emit(stw(6, 0x10, 5)).emit(lwz(7, 0x20, 5)).emit(stw(7, 0, D)).emit(lbz(8, 0x21, 5)).emit(stw(8, 4, D));
    a.li32(5, 0x8010_0000); // just past the window
    let pc = a.here();
    a.emit(stw(6, 0, 5));
    idle(&mut a);
    let mut board = boot(&spec(&a));
    board.write_host_ram(0x10_0020, &[1, 2, 3, 4]).unwrap();
    let outcome = board.run();
    match &outcome {
        Outcome::Unmapped { addr: 0x8010_0000, write: true, pc: p, what, .. } => {
            assert_eq!(*p, pc);
            assert!(what.contains("PCI master abort") && what.contains("no enabled outbound window"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    let mut b = [0u8; 4];
    board.read_host_ram(0x10_0010, &mut b).unwrap();
    assert_eq!(b, [0xCA, 0xFE, 0xF0, 0x0D], "bytes in address order");
    assert_eq!(word(&board, DATA), 0x0102_0304);
    assert_eq!(word(&board, DATA + 4), 2);
    assert_eq!(board.host_ram_size(), 64 << 20);
}

#[test]
fn access_beyond_host_ram_stops() {
    let mut a = program();
    // 128 MiB window onto PCI 0: its upper half is past the 64 MiB of host RAM.
    outbound(&mut a, 2, 0x8800_0000, 0, 128 << 20);
    a.li32(5, 0x8800_0000 + (64 << 20) - 4).emit(stw(5, 0, 5)); // the last word: fine
    a.li32(5, 0x8800_0000 + (64 << 20));
    let pc = a.here();
    a.emit(lwz(6, 0, 5));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmapped { addr: 0x8C00_0000, write: false, pc: p, what, .. }
            if *p == pc && what.contains("beyond host RAM")),
        "{outcome:?}"
    );
    let mut b = [0u8; 4];
    board.read_host_ram((64 << 20) - 4, &mut b).unwrap();
    assert_eq!(u32::from_be_bytes(b), 0x8BFF_FFFC);
    assert!(board.read_host_ram(64 << 20, &mut b).is_err());
}

#[test]
fn a_multiple_word_store_is_one_instruction() {
    let mut a = program();
    outbound(&mut a, 0, 0x8000_0000, 0, 1 << 20);
    a.li32(5, 0x8010_0000 - 8).li32(29, 0x1111_1111).li32(30, 0x2222_2222).li32(31, 0x3333_3333);
    a.emit(stmw(30, 0, 5)); // two words, inside the window
    let pc = a.here();
    a.emit(stmw(29, 0, 5)); // three words: the third is past the window's end
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmapped { addr: 0x8010_0000, write: true, pc: p, .. } if *p == pc),
        "{outcome:?}"
    );
    let mut b = [0u8; 8];
    board.read_host_ram((1 << 20) - 8, &mut b).unwrap();
    assert_eq!(b, [0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22]);
}

#[test]
fn markers_record_every_scratch_write_at_its_instruction() {
    let mut a = program(); // 3 instructions
    a.emit(li(3, 7)).emit(stb(3, 0x4607, IMMR)).emit(stb(3, 0x4607, IMMR));
    idle(&mut a);
    let (board, _) = run(&spec(&a));
    let m: Vec<_> = board.markers().iter().map(|m| (m.value, m.instructions, m.virtual_ps)).collect();
    assert_eq!(m, [(7, 4, 4 * 1875), (7, 5, 5 * 1875)]);
}

#[test]
fn pci_laws_follow_run_time_changes() {
    let mut a = program();
    store_be(&mut a, 0xA000_0000, 0x68); // PCILAWBAR1
    outbound(&mut a, 1, 0xA000_0000, 0x0020_0000, 1 << 20);
    store_be(&mut a, 0x8000_0013, 0x6C); // PCILAWAR1: 1 MiB
                                         // Used in the block that enabled it, and again after a branch.
    a.li32(5, 0xA000_0000).li32(6, 0x1122_3344).emit(stw(6, 4, 5));
    a.b_to("next").label("next").emit(stw(6, 8, 5));
    // LAW 0 switched off: its range reaches nothing any more.
    store_be(&mut a, 0, 0x64);
    a.b_to("after").label("after");
    a.li32(5, 0x8000_0000);
    let pc = a.here();
    a.emit(lwz(7, 0, 5));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(&outcome, Outcome::Unmapped { addr: 0x8000_0000, pc: p, .. } if *p == pc), "{outcome:?}");
    let mut b = [0u8; 8];
    board.read_host_ram(0x20_0004, &mut b).unwrap();
    assert_eq!(b, [0x11, 0x22, 0x33, 0x44, 0x11, 0x22, 0x33, 0x44]);
    assert_eq!(board.immr().pci_law_ranges(), vec![(0xA000_0000, 1 << 20)]);
}

/// Release the configuration lock as U-Boot's `mpc83xx_pcislave_unlock` does: select PBFR (0x44) in
/// CONFIG_ADDRESS, read its 16 bits from the little-endian data port, clear ACL, write them back.
/// Uses r3..r6.
fn release_config_lock(a: &mut Asm) {
    store_be(a, 0x8000_0044, 0x8300);
    a.li32(4, IMMR_BASE + 0x8304).emit(lhz(5, 0, 4)); // 0x2000: ACL (0x0020) seen byte-swapped
    a.emit(andi_(5, 5, 0xDFFF)).emit(sth(5, 0, 4));
}

#[test]
fn host_bar_accesses_reach_agent_ram_through_an_inbound_window() {
    let mut a = program();
    // Window 0: 1 MiB onto agent RAM 0x0040_0000, prefetchable, snooped. Its PCI address (PIBAR0) is
    // BAR1's: with no host attached the board enumerates once the lock is released.
    store_be(&mut a, 0x0040_0000 >> 12, 0x8568);
    store_be(&mut a, 0xA005_5013, 0x8578);
    release_config_lock(&mut a);
    idle(&mut a);
    let bar = bpnet_contract::EMULATED_BAR_ADDRESS;
    let mut board = boot(&spec(&a));
    assert!(board.config_locked(), "locked at hand-over");
    assert!(board.host_bar_write(bar + 0x100, &[1, 2, 3]).is_err(), "not open yet");
    assert!(matches!(board.run(), Outcome::Idle { .. }));
    assert!(!board.config_locked());
    assert_eq!(board.immr().pci.read(0x8570), Some(bar >> 12), "the stand-in host's BAR1 is PIBAR0");
    board.host_bar_write(bar + 0x100, &[9, 8, 7, 6]).unwrap();
    assert_eq!(word(&board, 0x0040_0100), 0x0908_0706);
    board.write_ram(0x0040_0200, &[0xAA, 0xBB]).unwrap();
    let mut b = [0u8; 2];
    board.host_bar_read(bar + 0x200, &mut b).unwrap();
    assert_eq!(b, [0xAA, 0xBB]);
    let e = board.host_bar_read(bar + 0x10_0000, &mut b).unwrap_err();
    assert!(e.to_string().contains("not inside an enabled inbound window"), "{e}");
    assert!(board.host_bar_write(bar + 0xF_FFFE, &[0; 4]).is_err());
    assert_eq!((board.host_bar_reads(), board.host_bar_writes()), (2, 3));
}

#[test]
fn a_firmware_write_of_pibar0_stops_the_run() {
    // PIBAR0 is BAR1 of the configuration header in agent mode: the host's, never the agent's.
    let mut a = program();
    store_be(&mut a, 0x9000_0000 >> 12, 0x8570);
    idle(&mut a);
    let (_, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmodelled { addr: 0xE000_8570, write: true, what, .. }
            if what.contains("BAR1") && what.contains("PITAR0/PIWAR0 only")),
        "{outcome:?}"
    );
}

#[test]
fn the_configuration_port_reads_the_own_header_little_endian() {
    let mut a = program();
    store_be(&mut a, 0x8000_0000, 0x8300); // vendor/device
    a.li32(4, IMMR_BASE + 0x8304).emit(lwbrx(20, 0, 4)).emit(lwz(21, 0, 4));
    store_be(&mut a, 0x8000_0044, 0x8300);
    a.li32(4, IMMR_BASE + 0x8304).emit(lhz(22, 0, 4));
    release_config_lock(&mut a);
    a.li32(4, IMMR_BASE + 0x8304).emit(lhz(23, 0, 4));
    // A cycle onto the bus (device 1): not modelled, stops the run.
    store_be(&mut a, 0x8000_0800, 0x8300);
    a.li32(4, IMMR_BASE + 0x8304).emit(lwz(24, 0, 4));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmodelled { addr: 0xE000_8304, what, .. } if what.contains("device 1")),
        "{outcome:?}"
    );
    let r = |n| board.gpr(n);
    assert_eq!((r(20), r(21)), (0x0080_1957, 0x5719_8000), "lwbrx sees the value, lwz the bytes swapped");
    assert_eq!((r(22), r(23)), (0x2000, 0), "ACL set at hand-over, released");
}

#[test]
fn executing_from_flash_stops_clearly() {
    let mut a = program();
    a.emit(lis(3, 0xFE00)).emit(mtctr(3)).emit(0x4E80_0420); // bctr
    let (_, outcome) = run(&spec(&a));
    assert!(
        matches!(&outcome, Outcome::Unmapped { addr: 0xFE00_0000, what, .. }
            if what.contains("executing from the flash")),
        "{outcome:?}"
    );
}

// ---- message unit and IPIC ----

#[test]
fn doorbell_from_the_host_raises_the_external_interrupt() {
    let mut a = program();
    store_be(&mut a, 0x0400_0000, 0x724); // SIMSR_L: message unit
    idle(&mut a);
    let h = external_handler(|h| {
        h.li32(20, IMMR_BASE + 0x8068).emit(lwbrx(21, 0, 20)).emit(stw(21, 0, D));
        h.emit(lwz(22, 0x704, IMMR)).emit(stw(22, 4, D));
        h.emit(lwz(22, 0x70C, IMMR)).emit(stw(22, 12, D));
        h.emit(stwbrx(21, 0, 20)); // acknowledge: 1s clear
        h.emit(lwz(23, 8, D)).emit(addi(23, 23, 1)).emit(stw(23, 8, D));
    });
    let mut board = boot(&spec(&a).segment(0x500, h, PF_R | PF_X));
    assert!(matches!(board.run(), Outcome::Idle { .. }));
    assert!(board.exceptions().is_empty());
    board.host_ring_doorbell(0x5);
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), 5);
    assert_eq!(word(&board, DATA + 4), 69, "SIVCR");
    assert_eq!(word(&board, DATA + 12), 0x0400_0000, "SIPNR_L");
    assert_eq!(word(&board, DATA + 8), 1, "taken once: the handler acknowledged it");
    assert_eq!(board.exceptions().len(), 1);
    assert_eq!(board.exceptions()[0].vector, 0x500);
    assert_eq!(board.host_bar_writes(), 1);
}

#[test]
fn little_endian_registers_read_swapped_without_byte_reversal() {
    let mut a = program();
    a.li32(5, IMMR_BASE + 0x8068)
        .emit(lwz(6, 0, 5)) // IDR with a plain big-endian load
        .emit(stw(6, 0, D))
        .emit(lwbrx(7, 0, 5))
        .emit(stw(7, 4, D));
    a.li32(5, IMMR_BASE + 0x8058).li32(6, 0x1122_3344).emit(stw(6, 0, 5)); // OMR0 without the swap
    idle(&mut a);
    let mut board = boot(&spec(&a));
    board.host_ring_doorbell(0x0000_0105);
    assert!(matches!(board.run(), Outcome::Idle { .. }));
    assert_eq!(word(&board, DATA), 0x0501_0000);
    assert_eq!(word(&board, DATA + 4), 0x105);
    assert_eq!(board.host_read_message(0).unwrap(), 0x4433_2211);
}

#[test]
fn outbound_messages_and_doorbells_assert_inta() {
    let mut a = program();
    store_le(&mut a, 0x1234_5678, 0x8058); // OMR0
    store_le(&mut a, 0x2, 0x8034); // OMIMR: OM1I masked
    store_le(&mut a, 0x9, 0x8060); // ODR: ring bits 0 and 3
    idle(&mut a);
    let (mut board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }));
    assert!(board.inta_asserted());
    assert_eq!(board.inta_assertions(), 1);
    assert_eq!(board.host_outbound_status(), 0x1 | 0x8);
    assert_eq!(board.host_read_message(0).unwrap(), 0x1234_5678);
    assert_eq!(board.host_read_odr(), 0x9);
    board.host_clear_outbound(0x1);
    assert!(board.inta_asserted(), "ODI still set");
    board.host_clear_odr(0x9);
    assert!(!board.inta_asserted());
    assert_eq!(board.host_outbound_status(), 0);
    assert!(board.host_read_message(2).is_err());
    assert!(board.host_write_message(2, 0).is_err());
    assert_eq!((board.host_bar_reads(), board.host_bar_writes()), (4, 2));
    assert_eq!(board.inta_assertions(), 1);
}

#[test]
fn uart_receive_interrupt_through_the_ipic() {
    let mut a = program();
    a.emit(li(3, 1)).emit(stb(3, 0x4501, IMMR)); // UIER: received data available
    store_be(&mut a, 0x0040_0000, 0x720); // SIMSR_H: UART0
    idle(&mut a);
    let h = external_handler(|h| {
        h.emit(lwz(20, 0x704, IMMR)).emit(stw(20, 0, D));
        h.emit(lwz(20, 0x708, IMMR)).emit(stw(20, 8, D));
        h.emit(lbz(21, 0x4500, IMMR)).emit(stw(21, 4, D));
    });
    let mut board = boot(&spec(&a).segment(0x500, h, PF_R | PF_X));
    assert!(matches!(board.run(), Outcome::Idle { .. }));
    board.uart_input(0, b"Z");
    assert!(matches!(board.run(), Outcome::Idle { .. }));
    assert_eq!(word(&board, DATA), 9, "SIVCR");
    assert_eq!(word(&board, DATA + 8), 0x0040_0000, "SIPNR_H");
    assert_eq!(word(&board, DATA + 4), u32::from(b'Z'));
    assert_eq!(board.exceptions().len(), 1);
}

// ---- DMA ----

#[test]
fn dma_to_host_keeps_the_channel_busy_for_the_modelled_time() {
    let mut a = program();
    outbound(&mut a, 0, 0x8000_0000, 0, 1 << 20);
    store_le(&mut a, 0x0030_0000, 0x8110); // SAR
    store_le(&mut a, 0x8000_1000, 0x8118); // DAR
    store_le(&mut a, 1024, 0x8120); // BCR
    a.li32(3, 0x5).li32(4, IMMR_BASE + 0x8100);
    marker(&mut a, 1);
    a.emit(stwbrx(3, 0, 4)); // MR = CTM | CS
    poll_dma(&mut a, "poll");
    marker(&mut a, 2);
    a.emit(stw(5, 0, D));
    idle(&mut a);
    let mut board = boot(&spec(&a));
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    board.write_ram(0x0030_0000, &data).unwrap();
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    let m = board.markers();
    // MR is written by the instruction after marker 1; 1024 bytes are four 256-byte write bursts.
    let start = m[0].instructions + 1;
    let end = start + 4 * 71 * 16;
    // The poll's last SR read is 4 instructions before marker 2's store.
    let last_read = m[1].instructions - 4;
    assert!(last_read >= end && last_read - 3 < end, "start {start} end {end} last read {last_read}");
    assert_eq!(word(&board, DATA), 0x1, "EOCDI");
    let mut host = vec![0u8; 1024];
    board.read_host_ram(0x1000, &mut host).unwrap();
    assert_eq!(host, data);
    let s = &board.dma_stats()[0];
    assert_eq!((s.bytes_to_host, s.busy_instructions, s.descriptors), (1024, 4 * 71 * 16, 1));
}

#[test]
fn dma_chain_completion_interrupts_the_idle_core_at_its_time() {
    let mut a = program();
    outbound(&mut a, 0, 0x8000_0000, 0, 1 << 20);
    store_be(&mut a, 0x0100_0000, 0x724); // SIMSR_L: DMA
    store_le(&mut a, 0x880, 0x8180); // channel 1 MR: EOTIE | PRC read multiple
    store_le(&mut a, 0x0040_0000, 0x8188); // CDAR: first descriptor
    a.li32(3, 0x881).li32(4, IMMR_BASE + 0x8180);
    marker(&mut a, 1);
    a.emit(stwbrx(3, 0, 4)); // MR |= CS
    idle(&mut a);
    let h = external_handler(|h| {
        h.li32(24, IMMR_BASE + 0x82A8).emit(lwbrx(20, 0, 24)).emit(stw(20, 0, D));
        h.li32(24, IMMR_BASE + 0x8184).emit(lwbrx(21, 0, 24)).emit(stw(21, 4, D)).emit(stwbrx(21, 0, 24)); // write-1-to-clear what was set
        h.li32(25, 0x880).li32(24, IMMR_BASE + 0x8180).emit(stwbrx(25, 0, 24)); // MR[CS] off
        h.emit(lwz(23, 8, D)).emit(addi(23, 23, 1)).emit(stw(23, 8, D));
    });
    let mut board = boot(&spec(&a).segment(0x500, h, PF_R | PF_X));
    // d0: 1500 bytes host 0x2000 → RAM 0x50_0000, linking d1 with EOSIE (d1's); d1: back to host 0x8000.
    let descriptor = |src: u32, dst: u32, next: u32, count: u32| {
        let mut d = [0u8; 32];
        for (off, v) in [(0, src), (8, dst), (0x10, next), (0x18, count)] {
            d[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        d
    };
    board.write_ram(0x0040_0000, &descriptor(0x8000_2000, 0x0050_0000, 0x0040_0020 | 0x8, 1500)).unwrap();
    board.write_ram(0x0040_0020, &descriptor(0x0050_0000, 0x8000_8000, 0x1, 1500)).unwrap();
    let payload: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    board.write_host_ram(0x2000, &payload).unwrap();
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    let start = board.markers()[0].instructions + 1;
    // Fetch (16) + 1500 bytes read (5 × 85 + 55 + 21 clocks), fetch + 1500 bytes written (5 × 71 + 55 + 7).
    let end = start + 16 + 501 * 16 + 16 + 417 * 16;
    let e = board.exceptions();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].vector, e[0].instructions), (0x500, end));
    assert_eq!(word(&board, DATA), 0x0003_0000, "DGSR: channel 1 EOSI|EOCDI");
    assert_eq!(word(&board, DATA + 4), 0x3);
    assert_eq!(word(&board, DATA + 8), 1);
    let mut back = vec![0u8; 1500];
    board.read_host_ram(0x8000, &mut back).unwrap();
    assert_eq!(back, payload);
    let s = &board.dma_stats()[1];
    assert_eq!((s.bytes_from_host, s.bytes_to_host, s.descriptors), (1500, 1500, 2));
    assert!(board.skipped_instructions() > 0, "the idle core waited in virtual time");
}

#[test]
fn dma_to_an_address_without_a_window_ends_in_a_transfer_error() {
    let mut a = program();
    store_le(&mut a, 0x0030_0000, 0x8110);
    store_le(&mut a, 0x8000_0000, 0x8118); // PCI LAW 0 covers it, no outbound window does
    store_le(&mut a, 64, 0x8120);
    store_le(&mut a, 0x5, 0x8100);
    poll_dma(&mut a, "poll");
    a.emit(stw(5, 0, D));
    idle(&mut a);
    let (board, outcome) = run(&spec(&a));
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), 0x80, "TE");
    let s = &board.dma_stats()[0];
    assert_eq!((s.errors, s.bytes_to_host), (1, 0));
    assert!(s.last_error.as_deref().unwrap().contains("no enabled outbound window"), "{s:?}");
}

#[test]
fn code_written_by_dma_replaces_translated_code() {
    const FUNC: u32 = 0x0030_0000;
    const NEW: u32 = 0x0031_0000;
    let mut a = program();
    a.li32(5, FUNC).emit(mtctr(5)).emit(BCTRL).emit(stw(3, 0, D));
    store_le(&mut a, NEW, 0x8110);
    store_le(&mut a, FUNC, 0x8118);
    store_le(&mut a, 8, 0x8120);
    store_le(&mut a, 0x5, 0x8100);
    poll_dma(&mut a, "poll");
    a.li32(5, FUNC).emit(mtctr(5)).emit(BCTRL).emit(stw(3, 4, D));
    idle(&mut a);
    let spec = spec(&a).segment(FUNC, code(&[li(3, 1), BLR]), PF_R | PF_X).segment(NEW, code(&[li(3, 2), BLR]), PF_R);
    let (board, outcome) = run(&spec);
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), 1);
    assert_eq!(word(&board, DATA + 4), 2, "the new code ran");
}

#[test]
fn idle_waits_for_dma_in_flight() {
    let mut a = program();
    store_le(&mut a, 0x0030_0000, 0x8110);
    store_le(&mut a, 0x0040_0000, 0x8118);
    store_le(&mut a, 1 << 20, 0x8120); // 1 MiB within RAM: 2^20 core cycles
    store_le(&mut a, 0x5, 0x8100);
    idle(&mut a);
    let mut board = boot(&spec(&a));
    board.write_ram(0x0030_0000, &[0x5A; 16]).unwrap();
    board.write_ram(0x003F_FFF0, &[0xA5; 16]).unwrap();
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert!(board.instructions() > 1 << 20);
    assert!(board.skipped_instructions() > 0);
    let mut b = [0u8; 16];
    board.read_ram(0x004F_FFF0, &mut b).unwrap();
    assert_eq!(b, [0xA5; 16]);
    assert_eq!(board.dma_stats()[0].busy_instructions, 1 << 20);
    assert_eq!(board.dma_stats()[0].bytes_local, 1 << 20);
}

// ---- NOR flash ----

/// The unlock cycles, then `command` at word 0x555, with the flash base in r14. Uses r3.
fn flash_command(a: &mut Asm, command: i16) {
    a.emit(li(3, 0xAA))
        .emit(sth(3, 0xAAA, 14))
        .emit(li(3, 0x55))
        .emit(sth(3, 0x554, 14))
        .emit(li(3, command))
        .emit(sth(3, 0xAAA, 14));
}

/// Poll the word at byte offset `at` from r13 until DQ6 stops toggling.
fn flash_wait(a: &mut Asm, at: i16, label: &'static str) {
    a.label(label).emit(lhz(5, at, 13)).emit(lhz(6, at, 13)).emit(xor(7, 5, 6)).emit(andi_(7, 7, 0x40)).bne_to(label);
}

#[test]
fn flash_cfi_query_program_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.bin");
    let mut a = program();
    a.li32(13, 0xFE00_0000).li32(14, 0xFE00_0000);
    a.emit(li(3, 0x98)).emit(sth(3, 0xAA, 13)); // CFI query at word 0x55
    a.emit(lhz(4, 0x20, 13)).emit(stw(4, 0, D)); // word 0x10: 'Q'
    a.emit(lhz(4, 0x4E, 13)).emit(stw(4, 4, D)); // word 0x27: size 2^N
    a.emit(li(3, 0xF0)).emit(sth(3, 0, 13));
    flash_command(&mut a, 0xA0);
    a.li32(3, 0x1234);
    marker(&mut a, 1);
    a.emit(sth(3, 0x200, 13));
    flash_wait(&mut a, 0x200, "wait");
    marker(&mut a, 2);
    a.emit(lhz(8, 0x200, 13)).emit(stw(8, 8, D)).emit(lwz(9, 0x200, 13)).emit(stw(9, 12, D));
    idle(&mut a);
    let mut board = Board::new(Config { flash_file: Some(path.clone()), ..Config::default() }).unwrap();
    board.load_elf(&spec(&a).build()).unwrap();
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(word(&board, DATA), u32::from(b'Q'));
    assert_eq!(word(&board, DATA + 4), 25);
    assert_eq!(word(&board, DATA + 8), 0x1234);
    assert_eq!(word(&board, DATA + 12), 0x1234_FFFF);
    let m = board.markers();
    let elapsed = m[1].instructions - m[0].instructions;
    assert!((PROGRAM_INSTRUCTIONS..PROGRAM_INSTRUCTIONS + 20).contains(&elapsed), "{elapsed}");
    assert_eq!(board.flash_operations(), 1);
    assert_eq!(board.flash_path(), path);
    drop(board);
    let board = Board::new(Config { flash_file: Some(path), ..Config::default() }).unwrap();
    let mut b = [0u8; 4];
    assert!(board.read_flash(0x200, &mut b));
    assert_eq!(b, [0x12, 0x34, 0xFF, 0xFF], "kept across emulator runs");
    assert!(!board.read_flash(32 << 20, &mut b));
}

#[test]
fn power_cut_in_the_middle_of_programming_a_word() {
    let mut a = program();
    a.li32(13, 0xFE00_0000).li32(14, 0xFE00_0000);
    a.emit(lhz(5, 0x200, 13)).emit(cmplwi(5, 0xFFFF)).bne_to("second");
    flash_command(&mut a, 0xA0);
    a.emit(li(3, 0));
    marker(&mut a, 1);
    a.emit(sth(3, 0x200, 13));
    flash_wait(&mut a, 0x200, "wait");
    a.emit(li(3, 0x77)).emit(stw(3, 0x10, D));
    idle(&mut a);
    a.label("second").emit(stw(5, 0, D)).emit(lwz(6, 0x910, IMMR)).emit(stw(6, 4, D));
    idle(&mut a);
    let mut board = Board::new(Config { power_cut_at: Some(1), ..Config::default() }).unwrap();
    board.load_elf(&spec(&a).build()).unwrap();
    board.write_ram(DATA + 0x40, &[0xEE; 4]).unwrap();
    let outcome = board.run();
    assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
    assert_eq!(board.power_cuts(), 1);
    assert_eq!(board.flash_operations(), 1);
    // 16 bits to clear; the lower eight were.
    assert_eq!(word(&board, DATA), 0xFF00);
    assert_eq!(word(&board, DATA + 4), RSR_HRS, "power-on reset");
    assert_eq!(word(&board, DATA + 0x10), 0, "the first boot never saw the end");
    assert_eq!(word(&board, DATA + 0x40), 0, "RAM did not survive");
    let mut b = [0u8; 2];
    assert!(board.read_flash(0x200, &mut b));
    assert_eq!(b, [0xFF, 0x00]);
    assert_eq!(board.markers().len(), 1);
    assert!(board.instructions() > board.markers()[0].instructions + PROGRAM_INSTRUCTIONS / 2);
}

#[test]
fn sector_erase_with_and_without_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = program();
    a.li32(13, 0xFE02_0000).li32(14, 0xFE00_0000); // sector 1
    a.emit(lhz(5, 0, 13)).emit(cmplwi(5, 0)).bne_to("second");
    flash_command(&mut a, 0x80);
    a.emit(li(3, 0xAA)).emit(sth(3, 0xAAA, 14)).emit(li(3, 0x55)).emit(sth(3, 0x554, 14)).emit(li(3, 0x30));
    marker(&mut a, 1);
    a.emit(sth(3, 0, 13));
    // Wait with interrupts off: the emulator skips to the next event instead of emulating 500 ms.
    a.emit(HALT);
    a.label("second").emit(stw(5, 0, D));
    idle(&mut a);
    for cut in [None, Some(1)] {
        let path = dir.path().join(format!("flash-{cut:?}.bin"));
        let mut image = vec![0xFFu8; 32 << 20];
        image[128 << 10..256 << 10].fill(0);
        std::fs::write(&path, &image).unwrap();
        let mut board = Board::new(Config { flash_file: Some(path), power_cut_at: cut, ..Config::default() }).unwrap();
        board.load_elf(&spec(&a).build()).unwrap();
        let outcome = board.run();
        let start = board.markers()[0].instructions + 1;
        let mut sector = vec![0u8; 128 << 10];
        assert!(board.read_flash(128 << 10, &mut sector));
        if cut.is_none() {
            assert!(matches!(outcome, Outcome::Halted { .. }), "{outcome:?}");
            assert_eq!(board.instructions(), start + ERASE_INSTRUCTIONS);
            assert!(sector.iter().all(|&b| b == 0xFF));
        } else {
            assert!(matches!(outcome, Outcome::Idle { .. }), "{outcome:?}");
            assert_eq!(board.power_cuts(), 1);
            assert_eq!(word(&board, DATA), 0xFFFF, "the second boot found the sector started");
            assert!(sector[..64 << 10].iter().all(|&b| b == 0xFF));
            assert!(sector[64 << 10..].iter().all(|&b| b == 0));
            assert!(board.instructions() < start + ERASE_INSTRUCTIONS);
        }
    }
}
