//! The statement model: the one place racelab reads SQL. Every SQL statement
//! of a strategy (body and `\setup`) is parsed once, at load time, by
//! `sqlparser` with its PostgreSQL dialect, and what matters for a race is
//! stored on the statement as `Facts`: its kind, the rows it reads and
//! writes, the row, table and advisory locks it takes, how each assigned
//! column is computed, the WHERE guard, the columns it returns and the
//! constraints a `\setup` statement adds. `explain`, the `--trace` analysis
//! and the interpreter read these facts, never the text.
//!
//! The statement arrives with the script's `:name` variables already turned
//! into `$n` placeholders by the lexer; `param` maps `$n` back to the
//! variable's slot, so every variable in a fact is a slot of the `Program`.
//!
//! SQL that sqlparser cannot read stays runnable (the server is the judge):
//! its facts say `unreadable` with the parser's message and nothing else.

mod dml;
mod operand;
mod reader;
mod scope;

use super::expr::Expr;

/// A transaction isolation level. READ UNCOMMITTED is READ COMMITTED in
/// PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// What kind of statement it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BEGIN` / `START TRANSACTION`, with the isolation level it asks for.
    Begin(Option<Isolation>),
    /// `SET TRANSACTION ISOLATION LEVEL ...`; `session` for `SET SESSION
    /// CHARACTERISTICS AS TRANSACTION ...` (every later transaction).
    SetIsolation {
        level: Isolation,
        session: bool,
    },
    /// A query that returns rows (SELECT, VALUES, TABLE, set operations).
    Select,
    Insert,
    Update,
    Delete,
    /// `COMMIT` / `END`; `chain` for `AND CHAIN` (a new transaction opens).
    Commit {
        chain: bool,
    },
    /// `ROLLBACK` / `ABORT` (not `ROLLBACK TO SAVEPOINT`).
    Rollback {
        chain: bool,
    },
    /// `LOCK TABLE`.
    LockTable,
    /// Anything else (DDL, savepoints, SET, ...), and unreadable SQL.
    Other,
}

/// A column, with the table it belongs to when that is known (`None`: an
/// unqualified name in a statement over several tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    pub table: Option<String>,
    pub column: String,
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A column of the rows of `reads[read]` (`None`: the rows themselves,
    /// e.g. `count(*)`).
    Read { read: usize, column: Option<String> },
    /// What `writes[write]` wrote: its RETURNING or its row count. No other
    /// buyer can have claimed the same rows.
    Write(usize),
    /// The result of `advisory[call]` (a `pg_try_advisory_*` call).
    Advisory(usize),
}

/// The first slot `Operand::with_columns` gives a column: far above any
/// variable's.
pub const COLUMN_SLOT: usize = usize::MAX / 2;

/// One side of a comparison, or any value expression.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operand {
    /// Columns it refers to.
    pub cols: Vec<Col>,
    /// Variable slots it uses.
    pub vars: Vec<usize>,
    /// Where its column values come from.
    pub sources: Vec<Source>,
    /// The value as a script expression, when it is made of variables,
    /// integers, `+ - * / %`, comparisons, `and or not`, `least`,
    /// `greatest`, `abs` and casts only.
    pub expr: Option<Expr>,
    /// The value as a script expression in which each column is a slot of
    /// its own (`COLUMN_SLOT + i` for the `i`-th name of `columns`), when it
    /// is made of columns, variables and what the script language evaluates:
    /// lets `explain` decide whether a guard such as `stock - :qty >= 0`
    /// keeps a decrement from going below zero.
    pub with_columns: Option<(Expr, Vec<String>)>,
    /// Something else is in it: a string or other literal, a subquery, a
    /// function racelab does not evaluate.
    pub opaque: bool,
    /// As written, with variables as `:name`.
    pub text: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One top-level `AND` conjunct of a WHERE (or join condition) that is a
/// comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub left: Operand,
    pub op: Cmp,
    pub right: Operand,
    pub text: String,
}

