//! Faults racelab injects into its own race (`--nemesis KIND:RATE`,
//! `--retry-unknown`): what was asked (`Faults`, parsed from the specs),
//! what was done (`Counters`), and the terminator, a separate connection
//! that ends random buyer backends while the race runs. What a buyer does
//! about a lost connection (reconnect, resubmit) is the lanes' and the
//! attempt loop's; the reply a buyer drops is the interpreter's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::result::{FaultInfo, NemesisInfo};

/// Resubmissions of one unknown attempt with a bare `--retry-unknown`.
pub const DEFAULT_RETRY_UNKNOWN: u32 = 3;

/// What to inject, all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// `terminate:RATE`: buyer backends terminated per second; 0 is off.
    pub terminate_per_s: f64,
    /// `drop-reply:RATE`: the probability (0..1) that a buyer drops its
    /// connection right after sending the statement that commits.
    pub drop_reply: f64,
    /// `--retry-unknown`: resubmissions of an unknown attempt, under the
    /// same attempt id; 0 is off.
    pub retry_unknown: u32,
}

impl Faults {
    /// Whether anything is injected or resubmitted.
    pub fn any(&self) -> bool {
        self.terminate_per_s > 0.0 || self.drop_reply > 0.0 || self.retry_unknown > 0
    }

    /// Whether buyers lose connections on purpose, and so reconnect
    /// instead of ending the race.
    pub fn reconnects(&self) -> bool {
        self.terminate_per_s > 0.0 || self.drop_reply > 0.0
    }

    /// Add one `--nemesis KIND:RATE`; Err says what is wrong and how to
    /// fix it, in one line.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), String> {
        const KINDS: &str = "terminate:RATE (backends per second) or drop-reply:P (0..1)";
        let Some((kind, rate)) = spec.split_once(':') else {
            return Err(format!(
                "--nemesis `{spec}`: expected KIND:RATE, e.g. terminate:5 or drop-reply:0.3 ({KINDS})"
            ));
        };
        let value: f64 = match rate.trim().parse() {
            Ok(v) if f64::is_finite(v) => v,
            _ => {
                return Err(format!(
                    "--nemesis `{spec}`: the rate `{rate}` is not a number, e.g. {kind}:{}",
                    if kind == "drop-reply" { "0.3" } else { "5" }
                ))
            }
        };
        match kind {
            "terminate" => {
                if !(value > 0.0 && value <= 10_000.0) {
                    return Err(format!(
                        "--nemesis `{spec}`: terminate's rate is backends per second, \
                         more than 0 and at most 10000, e.g. terminate:5"
                    ));
                }
                self.terminate_per_s = value;
            }
            "drop-reply" => {
                if !(value > 0.0 && value <= 1.0) {
                    return Err(format!(
                        "--nemesis `{spec}`: drop-reply's rate is a probability, \
                         more than 0 and at most 1, e.g. drop-reply:0.3"
                    ));
                }
                self.drop_reply = value;
            }
            _ => {
                let hint = crate::suggest::closest(kind, ["terminate", "drop-reply"])
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                return Err(format!(
                    "--nemesis `{spec}`: unknown kind `{kind}`; {hint}kinds: {KINDS}"
                ));
            }
        }
        Ok(())
    }
}

/// What the nemesis did in one race, counted on the fault paths only.
#[derive(Debug, Default)]
pub struct Counters {
    pub terminated: AtomicU64,
    pub dropped_replies: AtomicU64,
    pub reconnects: AtomicU64,
    /// The backend pids of the buyers' connections (the terminator's
    /// victims: racelab's own buyers, nothing else).
    pids: Mutex<Vec<i32>>,
}

/// A snapshot of `Counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    pub terminated: u64,
    pub dropped_replies: u64,
    pub reconnects: u64,
}

impl Counters {
    /// Start a race from zero.
    pub fn reset(&self) {
        self.terminated.store(0, Ordering::Relaxed);
        self.dropped_replies.store(0, Ordering::Relaxed);
        self.reconnects.store(0, Ordering::Relaxed);
        self.lock().clear();
    }

    pub fn done(&self) -> Done {
        Done {
            terminated: self.terminated.load(Ordering::Relaxed),
            dropped_replies: self.dropped_replies.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Learn the backend pid of a buyer's connection (one round trip, only
    /// when the terminator runs).
    pub async fn register(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?;
        self.lock().push(pid);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<i32>> {
        self.pids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Terminate random buyer backends at `per_s` per second (exponential
/// gaps, seeded) until dropped: the race drops it when its buyers are
/// done. Only backends whose pid a buyer registered, and that still run
/// as racelab, are ever terminated. If its own connection fails, it stops
/// quietly: the buyers' race goes on without it.
pub async fn terminator(
    connect: PgConnectOptions,
    per_s: f64,
    seed: u64,
    limit: Duration,
    counters: &Counters,
) {
    let connect = connect.application_name("racelab-nemesis");
    let Ok(Ok(mut conn)) = tokio::time::timeout(limit, connect.connect()).await else {
        return;
    };
    crate::db::keepalive::enable_for(&connect);
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    loop {
        // Exponential gaps: a Poisson process of `per_s` terminations a second.
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        tokio::time::sleep(Duration::from_secs_f64(-u.ln() / per_s)).await;
        let pids = counters.lock().clone();
        if pids.is_empty() {
            continue;
        }
        let killed = sqlx::query_scalar::<_, bool>(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid = ANY($1) AND application_name = 'racelab' \
             ORDER BY random() LIMIT 1",
        )
        .bind(&pids)
        .fetch_optional(&mut conn);
        match tokio::time::timeout(limit, killed).await {
            Ok(Ok(Some(true))) => {
                counters.terminated.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(limit, conn.close()).await;
}

/// What the result says about the faults of a race: as asked, and as done.
pub fn info(faults: &Faults, done: Done, resubmitted: u64) -> NemesisInfo {
    let mut kinds = Vec::new();
    if faults.terminate_per_s > 0.0 {
        kinds.push(FaultInfo {
            kind: "terminate".into(),
            rate: faults.terminate_per_s,
        });
    }
    if faults.drop_reply > 0.0 {
        kinds.push(FaultInfo {
            kind: "drop-reply".into(),
            rate: faults.drop_reply,
        });
    }
    NemesisInfo {
        faults: kinds,
        retry_unknown: faults.retry_unknown,
        terminated: done.terminated,
        dropped_replies: done.dropped_replies,
        reconnects: done.reconnects,
        resubmitted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(specs: &[&str]) -> Result<Faults, String> {
        let mut f = Faults::default();
        for s in specs {
            f.add_spec(s)?;
        }
        Ok(f)
    }

    #[test]
    fn specs() {
        let f = parse(&["terminate:5", "drop-reply:0.3"]).unwrap();
        assert_eq!((f.terminate_per_s, f.drop_reply), (5.0, 0.3));
        assert!(f.reconnects() && f.any());
        assert!(!Faults::default().any());
        for (bad, want) in [
            ("foo:1", "unknown kind `foo`"),
            ("terminate:-1", "more than 0"),
            ("terminate:0", "more than 0"),
            ("drop-reply:2", "at most 1"),
            ("drop-reply:x", "not a number"),
            ("terminate", "expected KIND:RATE"),
            ("terminat:5", "did you mean `terminate`?"),
            ("drop-reply:NaN", "not a number"),
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(e.starts_with(&format!("--nemesis `{bad}`")), "{e}");
            assert_eq!(e.lines().count(), 1);
        }
    }
}
