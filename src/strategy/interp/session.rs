//! A buyer's session: its variables (slots resolved at parse time), its
//! rng, its Redis connection and faults, and the attempt loop: the script
//! from the top, tries retried on conflicts with a jittered backoff, a
//! failed step ended (rolled back) as `end` says.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::{Executor as _, PgConnection};

use super::end::{classify, event, fail_message, lost, Fail, TryEnd};
use super::faults::{bounded, is_deadline, Injected, SessionFaults, SLEEP_LIMIT};
use super::gate::{Boundary, StepGate, TxEffect};
use crate::outcome::{AttemptCtx, AttemptReport, Outcome, TraceEvent, TraceKind};
use crate::strategy::expr::EvalError;
use crate::strategy::program::{Instr, Program, TxKind};
use crate::strategy::vars::{ATTEMPT, BUILTIN_VARS, BUYER, PRODUCT, QTY, ROWS, THINK, TRY};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Not assigned on this try's path yet.
    Unset,
    Null,
    Int,
    Text,
}

/// One variable. `text` keeps its capacity across attempts.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) kind: Kind,
    pub(super) int: i64,
    pub(super) text: String,
}

/// Per-buyer interpreter state: variables, rng, scratch buffers; reused for
/// every attempt so the hot path does not allocate.
pub struct Session<'p> {
    pub(super) program: &'p Program,
    pub(super) slots: Vec<Slot>,
    pub(super) rng: SmallRng,
    pub(super) gate: Option<Box<dyn StepGate + 'p>>,
    /// The buyer's own Redis connection, for `\redis` commands.
    pub(super) redis: Option<RedisConn>,
    /// A WATCH or MULTI is open on `redis` (closed at the end of a try).
    pub(super) redis_open: bool,
    /// racelab's own limit on every statement's reply (see `Faults`).
    pub(super) deadline: Option<Duration>,
    /// The longest `\sleep` (`--timeout`); `SLEEP_LIMIT` without one.
    pub(super) sleep_limit: Option<Duration>,
    /// `--nemesis drop-reply`: the probability of dropping the connection
    /// right after sending a statement that commits; 0 is off.
    pub(super) drop_reply: f64,
    /// What injected fault or expired deadline lost the connection in the
    /// last attempt, if one did.
    pub(super) fault: Option<Injected>,
    /// Send statements as named prepared statements, cached per connection
    /// (the default); otherwise unnamed, parsed again each time, for a
    /// pooler that may hand the next statement to another server connection.
    pub(super) named: bool,
    /// With unnamed statements: run a statement outside a transaction in a
    /// BEGIN ... COMMIT of its own (see `exec_alone`).
    pub(super) wrap_alone: bool,
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
}

/// The backoff before try `next`: jittered, up to min(100µs·2^tries, 10ms).
pub(super) fn backoff_cap_us(tries: u32) -> u64 {
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

    /// A variable's value for a trace.
    pub(super) fn show(&self, slot: usize) -> String {
        let s = &self.slots[slot];
        match s.kind {
            Kind::Int => s.int.to_string(),
            Kind::Text => s.text.clone(),
            Kind::Null => "NULL".into(),
            Kind::Unset => "(unset)".into(),
        }
    }

    pub(super) fn set_int(&mut self, slot: usize, v: i64) {
        let s = &mut self.slots[slot];
        s.kind = Kind::Int;
        s.int = v;
    }

    /// Every try starts from the built-ins alone: a value left by an earlier
    /// try must not hide a "no value yet" on this one.
    pub(super) fn reset(&mut self, ctx: &AttemptCtx, try_no: u32) {
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

    pub(super) fn eval(
        &mut self,
        expr: &crate::strategy::expr::Expr,
        line: usize,
    ) -> Result<i64, Fail> {
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

    #[test]
    fn sessions_reset_variables_between_tries() {
        let prog = crate::strategy::parse("t.sql", "\\set a 1\nSELECT :a;").unwrap();
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
