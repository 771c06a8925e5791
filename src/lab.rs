//! The SQL lab as a target of the pipeline: one database for the whole
//! invocation; for each strategy and repetition a fresh lab (schema reset
//! and seeded, the strategy's `\setup` applied), the buyers running the
//! strategy on their own connections (or a shared pool), then the audit of
//! the lab, `--watch` samples and the `--trace` timeline.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

use crate::db::pgbouncer::{PgBouncer, PgBouncerOptions, PoolMode};
use crate::db::redis::{Redis, RedisOptions};
use crate::db::{Claims, Database, DbOptions, ProductSeed};
use crate::engine::{Control, Faults, Held, Lane, ProductPicker, SqlLanes};
use crate::report::{Output, RunResult};
use crate::result::{DatabaseInfo, NemesisInfo, StrategyInfo, Subject, Topology};
use crate::run::{self, Pipeline, Raced, Target};
use crate::strategy::{self, Origin, Strategy};
use crate::timings;
use crate::watch::{self, Watcher};

/// A validated SQL-lab plan: what `plan` builds for `run` and `compare`.
#[derive(Debug)]
pub struct Lab {
    /// `--via pgbouncer`: the buyers connect through an embedded PgBouncer.
    pub via: Option<PgBouncerOptions>,
    pub strategies: Vec<Strategy>,
    pub db: DbOptions,
    /// Per-statement limit in milliseconds (statement and lock timeout, and
    /// racelab's own deadline on each reply: see `client_deadline`); 0 = none.
    pub timeout_ms: u64,
    /// `--nemesis` and `--retry-unknown`.
    pub faults: Faults,
    /// `--watch MS`: sample stock and units sold every MS milliseconds.
    pub watch_ms: Option<u64>,
    /// Where Redis comes from, for strategies with `\redis` commands.
    pub redis: RedisOptions,
}

/// racelab's own deadline on every statement's reply with `--timeout MS`:
/// MS plus a grace (a quarter of MS, at least one second), so that the
/// server's own statement_timeout or lock_timeout normally answers first,
/// and only a server that stops answering at all (a frozen network) runs
/// into this one.
pub fn client_deadline(timeout_ms: u64) -> Option<std::time::Duration> {
    (timeout_ms > 0).then(|| {
        let grace = (timeout_ms / 4).max(1_000);
        std::time::Duration::from_millis(timeout_ms.saturating_add(grace))
    })
}

/// TCP keepalive asked of the server for the buyers' connections (racelab
/// sets its own side on the sockets, `db::keepalive`): a server that loses
/// its client to a partition notices within about 20 s and ends the
/// backend, rather than holding its locks for hours. Over a unix socket the
/// server ignores them.
const KEEPALIVE: [(&str, &str); 3] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "2"),
];

