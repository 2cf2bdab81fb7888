//! Finding the agents and what the host knows about them: every PCI function bound to the `bpnet`
//! driver, sorted by PCI address (so agent `0` is the lowest slot, as `bp0` is in probe order), its
//! netdev, link and neighbour entry. Everything is read below a configurable sysfs and procfs root so
//! the tests can build a fake tree.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Error;

/// Where sysfs and procfs are: `/sys` and `/proc`, or a test's temporary tree of the same layout.
#[derive(Debug, Clone)]
pub struct Paths {
    pub sys: PathBuf,
    pub proc: PathBuf,
}

impl Paths {
    pub fn system() -> Paths {
        Paths { sys: PathBuf::from("/sys"), proc: PathBuf::from("/proc") }
    }
}

/// The bus personality, from the PCI IDs (the module's `bpnet_pci_ids`): it says which BAR is the
/// shared region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Personality {
    /// ivshmem-doorbell (1af4:1110), the virtual backplane: BAR2.
    Ivshmem,
    /// MPC834x in PCI agent mode (1957:0080..0087): BAR1 is inbound window 0, the shared region.
    Mpc834x,
}

impl Personality {
    pub fn from_ids(vendor: u16, device: u16) -> Option<Personality> {
        match (vendor, device) {
            (0x1af4, 0x1110) => Some(Personality::Ivshmem),
            (0x1957, 0x0080..=0x0087) => Some(Personality::Mpc834x),
            _ => None,
        }
    }

    /// The name the module gives it (`ethtool -i`'s version field) and `list --json` prints.
    pub fn name(self) -> &'static str {
        match self {
            Personality::Ivshmem => "ivshmem",
            Personality::Mpc834x => "mpc834x",
        }
    }

    /// The BAR holding the shared region.
    pub fn shared_bar(self) -> u8 {
        match self {
            Personality::Ivshmem => 2,
            Personality::Mpc834x => 1,
        }
    }
}

/// One agent as the host sees it.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Position in PCI address order.
    pub index: usize,
    /// PCI address, `0000:00:10.0`.
    pub pci: String,
    pub personality: Option<Personality>,
    /// `bp0`, … (none while the module is probing or after a failed probe).
    pub netdev: Option<String>,
    /// The device's sysfs directory.
    pub dir: PathBuf,
}

impl Agent {
    /// The name shown first: the netdev, or the PCI address when there is none.
    pub fn name(&self) -> &str {
        self.netdev.as_deref().unwrap_or(&self.pci)
    }

    /// The sysfs file that maps the shared region.
    pub fn shared_resource(&self) -> Result<PathBuf, Error> {
        let p = self.personality.ok_or_else(|| {
            Error::Agent(format!("{}: PCI IDs bpctl does not know: no shared region to map", self.pci))
        })?;
        // The module's own read-only file first: it needs no mapping of a BAR the driver holds,
        // which Debian's kernel refuses user space (CONFIG_IO_STRICT_DEVMEM).
        let file = self.dir.join(crate::region::MODULE_FILE);
        if file.exists() {
            return Ok(file);
        }
        Ok(self.dir.join(format!("resource{}", p.shared_bar())))
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_hex_u16(path: &Path) -> Option<u16> {
    let text = read_trimmed(path)?;
    u16::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// Every function bound to `bpnet`, sorted by PCI address.
pub fn discover(paths: &Paths) -> Result<Vec<Agent>, Error> {
    let devices = paths.sys.join("bus/pci/devices");
    let entries = std::fs::read_dir(&devices).map_err(|e| Error::Io(format!("reading {}", devices.display()), e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let pci = entry.file_name().to_string_lossy().into_owned();
        let dir = devices.join(&pci);
        let driver = std::fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if driver.as_deref() != Some("bpnet") {
            continue;
        }
        let personality = match (read_hex_u16(&dir.join("vendor")), read_hex_u16(&dir.join("device"))) {
            (Some(v), Some(d)) => Personality::from_ids(v, d),
            _ => None,
        };
        let mut netdevs: Vec<String> = std::fs::read_dir(dir.join("net"))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        netdevs.sort();
        found.push(Agent { index: 0, pci, personality, netdev: netdevs.into_iter().next(), dir });
    }
    // Fixed-width hexadecimal domain:bus:device.function sorts as text.
    found.sort_by(|a, b| a.pci.cmp(&b.pci));
    for (i, a) in found.iter_mut().enumerate() {
        a.index = i;
    }
    Ok(found)
}

/// The agents named: `all`, a netdev (`bp0`), a PCI address (`0000:00:10.0`, or `00:10.0` in domain
/// 0) or an index (`0`). Each agent once, in the order named.
pub fn select<'a>(agents: &'a [Agent], names: &[String]) -> Result<Vec<&'a Agent>, Error> {
    if agents.is_empty() {
        return Err(Error::NoAgents);
    }
    let mut chosen: Vec<&Agent> = Vec::new();
    for name in names {
        let matched: Vec<&Agent> = if name == "all" {
            agents.iter().collect()
        } else {
            let by = |a: &&Agent| {
                a.netdev.as_deref() == Some(name.as_str())
                    || a.pci.eq_ignore_ascii_case(name)
                    || a.pci.eq_ignore_ascii_case(&format!("0000:{name}"))
                    || name.parse::<usize>().is_ok_and(|i| i == a.index)
            };
            agents.iter().filter(by).collect()
        };
        if matched.is_empty() {
            let known: Vec<String> = agents.iter().map(|a| format!("{} ({}, {})", a.index, a.name(), a.pci)).collect();
            return Err(Error::Usage(format!("no agent `{name}`; the agents are: {}", known.join(", "))));
        }
        for a in matched {
            if !chosen.iter().any(|c| c.pci == a.pci) {
                chosen.push(a);
            }
        }
    }
    Ok(chosen)
}

/// The link as the host's netdev shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// `carrier` = 1; an interface that is administratively down reads as no carrier.
    pub carrier: bool,
    /// `operstate`: up, down, lowerlayerdown, …
    pub operstate: String,
    pub mtu: Option<u32>,
    /// The netdev's counters (`statistics/`): frames and bytes as the kernel counted them.
    pub tx_packets: Option<u64>,
    pub rx_packets: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub rx_bytes: Option<u64>,
}

/// The module's view of the agent's heartbeat (`bpnet_heartbeat` on the PCI device): whether it still
/// beats, and the seconds since the beat last moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    pub unresponsive: bool,
    pub since_beat_s: u64,
    pub beat: u32,
}

