//! Redis beside the database, against a real `redis-server`: the built-in
//! Redis strategies' verdicts and cache drift, a user's Redis script, bad
//! `\redis` syntax, an external Redis whose other keys stay untouched, an
//! unreachable `--redis-url`, and no server left after a run or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};

use crate::cli::*;
use crate::common::OutputWithin as _;
use crate::common::{wait_status, wait_until};

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test("redis::decr_and_lua_sell_exactly_the_stock", decr_and_lua),
        crate::common::test("redis::get_set_oversells", get_set_oversells),
        crate::common::test(
            "redis::lock_safe_within_its_ttl_oversells_past_it",
            lock_within_and_past_ttl,
        ),
        crate::common::test("redis::user_script_and_bad_syntax", user_script),
        crate::common::test(
            "redis::external_keeps_other_keys",
            external_keeps_other_keys,
        ),
        crate::common::test("redis::unreachable_url_exits_3", unreachable_url),
        crate::common::test("redis::no_server_left_after_ctrl_c", ctrl_c),
    ]
}

/// `compare` of `strategies`, 50 buyers on 5 units, three runs each.
fn fifty_buyers_five_units(
    schema: &str,
    strategies: &str,
) -> (std::process::Output, serde_json::Value) {
    json_on(
        schema,
        &[
            "compare",
            "--strategies",
            strategies,
            "--buyers",
            "50",
            "--stock",
            "5",
            "--repeat",
            "3",
        ],
    )
}

fn decr_and_lua() -> Result<(), Failed> {
    let (out, v) = fifty_buyers_five_units("redis_decr", "redis-decr,redis-lua");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &runs(&v, 6) {
        assert_eq!(int(r, "audit.units_sold"), 5, "{r}");
        assert_eq!(int(r, "outcomes.succeeded"), 5, "{r}");
        assert_eq!(int(r, "outcomes.errors"), 0, "{r}");
        assert_eq!(int(r, "audit.cache_drift"), 0, "{r}");
        assert_eq!(r["verdict"], "safe", "{r}");
    }
    Ok(())
}

fn get_set_oversells() -> Result<(), Failed> {
    let (out, v) = fifty_buyers_five_units("redis_getset", "redis-get-set");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for r in &runs(&v, 3) {
        assert!(int(r, "audit.oversold_units") > 0, "{r}");
        assert_eq!(
            int(r, "audit.oversold_units"),
            int(r, "audit.units_sold") - 5,
            "{r}"
        );
        assert_eq!(int(r, "outcomes.errors"), 0, "{r}");
        assert!(int(r, "audit.cache_drift") > 0, "{r}");
        assert_eq!(r["verdict"], "oversold", "{r}");
    }
    Ok(())
}

