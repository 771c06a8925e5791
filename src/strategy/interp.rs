//! Interpreting a `Program`: one attempt of one buyer on one connection
//! (`Session::attempt`), with automatic retries of conflicts, and the
//! `\setup` block (`run_setup`).
//!
//! This is the hot path. Variables live in a `Vec` of slots resolved at
//! parse time; SQL strings were built at parse time, so the connection's
//! prepared-statement cache parses each once; text values reuse their
//! `String`; tracing costs one `is_some` check per step when it is off.
//! Anything that formats a message happens only on a failure path.
//!
//! A `StepGate` (explore's scheduler) can hold each SQL statement at its
//! boundary; without one that costs one `is_some` check per statement, like
//! tracing.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo, Postgres};
use sqlx::{
    Column as _, Executor as _, PgConnection, Row as _, Type, TypeInfo as _, ValueRef as _,
};

use super::expr::EvalError;
use super::parse::{Gset, Instr, Program, SetupParam, Stmt, TxKind};
use super::redis::{Arg as RArg, Part, RedisCmd};
use super::vars::{ATTEMPT, BUILTIN_VARS, BUYER, PRODUCT, QTY, ROWS, THINK, TRY};
use super::{AttemptCtx, Placeholder, TraceEvent, TraceKind};
use crate::outcome::{AttemptReport, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not assigned on this try's path yet.
    Unset,
    Null,
    Int,
    Text,
}

/// One variable. `text` keeps its capacity across attempts.
#[derive(Debug, Clone)]
struct Slot {
    kind: Kind,
    int: i64,
    text: String,
}

/// Per-buyer interpreter state: variables, rng, scratch buffers; reused for
/// every attempt so the hot path does not allocate.
pub struct Session<'p> {
    program: &'p Program,
    slots: Vec<Slot>,
    rng: SmallRng,
    gate: Option<Box<dyn StepGate + 'p>>,
    /// The buyer's own Redis connection, for `\redis` commands.
    redis: Option<RedisConn>,
    /// A WATCH or MULTI is open on `redis` (closed at the end of a try).
    redis_open: bool,
    /// racelab's own limit on every statement's reply (see `Faults`).
    deadline: Option<Duration>,
    /// The longest `\sleep` (`--timeout`); `SLEEP_LIMIT` without one.
    sleep_limit: Option<Duration>,
    /// `--nemesis drop-reply`: the probability of dropping the connection
    /// right after sending a statement that commits; 0 is off.
    drop_reply: f64,
    /// What injected fault or expired deadline lost the connection in the
    /// last attempt, if one did.
    fault: Option<Injected>,
    /// Send statements as named prepared statements, cached per connection
    /// (the default); otherwise unnamed, parsed again each time, for a
    /// pooler that may hand the next statement to another server connection.
    named: bool,
    /// With unnamed statements: run a statement outside a transaction in a
    /// BEGIN ... COMMIT of its own (see `exec_alone`).
    wrap_alone: bool,
}

/// Why an attempt lost its connection on racelab's side rather than the
/// server's: the lane decides from it whether to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// No reply within the client-side deadline: the peer stopped
    /// answering (a frozen network); reconnecting would not help.
    Deadline,
    /// `--nemesis drop-reply`: the statement that commits was sent and the
    /// connection dropped before its reply was read.
    DroppedReply,
}

/// How a session bounds and disturbs its statements (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionFaults {
    /// No statement may wait longer than this for its reply.
    pub deadline: Option<Duration>,
    /// The probability (0..1) of dropping the reply of a statement that commits.
    pub drop_reply: f64,
    /// No `\sleep` may be longer than this (`--timeout`); without it,
    /// `SLEEP_LIMIT`.
    pub sleep_limit: Option<Duration>,
}

/// The longest `\sleep` without `--timeout`: think time is milliseconds,
/// and a sleep of hours is a typo that would hang the race silently.
pub const SLEEP_LIMIT: Duration = Duration::from_secs(60);

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

/// A buyer's Redis connection and racelab's key prefix.
pub struct RedisConn {
    /// Used by this buyer alone, so WATCH and MULTI are its own.
    pub conn: redis::aio::MultiplexedConnection,
    /// Prepended to every key a script names.
    pub prefix: std::sync::Arc<str>,
}

impl Program {
    /// A session for one buyer. `seed` drives `random()` and the retry
    /// jitter, so a run can be replayed.
    pub fn session(&self, seed: u64) -> Session<'_> {
        let slot = Slot {
            kind: Kind::Unset,
            int: 0,
            text: String::new(),
        };
        Session {
            program: self,
            slots: vec![slot; self.vars.len()],
            rng: SmallRng::seed_from_u64(seed),
            gate: None,
            redis: None,
            redis_open: false,
            deadline: None,
            sleep_limit: None,
            drop_reply: 0.0,
            fault: None,
            named: true,
            wrap_alone: false,
        }
    }

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
    fn lookup(&self, prefix: &str, name: &str) -> Option<usize> {
        self.vars.iter().position(|v| {
            v.len() == prefix.len() + name.len() && v.starts_with(prefix) && v.ends_with(name)
        })
    }
}

/// How a failed step ends the try.
enum Fail {
    /// 40001 / 40P01: roll back and try again.
    Conflict(String),
    /// Class 23 / 55P03: a safe refusal.
    Rejected(String),
    /// Anything else; the connection is still usable.
    Error(String),
    /// The connection is unusable.
    Lost(String),
}

enum TryEnd {
    Done {
        outcome: Outcome,
        message: Option<String>,
        lost: bool,
        line: usize,
    },
    Conflict {
        message: String,
        line: usize,
    },
}

