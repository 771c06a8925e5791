//! Hand-made results for the tests of the verdict and the renderers: the
//! real assembly (`RunResult::assemble` over a real `Tally`), from numbers
//! fixed here, so no server is needed and every figure is known.

use std::time::Duration;

use crate::db::{Audit, DbKind};
use crate::engine::Tally;
use crate::outcome::{AttemptReport, Outcome};
use crate::result::{
    Contention, DatabaseInfo, RaceRecord, RunResult, ScenarioInfo, Status, StrategyInfo, Subject,
};
use crate::scenario::Scenario;

/// Attempts of one outcome: how many, their tries, the first latency
/// and the step between latencies (µs), and a message for errors.
pub struct Attempts {
    pub outcome: Outcome,
    pub n: u64,
    pub tries: u32,
    pub first_us: u64,
    pub step_us: u64,
    pub message: Option<&'static str>,
}

pub fn attempts(outcome: Outcome, n: u64, first_us: u64, step_us: u64) -> Attempts {
    Attempts {
        outcome,
        n,
        tries: 1,
        first_us,
        step_us,
        message: None,
    }
}

/// The default scenario with `buyers` buyers and `stock` units.
pub fn scenario(buyers: u32, stock: i64) -> Scenario {
    Scenario {
        buyers,
        stock,
        ..Scenario::load("default").expect("the default scenario")
    }
}

/// The tally of the given attempts, numbered from 1.
pub fn tally(groups: &[Attempts]) -> Tally {
    let mut t = Tally::default();
    let mut id = 0;
    for g in groups {
        for i in 0..g.n {
            id += 1;
            let report = AttemptReport {
                outcome: g.outcome,
                tries: g.tries,
                message: g.message.map(str::to_string),
                connection_lost: false,
            };
            t.record(&report, id, g.first_us + i * g.step_us);
        }
    }
    t
}

/// A race in which every attempt overlapped another: `buyers` released
/// within 850 µs, as many in flight at once as there were attempts. One
/// buyer (or one attempt) races nobody: nothing overlapped.
pub fn raced(buyers: u32, attempts: u64) -> Contention {
    let peak = buyers.min(u32::try_from(attempts).unwrap_or(u32::MAX));
    if peak < 2 {
        return Contention {
            release_spread_us: 0,
            peak_in_flight: peak,
            overlapped_attempts: 0,
        };
    }
    Contention {
        release_spread_us: 850,
        peak_in_flight: peak,
        overlapped_attempts: attempts,
    }
}

/// A completed run of strategy `name` on an embedded PostgreSQL 15.18,
/// every attempt raced (`raced`), lasting 250 ms; checked `possible`.
pub fn run(
    name: &str,
    scenario: Scenario,
    groups: &[Attempts],
    audit: Option<Audit>,
    repetition: u32,
) -> RunResult {
    checked(run_with(
        name,
        scenario,
        groups,
        audit,
        repetition,
        Duration::from_millis(250),
    ))
}

/// `run` lasting `wall`, not checked (the caller may change it first).
pub fn run_with(
    name: &str,
    scenario: Scenario,
    groups: &[Attempts],
    audit: Option<Audit>,
    repetition: u32,
    wall: Duration,
) -> RunResult {
    let record = RaceRecord {
        started_at: format!("2025-01-02T03:04:0{repetition}.000Z"),
        scenario: ScenarioInfo::of(&scenario, 10, 42 + u64::from(repetition) - 1, 0),
        repetition,
        status: Status::Completed,
        status_reason: None,
        audit,
        wall,
        contention: raced(scenario.buyers, groups.iter().map(|g| g.n).sum()),
        client_cpu: Some(Duration::from_millis(3)),
        open_loop: None,
    };
    let strategy = StrategyInfo {
        name: name.to_string(),
        source: "builtin".to_string(),
        sha256: "0".repeat(64),
    };
    let database = DatabaseInfo {
        kind: DbKind::Embedded,
        server_version: "15.18".to_string(),
        durable: false,
    };
    let mut r = RunResult::assemble(
        record,
        &mut tally(groups),
        Subject::Strategy(strategy),
        Some(database),
    );
    r.verdict = crate::verdict::decide(&r);
    r
}

/// `r`, if it could have happened (`possible`); else the test fails
/// naming what could not.
pub fn checked(r: RunResult) -> RunResult {
    if let Err(why) = possible(&r) {
        panic!("an impossible fixture: {why}");
    }
    r
}

