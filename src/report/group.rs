//! Which runs compare like with like: the same target (strategies on the
//! SQL lab, directly or through a pooler, or one HTTP endpoint) under the
//! same workload (the scenario with every parameter, and the tries per
//! attempt). `report` draws one comparison per group, titled with its
//! own workload; `--baseline` refuses a baseline of another group.

use serde::Serialize;

use super::table::workload;
use crate::result::{RunResult, Topology};
use crate::scenario::Scenario;

/// What two runs must share to be compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Key {
    /// What was raced against: `sql` (strategies on the lab) or the HTTP
    /// method and URL.
    target: String,
    /// The pooler between buyers and server, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<Topology>,
    /// The workload; its description is prose and left out.
    #[serde(flatten)]
    scenario: Scenario,
    max_tries: u32,
}

impl Key {
    /// The key of a workload about to run: `http` is the method and URL of
    /// an HTTP target, None for strategies on the lab.
    pub fn new(
        scenario: &Scenario,
        max_tries: u32,
        via: Option<Topology>,
        http: Option<String>,
    ) -> Key {
        Key {
            target: http.unwrap_or_else(|| "sql".to_string()),
            via,
            scenario: Scenario {
                description: String::new(),
                ..scenario.clone()
            },
            max_tries,
        }
    }

    /// The key of a finished run.
    pub fn of(r: &RunResult) -> Key {
        Key::new(
            &r.scenario.workload,
            r.scenario.max_tries,
            r.topology.clone(),
            r.target.as_ref().map(|t| format!("{} {}", t.method, t.url)),
        )
    }

    /// Where `self` and `other` differ, key by key: "buyers 50, not 100".
    pub fn differences(&self, other: &Key) -> Vec<String> {
        let (a, b) = (fields(self), fields(other));
        let mut out = Vec::new();
        for (k, va) in &a {
            let vb = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
            if *va != vb {
                out.push(format!("{k} {}, not {}", shown(va), shown(&vb)));
            }
        }
        for (k, vb) in &b {
            if !a.contains_key(k) {
                out.push(format!("{k} none, not {}", shown(vb)));
            }
        }
        out
    }
}

fn fields(k: &Key) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(k) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".to_string(),
        other => other.to_string(),
    }
}

/// The runs in groups of one key each, groups and runs in the order they
/// first appear.
pub fn groups(results: &[RunResult]) -> Vec<Vec<&RunResult>> {
    let mut groups: Vec<(Key, Vec<&RunResult>)> = Vec::new();
    for r in results {
        let key = Key::of(r);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups.into_iter().map(|(_, runs)| runs).collect()
}

/// A group's title: its workload, and its target when that is not the
/// lab directly.
pub fn title(r: &RunResult) -> String {
    let mut t = workload(r);
    if let Some(target) = &r.target {
        t = format!("{} {} · {t}", target.method, target.url);
    }
    t.push_str(&super::table::topology(r));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn runs_group_by_workload_in_order() {
        let a = fixtures::naive_oversold(1);
        let mut b = fixtures::naive_oversold(2);
        b.scenario.workload.buyers = 7;
        let c = fixtures::for_update_safe(1);
        let runs = vec![a.clone(), b.clone(), c];
        let g = groups(&runs);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!(g[0].len(), 2);
        assert_eq!(g[1][0].scenario.buyers, 7);
        let diff = Key::of(&b).differences(&Key::of(&a));
        assert_eq!(diff, ["buyers 7, not 100"]);
        assert!(title(&b).starts_with("scenario default: 7 buyers x 1 attempt, stock 10"));
    }
}
