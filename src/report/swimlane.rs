//! An explore result in the HTML report: its counts, and its counterexample
//! (or the schedule replayed) drawn as a swim-lane diagram: one lane per
//! buyer, one row per step in the order the scheduler ran them; reads,
//! writes, commits and rollbacks coloured apart, a wait drawn as a dashed
//! bar down to the step that released it, and the update another buyer's
//! commit overwrote crossed out. Plain SVG written by hand (no scripts, no
//! fonts), like the rest of the report.

use std::fmt::Write as _;

use super::explore::{one_line, render_schedule};
use super::markup::escape as esc;
use crate::result::explore::{
    schedule_arg, Counterexample, ExploreResult, ExploreVerdict, ScheduleStep, StepRole,
};
use crate::verdict::explore::{bound_words, sentence as verdict_sentence};

const LANE_W: usize = 330;
const ROW_H: usize = 46;
const LEFT: usize = 44;
const TOP: usize = 54;

fn fill(role: StepRole) -> &'static str {
    match role {
        StepRole::Read => "#d6e6f7",
        StepRole::Write => "#fbe3c0",
        StepRole::NoWrite => "#f1e4ec",
        StepRole::Commit => "#d3f0db",
        StepRole::Rollback => "#e4e4e4",
        StepRole::Other => "#f6f6f6",
    }
}

/// What the box of a step says after its SQL.
fn outcome(s: &ScheduleStep) -> String {
    if let Some(e) = &s.error {
        return format!("✗ {}", one_line(e, 34));
    }
    match (s.role, s.value) {
        (StepRole::Read, Some(v)) => format!("reads stock = {v}"),
        (StepRole::Write, Some(v)) => format!("writes stock := {v}"),
        (StepRole::Write, None) => "writes stock".to_string(),
        (StepRole::NoWrite, _) => "no row written".to_string(),
        (StepRole::Commit, _) => "commits".to_string(),
        (StepRole::Rollback, _) if s.rollback_by_racelab => "rolled back by racelab".to_string(),
        (StepRole::Rollback, _) => "rolls back".to_string(),
        _ => match s.rows {
            Some(n) if n > 0 => format!("{n} row{}", if n == 1 { "" } else { "s" }),
            _ => String::new(),
        },
    }
}

