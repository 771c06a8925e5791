//! One schedule, for real. Each buyer runs `Session::attempt` (the same
//! interpreter as `run`) in its own task on its own connection; a gate at
//! every SQL statement boundary parks it until the scheduler grants its
//! next statement. One statement is granted at a time.
//!
//! After a grant the scheduler waits until the state is settled: every
//! buyer whose statement was in flight (the granted one, and any that was
//! waiting on a lock the statement may have released) has either reached
//! its next boundary or finished, or is waiting on another buyer's lock —
//! polled on a separate monitor connection with
//! `pg_isolation_test_session_is_blocked`, as PostgreSQL's isolation tester
//! does. Only then are choices offered again, so that the set of buyers
//! able to run depends on the schedule, not on timing. A deadlock among
//! waiting buyers is left to PostgreSQL's detector and awaited before going
//! on; a schedule in which nobody can run and no deadlock will be broken is
//! stuck, reported after a grace period, never waited on for ever.
//!
//! Which buyer PostgreSQL aborts in a deadlock is made a function of the
//! schedule, so replays agree. A waiting backend checks for a deadlock once,
//! when its `deadlock_timeout` runs out, and the first to find the cycle is
//! the victim. So buyer `b` runs with its own timeout (`deadlock_timeout_of`,
//! shorter for lower numbers), and before a statement is granted the
//! scheduler lets the timer of every buyer already waiting run out (each
//! checks and finds no cycle): a cycle the grant closes is then found by the
//! buyers that started waiting during that step, the one with the shortest
//! timeout first.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, PgConnection};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::monitor::Monitor;
use super::schedule::{buyers_where, ChoicePoint};
use super::spec::inline;
use crate::engine::{AttemptTrace, Control};
use crate::outcome::{AttemptReport, Outcome};
use crate::strategy::{AttemptCtx, Boundary, Program, StepGate, TraceEvent, TraceKind, TxEffect};

/// Buyer 1's deadlock_timeout while exploring; buyer `b`'s is `b` times
/// it (see the module docs). PostgreSQL breaks a deadlock in the first
/// waiter whose timer fires after the cycle formed; with 1 s (the default)
/// every deadlocked schedule would cost a second. The steps between the
/// buyers' timeouts must stay above the time between two buyers starting
/// to wait within one step (well under a millisecond to a few here).
pub const DEADLOCK_TIMEOUT_MS: u64 = 5;
/// How long after a timer runs out a backend is given to have run its
/// check, before the scheduler goes on.
const TIMER_MARGIN: Duration = Duration::from_millis(15);

/// Buyer `buyer`'s deadlock_timeout (1-based).
pub fn deadlock_timeout_of(buyer: u32) -> Duration {
    Duration::from_millis(DEADLOCK_TIMEOUT_MS * u64::from(buyer.max(1)))
}
/// The SQLSTATE of a deadlock PostgreSQL broke.
const DEADLOCK: &str = "40P01";
/// The first wait for a granted statement before asking the monitor.
const FIRST_POLL: Duration = Duration::from_micros(500);
const MAX_POLL: Duration = Duration::from_millis(10);
/// A statement that neither finishes nor waits on a buyer for this long
/// stalls the schedule.
const STALL: Duration = Duration::from_secs(30);
/// When every buyer left waits on another and no deadlock will be broken,
/// how long to wait for a timer (a script's lock_timeout) before calling
/// the schedule stuck.
pub const STUCK_GRACE: Duration = Duration::from_secs(2);
/// The most statements one schedule may run.
pub const MAX_STEPS: usize = 2_000;

/// A statement a buyer is parked at.
#[derive(Debug, Clone)]
pub struct Pending {
    pub try_no: u32,
    pub line: usize,
    /// The statement as written (first line), or ROLLBACK.
    pub display: String,
    /// The SQL as sent, values inlined.
    pub sql: String,
    pub tx: TxEffect,
    pub rollback: bool,
}

impl Pending {
    fn starting() -> Pending {
        Pending {
            try_no: 1,
            line: 0,
            display: String::new(),
            sql: String::new(),
            tx: TxEffect::Other,
            rollback: false,
        }
    }
}

/// One granted statement of a schedule.
#[derive(Debug, Clone)]
pub struct Step {
    pub buyer: u32,
    pub at: Pending,
    pub preemption: bool,
    /// When the scheduler let it start.
    pub granted: Instant,
    /// The buyers whose locks it waited on when first seen waiting.
    pub waited_for: Vec<u32>,
    /// The (0-based) step during which it completed, if it waited.
    pub completed_after: Option<usize>,
    /// Its event in the attempt's trace (result, rows, values, error).
    pub event: Option<TraceEvent>,
}

/// Where a buyer is, as a driver sees it.
#[derive(Debug, Clone)]
pub enum BuyerView {
    /// Parked before this statement.
    Next(Pending),
    /// Its statement is waiting on these buyers' locks.
    Blocked(Pending, Vec<u32>),
    Finished(Outcome),
}

