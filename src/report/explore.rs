//! The result of `racelab explore` (the contract, documented as
//! `$defs/explore_result` in `docs/result.schema.json`) and its rendering in
//! words: the counts, the verdict, and the shortest counterexample as a
//! numbered timeline of steps.
//!
//! A schedule is the order in which the buyers' SQL statements ran, one at
//! a time; a step is one statement. Steps are numbered from 1 in the order
//! the scheduler let them start.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::result::{DatabaseInfo, StrategyInfo};
use super::Status;

use crate::db::Audit;
use crate::outcome::Outcome;
use crate::verdict::{Expect, Verdict};

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
    /// `P4 lost update`, `G-single read skew`, `G2-item write skew`, `G2
    /// anti-dependency cycle (predicate)`, `split transaction`.
    pub name: String,
    /// The weakest PostgreSQL isolation level that prevents it; `None`
    /// for a split transaction, which no level prevents.
    pub prevented_at: Option<String>,
    pub buyer: u32,
    /// What the stale read read, e.g. `products.stock (id = 1)`.
    pub item: String,
    /// The value read, when the script kept an integer.
    pub read_value: Option<i64>,
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

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
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

/// What the bound allowed, in words.
pub fn bound_words(bound: Option<u32>) -> String {
    match bound {
        None => "every schedule".to_string(),
        Some(p) => format!(
            "every schedule with at most {}",
            plural(u64::from(p), "preemption", "preemptions")
        ),
    }
}

/// The verdict in one sentence.
pub fn verdict_sentence(r: &ExploreResult) -> String {
    let n = r.schedules_explored;
    let space = match &r.replayed {
        Some(_) => "the schedule replayed".to_string(),
        None => format!(
            "{} of {}",
            bound_words(r.preemption_bound),
            plural(u64::from(r.buyers), "buyer", "buyers")
        ),
    };
    if r.replayed.is_some() {
        return match r.verdict {
            ExploreVerdict::Safe => {
                "SAFE: the schedule replayed neither oversold nor drifted".to_string()
            }
            ExploreVerdict::Oversold => "OVERSOLD: the schedule replayed oversold".to_string(),
            ExploreVerdict::Inconsistent => {
                "INCONSISTENT: the schedule replayed left the books unbalanced".to_string()
            }
            ExploreVerdict::Inconclusive => format!(
                "INCONCLUSIVE: {}",
                r.verdict_reason
                    .as_deref()
                    .unwrap_or("the schedule did not run cleanly")
            ),
        };
    }
    match r.verdict {
        ExploreVerdict::Safe if n == 1 => format!(
            "SAFE: the one schedule neither oversold nor drifted ({space}; one product, one attempt per buyer)"
        ),
        ExploreVerdict::Safe => format!(
            "SAFE: none of the {n} schedules oversold or drifted ({space}; one product, one attempt per buyer)"
        ),
        ExploreVerdict::Oversold => format!(
            "OVERSOLD: {} of {} oversold{}",
            r.oversold_schedules,
            plural(n, "schedule", "schedules"),
            match r.unsafe_schedules - r.oversold_schedules {
                0 => String::new(),
                k => format!(", {k} more left the books inconsistent"),
            }
        ),
        ExploreVerdict::Inconsistent => format!(
            "INCONSISTENT: {} of {} left the books unbalanced (no oversell)",
            r.unsafe_schedules,
            plural(n, "schedule", "schedules")
        ),
        ExploreVerdict::Inconclusive => format!(
            "INCONCLUSIVE: no unsafe schedule among {}, but {}",
            plural(n, "schedule", "schedules"),
            r.verdict_reason.as_deref().unwrap_or("the space was not covered")
        ),
    }
}

