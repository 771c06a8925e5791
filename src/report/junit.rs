//! JUnit XML for CI systems: one test case per strategy (per repetition
//! when a strategy ran more than once). A case fails when its run broke the
//! `--expect` given, or, without one, when it was not safe; the failure
//! carries the audit numbers.

use std::fmt::Write;

use crate::result::RunResult;
use crate::verdict::{self, Expect};

pub fn render(results: &[RunResult], expect: Option<Expect>) -> String {
    let failed = |r: &RunResult| !verdict::meets(expect, r);
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
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            esc(&suite),
            esc(&name),
            r.throughput.wall_seconds
        );
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
            let _ =
                write!(
                x,
                ">\n      <failure message=\"{}: {}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                expected,
                esc(&verdict::sentence(r)),
                r.verdict.map_or("not_audited".to_string(), |v| format!("{v:?}").to_lowercase()),
                esc(&body)
            );
        } else {
            x.push_str("/>\n");
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}
