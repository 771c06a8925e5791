//! Carrying out a plan: one database for the whole invocation; for each
//! strategy and repetition a fresh lab, the strategy's `\setup`, the race,
//! the audit, and the result saved at once.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::db::{Database, ProductSeed};
use crate::engine::{self, Control, ProductPicker, RaceConfig, RaceOutput, Stop};
use crate::error::Interrupted;
use crate::outcome::Outcome;
use crate::plan::Plan;
use crate::report::progress::Progress;
use crate::report::result::{
    DatabaseInfo, ErrorCount, LatencyInfo, Outcomes, ScenarioInfo, StrategyInfo, Throughput,
};
use crate::report::{save, RunResult, Status};
use crate::strategy::{self, Origin, Strategy};

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
    let db = Database::open(&plan.db).await?;
    let outcome = execute_on(&db, plan, &control).await;
    let stopped = db.shutdown().await;
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
            db.prepare_lab(&seeds).await.context("preparing the lab")?;
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
                trace: false,
            };
            let label = if plan.repeat > 1 {
                format!("{} {}/{}", strategy.name, repetition, plan.repeat)
            } else {
                strategy.name.clone()
            };
            let total = sc
                .demand()
                .map(|_| u64::from(sc.buyers) * u64::from(sc.attempts_per_buyer));
            let progress = Progress::start(!plan.output.quiet, &label, total, control.clone());
            let raced = engine::race(
                Arc::new(strategy.program.clone()),
                connect.clone(),
                config,
                control.clone(),
            )
            .await;
            progress.finish();
            let race = match raced {
                Ok(race) => race,
                Err(e) if e.is::<Interrupted>() => break 'strategies,
                Err(e) => return Err(e),
            };
            let result =
                finish_run(db, plan, strategy, repetition, started_at, race, control).await?;
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
    mut race: RaceOutput,
    control: &Control,
) -> anyhow::Result<RunResult> {
    let (status, mut status_reason) = match control.reason() {
        None => (Status::Completed, None),
        Some(Stop::Interrupted(sig)) => (
            Status::Interrupted,
            Some(Interrupted { signal: sig }.to_string()),
        ),
        Some(Stop::Aborted(why)) => (Status::Aborted, Some(why)),
    };
    let audit = match db
        .audit_with_unknown(&race.tally.succeeded_attempts, &race.tally.unknown_attempts)
        .await
    {
        Ok(a) => Some(a),
        Err(e) if status == Status::Completed => return Err(e.context("auditing the database")),
        Err(e) => {
            let why = status_reason.take().unwrap_or_default();
            status_reason = Some(format!("{why}; the audit could not run: {e:#}"));
            None
        }
    };
    let t = &race.tally;
    let sc = &plan.scenario;
    let outcomes = Outcomes {
        attempts: t.attempts(),
        succeeded: t.count(Outcome::Succeeded),
        sold_out: t.count(Outcome::SoldOut),
        rejected: t.count(Outcome::Rejected),
        gave_up: t.count(Outcome::GaveUp),
        errors: t.count(Outcome::Error),
        unknown: t.count(Outcome::Unknown),
        retries: t.tries.saturating_sub(t.attempts()),
        in_flight: t.in_flight,
    };
    let wall = race.wall.as_secs_f64().max(1e-9);
    let throughput = Throughput {
        wall_seconds: round3(race.wall.as_secs_f64()),
        attempts_per_sec: round3(outcomes.attempts as f64 / wall),
        successes_per_sec: round3(outcomes.succeeded as f64 / wall),
    };
    let latency = race.tally.latency();
    Ok(RunResult {
        racelab_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        scenario: ScenarioInfo {
            name: sc.name.clone(),
            description: sc.description.clone(),
            stock: sc.stock,
            buyers: sc.buyers,
            attempts_per_buyer: sc.attempts_per_buyer,
            quantity: sc.quantity,
            think_ms: sc.think_ms,
            think_jitter_ms: sc.think_jitter_ms,
            products: sc.products,
            product_skew: sc.product_skew,
            connections: sc.connections,
            duration_s: sc.duration_s,
            max_tries: plan.max_tries,
            seed: plan.seed.wrapping_add(u64::from(repetition) - 1),
            timeout_ms: plan.timeout_ms,
        },
        strategy: StrategyInfo {
            name: strategy.name.clone(),
            source: match &strategy.origin {
                Origin::Builtin => "builtin".to_string(),
                Origin::File(p) => p.display().to_string(),
            },
            sha256: hex(&Sha256::digest(strategy.source.as_bytes())),
        },
        database: DatabaseInfo {
            kind: db.kind(),
            server_version: db.server_version().to_string(),
            durable: db.durable(),
        },
        repetition,
        error_messages: race
            .tally
            .errors
            .iter()
            .map(|(message, count)| ErrorCount {
                message: message.clone(),
                count: *count,
            })
            .collect(),
        believed_units_sold: (outcomes.succeeded as i64).saturating_mul(sc.quantity),
        verdict: audit.as_ref().map(|a| a.verdict()),
        audit,
        status,
        status_reason,
        latency_us: LatencyInfo::of(&latency),
        throughput,
        outcomes,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
