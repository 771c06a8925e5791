//! Closing a round: its purchases' books become a race's output, audited
//! on the lab as `run` audits, assembled into a normal `RunResult` by the
//! pipeline's own `Raced`, judged by `verdict::decide`, and saved like a
//! run's result (so `racelab report` includes it). The trace analysis
//! (`crate::trace`) names the anomaly; `lane` draws it for the projector.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::books::{Books, Buyer};
use super::lane;
use crate::db::{Claims, Database};
use crate::engine::contention::Tracker;
use crate::engine::RaceOutput;
use crate::result::{DatabaseInfo, RunResult, ScenarioInfo, Status, Subject};
use crate::run::Raced;
use crate::scenario::Scenario;
use crate::strategy::Strategy;

/// What a closed round shows and keeps.
pub struct Closed {
    pub result: RunResult,
    /// The verdict in words, e.g. "OVERSOLD: 30 units sold of 1 in stock".
    pub sentence: String,
    /// Where the result was saved, or why it was not.
    pub saved: Result<Option<String>, String>,
    pub view: lane::View,
}

impl Closed {
    /// Add the closed round's verdict and pictures to its JSON.
    pub fn fill(&self, v: &mut Value) {
        let r = &self.result;
        v["verdict"] = json!(r.verdict);
        v["verdict_sentence"] = json!(self.sentence);
        v["status"] = json!(r.status);
        v["status_reason"] = json!(r.status_reason);
        v["audit"] = json!(r.audit);
        v["contention"] = json!(r.contention);
        v["explanation"] = json!(self.view.explanation);
        v["anomalies"] = json!(self.view.anomalies);
        v["waits"] = json!(self.view.waits);
        v["swimlane_svg"] = json!(self.view.swimlane);
        v["swimlane_caption"] = json!(self.view.caption);
        v["timeline"] = json!(self.view.timeline);
        match &self.saved {
            Ok(path) => v["result_file"] = json!(path),
            Err(why) => v["save_error"] = json!(why),
        }
    }
}

/// A round whose purchases have ended (or were given up on).
pub struct Ended {
    pub number: u32,
    pub strategy: Arc<Strategy>,
    pub stock: i64,
    pub think_ms: u64,
    pub max_tries: u32,
    pub seed: u64,
    pub started_at: String,
    pub released_at: Instant,
    pub cpu_at_release: Duration,
    pub books: Books,
    pub buyers: Vec<Buyer>,
    /// Attempts still in flight when the round was closed: the audit looks
    /// them up.
    pub unfinished: Vec<i64>,
    pub status: Status,
    pub status_reason: Option<String>,
}

/// Audit the lab, assemble and save the result, draw the round.
pub async fn finish(
    db: &Database,
    database: &DatabaseInfo,
    tracker: &Tracker,
    save_dir: Option<&Path>,
    e: Ended,
) -> Closed {
    let Books {
        mut tally,
        merged,
        traces,
        last_end,
    } = e.books;
    tally.unknown_attempts.extend(&e.unfinished);
    tally.in_flight += e.unfinished.len() as u64;
    let timeline = crate::trace::analyze(
        &e.strategy.name,
        &e.strategy.program,
        &traces,
        e.released_at,
        1,
    );
    let sold_out = tracker.sold_out_by_product();
    let audited = db
        .audit_claims(&Claims {
            succeeded: &tally.succeeded_attempts,
            unknown: &tally.unknown_attempts,
            sold_out: &sold_out,
            quantity: 1,
        })
        .await;
    let students = e.buyers.iter().filter(|b| !b.bot).count();
    let buyers = e.buyers.len();
    let scenario = Scenario {
        name: "classroom".into(),
        description: format!(
            "classroom round {}: {buyers} buyers ({students} students, {} bots) for {} in stock",
            e.number,
            buyers - students,
            e.stock
        ),
        stock: e.stock,
        buyers: buyers as u32,
        attempts_per_buyer: 1,
        quantity: 1,
        think_ms: e.think_ms,
        think_jitter_ms: 0,
        products: 1,
        product_skew: 0.0,
        connections: 0,
        duration_s: 0.0,
        rate_per_s: 0.0,
    };
    let output = RaceOutput {
        wall: last_end.map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(e.released_at)
        }),
        released_at: e.released_at,
        connect: Duration::ZERO,
        traces: Vec::new(),
        contention: merged.finish(tracker),
        sold_out_by_product: sold_out.clone(),
        open_loop: None,
        client_cpu: crate::engine::process_cpu().saturating_sub(e.cpu_at_release),
        tally,
    };
    let mut raced: Raced<()> = Raced {
        started_at: e.started_at,
        repetition: 1,
        scenario: ScenarioInfo {
            workload: scenario,
            max_tries: e.max_tries,
            seed: e.seed,
            timeout_ms: 0,
        },
        output,
        lanes: Vec::new(),
        status: e.status,
        status_reason: e.status_reason,
    };
    let audit = match audited {
        Ok(a) => Some(a),
        Err(err) => {
            raced.abort(format!("the audit could not run: {err:#}"));
            None
        }
    };
    let mut result = raced.result(
        audit,
        Subject::Strategy(crate::result::StrategyInfo::of(&e.strategy)),
        Some(database.clone()),
    );
    result.verdict = crate::verdict::decide(&result);
    let sentence = crate::verdict::sentence(&result);
    let names: Vec<String> = e.buyers.iter().map(|b| b.name.clone()).collect();
    let view = lane::view(&timeline, &names, &result);
    result.timeline = Some(timeline);
    let saved = match save_dir {
        Some(dir) => crate::report::save::save(dir, &result)
            .map(|p| Some(p.display().to_string()))
            .map_err(|e| format!("{e:#}")),
        None => Ok(None),
    };
    Closed {
        result,
        sentence,
        saved,
        view,
    }
}
