//! `racelab explain STRATEGY`: the script, annotated statement by statement
//! with what PostgreSQL does there (isolation, locks, waits, how each write
//! is computed), then a verdict — SAFE, UNSAFE (reason and lines) or UNSURE
//! (why the facts do not decide) — from the data flow of the program
//! (`flow`). Everything here is read from the statements' facts
//! (`strategy::facts`), never from the text: comments cannot change a note
//! or the verdict.

mod flow;

use std::fmt::Write as _;

pub use flow::{Finding, Level, Verdict};

use crate::strategy::facts::{
    AdvisoryAction, AdvisoryScope, Constraint, Facts, Isolation, Kind, Value, Wait, WriteOp,
};
use crate::strategy::{self, Instr, Program, Strategy, BUILTIN_VARS, PRODUCT};

/// The verdict on a program.
pub fn verdict(prog: &Program) -> Verdict {
    flow::verdict(prog)
}

/// `racelab explain`: the script, annotated, then a summary and the verdict.
pub fn explain(spec: &str) -> anyhow::Result<String> {
    let s = strategy::load(spec)?;
    Ok(render(&s))
}

fn iso_note(level: Isolation) -> &'static str {
    match level {
        Isolation::Serializable => "one snapshot for the whole transaction, and PostgreSQL aborts (40001) any transaction whose result could differ from a serial order; racelab retries it",
        Isolation::RepeatableRead => "one snapshot for the whole transaction; updating a row another transaction changed since that snapshot fails with 40001, and racelab retries",
        Isolation::ReadCommitted => "each statement sees what was committed before that statement began, so a value read here can be stale by the time it is written back",
    }
}

/// What explain says about one statement, and what it adds to the summary.
struct Notes {
    notes: Vec<String>,
    locks: Vec<String>,
    waits: Vec<String>,
}

fn names(prog: &Program, vars: &[usize]) -> String {
    let v: Vec<String> = vars.iter().map(|s| format!(":{}", prog.vars[*s])).collect();
    v.join(", ")
}

