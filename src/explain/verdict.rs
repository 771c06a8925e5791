//! explain's verdict: SAFE, UNSAFE (reasons and lines) or UNSURE (what
//! racelab cannot follow, named). Every path is analysed (`writes`,
//! `decrement`, `redis`, with `protect`'s protections); what the catalog
//! of functions and triggers, the statement reader or the isolation level
//! leaves unknown makes the verdict UNSURE rather than a guess. A program
//! whose isolation level racelab cannot evaluate is analysed at the weakest
//! and at the strongest level: SAFE even at READ COMMITTED is SAFE, UNSAFE
//! even at SERIALIZABLE is UNSAFE, anything else is UNSURE.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::strategy::facts::{Facts, Isolation};
use crate::strategy::Program;

pub use super::finding::{Finding, Level};

use super::catalog::{self, Effective};
use super::paths::{paths, MAX_PATHS};
use super::protect::Analysis;

/// The verdict and its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub level: Level,
    /// UNSAFE and UNSURE findings, or for SAFE what protects each write.
    pub findings: Vec<Finding>,
}

/// One analysis of a program at one reading of unknown levels.
struct Pass {
    findings: Vec<Finding>,
    protections: Vec<Finding>,
    /// Findings on what racelab cannot follow (not on the level).
    incomplete: bool,
    unknown_iso: Vec<(usize, String)>,
}

impl Pass {
    fn level(&self) -> Level {
        let level = self
            .findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Safe);
        // UNSURE wins over UNSAFE only where the facts are incomplete.
        if level == Level::Unsafe
            && self.incomplete
            && self.findings.iter().any(|f| f.level == Level::Unsure)
        {
            Level::Unsure
        } else {
            level
        }
    }

    fn verdict(self) -> Verdict {
        let level = self.level();
        if level == Level::Safe {
            let mut protections = self.protections;
            if protections.is_empty() {
                protections.push(Finding {
                    level: Level::Safe,
                    lines: Vec::new(),
                    text: "no write depends on a value another buyer can change".into(),
                });
            }
            return Verdict {
                level,
                findings: protections,
            };
        }
        Verdict {
            level,
            findings: self.findings,
        }
    }
}

fn finding(level: Level, lines: Vec<usize>, text: String) -> Finding {
    Finding { level, lines, text }
}

fn analyse(prog: &Program, eff: &Effective, unknown_as: Isolation) -> Pass {
    let mut findings: BTreeSet<Finding> = BTreeSet::new();
    let mut incomplete = false;
    for (lines, why) in &eff.unsure {
        incomplete = true;
        findings.insert(finding(Level::Unsure, lines.clone(), why.clone()));
    }
    for s in prog.setup.iter().filter(|s| s.facts.unreadable.is_some()) {
        incomplete = true;
        findings.insert(finding(
            Level::Unsure,
            vec![s.line],
            format!(
                "racelab cannot read the \\setup statement at line {} ({}): a constraint, function or trigger it creates is not counted",
                s.line,
                s.facts.unreadable.as_deref().unwrap_or_default()
            ),
        ));
    }
    for st in &prog.stmts {
        let f: &Facts = &st.facts;
        if let Some(msg) = &f.unreadable {
            incomplete = true;
            findings.insert(finding(
                Level::Unsure,
                vec![st.line],
                format!(
                    "racelab cannot read the statement at line {} ({msg}): what it locks, reads and writes is unknown",
                    st.line
                ),
            ));
        } else if let Some(what) = &f.opaque {
            incomplete = true;
            findings.insert(finding(
                Level::Unsure,
                vec![st.line],
                format!(
                    "line {} ({what}) does something racelab does not follow: what it locks, reads and writes is unknown",
                    st.line
                ),
            ));
        }
    }
    let mut protections = BTreeSet::new();
    let mut unknown_iso = Vec::new();
    match paths(prog, &eff.facts, unknown_as) {
        Some(ps) => {
            let mut a = Analysis::new(prog, &eff.facts, &ps);
            for p in &ps {
                a.path(p);
            }
            a.redis_locks(&ps);
            findings.extend(a.findings);
            protections.extend(a.protections);
            let failed: Vec<_> = ps.iter().filter_map(|p| p.failed.clone()).collect();
            if !failed.is_empty() {
                let every = failed.len() == ps.len();
                let mut seen = BTreeSet::new();
                for f in failed {
                    if !seen.insert(f.line) {
                        continue;
                    }
                    findings.insert(finding(
                        Level::Unsure,
                        vec![f.line],
                        format!(
                            "{} at line {}: {} — the attempt ends in an error there, it buys nothing",
                            if every {
                                "every attempt fails"
                            } else {
                                "some attempts fail"
                            },
                            f.line,
                            f.why
                        ),
                    ));
                }
            }
            for p in &ps {
                for u in &p.unknown_iso {
                    if !unknown_iso.contains(u) {
                        unknown_iso.push(u.clone());
                    }
                }
            }
        }
        None => {
            incomplete = true;
            findings.insert(finding(
                Level::Unsure,
                Vec::new(),
                format!("the script has more than {MAX_PATHS} paths through its \\if branches"),
            ));
        }
    }
    Pass {
        findings: findings.into_iter().collect(),
        protections: protections.into_iter().collect(),
        incomplete,
        unknown_iso,
    }
}

