//! Faults production has (issue 17), against the shared server: a network
//! that freezes (a TCP proxy that stops forwarding without closing), the
//! terminate nemesis with buyers reconnecting, and lost replies resubmitted
//! under the same attempt id (duplicate orders with `conditional`, none with
//! `idempotent`). Every audit count is checked against the tables by SQL.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use libtest_mimic::Trial;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::cli::{int, json_on, racelab, text};
use crate::common::OutputWithin as _;
use crate::common::{self, block_on, trial};
use crate::faults::{json, only_result_file, orders_in, Running, LONG_RACE};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "nemesis::frozen_network_aborts_within_the_deadline",
            frozen_network,
        ),
        trial(
            "nemesis::frozen_connections_audited_over_a_fresh_one",
            frozen_connections_audited,
        ),
        trial(
            "nemesis::terminate_buyers_reconnect_and_go_on",
            terminate_reconnects,
        ),
        trial(
            "nemesis::drop_reply_resubmitted_duplicates_conditional_not_idempotent",
            drop_reply_duplicates,
        ),
        trial(
            "nemesis::request_timeout_bounds_a_silent_http_peer",
            silent_http_peer,
        ),
        trial("nemesis::bad_specs_are_bad_input", bad_specs),
    ]
}

/// Each forwarded connection's freeze flag and the server's client port for it.
type Forwarded = Arc<Mutex<Vec<(Arc<AtomicBool>, u16)>>>;

/// A TCP proxy to the shared server that forwards until told to freeze,
/// then stops reading and writing without closing anything: no FIN, no
/// RST, as a partitioned network looks to both ends.
struct Proxy {
    port: u16,
    /// Connections accepted after this is set are held, never forwarded.
    freeze_new: Arc<AtomicBool>,
    /// Each forwarded connection's own freeze flag, and the upstream's
    /// local port (the server's `client_port` for it).
    conns: Forwarded,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start() -> anyhow::Result<Proxy> {
        let upstream = url::Url::parse(common::server_url())?;
        let target = format!(
            "{}:{}",
            upstream.host_str().context("server host")?,
            upstream.port().context("server port")?
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let freeze_new = Arc::new(AtomicBool::new(false));
        let conns: Forwarded = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (freeze_new, conns, stop, threads) = (
                freeze_new.clone(),
                conns.clone(),
                stop.clone(),
                threads.clone(),
            );
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let client = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                    if freeze_new.load(Ordering::SeqCst) {
                        // Accepted, then silence.
                        held.push(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    let frozen = Arc::new(AtomicBool::new(false));
                    let local = server.local_addr().map(|a| a.port()).unwrap_or(0);
                    conns.lock().unwrap().push((frozen.clone(), local));
                    let _ = client.set_nonblocking(false);
                    for (from, to) in [
                        (client.try_clone(), server.try_clone()),
                        (server.try_clone(), client.try_clone()),
                    ] {
                        let (Ok(from), Ok(to)) = (from, to) else {
                            continue;
                        };
                        let (frozen, stop) = (frozen.clone(), stop.clone());
                        threads
                            .lock()
                            .unwrap()
                            .push(std::thread::spawn(move || pump(from, to, &frozen, &stop)));
                    }
                }
                drop(held);
            })
        };
        Ok(Proxy {
            port,
            freeze_new,
            conns,
            stop,
            threads,
            acceptor: Some(acceptor),
        })
    }

    /// Freeze every connection forwarded so far (new ones still work).
    fn freeze_existing(&self) {
        for (frozen, _) in self.conns.lock().unwrap().iter() {
            frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Freeze everything: the forwarded connections and any new one.
    fn freeze_all(&self) {
        self.freeze_new.store(true, Ordering::SeqCst);
        self.freeze_existing();
    }

    /// The shared server's URL (its user and password), through the proxy.
    fn url(&self) -> String {
        let mut u = url::Url::parse(common::server_url()).expect("the server's URL");
        u.set_port(Some(self.port)).expect("a port");
        u.to_string()
    }

    /// The server's client ports of the connections forwarded so far.
    fn upstream_ports(&self) -> Vec<i32> {
        let conns = self.conns.lock().unwrap();
        conns.iter().map(|(_, p)| i32::from(*p)).collect()
    }

    /// Stop forwarding for good and close every socket.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Copy `from` to `to` until either closes or `stop`; while `frozen`, read
/// and write nothing (the bytes wait in the kernel's buffers).
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if frozen.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// Run SQL returning one integer on the shared server.
fn scalar(sql: &str) -> anyhow::Result<i64> {
    block_on(async {
        let mut c = PgConnection::connect(common::server_url()).await?;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await?;
        c.close().await?;
        Ok(n)
    })
}

/// The server's backends serving the proxy's connections, as (pid, start
/// time in µs since the epoch): taken while the proxy still holds those
/// connections, so that their client ports are the proxy's and nobody
/// else's. A backend is then followed by its pid and start time, which no
/// later connection can share (a client port can be reused at once).
fn backends_on(ports: &[i32]) -> anyhow::Result<Vec<(i32, i64)>> {
    let ports = ports.to_vec();
    block_on(async move {
        let mut c = PgConnection::connect(common::server_url()).await?;
        let found: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT pid, (extract(epoch FROM backend_start) * 1e6)::int8 \
             FROM pg_stat_activity WHERE client_port = ANY($1)",
        )
        .bind(&ports)
        .fetch_all(&mut c)
        .await?;
        c.close().await?;
        Ok(found)
    })
}

/// Wait until none of `backends` (from `backends_on`) is left.
fn wait_backends_gone(backends: &[(i32, i64)]) -> anyhow::Result<()> {
    let (pids, starts): (Vec<i32>, Vec<i64>) = backends.iter().copied().unzip();
    common::wait_until(
        &format!("the run's backends {pids:?} to end"),
        Duration::from_secs(30),
        || {
            let left: i64 = block_on(async {
                let mut c = PgConnection::connect(common::server_url()).await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity a \
                     JOIN unnest($1::int4[], $2::int8[]) AS b(pid, start) ON a.pid = b.pid \
                     AND (extract(epoch FROM a.backend_start) * 1e6)::int8 = b.start",
                )
                .bind(&pids)
                .bind(&starts)
                .fetch_one(&mut c)
                .await?;
                c.close().await?;
                anyhow::Ok(n)
            })?;
            Ok((left == 0).then_some(()))
        },
    )
}

