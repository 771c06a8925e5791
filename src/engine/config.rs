//! What the engine needs to know about one race: the workload as the
//! buyers make it (how many, how often, on which products) and the run's
//! own settings (seed, tries, trace, open loop).

use std::time::Duration;

use super::pick::ProductPicker;

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
