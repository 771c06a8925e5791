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
pub mod group;
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
    /// `--wide`: every column of a table, however wide.
    pub wide: bool,
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

/// Several races in one document (`compare`, `--repeat`): every run, the
/// worst verdict over all of them (null when one was not audited, or no run
/// finished), and one summary per strategy (or target) in the order they
/// first ran.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Runs<'a> {
    pub runs: &'a [RunResult],
    pub verdict: Option<crate::result::Verdict>,
    pub summary: Vec<compare::StrategySummary>,
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
            serde_json::to_string_pretty(&Runs {
                runs: results,
                verdict: crate::verdict::overall(results).verdict,
                summary: compare::summarize(results),
            })
        };
        return format!("{}\n", json.expect("results serialize"));
    }
    let mut out = String::new();
    if grouped {
        out.push_str(&compare::render_within(
            results,
            color,
            columns(output.wide),
        ));
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

/// How wide human output may be: `COLUMNS` when set, else the terminal's
/// width, else (no terminal: a file, a CI log) 100 characters; None with
/// `--wide`.
pub fn columns(wide: bool) -> Option<usize> {
    if wide {
        return None;
    }
    // A width too small to hold anything (a pseudo-terminal of no size
    // says 0) is no width at all.
    let usable = |c: &usize| *c >= MIN_COLUMNS;
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(usable);
    let terminal = || {
        comfy_table::Table::new()
            .width()
            .map(usize::from)
            .filter(usable)
    };
    Some(from_env.or_else(terminal).unwrap_or(DEFAULT_COLUMNS))
}

/// The width of human output without a terminal.
pub const DEFAULT_COLUMNS: usize = 100;

/// Below this, a reported width is taken for none.
const MIN_COLUMNS: usize = 20;

/// Wrap each line of `text` longer than `columns` at spaces; the lines a
/// long one breaks into are indented by two spaces. A word longer than
/// the width stays whole.
pub fn wrap(text: &str, columns: Option<usize>) -> String {
    wrap_indent(text, columns, 2)
}

/// `wrap`, with the lines a long one breaks into indented by `indent`.
pub fn wrap_indent(text: &str, columns: Option<usize>, indent: usize) -> String {
    let Some(width) = columns else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        // Leading spaces (an indented line) stay; words wrap after them.
        let rest = body.trim_start_matches(' ');
        let mut current = body[..body.len() - rest.len()].to_string();
        let mut lead = current.len();
        for word in rest.split(' ') {
            let len = current.chars().count();
            if len > lead && len + 1 + word.chars().count() > width {
                out.push_str(current.trim_end());
                out.push('\n');
                current = format!("{:indent$}{word}", "");
                lead = indent;
            } else {
                if len > lead {
                    current.push(' ');
                }
                current.push_str(word);
            }
        }
        out.push_str(&current);
        out.push_str(newline);
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

/// A rate with at most three significant digits, thousands separated:
/// 12,429.556 reads "12,400", 3.2149 reads "3.21", 0.0412 reads "0.0412".
pub fn fmt_rate(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        return "0".to_string();
    }
    // Digits before the point once rounded to three significant ones.
    let magnitude = |r: f64| r.log10().floor() as i32 + 1;
    let round_to = |r: f64, m: i32| {
        let scale = 10f64.powi(3 - m);
        (r * scale).round() / scale
    };
    let mut m = magnitude(rate);
    let mut rounded = round_to(rate, m);
    if magnitude(rounded) > m {
        m += 1;
        rounded = round_to(rate, m);
    }
    if m >= 3 {
        return fmt_count(rounded as u64);
    }
    let decimals = (3 - m) as usize;
    let text = format!("{rounded:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
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

    #[test]
    fn long_lines_wrap_at_spaces_with_an_indent() {
        let text = "not safe: naive, repeatable-read, serializable\nshort\n";
        assert_eq!(
            wrap(text, Some(20)),
            "not safe: naive,\n  repeatable-read,\n  serializable\nshort\n"
        );
        assert_eq!(wrap(text, None), text);
        assert_eq!(
            wrap_indent("  name  a b c d\n", Some(11), 8),
            "  name  a b\n        c d\n"
        );
        for line in wrap(text, Some(20)).lines() {
            assert!(line.chars().count() <= 20, "{line}");
        }
    }

    #[test]
    fn rates_keep_three_significant_digits() {
        for (rate, shown) in [
            (12_429.556, "12,400"),
            (999.6, "1,000"),
            (950.3, "950"),
            (99.96, "100"),
            (42.74, "42.7"),
            (3.2149, "3.21"),
            (1.0, "1"),
            (0.0412, "0.0412"),
            (1_234_567.0, "1,230,000"),
            (0.0, "0"),
        ] {
            assert_eq!(fmt_rate(rate), shown, "{rate}");
        }
    }
}
