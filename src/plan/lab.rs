//! The SQL lab's flags (`run`, `compare`): the strategies to race, the
//! server, the statement limit, `--watch`, the faults and `--via
//! pgbouncer`, validated into a `lab::Lab`.

use super::{db_options, DEFAULT_MAX_TRIES};
use crate::cli::{self, CommonArgs, SqlArgs};
use crate::db::pgbouncer::{self, PgBouncerOptions, PoolMode};
use crate::error::bad_input;
use crate::lab::{Faults, Lab};
use crate::run::Pipeline;
use crate::strategy::{self, Strategy};
use crate::trace::MAX_TRACED_BUYERS;

/// The strategies to race, loaded and parsed: the names given, or every
/// built-in.
pub(super) fn strategies_of(specs: &[String]) -> anyhow::Result<Vec<Strategy>> {
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
pub(super) fn lab_of(
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

#[cfg(test)]
mod tests {
    use super::super::tests::{bad, plan};
    use super::*;
    use crate::plan::TargetPlan;

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
    fn trace_and_watch_limits() {
        assert!(bad(&["run", "--trace", "--buyers", "51"]).contains("more than 50"));
        assert!(bad(&["run", "--trace", "--duration", "1"]).contains("--duration"));
        assert!(bad(&["run", "--trace", "/nonexistent-dir/t.jsonl"]).contains("does not exist"));
        assert!(bad(&["run", "--watch", "0"]).contains("--watch"));
        assert!(bad(&["run", "--junit", "/nonexistent-dir/j.xml"]).contains("does not exist"));
    }
}
