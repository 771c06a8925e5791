//! The HTTP/1.1 request racelab writes itself (the first request of a
//! last-byte race, `Wire::serialize`): read back with `httparse`, as a
//! server would read it.

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use hyper::Method;
use reqwest::Url;

use super::super::wire::{Origin, Wire};

/// The request for `url` with the user's `headers` and `body`; None when
/// racelab does not speak its scheme.
pub(in crate::http) fn wire(
    url: &str,
    method: Method,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Option<Wire> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let url = Url::parse(url).unwrap();
    Origin::of(&url)?.wire(&method, &url, map, Bytes::from_static(body))
}

/// The request `w` writes, parsed: (method, path, headers as lower-case
/// name and value, body).
fn written(w: &Wire) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let mut out = vec![b'x'; 7]; // serialize starts afresh
    w.serialize(&mut out);
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(&out).expect("a valid request") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("incomplete request: {out:?}"),
    };
    assert_eq!(req.version, Some(1), "HTTP/1.1");
    let hs = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8(h.value.to_vec()).unwrap(),
            )
        })
        .collect();
    (
        req.method.unwrap().to_string(),
        req.path.unwrap().to_string(),
        hs,
        out[head..].to_vec(),
    )
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn a_post_is_written_whole_with_its_length_and_the_usual_headers() {
    let body = br#"{"buyer": 1, "qty": 2}"#;
    let w = wire(
        "http://127.0.0.1:8080/shop/purchase?item=7&x=a%20b",
        Method::POST,
        &[("X-Test", "yes"), ("content-type", "application/json")],
        body,
    )
    .expect("an http:// request");
    let (method, path, headers, rest) = written(&w);
    assert_eq!(method, "POST");
    assert_eq!(
        path, "/shop/purchase?item=7&x=a%20b",
        "origin-form, query kept"
    );
    assert_eq!(value(&headers, "host"), ["127.0.0.1:8080"]);
    assert_eq!(value(&headers, "x-test"), ["yes"]);
    assert_eq!(value(&headers, "content-type"), ["application/json"]);
    assert_eq!(value(&headers, "accept"), ["*/*"]);
    assert_eq!(
        value(&headers, "user-agent"),
        [concat!("racelab/", env!("CARGO_PKG_VERSION"))]
    );
    assert_eq!(
        value(&headers, "content-length"),
        [body.len().to_string().as_str()]
    );
    assert_eq!(rest, body, "the body follows the head, whole");
    assert_eq!(
        w.absolute.to_string(),
        "http://127.0.0.1:8080/shop/purchase?item=7&x=a%20b"
    );
}

#[test]
fn lengths_are_racelabs_own_and_an_empty_get_has_none() {
    let w = wire(
        "http://example.test/stock",
        Method::GET,
        &[("Content-Length", "999"), ("Transfer-Encoding", "chunked")],
        b"",
    )
    .expect("an http:// request");
    let (method, path, headers, rest) = written(&w);
    assert_eq!((method.as_str(), path.as_str()), ("GET", "/stock"));
    assert!(value(&headers, "content-length").is_empty(), "{headers:?}");
    assert!(
        value(&headers, "transfer-encoding").is_empty(),
        "{headers:?}"
    );
    assert_eq!(
        value(&headers, "host"),
        ["example.test"],
        "default port left out"
    );
    assert!(rest.is_empty());
    // A POST without a body still says so, as hyper would.
    let w = wire("http://example.test/buy", Method::POST, &[], b"").unwrap();
    let (_, _, headers, rest) = written(&w);
    assert_eq!(value(&headers, "content-length"), ["0"]);
    assert!(rest.is_empty());
    // And a body of a GET is counted too.
    let w = wire("http://example.test/stock", Method::GET, &[], b"abc").unwrap();
    let (_, _, headers, rest) = written(&w);
    assert_eq!(value(&headers, "content-length"), ["3"]);
    assert_eq!(rest, b"abc");
}

#[test]
fn credentials_in_the_url_become_basic_auth_and_a_given_host_wins() {
    let w = wire(
        "https://al%40ice:s%3Acret@shop.test:8443/buy",
        Method::PUT,
        &[("Host", "front.test")],
        b"{}",
    )
    .expect("an https:// request");
    let auth = w.headers.get(AUTHORIZATION).expect("basic auth");
    assert!(auth.is_sensitive(), "the credentials are marked sensitive");
    // base64("al@ice:s:cret")
    assert_eq!(auth.to_str().unwrap(), "Basic YWxAaWNlOnM6Y3JldA==");
    let (method, path, headers, _) = written(&w);
    assert_eq!((method.as_str(), path.as_str()), ("PUT", "/buy"));
    assert_eq!(
        value(&headers, "host"),
        ["front.test"],
        "the user's Host is kept"
    );
    for uri in [&w.uri, &w.absolute] {
        assert!(
            !uri.to_string().contains("cret"),
            "no credentials in the URI: {uri}"
        );
    }
}

#[test]
fn other_schemes_are_not_written_by_hand() {
    assert!(wire("ftp://example.test/x", Method::GET, &[], b"").is_none());
    assert!(wire("http://example.test/x", Method::GET, &[], b"").is_some());
}