/// The `--timeout` of the frozen runs and racelab's deadline from it
/// (MS + max(1 s, MS/4)).
const TIMEOUT_MS: u64 = 2_000;
const DEADLINE: Duration = Duration::from_millis(3_000);
/// `--connect-timeout` of the frozen runs, in seconds.
const CONNECT_S: u64 = 2;

/// A long race on a hot row through the proxy; returns the racelab
/// process once the race is under way, and the results directory.
fn race_through(
    proxy: &Proxy,
    schema: &str,
    pool: Option<&str>,
) -> anyhow::Result<(Running, tempfile::TempDir)> {
    let out = tempfile::tempdir()?;
    let mut cmd = racelab();
    cmd.args(LONG_RACE)
        .args([
            "--buyers",
            "4",
            "--timeout",
            &TIMEOUT_MS.to_string(),
            "--connect-timeout",
            &CONNECT_S.to_string(),
            "--schema",
            schema,
            "--database-url",
            &proxy.url(),
            "--out",
        ])
        .arg(out.path());
    if let Some(n) = pool {
        cmd.args(["--connections", n]);
    }
    let mut run = Running::spawn(cmd)?;
    common::wait_until(
        &format!("the first orders in {schema}"),
        Duration::from_secs(60),
        || {
            ensure!(run.0.try_wait()?.is_none(), "racelab exited early");
            Ok((orders_in(common::server_url(), schema).unwrap_or(0) > 0).then_some(()))
        },
    )?;
    Ok((run, out))
}

