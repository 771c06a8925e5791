//! The open loop (`--rate`): attempts start on a schedule, not when the
//! previous one ends. A dispatcher thread draws exponential inter-arrival
//! times (as pgbench `-R` does) from the run's seed, sleeps until each
//! scheduled start and hands it to the buyers; a free buyer takes it at
//! once, and when every buyer is busy it waits for the first to finish.
//! Each attempt is timed from its scheduled start, so a server that stalls
//! shows in the latency of every attempt that should have started during
//! the stall (no coordinated omission); how late each one started is the
//! schedule lag.
//!
//! The dispatcher is a thread of its own, not a timer of the runtime: a
//! thread's sleep wakes within tens of microseconds, the runtime's timer
//! only on its next millisecond tick.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Mutex};

use super::Control;

/// An attempt that started more than this after its scheduled start is
/// counted late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// The dispatcher's longest sleep: it looks for a stop this often.
const SLICE: Duration = Duration::from_millis(20);

/// The schedule of one race, shared by its buyers.
pub struct Arrivals {
    rx: Mutex<mpsc::UnboundedReceiver<Instant>>,
    dispatcher: std::sync::Mutex<Option<JoinHandle<u64>>>,
}

impl Arrivals {
    /// Start the dispatcher: once `Go::go` gives it the release instant,
    /// `rate` attempts per second from then, for `horizon` (scheduled
    /// starts before its end) or `total` attempts, whichever ends first;
    /// until `control` stops.
    pub fn start(
        rate: f64,
        seed: u64,
        horizon: Option<Duration>,
        total: Option<u64>,
        control: Arc<Control>,
    ) -> anyhow::Result<(Arrivals, Go)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (go, released) = std::sync::mpsc::channel::<Instant>();
        let dispatcher = std::thread::Builder::new()
            .name("racelab-arrivals".into())
            .spawn(move || {
                // No release (the race failed before it): nothing to schedule.
                let Ok(start) = released.recv() else {
                    return 0;
                };
                let mut rng = SmallRng::seed_from_u64(seed ^ 0xA441_7A15);
                let mut at = 0.0f64;
                let mut sent = 0u64;
                loop {
                    if total.is_some_and(|t| sent >= t) {
                        break;
                    }
                    // Exponential inter-arrival: -ln(U) / rate, U in (0, 1].
                    let u: f64 = 1.0 - rng.gen::<f64>();
                    at += -u.ln() / rate;
                    let offset = Duration::from_secs_f64(at);
                    if horizon.is_some_and(|h| offset >= h) {
                        break;
                    }
                    let due = start + offset;
                    loop {
                        if control.is_stopped() {
                            return sent;
                        }
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        std::thread::sleep((due - now).min(SLICE));
                    }
                    if tx.send(due).is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })?;
        let arrivals = Arrivals {
            rx: Mutex::new(rx),
            dispatcher: std::sync::Mutex::new(Some(dispatcher)),
        };
        Ok((arrivals, Go(go)))
    }

    /// The next scheduled start for a free buyer: at once when one is
    /// overdue, else when it is due; `None` when the schedule is over.
    pub async fn next(&self) -> Option<Instant> {
        self.rx.lock().await.recv().await
    }

    /// Wait for the dispatcher to end (it has once the buyers are done or
    /// the race stopped): how many starts it scheduled.
    pub fn finish(&self) -> u64 {
        self.rx.try_lock().map(|mut rx| rx.close()).ok();
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        handle.and_then(|h| h.join().ok()).unwrap_or(0)
    }
}

/// Starts the schedule at the buyers' release.
pub struct Go(std::sync::mpsc::Sender<Instant>);

impl Go {
    pub fn go(self, released_at: Instant) {
        let _ = self.0.send(released_at);
    }
}

/// What one buyer saw of the schedule.
#[derive(Debug, Clone, Default)]
pub struct Lag {
    /// Scheduled start to actual start, microseconds.
    lag: Option<Histogram<u64>>,
    late: u64,
}

impl Lag {
    pub fn record(&mut self, lag: Duration) {
        if lag > LATE_AFTER {
            self.late += 1;
        }
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).max(1);
        self.lag
            .get_or_insert_with(|| {
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
            })
            .saturating_record(us);
    }

    pub fn merge(&mut self, other: &Lag) {
        self.late += other.late;
        if let Some(h) = &other.lag {
            match &mut self.lag {
                Some(mine) => mine.add(h).expect("same bounds"),
                None => self.lag = Some(h.clone()),
            }
        }
    }

    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn histogram(&self) -> Option<&Histogram<u64>> {
        self.lag.as_ref()
    }
}

/// The open loop of one race, as measured.
#[derive(Debug, Clone)]
pub struct OpenLoop {
    /// The rate asked for, attempts per second.
    pub rate: f64,
    /// Starts the dispatcher scheduled.
    pub scheduled: u64,
    /// Per attempt started: how late.
    pub lag: Lag,
}
