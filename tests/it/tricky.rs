//! The tricky scripts of `tests/tricky/` (written to fool a reader that
//! looks at words instead of facts) raced for real: each one explain calls
//! UNSAFE must oversell or lose updates when 50 buyers race it, and each one
//! it calls SAFE must do neither, run after run. This ties explain's table
//! (checked without a server by the unit tests) to real races.

use std::path::PathBuf;

use libtest_mimic::{Failed, Trial};
use racelab::explain::Level;

use crate::cli::*;

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
    scripts()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("unsure-"))
        .map(|(name, path)| {
            crate::common::test(format!("tricky::{name}_races_as_explained"), move || {
                race(&name, &path)
            })
        })
        .collect()
}

fn race(name: &str, path: &std::path::Path) -> Result<(), Failed> {
    let claimed_safe = name.starts_with("safe-");
    let s = racelab::strategy::load(&path.display().to_string())?;
    let v = racelab::explain::verdict(&s.program);
    let want = if claimed_safe {
        Level::Safe
    } else {
        Level::Unsafe
    };
    if v.level != want {
        return Err(format!(
            "explain says {} for {name}: {:?}",
            v.level.as_str(),
            v.findings
        )
        .into());
    }
    let schema = format!("t_tricky_{}", name.replace('-', "_"));
    let path = path.display().to_string();
    let (out, json) = json_on(
        &schema,
        &[
            "run",
            "--strategy",
            &path,
            "--buyers",
            "50",
            "--stock",
            "5",
            "--think-ms",
            "5",
            "--repeat",
            "3",
        ],
    );
    let runs = runs(&json, 3);
    if claimed_safe {
        // Safe means it sells, without errors, and says so: a script whose
        // every attempt fails neither oversells nor drifts, and is no pass.
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        crate::run::check_safe(&runs, 50);
        return Ok(());
    }
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{name}: {}",
        stderr(&out)
    );
    let broken: Vec<(i64, i64, String)> = runs
        .iter()
        .map(|r| {
            (
                int(r, "audit.oversold_units"),
                int(r, "audit.stock_drift"),
                text(r, "verdict"),
            )
        })
        .collect();
    let is_broken = |(o, d, _): &&(i64, i64, String)| *o > 0 || *d != 0;
    if !broken.iter().any(|b| is_broken(&b)) {
        return Err(
            format!("{name} is called UNSAFE but never oversold nor drifted: {broken:?}").into(),
        );
    }
    if let Some(b) = broken.iter().filter(is_broken).find(|b| b.2 == "safe") {
        return Err(
            format!("{name}: a run that oversold or drifted was judged safe: {b:?}").into(),
        );
    }
    Ok(())
}
