//! The recorder: on its own thread, off the relay's path, it follows each
//! connection's conversation from the chunks the relay hands over, and
//! turns it into records. It keeps, per connection, the prepared
//! statements and portals (named and unnamed), and a queue of the
//! replies the server owes (a Parse owes a ParseComplete, an Execute rows
//! and a CommandComplete, a Sync a ReadyForQuery ...), which the server
//! pays in order: so every reply is matched to the message it answers.
//! After an error in the extended protocol the server skips to the next
//! Sync, and so does the queue. Statements are written when their batch
//! ends (ReadyForQuery), with the transaction they ran in: the status
//! byte of ReadyForQuery and the command tags say where transactions
//! begin and end.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::codec::{self, back, front, Column};
use super::record::{
    Cancel, Connect, Disconnect, ErrorInfo, Notification, Protocol, Record, Sink, Statement,
    Transaction, TxEnd, TxStatus,
};
use super::relay::{Chunk, ConnId, Dir, Event};
use super::{sqltext, values};

/// The tag recorded for an Execute that stopped at its row limit
/// (PortalSuspended): the portal may go on.
pub const SUSPENDED: &str = "(portal suspended)";

/// A prepared statement as the client parsed it.
#[derive(Debug)]
struct Prepared {
    sql: Arc<str>,
    /// Declared by the Parse (0: the server infers).
    declared: Vec<u32>,
    /// From the server's ParameterDescription.
    described: Option<Vec<u32>>,
    /// From the server's RowDescription of the statement.
    columns: Option<Vec<Column>>,
}

impl Prepared {
    fn param_type(&self, i: usize) -> u32 {
        match self.declared.get(i) {
            Some(&t) if t != 0 => t,
            _ => self
                .described
                .as_ref()
                .and_then(|d| d.get(i).copied())
                .unwrap_or(0),
        }
    }
}

/// A Bind, as sent: what an Execute of its portal runs.
#[derive(Debug)]
struct Portal {
    statement: String,
    sql: Arc<str>,
    /// Decoded with the types known when the Bind was sent.
    params: Vec<Value>,
    param_types: Vec<Option<String>>,
    result_formats: Vec<i16>,
}

/// A statement being answered.
#[derive(Debug)]
struct Running {
    protocol: Protocol,
    statement: Option<String>,
    portal: Option<String>,
    sql: String,
    params: Vec<Value>,
    param_types: Vec<Option<String>>,
    start: Instant,
    columns: Option<Vec<Column>>,
    /// The formats of the columns (extended: from the Bind).
    result_formats: Vec<i16>,
    rows: Vec<Vec<Value>>,
    row_count: u64,
}

impl Running {
    fn new(protocol: Protocol, start: Instant) -> Running {
        Running {
            protocol,
            statement: None,
            portal: None,
            sql: String::new(),
            params: Vec::new(),
            param_types: Vec::new(),
            start,
            columns: None,
            result_formats: Vec::new(),
            rows: Vec::new(),
            row_count: 0,
        }
    }

    fn row(&mut self, body: &[u8]) {
        self.row_count += 1;
        if self.rows.len() >= super::relay::ROWS_PER_RESULT as usize {
            return;
        }
        let Ok(vals) = codec::read_data_row(body) else {
            return;
        };
        let cols = self.columns.as_deref().unwrap_or(&[]);
        let row = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (t, f) = cols.get(i).map_or((0, 0), |c| {
                    let f = match self.protocol {
                        Protocol::Simple => c.format,
                        Protocol::Extended => codec::result_format(&self.result_formats, i),
                    };
                    (c.type_oid, f)
                });
                values::decode(t, f, *v)
            })
            .collect();
        self.rows.push(row);
    }
}

/// A simple Query: its statements, answered one after another.
#[derive(Debug)]
struct Simple {
    parts: Vec<String>,
    next: usize,
    start: Instant,
    current: Option<Running>,
}

impl Simple {
    fn current(&mut self) -> &mut Running {
        let sql = self.parts.get(self.next).cloned().unwrap_or_default();
        let start = self.start;
        self.current.get_or_insert_with(|| Running {
            sql,
            ..Running::new(Protocol::Simple, start)
        })
    }
}

/// A reply the server owes.
#[derive(Debug)]
enum Owed {
    Simple(Simple),
    Parse(String),
    Bind(String),
    DescribeStatement(String),
    DescribePortal(String),
    Execute(Running),
    Close,
    Sync,
    Function,
}

