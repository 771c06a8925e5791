//! A PostgreSQL wire-protocol proxy between a service and its server: it
//! relays every connection (authentication included, untouched) and
//! records what each one did — statements with their bound values, the
//! rows they returned, command tags, errors, transactions, backend pids,
//! times — without becoming the thing raced: the relay only frames
//! messages and copies the few bodies the recorder reads; decoding and
//! writing happen on the recorder's own thread.
//!
//! - `codec`: the protocol's messages (framing, start-up packets, bodies).
//! - `relay`: one client connection: start-up, both directions, the gate
//!   hook a scheduler uses to hold each batch before the server sees it.
//! - `recorder`: the conversation followed into records.
//! - `record`: the JSON Lines record format and where records go.
//! - `values`: parameter and column values decoded by type.
//! - `sqltext`: statement boundaries in a Query, password redaction.
//!
//! `Proxy::start` takes a bound listener (so its port is never released
//! and taken again) and serves it on a thread of its own with a
//! single-threaded runtime, until `shutdown`.

pub mod codec;
pub mod record;
pub mod recorder;
pub mod relay;
pub mod sqltext;
pub mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, oneshot};

pub use record::{Record, Sink};
pub use relay::{Batch, ConnId, Gate};

use crate::error::bad_input;

/// Events the relay may have in flight to the recorder before it waits.
const EVENT_QUEUE: usize = 8192;

/// Where the server is: only its address (credentials pass through from
/// each client; the proxy holds none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Tcp {
        host: String,
        port: u16,
    },
    /// The server's unix socket file (`<dir>/.s.PGSQL.<port>`).
    Unix(PathBuf),
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Upstream::Tcp { host, port } => write!(f, "{host}:{port}"),
            Upstream::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Upstream {
    /// From a `postgres://` or `postgresql://` URL (host, port, and the
    /// `host`/`port` query parameters; a host that is a path is a unix
    /// socket directory), or a bare `HOST:PORT`.
    pub fn parse(text: &str) -> anyhow::Result<Upstream> {
        let text = text.trim();
        if !text.contains("://") {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| {
                bad_input(format!(
                    "--upstream {text:?}: expected a postgres:// URL or HOST:PORT, e.g. 127.0.0.1:5432"
                ))
            })?;
            let port = port.parse().map_err(|_| {
                bad_input(format!(
                    "--upstream {text:?}: {port:?} is not a port number"
                ))
            })?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            return Ok(Upstream::Tcp {
                host: host.to_string(),
                port,
            });
        }
        let url = url::Url::parse(text).map_err(|e| {
            bad_input(format!(
                "--upstream: not a URL ({e}): expected e.g. postgresql://127.0.0.1:5432/postgres"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad_input(format!(
                "--upstream must be a postgres:// or postgresql:// URL, got {}://",
                url.scheme()
            )));
        }
        let query = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        let host = query("host").unwrap_or_else(|| {
            let h = url.host_str().unwrap_or("");
            percent_encoding::percent_decode_str(h)
                .decode_utf8_lossy()
                .into_owned()
        });
        let port = match query("port") {
            Some(p) => p
                .parse()
                .map_err(|_| bad_input(format!("--upstream: port {p:?} is not a number")))?,
            None => url.port().unwrap_or(5432),
        };
        if host.starts_with('/') {
            return Ok(Upstream::Unix(
                PathBuf::from(host).join(format!(".s.PGSQL.{port}")),
            ));
        }
        let host = if host.is_empty() {
            "localhost".into()
        } else {
            host
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Upstream::Tcp { host, port })
    }

    async fn connect(&self) -> std::io::Result<UpStream> {
        match self {
            Upstream::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Ok(UpStream::Tcp(s))
            }
            Upstream::Unix(p) => Ok(UpStream::Unix(UnixStream::connect(p).await?)),
        }
    }
}

/// A connection to the upstream.
pub(crate) enum UpStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl UpStream {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            UpStream::Tcp(s) => s.write_all(b).await,
            UpStream::Unix(s) => s.write_all(b).await,
        }
    }
}

/// How a proxy runs.
pub struct ProxyOptions {
    pub upstream: Upstream,
    /// Where records go; `None`: relay without recording.
    pub sink: Option<Box<dyn Sink>>,
    /// A scheduler's hook on every batch (see `relay::Gate`).
    pub gate: Option<Arc<dyn Gate>>,
}

/// A running proxy. `shutdown` stops it (open connections are closed) and
/// writes the rest of the record; dropping it does the same, quietly.
pub struct Proxy {
    addr: SocketAddr,
    started: Instant,
    started_at: time::OffsetDateTime,
    stop: Option<oneshot::Sender<()>>,
    relay: Option<JoinHandle<()>>,
    recorder: Option<JoinHandle<Option<std::io::Error>>>,
    /// The recorder's channel, without keeping it open.
    events: Option<mpsc::WeakSender<relay::Event>>,
    connections: Arc<AtomicU64>,
}

/// Waits until the recorder has recorded everything the relay queued.
#[derive(Clone)]
pub struct Syncer(mpsc::WeakSender<relay::Event>);

impl Syncer {
    /// Resolves once every event queued before the call is recorded (at
    /// once when the proxy has stopped).
    pub async fn sync(&self) {
        let Some(tx) = self.0.upgrade() else { return };
        let (done, recorded) = oneshot::channel();
        if tx.send(relay::Event::Mark(done)).await.is_ok() {
            drop(tx);
            let _ = recorded.await;
        }
    }
}

