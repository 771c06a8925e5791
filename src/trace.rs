//! `--trace`: turn the engine's recorded events into a timeline and find the
//! anomalies in it — from the events themselves, never from the strategy's
//! name. Each try of each attempt becomes a session of statements with the
//! items they read and write, on any table and column, from the
//! statements' facts (`strategy::facts`): the rows a SELECT reads (with the
//! value `\gset` kept), the rows an UPDATE's SET or an INSERT writes (with
//! their keys evaluated from the values the trace recorded), transaction
//! boundaries and isolation levels. `anomaly` then names P4 lost updates,
//! G-single read skew, G2-item and predicate write skew, and purchases
//! split across transactions (see its docs: it is a clean function over
//! such sessions, whatever recorded them). Waits are statements that ended
//! only after another buyer's COMMIT or ROLLBACK released its locks.
//!
//! The timeline's roles follow the column the audit counts,
//! `products.stock`: a read is a `\gset` of it whatever the variable is
//! called, a write an UPDATE that assigns it. The value a write committed
//! ("stock := 0") is not read back from the server: it is the script's own
//! expression (`:stock - :qty`) evaluated by the script language's
//! evaluator with the values the trace recorded (`\gset`, `\set`) and the
//! attempt's built-ins. That keeps the traced path identical to the
//! untraced one.

pub mod anomaly;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::engine::AttemptTrace;
use crate::outcome::Outcome;
use crate::strategy::facts::{
    Assign, Facts, IsoTarget, IsoValue, Isolation, Kind, Operand, Rows as FactRows, Source, Value,
    WriteOp,
};
use crate::strategy::{EvalError, Program, Stmt, TraceKind, ATTEMPT, BUYER, PRODUCT, QTY, TRY};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// Most buyers a traced run may have: beyond that a timeline is unreadable.
pub const MAX_TRACED_BUYERS: u32 = 50;
/// A statement shorter than this is not called a wait.
const WAIT_MIN_US: u64 = 1_000;

/// What a step of the timeline means for the race.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// Read the product's stock into a variable.
    Read {
        value: i64,
        locking: bool,
    },
    /// Wrote the product's stock: the value when known, else the expression.
    Write {
        value: Option<i64>,
        expr: String,
    },
    /// A write statement that matched no row.
    NoWrite,
    /// The transaction committed (for an autocommit write: the write itself).
    Commit {
        stock: Option<String>,
    },
    Other,
}

/// One recorded event, with times relative to the release of the buyers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub buyer: u32,
    pub attempt: i64,
    #[serde(rename = "try")]
    pub try_no: u32,
    pub product: i64,
    pub start_us: u64,
    pub end_us: u64,
    pub line: usize,
    pub kind: &'static str,
    pub what: String,
    pub rows: Option<u64>,
    pub values: Vec<(String, String)>,
    pub error: Option<String>,
    pub outcome: Option<Outcome>,
    #[serde(flatten)]
    pub role: Role,
    /// The buyer whose COMMIT/ROLLBACK this statement waited for.
    pub waited_for: Option<u32>,
}

/// An anomaly found in the events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// `P4 lost update`, `G-single read skew`, `G2-item write skew`, `G2
    /// anti-dependency cycle (predicate)`, `split transaction`.
    pub name: &'static str,
    /// The weakest PostgreSQL isolation level that prevents it; `None` for
    /// a split transaction, which no level prevents.
    pub prevented_at: Option<&'static str>,
    pub product: i64,
    pub buyer: u32,
    pub attempt: i64,
    /// What the stale read read, e.g. `products.stock (id = 1)`.
    pub item: String,
    /// The value read, when it is an integer the script kept.
    pub read_value: Option<i64>,
    pub read_us: u64,
    /// When the COMMIT (or the autocommit write) was sent; like every time
    /// here, in µs since the release and as the timeline shows it.
    pub commit_us: u64,
    /// What this buyer committed, e.g. `stock := 0`.
    pub committed: Option<String>,
    /// Buyers whose committed writes this one did not see: (buyer, commit time, what).
    pub overtaken_by: Vec<(u32, u64, Option<String>)>,
}

