//! A health dump of bpnet.ko's `agent` reporter, as `devlink -j health dump show DEV reporter agent`
//! prints it: the fault record the module kept (`fault`: seq, vector, srr0, srr1, dar, dsisr,
//! generation, uptime_s) and the log ring's header and undecoded tail (`log_ring`: the ring's 16-byte
//! header, then the bytes before its head, oldest first). `bpctl logs --dump FILE` decodes it with
//! the firmware ELF like a live ring.
//!
//! The file is whatever the operator saved: every number is checked (bytes 0..=255, words 32 bits),
//! the tail is never longer than the ring's capacity says, and nothing sizes anything else.

use bpnet_contract::logring::{self, LogRing, HEADER_LEN, MIN_CAPACITY};
use serde::Serialize;
use serde_json::Value;

use crate::logs::Chunk;
use crate::Error;

/// The fault record of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub seq: u32,
    pub vector: u32,
    pub srr0: u32,
    pub srr1: u32,
    pub dar: u32,
    pub dsisr: u32,
    pub generation: u32,
    pub uptime_s: u32,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fault {}: vector {:#05x} SRR0={:#010x} SRR1={:#010x} DAR={:#010x} DSISR={:#010x} (agent generation {}, after {} s)",
            self.seq, self.vector, self.srr0, self.srr1, self.dar, self.dsisr, self.generation, self.uptime_s
        )
    }
}

/// A parsed dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub fault: Option<Fault>,
    /// The tail as a chunk for [`crate::logs::Framer`]: `lost` is non-zero when it does not start at
    /// the ring's first byte (decoding resynchronises at the next frame).
    pub log: Option<Chunk>,
    /// The ring's head and generation, for the report.
    pub head: u32,
    pub generation: u32,
}

/// The first value under `key` anywhere in `v` (devlink nests the pairs in objects and arrays).
fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(map) => map.get(key).or_else(|| map.values().find_map(|x| find(x, key))),
        Value::Array(items) => items.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// Every number of `v` in order (devlink prints a binary as arrays of byte values, in chunks), each a
/// byte.
fn bytes(v: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| bytes(x, out)),
        Value::Number(n) => {
            let b = n.as_u64().and_then(|b| u8::try_from(b).ok());
            out.push(b.ok_or_else(|| Error::Usage(format!("dump: log_ring holds {n}, not a byte")))?);
            Ok(())
        }
        other => Err(Error::Usage(format!("dump: log_ring holds {other}, not a byte"))),
    }
}

fn word(fault: &Value, key: &str) -> Result<u32, Error> {
    fault
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|w| u32::try_from(w).ok())
        .ok_or_else(|| Error::Usage(format!("dump: fault.{key} missing or not a 32-bit number")))
}

/// Parse the JSON text of a dump.
pub fn parse(text: &str) -> Result<Dump, Error> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        Error::Usage(format!("dump: not devlink's JSON ({e}); save it with devlink -j health dump show"))
    })?;
    let fault = match find(&v, "fault") {
        Some(f) => Some(Fault {
            seq: word(f, "seq")?,
            vector: word(f, "vector")?,
            srr0: word(f, "srr0")?,
            srr1: word(f, "srr1")?,
            dar: word(f, "dar")?,
            dsisr: word(f, "dsisr")?,
            generation: word(f, "generation")?,
            uptime_s: word(f, "uptime_s")?,
        }),
        None => None,
    };
    let Some(ring) = find(&v, "log_ring") else {
        if fault.is_none() {
            return Err(Error::Usage("dump: neither a fault record nor a log ring in it".into()));
        }
        return Ok(Dump { fault, log: None, head: 0, generation: 0 });
    };
    let mut raw = Vec::new();
    bytes(ring, &mut raw)?;
    if raw.len() < HEADER_LEN {
        return Err(Error::Usage(format!("dump: log_ring of {} bytes, shorter than its header", raw.len())));
    }
    let header = LogRing::new_unchecked(&raw[..HEADER_LEN]);
    let (magic, cap, head, generation) = (header.magic(), header.capacity(), header.head(), header.generation());
    if magic != logring::MAGIC || cap < MIN_CAPACITY || !cap.is_power_of_two() {
        return Err(Error::Usage(format!("dump: log ring header refused (magic {magic:#010x}, capacity {cap})")));
    }
    let tail = &raw[HEADER_LEN..];
    if tail.len() as u64 > u64::from(cap) || tail.len() as u64 > u64::from(head) {
        return Err(Error::Usage(format!(
            "dump: {} tail bytes, more than the ring held ({cap}, head {head})",
            tail.len()
        )));
    }
    // The tail ends at head: it starts at the ring's first byte only if it is all of it.
    let lost = u64::from(head) - tail.len() as u64;
    Ok(Dump { fault, log: Some(Chunk { bytes: tail.to_vec(), lost, restarted: false }), head, generation })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(head: u32, tail: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        for w in [logring::MAGIC, 64, head, 3] {
            r.extend_from_slice(&w.to_le_bytes());
        }
        r.extend_from_slice(tail);
        r
    }

    fn json(ring: &[u8]) -> String {
        // devlink's shape: the binary in an array of chunks.
        let fault =
            r#"{"seq":2,"vector":1792,"srr0":1058880,"srr1":167986,"dar":0,"dsisr":0,"generation":4,"uptime_s":7}"#;
        format!(r#"{{"fault":{fault},"log_ring":[{:?}]}}"#, ring)
    }

    #[test]
    fn parses_the_fault_and_the_tail() {
        let d = parse(&json(&ring(5, &[1, 2, 0, 4, 0]))).unwrap();
        let f = d.fault.unwrap();
        assert_eq!((f.seq, f.vector, f.srr0, f.generation), (2, 0x700, 0x0010_2840, 4));
        assert!(f.to_string().contains("vector 0x700 SRR0=0x00102840"), "{f}");
        let log = d.log.unwrap();
        assert_eq!((log.bytes, log.lost, d.head, d.generation), (vec![1, 2, 0, 4, 0], 0, 5, 3));
        // A tail that does not start at the ring's first byte: the rest counts as lost.
        assert_eq!(parse(&json(&ring(100, &[0, 7, 0]))).unwrap().log.unwrap().lost, 97);
    }

    #[test]
    fn refuses_what_the_ring_cannot_have_held() {
        for bad in [
            json(&ring(3, &[1, 2, 0, 4])),             // more than head
            json(&ring(1000, &[0u8; 65])),             // more than the capacity
            json(&ring(5, &[]))[..20].to_string(),     // not JSON
            r#"{"log_ring":[[1,2,300]]}"#.to_string(), // not bytes
            r#"{"log_ring":[[1,2,3]]}"#.to_string(),   // shorter than the header
            r#"{"fault":{"seq":1}}"#.to_string(),      // a fault without its words
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        let mut bad_magic = ring(5, &[0; 5]);
        bad_magic[0] ^= 1;
        assert!(parse(&json(&bad_magic)).is_err());
    }
}
