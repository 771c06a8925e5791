//! The anomaly analysis: a clean function over timelines of SQL statements,
//! independent of racelab's script interpreter, so anything that records
//! transactions (a buyer's trace, a proxy between a service and its
//! database) can feed it.
//!
//! Entry point: [`anomalies`]`(&[Session]) -> Vec<Anomaly>`. A [`Session`]
//! is one client's statements in order (one try of one attempt, or one
//! connection's requests), each a [`Stmt`] with its times, whether it
//! succeeded, what it does to the transaction ([`Tx`]: BEGIN with a level,
//! SET of the level, COMMIT, ROLLBACK) and the items it reads and writes
//! ([`ItemRead`], [`ItemWrite`]: any table, any column, the row's key as
//! values, or a predicate). Build them from statement facts
//! (`strategy::facts::read` reads any SQL).
//!
//! The analysis follows PostgreSQL: a statement outside a transaction
//! block is a transaction of its own; READ COMMITTED reads see what was
//! committed when the statement began, REPEATABLE READ and SERIALIZABLE
//! reads what was committed when the transaction's first query began; a
//! locking read (FOR UPDATE) sees the latest committed version. Writers of
//! a row commit in the order of their versions. Between committed
//! transactions of different sessions it finds, as Adya's dependency graph
//! and Hermitage name them:
//!
//! - an anti-dependency T -rw-> U: T read an item (or a predicate) and
//!   missed U's committed write of it;
//! - closed by U -ww-> T (T wrote the item after U did): **P4 lost update**
//!   when T's write was computed from its stale read, else **G-single**;
//!   by U -wr-> T (T later read what U wrote): **G-single read skew**;
//!   by U -rw-> T: **G2-item write skew**, or **G2** when a predicate read
//!   missed an insert (a phantom);
//! - T's read and a later transaction of the same session that writes, with
//!   U's commit between them: a **split transaction** — no isolation level
//!   prevents it, since each transaction is consistent on its own.
//!
//! Times are the client's: an edge is drawn only where the order is
//! certain (U's COMMIT was sent after the read returned).

use std::collections::BTreeMap;

use serde::Serialize;

/// An isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// What a statement does to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    None,
    /// BEGIN / START TRANSACTION, with the level it asks for.
    Begin(Option<Level>),
    /// This transaction's level (before its first query).
    SetLevel(Level),
    /// The session's default for later transactions.
    SetDefault(Level),
    Commit,
    Rollback,
}

/// The rows an access names: a row by its key's values, or every row that
/// matches some equalities (a predicate).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Rows {
    Row(Vec<(String, String)>),
    Where(Vec<(String, String)>),
}

impl Rows {
    fn pairs(&self) -> &[(String, String)] {
        match self {
            Rows::Row(p) | Rows::Where(p) => p,
        }
    }

    /// Whether a row with these key values (or satisfying these
    /// equalities) can be one of `other`'s: no column they both name
    /// differs.
    fn meets(&self, other: &Rows) -> bool {
        self.pairs()
            .iter()
            .all(|(c, v)| other.pairs().iter().all(|(c2, v2)| c2 != c || v2 == v))
    }

    /// As text, e.g. `id = 1` (`every row` for no equality).
    pub fn text(&self) -> String {
        let p = self.pairs();
        if p.is_empty() {
            return "every row".into();
        }
        p.iter()
            .map(|(c, v)| format!("{c} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A read of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRead {
    pub table: String,
    /// The column whose value the client kept (`\gset`), if one.
    pub column: Option<String>,
    pub rows: Rows,
    /// FOR UPDATE / FOR SHARE: it sees the latest committed version.
    pub locking: bool,
    /// The value read, as text, when the client kept it.
    pub value: Option<String>,
}

/// A write of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemWrite {
    pub table: String,
    pub columns: Vec<String>,
    /// The row written: an UPDATE's or DELETE's key, an INSERT's values.
    pub rows: Rows,
    pub insert: bool,
    /// Computed from the row's latest version (`stock = stock - 1`).
    pub relative: bool,
    /// Computed from what an earlier read of this session read (its
    /// index in the session's statements, and the read's index in it).
    pub from_read: Option<(usize, usize)>,
    /// What it wrote, for the report (e.g. `stock := 0`).
    pub shown: Option<String>,
}

/// One statement a session ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// Whatever index the caller wants back in the anomalies.
    pub id: usize,
    pub start_us: u64,
    pub end_us: u64,
    /// It succeeded (a failed statement aborts its transaction).
    pub ok: bool,
    pub tx: Tx,
    pub reads: Vec<ItemRead>,
    pub writes: Vec<ItemWrite>,
}

/// One client's statements, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Tells sessions apart (an attempt id).
    pub id: i64,
    /// Who it is, for the report (a buyer).
    pub label: u32,
    pub statements: Vec<Stmt>,
}

