//! Room on a server for a run's connections, checked before anything is
//! touched: a race whose buyers cannot all connect would start half-way (or
//! fail after the lab was reset), so too many buyers for an external or kept
//! server is refused up front, with the `--connections N` that would fit.
//! An embedded cluster is sized from the run and needs no check.

use sqlx::{Connection, Row};

use super::{Database, DbKind};

/// What the server said about its connection slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub max_connections: i64,
    /// Client connections open now, this check's own included.
    pub in_use: i64,
    /// Slots this role may not use (superuser_reserved_connections and
    /// reserved_connections, for a role that is not a superuser).
    pub reserved: i64,
    /// The role's own CONNECTION LIMIT, less its connections, if it has one.
    pub role_left: Option<i64>,
}

impl Room {
    /// Connections racelab can open once the check's own is closed.
    pub fn free(&self) -> i64 {
        let server = self.max_connections - self.reserved - (self.in_use - 1);
        let role = self.role_left.map_or(i64::MAX, |left| left + 1);
        server.min(role).max(0)
    }

    /// The refusal for `needed` connections (`buyers` buyers), if they do not fit.
    pub fn refuse(&self, needed: u32, buyers: u32, server: &str) -> Option<String> {
        let free = self.free();
        if i64::from(needed) <= free {
            return None;
        }
        // Leave some headroom for other clients connecting meanwhile.
        let suggest = (free * 9 / 10).max(1);
        let why = format!(
            "max_connections {}, {} in use, {} reserved{}",
            self.max_connections,
            self.in_use - 1,
            self.reserved,
            self.role_left
                .map(|l| format!(", {} left under the role's CONNECTION LIMIT", l + 1))
                .unwrap_or_default()
        );
        let whose = if needed == buyers {
            "one per buyer".to_string()
        } else {
            "the pool size".to_string()
        };
        Some(if free == 0 {
            format!(
                "{server} has no free connections ({why}) but this run needs {needed} ({whose}): \
                 close some connections or raise the server's max_connections"
            )
        } else {
            format!(
                "{server} has room for {free} more connections ({why}) but this run needs \
                 {needed} ({whose}): share a pool with --connections {suggest}, or raise the \
                 server's max_connections"
            )
        })
    }
}

impl Database {
    /// Refuse a run whose `needed` connections do not fit on the server.
    /// A server that cannot answer (a Postgres-wire server without these
    /// views) is given the benefit of the doubt: the race reports a refused
    /// connection clearly anyway, before the buyers are released.
    pub async fn check_room(&self, needed: u32, buyers: u32) -> anyhow::Result<()> {
        if self.kind == DbKind::Embedded {
            return Ok(());
        }
        let mut conn = self.connect().await?;
        let limit = self.setup_limit();
        let room = self
            .bounded(limit, "reading the server's connection limits", async {
                query_room(&mut conn).await.map_err(anyhow::Error::from)
            })
            .await;
        let _ = tokio::time::timeout(limit, conn.close()).await;
        match room
            .ok()
            .and_then(|r| r.refuse(needed, buyers, &self.shown_as))
        {
            // More buyers than the server takes is the run's request, not
            // the server failing: the fix is a flag (exit 2).
            Some(msg) => Err(crate::error::bad_input(msg)),
            None => Ok(()),
        }
    }
}

async fn query_room(conn: &mut sqlx::PgConnection) -> Result<Room, sqlx::Error> {
    let row = sqlx::query(
        "SELECT current_setting('max_connections')::int8, \
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8, \
           CASE WHEN r.rolsuper THEN 0 \
                ELSE current_setting('superuser_reserved_connections')::int8 \
                     + coalesce(current_setting('reserved_connections', true)::int8, 0) END, \
           CASE WHEN r.rolconnlimit < 0 THEN NULL \
                ELSE r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity \
                                       WHERE usename = current_user \
                                         AND backend_type = 'client backend') END::int8 \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(conn)
    .await?;
    Ok(Room {
        max_connections: row.try_get(0)?,
        in_use: row.try_get(1)?,
        reserved: row.try_get(2)?,
        role_left: row.try_get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(max: i64, in_use: i64, reserved: i64, role_left: Option<i64>) -> Room {
        Room {
            max_connections: max,
            in_use,
            reserved,
            role_left,
        }
    }

    #[test]
    fn free_slots_exclude_reserved_and_used() {
        // 50 slots, 3 reserved, 5 in use of which one is the check itself.
        assert_eq!(room(50, 5, 3, None).free(), 43);
        // A role limit of 10 with 2 in use (the check included): 9 more.
        assert_eq!(room(50, 5, 3, Some(8)).free(), 9);
        assert_eq!(room(5, 9, 3, None).free(), 0);
    }

    #[test]
    fn refusal_names_the_fix() {
        let r = room(50, 1, 3, None);
        assert_eq!(r.refuse(47, 47, "s"), None);
        let msg = r.refuse(300, 300, "the server").unwrap();
        assert!(msg.contains("--connections 42"), "{msg}");
        assert!(msg.contains("max_connections 50"), "{msg}");
        assert!(msg.contains("one per buyer"), "{msg}");
        let full = room(10, 11, 0, None).refuse(1, 5, "s").unwrap();
        assert!(
            full.contains("no free connections") && full.contains("pool size"),
            "{full}"
        );
    }
}
