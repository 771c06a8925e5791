//! The strategy script language (DESIGN §4): lexing and parsing a `.sql`
//! strategy into a `Program` once per run, and interpreting it for one
//! attempt on one connection. The built-in strategies live in `strategies/`
//! and are compiled in.
//!
//! - `lex`: splits a script into SQL statements and meta-command lines.
//! - `parse`: builds the `Program` and does every load-time check.
//! - `facts`: the statement model, the one place that reads SQL (sqlparser).
//! - `expr`: the integer expressions of `\set`, `\if`, `\sleep`.
//! - `interp`: runs one attempt (`Session::attempt`) and `\setup`.
//! - `builtin`: the embedded strategies and `load`.

use std::path::PathBuf;

mod builtin;
pub mod confine;
mod expr;
pub(crate) mod facts;
mod interp;
mod lex;
mod parse;
mod program;
mod redis;
pub use redis::command_names as redis_command_names;
mod vars;
pub(crate) use redis::RedisEffect;

/// What one attempt starts with and what it did, shared with the engine.
pub use crate::outcome::{AttemptCtx, TraceEvent, TraceKind};

pub use builtin::{builtins, load};
pub(crate) use expr::{BinOp, EvalError, Expr};
pub use interp::{
    run_setup, setup_calls, Bound, Boundary, Injected, RedisConn, Session, SessionFaults,
    SetupCall, StepGate, TxEffect,
};
pub use lex::Placeholder;
pub use parse::parse;
pub use program::Program;
pub(crate) use program::{Instr, Stmt};
pub(crate) use vars::{ATTEMPT, BUILTIN_VARS, BUYER, PRODUCT, QTY, ROWS, TRY};

/// A parse or load error: file, line, column, the line itself and a caret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ParseError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
    pub source_line: String,
}

impl ParseError {
    /// The one-line message, then the offending line and a caret under the
    /// column, rustc-style (no trailing newline):
    ///
    /// ```text
    /// my.sql:2:1: unknown meta-command `\sett`; did you mean `\set`?
    /// 2 | \sett x 1
    ///   | ^
    /// ```
    pub fn render(&self) -> String {
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        // Keep tabs so the caret lines up however the terminal expands them.
        let indent: String = self
            .source_line
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{self}\n{num} | {}\n{pad} | {indent}^", self.source_line)
    }
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
    /// Shared by every race of the run (parsed once, never copied).
    pub program: std::sync::Arc<Program>,
}

/// The strategy's description: its leading `--` comment lines, without the
/// `--` and one following space, joined with newlines.
pub fn description(source: &str) -> String {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut lines = Vec::new();
    for line in source.lines() {
        let Some(rest) = line.trim_start().strip_prefix("--") else {
            break;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        lines.push(rest.trim_end());
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop, prop_assert, proptest, ProptestConfig};
    use proptest::strategy::Strategy as _;

    #[test]
    fn description_is_the_leading_comment_block() {
        assert_eq!(
            description("-- one\n--two\n  --   three  \n--\nSELECT 1;\n-- not this\n"),
            "one\ntwo\n  three"
        );
        assert_eq!(description("SELECT 1;\n-- late\n"), "");
        assert_eq!(description("\u{feff}-- x\r\n-- y\r\n"), "x\ny");
        assert_eq!(description("-- a\n\n-- b\n"), "a");
    }

    #[test]
    fn render_handles_odd_positions() {
        let e = ParseError {
            file: "f".into(),
            line: 10,
            col: 3,
            message: "m".into(),
            source_line: "ab".into(),
        };
        assert_eq!(e.render(), "f:10:3: m\n10 | ab\n   |   ^");
    }

    /// Fragments that exercise every lexer state and meta-command.
    fn soup() -> impl proptest::strategy::Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "SELECT",
            "stock",
            "FROM",
            "products",
            " ",
            " ",
            "\n",
            "\n",
            ";",
            ";\n",
            ":x",
            ":product",
            "::int",
            ":",
            "'",
            "''",
            "E'",
            "\\'",
            "\"",
            "$$",
            "$t$",
            "$1",
            "--",
            "/*",
            "*/",
            "(",
            ")",
            ",",
            "AS",
            "\\gset",
            "\\set x 1",
            "\\if :x > 1",
            "\\elif 0",
            "\\else",
            "\\endif",
            "\\sleep :think ms",
            "\\sold_out",
            "\\retry",
            "\\setup",
            "\\endsetup",
            "\\bogus",
            "RETURNING",
            "BEGIN",
            "COMMIT",
            "\\",
            "\t",
            "\r\n",
            "é",
        ]);
        prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        #[test]
        fn parse_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
            if let Err(e) = parse("p.sql", &s) {
                let _ = e.render();
            }
            let _ = description(&s);
        }

        #[test]
        fn parse_never_panics_on_token_soup(s in soup()) {
            match parse("p.sql", &s) {
                Err(e) => {
                    prop_assert!(e.line >= 1 && e.col >= 1, "{e}");
                    let _ = e.render();
                }
                Ok(p) => {
                    let _ = p.session(1);
                }
            }
        }
    }
}
