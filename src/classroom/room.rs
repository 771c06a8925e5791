//! The room: the students who joined, the bots, the current round and its
//! state machine (start → countdown → open → closing → closed), the live
//! reading of the lab, and the events every open page receives. Every
//! change of the room is one method here; `api` only translates HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use super::books::Books;
use super::finish::{self, Ended};
use super::purchase::{self, Ticket};
use super::replay::Replay;
use super::round::{Cohort, Live, Phase, Round, RoundCore, PRODUCT};
use crate::db::{Database, ProductSeed};
use crate::engine::contention::Tracker;
use crate::engine::Control;
use crate::lab::SqlLanes;
use crate::result::{DatabaseInfo, Status};
use crate::strategy::Strategy;

/// Longest name a student may give.
pub const MAX_NAME: usize = 32;
/// Most units a round may stock.
pub const MAX_STOCK: i64 = 1_000_000;
/// Longest countdown.
pub const MAX_COUNTDOWN_S: f64 = 600.0;
/// Longest think time a round may ask of its buyers.
pub const MAX_THINK_MS: u64 = 10_000;
/// The think time of a round that names none: long enough that people who
/// press Buy within a second of each other are in the race together (a
/// buyer holds its read this long before it writes).
pub const DEFAULT_THINK_MS: u64 = 1_000;

/// How long a release waits for its bots' connections at most: past it,
/// the bots still connecting go when they can.
const BOTS_CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// A request the room refuses: the HTTP status and one line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// The teacher's secret. Never shown: `Debug` and `Display` redact it.
pub struct Token(String);

