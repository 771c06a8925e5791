//! `racelab explain` arguments validated into a plan before anything
//! touches a database: the strategy, the output, and for `--check` the
//! exploration it is held against (2 buyers over every schedule by
//! default, 3 with `--buyers 3` up to 2 preemptions).

use super::db_options;
use super::explore::{ExplorePlan, MAX_BUYERS, MAX_STOCK};
use crate::cli::ExplainArgs;
use crate::error::bad_input;
use crate::report::Output;
use crate::scenario::limits::MAX_QUANTITY;
use crate::strategy::{self, Strategy};

#[derive(Debug)]
pub struct ExplainPlan {
    pub strategy: Strategy,
    pub json: bool,
    /// `--check`: the exploration, ready to run.
    pub check: Option<ExplorePlan>,
    /// With `--check`: try remedies on an unsafe script (each one explored).
    pub remedies: bool,
}

impl ExplainPlan {
    pub fn build(args: &ExplainArgs) -> anyhow::Result<ExplainPlan> {
        let strategy = strategy::load(args.strategy.trim())?;
        if !args.check {
            for (set, flag) in [
                (args.buyers.is_some(), "--buyers"),
                (args.preemptions.is_some(), "--preemptions"),
                (args.no_remedy, "--no-remedy"),
                (args.db.database_url.is_some(), "--database-url"),
            ] {
                if set {
                    return Err(bad_input(format!(
                        "{flag} says how `--check` explores; add --check, or drop {flag}"
                    )));
                }
            }
        }
        let check = if args.check {
            let buyers = args.buyers.unwrap_or(2);
            if !(2..=MAX_BUYERS).contains(&buyers) {
                return Err(bad_input(format!(
                    "--buyers must be between 2 and {MAX_BUYERS} for --check, got {buyers}"
                )));
            }
            // Every schedule of 2 buyers; 3 or more have too many to run
            // them all in a check, so up to 2 preemptions unless asked.
            let default = if buyers <= 2 { "all" } else { "2" };
            let bound =
                super::explore::parse_bound(args.preemptions.as_deref().unwrap_or(default))?;
            if !(0..=MAX_STOCK).contains(&args.stock) {
                return Err(bad_input(format!(
                    "--stock must be between 0 and {MAX_STOCK} for --check, got {}",
                    args.stock
                )));
            }
            if !(1..=MAX_QUANTITY).contains(&args.quantity) {
                return Err(bad_input(format!(
                    "--quantity must be between 1 and {MAX_QUANTITY}, got {}",
                    args.quantity
                )));
            }
            Some(ExplorePlan {
                strategy: strategy.clone(),
                buyers,
                stock: args.stock,
                quantity: args.quantity,
                max_tries: args.max_tries.unwrap_or(super::DEFAULT_MAX_TRIES),
                seed: 1,
                bound,
                schedule: None,
                max_schedules: args.max_schedules,
                expect: None,
                spec: None,
                step: false,
                db: db_options(&args.db, buyers + 3)?,
                output: Output {
                    json: false,
                    save_dir: None,
                    quiet: true,
                    junit: None,
                    trace: false,
                    trace_file: None,
                    histogram: false,
                    wide: false,
                },
            })
        } else {
            None
        };
        Ok(ExplainPlan {
            strategy,
            json: args.json,
            check,
            remedies: !args.no_remedy,
        })
    }
}
