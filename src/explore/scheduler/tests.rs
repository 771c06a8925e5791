//! The scheduler's state machine (`Run::drive` and its settling) against a
//! scripted server: buyers that wait on each other's row locks the way
//! PostgreSQL's backends do, a deadlock detector that breaks a cycle after
//! `deadlock_timeout` in the buyer that waited first, and a `Monitor` that
//! answers what `pg_isolation_test_session_is_blocked` would. The real
//! server is raced by `tests/it/explore.rs`; here every state the machine
//! can reach is reached on purpose: settled, blocked, deadlocked, stuck.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use super::super::monitor::Monitor;
use super::*;

/// One statement of a scripted buyer: the row locks it takes (in order),
/// and whether it ends the transaction (releasing every lock the buyer
/// holds, unless `session`: a lock kept past the attempt).
#[derive(Clone, Copy)]
struct Stmt {
    line: usize,
    locks: &'static [&'static str],
    commit: bool,
}

const fn take(line: usize, locks: &'static [&'static str]) -> Stmt {
    Stmt {
        line,
        locks,
        commit: false,
    }
}

const fn commit(line: usize) -> Stmt {
    Stmt {
        line,
        locks: &[],
        commit: true,
    }
}

/// The scripted server: who holds each lock, who waits for which, and
/// since when.
#[derive(Default)]
struct World {
    held: BTreeMap<&'static str, u32>,
    waiting: BTreeMap<u32, (&'static str, Instant)>,
    /// Buyers the deadlock detector failed, not yet told.
    victims: BTreeSet<u32>,
    /// Locks that outlive their transaction (a session lock).
    session: BTreeSet<&'static str>,
    /// Monitor questions asked, to show the state machine asked them.
    asked: usize,
}

type Shared = Rc<RefCell<World>>;

/// Buyer b's backend "pid" is 100 + b.
fn pid(b: u32) -> i32 {
    100 + b as i32
}

fn buyer_of(p: i32) -> u32 {
    (p - 100) as u32
}

struct Scripted(Shared);

impl Monitor for Scripted {
    async fn blocked(
        &mut self,
        pids: &[i32],
        among: &[i32],
    ) -> anyhow::Result<Vec<(bool, Vec<i32>)>> {
        let w = self.0.borrow();
        Ok(pids
            .iter()
            .map(|&p| match w.waiting.get(&buyer_of(p)) {
                Some((lock, _)) => {
                    let by: Vec<i32> = w.held.get(lock).map(|h| pid(*h)).into_iter().collect();
                    let by: Vec<i32> = by.into_iter().filter(|p| among.contains(p)).collect();
                    (!by.is_empty(), by)
                }
                None => (false, Vec::new()),
            })
            .collect())
    }

