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
        || a.cache_drift.is_some_and(|d| d != 0)
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
    if let Some(d) = a.cache_drift.filter(|d| *d != 0) {
        notes.push(format!(
            "the Redis stock counter and the database disagree by {d} units (cache drift)"
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit::ProductTally;
    use crate::fixtures::{self, audit, naive_oversold};

    fn t(initial: i64, sold: i64, left: i64) -> ProductTally {
        ProductTally::new(initial, sold, left)
    }

    #[test]
    fn the_audit_decides() {
        let clean = Audit::from_tallies(&[t(10, 4, 6), t(5, 5, 0)], 0, 0);
        assert_eq!(of_audit(&clean), Verdict::Safe);
        // Oversell is per product, never netted against another's stock.
        let over = Audit::from_tallies(&[t(5, 8, 2), t(10, 5, 5)], 0, 0);
        assert_eq!(of_audit(&over), Verdict::Oversold);
        let drift = Audit::from_tallies(&[t(10, 3, 8)], 0, 0);
        assert_eq!(of_audit(&drift), Verdict::Inconsistent);
        for (without_order, without_success) in [(1, 0), (0, 2)] {
            let a = Audit::from_tallies(&[t(3, 1, 2)], without_order, without_success);
            assert_eq!(of_audit(&a), Verdict::Inconsistent);
        }
        let negative = Audit {
            negative_stock: true,
            ..clean.clone()
        };
        assert_eq!(of_audit(&negative), Verdict::Inconsistent);
        assert_eq!(of_audit(&Audit::from_tallies(&[], 0, 0)), Verdict::Safe);
    }

    #[test]
    fn an_unaudited_run_has_no_verdict_and_is_never_safe() {
        let mut r = fixtures::for_update_safe(1);
        assert_eq!(decide(&r), Some(Verdict::Safe));
        assert!(is_safe(&r) && meets(None, &r) && meets(Some(Expect::Safe), &r));
        r.audit = None;
        r.verdict = decide(&r);
        assert_eq!(r.verdict, None);
        assert!(!is_safe(&r) && !is_oversold(&r) && !meets(None, &r));
        assert!(sentence(&r).starts_with("NOT AUDITED"));
    }

    #[test]
    fn runs_fold_into_the_worst_verdict() {
        let mut lucky = naive_oversold(2);
        lucky.audit = Some(audit(10, 10, 0));
        lucky.verdict = decide(&lucky);
        let runs = [naive_oversold(1), lucky.clone(), naive_oversold(3)];
        let o = overall(&runs);
        assert_eq!((o.runs, o.not_safe, o.oversold, o.unaudited), (3, 2, 2, 0));
        assert_eq!(o.verdict, Some(Verdict::Oversold));
        assert_eq!(o.word(), "OVERSOLD (2/3 runs)");
        let safe = overall([&lucky]);
        assert_eq!(safe.word(), "safe");
        assert_eq!(worse(Some(Verdict::Oversold), None), None);
        assert_eq!(
            worse(Some(Verdict::Inconsistent), Some(Verdict::Safe)),
            Some(Verdict::Inconsistent)
        );
    }

    #[test]
    fn the_gate_names_each_strategy_that_broke_it() {
        let runs = [
            naive_oversold(1),
            naive_oversold(2),
            fixtures::for_update_safe(1),
        ];
        assert_eq!(names(&runs), ["naive", "for-update"]);
        assert!(check(&Gate::default(), &runs).is_ok());
        let safe = Gate {
            expect: Some(Expect::Safe),
        };
        assert_eq!(
            check(&safe, &runs).unwrap_err().0,
            "expected safe: naive was not safe in 2 of 2 runs (max oversold units 27)"
        );
        let oversold = Gate {
            expect: Some(Expect::Oversold),
        };
        assert_eq!(
            failure(&oversold, &runs).as_deref(),
            Some("expected oversold: for-update did not oversell in 1 of 1 runs")
        );
        assert!(check(&safe, &runs[2..]).is_ok());
        assert!(check(&oversold, &runs[..2]).is_ok());
    }

    #[test]
    fn the_sentence_says_what_the_audit_found() {
        assert_eq!(
            sentence(&naive_oversold(1)),
            "OVERSOLD: 37 units sold of 10 in stock (27 units oversold); stock drifted by -27 \
             (final stock 0 but 10 - 37 = -27: lost updates)"
        );
        let mut r = fixtures::for_update_safe(1);
        if let Some(a) = r.audit.as_mut() {
            a.unknown_committed = 1;
            a.unknown_not_committed = 2;
            a.orders_without_success = 0;
        }
        r.status = crate::result::Status::Interrupted;
        r.status_reason = Some("interrupted (Ctrl-C)".into());
        assert_eq!(
            sentence(&r),
            "SAFE: 10 units sold of 10 in stock, no drift; 3 attempts of unknown fate \
             (buyers' view: 10 to 13 units sold): 1 committed, 2 did not \
             [interrupted: interrupted (Ctrl-C)]"
        );
    }
}
