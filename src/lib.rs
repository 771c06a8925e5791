//! racelab: a race-condition lab and benchmark harness for PostgreSQL.
//!
//! Data flows one way: CLI -> plan -> database -> buyers -> audit -> report.
//! `cli` holds the argument types, `plan` validates them into a run plan,
//! `db` provides the server and the lab schema, `strategy` interprets the
//! purchase scripts, `engine` races the buyers, `report` renders results,
//! and `run` carries a plan out. `app` is the command layer `main` calls.
//! `http` races an HTTP service with the same engine; `serve` is a small
//! shop over HTTP for it to race.

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
pub mod outcome;
pub mod plan;
pub mod report;
pub mod run;
pub mod scenario;
pub mod serve;
pub mod strategy;
pub mod suggest;
pub mod timings;
pub mod trace;
pub mod watch;
