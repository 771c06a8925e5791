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
//! The value a write committed ("stock := 0") is not read back from the
//! server: it is the script's own expression (`:stock - :qty`) evaluated
//! with the values the trace recorded (`\gset`, `\set`) and the attempt's
//! built-ins. That keeps the traced path identical to the untraced one.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use crate::engine::AttemptTrace;
use crate::explain::{self, StmtFacts, StockWrite};
use crate::outcome::Outcome;
use crate::strategy::{Program, TraceKind};

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

/// Analyse the traces of one run. `qty` is the run's `:qty`.
pub fn analyze(
    strategy: &str,
    program: &Program,
    traces: &[AttemptTrace],
    released_at: Instant,
    qty: i64,
) -> Timeline {
    let facts = explain::statements(program);
    let fact = |line: usize| facts.iter().find(|f| f.line == line);
    let rel = |t: Instant| t.saturating_duration_since(released_at).as_micros() as u64;
    let mut steps: Vec<Step> = Vec::new();
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
            let f: Option<&StmtFacts> =
                (ev.kind == TraceKind::Sql).then(|| fact(ev.line)).flatten();
            let ok = ev.error.is_none();
            let mut role = Role::Other;
            if let (Some(f), true) = (f, ok) {
                if f.begin.is_some() {
                    in_tx = true;
                }
                if let Some((_, v)) = ev.values.iter().find(|(n, _)| n == "stock") {
                    if let Ok(v) = v.parse() {
                        role = Role::Read {
                            value: v,
                            locking: f.row_lock.is_some(),
                        };
                        if pending_write.is_none() {
                            tr.read = Some(idx);
                        }
                    }
                }
                if let Some(w) = &f.stock_write {
                    if ev.rows.unwrap_or(0) == 0 {
                        role = Role::NoWrite;
                    } else {
                        let (value, expr) = match w {
                            StockWrite::FromVariables(e) => {
                                let known = |name: &str| -> Option<i64> {
                                    match name {
                                        "qty" => Some(qty),
                                        "product" => Some(t.product),
                                        "buyer" => Some(i64::from(t.buyer)),
                                        "attempt" => Some(t.attempt),
                                        "try" => Some(i64::from(ev.try_no)),
                                        _ => vars
                                            .iter()
                                            .rev()
                                            .find(|(n, _)| n == name)
                                            .and_then(|(_, v)| v.parse().ok()),
                                    }
                                };
                                (explain::eval_int(e, &known), e.clone())
                            }
                            StockWrite::Relative(e) => (None, e.clone()),
                        };
                        role = Role::Write { value, expr };
                        pending_write = Some(idx);
                        tr.write = Some(idx);
                        if !in_tx {
                            tr.commit = Some(idx);
                        }
                    }
                }
                if f.commit && in_tx {
                    in_tx = false;
                    tr.commit = Some(idx);
                    let stock = pending_write.map(|w| match &steps[w].role {
                        Role::Write { value: Some(v), .. } => format!("stock := {v}"),
                        Role::Write { expr, .. } => format!("stock := {expr}"),
                        _ => String::new(),
                    });
                    role = Role::Commit { stock };
                }
                if f.rollback {
                    in_tx = false;
                    pending_write = None;
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
        }
        if let Some(done) = cur.take() {
            tries.push(done);
        }
    }

    // Waits: a statement that lasted and ended after another buyer released
    // its locks (COMMIT, ROLLBACK, an autocommit write) while it ran.
    // Times are taken by the client: a release counts from when its COMMIT
    // or ROLLBACK was sent, since the client may notice its end late.
    let is_release = |s: &Step| {
        s.error.is_none()
            && (s.kind == "rollback"
                || matches!(s.role, Role::Commit { .. })
                || (s.kind == "sql" && s.what.to_ascii_uppercase().starts_with("ROLLBACK")))
    };
    let releases: Vec<(u64, u32)> = steps
        .iter()
        .filter(|s| is_release(s))
        .map(|s| (s.start_us, s.buyer))
        .collect();
    for s in steps.iter_mut() {
        // COMMIT and ROLLBACK take no locks: they never wait for one.
        if s.kind != "sql" || is_release(s) || s.end_us.saturating_sub(s.start_us) < WAIT_MIN_US {
            continue;
        }
        s.waited_for = releases
            .iter()
            .filter(|(at, b)| *b != s.buyer && *at >= s.start_us && *at <= s.end_us)
            .max_by_key(|(at, _)| *at)
            .map(|(_, b)| *b);
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
        let (name, prevented_at) = match t.write.map(|w| &steps[w].role) {
            Some(Role::Write { expr, .. })
                if !is_relative(program, &steps[t.write.unwrap_or(0)], expr) =>
            {
                ("P4 lost update", "REPEATABLE READ")
            }
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

/// Whether the write at `step` was relative to the row (`stock - :qty`).
fn is_relative(program: &Program, step: &Step, _expr: &str) -> bool {
    explain::statements(program)
        .iter()
        .find(|f| f.line == step.line)
        .is_some_and(|f| matches!(f.stock_write, Some(StockWrite::Relative(_))))
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
