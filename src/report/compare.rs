//! The side-by-side table of `compare` (and of `--repeat`): one row per
//! strategy, in the order they ran, repetitions folded together: the
//! verdict is the worst of its runs (`verdict::overall`), latency
//! percentiles come from the merged histograms. The same summaries go
//! into the `{"runs": [...]}` JSON (`summary`).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, CellAlignment, Table};
use serde::Serialize;

use super::table::{headline, verdict_color};
use super::{fmt_count, fmt_us};
use crate::result::{RunResult, Summary};
use crate::verdict::{self, Overall, Verdict};

/// One strategy (or target) over all its runs. In JSON: the `summary`
/// rows of `{"runs": [...]}` (docs/result.schema.json).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StrategySummary {
    #[schemars(length(min = 1))]
    pub name: String,
    /// The verdict over the runs, and how many had each verdict.
    #[serde(flatten)]
    pub overall: Overall,
    #[serde(rename = "max_oversold_units")]
    #[schemars(range(min = 0))]
    pub max_oversold: i64,
    #[serde(rename = "oversold_units")]
    #[schemars(range(min = 0))]
    pub total_oversold: i64,
    #[serde(rename = "stock_drift")]
    pub total_drift: i64,
    pub units_sold: i64,
    #[serde(rename = "initial_stock")]
    pub stock: i64,
    pub sold_out: u64,
    pub rejected: u64,
    pub retries: u64,
    pub gave_up: u64,
    pub errors: u64,
    pub unknown: u64,
    pub attempts: u64,
    #[schemars(range(min = 0))]
    pub wall_seconds: f64,
    /// The widest release spread of the runs.
    pub release_spread_us: u64,
    /// The most attempts in flight at once on one product, over the runs.
    pub peak_in_flight: u32,
    /// Attempts that overlapped another, summed over the runs.
    pub overlapped_attempts: u64,
    /// From the runs' merged histograms.
    #[serde(rename = "latency_us")]
    pub latency: Summary,
}

impl StrategySummary {
    pub fn attempts_per_sec(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            self.attempts as f64 / self.wall_seconds
        } else {
            0.0
        }
    }
}

/// Fold results per strategy, in the order the strategies first ran.
pub fn summarize(results: &[RunResult]) -> Vec<StrategySummary> {
    verdict::names(results)
        .into_iter()
        .map(|name| {
            let runs: Vec<&RunResult> = results.iter().filter(|r| r.name() == name).collect();
            let mut s = StrategySummary {
                name,
                overall: verdict::overall(runs.iter().copied()),
                max_oversold: 0,
                total_oversold: 0,
                total_drift: 0,
                units_sold: 0,
                stock: 0,
                sold_out: 0,
                rejected: 0,
                retries: 0,
                gave_up: 0,
                errors: 0,
                unknown: 0,
                attempts: 0,
                wall_seconds: 0.0,
                release_spread_us: 0,
                peak_in_flight: 0,
                overlapped_attempts: 0,
                latency: Summary::default(),
            };
            let mut merged = crate::engine::tally::new_histogram();
            for r in &runs {
                let o = &r.outcomes;
                s.sold_out += o.sold_out;
                s.rejected += o.rejected;
                s.retries += o.retries;
                s.gave_up += o.gave_up;
                s.errors += o.errors;
                s.unknown += o.unknown;
                s.attempts += o.attempts;
                s.wall_seconds += r.throughput.wall_seconds;
                let c = &r.contention;
                s.release_spread_us = s.release_spread_us.max(c.release_spread_us);
                s.peak_in_flight = s.peak_in_flight.max(c.peak_in_flight);
                s.overlapped_attempts += c.overlapped_attempts;
                if let Ok(h) = r.latency_us.histogram() {
                    let _ = merged.add(&h);
                }
                if let Some(a) = &r.audit {
                    s.units_sold += a.units_sold;
                    s.stock += a.initial_stock;
                    s.total_oversold += a.oversold_units;
                    s.max_oversold = s.max_oversold.max(a.oversold_units);
                    s.total_drift += a.stock_drift;
                }
            }
            s.latency = Summary::of(&merged);
            s
        })
        .collect()
}

/// `part` of `whole` as a whole percentage; never "0%" for a part that
/// is not zero.
fn share(part: u64, whole: u64) -> String {
    if part == 0 || whole == 0 {
        return "0%".to_string();
    }
    match part * 100 / whole {
        0 => "<1%".to_string(),
        p => format!("{p}%"),
    }
}

/// The compare table, with the scenario headline above it.
pub fn render(results: &[RunResult], color: bool) -> String {
    let Some(first) = results.first() else {
        return "no runs finished\n".to_string();
    };
    let summaries = summarize(results);
    let repeated = summaries.iter().any(|s| s.overall.runs > 1);
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["strategy", "verdict", "sold / stock", "oversold", "drift"];
    if repeated {
        header.extend(["oversold runs", "max oversold"]);
    }
    header.extend([
        "sold out",
        "rejected",
        "retries",
        "gave up",
        "errors",
        "peak",
        "overlapped",
        "p50",
        "p99",
        "attempts/s",
    ]);
    t.set_header(header);
    for s in &summaries {
        let right = |v: String| Cell::new(v).set_alignment(CellAlignment::Right);
        let mut verdict = Cell::new(s.overall.word());
        if color {
            verdict = verdict.fg(verdict_color(s.overall.verdict));
            if s.overall.verdict != Some(Verdict::Safe) {
                verdict = verdict.add_attribute(Attribute::Bold);
            }
        }
        let mut row = vec![
            Cell::new(&s.name),
            verdict,
            right(format!("{} / {}", s.units_sold, s.stock)),
            right(s.total_oversold.to_string()),
            right(s.total_drift.to_string()),
        ];
        if repeated {
            row.push(right(format!("{}/{}", s.overall.oversold, s.overall.runs)));
            row.push(right(s.max_oversold.to_string()));
        }
        row.extend([
            right(fmt_count(s.sold_out)),
            right(fmt_count(s.rejected)),
            right(fmt_count(s.retries)),
            right(fmt_count(s.gave_up)),
            right(fmt_count(s.errors + s.unknown)),
            right(s.peak_in_flight.to_string()),
            right(share(s.overlapped_attempts, s.attempts)),
            right(fmt_us(s.latency.p50)),
            right(fmt_us(s.latency.p99)),
            right(fmt_count(s.attempts_per_sec().round() as u64)),
        ]);
        t.add_row(row);
    }
    let first_line = headline(first).replacen(&format!("strategy {} on ", first.name()), "", 1);
    let mut out = format!("{first_line}\n{t}\n");
    let bad: Vec<&str> = summaries
        .iter()
        .filter(|s| s.overall.verdict != Some(Verdict::Safe))
        .map(|s| s.name.as_str())
        .collect();
    if bad.is_empty() {
        out.push_str("every strategy was safe\n");
    } else {
        out.push_str(&format!("not safe: {}\n", bad.join(", ")));
    }
    out
}
