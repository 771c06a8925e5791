//! The verdict: the one place that decides what a run means (safe,
//! oversold, inconsistent, inconclusive), folds runs into one verdict per
//! strategy, says it in words, and checks the runs against what
//! `--expect` asked for (the verdict, and a clean run: no `error` or
//! `unknown` attempt beyond `--max-errors`). Renderers (`report`) depend
//! on this module and never decide a verdict themselves; it reads results
//! (`result`), never the commands.
//!
//! Where new evidence goes: a run's verdict is `decide(&RunResult)`, so a
//! new field of the result is read there; a new kind of verdict is a
//! `Verdict` variant placed in `rank`, `word` and `sentence`; a new
//! condition of the gate is a field of `Gate` checked in `failure`.

pub mod explore;

use crate::db::Audit;
use crate::result::{ErrorCount, RunResult, Status, TargetInfo};

pub use crate::result::Verdict;

/// What `--expect` asks of every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every run is safe: the race happened, no oversell, no drift, and
    /// it was clean.
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
    /// `--max-errors`: attempts per run that may end in `error` or
    /// `unknown` and still count as a clean run under `--expect safe`.
    pub max_errors: u64,
}

/// The verdict of an audit alone: what the books say, before asking
/// whether the race tested anything (see `decide`).
pub fn of_audit(a: &Audit) -> Verdict {
    if a.oversold_units > 0 {
        Verdict::Oversold
    } else if a.stock_drift != 0
        || a.negative_stock
        || a.successes_without_order != 0
        || a.orders_without_success != 0
        || a.duplicate_orders != 0
        || a.sold_out_with_stock_left != 0
        || a.cache_drift.is_some_and(|d| d != 0)
    {
        Verdict::Inconsistent
    } else {
        Verdict::Safe
    }
}

/// The verdict of one run; None when it was not audited. Clean books are
/// `safe` only when the race tested something (`untested`).
pub fn decide(r: &RunResult) -> Option<Verdict> {
    let verdict = of_audit(r.audit.as_ref()?);
    if verdict == Verdict::Safe && untested(r).is_some() {
        return Some(Verdict::Inconclusive);
    }
    Some(verdict)
}

/// Why a run with clean books tested nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untested {
    /// No product had stock for one attempt's quantity: nothing could be
    /// sold, so no purchase was raced, whatever the strategy does.
    NothingToSell,
    /// Nothing was sold though the stock could serve a purchase: no
    /// attempt got as far as its write, so no write was raced.
    NothingSold,
    /// No two attempts on a product were in flight at once.
    NoOverlap,
    /// The race was aborted before it finished (the buyers made no
    /// progress, the network froze): a partial race proves no safety.
    Aborted,
    /// More buyers than `--max-setup-failures` were put out of the race
    /// by a step before it (an HTTP flow): the race was not the one asked for.
    SetupFailed,
}

/// Whether (and why) a run's race tested nothing; None when it did, or
/// when it was not audited.
pub fn untested(r: &RunResult) -> Option<Untested> {
    let a = r.audit.as_ref()?;
    let sc = &r.scenario;
    if sc.stock < sc.quantity.max(1) {
        return Some(Untested::NothingToSell);
    }
    if r.status == Status::Aborted {
        return Some(Untested::Aborted);
    }
    let flow = r.target.as_ref().and_then(|t| t.flow.as_ref());
    if flow.is_some_and(|f| f.out_of_race > f.max_setup_failures) {
        return Some(Untested::SetupFailed);
    }
    if r.outcomes.attempts > 0 && a.units_sold == 0 {
        return Some(Untested::NothingSold);
    }
    if r.contention.overlapped_attempts == 0 {
        return Some(Untested::NoOverlap);
    }
    None
}

