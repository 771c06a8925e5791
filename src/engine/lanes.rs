//! The seam between the engine and a target kind: `Lanes` (what the
//! buyers of a race hold: opened before the barrier, handed back after)
//! and `Attempt` (what one buyer does for one attempt). A target kind
//! implements both beside its target (`lab::lanes`, `http::lane`); the
//! engine's barrier, attempt loop, tallies and timings serve them all.

use std::future::Future;
use std::time::Instant;

use super::config::RaceConfig;
use super::control::Control;
use crate::outcome::{AttemptCtx, AttemptReport, TraceEvent};

/// What the buyers of a race run against: the SQL lab's lanes, an HTTP
/// service's, or any other kind of target's. The barrier, the attempt
/// loop, the tallies and the timings are the engine's and the same for
/// every kind; only opening the lanes and the attempt itself differ.
/// Generic rather than `dyn`, so nothing is boxed per attempt.
pub trait Lanes: Send + Sync + 'static {
    /// What one buyer holds for the whole race (a connection, its own
    /// counters); handed back by `race_with` when the race is over.
    type Lane: Send + 'static;
    /// A buyer's working state, borrowing its lane.
    type Buyer<'a>: Attempt + Send
    where
        Self: 'a;

    /// Open every buyer's lane before the barrier, so that the race starts
    /// with everyone connected.
    fn open(
        &self,
        config: &RaceConfig,
        control: &Control,
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Lane>>> + Send;

    /// The buyer that runs on `lane`; `seed` is the buyer's own.
    fn buyer<'a>(&'a self, lane: &'a mut Self::Lane, seed: u64) -> Self::Buyer<'a>;

    /// What runs beside the buyers from their release until the last one
    /// is done (then it is dropped), e.g. a nemesis. Nothing by default.
    fn during(&self, config: &RaceConfig) -> impl Future<Output = ()> + Send {
        let _ = config;
        async {}
    }

    /// The race makes no progress (see `RaceConfig::no_progress`): what the
    /// buyers are waiting on, as far as the target can tell, to go after
    /// "the buyers make no progress" (e.g. "; on the server: 48 buyers wait
    /// on a lock held outside the race by ..."). Nothing by default.
    fn stalled(&self) -> impl Future<Output = String> + Send {
        async { String::new() }
    }

    /// A buyer has finished: keep its lane for `race_with` to hand back, or
    /// let it go now (`None`).
    fn finished(&self, buyer: u32, lane: Self::Lane) -> Option<Self::Lane> {
        let _ = buyer;
        Some(lane)
    }
}

/// What one buyer does for one attempt.
pub trait Attempt {
    /// Wait until the next attempt can start (e.g. for a connection of a
    /// shared pool). Not part of the attempt: neither timed nor counted
    /// as in flight. Err: the race cannot go on.
    fn ready(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }

    /// Make one attempt: its report and its latency in microseconds (timed
    /// by the lane, so that waiting for a pooled connection is not counted),
    /// or why the race cannot go on.
    fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> impl Future<Output = Result<(AttemptReport, u64), String>> + Send;

    /// Before the barrier, with the buyer's first attempt: send whatever of
    /// it can go ahead of the release (an HTTP request but its final byte or
    /// frame), so that `attempt(first)` only has to complete it. Failures
    /// are the first attempt's to report; nothing here may end the race.
    fn prime(&mut self, first: &AttemptCtx) -> impl Future<Output = ()> + Send {
        let _ = first;
        async {}
    }

    /// When the buyer's first statement or request left racelab after the
    /// barrier (for an HTTP lane that primed, the write that completed its
    /// first request), if the lane knows it better than the engine (which
    /// takes the instant just before the buyer's first attempt starts,
    /// after `ready`). Asked once, after the buyer's last attempt; the
    /// release spread of `Contention` runs from the earliest of these to
    /// the latest.
    fn first_sent_at(&self) -> Option<Instant> {
        None
    }
}
