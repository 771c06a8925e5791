//! `racelab explain STRATEGY`: the strategy's script annotated with what
//! each statement locks, waits for and risks (the analysis is `explain`'s).

pub fn explain(strategy: &str) -> anyhow::Result<()> {
    crate::report::emit(&crate::explain::explain(strategy)?);
    Ok(())
}
