//! What measuring contention costs at 10,000 buyers: the same race with
//! the engine's contention tracking on and off (`RaceConfig::
//! track_contention`), side by side, peak RSS and throughput.
//!
//! `cargo run --release --example contention_cost [-- ROUNDS]` (default 5).
//!
//! Two races, each run ROUNDS times per setting, alternating which setting
//! goes first, every race in a fresh child process (so that its peak RSS is
//! its own):
//! - `memory`: 10,000 buyers x 20 attempts against an in-process shop (a
//!   mutex-guarded stock per product): attempts cost almost nothing, so
//!   this is the worst case for the tracking's share.
//! - `sql`: `racelab run --strategy conditional --buyers 10000 --connections
//!   100 --stock 5000` as the engine races it: one embedded cluster, the
//!   lab reset before each race.
//!
//! Prints, first, what tracking adds to one attempt on its own
//! (`Tracker::start` and `end` in a loop, as the engine calls them); then,
//! per race and setting, the medians of throughput (attempts per second of
//! the race's wall time), of the client's CPU per attempt during the race
//! (user + system, every thread, the buyers' connections included), and of
//! peak RSS, with the ratios on/off. On a busy machine the run-to-run
//! spread of the races is larger than the difference: run it more rounds,
//! or more than once.

use std::hint::black_box;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use racelab::db::{Database, DbOptions, ProductSeed};
use racelab::engine::contention::Tracker;
use racelab::engine::{self, Attempt, Control, Lanes, RaceConfig};
use racelab::outcome::{AttemptReport, Outcome};
use racelab::strategy::{AttemptCtx, TraceEvent};

const BUYERS: u32 = 10_000;
const MEMORY_ATTEMPTS: u32 = 20;
const SQL_STOCK: i64 = 5_000;
const SQL_POOL: u32 = 100;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2], &args[3] == "on", args.get(4).map(String::as_str));
    }
    let rounds: usize = args.get(1).map_or(Ok(5), |a| a.parse())?;
    let me = std::env::current_exe()?;

    // One embedded cluster for every SQL race, owned here.
    let rt = engine::runtime()?;
    let db = rt.block_on(Database::open(&DbOptions {
        max_connections: SQL_POOL + 10,
        // The child races reach it over TCP, with its password.
        listen_tcp: true,
        ..DbOptions::default()
    }))?;
    let url = db
        .cluster()
        .and_then(|c| c.url())
        .map(|u| u.expose().to_string())
        .ok_or_else(|| anyhow::anyhow!("expected an embedded cluster"))?;

    let n: u32 = 20_000_000;
    let tracker = Tracker::new(&[1], true);
    let t = Instant::now();
    for _ in 0..n {
        if let Some(span) = tracker.start(black_box(1)) {
            black_box(tracker.end(span));
        }
    }
    println!(
        "tracking one attempt (start + end, one thread): {:.1} ns\n",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    println!("{BUYERS} buyers; medians of {rounds} races per setting, each in its own process\n");
    println!(
        "race    tracking | attempts/s  CPU/attempt   peak RSS | on/off: throughput  CPU    RSS"
    );
    for race in ["memory", "sql"] {
        let mut runs: [Vec<[f64; 3]>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for on in order {
                let mode = if on { "on" } else { "off" };
                let mut cmd = Command::new(&me);
                cmd.args(["--child", race, mode]);
                if race == "sql" {
                    cmd.arg(&url);
                }
                let out = cmd.output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "{race} {mode}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let line = String::from_utf8_lossy(&out.stdout);
                let mut fields = [0.0; 3];
                for (f, v) in fields.iter_mut().zip(line.split_whitespace()) {
                    *f = v.parse()?;
                }
                runs[usize::from(on)].push(fields);
            }
        }
        // Medians per setting: [attempts/s, CPU µs per attempt, RSS KiB].
        let medians = |r: &[[f64; 3]]| -> [f64; 3] {
            let mut m = [0.0; 3];
            for (k, out) in m.iter_mut().enumerate() {
                let mut v: Vec<f64> = r.iter().map(|x| x[k]).collect();
                v.sort_by(f64::total_cmp);
                *out = v[v.len() / 2];
            }
            m
        };
        let (on, off) = (medians(&runs[1]), medians(&runs[0]));
        for (name, m) in [("on", on), ("off", off)] {
            let ratio = if name == "on" {
                format!(
                    "{:.3}       {:.3}  {:.3}",
                    on[0] / off[0],
                    on[1] / off[1],
                    on[2] / off[2]
                )
            } else {
                String::new()
            };
            println!(
                "{race:<7} {name:<8} | {:>10.0} {:>9.2} µs {:>7.1} MB | {ratio}",
                m[0],
                m[1],
                m[2] / 1024.0
            );
        }
    }
    rt.block_on(db.shutdown())?;
    Ok(())
}

