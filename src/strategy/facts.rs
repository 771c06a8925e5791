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

use std::ops::ControlFlow;

use sqlparser::ast as sql;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::expr::{BinOp, Expr, Func};

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
    match read_inner(sql_text, param, names) {
        Ok(f) => f,
        Err(message) => {
            let mut f = Facts::new(Kind::Other);
            f.unreadable = Some(message);
            f
        }
    }
}

fn read_inner(
    text: &str,
    param: &dyn Fn(usize) -> Option<usize>,
    names: Names,
) -> Result<Facts, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| e.to_string())?;
    let (tokens, strengths) = lock_strengths(tokens);
    let mut stmts = Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| e.to_string())?;
    let stmt = match stmts.len() {
        1 => stmts.remove(0),
        0 => return Err("no SQL statement".into()),
        n => return Err(format!("{n} statements where one was expected")),
    };
    let mut r = Reader {
        f: Facts::new(Kind::Other),
        ctes: Vec::new(),
        aliases: Vec::new(),
        strengths,
        next_lock: 0,
        feeds: None,
        param,
        names,
    };
    r.statement(&stmt);
    if r.next_lock != r.strengths.len() {
        return Err("racelab could not match its locking clauses".into());
    }
    r.safety_net(&stmt);
    Ok(r.f)
}

