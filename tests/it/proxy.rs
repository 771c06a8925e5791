//! The wire proxy with real clients and real services: `racelab proxy
//! --record` under psql, pgbench and asyncpg (named prepared statements),
//! authentication relayed (md5, SCRAM), a cancel forwarded, a gate that
//! holds each batch; and `racelab http --service` racing services written
//! for these tests (`tests/services/proxy`: Python on asyncpg, psycopg 3
//! and SQLAlchemy, Node on node-postgres), whose traces must name what
//! their endpoints do, whose statements must match the server's own log,
//! and which must leave nothing running whatever happens to racelab.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use racelab::proxy::record::{read_jsonl, Record, Statement, TxEnd};
use serde_json::Value;

use crate::cli::{racelab, stderr};
use crate::common::{trial, wait_status, Lines, OutputWithin, CHILD_LIMIT};

pub fn tests() -> Vec<Trial> {
    vec![
        trial("proxy::a_psql_session_is_recorded", psql_session),
        trial("proxy::a_pgbench_run_is_recorded", pgbench_run),
        trial(
            "proxy::asyncpg_named_statements_are_recorded_with_their_values",
            asyncpg_named,
        ),
        trial(
            "proxy::md5_and_scram_pass_through_and_no_secret_is_recorded",
            auth_passthrough,
        ),
        trial("proxy::a_gate_holds_each_batch_until_admitted", gate_holds),
        trial(
            "proxy::service_asyncpg_unsafe_names_a_lost_update",
            service_asyncpg_unsafe,
        ),
        trial(
            "proxy::service_psycopg_split_is_scope_based",
            service_psycopg_split,
        ),
        trial(
            "proxy::service_orm_unsafe_names_a_lost_update",
            service_orm_unsafe,
        ),
        trial("proxy::service_node_safe_names_none", service_node_safe),
        trial(
            "proxy::recorded_statements_match_the_server_log",
            matches_server_log,
        ),
        trial(
            "proxy::a_service_that_never_answers_fails_with_its_output",
            service_never_ready,
        ),
        trial(
            "proxy::nothing_is_left_after_sigint_or_sigkill",
            nothing_left,
        ),
    ]
}

fn bin(name: &str) -> PathBuf {
    let dir = racelab::db::bins::find_server_bins(None)
        .ok()
        .and_then(|b| b.postgres.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    dir.join(name)
}

pub(crate) fn services() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/proxy")
}

/// A `racelab proxy` child in front of `upstream`, recording to `record`.
struct ProxyChild {
    child: Child,
    port: u16,
    record: PathBuf,
}

impl ProxyChild {
    fn start(upstream: &str, record: &Path) -> anyhow::Result<ProxyChild> {
        let mut child = racelab()
            .args(["proxy", "--quiet", "--upstream", upstream, "--record"])
            .arg(record)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = Lines::of(child.stdout.take().expect("piped"), "racelab proxy");
        let line = out.next_within(CHILD_LIMIT);
        out.drain();
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("racelab proxy said {line:?}"))?;
        Ok(ProxyChild {
            child,
            port,
            record: record.to_path_buf(),
        })
    }

    /// The shared server's URL through this proxy.
    fn url(&self, base: &str) -> String {
        racelab::service::through(base, ([127, 0, 0, 1], self.port).into()).unwrap()
    }

    /// SIGINT, wait for a clean exit, read the record.
    fn stop(mut self) -> anyhow::Result<Vec<Record>> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = wait_status(&mut self.child, CHILD_LIMIT)?
            .ok_or_else(|| anyhow::anyhow!("racelab proxy still running after SIGINT"))?;
        anyhow::ensure!(st.success(), "racelab proxy exited {st}");
        read_jsonl(&std::fs::read_to_string(&self.record)?)
    }
}

