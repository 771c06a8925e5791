//! A throwaway PostgreSQL cluster as an RAII guard.
//!
//! `Cluster::start` makes `<temp_root>/cluster-<pid>-<rand>/` holding
//! `owner` (a marker naming racelab's pid and start time, then the
//! postmaster's pid), `data/` (a copy of a cached pristine `initdb`
//! template), `sock/` (the private unix socket) and `server.log`; spawns
//! `postgres` directly and polls `postmaster.pid` until it says "ready".
//!
//! Only racelab gets in (see `auth`): the socket's directory is private,
//! and a cluster listens on TCP only when asked (`ClusterOptions::tcp`:
//! the kept cluster, `serve`), on loopback, behind a password of its own
//! that racelab sets right after the start; the cached template carries
//! none.
//! `shutdown()` (or, failing that, `Drop`) stops it with SIGINT and deletes
//! the directory. Every start first removes clusters whose owner is dead.
//!
//! The kept cluster (`kept`) reuses this machinery in detached mode.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::secret::{Secret, SecretUrl};

use super::auth;
use super::bins::PgBins;
use super::owner::is_young;
pub use super::owner::OwnerMarker;
use super::paths::{self, Dirs};
use super::proc::{self, RunAs};

/// How long a fast shutdown may take before racelab escalates.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long the postmaster may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when the chosen one turns out to be taken.
const PORT_TRIES: usize = 16;
/// The database superuser created by `initdb -U`.
pub const SUPERUSER: &str = "postgres";
/// The port number of a cluster without TCP: only the unix socket's name
/// (`.s.PGSQL.5432`) carries it, in a directory of its own, so it never
/// collides with anything.
const SOCKET_ONLY_PORT: u16 = 5432;

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub bins: PgBins,
    /// The per-user temp area (`Dirs::temp_root`).
    pub temp_root: PathBuf,
    /// The template cache (`Dirs::cache_dir`).
    pub cache_dir: PathBuf,
    /// fsync, synchronous_commit and full_page_writes on (off otherwise).
    pub durable: bool,
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// The account to run `initdb`/`postgres` as; `None`: this process's
    /// user. `ClusterOptions::new` fills it in (the `postgres` user as root).
    pub run_as: Option<RunAs>,
    /// Listen on TCP (127.0.0.1, a free port) as well, behind a password
    /// of this cluster's own (`Cluster::url`); otherwise the private unix
    /// socket is the only way in.
    pub tcp: bool,
}

impl ClusterOptions {
    /// Options with defaults: not durable, 100 connections, and the right
    /// server user for this process (see `proc::server_user`).
    pub fn new(bins: PgBins, dirs: &Dirs) -> anyhow::Result<ClusterOptions> {
        Ok(ClusterOptions {
            bins,
            temp_root: dirs.temp_root.clone(),
            cache_dir: dirs.cache_dir.clone(),
            durable: false,
            max_connections: 100,
            run_as: proc::server_user()?,
            tcp: false,
        })
    }
}

/// Whether the server dies with racelab (owned) or outlives it (kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Own process group, `PR_SET_PDEATHSIG(SIGINT)`, owner marker.
    Owned,
    /// Own session, no death signal: `racelab db start`.
    Detached,
}

/// Where a start spent its time (for benchmarks and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartTimings {
    /// Directory, marker, `postgres --version`.
    pub setup: Duration,
    /// Template copy (warm) or initdb and caching (cold).
    pub data_dir: Duration,
    /// Spawning the postmaster until it reports ready.
    pub ready: Duration,
    /// Whether the data directory came from `initdb` (no cached template).
    pub cold: bool,
}

/// A running throwaway cluster. Stop it with `shutdown()`; dropping it
/// stops it too (errors ignored).
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    data_dir: PathBuf,
    sock_dir: PathBuf,
    port: u16,
    /// The TCP URL with the cluster's password, when it listens on TCP.
    url: Option<SecretUrl>,
    version: String,
    durable: bool,
    child: Option<Child>,
    timings: StartTimings,
    /// Set once stopped or handed off (detached): Drop does nothing then.
    done: bool,
}