impl Token {
    /// 32 random bytes, hex.
    pub fn random() -> Token {
        let bytes: [u8; 32] = rand::rngs::OsRng.gen();
        Token(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The value, for the one URL printed at start.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token, in time that does not depend on where
    /// they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One server-sent event: its name and its JSON.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: &'static str,
    pub data: Arc<str>,
}

/// What a room is set up with.
pub struct Settings {
    pub strategies: Vec<Arc<Strategy>>,
    pub join_url: String,
    pub loopback: bool,
    pub max_buyers: u32,
    pub open_for: Duration,
    pub max_tries: u32,
    pub save_dir: Option<PathBuf>,
}

/// A round as the teacher asks for it (`POST /api/round`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRequest {
    #[serde(default = "default_strategy")]
    pub strategy: String,
    #[serde(default = "default_stock")]
    pub stock: i64,
    #[serde(default = "default_countdown")]
    pub countdown_s: f64,
    #[serde(default = "default_think")]
    pub think_ms: u64,
}

fn default_strategy() -> String {
    "naive".into()
}
fn default_stock() -> i64 {
    1
}
fn default_countdown() -> f64 {
    5.0
}
fn default_think() -> u64 {
    DEFAULT_THINK_MS
}

/// What runs on the server's own task rather than in a handler: the lab's
/// rebuild is not a `Send` future (sqlx's executor lifetimes), and
/// handlers must be.
pub enum LabJob {
    /// A fresh lab for a round of `strategy` with `stock`.
    Prepare {
        strategy: Arc<Strategy>,
        stock: i64,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Why a round closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The teacher closed it.
    Teacher,
    /// Round `n` stayed open for `--open-seconds`.
    Timeout(u32),
    /// racelab is stopping.
    Shutdown,
}

#[derive(Default)]
struct State {
    /// Every student's cookie, with the name they joined under.
    students: HashMap<String, Option<String>>,
    bots: u32,
    round: Option<Round>,
    rounds: u32,
}

pub struct Room {
    pub db: Arc<Database>,
    database: DatabaseInfo,
    pub settings: Settings,
    pub token: Token,
    pub control: Arc<Control>,
    /// One permit per purchase in flight (each holds a connection).
    pub permits: Semaphore,
    events: broadcast::Sender<Event>,
    state: Mutex<State>,
    /// Held by whatever resets or audits the lab: starting and closing a
    /// round, an explore replay.
    pub lab: tokio::sync::Mutex<()>,
    /// Asks the live reader for a fresh reading of the lab.
    live: tokio::sync::Notify,
    jobs: mpsc::Sender<LabJob>,
    pub replay: Replay,
}

impl Room {
    /// The room, and the lab's jobs for `work` to carry out.
    pub fn new(
        db: Arc<Database>,
        settings: Settings,
        control: Arc<Control>,
    ) -> (Arc<Room>, mpsc::Receiver<LabJob>) {
        let (jobs, work) = mpsc::channel(8);
        let database = DatabaseInfo {
            kind: db.kind(),
            server_version: db.server_version().to_string(),
            durable: db.durable(),
        };
        let room = Arc::new(Room {
            jobs,
            db,
            database,
            permits: Semaphore::new(settings.max_buyers as usize),
            settings,
            token: Token::random(),
            control,
            events: broadcast::channel(1024).0,
            state: Mutex::new(State::default()),
            lab: tokio::sync::Mutex::new(()),
            live: tokio::sync::Notify::new(),
            replay: Replay::default(),
        });
        (room, work)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn emit(&self, name: &'static str, data: &Value) {
        let _ = self.events.send(Event {
            name,
            data: data.to_string().into(),
        });
    }

    /// Tell every page the whole state again (after a change of phase).
    pub fn emit_state(&self) {
        self.emit("state", &self.snapshot(None));
    }

    fn emit_room(&self, st: &State) {
        self.emit("room", &room_counts(st));
    }

    /// The state as `/api/state` shows it; with a student's cookie, what
    /// that student did (`me`).
    pub fn snapshot(&self, me: Option<&str>) -> Value {
        let st = self.state();
        let mut v = json!({
            "racelab_version": env!("CARGO_PKG_VERSION"),
            "join_url": self.settings.join_url,
            "loopback": self.settings.loopback,
            "max_buyers": self.settings.max_buyers,
            "strategies": self.settings.strategies.iter().map(|s| json!({
                "name": s.name,
                "description": s.description,
                "script": s.source,
                "redis": s.program.uses_redis(),
                "source": match &s.origin {
                    crate::strategy::Origin::Builtin => "builtin".to_string(),
                    crate::strategy::Origin::File(p) => p.display().to_string(),
                },
            })).collect::<Vec<_>>(),
            "round": st.round.as_ref().map(Round::json),
            "replay": self.replay.json(),
        });
        let counts = room_counts(&st);
        v["students"] = counts["students"].clone();
        v["bots"] = counts["bots"].clone();
        if let Some(id) = me.filter(|id| st.students.contains_key(*id)) {
            let name = st.students.get(id).cloned().flatten();
            let bought = st.round.as_ref().and_then(|r| {
                let n = *r.bought.get(id)?;
                Some(r.attempt_row(n))
            });
            v["me"] = json!({"name": name, "purchase": bought});
        }
        v
    }

    /// A new student: a random id for their cookie.
    pub fn new_student(&self) -> String {
        let bytes: [u8; 16] = rand::rngs::OsRng.gen();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.state().students.insert(id.clone(), None);
        id
    }

    pub fn knows(&self, id: &str) -> bool {
        self.state().students.contains_key(id)
    }

    /// A student gives their name.
    pub fn name_student(&self, id: &str, name: &str) -> Result<Value, Refusal> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(Refusal::new(
                400,
                format!("a name is 1 to {MAX_NAME} characters, without control characters"),
            ));
        }
        let mut st = self.state();
        let Some(slot) = st.students.get_mut(id) else {
            return Err(not_joined());
        };
        *slot = Some(name.to_string());
        self.emit_room(&st);
        Ok(json!({"name": name}))
    }

    /// A strategy on offer, by name.
    pub fn strategy(&self, name: &str) -> Result<Arc<Strategy>, Refusal> {
        let offered = &self.settings.strategies;
        offered.iter().find(|s| s.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = offered.iter().map(|s| s.name.as_str()).collect();
            Refusal::new(
                404,
                format!(
                    "unknown strategy `{name}`: the strategies on offer are {} (start racelab classroom with --strategy FILE to add one)",
                    names.join(", ")
                ),
            )
        })
    }