fn statements(records: &[Record]) -> Vec<&Statement> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Statement(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output_bounded()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn psql_session() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = ProxyChild::start(crate::common::server_url(), &dir.path().join("r.jsonl"))?;
    let script = "SET search_path = t_proxy_psql;\n\
        CREATE SCHEMA IF NOT EXISTS t_proxy_psql;\n\
        DROP TABLE IF EXISTS t_proxy_psql.items;\n\
        CREATE TABLE t_proxy_psql.items (id int PRIMARY KEY, name text);\n\
        BEGIN;\n\
        INSERT INTO items VALUES (1, 'one'), (2, 'two');\n\
        SELECT id, name FROM items ORDER BY id;\n\
        COMMIT;\n\
        SELECT 1/0;\n\
        BEGIN;\n\
        UPDATE items SET name = 'uno' WHERE id = 1;\n\
        ROLLBACK;\n";
    // One Query: psql reports the division's error (exit 1) and goes no further.
    let out = Command::new(bin("psql"))
        .arg(p.url(crate::common::server_url()))
        .args(["-X", "-q", "-c", script])
        .output_bounded()?;
    assert!(
        stderr(&out).contains("division by zero"),
        "{}",
        stderr(&out)
    );
    let records = p.stop()?;
    let st = statements(&records);
    let select = st
        .iter()
        .find(|s| s.sql.starts_with("SELECT id, name"))
        .expect("the SELECT");
    assert_eq!(
        select.rows,
        vec![
            vec![Value::from(1), "one".into()],
            vec![2.into(), "two".into()]
        ]
    );
    assert_eq!(select.tag.as_deref(), Some("SELECT 2"));
    let insert = st.iter().find(|s| s.sql.starts_with("INSERT")).unwrap();
    assert_eq!(insert.rows_affected, Some(2));
    // One Query of many statements: one implicit transaction, and a
    // failed one that rolled everything in it back.
    assert_eq!(insert.txn, select.txn);
    // The statement that failed is named; the rest of the Query never ran.
    let failed = st.iter().find(|s| s.error.is_some()).expect("an error");
    assert_eq!(failed.sql, "SELECT 1/0");
    assert_eq!(failed.error.as_ref().unwrap().sqlstate, "22012");
    assert!(!st.iter().any(|s| s.sql.starts_with("UPDATE")));
    let tx = records
        .iter()
        .find_map(|r| match r {
            Record::Transaction(t) if Some(t.txn) == insert.txn => Some(t),
            _ => None,
        })
        .expect("its transaction");
    assert_eq!(tx.end, TxEnd::Rollback, "{tx:?}");
    assert!(matches!(records.first(), Some(Record::Proxy(_))));
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Connect(c) if c.backend_pid.is_some() && c.application_name.as_deref() == Some("psql"))));
    // The same statements one at a time (-f): explicit transactions.
    let p = ProxyChild::start(crate::common::server_url(), &dir.path().join("r2.jsonl"))?;
    let file = dir.path().join("s.sql");
    std::fs::write(&file, script)?;
    run(Command::new(bin("psql"))
        .arg(p.url(crate::common::server_url()))
        .args(["-X", "-q", "-f"])
        .arg(&file))?;
    let records = p.stop()?;
    let st = statements(&records);
    let upd = st.iter().find(|s| s.sql.starts_with("UPDATE")).unwrap();
    let ends: Vec<TxEnd> = records
        .iter()
        .filter_map(|r| match r {
            Record::Transaction(t) if !t.implicit => Some(t.end),
            _ => None,
        })
        .collect();
    assert_eq!(ends, vec![TxEnd::Commit, TxEnd::Rollback]);
    assert_eq!(upd.rows_affected, Some(1));
    let div = st
        .iter()
        .find(|s| s.sql == "SELECT 1/0")
        .expect("its own statement");
    assert_eq!(div.error.as_ref().unwrap().message, "division by zero");
    Ok(())
}