impl Cluster {
    /// Start an owned throwaway cluster in a new directory of the temp area,
    /// after removing stale ones (dead owners).
    pub fn start(opts: &ClusterOptions) -> anyhow::Result<Cluster> {
        paths::ensure_private_dir(&opts.temp_root)?;
        cleanup_stale(&opts.temp_root);
        let dir = opts.temp_root.join(format!(
            "cluster-{}-{}",
            std::process::id(),
            paths::random_suffix()
        ));
        Cluster::start_in(opts, dir, Mode::Owned)
    }

    /// Start a cluster in `dir` (created here; it must not exist).
    pub(crate) fn start_in(
        opts: &ClusterOptions,
        dir: PathBuf,
        mode: Mode,
    ) -> anyhow::Result<Cluster> {
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&dir)
            .with_context(|| format!("could not create cluster directory {}", dir.display()))?;
        // From here on the guard owns the directory: any error drops it,
        // which deletes the directory (and stops the server if it started).
        let mut cluster = Cluster {
            data_dir: dir.join("data"),
            sock_dir: dir.join("sock"),
            dir,
            port: 0,
            url: None,
            version: String::new(),
            durable: opts.durable,
            child: None,
            timings: StartTimings::default(),
            done: false,
        };
        let t0 = Instant::now();
        let mut marker = None;
        if mode == Mode::Owned {
            let m = OwnerMarker::current()?;
            m.write(&cluster.dir)
                .context("could not write the cluster owner marker")?;
            marker = Some(m);
        }
        cluster.version = opts.bins.version(Some(&opts.cache_dir))?;
        let t1 = Instant::now();
        cluster.timings.cold = cluster.make_data_dir(opts)?;
        cluster.write_hba(opts)?;
        let t2 = Instant::now();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&cluster.sock_dir)
            .with_context(|| format!("could not create {}", cluster.sock_dir.display()))?;
        if let Some(u) = &opts.run_as {
            proc::chown(&cluster.sock_dir, u.uid, u.gid)
                .with_context(|| format!("could not chown {}", cluster.sock_dir.display()))?;
        }
        let (child, port) = cluster.launch(opts, mode)?;
        cluster.timings.setup = t1 - t0;
        cluster.timings.data_dir = t2 - t1;
        cluster.timings.ready = t2.elapsed();
        let pid = child.id();
        cluster.child = Some(child);
        cluster.port = port;
        if opts.tcp {
            cluster.url = Some(cluster.set_password()?);
        }
        if let Some(mut m) = marker {
            m.postmaster_pid = Some(pid);
            m.write(&cluster.dir)
                .context("could not update the cluster owner marker")?;
        }
        Ok(cluster)
    }

    /// The TCP URL other programs can use, with the cluster's password
    /// (`postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres`; shown
    /// redacted); `None` when the cluster does not listen on TCP.
    pub fn url(&self) -> Option<&SecretUrl> {
        self.url.as_ref()
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The cluster directory (`data/`, `sock/`, `server.log`, `owner`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.sock_dir
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server version, e.g. `15.18`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the server runs with fsync and synchronous commit.
    pub fn durable(&self) -> bool {
        self.durable
    }

    /// Where the start spent its time.
    pub fn start_timings(&self) -> StartTimings {
        self.timings
    }

    /// Connection options through the unix socket (faster than TCP).
    pub fn connect_options(&self) -> PgConnectOptions {
        socket_connect_options(&self.sock_dir, self.port)
    }

    /// Stop the server (SIGINT, wait) and delete the directory.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    /// Hand the running server off (kept mode): the guard no longer stops
    /// it or deletes its directory. Returns the postmaster's pid.
    pub(crate) fn detach(mut self) -> u32 {
        self.done = true;
        // Dropping a Child neither kills nor waits for it.
        self.child.take().map_or(0, |c| c.id())
    }

    /// Replace the data directory's `pg_hba.conf` with racelab's (see
    /// `auth::PG_HBA`): whatever the template says, the socket is the only
    /// way in without the cluster's password.
    fn write_hba(&self, opts: &ClusterOptions) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.data_dir.join("pg_hba.conf");
        let what = || format!("could not write {}", path.display());
        let _ = fs::remove_file(&path);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(what)?;
        f.write_all(auth::PG_HBA.as_bytes()).with_context(what)?;
        if let Some(u) = &opts.run_as {
            std::os::unix::fs::fchown(&f, Some(u.uid), Some(u.gid)).with_context(what)?;
        }
        Ok(())
    }

    /// Give the superuser a fresh random password (as its SCRAM verifier:
    /// the password itself never reaches the server), over the unix
    /// socket, and return the TCP URL that carries it. Until this is done
    /// no TCP login can succeed: the role has no password.
    fn set_password(&self) -> anyhow::Result<SecretUrl> {
        let password = Secret::random();
        let sql = format!(
            "ALTER ROLE {SUPERUSER} PASSWORD {}",
            auth::sql_literal(&auth::scram_verifier(&password))
        );
        let options = self.connect_options();
        run_on_own_runtime(|| async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            sqlx::raw_sql(&sql).execute(&mut conn).await?;
            conn.close().await?;
            anyhow::Ok(())
        })
        .context("could not set the cluster's password")?;
        let url = url::Url::parse(&format!(
            "postgresql://{SUPERUSER}:{}@127.0.0.1:{}/postgres",
            password.expose(),
            self.port
        ))
        .context("the cluster's URL")?;
        Ok(SecretUrl::new(url))
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let mut result = Ok(());
        let t0 = Instant::now();
        if let Some(mut child) = self.child.take() {
            result = stop_child(&mut child);
        }
        remove_orphaned_interlock(&self.data_dir);
        let t1 = Instant::now();
        let removed = remove_cluster_dir(&self.dir, &self.data_dir);
        crate::timings::record("  cluster: server exited", t1 - t0);
        crate::timings::record("  cluster: directory deleted", t1.elapsed());
        if let Err(e) = removed {
            if result.is_ok() {
                result = Err(e).with_context(|| {
                    format!(
                        "could not delete the cluster directory {}",
                        self.dir.display()
                    )
                });
            }
        }
        result
    }

    /// Fill `data/`: copy the cached template, or `initdb` (and cache it).
    /// Returns whether it was cold (initdb).
    fn make_data_dir(&self, opts: &ClusterOptions) -> anyhow::Result<bool> {
        let template = opts.cache_dir.join(format!("template-{}", self.version));
        if template.join("PG_VERSION").is_file() {
            let owner = opts.run_as.as_ref().map(|u| (u.uid, u.gid));
            copy_tree(&template, &self.data_dir, owner)?;
            return Ok(false);
        }
        self.initdb(opts)?;
        // Caching is an optimisation: a failure only costs the next run an initdb.
        let _ = cache_template(&self.data_dir, &opts.cache_dir, &template);
        Ok(true)
    }

    fn initdb(&self, opts: &ClusterOptions) -> anyhow::Result<()> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| format!("could not create {}", self.data_dir.display()))?;
        if let Some(u) = &opts.run_as {
            proc::chown(&self.data_dir, u.uid, u.gid)
                .with_context(|| format!("could not chown {}", self.data_dir.display()))?;
        }
        let log_path = self.dir.join("initdb.log");
        let log = fs::File::create(&log_path).context("could not create initdb.log")?;
        let mut cmd = Command::new(&opts.bins.initdb);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .args(wal_segsize_arg(&self.version))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(u) = &opts.run_as {
            cmd.uid(u.uid).gid(u.gid);
        }
        let status = cmd
            .status()
            .with_context(|| format!("could not run {}", opts.bins.initdb.display()))?;
        if !status.success() {
            bail!(
                "initdb failed ({status}): {}",
                log_tail(&log_path, 3).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Spawn the postmaster and wait until it is ready, retrying with
    /// another port when the chosen one was taken meanwhile.
    fn launch(&self, opts: &ClusterOptions, mode: Mode) -> anyhow::Result<(Child, u16)> {
        let log_path = self.dir.join("server.log");
        let mut last_err = None;
        for _ in 0..PORT_TRIES {
            let port = if opts.tcp {
                pick_port()?
            } else {
                SOCKET_ONLY_PORT
            };
            let socket = self.sock_dir.join(format!(".s.PGSQL.{port}"));
            if socket.as_os_str().len() >= 108 {
                bail!(
                    "the socket path {} is too long for a unix socket; set TMPDIR to a shorter directory",
                    socket.display()
                );
            }
            let mut child = self.spawn_postmaster(opts, mode, port, &log_path)?;
            match wait_ready(&mut child, &self.data_dir, &socket, &log_path) {
                Ok(()) => return Ok((child, port)),
                Err(Startup::PortTaken) => {
                    last_err = Some(anyhow!("port {port} was taken"));
                    let _ = fs::remove_file(self.data_dir.join("postmaster.pid"));
                    continue;
                }
                Err(Startup::Failed(e)) => {
                    let _ = stop_child(&mut child);
                    return Err(e);
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no port"))
            .context("could not find a free TCP port on 127.0.0.1 for the server"))
    }

    fn spawn_postmaster(
        &self,
        opts: &ClusterOptions,
        mode: Mode,
        port: u16,
        log_path: &Path,
    ) -> anyhow::Result<Child> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .context("could not open server.log")?;
        let mut cmd = Command::new(&opts.bins.postgres);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-k")
            .arg(&self.sock_dir)
            .arg("-p")
            .arg(port.to_string());
        let memory = paths::on_memory_fs(&self.data_dir);
        for setting in server_settings(opts, memory) {
            cmd.arg("-c").arg(setting);
        }
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("PGDATA")
            .env_remove("PGPORT");
        if let Some(u) = &opts.run_as {
            // std applies setgroups/setgid/setuid before the pre_exec hooks,
            // which matters: changing uid clears PDEATHSIG.
            cmd.uid(u.uid).gid(u.gid);
        }
        let spawned = match mode {
            Mode::Owned => proc::spawn_owned(cmd, libc::SIGINT),
            Mode::Detached => {
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                cmd.spawn()
            }
        };
        spawned.with_context(|| format!("could not start {}", opts.bins.postgres.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// 1 MB WAL segments instead of 16 MB: the template shrinks from ~39 MB to
/// ~28 MB, and copying it is most of a warm start. A throwaway lab loses
/// nothing by it. (`--wal-segsize` exists since PostgreSQL 11.)
fn wal_segsize_arg(version: &str) -> Option<&'static str> {
    let major: u32 = version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    (major >= 11).then_some("--wal-segsize=1")
}

/// `-c` settings for the postmaster; `memory`: its data directory is on a
/// memory file system.
fn server_settings(opts: &ClusterOptions, memory: bool) -> Vec<String> {
    let mut s = vec![
        // No TCP unless asked for: the private socket is all racelab needs.
        format!(
            "listen_addresses={}",
            if opts.tcp { "127.0.0.1" } else { "" }
        ),
        "password_encryption=scram-sha-256".into(),
        format!("max_connections={}", opts.max_connections),
        // The log goes to server.log through stderr; keep it quiet: every
        // serialization failure would otherwise log an ERROR and its
        // statement (tens of MB per run).
        "logging_collector=off".into(),
        "log_destination=stderr".into(),
        "log_min_messages=fatal".into(),
        "log_min_error_statement=panic".into(),
        "log_checkpoints=off".into(),
        "log_connections=off".into(),
        "log_disconnections=off".into(),
        "log_autovacuum_min_duration=-1".into(),
        "log_lock_waits=off".into(),
        "log_statement=none".into(),
        "log_min_duration_statement=-1".into(),
        "ssl=off".into(),
    ];
    if !opts.durable {
        s.extend([
            "fsync=off".to_string(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
        ]);
    }
    if memory || !opts.durable {
        // Dynamic shared memory as files in data/pg_dynshmem rather than
        // POSIX segments in /dev/shm: a postmaster killed with SIGKILL
        // cannot remove its segments, and these go with the directory.
        // PostgreSQL advises against `mmap` on disk, where the kernel writes
        // the pages back: in memory there is no disk, and a throwaway
        // cluster on disk has its writes unsynced anyway. A durable one on
        // disk keeps POSIX segments.
        s.push("dynamic_shared_memory_type=mmap".into());
    }
    s
}

enum Startup {
    PortTaken,
    Failed(anyhow::Error),
}

/// Poll `postmaster.pid` (status line "ready") and the socket every ~1 ms.
fn wait_ready(
    child: &mut Child,
    data_dir: &Path,
    socket: &Path,
    log: &Path,
) -> Result<(), Startup> {
    let pidfile = data_dir.join("postmaster.pid");
    let started = Instant::now();
    let mut buf = String::new();
    loop {
        if let Ok(mut f) = fs::File::open(&pidfile) {
            buf.clear();
            if f.read_to_string(&mut buf).is_ok()
                && buf.lines().nth(7).map(str::trim) == Some("ready")
                && socket.exists()
            {
                return Ok(());
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let tail = log_tail(log, 3).unwrap_or_default();
                if tail.contains("could not create any TCP/IP sockets")
                    || tail.contains("Address already in use")
                {
                    return Err(Startup::PortTaken);
                }
                return Err(Startup::Failed(anyhow!(
                    "the PostgreSQL server exited during start-up ({status}): {tail}"
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(Startup::Failed(e.into())),
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(Startup::Failed(anyhow!(
                "the PostgreSQL server was not ready after {}s: {}",
                READY_TIMEOUT.as_secs(),
                log_tail(log, 3).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stop a throwaway server whose directory is deleted next: SIGQUIT
/// (immediate shutdown: no shutdown checkpoint, the data is not kept) and
/// wait; escalate to SIGKILL. The postmaster still waits for its children
/// and removes its shared memory and socket, so nothing is left behind.
/// Measured here after a 100-buyer race: 46 ms for a fast shutdown (SIGINT,
/// which writes a checkpoint first), 11-14 ms for an immediate one.
fn stop_child(child: &mut Child) -> anyhow::Result<()> {
    let pid = child.id();
    for (sig, wait) in [
        (libc::SIGQUIT, Duration::from_secs(5)),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        proc::signal(pid, sig)
            .with_context(|| format!("could not signal the server (pid {pid})"))?;
        let deadline = Instant::now() + wait;
        let mut nap = Duration::from_micros(200);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(2));
        }
    }
    bail!("the PostgreSQL server (pid {pid}) did not stop")
}

/// Run `work` to completion on a runtime of its own, on a thread of its
/// own: the cluster guard is synchronous, and may be called from a
/// blocking task of a runtime (where blocking on that runtime would panic)
/// or from none at all.
fn run_on_own_runtime<T: Send, F: std::future::Future<Output = anyhow::Result<T>>>(
    work: impl FnOnce() -> F + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("could not start a runtime")?
                    .block_on(work())
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the thread panicked")))
    })
}

/// A random port for the server to try. Nothing is bound here to see
/// whether it is free: the port would be free only until the socket
/// closed, for anyone. The server binds it itself, and when that fails
/// (someone holds it) `launch` retries with another.
fn pick_port() -> anyhow::Result<u16> {
    use rand::Rng;
    Ok(rand::thread_rng().gen_range(20_000..60_000))
}

/// Unix-socket connection options for a local cluster.
pub(crate) fn socket_connect_options(sock_dir: &Path, port: u16) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .socket(sock_dir)
        .port(port)
        .username(SUPERUSER)
        .database("postgres")
        .ssl_mode(PgSslMode::Disable)
}

/// Copy a directory tree (a data directory: plain files and directories;
/// symlinks are recreated), keeping modes and, if `owner` is given, making
/// everything owned by it. Directories are made first, then the files are
/// copied on two threads.
///
/// Why not `cp -a`: a template is ~1000 small files, so the copy is bound by
/// syscalls, and `cp -a` spends ~17 per file (xattrs, ACLs, timestamps,
/// reflink probes) where this spends ~6; measured here it is 2-3x faster,
/// and the copy is most of a warm start.
fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    fn make_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        fs::DirBuilder::new().mode(mode & 0o7777).create(path)?;
        if let Some((uid, gid)) = owner {
            proc::chown(path, uid, gid)?;
        }
        Ok(())
    }
    fn walk(
        from: &Path,
        to: &Path,
        owner: Option<(u32, u32)>,
        files: &mut Vec<(PathBuf, PathBuf, u32, u64)>,
    ) -> io::Result<()> {
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            let (src, dst) = (entry.path(), to.join(entry.file_name()));
            let meta = fs::symlink_metadata(&src)?;
            if meta.is_dir() {
                make_dir(&dst, meta.mode(), owner)?;
                walk(&src, &dst, owner, files)?;
            } else if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
                if let Some((uid, gid)) = owner {
                    proc::chown(&dst, uid, gid)?;
                }
            } else {
                files.push((src, dst, meta.mode() & 0o7777, meta.len()));
            }
        }
        Ok(())
    }
    fn copy_file(
        src: &Path,
        dst: &Path,
        mode: u32,
        len: u64,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(dst)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&to, Some(uid), Some(gid))?;
        }
        // A sixth of a template's files are empty: no need to open them.
        if len > 0 {
            io::copy(&mut fs::File::open(src)?, &mut to)?;
        }
        Ok(())
    }

    let what = || format!("could not copy {} to {}", from.display(), to.display());
    let mode = fs::metadata(from).with_context(what)?.mode();
    make_dir(to, mode, owner).with_context(what)?;
    let mut files = Vec::new();
    walk(from, to, owner, &mut files).with_context(what)?;
    let chunk = files.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().try_for_each(|(src, dst, mode, len)| {
                        copy_file(src, dst, *mode, *len, owner)
                            .map_err(|e| anyhow!("{}: {e}", dst.display()))
                    })
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow!("a copy thread panicked")))
        })
    })
    .with_context(what)
}

