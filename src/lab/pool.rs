//! The shared pool of `--connections N`: N connections opened before the
//! race, lent to buyers one attempt at a time, first come first served.
//!
//! Not sqlx's `Pool`, for two reasons. It pings every connection it gets
//! back (one more round trip per attempt, on the hot path). And when that
//! ping fails it drops the connection quietly and reconnects on the next
//! acquire, retrying a refused connection until the acquire timeout: when
//! the server died between attempts, every buyer waited for a server that
//! was gone instead of the run stopping. Here a connection is replaced
//! only when the nemesis took it on purpose (`--nemesis`); otherwise the
//! attempt that loses one reports it, and the race stops.

use std::sync::Mutex;

use sqlx::PgConnection;
use tokio::sync::{Semaphore, SemaphorePermit};

/// A fixed set of connections shared by the buyers.
#[derive(Debug)]
pub struct SharedPool {
    free: Mutex<Vec<PgConnection>>,
    /// One permit per connection in `free`; tokio's semaphore is fair, so
    /// buyers get connections in the order they asked.
    permits: Semaphore,
}

/// A connection lent for one attempt. Give it back with
/// [`SharedPool::give_back`]; dropping it instead (a lost connection, or a
/// buyer stopped mid-attempt) closes the connection for good.
#[derive(Debug)]
pub struct Lease<'a> {
    pub conn: PgConnection,
    permit: SemaphorePermit<'a>,
}

impl SharedPool {
    pub fn new(conns: Vec<PgConnection>) -> SharedPool {
        SharedPool {
            permits: Semaphore::new(conns.len()),
            free: Mutex::new(conns),
        }
    }

    /// Wait for a connection. `None` once the pool has lost connections
    /// and has none left to lend.
    pub async fn lease(&self) -> Option<Lease<'_>> {
        let permit = self.permits.acquire().await.ok()?;
        let conn = self.lock().pop()?;
        Some(Lease { conn, permit })
    }

    /// Take an idle connection out of the pool for good (after the race).
    pub fn take(&self) -> Option<PgConnection> {
        let permit = self.permits.try_acquire().ok()?;
        permit.forget();
        self.lock().pop()
    }

    /// Learn the backend pid of every idle connection (before the race).
    pub async fn register_all(
        &self,
        counters: &super::nemesis::Counters,
    ) -> Result<(), sqlx::Error> {
        let mut conns = std::mem::take(&mut *self.lock());
        let mut result = Ok(());
        for conn in &mut conns {
            result = counters.register(conn).await;
            if result.is_err() {
                break;
            }
        }
        self.lock().append(&mut conns);
        result
    }

    /// Return a connection after an attempt that left it usable.
    pub fn give_back(&self, lease: Lease<'_>) {
        let Lease { conn, permit } = lease;
        self.lock().push(conn);
        // Only now may the next buyer take it.
        drop(permit);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PgConnection>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}
