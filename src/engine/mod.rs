//! The race: connect every buyer (or fill the pool), hold them at a barrier,
//! release them together, and run one attempt loop per buyer until its
//! attempts are made, the time is up, or the run is stopped. Returns raw
//! tallies and timings; knows nothing about printing.

pub mod pick;
pub mod pool;
pub mod tally;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::{Barrier, Notify};
use tokio::task::JoinSet;

use crate::outcome::Outcome;
use crate::strategy::{AttemptCtx, Program, TraceEvent};
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
    pub traces: Vec<AttemptTrace>,
}

/// Run one race. Errors only when the race could not start (connections);
/// failures during the race are outcomes, or a `Stop` recorded in `control`.
pub async fn race(
    program: Arc<Program>,
    connect: PgConnectOptions,
    config: RaceConfig,
    control: Arc<Control>,
) -> anyhow::Result<RaceOutput> {
    control.begin_race();
    let config = Arc::new(config);
    let lanes = open_lanes(&connect, &config, &control).await?;
    let barrier = Arc::new(Barrier::new(config.buyers as usize + 1));

    let mut set = JoinSet::new();
    for (buyer, lane) in (1..=config.buyers).zip(lanes) {
        let (program, config, control, barrier) = (
            program.clone(),
            config.clone(),
            control.clone(),
            barrier.clone(),
        );
        set.spawn(async move {
            let mut out = BuyerOutput::default();
            barrier.wait().await;
            let work = buyer_loop(buyer, lane, &program, &config, &control, &mut out);
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
            out
        });
    }
    barrier.wait().await;
    let released_at = Instant::now();

    let mut tally = Tally::default();
    let mut traces = Vec::new();
    while let Some(joined) = set.join_next().await {
        let out = joined.context("a buyer task panicked")?;
        tally.merge(out.tally);
        traces.extend(out.traces);
    }
    let wall = released_at.elapsed();
    traces.sort_by_key(|t| t.events.first().map(|e| e.start));
    Ok(RaceOutput {
        tally,
        wall,
        released_at,
        traces,
    })
}

/// Where a buyer gets its connection from.
enum Lane {
    Own(PgConnection),
    Pool(Arc<pool::SharedPool>),
}

#[derive(Default)]
struct BuyerOutput {
    tally: Tally,
    traces: Vec<AttemptTrace>,
    /// The attempt running now, if any (so a stop can name it).
    current: Option<i64>,
}

/// One buyer: the only attempt loop, for every mode.
async fn buyer_loop(
    buyer: u32,
    lane: Lane,
    program: &Program,
    config: &RaceConfig,
    control: &Control,
    out: &mut BuyerOutput,
) {
    let seed = splitmix(config.seed ^ u64::from(buyer).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut session = program.session(seed);
    let mut rng = SmallRng::seed_from_u64(splitmix(seed));
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut made = 0u32;
    let (mut own, shared) = match lane {
        Lane::Own(conn) => (Some(conn), None),
        Lane::Pool(pool) => (None, Some(pool)),
    };
    let mut events = Vec::new();
    loop {
        if control.is_stopped() {
            break;
        }
        match deadline {
            Some(deadline) if Instant::now() >= deadline => break,
            None if made >= config.attempts_per_buyer => break,
            _ => {}
        }
        made += 1;
        let attempt = control.next_attempt.fetch_add(1, Ordering::Relaxed) + 1;
        let think = if config.think_jitter_ms == 0 {
            config.think_ms
        } else {
            let j = config.think_jitter_ms;
            (config.think_ms + rng.gen_range(0..=2 * j)).saturating_sub(j)
        };
        let ctx = AttemptCtx {
            product: config.products.pick(&mut rng),
            qty: config.quantity,
            buyer: i64::from(buyer),
            attempt,
            think_ms: think as i64,
            max_tries: config.max_tries,
        };
        let trace = config.trace.then_some(&mut events);
        let mut lease = None;
        let conn: &mut PgConnection = match (&mut own, &shared) {
            (Some(conn), _) => conn,
            (None, None) => break,
            (None, Some(pool)) => match pool.lease().await {
                Some(l) => &mut lease.insert(l).conn,
                None => {
                    control.stop(Stop::Aborted(
                        "lost the connection to the server (the pool has none left)".into(),
                    ));
                    break;
                }
            },
        };
        let started = Instant::now();
        out.current = Some(attempt);
        let report = session.attempt(conn, &ctx, trace).await;
        let us = started.elapsed().as_micros() as u64;
        out.current = None;
        if let (Some(pool), Some(l)) = (&shared, lease) {
            if !report.connection_lost {
                pool.give_back(l);
            }
        }
        out.tally.record(&report, attempt, us);
        control.done.fetch_add(1, Ordering::Relaxed);
        if config.trace {
            out.traces.push(AttemptTrace {
                buyer,
                attempt,
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
        if deadline.is_some() && report.outcome == Outcome::SoldOut {
            break;
        }
    }
}

/// Open every buyer's connection (or fill the pool) before the barrier, so
/// the race starts with everyone ready. Connections open concurrently.
async fn open_lanes(
    connect: &PgConnectOptions,
    config: &RaceConfig,
    control: &Control,
) -> anyhow::Result<Vec<Lane>> {
    let buyers = config.buyers as usize;
    let pool_size = (config.connections > 0).then(|| config.connections.min(config.buyers));
    let wanted = pool_size.map_or(buyers, |n| n as usize);
    let mut set = JoinSet::new();
    for _ in 0..wanted {
        let opts = connect.clone();
        set.spawn(async move { opts.connect().await });
    }
    let mut lanes = Vec::with_capacity(buyers);
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
                Some(r) => {
                    let conn = r.context("connect task panicked")?.map_err(connect_error)?;
                    lanes.push(Lane::Own(conn));
                }
            }
        }
    }
    if pool_size.is_some() {
        let conns = lanes.into_iter().filter_map(|l| match l {
            Lane::Own(c) => Some(c),
            Lane::Pool(_) => None,
        });
        let pool = Arc::new(pool::SharedPool::new(conns.collect()));
        return Ok((0..buyers).map(|_| Lane::Pool(pool.clone())).collect());
    }
    Ok(lanes)
}

fn stop_signal(control: &Control) -> i32 {
    match control.reason() {
        Some(Stop::Interrupted(sig)) => sig,
        _ => libc::SIGINT,
    }
}

fn connect_error(e: sqlx::Error) -> anyhow::Error {
    let too_many = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "53300");
    if too_many {
        anyhow::anyhow!(
            "the server refused more connections ({e}): share a pool with --connections N, \
             or raise the server's max_connections"
        )
    } else {
        anyhow::Error::new(e).context("could not open a buyer's connection")
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
