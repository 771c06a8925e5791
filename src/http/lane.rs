//! The engine's HTTP lanes: each buyer runs the flow (see `flow`). Before
//! the barrier (`open`) it runs the steps before the race once, with its
//! own variables and cookie jar, and connects a link per race step (see
//! `link`); a buyer whose step failed is out of the race, counted by step
//! and status. With `--sync last-byte` (the default) each race request of
//! the first attempt is sent before the barrier but for its end (`prime`),
//! and the ends go out together at the release. Each attempt then runs the
//! `every` steps before the race, the race steps (together), and the steps
//! after. Per-step counts and latencies are buffered per buyer and folded
//! once, after the race.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, COOKIE};
use reqwest::{Client, Url};
use tokio::task::JoinSet;

use super::flow::cookies::Jar;
use super::flow::secret::Values;
use super::flow::users::Users;
use super::flow::{Flow, Phase, Step};
use super::h2 as http2;
use super::link::{self, Exchanged, Link, H1};
use super::net::{Alpn, Endpoint};
use super::template::{ATTEMPT, BUYER, PRODUCT, QTY};
use super::text::{truncate, Failure};
use super::wire::{Answer, Origin, Wire};
use crate::engine::{join_unless_stopped, tally, Attempt, Control, Lanes, RaceConfig, Tally};
use crate::outcome::{AttemptReport, Outcome};
use crate::strategy::{AttemptCtx, TraceEvent, TraceKind};

/// The HTTP version buyers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// h2c with prior knowledge for `http://`, ALPN for `https://`.
    Http2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2 => "h2",
        }
    }
}

/// How buyers' first race requests are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Sent before the barrier but for their end (the final byte over
    /// HTTP/1.1, the final frame over HTTP/2); all ends written at the
    /// release.
    LastByte,
    /// Each first request sent whole after the barrier.
    None,
}

impl Sync {
    pub fn as_str(self) -> &'static str {
        match self {
            Sync::LastByte => "last-byte",
            Sync::None => "none",
        }
    }
}

/// What every buyer runs, and how it connects.
#[derive(Debug)]
pub struct HttpLanes {
    /// For the steps outside the race (and every request through a proxy).
    pub client: Client,
    pub flow: Flow,
    pub users: Option<Users>,
    /// `{{buyer}}` is `prefix` + number + `suffix`.
    pub buyer_name: (String, String),
    pub timeout: Option<Duration>,
    /// racelab connects itself (no proxy in the environment): each race
    /// link is its own HTTP/1.1 connection or a stream of an HTTP/2 one.
    pub direct: bool,
    pub protocol: Protocol,
    pub sync: Sync,
    /// CA certificates trusted besides the public roots (`--cacert`).
    pub roots: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    /// A cookie jar per buyer (off with `--no-cookies`).
    pub cookies: bool,
    /// `--trace-bodies`: the trace keeps request and response bodies.
    pub trace_bodies: bool,
    /// Connections opened before the barrier of the last race.
    pub opened: AtomicUsize,
}

impl HttpLanes {
    /// The release actually used: reqwest cannot hold a request back.
    pub fn effective_sync(&self) -> Sync {
        if self.direct {
            self.sync
        } else {
            Sync::None
        }
    }
}

/// Why a buyer is out of the race: the step that failed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub step: usize,
    /// The status it got (0: no response, or an extraction that found nothing).
    pub status: u16,
    pub why: String,
}

/// One step's record for one buyer (or, folded, for all).
#[derive(Debug, Default, Clone)]
pub struct StepTally {
    /// Requests by status (0: no response).
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that did not let the buyer go on (an unexpected status,
    /// no response, an extraction that found nothing).
    pub failed: u64,
    /// µs of each request.
    pub latency: Vec<u32>,
    /// The first distinct failure messages, with how often each occurred.
    pub messages: Vec<(String, u64)>,
}

impl StepTally {
    fn record(&mut self, status: u16, us: u64, failure: Option<&str>) {
        *self.by_status.entry(status).or_default() += 1;
        self.latency.push(us.min(u64::from(u32::MAX)) as u32);
        if let Some(m) = failure {
            self.failed += 1;
            self.note(m, 1);
        }
    }

