//! A service raced through racelab's wire proxy (`racelab http URL
//! --service CMD`, or `--db-proxy ADDR` for a service the user starts):
//! the database (an embedded throwaway cluster, or `--database-url`), the
//! proxy in front of it on a port it keeps, the service's process group
//! started with the proxy's URL as its `DATABASE_URL`, a wait until the
//! service answers, and, after the races, everything stopped in reverse
//! order — also on error, Ctrl-C, and (by the guard of `process`) when
//! racelab itself is killed.
//!
//! During each race the proxy's records are kept in memory; `ProxyWatch`
//! hands them, with the requests' spans, to `trace` for the result.
//!
//! - `process`: the service's process group, its guard and its log.
//! - `trace`: the records of one race as a timeline with anomalies.

pub mod process;
pub mod trace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::db::{bins, Cluster, ClusterOptions, Dirs};
use crate::engine::{AttemptTrace, Control};
use crate::proxy::record::{Memory, Tee};
use crate::proxy::{Proxy, ProxyOptions, Sink, Upstream};
use crate::result::ServiceInfo;
use process::ServiceProcess;
use trace::RequestSpan;

/// Records kept in memory for one race at most (then counted, not kept).
const MAX_RECORDS: usize = 500_000;
/// Lines of the service's output shown when it fails.
const LAST_LINES: usize = 20;

/// `--service` / `--db-proxy`, validated.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// `--service CMD`; `None` with `--db-proxy` (the user starts it).
    pub command: Option<String>,
    /// What must answer before the race: `--service-ready`, else the
    /// target's origin.
    pub ready: reqwest::Url,
    pub ready_timeout: Duration,
    /// Where the service's output goes.
    pub log: PathBuf,
    /// Where the proxy listens (`--db-proxy`, else a free loopback port).
    pub listen: SocketAddr,
    /// `--database-url`; `None`: an embedded throwaway cluster.
    pub database_url: Option<String>,
    /// Also write the proxy's record as JSON Lines here.
    pub record: Option<PathBuf>,
}

/// The running database, proxy and service.
pub struct Backend {
    process: Option<ServiceProcess>,
    proxy: Option<Proxy>,
    cluster: Option<Cluster>,
    memory: Memory,
    /// The service's `DATABASE_URL` (the proxy's address, the database's
    /// user and name).
    pub service_url: String,
    /// The database itself, not through the proxy (for the truth and resets).
    pub direct_url: String,
    info: ServiceInfo,
}

impl Backend {
    /// Start the database, the proxy and the service, and wait until the
    /// service answers.
    pub async fn start(plan: &ServicePlan, control: &Arc<Control>) -> anyhow::Result<Backend> {
        Backend::start_gated(plan, control, None).await
    }

