//! `racelab explain STRATEGY`, and the mechanical reading of a script's SQL
//! that it shares with the trace analysis (`trace`): which statements open or
//! close a transaction and at what isolation level, which take row or
//! advisory locks, and how a statement writes `products.stock` (computed
//! from a value read earlier, or relative to the row's latest version).
//!
//! This is a reading of the text, not of a query plan: it recognizes the
//! shapes strategies are written in and says nothing where it is unsure.

use std::fmt::Write as _;

use crate::strategy::{self, Program, Strategy};

/// How a statement sets `products.stock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockWrite {
    /// `stock = stock - :qty`: computed from the row's latest version.
    Relative(String),
    /// `stock = :stock - :qty`: computed from variables, i.e. from a value
    /// read earlier; the expression as written.
    FromVariables(String),
}

/// What racelab can tell about one SQL statement of a script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StmtFacts {
    pub line: usize,
    /// The statement with variables as `:name`, whitespace squashed.
    pub text: String,
    /// `BEGIN` / `START TRANSACTION`: the isolation level it asks for.
    pub begin: Option<&'static str>,
    pub commit: bool,
    pub rollback: bool,
    /// `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`.
    pub row_lock: Option<&'static str>,
    pub skip_locked: bool,
    pub nowait: bool,
    /// `pg_advisory_xact_lock`, `pg_advisory_lock`, `pg_try_advisory_...`.
    pub advisory: Option<String>,
    pub stock_write: Option<StockWrite>,
    /// The condition in the WHERE of a stock write that can make it match
    /// no row (`stock >= :qty`, `version = :version`).
    pub guard: Option<String>,
    /// `UPDATE` / `INSERT` / `DELETE`: the table written.
    pub writes: Option<String>,
    /// Reads a row into variables with `\gset`.
    pub gset: bool,
}

/// The facts of every SQL statement of the attempt script, in order.
pub fn statements(prog: &Program) -> Vec<StmtFacts> {
    prog.stmts
        .iter()
        .map(|st| {
            let text = with_names(&st.sql, |k| {
                st.params
                    .get(k.wrapping_sub(1))
                    .map(|&slot| prog.vars[slot].clone())
            });
            let mut f = facts(&text);
            f.line = st.line;
            f.gset = st.gset.is_some();
            f
        })
        .collect()
}

/// Replace `$k` placeholders by `:name` and squash whitespace.
fn with_names(sql: &str, name: impl Fn(usize) -> Option<String>) -> String {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let k: usize = chars[i + 1..j]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(0);
            if let Some(n) = name(k) {
                out.push(':');
                out.push_str(&n);
                i = j;
                continue;
            }
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') && !out.is_empty() {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    out.trim_end().trim_end_matches(';').trim_end().to_string()
}

/// Whether `word` occurs in `up` (upper case) as a whole word.
fn has_word(up: &str, word: &str) -> bool {
    find_word(up, word, 0).is_some()
}

fn find_word(up: &str, word: &str, from: usize) -> Option<usize> {
    let bytes = up.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut at = from;
    while let Some(i) = up.get(at..)?.find(word) {
        let s = at + i;
        let e = s + word.len();
        let before_ok = s == 0 || !ident(bytes[s - 1]);
        let after_ok = e >= bytes.len() || !ident(bytes[e]);
        if before_ok && after_ok {
            return Some(s);
        }
        at = s + 1;
    }
    None
}

