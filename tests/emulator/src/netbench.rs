//! The host's TCP/IP over the host model, and the data-path benchmarks built on it.
//!
//! [`HostStack`] is smoltcp on the host's side of a [`HostLink`]: what Linux's stack is on the virtual
//! backplane, in-process and deterministic. [`drive`] runs the board and the host in turns, the host
//! acting every time the firmware is about to wait ([`Board::set_stop_at_wait`]), so the host is never
//! the bottleneck and the figures are the agent's and the bus's: instructions are exact counts, time is
//! the emulator's virtual time under the bus model (shared/bus-model.md).

use bpnet_contract::{bar, shared};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address};

use crate::bus::Direction;
use bpnet_test_support::wire::WireEnd;

use crate::host::{self, Backplane, HostLink, Params, RunError};
use crate::{Board, HostAccessError, Outcome, PS_PER_INSTRUCTION};

/// The host's MAC on the link.
pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The host's address: the agent's static address is 10.83.49.2.
pub const HOST_IP: Ipv4Address = Ipv4Address::new(10, 83, 49, 1);
pub const AGENT_IP: Ipv4Address = Ipv4Address::new(10, 83, 49, 2);
/// The agent's echo service (RFC 862).
pub const ECHO_PORT: u16 = 7;

/// The board's virtual time as the host's clock: both sides agree on how long things took.
pub fn virtual_now(board: &Board) -> Instant {
    Instant::from_micros((board.virtual_time_ns() / 1000) as i64)
}

/// smoltcp at [`HOST_IP`] on the host's side of a link.
pub struct HostStack {
    pub iface: Interface,
    /// Frames to the agent go out of `tx`, frames from it come in through `rx`.
    pub dev: WireEnd,
    pub sockets: SocketSet<'static>,
    /// Frames handed to the agent, and taken from it.
    pub frames_out: u64,
    pub frames_in: u64,
}

impl HostStack {
    /// A stack for a link with checksum offload (what [`Params::default`] asks for): see
    /// [`HostStack::with_checksums`] for one without.
    pub fn new(board: &Board, mtu: u16) -> HostStack {
        Self::with_checksums(board, mtu, true)
    }

    /// A stack that computes and verifies TCP/UDP checksums unless `csum_offload` (the link's
    /// negotiated [`bpnet_contract::bar::feature::CSUM_OFFLOAD`]).
    pub fn with_checksums(board: &Board, mtu: u16, csum_offload: bool) -> HostStack {
        let mut dev = WireEnd::new(usize::from(mtu), csum_offload);
        let mut config = IfaceConfig::new(EthernetAddress(HOST_MAC).into());
        config.random_seed = 0x0bad_5eed;
        let mut iface = Interface::new(config, &mut dev, virtual_now(board));
        iface.update_ip_addrs(|a| {
            // One address into an empty list.
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(HOST_IP), 24));
        });
        // Leaked: a stack lives as long as the test or benchmark that made it.
        let storage = Box::leak(Box::new([SocketStorage::EMPTY; 4]));
        HostStack { iface, dev, sockets: SocketSet::new(&mut storage[..]), frames_out: 0, frames_in: 0 }
    }

    /// A TCP connection to the agent's `port`, SYN queued, with `buffer` bytes of window each way.
    pub fn connect(&mut self, port: u16, local_port: u16, buffer: usize) -> SocketHandle {
        let buf = || tcp::SocketBuffer::new(vec![0u8; buffer]);
        let handle = self.sockets.add(tcp::Socket::new(buf(), buf()));
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        // Linux acknowledges every second full segment at once (and sooner in quick-ack mode); smoltcp's
        // 10 ms delayed ACK would make the host model, not the agent, hold the window shut.
        socket.set_ack_delay(None);
        // A fresh socket in CLOSED with a non-zero local port connects.
        let _ = socket.connect(self.iface.context(), (AGENT_IP, port), local_port);
        handle
    }

    pub fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut(handle)
    }

    /// Let smoltcp act and hand what it built to the agent, as far as the TX ring takes it. True if
    /// anything was handed over.
    pub fn host_turn(&mut self, bp: &mut impl Backplane, board_now: Instant, link: &mut HostLink) -> bool {
        // smoltcp sends one segment per socket per poll; a host stack sends what its window allows
        // (Linux does in one softirq), so poll until nothing more comes out, as far as the ring takes.
        let room = link.tx_room() as usize;
        loop {
            let queued = self.dev.tx.len();
            self.iface.poll(board_now, &mut self.dev, &mut self.sockets);
            if self.dev.tx.len() == queued || self.dev.tx.len() >= room {
                break;
            }
        }
        let mut sent = false;
        while let Some(frame) = self.dev.tx.front() {
            match link.send(bp, frame) {
                Ok(true) => {}
                Ok(false) => break,
                // smoltcp builds what the MTU allows; anything else is a bug here, not the agent's.
                Err(e) => panic!("host frame refused by the host model: {e}"),
            }
            self.dev.tx.pop_front();
            self.frames_out += 1;
            sent = true;
        }
        sent
    }

    /// Frames the link received, to smoltcp. True if there were any.
    pub fn take_received(&mut self, link: &mut HostLink) -> bool {
        let before = self.frames_in;
        while let Some(frame) = link.recv() {
            self.dev.rx.push_back(frame);
            self.frames_in += 1;
        }
        self.frames_in != before
    }
}

