//! An explore counterexample, replayed on the projector one statement per
//! click. `explore` (the real search: every schedule of two buyers up to
//! two preemptions, each from a fresh lab, audited) finds the shortest
//! unsafe schedule of the chosen strategy; then the same schedule runs
//! again for real under explore's scheduler, and every click lets exactly
//! one buyer run its next statement — `explore --step` with the teacher's
//! clicks for the Enter key. Each step's result, who waits on whom, and
//! the schedule's swim-lane so far go to every projector.
//!
//! It runs on a thread of its own (explore's buyers are local tasks of
//! one thread), and keeps the lab: no round can start until it ends.
//! What the projector shows of it is `replay`'s.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::replay::{Click, View};
use super::room::{Refusal, Room};
use crate::db::{Claims, ProductSeed};
use crate::explore::lab::Lab;
use crate::explore::schedule::default_choice;
use crate::explore::scheduler::{BuyerView, Choice, Config, Driver, End, Scheduler, Step};
use crate::explore::step::{render_choice, render_stepped};
use crate::outcome::Outcome;
use crate::plan::explore::ExplorePlan;
use crate::result::explore::Counterexample;
use crate::strategy::Strategy;

/// How long a replay waits for the next click before it gives up.
const IDLE: Duration = Duration::from_secs(900);

/// Find the shortest unsafe schedule of `strategy` and get ready to
/// replay it; answers once explore has searched.
pub async fn start(room: &Arc<Room>, strategy: Arc<Strategy>) -> Result<Value, Refusal> {
    if let Some(line) = strategy.program.first_redis_line() {
        return Err(Refusal::new(
            400,
            format!(
                "explore schedules SQL statements only, and `{}` sends \\redis commands (line {line})",
                strategy.name
            ),
        ));
    }
    let rx = {
        let _lab = room.lab.lock().await;
        if room.round_running() {
            return Err(Refusal::new(
                409,
                "a round is running on the lab: close it before replaying",
            ));
        }
        let mut clicks = room.replay.clicks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = clicks.take() {
            let _ = old.send(Click::Stop);
        }
        let (tx, rx) = mpsc::channel();
        *clicks = Some(tx);
        rx
    };
    let mut seen = room.replay.changed.subscribe();
    room.replay.update(
        |j| room.emit("replay", j),
        |v| {
            *v = View {
                title: format!("{}, 2 buyers, 1 in stock", strategy.name),
                summary: "explore is searching every schedule of two buyers…".into(),
                ..View::default()
            }
        },
    );
    seen.borrow_and_update();
    let worker = room.clone();
    std::thread::Builder::new()
        .name("racelab-replay".into())
        .spawn(move || run(worker, strategy, rx))
        .map_err(|e| Refusal::new(500, format!("cannot start the replay: {e}")))?;
    // The search's verdict, or its failure.
    let _ = tokio::time::timeout(Duration::from_secs(300), seen.changed()).await;
    Ok(room.replay.json())
}

/// Run the next statement; answers once it has run.
pub async fn step(room: &Room) -> Result<Value, Refusal> {
    click(room, Click::Next).await
}

pub async fn stop(room: &Room) -> Result<Value, Refusal> {
    click(room, Click::Stop).await
}

async fn click(room: &Room, click: Click) -> Result<Value, Refusal> {
    let mut seen = room.replay.changed.subscribe();
    seen.borrow_and_update();
    let (before, _) = room.replay.progress();
    let sent = room
        .replay
        .clicks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|tx| tx.send(click).is_ok());
    if sent != Some(true) {
        return Err(Refusal::new(
            409,
            "no replay is waiting for a click: find a counterexample first (POST /api/replay)",
        ));
    }
    // Answer once the statement has run (or the replay ended).
    let moved = async {
        loop {
            let (step, done) = room.replay.progress();
            if step > before || done || seen.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), moved).await;
    Ok(room.replay.json())
}

/// The replay's thread: search, then step.
fn run(room: Arc<Room>, strategy: Arc<Strategy>, clicks: Receiver<Click>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match rt {
        Ok(rt) => {
            let local = tokio::task::LocalSet::new();
            rt.block_on(local.run_until(search_and_step(&room, &strategy, clicks)))
        }
        Err(e) => Err(anyhow::Error::new(e)),
    };
    if let Err(e) = outcome {
        room.replay.finish(
            |j| room.emit("replay", j),
            |v| v.summary = format!("the replay failed: {e:#}"),
        );
    }
}

