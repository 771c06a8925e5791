//! Result files: one JSON file per run under `results/` (or `--out`),
//! written atomically (temp file + rename) as soon as the run is audited, so
//! a later failure or an interrupt never loses it or leaves half a file.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::RunResult;
use crate::result::explore::ExploreResult;

/// Check before the race that results can be written there.
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        crate::error::bad_input(format!(
            "cannot write results to {}: {e}; pass --out DIR with a writable directory, or --no-save",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".racelab-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Check before anything runs that `flag`'s `file` can be written: not a
/// directory, in a directory that exists and that racelab may create files
/// in (a file that exists must be writable). Bad input, naming the flag:
/// a race is never run only to lose its result at the end.
pub fn check_output_file(flag: &str, file: &Path) -> anyhow::Result<()> {
    let shown = file.display();
    let refuse = |why: String| crate::error::bad_input(format!("{flag} {shown}: {why}"));
    if file.is_dir() {
        return Err(refuse(format!(
            "is a directory; name a file in it, e.g. {flag} {}",
            file.join(default_name(flag)).display()
        )));
    }
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        let what = if parent.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(refuse(format!("{} {what}", parent.display())));
    }
    if file.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map(drop)
            .map_err(|e| refuse(format!("cannot be written: {e}")));
    }
    let probe = parent.join(format!(".racelab-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| refuse(format!("cannot create a file in {}: {e}", parent.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// A file name to suggest for `flag` when it was given a directory.
fn default_name(flag: &str) -> &'static str {
    match flag {
        "--junit" => "racelab.xml",
        "--trace" => "trace.jsonl",
        "--spec" => "counterexample.spec",
        _ => "report.html",
    }
}

/// The file name of a run: time, scenario, strategy, repetition.
pub fn file_name(r: &RunResult) -> String {
    let rep = if r.repetition > 1 {
        format!("-r{}", r.repetition)
    } else {
        String::new()
    };
    stamped(&r.started_at, &r.scenario.name, r.name(), &rep)
}

/// The file name of an exploration: time, `explore`, strategy.
pub fn explore_file_name(r: &ExploreResult) -> String {
    stamped(&r.started_at, "explore", r.name(), "")
}

/// `STAMP-KIND-NAME[-rN].json`, safe as a file name whatever the parts.
fn stamped(started_at: &str, kind: &str, name: &str, rep: &str) -> String {
    let stamp: String = started_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    format!("{stamp}-{}-{}{rep}.json", slug(kind), slug(name))
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub use crate::files::write_atomic;

/// A result as its file holds it.
pub fn json(r: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec_pretty(r).context("serializing the result")
}

/// Save one run's JSON in `dir`; returns the path written.
pub fn save(dir: &Path, r: &RunResult) -> anyhow::Result<PathBuf> {
    let path = dir.join(file_name(r));
    write_atomic(&path, &json(r)?)?;
    Ok(path)
}
