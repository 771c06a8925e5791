//! The human report of one run: what was raced, the outcomes beside the
//! audit, latency overall and by outcome, throughput, and the verdict.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use super::{fmt_count, fmt_us, RunResult};
use crate::db::DbKind;
use crate::outcome::Outcome;
use crate::result::{FlowInfo, NemesisInfo, Summary, Truth};
use crate::verdict::{self, Verdict};

/// Render one run for a terminal (`color` adds ANSI colours to the verdict).
pub fn render_run(r: &RunResult, color: bool) -> String {
    let mut out = String::new();
    out.push_str(&headline(r));
    out.push('\n');

    let a = r.audit.as_ref();
    let num = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["outcome", "attempts", "", truth_header(r), "value"]);
    let o = &r.outcomes;
    let rows: [(&str, String, &str, String); 6] = [
        (
            "succeeded",
            fmt_count(o.succeeded),
            "initial stock",
            num(a.map(|a| a.initial_stock)),
        ),
        (
            "sold out",
            fmt_count(o.sold_out),
            "units sold",
            num(a.map(|a| a.units_sold)),
        ),
        (
            "rejected",
            fmt_count(o.rejected),
            "final stock",
            num(a.map(|a| a.final_stock)),
        ),
        (
            "gave up",
            fmt_count(o.gave_up),
            "oversold units",
            num(a.map(|a| a.oversold_units)),
        ),
        (
            "errors",
            fmt_count(o.errors),
            "stock drift",
            num(a.map(|a| a.stock_drift)),
        ),
        (
            "unknown",
            fmt_count(o.unknown),
            "believed sold",
            r.believed_units_sold.to_string(),
        ),
    ];
    // Duplicates are shown where they can occur or did: with a nemesis,
    // or when the audit found any.
    let duplicates = a
        .map(|a| a.duplicate_orders)
        .filter(|&n| n > 0 || r.nemesis.is_some());
    let extra = duplicates.map(|n| ("", String::new(), "duplicate orders", n.to_string()));
    for (name, count, audit_name, audit_value) in rows.into_iter().chain(extra) {
        t.add_row(vec![
            Cell::new(name),
            Cell::new(count).set_alignment(CellAlignment::Right),
            Cell::new(""),
            Cell::new(audit_name),
            Cell::new(audit_value).set_alignment(CellAlignment::Right),
        ]);
    }
    t.add_row(vec![
        Cell::new("total"),
        Cell::new(fmt_count(o.attempts)).set_alignment(CellAlignment::Right),
        Cell::new(""),
        Cell::new("retries"),
        Cell::new(fmt_count(o.retries)).set_alignment(CellAlignment::Right),
    ]);
    out.push_str(&t.to_string());
    out.push('\n');

    let mut lat = Table::new();
    lat.load_preset(UTF8_FULL_CONDENSED);
    lat.set_header(vec![
        "latency", "count", "mean", "p50", "p90", "p99", "p99.9", "max",
    ]);
    let mut add = |name: &str, s: &Summary| {
        let mut row = vec![
            Cell::new(name),
            Cell::new(fmt_count(s.count)).set_alignment(CellAlignment::Right),
        ];
        for v in [s.mean.round() as u64, s.p50, s.p90, s.p99, s.p999, s.max] {
            row.push(Cell::new(fmt_us(v)).set_alignment(CellAlignment::Right));
        }
        lat.add_row(row);
    };
    add("all attempts", &r.latency_us.attempt);
    for outcome in Outcome::ALL {
        if let Some(s) = r.latency_us.by_outcome.get(outcome.as_str()) {
            add(outcome.as_str(), s);
        }
    }
    if let Some(target) = &r.target {
        for (status, s) in &target.by_status {
            add(&format!("HTTP {status}"), s);
        }
    }
    out.push_str(&lat.to_string());
    out.push('\n');
    if let Some(flow) = r.target.as_ref().and_then(|t| t.flow.as_ref()) {
        out.push_str(&flow_steps(flow));
    }

    let tp = &r.throughput;
    let cpu = tp.client_cpu_us_per_attempt.map_or(String::new(), |c| {
        format!(", racelab CPU {c:.1} us/attempt")
    });
    out.push_str(&format!(
        "throughput: {} attempts in {:.3} s = {} attempts/s, {} successes/s{cpu}\n",
        fmt_count(o.attempts),
        tp.wall_seconds,
        fmt_count(tp.attempts_per_sec.round() as u64),
        fmt_count(tp.successes_per_sec.round() as u64),
    ));
    if let Some(ol) = &r.open_loop {
        out.push_str(&format!(
            "open loop: {} attempts/s scheduled, {} started, {} late (> {}); schedule lag p50 {}, p90 {}, max {}; latency from the scheduled start\n",
            ol.rate_per_s,
            fmt_count(ol.started),
            fmt_count(ol.late),
            fmt_us(ol.late_after_us),
            fmt_us(ol.lag_us.p50),
            fmt_us(ol.lag_us.p90),
            fmt_us(ol.lag_us.max),
        ));
    }
    out.push_str(&format!("contention: {}\n", contention(r)));
    for e in &r.error_messages {
        out.push_str(&format!("error ({}x): {}\n", e.count, e.message));
    }
    if let Some(hint) = r
        .target
        .as_ref()
        .and_then(|t| verdict::unmapped(t, o.attempts))
    {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out.push_str(&paint(&verdict::sentence(r), r.verdict, color));
    out.push('\n');
    out
}

