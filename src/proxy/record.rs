//! The record the proxy writes (`racelab proxy --record FILE`), one JSON
//! object per line, each with a `type`: `proxy` (the first line: when and
//! where), `connect`, `statement`, `transaction`, `notification`,
//! `cancel`, `disconnect`. Times are microseconds since the proxy started
//! (`started_at` on the first line). A statement line carries its SQL,
//! bound parameters (decoded for the common types), the rows the client
//! received (at most `relay::ROWS_PER_RESULT`), the command tag and rows
//! affected or the error (SQLSTATE and message), the transaction it ran
//! in and the backend pid. No password, no authentication message and no
//! password literal of a role statement is ever written (see
//! `recorder::redact`).
//!
//! The same types are read back (`read_jsonl`) by the trace analysis and
//! by tests. `Sink` is where records go: a JSON Lines file, memory, both.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of this record format (the `proxy` line's `format`).
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Proxy(ProxyInfo),
    Connect(Connect),
    Statement(Statement),
    Transaction(Transaction),
    Notification(Notification),
    Cancel(Cancel),
    Disconnect(Disconnect),
}

/// The first line: what recorded, since when, between what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub format: u32,
    pub racelab_version: String,
    /// RFC 3339, UTC: time 0 of every `*_us` below.
    pub started_at: String,
    /// The address clients connect to.
    pub listen: String,
    /// The server's address (no credentials: the proxy has none).
    pub upstream: String,
}

/// A client connection whose start-up ended: ready (`backend_pid` set),
/// or refused (`error`: the server's, e.g. a failed authentication, or the
/// proxy's when the upstream could not be reached).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connect {
    pub conn: u64,
    pub at_us: u64,
    /// The client's address.
    pub client: String,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    pub backend_pid: Option<i32>,
    pub error: Option<ErrorInfo>,
}

/// A server error as the client received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub sqlstate: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How a statement reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// A Query message.
    Simple,
    /// Parse / Bind / Execute.
    Extended,
}

/// One statement executed (a statement of a simple Query, or an Execute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub conn: u64,
    /// Its number on the connection, from 1.
    pub seq: u64,
    pub backend_pid: Option<i32>,
    pub application_name: Option<String>,
    /// When the proxy forwarded it, and when its result (or error) came back.
    pub start_us: u64,
    pub end_us: u64,
    pub protocol: Protocol,
    /// The prepared statement's name (extended protocol; absent: unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The portal's name (extended protocol; absent: unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    pub sql: String,
    /// Bound parameter values, `$1` first.
    pub params: Vec<Value>,
    /// Their types as the client declared or the server inferred (`null`:
    /// unknown to the proxy), as OIDs decoded to names where known.
    pub param_types: Vec<Option<String>>,
    /// The result's column names, when it returned rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The rows the client received, at most `relay::ROWS_PER_RESULT`.
    pub rows: Vec<Vec<Value>>,
    /// More rows were returned than `rows` holds (see `rows_affected`).
    #[serde(default)]
    pub rows_truncated: bool,
    /// The command tag, e.g. `UPDATE 1`; absent after an error.
    pub tag: Option<String>,
    /// The tag's row count (rows inserted, updated, deleted, selected).
    pub rows_affected: Option<u64>,
    pub error: Option<ErrorInfo>,
    /// The transaction (`Transaction::txn`) it ran in.
    pub txn: Option<u64>,
    /// The connection's transaction status after the statement's batch:
    /// `idle`, `in_transaction` or `failed`.
    pub tx_status: Option<TxStatus>,
}

/// ReadyForQuery's transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    pub fn of(byte: u8) -> Option<TxStatus> {
        match byte {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InTransaction),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxEnd {
    Commit,
    Rollback,
    /// The connection closed inside it (the server rolled it back).
    Disconnect,
}

/// A transaction of one connection: explicit (`BEGIN` ... `COMMIT`) or
/// implicit (statements outside one, committed together at the Sync or
/// at the end of their Query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub conn: u64,
    /// Its number among the record's transactions, from 1.
    pub txn: u64,
    pub backend_pid: Option<i32>,
    pub implicit: bool,
    pub start_us: u64,
    pub end_us: u64,
    pub end: TxEnd,
    pub statements: u64,
}

/// A NOTIFY delivered to a listening client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub conn: u64,
    pub at_us: u64,
    pub channel: String,
    pub payload: String,
    /// The notifying backend.
    pub from_pid: i32,
}

/// A CancelRequest a client sent through the proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancel {
    pub at_us: u64,
    pub backend_pid: i32,
    /// Its key was one of a connection through this proxy, and it went on.
    pub forwarded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disconnect {
    pub conn: u64,
    pub at_us: u64,
    pub backend_pid: Option<i32>,
    /// The relay's own failure, if it ended on one.
    pub error: Option<String>,
}

/// Where records go. Called on the recorder's thread only.
pub trait Sink: Send {
    fn record(&mut self, r: &Record) -> std::io::Result<()>;
    /// Called when no event is waiting: make what was recorded visible.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// JSON Lines into a writer (a file, buffered).
pub struct JsonLines<W: Write + Send> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines {
            out,
            line: Vec::with_capacity(1024),
        }
    }
}

impl<W: Write + Send> Sink for JsonLines<W> {
    fn record(&mut self, r: &Record) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, r)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Records kept in memory, shared with whoever reads them (a race's trace);
/// at most `limit` statements (then `dropped` counts the rest).
#[derive(Clone, Default)]
pub struct Memory {
    inner: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    records: Vec<Record>,
    limit: usize,
    dropped: u64,
}

impl Memory {
    pub fn new(limit: usize) -> Memory {
        Memory {
            inner: Arc::new(Mutex::new(Kept {
                records: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    /// Take every record kept so far (and how many were dropped since the
    /// last take), leaving none.
    pub fn take(&self) -> (Vec<Record>, u64) {
        let mut k = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = std::mem::take(&mut k.dropped);
        (std::mem::take(&mut k.records), dropped)
    }
}

impl Sink for Memory {
    fn record(&mut self, r: &Record) -> std::io::Result<()> {
        let mut k = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if k.records.len() >= k.limit {
            k.dropped += 1;
        } else {
            k.records.push(r.clone());
        }
        Ok(())
    }
}

/// Several sinks at once.
pub struct Tee(pub Vec<Box<dyn Sink>>);

impl Sink for Tee {
    fn record(&mut self, r: &Record) -> std::io::Result<()> {
        for s in &mut self.0 {
            s.record(r)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        for s in &mut self.0 {
            s.flush()?;
        }
        Ok(())
    }
}

/// Read a JSON Lines record back; a line that is not a record is an error
/// naming its number.
pub fn read_jsonl(text: &str) -> anyhow::Result<Vec<Record>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("line {}: not a proxy record: {e}", i + 1))
        })
        .collect()
}
