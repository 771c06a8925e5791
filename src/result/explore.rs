//! The result of `racelab explore` (the contract, documented as
//! `$defs/explore_result` in `docs/result.schema.json`): the counts over
//! every schedule explored, the verdict, and the shortest counterexample
//! step by step. Data only: the verdict is decided and said in words in
//! `verdict::explore`, rendered in `report::explore`.
//!
//! A schedule is the order in which the buyers' SQL statements ran, one at
//! a time; a step is one statement. Steps are numbered from 1 in the order
//! the scheduler let them start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DatabaseInfo, Status, StrategyInfo, Verdict};
use crate::db::Audit;
use crate::outcome::Outcome;

/// Tags an explore result among racelab's result files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExploreKind {
    Explore,
}

/// What exploring said about the strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExploreVerdict {
    /// Every schedule of the bounded space ran, cleanly, and none was unsafe.
    Safe,
    /// Some schedule sold more than the stock.
    Oversold,
    /// Some schedule left books that do not balance (drift, negative stock,
    /// the buyers' successes against the orders), without overselling.
    Inconsistent,
    /// No unsafe schedule was found, but the space was not covered or a
    /// schedule did not run cleanly (see `verdict_reason`).
    Inconclusive,
}

impl ExploreVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ExploreVerdict::Safe => "safe",
            ExploreVerdict::Oversold => "oversold",
            ExploreVerdict::Inconsistent => "inconsistent",
            ExploreVerdict::Inconclusive => "inconclusive",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExploreResult {
    pub kind: ExploreKind,
    pub racelab_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub strategy: StrategyInfo,
    pub database: DatabaseInfo,
    pub buyers: u32,
    pub stock: i64,
    pub quantity: i64,
    /// Always 1: each buyer makes one attempt (retries included).
    pub attempts_per_buyer: u32,
    pub max_tries: u32,
    /// The buyers' seeds derive from it (for `random()` in scripts).
    pub seed: u64,
    /// Schedules with at most this many preemptions; null: every schedule.
    pub preemption_bound: Option<u32>,
    /// `--schedule`: the schedule replayed (then exactly one is explored).
    pub replayed: Option<Vec<u32>>,
    pub verdict: ExploreVerdict,
    /// Why the verdict is `inconclusive`, or null.
    pub verdict_reason: Option<String>,
    pub schedules_explored: u64,
    /// Schedules whose audit was not safe (oversold or inconsistent).
    pub unsafe_schedules: u64,
    pub oversold_schedules: u64,
    /// Schedules in which some attempt ended as `error` (not a verdict on
    /// the stock, but not a clean run either).
    pub error_schedules: u64,
    /// Schedules that could not go on: every buyer left waited on another
    /// with no deadlock to resolve it.
    pub stuck_schedules: u64,
    /// Replays of a schedule prefix that did not reach the same state (the
    /// script depends on something besides the interleaving).
    pub diverged_schedules: u64,
    /// Schedules run again because the server broke a deadlock in a buyer
    /// other than the longest waiter, or a replay reached another state
    /// (timing on a loaded machine); each is counted once when explored.
    pub retried_schedules: u64,
    /// Whether every schedule within the bound ran to its end.
    pub complete: bool,
    pub status: Status,
    pub status_reason: Option<String>,
    /// SQL statements run, over all schedules.
    pub steps: u64,
    /// The most steps any schedule took.
    pub longest_schedule: u64,
    /// Statements that waited on another buyer's lock, over all schedules.
    pub waits: u64,
    /// Deadlocks PostgreSQL broke (40P01), over all schedules.
    pub deadlocks: u64,
    /// Attempts by outcome, over all schedules.
    pub outcomes: BTreeMap<String, u64>,
    /// Anomalies the trace analysis named, and in how many unsafe schedules.
    pub anomalies_seen: BTreeMap<String, u64>,
    /// The buyers' deadlock_timeout while exploring.
    pub deadlock_timeout_ms: u64,
    pub wall_seconds: f64,
    /// The shortest unsafe schedule (the first found of that length), or
    /// for `--schedule` the schedule replayed when it was unsafe.
    pub counterexample: Option<Counterexample>,
    /// `--schedule` and `--step`: the schedule that ran, safe or not.
    pub replay: Option<Counterexample>,
    /// The first stuck, diverged or erring schedule, to look at.
    pub first_problem: Option<Problem>,
}

/// One schedule, step by step, with its audit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Counterexample {
    /// Which buyer took each step (the `--schedule` that replays it).
    pub schedule: Vec<u32>,
    pub preemptions: u32,
    pub audit: Audit,
    pub verdict: Verdict,
    /// Named by the trace analysis from the schedule's recorded events.
    pub anomalies: Vec<ExploreAnomaly>,
    pub steps: Vec<ScheduleStep>,
    /// How each buyer's attempt ended.
    pub buyers: Vec<BuyerEnd>,
    /// The buyers PostgreSQL chose as deadlock victims (40P01), in order.
    pub deadlock_victims: Vec<u32>,
}

/// A schedule that did not run cleanly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub schedule: Vec<u32>,
    pub what: String,
}

/// What a step did to the product's stock, from the trace analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRole {
    /// Read the stock into a variable.
    Read,
    /// Wrote the stock.
    Write,
    /// A write that matched no row.
    NoWrite,
    Commit,
    Rollback,
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduleStep {
    pub buyer: u32,
    #[serde(rename = "try")]
    pub try_no: u32,
    /// The script line (for a ROLLBACK racelab sent, the line that ended
    /// the try).
    pub line: usize,
    /// The statement as sent, its bound values written in as literals.
    pub sql: String,
    /// A ROLLBACK the interpreter sent (after an error, a conflict,
    /// `\retry` or `\sold_out`), not a statement of the script.
    pub rollback_by_racelab: bool,
    /// The scheduler switched away from a buyer that could have gone on.
    pub preemption: bool,
    pub role: StepRole,
    /// The stock read, or written when known.
    pub value: Option<i64>,
    pub rows: Option<u64>,
    /// Variables `\gset` stored: (name, value).
    pub values: Vec<(String, String)>,
    pub error: Option<String>,
    /// The buyers whose locks the statement waited on (empty: no wait).
    pub waited_for: Vec<u32>,
    /// For a statement that waited: the step after which it completed.
    pub completed_after: Option<usize>,
}

/// An anomaly, placed on the schedule's steps (1-based).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExploreAnomaly {
    /// `P4 lost update`, `G-single read skew`, `G2-item write skew`.
    pub name: String,
    /// The weakest PostgreSQL isolation level that prevents it.
    pub prevented_at: String,
    pub buyer: u32,
    pub read_value: i64,
    pub read_step: Option<usize>,
    pub commit_step: Option<usize>,
    /// What this buyer committed, e.g. `stock := 0`.
    pub committed: Option<String>,
    /// The buyers whose committed updates this one did not see.
    pub overtook: Vec<Overtaken>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Overtaken {
    pub buyer: u32,
    /// That buyer's write of the stock, and its commit.
    pub write_step: Option<usize>,
    pub commit_step: Option<usize>,
    pub committed: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuyerEnd {
    pub buyer: u32,
    pub outcome: Outcome,
    pub tries: u32,
    pub message: Option<String>,
}

impl ExploreResult {
    /// The strategy's name.
    pub fn name(&self) -> &str {
        &self.strategy.name
    }
}

/// The schedule as `--schedule` takes it: buyer numbers separated by spaces.
pub fn schedule_arg(schedule: &[u32]) -> String {
    schedule
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}
