//! One SQL statement of a session: its slots bound (integers as `int8`,
//! the rest as `text`), held at the gate, sent within racelab's deadline
//! (or, under `--nemesis drop-reply`, sent and its reply given up on),
//! wrapped in a transaction of its own through a pooler that switches
//! server connections, and its rows and `\gset` values stored.

use std::time::Instant;

use rand::Rng as _;

use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo, Postgres};
use sqlx::{
    Column as _, Executor as _, PgConnection, Row as _, Type, TypeInfo as _, ValueRef as _,
};

use super::end::{classify, event, fail_message, sqlstate_of, Fail};
use super::faults::{bounded, is_deadline, send_once, Injected};
use super::gate::{Bound, Boundary, TxEffect};
use super::session::{Kind, Session};
use crate::outcome::{TraceEvent, TraceKind};
use crate::strategy::program::{Gset, Stmt, TxKind};
use crate::strategy::vars::ROWS;

impl Session<'_> {
    /// Run one statement: bind its slots, execute, store `:rows` and any
    /// `\gset` values.
    pub(super) async fn exec(
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
    pub(super) fn bound<'q>(
        &'q self,
        st: &'q Stmt,
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
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
    pub(super) fn drops_reply(&mut self) -> bool {
        self.drop_reply > 0.0 && self.rng.gen_bool(self.drop_reply)
    }

    /// `--nemesis drop-reply`: send the statement that commits and give up
    /// on its reply at once, as a client whose reply was lost would. The
    /// statement is prepared first (a round trip, when not cached yet), so
    /// that the one poll below writes it whole (Bind, Execute, Sync) to the
    /// socket; the server then runs it, and commits, on its own. The lane
    /// drops the connection (the reply unread) before the next attempt.
    pub(super) async fn send_and_drop(
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
    pub(super) fn dropped(
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
    pub(super) async fn exec_alone(
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
    pub(super) fn store_gset(
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

#[cfg(test)]
mod tests {
    use crate::strategy::SessionFaults;

    #[test]
    fn replies_are_dropped_as_often_as_asked() {
        let prog = crate::strategy::parse("t.sql", "SELECT 1;").unwrap();
        let mut never = prog.session(1);
        assert!((0..100).all(|_| !never.drops_reply()));
        let faults = |p| SessionFaults {
            deadline: None,
            drop_reply: p,
            sleep_limit: None,
        };
        let mut always = prog.session(1).with_faults(faults(1.0));
        assert!((0..100).all(|_| always.drops_reply()));
        let mut half = prog.session(7).with_faults(faults(0.5));
        let dropped = (0..1000).filter(|_| half.drops_reply()).count();
        assert!((400..600).contains(&dropped), "{dropped} of 1000");
    }
}
