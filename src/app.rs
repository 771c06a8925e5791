//! The commands: each takes parsed arguments, does its work through the
//! other modules, prints its output, and returns an error for `main` to map
//! to an exit code.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::{Cli, Command, CommonArgs, Expect};
use crate::engine::{Control, Stop};
use crate::error::{ExpectationFailed, Interrupted};
use crate::plan::Plan;
use crate::report::{self, RunResult, Status};
use crate::run;

pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => race(&[args.strategy], &args.common, false),
        Command::Compare(args) => race(&args.strategies, &args.common, true),
        Command::List => {
            print!("{}", crate::catalog::list());
            Ok(())
        }
        Command::Show { strategy } => {
            print!("{}", crate::catalog::show(&strategy, run::stdout_color())?);
            Ok(())
        }
        Command::Explain { strategy } => {
            print!("{}", crate::explain::explain(&strategy)?);
            Ok(())
        }
        Command::Report(args) => {
            let n = report::html::write(&args.files, &args.output)?;
            println!("wrote {} ({n} runs)", args.output.display());
            Ok(())
        }
        Command::Db { command } => crate::dbcmd::main(command),
    }
}

/// Build the runtime racelab races on. One thread: on a small machine every
/// core the client uses is taken from the server, and a single-threaded
/// scheduler wakes buyers without cross-thread hand-offs.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn race(specs: &[String], common: &CommonArgs, compare: bool) -> anyhow::Result<()> {
    let plan = Plan::build(specs, common, compare)?;
    let rt = runtime()?;
    let control = Control::new();
    let results = rt.block_on(async {
        let signals = tokio::spawn(watch_signals(control.clone()));
        let r = run::execute(&plan, control.clone()).await;
        signals.abort();
        r
    })?;
    drop(rt);

    let color = run::stdout_color();
    if plan.output.json {
        let json = if results.len() == 1 && !compare && plan.repeat == 1 {
            serde_json::to_string_pretty(&results[0])?
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "runs": results }))?
        };
        println!("{json}");
    } else if compare || plan.repeat > 1 {
        print!("{}", report::compare::render(&results, color));
    } else {
        for r in &results {
            print!("{}", report::table::render_run(r, color));
        }
    }
    if !plan.output.json {
        for t in results.iter().filter_map(|r| r.timeline.as_ref()) {
            print!("{}", report::timeline::render(t));
        }
        if plan.output.histogram {
            print!("{}", report::histogram::render_runs(&results));
        }
    }
    if let Some(path) = &plan.output.trace_file {
        let runs: Vec<_> = results
            .iter()
            .filter_map(|r| Some((r.timeline.as_ref()?, r.repetition)))
            .collect();
        crate::trace::write_jsonl(path, &runs)?;
        run::note(&plan, &format!("wrote the trace to {}", path.display()));
    }
    let deltas = if plan.baseline.is_empty() {
        Vec::new()
    } else {
        report::baseline::compare(&plan.baseline, &results, plan.max_regression)
    };
    if !deltas.is_empty() {
        let table = report::baseline::render(&deltas, plan.max_regression, color);
        if plan.output.json {
            eprint!("{table}");
        } else {
            print!("{table}");
        }
    }
    if let Some(path) = &plan.output.junit {
        let xml = report::junit::render(&results, plan.expect);
        report::save::write_atomic(path, xml.as_bytes())?;
        run::note(&plan, &format!("wrote JUnit report {}", path.display()));
    }

    if let Some(Stop::Interrupted(signal)) = control.reason() {
        return Err(Interrupted { signal }.into());
    }
    if let Some(r) = results.iter().find(|r| r.status == Status::Aborted) {
        anyhow::bail!(
            "the run was aborted: {} (partial result above)",
            r.status_reason.as_deref().unwrap_or("unknown reason")
        );
    }
    if let Some(expect) = plan.expect {
        check_expectation(expect, &results)?;
    }
    let regressed: Vec<String> = deltas
        .iter()
        .filter(|d| !d.regressions.is_empty())
        .map(|d| format!("{}: {}", d.name, d.regressions.join(", ")))
        .collect();
    if !regressed.is_empty() {
        return Err(ExpectationFailed(format!(
            "slower than the baseline by more than {}%: {}",
            plan.max_regression,
            regressed.join("; ")
        ))
        .into());
    }
    Ok(())
}

/// SIGINT and SIGTERM stop the race; the partial result is still audited,
/// reported and saved, and every guard gets to clean up.
async fn watch_signals(control: Arc<Control>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let sig = tokio::select! {
        _ = int.recv() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
    };
    control.stop(Stop::Interrupted(sig));
}

/// `--expect`: name every strategy that broke it.
pub fn check_expectation(expect: Expect, results: &[RunResult]) -> anyhow::Result<()> {
    let mut failed: Vec<String> = Vec::new();
    for name in strategy_names(results) {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.strategy.name == name).collect();
        let bad = runs
            .iter()
            .filter(|r| match expect {
                Expect::Safe => !r.is_safe(),
                Expect::Oversold => !r.is_oversold(),
            })
            .count();
        if bad > 0 {
            let what = match expect {
                Expect::Safe => {
                    let max = runs
                        .iter()
                        .filter_map(|r| r.audit.as_ref())
                        .map(|a| a.oversold_units)
                        .max();
                    format!(
                        "{name} was not safe in {bad} of {} runs (max oversold units {})",
                        runs.len(),
                        max.unwrap_or(0)
                    )
                }
                Expect::Oversold => {
                    format!("{name} did not oversell in {bad} of {} runs", runs.len())
                }
            };
            failed.push(what);
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let expected = match expect {
        Expect::Safe => "safe",
        Expect::Oversold => "oversold",
    };
    Err(ExpectationFailed(format!("expected {expected}: {}", failed.join("; "))).into())
}

/// Strategy names in the order they ran.
pub fn strategy_names(results: &[RunResult]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.contains(&r.strategy.name) {
            names.push(r.strategy.name.clone());
        }
    }
    names
}
