//! `racelab http URL --explore`: every interleaving of K requests to a real
//! service. The service runs behind the wire proxy with a gate (`gate`)
//! that holds each statement batch it sends; each schedule starts from a
//! reset service (`--reset-url`, `--reset-sql`), runs the flow's steps
//! before the race outside the schedule, then sends one request per buyer
//! and grants their batches one at a time (`served`), in the order the
//! same depth-first, preemption-bounded enumeration as a script's explore
//! chooses (`schedule`, `Follow`). Each finished schedule is audited with
//! the same truth as `http` (`http::truth`) and its statements analysed
//! by the service trace (`service::trace`), which names the anomaly.
//!
//! The result is an explore result; what differs from a script's is only
//! where a step comes from: a step is a batch the service sent, its SQL
//! the statements the proxy recorded with their bound values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::Connection as _;
use tokio::sync::oneshot;

use super::gate::{Event, ServiceGate};
use super::schedule::{next_prefix, preemptions, ChoicePoint};
use super::scheduler::End;
use super::served::{Run, Served};
use super::{shorter, Follow, Ran, Totals, RETRIES};
use crate::engine::{Attempt as _, Control, Lanes as _};
use crate::error::bad_input;
use crate::http::truth::{self, Reading, ServiceDb};
use crate::outcome::{AttemptReport, Outcome};
use crate::plan::explore_service::ServiceExplorePlan;
use crate::plan::TargetPlan;
use crate::proxy::record::{Record, Statement};
use crate::result::explore::{
    BuyerEnd, Counterexample, ExploreAnomaly, ExploreKind, ExploreResult, ExploreVerdict,
    Overtaken, Problem, ScheduleStep, StepRole,
};
use crate::result::{DatabaseInfo, Status, StrategyInfo};
use crate::service::trace::{self, RequestSpan};
use crate::service::{Backend, ProxyWatch};
use crate::strategy::AttemptCtx;
use crate::verdict::Verdict;

/// How long the requests of a schedule given up on may take to answer.
const DRAIN: Duration = Duration::from_secs(30);
/// The SQLSTATE of a deadlock PostgreSQL broke.
const DEADLOCK: &str = "40P01";

/// Start the service behind a gated proxy, explore, stop everything.
pub async fn explore(
    plan: &mut ServiceExplorePlan,
    control: Arc<Control>,
) -> anyhow::Result<Option<(Ran, Option<String>)>> {
    let (gate, rx) = ServiceGate::new();
    let gate = Arc::new(gate);
    let backend_plan = plan.race.backend.clone().expect("validated: a backend");
    let mut backend = Backend::start_gated(&backend_plan, &control, Some(gate.clone())).await?;
    if let Some(log) = backend_plan.command.as_ref().map(|_| &backend_plan.log) {
        plan.race.output.note(&format!(
            "racelab: the service runs behind the wire proxy at {} (its output: {})",
            crate::db::redact_url(&backend.service_url),
            log.display()
        ));
    }
    let outcome = explore_on(plan, &mut backend, &gate, rx, &control).await;
    let outcome = match (outcome, &plan.spec) {
        (Ok(Some((ran, stmts))), Some(_)) => spec_of(plan, &backend.direct_url, &ran, &stmts)
            .await
            .map(|spec| Some((ran, spec))),
        (Ok(o), _) => Ok(o.map(|(ran, _)| (ran, None))),
        (Err(e), _) => Err(e),
    };
    let outcome = match outcome {
        // A service that died is the reason, whatever the schedule saw.
        Err(e) => Err(match (backend.check_alive(), backend.last_output()) {
            (Err(died), _) => died,
            (Ok(()), Some(tail)) => e.context(tail),
            (Ok(()), None) => e,
        }),
        Ok(r) => backend.check_alive().map(|()| r),
    };
    let stopped = backend.shutdown();
    let ran = outcome?;
    stopped?;
    Ok(ran)
}

