//! Verdicts that cannot lie, on the SQL lab: a race nobody raced, a
//! strategy that never buys, a pool that lets one attempt run at a time,
//! errors under `--expect safe`, and buyers told "sold out" while stock
//! remained each fail the gate; a real race is measured as one
//! (`contention`). HTTP's false passes are in `http`.

use libtest_mimic::{Failed, Trial};

use crate::cli::*;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "verdicts::one_buyer_is_inconclusive_and_fails_expect_safe",
            one_buyer,
        ),
        crate::common::test("verdicts::fifty_buyers_contend_and_pass", fifty_buyers),
        crate::common::test(
            "verdicts::a_strategy_that_only_errors_fails_naming_the_error",
            only_errors,
        ),
        crate::common::test(
            "verdicts::one_pooled_connection_races_nothing",
            one_connection,
        ),
        crate::common::test("verdicts::max_errors_allows_n_errors", max_errors),
        crate::common::test(
            "verdicts::sold_out_with_stock_left_is_inconsistent",
            sold_out_with_stock_left,
        ),
    ]
}

/// `run --strategy <strategy> --buyers <buyers> <extra> --expect safe`.
fn run_expect_safe<'a>(strategy: &'a str, buyers: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--strategy", strategy, "--buyers", buyers];
    args.extend_from_slice(extra);
    args.extend(["--expect", "safe"]);
    args
}