/// A finished statement, before its batch ends.
struct Done {
    run: Running,
    end: Instant,
    tag: Option<String>,
    error: Option<ErrorInfo>,
}

#[derive(Debug)]
struct OpenTxn {
    txn: u64,
    implicit: bool,
    start: Instant,
    statements: u64,
}

/// One connection's conversation.
struct Conn {
    id: ConnId,
    client: String,
    user: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
    backend_pid: Option<i32>,
    ready: bool,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// Columns of a portal as the server described it (reply side).
    portal_columns: HashMap<String, Vec<Column>>,
    owed: VecDeque<Owed>,
    done: Vec<Done>,
    seq: u64,
    txn: Option<OpenTxn>,
}

/// Follows every connection and writes records to a sink.
pub struct Recorder {
    t0: Instant,
    conns: HashMap<ConnId, Conn>,
    next_txn: u64,
    sink: Box<dyn Sink>,
    /// The first failure to write a record (later ones are dropped).
    pub failed: Option<std::io::Error>,
}

impl Recorder {
    pub fn new(t0: Instant, sink: Box<dyn Sink>) -> Recorder {
        Recorder {
            t0,
            conns: HashMap::new(),
            next_txn: 0,
            sink,
            failed: None,
        }
    }

    fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_micros() as u64
    }

    pub fn write(&mut self, r: &Record) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.sink.record(r) {
            self.failed = Some(e);
        }
    }

    pub fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.sink.flush() {
                self.failed = Some(e);
            }
        }
    }

    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Open {
                conn,
                client,
                params,
                ..
            } => {
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                self.conns.insert(
                    conn,
                    Conn {
                        id: conn,
                        client,
                        user: get("user"),
                        database: get("database"),
                        application_name: get("application_name"),
                        backend_pid: None,
                        ready: false,
                        statements: HashMap::new(),
                        portals: HashMap::new(),
                        portal_columns: HashMap::new(),
                        owed: VecDeque::new(),
                        done: Vec::new(),
                        seq: 0,
                        txn: None,
                    },
                );
            }
            Event::Chunk(chunk) => self.chunk(&chunk),
            Event::Closed { conn, at, error } => self.close(conn, at, error),
            Event::Mark(done) => {
                self.flush();
                let _ = done.send(());
            }
            Event::Cancel { at, pid, forwarded } => {
                let r = Record::Cancel(Cancel {
                    at_us: self.us(at),
                    backend_pid: pid,
                    forwarded,
                });
                self.write(&r);
            }
            Event::Refused {
                conn,
                at,
                client,
                error,
            } => {
                let r = Record::Connect(Connect {
                    conn,
                    at_us: self.us(at),
                    client,
                    user: None,
                    database: None,
                    application_name: None,
                    backend_pid: None,
                    error: Some(ErrorInfo {
                        sqlstate: "08006".into(),
                        message: error,
                        detail: None,
                    }),
                });
                self.write(&r);
            }
        }
    }

    /// The proxy stopped: every connection still open ends here.
    pub fn finish(&mut self, at: Instant) {
        let mut open: Vec<ConnId> = self.conns.keys().copied().collect();
        open.sort_unstable();
        for c in open {
            self.close(c, at, None);
        }
        self.flush();
    }

    fn close(&mut self, conn: ConnId, at: Instant, error: Option<String>) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        // Statements answered but not yet followed by ReadyForQuery.
        let mut out = Vec::new();
        self.settle(&mut c, None, &mut out);
        if let Some(t) = c.txn.take() {
            out.push(Record::Transaction(Transaction {
                conn,
                txn: t.txn,
                backend_pid: c.backend_pid,
                implicit: t.implicit,
                start_us: self.us(t.start),
                end_us: self.us(at),
                end: TxEnd::Disconnect,
                statements: t.statements,
            }));
        }
        out.push(Record::Disconnect(Disconnect {
            conn,
            at_us: self.us(at),
            backend_pid: c.backend_pid,
            error,
        }));
        for r in &out {
            self.write(r);
        }
    }

    fn chunk(&mut self, chunk: &Chunk) {
        let Some(mut c) = self.conns.remove(&chunk.conn) else {
            return;
        };
        let mut out = Vec::new();
        for m in &chunk.msgs {
            let body = chunk.body(m);
            match chunk.dir {
                Dir::FromClient => front_message(&mut c, m.tag, body, chunk.at),
                Dir::FromServer => self.back_message(&mut c, m.tag, body, chunk.at, &mut out),
            }
        }
        self.conns.insert(chunk.conn, c);
        for r in &out {
            self.write(r);
        }
    }

    fn back_message(
        &mut self,
        c: &mut Conn,
        tag: u8,
        body: &[u8],
        at: Instant,
        out: &mut Vec<Record>,
    ) {
        match tag {
            back::BACKEND_KEY => {
                c.backend_pid = codec::Reader::new(body).i32().ok();
            }
            back::PARAMETER_STATUS => {
                let mut r = codec::Reader::new(body);
                if let (Ok("application_name"), Ok(v)) = (r.cstr(), r.cstr()) {
                    c.application_name = Some(v.to_string());
                }
            }
            back::NOTIFICATION => {
                let mut r = codec::Reader::new(body);
                if let (Ok(pid), Ok(ch), Ok(p)) = (r.i32(), r.cstr(), r.cstr()) {
                    out.push(Record::Notification(Notification {
                        conn: c.id,
                        at_us: self.us(at),
                        channel: ch.to_string(),
                        payload: p.to_string(),
                        from_pid: pid,
                    }));
                }
            }
            back::READY => {
                if !c.ready {
                    c.ready = true;
                    out.push(connect_record(c, self.us(at), None));
                }
                // Pay the Sync (or the Query, or the FunctionCall).
                while let Some(o) = c.owed.pop_front() {
                    match o {
                        Owed::Sync | Owed::Function => break,
                        Owed::Simple(mut s) => {
                            if let Some(run) = s.current.take() {
                                c.done.push(Done {
                                    run,
                                    end: at,
                                    tag: None,
                                    error: None,
                                });
                            }
                            break;
                        }
                        _ => {}
                    }
                }
                let status = body.first().and_then(|b| TxStatus::of(*b));
                self.settle(c, status.map(|s| (s, at)), out);
            }
            back::ERROR => {
                let e = codec::read_error(body).unwrap_or_default();
                let info = ErrorInfo {
                    sqlstate: e.sqlstate,
                    message: e.message,
                    detail: e.detail,
                };
                if !c.ready {
                    // The start-up failed (authentication, no such database).
                    c.ready = true;
                    out.push(connect_record(c, self.us(at), Some(info)));
                    return;
                }
                match c.owed.front_mut() {
                    Some(Owed::Simple(s)) => {
                        let run = s.current.take().unwrap_or_else(|| {
                            s.current();
                            s.current.take().expect("just made")
                        });
                        s.next = s.parts.len();
                        c.done.push(Done {
                            run,
                            end: at,
                            tag: None,
                            error: Some(info),
                        });
                    }
                    Some(_) => {
                        // Extended: the message this reply answers failed,
                        // and the server skips everything up to the Sync.
                        // The statement the batch meant to run (its first
                        // Execute, or a Parse alone) is recorded as failed.
                        let mut failed: Option<Running> = None;
                        let mut parse_sql: Option<String> = None;
                        while let Some(o) = c.owed.front() {
                            if matches!(o, Owed::Sync) {
                                break;
                            }
                            match c.owed.pop_front().expect("front exists") {
                                Owed::Execute(run) if failed.is_none() => failed = Some(run),
                                Owed::Parse(name) => {
                                    if let Some(st) = c.statements.remove(&name) {
                                        parse_sql.get_or_insert_with(|| st.sql.to_string());
                                    }
                                }
                                Owed::Bind(name) => {
                                    c.portals.remove(&name);
                                }
                                _ => {}
                            }
                        }
                        let run = failed.or_else(|| {
                            parse_sql.map(|sql| Running {
                                sql,
                                ..Running::new(Protocol::Extended, at)
                            })
                        });
                        if let Some(run) = run {
                            c.done.push(Done {
                                run,
                                end: at,
                                tag: None,
                                error: Some(info),
                            });
                        }
                    }
                    None => {}
                }
            }
            _ => back_reply(c, tag, body, at),
        }
    }

    /// A batch ended (ReadyForQuery with `status`, or the connection
    /// closed: `None`): write its statements with their transactions.
    fn settle(&mut self, c: &mut Conn, status: Option<(TxStatus, Instant)>, out: &mut Vec<Record>) {
        let done = std::mem::take(&mut c.done);
        let mut implicit: Option<u64> = None;
        for d in done {
            c.seq += 1;
            let verb = d.tag.as_deref().map(|t| t.split(' ').next().unwrap_or(""));
            let begins = matches!(d.tag.as_deref(), Some("BEGIN" | "START TRANSACTION"));
            let txn = match &mut c.txn {
                Some(t) => {
                    t.statements += 1;
                    t.txn
                }
                None if begins => {
                    self.next_txn += 1;
                    c.txn = Some(OpenTxn {
                        txn: self.next_txn,
                        implicit: false,
                        start: d.run.start,
                        statements: 1,
                    });
                    self.next_txn
                }
                None => {
                    // Outside a transaction block: the batch's implicit one.
                    let id = *implicit.get_or_insert_with(|| {
                        self.next_txn += 1;
                        self.next_txn
                    });
                    if c.txn.is_none() {
                        c.txn = Some(OpenTxn {
                            txn: id,
                            implicit: true,
                            start: d.run.start,
                            statements: 0,
                        });
                    }
                    if let Some(t) = &mut c.txn {
                        t.statements += 1;
                    }
                    id
                }
            };
            // COMMIT, ROLLBACK (not to a savepoint), PREPARE TRANSACTION end
            // an explicit transaction.
            let ends = match verb {
                Some("COMMIT") => Some(TxEnd::Commit),
                Some("PREPARE") if d.tag.as_deref() == Some("PREPARE TRANSACTION") => {
                    Some(TxEnd::Commit)
                }
                Some("ROLLBACK") if !rolls_back_to_savepoint(&d.run.sql) => Some(TxEnd::Rollback),
                _ => None,
            };
            let explicit_open = c.txn.as_ref().is_some_and(|t| !t.implicit);
            out.push(Record::Statement(self.statement(
                c,
                d,
                Some(txn),
                status.map(|s| s.0),
            )));
            if let (Some(end), true) = (ends, explicit_open) {
                if let Some(t) = c.txn.take() {
                    let end_us = match out.last() {
                        Some(Record::Statement(s)) => s.end_us,
                        _ => 0,
                    };
                    out.push(self.txn_record(c, t, end_us, end));
                }
            }
        }
        let Some((status, at)) = status else {
            return;
        };
        match (&c.txn, status) {
            // The batch's implicit transaction committed (or failed) here.
            (Some(t), _) if t.implicit => {
                let t = c.txn.take().expect("checked");
                let failed = out.iter().any(|r| {
                    matches!(r, Record::Statement(s) if s.txn == Some(t.txn) && s.error.is_some())
                });
                let end = if failed {
                    TxEnd::Rollback
                } else {
                    TxEnd::Commit
                };
                let end_us = self.us(at);
                out.push(self.txn_record(c, t, end_us, end));
                if status != TxStatus::Idle {
                    // A transaction block opened by something the proxy
                    // did not read as BEGIN.
                    self.open_untagged(c, at);
                }
            }
            (Some(_), TxStatus::Idle) => {
                // Ended by a statement not read as COMMIT or ROLLBACK.
                let t = c.txn.take().expect("checked");
                let end_us = self.us(at);
                out.push(self.txn_record(c, t, end_us, TxEnd::Commit));
            }
            (None, TxStatus::InTransaction | TxStatus::Failed) => self.open_untagged(c, at),
            _ => {}
        }
    }

    fn open_untagged(&mut self, c: &mut Conn, at: Instant) {
        self.next_txn += 1;
        c.txn = Some(OpenTxn {
            txn: self.next_txn,
            implicit: false,
            start: at,
            statements: 0,
        });
    }

    fn txn_record(&self, c: &Conn, t: OpenTxn, end_us: u64, end: TxEnd) -> Record {
        Record::Transaction(Transaction {
            conn: c.id,
            txn: t.txn,
            backend_pid: c.backend_pid,
            implicit: t.implicit,
            start_us: self.us(t.start),
            end_us,
            end,
            statements: t.statements,
        })
    }

    fn statement(
        &self,
        c: &Conn,
        d: Done,
        txn: Option<u64>,
        status: Option<TxStatus>,
    ) -> Statement {
        let run = d.run;
        let rows_affected = match d.tag.as_deref() {
            Some(SUSPENDED) => Some(run.row_count),
            t => t.and_then(codec::tag_rows),
        };
        Statement {
            conn: c.id,
            seq: c.seq,
            backend_pid: c.backend_pid,
            application_name: c.application_name.clone(),
            start_us: self.us(run.start),
            end_us: self.us(d.end),
            protocol: run.protocol,
            statement: run.statement,
            portal: run.portal,
            sql: sqltext::redact(&run.sql).into_owned(),
            params: run.params,
            param_types: run.param_types,
            columns: run
                .columns
                .map(|cols| cols.into_iter().map(|c| c.name).collect()),
            rows_truncated: run.row_count > run.rows.len() as u64,
            rows: run.rows,
            tag: d.tag,
            rows_affected,
            error: d.error,
            txn,
            tx_status: status,
        }
    }
}

