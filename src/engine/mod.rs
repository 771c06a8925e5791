//! The race, for any kind of target: open every buyer's lane (the
//! target's `Lanes`), hold the buyers at a barrier, release them together,
//! and run one attempt loop per buyer until its attempts are made, the time
//! is up, or the run is stopped. Returns raw tallies and timings, and the
//! evidence that the buyers contended (`contention`); knows nothing about
//! printing, and names no driver or protocol: a target's lanes make the
//! attempts (`lab::lanes` for the SQL lab, `http::lane` for a service).

mod arrivals;
pub mod contention;
pub mod pick;
pub mod tally;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::sync::{Barrier, Notify};
use tokio::task::JoinSet;

use crate::outcome::{AttemptCtx, AttemptReport, Outcome, TraceEvent};
use arrivals::Arrivals;
pub use arrivals::{Lag, OpenLoop, LATE_AFTER};
pub use contention::Contention;
use contention::{BuyerCount, Merged, Tracker};
pub use pick::ProductPicker;
pub use tally::{Latency, Tally};

/// What the engine needs to know about one race.
#[derive(Debug, Clone)]
pub struct RaceConfig {
    pub buyers: u32,
    pub attempts_per_buyer: u32,
    /// Loop until this much time has passed instead of a fixed count.
    pub duration: Option<Duration>,
    pub quantity: i64,
    pub think_ms: u64,
    pub think_jitter_ms: u64,
    pub products: ProductPicker,
    /// 0: one connection per buyer; otherwise a shared pool of that size.
    pub connections: u32,
    pub max_tries: u32,
    pub seed: u64,
    /// Record every statement of every attempt (`--trace`).
    pub trace: bool,
    /// Measure contention (`RaceOutput::contention`). Always on in a run;
    /// off only to measure what measuring costs.
    pub track_contention: bool,
    /// Open loop: attempts per second across all buyers, on a schedule
    /// (`arrivals`); `None`: each buyer starts its next attempt when its
    /// last one ends.
    pub rate: Option<f64>,
    /// `--retry-unknown`: resubmit an attempt that ended `unknown`, under
    /// the same attempt id, up to this many times; 0 is off.
    pub retry_unknown: u32,
    /// `--no-progress`: end the race (aborted) when no attempt finishes
    /// for this long, saying what the buyers wait on; `None`: never.
    pub no_progress: Option<Duration>,
}

/// One buyer, one attempt of one unit on one product, no think time, one
/// connection each, one try, contention measured: a start for tests and
/// tools, which set what they need.
impl Default for RaceConfig {
    fn default() -> RaceConfig {
        RaceConfig {
            buyers: 1,
            attempts_per_buyer: 1,
            duration: None,
            quantity: 1,
            think_ms: 0,
            think_jitter_ms: 0,
            products: ProductPicker::new(1, 0.0),
            connections: 0,
            max_tries: 1,
            seed: 0,
            trace: false,
            track_contention: true,
            rate: None,
            retry_unknown: 0,
            no_progress: None,
        }
    }
}

/// Why a race ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A signal (SIGINT, SIGTERM) asked racelab to stop.
    Interrupted(i32),
    /// The harness could not go on, e.g. the server went away.
    Aborted(String),
}

/// Shared between the race, the signal handler and the progress display.
/// Progress reads one atomic counter; nothing here is on a lock per attempt.
#[derive(Debug, Default)]
pub struct Control {
    stopped: AtomicBool,
    stop: Mutex<Option<Stop>>,
    notify: Notify,
    /// Attempts finished so far in the current race.
    pub done: AtomicU64,
    next_attempt: AtomicI64,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// Ask everything to stop; the first reason given wins.
    pub fn stop(&self, why: Stop) {
        let mut slot = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(why);
        }
        drop(slot);
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub fn reason(&self) -> Option<Stop> {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once `stop` has been called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Reset the per-race counters (not the stop flag).
    fn begin_race(&self) {
        self.done.store(0, Ordering::Relaxed);
        self.next_attempt.store(0, Ordering::Relaxed);
    }
}

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

/// CPU time this process has used so far.
pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Build the runtime racelab races on: one worker thread for the buyers,
/// while the main thread runs the orchestration. On a small machine every
/// core the client uses is taken from the server, so one worker; and a
/// worker thread (which looks for work briefly before it sleeps) answers a
/// reply sooner than a current-thread runtime parked in `epoll_wait`.
/// Measured on 2 cores against one hot row (`conditional`, no think time):
/// 1 buyer 6,800 -> 10,300 attempts/s, 10 buyers 13,200 -> 14,300, for the
/// same client CPU per attempt.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("racelab-buyers")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// What the buyers of a race run against: the SQL lab's lanes, an HTTP
/// service's, or any other kind of target's. The barrier, the attempt
/// loop, the tallies and the timings are the engine's and the same for
/// every kind; only opening the lanes and the attempt itself differ.
/// Generic rather than `dyn`, so nothing is boxed per attempt.
pub trait Lanes: Send + Sync + 'static {
    /// What one buyer holds for the whole race (a connection, its own
    /// counters); handed back by `race_with` when the race is over.
    type Lane: Send + 'static;
    /// A buyer's working state, borrowing its lane.
    type Buyer<'a>: Attempt + Send
    where
        Self: 'a;

