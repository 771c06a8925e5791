//! `racelab http` and `racelab serve` against real servers on loopback:
//! the served shop over the shared PostgreSQL server, and tiny axum servers
//! started here for the misbehaving targets (down, 500s, hanging, echoing
//! bodies). No mocks: every request crosses a real socket.

use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;
use crate::common::Lines;
use crate::common::OutputWithin as _;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "http::naive_service_oversold_via_verify_sql",
            naive_verify_sql,
        ),
        crate::common::test(
            "http::naive_service_oversold_via_stock_url",
            naive_stock_url,
        ),
        crate::common::test(
            "http::for_update_service_sells_exactly_the_stock",
            for_update,
        ),
        crate::common::test("http::target_down_is_a_clear_exit_3", target_down),
        crate::common::test(
            "http::target_answering_500_is_counted_and_fails",
            target_500,
        ),
        crate::common::test("http::hanging_target_is_unknown_not_a_hang", target_hangs),
        crate::common::test("http::body_template_escapes_the_buyer", body_escaping),
        crate::common::test("http::verify_sql_cannot_write", verify_sql_read_only),
        crate::common::test("http::json_follows_the_schema", json_schema),
        crate::common::test("http::serve_stops_its_embedded_cluster", serve_embedded),
        crate::common::test(
            "http::told_sold_out_while_the_stock_endpoint_says_1_is_inconsistent",
            sold_out_with_stock,
        ),
        crate::common::test(
            "http::an_unmapped_400_fails_expect_safe_with_the_fix",
            unmapped_400,
        ),
        crate::common::test(
            "http::a_declared_stock_that_disagrees_with_the_truth_exits_2",
            declared_disagrees,
        ),
        crate::common::test(
            "http::a_json_body_that_renders_invalid_exits_2",
            invalid_json_body,
        ),
    ]
}

/// A `racelab serve` child; SIGTERM and wait on drop.
pub(crate) struct Serve {
    child: Child,
    base: String,
    database: Option<String>,
}

impl Serve {
    /// Serve `strategy` with `stock` on the shared server, lab in `schema`.
    pub(crate) fn start(schema: &str, strategy: &str, stock: u32) -> Serve {
        let stock = stock.to_string();
        Serve::spawn(&[
            "--strategy",
            strategy,
            "--stock",
            &stock,
            "--database-url",
            crate::common::server_url(),
            "--schema",
            schema,
        ])
    }

    pub(crate) fn spawn(args: &[&str]) -> Serve {
        let mut cmd = racelab();
        cmd.arg("serve").args(args).args(["--port", "0", "--quiet"]);
        Serve::spawn_cmd(cmd, args.contains(&"--database-url"))
    }

