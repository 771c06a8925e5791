//! A lab that is safe to run anywhere: racelab's own servers let no other
//! OS user in (the tests make one, `racelab-intruder`, as CI runs as
//! root); two runs never share a lab; a script stays in the lab of a
//! server racelab did not start, and a Lua script under the prefix of a
//! Redis it did not start.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use libtest_mimic::Trial;
use racelab::db::{bins, paths, proc};
use sqlx::{Connection as _, PgConnection};

use crate::cli::racelab;
use crate::common::{self, block_on, trial};
use crate::faults::Running;
use crate::redis::{cli as redis_cli, start_redis};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "safety::a_kept_cluster_admits_only_its_owner",
            kept_cluster_admits_only_its_owner,
        ),
        trial(
            "safety::a_run_its_redis_and_pgbouncer_admit_only_racelab",
            run_redis_and_pgbouncer_admit_only_racelab,
        ),
        trial(
            "safety::serve_admits_only_its_owner",
            serve_admits_only_its_owner,
        ),
        trial(
            "safety::explore_admits_only_racelab",
            explore_admits_only_racelab,
        ),
        trial(
            "safety::two_runs_on_a_kept_cluster_never_share_a_lab",
            two_runs_on_a_kept_cluster,
        ),
        trial(
            "safety::two_runs_on_an_external_server_never_share_a_lab",
            two_runs_on_an_external_server,
        ),
        trial(
            "safety::two_runs_on_one_redis_never_share_a_prefix",
            two_runs_on_one_redis,
        ),
        trial(
            "safety::scripts_stay_in_the_lab_of_an_external_server",
            scripts_stay_in_the_lab,
        ),
        trial(
            "safety::without_a_role_what_racelab_cannot_read_is_refused",
            unconfined_server_refuses_what_it_cannot_read,
        ),
        trial(
            "safety::lua_stays_under_the_prefix_of_an_external_redis",
            lua_stays_under_the_prefix,
        ),
    ]
}

const INTRUDER: &str = "racelab-intruder";

/// The other OS user, made once (idempotently: `useradd` only when it is
/// missing). `None` where this process may not make users (not root) and
/// not under CI: those tests then say so and pass.
fn intruder() -> anyhow::Result<Option<(u32, u32)>> {
    static MADE: OnceLock<Result<Option<(u32, u32)>, String>> = OnceLock::new();
    MADE.get_or_init(|| {
        let found = proc::lookup_user(INTRUDER).map_err(|e| format!("{e:#}"))?;
        if let Some(u) = found {
            return Ok(Some((u.uid, u.gid)));
        }
        if proc::euid() != 0 {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            if ci {
                return Err(format!(
                    "these tests need a second OS user ({INTRUDER}); run them as root, or create it"
                ));
            }
            eprintln!("note: not root: the {INTRUDER} checks are skipped");
            return Ok(None);
        }
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                INTRUDER,
            ])
            .output()
            .map_err(|e| format!("useradd: {e}"))?;
        // Another test may have made it meanwhile (exit 9: it exists).
        if !out.status.success() && out.status.code() != Some(9) {
            return Err(format!(
                "useradd {INTRUDER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let u = proc::lookup_user(INTRUDER)
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| format!("{INTRUDER} missing after useradd"))?;
        Ok(Some((u.uid, u.gid)))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// Run `program args` as the intruder (its own uid, gid and no other
/// groups, a bare environment): its output.
fn as_intruder(program: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={INTRUDER}"),
        &format!("--regid={INTRUDER}"),
        "--clear-groups",
        "--",
    ])
    .arg(program)
    .args(args)
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("HOME", "/")
    .env("PGCONNECT_TIMEOUT", "5")
    .current_dir("/")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd.output()?)
}

fn psql() -> anyhow::Result<PathBuf> {
    let bins = bins::find_server_bins(None)?;
    Ok(bins.initdb.with_file_name("psql"))
}