/// Read the facts of one statement from its text (`:name` variables).
pub fn facts(text: &str) -> StmtFacts {
    let up = text.to_ascii_uppercase();
    let first = up.split_whitespace().next().unwrap_or("");
    let mut f = StmtFacts {
        text: text.to_string(),
        ..StmtFacts::default()
    };
    if first == "BEGIN" || up.starts_with("START TRANSACTION") {
        f.begin = Some(if up.contains("SERIALIZABLE") {
            "SERIALIZABLE"
        } else if up.contains("REPEATABLE READ") {
            "REPEATABLE READ"
        } else {
            "READ COMMITTED"
        });
    }
    f.commit = matches!(first, "COMMIT" | "END") && !up.contains("AND CHAIN");
    f.rollback = matches!(first, "ROLLBACK" | "ABORT");
    f.row_lock = [
        ("FOR NO KEY UPDATE", "FOR NO KEY UPDATE"),
        ("FOR UPDATE", "FOR UPDATE"),
        ("FOR KEY SHARE", "FOR KEY SHARE"),
        ("FOR SHARE", "FOR SHARE"),
    ]
    .into_iter()
    .find(|(w, _)| up.contains(w))
    .map(|(_, n)| n);
    f.skip_locked = up.contains("SKIP LOCKED");
    f.nowait = has_word(&up, "NOWAIT");
    if let Some(i) = up
        .find("PG_ADVISORY")
        .or_else(|| up.find("PG_TRY_ADVISORY"))
    {
        let end = up[i..].find('(').map_or(up.len(), |e| i + e);
        f.advisory = Some(text[i..end].to_ascii_lowercase());
    }
    for (kw, into) in [
        ("UPDATE", None),
        ("INSERT INTO", Some(())),
        ("DELETE FROM", None),
    ] {
        let _ = into;
        if let Some(i) = find_word(&up, kw, 0) {
            // `FOR UPDATE` is a lock, not a write.
            if kw == "UPDATE" && up[..i].ends_with("FOR ") || up[..i].ends_with("NO KEY ") {
                continue;
            }
            let rest = text[i + kw.len()..].trim_start();
            let table: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            if !table.is_empty() && f.writes.is_none() {
                f.writes = Some(table);
            }
        }
    }
    if let Some(u) = find_word(&up, "UPDATE PRODUCTS", 0) {
        if let Some(set) = find_word(&up, "SET", u) {
            let start = set + 3;
            let end = ["WHERE", "RETURNING", "FROM"]
                .iter()
                .filter_map(|w| find_word(&up, w, start))
                .min()
                .unwrap_or(up.len());
            let assignments = &text[start..end];
            for a in split_top(assignments) {
                let a = a.trim();
                let Some((lhs, rhs)) = a.split_once('=') else {
                    continue;
                };
                if !lhs.trim().eq_ignore_ascii_case("stock") {
                    continue;
                }
                let rhs = rhs.trim().trim_end_matches(')').trim().to_string();
                let rup = rhs.to_ascii_uppercase();
                f.stock_write = Some(if has_word(&rup, "STOCK") {
                    StockWrite::Relative(rhs)
                } else {
                    StockWrite::FromVariables(rhs)
                });
            }
            if let Some(w) = find_word(&up, "WHERE", start) {
                let end = find_word(&up, "RETURNING", w).unwrap_or(up.len());
                let cond = text[w + 5..end].trim().trim_end_matches(')').trim();
                let guards: Vec<&str> = split_and(cond)
                    .into_iter()
                    .filter(|c| {
                        let c = c.to_ascii_uppercase();
                        has_word(&c, "STOCK") || has_word(&c, "VERSION")
                    })
                    .collect();
                if !guards.is_empty() {
                    f.guard = Some(guards.join(" AND "));
                }
            }
        }
    }
    f
}

/// Split on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[from..]);
    parts
}

/// Split a condition on top-level `AND`.
fn split_and(s: &str) -> Vec<&str> {
    let up = s.to_ascii_uppercase();
    let mut parts = Vec::new();
    let mut from = 0;
    let mut at = 0;
    while let Some(i) = find_word(&up, "AND", at) {
        parts.push(s[from..i].trim());
        from = i + 3;
        at = from;
    }
    parts.push(s[from..].trim());
    parts
}

/// Evaluate a stock expression as written (`:stock - :qty`, integers,
/// `+ - * /`, parentheses) with the values `var` knows; `None` when it is
/// anything else or a value is unknown.
pub fn eval_int(expr: &str, var: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    let mut toks: Vec<String> = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == ':' || c.is_ascii_digit() {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            toks.push(chars[i..j].iter().collect());
            i = j;
        } else if "+-*/()".contains(c) {
            toks.push(c.to_string());
            i += 1;
        } else {
            return None;
        }
    }
    let mut pos = 0;
    let v = sum(&toks, &mut pos, var)?;
    (pos == toks.len()).then_some(v)
}

