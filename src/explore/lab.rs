//! The lab for explore: prepared once exactly as `run` prepares it (the
//! schema recreated and migrated by `Database::prepare_lab`, seeded, the
//! strategy's `\setup` applied), then snapshotted, so that every schedule
//! starts from that state again in one round trip instead of recreating the
//! schema (15-20 ms) each time.
//!
//! The snapshot is every table of the lab schema (what `\setup` created
//! included) as JSON, and every sequence's position. Restoring truncates
//! the tables together, inserts the rows back in their order (parents
//! before children; as a superuser with triggers and foreign-key checks
//! off, as `pg_restore` does), and puts each sequence back. Nothing outside
//! the lab schema is read or written.

use anyhow::Context as _;
use sqlx::{Executor as _, PgConnection, Row as _};

use crate::db::schema::quote_ident;
use crate::db::{Database, ProductSeed};
use crate::strategy::{self, Strategy};

/// A prepared lab and the SQL that puts it back.
#[derive(Debug, Clone)]
pub struct Lab {
    restore: String,
    /// The tables of the lab, in restore order (for messages and tests).
    pub tables: Vec<String>,
}

struct Table {
    oid: i64,
    name: String,
    columns: Vec<String>,
}

impl Lab {
    /// Prepare the lab as `run` does and take its snapshot on `conn` (a
    /// connection whose search_path is the lab schema).
    pub async fn prepare(
        db: &Database,
        strategy: &Strategy,
        products: &[ProductSeed],
        conn: &mut PgConnection,
    ) -> anyhow::Result<Lab> {
        db.prepare_lab(products)
            .await
            .context("preparing the lab")?;
        let setup: Vec<(i64, i64)> = products.iter().map(|p| (p.id, p.stock)).collect();
        if strategy.program.has_setup() {
            // As the buyers run it: as the lab's role, where there is one.
            let mut buyer = db.connect_buyer().await?;
            let ran = strategy::run_setup(&strategy.program, &mut buyer, &setup).await;
            let _ = sqlx::Connection::close(buyer).await;
            ran.with_context(|| {
                format!("running the \\setup block of strategy `{}`", strategy.name)
            })?;
        }
        Lab::snapshot(conn, db.schema())
            .await
            .context("taking a snapshot of the lab")
    }

    /// Read the lab's tables and sequences and build the restore script.
    pub async fn snapshot(conn: &mut PgConnection, schema: &str) -> anyhow::Result<Lab> {
        let superuser: bool = sqlx::query_scalar("SELECT current_setting('is_superuser') = 'on'")
            .fetch_one(&mut *conn)
            .await?;
        let rows = sqlx::query(
            "SELECT c.oid::int8, c.relname::text, \
               ARRAY(SELECT a.attname::text FROM pg_attribute a \
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                       AND a.attgenerated = '' ORDER BY a.attnum) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND c.relname <> '_sqlx_migrations' \
             ORDER BY c.relname",
        )
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
        let mut tables = rows
            .iter()
            .map(|r| {
                Ok(Table {
                    oid: r.try_get(0)?,
                    name: r.try_get(1)?,
                    columns: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let edges: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT conrelid::int8, confrelid::int8 FROM pg_constraint \
             WHERE contype = 'f' AND connamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)",
        )
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
        parents_first(&mut tables, &edges);
        let sequences: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'S' ORDER BY c.relname",
        )
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;

        let q = quote_ident(schema);
        let mut restore = String::from("BEGIN;\n");
        if superuser {
            restore.push_str("SET LOCAL session_replication_role = replica;\n");
        }
        if !tables.is_empty() {
            let names: Vec<String> = tables
                .iter()
                .map(|t| format!("{q}.{}", quote_ident(&t.name)))
                .collect();
            restore.push_str(&format!("TRUNCATE {};\n", names.join(", ")));
        }
        for t in &tables {
            let name = format!("{q}.{}", quote_ident(&t.name));
            let cols: Vec<String> = t.columns.iter().map(|c| quote_ident(c)).collect();
            let cols = cols.join(", ");
            let json: String = sqlx::query_scalar(&format!(
                "SELECT coalesce(json_agg(t), '[]')::text FROM (SELECT {cols} FROM {name}) t"
            ))
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("reading table {}", t.name))?;
            if json == "[]" {
                continue;
            }
            let tag = dollar_tag(&json);
            restore.push_str(&format!(
                "INSERT INTO {name} ({cols}) OVERRIDING SYSTEM VALUE \
                 SELECT {cols} FROM json_populate_recordset(NULL::{name}, {tag}{json}{tag});\n"
            ));
        }
        for s in &sequences {
            let name = format!("{q}.{}", quote_ident(s));
            let (last, called): (i64, bool) =
                sqlx::query_as(&format!("SELECT last_value, is_called FROM {name}"))
                    .fetch_one(&mut *conn)
                    .await
                    .with_context(|| format!("reading sequence {s}"))?;
            let tag = dollar_tag(&name);
            restore.push_str(&format!(
                "SELECT pg_catalog.setval({tag}{name}{tag}::regclass, {last}, {called});\n"
            ));
        }
        restore.push_str("COMMIT;\n");
        Ok(Lab {
            restore,
            tables: tables.into_iter().map(|t| t.name).collect(),
        })
    }

    /// Put the lab back as the snapshot found it (one round trip). Every
    /// buyer's transaction must have ended.
    pub async fn reset(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        conn.execute(sqlx::raw_sql(&self.restore))
            .await
            .context("resetting the lab to its snapshot")?;
        Ok(())
    }
}

/// A dollar-quote tag that does not occur in `body`.
fn dollar_tag(body: &str) -> String {
    let mut n = 0;
    loop {
        let tag = if n == 0 {
            "$racelab$".to_string()
        } else {
            format!("$racelab{n}$")
        };
        if !body.contains(&tag) {
            return tag;
        }
        n += 1;
    }
}

/// Order tables so that a table comes after the tables its foreign keys
/// point to (a cycle keeps the name order for what is left).
fn parents_first(tables: &mut Vec<Table>, edges: &[(i64, i64)]) {
    let mut left: Vec<Table> = std::mem::take(tables);
    while !left.is_empty() {
        let ready = left.iter().position(|t| {
            !edges.iter().any(|&(child, parent)| {
                child == t.oid && parent != t.oid && left.iter().any(|o| o.oid == parent)
            })
        });
        let i = ready.unwrap_or(0);
        tables.push(left.remove(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(oid: i64, name: &str) -> Table {
        Table {
            oid,
            name: name.into(),
            columns: Vec::new(),
        }
    }

    #[test]
    fn parents_come_first() {
        let mut tables = vec![t(1, "a_orders"), t(2, "b_units"), t(3, "products")];
        parents_first(&mut tables, &[(1, 3), (2, 1), (3, 3)]);
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["products", "a_orders", "b_units"]);
        let mut cyclic = vec![t(1, "x"), t(2, "y")];
        parents_first(&mut cyclic, &[(1, 2), (2, 1)]);
        assert_eq!(cyclic.len(), 2);
    }

    #[test]
    fn tags_avoid_the_body() {
        assert_eq!(dollar_tag("[1]"), "$racelab$");
        assert_eq!(dollar_tag("a $racelab$ b"), "$racelab1$");
    }
}
