//! Redis beside the database: an embedded `redis-server` (a guard that
//! stops it by pid on success, error, panic and Ctrl-C) or an external one
//! (`--redis-url`), and the lab's keys on it: seeded from the initial stock
//! before each race, read by the audit, deleted afterwards. Every key
//! racelab touches starts with its prefix; nothing else is read or written.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use redis::aio::MultiplexedConnection;

use super::{paths, proc};

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

    /// Delete every key under the prefix (and only those).
    pub async fn clear(&self) -> anyhow::Result<()> {
        let mut conn = self.admin.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
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
                let _: i64 = redis::cmd("DEL")
                    .arg(mine)
                    .query_async(&mut conn)
                    .await
                    .context("deleting racelab's Redis keys")?;
            }
            if next == 0 {
                return Ok(());
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
        cleared
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
    const HINT: &str = "install it (`apt-get install redis-server`, `brew install redis`), \
                        point at it with --redis-bin DIR, or pass --redis-url";
    if let Some(dir) = explicit {
        let p = dir.join("redis-server");
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "--redis-bin {}: no redis-server there; {HINT}",
            dir.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")]);
    for d in dirs {
        let p = d.join("redis-server");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("redis-server not found (a strategy uses Redis and no --redis-url was given); {HINT}")
}

/// An embedded `redis-server`: no persistence, a private unix socket (no
/// TCP port), its own temporary directory; stopped by pid and the
/// directory removed on `stop` or drop.
struct RedisServer {
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
    socket: PathBuf,
}

impl RedisServer {
    fn start(bin: Option<&Path>) -> anyhow::Result<RedisServer> {
        let exe = find_redis_server(bin)?;
        let root = paths::default_temp_root();
        paths::ensure_private_dir(&root)?;
        let dir = root.join(format!(
            "redis-{}-{}",
            std::process::id(),
            paths::random_suffix()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        let socket = dir.join("redis.sock");
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
            .arg(dir.join("redis.log"))
            .arg("--daemonize")
            .arg("no")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Own process group: a terminal Ctrl-C reaches racelab, which stops
        // the server itself; the death signal covers racelab being killed.
        cmd.process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the hook only calls async-signal-safe functions.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(io::Error::other("racelab exited during spawn"));
                }
                Ok(())
            });
        }
        let child = match proc::spawn_from_process_thread(cmd) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).with_context(|| format!("could not start {}", exe.display()));
            }
        };
        let mut server = RedisServer {
            pid: child.id(),
            child: Some(child),
            dir,
            socket,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Poll the socket until the server accepts connections.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                bail!(
                    "redis-server exited at start ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if Instant::now() >= deadline {
                bail!("redis-server did not open its socket within 10 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let gone = self.halt();
        let removed = std::fs::remove_dir_all(&self.dir);
        self.child = None;
        if !gone {
            bail!("redis-server (pid {}) did not stop", self.pid);
        }
        removed.with_context(|| format!("could not remove {}", self.dir.display()))
    }

    /// SIGTERM, then SIGKILL; reaps the child. Whether it is gone.
    fn halt(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        for (sig, wait) in [
            (libc::SIGTERM, Duration::from_secs(5)),
            (libc::SIGKILL, Duration::from_secs(2)),
        ] {
            if proc::signal(self.pid, sig).is_err() {
                let _ = child.try_wait();
                return !proc::alive(self.pid);
            }
            if proc::wait_gone(self.pid, wait) {
                // Gone or exiting: reap it (a blocking wait on a process
                // that has been seen dead returns at once).
                let _ = child.wait();
                return true;
            }
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.halt();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
