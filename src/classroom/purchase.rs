//! One purchase, a student's or a bot's: one attempt of the round's
//! strategy on its own connection, made by the SQL lab's own buyer
//! (`SqlLanes`, the `engine::Attempt` every race runs), traced like
//! `--trace`, and booked into the round. A purchase admitted during the
//! countdown connects at once and then waits for its cohort's release,
//! so that everyone who pressed early starts together.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::round::{Cohort, Finished, RoundCore, PRODUCT};
use crate::engine::{Attempt as _, Control, Lanes as _, RaceConfig};
use crate::outcome::{AttemptReport, Outcome};
use crate::strategy::AttemptCtx;

/// A purchase admitted to a round.
pub struct Ticket {
    pub core: Arc<RoundCore>,
    pub buyer: u32,
    pub bot: bool,
    pub cohort: Arc<Cohort>,
}

impl Ticket {
    /// Whether the purchase goes at once (its cohort is released).
    pub fn cohort_released(&self) -> bool {
        self.cohort.released()
    }
}

/// Run the purchase to its end: a connection (one of `permits`), the
/// cohort's release, the attempt. The room books what it returns.
pub async fn attempt(permits: &Semaphore, control: &Control, t: &Ticket) -> Finished {
    let core = &t.core;
    let permit = permits.acquire().await;
    let opened = core
        .lanes
        .open(&RaceConfig::default(), control)
        .await
        .and_then(|mut lanes| {
            lanes
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no connection was opened"))
        });
    if t.bot {
        t.cohort.bot_connected();
    }
    let mut lane = match opened {
        Ok(lane) => lane,
        Err(e) => {
            drop(permit);
            return Finished {
                buyer: t.buyer,
                report: AttemptReport {
                    outcome: Outcome::Error,
                    tries: 1,
                    message: Some(format!("could not connect to the lab: {e:#}")),
                    connection_lost: true,
                },
                latency_us: 0,
                events: Vec::new(),
                overlapped: false,
                first_sent: None,
                ended: Instant::now(),
            };
        }
    };
    t.cohort.wait().await;
    let seed = core.seed ^ u64::from(t.buyer).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut worker = core.lanes.buyer(&mut lane, seed);
    let ctx = AttemptCtx {
        product: PRODUCT,
        qty: 1,
        buyer: i64::from(t.buyer),
        attempt: i64::from(t.buyer),
        think_ms: core.think_ms as i64,
        max_tries: core.max_tries,
    };
    let mut events = Vec::new();
    let first_sent = Instant::now();
    let span = core.tracker.start(PRODUCT);
    let done = worker.attempt(&ctx, Some(&mut events)).await;
    let overlapped = span.is_some_and(|s| core.tracker.end(s));
    let ended = Instant::now();
    let (report, latency_us) = done.unwrap_or_else(|why| {
        let report = AttemptReport {
            outcome: Outcome::Error,
            tries: 1,
            message: Some(why),
            connection_lost: true,
        };
        (report, ended.duration_since(first_sent).as_micros() as u64)
    });
    if report.outcome == Outcome::SoldOut {
        core.tracker.sold_out(PRODUCT);
    }
    drop(worker);
    drop(lane);
    drop(permit);
    Finished {
        buyer: t.buyer,
        report,
        latency_us,
        events,
        overlapped,
        first_sent: Some(first_sent),
        ended,
    }
}
