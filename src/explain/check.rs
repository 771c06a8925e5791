//! `racelab explain --check`: the verdict held against execution. The
//! script is explored (`explore`'s own machinery: every schedule of 2
//! buyers by default, each from a fresh lab on an embedded cluster,
//! audited) and both verdicts are printed; where they disagree it says so,
//! with explore's counterexample or its count of safe schedules. When the
//! script is unsafe, a remedy racelab can apply to the script (lock the row
//! a check reads, run the transaction at SERIALIZABLE) is explored too, and
//! printed only if it removes every unsafe schedule.
//!
//! Exit codes: 0 SAFE, 1 UNSAFE, 4 UNSURE — with `--check`, the explored
//! verdict where exploring decided (safe 0, oversold or inconsistent 1),
//! else explain's.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::db::Database;
use crate::engine::Control;
use crate::error::{ExpectationFailed, Unsure};
use crate::plan::explain::ExplainPlan;
use crate::plan::explore::ExplorePlan;
use crate::report::explore as explored;
use crate::result::explore::{ExploreResult, ExploreVerdict};
use crate::result::StrategyInfo;
use crate::strategy::facts::{Isolation, Kind};
use crate::strategy::{self, Origin, Strategy};

use super::result::{Agreement, Change, Check, ExplainResult, Remedy};
use super::verdict::{Level, Verdict};

/// Run `racelab explain` as planned: print, and return the exit code's
/// error (see the module docs).
pub fn main(plan: &ExplainPlan) -> anyhow::Result<()> {
    let s = &plan.strategy;
    let verdict = super::verdict(&s.program);
    let check = match &plan.check {
        Some(ep) => Some(run(s, &verdict, ep, plan.remedies)?),
        None => None,
    };
    if plan.json {
        let r = ExplainResult {
            kind: "explain",
            racelab_version: env!("CARGO_PKG_VERSION").to_string(),
            strategy: strategy_info(s),
            verdict: verdict.level,
            findings: verdict.findings.clone(),
            check: check.clone(),
        };
        crate::report::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&r).context("serializing the result")?
        ));
    } else {
        let mut text = super::render(s);
        if let Some(c) = &check {
            text.push_str(&render_check(c));
        }
        crate::report::emit(&text);
    }
    exit(&verdict, check.as_ref())
}

/// The verdict that decides the exit code: the explored one where
/// exploring decided.
pub fn decided(verdict: &Verdict, check: Option<&Check>) -> Level {
    match check.and_then(|c| c.explored.as_ref()).map(|r| r.verdict) {
        Some(ExploreVerdict::Safe) => Level::Safe,
        Some(ExploreVerdict::Oversold | ExploreVerdict::Inconsistent) => Level::Unsafe,
        _ => verdict.level,
    }
}

fn exit(verdict: &Verdict, check: Option<&Check>) -> anyhow::Result<()> {
    match decided(verdict, check) {
        Level::Safe => Ok(()),
        Level::Unsafe => Err(ExpectationFailed("the verdict is UNSAFE".into()).into()),
        Level::Unsure => Err(Unsure("the verdict is UNSURE".into()).into()),
    }
}

