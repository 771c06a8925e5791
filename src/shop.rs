//! The shop `racelab serve` runs: a small shop over HTTP (axum), backed by racelab's
//! database layer (an embedded cluster by default), so that a class or a
//! test can race a real web service. Every `POST /purchase` runs one
//! attempt of a strategy on one of a pool of connections, each with its own
//! strategy session. `GET /stock`, `POST /reset` and `GET /health` complete
//! it. It speaks HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on one port.
//! For calibration it notes when each buyer's first purchase of a race (the
//! purchases since the last reset) arrived: `GET /arrivals`, and one line
//! per race on stderr. It binds loopback unless told otherwise, and stops
//! cleanly (the embedded cluster with it) on Ctrl-C or SIGTERM.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::PgConnection;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::{Database, DbOptions, ProductSeed};
use crate::outcome::Outcome;
use crate::scenario::Scenario;
use crate::strategy::{self, AttemptCtx, Program, Session, Strategy};

/// What the shop serves, validated (`commands::serve` builds it).
pub struct ShopPlan {
    pub strategy: Strategy,
    pub scenario: Scenario,
    pub max_tries: u32,
    pub addr: SocketAddr,
    pub connections: u32,
    pub db: DbOptions,
    pub quiet: bool,
}

/// Open the database, serve until Ctrl-C or SIGTERM, stop the database.
pub async fn serve(plan: &ShopPlan) -> anyhow::Result<()> {
    let db = Database::open(&plan.db).await?;
    let db = Arc::new(db);
    let served = serve_on(db.clone(), plan).await;
    // Every handler is gone once the server has stopped: the database
    // is ours again, and the embedded cluster stops here.
    let stopped = match Arc::try_unwrap(db) {
        Ok(db) => db.shutdown().await,
        Err(db) => {
            drop(db);
            Ok(())
        }
    };
    served?;
    stopped.context("stopping the database")
}
/// One pooled connection and the strategy session that runs on it.
struct Slot {
    conn: Option<PgConnection>,
    session: Session<'static>,
}

struct Shop {
    db: Arc<Database>,
    program: &'static Program,
    seeds: Vec<ProductSeed>,
    slots: Mutex<Vec<Slot>>,
    /// One permit per slot; `reset` takes them all.
    permits: Semaphore,
    connections: u32,
    think_ms: u64,
    max_tries: u32,
    next_attempt: AtomicI64,
    strategy: String,
    /// `POST /reset` asks the reset worker (see `serve_on`) and waits.
    resets: mpsc::Sender<oneshot::Sender<Result<i64, String>>>,
    arrivals: Mutex<Arrivals>,
    quiet: bool,
}

/// When each buyer's first purchase of the current race arrived (its
/// request complete: the handler runs once the body is in).
#[derive(Debug, Default)]
struct Arrivals {
    race: u64,
    first: HashMap<i64, Instant>,
}

impl Arrivals {
    fn note(&mut self, buyer: i64, at: Instant) {
        self.first.entry(buyer).or_insert(at);
    }

    /// Buyers seen, and from the first to the last one's first purchase.
    fn spread(&self) -> (usize, Option<Duration>) {
        let earliest = self.first.values().min();
        let latest = self.first.values().max();
        let spread = earliest.zip(latest).map(|(a, b)| b.duration_since(*a));
        (self.first.len(), spread)
    }

    fn summary(&self) -> Value {
        let (buyers, spread) = self.spread();
        json!({
            "race": self.race,
            "buyers": buyers,
            "first_purchase_spread_us": spread.map(|d| d.as_micros() as u64),
        })
    }

    /// The line logged when a race ends (at the next reset, or at exit).
    fn line(&self) -> Option<String> {
        match self.spread() {
            (0, _) | (_, None) => None,
            (n, Some(d)) => Some(format!(
                "racelab serve: race {}: the first purchases of {n} buyers arrived within {} µs",
                self.race,
                d.as_micros()
            )),
        }
    }
}

