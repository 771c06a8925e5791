//! The headline of an HTTP run's table: what was raced, and where the
//! audit's numbers came from (the client's belief is labelled as such).

use crate::report::result::Truth;
use crate::report::RunResult;

/// "POST http://... : 100 buyers x 1 attempt, quantity 1" and the truth.
pub fn headline(r: &RunResult, work: &str) -> String {
    let Some(t) = &r.target else {
        return work.to_string();
    };
    let s = &r.scenario;
    let truth = match t.truth {
        Truth::VerifySql => match &r.database {
            Some(db) => format!(
                "truth: --verify-sql on the service's database (PostgreSQL {})",
                db.server_version
            ),
            None => "truth: --verify-sql on the service's database".to_string(),
        },
        Truth::StockUrl => "truth: the service's stock endpoint, read before and after".to_string(),
        Truth::ClientBelief => format!(
            "truth: CLIENT-SIDE BELIEF only (--stock {} against the successes racelab counted; \
             the service's own records were not read)",
            s.stock
        ),
    };
    format!(
        "target {} {}: {work}, quantity {}, timeout {} ms\n{truth}, seed {}",
        t.method, t.url, s.quantity, t.timeout_ms, s.seed
    )
}
