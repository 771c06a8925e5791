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
            let held = report::html::write(&args.files, &args.output)?;
            println!("wrote {} ({held})", args.output.display());
            Ok(())
        }
        Command::Explore(args) => crate::explore::main(&args),
        Command::Db { command } => crate::dbcmd::main(command),
        Command::Http(args) => crate::http::main(&args),
        Command::Serve(args) => crate::serve::main(&args),
    }
}

/// Build the runtime racelab races on: one worker thread for the buyers,
/// while the main thread runs the orchestration. On a small machine every
/// core the client uses is taken from the server, so one worker; and a
/// worker thread (which looks for work briefly before it sleeps) answers a
/// reply sooner than a current-thread runtime parked in `epoll_wait`.
/// Measured on 2 cores against one hot row (`conditional`, no think time):
/// 1 buyer 6,800 -> 10,300 attempts/s, 10 buyers 13,200 -> 14,300, for the
/// same client CPU per attempt.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("racelab-buyers")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn race(specs: &[String], common: &CommonArgs, compare: bool) -> anyhow::Result<()> {
    let plan = Plan::build(specs, common, compare)?;
    let control = Control::new();
    let results = until_signal(&control, run::execute(&plan, control.clone()))?;

    let color = run::stdout_color();
    print_results(&results, &plan.output, compare || plan.repeat > 1);
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
    conclude(&results, &plan.output, plan.expect, &control)?;
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

/// Run `work` on racelab's runtime while SIGINT/SIGTERM stop `control`.
pub fn until_signal<T>(
    control: &Arc<Control>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let rt = runtime()?;
    let out = rt.block_on(async {
        let signals = tokio::spawn(watch_signals(control.clone()));
        let r = work.await;
        signals.abort();
        r
    });
    drop(rt);
    out
}

/// Print finished runs on stdout: JSON, or the table (the side-by-side one
/// when `grouped`) with any timelines and `--histogram` charts.
pub fn print_results(results: &[RunResult], output: &crate::plan::Output, grouped: bool) {
    let color = run::stdout_color();
    if output.json {
        let json = if results.len() == 1 && !grouped {
            serde_json::to_string_pretty(&results[0])
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "runs": results }))
        };
        println!("{}", json.expect("results serialize"));
        return;
    }
    if grouped {
        print!("{}", report::compare::render(results, color));
    } else {
        for r in results {
            print!("{}", report::table::render_run(r, color));
        }
    }
    for t in results.iter().filter_map(|r| r.timeline.as_ref()) {
        print!("{}", report::timeline::render(t));
    }
    if output.histogram {
        print!("{}", report::histogram::render_runs(results));
    }
}

/// Write the JUnit report, then turn an interrupt, an abort or a broken
/// `--expect` into the error `main` maps to an exit code.
pub fn conclude(
    results: &[RunResult],
    output: &crate::plan::Output,
    expect: Option<Expect>,
    control: &Control,
) -> anyhow::Result<()> {
    if let Some(path) = &output.junit {
        let xml = report::junit::render(results, expect);
        report::save::write_atomic(path, xml.as_bytes())?;
        if !output.quiet {
            eprintln!("wrote JUnit report {}", path.display());
        }
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
    if let Some(expect) = expect {
        check_expectation(expect, results)?;
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
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.name() == name).collect();
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
        if !names.iter().any(|n| n == r.name()) {
            names.push(r.name().to_string());
        }
    }
    names
}
