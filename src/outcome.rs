//! What one purchase attempt came to. Shared by the script interpreter,
//! which produces it, and the engine, which tallies it.

use serde::{Deserialize, Serialize};

/// The outcome of one attempt (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The script reached its end and committed.
    Succeeded,
    /// The script said `\sold_out`.
    SoldOut,
    /// A safe refusal: an integrity-constraint violation (class 23) or 55P03.
    Rejected,
    /// Serialization failures, deadlocks or `\retry` used up `--max-tries`.
    GaveUp,
    /// Any other failure; the message is kept.
    Error,
    /// The connection was lost after a statement that may have committed was
    /// sent: the purchase may or may not have happened.
    Unknown,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Succeeded,
        Outcome::SoldOut,
        Outcome::Rejected,
        Outcome::GaveUp,
        Outcome::Error,
        Outcome::Unknown,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::SoldOut => "sold_out",
            Outcome::Rejected => "rejected",
            Outcome::GaveUp => "gave_up",
            Outcome::Error => "error",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One finished attempt, as the interpreter reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub outcome: Outcome,
    /// Tries made, at least 1 (retries = tries - 1).
    pub tries: u32,
    /// The error message, for `Error`, `GaveUp` (last conflict) and `Unknown`.
    pub message: Option<String>,
    /// The connection is unusable (lost, broken protocol): the engine stops
    /// using it and treats the server as failed.
    pub connection_lost: bool,
}