/// A choice point, for the driver.
#[derive(Debug)]
pub struct Choice<'a> {
    /// 0-based index of the step to choose.
    pub index: usize,
    /// Buyers able to run, ascending; never empty.
    pub enabled: &'a [u32],
    pub prev: Option<u32>,
    /// Buyer `i + 1` is `buyers[i]`.
    pub buyers: &'a [BuyerView],
}

/// Decides the schedule: DFS replay, `--schedule`, or a person at `--step`.
pub trait Driver {
    /// The buyer to run next, or `None` to stop the schedule here.
    fn choose(&mut self, at: &Choice<'_>) -> anyhow::Result<Option<u32>>;
    /// The state has settled after step `index`.
    fn stepped(&mut self, index: usize, steps: &[Step], buyers: &[BuyerView]) {
        let _ = (index, steps, buyers);
    }
}

/// How a schedule ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every buyer finished its attempt.
    Finished,
    /// It could not go on (the reason, in words).
    Stuck(String),
    /// It ran `MAX_STEPS` statements without every buyer finishing: a
    /// buyer retries without end (`--max-tries 0` with `\\retry`, or a
    /// conflict every try). Every longer schedule would too, so the
    /// exploration ends here.
    Endless(String),
    /// The driver stopped it.
    Stopped,
    /// A signal stopped the run.
    Interrupted,
}

/// What one schedule did.
#[derive(Debug)]
pub struct Execution {
    pub points: Vec<ChoicePoint>,
    pub steps: Vec<Step>,
    /// Buyer `i + 1`'s report, when it finished.
    pub reports: Vec<Option<AttemptReport>>,
    pub traces: Vec<AttemptTrace>,
    pub released_at: Instant,
    pub end: End,
    /// The buyers whose statement PostgreSQL failed to break a deadlock,
    /// in order.
    pub deadlock_victims: Vec<u32>,
    /// Set when PostgreSQL broke a deadlock in another buyer than the one
    /// that had waited longest (timing on a loaded machine, see
    /// `Run::check_victim`): replays of this schedule would differ.
    pub unexpected_victim: Option<String>,
}

impl Execution {
    /// Which buyer took each step.
    pub fn schedule(&self) -> Vec<u32> {
        self.steps.iter().map(|s| s.buyer).collect()
    }
}

/// What a schedule is run with.
#[derive(Debug, Clone)]
pub struct Config {
    pub buyers: u32,
    pub product: i64,
    pub quantity: i64,
    pub max_tries: u32,
    pub seed: u64,
}

enum Msg {
    Ready {
        buyer: u32,
        next: Pending,
        last: Option<TraceEvent>,
        grant: oneshot::Sender<()>,
    },
    Done {
        buyer: u32,
        report: AttemptReport,
        events: Vec<TraceEvent>,
    },
    /// The buyer could not start its attempt.
    Broken { buyer: u32, error: String },
}

impl Msg {
    fn buyer(&self) -> u32 {
        match self {
            Msg::Ready { buyer, .. } | Msg::Done { buyer, .. } | Msg::Broken { buyer, .. } => {
                *buyer
            }
        }
    }
}

/// The gate each buyer's session holds.
struct Gate {
    buyer: u32,
    tx: mpsc::UnboundedSender<Msg>,
}

fn last_statement(trace: Option<&[TraceEvent]>) -> Option<TraceEvent> {
    trace?
        .iter()
        .rev()
        .find(|e| matches!(e.kind, TraceKind::Sql | TraceKind::Rollback))
        .cloned()
}

