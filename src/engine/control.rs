//! Stopping a race: why it stopped (`Stop`), the `Control` the race, the
//! signal handler and the progress display share, and waiting on set-up
//! tasks unless the run is stopped first.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Why a race ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A signal (SIGINT, SIGTERM) asked racelab to stop.
    Interrupted(i32),
    /// The harness could not go on, e.g. the server went away.
    Aborted(String),
}

/// Shared between the race, the signal handler and the progress display.
/// Progress reads one atomic counter; nothing here is on a lock per attempt.
#[derive(Debug, Default)]
pub struct Control {
    stopped: AtomicBool,
    stop: Mutex<Option<Stop>>,
    notify: Notify,
    /// Attempts finished so far in the current race.
    pub done: AtomicU64,
    next_attempt: AtomicI64,
}

impl Control {
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// Ask everything to stop; the first reason given wins.
    pub fn stop(&self, why: Stop) {
        let mut slot = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(why);
        }
        drop(slot);
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub fn reason(&self) -> Option<Stop> {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once `stop` has been called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Reset the per-race counters (not the stop flag).
    pub(super) fn begin_race(&self) {
        self.done.store(0, Ordering::Relaxed);
        self.next_attempt.store(0, Ordering::Relaxed);
    }

    /// The number of the race's next attempt (from 1, unique in the race).
    pub(super) fn next_attempt(&self) -> i64 {
        self.next_attempt.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Join every task of `set` through `each` (whose first error ends the
/// wait), unless the run is stopped first: then abort the rest and return
/// `Interrupted`. For the set-up before the barrier (connecting, warming).
pub async fn join_unless_stopped<T: 'static, U>(
    mut set: JoinSet<T>,
    control: &Control,
    mut each: impl FnMut(T) -> anyhow::Result<U>,
) -> anyhow::Result<Vec<U>> {
    let mut out = Vec::with_capacity(set.len());
    let stopped = control.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                set.abort_all();
                anyhow::bail!(crate::error::Interrupted { signal: stop_signal(control) });
            }
            joined = set.join_next() => match joined {
                None => break,
                Some(r) => out.push(each(r.context("a set-up task panicked")?)?),
            }
        }
    }
    Ok(out)
}

fn stop_signal(control: &Control) -> i32 {
    match control.reason() {
        Some(Stop::Interrupted(sig)) => sig,
        _ => libc::SIGINT,
    }
}