/// Another session's committed write that an anomaly's read missed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Missed {
    pub label: u32,
    pub session: i64,
    /// The COMMIT (or autocommit write) that made it visible.
    pub commit_id: usize,
    pub commit_us: u64,
    pub shown: Option<String>,
}

/// An anomaly found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// `P4 lost update`, `G-single read skew`, `G2-item write skew`, `G2
    /// anti-dependency cycle (predicate)`, `split transaction`.
    pub name: &'static str,
    /// The weakest PostgreSQL level that prevents it; `None`: no level does.
    pub prevented_at: Option<&'static str>,
    pub session: i64,
    pub label: u32,
    /// The stale read: its statement, the item, the value.
    pub read_id: usize,
    pub read_us: u64,
    pub table: String,
    pub column: Option<String>,
    pub rows: Rows,
    pub value: Option<String>,
    /// The commit that acted on it.
    pub commit_id: usize,
    pub commit_us: u64,
    pub committed: Option<String>,
    pub missed: Vec<Missed>,
}

/// One transaction, as the analysis sees it.
#[derive(Debug, Clone)]
struct Txn {
    session: usize,
    /// Its statements (indices into the session's).
    stmts: Vec<usize>,
    level: Level,
    /// When the snapshot of a REPEATABLE READ or SERIALIZABLE
    /// transaction was taken (its first query's start).
    snapshot_end: Option<u64>,
    /// The COMMIT (or the autocommit statement) and its times.
    commit: Option<(usize, u64, u64)>,
    /// Its first statement's start.
    start_us: u64,
}

fn transactions(sessions: &[Session]) -> Vec<Txn> {
    let mut out = Vec::new();
    for (si, s) in sessions.iter().enumerate() {
        let mut default = Level::ReadCommitted;
        let mut cur: Option<Txn> = None;
        for (i, st) in s.statements.iter().enumerate() {
            let queries = !st.reads.is_empty() || !st.writes.is_empty();
            match st.tx {
                Tx::Begin(l) if st.ok => {
                    if let Some(t) = cur.take() {
                        out.push(t);
                    }
                    cur = Some(Txn {
                        session: si,
                        stmts: vec![i],
                        level: l.unwrap_or(default),
                        snapshot_end: None,
                        commit: None,
                        start_us: st.start_us,
                    });
                    continue;
                }
                Tx::SetDefault(l) if st.ok => default = l,
                _ => {}
            }
            match cur.as_mut() {
                Some(t) => {
                    t.stmts.push(i);
                    if let (Tx::SetLevel(l), true, None) = (st.tx, st.ok, t.snapshot_end) {
                        t.level = l;
                    }
                    if queries && t.snapshot_end.is_none() {
                        t.snapshot_end = Some(st.start_us);
                    }
                    match st.tx {
                        Tx::Commit => {
                            // A COMMIT of an aborted transaction rolls back.
                            let aborted = t.stmts.iter().any(|j| !s.statements[*j].ok);
                            if st.ok && !aborted {
                                t.commit = Some((i, st.start_us, st.end_us));
                            }
                            out.push(cur.take().expect("open"));
                        }
                        Tx::Rollback => out.push(cur.take().expect("open")),
                        _ => {}
                    }
                }
                None => {
                    if queries {
                        out.push(Txn {
                            session: si,
                            stmts: vec![i],
                            level: default,
                            snapshot_end: Some(st.start_us),
                            commit: st.ok.then_some((i, st.start_us, st.end_us)),
                            start_us: st.start_us,
                        });
                    }
                }
            }
        }
        if let Some(t) = cur.take() {
            out.push(t);
        }
    }
    out
}