/// `--spec`: the counterexample (or the replay) as an isolation-tester
/// spec, its setup dumped from the service once more reset.
async fn spec_of(
    plan: &ServiceExplorePlan,
    direct_url: &str,
    ran: &Ran,
    stmts: &[Statement],
) -> anyhow::Result<Option<String>> {
    let r = &ran.result;
    let Some(c) = r.counterexample.as_ref().or(r.replay.as_ref()) else {
        return Ok(None);
    };
    let TargetPlan::Http(service) = &plan.race.target else {
        unreachable!("validated: an http target");
    };
    prepare(service).await?;
    let (touched, written) = super::service_spec::tables(stmts);
    if touched.is_empty() {
        anyhow::bail!("--spec: the schedule's statements touch no table racelab can read");
    }
    let bins = crate::db::bins::find_server_bins(None)?;
    let pg_dump = bins.postgres.with_file_name("pg_dump");
    let url = direct_url.to_string();
    let setup =
        tokio::task::spawn_blocking(move || super::service_spec::dump(&pg_dump, &url, &touched))
            .await
            .context("the pg_dump task failed")??;
    let verify = match &service.source {
        truth::Source::Sql { sql } => Some(sql.as_str()),
        _ => None,
    };
    super::service_spec::render(&plan.name, plan.buyers, c, &setup, &written, verify).map(Some)
}

/// What one schedule needs besides the schedule itself.
struct Ctx<'a> {
    plan: &'a ServiceExplorePlan,
    service: &'a crate::http::Service,
    watch: Arc<ProxyWatch>,
    gate: &'a ServiceGate,
    seed: u64,
}

