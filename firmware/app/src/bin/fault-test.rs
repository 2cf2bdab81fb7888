//! A test image (`bpnet-firmware-fault-test.elf`): a program exception (trap) right after the banner,
//! for the tests of the fault report.
#![no_std]
#![no_main]

use bpnet_firmware::println;

#[no_mangle]
fn __e300_main() -> ! {
    bpnet_firmware::start();
    println!("fault-test: trapping on purpose");
    e300::exception::trap()
}
