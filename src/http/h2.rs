//! HTTP/2 buyers (`--http2`): h2c with prior knowledge for `http://`, ALPN
//! `h2` for `https://`, through the `h2` crate. Buyers' requests are streams
//! over as few connections as the server's `SETTINGS_MAX_CONCURRENT_STREAMS`
//! allows (each buyer stays on its connection for the whole race).
//!
//! The single-packet release: before the barrier every buyer opens its
//! first stream and sends its HEADERS and body without END_STREAM
//! (`Buyer::prime`), and the connection is warmed with a PING once all its
//! streams are out. At the release the first of a connection's buyers to
//! run ends every one of its streams (an empty DATA frame with END_STREAM
//! each) in one go, before the connection task gets to run: h2 then
//! encodes all of them into its write buffer and writes them together, in
//! one write and so (on loopback, or up to an MSS of frames) one segment.
//! That is why racelab does not write its own framing: `h2` batches
//! whatever is queued when its connection task runs, and `Frames` below
//! checks that it did, by reading the frames racelab writes and noting
//! when each stream's END_STREAM left (`first_sent_at`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use h2::client::{ResponseFuture, SendRequest};
use h2::{Ping, Reason, SendStream};
use hyper::body::Bytes;
use tokio::task::JoinHandle;

use super::net::{Endpoint, Tap, Tapped};
use super::text::{chain, truncate, Failure};
use super::wire::{Answer, Wire};

/// Streams per connection when the server sets no limit (h2's own default).
const UNSTATED_LIMIT: usize = 100;

/// When each stream's END_STREAM was written, read from the frames
/// themselves as they go out.
#[derive(Debug, Default)]
struct Ends {
    at: HashMap<u32, Instant>,
}

/// Reads every byte written as HTTP/2 frames (a 9-byte header, then the
/// payload) after the 24-byte preface, noting when each END_STREAM left.
struct Frames {
    ends: Arc<Mutex<Ends>>,
    header: [u8; 9],
    have: usize,
    skip: usize,
}

impl Frames {
    fn new(ends: Arc<Mutex<Ends>>) -> Frames {
        Frames {
            ends,
            header: [0; 9],
            have: 0,
            // The client connection preface.
            skip: 24,
        }
    }
}

impl Tap for Frames {
    fn wrote(&mut self, mut bytes: &[u8], at: Instant) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < 9 {
                return;
            }
            self.have = 0;
            let h = &self.header;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            // DATA or HEADERS with END_STREAM: the request is complete.
            if (kind == 0 || kind == 1) && flags & 1 == 1 {
                self.ends
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .at
                    .insert(stream, at);
            }
            self.skip = len;
        }
    }
}

/// How long `Group::ended_soon` waits for the connection task to write an
/// END_STREAM after the answer came.
const END_STREAM_WAIT: Duration = Duration::from_secs(1);

/// One HTTP/2 connection and the buyers that share it.
pub struct Group {
    send: SendRequest<Bytes>,
    ends: Arc<Mutex<Ends>>,
    /// The first streams' senders, each waiting for its END_STREAM.
    withheld: Mutex<Vec<SendStream<Bytes>>>,
    /// Buyers on this connection, and how many have primed.
    members: usize,
    primed: AtomicUsize,
    ping: tokio::sync::Mutex<Option<h2::PingPong>>,
    driver: JoinHandle<()>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "h2::Group({} buyers)", self.members)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A connected, warmed HTTP/2 connection and the server's stream limit.
