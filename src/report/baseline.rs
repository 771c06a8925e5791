//! Latency and throughput regression checks against saved results
//! (`--baseline FILE`): per strategy, p50 and p99 may not grow by more than
//! `--max-regression` percent, and the baseline's attempts/s may not exceed
//! the current one by more than that percent.
//! Baseline and current runs are folded per strategy exactly like the
//! compare table (merged histograms), so repetitions compare like with like.

use std::path::PathBuf;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use super::compare::{summarize, StrategySummary};
use super::{fmt_count, fmt_us};
use crate::error::bad_input;
use crate::result::RunResult;

/// Load saved results: single run objects or `{"runs": [...]}` documents.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<RunResult>> {
    let mut runs = Vec::new();
    for path in paths {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("--baseline {shown}: cannot read it: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            bad_input(format!(
                "--baseline {shown}:{}:{}: not JSON: {e}",
                e.line(),
                e.column()
            ))
        })?;
        let items = match value.get("runs") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => vec![value],
        };
        for item in items {
            let run: RunResult = serde_json::from_value(item).map_err(|e| {
                bad_input(format!(
                    "--baseline {shown}: not a racelab result ({e}); pass a file from results/ or `--json` output"
                ))
            })?;
            runs.push(run);
        }
    }
    if runs.is_empty() {
        return Err(bad_input("--baseline: the files hold no runs"));
    }
    Ok(runs)
}

/// One strategy measured against its baseline.
#[derive(Debug, Clone)]
pub struct Delta {
    pub name: String,
    /// None when the baseline has no run of this strategy.
    pub base: Option<StrategySummary>,
    pub now: StrategySummary,
    /// What regressed beyond the limit, in words.
    pub regressions: Vec<String>,
}

/// Percent change from `base` to `now` (positive = larger now).
pub fn change_pct(base: f64, now: f64) -> f64 {
    if base == 0.0 {
        if now == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (now - base) / base * 100.0
    }
}

pub fn compare(baseline: &[RunResult], current: &[RunResult], max_pct: f64) -> Vec<Delta> {
    let base = summarize(baseline);
    summarize(current)
        .into_iter()
        .map(|now| {
            let base = base.iter().find(|b| b.name == now.name).cloned();
            let mut regressions = Vec::new();
            if let Some(b) = &base {
                for (what, before, after) in [
                    ("p50", b.latency.p50, now.latency.p50),
                    ("p99", b.latency.p99, now.latency.p99),
                ] {
                    let pct = change_pct(before as f64, after as f64);
                    if pct > max_pct {
                        regressions.push(format!(
                            "{what} {} -> {} (+{pct:.0}%)",
                            fmt_us(before),
                            fmt_us(after)
                        ));
                    }
                }
                // Symmetric with latency: how much faster the baseline was
                // than now (a fall to half is +100%), so any limit can trip.
                let pct = change_pct(now.attempts_per_sec(), b.attempts_per_sec());
                if pct > max_pct {
                    regressions.push(format!(
                        "attempts/s {} -> {} (baseline {pct:.0}% faster)",
                        fmt_count(b.attempts_per_sec().round() as u64),
                        fmt_count(now.attempts_per_sec().round() as u64)
                    ));
                }
            }
            Delta {
                name: now.name.clone(),
                base,
                now,
                regressions,
            }
        })
        .collect()
}

/// Print the deltas, if any: on stdout beside the table, on stderr when
/// stdout carries the JSON.
pub fn print(deltas: &[Delta], max_pct: f64, output: &super::Output) {
    if deltas.is_empty() {
        return;
    }
    let table = render(deltas, max_pct, super::stdout_color());
    if output.json {
        eprint!("{table}");
    } else {
        super::emit(&table);
    }
}

/// The deltas as a table.
pub fn render(deltas: &[Delta], max_pct: f64, color: bool) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "strategy",
        "p50 (base -> now)",
        "p99 (base -> now)",
        "attempts/s (base -> now)",
        "regression",
    ]);
    for d in deltas {
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        let Some(b) = &d.base else {
            t.add_row(vec![
                Cell::new(&d.name),
                right("-".into()),
                right("-".into()),
                right("-".into()),
                Cell::new("no baseline"),
            ]);
            continue;
        };
        let lat = |before: u64, after: u64| {
            format!(
                "{} -> {} ({:+.0}%)",
                fmt_us(before),
                fmt_us(after),
                change_pct(before as f64, after as f64)
            )
        };
        let tput = format!(
            "{} -> {} ({:+.0}%)",
            fmt_count(b.attempts_per_sec().round() as u64),
            fmt_count(d.now.attempts_per_sec().round() as u64),
            change_pct(b.attempts_per_sec(), d.now.attempts_per_sec())
        );
        let mut verdict = Cell::new(if d.regressions.is_empty() {
            "ok"
        } else {
            "REGRESSED"
        });
        if color {
            verdict = verdict.fg(if d.regressions.is_empty() {
                Color::Green
            } else {
                Color::Red
            });
        }
        t.add_row(vec![
            Cell::new(&d.name),
            right(lat(b.latency.p50, d.now.latency.p50)),
            right(lat(b.latency.p99, d.now.latency.p99)),
            right(tput),
            verdict,
        ]);
    }
    format!("against the baseline (limit {max_pct}%):\n{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_changes() {
        assert_eq!(change_pct(100.0, 125.0), 25.0);
        assert_eq!(change_pct(100.0, 50.0), -50.0);
        assert_eq!(change_pct(0.0, 0.0), 0.0);
        assert!(change_pct(0.0, 1.0).is_infinite());
    }
}
