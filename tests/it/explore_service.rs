//! `racelab http URL --explore`: every interleaving of two requests to
//! real services started by the suite (tests/services: Python on asyncpg,
//! psycopg 3 and the SQLAlchemy ORM; the flow shop with a login step),
//! scheduled through the wire proxy. Unsafe endpoints oversell with a
//! complete space, the same counts twice; a safe one is safe and
//! complete; a check and write in separate transactions is named
//! scope-based; a lock wait and a deadlock are handled; the exported spec
//! shows the oversell in PostgreSQL's isolationtester; a crashing service
//! fails with exit 3 and its last output.

use std::process::Command;

use libtest_mimic::Trial;
use serde_json::Value;

use crate::cli::{stderr, stdout};
use crate::common::trial;
use crate::proxy::service_race;

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "explore_service::asyncpg_unsafe_oversells_alike_twice_and_its_spec_too",
            asyncpg_unsafe,
        ),
        trial("explore_service::orm_unsafe_oversells", orm_unsafe),
        trial(
            "explore_service::safe_is_safe_and_complete_with_lock_waits",
            safe,
        ),
        trial("explore_service::split_is_scope_based", split),
        trial("explore_service::a_deadlock_is_broken", deadlock),
        trial(
            "explore_service::a_flow_logs_in_outside_the_schedule",
            flow_login,
        ),
        trial(
            "explore_service::a_crashing_service_exits_3_with_its_output",
            crash,
        ),
    ]
}

const VERIFY: &str =
    "SELECT stock, (SELECT count(*) FROM orders) AS units_sold FROM products WHERE id = 1";

/// `racelab http URL --explore` on the test shop with `driver`, stock 1.
fn explore(
    driver: &str,
    path: &str,
    extra: &[&str],
) -> anyhow::Result<(std::process::Output, Value)> {
    let cmd = format!(
        "SHOP_THINK_S=0 SHOP_STOCK=1 DRIVER={driver} exec hypercorn --bind 127.0.0.1:{{port}} shop:app"
    );
    let mut args = vec![
        "--explore",
        "--buyers",
        "2",
        "--reset-url",
        "http://127.0.0.1:{port}/reset",
    ];
    args.extend_from_slice(extra);
    let (out, v, _dir) = service_race(path, &cmd, &args)?;
    Ok((out, v))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn check_oversold(out: &std::process::Output, v: &Value) -> anyhow::Result<()> {
    anyhow::ensure!(
        v["verdict"] == "oversold" && v["complete"] == true && v["kind"] == "explore",
        "verdict {} complete {}: {}",
        v["verdict"],
        v["complete"],
        stderr(out)
    );
    anyhow::ensure!(out.status.code() == Some(0), "{}", stderr(out));
    anyhow::ensure!(n(v, "oversold_schedules") >= 1 && n(v, "stuck_schedules") == 0);
    anyhow::ensure!(n(v, "diverged_schedules") == 0 && n(v, "error_schedules") == 0);
    let c = &v["counterexample"];
    anyhow::ensure!(c["audit"]["oversold_units"].as_i64() >= Some(1), "{c}");
    Ok(())
}

fn asyncpg_unsafe() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("unsafe.spec");
    let spec_arg = spec.display().to_string();
    let (out, v) = explore(
        "asyncpg",
        "/unsafe/buy",
        &[
            "--verify-sql",
            VERIFY,
            "--spec",
            &spec_arg,
            "--expect",
            "oversold",
        ],
    )?;
    check_oversold(&out, &v)?;
    let named: Vec<&String> = v["anomalies_seen"].as_object().unwrap().keys().collect();
    anyhow::ensure!(named.iter().any(|k| k.contains("lost update")), "{named:?}");
    // The counterexample is the service's own SQL with its bound values.
    let c = &v["counterexample"];
    let sqls: Vec<&str> = c["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sql"].as_str().unwrap())
        .collect();
    anyhow::ensure!(
        sqls.contains(&"UPDATE products SET stock = 0 WHERE id = 1"),
        "{sqls:?}"
    );
    // The same service, arguments and seed: the same counts.
    let (out2, v2) = explore("asyncpg", "/unsafe/buy", &["--verify-sql", VERIFY])?;
    check_oversold(&out2, &v2)?;
    for key in ["schedules_explored", "oversold_schedules", "steps", "waits"] {
        anyhow::ensure!(
            n(&v, key) == n(&v2, key),
            "{key}: {} then {}",
            v[key],
            v2[key]
        );
    }
    // The spec reproduces the oversell without the service, on a fresh database.
    let text = std::fs::read_to_string(&spec)?;
    anyhow::ensure!(
        text.contains("CREATE TABLE") && text.contains("permutation "),
        "{text}"
    );
    let bins = racelab::db::bins::find_server_bins(None)?;
    let bin = bins
        .postgres
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("lib/pgxs/src/test/isolation/isolationtester"))
        .filter(|b| b.exists())
        .ok_or_else(|| anyhow::anyhow!("isolationtester not found next to the server binaries"))?;
    let db = "t_svc_explore_spec";
    let mut url = url::Url::parse(crate::common::server_url())?;
    let psql = bins.postgres.with_file_name("psql");
    let admin = url.to_string();
    let sql = |q: &str| {
        Command::new(&psql)
            .args([admin.as_str(), "-X", "-q", "-c", q])
            .output()
    };
    let _ = sql(&format!("DROP DATABASE IF EXISTS {db}"))?;
    anyhow::ensure!(sql(&format!("CREATE DATABASE {db}"))?.status.success());
    url.set_path(&format!("/{db}"));
    let run = Command::new(&bin)
        .arg(url.as_str())
        .stdin(std::fs::File::open(&spec)?)
        .output()?;
    let _ = sql(&format!("DROP DATABASE IF EXISTS {db}"))?;
    let shown = stdout(&run);
    anyhow::ensure!(run.status.success(), "{shown}\n{}", stderr(&run));
    let lines: Vec<String> = shown.lines().map(|l| l.replace(' ', "")).collect();
    let at = lines
        .iter()
        .position(|l| l == "stock|units_sold")
        .ok_or_else(|| anyhow::anyhow!("no audit in:\n{shown}"))?;
    // Stock 1, two units sold: the oversell, in PostgreSQL's own tester.
    anyhow::ensure!(lines[at + 2] == "0|2", "{shown}");
    Ok(())
}