impl Comparison {
    /// The columns of `table` it compares against values that contain no
    /// column: `(column, value)` for `col = :x`, `col = 3`, `:x = col`.
    pub fn key_of(&self, table: &str) -> Option<(&str, &Operand)> {
        if self.op != Cmp::Eq {
            return None;
        }
        fn single<'o>(o: &'o Operand, table: &str) -> Option<&'o str> {
            match o.cols.as_slice() {
                [c] if o.vars.is_empty()
                    && !o.opaque
                    && o.sources.len() <= 1
                    && c.table.as_deref().map_or(true, |t| t == table) =>
                {
                    Some(c.column.as_str())
                }
                _ => None,
            }
        }
        let value = |o: &Operand| o.cols.is_empty() && o.expr.is_some();
        if let Some(c) = single(&self.left, table).filter(|_| value(&self.right)) {
            return Some((c, &self.right));
        }
        single(&self.right, table)
            .filter(|_| value(&self.left))
            .map(|c| (c, &self.left))
    }

    /// Whether it bounds `column` of `table` from below: `stock >= :qty`,
    /// `stock - :qty >= 0`, `0 < stock`.
    pub fn bounds_below(&self, table: &str, column: &str) -> bool {
        let has = |o: &Operand| {
            o.cols
                .iter()
                .any(|c| c.column == column && c.table.as_deref().map_or(true, |t| t == table))
        };
        match self.op {
            Cmp::Ge | Cmp::Gt => has(&self.left) && !has(&self.right),
            Cmp::Le | Cmp::Lt => has(&self.right) && !has(&self.left),
            _ => false,
        }
    }
}

/// The rows a read or write touches: the equality conjuncts that pick them
/// (`id = :product`) and every comparison of its WHERE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rows {
    /// `(column, value)`: the key the rows are picked by.
    pub key: Vec<(String, Operand)>,
    /// Every comparison conjunct of the WHERE (and join conditions).
    pub filter: Vec<Comparison>,
    /// The WHERE has parts that are not plain comparisons (OR, IN, ...).
    pub opaque: bool,
}

/// Rows of one table that a statement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub table: String,
    /// Columns of it the statement refers to.
    pub columns: Vec<String>,
    pub rows: Rows,
    /// The row lock (`row_locks[i]`) a `FOR ...` clause takes on these rows.
    pub lock: Option<usize>,
}

/// How a write changes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Update,
    Insert,
    Delete,
}

/// How an assigned column's new value is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `c = c + e` / `c = c - e`: from the row's latest version; `sign` is
    /// -1 for a decrement, `by` is `e` when racelab can evaluate it.
    Relative { sign: i8, by: Option<Expr> },
    /// From the row's own columns in another way (`c = greatest(c - 1, 0)`,
    /// `a = b`).
    Row,
    /// From variables (and constants) only: `stock = :stock - :qty`; `expr`
    /// when racelab can evaluate it.
    Variables {
        vars: Vec<usize>,
        expr: Option<Expr>,
    },
    /// A constant.
    Constant(Option<Expr>),
    /// From other rows read by the same statement (a subquery, `UPDATE ...
    /// FROM`), and maybe variables.
    Rows {
        sources: Vec<Source>,
        vars: Vec<usize>,
    },
}

/// One `column = value` of an UPDATE (or of an INSERT's single row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    pub column: String,
    pub value: Value,
    /// The value as written, variables as `:name`.
    pub text: String,
}

/// Rows of one table that a statement writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub table: String,
    pub op: WriteOp,
    pub assigns: Vec<Assign>,
    /// The rows an UPDATE or DELETE picks (empty for INSERT).
    pub rows: Rows,
    /// Columns of the written rows it returns (RETURNING).
    pub returning: Vec<String>,
    /// The CTE it is the body of (`WITH sold AS (UPDATE ...)`).
    pub cte: Option<String>,
    /// `INSERT ... ON CONFLICT`.
    pub on_conflict: bool,
}

/// The strength of a row lock (`FOR UPDATE` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStrength {
    Update,
    NoKeyUpdate,
    Share,
    KeyShare,
}

impl LockStrength {
    pub fn as_str(self) -> &'static str {
        match self {
            LockStrength::Update => "FOR UPDATE",
            LockStrength::NoKeyUpdate => "FOR NO KEY UPDATE",
            LockStrength::Share => "FOR SHARE",
            LockStrength::KeyShare => "FOR KEY SHARE",
        }
    }

    /// Whether it conflicts with the lock an UPDATE of non-key columns
    /// takes (FOR NO KEY UPDATE): everything but FOR KEY SHARE.
    pub fn blocks_updates(self) -> bool {
        self != LockStrength::KeyShare
    }
}

/// What a locking clause does when a row is already locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Block,
    Nowait,
    SkipLocked,
}

/// A `FOR UPDATE | NO KEY UPDATE | SHARE | KEY SHARE [OF t] [NOWAIT | SKIP
/// LOCKED]` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLock {
    pub strength: LockStrength,
    pub wait: Wait,
    /// The tables named by `OF` (empty: every table of the query).
    pub of: Vec<String>,
    /// The reads whose rows it locks.
    pub reads: Vec<usize>,
}

