//! `--histogram`: latency as terminal bar charts, one per outcome, on
//! log-scaled buckets (1-2-5 per decade). Several runs (`compare`) share one
//! set of buckets and one bar scale, so their charts can be read one under
//! the other.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::{fmt_us, RunResult};

/// One chart group: a label and its histograms per outcome.
pub type Group = (String, Vec<(String, Histogram<u64>)>);

/// Widest bar, in characters.
const BAR: usize = 40;

/// The histograms of a run, per outcome (from the result's `hdr_by_outcome`,
/// or the all-attempts histogram when a result predates it).
pub fn of_run(r: &RunResult) -> Vec<(String, Histogram<u64>)> {
    let l = &r.latency_us;
    let mut out: Vec<(String, Histogram<u64>)> = l
        .hdr_by_outcome
        .iter()
        .filter_map(|(o, text)| Some((o.clone(), crate::result::decode_histogram(text).ok()?)))
        .collect();
    if out.is_empty() {
        if let Ok(h) = l.histogram() {
            out.push(("all attempts".to_string(), h));
        }
    }
    out
}

/// Bucket edges in µs, 1-2-5 per decade: from the largest edge at or below
/// `lo` to the first edge above `hi`.
fn edges(lo: u64, hi: u64) -> Vec<u64> {
    let mut all = Vec::new();
    let mut decade = 1u64;
    while all.last().map_or(true, |&v| v <= hi) {
        all.extend([decade, decade * 2, decade * 5]);
        decade = decade.saturating_mul(10);
    }
    let first = all.iter().rposition(|&v| v <= lo).unwrap_or(0);
    let last = all.iter().position(|&v| v > hi).unwrap_or(all.len() - 1);
    all[first..=last].to_vec()
}

/// Charts for every (label, histograms per outcome), on one scale.
pub fn render(groups: &[Group]) -> String {
    let all = groups
        .iter()
        .flat_map(|(_, hs)| hs.iter())
        .filter(|(_, h)| !h.is_empty());
    let (lo, hi) = all.fold((u64::MAX, 0u64), |(lo, hi), (_, h)| {
        (lo.min(h.min()), hi.max(h.max()))
    });
    if hi == 0 {
        return "Latency histogram: no attempts recorded.\n".to_string();
    }
    let edges = edges(lo.max(1), hi);
    let counts = |h: &Histogram<u64>| -> Vec<u64> {
        edges
            .windows(2)
            .map(|w| h.count_between(w[0], w[1] - 1))
            .collect()
    };
    let peak = groups
        .iter()
        .flat_map(|(_, hs)| hs.iter())
        .flat_map(|(_, h)| counts(h))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nLatency histograms (log-scaled buckets; one scale: a full bar is {peak} attempts)"
    );
    for (label, hs) in groups {
        for (outcome, h) in hs {
            let _ = writeln!(
                out,
                "\n{label} · {outcome} ({})",
                crate::verdict::counted(h.len(), "attempt", "attempts")
            );
            for (w, c) in edges.windows(2).zip(counts(h)) {
                let len = if c == 0 {
                    0
                } else {
                    ((c as f64 / peak as f64) * BAR as f64).ceil() as usize
                };
                let _ = writeln!(
                    out,
                    "  {:>9} – {:<9} │{:<BAR$} {c}",
                    fmt_us(w[0]),
                    fmt_us(w[1]),
                    "█".repeat(len)
                );
            }
        }
    }
    out
}

/// `--histogram` for finished runs: one group per run.
pub fn render_runs(results: &[RunResult]) -> String {
    let groups: Vec<Group> = results
        .iter()
        .map(|r| {
            let label = if results.iter().filter(|o| o.name() == r.name()).count() > 1 {
                format!("{} #{}", r.name(), r.repetition)
            } else {
                r.name().to_string()
            };
            (label, of_run(r))
        })
        .collect();
    render(&groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_on_one_scale() {
        let e = edges(150, 23_000);
        assert_eq!(e.first(), Some(&100));
        assert!(*e.last().unwrap() > 23_000);
        let mut a = crate::engine::tally::new_histogram();
        let mut b = crate::engine::tally::new_histogram();
        for v in [150, 160, 170, 900] {
            a.record(v).unwrap();
        }
        b.record(23_000).unwrap();
        let text = render(&[
            ("x".into(), vec![("succeeded".into(), a)]),
            ("y".into(), vec![("sold_out".into(), b)]),
        ]);
        assert!(text.contains("x · succeeded (4 attempts)"), "{text}");
        assert!(text.contains("y · sold_out (1 attempt)"), "{text}");
        // The fullest bucket (3 attempts) gets the full bar; 1 attempt a third.
        assert!(text.contains(&format!("│{} 3", "█".repeat(BAR))), "{text}");
        assert!(
            text.contains(&format!("│{}{} 1", "█".repeat(14), " ".repeat(BAR - 14))),
            "{text}"
        );
    }
}
