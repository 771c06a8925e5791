//! An HTTP service as a target of the pipeline (`racelab http URL`): the
//! same engine, tallies, histograms, result JSON, repeat, `--expect` and
//! JUnit as the SQL lab, audited against the truest source the user gives
//! (see `truth`). `plan` validates the flags into a `Service`.
//!
//! What each buyer does is a flow of steps (`flow`); the request of the
//! flags alone is a flow of one race step. Layers, each importing only
//! those below it:
//!
//! - `lane`: the engine's HTTP lanes: a buyer's flow, attempt by attempt.
//! - `flow`: the flow, validated (steps, users, cookie jars, extraction).
//! - `template`: `{{name}}` placeholders in URLs, headers and bodies.
//! - `link`: a buyer's connection for a race step, primed and released.
//! - `h1`: a buyer's own HTTP/1.1 connection, and the hand-written first
//!   request of last-byte synchronisation.
//! - `h2`: HTTP/2 connections shared by buyers, and the single-packet release.
//! - `wire`: a request as sent, where it goes, and what came back.
//! - `net`: where the target is, and a connection to it (TCP or TLS).
//! - `text`: messages, bounded waits, and whether a request left.
//! - `truth`: readings, resets and the audit arithmetic.
//! - `report`: per-step results and the trace of the buyers' requests.

pub mod flow;
pub mod h1;
pub mod h2;
pub mod lane;
pub mod link;
pub mod net;
mod report;
pub mod template;
pub mod text;
pub mod truth;
pub mod wire;

use std::sync::Arc;

use reqwest::Url;

use crate::engine::Control;
use crate::error::bad_input;
use crate::report::{Output, RunResult};
use crate::result::{DatabaseInfo, Outcomes, Subject, Summary, TargetInfo};
use crate::run::{self, Pipeline, Raced, Target};
use lane::{HttpLane, HttpLanes};
use truth::{Reading, ServiceDb, Source};

/// A validated HTTP target: the request every buyer sends, where the truth
/// comes from, and how the service is reset between repetitions.
#[derive(Debug)]
pub struct Service {
    pub lanes: Arc<HttpLanes>,
    pub source: Source,
    /// `--stock N`: the stock the user says the service starts with.
    pub declared_stock: Option<i64>,
    /// The service's database (for `--verify-sql` and `--reset-sql`).
    pub db: Option<ServiceDb>,
    pub reset_url: Option<Url>,
    pub reset_sql: Option<String>,
    /// `--max-setup-failures`: buyers a step before the race may put out
    /// before the run is inconclusive.
    pub max_setup_failures: u64,
    /// What watches the service during each race (the wire proxy of
    /// `--service` / `--db-proxy`), if anything does.
    pub watch: Option<Arc<dyn Watch>>,
}

/// Something that watches the service during each race: told when a race
/// begins (after the reset and the first reading), and at its end given
/// the requests' spans (one event per attempt, from the engine's trace) to
/// say what the service did.
pub trait Watch: Send + Sync {
    fn begin(&self);
    fn end<'a>(
        &'a self,
        attempts: &'a [crate::engine::AttemptTrace],
        released_at: std::time::Instant,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<crate::result::ServiceInfo>> + Send + 'a>,
    >;
}

impl std::fmt::Debug for dyn Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// Race the service `pipeline.repeat` times; each race is reset, read,
/// raced, read again and audited, and its result saved at once.
pub async fn execute(
    service: &Service,
    pipeline: &Pipeline,
    output: &Output,
    control: &Arc<Control>,
) -> anyhow::Result<Vec<RunResult>> {
    let database = match (&service.db, &service.source) {
        (Some(db), Source::Sql { .. }) => {
            let (server_version, durable) = db.describe().await?;
            Some(DatabaseInfo {
                kind: crate::db::DbKind::External,
                server_version,
                durable,
            })
        }
        _ => None,
    };
    if pipeline.repeat > 1 && service.reset_url.is_none() && service.reset_sql.is_none() {
        output.note(
            "note: --repeat without --reset-url or --reset-sql: each race starts where the last one ended",
        );
    }
    let target = ServiceTarget { service, database };
    run::execute(std::slice::from_ref(&target), pipeline, output, control).await
}

impl Service {
    /// Whether the truth is read from the service's database (`--verify-sql`).
    pub fn needs_db(&self) -> bool {
        matches!(self.source, Source::Sql { .. })
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.reset_url {
            truth::reset_url(&self.lanes.client, url).await?;
        }
        if let (Some(sql), Some(db)) = (&self.reset_sql, &self.db) {
            db.reset(sql).await?;
        }
        Ok(())
    }

    pub async fn read(&self) -> anyhow::Result<Reading> {
        match &self.source {
            Source::Sql { sql } => {
                let db = self.db.as_ref().expect("--verify-sql has a database");
                db.verify(sql).await
            }
            Source::StockUrl { url, stock, sold } => {
                truth::read_stock_url(&self.lanes.client, url, stock, sold.as_ref()).await
            }
            Source::Belief => Ok(Reading::default()),
        }
    }