impl StepGate for Gate {
    fn wait<'a>(&'a mut self, next: Boundary<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let (grant, granted) = oneshot::channel();
        let msg = Msg::Ready {
            buyer: self.buyer,
            next: Pending {
                try_no: next.try_no,
                line: next.line,
                display: next.display.to_string(),
                sql: inline(next.sql, next.placeholders, &next.params),
                tx: next.tx,
                rollback: next.rollback,
            },
            last: last_statement(next.trace),
            grant,
        };
        let sent = self.tx.send(msg).is_ok();
        Box::pin(async move {
            // No scheduler, or one that gave up on this schedule: stay
            // parked until the task is aborted, never run unscheduled.
            if !sent || granted.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

enum State {
    Starting,
    Ready(Pending, oneshot::Sender<()>),
    Running(Pending),
    Blocked(Pending, Vec<u32>),
    Finished(AttemptReport),
}

/// The buyers' connections, kept open from one schedule to the next.
struct Lane {
    conn: PgConnection,
    pid: i32,
}

/// Runs schedules of one strategy on one lab.
pub struct Scheduler {
    program: Arc<Program>,
    connect: PgConnectOptions,
    connect_timeout: Duration,
    config: Config,
    lanes: Vec<Option<Lane>>,
    /// The deadlock_timeout buyer 1's session runs with.
    pub deadlock_timeout: Duration,
    /// Whether each buyer runs with its own (`deadlock_timeout_of`), so
    /// that which one PostgreSQL aborts in a deadlock is known.
    pub staggered: bool,
}

impl Scheduler {
    /// `connect`: the lab's connection options. The buyers get a short
    /// deadlock_timeout where the server allows it (a superuser setting);
    /// elsewhere the server's own applies.
    pub async fn new(
        program: Arc<Program>,
        connect: PgConnectOptions,
        connect_timeout: Duration,
        config: Config,
    ) -> anyhow::Result<Scheduler> {
        let mut s = Scheduler {
            program,
            connect,
            connect_timeout,
            lanes: (0..config.buyers).map(|_| None).collect(),
            config,
            deadlock_timeout: deadlock_timeout_of(1),
            staggered: true,
        };
        match s.open_lane(1).await {
            Ok(lane) => s.lanes[0] = Some(lane),
            Err(e) if is_permission_denied(&e) => {
                s.staggered = false;
                let mut lane = s.open_lane(1).await?;
                let ms: i64 = sqlx::query_scalar(
                    "SELECT setting::int8 FROM pg_settings WHERE name = 'deadlock_timeout'",
                )
                .fetch_one(&mut lane.conn)
                .await?;
                s.deadlock_timeout = Duration::from_millis(ms.max(1) as u64);
                s.lanes[0] = Some(lane);
            }
            Err(e) => return Err(e),
        }
        Ok(s)
    }

    /// Buyer `buyer`'s connection (1-based), with its deadlock_timeout when
    /// the server lets racelab set it (a superuser setting).
    async fn open_lane(&self, buyer: u32) -> anyhow::Result<Lane> {
        let options = if self.staggered {
            self.connect.clone().options([(
                "deadlock_timeout",
                format!("{}ms", deadlock_timeout_of(buyer).as_millis()),
            )])
        } else {
            self.connect.clone()
        };
        let mut conn = tokio::time::timeout(self.connect_timeout, options.connect())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "could not open a buyer's connection within {:.1}s (--connect-timeout)",
                    self.connect_timeout.as_secs_f64()
                )
            })?
            .map_err(anyhow::Error::new)
            .context("could not open a buyer's connection")?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        Ok(Lane { conn, pid })
    }

    /// Make sure every buyer has a connection. Returns which were open
    /// already (and so carry a session from an earlier schedule).
    async fn ready_lanes(&mut self) -> anyhow::Result<Vec<bool>> {
        let mut reused = Vec::with_capacity(self.lanes.len());
        for i in 0..self.lanes.len() {
            reused.push(self.lanes[i].is_some());
            if self.lanes[i].is_none() {
                self.lanes[i] = Some(self.open_lane(i as u32 + 1).await?);
            }
        }
        Ok(reused)
    }

    /// Close the buyers' connections.
    pub async fn close(&mut self) {
        for lane in self.lanes.iter_mut().filter_map(Option::take) {
            let _ = lane.conn.close().await;
        }
    }

