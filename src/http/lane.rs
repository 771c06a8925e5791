//! The HTTP lane of the engine: each buyer sends purchase requests over its
//! own keep-alive HTTP/1.1 connection (see `h1`), as streams of a few shared
//! HTTP/2 connections (`--http2`, see `h2`), or through one shared `reqwest`
//! client (when a proxy is configured), connected before the barrier, and
//! turns each response into an outcome by its status code. With `--sync
//! last-byte` (the default) each buyer's first request is sent before the
//! barrier but for its end (its final byte, or its final frame), and the
//! ends go out together at the release. Per-status latencies are buffered
//! per buyer and folded into histograms once, after the race.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Url};
use tokio::task::JoinSet;

use super::h1::{self, Conn, Target};
use super::h2::{self as http2, Group, Shape};
use super::net::{Alpn, Endpoint, Stream};
use super::template::{Template, Values};
use crate::engine::{join_unless_stopped, tally, Attempt, Control, Lanes, RaceConfig};
use crate::outcome::{AttemptReport, Outcome};
use crate::strategy::{AttemptCtx, TraceEvent};

/// Bytes of an unexpected response body kept in the error message.
const BODY_KEPT: usize = 200;

/// How long a primed HTTP/1.1 request waits, before the barrier, for a
/// server that answers partial requests to show itself.
const SETTLE_MIN: Duration = Duration::from_millis(1);
const SETTLE_MAX: Duration = Duration::from_millis(500);

/// Which status codes mean what. An empty `success` means any 2xx.
#[derive(Debug, Clone)]
pub struct StatusMap {
    pub success: Vec<u16>,
    pub sold_out: Vec<u16>,
    pub rejected: Vec<u16>,
}

impl StatusMap {
    pub fn classify(&self, code: u16) -> Outcome {
        let success = if self.success.is_empty() {
            (200..300).contains(&code)
        } else {
            self.success.contains(&code)
        };
        if success {
            Outcome::Succeeded
        } else if self.sold_out.contains(&code) {
            Outcome::SoldOut
        } else if self.rejected.contains(&code) {
            Outcome::Rejected
        } else {
            Outcome::Error
        }
    }

    /// The outcome of an answer, with a message when it is an error.
    fn judge(&self, code: u16, body: &[u8]) -> (Outcome, u16, Option<String>) {
        let outcome = self.classify(code);
        let message = (outcome == Outcome::Error)
            .then(|| format!("HTTP {code}: {}", truncate(&String::from_utf8_lossy(body))));
        (outcome, code, message)
    }
}

/// The HTTP version buyers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// h2c with prior knowledge for `http://`, ALPN for `https://`.
    Http2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2 => "h2",
        }
    }
}

/// How buyers' first requests are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Sent before the barrier but for their end (the final byte over
    /// HTTP/1.1, the final frame over HTTP/2); all ends written at the
    /// release.
    LastByte,
    /// Each first request sent whole after the barrier.
    None,
}

impl Sync {
    pub fn as_str(self) -> &'static str {
        match self {
            Sync::LastByte => "last-byte",
            Sync::None => "none",
        }
    }
}

/// The purchase request, the same for every buyer.
#[derive(Debug)]
pub struct HttpLanes {
    pub client: Client,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Template>,
    /// `{{buyer}}` is `prefix` + number + `suffix`.
    pub buyer_name: (String, String),
    pub timeout: Option<Duration>,
    pub statuses: StatusMap,
    /// Set when racelab connects itself (no proxy in the environment):
    /// each buyer then has its own HTTP/1.1 connection, or a stream of an
    /// HTTP/2 connection. Without it, reqwest carries HTTP/1.1 requests.
    pub direct: Option<Target>,
    pub protocol: Protocol,
    pub sync: Sync,
    /// CA certificates trusted besides the public roots (`--cacert`).
    pub roots: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    /// Connections opened before the barrier of the last race.
    pub opened: AtomicUsize,
}

