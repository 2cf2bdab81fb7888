//! The service against a host made of another smoltcp interface (TCP clients, and UDP sockets
//! carrying `bpnet-tftp`'s server model) over an in-memory wire, with time driven by hand. The
//! board is fakes: NOR flash in memory under `bpnet-update`, a staging area on the heap, a system
//! that verifies with a test key and records resets and launches.

extern crate std;

use std::boxed::Box;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::format;
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use bpnet_contract::bar::{boot_flags, BootRepr, BootStage};
use bpnet_contract::control::Response;
use bpnet_image::{SigningKey, TrustedKey};
use bpnet_tftp::server::{self, Content, Server};
use bpnet_update::{BootState, Layout, Region, Storage, Update, MPC8349EMDS};
use smoltcp::iface::{Config as IfaceConfig, SocketStorage};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpCidr};

use super::*;
use bpnet_test_support::wire::WireEnd;

const AGENT: Ipv4Address = Ipv4Address::new(10, 83, 49, 2);
const HOST: Ipv4Address = Ipv4Address::new(10, 83, 49, 1);
/// Where the fake system lets a payload load (the board's FIRMWARE range).
const RAM: core::ops::Range<u64> = 0x10_0000..0x80_0000;
const VERSION: u32 = bpnet_image::image_version(1, 2, 3);
const STEP: Duration = Duration::from_millis(1);
const LAYOUT: Layout = MPC8349EMDS;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A signed image whose payload is `len` bytes of a pattern.
fn image(len: usize, key: &SigningKey) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    bpnet_image::sign(&payload, 0x10_0000, 0x10_0000, VERSION, key).unwrap()
}

// ---- the board's fakes ----

/// NOR flash in memory, a sector at a time (a sector never touched reads erased); counts erases and
/// programs.
#[derive(Default)]
struct Nor {
    sectors: BTreeMap<u32, Vec<u8>>,
    erases: u32,
    programs: u32,
    /// Programs in slot B and beyond fail (a worn-out part).
    broken_from: Option<u32>,
}

impl Nor {
    fn sector(&mut self, offset: u32) -> &mut Vec<u8> {
        let size = LAYOUT.sector_bytes;
        self.sectors.entry(offset / size).or_insert_with(|| vec![0xFF; size as usize])
    }

    fn bytes(&mut self, region: Region) -> Vec<u8> {
        let mut out = vec![0; region.len as usize];
        self.read(region.offset, &mut out).unwrap();
        out
    }
}

impl Storage for Nor {
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), norflash::Error> {
        let size = LAYOUT.sector_bytes;
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i as u32;
            *b = self.sectors.get(&(at / size)).map_or(0xFF, |s| s[(at % size) as usize]);
        }
        Ok(())
    }

    fn erase_sector(&mut self, offset: u32) -> Result<(), norflash::Error> {
        self.erases += 1;
        self.sector(offset).fill(0xFF);
        Ok(())
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), norflash::Error> {
        if self.broken_from.is_some_and(|from| offset >= from) {
            return Err(norflash::Error::Timeout { word: offset / 2 });
        }
        self.programs += 1;
        let size = LAYOUT.sector_bytes;
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i as u32;
            // Programming only clears bits, as on the part.
            self.sector(at)[(at % size) as usize] &= b;
        }
        Ok(())
    }
}

/// A flash job over [`Nor`]: [`Update`] a chunk per step, then the read back and the trial record.
struct Job {
    nor: Rc<RefCell<Nor>>,
    len: u32,
    version: u32,
    update: Option<Update>,
    written: u32,
    erased: u32,
    read_back: u32,
}

impl FlashJob for Job {
    fn target(&self) -> Option<Slot> {
        self.update.as_ref().map(Update::target)
    }

    fn progress(&self) -> JobProgress {
        JobProgress {
            erased: self.erased,
            sectors: self.len.div_ceil(LAYOUT.sector_bytes),
            programmed: self.written,
            total: self.len,
            read_back: self.read_back,
        }
    }

    fn due(&self) -> Option<Instant> {
        None
    }