/// The intruder's psql to `host` (a socket directory or an address) and
/// `port` as `user`: must fail, with a message containing `expect`.
fn intruder_refused(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    expect: &str,
) -> anyhow::Result<()> {
    let port = port.to_string();
    let mut env = Vec::new();
    if let Some(p) = password {
        env.push(("PGPASSWORD", p));
    }
    let out = as_intruder(
        &psql()?,
        &[
            "-X",
            "-w",
            "-h",
            host,
            "-p",
            &port,
            "-U",
            user,
            "-d",
            "postgres",
            "-tAc",
            "SELECT 'in'",
        ],
        &env,
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("in"),
        "{INTRUDER} opened a session on {host}:{port}: {err}"
    );
    ensure!(
        err.contains(expect),
        "{INTRUDER} on {host}:{port}: expected {expect:?}, got: {err}"
    );
    Ok(())
}

/// A directory of racelab `pid` in the temp area (`<kind>-<pid>-*`).
fn dir_of(kind: &str, pid: u32) -> Option<PathBuf> {
    let prefix = format!("{kind}-{pid}-");
    std::fs::read_dir(paths::default_temp_root())
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}

/// Options for the cluster in `dir` over its private socket, as its owner.
fn socket_url(cluster_dir: &Path) -> String {
    format!(
        "postgresql:///postgres?user=postgres&host={}&port=5432",
        cluster_dir.join("sock").display()
    )
}

/// Wait until `check` says yes, failing after `limit` or when racelab exits.
fn wait_for(
    run: &mut Running,
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return Ok(());
        }
        if let Some(status) = run.0.try_wait()? {
            let (_, _, err) = run.finish(Duration::from_secs(1)).unwrap_or_default();
            bail!("racelab exited ({status}) before {what}: {err}");
        }
        ensure!(Instant::now() < deadline, "no {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `sql` returns true on the server at `url`.
fn holds(url: &str, sql: &str) -> bool {
    block_on(async {
        let mut c = PgConnection::connect(url).await?;
        let yes: bool = sqlx::query_scalar(sql).fetch_one(&mut c).await?;
        let _ = c.close().await;
        anyhow::Ok(yes)
    })
    .unwrap_or(false)
}

/// A strategy whose buyers hold their connection for a while (so that
/// the test can look at what is running); with `redis`, it uses Redis too.
fn sleepy(dir: &Path, redis: bool) -> anyhow::Result<PathBuf> {
    let path = dir.join(if redis {
        "sleepy-redis.sql"
    } else {
        "sleepy.sql"
    });
    let mut text = String::from("-- sleepy: holds its connection for a while\n");
    if redis {
        text.push_str("\\redis GET stock:{:product}\n");
    }
    text.push_str("SELECT pg_sleep(20);\n");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn stop(mut run: Running) -> anyhow::Result<()> {
    proc::signal(run.0.id(), libc::SIGTERM)?;
    let (status, _, err) = run.finish(Duration::from_secs(30))?;
    ensure!(
        status.code() == Some(143) || status.success(),
        "racelab after SIGTERM: {status}: {err}"
    );
    Ok(())
}

fn kept_cluster_admits_only_its_owner() -> anyhow::Result<()> {
    let Some(_) = intruder()? else {
        return Ok(());
    };
    let state = tempfile::tempdir()?;
    let db = |args: &[&str]| {
        racelab()
            .arg("db")
            .args(args)
            .env("RACELAB_STATE_DIR", state.path())
            .output()
    };
    let started = db(&["start"])?;
    ensure!(
        started.status.success(),
        "db start: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let result = (|| {
        let url = String::from_utf8(db(&["url"])?.stdout)?.trim().to_string();
        let parsed = url::Url::parse(&url)?;
        let password = parsed.password().context("no password in `db url`")?;
        let port = parsed.port().context("no port")?;
        // The owner gets in with the URL.
        let owner = Command::new(psql()?)
            .args(["-X", "-w", "-tAc", "SELECT 42", &url])
            .output()?;
        ensure!(
            String::from_utf8_lossy(&owner.stdout).trim() == "42",
            "the owner could not log in with `db url`: {}",
            String::from_utf8_lossy(&owner.stderr)
        );
        let status = String::from_utf8(db(&["status"])?.stdout)?;
        ensure!(!status.contains(password), "db status shows the password");
        let secret = state.path().join("cluster.password");
        let mode = std::fs::metadata(&secret)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "the password file has mode {mode:o}");
        // The intruder: no password, a guess, the file, the socket.
        intruder_refused("127.0.0.1", port, "postgres", None, "no password supplied")?;
        intruder_refused(
            "127.0.0.1",
            port,
            "postgres",
            Some("postgres"),
            "password authentication failed",
        )?;
        let cat = as_intruder(Path::new("/bin/cat"), &[secret.to_str().unwrap()], &[])?;
        ensure!(
            !cat.status.success()
                && String::from_utf8_lossy(&cat.stderr).contains("Permission denied"),
            "{INTRUDER} read the password file"
        );
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.path().join("cluster.json"))?)?;
        let sock = info["socket_dir"].as_str().context("socket_dir")?;
        intruder_refused(sock, port, "postgres", None, "Permission denied")?;
        Ok(())
    })();
    let stopped = db(&["stop"])?;
    result?;
    ensure!(stopped.status.success());
    Ok(())
}