fn sum(t: &[String], p: &mut usize, var: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    let mut v = product(t, p, var)?;
    while let Some(op) = t.get(*p).filter(|o| *o == "+" || *o == "-") {
        let op = op.clone();
        *p += 1;
        let r = product(t, p, var)?;
        v = if op == "+" {
            v.checked_add(r)?
        } else {
            v.checked_sub(r)?
        };
    }
    Some(v)
}

fn product(t: &[String], p: &mut usize, var: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    let mut v = atom(t, p, var)?;
    while let Some(op) = t.get(*p).filter(|o| *o == "*" || *o == "/") {
        let op = op.clone();
        *p += 1;
        let r = atom(t, p, var)?;
        v = if op == "*" {
            v.checked_mul(r)?
        } else {
            v.checked_div(r)?
        };
    }
    Some(v)
}

fn atom(t: &[String], p: &mut usize, var: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    let tok = t.get(*p)?.clone();
    *p += 1;
    match tok.as_str() {
        "(" => {
            let v = sum(t, p, var)?;
            (t.get(*p)? == ")").then(|| *p += 1)?;
            Some(v)
        }
        "-" => atom(t, p, var)?.checked_neg(),
        _ => match tok.strip_prefix(':') {
            Some(name) => var(name),
            None => tok.parse().ok(),
        },
    }
}

/// The isolation level the script's transaction runs at.
pub fn isolation(stmts: &[StmtFacts]) -> Option<&'static str> {
    stmts.iter().find_map(|s| s.begin)
}

/// `racelab explain`: the script, annotated, then a summary.
pub fn explain(spec: &str) -> anyhow::Result<String> {
    let s = strategy::load(spec)?;
    Ok(render(&s))
}

