//! One schedule of a service's requests, for real. The requests are let in
//! one by one (each once the one before has parked its first statement at
//! the proxy or answered), then the scheduler grants one held batch at a
//! time and waits until the state has settled: every request that was
//! running has parked its next batch, waits on another request's lock
//! (`pg_isolation_test_session_is_blocked` of its backend, on a monitor
//! connection, as PostgreSQL's isolation tester asks), or has answered.
//! The service's own code between statements is given `--settle-ms`: a
//! request whose backend is idle and that neither sends nor answers in
//! that time makes the schedule stuck. A deadlock among waiting requests
//! is left to PostgreSQL's detector and awaited.
//!
//! The choices are made by the same `Driver`s as a script's schedules
//! (`scheduler`), from the same `Choice`s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgConnection;
use tokio::sync::{mpsc, oneshot};

use super::gate::{Event, Parked, ServiceGate};
use super::schedule::{buyers_where, ChoicePoint};
use super::scheduler::{BuyerView, Choice, Driver, End, Pending, STUCK_GRACE};
use crate::engine::Control;
use crate::outcome::AttemptReport;
use crate::strategy::TxEffect;

/// The first wait for a granted batch before asking the monitor.
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(10);
/// A statement that runs this long without waiting on a request stalls
/// the schedule.
const STALL: Duration = Duration::from_secs(30);
/// The most batches one schedule may grant.
pub const MAX_STEPS: usize = 2_000;

/// One granted batch.
#[derive(Debug, Clone)]
pub struct Granted {
    pub request: u32,
    pub at: Parked,
    pub preemption: bool,
    pub granted: Instant,
    /// The requests whose locks it waited on when first seen waiting.
    pub waited_for: Vec<u32>,
    /// The (0-based) step during which it completed, if it waited.
    pub completed_after: Option<usize>,
}

/// What one schedule did.
#[derive(Debug)]
pub struct Served {
    pub points: Vec<ChoicePoint>,
    /// What each request able to run was parked at, per choice point.
    pub parked: Vec<Vec<(u32, String)>>,
    pub steps: Vec<Granted>,
    pub reports: Vec<Option<AttemptReport>>,
    /// When each request was sent and answered.
    pub sent: Vec<Option<Instant>>,
    pub answered: Vec<Option<Instant>>,
    pub end: End,
    /// Deadlocks among the requests that PostgreSQL broke.
    pub deadlocks: u64,
}

impl Served {
    pub fn schedule(&self) -> Vec<u32> {
        self.steps.iter().map(|s| s.request).collect()
    }
}

enum State {
    /// Not let in yet.
    Waiting,
    /// In the service's code (sent, or its last batch answered).
    Running {
        since: Instant,
        conn: Option<u64>,
    },
    Parked(Parked, oneshot::Sender<()>),
    Blocked(Parked, Vec<u32>),
    Answered(AttemptReport),
}

/// The scheduler of one schedule.
pub struct Run<'a> {
    pub gate: &'a ServiceGate,
    pub rx: &'a mut mpsc::UnboundedReceiver<Event>,
    pub settle: Duration,
    /// The server's deadlock_timeout (how long a deadlock lasts).
    pub deadlock_timeout: Duration,
}

struct Sched {
    states: Vec<State>,
    inflight: Vec<Option<usize>>,
    steps: Vec<Granted>,
    points: Vec<ChoicePoint>,
    parked: Vec<Vec<(u32, String)>>,
    sent: Vec<Option<Instant>>,
    answered: Vec<Option<Instant>>,
    deadlocks: u64,
}

enum Settled {
    Yes,
    Stuck(String),
    Interrupted,
}

fn pending(p: &Parked) -> Pending {
    Pending {
        try_no: 1,
        line: p.ordinal,
        display: p.sql.clone(),
        sql: p.sql.clone(),
        tx: TxEffect::Other,
        rollback: false,
    }
}

