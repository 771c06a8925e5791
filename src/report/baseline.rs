//! Latency and throughput regression checks against saved results
//! (`--baseline FILE`): per strategy, p50 and p99 may not grow by more than
//! `--max-regression` percent, and the baseline's attempts/s may not exceed
//! the current one by more than that percent.
//! Baseline and current runs are folded per strategy exactly like the
//! compare table (merged histograms), so repetitions compare like with like;
//! and only runs of the same target and workload (`group::Key`) are
//! compared at all: a baseline of another scenario or other parameters is
//! refused before anything runs. A strategy of the run that the baseline
//! lacks fails the gate (a misspelt name must not pass), unless
//! `--allow-missing`.

use std::path::PathBuf;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};

use super::compare::{summarize, StrategySummary};
use super::group::Key;
use super::{fmt_rate, fmt_us};
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

/// The baseline's runs of the workload `key` is about to run; bad input
/// when it has none, naming where the workloads differ.
pub fn comparable(
    paths: &[PathBuf],
    baseline: Vec<RunResult>,
    key: &Key,
) -> anyhow::Result<Vec<RunResult>> {
    let first = baseline.first().map(Key::of);
    let same: Vec<RunResult> = baseline
        .into_iter()
        .filter(|r| Key::of(r) == *key)
        .collect();
    if !same.is_empty() {
        return Ok(same);
    }
    let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let differ = first.map(|f| key.differences(&f)).unwrap_or_default();
    Err(bad_input(format!(
        "--baseline {}: its runs are of another workload ({}); a baseline compares like \
         with like: make it with the same scenario and flags",
        files.join(", "),
        differ.join(", ")
    )))
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
                        fmt_rate(b.attempts_per_sec()),
                        fmt_rate(now.attempts_per_sec())
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

/// Why the gate fails against the baseline, if it does: what regressed
/// beyond `max_pct`, and (unless `allow_missing`) the strategies the
/// baseline has no run of.
pub fn failure(deltas: &[Delta], max_pct: f64, allow_missing: bool) -> Option<String> {
    let mut why = Vec::new();
    let regressed: Vec<String> = deltas
        .iter()
        .filter(|d| !d.regressions.is_empty())
        .map(|d| format!("{}: {}", d.name, d.regressions.join(", ")))
        .collect();
    if !regressed.is_empty() {
        why.push(format!(
            "slower than the baseline by more than {max_pct}%: {}",
            regressed.join("; ")
        ));
    }
    let missing: Vec<&str> = deltas
        .iter()
        .filter(|d| d.base.is_none())
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() && !allow_missing {
        why.push(format!(
            "the baseline has no run of {}: check the name, or pass --allow-missing to \
             accept strategies the baseline lacks",
            missing.join(", ")
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Print the deltas, if any: on stdout beside the table, on stderr when
/// stdout carries the JSON.
pub fn print(deltas: &[Delta], max_pct: f64, output: &super::Output) {
    if deltas.is_empty() {
        return;
    }
    let table = render(
        deltas,
        max_pct,
        super::stdout_color(),
        super::columns(output.wide),
    );
    if output.json {
        eprint!("{table}");
    } else {
        super::emit(&table);
    }
}

/// The deltas as a table, fitted to `columns` characters (None: no limit).
pub fn render(deltas: &[Delta], max_pct: f64, color: bool, columns: Option<usize>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    if let Some(w) = columns {
        t.set_content_arrangement(ContentArrangement::Dynamic);
        t.set_width(u16::try_from(w).unwrap_or(u16::MAX));
    }
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
            fmt_rate(b.attempts_per_sec()),
            fmt_rate(d.now.attempts_per_sec()),
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
