//! Every wait is bounded and nothing passes on nothing: a `\sleep` longer
//! than `--timeout`, retries without end, buyers blocked by a lock held
//! outside the race; a race with nothing to sell. Bad requests fail
//! before anything starts (an output path that cannot be written, more
//! connections than the process or the embedded cluster may hold), a
//! secret in the target's URL reaches no file, and `serve` refuses what it
//! cannot sell.

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{ensure, Context};
use libtest_mimic::Trial;
use sqlx::{Connection as _, PgConnection};

use crate::cli::{query_one, racelab, racelab_cmd_on, script, stderr, stdout};
use crate::common::{block_on, server_url, trial};
use crate::http::{verify_sql, Serve, BODY};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "bounds::a_sleep_longer_than_the_timeout_ends_the_attempt",
            long_sleep,
        ),
        trial("bounds::retries_without_end_stop_the_race", endless_retries),
        trial(
            "bounds::buyers_blocked_outside_the_race_stop_it_naming_the_lock",
            blocked_outside,
        ),
        trial(
            "bounds::a_livelock_of_upgraded_share_locks_stops_the_race",
            livelock,
        ),
        trial("bounds::nothing_to_sell_is_inconclusive", nothing_to_sell),
        trial(
            "bounds::unwritable_outputs_are_refused_before_the_lab_is_touched",
            unwritable_outputs,
        ),
        trial(
            "bounds::too_many_connections_are_refused_or_the_limit_raised",
            open_files,
        ),
        trial(
            "bounds::a_secret_in_the_target_url_reaches_no_file",
            url_secret,
        ),
        trial("bounds::serve_refuses_what_it_cannot_sell", serve_input),
    ]
}

/// One line of the failure: the exit code and what stderr must say.
fn says(out: &Output, code: i32, words: &[&str]) -> anyhow::Result<()> {
    let err = stderr(out);
    ensure!(
        out.status.code() == Some(code),
        "exit {:?}, not {code}: {err}",
        out.status.code()
    );
    for w in words {
        ensure!(err.contains(w), "stderr does not say {w:?}: {err}");
    }
    Ok(())
}

fn json(out: &Output) -> anyhow::Result<serde_json::Value> {
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "no JSON on stdout (exit {:?}): {}",
            out.status.code(),
            stderr(out)
        )
    })
}

fn long_sleep() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = script(
        dir.path(),
        "sleepy.sql",
        "-- sleepy\nBEGIN;\n\\sleep 99999 s\nUPDATE products SET stock = stock - :qty WHERE id = :product;\nCOMMIT;\n",
    );
    let out = racelab_cmd_on(
        "bounds_sleep",
        &[
            "run",
            "--strategy",
            &s,
            "--buyers",
            "3",
            "--timeout",
            "1000",
        ],
    )
    .args(["--expect", "safe", "--json"])
    .output()?;
    says(
        &out,
        1,
        &["\\sleep 99999 s is longer than --timeout 1000 ms"],
    )?;
    let v = json(&out)?;
    ensure!(v["verdict"] == "inconclusive", "verdict {}", v["verdict"]);
    ensure!(v["outcomes"]["errors"] == 3, "outcomes {}", v["outcomes"]);
    Ok(())
}

fn endless_retries() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let s = script(
        dir.path(),
        "endless.sql",
        "-- endless\nBEGIN;\n\\retry\nCOMMIT;\n",
    );
    let out = racelab_cmd_on(
        "bounds_retry",
        &["run", "--strategy", &s, "--buyers", "4", "--max-tries", "0"],
    )
    .args(["--no-progress", "1", "--expect", "safe", "--json"])
    .output()?;
    says(
        &out,
        3,
        &[
            "the buyers make no progress",
            "--max-tries 0",
            "partial result",
        ],
    )?;
    let v = json(&out)?;
    ensure!(v["status"] == "aborted", "status {}", v["status"]);
    ensure!(v["verdict"] == "inconclusive", "verdict {}", v["verdict"]);
    Ok(())
}

