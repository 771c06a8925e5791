//! `racelab explore` against the real server: naive's lost update found the
//! same way every time, every safe built-in safe over its whole bounded
//! space, and the scheduler's handling of what a real race does — a
//! statement waiting on a lock, a deadlock, a serialization failure,
//! NOWAIT, SKIP LOCKED, a schedule that cannot go on — each checked on one
//! replayed schedule. A counterexample replays, and its isolation-tester
//! spec shows the oversell in PostgreSQL's own `isolationtester`.

use std::path::PathBuf;
use std::process::Command;

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;
use crate::common::OutputWithin as _;

pub fn tests() -> Vec<Trial> {
    vec![
        crate::common::test(
            "explore::naive_oversells_the_same_way_every_time",
            naive_deterministic,
        ),
        crate::common::test(
            "explore::safe_builtins_are_safe_over_the_bounded_space",
            safe_builtins,
        ),
        crate::common::test(
            "explore::every_schedule_within_the_bound_runs_once",
            schedule_counts,
        ),
        crate::common::test("explore::a_wait_on_a_lock_is_detected", blocking),
        crate::common::test("explore::a_deadlock_is_broken_and_retried", deadlock),
        crate::common::test("explore::a_serialization_failure_is_retried", serialization),
        crate::common::test("explore::nowait_refuses_instead_of_waiting", nowait),
        crate::common::test("explore::skip_locked_skips_instead_of_waiting", skip_locked),
        crate::common::test("explore::a_stuck_schedule_is_reported", stuck),
        crate::common::test("explore::a_counterexample_replays", replay),
        crate::common::test(
            "explore::the_spec_shows_the_oversell_in_isolationtester",
            isolationtester,
        ),
        crate::common::test("explore::bad_schedules_exit_2", bad_schedules),
        crate::common::test("explore::expect_sets_the_exit_code", expect),
        crate::common::test("explore::json_follows_the_schema", schema),
        crate::common::test("explore::report_draws_the_swim_lanes", report),
        crate::common::test("explore::the_lab_reset_restores_the_snapshot", lab_reset),
        crate::common::test("explore::its_flags_fit_the_command_line", flags),
    ]
}

/// The explore flags next to the shared groups it flattens: no clash.
fn flags() -> Result<(), Failed> {
    use clap::CommandFactory as _;
    racelab::cli::Cli::command().debug_assert();
    let help = racelab().args(["explore", "--help"]).output_bounded()?;
    let text = stdout(&help);
    for flag in [
        "--preemptions",
        "--schedule",
        "--spec",
        "--step",
        "--expect",
        "--junit",
        "--database-url",
    ] {
        assert!(text.contains(flag), "{flag} missing from explore --help");
    }
    Ok(())
}

/// `racelab explore <args> --json` on the shared server, in `schema`.
fn explore(schema: &str, args: &[&str]) -> (std::process::Output, Value) {
    let mut all = vec!["explore"];
    all.extend_from_slice(args);
    json_on(schema, &all)
}

fn steps(v: &Value) -> Vec<Value> {
    v["steps"].as_array().cloned().unwrap_or_default()
}

fn buyers(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("a list of buyers")
        .iter()
        .map(|b| b.as_i64().expect("a buyer number"))
        .collect()
}

/// The outcome of `buyer` in a recorded schedule.
fn outcome_of(schedule: &Value, buyer: i64) -> (String, i64) {
    let b = schedule["buyers"]
        .as_array()
        .expect("buyers")
        .iter()
        .find(|b| b["buyer"] == buyer)
        .unwrap_or_else(|| panic!("no buyer {buyer} in {schedule}"));
    (text(b, "outcome"), int(b, "tries"))
}

