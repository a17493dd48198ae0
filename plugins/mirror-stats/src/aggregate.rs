//! Per-database aggregation of mirror events: counters plus mergeable HDR latency
//! histograms (never lists of samples). The plugin records each event twice, in its
//! database's aggregate and in the overall one, so a snapshot merges nothing.

use hdrhistogram::Histogram;
use pgdog_plugin_api::{
    abi_stable::std_types::{ROption, RString},
    Counts, DatabaseStats, DropReason, ErrorCategory, LatencyBucket, LatencySummary, MirrorEvent,
    Outcome,
};

/// Highest latency the histograms track exactly: one hour, in microseconds. Longer
/// values are clamped (a mirror that slow fails every latency criterion anyway).
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// Counters and histograms for one database.
#[derive(Clone)]
pub struct Aggregate {
    pub counts: Counts,
    pub mirror_latency: Latency,
    pub primary_latency: Latency,
    pub first_event_us: Option<u64>,
    pub last_event_us: Option<u64>,
}

/// An HDR histogram of latencies in microseconds, plus the upper edges of its non-empty
/// buckets. A summary walks those edges, O(distinct buckets), instead of the histogram's
/// counts array through its iterators, O(slots up to the largest value) twice over plus
/// one scan per quantile: with 1,000 databases that walk was most of a snapshot.
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
    /// Ascending: `highest_equivalent` of the values in each non-empty bucket.
    edges: Vec<u64>,
}

impl Latency {
    fn new(significant_digits: u8) -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_TRACKED_US, significant_digits)
                .expect("valid histogram bounds"),
            edges: Vec::new(),
        }
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// One sample (clamped to [`MAX_TRACKED_US`]). O(1), plus an insertion into the
    /// edges the first time a bucket is hit.
    pub fn record(&mut self, us: u64) {
        let us = us.min(MAX_TRACKED_US);
        if self.hist.count_at(us) == 0 {
            let edge = self.hist.highest_equivalent(us);
            if let Err(i) = self.edges.binary_search(&edge) {
                self.edges.insert(i, edge);
            }
        }
        self.hist.saturating_record(us);
    }

    /// Adds `other`'s samples (same bounds and precision on both sides).
    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hist.add(&other.hist);
        self.edges.extend_from_slice(&other.edges);
        self.edges.sort_unstable();
        self.edges.dedup();
    }

    /// Quantiles and the bucketed distribution, in milliseconds: the figures
    /// hdrhistogram's `mean`, `value_at_quantile` and `iter_recorded` give, in one pass
    /// over the non-empty buckets.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.hist;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let total = h.len();
        let quantiles = [0.50, 0.95, 0.99];
        let targets = quantiles.map(|q: f64| ((q * total as f64).ceil() as u64).max(1));
        let mut at = [0u64; 3];
        let mut next = 0;
        let mut cumulative = 0u64;
        let mut mean_us = 0.0;
        let buckets = self
            .edges
            .iter()
            .map(|&edge| {
                let count = h.count_at(edge);
                cumulative = cumulative.saturating_add(count);
                while next < at.len() && cumulative >= targets[next] {
                    at[next] = edge;
                    next += 1;
                }
                mean_us += h.median_equivalent(edge) as f64 * count as f64 / total as f64;
                LatencyBucket { le_us: edge, count }
            })
            .collect();
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            samples: total,
            avg_ms: mean_us / 1000.0,
            max_ms: ms(h.max()),
            p50_ms: ms(at[0]),
            p95_ms: ms(at[1]),
            p99_ms: ms(at[2]),
            buckets,
        }
    }
}

impl Aggregate {
    pub fn new(significant_digits: u8) -> Self {
        let latency = Latency::new(significant_digits);
        Self {
            counts: Counts::default(),
            mirror_latency: latency.clone(),
            primary_latency: latency,
            first_event_us: None,
            last_event_us: None,
        }
    }

    /// Counts one event. See `pgdog_plugin_api::stats` for the counting rules.
    pub fn record(&mut self, ev: &MirrorEvent) {
        let c = &mut self.counts;
        c.total += 1;
        if ev.is_dropped() {
            c.dropped += 1;
            if ev.drop_reason == DropReason::BUFFER_FULL
                || ev.category == ErrorCategory::BUFFER_FULL
            {
                c.by_category.buffer_full += 1;
            }
        } else if ev.outcome == Outcome::MIRRORED {
            c.mirrored += 1;
        } else if ev.outcome == Outcome::ERROR {
            c.errors += 1;
            let e = &mut c.by_category;
            match ev.category {
                ErrorCategory::CONNECTION => e.connection += 1,
                ErrorCategory::QUERY => e.query += 1,
                ErrorCategory::TIMEOUT => e.timeout += 1,
                ErrorCategory::PROTOCOL => e.protocol += 1,
                _ => e.other += 1,
            }
        }
        // Outcomes this version does not know count in `total` only.

        if let ROption::RSome(us) = ev.mirror_latency_us {
            self.mirror_latency.record(us);
        }
        if let ROption::RSome(us) = ev.primary_latency_us {
            self.primary_latency.record(us);
        }
        let at = ev.at_unix_us;
        self.first_event_us = Some(self.first_event_us.map_or(at, |f| f.min(at)));
        self.last_event_us = Some(self.last_event_us.map_or(at, |l| l.max(at)));
    }