/// A board with its BAR accesses classified: the host model runs against this, so the figures say what
/// crossed the bus, independently of what the host model believes it did.
pub struct Metered<'a> {
    pub board: &'a mut Board,
    /// Bytes the host CPU moved across the bus that were not control words (header fields, doorbell
    /// indexes, descriptors): payload copies, which the design forbids.
    pub copied_bytes: u64,
}

impl Metered<'_> {
    fn is_control(offset: usize, len: usize) -> bool {
        let end = offset + len;
        let header = shared::HEADER_OFFSET..shared::DOORBELLS_OFFSET + bar::DOORBELLS_LEN;
        let rings = shared::TX_RING_OFFSET..shared::RX_RING_OFFSET + (shared::RX_RING_OFFSET - shared::TX_RING_OFFSET);
        (header.contains(&offset) && end <= header.end) || (rings.contains(&offset) && end <= rings.end)
    }
}

impl Backplane for Metered<'_> {
    fn bar_read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), HostAccessError> {
        self.copied_bytes += buf.len() as u64;
        Backplane::bar_read(self.board, offset, buf)
    }
    fn bar_write(&mut self, offset: usize, data: &[u8]) -> Result<(), HostAccessError> {
        if !Self::is_control(offset, data.len()) {
            self.copied_bytes += data.len() as u64;
        }
        Backplane::bar_write(self.board, offset, data)
    }
    fn ring_doorbell(&mut self, bits: u32) {
        Backplane::ring_doorbell(self.board, bits);
    }
    fn interrupt_asserted(&self) -> bool {
        Backplane::interrupt_asserted(&*self.board)
    }
    fn read_odr(&mut self) -> u32 {
        Backplane::read_odr(self.board)
    }
    fn clear_odr(&mut self, bits: u32) {
        Backplane::clear_odr(self.board, bits);
    }
    fn read_ram(&self, addr: u64, buf: &mut [u8]) -> Result<(), HostAccessError> {
        Backplane::read_ram(&*self.board, addr, buf)
    }
    fn write_ram(&mut self, addr: u64, data: &[u8]) -> Result<(), HostAccessError> {
        Backplane::write_ram(self.board, addr, data)
    }
    fn bar_reads(&self) -> u64 {
        Backplane::bar_reads(&*self.board)
    }
    fn bar_writes(&self) -> u64 {
        Backplane::bar_writes(&*self.board)
    }
}

