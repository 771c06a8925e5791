//! Where racelab's own time goes, phase by phase: with `RACELAB_TIMINGS=1`
//! the breakdown is printed on stderr when the process ends. Used to check
//! the start-up budget (README, Performance); costs nothing when unset.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static ENABLED: OnceLock<bool> = OnceLock::new();
static PHASES: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

pub fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var_os("RACELAB_TIMINGS").is_some_and(|v| v != "0"))
}

/// Note that `phase` took `took`.
pub fn record(phase: &str, took: Duration) {
    if enabled() {
        PHASES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((phase.to_string(), took));
    }
}

/// Time a future as `phase`.
pub async fn time<T>(phase: &str, fut: impl std::future::Future<Output = T>) -> T {
    if !enabled() {
        return fut.await;
    }
    let t = Instant::now();
    let out = fut.await;
    record(phase, t.elapsed());
    out
}

/// Print the phases and the process total (since `started`) on stderr.
pub fn report(started: Instant) {
    if !enabled() {
        return;
    }
    let phases = PHASES.lock().unwrap_or_else(|e| e.into_inner());
    let total = started.elapsed();
    for (name, took) in phases.iter() {
        eprintln!("timing {name:<28} {:>9.1} ms", took.as_secs_f64() * 1e3);
    }
    eprintln!(
        "timing {:<28} {:>9.1} ms",
        "process total",
        total.as_secs_f64() * 1e3
    );
}
