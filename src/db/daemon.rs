//! A helper server racelab owns beside the database (the embedded
//! `redis-server`, the embedded PgBouncer): its own private directory in
//! the temp area with an owner marker, its own process group and a death
//! signal, stopped by pid (SIGTERM, then SIGKILL, reaped) and the directory
//! removed on `stop` or drop. Every start first removes the directories,
//! and stops the servers, that a racelab which died left behind.
//!
//! The PostgreSQL cluster (`cluster`) has its own guard: its data
//! directory, template copy and shutdown escalation are its own.

use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::owner::{is_young, OwnerMarker};
use super::paths;
use super::proc::{self, RunAs};

/// A running helper server. `stop()` reports failures; dropping it stops
/// the server too (errors ignored).
#[derive(Debug)]
pub(crate) struct Daemon {
    /// The program's name, for messages (`redis-server`, `pgbouncer`).
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
}

/// What a daemon is started from: the program with its arguments, and
/// the account to run it as.
pub(crate) struct Spawn<'a> {
    pub name: &'static str,
    pub cmd: Command,
    pub run_as: Option<&'a RunAs>,
}

impl Daemon {
    /// A new private directory `<temp root>/<prefix>-<pid>-<rand>/` (mode
    /// 0700, owned by `run_as` if given) holding an owner marker, after
    /// removing the stale ones of the same prefix (dead owners).
    pub fn make_dir(prefix: &str, name: &str, run_as: Option<&RunAs>) -> anyhow::Result<PathBuf> {
        let root = paths::default_temp_root();
        paths::ensure_private_dir(&root)?;
        cleanup_stale(&root, prefix, name);
        let dir = root.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            paths::random_suffix()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        let owned = OwnerMarker::current()
            .and_then(|m| m.write(&dir).context("could not write the owner marker"))
            .and_then(|()| match run_as {
                Some(u) => proc::chown(&dir, u.uid, u.gid)
                    .with_context(|| format!("could not chown {}", dir.display())),
                None => Ok(()),
            });
        if let Err(e) = owned {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(dir)
    }

    /// Spawn the program in `dir` (made by `make_dir`): own process group,
    /// so a terminal's Ctrl-C reaches racelab, which stops the server
    /// itself; SIGTERM when racelab dies. On failure the directory is
    /// removed.
    pub fn spawn(s: Spawn, dir: PathBuf) -> anyhow::Result<Daemon> {
        let Spawn {
            name,
            mut cmd,
            run_as,
        } = s;
        cmd.current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(u) = run_as {
            // std applies setgroups/setgid/setuid before the pre_exec hook,
            // which matters: changing uid clears PDEATHSIG.
            cmd.uid(u.uid).gid(u.gid);
        }
        let child = match proc::spawn_owned(cmd, libc::SIGTERM) {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e).with_context(|| format!("could not start {name}"));
            }
        };
        let pid = child.id();
        let mut marker = OwnerMarker::read(&dir);
        if let Some(m) = marker.as_mut() {
            m.postmaster_pid = Some(pid);
            let _ = m.write(&dir);
        }
        Ok(Daemon {
            name,
            child: Some(child),
            pid,
            dir,
        })
    }

    /// Poll `ready` until it holds (every 2 ms, up to `timeout`); fail
    /// with the log's last lines if the program exits first.
    pub fn wait_ready(
        &mut self,
        log: &Path,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let text = fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                bail!(
                    "{} exited at start ({status}): {}",
                    self.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if Instant::now() >= deadline {
                bail!("{} was not ready within {} s", self.name, timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stop the server and remove its directory.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let gone = self.halt();
        let removed = paths::remove_dir_all_quiet(&self.dir);
        if !gone {
            bail!("{} (pid {}) did not stop", self.name, self.pid);
        }
        removed.with_context(|| format!("could not remove {}", self.dir.display()))
    }

    /// Stop the server but keep the directory, to start it again in the
    /// same place (`restart_with`).
    pub fn halt_keep_dir(&mut self) -> anyhow::Result<()> {
        if !self.halt() {
            bail!("{} (pid {}) did not stop", self.name, self.pid);
        }
        Ok(())
    }

    /// Start the program again in the same directory, after `halt_keep_dir`.
    pub fn respawn(&mut self, s: Spawn) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        // A failed spawn removes the directory: this guard is spent then.
        self.child = None;
        let fresh = Daemon::spawn(s, dir)?;
        *self = fresh;
        Ok(())
    }

    /// SIGTERM, then SIGKILL; reaps the child. Whether it is gone.
    fn halt(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let gone = halt_pid(self.pid);
        if gone {
            // Gone or exiting: reap it (a blocking wait on a process that
            // has been seen dead returns at once).
            let _ = child.wait();
        } else {
            let _ = child.try_wait();
        }
        gone
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.halt();
            let _ = paths::remove_dir_all_quiet(&self.dir);
        }
    }
}

