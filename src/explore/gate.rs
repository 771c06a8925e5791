//! The proxy's gate while a service is explored: every batch a connection
//! sends that runs something (a simple Query, an Execute, a FunctionCall)
//! is held and handed to the scheduler with the request it belongs to;
//! batches that only prepare or describe, a lone BEGIN (it takes neither a
//! snapshot nor a lock), and everything outside a schedule pass at once.
//!
//! A connection belongs to the request that used it first in the
//! schedule: the request being admitted (each request is let in only once
//! the one before it has parked its first statement or answered), else the
//! request granted last, the only one running the service's code. A
//! request's connections are let go when it answers, so that a pool may
//! hand them to another.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::outcome::AttemptReport;
use crate::proxy::codec::{self, front};
use crate::proxy::relay::{Batch, ConnId, Gate};
use crate::proxy::sqltext;

/// A statement batch a request is parked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub conn: ConnId,
    /// The batch's SQL (statements joined by `; `), as the service wrote it.
    pub sql: String,
    /// Its n-th held batch in this schedule (from 1).
    pub ordinal: usize,
}

/// What the gate and the requests tell the scheduler.
#[derive(Debug)]
pub enum Event {
    /// A request's next batch is held until `grant` is sent (or dropped).
    Parked {
        request: u32,
        at: Parked,
        grant: oneshot::Sender<()>,
    },
    /// A request got its answer.
    Answered { request: u32, report: AttemptReport },
}

#[derive(Default)]
struct State {
    scheduling: bool,
    owner: HashMap<ConnId, u32>,
    admitting: Option<u32>,
    last_granted: Option<u32>,
    answered: BTreeSet<u32>,
    held: HashMap<u32, usize>,
    pids: HashMap<ConnId, i32>,
    /// Prepared statements by connection and name: their SQL.
    prepared: HashMap<(ConnId, String), String>,
    /// Batches of a schedule that no request could be tied to.
    unattributed: u64,
}

/// The gate of an explored service (see the module docs).
pub struct ServiceGate {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<Event>,
}

impl ServiceGate {
    pub fn new() -> (ServiceGate, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            ServiceGate {
                state: Mutex::new(State::default()),
                tx,
            },
            rx,
        )
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Where the requests tell the scheduler that they answered.
    pub fn sender(&self) -> mpsc::UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Start holding batches for a schedule.
    pub fn begin(&self) {
        self.with(|s| {
            s.scheduling = true;
            s.owner.clear();
            s.admitting = None;
            s.last_granted = None;
            s.answered.clear();
            s.held.clear();
            s.unattributed = 0;
        });
    }

    /// Let everything pass again. Returns the batches no request was tied to.
    pub fn end(&self) -> u64 {
        self.with(|s| {
            s.scheduling = false;
            s.admitting = None;
            s.unattributed
        })
    }

    /// The request being admitted (`None` once every one is in).
    pub fn admitting(&self, request: Option<u32>) {
        self.with(|s| s.admitting = request);
    }

    pub fn granted(&self, request: u32) {
        self.with(|s| s.last_granted = Some(request));
    }

    /// A request answered: its connections are free for others.
    pub fn answered(&self, request: u32) {
        self.with(|s| {
            s.answered.insert(request);
            s.owner.retain(|_, r| *r != request);
        });
    }

    /// The backend of a connection, if the server has said it.
    pub fn pid(&self, conn: ConnId) -> Option<i32> {
        self.with(|s| s.pids.get(&conn).copied())
    }

    /// Every request's backends: `(pid, request)`.
    pub fn backends(&self) -> Vec<(i32, u32)> {
        self.with(|s| {
            s.owner
                .iter()
                .filter_map(|(c, r)| Some((*s.pids.get(c)?, *r)))
                .collect()
        })
    }
}

/// Whether a batch runs something (else it only prepares or describes).
fn runs(msgs: &[(u8, &[u8])]) -> bool {
    msgs.iter()
        .any(|(t, _)| matches!(*t, front::QUERY | front::EXECUTE | front::FUNCTION_CALL))
}

