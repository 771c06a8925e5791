//! Faults (issue 7), each against a real server: the server killed or its
//! connections terminated mid-run, an unreachable server, too many buyers
//! for the server, a statement that never returns, SIGINT/SIGTERM/SIGKILL of
//! racelab, nothing outside the lab touched, and no password ever shown.
//!
//! Embedded runs get a private TMPDIR (their cluster directories live there)
//! and a private state directory (no kept cluster), so another test's
//! clean-up of stale clusters can never interfere with what these observe.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use libtest_mimic::Trial;
use racelab::db::cluster::{cleanup_stale, OwnerMarker};
use racelab::db::{proc, Cluster, Database, ProductSeed};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::cli::{int, query_one, racelab, text};
use crate::common::OutputWithin as _;
use crate::common::{self, block_on, trial};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "faults::embedded_server_killed_mid_run",
            embedded_server_killed,
        ),
        trial(
            "faults::external_connections_terminated_mid_run",
            external_connections_terminated,
        ),
        trial(
            "faults::audit_resolves_unknown_attempts",
            audit_resolves_unknown,
        ),
        trial("faults::unreachable_server", unreachable_server),
        trial(
            "faults::too_many_connections_refused_before_the_race",
            too_many_connections,
        ),
        trial(
            "faults::statement_that_never_returns",
            statement_never_returns,
        ),
        trial("faults::sigint_stops_cleanly", || {
            signal_stops_cleanly(libc::SIGINT)
        }),
        trial("faults::sigterm_stops_cleanly", || {
            signal_stops_cleanly(libc::SIGTERM)
        }),
        trial(
            "faults::sigkill_leftovers_cleaned_by_next_run",
            sigkill_leftovers,
        ),
        trial("faults::nothing_outside_the_lab_changes", nothing_lost),
        trial("faults::password_never_shown", password_never_shown),
    ]
}

/// A private TMPDIR and state directory for embedded runs.
struct Sandbox {
    tmp: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> anyhow::Result<Sandbox> {
        let tmp = tempfile::tempdir()?;
        // The server runs as an unprivileged user: it must traverse this.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
        Ok(Sandbox {
            tmp,
            state: tempfile::tempdir()?,
        })
    }

    /// racelab with an embedded cluster in the sandbox.
    fn racelab(&self) -> Command {
        let mut c = racelab();
        c.env("TMPDIR", self.tmp.path())
            .env("RACELAB_TMPDIR", self.tmp.path())
            .env("RACELAB_STATE_DIR", self.state.path())
            .env_remove("DATABASE_URL");
        c
    }

    fn temp_root(&self) -> PathBuf {
        self.tmp.path().join(format!("racelab-{}", proc::euid()))
    }