/// Boot the firmware, bring the link up with `params`, and wait until the agent is RUNNING and has an
/// address ([`wait_for_address`]).
pub fn boot(elf: &[u8], params: Params) -> Result<(Board, HostLink), String> {
    let (mut board, mut link) = boot_link(elf, params)?;
    wait_for_address(&mut board, &mut link, 0)?;
    Ok((board, link))
}

/// Boot the firmware and bring the link up with `params`, until the agent is RUNNING.
pub fn boot_link(elf: &[u8], params: Params) -> Result<(Board, HostLink), String> {
    let mut board = Board::new(crate::Config::default()).map_err(|e| format!("board: {e}"))?;
    board.load_elf(elf).map_err(|e| format!("firmware: {e}"))?;
    let console = |b: &Board| String::from_utf8_lossy(b.console()).into_owned();
    let mut link = host::connect(&mut board, params, 500).map_err(|e| format!("link up: {e}\n{}", console(&board)))?;
    host::run_until(&mut board, &mut link, |l| l.is_running(), 200)
        .map_err(|e| format!("agent RUNNING: {e}\n{}", console(&board)))?;
    Ok((board, link))
}

/// Run until the agent has an address, as its console says after byte `console_from` (where its last
/// boot started): with no DHCP server, its static one after the wait for a lease (3 s of virtual time,
/// which passes quickly while the firmware sleeps). Frames it sends meanwhile (DHCP discovers) are
/// dropped.
pub fn wait_for_address(board: &mut Board, link: &mut HostLink, console_from: usize) -> Result<(), String> {
    for _ in 0..2000 {
        if String::from_utf8_lossy(&board.console()[console_from..]).contains("net: address ") {
            return Ok(());
        }
        host::run_slice(board).map_err(|e| e.to_string())?;
        link.poll(board).map_err(|e| e.to_string())?;
        while link.recv().is_some() {}
    }
    Err(format!("the agent took no address\n{}", String::from_utf8_lossy(board.console())))
}

/// Longest the firmware runs before the host model acts again, when it does not wait first: 20,000
/// instructions, 37.5 µs. A host CPU handles its interrupts and NAPI polls in microseconds; a model that
/// acted less often would hold back frames and acknowledgements a real host would already have passed
/// on, and the figures would measure the model rather than the agent and the bus.
pub const HOST_TURN_INSTRUCTIONS: u64 = 20_000;

/// One turn of the firmware: until it is about to wait (or [`HOST_TURN_INSTRUCTIONS`] have run), then
/// the link's news.
pub fn agent_turn(board: &mut Board, link: &mut HostLink) -> Result<(), RunError> {
    board.set_stop_at_wait(true);
    board.set_max_instructions(None);
    board.set_turn_end(Some(board.instructions() + HOST_TURN_INSTRUCTIONS));
    let outcome = board.run();
    board.set_turn_end(None);
    board.set_stop_at_wait(false);
    match outcome {
        Outcome::Idle { .. } | Outcome::InstructionLimit => {}
        other => return Err(RunError::Board(other)),
    }
    link.poll(board)?;
    Ok(())
}

/// What one benchmark run measured, over its measured phase only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Instructions the agent executed (waiting excluded).
    pub instructions: u64,
    /// Frames host to agent and agent to host.
    pub frames_to_agent: u64,
    pub frames_to_host: u64,
    /// Payload bytes delivered (TCP payload, or frame bytes for the ring path).
    pub bytes: u64,
    /// Virtual time the phase took, picoseconds.
    pub virtual_ps: u64,
    /// Doorbells the host rang and interrupts the agent raised.
    pub doorbells: u64,
    pub interrupts: u64,
    /// Host BAR reads (any: the fast path may have none) and payload bytes moved by the host CPU.
    pub host_bar_reads: u64,
    pub host_copied_bytes: u64,
    /// Virtual time the data path's DMA channel was busy, picoseconds.
    pub dma_busy_ps: u64,
}

