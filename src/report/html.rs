//! `racelab report FILES... -o report.html`: one self-contained HTML file
//! (no scripts, no fonts, nothing fetched) with the comparison table and SVG
//! charts drawn with plotters' SVG backend: oversell per strategy, latency
//! CDFs per strategy (from the merged `hdr` histograms), and stock over time
//! for runs sampled with `--watch`; and for `racelab explore` results, the
//! counterexample as a swim-lane diagram (`swimlane`). plotters is built without its font
//! features: the SVG backend writes text as `<text>` elements the browser
//! renders with its own fonts, so no font file is needed anywhere.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::compare::summarize;
use super::markup::escape as esc;
use super::{fmt_count, fmt_us, RunResult};
use crate::error::bad_input;
use crate::result::explore::ExploreResult;

/// Read result files: a single run, `{"runs": [...]}` from `--json`, or
/// the result of `racelab explore`.
pub fn load(files: &[impl AsRef<Path>]) -> anyhow::Result<(Vec<RunResult>, Vec<ExploreResult>)> {
    let mut out = Vec::new();
    let mut explores = Vec::new();
    for f in files {
        let f = f.as_ref();
        let text = std::fs::read_to_string(f).map_err(|e| {
            bad_input(format!(
                "cannot read {}: {e}; pass result files written by `racelab run` (results/*.json)",
                f.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            bad_input(format!(
                "{} is not JSON ({e}): pass racelab result files",
                f.display()
            ))
        })?;
        if value.get("kind").and_then(|k| k.as_str()) == Some("explore") {
            explores.push(serde_json::from_value(value).map_err(|e| {
                bad_input(format!(
                    "{} is not a racelab explore result ({e}); pass files written by `racelab explore`",
                    f.display()
                ))
            })?);
            continue;
        }
        let runs = match value.get("runs") {
            Some(serde_json::Value::Array(runs)) => runs.clone(),
            _ => vec![value],
        };
        for r in runs {
            out.push(serde_json::from_value(r).map_err(|e| {
                bad_input(format!(
                    "{} is not a racelab result ({e}); pass files written by `racelab run` or `--json`",
                    f.display()
                ))
            })?);
        }
    }
    Ok((out, explores))
}

/// The whole report: the runs, then each explore result.
pub fn render(results: &[RunResult], explores: &[ExploreResult]) -> anyhow::Result<String> {
    let mut h = String::new();
    if !results.is_empty() {
        render_runs(&mut h, results)?;
    } else {
        h.push_str(HEAD);
    }
    for e in explores {
        h.push_str(&super::swimlane::section(e));
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

const HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>racelab report</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}\ntable{border-collapse:collapse;margin:1em 0}\nth,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\nth:first-child,td:first-child{text-align:left}\n.oversold{color:#b00;font-weight:bold}.safe{color:#070}.unsure{color:#a60;font-weight:bold}\nfigure{margin:1.5em 0}figcaption{color:#555}\npre{background:#f6f6f6;padding:8px;overflow-x:auto}\n</style></head><body>\n<h1>racelab report</h1>\n";

/// The runs' part: the comparison table and the charts.
fn render_runs(h: &mut String, results: &[RunResult]) -> anyhow::Result<()> {
    h.push_str(HEAD);
    let first = &results[0];
    let _ = writeln!(
        h,
        "<p>{} runs of {} strategies · scenario <b>{}</b> · {} buyers · stock {} · PostgreSQL {}</p>",
        results.len(),
        crate::verdict::names(results).len(),
        esc(&first.scenario.name),
        first.scenario.buyers,
        first.scenario.stock,
        esc(first
            .database
            .as_ref()
            .map_or("-", |d| d.server_version.as_str()))
    );
    h.push_str("<h2>Comparison</h2>\n<table><tr><th>strategy</th><th>runs</th><th>verdict</th><th>max oversold</th><th>drift</th><th>units sold</th><th>retries</th><th>p50</th><th>p99</th><th>attempts/s</th></tr>\n");
    let summaries = summarize(results);
    for s in &summaries {
        // Green only for safe: inconsistent, inconclusive and unaudited
        // runs are no pass.
        let class = match s.overall.verdict {
            Some(crate::verdict::Verdict::Safe) => "safe",
            Some(crate::verdict::Verdict::Oversold) => "oversold",
            _ => "unsure",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            s.overall.runs,
            esc(&s.overall.word()),
            s.max_oversold,
            s.total_drift,
            s.units_sold,
            fmt_count(s.retries),
            esc(&fmt_us(s.latency.p50)),
            esc(&fmt_us(s.latency.p99)),
            fmt_count(s.attempts_per_sec().round() as u64)
        );
    }
    h.push_str("</table>\n");

    h.push_str("<h2>Oversold units per strategy</h2>\n<figure>");
    h.push_str(&oversell_chart(
        &summaries
            .iter()
            .map(|s| (s.name.clone(), s.max_oversold))
            .collect::<Vec<_>>(),
    )?);
    h.push_str("<figcaption>The most units any run of the strategy sold beyond the stock.</figcaption></figure>\n");

    h.push_str("<h2>Latency per strategy (CDF)</h2>\n<figure>");
    h.push_str(&cdf_chart(results)?);
    h.push_str("<figcaption>Share of attempts finished within a time (log scale), all runs of a strategy merged.</figcaption></figure>\n");

    let served: Vec<&RunResult> = results.iter().filter(|r| r.service.is_some()).collect();
    if !served.is_empty() {
        h.push_str("<h2>The service's SQL</h2>\n");
        for r in served {
            let name = format!("{} #{}", r.name(), r.repetition);
            let info = r.service.as_ref().expect("filtered");
            super::service::html(h, &name, info, esc);
        }
    }

    let watched: Vec<&RunResult> = results.iter().filter(|r| r.watch.is_some()).collect();
    if !watched.is_empty() {
        h.push_str("<h2>Stock over time</h2>\n");
        for r in watched {
            let w = r.watch.as_ref().expect("filtered");
            let _ = write!(h, "<figure>{}", stock_chart(r)?);
            let broke = match w.first_oversold_ms {
                Some(t) => format!(
                    "Units sold first exceeded the initial stock ({}) at {t:.1} ms.",
                    w.initial_stock
                ),
                None => format!(
                    "Units sold never exceeded the initial stock ({}).",
                    w.initial_stock
                ),
            };
            let _ = writeln!(
                h,
                "<figcaption>{} #{}: sampled every {} ms. {broke}</figcaption></figure>",
                esc(r.name()),
                r.repetition,
                w.interval_ms
            );
        }
    }
    Ok(())
}

/// Write the report for `files` to `out`; returns what it holds, in words.
pub fn write(files: &[impl AsRef<Path>], out: &Path) -> anyhow::Result<String> {
    let (results, explores) = load(files)?;
    if results.is_empty() && explores.is_empty() {
        return Err(bad_input("the result files hold no runs"));
    }
    let html = render(&results, &explores)?;
    super::save::write_atomic(out, html.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    let mut held = Vec::new();
    if !results.is_empty() {
        held.push(format!("{} runs", results.len()));
    }
    match explores.len() {
        0 => {}
        1 => held.push("1 explore result".to_string()),
        n => held.push(format!("{n} explore results")),
    }
    Ok(held.join(", "))
}

fn chart_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// One SVG chart: a white canvas of `size` that `draw` paints on.
fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> anyhow::Result<()>) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        draw(&root)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

/// The margins every chart shares.
fn builder<'a, 'b>(root: &'a Area<'b>) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.margin(15).x_label_area_size(40).y_label_area_size(50);
    b
}

fn oversell_chart(bars: &[(String, i64)]) -> anyhow::Result<String> {
    svg((900, 360), |root| {
        let top = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) + 1;
        let n = bars.len().max(1) as i32;
        let mut chart = builder(root)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0i64..top)
            .map_err(chart_err)?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("oversold units")
            .draw()
            .map_err(chart_err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let i = i as i32;
                let color = if *v > 0 { RED.mix(0.8) } else { GREEN.mix(0.8) };
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    color.filled(),
                );
                r.set_margin(0, 0, 12, 12);
                r
            }))
            .map_err(chart_err)?;
        Ok(())
    })
}

