//! A service's schedule as a PostgreSQL isolation-tester spec, so that the
//! interleaving reproduces without the service: the `setup` recreates the
//! tables the schedule's statements touch, as `pg_dump` writes them from
//! the reset service (definitions and rows); one `session` per request
//! holds the statements the service sent for it, in order, their bound
//! values written in as literals; one `permutation` orders them as the
//! schedule did, and a last `audit` step reads the truth (`--verify-sql`
//! when given, else every row of the tables written).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::spec::{check_block, indent};
use crate::proxy::record::Statement;
use crate::result::explore::Counterexample;
use crate::strategy::facts;

/// The tables the statements read or write, in order of first use.
pub fn tables(stmts: &[Statement]) -> (Vec<String>, Vec<String>) {
    let mut touched: Vec<String> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for s in stmts {
        let f = facts::read(&s.sql, &|n| Some(n), &|slot| format!("${slot}"));
        for t in f.reads.iter().map(|r| &r.table) {
            if !touched.contains(t) {
                touched.push(t.clone());
            }
        }
        for t in f.writes.iter().map(|w| &w.table) {
            if !touched.contains(t) {
                touched.push(t.clone());
            }
            if !written.contains(t) {
                written.push(t.clone());
            }
        }
    }
    (touched, written)
}

/// `pg_dump` of `tables` (definitions and rows, as INSERTs), from the
/// database at `url`, with `--clean --if-exists` so that the setup runs on
/// a database that has them too. The password goes by the environment.
pub fn dump(pg_dump: &Path, url: &str, tables: &[String]) -> anyhow::Result<String> {
    let mut u = url::Url::parse(url).context("the service's database URL")?;
    let password = u.password().map(str::to_string);
    let _ = u.set_password(None);
    let mut cmd = std::process::Command::new(pg_dump);
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--inserts",
        "--clean",
        "--if-exists",
        "--dbname",
        u.as_str(),
    ]);
    for t in tables {
        cmd.args(["--table", t]);
    }
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", pg_dump.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "pg_dump of the tables {} failed: {}",
            tables.join(", "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The dump's own settings that a spec's setup must not keep (it empties
    // the search path for the rest of the setup's session).
    let text = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("--") && !l.trim().is_empty())
        // psql meta-commands (`\restrict` of recent pg_dump): not SQL.
        .filter(|l| !l.starts_with('\\'))
        .filter(|l| !l.starts_with("SELECT pg_catalog.set_config('search_path'"))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(text)
}

/// The spec text of `c`: `setup` from `dump`, `audit` as described above.
pub fn render(
    name: &str,
    buyers: u32,
    c: &Counterexample,
    setup: &str,
    written: &[String],
    verify_sql: Option<&str>,
) -> anyhow::Result<String> {
    check_block("the setup (the dump of the tables)", setup)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# racelab http --explore: {name}, {buyers} requests, one each."
    );
    let order: Vec<String> = c.schedule.iter().map(u32::to_string).collect();
    let _ = writeln!(out, "# schedule: {}", order.join(" "));
    out.push_str("# Run: isolationtester \"host=... dbname=...\" < this.spec\n\n");
    let _ = writeln!(out, "setup\n{{\n{}\n}}\n", indent(setup).trim_end());
    let drops: Vec<String> = written
        .iter()
        .map(|t| format!("DROP TABLE IF EXISTS {t} CASCADE;"))
        .collect();
    if !drops.is_empty() {
        let _ = writeln!(out, "teardown {{ {} }}\n", drops.join(" "));
    }
    let mut names: Vec<String> = Vec::with_capacity(c.steps.len());
    let mut counts = vec![0usize; buyers as usize + 1];
    for s in &c.steps {
        counts[s.buyer as usize] += 1;
        names.push(format!("r{}_{}", s.buyer, counts[s.buyer as usize]));
    }
    let any_deadlock = !c.deadlock_victims.is_empty();
    for b in 1..=buyers {
        let _ = writeln!(out, "session request{b}");
        if any_deadlock {
            let t = if c.deadlock_victims.contains(&b) {
                "1s"
            } else {
                "100s"
            };
            let _ = writeln!(out, "setup {{ SET deadlock_timeout = '{t}'; }}");
        }
        for (s, step) in c.steps.iter().zip(&names).filter(|(s, _)| s.buyer == b) {
            check_block(&format!("request {b}'s statement {}", s.line), &s.sql)?;
            let _ = writeln!(out, "step {step} {{ {}; }}", s.sql.trim());
        }
        out.push('\n');
    }
    let audit = match verify_sql {
        Some(sql) => sql.trim().trim_end_matches(';').to_string(),
        None => written
            .iter()
            .map(|t| {
                format!(
                    "SELECT '{}' AS t, count(*) AS rows FROM {t}",
                    t.replace('\'', "''")
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL "),
    };
    check_block("the audit (--verify-sql)", &audit)?;
    let _ = writeln!(out, "session audit\nstep audit {{ {audit}; }}\n");
    let _ = writeln!(out, "permutation {} audit", names.join(" "));
    Ok(out)
}