/// Find the program `name`: in the `flag` directory if one was given,
/// else on `PATH`, else in `fallback`. The errors end with `hint`;
/// `missing` says why it was looked for.
pub(crate) fn find_program(
    name: &str,
    explicit: Option<&Path>,
    flag: &str,
    fallback: &[&str],
    missing: &str,
    hint: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{flag} {}: no {name} there; {hint}", dir.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(fallback.iter().map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found ({missing}); {hint}")
}

/// SIGTERM, wait up to 5 s, then SIGKILL and wait up to 2 s. Whether the
/// process is gone.
fn halt_pid(pid: u32) -> bool {
    for (sig, wait) in [
        (libc::SIGTERM, Duration::from_secs(5)),
        (libc::SIGKILL, Duration::from_secs(2)),
    ] {
        if proc::signal(pid, sig).is_err() {
            return !proc::alive(pid);
        }
        if proc::wait_gone(pid, wait) {
            return true;
        }
    }
    false
}

/// Remove the `<prefix>-*` directories of `root` whose owner is dead (or
/// whose pid was reused), stopping their server first when it is still
/// running and really is `name` serving from that directory. A directory
/// without a readable marker is left alone for a minute (its owner may be
/// writing it). Returns the directories removed.
pub(crate) fn cleanup_stale(root: &Path, prefix: &str, name: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return removed;
    };
    let start = format!("{prefix}-");
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&start) {
            continue;
        }
        let dir = entry.path();
        match OwnerMarker::read(&dir) {
            Some(m) if proc::same_process_alive(m.racelab_pid, m.racelab_start) => continue,
            Some(m) => {
                if let Some(pid) = m.postmaster_pid {
                    if proc::alive(pid) && serves_from(pid, name, &dir) {
                        halt_pid(pid);
                    }
                }
            }
            None if is_young(&entry) => continue,
            None => {}
        }
        if paths::remove_dir_all_quiet(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Whether `pid` is the program `name` started in `dir` (guards against a
/// reused pid before signalling it).
fn serves_from(pid: u32, name: &str, dir: &Path) -> bool {
    let comm_ok = proc::comm(pid).is_some_and(|c| name.starts_with(&c) || c.starts_with(name));
    let cwd_ok = fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir);
    let args_ok = proc::cmdline(pid).is_some_and(|c| c.contains(&*dir.to_string_lossy()));
    comm_ok && (cwd_ok || args_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owners_directory_is_removed_a_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join("thing-1-aaaa");
        let live = root.path().join("thing-2-bbbb");
        let other = root.path().join("other-1-cccc");
        for d in [&dead, &live, &other] {
            fs::create_dir(d).unwrap();
        }
        let mut me = OwnerMarker::current().unwrap();
        me.write(&live).unwrap();
        me.write(&other).unwrap();
        // The same pid with another start time: a reused pid, a dead owner.
        me.racelab_start += 1;
        me.write(&dead).unwrap();
        let removed = cleanup_stale(root.path(), "thing", "thing");
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists() && live.exists() && other.exists());
    }
}
