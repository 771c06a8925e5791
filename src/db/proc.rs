//! Small Linux process helpers for the cluster guards: is a pid alive (and
//! still the same process), what is it, signal it and wait for it to go, the
//! unprivileged user to run the server as, and a spawner thread that lives as
//! long as the process (so `PR_SET_PDEATHSIG` does not fire early).
//!
//! Nothing here knows about PostgreSQL data directories; see `cluster`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The start time of a process (field 22 of `/proc/<pid>/stat`, in clock
/// ticks since boot), which together with the pid identifies one process:
/// a reused pid has a different start time.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields after it start after the LAST ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts with field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The state letter of a process (`R`, `S`, `Z`...), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    !matches!(state(pid), Some('Z') | None)
}

/// Whether `pid` is alive and is the same process that had `start` as its
/// start time (pids are reused).
pub fn same_process_alive(pid: u32, start: u64) -> bool {
    alive(pid) && start_time(pid) == Some(start)
}

/// The command name of a process (`/proc/<pid>/comm`).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The real uid of a process (first field of the `Uid:` line).
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Send a signal; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain kill(2) on a positive pid.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reap `pid` if it is our exited child (no-op otherwise).
fn try_reap(pid: u32) {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; ECHILD (not our child) is ignored.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
}

/// Wait until `pid` is gone (reaping it if it is our child), up to `timeout`.
/// Returns whether it is gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        try_reap(pid);
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Stop a postmaster that is not (or no longer) our `Child`: SIGINT (fast
/// shutdown), then SIGQUIT (immediate), then SIGKILL, waiting after each.
pub fn stop_postmaster_pid(pid: u32, grace: Duration) -> bool {
    for (sig, wait) in [
        (libc::SIGINT, grace),
        (libc::SIGQUIT, Duration::from_secs(2)),
        (libc::SIGKILL, Duration::from_secs(2)),
    ] {
        if signal(pid, sig).is_err() {
            return false;
        }
        if wait_gone(pid, wait) {
            return true;
        }
    }
    false
}

/// An unprivileged account to run the server as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Look up a user by name in the password database.
pub fn lookup_user(name: &str) -> anyhow::Result<Option<RunAs>> {
    let cname = CString::new(name).context("user name contains a NUL byte")?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the duration of the call; buf is
    // large enough for any sane passwd entry (ERANGE is reported otherwise).
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        bail!(
            "could not look up user {name:?}: {}",
            io::Error::from_raw_os_error(rc)
        );
    }
    if result.is_null() {
        return Ok(None);
    }
    Ok(Some(RunAs {
        name: name.to_string(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }))
}

/// Who runs `initdb` and `postgres`: `None` means "this process's user".
/// PostgreSQL refuses to run as root, so as root it is `$RACELAB_PG_USER`
/// or else the `postgres` system user.
pub fn server_user() -> anyhow::Result<Option<RunAs>> {
    if euid() != 0 {
        return Ok(None);
    }
    let (name, from_env) = match std::env::var("RACELAB_PG_USER") {
        Ok(n) if !n.is_empty() => (n, true),
        _ => ("postgres".to_string(), false),
    };
    match lookup_user(&name)? {
        Some(u) if u.uid == 0 => bail!(
            "user {name:?} is root, and PostgreSQL refuses to run as root; \
             set RACELAB_PG_USER to an unprivileged user"
        ),
        Some(u) => Ok(Some(u)),
        None if from_env => bail!(
            "RACELAB_PG_USER={name:?} names no user on this system; \
             set it to an existing unprivileged user"
        ),
        None => bail!(
            "racelab runs as root and PostgreSQL refuses to, but there is no \
             `postgres` user to run it as; create one (`useradd --system postgres`), \
             set RACELAB_PG_USER to an unprivileged user, or pass --database-url"
        ),
    }
}

/// Change the owner of a path (not following symlinks).
pub fn chown(path: &std::path::Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// Spawn a server racelab owns: in its own process group (a terminal's
/// Ctrl-C reaches racelab, which then stops the server itself), with
/// `death_signal` sent to it when racelab dies, from the spawner thread
/// (see `spawn_from_process_thread`). Set the uid on `cmd` before: std
/// changes it before this pre-exec hook runs, and a uid change would
/// clear the death signal.
pub fn spawn_owned(mut cmd: Command, death_signal: libc::c_int) -> io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook only calls async-signal-safe functions.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::other("racelab exited during spawn"));
            }
            Ok(())
        });
    }
    spawn_from_process_thread(cmd)
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` from a dedicated thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process. Tokio's blocking-pool threads (and any short-lived
/// thread) exit when idle, which would SIGINT a healthy server mid-run.
/// This thread is never joined and only ends with the process, so the
/// death signal means what it should: racelab is gone.
pub fn spawn_from_process_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("racelab-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("could not start the racelab spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_a_start_time() {
        let me = std::process::id();
        assert!(alive(me));
        let st = start_time(me).unwrap();
        assert!(same_process_alive(me, st));
        assert!(!same_process_alive(me, st + 1));
    }

    #[test]
    fn exited_child_is_not_alive() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn root_user_lookup() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert!(lookup_user("no-such-user-racelab").unwrap().is_none());
    }
}