fn naive_deterministic() -> Result<(), Failed> {
    let (out, a) = explore("t_explore_naive", &["--strategy", "naive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(text(&a, "verdict"), "oversold");
    assert_eq!(a["complete"], true);
    assert_eq!(int(&a, "buyers"), 2);
    assert_eq!(int(&a, "stock"), 1);
    assert!(int(&a, "schedules_explored") > int(&a, "unsafe_schedules"));
    assert!(int(&a, "unsafe_schedules") >= 1);
    let c = &a["counterexample"];
    assert_eq!(text(c, "verdict"), "oversold");
    assert_eq!(int(c, "audit.units_sold"), 2);
    assert_eq!(int(c, "audit.oversold_units"), 1);
    // Both buyers read the one unit before either commits: every step of
    // both attempts is needed, so the shortest is the two scripts in full.
    let names: Vec<String> = c["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|x| text(x, "name"))
        .collect();
    assert!(names.iter().any(|n| n == "P4 lost update"), "{names:?}");
    assert_eq!(
        int(&a, "anomalies_seen.P4 lost update"),
        int(&a, "unsafe_schedules")
    );
    // The overwritten update is placed on the steps.
    let an = &c["anomalies"][0];
    let over = &an["overtook"][0];
    let write = int(over, "write_step") as usize;
    assert_eq!(steps(c)[write - 1]["role"], "write");
    assert_eq!(
        steps(c)[int(an, "commit_step") as usize - 1]["role"],
        "commit"
    );

    // Same arguments, same counts and the same counterexample.
    let (_, b) = explore("t_explore_naive", &["--strategy", "naive"]);
    for key in [
        "schedules_explored",
        "unsafe_schedules",
        "oversold_schedules",
        "steps",
        "waits",
        "deadlocks",
    ] {
        assert_eq!(a[key], b[key], "{key} differs between two runs");
    }
    assert_eq!(
        a["counterexample"]["schedule"],
        b["counterexample"]["schedule"]
    );
    assert_eq!(a["outcomes"], b["outcomes"]);

    // A wider bound explores a superset.
    let (_, all) = explore(
        "t_explore_naive",
        &["--strategy", "naive", "--preemptions", "all"],
    );
    assert_eq!(all["preemption_bound"], Value::Null);
    assert!(int(&all, "schedules_explored") > int(&a, "schedules_explored"));
    let (_, zero) = explore(
        "t_explore_naive",
        &["--strategy", "naive", "--preemptions", "0"],
    );
    // Without a preemption one buyer runs to the end first: never a lost update.
    assert_eq!(text(&zero, "verdict"), "safe", "{zero}");
    Ok(())
}

fn safe_builtins() -> Result<(), Failed> {
    let safe = [
        "for-update",
        "conditional",
        "optimistic",
        "advisory",
        "serializable",
        "repeatable-read",
        "check-constraint",
        "skip-locked",
        "idempotent",
    ];
    let mut runs: Vec<(&str, &str)> = safe.iter().map(|s| (*s, "2")).collect();
    runs.push(("for-update", "3"));
    runs.push(("conditional", "3"));
    for (strategy, buyers) in runs {
        let (out, v) = explore(
            "t_explore_safe",
            &[
                "--strategy",
                strategy,
                "--buyers",
                buyers,
                "--expect",
                "safe",
            ],
        );
        assert!(
            out.status.success(),
            "{strategy} with {buyers} buyers: {}\n{v}",
            stderr(&out)
        );
        assert_eq!(text(&v, "verdict"), "safe", "{strategy}/{buyers}: {v}");
        assert_eq!(v["complete"], true, "{strategy}/{buyers}");
        assert_eq!(int(&v, "unsafe_schedules"), 0);
        assert_eq!(v["counterexample"], Value::Null);
        assert!(
            int(&v, "schedules_explored") >= 2,
            "{strategy}/{buyers}: {v}"
        );
        // Every buyer of every schedule finished its one attempt.
        let attempts: i64 = v["outcomes"]
            .as_object()
            .expect("outcomes")
            .values()
            .map(|n| n.as_i64().expect("count"))
            .sum();
        assert_eq!(
            attempts,
            int(&v, "schedules_explored") * buyers.parse::<i64>()?,
            "{strategy}/{buyers}"
        );
    }
    Ok(())
}

/// Three statements per buyer, no lock held between them and no branch:
/// every interleaving of the two buyers' statements is a schedule of its
/// own, so the counts are known without running anything.
const THREE_STEPS: &str = "\
-- three steps: read, record, decrement, each in a transaction of its own.
SELECT stock FROM products WHERE id = :product \\gset
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
UPDATE products SET stock = stock - :qty WHERE id = :product;
";

fn schedule_counts() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(dir.path(), "three.sql", THREE_STEPS);
    // Two buyers of 3 steps: all C(6, 3) = 20 interleavings; with at most
    // one preemption, the 2 runs of one buyer after the other plus, for
    // each buyer first, its 2 places to be cut (2 x 2); with none, the 2.
    for (bound, want) in [("all", 20), ("1", 6), ("0", 2)] {
        let (out, v) = explore(
            "t_explore_counts",
            &["--strategy", &path, "--stock", "2", "--preemptions", bound],
        );
        assert!(out.status.success(), "{bound}: {}", stderr(&out));
        assert_eq!(
            int(&v, "schedules_explored"),
            want,
            "--preemptions {bound}: {v}"
        );
        assert_eq!(v["complete"], true, "{bound}");
        assert_eq!(
            int(&v, "steps"),
            want * 6,
            "{bound}: every schedule ran 6 steps"
        );
        assert_eq!(int(&v, "waits"), 0, "{bound}");
        assert_eq!(int(&v, "outcomes.succeeded"), want * 2, "{bound}: {v}");
        assert_eq!(text(&v, "verdict"), "safe", "{bound}: {v}");
    }
    Ok(())
}

fn blocking() -> Result<(), Failed> {
    // Buyer 1 locks the row; buyer 2's locking read must wait for its COMMIT.
    let (out, v) = explore(
        "t_explore_block",
        &["--strategy", "for-update", "--schedule", "1 1 2 2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &v["replay"];
    let s = steps(r);
    assert_eq!(s[3]["buyer"], 2);
    assert_eq!(buyers(&s[3]["waited_for"]), [1]);
    // It completed with buyer 1's COMMIT, and then saw the new stock.
    let done = int(&s[3], "completed_after") as usize;
    assert_eq!(s[done - 1]["buyer"], 1);
    assert_eq!(s[done - 1]["role"], "commit");
    assert_eq!(s[3]["value"], 0);
    // While buyer 2 waited, only buyer 1 could run: the schedule went on
    // with buyer 1 without that being a preemption.
    assert!(s[4..done]
        .iter()
        .all(|x| x["buyer"] == 1 && x["preemption"] == false));
    assert_eq!(int(&v, "waits"), 1);
    assert_eq!(outcome_of(r, 2).0, "sold_out");
    Ok(())
}

const SHARE_THEN_UPDATE: &str = "\
-- share then update: both buyers share-lock the row, then both write it.
BEGIN;
SELECT stock FROM products WHERE id = :product FOR SHARE \\gset
\\if :stock < :qty
  ROLLBACK;
  \\sold_out
\\endif
UPDATE products SET stock = stock - :qty WHERE id = :product;
INSERT INTO orders (product_id, buyer_id, attempt_id, qty)
  VALUES (:product, :buyer, :attempt, :qty);
COMMIT;
";

fn deadlock() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(dir.path(), "share.sql", SHARE_THEN_UPDATE);
    // Both take the share lock, then buyer 1 writes (waits on buyer 2's
    // share lock) and buyer 2 writes (waits on buyer 1's): a deadlock.
    let (out, v) = explore(
        "t_explore_deadlock",
        &[
            "--strategy",
            &path,
            "--stock",
            "2",
            "--schedule",
            "1 1 2 2 1 2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&v, "deadlocks"), 1, "{v}");
    let r = &v["replay"];
    // Buyer 1's deadlock check ran out while it waited on buyer 2 alone
    // (no cycle yet); buyer 2's wait closed the cycle, so its check finds
    // it: PostgreSQL breaks it in buyer 2 (see `explore::scheduler`).
    assert_eq!(buyers(&r["deadlock_victims"]), [2]);
    let s = steps(r);
    assert_eq!(buyers(&s[4]["waited_for"]), [2]);
    assert_eq!(buyers(&s[5]["waited_for"]), [1]);
    assert!(text(&s[5], "error").starts_with("40P01"), "{}", s[5]);
    // The victim rolls back and buys on its second try.
    assert_eq!(outcome_of(r, 1), ("succeeded".to_string(), 1));
    assert_eq!(outcome_of(r, 2), ("succeeded".to_string(), 2));
    assert_eq!(int(r, "audit.units_sold"), 2);
    assert_eq!(text(&v, "verdict"), "safe");

    // The whole space: every deadlock broken, nothing stuck, and the same
    // counts twice (which buyer PostgreSQL picks does not wobble).
    let (_, a) = explore("t_explore_deadlock", &["--strategy", &path, "--stock", "2"]);
    assert_eq!(text(&a, "verdict"), "safe", "{a}");
    assert!(int(&a, "deadlocks") >= 1);
    assert_eq!(int(&a, "stuck_schedules"), 0);
    let (_, b) = explore("t_explore_deadlock", &["--strategy", &path, "--stock", "2"]);
    for key in ["schedules_explored", "deadlocks", "waits", "steps"] {
        assert_eq!(a[key], b[key], "{key} differs between two runs");
    }
    Ok(())
}

fn serialization() -> Result<(), Failed> {
    // Both read the one unit; buyer 1 writes; buyer 2's write waits on it;
    // buyer 1 commits, so buyer 2's write fails with 40001 and it retries,
    // reads 0 and is sold out.
    let (out, v) = explore(
        "t_explore_serial",
        &[
            "--strategy",
            "serializable",
            "--schedule",
            "1 1 2 2 1 2 1 1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &v["replay"];
    let s = steps(r);
    assert_eq!(buyers(&s[5]["waited_for"]), [1]);
    assert!(text(&s[5], "error").starts_with("40001"), "{}", s[5]);
    assert_eq!(s[8]["rollback_by_racelab"], true);
    assert_eq!(s[8]["buyer"], 2);
    assert!(s.iter().any(|x| x["buyer"] == 2 && x["try"] == 2));
    assert_eq!(outcome_of(r, 2), ("sold_out".to_string(), 2));
    assert_eq!(text(&v, "verdict"), "safe");
    assert_eq!(int(r, "audit.units_sold"), 1);
    Ok(())
}

fn nowait() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "nowait.sql",
        "-- nowait: refuse rather than wait for the row lock.\n\
         BEGIN;\n\
         SELECT stock FROM products WHERE id = :product FOR UPDATE NOWAIT \\gset\n\
         \\if :stock < :qty\n  ROLLBACK;\n  \\sold_out\n\\endif\n\
         UPDATE products SET stock = :stock - :qty WHERE id = :product;\n\
         INSERT INTO orders (product_id, buyer_id, attempt_id, qty)\n  VALUES (:product, :buyer, :attempt, :qty);\n\
         COMMIT;\n",
    );
    let (out, v) = explore(
        "t_explore_nowait",
        &["--strategy", &path, "--schedule", "1 1 2 2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &v["replay"];
    let s = steps(r);
    // Buyer 2's locking read fails at once instead of waiting.
    assert_eq!(s[3]["waited_for"], Value::Array(vec![]));
    assert!(text(&s[3], "error").starts_with("55P03"), "{}", s[3]);
    assert_eq!(outcome_of(r, 2).0, "rejected");
    assert_eq!(outcome_of(r, 1).0, "succeeded");
    // Over the whole space nothing ever waits.
    let (_, all) = explore("t_explore_nowait", &["--strategy", &path]);
    assert_eq!(int(&all, "waits"), 0, "{all}");
    assert_eq!(text(&all, "verdict"), "safe");
    Ok(())
}

fn skip_locked() -> Result<(), Failed> {
    // Buyer 1 claims the only unit; buyer 2 skips the locked row, claims
    // nothing and is sold out, without waiting.
    let (out, v) = explore(
        "t_explore_skip",
        &["--strategy", "skip-locked", "--schedule", "1 1 2 2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let r = &v["replay"];
    let s = steps(r);
    assert_eq!(s[3]["waited_for"], Value::Array(vec![]));
    assert_eq!(s[3]["values"][0][1], "0", "{}", s[3]);
    assert_eq!(outcome_of(r, 2).0, "sold_out");
    assert_eq!(int(&v, "waits"), 0);
    // With two units both buy, still without a wait.
    let (_, two) = explore(
        "t_explore_skip",
        &[
            "--strategy",
            "skip-locked",
            "--stock",
            "2",
            "--schedule",
            "1 1 2 2",
        ],
    );
    assert_eq!(int(&two["replay"], "audit.units_sold"), 2);
    assert_eq!(int(&two, "waits"), 0);
    Ok(())
}

fn stuck() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    // A session-level lock outlives the attempt: once buyer 1 has finished,
    // buyer 2 waits on it for ever.
    let path = script(
        dir.path(),
        "stuck.sql",
        "-- stuck: a session advisory lock that is never released.\n\
         SELECT pg_advisory_lock(:product);\n\
         UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= :qty;\n\
         \\if :rows = 0\n  \\sold_out\n\\endif\n\
         INSERT INTO orders (product_id, buyer_id, attempt_id, qty)\n  VALUES (:product, :buyer, :attempt, :qty);\n",
    );
    let started = std::time::Instant::now();
    let (out, v) = explore(
        "t_explore_stuck",
        &["--strategy", &path, "--schedule", "1 1 1 2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&v, "stuck_schedules"), 1, "{v}");
    assert_eq!(text(&v, "verdict"), "inconclusive");
    let what = text(&v, "first_problem.what");
    assert!(
        what.contains("buyer 2 waits") && what.contains("buyer 1"),
        "{what}"
    );
    // Reported after the grace period, not hung (generous bound).
    assert!(started.elapsed().as_secs() < 60);
    let (out, _) = explore(
        "t_explore_stuck",
        &[
            "--strategy",
            &path,
            "--schedule",
            "1 1 1 2",
            "--expect",
            "safe",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not proven safe"), "{}", stderr(&out));
    Ok(())
}

fn replay() -> Result<(), Failed> {
    let (_, v) = explore("t_explore_replay", &["--strategy", "naive"]);
    let c = &v["counterexample"];
    let schedule: Vec<String> = buyers(&c["schedule"]).iter().map(i64::to_string).collect();
    let arg = schedule.join(" ");
    let (out, r) = explore(
        "t_explore_replay",
        &["--strategy", "naive", "--schedule", &arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&r, "schedules_explored"), 1);
    assert_eq!(text(&r, "verdict"), "oversold");
    assert_eq!(r["replayed"], c["schedule"]);
    assert_eq!(r["counterexample"]["schedule"], c["schedule"]);
    assert_eq!(r["counterexample"]["audit"], c["audit"]);
    let sql = |x: &Value| -> Vec<String> { steps(x).iter().map(|s| text(s, "sql")).collect() };
    assert_eq!(sql(&r["counterexample"]), sql(c));
    // The human report says how to replay it.
    let out = racelab_on("t_explore_replay", &["explore", "--strategy", "naive"]);
    let text = stdout(&out);
    assert!(text.contains(&format!("--schedule \"{arg}\"")), "{text}");
    assert!(text.contains("P4 lost update"), "{text}");
    // The shared output flags: --trace FILE writes the counterexample's
    // events, --junit a failing case for --expect safe.
    let dir = tempfile::tempdir()?;
    let (trace, junit) = (dir.path().join("t.jsonl"), dir.path().join("j.xml"));
    let (t, j) = (trace.display().to_string(), junit.display().to_string());
    let out = racelab_on(
        "t_explore_replay",
        &[
            "explore",
            "--strategy",
            "naive",
            "--trace",
            &t,
            "--junit",
            &j,
            "--expect",
            "safe",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<Value> = std::fs::read_to_string(&trace)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(lines
        .iter()
        .any(|l| l["type"] == "anomaly" && l["name"] == "P4 lost update"));
    let events = lines
        .iter()
        .filter(|l| l["type"] == "event" && l["kind"] == "sql")
        .count();
    assert_eq!(
        events as i64,
        c["steps"].as_array().map_or(0, |s| s.len() as i64)
    );
    let xml = std::fs::read_to_string(&junit)?;
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("naive was unsafe"),
        "{xml}"
    );
    Ok(())
}

/// PostgreSQL's isolation tester, next to the server binaries (it comes
/// with the client package the server package depends on).
fn isolationtester_bin() -> Option<PathBuf> {
    let bins = racelab::db::bins::find_server_bins(None).ok()?;
    let bin = bins
        .postgres
        .parent()?
        .parent()?
        .join("lib/pgxs/src/test/isolation/isolationtester");
    bin.exists().then_some(bin)
}

fn isolationtester() -> Result<(), Failed> {
    let Some(bin) = isolationtester_bin() else {
        return Err("isolationtester not found next to the server binaries (lib/pgxs/src/test/isolation/isolationtester, from the postgresql-client package)".into());
    };
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("naive.spec");
    let spec_arg = spec.display().to_string();
    let (out, v) = explore(
        "t_explore_spec",
        &["--strategy", "naive", "--spec", &spec_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text_of_spec = std::fs::read_to_string(&spec)?;
    assert!(text_of_spec.contains("permutation "), "{text_of_spec}");
    assert_eq!(text_of_spec.matches("\nsession buyer").count(), 2);
    let child = Command::new(&bin)
        .arg(crate::common::server_url())
        .stdin(std::fs::File::open(&spec)?)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let run = crate::common::wait_output(child, "isolationtester", crate::common::CHILD_LIMIT)?;
    let shown = stdout(&run);
    assert!(run.status.success(), "{shown}\n{}", stderr(&run));
    // The audit step's header, then its row.
    let lines: Vec<&str> = shown.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.replace(' ', "") == "initial_stock|units_sold|final_stock|oversold")
        .ok_or_else(|| format!("no audit result in:\n{shown}"))?;
    let row: Vec<i64> = lines[at + 2]
        .split('|')
        .map(|c| c.trim().parse().expect("a number"))
        .collect();
    let c = &v["counterexample"];
    assert_eq!(
        row,
        [
            int(c, "audit.initial_stock"),
            int(c, "audit.units_sold"),
            int(c, "audit.final_stock"),
            int(c, "audit.oversold_units"),
        ],
        "{shown}"
    );
    assert!(row[3] >= 1, "no oversell: {shown}");
    // Its buyer's write waits just as it did under racelab's scheduler.
    let waited = steps(c)
        .iter()
        .filter(|s| !s["waited_for"].as_array().expect("list").is_empty())
        .count();
    assert_eq!(shown.matches("<waiting ...>").count(), waited, "{shown}");
    // The spec cleans up after itself.
    assert_eq!(
        query_one("SELECT count(*)::text FROM pg_namespace WHERE nspname = 't_explore_spec_spec'")
            .as_deref(),
        Some("0")
    );
    Ok(())
}

fn bad_schedules() -> Result<(), Failed> {
    let s = "t_explore_bad";
    let out = racelab_on(s, &["explore", "--strategy", "naive", "--schedule", "1 3"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("step 2 names buyer 3") && e.contains("only 2 buyers"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    // naive without a preemption: buyer 1 has finished after 5 steps.
    let out = racelab_on(
        s,
        &[
            "explore",
            "--strategy",
            "naive",
            "--schedule",
            "1 1 1 1 1 1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("step 6 names buyer 1, who has finished"), "{e}");
    // A buyer that waits on a lock cannot take the next step.
    let out = racelab_on(
        s,
        &[
            "explore",
            "--strategy",
            "for-update",
            "--schedule",
            "1 1 2 2 2",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("step 5 names buyer 2, who is waiting for a lock buyer 1 holds"),
        "{}",
        stderr(&out)
    );
    let out = racelab_on(
        s,
        &[
            "explore",
            "--strategy",
            "conditional",
            "--schedule",
            "1 2 1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every buyer finished after 2"),
        "{}",
        stderr(&out)
    );
    for (args, says) in [
        (vec!["--preemptions", "many"], "--preemptions"),
        (vec!["--buyers", "0"], "--buyers"),
        (vec!["--buyers", "99"], "--buyers"),
        (vec!["--quantity", "0"], "--quantity"),
        (vec!["--schedule", "1 x"], "not a buyer number"),
        (vec!["--step"], "needs a terminal"),
    ] {
        let mut all = vec!["explore", "--strategy", "naive"];
        all.extend(args.iter().copied());
        let out = racelab_on(s, &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    Ok(())
}

fn expect() -> Result<(), Failed> {
    let s = "t_explore_expect";
    let out = racelab_on(s, &["explore", "--strategy", "naive", "--expect", "safe"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("naive was unsafe") && e.contains("--schedule \""),
        "{e}"
    );
    let out = racelab_on(
        s,
        &["explore", "--strategy", "naive", "--expect", "oversold"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = racelab_on(
        s,
        &[
            "explore",
            "--strategy",
            "conditional",
            "--expect",
            "oversold",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A space cut short is not a proof.
    let out = racelab_on(
        s,
        &[
            "explore",
            "--strategy",
            "for-update",
            "--max-schedules",
            "2",
            "--expect",
            "safe",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--max-schedules 2"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

fn schema() -> Result<(), Failed> {
    let doc: Value = serde_json::from_str(include_str!("../../docs/result.schema.json"))?;
    // $defs/explore_result, resolved inside the whole document (it refers
    // to the parts it shares with a run result).
    let id = doc["$id"]
        .as_str()
        .ok_or("the schema has an $id")?
        .to_string();
    let resource =
        jsonschema::Resource::from_contents(doc.clone()).map_err(|e| format!("schema: {e}"))?;
    let validator = jsonschema::options()
        .with_resource(id.clone(), resource)
        .build(&serde_json::json!({ "$ref": format!("{id}#/$defs/explore_result") }))
        .map_err(|e| format!("schema: {e}"))?;
    let (_, naive) = explore("t_explore_schema", &["--strategy", "naive"]);
    let (_, replay) = explore(
        "t_explore_schema",
        &[
            "--strategy",
            "serializable",
            "--schedule",
            "1 1 2 2 1 2 1 1",
        ],
    );
    let (_, safe) = explore("t_explore_schema", &["--strategy", "conditional"]);
    for v in [&naive, &replay, &safe] {
        let errors: Vec<String> = validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "explore result does not follow the schema: {errors:?}"
        );
    }
    let mut broken = naive.clone();
    broken["counterexample"]["schedule"] = Value::from("1 2");
    assert!(!validator.is_valid(&broken));
    let mut broken = naive.clone();
    broken["verdict"] = Value::from("fine");
    assert!(!validator.is_valid(&broken));
    // A run result is not an explore result.
    let (_, run) = json_on(
        "t_explore_schema",
        &["run", "--strategy", "naive", "--buyers", "2"],
    );
    assert!(!validator.is_valid(&run));
    Ok(())
}

fn report() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let results = dir.path().join("results");
    let out = racelab()
        .args(["explore", "--strategy", "naive", "--quiet", "--out"])
        .arg(&results)
        .args([
            "--database-url",
            crate::common::server_url(),
            "--schema",
            "t_explore_report",
        ])
        .output_bounded()?;
    assert!(out.status.success(), "{}", stderr(&out));
    let html = dir.path().join("report.html");
    let (files, out) = report_of(&results, &html)?;
    assert_eq!(files.len(), 1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 explore result"),
        "{}",
        stdout(&out)
    );
    let page = std::fs::read_to_string(&html)?;
    assert!(!page.contains("<script") && !page.contains(" src=") && !page.contains("href="));
    assert!(page.contains("Explore: naive"), "{page}");
    let svg_at = page.find("<svg").ok_or("no diagram")?;
    let svg = &page[svg_at..page[svg_at..].find("</svg>").ok_or("unclosed svg")? + svg_at];
    assert!(
        svg.contains(">buyer 1<") && svg.contains(">buyer 2<"),
        "one lane per buyer"
    );
    assert!(
        svg.contains("lost: buyer 2 overwrites it (P4 lost update)")
            || svg.contains("lost: buyer 1 overwrites it (P4 lost update)"),
        "{svg}"
    );
    assert!(svg.contains("waits for buyer"), "{svg}");
    assert!(svg.contains("commits"), "{svg}");
    Ok(())
}

fn lab_reset() -> Result<(), Failed> {
    crate::common::block_on(async {
        use racelab::db::{Database, ProductSeed};
        use racelab::explore::lab::Lab;
        use sqlx::Executor as _;

        let db = Database::open(&crate::common::external_options("t_explore_lab")).await?;
        let strategy = racelab::strategy::load("skip-locked")?;
        let mut conn = db.connect().await?;
        let seeds = [ProductSeed {
            id: 1,
            name: "product 1".into(),
            stock: 3,
        }];
        let lab = Lab::prepare(&db, &strategy, &seeds, &mut conn).await?;
        assert!(lab.tables.contains(&"units".to_string()), "{:?}", lab.tables);
        // Parents before children: products before orders.
        let pos = |t: &str| lab.tables.iter().position(|x| x == t);
        assert!(pos("products") < pos("orders"), "{:?}", lab.tables);
        let dump = "SELECT (SELECT json_agg(p ORDER BY id)::text FROM products p) || \
                    coalesce((SELECT json_agg(o ORDER BY id)::text FROM orders o), '-') || \
                    (SELECT json_agg(u ORDER BY unit_no)::text FROM units u) || \
                    (SELECT last_value::text || is_called::text FROM orders_id_seq)";
        let before: String = sqlx::query_scalar(dump).fetch_one(&mut conn).await?;
        conn.execute(sqlx::raw_sql(
            "DELETE FROM units WHERE unit_no = 1; \
             UPDATE products SET stock = -5, version = version + 1; \
             INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (1, 1, 1, 1), (1, 2, 2, 1)",
        ))
        .await?;
        let dirty: String = sqlx::query_scalar(dump).fetch_one(&mut conn).await?;
        assert_ne!(before, dirty);
        lab.reset(&mut conn).await?;
        let after: String = sqlx::query_scalar(dump).fetch_one(&mut conn).await?;
        assert_eq!(before, after);
        // The next order gets the id the first one would have had.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO orders (product_id, buyer_id, attempt_id, qty) VALUES (1, 1, 1, 1) RETURNING id",
        )
        .fetch_one(&mut conn)
        .await?;
        assert_eq!(id, 1);
        drop(conn);
        db.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })
    .map_err(|e| Failed::from(format!("{e:#}")))
}