/// Why `--expect` did not hold, naming the schedule that broke it; `None`
/// when it held (or none was given). `safe` needs a proof: the bounded
/// space covered cleanly and no schedule unsafe.
pub fn expectation_failure(expect: Option<Expect>, r: &ExploreResult) -> Option<String> {
    let name = r.name();
    match expect? {
        Expect::Safe => match r.verdict {
            ExploreVerdict::Safe => None,
            ExploreVerdict::Oversold | ExploreVerdict::Inconsistent => {
                let schedule = r
                    .counterexample
                    .as_ref()
                    .map(|c| schedule_arg(&c.schedule))
                    .unwrap_or_default();
                Some(format!(
                    "expected safe: {name} was unsafe in {} of {} schedules ({}); the shortest: --schedule \"{schedule}\"",
                    r.unsafe_schedules,
                    r.schedules_explored,
                    r.verdict.as_str()
                ))
            }
            ExploreVerdict::Inconclusive => Some(format!(
                "expected safe: {name} is not proven safe: {}",
                r.verdict_reason
                    .as_deref()
                    .unwrap_or("the space was not covered")
            )),
        },
        Expect::Oversold if r.oversold_schedules > 0 => None,
        Expect::Oversold => Some(format!(
            "expected oversold: none of the {} schedules of {name} oversold",
            r.schedules_explored
        )),
    }
}

/// `--junit`: one test case, failing when the expectation (or, without
/// one, safety) did not hold.
pub fn junit(r: &ExploreResult, expect: Option<Expect>) -> String {
    let failure = expectation_failure(Some(expect.unwrap_or(Expect::Safe)), r);
    let name = format!(
        "explore {} ({} buyers, {})",
        r.name(),
        r.buyers,
        match &r.replayed {
            Some(s) => format!("--schedule \"{}\"", schedule_arg(s)),
            None => bound_words(r.preemption_bound),
        }
    );
    let failures = u8::from(failure.is_some());
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"racelab\" tests=\"1\" failures=\"{failures}\" time=\"{:.3}\">",
        r.wall_seconds
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"racelab.explore\" tests=\"1\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
        r.wall_seconds
    );
    let _ = write!(
        x,
        "    <testcase classname=\"racelab.explore\" name=\"{}\" time=\"{:.3}\"",
        super::html::esc(&name),
        r.wall_seconds
    );
    match failure {
        None => x.push_str("/>\n"),
        Some(why) => {
            let _ = writeln!(
                x,
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                super::html::esc(&why),
                super::html::esc(&verdict_sentence(r))
            );
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// The whole human report of an explore run.
pub fn render(r: &ExploreResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "explore {}: {}, stock {}, quantity {}, one attempt each, {}",
        r.name(),
        plural(u64::from(r.buyers), "buyer", "buyers"),
        r.stock,
        r.quantity,
        match &r.replayed {
            Some(s) => format!("replaying --schedule \"{}\"", schedule_arg(s)),
            None => bound_words(r.preemption_bound),
        }
    );
    let covered = if r.complete {
        "complete".to_string()
    } else {
        "NOT complete".to_string()
    };
    let _ = writeln!(
        out,
        "  schedules   {} explored ({covered}), {} unsafe ({} oversold), {} with errors, {} stuck",
        r.schedules_explored,
        r.unsafe_schedules,
        r.oversold_schedules,
        r.error_schedules,
        r.stuck_schedules
    );
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "  steps       {} statements, longest schedule {}, {} waited on a lock, {} deadlocks",
        r.steps, r.longest_schedule, r.waits, r.deadlocks
    );
    let _ = writeln!(
        out,
        "  attempts    {}",
        if outcomes.is_empty() {
            "none finished".to_string()
        } else {
            outcomes.join(", ")
        }
    );
    if !r.anomalies_seen.is_empty() {
        let seen: Vec<String> = r
            .anomalies_seen
            .iter()
            .map(|(k, v)| format!("{k} in {}", plural(*v, "schedule", "schedules")))
            .collect();
        let _ = writeln!(out, "  anomalies   {}", seen.join(", "));
    }
    let _ = writeln!(out, "  wall        {:.2} s", r.wall_seconds);
    out.push('\n');
    let _ = writeln!(out, "{}", verdict_sentence(r));
    if let Some(p) = &r.first_problem {
        let _ = writeln!(
            out,
            "  first problem: {} (--schedule \"{}\")",
            p.what,
            schedule_arg(&p.schedule)
        );
    }
    if let Some(c) = &r.counterexample {
        out.push('\n');
        out.push_str(&render_schedule("Counterexample", c));
        if r.replayed.is_none() {
            let _ = writeln!(
                out,
                "\nReplay it: racelab explore --strategy {} --buyers {} --stock {} --quantity {} --schedule \"{}\"",
                r.strategy.source_arg(),
                r.buyers,
                r.stock,
                r.quantity,
                schedule_arg(&c.schedule)
            );
        }
    }
    out
}

