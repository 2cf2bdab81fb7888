//! TFTP packets (RFC 1350) and the option extension (RFC 2347: OACK, options in a request; RFC 2348
//! blksize, RFC 2349 timeout and tsize, RFC 7440 windowsize), as a typed view over bytes in smoltcp's
//! `wire` style: [`Packet::new_checked`] is the one length check, [`Repr::parse`] checks every value.
//!
//! Every multi-byte field is big-endian (network order):
//!
//! | opcode | packet | after the opcode |
//! | --- | --- | --- |
//! | 1 | RRQ | filename `\0` mode `\0` { option `\0` value `\0` } |
//! | 2 | WRQ | as RRQ |
//! | 3 | DATA | block (2), 0..=blksize bytes |
//! | 4 | ACK | block (2) |
//! | 5 | ERROR | code (2), message `\0` |
//! | 6 | OACK | { option `\0` value `\0` } |
//!
//! Packets come from the network: nothing here panics on any byte string, a bad one is an [`Error`].

use core::ops::{Range, RangeFrom};

mod field {
    use super::{Range, RangeFrom};
    pub const OPCODE: Range<usize> = 0..2;
    /// DATA and ACK: the block number.
    pub const BLOCK: Range<usize> = 2..4;
    /// ERROR: the error code.
    pub const CODE: Range<usize> = 2..4;
    /// DATA: the payload; ERROR: the message.
    pub const REST: RangeFrom<usize> = 4..;
    /// RRQ, WRQ, OACK: the NUL-terminated strings.
    pub const STRINGS: RangeFrom<usize> = 2..;
}

/// Bytes of the opcode and block number (or error code) in front of a DATA payload or a message.
pub const HEADER_LEN: usize = 4;
/// The block size without the blksize option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;
/// The smallest block size RFC 2348 allows.
pub const BLKSIZE_MIN: u16 = 8;
/// The largest block size RFC 2348 allows (a 65535-byte IP datagram less its headers).
pub const BLKSIZE_MAX: u16 = 65464;
/// A request must fit in the 512 bytes a server without options reads (RFC 2347).
pub const REQUEST_MAX: usize = 512;
/// The well-known server port (RFC 1350).
pub const SERVER_PORT: u16 = 69;

/// The packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    ReadRequest = 1,
    WriteRequest = 2,
    Data = 3,
    Ack = 4,
    Error = 5,
    OptionAck = 6,
}

impl Opcode {
    fn from_u16(value: u16) -> Option<Opcode> {
        Some(match value {
            1 => Opcode::ReadRequest,
            2 => Opcode::WriteRequest,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::OptionAck,
            _ => return None,
        })
    }
}

/// Why a packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its opcode's fixed fields.
    Truncated,
    /// An opcode RFC 1350 and RFC 2347 do not define.
    Opcode(u16),
    /// A filename, mode or option without its terminating NUL.
    Unterminated,
    /// An empty filename.
    Filename,
    /// A transfer mode other than netascii, octet or mail.
    Mode,
    /// An option name without a value.
    MissingValue,
    /// The same option twice (the packet is ambiguous).
    Duplicate(OptionName),
    /// An option value outside what its RFC allows, or not a decimal number.
    Value(OptionName),
    /// An option the client never asks for, in an OACK (RFC 2347: the server must not add one).
    UnknownOption,
    /// The buffer given to [`Repr::emit`] is too small, or a string to emit holds a NUL.
    Emit,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Truncated => write!(f, "packet too short"),
            Error::Opcode(op) => write!(f, "unknown opcode {op}"),
            Error::Unterminated => write!(f, "string without its NUL"),
            Error::Filename => write!(f, "empty filename"),
            Error::Mode => write!(f, "unknown transfer mode"),
            Error::MissingValue => write!(f, "option without a value"),
            Error::Duplicate(name) => write!(f, "option {} twice", name.as_str()),
            Error::Value(name) => write!(f, "bad {} value", name.as_str()),
            Error::UnknownOption => write!(f, "an option that was not requested"),
            Error::Emit => write!(f, "buffer too small or string with a NUL"),
        }
    }
}

