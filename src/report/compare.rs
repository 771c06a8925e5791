//! The side-by-side table of `compare` (and of `--repeat`): one row per
//! strategy, in the order they ran, repetitions folded together: the
//! verdict is the worst of its runs (`verdict::overall`), latency
//! percentiles come from the merged histograms. The same summaries go
//! into the `{"runs": [...]}` JSON (`summary`).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{
    Attribute, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, TableComponent,
};
use serde::Serialize;

use super::table::{headline, verdict_color, watch_line, workload};
use super::{fmt_count, fmt_rate, fmt_us, wrap};
use crate::result::{RunResult, Summary};
use crate::verdict::{self, counted, Overall, Verdict};

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

/// The compare table, with the scenario headline above it, every column
/// at its natural width (`--wide`).
pub fn render(results: &[RunResult], color: bool) -> String {
    render_within(results, color, None)
}

/// One column of the compare table: its header, a cell per strategy, and
/// whether the compact layout keeps it.
struct Column {
    header: &'static str,
    cells: Vec<Cell>,
    essential: bool,
}

/// The compare table fitted to `columns` characters (None: no limit).
/// When every column does not fit, the compact layout keeps the essential
/// ones (the verdict, what was sold, latency, throughput, and any column
/// that holds a failure) and names the rest, which `--wide` and `--json`
/// show; prose lines wrap at the same width.
pub fn render_within(results: &[RunResult], color: bool, columns: Option<usize>) -> String {
    let Some(first) = results.first() else {
        return "no runs finished\n".to_string();
    };
    let summaries = summarize(results);
    let all = table_columns(&summaries, color);
    let natural = width(&all, false);
    let (shown, hidden): (Vec<Column>, Vec<Column>) = match columns {
        Some(w) if natural > w => all.into_iter().partition(|c| c.essential),
        _ => (all, Vec::new()),
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(shown.iter().map(|c| c.header).collect::<Vec<_>>());
    for i in 0..summaries.len() {
        t.add_row(shown.iter().map(|c| c.cells[i].clone()).collect::<Vec<_>>());
    }
    if !hidden.is_empty() {
        compact(&mut t);
    }
    if let Some(w) = columns.filter(|&w| !hidden.is_empty() && width(&shown, true) > w) {
        // Still too wide: only the verdict wraps; names and numbers stay whole.
        t.set_content_arrangement(ContentArrangement::Dynamic);
        t.set_width(u16::try_from(w).unwrap_or(u16::MAX));
        for (column, c) in t.column_iter_mut().zip(&shown) {
            if c.header != "verdict" {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
    }
    let mut out = wrap(&workload_lines(first), columns);
    let text = t.to_string();
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !hidden.is_empty() {
        let names: Vec<&str> = hidden.iter().map(|c| c.header).collect();
        out.push_str(&wrap(
            &format!(
                "{} more with --wide or --json: {}\n",
                counted(names.len() as u64, "column", "columns"),
                names.join(", ")
            ),
            columns,
        ));
    }
    for r in results {
        if let Some(w) = &r.watch {
            let line = format!("{} run {}: {}\n", r.name(), r.repetition, watch_line(w));
            out.push_str(&wrap(&line, columns));
        }
    }
    let bad: Vec<&str> = summaries
        .iter()
        .filter(|s| s.overall.verdict != Some(Verdict::Safe))
        .map(|s| s.name.as_str())
        .collect();
    if bad.is_empty() {
        out.push_str("every strategy was safe\n");
    } else {
        out.push_str(&wrap(&format!("not safe: {}\n", bad.join(", ")), columns));
    }
    out
}

/// The compact layout spends no width on borders: columns two spaces
/// apart, a rule under the header.
fn compact(t: &mut Table) {
    t.load_preset(COMPACT);
    for c in [
        TableComponent::LeftBorder,
        TableComponent::RightBorder,
        TableComponent::VerticalLines,
        TableComponent::MiddleHeaderIntersections,
    ] {
        t.remove_style(c);
    }
    let last = t.column_count().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
}

const COMPACT: &str = "     ──            ";

/// The headline of a compare: the workload and the server, without the
/// strategy.
fn workload_lines(first: &RunResult) -> String {
    let head = headline(first);
    let rest = head.split_once('\n').map_or("", |(_, rest)| rest);
    match &first.strategy {
        Some(_) => format!("{}\n{rest}\n", workload(first)),
        None => format!("{head}\n"),
    }
}

/// The width of a table of these columns at their natural widths, boxed
/// or `compact`.
fn width(columns: &[Column], compact: bool) -> usize {
    let content: usize = columns
        .iter()
        .map(|c| {
            c.cells
                .iter()
                .map(|cell| cell.content().lines().map(display_width).max().unwrap_or(0))
                .chain(std::iter::once(display_width(c.header)))
                .max()
                .unwrap_or(0)
        })
        .sum();
    // A space each side of every cell, and unless compact a border between
    // and around them.
    if compact {
        content + 2 * columns.len().saturating_sub(1)
    } else {
        content + 3 * columns.len() + 1
    }
}

fn display_width(s: &str) -> usize {
    s.chars().count()
}

/// Every column of the compare table, in order.
fn table_columns(summaries: &[StrategySummary], color: bool) -> Vec<Column> {
    let repeated = summaries.iter().any(|s| s.overall.runs > 1);
    let right = |v: String| Cell::new(v).set_alignment(CellAlignment::Right);
    let col = |header, essential, cell: &dyn Fn(&StrategySummary) -> Cell| Column {
        header,
        essential,
        cells: summaries.iter().map(cell).collect(),
    };
    let any = |f: &dyn Fn(&StrategySummary) -> u64| summaries.iter().any(|s| f(s) > 0);
    let mut columns = vec![
        col("strategy", true, &|s| Cell::new(&s.name)),
        col("verdict", true, &|s| {
            let mut verdict = Cell::new(s.overall.word());
            if color {
                verdict = verdict.fg(verdict_color(s.overall.verdict));
                if s.overall.verdict != Some(Verdict::Safe) {
                    verdict = verdict.add_attribute(Attribute::Bold);
                }
            }
            verdict
        }),
        col("sold / stock", true, &|s| {
            right(format!("{} / {}", s.units_sold, s.stock))
        }),
        col("oversold", true, &|s| right(s.total_oversold.to_string())),
        col("drift", any(&|s| s.total_drift.unsigned_abs()), &|s| {
            right(s.total_drift.to_string())
        }),
    ];
    if repeated {
        columns.push(col("oversold runs", false, &|s| {
            right(format!("{}/{}", s.overall.oversold, s.overall.runs))
        }));
        columns.push(col("max oversold", false, &|s| {
            right(s.max_oversold.to_string())
        }));
    }
    columns.extend([
        col("sold out", false, &|s| right(fmt_count(s.sold_out))),
        col("rejected", false, &|s| right(fmt_count(s.rejected))),
        col("retries", false, &|s| right(fmt_count(s.retries))),
        col("gave up", any(&|s| s.gave_up), &|s| {
            right(fmt_count(s.gave_up))
        }),
        col("errors", any(&|s| s.errors + s.unknown), &|s| {
            right(fmt_count(s.errors + s.unknown))
        }),
        col("peak", false, &|s| right(s.peak_in_flight.to_string())),
        col("overlapped", false, &|s| {
            right(share(s.overlapped_attempts, s.attempts))
        }),
        col("p50", true, &|s| right(fmt_us(s.latency.p50))),
        col("p99", true, &|s| right(fmt_us(s.latency.p99))),
        col("attempts/s", true, &|s| {
            right(fmt_rate(s.attempts_per_sec()))
        }),
    ]);
    columns
}