impl Run<'_> {
    /// Run one schedule: `starts[i]` lets request `i + 1` go.
    pub async fn drive(
        &mut self,
        starts: Vec<oneshot::Sender<()>>,
        driver: &mut dyn Driver,
        monitor: &mut PgConnection,
        control: &Control,
    ) -> anyhow::Result<Served> {
        let k = starts.len();
        let mut s = Sched {
            states: (0..k).map(|_| State::Waiting).collect(),
            inflight: vec![None; k],
            steps: Vec::new(),
            points: Vec::new(),
            parked: Vec::new(),
            sent: vec![None; k],
            answered: vec![None; k],
            deadlocks: 0,
        };
        let end = self
            .schedule(&mut s, starts, driver, monitor, control)
            .await;
        self.gate.admitting(None);
        let end = end?;
        let reports = s
            .states
            .into_iter()
            .map(|st| match st {
                State::Answered(r) => Some(r),
                _ => None,
            })
            .collect();
        Ok(Served {
            points: s.points,
            parked: s.parked,
            steps: s.steps,
            reports,
            sent: s.sent,
            answered: s.answered,
            end,
            deadlocks: s.deadlocks,
        })
    }

    async fn schedule(
        &mut self,
        s: &mut Sched,
        starts: Vec<oneshot::Sender<()>>,
        driver: &mut dyn Driver,
        monitor: &mut PgConnection,
        control: &Control,
    ) -> anyhow::Result<End> {
        // Admission: one request at a time, in order.
        for (i, start) in starts.into_iter().enumerate() {
            let r = i as u32 + 1;
            self.gate.admitting(Some(r));
            s.states[i] = State::Running {
                since: Instant::now(),
                conn: None,
            };
            s.sent[i] = Some(Instant::now());
            let _ = start.send(());
            match self
                .settle(s, BTreeSet::from([r]), monitor, control)
                .await?
            {
                Settled::Yes => {}
                Settled::Stuck(why) => return Ok(End::Stuck(why)),
                Settled::Interrupted => return Ok(End::Interrupted),
            }
        }
        self.gate.admitting(None);
        let mut prev: Option<u32> = None;
        loop {
            if control.is_stopped() {
                return Ok(End::Interrupted);
            }
            if s.states.iter().all(|st| matches!(st, State::Answered(_))) {
                return Ok(End::Finished);
            }
            let enabled = s.enabled();
            if enabled.is_empty() {
                // Everyone left waits: a deadlock breaks within its
                // timeout, anything else is stuck.
                let waiting: BTreeSet<u32> = s.blocked().into_iter().collect();
                let grace = self.deadlock_timeout + STUCK_GRACE;
                match self.wait_for_any(s, &waiting, grace, control).await? {
                    true => {
                        let again: BTreeSet<u32> = s.blocked().into_iter().collect();
                        match self.settle(s, again, monitor, control).await? {
                            Settled::Yes => continue,
                            Settled::Stuck(why) => return Ok(End::Stuck(why)),
                            Settled::Interrupted => return Ok(End::Interrupted),
                        }
                    }
                    false => return Ok(End::Stuck(s.describe_stuck())),
                }
            }
            if s.steps.len() >= MAX_STEPS {
                return Ok(End::Stuck(format!(
                    "the schedule granted {MAX_STEPS} statements without every request answering"
                )));
            }
            let views = s.views();
            let index = s.steps.len();
            s.parked.push(
                enabled
                    .iter()
                    .map(|&r| match &s.states[r as usize - 1] {
                        State::Parked(p, _) => (r, p.sql.clone()),
                        _ => (r, String::new()),
                    })
                    .collect(),
            );
            let choice = Choice {
                index,
                enabled: &enabled,
                prev,
                buyers: &views,
            };
            let Some(chosen) = driver.choose(&choice)? else {
                return Ok(End::Stopped);
            };
            if !enabled.contains(&chosen) {
                anyhow::bail!(
                    "the scheduler was asked to run request {chosen}, who cannot run now"
                );
            }
            let point = ChoicePoint {
                enabled: enabled.clone(),
                chosen,
                prev,
            };
            let preemption = point.preempts(chosen);
            s.points.push(point);
            let i = chosen as usize - 1;
            let State::Parked(at, grant) = std::mem::replace(
                &mut s.states[i],
                State::Running {
                    since: Instant::now(),
                    conn: None,
                },
            ) else {
                unreachable!("enabled requests are parked");
            };
            s.states[i] = State::Running {
                since: Instant::now(),
                conn: Some(at.conn),
            };
            s.inflight[i] = Some(index);
            s.steps.push(Granted {
                request: chosen,
                at,
                preemption,
                granted: Instant::now(),
                waited_for: Vec::new(),
                completed_after: None,
            });
            self.gate.granted(chosen);
            let _ = grant.send(());
            prev = Some(chosen);
            let mut suspects: BTreeSet<u32> = s.blocked().into_iter().collect();
            suspects.insert(chosen);
            match self.settle(s, suspects, monitor, control).await? {
                Settled::Yes => {}
                Settled::Stuck(why) => return Ok(End::Stuck(why)),
                Settled::Interrupted => return Ok(End::Interrupted),
            }
            driver.stepped(index, &[], &s.views());
        }
    }

    /// Wait up to `grace` for a message from any request; true if one came.
    async fn wait_for_any(
        &mut self,
        s: &mut Sched,
        waiting: &BTreeSet<u32>,
        grace: Duration,
        control: &Control,
    ) -> anyhow::Result<bool> {
        let _ = waiting;
        let got = tokio::select! {
            biased;
            _ = control.stopped() => return Ok(false),
            m = tokio::time::timeout(grace, self.rx.recv()) => m,
        };
        match got {
            Ok(Some(ev)) => {
                let during = s.steps.len().checked_sub(1);
                s.handle(self.gate, ev, during);
                Ok(true)
            }
            Ok(None) => anyhow::bail!("the requests ended without answering"),
            Err(_) => Ok(false),
        }
    }

    /// Wait until every request of `running` has parked, answered, or
    /// waits on another request's lock (see the module docs).
    async fn settle(
        &mut self,
        s: &mut Sched,
        mut running: BTreeSet<u32>,
        monitor: &mut PgConnection,
        control: &Control,
    ) -> anyhow::Result<Settled> {
        let during = s.steps.len().checked_sub(1);
        let mut poll = FIRST_POLL;
        let mut last_progress = Instant::now();
        let mut breaking: Option<Vec<u32>> = None;
        loop {
            if running.is_empty() {
                return Ok(Settled::Yes);
            }
            let wait = match &breaking {
                Some(_) => self.deadlock_timeout + STALL,
                None => poll,
            };
            let got = tokio::select! {
                biased;
                _ = control.stopped() => return Ok(Settled::Interrupted),
                m = tokio::time::timeout(wait, self.rx.recv()) => m,
            };
            match got {
                Ok(Some(ev)) => {
                    let (request, failed_deadlock) = s.handle(self.gate, ev, during);
                    if breaking.as_ref().is_some_and(|c| c.contains(&request)) {
                        s.deadlocks += 1;
                    }
                    let _ = failed_deadlock;
                    running.remove(&request);
                    // What it did may have released locks: look again at
                    // every request that was waiting.
                    running.extend(s.blocked());
                    breaking = None;
                    poll = FIRST_POLL;
                    last_progress = Instant::now();
                    continue;
                }
                Ok(None) => anyhow::bail!("the requests ended without answering"),
                Err(_) => {}
            }
            if let Some(cycle) = &breaking {
                let who: Vec<String> = cycle.iter().map(u32::to_string).collect();
                return Ok(Settled::Stuck(format!(
                    "requests {} deadlocked and PostgreSQL did not break the deadlock within {:.0} s",
                    who.join(", "),
                    (self.deadlock_timeout + STALL).as_secs_f64()
                )));
            }
            let seen = self.observe(s, monitor, &running).await?;
            let mut all_waiting = true;
            for (r, look) in &seen {
                let i = *r as usize - 1;
                match look {
                    Look::Blocked(by) => {
                        let p = match std::mem::replace(&mut s.states[i], State::Waiting) {
                            State::Running { conn, since } => {
                                let k = s.inflight[i];
                                match k.map(|k| s.steps[k].at.clone()) {
                                    Some(p) => p,
                                    None => {
                                        s.states[i] = State::Running { conn, since };
                                        all_waiting = false;
                                        continue;
                                    }
                                }
                            }
                            State::Blocked(p, _) => p,
                            other => {
                                s.states[i] = other;
                                continue;
                            }
                        };
                        if let Some(k) = s.inflight[i] {
                            if s.steps[k].waited_for.is_empty() {
                                s.steps[k].waited_for = by.clone();
                            }
                        }
                        s.states[i] = State::Blocked(p, by.clone());
                    }
                    Look::Busy => {
                        all_waiting = false;
                        if last_progress.elapsed() >= STALL {
                            return Ok(Settled::Stuck(format!(
                                "request {r}'s statement ran {} s without finishing or waiting on another request (a lock held outside the schedule, or a very slow statement)",
                                STALL.as_secs()
                            )));
                        }
                    }
                    Look::InService(since) => {
                        all_waiting = false;
                        if since.elapsed() >= self.settle && last_progress.elapsed() >= self.settle
                        {
                            let after = match s.inflight[i] {
                                Some(k) => format!(
                                    "after step {} ({})",
                                    k + 1,
                                    crate::http::text::truncate(&s.steps[k].at.sql)
                                ),
                                None => "after it was sent".to_string(),
                            };
                            return Ok(Settled::Stuck(format!(
                                "request {r} neither sent its next statement nor answered within {} ms {after} (--settle-ms; a service that works between statements for longer needs more)",
                                self.settle.as_millis()
                            )));
                        }
                    }
                }
            }
            if all_waiting {
                match s.cycle() {
                    None => return Ok(Settled::Yes),
                    Some(c) => {
                        // PostgreSQL breaks it once a waiter's
                        // deadlock_timeout has passed; nothing else may run.
                        breaking = Some(c);
                        last_progress = Instant::now();
                    }
                }
            } else {
                poll = (poll * 2).min(MAX_POLL);
            }
        }
    }

    /// Where each running request is: its backend waiting on a request's
    /// lock, running a statement, or the request in the service's code.
    async fn observe(
        &self,
        s: &Sched,
        monitor: &mut PgConnection,
        running: &BTreeSet<u32>,
    ) -> anyhow::Result<Vec<(u32, Look)>> {
        let backends = self.gate.backends();
        let all: Vec<i32> = backends.iter().map(|b| b.0).collect();
        let mut asked: Vec<(u32, i32, Instant)> = Vec::new();
        let mut out = Vec::new();
        for &r in running {
            let i = r as usize - 1;
            match &s.states[i] {
                State::Running {
                    conn: Some(c),
                    since,
                } => match self.gate.pid(*c) {
                    Some(pid) => asked.push((r, pid, *since)),
                    None => out.push((r, Look::InService(*since))),
                },
                State::Running { conn: None, since } => out.push((r, Look::InService(*since))),
                State::Blocked(p, _) => match self.gate.pid(p.conn) {
                    Some(pid) => asked.push((r, pid, Instant::now())),
                    None => out.push((r, Look::Busy)),
                },
                _ => {}
            }
        }
        if asked.is_empty() {
            return Ok(out);
        }
        let pids: Vec<i32> = asked.iter().map(|a| a.1).collect();
        let rows: Vec<(bool, Vec<i32>, Option<String>)> = sqlx::query_as(
            "SELECT pg_isolation_test_session_is_blocked(t.p, $2::int4[]), \
                    ARRAY(SELECT b FROM unnest(pg_blocking_pids(t.p)) AS b \
                          WHERE b = ANY($2::int4[]) ORDER BY b), \
                    (SELECT a.state FROM pg_stat_activity a WHERE a.pid = t.p) \
             FROM unnest($1::int4[]) WITH ORDINALITY AS t(p, n) ORDER BY t.n",
        )
        .bind(&pids)
        .bind(&all)
        .fetch_all(&mut *monitor)
        .await
        .context("asking the server which requests wait on a lock")?;
        for ((r, _, since), (blocked, by, state)) in asked.into_iter().zip(rows) {
            let look = if blocked {
                let mut who: Vec<u32> = by
                    .iter()
                    .filter_map(|p| backends.iter().find(|b| b.0 == *p).map(|b| b.1))
                    .filter(|&w| w != r)
                    .collect();
                who.sort_unstable();
                who.dedup();
                Look::Blocked(who)
            } else if state.as_deref() == Some("active") {
                Look::Busy
            } else {
                Look::InService(since)
            };
            out.push((r, look));
        }
        Ok(out)
    }
}