fn run_redis_and_pgbouncer_admit_only_racelab() -> anyhow::Result<()> {
    let Some(_) = intruder()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let script = sleepy(dir.path(), true)?;
    let mut cmd = racelab();
    cmd.args(["run", "--strategy", script.to_str().unwrap()])
        .args(["--buyers", "2", "--via", "pgbouncer", "--no-save"])
        .args(["--no-progress", "120"]);
    let mut run = Running::spawn(cmd)?;
    let pid = run.0.id();
    wait_for(&mut run, Duration::from_secs(60), "the race", || {
        dir_of("cluster", pid).is_some_and(|d| {
            holds(
                &socket_url(&d),
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
        })
    })?;
    let result = (|| {
        let cluster = dir_of("cluster", pid).context("the cluster's directory")?;
        // No TCP at all: only the private socket, which the intruder
        // cannot reach.
        ensure!(
            holds(
                &socket_url(&cluster),
                "SELECT current_setting('listen_addresses') = ''"
            ),
            "the run's cluster listens on TCP"
        );
        let sock = cluster.join("sock");
        intruder_refused(
            sock.to_str().unwrap(),
            5432,
            "postgres",
            None,
            "Permission denied",
        )?;
        let redis = dir_of("redis", pid).context("the embedded Redis's directory")?;
        let out = as_intruder(
            Path::new("/usr/bin/redis-cli"),
            &["-s", redis.join("redis.sock").to_str().unwrap(), "PING"],
            &[],
        )?;
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        ensure!(
            !said.contains("PONG") && said.contains("Permission denied"),
            "{INTRUDER} reached the embedded Redis: {said}"
        );
        let bouncer = dir_of("pgbouncer", pid).context("PgBouncer's directory")?;
        intruder_refused(
            bouncer.to_str().unwrap(),
            6432,
            "racelab",
            None,
            "Permission denied",
        )?;
        Ok(())
    })();
    stop(run)?;
    result
}

fn serve_admits_only_its_owner() -> anyhow::Result<()> {
    let Some(_) = intruder()? else {
        return Ok(());
    };
    let mut child = racelab()
        .args([
            "serve",
            "--port",
            "0",
            "--strategy",
            "conditional",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    // stdout is read here; stderr drained, so that the child never blocks.
    let stderr = crate::common::Drained::of(child.stderr.take());
    let run = Running(
        child,
        [
            crate::common::Drained::of(None::<std::process::ChildStdout>),
            stderr,
        ],
    );
    let mut url = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while url.is_none() && Instant::now() < deadline {
        match lines.next() {
            Some(line) => url = line?.strip_prefix("database: ").map(str::to_string),
            None => break,
        }
    }
    let result = (|| {
        let url = url.context("serve printed no database URL")?;
        let parsed = url::Url::parse(&url)?;
        let port = parsed.port().context("no port")?;
        ensure!(parsed.password().is_some(), "no password in serve's URL");
        ensure!(
            holds(&url, "SELECT true"),
            "the owner could not log in with {url}"
        );
        intruder_refused("127.0.0.1", port, "postgres", None, "no password supplied")?;
        intruder_refused(
            "127.0.0.1",
            port,
            "postgres",
            Some("racelab"),
            "password authentication failed",
        )?;
        let cluster = dir_of("cluster", pid).context("serve's cluster directory")?;
        let sock = cluster.join("sock");
        intruder_refused(
            sock.to_str().unwrap(),
            port,
            "postgres",
            None,
            "Permission denied",
        )?;
        Ok(())
    })();
    stop(run)?;
    result
}

fn explore_admits_only_racelab() -> anyhow::Result<()> {
    let Some(_) = intruder()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let script = sleepy(dir.path(), false)?;
    let mut cmd = racelab();
    cmd.args([
        "explore",
        "--strategy",
        script.to_str().unwrap(),
        "--no-save",
    ]);
    let mut run = Running::spawn(cmd)?;
    let pid = run.0.id();
    wait_for(&mut run, Duration::from_secs(60), "a schedule", || {
        dir_of("cluster", pid).is_some_and(|d| {
            holds(
                &socket_url(&d),
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' \
                 AND pid <> pg_backend_pid()",
            )
        })
    })?;
    let result = (|| {
        let cluster = dir_of("cluster", pid).context("explore's cluster directory")?;
        ensure!(
            holds(
                &socket_url(&cluster),
                "SELECT current_setting('listen_addresses') = ''"
            ),
            "explore's cluster listens on TCP"
        );
        let sock = cluster.join("sock");
        intruder_refused(
            sock.to_str().unwrap(),
            5432,
            "postgres",
            None,
            "Permission denied",
        )
    })();
    stop(run)?;
    result
}

/// SQL: whether racelab `pid` holds its claim (the lock of `db::claim`).
fn claimed_by(pid: u32) -> String {
    format!(
        "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted \
           AND a.application_name LIKE 'racelab[{pid}@%'"
    )
}

/// racelab with `args`, on the kept cluster of `state` when given.
fn racelab_with(state: Option<&Path>, args: &[&str]) -> Command {
    let mut c = racelab();
    c.args(args);
    if let Some(s) = state {
        c.env("RACELAB_STATE_DIR", s);
    }
    c
}

/// A long safe race on the lab `schema` of the server at `url` (`db`: the
/// flags that reach it, or `state`: its kept cluster's state directory).
/// Once the first run holds its claim, a second safe run on the same lab is
/// refused (exit 2) naming the first, one with a schema of its own races
/// beside it, and on a kept cluster `db stop` is refused; both races are
/// SAFE.
fn race_beside(url: &str, db: &[&str], state: Option<&Path>, schema: &str) -> anyhow::Result<()> {
    let mut cmd = racelab_with(
        state,
        &[
            "run",
            "--strategy",
            "for-update",
            "--stock",
            "1000000",
            "--duration",
            "3",
        ],
    );
    cmd.args(["--buyers", "5", "--no-save", "--json", "--schema", schema])
        .args(db);
    let mut first = Running::spawn(cmd)?;
    let pid = first.0.id();
    wait_for(
        &mut first,
        Duration::from_secs(60),
        "the first run's claim",
        || holds(url, &claimed_by(pid)),
    )?;
    let second = |schema: &str| {
        racelab_with(
            state,
            &["run", "--strategy", "conditional", "--buyers", "20"],
        )
        .args(["--no-save", "--expect", "safe", "--schema", schema])
        .args(db)
        .output()
    };
    let refused = second(schema)?;
    let beside = second(&format!("{schema}_b"))?;
    let stop = state
        .map(|_| racelab_with(state, &["db", "stop"]).output())
        .transpose()?;
    let (status, out, err) = first.finish(Duration::from_secs(60))?;
    let refusal = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        refused.status.code() == Some(2)
            && refusal.contains(&format!("racelab[{pid}@"))
            && refusal.contains("--schema"),
        "the second run on the same lab: {:?}: {refusal}",
        refused.status
    );
    ensure!(
        beside.status.success() && String::from_utf8_lossy(&beside.stdout).contains("SAFE:"),
        "a run with a schema of its own beside the first: {:?}: {}",
        beside.status,
        String::from_utf8_lossy(&beside.stderr)
    );
    if let Some(stop) = stop {
        let stop_err = String::from_utf8_lossy(&stop.stderr);
        ensure!(
            stop.status.code() == Some(2)
                && stop_err.contains(&format!("racelab[{pid}@"))
                && stop_err.contains("--force"),
            "db stop while a run uses the cluster: {:?}: {stop_err}",
            stop.status
        );
    }
    ensure!(status.success(), "the first run: {status}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(
        v["verdict"] == "safe",
        "the first run's verdict: {}",
        v["verdict"]
    );
    Ok(())
}

fn two_runs_on_a_kept_cluster() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let started = racelab_with(Some(state.path()), &["db", "start"]).output()?;
    ensure!(started.status.success());
    let url = String::from_utf8(started.stdout)?.trim().to_string();
    let result = race_beside(&url, &[], Some(state.path()), "t_kept_collide");
    let stopped = racelab_with(Some(state.path()), &["db", "stop"]).output()?;
    result?;
    ensure!(stopped.status.success());
    Ok(())
}

fn two_runs_on_an_external_server() -> anyhow::Result<()> {
    let url = common::server_url();
    race_beside(url, &["--database-url", url], None, "t_ext_collide")
}

fn two_runs_on_one_redis() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut redis, sock) = start_redis(dir.path());
    let redis_url = format!("redis+unix://{}", sock.display());
    let result = (|| {
        // Two databases of the shared server: two labs, each with its own
        // claim, and one Redis prefix.
        let exists = holds(
            common::server_url(),
            "SELECT count(*) = 1 FROM pg_database WHERE datname = 't_redis_db2'",
        );
        if !exists {
            // Another run of this test may race to make it: either wins.
            let _ = sql_on_server("CREATE DATABASE t_redis_db2");
        }
        let mut other_db = url::Url::parse(common::server_url())?;
        other_db.set_path("/t_redis_db2");
        let mut cmd = racelab();
        cmd.args(["run", "--strategy", "redis-decr", "--stock", "1000000"])
            .args(["--duration", "3", "--buyers", "4", "--no-save", "--json"])
            .args(["--schema", "t_redis_collide", "--redis-url", &redis_url])
            .args(["--database-url", common::server_url()]);
        let mut first = Running::spawn(cmd)?;
        let pid = first.0.id();
        wait_for(
            &mut first,
            Duration::from_secs(60),
            "the first run's claim",
            || redis_cli(&sock, &["GET", "t_redis_collide:claim"]).starts_with("racelab["),
        )?;
        let refused = racelab()
            .args([
                "run",
                "--strategy",
                "redis-decr",
                "--buyers",
                "5",
                "--no-save",
            ])
            .args(["--schema", "t_redis_collide", "--redis-url", &redis_url])
            .args(["--database-url", other_db.as_str()])
            .output()?;
        let (status, out, err) = first.finish(Duration::from_secs(60))?;
        let refusal = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            refused.status.code() == Some(2)
                && refusal.contains("t_redis_collide:")
                && refusal.contains(&format!("racelab[{pid}@")),
            "a second run on the same Redis prefix: {:?}: {refusal}",
            refused.status
        );
        ensure!(status.success(), "the first run: {status}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out)?;
        ensure!(v["verdict"] == "safe", "the first run: {}", v["verdict"]);
        ensure!(
            redis_cli(&sock, &["EXISTS", "t_redis_collide:claim"]) == "0",
            "the claim outlived the run"
        );
        Ok(())
    })();
    let _ = redis.kill();
    let _ = redis.wait();
    result
}

