//! The service's trace: the proxy's records of one race turned into a
//! timeline of the service's statements, each tied to the request that
//! caused it, and the anomalies their facts show. Every statement's SQL is
//! read by the statement model (`strategy::facts`, sqlparser): a read is a
//! column of a table the statement returns (its value is in the rows the
//! service received), a write is an UPDATE's assignment (absolute, relative
//! to the row, guarded by a WHERE that bounds the column), and a row is a
//! table and the key its WHERE picks (`id = $1` with the bound value).
//!
//! A request's write of a row, committed, that relied on its earlier read
//! of that row, while another request's write of the row committed in
//! between, lost that update: a P4 lost update when the write is absolute
//! (`SET stock = $1`), G-single read skew when it is relative and
//! unguarded (`SET stock = stock - 1` after a stale check), and
//! scope-based when the read and the write ran in different transactions:
//! then no isolation level prevents it. A guarded relative write
//! (`... WHERE stock >= 1`) re-checks and relies on no read.
//!
//! Requests are tied to statements by connection and time: a request owns
//! the statements of the connection whose last statement before the
//! request's answer ended latest, from the request's start.

use std::collections::HashMap;

use serde_json::Value;

use crate::proxy::record::{Record, Statement, TxEnd};
use crate::result::{ServiceAccess, ServiceAnomaly, ServiceStep, ServiceTrace};
use crate::strategy::facts::{self, Facts, Operand, Value as Assigned, WriteOp};

/// Most steps a trace lists.
pub const MAX_STEPS: usize = 2000;
/// Rows of a statement a step shows.
const STEP_ROWS: usize = 3;

/// One request of the race, in the proxy's time (µs since it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSpan {
    pub buyer: u32,
    pub attempt: i64,
    pub start_us: u64,
    pub end_us: u64,
}

/// A row's column: `(table, column, key)`.
type Cell = (String, String, String);

struct Read {
    cell: Cell,
    value: String,
}

struct Write {
    cell: Cell,
    /// The value written, when the assignment is absolute and known.
    value: Option<String>,
    relative: bool,
    guarded: bool,
}

/// What one statement did, from its facts and its record.
struct Access {
    reads: Vec<Read>,
    writes: Vec<Write>,
}

