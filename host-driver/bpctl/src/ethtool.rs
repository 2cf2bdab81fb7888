//! The module's `ethtool -S` counters through the SIOCETHTOOL ioctl (ETHTOOL_GDRVINFO for the count,
//! ETHTOOL_GSTRINGS for the names, ETHTOOL_GSTATS for the values): the doorbells and interrupts the
//! module counts are only there.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::Error;

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// `struct ethtool_drvinfo`: 196 bytes, `n_stats` at 180.
const DRVINFO_LEN: usize = 196;
const DRVINFO_N_STATS: usize = 180;
/// Refuse a driver claiming more counters than this (the replies are sized from its claim).
const MAX_STATS: usize = 4096;

/// SIOCETHTOOL on `dev` with `buf` (its first word is the command).
fn ioctl(dev: &str, buf: &mut [u8]) -> Result<(), Error> {
    if dev.is_empty() || dev.len() >= libc::IFNAMSIZ {
        return Err(Error::Agent(format!("{dev}: not an interface name")));
    }
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::Io("socket for SIOCETHTOOL".into(), std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor owned by nothing else, closed when this value drops.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeros is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(dev.as_bytes()) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: `ifr` names the device (NUL-terminated: shorter than IFNAMSIZ, zeroed) and points at
    // `buf`, which is as long as the command's reply (sized from the driver's own count) and outlives
    // the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            return Err(Error::Agent(format!("SIOCETHTOOL on {dev}: {e} (run as root)")));
        }
        return Err(Error::Io(format!("SIOCETHTOOL on {dev}"), e));
    }
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `struct ethtool_drvinfo`'s strings: driver at 4, fw_version at 68, 32 bytes each.
const DRVINFO_DRIVER: usize = 4;
const DRVINFO_FW_VERSION: usize = 68;

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// `ethtool -i`: the driver's name and the firmware version it reports (bpnet: the agent's, from
/// the header it read; empty until the agent's header was valid).
pub fn drvinfo(dev: &str) -> Result<(String, String), Error> {
    let mut info = vec![0u8; DRVINFO_LEN];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ioctl(dev, &mut info)?;
    Ok((
        c_string(&info[DRVINFO_DRIVER..DRVINFO_DRIVER + 32]),
        c_string(&info[DRVINFO_FW_VERSION..DRVINFO_FW_VERSION + 32]),
    ))
}

/// Every `ethtool -S` counter of `dev`, in the driver's order.
pub fn stats(dev: &str) -> Result<Vec<(String, u64)>, Error> {
    let mut info = vec![0u8; DRVINFO_LEN];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ioctl(dev, &mut info)?;
    let n = u32_at(&info, DRVINFO_N_STATS) as usize;
    if n > MAX_STATS {
        return Err(Error::Agent(format!("{dev}: the driver claims {n} counters (more than {MAX_STATS})")));
    }
    let mut names = vec![0u8; 12 + n * ETH_GSTRING_LEN];
    names[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    names[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
    names[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
    ioctl(dev, &mut names)?;
    let mut values = vec![0u8; 8 + n * 8];
    values[..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
    values[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
    ioctl(dev, &mut values)?;
    Ok(parse_stats(&names, &values, n))
}

/// The replies of GSTRINGS and GSTATS for `n` counters as (name, value); the kernel writes back how
/// many it filled, and no more than that is taken.
pub fn parse_stats(names: &[u8], values: &[u8], n: usize) -> Vec<(String, u64)> {
    if names.len() < 12 || values.len() < 8 {
        return Vec::new();
    }
    let filled = (u32_at(names, 8) as usize)
        .min(u32_at(values, 4) as usize)
        .min(n)
        .min((names.len() - 12) / ETH_GSTRING_LEN)
        .min((values.len() - 8) / 8);
    (0..filled)
        .map(|i| {
            let raw = &names[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
            let at = 8 + i * 8;
            let mut v = [0u8; 8];
            v.copy_from_slice(&values[at..at + 8]);
            (c_string(raw), u64::from_ne_bytes(v))
        })
        .collect()
}

/// The value of counter `name`, if the driver has it.
pub fn get(stats: &[(String, u64)], name: &str) -> Option<u64> {
    stats.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> [u8; ETH_GSTRING_LEN] {
        let mut raw = [0u8; ETH_GSTRING_LEN];
        raw[..text.len()].copy_from_slice(text.as_bytes());
        raw
    }

    #[test]
    fn replies_are_taken_only_as_far_as_filled() {
        let mut names = vec![0u8; 12];
        names[8..12].copy_from_slice(&2u32.to_ne_bytes());
        names.extend_from_slice(&name("agent_tx_frames"));
        names.extend_from_slice(&name("doorbells"));
        let mut values = vec![0u8; 8];
        values[4..8].copy_from_slice(&2u32.to_ne_bytes());
        values.extend_from_slice(&7u64.to_ne_bytes());
        values.extend_from_slice(&9u64.to_ne_bytes());
        let stats = parse_stats(&names, &values, 2);
        assert_eq!(stats, [("agent_tx_frames".to_string(), 7), ("doorbells".to_string(), 9)]);
        assert_eq!(get(&stats, "doorbells"), Some(9));
        assert_eq!(get(&stats, "interrupts"), None);
        // A reply claiming more than it holds, or than was asked for, is cut to what is there.
        values[4..8].copy_from_slice(&100u32.to_ne_bytes());
        assert_eq!(parse_stats(&names, &values[..16], 2).len(), 1);
        assert_eq!(parse_stats(&names, &values, 1).len(), 1);
        assert!(parse_stats(&names[..4], &values, 2).is_empty());
    }

    #[test]
    fn interface_names_are_checked_before_the_ioctl() {
        assert!(stats("").is_err());
        assert!(drvinfo("a-name-longer-than-ifnamsiz").is_err());
    }
}
