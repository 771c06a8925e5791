//! explain and the anomaly analysis held against what PostgreSQL does:
//!
//! - a property test: scripts generated from the shapes explain models
//!   (isolation set and changed every way, row, table and advisory locks,
//!   checks, guards, keys that fold) — every one explain calls SAFE is
//!   explored with 2 buyers and must be safe: every schedule up to 2
//!   preemptions here, every schedule of all when `RACELAB_PROPTEST_CASES`
//!   asks for a soak of that many cases (a script with a table lock can
//!   take minutes over all its schedules on a busy 2-core machine);
//! - a Hermitage-style set on two tables: G-single at READ COMMITTED and
//!   not at REPEATABLE READ, G2-item at REPEATABLE READ and not at
//!   SERIALIZABLE, named so by `explore` and by `run --trace`, and a
//!   purchase split across transactions named as split, with no level said
//!   to prevent it;
//! - deadlocks: a share-lock-then-update script explored with 3 buyers gets
//!   a verdict, the same twice.

use std::collections::BTreeSet;
use std::path::PathBuf;

use libtest_mimic::{Failed, Trial};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

use crate::cli::*;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "truth::safe_verdicts_hold_in_every_schedule",
            safe_verdicts_hold,
        ),
        crate::common::test("truth::g_single_two_tables", g_single),
        crate::common::test("truth::g2_item_two_sites", g2_item),
        crate::common::test("truth::split_transaction_is_named_split", split),
        crate::common::test("truth::deadlocks_of_three_buyers_replay_alike", deadlocks),
    ]
}

fn tricky(name: &str) -> String {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tricky"))
        .join(format!("{name}.sql"))
        .display()
        .to_string()
}

/// `racelab explore` on the shared server, as JSON.
fn explore(schema: &str, path: &str, extra: &[&str]) -> Result<Value, Failed> {
    let mut args = vec!["explore", "--strategy", path];
    args.extend_from_slice(extra);
    let (out, json) = json_on(schema, &args);
    if !(out.status.success() || out.status.code() == Some(1)) {
        return Err(format!("explore failed: {}", stderr(&out)).into());
    }
    Ok(json)
}