/// `ROLLBACK TO [SAVEPOINT] x` (whose tag is also `ROLLBACK`).
fn rolls_back_to_savepoint(sql: &str) -> bool {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(stmts) => stmts.iter().any(|s| {
            matches!(
                s,
                sqlparser::ast::Statement::Rollback {
                    savepoint: Some(_),
                    ..
                }
            )
        }),
        Err(_) => false,
    }
}

fn connect_record(c: &Conn, at_us: u64, error: Option<ErrorInfo>) -> Record {
    Record::Connect(Connect {
        conn: c.id,
        at_us,
        client: c.client.clone(),
        user: c.user.clone(),
        database: c.database.clone(),
        application_name: c.application_name.clone(),
        backend_pid: c.backend_pid,
        error,
    })
}

/// A client message: what the server will owe for it.
fn front_message(c: &mut Conn, tag: u8, body: &[u8], at: Instant) {
    match tag {
        front::QUERY => {
            let sql = codec::Reader::new(body).cstr().unwrap_or("");
            let parts = sqltext::split(sql)
                .into_iter()
                .map(str::to_string)
                .collect();
            c.owed.push_back(Owed::Simple(Simple {
                parts,
                next: 0,
                start: at,
                current: None,
            }));
        }
        front::PARSE => {
            let Ok(p) = codec::read_parse(body) else {
                return;
            };
            c.statements.insert(
                p.name.to_string(),
                Prepared {
                    sql: p.sql.into(),
                    declared: p.param_types,
                    described: None,
                    columns: None,
                },
            );
            c.owed.push_back(Owed::Parse(p.name.to_string()));
        }
        front::BIND => {
            let Ok(b) = codec::read_bind(body) else {
                return;
            };
            let st = c.statements.get(b.statement);
            let mut params = Vec::with_capacity(b.params.len());
            let mut types = Vec::with_capacity(b.params.len());
            for (i, (format, raw)) in b.params.iter().enumerate() {
                let t = st.map_or(0, |s| s.param_type(i));
                params.push(values::decode(t, *format, *raw));
                types.push(
                    values::type_name(t)
                        .map(str::to_string)
                        .or_else(|| (t != 0).then(|| t.to_string())),
                );
            }
            c.portals.insert(
                b.portal.to_string(),
                Portal {
                    statement: b.statement.to_string(),
                    sql: st.map_or_else(|| Arc::from(""), |s| s.sql.clone()),
                    params,
                    param_types: types,
                    result_formats: b.result_formats,
                },
            );
            c.owed.push_back(Owed::Bind(b.portal.to_string()));
        }
        front::DESCRIBE => {
            if let Ok((kind, name)) = codec::read_target(body) {
                c.owed.push_back(if kind == b'S' {
                    Owed::DescribeStatement(name.to_string())
                } else {
                    Owed::DescribePortal(name.to_string())
                });
            }
        }
        front::EXECUTE => {
            let Ok((portal, _)) = codec::read_execute(body) else {
                return;
            };
            let run = match c.portals.get(portal) {
                Some(p) => Running {
                    protocol: Protocol::Extended,
                    statement: (!p.statement.is_empty()).then(|| p.statement.clone()),
                    portal: (!portal.is_empty()).then(|| portal.to_string()),
                    sql: p.sql.to_string(),
                    params: p.params.clone(),
                    param_types: p.param_types.clone(),
                    start: at,
                    columns: None,
                    result_formats: p.result_formats.clone(),
                    rows: Vec::new(),
                    row_count: 0,
                },
                None => Running {
                    portal: Some(portal.to_string()),
                    ..Running::new(Protocol::Extended, at)
                },
            };
            c.owed.push_back(Owed::Execute(run));
        }
        front::CLOSE => {
            if let Ok((kind, name)) = codec::read_target(body) {
                if kind == b'S' {
                    c.statements.remove(name);
                } else {
                    c.portals.remove(name);
                }
            }
            c.owed.push_back(Owed::Close);
        }
        front::SYNC => c.owed.push_back(Owed::Sync),
        front::FUNCTION_CALL => c.owed.push_back(Owed::Function),
        _ => {}
    }
}

