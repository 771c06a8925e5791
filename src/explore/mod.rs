//! `racelab explore`: every interleaving of a few buyers, for real and
//! deterministically. K buyers (one attempt each, one product, each on its
//! own connection) run the strategy with the interpreter `run` uses, under a
//! scheduler that lets one SQL statement run at a time; every schedule with
//! at most P preemptions is run from a freshly reset lab and audited as
//! `run` audits, and the shortest unsafe one is named, with the anomaly the
//! trace analysis finds in its events.
//!
//! - `plan`: the arguments, validated.
//! - `schedule`: which schedules to run (depth-first, preemption-bounded).
//! - `scheduler`: one schedule: the gate, blocking detection, deadlocks.
//! - `monitor`: what the scheduler asks the server (which buyer waits on
//!   whom), behind a trait its unit tests answer.
//! - `lab`: the lab prepared once and reset from a snapshot.
//! - `spec`: a schedule as a PostgreSQL isolation-tester spec.
//! - `step`: `--step`, a schedule run by hand in the terminal.
//! - `gate`, `served`, `service`: `http URL --explore`, the same for the
//!   requests of a real service, scheduled through the wire proxy.
//!
//! The result is `result::explore`; its verdict `verdict::explore`; its
//! rendering `report::explore`; the command `commands::explore`.

pub mod gate;
pub mod lab;

pub mod monitor;
pub mod schedule;
pub mod scheduler;
pub mod served;
pub mod service;
pub mod service_spec;
pub mod space;
pub mod spec;
pub mod step;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection};

use crate::db::{Audit, Database, ProductSeed};
use crate::engine::{Control, Stop};
use crate::error::bad_input;
use crate::outcome::Outcome;
use crate::plan::explore::ExplorePlan;
use crate::report::progress::{Display, Progress, Task};
use crate::result::explore::{
    BuyerEnd, Counterexample, ExploreAnomaly, ExploreKind, ExploreResult, ExploreVerdict,
    Overtaken, Problem, ScheduleStep, StepRole,
};
use crate::result::{DatabaseInfo, Status, StrategyInfo};
use crate::strategy::TxEffect;
use crate::timings;
use crate::trace::{self, Role, Timeline};
use crate::verdict::Verdict;
use lab::Lab;
use schedule::{default_choice, next_prefix, preemptions, ChoicePoint};
use scheduler::{Choice, Config, Driver, End, Execution, Scheduler};

/// The one product of an explore lab.
pub const PRODUCT: i64 = 1;
/// How often a schedule whose run the server made differ (see
/// `scheduler::Execution::unexpected_victim`) is run again before it is
/// counted as diverged.
const RETRIES: u32 = 4;

/// What an explore run produced.
pub struct Ran {
    pub result: ExploreResult,
    /// The analysed trace of the counterexample (or of the schedule
    /// replayed), for `--trace`.
    pub timeline: Option<Timeline>,
}

/// Open the database, explore, stop the database. The buyers' tasks run
/// on the thread that schedules them (a `LocalSet`): one statement runs at
/// a time, so a second thread would only add a hand-over to every step.
pub async fn explore(plan: &ExplorePlan, control: Arc<Control>) -> anyhow::Result<Option<Ran>> {
    let db = Database::open(&plan.db).await?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.run_until(explore_on(&db, plan, &control)).await;
    let stopped = db.shutdown().await;
    let ran = outcome?;
    stopped.context("stopping the database")?;
    Ok(ran)
}

/// What the loop counts over all schedules.
#[derive(Default)]
struct Totals {
    explored: u64,
    unsafe_: u64,
    oversold: u64,
    errors: u64,
    stuck: u64,
    diverged: u64,
    retried: u64,
    steps: u64,
    longest: u64,
    waits: u64,
    deadlocks: u64,
    outcomes: BTreeMap<String, u64>,
    anomalies: BTreeMap<String, u64>,
    best: Option<(Counterexample, Timeline)>,
    problem: Option<Problem>,
}

