//! Every path through a program: the `\if` branches, `\sold_out`, `\retry`
//! and the statements that fail on every attempt, each walked in order,
//! tracking which transaction each statement runs in and at which
//! isolation level (however `BEGIN`, `SET TRANSACTION`, `SET
//! transaction_isolation`, `set_config` or the session's default chose it),
//! which locks are held (row, table, advisory, Redis), and where every
//! variable's value came from (`Dep`). The analyses (`protect`, `writes`,
//! `redis`) read the paths, never the script again.
//!
//! An isolation level racelab cannot evaluate is walked as `unknown_as`:
//! the verdict walks such a program twice, at the weakest and the
//! strongest level, and is sure only where both agree.

use std::collections::BTreeSet;

use crate::strategy::facts::{
    AdvisoryAction, AdvisoryScope, Facts, IsoTarget, IsoValue, Isolation, Kind, Source, VALUE_SLOT,
};
use crate::strategy::{EvalError, Expr, Instr, Program, RedisEffect, BUILTIN_VARS, QTY, ROWS};

/// The most paths walked before the verdict gives up (UNSURE).
pub const MAX_PATHS: usize = 4096;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dep {
    /// A built-in variable's slot.
    Builtin(usize),
    /// `reads[read]` of the statement run at path event `event`.
    Read { event: usize, read: usize },
    /// What `writes[write]` of event `event` wrote (RETURNING, row count).
    Write { event: usize, write: usize },
    /// A `pg_try_advisory_*` result.
    Advisory { event: usize, call: usize },
    /// Something racelab cannot follow, at this line (an unreadable
    /// statement, a function it does not know).
    Unknown(usize),
    /// The reply of `\redis` command `Program::redis[cmd]`.
    Redis { cmd: usize },
}

pub type Origin = BTreeSet<Dep>;

/// One SQL statement run on a path.
#[derive(Debug, Clone)]
pub struct Event {
    pub stmt: usize,
    /// The program instruction that ran it.
    pub pc: usize,
    /// The transaction it ran in (an autocommit statement is one of its
    /// own).
    pub tx: usize,
    /// It ran inside a transaction block.
    pub in_tx: bool,
    pub iso: Isolation,
    /// Where the level came from when it is not the default: the line
    /// that set it (for the notes and findings).
    pub iso_line: Option<usize>,
    /// Origins of every variable just before the statement ran.
    pub vars: Vec<Origin>,
}

/// An `\if` passed on a path.
#[derive(Debug, Clone)]
pub struct Decision {
    pub pc: usize,
    pub line: usize,
    /// Index of the next event: the decision came before it.
    pub before_event: usize,
    pub deps: Origin,
    pub uses_qty: bool,
    /// The condition, and which way this path went (`true`: into the
    /// branch, the condition held).
    pub cond: Expr,
    pub taken: bool,
    /// Origins of the variables when it was decided.
    pub vars: Vec<Origin>,
}

/// A Redis transaction whose EXEC a decision showed succeeded (not nil).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOk {
    pub exec: usize,
    /// The WATCH commands in force when EXEC ran.
    pub watched: Vec<usize>,
    /// The commands queued between MULTI and EXEC.
    pub queued: Vec<usize>,
}

/// A statement that fails on every attempt that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: usize,
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct Path {
    pub events: Vec<Event>,
    pub decisions: Vec<Decision>,
    /// `(event, call)` of try-locks a decision showed were acquired.
    pub acquired: Vec<(usize, usize)>,
    /// The `\sleep` instructions reached while a lock was held.
    pub held_sleeps: Vec<usize>,
    /// `(cmd, before_event)` of Redis locks (`SET NX`) a decision showed
    /// were acquired, before the event of that index.
    pub redis_locks: Vec<(usize, usize)>,
    /// `(lock cmd, release cmd, before_event)`: a Redis lock released
    /// (DEL, a release script) before the event of that index.
    pub redis_releases: Vec<(usize, usize, usize)>,
    /// `(cmd, line)` of `\sleep`s reached while a Redis lock was held.
    pub redis_lock_sleeps: Vec<(usize, usize)>,
    /// `(read, write)` commands: a Redis write of a value computed from a
    /// Redis read.
    pub redis_lost: Vec<(usize, usize)>,
    /// Redis reads (GET) made while their key was WATCHed.
    pub watched_reads: Vec<usize>,
    /// EXECs a decision showed succeeded.
    pub exec_ok: Vec<ExecOk>,
    /// The path ends in a statement that fails on every attempt.
    pub failed: Option<Failure>,
    /// `(line, what)`: an isolation level racelab could not evaluate took
    /// effect on this path.
    pub unknown_iso: Vec<(usize, String)>,
    /// `(line, note)`: isolation settings that took no effect.
    pub iso_notes: Vec<(usize, String)>,
}

