//! Where an HTTP run's audit gets its numbers, in order of trust: the
//! service's own database (`--verify-sql`, run in a read-only transaction),
//! its stock endpoint (`--stock-url`), or the stock the user declared
//! (`--stock N`) against the successes racelab counted. Also the resets run
//! before each repetition. The audit arithmetic is pure (`audit`).

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Column, ConnectOptions, Connection, PgConnection, Row};

use crate::db::Audit;
use crate::error::bad_input;
use crate::result::Truth;

/// What one reading of the truth found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    pub stock: Option<i64>,
    /// Units the service recorded as sold (`units_sold` of --verify-sql).
    pub units_sold: Option<i64>,
}

/// How the truth is read.
#[derive(Debug, Clone)]
pub enum Source {
    Sql { sql: String },
    StockUrl { url: reqwest::Url, path: JsonPath },
    Belief,
}

impl Source {
    pub fn kind(&self) -> Truth {
        match self {
            Source::Sql { .. } => Truth::VerifySql,
            Source::StockUrl { .. } => Truth::StockUrl,
            Source::Belief => Truth::ClientBelief,
        }
    }
}

/// The service's database (for --verify-sql and --reset-sql).
#[derive(Debug, Clone)]
pub struct ServiceDb {
    pub options: PgConnectOptions,
    pub connect_timeout: std::time::Duration,
    /// The URL with its password hidden, for messages.
    pub shown_as: String,
}

impl ServiceDb {
    pub fn new(url: &str, connect_timeout: std::time::Duration) -> anyhow::Result<ServiceDb> {
        crate::db::parse_external_url(url)?;
        // The service's own settings (its search_path above all) are kept:
        // the query is the user's, written for their schema.
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| bad_input(format!("--database-url is not a valid URL: {e}")))?
            .application_name("racelab-verify")
            .disable_statement_logging();
        Ok(ServiceDb {
            options,
            connect_timeout,
            shown_as: crate::db::redact_url(url),
        })
    }

    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        match tokio::time::timeout(self.connect_timeout, self.options.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "could not connect to the service's database {}: {e}",
                self.shown_as
            )),
            Err(_) => Err(anyhow::anyhow!(
                "could not connect to the service's database {} within {} s (--connect-timeout)",
                self.shown_as,
                self.connect_timeout.as_secs_f64()
            )),
        }
    }

    /// `(server_version, durable)` for the result's `database` section.
    pub async fn describe(&self) -> anyhow::Result<(String, bool)> {
        let mut conn = self.connect().await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await
            .context("could not read the server version")?;
        let durable = sqlx::query_scalar::<_, bool>(
            "SELECT current_setting('fsync') = 'on' AND current_setting('synchronous_commit') <> 'off'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap_or(true);
        let _ = conn.close().await;
        let version = version.split_whitespace().next().unwrap_or_default();
        Ok((version.to_string(), durable))
    }

    /// Run the user's `--verify-sql` in a read-only transaction: it can read
    /// anything the URL's role can, and change nothing.
    pub async fn verify(&self, sql: &str) -> anyhow::Result<Reading> {
        let mut conn = self.connect().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await
            .context("could not start a read-only transaction")?;
        let rows = sqlx::query(sql).fetch_all(&mut *tx).await;
        let _ = tx.rollback().await;
        let _ = conn.close().await;
        let rows = rows.map_err(|e| match e.as_database_error() {
            Some(d) if d.code().as_deref() == Some("25006") => bad_input(format!(
                "--verify-sql tried to write ({d}); racelab runs it in a read-only transaction \
                 and changes nothing: give a SELECT that returns the stock"
            )),
            Some(d) => bad_input(format!("--verify-sql failed: {d}")),
            None => anyhow::Error::new(e).context("running --verify-sql"),
        })?;
        let [row] = rows.as_slice() else {
            return Err(bad_input(format!(
                "--verify-sql returned {} rows; it must return exactly one, with a `stock` column \
                 (and optionally `units_sold`)",
                rows.len()
            )));
        };
        let reading = Reading {
            stock: int_column(row, "stock")?,
            units_sold: int_column(row, "units_sold")?,
        };
        if reading.stock.is_none() {
            let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            return Err(bad_input(format!(
                "--verify-sql returned the columns {names:?}; name the stock column `stock` \
                 (e.g. SELECT stock FROM products WHERE id = 1)"
            )));
        }
        Ok(reading)
    }

    /// Run `--reset-sql` (the user's own statements; this one may write).
    pub async fn reset(&self, sql: &str) -> anyhow::Result<()> {
        let mut conn = self.connect().await?;
        let r = sqlx::raw_sql(sql).execute(&mut conn).await;
        let _ = conn.close().await;
        r.map(|_| ()).map_err(|e| match e.as_database_error() {
            Some(d) => bad_input(format!("--reset-sql failed: {d}")),
            None => anyhow::Error::new(e).context("running --reset-sql"),
        })
    }
}

