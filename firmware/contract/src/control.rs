//! The agent's control service: TCP port [`PORT`], one request per connection, ASCII lines ending
//! in `\n`. The firmware parses requests and formats responses with this module; `bpctl` formats
//! requests and parses responses with it, so both sides share one grammar.
//!
//! Requests (exactly one per connection):
//!
//! | line | then | what |
//! | --- | --- | --- |
//! | `FLASH <len>` | exactly `len` bytes of a signed image | write it into the inactive flash slot, on trial |
//! | `NETBOOT <server-ipv4> <filename>` | | fetch the image by TFTP, verify it, start it |
//! | `RESET` | | software reset |
//! | `FAULT` | | take a program exception on purpose (after answering): the fault report, its record in the board info block and the host's recovery can be tested on a real board |
//! | `STATUS` | | what runs, from where, and what the slots hold |
//!
//! Responses: zero or more `PROGRESS <phase> <done> <total>` lines ([`Phase`]), then exactly one
//! `OK <key=value ...>` or `ERROR <code> <text>` ([`ErrorCode`]); then the agent closes. A line may
//! end in `\r\n` (a request typed at a terminal); the `\r` is dropped.
//!
//! Everything here takes bytes the other side wrote: lengths are checked first, every field is
//! validated, nothing panics (a property test feeds arbitrary lines).

use core::fmt::{self, Write};

/// The agent's TCP port for the control service.
pub const PORT: u16 = 5020;
/// The longest line either side sends or accepts, `\n` included.
pub const LINE_MAX: usize = 256;
/// The longest TFTP filename a `NETBOOT` request carries (the TFTP client's limit).
pub const FILENAME_MAX: usize = 128;

/// One request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `len` bytes of a signed image follow the line.
    Flash {
        len: u32,
    },
    /// Fetch `filename` from the TFTP server at `server` (IPv4, network order).
    Netboot {
        server: [u8; 4],
        filename: &'a str,
    },
    Reset,
    Status,
    /// Fault on purpose once answered (a test of the fault path and the host's recovery).
    Fault,
}

/// Why a request line was refused (answered with `ERROR bad-request`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// No `\n` within [`LINE_MAX`] bytes.
    TooLong,
    /// Not ASCII text (a control character or a byte above 0x7E).
    NotText,
    /// Not one of the four commands.
    UnknownCommand,
    /// The command's arguments are missing, extra or malformed.
    Arguments,
    /// A `FLASH` length of 0 or not a decimal that fits in 32 bits.
    Length,
    /// Not a dotted-quad IPv4 address.
    Address,
    /// An empty filename, or longer than [`FILENAME_MAX`].
    Filename,
}