impl Proxy {
    /// Serve `listener` (already bound: the caller owns the port).
    pub fn start(listener: std::net::TcpListener, opts: ProxyOptions) -> anyhow::Result<Proxy> {
        let addr = listener
            .local_addr()
            .context("the proxy's listening address")?;
        listener
            .set_nonblocking(true)
            .context("setting the proxy's listener non-blocking")?;
        let started = Instant::now();
        let started_at = time::OffsetDateTime::now_utc();
        let (events, recorder) = match opts.sink {
            Some(mut sink) => {
                let first = Record::Proxy(record::ProxyInfo {
                    format: record::FORMAT,
                    racelab_version: env!("CARGO_PKG_VERSION").to_string(),
                    started_at: started_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    listen: addr.to_string(),
                    upstream: opts.upstream.to_string(),
                });
                sink.record(&first).context("writing the record")?;
                let (tx, rx) = mpsc::channel(EVENT_QUEUE);
                let handle = std::thread::Builder::new()
                    .name("racelab-recorder".into())
                    .spawn(move || record_events(rx, recorder::Recorder::new(started, sink)))
                    .context("starting the proxy's recorder thread")?;
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        let weak = events.as_ref().map(mpsc::Sender::downgrade);
        let shared = Arc::new(relay::Shared {
            upstream: opts.upstream,
            events,
            gate: opts.gate,
            keys: Mutex::new(Default::default()),
            next_conn: AtomicU64::new(0),
        });
        let connections = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the proxy's runtime")?;
        let counted = connections.clone();
        let relay = std::thread::Builder::new()
            .name("racelab-proxy".into())
            .spawn(move || {
                rt.block_on(accept_loop(listener, shared, stopped, counted));
                // Dropping the runtime drops every connection's task: the
                // sockets close and the recorder's channel with them.
                drop(rt);
            })
            .context("starting the proxy's thread")?;
        Ok(Proxy {
            addr,
            started,
            started_at,
            stop: Some(stop),
            relay: Some(relay),
            recorder,
            events: weak,
            connections,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Time 0 of the record's `*_us` times.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn started_at(&self) -> time::OffsetDateTime {
        self.started_at
    }

    /// A handle that waits for the record to catch up (none without a record).
    pub fn syncer(&self) -> Option<Syncer> {
        self.events.clone().map(Syncer)
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stop accepting, close every connection, write the rest of the record.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.relay.take() {
            let _ = t.join();
        }
        if let Some(r) = self.recorder.take() {
            match r.join() {
                Ok(Some(e)) => return Err(e).context("writing the proxy's record"),
                Ok(None) => {}
                Err(_) => anyhow::bail!("the proxy's recorder failed"),
            }
        }
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<relay::Shared>,
    mut stopped: oneshot::Receiver<()>,
    connections: Arc<AtomicU64>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::spawn(relay::serve(shared.clone(), stream));
                }
                // Out of file descriptors and the like: wait, then go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// The recorder's thread: take events as they come, write records, make
/// them visible at least every `FLUSH_EVERY` and when the relay is quiet.
fn record_events(
    mut rx: mpsc::Receiver<relay::Event>,
    mut rec: recorder::Recorder,
) -> Option<std::io::Error> {
    const FLUSH_EVERY: Duration = Duration::from_millis(100);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Some(std::io::Error::other(
            "could not start the recorder's runtime",
        ));
    };
    rt.block_on(async {
        let mut batch = Vec::with_capacity(256);
        let mut dirty = false;
        let mut flushed = Instant::now();
        loop {
            match tokio::time::timeout(FLUSH_EVERY, rx.recv_many(&mut batch, 256)).await {
                Ok(0) => break,
                Ok(_) => {
                    for ev in batch.drain(..) {
                        rec.handle(ev);
                    }
                    dirty = true;
                    if flushed.elapsed() >= FLUSH_EVERY {
                        rec.flush();
                        flushed = Instant::now();
                        dirty = false;
                    }
                }
                Err(_) if dirty => {
                    rec.flush();
                    flushed = Instant::now();
                    dirty = false;
                }
                Err(_) => {}
            }
        }
    });
    rec.finish(Instant::now());
    rec.failed.take()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_from_urls() {
        let tcp = |h: &str, p| Upstream::Tcp {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            Upstream::parse("postgresql://u:secret@db.example:6432/shop").unwrap(),
            tcp("db.example", 6432)
        );
        assert_eq!(
            Upstream::parse("postgres://u@h/db").unwrap(),
            tcp("h", 5432)
        );
        assert_eq!(
            Upstream::parse("127.0.0.1:5433").unwrap(),
            tcp("127.0.0.1", 5433)
        );
        assert_eq!(Upstream::parse("[::1]:5433").unwrap(), tcp("::1", 5433));
        assert_eq!(
            Upstream::parse("postgresql:///db?host=/run/pg&port=5433").unwrap(),
            Upstream::Unix("/run/pg/.s.PGSQL.5433".into())
        );
        assert_eq!(
            Upstream::parse("postgresql://u@%2Frun%2Fpg:5999/db").unwrap(),
            Upstream::Unix("/run/pg/.s.PGSQL.5999".into())
        );
        assert!(Upstream::parse("http://x/").is_err());
        assert!(Upstream::parse("nohostport").is_err());
        // The display never shows credentials: the proxy keeps none.
        let shown = Upstream::parse("postgresql://u:secret@h:1/db")
            .unwrap()
            .to_string();
        assert_eq!(shown, "h:1");
    }
}
