//! Turning finished runs into words: the result contract (`result`), the
//! human table, JSON, saved result files, JUnit, and the progress bar.
//! Rendering functions return strings so they can be tested; only `main`
//! and the progress bar write to the terminal.

pub mod baseline;
pub mod compare;
pub mod explore;
pub mod histogram;
pub mod html;
pub mod junit;
pub mod progress;
pub mod result;
pub mod save;
pub mod swimlane;
pub mod table;
pub mod timeline;

pub use result::{RunResult, Status};

use crate::db::Verdict;

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

/// The verdict in words, e.g. "OVERSOLD: 37 units sold of 1 in stock".
pub fn verdict_sentence(r: &RunResult) -> String {
    let Some(a) = &r.audit else {
        return match r.status_reason.as_deref() {
            Some(why) => format!("NOT AUDITED: {why}"),
            None => "NOT AUDITED".to_string(),
        };
    };
    let units = |n: i64| {
        if n == 1 {
            "1 unit".to_string()
        } else {
            format!("{n} units")
        }
    };
    let mut s = match r.verdict {
        Some(Verdict::Oversold) => format!(
            "OVERSOLD: {} sold of {} in stock ({} oversold)",
            units(a.units_sold),
            a.initial_stock,
            units(a.oversold_units)
        ),
        Some(Verdict::Inconsistent) => format!(
            "INCONSISTENT: {} sold of {} in stock, but the books do not balance",
            units(a.units_sold),
            a.initial_stock
        ),
        _ => format!(
            "SAFE: {} sold of {} in stock, no drift",
            units(a.units_sold),
            a.initial_stock
        ),
    };
    let mut notes = Vec::new();
    if a.stock_drift != 0 {
        notes.push(format!(
            "stock drifted by {} (final stock {} but {} - {} = {}: lost updates)",
            a.stock_drift,
            a.final_stock,
            a.initial_stock,
            a.units_sold,
            a.initial_stock - a.units_sold
        ));
    }
    if a.negative_stock {
        notes.push("final stock is negative".to_string());
    }
    if a.successes_without_order > 0 {
        notes.push(format!(
            "{} successes left no order",
            a.successes_without_order
        ));
    }
    if a.orders_without_success > 0 {
        notes.push(format!(
            "{} orders exist for attempts not reported as successes",
            a.orders_without_success
        ));
    }
    let unsure = a.unknown_committed + a.unknown_not_committed;
    if unsure > 0 {
        // The bounds the buyers could know, then what the database says.
        let q = r.scenario.quantity;
        notes.push(format!(
            "{unsure} attempts of unknown fate (buyers' view: {} to {} units sold): \
             {} committed, {} did not",
            r.believed_units_sold,
            r.believed_units_sold
                .saturating_add(unsure.saturating_mul(q)),
            a.unknown_committed,
            a.unknown_not_committed
        ));
    }
    if !notes.is_empty() {
        s.push_str("; ");
        s.push_str(&notes.join("; "));
    }
    if r.status != Status::Completed {
        s.push_str(&format!(
            " [{}{}]",
            match r.status {
                Status::Interrupted => "interrupted",
                _ => "aborted",
            },
            r.status_reason
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ));
    }
    s
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