    fn note(&mut self, msg: &str, n: u64) {
        if let Some(e) = self.messages.iter_mut().find(|(m, _)| m == msg) {
            e.1 += n;
        } else if self.messages.len() < tally::MAX_ERROR_MESSAGES {
            self.messages.push((msg.to_string(), n));
        }
    }

    pub fn merge(&mut self, other: &StepTally) {
        for (k, v) in &other.by_status {
            *self.by_status.entry(*k).or_default() += v;
        }
        self.failed += other.failed;
        self.latency.extend_from_slice(&other.latency);
        for (m, n) in &other.messages {
            self.note(m, *n);
        }
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = tally::new_histogram();
        for &us in &self.latency {
            h.saturating_record(u64::from(us).clamp(1, tally::MAX_LATENCY_US));
        }
        h
    }
}

/// One buyer's own state and record.
#[derive(Debug, Default)]
pub struct HttpLane {
    buyer: u32,
    /// The buyer's variables, by slot.
    values: Values,
    jar: Jar,
    /// A link per race step this buyer runs: (step index, link).
    links: Vec<(usize, Link)>,
    /// Set when a step before the race failed.
    pub out: Option<Out>,
    /// Per flow step.
    pub steps: Vec<StepTally>,
    /// The race outcome's (status or 0, µs) per attempt.
    samples: Vec<(u16, u32)>,
    /// The race attempts this buyer made (see `HttpLanes::recount`).
    pub tally: Tally,
    first_sent_at: Option<Instant>,
    /// The attempt the links were primed for, and a failure of its
    /// `every` steps.
    primed: Option<(i64, Option<(usize, String)>)>,
    /// Requests made before the first attempt, for `--trace`.
    early_trace: Vec<TraceEvent>,
}

impl HttpLane {
    /// When this buyer's first race request was completed on the wire.
    pub fn first_sent_at(&self) -> Option<Instant> {
        self.first_sent_at
    }

    /// The buyer's secrets (its users-file values, what its steps
    /// extracted, its cookies) replaced by `***` in `msg`.
    fn redact(&self, flow: &Flow, mut msg: String) -> String {
        let slots = flow.secret_slots();
        let values = slots
            .iter()
            .filter_map(|s| self.values.get(*s))
            .map(String::as_str)
            .chain(self.jar.values());
        for v in values.filter(|v| v.len() >= 3) {
            // As sent in a URL, too (an error may quote the URL).
            let encoded = super::template::percent_encoded(v);
            for form in [v, encoded.as_str()] {
                if msg.contains(form) {
                    msg = msg.replace(form, "***");
                }
            }
        }
        msg
    }
}

/// What a buyer is doing, borrowed from its lane.
pub struct HttpBuyer<'a> {
    lanes: &'a HttpLanes,
    lane: &'a mut HttpLane,
    scratch: String,
    wire: Vec<u8>,
}

impl Lanes for HttpLanes {
    type Lane = HttpLane;
    type Buyer<'a> = HttpBuyer<'a>;