    async fn idle(&mut self, _pids: &[i32]) -> anyhow::Result<bool> {
        self.0.borrow_mut().asked += 1;
        Ok(true)
    }
}

fn event(line: usize, error: Option<&str>) -> TraceEvent {
    let now = Instant::now();
    TraceEvent {
        start: now,
        end: now,
        try_no: 1,
        line,
        kind: TraceKind::Sql,
        what: format!("line {line}"),
        rows: Some(1),
        values: Vec::new(),
        error: error.map(str::to_string),
        sqlstate: error.map(|e| e[..5].to_string()),
        outcome: None,
    }
}

fn pending(line: usize, rollback: bool) -> Pending {
    Pending {
        try_no: 1,
        line,
        display: format!("line {line}"),
        sql: String::new(),
        tx: TxEffect::Other,
        rollback,
    }
}

/// Park at `next` until granted; false when the scheduler gave up.
async fn park(
    tx: &mpsc::UnboundedSender<Msg>,
    buyer: u32,
    next: Pending,
    last: Option<TraceEvent>,
) -> bool {
    let (grant, granted) = oneshot::channel();
    let sent = tx
        .send(Msg::Ready {
            buyer,
            next,
            last,
            grant,
        })
        .is_ok();
    sent && granted.await.is_ok()
}

/// A buyer running its statements as the scripted server lets it: a lock
/// another holds makes it wait (woken by `changed`) until released, or
/// until the deadlock detector fails it (40P01); then it rolls back and
/// ends in an error, as an attempt out of tries would.
async fn buyer(
    b: u32,
    script: Vec<Stmt>,
    world: Shared,
    changed: Rc<Notify>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let mut last = None;
    let mut mine: Vec<&'static str> = Vec::new();
    for st in script {
        if !park(&tx, b, pending(st.line, false), last.take()).await {
            return;
        }
        let mut failed = false;
        'locks: for lock in st.locks {
            loop {
                let notified = changed.notified();
                {
                    let mut w = world.borrow_mut();
                    if w.victims.remove(&b) {
                        w.waiting.remove(&b);
                        failed = true;
                        break 'locks;
                    }
                    match w.held.get(lock) {
                        Some(h) if *h != b => {
                            w.waiting.entry(b).or_insert((lock, Instant::now()));
                        }
                        _ => {
                            w.held.insert(lock, b);
                            w.waiting.remove(&b);
                            mine.push(lock);
                            break;
                        }
                    }
                }
                notified.await;
            }
        }
        if failed {
            release(&world, &mut mine, b);
            changed.notify_waiters();
            let fail = event(st.line, Some("40P01: deadlock detected"));
            // The interpreter's ROLLBACK after the error, then the end.
            if !park(&tx, b, pending(0, true), Some(fail)).await {
                return;
            }
            let _ = tx.send(Msg::Done {
                buyer: b,
                report: AttemptReport {
                    outcome: Outcome::Error,
                    tries: 1,
                    message: Some("40P01: deadlock detected".into()),
                    connection_lost: false,
                },
                events: Vec::new(),
            });
            return;
        }
        if st.commit {
            release(&world, &mut mine, b);
            changed.notify_waiters();
        }
        last = Some(event(st.line, None));
    }
    let _ = tx.send(Msg::Done {
        buyer: b,
        report: AttemptReport {
            outcome: Outcome::Succeeded,
            tries: 1,
            message: None,
            connection_lost: false,
        },
        events: last.into_iter().collect(),
    });
}

/// Release `b`'s locks but the session ones.
fn release(world: &Shared, mine: &mut Vec<&'static str>, b: u32) {
    let mut w = world.borrow_mut();
    mine.retain(|l| w.session.contains(l));
    let session = w.session.clone();
    w.held.retain(|l, h| *h != b || session.contains(l));
}

/// PostgreSQL's deadlock detector, scripted: once a waiter has waited
/// `timeout`, a cycle through it is broken by failing that waiter.
async fn detector(world: Shared, changed: Rc<Notify>, timeout: Duration) {
    loop {
        tokio::time::sleep(timeout / 4).await;
        let mut w = world.borrow_mut();
        let now = Instant::now();
        let mut waited: Vec<(Instant, u32)> =
            w.waiting.iter().map(|(b, (_, t))| (*t, *b)).collect();
        waited.sort();
        let victim = waited.into_iter().find(|&(since, b)| {
            if now.duration_since(since) < timeout {
                return false;
            }
            // Follow waits-for from b: back to b is a cycle.
            let mut at = b;
            for _ in 0..8 {
                let Some((lock, _)) = w.waiting.get(&at) else {
                    return false;
                };
                let Some(&h) = w.held.get(lock) else {
                    return false;
                };
                if h == b {
                    return true;
                }
                at = h;
            }
            false
        });
        if let Some((_, b)) = victim {
            w.victims.insert(b);
            drop(w);
            changed.notify_waiters();
        }
    }
}

/// The driver of `--schedule`: these buyers in this order, then the
/// default policy.
struct Fixed(Vec<u32>);

impl Driver for Fixed {
    fn choose(&mut self, at: &Choice<'_>) -> anyhow::Result<Option<u32>> {
        Ok(Some(self.0.get(at.index).copied().unwrap_or_else(|| {
            super::super::schedule::default_choice(at.enabled, at.prev)
        })))
    }
}

/// What a schedule did, for the assertions.
struct Ran {
    end: End,
    run: Run,
    world: Shared,
}

