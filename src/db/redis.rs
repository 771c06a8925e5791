//! Redis beside the database: an embedded `redis-server` (a guard that
//! stops it by pid on success, error, panic and Ctrl-C) or an external one
//! (`--redis-url`), and the lab's keys on it: seeded from the initial stock
//! before each race, read by the audit, deleted afterwards. Every key
//! racelab touches starts with its prefix; nothing else is read or written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;

use super::daemon::{self, Daemon, Spawn};

/// Where Redis comes from (built by `plan`).
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `--redis-url`: an external server; otherwise racelab starts one.
    pub url: Option<String>,
    /// `--redis-bin DIR`: where `redis-server` is.
    pub bin: Option<PathBuf>,
}

/// A connected Redis with racelab's key prefix.
pub struct Redis {
    client: redis::Client,
    admin: MultiplexedConnection,
    prefix: Arc<str>,
    server: Option<RedisServer>,
}

impl Redis {
    /// Start an embedded server (no `url`) or connect to `url`. `prefix` is
    /// put before every key (e.g. `racelab:`).
    pub async fn open(opts: &RedisOptions, prefix: &str) -> anyhow::Result<Redis> {
        let (server, url) = match &opts.url {
            Some(u) => (None, u.clone()),
            None => {
                let s = tokio::task::spawn_blocking({
                    let bin = opts.bin.clone();
                    move || RedisServer::start(bin.as_deref())
                })
                .await
                .context("starting redis-server")??;
                let url = format!("redis+unix://{}", s.socket.display());
                (Some(s), url)
            }
        };
        let client = redis::Client::open(url.as_str())
            .with_context(|| format!("--redis-url {}: not a Redis URL", redact(&url)))?;
        let admin = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_tokio_connection(),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("could not connect to Redis at {}", redact(&url)))?;
        Ok(Redis {
            client,
            admin,
            prefix: prefix.into(),
            server,
        })
    }

    /// "embedded" or "external".
    pub fn kind(&self) -> &'static str {
        if self.server.is_some() {
            "embedded"
        } else {
            "external"
        }
    }

    /// A client for the buyers' own connections.
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    pub fn prefix(&self) -> Arc<str> {
        self.prefix.clone()
    }

    /// A new connection of its own, for one buyer.
    pub async fn connect(&self) -> anyhow::Result<MultiplexedConnection> {
        self.client
            .get_multiplexed_tokio_connection()
            .await
            .context("connecting a buyer to Redis")
    }

    /// The key of a product's stock counter.
    fn stock_key(&self, product: i64) -> String {
        format!("{}stock:{product}", self.prefix)
    }

    /// Delete every key under the prefix (and only those); how many.
    pub async fn clear(&self) -> anyhow::Result<u64> {
        let mut conn = self.admin.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .context("listing racelab's Redis keys")?;
            // SCAN's MATCH is a glob: check the prefix again, exactly.
            let mine: Vec<&String> = keys
                .iter()
                .filter(|k| k.starts_with(&*self.prefix))
                .collect();
            if !mine.is_empty() {
                let n: u64 = redis::cmd("DEL")
                    .arg(mine)
                    .query_async(&mut conn)
                    .await
                    .context("deleting racelab's Redis keys")?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// A fresh lab in Redis: racelab's keys deleted, then `stock:{id}` set
    /// to each product's initial stock.
    pub async fn seed(&self, products: &[(i64, i64)]) -> anyhow::Result<()> {
        self.clear().await?;
        let mut conn = self.admin.clone();
        for &(id, stock) in products {
            let _: () = redis::cmd("SET")
                .arg(self.stock_key(id))
                .arg(stock)
                .query_async(&mut conn)
                .await
                .context("seeding the Redis stock")?;
        }
        Ok(())
    }

    /// Each product's stock counter as Redis holds it now (None: no key).
    pub async fn stock(&self, products: &[i64]) -> anyhow::Result<Vec<Option<i64>>> {
        let mut conn = self.admin.clone();
        let mut out = Vec::with_capacity(products.len());
        for &id in products {
            let v: Option<String> = redis::cmd("GET")
                .arg(self.stock_key(id))
                .query_async(&mut conn)
                .await
                .context("reading the Redis stock")?;
            out.push(match v {
                None => None,
                Some(s) => Some(s.trim().parse().with_context(|| {
                    format!("the Redis stock of product {id} is not an integer: {s:?}")
                })?),
            });
        }
        Ok(out)
    }

    /// Delete racelab's keys and stop an embedded server.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let cleared = self.clear().await;
        if let Some(s) = self.server.take() {
            tokio::task::spawn_blocking(move || s.stop())
                .await
                .context("stopping redis-server")??;
        }
        cleared.map(|_| ())
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Escape a glob's special characters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Find `redis-server`: in `--redis-bin DIR`, else on `PATH`, else
/// `/usr/bin`, `/usr/local/bin`.
pub fn find_redis_server(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    daemon::find_program(
        "redis-server",
        explicit,
        "--redis-bin",
        &["/usr/bin", "/usr/local/bin"],
        "a strategy uses Redis and no --redis-url was given",
        "install it (`apt-get install redis-server`, `brew install redis`), \
         point at it with --redis-bin DIR, or pass --redis-url",
    )
}

/// An embedded `redis-server`: no persistence, a private unix socket (no
/// TCP port), its own temporary directory; stopped by pid and the
/// directory removed on `stop` or drop (see `daemon`).
struct RedisServer {
    daemon: Daemon,
    socket: PathBuf,
}

impl RedisServer {
    fn start(bin: Option<&Path>) -> anyhow::Result<RedisServer> {
        let exe = find_redis_server(bin)?;
        let dir = Daemon::make_dir("redis", "redis-server", None)?;
        let socket = dir.join("redis.sock");
        let log = dir.join("redis.log");
        let mut cmd = Command::new(&exe);
        cmd.arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--daemonize")
            .arg("no");
        let spawn = Spawn {
            name: "redis-server",
            cmd,
            run_as: None,
        };
        let mut daemon = Daemon::spawn(spawn, dir)
            .with_context(|| format!("could not start {}", exe.display()))?;
        daemon.wait_ready(&log, Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })?;
        Ok(RedisServer { daemon, socket })
    }

    fn stop(self) -> anyhow::Result<()> {
        self.daemon.stop()
    }
}
