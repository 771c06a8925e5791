//! Carrying out a plan: one database for the whole invocation; for each
//! strategy and repetition a fresh lab, the strategy's `\setup`, the race,
//! the audit, and the result saved at once.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::db::{Database, ProductSeed};
use crate::engine::{self, Control, Held, ProductPicker, RaceConfig, RaceOutput, Stop};
use crate::error::Interrupted;
use crate::plan::Plan;
use crate::report::progress::Progress;
use crate::report::result::{DatabaseInfo, RaceRecord, ScenarioInfo, StrategyInfo};
use crate::report::{save, RunResult, Status};
use crate::strategy::{self, Origin, Strategy};
use crate::timings;

/// Messages for stderr, silenced by `--quiet`.
pub fn note(plan: &Plan, msg: &str) {
    if !plan.output.quiet {
        eprintln!("{msg}");
    }
}

/// Run every strategy of the plan `repeat` times. Returns what finished;
/// a stop (signal, server failure) ends the loop early with the partial
/// result of the race it interrupted.
pub async fn execute(plan: &Plan, control: Arc<Control>) -> anyhow::Result<Vec<RunResult>> {
    let db = timings::time("open the database", Database::open(&plan.db)).await?;
    if let Some(t) = db.cluster().map(|c| c.start_timings()) {
        timings::record("  cluster: dirs and version", t.setup);
        timings::record(
            if t.cold {
                "  cluster: initdb"
            } else {
                "  cluster: copy template"
            },
            t.data_dir,
        );
        timings::record("  cluster: postmaster ready", t.ready);
    }
    let outcome = execute_on(&db, plan, &control).await;
    let stopped = timings::time("stop the database", db.shutdown()).await;
    let results = outcome?;
    stopped.context("stopping the database")?;
    Ok(results)
}

async fn execute_on(
    db: &Database,
    plan: &Plan,
    control: &Arc<Control>,
) -> anyhow::Result<Vec<RunResult>> {
    let sc = &plan.scenario;
    let picker = ProductPicker::new(sc.products, sc.product_skew);
    let seeds: Vec<ProductSeed> = picker
        .ids()
        .iter()
        .map(|&id| ProductSeed {
            id,
            name: format!("product {id}"),
            stock: sc.stock,
        })
        .collect();
    let setup_products: Vec<(i64, i64)> = seeds.iter().map(|p| (p.id, p.stock)).collect();
    let mut connect = db.connect_options();
    if plan.timeout_ms > 0 {
        let ms = plan.timeout_ms.to_string();
        connect = connect.options([
            ("statement_timeout", ms.as_str()),
            ("lock_timeout", ms.as_str()),
        ]);
    }

    // Before the lab is touched: never a half-started race.
    db.check_room(sc.connections_needed(), sc.buyers).await?;

    let mut results = Vec::new();
    'strategies: for strategy in &plan.strategies {
        for repetition in 1..=plan.repeat {
            if control.is_stopped() {
                break 'strategies;
            }
            let started_at = now_rfc3339();
            timings::time("prepare the lab", db.prepare_lab(&seeds))
                .await
                .context("preparing the lab")?;
            if strategy.program.has_setup() {
                let mut conn = db.connect().await?;
                strategy::run_setup(&strategy.program, &mut conn, &setup_products)
                    .await
                    .with_context(|| {
                        format!("running the \\setup block of strategy `{}`", strategy.name)
                    })?;
            }
            let config = RaceConfig {
                buyers: sc.buyers,
                attempts_per_buyer: sc.attempts_per_buyer,
                duration: (sc.duration_s > 0.0).then(|| Duration::from_secs_f64(sc.duration_s)),
                quantity: sc.quantity,
                think_ms: sc.think_ms,
                think_jitter_ms: sc.think_jitter_ms,
                products: picker.clone(),
                connections: sc.connections,
                max_tries: plan.max_tries,
                seed: plan.seed.wrapping_add(u64::from(repetition) - 1),
                trace: plan.output.trace,
            };
            let label = if plan.repeat > 1 {
                format!("{} {}/{}", strategy.name, repetition, plan.repeat)
            } else {
                strategy.name.clone()
            };
            let total = sc
                .demand()
                .map(|_| u64::from(sc.buyers) * u64::from(sc.attempts_per_buyer));
            let watcher = match plan.watch_ms {
                Some(ms) => Some(crate::watch::start(db, ms).await?),
                None => None,
            };
            let progress = Progress::start(!plan.output.quiet, &label, total, control.clone());
            let raced = engine::race(
                strategy.program.clone(),
                connect.clone(),
                config,
                control.clone(),
            )
            .await;
            progress.finish();
            let (race, mut held) = match raced {
                Ok(raced) => raced,
                Err(e) if e.is::<Interrupted>() => break 'strategies,
                Err(e) => return Err(e),
            };
            let watch = match watcher {
                Some(w) => {
                    let initial = sc.stock.saturating_mul(i64::from(sc.products));
                    Some(w.finish(race.released_at, initial).await?)
                }
                None => None,
            };
            let timeline = plan.output.trace.then(|| {
                crate::trace::analyze(
                    &strategy.name,
                    &strategy.program,
                    &race.traces,
                    race.released_at,
                    sc.quantity,
                )
            });
            timings::record("open buyer connections", race.connect);
            timings::record("race", race.wall);
            let raced = (race, &mut held);
            let finish = finish_run(db, plan, strategy, repetition, started_at, raced, control);
            let mut result = timings::time("audit and result", finish).await?;
            drop(held);
            result.watch = watch;
            result.timeline = timeline;
            if let Some(dir) = &plan.output.save_dir {
                let path = save::save(dir, &result)?;
                note(plan, &format!("saved {}", path.display()));
            }
            results.push(result);
        }
    }
    if results.is_empty() {
        if let Some(Stop::Interrupted(signal)) = control.reason() {
            return Err(Interrupted { signal }.into());
        }
    }
    Ok(results)
}