    /// `start`, with a scheduler's gate on every batch the service sends
    /// (it must let everything pass until the service is ready).
    pub async fn start_gated(
        plan: &ServicePlan,
        control: &Arc<Control>,
        gate: Option<Arc<dyn crate::proxy::relay::Gate>>,
    ) -> anyhow::Result<Backend> {
        let (cluster, direct_url, upstream) = match &plan.database_url {
            Some(url) => (None, url.clone(), Upstream::parse(url)?),
            None => {
                let mut opts =
                    ClusterOptions::new(bins::find_server_bins(None)?, &Dirs::from_env()?)?;
                // The proxy listens on TCP, and the service logs in through
                // it: the cluster takes that login on TCP with its own
                // password (SCRAM), so the proxy's port is no open door to
                // a session (its unix socket trusts whoever reaches it).
                opts.tcp = true;
                let cluster = tokio::task::spawn_blocking(move || Cluster::start(&opts))
                    .await
                    .context("the cluster start task failed")?
                    .context("could not start the embedded PostgreSQL cluster for the service")?;
                let url = cluster
                    .url()
                    .context("a cluster started with tcp has a URL")?
                    .expose()
                    .to_string();
                let upstream = Upstream::parse(&url)?;
                (Some(cluster), url, upstream)
            }
        };
        let listener = std::net::TcpListener::bind(plan.listen).map_err(|e| {
            crate::error::bad_input(format!(
                "--db-proxy {}: cannot listen there ({e}); pick another port",
                plan.listen
            ))
        })?;
        let memory = Memory::new(MAX_RECORDS);
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(memory.clone())];
        if let Some(path) = &plan.record {
            let f = std::fs::File::create(path)
                .with_context(|| format!("creating the proxy's record {}", path.display()))?;
            sinks.push(Box::new(crate::proxy::record::JsonLines::new(
                std::io::BufWriter::new(f),
            )));
        }
        let proxy = Proxy::start(
            listener,
            ProxyOptions {
                upstream,
                sink: Some(Box::new(Tee(sinks))),
                gate,
            },
        )?;
        let service_url = through(&direct_url, proxy.addr())?;
        let info = ServiceInfo {
            command: plan.command.clone(),
            log: plan
                .command
                .as_ref()
                .map(|_| plan.log.display().to_string()),
            proxy: proxy.addr().to_string(),
            database: if cluster.is_some() {
                "embedded"
            } else {
                "external"
            }
            .into(),
            trace: None,
        };
        let mut backend = Backend {
            process: None,
            proxy: Some(proxy),
            cluster,
            memory,
            service_url,
            direct_url,
            info,
        };
        match &plan.command {
            Some(cmd) => {
                let cmd = cmd.replace("{database_url}", &backend.service_url);
                let p = ServiceProcess::start(
                    &cmd,
                    &[("DATABASE_URL", backend.service_url.as_str())],
                    &plan.log,
                )?;
                backend.process = Some(p);
            }
            None => eprintln!(
                "racelab: the wire proxy listens on {}: start the service with DATABASE_URL={}",
                backend.info.proxy,
                crate::db::redact_url(&backend.service_url)
            ),
        }
        backend.wait_ready(plan, control).await?;
        Ok(backend)
    }

    async fn wait_ready(
        &mut self,
        plan: &ServicePlan,
        control: &Arc<Control>,
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the readiness probe")?;
        let deadline = Instant::now() + plan.ready_timeout;
        loop {
            if control.is_stopped() {
                anyhow::bail!(crate::error::Interrupted {
                    signal: libc::SIGINT
                });
            }
            if let Some(p) = &mut self.process {
                if let Some(status) = p.exited() {
                    anyhow::bail!(
                        "the service exited ({status}) before it answered at {}; its last output ({}):\n{}",
                        plan.ready,
                        plan.log.display(),
                        p.last_lines(LAST_LINES)
                    );
                }
            }
            if client.get(plan.ready.clone()).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = match &self.process {
                    Some(p) => format!(
                        "; its last output ({}):\n{}",
                        plan.log.display(),
                        p.last_lines(LAST_LINES)
                    ),
                    None => String::new(),
                };
                anyhow::bail!(
                    "the service did not answer at {} within {} s (--service-timeout){tail}",
                    plan.ready,
                    plan.ready_timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the races hand their requests to, to trace the service.
    pub fn watch(&self) -> Arc<ProxyWatch> {
        Arc::new(ProxyWatch {
            memory: self.memory.clone(),
            started: self
                .proxy
                .as_ref()
                .map_or_else(Instant::now, Proxy::started),
            sync: self.proxy.as_ref().and_then(Proxy::syncer),
            info: self.info.clone(),
        })
    }

    /// An error with the service's last output if its process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &mut self.process {
            if let Some(status) = p.exited() {
                anyhow::bail!(
                    "the service exited ({status}); its last output ({}):\n{}",
                    p.log().display(),
                    p.last_lines(LAST_LINES)
                );
            }
        }
        Ok(())
    }

    /// The service's last output, when racelab started it, for a failure.
    pub fn last_output(&self) -> Option<String> {
        let p = self.process.as_ref()?;
        Some(format!(
            "the service's last output ({}):\n{}",
            p.log().display(),
            p.last_lines(LAST_LINES)
        ))
    }

    /// Stop the service's process group, then the proxy, then the database.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
        let proxy = self.proxy.take().map(Proxy::shutdown).transpose();
        let cluster = self.cluster.take().map(Cluster::shutdown).transpose();
        proxy?;
        cluster?;
        Ok(())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `url` with its host and port replaced by `addr` (and no `host` or
/// `port` query parameter): the same user, password and database, through
/// the proxy.
pub fn through(url: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let mut u = url::Url::parse(url)
        .map_err(|e| crate::error::bad_input(format!("--database-url is not a URL: {e}")))?;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "host" && k != "port")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.set_query(None);
    if !kept.is_empty() {
        u.query_pairs_mut().extend_pairs(kept);
    }
    u.set_host(Some(&addr.ip().to_string()))
        .map_err(|e| anyhow::anyhow!("the proxy's address in the URL: {e}"))?;
    u.set_port(Some(addr.port()))
        .map_err(|()| anyhow::anyhow!("the proxy's port in the URL"))?;
    Ok(u.to_string())
}

/// Hands each race's records to the trace analysis.
pub struct ProxyWatch {
    memory: Memory,
    started: Instant,
    sync: Option<crate::proxy::Syncer>,
    info: ServiceInfo,
}

impl ProxyWatch {
    /// Forget what was recorded so far.
    pub fn clear(&self) {
        let _ = self.memory.take();
    }

    /// Everything recorded since the last `clear`, once the relay's queued
    /// events are in.
    pub async fn records(&self) -> Vec<crate::proxy::record::Record> {
        if let Some(s) = &self.sync {
            s.sync().await;
        }
        self.memory.take().0
    }

    /// `t` in the records' time (µs since the proxy started).
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_micros() as u64
    }

    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }
}

