//! Failure kinds and how they map to exit codes (DESIGN §8).
//!
//! Errors travel as `anyhow::Error`; what kind of failure one is depends on
//! the typed errors in its chain. A failed purchase is never an error: it is
//! an outcome (see `outcome`).

use std::fmt;

/// Bad input from the user: usage, unknown names, unreadable files, parse
/// errors. Exit code 2.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

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
#[derive(Debug)]
pub struct ExpectationFailed(pub String);

impl fmt::Display for ExpectationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpectationFailed {}

/// The exit code for an error, from the kinds found in its chain.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(i) = cause.downcast_ref::<Interrupted>() {
            return if i.signal == libc::SIGTERM { 143 } else { 130 };
        }
        if cause.is::<ExpectationFailed>() {
            return 1;
        }
        if cause.is::<BadInput>()
            || cause.is::<crate::strategy::ParseError>()
            || cause.is::<crate::scenario::ScenarioError>()
        {
            return 2;
        }
    }
    3
}

/// The message `main` prints: the whole cause chain on one line, or for a
/// script parse error, that line followed by the source line and a caret.
pub fn render(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        if let Some(p) = cause.downcast_ref::<crate::strategy::ParseError>() {
            return p.render();
        }
    }
    format!("{err:#}")
}
