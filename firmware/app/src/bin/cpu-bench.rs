//! A benchmark image (`bpnet-firmware-cpu-bench.elf`, `cargo xtask bench`'s emulator speed): a
//! CPU-bound workload (CRC-32 over the image) after the banner, then the firmware's data path, idle.
#![no_std]
#![no_main]

use bpnet_firmware::println;

#[no_mangle]
fn __e300_main() -> ! {
    let started = bpnet_firmware::start();
    cpu_bench();
    bpnet_firmware::net::run(started.board.clocks.timebase_hz, started.log.generation)
}

/// CRC-32 (bitwise, no table) over the first 16 KiB of the image, 64 times: about 40 million
/// instructions of plain integer work.
fn cpu_bench() {
    extern "C" {
        static __image_start: u8;
    }
    let start = core::ptr::addr_of!(__image_start);
    let mut crc = 0xFFFF_FFFFu32;
    for round in 0..64u32 {
        for i in 0..16 * 1024 {
            // SAFETY: the image is at least 16 KiB of loaded, readable text and data.
            let byte = unsafe { core::ptr::read_volatile(start.add(i)) };
            crc ^= u32::from(byte) ^ round;
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
    }
    println!("cpu-bench: crc {:#010x}", !crc);
    defmt::info!("cpu-bench done: crc {=u32:#010x}", !crc);
}
