//! Helpers for driving the racelab binary against the shared test server:
//! each test gets its own schema, so tests never see each other's labs.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::OutputWithin;

/// The racelab binary built for this test run.
pub fn racelab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_racelab"))
}

/// `racelab <args> --database-url <shared> --schema <schema> --no-save --quiet
/// --connect-timeout 60`, not started yet. The long connect timeout: while
/// a 500-buyer race opens its connections the shared server's postmaster
/// accepts others' slowly on a loaded machine, and a test about something
/// else must not fail on the default 5 s (the tests of the timeout itself
/// set their own).
pub fn racelab_cmd_on(schema: &str, args: &[&str]) -> Command {
    let mut cmd = racelab();
    cmd.args(args).args([
        "--database-url",
        crate::common::server_url(),
        "--schema",
        schema,
        "--no-save",
        "--quiet",
    ]);
    if !args.contains(&"--connect-timeout") {
        cmd.args(["--connect-timeout", "60"]);
    }
    cmd
}

/// `racelab_cmd_on`, run to its end (killed, and the test failed, if it
/// has not ended within `common::CHILD_LIMIT`).
pub fn racelab_on(schema: &str, args: &[&str]) -> Output {
    racelab_cmd_on(schema, args)
        .output_bounded()
        .unwrap_or_else(|e| panic!("racelab {args:?}: {e}"))
}

/// Run with `--json` and parse stdout; panics with stderr when it is not JSON.
pub fn json_on(schema: &str, args: &[&str]) -> (Output, Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = racelab_on(schema, &all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "racelab {args:?} printed no JSON ({e}); exit {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v)
}

/// The runs of a `{"runs": [...]}` document, or the single run object;
/// fails unless there are exactly `expected` (a loop over an empty or
/// short list would check nothing).
pub fn runs(v: &Value, expected: usize) -> Vec<Value> {
    let runs = match v.get("runs") {
        Some(Value::Array(runs)) => runs.clone(),
        _ => vec![v.clone()],
    };
    assert_eq!(
        runs.len(),
        expected,
        "want {expected} runs, found {}: {v}",
        runs.len()
    );
    runs
}

pub fn int(v: &Value, path: &str) -> i64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_i64()
        .unwrap_or_else(|| panic!("{path} is not an integer in {v}"))
}

pub fn text(v: &Value, path: &str) -> String {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {v}"))
        .to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write a strategy script into a temp dir and return its path.
pub fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    path.display().to_string()
}

/// Run one SQL query on the shared server and return the first column of
/// the first row as text (psql-free: through sqlx on a current-thread runtime).
pub fn query_one(sql: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _w = crate::common::waiting_for(format!("the answer to {sql}"));
    let query = async {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(crate::common::server_url())
            .await
            .unwrap();
        let row = sqlx::query(sql).fetch_optional(&mut conn).await.unwrap();
        let v = row.map(|r| {
            r.try_get::<Option<String>, _>(0)
                .map(|s| s.unwrap_or_default())
                .or_else(|_| r.try_get::<i64, _>(0).map(|i| i.to_string()))
                .unwrap()
        });
        let _ = conn.close().await;
        v
    };
    rt.block_on(async { tokio::time::timeout(crate::common::CHILD_LIMIT, query).await })
        .unwrap_or_else(|_| panic!("no answer to {sql}"))
}

/// The result files saved in `results`, and `racelab report` run on them
/// into `html`.
pub fn report_of(
    results: &Path,
    html: &Path,
) -> std::io::Result<(Vec<std::path::PathBuf>, Output)> {
    let files: Vec<_> = std::fs::read_dir(results)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let out = racelab()
        .arg("report")
        .args(&files)
        .arg("-o")
        .arg(html)
        .output_bounded()?;
    Ok((files, out))
}

/// How many built-in strategies racelab has (from `racelab list`).
pub fn builtin_count() -> usize {
    racelab::strategy::builtins().len()
}

/// The verdict a run's audit numbers call for, derived here from the JSON
/// alone (DESIGN's verdict rules): oversold units make it `oversold`; any
/// drift, negative stock, order without success (or the reverse),
/// duplicate, sold-out answer with stock left, or cache drift makes it
/// `inconsistent`; clean books are `safe` when the race tested something
/// (a unit sold and two attempts overlapped), else `inconclusive`.
pub fn verdict_of_audit(r: &Value) -> &'static str {
    let a = &r["audit"];
    assert!(a.is_object(), "no audit in {r}");
    let n = |k: &str| a[k].as_i64().unwrap_or_else(|| panic!("audit.{k} in {r}"));
    if n("oversold_units") > 0 {
        return "oversold";
    }
    let broken = n("stock_drift") != 0
        || a["negative_stock"] == Value::Bool(true)
        || n("successes_without_order") != 0
        || n("orders_without_success") != 0
        || n("duplicate_orders") != 0
        || n("sold_out_with_stock_left") != 0
        || a["cache_drift"].as_i64().is_some_and(|d| d != 0);
    if broken {
        return "inconsistent";
    }
    let stock = int(r, "scenario.stock");
    let qty = int(r, "scenario.quantity").max(1);
    let nothing_sold = int(r, "outcomes.attempts") > 0 && n("units_sold") == 0 && stock >= qty;
    if nothing_sold || int(r, "contention.overlapped_attempts") == 0 {
        "inconclusive"
    } else {
        "safe"
    }
}
