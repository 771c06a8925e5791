//! Per-buyer accounting: outcome counts, tries, the attempt ids the buyer
//! believes succeeded, the first distinct error messages, and latency samples.
//! Each buyer owns one; they are merged once, after the race.

use hdrhistogram::Histogram;

use crate::outcome::{AttemptReport, Outcome};

/// Distinct error messages kept per run (the rest are only counted).
pub const MAX_ERROR_MESSAGES: usize = 8;

/// Samples buffered before they are folded into histograms. Recording a
/// sample is a `Vec` push; most races never fill one buffer, so most buyers
/// never allocate a histogram at all.
const FLUSH_AT: usize = 1 << 16;

/// Latency is kept in microseconds up to this bound (one hour), 3 digits.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;
const OUTCOME_BITS: u32 = 3;

/// Latency histograms: every attempt, and one per outcome.
#[derive(Debug, Clone)]
pub struct Latency {
    pub all: Histogram<u64>,
    pub by_outcome: [Option<Histogram<u64>>; 6],
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIG)
        .expect("static histogram bounds are valid")
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            all: new_histogram(),
            by_outcome: Default::default(),
        }
    }
}

impl Latency {
    pub fn record(&mut self, outcome: Outcome, us: u64) {
        let us = us.clamp(1, MAX_LATENCY_US);
        self.all.saturating_record(us);
        self.by_outcome[outcome.index()]
            .get_or_insert_with(new_histogram)
            .saturating_record(us);
    }

    pub fn merge(&mut self, other: &Latency) {
        self.all.add(&other.all).expect("same bounds");
        for (mine, theirs) in self.by_outcome.iter_mut().zip(&other.by_outcome) {
            if let Some(theirs) = theirs {
                mine.get_or_insert_with(new_histogram)
                    .add(theirs)
                    .expect("same bounds");
            }
        }
    }
}

/// One buyer's (or, merged, the whole run's) accounting.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub counts: [u64; 6],
    pub tries: u64,
    pub succeeded_attempts: Vec<i64>,
    /// Attempts whose fate the client cannot know: outcome `unknown`, or
    /// abandoned in flight when the run stopped. The audit looks them up.
    pub unknown_attempts: Vec<i64>,
    /// First distinct error messages with how often each occurred.
    pub errors: Vec<(String, u64)>,
    /// Attempts abandoned in flight when the run was stopped.
    pub in_flight: u64,
    /// Resubmissions of unknown attempts (`--retry-unknown`).
    pub resubmitted: u64,
    samples: Vec<u32>,
    latency: Option<Box<Latency>>,
}

impl Tally {
    pub fn record(&mut self, report: &AttemptReport, attempt_id: i64, us: u64) {
        self.counts[report.outcome.index()] += 1;
        self.tries += u64::from(report.tries);
        match report.outcome {
            Outcome::Succeeded => self.succeeded_attempts.push(attempt_id),
            Outcome::Unknown => self.unknown_attempts.push(attempt_id),
            _ => {}
        }
        if let Some(msg) = &report.message {
            if matches!(report.outcome, Outcome::Error | Outcome::Unknown) {
                self.note_error(msg, 1);
            }
        }
        // Pack outcome and latency into one u32: 29 bits of microseconds
        // (~9 minutes); longer attempts go straight to the histograms.
        if us < (1 << (32 - OUTCOME_BITS)) {
            self.samples
                .push(((us as u32) << OUTCOME_BITS) | report.outcome.index() as u32);
            if self.samples.len() >= FLUSH_AT {
                self.flush();
            }
        } else {
            self.latency
                .get_or_insert_with(Default::default)
                .record(report.outcome, us);
        }
    }

    fn note_error(&mut self, msg: &str, n: u64) {
        if let Some(entry) = self.errors.iter_mut().find(|(m, _)| m == msg) {
            entry.1 += n;
        } else if self.errors.len() < MAX_ERROR_MESSAGES {
            self.errors.push((msg.to_string(), n));
        }
    }

    fn flush(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let latency = self.latency.get_or_insert_with(Default::default);
        for s in self.samples.drain(..) {
            let outcome = Outcome::ALL[(s & ((1 << OUTCOME_BITS) - 1)) as usize];
            latency.record(outcome, u64::from(s >> OUTCOME_BITS));
        }
    }

    pub fn attempts(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.index()]
    }

    /// Fold `other` into `self`.
    pub fn merge(&mut self, mut other: Tally) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.tries += other.tries;
        self.in_flight += other.in_flight;
        self.resubmitted += other.resubmitted;
        self.succeeded_attempts
            .append(&mut other.succeeded_attempts);
        self.unknown_attempts.append(&mut other.unknown_attempts);
        for (msg, n) in &other.errors {
            self.note_error(msg, *n);
        }
        other.flush();
        if let Some(theirs) = other.latency {
            match &mut self.latency {
                Some(mine) => mine.merge(&theirs),
                None => {
                    self.flush();
                    match &mut self.latency {
                        Some(mine) => mine.merge(&theirs),
                        None => self.latency = Some(theirs),
                    }
                }
            }
        }
    }

    /// The histograms of everything recorded so far.
    pub fn latency(&mut self) -> Latency {
        self.flush();
        self.latency.as_deref().cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome, tries: u32) -> AttemptReport {
        AttemptReport {
            outcome,
            tries,
            message: None,
            connection_lost: false,
        }
    }

    #[test]
    fn merge_adds_counts_and_latencies() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.record(&report(Outcome::Succeeded, 1), 1, 100);
        b.record(&report(Outcome::SoldOut, 3), 2, 300);
        b.record(&report(Outcome::Succeeded, 2), 3, 10_000_000_000);
        a.merge(b);
        assert_eq!(a.attempts(), 3);
        assert_eq!(a.tries, 6);
        assert_eq!(a.succeeded_attempts, vec![1, 3]);
        let lat = a.latency();
        assert_eq!(lat.all.len(), 3);
        assert_eq!(
            lat.by_outcome[Outcome::Succeeded.index()]
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(lat.all.max(), lat.all.highest_equivalent(MAX_LATENCY_US));
        assert!(lat.all.min() <= 100);
    }

    #[test]
    fn flushes_keep_every_sample() {
        let mut t = Tally::default();
        for i in 0..(FLUSH_AT as u64 * 2 + 5) {
            t.record(&report(Outcome::Succeeded, 1), i as i64, 1 + i % 1000);
        }
        assert_eq!(t.latency().all.len(), FLUSH_AT as u64 * 2 + 5);
    }

    #[test]
    fn error_messages_are_capped_but_counted() {
        let mut t = Tally::default();
        for i in 0..20 {
            let r = AttemptReport {
                outcome: Outcome::Error,
                tries: 1,
                message: Some(format!("e{}", i % 10)),
                connection_lost: false,
            };
            t.record(&r, i, 5);
        }
        assert_eq!(t.errors.len(), MAX_ERROR_MESSAGES);
        assert_eq!(t.errors[0], ("e0".to_string(), 2));
        assert_eq!(t.count(Outcome::Error), 20);
    }
}
