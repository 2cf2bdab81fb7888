//! What `bpctl list` shows of one agent: the host's view (netdev, carrier, neighbour entry) and the
//! agent's (its BAR header and counters).

use serde::Serialize;
use serde_json::json;

use crate::agents::{self, Agent, Paths};
use crate::boot;
use crate::region::{self, Region};
use crate::Error;

/// What the module reports of an agent (`ethtool -i`, `ethtool -S`): the fallback when its BAR
/// cannot be mapped.
#[derive(Debug, Clone, Default)]
pub struct ModuleView {
    /// The agent's firmware version as the module read it from the header; `None` before that.
    pub firmware_version: Option<String>,
    /// The `agent_*` counters, without the prefix.
    pub counters: Vec<(String, u64)>,
}

/// The module's view of `dev` through the ethtool ioctls.
pub fn module_view(dev: &str) -> Result<ModuleView, Error> {
    let (_, fw) = crate::ethtool::drvinfo(dev)?;
    let counters = crate::ethtool::stats(dev)?
        .into_iter()
        .filter_map(|(n, v)| n.strip_prefix("agent_").map(|n| (n.to_string(), v)))
        .collect();
    Ok(ModuleView { firmware_version: (!fw.is_empty()).then_some(fw), counters })
}

/// Where an entry's firmware version and counters came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The agent's shared region, mapped through its BAR.
    Bar,
    /// The module's ethtool view (the BAR could not be mapped).
    Ethtool,
}