    /// Run one schedule, as `driver` chooses it, from the lab as it is now.
    /// `monitor` is a separate connection to the lab.
    pub async fn execute(
        &mut self,
        driver: &mut dyn Driver,
        monitor: &mut PgConnection,
        control: &Control,
    ) -> anyhow::Result<Execution> {
        let reused = self.ready_lanes().await?;
        let pids: Vec<i32> = self
            .lanes
            .iter()
            .map(|l| l.as_ref().map_or(0, |l| l.pid))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let released_at = Instant::now();
        let mut handles: Vec<JoinHandle<PgConnection>> = Vec::new();
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let buyer = i as u32 + 1;
            let mut conn = lane.take().expect("opened above").conn;
            let program = self.program.clone();
            let gate = Gate {
                buyer,
                tx: tx.clone(),
            };
            let done = tx.clone();
            let ctx = AttemptCtx {
                product: self.config.product,
                qty: self.config.quantity,
                buyer: i64::from(buyer),
                attempt: i64::from(buyer),
                think_ms: 0,
                max_tries: self.config.max_tries,
            };
            let seed = self.config.seed.wrapping_add(u64::from(buyer));
            let reset = reused[i];
            handles.push(tokio::task::spawn_local(async move {
                // No session state left from an earlier schedule (settings,
                // session advisory locks, temp tables); statements stay
                // prepared. The buyers do this at once, each on its own.
                if reset {
                    let r = conn
                        .execute(sqlx::raw_sql(
                            "RESET ALL; SELECT pg_advisory_unlock_all(); DISCARD TEMP",
                        ))
                        .await;
                    if let Err(e) = r {
                        let _ = done.send(Msg::Broken {
                            buyer,
                            error: format!("resetting buyer {buyer}'s session: {e}"),
                        });
                        return conn;
                    }
                }
                let mut events = Vec::new();
                let report = {
                    let mut session = program.session(seed).with_gate(Box::new(gate));
                    session.attempt(&mut conn, &ctx, Some(&mut events)).await
                };
                let _ = done.send(Msg::Done {
                    buyer,
                    report,
                    events,
                });
                conn
            }));
        }
        drop(tx);
        let mut run = Run {
            rx,
            states: (0..self.config.buyers).map(|_| State::Starting).collect(),
            inflight: vec![None; self.config.buyers as usize],
            steps: Vec::new(),
            points: Vec::new(),
            events: vec![Vec::new(); self.config.buyers as usize],
            pids: pids.clone(),
            timeouts: (1..=self.config.buyers)
                .map(|b| {
                    if self.staggered {
                        deadlock_timeout_of(b)
                    } else {
                        self.deadlock_timeout
                    }
                })
                .collect(),
            staggered: self.staggered,
            wait_since: vec![None; self.config.buyers as usize],
            fresh: Vec::new(),
            granted_at: Instant::now(),
            program: self.program.clone(),
            victims: Vec::new(),
            unexpected_victim: None,
        };
        let end = run.drive(driver, monitor, control).await;
        let end = match end {
            Ok(end) => end,
            Err(e) => {
                self.abandon(handles, &pids, monitor).await;
                return Err(e);
            }
        };
        if end == End::Finished {
            for (i, h) in handles.into_iter().enumerate() {
                let conn = h.await.context("a buyer task failed")?;
                self.lanes[i] = Some(Lane { conn, pid: pids[i] });
            }
        } else {
            self.abandon(handles, &pids, monitor).await;
        }
        let mut reports = Vec::with_capacity(run.states.len());
        let mut traces = Vec::new();
        for (i, st) in run.states.into_iter().enumerate() {
            let buyer = i as u32 + 1;
            match st {
                State::Finished(r) => {
                    traces.push(AttemptTrace {
                        buyer,
                        attempt: i64::from(buyer),
                        product: self.config.product,
                        outcome: r.outcome,
                        events: std::mem::take(&mut run.events[i]),
                    });
                    reports.push(Some(r));
                }
                _ => reports.push(None),
            }
        }
        Ok(Execution {
            points: run.points,
            steps: run.steps,
            reports,
            traces,
            released_at,
            end,
            deadlock_victims: run.victims,
            unexpected_victim: run.unexpected_victim,
        })
    }

    /// Give up on a schedule: end the buyers' backends (their transactions
    /// roll back), stop their tasks, and wait until the server has let the
    /// backends go, so that the next reset does not wait on their locks.
    async fn abandon(
        &mut self,
        handles: Vec<JoinHandle<PgConnection>>,
        pids: &[i32],
        monitor: &mut PgConnection,
    ) {
        let _ = sqlx::query("SELECT pg_terminate_backend(p) FROM unnest($1::int4[]) AS t(p)")
            .bind(pids)
            .execute(&mut *monitor)
            .await;
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int4[])",
            )
            .bind(pids)
            .fetch_one(&mut *monitor)
            .await
            .unwrap_or(0);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for lane in &mut self.lanes {
            *lane = None;
        }
    }
}

fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.code())
            .is_some_and(|code| code == "42501")
    })
}

/// The state of one schedule while it runs.
struct Run {
    rx: mpsc::UnboundedReceiver<Msg>,
    states: Vec<State>,
    /// The step each buyer's in-flight statement is, if any.
    inflight: Vec<Option<usize>>,
    steps: Vec<Step>,
    points: Vec<ChoicePoint>,
    events: Vec<Vec<TraceEvent>>,
    pids: Vec<i32>,
    /// Each buyer's deadlock_timeout.
    timeouts: Vec<Duration>,
    staggered: bool,
    /// When each waiting buyer's current wait began, as far as the
    /// scheduler can tell (its deadlock timer runs from then).
    wait_since: Vec<Option<Instant>>,
    /// The members of the last deadlock found whose timers had yet to run
    /// out when it was found: the candidates PostgreSQL aborts.
    fresh: Vec<u32>,
    /// When the last statement was granted.
    granted_at: Instant,
    program: Arc<Program>,
    victims: Vec<u32>,
    unexpected_victim: Option<String>,
}

enum Settled {
    Yes,
    Stuck(String),
    Interrupted,
}

impl Run {
    fn views(&self) -> Vec<BuyerView> {
        self.states
            .iter()
            .map(|s| match s {
                State::Ready(p, _) => BuyerView::Next(p.clone()),
                // Between settles nothing runs: a statement in flight is
                // one that waits.
                State::Running(p) => BuyerView::Blocked(p.clone(), Vec::new()),
                State::Blocked(p, by) => BuyerView::Blocked(p.clone(), by.clone()),
                State::Finished(r) => BuyerView::Finished(r.outcome),
                State::Starting => BuyerView::Blocked(Pending::starting(), Vec::new()),
            })
            .collect()
    }

    fn finished(&self) -> bool {
        self.states.iter().all(|s| matches!(s, State::Finished(_)))
    }