/// Race every strategy of the lab: open the database, run the pipeline on
/// one target per strategy, stop the database (also after a failure).
pub async fn execute(
    lab: &Lab,
    pipeline: &Pipeline,
    output: &Output,
    control: &Arc<Control>,
) -> anyhow::Result<Vec<RunResult>> {
    let mut db = timings::time("open the database", Database::open(&lab.db)).await?;
    db.set_deadline(client_deadline(lab.timeout_ms));
    if let Some(t) = db.cluster().map(|c| c.start_timings()) {
        timings::record("  cluster: dirs and version", t.setup);
        timings::record(
            if t.cold {
                "  cluster: initdb"
            } else {
                "  cluster: copy template"
            },
            t.data_dir,
        );
        timings::record("  cluster: postmaster ready", t.ready);
    }
    let redis = if lab.strategies.iter().any(|s| s.program.uses_redis()) {
        let prefix = format!("{}:", lab.db.schema);
        let commands: Vec<String> = strategy::redis_command_names().collect();
        match timings::time("open Redis", Redis::open(&lab.redis, &prefix, &commands)).await {
            Ok(r) => Some(r),
            Err(e) => {
                let _ = db.shutdown().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    let bouncer = match &lab.via {
        Some(opts) => {
            let upstream = db.upstream(server_settings(lab));
            match timings::time("start pgbouncer", PgBouncer::start(opts, &upstream)).await {
                Ok(b) => Some(Mutex::new(b)),
                Err(e) => {
                    if let Some(r) = redis {
                        let _ = r.shutdown().await;
                    }
                    let _ = db.shutdown().await;
                    return Err(e.context("could not start PgBouncer (--via pgbouncer)"));
                }
            }
        }
        None => None,
    };
    let outcome = execute_on(
        &db,
        redis.as_ref(),
        bouncer.as_ref(),
        lab,
        pipeline,
        output,
        control,
    )
    .await;
    let bouncer_stopped = match bouncer {
        Some(b) => {
            let b = b.into_inner().unwrap_or_else(|p| p.into_inner());
            timings::time("stop pgbouncer", b.shutdown()).await
        }
        None => Ok(()),
    };
    let redis_stopped = match redis {
        Some(r) => r.shutdown().await,
        None => Ok(()),
    };
    let stopped = timings::time("stop the database", db.shutdown()).await;
    let results = outcome?;
    stopped.context("stopping the database")?;
    bouncer_stopped.context("stopping PgBouncer")?;
    redis_stopped.context("cleaning up Redis")?;
    Ok(results)
}

/// The lock wait limit through a pooler that switches server connections,
/// when --timeout sets none (see `server_settings`).
pub const POOLED_LOCK_TIMEOUT_MS: u64 = 10_000;

/// What every server connection of a pooler sets first: the lab's
/// search_path and the run's timeouts (a pooler does not pass the startup
/// options of racelab's own connections on).
fn server_settings(lab: &Lab) -> String {
    // The schema name is validated (an identifier) before anything starts.
    let mut sql = format!("SET search_path TO \"{}\"", lab.db.schema);
    if lab.timeout_ms > 0 {
        let ms = lab.timeout_ms;
        sql.push_str(&format!(
            "; SET statement_timeout = {ms}; SET lock_timeout = {ms}"
        ));
    } else if lab
        .via
        .as_ref()
        .is_some_and(|v| v.pool_mode.switches_connections())
    {
        // A session lock taken through transaction pooling stays with a
        // server connection that no buyer owns any more: a buyer waiting
        // for it on another one would wait for ever.
        sql.push_str(&format!("; SET lock_timeout = {POOLED_LOCK_TIMEOUT_MS}"));
    }
    sql
}

async fn execute_on(
    db: &Database,
    redis: Option<&Redis>,
    bouncer: Option<&Mutex<PgBouncer>>,
    lab: &Lab,
    pipeline: &Pipeline,
    output: &Output,
    control: &Arc<Control>,
) -> anyhow::Result<Vec<RunResult>> {
    let sc = &pipeline.scenario;
    // Before anything starts: on a server racelab did not start, a script
    // that would leave the lab is refused at its line.
    for s in &lab.strategies {
        strategy::confine::check_on(s, db.own_server(), db.shown_as(), db.unconfined())?;
        if let Some(why) = redis.and_then(Redis::unconfined) {
            strategy::confine::check_redis(s, "the Redis of --redis-url", why)?;
        }
    }
    // Before the lab is touched: never a half-started race. Through a
    // pooler the server only sees its pool (and racelab's own connections);
    // the buyers connect while one more connection readies the lab.
    let server_conns = match &lab.via {
        Some(p) => p.pool_size.min(sc.connections_needed()) + 2,
        None => sc.connections_needed() + 1,
    };
    db.check_room(server_conns, sc.buyers).await?;
    let seeds: Vec<ProductSeed> = ProductPicker::new(sc.products, sc.product_skew)
        .ids()
        .iter()
        .map(|&id| ProductSeed {
            id,
            name: format!("product {id}"),
            stock: sc.stock,
        })
        .collect();
    // The buyers log in as the lab's role on a server racelab did not
    // start (see `db::lab_role`).
    let mut connect = db.buyer_options().options(KEEPALIVE);
    if lab.timeout_ms > 0 {
        let ms = lab.timeout_ms.to_string();
        connect = connect.options([
            ("statement_timeout", ms.as_str()),
            ("lock_timeout", ms.as_str()),
        ]);
    }
    let database = DatabaseInfo {
        kind: db.kind(),
        server_version: db.server_version().to_string(),
        durable: db.durable(),
    };
    let via = match (bouncer, &lab.via) {
        (Some(b), Some(opts)) => {
            connect = b
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .connect_options();
            Some(Via {
                bouncer: b,
                opts,
                topology: Topology::pgbouncer(opts.pool_mode, opts.pool_size),
            })
        }
        _ => None,
    };
    let targets: Vec<LabTarget> = lab
        .strategies
        .iter()
        .map(|strategy| {
            let redis = redis.filter(|_| strategy.program.uses_redis());
            LabTarget::new(
                db,
                lab,
                pipeline,
                strategy,
                &seeds,
                &connect,
                &database,
                redis,
                via.as_ref(),
            )
        })
        .collect();
    run::execute(&targets, pipeline, output, control).await
}

/// The pooler between the buyers and the server.
struct Via<'a> {
    bouncer: &'a Mutex<PgBouncer>,
    opts: &'a PgBouncerOptions,
    topology: Topology,
}

/// One strategy on the lab.
struct LabTarget<'a> {
    db: &'a Database,
    lab: &'a Lab,
    pipeline: &'a Pipeline,
    strategy: &'a Strategy,
    seeds: &'a [ProductSeed],
    lanes: Arc<SqlLanes>,
    info: StrategyInfo,
    database: &'a DatabaseInfo,
    /// Redis, when the strategy sends `\redis` commands.
    redis: Option<&'a Redis>,
    /// `--via pgbouncer`.
    via: Option<&'a Via<'a>>,
}

impl<'a> LabTarget<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        db: &'a Database,
        lab: &'a Lab,
        pipeline: &'a Pipeline,
        strategy: &'a Strategy,
        seeds: &'a [ProductSeed],
        connect: &PgConnectOptions,
        database: &'a DatabaseInfo,
        redis: Option<&'a Redis>,
        via: Option<&'a Via<'a>>,
    ) -> LabTarget<'a> {
        let mut lanes = SqlLanes::new(strategy.program.clone(), connect.clone()).with_faults(
            lab.faults,
            client_deadline(lab.timeout_ms),
            lab.db.connect_timeout,
        );
        if let Some(v) = via.filter(|v| v.opts.pool_mode.switches_connections()) {
            lanes = lanes.with_unnamed_statements(v.opts.pool_mode == PoolMode::Transaction);
        }
        if let Some(r) = redis {
            lanes = lanes.with_redis(r.client(), r.prefix());
        }
        LabTarget {
            db,
            lab,
            pipeline,
            strategy,
            seeds,
            lanes: Arc::new(lanes),
            info: strategy_info(strategy),
            database,
            redis,
            via,
        }
    }
}

