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
mod fold;
mod operand;
mod plpgsql;
mod reader;
mod rewrite;
mod routine;
mod scope;
mod slots;

pub(crate) use fold::fold;
pub(crate) use rewrite::map_expr;
pub use routine::{
    BodySlot, Exit, Routine, RoutineBody, RoutineStep, Slots, Trigger, TriggerEvent, TriggerTiming,
};

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

    /// The level a setting's text names, as PostgreSQL reads it (any case,
    /// READ UNCOMMITTED being READ COMMITTED).
    pub fn parse(text: &str) -> Option<Isolation> {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["read", "committed"] | ["read", "uncommitted"] => Some(Isolation::ReadCommitted),
            ["repeatable", "read"] => Some(Isolation::RepeatableRead),
            ["serializable"] => Some(Isolation::Serializable),
            _ => None,
        }
    }
}

/// The value a statement gives an isolation setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsoValue {
    Level(Isolation),
    /// `DEFAULT` or `RESET`: the level `default_transaction_isolation` says
    /// (for `default_transaction_isolation` itself: the server's default,
    /// READ COMMITTED unless the server is configured otherwise).
    Default,
    /// A value racelab cannot evaluate (a variable, a function, a word
    /// PostgreSQL would refuse).
    Unknown,
}

/// Which isolation setting a statement changes, and so what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsoTarget {
    /// This transaction's level: `SET TRANSACTION ISOLATION LEVEL`, `SET
    /// [LOCAL | SESSION] transaction_isolation`. PostgreSQL takes it only
    /// before the transaction's first query (after it, a different level
    /// fails with 25001); outside a transaction block it changes nothing.
    Transaction,
    /// The session's default for transactions that start later: `SET
    /// SESSION CHARACTERISTICS AS TRANSACTION ...`, `SET
    /// default_transaction_isolation`.
    SessionDefault,
    /// `SET LOCAL default_transaction_isolation`: the default of the
    /// transactions that start later, until this one ends, so nothing.
    LocalDefault,
}

/// A `set_config(name, value, is_local)` call inside a query on a setting
/// that may be the isolation level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoCall {
    /// `None`: the setting's name is not a literal racelab can read.
    pub target: Option<IsoTarget>,
    pub value: IsoValue,
    /// The call as written.
    pub text: String,
}

/// What kind of statement it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BEGIN` / `START TRANSACTION`, with the isolation level it asks for.
    Begin(Option<Isolation>),
    /// A statement that sets an isolation level (see `IsoTarget` for which
    /// and what that changes).
    SetIsolation {
        value: IsoValue,
        target: IsoTarget,
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
    /// The result of `calls[call]` (a function `\setup` may have created).
    Call(usize),
}

/// The first slot of a value a statement holds (`Facts::values`): the
/// value of slot `VALUE_SLOT + k` is the column `Facts::values[k]` reads
/// (a function's local variable that `SELECT ... INTO` filled, once the
/// function is applied to the statement that calls it).
pub const VALUE_SLOT: usize = usize::MAX / 8;

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
    /// It is a scalar subquery reading one column of one table's rows:
    /// `(SELECT stock FROM products WHERE id = :product [FOR UPDATE])`.
    pub subquery: Option<Subquery>,
    /// As written, with variables as `:name`.
    pub text: String,
}

/// A scalar subquery that reads one column of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subquery {
    /// The read (`Facts::reads`) of its rows.
    pub read: usize,
    pub column: String,
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
                    && o.subquery.is_none()
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
    /// Conditions under which the row is not written after all (a
    /// trigger's RAISE or RETURN NULL), on the row as it would be written.
    pub checks: Vec<RowCheck>,
    /// The CTE it is the body of (`WITH sold AS (UPDATE ...)`).
    pub cte: Option<String>,
    /// `INSERT ... ON CONFLICT`.
    pub on_conflict: bool,
}

/// A condition that stops a row from being written: a trigger that raises
/// or skips the row when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCheck {
    /// The condition, on the row's new values (a column is
    /// `COLUMN_SLOT + i` for the `i`-th name), as `Operand::with_columns`.
    pub refuses: (Expr, Vec<String>),
    /// What happens when it holds.
    pub effect: CheckEffect,
    /// Who checks it, for explain: e.g. `the trigger no_negative_stock`.
    pub by: String,
    pub line: usize,
}

/// What a `RowCheck` does to a row it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckEffect {
    /// The statement fails with a class 23 error: the attempt is rejected.
    Rejects,
    /// The statement fails with another error: the attempt ends in error.
    Fails,
    /// The row is skipped (BEFORE trigger RETURN NULL): zero rows.
    Skips,
}

/// A condition inside a function the statement calls, under which the
/// function ends (RETURN or RAISE) before its later writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The condition (its variables are the script's, `VALUE_SLOT`s, or
    /// unknown).
    pub cond: Operand,
    /// The writes at this index and after run only when it is false.
    pub from_write: usize,
    /// Where it is, for explain.
    pub text: String,
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