/// Explore on an open database.
pub async fn explore_on(
    db: &Database,
    plan: &ExplorePlan,
    control: &Arc<Control>,
) -> anyhow::Result<Option<Ran>> {
    crate::strategy::confine::check_on(
        &plan.strategy,
        db.own_server(),
        db.shown_as(),
        db.unconfined(),
    )?;
    db.check_room(plan.buyers + 2, plan.buyers).await?;
    let started_at = crate::run::now_rfc3339();
    let mut monitor = db.connect().await?;
    let seeds = [ProductSeed {
        id: PRODUCT,
        name: format!("product {PRODUCT}"),
        stock: plan.stock,
    }];
    let lab = Lab::prepare(db, &plan.strategy, &seeds, &mut monitor).await?;
    let config = Config {
        buyers: plan.buyers,
        product: PRODUCT,
        quantity: plan.quantity,
        max_tries: plan.max_tries,
        seed: plan.seed,
    };
    let mut sched = Scheduler::new(
        plan.strategy.program.clone(),
        db.buyer_options(),
        plan.db.connect_timeout,
        config,
    )
    .await?;
    let clock = Instant::now();
    let outcome = explore_loop(db, plan, control, &lab, &mut sched, &mut monitor).await;
    sched.close().await;
    let _ = monitor.close().await;
    let (mut totals, replay, status, complete) = match outcome? {
        Some(done) => done,
        None => return Ok(None),
    };
    let complete = complete && totals.diverged == 0;
    let mut result = ExploreResult {
        kind: ExploreKind::Explore,
        racelab_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        strategy: StrategyInfo::of(&plan.strategy),
        database: DatabaseInfo {
            kind: db.kind(),
            server_version: db.server_version().to_string(),
            durable: db.durable(),
        },
        buyers: plan.buyers,
        stock: plan.stock,
        quantity: plan.quantity,
        attempts_per_buyer: 1,
        max_tries: plan.max_tries,
        seed: plan.seed,
        preemption_bound: plan.bound,
        replayed: replay.as_ref().map(|r| r.0.schedule.clone()),
        // Decided below, from the counts.
        verdict: ExploreVerdict::Inconclusive,
        verdict_reason: None,
        schedules_explored: totals.explored,
        unsafe_schedules: totals.unsafe_,
        oversold_schedules: totals.oversold,
        error_schedules: totals.errors,
        stuck_schedules: totals.stuck,
        diverged_schedules: totals.diverged,
        retried_schedules: totals.retried,
        complete,
        status: status.0,
        status_reason: status.1,
        steps: totals.steps,
        longest_schedule: totals.longest,
        waits: totals.waits,
        deadlocks: totals.deadlocks,
        outcomes: totals.outcomes,
        anomalies_seen: totals.anomalies,
        deadlock_timeout_ms: sched.deadlock_timeout.as_millis() as u64,
        wall_seconds: clock.elapsed().as_secs_f64(),
        counterexample: totals.best.as_ref().map(|b| b.0.clone()),
        replay: replay.as_ref().map(|r| r.0.clone()),
        first_problem: totals.problem.take(),
    };
    (result.verdict, result.verdict_reason) =
        crate::verdict::explore::decide(&result, plan.max_schedules);
    // The trace of what the report shows: the counterexample, else the replay.
    let timeline = totals.best.take().or(replay).map(|b| b.1);
    Ok(Some(Ran { result, timeline }))
}

type LoopEnd = (
    Totals,
    Option<(Counterexample, Timeline)>,
    (Status, Option<String>),
    bool,
);