/// Where the agent's instructions went in a run, when asked for ([`Board::profile`]): the functions
/// with the most instructions, and the memory copies by call site.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub functions: Vec<(String, u64)>,
    pub copies: Vec<(String, String, u64, u64)>,
}

impl Profile {
    fn of(board: &Board) -> Profile {
        Profile { functions: board.profile(), copies: board.profile_calls() }
    }

    /// The top `n` functions and copy sites, one per line.
    pub fn report(&self, n: usize) -> String {
        let mut out = String::new();
        for (name, count) in self.functions.iter().take(n) {
            out += &format!("    {count:>12} {name}\n");
        }
        for (callee, caller, calls, bytes) in self.copies.iter().take(n) {
            out += &format!("    {calls:>8} calls {bytes:>10} bytes  {callee} <- {caller}\n");
        }
        out
    }
}

impl Figures {
    pub fn frames(&self) -> u64 {
        self.frames_to_agent + self.frames_to_host
    }
    pub fn instructions_per_frame(&self) -> f64 {
        self.instructions as f64 / self.frames().max(1) as f64
    }
    pub fn notifications_per_packet(&self) -> f64 {
        (self.doorbells + self.interrupts) as f64 / self.frames().max(1) as f64
    }
    /// Share of the time the DMA channel was moving data: what is left is the agent's doing.
    pub fn dma_busy_fraction(&self) -> f64 {
        self.dma_busy_ps as f64 / self.virtual_ps.max(1) as f64
    }

    /// Payload bytes per second of virtual time.
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / (self.virtual_ps.max(1) as f64 / 1e12)
    }
}

/// The bus model's sustained rate in `direction` (bytes per second of virtual time): long transfers,
/// back-to-back bursts.
pub fn sustained_rate(board: &Board, direction: Direction) -> f64 {
    let bytes = 1u64 << 20;
    let cycles = board.bus_model().transfer_cycles(direction, bytes);
    bytes as f64 / ((cycles * PS_PER_INSTRUCTION) as f64 / 1e12)
}

/// Counts at the start of a measured phase.
struct Mark {
    instructions: u64,
    skipped: u64,
    ps: u64,
    stats: host::Stats,
    reads: u64,
    dma_busy: u64,
}

impl Mark {
    fn take(board: &Board, link: &HostLink) -> Mark {
        Mark {
            instructions: board.instructions(),
            skipped: board.skipped_instructions(),
            ps: board.virtual_time_ps(),
            stats: link.stats(),
            reads: board.host_bar_reads(),
            dma_busy: board.dma_stats()[0].busy_instructions,
        }
    }

    fn figures(&self, board: &Board, link: &HostLink) -> Figures {
        let stats = link.stats();
        Figures {
            instructions: (board.instructions() - self.instructions) - (board.skipped_instructions() - self.skipped),
            virtual_ps: board.virtual_time_ps() - self.ps,
            doorbells: stats.doorbells - self.stats.doorbells,
            interrupts: stats.interrupts - self.stats.interrupts,
            host_bar_reads: board.host_bar_reads() - self.reads,
            dma_busy_ps: (board.dma_stats()[0].busy_instructions - self.dma_busy) * PS_PER_INSTRUCTION,
            ..Figures::default()
        }
    }
}

