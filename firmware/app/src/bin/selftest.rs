//! The peripheral self-test image (`bpnet-firmware-selftest.elf`): DMA direct and chained copies of many
//! sizes and alignments, in RAM and across the outbound window, the transfer-error path, window
//! moves, the doorbell and message round trip with the host (interrupt driven), and NOR flash
//! erase/program/verify including what a power cut left behind. Prints one line per check and
//! `selftest: N passed, M failed`; writes benchmark markers to UART1's scratch register.
//!
//! Scratch memory: agent RAM from 16 MiB up (the firmware image and the shared region sit below),
//! host RAM through outbound window 0 (local 0x8000_0000 → PCI 0, 16 MiB).
#![no_std]
#![no_main]

use core::fmt;

use bpnet_contract::selftest as handshake;
use bpnet_firmware::{irq, println};
use mpc8349::dma::{self, link, Descriptor};
use mpc8349::msgunit::{inbound, outbound};
use mpc8349emds::{FlashBus, PCI_OUTBOUND_BASE};
use norflash::Flash;

const SRC: u32 = 0x0100_0000;
const DST: u32 = 0x0200_0000;
const DESCRIPTORS: u32 = 0x0300_0000;
const BIG_SRC: u32 = 0x0400_0000;
const BIG_DST: u32 = 0x0800_0000;
const WINDOW: u32 = PCI_OUTBOUND_BASE;
const WINDOW_BYTES: u64 = 16 << 20;
/// Local addresses with nothing behind them: beyond DDR, outside every LAW.
const NOWHERE: u32 = 0xC800_0000;
/// The flash sector the test may wear: the last one.
const FLASH_SCRATCH: u32 = (32 << 20) - (128 << 10);
const FLASH_PATTERN_WORDS: u32 = 256;

/// Chained benchmark sizes; markers 0x10+i/0x20+i (agent → host) and 0x30+i/0x40+i (host → agent).
const CHAIN_SIZES: [u32; 4] = [64, 1500, 9000, 65536];

struct Fail {
    what: &'static str,
    a: u64,
    b: u64,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x}, {:#x})", self.what, self.a, self.b)
    }
}

fn fail(what: &'static str, a: impl Into<u64>, b: impl Into<u64>) -> Fail {
    Fail { what, a: a.into(), b: b.into() }
}

type Check = Result<(), Fail>;

/// RAM the self-test owns.
fn ram(addr: u32, len: u32) -> &'static mut [u8] {
    assert!(addr >= SRC && u64::from(addr) + u64::from(len) <= 256 << 20, "self-test scratch outside RAM");
    // SAFETY: 16 MiB..256 MiB of DDR is not used by the image (memory.x places everything below
    // 9 MiB), mapped by the DDR BAT; the self-test runs single-threaded and never holds two
    // overlapping slices across a call.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len as usize) }
}

fn mark(id: u8) {
    mpc8349emds::immr().duart(1).write_scratch(id);
}

fn pattern(seed: u32, i: usize) -> u8 {
    (i as u32).wrapping_mul(31).wrapping_add(seed).to_le_bytes()[0] ^ (i >> 8) as u8
}

#[no_mangle]
fn __e300_main() -> ! {
    bpnet_firmware::start();
    run()
}

