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
//! - `manual`: `man` and `completions`; `schema` (hidden, the generator in `schema`) prints the
//!   result schema generated from the result types.
//! - `sink`: print, save, trace file, JUnit, interrupt, `--expect`.

pub mod catalog;
pub mod classroom;
pub mod db;
pub mod explain;
pub mod explore;
pub mod manual;
pub mod proxy;
pub mod race;
pub mod report;
pub mod schema;
pub mod serve;
pub mod sink;

use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};

use crate::cli::{Cli, Command, DbArgs};
use crate::plan::explore::ExplorePlan;
use crate::plan::explore_service::ServiceExplorePlan;
use crate::plan::Plan;

/// Run the command of parsed arguments, knowing where their values came
/// from (a `DATABASE_URL` from the environment is said out loud).
pub fn main_matches(matches: &ArgMatches) -> anyhow::Result<()> {
    let mut cli = Cli::from_arg_matches(matches)?;
    if let Some(db) = db_args(&mut cli.command) {
        db.url_from_env = from_env(matches, "database_url");
    }
    main(cli)
}

/// Run a command; errors come back classified (see `plan::classify`).
pub fn main(cli: Cli) -> anyhow::Result<()> {
    // Said once the flags hold (bad input stays one line), before any
    // server is reached.
    let note = env_url_note(&cli.command);
    let say = || {
        if let Some(note) = &note {
            eprintln!("{note}");
        }
    };
    dispatch(cli, say).map_err(crate::plan::classify)
}

/// The server flags of a command that takes them.
fn db_args(command: &mut Command) -> Option<&mut DbArgs> {
    match command {
        Command::Run(a) => Some(&mut a.common.db),
        Command::Compare(a) => Some(&mut a.common.db),
        Command::Explore(a) => Some(&mut a.db),
        Command::Serve(a) => Some(&mut a.db),
        _ => None,
    }
}

/// Whether the subcommand's argument `id` took its value from the
/// environment.
fn from_env(matches: &ArgMatches, id: &str) -> bool {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m.try_get_raw(id).is_ok_and(|v| v.is_some())
        && m.value_source(id) == Some(ValueSource::EnvVariable)
}

/// The notice, first thing on stderr, that the server is the one an
/// exported `DATABASE_URL` names (an application shell's, often), not
/// one racelab starts; silenced by `--quiet`.
fn env_url_note(command: &Command) -> Option<String> {
    let (db, quiet) = match command {
        Command::Run(a) => (&a.common.db, a.common.output.quiet),
        Command::Compare(a) => (&a.common.db, a.common.output.quiet),
        Command::Explore(a) => (&a.db, a.output.quiet),
        Command::Serve(a) => (&a.db, a.quiet),
        _ => return None,
    };
    let url = db
        .database_url
        .as_deref()
        .filter(|_| db.url_from_env && !quiet)?;
    Some(format!(
        "racelab: using DATABASE_URL from the environment: {} (a server racelab did not \
         start; it works only in schema \"{}\" there, which `racelab db clean` removes); \
         pass --database-url to choose the server explicitly",
        crate::db::redact_url(url),
        db.schema
    ))
}

fn dispatch(cli: Cli, say: impl Fn()) -> anyhow::Result<()> {
    let planned = |plan: Plan| {
        say();
        plan
    };
    match cli.command {
        Command::Run(args) => race::race(planned(Plan::run(&args)?)),
        Command::Compare(args) => race::race(planned(Plan::compare(&args)?)),
        Command::Http(args) if args.explore.explore => {
            explore::explore_service(ServiceExplorePlan::build(&args)?)
        }
        Command::Http(args) => race::race(Plan::http(&args)?),
        Command::Explore(args) => {
            let plan = ExplorePlan::build(&args)?;
            say();
            explore::explore(&plan)
        }
        Command::List { json } => catalog::list(json),
        Command::Show { strategy } => catalog::show(&strategy),
        Command::Explain(args) => explain::explain(&args),
        Command::Report(args) => report::report(&args),
        Command::Db { command } => db::db(command),
        Command::Serve(args) => {
            say();
            serve::serve(&args)
        }
        Command::Classroom(args) => classroom::classroom(&args),
        Command::Man { command } => manual::man(command.as_deref()),
        Command::Completions { shell } => manual::completions(shell),
        Command::Schema => schema(),
        Command::Proxy(args) => proxy::proxy(&args),
    }
}

/// `racelab schema`: the result schema, generated (`commands::schema`).
fn schema() -> anyhow::Result<()> {
    crate::report::emit(&schema::json());
    Ok(())
}