    /// Start a round: a fresh lab, seeded and set up, then the countdown.
    pub async fn start_round(self: &Arc<Self>, req: RoundRequest) -> Result<Value, Refusal> {
        let strategy = self.strategy(&req.strategy)?;
        if let Some(line) = strategy.program.first_redis_line() {
            return Err(Refusal::new(
                400,
                format!(
                    "`{}` sends \\redis commands (line {line}), and a classroom races SQL strategies only; race it with `racelab run --strategy {}`",
                    strategy.name, strategy.name
                ),
            ));
        }
        if !(0..=MAX_STOCK).contains(&req.stock) {
            return Err(Refusal::new(
                400,
                format!("stock must be between 0 and {MAX_STOCK}, got {}", req.stock),
            ));
        }
        if !(req.countdown_s.is_finite() && (0.0..=MAX_COUNTDOWN_S).contains(&req.countdown_s)) {
            return Err(Refusal::new(
                400,
                format!(
                    "countdown_s must be between 0 and {MAX_COUNTDOWN_S} seconds, got {}",
                    req.countdown_s
                ),
            ));
        }
        if req.think_ms > MAX_THINK_MS {
            return Err(Refusal::new(
                400,
                format!(
                    "think_ms must be between 0 and {MAX_THINK_MS}, got {}",
                    req.think_ms
                ),
            ));
        }
        let _lab = self.lab.lock().await;
        let busy = {
            let st = self.state();
            st.round
                .as_ref()
                .filter(|r| r.phase != Phase::Closed)
                .map(|r| (r.number(), r.phase.word()))
        };
        if let Some((number, phase)) = busy {
            return Err(Refusal::new(
                409,
                format!("round {number} is still {phase}: close it first (POST /api/round/close)"),
            ));
        }
        if self.replay.running() {
            return Err(Refusal::new(
                409,
                "an explore replay is using the lab: finish or stop it first",
            ));
        }
        let (done, prepared) = oneshot::channel();
        let job = LabJob::Prepare {
            strategy: strategy.clone(),
            stock: req.stock,
            done,
        };
        if self.jobs.send(job).await.is_err() {
            return Err(Refusal::new(503, "racelab is stopping"));
        }
        prepared
            .await
            .unwrap_or_else(|_| Err("racelab is stopping".into()))
            .map_err(|e| Refusal::new(500, e))?;
        let countdown = Duration::from_secs_f64(req.countdown_s);
        let (json, tickets, core) = {
            let mut st = self.state();
            let number = st.rounds + 1;
            st.rounds = number;
            let core = Arc::new(RoundCore {
                number,
                lanes: Arc::new(SqlLanes::new(
                    strategy.program.clone(),
                    self.db.connect_options(),
                )),
                strategy,
                tracker: Tracker::new(&[PRODUCT], true),
                first: Cohort::held(st.bots),
                idle: tokio::sync::Notify::new(),
                think_ms: req.think_ms,
                max_tries: self.settings.max_tries,
                seed: rand::random(),
            });
            let mut round = Round {
                core: core.clone(),
                stock: req.stock,
                countdown,
                started_at: crate::run::now_rfc3339(),
                ends_at: Instant::now() + countdown,
                phase: Phase::Countdown,
                released_at: None,
                cpu_at_release: Duration::ZERO,
                buyers: Vec::new(),
                bought: HashMap::new(),
                in_flight: 0,
                books: Books::default(),
                sealed: false,
                live: Live {
                    stock_left: Some(req.stock),
                    units_sold: 0,
                },
                closed: None,
            };
            let tickets: Vec<Ticket> = (1..=st.bots)
                .map(|i| Ticket {
                    core: core.clone(),
                    buyer: round.admit(format!("bot {i}"), true),
                    bot: true,
                    cohort: core.first.clone(),
                })
                .collect();
            let json = round.json();
            st.round = Some(round);
            (json, tickets, core)
        };
        for t in tickets {
            tokio::spawn(self.clone().purchase(t));
        }
        tokio::spawn(self.clone().countdown(core));
        self.emit_state();
        Ok(json)
    }