/// Run `scripts` (buyer i+1's statements) under `schedule` on the
/// scripted server.
fn run(scripts: Vec<Vec<Stmt>>, schedule: &[u32], session: &[&'static str]) -> Ran {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let world: Shared = Rc::default();
        world.borrow_mut().session = session.iter().copied().collect();
        let changed = Rc::new(Notify::new());
        let deadlock_timeout = Duration::from_millis(40);
        let (tx, rx) = mpsc::unbounded_channel();
        let n = scripts.len();
        for (i, s) in scripts.into_iter().enumerate() {
            tokio::task::spawn_local(buyer(
                i as u32 + 1,
                s,
                world.clone(),
                changed.clone(),
                tx.clone(),
            ));
        }
        drop(tx);
        let detector =
            tokio::task::spawn_local(detector(world.clone(), changed.clone(), deadlock_timeout));
        let mut run = Run {
            rx,
            states: (0..n).map(|_| State::Starting).collect(),
            inflight: vec![None; n],
            steps: Vec::new(),
            points: Vec::new(),
            events: vec![Vec::new(); n],
            pids: (1..=n as u32).map(pid).collect(),
            timeouts: vec![deadlock_timeout; n],
            staggered: false,
            wait_since: vec![None; n],
            fresh: Vec::new(),
            granted_at: Instant::now(),
            program: crate::strategy::load("naive")
                .expect("the built-in loads")
                .program,
            victims: Vec::new(),
            unexpected_victim: None,
        };
        let control = crate::engine::Control::new();
        let mut driver = Fixed(schedule.to_vec());
        let end = run
            .drive(&mut driver, &mut Scripted(world.clone()), &control)
            .await
            .expect("the schedule runs");
        detector.abort();
        Ran { end, run, world }
    })
}

fn schedule_of(run: &Run) -> Vec<u32> {
    run.steps.iter().map(|s| s.buyer).collect()
}

fn outcome(run: &Run, b: u32) -> Option<Outcome> {
    match &run.states[b as usize - 1] {
        State::Finished(r) => Some(r.outcome),
        _ => None,
    }
}

#[test]
fn settles_after_each_step_and_offers_who_can_run() {
    let s = vec![take(1, &[]), commit(2)];
    let ran = run(vec![s.clone(), s], &[2, 1], &[]);
    assert_eq!(ran.end, End::Finished);
    // Buyer 2 first (a choice), then buyer 1 preempts it, then the default
    // (the one that just ran goes on): 2 1 1 2.
    assert_eq!(schedule_of(&ran.run), [2, 1, 1, 2]);
    let enabled: Vec<Vec<u32>> = ran.run.points.iter().map(|p| p.enabled.clone()).collect();
    assert_eq!(enabled, [vec![1, 2], vec![1, 2], vec![1, 2], vec![2]]);
    let pre: Vec<bool> = ran.run.steps.iter().map(|s| s.preemption).collect();
    assert_eq!(pre, [false, true, false, false]);
    // Each step has the event of its statement once it settled.
    let lines: Vec<Option<usize>> = ran
        .run
        .steps
        .iter()
        .map(|s| s.event.as_ref().map(|e| e.line))
        .collect();
    assert_eq!(lines, [Some(1), Some(1), Some(2), Some(2)]);
    assert!(ran.run.steps.iter().all(|s| s.waited_for.is_empty()));
    assert_eq!(
        (outcome(&ran.run, 1), outcome(&ran.run, 2)),
        (Some(Outcome::Succeeded), Some(Outcome::Succeeded))
    );
}

#[test]
fn a_statement_waiting_on_a_lock_is_blocked_until_its_holder_commits() {
    let s = vec![take(3, &["row 1"]), commit(4)];
    let ran = run(vec![s.clone(), s], &[1, 2], &[]);
    assert_eq!(ran.end, End::Finished);
    // Buyer 2's locking read waits for buyer 1: only buyer 1 can go on,
    // and that is no preemption; buyer 2's read completes with buyer 1's
    // COMMIT (step 3), then it commits.
    assert_eq!(schedule_of(&ran.run), [1, 2, 1, 2]);
    let steps = &ran.run.steps;
    assert_eq!(steps[1].waited_for, [1]);
    assert_eq!(steps[1].completed_after, Some(2));
    assert_eq!(
        ran.run.points[2].enabled,
        [1],
        "the waiter cannot be chosen"
    );
    assert!(!steps[2].preemption, "a forced switch is free");
    assert!(steps[0].waited_for.is_empty() && steps[3].waited_for.is_empty());
    assert!(ran.run.victims.is_empty());
}

