//! Schedule enumeration, stateless: every execution starts from a fresh lab
//! and follows a prefix of choices, then the default policy (the buyer that
//! just ran goes on if it can, else the lowest-numbered buyer that can).
//! After each execution, depth-first backtracking picks the deepest choice
//! point with an untried alternative that stays within the preemption bound
//! and makes that the next prefix (iterative context bounding, as in CHESS:
//! Musuvathi and Qadeer). Each schedule within the bound is executed once.
//!
//! A preemption is choosing another buyer while the one that just ran could
//! still run; a switch forced by it waiting on a lock or finishing is free.

/// One choice point of an execution: who could run, who ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoicePoint {
    /// The buyers able to run their next statement, ascending.
    pub enabled: Vec<u32>,
    pub chosen: u32,
    /// The buyer that ran the step before.
    pub prev: Option<u32>,
}

impl ChoicePoint {
    /// Whether choosing `c` here preempts the buyer that just ran.
    pub fn preempts(&self, c: u32) -> bool {
        self.prev
            .is_some_and(|p| p != c && self.enabled.contains(&p))
    }

    /// The alternatives in the order they are tried: the default first, the
    /// others ascending.
    fn order(&self) -> Vec<u32> {
        let d = default_choice(&self.enabled, self.prev);
        let mut v = vec![d];
        v.extend(self.enabled.iter().copied().filter(|&b| b != d));
        v
    }
}

/// The default policy: the buyer that just ran, if it can go on; else the
/// lowest-numbered that can. `enabled` is ascending and not empty.
pub fn default_choice(enabled: &[u32], prev: Option<u32>) -> u32 {
    match prev {
        Some(p) if enabled.contains(&p) => p,
        _ => enabled[0],
    }
}

/// Preemptions in an execution.
pub fn preemptions(points: &[ChoicePoint]) -> u32 {
    points.iter().filter(|p| p.preempts(p.chosen)).count() as u32
}

/// The prefix of the next schedule to execute after `points`, or `None`
/// when the bounded space is exhausted. `bound`: at most this many
/// preemptions (`None`: unbounded).
pub fn next_prefix(points: &[ChoicePoint], bound: Option<u32>) -> Option<Vec<u32>> {
    let mut before: Vec<u32> = Vec::with_capacity(points.len());
    let mut n = 0;
    for p in points {
        before.push(n);
        n += u32::from(p.preempts(p.chosen));
    }
    for i in (0..points.len()).rev() {
        let p = &points[i];
        let order = p.order();
        let at = order.iter().position(|&b| b == p.chosen)?;
        for &c in &order[at + 1..] {
            let cost = u32::from(p.preempts(c));
            if bound.map_or(true, |b| before[i] + cost <= b) {
                let mut prefix: Vec<u32> = points[..i].iter().map(|p| p.chosen).collect();
                prefix.push(c);
                return Some(prefix);
            }
        }
    }
    None
}

/// The buyers (1-based) whose state satisfies `is`: those a scheduler may
/// grant next, or those waiting on a lock.
pub fn buyers_where<S>(states: &[S], is: impl Fn(&S) -> bool) -> Vec<u32> {
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| is(s))
        .map(|(i, _)| i as u32 + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy system: buyers with a number of steps each, and optionally a
    /// step after which a buyer waits until another has finished.
    struct Toy {
        steps: Vec<u32>,
        /// (buyer, after its step k, waits until buyer w finished)
        waits: Vec<(u32, u32, u32)>,
    }

    impl Toy {
        fn run(&self, prefix: &[u32]) -> Vec<ChoicePoint> {
            let n = self.steps.len();
            let mut done = vec![0u32; n];
            let mut points = Vec::new();
            let mut prev = None;
            loop {
                let finished = |b: usize, done: &[u32]| done[b] >= self.steps[b];
                let enabled: Vec<u32> = (0..n)
                    .filter(|&b| !finished(b, &done))
                    .filter(|&b| {
                        !self.waits.iter().any(|&(w, k, on)| {
                            w as usize == b + 1 && done[b] == k && !finished(on as usize - 1, &done)
                        })
                    })
                    .map(|b| b as u32 + 1)
                    .collect();
                if enabled.is_empty() {
                    return points;
                }
                let chosen = prefix
                    .get(points.len())
                    .copied()
                    .unwrap_or_else(|| default_choice(&enabled, prev));
                assert!(enabled.contains(&chosen));
                points.push(ChoicePoint {
                    enabled,
                    chosen,
                    prev,
                });
                done[chosen as usize - 1] += 1;
                prev = Some(chosen);
            }
        }

        fn explore(&self, bound: Option<u32>) -> Vec<Vec<u32>> {
            let mut seen = Vec::new();
            let mut prefix = Vec::new();
            loop {
                let points = self.run(&prefix);
                assert!(preemptions(&points) <= bound.unwrap_or(u32::MAX));
                seen.push(points.iter().map(|p| p.chosen).collect());
                match next_prefix(&points, bound) {
                    Some(p) => prefix = p,
                    None => return seen,
                }
            }
        }
    }

    fn binomial(n: u64, k: u64) -> u64 {
        (1..=k).fold(1, |acc, i| acc * (n + 1 - i) / i)
    }

    #[test]
    fn two_buyers_two_steps_by_bound() {
        let toy = Toy {
            steps: vec![2, 2],
            waits: vec![],
        };
        let counts: Vec<usize> = [Some(0), Some(1), Some(2), None]
            .iter()
            .map(|&b| toy.explore(b).len())
            .collect();
        // 1122, 2211; + 1221, 2112; + 1212, 2121.
        assert_eq!(counts, [2, 4, 6, 6]);
        let all = toy.explore(None);
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a schedule ran twice: {all:?}");
    }

    #[test]
    fn unbounded_is_every_interleaving() {
        for (a, b) in [(1, 1), (3, 2), (5, 5)] {
            let toy = Toy {
                steps: vec![a, b],
                waits: vec![],
            };
            assert_eq!(
                toy.explore(None).len() as u64,
                binomial(u64::from(a + b), u64::from(a)),
                "{a}+{b} steps"
            );
        }
        let three = Toy {
            steps: vec![2, 2, 2],
            waits: vec![],
        };
        // 6! / (2! 2! 2!)
        assert_eq!(three.explore(None).len(), 90);
    }

    #[test]
    fn forced_switches_cost_nothing() {
        // Buyer 1 waits after its first step until buyer 2 has finished:
        // with no preemption at all, both orders still run to the end.
        let toy = Toy {
            steps: vec![2, 2],
            waits: vec![(1, 1, 2)],
        };
        let zero = toy.explore(Some(0));
        assert!(zero.contains(&vec![1, 2, 2, 1]), "{zero:?}");
        assert!(zero.contains(&vec![2, 2, 1, 1]), "{zero:?}");
        assert_eq!(zero.len(), 2);
    }

    #[test]
    fn the_bound_grows_the_space_monotonically() {
        let toy = Toy {
            steps: vec![3, 3, 2],
            waits: vec![],
        };
        let mut last = 0;
        for b in 0..6 {
            let n = toy.explore(Some(b)).len();
            assert!(n >= last, "bound {b}: {n} < {last}");
            last = n;
        }
        assert_eq!(last, toy.explore(None).len());
    }
}
