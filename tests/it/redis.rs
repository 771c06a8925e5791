//! Redis beside the database, against a real `redis-server`: the built-in
//! Redis strategies' verdicts and cache drift, a user's Redis script, bad
//! `\redis` syntax, an external Redis whose other keys stay untouched, an
//! unreachable `--redis-url`, and no server left after a run or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use crate::cli::*;

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test("redis::decr_and_lua_sell_exactly_the_stock", decr_and_lua),
        Trial::test("redis::get_set_oversells", get_set_oversells),
        Trial::test(
            "redis::lock_safe_within_its_ttl_oversells_past_it",
            lock_within_and_past_ttl,
        ),
        Trial::test("redis::user_script_and_bad_syntax", user_script),
        Trial::test(
            "redis::external_keeps_other_keys",
            external_keeps_other_keys,
        ),
        Trial::test("redis::unreachable_url_exits_3", unreachable_url),
        Trial::test("redis::no_server_left_after_ctrl_c", ctrl_c),
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
    let runs = runs(&v);
    assert_eq!(runs.len(), 6);
    for r in &runs {
        assert_eq!(int(r, "audit.units_sold"), 5, "{r}");
        assert_eq!(int(r, "audit.cache_drift"), 0, "{r}");
        assert_eq!(r["verdict"], "safe", "{r}");
    }
    Ok(())
}

fn get_set_oversells() -> Result<(), Failed> {
    let (_, v) = fifty_buyers_five_units("redis_getset", "redis-get-set");
    for r in &runs(&v) {
        assert!(int(r, "audit.oversold_units") > 0, "{r}");
        assert!(int(r, "audit.cache_drift") > 0, "{r}");
        assert_eq!(r["verdict"], "oversold", "{r}");
    }
    Ok(())
}

/// `redis-lock` with a think time well inside its 50 ms TTL (5 ms) sells
/// exactly the stock in every run; with 200 ms the lock expires under its
/// holder and a second buyer writes back the same stale stock.
fn lock_within_and_past_ttl() -> Result<(), Failed> {
    let lock = |schema: &str, think: &str, repeat: &str| {
        json_on(
            schema,
            &[
                "run",
                "--strategy",
                "redis-lock",
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
    let (out, v) = lock("redis_lock_in", "5", "3");
    let within = runs(&v);
    assert_eq!(within.len(), 3, "{v}");
    for r in &within {
        assert_eq!(int(r, "audit.units_sold"), 5, "{r}");
        assert_eq!(r["verdict"], "safe", "{r}");
    }
    assert_eq!(out.status.code(), Some(0), "{v}");
    let (_, v) = lock("redis_lock_past", "200", "1");
    let past = &runs(&v)[0];
    assert!(int(past, "audit.oversold_units") > 0, "{past}");
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, sock)
}

pub(crate) fn cli(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let servers = loop {
        let s = redis_children(pid);
        if !s.is_empty() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no embedded redis-server appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // Into the race (buyers thinking), not during start-up.
    std::thread::sleep(Duration::from_millis(2000));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait()?;
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