/// Annotate a loaded strategy.
pub fn render(s: &Strategy) -> String {
    let stmts = statements(&s.program);
    let iso = isolation(&stmts);
    let lines: Vec<&str> = s.source.lines().collect();
    let mut notes: Vec<Vec<String>> = vec![Vec::new(); lines.len() + 1];
    // Where each statement ends: its annotation goes after its last line.
    let end_of = |start: usize| -> usize {
        let mut l = start;
        while l <= lines.len() {
            let t = lines[l - 1].trim_end();
            if t.ends_with(';') || t.ends_with("\\gset") {
                return l;
            }
            l += 1;
        }
        start
    };
    let mut in_tx = false;
    let mut locks_held: Vec<String> = Vec::new();
    let mut waits: Vec<String> = Vec::new();
    let mut lock_names: Vec<String> = Vec::new();
    for f in &stmts {
        let mut n: Vec<String> = Vec::new();
        if let Some(level) = f.begin {
            in_tx = true;
            n.push(match level {
                "SERIALIZABLE" => "opens a transaction at SERIALIZABLE: one snapshot for the whole transaction, and PostgreSQL aborts (40001) any transaction whose result could differ from a serial order; racelab retries it".to_string(),
                "REPEATABLE READ" => "opens a transaction at REPEATABLE READ: one snapshot for the whole transaction; updating a row another transaction changed since that snapshot fails with 40001, and racelab retries".to_string(),
                _ => "opens a transaction at READ COMMITTED (the default): each statement sees what was committed before that statement began, so a value read here can be stale by the time it is written back".to_string(),
            });
        }
        if let Some(lock) = &f.advisory {
            let scope = if lock.contains("xact") {
                "released at COMMIT or ROLLBACK"
            } else {
                "held by the session until pg_advisory_unlock"
            };
            if lock.contains("try") {
                n.push(format!(
                    "{lock}: tries an advisory lock without waiting ({scope})"
                ));
            } else {
                n.push(format!(
                    "{lock}: takes an advisory lock on the key; a buyer WAITS here while another holds it ({scope}); it protects only code that takes the same lock"
                ));
                waits.push(format!("line {}: the advisory lock", f.line));
            }
            lock_names.push(format!("advisory lock ({lock})"));
            locks_held.push("an advisory lock".into());
        }
        if let Some(lock) = f.row_lock {
            if f.skip_locked {
                n.push(format!("{lock} SKIP LOCKED: locks the rows it returns and skips rows another transaction holds: never waits, may see fewer rows"));
                lock_names.push(format!("row locks ({lock} SKIP LOCKED)"));
            } else if f.nowait {
                n.push(format!("{lock} NOWAIT: locks the rows it reads or fails at once with 55P03 (the attempt is rejected)"));
                lock_names.push(format!("row locks ({lock} NOWAIT)"));
            } else {
                n.push(format!("{lock}: locks the rows it reads; a buyer WAITS here while another holds the row, then reads the latest committed value"));
                waits.push(format!("line {}: {lock}", f.line));
                lock_names.push(format!("row lock ({lock})"));
            }
            locks_held.push("row locks".into());
        }
        if let Some(w) = &f.stock_write {
            let wait = "takes the row lock of the product (a buyer WAITS here while another uncommitted transaction has written the row)";
            match w {
                StockWrite::Relative(e) => n.push(format!(
                    "UPDATE sets stock = {e}: relative to the row's latest version, so it never loses another buyer's update; {wait}"
                )),
                StockWrite::FromVariables(e) => {
                    let protected = iso.is_some_and(|l| l != "READ COMMITTED")
                        || !locks_held.is_empty()
                        || f.guard.as_deref().is_some_and(|g| g.to_ascii_lowercase().contains("version"));
                    n.push(format!(
                        "UPDATE sets stock = {e}: a value computed from an earlier read, not from the row; {wait}"
                    ));
                    if !protected {
                        n.push("nothing stops another buyer from committing between that read and this write: its update is overwritten (P4 lost update)".into());
                    }
                }
            }
            if let Some(g) = &f.guard {
                n.push(format!(
                    "guarded by WHERE {g}: re-checked on the latest row version after any wait; no row means the write did not happen"
                ));
            }
            // Without a lock taken earlier, the UPDATE is where buyers queue.
            if waits.is_empty() {
                waits.push(format!(
                    "line {}: the row lock of the product (UPDATE)",
                    f.line
                ));
            }
            if !lock_names
                .iter()
                .any(|l| l.starts_with("row lock taken by UPDATE"))
            {
                lock_names.push("row lock taken by UPDATE".into());
            }
            locks_held.push("the product's row lock".into());
        } else if let Some(t) = &f.writes {
            let up = f.text.to_ascii_uppercase();
            if up.starts_with("INSERT")
                || up.contains(" INSERT INTO") && f.stock_write.is_none() && !up.contains("DELETE")
            {
                n.push(format!("writes {t}: a new row, no lock on existing rows"));
            } else {
                n.push(format!(
                    "writes {t}: locks every row it changes until the transaction ends"
                ));
            }
        }
        if f.gset && f.row_lock.is_none() && f.advisory.is_none() {
            let lock = if in_tx && iso == Some("READ COMMITTED") || iso.is_none() {
                "no lock: "
            } else {
                "no lock, from the transaction's snapshot: "
            };
            n.push(format!("{lock}reads into variables with \\gset; another buyer may change the row right after"));
        }
        if f.commit {
            n.push(
                "COMMIT: makes the writes visible and releases every lock the transaction holds"
                    .into(),
            );
            in_tx = false;
            locks_held.clear();
        }
        if f.rollback {
            n.push("ROLLBACK: undoes the transaction and releases its locks".into());
        }
        if !in_tx && f.begin.is_none() && !f.commit && !f.rollback && f.writes.is_some() {
            n.push("outside a transaction block: the statement commits on its own, and its locks last only for the statement".into());
        }
        let at = end_of(f.line).min(lines.len());
        notes[at].extend(n);
    }
    // Meta-commands and \setup, from the source text.
    let mut in_setup = false;
    let mut held = false;
    for (i, raw) in lines.iter().enumerate() {
        let l = i + 1;
        let t = raw.trim();
        if let Some(f) = stmts.iter().find(|f| f.line == l) {
            if f.begin.is_some() {
                held = false;
            }
            if f.row_lock.is_some() || f.advisory.is_some() || f.stock_write.is_some() {
                held = true;
            }
            if f.commit || f.rollback {
                held = false;
            }
        }
        if t == "\\setup" {
            in_setup = true;
            notes[l].push("\\setup: runs once on the fresh lab before the buyers start".into());
        } else if t == "\\endsetup" {
            in_setup = false;
        } else if in_setup {
            let up = t.to_ascii_uppercase();
            if up.contains("CHECK") && up.contains("CONSTRAINT") {
                notes[l].push("a CHECK constraint: a write that breaks it fails with 23514 and the attempt is rejected (a safe refusal, enforced by the database on every write)".into());
            } else if up.starts_with("CREATE TABLE") {
                notes[l].push("an extra table the strategy needs".into());
            }
        } else if t.starts_with("\\sleep") {
            notes[l].push(if held {
                "think time WITH locks held: every other buyer of this product waits this long"
                    .into()
            } else {
                "think time, no lock held".into()
            });
        } else if t.starts_with("\\retry") {
            notes[l].push("\\retry: roll back and try again (at most --max-tries tries): the price of optimism".into());
        } else if t.starts_with("\\sold_out") {
            notes[l].push("\\sold_out: ends the attempt as sold out".into());
        }
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
    let _ = writeln!(
        out,
        "Isolation level: {}",
        iso.unwrap_or("none: every statement commits on its own (autocommit)")
    );
    lock_names.dedup();
    let _ = writeln!(
        out,
        "Locking: {}",
        if lock_names.is_empty() {
            "none taken explicitly".to_string()
        } else {
            lock_names.join("; ")
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
    if s.program.has_setup() {
        let _ = writeln!(
            out,
            "Setup: a \\setup block changes the lab before the race (see the notes above)"
        );
    }
    let _ = writeln!(out, "Mechanical verdict: {}", verdict(&stmts, &s.source));
    let desc = strategy::description(&s.source).replace('\n', " ");
    for key in ["Safe", "Cost:"] {
        if let Some(i) = desc.find(key) {
            let rest = &desc[i..];
            let end = rest.find(". ").map_or(rest.len(), |e| e + 1);
            let label = if key == "Safe" {
                "Safety (the script says)"
            } else {
                "Cost (the script says)"
            };
            let text = rest[..end].trim();
            let _ = writeln!(
                out,
                "{label}: {}",
                text.strip_prefix("Cost: ").unwrap_or(text)
            );
        }
    }
    out
}

/// Safe or unsafe, from the statements alone.
fn verdict(stmts: &[StmtFacts], source: &str) -> String {
    let iso = isolation(stmts);
    let mut locked = false;
    for f in stmts {
        if f.row_lock.is_some() && !f.skip_locked
            || f.advisory.as_deref().is_some_and(|a| !a.contains("try"))
        {
            locked = true;
        }
        if let Some(StockWrite::FromVariables(_)) = &f.stock_write {
            let versioned = f
                .guard
                .as_deref()
                .is_some_and(|g| g.to_ascii_lowercase().contains("version"));
            if versioned {
                return "SAFE: the write checks the version it read (optimistic): a stale write matches no row and the try is retried".into();
            }
            if locked {
                return "SAFE: the value written back was read under a lock every buyer takes, so no one can change it in between".into();
            }
            return match iso {
                Some("SERIALIZABLE") | Some("REPEATABLE READ") => format!(
                    "SAFE: at {} a write over a row changed since the snapshot fails with 40001 and is retried",
                    iso.unwrap_or_default()
                ),
                _ => "UNSAFE: stock is written back from a value read without a lock at READ COMMITTED: P4 lost update, oversold stock (prevented at REPEATABLE READ, or with SELECT ... FOR UPDATE)".into(),
            };
        }
        if let Some(StockWrite::Relative(_)) = &f.stock_write {
            if f.guard.is_some() {
                return "SAFE: one atomic conditional decrement, re-checked on the latest row version".into();
            }
            if source.to_ascii_uppercase().contains("CHECK (STOCK >= 0)") {
                return "SAFE: a relative decrement never loses an update, and the CHECK constraint refuses stock below zero".into();
            }
            if stmts.iter().any(|s| s.skip_locked) {
                return "SAFE: each unit row can be claimed (locked and deleted) by one buyer only; the stock column follows with a relative decrement".into();
            }
            return "UNSURE: a relative decrement never loses an update, but nothing here stops stock going below zero".into();
        }
    }
    "UNSURE: racelab found no write to products.stock it recognizes".into()
}
