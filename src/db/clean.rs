//! `racelab db clean`: remove racelab's own traces from a server racelab
//! did not start: its lab schema (only when it carries racelab's marker,
//! and only when nothing outside it depends on it) and its Redis keys
//! (only those under its prefix). What was there is read first, so the
//! command can say what it removed.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection, Row as _};

use super::redis::{Redis, RedisOptions};
use super::schema::{self, quote_ident, SchemaError};

/// What `clean` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// The lab schema's tables and their rows, when the schema was there.
    pub tables: Option<Vec<(String, i64)>>,
    /// Redis keys deleted under the prefix, when a Redis was given.
    pub redis_keys: Option<u64>,
}

/// Drop racelab's schema `schema` from the server at `url`, and its keys
/// under `<schema>:` from the Redis at `redis_url`. A schema of that name
/// racelab did not create, or one that objects outside it depend on, is
/// refused untouched.
pub async fn clean(
    url: &str,
    schema: &str,
    redis_url: Option<&str>,
    connect_timeout: Duration,
) -> anyhow::Result<Cleaned> {
    schema::validate_name(schema)?;
    let opts = super::parse_external_url(url)?;
    let mut conn = tokio::time::timeout(connect_timeout, PgConnection::connect_with(&opts))
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {connect_timeout:?}"))
        .and_then(|c| c.map_err(anyhow::Error::from))
        .with_context(|| format!("could not connect to {}", super::redact_url(url)))?;
    let dropped = drop_schema(&mut conn, schema).await;
    let _ = conn.close().await;
    let tables = dropped?;
    let redis_keys = match redis_url {
        None => None,
        Some(u) => {
            let opts = RedisOptions {
                url: Some(u.to_string()),
                bin: None,
            };
            // No buyer sends anything: no confined user to make.
            let redis = Redis::open(&opts, &format!("{schema}:"), &[]).await?;
            let removed = redis.clear().await;
            redis.shutdown().await?;
            Some(removed?)
        }
    };
    Ok(Cleaned { tables, redis_keys })
}

/// In one transaction: the schema's tables and their rows, then the drop.
async fn drop_schema(
    conn: &mut PgConnection,
    schema: &str,
) -> anyhow::Result<Option<Vec<(String, i64)>>> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET LOCAL client_min_messages TO warning")
        .execute(&mut *tx)
        .await?;
    let Some(oid) = schema::ours_locked(&mut tx, schema).await? else {
        return Ok(None);
    };
    let foreign = schema::foreign_dependents(&mut tx, oid).await?;
    if !foreign.is_empty() {
        return Err(SchemaError::ForeignDependents {
            schema: schema.into(),
            objects: foreign.join(", "),
        }
        .into());
    }
    let names: Vec<String> = sqlx::query(
        "SELECT relname::text FROM pg_class WHERE relnamespace = $1::oid AND relkind IN ('r', 'p') \
         ORDER BY relname",
    )
    .bind(oid)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect::<Result<_, _>>()?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let q = format!(
            "SELECT count(*)::int8 FROM {}.{}",
            quote_ident(schema),
            quote_ident(&name)
        );
        let rows: i64 = sqlx::query_scalar(&q).fetch_one(&mut *tx).await?;
        tables.push((name, rows));
    }
    sqlx::raw_sql(&format!("DROP SCHEMA {} CASCADE", quote_ident(schema)))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(tables))
}