    /// The cluster directory of racelab `pid` and its postmaster, once started.
    fn cluster_of(&self, pid: u32) -> Option<(PathBuf, u32)> {
        let prefix = format!("cluster-{pid}-");
        std::fs::read_dir(self.temp_root())
            .ok()?
            .flatten()
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with(&prefix) {
                    return None;
                }
                let pm = OwnerMarker::read(&e.path())?.postmaster_pid?;
                Some((e.path(), pm))
            })
    }

    /// Wait until racelab `pid`'s race is under way (orders in its lab).
    fn wait_for_race(&self, child: &mut Child) -> anyhow::Result<(PathBuf, u32)> {
        let what = format!("the first orders of racelab {}'s embedded race", child.id());
        common::wait_until(&what, Duration::from_secs(60), || {
            if let Some(status) = child.try_wait()? {
                bail!("racelab exited early: {status}");
            }
            let Some((dir, pm)) = self.cluster_of(child.id()) else {
                return Ok(None);
            };
            let Some(port) = port_of(&dir) else {
                return Ok(None);
            };
            // The run's own cluster: its private socket, no TCP.
            let url = format!(
                "postgresql:///postgres?user=postgres&host={}&port={port}",
                dir.join("sock").display()
            );
            Ok((orders_in(&url, "racelab").unwrap_or(0) > 0).then_some((dir, pm)))
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Only after a failed test is anything left: stop it (its racelab
        // is dead by now, so the clusters count as stale).
        cleanup_stale(&self.temp_root());
    }
}

/// A running racelab that is killed if the test ends before it does; its
/// stdout and stderr read as it runs.
pub(crate) struct Running(pub(crate) Child, pub(crate) [common::Drained; 2]);

impl Running {
    pub(crate) fn spawn(mut cmd: Command) -> anyhow::Result<Running> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning racelab")?;
        let pipes = [
            common::Drained::of(child.stdout.take()),
            common::Drained::of(child.stderr.take()),
        ];
        Ok(Running(child, pipes))
    }

    /// Wait for the exit (at most `limit`); returns status, stdout, stderr.
    pub(crate) fn finish(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<(ExitStatus, String, String)> {
        let status = {
            let _w = common::waiting_for("racelab to exit");
            common::wait_status(&mut self.0, limit)?
        };
        let Some(status) = status else {
            bail!("racelab did not exit within {limit:?}");
        };
        let text = |d: &common::Drained| -> anyhow::Result<String> {
            Ok(String::from_utf8_lossy(&d.take(common::PIPE_GRACE)?).into_owned())
        };
        Ok((status, text(&self.1[0])?, text(&self.1[1])?))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The port of a cluster from its `postmaster.pid` (line 4).
fn port_of(cluster_dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(cluster_dir.join("data/postmaster.pid")).ok()?;
    text.lines().nth(3)?.trim().parse().ok()
}

/// Orders in a lab, or an error while it does not exist yet.
pub(crate) fn orders_in(url: &str, schema: &str) -> anyhow::Result<i64> {
    block_on(async {
        let mut c = PgConnection::connect(url).await?;
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.orders"))
            .fetch_one(&mut c)
            .await?;
        let _ = c.close().await;
        Ok(n)
    })
}

pub(crate) fn json(stdout: &str) -> anyhow::Result<Value> {
    serde_json::from_str(stdout).with_context(|| format!("stdout is not JSON: {stdout}"))
}

/// Unknown attempts and those dropped in flight are resolved by the audit:
/// the database's orders are exactly the successes plus the unknowns that
/// committed (quantity 1), and nothing is left unexplained.
fn check_unknowns_resolved(v: &Value) -> anyhow::Result<()> {
    let unsure = int(v, "outcomes.unknown") + int(v, "outcomes.in_flight");
    let (c, n) = (
        int(v, "audit.unknown_committed"),
        int(v, "audit.unknown_not_committed"),
    );
    ensure!(c + n == unsure, "{c} + {n} != {unsure} unknown: {v}");
    ensure!(int(v, "audit.orders_without_success") == 0, "{v}");
    ensure!(int(v, "audit.successes_without_order") == 0, "{v}");
    ensure!(
        int(v, "audit.units_sold") == int(v, "believed_units_sold") + c,
        "orders are not successes + committed unknowns: {v}"
    );
    // The books balance; an aborted race raced less than it was asked
    // to, so it is never SAFE.
    let want = if text(v, "status") == "aborted" {
        "inconclusive"
    } else {
        "safe"
    };
    ensure!(text(v, "verdict") == want, "{v}");
    Ok(())
}

/// A race on a hot row that lasts far longer than any test waits, JSON on stdout.
pub(crate) const LONG_RACE: [&str; 8] = [
    "run",
    "--strategy",
    "conditional",
    "--scenario",
    "hot-row",
    "--duration",
    "30",
    "--json",
];

/// A long embedded race with 4 buyers, results in `out`.
fn long_embedded_run(sb: &Sandbox, out: &Path) -> Command {
    let mut cmd = sb.racelab();
    cmd.args(LONG_RACE)
        .args(["--buyers", "4", "--out"])
        .arg(out);
    cmd
}

/// An aborted run: exit 3, no panic, the partial result printed with the reason.
fn check_aborted(status: ExitStatus, stdout: &str, stderr: &str) -> anyhow::Result<Value> {
    ensure!(status.code() == Some(3), "exit {status}: {stderr}");
    ensure!(!stderr.contains("panicked"), "{stderr}");
    ensure!(stderr.contains("aborted"), "{stderr}");
    let v = json(stdout)?;
    ensure!(text(&v, "status") == "aborted", "{v}");
    ensure!(
        text(&v, "status_reason").contains("lost the connection"),
        "{v}"
    );
    Ok(v)
}

/// The only file in `dir`, parsed (no temp files beside it).
pub(crate) fn only_result_file(dir: &Path) -> anyhow::Result<Value> {
    let names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ensure!(
        names.len() == 1 && names[0].ends_with(".json"),
        "want one result file, found {names:?}"
    );
    json(&std::fs::read_to_string(dir.join(&names[0]))?)
}

fn embedded_server_killed() -> anyhow::Result<()> {
    // Buyers on their own connections, then sharing a pool.
    for pool in [None, Some("3")] {
        server_killed(pool).with_context(|| format!("--connections {pool:?}"))?;
    }
    Ok(())
}

fn server_killed(pool: Option<&str>) -> anyhow::Result<()> {
    let sb = Sandbox::new()?;
    let out = tempfile::tempdir()?;
    let mut cmd = long_embedded_run(&sb, out.path());
    if let Some(n) = pool {
        cmd.args(["--connections", n]);
    }
    let mut run = Running::spawn(cmd)?;
    let (dir, pm) = sb.wait_for_race(&mut run.0)?;
    // The System V segment the postmaster keeps as an interlock (line 7 of
    // postmaster.pid: key and id), which a killed one cannot remove.
    let pidfile = std::fs::read_to_string(dir.join("data/postmaster.pid"))?;
    let interlock: Vec<i64> = pidfile
        .lines()
        .nth(6)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    ensure!(
        interlock.len() == 2,
        "no interlock in postmaster.pid: {pidfile:?}"
    );
    proc::signal(pm, libc::SIGKILL)?;
    // Seconds, not the 30 s of the run.
    let (status, stdout, stderr) = run.finish(Duration::from_secs(20))?;
    let v = check_aborted(status, &stdout, &stderr)?;
    ensure!(
        v["audit"].is_null(),
        "the dead server cannot be audited: {v}"
    );
    ensure!(int(&v, "outcomes.attempts") > 0);
    let saved = only_result_file(out.path())?;
    ensure!(text(&saved, "status") == "aborted");
    ensure!(!dir.exists(), "cluster directory left: {}", dir.display());
    ensure!(proc::wait_gone(pm, Duration::from_secs(5)));
    // SAFETY: IPC_STAT writes one shmid_ds through a valid pointer.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::shmctl(interlock[1] as libc::c_int, libc::IPC_STAT, &mut ds) } == 0;
    ensure!(
        !found || i64::from(ds.shm_perm.__key) != interlock[0] as libc::key_t as i64,
        "the dead server's System V segment {interlock:?} was left behind"
    );
    Ok(())
}

fn external_connections_terminated() -> anyhow::Result<()> {
    let server = Cluster::start(&common::cluster_options()?)?;
    let url = common::cluster_url(&server);
    let result = (|| {
        let mut cmd = racelab();
        cmd.args(LONG_RACE).args([
            "--buyers",
            "8",
            "--no-save",
            "--schema",
            "t_terminated",
            "--database-url",
            &url,
        ]);
        let mut run = Running::spawn(cmd)?;
        common::wait_until(
            "the first orders in t_terminated",
            Duration::from_secs(60),
            || {
                ensure!(run.0.try_wait()?.is_none(), "racelab exited early");
                Ok((orders_in(&url, "t_terminated").unwrap_or(0) > 0).then_some(()))
            },
        )?;
        let killed: i64 = block_on(async {
            let mut c = PgConnection::connect(&url).await?;
            let n = sqlx::query_scalar(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = 'racelab' AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut c)
            .await?;
            let _ = c.close().await;
            anyhow::Ok(n)
        })?;
        // Usually all 8; fewer when racelab, stopping after the first
        // terminations, closed the rest itself first.
        ensure!(killed >= 1, "no racelab connection to terminate");
        let (status, stdout, stderr) = run.finish(Duration::from_secs(20))?;
        let v = check_aborted(status, &stdout, &stderr)?;
        // The server is alive: the partial race is audited.
        ensure!(!v["audit"].is_null(), "{v}");
        check_unknowns_resolved(&v)?;
        // Backends leave pg_stat_activity a moment after their client (the
        // server is this test's own: every racelab backend is this run's).
        common::wait_until(
            "racelab's backends to leave pg_stat_activity",
            Duration::from_secs(30),
            || {
                let left: i64 = block_on(async {
                    let mut c = PgConnection::connect(&url).await?;
                    let n = sqlx::query_scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'racelab'",
                    )
                    .fetch_one(&mut c)
                    .await?;
                    let _ = c.close().await;
                    anyhow::Ok(n)
                })?;
                Ok((left == 0).then_some(()))
            },
        )
    })();
    server.shutdown()?;
    result
}

/// The audit on real rows: unknown attempts that left an order committed,
/// the others did not, and neither counts as a disagreement.
fn audit_resolves_unknown() -> anyhow::Result<()> {
    block_on(async {
        let db = Database::open(&common::external_options("t_audit_unknown")).await?;
        db.prepare_lab(&[ProductSeed {
            id: 1,
            name: "p".into(),
            stock: 10,
        }])
        .await?;
        let mut conn = db.connect().await?;
        sqlx::raw_sql(
            "INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
               SELECT 1, g, g, 1 FROM generate_series(1, 5) g;
             UPDATE products SET stock = 5;",
        )
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        // Believed: 1, 2, 3 (and 8, which left no order). Unknown: 4
        // (committed), 6 and 7 (did not). Attempt 5 nobody claimed.
        let a = db.audit_with_unknown(&[1, 2, 3, 8], &[4, 6, 7]).await?;
        ensure!(a.unknown_committed == 1, "{a:?}");
        ensure!(a.unknown_not_committed == 2, "{a:?}");
        ensure!(a.orders_without_success == 1, "{a:?}");
        ensure!(a.successes_without_order == 1, "{a:?}");
        // Without the unknowns, attempt 4's order is unexplained too.
        let b = db.audit(&[1, 2, 3, 8]).await?;
        ensure!(
            b.orders_without_success == 2 && b.unknown_committed == 0,
            "{b:?}"
        );
        Ok(())
    })
}

fn unreachable_server() -> anyhow::Result<()> {
    // A port held here that refuses every connection.
    let refusing = common::RefusingPort::new()?;
    let free = refusing.port;
    // A listener that never answers: the connection hangs until the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let silent_port = silent.local_addr()?.port();
    let cases = [
        (
            format!("postgres://bob:hunter2@127.0.0.1:{free}/db"),
            "bob:***@127.0.0.1",
        ),
        (
            "postgres://x@no-such-host.invalid/db".to_string(),
            "no-such-host.invalid",
        ),
        (
            format!("postgres://bob:hunter2@127.0.0.1:{silent_port}/db"),
            "within 2s",
        ),
    ];
    for (url, want) in cases {
        let started = Instant::now();
        let out = racelab()
            .args([
                "run",
                "--no-save",
                "--connect-timeout",
                "2",
                "--database-url",
                &url,
            ])
            .output_bounded()?;
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            out.status.code() == Some(3),
            "{url}: exit {:?}: {err}",
            out.status
        );
        ensure!(took < Duration::from_secs(15), "{url}: took {took:?}");
        ensure!(err.lines().count() == 1, "{url}: not one line: {err}");
        ensure!(err.contains(want), "{url}: `{want}` missing: {err}");
        ensure!(!err.contains("hunter2"), "{url}: password shown: {err}");
        ensure!(err.contains("--database-url"), "{url}: no hint: {err}");
    }
    drop(silent);
    drop(refusing);
    Ok(())
}

fn too_many_connections() -> anyhow::Result<()> {
    let mut opts = common::cluster_options()?;
    opts.max_connections = 50;
    let server = Cluster::start(&opts)?;
    let url = common::cluster_url(&server);
    let result = (|| {
        let race = |extra: &[&str]| {
            racelab()
                .args([
                    "run",
                    "--strategy",
                    "conditional",
                    "--buyers",
                    "300",
                    "--json",
                ])
                .args(["--no-save", "--schema", "t_room", "--database-url", &url])
                .args(extra)
                .output_bounded()
        };
        let out = race(&[])?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // Bad input (the flags ask for more than the server allows).
        ensure!(out.status.code() == Some(2), "exit {:?}: {err}", out.status);
        ensure!(out.stdout.is_empty(), "a result was printed");
        ensure!(err.lines().count() == 1, "{err}");
        ensure!(err.contains("max_connections 50"), "{err}");
        let n: u32 = err
            .split("--connections ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no --connections N suggested: {err}"))?;
        ensure!((1..=50).contains(&n), "suggested {n}");
        // Refused before the lab was touched: never a half-started race.
        let lab: i64 = block_on(async {
            let mut c = PgConnection::connect(&url).await?;
            let n =
                sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 't_room'")
                    .fetch_one(&mut c)
                    .await?;
            let _ = c.close().await;
            anyhow::Ok(n)
        })?;
        ensure!(lab == 0, "the lab was created");
        // The suggestion works.
        let out = race(&["--connections", &n.to_string()])?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&String::from_utf8_lossy(&out.stdout))?;
        ensure!(int(&v, "outcomes.attempts") == 300, "{v}");
        ensure!(text(&v, "verdict") == "safe", "{v}");
        Ok(())
    })();
    server.shutdown()?;
    result
}