/// Exit 3 within the deadline plus a few seconds, the result printed
/// and saved as aborted with racelab's deadline as the reason.
fn check_frozen_abort(
    run: &mut Running,
    frozen_at: Instant,
    budget: Duration,
) -> anyhow::Result<Value> {
    let (status, stdout, stderr) = run.finish(Duration::from_secs(60))?;
    let took = frozen_at.elapsed();
    ensure!(
        took < budget,
        "racelab took {took:?} to give up on a frozen network (budget {budget:?})"
    );
    ensure!(status.code() == Some(3), "exit {status}: {stderr}");
    ensure!(!stderr.contains("panicked"), "{stderr}");
    let v = json(&stdout)?;
    ensure!(text(&v, "status") == "aborted", "{v}");
    let reason = text(&v, "status_reason");
    ensure!(
        reason.contains("lost the connection") && reason.contains("no reply within 3000 ms"),
        "{reason}"
    );
    Ok(v)
}

fn frozen_network() -> anyhow::Result<()> {
    for pool in [None, Some("2")] {
        let mut proxy = Proxy::start()?;
        let schema = if pool.is_some() {
            "t_frozen_pool"
        } else {
            "t_frozen"
        };
        let (mut run, out) = race_through(&proxy, schema, pool)?;
        proxy.freeze_all();
        let frozen_at = Instant::now();
        // The deadline, then the audit's fresh connection refused within
        // --connect-timeout, then a few seconds of slack.
        let budget = DEADLINE + Duration::from_secs(CONNECT_S + 4);
        let v = check_frozen_abort(&mut run, frozen_at, budget)
            .with_context(|| format!("--connections {pool:?}"))?;
        // The server cannot be reached: no audit, and the reason says so.
        ensure!(v["audit"].is_null(), "{v}");
        ensure!(
            text(&v, "status_reason").contains("the audit could not run"),
            "{v}"
        );
        ensure!(int(&v, "outcomes.attempts") > 0, "{v}");
        let saved = only_result_file(out.path())?;
        ensure!(saved == v, "the saved result differs from the printed one");
        // Nothing left: racelab is gone, and once the partition heals
        // (the proxy closes its sockets) no backend of the run remains.
        let ports = proxy.upstream_ports();
        ensure!(!ports.is_empty());
        let backends = backends_on(&ports)?;
        proxy.shutdown();
        wait_backends_gone(&backends)?;
    }
    Ok(())
}

/// Only the buyers' connections freeze; a new connection still gets
/// through, so the audit runs and resolves the attempts the freeze left
/// of unknown fate.
fn frozen_connections_audited() -> anyhow::Result<()> {
    let schema = "t_frozen_audited";
    let mut proxy = Proxy::start()?;
    let (mut run, out) = race_through(&proxy, schema, None)?;
    proxy.freeze_existing();
    let frozen_at = Instant::now();
    let v = check_frozen_abort(&mut run, frozen_at, DEADLINE + Duration::from_secs(5))?;
    ensure!(!v["audit"].is_null(), "the audit did not run: {v}");
    let unsure = int(&v, "outcomes.unknown") + int(&v, "outcomes.in_flight");
    ensure!(unsure >= 1, "frozen buyers left nothing unknown: {v}");
    let (c, n) = (
        int(&v, "audit.unknown_committed"),
        int(&v, "audit.unknown_not_committed"),
    );
    ensure!(c + n == unsure, "{c} + {n} != {unsure} unknown: {v}");
    ensure!(int(&v, "audit.orders_without_success") == 0, "{v}");
    // The books balance, but an aborted race is never SAFE.
    ensure!(text(&v, "status") == "aborted", "{v}");
    ensure!(text(&v, "verdict") == "inconclusive", "{v}");
    // The audit against the tables, now that nothing moves: what the
    // frozen buyers' transactions held was rolled back or committed once
    // their backends ended.
    let backends = backends_on(&proxy.upstream_ports())?;
    proxy.shutdown();
    wait_backends_gone(&backends)?;
    let orders = scalar(&format!("SELECT count(*) FROM {schema}.orders"))?;
    ensure!(
        orders == int(&v, "audit.units_sold"),
        "orders {orders} against {v}"
    );
    only_result_file(out.path())?;
    Ok(())
}

