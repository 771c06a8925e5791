//! The SQL lab's lanes: each buyer runs the strategy's script on its own
//! connection or on one leased from a shared pool (`pool`), with the
//! nemesis's faults (`nemesis`) and racelab's own deadline on every reply;
//! the engine's `Lanes` and `Attempt` for the SQL lab. After the race the
//! connections stay open (`Held`) so the audit can run on one of them.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::task::JoinSet;

use super::nemesis::{self, Faults};
use super::pool;
use crate::engine::{
    join_unless_stopped, race_with, Attempt, Control, Lanes, RaceConfig, RaceOutput,
};
use crate::outcome::{AttemptCtx, AttemptReport, TraceEvent};
use crate::strategy::{Injected, Program, RedisConn, Session, SessionFaults};

/// The buyers' connections, still open after a SQL race. The audit runs on
/// one of them: a new connection right after the race has to wait while
/// the server reaps the crowd of exiting buyer backends (measured here: 60
/// to 85 ms after 100 buyers, against 3 to 8 ms for the audit itself).
/// Dropping it closes them.
pub struct Held {
    lanes: Vec<Lane>,
    spare: Option<PgConnection>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} lanes)", self.lanes.len())
    }
}

impl Held {
    /// The lanes `race_with` handed back after a race on `SqlLanes`.
    pub fn new(lanes: Vec<Lane>) -> Held {
        Held { lanes, spare: None }
    }

    /// An idle connection of the race (a buyer's own, or one of the pool's).
    /// Only meaningful when the race was not aborted by a lost connection.
    pub fn connection(&mut self) -> Option<&mut PgConnection> {
        if self.spare.is_none() {
            let pooled = self.lanes.iter().find_map(|l| match l {
                Lane::Pool(pool) => Some(pool.clone()),
                Lane::Own(_) => None,
            });
            self.spare = pooled.and_then(|p| p.take());
        }
        if self.spare.is_some() {
            return self.spare.as_mut();
        }
        self.lanes.iter_mut().find_map(|l| match l {
            Lane::Own(c) => Some(c),
            Lane::Pool(_) => None,
        })
    }
}

/// Run one race of a strategy against the database. Errors only when the
/// race could not start (connections); failures during the race are
/// outcomes, or a `Stop` recorded in `control`. The buyers' connections
/// come back open in `Held`.
pub async fn race(
    program: Arc<Program>,
    connect: PgConnectOptions,
    config: RaceConfig,
    control: Arc<Control>,
) -> anyhow::Result<(RaceOutput, Held)> {
    let lanes = Arc::new(SqlLanes::new(program, connect));
    let (out, lanes) = race_with(lanes, config, control).await?;
    Ok((out, Held::new(lanes)))
}

/// The SQL lab: each buyer runs the strategy's script on its own
/// connection or on one from a shared pool.
pub struct SqlLanes {
    program: Arc<Program>,
    connect: PgConnectOptions,
    /// For a strategy with `\redis` commands: the server and the key prefix.
    redis: Option<(redis::Client, Arc<str>)>,
    /// Each buyer's own Redis connection, opened with the lanes and taken
    /// by `buyer`.
    redis_conns: Mutex<Vec<redis::aio::MultiplexedConnection>>,
    /// The nemesis and the client-side deadline (all off by default).
    faults: Faults,
    session_faults: SessionFaults,
    /// How long a buyer (or the terminator) may take to (re)connect.
    connect_timeout: Duration,
    /// What the nemesis did in the current race.
    counters: Arc<nemesis::Counters>,
    /// Send unnamed statements (a pooler switches server connections);
    /// whether to wrap a statement alone in a transaction of its own.
    unnamed: Option<bool>,
}

impl SqlLanes {
    /// Buyers that run `program` on connections made with `connect`.
    pub fn new(program: Arc<Program>, connect: PgConnectOptions) -> SqlLanes {
        SqlLanes {
            program,
            connect,
            redis: None,
            redis_conns: Mutex::new(Vec::new()),
            faults: Faults::default(),
            session_faults: SessionFaults::default(),
            connect_timeout: Duration::from_secs(10),
            counters: Arc::default(),
            unnamed: None,
        }
    }

    /// Buyers send unnamed statements (see `Session::with_unnamed_statements`).
    pub fn with_unnamed_statements(mut self, wrap_alone: bool) -> SqlLanes {
        self.unnamed = Some(wrap_alone);
        self
    }

    /// Bound every statement by `deadline` (racelab's side of `--timeout`),
    /// inject `faults`, and (re)connect within `connect_timeout`.
    pub fn with_faults(
        mut self,
        faults: Faults,
        deadline: Option<Duration>,
        connect_timeout: Duration,
    ) -> SqlLanes {
        self.faults = faults;
        self.session_faults = SessionFaults {
            deadline,
            drop_reply: faults.drop_reply,
            sleep_limit: self.session_faults.sleep_limit,
        };
        self.connect_timeout = connect_timeout;
        self
    }