enum Look {
    Blocked(Vec<u32>),
    Busy,
    InService(Instant),
}

impl Sched {
    fn views(&self) -> Vec<BuyerView> {
        self.states
            .iter()
            .enumerate()
            .map(|(i, st)| match st {
                State::Parked(p, _) => BuyerView::Next(pending(p)),
                State::Blocked(p, by) => BuyerView::Blocked(pending(p), by.clone()),
                State::Answered(r) => BuyerView::Finished(r.outcome),
                State::Running { .. } | State::Waiting => BuyerView::Blocked(
                    self.inflight[i]
                        .map(|k| pending(&self.steps[k].at))
                        .unwrap_or(Pending {
                            try_no: 1,
                            line: 0,
                            display: String::new(),
                            sql: String::new(),
                            tx: TxEffect::Other,
                            rollback: false,
                        }),
                    Vec::new(),
                ),
            })
            .collect()
    }

    fn enabled(&self) -> Vec<u32> {
        buyers_where(&self.states, |s| matches!(s, State::Parked(..)))
    }

    fn blocked(&self) -> Vec<u32> {
        buyers_where(&self.states, |s| matches!(s, State::Blocked(..)))
    }

    /// Note an event; returns the request it was about.
    fn handle(&mut self, gate: &ServiceGate, ev: Event, during: Option<usize>) -> (u32, bool) {
        let request = match ev {
            Event::Parked { request, at, grant } => {
                self.states[request as usize - 1] = State::Parked(at, grant);
                request
            }
            Event::Answered { request, report } => {
                gate.answered(request);
                self.answered[request as usize - 1] = Some(Instant::now());
                self.states[request as usize - 1] = State::Answered(report);
                request
            }
        };
        if let Some(k) = self.inflight[request as usize - 1].take() {
            let step = &mut self.steps[k];
            if !step.waited_for.is_empty() {
                step.completed_after = Some(during.unwrap_or(k));
            }
        }
        (request, false)
    }

