//! `racelab http --flow` against a shop of our own (Python, the SQLAlchemy
//! ORM on the shared PostgreSQL server, tests/services/shop-py): logins
//! with a bearer token or a session cookie, a cart filled before the raced
//! checkout, a single-use voucher, two endpoints raced at once. Each is
//! raced unsafe (oversold in every one of 5 runs at 50 buyers) and safe
//! (exact), and the shop's own records are held against racelab's counts.
//! The shop is started once for the binary and stopped by `stop_shop`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test("http_flows::bearer_login_cart_then_raced_checkout", bearer),
        Trial::test("http_flows::session_cookie_only", cookie),
        Trial::test("http_flows::single_use_voucher_applied_at_once", voucher),
        Trial::test("http_flows::two_endpoints_raced_at_once", two_endpoints),
        Trial::test(
            "http_flows::credentials_reach_no_file_and_trace_works",
            secrets,
        ),
        Trial::test(
            "http_flows::failed_logins_put_buyers_out_counted",
            setup_failures,
        ),
        Trial::test(
            "http_flows::bad_flows_exit_2_naming_step_and_key",
            bad_flows,
        ),
    ]
}

/// The shop process, shared by every test of the binary.
struct Shop {
    child: Mutex<Option<Child>>,
    base: String,
}

static SHOP: OnceLock<Result<Shop, String>> = OnceLock::new();

fn shop() -> Result<&'static Shop, Failed> {
    SHOP.get_or_init(start_shop)
        .as_ref()
        .map_err(|e| Failed::from(e.clone()))
}

fn start_shop() -> Result<Shop, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/shop-py/shop.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .env("DATABASE_URL", crate::common::server_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not start python3 {}: {e}", script.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the shop did not say where it listens within 60 s".into());
        }
    };
    let Some(base) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "the shop did not start (is SQLAlchemy with psycopg installed? .ci/run installs \
             them): {line:?}"
        ));
    };
    Ok(Shop {
        base: base.to_string(),
        child: Mutex::new(Some(child)),
    })
}

