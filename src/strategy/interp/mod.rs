//! Interpreting a `Program`: one attempt of one buyer on one connection
//! (`Session::attempt`), with automatic retries of conflicts, and the
//! `\setup` block (`run_setup`).
//!
//! This is the hot path. Variables live in a `Vec` of slots resolved at
//! parse time; SQL strings were built at parse time, so the connection's
//! prepared-statement cache parses each once; text values reuse their
//! `String`; tracing costs one `is_some` check per step when it is off.
//! Anything that formats a message happens only on a failure path.
//!
//! - `session`: a buyer's session, its variables and the attempt loop
//!   (tries, conflicts, backoff, rollback).
//! - `sql`: one SQL statement: bound, sent (or its reply dropped by the
//!   nemesis), its rows and `\gset` values stored.
//! - `redis`: one `\redis` command on the buyer's Redis connection.
//! - `faults`: racelab's deadline on every reply and the faults it injects.
//! - `end`: how a failed step ends the try.
//! - `gate`: the `StepGate` explore's scheduler holds statements at; without
//!   one that costs one `is_some` check per statement, like tracing.
//! - `setup`: the `\setup` block.

mod end;
mod faults;
mod gate;
mod redis;
mod session;
mod setup;
mod sql;

pub use faults::{Injected, SessionFaults};
pub use gate::{Bound, Boundary, StepGate, TxEffect};
pub use session::{RedisConn, Session};
pub use setup::{run_setup, setup_calls, SetupCall};

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

    use sqlx::PgConnection;

    use super::*;
    use crate::strategy::AttemptCtx;

    /// The engine spawns buyers with `tokio::spawn`: the attempt and setup
    /// futures must be `Send + 'static` when they own program and connection.
    /// (Calling `Query::execute(&mut *conn)` instead of `conn.execute(q)`
    /// breaks this with a "not general enough" error.)
    #[test]
    fn futures_are_spawnable() {
        fn assert_send<T: Send + 'static>(_: T) {}
        let prog = std::sync::Arc::new(crate::strategy::parse("t.sql", "SELECT 1;").unwrap());
        let ctx = AttemptCtx {
            product: 1,
            qty: 1,
            buyer: 1,
            attempt: 1,
            think_ms: 0,
            max_tries: 1,
        };
        struct Open;
        impl StepGate for Open {
            fn wait<'a>(
                &'a mut self,
                _: Boundary<'a>,
            ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
                Box::pin(async {})
            }
        }
        assert_send(async move {
            let mut conn: Option<PgConnection> = None;
            if let Some(c) = conn.as_mut() {
                prog.session(1).attempt(c, &ctx, None).await;
                // Gated, as explore runs it.
                let mut events = Vec::new();
                let mut gated = prog.session(1).with_gate(Box::new(Open));
                gated.attempt(c, &ctx, Some(&mut events)).await;
                let _ = run_setup(&prog, c, &[]).await;
            }
        });
    }
}
