//! What the buyers of a race that makes no progress are waiting on, as the
//! server sees them: asked on a monitor connection of its own
//! (`pg_stat_activity`, `pg_blocking_pids`), once, when the engine's
//! watchdog ends the race (see `engine::Lanes::stalled`). A lock held by a
//! session outside the race is named (pid, program, state); locks the
//! buyers hold on each other are counted.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

/// One buyer's session as `pg_stat_activity` shows it.
type Session = (
    i32,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<i32>,
);
/// A session outside the race holding what a buyer waits for: pid,
/// program (`application_name`), state, user.
type Holder = (i32, Option<String>, Option<String>, Option<String>);

/// "; on the server, of N buyers: ..." (empty when the server cannot be
/// asked).
pub async fn describe(connect: &PgConnectOptions) -> String {
    match ask(connect).await {
        Ok(s) => s,
        Err(e) => format!("; the server could not be asked what the buyers wait on ({e})"),
    }
}

async fn ask(connect: &PgConnectOptions) -> anyhow::Result<String> {
    let mut conn = connect
        .clone()
        .application_name("racelab monitor")
        .connect()
        .await?;
    let buyers: Vec<Session> = sqlx::query_as(
        "SELECT pid, wait_event_type::text, wait_event::text, state::text, \
                pg_blocking_pids(pid) \
         FROM pg_stat_activity \
         WHERE application_name = 'racelab' AND backend_type = 'client backend' \
           AND datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut conn)
    .await?;
    let ours: BTreeSet<i32> = buyers.iter().map(|b| b.0).collect();
    let outside: Vec<i32> = buyers
        .iter()
        .flat_map(|b| b.4.iter().copied())
        .filter(|p| !ours.contains(p))
        .collect::<BTreeSet<i32>>()
        .into_iter()
        .collect();
    let holders: Vec<Holder> = if outside.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT pid, application_name::text, state::text, usename::text \
             FROM pg_stat_activity WHERE pid = ANY($1) ORDER BY pid",
        )
        .bind(&outside)
        .fetch_all(&mut conn)
        .await?
    };
    let _ = conn.close().await;
    Ok(summary(&buyers, &holders))
}

/// The buyers' sessions in words.
fn summary(buyers: &[Session], holders: &[Holder]) -> String {
    if buyers.is_empty() {
        return "; the server shows no buyer in a statement (they are between statements, \
                retrying or thinking)"
            .to_string();
    }
    let ours: BTreeSet<i32> = buyers.iter().map(|b| b.0).collect();
    let (mut by_outsider, mut by_buyer, mut running, mut idle) = (0, 0, 0, 0);
    let mut other_waits: BTreeMap<String, usize> = BTreeMap::new();
    for (_, kind, event, state, blockers) in buyers {
        if blockers.iter().any(|p| !ours.contains(p)) {
            by_outsider += 1;
        } else if !blockers.is_empty() {
            by_buyer += 1;
        } else if state.as_deref() == Some("active") {
            match (kind, event) {
                (Some(k), Some(e)) => *other_waits.entry(format!("{k}: {e}")).or_default() += 1,
                _ => running += 1,
            }
        } else {
            idle += 1;
        }
    }
    let mut parts = Vec::new();
    if by_outsider > 0 {
        let who: Vec<String> = holders
            .iter()
            .map(|(pid, app, state, user)| {
                let mut d = vec![format!("pid {pid}")];
                d.extend(
                    app.as_deref()
                        .filter(|a| !a.is_empty())
                        .map(|a| format!("\"{a}\"")),
                );
                d.extend(user.clone().map(|u| format!("user {u}")));
                d.extend(state.clone());
                d.join(", ")
            })
            .collect();
        parts.push(format!(
            "{by_outsider} wait on a lock held outside the race ({})",
            if who.is_empty() {
                "by a session racelab may not see".to_string()
            } else {
                who.join("; ")
            }
        ));
    }
    if by_buyer > 0 {
        parts.push(format!(
            "{by_buyer} wait on locks other buyers hold (a livelock, or a lock no buyer lets go)"
        ));
    }
    for (what, n) in other_waits {
        parts.push(format!("{n} wait on {what}"));
    }
    if running > 0 {
        parts.push(format!("{running} are running a statement"));
    }
    if idle > 0 {
        parts.push(format!("{idle} are between statements"));
    }
    format!(
        "; on the server, of {} buyer sessions: {}",
        buyers.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outsider_holding_the_lock_is_named() {
        let buyers: Vec<Session> = vec![
            (
                10,
                Some("Lock".into()),
                Some("transactionid".into()),
                Some("active".into()),
                vec![99],
            ),
            (
                11,
                Some("Lock".into()),
                Some("tuple".into()),
                Some("active".into()),
                vec![10],
            ),
            (12, None, None, Some("idle in transaction".into()), vec![]),
        ];
        let holders = vec![(
            99,
            Some("psql".into()),
            Some("idle in transaction".into()),
            Some("bob".into()),
        )];
        let s = summary(&buyers, &holders);
        assert_eq!(
            s,
            "; on the server, of 3 buyer sessions: 1 wait on a lock held outside the race \
             (pid 99, \"psql\", user bob, idle in transaction), 1 wait on locks other buyers hold \
             (a livelock, or a lock no buyer lets go), 1 are between statements"
        );
        assert!(summary(&[], &[]).contains("no buyer in a statement"));
    }
}
