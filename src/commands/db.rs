//! `racelab db start|status|url|stop`: the kept cluster that later runs use
//! (DESIGN §3). Output on stdout is the one thing a script wants (the URL).
//! `start` and `url` print it with the cluster's password, for the owner's
//! programs; `status` shows it without.

use crate::cli::DbCommand;
use crate::db::kept::{self, KeptOptions};
use crate::error::bad_input;

pub fn db(command: DbCommand) -> anyhow::Result<()> {
    let rt = crate::engine::runtime()?;
    match command {
        DbCommand::Start {
            pg_bin,
            durable,
            max_connections,
        } => {
            if let Some(info) = kept::status()? {
                eprintln!("a kept cluster is already running (pid {})", info.pid);
                println!("{}", kept::url()?.expose());
                return Ok(());
            }
            let mut opts = KeptOptions::from_env(pg_bin)?;
            opts.durable = durable;
            opts.max_connections = max_connections;
            let info = rt.block_on(kept::start(&opts))?;
            eprintln!(
                "started PostgreSQL {} (pid {}, max_connections {}); runs use it until `racelab db stop`",
                info.server_version, info.pid, info.max_connections
            );
            println!("{}", kept::url_in(&opts.dirs.state_dir)?.expose());
        }
        DbCommand::Status => match kept::status()? {
            Some(info) => println!(
                "running: PostgreSQL {} pid {} since {} at {} (data {})",
                info.server_version,
                info.pid,
                info.started_at,
                info.url,
                info.data_dir.display()
            ),
            None => println!("not running"),
        },
        // The URL with the cluster's password: what the owner's programs
        // need to log in over TCP (see `db::kept`).
        DbCommand::Url => println!("{}", kept::url()?.expose()),
        DbCommand::Stop { force } => {
            if !force {
                let runs = rt.block_on(kept::runs_using())?;
                if !runs.is_empty() {
                    return Err(bad_input(format!(
                        "the kept cluster is in use by {} racelab run{} ({}); stopping it would \
                         fail {}: wait for {} to finish, or stop it anyway with `racelab db stop --force`",
                        runs.len(),
                        if runs.len() == 1 { "" } else { "s" },
                        runs.join("; "),
                        if runs.len() == 1 { "it" } else { "them" },
                        if runs.len() == 1 { "it" } else { "them" },
                    )));
                }
            }
            if rt.block_on(kept::stop())? {
                eprintln!("stopped the kept cluster and deleted its data");
            } else {
                eprintln!("no kept cluster was running");
            }
        }
    }
    Ok(())
}
