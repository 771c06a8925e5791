//! `racelab http URL`: race concurrent purchase requests against a real
//! service with the same engine, tallies, histograms, result JSON, repeat,
//! `--expect` and JUnit as `run`, and audit it against the truest source
//! the user gives (see `truth`).
//!
//! - `args`: the clap types of `http` and `serve`.
//! - `template`: the request body template.
//! - `lane`: the engine's HTTP lane (one request per attempt).
//! - `h1`: a buyer's own HTTP/1.1 connection to an `http://` target.
//! - `truth`: readings, resets and the audit arithmetic.
//! - `report`: the headline of an HTTP run.

pub mod args;
pub mod h1;
pub mod lane;
pub mod report;
pub mod template;
pub mod truth;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};

use crate::cli::{Expect, ScenarioArgs};
use crate::engine::{self, Control, ProductPicker, RaceConfig, Stop};
use crate::error::{bad_input, Interrupted};
use crate::plan::{Output, MAX_REPEAT};
use crate::report::result::{
    DatabaseInfo, Outcomes, RaceRecord, ScenarioInfo, Summary, TargetInfo,
};
use crate::report::{save, RunResult, Status};
use crate::scenario::Scenario;
use args::HttpArgs;
use lane::{HttpLanes, StatusMap};
use template::Template;
use truth::{Reading, ServiceDb, Source};

/// A validated `racelab http` invocation.
#[derive(Debug)]
pub struct HttpPlan {
    pub lanes: Arc<HttpLanes>,
    pub scenario: Scenario,
    pub seed: u64,
    pub source: Source,
    pub declared_stock: Option<i64>,
    pub db: Option<ServiceDb>,
    pub reset_url: Option<Url>,
    pub reset_sql: Option<String>,
    pub repeat: u32,
    pub expect: Option<Expect>,
    pub output: Output,
}

pub fn main(args: &HttpArgs) -> anyhow::Result<()> {
    let plan = HttpPlan::build(args)?;
    let control = Control::new();
    let results = crate::app::until_signal(&control, execute(&plan, control.clone()))?;
    crate::app::print_results(&results, &plan.output, plan.repeat > 1);
    crate::app::conclude(&results, &plan.output, plan.expect, &control)
}

