//! Turning finished runs into words: the human table, the side-by-side
//! table, JSON, saved result files, JUnit, HTML, the progress bar and the
//! notes on stderr. Rendering functions return strings so they can be
//! snapshot-tested; what a race shows on the terminal goes through here
//! (`print_runs`, `emit`, `Output::note`, the progress bar). Renderers read
//! results (`result`) and verdicts (`verdict`); they never call back into
//! the commands.

pub mod baseline;
pub mod compare;
pub mod explore;
pub mod histogram;
pub mod html;
pub mod junit;
pub mod markup;
pub mod progress;
pub mod save;
pub mod service;
pub mod swimlane;
pub mod table;
pub mod timeline;

#[cfg(test)]
mod snapshots;

/// The result contract, where renderers (and older callers) find it.
pub use crate::result;
pub use crate::result::{RunResult, Status};

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

/// How finished runs are shown and kept: validated output flags.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub json: bool,
    /// Where result files go; None with `--no-save`.
    pub save_dir: Option<PathBuf>,
    pub quiet: bool,
    pub junit: Option<PathBuf>,
    /// `--trace`: record every statement and print the timeline.
    pub trace: bool,
    /// `--trace FILE`: also write the events as JSON lines.
    pub trace_file: Option<PathBuf>,
    /// `--histogram`: latency bar charts in the terminal.
    pub histogram: bool,
}

impl Output {
    /// A message for stderr (what was saved, written, or noticed),
    /// silenced by `--quiet`.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// Print finished runs on stdout: JSON, or the table (the side-by-side one
/// when `grouped`) with any timelines and `--histogram` charts.
pub fn print_runs(results: &[RunResult], output: &Output, grouped: bool) {
    emit(&render_runs(results, output, grouped, stdout_color()));
}

/// What `print_runs` prints.
pub fn render_runs(results: &[RunResult], output: &Output, grouped: bool, color: bool) -> String {
    if output.json {
        let json = if results.len() == 1 && !grouped {
            serde_json::to_string_pretty(&results[0])
        } else {
            serde_json::to_string_pretty(&serde_json::json!({
                "runs": results,
                "verdict": crate::verdict::overall(results).verdict,
                "summary": compare::summarize(results),
            }))
        };
        return format!("{}\n", json.expect("results serialize"));
    }
    let mut out = String::new();
    if grouped {
        out.push_str(&compare::render(results, color));
    } else {
        for r in results {
            out.push_str(&table::render_run(r, color));
        }
    }
    for t in results.iter().filter_map(|r| r.timeline.as_ref()) {
        out.push_str(&timeline::render(t));
    }
    for s in results.iter().filter_map(|r| r.service.as_ref()) {
        out.push_str(&service::summary(s));
        if let (true, Some(t)) = (output.trace, &s.trace) {
            out.push_str(&service::render(t));
        }
    }
    if output.histogram {
        out.push_str(&histogram::render_runs(results));
    }
    out
}

/// Write text to stdout. A closed pipe (`racelab list | head -1`) is not
/// an error worth a panic: the reader has what it wanted.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Whether stdout wants colour.
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Microseconds in a unit a person reads at a glance.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=9_999 => format!("{:.2} ms", us as f64 / 1e3),
        10_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// A count with thousands separators.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_well() {
        assert_eq!(fmt_us(250), "250 µs");
        assert_eq!(fmt_us(5_210), "5.21 ms");
        assert_eq!(fmt_us(52_100), "52.1 ms");
        assert_eq!(fmt_us(2_500_000), "2.50 s");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(999), "999");
    }
}
