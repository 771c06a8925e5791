//! The result contract (DESIGN §7) as serde structs: what one race of one
//! target produced. `docs/result.schema.json` describes the same shape and
//! a test validates real output against it: change both together, with the
//! README. Data and its arithmetic only: the verdict is decided in
//! `verdict`, words and tables are made in `report`.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod explore;
pub mod service;

pub use service::{ServiceAccess, ServiceAnomaly, ServiceInfo, ServiceStep, ServiceTrace};

use crate::db::pgbouncer::PoolMode;
use crate::db::{Audit, DbKind};
pub use crate::engine::Contention;
use crate::engine::{Latency, Tally};
use crate::outcome::Outcome;
use crate::scenario::Scenario;
use crate::strategy::{Origin, Strategy};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub racelab_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub scenario: ScenarioInfo,
    /// What was raced: a strategy (`run`, `compare`) or, for `racelab
    /// http`, a target; exactly one of the two is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetInfo>,
    /// The server the audit read; null for an HTTP run without `--verify-sql`.
    pub database: Option<DatabaseInfo>,
    /// What stood between the buyers and the server (`--via pgbouncer`);
    /// absent when they connected directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// 1-based index of this run among `--repeat` runs of its strategy.
    pub repetition: u32,
    pub outcomes: Outcomes,
    /// The first distinct error messages, with counts.
    pub error_messages: Vec<ErrorCount>,
    /// What the buyers believed: units in attempts that reported success.
    pub believed_units_sold: i64,
    /// The database's truth; null when the audit could not run.
    pub audit: Option<Audit>,
    /// Whether the race happened: how together the buyers were released
    /// and how many attempts overlapped on one product. Zero in results
    /// saved before racelab measured it.
    #[serde(default)]
    pub contention: Contention,
    /// `safe`, `oversold`, `inconsistent` or `inconclusive` (decided by
    /// `verdict::decide`); null without an audit.
    pub verdict: Option<Verdict>,
    pub status: Status,
    /// Why the run was interrupted or aborted.
    pub status_reason: Option<String>,
    pub latency_us: LatencyInfo,
    pub throughput: Throughput,
    /// `--watch`: stock and units sold sampled during the race.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchInfo>,
    /// `--rate`: the open loop's schedule and its lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoopInfo>,
    /// `--nemesis` and `--retry-unknown`: what was injected, and how often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nemesis: Option<NemesisInfo>,
    /// `--trace`: the analysed timeline; printed, not part of the JSON.
    #[serde(skip)]
    pub timeline: Option<crate::trace::Timeline>,
    /// `racelab http --service` or `--db-proxy`: the service behind the
    /// wire proxy, and what its transactions did during this race.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
}

/// What a run's audit says about the strategy or service, as the result
/// records it. Which one applies is decided in one place,
/// `verdict::decide`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Audited and clean: nothing oversold, the books balance.
    Safe,
    /// More units sold than there was stock.
    Oversold,
    /// Nothing oversold, but the books do not balance (drift, negative
    /// stock, successes without orders or orders without successes, buyers
    /// told "sold out" while stock remained).
    Inconsistent,
    /// The audit is clean, but the race tested nothing: no two attempts on
    /// a product overlapped, or nothing was sold while stock remained.
    /// Never safe.
    Inconclusive,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Completed,
    Interrupted,
    Aborted,
}

/// The workload as raced: every scenario field (flattened into the same
/// JSON object) and the run's own settings. Derefs to the `Scenario`, so
/// `result.scenario.buyers` reads as it looks.
/// The faults a run injected into its own race, as asked and as done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NemesisInfo {
    /// Each `--nemesis KIND:RATE`, in a fixed order.
    pub faults: Vec<FaultInfo>,
    /// `--retry-unknown`: resubmissions allowed per unknown attempt (0: none).
    pub retry_unknown: u32,
    /// Buyer backends the terminator ended (`terminate`).
    pub terminated: u64,
    /// Replies buyers dropped after sending the statement that commits (`drop-reply`).
    pub dropped_replies: u64,
    /// New connections buyers opened after losing one on purpose.
    pub reconnects: u64,
    /// Unknown attempts sent again under the same attempt id.
    pub resubmitted: u64,
}

/// One `--nemesis KIND:RATE`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultInfo {
    /// `terminate` or `drop-reply`.
    pub kind: String,
    /// Terminations per second, or the probability of a dropped reply.
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioInfo {
    #[serde(flatten)]
    pub workload: Scenario,
    pub max_tries: u32,
    pub seed: u64,
    pub timeout_ms: u64,
}

