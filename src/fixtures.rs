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