    /// Before the barrier, every buyer at once: run its steps before the
    /// race, then connect a link per race step. Own HTTP/1.1 connections
    /// are opened all at once (the handshake is the warm-up); HTTP/2 ones
    /// as few as the server's stream limit allows, each warmed with a PING.
    async fn open(&self, config: &RaceConfig, control: &Control) -> anyhow::Result<Vec<HttpLane>> {
        let unreachable = |url: &str, e: &str| {
            anyhow::anyhow!("could not reach the target {url}: {e}; is the service running?")
        };
        let buyers = config.buyers;
        // Each race step's endpoint, looked up once.
        let mut endpoints: Vec<(Origin, Arc<Endpoint>)> = Vec::new();
        let alpn = match self.protocol {
            Protocol::Http1 => Alpn::Http1,
            Protocol::Http2 => Alpn::H2,
        };
        if self.direct {
            for (_, step) in self.flow.race_steps() {
                if endpoints.iter().any(|(o, _)| *o == step.url.origin) {
                    continue;
                }
                let e = step
                    .url
                    .origin
                    .resolve(alpn, self.timeout, &self.roots)
                    .await
                    .map_err(|e| unreachable(&step.url.shown(), &e))?;
                endpoints.push((step.url.origin.clone(), Arc::new(e)));
            }
        }
        let endpoint_of = |step: &Step| {
            endpoints
                .iter()
                .find(|(o, _)| *o == step.url.origin)
                .map(|(_, e)| e.clone())
        };
        // HTTP/2: a stream per race link, on as few connections as allowed.
        let mut groups: BTreeMap<usize, std::vec::IntoIter<Arc<http2::Group>>> = BTreeMap::new();
        if self.direct && self.protocol == Protocol::Http2 {
            for (i, step) in self.flow.race_steps() {
                let n = (1..=buyers).filter(|b| step.buyers.has(*b)).count();
                let endpoint = endpoint_of(step).expect("resolved above");
                let opening = http2::open(&endpoint, n);
                let g = tokio::select! {
                    biased;
                    _ = control.stopped() => anyhow::bail!(crate::error::Interrupted {
                        signal: libc::SIGINT,
                    }),
                    g = opening => g.map_err(|e| unreachable(&step.url.shown(), &e))?,
                };
                groups.insert(i, g.into_iter());
            }
            let mut distinct: Vec<*const http2::Group> = Vec::new();
            for g in groups.values() {
                distinct.extend(g.as_slice().iter().map(Arc::as_ptr));
            }
            distinct.sort();
            distinct.dedup();
            self.opened.store(distinct.len(), Ordering::Relaxed);
        }
        let release = Arc::new(super::h1::Release::default());
        let first_product = config.products.ids().first().copied().unwrap_or(1);
        let mut set = JoinSet::new();
        let me = self.shared();
        for buyer in 1..=buyers {
            let mut links = Vec::new();
            for (i, step) in self.flow.race_steps() {
                if !step.buyers.has(buyer) {
                    continue;
                }
                let link = match (self.direct, self.protocol) {
                    (false, _) => Link::Pooled,
                    (true, Protocol::Http2) => Link::H2 {
                        endpoint: endpoint_of(step).expect("resolved above"),
                        group: groups
                            .get_mut(&i)
                            .and_then(Iterator::next)
                            .expect("a stream per link"),
                        primed: None,
                    },
                    (true, Protocol::Http1) => Link::H1 {
                        endpoint: endpoint_of(step).expect("resolved above"),
                        release: release.clone(),
                        state: H1::Closed,
                    },
                };
                links.push((i, link));
            }
            let mut lane = HttpLane {
                buyer,
                values: self.values_of(buyer, config.quantity, first_product),
                links,
                steps: vec![StepTally::default(); self.flow.steps.len()],
                ..Default::default()
            };
            let me = me.clone();
            let trace = config.trace;
            set.spawn(async move {
                let mut b = HttpBuyer {
                    lanes: &me,
                    lane: &mut lane,
                    scratch: String::new(),
                    wire: Vec::new(),
                };
                let mut events = Vec::new();
                let setup = b.before(false, trace.then_some(&mut events)).await;
                lane.early_trace = events;
                if let Err((step, status, why)) = setup {
                    let why = lane.redact(&me.flow, why);
                    lane.out = Some(Out { step, status, why });
                    lane.links.clear();
                    return Ok::<_, String>(lane);
                }
                let held = me.sync == Sync::LastByte;
                for (_, link) in &mut lane.links {
                    if let Link::H1 {
                        endpoint, state, ..
                    } = link
                    {
                        let dialing = Instant::now();
                        let stream = endpoint.dial().await?;
                        *state = if held {
                            // Held back from hyper until the first request is done.
                            H1::Fresh(stream, dialing.elapsed())
                        } else {
                            H1::Live(super::h1::handshake(stream).await?)
                        };
                    }
                }
                Ok(lane)
            });
        }
        if self.protocol == Protocol::Http1 || !self.direct {
            let links: usize = self
                .flow
                .race_steps()
                .map(|(_, s)| (1..=buyers).filter(|b| s.buyers.has(*b)).count())
                .sum();
            self.opened.store(links, Ordering::Relaxed);
        }
        let shown = self
            .flow
            .race_steps()
            .next()
            .map(|(_, s)| s.url.shown())
            .unwrap_or_default();
        let mut lanes =
            join_unless_stopped(set, control, |r| r.map_err(|e| unreachable(&shown, &e))).await?;
        lanes.sort_by_key(|l| l.buyer);
        // No buyer got an answer from a step before the race: the service
        // is not there (exit 3), not a race that went wrong.
        let unanswered: Option<Vec<&Out>> = lanes
            .iter()
            .map(|l| {
                l.out
                    .as_ref()
                    .filter(|o| o.status == 0 && l.steps[o.step].by_status.contains_key(&0))
            })
            .collect();
        if let Some(first) = unanswered.and_then(|o| o.first().copied()) {
            anyhow::bail!(
                "could not reach the target {}: {}; is the service running?",
                self.flow.steps[first.step].url.shown(),
                first.why
            );
        }
        Ok(lanes)
    }

