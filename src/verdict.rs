//! The verdict: the one place that decides what a run's audit means (safe,
//! oversold, inconsistent), folds runs into one verdict per strategy, says
//! it in words, and checks the runs against what `--expect` asked for.
//! Renderers (`report`) depend on this module and never decide a verdict
//! themselves; it reads results (`result`), never the commands.
//!
//! Where new evidence goes: a run's verdict is `decide(&RunResult)`, so a
//! new field of the result (e.g. how much the buyers contended) is read
//! there; a new kind of verdict is a `Verdict` variant placed in `rank`,
//! `word` and `sentence`; a new condition of the gate (e.g. how many
//! errors a clean run may have) is a field of `Gate` checked in `failure`.

use crate::db::Audit;
use crate::error::ExpectationFailed;
use crate::result::{RunResult, Status};

pub use crate::result::Verdict;

/// What `--expect` asks of every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every run is safe: no oversell, no drift.
    Safe,
    /// Every run oversold (proves the harness catches a broken strategy).
    Oversold,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Safe => "safe",
            Expect::Oversold => "oversold",
        }
    }
}

/// What must hold for an invocation to pass: the CI gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gate {
    /// `--expect`: the verdict every run must have.
    pub expect: Option<Expect>,
}

/// The verdict of an audit alone.
pub fn of_audit(a: &Audit) -> Verdict {
    if a.oversold_units > 0 {
        Verdict::Oversold
    } else if a.stock_drift != 0
        || a.negative_stock
        || a.successes_without_order != 0
        || a.orders_without_success != 0
    {
        Verdict::Inconsistent
    } else {
        Verdict::Safe
    }
}

/// The verdict of one run; None when it was not audited.
pub fn decide(r: &RunResult) -> Option<Verdict> {
    r.audit.as_ref().map(of_audit)
}

/// Safe means audited and clean; anything unaudited is not safe.
pub fn is_safe(r: &RunResult) -> bool {
    r.verdict == Some(Verdict::Safe)
}

pub fn is_oversold(r: &RunResult) -> bool {
    r.verdict == Some(Verdict::Oversold)
}

/// Whether one run has the verdict `expect` asks for; without an
/// `--expect`, whether it was safe (what a JUnit case checks by default).
pub fn meets(expect: Option<Expect>, r: &RunResult) -> bool {
    match expect {
        Some(Expect::Oversold) => is_oversold(r),
        Some(Expect::Safe) | None => is_safe(r),
    }
}

/// The gate over every run: Err names each strategy that broke it.
pub fn check(gate: &Gate, results: &[RunResult]) -> Result<(), ExpectationFailed> {
    match failure(gate, results) {
        Some(why) => Err(ExpectationFailed(why)),
        None => Ok(()),
    }
}

/// Why the runs fail the gate, in one line; None when they pass.
pub fn failure(gate: &Gate, results: &[RunResult]) -> Option<String> {
    let expect = gate.expect?;
    let mut failed: Vec<String> = Vec::new();
    for name in names(results) {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.name() == name).collect();
        let bad = runs.iter().filter(|r| !meets(Some(expect), r)).count();
        if bad == 0 {
            continue;
        }
        failed.push(match expect {
            Expect::Safe => {
                let max = runs
                    .iter()
                    .filter_map(|r| r.audit.as_ref())
                    .map(|a| a.oversold_units)
                    .max();
                format!(
                    "{name} was not safe in {bad} of {} runs (max oversold units {})",
                    runs.len(),
                    max.unwrap_or(0)
                )
            }
            Expect::Oversold => {
                format!("{name} did not oversell in {bad} of {} runs", runs.len())
            }
        });
    }
    (!failed.is_empty()).then(|| format!("expected {}: {}", expect.as_str(), failed.join("; ")))
}

/// What was raced, by name, in the order the runs were made.
pub fn names(results: &[RunResult]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.iter().any(|n| n == r.name()) {
            names.push(r.name().to_string());
        }
    }
    names
}

/// How bad a verdict is, for folding runs: the worst one wins, and a run
/// that was not audited is worse than any audited one.
pub fn rank(v: Option<Verdict>) -> u8 {
    match v {
        Some(Verdict::Safe) => 0,
        Some(Verdict::Inconsistent) => 1,
        Some(Verdict::Oversold) => 2,
        None => 3,
    }
}

