//! The HTTP lane of the engine: each buyer sends purchase requests through
//! one shared `reqwest` client (a pool of keep-alive connections, opened and
//! warmed before the barrier) and turns each response into an outcome by
//! its status code. Per-status latencies are buffered per buyer and folded
//! into histograms once, after the race.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Url};
use tokio::task::JoinSet;

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
}

/// One buyer's own record: (status code or 0 for no response, µs).
#[derive(Debug, Default)]
pub struct HttpLane {
    samples: Vec<(u16, u32)>,
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

    /// Warm the pool: one request per buyer, all at once, so that the
    /// client holds a connection for each before the barrier. The warm-up
    /// is a HEAD: it must not buy anything, and any response will do.
    async fn open(&self, config: &RaceConfig, control: &Control) -> anyhow::Result<Vec<HttpLane>> {
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
            Err(e) => Err(anyhow::anyhow!(
                "could not reach the target {}: {}; is the service running?",
                self.url,
                chain(&e)
            )),
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
        let mut req = l
            .client
            .request(l.method.clone(), l.url.clone())
            .headers(l.headers.clone());
        if let Some(t) = l.timeout {
            req = req.timeout(t);
        }
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
            req = req.body(self.body.clone());
        }
        let started = Instant::now();
        let (outcome, code, message) = match req.send().await {
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
            Err(e) if e.is_timeout() => (
                Outcome::Unknown,
                0,
                Some(format!(
                    "no response within {} ms (--timeout); the purchase may or may not have happened",
                    l.timeout.map_or(0, |t| t.as_millis())
                )),
            ),
            Err(e) => (
                Outcome::Unknown,
                0,
                Some(format!(
                    "the connection failed after the request was sent: {}",
                    chain(&e)
                )),
            ),
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

    #[test]
    fn long_bodies_are_cut() {
        let long = "é".repeat(500);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), BODY_KEPT + 1);
        assert_eq!(truncate("  short \n"), "short");
    }
}
