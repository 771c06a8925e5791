//! Redis beside the database: an embedded `redis-server` (a guard that
//! stops it by pid on success, error, panic and Ctrl-C) or an external one
//! (`--redis-url`), and the lab's keys on it: seeded from the initial stock
//! before each race, read by the audit, deleted afterwards. Every key
//! racelab touches starts with its prefix; nothing else is read or written.
//!
//! The embedded server listens only on a unix socket in a private
//! directory (no TCP port): only racelab's user gets in. On an external
//! one, racelab first claims its prefix (a `<prefix>claim` key naming the
//! run, set only if absent and kept alive while the run lasts, so a second
//! racelab on the same prefix is refused, naming the first; a claim of a
//! racelab that died lapses within `CLAIM_TTL`), then confines the buyers
//! by the server itself, not by reading their Lua: an ACL user that may
//! run only the commands a strategy may send, on keys under the prefix
//! only (`~<prefix>*`). Where the URL's user may not make one, strategies
//! that send EVAL or EVALSHA are refused (`strategy::confine`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use redis::IntoConnectionInfo as _;
use sha2::{Digest, Sha256};

use super::daemon::{self, Daemon, Spawn};
use crate::error::bad_input;
use crate::secret::Secret;

/// How long a claim on an external Redis's prefix lasts unless renewed
/// (every third of it, while the run lasts).
const CLAIM_TTL: Duration = Duration::from_secs(15);
/// The claim's key, under the prefix.
const CLAIM_KEY: &str = "claim";

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
    /// The buyers' client: as the ACL user on an external server that has
    /// one.
    client: redis::Client,
    admin: MultiplexedConnection,
    prefix: Arc<str>,
    server: Option<RedisServer>,
    /// On an external server: the claim on the prefix, kept alive.
    claim: Option<PrefixClaim>,
    /// On an external server: the ACL user the buyers log in as, or why
    /// there is none.
    confinement: Option<Result<String, String>>,
}

/// This run's claim on an external Redis's prefix: its value, and the
/// task that renews it.
struct PrefixClaim {
    value: String,
    renew: tokio::task::JoinHandle<()>,
}

impl Redis {
    /// Start an embedded server (no `url`) or connect to `url`. `prefix` is
    /// put before every key (e.g. `racelab:`); `commands` are those the
    /// buyers may send (lower case), to which an external server confines
    /// them.
    pub async fn open(
        opts: &RedisOptions,
        prefix: &str,
        commands: &[String],
    ) -> anyhow::Result<Redis> {
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
        let mut redis = Redis {
            client,
            admin,
            prefix: prefix.into(),
            server,
            claim: None,
            confinement: None,
        };
        if redis.server.is_none() {
            let shown = redact(&url);
            redis.claim(&shown).await?;
            let confined = redis.confine(&url, commands).await;
            if let Ok(user) = &confined {
                let mut info = url
                    .as_str()
                    .into_connection_info()
                    .context("the Redis URL")?;
                info.redis.username = Some(user.0.clone());
                info.redis.password = Some(user.1.expose().to_string());
                redis.client = redis::Client::open(info).context("the Redis ACL user")?;
            }
            redis.confinement = Some(confined.map(|(user, _)| user));
        }
        Ok(redis)
    }

