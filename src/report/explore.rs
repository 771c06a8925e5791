//! The result of `racelab explore` in words: the counts, the verdict, and
//! the shortest counterexample as a numbered timeline of steps (the
//! result itself is `result::explore`; its verdict `verdict::explore`).

use std::fmt::Write as _;

use crate::result::explore::{schedule_arg, Counterexample, ExploreResult, ScheduleStep, StepRole};
use crate::verdict::explore::{bound_words, plural};
use crate::verdict::{self, Expect, Verdict};

/// `--junit`: one test case, failing when the expectation (or, without
/// one, safety) did not hold.
pub fn junit(r: &ExploreResult, expect: Option<Expect>) -> String {
    let failure = verdict::explore::failure(Some(expect.unwrap_or(Expect::Safe)), r);
    let name = format!(
        "explore {} ({} buyers, {})",
        r.name(),
        r.buyers,
        match &r.replayed {
            Some(s) => format!("--schedule \"{}\"", schedule_arg(s)),
            None => bound_words(r.preemption_bound),
        }
    );
    let failures = u8::from(failure.is_some());
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"racelab\" tests=\"1\" failures=\"{failures}\" time=\"{:.3}\">",
        r.wall_seconds
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"racelab.explore\" tests=\"1\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
        r.wall_seconds
    );
    let _ = write!(
        x,
        "    <testcase classname=\"racelab.explore\" name=\"{}\" time=\"{:.3}\"",
        super::markup::escape(&name),
        r.wall_seconds
    );
    match failure {
        None => x.push_str("/>\n"),
        Some(why) => {
            let _ = writeln!(
                x,
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                super::markup::escape(&why),
                super::markup::escape(&verdict::explore::sentence(r))
            );
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// The whole human report of an explore run.
pub fn render(r: &ExploreResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "explore {}: {}, stock {}, quantity {}, one attempt each, {}",
        r.name(),
        plural(u64::from(r.buyers), "buyer", "buyers"),
        r.stock,
        r.quantity,
        match &r.replayed {
            Some(s) => format!("replaying --schedule \"{}\"", schedule_arg(s)),
            None => bound_words(r.preemption_bound),
        }
    );
    let covered = if r.complete {
        "complete".to_string()
    } else {
        "NOT complete".to_string()
    };
    let _ = writeln!(
        out,
        "  schedules   {} explored ({covered}), {} unsafe ({} oversold), {} with errors, {} stuck",
        r.schedules_explored,
        r.unsafe_schedules,
        r.oversold_schedules,
        r.error_schedules,
        r.stuck_schedules
    );
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "  steps       {} statements, longest schedule {}, {} waited on a lock, {} deadlocks",
        r.steps, r.longest_schedule, r.waits, r.deadlocks
    );
    let _ = writeln!(
        out,
        "  attempts    {}",
        if outcomes.is_empty() {
            "none finished".to_string()
        } else {
            outcomes.join(", ")
        }
    );
    if !r.anomalies_seen.is_empty() {
        let seen: Vec<String> = r
            .anomalies_seen
            .iter()
            .map(|(k, v)| format!("{k} in {}", plural(*v, "schedule", "schedules")))
            .collect();
        let _ = writeln!(out, "  anomalies   {}", seen.join(", "));
    }
    let _ = writeln!(out, "  wall        {:.2} s", r.wall_seconds);
    out.push('\n');
    let _ = writeln!(out, "{}", verdict::explore::sentence(r));
    if let Some(p) = &r.first_problem {
        let _ = writeln!(
            out,
            "  first problem: {} (--schedule \"{}\")",
            p.what,
            schedule_arg(&p.schedule)
        );
    }
    if let Some(c) = &r.counterexample {
        out.push('\n');
        out.push_str(&render_schedule("Counterexample", c));
        if r.replayed.is_none() {
            let _ = writeln!(
                out,
                "\nReplay it: racelab explore --strategy {} --buyers {} --stock {} --quantity {} --schedule \"{}\"",
                r.strategy.source_arg(),
                r.buyers,
                r.stock,
                r.quantity,
                schedule_arg(&c.schedule)
            );
        }
    }
    out
}

/// One step as a line of the timeline (without its number).
pub fn describe_step(s: &ScheduleStep) -> String {
    let sql = one_line(&s.sql, 90);
    let mut d = match (s.role, s.value) {
        (StepRole::Read, Some(v)) => format!("{sql}   → stock = {v}"),
        (StepRole::Write, Some(v)) => format!("{sql}   → writes stock := {v}"),
        (StepRole::NoWrite, _) => format!("{sql}   → no row written"),
        _ => match (&s.rows, s.values.is_empty()) {
            (_, false) => {
                let vals: Vec<String> =
                    s.values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{sql}   → {}", vals.join(", "))
            }
            (Some(n), true) if *n > 0 && s.error.is_none() => {
                format!("{sql}   → {}", plural(*n, "row", "rows"))
            }
            _ => sql,
        },
    };
    if s.rollback_by_racelab {
        d.push_str("   (sent by racelab)");
    }
    if !s.waited_for.is_empty() {
        let whom: Vec<String> = s.waited_for.iter().map(u32::to_string).collect();
        let _ = write!(
            d,
            "   ⏳ waits for buyer {}{}",
            whom.join(", "),
            match s.completed_after {
                Some(n) => format!(", done after step {n}"),
                None => String::new(),
            }
        );
    }
    if let Some(e) = &s.error {
        let _ = write!(d, "   ✗ {}", one_line(e, 90));
    }
    if s.try_no > 1 {
        let _ = write!(d, "   (try {})", s.try_no);
    }
    d
}