async fn serve_on(db: Arc<Database>, plan: &ShopPlan) -> anyhow::Result<()> {
    let sc = &plan.scenario;
    strategy::confine::check_on(
        &plan.strategy,
        db.own_server(),
        db.shown_as(),
        db.unconfined(),
    )?;
    let seeds: Vec<ProductSeed> = (1..=i64::from(sc.products))
        .map(|id| ProductSeed {
            id,
            name: format!("product {id}"),
            stock: sc.stock,
        })
        .collect();
    // The server runs until the process ends: its program lives as long.
    let program: &'static Program = Box::leak(Box::new(plan.strategy.program.clone()));
    let (resets, mut reset_requests) = mpsc::channel::<oneshot::Sender<Result<i64, String>>>(8);
    let shop = Arc::new(Shop {
        db: db.clone(),
        program,
        seeds,
        slots: Mutex::new(Vec::new()),
        permits: Semaphore::new(0),
        connections: plan.connections,
        think_ms: sc.think_ms,
        max_tries: plan.max_tries,
        next_attempt: AtomicI64::new(0),
        strategy: plan.strategy.name.clone(),
        resets,
        arrivals: Mutex::new(Arrivals::default()),
        quiet: plan.quiet,
    });
    shop.reset_lab().await?;
    {
        let mut slots = Vec::with_capacity(plan.connections as usize);
        for i in 0..plan.connections {
            let conn = db.connect_buyer().await?;
            slots.push(Slot {
                conn: Some(conn),
                session: program.session(rand::random::<u64>() ^ u64::from(i)),
            });
        }
        *shop.slots.lock().unwrap_or_else(|e| e.into_inner()) = slots;
        shop.permits.add_permits(plan.connections as usize);
    }

    let listener = tokio::net::TcpListener::bind(plan.addr)
        .await
        .map_err(|e| anyhow::anyhow!("could not listen on {}: {e}", plan.addr))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: listening on {addr}, which is not loopback: anyone who can reach it can buy \
             and reset the stock"
        );
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        if let Some(url) = db.cluster().and_then(|c| c.url()) {
            // The owner's own terminal or pipe: the URL that logs in.
            writeln!(out, "database: {}", url.expose())?;
        }
        out.flush()?;
    }
    if !plan.quiet {
        let schema = db.schema();
        eprintln!(
            "racelab serve: strategy {}, {} product(s) with stock {}, {} connections\n  \
             POST /purchase (JSON body: buyer, attempt, qty, product; all optional), GET /stock, \
             POST /reset, GET /health, GET /arrivals; HTTP/1.1 and h2c\n  \
             verify with: --verify-sql 'SELECT sum(stock)::int8 AS stock, (SELECT coalesce(sum(qty), 0) \
             FROM {schema}.orders)::int8 AS units_sold FROM {schema}.products'\n  \
             Ctrl-C stops it",
            plan.strategy.name, sc.products, sc.stock, plan.connections
        );
    }

    let app = Router::new()
        .route("/purchase", post(purchase))
        .route("/stock", get(stock))
        .route("/reset", post(reset))
        .route("/health", get(health))
        .route("/arrivals", get(arrivals))
        .with_state(shop.clone());
    // Resets run here, on the server's own task rather than in a handler:
    // the lab's rebuild is not a `Send` future (sqlx's executor lifetimes),
    // and handlers must be.
    let worker = async {
        while let Some(done) = reset_requests.recv().await {
            let r = match shop.permits.acquire_many(shop.connections).await {
                // No purchase may run while the lab is rebuilt under it.
                Ok(_all) => shop.reset_lab().await.map_err(|e| format!("{e:#}")),
                Err(_) => Err("shutting down".to_string()),
            };
            let _ = done.send(r.map(|()| shop.seeds.iter().map(|p| p.stock).sum()));
        }
        std::future::pending::<()>().await;
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    tokio::select! {
        r = server => r.context("serving HTTP")?,
        _ = worker => {}
    }
    if !plan.quiet {
        if let Some(line) = shop.lock_arrivals().line() {
            eprintln!("{line}");
        }
        eprintln!("racelab serve: stopped");
    }
    // Close the pooled connections before the cluster stops.
    let slots = std::mem::take(&mut *shop.slots.lock().unwrap_or_else(|e| e.into_inner()));
    for slot in slots {
        if let Some(conn) = slot.conn {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
    drop(shop);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

impl Shop {
    /// The lab as the scenario seeds it, with the strategy's `\setup`.
    async fn reset_lab(&self) -> anyhow::Result<()> {
        self.db.prepare_lab(&self.seeds).await?;
        if self.program.has_setup() {
            let mut conn = self.db.connect_buyer().await?;
            let products: Vec<(i64, i64)> = self.seeds.iter().map(|p| (p.id, p.stock)).collect();
            strategy::run_setup(self.program, &mut conn, &products)
                .await
                .with_context(|| format!("running the \\setup block of `{}`", self.strategy))?;
            let _ = sqlx::Connection::close(conn).await;
        }
        self.next_attempt.store(0, Ordering::Relaxed);
        let mut arrivals = self.lock_arrivals();
        if !self.quiet {
            if let Some(line) = arrivals.line() {
                eprintln!("{line}");
            }
        }
        let race = arrivals.race + 1;
        *arrivals = Arrivals {
            race,
            ..Arrivals::default()
        };
        Ok(())
    }

    fn lock_arrivals(&self) -> std::sync::MutexGuard<'_, Arrivals> {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_slot(&self) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .expect("a permit guarantees a free slot")
    }

    fn put_slot(&self, slot: Slot) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
    }
}

/// The largest quantity one purchase may ask for.
const MAX_QTY: i64 = 1_000_000;

impl Shop {
    /// A purchase the shop can serve, or why not: a body that is not an
    /// object (400), a quantity below 1 or above `MAX_QTY` (400: a
    /// negative one would add stock), an attempt id below 1 (400), a
    /// product the shop does not sell (404).
    fn check_purchase(
        &self,
        product: i64,
        qty: i64,
        attempt: Option<i64>,
    ) -> Result<(), (StatusCode, String)> {
        let bad = |e: String| Err((StatusCode::BAD_REQUEST, e));
        if !(1..=MAX_QTY).contains(&qty) {
            return bad(format!("`qty` must be between 1 and {MAX_QTY}, got {qty}"));
        }
        if attempt.is_some_and(|a| a < 1) {
            return bad(format!(
                "`attempt` must be 1 or more, got {}",
                attempt.unwrap_or_default()
            ));
        }
        if !self.seeds.iter().any(|p| p.id == product) {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "no product {product}: this shop sells products 1 to {}",
                    self.seeds.len()
                ),
            ));
        }
        Ok(())
    }
}

