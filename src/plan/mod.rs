//! One plan builder for every target kind: the scenario and its
//! overrides, the target (the SQL lab with a list of strategies, or an
//! HTTP service), the gate and the output, validated before anything
//! touches a database or a network: bad input fails here, in
//! milliseconds, with exit code 2. This is the one place that reads the
//! `cli` types of a race; what it builds (`run::Pipeline`, `lab::Lab`,
//! `http::Service`, `scenario::Overrides`, `db::DbOptions`) is plain.
//!
//! - `lab`: the SQL lab's flags (`run`, `compare`).
//! - `service`: `http`'s flags; `backend`: its `--service` / `--db-proxy`.
//! - `explore`: `explore`'s flags.
//!
//! A new target kind adds its file here and a `TargetPlan` variant.

mod backend;
pub mod explain;
pub mod explore;
pub mod explore_service;
mod lab;
mod service;

use std::time::Duration;

use crate::cli::{
    self, CommonArgs, DbArgs, GateArgs, HttpArgs, OutputArgs, ScenarioArgs, TableArgs,
};
use crate::db::DbOptions;
use crate::error::{bad_input, Diagnostic};
use crate::http;
use crate::lab::Lab;
use crate::report::group::Key;
use crate::report::{Output, RunResult};
use crate::result::Topology;
use crate::run::Pipeline;
use crate::scenario::{Overrides, Scenario, ScenarioError};
use crate::strategy::{ParseError, Strategy};
use crate::verdict::{Expect, Gate};
use lab::{lab_of, strategies_of};
use service::{request_of, service_of, Request};

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
    /// `--allow-missing`: a strategy without a baseline run passes.
    pub allow_missing: bool,
    pub output: Output,
    /// Print the side-by-side table: `compare`, or several repetitions.
    pub grouped: bool,
    /// `http --service` / `--db-proxy`: the service behind the wire proxy.
    pub backend: Option<crate::service::ServicePlan>,
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

    fn tables(&self) -> &'a TableArgs {
        match self {
            RaceArgs::Lab { args, .. } => &args.tables,
            RaceArgs::Http(a) => &a.tables,
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
    let scenario = Scenario::load_with(&sargs.scenario, &overrides(&args))?;
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
    let output = output_of(args.output(), args.tables())?;
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
    let mut backend = None;
    let (target, grouped) = match target {
        Target::Lab(strategies, a) => {
            let lab = lab_of(strategies, a, &mut pipeline)?;
            let compare = matches!(args, RaceArgs::Lab { compare: true, .. });
            (TargetPlan::Lab(Box::new(lab)), compare || gate.repeat > 1)
        }
        Target::Http(request, a) => {
            backend = backend::backend_of(a, &output)?;
            let service = service_of(request, a, &output, &mut pipeline, backend.is_some())?;
            (TargetPlan::Http(Box::new(service)), gate.repeat > 1)
        }
    };
    open_files_for(&pipeline.scenario, &target)?;
    let baseline = if gate.baseline.is_empty() {
        Vec::new()
    } else {
        let key = match &target {
            TargetPlan::Lab(lab) => Key::new(
                &pipeline.scenario,
                pipeline.max_tries,
                lab.via
                    .as_ref()
                    .map(|v| Topology::pgbouncer(v.pool_mode, v.pool_size)),
                None,
            ),
            TargetPlan::Http(service) => Key::new(
                &pipeline.scenario,
                pipeline.max_tries,
                None,
                Some(service.lanes.flow.target()),
            ),
        };
        let runs = crate::report::baseline::load(&gate.baseline)?;
        crate::report::baseline::comparable(&gate.baseline, runs, &key)?
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
        allow_missing: gate.allow_missing,
        output,
        grouped,
        backend,
    })
}

/// The most connections of its own a race may open to a cluster racelab
/// starts (no `--database-url`): each is a server process of a few
/// megabytes, on the same machine as racelab; a kept cluster's default
/// `max_connections` is the same.
pub const MAX_EMBEDDED_CONNECTIONS: u32 = 1_000;

