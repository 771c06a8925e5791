//! One buyer's way to the target for a race step: its own HTTP/1.1
//! connection (`h1`), a stream at a time of a shared HTTP/2 connection
//! (`h2`), or the shared reqwest client when a proxy is configured. A
//! link primes its first request before the barrier (all of it but the
//! final byte or frame) and completes it at the release; later requests
//! go whole. Steps outside the race go through reqwest (`pooled`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::Method;
use reqwest::{Client, Url};

use super::h1::{self, Conn};
use super::h2::{self as http2, Group};
use super::net::{Endpoint, Stream};
use super::text::{chain, deadline, no_connect, no_prime, no_response, within, Failure};
use super::wire::{Answer, Wire};

/// How long a primed HTTP/1.1 request waits, before the barrier, for a
/// server that answers partial requests to show itself.
const SETTLE_MIN: Duration = Duration::from_millis(1);
const SETTLE_MAX: Duration = Duration::from_millis(500);

/// A buyer's link for one race step.
#[derive(Debug)]
pub enum Link {
    /// Through the shared reqwest client (a proxy is set).
    Pooled,
    /// Its own HTTP/1.1 connection.
    H1 {
        endpoint: Arc<Endpoint>,
        /// Shared by the race's links: their final bytes, written together.
        release: Arc<h1::Release>,
        state: H1,
    },
    /// A stream at a time of a shared HTTP/2 connection.
    H2 {
        endpoint: Arc<Endpoint>,
        group: Arc<Group>,
        /// The first request sent but for its END_STREAM, for an attempt
        /// (or why it could not be).
        primed: Option<(i64, Result<http2::Primed, String>)>,
    },
}

/// Where a buyer's own HTTP/1.1 connection stands.
#[derive(Debug, Default)]
pub enum H1 {
    /// Connected before the barrier, not yet handed to hyper, and how long
    /// connecting took.
    Fresh(Stream, Duration),
    /// The first request written but for its final byte, for an attempt
    /// (or why it could not be written).
    Primed(i64, Result<h1::Primed, String>),
    /// Carried by hyper.
    Live(Conn),
    /// No connection: the next request opens one.
    #[default]
    Closed,
}

/// What a link's request came to.
#[derive(Debug)]
pub struct Exchanged {
    pub answer: Answer,
    /// Answered before the request was complete (its final byte withheld).
    pub early: bool,
}

impl Link {
    /// Before the barrier: send `wire` but for its end, for `attempt`.
    pub async fn prime(
        &mut self,
        wire: &Wire,
        attempt: i64,
        timeout: Option<Duration>,
        scratch: &mut Vec<u8>,
    ) {
        match self {
            Link::Pooled => {}
            Link::H1 { state, release, .. } => {
                let H1::Fresh(stream, dialed) = std::mem::take(state) else {
                    return;
                };
                // Long enough for an early answer to come back: about two
                // round trips, as connecting took.
                let settle = (dialed * 2).clamp(SETTLE_MIN, SETTLE_MAX);
                wire.serialize(scratch);
                let done = within(
                    deadline(timeout),
                    h1::prime(stream, scratch, attempt, &wire.method, release, settle),
                )
                .await
                .unwrap_or_else(|| Err(no_prime(timeout)));
                *state = H1::Primed(attempt, done);
            }
            Link::H2 { group, primed, .. } => {
                let done = group.prime(wire, attempt, timeout).await;
                *primed = Some((attempt, done));
            }
        }
    }

    /// Send `wire` (to `url`) for `attempt`: complete it when it was
    /// primed for this attempt, else send it whole. `sent_at` gets when the
    /// request was complete on the wire, when known.
    pub async fn exchange(
        &mut self,
        wire: &Wire,
        url: &Url,
        attempt: i64,
        client: &Client,
        timeout: Option<Duration>,
        sent_at: &mut Option<Instant>,
    ) -> Result<Exchanged, Failure> {
        let whole = |answer| {
            Ok(Exchanged {
                answer,
                early: false,
            })
        };
        match self {
            Link::Pooled => {
                *sent_at = Some(Instant::now());
                pooled(
                    client,
                    &wire.method,
                    url,
                    wire.headers.clone(),
                    wire.body.clone(),
                    timeout,
                )
                .await
                .and_then(whole)
            }
            Link::H1 {
                endpoint, state, ..
            } => {
                match std::mem::take(state) {
                    H1::Primed(a, Ok(p)) if a == attempt => {
                        let done = within(deadline(timeout), p.complete(sent_at)).await;
                        return match done {
                            Some(Ok(c)) => {
                                if let Some(stream) = c.reusable {
                                    if let Ok(conn) = h1::handshake(stream).await {
                                        *state = H1::Live(conn);
                                    }
                                }
                                Ok(Exchanged {
                                    answer: c.answer,
                                    early: c.early,
                                })
                            }
                            Some(Err(e)) => Err(e),
                            None if sent_at.is_some() => Err(no_response(timeout)),
                            None => Err(Failure::Unsent(no_prime(timeout))),
                        };
                    }
                    H1::Primed(a, Err(e)) if a == attempt => {
                        return Err(Failure::Unsent(format!(
                            "the request could not be sent before the race: {e}"
                        )))
                    }
                    // A primed request of another attempt is dropped with
                    // its connection.
                    H1::Primed(..) => {}
                    other => *state = other,
                }
                let answer = h1_send(endpoint, state, wire, timeout, sent_at).await?;
                whole(answer)
            }
            Link::H2 {
                endpoint,
                group,
                primed,
            } => {
                let d = deadline(timeout);
                let done = match primed.take() {
                    Some((a, Ok(p))) if a == attempt => within(d, group.complete(p)).await,
                    Some((a, Err(e))) if a == attempt => {
                        return Err(Failure::Unsent(format!(
                            "the request could not be sent before the race: {e}"
                        )))
                    }
                    _ => {
                        if group.is_broken() {
                            match within(d, http2::reconnect(endpoint)).await {
                                Some(Ok(g)) => *group = g,
                                Some(Err(e)) => {
                                    return Err(Failure::Unsent(format!("could not connect: {e}")))
                                }
                                None => return Err(no_connect(timeout)),
                            }
                        }
                        within(d, group.send(wire)).await
                    }
                };
                match done {
                    Some((answer, ended)) => {
                        *sent_at = ended;
                        whole(answer?)
                    }
                    None => Err(no_response(timeout)),
                }
            }
        }
    }
}