    fn step(
        &mut self,
        image: &[u8],
        readback: &mut [u8],
        verify: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Option<Slot>, JobError> {
        let mut nor = self.nor.borrow_mut();
        let Some(update) = self.update.as_mut() else {
            self.update = Some(Update::begin(&mut *nor, &LAYOUT, self.len, self.version).map_err(JobError::Update)?);
            return Ok(None);
        };
        if self.written < self.len {
            let end = (self.written + bpnet_update::update::CHUNK as u32).min(self.len);
            update.write(&mut *nor, &image[self.written as usize..end as usize]).map_err(JobError::Update)?;
            self.written = end;
            self.erased = update.progress().sectors_erased;
            return Ok(None);
        }
        let len = self.len as usize;
        let mut matched = false;
        let update = self.update.take().ok_or(JobError::Readback)?;
        let slot = update
            .finish(&mut *nor, |nor: &mut Nor, region: Region| {
                let copy = &mut readback[..len];
                matched = nor.read(region.offset, copy).is_ok() && *copy == image[..len] && verify(copy);
                matched
            })
            .map_err(|e| if matched { JobError::Update(e) } else { JobError::Readback })?;
        self.read_back = self.len;
        Ok(Some(slot))
    }
}

struct FakeFlash(Rc<RefCell<Nor>>);

impl Flash for FakeFlash {
    type Job = Job;

    fn layout(&self) -> &Layout {
        &LAYOUT
    }

    fn start(&mut self, len: u32, version: u32) -> Job {
        Job { nor: self.0.clone(), len, version, update: None, written: 0, erased: 0, read_back: 0 }
    }

    fn boot_state(&mut self) -> Option<BootState> {
        bpnet_update::status(&mut *self.0.borrow_mut(), &LAYOUT).ok().flatten()
    }
}

struct Ram(Vec<u8>);

impl Staging for Ram {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// What the service asked of the system.
#[derive(Default)]
struct Doors {
    resets: u32,
    faults: u32,
    launched: Vec<Vec<u8>>,
}

struct FakeSystem {
    trusted: TrustedKey,
    boot: Option<BootRepr>,
    doors: Rc<RefCell<Doors>>,
}

impl System for FakeSystem {
    fn verify<'i>(&self, image: &'i [u8]) -> Result<bpnet_image::Verified<'i>, bpnet_image::Error> {
        bpnet_image::verify(image, &[self.trusted], RAM)
    }

    fn boot(&self) -> Option<BootRepr> {
        self.boot
    }

    fn version(&self) -> u32 {
        bpnet_image::image_version(0, 9, 0)
    }

    fn reset(&mut self) {
        self.doors.borrow_mut().resets += 1;
    }

    fn fault(&mut self) {
        self.doors.borrow_mut().faults += 1;
    }

    fn launch(&mut self, image: &[u8]) {
        self.doors.borrow_mut().launched.push(image.to_vec());
    }
}

/// The firmware as started from slot A, confirmed, up 42 s.
const BOOT: BootRepr = BootRepr {
    boot_source: 1,
    boot_slot: 0,
    boot_flags: boot_flags::CONFIRMED,
    stage: BootStage::Firmware,
    uptime_s: 42,
    image_version: 0x0001_0000,
    recovery_offset: 0,
    recovery_capacity: 0,
    recovery_error: 0,
    slot_versions: [0x0001_0000, 0],
    slot_states: [0; 2],
};

// ---- the world ----

/// A host-side TCP connection to the service: what it sends, what it got.
struct Conn {
    handle: SocketHandle,
    out: Vec<u8>,
    sent: usize,
    /// Close our side once everything is sent.
    close: bool,
    got: Vec<u8>,
}

type Service = Control<Ram, FakeFlash, FakeSystem>;

struct World {
    now: Instant,
    agent: Box<Interface>,
    agent_end: WireEnd,
    agent_sockets: SocketSet<'static>,
    control: Service,
    host: Box<Interface>,
    host_end: WireEnd,
    host_sockets: SocketSet<'static>,
    /// The TFTP server's UDP sockets: (port, socket).
    tftp_ports: Vec<(u16, SocketHandle)>,
    server: Server,
    conns: Vec<Conn>,
    next_port: u16,
    nor: Rc<RefCell<Nor>>,
    doors: Rc<RefCell<Doors>>,
}