/// The first line of `s`, whitespace collapsed, cut at `n` characters.
pub fn one_line(s: &str, n: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= n {
        flat
    } else {
        let cut: String = flat.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

/// A recorded schedule (a counterexample, or the one replayed): the
/// timeline, the outcomes, the audit, the anomalies.
pub fn render_schedule(title: &str, c: &Counterexample) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{title}: {} steps, {} — schedule \"{}\"",
        c.steps.len(),
        plural(u64::from(c.preemptions), "preemption", "preemptions"),
        schedule_arg(&c.schedule)
    );
    let lanes = c.buyers.len().max(1);
    for (i, s) in c.steps.iter().enumerate() {
        let n = i + 1;
        let indent = "  ".repeat((s.buyer as usize).saturating_sub(1).min(lanes));
        let mut line = format!("{n:>4}  buyer {:<2} {indent}{}", s.buyer, describe_step(s));
        for a in c.anomalies.iter().filter(|a| a.commit_step == Some(n)) {
            let whom: Vec<String> = a.overtook.iter().map(|o| o.buyer.to_string()).collect();
            let verb = if a.name.starts_with("P4") {
                "overwrites"
            } else {
                "has not seen"
            };
            let _ = write!(
                line,
                "   ← {verb} buyer {}'s update ({})",
                whom.join(", "),
                a.name
            );
        }
        for a in &c.anomalies {
            if a.overtook.iter().any(|o| o.write_step == Some(n)) {
                let _ = write!(
                    line,
                    "   ← overwritten by buyer {} at step {}",
                    a.buyer,
                    a.commit_step.map_or("?".to_string(), |s| s.to_string())
                );
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let ends: Vec<String> = c
        .buyers
        .iter()
        .map(|b| {
            let retries = if b.tries > 1 {
                format!(" after {} tries", b.tries)
            } else {
                String::new()
            };
            format!("buyer {} {}{retries}", b.buyer, b.outcome.as_str())
        })
        .collect();
    let _ = writeln!(out, "Outcomes: {}.", ends.join(", "));
    let a = &c.audit;
    let _ = writeln!(
        out,
        "Audit: {} sold of {} in stock, final stock {}, {} oversold, drift {}{}.",
        plural(a.units_sold.max(0) as u64, "unit", "units"),
        a.initial_stock,
        a.final_stock,
        a.oversold_units,
        a.stock_drift,
        if a.negative_stock {
            ", negative stock"
        } else {
            ""
        }
    );
    if c.anomalies.is_empty() && c.verdict != Verdict::Safe {
        out.push_str(
            "Anomalies: the trace analysis named none (the books are wrong without a stale read of the stock).\n",
        );
    } else if c.anomalies.is_empty() {
        out.push_str("Anomalies: none.\n");
    }
    for an in &c.anomalies {
        let others: Vec<String> = an
            .overtook
            .iter()
            .map(|o| {
                format!(
                    "buyer {}'s {} (committed at step {})",
                    o.buyer,
                    o.committed.as_deref().unwrap_or("write"),
                    o.commit_step.map_or("?".to_string(), |s| s.to_string())
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{}: buyer {} read stock = {} at step {} and committed {} at step {}, after {}. Prevented at {}.",
            an.name,
            an.buyer,
            an.read_value,
            an.read_step.map_or("?".to_string(), |s| s.to_string()),
            an.committed.as_deref().unwrap_or("its write"),
            an.commit_step.map_or("?".to_string(), |s| s.to_string()),
            others.join("; "),
            an.prevented_at
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::explore::*;
    use crate::result::explore::ExploreVerdict;

    #[test]
    fn a_counterexample_reads_as_a_timeline() {
        let text = render_schedule("Counterexample", &lost_update());
        assert!(text.contains("schedule \"1 1 1 1 2 2 2 1 2 2\""), "{text}");
        assert!(text.contains("10 steps, 1 preemption"), "{text}");
        assert!(text.contains("→ stock = 1"), "{text}");
        assert!(
            text.contains("⏳ waits for buyer 1, done after step 8"),
            "{text}"
        );
        assert!(
            text.contains("← overwritten by buyer 2 at step 10"),
            "{text}"
        );
        assert!(
            text.contains("overwrites buyer 1's update (P4 lost update)"),
            "{text}"
        );
        assert!(text.contains("buyer 2 succeeded after 2 tries"), "{text}");
        assert!(text.contains("2 units sold of 1 in stock"), "{text}");
        assert!(text.contains("Prevented at REPEATABLE READ"), "{text}");
    }

    #[test]
    fn the_report_says_the_verdict_and_how_to_replay() {
        let text = render(&result());
        assert!(
            text.contains("OVERSOLD: 22 of 34 schedules oversold"),
            "{text}"
        );
        assert!(text.contains("34 explored (complete)"), "{text}");
        assert!(
            text.contains("--schedule \"1 1 1 1 2 2 2 1 2 2\""),
            "{text}"
        );
    }

    #[test]
    fn junit_fails_the_case_that_broke_the_expectation() {
        let xml = junit(&result(), None);
        assert!(
            xml.contains("failures=\"1\"") && xml.contains("<failure message="),
            "{xml}"
        );
        let mut safe = result();
        safe.verdict = ExploreVerdict::Safe;
        safe.unsafe_schedules = 0;
        safe.oversold_schedules = 0;
        safe.counterexample = None;
        assert!(junit(&safe, None).contains("failures=\"0\""));
    }

    #[test]
    fn long_sql_is_cut_on_one_line() {
        assert_eq!(one_line("SELECT a,\n   b FROM t", 80), "SELECT a, b FROM t");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