    fn buyer<'a>(&'a self, lane: &'a mut HttpLane, _seed: u64) -> HttpBuyer<'a> {
        HttpBuyer {
            lanes: self,
            lane,
            scratch: String::new(),
            wire: Vec::new(),
        }
    }
}

impl HttpLanes {
    /// What a buyer task needs of the lanes, shareable into it.
    fn shared(&self) -> Arc<HttpLanes> {
        Arc::new(HttpLanes {
            client: self.client.clone(),
            flow: self.flow.clone(),
            users: self.users.clone(),
            buyer_name: self.buyer_name.clone(),
            timeout: self.timeout,
            direct: self.direct,
            protocol: self.protocol,
            sync: self.sync,
            roots: Vec::new(),
            cookies: self.cookies,
            trace_bodies: self.trace_bodies,
            opened: AtomicUsize::new(0),
        })
    }

    /// Buyer `buyer`'s variables before its first attempt.
    fn values_of(&self, buyer: u32, qty: i64, product: i64) -> Values {
        let flow = &self.flow;
        let mut v = vec![String::new(); flow.names.len()];
        v[BUYER] = format!("{}{buyer}{}", self.buyer_name.0, self.buyer_name.1);
        v[ATTEMPT] = "0".into();
        v[QTY] = qty.to_string();
        v[PRODUCT] = product.to_string();
        if let Some(users) = &self.users {
            for (slot, value) in flow.user_slots.iter().zip(users.row(buyer)) {
                v[*slot] = value.expose().to_string();
            }
        }
        for (slot, value) in &flow.vars {
            v[*slot] = value.clone();
        }
        Values(v)
    }
}

/// A step that did not let the buyer go on: (step, status or 0, why).
type StepFailure = (usize, u16, String);

