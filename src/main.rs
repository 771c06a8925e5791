//! The racelab binary: parse the command line, run the command, map the
//! outcome to an exit code (DESIGN §8). Nothing below calls `process::exit`,
//! so every guard (servers, temp dirs) gets to clean up.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = racelab::cli::Cli::parse();
    match racelab::app::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = racelab::error::exit_code(&err);
            eprintln!("racelab: {}", racelab::error::render(&err));
            ExitCode::from(code)
        }
    }
}
