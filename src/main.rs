//! The racelab binary: parse the command line, run the command, map the
//! outcome to an exit code (DESIGN §8). Nothing below calls `process::exit`,
//! so every guard (servers, temp dirs) gets to clean up.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = racelab::cli::Cli::parse();
    let outcome = racelab::commands::main(cli);
    racelab::timings::report(started);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = racelab::error::exit_code(&err);
            eprintln!("racelab: {}", racelab::error::render(&err));
            ExitCode::from(code)
        }
    }
}
