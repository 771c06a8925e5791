//! The HTTP/2 request racelab sends (`Wire::h2`) and its reading of its
//! own frames as they are written (`Frames`): when each stream's
//! END_STREAM left, whatever the chunks the writes came in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::CONTENT_LENGTH;
use hyper::Method;

use super::super::h1::tests::wire;
use super::super::net::Tap;
use super::{Ends, Frames};

#[test]
fn the_request_carries_no_connection_headers_and_its_own_length() {
    let body = br#"{"buyer": 17, "q": 1}"#;
    let w = wire(
        "http://127.0.0.1:8080/buy?x=1",
        Method::POST,
        &[
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("Content-Length", "999"),
            ("X-Test", "yes"),
        ],
        body,
    )
    .expect("an http:// request");
    let req = w.h2();
    // HTTP/2 forbids the connection-specific headers (RFC 9113, 8.2.2).
    for h in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "host",
    ] {
        assert!(
            !req.headers().contains_key(h),
            "{h} sent: {:?}",
            req.headers()
        );
    }
    assert_eq!(req.headers()["x-test"], "yes");
    assert_eq!(req.uri().to_string(), "http://127.0.0.1:8080/buy?x=1");
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        req.headers()[CONTENT_LENGTH],
        body.len().to_string().as_str(),
        "racelab's, not the user's"
    );
    assert_eq!(req.headers().get_all(CONTENT_LENGTH).iter().count(), 1);
    // A POST with no body says 0; a GET with none says nothing.
    let empty = wire("http://127.0.0.1:8080/buy", Method::POST, &[], b"").unwrap();
    assert_eq!(empty.h2().headers()[CONTENT_LENGTH], "0");
    let get = wire("http://127.0.0.1:8080/stock", Method::GET, &[], b"").unwrap();
    assert!(get.h2().headers().get(CONTENT_LENGTH).is_none());
    let get = wire("http://127.0.0.1:8080/stock", Method::GET, &[], b"abc").unwrap();
    assert_eq!(get.h2().headers()[CONTENT_LENGTH], "3");
}

#[test]
fn a_given_host_becomes_the_authority() {
    let w = wire(
        "https://10.0.0.1:8443/buy",
        Method::POST,
        &[("Host", "shop.test")],
        b"",
    )
    .expect("an https:// request");
    let req = w.h2();
    let uri = req.uri();
    assert_eq!(uri.authority().map(|a| a.as_str()), Some("shop.test"));
    assert_eq!(uri.scheme_str(), Some("https"));
    assert_eq!(uri.path_and_query().map(|p| p.as_str()), Some("/buy"));
    assert!(!req.headers().contains_key("host"));
    // One that is not an authority leaves the URL's.
    let w = wire(
        "https://10.0.0.1:8443/buy",
        Method::POST,
        &[("Host", "not a host")],
        b"",
    )
    .unwrap();
    assert_eq!(
        w.h2().uri().authority().map(|a| a.as_str()),
        Some("10.0.0.1:8443")
    );
}

/// A frame: 9-byte header (length, type, flags, stream) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;

/// What a client writes: the preface, SETTINGS, stream 1's HEADERS and
/// body without END_STREAM, a PING (its flag byte is the same bit as
/// END_STREAM, and must not count), stream 3 ended in its HEADERS, stream
/// 1 ended by an empty DATA, and a DATA of stream 5 without the flag.
fn conversation() -> Vec<Vec<u8>> {
    vec![
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]),
        frame(HEADERS, 4, 1, b"\x82\x86\x84"),
        frame(DATA, 0, 1, br#"{"buyer": 1}"#),
        frame(PING, ACK, 0, &[7; 8]),
        frame(HEADERS, 4 | END_STREAM, 3, b"\x82\x86\x84"),
        frame(DATA, END_STREAM, 1, b""),
        frame(DATA, 0, 5, b"half"),
    ]
}

fn ends_of(writes: &[(Vec<u8>, Instant)]) -> Vec<(u32, Instant)> {
    let ends = Arc::new(Mutex::new(Ends::default()));
    let mut f = Frames::new(ends.clone());
    for (bytes, at) in writes {
        f.wrote(bytes, *at);
    }
    let mut v: Vec<(u32, Instant)> = ends
        .lock()
        .unwrap()
        .at
        .iter()
        .map(|(s, t)| (*s, *t))
        .collect();
    v.sort();
    v
}

#[test]
fn end_stream_is_noted_per_stream_when_its_frame_is_written() {
    let t0 = Instant::now();
    let at = |i: usize| t0 + Duration::from_millis(i as u64);
    let writes: Vec<(Vec<u8>, Instant)> = conversation()
        .into_iter()
        .enumerate()
        .map(|(i, b)| (b, at(i)))
        .collect();
    // Stream 3 ended in write 5 (its HEADERS), stream 1 in write 6; the
    // PING's flag and stream 5's open DATA count for nothing.
    assert_eq!(ends_of(&writes), [(1, at(6)), (3, at(5))]);
}

#[test]
fn chunks_cut_anywhere_read_the_same() {
    let all: Vec<u8> = conversation().concat();
    let t0 = Instant::now();
    for cut in 1..=all.len() {
        // Every write `cut` bytes long: frames and headers split anywhere.
        let writes: Vec<(Vec<u8>, Instant)> = all
            .chunks(cut)
            .enumerate()
            .map(|(i, c)| (c.to_vec(), t0 + Duration::from_micros(i as u64)))
            .collect();
        let ends = ends_of(&writes);
        let streams: Vec<u32> = ends.iter().map(|(s, _)| *s).collect();
        assert_eq!(streams, [1, 3], "cut every {cut} bytes");
        // Each END_STREAM is dated by the write that completed its header.
        let header_end = |frame_index: usize| -> usize {
            conversation()[..frame_index]
                .iter()
                .map(Vec::len)
                .sum::<usize>()
                + 9
        };
        for (stream, frame_index) in [(3u32, 5usize), (1, 6)] {
            let write = (header_end(frame_index) - 1) / cut;
            let want = t0 + Duration::from_micros(write as u64);
            let got = ends.iter().find(|(s, _)| *s == stream).unwrap().1;
            assert_eq!(got, want, "stream {stream}, cut every {cut} bytes");
        }
    }
}

#[test]
fn one_write_of_many_frames_dates_them_all_alike() {
    let t = Instant::now();
    let one = conversation().concat();
    assert_eq!(ends_of(&[(one, t)]), [(1, t), (3, t)]);
}