/// The names explore saw, and the prevention each anomaly of the
/// counterexample names.
fn explored_names(r: &Value) -> (BTreeSet<String>, Vec<(String, Value)>) {
    let seen = r["anomalies_seen"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let named = r["counterexample"]["anomalies"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["name"].as_str().unwrap_or("").to_string(),
                        x["prevented_at"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (seen, named)
}

/// `run --trace FILE` with 15 buyers, up to three races until an anomaly
/// with `name` shows; the anomalies of the trace that did.
fn traced(schema: &str, path: &str, name: &str) -> Result<Vec<Value>, Failed> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("trace.jsonl");
    let file_arg = file.display().to_string();
    for _ in 0..3 {
        let (out, json) = json_on(
            schema,
            &[
                "run",
                "--strategy",
                path,
                "--buyers",
                "15",
                "--stock",
                "3",
                "--think-ms",
                "5",
                "--max-tries",
                "0",
                "--trace",
                &file_arg,
            ],
        );
        if !(out.status.success() || out.status.code() == Some(1)) {
            return Err(format!("run --trace failed: {}", stderr(&out)).into());
        }
        let _ = json;
        let text = std::fs::read_to_string(&file)?;
        let anomalies: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "anomaly")
            .collect();
        if anomalies.iter().any(|a| a["name"] == name) {
            return Ok(anomalies);
        }
    }
    Err(format!("three traced races of {path} named no {name}").into())
}

fn g_single() -> Result<(), Failed> {
    hermitage(
        (
            "g-single-warehouse-read-committed",
            "g-single-warehouse-repeatable-read",
        ),
        "G-single read skew",
        "REPEATABLE READ",
        "t_h_gs",
    )
}

fn g2_item() -> Result<(), Failed> {
    hermitage(
        (
            "g2-item-two-sites-repeatable-read",
            "g2-item-two-sites-serializable",
        ),
        "G2-item write skew",
        "SERIALIZABLE",
        "t_h_g2",
    )
}

/// The unsafe script of a pair oversells under explore, which names
/// `anomaly` prevented at `level` (so does a traced race, on the
/// `warehouse.units` item); its safe twin, one level up, explores safe.
fn hermitage(
    (unsafe_name, safe_name): (&str, &str),
    anomaly: &str,
    level: &str,
    schema: &str,
) -> Result<(), Failed> {
    let weak = tricky(&format!("unsafe-{unsafe_name}"));
    let r = explore(&format!("{schema}_weak"), &weak, &["--preemptions", "1"])?;
    if r["verdict"] != "oversold" {
        return Err(format!("{unsafe_name} explored {}", r["verdict"]).into());
    }
    let (seen, named) = explored_names(&r);
    if !seen.contains(anomaly) {
        return Err(format!("explore named {seen:?}, not {anomaly}").into());
    }
    if !named.iter().any(|(n, p)| n == anomaly && p == level) {
        return Err(format!("the counterexample names {named:?}").into());
    }
    let strong = tricky(&format!("safe-{safe_name}"));
    let r = explore(
        &format!("{schema}_strong"),
        &strong,
        &["--preemptions", "1"],
    )?;
    if r["verdict"] != "safe" {
        return Err(format!("{safe_name} explored {}", r["verdict"]).into());
    }
    let a = traced(&format!("{schema}_trace"), &weak, anomaly)?;
    let g = a.iter().find(|a| a["name"] == anomaly).expect("found");
    if g["prevented_at"] != level
        || !g["item"]
            .as_str()
            .unwrap_or("")
            .starts_with("warehouse.units")
    {
        return Err(format!("the trace names {g}").into());
    }
    Ok(())
}

fn split() -> Result<(), Failed> {
    let path = tricky("unsafe-serializable-check-then-autocommit-write");
    let r = explore("t_h_split", &path, &["--preemptions", "1"])?;
    if r["verdict"] != "oversold" {
        return Err(format!("the split purchase explored {}", r["verdict"]).into());
    }
    let (seen, named) = explored_names(&r);
    if seen.iter().any(|n| n != "split transaction") || !seen.contains("split transaction") {
        return Err(format!("explore named {seen:?}, not (only) a split transaction").into());
    }
    if !named
        .iter()
        .all(|(n, p)| n == "split transaction" && p.is_null())
        || named.is_empty()
    {
        return Err(format!("the counterexample names {named:?}").into());
    }
    // The text says no level prevents it, and names no level.
    let out = racelab_on(
        "t_h_split",
        &["explore", "--strategy", &path, "--preemptions", "1"],
    );
    let text = stdout(&out);
    if !text.contains("No isolation level prevents it") || text.contains("Prevented at") {
        return Err(format!("explore's text:\n{text}").into());
    }
    let a = traced("t_h_split_trace", &path, "split transaction")?;
    if let Some(bad) = a
        .iter()
        .find(|a| a["name"] != "split transaction" || !a["prevented_at"].is_null())
    {
        return Err(format!("the trace names {bad}").into());
    }
    Ok(())
}

fn deadlocks() -> Result<(), Failed> {
    let path = tricky("safe-share-lock-then-update");
    let once = |schema: &str| -> Result<Value, Failed> {
        let r = explore(schema, &path, &["--buyers", "3", "--preemptions", "1"])?;
        if r["verdict"] != "safe" {
            return Err(format!(
                "3 buyers explored {}: {}",
                r["verdict"], r["verdict_reason"]
            )
            .into());
        }
        if r["deadlocks"].as_u64().unwrap_or(0) == 0 {
            return Err("no schedule deadlocked: the test tests nothing".into());
        }
        Ok(r)
    };
    let a = once("t_dl_1")?;
    let b = once("t_dl_2")?;
    for key in [
        "schedules_explored",
        "deadlocks",
        "outcomes",
        "unsafe_schedules",
        "diverged_schedules",
    ] {
        if a[key] != b[key] {
            return Err(format!("{key}: {} then {}", a[key], b[key]).into());
        }
    }
    Ok(())
}

/// The shapes a generated script is made of.
#[derive(Debug, Clone)]
struct Shape {
    /// How the transaction's level is set (`None`: autocommit body).
    head: &'static str,
    lock: String,
    key: &'static str,
    check: &'static str,
    write: &'static str,
}

fn shapes() -> impl proptest::strategy::Strategy<Value = Shape> {
    let head = prop::sample::select(vec![
        "BEGIN;",
        "BEGIN ISOLATION LEVEL SERIALIZABLE;",
        "BEGIN ISOLATION LEVEL REPEATABLE READ;",
        "BEGIN;\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;",
        "BEGIN;\nSET LOCAL transaction_isolation = 'repeatable read';",
        "BEGIN ISOLATION LEVEL SERIALIZABLE;\nSET LOCAL transaction_isolation = 'read committed';",
        "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSET transaction_isolation = DEFAULT;",
        "BEGIN;\nSET LOCAL default_transaction_isolation = 'serializable';",
        "SET default_transaction_isolation = 'serializable';\nBEGIN;",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nBEGIN;",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nBEGIN;",
    ]);
    let lock = prop_oneof![
        Just(String::new()),
        Just("SELECT pg_advisory_xact_lock(:product);".to_string()),
        Just("SELECT pg_advisory_xact_lock(:product + 0 * :buyer);".to_string()),
        Just("SELECT pg_advisory_xact_lock(:product * 1000 + :buyer);".to_string()),
        prop::sample::select(vec![
            "ACCESS SHARE",
            "ROW SHARE",
            "ROW EXCLUSIVE",
            "SHARE UPDATE EXCLUSIVE",
            "SHARE",
            "SHARE ROW EXCLUSIVE",
            "EXCLUSIVE",
            "ACCESS EXCLUSIVE",
        ])
        .prop_map(|m| format!("LOCK TABLE products IN {m} MODE;")),
        Just("LOCK TABLE orders IN SHARE MODE;".to_string()),
    ];
    let key = prop::sample::select(vec![
        "",
        " FOR UPDATE",
        " FOR SHARE",
        " FOR KEY SHARE",
        " FOR NO KEY UPDATE",
    ]);
    let check = prop::sample::select(vec![
        "\\if :stock < :qty",
        "\\if :stock < 0",
        "\\if :stock - :qty < 0 * :buyer",
        "\\if 0 > :stock",
    ]);
    let write = prop::sample::select(vec![
        "UPDATE products SET stock = :stock - :qty WHERE id = :product;",
        "UPDATE products SET stock = stock - :qty WHERE id = :product + 0 * :buyer;",
        "UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= :qty + 0 * :buyer;",
        "UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= 0;",
    ]);
    (head, lock, key, check, write).prop_map(|(head, lock, key, check, write)| Shape {
        head,
        lock,
        key,
        check,
        write,
    })
}

fn script(s: &Shape) -> String {
    let guarded = s.write.contains("AND stock >=");
    let rows = if guarded {
        "\\if :rows = 0\n  ROLLBACK;\n  \\sold_out\n\\endif\n"
    } else {
        ""
    };
    format!(
        "-- generated\n{}\n{}\nSELECT stock FROM products WHERE id = :product{} \\gset\n{}\n  ROLLBACK;\n  \\sold_out\n\\endif\n{}\n{rows}INSERT INTO orders (product_id, buyer_id, attempt_id, qty)\n  VALUES (:product, :buyer, :attempt, :qty);\nCOMMIT;\n",
        s.head, s.lock, s.key, s.check, s.write
    )
}

fn safe_verdicts_hold() -> Result<(), Failed> {
    let soak: Option<u32> = std::env::var("RACELAB_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    let (cases, bound) = match soak {
        Some(n) => (n, "all"),
        None => (8, "2"),
    };
    let dir = tempfile::tempdir()?;
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let n = std::cell::Cell::new(0u32);
    let explored = std::cell::Cell::new(0u32);
    let result = runner.run(&shapes(), |shape| {
        let src = script(&shape);
        let prog = racelab::strategy::parse("generated.sql", &src)
            .map_err(|e| TestCaseError::fail(e.render()))?;
        let v = racelab::explain::verdict(&prog);
        if v.level != racelab::explain::Level::Safe {
            return Ok(());
        }
        n.set(n.get() + 1);
        let path = crate::cli::script(dir.path(), &format!("g{}.sql", n.get()), &src);
        let schema = format!("t_prop_{}", n.get());
        let r = explore(&schema, &path, &["--preemptions", bound])
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        explored.set(explored.get() + 1);
        prop_assert_eq!(
            r["verdict"].as_str(),
            Some("safe"),
            "explain calls SAFE, exploring the schedules of 2 buyers (preemptions: {}) found {}:\n{}\n{:#?}",
            bound,
            r["verdict"],
            src,
            v.findings
        );
        Ok(())
    });
    result.map_err(|e| Failed::from(format!("{e}")))?;
    if explored.get() == 0 {
        return Err("no generated script was called SAFE: the property tested nothing".into());
    }
    Ok(())
}
