//! One client connection through the proxy: the start-up (SSLRequest and
//! GSSENCRequest refused with `N`, a CancelRequest forwarded to the
//! upstream, a StartupMessage passed on), then the relay of both
//! directions in one task. Authentication (trust, password, md5,
//! SCRAM-SHA-256 without channel binding) is the client's and the
//! server's business: its messages pass through untouched and are never
//! collected. So do COPY, LISTEN/NOTIFY and every message the proxy does
//! not model.
//!
//! The relay reads what the socket has, finds the message boundaries
//! (`codec::Framer`, one step per message), copies out only the bodies
//! the recorder reads (and at most `ROWS_PER_RESULT` rows of a result),
//! hands them to the recorder's channel, and forwards the bytes it read in
//! one write. With a `Gate` (a scheduler), the client's messages are held
//! batch by batch — a simple Query, or the extended-protocol messages up
//! to a Sync (or a Flush) — until the gate admits the batch.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::codec::{self, back, front, Framer, Malformed, Startup};
use super::Upstream;

/// A client connection's number, from 1, in the order they arrived.
pub type ConnId = u64;

/// Bytes kept of one collected message body (a longer SQL text or Bind is cut).
pub const COLLECT_LIMIT: usize = 64 * 1024;
/// Rows of one result the relay copies for the record.
pub const ROWS_PER_RESULT: u32 = 20;
/// Bytes read from a socket at once.
const READ_BUFFER: usize = 32 * 1024;

/// Which way a chunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    FromClient,
    FromServer,
}

/// One collected message of a chunk: its tag and its body's place in
/// `Chunk::bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Msg {
    pub tag: u8,
    pub start: u32,
    pub end: u32,
    pub truncated: bool,
}

/// The collected messages of what one read brought (or one batch a gate
/// admitted), in order, with the time the proxy forwarded them.
#[derive(Debug)]
pub struct Chunk {
    pub conn: ConnId,
    pub dir: Dir,
    pub at: Instant,
    pub msgs: Vec<Msg>,
    pub bytes: Vec<u8>,
}

impl Chunk {
    fn new(conn: ConnId, dir: Dir) -> Chunk {
        Chunk {
            conn,
            dir,
            at: Instant::now(),
            msgs: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn push(&mut self, tag: u8, body: &[u8], truncated: bool) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(body);
        self.msgs.push(Msg {
            tag,
            start,
            end: self.bytes.len() as u32,
            truncated,
        });
    }

    pub fn body(&self, m: &Msg) -> &[u8] {
        &self.bytes[m.start as usize..m.end as usize]
    }
}

/// What the relay tells the recorder.
#[derive(Debug)]
pub enum Event {
    /// A client's StartupMessage was passed on to the upstream.
    Open {
        conn: ConnId,
        at: Instant,
        client: String,
        /// `user`, `database` and `application_name` as the client sent them.
        params: Vec<(String, String)>,
    },
    Chunk(Chunk),
    /// The connection ended (either side closed, or the proxy stopped);
    /// `error` when the relay itself failed.
    Closed {
        conn: ConnId,
        at: Instant,
        error: Option<String>,
    },
    /// A CancelRequest for a backend; `forwarded` when its key belongs to
    /// a connection through this proxy.
    Cancel {
        at: Instant,
        pid: i32,
        forwarded: bool,
    },
    /// Answered once every event sent before it has been recorded.
    Mark(tokio::sync::oneshot::Sender<()>),
    /// The upstream could not be reached for a client.
    Refused {
        conn: ConnId,
        at: Instant,
        client: String,
        error: String,
    },
}

/// A batch of a client's messages held for a gate: whole messages, the
/// last being a Query, Sync, Flush, FunctionCall or a COPY message.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub conn: ConnId,
    pub bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// The messages: `(tag, body)`.
    pub fn messages(&self) -> Vec<(u8, &'a [u8])> {
        let mut out = Vec::new();
        let mut rest = self.bytes;
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let end = (1 + len).min(rest.len());
            out.push((rest[0], &rest[5.min(end)..end]));
            rest = &rest[end..];
        }
        out
    }
}