impl RequestError {
    pub const fn as_str(self) -> &'static str {
        match self {
            RequestError::TooLong => "request line too long",
            RequestError::NotText => "request line is not ASCII text",
            RequestError::UnknownCommand => "unknown command (FLASH, NETBOOT, RESET, STATUS, FAULT)",
            RequestError::Arguments => "wrong arguments",
            RequestError::Length => "length must be a decimal from 1 to 4294967295",
            RequestError::Address => "server must be a dotted-quad IPv4 address",
            RequestError::Filename => "filename must be 1 to 128 characters",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the first line in `buf` ends: the index of its `\n`, `Ok(None)` if there is none yet, or
/// [`RequestError::TooLong`] if [`LINE_MAX`] bytes hold none.
pub fn line_end(buf: &[u8]) -> Result<Option<usize>, RequestError> {
    match buf.iter().take(LINE_MAX).position(|&b| b == b'\n') {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= LINE_MAX => Err(RequestError::TooLong),
        None => Ok(None),
    }
}

/// The line without its `\n` (and a `\r` before it), checked to be printable ASCII.
fn text(line: &[u8]) -> Result<&str, RequestError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() >= LINE_MAX {
        return Err(RequestError::TooLong);
    }
    if !line.iter().all(|&b| (0x20..=0x7E).contains(&b)) {
        return Err(RequestError::NotText);
    }
    // Printable ASCII is UTF-8.
    core::str::from_utf8(line).map_err(|_| RequestError::NotText)
}

/// A decimal of 1 to 20 digits, no sign, no spaces.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |v, b| v.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// `a.b.c.d`, each 0..=255 in 1 to 3 digits.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for byte in out.iter_mut() {
        let part = parts.next()?;
        if part.len() > 3 {
            return None;
        }
        *byte = u8::try_from(decimal(part)?).ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl<'a> Request<'a> {
    /// Parse one request line (with or without its `\n`).
    pub fn parse(line: &'a [u8]) -> Result<Request<'a>, RequestError> {
        let line = text(line)?;
        let mut words = line.split(' ');
        let command = words.next().unwrap_or("");
        let args: [Option<&str>; 3] = [words.next(), words.next(), words.next()];
        let request = match command {
            "FLASH" => {
                let [Some(len), None, None] = args else { return Err(RequestError::Arguments) };
                let len = decimal(len).and_then(|n| u32::try_from(n).ok()).filter(|&n| n != 0);
                Request::Flash { len: len.ok_or(RequestError::Length)? }
            }
            "NETBOOT" => {
                let [Some(server), Some(filename), None] = args else { return Err(RequestError::Arguments) };
                let server = parse_ipv4(server).ok_or(RequestError::Address)?;
                if filename.is_empty() || filename.len() > FILENAME_MAX {
                    return Err(RequestError::Filename);
                }
                Request::Netboot { server, filename }
            }
            "RESET" | "STATUS" | "FAULT" => {
                if args[0].is_some() {
                    return Err(RequestError::Arguments);
                }
                match command {
                    "RESET" => Request::Reset,
                    "FAULT" => Request::Fault,
                    _ => Request::Status,
                }
            }
            _ => return Err(RequestError::UnknownCommand),
        };
        Ok(request)
    }

    /// The request line, `\n` included, into `out`; its length. Refuses what [`Request::parse`]
    /// would refuse (a zero length, a filename with spaces or control characters, too long).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Overflow> {
        let mut w = Line::new(out);
        match *self {
            Request::Flash { len } if len != 0 => writeln!(w, "FLASH {len}"),
            Request::Netboot { server: [a, b, c, d], filename }
                if !filename.is_empty()
                    && filename.len() <= FILENAME_MAX
                    && filename.bytes().all(|b| (0x21..=0x7E).contains(&b)) =>
            {
                writeln!(w, "NETBOOT {a}.{b}.{c}.{d} {filename}")
            }
            Request::Reset => w.write_str("RESET\n"),
            Request::Status => w.write_str("STATUS\n"),
            Request::Fault => w.write_str("FAULT\n"),
            _ => return Err(Overflow),
        }
        .map_err(|_| Overflow)?;
        w.finish()
    }
}

/// The line does not fit its buffer or [`LINE_MAX`], or a value cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

/// A line being written into a byte buffer (at most [`LINE_MAX`] bytes).
pub struct Line<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl<'b> Line<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        Line { buf, len: 0, overflow: false }
    }

    /// The bytes written, or [`Overflow`] if anything did not fit.
    pub fn finish(self) -> Result<usize, Overflow> {
        if self.overflow {
            Err(Overflow)
        } else {
            Ok(self.len)
        }
    }
}

impl Write for Line<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len().min(LINE_MAX) {
            self.overflow = true;
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// What a `PROGRESS` line counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Image bytes received over the control connection (`FLASH`).
    Receive,
    /// Image bytes verified (signature and hash), in RAM or read back.
    Verify,
    /// Flash sectors erased.
    Erase,
    /// Image bytes programmed.
    Program,
    /// Image bytes read back from flash.
    Readback,
    /// Image bytes fetched by TFTP (`NETBOOT`).
    Fetch,
}