fn pgbench_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = crate::common::server_url();
    let db_url = format!(
        "{}/t_proxy_pgbench",
        base.rsplit_once('/').expect("a URL").0
    );
    let _ = Command::new(bin("psql"))
        .args([base, "-X", "-q", "-c", "CREATE DATABASE t_proxy_pgbench"])
        .output_bounded()?;
    let p = ProxyChild::start(base, &dir.path().join("r.jsonl"))?;
    let url = p.url(&db_url);
    // Initialised through the proxy: COPY passes through.
    run(Command::new(bin("pgbench")).args(["-i", "-q", "-s", "1", &url]))?;
    run(Command::new(bin("pgbench")).args(["-c", "2", "-t", "10", "-M", "prepared", &url]))?;
    let records = p.stop()?;
    let st = statements(&records);
    let copy = st
        .iter()
        .find(|s| s.sql.starts_with("copy"))
        .expect("pgbench's COPY");
    assert_eq!(copy.rows_affected, Some(100_000));
    let updates: Vec<&&Statement> = st
        .iter()
        .filter(|s| s.statement.is_some() && s.sql.starts_with("UPDATE pgbench_accounts"))
        .collect();
    assert_eq!(updates.len(), 20);
    // Named statements, their bound values decoded: abalance += delta.
    assert!(updates[0].statement.as_deref().unwrap().starts_with('P'));
    assert_eq!(updates[0].params.len(), 2);
    assert!(updates
        .iter()
        .all(|u| u.params.iter().all(Value::is_number) || u.params.iter().all(Value::is_string)));
    assert!(updates.iter().all(|u| u.tag.as_deref() == Some("UPDATE 1")));
    let explicit = records
        .iter()
        .filter(|r| matches!(r, Record::Transaction(t) if !t.implicit && t.end == TxEnd::Commit && t.statements == 7))
        .count();
    assert_eq!(explicit, 20, "pgbench's 20 transactions of 7 statements");
    let select = st
        .iter()
        .find(|s| s.sql.starts_with("SELECT abalance"))
        .unwrap();
    assert_eq!(select.rows.len(), 1);
    Ok(())
}

fn python(script: &str, args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new("python3").arg("-c").arg(script).args(args))
}

fn asyncpg_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = ProxyChild::start(crate::common::server_url(), &dir.path().join("r.jsonl"))?;
    let script = r#"
import asyncio, asyncpg, sys, uuid, datetime, decimal
async def main(url):
    c = await asyncpg.connect(url)
    await c.execute("CREATE SCHEMA IF NOT EXISTS t_proxy_asyncpg; SET search_path = t_proxy_asyncpg")
    await c.execute("DROP TABLE IF EXISTS v; CREATE TABLE v(i int, n numeric, u uuid, t timestamptz, b bytea, ok bool, f float8, s text)")
    ins = await c.prepare("INSERT INTO v VALUES ($1,$2,$3,$4,$5,$6,$7,$8)")
    await ins.fetch(7, decimal.Decimal("12.50"), uuid.UUID(int=1), datetime.datetime(2024,1,2,3,4,5,tzinfo=datetime.timezone.utc), b"\x01\xff", True, 2.5, "é")
    print(await c.fetchval("SELECT count(*) FROM v WHERE i = $1", 7))
    try:
        await c.execute("SELECT pg_sleep(30)", timeout=0.3)
    except asyncio.TimeoutError:
        print("cancelled")
    await c.close()
asyncio.run(main(sys.argv[1]))
"#;
    let out = python(script, &[&p.url(crate::common::server_url())])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\ncancelled\n");
    let records = p.stop()?;
    let st = statements(&records);
    let ins = st
        .iter()
        .find(|s| s.sql.starts_with("INSERT INTO v"))
        .unwrap();
    assert!(ins
        .statement
        .as_deref()
        .unwrap()
        .starts_with("__asyncpg_stmt_"));
    assert_eq!(
        Value::from(ins.params.clone()),
        serde_json::json!([
            7,
            "12.50",
            "00000000-0000-0000-0000-000000000001",
            "2024-01-02 03:04:05+00",
            "\\x01ff",
            true,
            2.5,
            "é"
        ])
    );
    let types: Vec<String> = ins
        .param_types
        .iter()
        .map(|t| t.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "int4",
            "numeric",
            "uuid",
            "timestamptz",
            "bytea",
            "bool",
            "float8",
            "text"
        ]
    );
    let count = st
        .iter()
        .find(|s| s.sql.starts_with("SELECT count"))
        .unwrap();
    assert_eq!(count.rows, vec![vec![Value::from(1)]]);
    assert_eq!(count.params, vec![Value::from(7)]);
    // The timeout's CancelRequest went to the server through the proxy.
    let sleep = st.iter().find(|s| s.sql.contains("pg_sleep")).unwrap();
    assert_eq!(
        sleep.error.as_ref().map(|e| e.sqlstate.as_str()),
        Some("57014")
    );
    assert!(records.iter().any(|r| matches!(r, Record::Cancel(c) if c.forwarded && Some(c.backend_pid) == sleep.backend_pid)));
    Ok(())
}

