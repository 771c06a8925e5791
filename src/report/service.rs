//! The service's trace in words (`racelab http --service ... --trace`)
//! and in the HTML report: the anomalies first, each with the read it
//! relied on, the write, and the other requests' writes that committed in
//! between; then the statements in time order, with the request, the
//! connection's transaction and what each read or wrote.

use std::fmt::Write as _;

use crate::result::{ServiceAccess, ServiceInfo, ServiceTrace};

fn who(buyer: Option<u32>) -> String {
    buyer.map_or_else(|| "(no request)".to_string(), |b| format!("buyer {b}"))
}

fn ms(us: i64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn access(a: &ServiceAccess) -> String {
    format!(
        "{} at {} (txn {}): {}{}",
        who(a.buyer),
        ms(a.at_us),
        a.txn.map_or("-".into(), |t| t.to_string()),
        a.sql,
        a.value
            .as_ref()
            .map_or(String::new(), |v| format!(" → {v}"))
    )
}

/// One line on the service's trace (always printed with the run).
pub fn summary(info: &ServiceInfo) -> String {
    let Some(t) = &info.trace else {
        return String::new();
    };
    let mut kinds: Vec<&str> = t.anomalies.iter().map(|a| a.name.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    format!(
        "service: {} statements in {} transactions on {} connections (tied by {}); anomalies: {}\n",
        t.statements,
        t.transactions,
        t.connections,
        t.tie.replace('_', " "),
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds
                .iter()
                .map(|k| {
                    let n = t.anomalies.iter().filter(|a| a.name == *k).count();
                    format!("{k} ×{n}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}

/// The whole trace (`--trace`).
pub fn render(t: &ServiceTrace) -> String {
    let mut out = String::from("\nthe service's transactions (through the wire proxy):\n");
    for s in &t.steps {
        let _ = writeln!(
            out,
            "{:>9}  {:<12} conn {:<3} txn {:<4} {:<8} {}{}{}",
            ms(s.start_us),
            who(s.buyer),
            s.conn,
            s.txn.map_or("-".into(), |t| t.to_string()),
            s.role,
            s.sql,
            s.what
                .as_ref()
                .map_or(String::new(), |w| format!("   [{w}]")),
            s.error
                .as_ref()
                .map_or(String::new(), |e| format!("   ERROR {e}"))
        );
    }
    if t.steps_truncated {
        let _ = writeln!(out, "   ... {} statements in all", t.statements);
    }
    if t.anomalies.is_empty() {
        out.push_str("no anomaly in the service's transactions\n");
    }
    for a in &t.anomalies {
        let _ = writeln!(
            out,
            "{} on {} ({}):\n  read:  {}\n  write: {}",
            a.name,
            a.row,
            a.prevented_at.as_ref().map_or_else(
                || "no isolation level prevents it: one transaction, or a guarded write, does"
                    .to_string(),
                |l| format!("prevented at {l}")
            ),
            access(&a.read),
            access(&a.write)
        );
        for o in &a.overtaken_by {
            let _ = writeln!(out, "  overtaken by {}", access(o));
        }
    }
    out
}

/// The HTML section for one run's service.
pub fn html(h: &mut String, name: &str, info: &ServiceInfo, esc: impl Fn(&str) -> String) {
    let Some(t) = &info.trace else {
        return;
    };
    let _ = writeln!(h, "<h3>{}: the service's transactions</h3>", esc(name));
    let _ = writeln!(h, "<p>{}</p>", esc(summary(info).trim()));
    if !t.anomalies.is_empty() {
        h.push_str("<table><tr><th>anomaly</th><th>row</th><th>prevented at</th><th>read</th><th>write</th><th>overtaken by</th></tr>\n");
        for a in &t.anomalies {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.name),
                esc(&a.row),
                esc(a.prevented_at.as_deref().unwrap_or("no isolation level")),
                esc(&access(&a.read)),
                esc(&access(&a.write)),
                esc(&a
                    .overtaken_by
                    .iter()
                    .map(access)
                    .collect::<Vec<_>>()
                    .join("; "))
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("<table><tr><th>at</th><th>request</th><th>conn</th><th>txn</th><th>role</th><th>SQL</th><th>values</th></tr>\n");
    for s in t.steps.iter().take(300) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&ms(s.start_us)),
            esc(&who(s.buyer)),
            s.conn,
            s.txn.map_or("-".into(), |t| t.to_string()),
            esc(&s.role),
            esc(&s.sql),
            esc(&s.what.clone().or_else(|| s.error.clone()).unwrap_or_default())
        );
    }
    h.push_str("</table>\n");
}