/// One request through hyper on the buyer's HTTP/1.1 connection. A
/// connection found closed (the server may close idle ones between
/// attempts), or that hands the request back unsent, is replaced and the
/// request sent once more.
async fn h1_send(
    endpoint: &Endpoint,
    state: &mut H1,
    wire: &Wire,
    timeout: Option<Duration>,
    sent_at: &mut Option<Instant>,
) -> Result<Answer, Failure> {
    let d = deadline(timeout);
    let mut sent = false;
    let conn = match within(d, send(endpoint, state, wire, &mut sent)).await {
        Some(Ok((conn, resp))) => (conn, resp),
        // Whatever the connection holds now (a request in flight, a
        // broken stream) must not meet the next attempt.
        Some(Err(e)) => return Err(e),
        None if !sent => return Err(no_connect(timeout)),
        None => return Err(no_response(timeout)),
    };
    let (conn, resp) = conn;
    // The request is out once its answer has begun: the last write
    // before it completed the request.
    *sent_at = conn.written();
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    // Read the body in any case: the connection carries the next request
    // only once this response has been read to its end.
    let body = match within(d, body.collect()).await {
        Some(Ok(b)) => {
            *state = H1::Live(conn);
            b.to_bytes().to_vec()
        }
        Some(Err(e)) => {
            return Err(Failure::Sent(format!(
                "HTTP {status}, then the body failed: {}",
                chain(&e)
            )))
        }
        None => return Err(no_response(timeout)),
    };
    Ok(Answer {
        status,
        headers: parts.headers,
        body,
    })
}

/// Send on the live connection, or a new one; `sent` says whether the
/// request may have reached the server.
async fn send(
    endpoint: &Endpoint,
    state: &mut H1,
    wire: &Wire,
    sent: &mut bool,
) -> Result<(Conn, hyper::Response<hyper::body::Incoming>), Failure> {
    let mut conn = match std::mem::take(state) {
        H1::Live(mut c) => c.sender.ready().await.is_ok().then_some(c),
        H1::Fresh(stream, _) => Some(
            h1::handshake(stream)
                .await
                .map_err(|e| Failure::Unsent(format!("could not connect: {e}")))?,
        ),
        _ => None,
    };
    let fresh = conn.is_none();
    let mut c = match conn.take() {
        Some(c) => c,
        None => connect(endpoint).await?,
    };
    *sent = true;
    let mut err = match c.sender.try_send_request(wire.hyper()).await {
        Ok(resp) => return Ok((c, resp)),
        Err(e) => e,
    };
    if err.take_message().is_none() {
        return Err(Failure::Sent(format!(
            "the connection failed after the request was sent: {}",
            chain(err.error())
        )));
    }
    *sent = false;
    if fresh {
        return Err(Failure::Unsent(format!(
            "the connection failed before the request was sent: {}",
            chain(err.error())
        )));
    }
    let mut c = connect(endpoint).await?;
    *sent = true;
    match c.sender.try_send_request(wire.hyper()).await {
        Ok(resp) => Ok((c, resp)),
        Err(e) if e.message().is_some() => {
            *sent = false;
            Err(Failure::Unsent(format!(
                "the connection failed before the request was sent: {}",
                chain(e.error())
            )))
        }
        Err(e) => Err(Failure::Sent(format!(
            "the connection failed after the request was sent: {}",
            chain(e.error())
        ))),
    }
}

async fn connect(endpoint: &Endpoint) -> Result<Conn, Failure> {
    h1::connect(endpoint)
        .await
        .map_err(|e| Failure::Unsent(format!("could not connect: {e}")))
}

/// One request through the shared reqwest client: the steps outside the
/// race, and every request when a proxy is set.
pub async fn pooled(
    client: &Client,
    method: &Method,
    url: &Url,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
) -> Result<Answer, Failure> {
    let mut req = client.request(method.clone(), url.clone()).headers(headers);
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            // Read the body in any case: the connection is reused only
            // once the response has been read to its end.
            match resp.bytes().await {
                Ok(b) => Ok(Answer {
                    status,
                    headers,
                    body: b.to_vec(),
                }),
                Err(e) => Err(Failure::Sent(format!(
                    "HTTP {status}, then the body failed: {}",
                    chain(&e)
                ))),
            }
        }
        Err(e) if e.is_connect() => {
            Err(Failure::Unsent(format!("could not connect: {}", chain(&e))))
        }
        // Sent, but no answer: the purchase may or may not have happened.
        Err(e) if e.is_timeout() => Err(no_response(timeout)),
        Err(e) => Err(Failure::Sent(format!(
            "the connection failed after the request was sent: {}",
            chain(&e)
        ))),
    }
}
