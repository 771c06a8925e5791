//! The lab schema: name validation, the ownership marker, migrations
//! (`migrations/`, applied with search_path set to the lab schema so that
//! sqlx's `_sqlx_migrations` lands there too), reset and seed.
//!
//! racelab only ever touches its own schema. A schema of the lab's name
//! without racelab's marker is refused untouched; a lab schema that objects
//! outside it depend on (a user's view over `products`, say) is not dropped,
//! since `DROP SCHEMA ... CASCADE` would take those objects with it.

use sqlx::migrate::Migrator;
use sqlx::{Acquire, PgConnection, Row};

use super::ProductSeed;
use crate::error::bad_input;

/// The prefix of the `COMMENT ON SCHEMA` that marks a schema as racelab's.
pub const MARKER: &str = "racelab lab schema";

const MARKER_COMMENT: &str =
    "racelab lab schema: created by racelab, dropped and recreated before every run";

/// Why racelab refuses to touch a schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "schema \"{schema}\" exists but racelab did not create it (it lacks racelab's marker), \
         so racelab leaves it untouched; pass --schema with another name"
    )]
    NotOurs { schema: String },
    #[error(
        "objects outside the lab schema \"{schema}\" depend on it ({objects}); resetting the lab \
         would drop them, so racelab stops: remove them or pass --schema with another name"
    )]
    ForeignDependents { schema: String, objects: String },
}

/// Whether a schema exists, and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Absent,
    /// Racelab's, with the schema's oid.
    Ours(i64),
    Foreign,
}

/// A lab schema name must be a plain lower-case identifier
/// (`[a-z_][a-z0-9_]*`, at most 63 bytes) and not a system schema.
pub fn validate_name(schema: &str) -> anyhow::Result<()> {
    let mut chars = schema.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain || schema.len() > 63 {
        return Err(bad_input(format!(
            "--schema {schema:?} is not a plain identifier: use lower-case letters, digits and _ \
             (not starting with a digit, at most 63 characters)"
        )));
    }
    if schema.starts_with("pg_") || schema == "information_schema" || schema == "public" {
        return Err(bad_input(format!(
            "--schema {schema:?} is a system or shared schema; pass a name of racelab's own, like `racelab`"
        )));
    }
    Ok(())
}

/// Quote an identifier (names are validated first; this is belt and braces).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The migrations, without sqlx's database-wide advisory lock: racelab
/// takes its own per-schema lock, so labs in different schemas of one
/// database do not wait for each other.
pub fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("./migrations");
    m.set_locking(false);
    m
}

/// Who owns `schema`.
pub async fn ownership(conn: &mut PgConnection, schema: &str) -> anyhow::Result<Ownership> {
    let row = sqlx::query(
        "SELECT n.oid::int8, obj_description(n.oid, 'pg_namespace') \
         FROM pg_namespace n WHERE n.nspname = $1",
    )
    .bind(schema)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => Ownership::Absent,
        Some(row) => {
            let comment: Option<String> = row.try_get(1)?;
            if comment.is_some_and(|c| c.starts_with(MARKER)) {
                Ownership::Ours(row.try_get(0)?)
            } else {
                Ownership::Foreign
            }
        }
    })
}

/// Objects outside the schema (oid `ns`) that depend on objects inside it:
/// what `DROP SCHEMA ... CASCADE` would drop besides the lab. Descriptions,
/// at most 5.
pub(super) async fn foreign_dependents(
    conn: &mut PgConnection,
    ns: i64,
) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query(
        r#"
WITH ours AS (
    SELECT 'pg_class'::regclass AS cid, c.oid FROM pg_class c WHERE c.relnamespace = $1::oid
    UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t WHERE t.typnamespace = $1::oid
    UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p WHERE p.pronamespace = $1::oid
), deps AS (
    SELECT DISTINCT d.classid, d.objid, d.objsubid
    FROM ours JOIN pg_depend d ON d.refclassid = ours.cid AND d.refobjid = ours.oid
    WHERE d.deptype IN ('n', 'a')
)
SELECT pg_describe_object(classid, objid, objsubid) AS what
FROM deps
WHERE COALESCE(CASE classid
    WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = objid)
    WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = objid)
    WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = objid)
    WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = objid)
    WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite r
        JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = objid)
    WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a
        JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = objid)
    WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = objid)
    WHEN 'pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_policy p
        JOIN pg_class c ON c.oid = p.polrelid WHERE p.oid = objid)
    ELSE (SELECT n.oid FROM pg_namespace n
        WHERE n.nspname = (pg_identify_object(classid, objid, objsubid)).schema)
    END, 0) <> $1::oid
