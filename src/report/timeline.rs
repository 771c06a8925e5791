//! The `--trace` timeline in words: every recorded step in time order, the
//! waits, and the anomalies the analysis (`crate::trace`) found, named in
//! Adya/Hermitage terms with the weakest isolation level that prevents them.

use std::fmt::Write as _;

use crate::trace::{Role, Step, Timeline};

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

fn describe(s: &Step) -> String {
    let what = short(s.what.trim(), 58);
    let mut d = match (&s.role, s.kind) {
        (Role::Read { value, locking }, _) => format!(
            "reads stock = {value}{}   [line {}: {what}]",
            if *locking { " (row locked)" } else { "" },
            s.line
        ),
        (Role::Write { value: Some(v), .. }, _) => {
            format!("writes stock := {v}   [line {}: {what}]", s.line)
        }
        (Role::Write { expr, .. }, _) => {
            format!("writes stock := {expr}   [line {}: {what}]", s.line)
        }
        (Role::NoWrite, _) => format!("write matched no row   [line {}: {what}]", s.line),
        (Role::Commit { stock: Some(w) }, _) if !w.is_empty() => format!("commits {w}"),
        (Role::Commit { .. }, _) => "commits".to_string(),
        (_, "outcome") => format!(
            "→ {}",
            s.outcome.map(|o| o.as_str()).unwrap_or(s.what.as_str())
        ),
        (_, "backoff") => "backs off before retrying".to_string(),
        (_, "sleep") => format!("{what} (thinks)"),
        _ => what,
    };
    if let Some(b) = s.waited_for {
        let _ = write!(
            d,
            "   ⏳ waited {} ms, until buyer {b} released its lock",
            ms(s.end_us - s.start_us)
        );
    }
    if let Some(e) = &s.error {
        if s.kind != "outcome" {
            let _ = write!(d, "   ✗ {}", short(e, 90));
        }
    }
    if s.try_no > 1 {
        let _ = write!(d, "   (try {})", s.try_no);
    }
    d
}