/// A real result with a nemesis follows docs/result.schema.json.
fn follows_the_schema(v: &Value) -> anyhow::Result<()> {
    let schema: Value = serde_json::from_str(include_str!("../../docs/result.schema.json"))?;
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    ensure!(errors.is_empty(), "{errors:?}");
    Ok(())
}

/// The audit's counts against the tables of `schema`, by direct SQL.
fn check_against_tables(v: &Value, schema: &str) -> anyhow::Result<()> {
    let sold = scalar(&format!(
        "SELECT COALESCE(sum(qty), 0)::int8 FROM {schema}.orders"
    ))?;
    let left = scalar(&format!("SELECT sum(stock)::int8 FROM {schema}.products"))?;
    let dups = scalar(&format!(
        "SELECT COALESCE(sum(n - 1), 0)::int8 FROM \
         (SELECT attempt_id, count(*) AS n FROM {schema}.orders GROUP BY 1 HAVING count(*) > 1) d"
    ))?;
    ensure!(sold == int(v, "audit.units_sold"), "sold {sold}: {v}");
    ensure!(left == int(v, "audit.final_stock"), "left {left}: {v}");
    ensure!(
        dups == int(v, "audit.duplicate_orders"),
        "duplicates {dups} in the table, {} in the audit",
        int(v, "audit.duplicate_orders")
    );
    Ok(())
}

fn terminate_reconnects() -> anyhow::Result<()> {
    for (schema, pool) in [("t_terminate", None), ("t_terminate_pool", Some("3"))] {
        let mut args = vec![
            "run",
            "--strategy",
            "conditional",
            "--scenario",
            "hot-row",
            "--buyers",
            "8",
            "--duration",
            "3",
            "--think-ms",
            "1",
            "--seed",
            "17",
            "--nemesis",
            "terminate:5",
        ];
        if let Some(n) = pool {
            args.extend(["--connections", n]);
        }
        let (out, v) = json_on(schema, &args);
        let err = crate::cli::stderr(&out);
        ensure!(out.status.success(), "{schema}: {err}\n{v}");
        ensure!(text(&v, "status") == "completed", "{schema}: {v}");
        let n = &v["nemesis"];
        let terminated = n["terminated"].as_i64().unwrap_or(-1);
        let reconnects = n["reconnects"].as_i64().unwrap_or(-1);
        // 5 a second for 3 s: about 15; far fewer means it did not run.
        ensure!(
            terminated >= 4,
            "{schema}: only {terminated} terminated: {n}"
        );
        ensure!(
            reconnects >= 1 && reconnects <= terminated,
            "{schema}: {reconnects} reconnects for {terminated} terminations"
        );
        ensure!(n["faults"][0]["kind"] == "terminate", "{n}");
        follows_the_schema(&v)?;
        // Each reconnect followed one lost attempt, error or unknown.
        let lost = int(&v, "outcomes.errors") + int(&v, "outcomes.unknown");
        ensure!(
            lost == reconnects,
            "{schema}: {lost} lost attempts, {reconnects} reconnects: {v}"
        );
        // And the buyers went on: many attempts after the first loss.
        ensure!(int(&v, "outcomes.succeeded") > 100, "{schema}: {v}");
        let unsure = int(&v, "outcomes.unknown");
        ensure!(
            int(&v, "audit.unknown_committed") + int(&v, "audit.unknown_not_committed") == unsure,
            "{v}"
        );
        ensure!(int(&v, "audit.orders_without_success") == 0, "{v}");
        ensure!(int(&v, "audit.successes_without_order") == 0, "{v}");
        ensure!(int(&v, "audit.duplicate_orders") == 0, "{v}");
        ensure!(text(&v, "verdict") == "safe", "{schema}: {v}");
        check_against_tables(&v, schema)?;
    }
    Ok(())
}

