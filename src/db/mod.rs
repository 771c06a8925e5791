//! Where the server comes from (embedded throwaway cluster, kept cluster, or
//! an external URL), connections, the lab schema (migrations, ownership
//! marker, reset, seed) and the post-run audit.
//!
//! `Database::open` picks the source: `database_url` if given; else a kept
//! cluster (`racelab db start`) if one is up; else an embedded cluster that
//! lives exactly as long as the `Database`. Submodules: `bins` finds the
//! server binaries, `cluster` is the throwaway-cluster guard, `kept` the
//! `racelab db` cluster, `schema` the lab, `audit` the post-run truth.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

pub mod audit;
pub mod auth;
pub mod bins;
pub mod capacity;
pub mod claim;
pub mod clean;
pub mod cluster;
mod daemon;
pub mod keepalive;
pub mod kept;
pub mod lab_role;
mod owner;
pub mod paths;
pub mod pgbouncer;
pub mod proc;
pub mod redis;
pub mod schema;

pub use audit::{Audit, Claims};
pub use cluster::{Cluster, ClusterOptions};
pub use paths::Dirs;

use crate::error::bad_input;

/// Where the server comes from and how the lab is set up. `Debug` shows
/// `database_url` with its password redacted.
#[derive(Clone)]
pub struct DbOptions {
    pub database_url: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub schema: String,
    pub durable: bool,
    pub connect_timeout: Duration,
    pub max_connections: u32,
    /// An embedded cluster listens on TCP too (behind its own password),
    /// for other programs (`serve`); otherwise only on its private socket.
    pub listen_tcp: bool,
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbOptions")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("pg_bin", &self.pg_bin)
            .field("schema", &self.schema)
            .field("durable", &self.durable)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_connections", &self.max_connections)
            .field("listen_tcp", &self.listen_tcp)
            .finish()
    }
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            database_url: None,
            pg_bin: None,
            schema: "racelab".into(),
            durable: false,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100,
            listen_tcp: false,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Embedded,
    Kept,
    External,
}

#[derive(Debug, Clone)]
pub struct ProductSeed {
    pub id: i64,
    pub name: String,
    pub stock: i64,
}

/// A ready server and the lab schema's name. Holds the embedded cluster,
/// if any: `shutdown()` (or dropping the `Database`) stops it.
pub struct Database {
    kind: DbKind,
    server_version: String,
    durable: bool,
    schema: String,
    connect_timeout: Duration,
    /// Connection options without racelab's search_path/application_name.
    base: PgConnectOptions,
    /// What to call the server in messages (never with a password).
    shown_as: String,
    /// The password of an external server, for a pooler in front of it.
    password: Option<String>,
    cluster: Option<Cluster>,
    /// racelab's deadline on a reply (`--timeout` plus a grace), if any:
    /// bounds the audit's queries (see `bounded`).
    deadline: Option<Duration>,
    /// This run's claim on the lab schema of a server others may use too
    /// (kept, external; see `claim`).
    claim: Option<claim::Claim>,
    /// On an external server: the role the buyers log in as (see
    /// `lab_role`), or why there is none.
    confinement: Option<Result<lab_role::LabRole, String>>,
}

/// How long preparing the lab, its `\setup` or the audit may take at most
/// when no `--timeout` bounds them: long enough for a big seed, short of
/// hanging for ever on a server that stopped answering.
const LAB_OPERATION_LIMIT: Duration = Duration::from_secs(300);

impl Database {
    /// Open the database for a run (see the module docs for the order),
    /// with racelab's directories from the environment.
    pub async fn open(opts: &DbOptions) -> anyhow::Result<Database> {
        schema::validate_name(&opts.schema)?;
        if opts.database_url.is_some() {
            // An external server needs none of racelab's directories (and
            // must work where HOME is unset).
            return Database::open_external(opts).await;
        }
        Database::open_with(opts, &Dirs::from_env()?).await
    }