impl Phase {
    pub const ALL: [Phase; 6] =
        [Phase::Receive, Phase::Verify, Phase::Erase, Phase::Program, Phase::Readback, Phase::Fetch];

    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Receive => "receive",
            Phase::Verify => "verify",
            Phase::Erase => "erase",
            Phase::Program => "program",
            Phase::Readback => "readback",
            Phase::Fetch => "fetch",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The code word of an `ERROR` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The image failed verification (unsigned, foreign key, corrupt, truncated): nothing erased.
    Refused,
    /// The image does not fit the slot or the staging area.
    TooLarge,
    /// A flash erase, program, read back or boot-state write failed.
    Flash,
    /// Another request is in progress.
    Busy,
    /// The TFTP server refused or the transfer failed (after the retries).
    Tftp,
    /// No answer in time (TFTP server, or the image's bytes on this connection).
    Timeout,
    /// The request line was not understood.
    BadRequest,
    /// The connection closed before the image was complete.
    Truncated,
    /// The agent has no address or no link to do it with.
    Network,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Refused,
        ErrorCode::TooLarge,
        ErrorCode::Flash,
        ErrorCode::Busy,
        ErrorCode::Tftp,
        ErrorCode::Timeout,
        ErrorCode::BadRequest,
        ErrorCode::Truncated,
        ErrorCode::Network,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Refused => "refused",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Flash => "flash",
            ErrorCode::Busy => "busy",
            ErrorCode::Tftp => "tftp",
            ErrorCode::Timeout => "timeout",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Truncated => "truncated",
            ErrorCode::Network => "network",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An image version (`major << 16 | minor << 8 | patch`) as `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version(pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(f, "{}.{}.{}", (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF)
    }
}

impl Version {
    /// `major.minor.patch`, each 0..=255.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut v = 0u32;
        for _ in 0..3 {
            let part = parts.next()?;
            if part.len() > 3 {
                return None;
            }
            v = v << 8 | u32::from(u8::try_from(decimal(part)?).ok()?);
        }
        parts.next().is_none().then_some(Version(v))
    }
}

/// A `PROGRESS` line.
pub fn progress(out: &mut [u8], phase: Phase, done: u64, total: u64) -> Result<usize, Overflow> {
    let mut w = Line::new(out);
    let _ = writeln!(w, "PROGRESS {} {done} {total}", phase.as_str());
    w.finish()
}

/// Whether `s` may be a key (`[a-z0-9_]+`) or a value (printable ASCII without spaces or `=`).
fn is_key(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
fn is_value(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7E).contains(&b) && b != b'=')
}

/// A value checked on its way into a line: it must format as printable ASCII without spaces or `=`.
struct Checked<'w, 'b> {
    line: &'w mut Line<'b>,
    bad: bool,
    empty: bool,
}

impl Write for Checked<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.is_empty() {
            self.empty = false;
        }
        if !s.bytes().all(|b| (0x21..=0x7E).contains(&b) && b != b'=') {
            self.bad = true;
            return Err(fmt::Error);
        }
        self.line.write_str(s)
    }
}

/// An `OK` line with `fields` as `key=value` pairs, in order. Keys are `[a-z0-9_]+`; values any
/// `Display` that formats to printable ASCII without spaces or `=`.
pub fn ok(out: &mut [u8], fields: &[(&str, &dyn fmt::Display)]) -> Result<usize, Overflow> {
    let mut w = Line::new(out);
    w.write_str("OK").map_err(|_| Overflow)?;
    for (key, value) in fields {
        if !is_key(key) {
            return Err(Overflow);
        }
        write!(w, " {key}=").map_err(|_| Overflow)?;
        let mut c = Checked { line: &mut w, bad: false, empty: true };
        if write!(c, "{value}").is_err() || c.bad || c.empty {
            return Err(Overflow);
        }
    }
    w.write_str("\n").map_err(|_| Overflow)?;
    w.finish()
}

/// An `ERROR` line. The text is cut to fit the line, and any byte that is not printable ASCII
/// becomes `?` (it may quote what the other side sent).
pub fn error(out: &mut [u8], code: ErrorCode, text: fmt::Arguments<'_>) -> Result<usize, Overflow> {
    /// Writes sanitised text, silently dropping what does not fit before the `\n`.
    struct Text<'w, 'b> {
        line: &'w mut Line<'b>,
        room: usize,
    }
    impl Write for Text<'_, '_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.room == 0 {
                    return Ok(());
                }
                let b = if c.is_ascii() && !c.is_ascii_control() { c as u8 } else { b'?' };
                self.line.write_str(core::str::from_utf8(&[b]).unwrap_or("?"))?;
                self.room -= 1;
            }
            Ok(())
        }
    }
    let mut w = Line::new(out);
    write!(w, "ERROR {}", code.as_str()).map_err(|_| Overflow)?;
    let room = out_room(&w).saturating_sub(2);
    if room > 0 {
        w.write_str(" ").map_err(|_| Overflow)?;
        let mut t = Text { line: &mut w, room };
        let _ = t.write_fmt(text);
    }
    w.write_str("\n").map_err(|_| Overflow)?;
    w.finish()
}

fn out_room(w: &Line<'_>) -> usize {
    w.buf.len().min(LINE_MAX) - w.len
}

/// One response line as parsed by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Progress {
        phase: Phase,
        done: u64,
        total: u64,
    },
    /// The `key=value` pairs ([`Fields`]).
    Ok(Fields<'a>),
    Error {
        code: ErrorCode,
        text: &'a str,
    },
}

/// Why a response line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    TooLong,
    NotText,
    /// Not `PROGRESS`, `OK` or `ERROR`.
    Kind,
    /// A malformed `PROGRESS` line (unknown phase, bad numbers, done beyond total).
    Progress,
    /// A malformed `key=value` pair.
    Field,
    /// An unknown error code.
    Code,
}

/// The `key=value` pairs of an `OK` line, checked when the line was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields<'a> {
    text: &'a str,
}

impl<'a> Fields<'a> {
    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.text.split(' ').filter(|s| !s.is_empty()).filter_map(|pair| pair.split_once('='))
    }

    /// The value of the first pair named `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|&(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'a> Response<'a> {
    /// Parse one response line (with or without its `\n`).
    pub fn parse(line: &'a [u8]) -> Result<Response<'a>, ResponseError> {
        let line = text(line).map_err(|e| match e {
            RequestError::TooLong => ResponseError::TooLong,
            _ => ResponseError::NotText,
        })?;
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "PROGRESS" => {
                let mut words = rest.split(' ');
                let (Some(phase), Some(done), Some(total), None) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    return Err(ResponseError::Progress);
                };
                let phase = Phase::parse(phase).ok_or(ResponseError::Progress)?;
                let (Some(done), Some(total)) = (decimal(done), decimal(total)) else {
                    return Err(ResponseError::Progress);
                };
                if done > total {
                    return Err(ResponseError::Progress);
                }
                Ok(Response::Progress { phase, done, total })
            }
            "OK" => {
                for pair in rest.split(' ').filter(|s| !rest.is_empty() || !s.is_empty()) {
                    let Some((k, v)) = pair.split_once('=') else { return Err(ResponseError::Field) };
                    if !is_key(k) || !is_value(v) {
                        return Err(ResponseError::Field);
                    }
                }
                Ok(Response::Ok(Fields { text: rest }))
            }
            "ERROR" => {
                let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
                Ok(Response::Error { code: ErrorCode::parse(code).ok_or(ResponseError::Code)?, text })
            }
            _ => Err(ResponseError::Kind),
        }
    }
}

/// Where the running program came from (the boot block's `boot_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Loaded by a debugger, U-Boot or the emulator.
    Direct,
    Flash,
    Netboot,
    /// Through the BAR, in recovery.
    Recovery,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::Direct, Source::Flash, Source::Netboot, Source::Recovery];

    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Direct => "direct",
            Source::Flash => "flash",
            Source::Netboot => "netboot",
            Source::Recovery => "recovery",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What a flash slot holds, as `STATUS` reports it: `<state>:<version>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotReport {
    /// No boot-state record, or the flash could not be read.
    Unknown,
    Empty,
    /// Written and verified, not on trial and not confirmed.
    Written(Version),
    /// On trial: the next boots start it until it confirms or runs out.
    Trial(Version),
    Confirmed(Version),
    Rejected(Version),
}

impl fmt::Display for SlotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotReport::Unknown => f.write_str("unknown"),
            SlotReport::Empty => f.write_str("empty"),
            SlotReport::Written(v) => write!(f, "written:{v}"),
            SlotReport::Trial(v) => write!(f, "trial:{v}"),
            SlotReport::Confirmed(v) => write!(f, "confirmed:{v}"),
            SlotReport::Rejected(v) => write!(f, "rejected:{v}"),
        }
    }
}

impl SlotReport {
    pub fn parse(s: &str) -> Option<SlotReport> {
        match s {
            "unknown" => return Some(SlotReport::Unknown),
            "empty" => return Some(SlotReport::Empty),
            _ => {}
        }
        let (state, version) = s.split_once(':')?;
        let v = Version::parse(version)?;
        Some(match state {
            "written" => SlotReport::Written(v),
            "trial" => SlotReport::Trial(v),
            "confirmed" => SlotReport::Confirmed(v),
            "rejected" => SlotReport::Rejected(v),
            _ => return None,
        })
    }
}

/// Slot names in `STATUS` and `OK slot=`.
pub fn slot_name(slot: Option<u8>) -> &'static str {
    match slot {
        Some(0) => "A",
        Some(1) => "B",
        _ => "none",
    }
}

/// The `STATUS` answer: `OK source=flash slot=B trial=0 confirmed=1 version=1.2.3 uptime=12
/// a=confirmed:1.2.3 b=trial:1.2.4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub source: Source,
    /// The slot the running program came from (0 A, 1 B), if from flash.
    pub slot: Option<u8>,
    pub trial: bool,
    pub confirmed: bool,
    pub version: Version,
    /// Seconds since the running program started.
    pub uptime: u32,
    pub a: SlotReport,
    pub b: SlotReport,
}