    /// Carry out the lab's jobs, one at a time, on the server's own task
    /// (see `LabJob`). Returns when the room is dropped.
    pub async fn work(self: Arc<Self>, mut jobs: mpsc::Receiver<LabJob>) {
        while let Some(job) = jobs.recv().await {
            match job {
                LabJob::Prepare {
                    strategy,
                    stock,
                    done,
                } => {
                    let r = self.prepare_lab(&strategy, stock).await;
                    let _ = done.send(r.map_err(|e| format!("{e:#}")));
                }
            }
        }
    }

    /// A fresh lab for a round: the schema reset and seeded with `stock`,
    /// the strategy's `\setup` applied — as `run` readies it for a race.
    async fn prepare_lab(&self, strategy: &Strategy, stock: i64) -> anyhow::Result<()> {
        let seeds = [ProductSeed {
            id: PRODUCT,
            name: "the last item".into(),
            stock,
        }];
        self.db.prepare_lab(&seeds).await?;
        if strategy.program.has_setup() {
            let mut conn = self.db.connect().await?;
            let products = [(PRODUCT, stock)];
            let setup = crate::strategy::run_setup(&strategy.program, &mut conn, &products);
            self.db
                .bounded(self.db.setup_limit(), "running the \\setup block", setup)
                .await
                .with_context(|| {
                    format!("running the \\setup block of strategy `{}`", strategy.name)
                })?;
        }
        Ok(())
    }

    /// The countdown of round `core`: at its end (and once the round's
    /// bots are connected) release everyone held; after `--open-seconds`
    /// close the round if it is still open.
    async fn countdown(self: Arc<Self>, core: Arc<RoundCore>) {
        let ends_at = match self.state().round.as_ref() {
            Some(r) if r.number() == core.number => r.ends_at,
            _ => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(ends_at.into()) => {}
            _ = self.control.stopped() => return,
        }
        core.first.bots_ready(BOTS_CONNECT_LIMIT).await;
        let released = {
            let mut st = self.state();
            match st.round.as_mut() {
                Some(r) if r.number() == core.number && r.phase == Phase::Countdown => {
                    r.release();
                    true
                }
                _ => false,
            }
        };
        if !released {
            return;
        }
        self.emit_state();
        tokio::select! {
            _ = tokio::time::sleep(self.settings.open_for) => {}
            _ = self.control.stopped() => return,
        }
        let _ = self.close_round(Why::Timeout(core.number)).await;
    }

    /// Close the running round: no more purchases, wait for those in
    /// flight, then audit and save it.
    pub async fn close_round(self: &Arc<Self>, why: Why) -> Result<Value, Refusal> {
        let _lab = self.lab.lock().await;
        let core = {
            let mut st = self.state();
            let round = st
                .round
                .as_mut()
                .filter(|r| r.phase.admits())
                .ok_or_else(|| Refusal::new(409, "no round is running: start one first"))?;
            if let Why::Timeout(n) = why {
                if round.number() != n {
                    return Err(Refusal::new(409, "that round is over"));
                }
            }
            round.release();
            round.phase = Phase::Closing;
            round.core.clone()
        };
        self.emit_state();
        let limit = Duration::from_secs(30) + Duration::from_millis(2 * core.think_ms);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = core.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight(core.number) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let ended = {
            let mut st = self.state();
            let r = st.round.as_mut().expect("closing round is current");
            r.sealed = true;
            let unfinished: Vec<i64> = r
                .buyers
                .iter()
                .filter(|b| b.done.is_none())
                .map(|b| b.attempt)
                .collect();
            let (status, status_reason) = if !unfinished.is_empty() {
                (
                    Status::Aborted,
                    Some(format!(
                        "{} purchases were still running {} s after the round was closed",
                        unfinished.len(),
                        limit.as_secs()
                    )),
                )
            } else if why == Why::Shutdown {
                crate::run::status_of(&self.control)
            } else {
                (Status::Completed, None)
            };
            Ended {
                number: r.number(),
                strategy: r.core.strategy.clone(),
                stock: r.stock,
                think_ms: r.core.think_ms,
                max_tries: r.core.max_tries,
                seed: r.core.seed,
                started_at: r.started_at.clone(),
                released_at: r.released_at.unwrap_or_else(Instant::now),
                cpu_at_release: r.cpu_at_release,
                books: std::mem::take(&mut r.books),
                buyers: r.buyers.clone(),
                unfinished,
                status,
                status_reason,
            }
        };
        let closed = finish::finish(
            &self.db,
            &self.database,
            &core.tracker,
            self.settings.save_dir.as_deref(),
            ended,
        )
        .await;
        if let Ok(Some(path)) = &closed.saved {
            eprintln!("saved {path}");
        }
        let json = {
            let mut st = self.state();
            let r = st.round.as_mut().expect("closing round is current");
            r.closed = Some(closed);
            r.phase = Phase::Closed;
            r.json()
        };
        self.emit_state();
        Ok(json)
    }