impl crate::http::Watch for ProxyWatch {
    fn begin(&self) {
        // What came before the race (start-up, the reset) is not traced.
        let _ = self.memory.take();
    }

    fn end<'a>(
        &'a self,
        attempts: &'a [AttemptTrace],
        released_at: Instant,
    ) -> Pin<Box<dyn Future<Output = Option<ServiceInfo>> + Send + 'a>> {
        Box::pin(async move {
            if let Some(s) = &self.sync {
                // Every event the relay queued is recorded before we read.
                s.sync().await;
            }
            let (records, _dropped) = self.memory.take();
            let us = |t: Instant| t.saturating_duration_since(self.started).as_micros() as u64;
            let requests: Vec<RequestSpan> = attempts
                .iter()
                .filter_map(|a| {
                    // An attempt's requests (a flow's steps, or the one
                    // request): from the first sent to the last answered.
                    let start = a.events.iter().map(|e| e.start).min()?;
                    let end = a.events.iter().map(|e| e.end).max()?;
                    Some(RequestSpan {
                        buyer: a.buyer,
                        attempt: a.attempt,
                        start_us: us(start),
                        end_us: us(end),
                    })
                })
                .collect();
            let mut info = self.info.clone();
            info.trace = Some(trace::analyze(&records, &requests, us(released_at)));
            Some(info)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_url_goes_through_the_proxy() {
        let addr: SocketAddr = "127.0.0.1:6543".parse().unwrap();
        assert_eq!(
            through(
                "postgresql://app:s3cret@db.internal:5432/shop?sslmode=disable",
                addr
            )
            .unwrap(),
            "postgresql://app:s3cret@127.0.0.1:6543/shop?sslmode=disable"
        );
        assert_eq!(
            through(
                "postgresql://postgres@127.0.0.1:5999/postgres?host=/tmp/x",
                addr
            )
            .unwrap(),
            "postgresql://postgres@127.0.0.1:6543/postgres"
        );
    }
}
