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
    Sql {
        sql: String,
    },
    StockUrl {
        url: reqwest::Url,
        stock: JsonExpr,
        /// `--sold-json-path`: units sold, from the same document.
        sold: Option<JsonExpr>,
    },
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

/// A path into a JSON document: `.stock`, `stock`, `.data.items[0].stock`,
/// `.["reserved-qty"]`; `.` alone is the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl JsonPath {
    /// The value at this path, if the document has it.
    pub fn lookup<'a>(&self, doc: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let mut cur = doc;
        for step in &self.0 {
            cur = match step {
                Step::Key(k) => cur.get(k),
                Step::Index(i) => cur.get(i),
            }?;
        }
        Some(cur)
    }

    /// The integer at this path.
    pub fn get(&self, doc: &serde_json::Value) -> Result<i64, String> {
        let cur = self
            .lookup(doc)
            .ok_or_else(|| format!("{self} is missing in {}", short(doc)))?;
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
        if self.0.is_empty() {
            return write!(f, ".");
        }
        for s in &self.0 {
            match s {
                Step::Key(k) if k.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                    write!(f, ".{k}")?
                }
                Step::Key(k) => write!(f, ".[{k:?}]")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A number read from a JSON document: a path, or a small expression over
/// paths and integers with `+ - *`, unary minus and parentheses, e.g.
/// `.quantity - .reservedQuantity` (`--stock-json-path`, `--sold-json-path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonExpr {
    Path(JsonPath),
    Int(i64),
    Neg(Box<JsonExpr>),
    Bin(Box<JsonExpr>, Op, Box<JsonExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
}

impl JsonExpr {
    /// Parse `text`, the value of `flag`; errors name the flag and column.
    pub fn parse(flag: &str, text: &str) -> anyhow::Result<JsonExpr> {
        let mut p = ExprParser { text, pos: 0, flag };
        p.skip_space();
        if p.pos == text.len() {
            return Err(p.error("it is empty"));
        }
        let e = p.expr()?;
        p.skip_space();
        if p.pos < text.len() {
            return Err(p.error(&format!("unexpected {:?}", p.rest_char())));
        }
        Ok(e)
    }

    /// The value for `doc`: every path must be there and be a number.
    pub fn eval(&self, doc: &serde_json::Value) -> Result<i64, String> {
        Ok(match self {
            JsonExpr::Path(p) => p.get(doc)?,
            JsonExpr::Int(i) => *i,
            JsonExpr::Neg(e) => e
                .eval(doc)?
                .checked_neg()
                .ok_or_else(|| format!("-({e}) overflows"))?,
            JsonExpr::Bin(a, op, b) => {
                let (x, y) = (a.eval(doc)?, b.eval(doc)?);
                match op {
                    Op::Add => x.checked_add(y),
                    Op::Sub => x.checked_sub(y),
                    Op::Mul => x.checked_mul(y),
                }
                .ok_or_else(|| format!("{self} overflows ({x} and {y})"))?
            }
        })
    }
}

impl std::fmt::Display for JsonExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonExpr::Path(p) => write!(f, "{p}"),
            JsonExpr::Int(i) => write!(f, "{i}"),
            JsonExpr::Neg(e) => write!(f, "-{e}"),
            JsonExpr::Bin(a, op, b) => {
                let op = match op {
                    Op::Add => "+",
                    Op::Sub => "-",
                    Op::Mul => "*",
                };
                write!(f, "({a} {op} {b})")
            }
        }
    }
}

/// A recursive-descent parser: `expr := term (('+'|'-') term)*`,
/// `term := unary ('*' unary)*`, `unary := '-' unary | atom`,
/// `atom := integer | path | '(' expr ')'`.
struct ExprParser<'a> {
    text: &'a str,
    pos: usize,
    flag: &'a str,
}

