//! JUnit XML for CI systems, one writer (quick-junit) for every command
//! that produces results. A race (`run`, `compare`, `http`) has one test
//! case per strategy or target (per repetition when one ran more than
//! once); it fails when its run broke the gate (the `--expect` given, or,
//! without one, `safe`: raced, clean and sound), the failure carrying the
//! audit numbers, and each case's properties carry its verdict and the
//! evidence of contention. An exploration has one test case, failing when
//! the expectation (or, without one, safety) did not hold.
//!
//! quick-junit escapes what XML needs escaped and drops control
//! characters and terminal escapes; what XML forbids beyond those
//! (U+FFFE, U+FFFF) is dropped here (`markup::xml_chars`).

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::markup::xml_chars;
use crate::result::explore::{schedule_arg, ExploreResult};
use crate::result::RunResult;
use crate::verdict::explore::bound_words;
use crate::verdict::{self, Expect, Gate};

/// The JUnit report of a race's runs under `gate`.
pub fn render(results: &[RunResult], gate: &Gate) -> anyhow::Result<String> {
    let suite_name = results.first().map_or("racelab".to_string(), |r| {
        format!("racelab.{}", r.scenario.name)
    });
    let mut suite = TestSuite::new(xml_chars(&suite_name));
    let mut total = Duration::ZERO;
    for r in results {
        let time = seconds(r.throughput.wall_seconds);
        total += time;
        let repeated = results.iter().filter(|o| o.name() == r.name()).count() > 1;
        let name = if repeated {
            format!("{} #{}", r.name(), r.repetition)
        } else {
            r.name().to_string()
        };
        let status = if verdict::meets(gate, r) {
            TestCaseStatus::success()
        } else {
            let mut failure = TestCaseStatus::non_success(NonSuccessKind::Failure);
            failure
                .set_message(xml_chars(&failure_message(r, gate)))
                .set_type(verdict_name(r))
                .set_description(audit_numbers(r));
            failure
        };
        let mut case = TestCase::new(xml_chars(&name), status);
        case.set_classname(xml_chars(&suite_name))
            .set_time(time)
            .add_properties(properties(r));
        suite.add_test_case(case);
    }
    suite.set_time(total);
    xml(suite, total)
}

/// The JUnit report of an exploration, against `expect` (`safe` when none
/// was given).
pub fn explore(r: &ExploreResult, expect: Option<Expect>) -> anyhow::Result<String> {
    let time = seconds(r.wall_seconds);
    let failure = verdict::explore::failure(Some(expect.unwrap_or(Expect::Safe)), r);
    let name = format!(
        "explore {} ({}, {})",
        r.name(),
        crate::verdict::explore::plural(u64::from(r.buyers), "buyer", "buyers"),
        match &r.replayed {
            Some(s) => format!("--schedule \"{}\"", schedule_arg(s)),
            None => bound_words(r.preemption_bound),
        }
    );
    let status = match failure {
        None => TestCaseStatus::success(),
        Some(why) => {
            let mut failure = TestCaseStatus::non_success(NonSuccessKind::Failure);
            failure
                .set_message(xml_chars(&why))
                .set_type(r.verdict.as_str())
                .set_description(xml_chars(&verdict::explore::sentence(r)));
            failure
        }
    };
    let mut case = TestCase::new(xml_chars(&name), status);
    case.set_classname("racelab.explore").set_time(time);
    let mut suite = TestSuite::new("racelab.explore");
    suite.add_test_case(case).set_time(time);
    xml(suite, time)
}

/// One suite in a report named `racelab`, as XML.
fn xml(suite: TestSuite, time: Duration) -> anyhow::Result<String> {
    let mut report = Report::new("racelab");
    report.add_test_suite(suite).set_time(time);
    Ok(report.to_string()?)
}

/// Seconds as a duration (negative or not a number: zero).
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Why a run failed the gate, as the failure's message.
fn failure_message(r: &RunResult, gate: &Gate) -> String {
    let expected = match gate.expect {
        Some(Expect::Oversold) => "expected oversold",
        _ => "expected safe",
    };
    // A safe verdict failed the gate by not being clean.
    let why = if verdict::is_safe(r) && gate.expect != Some(Expect::Oversold) {
        format!(
            "{} ended in error or unknown (--max-errors allows {}); {}",
            verdict::counted(verdict::unclean_attempts(r), "attempt", "attempts"),
            gate.max_errors,
            verdict::sentence(r)
        )
    } else {
        verdict::sentence(r)
    };
    format!("{expected}: {why}")
}

