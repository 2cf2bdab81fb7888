//! A small stand-in for the part, following the command table in docs/REGISTERS.md.
extern crate std;
use super::command::{CMD_ERASE, CMD_PROGRAM, CMD_RESET, CMD_SECTOR_ERASE, DQ5_TIMEOUT, DQ6_TOGGLE, UNLOCK1, UNLOCK2};
use super::*;
use std::vec;
use std::vec::Vec;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Read,
    Cfi,
    Busy { reads_left: u32, fail: bool },
}

struct FakeFlash {
    words: Vec<u16>,
    mode: Mode,
    seq: Vec<(u32, u16)>,
    toggle: u16,
    busy_reads: u32,
    fail_next: bool,
}

impl FakeFlash {
    fn new() -> Self {
        // 1 MiB, 8 sectors of 128 KiB.
        FakeFlash {
            words: vec![0xFFFF; 512 * 1024],
            mode: Mode::Read,
            seq: Vec::new(),
            toggle: 0,
            busy_reads: 3,
            fail_next: false,
        }
    }
    fn cfi(&self, word: u32) -> u16 {
        match word {
            0x10 => u16::from(b'Q'),
            0x11 => u16::from(b'R'),
            0x12 => u16::from(b'Y'),
            0x13 => 0x02,
            0x14 => 0x00,
            0x27 => 20,
            0x2C => 1,
            0x2D => 7,
            0x2E => 0,
            0x2F => 0x00,
            0x30 => 0x02,
            _ => 0,
        }
    }
    fn start_busy(&mut self) {
        let fail = std::mem::take(&mut self.fail_next);
        self.mode = Mode::Busy { reads_left: self.busy_reads, fail };
    }
}

impl Bus for &mut FakeFlash {
    fn read(&mut self, word: u32) -> u16 {
        match self.mode {
            Mode::Read => self.words[word as usize],
            Mode::Cfi => self.cfi(word),
            Mode::Busy { reads_left, fail } => {
                self.toggle ^= DQ6_TOGGLE;
                if reads_left == 0 && !fail {
                    self.mode = Mode::Read;
                    return self.words[word as usize];
                }
                self.mode = Mode::Busy { reads_left: reads_left.saturating_sub(1), fail };
                self.toggle | if fail && reads_left == 0 { DQ5_TIMEOUT } else { 0 }
            }
        }
    }

    fn write(&mut self, word: u32, value: u16) {
        if value == CMD_RESET {
            self.mode = Mode::Read;
            self.seq.clear();
            return;
        }
        if word == 0x55 && value == CMD_CFI {
            self.mode = Mode::Cfi;
            return;
        }
        self.seq.push((word, value));
        let s = &self.seq[..];
        let unlock = |i: usize| s[i] == UNLOCK1 && s[i + 1] == UNLOCK2;
        if s.len() == 4 && unlock(0) && s[2] == (0x555, CMD_PROGRAM) {
            self.words[word as usize] &= value;
            self.seq.clear();
            self.start_busy();
        } else if s.len() == 6 && unlock(0) && s[2] == (0x555, CMD_ERASE) && unlock(3) && value == CMD_SECTOR_ERASE {
            let start = (word & !0xFFFF) as usize;
            self.words[start..start + 0x10000].fill(0xFFFF);
            self.seq.clear();
            self.start_busy();
        } else if s.len() > 6 {
            self.seq.clear();
        }
    }
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
    let mut part = FakeFlash::new();
    let flash = Flash::probe(&mut part).unwrap();
    assert_eq!(flash.geometry(), Geometry { size_bytes: 1 << 20, sector_bytes: 128 << 10, sectors: 8 });
    assert_eq!(part.mode, Mode::Read);
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
    let mut part = FakeFlash::new();
    let mut flash = Flash::probe(&mut part).unwrap();
    let mut clock = Ticks(0);
    flash.program(0x20000, &[0x12, 0x34, 0xFF, 0xFF, 0xAB, 0xCD], &mut clock).unwrap();
    assert_eq!(flash.read(0x10000), 0x1234);
    assert_eq!(flash.read(0x10002), 0xABCD);
    flash.erase_sector(0x20000, &mut clock).unwrap();
    assert_eq!(flash.read(0x10000), 0xFFFF);
}

#[test]
fn program_without_erase_fails_verify() {
    let mut part = FakeFlash::new();
    let mut flash = Flash::probe(&mut part).unwrap();
    let mut clock = Ticks(0);
    flash.program(0, &[0x00, 0x0F], &mut clock).unwrap();
    assert_eq!(
        flash.program(0, &[0xF0, 0xF0], &mut clock),
        Err(Error::Verify { word: 0, wrote: 0xF0F0, read: 0x0000 })
    );
}

#[test]
fn bad_addresses_and_failures_are_reported() {
    let mut part = FakeFlash::new();
    part.fail_next = false;
    let mut flash = Flash::probe(&mut part).unwrap();
    let mut clock = Ticks(0);
    assert_eq!(flash.erase_sector(0x1000, &mut clock), Err(Error::Address(0x1000)));
    assert_eq!(flash.erase_sector(1 << 20, &mut clock), Err(Error::Address(1 << 20)));
    assert_eq!(flash.program(1, &[0, 0], &mut clock), Err(Error::Address(1)));
    assert_eq!(flash.program((1 << 20) - 2, &[0, 0, 0, 0], &mut clock), Err(Error::Address((1 << 20) - 2)));
    let _ = flash.release();
    part.fail_next = true;
    let mut flash = Flash::probe(&mut part).unwrap();
    assert_eq!(flash.erase_sector(0, &mut clock), Err(Error::Timeout { word: 0 }));
}

#[test]
fn slow_part_times_out() {
    let mut part = FakeFlash::new();
    part.busy_reads = u32::MAX;
    let mut flash = Flash::probe(&mut part).unwrap();
    let mut clock = Ticks(0);
    assert_eq!(flash.program(0, &[0, 0], &mut clock), Err(Error::Timeout { word: 0 }));
}
