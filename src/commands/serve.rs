//! `racelab serve`: the flags validated into a `ShopPlan`, then the shop
//! (`shop`) served until Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::db::DbOptions;
use crate::error::bad_input;
use crate::plan::DEFAULT_MAX_TRIES;
use crate::scenario::{Overrides, Scenario};
use crate::shop::ShopPlan;
use crate::strategy;

/// Most connections `--connections` may ask for.
const MAX_CONNECTIONS: u32 = 1000;

pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let plan = plan(args)?;
    crate::engine::runtime()?.block_on(crate::shop::serve(&plan))
}

/// The flags, validated before anything starts.
fn plan(a: &ServeArgs) -> anyhow::Result<ShopPlan> {
    let strategy = strategy::load(&a.strategy)?;
    let scenario = Scenario::load_with(
        &a.scenario,
        &Overrides {
            stock: a.stock,
            products: a.products,
            think_ms: a.think_ms,
            ..Default::default()
        },
    )?;
    let ip: IpAddr = a.bind.trim().parse().map_err(|_| {
        bad_input(format!(
            "--bind {:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)",
            a.bind
        ))
    })?;
    if !(1..=MAX_CONNECTIONS).contains(&a.connections) {
        return Err(bad_input(format!(
            "--connections must be between 1 and {MAX_CONNECTIONS}, got {}",
            a.connections
        )));
    }
    if let Some(url) = &a.db.database_url {
        crate::db::parse_external_url(url)?;
    }
    Ok(ShopPlan {
        strategy,
        scenario,
        max_tries: a.max_tries.unwrap_or(DEFAULT_MAX_TRIES),
        addr: SocketAddr::new(ip, a.port),
        connections: a.connections,
        db: DbOptions {
            database_url: a.db.database_url.clone(),
            pg_bin: a.db.pg_bin.clone(),
            schema: a.db.schema.clone(),
            durable: a.db.durable,
            connect_timeout: Duration::from_secs_f64(a.db.connect_timeout.clamp(0.1, 3600.0)),
            max_connections: a.connections + 5,
            // The "database:" line hands other programs (a service's
            // --verify-sql) a TCP URL with the cluster's password.
            listen_tcp: true,
        },
        quiet: a.quiet,
    })
}
