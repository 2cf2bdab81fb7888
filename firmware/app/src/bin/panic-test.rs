//! A test image (`bpnet-firmware-panic-test.elf`): a panic right after the banner, for the tests of
//! the panic report.
#![no_std]
#![no_main]

#[no_mangle]
fn __e300_main() -> ! {
    bpnet_firmware::start();
    panic!("panic-test: panicking on purpose");
}