/// The right-hand header: which truth the audit's numbers come from.
fn truth_header(r: &RunResult) -> &'static str {
    match r.target.as_ref().map(|t| t.truth) {
        None | Some(Truth::VerifySql) => "audit (database)",
        Some(Truth::StockUrl) => "audit (stock endpoint)",
        Some(Truth::ClientBelief) => "audit (declared stock)",
    }
}

/// The contention of a run in words, e.g. "released within 850 µs, at
/// most 100 attempts in flight on one product, 100 of 100 overlapped
/// another".
pub fn contention(r: &RunResult) -> String {
    let c = &r.contention;
    format!(
        "released within {}, at most {} {} in flight on one product, {} of {} attempts \
         overlapped another",
        fmt_us(c.release_spread_us),
        c.peak_in_flight,
        verdict::noun(i64::from(c.peak_in_flight), "attempt", "attempts"),
        fmt_count(c.overlapped_attempts),
        fmt_count(r.outcomes.attempts)
    )
}

/// "strategy naive on scenario default: 100 buyers x 1 attempt, stock 10,
/// ..." and the server; for an HTTP run, the target and its truth.
pub fn headline(r: &RunResult) -> String {
    let s = &r.scenario;
    let buyers = verdict::noun(i64::from(s.buyers), "buyer", "buyers");
    let work = if s.duration_s > 0.0 {
        format!("{} {} for {} s", s.buyers, buyers, s.duration_s)
    } else {
        format!(
            "{} {} x {} attempt{}",
            s.buyers,
            buyers,
            s.attempts_per_buyer,
            if s.attempts_per_buyer == 1 { "" } else { "s" }
        )
    };
    let products = if s.products > 1 {
        format!(" across {} products", s.products)
    } else {
        String::new()
    };
    let pool = if s.connections > 0 {
        format!(", pool of {} connections", s.connections)
    } else {
        String::new()
    };
    let (Some(db), Some(strategy)) = (&r.database, &r.strategy) else {
        return target_headline(r, &work);
    };
    let kind = match db.kind {
        DbKind::Embedded => "embedded",
        DbKind::Kept => "kept",
        DbKind::External => "external",
    };
    let durability = if db.durable { "durable" } else { "fsync off" };
    let mut line = format!(
        "strategy {} on scenario {}: {work}, stock {}{products}, quantity {}, think {} ms{pool}\n\
         PostgreSQL {} ({kind}, {durability}){}, seed {}",
        strategy.name,
        s.name,
        s.stock,
        s.quantity,
        s.think_ms,
        db.server_version,
        topology(r),
        s.seed
    );
    if let Some(n) = &r.nemesis {
        line.push('\n');
        line.push_str(&nemesis(n));
    }
    line
}

/// "nemesis: terminate 5/s (12 backends terminated), drop-reply 0.3 (41
/// replies dropped); 53 reconnects; retry-unknown 3 (41 resubmitted)".
pub fn nemesis(n: &NemesisInfo) -> String {
    let mut parts: Vec<String> = n
        .faults
        .iter()
        .map(|f| match f.kind.as_str() {
            "terminate" => format!(
                "terminate {}/s ({} {} terminated)",
                f.rate,
                n.terminated,
                verdict::noun(n.terminated as i64, "backend", "backends")
            ),
            "drop-reply" => format!(
                "drop-reply {} ({} {} dropped)",
                f.rate,
                n.dropped_replies,
                verdict::noun(n.dropped_replies as i64, "reply", "replies")
            ),
            other => format!("{other} {}", f.rate),
        })
        .collect();
    if !n.faults.is_empty() {
        parts = vec![format!(
            "{}; {} {}",
            parts.join(", "),
            n.reconnects,
            verdict::noun(n.reconnects as i64, "reconnect", "reconnects")
        )];
    }
    if n.retry_unknown > 0 {
        parts.push(format!(
            "retry-unknown {} ({} resubmitted)",
            n.retry_unknown, n.resubmitted
        ));
    }
    format!("nemesis: {}", parts.join("; "))
}