    /// `open`, with the state, temp and cache directories given.
    pub async fn open_with(opts: &DbOptions, dirs: &Dirs) -> anyhow::Result<Database> {
        schema::validate_name(&opts.schema)?;
        if opts.database_url.is_some() {
            return Database::open_external(opts).await;
        }
        let probe = opts.connect_timeout.min(Duration::from_secs(2));
        if let Some(info) = kept::find_live(&dirs.state_dir, probe).await {
            let shown_as = format!("the kept cluster at {}", info.url);
            let mut db = Database::bare(DbKind::Kept, opts, info.connect_options(), shown_as);
            db.durable = info.durable;
            let mut conn = db.claim_connection().await?;
            let limit = db.connect_timeout;
            db.server_version = db
                .bounded(limit, "reading the server version", version_of(&mut conn))
                .await?;
            db.take_claim(conn).await?;
            return Ok(db);
        }
        Database::open_embedded(opts, dirs).await
    }

    async fn open_embedded(opts: &DbOptions, dirs: &Dirs) -> anyhow::Result<Database> {
        let bins = bins::find_server_bins(opts.pg_bin.as_deref())?;
        let mut copts = ClusterOptions::new(bins, dirs)?;
        copts.durable = opts.durable;
        if opts.durable {
            copts.temp_root = paths::disk_temp_root();
        }
        copts.max_connections = opts.max_connections.saturating_add(10).max(20);
        copts.tcp = opts.listen_tcp;
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(&copts))
            .await
            .context("the cluster start task failed")?
            .context("could not start the embedded PostgreSQL cluster")?;
        let cluster_options = cluster.connect_options();
        // A private cluster: no other racelab can reach it, so no claim.
        let shown_as = format!("the embedded cluster in {}", cluster.dir().display());
        Ok(Database {
            server_version: cluster.version().to_string(),
            cluster: Some(cluster),
            ..Database::bare(DbKind::Embedded, opts, cluster_options, shown_as)
        })
    }

    /// A `Database` of `kind` at `base`, before anything was asked of it.
    fn bare(kind: DbKind, opts: &DbOptions, base: PgConnectOptions, shown_as: String) -> Database {
        Database {
            kind,
            server_version: String::new(),
            durable: opts.durable,
            schema: opts.schema.clone(),
            connect_timeout: opts.connect_timeout,
            base,
            shown_as,
            password: None,
            cluster: None,
            deadline: None,
            claim: None,
            confinement: None,
        }
    }

    async fn open_external(opts: &DbOptions) -> anyhow::Result<Database> {
        let url = opts.database_url.as_deref().unwrap_or_default();
        let base = parse_external_url(url)?;
        let mut db = Database::bare(DbKind::External, opts, base, redact_url(url));
        db.password = url_password(url);
        let mut conn = db.claim_connection().await?;
        // Two trivial queries right after connecting: a server that does
        // not answer them within --connect-timeout is not answering.
        let limit = db.connect_timeout;
        db.server_version = db
            .bounded(limit, "reading the server version", version_of(&mut conn))
            .await?;
        // Report what the server really does; a Postgres-wire server
        // without these settings is taken as durable.
        let durable = sqlx::query_scalar::<_, bool>(
            "SELECT current_setting('fsync') = 'on' AND current_setting('synchronous_commit') <> 'off'",
        )
        .fetch_one(&mut conn);
        db.durable = tokio::time::timeout(limit, durable)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(true);
        db.take_claim(conn).await?;
        db.confine().await?;
        Ok(db)
    }

    /// On a server racelab did not start: make the lab's role, which the
    /// buyers and `\setup` log in as (see `lab_role`), or note why not.
    async fn confine(&mut self) -> anyhow::Result<()> {
        let limit = self.setup_limit();
        let Some(claim) = self.claim.as_mut() else {
            return Ok(());
        };
        let work = lab_role::establish(claim.conn(), &self.base, &self.schema);
        let confinement = match tokio::time::timeout(limit, work).await {
            Ok(r) => r.context("making the lab's role")?,
            Err(_) => Err(format!("it did not answer within {} s", limit.as_secs())),
        };
        self.confinement = Some(confinement);
        Ok(())
    }

    /// Why the buyers of this external server run without a role of their
    /// own (see `lab_role`); `None` on racelab's own clusters, and where
    /// they have one.
    pub fn unconfined(&self) -> Option<&str> {
        match &self.confinement {
            Some(Err(why)) => Some(why),
            _ => None,
        }
    }

    /// The role the buyers log in as, on an external server that has one.
    pub fn lab_role(&self) -> Option<&str> {
        match &self.confinement {
            Some(Ok(role)) => Some(&role.name),
            _ => None,
        }
    }

    /// Whether racelab started this server (embedded or kept): nobody
    /// else's data is on it.
    pub fn own_server(&self) -> bool {
        self.kind != DbKind::External
    }

    /// How messages name the server (never with a password).
    pub fn shown_as(&self) -> &str {
        &self.shown_as
    }

    /// The connection that will hold this run's claim: named after the run
    /// (`claim::this_run`), so that another racelab's refusal can say who
    /// holds the lab. It asks the first questions too (the version), so
    /// that claiming costs no connection of its own.
    async fn claim_connection(&self) -> anyhow::Result<PgConnection> {
        let options = self
            .base
            .clone()
            .application_name(&claim::this_run())
            .options([("search_path", self.schema.as_str())]);
        self.connect_with(&options).await
    }

    /// Claim the lab schema on `conn` for as long as this `Database` lives,
    /// or fail (exit 2) naming the racelab that holds it.
    async fn take_claim(&mut self, conn: PgConnection) -> anyhow::Result<()> {
        let claimed = claim::claim(conn, &self.schema, &self.shown_as);
        let claim = self
            .bounded(self.connect_timeout, "claiming the lab schema", claimed)
            .await?;
        self.claim = Some(claim);
        Ok(())
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The server version, e.g. `15.18`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    pub fn durable(&self) -> bool {
        self.durable
    }

    /// The lab schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The embedded cluster, if this database owns one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Options for a racelab connection: search_path = the lab schema,
    /// application_name = racelab.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.base
            .clone()
            .application_name("racelab")
            .options([("search_path", self.schema.as_str())])
    }

    /// Options for the connections that run the strategy (the buyers and
    /// `\setup`): `connect_options`, logged in as the lab's role where
    /// there is one.
    pub fn buyer_options(&self) -> PgConnectOptions {
        match &self.confinement {
            Some(Ok(role)) => role
                .options
                .clone()
                .application_name("racelab")
                .options([("search_path", self.schema.as_str())]),
            _ => self.connect_options(),
        }
    }

    /// One connection that runs the strategy (`buyer_options`).
    pub async fn connect_buyer(&self) -> anyhow::Result<PgConnection> {
        self.connect_with(&self.buyer_options()).await
    }

    /// Bound the audit's queries by `deadline` (racelab's side of
    /// `--timeout`); preparing the lab is bounded by the larger of it and
    /// `LAB_OPERATION_LIMIT`.
    pub fn set_deadline(&mut self, deadline: Option<Duration>) {
        self.deadline = deadline;
    }

    /// `work` on a lab connection, unless it takes longer than `limit`:
    /// then a server that stopped answering is an error, not a hang.
    pub async fn bounded<T>(
        &self,
        limit: Duration,
        doing: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "{doing}: no reply from {} within {} ms (the connection stopped answering)",
                self.shown_as,
                limit.as_millis()
            )),
        }
    }

    /// The limit on preparing the lab and running its `\setup`.
    pub fn setup_limit(&self) -> Duration {
        self.deadline
            .map_or(LAB_OPERATION_LIMIT, |d| d.max(LAB_OPERATION_LIMIT))
    }

    /// The limit on the audit's queries.
    pub fn audit_limit(&self) -> Duration {
        self.deadline.unwrap_or(LAB_OPERATION_LIMIT)
    }

    /// The server as a pooler in front of it must log in to it: the same
    /// host (or socket directory), port, user, database and password as
    /// racelab's own connections; each server connection runs
    /// `connect_query` first.
    pub fn upstream(&self, connect_query: String) -> pgbouncer::Upstream {
        let b = &self.base;
        // The buyers log in as the lab's role where there is one.
        let (user, password) = match &self.confinement {
            Some(Ok(role)) => (role.name.clone(), Some(role.password.expose().to_string())),
            _ => (b.get_username().to_string(), self.password.clone()),
        };
        pgbouncer::Upstream {
            host: match b.get_socket() {
                Some(dir) => dir.display().to_string(),
                None => b.get_host().to_string(),
            },
            port: b.get_port(),
            dbname: b.get_database().unwrap_or(b.get_username()).to_string(),
            user,
            password,
            connect_query,
        }
    }

    /// One connection, within `connect_timeout`.
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        self.connect_with(&self.connect_options()).await
    }

    /// One connection with `options`, within `connect_timeout`.
    async fn connect_with(&self, options: &PgConnectOptions) -> anyhow::Result<PgConnection> {
        let hint = match self.kind {
            DbKind::External => {
                "check that the server is running and the URL (--database-url / DATABASE_URL) is right, \
                 or omit it to use an embedded cluster"
            }
            DbKind::Kept => "check it with `racelab db status`, or stop it with `racelab db stop`",
            // The directory (and its log) goes away with racelab, so only
            // point at it while the server still runs.
            DbKind::Embedded => match &self.cluster {
                Some(c) if !proc::alive(c.pid()) => {
                    "the embedded server is no longer running (was it killed?)"
                }
                _ => "see server.log in the cluster directory",
            },
        };
        let secs = self.connect_timeout.as_secs_f64();
        match tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(options)).await
        {
            Ok(Ok(conn)) => {
                keepalive::enable_for(&self.base);
                Ok(conn)
            }
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "could not connect to {}: {e}; {hint}",
                self.shown_as
            )),
            Err(_) => Err(anyhow::anyhow!(
                "could not connect to {} within {secs}s (--connect-timeout); {hint}",
                self.shown_as
            )),
        }
    }

    /// A fresh lab for one run: the schema dropped and recreated (only if it
    /// carries racelab's marker), migrated, seeded with `stock = initial_stock`.
    pub async fn prepare_lab(&self, products: &[ProductSeed]) -> anyhow::Result<()> {
        let mut conn = self.connect().await?;
        let limit = self.setup_limit();
        let result = self
            .bounded(
                limit,
                "preparing the lab",
                schema::prepare(&mut conn, &self.schema, self.lab_role(), products),
            )
            .await;
        let _ = tokio::time::timeout(limit, conn.close()).await;
        result.with_context(|| format!("could not prepare the lab schema \"{}\"", self.schema))
    }

    /// Audit the lab after a run.
    pub async fn audit(&self, succeeded_attempts: &[i64]) -> anyhow::Result<Audit> {
        self.audit_with_unknown(succeeded_attempts, &[]).await
    }

    /// Units ordered per product (the database side of the Redis audit).
    pub async fn units_sold_by_product(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<i64, i64>> {
        let mut conn = self.connect().await?;
        let query = sqlx::query_as(
            "SELECT product_id::int8, COALESCE(sum(qty), 0)::int8 FROM orders GROUP BY product_id",
        )
        .fetch_all(&mut conn);
        let rows: Vec<(i64, i64)> = self
            .bounded(
                self.audit_limit(),
                "reading the units ordered per product",
                async { query.await.map_err(anyhow::Error::from) },
            )
            .await
            .context("reading the units ordered per product")?;
        let _ = tokio::time::timeout(self.audit_limit(), conn.close()).await;
        Ok(rows.into_iter().collect())
    }

    /// Audit the lab after a run, resolving the attempts of unknown fate.
    pub async fn audit_with_unknown(
        &self,
        succeeded_attempts: &[i64],
        unknown_attempts: &[i64],
    ) -> anyhow::Result<Audit> {
        self.audit_claims(&Claims {
            succeeded: succeeded_attempts,
            unknown: unknown_attempts,
            ..Claims::default()
        })
        .await
    }

    /// Audit the lab on a new connection, holding what the buyers were
    /// told against it.
    pub async fn audit_claims(&self, claims: &Claims<'_>) -> anyhow::Result<Audit> {
        let mut conn = self.connect().await?;
        let result = self.audit_on(&mut conn, claims).await;
        let _ = tokio::time::timeout(self.audit_limit(), conn.close()).await;
        result
    }

    /// Audit on a connection the caller already holds (its search_path must
    /// point at the lab, as every connection from `connect_options` does).
    pub async fn audit_on(
        &self,
        conn: &mut PgConnection,
        claims: &Claims<'_>,
    ) -> anyhow::Result<Audit> {
        self.bounded(
            self.audit_limit(),
            "auditing the lab",
            audit::query(conn, claims),
        )
        .await
    }

    /// End this run's claim on the lab, stop an embedded cluster and
    /// remove its directory.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(claim) = self.claim.take() {
            // Closing politely; a server that does not answer lets the
            // claim go when the connection drops anyway.
            let _ = tokio::time::timeout(Duration::from_secs(2), claim.release()).await;
        }
        match self.cluster.take() {
            Some(cluster) => tokio::task::spawn_blocking(move || cluster.shutdown())
                .await
                .context("the cluster stop task failed")?
                .context("could not stop the embedded PostgreSQL cluster"),
            None => Ok(()),
        }
    }
}