/// The worse of two verdicts.
pub fn worse(a: Option<Verdict>, b: Option<Verdict>) -> Option<Verdict> {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// The verdict over several runs of one strategy (or target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overall {
    pub runs: usize,
    /// Runs whose verdict was not `safe` (unaudited ones included).
    pub not_safe: usize,
    pub oversold: usize,
    pub unaudited: usize,
    /// The worst verdict of the runs; None if one was not audited.
    pub verdict: Option<Verdict>,
}

impl Overall {
    /// The verdict column of the side-by-side table: a word either way,
    /// so it survives without colour, with the share of runs not safe.
    pub fn word(&self) -> String {
        let word = word(self.verdict);
        if self.runs > 1 && self.verdict != Some(Verdict::Safe) {
            format!("{word} ({}/{} runs)", self.not_safe, self.runs)
        } else {
            word.to_string()
        }
    }
}

/// Fold runs (of one strategy) into one verdict.
pub fn overall<'a>(runs: impl IntoIterator<Item = &'a RunResult>) -> Overall {
    let mut o = Overall {
        runs: 0,
        not_safe: 0,
        oversold: 0,
        unaudited: 0,
        verdict: Some(Verdict::Safe),
    };
    for r in runs {
        o.runs += 1;
        if !is_safe(r) {
            o.not_safe += 1;
        }
        if is_oversold(r) {
            o.oversold += 1;
        }
        if r.audit.is_none() {
            o.unaudited += 1;
        }
        o.verdict = worse(o.verdict, r.verdict);
    }
    o
}

/// A verdict as one word: lower case when all is well, upper case when not.
pub fn word(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Safe) => "safe",
        Some(Verdict::Oversold) => "OVERSOLD",
        Some(Verdict::Inconsistent) => "INCONSISTENT",
        None => "NOT AUDITED",
    }
}

/// The verdict of one run in words, with what the audit found behind it,
/// e.g. "OVERSOLD: 37 units sold of 1 in stock (36 units oversold)".
pub fn sentence(r: &RunResult) -> String {
    let Some(a) = &r.audit else {
        return match r.status_reason.as_deref() {
            Some(why) => format!("NOT AUDITED: {why}"),
            None => "NOT AUDITED".to_string(),
        };
    };
    let units = |n: i64| {
        if n == 1 {
            "1 unit".to_string()
        } else {
            format!("{n} units")
        }
    };
    let mut s = match r.verdict {
        Some(Verdict::Oversold) => format!(
            "OVERSOLD: {} sold of {} in stock ({} oversold)",
            units(a.units_sold),
            a.initial_stock,
            units(a.oversold_units)
        ),
        Some(Verdict::Inconsistent) => format!(
            "INCONSISTENT: {} sold of {} in stock, but the books do not balance",
            units(a.units_sold),
            a.initial_stock
        ),
        _ => format!(
            "SAFE: {} sold of {} in stock, no drift",
            units(a.units_sold),
            a.initial_stock
        ),
    };
    let mut notes = Vec::new();
    if a.stock_drift != 0 {
        notes.push(format!(
            "stock drifted by {} (final stock {} but {} - {} = {}: lost updates)",
            a.stock_drift,
            a.final_stock,
            a.initial_stock,
            a.units_sold,
            a.initial_stock - a.units_sold
        ));
    }
    if a.negative_stock {
        notes.push("final stock is negative".to_string());
    }
    if a.successes_without_order > 0 {
        notes.push(format!(
            "{} successes left no order",
            a.successes_without_order
        ));
    }
    if a.orders_without_success > 0 {
        notes.push(format!(
            "{} orders exist for attempts not reported as successes",
            a.orders_without_success
        ));
    }
    let unsure = a.unknown_committed + a.unknown_not_committed;
    if unsure > 0 {
        // The bounds the buyers could know, then what the database says.
        let q = r.scenario.quantity;
        notes.push(format!(
            "{unsure} attempts of unknown fate (buyers' view: {} to {} units sold): \
             {} committed, {} did not",
            r.believed_units_sold,
            r.believed_units_sold
                .saturating_add(unsure.saturating_mul(q)),
            a.unknown_committed,
            a.unknown_not_committed
        ));
    }
    if !notes.is_empty() {
        s.push_str("; ");
        s.push_str(&notes.join("; "));
    }
    if r.status != Status::Completed {
        s.push_str(&format!(
            " [{}{}]",
            match r.status {
                Status::Interrupted => "interrupted",
                _ => "aborted",
            },
            r.status_reason
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ));
    }
    s
}