/// The options this crate negotiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionName {
    /// RFC 2348: DATA payload bytes, [`BLKSIZE_MIN`]..=[`BLKSIZE_MAX`].
    Blksize,
    /// RFC 7440: DATA packets sent before an ACK is awaited, 1..=65535.
    Windowsize,
    /// RFC 2349: the retransmission timeout in seconds, 1..=255.
    Timeout,
    /// RFC 2349: the file's size in bytes (0 in a read request: "tell me").
    Tsize,
}

impl OptionName {
    /// The name as sent (lowercase; received names are compared without case, RFC 2347).
    pub const fn as_str(self) -> &'static str {
        match self {
            OptionName::Blksize => "blksize",
            OptionName::Windowsize => "windowsize",
            OptionName::Timeout => "timeout",
            OptionName::Tsize => "tsize",
        }
    }

    fn from_bytes(name: &[u8]) -> Option<OptionName> {
        [OptionName::Blksize, OptionName::Windowsize, OptionName::Timeout, OptionName::Tsize]
            .into_iter()
            .find(|o| o.as_str().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// Negotiated or requested option values; `None` is "not present".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    pub timeout: Option<u8>,
    pub tsize: Option<u64>,
}

impl Options {
    /// No options: a plain RFC 1350 request.
    pub const NONE: Options = Options { blksize: None, windowsize: None, timeout: None, tsize: None };

    pub fn is_empty(&self) -> bool {
        *self == Options::NONE
    }

    /// Parse `option \0 value \0` pairs. Unknown options are skipped if `skip_unknown` (a server
    /// ignores what it does not know, RFC 2347) and refused otherwise (a client asked for these only).
    pub fn parse(bytes: &[u8], skip_unknown: bool) -> Result<Options, Error> {
        let mut options = Options::NONE;
        let mut strings = Strings(bytes);
        while let Some(name) = strings.next_string()? {
            let value = strings.next_string()?.ok_or(Error::MissingValue)?;
            let Some(which) = OptionName::from_bytes(name) else {
                if skip_unknown {
                    continue;
                }
                return Err(Error::UnknownOption);
            };
            let number = decimal(value).ok_or(Error::Value(which))?;
            let bad = Error::Value(which);
            let duplicate = Error::Duplicate(which);
            match which {
                OptionName::Blksize => {
                    let v =
                        u16::try_from(number).ok().filter(|v| (BLKSIZE_MIN..=BLKSIZE_MAX).contains(v)).ok_or(bad)?;
                    set(&mut options.blksize, v, duplicate)?
                }
                OptionName::Windowsize => {
                    let v = u16::try_from(number).ok().filter(|&v| v >= 1).ok_or(bad)?;
                    set(&mut options.windowsize, v, duplicate)?
                }
                OptionName::Timeout => {
                    let v = u8::try_from(number).ok().filter(|&v| v >= 1).ok_or(bad)?;
                    set(&mut options.timeout, v, duplicate)?
                }
                OptionName::Tsize => set(&mut options.tsize, number, duplicate)?,
            }
        }
        Ok(options)
    }

    /// Bytes of the options when emitted.
    pub fn buffer_len(&self) -> usize {
        self.pairs().map(|(name, value)| name.as_str().len() + 1 + digits(value) + 1).sum()
    }

    /// Emit the options into `buf` (which the caller sized with [`Self::buffer_len`]).
    fn emit(&self, buf: &mut Writer<'_>) -> Result<(), Error> {
        for (name, value) in self.pairs() {
            buf.string(name.as_str().as_bytes())?;
            let mut text = [0u8; 20];
            let n = format_decimal(value, &mut text);
            buf.string(&text[..n])?;
        }
        Ok(())
    }

    fn pairs(&self) -> impl Iterator<Item = (OptionName, u64)> {
        [
            self.blksize.map(|v| (OptionName::Blksize, u64::from(v))),
            self.windowsize.map(|v| (OptionName::Windowsize, u64::from(v))),
            self.timeout.map(|v| (OptionName::Timeout, u64::from(v))),
            self.tsize.map(|v| (OptionName::Tsize, v)),
        ]
        .into_iter()
        .flatten()
    }
}

fn set<T>(slot: &mut Option<T>, value: T, duplicate: Error) -> Result<(), Error> {
    if slot.is_some() {
        return Err(duplicate);
    }
    *slot = Some(value);
    Ok(())
}

/// NUL-terminated strings one after another.
struct Strings<'a>(&'a [u8]);

