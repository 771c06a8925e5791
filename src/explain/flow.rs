//! explain's verdict, from data flow: every path through the program
//! (`\if` branches, `\sold_out`, `\retry`) is walked in order, tracking
//! which transaction each statement runs in, at which isolation level,
//! which locks are held, and where every variable's value came from. Then,
//! for each write that commits on a path, each value it writes and each
//! `\if` decision that guards it is checked against the protections
//! PostgreSQL gives: a row or table lock every buyer takes before the read
//! and holds until the write commits, an isolation level that aborts the
//! later writer, a WHERE guard on what was read with the zero-row case
//! handled, a constraint or guard that bounds a relative decrement, or an
//! advisory lock on a key every buyer of the product shares.
//!
//! Only statement facts are read here (`strategy::facts`); comments and
//! names never count.

use std::collections::BTreeSet;

use crate::strategy::facts::{
    AdvisoryAction, AdvisoryScope, Cmp, Comparison, Constraint, Facts, Isolation, Kind, Operand,
    Rows, Source, Value, WriteOp, COLUMN_SLOT,
};
use crate::strategy::{Instr, Program, RedisEffect, BUILTIN_VARS, PRODUCT, QTY, ROWS};

/// The most paths explain walks before it gives up (UNSURE).
const MAX_PATHS: usize = 4096;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Dep {
    /// A built-in variable's slot.
    Builtin(usize),
    /// `reads[read]` of the statement run at path event `event`.
    Read { event: usize, read: usize },
    /// What `writes[write]` of event `event` wrote (RETURNING, row count).
    Write { event: usize, write: usize },
    /// A `pg_try_advisory_*` result.
    Advisory { event: usize, call: usize },
    /// A statement racelab cannot read, at this line.
    Unknown(usize),
    /// The reply of `\\redis` command `Program::redis[cmd]`.
    Redis { cmd: usize },
}

type Origin = BTreeSet<Dep>;

/// One SQL statement run on a path.
#[derive(Debug, Clone)]
struct Event {
    stmt: usize,
    /// The program instruction that ran it.
    pc: usize,
    tx: usize,
    in_tx: bool,
    iso: Isolation,
    /// Origins of every variable just before the statement ran.
    vars: Vec<Origin>,
}

/// An `\if` passed on a path.
#[derive(Debug, Clone)]
struct Decision {
    pc: usize,
    line: usize,
    /// Index of the next event: the decision came before it.
    before_event: usize,
    deps: Origin,
    uses_qty: bool,
}

#[derive(Debug, Clone)]
struct Path {
    events: Vec<Event>,
    decisions: Vec<Decision>,
    /// `(event, call)` of try-locks a decision showed were acquired.
    acquired: Vec<(usize, usize)>,
    /// The `\sleep` instructions reached while a lock was held.
    held_sleeps: Vec<usize>,
    /// `(cmd, before_event)` of Redis locks (`SET NX`) a decision showed
    /// were acquired, before the event of that index.
    redis_locks: Vec<(usize, usize)>,
    /// `(cmd, line)` of `\sleep`s reached while a Redis lock was held.
    redis_lock_sleeps: Vec<(usize, usize)>,
    /// `(read, write)` commands: a Redis write of a value computed from a
    /// Redis read.
    redis_lost: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct State {
    pc: usize,
    vars: Vec<Origin>,
    tx: Option<(usize, Isolation)>,
    next_tx: usize,
    session_iso: Isolation,
    /// A row, table or transaction-scoped advisory lock is held.
    held: bool,
    /// A session-scoped advisory lock is held.
    session_held: bool,
    /// The Redis lock (`Program::redis` index) held, if any.
    redis_lock: Option<usize>,
    path: Path,
}

/// How sure the verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Safe,
    Unsure,
    Unsafe,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Safe => "SAFE",
            Level::Unsure => "UNSURE",
            Level::Unsafe => "UNSAFE",
        }
    }
}

/// One reason behind the verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub level: Level,
    /// Script lines involved, in order.
    pub lines: Vec<usize>,
    pub text: String,
}

/// The verdict and its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub level: Level,
    /// UNSAFE and UNSURE findings, or for SAFE what protects each write.
    pub findings: Vec<Finding>,
}

/// Decide a program's verdict from its statement facts.
pub fn verdict(prog: &Program) -> Verdict {
    let mut a = Analysis {
        prog,
        findings: BTreeSet::new(),
        protections: BTreeSet::new(),
        reach: reach(prog),
    };
    for s in prog.setup.iter().filter(|s| s.facts.unreadable.is_some()) {
        a.unsure(
            vec![s.line],
            format!(
                "racelab cannot read the \\setup statement at line {} ({}): a constraint it adds would not be counted",
                s.line,
                s.facts.unreadable.as_deref().unwrap_or_default()
            ),
        );
    }
    for st in prog.stmts.iter().filter(|s| s.facts.unreadable.is_some()) {
        a.unsure(
            vec![st.line],
            format!(
                "racelab cannot read the statement at line {} ({}): what it locks, reads and writes is unknown",
                st.line,
                st.facts.unreadable.as_deref().unwrap_or_default()
            ),
        );
    }
    match paths(prog) {
        Some(paths) => {
            for p in &paths {
                a.path(p);
            }
            a.redis_locks(&paths);
        }
        None => a.unsure(
            Vec::new(),
            format!("the script has more than {MAX_PATHS} paths through its \\if branches"),
        ),
    }
    let findings: Vec<Finding> = a.findings.into_iter().collect();
    let level = findings
        .iter()
        .map(|f| f.level)
        .max()
        .unwrap_or(Level::Safe);
    if level == Level::Safe {
        let mut protections: Vec<Finding> = a.protections.into_iter().collect();
        if protections.is_empty() {
            protections.push(Finding {
                level: Level::Safe,
                lines: Vec::new(),
                text: "no write depends on a value another buyer can change".into(),
            });
        }
        return Verdict {
            level,
            findings: protections,
        };
    }
    // UNSURE wins over UNSAFE only where the facts are incomplete.
    let level = if findings.iter().any(|f| f.level == Level::Unsure)
        && (prog.stmts.iter().any(|s| s.facts.unreadable.is_some())
            || prog.setup.iter().any(|s| s.facts.unreadable.is_some()))
    {
        Level::Unsure
    } else {
        level
    };
    Verdict { level, findings }
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
}

