//! racelab: a race-condition lab and benchmark harness for PostgreSQL.
//!
//! Data flows one way: CLI -> plan -> target -> buyers -> audit -> verdict
//! -> report. From the top of the dependency graph down:
//!
//! - `app`: the commands `main` calls; `dbcmd`, `serve`, `catalog`: the
//!   smaller commands.
//! - `cli`: the clap argument types, read only by the command layer and
//!   `plan`.
//! - `plan`: one builder that validates any race's arguments into a plan.
//! - target kinds: `lab` (strategies on the SQL lab) and `http` (an HTTP
//!   service), each a `run::Target`.
//! - `run`: the pipeline, one repetition loop for every target kind.
//! - `report`: tables, JSON, JUnit, HTML, progress; `verdict`: the one
//!   place that decides safe / oversold / inconsistent / inconclusive and
//!   checks `--expect`; `result`: the result contract.
//! - `trace`, `explain`, `watch`: teaching aids over the strategy and the lab.
//! - domain modules, which take no `cli` types: `engine` (barrier, buyers,
//!   tallies, contention), `strategy` (the script language), `scenario`
//!   (workloads), `db` (the server, the lab schema, the audit queries).
//! - leaves: `error` (failure kinds and exit codes), `outcome`, `suggest`,
//!   `timings`.
//!
//! No module depends on one above it: the tests in `layers.rs` read the
//! source and fail on any import cycle between these modules, or a layer
//! that names one above it.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod db;
pub mod dbcmd;
pub mod engine;
pub mod error;
pub mod explain;
pub mod explore;
pub mod http;
pub mod lab;
pub mod outcome;
pub mod plan;
pub mod report;
pub mod result;
pub mod run;
pub mod scenario;
pub mod secret;
pub mod serve;
pub mod strategy;
pub mod suggest;
pub mod timings;
pub mod trace;
pub mod verdict;
pub mod watch;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod layers;
