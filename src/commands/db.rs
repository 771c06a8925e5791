//! `racelab db start|status|url|stop`: the kept cluster that later runs use
//! (DESIGN §3). Output on stdout is the one thing a script wants (the URL).

use crate::cli::DbCommand;
use crate::db::kept::{self, KeptOptions};

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
                println!("{}", info.url);
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
            println!("{}", info.url);
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
        DbCommand::Url => println!("{}", kept::url()?),
        DbCommand::Stop => {
            if rt.block_on(kept::stop())? {
                eprintln!("stopped the kept cluster and deleted its data");
            } else {
                eprintln!("no kept cluster was running");
            }
        }
    }
    Ok(())
}
