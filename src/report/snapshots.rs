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
use crate::verdict::{Expect, Gate};

fn gate(expect: Option<Expect>) -> Gate {
    Gate {
        expect,
        max_errors: 0,
    }
}

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

/// `POST http://127.0.0.1:8080/purchase` with racelab's default status
/// codes.
fn target(truth: Truth, timeout_ms: u64, by_status: BTreeMap<String, Summary>) -> TargetInfo {
    TargetInfo {
        url: "http://127.0.0.1:8080/purchase".into(),
        method: "POST".into(),
        truth,
        timeout_ms,
        success_statuses: vec![],
        sold_out_statuses: vec![409, 410, 422],
        rejected_statuses: vec![429],
        by_status,
        protocol: "h2".into(),
        sync: "last-byte".into(),
        connections: 1,
        flow: None,
    }
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
        contention: fixtures::raced(20, 20),
        client_cpu: Some(Duration::from_millis(2)),
        open_loop: None,
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
    let target = target(Truth::StockUrl, 300, by_status);
    let mut r = RunResult::assemble(record, &mut tally, Subject::Target(target), None);
    r.verdict = crate::verdict::decide(&r);
    r
}

/// A safe service whose sold-out answer is 400, raced against a declared
/// stock of 1: one bought, 99 answers racelab does not map.
fn http_unmapped_run() -> RunResult {
    let groups = [
        attempts(Outcome::Succeeded, 1, 2_000, 0),
        Attempts {
            message: Some(r#"HTTP 400: {"error": "out of stock"}"#),
            ..attempts(Outcome::Error, 99, 1_500, 10)
        },
    ];
    let mut tally = fixtures::tally(&groups);
    let mut scenario = fixtures::scenario(100, 1);
    scenario.name = "http".into();
    scenario.think_ms = 0;
    let record = RaceRecord {
        started_at: "2025-01-02T03:04:05.000Z".into(),
        scenario: ScenarioInfo::of(&scenario, 1, 7, 10_000),
        repetition: 1,
        status: Status::Completed,
        status_reason: None,
        audit: Some(audit(1, 1, 0)),
        wall: Duration::from_millis(200),
        contention: fixtures::raced(100, 100),
        client_cpu: None,
        open_loop: None,
    };
    let by_status: BTreeMap<String, Summary> = [
        (
            "201".to_string(),
            Summary {
                count: 1,
                ..Summary::default()
            },
        ),
        (
            "400".to_string(),
            Summary {
                count: 99,
                ..Summary::default()
            },
        ),
    ]
    .into();
    let target = TargetInfo {
        protocol: "http/1.1".into(),
        connections: 100,
        ..target(Truth::ClientBelief, 10_000, by_status)
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

/// conditional under `--nemesis drop-reply:0.3 --retry-unknown`: replies
/// dropped after COMMIT, resubmitted under the same attempt id, and the
/// purchases that committed twice found by the audit.
fn nemesis_run() -> RunResult {
    let mut a = audit(100, 100, 0);
    a.duplicate_orders = 26;
    a.unknown_committed = 10;
    a.unknown_not_committed = 39;
    let mut r = fixtures::run(
        "conditional",
        fixtures::scenario(20, 100),
        &[
            attempts(Outcome::Succeeded, 64, 30_000, 10_000),
            attempts(Outcome::SoldOut, 135, 20_000, 8_000),
            Attempts {
                message: Some(
                    "reply dropped after sending line 8 (--nemesis drop-reply): \
                     the purchase may or may not have happened",
                ),
                ..attempts(Outcome::Unknown, 1, 92_000, 1)
            },
        ],
        Some(a),
        1,
    );
    r.nemesis = Some(crate::result::NemesisInfo {
        faults: vec![crate::result::FaultInfo {
            kind: "drop-reply".into(),
            rate: 0.3,
        }],
        retry_unknown: 3,
        terminated: 0,
        dropped_replies: 95,
        reconnects: 95,
        resubmitted: 94,
    });
    r.verdict = crate::verdict::decide(&r);
    r
}

#[test]
fn run_table_of_a_nemesis_run_with_duplicates() {
    check(
        "table_nemesis",
        &super::table::render_run(&nemesis_run(), false),
    );
}

#[test]
fn run_table_of_an_oversold_strategy() {
    check(
        "table_oversold",
        &super::table::render_run(&fixtures::naive_oversold(1), false),
    );
}

#[test]
fn run_table_through_pgbouncer() {
    let mut r = fixtures::naive_oversold(1);
    r.topology = Some(crate::result::Topology::pgbouncer(
        crate::db::pgbouncer::PoolMode::Transaction,
        20,
    ));
    check("table_pgbouncer", &super::table::render_run(&r, false));
}

#[test]
fn run_table_of_an_http_target() {
    check("table_http", &super::table::render_run(&http_run(), false));
}

#[test]
fn run_table_of_an_unmapped_status_against_a_declared_stock() {
    check(
        "table_http_unmapped",
        &super::table::render_run(&http_unmapped_run(), false),
    );
}

#[test]
fn run_table_of_a_race_nobody_raced() {
    check(
        "table_inconclusive",
        &super::table::render_run(&fixtures::for_update_alone(), false),
    );
}

#[test]
fn compare_table_of_an_inconclusive_strategy() {
    let text = super::compare::render(
        &[fixtures::naive_oversold(1), fixtures::for_update_alone()],
        false,
    );
    let row = text.lines().find(|l| l.contains("for-update")).unwrap();
    assert!(
        row.contains("INCONCLUSIVE") && row.contains(" 0% "),
        "{row}"
    );
    assert!(text.ends_with("not safe: naive, for-update\n"), "{text}");
}

#[test]
fn junit_fails_a_safe_run_that_was_not_clean() {
    check(
        "junit_not_clean",
        &super::junit::render(&[http_unmapped_run()], &gate(Some(Expect::Safe))),
    );
    let allowed = Gate {
        expect: Some(Expect::Safe),
        max_errors: 99,
    };
    let xml = super::junit::render(&[http_unmapped_run()], &allowed);
    assert!(!xml.contains("<failure"), "{xml}");
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
        &super::junit::render(&compared_twice(), &gate(Some(Expect::Safe))),
    );
}

#[test]
fn junit_with_expect_oversold() {
    check(
        "junit_expect_oversold",
        &super::junit::render(&compared(), &gate(Some(Expect::Oversold))),
    );
}

#[test]
fn junit_of_an_unaudited_run() {
    check(
        "junit_aborted",
        &super::junit::render(&[aborted_run()], &gate(None)),
    );
}

/// The JSON of one run and of many (`{"runs": [...]}` with the overall
/// verdict and the summaries) follows docs/result.schema.json, and the
/// schema is strict enough to refuse a broken one.
#[test]
fn json_follows_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/result.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors = |v: &serde_json::Value| -> Vec<String> {
        validator
            .iter_errors(v)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect()
    };
    let json = super::Output {
        json: true,
        ..super::Output::default()
    };
    let one: serde_json::Value = serde_json::from_str(&super::render_runs(
        &[fixtures::for_update_alone()],
        &json,
        false,
        false,
    ))
    .unwrap();
    assert_eq!(errors(&one), Vec::<String>::new());
    assert_eq!(one["verdict"], "inconclusive");
    assert_eq!(one["contention"]["overlapped_attempts"], 0);
    let mut runs = compared_twice();
    runs.push(http_unmapped_run());
    runs.push(aborted_run());
    let many: serde_json::Value =
        serde_json::from_str(&super::render_runs(&runs, &json, true, false)).unwrap();
    assert_eq!(errors(&many), Vec::<String>::new());
    // One run unaudited: no verdict over all of them.
    assert_eq!(many["verdict"], serde_json::Value::Null);
    let summary = many["summary"].as_array().unwrap();
    let names: Vec<&str> = summary
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["naive", "for-update", "http://127.0.0.1:8080/purchase"]
    );
    assert_eq!(summary[0]["verdict"], "oversold");
    assert_eq!(
        (&summary[0]["runs"], &summary[0]["oversold_runs"]),
        (&2.into(), &1.into())
    );
    // for-update: two safe runs and the aborted one.
    assert_eq!(summary[1]["unaudited_runs"], 1);
    assert_eq!(summary[1]["verdict"], serde_json::Value::Null);
    let safe_only: serde_json::Value = serde_json::from_str(&super::render_runs(
        &[fixtures::for_update_safe(1), fixtures::for_update_safe(2)],
        &json,
        true,
        false,
    ))
    .unwrap();
    assert_eq!(safe_only["verdict"], "safe");
    let mut broken = many.clone();
    broken["verdict"] = "fine".into();
    assert!(!validator.is_valid(&broken));
    let nemesis: serde_json::Value =
        serde_json::from_str(&super::render_runs(&[nemesis_run()], &json, false, false)).unwrap();
    assert_eq!(errors(&nemesis), Vec::<String>::new());
    assert_eq!(nemesis["audit"]["duplicate_orders"], 26);
    assert_eq!(nemesis["nemesis"]["dropped_replies"], 95);
    let mut unknown_kind = nemesis.clone();
    unknown_kind["nemesis"]["faults"][0]["kind"] = "boom".into();
    assert!(!validator.is_valid(&unknown_kind));
    let mut no_duplicates = nemesis.clone();
    no_duplicates["audit"]
        .as_object_mut()
        .unwrap()
        .remove("duplicate_orders");
    assert!(!validator.is_valid(&no_duplicates));
    let mut no_contention = one.clone();
    no_contention.as_object_mut().unwrap().remove("contention");
    assert!(!validator.is_valid(&no_contention));
    // Through PgBouncer: the topology is recorded, and checked.
    let mut pooled = fixtures::for_update_safe(1);
    pooled.topology = Some(crate::result::Topology::pgbouncer(
        crate::db::pgbouncer::PoolMode::Session,
        5,
    ));
    let pooled: serde_json::Value =
        serde_json::from_str(&super::render_runs(&[pooled], &json, false, false)).unwrap();
    assert_eq!(errors(&pooled), Vec::<String>::new());
    assert_eq!(pooled["topology"]["pool_mode"], "session");
    assert!(one.get("topology").is_none(), "direct runs record none");
    let mut bad_mode = pooled.clone();
    bad_mode["topology"]["pool_mode"] = "sometimes".into();
    assert!(!validator.is_valid(&bad_mode));
}