fn auth_passthrough() -> anyhow::Result<()> {
    let cluster = racelab::db::Cluster::start(&crate::common::cluster_options()?)?;
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba)?;
    std::fs::write(
        &hba,
        format!("host all md5_user 127.0.0.1/32 md5\nhost all scram_user 127.0.0.1/32 scram-sha-256\n{old}"),
    )?;
    let sql = "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-s3cret';\
               SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 'scram-s3cret';\
               SELECT pg_reload_conf();";
    let url = crate::common::cluster_url(&cluster);
    run(Command::new(bin("psql")).args([url.as_str(), "-X", "-q", "-c", sql]))?;
    let dir = tempfile::tempdir()?;
    let p = ProxyChild::start(&url, &dir.path().join("r.jsonl"))?;
    for (user, pw, method) in [
        ("md5_user", "md5-s3cret", "md5"),
        ("scram_user", "scram-s3cret", "scram-sha-256"),
    ] {
        let url = format!("postgresql://{user}@127.0.0.1:{}/postgres", p.port);
        let out = run(Command::new(bin("psql")).env("PGPASSWORD", pw).args([
            &url,
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT current_user",
        ]))?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            user,
            "{method}"
        );
        let wrong = Command::new(bin("psql"))
            .env("PGPASSWORD", "wrong")
            .args([&url, "-X", "-c", "SELECT 1"])
            .output_bounded()?;
        assert!(!wrong.status.success());
        assert!(
            stderr(&wrong).contains("password authentication failed"),
            "{}",
            stderr(&wrong)
        );
    }
    // TLS is refused (`N`): a client that insists gets a clear no.
    let tls = Command::new(bin("psql"))
        .args([
            &format!(
                "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=require",
                p.port
            ),
            "-c",
            "SELECT 1",
        ])
        .output_bounded()?;
    assert!(!tls.status.success());
    assert!(
        stderr(&tls).contains("does not support SSL"),
        "{}",
        stderr(&tls)
    );
    let text = {
        let records = p.stop()?;
        assert_eq!(
            records
                .iter()
                .filter(|r| matches!(r, Record::Connect(c) if c.error.as_ref().is_some_and(|e| e.sqlstate == "28P01")))
                .count(),
            2
        );
        std::fs::read_to_string(dir.path().join("r.jsonl"))?
    };
    for secret in ["md5-s3cret", "scram-s3cret", "wrong"] {
        assert!(!text.contains(secret), "{secret} reached the record");
    }
    cluster.shutdown()?;
    Ok(())
}

/// A gate that reports each batch and waits to be told to admit it.
struct Held {
    seen: std::sync::mpsc::Sender<Vec<u8>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl racelab::proxy::Gate for Held {
    fn admit<'a>(
        &'a self,
        batch: racelab::proxy::Batch<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        let tags: Vec<u8> = batch.messages().iter().map(|m| m.0).collect();
        let _ = self.seen.send(tags);
        let go = self.go.lock().unwrap();
        let _ = go.recv_timeout(Duration::from_secs(20));
        Box::pin(async {})
    }
}

