//! The kept cluster behind `racelab db start|status|url|stop`: the same kind
//! of cluster as the throwaway one, but detached (own session, no death
//! signal) and recorded in a state file (`<state_dir>/cluster.json`) so
//! later racelabs, and other programs through its TCP URL, can use it.
//! racelab itself goes through the private unix socket; the TCP URL needs
//! the cluster's own password, kept beside the state file in
//! `cluster.password`, which only its owner can read (mode 0600): `db url`
//! adds it to the URL, and the state file never holds it.
//!
//! Its files live in `<state_dir>/cluster/`, except when racelab runs as
//! root: the server then runs as an unprivileged user who usually cannot
//! traverse root's home, so they live in `<temp_root>/kept-<hash>/`.
//! Every function takes the state directory explicitly (`*_in`) with an
//! environment-default wrapper, so tests never touch the process env.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use super::bins::find_server_bins;
use super::cluster::{self, Cluster, ClusterOptions, Mode};
use super::paths::{self, Dirs};
use super::proc;
use crate::secret::{Secret, SecretUrl};

/// What `racelab db start` starts.
#[derive(Debug, Clone)]
pub struct KeptOptions {
    pub pg_bin: Option<PathBuf>,
    /// State, temp and cache directories.
    pub dirs: Dirs,
    pub durable: bool,
    /// The server's `max_connections` (default 1000: a kept cluster serves
    /// runs of any size).
    pub max_connections: u32,
}

impl KeptOptions {
    /// Defaults, with directories from the environment.
    pub fn from_env(pg_bin: Option<PathBuf>) -> anyhow::Result<KeptOptions> {
        Ok(KeptOptions {
            pg_bin,
            dirs: Dirs::from_env()?,
            durable: false,
            max_connections: 1000,
        })
    }
}

/// The state file's contents: a running kept cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptInfo {
    /// The TCP URL without its password, to show:
    /// `postgresql://postgres@127.0.0.1:PORT/postgres` (`url_in` gives
    /// the one that logs in).
    pub url: String,
    pub pid: u32,
    pub port: u16,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    /// The directory holding `data/`, `sock/` and `server.log`.
    pub cluster_dir: PathBuf,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub server_version: String,
    pub durable: bool,
    pub max_connections: u32,
}

impl KeptInfo {
    /// Unix-socket connection options (what racelab itself uses).
    pub fn connect_options(&self) -> PgConnectOptions {
        cluster::socket_connect_options(&self.socket_dir, self.port)
    }
}

const STATE_FILE: &str = "cluster.json";
const PASSWORD_FILE: &str = "cluster.password";

fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

fn password_path(state_dir: &Path) -> PathBuf {
    state_dir.join(PASSWORD_FILE)
}

/// Write the cluster's password where only this user can read it: a new
/// file of mode 0600, renamed into place.
fn write_password(state_dir: &Path, password: &Secret) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = password_path(state_dir);
    let tmp = state_dir.join(format!(".{PASSWORD_FILE}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(password.expose().as_bytes()))
        .and_then(|()| fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("could not write {}", path.display()))
}

fn read_password(state_dir: &Path) -> anyhow::Result<Option<Secret>> {
    let path = password_path(state_dir);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Secret::new(text.trim()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
}

/// An exclusive lock on the state directory, held while reading and
/// changing it (two `racelab db start` at once start one cluster).
struct StateLock(fs::File);

impl StateLock {
    fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        use std::os::unix::fs::DirBuilderExt as _;
        // Private: it holds the cluster's password (a directory someone
        // made before keeps its mode; the password file is 0600 anyway).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .with_context(|| {
                format!(
                    "could not create the state directory {}",
                    state_dir.display()
                )
            })?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state_dir.join("lock"))
            .with_context(|| format!("could not open the lock file in {}", state_dir.display()))?;
        // SAFETY: flock on an open descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error()).context("could not lock the state directory");
        }
        Ok(StateLock(f))
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn read_state(state_dir: &Path) -> anyhow::Result<Option<KeptInfo>> {
    let path = state_path(state_dir);
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
}