/// Copy a fresh data dir into the cache under a temp name, then rename it
/// into place: two racelabs doing this at once both succeed, one wins.
fn cache_template(data_dir: &Path, cache_dir: &Path, template: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(cache_dir)?;
    let tmp = cache_dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        paths::random_suffix()
    ));
    copy_tree(data_dir, &tmp, None)?;
    // Not a running cluster's: no pid file in the template.
    let _ = fs::remove_file(tmp.join("postmaster.pid"));
    if fs::rename(&tmp, template).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The last `n` non-empty lines of a log, joined with " | ".
fn log_tail(path: &Path, n: usize) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Some(lines[lines.len().saturating_sub(n)..].join(" | "))
}

/// After a postmaster that died without cleaning up (SIGKILL, the OOM
/// killer): remove the small System V segment it keeps as an interlock,
/// which the kernel would otherwise keep until the machine restarts (a
/// postmaster removes it itself when it stops, and on its next start in the
/// same data directory, which a throwaway cluster never has). Line 7 of
/// `postmaster.pid`, still there when the postmaster did not stop cleanly,
/// names its key and id. Removed once nothing is attached: the dead
/// postmaster's children notice its death and exit within moments.
fn remove_orphaned_interlock(data_dir: &Path) {
    let Ok(pidfile) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let mut ids = pidfile.lines().nth(6).unwrap_or("").split_whitespace();
    // Written as an unsigned long: the key's bits, whatever its sign.
    let key = ids
        .next()
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| k as libc::key_t);
    let id = ids.next().and_then(|i| i.parse::<libc::c_int>().ok());
    let (Some(key), Some(id)) = (key, id) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // SAFETY: shmctl(IPC_STAT) writes one shmid_ds through a valid
        // pointer; IPC_RMID takes none.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 || ds.shm_perm.__key != key {
            return; // gone already, or another segment now has that id
        }
        if ds.shm_nattch == 0 {
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Delete a stopped cluster's directory `dir`. Deleting is bound by system
/// calls (a data directory is ~1000 small files: ~20 ms on one thread
/// here), so half the databases' directories go on a second thread while
/// this one deletes the other half; then the rest goes, with whatever the
/// two could not delete, and that last step's result is the answer.
fn remove_cluster_dir(dir: &Path, data_dir: &Path) -> io::Result<()> {
    let mut databases: Vec<PathBuf> = fs::read_dir(data_dir.join("base"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let theirs = databases.split_off(databases.len() / 2);
    let helper = std::thread::Builder::new()
        .name("racelab-rm".into())
        .spawn(move || {
            for d in &theirs {
                let _ = fs::remove_dir_all(d);
            }
        });
    for d in &databases {
        let _ = fs::remove_dir_all(d);
    }
    if let Ok(h) = helper {
        let _ = h.join();
    }
    paths::remove_dir_all_quiet(dir)
}

/// Whether `pid` is a postgres process serving `data_dir` (guards against
/// a reused pid before signalling it).
pub(crate) fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    if proc::comm(pid).as_deref() != Some("postgres") {
        return false;
    }
    let by_cmdline = proc::cmdline(pid).is_some_and(|c| c.contains(&*data_dir.to_string_lossy()));
    let by_cwd = match (
        fs::read_link(format!("/proc/{pid}/cwd")),
        fs::canonicalize(data_dir),
    ) {
        (Ok(cwd), Ok(data)) => cwd == data,
        _ => false,
    };
    by_cmdline || by_cwd
}

/// The postmaster pid from `data/postmaster.pid`, if any.
pub(crate) fn pid_from_pidfile(data_dir: &Path) -> Option<u32> {
    fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Stop the postmaster of `data_dir` (if it is really running) and delete
/// `dir`. Used for stale clusters and for kept clusters.
pub(crate) fn kill_and_remove(
    dir: &Path,
    data_dir: &Path,
    pid_hint: Option<u32>,
) -> anyhow::Result<()> {
    for pid in pid_hint.into_iter().chain(pid_from_pidfile(data_dir)) {
        if proc::alive(pid) && is_postmaster_of(pid, data_dir) {
            proc::stop_postmaster_pid(pid, STOP_GRACE);
        }
    }
    paths::remove_dir_all_quiet(dir).with_context(|| format!("could not delete {}", dir.display()))
}

/// Remove the cluster directories of `temp_root` whose owner is dead (or
/// whose pid was reused), stopping their postmasters first. Returns the
/// directories removed. A directory without a readable marker is left
/// alone for a minute (its owner may be writing it).
pub fn cleanup_stale(temp_root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(temp_root) else {
        return removed;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("cluster-") {
            continue;
        }
        let dir = entry.path();
        let pm_pid = match OwnerMarker::read(&dir) {
            Some(m) if proc::same_process_alive(m.racelab_pid, m.racelab_start) => continue,
            Some(m) => m.postmaster_pid,
            None if is_young(&entry) => continue,
            None => None,
        };
        if kill_and_remove(&dir, &dir.join("data"), pm_pid).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Write a file whole and durably (see `files`), mode 0644.
pub(crate) fn write_file_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    crate::files::write_atomic_mode(path, contents, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_wal_segments_where_supported() {
        assert_eq!(wal_segsize_arg("15.18"), Some("--wal-segsize=1"));
        assert_eq!(wal_segsize_arg("17beta1"), Some("--wal-segsize=1"));
        assert_eq!(wal_segsize_arg("10.23"), None);
        assert_eq!(wal_segsize_arg("9.6.24"), None);
    }

    #[test]
    fn non_durable_settings_turn_off_fsync() {
        let bins = PgBins {
            initdb: "/x/initdb".into(),
            postgres: "/x/postgres".into(),
            source: crate::db::bins::BinSource::Explicit,
        };
        let mut opts = ClusterOptions {
            bins,
            temp_root: "/tmp/x".into(),
            cache_dir: "/tmp/y".into(),
            durable: false,
            max_connections: 42,
            run_as: None,
            tcp: false,
        };
        let s = server_settings(&opts, true);
        assert!(s.contains(&"listen_addresses=".to_string()));
        opts.tcp = true;
        assert!(server_settings(&opts, true).contains(&"listen_addresses=127.0.0.1".to_string()));
        assert!(s.contains(&"fsync=off".to_string()));
        assert!(s.contains(&"max_connections=42".to_string()));
        assert!(s.contains(&"dynamic_shared_memory_type=mmap".to_string()));
        opts.durable = true;
        let s = server_settings(&opts, false);
        assert!(!s.iter().any(|s| s.starts_with("fsync")));
        assert!(!s.iter().any(|s| s.starts_with("dynamic_shared_memory")));
        assert!(server_settings(&opts, true).contains(&"dynamic_shared_memory_type=mmap".into()));
    }
}