/// A reply other than an error or ReadyForQuery.
fn back_reply(c: &mut Conn, tag: u8, body: &[u8], at: Instant) {
    match tag {
        back::PARSE_COMPLETE | back::CLOSE_COMPLETE => {
            if matches!(c.owed.front(), Some(Owed::Parse(_) | Owed::Close)) {
                c.owed.pop_front();
            }
        }
        back::BIND_COMPLETE => {
            if let Some(Owed::Bind(name)) = c.owed.front() {
                // Columns described for an earlier Bind of this name are stale.
                c.portal_columns.remove(name);
                c.owed.pop_front();
            }
        }
        back::PARAMETER_DESCRIPTION => {
            if let Some(Owed::DescribeStatement(name)) = c.owed.front() {
                let types = codec::read_parameter_description(body).ok();
                if let Some(st) = c.statements.get_mut(name) {
                    st.described = types;
                }
            }
        }
        back::ROW_DESCRIPTION => {
            let cols = codec::read_row_description(body).ok();
            match c.owed.front_mut() {
                Some(Owed::DescribeStatement(name)) => {
                    if let Some(st) = c.statements.get_mut(name.as_str()) {
                        st.columns = cols;
                    }
                    c.owed.pop_front();
                }
                Some(Owed::DescribePortal(name)) => {
                    if let Some(cols) = cols {
                        c.portal_columns.insert(name.clone(), cols);
                    }
                    c.owed.pop_front();
                }
                Some(Owed::Simple(s)) => s.current().columns = cols,
                _ => {}
            }
        }
        back::NO_DATA => {
            if matches!(
                c.owed.front(),
                Some(Owed::DescribeStatement(_) | Owed::DescribePortal(_))
            ) {
                c.owed.pop_front();
            }
        }
        back::DATA_ROW => match c.owed.front_mut() {
            Some(Owed::Simple(s)) => s.current().row(body),
            Some(Owed::Execute(run)) => {
                if run.columns.is_none() {
                    run.columns = described_columns(
                        c_portal_columns(&c.portal_columns, run),
                        run,
                        &c.statements,
                    );
                }
                run.row(body);
            }
            _ => {}
        },
        back::COMMAND_COMPLETE | back::EMPTY_QUERY | back::PORTAL_SUSPENDED => {
            let tag_text = match tag {
                back::COMMAND_COMPLETE => codec::Reader::new(body).cstr().ok().map(str::to_string),
                back::PORTAL_SUSPENDED => Some(SUSPENDED.to_string()),
                _ => Some(String::new()),
            };
            match c.owed.front_mut() {
                Some(Owed::Simple(s)) => {
                    let run = match s.current.take() {
                        Some(r) => r,
                        None => {
                            s.current();
                            s.current.take().expect("just made")
                        }
                    };
                    s.next += 1;
                    c.done.push(Done {
                        run,
                        end: at,
                        tag: tag_text,
                        error: None,
                    });
                }
                Some(Owed::Execute(_)) => {
                    if let Some(Owed::Execute(mut run)) = c.owed.pop_front() {
                        if run.columns.is_none() {
                            run.columns = described_columns(
                                c_portal_columns(&c.portal_columns, &run),
                                &run,
                                &c.statements,
                            );
                        }
                        c.done.push(Done {
                            run,
                            end: at,
                            tag: tag_text,
                            error: None,
                        });
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

fn c_portal_columns<'a>(
    portal_columns: &'a HashMap<String, Vec<Column>>,
    run: &Running,
) -> Option<&'a Vec<Column>> {
    portal_columns.get(run.portal.as_deref().unwrap_or(""))
}

/// The columns of an Execute's rows: the portal's description (formats
/// included), else the statement's with the Bind's formats.
fn described_columns(
    portal: Option<&Vec<Column>>,
    run: &Running,
    statements: &HashMap<String, Prepared>,
) -> Option<Vec<Column>> {
    if let Some(p) = portal {
        return Some(p.clone());
    }
    statements
        .get(run.statement.as_deref().unwrap_or(""))
        .filter(|s| *s.sql == *run.sql)
        .and_then(|s| s.columns.clone())
}
