//! Finding the PostgreSQL server binaries (`initdb` and `postgres`).
//!
//! Search order: an explicit directory (`--pg-bin`), `$RACELAB_PG_BIN`,
//! `pg_config --bindir`, `$PATH`, then `/usr/lib/postgresql/*/bin` (and
//! `/usr/pgsql-*/bin`) newest version first. A directory the user named
//! that lacks the binaries is an error, never a silent fall-through.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Where a set of binaries was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinSource {
    Explicit,
    Env,
    PgConfig,
    Path,
    Standard,
}

/// The server binaries racelab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBins {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub source: BinSource,
}

impl PgBins {
    /// The server version from `postgres --version`, e.g. `15.18`,
    /// remembered per binary for the life of the process and, when
    /// `cache_dir` is given, across runs in `cache_dir/versions/`: running
    /// `postgres --version` costs ~14 ms of a ~300 ms start here. The entry
    /// is keyed by the binary's path, size, modification time and inode, so
    /// an upgraded or replaced binary is asked again.
    pub fn version(&self, cache_dir: Option<&Path>) -> anyhow::Result<String> {
        use std::collections::HashMap;
        use std::sync::{Mutex, OnceLock};
        static SEEN: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
        let seen = SEEN.get_or_init(Default::default);
        if let Some(v) = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.postgres)
        {
            return Ok(v.clone());
        }
        let entry = cache_dir.and_then(|dir| self.version_entry(dir));
        let remembered = entry
            .as_deref()
            .and_then(|e| std::fs::read_to_string(e).ok())
            .filter(|v| is_version(v));
        let v = match remembered {
            Some(v) => v,
            None => {
                let v = self.version_uncached()?;
                // Remembering is an optimisation: a failure costs the next
                // run one `postgres --version`.
                if let Some(e) = &entry {
                    let _ = e.parent().map(std::fs::create_dir_all);
                    let _ = super::paths::write_atomic(e, v.as_bytes());
                }
                v
            }
        };
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.postgres.clone(), v.clone());
        Ok(v)
    }

    /// Where `version` remembers this binary's version under `cache_dir`.
    fn version_entry(&self, cache_dir: &Path) -> Option<PathBuf> {
        use sha2::{Digest, Sha256};
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.postgres).ok()?;
        let mut key = Sha256::new();
        key.update(self.postgres.as_os_str().as_bytes());
        key.update(
            format!(
                "\0{}\0{}.{}\0{}\0{}",
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino(),
                meta.dev()
            )
            .as_bytes(),
        );
        let hex = format!("{:x}", key.finalize());
        Some(cache_dir.join("versions").join(&hex[..24]))
    }

    fn version_uncached(&self) -> anyhow::Result<String> {
        let out = Command::new(&self.postgres)
            .arg("--version")
            .output()
            .with_context(|| format!("could not run {} --version", self.postgres.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_version_output(&text).with_context(|| {
            format!(
                "{} --version printed {:?}, not a PostgreSQL version",
                self.postgres.display(),
                text.trim()
            )
        })
    }
}

/// `postgres (PostgreSQL) 15.18 (Debian ...)` -> `15.18`.
fn parse_version_output(text: &str) -> Option<String> {
    let v = text.split_whitespace().nth(2)?;
    is_version(v).then(|| v.to_string())
}

/// `15.18`, `16beta1`: starts with a digit, one word.
fn is_version(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit()) && !v.contains(char::is_whitespace)
}

const INSTALL_HINT: &str =
    "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`), \
     pass --pg-bin DIR (or set RACELAB_PG_BIN) to where `initdb` and `postgres` are, \
     or pass --database-url to use an existing server";

fn in_dir(dir: &Path, source: BinSource) -> Option<PgBins> {
    let initdb = dir.join("initdb");
    let postgres = dir.join("postgres");
    (is_executable(&initdb) && is_executable(&postgres)).then_some(PgBins {
        initdb,
        postgres,
        source,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Find `initdb` and `postgres` (see the module docs for the order).
pub fn find_server_bins(explicit: Option<&Path>) -> anyhow::Result<PgBins> {
    if let Some(dir) = explicit {
        return in_dir(dir, BinSource::Explicit).with_context(|| {
            format!(
                "PostgreSQL server binaries (initdb, postgres) not found in {} (from --pg-bin); {INSTALL_HINT}",
                dir.display()
            )
        });
    }
    if let Some(dir) = std::env::var_os("RACELAB_PG_BIN").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return in_dir(&dir, BinSource::Env).with_context(|| {
            format!(
                "PostgreSQL server binaries (initdb, postgres) not found in {} (from RACELAB_PG_BIN); {INSTALL_HINT}",
                dir.display()
            )
        });
    }
    if let Some(found) = from_pg_config() {
        return Ok(found);
    }
    if let Some(found) = from_path() {
        return Ok(found);
    }
    for dir in standard_dirs() {
        if let Some(found) = in_dir(&dir, BinSource::Standard) {
            return Ok(found);
        }
    }
    bail!("PostgreSQL server binaries (initdb, postgres) not found; {INSTALL_HINT}")
}

fn from_pg_config() -> Option<PgBins> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    in_dir(Path::new(dir.trim()), BinSource::PgConfig)
}

fn from_path() -> Option<PgBins> {
    let path = std::env::var_os("PATH")?;
    let find = |name: &str| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    };
    Some(PgBins {
        initdb: find("initdb")?,
        postgres: find("postgres")?,
        source: BinSource::Path,
    })
}

/// Distribution directories, newest version first.
fn standard_dirs() -> Vec<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    for (parent, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(ver) = name.strip_prefix(prefix) else {
                continue;
            };
            if let Some(key) = version_key(ver) {
                found.push((key, e.path().join("bin")));
            }
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`; anything else is not a version.
fn version_key(s: &str) -> Option<Vec<u64>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec![
            version_key("9.6").unwrap(),
            version_key("15").unwrap(),
            version_key("10").unwrap(),
        ];
        v.sort_by(|a, b| b.cmp(a));
        assert_eq!(v, vec![vec![15], vec![10], vec![9, 6]]);
        assert!(version_key("common").is_none());
    }

    #[test]
    fn parses_version_output() {
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some("15.18".into())
        );
        assert_eq!(
            parse_version_output("postgres (PostgreSQL) 17beta1\n"),
            Some("17beta1".into())
        );
        assert_eq!(parse_version_output("nonsense"), None);
    }

    #[test]
    fn explicit_dir_without_binaries_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_server_bins(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("apt-get install postgresql"), "{err}");
        assert!(err.contains("--database-url"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn a_version_is_remembered_per_binary_across_runs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("postgres");
        let write = |v: &str| {
            std::fs::write(
                &fake,
                format!("#!/bin/sh\necho 'postgres (PostgreSQL) {v}'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("99.1");
        let bins = PgBins {
            initdb: dir.path().join("initdb"),
            postgres: fake.clone(),
            source: BinSource::Explicit,
        };
        let cache = dir.path().join("cache");
        assert_eq!(bins.version(Some(&cache)).unwrap(), "99.1");
        let entry = bins.version_entry(&cache).unwrap();
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), "99.1");
        // A replaced binary (here a different size) has another entry.
        write("99.10");
        assert_ne!(bins.version_entry(&cache).unwrap(), entry);
    }
}