/// One race; prints "attempts_per_sec cpu_us_per_attempt peak_rss_kib".
fn child(race: &str, track: bool, url: Option<&str>) -> anyhow::Result<()> {
    let rt = engine::runtime()?;
    let (attempts, wall, cpu) = match race {
        "memory" => rt.block_on(memory_race(track))?,
        "sql" => rt.block_on(sql_race(track, url.expect("a database URL")))?,
        other => anyhow::bail!("unknown race {other}"),
    };
    println!(
        "{:.1} {:.3} {}",
        attempts as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / attempts as f64,
        peak_rss_kib()?
    );
    Ok(())
}

fn config(attempts: u32, connections: u32, track: bool) -> RaceConfig {
    RaceConfig {
        buyers: BUYERS,
        attempts_per_buyer: attempts,
        connections,
        max_tries: 10,
        seed: 7,
        track_contention: track,
        ..RaceConfig::default()
    }
}

/// What one race measured: attempts, wall time, and the CPU time the
/// process used from the start of the race to its end.
type Measured = (u64, Duration, Duration);

async fn memory_race(track: bool) -> anyhow::Result<Measured> {
    let shop = Arc::new(Shop {
        stock: Mutex::new(i64::from(BUYERS * MEMORY_ATTEMPTS) / 2),
    });
    let cpu = engine::process_cpu();
    let (out, _) =
        engine::race_with(shop, config(MEMORY_ATTEMPTS, 0, track), Control::new()).await?;
    Ok((out.tally.attempts(), out.wall, engine::process_cpu() - cpu))
}

async fn sql_race(track: bool, url: &str) -> anyhow::Result<Measured> {
    let db = Database::open(&DbOptions {
        database_url: Some(url.to_string()),
        schema: "racelab_contention_cost".into(),
        ..DbOptions::default()
    })
    .await?;
    db.prepare_lab(&[ProductSeed {
        id: 1,
        name: "product 1".into(),
        stock: SQL_STOCK,
    }])
    .await?;
    let strategy = racelab::strategy::load("conditional")?;
    let cpu = engine::process_cpu();
    let (out, held) = racelab::lab::race(
        strategy.program.clone(),
        db.connect_options(),
        config(1, SQL_POOL, track),
        Control::new(),
    )
    .await?;
    let cpu = engine::process_cpu() - cpu;
    drop(held);
    let audit = db.audit(&out.tally.succeeded_attempts).await?;
    anyhow::ensure!(audit.units_sold == SQL_STOCK, "{audit:?}");
    db.shutdown().await?;
    Ok((out.tally.attempts(), out.wall, cpu))
}

/// The in-process shop: one stock behind a mutex; each attempt yields
/// once first, so that buyers interleave as they would on a server.
struct Shop {
    stock: Mutex<i64>,
}

struct Customer<'a> {
    shop: &'a Shop,
}

impl Lanes for Shop {
    type Lane = ();
    type Buyer<'a> = Customer<'a>;

    async fn open(&self, config: &RaceConfig, _: &Control) -> anyhow::Result<Vec<()>> {
        Ok(vec![(); config.buyers as usize])
    }

    fn buyer<'a>(&'a self, _: &'a mut (), _: u64) -> Customer<'a> {
        Customer { shop: self }
    }
}

impl Attempt for Customer<'_> {
    async fn attempt(
        &mut self,
        ctx: &AttemptCtx,
        _: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(AttemptReport, u64), String> {
        let started = Instant::now();
        tokio::task::yield_now().await;
        let outcome = {
            let mut stock = self.shop.stock.lock().unwrap_or_else(|e| e.into_inner());
            if *stock >= ctx.qty {
                *stock -= ctx.qty;
                Outcome::Succeeded
            } else {
                Outcome::SoldOut
            }
        };
        let report = AttemptReport {
            outcome,
            tries: 1,
            message: None,
            connection_lost: false,
        };
        Ok((report, started.elapsed().as_micros() as u64))
    }
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))
}
