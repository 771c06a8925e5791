//! What racelab shows people and CI, against the shared server: progress
//! lines on a pipe (races and explore), the compare table within 100
//! columns, `list --json` and `db status --json` against
//! docs/cli.schema.json, reports grouped by workload, baselines that
//! compare like with like, strategy names, an exported DATABASE_URL and
//! `db clean`, the `--watch` summary, and help that lists only what a
//! command accepts.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{ensure, Context as _};
use libtest_mimic::Trial;
use serde_json::Value;

use crate::cli::{query_one, racelab, stderr, stdout, text};
use crate::common::{server_url, trial};

pub fn tests() -> Vec<Trial> {
    vec![
        trial(
            "output::progress_lines_on_a_pipe_before_the_result",
            progress_lines,
        ),
        trial(
            "output::connecting_buyers_shows_progress_on_a_pipe_and_bars_on_a_terminal",
            connecting_and_bars,
        ),
        trial(
            "output::explore_progress_counts_schedules_against_an_estimate",
            explore_progress,
        ),
        trial("output::compare_fits_100_columns", compare_fits),
        trial(
            "output::list_and_db_status_json_follow_the_schema",
            list_and_status_json,
        ),
        trial(
            "output::reports_and_baselines_compare_like_with_like",
            reports_and_baselines,
        ),
        trial(
            "output::strategies_by_local_name_and_by_path",
            strategy_names,
        ),
        trial(
            "output::database_url_from_the_environment_and_db_clean",
            env_url_and_clean,
        ),
        trial("output::watch_summary_and_samples", watch_summary),
        trial("output::help_lists_only_accepted_flags", help_flags),
    ]
}

/// `racelab <args>` on the shared server in `schema`, results not saved,
/// not quiet.
fn on(schema: &str, args: &[&str]) -> Command {
    let mut cmd = racelab();
    cmd.args(args).args([
        "--database-url",
        server_url(),
        "--schema",
        schema,
        "--no-save",
    ]);
    cmd
}

/// Run with stdout and stderr into one file, in the order written.
fn interleaved(mut cmd: Command) -> anyhow::Result<(Output, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("both.txt");
    let file = File::create(&path)?;
    let out = cmd
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .output()?;
    Ok((out, std::fs::read_to_string(&path)?))
}

fn schema_validator(doc: &str) -> anyhow::Result<jsonschema::Validator> {
    let schema: Value = serde_json::from_str(doc)?;
    jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("schema: {e}"))
}

fn valid(v: &jsonschema::Validator, doc: &Value) -> anyhow::Result<()> {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    ensure!(errors.is_empty(), "{errors:?} in {doc}");
    Ok(())
}

fn progress_lines() -> anyhow::Result<()> {
    // A timed race on a pipe prints a progress line every interval (5 s by
    // default; shortened here so the race can be short too) on stderr,
    // before the result on stdout.
    let mut cmd = on(
        "t_out_progress",
        &[
            "run",
            "--duration",
            "2.5",
            "--buyers",
            "2",
            "--stock",
            "1000000000",
            "--think-ms",
            "2",
        ],
    );
    cmd.env("RACELAB_PROGRESS_INTERVAL", "0.8");
    let (out, both) = interleaved(cmd)?;
    ensure!(out.status.success(), "{both}");
    let result_at = both
        .find("strategy naive on scenario default")
        .context("no result")?;
    let lines: Vec<&str> = both[..result_at]
        .lines()
        .filter(|l| l.starts_with("racelab: racing naive: "))
        .collect();
    ensure!(lines.len() >= 2, "fewer than two progress lines:\n{both}");
    for l in &lines {
        ensure!(
            l.contains(" of 2.5 s, ") && l.contains(" attempts/s, ETA "),
            "a progress line without how far, the rate or the ETA: {l}"
        );
    }
    // --quiet silences it.
    let mut quiet = on(
        "t_out_progress",
        &["run", "--duration", "1", "--buyers", "2", "--quiet"],
    );
    quiet.env("RACELAB_PROGRESS_INTERVAL", "0.2");
    let out = quiet.output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    ensure!(stderr(&out).is_empty(), "--quiet printed: {}", stderr(&out));
    Ok(())
}

