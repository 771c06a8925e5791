//! The command layer `main` calls: each command takes its parsed
//! arguments, builds what it needs (a `Plan` for a race, an `ExplorePlan`),
//! runs it through the modules below, hands what it produced to `report`
//! (through the results sink, `sink`, for every command that produces
//! results), and returns an error for `main` to map to an exit code.
//!
//! - `race`: `run`, `compare`, `http`: one plan, one pipeline, one sink.
//! - `explore`: every interleaving of a few buyers; the same sink.
//! - `catalog`: `list` and `show`; `explain`; `report` (HTML).
//! - `db`: the kept cluster; `serve`: the shop over HTTP; `classroom`: the
//!   live classroom; `proxy`: the wire proxy alone.
//! - `sink`: print, save, trace file, JUnit, interrupt, `--expect`.

pub mod catalog;
pub mod classroom;
pub mod db;
pub mod explain;
pub mod explore;
pub mod proxy;
pub mod race;
pub mod report;
pub mod serve;
pub mod sink;

use crate::cli::{Cli, Command};
use crate::plan::explore::ExplorePlan;
use crate::plan::Plan;

/// Run a command; errors come back classified (see `plan::classify`).
pub fn main(cli: Cli) -> anyhow::Result<()> {
    dispatch(cli).map_err(crate::plan::classify)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => race::race(Plan::run(&args)?),
        Command::Compare(args) => race::race(Plan::compare(&args)?),
        Command::Http(args) => race::race(Plan::http(&args)?),
        Command::Explore(args) => explore::explore(&ExplorePlan::build(&args)?),
        Command::List => catalog::list(),
        Command::Show { strategy } => catalog::show(&strategy),
        Command::Explain { strategy } => explain::explain(&strategy),
        Command::Report(args) => report::report(&args),
        Command::Db { command } => db::db(command),
        Command::Serve(args) => serve::serve(&args),
        Command::Classroom(args) => classroom::classroom(&args),
        Command::Proxy(args) => proxy::proxy(&args),
    }
}
