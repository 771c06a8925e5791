//! racelab: a race-condition lab and benchmark harness for PostgreSQL.
//!
//! Data flows one way: CLI -> plan -> database -> buyers -> audit -> report.
//! `cli` holds the argument types, `plan` validates them into a run plan,
//! `db` provides the server and the lab schema, `strategy` interprets the
//! purchase scripts, `engine` races the buyers, `report` renders results,
//! and `run` carries a plan out. `app` is the command layer `main` calls.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod db;
pub mod dbcmd;
pub mod engine;
pub mod error;
pub mod explain;
pub mod outcome;
pub mod plan;
pub mod report;
pub mod run;
pub mod scenario;
pub mod strategy;
pub mod suggest;
pub mod timings;
pub mod trace;
pub mod watch;