    /// No `\sleep` of a buyer may be longer than `limit` (`--timeout`).
    pub fn with_sleep_limit(mut self, limit: Option<Duration>) -> SqlLanes {
        self.session_faults.sleep_limit = limit;
        self
    }

    /// What the nemesis did in the last race.
    pub fn nemesis_done(&self) -> nemesis::Done {
        self.counters.done()
    }

    /// A new connection for a buyer whose connection was lost on purpose.
    async fn reconnect(&self) -> Result<PgConnection, String> {
        let secs = self.connect_timeout.as_secs_f64();
        let mut conn =
            match tokio::time::timeout(self.connect_timeout, self.connect.connect()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(format!("could not reconnect a buyer: {e}")),
                Err(_) => {
                    return Err(format!(
                        "could not reconnect a buyer within {secs}s (--connect-timeout)"
                    ))
                }
            };
        if self.faults.terminate_per_s > 0.0 {
            let registered =
                tokio::time::timeout(self.connect_timeout, self.counters.register(&mut conn));
            match registered.await {
                Ok(Ok(())) => {}
                _ => return Err("could not reconnect a buyer: its new connection failed".into()),
            }
        }
        crate::db::keepalive::enable_for(&self.connect);
        self.counters
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(conn)
    }

    /// After an attempt that lost its connection: whether to reconnect and
    /// go on (a fault injected on purpose) rather than end the race.
    fn goes_on(&self, report: &AttemptReport, fault: Option<Injected>) -> bool {
        if fault == Some(Injected::DroppedReply) {
            self.counters
                .dropped_replies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // A deadline that expired is a peer that stopped answering: the
        // run ends (aborted), whatever the nemesis.
        report.connection_lost && self.faults.reconnects() && fault != Some(Injected::Deadline)
    }

    /// Give every buyer a Redis connection of its own to `client`, keys
    /// under `prefix`.
    pub fn with_redis(mut self, client: redis::Client, prefix: Arc<str>) -> SqlLanes {
        self.redis = Some((client, prefix));
        self
    }
}

impl Lanes for SqlLanes {
    type Lane = Lane;
    type Buyer<'a> = SqlBuyer<'a>;

    async fn open(&self, config: &RaceConfig, control: &Control) -> anyhow::Result<Vec<Lane>> {
        self.counters.reset();
        let mut lanes = open_lanes(&self.connect, config, control).await?;
        crate::db::keepalive::enable_for(&self.connect);
        if self.faults.terminate_per_s > 0.0 {
            let mut pooled = false;
            for lane in &mut lanes {
                let registered = match lane {
                    Lane::Own(conn) => self.counters.register(conn).await,
                    // Every buyer shares the one pool.
                    Lane::Pool(_) if pooled => Ok(()),
                    Lane::Pool(pool) => {
                        pooled = true;
                        pool.register_all(&self.counters).await
                    }
                };
                registered.context("learning the buyers' backend pids for --nemesis terminate")?;
            }
        }
        if let Some((client, _)) = &self.redis {
            let mut set = JoinSet::new();
            let at_once = Arc::new(tokio::sync::Semaphore::new(CONNECTS_AT_ONCE));
            for _ in 0..config.buyers {
                let client = client.clone();
                let at_once = at_once.clone();
                set.spawn(async move {
                    let _permit = at_once.acquire().await;
                    client.get_multiplexed_tokio_connection().await
                });
            }
            let mut conns = Vec::with_capacity(config.buyers as usize);
            while let Some(c) = set.join_next().await {
                conns.push(
                    c.context("opening a buyer's Redis connection")?
                        .context("opening a buyer's Redis connection")?,
                );
            }
            *self.redis_conns.lock().unwrap_or_else(|p| p.into_inner()) = conns;
        }
        Ok(lanes)
    }

    /// Close a finished buyer's own connection at once, so that the server
    /// retires backends while the race still runs rather than all together
    /// after it (100 at once cost 60-80 ms here); keep buyer 1's for the
    /// audit. Pool connections stay with the pool.
    fn finished(&self, buyer: u32, lane: Lane) -> Option<Lane> {
        match lane {
            Lane::Own(_) if buyer != 1 => None,
            lane => Some(lane),
        }
    }

    fn stalled(&self) -> impl Future<Output = String> + Send {
        let connect = self.connect.clone();
        async move { super::stall::describe(&connect).await }
    }

    fn during(&self, config: &RaceConfig) -> impl Future<Output = ()> + Send {
        let per_s = self.faults.terminate_per_s;
        let (connect, counters) = (self.connect.clone(), self.counters.clone());
        let (seed, limit) = (config.seed, self.connect_timeout);
        async move {
            if per_s > 0.0 {
                nemesis::terminator(connect, per_s, seed, limit, &counters).await;
            }
        }
    }