fn run() -> ! {
    let immr = mpc8349emds::immr();
    let windows = immr.pci_windows();
    let mut passed = 0u32;
    let mut failed = 0u32;
    let mut check = |name: &str, result: Check| match result {
        Ok(()) => {
            passed += 1;
            println!("selftest: {name} ... ok");
        }
        Err(e) => {
            failed += 1;
            println!("selftest: {name} ... FAILED: {e}");
            defmt::error!("selftest {=str} failed", name);
        }
    };
    println!("selftest: starting");
    check(
        "outbound window 0 -> host RAM",
        windows.set_outbound(0, WINDOW, 0, WINDOW_BYTES).map_err(|_| fail("set_outbound", 0u32, 0u32)),
    );
    check("dma direct, RAM to RAM, sizes and alignments", dma_direct_ram());
    check("dma chained submission cost", dma_submit());
    check("dma chained, agent -> host -> agent, 64/1500/9000/65536", dma_chained_host());
    check("dma largest count (2^26 - 1) and one more refused", dma_boundary());
    check("dma transfer error on a bad address, channel recovers", dma_error());
    check("outbound window moves", window_moves());
    check("inbound window, doorbell and message round trip with the host", doorbell_round_trip());
    check("flash erase, program, verify", flash());
    println!("selftest: {passed} passed, {failed} failed");
    defmt::info!("selftest: {=u32} passed, {=u32} failed", passed, failed);
    e300::idle()
}

fn dma_direct_ram() -> Check {
    let channel = mpc8349emds::immr().dma(0);
    for len in [0u32, 1, 3, 4096, 65536 + 3] {
        for (soff, doff) in [(0u32, 0u32), (1, 3), (3, 1)] {
            let src = ram(SRC + soff, len);
            for (i, b) in src.iter_mut().enumerate() {
                *b = pattern(len + soff, i);
            }
            ram(DST, len + doff + 8).fill(0xEE);
            channel.start_direct(SRC + soff, DST + doff, len, true).map_err(|_| fail("start", len, soff))?;
            channel.wait().map_err(|_| fail("transfer error", len, soff))?;
            let dst = ram(DST, len + doff + 8);
            if doff > 0 && dst[doff as usize - 1] != 0xEE {
                return Err(fail("wrote before the destination", len, doff));
            }
            if dst[(doff + len) as usize] != 0xEE {
                return Err(fail("wrote past the destination", len, doff));
            }
            let src = ram(SRC + soff, len);
            if let Some(i) = (0..len as usize).find(|&i| dst[doff as usize + i] != src[i]) {
                return Err(fail("data differs at", i as u32, len));
            }
        }
    }
    Ok(())
}

/// Link `count` descriptors at DESCRIPTORS moving `size` bytes each from `src` to `dst` (both
/// advancing); the last one ends the chain.
fn build_chain(src: u32, dst: u32, size: u32, count: u32) -> Check {
    for i in 0..count {
        let at = DESCRIPTORS + i * dma::DESCRIPTOR_LEN as u32;
        let next = if i + 1 == count { link::EOTD } else { (at + dma::DESCRIPTOR_LEN as u32) | link::SNEN };
        let mut d = Descriptor::new_checked(ram(at, dma::DESCRIPTOR_LEN as u32)).ok_or(fail("descriptor", at, 0u32))?;
        d.set(src + i * size, dst + i * size, size, next).map_err(|_| fail("descriptor count", size, 0u32))?;
    }
    // The controller snoops descriptor fetches (SNEN), so no cache maintenance is owed; order the
    // descriptor stores before the MR write that starts the fetch.
    e300::barrier::sync();
    Ok(())
}

fn dma_submit() -> Check {
    let channel = mpc8349emds::immr().dma(0);
    mark(0x01);
    build_chain(SRC, DST, 64, 1)?;
    channel.start_chain(DESCRIPTORS, true).map_err(|_| fail("start", 0u32, 0u32))?;
    mark(0x02);
    channel.wait().map_err(|_| fail("transfer error", 0u32, 0u32))
}