/// Where each statement runs: in or out of a transaction, and which locks
/// are held at each `\sleep`.
pub fn context(prog: &Program) -> Context {
    let mut c = Context {
        stmts: vec![StmtContext::default(); prog.stmts.len()],
        held: vec![false; prog.instrs.len()],
        isolation: Vec::new(),
    };
    for p in paths(prog).unwrap_or_default() {
        for e in &p.events {
            let k = prog.stmts[e.stmt].facts.kind;
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
    }
    c.isolation.sort();
    c
}

/// `reach[pc]`: the instructions reachable from `pc` (jumps only go forward).
fn reach(prog: &Program) -> Vec<BTreeSet<usize>> {
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

fn expr_vars(e: &crate::strategy::Expr, out: &mut Vec<usize>) {
    use crate::strategy::Expr as E;
    match e {
        E::Int(_) => {}
        E::Var(s) => out.push(*s),
        E::Neg(x) | E::Not(x) => expr_vars(x, out),
        E::Bin(_, l, r) => {
            expr_vars(l, out);
            expr_vars(r, out);
        }
        E::Call(_, args) => args.iter().for_each(|a| expr_vars(a, out)),
    }
}

/// Evaluate `cond` with only the slots in `known` given; `None` when it
/// needs anything else.
fn eval_with(cond: &crate::strategy::Expr, known: &[(usize, i64)]) -> Option<i64> {
    eval_by(cond, |s| {
        known
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, v)| *v)
            .ok_or(crate::strategy::EvalError::Unset(s))
    })
}

/// `cond` evaluated with `get` giving each variable's value.
fn eval_by(
    cond: &crate::strategy::Expr,
    get: impl Fn(usize) -> Result<i64, crate::strategy::EvalError>,
) -> Option<i64> {
    use rand::SeedableRng;
    cond.eval(&get, &mut rand::rngs::SmallRng::seed_from_u64(0))
        .ok()
}

/// The Redis lock a decision tests, when its condition reads only the
/// reply of one `SET ... NX`.
fn redis_lock_decision(prog: &Program, vs: &[usize], vars: &[Origin]) -> Option<usize> {
    let mut locks = vs
        .iter()
        .flat_map(|v| vars[*v].iter())
        .filter_map(|d| match d {
            Dep::Redis { cmd } if matches!(prog.redis[*cmd].effect(), RedisEffect::Lock { .. }) => {
                Some(*cmd)
            }
            _ => None,
        });
    let c = locks.next()?;
    let only = vs
        .iter()
        .all(|v| vars[*v].iter().all(|d| *d == Dep::Redis { cmd: c }));
    (only && !vs.is_empty()).then_some(c)
}

/// `cond` with every variable of `vs` nil (`nil`) or set to 1.
fn eval_nil(cond: &crate::strategy::Expr, vs: &[usize], nil: bool) -> Option<i64> {
    eval_by(cond, |s| {
        if !vs.contains(&s) {
            Err(crate::strategy::EvalError::Unset(s))
        } else if nil {
            Err(crate::strategy::EvalError::Null(s))
        } else {
            Ok(1)
        }
    })
}

/// Every path through the program, each with its events, decisions and
/// variable origins; `None` when there are too many.
fn paths(prog: &Program) -> Option<Vec<Path>> {
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
        held: false,
        session_held: false,
        redis_lock: None,
        path: Path {
            events: Vec::new(),
            decisions: Vec::new(),
            acquired: Vec::new(),
            redis_locks: Vec::new(),
            redis_lock_sleeps: Vec::new(),
            redis_lost: Vec::new(),
            held_sleeps: Vec::new(),
        },
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
                    let stmt = &prog.stmts[*i];
                    let f = &stmt.facts;
                    let (tx, in_tx, iso) = match st.tx {
                        Some((id, iso)) => (id, true, iso),
                        None => {
                            st.next_tx += 1;
                            (st.next_tx, false, st.session_iso)
                        }
                    };
                    let event = st.path.events.len();
                    st.path.events.push(Event {
                        stmt: *i,
                        pc,
                        tx,
                        in_tx,
                        iso,
                        vars: st.vars.clone(),
                    });
                    if in_tx
                        && (!f.row_locks.is_empty()
                            || !f.table_locks.is_empty()
                            || !f.writes.is_empty()
                            || f.advisory.iter().any(|a| {
                                a.action == AdvisoryAction::Lock && a.scope == AdvisoryScope::Xact
                            }))
                    {
                        st.held = true;
                    }
                    for a in &f.advisory {
                        if a.scope == AdvisoryScope::Session {
                            st.session_held = a.action == AdvisoryAction::Lock;
                        }
                    }
                    if matches!(f.kind, Kind::Commit { .. } | Kind::Rollback { .. }) {
                        st.held = false;
                    }
                    match f.kind {
                        Kind::Begin(level) => {
                            st.next_tx += 1;
                            st.tx = Some((st.next_tx, level.unwrap_or(st.session_iso)));
                        }
                        Kind::SetIsolation { level, session } => {
                            if session {
                                st.session_iso = level;
                            }
                            if let Some((id, _)) = st.tx {
                                st.tx = Some((id, level));
                            }
                        }
                        Kind::Commit { chain } | Kind::Rollback { chain } => {
                            st.tx = if chain {
                                st.next_tx += 1;
                                Some((st.next_tx, st.tx.map_or(st.session_iso, |t| t.1)))
                            } else {
                                None
                            };
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
                    if f.unreadable.is_some() {
                        rows.insert(Dep::Unknown(stmt.line));
                    }
                    if let Some(g) = &stmt.gset {
                        rows = Origin::new();
                        let outputs = f.outputs.clone().unwrap_or_default();
                        let origin_of = |o: &crate::strategy::facts::Output, vars: &[Origin]| {
                            let mut d = Origin::new();
                            for s in &o.sources {
                                d.insert(source_dep(event, s));
                            }
                            for v in &o.vars {
                                d.extend(vars[*v].iter().cloned());
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
                                    all.insert(Dep::Unknown(stmt.line));
                                }
                                for s in &undefined {
                                    st.vars[*s] = all.clone();
                                }
                            }
                        }
                    }
                    st.vars[ROWS] = rows;
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
                // A Redis reply: what it means is the command's effect.
                Instr::Redis(i) => {
                    let cmd = &prog.redis[*i];
                    if let RedisEffect::Write { from, .. } = cmd.effect() {
                        for v in from {
                            for d in &st.vars[v] {
                                if let Dep::Redis { cmd: g } = d {
                                    if prog.redis[*g].effect() == RedisEffect::Read {
                                        st.path.redis_lost.push((*g, *i));
                                    }
                                }
                            }
                        }
                    }
                    if let Some(slot) = cmd.into {
                        st.vars[slot] = [Dep::Redis { cmd: *i }].into_iter().collect();
                    }
                }
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
                    let mut vs = Vec::new();
                    expr_vars(cond, &mut vs);
                    let mut deps = Origin::new();
                    for v in &vs {
                        deps.extend(st.vars[*v].iter().cloned());
                    }
                    st.path.decisions.push(Decision {
                        pc,
                        line: *line,
                        before_event: st.path.events.len(),
                        deps: deps.clone(),
                        uses_qty: vs.contains(&QTY),
                    });
                    // A decision on a try-lock's result alone: which side
                    // means "acquired".
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
                        let slots: Vec<usize> = vs.clone();
                        let at = |v: i64| {
                            let known: Vec<(usize, i64)> = slots.iter().map(|s| (*s, v)).collect();
                            eval_with(cond, &known)
                        };
                        taken_if = Some((at(1), at(0)));
                    }
                    let mut other = st.clone();
                    other.pc = *target;
                    // `st` goes on into the branch (cond true); `other`
                    // skips it (cond false).
                    if let Some((got, missed)) = taken_if {
                        let t = tries[0];
                        if got.is_some_and(|v| v != 0) && missed == Some(0) {
                            st.path.acquired.push(t);
                        } else if got == Some(0) && missed.is_some_and(|v| v != 0) {
                            other.path.acquired.push(t);
                        }
                    }
                    // A decision on a Redis lock's reply alone: the side
                    // where the reply is not nil holds the lock.
                    if let Some(c) = redis_lock_decision(prog, &vs, &st.vars) {
                        let (got, missed) = (eval_nil(cond, &vs, false), eval_nil(cond, &vs, true));
                        let holder = if got.is_some_and(|v| v != 0) && missed == Some(0) {
                            Some(&mut st)
                        } else if got == Some(0) && missed.is_some_and(|v| v != 0) {
                            Some(&mut other)
                        } else {
                            None
                        };
                        if let Some(h) = holder {
                            h.redis_lock = Some(c);
                            let at = h.path.events.len();
                            h.path.redis_locks.push((c, at));
                        }
                    }
                    todo.push(other);
                }
            }
        }
    }
    Some(done)
}

