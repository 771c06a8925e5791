//! `racelab explore` arguments validated into a plan before anything
//! touches the database: bad input fails here with exit code 2.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{db_options, DEFAULT_MAX_TRIES};
use crate::cli::ExploreArgs;
use crate::db::DbOptions;
use crate::error::bad_input;
use crate::report::Output;
use crate::scenario::limits::MAX_QUANTITY;
use crate::strategy::{self, Strategy};
use crate::verdict::Expect;

/// More buyers than this make even a bounded space too big to run.
pub const MAX_BUYERS: u32 = 8;
/// A lab of this many units is plenty for a few buyers.
pub const MAX_STOCK: i64 = 100_000;
/// A bound beyond this is `all` in all but name.
pub const MAX_BOUND: u32 = 1_000;

#[derive(Debug)]
pub struct ExplorePlan {
    pub strategy: Strategy,
    pub buyers: u32,
    pub stock: i64,
    pub quantity: i64,
    pub max_tries: u32,
    pub seed: u64,
    /// At most this many preemptions; `None`: every schedule.
    pub bound: Option<u32>,
    /// `--schedule`: the one schedule to replay (a prefix; the default
    /// policy goes on after it).
    pub schedule: Option<Vec<u32>>,
    pub max_schedules: u64,
    pub expect: Option<Expect>,
    pub spec: Option<PathBuf>,
    pub step: bool,
    pub db: DbOptions,
    /// `--json`, `--out`/`--no-save`, `--quiet`, `--junit`, `--trace`.
    pub output: Output,
}

impl ExplorePlan {
    pub fn build(args: &ExploreArgs) -> anyhow::Result<ExplorePlan> {
        let strategy = strategy::load(args.strategy.trim())?;
        if let Some(line) = strategy.program.first_redis_line() {
            return Err(bad_input(format!(
                "explore schedules SQL statements only, and `{}` sends \\redis commands (line {line}); race it with `racelab run --strategy {}` instead",
                strategy.name, strategy.name
            )));
        }
        if !(1..=MAX_BUYERS).contains(&args.buyers) {
            return Err(bad_input(format!(
                "--buyers must be between 1 and {MAX_BUYERS} for explore (every interleaving of more is too many to run), got {}",
                args.buyers
            )));
        }
        if !(0..=MAX_STOCK).contains(&args.stock) {
            return Err(bad_input(format!(
                "--stock must be between 0 and {MAX_STOCK} for explore, got {}",
                args.stock
            )));
        }
        if !(1..=MAX_QUANTITY).contains(&args.quantity) {
            return Err(bad_input(format!(
                "--quantity must be between 1 and {MAX_QUANTITY}, got {}",
                args.quantity
            )));
        }
        let bound = parse_bound(&args.preemptions)?;
        let schedule = args
            .schedule
            .as_deref()
            .map(|s| parse_schedule(s, args.buyers))
            .transpose()?;
        if args.max_schedules == 0 {
            return Err(bad_input("--max-schedules must be at least 1"));
        }
        if args.step {
            if args.output.json {
                return Err(bad_input(
                    "--step is interactive and cannot print --json; drop one of them",
                ));
            }
            if !std::io::stdin().is_terminal() {
                return Err(bad_input(
                    "--step waits for Enter between steps and needs a terminal on stdin; \
                     run it in a terminal, or replay a schedule with --schedule",
                ));
            }
        }
        if let Some(spec) = &args.spec {
            crate::report::save::check_output_file("--spec", spec)?;
        }
        // The buyers, the monitor, and one for preparing the lab.
        let db = db_options(&args.db, args.buyers + 3)?;
        let output = super::output_of(&args.output, &Default::default())?;
        Ok(ExplorePlan {
            strategy,
            buyers: args.buyers,
            stock: args.stock,
            quantity: args.quantity,
            max_tries: args.max_tries.unwrap_or(DEFAULT_MAX_TRIES),
            seed: args.seed,
            bound,
            schedule,
            max_schedules: args.max_schedules,
            expect: args.expect.map(super::expect_of),
            spec: args.spec.clone(),
            step: args.step,
            db,
            output,
        })
    }
}

/// `--preemptions`: a number or `all`.
pub fn parse_bound(text: &str) -> anyhow::Result<Option<u32>> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    match t.parse::<u32>() {
        Ok(p) if p <= MAX_BOUND => Ok(Some(p)),
        _ => Err(bad_input(format!(
            "--preemptions takes a number from 0 to {MAX_BOUND} or `all`, got {text:?}"
        ))),
    }
}

/// `--schedule "1 2 1"`: buyer numbers separated by spaces or commas.
pub fn parse_schedule(text: &str, buyers: u32) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for (i, word) in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        let step = i + 1;
        let b: u32 = word.parse().map_err(|_| {
            bad_input(format!(
                "--schedule: step {step} is {word:?}, not a buyer number; give buyer numbers like \"1 1 2 1\""
            ))
        })?;
        if b == 0 || b > buyers {
            return Err(bad_input(format!(
                "--schedule: step {step} names buyer {b}, but there {} (1 to {buyers}); \
                 add --buyers {b} or fix the schedule",
                if buyers == 1 {
                    "is only 1 buyer".to_string()
                } else {
                    format!("are only {buyers} buyers")
                }
            )));
        }
        out.push(b);
    }
    if out.is_empty() {
        return Err(bad_input(
            "--schedule is empty: give the buyer of each step, like \"1 1 2 1\"",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(parse_bound("2").unwrap(), Some(2));
        assert_eq!(parse_bound(" ALL ").unwrap(), None);
        for bad in ["-1", "x", "", "1001"] {
            let e = parse_bound(bad).unwrap_err();
            assert!(e.is::<crate::error::BadInput>(), "{bad}");
        }
    }

    #[test]
    fn schedules() {
        assert_eq!(parse_schedule("1 2,1  2", 2).unwrap(), [1, 2, 1, 2]);
        let e = parse_schedule("1 3", 2).unwrap_err().to_string();
        assert!(
            e.contains("step 2 names buyer 3") && e.contains("only 2 buyers"),
            "{e}"
        );
        let e = parse_schedule("1 x", 2).unwrap_err().to_string();
        assert!(e.contains("step 2 is \"x\""), "{e}");
        assert!(parse_schedule("  ", 2).is_err());
        assert!(parse_schedule("0", 2).is_err());
    }
}