#[derive(Debug, Clone)]
struct Tx {
    id: usize,
    iso: Isolation,
    iso_line: Option<usize>,
    /// A query ran in it: PostgreSQL took its snapshot, and its level
    /// can no longer change.
    snapshot: bool,
    /// The session's default before a SET in this transaction changed it
    /// (restored by ROLLBACK).
    session_before: Option<(Isolation, Option<usize>)>,
}

#[derive(Debug, Clone)]
struct State {
    pc: usize,
    vars: Vec<Origin>,
    tx: Option<Tx>,
    next_tx: usize,
    session_iso: Isolation,
    session_line: Option<usize>,
    /// A row, table or transaction-scoped advisory lock is held.
    held: bool,
    /// A session-scoped advisory lock is held.
    session_held: bool,
    /// The Redis lock (`Program::redis` index) held, if any.
    redis_lock: Option<usize>,
    /// WATCH commands in force, MULTI open, commands queued.
    watching: Vec<usize>,
    multi: Option<Vec<usize>>,
    /// The last EXEC and what it ran under, until a decision reads it.
    exec: Option<ExecOk>,
    path: Path,
}

/// Slots that no `\set` and no readable `\gset` column defines: a `\gset`
/// whose names are matched at run time may define them.
fn undefined_slots(prog: &Program) -> Vec<usize> {
    let mut defined: BTreeSet<usize> = (0..BUILTIN_VARS.len()).collect();
    for i in &prog.instrs {
        if let Instr::Set { slot, .. } = i {
            defined.insert(*slot);
        }
    }
    for st in &prog.stmts {
        if let Some(cols) = st.gset.as_ref().and_then(|g| g.cols.as_ref()) {
            defined.extend(cols.iter().map(|(_, s)| *s));
        }
    }
    (0..prog.vars.len())
        .filter(|s| !defined.contains(s))
        .collect()
}

pub fn expr_vars(e: &Expr, out: &mut Vec<usize>) {
    match e {
        Expr::Int(_) => {}
        Expr::Var(s) => out.push(*s),
        Expr::Neg(x) | Expr::Not(x) => expr_vars(x, out),
        Expr::Bin(_, l, r) => {
            expr_vars(l, out);
            expr_vars(r, out);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| expr_vars(a, out)),
    }
}

/// `cond` evaluated with `get` giving each variable's value.
pub fn eval_by(cond: &Expr, get: impl Fn(usize) -> Result<i64, EvalError>) -> Option<i64> {
    use rand::SeedableRng;
    cond.eval(&get, &mut rand::rngs::SmallRng::seed_from_u64(0))
        .ok()
}

/// Evaluate `cond` with only the slots in `known` given; `None` when it
/// needs anything else.
pub fn eval_with(cond: &Expr, known: &[(usize, i64)]) -> Option<i64> {
    eval_by(cond, |s| {
        known
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, v)| *v)
            .ok_or(EvalError::Unset(s))
    })
}

/// `cond` with every variable of `vs` nil (`nil`) or set to 1.
fn eval_nil(cond: &Expr, vs: &[usize], nil: bool) -> Option<i64> {
    eval_by(cond, |s| {
        if !vs.contains(&s) {
            Err(EvalError::Unset(s))
        } else if nil {
            Err(EvalError::Null(s))
        } else {
            Ok(1)
        }
    })
}

/// The Redis command a decision tests, when its condition reads only the
/// reply of one command with effect `want`.
fn redis_decision(
    prog: &Program,
    vs: &[usize],
    vars: &[Origin],
    want: impl Fn(&RedisEffect) -> bool,
) -> Option<usize> {
    let mut cmds = vs
        .iter()
        .flat_map(|v| vars[*v].iter())
        .filter_map(|d| match d {
            Dep::Redis { cmd } if want(&prog.redis[*cmd].effect()) => Some(*cmd),
            _ => None,
        });
    let c = cmds.next()?;
    let only = vs
        .iter()
        .all(|v| vars[*v].iter().all(|d| *d == Dep::Redis { cmd: c }));
    (only && !vs.is_empty()).then_some(c)
}