/// The user's own objects on the shared server, which no script may touch.
const USER_OBJECTS: &str = "CREATE TABLE IF NOT EXISTS public.t_keep_users (id int PRIMARY KEY); \
     INSERT INTO public.t_keep_users VALUES (1) ON CONFLICT DO NOTHING; \
     CREATE SCHEMA IF NOT EXISTS t_keep_app; \
     CREATE TABLE IF NOT EXISTS t_keep_app.x (id int); \
     INSERT INTO t_keep_app.x SELECT 7 WHERE NOT EXISTS (SELECT FROM t_keep_app.x)";

fn user_objects_survive() -> anyhow::Result<()> {
    let url = common::server_url();
    ensure!(
        holds(url, "SELECT (SELECT count(*) FROM public.t_keep_users) = 1"),
        "public.t_keep_users was changed"
    );
    ensure!(
        holds(url, "SELECT (SELECT sum(id) FROM t_keep_app.x) = 7"),
        "t_keep_app.x was changed"
    );
    ensure!(
        holds(
            url,
            "SELECT count(*) = 1 FROM pg_namespace WHERE nspname = 'public'"
        ),
        "schema public was dropped"
    );
    Ok(())
}

fn sql_on_server(sql: &str) -> anyhow::Result<()> {
    block_on(async {
        let mut c = PgConnection::connect(common::server_url()).await?;
        sqlx::raw_sql(sql).execute(&mut c).await?;
        c.close().await?;
        anyhow::Ok(())
    })
}