    fn in_flight(&self, number: u32) -> u32 {
        match self.state().round.as_ref() {
            Some(r) if r.number() == number => r.in_flight,
            _ => 0,
        }
    }

    /// A student buys: once per round; held during the countdown.
    pub async fn buy(self: &Arc<Self>, student: &str) -> Result<Value, Refusal> {
        let ticket = {
            let mut st = self.state();
            let name = match st.students.get(student) {
                None => return Err(not_joined()),
                Some(None) => {
                    return Err(Refusal::new(
                        400,
                        "give your name first (POST /api/join with {\"name\": \"...\"})",
                    ))
                }
                Some(Some(name)) => name.clone(),
            };
            let round = st.round.as_mut().ok_or_else(|| {
                Refusal::new(409, "no round has started yet: wait for the teacher")
            })?;
            if !round.phase.admits() {
                return Err(Refusal::new(
                    409,
                    format!("round {} is over: wait for the next one", round.number()),
                ));
            }
            if let Some(n) = round.bought.get(student) {
                return Err(Refusal::new(
                    409,
                    format!(
                        "you already bought in round {} (as buyer {n}): one purchase per round",
                        round.number()
                    ),
                ));
            }
            let held = round.phase == Phase::Countdown;
            let n = round.admit(name, false);
            round.bought.insert(student.to_string(), n);
            let core = round.core.clone();
            self.emit(
                "admitted",
                &json!({"round": core.number, "buyer": n, "held": held, "in_flight": round.in_flight}),
            );
            Ticket {
                cohort: if held {
                    core.first.clone()
                } else {
                    Cohort::now()
                },
                core,
                buyer: n,
                bot: false,
            }
        };
        let held = !ticket.cohort_released();
        let mut row = tokio::spawn(self.clone().purchase(ticket))
            .await
            .map_err(|e| Refusal::new(500, format!("the purchase failed: {e}")))?;
        row["held"] = json!(held);
        Ok(row)
    }

    /// Run a purchase to its end and book it; returns its row of the live
    /// feed. Spawned as a task of its own: a student who closes the page
    /// does not cancel a purchase in flight.
    async fn purchase(self: Arc<Self>, t: Ticket) -> Value {
        let f = purchase::attempt(&self.permits, &self.control, &t).await;
        self.finished(t.core.number, f)
    }

    /// Book a finished purchase of round `number` and tell every page.
    pub fn finished(&self, number: u32, f: super::round::Finished) -> Value {
        let buyer = f.buyer;
        let fallback = json!({
            "round": number,
            "buyer": buyer,
            "outcome": f.report.outcome.as_str(),
            "latency_us": f.latency_us,
            "message": f.report.message,
        });
        let row = {
            let mut st = self.state();
            match st.round.as_mut() {
                Some(r) if r.number() == number => r.record(f).map(|mut row| {
                    row["succeeded"] = json!(r.succeeded());
                    row["attempts"] = json!(r.books.tally.attempts());
                    row["in_flight"] = json!(r.in_flight);
                    row
                }),
                _ => None,
            }
        };
        match row {
            Some(row) => {
                self.emit("attempt", &row);
                self.live.notify_one();
                row
            }
            None => fallback,
        }
    }