impl StrategyInfo {
    /// How to name the strategy on the command line again.
    pub fn source_arg(&self) -> &str {
        if self.source == "builtin" {
            &self.name
        } else {
            &self.source
        }
    }
}

/// One step as a line of the timeline (without its number).
pub fn describe_step(s: &ScheduleStep) -> String {
    let sql = one_line(&s.sql, 90);
    let mut d = match (s.role, s.value) {
        (StepRole::Read, Some(v)) => format!("{sql}   → stock = {v}"),
        (StepRole::Write, Some(v)) => format!("{sql}   → writes stock := {v}"),
        (StepRole::NoWrite, _) => format!("{sql}   → no row written"),
        _ => match (&s.rows, s.values.is_empty()) {
            (_, false) => {
                let vals: Vec<String> =
                    s.values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{sql}   → {}", vals.join(", "))
            }
            (Some(n), true) if *n > 0 && s.error.is_none() => {
                format!("{sql}   → {}", plural(*n, "row", "rows"))
            }
            _ => sql,
        },
    };
    if s.rollback_by_racelab {
        d.push_str("   (sent by racelab)");
    }
    if !s.waited_for.is_empty() {
        let whom: Vec<String> = s.waited_for.iter().map(u32::to_string).collect();
        let _ = write!(
            d,
            "   ⏳ waits for buyer {}{}",
            whom.join(", "),
            match s.completed_after {
                Some(n) => format!(", done after step {n}"),
                None => String::new(),
            }
        );
    }
    if let Some(e) = &s.error {
        let _ = write!(d, "   ✗ {}", one_line(e, 90));
    }
    if s.try_no > 1 {
        let _ = write!(d, "   (try {})", s.try_no);
    }
    d
}