fn dma_chained_host() -> Check {
    let channel = mpc8349emds::immr().dma(0);
    let tb = e300::timebase::read;
    for (idx, &size) in CHAIN_SIZES.iter().enumerate() {
        let count = (256 * 1024 / size).max(4);
        let total = size * count;
        let src = ram(SRC, total);
        for (i, b) in src.iter_mut().enumerate() {
            *b = pattern(size, i);
        }
        ram(DST, total).fill(0);
        // Agent RAM -> host RAM.
        build_chain(SRC, WINDOW, size, count)?;
        let t0 = tb();
        mark(0x10 + idx as u8);
        channel.start_chain(DESCRIPTORS, true).map_err(|_| fail("start", size, 0u32))?;
        channel.wait().map_err(|_| fail("transfer error to host", size, 0u32))?;
        mark(0x20 + idx as u8);
        let t1 = tb();
        // Host RAM -> agent RAM.
        build_chain(WINDOW, DST, size, count)?;
        mark(0x30 + idx as u8);
        channel.start_chain(DESCRIPTORS, true).map_err(|_| fail("start", size, 1u32))?;
        channel.wait().map_err(|_| fail("transfer error from host", size, 0u32))?;
        mark(0x40 + idx as u8);
        let t2 = tb();
        let (src, dst) = (ram(SRC, total), ram(DST, total));
        if let Some(i) = (0..total as usize).find(|&i| src[i] != dst[i]) {
            return Err(fail("round trip differs at", i as u32, size));
        }
        let hz = u64::from(mpc8349emds::INPUT_CLOCK_HZ);
        let kbps = |ticks: u64| u64::from(total) * hz / ticks.max(1) / 1000;
        println!(
            "selftest:   {size:>5} B x {count:>4}: to host {} kB/s, from host {} kB/s (timebase)",
            kbps(t1 - t0),
            kbps(t2 - t1)
        );
    }
    Ok(())
}

fn dma_boundary() -> Check {
    let channel = mpc8349emds::immr().dma(1);
    let len = dma::MAX_BYTES;
    if channel.start_direct(BIG_SRC, BIG_DST, len + 1, true) != Err(dma::Error::TooLong(len + 1)) {
        return Err(fail("2^26 bytes accepted", len + 1, 0u32));
    }
    // Sample every 64 KiB and the last bytes: filling 64 MiB with the CPU would only test the CPU.
    let samples = (0..len).step_by(64 << 10).chain([len - 4]);
    for at in samples.clone() {
        ram(BIG_SRC + at, 4).copy_from_slice(&(at ^ 0x5A5A_5A5A).to_be_bytes());
        ram(BIG_DST + at, 4).copy_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
    }
    ram(BIG_DST + len, 1)[0] = 0x77;
    // One descriptor of the largest count, waited for by interrupt (end of chain, IPIC vector 71)
    // rather than by polling through 126 ms of transfer.
    let immr = mpc8349emds::immr();
    build_chain(BIG_SRC, BIG_DST, len, 1)?;
    irq::take_dma_events();
    immr.ipic().enable(mpc8349::ipic::vector::DMA);
    channel.start_chain(DESCRIPTORS, true).map_err(|_| fail("start", len, 0u32))?;
    let mut events = 0;
    while events & ((dma::status::EOCDI | dma::status::TE) << 16) == 0 {
        e300::wait_for_interrupt();
        events |= irq::take_dma_events();
    }
    immr.ipic().disable(mpc8349::ipic::vector::DMA);
    // Channel 1's status byte sits in bits 23:16 (DGSR order).
    if events & (dma::status::TE << 16) != 0 {
        return Err(fail("transfer error", len, events));
    }
    channel.wait().map_err(|_| fail("channel still in error", len, 0u32))?;
    for at in samples {
        let got = u32::from_be_bytes(ram(BIG_DST + at, 4).try_into().unwrap_or([0; 4]));
        if got != at ^ 0x5A5A_5A5A {
            return Err(fail("sample differs at", at, got));
        }
    }
    if ram(BIG_DST + len, 1)[0] != 0x77 {
        return Err(fail("wrote past 2^26 - 1 bytes", len, 0u32));
    }
    Ok(())
}