pub fn source_dep(event: usize, s: &Source, line: usize) -> Dep {
    match s {
        Source::Read { read, .. } => Dep::Read { event, read: *read },
        Source::Write(w) => Dep::Write { event, write: *w },
        Source::Advisory(c) => Dep::Advisory { event, call: *c },
        // A call the catalog could not resolve into its body's rows.
        Source::Call(_) => Dep::Unknown(line),
    }
}

/// Why a statement fails on every attempt, given the transaction state.
fn fails(f: &Facts, tx: Option<&Tx>, unknown_as: Isolation) -> Option<String> {
    match (f.kind, tx) {
        (Kind::LockTable, None) => {
            return Some("LOCK TABLE outside a transaction block fails (25P01: LOCK TABLE can only be used in transaction blocks)".into())
        }
        (
            Kind::SetIsolation {
                value: IsoValue::Level(l),
                target: IsoTarget::Transaction,
            },
            Some(t),
        ) if t.snapshot && l != t.iso => {
            return Some(format!(
                "it changes the isolation level of a transaction that has already run a query, which PostgreSQL refuses (25001: SET TRANSACTION ISOLATION LEVEL must be called before any query); the transaction is at {}",
                t.iso.as_str()
            ))
        }
        _ => {}
    }
    // set_config('transaction_isolation', ...) runs inside a query, which
    // has taken the snapshot first: a different level always fails.
    for c in &f.iso_calls {
        if c.target == Some(IsoTarget::Transaction) {
            let current = tx.map_or(Isolation::ReadCommitted, |t| t.iso);
            if c.value == IsoValue::Unknown && unknown_as != Isolation::ReadCommitted {
                return Some(format!(
                    "{} may name another level than the transaction's, and then it fails (25001: SET TRANSACTION ISOLATION LEVEL must be called before any query)",
                    c.text
                ));
            }
            if let IsoValue::Level(l) = c.value {
                if l != current {
                    return Some(format!(
                        "{} changes the isolation level from inside a query, after PostgreSQL took the query's snapshot: it fails (25001: SET TRANSACTION ISOLATION LEVEL must be called before any query)",
                        c.text
                    ));
                }
            }
        }
    }
    None
}

/// Every path through the program (`eff`: each statement's effective facts,
/// see `catalog`); `None` when there are more than `MAX_PATHS`.
pub fn paths(prog: &Program, eff: &[Facts], unknown_as: Isolation) -> Option<Vec<Path>> {
    let undefined = undefined_slots(prog);
    let mut vars: Vec<Origin> = vec![Origin::new(); prog.vars.len()];
    for (s, v) in vars.iter_mut().enumerate().take(BUILTIN_VARS.len()) {
        v.insert(Dep::Builtin(s));
    }
    let mut todo = vec![State {
        pc: 0,
        vars,
        tx: None,
        next_tx: 0,
        session_iso: Isolation::ReadCommitted,
        session_line: None,
        held: false,
        session_held: false,
        redis_lock: None,
        watching: Vec::new(),
        multi: None,
        exec: None,
        path: Path::default(),
    }];
    let mut done = Vec::new();
    while let Some(mut st) = todo.pop() {
        if done.len() + todo.len() > MAX_PATHS {
            return None;
        }
        loop {
            let Some(instr) = prog.instrs.get(st.pc) else {
                done.push(st.path);
                break;
            };
            let pc = st.pc;
            st.pc += 1;
            match instr {
                Instr::Sql(i) => {
                    let line = prog.stmts[*i].line;
                    if let Some(why) = fails(&eff[*i], st.tx.as_ref(), unknown_as) {
                        st.path.failed = Some(Failure { line, why });
                        done.push(st.path);
                        break;
                    }
                    sql(prog, eff, *i, pc, &mut st, &undefined, unknown_as);
                }
                Instr::Set { slot, expr, .. } => {
                    let mut vs = Vec::new();
                    expr_vars(expr, &mut vs);
                    let mut d = Origin::new();
                    for v in vs {
                        d.extend(st.vars[v].iter().cloned());
                    }
                    st.vars[*slot] = d;
                }
                Instr::Redis(i) => redis(prog, *i, &mut st),
                Instr::Sleep { line, .. } => {
                    if st.held || st.session_held || st.redis_lock.is_some() {
                        st.path.held_sleeps.push(pc);
                    }
                    if let Some(c) = st.redis_lock {
                        st.path.redis_lock_sleeps.push((c, *line));
                    }
                }
                Instr::Jump(t) => st.pc = *t,
                Instr::SoldOut { .. } | Instr::Retry { .. } => {
                    done.push(st.path);
                    break;
                }
                Instr::JumpUnless { line, cond, target } => {
                    let other = decide(prog, pc, *line, cond, *target, &mut st);
                    todo.push(other);
                }
            }
        }
    }
    Some(done)
}