/// The shared server's URL with every connection made to wait `secs`
/// after logging in (`post_auth_delay`): buyers that take that long to
/// connect, whatever the machine's speed.
fn slow_to_connect(secs: u32) -> String {
    let sep = if server_url().contains('?') { '&' } else { '?' };
    format!("{}{sep}options=-c%20post_auth_delay%3D{secs}", server_url())
}

fn connecting_and_bars() -> anyhow::Result<()> {
    let url = slow_to_connect(1);
    let race = [
        "run",
        "--buyers",
        "3",
        "--duration",
        "1",
        "--stock",
        "1000000000",
        "--no-save",
        "--schema",
        "t_out_connect",
        "--database-url",
        url.as_str(),
    ];
    // On a pipe: lines while the buyers connect, before the race's.
    let mut cmd = racelab();
    cmd.args(race).env("RACELAB_PROGRESS_INTERVAL", "0.25");
    let out = cmd.output()?;
    let err = stderr(&out);
    ensure!(out.status.success(), "{err}");
    let connecting = err
        .lines()
        .position(|l| {
            l.starts_with("racelab: connecting buyers for naive: ")
                && l.contains(" of 3 connections (")
        })
        .with_context(|| format!("no line while the buyers connect:\n{err}"))?;
    let racing = err
        .lines()
        .position(|l| l.starts_with("racelab: racing naive: "))
        .with_context(|| format!("no line while they race:\n{err}"))?;
    ensure!(connecting < racing, "{err}");

    // On a terminal (a pseudo-terminal from script(1)): bars, redrawn in
    // place, for both steps, and gone before the result is printed.
    let command = std::iter::once(env!("CARGO_BIN_EXE_racelab"))
        .chain(race)
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .output()
        .context("script(1), from util-linux, runs racelab on a terminal")?;
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success(), "{shown}");
    let result_at = shown
        .find("strategy naive on scenario default")
        .with_context(|| format!("no result:\n{shown}"))?;
    let (bars, result) = shown.split_at(result_at);
    for want in [
        "connecting buyers for naive [",
        " of 3 connections (",
        "racing naive [",
        " of 1.0 s, ",
        "attempts/s, ETA ",
    ] {
        ensure!(bars.contains(want), "no {want:?} in the bars:\n{bars}");
    }
    ensure!(
        bars.contains("\r") && bars.contains("\u{1b}["),
        "bars are redrawn in place: {bars:?}"
    );
    ensure!(
        !result.contains("racing naive [") && !result.contains("connecting buyers"),
        "a bar drawn after the result:\n{result}"
    );
    // Each redraw of a bar shows one task: never the new task's name
    // beside the last one's words.
    for frame in bars.split(['\r', '\n']) {
        ensure!(
            !(frame.contains("racing naive [") && frame.contains("connections")),
            "a frame mixes two tasks: {frame:?}"
        );
    }
    Ok(())
}

fn explore_progress() -> anyhow::Result<()> {
    let mut cmd = on(
        "t_out_explore",
        &["explore", "--buyers", "3", "--max-schedules", "40"],
    );
    cmd.env("RACELAB_PROGRESS_INTERVAL", "0.5");
    let out = cmd.output()?;
    let err = stderr(&out);
    ensure!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("racelab: explore naive, 3 buyers, at most 2 preemptions: "))
        .with_context(|| format!("no explore progress line:\n{err}"))?;
    // "N of about M schedules (P%), R schedules/s, ETA T"
    let about = line
        .split("of about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .map(|n| n.replace(',', ""))
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no estimate in: {line}"))?;
    // Three buyers of five statements within two preemptions: 690
    // interleavings when nobody waits; waits prune it, never below the
    // schedules a bound of 2 reaches for three buyers.
    ensure!((100..=1000).contains(&about), "estimate {about}: {line}");
    ensure!(line.contains(" schedules/s, ETA "), "{line}");
    Ok(())
}