fn reply(code: StatusCode, body: Value) -> (StatusCode, Json<Value>) {
    (code, Json(body))
}

/// An optional integer field of the purchase body.
fn field(body: &Value, key: &str) -> Result<Option<i64>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be an integer, got {v}")),
    }
}

/// What a purchase body asks for: every field optional.
#[derive(Debug, PartialEq, Eq)]
struct Order {
    product: i64,
    qty: i64,
    buyer: i64,
    attempt: Option<i64>,
    /// Whether the body named its buyer (only then is its arrival noted).
    named: bool,
}

/// The order in a purchase body: an empty (or blank) body is the default
/// order, anything else must be a JSON object whose fields, if present,
/// are integers; the error is the 400's message.
fn order_of(body: &[u8]) -> Result<Order, String> {
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?
    };
    if !parsed.is_object() {
        return Err(format!(
            "the body must be a JSON object like {{\"product\": 1, \"qty\": 1}}, got {parsed}"
        ));
    }
    Ok(Order {
        product: field(&parsed, "product")?.unwrap_or(1),
        qty: field(&parsed, "qty")?.unwrap_or(1),
        buyer: field(&parsed, "buyer")?.unwrap_or(0),
        attempt: field(&parsed, "attempt")?,
        named: parsed.get("buyer").is_some(),
    })
}