    /// Open every buyer's lane before the barrier, so that the race starts
    /// with everyone connected.
    fn open(
        &self,
        config: &RaceConfig,
        control: &Control,
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Lane>>> + Send;

    /// The buyer that runs on `lane`; `seed` is the buyer's own.
    fn buyer<'a>(&'a self, lane: &'a mut Self::Lane, seed: u64) -> Self::Buyer<'a>;

    /// What runs beside the buyers from their release until the last one
    /// is done (then it is dropped), e.g. a nemesis. Nothing by default.
    fn during(&self, config: &RaceConfig) -> impl Future<Output = ()> + Send {
        let _ = config;
        async {}
    }

    /// The race makes no progress (see `RaceConfig::no_progress`): what the
    /// buyers are waiting on, as far as the target can tell, to go after
    /// "the buyers make no progress" (e.g. "; on the server: 48 buyers wait
    /// on a lock held outside the race by ..."). Nothing by default.
    fn stalled(&self) -> impl Future<Output = String> + Send {
        async { String::new() }
    }

    /// A buyer has finished: keep its lane for `race_with` to hand back, or
    /// let it go now (`None`).
    fn finished(&self, buyer: u32, lane: Self::Lane) -> Option<Self::Lane> {
        let _ = buyer;
        Some(lane)
    }
}

/// What one buyer does for one attempt.
pub trait Attempt {
    /// Wait until the next attempt can start (e.g. for a connection of a
    /// shared pool). Not part of the attempt: neither timed nor counted
    /// as in flight. Err: the race cannot go on.
    fn ready(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }

    /// Make one attempt: its report and its latency in microseconds (timed
    /// by the lane, so that waiting for a pooled connection is not counted),
    /// or why the race cannot go on.
    fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> impl Future<Output = Result<(AttemptReport, u64), String>> + Send;

    /// Before the barrier, with the buyer's first attempt: send whatever of
    /// it can go ahead of the release (an HTTP request but its final byte or
    /// frame), so that `attempt(first)` only has to complete it. Failures
    /// are the first attempt's to report; nothing here may end the race.
    fn prime(&mut self, first: &AttemptCtx) -> impl Future<Output = ()> + Send {
        let _ = first;
        async {}
    }

    /// When the buyer's first statement or request left racelab after the
    /// barrier (for an HTTP lane that primed, the write that completed its
    /// first request), if the lane knows it better than the engine (which
    /// takes the instant just before the buyer's first attempt starts,
    /// after `ready`). Asked once, after the buyer's last attempt; the
    /// release spread of `Contention` runs from the earliest of these to
    /// the latest.
    fn first_sent_at(&self) -> Option<Instant> {
        None
    }
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
    for (buyer, mut lane) in (1..=config.buyers).zip(opened) {
        let (lanes, config, control, barrier, tracker, arrivals) = (
            lanes.clone(),
            config.clone(),
            control.clone(),
            barrier.clone(),
            tracker.clone(),
            arrivals.clone(),
        );
        set.spawn(async move {
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
        });
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

#[derive(Default)]
struct BuyerOutput {
    tally: Tally,
    traces: Vec<AttemptTrace>,
    /// The attempt running now, if any (so a stop can name it).
    current: Option<i64>,
    count: BuyerCount,
    lag: Lag,
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
        let attempt = control.next_attempt.fetch_add(1, Ordering::Relaxed) + 1;
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

/// Join every task of `set` through `each` (whose first error ends the
/// wait), unless the run is stopped first: then abort the rest and return
/// `Interrupted`. For the set-up before the barrier (connecting, warming).
pub async fn join_unless_stopped<T: 'static, U>(
    mut set: JoinSet<T>,
    control: &Control,
    mut each: impl FnMut(T) -> anyhow::Result<U>,
) -> anyhow::Result<Vec<U>> {
    let mut out = Vec::with_capacity(set.len());
    let stopped = control.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                set.abort_all();
                anyhow::bail!(crate::error::Interrupted { signal: stop_signal(control) });
            }
            joined = set.join_next() => match joined {
                None => break,
                Some(r) => out.push(each(r.context("a set-up task panicked")?)?),
            }
        }
    }
    Ok(out)
}

fn stop_signal(control: &Control) -> i32 {
    match control.reason() {
        Some(Stop::Interrupted(sig)) => sig,
        _ => libc::SIGINT,
    }
}

/// A good 64-bit mix, so that per-buyer seeds are unrelated.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Run `work` on racelab's runtime while SIGINT/SIGTERM stop `control`.
pub fn until_signal<T>(
    control: &Arc<Control>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let rt = runtime()?;
    let out = rt.block_on(async {
        let signals = tokio::spawn(watch_signals(control.clone()));
        let r = work.await;
        signals.abort();
        r
    });
    drop(rt);
    out
}

/// SIGINT and SIGTERM stop the race; the partial result is still audited,
/// reported and saved, and every guard gets to clean up.
async fn watch_signals(control: Arc<Control>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let sig = tokio::select! {
        _ = int.recv() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
    };
    control.stop(Stop::Interrupted(sig));
}

#[cfg(test)]
mod tests {
    use super::*;

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
