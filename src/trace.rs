//! `--trace`: turn the engine's recorded events into a timeline and find the
//! anomalies in it — from the events themselves, never from the strategy's
//! name. A committed write of a product's stock that was computed from a
//! read, when another buyer's write of that product committed after the read
//! ended and before this commit, overwrote that buyer's update (P4 lost
//! update). The same stale read behind a relative write is read skew
//! (G-single); behind a commit that wrote no stock at all, write skew
//! (G2-item). Waits are statements that ended only after another buyer's
//! COMMIT or ROLLBACK released its locks.
//!
//! Reads, writes, commits and rollbacks are recognized from the statements'
//! facts (`strategy::facts`): a read is a `\gset` of `products.stock`
//! whatever the variable is called, a write is an UPDATE that assigns it.
//! The value a write committed ("stock := 0") is not read back from the
//! server: it is the script's own expression (`:stock - :qty`) evaluated by
//! the script language's evaluator with the values the trace recorded
//! (`\gset`, `\set`) and the attempt's built-ins. That keeps the traced
//! path identical to the untraced one.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::engine::AttemptTrace;
use crate::outcome::Outcome;
use crate::strategy::facts::{Assign, Kind, Source, Value, WriteOp};
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
    /// `P4 lost update`, `G-single read skew`, `G2-item write skew`.
    pub name: &'static str,
    /// The weakest PostgreSQL isolation level that prevents it.
    pub prevented_at: &'static str,
    pub product: i64,
    pub buyer: u32,
    pub attempt: i64,
    pub read_value: i64,
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

/// One try of one attempt, as the analysis sees it.
struct Try {
    buyer: u32,
    attempt: i64,
    product: i64,
    /// Index of the last stock read before the write (or commit).
    read: Option<usize>,
    write: Option<usize>,
    commit: Option<usize>,
}

/// The column the audit counts (DESIGN §3): the timeline follows reads and
/// writes of it, whatever the variables are called.
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