/// A scheduler's hook: every batch a client sends after its start-up is
/// handed to `admit` before any of it reaches the server, and forwarded
/// when the future completes. `closed` is called when a connection ends.
pub trait Gate: Send + Sync + 'static {
    fn admit<'a>(&'a self, batch: Batch<'a>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    fn closed(&self, _conn: ConnId) {}
}

/// What every connection of one proxy shares.
pub(crate) struct Shared {
    pub upstream: Upstream,
    pub events: Option<mpsc::Sender<Event>>,
    pub gate: Option<Arc<dyn Gate>>,
    /// The backend keys (pid, secret) of the live connections: a
    /// CancelRequest is forwarded only for one of these.
    pub keys: Mutex<HashSet<(i32, i32)>>,
    pub next_conn: AtomicU64,
}

impl Shared {
    async fn emit(&self, ev: Event) {
        if let Some(tx) = &self.events {
            // A full channel makes the relay wait (bounded memory); a
            // stopped recorder only loses the record.
            let _ = tx.send(ev).await;
        }
    }
}

/// Serve one accepted client until either side closes.
pub(crate) async fn serve(shared: Arc<Shared>, mut client: TcpStream) {
    let _ = client.set_nodelay(true);
    let peer = client
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
    let (startup, packet) = match read_startup(&mut client).await {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => return,
    };
    match startup {
        Startup::Cancel { pid, key } => {
            let known = shared
                .keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&(pid, key));
            if known {
                if let Ok(mut up) = shared.upstream.connect().await {
                    let _ = up.write_all(&codec::cancel_packet(pid, key)).await;
                }
            }
            shared
                .emit(Event::Cancel {
                    at: Instant::now(),
                    pid,
                    forwarded: known,
                })
                .await;
        }
        Startup::Start { params, .. } => {
            let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
            let up = match shared.upstream.connect().await {
                Ok(up) => up,
                Err(e) => {
                    let error = format!("could not connect to {}: {e}", shared.upstream);
                    let _ = client.write_all(&fatal("08006", &error)).await;
                    shared
                        .emit(Event::Refused {
                            conn,
                            at: Instant::now(),
                            client: peer,
                            error,
                        })
                        .await;
                    return;
                }
            };
            let kept = ["user", "database", "application_name"];
            let params = params
                .into_iter()
                .filter(|(k, _)| kept.contains(&k.as_str()))
                .collect();
            shared
                .emit(Event::Open {
                    conn,
                    at: Instant::now(),
                    client: peer,
                    params,
                })
                .await;
            let error = match up {
                super::UpStream::Tcp(s) => {
                    let (ur, uw) = s.into_split();
                    let (cr, cw) = client.into_split();
                    pair(&shared, conn, &packet, cr, cw, ur, uw).await
                }
                super::UpStream::Unix(s) => {
                    let (ur, uw) = s.into_split();
                    let (cr, cw) = client.into_split();
                    pair(&shared, conn, &packet, cr, cw, ur, uw).await
                }
            };
            if let Some(g) = &shared.gate {
                g.closed(conn);
            }
            shared
                .emit(Event::Closed {
                    conn,
                    at: Instant::now(),
                    error,
                })
                .await;
        }
        Startup::Ssl | Startup::GssEnc => unreachable!("answered in read_startup"),
    }
}