impl HttpBuyer<'_> {
    fn set_attempt(&mut self, ctx: &AttemptCtx) {
        let v = &mut self.lane.values;
        v[ATTEMPT].clear();
        let _ = write!(v[ATTEMPT], "{}", ctx.attempt);
        v[PRODUCT].clear();
        let _ = write!(v[PRODUCT], "{}", ctx.product);
        v[QTY].clear();
        let _ = write!(v[QTY], "{}", ctx.qty);
    }

    /// The request of `step` for the buyer's values and cookies.
    fn render(&mut self, step: &Step) -> Result<(Url, Wire), String> {
        let values = &self.lane.values;
        let url = step.url.render(values, &mut self.scratch)?;
        let mut headers = step.headers(values, &mut self.scratch)?;
        if self.lanes.cookies {
            if let Some(c) = self.lane.jar.header_for(&url) {
                let joined = match headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
                    Some(own) => format!("{own}; {c}"),
                    None => c,
                };
                if let Ok(v) = HeaderValue::from_str(&joined) {
                    headers.insert(COOKIE, v);
                }
            }
        }
        let body = match &step.body {
            Some(t) => {
                t.render_into(values, &mut self.scratch);
                Bytes::from(self.scratch.clone())
            }
            None => Bytes::new(),
        };
        let wire = step
            .url
            .origin
            .wire(&step.method, &url, headers, body)
            .ok_or_else(|| format!("the URL {} cannot be sent", step.url.shown()))?;
        Ok((url, wire))
    }

    /// Keep what a step's answer sets: its cookies, then its extractions.
    /// Err: an extraction found nothing.
    fn keep(&mut self, step: &Step, url: &Url, answer: &Answer) -> Result<(), String> {
        if self.lanes.cookies {
            self.lane.jar.store(url, &answer.headers);
        }
        for (slot, name, how) in &step.extract {
            match how.take(answer, url, &self.lane.jar) {
                Some(v) => self.lane.values[*slot] = v,
                None => {
                    return Err(format!(
                        "extract.{name}: nothing found in the answer (HTTP {})",
                        answer.status
                    ))
                }
            }
        }
        Ok(())
    }

    /// Run one step outside the race through the shared client.
    async fn plain(
        &mut self,
        i: usize,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), StepFailure> {
        let lanes = self.lanes;
        let step = &lanes.flow.steps[i];
        let started = Instant::now();
        let (url, wire) = self.render(step).map_err(|e| (i, 0, e))?;
        let body = wire.body.clone();
        let done = link::pooled(
            &lanes.client,
            &step.method,
            &url,
            wire.headers,
            wire.body,
            lanes.timeout,
        )
        .await;
        let end = Instant::now();
        let us = end.duration_since(started).as_micros() as u64;
        let result = match done {
            Ok(answer) => {
                let status = answer.status;
                let kept = if step.expected(status) {
                    self.keep(step, &url, &answer).map_err(|e| (i, status, e))
                } else {
                    Err((
                        i,
                        status,
                        format!(
                            "HTTP {status}: {}",
                            truncate(&String::from_utf8_lossy(&answer.body))
                        ),
                    ))
                };
                self.note(
                    i,
                    &body,
                    Some(&answer),
                    kept.as_ref().err().map(|e| e.2.clone()),
                    (started, end, us),
                    trace,
                );
                kept
            }
            Err(f) => {
                let (_, m) = f.outcome();
                self.note(i, &body, None, Some(m.clone()), (started, end, us), trace);
                Err((i, 0, m))
            }
        };
        result.map_err(|(i, s, m)| (i, s, self.lane.redact(&lanes.flow, m)))
    }

    /// Record a request of step `i`: its tally and, traced, its event.
    fn note(
        &mut self,
        i: usize,
        sent: &[u8],
        answer: Option<&Answer>,
        failure: Option<String>,
        (start, end, us): (Instant, Instant, u64),
        trace: Option<&mut Vec<TraceEvent>>,
    ) {
        let status = answer.map_or(0, |a| a.status);
        let failure = failure.map(|m| self.lane.redact(&self.lanes.flow, m));
        self.lane.steps[i].record(status, us, failure.as_deref());
        let Some(events) = trace else { return };
        let step = &self.lanes.flow.steps[i];
        let mut values = vec![
            ("step".to_string(), step.name.clone()),
            ("status".to_string(), status.to_string()),
        ];
        if self.lanes.trace_bodies {
            let flow = &self.lanes.flow;
            values.push((
                "request_body".into(),
                self.lane
                    .redact(flow, String::from_utf8_lossy(sent).into_owned()),
            ));
            if let Some(a) = answer {
                values.push((
                    "response_body".into(),
                    self.lane
                        .redact(flow, String::from_utf8_lossy(&a.body).into_owned()),
                ));
            }
        }
        events.push(TraceEvent {
            start,
            end,
            try_no: 1,
            line: i + 1,
            kind: TraceKind::Meta,
            what: step.request.clone(),
            rows: None,
            values,
            error: failure,
            sqlstate: None,
            outcome: None,
        });
    }

    /// The steps before the race: those that run once per buyer
    /// (`every` false), or those that run before each attempt.
    async fn before(
        &mut self,
        every: bool,
        mut trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), StepFailure> {
        let lanes = self.lanes;
        for (i, s) in lanes.flow.steps.iter().enumerate() {
            if s.phase != Phase::Before || s.every != every || !s.buyers.has(self.lane.buyer) {
                continue;
            }
            self.plain(i, trace.as_deref_mut()).await?;
        }
        Ok(())
    }

    /// The steps after the race, until one fails.
    async fn after(&mut self, mut trace: Option<&mut Vec<TraceEvent>>) {
        let lanes = self.lanes;
        for (i, s) in lanes.flow.steps.iter().enumerate() {
            if s.phase != Phase::After || !s.buyers.has(self.lane.buyer) {
                continue;
            }
            if self.plain(i, trace.as_deref_mut()).await.is_err() {
                return;
            }
        }
    }

    /// The buyer's race requests for `attempt`, together; their results
    /// in link order, with when each was complete and how long it took.
    async fn race(
        &mut self,
        attempt: i64,
    ) -> Vec<(
        usize,
        Result<(Url, Exchanged), Failure>,
        Option<Instant>,
        Instant,
        Duration,
        Bytes,
    )> {
        let lanes = self.lanes;
        // Render every request first, so that they leave together.
        let mut rendered = Vec::with_capacity(self.lane.links.len());
        for k in 0..self.lane.links.len() {
            let step = &lanes.flow.steps[self.lane.links[k].0];
            rendered.push(self.render(step));
        }
        let (client, timeout) = (&lanes.client, lanes.timeout);
        let exchanges = self
            .lane
            .links
            .iter_mut()
            .zip(rendered)
            .map(|((i, link), r)| async move {
                let started = Instant::now();
                let mut sent_at = None;
                let (done, body) = match r {
                    Ok((url, wire)) => {
                        let body = wire.body.clone();
                        let done = link
                            .exchange(&wire, &url, attempt, client, timeout, &mut sent_at)
                            .await;
                        (done.map(|x| (url, x)), body)
                    }
                    Err(e) => (Err(Failure::Unsent(e)), Bytes::new()),
                };
                (*i, done, sent_at, started, started.elapsed(), body)
            });
        futures_util::future::join_all(exchanges).await
    }

    /// Prime the race requests of `first` (before the barrier).
    async fn prime_links(&mut self, first: &AttemptCtx) {
        let lanes = self.lanes;
        for k in 0..self.lane.links.len() {
            let step = &lanes.flow.steps[self.lane.links[k].0];
            // A request that cannot be rendered fails at the attempt.
            let Ok((_, wire)) = self.render(step) else {
                continue;
            };
            self.lane.links[k]
                .1
                .prime(&wire, first.attempt, lanes.timeout, &mut self.wire)
                .await;
        }
    }
}