/// The value an assignment wrote, from the values the trace recorded:
/// evaluated by the script language's own evaluator.
fn written_value(
    program: &Program,
    a: &Assign,
    t: &AttemptTrace,
    try_no: u32,
    qty: i64,
    vars: &[(String, String)],
) -> Option<i64> {
    let e = match &a.value {
        Value::Variables { expr: Some(e), .. } | Value::Constant(Some(e)) => e,
        _ => return None,
    };
    let get = |slot: usize| -> Result<i64, EvalError> {
        match slot {
            PRODUCT => Ok(t.product),
            QTY => Ok(qty),
            BUYER => Ok(i64::from(t.buyer)),
            ATTEMPT => Ok(t.attempt),
            TRY => Ok(i64::from(try_no)),
            _ => {
                let name = program.vars.get(slot).ok_or(EvalError::Unset(slot))?;
                vars.iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .ok_or(EvalError::Unset(slot))
            }
        }
    };
    e.eval(&get, &mut SmallRng::seed_from_u64(0)).ok()
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
    // Beside each step: does it release locks (COMMIT, ROLLBACK), and was
    // its stock write relative to the row?
    let mut releases: Vec<bool> = Vec::new();
    let mut relative: Vec<bool> = Vec::new();
    let mut tries: Vec<Try> = Vec::new();
    for t in traces {
        let mut cur: Option<Try> = None;
        let mut cur_no = 0;
        let mut in_tx = false;
        let mut pending_write: Option<usize> = None;
        let mut vars: Vec<(String, String)> = Vec::new();
        for ev in &t.events {
            if cur.is_none() || ev.try_no != cur_no {
                if let Some(done) = cur.take() {
                    tries.push(done);
                }
                cur = Some(Try {
                    buyer: t.buyer,
                    attempt: t.attempt,
                    product: t.product,
                    read: None,
                    write: None,
                    commit: None,
                });
                cur_no = ev.try_no;
                in_tx = false;
                pending_write = None;
            }
            let tr = cur.as_mut().expect("set above");
            let idx = steps.len();
            vars.extend(ev.values.iter().cloned());
            let st = (ev.kind == TraceKind::Sql)
                .then(|| stmt_at(ev.line))
                .flatten();
            let ok = ev.error.is_none();
            let mut role = Role::Other;
            let mut release = ev.kind == TraceKind::Rollback && ok;
            let mut is_relative = false;
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
                        if pending_write.is_none() {
                            tr.read = Some(idx);
                        }
                    }
                }
                if let Some((wi, a)) = &sf.write {
                    // The statement's row count is this write's when it is
                    // the statement itself or the CTE it takes rows from.
                    let counted = st.facts.rows_from == Some(*wi);
                    if counted && ev.rows.unwrap_or(0) == 0 {
                        role = Role::NoWrite;
                    } else {
                        is_relative = matches!(a.value, Value::Relative { .. });
                        let value = written_value(program, a, t, ev.try_no, qty, &vars);
                        let expr = a.text.clone();
                        role = Role::Write { value, expr };
                        pending_write = Some(idx);
                        tr.write = Some(idx);
                        if !in_tx {
                            tr.commit = Some(idx);
                        }
                    }
                }
                match kind {
                    Kind::Commit { chain } if in_tx => {
                        in_tx = chain;
                        tr.commit = Some(idx);
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
            relative.push(is_relative);
        }
        if let Some(done) = cur.take() {
            tries.push(done);
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

    // Anomalies: per committed try with a stock read, the other buyers'
    // committed stock writes of that product between its read and its commit.
    let committed_writes: Vec<(usize, &Try)> = tries
        .iter()
        .filter_map(|t| Some((t.commit?, t)))
        .filter(|(_, t)| t.write.is_some())
        .collect();
    let mut anomalies = Vec::new();
    for t in &tries {
        let (Some(r), Some(c)) = (t.read, t.commit) else {
            continue;
        };
        let Role::Read {
            value: read_value, ..
        } = steps[r].role
        else {
            continue;
        };
        let read_end = steps[r].end_us;
        let commit_end = steps[c].end_us;
        let overtaken_by: Vec<(u32, u64, Option<String>)> = committed_writes
            .iter()
            .filter(|(oc, o)| {
                o.product == t.product
                    && o.attempt != t.attempt
                    && steps[*oc].start_us > read_end
                    && steps[*oc].end_us <= commit_end
                    && *oc != c
            })
            .map(|(oc, o)| (o.buyer, steps[*oc].start_us, committed_stock(&steps, *oc)))
            .collect();
        let mut overtaken_by = overtaken_by;
        overtaken_by.sort_by_key(|o| o.1);
        if overtaken_by.is_empty() {
            continue;
        }
        let (name, prevented_at) = match t.write {
            Some(w) if !relative[w] => ("P4 lost update", "REPEATABLE READ"),
            Some(_) => ("G-single read skew", "REPEATABLE READ"),
            None => ("G2-item write skew", "SERIALIZABLE"),
        };
        anomalies.push(Anomaly {
            name,
            prevented_at,
            product: t.product,
            buyer: t.buyer,
            attempt: t.attempt,
            read_value,
            read_us: steps[r].start_us,
            commit_us: steps[c].start_us,
            committed: committed_stock(&steps, c),
            overtaken_by,
        });
    }
    steps.sort_by_key(|s| (s.start_us, s.end_us));
    anomalies.sort_by_key(|a| a.commit_us);
    Timeline {
        strategy: strategy.to_string(),
        steps,
        anomalies,
    }
}

fn committed_stock(steps: &[Step], at: usize) -> Option<String> {
    match &steps[at].role {
        Role::Commit { stock } => stock.clone(),
        Role::Write { value: Some(v), .. } => Some(format!("stock := {v}")),
        Role::Write { expr, .. } => Some(format!("stock := {expr}")),
        _ => None,
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
        assert_eq!((a.name, a.buyer, a.read_value), ("P4 lost update", 2, 5));
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
