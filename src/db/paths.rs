//! Where racelab keeps its files: the per-user temp area for throwaway
//! clusters, the cache of pristine data-directory templates, and the state
//! directory of a kept cluster. Each has an environment override; APIs take
//! the directories explicitly so tests (and parallel callers) never have to
//! change the process-global environment.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::proc;

/// The three directories racelab uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// `<temp dir>/racelab-<uid>` (see `default_temp_root`): one
    /// `cluster-<pid>-<rand>/` per embedded run.
    pub temp_root: PathBuf,
    /// `$RACELAB_CACHE_DIR`, else `$XDG_CACHE_HOME/racelab`, else
    /// `~/.cache/racelab`: pristine `initdb` templates, one per version.
    pub cache_dir: PathBuf,
    /// `$RACELAB_STATE_DIR`, else `$XDG_STATE_HOME/racelab`, else
    /// `~/.local/state/racelab`: the kept cluster's state file.
    pub state_dir: PathBuf,
}

impl Dirs {
    /// The directories from the environment (see the field docs).
    pub fn from_env() -> anyhow::Result<Dirs> {
        Ok(Dirs {
            temp_root: default_temp_root(),
            cache_dir: default_cache_dir()?,
            state_dir: default_state_dir()?,
        })
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> anyhow::Result<PathBuf> {
    env_path("HOME").context("HOME is not set; set RACELAB_CACHE_DIR and RACELAB_STATE_DIR")
}

/// `<dir>/racelab-<euid>`, where dir is `$RACELAB_TMPDIR`, else `$TMPDIR`,
/// else a memory file system (`/dev/shm`, when it is a writable tmpfs
/// with room), else the system's temporary directory (`/tmp`).
///
/// A cluster is ~1,000 files copied on every run, so where they go shows in
/// the start-up time: on this project's machine the copy took 25-90 ms on
/// tmpfs, and 560 ms in one run on disk. A throwaway cluster runs with fsync
/// off, so memory loses nothing a disk would keep; a durable one goes to
/// disk (`disk_temp_root`). `RACELAB_TMPDIR` moves them without changing
/// `TMPDIR` for everything else.
pub fn default_temp_root() -> PathBuf {
    let base = env_path("RACELAB_TMPDIR")
        .or_else(|| env_path("TMPDIR"))
        .or_else(memory_fs)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("racelab-{}", proc::euid()))
}

/// The temp area on disk, for a durable cluster: as `default_temp_root`,
/// without the memory file system.
pub fn disk_temp_root() -> PathBuf {
    let base = env_path("RACELAB_TMPDIR").unwrap_or_else(std::env::temp_dir);
    base.join(format!("racelab-{}", proc::euid()))
}

/// `/dev/shm` when it is a tmpfs this process can write with at least
/// 1 GiB free.
fn memory_fs() -> Option<PathBuf> {
    const ROOM: u64 = 1 << 30;
    let dir = PathBuf::from("/dev/shm");
    let c = std::ffi::CString::new("/dev/shm").ok()?;
    // SAFETY: access reads a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return None;
    }
    (tmpfs_free(&dir)? >= ROOM).then_some(dir)
}

/// Whether `path` is on a memory file system (tmpfs).
pub fn on_memory_fs(path: &Path) -> bool {
    tmpfs_free(path).is_some()
}

/// The free bytes of the tmpfs `path` is on; `None` on any other file
/// system (or when it cannot be asked).
fn tmpfs_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs reads a NUL-terminated path and writes one struct
    // through a valid pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let (kind, free) = (
        st.f_type as i64,
        (st.f_bavail as u64).saturating_mul(st.f_bsize as u64),
    );
    (kind == TMPFS_MAGIC).then_some(free)
}

/// The template cache directory from the environment.
pub fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(p) = env_path("RACELAB_CACHE_DIR") {
        return Ok(p);
    }
    if let Some(p) = env_path("XDG_CACHE_HOME") {
        return Ok(p.join("racelab"));
    }
    Ok(home()?.join(".cache").join("racelab"))
}

/// The kept-cluster state directory from the environment.
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(p) = env_path("RACELAB_STATE_DIR") {
        return Ok(p);
    }
    if let Some(p) = env_path("XDG_STATE_HOME") {
        return Ok(p.join("racelab"));
    }
    Ok(home()?.join(".local").join("state").join("racelab"))
}

/// Create (if needed) and check a private directory that other users may
/// traverse but not list (mode 0711), owned by us. It may live in a shared
/// place like /tmp, so a directory someone else created (or a symlink) is
/// refused rather than used.
pub fn ensure_private_dir(path: &Path) -> anyhow::Result<()> {
    match fs::DirBuilder::new().mode(0o711).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))
                .with_context(|| format!("could not create {}", path.display()))?;
            return ensure_private_dir(path);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("could not create {}", path.display()));
        }
    }
    let meta = fs::symlink_metadata(path)
        .with_context(|| format!("could not inspect {}", path.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} exists but is not a directory; remove it or set TMPDIR elsewhere",
            path.display()
        );
    }
    if meta.uid() != proc::euid() {
        bail!(
            "{} belongs to another user (uid {}); remove it or set TMPDIR elsewhere",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o711))
            .with_context(|| format!("could not restrict {}", path.display()))?;
    }
    Ok(())
}

/// A short random hex string for unique directory names.
pub fn random_suffix() -> String {
    use rand::Rng;
    format!("{:08x}", rand::thread_rng().gen::<u32>())
}

/// Written whole and durably (see `files`).
pub use crate::files::write_atomic;

/// `remove_dir_all`, where a directory already gone is no error.
pub fn remove_dir_all_quiet(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
