//! The verdict of an exploration: what the counts over every schedule
//! mean (safe only as a proof: the bounded space covered cleanly and no
//! schedule unsafe), the verdict in words, and the check of `--expect`.
//! The same rules as a race's verdict (`super`), applied to schedules
//! instead of runs.

use super::Expect;
use crate::result::explore::{schedule_arg, ExploreResult, ExploreVerdict};
use crate::result::Status;

/// The verdict of an exploration from its counts, and why when it is
/// `inconclusive`. `max_schedules` is the `--max-schedules` it ran under.
pub fn decide(r: &ExploreResult, max_schedules: u64) -> (ExploreVerdict, Option<String>) {
    // Nothing to sell, or nobody to race: no schedule can test anything.
    let nothing_to_sell = r.stock < r.quantity.max(1);
    let alone = r.buyers < 2;
    let verdict = if r.oversold_schedules > 0 {
        ExploreVerdict::Oversold
    } else if r.unsafe_schedules > 0 {
        ExploreVerdict::Inconsistent
    } else if !r.complete
        || r.stuck_schedules > 0
        || r.error_schedules > 0
        || nothing_to_sell
        || alone
        || r.status == Status::Aborted
    {
        ExploreVerdict::Inconclusive
    } else {
        ExploreVerdict::Safe
    };
    if verdict != ExploreVerdict::Inconclusive {
        return (verdict, None);
    }
    let mut why = Vec::new();
    if nothing_to_sell {
        why.push(format!(
            "nothing could be sold: stock {} is less than one attempt's quantity {} (--stock)",
            r.stock, r.quantity
        ));
    }
    if alone {
        why.push("one buyer races nobody (--buyers 2 or more)".to_string());
    }
    if r.status == Status::Aborted {
        why.push(format!(
            "the exploration was aborted ({})",
            r.status_reason.as_deref().unwrap_or("no reason given")
        ));
    } else if r.status == Status::Interrupted {
        why.push("the run was interrupted".to_string());
    } else if r.diverged_schedules > 0 {
        why.push(format!(
            "{} replays did not reach the same state (the script depends on more than the interleaving)",
            r.diverged_schedules
        ));
    } else if !r.complete {
        why.push(format!(
            "it stopped at --max-schedules {max_schedules} before covering the space"
        ));
    }
    if r.stuck_schedules > 0 {
        why.push(format!(
            "{} stuck",
            plural(r.stuck_schedules, "schedule got", "schedules got")
        ));
    }
    if r.error_schedules > 0 {
        why.push(format!(
            "{} an attempt end in an error",
            plural(r.error_schedules, "schedule had", "schedules had")
        ));
    }
    (verdict, Some(why.join("; ")))
}

/// `n` and the noun it asks for: "1 schedule", "3 schedules".
pub use super::counted as plural;

/// What the bound allowed, in words.
pub fn bound_words(bound: Option<u32>) -> String {
    match bound {
        None => "every schedule".to_string(),
        Some(p) => format!(
            "every schedule with at most {}",
            plural(u64::from(p), "preemption", "preemptions")
        ),
    }
}

/// The verdict in one sentence.
pub fn sentence(r: &ExploreResult) -> String {
    let n = r.schedules_explored;
    let space = match &r.replayed {
        Some(_) => "the schedule replayed".to_string(),
        None => format!(
            "{} of {}",
            bound_words(r.preemption_bound),
            plural(u64::from(r.buyers), "buyer", "buyers")
        ),
    };
    if r.replayed.is_some() {
        return match r.verdict {
            ExploreVerdict::Safe => {
                "SAFE: the schedule replayed neither oversold nor drifted".to_string()
            }
            ExploreVerdict::Oversold => "OVERSOLD: the schedule replayed oversold".to_string(),
            ExploreVerdict::Inconsistent => {
                "INCONSISTENT: the schedule replayed left the books unbalanced".to_string()
            }
            ExploreVerdict::Inconclusive => format!(
                "INCONCLUSIVE: {}",
                r.verdict_reason
                    .as_deref()
                    .unwrap_or("the schedule did not run cleanly")
            ),
        };
    }
    match r.verdict {
        ExploreVerdict::Safe if n == 1 => format!(
            "SAFE: the one schedule neither oversold nor drifted ({space}; one product, one attempt per buyer)"
        ),
        ExploreVerdict::Safe => format!(
            "SAFE: none of the {n} schedules oversold or drifted ({space}; one product, one attempt per buyer)"
        ),
        ExploreVerdict::Oversold => format!(
            "OVERSOLD: {} of {} oversold{}",
            r.oversold_schedules,
            plural(n, "schedule", "schedules"),
            match r.unsafe_schedules - r.oversold_schedules {
                0 => String::new(),
                k => format!(", {k} more left the books inconsistent"),
            }
        ),
        ExploreVerdict::Inconsistent => format!(
            "INCONSISTENT: {} of {} left the books unbalanced (no oversell)",
            r.unsafe_schedules,
            plural(n, "schedule", "schedules")
        ),
        ExploreVerdict::Inconclusive => format!(
            "INCONCLUSIVE: no unsafe schedule among {}, but {}",
            plural(n, "schedule", "schedules"),
            r.verdict_reason.as_deref().unwrap_or("the space was not covered")
        ),
    }
}

