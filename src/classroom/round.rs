//! One round's state: its phase (countdown, open, closing, closed), its
//! buyers in the order they were admitted, and the books its purchases
//! keep as they finish — the engine's own `Tally`, contention `Tracker`
//! and `AttemptTrace`s, so that closing a round assembles a result exactly
//! as a race does. Also the cohorts: purchases released together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::books::{Books, Buyer, Done};
use super::finish::Closed;
use crate::engine::contention::{BuyerCount, Tracker};
use crate::engine::AttemptTrace;
use crate::lab::SqlLanes;
use crate::outcome::{AttemptReport, Outcome};
use crate::strategy::Strategy;

/// The one product a classroom sells.
pub const PRODUCT: i64 = 1;

/// Where a round is. `Closing` shows as `open` (with `closing: true`): the
/// teacher has closed it, and it waits for its last purchases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Countdown,
    Open,
    Closing,
    Closed,
}

impl Phase {
    pub fn word(self) -> &'static str {
        match self {
            Phase::Countdown => "countdown",
            Phase::Open | Phase::Closing => "open",
            Phase::Closed => "closed",
        }
    }

    /// Whether purchases are still admitted.
    pub fn admits(self) -> bool {
        matches!(self, Phase::Countdown | Phase::Open)
    }
}

/// Purchases released together: every purchase admitted during the
/// countdown (and the round's bots), or bots added while a round is open.
/// The release waits for the cohort's bots to be connected, so that they
/// start as the engine's buyers do, together.
pub struct Cohort {
    release: watch::Sender<bool>,
    /// Bots of the cohort still connecting.
    connecting: AtomicU32,
    ready: Notify,
}

impl Cohort {
    /// A cohort waiting for its release, with `bots` bots to connect.
    pub fn held(bots: u32) -> Arc<Cohort> {
        Arc::new(Cohort {
            release: watch::channel(false).0,
            connecting: AtomicU32::new(bots),
            ready: Notify::new(),
        })
    }

    /// A cohort that is already released (a purchase after the countdown).
    pub fn now() -> Arc<Cohort> {
        let c = Cohort::held(0);
        c.go();
        c
    }

    /// `n` more bots join the cohort before its release.
    pub fn expect_bots(&self, n: u32) {
        self.connecting.fetch_add(n, Ordering::SeqCst);
    }

    /// One of the cohort's bots has its connection (or gave up on it).
    pub fn bot_connected(&self) {
        if self.connecting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.ready.notify_waiters();
        }
    }

    /// Wait until every bot of the cohort is connected, at most `limit`.
    pub async fn bots_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.connecting.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Release every purchase of the cohort.
    pub fn go(&self) {
        self.release.send_replace(true);
    }

    pub fn released(&self) -> bool {
        *self.release.borrow()
    }

    /// Wait for the release.
    pub async fn wait(&self) {
        let mut rx = self.release.subscribe();
        // The sender lives as long as the cohort, which the caller holds.
        let _ = rx.wait_for(|go| *go).await;
    }
}

/// What a round's purchases share without the room's lock.
pub struct RoundCore {
    pub number: u32,
    pub strategy: Arc<Strategy>,
    pub lanes: Arc<SqlLanes>,
    pub tracker: Tracker,
    /// The countdown's cohort.
    pub first: Arc<Cohort>,
    /// Signalled whenever a purchase of the round ends.
    pub idle: Notify,
    pub think_ms: u64,
    pub max_tries: u32,
    pub seed: u64,
}

/// The stock and the units sold, read from the lab while the round runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    pub stock_left: Option<i64>,
    pub units_sold: i64,
}

/// A student's id: the random value of their cookie.
pub type StudentId = String;

pub struct Round {
    pub core: Arc<RoundCore>,
    pub stock: i64,
    pub countdown: Duration,
    /// RFC 3339, when the round was started.
    pub started_at: String,
    pub ends_at: Instant,
    pub phase: Phase,
    /// When the countdown's cohort was released.
    pub released_at: Option<Instant>,
    pub cpu_at_release: Duration,
    /// Buyer `n` is `buyers[n - 1]`.
    pub buyers: Vec<Buyer>,
    pub bought: HashMap<StudentId, u32>,
    pub in_flight: u32,
    pub books: Books,
    /// The books were taken to close the round: later purchases are not
    /// booked.
    pub sealed: bool,
    pub live: Live,
    pub closed: Option<Closed>,
}

/// One finished purchase, as `Round::record` takes it.
pub struct Finished {
    pub buyer: u32,
    pub report: AttemptReport,
    pub latency_us: u64,
    pub events: Vec<crate::strategy::TraceEvent>,
    pub overlapped: bool,
    pub first_sent: Option<Instant>,
    pub ended: Instant,
}

impl Round {
    pub fn number(&self) -> u32 {
        self.core.number
    }

    /// Admit one more buyer; returns its number.
    pub fn admit(&mut self, name: String, bot: bool) -> u32 {
        let n = self.buyers.len() as u32 + 1;
        self.buyers.push(Buyer {
            name,
            bot,
            attempt: i64::from(n),
            done: None,
        });
        self.in_flight += 1;
        n
    }

