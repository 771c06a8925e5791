//! `racelab serve` as a client sees it, over raw sockets: bad purchase
//! bodies are 400s that buy nothing, the arrivals of a race reset with the
//! lab, health names the strategy, bad flags exit 2 before anything
//! starts, and SIGTERM stops it with exit 0.

use std::io::{Read, Write};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;
use crate::common::OutputWithin as _;
use crate::http::Serve;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "serve::bad_bodies_are_400s_and_arrivals_reset_with_the_lab",
            bodies_and_arrivals,
        ),
        crate::common::test("serve::bad_flags_exit_2", bad_flags),
    ]
}

/// One request over a fresh socket: (status code, JSON body).
fn request(method: &str, url: &str, body: &str) -> Result<(u16, Value), Failed> {
    let rest = url.strip_prefix("http://").ok_or("an http:// URL")?;
    let (host, path) = rest.split_at(rest.find('/').ok_or("a path")?);
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let _w = crate::common::waiting_for(format!("the answer to {method} {url}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status: u16 = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {out:?}"))?;
    let json = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v = serde_json::from_str(json).map_err(|e| format!("{out}: {e}"))?;
    Ok((status, v))
}

fn bodies_and_arrivals() -> Result<(), Failed> {
    let serve = Serve::start("t_serve_bodies", "conditional", 5);
    let (code, health) = request("GET", &serve.url("/health"), "")?;
    assert_eq!(code, 200);
    assert_eq!(health["strategy"], "conditional", "{health}");
    // What is not an order is a 400 naming why, and buys nothing.
    for (body, says) in [
        ("buyer=1", "the body is not JSON"),
        (r#"{"qty": "2"}"#, "`qty` must be an integer"),
        (r#"{"buyer": 1.5}"#, "`buyer` must be an integer"),
    ] {
        let (code, v) = request("POST", &serve.url("/purchase"), body)?;
        assert_eq!(code, 400, "{body}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{body}: {v}");
    }
    let (_, stock) = request("GET", &serve.url("/stock"), "")?;
    assert_eq!(stock["stock"], 5, "{stock}");
    let (_, a) = request("GET", &serve.url("/arrivals"), "")?;
    assert_eq!(a["buyers"], 0, "a rejected body is no arrival: {a}");
    assert!(a["first_purchase_spread_us"].is_null(), "{a}");
    // Three buyers buy; a purchase that names no buyer buys but is no
    // arrival.
    for buyer in 1..=3 {
        let (code, v) = request(
            "POST",
            &serve.url("/purchase"),
            &format!(r#"{{"buyer": {buyer}, "attempt": {buyer}}}"#),
        )?;
        assert_eq!(code, 201, "{v}");
        assert_eq!(v["outcome"], "succeeded", "{v}");
        assert_eq!(v["attempt"], buyer, "{v}");
    }
    let (code, _) = request("POST", &serve.url("/purchase"), "")?;
    assert_eq!(code, 201);
    let (_, stock) = request("GET", &serve.url("/stock"), "")?;
    assert_eq!(stock["stock"], 1, "{stock}");
    let (_, a) = request("GET", &serve.url("/arrivals"), "")?;
    assert_eq!(a["buyers"], 3, "{a}");
    assert!(a["first_purchase_spread_us"].is_u64(), "{a}");
    let race = a["race"].as_u64().ok_or("a race number")?;
    // Sold out: 409, and the stock stays 0.
    let (_, _) = request("POST", &serve.url("/purchase"), "")?;
    let (code, v) = request("POST", &serve.url("/purchase"), "")?;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["outcome"], "sold_out", "{v}");
    // A reset restores the stock and starts a new race with no arrivals.
    let (code, v) = request("POST", &serve.url("/reset"), "")?;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["stock"], 5, "{v}");
    let (_, a) = request("GET", &serve.url("/arrivals"), "")?;
    assert_eq!(a["race"], race + 1, "{a}");
    assert_eq!(a["buyers"], 0, "{a}");
    let (_, stock) = request("GET", &serve.url("/stock"), "")?;
    assert_eq!(stock["stock"], 5, "{stock}");
    let status = serve.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM: {status}");
    Ok(())
}

fn bad_flags() -> Result<(), Failed> {
    for (args, says) in [
        (&["--bind", "localhost:80"][..], "--bind"),
        (&["--connections", "0"][..], "--connections"),
        (&["--strategy", "no-such-strategy"][..], "no-such-strategy"),
    ] {
        let out = racelab()
            .arg("serve")
            .args(args)
            .args([
                "--port",
                "0",
                "--database-url",
                "postgres://nobody@127.0.0.1:1/x",
            ])
            .output_bounded()?;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} started: {}", stdout(&out));
    }
    Ok(())
}
