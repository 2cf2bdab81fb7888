//! The agent's shared region, read through the module's `bpnet_shared` file on the PCI device (plain
//! reads; the module reads the BAR word by word), or else by mapping the BAR's sysfs `resourceN` file
//! (a memory BAR's file can only be mapped, not read). Read-only: bpctl never writes to the agent.
//!
//! Reads are 32-bit volatile loads at 4-byte aligned offsets: the agent changes this memory while
//! it is read, the compiler must not merge or repeat the loads, and a real PCI BAR is best read in
//! whole words. Every value read is the agent's and is checked by the contract's parsers before use.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use bpnet_contract::bar::{AgentRepr, AgentState, Counters, Header, COUNTERS, COUNTERS_LEN, HEADER_LEN};
use bpnet_contract::shared;
use memmap2::{Mmap, MmapOptions};
use serde::Serialize;

use crate::Error;

/// The file `bpnet.ko` gives every agent's PCI device: the shared region, read-only.
pub const MODULE_FILE: &str = "bpnet_shared";

/// The first [`shared::LEN`] bytes of an agent's shared region, read-only.
pub struct Region {
    backing: Backing,
    path: PathBuf,
}

enum Backing {
    /// The module's file: positioned reads.
    File(File),
    /// A BAR's `resourceN` mapped.
    Map(Mmap),
}

impl Region {
    /// Map `path` (a sysfs `resourceN`, or a file of the same layout in tests).
    pub fn open(path: &Path) -> Result<Region, Error> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::NotRoot(path.to_path_buf()),
            _ => Error::Io(format!("opening {}", path.display()), e),
        })?;
        let len = file.metadata().map_err(|e| Error::Io(format!("reading the size of {}", path.display()), e))?.len();
        if len < shared::LEN as u64 {
            return Err(Error::Agent(format!(
                "{}: {len} bytes, the shared region needs {} (not a bpnet BAR?)",
                path.display(),
                shared::LEN
            )));
        }
        if path.file_name().is_some_and(|n| n == MODULE_FILE) {
            return Ok(Region { backing: Backing::File(file), path: path.to_path_buf() });
        }
        // SAFETY: a read-only shared mapping of `shared::LEN` bytes, no more than the file holds. The
        // agent changes the memory behind it at any time: it is only ever read through `read`'s
        // volatile word loads, never as a Rust slice, so no reference to changing memory exists.
        let map = unsafe { MmapOptions::new().len(shared::LEN).map(&file) }.map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                Error::Agent(format!(
                    "{}: the kernel refuses to map this BAR while bpnet.ko holds it (CONFIG_IO_STRICT_DEVMEM): \
                     boot the host with `iomem=relaxed` to read the agents' shared regions",
                    path.display()
                ))
            } else {
                Error::Io(format!("mapping {}", path.display()), e)
            }
        })?;
        Ok(Region { backing: Backing::Map(map), path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copy `buf.len()` bytes from `offset`; both multiples of 4, the range inside the region.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let end = offset.checked_add(buf.len()).filter(|&e| e <= shared::LEN);
        if end.is_none() || !offset.is_multiple_of(4) || !buf.len().is_multiple_of(4) {
            return Err(Error::Agent(format!(
                "{}: read of {} bytes at {offset:#x} outside the region or unaligned",
                self.path.display(),
                buf.len()
            )));
        }
        let map = match &self.backing {
            Backing::File(file) => {
                return file
                    .read_exact_at(buf, offset as u64)
                    .map_err(|e| Error::Io(format!("reading {}", self.path.display()), e));
            }
            Backing::Map(map) => map,
        };
        let base = map.as_ptr();
        for (i, word) in buf.chunks_exact_mut(4).enumerate() {
            // SAFETY: `offset + 4 * i + 4 <= map.len()` (checked above), the mapping is page-aligned
            // and `offset` a multiple of 4, so the load is in bounds and aligned; the mapping lives as
            // long as `self`.
            let value = unsafe { std::ptr::read_volatile(base.add(offset + 4 * i).cast::<u32>()) };
            word.copy_from_slice(&value.to_ne_bytes());
        }
        // Later reads (a ring's head after its data) are not moved before these.
        fence(Ordering::SeqCst);
        Ok(())
    }

    pub fn read_vec(&self, offset: usize, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; len];
        self.read(offset, &mut buf)?;
        Ok(buf)
    }
}

/// What the BAR header says about the agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentHeader {
    /// `major.minor.patch`.
    pub firmware_version: String,
    /// The header's raw state byte, named: reset, ready, running, broken (or `undefined N`).
    pub agent_state: String,
    pub agent_generation: u32,
    pub agent_features: u32,
    /// The MAC the agent gave the host's interface.
    pub mac: String,
    pub ring_entries: u32,
    pub log_ring_offset: u32,
    pub counters_offset: u32,
}