/// A read of a committed transaction, with when its snapshot was taken.
struct Seen<'a> {
    stmt: usize,
    read: usize,
    r: &'a ItemRead,
    /// The read saw every commit that ended before this.
    sees_before: u64,
}

fn reads_of<'a>(sessions: &'a [Session], t: &Txn) -> Vec<Seen<'a>> {
    let s = &sessions[t.session];
    let mut out = Vec::new();
    for &i in &t.stmts {
        let st = &s.statements[i];
        if !st.ok {
            continue;
        }
        for (k, r) in st.reads.iter().enumerate() {
            let sees_before = if r.locking {
                st.end_us
            } else if t.level == Level::ReadCommitted || t.stmts.len() == 1 {
                st.start_us
            } else {
                t.snapshot_end.unwrap_or(st.start_us)
            };
            out.push(Seen {
                stmt: i,
                read: k,
                r,
                sees_before,
            });
        }
    }
    out
}

fn writes_of<'a>(sessions: &'a [Session], t: &Txn) -> Vec<(usize, &'a ItemWrite)> {
    let s = &sessions[t.session];
    t.stmts
        .iter()
        .filter(|i| s.statements[**i].ok)
        .flat_map(|i| s.statements[*i].writes.iter().map(move |w| (*i, w)))
        .collect()
}

/// Whether write `w` changes what read `r` read: the same table, rows that
/// can meet, and for a column read, that column (or a whole row: insert,
/// delete).
fn touches(w: &ItemWrite, r: &ItemRead) -> bool {
    w.table == r.table
        && w.rows.meets(&r.rows)
        && match &r.column {
            Some(c) if !w.insert && !w.columns.is_empty() => w.columns.contains(c),
            _ => true,
        }
}

