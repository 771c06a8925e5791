//! PgBouncer between the buyers and the server (`--via pgbouncer`): an
//! embedded `pgbouncer` in its own private directory (its config, log and
//! unix socket; no TCP port), pooling the buyers' connections onto
//! `pool_size` server connections in session, transaction or statement
//! mode. Only the buyers connect through it: setup, reset and the audit go
//! to the server directly. It is restarted before every race, so that no
//! server connection (and no session state left on one, such as a session
//! advisory lock) outlives the race that made it, and stopped by pid at
//! the end (see `daemon`), also on error and Ctrl-C.
//!
//! Clients authenticate with `auth_type = any` on the private socket; the
//! `[databases]` line logs in to the server as the lab's user, with its
//! password when the server needs one. The config file is only readable by
//! its owner and goes away with the directory; no password is ever printed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::daemon::{self, Daemon, Spawn};
use super::proc::{self, RunAs};

/// The port number in the socket's name (`.s.PGSQL.6432`); the socket
/// lives in a private directory, so it never collides.
const PORT: u16 = 6432;
/// The database name buyers connect to.
const ALIAS: &str = "racelab";

/// PgBouncer's `pool_mode`: when a server connection goes back to the pool.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// When the client disconnects: a client keeps one server connection.
    Session,
    /// After each transaction (and each statement outside one).
    Transaction,
    /// After each statement: multi-statement transactions are refused.
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }

    /// Whether one client's statements may run on different server
    /// connections, so that nothing may rely on server-side session state
    /// (named prepared statements, session locks, SET) between them.
    pub fn switches_connections(self) -> bool {
        self != PoolMode::Session
    }
}

/// The default `--pool-size`: PgBouncer's own `default_pool_size`.
pub const DEFAULT_POOL_SIZE: u32 = 20;

/// How to run PgBouncer (built by `plan`).
#[derive(Debug, Clone)]
pub struct PgBouncerOptions {
    /// `--pgbouncer-bin DIR`: where `pgbouncer` is.
    pub bin: Option<PathBuf>,
    pub pool_mode: PoolMode,
    /// Server connections (`default_pool_size`).
    pub pool_size: u32,
    /// Client connections to allow (`max_client_conn`).
    pub max_clients: u32,
}

/// The server PgBouncer connects to, as its `[databases]` line says it.
#[derive(Clone)]
pub struct Upstream {
    /// A host name or address, or the directory of a unix socket.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub password: Option<String>,
    /// `SET` statements every server connection runs first (the lab's
    /// search_path and the run's timeouts: PgBouncer does not pass a
    /// client's startup options on).
    pub connect_query: String,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Find `pgbouncer`: in `--pgbouncer-bin DIR`, else on `PATH`, else
/// `/usr/sbin` (where Debian puts it), `/usr/bin`, `/usr/local/bin`.
pub fn find_pgbouncer(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    daemon::find_program(
        "pgbouncer",
        explicit,
        "--pgbouncer-bin",
        &["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"],
        "--via pgbouncer",
        "install it (`apt-get install pgbouncer`, `brew install pgbouncer`), \
         point at it with --pgbouncer-bin DIR, or run without --via pgbouncer",
    )
}

/// A running embedded PgBouncer.
pub struct PgBouncer {
    daemon: Daemon,
    exe: PathBuf,
    run_as: Option<RunAs>,
    opts: PgBouncerOptions,
}

impl PgBouncer {
    /// Write the config and start PgBouncer in front of `upstream`, as the
    /// server's unprivileged user when racelab runs as root (PgBouncer
    /// refuses to run as root).
    pub async fn start(opts: &PgBouncerOptions, upstream: &Upstream) -> anyhow::Result<PgBouncer> {
        let opts = opts.clone();
        let upstream = upstream.clone();
        tokio::task::spawn_blocking(move || PgBouncer::start_blocking(opts, &upstream))
            .await
            .context("the pgbouncer start task failed")?
    }

    fn start_blocking(opts: PgBouncerOptions, upstream: &Upstream) -> anyhow::Result<PgBouncer> {
        let exe = find_pgbouncer(opts.bin.as_deref())?;
        let run_as = proc::server_user()?;
        let dir = Daemon::make_dir("pgbouncer", "pgbouncer", run_as.as_ref())?;
        let ini = dir.join("pgbouncer.ini");
        let written = write_private(&ini, &config(&opts, upstream, &dir), run_as.as_ref());
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let daemon = Daemon::spawn(spawn(&exe, &ini, run_as.as_ref()), dir)?;
        let mut bouncer = PgBouncer {
            daemon,
            exe,
            run_as,
            opts,
        };
        bouncer.wait_ready()?;
        Ok(bouncer)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let socket = self.socket_dir().join(format!(".s.PGSQL.{PORT}"));
        let log = self.daemon.dir().join("pgbouncer.log");
        self.daemon.wait_ready(&log, Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })
    }