fn parse_url(flag: &str, text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).map_err(|e| {
        bad_input(format!(
            "{flag} {text:?} is not a URL ({e}): expected e.g. http://127.0.0.1:8080/purchase"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_input(format!(
            "{flag} must start with http:// or https://, got {}://",
            url.scheme()
        )));
    }
    Ok(url)
}

fn check_codes(flag: &str, codes: &[u16]) -> anyhow::Result<()> {
    match codes.iter().find(|c| !(100..=599).contains(*c)) {
        Some(c) => Err(bad_input(format!(
            "{flag}: {c} is not an HTTP status code (100-599)"
        ))),
        None => Ok(()),
    }
}

impl HttpPlan {
    pub fn build(a: &HttpArgs) -> anyhow::Result<HttpPlan> {
        let url = parse_url("the target URL", &a.url)?;
        let method = Method::from_bytes(a.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| bad_input(format!("--method {:?} is not an HTTP method", a.method)))?;

        let mut headers = HeaderMap::new();
        for h in &a.headers {
            let Some((k, v)) = h.split_once(':') else {
                return Err(bad_input(format!("--header {h:?}: expected `Name: value`")));
            };
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| bad_input(format!("--header {h:?}: {k:?} is not a header name")))?;
            let value = HeaderValue::from_str(v.trim()).map_err(|_| {
                bad_input(format!(
                    "--header {h:?}: the value is not valid in a header"
                ))
            })?;
            headers.append(name, value);
        }
        let body = a.body.as_deref().map(Template::parse).transpose()?;
        if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let buyer_name = match &a.buyer_name {
            None => (String::new(), String::new()),
            Some(p) => match p.split_once("{n}") {
                Some((pre, post)) => (pre.to_string(), post.to_string()),
                None => {
                    return Err(bad_input(format!(
                        "--buyer-name {p:?} has no {{n}} (where the buyer's number goes), e.g. 'user-{{n}}'"
                    )))
                }
            },
        };

        for (flag, codes) in [
            ("--success", &a.success),
            ("--sold-out", &a.sold_out),
            ("--rejected", &a.rejected),
        ] {
            check_codes(flag, codes)?;
        }
        let lists = [
            ("--success", &a.success),
            ("--sold-out", &a.sold_out),
            ("--rejected", &a.rejected),
        ];
        for (i, (fa, ca)) in lists.iter().enumerate() {
            for (fb, cb) in &lists[i + 1..] {
                if let Some(c) = ca.iter().find(|c| cb.contains(c)) {
                    return Err(bad_input(format!(
                        "status {c} is in both {fa} and {fb}; give each code one meaning"
                    )));
                }
            }
            if a.success.is_empty() && *fa != "--success" {
                if let Some(c) = ca.iter().find(|c| (200..300).contains(*c)) {
                    return Err(bad_input(format!(
                        "status {c} is in {fa} but every 2xx means success by default; \
                         list the success codes with --success"
                    )));
                }
            }
        }

        let scenario = Scenario::load("default")?.with_overrides(&ScenarioArgs {
            buyers: a.buyers,
            attempts: a.attempts,
            quantity: a.quantity,
            products: a.products,
            skew: a.skew,
            duration: a.duration,
            think_ms: Some(0),
            ..ScenarioArgs::default()
        })?;
        let mut scenario = scenario;
        scenario.name = "http".into();
        scenario.description = format!("{method} {}", shown(&url));

        if let Some(n) = a.stock {
            if n < 0 {
                return Err(bad_input(format!("--stock must be 0 or more, got {n}")));
            }
        }
        let connect_timeout = a.connect_timeout;
        if !(connect_timeout.is_finite() && connect_timeout > 0.0 && connect_timeout <= 3600.0) {
            return Err(bad_input(format!(
                "--connect-timeout must be between 0 and 3600 seconds, got {connect_timeout}"
            )));
        }
        let db = match (&a.verify_sql, &a.reset_sql, &a.database_url) {
            (None, None, _) => None,
            (_, _, Some(url)) => Some(ServiceDb::new(
                url,
                Duration::from_secs_f64(connect_timeout),
            )?),
            (_, _, None) => {
                return Err(bad_input(
                    "--verify-sql and --reset-sql need --database-url (or DATABASE_URL): the service's database",
                ))
            }
        };
        let source = if let Some(sql) = &a.verify_sql {
            if sql.trim().is_empty() {
                return Err(bad_input(
                    "--verify-sql is empty: give a SELECT returning `stock`",
                ));
            }
            Source::Sql { sql: sql.clone() }
        } else if let Some(u) = &a.stock_url {
            Source::StockUrl {
                url: parse_url("--stock-url", u)?,
                path: truth::JsonPath::parse(&a.stock_json_path)?,
            }
        } else if a.stock.is_some() {
            Source::Belief
        } else {
            return Err(bad_input(
                "racelab http needs the stock to audit against: --verify-sql SQL --database-url URL \
                 (the service's database), --stock-url URL (its stock endpoint), or --stock N \
                 (the initial stock, checked against the successes racelab counts)",
            ));
        };
        let reset_url = a
            .reset_url
            .as_deref()
            .map(|u| parse_url("--reset-url", u))
            .transpose()?;
        if a.repeat == 0 || a.repeat > MAX_REPEAT {
            return Err(bad_input(format!(
                "--repeat must be between 1 and {MAX_REPEAT}, got {}",
                a.repeat
            )));
        }
        let output = Output::from_args(&a.output)?;
        if output.trace {
            return Err(bad_input(
                "--trace records the SQL statements of a strategy; racelab http sends requests \
                 and has none (use --histogram for the latency charts)",
            ));
        }

        let timeout = (a.timeout > 0).then(|| Duration::from_millis(a.timeout));
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("racelab/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(None);
        if let Some(t) = timeout {
            client = client.connect_timeout(t);
        }
        let client = client
            .build()
            .map_err(|e| anyhow::anyhow!("could not build the HTTP client: {e}"))?;
        let direct = h1::Target::of(&url, &method, &headers);
        let lanes = HttpLanes {
            direct,
            client,
            method,
            url,
            headers,
            body,
            buyer_name,
            timeout,
            statuses: StatusMap {
                success: a.success.clone(),
                sold_out: a.sold_out.clone(),
                rejected: a.rejected.clone(),
            },
        };
        Ok(HttpPlan {
            lanes: Arc::new(lanes),
            scenario,
            seed: a.seed.unwrap_or_else(rand::random),
            source,
            declared_stock: a.stock,
            db,
            reset_url,
            reset_sql: a.reset_sql.clone(),
            repeat: a.repeat,
            expect: a.expect,
            output,
        })
    }

    fn note(&self, msg: &str) {
        if !self.output.quiet {
            eprintln!("{msg}");
        }
    }

    async fn reset(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.reset_url {
            truth::reset_url(&self.lanes.client, url).await?;
        }
        if let (Some(sql), Some(db)) = (&self.reset_sql, &self.db) {
            db.reset(sql).await?;
        }
        Ok(())
    }

    async fn read(&self) -> anyhow::Result<Reading> {
        match &self.source {
            Source::Sql { sql } => {
                let db = self.db.as_ref().expect("--verify-sql has a database");
                db.verify(sql).await
            }
            Source::StockUrl { url, path } => Ok(Reading {
                stock: Some(truth::read_stock_url(&self.lanes.client, url, path).await?),
                units_sold: None,
            }),
            Source::Belief => Ok(Reading::default()),
        }
    }
}

/// The URL to show: without any password.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// Race the target `repeat` times; each race is reset, read, raced, read
/// again and audited, and its result saved at once.
pub async fn execute(plan: &HttpPlan, control: Arc<Control>) -> anyhow::Result<Vec<RunResult>> {
    let database = match (&plan.db, &plan.source) {
        (Some(db), Source::Sql { .. }) => {
            let (server_version, durable) = db.describe().await?;
            Some(DatabaseInfo {
                kind: crate::db::DbKind::External,
                server_version,
                durable,
            })
        }
        _ => None,
    };
    if plan.repeat > 1 && plan.reset_url.is_none() && plan.reset_sql.is_none() {
        plan.note("note: --repeat without --reset-url or --reset-sql: each race starts where the last one ended");
    }
    let sc = &plan.scenario;
    let picker = ProductPicker::new(sc.products, sc.product_skew);
    let mut results = Vec::new();
    for repetition in 1..=plan.repeat {
        if control.is_stopped() {
            break;
        }
        let started_at = crate::run::now_rfc3339();
        plan.reset().await?;
        let before = plan.read().await?;
        let seed = plan.seed.wrapping_add(u64::from(repetition) - 1);
        let config = RaceConfig {
            buyers: sc.buyers,
            attempts_per_buyer: sc.attempts_per_buyer,
            duration: (sc.duration_s > 0.0).then(|| Duration::from_secs_f64(sc.duration_s)),
            quantity: sc.quantity,
            think_ms: 0,
            think_jitter_ms: 0,
            products: picker.clone(),
            connections: 0,
            max_tries: 1,
            seed,
            trace: false,
        };
        let label = if plan.repeat > 1 {
            format!("http {repetition}/{}", plan.repeat)
        } else {
            "http".to_string()
        };
        let total =
            (sc.duration_s == 0.0).then(|| u64::from(sc.buyers) * u64::from(sc.attempts_per_buyer));
        let progress = crate::report::progress::Progress::start(
            !plan.output.quiet,
            &label,
            total,
            control.clone(),
        );
        let raced = engine::race_with(plan.lanes.clone(), config, control.clone()).await;
        progress.finish();
        let (race, lanes) = match raced {
            Ok(r) => r,
            Err(e) if e.is::<Interrupted>() => break,
            Err(e) => return Err(e),
        };
        let after = match plan.read().await {
            Ok(r) => Ok(r),
            Err(e) if control.is_stopped() => Err(e),
            Err(e) => return Err(e.context("reading the truth after the race")),
        };
        let by_status = lane::by_status(&lanes);
        let result = assemble(
            plan, repetition, seed, started_at, race, before, after, by_status, &database, &control,
        );
        if let Some(dir) = &plan.output.save_dir {
            let path = save::save(dir, &result)?;
            plan.note(&format!("saved {}", path.display()));
        }
        results.push(result);
    }
    if results.is_empty() {
        if let Some(Stop::Interrupted(signal)) = control.reason() {
            return Err(Interrupted { signal }.into());
        }
    }
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    plan: &HttpPlan,
    repetition: u32,
    seed: u64,
    started_at: String,
    mut race: engine::RaceOutput,
    before: Reading,
    after: anyhow::Result<Reading>,
    by_status: std::collections::BTreeMap<String, hdrhistogram::Histogram<u64>>,
    database: &Option<DatabaseInfo>,
    control: &Control,
) -> RunResult {
    let (mut status, mut status_reason) = crate::run::status_of(control);
    let t = &race.tally;
    let sc = &plan.scenario;
    let outcomes = Outcomes::of(t);
    // A service that answered nothing usefully tells nothing about its
    // safety: that is a failed run (exit 3), not a clean one.
    let answered = outcomes.succeeded + outcomes.sold_out + outcomes.rejected;
    if status == Status::Completed && outcomes.attempts > 0 && answered == 0 {
        status = Status::Aborted;
        let first = t
            .errors
            .first()
            .map_or(String::new(), |(m, _)| format!(": {m}"));
        status_reason = Some(format!(
            "the target answered none of {} requests with a success, sold-out or rejection \
             ({} errors, {} unknown){first}",
            outcomes.attempts, outcomes.errors, outcomes.unknown
        ));
    }
    let initial = plan.declared_stock.or(before.stock).unwrap_or(0);
    let audit = match after {
        Ok(after) => Some(truth::audit(
            initial,
            before,
            after,
            outcomes.succeeded,
            outcomes.unknown,
            sc.quantity,
        )),
        Err(e) => {
            let why = status_reason.take().unwrap_or_default();
            status_reason = Some(format!("{why}; the audit could not run: {e:#}"));
            None
        }
    };
    let l = &plan.lanes;
    let timeout_ms = l.timeout.map_or(0, |t| t.as_millis() as u64);
    // An HTTP race has no think time, pool or retries of racelab's own, and
    // its stock is what the truth said.
    let workload = Scenario {
        stock: initial.max(0),
        think_ms: 0,
        think_jitter_ms: 0,
        connections: 0,
        ..sc.clone()
    };
    let scenario = ScenarioInfo::of(&workload, 1, seed, timeout_ms);
    let record = RaceRecord {
        started_at,
        scenario,
        repetition,
        status,
        status_reason,
        audit,
        wall: race.wall,
    };
    let target = TargetInfo {
        url: shown(&l.url),
        method: l.method.to_string(),
        truth: plan.source.kind(),
        timeout_ms,
        success_statuses: l.statuses.success.clone(),
        sold_out_statuses: l.statuses.sold_out.clone(),
        rejected_statuses: l.statuses.rejected.clone(),
        by_status: by_status
            .iter()
            .map(|(k, h)| (k.clone(), Summary::of(h)))
            .collect(),
    };
    RunResult::assemble(
        record,
        &mut race.tally,
        None,
        Some(target),
        database.clone(),
    )
}