    /// Start `cmd` (a `racelab serve`) and read where it listens (and,
    /// unless `external`, its database's URL) from its first lines, within
    /// a deadline; the test fails with what it printed if it does not say.
    pub(crate) fn spawn_cmd(mut cmd: Command, external: bool) -> Serve {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("racelab serve starts");
        let lines = Lines::of(child.stdout.take().unwrap(), "racelab serve's stdout");
        let mut base = None;
        let mut database = None;
        let started = lines.find("where it listens", START_LIMIT, |line| {
            if let Some(u) = line.strip_prefix("listening on ") {
                base = Some(u.to_string());
            } else if let Some(u) = line.strip_prefix("database: ") {
                database = Some(u.to_string());
            }
            (base.is_some() && (database.is_some() || external)).then_some(())
        });
        lines.drain();
        if let Err(e) = started {
            let _ = child.kill();
            let out = crate::common::wait_output(child, "racelab serve", START_LIMIT);
            let err = out.map(|o| stderr(&o)).unwrap_or_default();
            panic!("racelab serve did not start: {e:#}\nstderr: {err}");
        }
        Serve {
            child,
            base: base.expect("found"),
            database,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status (within 30 s).
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _w = crate::common::waiting_for("racelab serve to stop after SIGTERM");
        match crate::common::wait_status(&mut self.child, Duration::from_secs(30)).unwrap() {
            Some(st) => st,
            None => {
                let _ = self.child.kill();
                panic!("racelab serve did not stop within 30 s of SIGTERM");
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            if !matches!(
                crate::common::wait_status(&mut self.child, Duration::from_secs(30)),
                Ok(Some(_))
            ) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// How long `racelab serve` (or another test server) may take to say
/// where it listens: it prepares its lab (or starts a cluster) first.
pub(crate) const START_LIMIT: Duration = Duration::from_secs(120);

/// `racelab http <args> --no-save --quiet`.
pub(crate) fn http(args: &[&str]) -> Output {
    racelab()
        .arg("http")
        .args(args)
        .args(["--no-save", "--quiet"])
        .env_remove("DATABASE_URL")
        .output_bounded()
        .expect("racelab http runs")
}

pub(crate) fn http_json(args: &[&str]) -> (Output, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = http(&all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "racelab http {args:?} printed no JSON ({e}); exit {:?}\nstderr: {}",
            out.status.code(),
            stderr(&out)
        )
    });
    (out, v)
}

pub(crate) fn verify_sql(schema: &str) -> String {
    format!(
        "SELECT sum(stock)::int8 AS stock, \
         (SELECT coalesce(sum(qty), 0) FROM {schema}.orders)::int8 AS units_sold \
         FROM {schema}.products"
    )
}

pub(crate) const BODY: &str = r#"{"buyer": {{buyer}}, "attempt": {{attempt}}, "qty": {{qty}}}"#;

/// 100 buyers against `serve`, audited with --verify-sql, reset before
/// each of `repeat` rounds, `--expect safe`, JUnit into `junit`.
fn race_verified(
    serve: &Serve,
    schema: &str,
    repeat: u32,
    junit: &std::path::Path,
) -> (Output, Value) {
    race_verified_with(serve, schema, repeat, junit, &[])
}

/// `race_verified` with more flags (e.g. `--http2`).
pub(crate) fn race_verified_with(
    serve: &Serve,
    schema: &str,
    repeat: u32,
    junit: &std::path::Path,
    extra: &[&str],
) -> (Output, Value) {
    let sql = verify_sql(schema);
    let (purchase, reset) = (serve.url("/purchase"), serve.url("/reset"));
    let repeat = repeat.to_string();
    let mut args = vec![
        purchase.as_str(),
        "--buyers",
        "100",
        "--body",
        BODY,
        "--verify-sql",
        &sql,
        "--database-url",
        crate::common::server_url(),
        "--reset-url",
        &reset,
        "--repeat",
        &repeat,
        "--expect",
        "safe",
        "--junit",
        junit.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    http_json(&args)
}

fn naive_verify_sql() -> Result<(), Failed> {
    let schema = "t_http_naive_sql";
    let serve = Serve::start(schema, "naive", 1);
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("report.xml");
    let (out, v) = race_verified(&serve, schema, 3, &junit);
    let runs = runs(&v, 3);
    let oversold = runs
        .iter()
        .filter(|r| int(r, "audit.oversold_units") > 0)
        .count();
    assert!(oversold >= 1, "the naive service never oversold: {v}");
    // --expect safe fails against the naive service.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("expected safe"), "{}", stderr(&out));
    for r in &runs {
        assert_eq!(text(r, "target.truth"), "verify_sql");
        assert_eq!(text(r, "database.kind"), "external");
        assert_eq!(int(r, "audit.initial_stock"), 1, "every round starts reset");
        assert_eq!(int(r, "outcomes.attempts"), 100);
        assert_eq!(
            int(r, "outcomes.succeeded") + int(r, "outcomes.sold_out"),
            100,
            "{r}"
        );
        // The service said yes exactly as often as it recorded an order.
        assert_eq!(int(r, "audit.units_sold"), int(r, "outcomes.succeeded"));
    }
    // The last round's numbers are the database's.
    let last = runs.last().unwrap();
    let orders: i64 = query_one(&format!("SELECT count(*) FROM {schema}.orders"))
        .unwrap()
        .parse()?;
    assert_eq!(int(last, "audit.units_sold"), orders);
    let xml = std::fs::read_to_string(&junit)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    assert_eq!(
        failures,
        runs.iter().filter(|r| text(r, "verdict") != "safe").count()
    );
    assert!(failures >= 1, "{xml}");
    assert!(serve.stop().success());
    Ok(())
}

fn naive_stock_url() -> Result<(), Failed> {
    let serve = Serve::start("t_http_naive_url", "naive", 1);
    let (purchase, stock, reset) = (
        serve.url("/purchase"),
        serve.url("/stock"),
        serve.url("/reset"),
    );
    let (out, v) = http_json(&[
        &purchase,
        "--buyers",
        "100",
        "--body",
        BODY,
        "--stock-url",
        &stock,
        "--stock-json-path",
        ".stock",
        "--reset-url",
        &reset,
        "--repeat",
        "3",
        "--expect",
        "oversold",
    ]);
    let runs = runs(&v, 3);
    for r in &runs {
        assert_eq!(text(r, "target.truth"), "stock_url");
        assert!(r["database"].is_null());
        assert_eq!(int(r, "audit.initial_stock"), 1);
        assert_eq!(int(r, "audit.final_stock"), 0, "the endpoint's stock after");
        assert_eq!(
            int(r, "audit.oversold_units"),
            (int(r, "outcomes.succeeded") - 1).max(0)
        );
        assert_eq!(
            int(r, "target.by_status.201.count"),
            int(r, "outcomes.succeeded")
        );
    }
    let oversold = runs
        .iter()
        .filter(|r| int(r, "audit.oversold_units") > 0)
        .count();
    // --expect oversold held exactly when every round oversold.
    assert_eq!(
        out.status.code(),
        Some(if oversold == 3 { 0 } else { 1 }),
        "{}",
        stderr(&out)
    );
    assert!(oversold >= 1, "the naive service never oversold: {v}");
    assert!(serve.stop().success());
    Ok(())
}

fn for_update() -> Result<(), Failed> {
    let schema = "t_http_for_update";
    let serve = Serve::start(schema, "for-update", 5);
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("report.xml");
    let (out, v) = race_verified(&serve, schema, 2, &junit);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for r in runs(&v, 2) {
        assert_eq!(text(&r, "verdict"), "safe");
        assert_eq!(int(&r, "outcomes.succeeded"), 5, "{r}");
        assert_eq!(int(&r, "outcomes.sold_out"), 95, "{r}");
        assert_eq!(int(&r, "audit.units_sold"), 5);
        assert_eq!(int(&r, "audit.final_stock"), 0);
        assert_eq!(int(&r, "audit.oversold_units"), 0);
    }
    let xml = std::fs::read_to_string(&junit)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let suites = doc.root_element();
    assert_eq!(suites.attribute("tests"), Some("2"), "{xml}");
    assert_eq!(suites.attribute("failures"), Some("0"), "{xml}");
    assert!(serve.stop().success());
    Ok(())
}

/// A tiny axum server on 127.0.0.1 in its own thread; stops on drop.
struct Tiny {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tiny {
    fn start(app: Router) -> Tiny {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let server = axum::serve(listener, app);
                // Not graceful: a hanging handler must not hold the test.
                tokio::select! {
                    _ = server => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the test server says where it listens within 30 s");
        Tiny {
            url: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Tiny {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn target_down() -> Result<(), Failed> {
    // A port held here that refuses every connection.
    let refusing = crate::common::RefusingPort::new()?;
    let port = refusing.port;
    let url = format!("http://127.0.0.1:{port}/purchase");
    let started = Instant::now();
    let out = http(&[&url, "--buyers", "10", "--stock", "1"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("could not reach the target") && err.contains(&port.to_string()),
        "{err}"
    );
    Ok(())
}

fn target_500() -> Result<(), Failed> {
    let tiny = Tiny::start(Router::new().route(
        "/buy",
        post(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "boom: the database is on fire",
            )
        }),
    ));
    let url = format!("{}/buy", tiny.url);
    let (out, v) = http_json(&[&url, "--buyers", "20", "--attempts", "2", "--stock", "5"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("answered none of 40 requests"),
        "{}",
        stderr(&out)
    );
    assert_eq!(text(&v, "status"), "aborted");
    assert_eq!(int(&v, "outcomes.errors"), 40);
    assert_eq!(int(&v, "target.by_status.500.count"), 40);
    assert_eq!(text(&v, "target.truth"), "client_belief");
    let first = &v["error_messages"][0];
    assert_eq!(
        first["message"], "HTTP 500: boom: the database is on fire",
        "{v}"
    );
    assert_eq!(first["count"], 40);
    Ok(())
}

fn target_hangs() -> Result<(), Failed> {
    let tiny = Tiny::start(Router::new().route(
        "/buy",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(300)).await;
            StatusCode::CREATED
        }),
    ));
    let url = format!("{}/buy", tiny.url);
    let started = Instant::now();
    // `--timeout` is the per-statement limit of `run`: http says which flag it means.
    let wrong = http(&[&url, "--buyers", "5", "--stock", "1", "--timeout", "300"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("--request-timeout MS"),
        "{}",
        stderr(&wrong)
    );
    let (out, v) = http_json(&[
        &url,
        "--buyers",
        "5",
        "--stock",
        "1",
        "--request-timeout",
        "300",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.unknown"), 5);
    assert_eq!(int(&v, "outcomes.succeeded"), 0);
    assert_eq!(int(&v, "target.by_status.none.count"), 5);
    assert!(
        text(&v["error_messages"][0], "message").contains("may or may not have happened"),
        "{v}"
    );
    // Each request waited for its timeout, not for the server.
    assert!(int(&v, "latency_us.attempt.min") >= 300_000, "{v}");
    Ok(())
}

fn body_escaping() -> Result<(), Failed> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let tiny = Tiny::start(Router::new().route(
        "/buy",
        post(move |body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(body);
                StatusCode::CREATED
            }
        }),
    ));
    let url = format!("{}/buy", tiny.url);
    let out = http(&[
        &url,
        "--buyers",
        "3",
        "--stock",
        "10",
        "--buyer-name",
        r#"O"Brien \ {n}"#,
        "--body",
        r#"{"name": "{{buyer}}", "attempt": {{attempt}}, "qty": {{qty}}}"#,
        "--header",
        "X-Test: yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("SAFE: 3 units sold of 10"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("CLIENT-SIDE BELIEF"),
        "{}",
        stdout(&out)
    );
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    let mut names: Vec<String> = bodies
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).unwrap_or_else(|e| panic!("{b}: {e}"));
            assert_eq!(v["qty"], 1);
            v["name"].as_str().unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [r#"O"Brien \ 1"#, r#"O"Brien \ 2"#, r#"O"Brien \ 3"#]
    );
    // A template naming an unknown placeholder is bad input.
    let bad = http(&[&url, "--stock", "1", "--body", "{{buyr}}"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("unknown variable {{buyr}}; did you mean {{buyer}}?"),
        "{}",
        stderr(&bad)
    );
    Ok(())
}

fn verify_sql_read_only() -> Result<(), Failed> {
    query_one("DROP SCHEMA IF EXISTS t_http_ro CASCADE");
    query_one("CREATE SCHEMA t_http_ro");
    query_one("CREATE TABLE t_http_ro.things AS SELECT g AS stock FROM generate_series(1, 3) g");
    let out = http(&[
        "http://127.0.0.1:9/purchase",
        "--verify-sql",
        "DELETE FROM t_http_ro.things RETURNING stock",
        "--database-url",
        crate::common::server_url(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("read-only transaction"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        query_one("SELECT count(*) FROM t_http_ro.things").as_deref(),
        Some("3")
    );
    // No truth at all is bad input too, named with its fixes.
    let none = http(&["http://127.0.0.1:9/purchase"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("--stock-url"), "{}", stderr(&none));
    query_one("DROP SCHEMA t_http_ro CASCADE");
    Ok(())
}

fn json_schema() -> Result<(), Failed> {
    let schema: Value = serde_json::from_str(include_str!("../../docs/result.schema.json"))?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("schema: {e}"))?;
    let serve = Serve::start("t_http_json", "conditional", 3);
    let (purchase, stock) = (serve.url("/purchase"), serve.url("/stock"));
    let (out, v) = http_json(&[&purchase, "--buyers", "10", "--stock-url", &stock]);
    assert!(out.status.success(), "{}", stderr(&out));
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(v.get("strategy").is_none());
    // Both a strategy and a target, or neither, is not a result.
    let mut both = v.clone();
    both["strategy"] =
        serde_json::json!({"name": "x", "source": "builtin", "sha256": "0".repeat(64)});
    assert!(!validator.is_valid(&both));
    let mut neither = v.clone();
    neither.as_object_mut().unwrap().remove("target");
    assert!(!validator.is_valid(&neither));
    assert!(serve.stop().success());
    Ok(())
}

fn serve_embedded() -> Result<(), Failed> {
    // A private state directory: a developer's kept cluster must not be used.
    let state = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_racelab"));
    child.env("RACELAB_STATE_DIR", state.path());
    child
        .args([
            "serve",
            "--strategy",
            "conditional",
            "--stock",
            "2",
            "--port",
            "0",
            "--quiet",
        ])
        .env_remove("DATABASE_URL");
    let serve = Serve::spawn_cmd(child, false);
    let health = http_get(&serve.url("/health"))?;
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let (purchase, stock) = (serve.url("/purchase"), serve.url("/stock"));
    let (out, v) = http_json(&[&purchase, "--buyers", "5", "--stock-url", &stock]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.succeeded"), 2);
    let url = serve.database.clone().unwrap();
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()?;
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(serve.stop().success());
    // The embedded cluster stopped with the server.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the embedded cluster still listens on {port}"
    );
    Ok(())
}

/// A plain GET over a raw socket (no client library between us and it).
pub(crate) fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host)?;
    // A server that never answers fails the read, not the whole suite.
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let _w = crate::common::waiting_for(format!("the answer to GET {url}"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A `shop`: its purchase and stock URLs, served while it lives.
struct Shop {
    buy: String,
    stock: String,
    _server: Tiny,
}

impl Shop {
    /// `racelab http` arguments racing `buyers` buyers at the shop, its
    /// stock endpoint as the truth, then `extra`.
    fn race<'a>(&'a self, buyers: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            self.buy.as_str(),
            "--buyers",
            buyers,
            "--stock-url",
            &self.stock,
        ];
        args.extend_from_slice(extra);
        args
    }
}

/// A shop on loopback with `stock` units and a stock endpoint: `POST /buy`
/// sells one unit (201) under a lock, or answers `sold_out` when none is
/// left; `refuse_all` answers every purchase with that status instead.
fn shop(stock: i64, sold_out: StatusCode, refuse_all: bool) -> Shop {
    use axum::routing::get;
    let left = Arc::new(Mutex::new(stock));
    let (buy, read) = (left.clone(), left);
    let server = Tiny::start(
        Router::new()
            .route(
                "/buy",
                post(move || {
                    let left = buy.clone();
                    async move {
                        // Hold the request a moment, so that buyers overlap.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        let mut n = left.lock().unwrap();
                        if refuse_all || *n <= 0 {
                            return sold_out;
                        }
                        *n -= 1;
                        StatusCode::CREATED
                    }
                }),
            )
            .route(
                "/stock",
                get(move || {
                    let n = *read.lock().unwrap();
                    async move { format!("{{\"stock\": {n}}}") }
                }),
            ),
    );
    Shop {
        buy: format!("{}/buy", server.url),
        stock: format!("{}/stock", server.url),
        _server: server,
    }
}

fn sold_out_with_stock() -> Result<(), Failed> {
    // 422 is in the default --sold-out list: every buyer hears "sold out"
    // while the stock endpoint still says 1.
    let target = shop(1, StatusCode::UNPROCESSABLE_ENTITY, true);
    let (out, v) = http_json(&target.race("20", &["--expect", "safe"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(text(&v, "verdict"), "inconsistent", "{v}");
    assert_eq!(int(&v, "outcomes.sold_out"), 20);
    assert_eq!(int(&v, "audit.sold_out_with_stock_left"), 20);
    assert_eq!(int(&v, "audit.stock_left_after_sold_out"), 1);
    assert!(stderr(&out).contains("1 inconsistent"), "{}", stderr(&out));
    let table = http(&target.race("20", &[]));
    let shown = stdout(&table);
    assert!(
        shown.contains("INCONSISTENT: told sold out, but 1 left"),
        "{shown}"
    );
    assert!(shown.contains("audit (stock endpoint)"), "{shown}");
    Ok(())
}

fn unmapped_400() -> Result<(), Failed> {
    // A safe shop whose sold-out answer is 400: it sells its one unit.
    let target = shop(1, StatusCode::BAD_REQUEST, false);
    let (out, v) = http_json(&target.race("50", &["--expect", "safe"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.succeeded"), 1);
    assert_eq!(int(&v, "outcomes.errors"), 49);
    assert_eq!(int(&v, "target.by_status.400.count"), 49);
    // The books are fine; the run is not clean.
    assert_eq!(text(&v, "verdict"), "safe", "{v}");
    let err = stderr(&out);
    assert!(err.contains("had error or unknown attempts"), "{err}");
    assert!(
        err.contains("49 of 50 attempts were answered HTTP 400")
            && err.contains("--sold-out 400,409,410,422")
            && err.contains("--rejected 400,429"),
        "{err}"
    );
    // Mapped as the hint says, the same kind of service passes.
    let target = shop(1, StatusCode::BAD_REQUEST, false);
    let (out, v) =
        http_json(&target.race("50", &["--sold-out", "400,409,410,422", "--expect", "safe"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.sold_out"), 49, "{v}");
    Ok(())
}

fn declared_disagrees() -> Result<(), Failed> {
    let target = shop(10, StatusCode::CONFLICT, false);
    let out = http(&target.race("5", &["--stock", "1"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--stock 1") && err.contains("reads 10"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing raced: {}", stdout(&out));
    // Nothing was bought before the check.
    let (_, v) = http_json(&target.race("5", &["--stock", "10"]));
    assert_eq!(int(&v, "audit.initial_stock"), 10, "{v}");
    assert_eq!(int(&v, "outcomes.succeeded"), 5);
    Ok(())
}

fn invalid_json_body() -> Result<(), Failed> {
    let out = http(&[
        "http://127.0.0.1:9/buy",
        "--stock",
        "1",
        "--buyer-name",
        "user-{n}",
        "--body",
        r#"{"buyer": {{buyer}}}"#,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(r#"{"buyer": user-1}"#), "{err}");
    assert!(err.contains(r#""{{buyer}}""#), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    Ok(())
}
