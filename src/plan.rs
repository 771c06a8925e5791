//! One plan builder for every target kind: the scenario and its
//! overrides, the target (the SQL lab with a list of strategies, or an
//! HTTP service), the gate and the output, validated before anything
//! touches a database or a network: bad input fails here, in
//! milliseconds, with exit code 2. This is the one place that reads the
//! `cli` types of a race; what it builds (`run::Pipeline`, `lab::Lab`,
//! `http::Service`, `scenario::Overrides`, `db::DbOptions`) is plain.

pub mod explore;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};

use crate::cli::{self, CommonArgs, DbArgs, GateArgs, HttpArgs, OutputArgs, ScenarioArgs, SqlArgs};
use crate::db::pgbouncer::{self, PgBouncerOptions, PoolMode};
use crate::db::DbOptions;
use crate::error::{bad_input, Diagnostic};
use crate::http::{self, h1, lane, template::Template, truth};
use crate::lab::Faults;
use crate::lab::Lab;
use crate::report::{Output, RunResult};
use crate::run::Pipeline;
use crate::scenario::{Overrides, Scenario, ScenarioError};
use crate::strategy::{self, ParseError, Strategy};
use crate::trace::MAX_TRACED_BUYERS;
use crate::verdict::{Expect, Gate};

/// Default tries per attempt (DESIGN §4).
pub const DEFAULT_MAX_TRIES: u32 = 10;
/// Ceiling on `--repeat`.
pub const MAX_REPEAT: u32 = 10_000;

/// A validated race: what the pipeline runs, on which target, and what
/// is done with the results.
#[derive(Debug)]
pub struct Plan {
    pub pipeline: Pipeline,
    pub target: TargetPlan,
    pub gate: Gate,
    /// Saved runs to compare latency and throughput with (`--baseline`).
    pub baseline: Vec<RunResult>,
    pub max_regression: f64,
    pub output: Output,
    /// Print the side-by-side table: `compare`, or several repetitions.
    pub grouped: bool,
}

/// What is raced.
#[derive(Debug)]
pub enum TargetPlan {
    /// Strategies on the SQL lab (`run`, `compare`).
    Lab(Box<Lab>),
    /// An HTTP service (`http`).
    Http(Box<http::Service>),
}

/// The arguments of one race command, by target kind.
#[derive(Debug, Clone, Copy)]
pub enum RaceArgs<'a> {
    /// `run` (one strategy) and `compare` (several, side by side).
    Lab {
        strategies: &'a [String],
        args: &'a CommonArgs,
        compare: bool,
    },
    Http(&'a HttpArgs),
}

impl<'a> RaceArgs<'a> {
    fn scenario(&self) -> &'a ScenarioArgs {
        match self {
            RaceArgs::Lab { args, .. } => &args.scenario,
            RaceArgs::Http(a) => &a.scenario,
        }
    }

    fn gate(&self) -> &'a GateArgs {
        match self {
            RaceArgs::Lab { args, .. } => &args.gate,
            RaceArgs::Http(a) => &a.gate,
        }
    }

    /// The longest an attempt may wait for one reply without anything
    /// being wrong: `--timeout` of the lab, `--request-timeout` of a
    /// service (milliseconds; 0: none).
    fn wait_limit_ms(&self) -> u64 {
        match self {
            RaceArgs::Lab { args, .. } => args.sql.timeout.unwrap_or(0),
            RaceArgs::Http(a) => a.request.request_timeout,
        }
    }

    fn output(&self) -> &'a OutputArgs {
        match self {
            RaceArgs::Lab { args, .. } => &args.output,
            RaceArgs::Http(a) => &a.output,
        }
    }
}

impl Plan {
    /// `racelab run`.
    pub fn run(a: &cli::RunArgs) -> anyhow::Result<Plan> {
        Plan::build(RaceArgs::Lab {
            strategies: std::slice::from_ref(&a.strategy),
            args: &a.common,
            compare: false,
        })
    }

    /// `racelab compare`.
    pub fn compare(a: &cli::CompareArgs) -> anyhow::Result<Plan> {
        Plan::build(RaceArgs::Lab {
            strategies: &a.strategies,
            args: &a.common,
            compare: true,
        })
    }

    /// `racelab http`.
    pub fn http(a: &HttpArgs) -> anyhow::Result<Plan> {
        Plan::build(RaceArgs::Http(a))
    }