    fn buyer<'a>(&'a self, lane: &'a mut Lane, seed: u64) -> SqlBuyer<'a> {
        let mut session = self.program.session(seed);
        if self.session_faults != SessionFaults::default() {
            session = session.with_faults(self.session_faults);
        }
        if let Some(wrap_alone) = self.unnamed {
            session = session.with_unnamed_statements(wrap_alone);
        }
        if let Some((_, prefix)) = &self.redis {
            let conn = self
                .redis_conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            if let Some(conn) = conn {
                session.set_redis(RedisConn {
                    conn,
                    prefix: prefix.clone(),
                });
            }
        }
        SqlBuyer {
            lanes: self,
            session,
            conn: match lane {
                Lane::Own(conn) => BuyerConn::Own(conn),
                Lane::Pool(pool) => BuyerConn::Pool { pool, lease: None },
            },
        }
    }
}

/// Where a buyer gets its connection from.
pub enum Lane {
    Own(PgConnection),
    Pool(Arc<pool::SharedPool>),
}

pub struct SqlBuyer<'a> {
    lanes: &'a SqlLanes,
    session: Session<'a>,
    conn: BuyerConn<'a>,
}

/// A buyer's connection: its own, or one leased from the pool by `ready`
/// for one attempt.
enum BuyerConn<'a> {
    Own(&'a mut PgConnection),
    Pool {
        pool: &'a pool::SharedPool,
        lease: Option<pool::Lease<'a>>,
    },
}

impl Attempt for SqlBuyer<'_> {
    /// With a shared pool, wait for a connection: waiting is not racing,
    /// so it is not part of the attempt.
    async fn ready(&mut self) -> Result<(), String> {
        if let BuyerConn::Pool { pool, lease } = &mut self.conn {
            if lease.is_none() {
                let Some(leased) = pool.lease().await else {
                    return Err("lost the connection to the server (the pool has none left)".into());
                };
                *lease = Some(leased);
            }
        }
        Ok(())
    }

    async fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(AttemptReport, u64), String> {
        self.ready().await?;
        match &mut self.conn {
            BuyerConn::Own(conn) => {
                let started = Instant::now();
                let mut report = self.session.attempt(conn, ctx, trace).await;
                let us = started.elapsed().as_micros() as u64;
                if self.lanes.goes_on(&report, self.session.take_fault()) {
                    // Dropping the old connection closes it, its reply unread.
                    **conn = self.lanes.reconnect().await?;
                    report.connection_lost = false;
                }
                Ok((report, us))
            }
            BuyerConn::Pool { pool, lease } => {
                let mut leased = lease.take().expect("leased by ready");
                let started = Instant::now();
                let mut report = self.session.attempt(&mut leased.conn, ctx, trace).await;
                let us = started.elapsed().as_micros() as u64;
                // A connection lost on purpose is replaced; any other lost
                // connection is not given back: the pool shrinks and the
                // race stops, rather than reconnecting behind our back.
                if self.lanes.goes_on(&report, self.session.take_fault()) {
                    leased.conn = self.lanes.reconnect().await?;
                    report.connection_lost = false;
                }
                if !report.connection_lost {
                    pool.give_back(leased);
                }
                Ok((report, us))
            }
        }
    }
}

/// Open every buyer's connection (or the pool's) before the barrier, so
/// the race starts with everyone ready. Connections open concurrently.
/// Connections being opened at once, at most (see `open_lanes`).
const CONNECTS_AT_ONCE: usize = 200;

async fn open_lanes(
    connect: &PgConnectOptions,
    config: &RaceConfig,
    control: &Control,
) -> anyhow::Result<Vec<Lane>> {
    let buyers = config.buyers as usize;
    let pool_size = (config.connections > 0).then(|| config.connections.min(config.buyers));
    let mut set = JoinSet::new();
    // Thousands of connects at once overflow the server's listen backlog
    // (a unix socket answers EAGAIN): a few hundred in flight at a time.
    let at_once = Arc::new(tokio::sync::Semaphore::new(CONNECTS_AT_ONCE));
    for _ in 0..pool_size.map_or(buyers, |n| n as usize) {
        let opts = connect.clone();
        let at_once = at_once.clone();
        set.spawn(async move {
            let _permit = at_once.acquire().await;
            opts.connect().await
        });
    }
    let conns = join_unless_stopped(set, control, |r| r.map_err(connect_error)).await?;
    if pool_size.is_some() {
        let pool = Arc::new(pool::SharedPool::new(conns));
        return Ok((0..buyers).map(|_| Lane::Pool(pool.clone())).collect());
    }
    Ok(conns.into_iter().map(Lane::Own).collect())
}

fn connect_error(e: sqlx::Error) -> anyhow::Error {
    let too_many = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "53300");
    if too_many {
        anyhow::anyhow!(
            "the server refused more connections ({e}): share a pool with --connections N, \
             or raise the server's max_connections"
        )
    } else {
        anyhow::Error::new(e).context("could not open a buyer's connection")
    }
}