fn compare_fits() -> anyhow::Result<()> {
    let out = on(
        "t_out_width",
        &[
            "compare",
            "--strategies",
            "naive,for-update,conditional",
            "--repeat",
            "3",
            "--buyers",
            "20",
            "--quiet",
        ],
    )
    .env("COLUMNS", "100")
    .output()?;
    let text = stdout(&out);
    ensure!(out.status.success(), "{}", stderr(&out));
    for line in text.lines() {
        ensure!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}\n{text}"
        );
    }
    ensure!(text.contains("more with --wide or --json"), "{text}");
    // Without a terminal and without COLUMNS: 100 columns too.
    let list = racelab().arg("list").env_remove("COLUMNS").output()?;
    for line in stdout(&list).lines() {
        ensure!(line.chars().count() <= 100, "list: {line}");
    }
    Ok(())
}

fn list_and_status_json() -> anyhow::Result<()> {
    let schema = schema_validator(include_str!("../../docs/cli.schema.json"))?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("strategies"))?;
    std::fs::create_dir_all(dir.path().join("scenarios"))?;
    std::fs::write(
        dir.path().join("strategies/mine.sql"),
        racelab::strategy::builtins()[1].1,
    )?;
    std::fs::write(
        dir.path().join("strategies/broken.sql"),
        "BEGIN;\n\\if :qty > 1\nCOMMIT;\n",
    )?;
    std::fs::write(
        dir.path().join("scenarios/small.toml"),
        "description = \"Few buyers. Very few.\"\nbuyers = 3\nstock = 2\n",
    )?;
    let out = racelab()
        .args(["list", "--json"])
        .current_dir(dir.path())
        .output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    valid(&schema, &v)?;
    let strategies = v["strategies"].as_array().context("strategies")?;
    let mine = strategies
        .iter()
        .find(|s| s["name"] == "mine")
        .context("no local strategy")?;
    ensure!(text(mine, "source") == "./strategies/mine.sql", "{mine}");
    ensure!(text(mine, "summary").ends_with('.'), "{mine}");
    let broken = strategies.iter().find(|s| s["name"] == "broken");
    ensure!(broken.is_some_and(|b| b["error"].is_string()), "{v}");
    let small = v["scenarios"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "./scenarios/small.toml"))
        .context("no local scenario")?;
    ensure!(text(small, "summary") == "Few buyers.", "{small}");
    ensure!(small["scenario"]["buyers"] == 3, "{small}");

    // No kept cluster: `running: false`, exit 1.
    let state = tempfile::tempdir()?;
    let status = |json: bool| {
        let mut c = racelab();
        c.args(["db", "status"])
            .env("RACELAB_STATE_DIR", state.path());
        if json {
            c.arg("--json");
        }
        c.output()
    };
    let none = status(true)?;
    ensure!(none.status.code() == Some(1), "exit {:?}", none.status);
    let v: Value = serde_json::from_slice(&none.stdout)?;
    valid(&schema, &v)?;
    ensure!(v == serde_json::json!({"running": false}), "{v}");
    ensure!(status(false)?.status.code() == Some(1));
    // A kept cluster: its status, exit 0.
    let start = racelab()
        .args(["db", "start", "--max-connections", "20"])
        .env("RACELAB_STATE_DIR", state.path())
        .output()?;
    ensure!(start.status.success(), "{}", stderr(&start));
    let running = status(true);
    let stop = racelab()
        .args(["db", "stop"])
        .env("RACELAB_STATE_DIR", state.path())
        .output()?;
    let running = running?;
    ensure!(stop.status.success(), "{}", stderr(&stop));
    ensure!(running.status.success(), "{}", stderr(&running));
    let v: Value = serde_json::from_slice(&running.stdout)?;
    valid(&schema, &v)?;
    ensure!(v["running"] == true && v["max_connections"] == 20, "{v}");
    // `db start` prints the URL with the cluster's password (for the
    // owner's programs); status names the same server without it.
    let printed = stdout(&start).trim().to_string();
    let (credentials, server) = printed
        .trim_start_matches("postgresql://")
        .split_once('@')
        .unwrap_or(("", ""));
    let user = credentials.split(':').next().unwrap_or("");
    ensure!(
        text(&v, "url") == format!("postgresql://{user}@{server}"),
        "db start printed {} but status says {v}",
        stdout(&start)
    );
    // The schema is no rubber stamp: a wrong document fails it.
    ensure!(!schema.is_valid(&serde_json::json!({"running": true})));
    Ok(())
}