impl TryEnd {
    fn done(outcome: Outcome, message: Option<String>, line: usize) -> TryEnd {
        TryEnd::Done {
            outcome,
            message,
            lost: false,
            line,
        }
    }
}

/// Sort a database error into what it means for the attempt.
fn classify(e: &sqlx::Error, line: usize) -> Fail {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let msg = format!("{code}: {} (line {line})", db.message());
            if code == "40001" || code == "40P01" {
                Fail::Conflict(msg)
            } else if code.starts_with("23") || code == "55P03" {
                Fail::Rejected(msg)
            } else if code.starts_with("08") || code.starts_with("57P") {
                // Connection exceptions and server shutdown: the server
                // closes the connection after sending these.
                Fail::Lost(msg)
            } else {
                Fail::Error(msg)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolClosed
        | sqlx::Error::PoolTimedOut => Fail::Lost(format!("connection lost: {e} (line {line})")),
        _ => Fail::Error(format!("{e} (line {line})")),
    }
}

fn event(kind: TraceKind, try_no: u32, line: usize, what: String, start: Instant) -> TraceEvent {
    TraceEvent {
        start,
        end: Instant::now(),
        try_no,
        line,
        kind,
        what,
        rows: None,
        values: Vec::new(),
        error: None,
        sqlstate: None,
        outcome: None,
    }
}

/// The SQLSTATE of a server error.
fn sqlstate_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// The backoff before try `next`: jittered, up to min(100µs·2^tries, 10ms).
fn backoff_cap_us(tries: u32) -> u64 {
    if tries >= 7 {
        10_000
    } else {
        (100u64 << tries).min(10_000)
    }
}

impl<'p> Session<'p> {
    /// Bound every statement by a client-side deadline and inject the
    /// faults of `faults`.
    pub fn with_faults(mut self, faults: SessionFaults) -> Self {
        self.deadline = faults.deadline;
        self.drop_reply = faults.drop_reply.clamp(0.0, 1.0);
        self.sleep_limit = faults.sleep_limit;
        self
    }

    /// Why a `\sleep` of `us` microseconds may not run: longer than
    /// `--timeout` (or `SLEEP_LIMIT` without one). Under a gate a sleep is
    /// skipped, so any length goes.
    fn sleep_too_long(&self, us: i64) -> Option<String> {
        let limit = self.sleep_limit.unwrap_or(SLEEP_LIMIT);
        if self.gate.is_some() || us <= 0 || (us as u128) <= limit.as_micros() {
            return None;
        }
        let shown = if us % 1_000_000 == 0 {
            format!("{} s", us / 1_000_000)
        } else if us % 1_000 == 0 {
            format!("{} ms", us / 1_000)
        } else {
            format!("{us} us")
        };
        Some(match self.sleep_limit {
            Some(t) => format!(
                "\\sleep {shown} is longer than --timeout {} ms: no wait of a buyer may outlast it",
                t.as_millis()
            ),
            None => format!(
                "\\sleep {shown} is longer than racelab's limit of {} s on one \\sleep without --timeout",
                SLEEP_LIMIT.as_secs()
            ),
        })
    }

    /// The injected fault (or expired deadline) that lost the connection in
    /// the last attempt, if any; cleared by the call.
    pub fn take_fault(&mut self) -> Option<Injected> {
        self.fault.take()
    }

    /// Send every statement unnamed (not prepared once and cached): a
    /// named statement lives on one server connection, and through a pooler
    /// in transaction or statement mode the next use may reach another.
    /// `wrap_alone`: see `exec_alone` (impossible where the pooler refuses
    /// transaction blocks).
    pub fn with_unnamed_statements(mut self, wrap_alone: bool) -> Self {
        self.named = false;
        self.wrap_alone = wrap_alone;
        self
    }