fn statement_never_returns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sleepy = crate::cli::script(dir.path(), "sleepy.sql", "SELECT pg_sleep(60);\n");
    let blocked = crate::cli::script(
        dir.path(),
        "blocked.sql",
        "SELECT pg_advisory_xact_lock(7340031);\n",
    );
    // The lock is held on another connection for as long as racelab runs
    // (the connection belongs to the runtime that opened it): an advisory
    // lock, since a script may touch nothing outside its lab.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut holder = rt.block_on(async {
        let mut c = PgConnection::connect(common::server_url()).await?;
        sqlx::raw_sql("SELECT pg_advisory_lock(7340031)")
            .execute(&mut c)
            .await?;
        anyhow::Ok(c)
    })?;
    let result = (|| {
        for (path, why) in [(&sleepy, "statement timeout"), (&blocked, "timeout")] {
            let started = Instant::now();
            let (out, v) = crate::cli::json_on(
                "t_never_returns",
                &[
                    "run",
                    "--strategy",
                    path,
                    "--buyers",
                    "3",
                    "--timeout",
                    "300",
                ],
            );
            ensure!(out.status.success(), "{}", crate::cli::stderr(&out));
            ensure!(started.elapsed() < Duration::from_secs(30));
            ensure!(text(&v, "status") == "completed", "{v}");
            ensure!(int(&v, "outcomes.errors") == 3, "{path}: {v}");
            let msg = v["error_messages"][0]["message"].as_str().unwrap_or("");
            ensure!(msg.contains(why), "{path}: {msg}");
        }
        Ok(())
    })();
    rt.block_on(async {
        sqlx::raw_sql("SELECT pg_advisory_unlock(7340031)")
            .execute(&mut holder)
            .await?;
        holder.close().await?;
        anyhow::Ok(())
    })?;
    result
}

