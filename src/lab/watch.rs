//! `--watch MS`: a separate connection samples the lab's total stock and
//! units sold while the buyers race, so the moment the invariant broke
//! (units sold > initial stock) is visible in the JSON and the HTML report.
//! The sampler is one more task on the race's runtime; it only reads.

use std::time::{Duration, Instant};

use sqlx::Row as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::db::Database;
use crate::result::{Sample, WatchInfo};

/// A running sampler.
pub struct Watcher {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Vec<(Instant, i64, i64)>>>,
    interval_ms: u64,
}

const QUERY: &str = "SELECT (SELECT coalesce(sum(stock), 0)::int8 FROM products), \
                     (SELECT coalesce(sum(qty), 0)::int8 FROM orders)";

/// Connect and start sampling every `interval_ms` until `finish`.
pub async fn start(db: &Database, interval_ms: u64) -> anyhow::Result<Watcher> {
    let mut conn = db.connect().await?;
    // A sample that gets no reply within the audit's limit ends the
    // sampling (the samples so far are kept): a frozen network must not
    // hold the run after the race.
    let limit = db.audit_limit();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let sample = tokio::time::timeout(limit, sqlx::query(QUERY).fetch_one(&mut conn));
            let Ok(row) = sample.await else {
                return Ok(samples);
            };
            let row = row?;
            samples.push((Instant::now(), row.try_get(0)?, row.try_get(1)?));
        }
        // One last look after the race, so every run has its end state.
        let sample = tokio::time::timeout(limit, sqlx::query(QUERY).fetch_one(&mut conn));
        if let Ok(row) = sample.await {
            let row = row?;
            samples.push((Instant::now(), row.try_get(0)?, row.try_get(1)?));
        }
        Ok(samples)
    });
    Ok(Watcher {
        stop,
        task,
        interval_ms,
    })
}

impl Watcher {
    /// Stop sampling; times become relative to `released_at`, and samples
    /// taken before the release are dropped.
    pub async fn finish(
        self,
        released_at: Instant,
        initial_stock: i64,
    ) -> anyhow::Result<WatchInfo> {
        let _ = self.stop.send(());
        let raw = self.task.await??;
        let samples: Vec<Sample> = raw
            .into_iter()
            .filter(|(at, _, _)| *at >= released_at)
            .map(|(at, stock, units_sold)| Sample {
                t_ms: ((at - released_at).as_secs_f64() * 1e6).round() / 1e3,
                stock,
                units_sold,
            })
            .collect();
        let first_oversold_ms = samples
            .iter()
            .find(|s| s.units_sold > initial_stock)
            .map(|s| s.t_ms);
        Ok(WatchInfo {
            interval_ms: self.interval_ms,
            initial_stock,
            samples,
            first_oversold_ms,
        })
    }
}