fn dma_error() -> Check {
    let channel = mpc8349emds::immr().dma(2);
    for bad in [NOWHERE, WINDOW + WINDOW_BYTES as u32] {
        channel.start_direct(SRC, bad, 256, true).map_err(|_| fail("start", bad, 0u32))?;
        if channel.wait() != Err(dma::Error::Transfer) {
            return Err(fail("no transfer error for", bad, 0u32));
        }
    }
    // A chain whose second descriptor points nowhere: the first one's data still arrives.
    ram(SRC, 128).fill(0x42);
    ram(DST, 128).fill(0);
    let first = DESCRIPTORS;
    let second = DESCRIPTORS + dma::DESCRIPTOR_LEN as u32;
    Descriptor::new_checked(ram(first, 32))
        .ok_or(fail("descriptor", 0u32, 0u32))?
        .set(SRC, DST, 64, second | link::SNEN)
        .map_err(|_| fail("set", 0u32, 0u32))?;
    Descriptor::new_checked(ram(second, 32))
        .ok_or(fail("descriptor", 0u32, 0u32))?
        .set(SRC, NOWHERE, 64, link::EOTD)
        .map_err(|_| fail("set", 0u32, 0u32))?;
    e300::barrier::sync();
    channel.start_chain(first, true).map_err(|_| fail("start chain", 0u32, 0u32))?;
    if channel.wait() != Err(dma::Error::Transfer) {
        return Err(fail("no transfer error in chain", 0u32, 0u32));
    }
    if ram(DST, 64).iter().any(|&b| b != 0x42) {
        return Err(fail("first descriptor's data missing", 0u32, 0u32));
    }
    // The channel works again.
    channel.start_direct(SRC, DST + 64, 64, true).map_err(|_| fail("restart", 0u32, 0u32))?;
    channel.wait().map_err(|_| fail("channel did not recover", 0u32, 0u32))?;
    if ram(DST + 64, 64).iter().any(|&b| b != 0x42) {
        return Err(fail("recovered transfer wrong", 0u32, 0u32));
    }
    Ok(())
}

fn window_read(offset: u32) -> u32 {
    // SAFETY: WINDOW..WINDOW+16 MiB is outbound window 0, mapped cache-inhibited and guarded by
    // the PCI BAT; the offsets used are below 16 MiB and word aligned.
    unsafe { core::ptr::read_volatile((WINDOW + offset) as *const u32) }
}

fn window_write(offset: u32, value: u32) {
    // SAFETY: as for `window_read`.
    unsafe { core::ptr::write_volatile((WINDOW + offset) as *mut u32, value) };
    e300::barrier::sync();
}

fn window_moves() -> Check {
    let windows = mpc8349emds::immr().pci_windows();
    let set = |pci: u32| {
        let r = windows.set_outbound(0, WINDOW, pci, 1 << 20);
        // Pairs with the next access through the window: it must use the new translation.
        e300::barrier::sync();
        r.map_err(|_| fail("set_outbound", pci, 0u32))
    };
    set(0x0010_0000)?;
    window_write(0, 0xA11C_E000);
    set(0x0020_0000)?;
    window_write(0, 0x0B0B_0B0B);
    windows.set_outbound(0, WINDOW, 0, WINDOW_BYTES).map_err(|_| fail("restore", 0u32, 0u32))?;
    e300::barrier::sync();
    let (a, b) = (window_read(0x0010_0000), window_read(0x0020_0000));
    if (a, b) != (0xA11C_E000, 0x0B0B_0B0B) {
        return Err(fail("window contents", a, b));
    }
    Ok(())
}