impl std::ops::Deref for ScenarioInfo {
    type Target = Scenario;

    fn deref(&self) -> &Scenario {
        &self.workload
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StrategyInfo {
    pub name: String,
    /// `builtin` or the path of the script file.
    pub source: String,
    /// SHA-256 of the script text, hex.
    pub sha256: String,
}

impl StrategyInfo {
    /// What the result says about a strategy: its name, where it came
    /// from, and a hash of its text.
    pub fn of(strategy: &Strategy) -> StrategyInfo {
        StrategyInfo {
            name: strategy.name.clone(),
            source: match &strategy.origin {
                Origin::Builtin => "builtin".to_string(),
                Origin::File(p) => p.display().to_string(),
            },
            sha256: crate::hex::hex(&Sha256::digest(strategy.source.as_bytes())),
        }
    }

    /// How to name the strategy on the command line again.
    pub fn source_arg(&self) -> &str {
        if self.source == "builtin" {
            &self.name
        } else {
            &self.source
        }
    }
}

/// The HTTP target of `racelab http`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    /// The purchase URL (any password replaced by `***`).
    pub url: String,
    pub method: String,
    /// Where the audit's numbers came from, most trusted first:
    /// `verify_sql` (the service's database), `stock_url` (its stock
    /// endpoint before and after), `client_belief` (`--stock N` and the
    /// successes racelab counted).
    pub truth: Truth,
    /// Per-request time limit (`--request-timeout`); 0 = none.
    pub timeout_ms: u64,
    pub success_statuses: Vec<u16>,
    pub sold_out_statuses: Vec<u16>,
    pub rejected_statuses: Vec<u16>,
    /// Latency by HTTP status code (`none`: no response, e.g. a timeout).
    pub by_status: BTreeMap<String, Summary>,
    /// The HTTP version the buyers spoke: `http/1.1` or `h2`.
    #[serde(default = "http11")]
    pub protocol: String,
    /// How the buyers' first requests were released: `last-byte` (all
    /// but their final byte or frame before the barrier) or `none`.
    #[serde(default = "no_sync")]
    pub sync: String,
    /// Connections racelab opened to the target before the barrier.
    #[serde(default)]
    pub connections: u64,
    /// The flow each buyer ran (`--flow`): per-step counts and latency, and
    /// the buyers a step before the race put out of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Box<FlowInfo>>,
}

/// What the buyers of a flow did, step by step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowInfo {
    /// The flow file as given.
    pub file: String,
    pub steps: Vec<StepInfo>,
    /// Buyers out of the race: a step before it failed for them.
    pub out_of_race: u64,
    /// `--max-setup-failures`: more buyers out than this and the run is
    /// inconclusive.
    pub max_setup_failures: u64,
    /// What put buyers out of the race, commonest first.
    pub setup_failures: Vec<SetupFailure>,
}

/// One step of a flow over every buyer and attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepInfo {
    pub name: String,
    /// `METHOD PATH` as written (placeholders, never values).
    pub request: String,
    /// `before`, `race` or `after`.
    pub phase: String,
    /// Run before each attempt rather than once per buyer.
    pub every: bool,
    pub requests: u64,
    /// Requests that did not let the buyer go on (an unexpected status, no
    /// response, an extraction that found nothing).
    pub failed: u64,
    /// Requests by status code (`none`: no response).
    pub by_status: BTreeMap<String, u64>,
    pub latency_us: Summary,
    /// The first distinct failures, with how often each occurred.
    pub failures: Vec<ErrorCount>,
}

/// Buyers one step put out of the race, by its status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetupFailure {
    pub step: String,
    /// The status code, or `none` (no response, or nothing to extract).
    pub status: String,
    pub buyers: u64,
    pub message: String,
}

fn http11() -> String {
    "http/1.1".into()
}

fn no_sync() -> String {
    "none".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Truth {
    VerifySql,
    StockUrl,
    ClientBelief,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub kind: DbKind,
    pub server_version: String,
    pub durable: bool,
}

/// `--watch MS`: the samples of one run, taken while the buyers raced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WatchInfo {
    pub interval_ms: u64,
    /// Stock of all products together at the start.
    pub initial_stock: i64,
    pub samples: Vec<Sample>,
    /// Time of the first sample with units sold above the initial stock.
    pub first_oversold_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Milliseconds since the buyers were released.
    pub t_ms: f64,
    /// Sum of `products.stock`.
    pub stock: i64,
    /// Sum of `orders.qty`.
    pub units_sold: i64,
}

