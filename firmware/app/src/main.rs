//! The firmware (`bpnet-firmware.elf`, signed as `bpnet-firmware.img`): the board's start, then the
//! data path with its services and the control service, for good.
#![no_std]
#![no_main]

#[no_mangle]
fn __e300_main() -> ! {
    let started = bpnet_firmware::start();
    bpnet_firmware::net::run(started.board.clocks.timebase_hz, started.log.generation)
}
