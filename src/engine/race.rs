//! One race: open the buyers' lanes, spawn a task per buyer (`buyer`),
//! release them together at a barrier, run what the lanes run beside them
//! (a nemesis), and merge every buyer's tally, traces and contention
//! counts once at the end.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::arrivals::{Arrivals, Lag, OpenLoop};
use super::buyer::{self, AttemptTrace, Shared};
use super::config::RaceConfig;
use super::contention::{Contention, Merged, Tracker};
use super::control::{Control, Stop};
use super::lanes::Lanes;
use super::runtime::process_cpu;
use super::tally::Tally;

/// What a race produced.
#[derive(Debug)]
pub struct RaceOutput {
    pub tally: Tally,
    /// From the release of the buyers to the end of the last one.
    pub wall: Duration,
    /// When the buyers were released (trace times are relative to it).
    pub released_at: Instant,
    /// How long opening the buyers' connections (or filling the pool) took.
    pub connect: Duration,
    pub traces: Vec<AttemptTrace>,
    /// Whether, and how much, the buyers' attempts overlapped.
    pub contention: Contention,
    /// Sold-out answers per product id (only products that had any).
    pub sold_out_by_product: Vec<(i64, u64)>,
    /// With a rate: the schedule and how late attempts started.
    pub open_loop: Option<OpenLoop>,
    /// CPU time racelab's process used from the release to the end of the
    /// last buyer (every thread: the buyers, the orchestration, a sampler).
    pub client_cpu: Duration,
}

/// Run one race on any kind of lanes; returns what the race produced and
/// the lanes that `Lanes::finished` kept (in no promised order).
pub async fn race_with<L: Lanes>(
    lanes: Arc<L>,
    config: RaceConfig,
    control: Arc<Control>,
) -> anyhow::Result<(RaceOutput, Vec<L::Lane>)> {
    let opened = open(&*lanes, &config, &control).await?;
    race_opened(lanes, opened, config, control).await
}

/// The buyers' lanes, opened before a race (see `race_opened`).
pub struct Opened<L: Lanes> {
    lanes: Vec<L::Lane>,
    took: Duration,
}

/// Open the buyers' lanes for a race of `config`: their connections (or
/// the pool's). Separate from the race so that a caller can open them
/// while it readies the lab.
pub async fn open<L: Lanes>(
    lanes: &L,
    config: &RaceConfig,
    control: &Control,
) -> anyhow::Result<Opened<L>> {
    let connecting = Instant::now();
    control.opening.store(0, Ordering::Relaxed);
    control.opened.store(0, Ordering::Relaxed);
    let opened = lanes.open(config, control).await?;
    Ok(Opened {
        lanes: opened,
        took: connecting.elapsed(),
    })
}