/// Run one SQL statement on the path.
fn sql(
    prog: &Program,
    eff: &[Facts],
    i: usize,
    pc: usize,
    st: &mut State,
    undefined: &[usize],
    unknown_as: Isolation,
) {
    let stmt = &prog.stmts[i];
    let f = &eff[i];
    let line = stmt.line;
    let (tx, in_tx, iso, iso_line) = match &st.tx {
        Some(t) => (t.id, true, t.iso, t.iso_line),
        None => {
            st.next_tx += 1;
            (st.next_tx, false, st.session_iso, st.session_line)
        }
    };
    let event = st.path.events.len();
    st.path.events.push(Event {
        stmt: i,
        pc,
        tx,
        in_tx,
        iso,
        iso_line,
        vars: st.vars.clone(),
    });
    if in_tx
        && (!f.row_locks.is_empty()
            || !f.table_locks.is_empty()
            || !f.writes.is_empty()
            || f.advisory
                .iter()
                .any(|a| a.action == AdvisoryAction::Lock && a.scope == AdvisoryScope::Xact))
    {
        st.held = true;
    }
    for a in &f.advisory {
        if a.scope == AdvisoryScope::Session {
            st.session_held = a.action == AdvisoryAction::Lock;
        }
    }
    let takes_snapshot = matches!(
        f.kind,
        Kind::Select | Kind::Insert | Kind::Update | Kind::Delete
    );
    if let Some(t) = st.tx.as_mut() {
        t.snapshot |= takes_snapshot;
    }
    // The isolation level.
    let level_of = |v: IsoValue, default: Isolation| match v {
        IsoValue::Level(l) => (l, false),
        IsoValue::Default => (default, false),
        IsoValue::Unknown => (unknown_as, true),
    };
    let mut settings: Vec<(IsoTarget, IsoValue, String)> = Vec::new();
    if let Kind::SetIsolation { value, target } = f.kind {
        settings.push((target, value, stmt.display.clone()));
    }
    for c in &f.iso_calls {
        match c.target {
            // Inside a query the transaction's level cannot change (a
            // different level fails, see `fails`).
            Some(IsoTarget::Transaction) => {
                if c.value == IsoValue::Unknown {
                    st.path.unknown_iso.push((
                        line,
                        format!(
                            "{} sets the isolation level to a value racelab cannot evaluate: unless it is the level the transaction already has, the statement fails",
                            c.text
                        ),
                    ));
                }
            }
            Some(t) => settings.push((t, c.value, c.text.clone())),
            None => st.path.unknown_iso.push((
                line,
                format!("{} sets a setting racelab cannot name", c.text),
            )),
        }
    }
    for (target, value, text) in settings {
        match target {
            IsoTarget::Transaction => match st.tx.as_mut() {
                Some(t) if t.snapshot => {
                    if value == IsoValue::Unknown {
                        st.path.unknown_iso.push((
                            line,
                            format!(
                                "line {line} ({text}) sets the isolation level after the transaction's first query to a value racelab cannot evaluate: unless it is the level the transaction has, it fails"
                            ),
                        ));
                    }
                }
                Some(t) => {
                    let (l, unknown) = level_of(value, st.session_iso);
                    t.iso = l;
                    t.iso_line = Some(line);
                    if unknown {
                        st.path.unknown_iso.push((
                            line,
                            format!(
                                "line {line} ({text}) sets the transaction's isolation level to a value racelab cannot evaluate"
                            ),
                        ));
                    }
                }
                None => st.path.iso_notes.push((
                    line,
                    format!(
                        "line {line} ({text}) runs outside a transaction block: it sets the level of that one statement's own transaction and changes nothing after it"
                    ),
                )),
            },
            IsoTarget::SessionDefault => {
                let (l, unknown) = level_of(value, Isolation::ReadCommitted);
                if let Some(t) = st.tx.as_mut() {
                    t.session_before
                        .get_or_insert((st.session_iso, st.session_line));
                }
                st.session_iso = l;
                st.session_line = Some(line);
                if unknown {
                    st.path.unknown_iso.push((
                        line,
                        format!(
                            "line {line} ({text}) sets the session's default isolation level to a value racelab cannot evaluate"
                        ),
                    ));
                }
                if st.tx.is_some() {
                    st.path.iso_notes.push((
                        line,
                        format!(
                            "line {line} ({text}) changes the default of transactions that start later, not of the one it runs in"
                        ),
                    ));
                }
            }
            IsoTarget::LocalDefault => st.path.iso_notes.push((
                line,
                format!(
                    "line {line} ({text}) sets the default of transactions that start later, and only until this one ends: it changes nothing"
                ),
            )),
        }
    }
    if matches!(f.kind, Kind::Commit { .. } | Kind::Rollback { .. }) {
        st.held = false;
    }
    match f.kind {
        Kind::Begin(level) => {
            st.next_tx += 1;
            st.tx = Some(Tx {
                id: st.next_tx,
                iso: level.unwrap_or(st.session_iso),
                iso_line: if level.is_some() {
                    Some(line)
                } else {
                    st.session_line
                },
                snapshot: false,
                session_before: None,
            });
        }
        Kind::Commit { chain } | Kind::Rollback { chain } => {
            let rollback = matches!(f.kind, Kind::Rollback { .. });
            let old = st.tx.take();
            if rollback {
                if let Some((iso, line)) = old.as_ref().and_then(|t| t.session_before) {
                    st.session_iso = iso;
                    st.session_line = line;
                }
            }
            if chain {
                st.next_tx += 1;
                let (iso, iso_line) = old
                    .as_ref()
                    .map_or((st.session_iso, st.session_line), |t| (t.iso, t.iso_line));
                st.tx = Some(Tx {
                    id: st.next_tx,
                    iso,
                    iso_line,
                    snapshot: false,
                    session_before: None,
                });
            }
        }
        _ => {}
    }
    // :rows and \gset.
    let mut rows = Origin::new();
    if let Some(w) = f.rows_from {
        rows.insert(Dep::Write { event, write: w });
    } else {
        for r in 0..f.reads.len() {
            rows.insert(Dep::Read { event, read: r });
        }
    }
    if f.unreadable.is_some() || f.opaque.is_some() {
        rows.insert(Dep::Unknown(line));
    }
    if let Some(g) = &stmt.gset {
        rows = Origin::new();
        let outputs = f.outputs.clone().unwrap_or_default();
        let origin_of = |o: &crate::strategy::facts::Output, vars: &[Origin]| {
            let mut d = Origin::new();
            for s in &o.sources {
                d.insert(source_dep(event, s, line));
            }
            for v in &o.vars {
                match v.checked_sub(VALUE_SLOT).and_then(|k| f.values.get(k)) {
                    Some(s) => {
                        d.insert(source_dep(event, s, line));
                    }
                    None => d.extend(vars.get(*v).into_iter().flatten().cloned()),
                }
            }
            d
        };
        match &g.cols {
            Some(cols) => {
                for ((_, slot), o) in cols.iter().zip(&outputs) {
                    st.vars[*slot] = origin_of(o, &st.vars);
                }
            }
            None => {
                let mut all = Origin::new();
                for o in &outputs {
                    all.extend(origin_of(o, &st.vars));
                }
                if f.unreadable.is_some() {
                    all.insert(Dep::Unknown(line));
                }
                for s in undefined {
                    st.vars[*s] = all.clone();
                }
            }
        }
    }
    st.vars[ROWS] = rows;
}

