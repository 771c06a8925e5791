//! The floor under racelab's client cost: the same transactions as
//! `benches/pgbench/*.sql`, sent by a bare loop over sqlx on racelab's
//! runtime (`engine::runtime`), with nothing of racelab's around them: no
//! script interpreter, no outcome tally, no contention tracking. What this
//! loop costs per transaction is what any sqlx client costs here; the
//! difference between it and `racelab run` is racelab's own.
//!
//! `cargo run --release --example sqlx_floor -- URL SCHEMA STRATEGY CLIENTS SECONDS`
//!
//! `STRATEGY` is `conditional` or `for-update`; the lab in `SCHEMA` must be
//! ready (a `racelab run --schema SCHEMA` leaves it so) with product 1's
//! stock large enough never to sell out. Prints one line:
//! `transactions tps cpu_us_per_transaction` (CPU: user + system of the
//! whole process across the loop, as racelab's
//! `throughput.client_cpu_us_per_attempt`).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Row};

use racelab::engine::{self, process_cpu};

const CONDITIONAL: &str = "WITH sold AS (UPDATE products SET stock = stock - $1 \
     WHERE id = $2 AND stock >= $1 RETURNING id) \
     INSERT INTO orders (product_id, buyer_id, attempt_id, qty) \
     SELECT id, $3, $4, $1 FROM sold";
const LOCK: &str = "SELECT stock FROM products WHERE id = $1 FOR UPDATE";
const WRITE: &str = "UPDATE products SET stock = $1 - $2 WHERE id = $3";
const ORDER: &str = "INSERT INTO orders (product_id, buyer_id, attempt_id, qty) \
     VALUES ($1, $2, $3, $4)";

#[derive(Clone, Copy)]
enum Strategy {
    Conditional,
    ForUpdate,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, strategy, clients, seconds] = args.as_slice() else {
        bail!("usage: sqlx_floor URL SCHEMA conditional|for-update CLIENTS SECONDS");
    };
    let strategy = match strategy.as_str() {
        "conditional" => Strategy::Conditional,
        "for-update" => Strategy::ForUpdate,
        other => bail!("unknown strategy {other:?}: conditional or for-update"),
    };
    let clients: u32 = clients.parse().context("CLIENTS")?;
    let duration = Duration::from_secs_f64(seconds.parse().context("SECONDS")?);
    let opts = PgConnectOptions::from_str(url)?.options([("search_path", schema.as_str())]);

    let rt = engine::runtime()?;
    rt.block_on(async move {
        let mut conns = Vec::new();
        for _ in 0..clients {
            conns.push(opts.connect().await?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let cpu = process_cpu();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, conn) in conns.into_iter().enumerate() {
            let (stop, done) = (stop.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                client(conn, strategy, i as u64, &stop, &done).await
            }));
        }
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await??;
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = (process_cpu() - cpu).as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!(
            "{n} {:.1} {:.1}",
            n as f64 / wall,
            cpu * 1e6 / n.max(1) as f64
        );
        anyhow::Ok(())
    })
}

/// One client's loop: the transaction of `strategy` until `stop`.
async fn client(
    mut conn: PgConnection,
    strategy: Strategy,
    seed: u64,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> anyhow::Result<()> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let buyer: i64 = rng.gen_range(1..=1_000_000);
        let attempt: i64 = rng.gen_range(1..=1_000_000_000);
        match strategy {
            Strategy::Conditional => {
                sqlx::query(CONDITIONAL)
                    .bind(1i64)
                    .bind(1i64)
                    .bind(buyer)
                    .bind(attempt)
                    .execute(&mut conn)
                    .await?;
            }
            Strategy::ForUpdate => {
                sqlx::query("BEGIN").execute(&mut conn).await?;
                let row = sqlx::query(LOCK).bind(1i64).fetch_one(&mut conn).await?;
                let stock: i64 = row.try_get(0)?;
                sqlx::query(WRITE)
                    .bind(stock)
                    .bind(1i64)
                    .bind(1i64)
                    .execute(&mut conn)
                    .await?;
                sqlx::query(ORDER)
                    .bind(1i64)
                    .bind(buyer)
                    .bind(attempt)
                    .bind(1i64)
                    .execute(&mut conn)
                    .await?;
                sqlx::query("COMMIT").execute(&mut conn).await?;
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    conn.close().await?;
    Ok(())
}