    fn describe_stuck(&self) -> String {
        let waits: Vec<String> = self
            .states
            .iter()
            .enumerate()
            .filter_map(|(i, st)| match st {
                State::Blocked(p, by) => {
                    let whom: Vec<String> = by.iter().map(|b| format!("request {b}")).collect();
                    let whom = if whom.is_empty() {
                        "a lock".to_string()
                    } else {
                        whom.join(" and ")
                    };
                    Some(format!(
                        "request {} waits at `{}` for {whom}",
                        i + 1,
                        crate::http::text::truncate(&p.sql)
                    ))
                }
                _ => None,
            })
            .collect();
        format!(
            "no request can go on: {}, and nothing will release it",
            waits.join("; ")
        )
    }

    /// A cycle among the waiting requests (its members, ascending).
    fn cycle(&self) -> Option<Vec<u32>> {
        let edges = |b: u32| -> &[u32] {
            match &self.states[b as usize - 1] {
                State::Blocked(_, by) => by,
                _ => &[],
            }
        };
        for start in self.blocked() {
            let mut path = vec![start];
            let mut at = start;
            // Each waits on few; follow the first edge until a repeat.
            while let Some(&n) = edges(at).first() {
                if let Some(pos) = path.iter().position(|&p| p == n) {
                    let mut c = path[pos..].to_vec();
                    c.sort_unstable();
                    return Some(c);
                }
                path.push(n);
                at = n;
            }
        }
        None
    }
}
