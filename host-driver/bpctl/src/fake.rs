//! Fake hosts for the tests: a temporary sysfs/procfs tree with the kernel's layout, and shared
//! regions as the firmware writes them (header and counters through the contract's emitters, the log
//! ring through its `LogWriter`).

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use bpnet_contract::bar::field::boot_block;
use bpnet_contract::bar::{self, AgentRepr, AgentState, Counters, Header, Layout, COUNTERS_LEN, HEADER_LEN};
use bpnet_contract::logring::{self, LogRing};
use bpnet_contract::ring::Entries;
use bpnet_contract::{put_le32, shared};

use crate::agents::Paths;

pub struct FakeHost {
    _dir: tempfile::TempDir,
    pub paths: Paths,
}

pub const ARP_HEADER: &str = "IP address       HW type     Flags       HW address            Mask     Device\n";

impl FakeHost {
    pub fn new() -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { sys: dir.path().join("sys"), proc: dir.path().join("proc") };
        for d in ["bus/pci/devices", "bus/pci/drivers/bpnet", "bus/pci/drivers/virtio-pci"] {
            std::fs::create_dir_all(paths.sys.join(d)).unwrap();
        }
        std::fs::create_dir_all(paths.proc.join("net")).unwrap();
        std::fs::write(paths.proc.join("net/arp"), ARP_HEADER).unwrap();
        FakeHost { _dir: dir, paths }
    }

    /// A PCI function; `driver` is the name its `driver` link points at, `netdev` gets a carrier.
    pub fn add_device(&self, pci: &str, ids: (u16, u16), driver: Option<&str>, netdev: Option<&str>) -> PathBuf {
        let dir = self.paths.sys.join("bus/pci/devices").join(pci);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor"), format!("{:#06x}\n", ids.0)).unwrap();
        std::fs::write(dir.join("device"), format!("{:#06x}\n", ids.1)).unwrap();
        if let Some(driver) = driver {
            symlink(self.paths.sys.join("bus/pci/drivers").join(driver), dir.join("driver")).unwrap();
        }
        if let Some(netdev) = netdev {
            let net = dir.join("net").join(netdev);
            std::fs::create_dir_all(net.join("statistics")).unwrap();
            std::fs::write(net.join("carrier"), "1\n").unwrap();
            std::fs::write(net.join("operstate"), "up\n").unwrap();
            std::fs::write(net.join("mtu"), "1500\n").unwrap();
            for (name, v) in [("tx_packets", 10), ("rx_packets", 20), ("tx_bytes", 1000), ("rx_bytes", 2000)] {
                std::fs::write(net.join("statistics").join(name), format!("{v}\n")).unwrap();
            }
        }
        dir
    }

    pub fn write_bar(&self, pci: &str, bar: u8, region: &[u8]) -> PathBuf {
        let path = self.paths.sys.join("bus/pci/devices").join(pci).join(format!("resource{bar}"));
        std::fs::write(&path, region).unwrap();
        path
    }

    pub fn set_arp(&self, lines: &str) {
        std::fs::write(self.paths.proc.join("net/arp"), format!("{ARP_HEADER}{lines}")).unwrap();
    }
}

/// A shared region as a running agent leaves it: header (firmware 1.2.3, RUNNING), counters, and a log
/// ring holding `log` written through `LogWriter` (one publish per chunk).
pub fn region(log: &[&[u8]]) -> Vec<u8> {
    let mut mem = vec![0u8; shared::LEN];
    let agent = AgentRepr {
        features: bar::feature::ALL,
        generation: 4,
        firmware_version: bar::firmware_version(1, 2, 3),
        layout: Layout::DEFAULT,
        mac: [0x06, 0x83, 0x49, 0, 0, 7],
        ring_entries: Entries::new(256).unwrap(),
    };
    let mut header = Header::new_unchecked(&mut mem[..HEADER_LEN]);
    agent.emit(&mut header);
    header.set_agent_state(AgentState::Running);
    let at = Layout::DEFAULT.counters as usize;
    let mut counters = Counters::new_checked(&mut mem[at..at + COUNTERS_LEN]).unwrap();
    counters.add(bar::counter::TX_FRAMES, 111).unwrap();
    counters.add(bar::counter::RX_FRAMES, 222).unwrap();
    counters.add(bar::counter::BAD_DESCRIPTORS, 3).unwrap();
    counters.add(bar::counter::RX_DMA_ERRORS, 2).unwrap();
    counters.add(bar::counter::DOORBELLS, 1000).unwrap();
    // Boot block: started from flash slot B, confirmed, up 42 s, running 1.2.3.
    let boot = &mut mem[shared::BOOT_OFFSET..shared::BOOT_OFFSET + bar::BOOT_BLOCK_LEN];
    let version = bar::firmware_version(1, 2, 3);
    boot[..4].copy_from_slice(&[bar::boot_source::FLASH, 1, bar::boot_flags::TRIAL | bar::boot_flags::CONFIRMED, 0]);
    put_le32(boot, boot_block::UPTIME_S, 42);
    put_le32(boot, boot_block::IMAGE_VERSION, version);
    put_le32(boot, boot_block::SLOT_B_VERSION, version);
    boot[boot_block::SLOT_A_STATE] = 2;
    boot[boot_block::SLOT_B_STATE] = 2;
    let ring = &mut mem[shared::LOG_RING_OFFSET..shared::LOG_RING_OFFSET + shared::LOG_RING_LEN];
    let mut writer = LogRing::init(ring, 9).unwrap();
    let mut head = 0;
    for chunk in log {
        head = writer.write(head, chunk);
        writer.publish(head);
    }
    mem
}

/// Append `bytes` to the ring at `offset` of `mem` and publish them, as the agent's writer does (data
/// first, head last), for tests that move the writer between a reader's accesses.
pub fn append(mem: &mut [u8], offset: usize, bytes: &[u8]) {
    let ring = LogRing::new_unchecked(&mem[offset..offset + logring::HEADER_LEN]);
    let (cap, mut head) = (ring.capacity(), ring.head());
    for &b in bytes {
        mem[offset + logring::HEADER_LEN + (head & (cap - 1)) as usize] = b;
        head = head.wrapping_add(1);
    }
    put_le32(mem, offset + logring::field::HEAD, head);
}
