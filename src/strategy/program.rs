//! The parsed program: a flat list of instructions with resolved jumps,
//! the SQL statements with their bind slots and facts, the `\redis`
//! commands and the `\setup` block (built by `parse`, run by `interp`,
//! read by `explain` and `trace`), and what the lab asks of a program
//! before it races it.

use super::expr::Expr;
use super::facts::{Facts, Kind};
use super::lex::Placeholder;
use super::redis::RedisCmd;

/// A parsed script: what one attempt runs, and its `\setup` block.
#[derive(Debug, Clone)]
pub struct Program {
    /// Variable names; a variable's slot is its index here.
    pub(crate) vars: Vec<String>,
    pub(crate) instrs: Vec<Instr>,
    pub(crate) stmts: Vec<Stmt>,
    pub(crate) setup: Vec<SetupStmt>,
    /// The `\redis` commands, indexed by `Instr::Redis`.
    pub(crate) redis: Vec<RedisCmd>,
}

/// How a statement changes the transaction state (from its facts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKind {
    /// BEGIN, START TRANSACTION, ROLLBACK AND CHAIN.
    Begin,
    /// COMMIT, END: closes, and may have committed.
    Commit,
    /// COMMIT AND CHAIN: commits and opens a new transaction.
    CommitChain,
    /// ROLLBACK, ABORT.
    Rollback,
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub line: usize,
    /// The line it ends on.
    pub end_line: usize,
    /// The first line as written, for traces.
    pub display: String,
    /// The SQL sent, with `$n` placeholders; built once, never formatted
    /// per attempt, so the connection's statement cache parses it once.
    pub sql: String,
    /// The slot bound to `$1`, `$2`, ...
    pub params: Vec<usize>,
    /// Where `sql` holds each `$n` (the lexer's record).
    pub placeholders: Vec<Placeholder>,
    pub kind: TxKind,
    pub gset: Option<Gset>,
    /// What the statement does, read once by sqlparser.
    pub facts: Facts,
}

impl Stmt {
    /// Whether it needs the extended query protocol: it has bind
    /// parameters, or its row is read by `\gset` (typed columns). Through a
    /// pooler that switches server connections such a statement takes two
    /// round trips (parse, then bind and execute), which may land on two
    /// server connections.
    pub fn extended(&self) -> bool {
        !self.params.is_empty() || self.gset.is_some()
    }
}

impl TxKind {
    /// The transaction effect of a statement of this kind. A statement
    /// sqlparser cannot read is `Other`: it runs, but racelab does not
    /// track a transaction it might open or close.
    pub(crate) fn of(kind: Kind) -> TxKind {
        match kind {
            Kind::Begin(_) | Kind::Rollback { chain: true } => TxKind::Begin,
            Kind::Commit { chain: false } => TxKind::Commit,
            Kind::Commit { chain: true } => TxKind::CommitChain,
            Kind::Rollback { chain: false } => TxKind::Rollback,
            _ => TxKind::Other,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Gset {
    pub prefix: String,
    /// The output columns named by the statement's facts and their slots,
    /// or `None` when a name is not certain or the statement is unreadable
    /// (then names are matched at run time).
    pub cols: Option<Vec<(String, usize)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupParam {
    Product,
    InitialStock,
}

#[derive(Debug, Clone)]
pub(crate) struct SetupStmt {
    pub line: usize,
    pub end_line: usize,
    pub sql: String,
    /// Empty: the statement runs once; otherwise once per product.
    pub params: Vec<SetupParam>,
    /// Where `sql` holds each `$n` (the lexer's record).
    pub placeholders: Vec<Placeholder>,
    /// What the statement does (constraints it adds, tables it creates).
    pub facts: Facts,
}

#[derive(Debug, Clone)]
pub(crate) enum Instr {
    Sql(usize),
    Set {
        line: usize,
        slot: usize,
        expr: Expr,
    },
    /// `\if` / `\elif`: jump to `target` when `cond` is 0.
    JumpUnless {
        line: usize,
        cond: Expr,
        target: usize,
    },
    Jump(usize),
    Sleep {
        line: usize,
        expr: Expr,
        unit_us: i64,
    },
    SoldOut {
        line: usize,
    },
    Retry {
        line: usize,
    },
    /// A `\redis` command: an index into `Program::redis`.
    Redis(usize),
}

impl Instr {
    pub(crate) fn line(&self, prog: &Program) -> usize {
        match self {
            Instr::Sql(i) => prog.stmts[*i].line,
            Instr::Redis(i) => prog.redis[*i].line,
            Instr::Set { line, .. }
            | Instr::JumpUnless { line, .. }
            | Instr::Sleep { line, .. }
            | Instr::SoldOut { line }
            | Instr::Retry { line } => *line,
            Instr::Jump(_) => 0,
        }
    }
}

impl Program {
    /// Whether the script sends `\redis` commands.
    pub fn uses_redis(&self) -> bool {
        !self.redis.is_empty()
    }

    /// The script line of the first `\redis` command, if any.
    pub fn first_redis_line(&self) -> Option<usize> {
        self.redis.iter().map(|c| c.line).min()
    }

    /// Whether a `\redis` command names the stock key `stock:{:product}`:
    /// then the Redis counter is audited against the database.
    pub fn redis_counts_stock(&self) -> bool {
        self.redis.iter().any(|c| c.names_stock_key())
    }

    /// The line of the first statement that opens a transaction block
    /// (BEGIN, START TRANSACTION, COMMIT AND CHAIN), if any.
    pub fn first_transaction_line(&self) -> Option<usize> {
        self.stmts
            .iter()
            .filter(|st| matches!(st.kind, TxKind::Begin | TxKind::CommitChain))
            .map(|st| st.line)
            .min()
    }

    /// The line of the first statement sent with bind parameters (or read
    /// with `\gset`), which needs the extended query protocol.
    pub fn first_extended_line(&self) -> Option<usize> {
        self.stmts
            .iter()
            .filter(|st| st.extended())
            .map(|st| st.line)
            .min()
    }

    /// Whether the script has a `\setup` block with statements in it.
    pub fn has_setup(&self) -> bool {
        !self.setup.is_empty()
    }

    /// The slot of variable `{prefix}{name}`, without building the string.
    pub(super) fn lookup(&self, prefix: &str, name: &str) -> Option<usize> {
        self.vars.iter().position(|v| {
            v.len() == prefix.len() + name.len() && v.starts_with(prefix) && v.ends_with(name)
        })
    }
}