/// The ring path alone (the `ring-bench` firmware): the host keeps the TX ring full of `len`-byte frames
/// and the RX ring full of buffers until `frames` have gone each way. Host interrupts are asked for only
/// when the host has nothing left to do, as NAPI does.
pub fn ring(elf: &[u8], frames: u64, len: usize, profile: bool) -> Result<(Figures, Profile), String> {
    let (mut board, mut link) = boot_link(elf, Params::default())?;
    board.set_profiling(profile);
    let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let err = |e: RunError| e.to_string();
    let mark = Mark::take(&board, &link);
    let (mut sent, mut received, mut copied) = (0u64, 0u64, 0u64);
    for _ in 0..1_000_000 {
        if sent >= frames && received >= frames {
            break;
        }
        let mut m = Metered { board: &mut board, copied_bytes: 0 };
        let mut progress = false;
        while sent < frames && link.send(&mut m, &frame).map_err(|e| err(e.into()))? {
            sent += 1;
            progress = true;
        }
        copied += m.copied_bytes;
        while link.recv().is_some() {
            received += 1;
            progress = true;
        }
        link.set_interrupts(!progress);
        agent_turn(&mut board, &mut link).map_err(err)?;
    }
    if sent < frames || received < frames {
        return Err(format!(
            "ring bench stalled: {sent} frames sent, {received} received of {frames}\nconsole:\n{}",
            String::from_utf8_lossy(board.console())
        ));
    }
    let mut f = mark.figures(&board, &link);
    (f.frames_to_agent, f.frames_to_host, f.bytes, f.host_copied_bytes) =
        (sent, received, 2 * frames * len as u64, copied);
    Ok((f, Profile::of(&board)))
}

/// Boot with `mtu`, and a host TCP connection to the agent's `port`, established.
fn connected(elf: &[u8], mtu: u16, port: u16) -> Result<(Board, HostLink, HostStack, SocketHandle), String> {
    let params = Params { mtu, buffer_len: (u32::from(mtu) + 14).next_multiple_of(64), ..Params::default() };
    let (mut board, mut link) = boot(elf, params)?;
    let mut stack = HostStack::new(&board, mtu);
    let sock = stack.connect(port, 49152, 256 * 1024);
    for _ in 0..10_000 {
        if stack.tcp(sock).may_send() {
            return Ok((board, link, stack, sock));
        }
        let now = virtual_now(&board);
        stack.host_turn(&mut board, now, &mut link);
        agent_turn(&mut board, &mut link).map_err(|e| e.to_string())?;
        stack.take_received(&mut link);
    }
    Err(format!("no TCP connection to port {port}: {:?}", stack.tcp(sock).state()))
}

/// A TCP transfer of `bytes` at `mtu` through the real firmware, verified, with its figures over the
/// transfer (connection set-up excluded).
pub fn tcp_echo(elf: &[u8], bytes: usize, mtu: u16, profile: bool) -> Result<(Figures, Profile), String> {
    let (mut board, mut link, mut stack, sock) = connected(elf, mtu, ECHO_PORT)?;
    let err = |e: RunError| e.to_string();
    let data = pattern(bytes);
    let mut echoed = Vec::with_capacity(bytes);
    let mut sent = 0;
    let mark = Mark::take(&board, &link);
    board.set_profiling(profile);
    let (frames_out, frames_in) = (stack.frames_out, stack.frames_in);
    let mut copied = 0;
    let mut turns = 0u64;
    while echoed.len() < bytes {
        turns += 1;
        if turns > 50_000_000 / 1000 + bytes as u64 {
            return Err(format!("TCP echo stalled at {} of {bytes} bytes", echoed.len()));
        }
        let s = stack.tcp(sock);
        while sent < bytes && s.can_send() {
            sent += s.send_slice(&data[sent..]).map_err(|e| e.to_string())?;
        }
        while s.can_recv() {
            s.recv(|b| {
                echoed.extend_from_slice(b);
                (b.len(), ())
            })
            .map_err(|e| e.to_string())?;
        }
        let now = virtual_now(&board);
        let mut m = Metered { board: &mut board, copied_bytes: 0 };
        let busy = stack.host_turn(&mut m, now, &mut link);
        copied += m.copied_bytes;
        link.set_interrupts(!busy);
        agent_turn(&mut board, &mut link).map_err(err)?;
        stack.take_received(&mut link);
    }
    if echoed != data {
        let at = echoed.iter().zip(&data).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("the echo differs from what was sent, first at byte {at}"));
    }
    let mut f = mark.figures(&board, &link);
    f.frames_to_agent = stack.frames_out - frames_out;
    f.frames_to_host = stack.frames_in - frames_in;
    f.bytes = bytes as u64;
    f.host_copied_bytes = copied;
    Ok((f, Profile::of(&board)))
}

