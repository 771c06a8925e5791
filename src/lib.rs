//! racelab: a race-condition lab and benchmark harness for PostgreSQL.
//!
//! Data flows one way: CLI -> plan -> target -> buyers -> audit -> verdict
//! -> report. From the top of the dependency graph down:
//!
//! - `commands`: the commands `main` calls, one file per family, and the
//!   results sink every command that produces results shares.
//! - `classroom`: the live classroom (`racelab classroom`), a server over
//!   the SQL lab, `explore` and the trace analysis.
//! - `cli`: the clap argument types, read only by the command layer and
//!   `plan`.
//! - `plan`: one builder that validates any race's arguments into a plan.
//! - target kinds: `lab` (strategies on the SQL lab) and `http` (an HTTP
//!   service), each a `run::Target`; `explore` (every interleaving of a
//!   few buyers on the SQL lab); `shop` (the shop `serve` runs).
//! - `run`: the pipeline, one repetition loop for every target kind.
//! - `report`: tables, JSON, JUnit, HTML, progress; `verdict`: the one
//!   place that decides safe / oversold / inconsistent / inconclusive and
//!   checks `--expect`; `result`: the result contract.
//! - `trace`, `explain`: teaching aids over the strategy and the lab.
//! - domain modules, which take no `cli` types: `engine` (barrier, buyers,
//!   tallies, contention), `strategy` (the script language), `scenario`
//!   (workloads), `db` (the server, the lab schema, the audit queries),
//!   `proxy` (the PostgreSQL wire proxy that records a service's SQL).
//! - leaves: `error` (failure kinds and exit codes), `outcome`, `suggest`,
//!   `timings`, `hex`, `files` (written whole and durably).
//!
//! No module depends on one above it: the tests in `layers.rs` read the
//! source and fail on any import cycle between these modules, or a layer
//! that names one above it.

pub mod classroom;
pub mod cli;
pub mod commands;
pub mod db;
pub mod engine;
pub mod error;
pub mod explain;
pub mod explore;
pub mod files;
pub mod hex;
pub mod http;
pub mod lab;
pub mod outcome;
pub mod plan;
pub mod proxy;
pub mod report;
pub mod result;
pub mod run;
pub mod scenario;
pub mod secret;
pub mod service;
pub mod shop;
pub mod strategy;
pub mod suggest;
pub mod timings;
pub mod trace;
pub mod verdict;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod layers;