fn signal_stops_cleanly(sig: libc::c_int) -> anyhow::Result<()> {
    let sb = Sandbox::new()?;
    let out = tempfile::tempdir()?;
    let mut run = Running::spawn(long_embedded_run(&sb, out.path()))?;
    let (dir, pm) = sb.wait_for_race(&mut run.0)?;
    proc::signal(run.0.id(), sig)?;
    let (status, stdout, stderr) = run.finish(Duration::from_secs(20))?;
    let want = if sig == libc::SIGINT { 130 } else { 143 };
    ensure!(status.code() == Some(want), "exit {status}: {stderr}");
    let v = json(&stdout)?;
    ensure!(text(&v, "status") == "interrupted", "{v}");
    let reason = if sig == libc::SIGINT {
        "Ctrl-C"
    } else {
        "SIGTERM"
    };
    ensure!(text(&v, "status_reason").contains(reason), "{v}");
    // The server outlived the buyers long enough to audit the partial race.
    ensure!(!v["audit"].is_null(), "{v}");
    check_unknowns_resolved(&v)?;
    let saved = only_result_file(out.path())?;
    ensure!(saved == v, "the saved result differs from the printed one");
    ensure!(
        proc::wait_gone(pm, Duration::from_secs(5)),
        "server still running"
    );
    ensure!(!dir.exists(), "cluster directory left: {}", dir.display());
    Ok(())
}

