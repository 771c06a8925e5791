//! `racelab db start|status|url|stop`: the kept cluster that later runs use
//! (DESIGN §3). Output on stdout is the one thing a script wants (the URL,
//! or with `status --json` the status as JSON). `racelab db clean`: remove
//! racelab's schema and Redis keys from a server it did not start. `start` and
//! `url` print the URL with the cluster's password, for the owner's
//! programs; `status` shows it without.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::DbCommand;
use crate::db::kept::{self, KeptInfo, KeptOptions};
use crate::error::{bad_input, ExpectationFailed};

/// `racelab db status --json` (docs/cli.schema.json, `$defs/db_status`).
#[derive(Debug, Serialize)]
pub struct Status {
    /// Whether a kept cluster is running.
    pub running: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
}

/// The running kept cluster.
#[derive(Debug, Serialize)]
pub struct Cluster {
    /// The URL any program connects with.
    pub url: String,
    pub pid: u32,
    pub port: u16,
    pub server_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub data_dir: PathBuf,
    pub durable: bool,
    pub max_connections: u32,
}

impl Status {
    fn of(info: Option<&KeptInfo>) -> Status {
        Status {
            running: info.is_some(),
            cluster: info.map(|i| Cluster {
                url: i.url.clone(),
                pid: i.pid,
                port: i.port,
                server_version: i.server_version.clone(),
                started_at: i.started_at.clone(),
                data_dir: i.data_dir.clone(),
                durable: i.durable,
                max_connections: i.max_connections,
            }),
        }
    }
}

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
        DbCommand::Status { json } => {
            let info = kept::status()?;
            if json {
                let status = Status::of(info.as_ref());
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).expect("a status serializes")
                );
            } else {
                match &info {
                    Some(info) => println!(
                        "running: PostgreSQL {} pid {} since {} at {} (data {})",
                        info.server_version,
                        info.pid,
                        info.started_at,
                        info.url,
                        info.data_dir.display()
                    ),
                    None => println!("not running"),
                }
            }
            if info.is_none() {
                return Err(ExpectationFailed(
                    "no kept cluster is running; start one with `racelab db start`".into(),
                )
                .into());
            }
        }
        // The URL with the cluster's password: what the owner's programs
        // need to log in over TCP (see `db::kept`).
        DbCommand::Url => println!("{}", kept::url()?.expose()),
        DbCommand::Clean {
            database_url,
            schema,
            redis_url,
            connect_timeout,
        } => {
            let Some(url) = database_url else {
                return Err(bad_input(
                    "racelab db clean needs --database-url URL (or DATABASE_URL): the server to \
                     remove racelab's schema from (the embedded and kept clusters are racelab's \
                     own: `racelab db stop` deletes the kept one)",
                ));
            };
            let timeout = crate::plan::connect_timeout(connect_timeout)?;
            let cleaned = rt.block_on(crate::db::clean::clean(
                &url,
                &schema,
                redis_url.as_deref(),
                timeout,
            ))?;
            crate::report::emit(&cleaned_text(&url, &schema, &cleaned));
        }
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

/// What `db clean` removed, in words, one line each.
fn cleaned_text(url: &str, schema: &str, c: &crate::db::clean::Cleaned) -> String {
    let server = crate::db::redact_url(url);
    let mut out = match &c.tables {
        None => format!("{server}: no schema \"{schema}\": nothing to remove\n"),
        Some(tables) => {
            let list: Vec<String> = tables
                .iter()
                .map(|(t, n)| {
                    format!(
                        "{t} ({})",
                        crate::verdict::counted(*n as u64, "row", "rows")
                    )
                })
                .collect();
            format!(
                "{server}: dropped schema \"{schema}\" and its {}: {}\n",
                crate::verdict::noun(tables.len() as i64, "table", "tables"),
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            )
        }
    };
    if let Some(n) = c.redis_keys {
        out.push_str(&format!(
            "Redis: deleted {} under \"{schema}:\"\n",
            crate::verdict::counted(n, "key", "keys")
        ));
    }
    out
}
