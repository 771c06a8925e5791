//! Measure the embedded cluster: cold start (empty template cache: initdb),
//! warm start (template copy) to ready, stop, and a lab reset.
//!
//! `cargo run --example cluster_timing [-- N]` (N warm rounds, default 10).
//! Uses a private template cache, so the cold numbers are really cold.

use std::time::{Duration, Instant};

use racelab::db::{bins, Cluster, ClusterOptions, Database, DbOptions, Dirs, ProductSeed};

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<28} n={:<3} min {:>7.1} ms   median {:>7.1} ms   max {:>7.1} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(10), |a| a.parse())?;
    let bins = bins::find_server_bins(None)?;
    println!(
        "server: {} ({})",
        bins.postgres.display(),
        bins.version(None)?
    );
    let cache = tempfile::tempdir()?;
    let mut dirs = Dirs::from_env()?;
    dirs.cache_dir = cache.path().to_path_buf();
    let opts = ClusterOptions::new(bins, &dirs)?;

    let t = Instant::now();
    let cold = Cluster::start(&opts)?;
    let cold_start = t.elapsed();
    let cold_timings = cold.start_timings();
    let t = Instant::now();
    cold.shutdown()?;
    let cold_stop = t.elapsed();
    summary("cold start-to-ready (initdb)", vec![cold_start]);
    summary("stop after cold start", vec![cold_stop]);

    println!("  cold breakdown: {:?}", cold_timings);
    let (mut starts, mut stops) = (Vec::new(), Vec::new());
    let (mut setup, mut copy, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let c = Cluster::start(&opts)?;
        starts.push(t.elapsed());
        let st = c.start_timings();
        setup.push(st.setup);
        copy.push(st.data_dir);
        ready.push(st.ready);
        let t = Instant::now();
        c.shutdown()?;
        stops.push(t.elapsed());
    }
    summary("warm start-to-ready", starts);
    summary("  of which setup+version", setup);
    summary("  of which template copy", copy);
    summary("  of which spawn-to-ready", ready);
    summary("stop (SIGINT + wait + rm)", stops);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let db = Database::open_with(&DbOptions::default(), &dirs).await?;
        let seeds: Vec<ProductSeed> = (1..=3)
            .map(|id| ProductSeed {
                id,
                name: format!("p{id}"),
                stock: 100,
            })
            .collect();
        let mut resets = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            db.prepare_lab(&seeds).await?;
            resets.push(t.elapsed());
        }
        summary("prepare_lab (reset + seed)", resets);
        db.shutdown().await
    })
}