    /// Validate the arguments of any race into a plan. Every error is
    /// classified (`classify`): bad input exits 2.
    pub fn build(args: RaceArgs) -> anyhow::Result<Plan> {
        build(args).map_err(classify)
    }
}

fn build(args: RaceArgs) -> anyhow::Result<Plan> {
    // The target's own flags first: a wrong strategy name or URL is the
    // first thing to hear about.
    let target = match args {
        RaceArgs::Lab {
            strategies, args, ..
        } => Target::Lab(strategies_of(strategies)?, args),
        RaceArgs::Http(a) => Target::Http(Box::new(request_of(a)?), a),
    };
    let sargs = args.scenario();
    let scenario = Scenario::load(&sargs.scenario)?.with_overrides(&overrides(&args))?;
    let gate = args.gate();
    if gate.repeat == 0 || gate.repeat > MAX_REPEAT {
        return Err(bad_input(format!(
            "--repeat must be between 1 and {MAX_REPEAT}, got {}",
            gate.repeat
        )));
    }
    if !(gate.max_regression.is_finite() && gate.max_regression >= 0.0) {
        return Err(bad_input(format!(
            "--max-regression must be a percentage of 0 or more, got {}",
            gate.max_regression
        )));
    }
    let output = output_of(args.output())?;
    let no_progress = no_progress_of(gate.no_progress, &scenario, args.wait_limit_ms())?;
    let mut pipeline = Pipeline {
        scenario,
        max_tries: DEFAULT_MAX_TRIES,
        seed: sargs.seed.unwrap_or_else(rand::random),
        repeat: gate.repeat,
        trace: output.trace,
        retry_unknown: 0,
        no_progress,
    };
    let (target, grouped) = match target {
        Target::Lab(strategies, a) => {
            let lab = lab_of(strategies, a, &mut pipeline)?;
            let compare = matches!(args, RaceArgs::Lab { compare: true, .. });
            (TargetPlan::Lab(Box::new(lab)), compare || gate.repeat > 1)
        }
        Target::Http(request, a) => {
            let service = service_of(request, a, &output, &mut pipeline)?;
            (TargetPlan::Http(Box::new(service)), gate.repeat > 1)
        }
    };
    let baseline = if gate.baseline.is_empty() {
        Vec::new()
    } else {
        crate::report::baseline::load(&gate.baseline)?
    };
    Ok(Plan {
        pipeline,
        target,
        gate: Gate {
            expect: gate.expect.map(expect_of),
            max_errors: gate.max_errors,
        },
        baseline,
        max_regression: gate.max_regression,
        output,
        grouped,
    })
}

/// The default `--no-progress`: a race in which no attempt finishes for
/// 10 s makes no progress.
pub const NO_PROGRESS: Duration = Duration::from_secs(10);

/// `--no-progress`, or its default: `NO_PROGRESS`, longer where an
/// attempt may take longer without anything being wrong: three of the
/// longest think times, three gaps of the open loop's schedule, twice the
/// per-reply limit `wait_ms`.
fn no_progress_of(flag: Option<f64>, sc: &Scenario, wait_ms: u64) -> anyhow::Result<Duration> {
    if let Some(s) = flag {
        if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
            return Err(bad_input(format!(
                "--no-progress must be between 0 and 86400 seconds, got {s}"
            )));
        }
        return Ok(Duration::from_secs_f64(s));
    }
    let think = Duration::from_millis(sc.think_ms.saturating_add(sc.think_jitter_ms)) * 3;
    let gap = if sc.rate_per_s > 0.0 {
        Duration::from_secs_f64((3.0 / sc.rate_per_s).min(86_400.0))
    } else {
        Duration::ZERO
    };
    let wait = Duration::from_millis(wait_ms.saturating_mul(2));
    Ok(NO_PROGRESS.max(think).max(gap).max(wait))
}