    fn enabled(&self) -> Vec<u32> {
        buyers_where(&self.states, |s| matches!(s, State::Ready(..)))
    }

    fn blocked(&self) -> Vec<u32> {
        buyers_where(&self.states, |s| matches!(s, State::Blocked(..)))
    }

    async fn drive(
        &mut self,
        driver: &mut dyn Driver,
        monitor: &mut impl Monitor,
        control: &Control,
    ) -> anyhow::Result<End> {
        let all: BTreeSet<u32> = (1..=self.states.len() as u32).collect();
        match self.settle(all, monitor, control, None).await? {
            Settled::Yes => {}
            Settled::Stuck(why) => return Ok(End::Stuck(why)),
            Settled::Interrupted => return Ok(End::Interrupted),
        }
        let mut prev: Option<u32> = None;
        loop {
            if control.is_stopped() {
                return Ok(End::Interrupted);
            }
            if self.finished() {
                return Ok(End::Finished);
            }
            let enabled = self.enabled();
            if enabled.is_empty() {
                // Everyone left waits on a buyer that will not move (no
                // deadlock, or settle would have waited for it to break).
                let waiting: BTreeSet<u32> = self.blocked().into_iter().collect();
                match self
                    .settle_after(waiting, monitor, control, STUCK_GRACE)
                    .await?
                {
                    Settled::Yes if !self.enabled().is_empty() || self.finished() => continue,
                    Settled::Interrupted => return Ok(End::Interrupted),
                    Settled::Stuck(why) => return Ok(End::Stuck(why)),
                    Settled::Yes => return Ok(End::Stuck(self.describe_stuck())),
                }
            }
            if self.steps.len() >= MAX_STEPS {
                return Ok(End::Endless(format!(
                    "a schedule ran {MAX_STEPS} statements without every buyer finishing: the \
                     buyers make no progress (retries without end; give --max-tries a limit)"
                )));
            }
            let views = self.views();
            let index = self.steps.len();
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
                anyhow::bail!("the scheduler was asked to run buyer {chosen}, who cannot run now");
            }
            let point = ChoicePoint {
                enabled: enabled.clone(),
                chosen,
                prev,
            };
            let preemption = point.preempts(chosen);
            self.points.push(point);
            let i = chosen as usize - 1;
            if let State::Ready(at, _) = &self.states[i] {
                if !matches!(at.tx, TxEffect::Commit | TxEffect::Rollback) {
                    if let Settled::Interrupted = self.let_timers_run_out(chosen, control).await {
                        return Ok(End::Interrupted);
                    }
                }
            }
            let State::Ready(at, grant) = std::mem::replace(&mut self.states[i], State::Starting)
            else {
                unreachable!("enabled buyers are ready");
            };
            self.inflight[i] = Some(index);
            self.granted_at = Instant::now();
            self.steps.push(Step {
                buyer: chosen,
                at: at.clone(),
                preemption,
                granted: Instant::now(),
                waited_for: Vec::new(),
                completed_after: None,
                event: None,
            });
            self.states[i] = State::Running(at);
            let _ = grant.send(());
            prev = Some(chosen);
            let mut suspects: BTreeSet<u32> = self.blocked().into_iter().collect();
            suspects.insert(chosen);
            match self.settle(suspects, monitor, control, Some(index)).await? {
                Settled::Yes => {}
                Settled::Stuck(why) => return Ok(End::Stuck(why)),
                Settled::Interrupted => return Ok(End::Interrupted),
            }
            driver.stepped(index, &self.steps, &self.views());
        }
    }

    /// The waiting buyers that wait, directly or through others, on
    /// `buyer`.
    fn waiting_on(&self, buyer: u32) -> BTreeSet<u32> {
        let mut found: BTreeSet<u32> = BTreeSet::new();
        let mut todo = vec![buyer];
        while let Some(b) = todo.pop() {
            for (i, s) in self.states.iter().enumerate() {
                if let State::Blocked(_, by) = s {
                    let w = i as u32 + 1;
                    if by.contains(&b) && found.insert(w) {
                        todo.push(w);
                    }
                }
            }
        }
        found
    }

    /// Wait until the deadlock timer of every buyer that waits on `buyer`
    /// has run out (see the module docs), so that none of them can be the
    /// one to find a cycle `buyer`'s next statement closes. (A statement
    /// of a buyer nobody waits on wakes nobody and closes no cycle.)
    async fn let_timers_run_out(&self, buyer: u32, control: &Control) -> Settled {
        if !self.staggered {
            return Settled::Yes;
        }
        let until = self
            .waiting_on(buyer)
            .into_iter()
            .filter_map(|b| {
                let i = b as usize - 1;
                Some(self.wait_since[i]? + self.timeouts[i] + TIMER_MARGIN)
            })
            .max();
        if let Some(until) = until {
            if until > Instant::now() {
                tokio::select! {
                    _ = control.stopped() => return Settled::Interrupted,
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
        }
        Settled::Yes
    }

    /// Whether the step `k`, now complete, may have released locks another
    /// buyer waits on: it ended a transaction, failed (its transaction is
    /// aborted), or released an advisory lock.
    fn releases(&self, k: usize) -> bool {
        let s = &self.steps[k];
        if matches!(s.at.tx, TxEffect::Commit | TxEffect::Rollback) || s.at.rollback {
            return true;
        }
        if s.event.as_ref().is_some_and(|e| e.error.is_some()) {
            return true;
        }
        use crate::strategy::facts::AdvisoryAction;
        self.program
            .stmts
            .iter()
            .filter(|st| st.line == s.at.line)
            .any(|st| {
                st.facts
                    .advisory
                    .iter()
                    .any(|a| a.action != AdvisoryAction::Lock)
            })
    }

    fn describe_stuck(&self) -> String {
        let waits: Vec<String> = self
            .states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                State::Blocked(p, by) => {
                    let whom: Vec<String> = by.iter().map(|b| format!("buyer {b}")).collect();
                    let whom = if whom.is_empty() {
                        "a lock".to_string()
                    } else {
                        whom.join(" and ")
                    };
                    Some(format!(
                        "buyer {} waits at line {} for {whom}",
                        i + 1,
                        p.line
                    ))
                }
                _ => None,
            })
            .collect();
        format!(
            "no buyer can go on: {}, and nothing will release it (a lock kept after the attempt, e.g. a session advisory lock?)",
            waits.join("; ")
        )
    }

    /// Note a message: a buyer reached its next boundary or finished.
    /// Returns the buyer and the step that just completed, if any.
    fn handle(&mut self, msg: Msg, during: Option<usize>) -> (u32, Option<usize>) {
        let (buyer, last) = match msg {
            Msg::Ready {
                buyer,
                next,
                last,
                grant,
            } => {
                self.states[buyer as usize - 1] = State::Ready(next, grant);
                (buyer, last)
            }
            Msg::Broken { buyer, .. } => (buyer, None),
            Msg::Done {
                buyer,
                report,
                events,
            } => {
                let last = last_statement(Some(&events));
                self.events[buyer as usize - 1] = events;
                self.states[buyer as usize - 1] = State::Finished(report);
                (buyer, last)
            }
        };
        let k = self.inflight[buyer as usize - 1].take();
        if let Some(k) = k {
            let step = &mut self.steps[k];
            step.event = last;
            if !step.waited_for.is_empty() {
                step.completed_after = Some(during.unwrap_or(k));
            }
        }
        (buyer, k)
    }

    async fn settle(
        &mut self,
        suspects: BTreeSet<u32>,
        monitor: &mut impl Monitor,
        control: &Control,
        during: Option<usize>,
    ) -> anyhow::Result<Settled> {
        self.settle_inner(suspects, monitor, control, during, None)
            .await
    }

    /// Wait up to `grace` for any of `waiting` to move; settle if one does.
    async fn settle_after(
        &mut self,
        waiting: BTreeSet<u32>,
        monitor: &mut impl Monitor,
        control: &Control,
        grace: Duration,
    ) -> anyhow::Result<Settled> {
        let during = self.steps.len().checked_sub(1);
        self.settle_inner(waiting, monitor, control, during, Some(grace))
            .await
    }

    /// Wait until every buyer in `running` has reached a boundary,
    /// finished, or waits on another buyer's lock (see the module docs).
    /// With `grace`, the buyers are known to wait and only a message within
    /// `grace` can change that; without one, the schedule is stuck.
    async fn settle_inner(
        &mut self,
        mut running: BTreeSet<u32>,
        monitor: &mut impl Monitor,
        control: &Control,
        during: Option<usize>,
        mut grace: Option<Duration>,
    ) -> anyhow::Result<Settled> {
        let mut poll = grace.unwrap_or(FIRST_POLL);
        let mut check_now = false;
        let mut last_progress = Instant::now();
        let mut limit = STALL;
        // A deadlock seen among the waiting buyers, that PostgreSQL has yet
        // to break.
        let mut cycle: Option<Vec<u32>> = None;
        let mut breaking = false;
        // Buyers whose statement just failed: the server reports an error
        // before it has aborted the transaction and released its locks, so
        // what waits on them is not settled until their backend is idle.
        let mut aborting: BTreeSet<u32> = BTreeSet::new();
        loop {
            if running.is_empty() {
                // Nothing in flight; a failed statement's backend may still
                // be releasing locks a later grant would otherwise wait on.
                while !aborting.is_empty() {
                    if self.idle(monitor, &aborting).await? {
                        aborting.clear();
                    } else if last_progress.elapsed() >= limit {
                        return Ok(Settled::Stuck(
                            "a buyer's backend did not finish aborting its transaction".into(),
                        ));
                    }
                }
                return Ok(Settled::Yes);
            }
            // Looking without waiting must not wait for the timer (its
            // resolution is a millisecond).
            let got = if check_now {
                match self.rx.try_recv() {
                    Ok(m) => Ok(Some(m)),
                    Err(mpsc::error::TryRecvError::Empty) => Err(()),
                    Err(mpsc::error::TryRecvError::Disconnected) => Ok(None),
                }
            } else {
                tokio::select! {
                    biased;
                    _ = control.stopped() => return Ok(Settled::Interrupted),
                    m = tokio::time::timeout(poll, self.rx.recv()) => m.map_err(|_| ()),
                }
            };
            match got {
                Ok(Some(Msg::Broken { error, .. })) => anyhow::bail!(error),
                Ok(Some(msg)) => {
                    let from = msg.buyer();
                    // The deadlock it may have been broken out of, read
                    // before its state changes.
                    let was_in = self.cycle_through(from);
                    let (buyer, step) = self.handle(msg, during);
                    running.remove(&buyer);
                    if step.is_some_and(|k| self.releases(k)) {
                        // A waiter woken by the release may wait again: its
                        // timer starts over.
                        let now = Instant::now();
                        for b in self.blocked() {
                            self.wait_since[b as usize - 1] = Some(now);
                        }
                    }
                    if self.wait_since.len() > buyer as usize - 1
                        && !matches!(self.states[buyer as usize - 1], State::Blocked(..))
                    {
                        self.wait_since[buyer as usize - 1] = None;
                    }
                    let event = step.and_then(|k| self.steps[k].event.as_ref());
                    let failed = event.is_some_and(|e| e.error.is_some());
                    if event.is_some_and(|e| e.sqlstate.as_deref() == Some(DEADLOCK)) {
                        self.victims.push(buyer);
                        self.check_victim(buyer, was_in.as_deref());
                    }
                    if failed {
                        aborting.insert(buyer);
                    }
                    // A statement that ended may have released locks: look
                    // again at every buyer that was waiting.
                    running.extend(self.blocked());
                    check_now = running
                        .iter()
                        .all(|b| matches!(self.states[*b as usize - 1], State::Blocked(..)));
                    grace = None;
                    breaking = false;
                    cycle = None;
                    poll = FIRST_POLL;
                    limit = STALL;
                    last_progress = Instant::now();
                    continue;
                }
                Ok(None) => anyhow::bail!("every buyer task ended without finishing its attempt"),
                Err(_) => {}
            }
            check_now = false;
            if grace.is_some() {
                return Ok(Settled::Stuck(self.describe_stuck()));
            }
            if last_progress.elapsed() >= limit {
                let deadlocked = if breaking { cycle.as_deref() } else { None };
                return Ok(Settled::Stuck(self.describe_stall(&running, deadlocked)));
            }
            if breaking {
                // Waiting for PostgreSQL's deadlock detector: nothing to poll.
                continue;
            }
            if !aborting.is_empty() {
                if !self.idle(monitor, &aborting).await? {
                    poll = FIRST_POLL;
                    continue;
                }
                aborting.clear();
            }
            let seen = self.observe(monitor, &running).await?;
            if !seen.iter().all(|(_, blocked, _)| *blocked) {
                for (b, blocked, _) in &seen {
                    let i = *b as usize - 1;
                    if !blocked {
                        if let State::Blocked(p, _) = &self.states[i] {
                            self.states[i] = State::Running(p.clone());
                        }
                    }
                }
                poll = (poll * 2).min(MAX_POLL);
                continue;
            }
            for (b, _, by) in seen {
                let i = b as usize - 1;
                let (p, was) = match std::mem::replace(&mut self.states[i], State::Starting) {
                    State::Running(p) => (p, None),
                    State::Blocked(p, was) => (p, Some(was)),
                    other => {
                        self.states[i] = other;
                        continue;
                    }
                };
                if was.as_ref() != Some(&by) || self.wait_since[i].is_none() {
                    self.wait_since[i] = Some(Instant::now());
                }
                if let Some(k) = self.inflight[i] {
                    if self.steps[k].waited_for.is_empty() {
                        self.steps[k].waited_for = by.clone();
                    }
                }
                self.states[i] = State::Blocked(p, by);
            }
            match self.cycle() {
                None => return Ok(Settled::Yes),
                Some(c) => {
                    // PostgreSQL breaks it once a waiter's deadlock_timeout
                    // has passed; until then nothing else may run.
                    // Its candidates: the members that began waiting in the
                    // step that closed it (the others' timers have run out).
                    self.fresh = c
                        .iter()
                        .copied()
                        .filter(|b| {
                            self.wait_since[*b as usize - 1].is_some_and(|t| t >= self.granted_at)
                        })
                        .collect();
                    cycle = Some(c);
                    breaking = true;
                    poll = self.longest_timeout() + STALL;
                    limit = poll;
                    last_progress = Instant::now();
                }
            }
        }
    }

    fn describe_stall(&self, running: &BTreeSet<u32>, deadlock: Option<&[u32]>) -> String {
        if let Some(cycle) = deadlock {
            let who: Vec<String> = cycle.iter().map(u32::to_string).collect();
            return format!(
                "buyers {} deadlocked and PostgreSQL did not break the deadlock within {:.0} s",
                who.join(", "),
                (self.longest_timeout() + STALL).as_secs_f64()
            );
        }
        let who: Vec<String> = running
            .iter()
            .map(|b| {
                let line = match &self.states[*b as usize - 1] {
                    State::Running(p) | State::Blocked(p, _) => p.line,
                    _ => 0,
                };
                format!("buyer {b} (line {line})")
            })
            .collect();
        format!(
            "the statement of {} neither finished nor waited on another buyer for {} s (a lock held outside racelab, or a very slow statement)",
            who.join(", "),
            STALL.as_secs()
        )
    }

    /// Ask the server which of `buyers` wait on a lock held by another
    /// buyer, and on whose.
    async fn observe(
        &self,
        monitor: &mut impl Monitor,
        buyers: &BTreeSet<u32>,
    ) -> anyhow::Result<Vec<(u32, bool, Vec<u32>)>> {
        let pids: Vec<i32> = buyers.iter().map(|b| self.pids[*b as usize - 1]).collect();
        let rows = monitor.blocked(&pids, &self.pids).await?;
        Ok(buyers
            .iter()
            .zip(rows)
            .map(|(&b, (blocked, by))| {
                let by = by
                    .iter()
                    .filter_map(|p| self.pids.iter().position(|q| q == p))
                    .map(|i| i as u32 + 1)
                    .collect();
                (b, blocked, by)
            })
            .collect())
    }

    /// Whether the backends of `buyers` have finished with their last
    /// statement (idle, in a transaction or not).
    async fn idle(
        &self,
        monitor: &mut impl Monitor,
        buyers: &BTreeSet<u32>,
    ) -> anyhow::Result<bool> {
        let pids: Vec<i32> = buyers.iter().map(|b| self.pids[*b as usize - 1]).collect();
        monitor.idle(&pids).await
    }

    fn longest_timeout(&self) -> Duration {
        self.timeouts.iter().copied().max().unwrap_or_default()
    }

    /// PostgreSQL breaks a deadlock in the first waiter whose
    /// deadlock_timeout passes after the cycle formed. With staggered
    /// timeouts and the timers of earlier waiters run out before each grant
    /// (see the module docs), that is the member that started waiting in
    /// the step that closed the cycle with the shortest timeout. Under a
    /// heavily loaded machine a backend can still check late; the schedule
    /// is then not what its replays will see, and `unexpected_victim` says
    /// so.
    fn check_victim(&mut self, victim: u32, cycle: Option<&[u32]>) {
        let Some(cycle) = cycle else { return };
        let expected = if self.staggered {
            self.fresh
                .iter()
                .copied()
                .filter(|b| cycle.contains(b))
                .min_by_key(|b| self.timeouts[*b as usize - 1])
        } else {
            cycle
                .iter()
                .filter_map(|b| self.inflight[*b as usize - 1].map(|k| (self.steps[k].granted, *b)))
                .chain(
                    self.steps
                        .iter()
                        .rev()
                        .find(|s| s.buyer == victim)
                        .map(|s| (s.granted, victim)),
                )
                .min()
                .map(|(_, b)| b)
        };
        if expected.is_some_and(|f| f != victim) && self.unexpected_victim.is_none() {
            self.unexpected_victim = Some(format!(
                "PostgreSQL broke a deadlock of buyers {cycle:?} in buyer {victim}, not in buyer {}, whose timer was due first",
                expected.unwrap_or(0)
            ));
        }
    }

    /// The cycle of waits through `buyer`, if it waits in one.
    fn cycle_through(&self, buyer: u32) -> Option<Vec<u32>> {
        self.cycles().into_iter().find(|c| c.contains(&buyer))
    }

    /// A cycle among the waiting buyers, if any (its members, ascending).
    fn cycle(&self) -> Option<Vec<u32>> {
        self.cycles().into_iter().next()
    }

    /// The cycles among the waiting buyers (each once per start).
    fn cycles(&self) -> Vec<Vec<u32>> {
        let mut found = Vec::new();
        let edges = |b: u32| -> &[u32] {
            match &self.states[b as usize - 1] {
                State::Blocked(_, by) => by,
                _ => &[],
            }
        };
        for start in self.blocked() {
            // Follow waits-for edges depth first, looking for `start` again.
            let mut stack = vec![(start, 0usize)];
            let mut path = vec![start];
            let mut seen = BTreeSet::new();
            while let Some((b, k)) = stack.pop() {
                let next = edges(b);
                if k < next.len() {
                    stack.push((b, k + 1));
                    let n = next[k];
                    if n == start {
                        let mut c = path.clone();
                        c.sort_unstable();
                        if !found.contains(&c) {
                            found.push(c);
                        }
                        break;
                    }
                    if seen.insert(n) {
                        stack.push((n, 0));
                        path.push(n);
                    }
                } else {
                    path.pop();
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
