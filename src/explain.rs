//! `racelab explain STRATEGY`: the script, annotated statement by statement
//! with what PostgreSQL does there (isolation, locks, waits, how each write
//! is computed), then a verdict — SAFE, UNSAFE (reason and lines) or UNSURE
//! (what racelab cannot follow, named) — from the data flow of the program.
//! Everything here is read from the statements' facts
//! (`strategy::facts`), never from the text: comments cannot change a note
//! or the verdict.
//!
//! - `catalog`: functions and triggers `\setup` creates, applied to the
//!   statements that set them off (the *effective* facts).
//! - `paths`: every path through the program, with transactions, isolation
//!   levels, locks held and where every value came from.
//! - `protect`: whether a value read is still current when the write that
//!   depends on it commits (locks, isolation, advisory and Redis locks).
//! - `writes`, `decrement`, `bounds`: the writes — lost updates, stale
//!   checks, split transactions, decrements and write-backs that can go
//!   below zero, compensations.
//! - `redis`: Redis on its own (lost updates, WATCH/EXEC, lock TTLs).
//! - `verdict`: the verdict and its findings; `render`: the annotated text.
//! - `check`: `--check`, the verdict held against `explore`; `result`:
//!   `--json`.

mod bounds;
mod catalog;
pub mod check;
mod decrement;
mod finding;
pub(crate) mod paths;
mod protect;
mod redis;
mod render;
pub mod result;
mod verdict;
mod writes;

pub use render::{render, render_verdict};
pub use verdict::{Finding, Level, Verdict};

use crate::strategy::{self, Program};

/// The verdict on a program.
pub fn verdict(prog: &Program) -> Verdict {
    verdict::verdict(prog)
}

/// `racelab explain`: the script, annotated, then a summary and the verdict.
pub fn explain(spec: &str) -> anyhow::Result<String> {
    let s = strategy::load(spec)?;
    Ok(render(&s))
}