/// Analyse the records of one race. `release_us`: when the buyers were
/// released, in the proxy's time.
pub fn analyze(records: &[Record], requests: &[RequestSpan], release_us: u64) -> ServiceTrace {
    let stmts: Vec<&Statement> = records
        .iter()
        .filter_map(|r| match r {
            Record::Statement(s) => Some(s),
            _ => None,
        })
        .collect();
    let committed: HashMap<u64, u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Transaction(t) if t.end == TxEnd::Commit => Some((t.txn, t.end_us)),
            _ => None,
        })
        .collect();
    let transactions = records
        .iter()
        .filter(|r| matches!(r, Record::Transaction(_)))
        .count() as u64;
    let owner = attribute(&stmts, requests);
    let access: Vec<Access> = stmts.iter().map(|s| access_of(s)).collect();
    let rel = |us: u64| us as i64 - release_us as i64;
    let who = |i: usize| owner[i].map(|r| (requests[r].buyer, requests[r].attempt));
    let point = |i: usize, at: u64, value: Option<String>| {
        let s = stmts[i];
        ServiceAccess {
            buyer: who(i).map(|w| w.0),
            attempt: who(i).map(|w| w.1),
            txn: s.txn,
            at_us: rel(at),
            sql: s.sql.clone(),
            value,
        }
    };
    let commit_of = |i: usize| {
        let s = stmts[i];
        let ok = s.error.is_none() && s.rows_affected.unwrap_or(1) > 0;
        s.txn
            .and_then(|t| committed.get(&t).copied())
            .filter(|_| ok)
    };

    let mut anomalies = Vec::new();
    for (wi, wa) in access.iter().enumerate() {
        let Some(unit) = owner[wi] else { continue };
        let Some(w_commit) = commit_of(wi) else {
            continue;
        };
        for w in &wa.writes {
            if w.relative && w.guarded {
                continue;
            }
            // The latest read of the row, by the same request, before it.
            let read = (0..wi).rev().find_map(|ri| {
                (owner[ri] == Some(unit) && stmts[ri].end_us <= stmts[wi].start_us)
                    .then(|| access[ri].reads.iter().find(|r| r.cell == w.cell))
                    .flatten()
                    .map(|r| (ri, r))
            });
            let Some((ri, r)) = read else { continue };
            let read_end = stmts[ri].end_us;
            let mut overtaken: Vec<(usize, u64)> = access
                .iter()
                .enumerate()
                .filter(|(oi, oa)| {
                    owner[*oi] != Some(unit) && oa.writes.iter().any(|o| o.cell == w.cell)
                })
                .filter_map(|(oi, _)| Some((oi, commit_of(oi)?)))
                .filter(|(_, c)| *c > read_end && *c < w_commit)
                .collect();
            if overtaken.is_empty() {
                continue;
            }
            overtaken.sort_by_key(|o| o.1);
            let (kind, name, prevented_at) = if stmts[ri].txn != stmts[wi].txn {
                (
                    "scope_based",
                    "scope-based: the check and the write in separate transactions",
                    None,
                )
            } else if w.relative {
                ("read_skew", "G-single read skew", Some("REPEATABLE READ"))
            } else {
                ("lost_update", "P4 lost update", Some("REPEATABLE READ"))
            };
            let (table, column, key) = &w.cell;
            let wrote = w.value.clone().or_else(|| {
                let s = stmts[wi];
                Some(format!("{} ({})", s.sql, params_text(&s.params)))
            });
            anomalies.push(ServiceAnomaly {
                kind: kind.into(),
                name: name.into(),
                prevented_at: prevented_at.map(str::to_string),
                row: format!("{table}.{column} ({key})"),
                buyer: who(wi).map(|w| w.0),
                attempt: who(wi).map(|w| w.1),
                read: point(ri, read_end, Some(r.value.clone())),
                write: point(wi, w_commit, wrote),
                overtaken_by: overtaken
                    .iter()
                    .map(|&(oi, c)| {
                        let v = access[oi]
                            .writes
                            .iter()
                            .find(|o| o.cell == w.cell)
                            .and_then(|o| o.value.clone());
                        point(oi, c, v)
                    })
                    .collect(),
            });
        }
    }
    anomalies.sort_by_key(|a| a.write.at_us);

    let steps: Vec<ServiceStep> = stmts
        .iter()
        .enumerate()
        .take(MAX_STEPS)
        .map(|(i, s)| {
            let a = &access[i];
            let (role, what) = if let Some(w) = a.writes.first() {
                let (t, c, k) = &w.cell;
                let v = w.value.clone().unwrap_or_else(|| "?".into());
                ("write", Some(format!("{t}.{c} := {v} ({k})")))
            } else if let Some(r) = a.reads.first() {
                let (t, c, k) = &r.cell;
                ("read", Some(format!("{t}.{c} = {} ({k})", r.value)))
            } else {
                (tx_role(s.tag.as_deref()), None)
            };
            ServiceStep {
                start_us: rel(s.start_us),
                end_us: rel(s.end_us),
                buyer: who(i).map(|w| w.0),
                attempt: who(i).map(|w| w.1),
                conn: s.conn,
                backend_pid: s.backend_pid,
                txn: s.txn,
                sql: s.sql.clone(),
                params: s.params.clone(),
                rows: s.rows.iter().take(STEP_ROWS).cloned().collect(),
                tag: s.tag.clone(),
                error: s
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.sqlstate, e.message)),
                role: role.into(),
                what,
            }
        })
        .collect();
    let mut conns: Vec<u64> = stmts.iter().map(|s| s.conn).collect();
    conns.sort_unstable();
    conns.dedup();
    ServiceTrace {
        tie: "connection_and_time".into(),
        requests: requests.len() as u64,
        connections: conns.len() as u64,
        statements: stmts.len() as u64,
        transactions,
        unattributed: owner.iter().filter(|o| o.is_none()).count() as u64,
        steps_truncated: stmts.len() > MAX_STEPS,
        steps,
        anomalies,
    }
}

