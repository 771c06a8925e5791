//! A classroom's plan, validated by the command layer before anything
//! starts (`commands::classroom`): the address to bind and the URLs to
//! print, the strategies on offer, the room's limits, where results go,
//! the database; and the helpers that validation uses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::db::DbOptions;
use crate::error::bad_input;
use crate::strategy::Strategy;

/// Most purchases `--max-buyers` may let run at once.
pub const MAX_BUYERS: u32 = 2_000;
/// Connections racelab itself needs beside the buyers': preparing the lab
/// and its `\setup`, the live stock reading, the audit, and an explore
/// replay (its buyers, its monitor and its lab).
pub const OWN_CONNECTIONS: u32 = 12;

/// A validated classroom.
#[derive(Debug)]
pub struct ClassroomPlan {
    pub addr: SocketAddr,
    /// The host the printed URLs and the QR code name.
    pub url_host: String,
    /// The strategies on offer: the built-ins, then the files given.
    pub strategies: Vec<Strategy>,
    pub max_buyers: u32,
    /// How long a round stays open after its countdown.
    pub open_for: Duration,
    pub max_tries: u32,
    /// Where each round's result goes; None with `--no-save`.
    pub save_dir: Option<PathBuf>,
    pub db: DbOptions,
}

/// `--url-host`: a host name or an address, nothing else.
pub fn host_of(text: &str) -> anyhow::Result<String> {
    let t = text.trim();
    if let Ok(IpAddr::V6(v6)) = t.parse::<IpAddr>() {
        return Ok(format!("[{v6}]"));
    }
    let ok = !t.is_empty()
        && t.len() <= 253
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !ok {
        return Err(bad_input(format!(
            "--url-host {text:?} is not a host name or an IP address (e.g. 192.168.1.20 or classroom.local)"
        )));
    }
    Ok(t.to_string())
}

/// This machine's first non-loopback IPv4 address that is up, for the URL
/// students type or scan when racelab listens on every address.
pub fn lan_address() -> Option<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*at };
        at = ifa.ifa_next;
        let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
        let loopback = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
        if ifa.ifa_addr.is_null() || !up || loopback {
            continue;
        }
        // SAFETY: a non-null ifa_addr points at a sockaddr of its family.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        break;
    }
    // SAFETY: `head` came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_are_names_or_addresses() {
        assert_eq!(host_of("192.168.1.20").unwrap(), "192.168.1.20");
        assert_eq!(host_of("::1").unwrap(), "[::1]");
        assert_eq!(host_of(" room-12.local ").unwrap(), "room-12.local");
        for bad in ["", "a/b", "evil.com/?x=", "a b"] {
            assert!(host_of(bad).is_err(), "{bad:?}");
        }
    }
}
