//! The HTTP lane of the engine: each buyer sends purchase requests over its
//! own keep-alive connection (`http://`, see `h1`) or through one shared
//! `reqwest` client (`https://`), connected before the barrier, and turns
//! each response into an outcome by its status code. Per-status latencies are buffered per buyer and folded
//! into histograms once, after the race.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Url};
use tokio::task::JoinSet;

use super::h1::{self, Conn, Target};
use super::template::{Template, Values};
use crate::engine::{join_unless_stopped, tally, Attempt, Control, Lanes, RaceConfig};
use crate::outcome::{AttemptReport, Outcome};
use crate::strategy::{AttemptCtx, TraceEvent};

/// Bytes of an unexpected response body kept in the error message.
const BODY_KEPT: usize = 200;

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
    /// Set for `http://` targets: each buyer then has its own connection.
    pub direct: Option<Target>,
}

/// One buyer's own record: (status code or 0 for no response, µs), and its
/// own connection to an `http://` target.
#[derive(Debug, Default)]
pub struct HttpLane {
    samples: Vec<(u16, u32)>,
    addrs: Option<Arc<[SocketAddr]>>,
    conn: Option<Conn>,
}

pub struct HttpBuyer<'a> {
    lanes: &'a HttpLanes,
    lane: &'a mut HttpLane,
    body: String,
    name: String,
}

impl Lanes for HttpLanes {
    type Lane = HttpLane;
    type Buyer<'a> = HttpBuyer<'a>;

    /// Connect every buyer before the barrier. `http://`: each buyer's own
    /// connection, opened all at once (the handshake is the warm-up).
    /// `https://`: warm reqwest's pool with one request per buyer, all at
    /// once; a HEAD, as it must not buy anything and any response will do.
    async fn open(&self, config: &RaceConfig, control: &Control) -> anyhow::Result<Vec<HttpLane>> {
        let unreachable = |e: &str| {
            anyhow::anyhow!(
                "could not reach the target {}: {e}; is the service running?",
                self.url
            )
        };
        if let Some(target) = &self.direct {
            // The handshake is the warm-up: nothing is sent before the race.
            let addrs = target.resolve().await.map_err(|e| unreachable(&e))?;
            let mut set = JoinSet::new();
            for _ in 0..config.buyers {
                let (addrs, timeout) = (addrs.clone(), self.timeout);
                set.spawn(async move {
                    let conn = h1::connect(&addrs, timeout).await?;
                    Ok::<_, String>(HttpLane {
                        samples: Vec::new(),
                        addrs: Some(addrs),
                        conn: Some(conn),
                    })
                });
            }
            return join_unless_stopped(set, control, |r| r.map_err(|e| unreachable(&e))).await;
        }
        let mut set = JoinSet::new();
        for _ in 0..config.buyers {
            let mut req = self.client.head(self.url.clone());
            if let Some(t) = self.timeout {
                req = req.timeout(t);
            }
            set.spawn(req.send());
        }
        join_unless_stopped(set, control, |r| match r {
            Ok(_) => Ok(HttpLane::default()),
            Err(e) => Err(unreachable(&chain(&e))),
        })
        .await
    }

    fn buyer<'a>(&'a self, lane: &'a mut HttpLane, _seed: u64) -> HttpBuyer<'a> {
        HttpBuyer {
            lanes: self,
            lane,
            body: String::new(),
            name: String::new(),
        }
    }
}

impl Attempt for HttpBuyer<'_> {
    async fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        _trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(AttemptReport, u64), String> {
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
        let started = Instant::now();
        let (outcome, code, message) = match &l.direct {
            Some(target) => self.direct(target).await,
            None => self.pooled().await,
        };
        let us = started.elapsed().as_micros() as u64;
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
    /// One request on the buyer's own connection (`http://`).
    async fn direct(&mut self, target: &Target) -> (Outcome, u16, Option<String>) {
        let l = self.lanes;
        let deadline = l.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut sent = false;
        let resp = match within(deadline, self.send(target, &mut sent)).await {
            Some(Ok(resp)) => resp,
            failed => {
                // Whatever the connection holds now (a request in flight, a
                // broken stream) must not meet the next attempt.
                self.lane.conn = None;
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
        let code = resp.status().as_u16();
        let outcome = l.statuses.classify(code);
        // Read the body in any case: the connection carries the next
        // request only once this response has been read to its end.
        let body = within(deadline, resp.into_body().collect()).await;
        if !matches!(body, Some(Ok(_))) {
            self.lane.conn = None;
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

    /// Send the request on the buyer's connection. A connection found
    /// closed (the server may close idle ones between attempts), or that
    /// hands the request back unsent, is replaced and the request sent once
    /// more. `sent` says whether it may have reached the server.
    async fn send(
        &mut self,
        target: &Target,
        sent: &mut bool,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failed> {
        let live = match &mut self.lane.conn {
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
        self.lane.conn.as_mut().expect("connected just before")
    }

    /// Open a new connection for this lane, dropping the old one.
    async fn reconnect(&mut self) -> Result<(), Failed> {
        self.lane.conn = None;
        let addrs = self
            .lane
            .addrs
            .as_ref()
            .expect("an http:// lane has addresses");
        let conn = h1::connect(addrs, self.lanes.timeout)
            .await
            .map_err(Failed::Connect)?;
        self.lane.conn = Some(conn);
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

fn truncate(s: &str) -> String {
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

    /// A real server that answers each request and closes its connection
    /// (`connection: close`): every attempt after a buyer's first must open
    /// a new connection and send its request exactly once.
    #[tokio::test]
    async fn a_connection_the_server_closes_is_replaced() {
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicU64::new(0));
        let (r, c) = (requests.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                c.fetch_add(1, SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let (mut buf, mut chunk) = (Vec::new(), [0u8; 1024]);
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    r.fetch_add(1, SeqCst);
                    let reply =
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        let url = Url::parse(&format!("http://{addr}/buy")).unwrap();
        let direct = Target::of(&url, &Method::GET, &HeaderMap::new());
        assert!(direct.is_some(), "http:// goes through the own connection");
        let lanes = Arc::new(HttpLanes {
            client: Client::new(),
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            buyer_name: Default::default(),
            timeout: Some(Duration::from_secs(10)),
            statuses: StatusMap {
                success: vec![200],
                sold_out: vec![],
                rejected: vec![],
            },
            direct,
        });
        let config = RaceConfig {
            buyers: 2,
            attempts_per_buyer: 5,
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
        };
        let (out, _) = crate::engine::race_with(lanes, config, Control::new())
            .await
            .unwrap();
        assert_eq!(
            out.tally.count(Outcome::Succeeded),
            10,
            "{:?}",
            out.tally.errors
        );
        assert_eq!(requests.load(SeqCst), 10);
        // Two opened before the barrier, then one per later attempt.
        assert_eq!(conns.load(SeqCst), 10);
    }

    #[test]
    fn long_bodies_are_cut() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), BODY_KEPT + 1);
        assert_eq!(truncate("  short \n"), "short");
    }
}
