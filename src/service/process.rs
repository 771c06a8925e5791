//! The service's processes: `sh -c CMD` in a process group of its own
//! (a terminal's Ctrl-C reaches racelab, which then stops the service
//! itself), its output in a log file, and a guard that stops the whole
//! group if racelab dies without doing so (SIGKILL included). The leader
//! also gets SIGTERM from the kernel when racelab dies (PDEATHSIG); the
//! guard covers the rest of the group: it is a small `sh` that waits for
//! the end of a pipe only racelab holds open.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::db::proc;

/// How long the group has to leave after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// A running service: its process group, its guard and its log.
pub struct ServiceProcess {
    leader: Option<Child>,
    pgid: i32,
    guard: Option<Child>,
    log: PathBuf,
}

impl ServiceProcess {
    /// Start `sh -c command` with `env` added, output to `log`.
    pub fn start(
        command: &str,
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<ServiceProcess> {
        let out = File::create(log)
            .with_context(|| format!("creating the service's log {}", log.display()))?;
        let err = out.try_clone().context("sharing the service's log")?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let leader = proc::spawn_owned(cmd, libc::SIGTERM)
            .with_context(|| format!("starting the service: sh -c {command:?}"))?;
        let pgid = leader.id() as i32;
        let mut me = ServiceProcess {
            leader: Some(leader),
            pgid,
            guard: None,
            log: log.to_path_buf(),
        };
        me.guard = Some(guard(pgid).context("starting the service's guard")?);
        Ok(me)
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The leader's exit status, if it has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.leader.as_mut()?.try_wait().ok().flatten()
    }

    /// The last `n` lines of the service's output.
    pub fn last_lines(&self, n: usize) -> String {
        last_lines(&self.log, n)
    }

    /// Stop the whole group: SIGTERM, then SIGKILL after `GRACE`. Returns
    /// whether it had to be killed.
    pub fn stop(&mut self) -> bool {
        // The guard first, so it never signals a group id reused later.
        if let Some(mut g) = self.guard.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        if self.leader.is_none() {
            return false;
        }
        signal_group(self.pgid, libc::SIGTERM);
        let killed = !self.wait_gone(GRACE);
        if killed {
            signal_group(self.pgid, libc::SIGKILL);
            self.wait_gone(GRACE);
        }
        if let Some(mut l) = self.leader.take() {
            let _ = l.wait();
        }
        killed
    }

    /// Wait until no live process is left in the group (the leader reaped).
    fn wait_gone(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = &mut self.leader {
                let _ = l.try_wait();
            }
            if group_members(self.pgid).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The guard: stops group `pgid` when its stdin reaches its end, which
/// happens when racelab exits in any way (the write end is racelab's
/// alone, and close-on-exec keeps it out of every other child).
fn guard(pgid: i32) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    let script = format!(
        "read _ignored; kill -TERM -{pgid} 2>/dev/null; sleep {}; kill -KILL -{pgid} 2>/dev/null",
        GRACE.as_secs()
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn()?;
    // Keep the write end open for as long as racelab lives: leak it on
    // purpose (dropping it would fire the guard at once).
    if let Some(stdin) = child.stdin.take() {
        std::mem::forget(stdin);
    }
    Ok(child)
}

fn signal_group(pgid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group we made.
    unsafe { libc::kill(-pgid, sig) };
}

/// The live (not zombie) processes of group `pgid`.
pub fn group_members(pgid: i32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the command name: state, ppid, pgrp.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
            state != Some("Z") && pgrp == Some(pgid)
        })
        .collect()
}

/// The last `n` lines of a file (read from its last 64 KiB).
pub fn last_lines(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_group_stops_grandchildren_included() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("svc.log");
        // A leader that starts a grandchild.
        let mut p =
            ServiceProcess::start("sleep 300 & echo started $X; wait", &[("X", "ok")], &log)
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.last_lines(5).contains("started ok") {
            assert!(Instant::now() < deadline, "the service never wrote");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pgid = p.pgid;
        assert!(group_members(pgid).len() >= 2);
        p.stop();
        assert!(group_members(pgid).is_empty());
        assert_eq!(p.last_lines(1), "started ok");
    }
}