/// The timeline of one traced run.
pub fn render(t: &Timeline) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nTrace of {}: {} steps; ms since the buyers were released",
        t.strategy,
        t.steps.len()
    );
    // Mark the commits that overwrote someone, on their own line.
    for s in &t.steps {
        let mut line = format!(
            "{:>10}  buyer {:<3} {}",
            ms(s.start_us),
            s.buyer,
            describe(s)
        );
        if matches!(s.role, Role::Commit { .. } | Role::Write { .. }) {
            for a in t.anomalies.iter().filter(|a| {
                a.buyer == s.buyer && a.attempt == s.attempt && a.commit_us == s.start_us
            }) {
                let whom: Vec<String> = a
                    .overtaken_by
                    .iter()
                    .map(|(b, _, _)| b.to_string())
                    .collect();
                let whose = match whom.as_slice() {
                    [one] => format!("buyer {one}'s update"),
                    many => format!("the updates of buyers {}", many.join(", ")),
                };
                let verb = if a.name.starts_with("P4") {
                    "overwrote"
                } else {
                    "had not seen"
                };
                let _ = write!(line, "   ← {verb} {whose} ({})", a.name);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    let waits: Vec<&Step> = t.waits().collect();
    if waits.is_empty() {
        out.push_str("Waits: no statement waited on another buyer's lock.\n");
    } else {
        let longest = waits
            .iter()
            .map(|s| s.end_us - s.start_us)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "Waits: {} statements waited for another buyer's COMMIT or ROLLBACK (longest {} ms).",
            waits.len(),
            ms(longest)
        );
    }
    if t.anomalies.is_empty() {
        out.push_str(
            "Anomalies: none. No committed write or decision rested on a read that another buyer's commit had overtaken.\n",
        );
        return out;
    }
    let _ = writeln!(out, "Anomalies: {}", t.anomalies.len());
    for a in &t.anomalies {
        let others: Vec<String> = a
            .overtaken_by
            .iter()
            .map(|(b, at, w)| match w {
                Some(w) => format!("buyer {b}'s {w} committed at {} ms", ms(*at)),
                None => format!("buyer {b}'s write committed at {} ms", ms(*at)),
            })
            .collect();
        let committed = a
            .committed
            .as_deref()
            .map(|c| format!(" and committed {c}"))
            .unwrap_or_else(|| " and committed".to_string());
        let read = match a.read_value {
            Some(v) => format!("{} = {v}", a.item),
            None => a.item.clone(),
        };
        let _ = writeln!(
            out,
            "  {}: buyer {} (attempt {}, product {}) read {read} at {} ms{committed} at {} ms, after {}.",
            a.name,
            a.buyer,
            a.attempt,
            a.product,
            ms(a.read_us),
            ms(a.commit_us),
            others.join("; ")
        );
        let why = match a.name {
            n if n.starts_with("P4") => {
                "its write was computed from the stale read, so it overwrote that update"
            }
            n if n.starts_with("G-single") => {
                "its decision rested on the stale read, though its write was relative"
            }
            n if n.starts_with("split") => {
                "it checked in one transaction and wrote in a later one, with that commit in between"
            }
            n if n.starts_with("G2 ") => {
                "it decided on what a predicate read missed (a row another buyer inserted) and wrote other rows"
            }
            _ => "it decided on the stale read and wrote other rows than the one it read",
        };
        let _ = writeln!(
            out,
            "    {why}. {}",
            crate::trace::prevention(a.prevented_at)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::trace::Anomaly;

    fn step(buyer: u32, start_us: u64, end_us: u64, line: usize, what: &str, role: Role) -> Step {
        Step {
            buyer,
            attempt: i64::from(buyer),
            try_no: 1,
            product: 1,
            start_us,
            end_us,
            line,
            kind: "sql",
            what: what.into(),
            rows: Some(1),
            values: Vec::new(),
            error: None,
            outcome: None,
            role,
            waited_for: None,
        }
    }

    /// Two buyers read 1, both write 0: the second overwrote the first.
    fn lost_update() -> Timeline {
        let read = "SELECT stock FROM products WHERE id = :product";
        let write = "UPDATE products SET stock = :stock - :qty WHERE id = :product";
        let w = |v| Role::Write {
            value: Some(v),
            expr: ":stock - :qty".into(),
        };
        let commit = || Role::Commit {
            stock: Some("stock := 0".into()),
        };
        let mut waited = step(2, 1_200, 4_700, 12, write, w(0));
        waited.waited_for = Some(1);
        let mut outcome = step(2, 5_600, 5_600, 0, "succeeded", Role::Other);
        outcome.kind = "outcome";
        outcome.outcome = Some(Outcome::Succeeded);
        let mut sleep = step(1, 300, 1_100, 9, "\\sleep 800us", Role::Other);
        sleep.kind = "sleep";
        sleep.rows = None;
        let mut retry = step(2, 5_000, 5_100, 13, "INSERT INTO orders", Role::Other);
        retry.try_no = 2;
        retry.error = Some("40001: could not serialize access".into());
        Timeline {
            strategy: "naive".into(),
            steps: vec![
                step(
                    1,
                    0,
                    120,
                    6,
                    read,
                    Role::Read {
                        value: 1,
                        locking: false,
                    },
                ),
                step(
                    2,
                    10,
                    150,
                    6,
                    read,
                    Role::Read {
                        value: 1,
                        locking: true,
                    },
                ),
                sleep,
                step(1, 1_150, 1_300, 12, write, w(0)),
                step(1, 4_200, 4_600, 15, "COMMIT", commit()),
                waited,
                retry,
                step(2, 5_200, 5_500, 15, "COMMIT", commit()),
                outcome,
            ],
            anomalies: vec![Anomaly {
                name: "P4 lost update",
                prevented_at: Some("REPEATABLE READ"),
                item: "products.stock (id = 1)".into(),
                product: 1,
                buyer: 2,
                attempt: 2,
                read_value: Some(1),
                read_us: 10,
                commit_us: 5_200,
                committed: Some("stock := 0".into()),
                overtaken_by: vec![(1, 4_200, Some("stock := 0".into()))],
            }],
        }
    }

    #[test]
    fn renders_a_lost_update() {
        let expected = "
Trace of naive: 9 steps; ms since the buyers were released
     0.000  buyer 1   reads stock = 1   [line 6: SELECT stock FROM products WHERE id = :product]
     0.010  buyer 2   reads stock = 1 (row locked)   [line 6: SELECT stock FROM products WHERE id = :product]
     0.300  buyer 1   \\sleep 800us (thinks)
     1.150  buyer 1   writes stock := 0   [line 12: UPDATE products SET stock = :stock - :qty WHERE id = :pro…]
     4.200  buyer 1   commits stock := 0
     1.200  buyer 2   writes stock := 0   [line 12: UPDATE products SET stock = :stock - :qty WHERE id = :pro…]   ⏳ waited 3.500 ms, until buyer 1 released its lock
     5.000  buyer 2   INSERT INTO orders   ✗ 40001: could not serialize access   (try 2)
     5.200  buyer 2   commits stock := 0   ← overwrote buyer 1's update (P4 lost update)
     5.600  buyer 2   → succeeded

Waits: 1 statements waited for another buyer's COMMIT or ROLLBACK (longest 3.500 ms).
Anomalies: 1
  P4 lost update: buyer 2 (attempt 2, product 1) read products.stock (id = 1) = 1 at 0.010 ms and committed stock := 0 at 5.200 ms, after buyer 1's stock := 0 committed at 4.200 ms.
    its write was computed from the stale read, so it overwrote that update. Prevented at REPEATABLE READ in PostgreSQL (the later writer fails with 40001 and retries), or by locking the read (SELECT ... FOR UPDATE).
";
        assert_eq!(render(&lost_update()), expected);
    }

    #[test]
    fn renders_a_clean_run() {
        let mut t = lost_update();
        t.anomalies.clear();
        for s in &mut t.steps {
            s.waited_for = None;
        }
        let out = render(&t);
        assert!(out.ends_with(
            "Waits: no statement waited on another buyer's lock.\nAnomalies: none. No committed write or decision rested on a read that another buyer's commit had overtaken.\n"
        ), "{out}");
        assert!(!out.contains('←'), "{out}");
    }
}
