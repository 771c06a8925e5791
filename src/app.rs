//! The command layer `main` calls: each command takes its parsed
//! arguments, builds what it needs (a `Plan` for a race), runs it through
//! the other modules, hands the output to `report`, and returns an error
//! for `main` to map to an exit code. Every race command (`run`,
//! `compare`, `http`) goes through `race`: one plan, one pipeline, one
//! conclusion.

use crate::cli::{Cli, Command};
use crate::engine::{Control, Stop};
use crate::error::{ExpectationFailed, Interrupted};
use crate::plan::{Plan, TargetPlan};
use crate::report::{self, Output, RunResult, Status};
use crate::verdict::{self, Gate};

/// Run a command; errors come back classified (see `plan::classify`).
pub fn main(cli: Cli) -> anyhow::Result<()> {
    dispatch(cli).map_err(crate::plan::classify)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => race(Plan::run(&args)?),
        Command::Compare(args) => race(Plan::compare(&args)?),
        Command::Http(args) => race(Plan::http(&args)?),
        Command::List => {
            report::emit(&crate::catalog::list());
            Ok(())
        }
        Command::Show { strategy } => {
            report::emit(&crate::catalog::show(&strategy, report::stdout_color())?);
            Ok(())
        }
        Command::Explain(args) => {
            crate::explain::check::main(&crate::plan::explain::ExplainPlan::build(&args)?)
        }
        Command::Report(args) => {
            let held = report::html::write(&args.files, &args.output)?;
            report::emit(&format!("wrote {} ({held})\n", args.output.display()));
            Ok(())
        }
        Command::Explore(args) => {
            crate::explore::main(&crate::plan::explore::ExplorePlan::build(&args)?)
        }
        Command::Db { command } => crate::dbcmd::main(command),
        Command::Serve(args) => crate::serve::main(&args),
    }
}

/// Carry out a race plan on its target, then report and conclude.
fn race(plan: Plan) -> anyhow::Result<()> {
    let control = Control::new();
    let (pipeline, output) = (&plan.pipeline, &plan.output);
    let results = crate::engine::until_signal(&control, async {
        match &plan.target {
            TargetPlan::Lab(lab) => crate::lab::execute(lab, pipeline, output, &control).await,
            TargetPlan::Http(service) => {
                crate::http::execute(service, pipeline, output, &control).await
            }
        }
    })?;

    report::print_runs(&results, output, plan.grouped);
    if let Some(path) = &output.trace_file {
        let runs: Vec<_> = results
            .iter()
            .filter_map(|r| Some((r.timeline.as_ref()?, r.repetition)))
            .collect();
        crate::trace::write_jsonl(path, &runs)?;
        output.note(&format!("wrote the trace to {}", path.display()));
    }
    let deltas = if plan.baseline.is_empty() {
        Vec::new()
    } else {
        report::baseline::compare(&plan.baseline, &results, plan.max_regression)
    };
    report::baseline::print(&deltas, plan.max_regression, output);
    conclude(&results, output, &plan.gate, &control)?;
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

/// Write the JUnit report, then turn an interrupt, an abort or a broken
/// gate into the error `main` maps to an exit code.
pub fn conclude(
    results: &[RunResult],
    output: &Output,
    gate: &Gate,
    control: &Control,
) -> anyhow::Result<()> {
    if let Some(path) = &output.junit {
        let xml = report::junit::render(results, gate);
        report::save::write_atomic(path, xml.as_bytes())?;
        output.note(&format!("wrote JUnit report {}", path.display()));
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
    verdict::check(gate, results)?;
    Ok(())
}