pub fn firmware_version_text(v: u32) -> String {
    format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}

pub fn state_text(state: Result<AgentState, bpnet_contract::Error>) -> String {
    match state {
        Ok(AgentState::Reset) => "reset".to_string(),
        Ok(AgentState::Ready) => "ready".to_string(),
        Ok(AgentState::Running) => "running".to_string(),
        Ok(AgentState::Broken) => "broken".to_string(),
        Ok(AgentState::Recovery) => "recovery".to_string(),
        Err(bpnet_contract::Error::BadState(s)) => format!("undefined {s}"),
        Err(e) => e.to_string(),
    }
}

/// The header, read once and checked as the module checks it (`AgentRepr::parse`).
pub fn read_header(region: &Region) -> Result<AgentHeader, Error> {
    let bytes = region.read_vec(shared::HEADER_OFFSET, HEADER_LEN)?;
    parse_header(&bytes).map_err(|e| Error::Agent(format!("{}: header refused: {e}", region.path().display())))
}

pub fn parse_header(bytes: &[u8]) -> Result<AgentHeader, bpnet_contract::Error> {
    let header = Header::new_checked(bytes)?;
    let repr = AgentRepr::parse(&header)?;
    let m = repr.mac;
    Ok(AgentHeader {
        firmware_version: firmware_version_text(repr.firmware_version),
        agent_state: state_text(header.agent_state()),
        agent_generation: repr.generation,
        agent_features: repr.features,
        mac: format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]),
        ring_entries: repr.ring_entries.get(),
        log_ring_offset: repr.layout.log_ring,
        counters_offset: repr.layout.counters,
    })
}

/// The agent's counters (the contract's named slots), read at the header's `counters_offset`.
pub fn read_counters(region: &Region, header: &AgentHeader) -> Result<Vec<(&'static str, u32)>, Error> {
    let bytes = region.read_vec(header.counters_offset as usize, COUNTERS_LEN)?;
    let counters = Counters::new_checked(&bytes[..]).map_err(|e| Error::Agent(e.to_string()))?;
    COUNTERS
        .iter()
        .map(|&(name, slot)| counters.get(slot).map(|v| (name, v)).map_err(|e| Error::Agent(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, FakeHost};

    #[test]
    fn reads_are_whole_words_inside_the_region() {
        let host = FakeHost::new();
        host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        let path = host.write_bar("0000:00:10.0", 2, &fake::region(&[]));
        let region = Region::open(&path).unwrap();
        assert_eq!(
            region.read_vec(0, 8).unwrap(),
            [b'B', b'P', b'N', b'T', 1, 0, bpnet_contract::bar::VERSION_MINOR as u8, 0]
        );
        assert!(region.read_vec(2, 4).is_err());
        assert!(region.read_vec(0, 6).is_err());
        assert!(region.read_vec(shared::LEN - 4, 8).is_err());
        assert!(region.read_vec(usize::MAX - 3, 4).is_err());
        assert_eq!(region.read_vec(shared::LEN - 4, 4).unwrap(), [0; 4]);
    }

    #[test]
    fn header_states_and_versions_are_named() {
        let mut mem = fake::region(&[]);
        let state = shared::HEADER_OFFSET + bpnet_contract::bar::field::header::AGENT_STATE;
        mem[state] = 3;
        assert_eq!(parse_header(&mem[..64]).unwrap().agent_state, "broken");
        mem[state] = 9;
        assert_eq!(parse_header(&mem[..64]).unwrap().agent_state, "undefined 9");
        // A major version the host does not speak is refused, like the module refuses it.
        mem[bpnet_contract::bar::field::header::VERSION_MAJOR] = 2;
        assert!(parse_header(&mem[..64]).is_err());
        assert!(parse_header(&mem[..63]).is_err());
        assert_eq!(firmware_version_text(0x0001_0203), "1.2.3");
    }

    #[test]
    fn the_module_file_is_read_and_preferred() {
        let host = FakeHost::new();
        let dir = host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        host.write_bar("0000:00:10.0", 2, &fake::region(&[]));
        let file = dir.join(MODULE_FILE);
        std::fs::write(&file, fake::region(&[])).unwrap();
        let agents = crate::agents::discover(&host.paths).unwrap();
        assert_eq!(agents[0].shared_resource().unwrap(), file);
        let region = Region::open(&file).unwrap();
        assert!(matches!(region.backing, Backing::File(_)));
        assert_eq!(
            region.read_vec(0, 8).unwrap(),
            [b'B', b'P', b'N', b'T', 1, 0, bpnet_contract::bar::VERSION_MINOR as u8, 0]
        );
        assert!(region.read_vec(shared::LEN - 4, 8).is_err());
    }

    #[test]
    fn missing_bar_file_is_an_io_error() {
        assert!(matches!(Region::open(Path::new("/nonexistent/resource2")), Err(Error::Io(..))));
    }
}