/// Why an inconclusive run tested nothing, and what to change.
pub fn why_inconclusive(r: &RunResult) -> Option<String> {
    let a = r.audit.as_ref()?;
    let http = r.target.is_some();
    Some(match untested(r)? {
        Untested::NothingToSell => format!(
            "nothing could be sold: {} in stock per product is less than one attempt's \
             quantity {}, so no purchase was raced: give the lab stock (--stock {})",
            units(r.scenario.stock),
            r.scenario.quantity,
            r.scenario.quantity.max(1).saturating_mul(10)
        ),
        // The reason follows the sentence (`[aborted: ...]`).
        Untested::Aborted => {
            "the race was aborted before it finished, so it proves nothing".to_string()
        }
        Untested::SetupFailed => {
            let f = r.target.as_ref()?.flow.as_ref()?;
            let first = f.setup_failures.first().map_or(String::new(), |c| {
                format!(
                    "; commonest: step {:?} for {} (HTTP {}: {})",
                    c.step, c.buyers, c.status, c.message
                )
            });
            format!(
                "{} of {} buyers were out of the race, more than --max-setup-failures {}: \
                 a step before the race failed for them{first}; fix that step (or allow \
                 the failures with --max-setup-failures)",
                f.out_of_race, r.scenario.buyers, f.max_setup_failures
            )
        }
        Untested::NothingSold => {
            let mut why = format!(
                "nothing was sold though {} {} in stock ({}), so no purchase was raced",
                units(r.scenario.stock),
                noun(r.scenario.stock, "was", "were"),
                outcome_counts(r)
            );
            let fix = if http {
                "check what the service answered"
            } else {
                "fix what stops the strategy's attempts from buying"
            };
            why.push_str(&format!(": {fix}"));
            if let Some(hint) = r
                .target
                .as_ref()
                .and_then(|t| unmapped(t, r.outcomes.attempts))
            {
                why.push_str(&format!(" ({hint})"));
            } else if let Some(e) = commonest(&r.error_messages) {
                why.push_str(&format!(" (commonest error: {})", e.message));
            }
            why
        }
        Untested::NoOverlap => {
            let fix = if http {
                "race more buyers (--buyers 50) or more attempts each (--attempts 5), \
                 so that requests are in flight together"
            } else if r.scenario.connections == 1 {
                "one pooled connection runs one attempt at a time: give the buyers more \
                 (--connections 10, or 0 for one each), or let `racelab explore` try every \
                 interleaving of two buyers"
            } else {
                "race more buyers (--buyers 50) or give them think time (--think-ms 5), \
                 so that their transactions overlap, or let `racelab explore` try every \
                 interleaving of two buyers"
            };
            format!(
                "{} sold of {} in stock, but no two attempts on a product overlapped \
                 ({} {}, at most {} in flight), so nothing was raced: {fix}",
                units(a.units_sold),
                a.initial_stock,
                r.scenario.buyers,
                noun(i64::from(r.scenario.buyers), "buyer", "buyers"),
                r.contention.peak_in_flight
            )
        }
    })
}

/// The nonzero outcome counts of a run, e.g. "60 rejected, 40 errors".
fn outcome_counts(r: &RunResult) -> String {
    let o = &r.outcomes;
    let counts = [
        (o.succeeded, "succeeded"),
        (o.sold_out, "sold out"),
        (o.rejected, "rejected"),
        (o.gave_up, "gave up"),
        (o.errors, if o.errors == 1 { "error" } else { "errors" }),
        (o.unknown, "unknown"),
    ];
    let shown: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if shown.is_empty() {
        "no attempts".to_string()
    } else {
        shown.join(", ")
    }
}

/// Safe means audited, clean books, and a race that tested something.
pub fn is_safe(r: &RunResult) -> bool {
    r.verdict == Some(Verdict::Safe)
}

pub fn is_oversold(r: &RunResult) -> bool {
    r.verdict == Some(Verdict::Oversold)
}

/// Attempts of a run that ended in `error` or `unknown`.
pub fn unclean_attempts(r: &RunResult) -> u64 {
    r.outcomes.errors + r.outcomes.unknown
}

/// Whether a run was clean enough for the gate: at most `max_errors`
/// attempts ended in `error` or `unknown`.
pub fn is_clean(gate: &Gate, r: &RunResult) -> bool {
    unclean_attempts(r) <= gate.max_errors
}

/// Whether one run meets the gate: the verdict `--expect` asks for (and,
/// for `safe`, a clean run); without an `--expect`, the same as `safe`
/// (what a JUnit case checks by default).
pub fn meets(gate: &Gate, r: &RunResult) -> bool {
    match gate.expect {
        Some(Expect::Oversold) => is_oversold(r),
        Some(Expect::Safe) | None => is_safe(r) && is_clean(gate, r),
    }
}