    /// Claim the prefix on an external server, or refuse (exit 2) naming
    /// the racelab that holds it.
    async fn claim(&mut self, shown: &str) -> anyhow::Result<()> {
        let key = format!("{}{CLAIM_KEY}", self.prefix);
        let value = super::claim::this_run();
        let ttl = CLAIM_TTL.as_millis() as u64;
        let mut conn = self.admin.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .query_async(&mut conn)
            .await
            .context("claiming racelab's Redis key prefix")?;
        if set.is_none() {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            return Err(bad_input(format!(
                "the Redis key prefix \"{}\" on {shown} is in use by another racelab ({}); \
                 wait for it to finish (a claim of one that died lapses within {} s), or give \
                 this run a prefix of its own with --schema NAME (the prefix is the schema's \
                 name)",
                self.prefix,
                holder.unwrap_or_else(|| "which has just finished; try again".into()),
                CLAIM_TTL.as_secs()
            )));
        }
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(CLAIM_TTL / 3).await;
                let _: redis::RedisResult<i64> = redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await;
            }
        });
        self.claim = Some(PrefixClaim { value, renew });
        Ok(())
    }

    /// Make the ACL user the buyers log in as on an external server: only
    /// `commands`, only keys under the prefix, no channels; a fresh random
    /// password (sent as its SHA-256, as ACL SETUSER takes it). `Err(why)`
    /// when the server will not.
    async fn confine(&self, url: &str, commands: &[String]) -> Result<(String, Secret), String> {
        let user = acl_user(&self.prefix);
        let password = Secret::random();
        let hash: String = Sha256::digest(password.expose().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg("on")
            .arg(format!("#{hash}"))
            .arg(format!("~{}*", glob_escape(&self.prefix)))
            .arg("resetchannels")
            .arg("-@all");
        for c in commands
            .iter()
            .map(String::as_str)
            .chain(["ping", "select"])
        {
            cmd.arg(format!("+{c}"));
        }
        let mut conn = self.admin.clone();
        let set: redis::RedisResult<()> = cmd.query_async(&mut conn).await;
        if let Err(e) = set {
            return Err(format!("it refused ACL SETUSER: {e}"));
        }
        // Can it log in?
        let login = async {
            let mut info = url.into_connection_info()?;
            info.redis.username = Some(user.clone());
            info.redis.password = Some(password.expose().to_string());
            let mut c = redis::Client::open(info)?
                .get_multiplexed_tokio_connection()
                .await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        match tokio::time::timeout(Duration::from_secs(5), login).await {
            Ok(Ok(_)) => Ok((user, password)),
            Ok(Err(e)) => Err(format!("its new ACL user {user} could not log in: {e}")),
            Err(_) => Err(format!(
                "its new ACL user {user} could not log in within 5 s"
            )),
        }
    }

    /// Why the buyers of this external Redis are not confined to the
    /// prefix by the server; `None` on racelab's own Redis and where they
    /// are.
    pub fn unconfined(&self) -> Option<&str> {
        match &self.confinement {
            Some(Err(why)) => Some(why),
            _ => None,
        }
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
            // SCAN's MATCH is a glob: check the prefix again, exactly. The
            // claim stays while the run lasts.
            let claim = format!("{}{CLAIM_KEY}", self.prefix);
            let mine: Vec<&String> = keys
                .iter()
                .filter(|k| k.starts_with(&*self.prefix) && (self.claim.is_none() || **k != claim))
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

    /// Delete racelab's keys (its claim and ACL user too) and stop an
    /// embedded server.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let cleared = self.clear().await;
        if let Some(claim) = self.claim.take() {
            claim.renew.abort();
            let key = format!("{}{CLAIM_KEY}", self.prefix);
            let mut conn = self.admin.clone();
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            if holder.as_deref() == Some(claim.value.as_str()) {
                let _: redis::RedisResult<i64> =
                    redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            }
        }
        if let Some(Ok(user)) = self.confinement.take() {
            let mut conn = self.admin.clone();
            let _: redis::RedisResult<i64> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&user)
                .query_async(&mut conn)
                .await;
        }
        if let Some(s) = self.server.take() {
            tokio::task::spawn_blocking(move || s.stop())
                .await
                .context("stopping redis-server")??;
        }
        cleared.map(|_| ())
    }
}

/// The ACL user of a prefix: `racelab-<prefix without its last colon>`.
fn acl_user(prefix: &str) -> String {
    let name: String = prefix
        .trim_end_matches(':')
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("racelab-{name}")
}

/// A URL without its password or query values, for messages.
fn redact(url: &str) -> String {
    crate::secret::redact_text(url, &[], "<the Redis URL>")
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