impl ExprParser<'_> {
    fn error(&self, why: &str) -> anyhow::Error {
        bad_input(format!(
            "{} {:?}: column {}: {why}; write a path like .stock or .data.items[0].stock, \
             or an expression like '.quantity - .reserved'",
            self.flag,
            self.text,
            self.text[..self.pos].chars().count() + 1
        ))
    }

    fn rest_char(&self) -> char {
        self.text[self.pos..].chars().next().unwrap_or(' ')
    }

    fn skip_space(&mut self) {
        while self.rest_char().is_whitespace() && self.pos < self.text.len() {
            self.pos += self.rest_char().len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.pos < self.text.len() && self.rest_char() == c {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> anyhow::Result<JsonExpr> {
        let mut e = self.term()?;
        loop {
            let op = if self.eat('+') {
                Op::Add
            } else if self.eat('-') {
                Op::Sub
            } else {
                return Ok(e);
            };
            e = JsonExpr::Bin(Box::new(e), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> anyhow::Result<JsonExpr> {
        let mut e = self.unary()?;
        while self.eat('*') {
            e = JsonExpr::Bin(Box::new(e), Op::Mul, Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> anyhow::Result<JsonExpr> {
        if self.eat('-') {
            return Ok(JsonExpr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> anyhow::Result<JsonExpr> {
        self.skip_space();
        if self.pos >= self.text.len() {
            return Err(self.error("expected a path, a number or `(` at the end"));
        }
        if self.eat('(') {
            let e = self.expr()?;
            if !self.eat(')') {
                return Err(self.error("expected `)`"));
            }
            return Ok(e);
        }
        let c = self.rest_char();
        if c.is_ascii_digit() {
            let start = self.pos;
            while self.pos < self.text.len() && self.rest_char().is_ascii_digit() {
                self.pos += 1;
            }
            return self.text[start..self.pos]
                .parse()
                .map(JsonExpr::Int)
                .map_err(|_| self.error("the number is too large"));
        }
        if c == '.' || c == '[' || c.is_alphabetic() || c == '_' {
            return self.path().map(JsonExpr::Path);
        }
        Err(self.error(&format!("expected a path, a number or `(`, found {c:?}")))
    }

    fn key_char(c: char) -> bool {
        c.is_alphanumeric() || c == '_' || c == '$' || c == '@'
    }

    fn path(&mut self) -> anyhow::Result<JsonPath> {
        let mut steps = Vec::new();
        // A bare first key (`stock`) or a leading dot (`.stock`, `.`).
        let mut need_key = !self.text[self.pos..].starts_with(['.', '[']);
        if !need_key && self.rest_char() == '.' {
            self.pos += 1;
            need_key = self.pos < self.text.len() && Self::key_char(self.rest_char());
        }
        loop {
            if need_key {
                let start = self.pos;
                while self.pos < self.text.len() && Self::key_char(self.rest_char()) {
                    self.pos += self.rest_char().len_utf8();
                }
                if start == self.pos {
                    return Err(self.error("expected a key after `.`"));
                }
                steps.push(Step::Key(self.text[start..self.pos].to_string()));
                need_key = false;
                continue;
            }
            if self.pos >= self.text.len() {
                break;
            }
            match self.rest_char() {
                '.' => {
                    self.pos += 1;
                    if self.pos < self.text.len() && self.rest_char() == '[' {
                        continue;
                    }
                    need_key = true;
                }
                '[' => {
                    self.pos += 1;
                    let rest = &self.text[self.pos..];
                    if let Some(q) = rest.strip_prefix('"') {
                        let end = q
                            .find('"')
                            .ok_or_else(|| self.error("a quoted key is not closed"))?;
                        let key = q[..end].to_string();
                        self.pos += 1 + end + 1;
                        if !self.text[self.pos..].starts_with(']') {
                            return Err(self.error("expected `]` after the quoted key"));
                        }
                        self.pos += 1;
                        steps.push(Step::Key(key));
                        continue;
                    }
                    let end = rest
                        .find(']')
                        .ok_or_else(|| self.error("`[` is not closed"))?;
                    let i = rest[..end]
                        .trim()
                        .parse()
                        .map_err(|_| self.error("an index must be a whole number, e.g. [0]"))?;
                    self.pos += end + 1;
                    steps.push(Step::Index(i));
                }
                _ => break,
            }
        }
        Ok(JsonPath(steps))
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// GET the stock endpoint and read the stock (and the units sold, when
/// asked) from its JSON.
pub async fn read_stock_url(
    client: &reqwest::Client,
    url: &reqwest::Url,
    stock: &JsonExpr,
    sold: Option<&JsonExpr>,
) -> anyhow::Result<Reading> {
    let what = || format!("reading the stock from {} (--stock-url)", super::shown(url));
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", what(), super::text::chain(&e.without_url())))?;
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
    let stock = stock
        .eval(&doc)
        .map_err(|why| bad_input(format!("--stock-json-path: {why}")))?;
    let units_sold = sold
        .map(|e| e.eval(&doc))
        .transpose()
        .map_err(|why| bad_input(format!("--sold-json-path: {why}")))?;
    Ok(Reading {
        stock: Some(stock),
        units_sold,
    })
}

/// POST the reset endpoint; anything but a 2xx is a failure.
pub async fn reset_url(client: &reqwest::Client, url: &reqwest::Url) -> anyhow::Result<()> {
    let resp = client.post(url.clone()).send().await.map_err(|e| {
        anyhow::anyhow!(
            "--reset-url {}: {}",
            super::shown(url),
            super::text::chain(&e.without_url())
        )
    })?;
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "--reset-url {} answered HTTP {status}: {}",
            super::shown(url),
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
        duplicate_orders: 0,
        sold_out_with_stock_left: 0,
        stock_left_after_sold_out: 0,
        cache_drift: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{of_audit, Verdict};

    fn expr(text: &str) -> JsonExpr {
        JsonExpr::parse("--stock-json-path", text).unwrap_or_else(|e| panic!("{text}: {e:#}"))
    }

    fn bad(text: &str) -> String {
        format!(
            "{:#}",
            JsonExpr::parse("--stock-json-path", text).expect_err(text)
        )
    }

    #[test]
    fn json_paths() {
        let doc =
            serde_json::json!({"stock": 3, "data": {"items": [{"stock": "7"}, {"stock": 1.0}]}});
        assert_eq!(expr(".stock").eval(&doc), Ok(3));
        assert_eq!(expr("stock").eval(&doc), Ok(3));
        assert_eq!(expr(".data.items[0].stock").eval(&doc), Ok(7));
        assert_eq!(expr("data.items[1].stock").eval(&doc), Ok(1));
        assert_eq!(expr(".[\"stock\"]").eval(&doc), Ok(3));
        assert_eq!(expr(".").eval(&serde_json::json!(12)), Ok(12));
        let e = expr(".nope").eval(&doc).unwrap_err();
        assert!(e.contains(".nope is missing"), "{e}");
        let e = expr(".data").eval(&doc).unwrap_err();
        assert!(e.contains(".data is {\"items\""), "{e}");
        for bad_path in ["", " ", "a[", "a[x]", "a..b", ".[\"x\"", "[-1]"] {
            assert!(
                JsonExpr::parse("--stock-json-path", bad_path).is_err(),
                "{bad_path}"
            );
        }
    }

    #[test]
    fn json_expressions() {
        let doc = serde_json::json!({
            "quantity": 10, "reservedQuantity": 3, "reserved-qty": "2",
            "lots": [{"n": 4}, {"n": 5}], "price": 2.5, "name": "shoe", "none": null,
        });
        let cases = [
            (".quantity - .reservedQuantity", 7),
            (".quantity-.reservedQuantity", 7),
            (".quantity - .[\"reserved-qty\"]", 8),
            (".lots[0].n + .lots[1].n * 2", 14),
            ("(.lots[0].n + .lots[1].n) * 2", 18),
            ("-.quantity + 1", -9),
            (".quantity - -3", 13),
            ("100 - .quantity - .reservedQuantity", 87),
            ("  .quantity  ", 10),
        ];
        for (text, want) in cases {
            assert_eq!(expr(text).eval(&doc), Ok(want), "{text}");
        }
        // Errors when evaluating name the path and what is wrong with it.
        let missing = expr(".quantity - .reserved").eval(&doc).unwrap_err();
        assert!(
            missing.starts_with(".reserved is missing in {"),
            "{missing}"
        );
        let text = expr(".quantity - .name").eval(&doc).unwrap_err();
        assert_eq!(text, ".name is \"shoe\", not a number");
        let frac = expr(".price * 2").eval(&doc).unwrap_err();
        assert_eq!(frac, ".price is 2.5, not a whole number");
        let null = expr(".none + 1").eval(&doc).unwrap_err();
        assert_eq!(null, ".none is null, not a number");
        let big = serde_json::json!({"a": i64::MAX});
        assert!(expr(".a + 1").eval(&big).unwrap_err().contains("overflows"));
        assert!(expr(".a * .a")
            .eval(&big)
            .unwrap_err()
            .contains("overflows"));
    }

    #[test]
    fn json_expression_syntax_errors_name_the_column() {
        let e = bad(".quantity -");
        assert!(
            e.starts_with("--stock-json-path \".quantity -\": column 12: expected a path"),
            "{e}"
        );
        assert!(bad(".a + + ").contains("column 6"), "{}", bad(".a + + "));
        assert!(
            bad("(.a - .b").contains("expected `)`"),
            "{}",
            bad("(.a - .b")
        );
        assert!(bad(".a .b").contains("unexpected '.'"), "{}", bad(".a .b"));
        assert!(
            bad(".a / 2").contains("unexpected '/'"),
            "{}",
            bad(".a / 2")
        );
        assert!(bad(".a - 99999999999999999999").contains("too large"));
        assert!(bad("").contains("it is empty"));
        // The flag named is the one given.
        let sold = format!(
            "{:#}",
            JsonExpr::parse("--sold-json-path", "*").unwrap_err()
        );
        assert!(
            sold.starts_with("--sold-json-path \"*\": column 1"),
            "{sold}"
        );
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