fn sigkill_leftovers() -> anyhow::Result<()> {
    let sb = Sandbox::new()?;
    let out = tempfile::tempdir()?;
    let mut run = Running::spawn(long_embedded_run(&sb, out.path()))?;
    let (dir, pm) = sb.wait_for_race(&mut run.0)?;
    run.0.kill()?;
    run.0.wait()?;
    // No destructor ran; the death signal still stops the server.
    ensure!(
        proc::wait_gone(pm, Duration::from_secs(30)),
        "server survived racelab"
    );
    ensure!(dir.exists(), "nothing left to clean up?");
    // The next run removes what the killed one left.
    let next = sb
        .racelab()
        .args([
            "run",
            "--strategy",
            "conditional",
            "--buyers",
            "2",
            "--no-save",
            "--quiet",
        ])
        .output_bounded()?;
    ensure!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    ensure!(!dir.exists(), "left over: {}", dir.display());
    let left: Vec<_> = std::fs::read_dir(sb.temp_root())?.flatten().collect();
    ensure!(left.is_empty(), "left in the temp area: {left:?}");
    Ok(())
}

/// Everything outside the lab, as one checksum: the tables' rows and the
/// catalog entries (relations, columns, constraints) of the seeded objects.
const CHECKSUM: &str = "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
    SELECT 'pub:' || t::text FROM public.t_keep_public t
    UNION ALL SELECT 'oth:' || t::text FROM t_keep_other.items t
    UNION ALL SELECT 'lab:' || t::text FROM t_keep_other.products t
    UNION ALL SELECT 'rel:' || n.nspname || '.' || c.relname || ':' || c.relkind::text
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 't_keep_other' OR (n.nspname = 'public' AND c.relname LIKE 't_keep%')
    UNION ALL SELECT 'col:' || attrelid::regclass::text || '.' || attname || ':' || atttypid::regtype::text
      FROM pg_attribute
      WHERE attnum > 0 AND NOT attisdropped
        AND attrelid IN ('public.t_keep_public'::regclass, 't_keep_other.items'::regclass,
                         't_keep_other.products'::regclass)
    UNION ALL SELECT 'con:' || conname || ':' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 't_keep_other'::regnamespace
         OR conrelid = 'public.t_keep_public'::regclass
) s(x)";