    /// One truth: a declared `--stock` that disagrees with the stock the
    /// measured truth reads before the race is bad input, naming both.
    pub fn check_declared(&self, before: &Reading) -> anyhow::Result<()> {
        let (Some(declared), Some(measured)) = (self.declared_stock, before.stock) else {
            return Ok(());
        };
        if declared == measured {
            return Ok(());
        }
        let what = match &self.source {
            Source::Sql { .. } => "--verify-sql (the service's database)".to_string(),
            Source::StockUrl { url, .. } => format!("--stock-url {}", shown(url)),
            Source::Belief => return Ok(()),
        };
        Err(bad_input(format!(
            "--stock {declared} disagrees with {what}, which reads {measured} before the race: \
             racelab audits against one truth; drop --stock to audit against {measured}, or \
             make the service start with {declared} (--reset-url, --reset-sql)"
        )))
    }

    /// The per-request limit in milliseconds; 0 = none.
    fn timeout_ms(&self) -> u64 {
        self.lanes.timeout.map_or(0, |t| t.as_millis() as u64)
    }
}

/// The URL to show: without any password or query value.
pub fn shown(url: &Url) -> String {
    crate::secret::redact(url, &[])
}

/// A URL as given (it may hold placeholders) without any password or
/// query value.
pub fn shown_text(text: &str) -> String {
    crate::secret::redact_written(text)
}

struct ServiceTarget<'a> {
    service: &'a Service,
    database: Option<DatabaseInfo>,
}

impl Target for ServiceTarget<'_> {
    type Lanes = HttpLanes;
    /// The truth read before the race.
    type Before = Reading;

    fn label(&self) -> &str {
        "http"
    }

    async fn prepare(&self) -> anyhow::Result<Reading> {
        self.service.reset().await?;
        let before = self.service.read().await?;
        self.service.check_declared(&before)?;
        if let Some(w) = &self.service.watch {
            w.begin();
        }
        Ok(before)
    }

    fn lanes(&self) -> Arc<HttpLanes> {
        self.service.lanes.clone()
    }

    async fn finish(
        &self,
        mut raced: Raced<HttpLane>,
        before: Reading,
    ) -> anyhow::Result<RunResult> {
        let svc = self.service;
        let watched = match &svc.watch {
            Some(w) => w.end(&raced.output.traces, raced.output.released_at).await,
            None => None,
        };
        let after = svc.read().await;
        report::recount(&mut raced);
        let outcomes = Outcomes::of(&raced.output.tally);
        // The measured truth when there is one (`check_declared` made sure
        // a declared stock agrees with it), else the declared stock.
        let initial = before.stock.or(svc.declared_stock).unwrap_or(0);
        let qty = raced.scenario.quantity;
        // One number of stock is one product's only when one was raced.
        let per_product = raced.scenario.products == 1;
        let audit = after.map(|after| {
            let a = truth::audit(
                initial,
                before,
                after,
                outcomes.succeeded,
                outcomes.unknown,
                qty,
            );
            if per_product {
                let left = a.final_stock;
                a.with_sold_out([(left, outcomes.sold_out)], qty)
            } else {
                a
            }
        });
        let audit = raced.audited(audit, "reading the truth after the race")?;
        let l = &svc.lanes;
        let audited = l.flow.audited();
        let flow = l.flow.is_file().then(|| {
            Box::new(report::flow_info(
                &l.flow,
                &raced.lanes,
                svc.max_setup_failures,
            ))
        });
        let target = TargetInfo {
            url: audited.url.shown(),
            method: audited.method.to_string(),
            truth: svc.source.kind(),
            timeout_ms: svc.timeout_ms(),
            success_statuses: audited.statuses.success.clone(),
            sold_out_statuses: audited.statuses.sold_out.clone(),
            rejected_statuses: audited.statuses.rejected.clone(),
            by_status: lane::by_status(&raced.lanes)
                .iter()
                .map(|(k, h)| (k.clone(), Summary::of(h)))
                .collect(),
            protocol: l.protocol.as_str().into(),
            sync: l.effective_sync().as_str().into(),
            connections: l.opened.load(std::sync::atomic::Ordering::Relaxed) as u64,
            flow,
        };
        // A service that answered nothing usefully tells nothing about its
        // safety: that is a failed run (exit 3), not a clean one.
        let answered = outcomes.succeeded + outcomes.sold_out + outcomes.rejected;
        if raced.completed() && outcomes.attempts > 0 && answered == 0 {
            let first = raced
                .output
                .tally
                .errors
                .first()
                .map_or(String::new(), |(m, _)| format!(": {m}"));
            let hint = crate::verdict::unmapped(&target, outcomes.attempts)
                .map_or(String::new(), |u| format!("; {u}"));
            raced.abort(format!(
                "the target answered none of {} requests with a success, sold-out or rejection \
                 ({} errors, {} unknown){first}{hint}",
                outcomes.attempts, outcomes.errors, outcomes.unknown
            ));
        }
        // The stock raced is what the truth said.
        raced.scenario.workload.stock = initial.max(0);
        raced.scenario.timeout_ms = svc.timeout_ms();
        let timeline = report::timeline(&raced, &l.flow);
        let mut result = raced.result(audit, Subject::Target(target), self.database.clone());
        result.timeline = timeline;
        result.service = watched;
        Ok(result)
    }
}