fn reports_and_baselines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let results = dir.path().join("results");
    let saved = |scenario_args: &[&str]| -> anyhow::Result<std::path::PathBuf> {
        let before: Vec<_> = list_files(&results);
        let mut cmd = racelab();
        cmd.args(["run", "--strategy", "naive", "--quiet"])
            .args(scenario_args)
            .args(["--database-url", server_url(), "--schema", "t_out_report"])
            .arg("--out")
            .arg(&results);
        let out = cmd.output()?;
        ensure!(out.status.success(), "{}", stderr(&out));
        list_files(&results)
            .into_iter()
            .find(|f| !before.contains(f))
            .context("no result saved")
    };
    let default = saved(&["--buyers", "10"])?;
    let hot = saved(&[
        "--scenario",
        "hot-row",
        "--duration",
        "0.5",
        "--buyers",
        "2",
    ])?;

    // One report, two groups, each titled with its own workload.
    let html = dir.path().join("report.html");
    let out = racelab()
        .arg("report")
        .args([&default, &hot])
        .arg("-o")
        .arg(&html)
        .output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    ensure!(stdout(&out).contains("(2 runs)"), "{}", stdout(&out));
    let page = std::fs::read_to_string(&html)?;
    let titles: Vec<&str> = page
        .split("<h2>")
        .skip(1)
        .filter_map(|s| s.split("</h2>").next())
        .collect();
    ensure!(titles.len() == 2, "{titles:?}");
    ensure!(
        titles[0].starts_with("scenario default: 10 buyers x 1 attempt, stock 10"),
        "{titles:?}"
    );
    ensure!(
        titles[1].starts_with("scenario hot-row: 2 buyers for 0.5 s, stock 1000000000"),
        "{titles:?}"
    );
    let one = racelab()
        .arg("report")
        .arg(&default)
        .arg("-o")
        .arg(&html)
        .output()?;
    ensure!(stdout(&one).contains("(1 run)"), "{}", stdout(&one));

    // A baseline of another scenario: refused before anything runs.
    let base = |strategy: &str, file: &Path, more: &[&str]| {
        on(
            "t_out_report",
            &["run", "--strategy", strategy, "--buyers", "10", "--quiet"],
        )
        .arg("--baseline")
        .arg(file)
        .args(more)
        .output()
    };
    let other = base("naive", &hot, &[])?;
    ensure!(other.status.code() == Some(2), "{}", stderr(&other));
    ensure!(
        stderr(&other).contains("its runs are of another workload")
            && stderr(&other).contains("name default, not hot-row"),
        "{}",
        stderr(&other)
    );
    // A strategy the baseline lacks fails the gate, unless allowed.
    let missing = base("for-update", &default, &[])?;
    ensure!(missing.status.code() == Some(1), "{}", stderr(&missing));
    ensure!(
        stderr(&missing).contains("the baseline has no run of for-update"),
        "{}",
        stderr(&missing)
    );
    let allowed = base("for-update", &default, &["--allow-missing"])?;
    ensure!(allowed.status.success(), "{}", stderr(&allowed));
    Ok(())
}

