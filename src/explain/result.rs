//! `racelab explain --json`: the verdict and its findings, and with
//! `--check` what exploring found (the explore result itself), whether the
//! two agree, and a remedy racelab checked. Documented in
//! docs/result.schema.json (`explain_result`).

use serde::Serialize;

use crate::result::explore::ExploreResult;
use crate::result::StrategyInfo;

use super::finding::{Finding, Level};

/// What `explain --json` prints.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ExplainResult {
    /// Always `explain`.
    #[schemars(extend("const" = "explain"))]
    pub kind: &'static str,
    pub racelab_version: String,
    pub strategy: StrategyInfo,
    /// `safe`, `unsafe` or `unsure`.
    pub verdict: Level,
    /// For SAFE what protects each write; otherwise the UNSAFE and UNSURE
    /// findings.
    pub findings: Vec<Finding>,
    /// With `--check`.
    pub check: Option<Check>,
}

/// How the verdict held against exploring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// Both say safe, or both unsafe.
    Agree,
    /// explain and explore say opposite things.
    Disagree,
    /// explain was unsure; exploring decided.
    Decided,
    /// Exploring decided nothing (inconclusive, or not explored).
    Undecided,
}

/// `--check`: the verdict held against every schedule of a few buyers.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    pub agreement: Agreement,
    /// What the two say, in a sentence.
    pub summary: String,
    /// The explore run (`null` when the script could not be explored).
    pub explored: Option<ExploreResult>,
    /// Why it was not explored.
    pub not_explored: Option<String>,
    /// A change racelab applied to the script and explored: printed only
    /// when it removed every unsafe schedule.
    pub remedy: Option<Remedy>,
}

/// A checked remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Remedy {
    /// What it changes, in words.
    pub description: String,
    /// The lines it changes: `(line, before, after)`.
    pub changes: Vec<Change>,
    /// How many schedules the remedied script was explored over, all safe.
    pub schedules: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Change {
    #[schemars(range(min = 1))]
    pub line: usize,
    pub before: String,
    pub after: String,
}