fn nothing_lost() -> anyhow::Result<()> {
    exec(
        "DROP TABLE IF EXISTS public.t_keep_public;
             DROP SCHEMA IF EXISTS t_keep_other CASCADE;
             CREATE TABLE public.t_keep_public (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO public.t_keep_public SELECT g, 'row ' || g FROM generate_series(1, 100) g;
             CREATE SCHEMA t_keep_other;
             CREATE TABLE t_keep_other.items (id serial PRIMARY KEY, qty int CHECK (qty > 0));
             INSERT INTO t_keep_other.items (qty) SELECT g FROM generate_series(1, 50) g;
             -- Tables named like the lab's, in a schema racelab did not create.
             CREATE TABLE t_keep_other.products (id int PRIMARY KEY, stock int);
             INSERT INTO t_keep_other.products VALUES (1, 7);",
    )?;
    let before = query_one(CHECKSUM).context("no checksum")?;
    let out = crate::cli::racelab_on("t_keep_lab", &["compare", "--buyers", "20"]);
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A schema racelab did not create is refused, not reset: exit 3 with
    // the reason and the fix, not any failure at all.
    let refused = crate::cli::racelab_on("t_keep_other", &["run", "--buyers", "5"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        refused.status.code() == Some(3),
        "a foreign schema: exit {:?}: {err}",
        refused.status
    );
    ensure!(
        err.contains("did not create") && err.contains("--schema") && !err.contains("panicked"),
        "{err}"
    );
    ensure!(
        refused.stdout.is_empty(),
        "a race was reported for a foreign schema"
    );
    let after = query_one(CHECKSUM).context("no checksum")?;
    ensure!(before == after, "data outside the lab changed");
    // Sanity: the checksum sees a change.
    exec("UPDATE t_keep_other.items SET qty = qty + 1 WHERE id = 1")?;
    let changed = query_one(CHECKSUM).context("no checksum")?;
    ensure!(changed != after, "the checksum is blind");
    exec("DROP SCHEMA t_keep_other CASCADE; DROP TABLE public.t_keep_public;")
}

/// Run SQL (several statements allowed) on the shared server.
fn exec(sql: &str) -> anyhow::Result<()> {
    block_on(async {
        let mut c = PgConnection::connect(common::server_url()).await?;
        sqlx::raw_sql(sql).execute(&mut c).await?;
        c.close().await?;
        Ok(())
    })
}

fn password_never_shown() -> anyhow::Result<()> {
    const SECRET: &str = "Sup3r-s3cret-pw";
    // A user of the shared server whose password is SECRET.
    block_on(async {
        let mut c = PgConnection::connect(common::server_url()).await?;
        sqlx::raw_sql(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 't_secret_user') THEN \
                 CREATE ROLE t_secret_user LOGIN SUPERUSER; \
               END IF; \
             END $$; \
             ALTER ROLE t_secret_user PASSWORD 'Sup3r-s3cret-pw'",
        )
        .execute(&mut c)
        .await?;
        c.close().await?;
        anyhow::Ok(())
    })?;
    let mut url = url::Url::parse(common::server_url())?;
    url.set_username("t_secret_user")
        .map_err(|()| anyhow::anyhow!("cannot set a user name"))?;
    url.set_password(Some(SECRET))
        .map_err(|()| anyhow::anyhow!("cannot set a password"))?;
    let mut bad_db = url.clone();
    bad_db.set_path("/no_such_database");
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("report.xml");
    let results = dir.path().join("results");
    let mut shown = String::new();
    let runs: Vec<(Vec<String>, Option<&url::Url>, bool)> = vec![
        // A run and a compare with every output: table, JSON, files.
        (
            vec!["run".into(), "--buyers".into(), "10".into()],
            Some(&url),
            true,
        ),
        (
            vec![
                "compare".into(),
                "--strategies".into(),
                "naive,for-update".into(),
                "--json".into(),
                "--buyers".into(),
                "10".into(),
            ],
            None, // through DATABASE_URL
            true,
        ),
        // Failures that name the server.
        (vec!["run".into()], Some(&bad_db), false),
        (
            vec!["run".into(), "--schema".into(), "Bad Schema!".into()],
            Some(&url),
            false,
        ),
        (vec!["--help".into()], None, true),
    ];
    for (args, by_flag, ok) in runs {
        let mut cmd = racelab();
        cmd.args(&args).env("DATABASE_URL", url.as_str());
        if args[0] != "--help" {
            if !args.iter().any(|a| a == "--schema") {
                cmd.args(["--schema", "t_secret"]);
            }
            cmd.arg("--out").arg(&results).arg("--junit").arg(&junit);
        }
        if let Some(u) = by_flag {
            cmd.args(["--database-url", u.as_str()]);
        }
        let out = cmd.output_bounded()?;
        ensure!(
            out.status.success() == ok,
            "{args:?}: exit {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        shown.push_str(&String::from_utf8_lossy(&out.stdout));
        shown.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    ensure!(shown.contains(":***@"), "no redacted URL in any message");
    let mut files = 0;
    for e in std::fs::read_dir(&results)?.flatten() {
        shown.push_str(&std::fs::read_to_string(e.path())?);
        files += 1;
    }
    ensure!(files == 3, "{files} result files");
    shown.push_str(&std::fs::read_to_string(&junit)?);
    ensure!(!shown.contains(SECRET), "the password was shown");
    Ok(())
}