async fn version_of(conn: &mut PgConnection) -> anyhow::Result<String> {
    let full: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut *conn)
        .await
        .context("could not read the server version")?;
    Ok(full
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// Parse a `--database-url`: only `postgres://` and `postgresql://`.
pub fn parse_external_url(url: &str) -> anyhow::Result<PgConnectOptions> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        return Err(bad_input(if scheme.is_empty() {
            "--database-url must be a URL starting with postgres:// or postgresql://".to_string()
        } else {
            format!("--database-url must start with postgres:// or postgresql:// (not {scheme}://)")
        }));
    }
    PgConnectOptions::from_str(url).map_err(|e| {
        bad_input(format!(
            "--database-url {} is not a valid PostgreSQL URL: {e}",
            redact_url(url)
        ))
    })
}

/// The password of a `--database-url` (percent-decoded), from its user
/// info or a `password` parameter, else `PGPASSWORD` as libpq would.
fn url_password(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let from_url = u.password().map(percent_decode).or_else(|| {
        u.query_pairs()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned())
    });
    from_url.or_else(|| std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL fit to print: the password of its user info and every query
/// value replaced by `***`, but for libpq's parameters that are known to
/// hold no secret (`sslmode`, `application_name`, ...).
pub fn redact_url(url: &str) -> String {
    crate::secret::redact_text(url, PUBLIC_PARAMS, "<the database URL>")
}

/// Connection URL parameters shown as they are.
const PUBLIC_PARAMS: &[&str] = &[
    "sslmode",
    "application_name",
    "connect_timeout",
    "target_session_attrs",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "sslrootcert",
    "channel_binding",
    "gssencmode",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db.example:5432/app"),
            "postgres://bob:***@db.example:5432/app"
        );
        let r = redact_url("postgresql://bob@h/app?sslmode=require&password=s3cret");
        assert!(!r.contains("s3cret"), "{r}");
        assert!(r.contains("sslmode=require"), "{r}");
        let r = redact_url("postgres://h/db?sslmode=disable&api_key=t0ken");
        assert_eq!(r, "postgres://h/db?sslmode=disable&api_key=***");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("postgres://a:s3cret@[bad"), "<the database URL>");
    }

    #[test]
    fn the_password_of_a_url_is_decoded() {
        assert_eq!(
            url_password("postgres://bob:s%40cr%27t@h/db").as_deref(),
            Some("s@cr't")
        );
        assert_eq!(
            url_password("postgres://bob@h/db?password=x%20y").as_deref(),
            Some("x y")
        );
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn debug_hides_the_password() {
        let o = DbOptions {
            database_url: Some("postgres://u:s3cret@h/db".into()),
            ..DbOptions::default()
        };
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("u:***@h"),
            "{shown}"
        );
    }

    #[test]
    fn url_schemes() {
        for ok in ["postgres://u@h/db", "postgresql://u:p@h:5/db"] {
            parse_external_url(ok).unwrap();
        }
        let err = parse_external_url("mysql://u:pw@h/db").unwrap_err();
        assert!(err.is::<crate::error::BadInput>());
        let msg = err.to_string();
        assert!(
            msg.contains("--database-url") && msg.contains("mysql://"),
            "{msg}"
        );
        assert!(!msg.contains("pw"), "{msg}");
        assert!(parse_external_url("localhost:5432")
            .unwrap_err()
            .is::<crate::error::BadInput>());
    }
}
