//! What a round's purchases recorded: who bought, how each purchase
//! ended, and the engine's own accounting (`Tally`, the contention
//! counts, the traces), from which closing a round makes its result.

use std::time::Instant;

use crate::engine::contention::Merged;
use crate::engine::{AttemptTrace, Tally};
use crate::outcome::Outcome;

/// Who made a purchase.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub name: String,
    pub bot: bool,
    pub attempt: i64,
    /// Set when the purchase ends.
    pub done: Option<Done>,
}

/// How one purchase ended.
#[derive(Debug, Clone)]
pub struct Done {
    pub outcome: Outcome,
    pub latency_us: u64,
    pub tries: u32,
    pub message: Option<String>,
    /// Since the release of the round.
    pub at_ms: u64,
}

/// What the purchases of a round recorded: the engine's accounting.
#[derive(Default)]
pub struct Books {
    pub tally: Tally,
    pub merged: Merged,
    pub traces: Vec<AttemptTrace>,
    pub last_end: Option<Instant>,
}