ORDER BY 1
LIMIT 5
"#,
    )
    .bind(ns)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            r.try_get::<Option<String>, _>(0)
                .map(Option::unwrap_or_default)
        })
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

/// Serialize lab changes per schema (two racelabs, or tests, at once).
async fn lock_schema(conn: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('racelab schema ' || $1))")
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Create the schema with racelab's marker, owned by `owner` when given
/// (the lab's role: see `lab_role`).
async fn create_marked(
    conn: &mut PgConnection,
    schema: &str,
    owner: Option<&str>,
) -> anyhow::Result<()> {
    let q = quote_ident(schema);
    let authorization = owner.map_or(String::new(), |o| {
        format!(" AUTHORIZATION {}", quote_ident(o))
    });
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA {q}{authorization}; COMMENT ON SCHEMA {q} IS '{MARKER_COMMENT}';"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn run_migrations(conn: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
        .execute(&mut *conn)
        .await?;
    migrator().run_direct(conn).await.map_err(|e| {
        anyhow::anyhow!("could not apply racelab's migrations in schema \"{schema}\": {e}")
    })
}

/// Lock the schema name for this transaction and check who owns it: the
/// oid when it is racelab's, `None` when absent, and an error (touching
/// nothing) when a schema of that name is someone else's.
pub(super) async fn ours_locked(
    conn: &mut PgConnection,
    schema: &str,
) -> anyhow::Result<Option<i64>> {
    lock_schema(&mut *conn, schema).await?;
    match ownership(conn, schema).await? {
        Ownership::Foreign => Err(SchemaError::NotOurs {
            schema: schema.into(),
        }
        .into()),
        Ownership::Absent => Ok(None),
        Ownership::Ours(oid) => Ok(Some(oid)),
    }
}

/// Create the lab schema if absent (with the marker) and apply any pending
/// migrations; idempotent. Refuses a schema racelab did not create.
pub async fn migrate(conn: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
    validate_name(schema)?;
    let mut tx = conn.begin().await?;
    if ours_locked(&mut tx, schema).await?.is_none() {
        create_marked(&mut tx, schema, None).await?;
    }
    run_migrations(&mut tx, schema).await?;
    tx.commit().await?;
    Ok(())
}

/// A fresh lab in one transaction: verify the marker, drop the schema,
/// recreate it with the marker, migrate, seed (`stock = initial_stock`).
/// With an `owner` (the lab's role), the schema and everything in it are
/// that role's. Nothing outside the schema is read or written.
pub async fn prepare(
    conn: &mut PgConnection,
    schema: &str,
    owner: Option<&str>,
    products: &[ProductSeed],
) -> anyhow::Result<()> {
    validate_name(schema)?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET LOCAL client_min_messages TO warning")
        .execute(&mut *tx)
        .await?;
    if let Some(oid) = ours_locked(&mut tx, schema).await? {
        let foreign = foreign_dependents(&mut tx, oid).await?;
        if !foreign.is_empty() {
            return Err(SchemaError::ForeignDependents {
                schema: schema.into(),
                objects: foreign.join(", "),
            }
            .into());
        }
        sqlx::raw_sql(&format!("DROP SCHEMA {} CASCADE", quote_ident(schema)))
            .execute(&mut *tx)
            .await?;
    }
    create_marked(&mut tx, schema, owner).await?;
    if let Some(o) = owner {
        // The tables are the role's, so that its `\setup` may alter them.
        sqlx::raw_sql(&format!("SET LOCAL ROLE {}", quote_ident(o)))
            .execute(&mut *tx)
            .await?;
    }
    run_migrations(&mut tx, schema).await?;
    seed(&mut tx, products).await?;
    tx.commit().await?;
    Ok(())
}

/// Insert the products (search_path must point at the lab schema).
pub async fn seed(conn: &mut PgConnection, products: &[ProductSeed]) -> anyhow::Result<()> {
    let ids: Vec<i64> = products.iter().map(|p| p.id).collect();
    let names: Vec<&str> = products.iter().map(|p| p.name.as_str()).collect();
    let stocks: Vec<i64> = products.iter().map(|p| p.stock).collect();
    sqlx::query(
        "INSERT INTO products (id, name, stock, initial_stock) \
         SELECT id, name, stock, stock FROM unnest($1::int8[], $2::text[], $3::int8[]) AS t(id, name, stock)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&stocks)
    .execute(&mut *conn)
    .await
    .map_err(|e| anyhow::anyhow!("could not seed the lab's products: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["racelab", "_x", "t_abc_123"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "Racelab",
            "1x",
            "a-b",
            "a b",
            "x\"y",
            "public",
            "pg_temp",
            &"a".repeat(64),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(err.is::<crate::error::BadInput>(), "{bad}");
            assert!(err.to_string().contains("--schema"), "{err}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
