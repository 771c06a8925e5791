//! One purchase attempt: the values it starts with (`AttemptCtx`), the
//! events of a traced one (`TraceEvent`), and what it came to (`Outcome`,
//! `AttemptReport`). Shared by the targets' lanes, which make attempts,
//! and the engine, which hands them out and tallies them.

use std::time::Instant;

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

/// The values an attempt starts with.
#[derive(Debug, Clone, Copy)]
pub struct AttemptCtx {
    pub product: i64,
    pub qty: i64,
    pub buyer: i64,
    pub attempt: i64,
    pub think_ms: i64,
    /// 0 = unlimited.
    pub max_tries: u32,
}

/// What a trace event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// A SQL statement of the script.
    Sql,
    /// `\set`: `values` holds the name and the new value.
    Set,
    /// `\sleep`.
    Sleep,
    /// `\sold_out` or `\retry`.
    Meta,
    /// A ROLLBACK the interpreter sent (after an error, a conflict, `\retry`,
    /// `\sold_out` or a script ending inside a transaction).
    Rollback,
    /// The pause between a conflict and the next try.
    Backoff,
    /// A `\redis` command: `values` holds the reply stored by `\gset`.
    Redis,
    /// The attempt's outcome; always the last event.
    Outcome,
}

/// One event of a traced attempt (`--trace`).
#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub start: Instant,
    pub end: Instant,
    /// The try (1-based) the event belongs to.
    pub try_no: u32,
    /// The script line (0 for events with no line, like a backoff).
    pub line: usize,
    pub kind: TraceKind,
    /// The first line of the SQL as written, the meta-command, or for
    /// `Outcome` the outcome's name.
    pub what: String,
    /// Rows affected (SQL events).
    pub rows: Option<u64>,
    /// Values read by `\gset` or set by `\set`: (variable, value).
    pub values: Vec<(String, String)>,
    /// The error, if the step failed (for `Outcome`: the report's message).
    pub error: Option<String>,
    /// The SQLSTATE of a SQL statement the server failed, e.g. `40P01`.
    pub sqlstate: Option<String>,
    /// Set on the `Outcome` event.
    pub outcome: Option<Outcome>,
}
