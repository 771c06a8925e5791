//! `racelab http URL --explore` validated into a plan: the race plan of
//! `http` (the request or flow, the truth, the resets, the service behind
//! the wire proxy) and what exploring adds. Bad input fails here, exit 2.

use std::path::PathBuf;
use std::time::Duration;

use super::explore::{parse_bound, parse_schedule};
use super::{expect_of, Plan, TargetPlan};
use crate::cli::HttpArgs;
use crate::error::bad_input;
use crate::verdict::Expect;

/// More requests than this make every interleaving too many to run.
pub const MAX_BUYERS: u32 = 4;
/// `--settle-ms` when not given.
pub const DEFAULT_SETTLE_MS: u64 = 500;

#[derive(Debug)]
pub struct ServiceExplorePlan {
    /// The race plan of the same flags: the service, its truth and resets,
    /// the pipeline's seed and quantity, the output.
    pub race: Plan,
    pub buyers: u32,
    pub bound: Option<u32>,
    pub schedule: Option<Vec<u32>>,
    pub max_schedules: u64,
    pub settle: Duration,
    pub expect: Option<Expect>,
    pub spec: Option<PathBuf>,
    /// The request as the result names it: method and URL.
    pub name: String,
}

impl ServiceExplorePlan {
    pub fn build(a: &HttpArgs) -> anyhow::Result<ServiceExplorePlan> {
        let race = Plan::http(a)?;
        if race.backend.is_none() {
            return Err(bad_input(
                "--explore schedules the service's SQL through racelab's wire proxy: add --service CMD \
                 (racelab starts it) or --db-proxy ADDR (you start it with the proxy's DATABASE_URL)",
            ));
        }
        let TargetPlan::Http(service) = &race.target else {
            unreachable!("http builds an http target");
        };
        if service.reset_url.is_none() && service.reset_sql.is_none() {
            return Err(bad_input(
                "--explore runs every schedule from the same state: add --reset-url URL or --reset-sql SQL \
                 to put the service back before each one",
            ));
        }
        let buyers = a.scenario.buyers.unwrap_or(2);
        if !(1..=MAX_BUYERS).contains(&buyers) {
            return Err(bad_input(format!(
                "--buyers must be between 1 and {MAX_BUYERS} with --explore (every interleaving of more requests is too many to run), got {buyers}"
            )));
        }
        for (flag, given) in [
            ("--attempts", a.scenario.attempts.is_some()),
            ("--duration", a.scenario.duration.is_some()),
            ("--rate", a.scenario.rate.is_some()),
            ("--products", a.scenario.products.is_some()),
        ] {
            if given {
                return Err(bad_input(format!(
                    "{flag} does not go with --explore: each buyer sends one request, on one product; drop {flag}"
                )));
            }
        }
        if a.gate.repeat > 1 || !a.gate.baseline.is_empty() {
            return Err(bad_input(
                "--repeat and --baseline do not go with --explore: the schedules are its repetitions",
            ));
        }
        let bound = parse_bound(a.explore.preemptions.as_deref().unwrap_or("all"))?;
        let schedule = a
            .explore
            .schedule
            .as_deref()
            .map(|s| parse_schedule(s, buyers))
            .transpose()?;
        let max_schedules = a.explore.max_schedules.unwrap_or(100_000);
        if max_schedules == 0 {
            return Err(bad_input("--max-schedules must be at least 1"));
        }
        let settle_ms = a.explore.settle_ms.unwrap_or(DEFAULT_SETTLE_MS);
        if !(1..=60_000).contains(&settle_ms) {
            return Err(bad_input(format!(
                "--settle-ms must be between 1 and 60000, got {settle_ms}"
            )));
        }
        if let Some(spec) = &a.explore.spec {
            let parent = spec.parent().filter(|p| !p.as_os_str().is_empty());
            if parent.is_some_and(|p| !p.is_dir()) {
                return Err(bad_input(format!(
                    "--spec {}: the directory does not exist",
                    spec.display()
                )));
            }
        }
        let method = a.request.method.as_deref().unwrap_or("POST").to_uppercase();
        let name = match &a.flow.flow {
            Some(f) => format!(
                "flow {} at {}",
                f.display(),
                crate::http::shown_text(&a.url)
            ),
            None => format!("{method} {}", crate::http::shown_text(&a.url)),
        };
        Ok(ServiceExplorePlan {
            race,
            buyers,
            bound,
            schedule,
            max_schedules,
            settle: Duration::from_millis(settle_ms),
            expect: a.gate.expect.map(expect_of),
            spec: a.explore.spec.clone(),
            name,
        })
    }
}