/// Why the runs fail the gate, in one line; None when they pass.
pub fn failure(gate: &Gate, results: &[RunResult]) -> Option<String> {
    let expect = gate.expect?;
    let mut failed: Vec<String> = Vec::new();
    for name in names(results) {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.name() == name).collect();
        match expect {
            Expect::Safe => {
                failed.extend(not_safe(&name, &runs));
                failed.extend(not_clean(gate, &name, &runs));
            }
            Expect::Oversold => {
                let bad = runs.iter().filter(|r| !is_oversold(r)).count();
                if bad > 0 {
                    failed.push(format!(
                        "{name} did not oversell in {bad} of {}",
                        counted(runs.len() as u64, "run", "runs")
                    ));
                }
            }
        }
    }
    (!failed.is_empty()).then(|| format!("expected {}: {}", expect.as_str(), failed.join("; ")))
}

/// "naive was not safe in 2 of 3 runs (2 oversold, max oversold units
/// 27)", with why when a run was inconclusive; None when every run was safe.
fn not_safe(name: &str, runs: &[&RunResult]) -> Option<String> {
    let o = overall(runs.iter().copied());
    if o.not_safe == 0 {
        return None;
    }
    let mut kinds = Vec::new();
    for (n, what) in [
        (o.oversold, "oversold"),
        (o.inconsistent, "inconsistent"),
        (o.inconclusive, "inconclusive"),
        (o.unaudited, "not audited"),
    ] {
        if n > 0 {
            kinds.push(format!("{n} {what}"));
        }
    }
    let max = runs
        .iter()
        .filter_map(|r| r.audit.as_ref())
        .map(|a| a.oversold_units)
        .max()
        .unwrap_or(0);
    if max > 0 {
        kinds.push(format!("max oversold units {max}"));
    }
    let mut line = format!(
        "{name} was not safe in {} of {} ({})",
        o.not_safe,
        counted(o.runs as u64, "run", "runs"),
        kinds.join(", ")
    );
    if let Some(why) = runs
        .iter()
        .filter(|r| r.verdict == Some(Verdict::Inconclusive))
        .find_map(|r| why_inconclusive(r))
    {
        line.push_str(&format!(": {why}"));
    }
    Some(line)
}

/// "x had error or unknown attempts in 1 of 1 run (100, --max-errors
/// allows 0); commonest: `...` (100x)"; None when every run was clean.
fn not_clean(gate: &Gate, name: &str, runs: &[&RunResult]) -> Option<String> {
    let dirty: Vec<&&RunResult> = runs.iter().filter(|r| !is_clean(gate, r)).collect();
    let most = dirty.iter().map(|r| unclean_attempts(r)).max()?;
    let mut line = format!(
        "{name} had error or unknown attempts in {} of {} (up to {most} in a run; \
         --max-errors allows {})",
        dirty.len(),
        counted(runs.len() as u64, "run", "runs"),
        gate.max_errors
    );
    let all: Vec<ErrorCount> = dirty
        .iter()
        .flat_map(|r| r.error_messages.iter().cloned())
        .collect();
    if let Some(e) = commonest(&merge_errors(&all)) {
        line.push_str(&format!("; commonest: {} ({}x)", e.message, e.count));
    }
    if let Some(hint) = dirty
        .iter()
        .find_map(|r| unmapped(r.target.as_ref()?, r.outcomes.attempts))
    {
        line.push_str(&format!("; {hint}"));
    }
    Some(line)
}

/// Error messages with the counts of equal messages added up, in the
/// order first seen.
fn merge_errors(errors: &[ErrorCount]) -> Vec<ErrorCount> {
    let mut out: Vec<ErrorCount> = Vec::new();
    for e in errors {
        match out.iter_mut().find(|o| o.message == e.message) {
            Some(o) => o.count += e.count,
            None => out.push(e.clone()),
        }
    }
    out
}

/// The most frequent error message (the first of equals).
pub fn commonest(errors: &[ErrorCount]) -> Option<&ErrorCount> {
    errors
        .iter()
        .rev()
        .max_by_key(|e| e.count)
        .filter(|e| e.count > 0)
}