/// The anomalies among `sessions`.
pub fn anomalies(sessions: &[Session]) -> Vec<Anomaly> {
    let txns = transactions(sessions);
    let committed: Vec<&Txn> = txns.iter().filter(|t| t.commit.is_some()).collect();
    let mut out: Vec<Anomaly> = Vec::new();
    for t in &committed {
        let (tc, tc_start, _) = t.commit.expect("committed");
        let ts = &sessions[t.session];
        for seen in reads_of(sessions, t) {
            // The other sessions' commits this read missed, before T's.
            let missed: Vec<(&Txn, Vec<(usize, &ItemWrite)>)> = committed
                .iter()
                .filter(|u| sessions[u.session].id != ts.id)
                .filter_map(|u| {
                    let (_, u_start, u_end) = u.commit.expect("committed");
                    if u_start <= seen.sees_before || u_end > tc_start {
                        return None;
                    }
                    let ws: Vec<(usize, &ItemWrite)> = writes_of(sessions, u)
                        .into_iter()
                        .filter(|(_, w)| touches(w, seen.r))
                        .collect();
                    (!ws.is_empty()).then_some((*u, ws))
                })
                .collect();
            if missed.is_empty() {
                continue;
            }
            let my_writes = writes_of(sessions, t);
            if my_writes.is_empty() {
                // A read-only transaction: what it decided acts later, or
                // not at all.
                continue;
            }
            // Which edge closes the cycle, per missed transaction.
            let mut kind: Option<(&'static str, Option<&'static str>)> = None;
            for (u, uws) in &missed {
                let ww = my_writes.iter().find(|(_, w)| {
                    !w.insert
                        && uws.iter().any(|(_, uw)| {
                            !uw.insert && uw.table == w.table && uw.rows.meets(&w.rows)
                        })
                });
                let k = if let Some((_, w)) = ww {
                    if w.from_read == Some((seen.stmt, seen.read)) && !w.relative {
                        ("P4 lost update", Some("REPEATABLE READ"))
                    } else {
                        ("G-single read skew", Some("REPEATABLE READ"))
                    }
                } else if reads_of(sessions, t).iter().any(|later| {
                    later.sees_before >= u.commit.expect("committed").2
                        && writes_of(sessions, u)
                            .iter()
                            .any(|(_, uw)| touches(uw, later.r))
                }) {
                    ("G-single read skew", Some("REPEATABLE READ"))
                } else if reads_of(sessions, u).iter().any(|ur| {
                    ur.sees_before < tc_start && my_writes.iter().any(|(_, w)| touches(w, ur.r))
                }) {
                    // With predicates when an edge of the cycle is an
                    // insert into what the other read (a row that was not
                    // there); an insert nobody read is no edge.
                    let predicate = uws.iter().any(|(_, w)| w.insert)
                        || reads_of(sessions, u).iter().any(|ur| {
                            ur.sees_before < tc_start
                                && my_writes.iter().any(|(_, w)| w.insert && touches(w, ur.r))
                        });
                    if predicate {
                        ("G2 anti-dependency cycle (predicate)", Some("SERIALIZABLE"))
                    } else {
                        ("G2-item write skew", Some("SERIALIZABLE"))
                    }
                } else {
                    continue;
                };
                // The strongest claim first: P4 over G-single over G2.
                let rank = |n: &str| match n {
                    n if n.starts_with("P4") => 0,
                    n if n.starts_with("G-single") => 1,
                    _ => 2,
                };
                if kind.map_or(true, |(n, _)| rank(k.0) < rank(n)) {
                    kind = Some(k);
                }
            }
            let Some((name, prevented_at)) = kind else {
                continue;
            };
            let shown = my_writes.iter().find_map(|(_, w)| w.shown.clone());
            out.push(anomaly(
                sessions,
                t,
                &seen,
                tc,
                tc_start,
                name,
                prevented_at,
                shown,
                &missed,
            ));
        }
    }
    // Split transactions: a read in one transaction, a write in a later one
    // of the same session, another session's commit in between.
    for t in &committed {
        let ts = &sessions[t.session];
        let reads = reads_of(sessions, t);
        for later in txns.iter().filter(|l| {
            l.session == t.session && l.commit.is_some() && l.start_us >= t.commit.expect("c").2
        }) {
            let (lc, lc_start, _) = later.commit.expect("committed");
            let lws = writes_of(sessions, later);
            if lws.is_empty() {
                continue;
            }
            for seen in &reads {
                let missed: Vec<(&Txn, Vec<(usize, &ItemWrite)>)> = committed
                    .iter()
                    .filter(|u| sessions[u.session].id != ts.id)
                    .filter_map(|u| {
                        let (_, u_start, u_end) = u.commit.expect("committed");
                        if u_start <= seen.sees_before || u_end > lc_start {
                            return None;
                        }
                        let ws: Vec<(usize, &ItemWrite)> = writes_of(sessions, u)
                            .into_iter()
                            .filter(|(_, w)| touches(w, seen.r))
                            .collect();
                        (!ws.is_empty()).then_some((*u, ws))
                    })
                    .collect();
                if missed.is_empty() {
                    continue;
                }
                let already = out
                    .iter()
                    .any(|a| a.session == ts.id && a.read_id == ts.statements[seen.stmt].id);
                if already {
                    continue;
                }
                let shown = lws.iter().find_map(|(_, w)| w.shown.clone());
                out.push(anomaly(
                    sessions,
                    t,
                    seen,
                    lc,
                    lc_start,
                    "split transaction",
                    None,
                    shown,
                    &missed,
                ));
            }
        }
    }
    out.sort_by_key(|a| (a.commit_us, a.label));
    out
}