/// sqlparser reads `FOR UPDATE` and `FOR SHARE` only: take the strength of
/// every locking clause from its tokens, in order, and hand the parser
/// `FOR NO KEY UPDATE` as `FOR UPDATE` and `FOR KEY SHARE` as `FOR SHARE`.
fn lock_strengths(tokens: Vec<TokenWithSpan>) -> (Vec<TokenWithSpan>, Vec<LockStrength>) {
    let kw = |t: &TokenWithSpan| match &t.token {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    };
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut strengths = Vec::new();
    let mut i = 0;
    // Indices of the next non-whitespace tokens after `from`.
    let next = |from: usize, n: usize| -> Vec<usize> {
        tokens[from..]
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
            .take(n)
            .map(|(k, _)| from + k)
            .collect()
    };
    while i < tokens.len() {
        if kw(&tokens[i]) == Some(Keyword::FOR) {
            let after = next(i + 1, 3);
            let k: Vec<Option<Keyword>> = after.iter().map(|&j| kw(&tokens[j])).collect();
            let (strength, skip_to) = match k.as_slice() {
                [Some(Keyword::NO), Some(Keyword::KEY), Some(Keyword::UPDATE)] => {
                    (Some(LockStrength::NoKeyUpdate), Some(after[2]))
                }
                [Some(Keyword::KEY), Some(Keyword::SHARE), ..] => {
                    (Some(LockStrength::KeyShare), Some(after[1]))
                }
                [Some(Keyword::UPDATE), ..] => (Some(LockStrength::Update), None),
                [Some(Keyword::SHARE), ..] => (Some(LockStrength::Share), None),
                _ => (None, None),
            };
            if let Some(s) = strength {
                strengths.push(s);
            }
            out.push(tokens[i].clone());
            if let Some(j) = skip_to {
                out.push(TokenWithSpan {
                    token: Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
                    span: tokens[i].span,
                });
                i = j;
                continue;
            }
            i += 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    (out, strengths)
}

fn ident(i: &sql::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn object_last(n: &sql::ObjectName) -> String {
    match n.0.last() {
        Some(sql::ObjectNamePart::Identifier(i)) => ident(i),
        Some(other) => other.to_string().to_lowercase(),
        None => String::new(),
    }
}

/// What a name in a FROM list stands for.
#[derive(Debug, Clone)]
enum Bound {
    /// A table read by the statement: `reads[i]`.
    Table(usize),
    /// The table a write changes: `writes[i]`.
    Target(usize),
    /// A CTE, subquery or table function: its outputs, and where its rows
    /// come from.
    Derived {
        outputs: Vec<Output>,
        rows: Vec<Source>,
    },
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    bound: Bound,
    /// How deep the (sub)query that bound it is: an unqualified column
    /// belongs to the innermost level.
    level: usize,
}

fn next_level(scope: &[Binding]) -> usize {
    scope.iter().map(|b| b.level + 1).max().unwrap_or(0)
}

struct Cte {
    name: String,
    outputs: Vec<Output>,
    write: Option<usize>,
}

struct Reader<'a> {
    f: Facts,
    ctes: Vec<Cte>,
    /// `aliases[i]`: the name `reads[i]` was bound to (for `FOR UPDATE OF`).
    aliases: Vec<String>,
    strengths: Vec<LockStrength>,
    next_lock: usize,
    /// The data-modifying CTE an INSERT ... SELECT takes its rows from.
    feeds: Option<usize>,
    param: &'a dyn Fn(usize) -> Option<usize>,
    names: Names<'a>,
}

fn isolation(modes: &[sql::TransactionMode]) -> Option<Isolation> {
    modes.iter().find_map(|m| match m {
        sql::TransactionMode::IsolationLevel(l) => Some(match l {
            sql::TransactionIsolationLevel::RepeatableRead => Isolation::RepeatableRead,
            sql::TransactionIsolationLevel::Serializable => Isolation::Serializable,
            // READ UNCOMMITTED is READ COMMITTED in PostgreSQL; SNAPSHOT is
            // not PostgreSQL's.
            _ => Isolation::ReadCommitted,
        }),
        _ => None,
    })
}

fn cmp_of(op: &sql::BinaryOperator) -> Option<Cmp> {
    use sql::BinaryOperator as B;
    Some(match op {
        B::Eq => Cmp::Eq,
        B::NotEq => Cmp::Ne,
        B::Lt => Cmp::Lt,
        B::LtEq => Cmp::Le,
        B::Gt => Cmp::Gt,
        B::GtEq => Cmp::Ge,
        _ => return None,
    })
}

fn strip(e: &sql::Expr) -> &sql::Expr {
    match e {
        sql::Expr::Nested(x) => strip(x),
        _ => e,
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl Reader<'_> {
    fn statement(&mut self, s: &sql::Statement) {
        use sql::Statement as S;
        match s {
            S::StartTransaction { modes, .. } => self.f.kind = Kind::Begin(isolation(modes)),
            S::Set(sql::Set::SetTransaction { modes, session, .. }) => {
                if let Some(level) = isolation(modes) {
                    self.f.kind = Kind::SetIsolation {
                        level,
                        session: *session,
                    };
                }
            }
            S::Commit { chain, .. } => self.f.kind = Kind::Commit { chain: *chain },
            S::Rollback {
                chain,
                savepoint: None,
            } => self.f.kind = Kind::Rollback { chain: *chain },
            S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_) => {
                let (outputs, kind) = match s {
                    S::Query(q) => self.query(q, &[]),
                    _ => self.dml(s, &[]),
                };
                self.f.kind = kind;
                self.f.outputs = outputs;
                let main = self.f.writes.iter().rposition(|w| w.cte.is_none());
                self.f.rows_from = match kind {
                    Kind::Insert => self.feeds.or(main),
                    Kind::Update | Kind::Delete => main,
                    _ => None,
                };
            }
            S::Lock(l) => {
                use sql::LockTableMode as M;
                let mode = l.lock_mode.clone().unwrap_or(M::AccessExclusive);
                let name = match mode {
                    M::AccessShare => "ACCESS SHARE",
                    M::RowShare => "ROW SHARE",
                    M::RowExclusive => "ROW EXCLUSIVE",
                    M::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
                    M::Share => "SHARE",
                    M::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
                    M::Exclusive => "EXCLUSIVE",
                    M::AccessExclusive => "ACCESS EXCLUSIVE",
                };
                self.f.kind = Kind::LockTable;
                self.f.table_locks.push(TableLock {
                    tables: l.tables.iter().map(|t| object_last(&t.name)).collect(),
                    mode: name,
                    blocks_writes: matches!(
                        mode,
                        M::Share | M::ShareRowExclusive | M::Exclusive | M::AccessExclusive
                    ),
                    self_conflicting: matches!(
                        mode,
                        M::ShareUpdateExclusive
                            | M::ShareRowExclusive
                            | M::Exclusive
                            | M::AccessExclusive
                    ),
                    nowait: l.nowait,
                });
            }
            S::AlterTable(a) => {
                let table = object_last(&a.name);
                for op in &a.operations {
                    match op {
                        sql::AlterTableOperation::AddConstraint { constraint, .. } => {
                            self.table_constraint(&table, constraint)
                        }
                        sql::AlterTableOperation::DropConstraint { name, .. } => {
                            self.f.constraints.push(Constraint::Drop {
                                table: table.clone(),
                                name: ident(name),
                            })
                        }
                        sql::AlterTableOperation::AddColumn { column_def, .. } => {
                            self.column_constraints(&table, column_def)
                        }
                        _ => {}
                    }
                }
            }
            S::CreateTable(c) => {
                let table = object_last(&c.name);
                for col in &c.columns {
                    self.column_constraints(&table, col);
                }
                for k in &c.constraints {
                    self.table_constraint(&table, k);
                }
            }
            S::CreateIndex(i) if i.unique => {
                let table = object_last(&i.table_name);
                let columns = i
                    .columns
                    .iter()
                    .map(|c| match strip(&c.column.expr) {
                        sql::Expr::Identifier(x) => ident(x),
                        other => other.to_string(),
                    })
                    .collect();
                self.f.constraints.push(Constraint::Unique {
                    table,
                    name: i.name.as_ref().map(object_last),
                    columns,
                });
            }
            _ => {}
        }
    }

    fn column_constraints(&mut self, table: &str, col: &sql::ColumnDef) {
        for o in &col.options {
            match &o.option {
                sql::ColumnOption::Check(c) => {
                    let name = o.name.as_ref().or(c.name.as_ref()).map(ident);
                    self.check(table, name, &c.expr);
                }
                sql::ColumnOption::Unique(_) | sql::ColumnOption::PrimaryKey(_) => {
                    self.f.constraints.push(Constraint::Unique {
                        table: table.to_string(),
                        name: o.name.as_ref().map(ident),
                        columns: vec![ident(&col.name)],
                    })
                }
                _ => {}
            }
        }
    }

    fn table_constraint(&mut self, table: &str, c: &sql::TableConstraint) {
        let cols = |v: &[sql::IndexColumn]| -> Vec<String> {
            v.iter()
                .map(|c| match strip(&c.column.expr) {
                    sql::Expr::Identifier(x) => ident(x),
                    other => other.to_string(),
                })
                .collect()
        };
        match c {
            sql::TableConstraint::Check(k) => {
                self.check(table, k.name.as_ref().map(ident), &k.expr)
            }
            sql::TableConstraint::Unique(u) => self.f.constraints.push(Constraint::Unique {
                table: table.to_string(),
                name: u.name.as_ref().map(ident),
                columns: cols(&u.columns),
            }),
            sql::TableConstraint::PrimaryKey(u) => self.f.constraints.push(Constraint::Unique {
                table: table.to_string(),
                name: u.name.as_ref().map(ident),
                columns: cols(&u.columns),
            }),
            _ => {}
        }
    }

    fn check(&mut self, table: &str, name: Option<String>, e: &sql::Expr) {
        let scope = [Binding {
            name: table.to_string(),
            bound: Bound::Derived {
                outputs: Vec::new(),
                rows: Vec::new(),
            },
            level: 0,
        }];
        let (conjuncts, _) = self.conjuncts(e, &scope);
        // Columns of a CHECK are the table's own.
        let conjuncts = conjuncts
            .into_iter()
            .map(|mut c| {
                for o in [&mut c.left, &mut c.right] {
                    for col in &mut o.cols {
                        col.table = Some(table.to_string());
                    }
                }
                c
            })
            .collect();
        let text = self.show(e);
        self.f.constraints.push(Constraint::Check {
            table: table.to_string(),
            name,
            conjuncts,
            text,
        });
    }

    /// A query: its output columns (when it returns rows) and its kind.
    fn query(&mut self, q: &sql::Query, outer: &[Binding]) -> (Option<Vec<Output>>, Kind) {
        let depth = self.ctes.len();
        if let Some(w) = &q.with {
            for cte in &w.cte_tables {
                let before = self.f.writes.len();
                let (outputs, _) = self.query(&cte.query, outer);
                let write = (self.f.writes.len() > before).then(|| self.f.writes.len() - 1);
                let name = ident(&cte.alias.name);
                if let Some(w) = write {
                    self.f.writes[w].cte = Some(name.clone());
                }
                let mut outputs = outputs.unwrap_or_default();
                for (o, alias) in outputs.iter_mut().zip(&cte.alias.columns) {
                    o.name = Some(ident(&alias.name));
                }
                self.ctes.push(Cte {
                    name,
                    outputs,
                    write,
                });
            }
        }
        let reads_before = self.f.reads.len();
        let (outputs, kind) = self.set_expr(&q.body, outer);
        if let Some(limit) = &q.limit_clause {
            let scope: Vec<Binding> = outer.to_vec();
            match limit {
                sql::LimitClause::LimitOffset { limit, offset, .. } => {
                    if let Some(l) = limit {
                        self.operand(l, &scope);
                    }
                    if let Some(o) = offset {
                        self.operand(&o.value, &scope);
                    }
                }
                sql::LimitClause::OffsetCommaLimit { offset, limit } => {
                    self.operand(offset, &scope);
                    self.operand(limit, &scope);
                }
            }
        }
        for lock in &q.locks {
            let strength =
                self.strengths
                    .get(self.next_lock)
                    .copied()
                    .unwrap_or(match lock.lock_type {
                        sql::LockType::Share => LockStrength::Share,
                        sql::LockType::Update => LockStrength::Update,
                    });
            self.next_lock += 1;
            let of: Vec<String> = lock.of.iter().map(object_last).collect();
            let reads: Vec<usize> = (reads_before..self.f.reads.len())
                .filter(|&i| {
                    of.is_empty()
                        || of.contains(&self.f.reads[i].table)
                        || self.aliases.get(i).is_some_and(|a| of.contains(a))
                })
                .collect();
            let idx = self.f.row_locks.len();
            for &i in &reads {
                self.f.reads[i].lock.get_or_insert(idx);
            }
            self.f.row_locks.push(RowLock {
                strength,
                wait: match lock.nonblock {
                    Some(sql::NonBlock::Nowait) => Wait::Nowait,
                    Some(sql::NonBlock::SkipLocked) => Wait::SkipLocked,
                    None => Wait::Block,
                },
                of,
                reads,
            });
        }
        self.ctes.truncate(depth);
        (outputs, kind)
    }

    fn set_expr(&mut self, body: &sql::SetExpr, outer: &[Binding]) -> (Option<Vec<Output>>, Kind) {
        use sql::SetExpr as E;
        match body {
            E::Select(s) => (Some(self.select(s, outer)), Kind::Select),
            E::Query(q) => self.query(q, outer),
            E::SetOperation { left, right, .. } => {
                let (l, _) = self.set_expr(left, outer);
                let (r, _) = self.set_expr(right, outer);
                // The names are the left side's; values come from both.
                let outputs = l.map(|mut l| {
                    for (a, b) in l.iter_mut().zip(r.unwrap_or_default()) {
                        a.sources.extend(b.sources);
                        a.vars.extend(b.vars);
                    }
                    l
                });
                (outputs, Kind::Select)
            }
            E::Values(v) => {
                let mut outputs: Vec<Output> = Vec::new();
                for row in &v.rows {
                    for (k, e) in row.iter().enumerate() {
                        let o = self.operand(e, outer);
                        if outputs.len() <= k {
                            outputs.push(Output {
                                name: None,
                                sources: Vec::new(),
                                vars: Vec::new(),
                            });
                        }
                        outputs[k].sources.extend(o.sources);
                        outputs[k].vars.extend(o.vars);
                    }
                }
                (Some(outputs), Kind::Select)
            }
            E::Insert(s) | E::Update(s) | E::Delete(s) => self.dml(s, outer),
            E::Table(t) => {
                let name = t.table_name.as_ref().map(ident).unwrap_or_default();
                let level = next_level(outer);
                let b = self.bind_table(&name, None, level);
                let sources = self.all_sources(&[b]);
                (
                    Some(vec![Output {
                        name: None,
                        sources,
                        vars: Vec::new(),
                    }]),
                    Kind::Select,
                )
            }
            _ => (None, Kind::Other),
        }
    }
}

impl Reader<'_> {
    fn bind_table(&mut self, name: &str, alias: Option<String>, level: usize) -> Binding {
        let shown = alias.unwrap_or_else(|| name.to_string());
        if let Some(c) = self.ctes.iter().rev().find(|c| c.name == name) {
            let mut rows: Vec<Source> = Vec::new();
            let mut outputs = c.outputs.clone();
            if let Some(w) = c.write {
                rows.push(Source::Write(w));
                for o in &mut outputs {
                    push_unique(&mut o.sources, Source::Write(w));
                }
            } else {
                for o in &outputs {
                    for s in &o.sources {
                        push_unique(&mut rows, s.clone());
                    }
                }
            }
            return Binding {
                name: shown,
                bound: Bound::Derived { outputs, rows },
                level,
            };
        }
        let idx = self.f.reads.len();
        self.f.reads.push(Read {
            table: name.to_string(),
            columns: Vec::new(),
            rows: Rows::default(),
            lock: None,
        });
        self.aliases.push(shown.clone());
        Binding {
            name: shown,
            bound: Bound::Table(idx),
            level,
        }
    }

    /// The rows of every binding at the innermost level of `scope`.
    fn all_sources(&self, scope: &[Binding]) -> Vec<Source> {
        let level = scope.iter().map(|b| b.level).max().unwrap_or(0);
        let mut out = Vec::new();
        for b in scope.iter().filter(|b| b.level == level) {
            match &b.bound {
                Bound::Table(i) => push_unique(
                    &mut out,
                    Source::Read {
                        read: *i,
                        column: None,
                    },
                ),
                Bound::Target(w) => push_unique(&mut out, Source::Write(*w)),
                Bound::Derived { rows, .. } => {
                    for s in rows {
                        push_unique(&mut out, s.clone());
                    }
                }
            }
        }
        out
    }

    /// Resolve a column reference against the bindings in scope.
    fn column(&mut self, parts: &[sql::Ident], scope: &[Binding]) -> (Col, Vec<Source>) {
        let column = parts.last().map(ident).unwrap_or_default();
        let candidates: Vec<Binding> = if parts.len() >= 2 {
            let q = ident(&parts[parts.len() - 2]);
            scope
                .iter()
                .rev()
                .find(|b| b.name == q)
                .cloned()
                .into_iter()
                .collect()
        } else {
            let level = scope.iter().map(|b| b.level).max().unwrap_or(0);
            let inner: Vec<Binding> = scope.iter().filter(|b| b.level == level).cloned().collect();
            // Among several, a derived table that has the column by name.
            let named: Vec<Binding> = inner
                .iter()
                .filter(|b| match &b.bound {
                    Bound::Derived { outputs, .. } => outputs
                        .iter()
                        .any(|o| o.name.as_deref() == Some(column.as_str())),
                    _ => false,
                })
                .cloned()
                .collect();
            if inner.len() > 1 && named.len() == 1 {
                named
            } else {
                inner
            }
        };
        let mut sources = Vec::new();
        let mut tables: Vec<String> = Vec::new();
        for b in &candidates {
            match &b.bound {
                Bound::Table(i) => {
                    push_unique(&mut self.f.reads[*i].columns, column.clone());
                    sources.push(Source::Read {
                        read: *i,
                        column: Some(column.clone()),
                    });
                    tables.push(self.f.reads[*i].table.clone());
                }
                Bound::Target(w) => tables.push(self.f.writes[*w].table.clone()),
                Bound::Derived { outputs, rows } => {
                    match outputs
                        .iter()
                        .find(|o| o.name.as_deref() == Some(column.as_str()))
                    {
                        Some(o) => sources.extend(o.sources.iter().cloned()),
                        None => sources.extend(rows.iter().cloned()),
                    }
                    tables.push(b.name.clone());
                }
            }
        }
        let table = match tables.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        (Col { table, column }, sources)
    }

    /// An expression's operand facts; registers the reads and advisory calls
    /// inside it.
    fn operand(&mut self, e: &sql::Expr, scope: &[Binding]) -> Operand {
        let mut o = Operand::default();
        self.walk(e, scope, &mut o);
        o.expr = if o.cols.is_empty() && !o.opaque {
            self.compile(e)
        } else {
            None
        };
        if !o.opaque {
            let mut names = Vec::new();
            o.with_columns = self.compile_in(e, Some(&mut names)).map(|x| (x, names));
        }
        o.text = self.show(e);
        o
    }

    fn walk(&mut self, e: &sql::Expr, scope: &[Binding], o: &mut Operand) {
        use sql::Expr as E;
        match e {
            E::Identifier(i) => {
                let (c, s) = self.column(std::slice::from_ref(i), scope);
                push_unique(&mut o.cols, c);
                o.sources.extend(s);
            }
            E::CompoundIdentifier(parts) => {
                let (c, s) = self.column(parts, scope);
                push_unique(&mut o.cols, c);
                o.sources.extend(s);
            }
            E::Value(v) => match &v.value {
                sql::Value::Number(n, _) if n.parse::<i64>().is_ok() => {}
                sql::Value::Boolean(_) => {}
                sql::Value::Placeholder(p) => match self.placeholder(p) {
                    Some(slot) => push_unique(&mut o.vars, slot),
                    None => o.opaque = true,
                },
                _ => o.opaque = true,
            },
            E::Nested(x) | E::Cast { expr: x, .. } => self.walk(x, scope, o),
            E::UnaryOp { expr, .. } => self.walk(expr, scope, o),
            E::BinaryOp { left, right, .. } => {
                self.walk(left, scope, o);
                self.walk(right, scope, o);
            }
            E::Function(f) => self.function(f, scope, o),
            E::Subquery(q) | E::Exists { subquery: q, .. } => {
                let (outputs, _) = self.query(q, scope);
                for out in outputs.unwrap_or_default() {
                    o.sources.extend(out.sources);
                    o.vars.extend(out.vars);
                }
                o.opaque = true;
            }
            E::In { expr, target, .. } => {
                self.walk(expr, scope, o);
                match target {
                    sql::InTarget::List(v) => {
                        for x in v {
                            self.walk(x, scope, o);
                        }
                    }
                    sql::InTarget::Subquery(q) => {
                        let (outputs, _) = self.query(q, scope);
                        for out in outputs.unwrap_or_default() {
                            o.sources.extend(out.sources);
                        }
                    }
                    _ => {}
                }
                o.opaque = true;
            }
            E::Between {
                expr, low, high, ..
            } => {
                for x in [expr, low, high] {
                    self.walk(x, scope, o);
                }
                o.opaque = true;
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(x) = operand {
                    self.walk(x, scope, o);
                }
                for c in conditions {
                    self.walk(&c.condition, scope, o);
                    self.walk(&c.result, scope, o);
                }
                if let Some(x) = else_result {
                    self.walk(x, scope, o);
                }
                o.opaque = true;
            }
            E::IsNull(x) | E::IsNotNull(x) | E::IsTrue(x) | E::IsFalse(x) => {
                self.walk(x, scope, o);
                o.opaque = true;
            }
            E::Tuple(v) => {
                for x in v {
                    self.walk(x, scope, o);
                }
                o.opaque = true;
            }
            other => {
                // Anything else: its variables and columns, found by
                // sqlparser's visitor (subqueries included).
                o.opaque = true;
                let mut found: Vec<sql::Expr> = Vec::new();
                let _ = sql::visit_expressions(other, |x: &sql::Expr| {
                    if !std::ptr::eq(x, other) {
                        found.push(x.clone());
                    }
                    ControlFlow::<()>::Continue(())
                });
                for x in &found {
                    match x {
                        E::Identifier(_) | E::CompoundIdentifier(_) | E::Value(_) => {
                            self.walk(x, scope, o)
                        }
                        E::Function(f) => {
                            self.advisory_call(f, scope, o);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn placeholder(&self, p: &str) -> Option<usize> {
        p.strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| (self.param)(n))
    }

    fn function_args(f: &sql::Function) -> (Vec<&sql::Expr>, bool) {
        let mut args = Vec::new();
        let mut star = false;
        if let sql::FunctionArguments::List(l) = &f.args {
            for a in &l.args {
                let arg = match a {
                    sql::FunctionArg::Unnamed(x)
                    | sql::FunctionArg::Named { arg: x, .. }
                    | sql::FunctionArg::ExprNamed { arg: x, .. } => x,
                };
                match arg {
                    sql::FunctionArgExpr::Expr(x) => args.push(x),
                    _ => star = true,
                }
            }
        }
        (args, star)
    }

    fn function(&mut self, f: &sql::Function, scope: &[Binding], o: &mut Operand) {
        if self.advisory_call(f, scope, o) {
            return;
        }
        let (args, star) = Self::function_args(f);
        for a in args {
            self.walk(a, scope, o);
        }
        if let sql::FunctionArguments::Subquery(q) = &f.args {
            let (outputs, _) = self.query(q, scope);
            for out in outputs.unwrap_or_default() {
                o.sources.extend(out.sources);
            }
        }
        if star {
            // count(*): the rows themselves.
            let rows = self.all_sources(scope);
            o.sources.extend(rows);
        }
        if !matches!(object_last(&f.name).as_str(), "least" | "greatest" | "abs") {
            o.opaque = true;
        }
    }

    /// Register `f` when it is one of PostgreSQL's advisory-lock functions.
    fn advisory_call(&mut self, f: &sql::Function, scope: &[Binding], o: &mut Operand) -> bool {
        let name = object_last(&f.name);
        let Some(rest) = name
            .strip_prefix("pg_try_advisory_")
            .map(|r| (true, r))
            .or_else(|| name.strip_prefix("pg_advisory_").map(|r| (false, r)))
        else {
            return false;
        };
        let (try_only, rest) = rest;
        let (scope_kind, action, shared) = match rest {
            "lock" => (AdvisoryScope::Session, AdvisoryAction::Lock, false),
            "lock_shared" => (AdvisoryScope::Session, AdvisoryAction::Lock, true),
            "xact_lock" => (AdvisoryScope::Xact, AdvisoryAction::Lock, false),
            "xact_lock_shared" => (AdvisoryScope::Xact, AdvisoryAction::Lock, true),
            "unlock" if !try_only => (AdvisoryScope::Session, AdvisoryAction::Unlock, false),
            "unlock_shared" if !try_only => (AdvisoryScope::Session, AdvisoryAction::Unlock, true),
            "unlock_all" if !try_only => (AdvisoryScope::Session, AdvisoryAction::UnlockAll, false),
            _ => return false,
        };
        let (args, _) = Self::function_args(f);
        let key: Vec<Operand> = args.into_iter().map(|a| self.operand(a, scope)).collect();
        for k in &key {
            for v in &k.vars {
                push_unique(&mut o.vars, *v);
            }
        }
        let idx = self.f.advisory.len();
        self.f.advisory.push(Advisory {
            function: name,
            scope: scope_kind,
            action,
            try_only,
            shared,
            key,
        });
        o.sources.push(Source::Advisory(idx));
        o.opaque = true;
        true
    }

    /// A script expression for `e`, when it is made only of what the script
    /// language evaluates.
    fn compile(&self, e: &sql::Expr) -> Option<Expr> {
        self.compile_in(e, None)
    }

    /// `compile`, and with `columns` also columns, each as the slot
    /// `COLUMN_SLOT + i` of its name's index in `columns`.
    fn compile_in(&self, e: &sql::Expr, mut columns: Option<&mut Vec<String>>) -> Option<Expr> {
        use sql::BinaryOperator as B;
        use sql::Expr as E;
        let column = |name: &sql::Ident, columns: &mut Vec<String>| {
            let name = name.value.to_lowercase();
            let i = match columns.iter().position(|c| *c == name) {
                Some(i) => i,
                None => {
                    columns.push(name);
                    columns.len() - 1
                }
            };
            Expr::Var(COLUMN_SLOT + i)
        };
        Some(match e {
            E::Identifier(i) => column(i, columns?),
            E::CompoundIdentifier(parts) => column(parts.last()?, columns?),
            E::Nested(x) | E::Cast { expr: x, .. } => self.compile_in(x, columns)?,
            E::Value(v) => match &v.value {
                sql::Value::Number(n, _) => Expr::Int(n.parse().ok()?),
                sql::Value::Boolean(b) => Expr::Int(i64::from(*b)),
                sql::Value::Placeholder(p) => Expr::Var(self.placeholder(p)?),
                _ => return None,
            },
            E::UnaryOp { op, expr } => {
                let x = self.compile_in(expr, columns)?;
                match op {
                    sql::UnaryOperator::Minus => Expr::Neg(Box::new(x)),
                    sql::UnaryOperator::Plus => x,
                    sql::UnaryOperator::Not => Expr::Not(Box::new(x)),
                    _ => return None,
                }
            }
            E::BinaryOp { left, op, right } => {
                let op = match op {
                    B::Plus => BinOp::Add,
                    B::Minus => BinOp::Sub,
                    B::Multiply => BinOp::Mul,
                    B::Divide => BinOp::Div,
                    B::Modulo => BinOp::Rem,
                    B::Eq => BinOp::Eq,
                    B::NotEq => BinOp::Ne,
                    B::Lt => BinOp::Lt,
                    B::LtEq => BinOp::Le,
                    B::Gt => BinOp::Gt,
                    B::GtEq => BinOp::Ge,
                    B::And => BinOp::And,
                    B::Or => BinOp::Or,
                    _ => return None,
                };
                let l = self.compile_in(left, columns.as_deref_mut())?;
                Expr::Bin(op, Box::new(l), Box::new(self.compile_in(right, columns)?))
            }
            E::Function(f) => {
                let func = match object_last(&f.name).as_str() {
                    "least" => Func::Least,
                    "greatest" => Func::Greatest,
                    "abs" => Func::Abs,
                    _ => return None,
                };
                let (args, star) = Self::function_args(f);
                if star || args.is_empty() || (func == Func::Abs && args.len() != 1) {
                    return None;
                }
                Expr::Call(
                    func,
                    args.into_iter()
                        .map(|a| self.compile_in(a, columns.as_deref_mut()))
                        .collect::<Option<Vec<_>>>()?,
                )
            }
            _ => return None,
        })
    }

    /// `e` as written, with `$n` shown as `:name`.
    fn show(&self, e: &sql::Expr) -> String {
        let mut e = e.clone();
        let _ = sql::visit_expressions_mut(&mut e, |x: &mut sql::Expr| {
            if let sql::Expr::Value(v) = x {
                if let sql::Value::Placeholder(p) = &mut v.value {
                    if let Some(slot) = self.placeholder(p) {
                        *p = format!(":{}", (self.names)(slot));
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        e.to_string()
    }

    /// Split a condition on top-level AND into comparisons; the flag says
    /// whether anything else was in it.
    fn conjuncts(&mut self, e: &sql::Expr, scope: &[Binding]) -> (Vec<Comparison>, bool) {
        let mut out = Vec::new();
        let mut opaque = false;
        let mut stack = vec![e];
        while let Some(x) = stack.pop() {
            match strip(x) {
                sql::Expr::BinaryOp {
                    left,
                    op: sql::BinaryOperator::And,
                    right,
                } => {
                    stack.push(right);
                    stack.push(left);
                }
                sql::Expr::BinaryOp { left, op, right } if cmp_of(op).is_some() => {
                    let left = self.operand(left, scope);
                    let right = self.operand(right, scope);
                    out.push(Comparison {
                        left,
                        op: cmp_of(op).expect("checked"),
                        right,
                        text: self.show(x),
                    });
                }
                other => {
                    // Still read: a subquery in it is a read.
                    let _ = self.operand(other, scope);
                    opaque = true;
                }
            }
        }
        (out, opaque)
    }

    /// The key and filter of the rows of `table` under `filter`.
    fn rows_of(table: &str, filter: &[Comparison], opaque: bool) -> Rows {
        let key = filter
            .iter()
            .filter_map(|c| c.key_of(table))
            .map(|(c, v)| (c.to_string(), v.clone()))
            .collect();
        Rows {
            key,
            filter: filter.to_vec(),
            opaque,
        }
    }

    fn select(&mut self, s: &sql::Select, outer: &[Binding]) -> Vec<Output> {
        let level = next_level(outer);
        let mut scope: Vec<Binding> = outer.to_vec();
        let mut conds: Vec<&sql::Expr> = Vec::new();
        for twj in &s.from {
            self.table_with_joins(twj, &mut scope, level, &mut conds);
        }
        conds.extend(s.selection.iter());
        self.filter_rows(&scope, level, conds);
        let mut outputs = Vec::new();
        for item in &s.projection {
            outputs.extend(self.select_item(item, &scope));
        }
        if let Some(h) = &s.having {
            let _ = self.operand(h, &scope);
        }
        outputs
    }

    /// Read the WHERE (and join) conditions `conds` into comparisons and
    /// give them to every table bound at `level`.
    fn filter_rows(&mut self, scope: &[Binding], level: usize, conds: Vec<&sql::Expr>) {
        let mut filter = Vec::new();
        let mut opaque = false;
        for c in conds {
            let (cs, op) = self.conjuncts(c, scope);
            filter.extend(cs);
            opaque |= op;
        }
        self.set_rows(scope, level, &filter, opaque);
    }

    fn set_rows(&mut self, scope: &[Binding], level: usize, filter: &[Comparison], opaque: bool) {
        for b in scope.iter().filter(|b| b.level == level) {
            match b.bound {
                Bound::Table(i) => {
                    let t = self.f.reads[i].table.clone();
                    self.f.reads[i].rows = Self::rows_of(&t, filter, opaque);
                }
                Bound::Target(w) => {
                    let t = self.f.writes[w].table.clone();
                    self.f.writes[w].rows = Self::rows_of(&t, filter, opaque);
                }
                Bound::Derived { .. } => {}
            }
        }
    }

    fn select_item(&mut self, item: &sql::SelectItem, scope: &[Binding]) -> Vec<Output> {
        let one = |r: &mut Self, e: &sql::Expr, name: Option<String>| {
            let o = r.operand(e, scope);
            Output {
                name,
                sources: o.sources,
                vars: o.vars,
            }
        };
        match item {
            sql::SelectItem::UnnamedExpr(e) => vec![one(self, e, output_name(e))],
            sql::SelectItem::ExprWithAlias { expr, alias } => {
                vec![one(self, expr, Some(ident(alias)))]
            }
            sql::SelectItem::ExprWithAliases { expr, aliases } => {
                vec![one(self, expr, aliases.first().map(ident))]
            }
            sql::SelectItem::Wildcard(_) | sql::SelectItem::QualifiedWildcard(..) => {
                vec![Output {
                    name: None,
                    sources: self.all_sources(scope),
                    vars: Vec::new(),
                }]
            }
        }
    }

    fn table_with_joins<'e>(
        &mut self,
        twj: &'e sql::TableWithJoins,
        scope: &mut Vec<Binding>,
        level: usize,
        conds: &mut Vec<&'e sql::Expr>,
    ) {
        self.table_factor(&twj.relation, scope, level, conds);
        for j in &twj.joins {
            self.table_factor(&j.relation, scope, level, conds);
            use sql::JoinOperator as J;
            let c = match &j.join_operator {
                J::Join(c)
                | J::Inner(c)
                | J::Left(c)
                | J::LeftOuter(c)
                | J::Right(c)
                | J::RightOuter(c)
                | J::FullOuter(c)
                | J::CrossJoin(c)
                | J::Semi(c)
                | J::LeftSemi(c)
                | J::RightSemi(c)
                | J::Anti(c)
                | J::LeftAnti(c)
                | J::RightAnti(c)
                | J::StraightJoin(c) => Some(c),
                _ => None,
            };
            if let Some(sql::JoinConstraint::On(e)) = c {
                conds.push(e);
            }
        }
    }

    fn table_factor<'e>(
        &mut self,
        tf: &'e sql::TableFactor,
        scope: &mut Vec<Binding>,
        level: usize,
        conds: &mut Vec<&'e sql::Expr>,
    ) {
        use sql::TableFactor as T;
        match tf {
            T::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let b = self.bind_table(
                    &object_last(name),
                    alias.as_ref().map(|a| ident(&a.name)),
                    level,
                );
                scope.push(b);
            }
            T::Derived {
                subquery, alias, ..
            } => {
                let (outputs, _) = self.query(subquery, scope);
                let mut outputs = outputs.unwrap_or_default();
                if let Some(a) = alias {
                    for (o, c) in outputs.iter_mut().zip(&a.columns) {
                        o.name = Some(ident(&c.name));
                    }
                }
                let mut rows = Vec::new();
                for o in &outputs {
                    for s in &o.sources {
                        push_unique(&mut rows, s.clone());
                    }
                }
                scope.push(Binding {
                    name: alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default(),
                    bound: Bound::Derived { outputs, rows },
                    level,
                });
            }
            T::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins, scope, level, conds),
            other => {
                // A table function (generate_series(...)) and the like: its
                // arguments may use variables; it reads no table rows.
                let mut o = Operand::default();
                let mut found: Vec<sql::Expr> = Vec::new();
                let _ = sql::visit_expressions(other, |x: &sql::Expr| {
                    found.push(x.clone());
                    ControlFlow::<()>::Continue(())
                });
                for x in &found {
                    if let sql::Expr::Value(_) = x {
                        self.walk(x, scope, &mut o);
                    }
                }
                let alias = match other {
                    T::Table { alias, .. } | T::Function { alias, .. } => alias.as_ref(),
                    T::UNNEST { alias, .. } => alias.as_ref(),
                    _ => None,
                };
                scope.push(Binding {
                    name: alias.map(|a| ident(&a.name)).unwrap_or_default(),
                    bound: Bound::Derived {
                        outputs: Vec::new(),
                        rows: Vec::new(),
                    },
                    level,
                });
            }
        }
    }

    fn returning(
        &mut self,
        items: &Option<Vec<sql::SelectItem>>,
        w: usize,
        scope: &[Binding],
    ) -> Option<Vec<Output>> {
        let items = items.as_ref()?;
        let mut outputs = Vec::new();
        for item in items {
            for mut o in self.select_item(item, scope) {
                push_unique(&mut o.sources, Source::Write(w));
                if let Some(n) = &o.name {
                    push_unique(&mut self.f.writes[w].returning, n.clone());
                }
                outputs.push(o);
            }
        }
        Some(outputs)
    }

    fn new_write(&mut self, table: String, op: WriteOp) -> usize {
        self.f.writes.push(Write {
            table,
            op,
            assigns: Vec::new(),
            rows: Rows::default(),
            returning: Vec::new(),
            cte: None,
            on_conflict: false,
        });
        self.f.writes.len() - 1
    }

    /// An INSERT, UPDATE or DELETE, top level or in a CTE.
    fn dml(&mut self, s: &sql::Statement, outer: &[Binding]) -> (Option<Vec<Output>>, Kind) {
        let level = next_level(outer);
        let mut scope: Vec<Binding> = outer.to_vec();
        match s {
            sql::Statement::Update(u) => {
                let (table, alias) = match &u.table.relation {
                    sql::TableFactor::Table { name, alias, .. } => {
                        (object_last(name), alias.as_ref().map(|a| ident(&a.name)))
                    }
                    other => (other.to_string(), None),
                };
                let w = self.new_write(table.clone(), WriteOp::Update);
                scope.push(Binding {
                    name: alias.unwrap_or_else(|| table.clone()),
                    bound: Bound::Target(w),
                    level,
                });
                let mut conds: Vec<&sql::Expr> = Vec::new();
                for j in &u.table.joins {
                    self.table_factor(&j.relation, &mut scope, level, &mut conds);
                }
                if let Some(
                    sql::UpdateTableFromKind::BeforeSet(from)
                    | sql::UpdateTableFromKind::AfterSet(from),
                ) = &u.from
                {
                    for twj in from {
                        self.table_with_joins(twj, &mut scope, level, &mut conds);
                    }
                }
                conds.extend(u.selection.iter());
                self.filter_rows(&scope, level, conds);
                for a in &u.assignments {
                    self.assign(w, &a.target, &a.value, &scope);
                }
                let outputs = self.returning(&u.returning, w, &scope);
                (outputs, Kind::Update)
            }
            sql::Statement::Delete(d) => {
                let from = match &d.from {
                    sql::FromTable::WithFromKeyword(v) | sql::FromTable::WithoutKeyword(v) => v,
                };
                let (table, alias) = match d.tables.first() {
                    Some(n) => (object_last(n), None),
                    None => match from.first().map(|t| &t.relation) {
                        Some(sql::TableFactor::Table { name, alias, .. }) => {
                            (object_last(name), alias.as_ref().map(|a| ident(&a.name)))
                        }
                        _ => (String::new(), None),
                    },
                };
                let w = self.new_write(table.clone(), WriteOp::Delete);
                scope.push(Binding {
                    name: alias.unwrap_or_else(|| table.clone()),
                    bound: Bound::Target(w),
                    level,
                });
                let mut conds: Vec<&sql::Expr> = Vec::new();
                if let Some(first) = from.first() {
                    for j in &first.joins {
                        self.table_factor(&j.relation, &mut scope, level, &mut conds);
                    }
                }
                for twj in from.iter().skip(1).chain(d.using.iter().flatten()) {
                    self.table_with_joins(twj, &mut scope, level, &mut conds);
                }
                conds.extend(d.selection.iter());
                self.filter_rows(&scope, level, conds);
                let outputs = self.returning(&d.returning, w, &scope);
                (outputs, Kind::Delete)
            }
            sql::Statement::Insert(i) => {
                let table = match &i.table {
                    sql::TableObject::TableName(n) => object_last(n),
                    other => other.to_string(),
                };
                let alias = i.table_alias.as_ref().map(|a| ident(&a.alias));
                let columns: Vec<String> = i.columns.iter().map(object_last).collect();
                let mut feeds: Option<usize> = None;
                let mut values: Option<Vec<Operand>> = None;
                if let Some(src) = &i.source {
                    match src.body.as_ref() {
                        sql::SetExpr::Values(v) if v.rows.len() == 1 && src.with.is_none() => {
                            values =
                                Some(v.rows[0].iter().map(|e| self.operand(e, outer)).collect());
                        }
                        body => {
                            // INSERT ... SELECT ... FROM a data-modifying CTE
                            // inserts as many rows as that write matched.
                            if let sql::SetExpr::Select(sel) = body {
                                for t in &sel.from {
                                    if let sql::TableFactor::Table { name, .. } = &t.relation {
                                        let n = object_last(name);
                                        if let Some(c) =
                                            self.ctes.iter().rev().find(|c| c.name == n)
                                        {
                                            feeds = feeds.or(c.write);
                                        }
                                    }
                                }
                            }
                            let _ = self.query(src, outer);
                        }
                    }
                }
                let w = self.new_write(table.clone(), WriteOp::Insert);
                if let Some(vals) = values {
                    for (c, o) in columns.iter().zip(vals) {
                        let value = if o.sources.is_empty() {
                            if o.vars.is_empty() {
                                Value::Constant(o.expr.clone())
                            } else {
                                Value::Variables {
                                    vars: o.vars.clone(),
                                    expr: o.expr.clone(),
                                }
                            }
                        } else {
                            Value::Rows {
                                sources: o.sources.clone(),
                                vars: o.vars.clone(),
                            }
                        };
                        self.f.writes[w].assigns.push(Assign {
                            column: c.clone(),
                            value,
                            text: o.text.clone(),
                        });
                    }
                }
                scope.push(Binding {
                    name: alias.unwrap_or_else(|| table.clone()),
                    bound: Bound::Target(w),
                    level,
                });
                if let Some(sql::OnInsert::OnConflict(oc)) = &i.on {
                    self.f.writes[w].on_conflict = true;
                    if let sql::OnConflictAction::DoUpdate(du) = &oc.action {
                        scope.push(Binding {
                            name: "excluded".into(),
                            bound: Bound::Derived {
                                outputs: Vec::new(),
                                rows: Vec::new(),
                            },
                            level,
                        });
                        for a in &du.assignments {
                            self.assign(w, &a.target, &a.value, &scope);
                        }
                        if let Some(sel) = &du.selection {
                            let (cs, op) = self.conjuncts(sel, &scope);
                            let t = self.f.writes[w].table.clone();
                            self.f.writes[w].rows = Self::rows_of(&t, &cs, op);
                        }
                    }
                }
                let outputs = self.returning(&i.returning, w, &scope);
                if self.feeds.is_none() {
                    self.feeds = feeds;
                }
                (outputs, Kind::Insert)
            }
            _ => (None, Kind::Other),
        }
    }

    fn assign(
        &mut self,
        w: usize,
        target: &sql::AssignmentTarget,
        e: &sql::Expr,
        scope: &[Binding],
    ) {
        let columns: Vec<String> = match target {
            sql::AssignmentTarget::ColumnName(n) => vec![object_last(n)],
            sql::AssignmentTarget::Tuple(v) => v.iter().map(object_last).collect(),
        };
        let o = self.operand(e, scope);
        let table = self.f.writes[w].table.clone();
        let own = |c: &Col| c.table.as_deref().map_or(true, |t| t == table);
        for column in &columns {
            let value = if columns.len() > 1 {
                Value::Row
            } else if !o.sources.is_empty() {
                Value::Rows {
                    sources: o.sources.clone(),
                    vars: o.vars.clone(),
                }
            } else if o.cols.is_empty() {
                if o.vars.is_empty() {
                    Value::Constant(o.expr.clone())
                } else {
                    Value::Variables {
                        vars: o.vars.clone(),
                        expr: o.expr.clone(),
                    }
                }
            } else if o.cols.iter().all(|c| own(c) && c.column == *column) {
                self.relative(e, column).unwrap_or(Value::Row)
            } else {
                Value::Row
            };
            self.f.writes[w].assigns.push(Assign {
                column: column.clone(),
                value,
                text: o.text.clone(),
            });
        }
    }

    /// `c + e`, `c - e`, `e + c` with `e` free of columns.
    fn relative(&self, e: &sql::Expr, column: &str) -> Option<Value> {
        let is_col = |x: &sql::Expr| match strip(x) {
            sql::Expr::Identifier(i) => ident(i) == column,
            sql::Expr::CompoundIdentifier(p) => p.last().is_some_and(|i| ident(i) == column),
            _ => false,
        };
        let free = |x: &sql::Expr| {
            let mut has_col = false;
            let _ = sql::visit_expressions(x, |y: &sql::Expr| {
                if matches!(
                    y,
                    sql::Expr::Identifier(_) | sql::Expr::CompoundIdentifier(_)
                ) {
                    has_col = true;
                }
                ControlFlow::<()>::Continue(())
            });
            !has_col
        };
        match strip(e) {
            sql::Expr::BinaryOp { left, op, right } => {
                let sign = match op {
                    sql::BinaryOperator::Plus => 1,
                    sql::BinaryOperator::Minus => -1,
                    _ => return None,
                };
                if is_col(left) && free(right) {
                    Some(Value::Relative {
                        sign,
                        by: self.compile(right),
                    })
                } else if sign == 1 && is_col(right) && free(left) {
                    Some(Value::Relative {
                        sign,
                        by: self.compile(left),
                    })
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Whatever the walk above did not reach: tables named anywhere in the
    /// statement become reads of unknown rows, so no table goes unseen.
    fn safety_net(&mut self, stmt: &sql::Statement) {
        let mut names: Vec<String> = Vec::new();
        let _ = sql::visit_relations(stmt, |n: &sql::ObjectName| {
            names.push(object_last(n));
            ControlFlow::<()>::Continue(())
        });
        let mut ctes: Vec<String> = Vec::new();
        collect_cte_names(stmt, &mut ctes);
        let ddl = matches!(
            stmt,
            sql::Statement::AlterTable(_)
                | sql::Statement::CreateTable(_)
                | sql::Statement::CreateIndex(_)
                | sql::Statement::Drop { .. }
                | sql::Statement::Lock(_)
        );
        if ddl {
            return;
        }
        for n in names {
            let known = self.f.reads.iter().any(|r| r.table == n)
                || self.f.writes.iter().any(|w| w.table == n)
                || ctes.contains(&n);
            if !known {
                self.f.reads.push(Read {
                    table: n,
                    columns: Vec::new(),
                    rows: Rows {
                        opaque: true,
                        ..Rows::default()
                    },
                    lock: None,
                });
            }
        }
        if self.f.advisory.is_empty() {
            let mut calls: Vec<sql::Function> = Vec::new();
            let _ = sql::visit_expressions(stmt, |x: &sql::Expr| {
                if let sql::Expr::Function(f) = x {
                    calls.push(f.clone());
                }
                ControlFlow::<()>::Continue(())
            });
            for f in &calls {
                let mut o = Operand::default();
                self.advisory_call(f, &[], &mut o);
            }
        }
    }
}

fn collect_cte_names(stmt: &sql::Statement, out: &mut Vec<String>) {
    struct V<'o>(&'o mut Vec<String>);
    impl sql::Visitor for V<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &sql::Query) -> ControlFlow<()> {
            if let Some(w) = &q.with {
                self.0
                    .extend(w.cte_tables.iter().map(|c| ident(&c.alias.name)));
            }
            ControlFlow::Continue(())
        }
    }
    use sql::Visit as _;
    let _ = stmt.visit(&mut V(out));
}

/// The name PostgreSQL gives an unaliased output column, for the shapes
/// where it is certain: a column, `t.col`, `f(...)`, a cast of those.
fn output_name(e: &sql::Expr) -> Option<String> {
    match e {
        sql::Expr::Identifier(i) => Some(ident(i)),
        sql::Expr::CompoundIdentifier(p) => p.last().map(ident),
        sql::Expr::Function(f) => Some(object_last(&f.name)),
        sql::Expr::Cast { expr, .. } => match expr.as_ref() {
            sql::Expr::Identifier(_)
            | sql::Expr::CompoundIdentifier(_)
            | sql::Expr::Function(_) => output_name(expr),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `$n` is slot `100 + n`, named `vn`.
    fn f(sql: &str) -> Facts {
        read(sql, &|n| Some(100 + n), &|s| format!("v{}", s - 100))
    }

    #[test]
    fn transaction_kinds_and_isolation() {
        assert_eq!(f("BEGIN").kind, Kind::Begin(None));
        assert_eq!(
            f("begin isolation level serializable").kind,
            Kind::Begin(Some(Isolation::Serializable))
        );
        assert_eq!(
            f("START TRANSACTION ISOLATION LEVEL REPEATABLE READ").kind,
            Kind::Begin(Some(Isolation::RepeatableRead))
        );
        assert_eq!(
            f("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").kind,
            Kind::SetIsolation {
                level: Isolation::Serializable,
                session: false
            }
        );
        assert_eq!(f("COMMIT").kind, Kind::Commit { chain: false });
        assert_eq!(f("END").kind, Kind::Commit { chain: false });
        assert_eq!(f("COMMIT AND CHAIN").kind, Kind::Commit { chain: true });
        assert_eq!(f("ABORT").kind, Kind::Rollback { chain: false });
        assert_eq!(f("ROLLBACK TO SAVEPOINT a").kind, Kind::Other);
        assert_eq!(f("SELECT 1").kind, Kind::Select);
        assert_eq!(f("LOCK TABLE products").kind, Kind::LockTable);
    }

    #[test]
    fn row_locks_strength_wait_and_of() {
        let x = f("SELECT stock FROM products WHERE id = $1 FOR UPDATE");
        assert_eq!(x.row_locks.len(), 1);
        assert_eq!(x.row_locks[0].strength, LockStrength::Update);
        assert_eq!(x.reads[0].lock, Some(0));
        assert_eq!(x.reads[0].rows.key[0].0, "id");
        assert_eq!(x.reads[0].rows.key[0].1.vars, vec![101]);
        let x = f("select stock from products where id = $1 for no key update nowait");
        assert_eq!(x.row_locks[0].strength, LockStrength::NoKeyUpdate);
        assert_eq!(x.row_locks[0].wait, Wait::Nowait);
        let x = f("SELECT 1 FROM products FOR KEY SHARE SKIP LOCKED");
        assert_eq!(x.row_locks[0].strength, LockStrength::KeyShare);
        assert!(!x.row_locks[0].strength.blocks_updates());
        assert_eq!(x.row_locks[0].wait, Wait::SkipLocked);
        let x = f("SELECT p.stock FROM products p JOIN orders o ON o.product_id = p.id WHERE p.id = $1 FOR SHARE OF o");
        assert_eq!(x.row_locks[0].strength, LockStrength::Share);
        assert_eq!(x.row_locks[0].of, vec!["o"]);
        let locked: Vec<&str> = x.row_locks[0]
            .reads
            .iter()
            .map(|r| x.reads[*r].table.as_str())
            .collect();
        assert_eq!(locked, ["orders"]);
        // A subquery's lock in FROM, and the words in a comment or string.
        let x = f("SELECT count(*) FROM (SELECT id FROM orders WHERE buyer_id = $1 FOR UPDATE) o");
        assert_eq!(x.row_locks.len(), 1);
        let x = f("SELECT stock /* FOR UPDATE */, 'FOR UPDATE' FROM products -- FOR UPDATE");
        assert!(x.row_locks.is_empty());
        let x = f("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE");
        assert!(x.table_locks[0].blocks_writes && x.table_locks[0].self_conflicting);
        let x = f("LOCK products IN ACCESS SHARE MODE");
        assert!(!x.table_locks[0].blocks_writes);
    }

    #[test]
    fn advisory_calls() {
        let x = f("SELECT pg_advisory_xact_lock($1)");
        let a = &x.advisory[0];
        assert_eq!(
            (a.scope, a.action, a.try_only, a.shared),
            (AdvisoryScope::Xact, AdvisoryAction::Lock, false, false)
        );
        assert_eq!(a.key[0].vars, vec![101]);
        let x = f("SELECT pg_try_advisory_lock(hashtext('p' || $1)) AS got");
        let a = &x.advisory[0];
        assert!(a.try_only && a.scope == AdvisoryScope::Session);
        assert_eq!(a.key[0].vars, vec![101]);
        assert_eq!(
            x.outputs.as_ref().unwrap()[0].sources,
            vec![Source::Advisory(0)]
        );
        let x = f("SELECT pg_advisory_unlock(1, $2), pg_advisory_unlock_all()");
        assert_eq!(x.advisory[0].action, AdvisoryAction::Unlock);
        assert_eq!(x.advisory[1].action, AdvisoryAction::UnlockAll);
        let x = f("SELECT pg_advisory_lock_shared(7)");
        assert!(x.advisory[0].shared);
        assert!(x.advisory[0].key[0].vars.is_empty());
    }

    #[test]
    fn assigned_values() {
        let x = f("UPDATE products SET stock = stock - $1, version = version + 1, name = 'x', sold = $2 * 2 WHERE id = $3");
        let w = &x.writes[0];
        assert_eq!((w.table.as_str(), w.op), ("products", WriteOp::Update));
        let v: Vec<(&str, &Value)> = w
            .assigns
            .iter()
            .map(|a| (a.column.as_str(), &a.value))
            .collect();
        assert_eq!(
            v[0],
            (
                "stock",
                &Value::Relative {
                    sign: -1,
                    by: Some(Expr::Var(101))
                }
            )
        );
        assert!(matches!(v[1].1, Value::Relative { sign: 1, .. }));
        assert!(matches!(v[2].1, Value::Constant(None)));
        assert_eq!(
            v[3].1,
            &Value::Variables {
                vars: vec![102],
                expr: Some(Expr::Bin(
                    BinOp::Mul,
                    Box::new(Expr::Var(102)),
                    Box::new(Expr::Int(2))
                ))
            }
        );
        assert_eq!(w.assigns[3].text, ":v2 * 2");
        assert_eq!(x.rows_from, Some(0));
        let x = f("UPDATE products SET stock = greatest(stock - 1, 0)");
        assert_eq!(x.writes[0].assigns[0].value, Value::Row);
        // From rows the statement reads: UPDATE ... FROM a subquery.
        let x = f("UPDATE products p SET stock = s.stock - $1 FROM (SELECT stock FROM products WHERE id = $2) s WHERE p.id = $2");
        assert!(matches!(x.writes[0].assigns[0].value, Value::Rows { .. }));
        assert_eq!(x.reads.len(), 1);
        assert_eq!(x.writes[0].rows.key[0].0, "id");
    }

    #[test]
    fn where_guards() {
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1");
        let w = &x.writes[0];
        assert_eq!(w.rows.key.len(), 1);
        assert!(w
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock - $1 >= 0");
        assert!(x.writes[0]
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
        let x = f("UPDATE products SET stock = stock - $1 WHERE id = $2 AND 'stock >= 1' <> ''");
        assert!(!x.writes[0]
            .rows
            .filter
            .iter()
            .any(|c| c.bounds_below("products", "stock")));
        let x = f("UPDATE products SET stock = stock - 1 WHERE id = $1 OR stock > 5");
        assert!(x.writes[0].rows.opaque);
    }

    #[test]
    fn ctes_returning_and_rows() {
        let x = f("WITH sold AS (UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 RETURNING id) INSERT INTO orders (product_id, qty) SELECT id, $1 FROM sold");
        assert_eq!(x.kind, Kind::Insert);
        assert_eq!(x.writes.len(), 2);
        assert_eq!(x.writes[0].cte.as_deref(), Some("sold"));
        assert_eq!(x.writes[0].returning, vec!["id"]);
        assert_eq!(x.writes[1].table, "orders");
        // The INSERT inserts as many rows as the CTE's UPDATE matched.
        assert_eq!(x.rows_from, Some(0));
        assert!(x.outputs.is_none());
        let x = f("WITH sold AS (UPDATE products SET stock = stock - 1 RETURNING id) INSERT INTO orders (product_id) VALUES (1)");
        assert_eq!(x.rows_from, Some(1));
        let x = f("WITH c AS (DELETE FROM units WHERE product_id = $1 RETURNING unit_no) SELECT count(*) AS claimed FROM c");
        assert_eq!(x.kind, Kind::Select);
        let out = x.outputs.as_ref().unwrap();
        assert_eq!(out[0].name.as_deref(), Some("claimed"));
        assert_eq!(out[0].sources, vec![Source::Write(0)]);
        let x =
            f("UPDATE products SET stock = stock - 1 WHERE id = $1 RETURNING stock AS left_over");
        let out = x.outputs.as_ref().unwrap();
        assert_eq!(out[0].name.as_deref(), Some("left_over"));
        assert!(out[0].sources.contains(&Source::Write(0)));
        assert_eq!(x.returns_rows(), Some(true));
        assert_eq!(
            f("UPDATE products SET stock = 1").returns_rows(),
            Some(false)
        );
    }

    #[test]
    fn outputs_name_their_sources() {
        let x = f("SELECT o.qty AS stock, p.version FROM products p JOIN orders o ON o.product_id = p.id WHERE p.id = $1");
        let out = x.outputs.as_ref().unwrap();
        assert_eq!(out[0].name.as_deref(), Some("stock"));
        let Source::Read { read, column } = &out[0].sources[0] else {
            panic!("{:?}", out[0].sources)
        };
        assert_eq!(
            (x.reads[*read].table.as_str(), column.as_deref()),
            ("orders", Some("qty"))
        );
        assert_eq!(out[1].name.as_deref(), Some("version"));
        // Subqueries read too.
        let x = f("SELECT (SELECT count(*) FROM orders WHERE product_id = $1) AS n, stock FROM products WHERE id = $1");
        let tables: Vec<&str> = x.reads.iter().map(|r| r.table.as_str()).collect();
        assert!(
            tables.contains(&"orders") && tables.contains(&"products"),
            "{tables:?}"
        );
        let x = f("SELECT stock FROM products WHERE id IN (SELECT product_id FROM orders WHERE buyer_id = $1)");
        assert!(x.reads.iter().any(|r| r.table == "orders"));
        assert_eq!(f("SELECT * FROM products").output_names(), None);
        assert_eq!(f("VALUES (1)").output_names(), None);
    }

    #[test]
    fn inserts_and_upserts() {
        let x = f("INSERT INTO orders (product_id, buyer_id, qty) VALUES ($1, $2, 3)");
        let w = &x.writes[0];
        assert_eq!(w.op, WriteOp::Insert);
        assert_eq!(w.assigns.len(), 3);
        assert!(matches!(
            w.assigns[2].value,
            Value::Constant(Some(Expr::Int(3)))
        ));
        let x = f("INSERT INTO orders (product_id, qty) SELECT id, $1 FROM products WHERE id = $2 AND stock > 0");
        assert!(x.reads.iter().any(|r| r.table == "products"));
        let x = f("INSERT INTO tally (product_id, n) VALUES ($1, 1) ON CONFLICT (product_id) DO UPDATE SET n = tally.n + excluded.n");
        let w = &x.writes[0];
        assert!(w.on_conflict);
        assert!(w
            .assigns
            .iter()
            .any(|a| a.column == "n" && matches!(a.value, Value::Row | Value::Relative { .. })));
    }

    #[test]
    fn setup_constraints() {
        let x = f("ALTER TABLE products ADD CONSTRAINT nn CHECK (stock >= 0)");
        let Constraint::Check {
            table,
            name,
            conjuncts,
            ..
        } = &x.constraints[0]
        else {
            panic!("{:?}", x.constraints)
        };
        assert_eq!((table.as_str(), name.as_deref()), ("products", Some("nn")));
        assert!(conjuncts[0].bounds_below("products", "stock"));
        let x = f("ALTER TABLE products DROP CONSTRAINT IF EXISTS nn");
        assert!(matches!(&x.constraints[0], Constraint::Drop { name, .. } if name == "nn"));
        let x = f("CREATE UNIQUE INDEX one_each ON orders (product_id, buyer_id)");
        assert!(
            matches!(&x.constraints[0], Constraint::Unique { columns, .. } if columns == &["product_id", "buyer_id"])
        );
        let x = f("CREATE TABLE units (product_id bigint NOT NULL, n bigint CHECK (n > 0), PRIMARY KEY (product_id, n))");
        assert_eq!(x.constraints.len(), 2, "{:?}", x.constraints);
    }

    #[test]
    fn unreadable_sql_is_a_fact() {
        let x =
            f("SELECT p.stock FROM products p, products q WHERE p.id = q.id FOR UPDATE OF p, q");
        assert!(x.unreadable.as_deref().is_some_and(|m| !m.is_empty()));
        assert_eq!(x.kind, Kind::Other);
        assert_eq!(x.returns_rows(), None);
        assert!(x.reads.is_empty() && x.writes.is_empty());
        let x = f("PREPARE TRANSACTION 'x'");
        assert!(x.unreadable.is_some());
        assert!(f("SELECT 1; SELECT 2").unreadable.is_some());
    }
}