/// One agent in `bpctl list`.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub index: usize,
    pub netdev: Option<String>,
    pub pci: String,
    pub personality: Option<agents::Personality>,
    pub link: Option<agents::Link>,
    /// `major.minor.patch` from the BAR header (or the module's copy of it).
    pub firmware_version: Option<String>,
    /// The header's agent_state (only from the BAR), or `unresponsive` when the module found the
    /// agent's heartbeat stopped (the header still says what it said when the agent stopped).
    pub agent_state: Option<String>,
    /// The module's view of the agent's heartbeat, while it judges one.
    pub heartbeat: Option<agents::Heartbeat>,
    pub source: Option<Source>,
    /// The whole header, when the BAR was read.
    pub header: Option<region::AgentHeader>,
    /// Why the BAR (header, counters) could not be read.
    pub header_error: Option<String>,
    /// The neighbour entry on its netdev; `None` when the host has none.
    pub ip: Option<String>,
    /// Seconds since the agent's program started (boot block).
    pub uptime_s: Option<u64>,
    /// How the agent started, its version and flash slots (boot block), when the region was read.
    pub boot: Option<boot::BootInfo>,
    /// The agent's counters by the contract's names.
    pub counters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `agent` as `bpctl list` shows it: its BAR first; when that cannot be mapped, `module` (normally
/// [`module_view`]) for the firmware version and counters. Fails only when the BAR needs root.
pub fn list_entry(
    paths: &Paths,
    agent: &Agent,
    module: impl Fn(&str) -> Result<ModuleView, Error>,
) -> Result<ListEntry, Error> {
    let mut entry = ListEntry {
        index: agent.index,
        netdev: agent.netdev.clone(),
        pci: agent.pci.clone(),
        personality: agent.personality,
        link: agents::link(agent),
        firmware_version: None,
        agent_state: None,
        heartbeat: agents::heartbeat(agent),
        source: None,
        header: None,
        header_error: None,
        ip: agent.netdev.as_deref().and_then(|d| agents::neighbour(paths, d)).map(|a| a.to_string()),
        uptime_s: None,
        boot: None,
        counters: None,
    };
    let region = agent.shared_resource().and_then(|p| Region::open(&p));
    if let Ok(region) = &region {
        // The boot block is fixed and valid without a header (a boot stage in recovery has none).
        if let (Ok(b), Ok(state)) = (boot::read(region), boot::agent_state(region)) {
            entry.uptime_s = Some(u64::from(b.uptime_s));
            if state == crate::update::STATE_RECOVERY {
                entry.agent_state = Some("recovery".into());
            }
            entry.boot = Some(b);
        }
    }
    let from_bar = region.and_then(|region| {
        let h = region::read_header(&region)?;
        let c = region::read_counters(&region, &h)?;
        Ok((h, c))
    });
    match from_bar {
        Ok((h, c)) => {
            entry.firmware_version = Some(h.firmware_version.clone());
            entry.agent_state = Some(h.agent_state.clone());
            entry.counters = Some(c.into_iter().map(|(n, v)| (n.to_string(), json!(v))).collect());
            entry.header = Some(h);
            entry.source = Some(Source::Bar);
        }
        Err(e @ Error::NotRoot(_)) => return Err(e),
        Err(e) => {
            entry.header_error = Some(e.to_string());
            if let Some(Ok(view)) = agent.netdev.as_deref().map(&module) {
                entry.firmware_version = view.firmware_version;
                entry.counters = Some(view.counters.into_iter().map(|(n, v)| (n, json!(v))).collect());
                entry.source = Some(Source::Ethtool);
            }
        }
    }
    if entry.heartbeat.as_ref().is_some_and(|h| h.unresponsive) {
        entry.agent_state = Some("unresponsive".into());
    }
    Ok(entry)
}

/// The agent's error counters summed: DMA errors and refusals.
pub fn agent_errors(counters: &serde_json::Map<String, serde_json::Value>) -> u64 {
    counters.iter().filter(|(n, _)| n.contains("errors") || n.starts_with("bad_")).filter_map(|(_, v)| v.as_u64()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, FakeHost};

    fn no_module(_: &str) -> Result<ModuleView, Error> {
        Err(Error::Agent("no module in a fake tree".into()))
    }

    /// A BAR the kernel will not map: the module's view stands in, and says so.
    #[test]
    fn without_the_bar_the_modules_view_is_shown() {
        let host = FakeHost::new();
        host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        let found = agents::discover(&host.paths).unwrap();
        let module = |dev: &str| {
            assert_eq!(dev, "bp0");
            Ok(ModuleView {
                firmware_version: Some("0.1.0".into()),
                counters: vec![("tx_frames".into(), 5), ("bad_indexes".into(), 1)],
            })
        };
        let e = list_entry(&host.paths, &found[0], module).unwrap();
        assert_eq!((e.firmware_version.as_deref(), e.agent_state.as_deref()), (Some("0.1.0"), None));
        assert_eq!(e.source, Some(Source::Ethtool));
        assert_eq!(agent_errors(e.counters.as_ref().unwrap()), 1);
        assert!(e.header_error.is_some());
    }

    #[test]
    fn an_agent_as_list_shows_it() {
        let host = FakeHost::new();
        host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        host.write_bar("0000:00:10.0", 2, &fake::region(&[]));
        host.set_arp("10.83.49.2       0x1         0x2         02:83:49:00:00:01     *        bp0\n");
        let found = agents::discover(&host.paths).unwrap();
        let e = list_entry(&host.paths, &found[0], no_module).unwrap();
        assert_eq!((e.firmware_version.as_deref(), e.agent_state.as_deref()), (Some("1.2.3"), Some("running")));
        assert_eq!(e.source, Some(Source::Bar));
        let h = e.header.as_ref().unwrap();
        assert_eq!((h.firmware_version.as_str(), h.agent_state.as_str()), ("1.2.3", "running"));
        assert_eq!((h.agent_generation, h.ring_entries, h.mac.as_str()), (4, 256, "06:83:49:00:00:07"));
        assert_eq!(e.ip.as_deref(), Some("10.83.49.2"));
        assert_eq!(e.uptime_s, Some(42));
        let b = e.boot.as_ref().unwrap();
        assert_eq!(
            (b.source.as_str(), b.slot.as_str(), b.confirmed, b.version.as_deref()),
            ("flash", "B", true, Some("1.2.3"))
        );
        let c = e.counters.as_ref().unwrap();
        assert_eq!((c["tx_frames"].as_u64(), c["rx_frames"].as_u64()), (Some(111), Some(222)));
        // bad_descriptors 3 + rx_dma_errors 2; doorbells are not errors.
        assert_eq!(agent_errors(c), 5);
        assert_eq!(e.header_error, None);
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["header"]["firmware_version"], "1.2.3");
        assert_eq!(v["link"]["carrier"], true);
        assert_eq!(v["personality"], "ivshmem");
    }

    #[test]
    fn a_bad_or_missing_bar_is_reported_not_fatal() {
        let host = FakeHost::new();
        host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        host.add_device("0000:00:11.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp1"));
        host.add_device("0000:00:12.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp2"));
        // An agent still booting: nothing in its header yet.
        host.write_bar("0000:00:10.0", 2, &vec![0u8; bpnet_contract::shared::LEN]);
        // A BAR too small to be bpnet's.
        host.write_bar("0000:00:11.0", 2, &[0u8; 4096]);
        let found = agents::discover(&host.paths).unwrap();
        let e = list_entry(&host.paths, &found[0], no_module).unwrap();
        assert!(e.header.is_none() && e.counters.is_none() && e.source.is_none());
        assert!(e.header_error.as_deref().unwrap().contains("magic 0x00000000"), "{:?}", e.header_error);
        let e = list_entry(&host.paths, &found[1], no_module).unwrap();
        assert!(e.header_error.as_deref().unwrap().contains("4096 bytes"), "{:?}", e.header_error);
        let e = list_entry(&host.paths, &found[2], no_module).unwrap();
        assert!(e.header_error.as_deref().unwrap().contains("resource2"), "{:?}", e.header_error);
    }

    /// An agent whose heartbeat stopped: its header still says running, the module says otherwise.
    #[test]
    fn a_stopped_heartbeat_shows_unresponsive() {
        let host = FakeHost::new();
        let dir = host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        host.add_device("0000:00:11.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp1"));
        host.write_bar("0000:00:10.0", 2, &fake::region(&[]));
        host.write_bar("0000:00:11.0", 2, &fake::region(&[]));
        std::fs::write(dir.join("bpnet_heartbeat"), "unresponsive 7 42\n").unwrap();
        let found = agents::discover(&host.paths).unwrap();
        let e = list_entry(&host.paths, &found[0], no_module).unwrap();
        assert_eq!(e.agent_state.as_deref(), Some("unresponsive"));
        assert_eq!(e.heartbeat, Some(agents::Heartbeat { unresponsive: true, since_beat_s: 7, beat: 42 }));
        let e = list_entry(&host.paths, &found[1], no_module).unwrap();
        assert_eq!((e.agent_state.as_deref(), e.heartbeat), (Some("running"), None), "no file: no judgement");
        assert_eq!(agents::parse_heartbeat("alive 0 9").map(|h| h.unresponsive), Some(false));
        assert_eq!(agents::parse_heartbeat("unknown"), None);
    }
}