fn is_running(info: &KeptInfo) -> bool {
    proc::alive(info.pid) && cluster::is_postmaster_of(info.pid, &info.data_dir)
}

/// Remove a dead cluster's leftovers and its state file.
fn clear_stale(state_dir: &Path, info: Option<&KeptInfo>) -> anyhow::Result<()> {
    if let Some(info) = info {
        cluster::kill_and_remove(&info.cluster_dir, &info.data_dir, None)?;
    }
    for path in [password_path(state_dir), state_path(state_dir)] {
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("could not remove the stale {}", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn status_locked(state_dir: &Path) -> anyhow::Result<Option<KeptInfo>> {
    let info = match read_state(state_dir)? {
        Some(info) if is_running(&info) => return Ok(Some(info)),
        other => other,
    };
    if info.is_some() || state_path(state_dir).exists() {
        clear_stale(state_dir, info.as_ref())?;
    }
    Ok(None)
}

/// The running kept cluster recorded in `state_dir`, if any. A state file
/// whose server is dead is removed (with the cluster's files).
pub fn status_in(state_dir: &Path) -> anyhow::Result<Option<KeptInfo>> {
    if !state_path(state_dir).exists() {
        return Ok(None);
    }
    let _lock = StateLock::acquire(state_dir)?;
    status_locked(state_dir)
}

/// `status_in` the default state directory.
pub fn status() -> anyhow::Result<Option<KeptInfo>> {
    status_in(&paths::default_state_dir()?)
}

/// The URL of the running kept cluster with its password (the one that
/// logs in; shown redacted), or an error saying how to start one.
pub fn url_in(state_dir: &Path) -> anyhow::Result<SecretUrl> {
    match status_in(state_dir)? {
        Some(info) => login_url(state_dir, &info),
        None => anyhow::bail!("no kept cluster is running; start one with `racelab db start`"),
    }
}

/// `url_in` the default state directory.
pub fn url() -> anyhow::Result<SecretUrl> {
    url_in(&paths::default_state_dir()?)
}

/// `info.url` with the password of `state_dir` in it.
fn login_url(state_dir: &Path, info: &KeptInfo) -> anyhow::Result<SecretUrl> {
    let mut url = url::Url::parse(&info.url)
        .with_context(|| format!("the state file in {} is damaged", state_dir.display()))?;
    if let Some(pw) = read_password(state_dir)? {
        url.set_password(Some(pw.expose()))
            .map_err(|()| anyhow::anyhow!("could not put the password in {}", info.url))?;
    }
    Ok(SecretUrl::new(url))
}

/// Start a kept cluster and record it. If one is already running, returns
/// it unchanged (starting is idempotent).
pub async fn start(opts: &KeptOptions) -> anyhow::Result<KeptInfo> {
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || start_blocking(&opts))
        .await
        .context("the kept-cluster start task failed")?
}

fn start_blocking(opts: &KeptOptions) -> anyhow::Result<KeptInfo> {
    let state_dir = &opts.dirs.state_dir;
    let _lock = StateLock::acquire(state_dir)?;
    if let Some(info) = status_locked(state_dir)? {
        return Ok(info);
    }
    let bins = find_server_bins(opts.pg_bin.as_deref())?;
    let mut copts = ClusterOptions::new(bins, &opts.dirs)?;
    copts.durable = opts.durable;
    copts.max_connections = opts.max_connections;
    // Other programs reach it through TCP, with its password.
    copts.tcp = true;
    let dir = kept_cluster_dir(opts, copts.run_as.is_some())?;
    // Leftovers of a kept cluster whose state file was lost.
    cluster::kill_and_remove(&dir, &dir.join("data"), None)?;
    let cluster = Cluster::start_in(&copts, dir, Mode::Detached)?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let login = cluster
        .url()
        .context("the kept cluster listens on no TCP port")?
        .expose()
        .clone();
    let password = Secret::new(login.password().unwrap_or_default());
    let mut shown = login;
    let _ = shown.set_password(None);
    let mut info = KeptInfo {
        url: shown.to_string(),
        pid: cluster.pid(),
        port: cluster.port(),
        data_dir: cluster.data_dir().to_path_buf(),
        socket_dir: cluster.socket_dir().to_path_buf(),
        cluster_dir: cluster.dir().to_path_buf(),
        started_at,
        server_version: cluster.version().to_string(),
        durable: opts.durable,
        max_connections: opts.max_connections,
    };
    let json = serde_json::to_vec_pretty(&info)?;
    // If recording fails, the guard (still armed) stops the server.
    write_password(state_dir, &password)?;
    cluster::write_file_atomic(&state_path(state_dir), &json)
        .with_context(|| format!("could not write the state file in {}", state_dir.display()))?;
    info.pid = cluster.detach();
    Ok(info)
}

fn kept_cluster_dir(opts: &KeptOptions, as_other_user: bool) -> anyhow::Result<PathBuf> {
    if !as_other_user {
        return Ok(opts.dirs.state_dir.join("cluster"));
    }
    use sha2::Digest;
    paths::ensure_private_dir(&opts.dirs.temp_root)?;
    let hash = sha2::Sha256::digest(opts.dirs.state_dir.as_os_str().as_encoded_bytes());
    let tag: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    Ok(opts.dirs.temp_root.join(format!("kept-{tag}")))
}

/// Stop the kept cluster recorded in `state_dir` (SIGINT, wait), delete its
/// files and the state file. Returns whether a running cluster was stopped.
pub async fn stop_in(state_dir: &Path) -> anyhow::Result<bool> {
    let state_dir = state_dir.to_path_buf();
    tokio::task::spawn_blocking(move || stop_blocking(&state_dir))
        .await
        .context("the kept-cluster stop task failed")?
}

/// `stop_in` the default state directory.
pub async fn stop() -> anyhow::Result<bool> {
    stop_in(&paths::default_state_dir()?).await
}

fn stop_blocking(state_dir: &Path) -> anyhow::Result<bool> {
    if !state_path(state_dir).exists() {
        return Ok(false);
    }
    let _lock = StateLock::acquire(state_dir)?;
    let Some(info) = read_state(state_dir)? else {
        clear_stale(state_dir, None)?;
        return Ok(false);
    };
    let was_running = is_running(&info);
    if was_running && !proc::stop_postmaster_pid(info.pid, Duration::from_secs(30)) {
        anyhow::bail!("the kept cluster (pid {}) did not stop", info.pid);
    }
    clear_stale(state_dir, Some(&info))?;
    Ok(was_running)
}

/// The racelab runs using the kept cluster of `state_dir` now (each as
/// it names itself, see `claim`); none when no cluster is running.
pub async fn runs_using_in(state_dir: &Path) -> anyhow::Result<Vec<String>> {
    let Some(info) = status_in(state_dir)? else {
        return Ok(Vec::new());
    };
    let ask = async {
        let mut conn = sqlx::PgConnection::connect_with(&info.connect_options()).await?;
        let runs = super::claim::holders(&mut conn).await;
        let _ = conn.close().await;
        runs
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .map_err(|_| anyhow::anyhow!("the kept cluster did not answer within 10 s"))?
        .context("could not ask the kept cluster which runs use it")
}

/// `runs_using_in` the default state directory.
pub async fn runs_using() -> anyhow::Result<Vec<String>> {
    runs_using_in(&paths::default_state_dir()?).await
}

/// The kept cluster of `state_dir` if it is up: state file, live pid, and
/// its socket answers within `timeout`.
pub(crate) async fn find_live(state_dir: &Path, timeout: Duration) -> Option<KeptInfo> {
    let info = status_in(state_dir).ok()??;
    let conn = tokio::time::timeout(
        timeout,
        sqlx::PgConnection::connect_with(&info.connect_options()),
    )
    .await
    .ok()?
    .ok()?;
    let _ = conn.close().await;
    Some(info)
}