    /// Hold every SQL statement of this session's attempts at `gate`.
    pub fn with_gate(mut self, gate: Box<dyn StepGate + 'p>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Run one attempt: the script from the top, retried on conflicts up to
    /// `ctx.max_tries` tries. Never returns an error: failures are outcomes.
    /// With `trace`, every step is recorded (see `TraceEvent`).
    pub async fn attempt(
        &mut self,
        conn: &mut PgConnection,
        ctx: &AttemptCtx,
        mut trace: Option<&mut Vec<TraceEvent>>,
    ) -> AttemptReport {
        let mut try_no: u32 = 1;
        loop {
            self.reset(ctx, try_no);
            let end = self.run_try(conn, try_no, trace.as_deref_mut()).await;
            if self.redis_open {
                self.close_redis_tx().await;
            }
            let (outcome, message, lost, line) = match end {
                TryEnd::Done {
                    outcome,
                    message,
                    lost,
                    line,
                } => (outcome, message, lost, line),
                TryEnd::Conflict { message, line } => {
                    if ctx.max_tries != 0 && try_no >= ctx.max_tries {
                        (Outcome::GaveUp, Some(message), false, line)
                    } else {
                        self.backoff(try_no, trace.as_deref_mut()).await;
                        try_no = try_no.saturating_add(1);
                        continue;
                    }
                }
            };
            if let Some(t) = trace {
                let now = Instant::now();
                let mut ev = event(
                    TraceKind::Outcome,
                    try_no,
                    line,
                    outcome.as_str().into(),
                    now,
                );
                ev.error = message.clone();
                ev.outcome = Some(outcome);
                t.push(ev);
            }
            return AttemptReport {
                outcome,
                tries: try_no,
                message,
                connection_lost: lost,
            };
        }
    }

    /// Give this buyer its Redis connection.
    pub fn set_redis(&mut self, conn: RedisConn) {
        self.redis = Some(conn);
    }

    /// A try ended with a WATCH or MULTI still open: discard it, so the
    /// next try does not start inside it.
    async fn close_redis_tx(&mut self) {
        self.redis_open = false;
        if let Some(r) = &mut self.redis {
            let _: Result<redis::Value, _> = redis::cmd("DISCARD").query_async(&mut r.conn).await;
            let _: Result<redis::Value, _> = redis::cmd("UNWATCH").query_async(&mut r.conn).await;
        }
    }

    /// Append the value of `slot` as a Redis argument.
    fn push_value(&self, out: &mut String, slot: usize, line: usize) -> Result<(), Fail> {
        let s = &self.slots[slot];
        match s.kind {
            Kind::Int => {
                use std::fmt::Write as _;
                let _ = write!(out, "{}", s.int);
                Ok(())
            }
            Kind::Text => {
                out.push_str(&s.text);
                Ok(())
            }
            Kind::Null | Kind::Unset => Err(Fail::Error(format!(
                "variable :{} {} (line {line})",
                self.program.vars[slot],
                if s.kind == Kind::Null {
                    "is NULL"
                } else {
                    "has no value yet"
                }
            ))),
        }
    }

    /// Send one `\redis` command on the buyer's connection and store its
    /// reply: integers as integers, strings as text, nil as NULL, an
    /// array (EXEC's replies) as its last element.
    async fn redis_exec(
        &mut self,
        cmd: &RedisCmd,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), Fail> {
        let line = cmd.line;
        let Some(prefix) = self.redis.as_ref().map(|r| r.prefix.clone()) else {
            return Err(Fail::Error(format!(
                "no Redis connection for `\\redis` (line {line})"
            )));
        };
        let mut c = redis::cmd(&cmd.name);
        let mut buf = String::new();
        for (arg, &key) in cmd.args.iter().zip(&cmd.keys) {
            buf.clear();
            if key {
                buf.push_str(&prefix);
            }
            match arg {
                RArg::Lit(s) => buf.push_str(s),
                RArg::Var(slot) => self.push_value(&mut buf, *slot, line)?,
                RArg::Template(parts) => {
                    for p in parts {
                        match p {
                            Part::Lit(s) => buf.push_str(s),
                            Part::Var(slot) => self.push_value(&mut buf, *slot, line)?,
                        }
                    }
                }
            }
            c.arg(buf.as_str());
        }
        let start = trace.is_some().then(Instant::now);
        let conn = &mut self.redis.as_mut().expect("checked above").conn;
        let reply: Result<redis::Value, redis::RedisError> = c.query_async(conn).await;
        match cmd.name.as_str() {
            "WATCH" | "MULTI" => self.redis_open = true,
            "EXEC" | "DISCARD" | "UNWATCH" => self.redis_open = false,
            _ => {}
        }
        let result = match reply {
            Ok(v) => {
                if let Some(slot) = cmd.into {
                    self.store_reply(slot, &v);
                }
                Ok(())
            }
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => Err(
                Fail::Lost(format!("lost the Redis connection: {e} (line {line})")),
            ),
            Err(e) => Err(Fail::Error(format!("redis: {e} (line {line})"))),
        };
        if let (Some(t), Some(start)) = (trace, start) {
            let mut ev = event(TraceKind::Redis, try_no, line, cmd.display.clone(), start);
            if let Some(slot) = cmd.into {
                ev.values
                    .push((self.program.vars[slot].clone(), self.show(slot)));
            }
            ev.error = result.as_ref().err().map(fail_message);
            t.push(ev);
        }
        result
    }

    fn store_reply(&mut self, slot: usize, v: &redis::Value) {
        use redis::Value as V;
        let s = &mut self.slots[slot];
        match v {
            V::Nil => s.kind = Kind::Null,
            V::Int(n) => {
                s.kind = Kind::Int;
                s.int = *n;
            }
            V::Boolean(b) => {
                s.kind = Kind::Int;
                s.int = i64::from(*b);
            }
            V::Array(items) | V::Set(items) => match items.last() {
                Some(last) => self.store_reply(slot, last),
                None => {
                    s.kind = Kind::Text;
                    s.text.clear();
                }
            },
            V::BulkString(b) => {
                s.kind = Kind::Text;
                s.text.clear();
                s.text.push_str(&String::from_utf8_lossy(b));
            }
            V::SimpleString(t) => {
                s.kind = Kind::Text;
                s.text.clone_from(t);
            }
            V::Okay => {
                s.kind = Kind::Text;
                s.text.clear();
                s.text.push_str("OK");
            }
            other => {
                s.kind = Kind::Text;
                s.text = format!("{other:?}");
            }
        }
    }

    /// A variable's value for a trace.
    fn show(&self, slot: usize) -> String {
        let s = &self.slots[slot];
        match s.kind {
            Kind::Int => s.int.to_string(),
            Kind::Text => s.text.clone(),
            Kind::Null => "NULL".into(),
            Kind::Unset => "(unset)".into(),
        }
    }

    fn set_int(&mut self, slot: usize, v: i64) {
        let s = &mut self.slots[slot];
        s.kind = Kind::Int;
        s.int = v;
    }

    /// Every try starts from the built-ins alone: a value left by an earlier
    /// try must not hide a "no value yet" on this one.
    fn reset(&mut self, ctx: &AttemptCtx, try_no: u32) {
        for s in &mut self.slots[BUILTIN_VARS.len()..] {
            s.kind = Kind::Unset;
        }
        self.set_int(PRODUCT, ctx.product);
        self.set_int(QTY, ctx.qty);
        self.set_int(BUYER, ctx.buyer);
        self.set_int(ATTEMPT, ctx.attempt);
        self.set_int(TRY, i64::from(try_no));
        self.set_int(THINK, ctx.think_ms);
        self.set_int(ROWS, 0);
    }

    async fn backoff(&mut self, tries: u32, trace: Option<&mut Vec<TraceEvent>>) {
        let start = trace.is_some().then(Instant::now);
        let us = self.rng.gen_range(0..=backoff_cap_us(tries));
        if self.gate.is_none() {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if let (Some(t), Some(start)) = (trace, start) {
            t.push(event(
                TraceKind::Backoff,
                tries,
                0,
                format!("backoff {us}us"),
                start,
            ));
        }
    }

    fn eval(&mut self, expr: &super::expr::Expr, line: usize) -> Result<i64, Fail> {
        let slots = &self.slots;
        let get = |s: usize| {
            let slot = &slots[s];
            match slot.kind {
                Kind::Int => Ok(slot.int),
                Kind::Text => slot
                    .text
                    .trim()
                    .parse()
                    .map_err(|_| EvalError::NotInteger(s)),
                Kind::Null => Err(EvalError::Null(s)),
                Kind::Unset => Err(EvalError::Unset(s)),
            }
        };
        expr.eval(&get, &mut self.rng)
            .map_err(|e| Fail::Error(format!("{} (line {line})", e.describe(&self.program.vars))))
    }

    async fn run_try(
        &mut self,
        conn: &mut PgConnection,
        try_no: u32,
        mut trace: Option<&mut Vec<TraceEvent>>,
    ) -> TryEnd {
        let prog = self.program;
        let mut pc = 0;
        // The line of the statement that opened the current transaction.
        let mut tx: Option<usize> = None;
        while let Some(instr) = prog.instrs.get(pc) {
            pc += 1;
            let step = match instr {
                Instr::Sql(i) => {
                    let st = &prog.stmts[*i];
                    let was_open = tx.is_some();
                    // The statement whose reply says whether the purchase
                    // committed: a COMMIT, or a write outside a transaction.
                    let commits = match st.kind {
                        TxKind::Commit | TxKind::CommitChain => was_open,
                        TxKind::Other => !was_open && !st.facts.writes.is_empty(),
                        _ => false,
                    };
                    let alone =
                        self.wrap_alone && !was_open && st.kind == TxKind::Other && st.extended();
                    let r = if alone {
                        self.exec_alone(conn, st, commits, try_no, trace.as_deref_mut())
                            .await
                    } else {
                        self.exec(conn, st, commits, try_no, trace.as_deref_mut())
                            .await
                    };
                    match st.kind {
                        TxKind::Begin | TxKind::CommitChain if r.is_ok() => tx = Some(st.line),
                        // A failed COMMIT ends the transaction too.
                        TxKind::Commit | TxKind::Rollback => tx = None,
                        _ => {}
                    }
                    r.map_err(|f| {
                        let maybe_committed =
                            matches!(st.kind, TxKind::Commit | TxKind::CommitChain)
                                || (!was_open && st.kind == TxKind::Other);
                        (f, st.line, maybe_committed)
                    })
                }
                Instr::Redis(i) => {
                    let cmd = &prog.redis[*i];
                    self.redis_exec(cmd, try_no, trace.as_deref_mut())
                        .await
                        .map_err(|f| (f, cmd.line, false))
                }
                Instr::Set { line, slot, expr } => {
                    let start = trace.is_some().then(Instant::now);
                    match self.eval(expr, *line) {
                        Ok(v) => {
                            self.set_int(*slot, v);
                            if let (Some(t), Some(start)) = (trace.as_deref_mut(), start) {
                                let name = &prog.vars[*slot];
                                let mut ev = event(
                                    TraceKind::Set,
                                    try_no,
                                    *line,
                                    format!("\\set {name}"),
                                    start,
                                );
                                ev.values.push((name.clone(), v.to_string()));
                                t.push(ev);
                            }
                            Ok(())
                        }
                        Err(f) => Err((f, *line, false)),
                    }
                }
                Instr::JumpUnless { line, cond, target } => match self.eval(cond, *line) {
                    Ok(0) => {
                        pc = *target;
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(f) => Err((f, *line, false)),
                },
                Instr::Jump(target) => {
                    pc = *target;
                    Ok(())
                }
                Instr::Sleep {
                    line,
                    expr,
                    unit_us,
                } => match self.eval(expr, *line) {
                    Ok(v) if self.sleep_too_long(v.saturating_mul(*unit_us)).is_some() => {
                        let why = self.sleep_too_long(v.saturating_mul(*unit_us));
                        Err((Fail::Error(why.unwrap_or_default()), *line, false))
                    }
                    Ok(v) => {
                        let us = v.saturating_mul(*unit_us);
                        if us > 0 {
                            let start = trace.is_some().then(Instant::now);
                            if self.gate.is_none() {
                                tokio::time::sleep(Duration::from_micros(us as u64)).await;
                            }
                            if let (Some(t), Some(start)) = (trace.as_deref_mut(), start) {
                                t.push(event(
                                    TraceKind::Sleep,
                                    try_no,
                                    *line,
                                    format!("\\sleep {us}us"),
                                    start,
                                ));
                            }
                        }
                        Ok(())
                    }
                    Err(f) => Err((f, *line, false)),
                },
                Instr::SoldOut { line } | Instr::Retry { line } => {
                    let retry = matches!(instr, Instr::Retry { .. });
                    if let Some(t) = trace.as_deref_mut() {
                        let what = if retry { "\\retry" } else { "\\sold_out" };
                        t.push(event(
                            TraceKind::Meta,
                            try_no,
                            *line,
                            what.into(),
                            Instant::now(),
                        ));
                    }
                    if tx.is_some() {
                        if let Err(m) = self
                            .rollback(conn, *line, try_no, trace.as_deref_mut())
                            .await
                        {
                            return lost(m, false, *line);
                        }
                    }
                    return if retry {
                        TryEnd::Conflict {
                            message: format!("\\retry (line {line})"),
                            line: *line,
                        }
                    } else {
                        TryEnd::done(Outcome::SoldOut, None, *line)
                    };
                }
            };
            if let Err((fail, line, maybe_committed)) = step {
                return self
                    .fail(conn, fail, line, tx, maybe_committed, try_no, trace)
                    .await;
            }
        }
        match tx {
            None => TryEnd::done(Outcome::Succeeded, None, 0),
            Some(open) => {
                let last = prog.instrs.last().map_or(0, |i| i.line(prog));
                if let Err(m) = self.rollback(conn, last, try_no, trace).await {
                    return lost(m, false, last);
                }
                let msg = format!(
                    "script ended inside an open transaction (opened at line {open}): add COMMIT"
                );
                TryEnd::done(Outcome::Error, Some(msg), last)
            }
        }
    }

    /// End the try after a failed step: roll back if a transaction is open
    /// (unless the connection is gone) and turn the failure into an ending.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &mut self,
        conn: &mut PgConnection,
        fail: Fail,
        line: usize,
        tx: Option<usize>,
        maybe_committed: bool,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> TryEnd {
        if let Fail::Lost(m) = fail {
            return lost(m, maybe_committed, line);
        }
        if tx.is_some() {
            if let Err(m) = self.rollback(conn, line, try_no, trace).await {
                return lost(m, false, line);
            }
        }
        match fail {
            Fail::Conflict(message) => TryEnd::Conflict { message, line },
            Fail::Rejected(_) => TryEnd::done(Outcome::Rejected, None, line),
            Fail::Error(m) => TryEnd::done(Outcome::Error, Some(m), line),
            Fail::Lost(_) => unreachable!("handled above"),
        }
    }

    /// Run one statement: bind its slots, execute, store `:rows` and any
    /// `\gset` values.
    async fn exec(
        &mut self,
        conn: &mut PgConnection,
        st: &Stmt,
        commits: bool,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), Fail> {
        for &s in &st.params {
            let problem = match self.slots[s].kind {
                Kind::Int | Kind::Text => continue,
                Kind::Unset => "has no value yet",
                Kind::Null => "is NULL",
            };
            let name = &self.program.vars[s];
            return Err(Fail::Error(format!(
                "variable :{name} {problem} (line {})",
                st.line
            )));
        }
        if let Some(gate) = self.gate.as_mut() {
            let slots = &self.slots;
            let params = st
                .params
                .iter()
                .map(|&s| match slots[s].kind {
                    Kind::Int => Bound::Int(slots[s].int),
                    _ => Bound::Text(slots[s].text.clone()),
                })
                .collect();
            gate.wait(Boundary {
                try_no,
                line: st.line,
                display: &st.display,
                sql: &st.sql,
                placeholders: &st.placeholders,
                params,
                tx: match st.kind {
                    TxKind::Begin => TxEffect::Begin,
                    TxKind::Commit | TxKind::CommitChain => TxEffect::Commit,
                    TxKind::Rollback => TxEffect::Rollback,
                    TxKind::Other => TxEffect::Other,
                },
                rollback: false,
                trace: trace.as_deref().map(Vec::as_slice),
            })
            .await;
        }
        if commits && self.drops_reply() {
            return self.send_and_drop(conn, st, try_no, trace).await;
        }
        let start = trace.is_some().then(Instant::now);
        let deadline = self.deadline;
        let mut sqlstate = None;
        // Through a pooler that switches server connections, a statement
        // without parameters goes in one simple-protocol message: an
        // extended-protocol one takes two round trips, and a BEGIN parsed
        // on one server connection may be bound on another.
        // Bound (arguments encoded) only when it goes extended.
        let q = (self.named || st.extended()).then(|| self.bound(st));
        let (result, rows) = match (&st.gset, q) {
            (None, q) => match bounded(deadline, async {
                match q {
                    Some(q) => conn.execute(q).await,
                    None => conn.execute(sqlx::raw_sql(st.sql.as_str())).await,
                }
            })
            .await
            {
                Ok(done) => (Ok(()), done.rows_affected()),
                Err(e) => {
                    sqlstate = sqlstate_of(&e);
                    if deadline.is_some() && is_deadline(&e) {
                        self.fault = Some(Injected::Deadline);
                    }
                    (Err(classify(&e, st.line)), 0)
                }
            },
            (Some(g), q) => match bounded(
                deadline,
                conn.fetch_all(q.unwrap_or_else(|| self.bound(st))),
            )
            .await
            {
                Ok(found) => {
                    let mut values = start.map(|_| Vec::new());
                    let r = self.store_gset(st, g, &found, values.as_mut());
                    if let (Some(t), Some(start)) = (trace, start) {
                        let mut ev =
                            event(TraceKind::Sql, try_no, st.line, st.display.clone(), start);
                        ev.rows = Some(found.len() as u64);
                        ev.values = values.unwrap_or_default();
                        ev.error = r.as_ref().err().map(fail_message);
                        t.push(ev);
                    }
                    self.set_int(ROWS, 1);
                    return r;
                }
                Err(e) => {
                    sqlstate = sqlstate_of(&e);
                    if deadline.is_some() && is_deadline(&e) {
                        self.fault = Some(Injected::Deadline);
                    }
                    (Err(classify(&e, st.line)), 0)
                }
            },
        };
        if let (Some(t), Some(start)) = (trace, start) {
            let mut ev = event(TraceKind::Sql, try_no, st.line, st.display.clone(), start);
            ev.rows = result.is_ok().then_some(rows);
            ev.error = result.as_ref().err().map(fail_message);
            ev.sqlstate = sqlstate;
            t.push(ev);
        }
        if result.is_ok() {
            self.set_int(ROWS, i64::try_from(rows).unwrap_or(i64::MAX));
        }
        result
    }

    /// The statement with its slots bound: integers as `int8`, the rest as `text`.
    fn bound<'q>(&'q self, st: &'q Stmt) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        let mut q = sqlx::query(st.sql.as_str()).persistent(self.named);
        for &s in &st.params {
            let slot = &self.slots[s];
            q = if slot.kind == Kind::Int {
                q.bind(slot.int)
            } else {
                q.bind(slot.text.as_str())
            };
        }
        q
    }

    /// Whether to drop the reply of the statement that commits
    /// (`--nemesis drop-reply`), drawn per such statement.
    fn drops_reply(&mut self) -> bool {
        self.drop_reply > 0.0 && self.rng.gen_bool(self.drop_reply)
    }

    /// `--nemesis drop-reply`: send the statement that commits and give up
    /// on its reply at once, as a client whose reply was lost would. The
    /// statement is prepared first (a round trip, when not cached yet), so
    /// that the one poll below writes it whole (Bind, Execute, Sync) to the
    /// socket; the server then runs it, and commits, on its own. The lane
    /// drops the connection (the reply unread) before the next attempt.
    async fn send_and_drop(
        &mut self,
        conn: &mut PgConnection,
        st: &Stmt,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), Fail> {
        let start = Instant::now();
        let types: Vec<PgTypeInfo> = st
            .params
            .iter()
            .map(|&s| match self.slots[s].kind {
                Kind::Int => <i64 as Type<Postgres>>::type_info(),
                _ => <&str as Type<Postgres>>::type_info(),
            })
            .collect();
        if let Err(e) = bounded(self.deadline, conn.prepare_with(&st.sql, &types)).await {
            return Err(classify(&e, st.line));
        }
        send_once(conn.execute(self.bound(st))).await;
        self.dropped(st, try_no, trace, start)
    }

    /// The reply of `st` (or of the COMMIT racelab sent for it) was given
    /// up on: record the fault, trace it, and end the attempt as lost.
    fn dropped(
        &mut self,
        st: &Stmt,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
        start: Instant,
    ) -> Result<(), Fail> {
        self.fault = Some(Injected::DroppedReply);
        let msg = format!(
            "reply dropped after sending line {} (--nemesis drop-reply): \
             the purchase may or may not have happened",
            st.line
        );
        if let Some(t) = trace {
            let mut ev = event(TraceKind::Sql, try_no, st.line, st.display.clone(), start);
            ev.error = Some(msg.clone());
            t.push(ev);
        }
        Err(Fail::Lost(msg))
    }

    /// A statement with bind parameters (or a `\gset`) outside a
    /// transaction, through a pooler that switches server connections: in a
    /// BEGIN ... COMMIT of its own. sqlx parses an unnamed statement in one round trip and binds
    /// and executes it in a second; between the two, a pooler in
    /// transaction mode may give the client another server connection, and
    /// the statement is gone (measured with PgBouncer 1.18: `26000: unnamed
    /// prepared statement does not exist`). Inside a transaction block the
    /// server connection stays, and a statement alone is its own
    /// transaction anyway, so the wrapping changes nothing else.
    async fn exec_alone(
        &mut self,
        conn: &mut PgConnection,
        st: &Stmt,
        commits: bool,
        try_no: u32,
        mut trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), Fail> {
        let deadline = self.deadline;
        if let Err(e) = bounded(deadline, conn.execute(sqlx::raw_sql("BEGIN"))).await {
            return Err(classify(&e, st.line));
        }
        let r = self
            .exec(conn, st, false, try_no, trace.as_deref_mut())
            .await;
        // The COMMIT is what commits a wrapped write: its reply is the one
        // `--nemesis drop-reply` loses.
        if r.is_ok() && commits && self.drops_reply() {
            let start = Instant::now();
            send_once(conn.execute(sqlx::raw_sql("COMMIT"))).await;
            return self.dropped(st, try_no, trace, start);
        }
        let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match bounded(deadline, conn.execute(sqlx::raw_sql(end))).await {
            Err(e) if r.is_ok() => Err(classify(&e, st.line)),
            _ => r,
        }
    }

    /// Store the single row of a `\gset` query into its variables.
    fn store_gset(
        &mut self,
        st: &Stmt,
        g: &Gset,
        rows: &[PgRow],
        mut values: Option<&mut Vec<(String, String)>>,
    ) -> Result<(), Fail> {
        let line = st.line;
        let row = match rows {
            [row] => row,
            _ => {
                let n = rows.len();
                let what = if n == 0 {
                    "no rows".to_string()
                } else {
                    format!("{n} rows")
                };
                return Err(Fail::Error(format!(
                    "\\gset needs exactly one row, the query returned {what} (line {line})"
                )));
            }
        };
        for (i, col) in row.columns().iter().enumerate() {
            let name = col.name();
            let slot = match g.cols.as_ref().and_then(|c| c.get(i)) {
                Some((n, s)) if n == name => Some(*s),
                // Unreadable at load time, or read differently: by name.
                _ => self.program.lookup(&g.prefix, name),
            };
            // No variable of that name is used anywhere: nothing to store.
            let Some(slot) = slot else { continue };
            let decode =
                |e: sqlx::Error| Fail::Error(format!("\\gset column `{name}`: {e} (line {line})"));
            let raw = row.try_get_raw(i).map_err(decode)?;
            let ty = col.type_info();
            let s = &mut self.slots[slot];
            if raw.is_null() {
                s.kind = Kind::Null;
            } else if <i64 as Type<Postgres>>::compatible(ty) {
                s.int = row.try_get::<i64, _>(i).map_err(decode)?;
                s.kind = Kind::Int;
            } else if <i32 as Type<Postgres>>::compatible(ty) {
                s.int = row.try_get::<i32, _>(i).map_err(decode)?.into();
                s.kind = Kind::Int;
            } else if <i16 as Type<Postgres>>::compatible(ty) {
                s.int = row.try_get::<i16, _>(i).map_err(decode)?.into();
                s.kind = Kind::Int;
            } else if <bool as Type<Postgres>>::compatible(ty) {
                s.int = row.try_get::<bool, _>(i).map_err(decode)?.into();
                s.kind = Kind::Int;
            } else if <&str as Type<Postgres>>::compatible(ty) {
                let v: &str = row.try_get(i).map_err(decode)?;
                s.text.clear();
                s.text.push_str(v);
                s.kind = Kind::Text;
            } else if <f64 as Type<Postgres>>::compatible(ty) {
                s.text = row.try_get::<f64, _>(i).map_err(decode)?.to_string();
                s.kind = Kind::Text;
            } else if <f32 as Type<Postgres>>::compatible(ty) {
                s.text = row.try_get::<f32, _>(i).map_err(decode)?.to_string();
                s.kind = Kind::Text;
            } else {
                return Err(Fail::Error(format!(
                    "\\gset cannot read column `{name}` of type {}: cast it with ::text or ::bigint (line {line})",
                    ty.name()
                )));
            }
            if let Some(v) = values.as_deref_mut() {
                let shown = match s.kind {
                    Kind::Int => s.int.to_string(),
                    Kind::Text => s.text.clone(),
                    _ => "NULL".to_string(),
                };
                v.push((self.program.vars[slot].clone(), shown));
            }
        }
        Ok(())
    }
}

/// Poll `send` once and leave it: its first poll writes the message to
/// the socket (and flushes it); the reply is never read. Unconstrained:
/// tokio's cooperative budget must not make that one poll return before
/// the message is written.
async fn send_once<F: Future>(send: F) {
    let send = tokio::task::unconstrained(send);
    let mut send = std::pin::pin!(send);
    std::future::poll_fn(|cx| {
        let _ = send.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

/// `f`, or an I/O error of kind `TimedOut` when no reply came within
/// `limit`. Without a limit this is `f` itself: nothing is allocated or
/// armed per statement.
async fn bounded<T>(
    limit: Option<Duration>,
    f: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match limit {
        None => f.await,
        Some(limit) => match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no reply within {} ms (racelab's deadline, --timeout plus a grace): \
                     the connection stopped answering",
                    limit.as_millis()
                ),
            ))),
        },
    }
}

/// Whether `e` is `bounded`'s expired deadline.
fn is_deadline(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

fn fail_message(f: &Fail) -> String {
    match f {
        Fail::Conflict(m) | Fail::Rejected(m) | Fail::Error(m) | Fail::Lost(m) => m.clone(),
    }
}

fn lost(message: String, maybe_committed: bool, line: usize) -> TryEnd {
    TryEnd::Done {
        outcome: if maybe_committed {
            Outcome::Unknown
        } else {
            Outcome::Error
        },
        message: Some(message),
        lost: true,
        line,
    }
}

impl Session<'_> {
    /// Roll back the open transaction. `Err` only when the connection is gone.
    async fn rollback(
        &mut self,
        conn: &mut PgConnection,
        line: usize,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), String> {
        if let Some(gate) = self.gate.as_mut() {
            gate.wait(Boundary {
                try_no,
                line,
                display: "ROLLBACK",
                sql: "ROLLBACK",
                placeholders: &[],
                params: Vec::new(),
                tx: TxEffect::Rollback,
                rollback: true,
                trace: trace.as_deref().map(Vec::as_slice),
            })
            .await;
        }
        let start = trace.is_some().then(Instant::now);
        let r = bounded(self.deadline, conn.execute(sqlx::raw_sql("ROLLBACK"))).await;
        if self.deadline.is_some() && r.as_ref().is_err_and(is_deadline) {
            self.fault = Some(Injected::Deadline);
        }
        let fail = r.as_ref().err().map(|e| classify(e, line));
        if let (Some(t), Some(start)) = (trace, start) {
            let mut ev = event(TraceKind::Rollback, try_no, line, "ROLLBACK".into(), start);
            ev.error = fail.as_ref().map(fail_message);
            t.push(ev);
        }
        match fail {
            Some(Fail::Lost(m)) => Err(m),
            // Any other failure of a ROLLBACK leaves no transaction open.
            _ => Ok(()),
        }
    }
}

/// One statement of the `\setup` block as it runs on a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupCall<'a> {
    pub line: usize,
    /// The SQL, with `$n` placeholders for `params`.
    pub sql: &'a str,
    /// Where `sql` holds each placeholder.
    pub placeholders: &'a [Placeholder],
    /// The values of `:product` and `:initial_stock` where the statement
    /// uses them, in placeholder order.
    pub params: Vec<i64>,
    /// The product the statement runs for, if it runs once per product.
    pub product: Option<i64>,
}