/// Most attempts of an HTTP run answered with one 4xx status that means
/// nothing to racelab (neither success, sold out nor rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub status: u16,
    pub count: u64,
    pub attempts: u64,
    /// `--sold-out` with the status added to the codes it had.
    sold_out: String,
    rejected: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} {} answered HTTP {}, which racelab does not map to an \
             outcome: if it means sold out, add it with --sold-out {}; if it is a safe \
             refusal, --rejected {}",
            self.count,
            counted(self.attempts, "attempt", "attempts"),
            if self.count == 1 { "was" } else { "were" },
            self.status,
            self.sold_out,
            self.rejected
        )
    }
}

/// The 4xx status that answered most attempts of an HTTP run without
/// meaning anything to racelab, if one did.
pub fn unmapped(t: &TargetInfo, attempts: u64) -> Option<Unmapped> {
    let mapped = |code: u16| {
        t.success_statuses.contains(&code)
            || t.sold_out_statuses.contains(&code)
            || t.rejected_statuses.contains(&code)
    };
    let (status, count) = t
        .by_status
        .iter()
        .filter_map(|(code, s)| Some((code.parse::<u16>().ok()?, s.count)))
        .filter(|&(code, _)| (400..500).contains(&code) && !mapped(code))
        .max_by_key(|&(_, n)| n)?;
    if count * 2 <= attempts {
        return None;
    }
    let with = |codes: &[u16]| {
        let mut all = codes.to_vec();
        all.push(status);
        all.sort_unstable();
        all.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
    };
    Some(Unmapped {
        status,
        count,
        attempts,
        sold_out: with(&t.sold_out_statuses),
        rejected: with(&t.rejected_statuses),
    })
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
        Some(Verdict::Inconclusive) => 1,
        Some(Verdict::Inconsistent) => 2,
        Some(Verdict::Oversold) => 3,
        None => 4,
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

/// The verdict over several runs of one strategy (or target); in JSON
/// the counts are named `*_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Overall {
    pub runs: usize,
    /// Runs whose verdict was not `safe` (unaudited ones included).
    #[serde(rename = "not_safe_runs")]
    pub not_safe: usize,
    #[serde(rename = "oversold_runs")]
    pub oversold: usize,
    #[serde(rename = "inconsistent_runs")]
    pub inconsistent: usize,
    #[serde(rename = "inconclusive_runs")]
    pub inconclusive: usize,
    #[serde(rename = "unaudited_runs")]
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

/// Fold runs (of one strategy, or all of them) into one verdict.
pub fn overall<'a>(runs: impl IntoIterator<Item = &'a RunResult>) -> Overall {
    let mut o = Overall {
        runs: 0,
        not_safe: 0,
        oversold: 0,
        inconsistent: 0,
        inconclusive: 0,
        unaudited: 0,
        verdict: Some(Verdict::Safe),
    };
    for r in runs {
        o.runs += 1;
        if !is_safe(r) {
            o.not_safe += 1;
        }
        match r.verdict {
            Some(Verdict::Oversold) => o.oversold += 1,
            Some(Verdict::Inconsistent) => o.inconsistent += 1,
            Some(Verdict::Inconclusive) => o.inconclusive += 1,
            Some(Verdict::Safe) => {}
            None => o.unaudited += 1,
        }
        o.verdict = worse(o.verdict, r.verdict);
    }
    if o.runs == 0 {
        // No run, no verdict: nothing was shown to be safe.
        o.verdict = None;
    }
    o
}

/// A verdict as one word: lower case when all is well, upper case when not.
pub fn word(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Safe) => "safe",
        Some(Verdict::Oversold) => "OVERSOLD",
        Some(Verdict::Inconsistent) => "INCONSISTENT",
        Some(Verdict::Inconclusive) => "INCONCLUSIVE",
        None => "NOT AUDITED",
    }
}

