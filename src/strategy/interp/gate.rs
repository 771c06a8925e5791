//! The hook at statement boundaries: a `StepGate` (explore's scheduler)
//! holds each SQL statement an attempt sends, seeing it as a `Boundary`.

use std::future::Future;
use std::pin::Pin;

use crate::outcome::TraceEvent;
use crate::strategy::Placeholder;

/// A value bound to a statement's `$n` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Bound as `int8`.
    Int(i64),
    /// Bound as `text`.
    Text(String),
}

/// What a statement does to the transaction, from the parsed script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    /// Opens one (BEGIN, START TRANSACTION, COMMIT/ROLLBACK AND CHAIN).
    Begin,
    /// Ends one and may commit (COMMIT, END, PREPARE TRANSACTION).
    Commit,
    /// Ends one without committing (ROLLBACK, ABORT).
    Rollback,
    Other,
}

/// A SQL statement about to be sent, as a `StepGate` sees it.
#[derive(Debug)]
pub struct Boundary<'a> {
    pub try_no: u32,
    /// The script line (for a ROLLBACK the interpreter sends: the line that
    /// ended the try).
    pub line: usize,
    /// The first line of the statement as written, or `ROLLBACK`.
    pub display: &'a str,
    /// The SQL sent, with `$1`, `$2`, ... placeholders.
    pub sql: &'a str,
    /// Where `sql` holds each placeholder.
    pub placeholders: &'a [Placeholder],
    /// The values bound to the placeholders, in order.
    pub params: Vec<Bound>,
    /// What the statement does to the transaction.
    pub tx: TxEffect,
    /// A ROLLBACK the interpreter sends (after an error, a conflict,
    /// `\retry`, `\sold_out` or a script ending inside a transaction).
    pub rollback: bool,
    /// The attempt's events so far when it is traced: the last SQL or
    /// rollback event among them is the previous statement's.
    pub trace: Option<&'a [TraceEvent]>,
}

/// Holds an attempt at every SQL statement boundary: before each statement
/// the interpreter sends (the script's own and the ROLLBACKs it sends), the
/// attempt waits until `wait` resolves. Local steps (`\set`, `\if`) are not
/// boundaries. Under a gate time stands still: `\sleep` and the backoff
/// between tries are skipped, since the gate decides the interleaving.
pub trait StepGate: Send {
    fn wait<'a>(&'a mut self, next: Boundary<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}