/// The target's flags, validated before the shared ones.
enum Target<'a> {
    Lab(Vec<Strategy>, &'a CommonArgs),
    Http(Box<Request>, &'a HttpArgs),
}

/// The typed errors of the domain modules that are bad input, turned into
/// the failure kinds `error` knows (a parse error keeps its source line and
/// caret). The command layer applies this to every error it returns.
pub fn classify(err: anyhow::Error) -> anyhow::Error {
    if let Some(p) = err.chain().find_map(|c| c.downcast_ref::<ParseError>()) {
        return anyhow::Error::new(Diagnostic(p.render()));
    }
    if err.chain().any(|c| c.is::<ScenarioError>()) {
        return bad_input(format!("{err:#}"));
    }
    err
}

pub(crate) fn expect_of(e: cli::Expect) -> Expect {
    match e {
        cli::Expect::Safe => Expect::Safe,
        cli::Expect::Oversold => Expect::Oversold,
    }
}

/// The scenario overrides of a race: the shared workload flags, and the
/// SQL lab's think time and pool (an HTTP service has neither, see
/// `service_of`).
fn overrides(args: &RaceArgs) -> Overrides {
    let s = args.scenario();
    let mut o = Overrides {
        buyers: s.buyers,
        stock: s.stock,
        attempts: s.attempts,
        quantity: s.quantity,
        products: s.products,
        skew: s.skew,
        duration: s.duration,
        rate: s.rate,
        ..Overrides::default()
    };
    if let RaceArgs::Lab { args, .. } = args {
        o.think_ms = args.sql.think_ms;
        o.connections = args.sql.connections;
    }
    o
}

/// The strategies to race, loaded and parsed: the names given, or every
/// built-in.
fn strategies_of(specs: &[String]) -> anyhow::Result<Vec<Strategy>> {
    let specs: Vec<String> = if specs.is_empty() {
        strategy::builtins()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        specs
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if specs.is_empty() {
        return Err(bad_input(
            "--strategies is empty: name at least one strategy (see `racelab list`)",
        ));
    }
    let mut strategies = Vec::with_capacity(specs.len());
    for spec in &specs {
        let s = strategy::load(spec)?;
        if strategies.iter().any(|o: &Strategy| o.name == s.name) {
            return Err(bad_input(format!("strategy `{}` is named twice", s.name)));
        }
        strategies.push(s);
    }
    Ok(strategies)
}

/// The SQL lab: the server, the statement limit, `--watch`, `--trace`.
fn lab_of(
    strategies: Vec<Strategy>,
    a: &CommonArgs,
    pipeline: &mut Pipeline,
) -> anyhow::Result<Lab> {
    let scenario = &pipeline.scenario;
    let db = db_options(&a.db, scenario.connections_needed() + 5)?;
    if pipeline.trace {
        if scenario.buyers > MAX_TRACED_BUYERS {
            return Err(bad_input(format!(
                "--trace records every statement and is for small runs: {} buyers is more than {MAX_TRACED_BUYERS}; add --buyers 10 (or fewer)",
                scenario.buyers
            )));
        }
        if scenario.duration_s > 0.0 {
            return Err(bad_input(
                "--trace cannot be used with --duration (or a scenario with duration_s): a timed run has no bound on its events; use --attempts instead",
            ));
        }
    }
    if let Some(ms) = a.watch {
        if ms == 0 || ms > 60_000 {
            return Err(bad_input(format!(
                "--watch takes a sampling interval in milliseconds between 1 and 60000, got {ms}"
            )));
        }
    }
    pipeline.max_tries = a.sql.max_tries.unwrap_or(DEFAULT_MAX_TRIES);
    let faults = faults_of(&a.sql)?;
    pipeline.retry_unknown = faults.retry_unknown;
    let via = via_of(&a.via, &strategies, scenario.connections_needed())?;
    Ok(Lab {
        via,
        strategies,
        db,
        faults,
        timeout_ms: a.sql.timeout.unwrap_or(0),
        watch_ms: a.watch,
        redis: crate::db::redis::RedisOptions {
            url: a.db.redis_url.clone(),
            bin: a.db.redis_bin.clone(),
        },
    })
}

/// `--nemesis KIND:RATE` (each) and `--retry-unknown [N]`.
fn faults_of(sql: &SqlArgs) -> anyhow::Result<Faults> {
    let mut faults = Faults::default();
    for spec in &sql.nemesis {
        faults.add_spec(spec).map_err(bad_input)?;
    }
    if let Some(n) = sql.retry_unknown {
        if n == 0 || n > MAX_RETRY_UNKNOWN {
            return Err(bad_input(format!(
                "--retry-unknown takes the resubmissions per unknown attempt, 1 to \
                 {MAX_RETRY_UNKNOWN}, got {n}; omit it to resubmit nothing"
            )));
        }
        faults.retry_unknown = n;
    }
    Ok(faults)
}

/// Resubmissions of one unknown attempt at most.
const MAX_RETRY_UNKNOWN: u32 = 100;

/// `--via pgbouncer` and its flags. Statement pooling cannot run a
/// transaction of several statements: a strategy that opens one is
/// refused here, by name and line.
fn via_of(
    v: &cli::ViaArgs,
    strategies: &[Strategy],
    clients: u32,
) -> anyhow::Result<Option<PgBouncerOptions>> {
    let Some(cli::Via::Pgbouncer) = v.via else {
        for (set, flag) in [
            (v.pool_mode.is_some(), "--pool-mode"),
            (v.pool_size.is_some(), "--pool-size"),
            (v.pgbouncer_bin.is_some(), "--pgbouncer-bin"),
        ] {
            if set {
                return Err(bad_input(format!(
                    "{flag} is for the pooler between buyers and server: add --via pgbouncer (or drop {flag})"
                )));
            }
        }
        return Ok(None);
    };
    let pool_size = v.pool_size.unwrap_or(pgbouncer::DEFAULT_POOL_SIZE);
    if !(1..=10_000).contains(&pool_size) {
        return Err(bad_input(format!(
            "--pool-size must be between 1 and 10000 server connections, got {pool_size}"
        )));
    }
    let pool_mode = match v.pool_mode.unwrap_or(cli::PoolMode::Transaction) {
        cli::PoolMode::Session => PoolMode::Session,
        cli::PoolMode::Transaction => PoolMode::Transaction,
        cli::PoolMode::Statement => PoolMode::Statement,
    };
    if pool_mode == PoolMode::Statement {
        for s in strategies {
            if let Some(line) = s.program.first_transaction_line() {
                return Err(bad_input(format!(
                    "strategy `{}` opens a transaction of several statements (line {line}), which \
                     PgBouncer's statement pooling cannot run; use --pool-mode transaction or session, \
                     or a strategy of single statements (e.g. conditional)",
                    s.name
                )));
            }
            if let Some(line) = s.program.first_extended_line() {
                return Err(bad_input(format!(
                    "strategy `{}` sends bind parameters (line {line}), which racelab parses in one round trip \
                     and binds in the next; PgBouncer's statement pooling may hand the second to another \
                     server connection and run another buyer's statement; use --pool-mode transaction or session",
                    s.name
                )));
            }
        }
    }
    Ok(Some(PgBouncerOptions {
        bin: v.pgbouncer_bin.clone(),
        pool_mode,
        pool_size,
        max_clients: clients.saturating_add(10),
    }))
}

/// Validate the database flags (the connect timeout, the URL) into the
/// options `db` opens a server with; `max_connections` sizes an embedded
/// cluster.
pub fn db_options(db: &DbArgs, max_connections: u32) -> anyhow::Result<DbOptions> {
    let connect_timeout = connect_timeout(db.connect_timeout)?;
    if let Some(url) = &db.database_url {
        crate::db::parse_external_url(url)?;
    }
    Ok(DbOptions {
        database_url: db.database_url.clone(),
        pg_bin: db.pg_bin.clone(),
        schema: db.schema.clone(),
        durable: db.durable,
        connect_timeout,
        max_connections,
        listen_tcp: false,
    })
}

fn connect_timeout(secs: f64) -> anyhow::Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(bad_input(format!(
            "--connect-timeout must be between 0 and 3600 seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Validate the output flags: the results directory is writable, the
/// JUnit and trace files' directories exist.
pub fn output_of(out: &OutputArgs) -> anyhow::Result<Output> {
    let save_dir = (!out.no_save).then(|| out.out.clone());
    if let Some(dir) = &save_dir {
        crate::report::save::check_writable(dir)?;
    }
    for (flag, file) in [
        ("--junit", out.junit.as_ref()),
        ("--trace", out.trace.as_ref().and_then(|f| f.as_ref())),
    ] {
        let Some(file) = file else { continue };
        if let Some(parent) = existing_parent_missing(file) {
            return Err(bad_input(format!(
                "{flag} {}: directory {} does not exist",
                file.display(),
                parent.display()
            )));
        }
    }
    Ok(Output {
        json: out.json,
        save_dir,
        quiet: out.quiet,
        junit: out.junit.clone(),
        trace: out.trace.is_some(),
        trace_file: out.trace.clone().flatten(),
        histogram: out.histogram,
    })
}

/// The directory a file would go into, when it is named and is missing.
fn existing_parent_missing(file: &std::path::Path) -> Option<PathBuf> {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty())?;
    (!parent.is_dir()).then(|| parent.to_path_buf())
}

/// The purchase request of `racelab http`, validated.
struct Request {
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Option<Template>,
    buyer_name: (String, String),
}

fn request_of(a: &HttpArgs) -> anyhow::Result<Request> {
    if a.timeout.is_some() {
        return Err(bad_input(
            "racelab http has no --timeout: the per-request limit is --request-timeout MS \
             (--timeout is the per-statement limit of racelab run)",
        ));
    }
    let r = &a.request;
    let url = parse_url("the target URL", &a.url)?;
    let method = Method::from_bytes(r.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| bad_input(format!("--method {:?} is not an HTTP method", r.method)))?;
    let mut headers = HeaderMap::new();
    for h in &r.headers {
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
    let body = r.body.as_deref().map(Template::parse).transpose()?;
    if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let buyer_name = match &r.buyer_name {
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
    let lists = [
        ("--success", &r.success),
        ("--sold-out", &r.sold_out),
        ("--rejected", &r.rejected),
    ];
    for (flag, codes) in lists {
        if let Some(c) = codes.iter().find(|c| !(100..=599).contains(*c)) {
            return Err(bad_input(format!(
                "{flag}: {c} is not an HTTP status code (100-599)"
            )));
        }
    }
    for (i, (fa, ca)) in lists.iter().enumerate() {
        for (fb, cb) in &lists[i + 1..] {
            if let Some(c) = ca.iter().find(|c| cb.contains(c)) {
                return Err(bad_input(format!(
                    "status {c} is in both {fa} and {fb}; give each code one meaning"
                )));
            }
        }
        if r.success.is_empty() && *fa != "--success" {
            if let Some(c) = ca.iter().find(|c| (200..300).contains(*c)) {
                return Err(bad_input(format!(
                    "status {c} is in {fa} but every 2xx means success by default; \
                     list the success codes with --success"
                )));
            }
        }
    }
    Ok(Request {
        url,
        method,
        headers,
        body,
        buyer_name,
    })
}

/// The HTTP service: where the truth comes from, the resets, the client.
fn service_of(
    request: Box<Request>,
    a: &HttpArgs,
    output: &Output,
    pipeline: &mut Pipeline,
) -> anyhow::Result<http::Service> {
    let t = &a.truth;
    let connect_timeout = connect_timeout(t.connect_timeout)?;
    let db = match (&t.verify_sql, &t.reset_sql, &t.database_url) {
        (None, None, _) => None,
        (_, _, Some(url)) => Some(truth::ServiceDb::new(url, connect_timeout)?),
        (_, _, None) => {
            return Err(bad_input(
                "--verify-sql and --reset-sql need --database-url (or DATABASE_URL): the service's database",
            ))
        }
    };
    let declared_stock = a.scenario.stock;
    let source = if let Some(sql) = &t.verify_sql {
        if sql.trim().is_empty() {
            return Err(bad_input(
                "--verify-sql is empty: give a SELECT returning `stock`",
            ));
        }
        truth::Source::Sql { sql: sql.clone() }
    } else if let Some(u) = &t.stock_url {
        truth::Source::StockUrl {
            url: parse_url("--stock-url", u)?,
            stock: truth::JsonExpr::parse("--stock-json-path", &t.stock_json_path)?,
            sold: t
                .sold_json_path
                .as_deref()
                .map(|e| truth::JsonExpr::parse("--sold-json-path", e))
                .transpose()?,
        }
    } else if declared_stock.is_some() {
        truth::Source::Belief
    } else {
        return Err(bad_input(
            "racelab http needs the stock to audit against: --verify-sql SQL --database-url URL \
             (the service's database), --stock-url URL (its stock endpoint), or --stock N \
             (the initial stock, checked against the successes racelab counts)",
        ));
    };
    let reset_url = t
        .reset_url
        .as_deref()
        .map(|u| parse_url("--reset-url", u))
        .transpose()?;
    if output.trace {
        return Err(bad_input(
            "--trace records the SQL statements of a strategy; racelab http sends requests \
             and has none (use --histogram for the latency charts)",
        ));
    }

    let ms = a.request.request_timeout;
    let timeout = (ms > 0).then(|| Duration::from_millis(ms));
    let mut client = reqwest::Client::builder()
        .user_agent(concat!("racelab/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true)
        .pool_idle_timeout(None);
    if let Some(t) = timeout {
        client = client.connect_timeout(t);
    }
    let roots = match &a.request.cacert {
        Some(path) => http::net::read_pem(path).map_err(|e| bad_input(format!("--cacert {e}")))?,
        None => Vec::new(),
    };
    for cert in &roots {
        let cert = reqwest::Certificate::from_der(cert)
            .map_err(|e| bad_input(format!("--cacert: a certificate reqwest cannot use: {e}")))?;
        client = client.add_root_certificate(cert);
    }
    let client = client
        .build()
        .map_err(|e| anyhow::anyhow!("could not build the HTTP client: {e}"))?;
    let Request {
        url,
        method,
        headers,
        body,
        buyer_name,
    } = *request;
    if let Some(template) = &body {
        check_json_body(template, &headers, &buyer_name, pipeline.scenario.quantity)?;
    }
    // A request is sent once: racelab cannot know whether a service may
    // see it twice. The service has no think time or pool of racelab's:
    // each buyer sends its requests on its own connection, back to back.
    pipeline.max_tries = 1;
    let sc = &mut pipeline.scenario;
    sc.think_ms = 0;
    sc.think_jitter_ms = 0;
    sc.connections = 0;
    if a.scenario.scenario == "default" {
        sc.name = "http".into();
    }
    sc.description = format!("{method} {}", http::shown(&url));
    let direct = h1::Target::of(&url, &method, &headers);
    let protocol = if a.request.http2 {
        lane::Protocol::Http2
    } else {
        lane::Protocol::Http1
    };
    let sync = match a.request.sync {
        cli::SyncMode::LastByte => lane::Sync::LastByte,
        cli::SyncMode::None => lane::Sync::None,
    };
    if direct.is_none() {
        // Only a proxy in the environment makes racelab hand requests to
        // reqwest, which writes each one whole.
        if protocol == lane::Protocol::Http2 {
            return Err(bad_input(
                "--http2: racelab speaks HTTP/2 on its own connections, but a proxy is set in                  the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY): unset it, or drop --http2",
            ));
        }
        if sync == lane::Sync::LastByte {
            output.note(
                "note: a proxy is set in the environment: requests go through it whole,                  without last-byte synchronisation (--sync none)",
            );
        }
    }
    let lanes = lane::HttpLanes {
        direct,
        protocol,
        sync,
        roots,
        opened: Default::default(),
        client,
        method,
        url,
        headers,
        body,
        buyer_name,
        timeout,
        statuses: lane::StatusMap {
            success: a.request.success.clone(),
            sold_out: a.request.sold_out.clone(),
            rejected: a.request.rejected.clone(),
        },
    };
    Ok(http::Service {
        lanes: std::sync::Arc::new(lanes),
        source,
        declared_stock,
        db,
        reset_url,
        reset_sql: t.reset_sql.clone(),
    })
}

/// A body sent as JSON (by its `Content-Type`, racelab's default for a
/// body, or by its first character) is rendered once for buyer 1 and
/// parsed before the race: a template that makes invalid JSON would
/// otherwise turn every purchase into a 400 nobody asked for.
fn check_json_body(
    template: &Template,
    headers: &HeaderMap,
    buyer_name: &(String, String),
    qty: i64,
) -> anyhow::Result<()> {
    let name = format!("{}1{}", buyer_name.0, buyer_name.1);
    let sample = template.render(&http::template::Values {
        buyer: &name,
        attempt: 1,
        qty,
        product: 1,
    });
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let json = content_type.contains("json") || sample.trim_start().starts_with(['{', '[']);
    if !json {
        return Ok(());
    }
    let Err(e) = serde_json::from_str::<serde_json::Value>(&sample) else {
        return Ok(());
    };
    let fix = if template.has_unquoted_buyer() {
        "put {{buyer}} in quotes, \"{{buyer}}\": its value is the buyer's name, which is text"
            .to_string()
    } else {
        "make the template render JSON (placeholders whose values are text go in quotes, \
         e.g. \"{{buyer}}\"), or send another Content-Type with -H"
            .to_string()
    };
    Err(bad_input(format!(
        "--body is not valid JSON ({e}) once rendered for buyer 1: {sample}; it is sent as \
         {content_type}: {fix}"
    )))
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The plan of a command line (`--no-save` added: nothing is written).
    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let mut argv = vec!["racelab"];
        argv.extend_from_slice(args);
        argv.push("--no-save");
        match Cli::try_parse_from(&argv).expect("parses").command {
            Command::Run(a) => Plan::run(&a),
            Command::Compare(a) => Plan::compare(&a),
            Command::Http(a) => Plan::http(&a),
            other => panic!("not a race: {other:?}"),
        }
    }

    fn bad(args: &[&str]) -> String {
        let e = plan(args).expect_err("bad input");
        assert_eq!(crate::error::exit_code(&e), 2, "{e:#}");
        crate::error::render(&e)
    }

    #[test]
    fn a_strategy_parse_error_is_bad_input_with_its_caret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo.sql");
        std::fs::write(&path, "SELECT 1;\n\\sett x 1\n").unwrap();
        let shown = bad(&["run", "--strategy", path.to_str().unwrap()]);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(
            lines[0]
                .ends_with("typo.sql:2:1: unknown meta-command `\\sett`; did you mean `\\set`?"),
            "{shown}"
        );
        assert_eq!(lines[1], "2 | \\sett x 1");
        assert_eq!(lines[2], "  | ^");
    }

    #[test]
    fn scenario_errors_are_bad_input_naming_the_flag() {
        assert!(bad(&["run", "--buyers", "0"]).starts_with("--buyers:"));
        assert!(bad(&["http", "http://127.0.0.1:1/buy", "--stock", "-1"]).starts_with("--stock:"));
        assert!(bad(&["compare", "--scenario", "last-iten"]).contains("did you mean `last-item`"));
    }

    #[test]
    fn run_and_compare_build_a_lab_plan() {
        let p = plan(&[
            "run",
            "--strategy",
            "for-update",
            "--buyers",
            "7",
            "--think-ms",
            "3",
            "--max-tries",
            "4",
            "--timeout",
            "250",
            "--seed",
            "9",
            "--repeat",
            "2",
        ])
        .unwrap();
        let TargetPlan::Lab(lab) = &p.target else {
            panic!("a lab plan")
        };
        assert_eq!(lab.strategies.len(), 1);
        assert_eq!(lab.timeout_ms, 250);
        assert_eq!(lab.db.max_connections, 7 + 5);
        let pl = &p.pipeline;
        assert_eq!((pl.scenario.buyers, pl.scenario.think_ms), (7, 3));
        assert_eq!((pl.max_tries, pl.seed, pl.repeat), (4, 9, 2));
        assert_eq!(pl.seed_of(2), 10);
        // Two repetitions are shown side by side.
        assert!(p.grouped);
        let all = plan(&["compare"]).unwrap();
        let TargetPlan::Lab(lab) = &all.target else {
            panic!("a lab plan")
        };
        assert_eq!(lab.strategies.len(), strategy::builtins().len());
        assert!(all.grouped);
        assert_eq!(all.pipeline.max_tries, DEFAULT_MAX_TRIES);
    }

    #[test]
    fn http_shares_the_workload_flags_and_has_its_own_timeout() {
        let p = plan(&[
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "3",
            "--buyers",
            "4",
            "--attempts",
            "2",
            "--quantity",
            "2",
            "--seed",
            "5",
            "--request-timeout",
            "700",
            "--expect",
            "safe",
        ])
        .unwrap();
        let TargetPlan::Http(svc) = &p.target else {
            panic!("an http plan")
        };
        assert_eq!(svc.declared_stock, Some(3));
        assert_eq!(svc.lanes.timeout, Some(Duration::from_millis(700)));
        let sc = &p.pipeline.scenario;
        assert_eq!((sc.buyers, sc.attempts_per_buyer, sc.quantity), (4, 2, 2));
        // No think time, pool or retries of racelab's own for a service.
        assert_eq!((sc.think_ms, sc.think_jitter_ms, sc.connections), (0, 0, 0));
        assert_eq!(p.pipeline.max_tries, 1);
        assert_eq!(sc.name, "http");
        assert_eq!(p.gate.expect, Some(Expect::Safe));
        // A scenario with think time and jitter still races without them.
        let p = plan(&[
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "3",
            "--scenario",
            "flash-sale",
        ])
        .unwrap();
        let sc = &p.pipeline.scenario;
        assert_eq!(
            (sc.name.as_str(), sc.buyers, sc.think_ms),
            ("flash-sale", 50, 0)
        );
    }

    #[test]
    fn flags_that_differ_are_named_apart() {
        let m = bad(&[
            "http",
            "http://127.0.0.1:9/buy",
            "--stock",
            "1",
            "--timeout",
            "300",
        ]);
        assert!(m.contains("--request-timeout"), "{m}");
        // The SQL lab's flags are not flags of http at all.
        for flag in ["--think-ms", "--connections", "--max-tries"] {
            let argv = ["racelab", "http", "http://127.0.0.1:9/buy", flag, "1"];
            assert!(Cli::try_parse_from(argv).is_err(), "{flag}");
        }
        assert!(Cli::try_parse_from(["racelab", "run", "--request-timeout", "5"]).is_err());
    }

    #[test]
    fn a_json_body_is_checked_for_a_sample_buyer() {
        fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
            let mut a = vec!["http", "http://127.0.0.1:9/buy", "--stock", "1"];
            a.extend_from_slice(extra);
            a
        }
        let m = bad(&with(&[
            "--buyer-name",
            "user-{n}",
            "--body",
            r#"{"buyer": {{buyer}}, "qty": {{qty}}}"#,
        ]));
        assert!(m.contains(r#"{"buyer": user-1, "qty": 1}"#), "{m}");
        assert!(
            m.contains(r#""{{buyer}}""#) && m.contains("application/json"),
            "{m}"
        );
        // A number for a name is JSON; so is a quoted name.
        plan(&with(&["--body", r#"{"buyer": {{buyer}}}"#])).unwrap();
        plan(&with(&[
            "--buyer-name",
            "user-{n}",
            "--body",
            r#"{"buyer": "{{buyer}}"}"#,
        ]))
        .unwrap();
        // Sent as a form, it is not JSON and not checked; but a body that
        // looks like JSON is, whatever its Content-Type.
        let form = ["-H", "Content-Type: application/x-www-form-urlencoded"];
        let mut args = form.to_vec();
        args.extend(["--body", "buyer={{buyer}}&qty={{qty}}"]);
        plan(&with(&args)).unwrap();
        let mut args = form.to_vec();
        args.extend(["--body", "{buyer: {{buyer}}}"]);
        let m = bad(&with(&args));
        assert!(
            m.contains("{buyer: 1}") && m.contains("x-www-form-urlencoded"),
            "{m}"
        );
    }

    #[test]
    fn the_buyer_name_help_shows_its_placeholder() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let http = cli.find_subcommand_mut("http").expect("http");
        for help in [http.render_long_help(), http.render_help()] {
            let text = help.to_string().replace(char::is_whitespace, "");
            assert!(text.contains("{n}isthebuyer'snumber"), "{help}");
            assert!(text.contains("'user-{n}'"), "{help}");
        }
    }

    #[test]
    fn http_needs_a_truth_and_no_trace() {
        assert!(
            bad(&["http", "http://127.0.0.1:9/buy"]).contains("needs the stock to audit against")
        );
        assert!(
            bad(&["http", "http://127.0.0.1:9/buy", "--stock", "1", "--trace"]).contains("--trace")
        );
        assert!(bad(&["http", "ftp://x/buy", "--stock", "1"]).contains("http://"));
    }

    #[test]
    fn trace_and_watch_limits() {
        assert!(bad(&["run", "--trace", "--buyers", "51"]).contains("more than 50"));
        assert!(bad(&["run", "--trace", "--duration", "1"]).contains("--duration"));
        assert!(bad(&["run", "--trace", "/nonexistent-dir/t.jsonl"]).contains("does not exist"));
        assert!(bad(&["run", "--watch", "0"]).contains("--watch"));
        assert!(bad(&["run", "--junit", "/nonexistent-dir/j.xml"]).contains("does not exist"));
    }
}