/// The analysed trace of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub strategy: String,
    pub steps: Vec<Step>,
    pub anomalies: Vec<Anomaly>,
}

impl Timeline {
    pub fn waits(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.waited_for.is_some())
    }
}

fn kind_name(k: TraceKind) -> &'static str {
    match k {
        TraceKind::Sql => "sql",
        TraceKind::Redis => "redis",
        TraceKind::Set => "set",
        TraceKind::Sleep => "sleep",
        TraceKind::Meta => "meta",
        TraceKind::Rollback => "rollback",
        TraceKind::Backoff => "backoff",
        TraceKind::Outcome => "outcome",
    }
}

/// The column the audit counts (DESIGN §3): the timeline's roles follow
/// reads and writes of it, whatever the variables are called.
const STOCK: (&str, &str) = ("products", "stock");

/// What the facts of one statement say about the stock.
struct StockFacts {
    /// The `\gset` variable that receives `products.stock`, and whether the
    /// read locks the row.
    read: Option<(String, bool)>,
    /// The write of `products.stock`: its index among the statement's
    /// writes, and the assignment.
    write: Option<(usize, Assign)>,
}

fn stock_facts(program: &Program, st: &Stmt) -> StockFacts {
    let f = &st.facts;
    let read = st
        .gset
        .as_ref()
        .and_then(|g| g.cols.as_ref())
        .and_then(|cols| {
            let outputs = f.outputs.as_ref()?;
            cols.iter().zip(outputs).find_map(|((_, slot), o)| {
                o.sources.iter().find_map(|s| match s {
                    Source::Read {
                        read,
                        column: Some(c),
                    } if f.reads[*read].table == STOCK.0 && c == STOCK.1 => {
                        Some((program.vars[*slot].clone(), f.reads[*read].lock.is_some()))
                    }
                    _ => None,
                })
            })
        });
    let write = f.writes.iter().enumerate().find_map(|(i, w)| {
        (w.table == STOCK.0 && w.op == WriteOp::Update)
            .then(|| w.assigns.iter().find(|a| a.column == STOCK.1))
            .flatten()
            .map(|a| (i, a.clone()))
    });
    StockFacts { read, write }
}

/// What a try knows while it runs: its built-ins and the values the trace
/// recorded so far (`\gset`, `\set`).
struct Known<'a> {
    program: &'a Program,
    t: &'a AttemptTrace,
    try_no: u32,
    qty: i64,
    vars: &'a [(String, String)],
}

impl Known<'_> {
    /// A script expression's value, by the script language's evaluator.
    fn eval(&self, e: &crate::strategy::Expr) -> Option<i64> {
        let get = |slot: usize| -> Result<i64, EvalError> {
            match slot {
                PRODUCT => Ok(self.t.product),
                QTY => Ok(self.qty),
                BUYER => Ok(i64::from(self.t.buyer)),
                ATTEMPT => Ok(self.t.attempt),
                TRY => Ok(i64::from(self.try_no)),
                _ => {
                    let name = self.program.vars.get(slot).ok_or(EvalError::Unset(slot))?;
                    self.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .ok_or(EvalError::Unset(slot))
                }
            }
        };
        e.eval(&get, &mut SmallRng::seed_from_u64(0)).ok()
    }

    /// An operand's value as text: evaluated, or a literal as written.
    fn value(&self, o: &Operand) -> Option<String> {
        if let Some(e) = &o.expr {
            return self.eval(e).map(|v| v.to_string());
        }
        (o.vars.is_empty() && o.cols.is_empty() && o.sources.is_empty() && !o.text.is_empty())
            .then(|| o.text.clone())
    }

    /// The rows a read or write picks: the key columns whose values are
    /// known (an unknown one is left out, so the rows are wider).
    fn rows(&self, rows: &FactRows) -> anomaly::Rows {
        let mut pairs: Vec<(String, String)> = rows
            .key
            .iter()
            .filter_map(|(c, o)| Some((c.clone(), self.value(o)?)))
            .collect();
        pairs.sort();
        pairs.dedup();
        let exact =
            !rows.opaque && rows.filter.len() == rows.key.len() && pairs.len() == rows.key.len();
        if exact && !pairs.is_empty() {
            anomaly::Rows::Row(pairs)
        } else {
            anomaly::Rows::Where(pairs)
        }
    }
}

