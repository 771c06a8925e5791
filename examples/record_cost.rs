//! What timing and recording one attempt costs a buyer: two `Instant::now()`
//! calls around the attempt, and `Tally::record` (a buffer push, folded into
//! HdrHistograms every 65,536 samples). Run with
//! `cargo run --release --example record_cost`.

use std::hint::black_box;
use std::time::Instant;

use racelab::engine::Tally;
use racelab::outcome::{AttemptReport, Outcome};

fn main() {
    let n: u64 = 20_000_000;
    let report = AttemptReport {
        outcome: Outcome::Succeeded,
        tries: 1,
        message: None,
        connection_lost: false,
    };

    // The clock alone: the two reads every attempt makes.
    let t = Instant::now();
    let mut sink = 0u64;
    for _ in 0..n {
        let started = Instant::now();
        sink = sink.wrapping_add(started.elapsed().as_micros() as u64);
    }
    black_box(sink);
    let clock = t.elapsed().as_nanos() as f64 / n as f64;

    // The clock plus recording, as the engine does it.
    let mut tally = Tally::default();
    let t = Instant::now();
    for i in 0..n {
        let started = Instant::now();
        let us = started.elapsed().as_micros() as u64 + (i % 5_000);
        tally.record(black_box(&report), i as i64, us);
    }
    let total = t.elapsed().as_nanos() as f64 / n as f64;
    // The success ids are kept for the audit; count them as part of the cost.
    black_box(tally.latency().all.len());

    println!(
        "per attempt: clock {clock:.1} ns, clock + record {total:.1} ns (record alone {:.1} ns)",
        total - clock
    );
}
