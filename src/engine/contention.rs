//! Whether the race happened: how together the buyers were released, and
//! how many attempts on one product were in flight at once. Cheap enough
//! for 10,000 buyers: per product, an in-flight counter with its running
//! maximum and a count of attempts started (a few atomic operations per
//! attempt, nothing recorded per statement or per attempt); each buyer
//! counts its own overlapped attempts and first send, merged once after
//! the race. Also the sold-out answers per product, which the audit holds
//! against the stock left.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The evidence that buyers contended (DESIGN §6.5), in every result.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Contention {
    /// From the first to the last buyer's first statement (or request)
    /// leaving racelab after the barrier, in microseconds.
    pub release_spread_us: u64,
    /// The most attempts in flight at once on one product.
    pub peak_in_flight: u32,
    /// Attempts whose span overlapped another attempt's on the same product.
    pub overlapped_attempts: u64,
}

/// The counters of one product, shared by the buyers.
#[derive(Debug, Default)]
struct Product {
    in_flight: AtomicU32,
    peak: AtomicU32,
    /// Attempts started on the product so far.
    started: AtomicU64,
    sold_out: AtomicU64,
}

/// The shared per-product counters of one race.
#[derive(Debug)]
pub struct Tracker {
    first_id: i64,
    products: Vec<Product>,
    /// Off only to measure what tracking costs (`examples/contention_cost`).
    enabled: bool,
}

/// One attempt between its start and its end, as `Tracker::start` saw it.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    index: usize,
    /// The product's start count when this attempt started.
    started: u64,
    /// Another attempt on the product was in flight when this one started.
    overlapped: bool,
}

impl Tracker {
    /// Counters for the products `ids` (consecutive, as `ProductPicker`
    /// numbers them).
    pub fn new(ids: &[i64], enabled: bool) -> Tracker {
        Tracker {
            first_id: ids.first().copied().unwrap_or(1),
            products: ids.iter().map(|_| Product::default()).collect(),
            enabled,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn product(&self, id: i64) -> Option<(usize, &Product)> {
        let i = usize::try_from(id - self.first_id).ok()?;
        Some((i, self.products.get(i)?))
    }

    /// An attempt on `product` starts now.
    pub fn start(&self, product: i64) -> Option<Span> {
        if !self.enabled {
            return None;
        }
        let (index, p) = self.product(product)?;
        let started = p.started.fetch_add(1, SeqCst) + 1;
        let now = p.in_flight.fetch_add(1, SeqCst) + 1;
        p.peak.fetch_max(now, SeqCst);
        Some(Span {
            index,
            started,
            overlapped: now > 1,
        })
    }

    /// The attempt of `span` has ended: whether it overlapped another (one
    /// was in flight when it started, or one started before it ended).
    pub fn end(&self, span: Span) -> bool {
        let p = &self.products[span.index];
        // Read the start count before leaving: an attempt that starts after
        // this one has left must not count as overlapping it.
        let later = p.started.load(SeqCst) > span.started;
        p.in_flight.fetch_sub(1, SeqCst);
        span.overlapped || later
    }

    /// A buyer was told `product` is sold out.
    pub fn sold_out(&self, product: i64) {
        if let Some((_, p)) = self.product(product) {
            p.sold_out.fetch_add(1, SeqCst);
        }
    }

    /// Sold-out answers per product id, for the products that had any.
    pub fn sold_out_by_product(&self) -> Vec<(i64, u64)> {
        self.products
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let n = p.sold_out.load(SeqCst);
                (n > 0).then(|| (self.first_id + i as i64, n))
            })
            .collect()
    }

    /// The most attempts in flight at once on any one product.
    pub fn peak_in_flight(&self) -> u32 {
        self.products
            .iter()
            .map(|p| p.peak.load(SeqCst))
            .max()
            .unwrap_or(0)
    }
}

/// What one buyer counted: its overlapped attempts and the instant its
/// first statement or request left racelab.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuyerCount {
    pub overlapped: u64,
    pub first_sent: Option<Instant>,
}

/// The buyers' counts folded together.
#[derive(Debug, Default)]
pub struct Merged {
    overlapped: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Merged {
    pub fn add(&mut self, b: BuyerCount) {
        self.overlapped += b.overlapped;
        if let Some(t) = b.first_sent {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }

    /// The race's contention, with the shared counters.
    pub fn finish(self, tracker: &Tracker) -> Contention {
        let spread = match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_micros() as u64,
            _ => 0,
        };
        Contention {
            release_spread_us: spread,
            peak_in_flight: tracker.peak_in_flight(),
            overlapped_attempts: self.overlapped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_in_sequence_do_not_overlap() {
        let t = Tracker::new(&[1, 2], true);
        for _ in 0..3 {
            let s = t.start(1).unwrap();
            assert!(!t.end(s));
        }
        assert_eq!(t.peak_in_flight(), 1);
    }

    #[test]
    fn overlap_is_seen_from_both_sides() {
        let t = Tracker::new(&[1, 2], true);
        let a = t.start(1).unwrap();
        let b = t.start(1).unwrap();
        // Another product does not overlap product 1.
        let c = t.start(2).unwrap();
        assert!(!t.end(c));
        // a started alone but b started before it ended; b started while a
        // was in flight.
        assert!(t.end(a));
        assert!(t.end(b));
        assert_eq!(t.peak_in_flight(), 2);
        // After both ended, a new attempt is alone again.
        let d = t.start(1).unwrap();
        assert!(!t.end(d));
    }

    #[test]
    fn nested_and_chained_spans() {
        // a: [0, 10], b: [2, 4], c: [5, 12]: every one overlaps another.
        let t = Tracker::new(&[1], true);
        let a = t.start(1).unwrap();
        let b = t.start(1).unwrap();
        assert!(t.end(b));
        let c = t.start(1).unwrap();
        assert!(t.end(a));
        assert!(t.end(c));
        assert_eq!(t.peak_in_flight(), 2);
    }

    #[test]
    fn sold_out_answers_are_counted_per_product() {
        let t = Tracker::new(&[1, 2, 3], true);
        t.sold_out(3);
        t.sold_out(3);
        t.sold_out(1);
        t.sold_out(99);
        assert_eq!(t.sold_out_by_product(), [(1, 1), (3, 2)]);
    }

    #[test]
    fn a_disabled_tracker_counts_no_spans() {
        let t = Tracker::new(&[1], false);
        assert!(t.start(1).is_none());
        assert_eq!(t.peak_in_flight(), 0);
    }

    #[test]
    fn the_spread_runs_from_the_first_send_to_the_last() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_micros(250);
        let mut m = Merged::default();
        for (overlapped, first_sent) in [(2, Some(t1)), (0, None), (1, Some(t0))] {
            m.add(BuyerCount {
                overlapped,
                first_sent,
            });
        }
        let c = m.finish(&Tracker::new(&[1], true));
        assert_eq!((c.release_spread_us, c.overlapped_attempts), (250, 3));
    }
}