/// The SQL statements a batch runs, in order; a named prepared statement
/// is looked up in what the connection prepared.
fn statements(s: &mut State, conn: ConnId, msgs: &[(u8, &[u8])]) -> Vec<String> {
    let mut out = Vec::new();
    let mut unnamed: Option<String> = None;
    let mut bound: Option<String> = None;
    for (tag, body) in msgs {
        match *tag {
            front::QUERY => {
                let text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body));
                out.extend(sqltext::split(&text).into_iter().map(str::to_string));
            }
            front::PARSE => {
                if let Ok(p) = codec::read_parse(body) {
                    if p.name.is_empty() {
                        unnamed = Some(p.sql.to_string());
                    } else {
                        s.prepared
                            .insert((conn, p.name.to_string()), p.sql.to_string());
                    }
                }
            }
            front::BIND => {
                if let Ok(b) = codec::read_bind(body) {
                    bound = if b.statement.is_empty() {
                        unnamed.clone()
                    } else {
                        s.prepared.get(&(conn, b.statement.to_string())).cloned()
                    };
                }
            }
            front::EXECUTE => {
                out.push(
                    bound
                        .clone()
                        .unwrap_or_else(|| "(a statement prepared earlier)".into()),
                );
            }
            front::FUNCTION_CALL => out.push("(a function call)".into()),
            _ => {}
        }
    }
    out
}

/// A batch that only opens a transaction: it takes no snapshot and no
/// lock, so where it runs does not matter.
fn only_begin(stmts: &[String]) -> bool {
    !stmts.is_empty()
        && stmts
            .iter()
            .all(|s| matches!(sqltext::first_word(s).as_deref(), Some("BEGIN" | "START")))
}

impl Gate for ServiceGate {
    fn admit<'a>(&'a self, batch: Batch<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let msgs = batch.messages();
        let conn = batch.conn;
        let parked = self.with(|s| {
            let stmts = statements(s, conn, &msgs);
            if !s.scheduling || !runs(&msgs) || only_begin(&stmts) {
                return None;
            }
            let request = s
                .owner
                .get(&conn)
                .copied()
                .or(s.admitting)
                .or(s.last_granted.filter(|r| !s.answered.contains(r)));
            let Some(request) = request.filter(|r| !s.answered.contains(r)) else {
                s.unattributed += 1;
                return None;
            };
            s.owner.insert(conn, request);
            let n = s.held.entry(request).or_default();
            *n += 1;
            let (grant, granted) = oneshot::channel();
            let at = Parked {
                conn,
                sql: stmts.join("; "),
                ordinal: *n,
            };
            self.tx
                .send(Event::Parked { request, at, grant })
                .ok()
                .map(|()| granted)
        });
        Box::pin(async move {
            if let Some(granted) = parked {
                // A dropped grant (the schedule was given up) lets it pass.
                let _ = granted.await;
            }
        })
    }

    fn backend(&self, conn: ConnId, pid: i32) {
        self.with(|s| {
            s.pids.insert(conn, pid);
        });
    }

    fn closed(&self, conn: ConnId) {
        self.with(|s| {
            s.pids.remove(&conn);
            s.owner.remove(&conn);
            s.prepared.retain(|(c, _), _| *c != conn);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn holds_what_runs_and_ties_it_to_the_request_admitted() {
        let (gate, mut rx) = ServiceGate::new();
        let q = msg(b'Q', b"SELECT 1\0");
        // Outside a schedule: passes.
        gate.admit(Batch { conn: 1, bytes: &q }).await;
        assert!(rx.try_recv().is_err());
        gate.begin();
        gate.admitting(Some(2));
        // A lone BEGIN passes.
        let begin = msg(b'Q', b"BEGIN\0");
        gate.admit(Batch {
            conn: 1,
            bytes: &begin,
        })
        .await;
        assert!(rx.try_recv().is_err());
        // A named statement prepared alone passes, its Execute is held
        // with its SQL.
        let mut parse = msg(b'P', b"s1\0UPDATE t SET a = $1\0\0\0");
        parse.extend(msg(b'S', b""));
        gate.admit(Batch {
            conn: 1,
            bytes: &parse,
        })
        .await;
        assert!(rx.try_recv().is_err());
        let mut exec = msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x015\0\0");
        exec.extend(msg(b'E', b"\0\0\0\0\0"));
        exec.extend(msg(b'S', b""));
        let held = gate.admit(Batch {
            conn: 1,
            bytes: &exec,
        });
        let waiter = tokio::spawn(async move {
            match rx.recv().await {
                Some(Event::Parked { request, at, grant }) => {
                    let _ = grant.send(());
                    (request, at)
                }
                other => panic!("{other:?}"),
            }
        });
        held.await;
        let (request, at) = waiter.await.unwrap();
        assert_eq!(request, 2);
        assert_eq!(at.sql, "UPDATE t SET a = $1");
        assert_eq!(at.ordinal, 1);
        assert_eq!(gate.end(), 0);
    }
}
