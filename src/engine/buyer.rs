//! One buyer of a race, for every kind of lane: its attempts in order
//! (`Attempts`), priming the first before the barrier, the one attempt
//! loop (`buyer_loop`: attempts, deadline or open-loop schedule, stop),
//! and `--retry-unknown`'s resubmissions.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::sync::Barrier;

use super::arrivals::{Arrivals, Lag};
use super::config::RaceConfig;
use super::contention::{BuyerCount, Tracker};
use super::control::{Control, Stop};
use super::lanes::{Attempt, Lanes};
use super::tally::Tally;
use crate::outcome::{AttemptCtx, AttemptReport, Outcome, TraceEvent};

/// The statements one traced attempt ran.
#[derive(Debug, Clone)]
pub struct AttemptTrace {
    pub buyer: u32,
    pub attempt: i64,
    /// The product the attempt tried to buy (the script's `:product`).
    pub product: i64,
    pub outcome: Outcome,
    pub events: Vec<TraceEvent>,
}

/// What every buyer task of one race holds.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) config: Arc<RaceConfig>,
    pub(super) control: Arc<Control>,
    pub(super) barrier: Arc<Barrier>,
    pub(super) tracker: Arc<Tracker>,
    /// The open loop's schedule, with a rate.
    pub(super) arrivals: Option<Arc<Arrivals>>,
}

/// One buyer's task: its worker on its lane, the first attempt primed
/// before the barrier, the attempt loop until it ends or the run stops;
/// then its output and the lane, if `Lanes::finished` keeps it.
pub(super) async fn run<L: Lanes>(
    buyer: u32,
    lanes: Arc<L>,
    mut lane: L::Lane,
    shared: Shared,
) -> (BuyerOutput, Option<L::Lane>) {
    let Shared {
        config,
        control,
        barrier,
        tracker,
        arrivals,
    } = shared;
    let mut out = BuyerOutput::default();
    let seed = splitmix(config.seed ^ u64::from(buyer).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    {
        let mut worker = lanes.buyer(&mut lane, seed);
        let mut attempts = Attempts::new(seed);
        // An open loop's attempts start on the schedule: none is
        // sent ahead of the release.
        let first = config
            .rate
            .is_none()
            .then(|| attempts.next(buyer, &config, &control));
        if let Some(first) = &first {
            // Bounded by the lane's own time limits; a stop skips
            // it, and every buyer still meets the barrier.
            tokio::select! {
                biased;
                _ = control.stopped() => {}
                _ = worker.prime(first) => {}
            }
        }
        barrier.wait().await;
        let race = Race {
            config: &config,
            control: &control,
            tracker: &tracker,
            arrivals: arrivals.as_deref(),
        };
        let work = buyer_loop(buyer, &mut worker, first, attempts, race, &mut out);
        tokio::select! {
            biased;
            _ = work => {}
            _ = control.stopped() => {
                // Dropped mid-attempt: its COMMIT may have reached the
                // server, so the audit must look it up.
                if let Some(attempt) = out.current.take() {
                    out.tally.in_flight += 1;
                    out.tally.unknown_attempts.push(attempt);
                }
            }
        }
        if tracker.enabled() {
            if let Some(sent) = worker.first_sent_at() {
                out.count.first_sent = Some(sent);
            }
        }
    }
    (out, lanes.finished(buyer, lane))
}

/// What one buyer made of the race, merged once at its end.
#[derive(Default)]
pub(super) struct BuyerOutput {
    pub(super) tally: Tally,
    pub(super) traces: Vec<AttemptTrace>,
    /// The attempt running now, if any (so a stop can name it).
    current: Option<i64>,
    pub(super) count: BuyerCount,
    pub(super) lag: Lag,
}

/// What every buyer of one race shares.
#[derive(Clone, Copy)]
struct Race<'a> {
    config: &'a RaceConfig,
    control: &'a Control,
    tracker: &'a Tracker,
    /// The open loop's schedule, with a rate.
    arrivals: Option<&'a Arrivals>,
}

/// A buyer's attempts in order: each one's number (unique in the run),
/// product and think time. The first is made before the barrier, so that
/// a lane can prime it.
struct Attempts {
    rng: SmallRng,
}

impl Attempts {
    fn new(seed: u64) -> Attempts {
        Attempts {
            rng: SmallRng::seed_from_u64(splitmix(seed)),
        }
    }

    fn next(&mut self, buyer: u32, config: &RaceConfig, control: &Control) -> AttemptCtx {
        let attempt = control.next_attempt();
        let think = if config.think_jitter_ms == 0 {
            config.think_ms
        } else {
            let j = config.think_jitter_ms;
            (config.think_ms + self.rng.gen_range(0..=2 * j)).saturating_sub(j)
        };
        AttemptCtx {
            product: config.products.pick(&mut self.rng),
            qty: config.quantity,
            buyer: i64::from(buyer),
            attempt,
            think_ms: think as i64,
            max_tries: config.max_tries,
        }
    }
}