/// Run one race on lanes `open` opened with the same `config`.
pub async fn race_opened<L: Lanes>(
    lanes: Arc<L>,
    opened: Opened<L>,
    config: RaceConfig,
    control: Arc<Control>,
) -> anyhow::Result<(RaceOutput, Vec<L::Lane>)> {
    control.begin_race();
    let config = Arc::new(config);
    let Opened {
        lanes: opened,
        took: connect_took,
    } = opened;
    let barrier = Arc::new(Barrier::new(config.buyers as usize + 1));
    let tracker = Arc::new(Tracker::new(config.products.ids(), config.track_contention));
    let (arrivals, go) = match config.rate {
        Some(rate) => {
            // Without a duration the schedule is every buyer's attempts.
            let total = config
                .duration
                .is_none()
                .then(|| u64::from(config.buyers) * u64::from(config.attempts_per_buyer));
            let (a, go) =
                Arrivals::start(rate, config.seed, config.duration, total, control.clone())
                    .context("starting the open loop's dispatcher thread")?;
            (Some(Arc::new(a)), Some(go))
        }
        None => (None, None),
    };

    let mut set = JoinSet::new();
    let shared = Shared {
        config: config.clone(),
        control: control.clone(),
        barrier: barrier.clone(),
        tracker: tracker.clone(),
        arrivals: arrivals.clone(),
    };
    for (number, lane) in (1..=config.buyers).zip(opened) {
        set.spawn(buyer::run(number, lanes.clone(), lane, shared.clone()));
    }
    barrier.wait().await;
    let released_at = Instant::now();
    let cpu_at_release = process_cpu();
    if let Some(go) = go {
        go.go(released_at);
    }

    let mut tally = Tally::default();
    let mut traces = Vec::new();
    let mut merged = Merged::default();
    let mut lag = Lag::default();
    let mut done = Vec::with_capacity(config.buyers as usize);
    let beside = lanes.during(&config);
    tokio::pin!(beside);
    let mut beside_done = false;
    let watchdog = watch_progress(&*lanes, &config, &control);
    tokio::pin!(watchdog);
    let mut watchdog_done = false;
    loop {
        let joined = tokio::select! {
            joined = set.join_next() => joined,
            () = &mut beside, if !beside_done => {
                beside_done = true;
                continue;
            }
            () = &mut watchdog, if !watchdog_done => {
                watchdog_done = true;
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (out, lane) = joined.context("a buyer task panicked")?;
        lag.merge(&out.lag);
        tally.merge(out.tally);
        traces.extend(out.traces);
        merged.add(out.count);
        done.extend(lane);
    }
    let wall = released_at.elapsed();
    let client_cpu = process_cpu().saturating_sub(cpu_at_release);
    let open_loop = match (&arrivals, config.rate) {
        (Some(a), Some(rate)) => Some(OpenLoop {
            rate,
            scheduled: a.finish(),
            lag,
        }),
        _ => None,
    };
    traces.sort_by_key(|t| t.events.first().map(|e| e.start));
    Ok((
        RaceOutput {
            tally,
            wall,
            released_at,
            connect: connect_took,
            traces,
            contention: merged.finish(&tracker),
            sold_out_by_product: tracker.sold_out_by_product(),
            open_loop,
            client_cpu,
        },
        done,
    ))
}

/// Stop the race (aborted, keeping what finished) once no attempt has
/// finished for `config.no_progress`: a livelock, a lock held outside the
/// race, a strategy that retries without end. The reason says so, with
/// what the lanes can tell of what the buyers wait on. Never returns
/// otherwise.
async fn watch_progress<L: Lanes>(lanes: &L, config: &RaceConfig, control: &Control) {
    let Some(limit) = config.no_progress else {
        return std::future::pending().await;
    };
    let tick = (limit / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut seen = control.done.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        if control.is_stopped() {
            return std::future::pending().await;
        }
        let done = control.done.load(Ordering::Relaxed);
        if done != seen {
            (seen, since) = (done, Instant::now());
            continue;
        }
        if since.elapsed() < limit {
            continue;
        }
        let waits = tokio::time::timeout(Duration::from_secs(5), lanes.stalled())
            .await
            .unwrap_or_default();
        let endless = if config.max_tries == 0 {
            "; with --max-tries 0 an attempt retries its conflicts and \\retry without end"
        } else {
            ""
        };
        control.stop(Stop::Aborted(format!(
            "the buyers make no progress: no attempt finished in {} s (--no-progress){waits}{endless}",
            limit.as_secs_f64()
        )));
        return std::future::pending().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{runtime, Attempt};
    use crate::outcome::{AttemptCtx, AttemptReport, Outcome, TraceEvent};

    /// Buyers whose attempts meet: each attempt waits until `meet` buyers'
    /// attempts are in flight together (a barrier inside the attempt), so
    /// the overlap is certain, not a matter of timing. `meet == 1`: each
    /// attempt is alone.
    struct Meeting {
        meet: Arc<Barrier>,
        /// When set, lane `i` says its first request left at `t + i ms`
        /// (as a lane that knows its send instants better would).
        first_sent: Option<Instant>,
    }

    struct Guest<'a> {
        lanes: &'a Meeting,
        index: u32,
        sent: bool,
    }

    impl Lanes for Meeting {
        /// The lane's index.
        type Lane = u32;
        type Buyer<'a> = Guest<'a>;

        async fn open(&self, config: &RaceConfig, _: &Control) -> anyhow::Result<Vec<u32>> {
            Ok((0..config.buyers).collect())
        }

        fn buyer<'a>(&'a self, lane: &'a mut u32, _: u64) -> Guest<'a> {
            Guest {
                lanes: self,
                index: *lane,
                sent: false,
            }
        }
    }

    impl Attempt for Guest<'_> {
        async fn attempt(
            &mut self,
            _: &AttemptCtx,
            _: Option<&mut Vec<TraceEvent>>,
        ) -> Result<(AttemptReport, u64), String> {
            self.sent = true;
            self.lanes.meet.wait().await;
            let report = AttemptReport {
                outcome: Outcome::SoldOut,
                tries: 1,
                message: None,
                connection_lost: false,
            };
            Ok((report, 1))
        }

        fn first_sent_at(&self) -> Option<Instant> {
            let t = self.lanes.first_sent.filter(|_| self.sent)?;
            Some(t + Duration::from_millis(u64::from(self.index)))
        }
    }

    fn config(buyers: u32, attempts: u32) -> RaceConfig {
        RaceConfig {
            buyers,
            attempts_per_buyer: attempts,
            seed: 3,
            ..RaceConfig::default()
        }
    }

    fn race_meeting(
        buyers: u32,
        attempts: u32,
        meet: usize,
        first_sent: Option<Instant>,
    ) -> RaceOutput {
        let lanes = Arc::new(Meeting {
            meet: Arc::new(Barrier::new(meet)),
            first_sent,
        });
        let rt = runtime().unwrap();
        let (out, _) = rt
            .block_on(race_with(lanes, config(buyers, attempts), Control::new()))
            .unwrap();
        out
    }

    #[test]
    fn attempts_that_meet_overlap() {
        let out = race_meeting(8, 2, 8, None);
        assert_eq!(out.contention.peak_in_flight, 8);
        assert_eq!(out.contention.overlapped_attempts, 16);
        assert_eq!(out.sold_out_by_product, [(1, 16)]);
    }

    #[test]
    fn the_lane_knows_its_first_send_best() {
        let out = race_meeting(5, 1, 5, Some(Instant::now()));
        assert_eq!(out.contention.release_spread_us, 4_000);
    }

    #[test]
    fn one_buyer_never_overlaps() {
        let out = race_meeting(1, 5, 1, None);
        assert_eq!(out.contention.peak_in_flight, 1);
        assert_eq!(out.contention.overlapped_attempts, 0);
        assert_eq!(out.contention.release_spread_us, 0);
    }

    #[test]
    fn tracking_off_counts_nothing_but_sold_out_answers() {
        let lanes = Arc::new(Meeting {
            meet: Arc::new(Barrier::new(4)),
            first_sent: None,
        });
        let mut config = config(4, 1);
        config.track_contention = false;
        let rt = runtime().unwrap();
        let (out, _) = rt
            .block_on(race_with(lanes, config, Control::new()))
            .unwrap();
        assert_eq!(out.contention, Contention::default());
        assert_eq!(out.sold_out_by_product, [(1, 4)]);
    }
}