impl HttpLanes {
    /// The release actually used: reqwest cannot hold a request back.
    pub fn effective_sync(&self) -> Sync {
        if self.direct.is_some() {
            self.sync
        } else {
            Sync::None
        }
    }
}

/// One buyer's own record: (status code or 0 for no response, µs), its
/// connection, and when its first request went out.
#[derive(Debug, Default)]
pub struct HttpLane {
    samples: Vec<(u16, u32)>,
    link: Link,
    first_sent_at: Option<Instant>,
}

impl HttpLane {
    /// When this buyer's first request was completed on the wire.
    pub fn first_sent_at(&self) -> Option<Instant> {
        self.first_sent_at
    }
}

/// How a buyer reaches the target.
#[derive(Debug, Default)]
enum Link {
    /// Through the shared reqwest client.
    #[default]
    Pooled,
    /// Its own HTTP/1.1 connection: `fresh` (connected, not yet handed to
    /// hyper) until the first request, `primed` while that request waits
    /// for its final byte, then `conn`.
    H1 {
        endpoint: Arc<Endpoint>,
        /// Shared by the race's buyers: their final bytes, written together.
        release: Arc<h1::Release>,
        /// Connected before the barrier, and how long connecting took.
        fresh: Option<(Stream, Duration)>,
        primed: Option<Result<h1::Primed, (i64, String)>>,
        conn: Option<Conn>,
    },
    /// A stream at a time of a shared HTTP/2 connection.
    H2 {
        endpoint: Arc<Endpoint>,
        group: Arc<Group>,
        primed: Option<Result<http2::Primed, (i64, String)>>,
    },
}

pub struct HttpBuyer<'a> {
    lanes: &'a HttpLanes,
    lane: &'a mut HttpLane,
    body: String,
    name: String,
    /// The HTTP/2 request shape (built once per buyer).
    shape: Option<Arc<Shape>>,
    wire: Vec<u8>,
}

impl Lanes for HttpLanes {
    type Lane = HttpLane;
    type Buyer<'a> = HttpBuyer<'a>;

    /// Connect every buyer before the barrier. Own HTTP/1.1 connections
    /// are opened all at once (the handshake is the warm-up); HTTP/2 ones
    /// as few as the server's stream limit allows, each warmed with a PING.
    /// Through reqwest: warm its pool with one request per buyer, all at
    /// once; a HEAD, as it must not buy anything and any response will do.
    async fn open(&self, config: &RaceConfig, control: &Control) -> anyhow::Result<Vec<HttpLane>> {
        let unreachable = |e: &str| {
            anyhow::anyhow!(
                "could not reach the target {}: {e}; is the service running?",
                self.url
            )
        };
        let buyers = config.buyers as usize;
        if let Some(target) = &self.direct {
            let alpn = match self.protocol {
                Protocol::Http1 => Alpn::Http1,
                Protocol::Http2 => Alpn::H2,
            };
            let endpoint = Arc::new(
                target
                    .resolve(alpn, self.timeout, &self.roots)
                    .await
                    .map_err(|e| unreachable(&e))?,
            );
            if self.protocol == Protocol::Http2 {
                let opening = http2::open(&endpoint, buyers);
                let groups = tokio::select! {
                    biased;
                    _ = control.stopped() => anyhow::bail!(crate::error::Interrupted {
                        signal: libc::SIGINT,
                    }),
                    g = opening => g.map_err(|e| unreachable(&e))?,
                };
                let mut distinct: Vec<*const Group> = groups.iter().map(Arc::as_ptr).collect();
                distinct.dedup();
                self.opened.store(distinct.len(), Ordering::Relaxed);
                return Ok(groups
                    .into_iter()
                    .map(|group| HttpLane {
                        link: Link::H2 {
                            endpoint: endpoint.clone(),
                            group,
                            primed: None,
                        },
                        ..Default::default()
                    })
                    .collect());
            }
            let held = self.sync == Sync::LastByte;
            let release = Arc::new(h1::Release::default());
            let mut set = JoinSet::new();
            for _ in 0..buyers {
                let (endpoint, release) = (endpoint.clone(), release.clone());
                set.spawn(async move {
                    let dialing = Instant::now();
                    let stream = endpoint.dial().await?;
                    // Held back from hyper until the first request is done.
                    let (fresh, conn) = if held {
                        (Some((stream, dialing.elapsed())), None)
                    } else {
                        (None, Some(h1::handshake(stream).await?))
                    };
                    Ok::<_, String>(HttpLane {
                        link: Link::H1 {
                            endpoint,
                            release,
                            fresh,
                            primed: None,
                            conn,
                        },
                        ..Default::default()
                    })
                });
            }
            self.opened.store(buyers, Ordering::Relaxed);
            return join_unless_stopped(set, control, |r| r.map_err(|e| unreachable(&e))).await;
        }
        let mut set = JoinSet::new();
        for _ in 0..buyers {
            let mut req = self.client.head(self.url.clone());
            if let Some(t) = self.timeout {
                req = req.timeout(t);
            }
            set.spawn(req.send());
        }
        self.opened.store(buyers, Ordering::Relaxed);
        join_unless_stopped(set, control, |r| match r {
            Ok(_) => Ok(HttpLane::default()),
            Err(e) => Err(unreachable(&chain(&e))),
        })
        .await
    }