    /// The directory of the listening unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// The pid of the running pgbouncer.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn pool_mode(&self) -> PoolMode {
        self.opts.pool_mode
    }

    pub fn pool_size(&self) -> u32 {
        self.opts.pool_size
    }

    /// How buyers connect: the private socket, the alias database. The
    /// search_path and timeouts come from the server side (`connect_query`).
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(self.socket_dir())
            .port(PORT)
            .username("racelab")
            .database(ALIAS)
            .ssl_mode(PgSslMode::Disable)
            .application_name("racelab")
    }

    /// Stop PgBouncer and start it again on the same socket, so that the
    /// next race starts on new server connections. Blocks for the few
    /// milliseconds that takes (between races, nothing else runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.daemon.halt_keep_dir()?;
        let ini = self.daemon.dir().join("pgbouncer.ini");
        self.daemon
            .respawn(spawn(&self.exe, &ini, self.run_as.as_ref()))?;
        self.wait_ready()
    }

    /// Stop PgBouncer by pid and remove its directory.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.daemon.stop())
            .await
            .context("the pgbouncer stop task failed")?
    }
}

fn spawn<'a>(exe: &Path, ini: &Path, run_as: Option<&'a RunAs>) -> Spawn<'a> {
    let mut cmd = Command::new(exe);
    // -q: quiet on stderr (the log file has it all).
    cmd.arg("-q").arg(ini);
    Spawn {
        name: "pgbouncer",
        cmd,
        run_as,
    }
}

/// Write a file only its owner (`run_as`, or racelab) can read.
fn write_private(path: &Path, text: &str, run_as: Option<&RunAs>) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let what = || format!("could not write {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(what)?;
    f.write_all(text.as_bytes()).with_context(what)?;
    if let Some(u) = run_as {
        proc::chown(path, u.uid, u.gid).with_context(what)?;
    }
    Ok(())
}

/// A value for PgBouncer's config: in single quotes, quotes doubled.
fn quoted(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// DISCARD ALL, spelled out (DISCARD ALL itself cannot share a query
/// string), then `settings` again.
fn reset_query(settings: &str) -> String {
    let mut q = "CLOSE ALL; SELECT pg_advisory_unlock_all(); UNLISTEN *; DEALLOCATE ALL; \
                 DISCARD PLANS; DISCARD SEQUENCES; DISCARD TEMP; RESET ALL"
        .to_string();
    if !settings.is_empty() {
        q.push_str("; ");
        q.push_str(settings);
    }
    q
}

/// The whole `pgbouncer.ini`.
fn config(opts: &PgBouncerOptions, up: &Upstream, dir: &Path) -> String {
    let mut db = format!(
        "host={} port={} dbname={} user={}",
        quoted(&up.host),
        up.port,
        quoted(&up.dbname),
        quoted(&up.user)
    );
    if let Some(pw) = &up.password {
        let _ = write!(db, " password={}", quoted(pw));
    }
    if !up.connect_query.is_empty() {
        let _ = write!(db, " connect_query={}", quoted(&up.connect_query));
    }
    let mut s = String::new();
    let _ = writeln!(s, "[databases]\n{ALIAS} = {db}\n");
    let _ = writeln!(s, "[pgbouncer]");
    for (k, v) in [
        // The private unix socket only (no listen_addr: no TCP port to pick
        // or to race for).
        ("listen_port", PORT.to_string()),
        ("unix_socket_dir", dir.display().to_string()),
        ("unix_socket_mode", "0700".into()),
        ("auth_type", "any".into()),
        ("pool_mode", opts.pool_mode.as_str().into()),
        ("default_pool_size", opts.pool_size.to_string()),
        ("min_pool_size", "0".into()),
        ("reserve_pool_size", "0".into()),
        ("max_client_conn", opts.max_clients.to_string()),
        // sqlx sends these at start-up; PgBouncer refuses what it does not
        // know. The search_path and timeouts come from connect_query.
        (
            "ignore_startup_parameters",
            "extra_float_digits,options".into(),
        ),
        // Session state is only reset when a session-pooled client leaves
        // (as by default): in transaction pooling it stays with the server
        // connection, as in production. What DISCARD ALL does, but with the
        // lab's settings put back (the next client needs its search_path).
        ("server_reset_query", reset_query(&up.connect_query)),
        ("server_reset_query_always", "0".into()),
        ("server_login_retry", "1".into()),
        ("logfile", dir.join("pgbouncer.log").display().to_string()),
        ("log_connections", "0".into()),
        ("log_disconnections", "0".into()),
        ("log_stats", "0".into()),
        ("stats_period", "3600".into()),
    ] {
        let _ = writeln!(s, "{k} = {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_quotes_values_and_hides_nothing_it_needs() {
        let up = Upstream {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "bob".into(),
            dbname: "shop".into(),
            password: Some("it's".into()),
            connect_query: "SET search_path TO \"racelab\"".into(),
        };
        let opts = PgBouncerOptions {
            bin: None,
            pool_mode: PoolMode::Transaction,
            pool_size: 7,
            max_clients: 120,
        };
        let c = config(&opts, &up, Path::new("/tmp/x"));
        assert!(
            c.contains("racelab = host='127.0.0.1' port=5432 dbname='shop' user='bob' password='it''s' connect_query='SET search_path TO \"racelab\"'"),
            "{c}"
        );
        for line in [
            "pool_mode = transaction",
            "default_pool_size = 7",
            "max_client_conn = 120",
            "unix_socket_dir = /tmp/x",
        ] {
            assert!(c.contains(line), "{line:?} missing:\n{c}");
        }
        assert!(!format!("{up:?}").contains("it's"));
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let err = find_pgbouncer(Some(Path::new("/nonexistent"))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--pgbouncer-bin /nonexistent")
                && msg.contains("apt-get install pgbouncer"),
            "{msg}"
        );
    }
}