/// ", buyers through PgBouncer (transaction pooling, 20 server
/// connections)", or nothing for buyers connected directly.
pub fn topology(r: &RunResult) -> String {
    match &r.topology {
        Some(t) => format!(
            ", buyers through {} ({} pooling, {} server {})",
            if t.via == "pgbouncer" {
                "PgBouncer"
            } else {
                t.via.as_str()
            },
            t.pool_mode.as_str(),
            t.pool_size,
            if t.pool_size == 1 {
                "connection"
            } else {
                "connections"
            }
        ),
        None => String::new(),
    }
}

/// "target POST http://... : 100 buyers x 1 attempt, quantity 1", how the
/// requests went (HTTP version, connections, release), and where the
/// audit's numbers came from (the client's belief labelled as such).
fn target_headline(r: &RunResult, work: &str) -> String {
    let Some(t) = &r.target else {
        return work.to_string();
    };
    let s = &r.scenario;
    let truth = match t.truth {
        Truth::VerifySql => match &r.database {
            Some(db) => format!(
                "truth: --verify-sql on the service's database (PostgreSQL {})",
                db.server_version
            ),
            None => "truth: --verify-sql on the service's database".to_string(),
        },
        Truth::StockUrl => "truth: the service's stock endpoint, read before and after".to_string(),
        Truth::ClientBelief => format!(
            "truth: CLIENT-SIDE BELIEF only (--stock {} against the successes racelab counted; \
             the service's own records were not read)",
            s.stock
        ),
    };
    let protocol = if t.protocol == "h2" {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    };
    let conns = match t.connections {
        1 => "1 connection".to_string(),
        n => format!("{n} connections"),
    };
    let sync = match (t.sync.as_str(), t.protocol.as_str()) {
        ("last-byte", "h2") => "first requests released by their final frames",
        ("last-byte", _) => "first requests released by their last byte",
        _ => "first requests sent whole after the barrier",
    };
    format!(
        "target {} {}: {work}, quantity {}, request timeout {} ms\n\
         {protocol} over {conns}, {sync}; {truth}, seed {}",
        t.method, t.url, s.quantity, t.timeout_ms, s.seed
    )
}

/// Colour a verdict for a terminal.
pub fn paint(text: &str, verdict: Option<Verdict>, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match verdict {
        Some(Verdict::Safe) => "32",
        Some(Verdict::Oversold) => "1;31",
        Some(Verdict::Inconsistent) => "33",
        Some(Verdict::Inconclusive) => "36",
        None => "35",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Table cell colour for a verdict (used by the compare table).
pub fn verdict_color(v: Option<Verdict>) -> Color {
    match v {
        Some(Verdict::Safe) => Color::Green,
        Some(Verdict::Oversold) => Color::Red,
        Some(Verdict::Inconsistent) => Color::Yellow,
        Some(Verdict::Inconclusive) => Color::Cyan,
        None => Color::Magenta,
    }
}

/// An HTTP flow's steps: requests by status, failures and latency, and
/// the buyers a step before the race put out of it.
fn flow_steps(f: &FlowInfo) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "step", "request", "phase", "requests", "statuses", "failed", "p50", "p99", "max",
    ]);
    for s in &f.steps {
        let statuses: Vec<String> = s
            .by_status
            .iter()
            .map(|(k, n)| format!("{k}: {}", fmt_count(*n)))
            .collect();
        let phase = if s.every {
            format!("{} (every)", s.phase)
        } else {
            s.phase.clone()
        };
        let right = |v: String| Cell::new(v).set_alignment(CellAlignment::Right);
        t.add_row(vec![
            Cell::new(&s.name),
            Cell::new(&s.request),
            Cell::new(phase),
            right(fmt_count(s.requests)),
            Cell::new(statuses.join(", ")),
            right(fmt_count(s.failed)),
            right(fmt_us(s.latency_us.p50)),
            right(fmt_us(s.latency_us.p99)),
            right(fmt_us(s.latency_us.max)),
        ]);
    }
    let mut out = format!("flow {}\n{t}\n", f.file);
    if f.out_of_race > 0 {
        out.push_str(&format!(
            "out of the race: {} buyers (--max-setup-failures {})\n",
            f.out_of_race, f.max_setup_failures
        ));
        for c in &f.setup_failures {
            out.push_str(&format!(
                "  step {:?}, HTTP {}: {} buyers: {}\n",
                c.step, c.status, c.buyers, c.message
            ));
        }
    }
    for s in &f.steps {
        for e in &s.failures {
            out.push_str(&format!(
                "step {:?} failed {} times: {}\n",
                s.name, e.count, e.message
            ));
        }
    }
    out
}
