//! One strategy on the lab, as the pipeline races it: before each race a
//! fresh lab (PgBouncer restarted, schema reset and seeded, Redis seeded,
//! the strategy's `\setup`), after it the audit on one of the buyers'
//! connections, the cache drift against Redis, the `--watch` samples, the
//! `--trace` timeline and what the nemesis did.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;

use super::lanes::{Held, Lane, SqlLanes};
use super::watch::{self, Watcher};
use super::{client_deadline, Lab};
use crate::db::pgbouncer::{PgBouncer, PgBouncerOptions, PoolMode};
use crate::db::redis::Redis;
use crate::db::{Claims, Database, ProductSeed};
use crate::report::RunResult;
use crate::result::{DatabaseInfo, StrategyInfo, Subject, Topology};
use crate::run::{Pipeline, Raced, Target};
use crate::strategy::{self, Strategy};
use crate::timings;

/// The pooler between the buyers and the server.
pub(super) struct Via<'a> {
    pub(super) bouncer: &'a Mutex<PgBouncer>,
    pub(super) opts: &'a PgBouncerOptions,
    pub(super) topology: Topology,
}

/// One strategy on the lab.
pub(super) struct LabTarget<'a> {
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
    pub(super) fn new(
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
        let mut lanes = SqlLanes::new(strategy.program.clone(), connect.clone())
            .with_sleep_limit(
                (lab.timeout_ms > 0).then(|| std::time::Duration::from_millis(lab.timeout_ms)),
            )
            .with_faults(
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
            info: StrategyInfo::of(strategy),
            database,
            redis,
            via,
        }
    }
}

/// Before a race: the `--watch` sampler, if any, already running.
pub(super) struct Watching(Option<Watcher>);

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
            result.nemesis = Some(super::nemesis::info(
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