/// An integer column by name; None when the row has no such column.
fn int_column(row: &PgRow, name: &str) -> anyhow::Result<Option<i64>> {
    if !row.columns().iter().any(|c| c.name() == name) {
        return Ok(None);
    }
    let v: Option<i64> = row
        .try_get::<Option<i64>, _>(name)
        .or_else(|_| {
            row.try_get::<Option<i32>, _>(name)
                .map(|v| v.map(i64::from))
        })
        .or_else(|_| {
            row.try_get::<Option<i16>, _>(name)
                .map(|v| v.map(i64::from))
        })
        .map_err(|_| {
            bad_input(format!(
                "--verify-sql: column `{name}` must be an integer; cast it (e.g. {name}::int8)"
            ))
        })?;
    match v {
        Some(v) => Ok(Some(v)),
        None => Err(bad_input(format!(
            "--verify-sql: column `{name}` is NULL; use coalesce(..., 0)"
        ))),
    }
}

/// A path into a JSON document: `.stock`, `stock`, `.data.items[0].stock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl JsonPath {
    pub fn parse(text: &str) -> anyhow::Result<JsonPath> {
        let bad = |why: &str| {
            bad_input(format!(
                "--stock-json-path {text:?}: {why}; write it like .stock or .data.items[0].stock"
            ))
        };
        let mut steps = Vec::new();
        let mut rest = text.strip_prefix('.').unwrap_or(text);
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("`[` is not closed"))?;
                let i = r[..end]
                    .trim()
                    .parse()
                    .map_err(|_| bad("an index must be a number"))?;
                steps.push(Step::Index(i));
                rest = &r[end + 1..];
                rest = rest.strip_prefix('.').unwrap_or(rest);
                continue;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return Err(bad("empty key"));
            }
            steps.push(Step::Key(rest[..end].to_string()));
            rest = &rest[end..];
            rest = rest.strip_prefix('.').unwrap_or(rest);
        }
        if steps.is_empty() {
            return Err(bad("empty path"));
        }
        Ok(JsonPath(steps))
    }

    /// The integer at this path.
    pub fn get(&self, doc: &serde_json::Value) -> Result<i64, String> {
        let mut cur = doc;
        for step in &self.0 {
            cur = match step {
                Step::Key(k) => cur.get(k),
                Step::Index(i) => cur.get(i),
            }
            .ok_or_else(|| format!("{} has nothing at {self}", short(doc)))?;
        }
        match cur {
            serde_json::Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| format!("{self} is {n}, not a whole number")),
            serde_json::Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{self} is {s:?}, not a number")),
            other => Err(format!("{self} is {}, not a number", short(other))),
        }
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.0 {
            match s {
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// GET the stock endpoint and read the number at `path`.
pub async fn read_stock_url(
    client: &reqwest::Client,
    url: &reqwest::Url,
    path: &JsonPath,
) -> anyhow::Result<i64> {
    let what = || format!("reading the stock from {url} (--stock-url)");
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", what(), super::lane::chain(&e)))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(what)?;
    if !status.is_success() {
        anyhow::bail!(
            "{}: HTTP {status}: {}",
            what(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("{}: the response is not JSON ({e})", what()))?;
    path.get(&doc)
        .map_err(|why| bad_input(format!("--stock-json-path: {why}")))
}

/// POST the reset endpoint; anything but a 2xx is a failure.
pub async fn reset_url(client: &reqwest::Client, url: &reqwest::Url) -> anyhow::Result<()> {
    let resp = client
        .post(url.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("--reset-url {url}: {}", super::lane::chain(&e)))?;
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "--reset-url {url} answered HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(())
}

/// The audit of one HTTP race. `initial` is the declared stock or the
/// stock read before the race; `before`/`after` are the readings around it
/// (empty for the client's belief). Units sold come from the service's
/// records when --verify-sql reports them, else from the successes counted;
/// the final stock from the service when it was read, else by subtraction
/// (so the client's belief alone can show oversell, never drift).
pub fn audit(
    initial: i64,
    before: Reading,
    after: Reading,
    succeeded: u64,
    unknown: u64,
    qty: i64,
) -> Audit {
    let believed = (succeeded as i64).saturating_mul(qty);
    let recorded = match (before.units_sold, after.units_sold) {
        (Some(b), Some(a)) => Some(a - b),
        (None, Some(a)) => Some(a),
        _ => None,
    };
    let units_sold = recorded.unwrap_or(believed);
    let final_stock = after.stock.unwrap_or(initial - units_sold);
    // The service's records against what its answers said, in attempts.
    // Attempts of unknown fate are resolved in aggregate: recorded sales
    // beyond the answered successes can only have come from them.
    let (successes_without_order, orders_without_success, unknown_committed) = match recorded {
        Some(r) => {
            let qty = qty.max(1);
            let recorded_attempts = r / qty;
            (
                (succeeded as i64 - recorded_attempts).max(0),
                (recorded_attempts - succeeded as i64 - unknown as i64).max(0),
                (recorded_attempts - succeeded as i64).clamp(0, unknown as i64),
            )
        }
        None => (0, 0, 0),
    };
    Audit {
        initial_stock: initial,
        units_sold,
        final_stock,
        oversold_units: (units_sold - initial).max(0),
        stock_drift: initial - units_sold - final_stock,
        negative_stock: final_stock < 0,
        successes_without_order,
        orders_without_success,
        unknown_committed,
        unknown_not_committed: if recorded.is_some() {
            unknown as i64 - unknown_committed
        } else {
            0
        },
        cache_drift: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{of_audit, Verdict};

    #[test]
    fn json_paths() {
        let doc =
            serde_json::json!({"stock": 3, "data": {"items": [{"stock": "7"}, {"stock": 1.0}]}});
        assert_eq!(JsonPath::parse(".stock").unwrap().get(&doc), Ok(3));
        assert_eq!(JsonPath::parse("stock").unwrap().get(&doc), Ok(3));
        assert_eq!(
            JsonPath::parse(".data.items[0].stock").unwrap().get(&doc),
            Ok(7)
        );
        assert_eq!(
            JsonPath::parse("data.items[1].stock").unwrap().get(&doc),
            Ok(1)
        );
        let e = JsonPath::parse(".nope").unwrap().get(&doc).unwrap_err();
        assert!(e.contains(".nope"), "{e}");
        assert!(JsonPath::parse(".data").unwrap().get(&doc).is_err());
        for bad in ["", ".", "a[", "a[x]", "a..b"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    fn r(stock: Option<i64>, units_sold: Option<i64>) -> Reading {
        Reading { stock, units_sold }
    }

    #[test]
    fn database_records_beat_the_client_count() {
        // Stock 1, the service sold 5 (lost updates left stock at 0) and
        // said yes 5 times.
        let a = audit(1, r(Some(1), Some(0)), r(Some(0), Some(5)), 5, 0, 1);
        assert_eq!((a.units_sold, a.oversold_units, a.stock_drift), (5, 4, -4));
        assert_eq!(of_audit(&a), Verdict::Oversold);
        // It said yes 3 times but recorded 5 orders, 1 request unanswered.
        let b = audit(10, r(Some(10), Some(0)), r(Some(5), Some(5)), 3, 1, 1);
        assert_eq!(
            (b.successes_without_order, b.orders_without_success),
            (0, 1)
        );
        assert_eq!(of_audit(&b), Verdict::Inconsistent);
    }

    #[test]
    fn a_stock_endpoint_shows_drift() {
        let a = audit(1, r(Some(1), None), r(Some(0), None), 12, 0, 1);
        assert_eq!(
            (a.units_sold, a.oversold_units, a.stock_drift),
            (12, 11, -11)
        );
        let safe = audit(3, r(Some(3), None), r(Some(0), None), 3, 0, 1);
        assert_eq!(of_audit(&safe), Verdict::Safe);
    }

    #[test]
    fn the_client_belief_counts_successes_only() {
        let a = audit(2, Reading::default(), Reading::default(), 4, 0, 2);
        assert_eq!(
            (a.units_sold, a.final_stock, a.oversold_units, a.stock_drift),
            (8, -6, 6, 0)
        );
        let ok = audit(2, Reading::default(), Reading::default(), 1, 5, 2);
        assert_eq!(of_audit(&ok), Verdict::Safe);
    }
}
