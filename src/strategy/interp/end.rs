//! How a failed step ends the try: a conflict to retry, a safe
//! refusal, an error, or a lost connection (an `unknown` attempt when the
//! statement that commits may have reached the server); and the trace
//! event each step leaves.

use std::time::Instant;

use crate::outcome::{Outcome, TraceEvent, TraceKind};

/// How a failed step ends the try.
pub(super) enum Fail {
    /// 40001 / 40P01: roll back and try again.
    Conflict(String),
    /// Class 23 / 55P03: a safe refusal.
    Rejected(String),
    /// Anything else; the connection is still usable.
    Error(String),
    /// The connection is unusable.
    Lost(String),
}

pub(super) enum TryEnd {
    Done {
        outcome: Outcome,
        message: Option<String>,
        lost: bool,
        line: usize,
    },
    Conflict {
        message: String,
        line: usize,
    },
}

impl TryEnd {
    pub(super) fn done(outcome: Outcome, message: Option<String>, line: usize) -> TryEnd {
        TryEnd::Done {
            outcome,
            message,
            lost: false,
            line,
        }
    }
}

/// Sort a database error into what it means for the attempt.
pub(super) fn classify(e: &sqlx::Error, line: usize) -> Fail {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let msg = format!("{code}: {} (line {line})", db.message());
            if code == "40001" || code == "40P01" {
                Fail::Conflict(msg)
            } else if code.starts_with("23") || code == "55P03" {
                Fail::Rejected(msg)
            } else if code.starts_with("08") || code.starts_with("57P") {
                // Connection exceptions and server shutdown: the server
                // closes the connection after sending these.
                Fail::Lost(msg)
            } else {
                Fail::Error(msg)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolClosed
        | sqlx::Error::PoolTimedOut => Fail::Lost(format!("connection lost: {e} (line {line})")),
        _ => Fail::Error(format!("{e} (line {line})")),
    }
}

pub(super) fn event(
    kind: TraceKind,
    try_no: u32,
    line: usize,
    what: String,
    start: Instant,
) -> TraceEvent {
    TraceEvent {
        start,
        end: Instant::now(),
        try_no,
        line,
        kind,
        what,
        rows: None,
        values: Vec::new(),
        error: None,
        sqlstate: None,
        outcome: None,
    }
}

/// The SQLSTATE of a server error.
pub(super) fn sqlstate_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

pub(super) fn fail_message(f: &Fail) -> String {
    match f {
        Fail::Conflict(m) | Fail::Rejected(m) | Fail::Error(m) | Fail::Lost(m) => m.clone(),
    }
}

pub(super) fn lost(message: String, maybe_committed: bool, line: usize) -> TryEnd {
    TryEnd::Done {
        outcome: if maybe_committed {
            Outcome::Unknown
        } else {
            Outcome::Error
        },
        message: Some(message),
        lost: true,
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_ends_the_try_lost() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(classify(&io, 4), Fail::Lost(m) if m.ends_with("(line 4)")));
        assert!(matches!(
            classify(&sqlx::Error::Protocol("bad".into()), 1),
            Fail::Lost(_)
        ));
        assert!(matches!(
            classify(&sqlx::Error::RowNotFound, 2),
            Fail::Error(m) if m.contains("(line 2)")
        ));
        assert_eq!(sqlstate_of(&sqlx::Error::RowNotFound), None);
    }

    #[test]
    fn a_lost_commit_is_of_unknown_fate() {
        let ends = |maybe_committed| match lost("gone".into(), maybe_committed, 7) {
            TryEnd::Done {
                outcome,
                lost,
                line,
                message,
            } => (outcome, lost, line, message),
            TryEnd::Conflict { .. } => panic!("a lost connection is no conflict"),
        };
        assert_eq!(ends(true), (Outcome::Unknown, true, 7, Some("gone".into())));
        assert_eq!(ends(false).0, Outcome::Error);
        assert_eq!(fail_message(&Fail::Rejected("23505".into())), "23505");
    }
}
