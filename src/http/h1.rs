//! A buyer's own HTTP/1.1 keep-alive connection (`http://` and
//! `https://`), and the first request of a race written by hand.
//!
//! Later requests go through hyper's low-level client API: reqwest's shared
//! pool costs more per request (client and connector clones, a hashed pool
//! checkout, big future moves) than the trivial endpoints racelab is
//! benchmarked against take to answer, and a dedicated connection per buyer
//! is what the race wants anyway: every buyer connected before the barrier.
//!
//! The first request with last-byte synchronisation cannot go through
//! hyper, which writes a request whole: racelab serializes it itself,
//! writes all of it but its final byte before the barrier (`prime`), writes
//! that byte at the release, reads the response (`Primed::complete`), and
//! only then hands the connection to hyper for the rest of the race.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING,
};
use hyper::Method;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::net::{Endpoint, Stream, Tap, Tapped};
use super::text::{chain, Failure};
use super::wire::Answer;

/// Most bytes of a response head racelab reads.
const MAX_HEAD: usize = 64 * 1024;

/// One open connection driven by hyper; its driver task ends with it.
#[derive(Debug)]
pub struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    written: Arc<Mutex<Option<Instant>>>,
}

impl Conn {
    /// When hyper last wrote to the connection.
    pub fn written(&self) -> Option<Instant> {
        *self.written.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Notes when the last write succeeded.
struct Stamp(Arc<Mutex<Option<Instant>>>);

impl Tap for Stamp {
    fn wrote(&mut self, _bytes: &[u8], at: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A connection dropped mid-request (a timeout) may wait on a
        // server that never answers: close the socket now, not at exit.
        self.driver.abort();
    }
}

/// Hand a connected stream to hyper.
pub async fn handshake(stream: Stream) -> Result<Conn, String> {
    let written = Arc::new(Mutex::new(None));
    let io = Tapped::new(stream, Stamp(written.clone()));
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {}", chain(&e)))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn {
        sender,
        driver,
        written,
    })
}

/// Dial `endpoint` and hand the connection to hyper.
pub async fn connect(endpoint: &Endpoint) -> Result<Conn, String> {
    handshake(endpoint.dial().await?).await
}

/// The final bytes of every buyer's primed request on plain TCP, written
/// together by whichever buyer is released first: one pass that looks for
/// early answers, then one tight loop of one-byte `send`s, so that the
/// spread of the ends is that loop's and not the scheduler's walk over
/// every buyer's task. TLS connections cannot be written from outside
/// their session: their buyers each write their own byte.
#[derive(Debug, Default)]
pub struct Release {
    state: Mutex<Sweep>,
}

#[derive(Debug, Default)]
struct Sweep {
    /// A duplicate of each socket (so a buyer that is gone cannot have its
    /// descriptor reused under the sweep), and its final byte.
    pending: Vec<(usize, OwnedFd, u8)>,
    written: Vec<Swept>,
    next: usize,
}

/// What the sweep did with one buyer's final byte.
#[derive(Debug, Clone)]
enum Swept {
    Wrote(Instant),
    /// Not written: the server had answered, or closed, before.
    Early {
        closed: bool,
    },
    Failed(String),
}

impl Release {
    fn enlist(&self, fd: OwnedFd, last: u8) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = s.next;
        s.next += 1;
        s.pending.push((id, fd, last));
        s.written.push(Swept::Failed("not released".into()));
        id
    }

    /// Write every pending final byte (the first caller does; later
    /// callers find nothing pending), then say what became of `id`'s.
    fn fire(&self, id: usize) -> Swept {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::take(&mut s.pending);
        let mut early = Vec::with_capacity(pending.len());
        for (_, fd, _) in &pending {
            let mut b = 0u8;
            // SAFETY: a one-byte peek into a local on a descriptor we own.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    (&mut b as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            early.push(match n {
                0 => Some(true),
                n if n > 0 => Some(false),
                _ => None,
            });
        }
        for ((i, fd, last), early) in pending.iter().zip(early) {
            s.written[*i] = match early {
                Some(closed) => Swept::Early { closed },
                None => {
                    // SAFETY: one byte from a local, on a descriptor we own.
                    let n = unsafe {
                        libc::send(
                            fd.as_raw_fd(),
                            (last as *const u8).cast(),
                            1,
                            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                        )
                    };
                    if n == 1 {
                        Swept::Wrote(Instant::now())
                    } else {
                        Swept::Failed(std::io::Error::last_os_error().to_string())
                    }
                }
            };
        }
        drop(pending);
        s.written[id].clone()
    }
}