/// The schedules, one after another: each from the reset lab, audited.
/// `None`: `--step` was left early.
async fn explore_loop(
    db: &Database,
    plan: &ExplorePlan,
    control: &Arc<Control>,
    lab: &Lab,
    sched: &mut Scheduler,
    monitor: &mut PgConnection,
) -> anyhow::Result<Option<LoopEnd>> {
    let replaying = plan.schedule.is_some() || plan.step;
    let mut totals = Totals::default();
    let mut prefix: Vec<u32> = plan.schedule.clone().unwrap_or_default();
    let mut expected: Vec<ChoicePoint> = Vec::new();
    let mut fresh = true;
    let mut complete = false;
    let mut replay = None;
    let mut retry = 0;
    // Where the time goes, for RACELAB_TIMINGS=1.
    let (mut t_reset, mut t_run, mut t_audit) = Default::default();
    let (progress, meter) = progress(plan, replaying);
    loop {
        if control.is_stopped() {
            break;
        }
        let t = Instant::now();
        if !fresh {
            lab.reset(monitor).await?;
        }
        fresh = false;
        t_reset += t.elapsed();
        let t = Instant::now();
        let exec = if plan.step {
            let mut d = step::StepDriver::new(prefix.clone(), plan.buyers);
            sched.execute(&mut d, monitor, control).await?
        } else {
            let mut d = Follow {
                prefix: &prefix,
                expected: &expected,
                user: replaying,
                may_stop: retry < RETRIES,
                diverged: None,
            };
            let exec = sched.execute(&mut d, monitor, control).await?;
            let odd = match (&d.diverged, &exec.unexpected_victim) {
                (Some(why), _) | (None, Some(why)) if exec.end != End::Interrupted => {
                    Some(why.clone())
                }
                _ => None,
            };
            if let Some(why) = odd {
                if retry < RETRIES {
                    // Run the same schedule again from a fresh lab.
                    retry += 1;
                    totals.retried += 1;
                    t_run += t.elapsed();
                    continue;
                }
                totals.diverged += 1;
                totals.problem.get_or_insert(Problem {
                    schedule: exec.schedule(),
                    what: why,
                });
            }
            exec
        };
        retry = 0;
        t_run += t.elapsed();
        let t = Instant::now();
        match &exec.end {
            End::Interrupted => break,
            End::Stopped => return Ok(None),
            End::Stuck(why) => {
                totals.explored += 1;
                totals.stuck += 1;
                count_steps(&mut totals, &exec);
                totals.problem.get_or_insert(Problem {
                    schedule: exec.schedule(),
                    what: format!("stuck: {why}"),
                });
            }
            End::Endless(why) => {
                // Exploring on would run every longer schedule to the same
                // end: stop here, aborted (never SAFE), saying why (its
                // schedule of thousands of steps would tell nothing more).
                totals.explored += 1;
                totals.stuck += 1;
                count_steps(&mut totals, &exec);
                control.stop(Stop::Aborted(why.clone()));
                break;
            }
            End::Finished => {
                if replaying && prefix.len() > exec.steps.len() {
                    return Err(bad_input(format!(
                        "--schedule has {} steps, but every buyer finished after {}; drop the last {}",
                        prefix.len(),
                        exec.steps.len(),
                        prefix.len() - exec.steps.len()
                    )));
                }
                let (record, timeline) = evaluate(db, plan, &exec, monitor, &mut totals).await?;
                if replaying {
                    replay = Some((record.clone(), timeline.clone()));
                }
                if record.verdict != Verdict::Safe
                    && shorter(&record, totals.best.as_ref().map(|b| &b.0))
                {
                    totals.best = Some((record, timeline));
                }
            }
        }
        t_audit += t.elapsed();
        meter.record(&exec.schedule(), totals.explored);
        if replaying {
            break;
        }
        match next_prefix(&exec.points, plan.bound) {
            None => {
                complete = true;
                break;
            }
            Some(next) => {
                if totals.explored >= plan.max_schedules {
                    break;
                }
                expected = exec.points;
                prefix = next;
            }
        }
    }
    drop(progress);
    timings::record("explore: reset the lab", t_reset);
    timings::record("explore: run the schedules", t_run);
    timings::record("explore: audit and record", t_audit);
    let status = crate::run::status_of(control);
    let complete = complete || (replaying && status.0 == Status::Completed);
    Ok(Some((totals, replay, status, complete)))
}

/// The progress display of the schedules (none for one schedule replayed
/// or stepped through), and the meter it reads.
fn progress(plan: &ExplorePlan, replaying: bool) -> (Progress, Arc<space::Meter>) {
    let meter = Arc::new(space::Meter::new(plan.buyers, plan.bound));
    if replaying {
        return (Progress::off(), meter);
    }
    let progress = Progress::start(Display::detect(plan.output.quiet), None);
    let m = meter.clone();
    let bound = plan.bound.map_or("every schedule".to_string(), |p| {
        format!("at most {p} preemptions")
    });
    progress.show(Task::new(
        format!(
            "explore {}, {} buyers, {bound}",
            plan.strategy.name, plan.buyers
        ),
        "schedules",
        move || m.read(),
    ));
    (progress, meter)
}

/// Whether `c` beats the shortest counterexample so far: fewer steps, then
/// fewer preemptions; the first found wins a tie.
fn shorter(c: &Counterexample, best: Option<&Counterexample>) -> bool {
    best.map_or(true, |b| {
        (c.steps.len(), c.preemptions) < (b.steps.len(), b.preemptions)
    })
}

fn count_steps(totals: &mut Totals, exec: &Execution) {
    totals.steps += exec.steps.len() as u64;
    totals.longest = totals.longest.max(exec.steps.len() as u64);
    totals.waits += exec
        .steps
        .iter()
        .filter(|s| !s.waited_for.is_empty())
        .count() as u64;
    totals.deadlocks += exec.deadlock_victims.len() as u64;
}

