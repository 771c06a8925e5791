//! Helpers for driving the racelab binary against the shared test server:
//! each test gets its own schema, so tests never see each other's labs.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The racelab binary built for this test run.
pub fn racelab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_racelab"))
}

/// `racelab <args> --database-url <shared> --schema <schema> --no-save --quiet`,
/// not started yet.
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
    cmd
}

/// `racelab_cmd_on`, run to its end.
pub fn racelab_on(schema: &str, args: &[&str]) -> Output {
    racelab_cmd_on(schema, args).output().expect("racelab runs")
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

/// The runs of a `{"runs": [...]}` document, or the single run object.
pub fn runs(v: &Value) -> Vec<Value> {
    match v.get("runs") {
        Some(Value::Array(runs)) => runs.clone(),
        _ => vec![v.clone()],
    }
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
    rt.block_on(async {
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
    })
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
        .output()?;
    Ok((files, out))
}

/// How many built-in strategies racelab has (from `racelab list`).
pub fn builtin_count() -> usize {
    racelab::strategy::builtins().len()
}
