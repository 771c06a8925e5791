//! The service behind the wire proxy (`racelab http --service`,
//! `--db-proxy`) as the result records it: where it ran, where its output
//! went, and the trace of its transactions with the anomalies found in
//! them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The service racelab relayed to its database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceInfo {
    /// `--service CMD` as given (absent with `--db-proxy`).
    pub command: Option<String>,
    /// The file the service's output went to (with `--service`).
    pub log: Option<String>,
    /// Where the proxy listened: the host and port of the service's
    /// `DATABASE_URL`.
    pub proxy: String,
    /// The server behind the proxy: `embedded` or `external`.
    pub database: String,
    /// What the service's transactions did in this race (`--trace`).
    pub trace: Option<ServiceTrace>,
}

/// The service's statements during one race, tied to the requests that
/// caused them, and the anomalies their facts show.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceTrace {
    /// How statements were tied to requests: `connection_and_time` (a
    /// request owns the statements of the connection it used while it was
    /// in flight, up to the last one before its answer).
    pub tie: String,
    pub requests: u64,
    pub connections: u64,
    pub statements: u64,
    pub transactions: u64,
    /// Statements not tied to any request (e.g. a pool's own).
    pub unattributed: u64,
    /// `steps` holds the first statements only.
    pub steps_truncated: bool,
    pub steps: Vec<ServiceStep>,
    pub anomalies: Vec<ServiceAnomaly>,
}

/// One statement of the service, as the timeline shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStep {
    /// Microseconds from the release of the buyers (negative: before).
    pub start_us: i64,
    pub end_us: i64,
    /// The request it was tied to.
    pub buyer: Option<u32>,
    pub attempt: Option<i64>,
    /// The client connection through the proxy, its backend and transaction.
    pub conn: u64,
    pub backend_pid: Option<i32>,
    pub txn: Option<u64>,
    pub sql: String,
    pub params: Vec<Value>,
    /// The rows it returned (the first few).
    pub rows: Vec<Vec<Value>>,
    pub tag: Option<String>,
    /// SQLSTATE and message.
    pub error: Option<String>,
    /// `read`, `write`, `begin`, `commit`, `rollback` or `other`.
    pub role: String,
    /// What it read or wrote, e.g. `products.stock = 5 (id=1)`.
    pub what: Option<String>,
}

/// An anomaly in the service's transactions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceAnomaly {
    /// `lost_update` (P4), `read_skew` (G-single) or `scope_based` (the
    /// check and the write in different transactions).
    pub kind: String,
    /// E.g. `P4 lost update`.
    pub name: String,
    /// The weakest PostgreSQL isolation level that prevents it; null when
    /// none does (scope-based: one transaction, or a guarded write, does).
    pub prevented_at: Option<String>,
    /// The row: `products.stock (id=1)`.
    pub row: String,
    pub buyer: Option<u32>,
    pub attempt: Option<i64>,
    /// The read the write relied on, and the write.
    pub read: ServiceAccess,
    pub write: ServiceAccess,
    /// Other requests' writes of the row that committed in between.
    pub overtaken_by: Vec<ServiceAccess>,
}

/// A statement an anomaly names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceAccess {
    pub buyer: Option<u32>,
    pub attempt: Option<i64>,
    pub txn: Option<u64>,
    /// When it ran (a write: when its transaction committed), from the release.
    pub at_us: i64,
    pub sql: String,
    /// The value read or written, when known.
    pub value: Option<String>,
}