    fn buyer<'a>(&'a self, lane: &'a mut HttpLane, _seed: u64) -> HttpBuyer<'a> {
        let shape = match (&lane.link, &self.direct) {
            (Link::H2 { .. }, Some(target)) => Some(Arc::new(Shape::of(target))),
            _ => None,
        };
        HttpBuyer {
            lanes: self,
            lane,
            body: String::new(),
            name: String::new(),
            shape,
            wire: Vec::new(),
        }
    }
}

impl Attempt for HttpBuyer<'_> {
    async fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        _trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(AttemptReport, u64), String> {
        self.render(ctx);
        let first = self.lane.samples.is_empty();
        let started = Instant::now();
        let mut sent_at = None;
        let (outcome, code, message) = match self.lane.link {
            Link::Pooled => {
                sent_at = Some(started);
                self.pooled().await
            }
            Link::H1 { .. } => self.h1(ctx, &mut sent_at).await,
            Link::H2 { .. } => self.h2(ctx, &mut sent_at).await,
        };
        let us = started.elapsed().as_micros() as u64;
        if first {
            self.lane.first_sent_at = sent_at;
        }
        self.lane
            .samples
            .push((code, us.min(u64::from(u32::MAX)) as u32));
        let report = AttemptReport {
            outcome,
            tries: 1,
            message,
            connection_lost: false,
        };
        Ok((report, us))
    }

    /// Send the first request but for its end (`--sync last-byte` on
    /// racelab's own connections).
    async fn prime(&mut self, first: &AttemptCtx) {
        if self.lanes.sync != Sync::LastByte {
            return;
        }
        self.render(first);
        let l = self.lanes;
        let attempt = first.attempt;
        let body = if l.body.is_some() {
            self.body.as_bytes()
        } else {
            &[]
        };
        match &mut self.lane.link {
            Link::Pooled => {}
            Link::H1 {
                fresh,
                primed,
                release,
                ..
            } => {
                let (Some((stream, dialed)), Some(target)) = (fresh.take(), &l.direct) else {
                    return;
                };
                // Long enough for an early answer to come back: about two
                // round trips, as connecting took.
                let settle = (dialed * 2).clamp(SETTLE_MIN, SETTLE_MAX);
                target.serialize(body, &mut self.wire);
                let wire = std::mem::take(&mut self.wire);
                let done = within(
                    l.timeout.map(|t| tokio::time::Instant::now() + t),
                    h1::prime(stream, &wire, attempt, &target.method, release, settle),
                )
                .await
                .unwrap_or_else(|| Err(no_prime(l.timeout)));
                *primed = Some(done.map_err(|e| (attempt, e)));
                self.wire = wire;
            }
            Link::H2 { group, primed, .. } => {
                let shape = self.shape.as_ref().expect("an HTTP/2 buyer has its shape");
                let done = group.prime(shape, body, attempt, l.timeout).await;
                *primed = Some(done.map_err(|e| (attempt, e)));
            }
        }
    }

    fn first_sent_at(&self) -> Option<Instant> {
        self.lane.first_sent_at
    }
}