fn statement_notes(prog: &Program, f: &Facts, line: usize, ctx: &flow::StmtContext) -> Notes {
    let mut n = Notes {
        notes: Vec::new(),
        locks: Vec::new(),
        waits: Vec::new(),
    };
    if let Some(msg) = &f.unreadable {
        n.notes.push(format!(
            "racelab cannot read this statement ({msg}): it runs as written, the server is the judge, but explain and --trace know nothing about what it locks, reads or writes"
        ));
        return n;
    }
    match f.kind {
        Kind::Begin(level) => {
            let level = level.unwrap_or(Isolation::ReadCommitted);
            let default = if level == Isolation::ReadCommitted {
                " (the default)"
            } else {
                ""
            };
            n.notes.push(format!(
                "opens a transaction at {}{default}: {}",
                level.as_str(),
                iso_note(level)
            ));
        }
        Kind::SetIsolation { level, session } => n.notes.push(format!(
            "sets the isolation level of {} to {}: {}",
            if session {
                "every later transaction of the session"
            } else {
                "this transaction"
            },
            level.as_str(),
            iso_note(level)
        )),
        Kind::Commit { .. } => n.notes.push(
            "COMMIT: makes the writes visible and releases every lock the transaction holds".into(),
        ),
        Kind::Rollback { .. } => n
            .notes
            .push("ROLLBACK: undoes the transaction and releases its locks".into()),
        _ => {}
    }
    for a in &f.advisory {
        let vars: Vec<usize> = a.key.iter().flat_map(|k| k.vars.clone()).collect();
        let per_buyer: Vec<usize> = vars.iter().copied().filter(|v| *v != PRODUCT).collect();
        let columns = a.key.iter().any(|k| !k.cols.is_empty());
        let key = a
            .key
            .iter()
            .map(|k| k.text.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let scope = match a.scope {
            AdvisoryScope::Xact => "released at COMMIT or ROLLBACK",
            AdvisoryScope::Session => "held by the session until pg_advisory_unlock",
        };
        match a.action {
            AdvisoryAction::Lock => {
                let whose = if !per_buyer.is_empty() || columns {
                    format!(
                        "the key ({key}) is built from {}, which differs between buyers: each buyer takes its own lock and nobody waits for anybody",
                        if per_buyer.is_empty() { "table columns".to_string() } else { names(prog, &per_buyer) }
                    )
                } else {
                    format!("every buyer of the product takes the same key ({key})")
                };
                if a.try_only {
                    n.notes.push(format!(
                        "{}: tries an advisory lock without waiting ({scope}); it protects only if its result is checked; {whose}",
                        a.function
                    ));
                } else {
                    n.notes.push(format!(
                        "{}: takes an advisory lock on the key; a buyer WAITS here while another holds it ({scope}); it protects only code that takes the same lock; {whose}",
                        a.function
                    ));
                    n.waits.push(format!("line {line}: the advisory lock"));
                }
                n.locks.push(format!("advisory lock ({})", a.function));
                if a.scope == AdvisoryScope::Xact && ctx.autocommit {
                    n.notes.push("outside a transaction block: a transaction-scoped advisory lock is released as soon as this statement ends".into());
                }
            }
            AdvisoryAction::Unlock | AdvisoryAction::UnlockAll => n.notes.push(format!(
                "{}: releases the advisory lock; anything written after the lock was taken must be committed before this, or the next buyer reads it stale",
                a.function
            )),
        }
    }
    for l in &f.row_locks {
        let tables: Vec<&str> = l.reads.iter().map(|r| f.reads[*r].table.as_str()).collect();
        let on = if tables.is_empty() {
            String::new()
        } else {
            format!(" (of {})", tables.join(", "))
        };
        let s = l.strength.as_str();
        match l.wait {
            Wait::SkipLocked => {
                n.notes.push(format!("{s} SKIP LOCKED: locks the rows it returns{on} and skips rows another transaction holds: never waits, may see fewer rows"));
                n.locks.push(format!("row locks ({s} SKIP LOCKED)"));
            }
            Wait::Nowait => {
                n.notes.push(format!("{s} NOWAIT: locks the rows it reads{on} or fails at once with 55P03 (the attempt is rejected)"));
                n.locks.push(format!("row locks ({s} NOWAIT)"));
            }
            Wait::Block => {
                n.notes.push(format!("{s}: locks the rows it reads{on}; a buyer WAITS here while another holds the row, then reads the latest committed value"));
                n.waits.push(format!("line {line}: {s}"));
                n.locks.push(format!("row lock ({s})"));
            }
        }
        if !l.strength.blocks_updates() {
            n.notes.push(format!(
                "{s} does not conflict with the lock an UPDATE of other columns takes: another buyer can still change the row"
            ));
        }
        if ctx.autocommit {
            n.notes.push("outside a transaction block: the row lock is released as soon as this statement ends, so it protects nothing after it".into());
        }
    }
    for t in &f.table_locks {
        n.notes.push(format!(
            "locks the table{} {} IN {} MODE until the transaction ends{}",
            if t.tables.len() > 1 { "s" } else { "" },
            t.tables.join(", "),
            t.mode,
            if t.self_conflicting {
                "; a buyer WAITS here while another holds it"
            } else {
                ""
            }
        ));
        n.locks.push(format!("table lock ({})", t.mode));
        if t.self_conflicting {
            n.waits.push(format!("line {line}: LOCK TABLE"));
        }
    }
    let wait = "takes the row lock of the rows it changes (a buyer WAITS here while another uncommitted transaction has written the row)";
    for w in &f.writes {
        match w.op {
            WriteOp::Insert => n.notes.push(format!(
                "writes {}: a new row, no lock on existing rows",
                w.table
            )),
            WriteOp::Delete => n.notes.push(format!(
                "deletes rows of {}: locks every row it deletes until the transaction ends",
                w.table
            )),
            WriteOp::Update => {
                for a in &w.assigns {
                    let how = match &a.value {
                        Value::Relative { .. } => "relative to the row's latest version, so it never loses another buyer's update".to_string(),
                        Value::Variables { vars, .. } => format!(
                            "a value computed from variables ({}), not from the row: if one was read earlier, it may be stale by now",
                            names(prog, vars)
                        ),
                        Value::Rows { .. } => "a value computed from other rows this statement reads".to_string(),
                        Value::Constant(_) => "a constant".to_string(),
                        Value::Row => "computed from the row's columns".to_string(),
                    };
                    n.notes.push(format!(
                        "UPDATE sets {}.{} = {}: {how}",
                        w.table, a.column, a.text
                    ));
                }
                n.notes.push(format!("UPDATE {}: {wait}", w.table));
                n.locks.push("row lock taken by UPDATE".into());
            }
        }
        let guards: Vec<&str> = w
            .rows
            .filter
            .iter()
            .filter(|c| {
                // `id = :product` names the rows; `version = :version`
                // (a value read earlier) guards them.
                !c.key_of(&w.table)
                    .is_some_and(|(_, v)| v.vars.iter().all(|s| *s < BUILTIN_VARS.len()))
            })
            .map(|c| c.text.as_str())
            .collect();
        if !guards.is_empty() {
            n.notes.push(format!(
                "guarded by WHERE {}: re-checked on the latest row version after any wait; no row means the write did not happen",
                guards.join(" AND ")
            ));
        }
        if let Some(c) = &w.cte {
            n.notes.push(format!(
                "runs in the data-modifying CTE `{c}`{}",
                if f.rows_from
                    .is_some_and(|r| f.writes[r].cte.as_deref() == Some(c))
                {
                    ": the statement's :rows counts the rows it matched"
                } else {
                    ""
                }
            ));
        }
    }
    let unlocked_read = f.reads.iter().any(|r| r.lock.is_none());
    if unlocked_read && f.writes.is_empty() && f.advisory.is_empty() && f.outputs.is_some() {
        let how = if ctx.snapshot {
            "no lock, from the transaction's snapshot: "
        } else {
            "no lock: "
        };
        n.notes.push(format!(
            "{how}reads {} into the result; another buyer may change the rows right after",
            f.reads
                .iter()
                .filter(|r| r.lock.is_none())
                .map(|r| r.table.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if ctx.autocommit && !f.writes.is_empty() {
        n.notes.push("outside a transaction block: the statement commits on its own, and its locks last only for the statement".into());
    }
    n
}

fn setup_notes(f: &Facts) -> Vec<String> {
    let mut n = Vec::new();
    if let Some(msg) = &f.unreadable {
        n.push(format!(
            "racelab cannot read this statement ({msg}): it runs, but a constraint it adds is not counted"
        ));
    }
    for c in &f.constraints {
        match c {
            Constraint::Check { table, text, .. } => n.push(format!(
                "a CHECK constraint on {table} ({text}): a write that breaks it fails with 23514 and the attempt is rejected (a safe refusal, enforced by the database on every write)"
            )),
            Constraint::Unique { table, columns, .. } => n.push(format!(
                "a unique index on {table} ({}): a second row with the same values fails with 23505 and the attempt is rejected",
                columns.join(", ")
            )),
            Constraint::Drop { name, .. } => n.push(format!("drops the constraint {name} if it is there")),
        }
    }
    n
}

/// Annotate a loaded strategy.
pub fn render(s: &Strategy) -> String {
    let prog = &s.program;
    let ctx = flow::context(prog);
    let lines: Vec<&str> = s.source.lines().collect();
    let mut notes: Vec<Vec<String>> = vec![Vec::new(); lines.len() + 2];
    let at = |l: usize| l.min(lines.len());
    let mut locks: Vec<String> = Vec::new();
    let mut waits: Vec<String> = Vec::new();
    if let Some(first) = prog.setup.first() {
        notes[at(first.line.saturating_sub(1))]
            .push("\\setup: runs once on the fresh lab before the buyers start".into());
    }
    for st in &prog.setup {
        notes[at(st.end_line)].extend(setup_notes(&st.facts));
    }
    for (i, st) in prog.stmts.iter().enumerate() {
        let n = statement_notes(prog, &st.facts, st.line, &ctx.stmts[i]);
        notes[at(st.end_line)].extend(n.notes);
        for l in n.locks {
            if !locks.contains(&l) {
                locks.push(l);
            }
        }
        waits.extend(n.waits);
    }
    // Without an explicit lock, an UPDATE is where buyers queue.
    if waits.is_empty() {
        if let Some(st) = prog
            .stmts
            .iter()
            .find(|st| st.facts.writes.iter().any(|w| w.op != WriteOp::Insert))
        {
            waits.push(format!(
                "line {}: the row lock of the rows it writes",
                st.line
            ));
        }
    }
    for (pc, instr) in prog.instrs.iter().enumerate() {
        match instr {
            Instr::Sleep { line, .. } => notes[at(*line)].push(if ctx.held[pc] {
                "think time WITH locks held: every other buyer of this product waits this long"
                    .into()
            } else {
                "think time, no lock held".into()
            }),
            Instr::Retry { line } => notes[at(*line)].push(
                "\\retry: roll back and try again (at most --max-tries tries): the price of optimism"
                    .into(),
            ),
            Instr::SoldOut { line } => {
                notes[at(*line)].push("\\sold_out: ends the attempt as sold out".into())
            }
            Instr::Redis(i) => {
                let cmd = &prog.redis[*i];
                notes[at(cmd.line)].push(cmd.note());
            }
            _ => {}
        }
    }

    let leaving: Vec<(usize, String)> = strategy::confine::escapes(s)
        .into_iter()
        .filter_map(|e| match e.reach {
            strategy::confine::Reach::Leaves(why) => Some((e.line, why)),
            _ => None,
        })
        .collect();
    for (line, why) in &leaving {
        notes[at(*line)].push(format!(
            "LEAVES THE LAB: {why}; racelab refuses it on a server it did not start"
        ));
    }

    let mut out = String::new();
    let _ = writeln!(out, "Strategy {} — annotated\n", s.name);
    let width = lines.len().to_string().len();
    for (i, raw) in lines.iter().enumerate() {
        let l = i + 1;
        let _ = writeln!(out, "{l:>width$} | {raw}");
        for n in &notes[l] {
            let _ = writeln!(out, "{:>width$} |     ▸ {n}", "");
        }
    }
    out.push('\n');
    let levels: Vec<&str> = ctx.isolation.iter().map(|l| l.as_str()).collect();
    let _ = writeln!(
        out,
        "Isolation level: {}",
        if levels.is_empty() {
            "none: every statement commits on its own (autocommit)".to_string()
        } else {
            levels.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "Locking: {}",
        if locks.is_empty() {
            "none taken explicitly".to_string()
        } else {
            locks.join("; ")
        }
    );
    let _ = writeln!(
        out,
        "Where a buyer waits: {}",
        if waits.is_empty() {
            "nowhere explicit".to_string()
        } else {
            waits.join("; ")
        }
    );
    if prog.has_setup() {
        let _ = writeln!(
            out,
            "Setup: a \\setup block changes the lab before the race (see the notes above)"
        );
    }
    if !leaving.is_empty() {
        let lines: Vec<String> = leaving.iter().map(|(l, _)| l.to_string()).collect();
        let _ = writeln!(
            out,
            "Lab: {} {} outside racelab's schema: on a server racelab did not start \
             the script is refused before anything runs (exit 2); the verdict below is about \
             the purchase alone",
            if lines.len() == 1 { "line" } else { "lines" },
            lines.join(", ")
                + if lines.len() == 1 {
                    " reaches"
                } else {
                    " reach"
                }
        );
    }
    let v = verdict(prog);
    out.push_str(&render_verdict(&v));
    if let Some(line) = session_lock_line(prog) {
        let _ = writeln!(
            out,
            "Topology: the advisory lock of line {line} is session-level: it belongs to the server \
             connection that ran line {line}, not to the buyer. The verdict holds on a direct connection \
             and through session pooling. Through transaction pooling (PgBouncer's pool_mode = \
             transaction) each transaction, and each statement outside one, may run on another server \
             connection: the lock stays with a connection that other buyers then use (re-entering it \
             without waiting), the buyer's own transaction runs elsewhere, and the lock protects \
             nothing. Try `racelab run --strategy {} --via pgbouncer`.",
            s.name
        );
    }
    out
}

/// The line of the first session-level advisory lock the script takes.
fn session_lock_line(prog: &Program) -> Option<usize> {
    prog.stmts
        .iter()
        .find(|st| {
            st.facts
                .advisory
                .iter()
                .any(|a| a.scope == AdvisoryScope::Session && a.action == AdvisoryAction::Lock)
        })
        .map(|st| st.line)
}

/// The verdict line and its reasons.
pub fn render_verdict(v: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Verdict: {}", v.level.as_str());
    for f in &v.findings {
        let mut m: Vec<usize> = f.lines.clone();
        m.sort_unstable();
        m.dedup();
        let lines = match m.as_slice() {
            [] => String::new(),
            [one] => format!("line {one}: "),
            many => {
                let l: Vec<String> = many.iter().map(|x| x.to_string()).collect();
                format!("lines {}: ", l.join(", "))
            }
        };
        let tag = if f.level == v.level || v.level == Level::Safe {
            String::new()
        } else {
            format!("[{}] ", f.level.as_str())
        };
        let _ = writeln!(out, "  - {tag}{lines}{}", f.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn level(src: &str) -> Level {
        let prog = strategy::parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()));
        verdict(&prog).level
    }

    /// The tricky scripts: `(file name, source)`, the expected verdict
    /// leading the name.
    fn tricky() -> Vec<(String, String)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tricky");
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .expect("tests/tricky")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).expect("readable"))
            })
            .collect();
        v.sort();
        v
    }

    fn expected(name: &str) -> Level {
        if name.starts_with("safe-") {
            Level::Safe
        } else if name.starts_with("unsafe-") {
            Level::Unsafe
        } else {
            Level::Unsure
        }
    }

    #[test]
    fn builtins() {
        for (name, src) in strategy::builtins() {
            let want = match *name {
                "naive" | "redis-get-set" => Level::Unsafe,
                // A Lua script racelab does not read; a lock whose TTL can
                // run out under its holder.
                "redis-lua" | "redis-lock" => Level::Unsure,
                _ => Level::Safe,
            };
            let prog = strategy::parse(name, src).unwrap();
            let v = verdict(&prog);
            assert_eq!(v.level, want, "{name}: {:?}", v.findings);
            assert!(!v.findings.is_empty(), "{name} gives no reason");
        }
    }

    #[test]
    fn the_tricky_table() {
        let all = tricky();
        assert!(all.len() >= 20, "only {} tricky scripts", all.len());
        for (name, src) in &all {
            let prog = strategy::parse(name, src).unwrap_or_else(|e| panic!("{}", e.render()));
            let v = verdict(&prog);
            assert_eq!(v.level, expected(name), "{name}: {:#?}", v.findings);
            if v.level != Level::Safe {
                assert!(
                    v.findings
                        .iter()
                        .all(|f| !f.lines.is_empty() || f.level == Level::Unsure),
                    "{name}: a finding without lines: {:?}",
                    v.findings
                );
            }
        }
    }

    #[test]
    fn reasons_name_the_lines() {
        let naive = strategy::builtins()[0].1;
        let v = verdict(&strategy::parse("naive", naive).unwrap());
        let lost = v
            .findings
            .iter()
            .find(|f| f.text.starts_with("P4 lost update"))
            .expect("a lost update");
        assert_eq!(lost.lines, vec![6, 12]);
        let text = render_verdict(&v);
        assert!(text.starts_with("Verdict: UNSAFE\n"), "{text}");
        assert!(text.contains("lines 6, 12: P4 lost update"), "{text}");
    }

    #[test]
    fn unreadable_sql_makes_it_unsure_with_the_line() {
        let src = "BEGIN;\nSELECT p.stock FROM products p, products q WHERE p.id = :product AND q.id = p.id FOR UPDATE OF p, q \\gset\nUPDATE products SET stock = :stock - :qty WHERE id = :product;\nCOMMIT;\n";
        let v = verdict(&strategy::parse("t.sql", src).unwrap());
        assert_eq!(v.level, Level::Unsure);
        assert!(
            v.findings
                .iter()
                .any(|f| f.lines == vec![2] && f.text.contains("cannot read")),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn a_statement_that_leaves_the_lab_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esc.sql");
        std::fs::write(
            &path,
            "-- esc\n\\setup\nDROP SCHEMA public CASCADE;\n\\endsetup\nBEGIN;\n\
             UPDATE products SET stock = stock - :qty WHERE id = :product AND stock >= :qty;\n\
             COPY (SELECT 1) TO PROGRAM 'id';\nCOMMIT;\n",
        )
        .unwrap();
        let out = render(&strategy::load(path.to_str().unwrap()).unwrap());
        for line in [
            "3 | DROP SCHEMA public CASCADE;",
            "7 | COPY (SELECT 1) TO PROGRAM 'id';",
        ] {
            assert!(
                out.contains(&format!("{line}\n  |     ▸ LEAVES THE LAB")),
                "{out}"
            );
        }
        assert!(out.contains("\nLab: lines 3, 7 reach outside"), "{out}");
        let out = render(&strategy::load("conditional").unwrap());
        assert!(
            !out.contains("LEAVES THE LAB") && !out.contains("\nLab:"),
            "{out}"
        );
    }

    #[test]
    fn render_annotates_from_facts() {
        let s = strategy::load("for-update").unwrap();
        let out = render(&s);
        assert!(
            out.contains("FOR UPDATE: locks the rows it reads (of products)"),
            "{out}"
        );
        assert!(out.contains("think time WITH locks held"), "{out}");
        assert!(out.contains("Isolation level: READ COMMITTED"), "{out}");
        assert!(out.contains("\nVerdict: SAFE\n"), "{out}");
        let s = strategy::load("optimistic").unwrap();
        let out = render(&s);
        assert!(out.contains("Isolation level: none"), "{out}");
        assert!(out.contains("guarded by WHERE version = :version"), "{out}");
    }

    #[test]
    fn session_locks_say_what_pooling_does_to_them() {
        let out = render(&strategy::load("advisory-session").unwrap());
        assert!(out.contains("\nVerdict: SAFE\n"), "{out}");
        assert!(
            out.contains("Topology: the advisory lock of line 18 is session-level")
                && out.contains("protects nothing"),
            "{out}"
        );
        // A transaction-scoped lock goes with the transaction: no caveat.
        let out = render(&strategy::load("advisory").unwrap());
        assert!(!out.contains("Topology:"), "{out}");
    }

    /// Misleading words for comments.
    const WORDS: [&str; 8] = [
        "FOR UPDATE;",
        "BEGIN ISOLATION LEVEL SERIALIZABLE;",
        "WHERE stock >= :qty",
        "SELECT pg_advisory_xact_lock(:product);",
        "\\retry",
        "CHECK (stock >= 0)",
        "naive: unsafe, no lock",
        "COMMIT;",
    ];

    /// `src` with a `--` comment line before line `at`, and `/* */`
    /// comments after every `;` that ends a line when `trailing`.
    fn with_comments(src: &str, inserts: &[(usize, usize)], trailing: Option<usize>) -> String {
        let mut lines: Vec<String> = src.lines().map(str::to_string).collect();
        for (at, w) in inserts {
            let at = at % (lines.len() + 1);
            lines.insert(at, format!("-- {}", WORDS[w % WORDS.len()]));
        }
        if let Some(w) = trailing {
            for l in &mut lines {
                if l.trim_end().ends_with(';') && !l.trim_start().starts_with("--") {
                    l.push_str(&format!(" /* {} */", WORDS[w % WORDS.len()]));
                }
            }
        }
        lines.join("\n") + "\n"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn comments_never_change_a_verdict(
            pick in 0usize..1000,
            inserts in prop::collection::vec((0usize..60, 0usize..8), 0..6),
            trailing in prop::option::of(0usize..8),
        ) {
            let mut all: Vec<(String, String)> = strategy::builtins()
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect();
            all.extend(tricky());
            let (name, src) = &all[pick % all.len()];
            let before = level(src);
            let commented = with_comments(src, &inserts, trailing);
            prop_assert_eq!(level(&commented), before, "{} with comments:\n{}", name, commented);
        }
    }
}