async fn connect(endpoint: &Endpoint) -> Result<(Group, usize), String> {
    let stream = endpoint.dial().await?;
    let ends = Arc::new(Mutex::new(Ends::default()));
    let io = Tapped::new(stream, Frames::new(ends.clone()));
    let (send, mut conn) = h2::client::Builder::new()
        .initial_max_send_streams(UNSTATED_LIMIT)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake: {}", chain(&e)))?;
    let mut ping = conn.ping_pong().expect("a fresh connection has its pings");
    // A round trip: the server's SETTINGS (its stream limit) come before
    // its PING ack, and the connection is warm.
    let warmed = {
        let pong = ping.ping(Ping::opaque());
        let limit = async {
            match endpoint.timeout {
                Some(t) => tokio::time::timeout(t, pong)
                    .await
                    .map_err(|_| format!("no answer to a PING within {} ms", t.as_millis()))?,
                None => pong.await,
            }
            .map_err(|e| format!("HTTP/2: {}", chain(&e)))
        };
        tokio::pin!(limit);
        tokio::select! {
            r = &mut limit => r,
            r = &mut conn => Err(match r {
                Ok(()) => "the server closed the HTTP/2 connection".to_string(),
                Err(e) => format!("HTTP/2: {}", chain(&e)),
            }),
        }
    };
    warmed?;
    let limit = conn.max_concurrent_send_streams().max(1);
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((
        Group {
            send,
            ends,
            withheld: Mutex::new(Vec::new()),
            members: 0,
            primed: AtomicUsize::new(0),
            ping: tokio::sync::Mutex::new(Some(ping)),
            driver,
        },
        limit,
    ))
}

/// Connections for `buyers`, as few as the server's stream limit allows,
/// buyers spread evenly over them; one `Arc<Group>` per buyer, in order.
pub async fn open(endpoint: &Endpoint, buyers: usize) -> Result<Vec<Arc<Group>>, String> {
    let (first, limit) = connect(endpoint).await?;
    let count = buyers.div_ceil(limit).max(1);
    let mut groups = vec![first];
    let mut set = tokio::task::JoinSet::new();
    let endpoint = Arc::new(Endpoint {
        addrs: endpoint.addrs.clone(),
        tls: endpoint.tls.clone(),
        timeout: endpoint.timeout,
    });
    for _ in 1..count {
        let e = endpoint.clone();
        set.spawn(async move { connect(&e).await });
    }
    while let Some(r) = set.join_next().await {
        let (g, _) = r.map_err(|e| format!("a connecting task failed: {e}"))??;
        groups.push(g);
    }
    let mut out = Vec::with_capacity(buyers);
    for (i, mut g) in groups.into_iter().enumerate() {
        g.members = buyers / count + usize::from(i < buyers % count);
        let g = Arc::new(g);
        out.extend((0..g.members).map(|_| g.clone()));
    }
    Ok(out)
}

/// A first request sent but for its END_STREAM.
pub struct Primed {
    pub attempt: i64,
    stream: u32,
    response: ResponseFuture,
}

impl std::fmt::Debug for Primed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "h2::Primed(attempt {}, stream {})",
            self.attempt, self.stream
        )
    }
}