/// A first request that could not be written before the barrier in time.
fn no_prime(timeout: Option<Duration>) -> String {
    format!(
        "could not send the request within {} ms (--request-timeout)",
        timeout.map_or(0, |t| t.as_millis())
    )
}

/// Why a request on the buyer's own connection got no response.
enum Failed {
    /// No connection could be opened: nothing was sent.
    Connect(String),
    /// The connection failed before the request was written.
    Unsent(String),
    /// The request was (or may have been) written: the purchase may have
    /// happened.
    Sent(String),
}

/// `f`, unless `deadline` (the `--request-timeout`) passes first.
async fn within<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    f: F,
) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

impl HttpBuyer<'_> {
    /// The body for `ctx` into `self.body`.
    fn render(&mut self, ctx: &AttemptCtx) {
        let l = self.lanes;
        if let Some(template) = &l.body {
            self.name.clear();
            let _ = write!(
                self.name,
                "{}{}{}",
                l.buyer_name.0, ctx.buyer, l.buyer_name.1
            );
            let values = Values {
                buyer: &self.name,
                attempt: ctx.attempt,
                qty: ctx.qty,
                product: ctx.product,
            };
            template.render_into(&values, &mut self.body);
        }
    }

    /// One request on the buyer's own HTTP/1.1 connection: the primed
    /// first one completed, or a request through hyper.
    async fn h1(
        &mut self,
        ctx: &AttemptCtx,
        sent_at: &mut Option<Instant>,
    ) -> (Outcome, u16, Option<String>) {
        let l = self.lanes;
        let Link::H1 { primed, conn, .. } = &mut self.lane.link else {
            unreachable!("an HTTP/1.1 lane")
        };
        match primed.take() {
            Some(Ok(p)) if p.attempt == ctx.attempt => {
                let deadline = l.timeout.map(|t| tokio::time::Instant::now() + t);
                return match within(deadline, p.complete(sent_at)).await {
                    Some(Ok(answer)) => {
                        if let Some(stream) = answer.reusable {
                            *conn = h1::handshake(stream).await.ok();
                        }
                        let (outcome, code, message) =
                            l.statuses.judge(answer.status, &answer.body);
                        // An error given to a partial request is most
                        // likely about its being partial: say so.
                        let message = match message {
                            Some(m) if answer.early => {
                                Some(h1::early_note(&format!("answered ({m})")))
                            }
                            m => m,
                        };
                        (outcome, code, message)
                    }
                    Some(Err(h1::Broke::Unsent(e))) => (Outcome::Error, 0, Some(e)),
                    Some(Err(h1::Broke::Sent(e))) => (Outcome::Unknown, 0, Some(e)),
                    None if sent_at.is_some() => {
                        (Outcome::Unknown, 0, Some(no_response(l.timeout)))
                    }
                    None => (Outcome::Error, 0, Some(no_prime(l.timeout))),
                };
            }
            Some(Err((attempt, e))) if attempt == ctx.attempt => {
                return (
                    Outcome::Error,
                    0,
                    Some(format!(
                        "the request could not be sent before the race: {e}"
                    )),
                )
            }
            _ => {}
        }
        self.direct(sent_at).await
    }

    /// One request as a stream of the buyer's HTTP/2 connection.
    async fn h2(
        &mut self,
        ctx: &AttemptCtx,
        sent_at: &mut Option<Instant>,
    ) -> (Outcome, u16, Option<String>) {
        let l = self.lanes;
        let Link::H2 {
            endpoint,
            group,
            primed,
        } = &mut self.lane.link
        else {
            unreachable!("an HTTP/2 lane")
        };
        let deadline = l.timeout.map(|t| tokio::time::Instant::now() + t);
        let done = match primed.take() {
            Some(Ok(p)) if p.attempt == ctx.attempt => within(deadline, group.complete(p)).await,
            Some(Err((attempt, e))) if attempt == ctx.attempt => {
                return (
                    Outcome::Error,
                    0,
                    Some(format!(
                        "the request could not be sent before the race: {e}"
                    )),
                )
            }
            _ => {
                if group.is_broken() {
                    match within(deadline, http2::reconnect(endpoint)).await {
                        Some(Ok(g)) => *group = g,
                        Some(Err(e)) => {
                            return (Outcome::Error, 0, Some(format!("could not connect: {e}")))
                        }
                        None => {
                            return (
                                Outcome::Error,
                                0,
                                Some(format!(
                                    "could not connect within {} ms (--request-timeout)",
                                    l.timeout.map_or(0, |t| t.as_millis())
                                )),
                            )
                        }
                    }
                }
                let shape = self.shape.as_ref().expect("an HTTP/2 buyer has its shape");
                let body = if l.body.is_some() {
                    self.body.as_bytes()
                } else {
                    &[]
                };
                within(deadline, group.send(shape, body)).await
            }
        };
        match done {
            Some((answer, ended)) => {
                *sent_at = ended;
                match answer {
                    Ok(a) => l.statuses.judge(a.status, &a.body),
                    Err(http2::Broke::Unsent(e)) => (Outcome::Error, 0, Some(e)),
                    Err(http2::Broke::Sent(e)) => (Outcome::Unknown, 0, Some(e)),
                }
            }
            None => (Outcome::Unknown, 0, Some(no_response(l.timeout))),
        }
    }

    /// One request through hyper on the buyer's HTTP/1.1 connection.
    async fn direct(&mut self, sent_at: &mut Option<Instant>) -> (Outcome, u16, Option<String>) {
        let l = self.lanes;
        let target = l.direct.as_ref().expect("an own connection has its target");
        let deadline = l.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut sent = false;
        let resp = match within(deadline, self.send(target, &mut sent)).await {
            Some(Ok(resp)) => resp,
            failed => {
                // Whatever the connection holds now (a request in flight, a
                // broken stream) must not meet the next attempt.
                *self.conn_slot() = None;
                return match failed {
                    Some(Err(Failed::Connect(e))) => {
                        (Outcome::Error, 0, Some(format!("could not connect: {e}")))
                    }
                    Some(Err(Failed::Unsent(e))) => (
                        Outcome::Error,
                        0,
                        Some(format!(
                            "the connection failed before the request was sent: {e}"
                        )),
                    ),
                    Some(Err(Failed::Sent(e))) => (
                        Outcome::Unknown,
                        0,
                        Some(format!(
                            "the connection failed after the request was sent: {e}"
                        )),
                    ),
                    _ if !sent => (
                        Outcome::Error,
                        0,
                        Some(format!(
                            "could not connect within {} ms (--request-timeout)",
                            l.timeout.map_or(0, |t| t.as_millis())
                        )),
                    ),
                    _ => (Outcome::Unknown, 0, Some(no_response(l.timeout))),
                };
            }
        };
        // The request is out once its answer has begun: the last write
        // before it completed the request.
        *sent_at = self.conn_slot().as_ref().and_then(|c| c.written());
        let code = resp.status().as_u16();
        let outcome = l.statuses.classify(code);
        // Read the body in any case: the connection carries the next
        // request only once this response has been read to its end.
        let body = within(deadline, resp.into_body().collect()).await;
        if !matches!(body, Some(Ok(_))) {
            *self.conn_slot() = None;
        }
        let message = (outcome == Outcome::Error).then(|| match body {
            Some(Ok(b)) => format!(
                "HTTP {code}: {}",
                truncate(&String::from_utf8_lossy(&b.to_bytes()))
            ),
            Some(Err(e)) => format!("HTTP {code} (body unreadable: {})", chain(&e)),
            None => format!(
                "HTTP {code} (body unreadable: not read within {} ms (--request-timeout))",
                l.timeout.map_or(0, |t| t.as_millis())
            ),
        });
        (outcome, code, message)
    }

    fn conn_slot(&mut self) -> &mut Option<Conn> {
        match &mut self.lane.link {
            Link::H1 { conn, .. } => conn,
            _ => unreachable!("an HTTP/1.1 lane"),
        }
    }

    /// Send the request on the buyer's connection. A connection found
    /// closed (the server may close idle ones between attempts), or that
    /// hands the request back unsent, is replaced and the request sent once
    /// more. `sent` says whether it may have reached the server.
    async fn send(
        &mut self,
        target: &Target,
        sent: &mut bool,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failed> {
        let live = match self.conn_slot() {
            Some(c) => c.sender.ready().await.is_ok(),
            None => false,
        };
        let fresh = !live;
        if fresh {
            self.reconnect().await?;
        }
        let req = self.request(target);
        *sent = true;
        let mut err = match self.conn().sender.try_send_request(req).await {
            Ok(resp) => return Ok(resp),
            Err(e) => e,
        };
        let Some(req) = err.take_message() else {
            return Err(Failed::Sent(chain(err.error())));
        };
        *sent = false;
        if fresh {
            return Err(Failed::Unsent(chain(err.error())));
        }
        self.reconnect().await?;
        *sent = true;
        match self.conn().sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) if e.message().is_some() => {
                *sent = false;
                Err(Failed::Unsent(chain(e.error())))
            }
            Err(e) => Err(Failed::Sent(chain(e.error()))),
        }
    }

    fn conn(&mut self) -> &mut Conn {
        self.conn_slot().as_mut().expect("connected just before")
    }

    /// Open a new connection for this lane, dropping the old one (or use
    /// the one connected before the barrier, when nothing primed it).
    async fn reconnect(&mut self) -> Result<(), Failed> {
        let Link::H1 {
            endpoint,
            fresh,
            conn,
            ..
        } = &mut self.lane.link
        else {
            unreachable!("an HTTP/1.1 lane")
        };
        *conn = None;
        let made = match fresh.take() {
            Some((stream, _)) => h1::handshake(stream).await,
            None => h1::connect(endpoint).await,
        };
        *conn = Some(made.map_err(Failed::Connect)?);
        Ok(())
    }

    fn request(&self, target: &Target) -> hyper::Request<Full<Bytes>> {
        let body = if self.lanes.body.is_some() {
            Bytes::from(self.body.clone())
        } else {
            Bytes::new()
        };
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = target.method.clone();
        *req.uri_mut() = target.uri.clone();
        *req.headers_mut() = target.headers.clone();
        req
    }

    /// One request through the shared reqwest client (`https://`).
    async fn pooled(&mut self) -> (Outcome, u16, Option<String>) {
        let l = self.lanes;
        let mut req = l
            .client
            .request(l.method.clone(), l.url.clone())
            .headers(l.headers.clone());
        if let Some(t) = l.timeout {
            req = req.timeout(t);
        }
        if l.body.is_some() {
            req = req.body(self.body.clone());
        }
        match req.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                let outcome = l.statuses.classify(code);
                // Read the body in any case: the connection is reused only
                // once the response has been read to its end.
                let body = resp.bytes().await;
                let message = (outcome == Outcome::Error).then(|| match body {
                    Ok(b) => format!("HTTP {code}: {}", truncate(&String::from_utf8_lossy(&b))),
                    Err(e) => format!("HTTP {code} (body unreadable: {})", chain(&e)),
                });
                (outcome, code, message)
            }
            Err(e) if e.is_connect() => (
                Outcome::Error,
                0,
                Some(format!("could not connect: {}", chain(&e))),
            ),
            // Sent, but no answer: the purchase may or may not have happened.
            Err(e) if e.is_timeout() => (Outcome::Unknown, 0, Some(no_response(l.timeout))),
            Err(e) => (
                Outcome::Unknown,
                0,
                Some(format!(
                    "the connection failed after the request was sent: {}",
                    chain(&e)
                )),
            ),
        }
    }
}

