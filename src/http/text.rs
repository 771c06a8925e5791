//! The words of racelab's HTTP layer, shared by every file of it and
//! importing none: an error with its causes (`chain`), a body cut short
//! for a message (`truncate`), a wait bounded by `--request-timeout`
//! (`within`), and the one answer to "did the request leave?" (`Failure`).

use std::time::Duration;

use crate::outcome::Outcome;

/// Bytes of an unexpected response body kept in an error message.
pub const BODY_KEPT: usize = 200;

/// Why a request got no usable response, by whether it may have reached
/// the server: the difference between `error` (it did not buy) and
/// `unknown` (it may have bought).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing of it can have been acted on: no connection, the
    /// connection failed before the request was complete, or the server
    /// refused the stream unprocessed.
    Unsent(String),
    /// The request was (or may have been) complete and no (readable)
    /// answer came: the purchase may have happened.
    Sent(String),
}

impl Failure {
    /// The attempt's outcome and message.
    pub fn outcome(self) -> (Outcome, String) {
        match self {
            Failure::Unsent(m) => (Outcome::Error, m),
            Failure::Sent(m) => (Outcome::Unknown, m),
        }
    }
}

/// `s` trimmed and cut to `BODY_KEPT` characters.
pub fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(BODY_KEPT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message alone says
/// little: "error sending request").
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// `f`, unless `deadline` (the `--request-timeout`) passes first.
pub async fn within<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    f: F,
) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// The deadline of a request started now.
pub fn deadline(timeout: Option<Duration>) -> Option<tokio::time::Instant> {
    timeout.map(|t| tokio::time::Instant::now() + t)
}

fn ms(timeout: Option<Duration>) -> u128 {
    timeout.map_or(0, |t| t.as_millis())
}

/// A request sent and not answered within `--request-timeout`.
pub fn no_response(timeout: Option<Duration>) -> Failure {
    Failure::Sent(format!(
        "no response within {} ms (--request-timeout); the purchase may or may not have happened",
        ms(timeout)
    ))
}

/// A first request that could not be written before the barrier in time.
pub fn no_prime(timeout: Option<Duration>) -> String {
    format!(
        "could not send the request within {} ms (--request-timeout)",
        ms(timeout)
    )
}

/// No connection within `--request-timeout`: nothing was sent.
pub fn no_connect(timeout: Option<Duration>) -> Failure {
    Failure::Unsent(format!(
        "could not connect within {} ms (--request-timeout)",
        ms(timeout)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_cut() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), BODY_KEPT + 1);
        assert_eq!(truncate("  short \n"), "short");
    }

    #[test]
    fn a_failure_says_whether_it_may_have_bought() {
        assert_eq!(Failure::Unsent("x".into()).outcome().0, Outcome::Error);
        assert_eq!(Failure::Sent("x".into()).outcome().0, Outcome::Unknown);
    }
}