/// Run one `\redis` command on the path: what its reply means is the
/// command's effect.
fn redis(prog: &Program, i: usize, st: &mut State) {
    let cmd = &prog.redis[i];
    let effect = cmd.effect();
    if let RedisEffect::Write { from, .. } = &effect {
        for v in from {
            for d in &st.vars[*v] {
                if let Dep::Redis { cmd: g } = d {
                    if prog.redis[*g].effect() == RedisEffect::Read {
                        st.path.redis_lost.push((*g, i));
                    }
                }
            }
        }
    }
    let same_key = |a: usize, b: usize| {
        let ka: Vec<_> = prog.redis[a].key_args().collect();
        prog.redis[b].key_args().any(|k| ka.contains(&k))
    };
    // A release of the Redis lock held: DEL of its key, or a script on it.
    if let Some(lock) = st.redis_lock {
        let releases =
            matches!(cmd.name.as_str(), "DEL" | "GETDEL") || effect == RedisEffect::Script;
        if releases && same_key(lock, i) {
            let at = st.path.events.len();
            st.path.redis_releases.push((lock, i, at));
            st.redis_lock = None;
        }
    }
    match &effect {
        RedisEffect::Watch => st.watching.push(i),
        RedisEffect::Multi => st.multi = Some(Vec::new()),
        RedisEffect::Exec => {
            st.exec = Some(ExecOk {
                exec: i,
                watched: std::mem::take(&mut st.watching),
                queued: st.multi.take().unwrap_or_default(),
            });
        }
        _ if cmd.name == "UNWATCH" || cmd.name == "DISCARD" => {
            st.watching.clear();
            st.multi = None;
        }
        RedisEffect::Read if st.watching.iter().any(|w| same_key(*w, i)) => {
            st.path.watched_reads.push(i);
        }
        _ => {}
    }
    if let Some(q) = st.multi.as_mut() {
        if !matches!(effect, RedisEffect::Multi) {
            q.push(i);
        }
    }
    if let Some(slot) = cmd.into {
        st.vars[slot] = [Dep::Redis { cmd: i }].into_iter().collect();
    }
}