/// The first line of `s`, whitespace collapsed, cut at `n` characters.
pub fn one_line(s: &str, n: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= n {
        flat
    } else {
        let cut: String = flat.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

/// A recorded schedule (a counterexample, or the one replayed): the
/// timeline, the outcomes, the audit, the anomalies.
pub fn render_schedule(title: &str, c: &Counterexample) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}: {} steps, {} — schedule \"{}\"",
        c.steps.len(),
        plural(u64::from(c.preemptions), "preemption", "preemptions"),
        schedule_arg(&c.schedule)
    );
    let lanes = c.buyers.len().max(1);
    for (i, s) in c.steps.iter().enumerate() {
        let n = i + 1;
        let indent = "  ".repeat((s.buyer as usize).saturating_sub(1).min(lanes));
        let mut line = format!("{n:>4}  buyer {:<2} {indent}{}", s.buyer, describe_step(s));
        for a in c.anomalies.iter().filter(|a| a.commit_step == Some(n)) {
            let whom: Vec<String> = a.overtook.iter().map(|o| o.buyer.to_string()).collect();
            let verb = if a.name.starts_with("P4") {
                "overwrites"
            } else {
                "has not seen"
            };
            let _ = write!(
                line,
                "   ← {verb} buyer {}'s update ({})",
                whom.join(", "),
                a.name
            );
        }
        for a in &c.anomalies {
            if a.overtook.iter().any(|o| o.write_step == Some(n)) {
                let _ = write!(
                    line,
                    "   ← overwritten by buyer {} at step {}",
                    a.buyer,
                    a.commit_step.map_or("?".to_string(), |s| s.to_string())
                );
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let ends: Vec<String> = c
        .buyers
        .iter()
        .map(|b| {
            let retries = if b.tries > 1 {
                format!(" after {} tries", b.tries)
            } else {
                String::new()
            };
            format!("buyer {} {}{retries}", b.buyer, b.outcome.as_str())
        })
        .collect();
    let _ = writeln!(out, "Outcomes: {}.", ends.join(", "));
    let a = &c.audit;
    let _ = writeln!(
        out,
        "Audit: {} sold of {} in stock, final stock {}, {} oversold, drift {}{}.",
        plural(a.units_sold.max(0) as u64, "unit", "units"),
        a.initial_stock,
        a.final_stock,
        a.oversold_units,
        a.stock_drift,
        if a.negative_stock {
            ", negative stock"
        } else {
            ""
        }
    );
    if c.anomalies.is_empty() && c.verdict != Verdict::Safe {
        out.push_str(
            "Anomalies: the trace analysis named none (the books are wrong without a stale read of the stock).\n",
        );
    } else if c.anomalies.is_empty() {
        out.push_str("Anomalies: none.\n");
    }
    for an in &c.anomalies {
        let others: Vec<String> = an
            .overtook
            .iter()
            .map(|o| {
                format!(
                    "buyer {}'s {} (committed at step {})",
                    o.buyer,
                    o.committed.as_deref().unwrap_or("write"),
                    o.commit_step.map_or("?".to_string(), |s| s.to_string())
                )
            })
            .collect();
        let read = match an.read_value {
            Some(v) => format!("{} = {v}", an.item),
            None => an.item.clone(),
        };
        let _ = writeln!(
            out,
            "{}: buyer {} read {read} at step {} and committed {} at step {}, after {}. {}",
            an.name,
            an.buyer,
            an.read_step.map_or("?".to_string(), |s| s.to_string()),
            an.committed.as_deref().unwrap_or("its write"),
            an.commit_step.map_or("?".to_string(), |s| s.to_string()),
            others.join("; "),
            crate::trace::prevention(an.prevented_at.as_deref())
        );
    }
    out
}

/// Hand-made results for the renderers' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::db::audit::ProductTally;
    use crate::db::DbKind;

    pub fn step(buyer: u32, sql: &str, role: StepRole, value: Option<i64>) -> ScheduleStep {
        ScheduleStep {
            buyer,
            try_no: 1,
            line: 1,
            sql: sql.into(),
            rollback_by_racelab: false,
            preemption: false,
            role,
            value,
            rows: Some(1),
            values: Vec::new(),
            error: None,
            waited_for: Vec::new(),
            completed_after: None,
        }
    }

    /// naive's lost update, as `1 1 1 1 2 2 2 1 2 2` runs it.
    pub fn lost_update() -> Counterexample {
        let begin = |b| {
            let mut s = step(b, "BEGIN", StepRole::Other, None);
            s.rows = Some(0);
            s
        };
        let read = |b| {
            step(
                b,
                "SELECT stock FROM products WHERE id = 1",
                StepRole::Read,
                Some(1),
            )
        };
        let write = |b| {
            step(
                b,
                "UPDATE products SET stock = 1 - 1 WHERE id = 1",
                StepRole::Write,
                Some(0),
            )
        };
        let order = |b: u32| {
            step(
                b,
                &format!("INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (1, {b}, {b}, 1)"),
                StepRole::Other,
                None,
            )
        };
        let commit = |b| {
            let mut s = step(b, "COMMIT", StepRole::Commit, None);
            s.rows = Some(0);
            s
        };
        let mut second = begin(2);
        second.preemption = true;
        let mut waits = write(2);
        waits.waited_for = vec![1];
        waits.completed_after = Some(8);
        Counterexample {
            schedule: vec![1, 1, 1, 1, 2, 2, 2, 1, 2, 2],
            preemptions: 1,
            audit: Audit::from_tallies(
                &[ProductTally {
                    id: 1,
                    initial_stock: 1,
                    units_sold: 2,
                    final_stock: 0,
                }],
                0,
                0,
            ),
            verdict: Verdict::Oversold,
            anomalies: vec![ExploreAnomaly {
                name: "P4 lost update".into(),
                prevented_at: Some("REPEATABLE READ".into()),
                buyer: 2,
                item: "products.stock (id = 1)".into(),
                read_value: Some(1),
                read_step: Some(6),
                commit_step: Some(10),
                committed: Some("stock := 0".into()),
                overtook: vec![Overtaken {
                    buyer: 1,
                    write_step: Some(3),
                    commit_step: Some(8),
                    committed: Some("stock := 0".into()),
                }],
            }],
            steps: vec![
                begin(1),
                read(1),
                write(1),
                order(1),
                second,
                read(2),
                waits,
                commit(1),
                order(2),
                commit(2),
            ],
            buyers: (1..=2)
                .map(|buyer| BuyerEnd {
                    buyer,
                    outcome: Outcome::Succeeded,
                    tries: buyer,
                    message: None,
                })
                .collect(),
            deadlock_victims: vec![],
        }
    }

    /// An exploration of naive that found `lost_update` among 34 schedules.
    pub fn result() -> ExploreResult {
        ExploreResult {
            kind: ExploreKind::Explore,
            racelab_version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            strategy: StrategyInfo {
                name: "naive".into(),
                source: "builtin".into(),
                sha256: "0".repeat(64),
            },
            database: DatabaseInfo {
                kind: DbKind::Embedded,
                server_version: "15.18".into(),
                durable: false,
            },
            buyers: 2,
            stock: 1,
            quantity: 1,
            attempts_per_buyer: 1,
            max_tries: 10,
            seed: 1,
            preemption_bound: Some(2),
            replayed: None,
            verdict: ExploreVerdict::Oversold,
            verdict_reason: None,
            schedules_explored: 34,
            unsafe_schedules: 22,
            oversold_schedules: 22,
            error_schedules: 0,
            stuck_schedules: 0,
            diverged_schedules: 0,
            retried_schedules: 0,
            complete: true,
            status: Status::Completed,
            status_reason: None,
            steps: 316,
            longest_schedule: 10,
            waits: 12,
            deadlocks: 0,
            outcomes: [("succeeded".to_string(), 56), ("sold_out".to_string(), 12)]
                .into_iter()
                .collect(),
            anomalies_seen: [("P4 lost update".to_string(), 22)].into_iter().collect(),
            deadlock_timeout_ms: 100,
            wall_seconds: 0.5,
            counterexample: Some(lost_update()),
            replay: None,
            first_problem: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_counterexample_reads_as_a_timeline() {
        let text = render_schedule("Counterexample", &lost_update());
        assert!(text.contains("schedule \"1 1 1 1 2 2 2 1 2 2\""), "{text}");
        assert!(text.contains("10 steps, 1 preemption"), "{text}");
        assert!(text.contains("→ stock = 1"), "{text}");
        assert!(
            text.contains("⏳ waits for buyer 1, done after step 8"),
            "{text}"
        );
        assert!(
            text.contains("← overwritten by buyer 2 at step 10"),
            "{text}"
        );
        assert!(
            text.contains("overwrites buyer 1's update (P4 lost update)"),
            "{text}"
        );
        assert!(text.contains("buyer 2 succeeded after 2 tries"), "{text}");
        assert!(text.contains("2 units sold of 1 in stock"), "{text}");
        assert!(text.contains("Prevented at REPEATABLE READ"), "{text}");
    }

    #[test]
    fn the_report_says_the_verdict_and_how_to_replay() {
        let text = render(&result());
        assert!(
            text.contains("OVERSOLD: 22 of 34 schedules oversold"),
            "{text}"
        );
        assert!(text.contains("34 explored (complete)"), "{text}");
        assert!(
            text.contains("--schedule \"1 1 1 1 2 2 2 1 2 2\""),
            "{text}"
        );
    }

    #[test]
    fn expectations_and_junit() {
        let r = result();
        let why = expectation_failure(Some(Expect::Safe), &r).unwrap();
        assert!(
            why.contains("unsafe in 22 of 34") && why.contains("1 1 1 1 2 2 2 1 2 2"),
            "{why}"
        );
        assert_eq!(expectation_failure(Some(Expect::Oversold), &r), None);
        assert_eq!(expectation_failure(None, &r), None);
        let xml = junit(&r, None);
        assert!(
            xml.contains("failures=\"1\"") && xml.contains("<failure message="),
            "{xml}"
        );
        let mut safe = result();
        safe.verdict = ExploreVerdict::Safe;
        safe.unsafe_schedules = 0;
        safe.oversold_schedules = 0;
        safe.counterexample = None;
        assert_eq!(expectation_failure(Some(Expect::Safe), &safe), None);
        assert!(expectation_failure(Some(Expect::Oversold), &safe).is_some());
        assert!(junit(&safe, None).contains("failures=\"0\""));
        let mut cut = safe.clone();
        cut.complete = false;
        cut.verdict = ExploreVerdict::Inconclusive;
        cut.verdict_reason = Some("it stopped at --max-schedules 2".into());
        let why = expectation_failure(Some(Expect::Safe), &cut).unwrap();
        assert!(why.contains("not proven safe: it stopped"), "{why}");
    }

    #[test]
    fn long_sql_is_cut_on_one_line() {
        assert_eq!(one_line("SELECT a,\n   b FROM t", 80), "SELECT a, b FROM t");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
