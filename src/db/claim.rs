//! One run per lab: a racelab that works on a server it shares (a kept
//! cluster, an external one) claims the lab schema for as long as it runs,
//! and a second racelab on the same server and schema is refused with one
//! line naming the first (its pid, host and command), before it touches
//! anything.
//!
//! Why refuse rather than give the second run a schema of its own: the
//! lab's schema is the user's handle on it (`--schema`, a `--verify-sql`
//! that names it, `serve`'s lab that a service races), so a run that
//! quietly moved elsewhere would be a surprise, and two runs on one lab
//! cannot both be audited. Parallel jobs pass `--schema` each; the refusal
//! says so.
//!
//! The claim is a session advisory lock, held by a connection of its own
//! from `Database::open` to its shutdown: the server lets it go the moment
//! that connection ends, however racelab ends (a crash, SIGKILL), so a
//! claim never outlives its run. It is taken in the two-key space
//! (`pg_try_advisory_lock(int4, int4)`), which no single-key lock of a
//! strategy (`pg_advisory_lock(:product)`) can collide with. The run's
//! name travels as that connection's `application_name`, which
//! `pg_stat_activity` shows to every user of the server.

use sqlx::{Connection as _, PgConnection};

use crate::error::bad_input;

/// The first key of racelab's claims ("racl"); the second is the lab
/// schema's `hashtext`.
const CLAIM_CLASS: i32 = 0x7261_636c;

/// The longest `application_name` PostgreSQL keeps (NAMEDATALEN - 1).
const NAME_LIMIT: usize = 63;

/// A lab claimed for this run: dropping it (or `release`) ends the claim.
pub struct Claim {
    conn: PgConnection,
}

impl Claim {
    /// The claim's connection, for the run's first questions (it must stay
    /// open: closing it ends the claim).
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// End the claim now (closing its connection); dropping does as much.
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}

/// Claim `schema` on the server `conn` is connected to (`server` is how
/// messages name it), or refuse, naming the racelab that holds it (bad
/// input: exit 2). `conn` becomes the claim's own connection: its
/// `application_name` should be `this_run()`.
pub async fn claim(mut conn: PgConnection, schema: &str, server: &str) -> anyhow::Result<Claim> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(CLAIM_CLASS)
        .bind(schema)
        .fetch_one(&mut conn)
        .await?;
    if got {
        return Ok(Claim { conn });
    }
    let holder: Option<(i32, Option<String>)> = sqlx::query_as(
        "SELECT l.pid, a.application_name::text FROM pg_locks l \
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
           AND l.classid = ($1::int8 & 4294967295)::oid \
           AND l.objid = (hashtext($2)::int8 & 4294967295)::oid \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1",
    )
    .bind(CLAIM_CLASS)
    .bind(schema)
    .fetch_optional(&mut conn)
    .await?;
    let _ = conn.close().await;
    Err(bad_input(format!(
        "the lab schema \"{schema}\" on {server} is in use by another racelab ({}); \
         wait for it to finish, or give this run a schema of its own with --schema NAME",
        describe(holder)
    )))
}

fn describe(holder: Option<(i32, Option<String>)>) -> String {
    match holder {
        Some((_, Some(name))) if !name.is_empty() => name,
        Some((pid, _)) => format!("server process {pid}"),
        // Let go between the two queries: a retry would most likely win.
        None => "which has just finished; try again".to_string(),
    }
}

/// The racelab runs that hold a claim on the server `conn` is connected
/// to (any database): how each names itself.
pub async fn holders(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT l.pid, a.application_name::text FROM pg_locks l \
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
           AND l.classid = ($1::int8 & 4294967295)::oid \
         ORDER BY l.pid",
    )
    .bind(CLAIM_CLASS)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| describe(Some(r))).collect())
}

/// How this run names itself to other racelabs: `racelab[PID@HOST]` and
/// its command line, with every URL redacted and everything cut to what
/// PostgreSQL keeps of an `application_name` (63 bytes).
pub fn this_run() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    name_of(std::process::id(), &hostname(), &args)
}

fn name_of(pid: u32, host: &str, args: &[String]) -> String {
    let mut name = format!("racelab[{pid}@{host}]");
    for a in args {
        let shown = if a.contains("://") {
            crate::secret::redact_text(a, &[], "<url>")
        } else {
            a.clone()
        };
        name.push(' ');
        name.push_str(&shown);
    }
    // Printable ASCII only: the server replaces anything else with `?`.
    let mut name: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    if name.len() > NAME_LIMIT {
        name.truncate(NAME_LIMIT - 3);
        name.push_str("...");
    }
    name
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = String::from_utf8_lossy(&buf[..end]).into_owned();
    // The short name is enough to tell two machines apart in a message.
    host.split('.').next().unwrap_or("?").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_names_itself_without_secrets() {
        let args: Vec<String> = [
            "run",
            "--strategy",
            "for-update",
            "--database-url",
            "postgres://u:hunter2@db/x?password=p",
        ]
        .map(String::from)
        .to_vec();
        let n = name_of(42, "ci-7", &args);
        assert!(
            n.starts_with("racelab[42@ci-7] run --strategy for-update"),
            "{n}"
        );
        assert!(!n.contains("hunter2") && n.len() <= NAME_LIMIT, "{n}");
        let short = name_of(1, "h", &["run".to_string()]);
        assert_eq!(short, "racelab[1@h] run");
        let odd = name_of(1, "h", &["--stock\u{e9}".to_string()]);
        assert!(odd.is_ascii(), "{odd}");
    }
}