/// `one` or `many`, as the count `n` asks.
pub fn noun<'a>(n: i64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `n` and its noun: "1 run", "3 runs".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `n` units, in words.
fn units(n: i64) -> String {
    format!("{n} {}", noun(n, "unit", "units"))
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
    let mut s = match r.verdict {
        Some(Verdict::Oversold) => format!(
            "OVERSOLD: {} sold of {} in stock ({} oversold)",
            units(a.units_sold),
            a.initial_stock,
            units(a.oversold_units)
        ),
        Some(Verdict::Inconsistent) if a.sold_out_with_stock_left > 0 => format!(
            "INCONSISTENT: told sold out, but {} left ({} sold-out {} while stock remained; \
             {} sold of {} in stock)",
            a.stock_left_after_sold_out,
            a.sold_out_with_stock_left,
            noun(a.sold_out_with_stock_left, "answer", "answers"),
            units(a.units_sold),
            a.initial_stock
        ),
        Some(Verdict::Inconsistent) => format!(
            "INCONSISTENT: {} sold of {} in stock, but the books do not balance",
            units(a.units_sold),
            a.initial_stock
        ),
        Some(Verdict::Inconclusive) => format!(
            "INCONCLUSIVE: {}",
            why_inconclusive(r).unwrap_or_else(|| "the race tested nothing".to_string())
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
            "the Redis stock counter and the database disagree by {d} {} (cache drift)",
            noun(d, "unit", "units")
        ));
    }
    if a.successes_without_order > 0 {
        notes.push(format!(
            "{} left no order",
            counted(a.successes_without_order as u64, "success", "successes")
        ));
    }
    if a.orders_without_success > 0 {
        notes.push(format!(
            "{} for attempts not reported as successes",
            if a.orders_without_success == 1 {
                "1 order exists".to_string()
            } else {
                format!("{} orders exist", a.orders_without_success)
            }
        ));
    }
    if a.duplicate_orders > 0 {
        notes.push(format!(
            "{} duplicate {} (an attempt id ordered more than once: one purchase processed twice)",
            a.duplicate_orders,
            noun(a.duplicate_orders, "order", "orders")
        ));
    }
    // An inconclusive run that sold nothing has listed its outcomes already.
    let listed =
        r.verdict == Some(Verdict::Inconclusive) && untested(r) == Some(Untested::NothingSold);
    if r.outcomes.errors > 0 && !listed {
        let n = r.outcomes.errors;
        notes.push(format!(
            "{n} {} ended in error",
            noun(n as i64, "attempt", "attempts")
        ));
    }
    let unsure = a.unknown_committed + a.unknown_not_committed;
    if unsure > 0 {
        // The bounds the buyers could know, then what the database says.
        let q = r.scenario.quantity;
        notes.push(format!(
            "{} of unknown fate (buyers' view: {} to {} units sold): \
             {} committed, {} did not",
            counted(unsure as u64, "attempt", "attempts"),
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
    use crate::outcome::Outcome;

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
        let told = clean.clone().with_sold_out([(6, 3)], 1);
        assert_eq!(of_audit(&told), Verdict::Inconsistent);
        // A purchase processed twice: the stock balances (it was
        // decremented twice too), the books do not.
        let twice = Audit {
            duplicate_orders: 2,
            ..clean.clone()
        };
        assert_eq!(of_audit(&twice), Verdict::Inconsistent);
        // Duplicates that sold more than the stock are an oversell.
        let over_twice = Audit {
            duplicate_orders: 3,
            ..Audit::from_tallies(&[t(5, 8, -3)], 0, 0)
        };
        assert_eq!(of_audit(&over_twice), Verdict::Oversold);
    }

    #[test]
    fn duplicates_are_named_in_the_sentence() {
        let mut r = fixtures::for_update_safe(1);
        if let Some(a) = r.audit.as_mut() {
            a.duplicate_orders = 4;
        }
        r.verdict = decide(&r);
        assert_eq!(r.verdict, Some(Verdict::Inconsistent));
        let s = sentence(&r);
        assert!(s.starts_with("INCONSISTENT: "), "{s}");
        assert!(
            s.contains("4 duplicate orders (an attempt id ordered more than once"),
            "{s}"
        );
    }

    /// A strategy whose every attempt failed with an SQL error.
    fn all_errors() -> RunResult {
        fixtures::run(
            "broken",
            fixtures::scenario(100, 10),
            &[fixtures::Attempts {
                message: Some("22012: division by zero (line 2)"),
                ..fixtures::attempts(Outcome::Error, 100, 900, 10)
            }],
            Some(audit(10, 0, 10)),
            1,
        )
    }

    fn safe_gate(max_errors: u64) -> Gate {
        Gate {
            expect: Some(Expect::Safe),
            max_errors,
        }
    }

    #[test]
    fn a_race_nobody_raced_is_inconclusive_never_safe() {
        let r = fixtures::for_update_alone();
        assert_eq!(untested(&r), Some(Untested::NoOverlap));
        assert_eq!(r.verdict, Some(Verdict::Inconclusive));
        assert!(!is_safe(&r) && !meets(&safe_gate(0), &r));
        let s = sentence(&r);
        assert!(s.starts_with("INCONCLUSIVE: 1 unit sold of 10 in stock, but no two attempts on a product overlapped (1 buyer, at most 1 in flight)"), "{s}");
        assert!(
            s.contains("--buyers 50") && s.contains("--think-ms") && s.contains("racelab explore"),
            "{s}"
        );
        let why = failure(&safe_gate(0), &[r]).unwrap();
        assert!(why.starts_with("expected safe: for-update was not safe in 1 of 1 run (1 inconclusive): 1 unit sold of 10 in stock, but no two attempts"), "{why}");
        let o = overall(&[fixtures::for_update_alone(), fixtures::for_update_safe(2)]);
        assert_eq!(
            (o.inconclusive, o.not_safe, o.verdict),
            (1, 1, Some(Verdict::Inconclusive))
        );
        assert_eq!(word(o.verdict), "INCONCLUSIVE");
    }

    #[test]
    fn nothing_sold_while_stock_remained_is_inconclusive() {
        let r = all_errors();
        assert_eq!(untested(&r), Some(Untested::NothingSold));
        assert_eq!(r.verdict, Some(Verdict::Inconclusive));
        assert_eq!(
            sentence(&r),
            "INCONCLUSIVE: nothing was sold though 10 units were in stock (100 errors), so no \
             purchase was raced: fix what stops the strategy's attempts from buying \
             (commonest error: 22012: division by zero (line 2))"
        );
        // Sold out at stock 0 is not "nothing sold while stock remained":
        // nothing could be sold at all, which tests nothing either.
        let mut empty = fixtures::run(
            "for-update",
            fixtures::scenario(100, 0),
            &[fixtures::attempts(Outcome::SoldOut, 100, 900, 10)],
            Some(audit(0, 0, 0)),
            1,
        );
        assert_eq!(untested(&empty), Some(Untested::NothingToSell));
        empty.verdict = decide(&empty);
        assert!(!is_safe(&empty) && !meets(&safe_gate(0), &empty));
        assert_eq!(
            sentence(&empty),
            "INCONCLUSIVE: nothing could be sold: 0 units in stock per product is less than one \
             attempt's quantity 1, so no purchase was raced: give the lab stock (--stock 10)"
        );
        // An aborted race proves nothing either, however clean its books.
        let mut aborted = fixtures::for_update_safe(1);
        aborted.status = Status::Aborted;
        aborted.status_reason = Some("the buyers make no progress".into());
        aborted.verdict = decide(&aborted);
        assert_eq!(untested(&aborted), Some(Untested::Aborted));
        assert!(!is_safe(&aborted));
    }

    #[test]
    fn a_safe_gate_wants_clean_runs() {
        let mut r = fixtures::for_update_safe(1);
        r.outcomes.errors = 3;
        r.error_messages = vec![
            ErrorCount {
                message: "57014: canceling statement due to statement timeout".into(),
                count: 1,
            },
            ErrorCount {
                message: "XX000: oops".into(),
                count: 2,
            },
        ];
        assert!(is_safe(&r));
        assert!(!meets(&safe_gate(0), &r) && !meets(&safe_gate(2), &r));
        assert!(meets(&safe_gate(3), &r));
        assert_eq!(
            failure(&safe_gate(2), std::slice::from_ref(&r)).unwrap(),
            "expected safe: for-update had error or unknown attempts in 1 of 1 run \
             (up to 3 in a run; --max-errors allows 2); commonest: XX000: oops (2x)"
        );
        // --expect oversold does not ask for a clean run.
        let over = Gate {
            expect: Some(Expect::Oversold),
            max_errors: 0,
        };
        let mut n = naive_oversold(1);
        n.outcomes.unknown = 4;
        assert!(meets(&over, &n));
        // Both reasons are named, for each strategy.
        let why = failure(&safe_gate(0), &[all_errors()]).unwrap();
        assert!(
            why.contains("broken was not safe in 1 of 1 run (1 inconclusive)"),
            "{why}"
        );
        assert!(why.contains("broken had error or unknown attempts in 1 of 1 run (up to 100 in a run; --max-errors allows 0); commonest: 22012: division by zero (line 2) (100x)"), "{why}");
    }

    #[test]
    fn told_sold_out_with_stock_left_is_a_contradiction() {
        let mut r = fixtures::run(
            "http",
            fixtures::scenario(100, 1),
            &[fixtures::attempts(Outcome::SoldOut, 100, 900, 10)],
            Some(audit(1, 0, 1).with_sold_out([(1, 100)], 1)),
            1,
        );
        r.verdict = decide(&r);
        assert_eq!(r.verdict, Some(Verdict::Inconsistent));
        assert_eq!(
            sentence(&r),
            "INCONSISTENT: told sold out, but 1 left (100 sold-out answers while stock \
             remained; 0 units sold of 1 in stock)"
        );
    }

    #[test]
    fn an_unmapped_4xx_is_named_with_its_fix() {
        use crate::result::{Summary, TargetInfo, Truth};
        let count = |n| Summary {
            count: n,
            ..Summary::default()
        };
        let mut t = TargetInfo {
            url: "http://127.0.0.1:1/buy".into(),
            method: "POST".into(),
            truth: Truth::StockUrl,
            timeout_ms: 0,
            success_statuses: vec![],
            sold_out_statuses: vec![409, 410, 422],
            rejected_statuses: vec![429],
            by_status: [
                ("201".to_string(), count(1)),
                ("400".to_string(), count(99)),
            ]
            .into(),
            protocol: "http/1.1".into(),
            sync: "last-byte".into(),
            connections: 100,
            flow: None,
        };
        let u = unmapped(&t, 100).unwrap();
        assert_eq!(
            u.to_string(),
            "99 of 100 attempts were answered HTTP 400, which racelab does not map to an \
             outcome: if it means sold out, add it with --sold-out 400,409,410,422; if it is \
             a safe refusal, --rejected 400,429"
        );
        // Not most attempts, or a code that is mapped, or not a 4xx: no hint.
        assert_eq!(unmapped(&t, 198), None);
        t.sold_out_statuses.push(400);
        assert_eq!(unmapped(&t, 100), None);
        t.by_status = [("500".to_string(), count(100))].into();
        assert_eq!(unmapped(&t, 100), None);
    }

    #[test]
    fn an_unaudited_run_has_no_verdict_and_is_never_safe() {
        let mut r = fixtures::for_update_safe(1);
        assert_eq!(decide(&r), Some(Verdict::Safe));
        let safe = Gate {
            expect: Some(Expect::Safe),
            max_errors: 0,
        };
        assert!(is_safe(&r) && meets(&Gate::default(), &r) && meets(&safe, &r));
        r.audit = None;
        r.verdict = decide(&r);
        assert_eq!(r.verdict, None);
        assert!(!is_safe(&r) && !is_oversold(&r) && !meets(&Gate::default(), &r));
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
        assert_eq!(
            worse(Some(Verdict::Inconclusive), Some(Verdict::Safe)),
            Some(Verdict::Inconclusive)
        );
        assert_eq!(
            worse(Some(Verdict::Inconclusive), Some(Verdict::Inconsistent)),
            Some(Verdict::Inconsistent)
        );
        // No run is no verdict, not a safe one.
        assert_eq!(overall(&[]).verdict, None);
    }

    #[test]
    fn the_gate_names_each_strategy_that_broke_it() {
        let runs = [
            naive_oversold(1),
            naive_oversold(2),
            fixtures::for_update_safe(1),
        ];
        assert_eq!(names(&runs), ["naive", "for-update"]);
        assert_eq!(failure(&Gate::default(), &runs), None);
        let safe = Gate {
            expect: Some(Expect::Safe),
            max_errors: 0,
        };
        assert_eq!(
            failure(&safe, &runs).as_deref(),
            Some("expected safe: naive was not safe in 2 of 2 runs (2 oversold, max oversold units 27)")
        );
        let oversold = Gate {
            expect: Some(Expect::Oversold),
            max_errors: 0,
        };
        assert_eq!(
            failure(&oversold, &runs).as_deref(),
            Some("expected oversold: for-update did not oversell in 1 of 1 run")
        );
        assert_eq!(failure(&safe, &runs[2..]), None);
        assert_eq!(failure(&oversold, &runs[..2]), None);
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