/// Before a race: the `--watch` sampler, if any, already running.
struct Watching(Option<Watcher>);

impl Target for LabTarget<'_> {
    type Lanes = SqlLanes;
    type Before = Watching;

    fn label(&self) -> &str {
        &self.strategy.name
    }

    async fn prepare(&self) -> anyhow::Result<Watching> {
        if let Some(v) = self.via {
            // New server connections for every race: nothing a previous
            // race left on one (a session lock, a SET) carries over.
            v.bouncer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .restart()
                .context("restarting PgBouncer before the race")?;
        }
        timings::time("prepare the lab", self.db.prepare_lab(self.seeds))
            .await
            .context("preparing the lab")?;
        if let Some(r) = self.redis {
            let products: Vec<(i64, i64)> = self.seeds.iter().map(|p| (p.id, p.stock)).collect();
            r.seed(&products).await.context("seeding Redis")?;
        }
        if self.strategy.program.has_setup() {
            let products: Vec<(i64, i64)> = self.seeds.iter().map(|p| (p.id, p.stock)).collect();
            let mut conn = self.db.connect_buyer().await?;
            let setup = strategy::run_setup(&self.strategy.program, &mut conn, &products);
            self.db
                .bounded(self.db.setup_limit(), "running the \\setup block", setup)
                .await
                .with_context(|| {
                    format!(
                        "running the \\setup block of strategy `{}`",
                        self.strategy.name
                    )
                })?;
        }
        Ok(Watching(match self.lab.watch_ms {
            Some(ms) => Some(watch::start(self.db, ms).await?),
            None => None,
        }))
    }

    fn lanes(&self) -> Arc<SqlLanes> {
        self.lanes.clone()
    }

    fn connect_while_preparing(&self) -> bool {
        true
    }

    async fn finish(&self, mut raced: Raced<Lane>, before: Watching) -> anyhow::Result<RunResult> {
        let race = &raced.output;
        let resubmitted = race.tally.resubmitted;
        let sc = &self.pipeline.scenario;
        let watch = match before.0 {
            Some(w) => {
                let initial = sc.stock.saturating_mul(i64::from(sc.products));
                Some(w.finish(race.released_at, initial).await?)
            }
            None => None,
        };
        let timeline = self.pipeline.trace.then(|| {
            crate::trace::analyze(
                &self.strategy.name,
                &self.strategy.program,
                &race.traces,
                race.released_at,
                sc.quantity,
            )
        });
        // After a completed race every buyer's connection is idle, outside
        // any transaction: audit on one of them. After a stop one may still
        // be mid-transaction, so take a fresh connection.
        let mut held = Held::new(std::mem::take(&mut raced.lanes));
        let claims = Claims {
            succeeded: &race.tally.succeeded_attempts,
            unknown: &race.tally.unknown_attempts,
            sold_out: &race.sold_out_by_product,
            quantity: sc.quantity,
        };
        // A nemesis may have taken any connection of the race, so then too;
        // through a pooler the audit goes to the server directly.
        let idle = if raced.completed() && !self.lab.faults.reconnects() && self.via.is_none() {
            held.connection()
        } else {
            None
        };
        let audited = match idle {
            Some(conn) => self.db.audit_on(conn, &claims).await,
            None => self.db.audit_claims(&claims).await,
        };
        drop(held);
        let audited = match (audited, self.redis) {
            (Ok(a), Some(r)) if self.strategy.program.redis_counts_stock() => {
                self.cache_drift(r).await.map(|d| crate::db::Audit {
                    cache_drift: Some(d),
                    ..a
                })
            }
            (a, _) => a,
        };
        let audit = raced.audited(audited, "auditing the database")?;
        raced.scenario.timeout_ms = self.lab.timeout_ms;
        let mut result = raced.result(
            audit,
            Subject::Strategy(self.info.clone()),
            Some(self.database.clone()),
        );
        result.watch = watch;
        result.timeline = timeline;
        if self.lab.faults.any() {
            result.nemesis = Some(NemesisInfo::of(
                &self.lab.faults,
                self.lanes.nemesis_done(),
                resubmitted,
            ));
        }
        result.topology = self.via.map(|v| v.topology.clone());
        Ok(result)
    }
}

impl LabTarget<'_> {
    /// The seam between Redis and the database: per product, Redis's
    /// remaining stock against initial stock minus the units ordered in
    /// Postgres; the sum of the absolute differences.
    async fn cache_drift(&self, redis: &Redis) -> anyhow::Result<i64> {
        let ids: Vec<i64> = self.seeds.iter().map(|p| p.id).collect();
        let remaining = redis.stock(&ids).await?;
        let sold = self.db.units_sold_by_product().await?;
        let mut drift = 0i64;
        for (seed, left) in self.seeds.iter().zip(remaining) {
            let ordered = sold.get(&seed.id).copied().unwrap_or(0);
            // A deleted counter counts as zero left.
            let left = left.unwrap_or(0);
            drift += (left - (seed.stock - ordered)).abs();
        }
        Ok(drift)
    }
}

/// What the result says about a strategy: its name, where it came from,
/// and a hash of its text.
fn strategy_info(strategy: &Strategy) -> StrategyInfo {
    StrategyInfo {
        name: strategy.name.clone(),
        source: match &strategy.origin {
            Origin::Builtin => "builtin".to_string(),
            Origin::File(p) => p.display().to_string(),
        },
        sha256: hex(&Sha256::digest(strategy.source.as_bytes())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
