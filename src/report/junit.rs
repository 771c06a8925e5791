//! JUnit XML for CI systems: one test case per strategy (per repetition
//! when a strategy ran more than once). A case fails when its run broke the
//! gate (the `--expect` given, or, without one, `safe`: raced, clean and
//! sound); the failure carries the audit numbers, and each case's
//! properties carry its verdict and the evidence of contention.

use std::fmt::Write;

use super::markup::escape as esc;
use crate::result::RunResult;
use crate::verdict::{self, Expect, Gate};

pub fn render(results: &[RunResult], gate: &Gate) -> String {
    let expect = gate.expect;
    let failed = |r: &RunResult| !verdict::meets(gate, r);
    let failures = results.iter().filter(|r| failed(r)).count();
    let total_time: f64 = results.iter().map(|r| r.throughput.wall_seconds).sum();
    let suite = results.first().map_or("racelab".to_string(), |r| {
        format!("racelab.{}", r.scenario.name)
    });
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"racelab\" tests=\"{}\" failures=\"{failures}\" time=\"{total_time:.3}\">",
        results.len()
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total_time:.3}\">",
        esc(&suite),
        results.len()
    );
    for r in results {
        let repeated = results.iter().filter(|o| o.name() == r.name()).count() > 1;
        let name = if repeated {
            format!("{} #{}", r.name(), r.repetition)
        } else {
            r.name().to_string()
        };
        let _ = writeln!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            esc(&suite),
            esc(&name),
            r.throughput.wall_seconds
        );
        x.push_str(&properties(r));
        if failed(r) {
            let expected = match expect {
                Some(Expect::Oversold) => "expected oversold",
                _ => "expected safe",
            };
            let a = r.audit.as_ref();
            let body = format!(
                "initial_stock={} units_sold={} final_stock={} oversold_units={} stock_drift={} \
                 negative_stock={} successes_without_order={} orders_without_success={} \
                 succeeded={} sold_out={} rejected={} gave_up={} errors={} unknown={}",
                a.map_or("-".into(), |a| a.initial_stock.to_string()),
                a.map_or("-".into(), |a| a.units_sold.to_string()),
                a.map_or("-".into(), |a| a.final_stock.to_string()),
                a.map_or("-".into(), |a| a.oversold_units.to_string()),
                a.map_or("-".into(), |a| a.stock_drift.to_string()),
                a.map_or("-".into(), |a| a.negative_stock.to_string()),
                a.map_or("-".into(), |a| a.successes_without_order.to_string()),
                a.map_or("-".into(), |a| a.orders_without_success.to_string()),
                r.outcomes.succeeded,
                r.outcomes.sold_out,
                r.outcomes.rejected,
                r.outcomes.gave_up,
                r.outcomes.errors,
                r.outcomes.unknown,
            );
            // A safe verdict failed the gate by not being clean.
            let why = if verdict::is_safe(r) && expect != Some(Expect::Oversold) {
                format!(
                    "{} attempts ended in error or unknown (--max-errors allows {}); {}",
                    verdict::unclean_attempts(r),
                    gate.max_errors,
                    verdict::sentence(r)
                )
            } else {
                verdict::sentence(r)
            };
            let _ = writeln!(
                x,
                "      <failure message=\"{}: {}\" type=\"{}\">{}</failure>",
                expected,
                esc(&why),
                verdict_name(r),
                esc(&body)
            );
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// The verdict as the JSON spells it, `not_audited` without one.
fn verdict_name(r: &RunResult) -> String {
    r.verdict.map_or("not_audited".to_string(), |v| {
        serde_json::to_value(v)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    })
}

/// A case's properties: its verdict and the evidence of contention.
fn properties(r: &RunResult) -> String {
    let c = &r.contention;
    let props = [
        ("verdict", verdict_name(r)),
        (
            "contention.release_spread_us",
            c.release_spread_us.to_string(),
        ),
        ("contention.peak_in_flight", c.peak_in_flight.to_string()),
        (
            "contention.overlapped_attempts",
            c.overlapped_attempts.to_string(),
        ),
        ("outcomes.attempts", r.outcomes.attempts.to_string()),
        ("outcomes.errors", r.outcomes.errors.to_string()),
        ("outcomes.unknown", r.outcomes.unknown.to_string()),
    ];
    let mut x = String::from("      <properties>\n");
    for (name, value) in props {
        let _ = writeln!(
            x,
            "        <property name=\"{name}\" value=\"{}\"/>",
            esc(&value)
        );
    }
    x.push_str("      </properties>\n");
    x
}
