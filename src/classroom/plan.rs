//! `racelab classroom` arguments validated into a plan before anything
//! starts: the address to bind and the URLs to print, the strategies on
//! offer, the room's limits, where results go, the database.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::ClassroomArgs;
use crate::db::DbOptions;
use crate::error::bad_input;
use crate::strategy::{self, Strategy};

/// Most purchases `--max-buyers` may let run at once.
pub const MAX_BUYERS: u32 = 2_000;
/// Connections racelab itself needs beside the buyers': preparing the lab
/// and its `\setup`, the live stock reading, the audit, and an explore
/// replay (its buyers, its monitor and its lab).
const OWN_CONNECTIONS: u32 = 12;

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

impl ClassroomPlan {
    pub fn build(a: &ClassroomArgs) -> anyhow::Result<ClassroomPlan> {
        let ip: IpAddr = a.bind.trim().parse().map_err(|_| {
            bad_input(format!(
                "--bind {:?} is not an IP address (127.0.0.1 for this machine only, 0.0.0.0 for the whole network)",
                a.bind
            ))
        })?;
        if !(1..=MAX_BUYERS).contains(&a.max_buyers) {
            return Err(bad_input(format!(
                "--max-buyers must be between 1 and {MAX_BUYERS}, got {}",
                a.max_buyers
            )));
        }
        if !(1..=86_400).contains(&a.open_seconds) {
            return Err(bad_input(format!(
                "--open-seconds must be between 1 and 86400, got {}",
                a.open_seconds
            )));
        }
        let url_host = match &a.url_host {
            Some(h) => host_of(h)?,
            None if ip.is_unspecified() => lan_address()
                .map(|v4| v4.to_string())
                .unwrap_or_else(|| "127.0.0.1".to_string()),
            None => match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            },
        };
        let mut strategies = Vec::new();
        for (name, _) in strategy::builtins() {
            strategies.push(strategy::load(name)?);
        }
        for file in &a.strategies {
            let s = strategy::load(&file.display().to_string())?;
            if strategies.iter().any(|o| o.name == s.name) {
                return Err(bad_input(format!(
                    "--strategy {}: a strategy named `{}` is already on offer; rename the file",
                    file.display(),
                    s.name
                )));
            }
            strategies.push(s);
        }
        let save_dir = (!a.no_save).then(|| a.out.clone());
        if let Some(dir) = &save_dir {
            crate::report::save::check_writable(dir)?;
        }
        let db = crate::plan::db_options(&a.db, a.max_buyers + OWN_CONNECTIONS)?;
        Ok(ClassroomPlan {
            addr: SocketAddr::new(ip, a.port),
            url_host,
            strategies,
            max_buyers: a.max_buyers,
            open_for: Duration::from_secs(a.open_seconds),
            max_tries: a.max_tries.unwrap_or(crate::plan::DEFAULT_MAX_TRIES),
            save_dir,
            db,
        })
    }
}

/// `--url-host`: a host name or an address, nothing else.
fn host_of(text: &str) -> anyhow::Result<String> {
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
fn lan_address() -> Option<Ipv4Addr> {
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