/// A first request written but for its final byte.
#[derive(Debug)]
pub struct Primed {
    stream: Stream,
    last: u8,
    /// The attempt it belongs to.
    pub attempt: i64,
    method: Method,
    /// Its place in the race's sweep (plain TCP).
    swept: Option<(Arc<Release>, usize)>,
    /// What the server sent before the request was complete, if anything
    /// (`Some(empty)`: it closed the connection).
    early: Option<Vec<u8>>,
}

/// What the server answered to a primed request.
#[derive(Debug)]
pub struct Completed {
    pub answer: Answer,
    /// The connection, when it can carry the next request.
    pub reusable: Option<Stream>,
    /// Given before the request was complete (its final byte withheld).
    pub early: bool,
}

/// Write `request` but its final byte on `stream` (before the barrier),
/// then give the server `settle` to show whether it answers a partial
/// request (a server that does would answer the race's requests before
/// they are complete). On plain TCP the final byte joins `release`.
pub async fn prime(
    mut stream: Stream,
    request: &[u8],
    attempt: i64,
    method: &Method,
    release: &Arc<Release>,
    settle: Duration,
) -> Result<Primed, String> {
    let (&last, head) = request.split_last().expect("a request has bytes");
    let failed = |e: std::io::Error| format!("writing the request: {}", chain(&e));
    stream.write_all(head).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    let mut chunk = [0u8; 4096];
    let early = match tokio::time::timeout(settle, stream.read(&mut chunk)).await {
        Err(_) => None,
        Ok(Ok(n)) => Some(chunk[..n].to_vec()),
        Ok(Err(e)) => return Err(format!("the connection failed: {}", chain(&e))),
    };
    let swept = match (&stream, &early) {
        (Stream::Plain(tcp), None) => {
            let fd = tcp.as_fd().try_clone_to_owned().map_err(failed)?;
            Some((release.clone(), release.enlist(fd, last)))
        }
        _ => None,
    };
    Ok(Primed {
        stream,
        last,
        attempt,
        method: method.clone(),
        swept,
        early,
    })
}

/// A server that would not wait for the end of a request.
fn early(what: &str) -> Failure {
    Failure::Unsent(early_note(what))
}

/// What a server that answers or closes before the end of a request did.
pub fn early_note(what: &str) -> String {
    format!(
        "the server {what} before the request was complete; it does not wait for a request \
         sent in parts (race it with --sync none)"
    )
}

impl Primed {
    /// At the release: write the final byte (when it left goes to
    /// `sent_at`), then read the answer. A server that answered or closed
    /// before the request was complete is reported as such: it does not
    /// take a request in parts.
    pub async fn complete(mut self, sent_at: &mut Option<Instant>) -> Result<Completed, Failure> {
        let mut buf = Vec::new();
        let early_answer = match (self.early.take(), self.swept.take()) {
            (Some(sent), _) if sent.is_empty() => return Err(early("closed the connection")),
            (Some(sent), _) => {
                buf = sent;
                true
            }
            (None, swept) => match swept {
                Some((release, id)) => match release.fire(id) {
                    Swept::Wrote(at) => {
                        *sent_at = Some(at);
                        false
                    }
                    Swept::Early { closed: true } => return Err(early("closed the connection")),
                    Swept::Early { closed: false } => true,
                    Swept::Failed(e) => {
                        return Err(Failure::Unsent(format!("the connection failed: {e}")))
                    }
                },
                None => match self.stream.read_ready(&mut buf).await {
                    Ok(None) => {
                        let wrote = self.stream.write_all(&[self.last]).await;
                        *sent_at = Some(Instant::now());
                        if let Err(e) = wrote.and(self.stream.flush().await) {
                            // The byte may have left: the request may be complete.
                            return Err(Failure::Sent(format!(
                                "the connection failed as the request was completed: {}",
                                chain(&e)
                            )));
                        }
                        false
                    }
                    Ok(Some(0)) => return Err(early("closed the connection")),
                    Ok(Some(_)) => true,
                    Err(e) => {
                        return Err(Failure::Unsent(format!(
                            "the connection failed: {}",
                            chain(&e)
                        )))
                    }
                },
            },
        };
        let read = read_answer(&mut self.stream, &mut buf, &self.method).await;
        if early_answer {
            // The server's answer to the request as it stood: it counts as
            // given (a handler that ignores the body may well have bought),
            // but the connection, one byte short, carries nothing more.
            return match read {
                Ok(r) => Ok(Completed {
                    answer: r.answer,
                    reusable: None,
                    early: true,
                }),
                Err(e) => Err(early(&format!("answered ({e})"))),
            };
        }
        match read {
            Ok(r) => Ok(Completed {
                answer: r.answer,
                reusable: r.keep.then_some(self.stream),
                early: false,
            }),
            Err(e) => Err(Failure::Sent(format!(
                "the connection failed after the request was sent: {e}"
            ))),
        }
    }
}

