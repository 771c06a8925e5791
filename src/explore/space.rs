//! How big the space of schedules is, estimated for the progress display:
//! the number of interleavings of the buyers' steps with at most P
//! preemptions, counted as if no buyer ever waited on another (a wait
//! forces a switch and prunes the space, so the count is an upper
//! estimate). The buyers' lengths are the most steps each has taken in a
//! schedule so far, so the estimate settles after the first few.
//!
//! A schedule is a row of blocks, each one buyer's run of consecutive
//! steps, no two neighbouring blocks of the same buyer. A switch after a
//! buyer's last block is free; every other switch is a preemption, so a
//! schedule of b_i blocks per buyer has sum(b_i - 1) preemptions. Buyer i
//! cuts its s_i steps into b_i blocks in C(s_i - 1, b_i - 1) ways, and the
//! rows of blocks without equal neighbours are counted by inclusion and
//! exclusion; both are folded into one generating function per buyer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::report::progress::Goal;

/// Above this bound the count by blocks gets slow and imprecise; the
/// estimate is then every interleaving, which such a bound nearly allows.
const MAX_COUNTED_BOUND: u32 = 20;

/// Schedules of buyers taking `lengths[i]` steps each, with at most
/// `bound` preemptions (`None`: any number), none waiting on another.
pub fn estimate(lengths: &[u32], bound: Option<u32>) -> f64 {
    let lengths: Vec<u32> = lengths.iter().copied().filter(|&s| s > 0).collect();
    let most = lengths.iter().map(|&s| s - 1).sum::<u32>();
    match bound {
        Some(p) if p < most && p <= MAX_COUNTED_BOUND => bounded(&lengths, p),
        _ => interleavings(&lengths),
    }
}

/// Every interleaving: the multinomial (sum s_i)! / prod s_i!.
fn interleavings(lengths: &[u32]) -> f64 {
    let mut n = 0u32;
    let mut out = 1f64;
    for &s in lengths {
        for k in 1..=s {
            n += 1;
            out = out * f64::from(n) / f64::from(k);
        }
    }
    out
}

fn binomial(n: u32, k: u32) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

/// The count by blocks: coefficients `c[x][y]` of the product over buyers
/// of sum_b C(s-1, b-1) x^(b-1) sum_j (-1)^(b-j) C(b-1, j-1) y^j / j!,
/// with x (preemptions) at most `p`; the answer is sum over x <= p and y
/// of y! c[x][y].
fn bounded(lengths: &[u32], p: u32) -> f64 {
    let p = p as usize;
    let ys = p + lengths.len() + 1;
    let mut acc = vec![vec![0f64; ys]; p + 1];
    acc[0][0] = 1.0;
    let factorial = |n: usize| (1..=n).fold(1f64, |a, k| a * k as f64);
    for &s in lengths {
        let mut g = vec![vec![0f64; ys]; p + 1];
        for (x, row) in g.iter_mut().enumerate().take(s as usize) {
            // x preemptions: the buyer's steps in b = x + 1 blocks.
            let b = x + 1;
            let ways = binomial(s - 1, x as u32);
            for (j, cell) in row.iter_mut().enumerate().take(b + 1).skip(1) {
                let sign = if (b - j) % 2 == 0 { 1.0 } else { -1.0 };
                *cell += ways * sign * binomial(x as u32, j as u32 - 1) / factorial(j);
            }
        }
        let mut next = vec![vec![0f64; ys]; p + 1];
        for (x1, row1) in acc.iter().enumerate() {
            for (y1, &a) in row1.iter().enumerate().filter(|(_, a)| **a != 0.0) {
                for (x2, row2) in g.iter().enumerate().take(p + 1 - x1) {
                    for (y2, &b) in row2.iter().enumerate().take(ys - y1) {
                        next[x1 + x2][y1 + y2] += a * b;
                    }
                }
            }
        }
        acc = next;
    }
    acc.iter()
        .flat_map(|row| row.iter().enumerate())
        .map(|(y, c)| factorial(y) * c)
        .sum::<f64>()
        .round()
}