/// Which way a one-way TCP benchmark moves its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Host to agent, into the agent's discard service (RFC 863).
    ToAgent,
    /// Agent to host, from the agent's sized bulk-send service, checked against its pattern.
    ToHost,
}

/// A one-way TCP transfer of `bytes` at `mtu` through the real firmware, with its figures from the
/// first payload byte to the last one acknowledged (to the agent) or received and checked (to the
/// host). The agent is the bottleneck or the bus is: the host acts whenever the agent would wait.
pub fn tcp_one_way(
    elf: &[u8],
    flow: Flow,
    bytes: usize,
    mtu: u16,
    profile: bool,
) -> Result<(Figures, Profile), String> {
    let port = match flow {
        Flow::ToAgent => bpnet_services::DISCARD_PORT,
        Flow::ToHost => bpnet_services::SIZED_PORT,
    };
    let (mut board, mut link, mut stack, sock) = connected(elf, mtu, port)?;
    let err = |e: RunError| e.to_string();
    let data = match flow {
        Flow::ToAgent => pattern(bytes),
        Flow::ToHost => format!("{bytes}\n").into_bytes(),
    };
    let mark = Mark::take(&board, &link);
    board.set_profiling(profile);
    let (frames_out, frames_in) = (stack.frames_out, stack.frames_in);
    let (mut sent, mut received, mut copied) = (0usize, 0usize, 0u64);
    for _ in 0..(bytes as u64 / 16 + 100_000) {
        let s = stack.tcp(sock);
        while sent < data.len() && s.can_send() {
            sent += s.send_slice(&data[sent..]).map_err(|e| e.to_string())?;
        }
        let mut bad = None;
        while s.can_recv() {
            s.recv(|b| {
                if bad.is_none() {
                    bad = bpnet_services::pattern::mismatch(received as u64, b).map(|at| received + at);
                }
                received += b.len();
                (b.len(), ())
            })
            .map_err(|e| e.to_string())?;
        }
        if let Some(at) = bad {
            return Err(format!("bulk data differs from the pattern at byte {at}"));
        }
        let done = match flow {
            Flow::ToAgent => sent == data.len() && s.send_queue() == 0,
            Flow::ToHost => received >= bytes,
        };
        if done {
            let mut f = mark.figures(&board, &link);
            f.frames_to_agent = stack.frames_out - frames_out;
            f.frames_to_host = stack.frames_in - frames_in;
            f.bytes = bytes as u64;
            f.host_copied_bytes = copied;
            if received > bytes {
                return Err(format!("the agent sent {received} bytes for a request of {bytes}"));
            }
            return Ok((f, Profile::of(&board)));
        }
        let now = virtual_now(&board);
        let mut m = Metered { board: &mut board, copied_bytes: 0 };
        let busy = stack.host_turn(&mut m, now, &mut link);
        copied += m.copied_bytes;
        link.set_interrupts(!busy);
        agent_turn(&mut board, &mut link).map_err(err)?;
        stack.take_received(&mut link);
    }
    Err(format!("TCP {flow:?} stalled: {sent} bytes sent, {received} received of {bytes}"))
}

/// A pattern that does not repeat with any period a lost or duplicated segment could hide behind.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Where every image's payload loads (the board's FIRMWARE range starts here).
pub const IMAGE_LOAD: u32 = 0x0010_0000;

/// A signed image of `payload_len` bytes of [`pattern`], loaded and entered at [`IMAGE_LOAD`]
/// (never started: the benchmarks and tests that use it stop at verification or at the flash).
pub fn signed_image(key: &bpnet_image::SigningKey, payload_len: usize, version: u32) -> Result<Vec<u8>, String> {
    bpnet_image::sign(&pattern(payload_len), IMAGE_LOAD, IMAGE_LOAD, version, key).map_err(|e| e.to_string())
}

