//! racelab: a race-condition lab and benchmark harness for PostgreSQL.
//!
//! Data flows one way: CLI -> plan -> database -> buyers -> audit -> report.
//! `cli` holds the argument types, `plan` validates them into a run plan,
//! `db` provides the server and the lab schema, `strategy` interprets the
//! purchase scripts, `engine` races the buyers, and `report` renders results.

pub mod db;
pub mod error;
pub mod outcome;
pub mod scenario;
pub mod strategy;