/// Audit a finished schedule as `run` audits a race, count it, and record
/// it step by step.
async fn evaluate(
    db: &Database,
    plan: &ExplorePlan,
    exec: &Execution,
    monitor: &mut PgConnection,
    totals: &mut Totals,
) -> anyhow::Result<(Counterexample, Timeline)> {
    totals.explored += 1;
    count_steps(totals, exec);
    let mut succeeded = Vec::new();
    for (i, r) in exec.reports.iter().enumerate() {
        let r = r.as_ref().expect("a finished schedule has every report");
        if r.connection_lost {
            anyhow::bail!(
                "lost the connection to the server: {}",
                r.message.as_deref().unwrap_or("connection lost")
            );
        }
        *totals
            .outcomes
            .entry(r.outcome.as_str().to_string())
            .or_default() += 1;
        if r.outcome == Outcome::Succeeded {
            succeeded.push(i as i64 + 1);
        }
    }
    let told_sold_out = exec
        .reports
        .iter()
        .flatten()
        .filter(|r| r.outcome == Outcome::SoldOut)
        .count() as u64;
    let sold_out = [(PRODUCT, told_sold_out)];
    let claims = crate::db::Claims {
        succeeded: &succeeded,
        unknown: &[],
        sold_out: if told_sold_out > 0 { &sold_out } else { &[] },
        quantity: plan.quantity,
    };
    let audit = db
        .audit_on(monitor, &claims)
        .await
        .context("auditing the lab after a schedule")?;
    let (record, timeline) = record(plan, exec, audit);
    if let Some((b, msg)) = exec.reports.iter().enumerate().find_map(|(i, r)| {
        let r = r.as_ref()?;
        (r.outcome == Outcome::Error).then(|| (i + 1, r.message.clone().unwrap_or_default()))
    }) {
        totals.errors += 1;
        totals.problem.get_or_insert(Problem {
            schedule: record.schedule.clone(),
            what: format!("buyer {b}'s attempt ended in an error: {msg}"),
        });
    }
    if record.verdict != Verdict::Safe {
        totals.unsafe_ += 1;
        if record.verdict == Verdict::Oversold {
            totals.oversold += 1;
        }
        let mut names: Vec<&str> = record.anomalies.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            *totals.anomalies.entry(n.to_string()).or_default() += 1;
        }
    }
    Ok((record, timeline))
}