async fn explore_on(
    plan: &mut ServiceExplorePlan,
    backend: &mut Backend,
    gate: &Arc<ServiceGate>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    control: &Arc<Control>,
) -> anyhow::Result<Option<(Ran, Vec<Statement>)>> {
    let direct = ServiceDb::new(&backend.direct_url, Duration::from_secs(10))?;
    {
        let TargetPlan::Http(service) = &mut plan.race.target else {
            unreachable!("validated: an http target");
        };
        if service.db.is_none() {
            service.db = Some(direct.clone());
        }
    }
    let plan = &*plan;
    let TargetPlan::Http(service) = &plan.race.target else {
        unreachable!("validated: an http target");
    };
    let started_at = crate::run::now_rfc3339();
    let (server_version, durable) = direct.describe().await?;
    let mut monitor = direct.connect().await?;
    let deadlock_ms: i64 =
        sqlx::query_scalar("SELECT setting::int8 FROM pg_settings WHERE name = 'deadlock_timeout'")
            .fetch_one(&mut monitor)
            .await
            .context("reading the server's deadlock_timeout")?;
    let deadlock_timeout = Duration::from_millis(deadlock_ms.max(1) as u64);
    let cx = Ctx {
        plan,
        service,
        watch: backend.watch(),
        gate,
        seed: plan.race.pipeline.seed,
    };
    let replaying = plan.schedule.is_some();
    let mut totals = Totals::default();
    let mut prefix: Vec<u32> = plan.schedule.clone().unwrap_or_default();
    let mut expected: Vec<ChoicePoint> = Vec::new();
    let mut expected_parked: Vec<Vec<(u32, String)>> = Vec::new();
    let mut complete = false;
    let mut replay: Option<Counterexample> = None;
    let mut best_stmts: Vec<Statement> = Vec::new();
    let mut best: Option<Counterexample> = None;
    let mut replay_stmts: Vec<Statement> = Vec::new();
    let mut retry = 0;
    let mut initial: Option<i64> = None;
    let clock = Instant::now();
    loop {
        if control.is_stopped() {
            break;
        }
        let before = prepare(service).await?;
        let stock = before.stock.or(service.declared_stock).unwrap_or(0);
        initial.get_or_insert(stock);
        let mut follow = Follow {
            prefix: &prefix,
            expected: &expected,
            user: replaying,
            may_stop: retry < RETRIES,
            diverged: None,
        };
        let mut run = Run {
            gate,
            rx: &mut rx,
            settle: plan.settle,
            deadlock_timeout,
        };
        let served = one(&cx, &mut run, &mut follow, &mut monitor, control).await?;
        let mut odd = follow.diverged.clone();
        if odd.is_none() && !replaying {
            odd = parked_differs(&served, &expected_parked, prefix.len());
        }
        if served.end == End::Interrupted {
            break;
        }
        if let Some(why) = odd {
            if retry < RETRIES {
                retry += 1;
                totals.retried += 1;
                continue;
            }
            totals.diverged += 1;
            totals.problem.get_or_insert(Problem {
                schedule: served.schedule(),
                what: why,
            });
        }
        retry = 0;
        let records = cx.watch.records().await;
        match &served.end {
            End::Interrupted | End::Stopped => break,
            End::Stuck(why) | End::Endless(why) => {
                totals.explored += 1;
                totals.stuck += 1;
                count(&mut totals, &served, &records);
                totals.problem.get_or_insert(Problem {
                    schedule: served.schedule(),
                    what: format!("stuck: {why}"),
                });
            }
            End::Finished => {
                if replaying && prefix.len() > served.steps.len() {
                    return Err(bad_input(format!(
                        "--schedule has {} steps, but every request answered after {}; drop the last {}",
                        prefix.len(),
                        served.steps.len(),
                        prefix.len() - served.steps.len()
                    )));
                }
                let after = service
                    .read()
                    .await
                    .context("reading the truth after a schedule")?;
                let (record, stmts) = evaluate(&cx, &served, &records, stock, before, after);
                tally(&mut totals, &served, &records, &record);
                if replaying {
                    replay = Some(record.clone());
                    replay_stmts = stmts.clone();
                }
                if record.verdict != Verdict::Safe && shorter(&record, best.as_ref()) {
                    best_stmts = stmts;
                    best = Some(record);
                }
            }
        }
        if replaying {
            break;
        }
        match next_prefix(&served.points, plan.bound) {
            None => {
                complete = true;
                break;
            }
            Some(next) => {
                if totals.explored >= plan.max_schedules {
                    break;
                }
                expected = served.points;
                expected_parked = served.parked;
                prefix = next;
            }
        }
    }
    let _ = monitor.close().await;
    let status = crate::run::status_of(control);
    let complete =
        (complete || (replaying && status.0 == Status::Completed)) && totals.diverged == 0;
    let scenario = &plan.race.pipeline.scenario;
    let mut result = ExploreResult {
        kind: ExploreKind::Explore,
        racelab_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        strategy: StrategyInfo {
            name: plan.name.clone(),
            source: crate::result::explore::SERVICE_SOURCE.into(),
            sha256: crate::hex::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                plan.name.as_bytes(),
            )),
        },
        database: DatabaseInfo {
            kind: if backend_is_embedded(cx.watch.info()) {
                crate::db::DbKind::Embedded
            } else {
                crate::db::DbKind::External
            },
            server_version,
            durable,
        },
        buyers: plan.buyers,
        stock: initial.unwrap_or(0),
        quantity: scenario.quantity,
        attempts_per_buyer: 1,
        max_tries: 1,
        seed: cx.seed,
        preemption_bound: plan.bound,
        replayed: plan.schedule.clone(),
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
        deadlock_timeout_ms: deadlock_timeout.as_millis() as u64,
        wall_seconds: clock.elapsed().as_secs_f64(),
        counterexample: best,
        replay,
        first_problem: totals.problem.take(),
    };
    (result.verdict, result.verdict_reason) =
        crate::verdict::explore::decide(&result, plan.max_schedules);
    if let (ExploreVerdict::Inconclusive, true) = (result.verdict, result.diverged_schedules > 0) {
        if let Some(p) = &result.first_problem {
            result.verdict_reason = Some(format!(
                "{}: {}",
                result.verdict_reason.clone().unwrap_or_default(),
                p.what
            ));
        }
    }
    if result.counterexample.is_none() {
        best_stmts = replay_stmts;
    }
    Ok(Some((
        Ran {
            result,
            timeline: None,
        },
        best_stmts,
    )))
}

fn backend_is_embedded(info: &crate::result::ServiceInfo) -> bool {
    info.database == "embedded"
}

/// Reset the service and read the truth before a schedule (the gate lets
/// all of it pass).
async fn prepare(service: &crate::http::Service) -> anyhow::Result<Reading> {
    service.reset().await?;
    let before = service.read().await?;
    service.check_declared(&before)?;
    Ok(before)
}