/// Decide a program's verdict from its statements' facts.
pub fn verdict(prog: &Program) -> Verdict {
    let eff = catalog::effective(prog);
    verdict_with(prog, &eff)
}

/// `verdict`, with the catalog already applied.
pub fn verdict_with(prog: &Program, eff: &Effective) -> Verdict {
    let weakest = analyse(prog, eff, Isolation::ReadCommitted);
    if weakest.unknown_iso.is_empty() {
        return weakest.verdict();
    }
    let unknown = weakest.unknown_iso.clone();
    let strongest = analyse(prog, eff, Isolation::Serializable);
    let mut v = match (weakest.level(), strongest.level()) {
        (Level::Safe, _) => weakest.verdict(),
        (_, Level::Unsafe) => strongest.verdict(),
        _ => {
            let mut findings = weakest.findings;
            findings.retain(|f| f.level == Level::Unsure);
            Verdict {
                level: Level::Unsure,
                findings,
            }
        }
    };
    if v.level == Level::Unsure {
        for (line, why) in unknown {
            v.findings.push(finding(
                Level::Unsure,
                vec![line],
                format!("{why}: the verdict depends on the level (SAFE at SERIALIZABLE, not at READ COMMITTED)"),
            ));
        }
        v.findings.sort();
        v.findings.dedup();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy;

    fn level(src: &str) -> Level {
        let prog = strategy::parse("t.sql", src).unwrap_or_else(|e| panic!("{}", e.render()));
        verdict(&prog).level
    }

    const NAIVE: &str = "SELECT stock FROM products WHERE id = :product \\gset\n\\if :stock < :qty\n  ROLLBACK;\n  \\sold_out\n\\endif\nUPDATE products SET stock = :stock - :qty WHERE id = :product;\nCOMMIT;\n";

    #[test]
    fn an_isolation_level_racelab_cannot_evaluate() {
        let src = format!("BEGIN;\nSELECT set_config('default_transaction_isolation', current_setting('x'), false);\nCOMMIT;\nBEGIN;\n{NAIVE}");
        let prog = strategy::parse("t.sql", &src).unwrap();
        let v = verdict(&prog);
        assert_eq!(v.level, Level::Unsure, "{v:#?}");
        assert!(
            v.findings
                .iter()
                .any(|f| f.lines == vec![2] && f.text.contains("cannot evaluate")),
            "{v:#?}"
        );
        // A split purchase is unsafe at any level.
        let split = "BEGIN;\nSELECT set_config('default_transaction_isolation', current_setting('x'), false);\nCOMMIT;\nBEGIN;\nSELECT stock FROM products WHERE id = :product \\gset\nCOMMIT;\n\\if :stock < :qty\n  \\sold_out\n\\endif\nUPDATE products SET stock = stock - :qty WHERE id = :product;\n";
        assert_eq!(level(split), Level::Unsafe);
    }

    #[test]
    fn failures_are_named() {
        let v = verdict(&strategy::parse("t.sql", &format!("BEGIN;\nSELECT set_config('transaction_isolation', 'serializable', true);\n{NAIVE}")).unwrap());
        assert_eq!(v.level, Level::Unsure);
        assert!(
            v.findings[0]
                .text
                .starts_with("every attempt fails at line 2"),
            "{v:#?}"
        );
    }

    #[test]
    fn unknown_statements_and_functions_are_never_safe() {
        assert_eq!(level("CALL restock(:product);\n"), Level::Unsure);
        assert_eq!(level("SELECT mystery(:product);\n"), Level::Unsure);
        assert_eq!(
            level("\\setup\nCREATE VIEW v AS SELECT * FROM products;\n\\endsetup\nSELECT 1;\n"),
            Level::Unsure
        );
    }
}
