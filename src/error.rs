//! Failure kinds and how they map to exit codes (DESIGN §8).
//!
//! Errors travel as `anyhow::Error`; what kind of failure one is depends on
//! the typed errors of this module found in its chain. Lower modules build
//! them (`bad_input`), or their own typed errors are wrapped into them by
//! the command layer, which knows those types (`plan::classify`): this
//! module knows no other module. A failed purchase is never an error: it
//! is an outcome (see `outcome`).

use std::fmt;

/// What kind of failure an error is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Usage, unknown names, unreadable files, parse errors: exit 2.
    BadInput,
    /// The run finished but an `--expect` (or `--baseline`) failed: exit 1.
    ExpectationFailed,
    /// A signal stopped the run: 130 (SIGINT) or 143 (SIGTERM).
    Interrupted(i32),
    /// The database or the environment failed: exit 3.
    Environment,
    /// `racelab explain` could not decide (UNSURE): exit 4.
    Unsure,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::ExpectationFailed => 1,
            Kind::BadInput => 2,
            Kind::Environment => 3,
            Kind::Unsure => 4,
            Kind::Interrupted(signal) if signal == libc::SIGTERM => 143,
            Kind::Interrupted(_) => 130,
        }
    }
}

/// Bad input from the user: usage, unknown names, unreadable files,
/// impossible values. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Build a bad-input error from a message.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// The run was interrupted by a signal; the partial result has been reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted {
    pub signal: i32,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            libc::SIGTERM => f.write_str("terminated (SIGTERM)"),
            _ => f.write_str("interrupted (Ctrl-C)"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// An `--expect` did not hold. The message names what failed. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExpectationFailed(pub String);

/// `racelab explain` is UNSURE: what it could not follow is in the
/// findings it printed. Exit code 4.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsure(pub String);

/// Bad input shown exactly as written, without the contexts above it: a
/// parse error with its source line and a caret under the column. Exit
/// code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Diagnostic(pub String);

/// The kind of an error, from the first of this module's types in its
/// chain; anything else is the environment's failure.
pub fn kind(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        if let Some(i) = cause.downcast_ref::<Interrupted>() {
            return Kind::Interrupted(i.signal);
        }
        if cause.is::<ExpectationFailed>() {
            return Kind::ExpectationFailed;
        }
        if cause.is::<Unsure>() {
            return Kind::Unsure;
        }
        if cause.is::<BadInput>() || cause.is::<Diagnostic>() {
            return Kind::BadInput;
        }
    }
    Kind::Environment
}

/// The exit code for an error.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    kind(err).exit_code()
}

/// The message `main` prints: the whole cause chain on one line, or a
/// `Diagnostic` as it is written.
pub fn render(err: &anyhow::Error) -> String {
    match err.chain().find_map(|c| c.downcast_ref::<Diagnostic>()) {
        Some(d) => d.0.clone(),
        None => format!("{err:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_documented_exit_codes() {
        assert_eq!(exit_code(&bad_input("no")), 2);
        assert_eq!(exit_code(&ExpectationFailed("x".into()).into()), 1);
        assert_eq!(exit_code(&Unsure("x".into()).into()), 4);
        let int = anyhow::Error::new(Interrupted {
            signal: libc::SIGINT,
        });
        assert_eq!(exit_code(&int), 130);
        let term = anyhow::Error::new(Interrupted {
            signal: libc::SIGTERM,
        });
        assert_eq!(exit_code(&term), 143);
        assert_eq!(exit_code(&anyhow::anyhow!("server died")), 3);
        // A kind deep in the chain still counts.
        let deep = bad_input("bad flag").context("building the plan");
        assert_eq!(kind(&deep), Kind::BadInput);
    }

    #[test]
    fn a_diagnostic_is_printed_alone() {
        let text = "x.sql:2:1: unknown\n2 | \\x\n  | ^";
        let caret = anyhow::Error::new(Diagnostic(text.into())).context("loading");
        assert_eq!(render(&caret), text);
        assert_eq!(exit_code(&caret), 2);
        let one = bad_input("--buyers: must be 1 or more").context("the plan");
        assert_eq!(render(&one), "the plan: --buyers: must be 1 or more");
    }
}
