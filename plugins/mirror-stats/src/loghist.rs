//! A small log-bucketed histogram for per-fingerprint figures: eight buckets per
//! doubling (~9 % resolution), fixed size, so thousands of fingerprints cost little
//! memory and a quantile is one walk over a few hundred counters.

/// Buckets per doubling.
const PER_OCTAVE: f64 = 8.0;

#[derive(Clone, Debug)]
pub struct LogHistogram {
    /// Smallest value told apart; values below land in bucket 0.
    min: f64,
    counts: Vec<u32>,
    total: u64,
}

impl LogHistogram {
    /// Covers `min` to `min * 2^octaves`; larger values land in the last bucket.
    pub fn new(min: f64, octaves: u32) -> Self {
        Self {
            min,
            counts: vec![0; (octaves as f64 * PER_OCTAVE) as usize + 1],
            total: 0,
        }
    }

    pub fn record(&mut self, value: f64) {
        let i = if value <= self.min {
            0
        } else {
            ((value / self.min).log2() * PER_OCTAVE) as usize
        };
        let last = self.counts.len() - 1;
        let slot = &mut self.counts[i.min(last)];
        *slot = slot.saturating_add(1);
        self.total += 1;
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The value at quantile `q` (0 to 1): the geometric middle of its bucket.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return self.min * 2f64.powf((i as f64 + 0.5) / PER_OCTAVE);
            }
        }
        self.min * 2f64.powf(self.counts.len() as f64 / PER_OCTAVE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_resolution() {
        let mut h = LogHistogram::new(1.0, 32);
        for v in 1..=1000 {
            h.record(v as f64);
        }
        let p50 = h.quantile(0.5);
        assert!((p50 / 500.0 - 1.0).abs() < 0.1, "{p50}");
        let p99 = h.quantile(0.99);
        assert!((p99 / 990.0 - 1.0).abs() < 0.1, "{p99}");
        assert_eq!(h.len(), 1000);
        // Ratios below 1 and beyond the range.
        let mut r = LogHistogram::new(1.0 / 1024.0, 20);
        r.record(0.5);
        r.record(1e9);
        assert!((r.quantile(0.0) / 0.5 - 1.0).abs() < 0.1);
        assert!(r.quantile(1.0) > 500.0);
    }
}
