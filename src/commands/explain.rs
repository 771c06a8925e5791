//! `racelab explain STRATEGY`: the strategy's script annotated with what
//! each statement locks, waits for and risks (the analysis is `explain`'s);
//! with `--check`, the verdict held against exploring every schedule.

use crate::cli::ExplainArgs;
use crate::plan::explain::ExplainPlan;

pub fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    crate::explain::check::main(&ExplainPlan::build(args)?)
}
