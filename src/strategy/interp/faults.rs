//! racelab's own deadline on every statement's reply (`--timeout`) and
//! the faults it injects into a session (`--nemesis drop-reply`): what a
//! session is asked to do, why an attempt lost its connection on
//! racelab's side, and the two primitives, a bounded wait and a send whose
//! reply is never read.

use std::future::Future;
use std::time::Duration;

/// Why an attempt lost its connection on racelab's side rather than the
/// server's: the lane decides from it whether to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// No reply within the client-side deadline: the peer stopped
    /// answering (a frozen network); reconnecting would not help.
    Deadline,
    /// `--nemesis drop-reply`: the statement that commits was sent and the
    /// connection dropped before its reply was read.
    DroppedReply,
}

/// How a session bounds and disturbs its statements (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionFaults {
    /// No statement may wait longer than this for its reply.
    pub deadline: Option<Duration>,
    /// The probability (0..1) of dropping the reply of a statement that commits.
    pub drop_reply: f64,
    /// No `\sleep` may be longer than this (`--timeout`); without it,
    /// `SLEEP_LIMIT`.
    pub sleep_limit: Option<Duration>,
}

/// The longest `\sleep` without `--timeout`: think time is milliseconds,
/// and a sleep of hours is a typo that would hang the race silently.
pub const SLEEP_LIMIT: Duration = Duration::from_secs(60);

/// Poll `send` once and leave it: its first poll writes the message to
/// the socket (and flushes it); the reply is never read. Unconstrained:
/// tokio's cooperative budget must not make that one poll return before
/// the message is written.
pub(super) async fn send_once<F: Future>(send: F) {
    let send = tokio::task::unconstrained(send);
    let mut send = std::pin::pin!(send);
    std::future::poll_fn(|cx| {
        let _ = send.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

/// `f`, or an I/O error of kind `TimedOut` when no reply came within
/// `limit`. Without a limit this is `f` itself: nothing is allocated or
/// armed per statement.
pub(super) async fn bounded<T>(
    limit: Option<Duration>,
    f: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match limit {
        None => f.await,
        Some(limit) => match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no reply within {} ms (racelab's deadline, --timeout plus a grace): \
                     the connection stopped answering",
                    limit.as_millis()
                ),
            ))),
        },
    }
}

/// Whether `e` is `bounded`'s expired deadline.
pub(super) fn is_deadline(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_silent_peer_runs_into_the_deadline() {
        let rt = crate::engine::runtime().unwrap();
        let never = std::future::pending::<Result<(), sqlx::Error>>();
        let e = rt
            .block_on(bounded(Some(Duration::from_millis(10)), never))
            .unwrap_err();
        assert!(is_deadline(&e), "{e}");
        assert!(e.to_string().contains("no reply within 10 ms"), "{e}");
        let answered = rt.block_on(bounded(None, async { Ok::<_, sqlx::Error>(5) }));
        assert_eq!(answered.unwrap(), 5);
        assert!(!is_deadline(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn send_once_polls_once_and_leaves() {
        let polls = AtomicU32::new(0);
        let send = std::future::poll_fn(|_| {
            polls.fetch_add(1, Ordering::SeqCst);
            std::task::Poll::<()>::Pending
        });
        let rt = crate::engine::runtime().unwrap();
        rt.block_on(send_once(send));
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }
}
