//! Tests of the HTTP lanes against real servers on loopback: raw TCP
//! servers that misbehave on purpose, and axum over HTTP/2.

use super::*;
use hyper::Method;

fn lanes_for(url: &str, method: Method, protocol: Protocol, sync: Sync) -> Arc<HttpLanes> {
    use crate::http::flow::{Phase, Selector, StatusMap, Step, UrlTemplate};
    use crate::http::template::{Context, Names, Template};
    let names = Names::default();
    let url = UrlTemplate::parse(url, "url", &names, names.len()).unwrap();
    let body = Template::parse(
        r#"{"buyer": {{buyer}}}"#,
        "--body",
        Context::Json,
        &names,
        4,
    )
    .unwrap();
    let step = Step {
        name: "request".into(),
        request: format!("{method} {}", url.shown_path()),
        method,
        url,
        headers: Vec::new(),
        fixed_headers: Default::default(),
        body: Some(body),
        extract: Vec::new(),
        expect: Vec::new(),
        statuses: StatusMap {
            success: vec![200, 201],
            sold_out: vec![],
            rejected: vec![],
        },
        phase: Phase::Race,
        every: false,
        buyers: Selector::All,
    };
    assert!(!crate::http::wire::proxied(), "racelab connects itself");
    Arc::new(HttpLanes {
        client: Client::new(),
        flow: Flow {
            steps: vec![step],
            names,
            user_slots: Vec::new(),
            vars: Vec::new(),
            file: None,
        },
        users: None,
        buyer_name: Default::default(),
        timeout: Some(Duration::from_secs(10)),
        direct: true,
        protocol,
        sync,
        roots: Vec::new(),
        cookies: true,
        trace_bodies: false,
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
/// (one instant for all); later attempts are streams of it too. The
/// handler reads the body, as a purchase does: a server that answers on
/// the HEADERS alone may reset the stream before its END_STREAM is sent,
/// and such a request has no end to time.
#[tokio::test]
async fn http2_first_requests_end_in_one_write() {
    let app = axum::Router::new().route(
        "/buy",
        axum::routing::post(|_body: axum::body::Bytes| async { axum::http::StatusCode::CREATED }),
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
        let (out, done) = crate::engine::race_with(lanes.clone(), config(20, 3), Control::new())
            .await
            .unwrap();
        assert_eq!(
            out.tally.count(Outcome::Succeeded),
            60,
            "{sync:?}: {:?}",
            out.tally.errors
        );
        assert_eq!(lanes.opened.load(Ordering::Relaxed), 1, "{sync:?}");
        let ends: Vec<Instant> = done
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.first_sent_at().unwrap_or_else(|| {
                    panic!("{sync:?}: buyer {i}'s first request has no END_STREAM time")
                })
            })
            .collect();
        let distinct: std::collections::BTreeSet<_> = ends.iter().collect();
        if sync == Sync::LastByte {
            assert_eq!(distinct.len(), 1, "one write ended all 20 first streams");
        }
    }
}
