//! The driver against the fake part the project's tests share (`bpnet-test-support`'s `nor`), which
//! follows the command table in docs/REGISTERS.md.
extern crate std;
use super::*;
use bpnet_test_support::nor::FakeNor;

/// The shared fake part as this crate's bus.
struct Part<'a>(&'a mut FakeNor);

impl Bus for Part<'_> {
    fn read(&mut self, word: u32) -> u16 {
        self.0.read(word)
    }
    fn write(&mut self, word: u32, value: u16) {
        self.0.write(word, value)
    }
}

/// 1 MiB, 8 sectors of 128 KiB; three status reads per operation.
fn part() -> FakeNor {
    let mut part = FakeNor::new(20, 128 << 10);
    part.busy_reads = 3;
    part
}

struct Ticks(u64);
impl Clock for Ticks {
    fn now_us(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

#[test]
fn probe_reads_geometry() {
    let mut part = part();
    let flash = Flash::probe(Part(&mut part)).unwrap();
    assert_eq!(
        flash.geometry(),
        Geometry { size_bytes: 1 << 20, sector_bytes: 128 << 10, sectors: 8, write_buffer: None }
    );
    assert!(part.reads_array());
}

#[test]
fn probe_refuses_non_cfi() {
    struct Nothing;
    impl Bus for Nothing {
        fn read(&mut self, _: u32) -> u16 {
            0xFFFF
        }
        fn write(&mut self, _: u32, _: u16) {}
    }
    assert_eq!(Flash::probe(Nothing).err(), Some(Error::NotCfi));
}

#[test]
fn program_erase_round_trip() {
    let mut part = part();
    let mut flash = Flash::probe(Part(&mut part)).unwrap();
    let mut clock = Ticks(0);
    flash.program(0x20000, &[0x12, 0x34, 0xFF, 0xFF, 0xAB, 0xCD], &mut clock).unwrap();
    assert_eq!(flash.read(0x10000), 0x1234);
    assert_eq!(flash.read(0x10002), 0xABCD);
    flash.erase_sector(0x20000, &mut clock).unwrap();
    assert_eq!(flash.read(0x10000), 0xFFFF);
}

#[test]
fn program_without_erase_fails_verify() {
    let mut part = part();
    let mut flash = Flash::probe(Part(&mut part)).unwrap();
    let mut clock = Ticks(0);
    flash.program(0, &[0x00, 0x0F], &mut clock).unwrap();
    assert_eq!(
        flash.program(0, &[0xF0, 0xF0], &mut clock),
        Err(Error::Verify { word: 0, wrote: 0xF0F0, read: 0x0000 })
    );
}

#[test]
fn bad_addresses_and_failures_are_reported() {
    let mut part = part();
    part.fail_next = false;
    let mut flash = Flash::probe(Part(&mut part)).unwrap();
    let mut clock = Ticks(0);
    assert_eq!(flash.erase_sector(0x1000, &mut clock), Err(Error::Address(0x1000)));
    assert_eq!(flash.erase_sector(1 << 20, &mut clock), Err(Error::Address(1 << 20)));
    assert_eq!(flash.program(1, &[0, 0], &mut clock), Err(Error::Address(1)));
    assert_eq!(flash.program((1 << 20) - 2, &[0, 0, 0, 0], &mut clock), Err(Error::Address((1 << 20) - 2)));
    let _ = flash.release();
    part.fail_next = true;
    let mut flash = Flash::probe(Part(&mut part)).unwrap();
    assert_eq!(flash.erase_sector(0, &mut clock), Err(Error::Timeout { word: 0 }));
}

#[test]
fn slow_part_times_out() {
    let mut part = part();
    part.busy_reads = u32::MAX;
    let mut flash = Flash::probe(Part(&mut part)).unwrap();
    let mut clock = Ticks(0);
    assert_eq!(flash.program(0, &[0, 0], &mut clock), Err(Error::Timeout { word: 0 }));
}
