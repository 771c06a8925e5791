//! `racelab run`, `compare` and `http`: one plan, its target raced
//! through the pipeline, the runs compared with any `--baseline`, then the
//! results sink. The three commands differ in their plan only.

use crate::engine::Control;
use crate::plan::{Plan, TargetPlan};
use crate::report::baseline::{self, Delta};
use crate::report::{self, Output, RunResult, Status};
use crate::verdict::{self, Gate};

use super::sink::{self, Results};

/// Carry out a race plan on its target, then hand the runs to the sink.
pub fn race(mut plan: Plan) -> anyhow::Result<()> {
    let control = Control::new();
    let Plan {
        pipeline,
        output,
        target,
        backend,
        ..
    } = &mut plan;
    let (pipeline, output) = (&*pipeline, &*output);
    let ctl = &control;
    let runs = crate::engine::until_signal(&control, async move {
        match (target, backend) {
            (TargetPlan::Lab(lab), _) => crate::lab::execute(lab, pipeline, output, ctl).await,
            (TargetPlan::Http(service), None) => {
                crate::http::execute(service, pipeline, output, ctl).await
            }
            (TargetPlan::Http(service), Some(backend)) => {
                behind_proxy(service, backend, pipeline, output, ctl).await
            }
        }
    })?;
    let output = &plan.output;
    let deltas = if plan.baseline.is_empty() {
        Vec::new()
    } else {
        baseline::compare(&plan.baseline, &runs, plan.max_regression)
    };
    let raced = Raced {
        runs: &runs,
        plan: &plan,
        deltas,
    };
    sink::write(&raced, output)?;
    sink::conclude(&raced, &control)
}

/// Race a service started (or awaited) behind the wire proxy: the
/// database, the proxy and the service up, the races, then all of it
/// stopped, whatever the races did.
async fn behind_proxy(
    service: &mut crate::http::Service,
    plan: &crate::service::ServicePlan,
    pipeline: &crate::run::Pipeline,
    output: &Output,
    control: &std::sync::Arc<Control>,
) -> anyhow::Result<Vec<RunResult>> {
    let backend = crate::service::Backend::start(plan, control).await?;
    if let Some(log) = &plan.command.as_ref().map(|_| &plan.log) {
        output.note(&format!(
            "racelab: the service runs behind the wire proxy at {} (its output: {})",
            crate::db::redact_url(&backend.service_url),
            log.display()
        ));
    }
    if service.db.is_none() && (service.reset_sql.is_some() || service.needs_db()) {
        service.db = Some(crate::http::truth::ServiceDb::new(
            &backend.direct_url,
            std::time::Duration::from_secs(10),
        )?);
    }
    service.watch = Some(backend.watch());
    let runs = crate::http::execute(service, pipeline, output, control).await;
    service.watch = None;
    let stopped = backend.shutdown();
    let runs = runs?;
    stopped?;
    Ok(runs)
}

/// The runs of a race, with what they are held against.
struct Raced<'a> {
    runs: &'a [RunResult],
    plan: &'a Plan,
    /// Against `--baseline`, per strategy.
    deltas: Vec<Delta>,
}

impl Raced<'_> {
    fn gate(&self) -> &Gate {
        &self.plan.gate
    }
}

impl Results for Raced<'_> {
    fn show(&self, output: &Output) {
        report::print_runs(self.runs, output, self.plan.grouped);
        baseline::print(&self.deltas, self.plan.max_regression, output);
    }

    fn timelines(&self) -> Option<Vec<(&crate::trace::Timeline, u32)>> {
        Some(
            self.runs
                .iter()
                .filter_map(|r| Some((r.timeline.as_ref()?, r.repetition)))
                .collect(),
        )
    }

    fn junit(&self) -> String {
        report::junit::render(self.runs, self.gate())
    }

    fn aborted(&self) -> Option<String> {
        let r = self.runs.iter().find(|r| r.status == Status::Aborted)?;
        Some(
            r.status_reason
                .clone()
                .unwrap_or_else(|| "unknown reason".to_string()),
        )
    }

    /// The gate first, then the baseline.
    fn failed(&self) -> Option<String> {
        if let Some(why) = verdict::failure(self.gate(), self.runs) {
            return Some(why);
        }
        let regressed: Vec<String> = self
            .deltas
            .iter()
            .filter(|d| !d.regressions.is_empty())
            .map(|d| format!("{}: {}", d.name, d.regressions.join(", ")))
            .collect();
        (!regressed.is_empty()).then(|| {
            format!(
                "slower than the baseline by more than {}%: {}",
                self.plan.max_regression,
                regressed.join("; ")
            )
        })
    }
}