/// Read the client's first packet: SSLRequest and GSSENCRequest are
/// answered `N` (no encryption here: the client goes on in plain text, or
/// gives up if it insists on TLS) and the next packet is read. Returns the
/// start-up and its bytes as they are forwarded.
async fn read_startup(client: &mut TcpStream) -> std::io::Result<Option<(Startup, Vec<u8>)>> {
    for _ in 0..3 {
        let mut len = [0u8; 4];
        client.read_exact(&mut len).await?;
        let n = u32::from_be_bytes(len) as usize;
        if !(8..=codec::MAX_STARTUP).contains(&n) {
            return Ok(None);
        }
        let mut packet = vec![0u8; n];
        packet[..4].copy_from_slice(&len);
        client.read_exact(&mut packet[4..]).await?;
        match codec::read_startup(&packet[4..]) {
            Ok(Startup::Ssl | Startup::GssEnc) => client.write_all(b"N").await?,
            Ok(s) => return Ok(Some((s, packet))),
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}

/// An ErrorResponse (FATAL) the proxy itself sends, before closing.
fn fatal(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', &format!("racelab proxy: {message}")),
    ] {
        body.push(k);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = vec![back::ERROR];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

/// Relay both directions until one ends; the other is dropped with it.
async fn pair<CR, CW, UR, UW>(
    shared: &Arc<Shared>,
    conn: ConnId,
    startup: &[u8],
    cr: CR,
    cw: CW,
    ur: UR,
    mut uw: UW,
) -> Option<String>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    if let Err(e) = uw.write_all(startup).await {
        return Some(format!("forwarding the start-up: {e}"));
    }
    let up = from_client(shared, conn, cr, uw);
    let down = from_server(shared, conn, ur, cw);
    let end = tokio::select! {
        r = up => r,
        r = down => r,
    };
    end.err().map(|e| e.to_string())
}

fn io_err(e: Malformed) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// Client messages the recorder reads.
fn collect_front(tag: u8) -> bool {
    matches!(
        tag,
        front::QUERY
            | front::PARSE
            | front::BIND
            | front::DESCRIBE
            | front::EXECUTE
            | front::CLOSE
            | front::SYNC
            | front::FLUSH
            | front::FUNCTION_CALL
    )
}

/// Client messages that end a batch a gate admits.
fn ends_batch(tag: u8) -> bool {
    matches!(
        tag,
        front::QUERY | front::SYNC | front::FLUSH | front::FUNCTION_CALL | b'd' | b'c' | b'f'
    )
}

/// Client messages that open (or continue) a batch.
fn in_batch(tag: u8) -> bool {
    matches!(
        tag,
        front::PARSE | front::BIND | front::DESCRIBE | front::EXECUTE | front::CLOSE
    )
}

async fn from_client<R, W>(
    shared: &Arc<Shared>,
    conn: ConnId,
    mut rd: R,
    mut wr: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let recording = shared.events.is_some();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut framer = Framer::new(COLLECT_LIMIT);
    // With a gate: the bytes of the batch being held, and whether one is open.
    let mut held: Vec<u8> = Vec::new();
    let mut open = false;
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let chunk = &buf[..n];
        let mut ev = Chunk::new(conn, Dir::FromClient);
        let mut pos = 0;
        let Some(gate) = &shared.gate else {
            // The fast path: look, collect, forward what was read at once.
            if recording {
                while let Some(f) = framer
                    .next(chunk, &mut pos, collect_front)
                    .map_err(io_err)?
                {
                    if f.collected {
                        ev.push(f.tag, framer.body(), f.truncated);
                    }
                }
                if !ev.msgs.is_empty() {
                    shared.emit(Event::Chunk(ev)).await;
                }
            }
            wr.write_all(chunk).await?;
            continue;
        };
        let mut from = 0;
        while let Some(f) = framer
            .next(chunk, &mut pos, collect_front)
            .map_err(io_err)?
        {
            if f.collected {
                ev.push(f.tag, framer.body(), f.truncated);
            }
            if in_batch(f.tag) {
                open = true;
            } else if ends_batch(f.tag) {
                held.extend_from_slice(&chunk[from..f.end]);
                from = f.end;
                gate.admit(Batch { conn, bytes: &held }).await;
                ev.at = Instant::now();
                let done = std::mem::replace(&mut ev, Chunk::new(conn, Dir::FromClient));
                if recording && !done.msgs.is_empty() {
                    shared.emit(Event::Chunk(done)).await;
                }
                wr.write_all(&held).await?;
                held.clear();
                open = false;
            } else if !open {
                // Outside a batch (a Terminate, a password message): on.
                wr.write_all(&chunk[from..f.end]).await?;
                from = f.end;
            }
        }
        held.extend_from_slice(&chunk[from..]);
        if !open && !framer.in_message() {
            wr.write_all(&held).await?;
            held.clear();
        }
        if recording && !ev.msgs.is_empty() {
            shared.emit(Event::Chunk(ev)).await;
        }
    }
}

/// Server messages the recorder reads (rows: see `ROWS_PER_RESULT`).
fn collect_back(tag: u8) -> bool {
    matches!(
        tag,
        back::BACKEND_KEY
            | back::PARAMETER_STATUS
            | back::READY
            | back::ROW_DESCRIPTION
            | back::DATA_ROW
            | back::COMMAND_COMPLETE
            | back::EMPTY_QUERY
            | back::ERROR
            | back::PARSE_COMPLETE
            | back::BIND_COMPLETE
            | back::CLOSE_COMPLETE
            | back::PARAMETER_DESCRIPTION
            | back::NO_DATA
            | back::PORTAL_SUSPENDED
            | back::COPY_IN
            | back::COPY_OUT
            | back::COPY_BOTH
            | back::NOTIFICATION
            | back::FUNCTION_RESULT
    )
}

async fn from_server<R, W>(
    shared: &Arc<Shared>,
    conn: ConnId,
    mut rd: R,
    mut wr: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; READ_BUFFER];
    let mut framer = Framer::new(COLLECT_LIMIT);
    let mut rows: u32 = 0;
    let mut key: Option<(i32, i32)> = None;
    let result = async {
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let chunk = &buf[..n];
            let ev = scan_server(shared, conn, &mut framer, chunk, &mut rows, &mut key)?;
            if !ev.msgs.is_empty() {
                shared.emit(Event::Chunk(ev)).await;
            }
            wr.write_all(chunk).await?;
        }
    }
    .await;
    if let Some(k) = key {
        shared
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&k);
    }
    result
}