fn source_dep(event: usize, s: &Source) -> Dep {
    match s {
        Source::Read { read, .. } => Dep::Read { event, read: *read },
        Source::Write(w) => Dep::Write { event, write: *w },
        Source::Advisory(c) => Dep::Advisory { event, call: *c },
    }
}

struct Analysis<'p> {
    prog: &'p Program,
    findings: BTreeSet<Finding>,
    protections: BTreeSet<Finding>,
    reach: Vec<BTreeSet<usize>>,
}

/// A key column and what it is compared with, for "same rows".
type KeySig = Vec<(String, String)>;

impl Analysis<'_> {
    fn unsure(&mut self, lines: Vec<usize>, text: String) {
        self.findings.insert(Finding {
            level: Level::Unsure,
            lines,
            text,
        });
    }

    fn unsafe_(&mut self, lines: Vec<usize>, text: String) {
        self.findings.insert(Finding {
            level: Level::Unsafe,
            lines,
            text,
        });
    }

    fn safe(&mut self, lines: Vec<usize>, text: String) {
        self.protections.insert(Finding {
            level: Level::Safe,
            lines,
            text,
        });
    }

    fn facts(&self, p: &Path, event: usize) -> &Facts {
        &self.prog.stmts[p.events[event].stmt].facts
    }

    fn line(&self, p: &Path, event: usize) -> usize {
        self.prog.stmts[p.events[event].stmt].line
    }

    /// The roots of an operand's variables at `event`: built-ins, or
    /// something read.
    fn roots(&self, p: &Path, event: usize, o: &Operand) -> Origin {
        let mut d = Origin::new();
        for v in &o.vars {
            d.extend(p.events[event].vars[*v].iter().cloned());
        }
        d
    }

    /// Whether every buyer of the product computes the same value: built
    /// from `:product` and constants only.
    fn shared(&self, p: &Path, event: usize, o: &Operand) -> bool {
        o.cols.is_empty()
            && self
                .roots(p, event, o)
                .iter()
                .all(|d| *d == Dep::Builtin(PRODUCT))
    }

    fn key_sig(&self, p: &Path, event: usize, rows: &Rows) -> KeySig {
        // The rows are named by what every buyer knows before reading:
        // a key compared with a value read from the row (`version =
        // :version`) is a guard, not part of the name.
        let mut k: KeySig = rows
            .key
            .iter()
            .filter(|(_, o)| {
                self.roots(p, event, o)
                    .iter()
                    .all(|d| matches!(d, Dep::Builtin(_)))
            })
            .map(|(c, o)| {
                let roots = self.roots(p, event, o);
                let v = if o.vars.is_empty() {
                    o.text.clone()
                } else {
                    format!("{roots:?}{}", o.vars.len())
                };
                (c.clone(), v)
            })
            .collect();
        k.sort();
        k.dedup();
        k
    }

    /// Whether the rows picked by `lock` (at event `le`) include the rows
    /// picked by `read` (at event `re`), the same for every buyer.
    fn covers(&self, p: &Path, le: usize, lock: &Rows, re: usize, read: &Rows) -> bool {
        if lock.key.is_empty() {
            // Every row of the table, unless the WHERE filters otherwise.
            return !lock.opaque && lock.filter.is_empty();
        }
        let shared = lock.key.iter().all(|(_, o)| self.shared(p, le, o));
        shared && self.key_sig(p, le, lock) == self.key_sig(p, re, read)
    }

    /// Event index of the COMMIT that makes event `e`'s writes durable, or
    /// `None` when they never commit on this path.
    fn commit_of(&self, p: &Path, e: usize) -> Option<usize> {
        let ev = &p.events[e];
        if !ev.in_tx {
            let f = self.facts(p, e);
            // An autocommit BEGIN opens a transaction: its writes are none.
            return (!matches!(f.kind, Kind::Begin(_))).then_some(e);
        }
        for (i, later) in p.events.iter().enumerate().skip(e + 1) {
            if later.tx != ev.tx {
                return None;
            }
            match self.facts(p, i).kind {
                Kind::Commit { .. } => return Some(i),
                Kind::Rollback { .. } => return None,
                _ => {}
            }
        }
        None
    }

    /// How the read `reads[read]` of event `re` is protected for a write at
    /// event `we` that commits at event `ce`; `None`: it is not.
    fn protected(&self, p: &Path, re: usize, read: usize, we: usize, ce: usize) -> Option<String> {
        let rf = self.facts(p, re);
        let r = &rf.reads[read];
        let rev = &p.events[re];
        let same_tx = |e: usize| p.events[e].in_tx && p.events[e].tx == rev.tx;
        let lines = |e: usize| self.line(p, e);
        // A row lock the read itself takes.
        if let Some(l) = r.lock {
            let lock = &rf.row_locks[l];
            // Held until the write commits: the same transaction, or the
            // same statement (a locking CTE of an autocommit UPDATE).
            let held = re == we || (rev.in_tx && p.events[we].tx == rev.tx);
            if held && lock.strength.blocks_updates() {
                let shared = r.rows.key.iter().all(|(_, o)| self.shared(p, re, o));
                if shared {
                    return Some(format!(
                        "line {} reads it {} in the transaction that writes it",
                        lines(re),
                        lock.strength.as_str()
                    ));
                }
            }
        }
        if rev.in_tx && p.events[we].tx == rev.tx {
            // A lock taken earlier in the same transaction.
            for e in (0..re).rev() {
                if !same_tx(e) {
                    break;
                }
                let f = self.facts(p, e);
                for lr in f.reads.iter() {
                    let Some(l) = lr.lock else { continue };
                    if lr.table == r.table
                        && f.row_locks[l].strength.blocks_updates()
                        && self.covers(p, e, &lr.rows, re, &r.rows)
                    {
                        return Some(format!(
                            "line {} locks the row ({}) before line {} reads it",
                            lines(e),
                            f.row_locks[l].strength.as_str(),
                            lines(re)
                        ));
                    }
                }
                for w in &f.writes {
                    if w.table == r.table
                        && w.op != WriteOp::Insert
                        && self.covers(p, e, &w.rows, re, &r.rows)
                    {
                        return Some(format!(
                            "line {} writes (and so locks) the row before line {} reads it",
                            lines(e),
                            lines(re)
                        ));
                    }
                }
                for t in &f.table_locks {
                    if t.tables.contains(&r.table) && t.blocks_writes {
                        return Some(format!(
                            "line {} locks the table {} IN {} MODE before line {} reads it",
                            lines(e),
                            r.table,
                            t.mode,
                            lines(re)
                        ));
                    }
                }
            }
            // The isolation level.
            match rev.iso {
                Isolation::Serializable => {
                    return Some(format!(
                        "line {} reads at SERIALIZABLE: PostgreSQL aborts (40001) a transaction whose result could differ from a serial order, and racelab retries it",
                        lines(re)
                    ))
                }
                Isolation::RepeatableRead => {
                    // A read-modify-write of the same row aborts the later
                    // writer; write skew across rows is not caught.
                    for e in re..=ce {
                        if !same_tx(e) {
                            continue;
                        }
                        let f = self.facts(p, e);
                        for w in &f.writes {
                            if w.table == r.table
                                && w.op != WriteOp::Insert
                                && self.key_sig(p, e, &w.rows) == self.key_sig(p, re, &r.rows)
                                && !w.rows.key.is_empty()
                            {
                                return Some(format!(
                                    "line {} reads at REPEATABLE READ and line {} writes the same row in that transaction: the later writer fails with 40001 and racelab retries",
                                    lines(re),
                                    lines(e)
                                ));
                            }
                        }
                    }
                }
                Isolation::ReadCommitted => {}
            }
        }
        // An advisory lock every buyer of the product takes first.
        for e in 0..=re {
            let f = self.facts(p, e);
            for (ci, a) in f.advisory.iter().enumerate() {
                if a.action != AdvisoryAction::Lock || a.shared {
                    continue;
                }
                if a.try_only && !p.acquired.contains(&(e, ci)) {
                    continue;
                }
                if !a.key.iter().all(|k| self.shared(p, e, k)) {
                    continue;
                }
                let held = match a.scope {
                    AdvisoryScope::Xact => {
                        p.events[e].in_tx
                            && p.events[e].tx == rev.tx
                            && rev.in_tx
                            && p.events[we].tx == rev.tx
                    }
                    AdvisoryScope::Session => {
                        // Held until an unlock: it must come after the
                        // write's COMMIT.
                        !(e + 1..=ce).any(|u| {
                            self.facts(p, u).advisory.iter().any(|x| {
                                x.action == AdvisoryAction::UnlockAll
                                    || (x.action == AdvisoryAction::Unlock
                                        && x.key.len() == a.key.len())
                            })
                        })
                    }
                };
                if held {
                    return Some(format!(
                        "line {} takes {}() on a key every buyer of the product shares, before line {} reads",
                        lines(e),
                        a.function,
                        lines(re)
                    ));
                }
            }
        }
        // A Redis lock every buyer of the product takes first.
        for &(c, before) in &p.redis_locks {
            let cmd = &self.prog.redis[c];
            if before <= re && cmd.key_is_shared() {
                return Some(format!(
                    "line {} holds a Redis lock (SET NX) on a key every buyer of the product shares, before line {} reads",
                    cmd.line,
                    lines(re)
                ));
            }
        }
        None
    }

    /// Whether the zero-row case of write `w` at event `e` is handled: the
    /// next instructions, with `:rows = 0`, end the try or roll back.
    fn zero_rows_handled(&self, p: &Path, e: usize, w: usize) -> bool {
        let f = self.facts(p, e);
        let st = &self.prog.stmts[p.events[e].stmt];
        if f.rows_from == Some(w) && st.gset.is_some() {
            // `\gset` of no row is an error: the try ends there.
            return true;
        }
        // With the write matching nothing: `:rows` (when it counts this
        // write) and every `\gset` value taken from its rows are 0, and the
        // quantity is at least 1.
        let mut known: Vec<(usize, i64)> = vec![(QTY, 1)];
        if f.rows_from == Some(w) {
            known.push((ROWS, 0));
        }
        if let (Some(cols), Some(outputs)) =
            (st.gset.as_ref().and_then(|g| g.cols.as_ref()), &f.outputs)
        {
            for ((_, slot), o) in cols.iter().zip(outputs) {
                if o.sources.contains(&Source::Write(w)) {
                    known.push((*slot, 0));
                }
            }
        }
        let mut pc = p.events[e].pc + 1;
        for _ in 0..self.prog.instrs.len() + 1 {
            match self.prog.instrs.get(pc) {
                None => return false,
                Some(Instr::SoldOut { .. } | Instr::Retry { .. }) => return true,
                Some(Instr::Sql(i)) => {
                    return matches!(
                        self.prog.stmts[*i].facts.kind,
                        Kind::Rollback { chain: false }
                    )
                }
                Some(Instr::Jump(t)) => pc = *t,
                Some(Instr::JumpUnless { cond, target, .. }) => match eval_with(cond, &known) {
                    Some(0) => pc = *target,
                    Some(_) => pc += 1,
                    None => return false,
                },
                Some(_) => pc += 1,
            }
        }
        false
    }

    /// Whether anything else is written when write `w` of event `e`
    /// matches no row: another write of the statement not fed by it, or a
    /// write reachable after it.
    fn goes_on(&self, p: &Path, e: usize, w: usize) -> Option<usize> {
        let f = self.facts(p, e);
        let line = self.line(p, e);
        // Another write of the statement goes on unless it takes its rows
        // from this one (INSERT ... SELECT ... FROM the CTE).
        let fed = |j: usize| f.rows_from == Some(w) && f.writes[j].cte.is_none();
        if (0..f.writes.len()).any(|j| j != w && !fed(j)) {
            return Some(line);
        }
        let pc = p.events[e].pc;
        self.reach
            .get(pc + 1)?
            .iter()
            .filter(|&&i| i > pc)
            .find_map(|&i| match &self.prog.instrs[i] {
                Instr::Sql(s) if !self.prog.stmts[*s].facts.writes.is_empty() => {
                    Some(self.prog.stmts[*s].line)
                }
                _ => None,
            })
    }

    /// Whether write `w` at event `e` has a guard that makes its zero-row
    /// case a refusal: handled, or nothing else goes on.
    fn guard_effective(&self, p: &Path, e: usize, w: usize) -> Result<(), usize> {
        if self.zero_rows_handled(p, e, w) {
            return Ok(());
        }
        match self.goes_on(p, e, w) {
            None => Ok(()),
            Some(l) => Err(l),
        }
    }

    /// Whether any statement of the script writes `table`.
    fn table_written(&self, table: &str) -> bool {
        self.prog
            .stmts
            .iter()
            .any(|s| s.facts.writes.iter().any(|w| w.table == table))
    }

    /// Columns the script assigns on `table`, anywhere.
    fn assigned(&self, table: &str, column: &str) -> bool {
        self.prog.stmts.iter().any(|s| {
            s.facts.writes.iter().any(|w| {
                w.table == table
                    && (w.assigns.iter().any(|a| a.column == column) || w.op == WriteOp::Delete)
            })
        })
    }

    /// A CHECK constraint from `\setup` that keeps `table.column` from going
    /// below zero.
    fn constraint_bounds(&self, table: &str, column: &str) -> Option<usize> {
        let mut found: Option<(Option<String>, usize)> = None;
        for s in &self.prog.setup {
            for c in &s.facts.constraints {
                match c {
                    Constraint::Check {
                        table: t,
                        name,
                        conjuncts,
                        ..
                    } if t == table => {
                        let bounds = conjuncts.iter().any(|k| {
                            if !k.bounds_below(table, column) {
                                return false;
                            }
                            let (other, strict) = match k.op {
                                Cmp::Ge => (&k.right, false),
                                Cmp::Gt => (&k.right, true),
                                Cmp::Le => (&k.left, false),
                                _ => (&k.left, true),
                            };
                            let side_is_col = match k.op {
                                Cmp::Ge | Cmp::Gt => &k.left,
                                _ => &k.right,
                            };
                            // `stock >= 0`, `stock > -1`: the column alone
                            // against a constant that is not below zero.
                            side_is_col.cols.len() == 1
                                && side_is_col.vars.is_empty()
                                && other
                                    .expr
                                    .as_ref()
                                    .and_then(|x| eval_with(x, &[]))
                                    .is_some_and(|v| if strict { v >= -1 } else { v >= 0 })
                        });
                        if bounds {
                            found = Some((name.clone(), s.line));
                        }
                    }
                    Constraint::Drop { table: t, name }
                        if t == table
                            && found
                                .as_ref()
                                .is_some_and(|(n, _)| n.as_deref() == Some(name)) =>
                    {
                        found = None;
                    }
                    _ => {}
                }
            }
        }
        found.map(|(_, l)| l)
    }

    /// The decisions of the path that guard the instruction at `pc`: one
    /// side of them reaches it, the other does not.
    fn guarding<'a>(&self, p: &'a Path, pc: usize, before: usize) -> Vec<&'a Decision> {
        p.decisions
            .iter()
            .filter(|d| d.before_event <= before)
            .filter(|d| {
                let Instr::JumpUnless { target, .. } = &self.prog.instrs[d.pc] else {
                    return false;
                };
                let a = self.reach[d.pc + 1].contains(&pc);
                let b = self.reach.get(*target).is_some_and(|r| r.contains(&pc));
                a != b
            })
            .collect()
    }

    fn path(&mut self, p: &Path) {
        self.redis(p);
        for e in 0..p.events.len() {
            let f = self.facts(p, e).clone();
            if f.writes.is_empty() {
                continue;
            }
            let Some(ce) = self.commit_of(p, e) else {
                continue;
            };
            let wline = self.line(p, e);
            for wi in 0..f.writes.len() {
                self.write(p, e, ce, wi, &f, wline);
            }
            // Is the transaction claimed by a write that refuses itself
            // (guard with zero rows handled, constraint)? Then the other
            // writes of the transaction stand or fall with it.
            let mut claimed = false;
            let tx = p.events[e].tx;
            let tx_events: Vec<usize> = (0..=ce)
                .filter(|&i| p.events[i].tx == tx && (p.events[e].in_tx || i == e))
                .collect();
            for &i in &tx_events {
                let fi = self.facts(p, i).clone();
                for (wi, _) in fi.writes.iter().enumerate() {
                    if self.self_refusing(p, i, wi, &fi) {
                        claimed = true;
                    }
                }
            }
            // Decisions guarding this statement.
            let pc = p.events[e].pc;
            let guards: Vec<Decision> = self.guarding(p, pc, e).into_iter().cloned().collect();
            for d in guards {
                for dep in &d.deps {
                    let Dep::Read { event: re, read } = dep else {
                        if let Dep::Unknown(l) = dep {
                            self.unsure(
                                vec![*l, d.line],
                                format!("the decision at line {} rests on line {l}, which racelab cannot read", d.line),
                            );
                        }
                        continue;
                    };
                    match self.protected(p, *re, *read, e, ce) {
                        Some(why) => {
                            let only_unchanged = d.deps.iter().all(|x| match x {
                                Dep::Read { event, read } => {
                                    !self.table_written(&self.facts(p, *event).reads[*read].table)
                                }
                                _ => true,
                            });
                            if only_unchanged && !claimed {
                                self.unsafe_(
                                    vec![self.line(p, *re), d.line],
                                    format!(
                                        "the check at line {} rests only on tables no buyer ever changes: every buyer passes it (oversell)",
                                        d.line
                                    ),
                                );
                            } else {
                                self.safe(vec![self.line(p, *re), d.line], why);
                            }
                        }
                        None if claimed => {}
                        None => {
                            let rl = self.line(p, *re);
                            let table = self.facts(p, *re).reads[*read].table.clone();
                            self.unsafe_(
                                vec![rl, d.line],
                                format!(
                                    "the check at line {} rests on {table} as line {rl} read it, and nothing stops another buyer from changing it before this buyer commits: both buyers pass the same check (oversell)",
                                    d.line
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    /// A write that refuses itself: a relative decrement bounded by a WHERE
    /// guard (zero rows handled) or a constraint, or a WHERE guard on a
    /// value read with the zero-row case handled.
    fn self_refusing(&self, p: &Path, e: usize, wi: usize, f: &Facts) -> bool {
        let w = &f.writes[wi];
        let guarded = w.rows.filter.iter().any(|c| {
            w.assigns
                .iter()
                .any(|a| c.bounds_below(&w.table, &a.column))
                || (c.op == Cmp::Eq
                    && [&c.left, &c.right].iter().any(|o| {
                        o.cols
                            .iter()
                            .any(|col| self.assigned(&w.table, &col.column))
                    }))
        });
        let constrained = w.assigns.iter().any(|a| {
            matches!(a.value, Value::Relative { sign: -1, .. })
                && self.constraint_bounds(&w.table, &a.column).is_some()
        });
        constrained || (guarded && self.zero_rows_handled(p, e, wi))
    }

    fn write(&mut self, p: &Path, e: usize, ce: usize, wi: usize, f: &Facts, wline: usize) {
        let w = &f.writes[wi];
        for a in &w.assigns {
            let mut deps = Origin::new();
            match &a.value {
                Value::Variables { vars, .. } => {
                    for v in vars {
                        deps.extend(p.events[e].vars[*v].iter().cloned());
                    }
                }
                Value::Rows { sources, vars } => {
                    for s in sources {
                        deps.insert(source_dep(e, s));
                    }
                    for v in vars {
                        deps.extend(p.events[e].vars[*v].iter().cloned());
                    }
                }
                Value::Relative { sign, .. } => {
                    if *sign < 0 && w.op == WriteOp::Update {
                        self.decrement(p, e, ce, wi, f, &a.column, &a.text, wline);
                    }
                    continue;
                }
                Value::Row => {
                    if w.op == WriteOp::Update {
                        self.unsure(
                            vec![wline],
                            format!(
                                "line {wline} sets {} = {} from the row in a way racelab does not follow (is it bounded?)",
                                a.column, a.text
                            ),
                        );
                    }
                    continue;
                }
                Value::Constant(_) => continue,
            }
            if w.op == WriteOp::Insert {
                // A new row loses no other buyer's update.
                continue;
            }
            for dep in &deps {
                match dep {
                    Dep::Read { event: re, read } => {
                        let rl = self.line(p, *re);
                        if let Some(why) = self.protected(p, *re, *read, e, ce) {
                            let table = self.facts(p, *re).reads[*read].table.clone();
                            if self.table_written(&table) {
                                self.safe(vec![rl, wline], why);
                            } else {
                                self.unsafe_(
                                    vec![rl, wline],
                                    format!(
                                        "line {wline} writes {}.{} = {} from {table} as line {rl} read it, but no buyer ever changes {table}: every buyer computes from the same value, and each overwrites the others (lost updates)",
                                        w.table, a.column, a.text
                                    ),
                                );
                            }
                            continue;
                        }
                        // A WHERE guard comparing the written rows with
                        // what was read.
                        match self.cas_guard(p, e, wi, *re, *read) {
                            Some(Ok(col)) => {
                                self.safe(
                                    vec![rl, wline],
                                    format!(
                                        "line {wline} writes only if {col} is still the value line {rl} read, and the zero-row case is handled: a stale write lands nowhere"
                                    ),
                                );
                            }
                            Some(Err(later)) => self.unsafe_(
                                vec![rl, wline, later],
                                format!(
                                    "line {wline} checks what line {rl} read in its WHERE, but when that matches no row the purchase goes on (line {later} writes anyway): handle `:rows = 0` with \\retry or \\sold_out"
                                ),
                            ),
                            None => {
                                let table = self.facts(p, *re).reads[*read].table.clone();
                                self.unsafe_(
                                    vec![rl, wline],
                                    format!(
                                        "P4 lost update: line {wline} writes {}.{} = {} from {table} as line {rl} read it, and nothing stops another buyer from committing in between: its update is overwritten",
                                        w.table, a.column, a.text
                                    ),
                                );
                            }
                        }
                    }
                    Dep::Unknown(l) => self.unsure(
                        vec![*l, wline],
                        format!(
                            "line {wline} writes a value from line {l}, which racelab cannot read"
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }

    /// `Some(Ok(column))`: write `wi` of event `e` compares a column every
    /// successful buyer changes with the value `reads[read]` of event `re`
    /// read from it, on the same rows, with the zero-row case effective;
    /// `Some(Err(line))`: it does, but the purchase goes on at `line`.
    fn cas_guard(
        &self,
        p: &Path,
        e: usize,
        wi: usize,
        re: usize,
        read: usize,
    ) -> Option<Result<String, usize>> {
        let f = self.facts(p, e);
        let w = &f.writes[wi];
        let r = &self.facts(p, re).reads[read];
        if r.table != w.table || self.key_sig(p, e, &w.rows) != self.key_sig(p, re, &r.rows) {
            return None;
        }
        let from_read = |o: &Operand| {
            o.cols.is_empty()
                && o.vars
                    .iter()
                    .any(|v| p.events[e].vars[*v].contains(&Dep::Read { event: re, read }))
        };
        let col = w.rows.filter.iter().find_map(|c| {
            if c.op != Cmp::Eq {
                return None;
            }
            let (colside, valside) = if from_read(&c.right) {
                (&c.left, &c.right)
            } else if from_read(&c.left) {
                (&c.right, &c.left)
            } else {
                return None;
            };
            let _ = valside;
            let name = col_name(colside);
            (colside.cols.len() == 1 && self.assigned(&w.table, &name)).then_some(name)
        })?;
        Some(self.guard_effective(p, e, wi).map(|()| col))
    }

    /// What the path's Redis commands do on their own: a lost update in
    /// Redis, and a lock whose TTL can run out under its holder.
    fn redis(&mut self, p: &Path) {
        for &(g, w) in &p.redis_lost {
            let (g, w) = (&self.prog.redis[g], &self.prog.redis[w]);
            self.unsafe_(
                vec![g.line, w.line],
                format!(
                    "lost update in Redis: line {} sets the key ({}) from what line {} read ({}), and nothing stops another buyer's write in between: it is overwritten",
                    w.line, w.name, g.line, g.name
                ),
            );
        }
    }

    /// A Redis lock whose TTL can run out under its holder, with the
    /// `\sleep`s any path reaches while holding it.
    fn redis_locks(&mut self, paths: &[Path]) {
        let mut locks: BTreeSet<usize> = BTreeSet::new();
        let mut sleeps: BTreeSet<(usize, usize)> = BTreeSet::new();
        for p in paths {
            locks.extend(p.redis_locks.iter().map(|(c, _)| *c));
            sleeps.extend(p.redis_lock_sleeps.iter().copied());
        }
        for c in locks {
            let cmd = &self.prog.redis[c];
            let RedisEffect::Lock { ttl: Some(ttl) } = cmd.effect() else {
                continue;
            };
            let held: Vec<usize> = sleeps
                .iter()
                .filter(|(l, _)| *l == c)
                .map(|(_, line)| *line)
                .collect();
            let mut lines = vec![cmd.line];
            lines.extend(&held);
            let held = match held.as_slice() {
                [] => String::new(),
                [one] => format!(", and line {one} sleeps while holding it"),
                more => format!(
                    ", and lines {} sleep while holding it",
                    more.iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.unsure(
                lines,
                format!(
                    "the Redis lock of line {} expires after {ttl}{held}: a holder still running past it shares the product with the next buyer to take the lock, since nothing fences it (safe only while the body stays under the TTL)",
                    cmd.line
                ),
            );
        }
    }

    /// A relative decrement: bounded by its WHERE, a constraint, or a
    /// protected check?
    #[allow(clippy::too_many_arguments)]
    fn decrement(
        &mut self,
        p: &Path,
        e: usize,
        ce: usize,
        wi: usize,
        f: &Facts,
        column: &str,
        text: &str,
        wline: usize,
    ) {
        let w = &f.writes[wi];
        let by = w
            .assigns
            .iter()
            .find(|a| a.column == column)
            .and_then(|a| match &a.value {
                Value::Relative { sign: -1, by } => by.as_ref(),
                _ => None,
            });
        let bounds: Vec<(&Comparison, Bound)> = w
            .rows
            .filter
            .iter()
            .filter(|c| c.bounds_below(&w.table, column))
            .map(|c| (c, bound_of(c, column, by)))
            .collect();
        let strongest = bounds
            .iter()
            .find(|(_, b)| *b == Bound::Always)
            .or_else(|| bounds.iter().find(|(_, b)| matches!(b, Bound::UpTo(_))))
            .or_else(|| bounds.iter().find(|(_, b)| *b == Bound::Unknown))
            .or_else(|| bounds.first());
        match strongest {
            Some((g, Bound::UpTo(n))) => {
                self.unsure(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} only WHERE {}: that stops at zero only while the quantity is at most {n}; above it stock goes below zero (guard with `{column} >= :qty`)",
                        g.text
                    ),
                );
                return;
            }
            Some((g, Bound::Unknown)) => {
                self.unsure(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} only WHERE {}, and racelab cannot tell whether that keeps it from going below zero (guard with `{column} >= :qty`)",
                        g.text
                    ),
                );
                return;
            }
            Some((g, Bound::Never)) if self.constraint_bounds(&w.table, column).is_none() => {
                self.unsafe_(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} only WHERE {}, which lets the last units go below zero: stock is oversold (guard with `{column} >= :qty`)",
                        g.text
                    ),
                );
                return;
            }
            _ => {}
        }
        if let Some((g, _)) = strongest.filter(|(_, b)| *b == Bound::Always) {
            match self.guard_effective(p, e, wi) {
                Ok(()) => self.safe(
                    vec![wline],
                    format!(
                        "line {wline} decrements {column} relative to the row and only WHERE {}: re-checked on the latest row version, no row means no sale",
                        g.text
                    ),
                ),
                Err(later) => self.unsafe_(
                    vec![wline, later],
                    format!(
                        "line {wline} decrements only WHERE {}, but when that matches no row the purchase goes on (line {later} writes anyway): handle `:rows = 0` with \\sold_out",
                        g.text
                    ),
                ),
            }
            return;
        }
        if let Some(l) = self.constraint_bounds(&w.table, column) {
            self.safe(
                vec![l, wline],
                format!(
                    "line {wline} decrements {column} relative to the row, and the CHECK constraint of line {l} refuses a value below zero (23514: the attempt is rejected)"
                ),
            );
            return;
        }
        // A check before it, on a value no other buyer can change.
        let pc = p.events[e].pc;
        let guards: Vec<Decision> = self.guarding(p, pc, e).into_iter().cloned().collect();
        let mut stale: Option<(usize, usize)> = None;
        // A check against the quantity on values no other buyer can change
        // before this one commits (protected reads or claimed rows).
        for d in guards.iter().filter(|d| d.uses_qty) {
            let mut why: Vec<String> = Vec::new();
            let all = d.deps.iter().all(|dep| match dep {
                Dep::Builtin(_) | Dep::Write { .. } => true,
                Dep::Read { event: re, read } => match self.protected(p, *re, *read, e, ce) {
                    Some(w) => {
                        why.push(w);
                        true
                    }
                    None => false,
                },
                _ => false,
            });
            if all && !why.is_empty() {
                self.safe(
                    vec![d.line, wline],
                    format!(
                        "line {wline} decrements {column} only after the check at line {} on values no other buyer can change first ({})",
                        d.line,
                        why.join("; ")
                    ),
                );
                return;
            }
        }
        let mut redis_read: Option<(usize, usize)> = None;
        let mut redis_opaque: Option<(usize, usize)> = None;
        for d in &guards {
            for dep in &d.deps {
                match dep {
                    Dep::Redis { cmd } => {
                        let c = &self.prog.redis[*cmd];
                        match c.effect() {
                            RedisEffect::Count(_) => {
                                self.safe(
                                    vec![c.line, d.line, wline],
                                    format!(
                                        "line {wline} decrements {column} only after the check at line {} on the reply of an atomic Redis {} (line {}): each buyer's reply counts a different unit, so no more buyers pass than the counter holds (racelab seeds it from the database's stock, and the audit's cache_drift holds the two against each other)",
                                        d.line, c.name, c.line
                                    ),
                                );
                                return;
                            }
                            RedisEffect::Read => redis_read = Some((c.line, d.line)),
                            _ => redis_opaque = Some((*cmd, d.line)),
                        }
                    }
                    Dep::Write { .. } if d.uses_qty => {
                        self.safe(
                            vec![d.line, wline],
                            format!(
                                "line {wline} decrements {column} only after the check at line {} on rows this buyer claimed (no other buyer can claim them too)",
                                d.line
                            ),
                        );
                        return;
                    }
                    Dep::Read { event: re, read } => {
                        let r = &self.facts(p, *re).reads[*read];
                        if r.table != w.table || !r.columns.iter().any(|c| c == column) {
                            continue;
                        }
                        match self.protected(p, *re, *read, e, ce) {
                            Some(why) => {
                                self.safe(vec![self.line(p, *re), d.line, wline], why);
                                return;
                            }
                            None => stale = Some((self.line(p, *re), d.line)),
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some((rl, dl)) = redis_read {
            self.unsafe_(
                vec![rl, dl, wline],
                format!(
                    "line {rl} reads the stock from Redis (GET), line {dl} checks it, line {wline} decrements {column}: the read is not atomic with anything after it, so every buyer that checks before the others write passes (oversold)"
                ),
            );
            return;
        }
        if let Some((c, dl)) = redis_opaque {
            let c = &self.prog.redis[c];
            self.unsure(
                vec![c.line, dl, wline],
                format!(
                    "line {wline} decrements {column} only after the check at line {dl} on the reply of Redis {} (line {}), which racelab does not read: whether it gates the stock is for the race, and its cache_drift audit, to show",
                    c.name, c.line
                ),
            );
            return;
        }
        match stale {
            Some((rl, dl)) => self.unsafe_(
                vec![rl, dl, wline],
                format!(
                    "line {rl} reads {column} without a lock, line {dl} checks it, line {wline} decrements it ({column} = {text}): every buyer that checks before the others commit passes, so stock is oversold (no drift: no update is lost)"
                ),
            ),
            None => self.unsafe_(
                vec![wline],
                format!(
                    "line {wline} decrements {}.{column} ({column} = {text}) with no WHERE guard, no constraint and no protected check: stock goes below zero",
                    w.table
                ),
            ),
        }
    }
}

/// How far a WHERE conjunct keeps a column from going below zero when the
/// row is decremented by `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// For every quantity: `stock >= :qty`, `stock - :qty >= 0`.
    Always,
    /// Only while the quantity is at most this: `stock > 0` holds stock at
    /// zero for one unit at a time.
    UpTo(i64),
    /// For no quantity: `stock >= 0` lets the last unit go below zero.
    Never,
    /// The conjunct is not about the column, or racelab cannot evaluate it.
    Unknown,
}

/// Largest quantity and stock `bound_of` tries.
const QTY_MAX: i64 = 64;
const STOCK_MAX: i64 = 256;

/// Whether the conjunct `c` of an UPDATE that sets `column = column - by`
/// keeps `column` at zero or above, decided by evaluating both with every
/// quantity 1..=QTY_MAX and stock -QTY_MAX..=STOCK_MAX: guards are checked
/// for what they do, not for how they are written.
fn bound_of(c: &Comparison, column: &str, by: Option<&crate::strategy::Expr>) -> Bound {
    let (Some((l, lnames)), Some((r, rnames))) = (&c.left.with_columns, &c.right.with_columns)
    else {
        return Bound::Unknown;
    };
    if !lnames.iter().chain(rnames).any(|n| n == column) {
        return Bound::Unknown;
    }
    let Some(by) = by else {
        return Bound::Unknown;
    };
    let side = |x: &crate::strategy::Expr, names: &[String], stock: i64, qty: i64| {
        use rand::SeedableRng;
        let get = |slot: usize| {
            if slot >= COLUMN_SLOT {
                return match names.get(slot - COLUMN_SLOT) {
                    Some(n) if n == column => Ok(stock),
                    _ => Err(crate::strategy::EvalError::Unset(slot)),
                };
            }
            if slot == QTY {
                Ok(qty)
            } else {
                Err(crate::strategy::EvalError::Unset(slot))
            }
        };
        x.eval(&get, &mut rand::rngs::SmallRng::seed_from_u64(0))
            .ok()
    };
    let mut safe_upto: Option<i64> = None;
    let mut unsafe_at: Option<i64> = None;
    for qty in 1..=QTY_MAX {
        let Some(d) = eval_with(by, &[(QTY, qty)]) else {
            return Bound::Unknown;
        };
        let mut violated = false;
        for stock in -QTY_MAX..=STOCK_MAX {
            let (Some(a), Some(b)) = (side(l, lnames, stock, qty), side(r, rnames, stock, qty))
            else {
                return Bound::Unknown;
            };
            let holds = match c.op {
                Cmp::Eq => a == b,
                Cmp::Ne => a != b,
                Cmp::Lt => a < b,
                Cmp::Le => a <= b,
                Cmp::Gt => a > b,
                Cmp::Ge => a >= b,
            };
            if holds && stock.checked_sub(d).map_or(true, |left| left < 0) {
                violated = true;
                break;
            }
        }
        if violated {
            unsafe_at.get_or_insert(qty);
        } else if unsafe_at.is_some() {
            // Safe again above an unsafe quantity: no simple rule.
            return Bound::Unknown;
        } else {
            safe_upto = Some(qty);
        }
    }
    match (safe_upto, unsafe_at) {
        (_, None) => Bound::Always,
        (None, Some(_)) => Bound::Never,
        (Some(n), Some(_)) => Bound::UpTo(n),
    }
}

fn col_name(o: &Operand) -> String {
    o.cols.first().map(|c| c.column.clone()).unwrap_or_default()
}
