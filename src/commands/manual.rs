//! `racelab man` and `racelab completions SHELL`: the manual page (roff,
//! from the same clap definitions as `--help`, clap_mangen) and the shell
//! completion scripts (clap_complete), as ripgrep and hyperfine ship them.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::bad_input;

/// `racelab man [COMMAND]`: racelab(1), or the page of one subcommand
/// (`racelab-run(1)`), on stdout.
pub fn man(command: Option<&str>) -> anyhow::Result<()> {
    let mut racelab = Cli::command();
    racelab.build();
    let page = match command {
        None => racelab,
        Some(name) => {
            let Some(sub) = racelab.find_subcommand(name).cloned() else {
                let names: Vec<String> = racelab
                    .get_subcommands()
                    .filter(|c| !c.is_hide_set() && c.get_name() != "help")
                    .map(|c| c.get_name().to_string())
                    .collect();
                let hint = crate::suggest::did_you_mean("", name, names.iter().map(String::as_str));
                return Err(bad_input(format!(
                    "man {name}: no such command{hint}; a page exists for: {}",
                    names.join(", ")
                )));
            };
            let full = format!("racelab-{}", sub.get_name());
            sub.name(full)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    crate::report::emit(&String::from_utf8_lossy(&roff));
    Ok(())
}

/// `racelab completions SHELL`: the completion script on stdout.
pub fn completions(shell: Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "racelab", &mut script);
    crate::report::emit(&String::from_utf8_lossy(&script));
    Ok(())
}
