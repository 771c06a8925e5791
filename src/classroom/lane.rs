//! A closed round drawn for the projector: its trace (`crate::trace`'s
//! analysis of every statement the buyers ran) as the swim-lane explore
//! draws (`report::swimlane`), for the few buyers that tell the story —
//! the one whose update was overwritten, the one who overwrote it, a
//! buyer who waited — and the anomaly in a short paragraph with names.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::result::explore::{
    BuyerEnd, Counterexample, ExploreAnomaly, Overtaken, ScheduleStep, StepRole,
};
use crate::result::{RunResult, Verdict};
use crate::trace::{Anomaly, Role, Step, Timeline};

/// Most buyers the swim-lane shows side by side.
pub const MAX_LANES: usize = 4;

/// What the projector shows of a closed round.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub explanation: String,
    /// Each anomaly the analysis named, with the buyers' names.
    pub anomalies: Vec<Value>,
    /// Statements that waited for another buyer's lock.
    pub waits: usize,
    /// The swim-lane (SVG), when anything was traced.
    pub swimlane: Option<String>,
    /// Which lane is whom, and how many buyers are not drawn.
    pub caption: String,
    /// The whole timeline in words (`report::timeline`).
    pub timeline: String,
}

/// Buyer `n`'s name (`names[n - 1]`).
fn name(names: &[String], n: u32) -> String {
    names
        .get(n as usize - 1)
        .cloned()
        .unwrap_or_else(|| format!("buyer {n}"))
}

fn ms(us: u64) -> String {
    format!("{:.0} ms", us as f64 / 1000.0)
}