/// Frame what the server sent: note the backend key, count a result's
/// rows, collect what the recorder reads.
fn scan_server(
    shared: &Shared,
    conn: ConnId,
    framer: &mut Framer,
    chunk: &[u8],
    rows: &mut u32,
    key: &mut Option<(i32, i32)>,
) -> std::io::Result<Chunk> {
    let recording = shared.events.is_some();
    let mut ev = Chunk::new(conn, Dir::FromServer);
    let mut pos = 0;
    // Collect a DataRow only while the result has had fewer than
    // ROWS_PER_RESULT (a Cell: the closure only reads it).
    let room = std::cell::Cell::new(*rows < ROWS_PER_RESULT);
    let want = |tag: u8| {
        if tag == back::DATA_ROW {
            recording && room.get()
        } else {
            tag == back::BACKEND_KEY || (recording && collect_back(tag))
        }
    };
    while let Some(f) = framer.next(chunk, &mut pos, want).map_err(io_err)? {
        match f.tag {
            back::DATA_ROW => {
                *rows = rows.saturating_add(1);
                room.set(*rows < ROWS_PER_RESULT);
            }
            back::COMMAND_COMPLETE
            | back::ERROR
            | back::EMPTY_QUERY
            | back::PORTAL_SUSPENDED
            | back::READY => {
                *rows = 0;
                room.set(true);
            }
            back::BACKEND_KEY if key.is_none() => {
                let mut r = codec::Reader::new(framer.body());
                if let (Ok(pid), Ok(secret)) = (r.i32(), r.i32()) {
                    *key = Some((pid, secret));
                    shared
                        .keys
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((pid, secret));
                }
            }
            _ => {}
        }
        if f.collected && recording {
            ev.push(f.tag, framer.body(), f.truncated);
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_lists_its_messages() {
        let mut b = Vec::new();
        for (tag, body) in [(b'P', &b"\0SELECT 1\0\0\0"[..]), (b'S', &b""[..])] {
            b.push(tag);
            b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            b.extend_from_slice(body);
        }
        let batch = Batch { conn: 1, bytes: &b };
        let m = batch.messages();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, b'P');
        assert_eq!(m[0].1, b"\0SELECT 1\0\0\0");
        assert_eq!(m[1], (b'S', &b""[..]));
    }

    #[test]
    fn the_proxy_s_own_error_is_a_fatal_error_response() {
        let m = fatal("08006", "no upstream");
        assert_eq!(m[0], b'E');
        let e = codec::read_error(&m[5..]).unwrap();
        assert_eq!(e.sqlstate, "08006");
        assert_eq!(e.message, "racelab proxy: no upstream");
    }
}