fn strategy_info(s: &Strategy) -> StrategyInfo {
    StrategyInfo {
        name: s.name.clone(),
        source: match &s.origin {
            Origin::Builtin => "builtin".to_string(),
            Origin::File(p) => p.display().to_string(),
        },
        sha256: Sha256::digest(s.source.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Explore the script (and remedies), on one database.
pub fn run(
    s: &Strategy,
    verdict: &Verdict,
    ep: &ExplorePlan,
    remedies: bool,
) -> anyhow::Result<Check> {
    if let Some(line) = s.program.first_redis_line() {
        return Ok(Check {
            agreement: Agreement::Undecided,
            summary: format!(
                "not explored: explore schedules SQL statements only, and this script sends \\redis commands (line {line}); race it with `racelab run --strategy {}` to check it by execution",
                s.name
            ),
            explored: None,
            not_explored: Some(format!("\\redis commands (line {line})")),
            remedy: None,
        });
    }
    let control = Control::new();
    let found = crate::engine::until_signal(&control, async {
        let db = Database::open(&ep.db).await?;
        let local = tokio::task::LocalSet::new();
        let outcome = local
            .run_until(explore_all(&db, s, verdict, ep, remedies, &control))
            .await;
        let stopped = db.shutdown().await;
        let found = outcome?;
        stopped.context("stopping the database")?;
        Ok(found)
    })?;
    if let Some(crate::engine::Stop::Interrupted(signal)) = control.reason() {
        return Err(crate::error::Interrupted { signal }.into());
    }
    let (explored, remedy) = found.context("exploring stopped before it began")?;
    Ok(compare(verdict, explored, remedy, ep))
}

type Found = Option<(ExploreResult, Option<Remedy>)>;

async fn explore_all(
    db: &Database,
    s: &Strategy,
    verdict: &Verdict,
    ep: &ExplorePlan,
    remedies: bool,
    control: &Arc<Control>,
) -> anyhow::Result<Found> {
    let Some(ran) = crate::explore::explore_on(db, ep, control).await? else {
        return Ok(None);
    };
    let r = ran.result;
    let unsafe_ = matches!(
        r.verdict,
        ExploreVerdict::Oversold | ExploreVerdict::Inconsistent
    );
    let mut remedy = None;
    if unsafe_ && remedies && !control.is_stopped() {
        for (description, changes) in candidates(s, verdict) {
            let Some(fixed) = apply(s, &changes) else {
                continue;
            };
            let plan = ExplorePlan {
                strategy: fixed,
                buyers: ep.buyers,
                stock: ep.stock,
                quantity: ep.quantity,
                max_tries: ep.max_tries,
                seed: ep.seed,
                bound: ep.bound,
                schedule: None,
                max_schedules: ep.max_schedules,
                expect: None,
                spec: None,
                step: false,
                db: ep.db.clone(),
                output: ep.output.clone(),
            };
            let Some(tried) = crate::explore::explore_on(db, &plan, control).await? else {
                break;
            };
            if tried.result.verdict == ExploreVerdict::Safe {
                remedy = Some(Remedy {
                    description,
                    changes,
                    schedules: tried.result.schedules_explored,
                });
                break;
            }
        }
    }
    Ok(Some((r, remedy)))
}

/// What exploring says beside explain.
fn compare(verdict: &Verdict, r: ExploreResult, remedy: Option<Remedy>, ep: &ExplorePlan) -> Check {
    let space = match ep.bound {
        None => format!("every schedule of {} buyers", ep.buyers),
        Some(p) => format!(
            "every schedule of {} buyers with at most {p} preemption{}",
            ep.buyers,
            if p == 1 { "" } else { "s" }
        ),
    };
    let says = match r.verdict {
        ExploreVerdict::Safe => format!(
            "safe: none of the {} schedules ({space}) oversold or drifted",
            r.schedules_explored
        ),
        ExploreVerdict::Oversold => format!(
            "unsafe: {} of {} schedules ({space}) oversold",
            r.oversold_schedules, r.schedules_explored
        ),
        ExploreVerdict::Inconsistent => format!(
            "unsafe: {} of {} schedules ({space}) left the books inconsistent",
            r.unsafe_schedules, r.schedules_explored
        ),
        ExploreVerdict::Inconclusive => format!(
            "inconclusive: {}",
            r.verdict_reason
                .as_deref()
                .unwrap_or("see the explore result")
        ),
    };
    let explored_level = match r.verdict {
        ExploreVerdict::Safe => Some(Level::Safe),
        ExploreVerdict::Oversold | ExploreVerdict::Inconsistent => Some(Level::Unsafe),
        ExploreVerdict::Inconclusive => None,
    };
    let (agreement, summary) = match (verdict.level, explored_level) {
        (_, None) => (
            Agreement::Undecided,
            format!(
                "explain says {}; exploring was {says}",
                verdict.level.as_str()
            ),
        ),
        (Level::Unsure, Some(l)) => (
            Agreement::Decided,
            format!(
                "explain was UNSURE; exploring decided: {says} (so {})",
                l.as_str()
            ),
        ),
        (a, Some(b)) if a == b => (
            Agreement::Agree,
            format!(
                "explain and explore agree: {} — exploring found it {says}",
                a.as_str()
            ),
        ),
        (a, Some(_)) => (
            Agreement::Disagree,
            format!(
                "explain and explore DISAGREE: explain says {}, exploring found it {says}",
                a.as_str()
            ),
        ),
    };
    Check {
        agreement,
        summary,
        explored: Some(r),
        not_explored: None,
        remedy,
    }
}

/// The `--check` section of the text.
pub fn render_check(c: &Check) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nChecked by exploring: {}.", c.summary);
    if let Some(r) = &c.explored {
        match c.agreement {
            Agreement::Disagree => match &r.counterexample {
                Some(cx) => {
                    out.push('\n');
                    out.push_str(&explored::render_schedule("Counterexample", cx));
                    let _ = writeln!(
                            out,
                            "Replay it with `racelab explore --strategy {} --buyers {} --schedule \"{}\" --trace`.",
                            r.strategy.source.replace("builtin", &r.strategy.name),
                            r.buyers,
                            cx.schedule.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(" ")
                        );
                }
                None => {
                    let _ = writeln!(
                            out,
                            "All {} schedules explored ran to the end with the books right: {} attempts sold out, {} succeeded. A race within one statement (a function's body) is not a schedule explore can split; `racelab run` races it.",
                            r.schedules_explored,
                            r.outcomes.get("sold_out").copied().unwrap_or(0),
                            r.outcomes.get("succeeded").copied().unwrap_or(0)
                        );
                }
            },
            _ => {
                if let Some(cx) = &r.counterexample {
                    let names: Vec<&str> = cx.anomalies.iter().map(|a| a.name.as_str()).collect();
                    let _ = writeln!(
                        out,
                        "Shortest counterexample: schedule \"{}\"{}.",
                        cx.schedule
                            .iter()
                            .map(|b| b.to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", names.join(", "))
                        }
                    );
                }
            }
        }
    }
    match (&c.remedy, c.explored.as_ref().map(|r| r.verdict)) {
        (Some(m), _) => {
            let _ = writeln!(
                out,
                "Remedy, checked (with it every one of {} schedules is safe): {}",
                m.schedules, m.description
            );
            for ch in &m.changes {
                let _ = writeln!(out, "  line {}: - {}", ch.line, ch.before);
                let _ = writeln!(out, "  line {}: + {}", ch.line, ch.after);
            }
        }
        (None, Some(ExploreVerdict::Oversold | ExploreVerdict::Inconsistent)) => {
            out.push_str("No remedy racelab can apply to the script removed every unsafe schedule; none is offered.\n");
        }
        _ => {}
    }
    out
}

/// Remedies racelab can apply to the script: `(what, line changes)`.
fn candidates(s: &Strategy, verdict: &Verdict) -> Vec<(String, Vec<Change>)> {
    let _ = verdict;
    let prog = &s.program;
    let lines: Vec<&str> = s.source.lines().collect();
    let mut out = Vec::new();
    // Lock the rows the script reads and then writes: FOR UPDATE on each
    // plain SELECT of a table it writes, inside a transaction.
    let eff = super::catalog::effective(prog);
    let ctx = super::paths::context(prog, &eff.facts);
    let written = |t: &str| {
        eff.facts
            .iter()
            .any(|f| f.writes.iter().any(|w| w.table == t))
    };
    let mut lock: Vec<Change> = Vec::new();
    for (i, st) in prog.stmts.iter().enumerate() {
        let f = &st.facts;
        let plain = f.kind == Kind::Select
            && f.writes.is_empty()
            && f.row_locks.is_empty()
            && f.advisory.is_empty()
            && !f.reads.is_empty()
            && f.reads
                .iter()
                .all(|r| written(&r.table) && r.lock.is_none())
            && f.outputs
                .as_ref()
                .is_some_and(|o| o.iter().all(|o| o.with_columns.is_some()));
        if !plain || ctx.stmts[i].autocommit {
            continue;
        }
        let Some(last) = lines.get(st.end_line - 1) else {
            continue;
        };
        let at = last
            .rfind("\\gset")
            .or_else(|| last.trim_end().strip_suffix(';').map(|x| x.len()));
        let Some(at) = at else { continue };
        let after = format!("{} FOR UPDATE {}", last[..at].trim_end(), &last[at..]);
        lock.push(Change {
            line: st.end_line,
            before: last.to_string(),
            after: after.trim_end().to_string(),
        });
    }
    if !lock.is_empty() {
        out.push((
            "lock the rows the check reads: SELECT ... FOR UPDATE, held until COMMIT".into(),
            lock,
        ));
    }
    // Run every transaction at SERIALIZABLE.
    let mut ser: Vec<Change> = Vec::new();
    let mut has_begin = false;
    for st in &prog.stmts {
        match st.facts.kind {
            Kind::Begin(l) if l != Some(Isolation::Serializable) && st.line == st.end_line => {
                has_begin = true;
                ser.push(Change {
                    line: st.line,
                    before: lines[st.line - 1].to_string(),
                    after: "BEGIN ISOLATION LEVEL SERIALIZABLE;".into(),
                });
            }
            Kind::Begin(_) => has_begin = true,
            Kind::SetIsolation { .. } if st.line == st.end_line => ser.push(Change {
                line: st.line,
                before: lines[st.line - 1].to_string(),
                after: "-- (the isolation level is set by BEGIN)".into(),
            }),
            _ => {}
        }
    }
    if has_begin && !ser.is_empty() {
        out.push(("run the transaction at SERIALIZABLE (PostgreSQL aborts one of two conflicting buyers; racelab retries it)".into(), ser));
    }
    out
}

/// The script with `changes` applied, parsed; `None` if it does not parse.
fn apply(s: &Strategy, changes: &[Change]) -> Option<Strategy> {
    let mut lines: Vec<String> = s.source.lines().map(str::to_string).collect();
    for c in changes {
        *lines.get_mut(c.line - 1)? = c.after.clone();
    }
    let source = lines.join("\n") + "\n";
    let program = strategy::parse(&format!("{} (remedied)", s.name), &source).ok()?;
    Some(Strategy {
        name: s.name.clone(),
        origin: s.origin.clone(),
        description: s.description.clone(),
        source,
        program: Arc::new(program),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::explore as fixtures;

    #[test]
    fn a_disagreement_is_printed_with_its_counterexample() {
        let r = fixtures::result();
        let verdict = Verdict {
            level: Level::Safe,
            findings: Vec::new(),
        };
        let plan_bound = None;
        let c = compare_with(&verdict, r, plan_bound, 2);
        assert_eq!(c.agreement, Agreement::Disagree);
        let text = render_check(&c);
        assert!(
            text.contains("explain and explore DISAGREE: explain says SAFE"),
            "{text}"
        );
        assert!(text.contains("Counterexample:"), "{text}");
        assert!(text.contains("Replay it with `racelab explore"), "{text}");
    }

    fn compare_with(v: &Verdict, r: ExploreResult, bound: Option<u32>, buyers: u32) -> Check {
        let ep = ExplorePlan {
            strategy: strategy::load("naive").unwrap(),
            buyers,
            stock: 1,
            quantity: 1,
            max_tries: 10,
            seed: 1,
            bound,
            schedule: None,
            max_schedules: 10,
            expect: None,
            spec: None,
            step: false,
            db: crate::db::DbOptions::default(),
            output: crate::report::Output {
                json: false,
                save_dir: None,
                quiet: true,
                junit: None,
                trace: false,
                trace_file: None,
                histogram: false,
                wide: false,
            },
        };
        compare(v, r, None, &ep)
    }

    #[test]
    fn remedies_racelab_can_apply() {
        let s = strategy::load("naive").unwrap();
        let v = super::super::verdict(&s.program);
        let c = candidates(&s, &v);
        assert_eq!(c.len(), 2, "{c:#?}");
        assert!(
            c[0].1[0].after.contains("FOR UPDATE \\gset"),
            "{:?}",
            c[0].1
        );
        let fixed = apply(&s, &c[0].1).expect("parses");
        assert_eq!(super::super::verdict(&fixed.program).level, Level::Safe);
        let fixed = apply(&s, &c[1].1).expect("parses");
        assert_eq!(super::super::verdict(&fixed.program).level, Level::Safe);
    }
}
