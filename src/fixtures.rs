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
/// within 850 µs, as many in flight at once as there were attempts.
pub fn raced(buyers: u32, attempts: u64) -> Contention {
    Contention {
        release_spread_us: 850,
        peak_in_flight: buyers.min(u32::try_from(attempts).unwrap_or(u32::MAX)),
        overlapped_attempts: attempts,
    }
}

/// A completed run of strategy `name` on an embedded PostgreSQL 15.18,
/// every attempt raced (`raced`).
pub fn run(
    name: &str,
    scenario: Scenario,
    groups: &[Attempts],
    audit: Option<Audit>,
    repetition: u32,
) -> RunResult {
    let record = RaceRecord {
        started_at: format!("2025-01-02T03:04:0{repetition}.000Z"),
        scenario: ScenarioInfo::of(&scenario, 10, 42 + u64::from(repetition) - 1, 0),
        repetition,
        status: Status::Completed,
        status_reason: None,
        audit,
        wall: Duration::from_millis(250),
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
    r
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
                prevented_at: "REPEATABLE READ".into(),
                buyer: 2,
                read_value: 1,
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