fn tx_role(tag: Option<&str>) -> &'static str {
    match tag {
        Some("BEGIN" | "START TRANSACTION") => "begin",
        Some("COMMIT") => "commit",
        Some("ROLLBACK") => "rollback",
        _ => "other",
    }
}

fn params_text(params: &[Value]) -> String {
    params
        .iter()
        .enumerate()
        .map(|(i, v)| format!("${} = {}", i + 1, value_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Which request owns each statement. A service holds a connection for a
/// request's whole span (a pool's checkout), so a request's statements are
/// a run of one connection's: each connection's statements within the
/// race are one run, cut where the connection went idle while a request
/// was answered — only when there were more requests than connections, so
/// that some connection must have served several. Runs go to requests in
/// the order they ended: each request answered takes the unassigned run
/// that ended last before its answer.
fn attribute(stmts: &[&Statement], requests: &[RequestSpan]) -> Vec<Option<usize>> {
    let mut owner: Vec<Option<usize>> = vec![None; stmts.len()];
    let (Some(first), Some(last)) = (
        requests.iter().map(|r| r.start_us).min(),
        requests.iter().map(|r| r.end_us).max(),
    ) else {
        return owner;
    };
    let within = |i: usize| stmts[i].start_us >= first && stmts[i].end_us <= last;
    let mut conns: Vec<u64> = (0..stmts.len())
        .filter(|&i| within(i))
        .map(|i| stmts[i].conn)
        .collect();
    conns.sort_unstable();
    conns.dedup();
    let reused = requests.len() > conns.len();
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for c in &conns {
        let mine: Vec<usize> = (0..stmts.len())
            .filter(|&i| within(i) && stmts[i].conn == *c)
            .collect();
        let mut run: Vec<usize> = Vec::new();
        for i in mine {
            if let Some(&prev) = run.last() {
                let idle = stmts[prev].txn != stmts[i].txn
                    && stmts[prev].tx_status == Some(crate::proxy::record::TxStatus::Idle);
                let answered = requests
                    .iter()
                    .any(|r| r.end_us >= stmts[prev].end_us && r.end_us <= stmts[i].start_us);
                if reused && idle && answered {
                    runs.push(std::mem::take(&mut run));
                }
            }
            run.push(i);
        }
        if !run.is_empty() {
            runs.push(run);
        }
    }
    let run_end = |r: &Vec<usize>| r.last().map_or(0, |&i| stmts[i].end_us);
    let mut taken = vec![false; runs.len()];
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&r| requests[r].end_us);
    for r in order {
        let req = requests[r];
        let pick = (0..runs.len())
            .filter(|&k| !taken[k] && run_end(&runs[k]) <= req.end_us)
            .filter(|&k| stmts[runs[k][0]].start_us >= req.start_us)
            .max_by_key(|&k| run_end(&runs[k]));
        let Some(k) = pick else { continue };
        taken[k] = true;
        for &i in &runs[k] {
            owner[i] = Some(r);
        }
    }
    owner
}

/// What a statement read and wrote, from its facts and its record.
fn access_of(s: &Statement) -> Access {
    let mut out = Access {
        reads: Vec::new(),
        writes: Vec::new(),
    };
    if s.error.is_some() || s.sql.is_empty() {
        return out;
    }
    let f: Facts = facts::read(&s.sql, &|n| Some(n), &|slot| format!("${slot}"));
    if f.unreadable.is_some() {
        return out;
    }
    // Reads: an output column that is a table's column, its value from the
    // one row returned.
    if let (Some(outputs), [row]) = (&f.outputs, s.rows.as_slice()) {
        for (i, o) in outputs.iter().enumerate() {
            for src in &o.sources {
                if let facts::Source::Read {
                    read,
                    column: Some(c),
                } = src
                {
                    let rd = &f.reads[*read];
                    let (Some(key), Some(v)) = (key_of(&rd.rows.key, &s.params), row.get(i)) else {
                        continue;
                    };
                    out.reads.push(Read {
                        cell: (rd.table.clone(), c.clone(), key),
                        value: value_text(v),
                    });
                }
            }
        }
    }
    if s.rows_affected == Some(0) {
        return out;
    }
    for w in f.writes.iter().filter(|w| w.op == WriteOp::Update) {
        let Some(key) = key_of(&w.rows.key, &s.params) else {
            continue;
        };
        for a in &w.assigns {
            let guarded = w
                .rows
                .filter
                .iter()
                .any(|c| c.bounds_below(&w.table, &a.column));
            let (relative, value) = match &a.value {
                Assigned::Relative { .. } | Assigned::Row => (true, None),
                Assigned::Variables { vars, .. } => (
                    false,
                    match vars.as_slice() {
                        // `:$1`, or `:$1::integer` (a cast keeps the value).
                        [n] if a
                            .text
                            .trim()
                            .strip_prefix(&format!(":${n}"))
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::")) =>
                        {
                            s.params.get(n.wrapping_sub(1)).map(value_text)
                        }
                        _ => Some(a.text.replace(":$", "$")),
                    },
                ),
                Assigned::Constant(_) => (false, Some(a.text.clone())),
                Assigned::Rows { .. } => (false, None),
            };
            out.writes.push(Write {
                cell: (w.table.clone(), a.column.clone(), key.clone()),
                value,
                relative,
                guarded,
            });
        }
    }
    out
}

/// `id=1`: the key columns and their values (a bound parameter's value,
/// or a literal); `None` when a value cannot be known.
fn key_of(key: &[(String, Operand)], params: &[Value]) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for (col, o) in key {
        let v = match (o.vars.as_slice(), o.cols.is_empty(), o.opaque) {
            ([n], true, false) => value_text(params.get(n.checked_sub(1)?)?),
            ([], true, false) if o.expr.is_some() => o.text.clone(),
            _ => return None,
        };
        parts.push(format!("{col}={v}"));
    }
    parts.sort();
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::record::{Protocol, Transaction, TxStatus};
    use serde_json::json;

    fn stmt(conn: u64, txn: u64, at: (u64, u64), sql: &str, params: Vec<Value>) -> Statement {
        Statement {
            conn,
            seq: 0,
            backend_pid: Some(100 + conn as i32),
            application_name: None,
            start_us: at.0,
            end_us: at.1,
            protocol: Protocol::Extended,
            statement: None,
            portal: None,
            sql: sql.into(),
            params,
            param_types: Vec::new(),
            columns: None,
            rows: Vec::new(),
            rows_truncated: false,
            tag: None,
            rows_affected: Some(1),
            error: None,
            txn: Some(txn),
            tx_status: Some(TxStatus::Idle),
        }
    }

    fn read(conn: u64, txn: u64, at: (u64, u64), stock: i64) -> Record {
        let mut s = stmt(
            conn,
            txn,
            at,
            "SELECT stock FROM products WHERE id = $1",
            vec![json!(1)],
        );
        s.columns = Some(vec!["stock".into()]);
        s.rows = vec![vec![json!(stock)]];
        Record::Statement(s)
    }

    fn commit(conn: u64, txn: u64, at: u64) -> Record {
        Record::Transaction(Transaction {
            conn,
            txn,
            backend_pid: None,
            implicit: false,
            start_us: 0,
            end_us: at,
            end: TxEnd::Commit,
            statements: 2,
        })
    }

    /// Two requests from time 0, answered at these times.
    fn spans(ends: [u64; 2]) -> Vec<RequestSpan> {
        vec![
            RequestSpan {
                buyer: 1,
                attempt: 1,
                start_us: 0,
                end_us: ends[0],
            },
            RequestSpan {
                buyer: 2,
                attempt: 2,
                start_us: 0,
                end_us: ends[1],
            },
        ]
    }

    /// Two requests read stock 5 on their own connections; each writes
    /// back 4 with a bound value; the second committed after the first.
    #[test]
    fn an_absolute_write_after_an_overtaken_read_is_a_lost_update() {
        let w = "UPDATE products SET stock = $1 WHERE id = $2";
        let records = vec![
            read(1, 1, (10, 20), 5),
            read(2, 2, (12, 22), 5),
            Record::Statement(stmt(1, 1, (30, 40), w, vec![json!(4), json!(1)])),
            commit(1, 1, 50),
            Record::Statement(stmt(2, 2, (32, 60), w, vec![json!(4), json!(1)])),
            commit(2, 2, 70),
        ];
        let t = analyze(&records, &spans([55, 75]), 0);
        assert_eq!(t.anomalies.len(), 1, "{:?}", t.anomalies);
        let a = &t.anomalies[0];
        assert_eq!((a.kind.as_str(), a.buyer), ("lost_update", Some(2)));
        assert_eq!(a.row, "products.stock (id=1)");
        assert_eq!(a.read.value.as_deref(), Some("5"));
        assert_eq!(a.write.value.as_deref(), Some("4"));
        assert_eq!(a.overtaken_by[0].buyer, Some(1));
        assert_eq!(t.unattributed, 0);
        assert_eq!(
            t.steps[0].what.as_deref(),
            Some("products.stock = 5 (id=1)")
        );
    }

    #[test]
    fn a_check_and_a_write_in_two_transactions_are_scope_based() {
        let w = "UPDATE products SET stock = stock - 1 WHERE id = $1";
        let records = vec![
            read(1, 1, (10, 20), 1),
            read(2, 3, (12, 22), 1),
            Record::Statement(stmt(1, 2, (30, 40), w, vec![json!(1)])),
            commit(1, 2, 41),
            Record::Statement(stmt(2, 4, (32, 60), w, vec![json!(1)])),
            commit(2, 4, 61),
        ];
        let t = analyze(&records, &spans([45, 65]), 0);
        assert_eq!(t.anomalies.len(), 1, "{:?}", t.anomalies);
        assert_eq!(t.anomalies[0].kind, "scope_based");
        assert_eq!(t.anomalies[0].prevented_at, None);
    }

    #[test]
    fn a_guarded_decrement_or_a_locked_read_is_no_anomaly() {
        let guarded = "UPDATE products SET stock = stock - 1 WHERE id = $1 AND stock >= 1";
        let records = vec![
            read(1, 1, (10, 20), 1),
            read(2, 2, (12, 22), 1),
            Record::Statement(stmt(1, 1, (30, 40), guarded, vec![json!(1)])),
            commit(1, 1, 41),
            Record::Statement(stmt(2, 2, (32, 60), guarded, vec![json!(1)])),
            commit(2, 2, 61),
        ];
        assert!(analyze(&records, &spans([45, 65]), 0).anomalies.is_empty());
        // FOR UPDATE: the second read ends after the first commit.
        let w = "UPDATE products SET stock = $1 WHERE id = $2";
        let records = vec![
            read(1, 1, (10, 20), 5),
            Record::Statement(stmt(1, 1, (30, 40), w, vec![json!(4), json!(1)])),
            commit(1, 1, 50),
            read(2, 2, (12, 55), 4),
            Record::Statement(stmt(2, 2, (60, 65), w, vec![json!(3), json!(1)])),
            commit(2, 2, 70),
        ];
        assert!(analyze(&records, &spans([52, 75]), 0).anomalies.is_empty());
    }
}