impl Attempt for HttpBuyer<'_> {
    async fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        mut trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(AttemptReport, u64), String> {
        let lanes = self.lanes;
        if self.lane.out.is_some() {
            // Out of the race: nothing is sent, and nothing of it is
            // counted (`report::recount`). "Sold out" ends a timed loop.
            // What it did before the race is still traced.
            if let Some(t) = trace {
                t.append(&mut self.lane.early_trace);
            }
            return Ok((
                AttemptReport {
                    outcome: Outcome::SoldOut,
                    tries: 1,
                    message: None,
                    connection_lost: false,
                },
                0,
            ));
        }
        if let Some(t) = trace.as_deref_mut() {
            t.append(&mut self.lane.early_trace);
        }
        self.set_attempt(ctx);
        let primed = self.lane.primed.take();
        let before = match primed {
            Some((a, failed)) if a == ctx.attempt => failed.map_or(Ok(()), |(i, m)| Err((i, 0, m))),
            _ => self.before(true, trace.as_deref_mut()).await,
        };
        let report = |outcome, message| AttemptReport {
            outcome,
            tries: 1,
            message,
            connection_lost: false,
        };
        if let Err((i, status, why)) = before {
            let msg = format!(
                "step {:?} (before the race): {why}",
                lanes.flow.steps[i].name
            );
            let r = report(Outcome::Error, Some(msg));
            self.lane.samples.push((status, 0));
            self.lane.tally.record(&r, ctx.attempt, 0);
            return Ok((r, 0));
        }
        let first = self.lane.samples.is_empty();
        let started = Instant::now();
        let results = self.race(ctx.attempt).await;
        let us = started.elapsed().as_micros() as u64;
        let mut last = None;
        let mut latest_sent: Option<Instant> = None;
        for (i, done, sent_at, start, took, body) in results {
            if let Some(s) = sent_at {
                latest_sent = Some(latest_sent.map_or(s, |l| l.max(s)));
            }
            let step = &lanes.flow.steps[i];
            let end = start + took;
            let times = (start, end, took.as_micros() as u64);
            let (outcome, status, message) = match done {
                Ok((url, x)) => {
                    let status = x.answer.status;
                    let outcome = step.statuses.classify(status);
                    let mut message = (outcome == Outcome::Error).then(|| {
                        format!(
                            "HTTP {status}: {}",
                            truncate(&String::from_utf8_lossy(&x.answer.body))
                        )
                    });
                    if x.early {
                        // An error given to a partial request is most
                        // likely about its being partial: say so.
                        message =
                            message.map(|m| super::h1::early_note(&format!("answered ({m})")));
                    }
                    let kept = self.keep(step, &url, &x.answer).err();
                    let failure = message.clone().or(kept);
                    self.note(
                        i,
                        &body,
                        Some(&x.answer),
                        failure,
                        times,
                        trace.as_deref_mut(),
                    );
                    (outcome, status, message)
                }
                Err(f) => {
                    let (outcome, m) = f.outcome();
                    self.note(i, &body, None, Some(m.clone()), times, trace.as_deref_mut());
                    (outcome, 0, Some(m))
                }
            };
            last = Some((outcome, status, message));
        }
        if first {
            self.lane.first_sent_at = latest_sent;
        }
        let (outcome, status, message) =
            last.unwrap_or((Outcome::Error, 0, Some("no race step".into())));
        let message = message.map(|m| self.lane.redact(&lanes.flow, m));
        self.lane
            .samples
            .push((status, us.min(u64::from(u32::MAX)) as u32));
        let r = report(outcome, message);
        self.lane.tally.record(&r, ctx.attempt, us);
        self.after(trace).await;
        Ok((r, us))
    }

    /// Before the barrier, with the first attempt: run the `every` steps
    /// before the race, then send each race request but for its end
    /// (`--sync last-byte` on racelab's own connections).
    async fn prime(&mut self, first: &AttemptCtx) {
        if self.lane.out.is_some() {
            return;
        }
        self.set_attempt(first);
        let mut events = std::mem::take(&mut self.lane.early_trace);
        let failed = self.before(true, Some(&mut events)).await.err();
        self.lane.early_trace = events;
        let ok = failed.is_none();
        self.lane.primed = Some((first.attempt, failed.map(|(i, _, m)| (i, m))));
        if ok && self.lanes.sync == Sync::LastByte {
            self.prime_links(first).await;
        }
    }

    fn first_sent_at(&self) -> Option<Instant> {
        self.lane.first_sent_at
    }
}

/// Latency histograms of the race outcome by status code (`none`: no
/// response), from every buyer's samples.
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

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