fn gate_holds() -> anyhow::Result<()> {
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let proxy = racelab::proxy::Proxy::start(
        listener,
        racelab::proxy::ProxyOptions {
            upstream: racelab::proxy::Upstream::parse(crate::common::server_url())?,
            sink: None,
            gate: Some(std::sync::Arc::new(Held {
                seen: seen_tx,
                go: std::sync::Mutex::new(go_rx),
            })),
        },
    )?;
    let url = racelab::service::through(crate::common::server_url(), proxy.addr())?;
    let client = std::thread::spawn(move || {
        crate::common::block_on(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS t_proxy_gate (i int); DELETE FROM t_proxy_gate",
            )
            .execute(&mut c)
            .await?;
            sqlx::query("INSERT INTO t_proxy_gate VALUES ($1)")
                .bind(5)
                .execute(&mut c)
                .await?;
            c.close().await?;
            anyhow::Ok(())
        })
    });
    let next = || seen.recv_timeout(Duration::from_secs(20));
    // sqlx's start-up queries, then the simple Query, each its own batch.
    let mut batches = Vec::new();
    loop {
        let tags = next()?;
        let done = tags.contains(&b'E') && tags.last() == Some(&b'S');
        if done {
            // Held: the server has not seen the INSERT yet.
            let n = crate::cli::query_one("SELECT count(*) FROM t_proxy_gate").unwrap_or_default();
            assert_eq!(n, "0");
        }
        batches.push(tags);
        go.send(())?;
        if done {
            break;
        }
    }
    assert!(batches.iter().any(|b| b.as_slice() == b"Q"), "{batches:?}");
    // The extended batch: Bind, Execute .. Sync, admitted whole.
    assert!(batches.last().unwrap().contains(&b'B'), "{batches:?}");
    // The client ends (Terminate needs no admission).
    while seen.recv_timeout(Duration::from_millis(0)).is_ok() {
        go.send(())?;
    }
    client.join().expect("client thread")?;
    assert_eq!(
        crate::cli::query_one("SELECT count(*) FROM t_proxy_gate").as_deref(),
        Some("1")
    );
    proxy.shutdown()?;
    Ok(())
}

/// `racelab http URL --service CMD ...` on a port of its own, with
/// `{port}` in the URL, CMD and the other arguments; tried again on a port
/// conflict.
pub(crate) fn service_race(
    path: &str,
    cmd: &str,
    extra: &[&str],
) -> anyhow::Result<(Output, Value, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().to_path_buf();
    for _ in 0..4 {
        let port = 20_000 + rand::random::<u16>() % 30_000;
        let url = format!("http://127.0.0.1:{port}{path}");
        let service = format!(
            "cd '{}' && {}",
            services().display(),
            cmd.replace("{port}", &port.to_string())
        );
        let out = racelab()
            .args([
                "http",
                &url,
                "--service",
                &service,
                "--json",
                "--quiet",
                "--out",
            ])
            .arg(&out_dir)
            .args(extra.iter().map(|a| a.replace("{port}", &port.to_string())))
            .output_bounded()?;
        let log_conflict = std::fs::read_dir(&out_dir)?.flatten().any(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|t| t.contains("Address already in use") || t.contains("EADDRINUSE"))
        });
        if !out.status.success() && log_conflict {
            for e in std::fs::read_dir(&out_dir)?.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
            continue;
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            anyhow::anyhow!(
                "no JSON ({e}); exit {:?}: {}",
                out.status.code(),
                stderr(&out)
            )
        })?;
        return Ok((out, v, dir));
    }
    anyhow::bail!("no free port in four tries")
}

