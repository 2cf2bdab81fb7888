//! The board as QEMU's proxied PCI function, end to end: a stand-in for QEMU's `x-pci-proxy-dev` speaks
//! the proxy protocol over a socket pair to the real firmware on the board (enumeration held by the
//! configuration lock, BAR sizing and assignment, the shared region's header through BAR1, the doorbell
//! through BAR0, INTA# through a real INTx broker and a stand-in qtest socket, an agent hard reset that
//! the connection survives, and guest garbage that must not crash anything).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bpnet_contract::bar::{AgentRepr, Header, HEADER_LEN, MAGIC};
use bpnet_contract::notify;
use bpnet_emu::intx::{qtest_command, Broker, IntxClient};
use bpnet_emu::proxy::{self, AgentFunction, ResetButton, Source};
use bpnet_emu::{Board, Config};

/// Where the stand-in guest puts the BARs (what a BIOS might choose).
const BAR0_AT: u64 = 0xFEB0_0000;
const BAR1_AT: u64 = 0xFE00_0000;
/// IMMR offsets (docs/REGISTERS.md).
const ODR: u64 = 0x8060;
const IDR: u64 = 0x8068;
const OMISR: u64 = 0x8030;
const SPRIDR: u64 = 0x108;
const GSI: u32 = 20;

/// QEMU's side of the protocol.
struct FakeQemu {
    stream: UnixStream,
}

impl FakeQemu {
    fn call(&mut self, cmd: i32, body: &[u8]) -> u64 {
        let mut msg = proxy::header(cmd, body.len() as u64).to_vec();
        msg.extend_from_slice(body);
        self.stream.write_all(&msg).expect("send");
        let mut reply = [0u8; 24];
        self.stream.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply[..16], &proxy::header(proxy::CMD_RET, 8), "a RET with 8 bytes");
        u64::from_le_bytes(reply[16..].try_into().unwrap())
    }

    fn cfg_read(&mut self, offset: u32, len: i32) -> u32 {
        let body = [offset.to_le_bytes(), 0u32.to_le_bytes(), len.to_le_bytes()].concat();
        self.call(proxy::CMD_PCI_CFGREAD, &body) as u32
    }

    fn cfg_write(&mut self, offset: u32, len: i32, value: u32) {
        let body = [offset.to_le_bytes(), value.to_le_bytes(), len.to_le_bytes()].concat();
        assert_eq!(self.call(proxy::CMD_PCI_CFGWRITE, &body), 0);
    }

    fn bar_body(addr: u64, value: u64, size: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&value.to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&[1, 0, 0, 0]);
        b
    }

    fn read(&mut self, addr: u64, size: u32) -> u64 {
        self.call(proxy::CMD_BAR_READ, &Self::bar_body(addr, 0, size))
    }

    fn write(&mut self, addr: u64, size: u32, value: u64) {
        assert_eq!(self.call(proxy::CMD_BAR_WRITE, &Self::bar_body(addr, value, size)), 0);
    }

    /// SET_IRQFD: two descriptors and no body, no reply (the emulator closes them).
    fn set_irqfd(&mut self) {
        let (a, b) = UnixStream::pair().unwrap();
        bpnet_emu::ivshmem::send_message(&self.stream, i64::from(proxy::CMD_SET_IRQFD), Some(a.as_raw_fd())).unwrap();
        drop(b);
        self.stream.write_all(&0u64.to_le_bytes()).unwrap();
    }

    /// Size a BAR as QEMU does: all ones, read back, restore.
    fn size_bar(&mut self, offset: u32) -> u32 {
        let old = self.cfg_read(offset, 4);
        self.cfg_write(offset, 4, u32::MAX);
        let mask = self.cfg_read(offset, 4);
        self.cfg_write(offset, 4, old);
        mask
    }

    fn enumerate(&mut self) {
        self.cfg_write(0x10, 4, BAR0_AT as u32);
        self.cfg_write(0x14, 4, BAR1_AT as u32);
        self.cfg_write(0x3C, 1, 11);
        self.cfg_write(0x04, 2, 0x6); // memory, bus master
    }
}