/// One buyer: the only attempt loop, for every mode and every kind of lane.
/// `first` is the attempt the lane may have primed before the barrier.
/// In an open loop the buyer takes each attempt's scheduled start from
/// the schedule and times the attempt from it.
async fn buyer_loop<A: Attempt>(
    buyer: u32,
    worker: &mut A,
    first: Option<AttemptCtx>,
    mut attempts: Attempts,
    race: Race<'_>,
    out: &mut BuyerOutput,
) {
    let Race {
        config,
        control,
        tracker,
        arrivals,
    } = race;
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut made = 0u32;
    let mut events = Vec::new();
    let mut next = first;
    loop {
        if control.is_stopped() {
            break;
        }
        // The schedule decides how many attempts there are, and when.
        let scheduled = match arrivals {
            Some(a) => match a.next().await {
                Some(at) => Some((at, Instant::now())),
                None => break,
            },
            None => {
                match deadline {
                    Some(deadline) if Instant::now() >= deadline => break,
                    None if made >= config.attempts_per_buyer => break,
                    _ => {}
                }
                None
            }
        };
        made += 1;
        let ctx = match next.take() {
            Some(first) => first,
            None => attempts.next(buyer, config, control),
        };
        let attempt = ctx.attempt;
        let trace = config.trace.then_some(&mut events);
        if let Err(why) = worker.ready().await {
            control.stop(Stop::Aborted(why));
            break;
        }
        out.current = Some(attempt);
        if out.count.first_sent.is_none() && tracker.enabled() {
            out.count.first_sent = Some(Instant::now());
        }
        let span = tracker.start(ctx.product);
        let mut done = worker.attempt(&ctx, trace).await;
        if config.retry_unknown > 0 {
            done = resubmit(worker, &ctx, done, race, &mut events, out).await;
        }
        if let Some(span) = span {
            if tracker.end(span) {
                out.count.overlapped += 1;
            }
        }
        let (report, mut us) = match done {
            Ok(done) => done,
            Err(why) => {
                control.stop(Stop::Aborted(why));
                break;
            }
        };
        if let Some((at, started)) = scheduled {
            out.lag.record(started.saturating_duration_since(at));
            us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
        }
        out.current = None;
        out.tally.record(&report, attempt, us);
        if report.outcome == Outcome::SoldOut {
            tracker.sold_out(ctx.product);
        }
        control.done.fetch_add(1, Ordering::Relaxed);
        if config.trace {
            out.traces.push(AttemptTrace {
                buyer,
                attempt,
                product: ctx.product,
                outcome: report.outcome,
                events: std::mem::take(&mut events),
            });
        }
        if report.connection_lost {
            let msg = report.message.as_deref().unwrap_or("connection lost");
            control.stop(Stop::Aborted(format!(
                "lost the connection to the server: {msg}"
            )));
            break;
        }
        if deadline.is_some() && arrivals.is_none() && report.outcome == Outcome::SoldOut {
            break;
        }
    }
}

/// `--retry-unknown`: while `done` is an unknown outcome on a lane that
/// can go on, send the same attempt (same id) again, as a client that
/// timed out and retries would, up to `retry_unknown` times. The attempt's
/// report is its last submission's, its tries and time those of all. One
/// that ends other than in success after an unknown submission stays of
/// unknown fate to the audit: an earlier submission may have committed.
async fn resubmit<A: Attempt>(
    worker: &mut A,
    ctx: &AttemptCtx,
    mut done: Result<(AttemptReport, u64), String>,
    race: Race<'_>,
    events: &mut Vec<TraceEvent>,
    out: &mut BuyerOutput,
) -> Result<(AttemptReport, u64), String> {
    let mut again = 0;
    while again < race.config.retry_unknown && !race.control.is_stopped() {
        let (first, us) = match done {
            Ok((r, us)) if r.outcome == Outcome::Unknown && !r.connection_lost => (r, us),
            other => return finish_resubmitted(other, again, ctx, out),
        };
        again += 1;
        worker.ready().await?;
        let trace = race.config.trace.then_some(&mut *events);
        done = worker.attempt(ctx, trace).await.map(|(r, more)| {
            let tries = first.tries.saturating_add(r.tries);
            (AttemptReport { tries, ..r }, us + more)
        });
    }
    finish_resubmitted(done, again, ctx, out)
}

fn finish_resubmitted(
    done: Result<(AttemptReport, u64), String>,
    again: u32,
    ctx: &AttemptCtx,
    out: &mut BuyerOutput,
) -> Result<(AttemptReport, u64), String> {
    if again > 0 {
        out.tally.resubmitted += u64::from(again);
        if let Ok((r, _)) = &done {
            if !matches!(r.outcome, Outcome::Succeeded | Outcome::Unknown) {
                out.tally.unknown_attempts.push(ctx.attempt);
            }
        }
    }
    done
}

/// A good 64-bit mix, so that per-buyer seeds are unrelated.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