/// The projector's view of a round's timeline.
pub fn view(t: &Timeline, names: &[String], r: &RunResult) -> View {
    let anomalies = t
        .anomalies
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "prevented_at": a.prevented_at,
                "buyer": a.buyer,
                "who": name(names, a.buyer),
                "read_value": a.read_value,
                "committed": a.committed,
                "overwrote": a.overtaken_by.iter().map(|(b, _, _)| name(names, *b)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let shown = shown_buyers(t);
    let swimlane = r.audit.clone().filter(|_| !shown.is_empty()).map(|audit| {
        let c = counterexample(t, &shown, audit, r.verdict.unwrap_or(Verdict::Inconclusive));
        crate::report::swimlane::diagram(&c)
    });
    let mut caption: Vec<String> = shown
        .iter()
        .enumerate()
        .map(|(i, b)| format!("buyer {} = {}", i + 1, name(names, *b)))
        .collect();
    let traced: BTreeSet<u32> = t.steps.iter().map(|s| s.buyer).collect();
    if traced.len() > shown.len() {
        caption.push(format!(
            "{} more buyers not drawn",
            traced.len() - shown.len()
        ));
    }
    View {
        explanation: explanation(t, names, r),
        anomalies,
        waits: t.waits().count(),
        swimlane,
        caption: caption.join(" · "),
        timeline: crate::report::timeline::render(t),
    }
}

/// The buyers worth a lane, in the order of their first statement: the
/// first anomaly's buyer and the buyer it overwrote first, then a buyer
/// who waited and the one it waited for, then the earliest buyers.
fn shown_buyers(t: &Timeline) -> Vec<u32> {
    let mut want: Vec<u32> = Vec::new();
    let add = |b: u32, want: &mut Vec<u32>| {
        if want.len() < MAX_LANES && !want.contains(&b) {
            want.push(b);
        }
    };
    if let Some(a) = t.anomalies.first() {
        add(a.buyer, &mut want);
        if let Some((b, _, _)) = a.overtaken_by.first() {
            add(*b, &mut want);
        }
    }
    if let Some(w) = t.waits().next() {
        if let Some(by) = w.waited_for {
            add(by, &mut want);
        }
        add(w.buyer, &mut want);
    }
    let mut first_step: Vec<(u64, u32)> = Vec::new();
    for s in &t.steps {
        if !first_step.iter().any(|(_, b)| *b == s.buyer) {
            first_step.push((s.start_us, s.buyer));
        }
    }
    first_step.sort_unstable();
    for (_, b) in &first_step {
        add(*b, &mut want);
    }
    want.sort_by_key(|b| {
        first_step
            .iter()
            .find(|(_, x)| x == b)
            .map_or(u64::MAX, |(at, _)| *at)
    });
    want
}

/// Whether a step of the trace is a row of the swim-lane: what the buyer
/// sent (SQL, Redis, ROLLBACK) and its think time.
fn drawn(s: &Step) -> bool {
    matches!(s.kind, "sql" | "redis" | "rollback" | "sleep")
}

/// The timeline of the `shown` buyers as explore records a schedule, so
/// that `report::swimlane` draws it: one row per step in the order the
/// steps started, lanes numbered 1.. in the order of `shown`.
fn counterexample(
    t: &Timeline,
    shown: &[u32],
    audit: crate::db::Audit,
    verdict: Verdict,
) -> Counterexample {
    let lane = |b: u32| shown.iter().position(|x| *x == b).map(|i| i as u32 + 1);
    let rows: Vec<&Step> = t
        .steps
        .iter()
        .filter(|s| drawn(s) && lane(s.buyer).is_some())
        .collect();
    // The row (1-based) of buyer `b`'s step that started at `us`.
    let row_at = |b: u32, us: u64| {
        rows.iter()
            .position(|s| s.buyer == b && s.start_us == us)
            .map(|i| i + 1)
    };
    let steps: Vec<ScheduleStep> = rows
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (role, value) = match &s.role {
                Role::Read { value, .. } => (StepRole::Read, Some(*value)),
                Role::Write { value, .. } => (StepRole::Write, *value),
                Role::NoWrite => (StepRole::NoWrite, None),
                Role::Commit { .. } => (StepRole::Commit, None),
                Role::Other if s.kind == "rollback" => (StepRole::Rollback, None),
                Role::Other => (StepRole::Other, None),
            };
            let waited_for: Vec<u32> = s.waited_for.and_then(lane).into_iter().collect();
            // The last row that started before this statement ended: what
            // it completed after.
            let completed_after = (!waited_for.is_empty()).then(|| {
                rows.iter()
                    .rposition(|o| o.start_us <= s.end_us)
                    .map_or(i + 1, |k| (k + 1).max(i + 1))
            });
            ScheduleStep {
                buyer: lane(s.buyer).expect("filtered"),
                try_no: s.try_no,
                line: s.line,
                sql: s.what.clone(),
                rollback_by_racelab: s.kind == "rollback",
                preemption: false,
                role,
                value,
                rows: s.rows,
                values: s.values.clone(),
                error: s.error.clone(),
                waited_for,
                completed_after,
            }
        })
        .collect();
    let anomalies = t
        .anomalies
        .iter()
        .filter_map(|a| {
            let buyer = lane(a.buyer)?;
            let overtook: Vec<Overtaken> = a
                .overtaken_by
                .iter()
                .filter_map(|(b, at, what)| {
                    let l = lane(*b)?;
                    let commit_step = row_at(*b, *at);
                    let write_step = rows
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| {
                            s.buyer == *b
                                && s.start_us <= *at
                                && matches!(s.role, Role::Write { .. })
                        })
                        .map(|(i, _)| i + 1)
                        .next_back();
                    Some(Overtaken {
                        buyer: l,
                        write_step,
                        commit_step,
                        committed: what.clone(),
                    })
                })
                .collect();
            Some(ExploreAnomaly {
                name: a.name.to_string(),
                prevented_at: a.prevented_at.to_string(),
                buyer,
                read_value: a.read_value,
                read_step: row_at(a.buyer, a.read_us),
                commit_step: row_at(a.buyer, a.commit_us),
                committed: a.committed.clone(),
                overtook,
            })
        })
        .collect();
    let buyers = shown
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let last = t.steps.iter().rev().find(|s| s.buyer == *b)?;
            let tries = t
                .steps
                .iter()
                .filter(|s| s.buyer == *b)
                .map(|s| s.try_no)
                .max()
                .unwrap_or(1);
            let outcome = t
                .steps
                .iter()
                .filter(|s| s.buyer == *b)
                .find_map(|s| s.outcome)?;
            Some(BuyerEnd {
                buyer: i as u32 + 1,
                outcome,
                tries,
                message: last.error.clone(),
            })
        })
        .collect();
    Counterexample {
        schedule: steps.iter().map(|s| s.buyer).collect(),
        preemptions: 0,
        audit,
        verdict,
        anomalies,
        steps,
        buyers,
        deadlock_victims: Vec::new(),
    }
}

/// The round's story in a few sentences, with names.
fn explanation(t: &Timeline, names: &[String], r: &RunResult) -> String {
    let mut out = String::new();
    if let Some(a) = t.anomalies.first() {
        out.push_str(&anomaly_story(a, names));
        let buyers: BTreeSet<u32> = t.anomalies.iter().map(|a| a.buyer).collect();
        if buyers.len() > 1 {
            let _ = write!(
                out,
                " In all, {} buyers wrote from a read that another buyer's commit had already made stale.",
                buyers.len()
            );
        }
        return out;
    }
    let waits: Vec<&Step> = t.waits().collect();
    if let Some(w) = waits.first() {
        let by = w.waited_for.map(|b| name(names, b)).unwrap_or_default();
        let _ = write!(
            out,
            "No lost update: {} statements waited for another buyer's lock — {} waited {} for {} to commit or roll back — so every buyer read the stock only after the one before had written it.",
            waits.len(),
            name(names, w.buyer),
            ms(w.end_us.saturating_sub(w.start_us)),
            by
        );
        return out;
    }
    match r.verdict {
        Some(Verdict::Inconclusive) => {
            out.push_str(&crate::verdict::why_inconclusive(r).unwrap_or_default());
        }
        _ if r.outcomes.attempts == 0 => out.push_str("Nobody bought anything this round."),
        _ => out.push_str(
            "No anomaly: no committed write or decision rested on a read that another buyer's commit had overtaken.",
        ),
    }
    out
}