/// A `LOCK TABLE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLock {
    pub tables: Vec<String>,
    /// The mode as PostgreSQL names it (`ACCESS EXCLUSIVE` by default).
    pub mode: &'static str,
    /// Whether the mode conflicts with ROW EXCLUSIVE (what UPDATE takes):
    /// SHARE and stronger.
    pub blocks_writes: bool,
    /// Whether two buyers taking it wait for each other.
    pub self_conflicting: bool,
    pub nowait: bool,
}

/// How long an advisory lock lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryScope {
    /// `pg_advisory_xact_lock`: until COMMIT or ROLLBACK.
    Xact,
    /// `pg_advisory_lock`: until `pg_advisory_unlock` or the session ends.
    Session,
}

/// What an advisory-lock call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryAction {
    Lock,
    Unlock,
    UnlockAll,
}

/// A call of one of PostgreSQL's advisory-lock functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// The function as called, e.g. `pg_advisory_xact_lock`.
    pub function: String,
    pub scope: AdvisoryScope,
    pub action: AdvisoryAction,
    /// `pg_try_...`: returns false instead of waiting.
    pub try_only: bool,
    /// `..._shared`: shared mode (shared holders do not exclude each other).
    pub shared: bool,
    /// The key arguments.
    pub key: Vec<Operand>,
}

/// One output column of a statement that returns rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The name PostgreSQL gives it, when racelab is sure of it.
    pub name: Option<String>,
    /// Where its value comes from (columns read, rows written, lock calls).
    pub sources: Vec<Source>,
    /// Variable slots it is computed from.
    pub vars: Vec<usize>,
}

/// A constraint a `\setup` statement adds or drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// `CHECK (...)` on `table`: its comparison conjuncts.
    Check {
        table: String,
        name: Option<String>,
        conjuncts: Vec<Comparison>,
        text: String,
    },
    /// A unique index, UNIQUE or PRIMARY KEY constraint.
    Unique {
        table: String,
        name: Option<String>,
        columns: Vec<String>,
    },
    /// `ALTER TABLE ... DROP CONSTRAINT name`.
    Drop { table: String, name: String },
}

/// What racelab knows about one SQL statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: Kind,
    /// `Some(parser message)`: sqlparser could not read the statement; every
    /// other field is then empty and `kind` is `Other`.
    pub unreadable: Option<String>,
    pub reads: Vec<Read>,
    pub writes: Vec<Write>,
    pub row_locks: Vec<RowLock>,
    pub table_locks: Vec<TableLock>,
    pub advisory: Vec<Advisory>,
    /// The output columns, when the statement returns rows.
    pub outputs: Option<Vec<Output>>,
    /// The write whose matched rows are the statement's row count (`:rows`):
    /// the statement itself, or the data-modifying CTE an INSERT ... SELECT
    /// takes its rows from.
    pub rows_from: Option<usize>,
    pub constraints: Vec<Constraint>,
}

impl Facts {
    fn new(kind: Kind) -> Facts {
        Facts {
            kind,
            unreadable: None,
            reads: Vec::new(),
            writes: Vec::new(),
            row_locks: Vec::new(),
            table_locks: Vec::new(),
            advisory: Vec::new(),
            outputs: None,
            rows_from: None,
            constraints: Vec::new(),
        }
    }

    /// Whether the statement returns rows (so `\gset` makes sense); `None`
    /// when it is unreadable.
    pub fn returns_rows(&self) -> Option<bool> {
        match self.unreadable {
            Some(_) => None,
            None => Some(self.outputs.is_some()),
        }
    }

    /// The output column names, when every one is certain.
    pub fn output_names(&self) -> Option<Vec<String>> {
        self.outputs
            .as_ref()?
            .iter()
            .map(|o| o.name.clone())
            .collect()
    }
}

/// The name of variable slot `s`, for display.
pub type Names<'a> = &'a dyn Fn(usize) -> String;

/// Read one statement. `param(n)` is the variable slot bound to `$n`;
/// `names(slot)` its name, for the `text` of operands.
pub fn read(sql_text: &str, param: &dyn Fn(usize) -> Option<usize>, names: Names) -> Facts {
    match reader::read_inner(sql_text, param, names) {
        Ok(f) => f,
        Err(message) => {
            let mut f = Facts::new(Kind::Other);
            f.unreadable = Some(message);
            f
        }
    }
}
