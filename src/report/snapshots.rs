//! Snapshot tests of the human renderers (the run table, the side-by-side
//! table, JUnit) from hand-made results (`result::fixtures`): the whole
//! rendered text is compared with a file under `src/report/snapshots/`.
//! After a deliberate change of the output, `RACELAB_BLESS=1 cargo test
//! --lib report::snapshots` rewrites the files; review them with `git diff`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::fixtures::{self, attempts, audit, Attempts};
use crate::outcome::Outcome;
use crate::result::{
    RaceRecord, RunResult, ScenarioInfo, Status, Subject, Summary, TargetInfo, Truth,
};
use crate::verdict::Expect;

fn check(name: &str, actual: &str) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "src/report/snapshots"]
        .iter()
        .collect::<PathBuf>()
        .join(format!("{name}.txt"));
    if std::env::var_os("RACELAB_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; RACELAB_BLESS=1 writes it from:\n{actual}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name}: the rendered text differs from {} (RACELAB_BLESS=1 rewrites it)\n\
         --- expected\n{expected}--- actual\n{actual}",
        path.display()
    );
}

/// An HTTP run: 5 bought, 14 told sold out, 1 lost to a timeout, against a
/// stock endpoint that said 1 before and 0 after.
fn http_run() -> RunResult {
    let groups = [
        attempts(Outcome::Succeeded, 5, 2_000, 100),
        attempts(Outcome::SoldOut, 14, 1_500, 50),
        Attempts {
            message: Some(
                "no response within 300 ms (--request-timeout); the purchase may or may not have happened",
            ),
            ..attempts(Outcome::Unknown, 1, 300_000, 0)
        },
    ];
    let mut tally = fixtures::tally(&groups);
    let mut scenario = fixtures::scenario(20, 1);
    scenario.name = "http".into();
    scenario.think_ms = 0;
    scenario.description = "POST http://127.0.0.1:8080/purchase".into();
    let mut a = audit(1, 5, 0);
    a.stock_drift = 1 - 5;
    let record = RaceRecord {
        started_at: "2025-01-02T03:04:05.000Z".into(),
        scenario: ScenarioInfo::of(&scenario, 1, 7, 300),
        repetition: 1,
        status: Status::Completed,
        status_reason: None,
        audit: Some(a),
        wall: Duration::from_millis(400),
    };
    let by_status: BTreeMap<String, Summary> = [
        ("201", &groups[0]),
        ("409", &groups[1]),
        ("none", &groups[2]),
    ]
    .into_iter()
    .map(|(code, g)| {
        let mut h = crate::engine::tally::new_histogram();
        for i in 0..g.n {
            h.record(g.first_us + i * g.step_us).unwrap();
        }
        (code.to_string(), Summary::of(&h))
    })
    .collect();
    let target = TargetInfo {
        url: "http://127.0.0.1:8080/purchase".into(),
        method: "POST".into(),
        truth: Truth::StockUrl,
        timeout_ms: 300,
        success_statuses: vec![],
        sold_out_statuses: vec![409, 410, 422],
        rejected_statuses: vec![429],
        by_status,
        protocol: "h2".into(),
        sync: "last-byte".into(),
        connections: 1,
    };
    let mut r = RunResult::assemble(record, &mut tally, Subject::Target(target), None);
    r.verdict = crate::verdict::decide(&r);
    r
}

/// A run the server's death cut short: no audit.
fn aborted_run() -> RunResult {
    let mut r = fixtures::run(
        "for-update",
        fixtures::scenario(50, 10),
        &[
            attempts(Outcome::Succeeded, 4, 3_000, 500),
            Attempts {
                tries: 3,
                message: Some("57P01: terminating connection due to administrator command"),
                ..attempts(Outcome::Error, 2, 9_000, 1_000)
            },
        ],
        None,
        1,
    );
    r.status = Status::Aborted;
    r.status_reason =
        Some("lost the connection to the server: server closed the connection".into());
    r
}

#[test]
fn run_table_of_an_oversold_strategy() {
    check(
        "table_oversold",
        &super::table::render_run(&fixtures::naive_oversold(1), false),
    );
}

#[test]
fn run_table_of_an_http_target() {
    check("table_http", &super::table::render_run(&http_run(), false));
}

#[test]
fn run_table_of_an_aborted_run() {
    check(
        "table_aborted",
        &super::table::render_run(&aborted_run(), false),
    );
}

#[test]
fn the_verdict_is_coloured_only_for_a_terminal() {
    let r = fixtures::naive_oversold(1);
    let plain = super::table::render_run(&r, false);
    let painted = super::table::render_run(&r, true);
    assert!(!plain.contains('\x1b'));
    let line = plain.lines().last().unwrap();
    assert!(
        painted.ends_with(&format!("\x1b[1;31m{line}\x1b[0m\n")),
        "{painted}"
    );
}

fn compared() -> Vec<RunResult> {
    vec![fixtures::naive_oversold(1), fixtures::for_update_safe(1)]
}

fn compared_twice() -> Vec<RunResult> {
    // naive's second run happened to sell exactly the stock.
    let mut lucky = fixtures::naive_oversold(2);
    lucky.audit = Some(audit(10, 10, 0));
    lucky.verdict = crate::verdict::decide(&lucky);
    vec![
        fixtures::naive_oversold(1),
        lucky,
        fixtures::for_update_safe(1),
        fixtures::for_update_safe(2),
    ]
}

#[test]
fn compare_table_side_by_side() {
    check("compare", &super::compare::render(&compared(), false));
}

#[test]
fn compare_table_folds_repetitions() {
    check(
        "compare_repeated",
        &super::compare::render(&compared_twice(), false),
    );
}

#[test]
fn compare_table_of_safe_runs_only() {
    let text = super::compare::render(&[fixtures::for_update_safe(1)], false);
    assert!(text.ends_with("every strategy was safe\n"), "{text}");
}

#[test]
fn junit_with_expect_safe() {
    check(
        "junit_expect_safe",
        &super::junit::render(&compared_twice(), Some(Expect::Safe)),
    );
}

#[test]
fn junit_with_expect_oversold() {
    check(
        "junit_expect_oversold",
        &super::junit::render(&compared(), Some(Expect::Oversold)),
    );
}

#[test]
fn junit_of_an_unaudited_run() {
    check(
        "junit_aborted",
        &super::junit::render(&[aborted_run()], None),
    );
}