fn anomaly_story(a: &Anomaly, names: &[String]) -> String {
    let who = name(names, a.buyer);
    let others: Vec<String> = a
        .overtaken_by
        .iter()
        .map(|(b, _, what)| match what {
            Some(w) => format!("{} committed {w}", name(names, *b)),
            None => format!("{} committed", name(names, *b)),
        })
        .collect();
    let first_other = a
        .overtaken_by
        .first()
        .map(|(b, _, _)| name(names, *b))
        .unwrap_or_default();
    let committed = a.committed.as_deref().unwrap_or("its write");
    let what = match a.name {
        LOST_UPDATE => format!(
            "{who} then committed {committed}, computed from that stale read: {first_other}'s update was overwritten, a lost update"
        ),
        READ_SKEW => format!(
            "{who} then committed anyway: the decision to buy rested on a stale read (read skew)"
        ),
        _ => format!(
            "{who} then committed, deciding on a stale read and writing other rows (write skew)"
        ),
    };
    format!(
        "{} ({}): {who} read stock = {} at {}. Before {who} committed, {}. {what}. It cannot happen at {} or above, or when the read locks the row (SELECT ... FOR UPDATE).",
        title(a.name),
        a.name,
        a.read_value,
        ms(a.read_us),
        others.join(", "),
        a.prevented_at
    )
}

/// The names `crate::trace` gives its anomalies.
const LOST_UPDATE: &str = "P4 lost update";
const READ_SKEW: &str = "G-single read skew";

fn title(name: &str) -> &'static str {
    match name {
        LOST_UPDATE => "Lost update",
        READ_SKEW => "Read skew",
        _ => "Write skew",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(buyer: u32, at: (u64, u64), what: &str, role: Role) -> Step {
        Step {
            buyer,
            attempt: i64::from(buyer),
            try_no: 1,
            product: 1,
            start_us: at.0,
            end_us: at.1,
            line: 1,
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

    /// Buyer 2 reads, buyer 1 commits stock := 0, buyer 2 writes 0 from
    /// its stale read; buyers 3 to 6 only read, late.
    fn lost_update() -> Timeline {
        let read = |v| Role::Read {
            value: v,
            locking: false,
        };
        let write = Role::Write {
            value: Some(0),
            expr: ":stock - :qty".into(),
        };
        let commit = Role::Commit {
            stock: Some("stock := 0".into()),
        };
        let mut steps = vec![
            step(1, (100, 200), "SELECT stock", read(1)),
            step(2, (150, 250), "SELECT stock", read(1)),
            step(1, (300, 400), "UPDATE products", write.clone()),
            step(1, (400, 500), "COMMIT", commit.clone()),
            step(2, (600, 700), "UPDATE products", write),
            step(2, (700, 800), "COMMIT", commit),
        ];
        for b in 3..=6 {
            steps.push(step(
                b,
                (900 + u64::from(b), 950 + u64::from(b)),
                "SELECT stock",
                read(0),
            ));
        }
        Timeline {
            strategy: "naive".into(),
            steps,
            anomalies: vec![Anomaly {
                name: LOST_UPDATE,
                prevented_at: "REPEATABLE READ",
                product: 1,
                buyer: 2,
                attempt: 2,
                read_value: 1,
                read_us: 150,
                commit_us: 700,
                committed: Some("stock := 0".into()),
                overtaken_by: vec![(1, 400, Some("stock := 0".into()))],
            }],
        }
    }

    #[test]
    fn the_lanes_are_the_overwriter_the_overwritten_then_the_earliest() {
        let t = lost_update();
        assert_eq!(shown_buyers(&t), [1, 2, 3, 4]);
    }

    #[test]
    fn the_anomaly_is_told_with_names() {
        let t = lost_update();
        let names: Vec<String> = ["Ada", "Bea", "Cy", "Di", "Ed", "Flo"]
            .map(String::from)
            .to_vec();
        let story = anomaly_story(&t.anomalies[0], &names);
        assert!(
            story.starts_with("Lost update (P4 lost update): Bea read stock = 1"),
            "{story}"
        );
        assert!(story.contains("Ada committed stock := 0"), "{story}");
        assert!(story.contains("Ada's update was overwritten"), "{story}");
    }
}