fn cdf_chart(results: &[RunResult]) -> anyhow::Result<String> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for name in crate::verdict::names(results) {
        let mut merged = crate::engine::tally::new_histogram();
        for r in results.iter().filter(|r| r.name() == name) {
            if let Ok(h) = r.latency_us.histogram() {
                merged.add(&h).map_err(chart_err)?;
            }
        }
        if merged.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = (0..=200)
            .map(|i| {
                let q = f64::from(i) / 200.0;
                (merged.value_at_quantile(q).max(1) as f64, q)
            })
            .collect();
        series.push((name, pts));
    }
    let lo = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(f64::MAX, f64::min)
        .min(1e9);
    let hi = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let (lo, hi) = ((lo * 0.8).max(1.0), hi * 1.25);
    svg((900, 420), |root| {
        let mut chart = builder(root)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("latency")
            .y_desc("share of attempts")
            .x_label_formatter(&|v| fmt_us(*v as u64))
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .draw()
            .map_err(chart_err)?;
        let lines = series
            .iter()
            .enumerate()
            .map(|(i, (name, pts))| (name.clone(), Palette99::pick(i).to_rgba(), pts.clone()))
            .collect();
        draw_lines(&mut chart, lines, SeriesLabelPosition::LowerRight)
    })
}

fn stock_chart(r: &RunResult) -> anyhow::Result<String> {
    let w = r.watch.as_ref().expect("caller checks");
    let t_max = w.samples.iter().map(|s| s.t_ms).fold(1.0, f64::max);
    let v_min = w.samples.iter().map(|s| s.stock).min().unwrap_or(0).min(0);
    let v_max = w
        .samples
        .iter()
        .map(|s| s.stock.max(s.units_sold))
        .max()
        .unwrap_or(0)
        .max(w.initial_stock)
        + 1;
    svg((900, 360), |root| {
        let mut chart = builder(root)
            .build_cartesian_2d(0f64..t_max, v_min..v_max)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("ms since the buyers were released")
            .y_desc("units")
            .draw()
            .map_err(chart_err)?;
        let lines = vec![
            (
                "stock".to_string(),
                BLUE.to_rgba(),
                w.samples
                    .iter()
                    .map(|s| (s.t_ms, s.stock))
                    .collect::<Vec<_>>(),
            ),
            (
                "units sold".to_string(),
                RED.to_rgba(),
                w.samples.iter().map(|s| (s.t_ms, s.units_sold)).collect(),
            ),
            (
                "initial stock".to_string(),
                BLACK.mix(0.4),
                vec![(0.0, w.initial_stock), (t_max, w.initial_stock)],
            ),
        ];
        draw_lines(&mut chart, lines, SeriesLabelPosition::MiddleRight)
    })
}

/// A labelled line: its name, colour and points.
type Line<X, Y> = (String, RGBAColor, Vec<(X, Y)>);

/// Labelled lines and their legend, the same in every line chart.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    lines: Vec<Line<X::ValueType, Y::ValueType>>,
    at: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    for (label, color, pts) in lines {
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(chart_err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(at)
        .draw()
        .map_err(chart_err)?;
    Ok(())
}