/// A schedule as the result records it: its steps with what each did, the
/// anomalies the trace analysis names in its events, the audit.
fn record(plan: &ExplorePlan, exec: &Execution, audit: Audit) -> (Counterexample, Timeline) {
    let timeline = trace::analyze(
        &plan.strategy.name,
        &plan.strategy.program,
        &exec.traces,
        exec.released_at,
        plan.quantity,
    );
    let rel = |t: Instant| t.saturating_duration_since(exec.released_at).as_micros() as u64;
    let mut steps: Vec<ScheduleStep> = Vec::with_capacity(exec.steps.len());
    // (buyer, start µs) of each step, to place the analysis on the steps.
    let mut starts: Vec<(u32, Option<u64>)> = Vec::with_capacity(exec.steps.len());
    for s in &exec.steps {
        let ev = s.event.as_ref();
        let start = ev.map(|e| rel(e.start));
        let traced = timeline
            .steps
            .iter()
            .find(|t| t.buyer == s.buyer && Some(t.start_us) == start && t.line == s.at.line);
        let (role, value) = match (s.at.tx, traced.map(|t| &t.role)) {
            (TxEffect::Rollback, _) => (StepRole::Rollback, None),
            (_, Some(Role::Read { value, .. })) => (StepRole::Read, Some(*value)),
            (_, Some(Role::Write { value, .. })) => (StepRole::Write, *value),
            (_, Some(Role::NoWrite)) => (StepRole::NoWrite, None),
            (_, Some(Role::Commit { .. })) => (StepRole::Commit, None),
            _ => (StepRole::Other, None),
        };
        starts.push((s.buyer, start));
        steps.push(ScheduleStep {
            buyer: s.buyer,
            try_no: s.at.try_no,
            line: s.at.line,
            sql: s.at.sql.clone(),
            rollback_by_racelab: s.at.rollback,
            preemption: s.preemption,
            role,
            value,
            rows: ev.and_then(|e| e.rows),
            values: ev.map(|e| e.values.clone()).unwrap_or_default(),
            error: ev.and_then(|e| e.error.clone()),
            waited_for: s.waited_for.clone(),
            completed_after: s.completed_after.map(|k| k + 1),
        });
    }
    let step_at = |buyer: u32, us: u64| -> Option<usize> {
        starts
            .iter()
            .position(|&(b, s)| b == buyer && s == Some(us))
            .map(|i| i + 1)
    };
    let anomalies = timeline
        .anomalies
        .iter()
        .map(|a| ExploreAnomaly {
            name: a.name.to_string(),
            prevented_at: a.prevented_at.map(str::to_string),
            buyer: a.buyer,
            item: a.item.clone(),
            read_value: a.read_value,
            read_step: step_at(a.buyer, a.read_us),
            commit_step: step_at(a.buyer, a.commit_us),
            committed: a.committed.clone(),
            overtook: a
                .overtaken_by
                .iter()
                .map(|(b, at, what)| {
                    let commit_step = step_at(*b, *at);
                    let write_step = commit_step.and_then(|c| {
                        (1..=c).rev().find(|&k| {
                            steps[k - 1].buyer == *b && steps[k - 1].role == StepRole::Write
                        })
                    });
                    Overtaken {
                        buyer: *b,
                        write_step,
                        commit_step,
                        committed: what.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    let buyers = exec
        .reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.as_ref()?;
            Some(BuyerEnd {
                buyer: i as u32 + 1,
                outcome: r.outcome,
                tries: r.tries,
                message: r.message.clone(),
            })
        })
        .collect();
    let c = Counterexample {
        schedule: exec.schedule(),
        preemptions: preemptions(&exec.points),
        verdict: crate::verdict::of_audit(&audit),
        audit,
        anomalies,
        steps,
        buyers,
        deadlock_victims: exec.deadlock_victims.clone(),
    };
    (c, timeline)
}

/// The isolation-tester spec of a recorded schedule.
pub fn spec_of(plan: &ExplorePlan, c: &Counterexample) -> anyhow::Result<String> {
    let steps: Vec<spec::SpecStep> = c
        .steps
        .iter()
        .map(|s| spec::SpecStep {
            buyer: s.buyer,
            line: s.line,
            try_no: s.try_no,
            sql: s.sql.clone(),
            by_racelab: s.rollback_by_racelab,
        })
        .collect();
    spec::render(&spec::SpecInput {
        strategy: &plan.strategy.name,
        program: &plan.strategy.program,
        schema: format!("{}_spec", plan.db.schema),
        buyers: plan.buyers,
        stock: plan.stock,
        quantity: plan.quantity,
        product: PRODUCT,
        steps: &steps,
        deadlock_victims: c.deadlock_victims.clone(),
    })
}

/// Follows a prefix of choices, then the default policy. In a replay of a
/// user's `--schedule`, a choice that cannot be taken is bad input; in the
/// exploration, a prefix that no longer fits (or reaches a different set of
/// buyers able to run than the schedule it came from) is a divergence.
struct Follow<'a> {
    prefix: &'a [u32],
    expected: &'a [ChoicePoint],
    user: bool,
    /// On a divergence, stop (to run the schedule again) rather than go on.
    may_stop: bool,
    diverged: Option<String>,
}

impl Driver for Follow<'_> {
    fn choose(&mut self, at: &Choice<'_>) -> anyhow::Result<Option<u32>> {
        if let Some(&b) = self.prefix.get(at.index) {
            if self.user {
                if at.enabled.contains(&b) {
                    return Ok(Some(b));
                }
                return Err(bad_input(format!(
                    "--schedule: step {} names buyer {b}, who {}; buyers that can run at step {}: {}",
                    at.index + 1,
                    step::why_not(b, at.buyers),
                    at.index + 1,
                    at.enabled
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let same = self
                .expected
                .get(at.index)
                .map_or(true, |p| p.enabled == at.enabled);
            if same && at.enabled.contains(&b) {
                return Ok(Some(b));
            }
            if self.diverged.is_none() {
                self.diverged =
                    Some(format!(
                    "replaying the schedule, step {} found buyers {:?} able to run instead of {:?}",
                    at.index + 1,
                    at.enabled,
                    self.expected.get(at.index).map(|p| p.enabled.clone()).unwrap_or_default()
                ));
            }
            if self.may_stop {
                return Ok(None);
            }
        }
        Ok(Some(default_choice(at.enabled, at.prev)))
    }
}