/// A table lock mode, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    /// Plain SELECT.
    AccessShare,
    /// SELECT ... FOR UPDATE / FOR SHARE.
    RowShare,
    /// UPDATE, DELETE, INSERT.
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    /// As PostgreSQL names it.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// PostgreSQL's table of conflicting lock modes (the documentation's
    /// "Conflicting Lock Modes"): whether a transaction holding `self`
    /// makes one asking for `other` wait.
    pub fn conflicts(self, other: LockMode) -> bool {
        use LockMode as M;
        let with: &[LockMode] = match self {
            M::AccessShare => &[M::AccessExclusive],
            M::RowShare => &[M::Exclusive, M::AccessExclusive],
            M::RowExclusive => &[
                M::Share,
                M::ShareRowExclusive,
                M::Exclusive,
                M::AccessExclusive,
            ],
            M::ShareUpdateExclusive => &[
                M::ShareUpdateExclusive,
                M::Share,
                M::ShareRowExclusive,
                M::Exclusive,
                M::AccessExclusive,
            ],
            M::Share => &[
                M::RowExclusive,
                M::ShareUpdateExclusive,
                M::ShareRowExclusive,
                M::Exclusive,
                M::AccessExclusive,
            ],
            M::ShareRowExclusive => &[
                M::RowExclusive,
                M::ShareUpdateExclusive,
                M::Share,
                M::ShareRowExclusive,
                M::Exclusive,
                M::AccessExclusive,
            ],
            M::Exclusive => &[
                M::RowShare,
                M::RowExclusive,
                M::ShareUpdateExclusive,
                M::Share,
                M::ShareRowExclusive,
                M::Exclusive,
                M::AccessExclusive,
            ],
            M::AccessExclusive => &LockMode::ALL,
        };
        with.contains(&other)
    }

    /// Whether it conflicts with ROW EXCLUSIVE, the lock every UPDATE,
    /// DELETE and INSERT takes on its table.
    pub fn blocks_writes(self) -> bool {
        self.conflicts(LockMode::RowExclusive)
    }

    /// Whether two buyers taking it wait for each other.
    pub fn self_conflicting(self) -> bool {
        self.conflicts(self)
    }
}

/// A `LOCK TABLE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLock {
    pub tables: Vec<String>,
    /// `ACCESS EXCLUSIVE` when the statement names none.
    pub mode: LockMode,
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
    /// The value in terms of the row's columns and variables, as
    /// `Operand::with_columns` (for RETURNING: the row as written).
    pub with_columns: Option<(Expr, Vec<String>)>,
}

/// A call of a function that is neither one of PostgreSQL's own racelab
/// knows to be harmless here (`count`, `coalesce`, `now`, ...) nor one it
/// reads otherwise (advisory locks, `set_config`): a function `\setup`
/// may have created, whose body the catalog of routines tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The name as called, lower case, without a schema.
    pub name: String,
    pub args: Vec<Operand>,
    /// As written.
    pub text: String,
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
    /// `set_config` calls on the isolation level.
    pub iso_calls: Vec<IsoCall>,
    /// Calls of functions racelab does not know by itself.
    pub calls: Vec<Call>,
    /// A function `CREATE FUNCTION` defines (in `\setup`).
    pub routine: Option<Routine>,
    /// A trigger `CREATE TRIGGER` defines (in `\setup`).
    pub trigger: Option<Trigger>,
    /// The columns `VALUE_SLOT + k` stands for.
    pub values: Vec<Source>,
    /// Conditions inside the functions it calls that end them before
    /// their later writes.
    pub guards: Vec<Guard>,
    /// The statement is read, but what it does is not followed (a DO block,
    /// CALL, EXECUTE, a rule, a setting of later connections, ROLLBACK TO
    /// SAVEPOINT): what it is, for explain to name.
    pub opaque: Option<String>,
}

impl Facts {
    pub(crate) fn new(kind: Kind) -> Facts {
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
            iso_calls: Vec::new(),
            calls: Vec::new(),
            routine: None,
            trigger: None,
            values: Vec::new(),
            guards: Vec::new(),
            opaque: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lock_conflict_table() {
        use LockMode::*;
        // PostgreSQL's documentation, "Conflicting Lock Modes": X marks.
        let table: [(LockMode, [u8; 8]); 8] = [
            (AccessShare, [0, 0, 0, 0, 0, 0, 0, 1]),
            (RowShare, [0, 0, 0, 0, 0, 0, 1, 1]),
            (RowExclusive, [0, 0, 0, 0, 1, 1, 1, 1]),
            (ShareUpdateExclusive, [0, 0, 0, 1, 1, 1, 1, 1]),
            (Share, [0, 0, 1, 1, 0, 1, 1, 1]),
            (ShareRowExclusive, [0, 0, 1, 1, 1, 1, 1, 1]),
            (Exclusive, [0, 1, 1, 1, 1, 1, 1, 1]),
            (AccessExclusive, [1, 1, 1, 1, 1, 1, 1, 1]),
        ];
        for (m, row) in table {
            for (o, x) in LockMode::ALL.iter().zip(row) {
                assert_eq!(m.conflicts(*o), x == 1, "{} vs {}", m.as_str(), o.as_str());
                assert_eq!(m.conflicts(*o), o.conflicts(m), "symmetric");
            }
        }
        assert!(ShareUpdateExclusive.self_conflicting() && !ShareUpdateExclusive.blocks_writes());
        assert!(Share.blocks_writes() && !Share.self_conflicting());
        assert!(!RowExclusive.self_conflicting());
    }

    #[test]
    fn isolation_words_as_postgresql_reads_them() {
        assert_eq!(
            Isolation::parse("Read  Committed"),
            Some(Isolation::ReadCommitted)
        );
        assert_eq!(
            Isolation::parse("read uncommitted"),
            Some(Isolation::ReadCommitted)
        );
        assert_eq!(
            Isolation::parse("SERIALIZABLE"),
            Some(Isolation::Serializable)
        );
        assert_eq!(Isolation::parse("snapshot"), None);
    }

    #[test]
    fn comparisons_name_keys_and_bounds() {
        let f = read(
            "UPDATE products SET stock = stock - $1 WHERE id = $2 AND 0 < stock",
            &|n| Some(100 + n),
            &|s| format!("v{}", s - 100),
        );
        let w = &f.writes[0];
        assert_eq!(w.rows.key[0].0, "id");
        assert!(w.rows.filter[1].bounds_below("products", "stock"));
        assert!(w.rows.filter[1].key_of("products").is_none());
    }
}