fn doorbell_round_trip() -> Check {
    let immr = mpc8349emds::immr();
    let mu = immr.message_unit();
    let ipic = immr.ipic();
    // Open inbound window 0 over the shared region: the host reads the challenge through it.
    extern "C" {
        static __bpnet_shared: u8;
    }
    let shared = core::ptr::addr_of!(__bpnet_shared) as u32;
    immr.pci_windows().set_inbound(0, shared, 1 << 20).map_err(|_| fail("set_inbound", shared, 0u32))?;
    e300::barrier::sync();
    // The host assigns BAR1 (PIBAR0) once the configuration lock is released.
    immr.pci_config().release_lock();
    mu.mask_inbound(inbound::IM0I | inbound::IM1I);
    mu.mask_outbound(0);
    ipic.enable(mpc8349::ipic::vector::MESSAGE_UNIT);
    irq::take_doorbells();
    println!("selftest:   waiting for the host's doorbell (OMR0 = READY)");
    mu.send_message(0, handshake::READY);
    let taken_before = irq::taken();
    let mut bells = 0;
    while bells & handshake::DOORBELL == 0 {
        e300::wait_for_interrupt();
        bells |= irq::take_doorbells();
    }
    let challenge = mu.inbound_message(0);
    mu.send_message(1, handshake::reply(challenge));
    if challenge != bpnet_contract::logring::MAGIC {
        return Err(fail("host did not read the log ring magic through the BAR", challenge, 0u32));
    }
    mu.ring_host(handshake::DOORBELL);
    ipic.disable(mpc8349::ipic::vector::MESSAGE_UNIT);
    if irq::taken() == taken_before {
        return Err(fail("doorbell seen without an interrupt", 0u32, 0u32));
    }
    if mu.outbound_status() & (outbound::OM1I | outbound::ODI) == 0 {
        return Err(fail("outbound status not raised", mu.outbound_status(), 0u32));
    }
    println!("selftest:   host challenge {challenge:#010x}, replied {:#010x}", handshake::reply(challenge));
    Ok(())
}

fn flash() -> Check {
    let mut flash = Flash::probe(FlashBus::take()).map_err(|_| fail("no CFI flash", 0u32, 0u32))?;
    let g = flash.geometry();
    if (g.size_bytes, g.sector_bytes) != (32 << 20, 128 << 10) {
        return Err(fail("geometry", g.size_bytes, g.sector_bytes));
    }
    let expected = |i: u32| (i.wrapping_mul(0x9E37) ^ 0x5A00) as u16;
    // Half the pattern at the start of the sector, half at its end: an erase cut short leaves one
    // end erased and the other not, so a torn erase is told apart from a finished one.
    let half = FLASH_PATTERN_WORDS / 2;
    let base = FLASH_SCRATCH / 2;
    let word_at = |i: u32| if i < half { base + i } else { base + g.sector_words() - FLASH_PATTERN_WORDS + i };
    let differing = (0..FLASH_PATTERN_WORDS).filter(|&i| flash.read(word_at(i)) != expected(i)).count();
    let erased = (0..FLASH_PATTERN_WORDS).all(|i| flash.read(word_at(i)) == 0xFFFF);
    let state = match (differing, erased) {
        (0, _) => "programmed",
        (_, true) => "erased",
        _ => "torn",
    };
    println!("selftest:   flash scratch sector found {state} ({differing} of {FLASH_PATTERN_WORDS} words differ)");
    let mut clock = mpc8349emds::Clock(e300::timebase::Timebase::new(mpc8349emds::INPUT_CLOCK_HZ));
    flash.erase_sector(FLASH_SCRATCH, &mut clock).map_err(|_| fail("erase", FLASH_SCRATCH, 0u32))?;
    if let Some(i) = (0..g.sector_words()).find(|&i| flash.read(base + i) != 0xFFFF) {
        return Err(fail("not erased at word", i, 0u32));
    }
    for chunk in [0, half] {
        let mut data = [0u8; FLASH_PATTERN_WORDS as usize];
        for (i, pair) in data.chunks_exact_mut(2).enumerate() {
            pair.copy_from_slice(&expected(chunk + i as u32).to_be_bytes());
        }
        let offset = 2 * word_at(chunk) - 2 * base + FLASH_SCRATCH;
        flash.program(offset, &data, &mut clock).map_err(|_| fail("program", offset, 0u32))?;
    }
    if let Some(i) = (0..FLASH_PATTERN_WORDS).find(|&i| flash.read(word_at(i)) != expected(i)) {
        return Err(fail("program verify at word", i, 0u32));
    }
    Ok(())
}
