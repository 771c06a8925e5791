//! `racelab classroom`: the flags validated into a `ClassroomPlan`, then
//! the classroom (`classroom`) served until Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::classroom::plan::{host_of, lan_address, ClassroomPlan, MAX_BUYERS, OWN_CONNECTIONS};
use crate::cli::ClassroomArgs;
use crate::error::bad_input;
use crate::strategy;

pub fn classroom(args: &ClassroomArgs) -> anyhow::Result<()> {
    crate::classroom::run(plan(args)?)
}

/// The flags, validated before anything starts.
fn plan(a: &ClassroomArgs) -> anyhow::Result<ClassroomPlan> {
    let ip: IpAddr = a.bind.trim().parse().map_err(|_| {
        bad_input(format!(
            "--bind {:?} is not an IP address (127.0.0.1 for this machine only, 0.0.0.0 for the whole network)",
            a.bind
        ))
    })?;
    if !(1..=MAX_BUYERS).contains(&a.max_buyers) {
        return Err(bad_input(format!(
            "--max-buyers must be between 1 and {MAX_BUYERS}, got {}",
            a.max_buyers
        )));
    }
    if !(1..=86_400).contains(&a.open_seconds) {
        return Err(bad_input(format!(
            "--open-seconds must be between 1 and 86400, got {}",
            a.open_seconds
        )));
    }
    let url_host = match &a.url_host {
        Some(h) => host_of(h)?,
        None if ip.is_unspecified() => lan_address()
            .map(|v4| v4.to_string())
            .unwrap_or_else(|| "127.0.0.1".to_string()),
        None => match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        },
    };
    let mut strategies = Vec::new();
    for (name, _) in strategy::builtins() {
        strategies.push(strategy::load(name)?);
    }
    for file in &a.strategies {
        let s = strategy::load(&file.display().to_string())?;
        if strategies.iter().any(|o| o.name == s.name) {
            return Err(bad_input(format!(
                "--strategy {}: a strategy named `{}` is already on offer; rename the file",
                file.display(),
                s.name
            )));
        }
        strategies.push(s);
    }
    let save_dir = (!a.no_save).then(|| a.out.clone());
    if let Some(dir) = &save_dir {
        crate::report::save::check_writable(dir)?;
    }
    let db = crate::plan::db_options(&a.db, a.max_buyers + OWN_CONNECTIONS)?;
    Ok(ClassroomPlan {
        addr: SocketAddr::new(ip, a.port),
        url_host,
        strategies,
        max_buyers: a.max_buyers,
        open_for: Duration::from_secs(a.open_seconds),
        max_tries: a.max_tries.unwrap_or(crate::plan::DEFAULT_MAX_TRIES),
        save_dir,
        db,
    })
}
