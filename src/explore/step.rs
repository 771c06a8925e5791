//! `--step`: one schedule run by hand, for the classroom. Before each step
//! racelab shows every buyer's next statement (or whom it waits on) and
//! waits: Enter runs the proposed buyer (the `--schedule` given, else the
//! default policy), a buyer number runs that buyer, `q` stops. After each
//! step it shows the statement's result and who waits on whom. This is the
//! command layer's interactive driver: it reads the terminal and prints.

use std::io::{BufRead as _, Write as _};

use super::schedule::default_choice;
use super::scheduler::{BuyerView, Choice, Driver, Step};
use crate::report::explore::one_line;

pub struct StepDriver {
    prefix: Vec<u32>,
    buyers: u32,
}

impl StepDriver {
    pub fn new(prefix: Vec<u32>, buyers: u32) -> StepDriver {
        StepDriver { prefix, buyers }
    }
}

/// Why buyer `b` cannot run now, in words (for a choice that was refused).
pub fn why_not(b: u32, buyers: &[BuyerView]) -> String {
    match buyers.get(b as usize - 1) {
        Some(BuyerView::Finished(o)) => format!("has finished (its attempt ended: {})", o.as_str()),
        Some(BuyerView::Blocked(_, by)) if !by.is_empty() => {
            let whom: Vec<String> = by.iter().map(|b| format!("buyer {b}")).collect();
            format!("is waiting for a lock {} holds", whom.join(" and "))
        }
        Some(BuyerView::Blocked(..)) => "is waiting for a lock".to_string(),
        Some(BuyerView::Next(_)) => "can run".to_string(),
        None => format!("does not exist (there are {} buyers)", buyers.len()),
    }
}

/// The state before a step: one line per buyer.
pub fn render_choice(at: &Choice<'_>, proposed: u32) -> String {
    let mut out = format!("\nstep {}\n", at.index + 1);
    for (i, v) in at.buyers.iter().enumerate() {
        let b = i as u32 + 1;
        let mark = if b == proposed { "▶" } else { " " };
        let line = match v {
            BuyerView::Next(p) => format!("next: {}   [line {}]", one_line(&p.sql, 70), p.line),
            BuyerView::Blocked(p, by) => {
                let whom: Vec<String> = by.iter().map(|b| format!("buyer {b}")).collect();
                format!(
                    "⏳ waits for {}: {}",
                    if whom.is_empty() {
                        "a lock".to_string()
                    } else {
                        whom.join(" and ")
                    },
                    one_line(&p.sql, 60)
                )
            }
            BuyerView::Finished(o) => format!("finished: {}", o.as_str()),
        };
        out.push_str(&format!(" {mark} buyer {b}  {line}\n"));
    }
    out
}

/// What a step did, and any waiting statement that completed with it.
pub fn render_stepped(index: usize, steps: &[Step], buyers: &[BuyerView]) -> String {
    let mut out = String::new();
    for (k, s) in steps.iter().enumerate() {
        let now = k == index;
        let unblocked = s.completed_after == Some(index) && k != index;
        if !now && !unblocked {
            continue;
        }
        let result = match &s.event {
            None if !s.waited_for.is_empty() => {
                let whom: Vec<String> = s.waited_for.iter().map(|b| format!("buyer {b}")).collect();
                format!("⏳ waits for {}", whom.join(" and "))
            }
            None => "…".to_string(),
            Some(e) => match (&e.error, e.values.is_empty()) {
                (Some(err), _) => format!("✗ {}", one_line(err, 90)),
                (None, false) => e
                    .values
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                (None, true) => match e.rows {
                    Some(n) if n > 0 => format!("{n} row{}", if n == 1 { "" } else { "s" }),
                    _ => "ok".to_string(),
                },
            },
        };
        let lead = if unblocked {
            format!("   buyer {} (waiting since step {}) →", s.buyer, k + 1)
        } else {
            format!("   buyer {} →", s.buyer)
        };
        out.push_str(&format!("{lead} {result}\n"));
    }
    let just_blocked = steps
        .get(index)
        .filter(|s| s.event.is_none())
        .map(|s| s.buyer);
    for (i, v) in buyers.iter().enumerate() {
        if just_blocked == Some(i as u32 + 1) {
            continue;
        }
        if let BuyerView::Blocked(_, by) = v {
            if !by.is_empty() {
                let whom: Vec<String> = by.iter().map(|b| format!("buyer {b}")).collect();
                out.push_str(&format!(
                    "   buyer {} waits for {}\n",
                    i + 1,
                    whom.join(" and ")
                ));
            }
        }
    }
    out
}

impl Driver for StepDriver {
    fn choose(&mut self, at: &Choice<'_>) -> anyhow::Result<Option<u32>> {
        let proposed = self
            .prefix
            .get(at.index)
            .copied()
            .filter(|b| at.enabled.contains(b))
            .unwrap_or_else(|| default_choice(at.enabled, at.prev));
        print!("{}", render_choice(at, proposed));
        let stdin = std::io::stdin();
        loop {
            let others: Vec<String> = at
                .enabled
                .iter()
                .filter(|&&b| b != proposed)
                .map(u32::to_string)
                .collect();
            let or = if others.is_empty() {
                String::new()
            } else {
                format!(", or {}", others.join("/"))
            };
            print!("Enter runs buyer {proposed}{or}; q stops: ");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                println!();
                return Ok(None);
            }
            let t = line.trim();
            if t.is_empty() {
                return Ok(Some(proposed));
            }
            if t.eq_ignore_ascii_case("q") {
                return Ok(None);
            }
            match t.parse::<u32>() {
                Ok(b) if at.enabled.contains(&b) => return Ok(Some(b)),
                Ok(b) if (1..=self.buyers).contains(&b) => {
                    println!("buyer {b} {}", why_not(b, at.buyers));
                }
                _ => println!("type a buyer number (1 to {}), or q", self.buyers),
            }
        }
    }

    fn stepped(&mut self, index: usize, steps: &[Step], buyers: &[BuyerView]) {
        print!("{}", render_stepped(index, steps, buyers));
        let _ = std::io::stdout().flush();
    }
}