#[test]
fn a_deadlock_is_awaited_until_the_server_breaks_it_in_the_first_waiter() {
    // Buyer 1 locks A then B; buyer 2 locks B then A.
    let one = vec![take(1, &["A"]), take(2, &["B"]), commit(3)];
    let two = vec![take(1, &["B"]), take(2, &["A"]), commit(3)];
    let started = Instant::now();
    let ran = run(vec![one, two], &[1, 2, 1, 2], &[]);
    assert_eq!(ran.end, End::Finished);
    let steps = &ran.run.steps;
    // Buyer 1 waited first (step 3, on buyer 2), then buyer 2 (step 4,
    // on buyer 1): a cycle, broken in buyer 1 after the timeout.
    assert_eq!(steps[2].waited_for, [2]);
    assert_eq!(steps[3].waited_for, [1]);
    assert_eq!(ran.run.victims, [1]);
    assert_eq!(ran.run.unexpected_victim, None);
    let failed = steps[2]
        .event
        .as_ref()
        .expect("the victim's statement ended");
    assert_eq!(failed.sqlstate.as_deref(), Some("40P01"));
    // The victim's ROLLBACK was a step; then buyer 2 got its lock.
    assert!(steps.iter().any(|s| s.buyer == 1 && s.at.rollback));
    assert_eq!(outcome(&ran.run, 1), Some(Outcome::Error));
    assert_eq!(outcome(&ran.run, 2), Some(Outcome::Succeeded));
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "broken before the timeout"
    );
    // The failed statement's backend was asked whether it had aborted.
    assert!(ran.world.borrow().asked >= 1);
}

#[test]
fn a_victim_other_than_the_first_waiter_is_named() {
    let one = vec![take(1, &["A"]), take(2, &["B"]), commit(3)];
    let two = vec![take(1, &["B"]), take(2, &["A"]), commit(3)];
    let ran = run(vec![one, two], &[1, 2, 1], &[]);
    // Simulate the loaded machine's check order on the settled run: a
    // cycle of 1 and 2 broken in 2 though 1 waited longer.
    let mut r = ran.run;
    r.unexpected_victim = None;
    r.states[0] = State::Blocked(pending(2, false), vec![2]);
    r.inflight[0] = Some(2);
    r.check_victim(2, Some(&[1, 2]));
    let why = r.unexpected_victim.expect("named");
    assert!(why.contains("in buyer 2, not in buyer 1"), "{why}");
}

#[test]
fn waits_that_nothing_will_release_are_stuck_after_the_grace() {
    // Buyer 1 takes a session lock and finishes holding it; buyer 2 waits
    // for it for ever.
    let one = vec![take(1, &["session lock"]), commit(2)];
    let two = vec![take(1, &["session lock"]), commit(2)];
    let started = Instant::now();
    let ran = run(vec![one, two], &[1, 1, 2], &["session lock"]);
    let End::Stuck(why) = &ran.end else {
        panic!("not stuck: {:?}", ran.end);
    };
    assert!(why.contains("buyer 2 waits at line 1 for buyer 1"), "{why}");
    assert!(started.elapsed() >= STUCK_GRACE, "stuck before the grace");
    assert_eq!(outcome(&ran.run, 1), Some(Outcome::Succeeded));
    assert_eq!(outcome(&ran.run, 2), None);
}

#[test]
fn cycles_are_found_once_each() {
    let ran = run(
        vec![vec![commit(1)], vec![commit(1)], vec![commit(1)]],
        &[],
        &[],
    );
    let mut r = ran.run;
    // 1 waits on 2, 2 on 3, 3 on 1; and nothing else.
    r.states = vec![
        State::Blocked(pending(1, false), vec![2]),
        State::Blocked(pending(1, false), vec![3]),
        State::Blocked(pending(1, false), vec![1]),
    ];
    assert_eq!(r.cycles(), [vec![1, 2, 3]]);
    assert_eq!(r.cycle_through(2), Some(vec![1, 2, 3]));
    // A chain is no cycle.
    r.states[2] = State::Blocked(pending(1, false), vec![]);
    assert!(r.cycles().is_empty());
    assert_eq!(r.cycle(), None);
}