impl<'a> Strings<'a> {
    /// The next string, `None` at the end, an error if the last one has no NUL.
    fn next_string(&mut self) -> Result<Option<&'a [u8]>, Error> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let end = self.0.iter().position(|&b| b == 0).ok_or(Error::Unterminated)?;
        let (string, rest) = (&self.0[..end], &self.0[end + 1..]);
        self.0 = rest;
        Ok(Some(string))
    }
}

/// An ASCII decimal number: one or more digits, nothing else, no overflow.
pub fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Decimal digits of `value`.
fn digits(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 10 {
        value /= 10;
        n += 1;
    }
    n
}

/// Write `value` in decimal into `out` (20 bytes hold any u64); the bytes written.
fn format_decimal(mut value: u64, out: &mut [u8; 20]) -> usize {
    let n = digits(value);
    for slot in out[..n].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    n
}

/// Transfer modes (RFC 1350). This crate moves binary images and asks for octet only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Netascii,
    Octet,
    Mail,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn from_bytes(name: &[u8]) -> Option<Mode> {
        [Mode::Netascii, Mode::Octet, Mode::Mail].into_iter().find(|m| m.as_str().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// The error codes of RFC 1350 and RFC 2347.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: see the message.
    Undefined,
    /// 1
    FileNotFound,
    /// 2
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4
    IllegalOperation,
    /// 5: a packet from a port that is not the transfer's.
    UnknownTransferId,
    /// 6
    FileExists,
    /// 7
    NoSuchUser,
    /// 8: the receiver of an OACK (or a request) refuses the options (RFC 2347).
    OptionsRefused,
    /// Any other value.
    Other(u16),
}

impl ErrorCode {
    pub const fn from_u16(code: u16) -> ErrorCode {
        match code {
            0 => ErrorCode::Undefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionsRefused,
            other => ErrorCode::Other(other),
        }
    }

    pub const fn as_u16(self) -> u16 {
        match self {
            ErrorCode::Undefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionsRefused => 8,
            ErrorCode::Other(other) => other,
        }
    }
}

/// A typed view of a TFTP packet over a byte buffer.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; accessors may then panic. Use `new_checked`.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a received datagram, checking its length.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The one check the accessors rely on: an opcode, and for DATA, ACK and ERROR the block number
    /// or error code after it.
    pub fn check_len(&self) -> Result<(), Error> {
        let buf = self.buffer.as_ref();
        let Some(op) = buf.get(field::OPCODE) else { return Err(Error::Truncated) };
        let fixed = match u16::from_be_bytes([op[0], op[1]]) {
            3..=5 => HEADER_LEN,
            _ => field::OPCODE.end,
        };
        if buf.len() < fixed {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The opcode, as sent.
    pub fn opcode(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPCODE)
    }

    /// DATA and ACK: the block number.
    pub fn block(&self) -> u16 {
        be16(self.buffer.as_ref(), field::BLOCK)
    }

    /// ERROR: the error code.
    pub fn error_code(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CODE)
    }

    /// DATA: the payload; ERROR: the message and what follows it.
    pub fn rest(&self) -> &[u8] {
        &self.buffer.as_ref()[field::REST]
    }

    /// RRQ, WRQ, OACK: the strings after the opcode.
    pub fn strings(&self) -> &[u8] {
        &self.buffer.as_ref()[field::STRINGS]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

fn be16(buf: &[u8], at: Range<usize>) -> u16 {
    let b = &buf[at];
    u16::from_be_bytes([b[0], b[1]])
}

/// A read or write request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub filename: &'a [u8],
    pub mode: Mode,
    pub options: Options,
}

/// A parsed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    ReadRequest(Request<'a>),
    WriteRequest(Request<'a>),
    Data {
        block: u16,
        data: &'a [u8],
    },
    Ack {
        block: u16,
    },
    /// `message` ends before its NUL (or at the end of the packet if a server forgot the NUL: the
    /// message is only logged, so it is taken as it is).
    Error {
        code: ErrorCode,
        message: &'a [u8],
    },
    OptionAck(Options),
}

impl<'a> Repr<'a> {
    /// Parse a datagram, checking every field. Unknown options are skipped in a request and refused
    /// in an OACK.
    pub fn parse(bytes: &'a [u8]) -> Result<Repr<'a>, Error> {
        let packet = Packet::new_checked(bytes)?;
        let opcode = packet.opcode();
        let op = Opcode::from_u16(opcode).ok_or(Error::Opcode(opcode))?;
        let packet = Packet::new_unchecked(packet.into_inner());
        Ok(match op {
            Opcode::ReadRequest | Opcode::WriteRequest => {
                let strings = &bytes[field::STRINGS];
                let mut s = Strings(strings);
                let filename = s.next_string()?.ok_or(Error::Unterminated)?;
                if filename.is_empty() {
                    return Err(Error::Filename);
                }
                let mode = s.next_string()?.ok_or(Error::Unterminated)?;
                let mode = Mode::from_bytes(mode).ok_or(Error::Mode)?;
                let options = Options::parse(s.0, true)?;
                let request = Request { filename, mode, options };
                if op == Opcode::ReadRequest {
                    Repr::ReadRequest(request)
                } else {
                    Repr::WriteRequest(request)
                }
            }
            Opcode::Data => Repr::Data { block: packet.block(), data: &bytes[field::REST] },
            Opcode::Ack => Repr::Ack { block: packet.block() },
            Opcode::Error => {
                let rest = &bytes[field::REST];
                let message = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
                Repr::Error { code: ErrorCode::from_u16(packet.error_code()), message }
            }
            Opcode::OptionAck => Repr::OptionAck(Options::parse(&bytes[field::STRINGS], false)?),
        })
    }

    /// Bytes of the packet when emitted.
    pub fn buffer_len(&self) -> usize {
        2 + match self {
            Repr::ReadRequest(r) | Repr::WriteRequest(r) => {
                r.filename.len() + 1 + r.mode.as_str().len() + 1 + r.options.buffer_len()
            }
            Repr::Data { data, .. } => 2 + data.len(),
            Repr::Ack { .. } => 2,
            Repr::Error { message, .. } => 2 + message.len() + 1,
            Repr::OptionAck(options) => options.buffer_len(),
        }
    }

    /// Emit the packet at the start of `buf`; the bytes written. A buffer shorter than
    /// [`Self::buffer_len`], or a filename or message holding a NUL, is an error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer { buf, at: 0 };
        match self {
            Repr::ReadRequest(r) | Repr::WriteRequest(r) => {
                let op = if matches!(self, Repr::ReadRequest(_)) { Opcode::ReadRequest } else { Opcode::WriteRequest };
                w.u16(op as u16)?;
                if r.filename.is_empty() {
                    return Err(Error::Emit);
                }
                w.string(r.filename)?;
                w.string(r.mode.as_str().as_bytes())?;
                r.options.emit(&mut w)?;
            }
            Repr::Data { block, data } => {
                w.u16(Opcode::Data as u16)?;
                w.u16(*block)?;
                w.bytes(data)?;
            }
            Repr::Ack { block } => {
                w.u16(Opcode::Ack as u16)?;
                w.u16(*block)?;
            }
            Repr::Error { code, message } => {
                w.u16(Opcode::Error as u16)?;
                w.u16(code.as_u16())?;
                w.string(message)?;
            }
            Repr::OptionAck(options) => {
                w.u16(Opcode::OptionAck as u16)?;
                options.emit(&mut w)?;
            }
        }
        Ok(w.at)
    }
}

/// Appends to a buffer, refusing to run past its end.
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, data: &[u8]) -> Result<(), Error> {
        let end = self.at.checked_add(data.len()).filter(|&e| e <= self.buf.len()).ok_or(Error::Emit)?;
        self.buf[self.at..end].copy_from_slice(data);
        self.at = end;
        Ok(())
    }

    fn u16(&mut self, value: u16) -> Result<(), Error> {
        self.bytes(&value.to_be_bytes())
    }

    /// A string and its NUL; a string holding a NUL would end early on the other side.
    fn string(&mut self, s: &[u8]) -> Result<(), Error> {
        if s.contains(&0) {
            return Err(Error::Emit);
        }
        self.bytes(s)?;
        self.bytes(&[0])
    }
}