/// Audit the database and assemble the result of one race.
async fn finish_run(
    db: &Database,
    plan: &Plan,
    strategy: &Strategy,
    repetition: u32,
    started_at: String,
    (mut race, held): (RaceOutput, &mut Held),
    control: &Control,
) -> anyhow::Result<RunResult> {
    let (status, mut status_reason) = status_of(control);
    let (succeeded, unknown) = (&race.tally.succeeded_attempts, &race.tally.unknown_attempts);
    // After a completed race every buyer's connection is idle, outside any
    // transaction: audit on one of them. After a stop one may still be
    // mid-transaction, so take a fresh connection.
    let idle = if status == Status::Completed {
        held.connection()
    } else {
        None
    };
    let audited = match idle {
        Some(conn) => db.audit_on(conn, succeeded, unknown).await,
        None => db.audit_with_unknown(succeeded, unknown).await,
    };
    let audit = match audited {
        Ok(a) => Some(a),
        Err(e) if status == Status::Completed => return Err(e.context("auditing the database")),
        Err(e) => {
            let why = status_reason.take().unwrap_or_default();
            status_reason = Some(format!("{why}; the audit could not run: {e:#}"));
            None
        }
    };
    let record = RaceRecord {
        started_at,
        scenario: ScenarioInfo::of(
            &plan.scenario,
            plan.max_tries,
            plan.seed.wrapping_add(u64::from(repetition) - 1),
            plan.timeout_ms,
        ),
        repetition,
        status,
        status_reason,
        audit,
        wall: race.wall,
    };
    let strategy = StrategyInfo {
        name: strategy.name.clone(),
        source: match &strategy.origin {
            Origin::Builtin => "builtin".to_string(),
            Origin::File(p) => p.display().to_string(),
        },
        sha256: hex(&Sha256::digest(strategy.source.as_bytes())),
    };
    let database = DatabaseInfo {
        kind: db.kind(),
        server_version: db.server_version().to_string(),
        durable: db.durable(),
    };
    Ok(RunResult::assemble(
        record,
        &mut race.tally,
        Some(strategy),
        None,
        Some(database),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a race ended, from its control: the result's `status` and `status_reason`.
pub fn status_of(control: &Control) -> (Status, Option<String>) {
    match control.reason() {
        None => (Status::Completed, None),
        Some(Stop::Interrupted(sig)) => (
            Status::Interrupted,
            Some(Interrupted { signal: sig }.to_string()),
        ),
        Some(Stop::Aborted(why)) => (Status::Aborted, Some(why)),
    }
}

/// Now, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Whether stdout wants colour.
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