/// A stand-in for QEMU's qtest socket: every command it got, answering `OK`.
fn fake_qtest(path: &Path) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(path).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            seen.lock().unwrap().push(line);
            if out.write_all(b"OK\n").is_err() {
                return;
            }
        }
    });
    log
}

fn last_level(log: &Arc<Mutex<Vec<String>>>) -> Option<bool> {
    log.lock().unwrap().last().map(|l| l == &qtest_command(GSI, true))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the guest saw, returned from its thread.
#[derive(Debug, Default)]
struct Seen {
    ids: u32,
    class: u32,
    bar0_mask: u32,
    bar1_mask: u32,
    pin: u32,
    header: Vec<u8>,
    spridr: u64,
    outside: u64,
    odr: u64,
    after_reset_bar1: u32,
    after_reset_locked_for: Duration,
    header_after_reset: Vec<u8>,
}

fn read_header(q: &mut FakeQemu) -> Vec<u8> {
    (0..HEADER_LEN as u64 / 8).flat_map(|i| q.read(BAR1_AT + 8 * i, 8).to_le_bytes()).collect()
}

fn guest(mut q: FakeQemu, qtest: Arc<Mutex<Vec<String>>>, reset: ResetButton) -> Seen {
    let mut seen = Seen::default();
    q.set_irqfd();
    // QEMU reads the IDs while it builds the machine: held until the firmware releases the lock.
    seen.ids = q.cfg_read(0x00, 4);
    seen.class = q.cfg_read(0x08, 4);
    seen.bar0_mask = q.size_bar(0x10);
    seen.bar1_mask = q.size_bar(0x14);
    seen.pin = q.cfg_read(0x3D, 1);
    q.enumerate();
    seen.spridr = q.read(BAR0_AT + SPRIDR, 4);
    seen.outside = q.read(BAR1_AT - 0x1000, 4);
    // The header is ready once the lock is released; the agent state may still move.
    seen.header = read_header(&mut q);

    // INTA#: the agent rings LINK once READY; the broker has QEMU's line high.
    wait_for("INTA# to rise", || last_level(&qtest) == Some(true));
    let status = q.read(BAR0_AT + OMISR, 4);
    assert_ne!(status & 0x8, 0, "ODI set in OMISR");
    seen.odr = q.read(BAR0_AT + ODR, 4);
    q.write(BAR0_AT + ODR, 4, seen.odr);
    // Lowered before the reply to the write that cleared the cause.
    assert_eq!(last_level(&qtest), Some(false), "INTA# low when the clearing write completed");
    // A doorbell through BAR0: the agent takes it (clears IDR).
    q.write(BAR0_AT + IDR, 4, u64::from(notify::WORK));
    wait_for("the agent to take the doorbell", || q.read(BAR0_AT + IDR, 4) == 0);

    // Garbage: all ones into the BARs and every header register, INTx disable toggled, random IMMR
    // offsets, I/O cycles, odd sizes. Nothing may crash; the BARs are restored after.
    let mut x: u32 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for reg in (0..0x100).step_by(4) {
        q.cfg_write(reg, 4, u32::MAX);
        let _ = q.cfg_read(reg, 4);
    }
    assert_ne!(q.cfg_read(0x00, 4), u32::MAX, "PBFR's lock is the agent's: the host did not set it");
    q.enumerate();
    for i in 0..200 {
        let offset = u64::from(next() % 0x10_0000) & !3;
        q.write(BAR0_AT + offset, 4, u64::from(next()));
        let _ = q.read(BAR0_AT + u64::from(next() % 0x10_0000), [1, 2, 4, 8][i % 4]);
        q.cfg_write(0x04, 2, if i % 2 == 0 { 0x406 } else { 0x6 });
    }
    let _ = q.call(proxy::CMD_BAR_READ, &[0u8; 24]); // I/O space, address 0
    let _ = q.call(proxy::CMD_BAR_WRITE, &FakeQemu::bar_body(BAR0_AT, 0, 3));
    q.enumerate();

    // HRESET: the configuration header as after power-on (lock set, BARs 0); the connection stays.
    reset.press();
    let pressed = Instant::now();
    // Held until the rebooted firmware releases the lock.
    seen.after_reset_bar1 = q.cfg_read(0x14, 4);
    seen.after_reset_locked_for = pressed.elapsed();
    eprintln!("held {:?} after the reset, until the firmware released the lock again", seen.after_reset_locked_for);
    q.enumerate();
    seen.header_after_reset = read_header(&mut q);
    seen
}

#[test]
fn a_guest_enumerates_reads_rings_and_survives_a_reset_through_the_proxy() {
    let elf = std::fs::read(common::firmware("BPNET_FIRMWARE_ELF")).expect("firmware ELF");
    let dir = tempfile::tempdir().unwrap();
    let (broker_path, qtest_path) = (dir.path().join("intx"), dir.path().join("qtest"));
    let qtest = fake_qtest(&qtest_path);
    let mut broker = Broker::new(&broker_path, &qtest_path).unwrap();
    std::thread::spawn(move || broker.run(None));

    let mut board = Board::new(Config::default()).expect("board");
    board.load_elf(&elf).expect("firmware loads");
    board.set_standalone_host(false);
    let (ours, theirs) = UnixStream::pair().unwrap();
    let intx = IntxClient::connect(&broker_path, GSI).unwrap();
    let function =
        AgentFunction::start(Source::Connected(ours), board.core_stopper(), None, Some(intx), "test").unwrap();
    let reset = function.reset_button();
    let stats = function.stats();
    board.attach_live_host(Box::new(function));
    // When the guest's thread ends its end of the socket closes: the board's run ends.
    let guest_thread = std::thread::spawn(move || guest(FakeQemu { stream: theirs }, qtest, reset));
    let outcome = board.run();
    let seen = guest_thread.join().expect("the guest's checks passed");
    assert_eq!(board.host_end(), Some("the host closed the connection"), "{outcome:?}");

    assert_eq!(seen.ids, 0x0080_1957);
    assert_eq!(seen.class, 0x0B20_0130);
    assert_eq!(seen.bar0_mask, 0xFFF0_0000, "BAR0: 1 MiB, not prefetchable");
    assert_eq!(seen.bar1_mask, 0xFFF0_0008, "BAR1: the 1 MiB shared region, prefetchable");
    assert_eq!(seen.pin, 1);
    assert_eq!(seen.spridr, u64::from(0x8030_0300u32.swap_bytes()), "a big-endian register over little-endian PCI");
    assert_eq!(seen.outside, 0xFFFF_FFFF, "master abort outside the BARs");
    let header = Header::new_checked(&seen.header[..]).expect("a whole header");
    assert_eq!(header.magic(), MAGIC);
    AgentRepr::parse(&header).expect("the agent's fields parse");
    assert_ne!(seen.odr & u64::from(notify::LINK), 0, "LINK rung at READY");
    assert_eq!(seen.after_reset_bar1 & !0xF, 0, "BAR1 (PIBAR0) zero after the hard reset");
    assert_eq!(board.host_resets(), 1);
    assert_eq!(Header::new_checked(&seen.header_after_reset[..]).unwrap().magic(), MAGIC);

    let f = board.function_stats();
    let p = stats.get();
    assert!(f.config_retries >= 2, "the first read and the one after the reset were held: {f:?}");
    assert_eq!(p.config_given_up, 0);
    assert!(f.refused > 0 && f.master_aborts > 0, "{f:?}");
    assert!(p.intx_changes >= 2 && p.bar0_accesses > 0 && p.bar1_accesses > 0, "{p:?}");
    assert_eq!(p.fds_closed, 1);
    eprintln!(
        "BAR0 mean {} ns to reply over {} accesses, BAR1 mean {} ns over {}",
        p.bar0_mean_ns(),
        p.bar0_accesses,
        p.bar1_mean_ns(),
        p.bar1_accesses
    );
}