#[allow(clippy::too_many_arguments)]
fn anomaly(
    sessions: &[Session],
    t: &Txn,
    seen: &Seen,
    commit: usize,
    commit_us: u64,
    name: &'static str,
    prevented_at: Option<&'static str>,
    committed: Option<String>,
    missed: &[(&Txn, Vec<(usize, &ItemWrite)>)],
) -> Anomaly {
    let s = &sessions[t.session];
    let mut by: BTreeMap<(u64, u32), Missed> = BTreeMap::new();
    for (u, ws) in missed {
        let us = &sessions[u.session];
        let (uc, uc_start, _) = u.commit.expect("committed");
        by.insert(
            (uc_start, us.label),
            Missed {
                label: us.label,
                session: us.id,
                commit_id: us.statements[uc].id,
                commit_us: uc_start,
                shown: ws.iter().find_map(|(_, w)| w.shown.clone()),
            },
        );
    }
    Anomaly {
        name,
        prevented_at,
        session: s.id,
        label: s.label,
        read_id: s.statements[seen.stmt].id,
        read_us: s.statements[seen.stmt].start_us,
        table: seen.r.table.clone(),
        column: seen.r.column.clone(),
        rows: seen.r.rows.clone(),
        value: seen.r.value.clone(),
        commit_id: s.statements[commit].id,
        commit_us,
        committed,
        missed: by.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &[(&str, &str)]) -> Rows {
        Rows::Row(
            k.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn read(table: &str, column: &str, rows: Rows) -> ItemRead {
        ItemRead {
            table: table.into(),
            column: Some(column.into()),
            rows,
            locking: false,
            value: Some("1".into()),
        }
    }

    fn write(
        table: &str,
        column: &str,
        rows: Rows,
        relative: bool,
        from: Option<(usize, usize)>,
    ) -> ItemWrite {
        ItemWrite {
            table: table.into(),
            columns: vec![column.into()],
            rows,
            insert: false,
            relative,
            from_read: from,
            shown: None,
        }
    }

    fn st(id: usize, t: (u64, u64), tx: Tx, reads: Vec<ItemRead>, writes: Vec<ItemWrite>) -> Stmt {
        Stmt {
            id,
            start_us: t.0,
            end_us: t.1,
            ok: true,
            tx,
            reads,
            writes,
        }
    }

    fn session(id: i64, statements: Vec<Stmt>) -> Session {
        Session {
            id,
            label: id as u32,
            statements,
        }
    }

    /// T1 and T2 each: BEGIN, read x, write (per `w`), COMMIT; T2 reads
    /// before T1 commits and commits after.
    fn pair(
        level: Option<Level>,
        w: impl Fn(usize) -> Vec<ItemWrite>,
        r: impl Fn() -> Vec<ItemRead>,
    ) -> Vec<Session> {
        let t = |id: i64, base: u64, commit: u64| {
            session(
                id,
                vec![
                    st(0, (base, base + 1), Tx::Begin(level), vec![], vec![]),
                    st(1, (base + 1, base + 2), Tx::None, r(), vec![]),
                    st(2, (commit, commit + 1), Tx::None, vec![], w(1)),
                    st(3, (commit + 2, commit + 3), Tx::Commit, vec![], vec![]),
                ],
            )
        };
        vec![t(1, 0, 10), t(2, 3, 20)]
    }

    #[test]
    fn a_lost_update_and_read_skew() {
        let x = row(&[("id", "1")]);
        let s = pair(
            None,
            |r| vec![write("products", "stock", x.clone(), false, Some((r, 0)))],
            || vec![read("products", "stock", x.clone())],
        );
        let a = anomalies(&s);
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(
            (a[0].name, a[0].prevented_at, a[0].label),
            ("P4 lost update", Some("REPEATABLE READ"), 2)
        );
        assert_eq!(a[0].missed[0].label, 1);
        let s = pair(
            None,
            |_| vec![write("products", "stock", x.clone(), true, None)],
            || vec![read("products", "stock", x.clone())],
        );
        assert_eq!(anomalies(&s)[0].name, "G-single read skew");
        // A locking read sees the latest version: nothing stale.
        let s = pair(
            None,
            |r| vec![write("products", "stock", x.clone(), false, Some((r, 0)))],
            || {
                let mut r = read("products", "stock", x.clone());
                r.locking = true;
                vec![r]
            },
        );
        // (its reading statement ends before T1 commits here, so it is still stale)
        assert_eq!(anomalies(&s).len(), 1);
    }

    #[test]
    fn write_skew_on_two_rows_and_with_a_predicate() {
        let all = Rows::Where(vec![("product_id".into(), "1".into())]);
        let site = |n: &str| row(&[("product_id", "1"), ("site", n)]);
        let t = |id: i64, base: u64, commit: u64, mine: &str| {
            session(
                id,
                vec![
                    st(
                        0,
                        (base, base + 1),
                        Tx::Begin(Some(Level::RepeatableRead)),
                        vec![],
                        vec![],
                    ),
                    st(
                        1,
                        (base + 1, base + 2),
                        Tx::None,
                        vec![read("warehouse", "units", all.clone())],
                        vec![],
                    ),
                    st(
                        2,
                        (commit, commit + 1),
                        Tx::None,
                        vec![],
                        vec![write("warehouse", "units", site(mine), true, None)],
                    ),
                    st(3, (commit + 2, commit + 3), Tx::Commit, vec![], vec![]),
                ],
            )
        };
        let a = anomalies(&[t(1, 0, 10, "0"), t(2, 3, 20, "1")]);
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(
            (a[0].name, a[0].prevented_at),
            ("G2-item write skew", Some("SERIALIZABLE"))
        );
        assert_eq!(a[0].table, "warehouse");
        // Counting orders and inserting one: a phantom.
        let orders = Rows::Where(vec![("product_id".into(), "1".into())]);
        let ins = ItemWrite {
            table: "orders".into(),
            columns: vec!["product_id".into()],
            rows: row(&[("product_id", "1")]),
            insert: true,
            relative: false,
            from_read: None,
            shown: None,
        };
        let t = |id: i64, base: u64, commit: u64| {
            session(
                id,
                vec![
                    st(
                        0,
                        (base, base + 1),
                        Tx::Begin(Some(Level::RepeatableRead)),
                        vec![],
                        vec![],
                    ),
                    st(
                        1,
                        (base + 1, base + 2),
                        Tx::None,
                        vec![ItemRead {
                            column: None,
                            ..read("orders", "qty", orders.clone())
                        }],
                        vec![],
                    ),
                    st(2, (commit, commit + 1), Tx::None, vec![], vec![ins.clone()]),
                    st(3, (commit + 2, commit + 3), Tx::Commit, vec![], vec![]),
                ],
            )
        };
        let a = anomalies(&[t(1, 0, 10), t(2, 3, 20)]);
        assert_eq!(a[0].name, "G2 anti-dependency cycle (predicate)");
    }

    #[test]
    fn a_purchase_split_across_transactions() {
        let x = row(&[("id", "1")]);
        let t = |id: i64, base: u64, write_at: u64| {
            session(
                id,
                vec![
                    st(
                        0,
                        (base, base + 1),
                        Tx::Begin(Some(Level::Serializable)),
                        vec![],
                        vec![],
                    ),
                    st(
                        1,
                        (base + 1, base + 2),
                        Tx::None,
                        vec![read("products", "stock", x.clone())],
                        vec![],
                    ),
                    st(2, (base + 2, base + 3), Tx::Commit, vec![], vec![]),
                    st(
                        3,
                        (write_at, write_at + 1),
                        Tx::None,
                        vec![],
                        vec![write("products", "stock", x.clone(), true, None)],
                    ),
                ],
            )
        };
        let a = anomalies(&[t(1, 0, 10), t(2, 4, 20)]);
        assert_eq!(a.len(), 1, "{a:#?}");
        assert_eq!(
            (a[0].name, a[0].prevented_at, a[0].label),
            ("split transaction", None, 2)
        );
        // Different rows: nothing.
        let mut other = t(2, 4, 20);
        other.statements[1].reads[0].rows = row(&[("id", "2")]);
        assert!(anomalies(&[t(1, 0, 10), other]).is_empty());
    }

    #[test]
    fn levels_decide_what_a_read_sees() {
        // At REPEATABLE READ the second read sees the first query's
        // snapshot: a commit between the two is missed by both.
        let x = row(&[("id", "1")]);
        let reader = session(
            1,
            vec![
                st(0, (0, 1), Tx::Begin(None), vec![], vec![]),
                st(
                    1,
                    (1, 2),
                    Tx::SetLevel(Level::RepeatableRead),
                    vec![],
                    vec![],
                ),
                st(2, (2, 3), Tx::None, vec![read("a", "v", x.clone())], vec![]),
                st(
                    3,
                    (20, 21),
                    Tx::None,
                    vec![read("products", "stock", x.clone())],
                    vec![],
                ),
                st(
                    4,
                    (22, 23),
                    Tx::None,
                    vec![],
                    vec![write("products", "stock", x.clone(), true, None)],
                ),
                st(5, (24, 25), Tx::Commit, vec![], vec![]),
            ],
        );
        let writer = session(
            2,
            vec![st(
                0,
                (10, 11),
                Tx::None,
                vec![],
                vec![write("products", "stock", x.clone(), true, None)],
            )],
        );
        let a = anomalies(&[reader.clone(), writer.clone()]);
        assert!(a.iter().any(|a| a.read_id == 3), "{a:#?}");
        // At READ COMMITTED the second read began after the commit.
        let mut rc = reader;
        rc.statements[1].tx = Tx::None;
        assert!(anomalies(&[rc, writer]).iter().all(|a| a.read_id != 3));
    }
}
