//! Workloads (DESIGN §5): load a scenario from a built-in name or a `.toml`
//! file, validate it naming the key, and apply command-line overrides.

/// A scenario that cannot be used: names the file and key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScenarioError(pub String);
