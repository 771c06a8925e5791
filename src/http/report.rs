//! What a flow's race comes to, from the buyers' lanes: per-step counts
//! and latency, the buyers out of the race (`flow_info`), the race's tally
//! without them (`recount`), and the buyers' requests as a timeline for
//! `--trace` (`timeline`): method, path as written, status and time, never
//! a header value, and a body only with `--trace-bodies` (its secrets
//! replaced).

use std::collections::BTreeMap;

use super::flow::{Flow, Phase};
use super::lane::{HttpLane, StepTally};
use crate::engine::Tally;
use crate::result::{ErrorCount, FlowInfo, SetupFailure, StepInfo, Summary};
use crate::run::Raced;
use crate::trace::{Role, Step, Timeline};

/// The flow's steps over every buyer, and who was put out of the race.
pub fn flow_info(flow: &Flow, lanes: &[HttpLane], max_setup_failures: u64) -> FlowInfo {
    let mut steps = vec![StepTally::default(); flow.steps.len()];
    for lane in lanes {
        for (mine, theirs) in steps.iter_mut().zip(&lane.steps) {
            mine.merge(theirs);
        }
    }
    let mut failures: BTreeMap<(usize, u16, String), u64> = BTreeMap::new();
    for out in lanes.iter().filter_map(|l| l.out.as_ref()) {
        *failures
            .entry((out.step, out.status, out.why.clone()))
            .or_default() += 1;
    }
    let mut setup_failures: Vec<SetupFailure> = failures
        .into_iter()
        .map(|((step, status, message), buyers)| SetupFailure {
            step: flow.steps[step].name.clone(),
            status: status_key(status),
            buyers,
            message,
        })
        .collect();
    setup_failures.sort_by_key(|f| std::cmp::Reverse(f.buyers));
    FlowInfo {
        file: flow.file.clone().unwrap_or_default(),
        out_of_race: lanes.iter().filter(|l| l.out.is_some()).count() as u64,
        max_setup_failures,
        setup_failures,
        steps: flow
            .steps
            .iter()
            .zip(steps)
            .map(|(s, t)| StepInfo {
                name: s.name.clone(),
                request: s.request.clone(),
                phase: match s.phase {
                    Phase::Before => "before",
                    Phase::Race => "race",
                    Phase::After => "after",
                }
                .into(),
                every: s.every,
                requests: t.by_status.values().sum(),
                failed: t.failed,
                by_status: t
                    .by_status
                    .iter()
                    .map(|(k, v)| (status_key(*k), *v))
                    .collect(),
                latency_us: Summary::of(&t.histogram()),
                failures: t
                    .messages
                    .iter()
                    .map(|(m, n)| ErrorCount {
                        message: m.clone(),
                        count: *n,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn status_key(status: u16) -> String {
    if status == 0 {
        "none".into()
    } else {
        status.to_string()
    }
}

/// Buyers out of the race sent nothing, so nothing of theirs is counted:
/// when any is out, the race's tally is the in-race buyers' own (what the
/// engine alone knows, the attempts a stop abandoned, is kept).
pub fn recount(raced: &mut Raced<HttpLane>) {
    if !raced.lanes.iter().any(|l| l.out.is_some()) {
        return;
    }
    let engine = std::mem::take(&mut raced.output.tally);
    let mut t = Tally::default();
    for lane in &mut raced.lanes {
        t.merge(std::mem::take(&mut lane.tally));
    }
    t.in_flight = engine.in_flight;
    t.resubmitted = engine.resubmitted;
    t.unknown_attempts = engine.unknown_attempts;
    raced.output.tally = t;
}

/// `--trace`: every buyer's requests, as steps of a timeline (times from
/// the release; a request before it at 0).
pub fn timeline(raced: &Raced<HttpLane>, flow: &Flow) -> Option<Timeline> {
    let traces = &raced.output.traces;
    if traces.is_empty() {
        return None;
    }
    let at = |t: std::time::Instant| {
        t.saturating_duration_since(raced.output.released_at)
            .as_micros() as u64
    };
    let mut steps = Vec::new();
    for t in traces {
        for e in &t.events {
            steps.push(Step {
                buyer: t.buyer,
                attempt: t.attempt,
                try_no: e.try_no,
                product: t.product,
                start_us: at(e.start),
                end_us: at(e.end),
                line: e.line,
                kind: "http",
                what: e.what.clone(),
                rows: None,
                values: e.values.clone(),
                error: e.error.clone(),
                outcome: flow
                    .steps
                    .get(e.line.wrapping_sub(1))
                    .filter(|s| s.phase == Phase::Race)
                    .map(|_| t.outcome),
                role: Role::Other,
                waited_for: None,
            });
        }
    }
    steps.sort_by_key(|s| (s.start_us, s.end_us, s.buyer));
    Some(Timeline {
        strategy: flow.file.clone().unwrap_or_else(|| "http".into()),
        steps,
        anomalies: Vec::new(),
    })
}
