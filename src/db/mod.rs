//! Where the server comes from (embedded throwaway cluster, kept cluster, or
//! an external URL), connections, the lab schema (migrations, ownership
//! marker, reset, seed) and the post-run audit.
//!
//! INTERFACE PLACEHOLDER: replaced by the real implementation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;

pub mod audit;
pub use audit::{Audit, Verdict};

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub database_url: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub schema: String,
    pub durable: bool,
    pub connect_timeout: Duration,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Embedded,
    Kept,
    External,
}

#[derive(Debug, Clone)]
pub struct ProductSeed {
    pub id: i64,
    pub name: String,
    pub stock: i64,
}

pub struct Database {}

impl Database {
    pub async fn open(_opts: &DbOptions) -> anyhow::Result<Database> {
        unimplemented!()
    }
    pub fn kind(&self) -> DbKind {
        unimplemented!()
    }
    pub fn server_version(&self) -> &str {
        unimplemented!()
    }
    pub fn durable(&self) -> bool {
        unimplemented!()
    }
    pub fn connect_options(&self) -> PgConnectOptions {
        unimplemented!()
    }
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        unimplemented!()
    }
    pub async fn prepare_lab(&self, _products: &[ProductSeed]) -> anyhow::Result<()> {
        unimplemented!()
    }
    pub async fn audit(&self, _succeeded_attempts: &[i64]) -> anyhow::Result<Audit> {
        unimplemented!()
    }
    pub async fn shutdown(self) -> anyhow::Result<()> {
        unimplemented!()
    }
}
