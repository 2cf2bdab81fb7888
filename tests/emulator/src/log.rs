//! The firmware's defmt log, read from its log ring in RAM (layout and reader in `bpnet_contract::logring`)
//! and decoded with the ELF's defmt table.
//!
//! Bytes arrive in arbitrary chunks; only complete rzCOBS frames (up to a 0x00) are handed to the defmt
//! stream decoder, which is created per batch because it borrows the table. After lost bytes or a ring
//! restart the partial frame is dropped and decoding resumes after the next 0x00, where rzCOBS resyncs.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bpnet_contract::logring::{LogReader, HEADER_LEN, MIN_CAPACITY};
use defmt_decoder::{DecodeError, Table};

/// A partial frame longer than this is garbage (no frame separator for 64 KiB): drop it.
const MAX_PENDING: usize = 64 * 1024;

pub struct LogDecoder {
    table: Table,
    ring: u32,
    reader: LogReader,
    pending: Vec<u8>,
    /// Skip bytes up to and including the next 0x00 before decoding again.
    resync: bool,
    /// Last complaint about the ring header, so it is reported once, not every slice.
    last_error: Option<String>,
}

impl LogDecoder {
    pub fn new(table: Table, ring: u32) -> LogDecoder {
        LogDecoder { table, ring, reader: LogReader::new(), pending: Vec::new(), resync: false, last_error: None }
    }

    /// After a board reset: a frame cut short by the reset will never be finished. The reader keeps its
    /// position; the firmware re-initialising the ring (new generation) is noticed as a restart.
    pub fn after_board_reset(&mut self) {
        self.pending.clear();
    }

    /// Read what the firmware published since the last poll; returns the output lines.
    /// `read` copies guest RAM (`None` when the range is outside RAM).
    pub fn poll(&mut self, read: impl Fn(u32, usize) -> Option<Vec<u8>>) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(header) = read(self.ring, HEADER_LEN) else {
            self.complain(&mut lines, "log ring symbol points outside RAM".to_string());
            return lines;
        };
        // Before the firmware initialises the ring it holds no magic: not an error, just nothing yet.
        if header[..4] != *b"BPLG" {
            return lines;
        }
        let capacity = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if capacity < MIN_CAPACITY || !capacity.is_power_of_two() {
            self.complain(&mut lines, format!("log ring capacity {capacity} is not a power of two >= {MIN_CAPACITY}"));
            return lines;
        }
        let Some(snapshot) = read(self.ring, HEADER_LEN + capacity as usize) else {
            self.complain(&mut lines, format!("log ring of {capacity} bytes does not fit in RAM"));
            return lines;
        };
        let mut fresh = Vec::new();
        let polled = match self.reader.poll(&snapshot, |bytes| fresh.extend_from_slice(bytes)) {
            Ok(p) => p,
            Err(e) => {
                self.complain(&mut lines, e.to_string());
                return lines;
            }
        };
        self.last_error = None;
        if polled.restarted {
            lines.push("log: (the firmware re-initialised the log ring)".to_string());
            self.pending.clear();
            self.resync = false;
        }
        if polled.lost > 0 {
            lines.push(format!(
                "log: ({} bytes lost: the ring overran; resynchronising at the next frame)",
                polled.lost
            ));
            self.pending.clear();
            self.resync = true;
        }
        let mut fresh = &fresh[..];
        if self.resync {
            match fresh.iter().position(|&b| b == 0) {
                Some(zero) => {
                    fresh = &fresh[zero + 1..];
                    self.resync = false;
                }
                None => return lines,
            }
        }
        self.pending.extend_from_slice(fresh);
        self.decode_complete_frames(&mut lines);
        if self.pending.len() > MAX_PENDING {
            lines.push(format!("log: ({} bytes without a frame end dropped)", self.pending.len()));
            self.pending.clear();
            self.resync = true;
        }
        lines
    }

    fn complain(&mut self, lines: &mut Vec<String>, why: String) {
        if self.last_error.as_ref() != Some(&why) {
            lines.push(format!("log: (log ring unusable: {why})"));
            self.last_error = Some(why);
        }
    }

    fn decode_complete_frames(&mut self, lines: &mut Vec<String>) {
        let Some(last_zero) = self.pending.iter().rposition(|&b| b == 0) else {
            return;
        };
        let frames: Vec<u8> = self.pending.drain(..=last_zero).collect();
        let table = &self.table;
        // The decoder and the frame formatter are third-party code fed with bytes the firmware wrote; a
        // panic in them must not take the emulator down.
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            let mut out = Vec::new();
            let mut decoder = table.new_stream_decoder();
            decoder.received(&frames);
            loop {
                match decoder.decode() {
                    Ok(frame) => {
                        let mut line = String::from("log:");
                        if let Some(ts) = frame.display_timestamp() {
                            line.push_str(&format!(" {ts}"));
                        }
                        if let Some(level) = frame.level() {
                            line.push_str(&format!(" {}", level.as_str().to_uppercase()));
                        }
                        line.push_str(&format!(" {}", frame.display_message()));
                        out.push(line);
                    }
                    Err(DecodeError::UnexpectedEof) => break,
                    Err(DecodeError::Malformed) => out.push("log: (malformed frame skipped)".to_string()),
                }
            }
            out
        }));
        match decoded {
            Ok(out) => lines.extend(out),
            Err(_) => lines.push("log: (the defmt decoder failed on these frames; skipped)".to_string()),
        }
    }
}
