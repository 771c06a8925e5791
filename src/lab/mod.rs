//! The SQL lab as a target of the pipeline: one database for the whole
//! invocation; for each strategy and repetition a fresh lab (schema reset
//! and seeded, the strategy's `\setup` applied), the buyers running the
//! strategy on their own connections (or a shared pool), then the audit of
//! the lab, `--watch` samples and the `--trace` timeline.
//!
//! - `target`: one strategy on the lab, a `run::Target`.
//! - `lanes`: the buyers' connections and attempts (`engine::Lanes`).
//! - `pool`: the shared pool of `--connections N`.
//! - `nemesis`: the faults racelab injects (`--nemesis`, `--retry-unknown`).
//! - `watch`: `--watch`, stock sampled during the race.
//!
//! Only the lab names the driver (sqlx); the engine races any lanes.

pub mod lanes;
pub mod nemesis;
pub mod pool;
mod stall;
mod target;
pub mod watch;

use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::db::pgbouncer::{PgBouncer, PgBouncerOptions};
use crate::db::redis::{Redis, RedisOptions};
use crate::db::{Database, DbOptions, ProductSeed};
use crate::engine::{Control, ProductPicker};
use crate::report::{Output, RunResult};
use crate::result::{DatabaseInfo, Topology};
use crate::run::{self, Pipeline};
use crate::strategy::{self, Strategy};
use crate::timings;
pub use lanes::{race, Held, Lane, SqlLanes};
pub use nemesis::Faults;
use target::{LabTarget, Via};

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
