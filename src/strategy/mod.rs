//! The strategy script language (DESIGN §4): lexing and parsing a `.sql`
//! strategy into a `Program` once per run, and interpreting it for one
//! attempt on one connection. The built-in strategies live in `strategies/`
//! and are compiled in.
//!
//! INTERFACE PLACEHOLDER: replaced by the real implementation.

use std::path::PathBuf;
use std::time::Instant;

use sqlx::PgConnection;

use crate::outcome::AttemptReport;

/// A parse or load error: file, line, column, the line itself and a caret.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub source_line: String,
}

impl ParseError {
    pub fn render(&self) -> String {
        format!("{self}")
    }
}

pub fn description(_source: &str) -> String {
    String::new()
}

/// Where a strategy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

/// A loaded, parsed strategy.
#[derive(Debug, Clone)]
pub struct Strategy {
    pub name: String,
    pub origin: Origin,
    pub source: String,
    pub description: String,
    pub program: Program,
}

/// A parsed script.
#[derive(Debug, Clone)]
pub struct Program {}

/// The built-in strategies: (name, source), in a stable order.
pub fn builtins() -> &'static [(&'static str, &'static str)] {
    &[]
}

/// Load a strategy by built-in name or by path (anything containing a `/`
/// or ending in `.sql`).
pub fn load(_spec: &str) -> anyhow::Result<Strategy> {
    unimplemented!()
}

/// The values an attempt starts with.
#[derive(Debug, Clone, Copy)]
pub struct AttemptCtx {
    pub product: i64,
    pub qty: i64,
    pub buyer: i64,
    pub attempt: i64,
    pub think_ms: i64,
    /// 0 = unlimited.
    pub max_tries: u32,
}

/// One event of a traced attempt (`--trace`).
#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub start: Instant,
    pub end: Instant,
    pub try_no: u32,
    pub line: usize,
    pub what: String,
}

/// Per-buyer interpreter state: variables, rng, scratch buffers; reused for
/// every attempt so the hot path does not allocate.
pub struct Session<'p> {
    _p: &'p Program,
}

impl Program {
    pub fn session(&self, _seed: u64) -> Session<'_> {
        unimplemented!()
    }

    pub fn has_setup(&self) -> bool {
        false
    }
}

impl Session<'_> {
    pub async fn attempt(
        &mut self,
        _conn: &mut PgConnection,
        _ctx: &AttemptCtx,
        _trace: Option<&mut Vec<TraceEvent>>,
    ) -> AttemptReport {
        unimplemented!()
    }
}

/// Run the `\setup` block for one product on the fresh lab.
pub async fn run_setup(
    _program: &Program,
    _conn: &mut PgConnection,
    _products: &[(i64, i64)],
) -> anyhow::Result<()> {
    Ok(())
}