fn blocked_outside() -> anyhow::Result<()> {
    // A lock of the test's own, taken before the race: every buyer waits
    // on it, and the line names the session that holds it.
    let key = 7_300_000 + i64::from(std::process::id() % 100_000);
    let dir = tempfile::tempdir()?;
    let s = script(
        dir.path(),
        "blocked.sql",
        &format!(
            "-- blocked\nBEGIN;\nSELECT pg_advisory_xact_lock({key});\n\
             UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= :qty;\n\
             INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);\n\
             COMMIT;\n"
        ),
    );
    block_on(async {
        let mut holder = PgConnection::connect(server_url()).await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut holder)
            .await?;
        let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut holder)
            .await?;
        let out = tokio::task::spawn_blocking(move || {
            racelab_cmd_on(
                "bounds_blocked",
                &["run", "--strategy", &s, "--buyers", "3", "--stock", "10"],
            )
            .args(["--no-progress", "1", "--json"])
            .output()
        })
        .await??;
        holder.close().await?;
        says(
            &out,
            3,
            &["the buyers make no progress", &holder_pid.to_string()],
        )?;
        let v = json(&out)?;
        ensure!(v["verdict"] == "inconclusive", "verdict {}", v["verdict"]);
        anyhow::Ok(())
    })
}

fn livelock() -> anyhow::Result<()> {
    // Every buyer share-locks the row, then upgrades: each waits on the
    // others' share locks; a deadlock victim retries (--max-tries 0) and
    // takes its share lock again.
    let dir = tempfile::tempdir()?;
    let s = script(
        dir.path(),
        "livelock.sql",
        "-- livelock\nBEGIN;\nSELECT stock FROM products WHERE id = :product FOR SHARE \\gset\n\
         UPDATE products SET stock = :stock - :qty WHERE id = :product;\n\
         INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);\n\
         COMMIT;\n",
    );
    let out = racelab_cmd_on(
        "bounds_livelock",
        &["run", "--strategy", &s, "--buyers", "30", "--stock", "100"],
    )
    .args(["--max-tries", "0", "--no-progress", "3", "--json"])
    .output()?;
    says(
        &out,
        3,
        &[
            "the buyers make no progress",
            "wait on locks other buyers hold",
        ],
    )?;
    let v = json(&out)?;
    ensure!(v["verdict"] == "inconclusive", "verdict {}", v["verdict"]);
    Ok(())
}

fn nothing_to_sell() -> anyhow::Result<()> {
    for (stock, quantity) in [("0", "1"), ("10", "20")] {
        let out = racelab_cmd_on(
            "bounds_nothing",
            &["run", "--strategy", "naive", "--stock", stock],
        )
        .args(["--quantity", quantity, "--buyers", "5", "--expect", "safe"])
        .args(["--json"])
        .output()?;
        says(&out, 1, &["nothing could be sold"])?;
        let v = json(&out)?;
        ensure!(v["verdict"] == "inconclusive", "verdict {}", v["verdict"]);
    }
    Ok(())
}

fn schema_exists(schema: &str) -> bool {
    query_one(&format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
    ))
    .as_deref()
        == Some("1")
}

fn unwritable_outputs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let not_dir = "/dev/null/racelab.xml";
    let schema = "bounds_outputs";
    for (flag, path, why) in [
        ("--junit", d.as_str(), "is a directory"),
        ("--trace", d.as_str(), "is a directory"),
        ("--junit", not_dir, "/dev/null is not a directory"),
    ] {
        let out = racelab_cmd_on(schema, &["run", "--strategy", "naive", flag, path]).output()?;
        says(&out, 2, &[flag, why])?;
        ensure!(stdout(&out).is_empty(), "a race ran: {}", stdout(&out));
    }
    ensure!(
        !schema_exists(schema),
        "the lab was made before the flags were checked"
    );
    let out = racelab()
        .args(["explore", "--strategy", "naive", "--spec", &d])
        .args(["--database-url", server_url(), "--schema", schema])
        .args(["--no-save", "--quiet"])
        .output()?;
    says(&out, 2, &["--spec", "is a directory"])?;
    ensure!(!schema_exists(schema), "explore made the lab");
    let out = racelab().args(["report", "-o", &d, "x.json"]).output()?;
    says(&out, 2, &["-o", "is a directory"])?;
    Ok(())
}

