//! `racelab explore`: explore the schedules of the plan, then hand the
//! result to the results sink, with the isolation-tester spec
//! (`--spec FILE`) written before the conclusion.

use crate::engine::Control;
use crate::explore::{self, Ran};
use crate::plan::explore::ExplorePlan;
use crate::report::{self, save, Output};
use crate::trace::Timeline;

use super::sink::{self, Results};

pub fn explore(plan: &ExplorePlan) -> anyhow::Result<()> {
    let control = Control::new();
    let ran = crate::engine::until_signal(&control, explore::explore(plan, control.clone()))?;
    let Some(ran) = ran else {
        report::emit("stopped before the schedule ended: nothing was audited\n");
        return Ok(());
    };
    let explored = Explored { ran: &ran, plan };
    sink::write(&explored, &plan.output)?;
    if let Some(path) = &plan.spec {
        write_spec(plan, &ran, path)?;
    }
    sink::conclude(&explored, &control)
}

/// `--spec FILE`: the counterexample (or the schedule replayed) as an
/// isolation-tester spec.
fn write_spec(plan: &ExplorePlan, ran: &Ran, path: &std::path::Path) -> anyhow::Result<()> {
    let r = &ran.result;
    let out = &plan.output;
    match r.counterexample.as_ref().or(r.replay.as_ref()) {
        Some(c) => {
            let text = explore::spec_of(plan, c)?;
            save::write_atomic(path, text.as_bytes())?;
            out.note(&format!(
                "wrote the isolation-tester spec {} (isolationtester \"dbname=... host=...\" < {})",
                path.display(),
                path.display()
            ));
        }
        None => out.note(&format!(
            "no unsafe schedule, so no spec written to {} (replay one with --schedule to export it)",
            path.display()
        )),
    }
    Ok(())
}

struct Explored<'a> {
    ran: &'a Ran,
    plan: &'a ExplorePlan,
}

impl Results for Explored<'_> {
    fn show(&self, output: &Output) {
        let r = &self.ran.result;
        if output.json {
            let json = serde_json::to_string_pretty(r).expect("results serialize");
            report::emit(&format!("{json}\n"));
            return;
        }
        let mut text = report::explore::render(r);
        if let (Some(replay), None) = (&r.replay, &r.counterexample) {
            text.push('\n');
            text.push_str(&report::explore::render_schedule("Schedule", replay));
        }
        if let (true, Some(t)) = (output.trace, &self.ran.timeline) {
            text.push_str(&report::timeline::render(t));
        }
        report::emit(&text);
    }

    fn unsaved(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let r = &self.ran.result;
        Ok(vec![(save::explore_file_name(r), save::json(r)?)])
    }

    fn timelines(&self) -> Option<Vec<(&Timeline, u32)>> {
        self.ran.timeline.as_ref().map(|t| vec![(t, 1)])
    }

    fn junit(&self) -> String {
        report::explore::junit(&self.ran.result, self.plan.expect)
    }

    fn aborted(&self) -> Option<String> {
        let r = &self.ran.result;
        (r.status == crate::result::Status::Aborted).then(|| {
            r.status_reason
                .clone()
                .unwrap_or_else(|| "unknown reason".to_string())
        })
    }

    fn failed(&self) -> Option<String> {
        crate::verdict::explore::failure(self.plan.expect, &self.ran.result)
    }
}