/// The value an assignment wrote, from the values the trace recorded:
/// evaluated by the script language's own evaluator.
fn written_value(k: &Known, a: &Assign) -> Option<i64> {
    match &a.value {
        Value::Variables { expr: Some(e), .. } | Value::Constant(Some(e)) => k.eval(e),
        _ => None,
    }
}

fn level(l: Isolation) -> anomaly::Level {
    match l {
        Isolation::ReadCommitted => anomaly::Level::ReadCommitted,
        Isolation::RepeatableRead => anomaly::Level::RepeatableRead,
        Isolation::Serializable => anomaly::Level::Serializable,
    }
}

/// What a statement does to the transaction, from its facts.
fn tx_of(f: &Facts) -> anomaly::Tx {
    use anomaly::Tx;
    let mut tx = match f.kind {
        Kind::Begin(l) => Tx::Begin(l.map(level)),
        Kind::Commit { .. } => Tx::Commit,
        Kind::Rollback { .. } => Tx::Rollback,
        Kind::SetIsolation {
            value: IsoValue::Level(l),
            target: IsoTarget::Transaction,
        } => Tx::SetLevel(level(l)),
        Kind::SetIsolation {
            value: IsoValue::Level(l),
            target: IsoTarget::SessionDefault,
        } => Tx::SetDefault(level(l)),
        _ => Tx::None,
    };
    for c in &f.iso_calls {
        if let (Some(IsoTarget::SessionDefault), IsoValue::Level(l)) = (c.target, c.value) {
            tx = Tx::SetDefault(level(l));
        }
    }
    tx
}

/// The items a statement read and wrote, for the anomaly analysis. `from`
/// maps a variable slot to the read (statement, read) it was `\gset` from
/// in this session.
fn items(
    k: &Known,
    st: &Stmt,
    rows_affected: Option<u64>,
    values: &[(String, String)],
    from: &BTreeMap<usize, (usize, usize)>,
) -> (Vec<anomaly::ItemRead>, Vec<anomaly::ItemWrite>) {
    let f = &st.facts;
    let mut reads = Vec::new();
    for (ri, r) in f.reads.iter().enumerate() {
        // The column `\gset` kept from it, and the value.
        let kept = st
            .gset
            .as_ref()
            .and_then(|g| g.cols.as_ref())
            .zip(f.outputs.as_ref())
            .and_then(|(cols, outputs)| {
                cols.iter().zip(outputs).find_map(|((name, _), o)| {
                    o.sources.iter().find_map(|s| match s {
                        Source::Read {
                            read,
                            column: Some(c),
                        } if *read == ri => {
                            let v = values
                                .iter()
                                .find(|(n, _)| n == name)
                                .map(|(_, v)| v.clone());
                            Some((c.clone(), v))
                        }
                        _ => None,
                    })
                })
            });
        reads.push(anomaly::ItemRead {
            table: r.table.clone(),
            column: kept.as_ref().map(|(c, _)| c.clone()),
            rows: k.rows(&r.rows),
            locking: r.lock.is_some(),
            value: kept.and_then(|(_, v)| v),
        });
    }
    let mut writes = Vec::new();
    for (wi, w) in f.writes.iter().enumerate() {
        if f.rows_from == Some(wi) && rows_affected == Some(0) {
            continue;
        }
        let insert = w.op == WriteOp::Insert;
        let rows = if insert {
            let mut pairs: Vec<(String, String)> = w
                .assigns
                .iter()
                .filter_map(|a| {
                    let v = match &a.value {
                        Value::Constant(Some(e)) | Value::Variables { expr: Some(e), .. } => {
                            k.eval(e)?.to_string()
                        }
                        _ => return None,
                    };
                    Some((a.column.clone(), v))
                })
                .collect();
            pairs.sort();
            anomaly::Rows::Row(pairs)
        } else {
            k.rows(&w.rows)
        };
        let from_read = w.assigns.iter().find_map(|a| match &a.value {
            Value::Variables { vars, .. } | Value::Rows { vars, .. } => {
                vars.iter().find_map(|v| from.get(v).copied())
            }
            _ => None,
        });
        let shown = w.assigns.first().map(|a| match written_value(k, a) {
            Some(v) => format!("{} := {v}", a.column),
            None => format!("{} := {}", a.column, a.text),
        });
        writes.push(anomaly::ItemWrite {
            table: w.table.clone(),
            columns: w.assigns.iter().map(|a| a.column.clone()).collect(),
            rows,
            insert,
            relative: w
                .assigns
                .iter()
                .any(|a| matches!(a.value, Value::Relative { .. })),
            from_read,
            shown: if insert { None } else { shown },
        });
    }
    (reads, writes)
}