fn interface(end: &mut WireEnd, mac: [u8; 6], addr: Ipv4Address, seed: u64, now: Instant) -> Box<Interface> {
    let mut config = IfaceConfig::new(EthernetAddress(mac).into());
    config.random_seed = seed;
    let mut iface = bpnet_test_support::wire::interface(config, end, now);
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).unwrap());
    iface
}

impl World {
    fn new() -> World {
        let now = Instant::from_secs(1000);
        let mut agent_end = WireEnd::default();
        let agent = interface(&mut agent_end, [2, 0x83, 0x49, 0, 0, 2], AGENT, 7, now);
        let mut agent_sockets = SocketSet::new(&mut Box::leak(Box::new([SocketStorage::EMPTY; SOCKETS]))[..]);
        let nor = Rc::new(RefCell::new(Nor::default()));
        let doors = Rc::new(RefCell::new(Doors::default()));
        let system = FakeSystem {
            trusted: TrustedKey::from_bytes(&key(1).verifying_key().to_bytes()).unwrap(),
            boot: Some(BOOT),
            doors: doors.clone(),
        };
        let control = Control::new(
            &mut agent_sockets,
            Box::leak(Box::default()),
            Ram(vec![0; STAGING_MIN]),
            FakeFlash(nor.clone()),
            system,
        );

        let mut host_end = WireEnd::default();
        let host = interface(&mut host_end, [6, 0x83, 0x49, 0, 0, 2], HOST, 11, now);
        let mut host_sockets = SocketSet::new(&mut Box::leak(Box::new([SocketStorage::EMPTY; 32]))[..]);
        let mut tftp_ports = Vec::new();
        for port in core::iter::once(bpnet_tftp::wire::SERVER_PORT).chain(Server::ports(8)) {
            let mut socket = udp::Socket::new(
                udp::PacketBuffer::new(Vec::leak(vec![udp::PacketMetadata::EMPTY; 64]), Vec::leak(vec![0; 1 << 16])),
                udp::PacketBuffer::new(Vec::leak(vec![udp::PacketMetadata::EMPTY; 64]), Vec::leak(vec![0; 1 << 17])),
            );
            socket.bind(port).unwrap();
            tftp_ports.push((port, host_sockets.add(socket)));
        }
        World {
            now,
            agent,
            agent_end,
            agent_sockets,
            control,
            host,
            host_end,
            host_sockets,
            tftp_ports,
            server: Server::new(IpAddress::Ipv4(HOST)),
            conns: Vec::new(),
            next_port: 50_000,
            nor,
            doors,
        }
    }