/// The audit and the outcomes, as the failure's text.
fn audit_numbers(r: &RunResult) -> String {
    let a = r.audit.as_ref();
    let n = |f: fn(&crate::db::Audit) -> String| a.map_or("-".to_string(), f);
    format!(
        "initial_stock={} units_sold={} final_stock={} oversold_units={} stock_drift={} \
         negative_stock={} successes_without_order={} orders_without_success={} \
         succeeded={} sold_out={} rejected={} gave_up={} errors={} unknown={}",
        n(|a| a.initial_stock.to_string()),
        n(|a| a.units_sold.to_string()),
        n(|a| a.final_stock.to_string()),
        n(|a| a.oversold_units.to_string()),
        n(|a| a.stock_drift.to_string()),
        n(|a| a.negative_stock.to_string()),
        n(|a| a.successes_without_order.to_string()),
        n(|a| a.orders_without_success.to_string()),
        r.outcomes.succeeded,
        r.outcomes.sold_out,
        r.outcomes.rejected,
        r.outcomes.gave_up,
        r.outcomes.errors,
        r.outcomes.unknown,
    )
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
fn properties(r: &RunResult) -> Vec<Property> {
    let c = &r.contention;
    [
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
    ]
    .into_iter()
    .map(|(name, value)| Property::new(name, value))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::explore::result as explored;
    use crate::fixtures::naive_oversold;
    use crate::result::explore::ExploreVerdict;

    /// `'`, `&`, `<`, `"`, control characters, a terminal escape, text
    /// that was not UTF-8 (decoded with replacement characters) and the
    /// two code points XML forbids.
    fn nasty() -> String {
        let not_utf8 = String::from_utf8_lossy(b"caf\xe9 \xff\xfe");
        format!("it's <b>&amp;\" \u{0}\u{7}\u{1b}[31mred\u{1b}[0m {not_utf8} \u{fffe}\u{ffff}end")
    }

    fn parses(xml: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"))
    }

    #[test]
    fn a_failing_run_with_nasty_text_parses_as_junit() {
        let mut r = naive_oversold(1);
        r.scenario.workload.name = "sc'en<ario>&".into();
        r.status_reason = Some(nasty());
        r.audit = None;
        r.verdict = None;
        let gate = Gate {
            expect: Some(Expect::Safe),
            max_errors: 0,
        };
        let xml = render(&[r], &gate).unwrap();
        let doc = parses(&xml);
        let suites = doc.root_element();
        assert_eq!(suites.tag_name().name(), "testsuites");
        assert_eq!(suites.attribute("failures"), Some("1"));
        let suite = suites.first_element_child().unwrap();
        assert_eq!(suite.attribute("name"), Some("racelab.sc'en<ario>&"));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .expect("a failure");
        let message = failure.attribute("message").unwrap();
        assert!(
            message.starts_with("expected safe: NOT AUDITED: it's <b>&amp;\" "),
            "{message}"
        );
        assert!(
            message.contains("red caf\u{fffd} \u{fffd}\u{fffd} end"),
            "{message}"
        );
        assert!(!message.contains('\u{1b}') && !message.contains('\u{0}'));
        assert_eq!(failure.attribute("type"), Some("not_audited"));
    }

    #[test]
    fn an_exploration_is_one_case() {
        let mut r = explored();
        r.strategy.name = nasty();
        let xml = explore(&r, None).unwrap();
        let doc = parses(&xml);
        let case = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase"))
            .unwrap();
        assert_eq!(case.attribute("classname"), Some("racelab.explore"));
        assert!(case
            .attribute("name")
            .unwrap()
            .starts_with("explore it's <b>"));
        let failure = case.first_element_child().unwrap();
        assert_eq!(failure.tag_name().name(), "failure");
        assert_eq!(failure.attribute("type"), Some("oversold"));
        assert!(failure
            .text()
            .unwrap()
            .starts_with("OVERSOLD: 22 of 34 schedules oversold"));

        let mut safe = explored();
        safe.verdict = ExploreVerdict::Safe;
        safe.unsafe_schedules = 0;
        safe.oversold_schedules = 0;
        safe.counterexample = None;
        let xml = explore(&safe, None).unwrap();
        assert_eq!(parses(&xml).root_element().attribute("failures"), Some("0"));
    }
}