/// Analyse the traces of one run. `qty` is the run's `:qty`.
pub fn analyze(
    strategy: &str,
    program: &Program,
    traces: &[AttemptTrace],
    released_at: Instant,
    qty: i64,
) -> Timeline {
    let stmt_at = |line: usize| program.stmts.iter().find(|s| s.line == line);
    let rel = |t: Instant| t.saturating_duration_since(released_at).as_micros() as u64;
    let mut steps: Vec<Step> = Vec::new();
    // Beside each step: does it release locks (COMMIT, ROLLBACK)?
    let mut releases: Vec<bool> = Vec::new();
    let mut sessions: Vec<anomaly::Session> = Vec::new();
    // The product of each session, by its index.
    let mut products: Vec<i64> = Vec::new();
    for t in traces {
        let mut cur_no = 0;
        let mut in_tx = false;
        let mut pending_write: Option<usize> = None;
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut from: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for ev in &t.events {
            if cur_no != ev.try_no || sessions.last().map_or(true, |s| s.id != t.attempt) {
                sessions.push(anomaly::Session {
                    id: t.attempt,
                    label: t.buyer,
                    statements: Vec::new(),
                });
                products.push(t.product);
                cur_no = ev.try_no;
                in_tx = false;
                pending_write = None;
                from.clear();
            }
            let idx = steps.len();
            vars.extend(ev.values.iter().cloned());
            let st = (ev.kind == TraceKind::Sql)
                .then(|| stmt_at(ev.line))
                .flatten();
            let ok = ev.error.is_none();
            let mut role = Role::Other;
            let mut release = ev.kind == TraceKind::Rollback && ok;
            let known = Known {
                program,
                t,
                try_no: ev.try_no,
                qty,
                vars: &vars,
            };
            let session = sessions.last_mut().expect("pushed above");
            if ev.kind == TraceKind::Rollback {
                session.statements.push(anomaly::Stmt {
                    id: idx,
                    start_us: rel(ev.start),
                    end_us: rel(ev.end),
                    ok,
                    tx: anomaly::Tx::Rollback,
                    reads: Vec::new(),
                    writes: Vec::new(),
                });
            }
            if let Some(st) = st {
                let (reads, writes) = if ok {
                    items(&known, st, ev.rows, &ev.values, &from)
                } else {
                    (Vec::new(), Vec::new())
                };
                let at = session.statements.len();
                // What this statement's `\gset` kept, for later writes.
                if let (Some(cols), Some(outputs)) = (
                    st.gset.as_ref().and_then(|g| g.cols.as_ref()),
                    &st.facts.outputs,
                ) {
                    for ((_, slot), o) in cols.iter().zip(outputs) {
                        match o.sources.iter().find_map(|s| match s {
                            Source::Read { read, .. } => Some(*read),
                            _ => None,
                        }) {
                            Some(r) if ok => {
                                from.insert(*slot, (at, r));
                            }
                            _ => {
                                from.remove(slot);
                            }
                        }
                    }
                }
                session.statements.push(anomaly::Stmt {
                    id: idx,
                    start_us: rel(ev.start),
                    end_us: rel(ev.end),
                    ok,
                    tx: tx_of(&st.facts),
                    reads,
                    writes,
                });
            }
            if let (Some(st), true) = (st, ok) {
                let kind = st.facts.kind;
                if matches!(
                    kind,
                    Kind::Begin(_) | Kind::Commit { chain: true } | Kind::Rollback { chain: true }
                ) && !in_tx
                {
                    in_tx = true;
                }
                let sf = stock_facts(program, st);
                if let Some((var, locking)) = &sf.read {
                    if let Some(v) = ev
                        .values
                        .iter()
                        .find(|(n, _)| n == var)
                        .and_then(|(_, v)| v.trim().parse().ok())
                    {
                        role = Role::Read {
                            value: v,
                            locking: *locking,
                        };
                    }
                }
                if let Some((wi, a)) = &sf.write {
                    // The statement's row count is this write's when it is
                    // the statement itself or the CTE it takes rows from.
                    let counted = st.facts.rows_from == Some(*wi);
                    if counted && ev.rows.unwrap_or(0) == 0 {
                        role = Role::NoWrite;
                    } else {
                        let value = written_value(&known, a);
                        role = Role::Write {
                            value,
                            expr: a.text.clone(),
                        };
                        pending_write = Some(idx);
                    }
                }
                match kind {
                    Kind::Commit { chain } if in_tx => {
                        in_tx = chain;
                        release = true;
                        let stock = pending_write.map(|w| match &steps[w].role {
                            Role::Write { value: Some(v), .. } => format!("stock := {v}"),
                            Role::Write { expr, .. } => format!("stock := {expr}"),
                            _ => String::new(),
                        });
                        pending_write = None;
                        role = Role::Commit { stock };
                    }
                    Kind::Rollback { chain } => {
                        in_tx = chain;
                        pending_write = None;
                        release = true;
                    }
                    _ => {}
                }
            }
            steps.push(Step {
                buyer: t.buyer,
                attempt: t.attempt,
                try_no: ev.try_no,
                product: t.product,
                start_us: rel(ev.start),
                end_us: rel(ev.end),
                line: ev.line,
                kind: kind_name(ev.kind),
                what: ev.what.clone(),
                rows: ev.rows,
                values: ev.values.clone(),
                error: ev.error.clone(),
                outcome: ev.outcome,
                role,
                waited_for: None,
            });
            releases.push(release);
        }
    }

    // Waits: a statement that lasted and ended after another buyer released
    // its locks (COMMIT, ROLLBACK, an autocommit write) while it ran.
    // Times are taken by the client: a release counts from when its COMMIT
    // or ROLLBACK was sent, since the client may notice its end late.
    let is_release: Vec<bool> = (0..steps.len())
        .map(|i| {
            releases[i]
                || (steps[i].error.is_none() && matches!(steps[i].role, Role::Commit { .. }))
        })
        .collect();
    let release_at: Vec<(u64, u32)> = (0..steps.len())
        .filter(|&i| is_release[i])
        .map(|i| (steps[i].start_us, steps[i].buyer))
        .collect();
    for i in 0..steps.len() {
        let s = &steps[i];
        // COMMIT and ROLLBACK take no locks: they never wait for one.
        if s.kind != "sql" || is_release[i] || s.end_us.saturating_sub(s.start_us) < WAIT_MIN_US {
            continue;
        }
        let waited = release_at
            .iter()
            .filter(|(at, b)| *b != s.buyer && *at >= s.start_us && *at <= s.end_us)
            .max_by_key(|(at, _)| *at)
            .map(|(_, b)| *b);
        steps[i].waited_for = waited;
    }

    // Anomalies, on any table, from the sessions.
    let found = anomaly::anomalies(&sessions);
    let mut anomalies: Vec<Anomaly> = found
        .into_iter()
        .map(|a| {
            let product = sessions
                .iter()
                .zip(&products)
                .find(|(s, _)| s.id == a.session)
                .map_or(0, |(_, p)| *p);
            let item = match &a.column {
                Some(c) => format!("{}.{c} ({})", a.table, a.rows.text()),
                None => format!("{} ({})", a.table, a.rows.text()),
            };
            Anomaly {
                name: a.name,
                prevented_at: a.prevented_at,
                product,
                buyer: a.label,
                attempt: a.session,
                item,
                read_value: a.value.as_deref().and_then(|v| v.trim().parse().ok()),
                read_us: a.read_us,
                commit_us: a.commit_us,
                committed: a.committed,
                overtaken_by: a
                    .missed
                    .into_iter()
                    .map(|m| (m.label, m.commit_us, m.shown))
                    .collect(),
            }
        })
        .collect();
    steps.sort_by_key(|s| (s.start_us, s.end_us));
    anomalies.sort_by_key(|a| a.commit_us);
    Timeline {
        strategy: strategy.to_string(),
        steps,
        anomalies,
    }
}