/// The `\setup` block as it runs on a lab of `products`, given as `(id,
/// initial_stock)`: a statement that uses neither `:product` nor
/// `:initial_stock` runs once (so `ALTER TABLE ... ADD CONSTRAINT` is not
/// repeated); one that uses either runs once per product. In script order,
/// each in its own implicit transaction.
pub fn setup_calls<'a>(program: &'a Program, products: &[(i64, i64)]) -> Vec<SetupCall<'a>> {
    let mut calls = Vec::new();
    for st in &program.setup {
        if st.params.is_empty() {
            calls.push(SetupCall {
                line: st.line,
                sql: &st.sql,
                placeholders: &st.placeholders,
                params: Vec::new(),
                product: None,
            });
            continue;
        }
        for &(id, initial_stock) in products {
            let params = st
                .params
                .iter()
                .map(|p| match p {
                    SetupParam::Product => id,
                    SetupParam::InitialStock => initial_stock,
                })
                .collect();
            calls.push(SetupCall {
                line: st.line,
                sql: &st.sql,
                placeholders: &st.placeholders,
                params,
                product: Some(id),
            });
        }
    }
    calls
}

/// Run the `\setup` block on the fresh lab (see `setup_calls`).
pub async fn run_setup(
    program: &Program,
    conn: &mut PgConnection,
    products: &[(i64, i64)],
) -> anyhow::Result<()> {
    for call in setup_calls(program, products) {
        let ctx = || format!("strategy \\setup failed at line {}", call.line);
        let Some(id) = call.product else {
            conn.execute(sqlx::raw_sql(call.sql))
                .await
                .with_context(ctx)?;
            continue;
        };
        let mut q = sqlx::query(call.sql).persistent(false);
        for &v in &call.params {
            q = q.bind(v);
        }
        conn.execute(q)
            .await
            .with_context(|| format!("{} (product {id})", ctx()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff_cap_us(1), 200);
        assert_eq!(backoff_cap_us(6), 6_400);
        assert_eq!(backoff_cap_us(7), 10_000);
        assert_eq!(backoff_cap_us(u32::MAX), 10_000);
    }

    /// The engine spawns buyers with `tokio::spawn`: the attempt and setup
    /// futures must be `Send + 'static` when they own program and connection.
    /// (Calling `Query::execute(&mut *conn)` instead of `conn.execute(q)`
    /// breaks this with a "not general enough" error.)
    #[test]
    fn futures_are_spawnable() {
        fn assert_send<T: Send + 'static>(_: T) {}
        let prog = std::sync::Arc::new(super::super::parse("t.sql", "SELECT 1;").unwrap());
        let ctx = AttemptCtx {
            product: 1,
            qty: 1,
            buyer: 1,
            attempt: 1,
            think_ms: 0,
            max_tries: 1,
        };
        struct Open;
        impl StepGate for Open {
            fn wait<'a>(
                &'a mut self,
                _: Boundary<'a>,
            ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
                Box::pin(async {})
            }
        }
        assert_send(async move {
            let mut conn: Option<PgConnection> = None;
            if let Some(c) = conn.as_mut() {
                prog.session(1).attempt(c, &ctx, None).await;
                // Gated, as explore runs it.
                let mut events = Vec::new();
                let mut gated = prog.session(1).with_gate(Box::new(Open));
                gated.attempt(c, &ctx, Some(&mut events)).await;
                let _ = run_setup(&prog, c, &[]).await;
            }
        });
    }

    #[test]
    fn setup_statements_run_once_or_per_product() {
        let prog = super::super::parse(
            "t.sql",
            "\\setup\nALTER TABLE products ADD COLUMN x int;\nUPDATE products SET stock = :initial_stock WHERE id = :product;\n\\endsetup\nSELECT 1;\n",
        )
        .unwrap();
        let calls = setup_calls(&prog, &[(1, 5), (2, 7)]);
        let shape: Vec<(Option<i64>, Vec<i64>)> = calls
            .iter()
            .map(|c| (c.product, c.params.clone()))
            .collect();
        assert_eq!(
            shape,
            [(None, vec![]), (Some(1), vec![5, 1]), (Some(2), vec![7, 2])]
        );
        assert!(calls[1].sql.contains("$1") && calls[1].sql.contains("$2"));
    }

    #[test]
    fn sessions_reset_variables_between_tries() {
        let prog = super::super::parse("t.sql", "\\set a 1\nSELECT :a;").unwrap();
        let mut s = prog.session(1);
        let slot = prog.vars.iter().position(|v| v == "a").unwrap();
        s.set_int(slot, 5);
        let ctx = AttemptCtx {
            product: 7,
            qty: 2,
            buyer: 3,
            attempt: 4,
            think_ms: 5,
            max_tries: 1,
        };
        s.reset(&ctx, 2);
        assert_eq!(s.slots[slot].kind, Kind::Unset);
        let ints: Vec<i64> = s.slots[..7].iter().map(|s| s.int).collect();
        assert_eq!(ints, [7, 2, 3, 4, 2, 5, 0]);
    }
}
