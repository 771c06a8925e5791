//! Which product an attempt buys: uniform, or Zipf-skewed popularity.

use rand::Rng;

#[derive(Debug, Clone)]
pub struct ProductPicker {
    ids: Vec<i64>,
    /// Cumulative weights, last = 1.0; empty when there is one product.
    cdf: Vec<f64>,
}

impl ProductPicker {
    /// Products `1..=n`; product k has weight 1/k^skew.
    pub fn new(n: u32, skew: f64) -> ProductPicker {
        let ids: Vec<i64> = (1..=i64::from(n.max(1))).collect();
        let cdf = if ids.len() == 1 {
            Vec::new()
        } else {
            let weights: Vec<f64> = ids.iter().map(|&k| 1.0 / (k as f64).powf(skew)).collect();
            let total: f64 = weights.iter().sum();
            let mut acc = 0.0;
            weights
                .iter()
                .map(|w| {
                    acc += w / total;
                    acc
                })
                .collect()
        };
        ProductPicker { ids, cdf }
    }

    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    pub fn pick(&self, rng: &mut impl Rng) -> i64 {
        if self.cdf.is_empty() {
            return self.ids[0];
        }
        let x: f64 = rng.gen();
        let i = self.cdf.partition_point(|&c| c < x).min(self.ids.len() - 1);
        self.ids[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn skew_prefers_the_first_products() {
        let p = ProductPicker::new(10, 1.5);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            hits[(p.pick(&mut rng) - 1) as usize] += 1;
        }
        assert!(hits[0] > hits[1] && hits[1] > hits[9], "{hits:?}");
        assert!(hits.iter().all(|&h| h > 0), "{hits:?}");
    }

    #[test]
    fn uniform_is_roughly_even() {
        let p = ProductPicker::new(4, 0.0);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut hits = [0u32; 4];
        for _ in 0..8_000 {
            hits[(p.pick(&mut rng) - 1) as usize] += 1;
        }
        assert!(
            hits.iter().all(|&h| (1_700..2_300).contains(&h)),
            "{hits:?}"
        );
    }
}