/// Pass an `\if`: `st` goes on into the branch (the condition held), the
/// state returned skips it.
fn decide(
    prog: &Program,
    pc: usize,
    line: usize,
    cond: &Expr,
    target: usize,
    st: &mut State,
) -> State {
    let mut vs = Vec::new();
    expr_vars(cond, &mut vs);
    let mut deps = Origin::new();
    for v in &vs {
        deps.extend(st.vars[*v].iter().cloned());
    }
    let decision = Decision {
        pc,
        line,
        before_event: st.path.events.len(),
        deps: deps.clone(),
        uses_qty: vs.contains(&QTY),
        cond: cond.clone(),
        taken: true,
        vars: st.vars.clone(),
    };
    // A decision on a try-lock's result alone: which side means "acquired".
    let tries: Vec<(usize, usize)> = deps
        .iter()
        .filter_map(|d| match d {
            Dep::Advisory { event, call } => Some((*event, *call)),
            _ => None,
        })
        .collect();
    let mut taken_if: Option<(Option<i64>, Option<i64>)> = None;
    let on_try = |t: &(usize, usize)| {
        vs.iter().all(|v| {
            st.vars[*v].contains(&Dep::Advisory {
                event: t.0,
                call: t.1,
            })
        })
    };
    if tries.len() == 1 && on_try(&tries[0]) {
        let at = |v: i64| {
            let known: Vec<(usize, i64)> = vs.iter().map(|s| (*s, v)).collect();
            eval_with(cond, &known)
        };
        taken_if = Some((at(1), at(0)));
    }
    let mut other = st.clone();
    other.pc = target;
    st.path.decisions.push(decision.clone());
    other.path.decisions.push(Decision {
        taken: false,
        ..decision
    });
    if let Some((got, missed)) = taken_if {
        let t = tries[0];
        if got.is_some_and(|v| v != 0) && missed == Some(0) {
            st.path.acquired.push(t);
        } else if got == Some(0) && missed.is_some_and(|v| v != 0) {
            other.path.acquired.push(t);
        }
    }
    // Which side of a test of a nil-or-not reply is "not nil".
    let not_nil_side = |st: &mut State, other: &mut State| -> Option<bool> {
        let (got, missed) = (eval_nil(cond, &vs, false), eval_nil(cond, &vs, true));
        let _ = (st, other);
        if got.is_some_and(|v| v != 0) && missed == Some(0) {
            Some(true)
        } else if got == Some(0) && missed.is_some_and(|v| v != 0) {
            Some(false)
        } else {
            None
        }
    };
    // A Redis lock's reply: the side where it is not nil holds the lock.
    if let Some(c) = redis_decision(prog, &vs, &st.vars, |e| {
        matches!(e, RedisEffect::Lock { .. })
    }) {
        if let Some(into_branch) = not_nil_side(st, &mut other) {
            let h = if into_branch { &mut *st } else { &mut other };
            h.redis_lock = Some(c);
            let at = h.path.events.len();
            h.path.redis_locks.push((c, at));
        }
    }
    // EXEC's reply: the side where it is not nil ran the queued commands.
    if let Some(c) = redis_decision(prog, &vs, &st.vars, |e| *e == RedisEffect::Exec) {
        if let (Some(into_branch), Some(x)) = (not_nil_side(st, &mut other), st.exec.clone()) {
            if x.exec == c {
                let h = if into_branch { &mut *st } else { &mut other };
                h.path.exec_ok.push(x);
            }
        }
    }
    other
}

