//! Raw arguments become a validated `Plan` before anything touches the
//! database: bad input fails here, in milliseconds, with exit code 2.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{CommonArgs, DbArgs, Expect, OutputArgs};
use crate::db::DbOptions;
use crate::error::bad_input;
use crate::scenario::Scenario;
use crate::strategy::{self, Strategy};

/// Default tries per attempt (DESIGN §4).
pub const DEFAULT_MAX_TRIES: u32 = 10;
/// Ceiling on `--repeat`.
pub const MAX_REPEAT: u32 = 10_000;

#[derive(Debug)]
pub struct Plan {
    pub strategies: Vec<Strategy>,
    pub scenario: Scenario,
    pub max_tries: u32,
    pub seed: u64,
    /// Per-statement limit in milliseconds; 0 = none.
    pub timeout_ms: u64,
    pub repeat: u32,
    pub expect: Option<Expect>,
    /// Saved runs to compare latency and throughput with (`--baseline`).
    pub baseline: Vec<crate::report::RunResult>,
    pub max_regression: f64,
    pub db: DbOptions,
    pub output: Output,
    /// `compare`: always print the side-by-side table.
    pub compare: bool,
    /// `--watch MS`: sample stock and units sold every MS milliseconds.
    pub watch_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub json: bool,
    /// Where result files go; None with `--no-save`.
    pub save_dir: Option<PathBuf>,
    pub quiet: bool,
    pub junit: Option<PathBuf>,
    /// `--trace`: record every statement and print the timeline.
    pub trace: bool,
    /// `--trace FILE`: also write the events as JSON lines.
    pub trace_file: Option<PathBuf>,
    /// `--histogram`: latency bar charts in the terminal.
    pub histogram: bool,
}

impl Plan {
    /// Validate `run` / `compare` arguments into a plan.
    pub fn build(
        strategy_specs: &[String],
        common: &CommonArgs,
        compare: bool,
    ) -> anyhow::Result<Plan> {
        let specs: Vec<String> = if strategy_specs.is_empty() {
            strategy::builtins()
                .iter()
                .map(|(n, _)| n.to_string())
                .collect()
        } else {
            strategy_specs
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

        let sargs = &common.scenario;
        let scenario = Scenario::load(&sargs.scenario)?.with_overrides(sargs)?;

        if common.repeat == 0 || common.repeat > MAX_REPEAT {
            return Err(bad_input(format!(
                "--repeat must be between 1 and {MAX_REPEAT}, got {}",
                common.repeat
            )));
        }
        let db = db_options(&common.db, scenario.connections_needed() + 5)?;
        if !(common.max_regression.is_finite() && common.max_regression >= 0.0) {
            return Err(bad_input(format!(
                "--max-regression must be a percentage of 0 or more, got {}",
                common.max_regression
            )));
        }
        let baseline = if common.baseline.is_empty() {
            Vec::new()
        } else {
            crate::report::baseline::load(&common.baseline)?
        };
        let output = Output::from_args(&common.output)?;

        crate::trace::check_options(common, &scenario)?;

        Ok(Plan {
            strategies,
            max_tries: sargs.max_tries.unwrap_or(DEFAULT_MAX_TRIES),
            seed: sargs.seed.unwrap_or_else(rand::random),
            timeout_ms: sargs.timeout.unwrap_or(0),
            repeat: common.repeat,
            expect: common.expect,
            baseline,
            max_regression: common.max_regression,
            db,
            scenario,
            output,
            compare,
            watch_ms: common.watch,
        })
    }
}

/// Validate the database flags: the connect timeout and the URL.
/// `max_connections` sizes an embedded cluster.
pub fn db_options(db: &DbArgs, max_connections: u32) -> anyhow::Result<DbOptions> {
    if !(db.connect_timeout.is_finite() && db.connect_timeout > 0.0 && db.connect_timeout <= 3600.0)
    {
        return Err(bad_input(format!(
            "--connect-timeout must be between 0 and 3600 seconds, got {}",
            db.connect_timeout
        )));
    }
    if let Some(url) = &db.database_url {
        crate::db::parse_external_url(url)?;
    }
    Ok(DbOptions {
        database_url: db.database_url.clone(),
        pg_bin: db.pg_bin.clone(),
        schema: db.schema.clone(),
        durable: db.durable,
        connect_timeout: Duration::from_secs_f64(db.connect_timeout),
        max_connections,
    })
}

impl Output {
    /// Validate the output flags: the results directory is writable and
    /// the JUnit file's directory exists.
    pub fn from_args(out: &OutputArgs) -> anyhow::Result<Output> {
        let save_dir = (!out.no_save).then(|| out.out.clone());
        if let Some(dir) = &save_dir {
            crate::report::save::check_writable(dir)?;
        }
        if let Some(junit) = &out.junit {
            let parent = junit.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent {
                if !parent.is_dir() {
                    return Err(bad_input(format!(
                        "--junit {}: directory {} does not exist",
                        junit.display(),
                        parent.display()
                    )));
                }
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
}
