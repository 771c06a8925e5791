//! `racelab db start|status|url|stop` end to end, as a user types them: a
//! kept cluster started, found by `status` and `url`, used by a run that
//! names no database, started again idempotently, stopped with nothing
//! left. Private state and temp directories: no developer's kept cluster
//! is seen, and none of theirs is stopped.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context};
use libtest_mimic::Trial;
use racelab::db::proc;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::common::{block_on, trial, OutputWithin as _};

pub fn tests() -> Vec<Trial> {
    vec![trial(
        "dbcmd::start_status_url_stop_and_a_run_between",
        start_status_url_stop,
    )]
}

/// racelab with private state and temp directories.
struct Private {
    state: tempfile::TempDir,
    tmp: tempfile::TempDir,
}

impl Private {
    fn new() -> anyhow::Result<Private> {
        let tmp = tempfile::tempdir()?;
        // The server runs as an unprivileged user: it must traverse this.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
        Ok(Private {
            state: tempfile::tempdir()?,
            tmp,
        })
    }

    fn racelab(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_racelab"));
        cmd.args(args)
            .env("RACELAB_STATE_DIR", self.state.path())
            .env("RACELAB_TMPDIR", self.tmp.path())
            .env_remove("DATABASE_URL");
        Ok(cmd.output_bounded()?)
    }

    /// `racelab db <what>`: exit 0, its stdout trimmed.
    fn db(&self, what: &str) -> anyhow::Result<(String, String)> {
        let out = self.racelab(&["db", what])?;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        ensure!(
            out.status.success(),
            "racelab db {what}: exit {:?}: {stderr}",
            out.status.code()
        );
        Ok((stdout, stderr))
    }

    /// `racelab db status` with no kept cluster: it says so, and exits 1
    /// (a script's check fails).
    fn not_running(&self) -> anyhow::Result<()> {
        let out = self.racelab(&["db", "status"])?;
        let stdout = text(&out.stdout);
        ensure!(stdout == "not running", "{stdout}");
        ensure!(
            out.status.code() == Some(1),
            "racelab db status with none running: exit {:?}",
            out.status.code()
        );
        Ok(())
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        // After a failure: stop whatever this test's kept cluster is.
        let _ = self.racelab(&["db", "stop"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

fn start_status_url_stop() -> anyhow::Result<()> {
    let p = Private::new()?;
    // Nothing kept yet: status says so, url fails saying how to start one.
    p.not_running()?;
    let url = p.racelab(&["db", "url"])?;
    ensure!(
        !url.status.success(),
        "a URL with no cluster: {}",
        text(&url.stdout)
    );
    ensure!(url.stdout.is_empty(), "{}", text(&url.stdout));
    ensure!(
        text(&url.stderr).contains("racelab db start"),
        "{}",
        text(&url.stderr)
    );

    let started = p.racelab(&["db", "start", "--max-connections", "40"])?;
    ensure!(
        started.status.success(),
        "racelab db start: {}",
        text(&started.stderr)
    );
    // stdout is the URL and nothing else (what a script captures).
    let url = text(&started.stdout);
    ensure!(
        url.starts_with("postgresql://") && !url.contains('\n'),
        "{url:?}"
    );
    let (status, _) = p.db("status")?;
    ensure!(status.starts_with("running: PostgreSQL"), "{status}");
    // The URL printed by `start` and `url` carries the cluster's password,
    // for the owner's programs; status names the server without it.
    let (credentials, server) = url
        .trim_start_matches("postgresql://")
        .split_once('@')
        .with_context(|| format!("no user in {url}"))?;
    let password = credentials.split_once(':').map(|(_, p)| p).unwrap_or("");
    ensure!(!password.is_empty(), "{url} has no password");
    ensure!(status.contains(server), "{status} does not name {server}");
    ensure!(
        !status.contains(password),
        "status shows the password: {status}"
    );
    let pid: u32 = status
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no pid in {status:?}"))?;
    ensure!(
        proc::alive(pid),
        "status names pid {pid}, which is not running"
    );
    let data = status
        .rsplit_once("(data ")
        .and_then(|(_, d)| d.strip_suffix(')'))
        .map(std::path::PathBuf::from)
        .with_context(|| format!("no data directory in {status:?}"))?;
    ensure!(
        data.join("PG_VERSION").is_file(),
        "{} is no data directory",
        data.display()
    );
    let (again, _) = p.db("url")?;
    ensure!(again == url, "{again} != {url}");

    // Another program's view: the URL works, with the settings asked for.
    block_on(async {
        let mut c = PgConnection::connect(&url).await?;
        let max: String = sqlx::query_scalar("SHOW max_connections")
            .fetch_one(&mut c)
            .await?;
        ensure!(max == "40", "max_connections {max}");
        c.close().await?;
        anyhow::Ok(())
    })?;

    // Starting again is idempotent: the same cluster, the same URL.
    let (twice, _) = p.db("start")?;
    ensure!(twice == url, "a second start printed {twice}, not {url}");
    let (status, _) = p.db("status")?;
    ensure!(status.contains(&format!("pid {pid} ")), "{status}");

    // A run that names no database uses the kept cluster, and leaves it up.
    let run = p.racelab(&[
        "run",
        "--strategy",
        "conditional",
        "--buyers",
        "10",
        "--json",
        "--no-save",
        "--quiet",
    ])?;
    ensure!(run.status.success(), "{}", text(&run.stderr));
    let v: Value = serde_json::from_slice(&run.stdout)?;
    ensure!(v["database"]["kind"] == "kept", "{}", v["database"]);
    ensure!(v["verdict"] == "safe", "{}", v["verdict"]);
    ensure!(v["audit"]["units_sold"] == 10, "{}", v["audit"]);
    ensure!(proc::alive(pid), "the run stopped the kept cluster");

    // Stop: the server and its data are gone, and status says so.
    let (stopped, said) = p.db("stop")?;
    ensure!(stopped.is_empty(), "stop printed on stdout: {stopped}");
    ensure!(said.contains("stopped"), "{said}");
    ensure!(
        proc::wait_gone(pid, Duration::from_secs(30)),
        "the kept cluster (pid {pid}) still runs after stop"
    );
    p.not_running()?;
    ensure!(
        !data.exists(),
        "stop left the data directory {}",
        data.display()
    );
    ensure!(
        !p.state.path().join("cluster.json").exists(),
        "stop left the state file"
    );
    let (_, said) = p.db("stop")?;
    ensure!(said.contains("no kept cluster"), "{said}");
    // The next run has no kept cluster: it starts its own.
    let run = p.racelab(&["run", "--buyers", "2", "--json", "--no-save", "--quiet"])?;
    ensure!(run.status.success(), "{}", text(&run.stderr));
    let v: Value = serde_json::from_slice(&run.stdout)?;
    ensure!(v["database"]["kind"] == "embedded", "{}", v["database"]);
    Ok(())
}