    /// Add `n` bots: they buy in every round from now on, released with
    /// the countdown's cohort, or together at once in an open round.
    pub fn add_bots(self: &Arc<Self>, n: u32) -> Result<Value, Refusal> {
        let max = self.settings.max_buyers;
        let (tickets, cohort, total) = {
            let mut st = self.state();
            if n == 0 || st.bots.saturating_add(n) > max {
                return Err(Refusal::new(
                    400,
                    format!(
                        "n must be between 1 and {} (the room has {} bots; --max-buyers is {max})",
                        max.saturating_sub(st.bots).max(1),
                        st.bots
                    ),
                ));
            }
            let first = st.bots + 1;
            st.bots += n;
            let total = st.bots;
            let (tickets, cohort) = match st.round.as_mut().filter(|r| r.phase.admits()) {
                Some(r) => {
                    let (cohort, own) = if r.phase == Phase::Countdown {
                        r.core.first.expect_bots(n);
                        (r.core.first.clone(), false)
                    } else {
                        (Cohort::held(n), true)
                    };
                    let core = r.core.clone();
                    let tickets: Vec<Ticket> = (first..first + n)
                        .map(|i| Ticket {
                            core: core.clone(),
                            buyer: r.admit(format!("bot {i}"), true),
                            bot: true,
                            cohort: cohort.clone(),
                        })
                        .collect();
                    (tickets, own.then_some(cohort))
                }
                None => (Vec::new(), None),
            };
            self.emit_room(&st);
            (tickets, cohort, total)
        };
        let joined = tickets.len();
        for t in tickets {
            tokio::spawn(self.clone().purchase(t));
        }
        if let Some(c) = cohort {
            let limit = BOTS_CONNECT_LIMIT;
            tokio::spawn(async move {
                c.bots_ready(limit).await;
                c.go();
            });
        }
        Ok(json!({"bots": total, "buying_now": joined}))
    }

    /// Send every bot home.
    pub fn remove_bots(&self) -> Value {
        let mut st = self.state();
        st.bots = 0;
        self.emit_room(&st);
        json!({"bots": 0})
    }

    /// Keep the round's live numbers (stock left, units sold) in step with
    /// the lab: read them after purchases end, on a connection of its own.
    pub async fn live_reader(self: Arc<Self>) {
        let mut conn: Option<sqlx::PgConnection> = None;
        loop {
            tokio::select! {
                _ = self.live.notified() => {}
                _ = self.control.stopped() => return,
            }
            let number = match self.state().round.as_ref() {
                Some(r) if r.phase != Phase::Closed => r.number(),
                _ => continue,
            };
            if conn.is_none() {
                conn = self.db.connect().await.ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            let read = sqlx::query_as::<_, (Option<i64>, i64)>(
                "SELECT (SELECT stock FROM products WHERE id = $1)::int8, \
                 (SELECT COALESCE(sum(qty), 0) FROM orders)::int8",
            )
            .bind(PRODUCT)
            .persistent(false)
            .fetch_one(&mut *c)
            .await;
            let Ok((stock_left, units_sold)) = read else {
                conn = None;
                continue;
            };
            let mut st = self.state();
            if let Some(r) = st
                .round
                .as_mut()
                .filter(|r| r.number() == number && r.phase != Phase::Closed)
            {
                r.live = Live {
                    stock_left,
                    units_sold,
                };
                self.emit(
                    "stock",
                    &json!({
                        "round": number,
                        "stock_left": stock_left,
                        "units_sold": units_sold,
                        "oversold": (units_sold - r.stock).max(0),
                    }),
                );
            }
        }
    }

    /// Whether a round is counting down or open.
    pub fn round_running(&self) -> bool {
        self.state()
            .round
            .as_ref()
            .is_some_and(|r| r.phase != Phase::Closed)
    }
}

fn room_counts(st: &State) -> Value {
    json!({
        "students": st.students.values().filter(|n| n.is_some()).count(),
        "bots": st.bots,
    })
}

fn not_joined() -> Refusal {
    Refusal::new(
        403,
        "you have not joined: open the join page (GET /join) first, it sets your cookie",
    )
}