/// One schedule: the flow's steps before the race (ungated), then the
/// requests, scheduled.
async fn one(
    cx: &Ctx<'_>,
    run: &mut Run<'_>,
    follow: &mut Follow<'_>,
    monitor: &mut sqlx::PgConnection,
    control: &Arc<Control>,
) -> anyhow::Result<Served> {
    let lanes = &*cx.service.lanes;
    let mut config = cx.plan.race.pipeline.race_config(cx.seed);
    config.buyers = cx.plan.buyers;
    config.attempts_per_buyer = 1;
    let mut held = lanes.open(&config, control).await?;
    for (i, lane) in held.iter().enumerate() {
        if let Some(out) = &lane.out {
            anyhow::bail!(
                "buyer {}'s step {:?} before the race failed: {} (explore needs every buyer in the race)",
                i + 1,
                lanes.flow.steps[out.step].name,
                out.why
            );
        }
    }
    cx.watch.clear();
    cx.gate.begin();
    let tx = cx.gate.sender();
    let mut starts = Vec::new();
    let mut requests = Vec::new();
    for (i, lane) in held.iter_mut().enumerate() {
        let (start, started) = oneshot::channel::<()>();
        starts.push(start);
        let tx = tx.clone();
        let buyer = i as u32 + 1;
        let ctx = AttemptCtx {
            product: crate::explore::PRODUCT,
            qty: config.quantity,
            buyer: i64::from(buyer),
            attempt: i64::from(buyer),
            think_ms: 0,
            max_tries: 1,
        };
        let seed = cx.seed.wrapping_add(u64::from(buyer));
        requests.push(async move {
            if started.await.is_err() {
                return;
            }
            let mut b = lanes.buyer(lane, seed);
            let report = match b.attempt(&ctx, None).await {
                Ok((r, _)) => r,
                Err(message) => AttemptReport {
                    outcome: Outcome::Error,
                    tries: 1,
                    message: Some(message),
                    connection_lost: false,
                },
            };
            let _ = tx.send(Event::Answered {
                request: buyer,
                report,
            });
        });
    }
    drop(tx);
    let all = futures_util::future::join_all(requests);
    tokio::pin!(all);
    let mut answered_all = false;
    let served = {
        let driving = run.drive(starts, follow, monitor, control);
        tokio::pin!(driving);
        loop {
            tokio::select! {
                r = &mut driving => break r,
                _ = &mut all, if !answered_all => answered_all = true,
            }
        }
    };
    // Whatever the schedule did, nothing is held any longer.
    cx.gate.end();
    while let Ok(ev) = run.rx.try_recv() {
        drop(ev);
    }
    if !answered_all && tokio::time::timeout(DRAIN, &mut all).await.is_err() {
        anyhow::bail!(
            "the service did not answer the requests of a schedule given up on within {} s",
            DRAIN.as_secs()
        );
    }
    while let Ok(ev) = run.rx.try_recv() {
        drop(ev);
    }
    served
}

/// The first choice point of the replayed prefix at which a request was
/// parked at another statement than when the prefix was found.
fn parked_differs(
    served: &Served,
    expected: &[Vec<(u32, String)>],
    prefix: usize,
) -> Option<String> {
    for (i, (seen, was)) in served.parked.iter().zip(expected).take(prefix).enumerate() {
        if seen != was {
            let (r, now, then) = seen
                .iter()
                .zip(was)
                .find(|(a, b)| a != b)
                .map(|(a, b)| (a.0, a.1.clone(), b.1.clone()))
                .unwrap_or((0, String::new(), String::new()));
            return Some(format!(
                "replaying the schedule, step {}: request {r} sent `{}` where the schedule it came from had `{}` (the service depends on more than the interleaving: the clock, randomness, or which pooled connection it gets)",
                i + 1,
                crate::http::text::truncate(&now),
                crate::http::text::truncate(&then)
            ));
        }
    }
    None
}