/// `None` when the module judges no heartbeat (link not up, an agent without one) or is too old to say.
pub fn heartbeat(agent: &Agent) -> Option<Heartbeat> {
    parse_heartbeat(&read_trimmed(&agent.dir.join("bpnet_heartbeat"))?)
}

/// Why the agent behind netdev `dev` will not answer, when the module found its heartbeat stopped
/// (`/sys/class/net/DEV/device/bpnet_heartbeat`): a command says so at once rather than wait for a
/// connection that cannot come.
pub fn unresponsive(dev: &str) -> Option<String> {
    let path = Path::new("/sys/class/net").join(dev).join("device/bpnet_heartbeat");
    let h = parse_heartbeat(&read_trimmed(&path)?)?;
    h.unresponsive.then(|| {
        format!(
            "{dev}: the agent does not respond: no heartbeat for {} s (beat {} unchanged; its processor stopped: \
             frozen, hung or powered off?)",
            h.since_beat_s, h.beat
        )
    })
}

/// `alive|unresponsive <seconds since the beat moved> <beat>`, or `unknown`.
pub fn parse_heartbeat(text: &str) -> Option<Heartbeat> {
    let mut words = text.split_whitespace();
    let unresponsive = match words.next()? {
        "alive" => false,
        "unresponsive" => true,
        _ => return None,
    };
    let since_beat_s = words.next()?.parse().ok()?;
    let beat = words.next()?.parse().ok()?;
    Some(Heartbeat { unresponsive, since_beat_s, beat })
}

pub fn link(agent: &Agent) -> Option<Link> {
    let dev = agent.dir.join("net").join(agent.netdev.as_ref()?);
    let stat = |name: &str| read_trimmed(&dev.join("statistics").join(name)).and_then(|s| s.parse().ok());
    Some(Link {
        // Reading `carrier` of an interface that is down fails (EINVAL): no carrier.
        carrier: read_trimmed(&dev.join("carrier")).as_deref() == Some("1"),
        operstate: read_trimmed(&dev.join("operstate")).unwrap_or_else(|| "unknown".to_string()),
        mtu: read_trimmed(&dev.join("mtu")).and_then(|s| s.parse().ok()),
        tx_packets: stat("tx_packets"),
        rx_packets: stat("rx_packets"),
        tx_bytes: stat("tx_bytes"),
        rx_bytes: stat("rx_bytes"),
    })
}

/// The agent's IPv4 address as the host learnt it: a complete neighbour entry on its netdev in
/// `/proc/net/arp`. The agent's address plan (its slot) is not visible to the host, so there is no
/// guess when the table has none.
pub fn neighbour(paths: &Paths, netdev: &str) -> Option<std::net::Ipv4Addr> {
    let text = std::fs::read_to_string(paths.proc.join("net/arp")).ok()?;
    parse_arp(&text, netdev)
}

/// ATF_COM: the entry is complete (the address answered).
const ATF_COM: u32 = 0x2;