/// Check (and raise, where it can) the process's limit on open files for
/// the race's connections: one per buyer (or per pooled connection), and
/// one more per buyer for Redis; refuse the race, before anything starts,
/// when the hard limit is too low, or when a cluster racelab starts would
/// need more server processes than `MAX_EMBEDDED_CONNECTIONS`.
fn open_files_for(sc: &Scenario, target: &TargetPlan) -> anyhow::Result<()> {
    use crate::engine::limits::{ensure_open_files, SPARE_FILES};
    let (connections, redis, lab) = match target {
        TargetPlan::Lab(lab) => {
            let redis = lab.strategies.iter().any(|s| s.program.uses_redis());
            (sc.connections_needed(), redis.then_some(sc.buyers), true)
        }
        TargetPlan::Http(_) => (sc.buyers, None, false),
    };
    let embedded = matches!(target, TargetPlan::Lab(l) if l.db.database_url.is_none());
    if embedded && connections > MAX_EMBEDDED_CONNECTIONS {
        return Err(bad_input(format!(
            "--buyers {} would open {connections} connections, one per buyer, and a cluster \
             racelab starts takes at most {MAX_EMBEDDED_CONNECTIONS} (each is a server \
             process): share a pool with --connections {MAX_EMBEDDED_CONNECTIONS} (or fewer), \
             or race a server of your own with --database-url",
            sc.buyers
        )));
    }
    let needed = u64::from(connections) + u64::from(redis.unwrap_or(0)) + SPARE_FILES;
    let Err(lim) = ensure_open_files(needed) else {
        return Ok(());
    };
    let per = if redis.is_some() { 2 } else { 1 };
    let fit = lim.hard.saturating_sub(SPARE_FILES) / per;
    let fix = if lab {
        format!(
            "share a pool of connections with --connections {}",
            fit.max(1)
        )
    } else {
        format!("race fewer buyers (--buyers {})", fit.max(1))
    };
    Err(bad_input(format!(
        "this race needs about {} open files at once ({} connections{}), but this process may \
         open at most {} (ulimit -Hn): {fix}, or raise the limit",
        lim.needed,
        connections,
        if redis.is_some() {
            " and one to Redis per buyer"
        } else {
            ""
        },
        lim.hard
    )))
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

pub fn connect_timeout(secs: f64) -> anyhow::Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(bad_input(format!(
            "--connect-timeout must be between 0 and 3600 seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Validate the output flags: the results directory is writable, the
/// JUnit and trace files' directories exist.
pub fn output_of(out: &OutputArgs, tables: &TableArgs) -> anyhow::Result<Output> {
    let save_dir = (!out.no_save).then(|| out.out.clone());
    if let Some(dir) = &save_dir {
        crate::report::save::check_writable(dir)?;
    }
    for (flag, file) in [
        ("--junit", out.junit.as_ref()),
        ("--trace", out.trace.as_ref().and_then(|f| f.as_ref())),
    ] {
        let Some(file) = file else { continue };
        crate::report::save::check_output_file(flag, file)?;
    }
    Ok(Output {
        json: out.json,
        save_dir,
        quiet: out.quiet,
        junit: out.junit.clone(),
        trace: out.trace.is_some(),
        trace_file: out.trace.clone().flatten(),
        histogram: tables.histogram,
        wide: tables.wide,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The plan of a command line (`--no-save` added: nothing is written).
    pub(super) fn plan(args: &[&str]) -> anyhow::Result<Plan> {
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

    pub(super) fn bad(args: &[&str]) -> String {
        let e = plan(args).expect_err("bad input");
        assert_eq!(crate::error::exit_code(&e), 2, "{e:#}");
        crate::error::render(&e)
    }

    #[test]
    fn scenario_errors_are_bad_input_naming_the_flag() {
        assert!(bad(&["run", "--buyers", "0"]).starts_with("--buyers:"));
        assert!(bad(&["http", "http://127.0.0.1:1/buy", "--stock", "-1"]).starts_with("--stock:"));
        assert!(bad(&["compare", "--scenario", "last-iten"]).contains("did you mean `last-item`"));
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
}
