//! A benchmark image (`bpnet-firmware-ring-bench.elf`, `bpnet-netbench`'s ring-path run): the data
//! path's ring engine without the stack, frames from the host dropped and a fixed frame sent to the
//! host for every buffer it posts ([`bpnet_firmware::net::run_ring_bench`]).
#![no_std]
#![no_main]

#[no_mangle]
fn __e300_main() -> ! {
    let started = bpnet_firmware::start();
    bpnet_firmware::net::run_ring_bench(started.log.generation)
}