fn list_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn strategy_names() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let builtin = |name: &str| {
        racelab::strategy::builtins()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .expect("a built-in")
    };
    for (path, source) in [
        ("strategies/mine.sql", builtin("for-update")),
        ("a/purchase.sql", builtin("naive")),
        ("b/purchase.sql", builtin("conditional")),
    ] {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder"))?;
        std::fs::write(path, source)?;
    }
    // `--strategy mine` finds ./strategies/mine.sql and says so.
    let out = on(
        "t_out_names",
        &["run", "--strategy", "mine", "--buyers", "5", "--quiet"],
    )
    .current_dir(dir.path())
    .output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    ensure!(
        stdout(&out).starts_with("strategy mine (./strategies/mine.sql) on scenario default"),
        "{}",
        stdout(&out)
    );
    // Two files of one name are named by their paths.
    let out = on(
        "t_out_names",
        &[
            "compare",
            "--strategies",
            "a/purchase.sql,b/purchase.sql",
            "--buyers",
            "5",
            "--quiet",
            "--json",
        ],
    )
    .current_dir(dir.path())
    .output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let names: Vec<&str> = v["summary"]
        .as_array()
        .context("summary")?
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    ensure!(names == ["a/purchase.sql", "b/purchase.sql"], "{names:?}");
    // One file twice, by two paths, is a mistake.
    let out = on(
        "t_out_names",
        &["compare", "--strategies", "a/purchase.sql,./a/purchase.sql"],
    )
    .current_dir(dir.path())
    .output()?;
    ensure!(out.status.code() == Some(2), "{}", stderr(&out));
    ensure!(stderr(&out).contains("is given twice"), "{}", stderr(&out));
    Ok(())
}

fn env_url_and_clean() -> anyhow::Result<()> {
    let schema = "t_out_env";
    let mut cmd = racelab();
    cmd.args(["run", "--buyers", "5", "--no-save", "--schema", schema])
        .env("DATABASE_URL", server_url());
    let out = cmd.output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let first = stderr(&out).lines().next().unwrap_or("").to_string();
    ensure!(
        first.starts_with("racelab: using DATABASE_URL from the environment: postgresql://")
            && first.contains("racelab db clean"),
        "first line: {first}"
    );
    // Given as a flag, it is no surprise.
    let flagged = on(schema, &["run", "--buyers", "5"])
        .env("DATABASE_URL", server_url())
        .output()?;
    ensure!(flagged.status.success(), "{}", stderr(&flagged));
    ensure!(
        !stderr(&flagged).contains("DATABASE_URL"),
        "{}",
        stderr(&flagged)
    );

    // `db clean` drops racelab's schema, saying what it held.
    let clean = |schema: &str| {
        racelab()
            .args([
                "db",
                "clean",
                "--database-url",
                server_url(),
                "--schema",
                schema,
            ])
            .output()
    };
    let out = clean(schema)?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    ensure!(
        said.contains("dropped schema \"t_out_env\" and its tables: ")
            && said.contains("orders (5 rows)")
            && said.contains("products (1 row)"),
        "{said}"
    );
    let left = query_one("SELECT count(*)::text FROM pg_namespace WHERE nspname = 't_out_env'");
    ensure!(left.as_deref() == Some("0"), "the schema is still there");
    let again = clean(schema)?;
    ensure!(again.status.success(), "{}", stderr(&again));
    ensure!(
        stdout(&again).contains("nothing to remove"),
        "{}",
        stdout(&again)
    );
    // A schema racelab did not create is left alone.
    query_one("CREATE SCHEMA IF NOT EXISTS t_out_foreign");
    let foreign = clean("t_out_foreign")?;
    ensure!(!foreign.status.success(), "{}", stdout(&foreign));
    ensure!(
        stderr(&foreign).contains("racelab did not create it"),
        "{}",
        stderr(&foreign)
    );
    let kept = query_one("SELECT count(*)::text FROM pg_namespace WHERE nspname = 't_out_foreign'");
    query_one("DROP SCHEMA t_out_foreign");
    ensure!(kept.as_deref() == Some("1"), "a foreign schema was dropped");
    Ok(())
}

