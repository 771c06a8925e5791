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
pub fn race(plan: Plan) -> anyhow::Result<()> {
    let control = Control::new();
    let (pipeline, output) = (&plan.pipeline, &plan.output);
    let runs = crate::engine::until_signal(&control, async {
        match &plan.target {
            TargetPlan::Lab(lab) => crate::lab::execute(lab, pipeline, output, &control).await,
            TargetPlan::Http(service) => {
                crate::http::execute(service, pipeline, output, &control).await
            }
        }
    })?;
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