/// What held around each statement and instruction, on some path.
#[derive(Debug, Clone, Default)]
pub struct StmtContext {
    /// It ran outside a transaction block (autocommit) on some path.
    pub autocommit: bool,
    /// It ran in a transaction with one snapshot (REPEATABLE READ or
    /// SERIALIZABLE) on some path.
    pub snapshot: bool,
}

/// The contexts of a program's statements.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Per statement of `Program::stmts`.
    pub stmts: Vec<StmtContext>,
    /// Per instruction: a lock was held when it ran, on some path.
    pub held: Vec<bool>,
    /// The isolation levels transactions run at.
    pub isolation: Vec<Isolation>,
    /// Isolation settings that took no effect, by line.
    pub iso_notes: Vec<(usize, String)>,
    /// Statements that fail on every attempt, by line.
    pub failures: Vec<Failure>,
}

/// Where each statement runs: in or out of a transaction, and which locks
/// are held at each `\sleep`.
pub fn context(prog: &Program, eff: &[Facts]) -> Context {
    let mut c = Context {
        stmts: vec![StmtContext::default(); prog.stmts.len()],
        held: vec![false; prog.instrs.len()],
        ..Context::default()
    };
    for p in paths(prog, eff, Isolation::ReadCommitted).unwrap_or_default() {
        for e in &p.events {
            let k = eff[e.stmt].kind;
            let opens = matches!(k, Kind::Begin(_) | Kind::SetIsolation { .. });
            let s = &mut c.stmts[e.stmt];
            s.autocommit |= !e.in_tx && !opens;
            s.snapshot |= e.in_tx && e.iso != Isolation::ReadCommitted;
            if e.in_tx && !c.isolation.contains(&e.iso) {
                c.isolation.push(e.iso);
            }
        }
        for pc in p.held_sleeps {
            c.held[pc] = true;
        }
        for n in p.iso_notes {
            if !c.iso_notes.contains(&n) {
                c.iso_notes.push(n);
            }
        }
        if let Some(f) = p.failed {
            if !c.failures.contains(&f) {
                c.failures.push(f);
            }
        }
    }
    c.isolation.sort();
    c
}