    /// Adds `other` into `self` (histograms are mergeable; counts add up).
    pub fn merge(&mut self, other: &Aggregate) {
        self.counts.add(&other.counts);
        self.mirror_latency.merge(&other.mirror_latency);
        self.primary_latency.merge(&other.primary_latency);
        self.first_event_us = min_opt(self.first_event_us, other.first_event_us);
        self.last_event_us = max_opt(self.last_event_us, other.last_event_us);
    }

    pub fn to_stats(&self, database: &str) -> DatabaseStats {
        DatabaseStats {
            database: RString::from(database),
            counts: self.counts,
            mirror_latency: self.mirror_latency.summary(),
            primary_latency: self.primary_latency.summary(),
            first_event_unix_us: self.first_event_us.into(),
            last_event_unix_us: self.last_event_us.into(),
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dropped, error, ok};

    #[test]
    fn counts_follow_the_rules() {
        let mut a = Aggregate::new(3);
        for i in 0..95 {
            a.record(&ok(0, 1_000 + i));
        }
        for _ in 0..5 {
            a.record(&error(0, ErrorCategory::CONNECTION));
        }
        a.record(&dropped(0));
        // An ERROR with category BUFFER_FULL is a drop, not a mirror failure.
        a.record(&error(0, ErrorCategory::BUFFER_FULL));
        a.record(&error(0, ErrorCategory::QUERY));
        let c = a.counts;
        assert_eq!((c.total, c.mirrored, c.errors, c.dropped), (103, 95, 6, 2));
        assert_eq!(c.by_category.connection, 5);
        assert_eq!(c.by_category.query, 1);
        assert_eq!(c.by_category.buffer_full, 2);
        assert_eq!(c.attempted(), 101);
    }

    #[test]
    fn quantiles_and_merge() {
        let mut a = Aggregate::new(3);
        let mut b = Aggregate::new(3);
        // 1..=1000 ms split over two databases.
        for ms in 1..=1000u64 {
            let target = if ms % 2 == 0 { &mut a } else { &mut b };
            target.record(&ok(0, ms * 1000));
        }
        a.merge(&b);
        let s = a.to_stats("all");
        let l = &s.mirror_latency;
        assert_eq!(l.samples, 1000);
        assert!((l.avg_ms - 500.5).abs() < 1.0, "{}", l.avg_ms);
        assert!((l.p50_ms - 500.0).abs() <= 1.0, "{}", l.p50_ms);
        assert!((l.p95_ms - 950.0).abs() <= 1.0, "{}", l.p95_ms);
        assert!((l.p99_ms - 990.0).abs() <= 1.0, "{}", l.p99_ms);
        assert!((l.max_ms - 1000.0).abs() <= 1.0, "{}", l.max_ms);
        // Conservative at the bucket holding the threshold (3 significant digits).
        assert!((99..=100).contains(&l.samples_at_or_below(100_000)));
        assert_eq!(s.counts.mirrored, 1000);
        assert_eq!(s.primary_latency.samples, 0);
    }

    /// What the summary was before the edges: hdrhistogram's own read-outs.
    fn reference(h: &Histogram<u64>) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            samples: h.len(),
            avg_ms: h.mean() / 1000.0,
            max_ms: ms(h.max()),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            buckets: h
                .iter_recorded()
                .map(|v| LatencyBucket {
                    le_us: h.highest_equivalent(v.value_iterated_to()),
                    count: v.count_since_last_iteration(),
                })
                .collect(),
        }
    }

    #[test]
    fn summary_equals_hdrhistogram_read_outs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for digits in [1, 2, 3, 5] {
            let (mut a, mut b) = (Latency::new(digits), Latency::new(digits));
            assert_eq!(a.summary(), LatencySummary::default());
            for i in 0..20_000u64 {
                let us = match i % 5 {
                    0 => random() % 5_000,
                    1 => 200 + random() % 100_000_000,
                    2 => random() % 8,
                    3 => MAX_TRACKED_US - 10 + random() % 20,
                    _ => 1 << (random() % 40),
                };
                if i % 3 == 0 { &mut a } else { &mut b }.record(us);
                if i % 4_999 == 0 {
                    assert_eq!(
                        a.summary(),
                        reference(a.histogram()),
                        "{digits} digits, {i}"
                    );
                }
            }
            assert_eq!(b.summary(), reference(b.histogram()), "{digits} digits");
            a.merge(&b);
            assert_eq!(
                a.summary(),
                reference(a.histogram()),
                "{digits} digits, merged"
            );
            assert_eq!(a.summary().samples, 20_000);
        }
    }
}