impl Status {
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Overflow> {
        let flag = |b: bool| if b { 1u8 } else { 0 };
        ok(
            out,
            &[
                ("source", &self.source.as_str()),
                ("slot", &slot_name(self.slot)),
                ("trial", &flag(self.trial)),
                ("confirmed", &flag(self.confirmed)),
                ("version", &self.version),
                ("uptime", &self.uptime),
                ("a", &self.a),
                ("b", &self.b),
            ],
        )
    }

    /// The status from an `OK` line's fields; `None` if one is missing or malformed.
    pub fn parse(fields: &Fields<'_>) -> Option<Status> {
        let flag = |k| match fields.get(k)? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let slot = match fields.get("slot")? {
            "A" => Some(0),
            "B" => Some(1),
            "none" => None,
            _ => return None,
        };
        Some(Status {
            source: Source::parse(fields.get("source")?)?,
            slot,
            trial: flag("trial")?,
            confirmed: flag("confirmed")?,
            version: Version::parse(fields.get("version")?)?,
            uptime: u32::try_from(decimal(fields.get("uptime")?)?).ok()?,
            a: SlotReport::parse(fields.get("a")?)?,
            b: SlotReport::parse(fields.get("b")?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use proptest::prelude::*;

    use super::*;

    fn line(f: impl FnOnce(&mut [u8]) -> Result<usize, Overflow>) -> String {
        let mut buf = [0u8; LINE_MAX];
        let n = f(&mut buf).expect("fits");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn requests_parse() {
        assert_eq!(Request::parse(b"FLASH 1048708\n"), Ok(Request::Flash { len: 1_048_708 }));
        assert_eq!(Request::parse(b"STATUS\r\n"), Ok(Request::Status));
        assert_eq!(Request::parse(b"RESET"), Ok(Request::Reset));
        assert_eq!(Request::parse(b"FAULT\n"), Ok(Request::Fault));
        assert_eq!(Request::parse(b"FAULT now\n"), Err(RequestError::Arguments));
        assert_eq!(
            Request::parse(b"NETBOOT 10.83.49.1 bpnet/fw.img\n"),
            Ok(Request::Netboot { server: [10, 83, 49, 1], filename: "bpnet/fw.img" })
        );
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let cases: [(&[u8], RequestError); 14] = [
            (b"\n", RequestError::UnknownCommand),
            (b"flash 10\n", RequestError::UnknownCommand),
            (b"FLASH\n", RequestError::Arguments),
            (b"FLASH 0\n", RequestError::Length),
            (b"FLASH -1\n", RequestError::Length),
            (b"FLASH 4294967296\n", RequestError::Length),
            (b"FLASH 10 11\n", RequestError::Arguments),
            (b"FLASH  10\n", RequestError::Arguments),
            (b"STATUS now\n", RequestError::Arguments),
            (b"NETBOOT 10.83.49 f\n", RequestError::Address),
            (b"NETBOOT 10.83.49.256 f\n", RequestError::Address),
            (b"NETBOOT 10.83.49.1\n", RequestError::Arguments),
            (b"RESET\0\n", RequestError::NotText),
            (b"STATUS \xff\n", RequestError::NotText),
        ];
        for (input, want) in cases {
            assert_eq!(Request::parse(input), Err(want), "{:?}", String::from_utf8_lossy(input));
        }
        let long = [b'A'; 300];
        assert_eq!(line_end(&long), Err(RequestError::TooLong));
        assert_eq!(line_end(b"STAT"), Ok(None));
        assert_eq!(line_end(b"STATUS\nxx"), Ok(Some(6)));
        let name = "f".repeat(FILENAME_MAX + 1);
        let req = std::format!("NETBOOT 1.2.3.4 {name}\n");
        assert_eq!(Request::parse(req.as_bytes()), Err(RequestError::Filename));
    }

    #[test]
    fn requests_emit_what_parses() {
        for r in [
            Request::Flash { len: 7 },
            Request::Netboot { server: [192, 168, 0, 255], filename: "a/b.img" },
            Request::Reset,
            Request::Status,
            Request::Fault,
        ] {
            let text = line(|b| r.emit(b));
            assert!(text.ends_with('\n'));
            assert_eq!(Request::parse(text.as_bytes()), Ok(r));
        }
        let mut buf = [0u8; 64];
        assert_eq!(Request::Flash { len: 0 }.emit(&mut buf), Err(Overflow));
        assert_eq!(Request::Netboot { server: [1, 2, 3, 4], filename: "a b" }.emit(&mut buf), Err(Overflow));
        assert_eq!(Request::Status.emit(&mut buf[..3]), Err(Overflow));
    }

    #[test]
    fn responses_round_trip() {
        let p = line(|b| progress(b, Phase::Program, 4096, 1_048_708));
        assert_eq!(p, "PROGRESS program 4096 1048708\n");
        assert_eq!(
            Response::parse(p.as_bytes()),
            Ok(Response::Progress { phase: Phase::Program, done: 4096, total: 1_048_708 })
        );
        let o = line(|b| ok(b, &[("slot", &"B"), ("version", &Version(0x01_02_03)), ("bytes", &1234u32)]));
        assert_eq!(o, "OK slot=B version=1.2.3 bytes=1234\n");
        let Ok(Response::Ok(fields)) = Response::parse(o.as_bytes()) else { panic!("{o}") };
        assert_eq!(fields.get("version"), Some("1.2.3"));
        assert_eq!(fields.get("bytes"), Some("1234"));
        assert_eq!(fields.get("nope"), None);
        assert_eq!(line(|b| ok(b, &[])), "OK\n");
        assert_eq!(Response::parse(b"OK\n").map(|r| matches!(r, Response::Ok(_))), Ok(true));

        let e = line(|b| error(b, ErrorCode::Refused, format_args!("signature does not verify\n\x07")));
        assert_eq!(e, "ERROR refused signature does not verify??\n");
        assert_eq!(
            Response::parse(e.as_bytes()),
            Ok(Response::Error { code: ErrorCode::Refused, text: "signature does not verify??" })
        );
        // An over-long text is cut, the line still ends.
        let long = "x".repeat(1000);
        let e = line(|b| error(b, ErrorCode::Tftp, format_args!("{long}")));
        assert_eq!(e.len(), LINE_MAX);
        assert!(e.ends_with('\n'));
        assert!(Response::parse(e.as_bytes()).is_ok());
        // Values with spaces or `=` are refused rather than written ambiguously.
        let mut buf = [0u8; LINE_MAX];
        assert_eq!(ok(&mut buf, &[("k", &"a b")]), Err(Overflow));
        assert_eq!(ok(&mut buf, &[("k", &"a=b")]), Err(Overflow));
        assert_eq!(ok(&mut buf, &[("K", &"a")]), Err(Overflow));
        assert_eq!(ok(&mut buf, &[("k", &"")]), Err(Overflow));
    }

    #[test]
    fn bad_responses_are_refused() {
        for (input, want) in [
            (&b"PROGRESS program 5 4\n"[..], ResponseError::Progress),
            (b"PROGRESS burn 1 4\n", ResponseError::Progress),
            (b"PROGRESS program 1\n", ResponseError::Progress),
            (b"OK slot\n", ResponseError::Field),
            (b"OK slot=B  x=1\n", ResponseError::Field),
            (b"ERROR oops text\n", ResponseError::Code),
            (b"MAYBE\n", ResponseError::Kind),
            (b"OK \x01\n", ResponseError::NotText),
        ] {
            assert_eq!(Response::parse(input), Err(want), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn status_round_trips() {
        let s = Status {
            source: Source::Flash,
            slot: Some(1),
            trial: false,
            confirmed: true,
            version: Version(0x01_02_03),
            uptime: 12,
            a: SlotReport::Confirmed(Version(0x01_02_03)),
            b: SlotReport::Trial(Version(0x01_02_04)),
        };
        let text = line(|b| s.emit(b));
        assert_eq!(
            text,
            "OK source=flash slot=B trial=0 confirmed=1 version=1.2.3 uptime=12 a=confirmed:1.2.3 b=trial:1.2.4\n"
        );
        let Ok(Response::Ok(fields)) = Response::parse(text.as_bytes()) else { panic!() };
        assert_eq!(Status::parse(&fields), Some(s));
        let s = Status { source: Source::Direct, slot: None, a: SlotReport::Unknown, b: SlotReport::Empty, ..s };
        let text = line(|b| s.emit(b));
        let Ok(Response::Ok(fields)) = Response::parse(text.as_bytes()) else { panic!() };
        assert_eq!(Status::parse(&fields), Some(s));
    }

    #[test]
    fn versions_and_addresses() {
        assert_eq!(Version::parse("255.0.7"), Some(Version(0xFF_00_07)));
        assert_eq!(Version::parse("256.0.7"), None);
        assert_eq!(Version::parse("1.2"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert_eq!(parse_ipv4("0.0.0.0"), Some([0; 4]));
        assert_eq!(parse_ipv4("1..2.3"), None);
        assert_eq!(parse_ipv4("0001.2.3.4"), None);
    }

    proptest! {
        /// Arbitrary request lines: never a panic; whatever parses emits back to the same request.
        #[test]
        fn arbitrary_request_lines(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = Request::parse(&bytes) {
                let mut buf = [0u8; LINE_MAX];
                let n = r.emit(&mut buf).expect("a parsed request emits");
                prop_assert_eq!(Request::parse(&buf[..n]), Ok(r));
            }
            let _ = line_end(&bytes);
            let _ = Response::parse(&bytes);
        }

        /// Lines built from the grammar's words: each parses or is refused, never a panic.
        #[test]
        fn grammar_like_request_lines(
            cmd in prop::sample::select(&["FLASH", "NETBOOT", "RESET", "STATUS", "FLASHX", ""][..]),
            args in proptest::collection::vec("[0-9.a-z/ ]{0,20}", 0..4),
        ) {
            let text = std::format!("{} {}\n", cmd, args.join(" "));
            if let Ok(r) = Request::parse(text.as_bytes()) {
                let mut buf = [0u8; LINE_MAX];
                let n = r.emit(&mut buf).expect("a parsed request emits");
                prop_assert_eq!(Request::parse(&buf[..n]), Ok(r));
            }
        }

        /// Progress lines round-trip for any counts.
        #[test]
        fn progress_round_trips(done in any::<u64>(), extra in any::<u64>(), i in 0usize..6) {
            let total = done.saturating_add(extra);
            let mut buf = [0u8; LINE_MAX];
            let n = progress(&mut buf, Phase::ALL[i], done, total).unwrap();
            prop_assert_eq!(
                Response::parse(&buf[..n]),
                Ok(Response::Progress { phase: Phase::ALL[i], done, total })
            );
        }
    }
}
