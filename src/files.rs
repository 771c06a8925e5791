//! Files racelab writes whole: result files, reports, specs, the kept
//! cluster's state, owner markers. Each is written atomically and durably:
//! a temporary file beside it, written and synced, renamed over it, then
//! its directory synced, so that a reader (or the next racelab after a
//! crash or a power cut) finds the old file or the whole new one, never a
//! part of it, and no temporary file is left behind on failure.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

/// Write `bytes` to `path` atomically and durably (see the module).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write(path, bytes, None).with_context(|| format!("could not write {}", path.display()))
}

/// `write_atomic` with the file's mode set to `mode`, whatever the umask.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write(path, bytes, Some(mode))
}

fn write(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    // Unique per process and write: two writers never share a temp file.
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.unwrap_or(0o666))
            .open(&tmp)?;
        f.write_all(bytes)?;
        if let Some(mode) = mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable once the directory that holds it is synced.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_is_replaced_whole_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        assert_eq!(names(dir.path()), ["result.json"]);
    }

    #[test]
    fn the_mode_is_what_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic_mode(&path, b"{}", 0o640).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_failed_write_says_where_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the write.
        let taken = dir.path().join("taken");
        fs::create_dir(taken.join("")).unwrap();
        fs::write(taken.join("inside"), b"x").unwrap();
        let e = write_atomic(&taken, b"data").unwrap_err();
        assert!(format!("{e:#}").starts_with("could not write "), "{e:#}");
        assert_eq!(names(dir.path()), ["taken"]);
        let missing = dir.path().join("no/such/dir/file");
        assert!(write_atomic(&missing, b"data").is_err());
    }
}
