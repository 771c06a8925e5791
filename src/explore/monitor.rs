//! What the scheduler asks the server about the buyers' backends while a
//! schedule runs: which of them wait on a lock another buyer holds, and
//! whether a failed statement's backend has finished aborting. A trait,
//! so that the scheduler's state machine can be unit-tested against a
//! scripted server; `PgConnection` (the monitor connection) is the real one.

use anyhow::Context as _;
use sqlx::PgConnection;

/// The scheduler's questions to the server, by backend pid.
pub(crate) trait Monitor {
    /// For each of `pids`, in order: whether it waits on a lock held by a
    /// backend of `among` (PostgreSQL's isolation tester's question), and
    /// which of `among` hold what it waits for, ascending.
    async fn blocked(
        &mut self,
        pids: &[i32],
        among: &[i32],
    ) -> anyhow::Result<Vec<(bool, Vec<i32>)>>;

    /// Whether every one of `pids` has finished its last statement (idle,
    /// in a transaction or not).
    async fn idle(&mut self, pids: &[i32]) -> anyhow::Result<bool>;
}

impl Monitor for PgConnection {
    async fn blocked(
        &mut self,
        pids: &[i32],
        among: &[i32],
    ) -> anyhow::Result<Vec<(bool, Vec<i32>)>> {
        sqlx::query_as(
            "SELECT pg_isolation_test_session_is_blocked(t.p, $2::int4[]), \
                    ARRAY(SELECT b FROM unnest(pg_blocking_pids(t.p)) AS b \
                          WHERE b = ANY($2::int4[]) ORDER BY b) \
             FROM unnest($1::int4[]) WITH ORDINALITY AS t(p, n) ORDER BY t.n",
        )
        .bind(pids)
        .bind(among)
        .fetch_all(&mut *self)
        .await
        .context("asking the server which buyers wait on a lock")
    }

    async fn idle(&mut self, pids: &[i32]) -> anyhow::Result<bool> {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE pid = ANY($1::int4[]) AND state NOT IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')",
        )
        .bind(pids)
        .fetch_one(&mut *self)
        .await
        .context("asking the server whether a buyer's backend is idle")?;
        Ok(busy == 0)
    }
}