fn orm_unsafe() -> anyhow::Result<()> {
    let (out, v) = explore(
        "sqlalchemy",
        "/unsafe/buy",
        &["--stock-url", "http://127.0.0.1:{port}/stock"],
    )?;
    check_oversold(&out, &v)
}

fn safe() -> anyhow::Result<()> {
    let (out, v) = explore(
        "asyncpg",
        "/safe/buy",
        &["--verify-sql", VERIFY, "--expect", "safe"],
    )?;
    anyhow::ensure!(
        v["verdict"] == "safe" && v["complete"] == true && out.status.success(),
        "{} {}: {}",
        v["verdict"],
        v["verdict_reason"],
        stderr(&out)
    );
    // The second guarded UPDATE waits on the first's row lock in some schedules.
    anyhow::ensure!(n(&v, "waits") >= 1 && n(&v, "stuck_schedules") == 0, "{v}");
    anyhow::ensure!(v["outcomes"]["sold_out"].as_u64() >= Some(1), "{v}");
    Ok(())
}

fn split() -> anyhow::Result<()> {
    let (out, v) = explore(
        "psycopg",
        "/split/buy",
        &["--stock-url", "http://127.0.0.1:{port}/stock"],
    )?;
    check_oversold(&out, &v)?;
    let named: Vec<&String> = v["anomalies_seen"].as_object().unwrap().keys().collect();
    anyhow::ensure!(named.iter().any(|k| k.contains("scope-based")), "{named:?}");
    Ok(())
}

fn deadlock() -> anyhow::Result<()> {
    let (out, v) = explore(
        "asyncpg",
        "/upgrade/buy",
        &["--verify-sql", VERIFY, "--rejected", "503"],
    )?;
    anyhow::ensure!(
        n(&v, "deadlocks") >= 1 && n(&v, "stuck_schedules") == 0 && v["complete"] == true,
        "{v}\n{}",
        stderr(&out)
    );
    anyhow::ensure!(v["outcomes"]["rejected"].as_u64() >= Some(1), "{v}");
    anyhow::ensure!(
        v["verdict"] == "safe",
        "{}: {}",
        v["verdict"],
        v["verdict_reason"]
    );
    Ok(())
}

const FLOW: &str = r#"
[[step]]
name = "login"
request = "POST /s/svc/login"
body = '{"user": "user{{buyer}}", "password": "pw-svc-{{buyer}}-s3cret"}'
extract = { token = "json .token" }
expect = [200]

[[step]]
name = "buy"
race = true
request = "POST /s/svc/buy-now"
headers = { Authorization = "Bearer {{token}}" }
body = '{"qty": 1}'
success = [201]
sold_out = [409]
"#;

fn flow_login() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let flow = dir.path().join("flow.toml");
    std::fs::write(&flow, FLOW)?;
    let flow_arg = flow.display().to_string();
    let (out, v, _d) = service_race(
        "",
        "cd ../shop-py && SHOP_PORT={port} exec python3 shop.py",
        &[
            "--explore",
            "--buyers",
            "2",
            "--flow",
            &flow_arg,
            "--buyer-name",
            "{n}",
            "--reset-url",
            "http://127.0.0.1:{port}/s/svc/reset?stock=1&users=2&think_ms=0",
            "--stock-url",
            "http://127.0.0.1:{port}/s/svc/stock",
        ],
    )?;
    check_oversold(&out, &v)?;
    Ok(())
}

fn crash() -> anyhow::Result<()> {
    // No result to print: the failure, with the service's last output.
    let e = explore("asyncpg", "/crash/buy", &["--verify-sql", VERIFY])
        .err()
        .ok_or_else(|| anyhow::anyhow!("a crashing service gave a result"))?
        .to_string();
    anyhow::ensure!(e.contains("exit Some(3)"), "{e}");
    anyhow::ensure!(e.contains("crashes on purpose"), "{e}");
    Ok(())
}