impl Group {
    /// Before the barrier: open the buyer's first stream and send all of
    /// it but its END_STREAM; the last buyer of the connection to do so
    /// warms it with a PING.
    pub async fn prime(
        &self,
        wire: &Wire,
        attempt: i64,
        timeout: Option<Duration>,
    ) -> Result<Primed, String> {
        let opening = self.open_stream(wire);
        let opened = match timeout {
            Some(t) => tokio::time::timeout(t, opening).await.unwrap_or_else(|_| {
                Err(format!(
                    "the server opened no stream within {} ms (--request-timeout)",
                    t.as_millis()
                ))
            }),
            None => opening.await,
        };
        if self.primed.fetch_add(1, Ordering::SeqCst) + 1 == self.members {
            if let Some(mut ping) = self.ping.lock().await.take() {
                let pong = ping.ping(Ping::opaque());
                let _ = match timeout {
                    Some(t) => tokio::time::timeout(t, pong).await.ok(),
                    None => Some(pong.await),
                };
            }
        }
        let (response, stream) = opened?;
        let id = response.stream_id().as_u32();
        self.withheld
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stream);
        Ok(Primed {
            attempt,
            stream: id,
            response,
        })
    }

    async fn open_stream(
        &self,
        wire: &Wire,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), String> {
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| format!("HTTP/2 connection: {}", chain(&e)))?;
        let (response, mut stream) = send
            .send_request(wire.h2(), false)
            .map_err(|e| format!("opening a stream: {}", chain(&e)))?;
        if !wire.body.is_empty() {
            stream
                .send_data(wire.body.clone(), false)
                .map_err(|e| format!("sending the body: {}", chain(&e)))?;
        }
        Ok((response, stream))
    }

    /// At the release: end every withheld stream of this connection at
    /// once (only the first buyer to come finds any).
    fn release(&self) {
        let streams = std::mem::take(&mut *self.withheld.lock().unwrap_or_else(|e| e.into_inner()));
        for mut s in streams {
            // A stream the server has reset reports it on its response.
            let _ = s.send_data(Bytes::new(), true);
        }
    }

    /// When the END_STREAM of `stream` was written (and forget it).
    fn ended(&self, stream: u32) -> Option<Instant> {
        self.ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .at
            .remove(&stream)
    }

    /// Complete a primed first request: release the connection's streams,
    /// then wait for this one's answer. Also returns when its END_STREAM
    /// was written.
    pub async fn complete(&self, primed: Primed) -> (Result<Answer, Failure>, Option<Instant>) {
        self.release();
        let answer = answer(primed.response.await).await;
        (answer, self.ended_soon(primed.stream).await)
    }

    /// A request sent whole (every attempt but a primed first one), and
    /// when its last frame was written.
    pub async fn send(&self, wire: &Wire) -> (Result<Answer, Failure>, Option<Instant>) {
        let mut send = match self.send.clone().ready().await {
            Ok(s) => s,
            Err(e) => {
                return (
                    Err(Failure::Unsent(format!("HTTP/2 connection: {}", chain(&e)))),
                    None,
                )
            }
        };
        let opened = send.send_request(wire.h2(), wire.body.is_empty());
        let (response, mut stream) = match opened {
            Ok(o) => o,
            Err(e) => {
                return (
                    Err(Failure::Unsent(format!("opening a stream: {}", chain(&e)))),
                    None,
                )
            }
        };
        if !wire.body.is_empty() {
            if let Err(e) = stream.send_data(wire.body.clone(), true) {
                return (
                    Err(Failure::Unsent(format!("sending the body: {}", chain(&e)))),
                    None,
                );
            }
        }
        let id = response.stream_id().as_u32();
        let answer = answer(response.await).await;
        (answer, self.ended_soon(id).await)
    }

    /// When the END_STREAM of `stream` was written. A server may answer
    /// on the HEADERS alone, before the connection task has written the
    /// END_STREAM after them: give that task its turn first, and on a busy
    /// machine (the task on another worker, not yet scheduled) a little
    /// time, bounded by `END_STREAM_WAIT` (a stream reset before its end
    /// never has one).
    async fn ended_soon(&self, stream: u32) -> Option<Instant> {
        for _ in 0..64 {
            if let Some(at) = self.ended(stream) {
                return Some(at);
            }
            tokio::task::yield_now().await;
        }
        let until = Instant::now() + END_STREAM_WAIT;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if let Some(at) = self.ended(stream) {
                return Some(at);
            }
        }
        None
    }

    /// Whether the connection can still open streams.
    pub fn is_broken(&self) -> bool {
        self.driver.is_finished()
    }
}

/// A single-buyer connection, replacing one that broke mid-race.
pub async fn reconnect(endpoint: &Endpoint) -> Result<Arc<Group>, String> {
    let (mut g, _) = connect(endpoint).await?;
    g.members = 1;
    Ok(Arc::new(g))
}

/// Read a response to its end.
async fn answer(
    response: Result<hyper::Response<h2::RecvStream>, h2::Error>,
) -> Result<Answer, Failure> {
    let resp = match response {
        Ok(r) => r,
        Err(e) if e.reason() == Some(Reason::REFUSED_STREAM) => {
            return Err(Failure::Unsent(format!(
                "the server refused the stream unprocessed ({})",
                chain(&e)
            )))
        }
        Err(e) => {
            return Err(Failure::Sent(format!(
                "the stream failed after the request was sent: {}",
                chain(&e)
            )))
        }
    };
    let status = resp.status().as_u16();
    let (parts, mut recv) = resp.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        match chunk {
            Ok(b) => {
                let _ = recv.flow_control().release_capacity(b.len());
                body.extend_from_slice(&b);
            }
            Err(e) => {
                return Err(Failure::Sent(format!(
                    "HTTP {status}, then the body failed: {}",
                    truncate(&chain(&e))
                )))
            }
        }
    }
    Ok(Answer {
        status,
        headers: parts.headers,
        body,
    })
}