/// What prevents an anomaly, in words: the level and how, or why no level
/// does.
pub fn prevention(prevented_at: Option<&str>) -> String {
    match prevented_at {
        Some("REPEATABLE READ") => "Prevented at REPEATABLE READ in PostgreSQL (the later writer fails with 40001 and retries), or by locking the read (SELECT ... FOR UPDATE).".into(),
        Some("SERIALIZABLE") => "Prevented at SERIALIZABLE in PostgreSQL (serializable snapshot isolation aborts one of the two).".into(),
        Some(level) => format!("Prevented at {level} in PostgreSQL."),
        None => "No isolation level prevents it: each transaction is consistent on its own, the purchase spans two. Put the check and the write in one transaction, or guard the write itself (WHERE stock >= :qty).".into(),
    }
}

/// `--trace FILE`: every step, then every anomaly, as JSON lines, tagged
/// with the strategy and repetition so several runs can share one file.
pub fn write_jsonl(path: &Path, runs: &[(&Timeline, u32)]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for (t, repetition) in runs {
        for s in &t.steps {
            let mut v = serde_json::to_value(s)?;
            v["type"] = "event".into();
            v["strategy"] = t.strategy.clone().into();
            v["repetition"] = (*repetition).into();
            v["values"] = s
                .values
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
            serde_json::to_writer(&mut out, &v)?;
            out.push(b'\n');
        }
        for a in &t.anomalies {
            let mut v = serde_json::to_value(a)?;
            v["type"] = "anomaly".into();
            v["strategy"] = t.strategy.clone().into();
            v["repetition"] = (*repetition).into();
            serde_json::to_writer(&mut out, &v)?;
            out.push(b'\n');
        }
    }
    let mut f = std::fs::File::create(path)
        .with_context(|| format!("writing the trace to {}", path.display()))?;
    f.write_all(&out)
        .with_context(|| format!("writing the trace to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::strategy::{parse, TraceEvent};

    fn ev(
        t0: Instant,
        ms: (u64, u64),
        line: usize,
        kind: TraceKind,
        values: &[(&str, &str)],
    ) -> TraceEvent {
        TraceEvent {
            start: t0 + Duration::from_millis(ms.0),
            end: t0 + Duration::from_millis(ms.1),
            try_no: 1,
            line,
            kind,
            what: format!("line {line}"),
            rows: Some(1),
            values: values
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            error: None,
            sqlstate: None,
            outcome: None,
        }
    }

    /// Two buyers of a script whose read of products.stock lands in `:left`
    /// and whose `:stock` is another table's column: the analysis follows
    /// the facts, not the names.
    #[test]
    fn reads_and_writes_come_from_facts_not_names() {
        let src = "BEGIN;\n\
                   SELECT p.stock AS left_over, o.qty AS stock FROM products p LEFT JOIN orders o ON o.product_id = p.id WHERE p.id = :product LIMIT 1 \\gset\n\
                   UPDATE products SET stock = :left_over - :qty WHERE id = :product;\n\
                   commit;\n";
        let prog = parse("t.sql", src).unwrap();
        let t0 = Instant::now();
        let trace =
            |buyer: u32, read: (u64, u64), write: (u64, u64), commit: (u64, u64)| AttemptTrace {
                buyer,
                attempt: i64::from(buyer),
                product: 1,
                outcome: Outcome::Succeeded,
                events: vec![
                    ev(t0, (0, 1), 1, TraceKind::Sql, &[]),
                    ev(
                        t0,
                        read,
                        2,
                        TraceKind::Sql,
                        &[("left_over", "5"), ("stock", "99")],
                    ),
                    ev(t0, write, 3, TraceKind::Sql, &[]),
                    ev(t0, commit, 4, TraceKind::Sql, &[]),
                ],
            };
        let traces = vec![
            trace(1, (1, 2), (3, 4), (5, 6)),
            trace(2, (1, 2), (7, 8), (9, 10)),
        ];
        let tl = analyze("t", &prog, &traces, t0, 2);
        let reads: Vec<&Role> = tl
            .steps
            .iter()
            .filter(|s| s.line == 2)
            .map(|s| &s.role)
            .collect();
        assert!(
            reads.iter().all(|r| **r
                == Role::Read {
                    value: 5,
                    locking: false
                }),
            "{reads:?}"
        );
        let writes: Vec<&Role> = tl
            .steps
            .iter()
            .filter(|s| s.line == 3)
            .map(|s| &s.role)
            .collect();
        assert!(
            writes.iter().all(|r| **r
                == Role::Write {
                    value: Some(3),
                    expr: ":left_over - :qty".into()
                }),
            "{writes:?}"
        );
        // Buyer 2 read before buyer 1 committed and wrote from that read.
        assert_eq!(tl.anomalies.len(), 1, "{:?}", tl.anomalies);
        let a = &tl.anomalies[0];
        assert_eq!(
            (a.name, a.buyer, a.read_value),
            ("P4 lost update", 2, Some(5))
        );
        assert_eq!(a.item, "products.stock (id = 1)");
        assert_eq!(a.committed.as_deref(), Some("stock := 3"));
        // A lower-case COMMIT is a commit, found from its kind.
        assert!(matches!(
            tl.steps.iter().find(|s| s.line == 4).map(|s| &s.role),
            Some(Role::Commit { .. })
        ));
    }

    #[test]
    fn relative_writes_are_read_skew_not_lost_updates() {
        let src = "BEGIN;\nSELECT stock FROM products WHERE id = :product \\gset\nUPDATE products SET stock = stock - :qty WHERE id = :product;\nCOMMIT;\n";
        let prog = parse("t.sql", src).unwrap();
        let t0 = Instant::now();
        let trace = |buyer: u32, write: (u64, u64), commit: (u64, u64)| AttemptTrace {
            buyer,
            attempt: i64::from(buyer),
            product: 1,
            outcome: Outcome::Succeeded,
            events: vec![
                ev(t0, (0, 1), 1, TraceKind::Sql, &[]),
                ev(t0, (1, 2), 2, TraceKind::Sql, &[("stock", "1")]),
                ev(t0, write, 3, TraceKind::Sql, &[]),
                ev(t0, commit, 4, TraceKind::Sql, &[]),
            ],
        };
        let tl = analyze(
            "t",
            &prog,
            &[trace(1, (3, 4), (5, 6)), trace(2, (3, 8), (9, 10))],
            t0,
            1,
        );
        assert_eq!(tl.anomalies.len(), 1);
        assert_eq!(tl.anomalies[0].name, "G-single read skew");
        let w = tl
            .steps
            .iter()
            .find(|s| s.buyer == 2 && s.line == 3)
            .unwrap();
        assert_eq!(
            w.role,
            Role::Write {
                value: None,
                expr: "stock - :qty".into()
            }
        );
        // Buyer 2's UPDATE ended after buyer 1's COMMIT was sent: a wait.
        assert_eq!(w.waited_for, Some(1));
    }
}
