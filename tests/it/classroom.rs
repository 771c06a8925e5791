//! `racelab classroom` end to end: the API's guards (the teacher's token,
//! one purchase per student per round, held purchases released together,
//! a page that catches up mid-round), the bots reproducing `compare`'s
//! verdicts for every built-in, and thirty students racing in a real
//! headless Chromium driven through WebDriver (chromedriver), the
//! projector showing OVERSOLD for `naive` and SAFE for `for-update`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use libtest_mimic::Trial;
use serde_json::{json, Value};

use crate::browser::{check_png, stop_child, Browser, Driver};
use crate::cli::racelab;
use crate::common::{block_on, server_url, trial};

pub fn tests() -> Vec<Trial> {
    let browser = Browser::find();
    if browser.is_none() {
        eprintln!(
            "note: classroom::thirty_students_race_in_chromium is skipped: no chromium and chromedriver \
             (install them with `apt-get install chromium chromium-driver`; .ci/run does)"
        );
    }
    vec![
        trial(
            "classroom::replay_runs_explores_counterexample_one_click_at_a_time",
            replay,
        ),
        trial(
            "classroom::teacher_token_one_purchase_held_release_and_catch_up",
            api_guards,
        ),
        trial(
            "classroom::bots_alone_reproduce_the_cli_verdicts",
            bots_verdicts,
        ),
        trial(
            "classroom::bad_arguments_and_the_network_warning",
            arguments,
        ),
        trial("classroom::thirty_students_race_in_chromium", browser_race)
            .with_ignored_flag(browser.is_none() && !ci()),
    ]
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Wait at most this long for any state a test needs.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `racelab classroom` on the shared server.
struct Classroom {
    child: Child,
    base: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Classroom {
    fn start(schema: &str, extra: &[&str]) -> anyhow::Result<Classroom> {
        let dir = tempfile::tempdir()?;
        let err = std::fs::File::create(dir.path().join("stderr.txt"))?;
        let mut child = racelab()
            .args(["classroom", "--port", "0", "--database-url", server_url()])
            .args(["--schema", schema, "--out"])
            .arg(dir.path().join("results"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let second = lines.next().and_then(Result::ok);
            let _ = tx.send((first, second));
            // Keep draining so a chatty stdout never blocks the server.
            for _ in lines {}
        });
        let mut room = Classroom {
            child,
            base: String::new(),
            token: String::new(),
            dir,
        };
        let (first, second) = rx
            .recv_timeout(DEADLINE)
            .map_err(|_| anyhow!("racelab classroom printed no URLs: {}", room.stderr()))?;
        let (Some(projector), Some(join)) = (first, second) else {
            bail!("racelab classroom ended early: {}", room.stderr());
        };
        let (base, token) = projector
            .split_once("/?token=")
            .with_context(|| format!("first line {projector:?} is not the projector URL"))?;
        ensure!(join == format!("{base}/join"), "second line {join:?}");
        ensure!(token.len() == 64, "token {token:?}");
        room.base = base.to_string();
        room.token = token.to_string();
        Ok(room)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default()
    }

    fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    /// SIGTERM, then wait for the exit; returns stderr.
    fn stop(mut self) -> anyhow::Result<String> {
        stop_child(&mut self.child)?;
        Ok(self.stderr())
    }
}

impl Drop for Classroom {
    fn drop(&mut self) {
        let _ = stop_child(&mut self.child);
    }
}

/// An HTTP client for the room's API: a teacher (with the token) or a
/// student (with a cookie).
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

enum Who<'a> {
    Nobody,
    Teacher(&'a str),
    Student(&'a str),
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            base: base.to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: Who<'_>,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut rq = self.http.request(method, format!("{}{path}", self.base));
        match who {
            Who::Nobody => {}
            Who::Teacher(t) => rq = rq.bearer_auth(t),
            Who::Student(c) => rq = rq.header("Cookie", format!("racelab_student={c}")),
        }
        if let Some(b) = body {
            rq = rq
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = rq.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        ensure!(
            text.ends_with('\n') && text.trim_end().lines().count() == 1,
            "{path}: not one line of JSON: {text:?}"
        );
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{path}: not JSON: {text}"))?;
        if status >= 400 {
            ensure!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{path}: {status} without an error line: {v}"
            );
        }
        Ok((status, v))
    }

    async fn state(&self, cookie: Option<&str>) -> anyhow::Result<Value> {
        let who = cookie.map_or(Who::Nobody, Who::Student);
        let (s, v) = self
            .call(reqwest::Method::GET, "/api/state", who, None)
            .await?;
        ensure!(s == 200, "GET /api/state: {s} {v}");
        Ok(v)
    }

    /// A new student: the cookie `GET /join` sets, and a name.
    async fn student(&self, name: &str) -> anyhow::Result<String> {
        let r = self.http.get(format!("{}/join", self.base)).send().await?;
        ensure!(r.status() == 200);
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("racelab_student="))
            .and_then(|v| v.split(';').next())
            .context("GET /join set no racelab_student cookie")?
            .to_string();
        let body = json!({ "name": name }).to_string();
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/api/join",
                Who::Student(&cookie),
                Some(&body),
            )
            .await?;
        ensure!(s == 200 && v["name"] == name, "join: {s} {v}");
        Ok(cookie)
    }

    async fn teacher(&self, token: &str, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(
            reqwest::Method::POST,
            path,
            Who::Teacher(token),
            Some(&body.to_string()),
        )
        .await
    }

    /// Poll `/api/state` until `ok` holds of it; fails with the last state.
    async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let s = self.state(None).await?;
            if ok(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "waited {DEADLINE:?} for {what}; the state is {}",
                    s["round"]
                );
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

fn api_guards() -> anyhow::Result<()> {
    let room = Classroom::start("t_classroom_api", &[])?;
    let api = Api::new(&room.base);
    let token = room.token.clone();
    block_on(async {
        use reqwest::Method as M;
        let s = api.state(None).await?;
        ensure!(s["round"].is_null(), "{s}");
        // Without the token, or with a wrong one: 403, one JSON line.
        let round = r#"{"strategy": "naive", "stock": 1, "countdown_s": 1}"#;
        for who in [Who::Nobody, Who::Teacher("not-the-token")] {
            let (st, _) = api.call(M::POST, "/api/round", who, Some(round)).await?;
            ensure!(st == 403, "start without the token: {st}");
        }
        let (st, _) = api
            .call(M::POST, "/api/bots", Who::Nobody, Some(r#"{"n": 3}"#))
            .await?;
        ensure!(st == 403, "bots without the token: {st}");
        let (st, _) = api
            .call(M::POST, "/api/round/close", Who::Nobody, None)
            .await?;
        ensure!(st == 403, "close without the token: {st}");
        let cookie = api.student("Ada").await?;
        let (st, _) = api
            .call(M::POST, "/api/round", Who::Student(&cookie), Some(round))
            .await?;
        ensure!(st == 403, "a student started a round: {st}");
        // Bad input: one line, the right status.
        for (body, want) in [
            ("{\"strategy\": ", 400),
            (r#"{"strategy": "no-such"}"#, 404),
            (r#"{"strategy": "naive", "stock": -1}"#, 400),
            (r#"{"strategy": "naive", "stok": 1}"#, 400),
            (r#"{"strategy": "naive", "countdown_s": 1e9}"#, 400),
            (r#"{"strategy": "redis-decr"}"#, 400),
        ] {
            let (st, v) = api
                .call(M::POST, "/api/round", Who::Teacher(&token), Some(body))
                .await?;
            ensure!(st == want, "{body}: {st} {v}");
        }
        let (st, v) = api.teacher(&token, "/api/bots", json!({"n": 0})).await?;
        ensure!(st == 400, "0 bots: {st} {v}");
        let (st, _) = api.call(M::POST, "/api/buy", Who::Nobody, None).await?;
        ensure!(st == 403, "a purchase without a cookie: {st}");
        let (st, _) = api
            .call(M::POST, "/api/buy", Who::Student(&cookie), None)
            .await?;
        ensure!(st == 409, "a purchase with no round: {st}");

        // Two students press during the countdown: both are held, then
        // released together, and naive sells the one unit twice.
        let bea = api.student("Bea").await?;
        let (st, v) = api
            .teacher(
                &token,
                "/api/round",
                json!({"strategy": "naive", "stock": 1, "countdown_s": 2, "think_ms": 300}),
            )
            .await?;
        ensure!(
            st == 200 && v["state"] == "countdown" && v["number"] == 1,
            "{st} {v}"
        );
        let left = api.state(None).await?["round"]["remaining_ms"]
            .as_u64()
            .context("remaining_ms")?;
        let sent = Instant::now();
        let (a, b) = tokio::join!(
            api.call(M::POST, "/api/buy", Who::Student(&cookie), None),
            api.call(M::POST, "/api/buy", Who::Student(&bea), None)
        );
        let took = sent.elapsed();
        let (a, b) = (a?, b?);
        ensure!(a.0 == 200 && b.0 == 200, "{a:?} {b:?}");
        for (_, v) in [&a, &b] {
            ensure!(
                v["outcome"] == "succeeded" && v["held"] == true,
                "held purchases both buy: {v}"
            );
        }
        // Sent with `left` ms of countdown to go, answered only after it.
        ensure!(
            took + Duration::from_millis(250) >= Duration::from_millis(left),
            "answered after {took:?}, {left} ms before the countdown's end"
        );
        let s = api.state(None).await?;
        ensure!(s["round"]["state"] == "open", "{}", s["round"]);
        // Both were admitted while the round counted down, and both began
        // after its end: held, then released together.
        let log = s["round"]["attempts_log"].as_array().context("log")?;
        ensure!(log.len() == 2, "{log:?}");
        // A second purchase in the round: 409.
        let (st, v) = api
            .call(M::POST, "/api/buy", Who::Student(&cookie), None)
            .await?;
        ensure!(st == 409, "second purchase: {st} {v}");
        // A page opened now catches up from /api/state: the round, the
        // units sold, and what this student did.
        let late = api.state(Some(&bea)).await?;
        ensure!(late["me"]["name"] == "Bea", "{late}");
        ensure!(late["me"]["purchase"]["outcome"] == "succeeded", "{late}");
        let r = &late["round"];
        ensure!(
            r["number"] == 1 && r["strategy"] == "naive" && r["stock"] == 1 && r["state"] == "open",
            "{r}"
        );
        // The live reading of the lab follows the purchases.
        let live = api
            .wait_for("the live units sold", |s| s["round"]["units_sold"] == 2)
            .await?;
        ensure!(live["round"]["oversold"] == 1, "{}", live["round"]);
        // Another round cannot start while this one is open.
        let (st, _) = api
            .teacher(&token, "/api/round", json!({"strategy": "naive"}))
            .await?;
        ensure!(st == 409, "second round while open: {st}");
        let (st, closed) = api.teacher(&token, "/api/round/close", json!({})).await?;
        ensure!(st == 200, "{closed}");
        ensure!(
            closed["state"] == "closed"
                && closed["verdict"] == "oversold"
                && closed["units_sold"] == 2,
            "{closed}"
        );
        ensure!(
            closed["anomalies"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{closed}"
        );
        ensure!(
            closed["swimlane_svg"]
                .as_str()
                .is_some_and(|s| s.starts_with("<svg")),
            "{closed}"
        );
        let (st, _) = api
            .call(M::POST, "/api/buy", Who::Student(&cookie), None)
            .await?;
        ensure!(st == 409, "a purchase after the close: {st}");
        let (st, _) = api.teacher(&token, "/api/round/close", json!({})).await?;
        ensure!(st == 409, "closing twice: {st}");
        // The round is a normal result: the saved JSON says so, and
        // `racelab report` takes it.
        let file = closed["result_file"].as_str().context("result_file")?;
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        ensure!(
            saved["verdict"] == "oversold" && saved["strategy"]["name"] == "naive",
            "{saved}"
        );
        ensure!(
            saved["audit"]["units_sold"] == 2 && saved["outcomes"]["attempts"] == 2,
            "{saved}"
        );
        let text = std::fs::read_to_string(file)?;
        ensure!(
            !text.contains("Ada") && !text.contains("Bea"),
            "names in the result file"
        );
        ensure!(!text.contains(&token), "the token in the result file");
        Ok(())
    })?;
    let html = room.dir.path().join("report.html");
    let saved: Vec<PathBuf> = std::fs::read_dir(room.results())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    ensure!(saved.len() == 1, "{saved:?}");
    let out = racelab()
        .arg("report")
        .args(&saved)
        .arg("--output")
        .arg(&html)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(std::fs::read_to_string(&html)?.contains("naive"));
    let err = room.stop()?;
    ensure!(err.contains("saved "), "{err}");
    Ok(())
}

/// The teacher asks for naive's counterexample: explore finds it, and
/// each click runs one statement of it, until the lost update is there.
fn replay() -> anyhow::Result<()> {
    let room = Classroom::start("t_classroom_replay", &["--no-save"])?;
    let api = Api::new(&room.base);
    let token = room.token.clone();
    block_on(async {
        let (st, v) = api
            .call(
                reqwest::Method::POST,
                "/api/replay/step",
                Who::Teacher(&token),
                None,
            )
            .await?;
        ensure!(st == 409, "a step with no replay: {st} {v}");
        let (st, v) = api
            .call(
                reqwest::Method::POST,
                "/api/replay",
                Who::Nobody,
                Some("{}"),
            )
            .await?;
        ensure!(st == 403, "a replay without the token: {st} {v}");
        let (st, v) = api
            .teacher(&token, "/api/replay", json!({"strategy": "naive"}))
            .await?;
        ensure!(st == 200 && v["stepping"] == true, "{st} {v}");
        let steps = v["steps"].as_u64().context("steps")?;
        ensure!(steps >= 6, "{v}");
        ensure!(
            v["summary"].as_str().is_some_and(|s| s.contains("unsafe")),
            "{v}"
        );
        // A round cannot take the lab while the replay holds it.
        let (st, _) = api
            .teacher(&token, "/api/round", json!({"strategy": "naive"}))
            .await?;
        ensure!(st == 409, "a round during the replay: {st}");
        let mut last = v;
        for k in 1..=steps {
            let (st, v) = api.teacher(&token, "/api/replay/step", json!({})).await?;
            ensure!(st == 200, "step {k}: {v}");
            ensure!(v["step"] == k || v["done"] == true, "step {k}: {v}");
            last = v;
        }
        let deadline = Instant::now() + DEADLINE;
        while last["done"] != true && Instant::now() < deadline {
            last = api.state(None).await?["replay"].clone();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        ensure!(last["done"] == true, "{last}");
        let summary = last["summary"].as_str().unwrap_or_default();
        ensure!(
            summary.contains("2 sold of 1") && summary.contains("OVERSOLD"),
            "{last}"
        );
        ensure!(
            last["swimlane_svg"]
                .as_str()
                .is_some_and(|s| s.contains("lost:")),
            "{last}"
        );
        // The lab is free again.
        let (st, v) = api
            .teacher(
                &token,
                "/api/round",
                json!({"strategy": "naive", "countdown_s": 0}),
            )
            .await?;
        ensure!(st == 200, "a round after the replay: {v}");
        Ok(())
    })?;
    room.stop()?;
    Ok(())
}

/// Every SQL built-in raced by 20 bots in a classroom round, against the
/// same race by `racelab compare`: the same verdict.
fn bots_verdicts() -> anyhow::Result<()> {
    let room = Classroom::start("t_classroom_bots", &["--no-save"])?;
    let api = Api::new(&room.base);
    let token = room.token.clone();
    let (bots, names) = block_on(async {
        let s = api.state(None).await?;
        let names: Vec<String> = s["strategies"]
            .as_array()
            .context("strategies")?
            .iter()
            .filter(|x| x["redis"] == false)
            .map(|x| x["name"].as_str().unwrap_or_default().to_string())
            .collect();
        ensure!(names.len() >= 10, "{names:?}");
        let (st, v) = api.teacher(&token, "/api/bots", json!({"n": 20})).await?;
        ensure!(st == 200 && v["bots"] == 20, "{v}");
        let mut verdicts = Vec::new();
        for name in &names {
            let ask = json!({"strategy": name, "stock": 1, "countdown_s": 0, "think_ms": 20});
            let (st, v) = api.teacher(&token, "/api/round", ask).await?;
            ensure!(st == 200, "{name}: {v}");
            let number = v["number"].clone();
            api.wait_for(&format!("{name}'s 20 bots"), |s| {
                let r = &s["round"];
                r["number"] == number && r["attempts"] == 20 && r["in_flight"] == 0
            })
            .await?;
            let (st, closed) = api.teacher(&token, "/api/round/close", json!({})).await?;
            ensure!(st == 200, "{closed}");
            verdicts.push(closed["verdict"].as_str().unwrap_or("null").to_string());
        }
        Ok((verdicts, names))
    })?;
    room.stop()?;
    let list = names.join(",");
    let (out, v) = crate::cli::json_on(
        "t_classroom_bots_cli",
        &[
            "compare",
            "--strategies",
            &list,
            "--buyers",
            "20",
            "--stock",
            "1",
            "--think-ms",
            "20",
        ],
    );
    let cli: Vec<(String, String)> = crate::cli::runs(&v)
        .iter()
        .map(|r| {
            (
                crate::cli::text(r, "strategy.name"),
                crate::cli::text(r, "verdict"),
            )
        })
        .collect();
    ensure!(cli.len() == names.len(), "{}", crate::cli::stderr(&out));
    for ((name, cli_verdict), bot_verdict) in cli.iter().zip(&bots) {
        ensure!(
            cli_verdict == bot_verdict,
            "{name}: the CLI says {cli_verdict}, the classroom's bots {bot_verdict}"
        );
    }
    let naive = names.iter().position(|n| n == "naive").context("naive")?;
    ensure!(bots[naive] == "oversold", "{bots:?}");
    let fu = names
        .iter()
        .position(|n| n == "for-update")
        .context("for-update")?;
    ensure!(bots[fu] == "safe", "{bots:?}");
    Ok(())
}

fn arguments() -> anyhow::Result<()> {
    for (args, says) in [
        (vec!["--bind", "not-an-ip"], "--bind"),
        (vec!["--max-buyers", "0"], "--max-buyers"),
        (vec!["--url-host", "a/b"], "--url-host"),
        (vec!["--strategy", "/no/such/file.sql"], "not found"),
    ] {
        let out = racelab().arg("classroom").args(&args).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2),
            "{args:?}: {:?} {err}",
            out.status
        );
        ensure!(
            err.contains(says) && err.trim_end().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let room = Classroom::start("t_classroom_args", &["--bind", "0.0.0.0", "--no-save"])?;
    let port = room.base.rsplit(':').next().unwrap_or_default().to_string();
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    block_on(async { api.state(None).await.map(|_| ()) })?;
    let err = room.stop()?;
    ensure!(
        err.contains("warning") && err.contains("anyone on the network"),
        "{err}"
    );
    Ok(())
}

/// Students: 30 tabs, each on its own host name (`sN.localhost`, which
/// Chromium resolves to this machine) so that each has its own cookie.
const STUDENTS: usize = 30;

fn browser_race() -> anyhow::Result<()> {
    let b = Browser::find().context(
        "chromium and chromedriver are not installed (CI is set, so .ci/run should have installed them)",
    )?;
    // The embedded cluster, as a teacher runs it.
    let dir = tempfile::tempdir()?;
    let err = std::fs::File::create(dir.path().join("stderr.txt"))?;
    let mut child = racelab()
        .args(["classroom", "--port", "0", "--out"])
        .arg(dir.path().join("results"))
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut room = Classroom {
        child,
        base: String::new(),
        token: String::new(),
        dir,
    };
    let mut lines = BufReader::new(stdout).lines();
    let projector = lines.next().context("no projector URL")??;
    let join = lines.next().context("no join URL")??;
    std::thread::spawn(move || for _ in lines {});
    let (base, token) = projector.split_once("/?token=").context("projector URL")?;
    room.base = base.to_string();
    room.token = token.to_string();
    let port = base.rsplit(':').next().context("port")?.to_string();
    ensure!(join.ends_with("/join"));
    let shots = match std::env::var_os("RACELAB_SCREENSHOTS") {
        Some(d) => PathBuf::from(d),
        None => room.dir.path().to_path_buf(),
    };

    block_on(async {
        let d = Driver::start(&b).await?;
        let outcome = race_in(&d, &projector, &port, &shots).await;
        d.quit().await?;
        outcome
    })?;
    room.stop()?;
    Ok(())
}

async fn race_in(d: &Driver, projector: &str, port: &str, shots: &Path) -> anyhow::Result<()> {
    d.window_size(1400, 2000).await?;
    let projector_tab = d
        .cmd(reqwest::Method::GET, "/window", Value::Null)
        .await?
        .as_str()
        .context("window")?
        .to_string();
    d.goto(projector).await?;
    d.wait("the projector's controls", "return !document.getElementById('controls').classList.contains('hidden') && document.getElementById('strategy-select').options.length > 5").await?;
    // The students join, each in a tab of its own.
    let mut tabs = Vec::new();
    for i in 1..=STUDENTS {
        let tab = d.new_tab().await?;
        d.switch(&tab).await?;
        d.goto(&format!("http://s{i}.localhost:{port}/join"))
            .await?;
        d.when(
            "the name form",
            "!document.getElementById('name-form').classList.contains('hidden')",
            &format!("document.getElementById('name').value = 'student {i}'; document.getElementById('join').click()"),
        )
        .await?;
        tabs.push(tab);
    }
    for (i, tab) in tabs.iter().enumerate() {
        d.switch(tab).await?;
        d.when(
            &format!("student {}'s shop", i + 1),
            "!document.getElementById('shop').classList.contains('hidden')",
            "",
        )
        .await?;
    }
    d.switch(&projector_tab).await?;
    d.wait(
        "30 students",
        &format!("return document.getElementById('students').textContent === '{STUDENTS}'"),
    )
    .await?;

    for (strategy, oversold) in [("naive", true), ("for-update", false)] {
        d.switch(&projector_tab).await?;
        // The teacher's controls: strategy, stock 1, a 3 s countdown, and
        // 2 s of think time, so that presses a second or two apart race.
        d.js(&format!(
            "const s = document.getElementById('strategy-select'); s.value = '{strategy}'; \
             s.dispatchEvent(new Event('change')); \
             document.getElementById('stock-input').value = '1'; \
             document.getElementById('countdown-input').value = '3'; \
             document.getElementById('think-input').value = '2000'; return s.value"
        ))
        .await?;
        d.click("#start").await?;
        d.wait("the countdown", &format!("return document.getElementById('strategy-name').textContent === '{strategy}' && ['countdown','open'].includes(document.getElementById('state').textContent)")).await?;
        // Every student presses Buy once it unlocks.
        for (i, tab) in tabs.iter().enumerate() {
            d.switch(tab).await?;
            d.when(
                &format!("student {}'s Buy button", i + 1),
                "!document.getElementById('buy').disabled",
                "document.getElementById('buy').click()",
            )
            .await?;
        }
        if oversold {
            // A projector opened now, without the token, catches up from
            // /api/state: the round, its purchases, and no controls.
            let late = d.new_tab().await?;
            d.switch(&late).await?;
            d.goto(&format!("http://127.0.0.1:{port}/")).await?;
            d.when(
                "the late projector to catch up",
                "document.getElementById('round-number').textContent === '1' \
                 && document.getElementById('strategy-name').textContent === 'naive' \
                 && document.getElementById('attempts').children.length > 0 \
                 && document.getElementById('controls').classList.contains('hidden')",
                "",
            )
            .await?;
            d.cmd(reqwest::Method::DELETE, "/window", Value::Null)
                .await?;
        }
        // What the students see: their own outcome.
        for (i, tab) in tabs.iter().enumerate().step_by(7) {
            d.switch(tab).await?;
            d.when(
                &format!("student {}'s outcome", i + 1),
                "['You bought it', 'Sold out'].some((w) => document.getElementById('outcome').textContent.startsWith(w))",
                "",
            )
            .await?;
        }
        d.switch(&projector_tab).await?;
        d.wait(
            "every purchase on the projector",
            &format!("return document.getElementById('attempts').children.length === {STUDENTS}"),
        )
        .await?;
        d.click("#close").await?;
        let word = if oversold { "OVERSOLD" } else { "SAFE" };
        d.wait(
            &format!("the verdict {word}"),
            &format!("return document.getElementById('verdict').textContent === '{word}'"),
        )
        .await?;
        let sold: i64 = d
            .js("return document.getElementById('units-sold').textContent")
            .await?
            .as_str()
            .unwrap_or_default()
            .parse()?;
        if oversold {
            ensure!(sold > 1, "naive sold {sold} of 1");
            d.wait("the swim-lane", "return document.querySelector('#swimlane svg') !== null && document.getElementById('explanation').textContent.includes('Lost update')").await?;
        } else {
            ensure!(sold == 1, "for-update sold {sold} of 1");
        }
        // The projector and one student's phone, after the round.
        let shot = shots.join(format!("classroom-projector-{strategy}.png"));
        d.screenshot(&shot).await?;
        check_png(&shot)?;
        d.switch(&tabs[0]).await?;
        let text = d
            .js("return document.getElementById('outcome').textContent")
            .await?;
        let text = text.as_str().unwrap_or_default();
        if oversold {
            // The first to press bought it, and so did the others the
            // projector counted.
            let others = sold - 1;
            let want = format!(
                "You bought it — and so did {others} other{}!",
                if others == 1 { "" } else { "s" }
            );
            ensure!(text == want, "student 1 sees {text:?} after {sold} sold");
            // A phone: no sideways scrolling on the student page.
            d.window_size(390, 844).await?;
            d.wait(
                "no horizontal scroll at phone width",
                "return document.documentElement.scrollWidth <= window.innerWidth",
            )
            .await?;
            let shot = shots.join("classroom-student.png");
            d.screenshot(&shot).await?;
            check_png(&shot)?;
            d.window_size(1400, 2000).await?;
        } else {
            ensure!(
                text.contains("bought it") || text.contains("Sold out"),
                "{text}"
            );
        }
    }
    Ok(())
}