/// A request sent and not answered within `--request-timeout`.
fn no_response(timeout: Option<Duration>) -> String {
    format!(
        "no response within {} ms (--request-timeout); the purchase may or may not have happened",
        timeout.map_or(0, |t| t.as_millis())
    )
}

/// Latency histograms by status code (`none`: no response), from every
/// buyer's samples.
pub fn by_status(lanes: &[HttpLane]) -> BTreeMap<String, Histogram<u64>> {
    let mut out: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for lane in lanes {
        for &(code, us) in &lane.samples {
            let key = if code == 0 {
                "none".to_string()
            } else {
                code.to_string()
            };
            out.entry(key)
                .or_insert_with(tally::new_histogram)
                .saturating_record(u64::from(us).clamp(1, tally::MAX_LATENCY_US));
        }
    }
    out
}

pub fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(BODY_KEPT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message alone says
/// little: "error sending request").
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let m = StatusMap {
            success: vec![],
            sold_out: vec![409, 410, 422],
            rejected: vec![429],
        };
        assert_eq!(m.classify(201), Outcome::Succeeded);
        assert_eq!(m.classify(299), Outcome::Succeeded);
        assert_eq!(m.classify(410), Outcome::SoldOut);
        assert_eq!(m.classify(429), Outcome::Rejected);
        assert_eq!(m.classify(500), Outcome::Error);
        assert_eq!(m.classify(302), Outcome::Error);
        let only = StatusMap {
            success: vec![200],
            ..m
        };
        assert_eq!(only.classify(201), Outcome::Error);
        assert_eq!(only.classify(200), Outcome::Succeeded);
    }

    fn lanes_for(url: &str, method: Method, protocol: Protocol, sync: Sync) -> Arc<HttpLanes> {
        let url = Url::parse(url).unwrap();
        let direct = Target::of(&url, &method, &HeaderMap::new());
        assert!(direct.is_some(), "racelab connects itself");
        Arc::new(HttpLanes {
            client: Client::new(),
            method,
            url,
            headers: HeaderMap::new(),
            body: Some(Template::parse(r#"{"buyer": {{buyer}}}"#).unwrap()),
            buyer_name: Default::default(),
            timeout: Some(Duration::from_secs(10)),
            statuses: StatusMap {
                success: vec![200, 201],
                sold_out: vec![],
                rejected: vec![],
            },
            direct,
            protocol,
            sync,
            roots: Vec::new(),
            opened: Default::default(),
        })
    }

    fn config(buyers: u32, attempts: u32) -> RaceConfig {
        RaceConfig {
            buyers,
            attempts_per_buyer: attempts,
            duration: None,
            quantity: 1,
            think_ms: 0,
            think_jitter_ms: 0,
            products: crate::engine::ProductPicker::new(1, 0.0),
            connections: 0,
            max_tries: 1,
            seed: 1,
            trace: false,
            track_contention: true,
            rate: None,
            retry_unknown: 0,
            no_progress: None,
        }
    }

    /// A raw TCP server: `reply` gets what a connection sent so far and
    /// says what to write back (None: read more).
    async fn raw_server(
        reply: fn(&[u8]) -> Option<&'static str>,
        close: bool,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                c.fetch_add(1, SeqCst);
                tokio::spawn(async move {
                    let (mut buf, mut chunk) = (Vec::new(), [0u8; 1024]);
                    loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if let Some(answer) = reply(&buf) {
                            buf.clear();
                            let _ = s.write_all(answer.as_bytes()).await;
                            if close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    /// A whole request: its head and its `content-length` bytes of body.
    fn complete(buf: &[u8]) -> bool {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        buf.len() >= end + 4 + len
    }

    /// A real server that answers each request and closes its connection
    /// (`connection: close`): every attempt after a buyer's first must open
    /// a new connection and send its request exactly once, with or without
    /// last-byte sync; when every buyer's first request ended is known.
    #[tokio::test]
    async fn a_connection_the_server_closes_is_replaced() {
        use std::sync::atomic::Ordering::SeqCst;
        for sync in [Sync::LastByte, Sync::None] {
            let (addr, conns) = raw_server(
                |buf| {
                    complete(buf).then_some(
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                },
                true,
            )
            .await;
            let lanes = lanes_for(
                &format!("http://{addr}/buy"),
                Method::POST,
                Protocol::Http1,
                sync,
            );
            let (out, done) = crate::engine::race_with(lanes, config(2, 5), Control::new())
                .await
                .unwrap();
            assert_eq!(
                out.tally.count(Outcome::Succeeded),
                10,
                "{sync:?}: {:?}",
                out.tally.errors
            );
            // Two opened before the barrier, then one per later attempt.
            assert_eq!(conns.load(SeqCst), 10, "{sync:?}");
            assert!(
                done.iter().all(|l| l.first_sent_at().is_some()),
                "every first request's end was seen"
            );
        }
    }

    /// Three buyers with last-byte sync against a keep-alive `raw_server`.
    async fn race_last_byte(
        reply: fn(&[u8]) -> Option<&'static str>,
        attempts: u32,
    ) -> crate::engine::RaceOutput {
        let (addr, _) = raw_server(reply, false).await;
        let lanes = lanes_for(
            &format!("http://{addr}/buy"),
            Method::POST,
            Protocol::Http1,
            Sync::LastByte,
        );
        let (out, _) = crate::engine::race_with(lanes, config(3, attempts), Control::new())
            .await
            .unwrap();
        out
    }

    /// A server that answers a request before it is complete (400 to the
    /// first bytes it sees): last-byte sync says so, and how to race it.
    #[tokio::test]
    async fn a_server_that_answers_a_partial_request_is_named() {
        let out = race_last_byte(
            |_| Some("HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\n\r\npartial"),
            1,
        )
        .await;
        assert_eq!(out.tally.count(Outcome::Error), 3);
        let (msg, n) = &out.tally.errors[0];
        assert_eq!(*n, 3);
        assert!(
            msg.contains("answered (HTTP 400: partial) before the request was complete")
                && msg.contains("--sync none"),
            "{msg}"
        );
    }

    /// A server that answers as soon as it has the head (its handler
    /// ignores the body): its answers count as given, 201 is bought.
    #[tokio::test]
    async fn an_early_success_counts_as_given() {
        let out = race_last_byte(
            |buf| {
                buf.windows(4)
                    .any(|w| w == b"\r\n\r\n")
                    .then_some("HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
            },
            2,
        )
        .await;
        assert_eq!(
            out.tally.count(Outcome::Succeeded),
            6,
            "{:?}",
            out.tally.errors
        );
    }

    /// 20 HTTP/2 buyers against a real h2c server (axum over hyper): one
    /// connection, and every first request's END_STREAM in the same write
    /// (one instant for all); later attempts are streams of it too.
    #[tokio::test]
    async fn http2_first_requests_end_in_one_write() {
        let app = axum::Router::new().route(
            "/buy",
            axum::routing::post(|| async { axum::http::StatusCode::CREATED }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        for sync in [Sync::LastByte, Sync::None] {
            let lanes = lanes_for(
                &format!("http://{addr}/buy"),
                Method::POST,
                Protocol::Http2,
                sync,
            );
            let (out, done) =
                crate::engine::race_with(lanes.clone(), config(20, 3), Control::new())
                    .await
                    .unwrap();
            assert_eq!(
                out.tally.count(Outcome::Succeeded),
                60,
                "{sync:?}: {:?}",
                out.tally.errors
            );
            assert_eq!(lanes.opened.load(Ordering::Relaxed), 1, "{sync:?}");
            let ends: Vec<Instant> = done.iter().map(|l| l.first_sent_at().unwrap()).collect();
            let distinct: std::collections::BTreeSet<_> = ends.iter().collect();
            if sync == Sync::LastByte {
                assert_eq!(distinct.len(), 1, "one write ended all 20 first streams");
            }
        }
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), BODY_KEPT + 1);
        assert_eq!(truncate("  short \n"), "short");
    }
}
