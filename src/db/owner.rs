//! Who owns a directory racelab made for a server (a cluster's, a kept
//! cluster's, a daemon's): the owner marker naming racelab's process and
//! its start time (then the server's pid), and whether a directory without
//! a marker is still being made. `cluster` writes markers; `cluster` and
//! `daemon` read them to tell a live owner's directory from a dead one's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::proc;

/// The owner marker of a cluster directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerMarker {
    pub racelab_pid: u32,
    /// `/proc/<pid>/stat` start time of `racelab_pid`.
    pub racelab_start: u64,
    pub postmaster_pid: Option<u32>,
}

impl OwnerMarker {
    /// The marker for this process.
    pub fn current() -> anyhow::Result<OwnerMarker> {
        let pid = std::process::id();
        Ok(OwnerMarker {
            racelab_pid: pid,
            racelab_start: proc::start_time(pid).context("could not read /proc/self/stat")?,
            postmaster_pid: None,
        })
    }

    /// The marker file of a cluster directory.
    pub fn path(cluster_dir: &Path) -> PathBuf {
        cluster_dir.join("owner")
    }

    /// Write atomically (temp file + rename).
    pub fn write(&self, cluster_dir: &Path) -> io::Result<()> {
        let mut text = format!(
            "racelab_pid={}\nracelab_start={}\n",
            self.racelab_pid, self.racelab_start
        );
        if let Some(pm) = self.postmaster_pid {
            text.push_str(&format!("postmaster_pid={pm}\n"));
        }
        let tmp = cluster_dir.join("owner.tmp");
        fs::write(&tmp, text)?;
        fs::rename(tmp, Self::path(cluster_dir))
    }

    /// Read a marker; `None` if missing or unreadable.
    pub fn read(cluster_dir: &Path) -> Option<OwnerMarker> {
        let text = fs::read_to_string(Self::path(cluster_dir)).ok()?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::trim)
        };
        Some(OwnerMarker {
            racelab_pid: field("racelab_pid")?.parse().ok()?,
            racelab_start: field("racelab_start")?.parse().ok()?,
            postmaster_pid: field("postmaster_pid").and_then(|p| p.parse().ok()),
        })
    }
}

/// Whether a directory entry changed less than a minute ago (its owner
/// may still be writing it).
pub(crate) fn is_young(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or(true, |age| age < Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let m = OwnerMarker {
            racelab_pid: 42,
            racelab_start: 123456,
            postmaster_pid: Some(77),
        };
        m.write(dir.path()).unwrap();
        assert_eq!(OwnerMarker::read(dir.path()), Some(m));
        fs::write(OwnerMarker::path(dir.path()), "garbage").unwrap();
        assert_eq!(OwnerMarker::read(dir.path()), None);
    }
}
