//! Strategy scripts against a real server: each built-in on the smallest
//! cases, values reach the server only as parameters, retries are bounded,
//! `\setup` changes live exactly as long as their run, and bad scripts fail
//! with file:line:col and exit code 2.

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;
use crate::common::OutputWithin as _;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "strategy::each_builtin_buys_the_last_unit",
            each_builtin_buys_last_unit,
        ),
        crate::common::test(
            "strategy::each_builtin_refuses_empty_stock",
            each_builtin_refuses_empty_stock,
        ),
        crate::common::test("strategy::gset_values_are_bound_not_pasted", injection),
        crate::common::test("strategy::retry_gives_up_after_max_tries", retry_gives_up),
        crate::common::test("strategy::setup_lives_only_for_its_run", setup_scoped),
        crate::common::test("strategy::parse_error_names_file_line_col", parse_error),
        crate::common::test(
            "strategy::open_transaction_at_end_is_an_error",
            open_transaction,
        ),
        crate::common::test("strategy::list_and_show", list_and_show),
    ]
}

fn builtin_names() -> Vec<&'static str> {
    racelab::strategy::builtins()
        .iter()
        .map(|(n, _)| *n)
        .collect()
}

/// One buyer against every built-in, each on a fresh lab with `stock`
/// units: the runs, one per built-in.
fn one_buyer_each_builtin(schema: &str, stock: &str) -> Vec<Value> {
    let names = builtin_names().join(",");
    let args = [
        "compare",
        "--strategies",
        &names,
        "--buyers",
        "1",
        "--stock",
        stock,
    ];
    let (out, v) = json_on(schema, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    runs(&v, builtin_names().len())
}

fn each_builtin_buys_last_unit() -> Result<(), Failed> {
    for r in &one_buyer_each_builtin("t_last_unit", "1") {
        let name = text(r, "strategy.name");
        assert_eq!(
            int(r, "outcomes.succeeded"),
            1,
            "{name}: {}",
            r["error_messages"]
        );
        assert_eq!(int(r, "audit.units_sold"), 1, "{name}");
        assert_eq!(int(r, "audit.final_stock"), 0, "{name}");
        // One buyer races nobody: the books are clean, but nothing was
        // tested, and that is never called safe.
        assert_eq!(text(r, "verdict"), "inconclusive", "{name}");
        assert_eq!(int(r, "contention.overlapped_attempts"), 0, "{name}");
    }
    Ok(())
}

fn each_builtin_refuses_empty_stock() -> Result<(), Failed> {
    for r in &one_buyer_each_builtin("t_empty_stock", "0") {
        let name = text(r, "strategy.name");
        let refused = int(r, "outcomes.sold_out") + int(r, "outcomes.rejected");
        assert_eq!(refused, 1, "{name}: {}", r["outcomes"]);
        if name == "check-constraint" {
            assert_eq!(int(r, "outcomes.rejected"), 1, "the constraint refuses");
        } else {
            assert_eq!(int(r, "outcomes.sold_out"), 1, "{name}: {}", r["outcomes"]);
        }
        assert_eq!(
            int(r, "outcomes.errors"),
            0,
            "{name}: {}",
            r["error_messages"]
        );
        assert_eq!(int(r, "audit.units_sold"), 0, "{name}");
        assert_eq!(int(r, "audit.final_stock"), 0, "{name}");
    }
    Ok(())
}

fn injection() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let evil = "'); DROP TABLE orders; --";
    let path = script(
        dir.path(),
        "evil.sql",
        &format!(
            "-- reads a hostile product name and uses it as a variable.\n\
             \\setup\n\
             UPDATE products SET name = $evil${evil}$evil$ WHERE id = :product;\n\
             \\endsetup\n\
             BEGIN;\n\
             SELECT name FROM products WHERE id = :product \\gset\n\
             UPDATE products SET stock = stock - :qty WHERE id = :product AND name = :name;\n\
             INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);\n\
             COMMIT;\n"
        ),
    );
    let schema = "t_injection";
    let (out, v) = json_on(
        schema,
        &["run", "--strategy", &path, "--buyers", "3", "--stock", "5"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.succeeded"), 3, "{}", v["error_messages"]);
    // The name matched as a value, and the orders table is intact.
    assert_eq!(int(&v, "audit.final_stock"), 2);
    assert_eq!(
        query_one(&format!("SELECT count(*)::bigint FROM {schema}.orders")).as_deref(),
        Some("3")
    );
    assert_eq!(
        query_one(&format!("SELECT name FROM {schema}.products WHERE id = 1")).as_deref(),
        Some(evil)
    );
    Ok(())
}

fn retry_gives_up() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "always.sql",
        "-- always retries.\nBEGIN;\nSELECT 1;\n\\retry\nCOMMIT;\n",
    );
    for tries in [1, 4, 7] {
        let t = tries.to_string();
        let (out, v) = json_on(
            "t_retry",
            &[
                "run",
                "--strategy",
                &path,
                "--buyers",
                "2",
                "--max-tries",
                &t,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(int(&v, "outcomes.gave_up"), 2);
        assert_eq!(
            int(&v, "outcomes.retries"),
            2 * (tries - 1),
            "with --max-tries {tries}"
        );
        assert_eq!(int(&v, "audit.units_sold"), 0);
    }
    Ok(())
}

fn setup_scoped() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let blind = script(
        dir.path(),
        "blind.sql",
        "-- blind decrement.\nUPDATE products SET stock = stock - :qty WHERE id = :product;\n\
         INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (:product, :buyer, :attempt, :qty);\n",
    );
    let strategies = format!("check-constraint,{blind}");
    let (out, v) = json_on(
        "t_setup",
        &[
            "compare",
            "--strategies",
            &strategies,
            "--buyers",
            "5",
            "--stock",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = runs(&v, 2);
    let (cc, b): (&Value, &Value) = (&runs[0], &runs[1]);
    assert_eq!(text(cc, "strategy.name"), "check-constraint");
    // During check-constraint's run the CHECK exists: one sale, the rest rejected.
    assert_eq!(int(cc, "outcomes.succeeded"), 1);
    assert_eq!(int(cc, "outcomes.rejected"), 4);
    // In the next run it is gone: the blind decrement drives stock negative.
    assert_eq!(int(b, "audit.final_stock"), -4);
    assert_eq!(int(b, "outcomes.succeeded"), 5);
    Ok(())
}

fn parse_error() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "broken.sql",
        "-- broken.\nBEGIN;\n\\iff :stock < 1\nCOMMIT;\n",
    );
    let out = racelab()
        .args(["run", "--strategy", &path])
        .output_bounded()?;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or("");
    assert!(first.contains(&format!("{path}:3:1")), "{err}");
    assert!(first.contains("iff"), "{err}");
    Ok(())
}

fn open_transaction() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "open.sql",
        "-- forgets to commit.\nBEGIN;\nSELECT 1;\n",
    );
    let (out, v) = json_on("t_open_tx", &["run", "--strategy", &path, "--buyers", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&v, "outcomes.errors"), 2);
    let msg = v["error_messages"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("open transaction"), "{msg}");
    Ok(())
}

fn list_and_show() -> Result<(), Failed> {
    let out = racelab()
        .arg("list")
        .current_dir(std::env::temp_dir())
        .output_bounded()?;
    assert!(out.status.success());
    let text = stdout(&out);
    for name in builtin_names() {
        assert!(
            text.contains(&format!("  {name} ")),
            "{name} missing from list:\n{text}"
        );
    }
    for name in [
        "default",
        "last-item",
        "flash-sale",
        "bulk-orders",
        "hot-row",
    ] {
        assert!(
            text.contains(&format!("  {name} ")),
            "scenario {name} missing:\n{text}"
        );
    }
    let out = racelab().args(["show", "naive"]).output_bounded()?;
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim_end(),
        racelab::strategy::builtins()[0].1.trim_end()
    );
    let out = racelab().args(["show", "naiv"]).output_bounded()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("naive"),
        "suggests the closest name: {}",
        stderr(&out)
    );
    Ok(())
}