fn anomalies(v: &Value) -> Vec<String> {
    v["service"]["trace"]["anomalies"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["kind"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

const VERIFY: &[&str] = &[
    "--verify-sql",
    "SELECT stock FROM products WHERE id = 1",
    "--buyers",
    "5",
];

fn check_result(v: &Value) -> anyhow::Result<()> {
    let schema: Value = serde_json::from_str(include_str!("../../docs/result.schema.json"))?;
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    anyhow::ensure!(errors.is_empty(), "{errors:?}");
    // The service's output went to the file the result names.
    let log = v["service"]["log"].as_str().expect("a log");
    anyhow::ensure!(Path::new(log).is_file(), "{log}");
    Ok(())
}

fn service_asyncpg_unsafe() -> anyhow::Result<()> {
    let (out, v, dir) = service_race(
        "/unsafe/buy",
        "DRIVER=asyncpg exec hypercorn --bind 127.0.0.1:{port} shop:app",
        &[VERIFY, &["--expect", "oversold"]].concat(),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    check_result(&v)?;
    let kinds = anomalies(&v);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "lost_update"),
        "{kinds:?}"
    );
    let a = &v["service"]["trace"]["anomalies"][0];
    assert_eq!(a["name"], "P4 lost update");
    assert_eq!(a["prevented_at"], "REPEATABLE READ");
    assert_eq!(a["row"], "products.stock (id=1)");
    assert!(a["overtaken_by"].as_array().is_some_and(|o| !o.is_empty()));
    // The report shows the service's trace and its anomalies.
    let html = dir.path().join("r.html");
    let files: Vec<PathBuf> = std::fs::read_dir(dir.path())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let rep = racelab()
        .arg("report")
        .args(&files)
        .arg("-o")
        .arg(&html)
        .output_bounded()?;
    assert!(rep.status.success(), "{}", stderr(&rep));
    let page = std::fs::read_to_string(&html)?;
    assert!(
        page.contains("P4 lost update"),
        "the report names the anomaly"
    );
    assert!(page.contains("UPDATE products SET stock = $1 WHERE id = $2"));
    Ok(())
}

fn service_psycopg_split() -> anyhow::Result<()> {
    let (out, v, _) = service_race(
        "/split/buy",
        "DRIVER=psycopg exec hypercorn --bind 127.0.0.1:{port} shop:app",
        &[VERIFY, &["--expect", "oversold"]].concat(),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let kinds = anomalies(&v);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "scope_based"),
        "{kinds:?}"
    );
    let a = &v["service"]["trace"]["anomalies"][0];
    assert!(a["prevented_at"].is_null());
    assert_ne!(a["read"]["txn"], a["write"]["txn"]);
    Ok(())
}

fn service_orm_unsafe() -> anyhow::Result<()> {
    let (out, v, _) = service_race(
        "/unsafe/buy",
        "DRIVER=sqlalchemy exec hypercorn --bind 127.0.0.1:{port} shop:app",
        &[VERIFY, &["--expect", "oversold"]].concat(),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let kinds = anomalies(&v);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "lost_update"),
        "{kinds:?}"
    );
    Ok(())
}

fn service_node_safe() -> anyhow::Result<()> {
    let (out, v, _) = service_race(
        "/safe/buy",
        "PORT={port} exec node shop.js",
        &[VERIFY, &["--expect", "safe", "--trace"]].concat(),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(v["verdict"], "safe");
    assert!(anomalies(&v).is_empty(), "{:?}", anomalies(&v));
    let t = &v["service"]["trace"];
    assert!(t["statements"].as_u64().unwrap() >= 5 * 4, "{t}");
    assert_eq!(t["unattributed"], 0);
    let locked = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["sql"].as_str().is_some_and(|q| q.ends_with("FOR UPDATE")) && s["role"] == "read"
        })
        .count();
    assert_eq!(locked, 5);
    Ok(())
}

