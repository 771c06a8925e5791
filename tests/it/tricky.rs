//! The tricky scripts of `tests/tricky/` (written to fool a reader that
//! looks at words instead of facts), and the built-ins, held against
//! execution. Each script's name says explain's verdict (`safe-`,
//! `unsafe-`, `unsure-`; an unsure script says what really happens in a
//! `-- truth: safe | oversold | errors` line). For each one:
//!
//! - `explain --check` (2 buyers, every schedule up to 2 preemptions):
//!   explain's verdict is the name's, exploring finds the truth, and where
//!   explain is sure the two agree;
//! - a race (15 buyers): a safe script sells, cleanly (verdict safe, no
//!   error); an unsafe one oversells or drifts within three races.
//!
//! Scripts that send `\redis` commands cannot be explored: they are raced.

use crate::common::OutputWithin as _;
use std::path::{Path, PathBuf};

use libtest_mimic::{Failed, Trial};
use serde_json::Value;

use crate::cli::*;

/// The preemption bound of the checks here (2 buyers).
const BOUND: &str = "2";
/// Races for an unsafe script to show itself before the test fails.
const RACES: usize = 3;

/// What really happens when the script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Safe,
    Unsafe,
    /// Every attempt ends in an error (nothing sold).
    Errors,
}

fn scripts() -> Vec<(String, PathBuf)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tricky"));
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("tests/tricky exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let name = p
                .file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (name, p)
        })
        .collect();
    v.sort();
    v
}

pub fn tests() -> Vec<Trial> {
    let mut t: Vec<Trial> = scripts()
        .into_iter()
        .map(|(name, path)| {
            crate::common::test(format!("tricky::{name}"), move || tricky(&name, &path))
        })
        .collect();
    for (name, _) in racelab::strategy::builtins() {
        let name = name.to_string();
        t.push(crate::common::test(
            format!("tricky::builtin_{name}_check_agrees"),
            move || builtin(&name),
        ));
    }
    t.push(crate::common::test(
        "tricky::a_safe_script_whose_attempts_all_fail_is_not_passed",
        planted,
    ));
    t
}

/// The truth an unsure script states.
fn stated_truth(source: &str) -> Option<Truth> {
    let line = source
        .lines()
        .find_map(|l| l.trim().strip_prefix("-- truth:"))?;
    match line.trim() {
        "safe" => Some(Truth::Safe),
        "oversold" | "unsafe" => Some(Truth::Unsafe),
        "errors" => Some(Truth::Errors),
        _ => None,
    }
}

fn schema_of(prefix: &str, name: &str) -> String {
    let mut s: String = format!("t_{prefix}_{}", name.replace('-', "_"));
    // PostgreSQL names are 63 bytes at most.
    s.truncate(60);
    s
}

fn tricky(name: &str, path: &Path) -> Result<(), Failed> {
    let source = std::fs::read_to_string(path)?;
    let (want, truth) = match name.split('-').next() {
        Some("safe") => ("safe", Truth::Safe),
        Some("unsafe") => ("unsafe", Truth::Unsafe),
        Some("unsure") => (
            "unsure",
            stated_truth(&source).ok_or(format!("{name} has no `-- truth:` line"))?,
        ),
        _ => {
            return Err(
                format!("{name}: the name does not start with safe-, unsafe- or unsure-").into(),
            )
        }
    };
    let path = path.display().to_string();
    let c = check(&schema_of("tx", name), &path)?;
    let verdict = c["verdict"].as_str().unwrap_or_default().to_string();
    if verdict != want {
        return Err(format!(
            "explain says {verdict} for {name}, not {want}: {:#}",
            c["findings"]
        )
        .into());
    }
    if want == "unsure" {
        let named = c["findings"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["level"] == "unsure" && !f["text"].as_str().unwrap_or("").is_empty())
        });
        if !named {
            return Err(format!(
                "{name} is UNSURE without a named reason: {:#}",
                c["findings"]
            )
            .into());
        }
    }
    explored_truth(name, &c, truth)?;
    race(name, &path, truth)
}

/// `racelab explain PATH --check --json` on the shared server.
fn check(schema: &str, path: &str) -> Result<Value, Failed> {
    let out = racelab()
        .args([
            "explain",
            path,
            "--check",
            "--json",
            "--no-remedy",
            "--preemptions",
            BOUND,
            "--database-url",
            crate::common::server_url(),
            "--schema",
            schema,
        ])
        .output_bounded()?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "explain --check printed no JSON ({e}); exit {:?}\n{}",
            out.status.code(),
            stderr(&out)
        )
    })?;
    let code = out.status.code();
    let decided = match v["check"]["explored"]["verdict"].as_str() {
        Some("safe") => "safe",
        Some("oversold" | "inconsistent") => "unsafe",
        _ => v["verdict"].as_str().unwrap_or_default(),
    };
    let want = match decided {
        "safe" => 0,
        "unsafe" => 1,
        _ => 4,
    };
    if code != Some(want) {
        return Err(format!(
            "explain --check exited {code:?}, not {want} ({decided}): {}",
            stderr(&out)
        )
        .into());
    }
    Ok(v)
}