fn drop_reply_duplicates() -> anyhow::Result<()> {
    let race = |schema: &str, strategy: &str| {
        json_on(
            schema,
            &[
                "run",
                "--strategy",
                strategy,
                "--buyers",
                "20",
                "--attempts",
                "20",
                "--stock",
                "200",
                "--seed",
                "7",
                "--nemesis",
                "drop-reply:0.3",
                "--retry-unknown",
            ],
        )
    };
    let (out, v) = race("t_drop_conditional", "conditional");
    ensure!(out.status.success(), "{}", crate::cli::stderr(&out));
    let n = &v["nemesis"];
    let dropped = n["dropped_replies"].as_i64().unwrap_or(0);
    ensure!(dropped >= 20, "only {dropped} replies dropped: {n}");
    ensure!(n["resubmitted"].as_i64().unwrap_or(0) >= 1, "{n}");
    ensure!(n["retry_unknown"] == 3, "{n}");
    let dups = int(&v, "audit.duplicate_orders");
    ensure!(
        dups > 0,
        "no duplicate orders from resubmitted COMMITs: {v}"
    );
    ensure!(text(&v, "verdict") == "inconsistent", "{v}");
    check_against_tables(&v, "t_drop_conditional")?;
    follows_the_schema(&v)?;

    let (out, v) = race("t_drop_idempotent", "idempotent");
    ensure!(out.status.success(), "{}", crate::cli::stderr(&out));
    ensure!(
        v["nemesis"]["dropped_replies"].as_i64().unwrap_or(0) >= 20,
        "{}",
        v["nemesis"]
    );
    ensure!(int(&v, "audit.duplicate_orders") == 0, "{v}");
    ensure!(int(&v, "audit.units_sold") == 200, "{v}");
    ensure!(int(&v, "audit.final_stock") == 0, "{v}");
    ensure!(int(&v, "audit.stock_drift") == 0, "{v}");
    ensure!(text(&v, "verdict") == "safe", "{v}");
    check_against_tables(&v, "t_drop_idempotent")?;
    Ok(())
}

fn bad_specs() -> anyhow::Result<()> {
    for (args, want) in [
        (vec!["--nemesis", "foo:1"], "unknown kind `foo`"),
        (vec!["--nemesis", "terminate:-1"], "more than 0"),
        (vec!["--nemesis", "drop-reply:2"], "at most 1"),
        (vec!["--retry-unknown", "0"], "--retry-unknown"),
    ] {
        let started = Instant::now();
        let out = racelab()
            .args(["run", "--no-save"])
            .args(&args)
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output_bounded()?;
        let err = crate::cli::stderr(&out);
        ensure!(
            out.status.code() == Some(2),
            "{args:?}: exit {:?}: {err}",
            out.status
        );
        ensure!(err.lines().count() == 1, "{args:?}: {err}");
        ensure!(err.contains(want), "{args:?}: {err}");
        ensure!(started.elapsed() < Duration::from_secs(5), "{args:?}: slow");
    }
    Ok(())
}

/// `racelab http` against a peer that accepts connections and never
/// answers (HTTP/1.1 with and without last-byte sync, HTTP/2): every
/// request ends `unknown` at --request-timeout and the run ends, aborted.
fn silent_http_peer() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://127.0.0.1:{}/buy", listener.local_addr()?.port());
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let result = (|| {
        for extra in [&[][..], &["--sync", "none"], &["--http2"]] {
            let started = Instant::now();
            let out = racelab()
                .args([
                    "http",
                    &url,
                    "--buyers",
                    "3",
                    "--attempts",
                    "2",
                    "--stock",
                    "10",
                ])
                .args(["--request-timeout", "500", "--no-save"])
                .args(extra)
                .output_bounded()?;
            let took = started.elapsed();
            let err = crate::cli::stderr(&out);
            ensure!(
                out.status.code() == Some(3),
                "{extra:?}: exit {:?}: {err}",
                out.status
            );
            ensure!(took < Duration::from_secs(10), "{extra:?}: took {took:?}");
            ensure!(
                err.contains("within 500 ms"),
                "{extra:?}: not bounded by --request-timeout: {err}"
            );
        }
        Ok(())
    })();
    stop.store(true, Ordering::SeqCst);
    let _ = holder.join();
    result
}