    /// Release the countdown's cohort now.
    pub fn release(&mut self) {
        if self.phase == Phase::Countdown {
            self.phase = Phase::Open;
        }
        if self.released_at.is_none() {
            self.released_at = Some(Instant::now());
            self.cpu_at_release = crate::engine::process_cpu();
        }
        self.core.first.go();
    }

    /// Book a finished purchase: the tally, the contention, the trace.
    /// Returns the attempt's row for the live feed, or None when the round
    /// was closed without it.
    pub fn record(&mut self, f: Finished) -> Option<Value> {
        if self.sealed || self.phase == Phase::Closed {
            return None;
        }
        let i = f.buyer as usize - 1;
        let attempt = self.buyers[i].attempt;
        self.books.tally.record(&f.report, attempt, f.latency_us);
        self.books.merged.add(BuyerCount {
            overlapped: u64::from(f.overlapped),
            first_sent: f.first_sent,
        });
        self.books.traces.push(AttemptTrace {
            buyer: f.buyer,
            attempt,
            product: PRODUCT,
            outcome: f.report.outcome,
            events: f.events,
        });
        self.books.last_end = Some(self.books.last_end.map_or(f.ended, |t| t.max(f.ended)));
        let at_ms = self.released_at.map_or(0, |r| {
            f.ended.saturating_duration_since(r).as_millis() as u64
        });
        self.buyers[i].done = Some(Done {
            outcome: f.report.outcome,
            latency_us: f.latency_us,
            tries: f.report.tries,
            message: f.report.message,
            at_ms,
        });
        self.in_flight = self.in_flight.saturating_sub(1);
        self.core.idle.notify_waiters();
        Some(self.attempt_row(f.buyer))
    }

    /// Successful purchases so far (what the buyers were told).
    pub fn succeeded(&self) -> u64 {
        match &self.closed {
            Some(c) => c.result.outcomes.succeeded,
            None => self.books.tally.count(Outcome::Succeeded),
        }
    }

    /// Buyer `n`'s line in the live feed.
    pub fn attempt_row(&self, n: u32) -> Value {
        let b = &self.buyers[n as usize - 1];
        let d = b.done.as_ref();
        json!({
            "round": self.number(),
            "buyer": n,
            "who": b.name,
            "bot": b.bot,
            "outcome": d.map(|d| d.outcome.as_str()),
            "latency_us": d.map(|d| d.latency_us),
            "tries": d.map(|d| d.tries),
            "message": d.and_then(|d| d.message.clone()),
            "at_ms": d.map(|d| d.at_ms),
        })
    }

    /// The units sold as the projector shows them: the audit's once
    /// closed, else the lab's live reading.
    pub fn units_sold(&self) -> i64 {
        match self.closed.as_ref().and_then(|c| c.result.audit.as_ref()) {
            Some(a) => a.units_sold,
            None => self.live.units_sold,
        }
    }

    /// The round as `/api/state` and the `state` event show it.
    pub fn json(&self) -> Value {
        let units_sold = self.units_sold();
        let remaining_ms = match self.phase {
            Phase::Countdown => self
                .ends_at
                .saturating_duration_since(Instant::now())
                .as_millis() as u64,
            _ => 0,
        };
        // Once closed, the books are the result's.
        let outcomes = self.closed.as_ref().map(|c| &c.result.outcomes);
        let count = |o: Outcome| match outcomes {
            Some(r) => match o {
                Outcome::Succeeded => r.succeeded,
                Outcome::SoldOut => r.sold_out,
                Outcome::Rejected => r.rejected,
                Outcome::GaveUp => r.gave_up,
                Outcome::Error => r.errors,
                Outcome::Unknown => r.unknown,
            },
            None => self.books.tally.count(o),
        };
        let done: Vec<Value> = self
            .buyers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.done.is_some())
            .map(|(i, _)| self.attempt_row(i as u32 + 1))
            .collect();
        let s = &self.core.strategy;
        let mut v = json!({
            "number": self.number(),
            "strategy": s.name,
            "script": s.source,
            "description": s.description,
            "stock": self.stock,
            "think_ms": self.core.think_ms,
            "countdown_s": self.countdown.as_secs_f64(),
            "state": self.phase.word(),
            "closing": self.phase == Phase::Closing,
            "remaining_ms": remaining_ms,
            "started_at": self.started_at,
            "units_sold": units_sold,
            "stock_left": match self.closed.as_ref().and_then(|c| c.result.audit.as_ref()) {
                Some(a) => Some(a.final_stock),
                None => self.live.stock_left,
            },
            "oversold": (units_sold - self.stock).max(0),
            "buyers": self.buyers.len(),
            "students": self.buyers.iter().filter(|b| !b.bot).count(),
            "bots": self.buyers.iter().filter(|b| b.bot).count(),
            "in_flight": self.in_flight,
            "attempts": outcomes.map_or(self.books.tally.attempts(), |r| r.attempts),
            "succeeded": count(Outcome::Succeeded),
            "sold_out": count(Outcome::SoldOut),
            "rejected": count(Outcome::Rejected),
            "gave_up": count(Outcome::GaveUp),
            "errors": count(Outcome::Error) + count(Outcome::Unknown),
            "attempts_log": done,
            "verdict": Value::Null,
        });
        if let Some(c) = &self.closed {
            c.fill(&mut v);
        }
        v
    }
}