/// A control-service run: its figures and what it negotiated.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlFigures {
    pub figures: Figures,
    /// The TFTP block size the transfer used (0 for a FLASH).
    pub blksize: u16,
    /// The TFTP window the agent asked for (blocks per ACK).
    pub windowsize: u16,
    /// Virtual time until the whole file was in (the agent's last `PROGRESS fetch`), picoseconds:
    /// the rest is verification.
    pub fetch_ps: u64,
}

/// NETBOOT of `image` (a signed image) at `mtu` from the host model's TFTP server, from the request
/// to the agent's OK (fetched into the staging area and verified there), in virtual time. The
/// agent's TFTP client asks for the largest block an unfragmented datagram carries.
pub fn netboot(elf: &[u8], image: &[u8], mtu: u16, profile: bool) -> Result<(ControlFigures, Profile), String> {
    let params = Params { mtu, buffer_len: (u32::from(mtu) + 14).next_multiple_of(64), ..Params::default() };
    let mut s = crate::control::Session::boot_with(elf, None, params)?;
    s.tftp.add_file("bench.img", image.to_vec());
    s.idle_skip = false;
    s.board.set_profiling(profile);
    let mark = Mark::take(&s.board, &s.link);
    let (frames_out, frames_in) = (s.stack.frames_out, s.stack.frames_in);
    let line = format!("NETBOOT {HOST_IP} bench.img\n");
    let started_ps = s.board.virtual_time_ps();
    let mut pending = s.open(line.as_bytes(), &[]);
    let mut fetched_ps = None;
    let mut done = None;
    for _ in 0..10_000_000 {
        done = s.pump(&mut pending);
        let whole = (crate::control::Phase::Fetch, image.len() as u64, image.len() as u64);
        if fetched_ps.is_none() && pending.reply.progress.contains(&whole) {
            fetched_ps = Some(s.board.virtual_time_ps() - started_ps);
        }
        if done.is_some() {
            break;
        }
        s.turn()?;
    }
    let reply = s.close(pending);
    done.unwrap_or_else(|| Err("NETBOOT did not finish".into()))?;
    if !reply.is_ok() || reply.field("bytes") != Some(image.len().to_string()) {
        return Err(format!("NETBOOT failed: {:?}", reply.lines));
    }
    let mut f = mark.figures(&s.board, &s.link);
    f.frames_to_agent = s.stack.frames_out - frames_out;
    f.frames_to_host = s.stack.frames_in - frames_in;
    f.bytes = image.len() as u64;
    let request = s.tftp.server.log.requests.last().copied().unwrap_or_default();
    let blksize = request.blksize.unwrap_or(512);
    let windowsize = request.windowsize.unwrap_or(1);
    Ok((ControlFigures { figures: f, blksize, windowsize, fetch_ps: fetched_ps.unwrap_or(0) }, Profile::of(&s.board)))
}

/// FLASH of `image` (a signed image) over the control service: received, verified, written into the
/// inactive slot, read back and verified, recorded for trial; from the request to the agent's OK,
/// in virtual time (the flash model's timing: 480 µs a 64-byte write-buffer page, 0.5 s a sector).
pub fn flash_update(elf: &[u8], image: &[u8]) -> Result<ControlFigures, String> {
    let mut s = crate::control::Session::boot(elf, None)?;
    s.idle_skip = false;
    let mark = Mark::take(&s.board, &s.link);
    let line = format!("FLASH {}\n", image.len());
    let reply = s.request(line.as_bytes(), image, 100_000_000)?;
    if !reply.is_ok() || reply.field("bytes") != Some(image.len().to_string()) {
        return Err(format!("FLASH failed: {:?}", reply.lines));
    }
    let mut f = mark.figures(&s.board, &s.link);
    f.bytes = image.len() as u64;
    Ok(ControlFigures { figures: f, blksize: 0, windowsize: 0, fetch_ps: 0 })
}