/// `reach[pc]`: the instructions reachable from `pc` (jumps only go forward).
pub fn reach(prog: &Program) -> Vec<BTreeSet<usize>> {
    let n = prog.instrs.len();
    let mut r: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n + 1];
    for pc in (0..n).rev() {
        let mut s = BTreeSet::new();
        s.insert(pc);
        let succ: Vec<usize> = match &prog.instrs[pc] {
            Instr::Jump(t) => vec![*t],
            Instr::JumpUnless { target, .. } => vec![pc + 1, *target],
            Instr::SoldOut { .. } | Instr::Retry { .. } => vec![],
            _ => vec![pc + 1],
        };
        for t in succ {
            if let Some(x) = r.get(t) {
                s.extend(x.iter().copied());
            }
        }
        r[pc] = s;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy;

    fn walk(src: &str, unknown_as: Isolation) -> Vec<Path> {
        let prog = strategy::parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()));
        let eff: Vec<Facts> = prog.stmts.iter().map(|s| s.facts.clone()).collect();
        paths(&prog, &eff, unknown_as).expect("few paths")
    }

    fn levels(p: &Path) -> Vec<(usize, bool, Isolation)> {
        p.events.iter().map(|e| (e.tx, e.in_tx, e.iso)).collect()
    }

    #[test]
    fn isolation_however_it_is_set() {
        use Isolation::*;
        let body = "SELECT 1;\nCOMMIT;\n";
        for (head, want) in [
            ("BEGIN;\n", ReadCommitted),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE;\n", Serializable),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSET LOCAL transaction_isolation = 'read committed';\n", ReadCommitted),
            ("BEGIN;\nSET transaction_isolation TO 'repeatable read';\n", RepeatableRead),
            ("BEGIN ISOLATION LEVEL REPEATABLE READ;\nSET TRANSACTION ISOLATION LEVEL READ COMMITTED;\n", ReadCommitted),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSET LOCAL transaction_isolation = DEFAULT;\n", ReadCommitted),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nRESET transaction_isolation;\n", ReadCommitted),
            ("BEGIN;\nSET LOCAL default_transaction_isolation = 'serializable';\n", ReadCommitted),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nBEGIN;\n", ReadCommitted),
            ("SET transaction_isolation = 'serializable';\nBEGIN;\n", ReadCommitted),
            ("SET default_transaction_isolation = 'serializable';\nBEGIN;\n", Serializable),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nBEGIN;\n", RepeatableRead),
            ("SELECT set_config('default_transaction_isolation', 'serializable', false);\nBEGIN;\n", Serializable),
            ("SELECT set_config('default_transaction_isolation', 'serializable', true);\nBEGIN;\n", ReadCommitted),
        ] {
            let src = format!("{head}{body}");
            let p = &walk(&src, ReadCommitted)[0];
            let select = p.events.iter().rev().nth(1).expect("the SELECT");
            assert_eq!((select.in_tx, select.iso), (true, want), "{src}");
            assert!(p.failed.is_none() && p.unknown_iso.is_empty(), "{src}: {p:?}");
        }
        // COMMIT AND CHAIN keeps the level.
        let p = &walk("BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT AND CHAIN;\nSELECT 2;\nCOMMIT;\n", ReadCommitted)[0];
        let chained = levels(p)[3];
        assert_eq!((chained.1, chained.2), (true, Serializable));
        assert_ne!(chained.0, levels(p)[1].0);
        // A default set in a transaction that rolls back is undone.
        let p = &walk("BEGIN;\nSET default_transaction_isolation = 'serializable';\nROLLBACK;\nBEGIN;\nSELECT 1;\nCOMMIT;\n", ReadCommitted)[0];
        assert_eq!(p.events[4].iso, ReadCommitted);
    }

    #[test]
    fn levels_that_fail_or_cannot_be_evaluated() {
        let p = &walk(
            "BEGIN;\nSELECT 1;\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nCOMMIT;\n",
            Isolation::ReadCommitted,
        )[0];
        assert_eq!(p.failed.as_ref().map(|f| f.line), Some(3));
        let p = &walk(
            "BEGIN;\nSELECT set_config('transaction_isolation', 'serializable', true);\nCOMMIT;\n",
            Isolation::ReadCommitted,
        )[0];
        assert_eq!(p.failed.as_ref().map(|f| f.line), Some(2));
        // The same level changes nothing and does not fail.
        let p = &walk(
            "BEGIN;\nSELECT 1;\nSET TRANSACTION ISOLATION LEVEL READ COMMITTED;\nCOMMIT;\n",
            Isolation::ReadCommitted,
        )[0];
        assert!(p.failed.is_none());
        let p = &walk("LOCK TABLE products;\n", Isolation::ReadCommitted)[0];
        assert!(p.failed.is_some());
        let src = "BEGIN;\nSELECT set_config('default_transaction_isolation', current_setting('x'), false);\nCOMMIT;\nBEGIN;\nSELECT 1;\nCOMMIT;\n";
        for level in [Isolation::ReadCommitted, Isolation::Serializable] {
            let p = &walk(src, level)[0];
            assert_eq!(p.events[4].iso, level);
            assert_eq!(p.unknown_iso.len(), 1, "{p:?}");
        }
    }

    #[test]
    fn branches_and_decisions() {
        let src = "SELECT stock FROM products WHERE id = :product \\gset\n\\if :stock < :qty\n  \\sold_out\n\\endif\nUPDATE products SET stock = :stock - :qty WHERE id = :product;\n";
        let ps = walk(src, Isolation::ReadCommitted);
        assert_eq!(ps.len(), 2);
        let sold_out = ps.iter().find(|p| p.events.len() == 1).unwrap();
        let bought = ps.iter().find(|p| p.events.len() == 2).unwrap();
        assert!(sold_out.decisions[0].taken && !bought.decisions[0].taken);
        assert!(bought.decisions[0].uses_qty);
        assert!(bought.decisions[0]
            .deps
            .contains(&Dep::Read { event: 0, read: 0 }));
        // Each autocommit statement is a transaction of its own.
        assert_ne!(bought.events[0].tx, bought.events[1].tx);
    }
}