    /// Open a connection that sends `out` (and then closes our side if `close`); its index.
    fn connect(&mut self, out: &[u8], close: bool) -> usize {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(Vec::leak(vec![0; 1 << 16])),
            tcp::SocketBuffer::new(Vec::leak(vec![0; 1 << 16])),
        );
        let remote = IpEndpoint::new(IpAddress::Ipv4(AGENT), control::PORT);
        socket.connect(self.host.context(), remote, self.next_port).unwrap();
        self.next_port += 1;
        let handle = self.host_sockets.add(socket);
        self.conns.push(Conn { handle, out: out.to_vec(), sent: 0, close, got: Vec::new() });
        self.conns.len() - 1
    }

    fn serve_tftp(&mut self, out: Vec<server::Out>) {
        for o in out {
            let (_, handle) = self.tftp_ports.iter().find(|(p, _)| *p == o.from_port).expect("a bound port");
            self.host_sockets.get_mut::<udp::Socket>(*handle).send_slice(&o.packet, o.to).unwrap();
        }
    }

    /// One round: the connections send and receive, both sides poll, frames cross, time moves on.
    fn step(&mut self) {
        for c in &mut self.conns {
            let s = self.host_sockets.get_mut::<tcp::Socket>(c.handle);
            if c.sent < c.out.len() && s.can_send() {
                c.sent += s.send_slice(&c.out[c.sent..]).unwrap();
            }
            if c.close && c.sent == c.out.len() {
                s.close();
            }
            while s.can_recv() {
                s.recv(|b| {
                    c.got.extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
        }
        self.agent.poll(self.now, &mut self.agent_end, &mut self.agent_sockets);
        self.control.poll(&mut self.agent, &mut self.agent_sockets, self.now, 1500);
        self.agent.poll(self.now, &mut self.agent_end, &mut self.agent_sockets);
        self.host_end.rx.extend(self.agent_end.tx.drain(..));
        self.host.poll(self.now, &mut self.host_end, &mut self.host_sockets);
        for i in 0..self.tftp_ports.len() {
            let (port, handle) = self.tftp_ports[i];
            while let Ok((data, meta)) = self.host_sockets.get_mut::<udp::Socket>(handle).recv() {
                let data = data.to_vec();
                let out = self.server.receive(self.now, &data, meta.endpoint, port);
                self.serve_tftp(out);
            }
        }
        let out = self.server.tick(self.now);
        self.serve_tftp(out);
        self.host.poll(self.now, &mut self.host_end, &mut self.host_sockets);
        self.agent_end.rx.extend(self.host_end.tx.drain(..));
        self.now += STEP;
    }

    fn run(&mut self, time: Duration) {
        let end = self.now + time;
        while self.now < end {
            self.step();
        }
    }

    /// Step until the agent has closed connection `i` (its answer complete), then close it; its
    /// lines.
    fn answer(&mut self, i: usize, limit: Duration) -> Vec<String> {
        let end = self.now + limit;
        while !matches!(
            self.host_sockets.get::<tcp::Socket>(self.conns[i].handle).state(),
            tcp::State::CloseWait
                | tcp::State::LastAck
                | tcp::State::TimeWait
                | tcp::State::Closing
                | tcp::State::Closed
        ) {
            assert!(self.now < end, "no complete answer within {limit}: {:?}", lines(&self.conns[i].got));
            self.step();
        }
        // The last bytes may still sit in the socket. Then close our side too, as a client does
        // once it has its answer.
        self.step();
        self.host_sockets.get_mut::<tcp::Socket>(self.conns[i].handle).close();
        lines(&self.conns[i].got)
    }

    /// Send a request, then its answer.
    fn request(&mut self, line: &str) -> Vec<String> {
        let i = self.connect(line.as_bytes(), false);
        self.answer(i, Duration::from_secs(30))
    }

    /// Nothing erased or programmed so far.
    fn assert_flash_untouched(&self) {
        let nor = self.nor.borrow();
        assert_eq!((nor.erases, nor.programs), (0, 0), "the flash was written");
    }
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec()).unwrap().lines().map(ToString::to_string).collect()
}

/// The last line as an `ERROR`: its code and text.
fn error(lines: &[String]) -> (ErrorCode, String) {
    match Response::parse(lines.last().expect("an answer").as_bytes()) {
        Ok(Response::Error { code, text }) => (code, text.to_string()),
        other => panic!("not an ERROR: {other:?} in {lines:?}"),
    }
}

/// The last line as an `OK`: its fields.
fn ok(lines: &[String]) -> Vec<(String, String)> {
    match Response::parse(lines.last().expect("an answer").as_bytes()) {
        Ok(Response::Ok(fields)) => fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        other => panic!("not an OK: {other:?} in {lines:?}"),
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    &fields.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in {fields:?}")).1
}

/// The PROGRESS lines of one phase: (done, total).
fn progress(lines: &[String], phase: Phase) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(|l| match Response::parse(l.as_bytes()) {
            Ok(Response::Progress { phase: p, done, total }) if p == phase => Some((done, total)),
            _ => None,
        })
        .collect()
}

// ---- STATUS, RESET ----

#[test]
fn status_reports_the_running_image_and_the_slots() {
    let mut w = World::new();
    let lines = w.request("STATUS\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields = ok(&lines);
    assert_eq!(field(&fields, "source"), "flash");
    assert_eq!(field(&fields, "slot"), "A");
    assert_eq!((field(&fields, "trial"), field(&fields, "confirmed")), ("0", "1"));
    assert_eq!(field(&fields, "version"), "1.0.0");
    assert_eq!(field(&fields, "uptime"), "42");
    // Nothing was ever recorded in this flash: the slots are unknown.
    assert_eq!(field(&fields, "a"), "unknown");
    assert_eq!(field(&fields, "b"), "unknown");
}

#[test]
fn status_without_a_boot_block_reports_a_direct_start() {
    let mut w = World::new();
    w.control.system.boot = None;
    let fields = ok(&w.request("STATUS\n"));
    assert_eq!(field(&fields, "source"), "direct");
    assert_eq!(field(&fields, "version"), "0.9.0");
    assert_eq!(field(&fields, "uptime"), "1000");
}

#[test]
fn reset_answers_then_resets() {
    let mut w = World::new();
    let lines = w.request("RESET\n");
    assert_eq!(lines, ["OK"]);
    w.run(Duration::from_millis(10));
    assert_eq!(w.doors.borrow().resets, 1);
    // The service listens again (on the board the reset does not return).
    assert_eq!(field(&ok(&w.request("STATUS\n")), "source"), "flash");
}

#[test]
fn fault_answers_then_faults() {
    let mut w = World::new();
    assert_eq!(w.request("FAULT\n"), ["OK"]);
    w.run(Duration::from_millis(10));
    assert_eq!((w.doors.borrow().faults, w.doors.borrow().resets), (1, 0));
}

#[test]
fn bad_request_is_refused() {
    let mut w = World::new();
    assert_eq!(error(&w.request("FLASHY 3\n")).0, ErrorCode::BadRequest);
    assert_eq!(error(&w.request("NETBOOT 10.83.49 x\n")).0, ErrorCode::BadRequest);
}

// ---- FLASH ----

#[test]
fn flash_writes_a_good_image_with_progress() {
    let mut w = World::new();
    let img = image(200_000, &key(1));
    let len = img.len() as u64;
    let mut request = format!("FLASH {len}\n").into_bytes();
    request.extend_from_slice(&img);
    let i = w.connect(&request, false);
    let lines = w.answer(i, Duration::from_secs(60));
    let fields = ok(&lines);
    assert_eq!(field(&fields, "slot"), "A");
    assert_eq!(field(&fields, "version"), "1.2.3");
    assert_eq!(field(&fields, "bytes"), len.to_string());

    let receive = progress(&lines, Phase::Receive);
    assert_eq!(receive.first(), Some(&(0, len)));
    assert_eq!(receive.last(), Some(&(len, len)));
    assert!(receive.len() >= 3, "a line per 64 KiB: {receive:?}");
    assert!(receive.windows(2).all(|p| p[0].0 <= p[1].0));
    // Verified once in RAM, once read back.
    assert_eq!(progress(&lines, Phase::Verify), [(len, len), (len, len)]);
    let sectors = len.div_ceil(u64::from(LAYOUT.sector_bytes));
    assert_eq!(progress(&lines, Phase::Erase).last(), Some(&(sectors, sectors)));
    let program = progress(&lines, Phase::Program);
    assert!(program.len() >= 3, "{program:?}");
    assert_eq!(program.last(), Some(&(len, len)));
    assert_eq!(progress(&lines, Phase::Readback).last(), Some(&(len, len)));

    let slot = LAYOUT.slots[0];
    assert!(w.nor.borrow_mut().bytes(Region::new(slot.offset, len as u32)) == img, "slot A holds the image");
    // The next boot tries it.
    let status = ok(&w.request("STATUS\n"));
    assert_eq!(field(&status, "a"), "trial:1.2.3");
    assert_eq!(w.doors.borrow().resets, 0);
}

#[test]
fn flash_failure_is_reported() {
    let mut w = World::new();
    w.nor.borrow_mut().broken_from = Some(LAYOUT.slots[0].offset);
    let img = image(50_000, &key(1));
    let mut request = format!("FLASH {}\n", img.len()).into_bytes();
    request.extend_from_slice(&img);
    let i = w.connect(&request, false);
    let (code, text) = error(&w.answer(i, Duration::from_secs(30)));
    assert_eq!(code, ErrorCode::Flash);
    assert!(text.starts_with("update: "), "{text}");
    // Nothing is on trial.
    let status = ok(&w.request("STATUS\n"));
    assert!(!field(&status, "a").starts_with("trial"), "{status:?}");
}

/// Send a FLASH of `img` (announced as `len` bytes), closing after `send` bytes of the image if
/// given; the answer.
fn flash(w: &mut World, len: usize, img: &[u8], close: bool) -> Vec<String> {
    let mut request = format!("FLASH {len}\n").into_bytes();
    request.extend_from_slice(img);
    let i = w.connect(&request, close);
    w.answer(i, Duration::from_secs(30))
}

#[test]
fn flash_refuses_a_bad_signature_before_erasing() {
    let mut w = World::new();
    let mut img = image(50_000, &key(1));
    // A byte of the signature.
    img[0x50] ^= 1;
    let lines = flash(&mut w, img.len(), &img, false);
    let (code, text) = error(&lines);
    assert_eq!(code, ErrorCode::Refused);
    assert!(text.contains("signature"), "{text}");
    assert!(progress(&lines, Phase::Erase).is_empty());
    w.assert_flash_untouched();
}

#[test]
fn flash_refuses_a_foreign_key_before_erasing() {
    let mut w = World::new();
    let img = image(50_000, &key(2));
    assert_eq!(error(&flash(&mut w, img.len(), &img, false)).0, ErrorCode::Refused);
    w.assert_flash_untouched();
}

#[test]
fn flash_refuses_a_truncated_image() {
    let mut w = World::new();
    let img = image(100_000, &key(1));
    let (code, text) = error(&flash(&mut w, img.len(), &img[..70_000], true));
    assert_eq!(code, ErrorCode::Truncated);
    assert!(text.contains("70000 of"), "{text}");
    w.assert_flash_untouched();
}

#[test]
fn flash_refuses_an_oversized_image() {
    let mut w = World::new();
    let (code, _) = error(&flash(&mut w, (8 << 20) + 1, &[], false));
    assert_eq!(code, ErrorCode::TooLarge);
    w.assert_flash_untouched();
}

#[test]
fn flash_refuses_zero_length() {
    let mut w = World::new();
    assert_eq!(error(&flash(&mut w, 0, &[], false)).0, ErrorCode::BadRequest);
    w.assert_flash_untouched();
}

#[test]
fn flash_image_that_stops_coming_times_out() {
    let mut w = World::new();
    let img = image(100_000, &key(1));
    let start = w.now;
    let (code, _) = error(&flash(&mut w, img.len(), &img[..30_000], false));
    assert_eq!(code, ErrorCode::Timeout);
    assert!(w.now - start >= IDLE_TIMEOUT, "{}", w.now - start);
    w.assert_flash_untouched();
}

// ---- one request at a time, timeouts ----

#[test]
fn second_client_is_busy_while_a_request_is_served() {
    let mut w = World::new();
    let img = image(100_000, &key(1));
    // The first client announces an image and sends part of it.
    let mut request = format!("FLASH {}\n", img.len()).into_bytes();
    request.extend_from_slice(&img[..40_000]);
    let first = w.connect(&request, false);
    w.run(Duration::from_millis(200));
    let second = w.connect(b"STATUS\n", false);
    let (code, _) = error(&w.answer(second, Duration::from_secs(5)));
    assert_eq!(code, ErrorCode::Busy);
    // The first carries on and is served.
    w.conns[first].out.extend_from_slice(&img[40_000..]);
    let fields = ok(&w.answer(first, Duration::from_secs(60)));
    assert_eq!(field(&fields, "slot"), "A");
}

#[test]
fn next_request_right_after_an_answer_is_served() {
    let mut w = World::new();
    let first = w.connect(b"STATUS\n", false);
    // As soon as the answer is in, before the first connection has finished closing.
    while !w.conns[first].got.ends_with(b"\n") {
        w.step();
    }
    let second = w.connect(b"STATUS\n", false);
    ok(&w.answer(second, Duration::from_secs(5)));
}

#[test]
fn idle_connection_times_out() {
    let mut w = World::new();
    let i = w.connect(b"STAT", false);
    let start = w.now;
    let (code, text) = error(&w.answer(i, Duration::from_secs(30)));
    assert_eq!((code, text.as_str()), (ErrorCode::Timeout, "no request line"));
    assert!(w.now - start >= IDLE_TIMEOUT);
    // Served again afterwards.
    ok(&w.request("STATUS\n"));
}

// ---- NETBOOT ----

#[test]
fn netboot_fetches_verifies_and_launches() {
    let mut w = World::new();
    let img = image(300_000, &key(1));
    w.server.add_file(b"agent.img", Content::Bytes(img.clone()));
    let lines = w.request("NETBOOT 10.83.49.1 agent.img\n");
    let fields = ok(&lines);
    assert_eq!(field(&fields, "version"), "1.2.3");
    assert_eq!(field(&fields, "bytes"), img.len().to_string());
    let len = img.len() as u64;
    let fetch = progress(&lines, Phase::Fetch);
    assert!(fetch.len() >= 3, "{fetch:?}");
    assert_eq!(fetch.last(), Some(&(len, len)));
    assert_eq!(progress(&lines, Phase::Verify), [(len, len)]);
    w.run(Duration::from_millis(10));
    assert!(w.doors.borrow().launched == [img], "the image is started");
    assert_eq!(w.server.log.completed, 1);
    w.assert_flash_untouched();
}

#[test]
fn netboot_retries_after_a_failure_with_backoff() {
    let mut w = World::new();
    let img = image(20_000, &key(1));
    let i = w.connect(b"NETBOOT 10.83.49.1 agent.img\n", false);
    // The first attempt finds no file; it is there for the second, a second later.
    w.run(Duration::from_millis(500));
    assert_eq!(w.server.log.requests.len(), 1);
    w.server.add_file(b"agent.img", Content::Bytes(img.clone()));
    w.run(Duration::from_millis(400));
    assert_eq!(w.server.log.requests.len(), 1, "no retry before 1 s");
    let fields = ok(&w.answer(i, Duration::from_secs(10)));
    assert_eq!(field(&fields, "bytes"), img.len().to_string());
    assert_eq!(w.server.log.requests.len(), 2);
    w.run(Duration::from_millis(10));
    assert!(w.doors.borrow().launched == [img], "the image is started");
}

#[test]
fn netboot_gives_up_after_its_retries() {
    let mut w = World::new();
    let start = w.now;
    let (code, text) = error(&w.request("NETBOOT 10.83.49.1 missing.img\n"));
    assert_eq!(code, ErrorCode::Tftp);
    assert!(text.starts_with("TFTP error after 4 attempts"), "{text}");
    assert_eq!(w.server.log.requests.len(), 1 + NETBOOT_RETRIES as usize);
    // 1 s, 2 s and 4 s between the attempts.
    let waited = w.now - start;
    assert!(waited >= Duration::from_secs(7) && waited < Duration::from_secs(9), "{waited}");
    assert!(w.doors.borrow().launched.is_empty());
}

#[test]
fn netboot_refuses_an_image_that_does_not_verify() {
    let mut w = World::new();
    w.server.add_file(b"agent.img", Content::Bytes(image(20_000, &key(2))));
    let (code, text) = error(&w.request("NETBOOT 10.83.49.1 agent.img\n"));
    assert_eq!(code, ErrorCode::Refused);
    assert!(text.starts_with("image refused after 4 attempts"), "{text}");
    assert_eq!(w.server.log.completed, 4);
    w.run(Duration::from_millis(10));
    assert!(w.doors.borrow().launched.is_empty());
}

#[test]
fn netboot_refuses_a_truncated_transfer() {
    let mut w = World::new();
    w.server.add_file(b"agent.img", Content::Bytes(image(20_000, &key(1))));
    w.server.faults.truncate_to = Some(10_000);
    let (code, text) = error(&w.request("NETBOOT 10.83.49.1 agent.img\n"));
    assert_eq!(code, ErrorCode::Tftp);
    assert!(text.starts_with("truncated after 4 attempts"), "{text}");
    assert!(w.doors.borrow().launched.is_empty());
}