/// The first complete entry for `netdev` in `/proc/net/arp`'s text.
pub fn parse_arp(text: &str, netdev: &str) -> Option<std::net::Ipv4Addr> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != netdev {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        if flags & ATF_COM == 0 {
            return None;
        }
        f[0].parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    #[test]
    fn a_personality_has_one_name_in_the_table_and_the_json() {
        for (ids, name) in [((0x1af4, 0x1110), "ivshmem"), ((0x1957, 0x0080), "mpc834x"), ((0x1957, 0x0086), "mpc834x")]
        {
            let p = Personality::from_ids(ids.0, ids.1).unwrap();
            assert_eq!(p.name(), name);
            assert_eq!(serde_json::to_value(p).unwrap(), name);
        }
        assert_eq!(Personality::from_ids(0x1957, 0x0088), None);
    }

    fn host() -> FakeHost {
        let host = FakeHost::new();
        // Created out of order: discovery sorts by address.
        host.add_device("0000:00:11.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp1"));
        host.add_device("0000:00:10.0", (0x1af4, 0x1110), Some("bpnet"), Some("bp0"));
        host.add_device("0000:02:00.0", (0x1957, 0x0086), Some("bpnet"), Some("bp2"));
        // Not agents: another driver's device, and an ivshmem device bound to nothing.
        host.add_device("0000:00:03.0", (0x1af4, 0x1000), Some("virtio-pci"), Some("eth0"));
        host.add_device("0000:00:12.0", (0x1af4, 0x1110), None, None);
        host
    }

    #[test]
    fn discovers_bound_functions_in_address_order() {
        let host = host();
        let found = discover(&host.paths).unwrap();
        let summary: Vec<(usize, &str, Option<&str>, Option<Personality>)> =
            found.iter().map(|a| (a.index, a.pci.as_str(), a.netdev.as_deref(), a.personality)).collect();
        assert_eq!(
            summary,
            [
                (0, "0000:00:10.0", Some("bp0"), Some(Personality::Ivshmem)),
                (1, "0000:00:11.0", Some("bp1"), Some(Personality::Ivshmem)),
                (2, "0000:02:00.0", Some("bp2"), Some(Personality::Mpc834x)),
            ]
        );
        assert!(found[0].shared_resource().unwrap().ends_with("0000:00:10.0/resource2"));
        assert!(found[2].shared_resource().unwrap().ends_with("0000:02:00.0/resource1"));
    }

    #[test]
    fn no_tree_and_no_agents_are_errors() {
        let host = FakeHost::new();
        assert!(discover(&host.paths).unwrap().is_empty());
        assert!(matches!(select(&[], &["all".to_string()]), Err(Error::NoAgents)));
        let missing = Paths { sys: PathBuf::from("/nonexistent/sys"), proc: PathBuf::from("/nonexistent/proc") };
        assert!(matches!(discover(&missing), Err(Error::Io(..))));
    }

    #[test]
    fn agents_are_named_by_netdev_address_index_or_all() {
        let host = host();
        let found = discover(&host.paths).unwrap();
        let pick = |names: &[&str]| -> Vec<String> {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            select(&found, &names).unwrap().iter().map(|a| a.pci.clone()).collect()
        };
        assert_eq!(pick(&["bp1"]), ["0000:00:11.0"]);
        assert_eq!(pick(&["0000:02:00.0"]), ["0000:02:00.0"]);
        assert_eq!(pick(&["00:10.0"]), ["0000:00:10.0"]);
        assert_eq!(pick(&["2", "bp0"]), ["0000:02:00.0", "0000:00:10.0"]);
        // Each agent once.
        assert_eq!(pick(&["bp0", "0", "all"]), ["0000:00:10.0", "0000:00:11.0", "0000:02:00.0"]);
        let e = select(&found, &["bp7".to_string()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no agent `bp7`") && e.to_string().contains("1 (bp1, 0000:00:11.0)"), "{e}");
        assert!(select(&found, &["3".to_string()]).is_err());
    }

    #[test]
    fn link_follows_carrier_and_statistics() {
        let host = host();
        let found = discover(&host.paths).unwrap();
        let l = link(&found[0]).unwrap();
        assert!(l.carrier);
        assert_eq!((l.operstate.as_str(), l.mtu, l.tx_packets, l.rx_bytes), ("up", Some(1500), Some(10), Some(2000)));
        // An interface that is down has no readable carrier.
        let net = found[1].dir.join("net/bp1");
        std::fs::remove_file(net.join("carrier")).unwrap();
        std::fs::write(net.join("operstate"), "down\n").unwrap();
        let l = link(&found[1]).unwrap();
        assert!(!l.carrier);
        assert_eq!(l.operstate, "down");
    }

    #[test]
    fn neighbour_is_a_complete_entry_on_the_agents_netdev() {
        let host = host();
        assert_eq!(neighbour(&host.paths, "bp0"), None);
        host.set_arp(
            "10.83.49.2       0x1         0x0         00:00:00:00:00:00     *        bp0\n\
             10.0.2.2         0x1         0x2         52:55:0a:00:02:02     *        eth0\n\
             10.83.49.2       0x1         0x2         02:83:49:00:00:01     *        bp1\n",
        );
        // bp0's entry is incomplete (flags 0: it never answered): no address rather than a guess.
        assert_eq!(neighbour(&host.paths, "bp0"), None);
        assert_eq!(neighbour(&host.paths, "bp1"), Some(Ipv4Addr::new(10, 83, 49, 2)));
        assert_eq!(parse_arp("garbage\nx y z\n", "bp1"), None);
    }

    use std::net::Ipv4Addr;
}