/// Why `--expect` did not hold, naming the schedule that broke it; `None`
/// when it held (or none was given). `safe` needs a proof: the bounded
/// space covered cleanly and no schedule unsafe.
pub fn failure(expect: Option<Expect>, r: &ExploreResult) -> Option<String> {
    let name = r.name();
    match expect? {
        Expect::Safe => match r.verdict {
            ExploreVerdict::Safe => None,
            ExploreVerdict::Oversold | ExploreVerdict::Inconsistent => {
                let schedule = r
                    .counterexample
                    .as_ref()
                    .map(|c| schedule_arg(&c.schedule))
                    .unwrap_or_default();
                Some(format!(
                    "expected safe: {name} was unsafe in {} of {} ({}); the shortest: --schedule \"{schedule}\"",
                    r.unsafe_schedules,
                    plural(r.schedules_explored, "schedule", "schedules"),
                    r.verdict.as_str()
                ))
            }
            ExploreVerdict::Inconclusive => Some(format!(
                "expected safe: {name} is not proven safe: {}",
                r.verdict_reason
                    .as_deref()
                    .unwrap_or("the space was not covered")
            )),
        },
        Expect::Oversold if r.oversold_schedules > 0 => None,
        Expect::Oversold => Some(format!(
            "expected oversold: {} of {name} oversold",
            match r.schedules_explored {
                1 => "the one schedule".to_string(),
                n => format!("none of the {n} schedules"),
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::explore::result;

    #[test]
    fn expectations() {
        let r = result();
        let why = failure(Some(Expect::Safe), &r).unwrap();
        assert!(
            why.contains("unsafe in 22 of 34") && why.contains("1 1 1 1 2 2 2 1 2 2"),
            "{why}"
        );
        assert_eq!(failure(Some(Expect::Oversold), &r), None);
        assert_eq!(failure(None, &r), None);
        let mut safe = result();
        safe.verdict = ExploreVerdict::Safe;
        safe.unsafe_schedules = 0;
        safe.oversold_schedules = 0;
        safe.counterexample = None;
        assert_eq!(failure(Some(Expect::Safe), &safe), None);
        assert!(failure(Some(Expect::Oversold), &safe).is_some());
        let mut cut = safe.clone();
        cut.complete = false;
        cut.verdict = ExploreVerdict::Inconclusive;
        cut.verdict_reason = Some("it stopped at --max-schedules 2".into());
        let why = failure(Some(Expect::Safe), &cut).unwrap();
        assert!(why.contains("not proven safe: it stopped"), "{why}");
    }

    #[test]
    fn the_counts_decide() {
        let r = result();
        assert_eq!(decide(&r, 100), (ExploreVerdict::Oversold, None));
        let mut clean = result();
        clean.unsafe_schedules = 0;
        clean.oversold_schedules = 0;
        assert_eq!(decide(&clean, 100), (ExploreVerdict::Safe, None));
        let mut drifted = clean.clone();
        drifted.unsafe_schedules = 3;
        assert_eq!(decide(&drifted, 100).0, ExploreVerdict::Inconsistent);
        let mut cut = clean.clone();
        cut.complete = false;
        cut.stuck_schedules = 1;
        let (v, why) = decide(&cut, 34);
        assert_eq!(v, ExploreVerdict::Inconclusive);
        assert_eq!(
            why.as_deref(),
            Some(
                "it stopped at --max-schedules 34 before covering the space; 1 schedule got stuck"
            )
        );
        cut.status = Status::Interrupted;
        assert_eq!(
            decide(&cut, 34).1.as_deref(),
            Some("the run was interrupted; 1 schedule got stuck")
        );
    }
}