/// Whether a result could have come out of a real run: every count agrees
/// with the others, as the engine, the audit and the assembly make them. A
/// fixture that fails this tests nothing (its rendering shows a run that
/// cannot happen), so every fixture of the renderers passes it.
pub fn possible(r: &RunResult) -> Result<(), String> {
    let mut wrong: Vec<String> = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    let o = &r.outcomes;
    let sc = &r.scenario.workload;
    let ended = o.succeeded + o.sold_out + o.rejected + o.gave_up + o.errors + o.unknown;
    need(
        ended + o.in_flight == o.attempts,
        format!(
            "{ended} outcomes + {} in flight for {} attempts",
            o.in_flight, o.attempts
        ),
    );
    // Every buyer released made at least its first attempt.
    need(
        o.attempts >= u64::from(sc.buyers),
        format!(
            "{} attempts from {} buyers released together",
            o.attempts, sc.buyers
        ),
    );
    if sc.duration_s == 0.0 && r.status == Status::Completed {
        let planned = u64::from(sc.buyers) * u64::from(sc.attempts_per_buyer);
        need(
            o.attempts == planned,
            format!(
                "{} attempts from {} buyers x {} attempts",
                o.attempts, sc.buyers, sc.attempts_per_buyer
            ),
        );
    }
    let wall_us = r.throughput.wall_seconds * 1e6;
    need(
        (r.latency_us.attempt.max as f64) <= wall_us,
        format!(
            "an attempt of {} µs in a run of {wall_us} µs",
            r.latency_us.attempt.max
        ),
    );
    // Each buyer's attempts run one after another: the busiest buyer's
    // share of the total latency fits in the run.
    if sc.buyers > 0 {
        let per_buyer = r.latency_us.attempt.mean * o.attempts as f64 / f64::from(sc.buyers);
        need(
            per_buyer <= wall_us,
            format!("{per_buyer} µs of attempts per buyer in a run of {wall_us} µs"),
        );
    }
    let c = &r.contention;
    need(
        u64::from(c.peak_in_flight) <= u64::from(sc.buyers).min(o.attempts)
            && c.overlapped_attempts <= o.attempts,
        format!(
            "contention {c:?} for {} buyers, {} attempts",
            sc.buyers, o.attempts
        ),
    );
    need(
        c.overlapped_attempts == 0 || c.peak_in_flight >= 2,
        format!(
            "{} attempts overlapped with at most {} in flight",
            c.overlapped_attempts, c.peak_in_flight
        ),
    );
    if let Some(n) = &r.nemesis {
        // Every resubmission is a try, and every dropped reply was either
        // resubmitted or left its attempt unknown.
        need(
            o.retries >= n.resubmitted,
            format!("{} retries but {} resubmitted", o.retries, n.resubmitted),
        );
        need(
            n.dropped_replies <= n.resubmitted + o.unknown,
            format!(
                "{} replies dropped, {} resubmitted, {} left unknown",
                n.dropped_replies, n.resubmitted, o.unknown
            ),
        );
    }
    if let Some(a) = &r.audit {
        need(
            a.oversold_units == (a.units_sold - a.initial_stock).max(0)
                && a.stock_drift == a.initial_stock - a.units_sold - a.final_stock
                && a.negative_stock == (a.final_stock < 0),
            format!("the audit's arithmetic: {a:?}"),
        );
        need(
            a.initial_stock == sc.stock * i64::from(sc.products.max(1)),
            format!(
                "initial stock {} for {} products of {}",
                a.initial_stock, sc.products, sc.stock
            ),
        );
        // Attempts of unknown fate: those that ended unknown or in flight,
        // and (with --retry-unknown) resubmitted ones that did not succeed.
        let unsure = a.unknown_committed + a.unknown_not_committed;
        let resubmitted = r.nemesis.as_ref().map_or(0, |n| n.resubmitted);
        let floor = (o.unknown + o.in_flight) as i64;
        let truth_known = match &r.target {
            None => true,
            Some(t) => t.truth == crate::result::Truth::VerifySql,
        };
        if truth_known {
            need(
                (floor..=floor + resubmitted as i64).contains(&unsure),
                format!("{unsure} attempts of unknown fate for {floor} unknown or in flight and {resubmitted} resubmitted"),
            );
        }
        // The orders: successes that have one, unknown attempts that
        // committed, duplicates and unexplained ones, each `quantity` units.
        let orders = o.succeeded as i64 - a.successes_without_order
            + a.unknown_committed
            + a.duplicate_orders
            + a.orders_without_success;
        need(
            a.units_sold == orders * sc.quantity.max(1),
            format!(
                "{} units sold, but the attempts account for {orders} orders of {}",
                a.units_sold, sc.quantity
            ),
        );
        need(
            a.sold_out_with_stock_left <= o.sold_out as i64,
            format!(
                "{} sold-out answers contradicted of {}",
                a.sold_out_with_stock_left, o.sold_out
            ),
        );
    }
    if let Some(t) = &r.target {
        let counted: u64 = t.by_status.values().map(|s| s.count).sum();
        need(
            counted == o.attempts,
            format!("{counted} answers by status for {} attempts", o.attempts),
        );
        for (code, s) in &t.by_status {
            need(
                s.count == 0 || (s.min <= s.max && (s.max as f64) <= wall_us && s.max > 0),
                format!("status {code}: {s:?} in a run of {wall_us} µs"),
            );
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// An audit of one product: `initial` units, `sold` sold, `left` left.
pub fn audit(initial: i64, sold: i64, left: i64) -> Audit {
    Audit {
        initial_stock: initial,
        units_sold: sold,
        final_stock: left,
        oversold_units: (sold - initial).max(0),
        stock_drift: initial - sold - left,
        negative_stock: left < 0,
        successes_without_order: 0,
        orders_without_success: 0,
        unknown_committed: 0,
        unknown_not_committed: 0,
        duplicate_orders: 0,
        sold_out_with_stock_left: 0,
        stock_left_after_sold_out: 0,
        cache_drift: None,
    }
}

/// The audit of an HTTP race of one unit per purchase, by the real
/// arithmetic (`http::truth::audit`): `initial` declared or read, the
/// stock endpoint's readings `(before, after)` if it was read, and the
/// successes and unknown attempts counted.
pub fn http_audit(
    initial: i64,
    readings: Option<(i64, i64)>,
    succeeded: u64,
    unknown: u64,
) -> Audit {
    use crate::http::truth::{audit, Reading};
    let reading = |stock: Option<i64>| Reading {
        stock,
        units_sold: None,
    };
    let (before, after) = readings.map_or((None, None), |(b, a)| (Some(b), Some(a)));
    audit(
        initial,
        reading(before),
        reading(after),
        succeeded,
        unknown,
        1,
    )
}

/// naive with 100 buyers on 10 units: 37 bought, stock shows 0.
pub fn naive_oversold(repetition: u32) -> RunResult {
    run(
        "naive",
        scenario(100, 10),
        &[
            attempts(Outcome::Succeeded, 37, 5_200, 40),
            attempts(Outcome::SoldOut, 63, 900, 25),
        ],
        Some(audit(10, 37, 0)),
        repetition,
    )
}

/// for-update with 100 buyers on 10 units: exactly 10 bought.
pub fn for_update_safe(repetition: u32) -> RunResult {
    run(
        "for-update",
        scenario(100, 10),
        &[
            attempts(Outcome::Succeeded, 10, 6_100, 300),
            attempts(Outcome::SoldOut, 90, 7_400, 110),
        ],
        Some(audit(10, 10, 0)),
        repetition,
    )
}

/// for-update raced by one buyer: it bought a unit, alone, so nothing
/// overlapped.
pub fn for_update_alone() -> RunResult {
    let mut r = run(
        "for-update",
        scenario(1, 10),
        &[attempts(Outcome::Succeeded, 1, 6_000, 0)],
        Some(audit(10, 1, 9)),
        1,
    );
    r.contention = Contention {
        release_spread_us: 0,
        peak_in_flight: 1,
        overlapped_attempts: 0,
    };
    r.verdict = crate::verdict::decide(&r);
    checked(r)
}

/// Hand-made explore results.
pub mod explore {
    use crate::db::audit::ProductTally;
    use crate::db::Audit;
    use crate::db::DbKind;
    use crate::outcome::Outcome;
    use crate::result::explore::*;
    use crate::result::{DatabaseInfo, Status, StrategyInfo, Verdict};

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
            // Both succeed at their first try (as racelab explore ran it).
            buyers: (1..=2)
                .map(|buyer| BuyerEnd {
                    buyer,
                    outcome: Outcome::Succeeded,
                    tries: 1,
                    message: None,
                })
                .collect(),
            deadlock_victims: vec![],
        }
    }

    /// An exploration of naive that found `lost_update` among 34 schedules:
    /// the counts `racelab explore --strategy naive` reports (2 buyers, 1
    /// unit, at most 2 preemptions).
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
    use super::*;

    fn ok_run() -> RunResult {
        naive_oversold(1)
    }

    fn refused(r: &RunResult, says: &str) {
        let why = possible(r).expect_err("an impossible run passed");
        assert!(why.contains(says), "{why}");
    }

    #[test]
    fn the_fixtures_are_possible() {
        for r in [
            naive_oversold(1),
            naive_oversold(2),
            for_update_safe(1),
            for_update_alone(),
        ] {
            possible(&r).unwrap();
        }
    }

    #[test]
    fn runs_that_cannot_happen_are_refused() {
        // 100 buyers x 1 attempt cannot make 200 attempts.
        let mut r = ok_run();
        r.scenario.workload.buyers = 50;
        refused(&r, "attempts from 50 buyers x 1 attempts");
        // No attempt outlasts its run.
        let r = run_with(
            "naive",
            scenario(100, 10),
            &[attempts(Outcome::Succeeded, 10, 300_000, 0)],
            Some(audit(10, 10, 0)),
            1,
            Duration::from_millis(250),
        );
        refused(&r, "in a run of");
        // The audit's arithmetic is the audit's.
        let mut r = ok_run();
        if let Some(a) = r.audit.as_mut() {
            a.stock_drift += 1;
        }
        refused(&r, "the audit's arithmetic");
        // 37 successes are 37 orders, not 10.
        let mut r = ok_run();
        r.audit = Some(audit(10, 10, 0));
        refused(&r, "the attempts account for 37 orders");
        // Unknown attempts are resolved by the audit, all of them.
        let mut r = ok_run();
        if let Some(a) = r.audit.as_mut() {
            a.unknown_committed = 3;
        }
        refused(&r, "3 attempts of unknown fate");
        // A peak of one in flight overlaps nothing.
        let mut r = ok_run();
        r.contention.peak_in_flight = 1;
        refused(&r, "overlapped with at most 1 in flight");
    }
}