async fn search_and_step(
    room: &Arc<Room>,
    strategy: &Strategy,
    clicks: Receiver<Click>,
) -> anyhow::Result<()> {
    let db = &room.db;
    let plan = ExplorePlan {
        strategy: strategy.clone(),
        buyers: 2,
        stock: 1,
        quantity: 1,
        max_tries: room.settings.max_tries,
        seed: 0,
        bound: Some(2),
        schedule: None,
        max_schedules: 10_000,
        expect: None,
        spec: None,
        step: false,
        db: crate::db::DbOptions::default(),
        output: crate::report::Output::default(),
    };
    let ran = crate::explore::explore_on(db, &plan, &room.control).await?;
    let Some(ran) = ran else {
        room.replay
            .finish(|j| room.emit("replay", j), |v| v.summary = "stopped".into());
        return Ok(());
    };
    let r = ran.result;
    let sentence = crate::verdict::explore::sentence(&r);
    let Some(cx) = r.counterexample else {
        room.replay.finish(
            |j| room.emit("replay", j),
            |v| {
                v.summary = format!("{sentence}: no unsafe schedule to replay.");
            },
        );
        return Ok(());
    };
    let steps = cx.steps.len();
    room.replay.update(|j| room.emit("replay", j), |v| {
        v.summary = format!(
            "{sentence}. The shortest unsafe schedule has {steps} steps: click Next statement to run them one at a time."
        );
        v.steps = steps;
        v.stepping = true;
    });
    let mut monitor = db.connect().await?;
    let seeds = [ProductSeed {
        id: crate::explore::PRODUCT,
        name: "the last item".into(),
        stock: 1,
    }];
    Lab::prepare(db, strategy, &seeds, &mut monitor).await?;
    let mut sched = Scheduler::new(
        strategy.program.clone(),
        db.connect_options(),
        Duration::from_secs(10),
        Config {
            buyers: 2,
            product: crate::explore::PRODUCT,
            quantity: 1,
            max_tries: room.settings.max_tries,
            seed: 0,
        },
    )
    .await?;
    let mut driver = Clicks {
        room: room.clone(),
        clicks,
        cx: &cx,
    };
    let exec = sched
        .execute(&mut driver, &mut monitor, &room.control)
        .await;
    sched.close().await;
    let exec = exec?;
    let end = match exec.end {
        End::Finished => {
            let sold_out = exec
                .reports
                .iter()
                .flatten()
                .filter(|r| r.outcome == Outcome::SoldOut)
                .count() as u64;
            let sold_out = [(crate::explore::PRODUCT, sold_out)];
            let succeeded: Vec<i64> = exec
                .reports
                .iter()
                .enumerate()
                .filter(|(_, r)| r.as_ref().is_some_and(|r| r.outcome == Outcome::Succeeded))
                .map(|(i, _)| i as i64 + 1)
                .collect();
            let audit = db
                .audit_on(
                    &mut monitor,
                    &Claims {
                        succeeded: &succeeded,
                        unknown: &[],
                        sold_out: if sold_out[0].1 > 0 { &sold_out } else { &[] },
                        quantity: 1,
                    },
                )
                .await?;
            let word = crate::verdict::of_audit(&audit);
            format!(
                "Replayed: {} sold of {} in stock — {}.",
                audit.units_sold,
                audit.initial_stock,
                crate::verdict::word(Some(word))
            )
        }
        End::Stuck(why) => format!("The schedule got stuck: {why}"),
        End::Endless(why) => format!("The schedule never ended: {why}"),
        End::Stopped | End::Interrupted => "The replay was stopped.".to_string(),
    };
    room.replay
        .finish(|j| room.emit("replay", j), |v| v.summary = end);
    Ok(())
}

/// The scheduler's driver: the counterexample's choices, one per click.
struct Clicks<'a> {
    room: Arc<Room>,
    clicks: Receiver<Click>,
    cx: &'a Counterexample,
}

impl Driver for Clicks<'_> {
    fn choose(&mut self, at: &Choice<'_>) -> anyhow::Result<Option<u32>> {
        let proposed = self
            .cx
            .schedule
            .get(at.index)
            .copied()
            .filter(|b| at.enabled.contains(b))
            .unwrap_or_else(|| default_choice(at.enabled, at.prev));
        let ahead = render_choice(at, proposed);
        self.room.replay.update(
            |j| self.room.emit("replay", j),
            |v| {
                v.log.push_str(&ahead);
                v.stepping = true;
            },
        );
        // This thread runs nothing else while it waits, as `explore
        // --step` waits for Enter: the statements sent are the server's.
        match self.clicks.recv_timeout(IDLE) {
            Ok(Click::Next) => Ok(Some(proposed)),
            Ok(Click::Stop) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                Ok(None)
            }
        }
    }

    fn stepped(&mut self, index: usize, steps: &[Step], buyers: &[BuyerView]) {
        let done = render_stepped(index, steps, buyers);
        let lane = first_steps(self.cx, index + 1);
        self.room.replay.update(
            |j| self.room.emit("replay", j),
            |v| {
                v.log.push_str(&done);
                v.step = index + 1;
                v.swimlane = Some(crate::report::swimlane::diagram(&lane));
            },
        );
    }
}

/// The counterexample as far as its first `k` steps.
fn first_steps(c: &Counterexample, k: usize) -> Counterexample {
    let mut t = c.clone();
    t.steps.truncate(k);
    t.schedule.truncate(k);
    for s in &mut t.steps {
        s.completed_after = s.completed_after.map(|a| a.min(k));
    }
    t.anomalies
        .retain(|a| a.commit_step.is_some_and(|s| s <= k));
    for a in &mut t.anomalies {
        a.overtook.retain(|o| o.commit_step.is_some_and(|s| s <= k));
    }
    t
}