/// What the progress display reads while schedules run: how many are
/// done, and the estimate of how many there are.
pub struct Meter {
    bound: Option<u32>,
    explored: AtomicU64,
    estimate: AtomicU64,
    /// The most steps each buyer has taken in one schedule so far.
    lengths: Mutex<Vec<u32>>,
}

impl Meter {
    pub fn new(buyers: u32, bound: Option<u32>) -> Meter {
        Meter {
            bound,
            explored: AtomicU64::new(0),
            estimate: AtomicU64::new(0),
            lengths: Mutex::new(vec![0; buyers as usize]),
        }
    }

    /// One more schedule ran: `schedule` holds the buyer (1-based) of
    /// each step; `explored` is the count so far.
    pub fn record(&self, schedule: &[u32], explored: u64) {
        let mut lengths = self.lengths.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = vec![0u32; lengths.len()];
        for &b in schedule {
            if let Some(n) = taken.get_mut(b as usize - 1) {
                *n += 1;
            }
        }
        let mut grew = false;
        for (most, now) in lengths.iter_mut().zip(taken) {
            if now > *most {
                *most = now;
                grew = true;
            }
        }
        if grew {
            let n = estimate(&lengths, self.bound).min(u64::MAX as f64) as u64;
            self.estimate.store(n, Ordering::Relaxed);
        }
        self.explored.store(explored, Ordering::Relaxed);
    }

    /// Schedules done, and about how many there are.
    pub fn read(&self) -> (u64, Goal) {
        let done = self.explored.load(Ordering::Relaxed);
        match self.estimate.load(Ordering::Relaxed) {
            0 => (done, Goal::Open),
            n => (done, Goal::About(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::schedule::{default_choice, next_prefix, ChoicePoint};

    /// The explorer's own enumeration (`next_prefix`) over buyers that
    /// never wait: every buyer runs whenever it has steps left.
    fn enumerate(lengths: &[u32], bound: Option<u32>) -> u64 {
        let mut prefix: Vec<u32> = Vec::new();
        let mut count = 0;
        loop {
            let mut left = lengths.to_vec();
            let mut prev = None;
            let mut points = Vec::new();
            while left.iter().any(|&n| n > 0) {
                let enabled: Vec<u32> = (1..=lengths.len() as u32)
                    .filter(|&b| left[b as usize - 1] > 0)
                    .collect();
                let chosen = prefix
                    .get(points.len())
                    .copied()
                    .unwrap_or_else(|| default_choice(&enabled, prev));
                points.push(ChoicePoint {
                    enabled,
                    chosen,
                    prev,
                });
                left[chosen as usize - 1] -= 1;
                prev = Some(chosen);
            }
            count += 1;
            match next_prefix(&points, bound) {
                Some(next) => prefix = next,
                None => return count,
            }
        }
    }

    #[test]
    fn the_count_matches_the_explorers_enumeration() {
        for (lengths, bound) in [
            (&[5, 5][..], Some(2)),
            (&[5, 5, 5][..], Some(2)),
            (&[4, 4, 4][..], Some(1)),
            (&[3, 2, 4][..], Some(3)),
            (&[1, 1, 1][..], Some(2)),
            (&[5, 5][..], None),
            (&[3, 3, 2][..], Some(0)),
        ] {
            assert_eq!(
                estimate(lengths, bound),
                enumerate(lengths, bound) as f64,
                "{lengths:?} with bound {bound:?}"
            );
        }
        assert_eq!(estimate(&[5, 5, 5], Some(2)), 690.0);
    }

    #[test]
    fn the_meter_learns_lengths_from_schedules() {
        let m = Meter::new(2, Some(2));
        assert_eq!(m.read(), (0, Goal::Open));
        m.record(&[1, 1, 1, 1, 1, 2, 2, 2, 2, 2], 1);
        assert_eq!(m.read(), (1, Goal::About(42)));
    }
}
