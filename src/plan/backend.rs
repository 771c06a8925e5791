//! `racelab http --service CMD` and `--db-proxy ADDR`, validated into a
//! `service::ServicePlan`: the readiness URL (the target's origin unless
//! `--service-ready`), the wait, the log file, the proxy's address.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::HttpArgs;
use crate::error::bad_input;
use crate::report::Output;
use crate::service::ServicePlan;

/// The service plan, when `--service` or `--db-proxy` asks for one.
pub fn backend_of(a: &HttpArgs, output: &Output) -> anyhow::Result<Option<ServicePlan>> {
    let s = &a.service;
    if s.service.is_none() && s.db_proxy.is_none() {
        if s.service_ready.is_some() || s.db_record.is_some() {
            return Err(bad_input(
                "--service-ready and --db-record go with --service CMD or --db-proxy ADDR",
            ));
        }
        return Ok(None);
    }
    if let Some(cmd) = &s.service {
        if cmd.trim().is_empty() {
            return Err(bad_input(
                "--service is empty: give the command that starts the service",
            ));
        }
    }
    let target = reqwest::Url::parse(&a.url)
        .map_err(|e| bad_input(format!("{:?} is not a URL: {e}", a.url)))?;
    let ready = match &s.service_ready {
        Some(u) => reqwest::Url::parse(u)
            .map_err(|e| bad_input(format!("--service-ready {u:?} is not a URL: {e}")))?,
        None => {
            let mut origin = target.clone();
            origin.set_path("/");
            origin.set_query(None);
            origin
        }
    };
    if !(s.service_timeout.is_finite() && s.service_timeout > 0.0 && s.service_timeout <= 3600.0) {
        return Err(bad_input(format!(
            "--service-timeout must be between 0 and 3600 seconds, got {}",
            s.service_timeout
        )));
    }
    let listen: SocketAddr = match &s.db_proxy {
        Some(addr) => addr.trim().parse().map_err(|_| {
            bad_input(format!(
                "--db-proxy {addr:?} is not an address: expected IP:PORT, e.g. 127.0.0.1:6543"
            ))
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]"
        ))
        .unwrap_or_default();
    let dir = output
        .save_dir
        .clone()
        .unwrap_or_else(|| a.output.out.clone());
    let log = s
        .service_log
        .clone()
        .unwrap_or_else(|| dir.join(format!("service-{stamp}-{}.log", std::process::id())));
    if s.service.is_some() && s.service_log.is_none() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            bad_input(format!(
                "--out {}: cannot hold the service's log ({e}); pick another --out or --service-log",
                dir.display()
            ))
        })?;
    }
    Ok(Some(ServicePlan {
        command: s.service.clone(),
        ready,
        ready_timeout: Duration::from_secs_f64(s.service_timeout),
        log,
        listen,
        database_url: a.truth.database_url.clone(),
        record: s.db_record.clone(),
    }))
}