/// A response as read: its status, its body, and whether the connection
/// may carry another request.
struct Reply {
    answer: Answer,
    keep: bool,
}

/// Read one response from `stream` (`buf` holds what already arrived).
async fn read_answer(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    method: &Method,
) -> Result<Reply, String> {
    loop {
        let (status, head_len, length, mut keep, headers) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let (length, keep) = framing(&resp, method);
                    let mut map = HeaderMap::new();
                    for h in resp.headers.iter() {
                        if let (Ok(k), Ok(v)) = (
                            HeaderName::from_bytes(h.name.as_bytes()),
                            HeaderValue::from_bytes(h.value),
                        ) {
                            map.append(k, v);
                        }
                    }
                    break (resp.code.unwrap_or(0), n, length, keep, map);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                    fill(stream, buf).await?;
                }
                Ok(httparse::Status::Partial) => {
                    return Err(format!("a response head longer than {MAX_HEAD} bytes"))
                }
                Err(e) => return Err(format!("an unreadable response ({e})")),
            }
        };
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            continue;
        }
        let body = match length {
            Length::Fixed(n) => {
                while buf.len() < n {
                    fill(stream, buf).await?;
                }
                buf.drain(..n).collect()
            }
            Length::Chunked => dechunk(stream, buf).await?,
            Length::UntilClose => {
                while fill(stream, buf).await.is_ok() {}
                keep = false;
                std::mem::take(buf)
            }
        };
        // Bytes past the answer belong to nothing racelab sent.
        keep &= buf.is_empty();
        return Ok(Reply {
            answer: Answer {
                status,
                headers,
                body,
            },
            keep,
        });
    }
}

enum Length {
    Fixed(usize),
    Chunked,
    UntilClose,
}

/// How the body of `resp` is delimited, and whether the connection stays open.
fn framing(resp: &httparse::Response, method: &Method) -> (Length, bool) {
    let status = resp.code.unwrap_or(0);
    let header = |name: &'static str| header_values(resp, name);
    let close = header(CONNECTION.as_str()).any(|v| v.split(',').any(|t| t.trim() == "close"));
    let keep_alive =
        header(CONNECTION.as_str()).any(|v| v.split(',').any(|t| t.trim() == "keep-alive"));
    let reusable = !close && (resp.version == Some(1) || keep_alive);
    if *method == Method::HEAD || status == 204 || status == 304 {
        return (Length::Fixed(0), reusable);
    }
    if header(TRANSFER_ENCODING.as_str()).any(|v| v.contains("chunked")) {
        return (Length::Chunked, reusable);
    }
    match header(CONTENT_LENGTH.as_str())
        .next()
        .and_then(|v| v.trim().parse().ok())
    {
        Some(n) => (Length::Fixed(n), reusable),
        None => (Length::UntilClose, false),
    }
}

/// The values of the header `name`, lower-cased.
fn header_values<'a>(
    resp: &'a httparse::Response<'_, '_>,
    name: &'static str,
) -> impl Iterator<Item = String> + 'a {
    resp.headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
}

/// Read more of the response; an error when the connection ended.
async fn fill(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("the server closed the connection mid-response".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(chain(&e)),
    }
}

/// A chunked body, decoded; trailers are read and dropped.
async fn dechunk(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(stream, buf).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("a bad chunk size {line:?}"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let end = loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    fill(stream, buf).await?;
                };
                buf.drain(..end + 2);
                if end == 0 {
                    return Ok(body);
                }
            }
        }
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}