fn matches_server_log() -> anyhow::Result<()> {
    let cluster = racelab::db::Cluster::start(&crate::common::cluster_options()?)?;
    let url = crate::common::cluster_url(&cluster);
    run(Command::new(bin("psql")).args([
        url.as_str(),
        "-X",
        "-q",
        "-c",
        // Per database: over the quiet server's command line.
        "ALTER DATABASE postgres SET log_statement = 'all'",
        "-c",
        "ALTER DATABASE postgres SET log_min_messages = 'log'",
    ]))?;
    let dir = tempfile::tempdir()?;
    let record = dir.path().join("r.jsonl");
    let record_arg = record.display().to_string();
    let (out, _, _) = service_race(
        "/unsafe/buy",
        "PORT={port} exec node shop.js",
        &[
            VERIFY,
            &["--database-url", url.as_str(), "--db-record", &record_arg],
        ]
        .concat(),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let records = read_jsonl(&std::fs::read_to_string(&record)?)?;
    let ours: Vec<&Statement> = statements(&records)
        .into_iter()
        .filter(|s| s.application_name.as_deref() != Some("racelab-verify"))
        .collect();
    let log = std::fs::read_to_string(cluster.dir().join("server.log"))
        .or_else(|_| std::fs::read_to_string(cluster.data_dir().join("server.log")))?;
    // The server logs each statement it runs: `statement: SQL` (simple) or
    // `execute NAME: SQL` (extended).
    let logged: Vec<String> = log
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("LOG:  ")?;
            let sql = rest.strip_prefix("statement: ").or_else(|| {
                rest.strip_prefix("execute ")
                    .and_then(|r| r.split_once(": ").map(|x| x.1))
            })?;
            Some(sql.to_string())
        })
        .filter(|s| !s.contains("racelab-verify") && !s.contains("pg_reload_conf"))
        .collect();
    let sent: Vec<String> = ours
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| s.sql.clone())
        .collect();
    for s in &sent {
        assert!(
            logged.contains(s),
            "the proxy recorded {s:?}, the server never ran it"
        );
    }
    let unsafe_writes = |v: &[String]| {
        v.iter()
            .filter(|s| s.starts_with("UPDATE products SET stock = $1"))
            .count()
    };
    assert_eq!(unsafe_writes(&sent), unsafe_writes(&logged));
    assert!(unsafe_writes(&sent) >= 3);
    cluster.shutdown()?;
    Ok(())
}

fn service_never_ready() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = racelab()
        .args([
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "1",
            "--service",
            "echo booting the shop; sleep 60",
            "--service-timeout",
            "1",
            "--quiet",
            "--out",
        ])
        .arg(dir.path())
        .output_bounded()?;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("did not answer") && e.contains("booting the shop"),
        "{e}"
    );
    let out = racelab()
        .args([
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "1",
            "--service",
            "echo no config >&2; exit 4",
            "--quiet",
            "--out",
        ])
        .arg(dir.path())
        .output_bounded()?;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exited") && stderr(&out).contains("no config"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// Processes whose environment holds `marker`.
fn marked(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.windows(marker.len()).any(|w| w == marker.as_bytes()))
                })
                .filter(|pid| racelab::db::proc::alive(*pid))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !ok() {
        anyhow::ensure!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn nothing_left() -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let dir = tempfile::tempdir()?;
        let marker = format!("RACELAB_TEST_MARK={}", rand::random::<u64>());
        let port = 20_000 + rand::random::<u16>() % 30_000;
        // A service with a grandchild of its own, and a long race.
        let service = format!(
            "cd '{}' && export {marker} && sleep 300 & cd '{}' && {marker} PORT={port} exec node shop.js",
            services().display(),
            services().display()
        );
        let mut child = racelab()
            .args([
                "http",
                &format!("http://127.0.0.1:{port}/safe/buy"),
                "--stock",
                "1000000",
                "--buyers",
                "2",
                "--duration",
                "60",
                "--service",
                &service,
                "--out",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let err = Lines::of(child.stderr.take().unwrap(), "racelab http --service");
        // Said once the service answered.
        err.find("the service up", CHILD_LIMIT, |l| {
            l.contains("behind the wire proxy").then_some(())
        })?;
        err.drain();
        wait_until("the service's processes", Duration::from_secs(10), || {
            marked(&marker).len() >= 2
        })?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let st = wait_status(&mut child, CHILD_LIMIT)?
            .ok_or_else(|| anyhow::anyhow!("racelab still running after signal {signal}"))?;
        if signal == libc::SIGINT {
            assert_eq!(st.code(), Some(130));
        }
        wait_until(
            "the service's process group gone",
            Duration::from_secs(15),
            || marked(&marker).is_empty(),
        )?;
    }
    Ok(())
}