/// Stop the shop if it was started: close its standard input (it drops
/// its schema and exits), and wait for it with a deadline.
pub fn stop_shop() {
    let Some(Ok(shop)) = SHOP.get() else { return };
    let Some(mut child) = shop.child.lock().unwrap().take() else {
        return;
    };
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("error: the shop did not exit within 20 s of its input closing; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

impl Shop {
    fn url(&self, shop: &str, path: &str) -> String {
        format!("{}/s/{shop}{path}", self.base)
    }

    /// GET a JSON document of the shop (its own records).
    fn get(&self, shop: &str, path: &str) -> Value {
        let url = self.url(shop, path);
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = std::net::TcpStream::connect(host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
    }
}

/// Users user1..user60 of `shop`, their passwords as the shop sets them.
fn password(shop: &str, i: u32) -> String {
    format!("pw-{shop}-{i}-s3cret")
}

fn users_csv(dir: &Path, shop: &str, wrong: &[u32]) -> String {
    let mut text = "user,password\n".to_string();
    for i in 1..=60 {
        let pw = if wrong.contains(&i) {
            format!("wrong-{i}-s3cret")
        } else {
            password(shop, i)
        };
        text.push_str(&format!("user{i},{pw}\n"));
    }
    let path = dir.join("users.csv");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const LOGIN: &str = r#"
[[step]]
name = "login"
request = "POST /login"
body = '{"user": "{{user}}", "password": "{{password}}"}'
extract = { token = "json .token" }
expect = [200]
"#;

const BEARER_CART_CHECKOUT: &str = r#"
[[step]]
name = "cart"
request = "POST /cart/items"
headers = { Authorization = "Bearer {{token}}", "Content-Type" = "application/json" }
body = '{"product": {{product}}, "qty": {{qty}}}'

[[step]]
name = "checkout"
race = true
request = "POST /checkout"
headers = { Authorization = "Bearer {{token}}" }
success = [201]
sold_out = [409]
"#;

/// `racelab http <base> <args> --json --no-save --quiet`.
fn race(base: &str, args: &[&str]) -> (Output, Value) {
    let out = racelab()
        .arg("http")
        .arg(base)
        .args(args)
        .args(["--json", "--no-save", "--quiet"])
        .output()
        .expect("racelab runs");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "racelab http {args:?} printed no JSON ({e}); exit {:?}\nstderr: {}",
            out.status.code(),
            stderr(&out)
        )
    });
    (out, v)
}

/// What every race of the shop passes: its users, its reset, its truth.
struct Setup {
    dir: tempfile::TempDir,
    users: String,
    base: String,
    name: String,
    /// More of the reset's query (e.g. `&auth=cookie`).
    reset: &'static str,
}

fn setup(name: &str, wrong: &[u32]) -> Result<Setup, Failed> {
    let s = shop()?;
    let dir = tempfile::tempdir()?;
    let users = users_csv(dir.path(), name, wrong);
    Ok(Setup {
        users,
        base: s.url(name, ""),
        name: name.to_string(),
        dir,
        reset: "",
    })
}

impl Setup {
    fn flow(&self, text: &str) -> String {
        write(self.dir.path(), "flow.toml", text)
    }

    /// Race `flow` `repeat` times at 50 buyers against a shop reset to
    /// `stock` (safe or not), the truth read from `truth`.
    fn race(
        &self,
        flow: &str,
        reset: &str,
        truth: &[&str],
        repeat: u32,
        expect: &str,
        extra: &[&str],
    ) -> (Output, Value) {
        let reset = format!("{}/reset?{reset}{}", self.base, self.reset);
        let repeat = repeat.to_string();
        let mut args = vec![
            "--flow",
            flow,
            "--users",
            &self.users,
            "--buyers",
            "50",
            "--reset-url",
            &reset,
            "--repeat",
            &repeat,
            "--expect",
            expect,
        ];
        args.extend_from_slice(truth);
        args.extend_from_slice(extra);
        race(&self.base, &args)
    }

    fn records(&self, path: &str) -> Value {
        shop().unwrap().get(&self.name, path)
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// Unsafe: oversold in every one of 5 runs; safe: exactly the stock; the
/// shop's orders are racelab's successes.
fn unsafe_and_safe(s: &Setup, flow: &str, extra: &[&str]) -> Result<Value, Failed> {
    let truth = [
        "--stock-url",
        &format!("{}/stock", s.base),
        "--sold-json-path",
        ".sold",
    ]
    .map(String::from);
    let truth: Vec<&str> = truth.iter().map(String::as_str).collect();
    let (out, v) = s.race(flow, "stock=10&safe=0", &truth, 5, "oversold", extra);
    let runs = runs(&v);
    check(out.status.code() == Some(0) && runs.len() == 5, || {
        format!(
            "unsafe: exit {:?}, {} runs: {}",
            out.status.code(),
            runs.len(),
            stderr(&out)
        )
    })?;
    for r in &runs {
        check(
            text(r, "verdict") == "oversold" && int(r, "audit.oversold_units") > 0,
            || format!("unsafe run not oversold: {r}"),
        )?;
    }
    let last = runs.last().unwrap();
    let records = s.records("/stock");
    check(
        records["orders"].as_i64() == Some(int(last, "outcomes.succeeded")),
        || {
            format!(
                "the shop's orders {records} against racelab's successes {}",
                last["outcomes"]
            )
        },
    )?;
    let (out, v) = s.race(flow, "stock=10&safe=1", &truth, 1, "safe", extra);
    let r = &runs_of(&v)[0];
    check(
        out.status.code() == Some(0) && text(r, "verdict") == "safe",
        || format!("safe: exit {:?}: {r}\n{}", out.status.code(), stderr(&out)),
    )?;
    let records = s.records("/stock");
    check(
        int(r, "outcomes.succeeded") == 10
            && int(r, "audit.units_sold") == 10
            && records["orders"] == 10
            && records["stock"] == 0,
        || format!("safe: not exact: {} / records {records}", r["outcomes"]),
    )?;
    Ok(r.clone())
}

fn runs_of(v: &Value) -> Vec<Value> {
    runs(v)
}

fn bearer() -> Result<(), Failed> {
    let s = setup("bearer", &[])?;
    let flow = s.flow(&format!("{LOGIN}{BEARER_CART_CHECKOUT}"));
    let r = unsafe_and_safe(&s, &flow, &[])?;
    // Every buyer logged in, filled its cart, and checked out.
    let steps = &r["target"]["flow"]["steps"];
    for (i, (name, code)) in [("login", "200"), ("cart", "201")].iter().enumerate() {
        check(
            steps[i]["name"] == *name && steps[i]["by_status"][code] == 50,
            || format!("step {name}: {}", steps[i]),
        )?;
    }
    check(
        steps[2]["by_status"]["201"] == 10 && steps[2]["by_status"]["409"] == 40,
        || format!("checkout: {}", steps[2]),
    )
}

fn cookie() -> Result<(), Failed> {
    let mut s = setup("cookie", &[])?;
    s.reset = "&auth=cookie";
    // No Authorization anywhere: the session cookie of the login is all.
    let flow = s.flow(&format!(
        "{}\n{}",
        LOGIN.replace("extract = { token = \"json .token\" }\n", ""),
        BEARER_CART_CHECKOUT
            .replace("Authorization = \"Bearer {{token}}\", ", "")
            .replace("headers = { Authorization = \"Bearer {{token}}\" }\n", "")
    ));
    unsafe_and_safe(&s, &flow, &[])?;
    // The same flow without a cookie jar is refused at the cart: the
    // buyers are out of the race, counted, and the run is inconclusive.
    let reset = format!("{}/reset?stock=10&safe=1&auth=cookie", s.base);
    let stock = format!("{}/stock", s.base);
    let (out, v) = race(
        &s.base,
        &[
            "--flow",
            &flow,
            "--users",
            &s.users,
            "--buyers",
            "5",
            "--reset-url",
            &reset,
            "--stock-url",
            &stock,
            "--no-cookies",
            "--expect",
            "safe",
        ],
    );
    let f = &v["target"]["flow"];
    check(
        out.status.code() == Some(1)
            && v["verdict"] == "inconclusive"
            && f["out_of_race"] == 5
            && f["setup_failures"][0]["step"] == "cart"
            && f["setup_failures"][0]["status"] == "401",
        || format!("--no-cookies: exit {:?}: {v}", out.status.code()),
    )
}

const VOUCHER: &str = r#"
[[step]]
name = "apply"
race = true
request = "POST /voucher/apply"
headers = { Authorization = "Bearer {{token}}" }
body = '{"code": "{{code}}"}'
success = [200]
sold_out = [409]

[vars]
code = "SAVE10"
"#;

fn voucher() -> Result<(), Failed> {
    let s = setup("voucher", &[])?;
    let flow = s.flow(&format!("{LOGIN}{VOUCHER}"));
    let url = format!("{}/voucher", s.base);
    // The truth: uses left as an expression over the voucher endpoint.
    let truth = [
        "--stock-url",
        url.as_str(),
        "--stock-json-path",
        ".limit - .redemptions",
        "--sold-json-path",
        ".redemptions",
    ];
    let (out, v) = s.race(&flow, "safe=0", &truth, 5, "oversold", &[]);
    let rs = runs(&v);
    check(out.status.code() == Some(0) && rs.len() == 5, || {
        format!("unsafe: {}", stderr(&out))
    })?;
    for r in &rs {
        check(
            int(r, "audit.units_sold") > 1 && text(r, "verdict") == "oversold",
            || {
                format!(
                    "the voucher was not redeemed more than once: {}",
                    r["audit"]
                )
            },
        )?;
    }
    let records = s.records("/voucher");
    check(
        records["redemptions"].as_i64() == Some(int(rs.last().unwrap(), "outcomes.succeeded")),
        || format!("the shop's redemptions {records} against racelab's successes"),
    )?;
    let (out, v) = s.race(&flow, "safe=1", &truth, 1, "safe", &[]);
    let records = s.records("/voucher");
    check(
        out.status.code() == Some(0)
            && v["verdict"] == "safe"
            && int(&v, "outcomes.succeeded") == 1
            && int(&v, "outcomes.sold_out") == 49
            && records["redemptions"] == 1,
        || format!("safe voucher: {}; records {records}", v["outcomes"]),
    )
}

const TWO_ENDPOINTS: &str = r#"
[[step]]
name = "cart"
request = "POST /cart/items"
headers = { Authorization = "Bearer {{token}}" }
body = '{"product": 1, "qty": {{qty}}}'
buyers = "odd"

[[step]]
name = "checkout"
request = "POST /checkout"
headers = { Authorization = "Bearer {{token}}" }
buyers = "odd"
success = [201]

[[step]]
name = "buy-now"
request = "POST /buy-now"
headers = { Authorization = "Bearer {{token}}" }
body = '{"qty": {{qty}}}'
buyers = "even"
success = [201]

[[race]]
steps = ["checkout", "buy-now"]
"#;

fn two_endpoints() -> Result<(), Failed> {
    let s = setup("twoends", &[])?;
    let flow = s.flow(&format!("{LOGIN}{TWO_ENDPOINTS}"));
    let r = unsafe_and_safe(&s, &flow, &[])?;
    let steps = &r["target"]["flow"]["steps"];
    check(
        steps[2]["phase"] == "race" && steps[3]["phase"] == "race",
        || format!("{steps}"),
    )?;
    check(
        steps[2]["requests"] == 25 && steps[3]["requests"] == 25,
        || format!("each endpoint raced by its half of the buyers: {steps}"),
    )?;
    // Released together: within a few milliseconds, every buyer in flight.
    check(int(&r, "contention.peak_in_flight") >= 40, || {
        format!("{}", r["contention"])
    })?;
    let records = s.records("/stock");
    let via = &records["by_via"];
    check(
        via["checkout"].as_i64().unwrap_or(0) + via["buy-now"].as_i64().unwrap_or(0) == 10,
        || format!("the shop sold through both endpoints: {records}"),
    )
}

fn secrets() -> Result<(), Failed> {
    let s = setup("secrets", &[4])?;
    // The cart is filled before each attempt's checkout.
    let flow = s.flow(
        &format!("{LOGIN}{BEARER_CART_CHECKOUT}")
            .replace("name = \"cart\"\n", "name = \"cart\"\nevery = true\n"),
    );
    let out_dir = s.dir.path().join("results");
    let trace = s.dir.path().join("trace.jsonl");
    let junit = s.dir.path().join("junit.xml");
    let reset = format!("{}/reset?stock=3&safe=1", s.base);
    let stock = format!("{}/stock", s.base);
    // Not quiet, saved, traced, JUnit: every place racelab writes. Buyer
    // 4's password is wrong, so a failure is reported too.
    let out = racelab()
        .args([
            "http", &s.base, "--flow", &flow, "--users", &s.users, "--buyers", "8",
        ])
        .args([
            "--attempts",
            "2",
            "--reset-url",
            &reset,
            "--stock-url",
            &stock,
        ])
        .args(["--max-setup-failures", "1", "--expect", "safe", "--out"])
        .arg(&out_dir)
        .arg("--trace")
        .arg(&trace)
        .arg("--junit")
        .arg(&junit)
        .output()?;
    let mut written = vec![
        ("stdout".to_string(), stdout(&out)),
        ("stderr".to_string(), stderr(&out)),
        ("trace".to_string(), std::fs::read_to_string(&trace)?),
        ("junit".to_string(), std::fs::read_to_string(&junit)?),
    ];
    for e in std::fs::read_dir(&out_dir)? {
        let p = e?.path();
        written.push((p.display().to_string(), std::fs::read_to_string(&p)?));
    }
    check(out.status.code() == Some(0) && written.len() == 5, || {
        format!("exit {:?}: {}", out.status.code(), stderr(&out))
    })?;
    for (what, text) in &written {
        for i in 1..=8 {
            let pw = password("secrets", i);
            check(!text.contains(&pw), || {
                format!("{what} holds the password of user{i}")
            })?;
        }
        check(!text.contains("s3cret") && !text.contains("Bearer"), || {
            format!("{what} holds a credential: {text}")
        })?;
    }
    // The trace has every buyer's requests: step, path, status, time.
    let events: Vec<Value> = written[2]
        .1
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |step: &str, status: &str| {
        events
            .iter()
            .filter(|e| e["values"]["step"] == step && e["values"]["status"] == status)
            .count()
    };
    check(
        count("login", "200") == 7 && count("login", "401") == 1 && count("cart", "201") == 14,
        || format!("trace: {events:?}"),
    )?;
    check(
        count("checkout", "201") + count("checkout", "409") == 14,
        || format!("two checkouts per buyer in the race: {events:?}"),
    )?;
    check(
        events.iter().all(|e| {
            e["kind"] == "http" && e["what"].as_str().unwrap().starts_with("POST /s/secrets/")
        }),
        || format!("{events:?}"),
    )
}

fn setup_failures() -> Result<(), Failed> {
    let s = setup("setupfail", &[3, 7])?;
    let flow = s.flow(&format!("{LOGIN}{BEARER_CART_CHECKOUT}"));
    let stock = format!("{}/stock", s.base);
    let truth = ["--stock-url", stock.as_str()];
    // Two buyers cannot log in: by default the run is inconclusive, and
    // says which step failed for whom.
    let (out, v) = s.race(&flow, "stock=10&safe=1", &truth, 1, "safe", &[]);
    let f = &v["target"]["flow"];
    check(
        out.status.code() == Some(1)
            && v["verdict"] == "inconclusive"
            && f["out_of_race"] == 2
            && f["setup_failures"][0]["step"] == "login"
            && f["setup_failures"][0]["status"] == "401"
            && f["setup_failures"][0]["buyers"] == 2,
        || format!("exit {:?}: {v}", out.status.code()),
    )?;
    check(
        stderr(&out).contains("out of the race") && stderr(&out).contains("\"login\""),
        || stderr(&out),
    )?;
    // Allowed: the other 48 race, and only their attempts are counted.
    let (out, v) = s.race(
        &flow,
        "stock=10&safe=1",
        &truth,
        1,
        "safe",
        &["--max-setup-failures", "2"],
    );
    check(
        out.status.code() == Some(0)
            && v["verdict"] == "safe"
            && int(&v, "outcomes.attempts") == 48,
        || format!("exit {:?}: {}", out.status.code(), v["outcomes"]),
    )?;
    // An extraction that finds nothing puts the buyer out, naming the key.
    let typo =
        s.flow(&format!("{LOGIN}{BEARER_CART_CHECKOUT}").replace("json .token", "json .tokn"));
    let (out, v) = s.race(&typo, "stock=10&safe=1", &truth, 1, "safe", &[]);
    let failure = &v["target"]["flow"]["setup_failures"][0];
    check(
        out.status.code() == Some(1)
            && v["verdict"] == "inconclusive"
            && v["target"]["flow"]["out_of_race"] == 50
            && failure["buyers"] == 48
            && failure["step"] == "login"
            && failure["message"]
                .as_str()
                .unwrap_or("")
                .contains("extract.token: nothing found"),
        || format!("exit {:?}: {v}", out.status.code()),
    )
}

fn bad_flows() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let users = users_csv(dir.path(), "bad", &[]);
    let base = "http://127.0.0.1:9/s/bad";
    let shop_flow = format!("{LOGIN}{BEARER_CART_CHECKOUT}");
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            shop_flow.replace("{{token}}\", \"Content-Type\"", "{{tokn}}\", \"Content-Type\""),
            vec![],
            "step \"cart\", headers.Authorization: unknown variable {{tokn}}; did you mean {{token}}?",
        ),
        (
            shop_flow.replace("expect = [200]", "expct = [200]"),
            vec![],
            "step \"login\": unknown key `expct`; did you mean `expect`?",
        ),
        (
            shop_flow.replace("request = \"POST /cart/items\"\n", ""),
            vec![],
            "step \"cart\" has no `request`",
        ),
        (shop_flow.replace("race = true\n", ""), vec![], "no race step"),
        (
            shop_flow.clone(),
            vec!["-H", "X-Trace: {{tracer}}"],
            "--header x-trace: unknown variable {{tracer}}",
        ),
        (shop_flow.clone(), vec!["--buyers", "61"], "--users has 60 users for 61 buyers"),
        (
            shop_flow.replace("race = true\n", "race = true\nevery = true\n"),
            vec![],
            "step \"checkout\", every: the race step runs every attempt already",
        ),
        (shop_flow.clone(), vec!["--body", "{}"], "--body is the request of the flags"),
    ];
    for (text, extra, want) in cases {
        let flow = write(dir.path(), "bad.toml", &text);
        let mut args = vec![
            "http", base, "--flow", &flow, "--users", &users, "--stock", "1",
        ];
        args.extend(extra);
        let out = racelab().args(&args).output()?;
        check(
            out.status.code() == Some(2) && stderr(&out).contains(want),
            || format!("{want}: exit {:?}: {}", out.status.code(), stderr(&out)),
        )?;
        check(stderr(&out).lines().count() == 1, || {
            format!("one line: {}", stderr(&out))
        })?;
    }
    // Templates in the URL and headers of the flags' request are checked too.
    for (args, want) in [
        (
            vec!["http://127.0.0.1:9/buy/{{buyr}}", "--stock", "1"],
            "the target URL: unknown variable {{buyr}}",
        ),
        (
            vec![
                "http://127.0.0.1:9/buy",
                "--stock",
                "1",
                "-H",
                "Authorization: Bearer {{token}}",
            ],
            "--header authorization: unknown variable {{token}}",
        ),
    ] {
        let mut all = vec!["http"];
        all.extend(args);
        let out = racelab().args(&all).output()?;
        check(
            out.status.code() == Some(2) && stderr(&out).contains(want),
            || format!("{want}: {}", stderr(&out)),
        )?;
    }
    // With --users-cycle, 61 buyers share 60 users: the plan is accepted
    // (it then finds no service at this port: exit 3).
    let flow = write(dir.path(), "ok.toml", &shop_flow);
    let out = racelab()
        .args([
            "http",
            base,
            "--flow",
            &flow,
            "--users",
            &users,
            "--users-cycle",
            "--buyers",
            "61",
            "--stock",
            "1",
        ])
        .output()?;
    check(out.status.code() == Some(3), || {
        format!("{:?}: {}", out.status.code(), stderr(&out))
    })
}