/// A strategy file whose `\setup` or body holds `escape`.
fn escaping(dir: &Path, name: &str, escape: &str, in_setup: bool) -> anyhow::Result<PathBuf> {
    let body = "BEGIN;\n\
        UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= :qty;\n\
        INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);\n\
        COMMIT;\n";
    let text = if in_setup {
        format!("-- {name}\n\\setup\n{escape}\n\\endsetup\n{body}")
    } else {
        format!("-- {name}\n{escape}\n{body}")
    };
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn scripts_stay_in_the_lab() -> anyhow::Result<()> {
    sql_on_server(USER_OBJECTS)?;
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("shell-ran");
    let copy = format!("COPY (SELECT 1) TO PROGRAM 'touch {}';", marker.display());
    // What a reader sees: refused before anything starts, at its place.
    for (name, escape, in_setup, col) in [
        ("drop-public", "DROP SCHEMA public CASCADE;", true, 13),
        ("drop-table", "DROP TABLE public.t_keep_users;", false, 12),
        ("copy-program", copy.as_str(), false, 1),
        ("set-role", "SET ROLE postgres;", false, 1),
        ("reset-role", "RESET ROLE;", false, 7),
    ] {
        let file = escaping(dir.path(), name, escape, in_setup)?;
        let line = if in_setup { 3 } else { 2 };
        let started = Instant::now();
        let out = crate::cli::racelab_on(
            "t_escape",
            &["run", "--strategy", file.to_str().unwrap(), "--buyers", "5"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2)
                && err.contains(&format!(
                    "{name}.sql:{line}:{col}: this statement leaves the lab"
                )),
            "{name}: {:?}: {err}",
            out.status
        );
        ensure!(started.elapsed() < Duration::from_secs(30));
    }
    // What a reader cannot see runs as the lab's role, which may not.
    let hidden = format!(
        "DO $$ BEGIN EXECUTE 'DROP TABLE public.t_keep_users'; END $$;\n\
         DO $$ BEGIN EXECUTE 'DROP SCHEMA public CASCADE'; END $$;\n\
         DO $$ BEGIN EXECUTE 'DELETE FROM t_keep_app.x'; END $$;\n\
         DO $$ BEGIN EXECUTE $c$ {copy} $c$; END $$;"
    );
    for (i, statement) in hidden.lines().enumerate() {
        let file = escaping(dir.path(), &format!("hidden-{i}"), statement, false)?;
        let out = crate::cli::racelab_on(
            "t_escape",
            &[
                "run",
                "--strategy",
                file.to_str().unwrap(),
                "--buyers",
                "3",
                "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{statement}: {}", String::from_utf8_lossy(&out.stderr)))?;
        ensure!(
            v["outcomes"]["errors"] == 3 && v["verdict"] != "safe",
            "{statement}: every attempt should fail for want of privilege: {}",
            v["error_messages"]
        );
        let first = v["error_messages"][0]["message"].as_str().unwrap_or("");
        ensure!(
            first.contains("must be owner")
                || first.contains("permission denied")
                || first.contains("pg_execute_server_program"),
            "{statement}: {first}"
        );
    }
    ensure!(!marker.exists(), "a shell command ran on the server");
    user_objects_survive()
}

fn unconfined_server_refuses_what_it_cannot_read() -> anyhow::Result<()> {
    // A user that may not make roles (the usual application user): racelab
    // cannot give the buyers a role of their own there.
    sql_on_server(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 't_app_user') THEN \
             CREATE ROLE t_app_user LOGIN NOSUPERUSER NOCREATEROLE; \
           END IF; \
         END $$; \
         ALTER ROLE t_app_user PASSWORD 'app-pw'; \
         GRANT CREATE ON DATABASE postgres TO t_app_user",
    )?;
    sql_on_server(USER_OBJECTS)?;
    let mut url = url::Url::parse(common::server_url())?;
    url.set_username("t_app_user")
        .map_err(|()| anyhow::anyhow!("user"))?;
    url.set_password(Some("app-pw"))
        .map_err(|()| anyhow::anyhow!("password"))?;
    let dir = tempfile::tempdir()?;
    let file = escaping(
        dir.path(),
        "hidden",
        "DO $$ BEGIN EXECUTE 'DROP TABLE public.t_keep_users'; END $$;",
        false,
    )?;
    let out = racelab()
        .args([
            "run",
            "--strategy",
            file.to_str().unwrap(),
            "--buyers",
            "3",
            "--no-save",
        ])
        .args(["--schema", "t_unconfined", "--database-url", url.as_str()])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2)
            && err.contains("hidden.sql:2:1: racelab cannot tell where this statement reaches")
            && err.contains("CREATEROLE")
            && !err.contains("app-pw"),
        "{:?}: {err}",
        out.status
    );
    // A script that stays in the lab races there as usual.
    let out = racelab()
        .args([
            "run",
            "--strategy",
            "conditional",
            "--buyers",
            "10",
            "--no-save",
        ])
        .args([
            "--expect",
            "safe",
            "--schema",
            "t_unconfined",
            "--database-url",
            url.as_str(),
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "conditional as an application user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    user_objects_survive()
}

fn lua_stays_under_the_prefix() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut redis, sock) = start_redis(dir.path());
    let result = (|| {
        redis_cli(&sock, &["SET", "victim:key", "keep-me"]);
        let script = dir.path().join("evil-lua.sql");
        std::fs::write(
            &script,
            "-- Lua that reaches outside the prefix\n\
             \\redis EVAL 'redis.call(''SET'', ''victim:key'', ''owned'') return 1' 0\n\
             \\redis EVAL 'return redis.call(''FLUSHALL'')' 0\n\
             UPDATE products SET stock = stock - :qty WHERE id = :product;\n",
        )?;
        let url = format!("redis+unix://{}", sock.display());
        let (out, v) = crate::cli::json_on(
            "t_lua_prefix",
            &[
                "run",
                "--strategy",
                script.to_str().unwrap(),
                "--buyers",
                "3",
                "--redis-url",
                &url,
            ],
        );
        ensure!(
            v["outcomes"]["errors"] == 3,
            "the Lua should fail for want of the key: {:?} {}",
            out.status,
            v["error_messages"]
        );
        ensure!(
            redis_cli(&sock, &["GET", "victim:key"]) == "keep-me",
            "victim:key changed"
        );
        // A Redis user that may not make ACL users: racelab cannot confine
        // the Lua there, so it refuses it.
        redis_cli(
            &sock,
            &[
                "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-acl",
            ],
        );
        let limited = format!("{url}?user=limited&pass=pw");
        let out = crate::cli::racelab_on(
            "t_lua_prefix",
            &[
                "run",
                "--strategy",
                script.to_str().unwrap(),
                "--redis-url",
                &limited,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2)
                && err.contains("evil-lua.sql:2:1: EVAL runs a Lua script")
                && !err.contains("pass=pw"),
            "{:?}: {err}",
            out.status
        );
        ensure!(
            redis_cli(&sock, &["GET", "victim:key"]) == "keep-me",
            "victim:key changed"
        );
        Ok(())
    })();
    let _ = redis.kill();
    let _ = redis.wait();
    result
}
