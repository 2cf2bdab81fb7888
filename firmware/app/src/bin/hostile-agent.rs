//! A test image (`bpnet-firmware-hostile-agent.elf`, the backplane's hostile suite): a normal
//! bring-up, then one contract violation per connection
//! ([`bpnet_firmware::net::run_hostile_agent`]).
#![no_std]
#![no_main]

#[no_mangle]
fn __e300_main() -> ! {
    let started = bpnet_firmware::start();
    bpnet_firmware::net::run_hostile_agent(started.board.clocks.timebase_hz, started.log.generation)
}