fn watch_summary() -> anyhow::Result<()> {
    let out = on(
        "t_out_watch",
        &["run", "--watch", "2", "--buyers", "20", "--quiet"],
    )
    .output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("watch: "))
        .map(str::to_string)
        .with_context(|| format!("no watch line:\n{}", stdout(&out)))?;
    ensure!(
        line.contains(" every 2 ms; units sold peaked at ")
            && line.contains("against a stock of 10"),
        "{line}"
    );
    // The line says when the units sold first crossed the stock, if they
    // did: naive's lost updates may or may not push them over.
    let peak: u64 = line
        .split("peaked at ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no peak in {line}"))?;
    ensure!(
        (peak > 10) == line.contains(", first above it ")
            && (peak > 10) != line.ends_with(", never above it"),
        "{line}"
    );
    // A safe strategy never crosses it.
    let safe = on(
        "t_out_watch",
        &[
            "run",
            "--strategy",
            "for-update",
            "--watch",
            "2",
            "--buyers",
            "20",
            "--quiet",
        ],
    )
    .output()?;
    ensure!(safe.status.success(), "{}", stderr(&safe));
    ensure!(
        stdout(&safe)
            .lines()
            .any(|l| l.starts_with("watch: ")
                && l.ends_with("against a stock of 10, never above it")),
        "{}",
        stdout(&safe)
    );
    let out = on(
        "t_out_watch",
        &["run", "--watch", "2", "--buyers", "20", "--quiet", "--json"],
    )
    .output()?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let samples = v["watch"]["samples"].as_array().context("no samples")?;
    ensure!(!samples.is_empty(), "{v}");
    // The moment it crossed agrees with the samples kept.
    let over = samples
        .iter()
        .any(|s| s["units_sold"].as_u64().is_some_and(|u| u > 10));
    ensure!(over == v["watch"]["first_oversold_ms"].is_number(), "{v}");
    Ok(())
}

fn help_flags() -> anyhow::Result<()> {
    let help = |args: &[&str]| -> anyhow::Result<String> {
        let out = racelab().args(args).arg("--help").output()?;
        ensure!(out.status.success(), "{}", stderr(&out));
        Ok(stdout(&out))
    };
    let explore = help(&["explore"])?;
    for flag in ["--histogram", "--wide", "--redis-url", "--redis-bin"] {
        ensure!(!explore.contains(flag), "explore --help lists {flag}");
    }
    let serve = help(&["serve"])?;
    ensure!(
        !serve.contains("--redis-url"),
        "serve --help lists --redis-url"
    );
    // http records its requests with --trace (the flows' tests run it),
    // so its help lists the flag and says what it records there.
    let http = help(&["http"])?;
    ensure!(
        http.contains("--trace [<FILE>]") && http.contains("each request for `http`"),
        "{http}"
    );
    let out = racelab()
        .args([
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "1",
            "--buyers",
            "51",
            "--trace",
        ])
        .output()?;
    ensure!(out.status.code() == Some(2), "{}", stderr(&out));
    ensure!(
        stderr(&out).contains("--trace records every request and is for small runs"),
        "http refused --trace for another reason: {}",
        stderr(&out)
    );
    let run = help(&["run"])?;
    ensure!(run.contains("-q, --quiet"), "{run}");
    ensure!(
        run.contains("--quantity") && !run.contains("-q, --quantity"),
        "{run}"
    );
    let out = racelab()
        .args(["run", "-q", "--strategy", "nope"])
        .output()?;
    ensure!(out.status.code() == Some(2), "{}", stderr(&out));
    ensure!(
        stderr(&out).contains("unknown strategy `nope`"),
        "{}",
        stderr(&out)
    );
    Ok(())
}