/// The buyers' path to the server when it was not direct.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Topology {
    /// The pooler: `pgbouncer`.
    pub via: String,
    /// When a server connection went back to the pool.
    pub pool_mode: PoolMode,
    /// The server connections in the pool.
    pub pool_size: u32,
}

impl Topology {
    pub fn pgbouncer(pool_mode: PoolMode, pool_size: u32) -> Topology {
        Topology {
            via: "pgbouncer".into(),
            pool_mode,
            pool_size,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcomes {
    pub attempts: u64,
    pub succeeded: u64,
    pub sold_out: u64,
    pub rejected: u64,
    pub gave_up: u64,
    pub errors: u64,
    /// Attempts whose fate is unknown (connection lost while committing).
    pub unknown: u64,
    /// Tries beyond the first, summed over attempts.
    pub retries: u64,
    /// Attempts abandoned in flight when the run was stopped.
    pub in_flight: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyInfo {
    pub attempt: Summary,
    /// Keyed by outcome (`succeeded`, `sold_out`, ...); only outcomes seen.
    pub by_outcome: BTreeMap<String, Summary>,
    /// The attempt histogram, HdrHistogram V2 + DEFLATE, base64: runs can be
    /// merged exactly.
    pub hdr: String,
    /// The same, per outcome (only outcomes seen).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hdr_by_outcome: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    pub wall_seconds: f64,
    pub attempts_per_sec: f64,
    pub successes_per_sec: f64,
    /// racelab's own CPU time (every thread of its process) from the
    /// release to the end of the race, per attempt made; null when no
    /// attempt was made (or in results saved before racelab measured it).
    #[serde(default)]
    pub client_cpu_us_per_attempt: Option<f64>,
}

/// `--rate`: the open loop's schedule and how late attempts started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpenLoopInfo {
    /// The rate asked for, attempts per second across all buyers.
    pub rate_per_s: f64,
    /// Starts scheduled (exponential inter-arrival times from the seed).
    pub scheduled: u64,
    /// Attempts started on the schedule.
    pub started: u64,
    /// Of those, started more than `late_after_us` after their scheduled
    /// start (every buyer busy, or a stalled server).
    pub late: u64,
    pub late_after_us: u64,
    /// Scheduled start to actual start. Latencies (`latency_us`) run from
    /// the scheduled start, so they include it.
    pub lag_us: Summary,
}

impl OpenLoopInfo {
    pub fn of(o: &crate::engine::OpenLoop) -> OpenLoopInfo {
        let lag = o.lag.histogram();
        OpenLoopInfo {
            rate_per_s: o.rate,
            scheduled: o.scheduled,
            started: lag.map_or(0, |h| h.len()),
            late: o.lag.late(),
            late_after_us: u64::try_from(crate::engine::LATE_AFTER.as_micros()).unwrap_or(0),
            lag_us: lag.map(Summary::of).unwrap_or_default(),
        }
    }
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// What was raced: a strategy on the lab, or an HTTP target.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Strategy(StrategyInfo),
    Target(TargetInfo),
}

/// What every run records about its race, whatever was raced (a strategy
/// on the lab, or an HTTP target); `RunResult::assemble` adds the rest.
pub struct RaceRecord {
    pub started_at: String,
    pub scenario: ScenarioInfo,
    pub repetition: u32,
    pub status: Status,
    pub status_reason: Option<String>,
    pub audit: Option<Audit>,
    pub wall: std::time::Duration,
    pub contention: Contention,
    /// racelab's CPU time across the race.
    pub client_cpu: Option<std::time::Duration>,
    pub open_loop: Option<OpenLoopInfo>,
}

impl RunResult {
    /// One result from its race record, the buyers' tally, and what was
    /// raced. Its `verdict` is left to `verdict::decide` (the pipeline
    /// fills it in, see `run`).
    pub fn assemble(
        record: RaceRecord,
        tally: &mut Tally,
        subject: Subject,
        database: Option<DatabaseInfo>,
    ) -> RunResult {
        let (strategy, target) = match subject {
            Subject::Strategy(s) => (Some(s), None),
            Subject::Target(t) => (None, Some(t)),
        };
        let outcomes = Outcomes::of(tally);
        let throughput = Throughput::of(&outcomes, record.wall, record.client_cpu);
        let latency = tally.latency();
        RunResult {
            racelab_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: record.started_at,
            believed_units_sold: (outcomes.succeeded as i64)
                .saturating_mul(record.scenario.quantity),
            scenario: record.scenario,
            strategy,
            target,
            database,
            topology: None,
            repetition: record.repetition,
            error_messages: ErrorCount::list(tally),
            verdict: None,
            audit: record.audit,
            contention: record.contention,
            status: record.status,
            status_reason: record.status_reason,
            latency_us: LatencyInfo::of(&latency),
            throughput,
            outcomes,
            watch: None,
            open_loop: record.open_loop,
            nemesis: None,
            timeline: None,
            service: None,
        }
    }
}

impl ScenarioInfo {
    /// The scenario as raced, with the run's own settings.
    pub fn of(sc: &Scenario, max_tries: u32, seed: u64, timeout_ms: u64) -> ScenarioInfo {
        ScenarioInfo {
            workload: sc.clone(),
            max_tries,
            seed,
            timeout_ms,
        }
    }
}

impl Outcomes {
    pub fn of(t: &Tally) -> Outcomes {
        Outcomes {
            attempts: t.attempts(),
            succeeded: t.count(Outcome::Succeeded),
            sold_out: t.count(Outcome::SoldOut),
            rejected: t.count(Outcome::Rejected),
            gave_up: t.count(Outcome::GaveUp),
            errors: t.count(Outcome::Error),
            unknown: t.count(Outcome::Unknown),
            retries: t.tries.saturating_sub(t.attempts()),
            in_flight: t.in_flight,
        }
    }
}

impl Throughput {
    pub fn of(
        o: &Outcomes,
        wall: std::time::Duration,
        cpu: Option<std::time::Duration>,
    ) -> Throughput {
        let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let secs = wall.as_secs_f64().max(1e-9);
        Throughput {
            wall_seconds: round3(wall.as_secs_f64()),
            attempts_per_sec: round3(o.attempts as f64 / secs),
            successes_per_sec: round3(o.succeeded as f64 / secs),
            client_cpu_us_per_attempt: cpu
                .filter(|_| o.attempts > 0)
                .map(|c| (c.as_secs_f64() * 1e6 / o.attempts as f64 * 10.0).round() / 10.0),
        }
    }
}

impl ErrorCount {
    /// The distinct error messages a tally kept.
    pub fn list(t: &Tally) -> Vec<ErrorCount> {
        t.errors
            .iter()
            .map(|(message, count)| ErrorCount {
                message: message.clone(),
                count: *count,
            })
            .collect()
    }
}

impl LatencyInfo {
    pub fn of(latency: &Latency) -> LatencyInfo {
        let by_outcome = Outcome::ALL
            .iter()
            .filter_map(|o| {
                let h = latency.by_outcome[o.index()].as_ref()?;
                Some((o.as_str().to_string(), Summary::of(h)))
            })
            .collect();
        let hdr_by_outcome = Outcome::ALL
            .iter()
            .filter_map(|o| {
                let h = latency.by_outcome[o.index()].as_ref()?;
                Some((o.as_str().to_string(), encode_histogram(h)))
            })
            .collect();
        LatencyInfo {
            attempt: Summary::of(&latency.all),
            by_outcome,
            hdr: encode_histogram(&latency.all),
            hdr_by_outcome,
        }
    }

    /// The attempt histogram back from `hdr`.
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        decode_histogram(&self.hdr)
    }
}

pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
    Ok(h)
}

impl RunResult {
    /// What was raced, by name: the strategy, or the target's URL.
    pub fn name(&self) -> &str {
        match (&self.strategy, &self.target) {
            (Some(s), _) => &s.name,
            (None, Some(t)) => &t.url,
            (None, None) => "?",
        }
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        let o = &self.outcomes;
        match outcome {
            Outcome::Succeeded => o.succeeded,
            Outcome::SoldOut => o.sold_out,
            Outcome::Rejected => o.rejected,
            Outcome::GaveUp => o.gave_up,
            Outcome::Error => o.errors,
            Outcome::Unknown => o.unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_through_base64() {
        let mut h = crate::engine::tally::new_histogram();
        for v in [1u64, 10, 100, 1000, 123_456] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
        assert_eq!(Summary::of(&back), Summary::of(&h));
    }
}