/// racelab with the process's limit on open files set to `soft` / `hard`.
fn with_files(soft: u64, hard: u64, mut cmd: Command) -> Command {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn open_files() -> anyhow::Result<()> {
    // Raised: 200 connections need more than a soft limit of 128, and the
    // hard limit of 512 allows them.
    let race = |buyers: &str| {
        racelab_cmd_on(
            "bounds_files",
            &["run", "--strategy", "conditional", "--buyers", buyers],
        )
    };
    let mut cmd = with_files(128, 512, race("200"));
    let out = cmd.args(["--expect", "safe"]).output()?;
    says(&out, 0, &[])?;
    // Refused: 1000 connections do not fit under 512, before the lab is
    // touched, naming --connections.
    let out = with_files(128, 512, race("1000")).output()?;
    says(&out, 2, &["ulimit -Hn", "--connections 448"])?;
    // An embedded cluster holds at most 1000 connections of racelab's.
    let state = tempfile::tempdir()?;
    let out = racelab()
        .args(["run", "--strategy", "conditional", "--buyers", "10000"])
        .args(["--no-save", "--quiet"])
        .env_remove("DATABASE_URL")
        .env("RACELAB_STATE_DIR", state.path())
        .output()?;
    says(&out, 2, &["--buyers 10000", "--connections 1000"])?;
    Ok(())
}

/// Every file under `dir`, by name and content, free of `secret`.
fn no_secret_under(dir: &Path, secret: &str) -> anyhow::Result<usize> {
    let mut files = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.display().to_string();
        ensure!(
            !name.contains(secret),
            "a file name holds the secret: {name}"
        );
        let text = std::fs::read_to_string(&path)?;
        ensure!(!text.contains(secret), "{name} holds the secret");
        files += 1;
    }
    Ok(files)
}

fn url_secret() -> anyhow::Result<()> {
    let schema = "bounds_secret";
    let serve = Serve::start(schema, "conditional", 20);
    let secret = "s3cr3t-api-key-0451";
    let target = serve.url(&format!("/purchase?api_key={secret}&tenant=acme"));
    let out_dir = tempfile::tempdir()?;
    let o = out_dir.path();
    let (junit, trace) = (o.join("junit.xml"), o.join("trace.jsonl"));
    let out = racelab()
        .args(["http", &target, "--buyers", "5", "--body", BODY])
        .args([
            "--verify-sql",
            &verify_sql(schema),
            "--database-url",
            server_url(),
        ])
        .args(["--out", &o.display().to_string()])
        .args(["--junit", &junit.display().to_string()])
        .args(["--trace", &trace.display().to_string()])
        .args(["--json", "--expect", "safe"])
        .env_remove("DATABASE_URL")
        .output()?;
    serve.stop();
    says(&out, 0, &[])?;
    for (what, text) in [("stdout", stdout(&out)), ("stderr", stderr(&out))] {
        ensure!(!text.contains(secret), "{what} holds the secret: {text}");
    }
    let v = json(&out)?;
    let url = v["target"]["url"].as_str().unwrap_or_default();
    ensure!(url.ends_with("/purchase?api_key=***&tenant=***"), "{url}");
    // The result file, the JUnit report and the trace.
    let files = no_secret_under(o, secret)?;
    ensure!(files == 3, "{files} files written, not 3");
    Ok(())
}

/// POST `body` to `url`: the status code and the body of the answer.
fn post(url: &str, body: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let rest = url.strip_prefix("http://").context("an http URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("a status line")?;
    let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok((status, serde_json::from_str(json).unwrap_or_default()))
}

fn serve_input() -> anyhow::Result<()> {
    let schema = "bounds_serve";
    let serve = Serve::start(schema, "conditional", 10);
    let buy = serve.url("/purchase");
    let cases = [
        (r#"{"qty": -5}"#, 400, "`qty` must be between 1"),
        (r#"{"qty": 0}"#, 400, "`qty` must be between 1"),
        (r#"{"product": 99}"#, 404, "no product 99"),
        (r#"[1, 2]"#, 400, "must be a JSON object"),
        (r#"{"attempt": -1}"#, 400, "`attempt` must be 1 or more"),
    ];
    let answers: Vec<_> = cases.iter().map(|(body, _, _)| post(&buy, body)).collect();
    let good = post(&buy, r#"{"qty": 2}"#);
    serve.stop();
    for (answer, (body, code, words)) in answers.into_iter().zip(cases) {
        let (status, answer) = answer?;
        let error = answer["error"].as_str().unwrap_or_default();
        ensure!(
            status == code && error.contains(words),
            "{body}: {status} {answer}, not {code} {words:?}"
        );
    }
    let (status, body) = good?;
    ensure!(status == 201, "a good purchase: {status} {body}");
    // Only the good purchase changed the stock: nothing was added.
    let stock = query_one(&format!(
        "SELECT stock::int8 FROM {schema}.products WHERE id = 1"
    ));
    ensure!(stock.as_deref() == Some("8"), "stock {stock:?}, not 8");
    Ok(())
}