/// The statements the proxy recorded, in order.
fn statements(records: &[Record]) -> Vec<&Statement> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Statement(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The recorded statements of each granted step: those its connection ran
/// from its grant until the next grant (or the end).
fn step_statements(cx: &Ctx<'_>, served: &Served, stmts: &[&Statement]) -> Vec<Vec<usize>> {
    let grants: Vec<u64> = served
        .steps
        .iter()
        .map(|s| cx.watch.us(s.granted))
        .collect();
    served
        .steps
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let from = grants[k];
            // Its statements start before any later grant of the same
            // connection.
            let until = served.steps[k + 1..]
                .iter()
                .zip(&grants[k + 1..])
                .find(|(t, _)| t.at.conn == s.at.conn)
                .map_or(u64::MAX, |(_, g)| *g);
            stmts
                .iter()
                .enumerate()
                .filter(|(_, st)| {
                    st.conn == s.at.conn && st.start_us >= from && st.start_us < until
                })
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

fn count(totals: &mut Totals, served: &Served, records: &[Record]) {
    totals.steps += served.steps.len() as u64;
    totals.longest = totals.longest.max(served.steps.len() as u64);
    totals.waits += served
        .steps
        .iter()
        .filter(|s| !s.waited_for.is_empty())
        .count() as u64;
    let broken = statements(records)
        .iter()
        .filter(|s| s.error.as_ref().is_some_and(|e| e.sqlstate == DEADLOCK))
        .count() as u64;
    totals.deadlocks += broken;
}

fn tally(totals: &mut Totals, served: &Served, records: &[Record], record: &Counterexample) {
    totals.explored += 1;
    count(totals, served, records);
    for b in &record.buyers {
        *totals
            .outcomes
            .entry(b.outcome.as_str().to_string())
            .or_default() += 1;
    }
    if let Some(b) = record.buyers.iter().find(|b| b.outcome == Outcome::Error) {
        totals.errors += 1;
        totals.problem.get_or_insert(Problem {
            schedule: record.schedule.clone(),
            what: format!(
                "request {}'s answer was an error: {}",
                b.buyer,
                b.message.clone().unwrap_or_default()
            ),
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
}

/// Audit a finished schedule with the service's truth and record it step
/// by step, with the anomalies the service trace names. Also returns the
/// statements of its steps (for the spec).
fn evaluate(
    cx: &Ctx<'_>,
    served: &Served,
    records: &[Record],
    initial: i64,
    before: Reading,
    after: Reading,
) -> (Counterexample, Vec<Statement>) {
    let reports: Vec<&AttemptReport> = served.reports.iter().flatten().collect();
    let n = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count() as u64;
    let qty = cx.plan.race.pipeline.scenario.quantity;
    let audit = truth::audit(
        initial,
        before,
        after,
        n(Outcome::Succeeded),
        n(Outcome::Unknown),
        qty,
    );
    let left = audit.final_stock;
    let audit = audit.with_sold_out([(left, n(Outcome::SoldOut))], qty);
    let stmts = statements(records);
    let spans: Vec<RequestSpan> = (0..served.reports.len())
        .filter_map(|i| {
            Some(RequestSpan {
                buyer: i as u32 + 1,
                attempt: i as i64 + 1,
                start_us: cx.watch.us(served.sent[i]?),
                end_us: cx.watch.us(served.answered[i]?),
            })
        })
        .collect();
    let release = served.sent.iter().flatten().min().copied();
    let release_us = release.map_or(0, |t| cx.watch.us(t));
    let analysis = trace::analyze(records, &spans, release_us);
    let of_step = step_statements(cx, served, &stmts);
    let rel = |us: u64| us as i64 - release_us as i64;
    let mut steps = Vec::with_capacity(served.steps.len());
    let mut victims = Vec::new();
    for (k, s) in served.steps.iter().enumerate() {
        let mine = &of_step[k];
        let sql = if mine.is_empty() {
            s.at.sql.clone()
        } else {
            mine.iter()
                .map(|&i| inline(&stmts[i].sql, &stmts[i].params))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let traced = mine.iter().filter_map(|&i| analysis.steps.get(i));
        let role = traced
            .clone()
            .map(|t| match t.role.as_str() {
                "read" => StepRole::Read,
                "write" => StepRole::Write,
                "commit" => StepRole::Commit,
                "rollback" => StepRole::Rollback,
                _ => StepRole::Other,
            })
            .find(|r| *r != StepRole::Other)
            .unwrap_or(StepRole::Other);
        let error = mine
            .iter()
            .find_map(|&i| stmts[i].error.as_ref())
            .map(|e| format!("{}: {}", e.sqlstate, e.message));
        if mine.iter().any(|&i| {
            stmts[i]
                .error
                .as_ref()
                .is_some_and(|e| e.sqlstate == DEADLOCK)
        }) {
            victims.push(s.request);
        }
        steps.push(ScheduleStep {
            buyer: s.request,
            try_no: 1,
            line: s.at.ordinal,
            sql,
            rollback_by_racelab: false,
            preemption: s.preemption,
            role,
            value: None,
            rows: mine.iter().rev().find_map(|&i| stmts[i].rows_affected),
            values: Vec::new(),
            error,
            waited_for: s.waited_for.clone(),
            completed_after: s.completed_after.map(|c| c + 1),
        });
    }
    // The step that ran the recorded statement ending at `at_us` (for a
    // commit time, the first of the buyer's steps ending at or after it).
    let step_at = |buyer: Option<u32>, at_us: i64| -> Option<usize> {
        let ends = |k: usize| of_step[k].iter().map(|&i| rel(stmts[i].end_us));
        (0..served.steps.len())
            .find(|&k| Some(served.steps[k].request) == buyer && ends(k).any(|e| e == at_us))
            .or_else(|| {
                (0..served.steps.len()).find(|&k| {
                    Some(served.steps[k].request) == buyer && ends(k).any(|e| e >= at_us)
                })
            })
            .map(|k| k + 1)
    };
    let anomalies = analysis
        .anomalies
        .iter()
        .map(|a| ExploreAnomaly {
            name: a.name.clone(),
            // None for a scope-based anomaly: one transaction, or a
            // guarded write, prevents it; no isolation level does.
            prevented_at: a.prevented_at.clone(),
            buyer: a.buyer.unwrap_or(0),
            item: a.row.clone(),
            read_value: a
                .read
                .value
                .as_deref()
                .and_then(|v| v.trim_matches('"').parse().ok()),
            read_step: step_at(a.read.buyer, a.read.at_us),
            commit_step: step_at(a.write.buyer, a.write.at_us),
            committed: a.write.value.clone(),
            overtook: a
                .overtaken_by
                .iter()
                .map(|o| Overtaken {
                    buyer: o.buyer.unwrap_or(0),
                    write_step: None,
                    commit_step: step_at(o.buyer, o.at_us),
                    committed: o.value.clone(),
                })
                .collect(),
        })
        .collect();
    let buyers = served
        .reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.as_ref()?;
            Some(BuyerEnd {
                buyer: i as u32 + 1,
                outcome: r.outcome,
                tries: 1,
                message: r.message.clone(),
            })
        })
        .collect();
    let kept: Vec<Statement> = of_step
        .iter()
        .zip(&served.steps)
        .flat_map(|(mine, _)| mine.iter().map(|&i| stmts[i].clone()))
        .collect();
    let c = Counterexample {
        schedule: served.schedule(),
        preemptions: preemptions(&served.points),
        verdict: crate::verdict::of_audit(&audit),
        audit,
        anomalies,
        steps,
        buyers,
        deadlock_victims: victims,
    };
    (c, kept)
}

/// `sql` with its `$n` placeholders replaced by the bound values as SQL
/// literals (outside quotes and comments), for reading and for the spec.
pub fn inline(sql: &str, params: &[serde_json::Value]) -> String {
    let literal = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "NULL".to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    };
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                let end = b[i + 1..]
                    .iter()
                    .position(|&c| c == q)
                    .map_or(b.len(), |n| i + n + 2);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let end = b[i + 1..]
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .map_or(b.len(), |n| i + 1 + n);
                let n: usize = sql[i + 1..end].parse().unwrap_or(0);
                match n.checked_sub(1).and_then(|k| params.get(k)) {
                    Some(v) => out.push_str(&literal(v)),
                    None => out.push_str(&sql[i..end]),
                }
                i = end;
            }
            _ => {
                let ch = sql[i..].chars().next().expect("in bounds");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_become_literals() {
        assert_eq!(
            inline(
                "UPDATE products SET stock = $1 WHERE id = $2 AND name <> '$1' -- $2",
                &[json!(2), json!("it's")]
            ),
            "UPDATE products SET stock = 2 WHERE id = 'it''s' AND name <> '$1' -- $2"
        );
        assert_eq!(inline("SELECT $3, a$1", &[json!(null)]), "SELECT $3, a$1");
        assert_eq!(inline("SELECT $1", &[json!(null)]), "SELECT NULL");
    }
}