/// The swim-lane SVG of one recorded schedule.
pub fn diagram(c: &Counterexample) -> String {
    let lanes = c
        .buyers
        .len()
        .max(c.steps.iter().map(|s| s.buyer as usize).max().unwrap_or(1));
    let rows = c.steps.len();
    let width = LEFT + lanes * LANE_W + 10;
    let height = TOP + rows * ROW_H + 20;
    let x_of = |buyer: u32| LEFT + (buyer as usize - 1) * LANE_W;
    let y_of = |step: usize| TOP + (step - 1) * ROW_H;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"system-ui,sans-serif\" font-size=\"12\">"
    );
    svg.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    // Lanes and their headers.
    for b in 1..=lanes as u32 {
        let x = x_of(b);
        let ended = c
            .buyers
            .iter()
            .find(|e| e.buyer == b)
            .map(|e| {
                if e.tries > 1 {
                    format!("{} after {} tries", e.outcome.as_str(), e.tries)
                } else {
                    e.outcome.as_str().to_string()
                }
            })
            .unwrap_or_default();
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
            TOP - 8,
            LANE_W - 6,
            rows * ROW_H + 12,
            if b % 2 == 0 { "#fafafa" } else { "#f3f6fa" }
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"22\" font-weight=\"bold\" font-size=\"14\">buyer {b}</text>\
             <text x=\"{}\" y=\"38\" fill=\"#555\">{}</text>",
            x + 8,
            x + 8,
            esc(&ended)
        );
    }
    // Waits first, so the boxes sit on top of them.
    for (i, s) in c.steps.iter().enumerate() {
        let n = i + 1;
        if s.waited_for.is_empty() {
            continue;
        }
        let end = s.completed_after.unwrap_or(n).max(n);
        let x = x_of(s.buyer) + LANE_W - 22;
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#c0392b\" stroke-width=\"3\" stroke-dasharray=\"5,4\"/>",
            y_of(n) + ROW_H / 2,
            y_of(end) + ROW_H - 6
        );
    }
    let overwritten: Vec<(usize, u32, String)> = c
        .anomalies
        .iter()
        .flat_map(|a| {
            a.overtook
                .iter()
                .filter_map(move |o| o.write_step.map(|w| (w, a.buyer, a.name.clone())))
        })
        .collect();
    for (i, s) in c.steps.iter().enumerate() {
        let n = i + 1;
        let (x, y) = (x_of(s.buyer) + 4, y_of(n) + 3);
        let w = LANE_W - 34;
        let h = ROW_H - 6;
        let overwrites: Vec<&crate::result::explore::ExploreAnomaly> = c
            .anomalies
            .iter()
            .filter(|a| a.commit_step == Some(n))
            .collect();
        let lost = overwritten.iter().find(|(w, _, _)| *w == n);
        let stroke = if !overwrites.is_empty() || lost.is_some() {
            "stroke=\"#c0392b\" stroke-width=\"2.5\""
        } else if s.preemption {
            "stroke=\"#555\" stroke-width=\"1.5\" stroke-dasharray=\"3,2\""
        } else {
            "stroke=\"#999\" stroke-width=\"1\""
        };
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"5\" fill=\"{}\" {stroke}/>",
            fill(s.role)
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-family=\"ui-monospace,monospace\" font-size=\"11\">{}</text>",
            x + 6,
            y + 12,
            esc(&one_line(&s.sql, 44))
        );
        let mut said = outcome(s);
        if s.try_no > 1 {
            said.push_str(&format!(" (try {})", s.try_no));
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"#333\" font-size=\"11\">{}</text>",
            x + 6,
            y + 24,
            esc(&said)
        );
        // The third line: what the step means for the race.
        let mut notes: Vec<String> = Vec::new();
        if !s.waited_for.is_empty() {
            let whom: Vec<String> = s.waited_for.iter().map(|b| format!("buyer {b}")).collect();
            notes.push(match s.completed_after {
                Some(k) if k > n => format!("waits for {} until step {k}", whom.join(", ")),
                _ => format!("waits for {}", whom.join(", ")),
            });
        }
        if let Some((_, by, name)) = lost {
            notes.push(format!("lost: buyer {by} overwrites it ({name})"));
            let _ = write!(
                svg,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#c0392b\" stroke-width=\"1.5\"/>",
                x + 4,
                y + 21,
                x + 8 + 7 * said.chars().count(),
                y + 21
            );
        }
        for a in overwrites {
            let whom: Vec<String> = a.overtook.iter().map(|o| o.buyer.to_string()).collect();
            let verb = if a.name.starts_with("P4") {
                "overwrites"
            } else {
                "has not seen"
            };
            notes.push(format!(
                "{verb} buyer {}'s update ({})",
                whom.join(", "),
                a.name
            ));
        }
        let (color, notes) = match (notes.is_empty(), s.preemption, n.checked_sub(2)) {
            (true, true, Some(k)) => ("#666", format!("preempts buyer {}", c.steps[k].buyer)),
            _ => ("#c0392b", notes.join(" · ")),
        };
        if !notes.is_empty() {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\" font-size=\"11\" font-weight=\"bold\">{}</text>",
                x + 6,
                y + 36,
                esc(&notes)
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"#777\" text-anchor=\"end\">{n}</text>",
            LEFT - 8,
            y + 24
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The report's section for one explore result.
pub fn section(r: &ExploreResult) -> String {
    let mut h = String::new();
    let class = match r.verdict {
        ExploreVerdict::Safe => "safe",
        ExploreVerdict::Inconclusive => "",
        _ => "oversold",
    };
    let _ = writeln!(
        h,
        "<h2>Explore: {} ({} buyers, stock {}, quantity {})</h2>",
        esc(r.name()),
        r.buyers,
        r.stock,
        r.quantity
    );
    let _ = writeln!(h, "<p class=\"{class}\">{}</p>", esc(&verdict_sentence(r)));
    let space = match &r.replayed {
        Some(s) => format!("the schedule \"{}\"", schedule_arg(s)),
        None => bound_words(r.preemption_bound),
    };
    let _ = writeln!(
        h,
        "<table><tr><th>explored</th><th>schedules</th><th>unsafe</th><th>oversold</th><th>stuck</th><th>complete</th><th>statements</th><th>waits</th><th>deadlocks</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        esc(&space),
        r.schedules_explored,
        r.unsafe_schedules,
        r.oversold_schedules,
        r.stuck_schedules,
        if r.complete { "yes" } else { "no" },
        r.steps,
        r.waits,
        r.deadlocks
    );
    let shown = match (&r.counterexample, &r.replay) {
        (Some(c), _) => Some(("The shortest unsafe schedule", c)),
        (None, Some(c)) => Some(("The schedule replayed", c)),
        (None, None) => None,
    };
    if let Some((title, c)) = shown {
        let _ = writeln!(
            h,
            "<h3>{title}: {} steps, --schedule \"{}\"</h3>\n<figure>{}<figcaption>One lane per buyer, one row per SQL statement in the order the scheduler ran them. \
             Blue reads the stock, orange writes it, green commits, grey rolls back; a dashed red bar is a statement waiting on another buyer's lock until the step it ends at; \
             a red outline marks the update that was overwritten and the commit that overwrote it; a dashed outline, a preemption.</figcaption></figure>",
            c.steps.len(),
            schedule_arg(&c.schedule),
            diagram(c)
        );
        let _ = writeln!(h, "<pre>{}</pre>", esc(&render_schedule(title, c)));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::explore as fixtures;

    #[test]
    fn lanes_waits_and_the_lost_update() {
        let svg = diagram(&fixtures::lost_update());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches(">buyer ").count(), 2, "two lane headers: {svg}");
        assert_eq!(svg.matches("rx=\"5\"").count(), 10, "one box per step");
        assert!(svg.contains("waits for buyer 1 until step 8"), "{svg}");
        assert!(
            svg.contains("lost: buyer 2 overwrites it (P4 lost update)"),
            "{svg}"
        );
        assert!(
            svg.contains("overwrites buyer 1&#39;s update (P4 lost update)"),
            "{svg}"
        );
        assert!(svg.contains("preempts buyer 1"), "{svg}");
        assert!(
            svg.contains("reads stock = 1") && svg.contains("commits"),
            "{svg}"
        );
    }

    #[test]
    fn a_section_per_explore_result() {
        let h = section(&fixtures::result());
        assert!(h.contains("<h2>Explore: naive"), "{h}");
        assert!(h.contains("The shortest unsafe schedule: 10 steps"), "{h}");
        assert!(h.contains("<svg") && h.contains("<pre>"), "{h}");
        let mut safe = fixtures::result();
        safe.counterexample = None;
        assert!(!section(&safe).contains("<svg"));
    }
}