/// `redis-lock` is safe while each holder finishes within the lock's TTL
/// and oversells once holders outlive it. Within: the built-in script with
/// a 30 s TTL instead of its 50 ms (5 ms of think time is within it on any
/// machine, however loaded); past: the built-in as it is, with 200 ms of
/// think time, four times its TTL (past it on any machine).
fn lock_within_and_past_ttl() -> Result<(), Failed> {
    let builtin = racelab::strategy::builtins()
        .iter()
        .find(|(n, _)| *n == "redis-lock")
        .map(|(_, src)| *src)
        .expect("redis-lock is built in");
    assert!(
        builtin.contains(" NX PX 50 "),
        "the built-in's TTL moved:\n{builtin}"
    );
    let dir = tempfile::tempdir()?;
    let long_ttl = write(
        dir.path(),
        "redis-lock-30s.sql",
        &builtin.replace(" NX PX 50 ", " NX PX 30000 "),
    );
    let lock = |schema: &str, strategy: &str, think: &str, repeat: &str| {
        json_on(
            schema,
            &[
                "run",
                "--strategy",
                strategy,
                "--buyers",
                "50",
                "--stock",
                "5",
                "--think-ms",
                think,
                "--max-tries",
                "0",
                "--repeat",
                repeat,
            ],
        )
    };
    let (out, v) = lock("redis_lock_in", long_ttl.to_str().unwrap(), "5", "3");
    for r in &runs(&v, 3) {
        assert_eq!(int(r, "audit.units_sold"), 5, "{r}");
        assert_eq!(int(r, "outcomes.succeeded"), 5, "{r}");
        assert_eq!(int(r, "outcomes.sold_out"), 45, "{r}");
        assert_eq!(int(r, "outcomes.errors"), 0, "{r}");
        assert_eq!(r["verdict"], "safe", "{r}");
    }
    assert_eq!(out.status.code(), Some(0), "{v}");
    let (_, v) = lock("redis_lock_past", "redis-lock", "200", "1");
    let past = &runs(&v, 1)[0];
    assert!(int(past, "audit.oversold_units") > 0, "{past}");
    assert_eq!(text(past, "verdict"), "oversold", "{past}");
    // The lock strategy does not count stock in Redis: no cache drift to read.
    assert!(past["audit"].get("cache_drift").is_none(), "{past}");
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn user_script() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    // WATCH/MULTI/EXEC: a nil EXEC (someone changed the key) retries.
    let good = write(
        dir.path(),
        "watch.sql",
        "\\redis WATCH stock:{:product}\n\\redis GET stock:{:product} \\gset stock\n\\if :stock < :qty\n  \\sold_out\n\\endif\n\\redis MULTI\n\\redis DECRBY stock:{:product} :qty\n\\redis EXEC \\gset left\n\\if is_null(:left)\n  \\retry\n\\endif\nBEGIN;\nUPDATE products SET stock = stock - :qty WHERE id = :product;\nINSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);\nCOMMIT;\n",
    );
    let (out, v) = json_on(
        "redis_user",
        &[
            "run",
            "--strategy",
            good.to_str().unwrap(),
            "--buyers",
            "20",
            "--stock",
            "5",
            "--max-tries",
            "0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(int(&v, "audit.units_sold"), 5, "{v}");
    assert_eq!(int(&v, "audit.cache_drift"), 0, "{v}");
    assert!(
        int(&v, "outcomes.retries") > 0,
        "no nil EXEC was retried: {v}"
    );
    let bad = write(
        dir.path(),
        "bad.sql",
        "BEGIN;\nCOMMIT;\n\\redis GET stock:{product}\n",
    );
    let out = racelab_on("redis_bad", &["run", "--strategy", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.sql:3:18:"), "{err}");
    let bad = write(dir.path(), "flush.sql", "\\redis FLUSHALL\n");
    let out = racelab_on("redis_bad", &["run", "--strategy", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flush.sql:1:8:"));
    Ok(())
}

/// A redis-server of the test's own on a unix socket in `dir`.
pub(crate) fn start_redis(dir: &Path) -> (Child, PathBuf) {
    let sock = dir.join("r.sock");
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(&sock)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    wait_until(
        "redis-server on its socket",
        Duration::from_secs(30),
        || Ok(std::os::unix::net::UnixStream::connect(&sock).ok()),
    )
    .expect("redis-server starts");
    (child, sock)
}

pub(crate) fn cli(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output_bounded()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn external_keeps_other_keys() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (mut child, sock) = start_redis(dir.path());
    cli(&sock, &["SET", "stock:1", "keep-me"]);
    cli(&sock, &["SET", "redis_ext_other:stock:1", "mine-too"]);
    cli(&sock, &["SET", "redis_ext:leftover", "x"]);
    let url = format!("redis+unix://{}", sock.display());
    let (out, v) = json_on(
        "redis_ext",
        &[
            "run",
            "--strategy",
            "redis-decr",
            "--buyers",
            "20",
            "--stock",
            "5",
            "--redis-url",
            &url,
        ],
    );
    let keys = cli(&sock, &["KEYS", "*"]);
    let stock = cli(&sock, &["GET", "stock:1"]);
    let other = cli(&sock, &["GET", "redis_ext_other:stock:1"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(int(&v, "audit.cache_drift"), 0, "{v}");
    assert_eq!(stock, "keep-me");
    assert_eq!(other, "mine-too");
    // racelab's own keys (under `redis_ext:`) are gone after the run.
    assert!(!keys.lines().any(|k| k.starts_with("redis_ext:")), "{keys}");
    Ok(())
}

fn unreachable_url() -> Result<(), Failed> {
    let out = racelab_on(
        "redis_unreach",
        &[
            "run",
            "--strategy",
            "redis-decr",
            "--redis-url",
            "redis+unix:///nonexistent/racelab.sock",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Redis"));
    Ok(())
}

/// redis-server processes whose parent is `pid`.
fn redis_children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let comm_ok = stat.contains("(redis-server)");
        let ppid = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if comm_ok && ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn ctrl_c() -> Result<(), Failed> {
    let mut child = racelab()
        .args([
            "run",
            "--strategy",
            "redis-decr",
            "--buyers",
            "5",
            "--stock",
            "100",
            "--think-ms",
            "200",
            "--duration",
            "30",
        ])
        .args([
            "--database-url",
            crate::common::server_url(),
            "--schema",
            "redis_sigint",
            "--no-save",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let ready = wait_until("racelab's redis-server", Duration::from_secs(30), || {
        anyhow::ensure!(child.try_wait()?.is_none(), "racelab exited early");
        let s = redis_children(pid);
        Ok((!s.is_empty()).then_some(s))
    })
    .and_then(|servers| {
        // Into the race (buyers thinking), not during start-up.
        wait_until(
            "the first orders in redis_sigint",
            Duration::from_secs(60),
            || {
                anyhow::ensure!(child.try_wait()?.is_none(), "racelab exited early");
                let orders = crate::faults::orders_in(crate::common::server_url(), "redis_sigint");
                Ok((orders.unwrap_or(0) > 0).then_some(()))
            },
        )?;
        Ok(servers)
    });
    let servers = match ready {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{e:#}").into());
        }
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = wait_status(&mut child, Duration::from_secs(60))?
        .ok_or("racelab did not exit within 60 s of SIGINT")?;
    assert_eq!(status.code(), Some(130));
    for s in servers {
        // Stopped and reaped by racelab: not even a zombie is left.
        let stat = std::fs::read_to_string(format!("/proc/{s}/stat")).unwrap_or_default();
        assert!(
            !stat.contains("(redis-server)"),
            "redis-server {s} left behind: {stat}"
        );
    }
    let root = racelab::db::paths::default_temp_root();
    let prefix = format!("redis-{pid}-");
    let left = std::fs::read_dir(&root)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "redis temp dir left behind");
    Ok(())
}