async fn purchase(State(shop): State<Arc<Shop>>, body: Bytes) -> (StatusCode, Json<Value>) {
    let arrived = Instant::now();
    let Order {
        product,
        qty,
        buyer,
        attempt,
        named,
    } = match order_of(&body) {
        Ok(o) => o,
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({ "error": e })),
    };
    if let Err((code, e)) = shop.check_purchase(product, qty, attempt) {
        return reply(code, json!({ "error": e }));
    }
    if named {
        shop.lock_arrivals().note(buyer, arrived);
    }
    let attempt = attempt.unwrap_or_else(|| shop.next_attempt.fetch_add(1, Ordering::Relaxed) + 1);
    let Ok(_permit) = shop.permits.acquire().await else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down"}),
        );
    };
    let mut slot = shop.take_slot();
    let conn = match slot.conn.take() {
        Some(c) => c,
        None => match shop.db.connect_buyer().await {
            Ok(c) => c,
            Err(e) => {
                shop.put_slot(slot);
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"outcome": "error", "message": format!("{e:#}")}),
                );
            }
        },
    };
    let mut conn = conn;
    let ctx = AttemptCtx {
        product,
        qty,
        buyer,
        attempt,
        think_ms: shop.think_ms as i64,
        max_tries: shop.max_tries,
    };
    let report = slot.session.attempt(&mut conn, &ctx, None).await;
    if !report.connection_lost {
        slot.conn = Some(conn);
    }
    shop.put_slot(slot);
    let code = match report.outcome {
        Outcome::Succeeded => StatusCode::CREATED,
        Outcome::SoldOut => StatusCode::CONFLICT,
        Outcome::Rejected => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    reply(
        code,
        json!({
            "outcome": report.outcome.as_str(),
            "attempt": attempt,
            "product": product,
            "qty": qty,
            "tries": report.tries,
            "message": report.message,
        }),
    )
}

async fn stock(State(shop): State<Arc<Shop>>) -> (StatusCode, Json<Value>) {
    let read = async {
        let mut conn = shop.db.connect().await?;
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, stock::int8 FROM products ORDER BY id")
                .fetch_all(&mut conn)
                .await?;
        let _ = sqlx::Connection::close(conn).await;
        anyhow::Ok(rows)
    };
    match read.await {
        Ok(rows) => reply(
            StatusCode::OK,
            json!({
                "stock": rows.iter().map(|r| r.1).sum::<i64>(),
                "products": rows.iter().map(|(id, s)| json!({"id": id, "stock": s})).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("{e:#}")}),
        ),
    }
}

async fn reset(State(shop): State<Arc<Shop>>) -> (StatusCode, Json<Value>) {
    let (done, wait) = oneshot::channel();
    let answer = match shop.resets.send(done).await {
        Ok(()) => wait.await.unwrap_or_else(|_| Err("shutting down".into())),
        Err(_) => Err("shutting down".into()),
    };
    match answer {
        Ok(stock) => reply(StatusCode::OK, json!({"reset": true, "stock": stock})),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e })),
    }
}

/// The current race's first-purchase arrivals (since the last reset).
async fn arrivals(State(shop): State<Arc<Shop>>) -> (StatusCode, Json<Value>) {
    let summary = shop.lock_arrivals().summary();
    reply(StatusCode::OK, summary)
}

async fn health(State(shop): State<Arc<Shop>>) -> (StatusCode, Json<Value>) {
    reply(
        StatusCode::OK,
        json!({"status": "ok", "strategy": shop.strategy}),
    )
}

#[cfg(test)]
mod tests;