fn one_buyer() -> Result<(), Failed> {
    let (out, v) = json_on("t_verdict_one", &run_expect_safe("for-update", "1", &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(text(&v, "verdict"), "inconclusive", "{v}");
    assert_eq!(int(&v, "audit.units_sold"), 1);
    assert_eq!(int(&v, "contention.peak_in_flight"), 1);
    assert_eq!(int(&v, "contention.overlapped_attempts"), 0);
    assert_eq!(int(&v, "contention.release_spread_us"), 0);
    let err = stderr(&out);
    assert!(
        err.contains("1 inconclusive") && err.contains("no two attempts on a product overlapped"),
        "{err}"
    );
    assert!(
        err.contains("--buyers") && err.contains("racelab explore"),
        "{err}"
    );
    // The table says it in words, and never SAFE.
    let out = racelab_on(
        "t_verdict_one",
        &["run", "--strategy", "for-update", "--buyers", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "no --expect, no gate");
    let table = stdout(&out);
    assert!(table.contains("INCONCLUSIVE: 1 unit sold of 10"), "{table}");
    assert!(!table.contains("SAFE"), "{table}");
    assert!(
        table.contains("0 of 1 attempt overlapped another"),
        "{table}"
    );
    Ok(())
}

fn fifty_buyers() -> Result<(), Failed> {
    let (out, v) = json_on(
        "t_verdict_fifty",
        &[
            "compare",
            "--strategies",
            "for-update,conditional",
            "--buyers",
            "50",
            "--expect",
            "safe",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for r in runs(&v, 2) {
        let name = text(&r, "strategy.name");
        assert_eq!(int(&r, "audit.units_sold"), 10, "{name}: {r}");
        assert_eq!(int(&r, "outcomes.succeeded"), 10, "{name}: {r}");
        assert_eq!(int(&r, "outcomes.sold_out"), 40, "{name}: {r}");
        assert_eq!(int(&r, "outcomes.errors"), 0, "{name}: {r}");
        assert_eq!(int(&r, "audit.stock_drift"), 0, "{name}: {r}");
        let peak = int(&r, "contention.peak_in_flight");
        assert!(peak >= 2, "{name}: peak {peak}: {r}");
        assert!(peak <= 50, "{name}: peak {peak}");
        let overlapped = int(&r, "contention.overlapped_attempts");
        assert!(
            (2..=50).contains(&overlapped),
            "{name}: {overlapped} overlapped"
        );
        assert_eq!(text(&r, "verdict"), "safe", "{name}: {r}");
    }
    // The overall verdict and the per-strategy summary come with the runs.
    assert_eq!(v["verdict"], "safe", "{}", v["verdict"]);
    let summary = v["summary"].as_array().expect("a summary");
    let names: Vec<&str> = summary.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["for-update", "conditional"]);
    assert_eq!(summary[0]["verdict"], "safe");
    assert!(int(&summary[0], "peak_in_flight") >= 2);
    Ok(())
}

/// Every attempt divides by zero: nothing is sold, nothing oversold.
const DIVIDES_BY_ZERO: &str = "-- broken: every attempt fails.\nBEGIN;\n\
     SELECT stock / 0 AS left FROM products WHERE id = :product \\gset\nCOMMIT;\n";

fn only_errors() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(dir.path(), "broken.sql", DIVIDES_BY_ZERO);
    let (out, v) = json_on("t_verdict_errors", &run_expect_safe(&path, "20", &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.errors"), 20);
    assert_eq!(int(&v, "audit.oversold_units"), 0);
    assert_eq!(text(&v, "verdict"), "inconclusive");
    let err = stderr(&out);
    assert!(
        err.contains("nothing was sold though 10 units were in stock"),
        "{err}"
    );
    assert!(
        err.contains("broken had error or unknown attempts in 1 of 1 run")
            && err.contains("commonest: 22012: division by zero")
            && err.contains("(20x)"),
        "{err}"
    );
    Ok(())
}

fn one_connection() -> Result<(), Failed> {
    // naive is unsafe, but through one pooled connection its attempts run
    // one after the other: nothing was raced, so nothing was shown.
    let (out, v) = json_on(
        "t_verdict_pool1",
        &run_expect_safe("naive", "20", &["--connections", "1"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(int(&v, "audit.oversold_units"), 0, "{v}");
    assert_eq!(int(&v, "contention.peak_in_flight"), 1, "{v}");
    assert_eq!(int(&v, "contention.overlapped_attempts"), 0);
    assert_eq!(text(&v, "verdict"), "inconclusive");
    assert!(stderr(&out).contains("--connections"), "{}", stderr(&out));
    // A pool of several races: in flight is at most the pool.
    let (out, v) = json_on(
        "t_verdict_pool1",
        &run_expect_safe("conditional", "40", &["--connections", "4"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let peak = int(&v, "contention.peak_in_flight");
    assert!((2..=4).contains(&peak), "peak {peak} with a pool of 4");
    Ok(())
}

fn max_errors() -> Result<(), Failed> {
    // conditional, but buyer 1 divides by zero first.
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "one-bad.sql",
        "-- one-bad: buyer 1 fails, the others buy.\n\\if :buyer = 1\n  SELECT 1 / 0;\n\\endif\n\
         \\sleep :think ms\nWITH sold AS (UPDATE products SET stock = stock - :qty\n  \
         WHERE id = :product AND stock >= :qty RETURNING id)\n\
         INSERT INTO orders (product_id, buyer_id, attempt_id, qty)\n\
         SELECT id, :buyer, :attempt, :qty FROM sold;\n\\if :rows = 0\n  \\sold_out\n\\endif\n",
    );
    let strict = racelab_on("t_verdict_max_errors", &run_expect_safe(&path, "30", &[]));
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(
        stderr(&strict).contains(
            "had error or unknown attempts in 1 of 1 run (up to 1 in a run; --max-errors allows 0)"
        ),
        "{}",
        stderr(&strict)
    );
    assert!(
        !stderr(&strict).contains("was not safe"),
        "{}",
        stderr(&strict)
    );
    let allowing = run_expect_safe(&path, "30", &["--max-errors", "1"]);
    let (out, v) = json_on("t_verdict_max_errors", &allowing);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.errors"), 1);
    assert_eq!(text(&v, "verdict"), "safe");
    Ok(())
}

fn sold_out_with_stock_left() -> Result<(), Failed> {
    // Even buyers are told "sold out" without looking; the others buy.
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "liar.sql",
        "-- liar: half the buyers hear sold out whatever the stock.\n\\if :buyer % 2 = 0\n  \
         \\sold_out\n\\endif\nUPDATE products SET stock = stock - :qty WHERE id = :product;\n\
         INSERT INTO orders (product_id, buyer_id, attempt_id, qty)\n  \
         VALUES (:product, :buyer, :attempt, :qty);\n",
    );
    let (out, v) = json_on(
        "t_verdict_liar",
        &run_expect_safe(&path, "20", &["--stock", "100", "--products", "2"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(text(&v, "verdict"), "inconsistent", "{v}");
    assert_eq!(int(&v, "outcomes.sold_out"), 10);
    assert_eq!(int(&v, "audit.sold_out_with_stock_left"), 10);
    // Both products kept stock; the total left on those told sold out.
    let left = int(&v, "audit.stock_left_after_sold_out");
    assert!((90..=190).contains(&left), "{v}");
    let table = racelab_on(
        "t_verdict_liar",
        &[
            "run",
            "--strategy",
            &path,
            "--buyers",
            "20",
            "--stock",
            "100",
        ],
    );
    assert!(
        stdout(&table).contains("INCONSISTENT: told sold out, but 90 left (10 sold-out answers"),
        "{}",
        stdout(&table)
    );
    Ok(())
}