/// What exploring found must be the truth, and where explain is sure the
/// two agree.
fn explored_truth(name: &str, c: &Value, truth: Truth) -> Result<(), Failed> {
    let check = &c["check"];
    if !check["not_explored"].is_null() {
        // \redis: raced only.
        return Ok(());
    }
    let r = &check["explored"];
    let verdict = r["verdict"].as_str().unwrap_or_default();
    let ok = match truth {
        Truth::Safe => verdict == "safe",
        Truth::Unsafe => verdict == "oversold" || verdict == "inconsistent",
        Truth::Errors => {
            verdict == "inconclusive"
                && r["error_schedules"].as_u64() == r["schedules_explored"].as_u64()
        }
    };
    if !ok {
        return Err(format!(
            "{name}: exploring found it {verdict} ({} of {} schedules unsafe, {} with errors; {}), not {truth:?}",
            r["unsafe_schedules"], r["schedules_explored"], r["error_schedules"], r["verdict_reason"]
        )
        .into());
    }
    let agreement = check["agreement"].as_str().unwrap_or_default();
    let expected = match c["verdict"].as_str() {
        Some("unsure") if truth == Truth::Errors => "undecided",
        Some("unsure") => "decided",
        _ => "agree",
    };
    if agreement != expected {
        return Err(format!(
            "{name}: explain --check says {agreement}: {}",
            check["summary"]
        )
        .into());
    }
    Ok(())
}

/// Race the script: a safe one sells cleanly, an unsafe one shows itself
/// within `RACES` races.
/// The buyers a script's race takes: 15, or its `-- race buyers: N` line
/// (a shape that livelocks a crowd, such as share locks upgraded by every
/// buyer, is raced by as many as make progress; racelab calls the crowd's
/// race INCONCLUSIVE, `bounds::` tests that).
fn race_buyers(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.trim().strip_prefix("-- race buyers:"))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| "15".to_string())
}

fn race(name: &str, path: &str, truth: Truth) -> Result<(), Failed> {
    let schema = schema_of("tr", name);
    let buyers = race_buyers(path);
    for attempt in 1..=RACES {
        let (out, json) = json_on(
            &schema,
            &[
                "run",
                "--strategy",
                path,
                "--buyers",
                &buyers,
                "--stock",
                "5",
                "--think-ms",
                "5",
                "--max-tries",
                "0",
            ],
        );
        if !(out.status.success() || out.status.code() == Some(1)) {
            return Err(format!("{name}: racelab run failed: {}", stderr(&out)).into());
        }
        let r = &runs(&json, 1)[0];
        let oversold = int(r, "audit.oversold_units");
        let drift = int(r, "audit.stock_drift");
        let errors = int(r, "outcomes.errors");
        let sold = int(r, "audit.units_sold");
        let verdict = r["verdict"].as_str().unwrap_or_default().to_string();
        match truth {
            Truth::Safe => {
                return assert_clean_sale(name, &verdict, errors, sold, oversold, drift);
            }
            Truth::Errors => {
                let attempts = int(r, "outcomes.attempts");
                if errors != attempts || sold != 0 {
                    return Err(format!("{name}: {errors} of {attempts} attempts ended in error, {sold} sold; every attempt should fail").into());
                }
                return Ok(());
            }
            Truth::Unsafe if oversold > 0 || drift != 0 => return Ok(()),
            Truth::Unsafe if attempt == RACES => {
                return Err(format!(
                    "{name} is unsafe but {RACES} races of {buyers} buyers neither oversold nor drifted (verdict {verdict})"
                )
                .into())
            }
            Truth::Unsafe => {}
        }
    }
    Ok(())
}

/// A safe script's race: the verdict is safe, no attempt erred, and units
/// were sold (a script whose every attempt fails sells nothing safely).
fn assert_clean_sale(
    name: &str,
    verdict: &str,
    errors: i64,
    sold: i64,
    oversold: i64,
    drift: i64,
) -> Result<(), Failed> {
    if verdict != "safe" || errors != 0 || sold == 0 {
        return Err(format!(
            "{name} is called SAFE, but its race was {verdict}: {errors} errors, {sold} units sold, {oversold} oversold, drift {drift}"
        )
        .into());
    }
    Ok(())
}

/// `explain --check` on a built-in agrees with explore (the Redis ones
/// cannot be explored, and say so).
fn builtin(name: &str) -> Result<(), Failed> {
    let c = check(&schema_of("tb", name), name)?;
    let check = &c["check"];
    let redis = racelab::strategy::load(name)?
        .program
        .first_redis_line()
        .is_some();
    if redis {
        if check["not_explored"].is_null() {
            return Err(format!("{name} sends \\redis commands, yet was explored").into());
        }
        return Ok(());
    }
    let agreement = check["agreement"].as_str().unwrap_or_default();
    let ok = match c["verdict"].as_str() {
        Some("unsure") => agreement == "decided",
        _ => agreement == "agree",
    };
    if !ok {
        return Err(format!("{name}: {}", check["summary"]).into());
    }
    Ok(())
}

/// A script named safe whose every attempt fails sells nothing: the race
/// check must not pass it.
fn planted() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = script(
        dir.path(),
        "safe-planted-errors.sql",
        "-- Every attempt divides by zero.\nBEGIN;\nSELECT 1 / (stock - stock) AS x FROM products WHERE id = :product \\gset\nCOMMIT;\n",
    );
    match race("safe-planted-errors", &path, Truth::Safe) {
        Err(e) if format!("{e:?}").contains("errors") => Ok(()),
        Err(e) => Err(format!("refused, but not for its errors: {e:?}").into()),
        Ok(()) => Err("a safe-named script whose every attempt fails passed the race check".into()),
    }
}
