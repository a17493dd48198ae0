//! Per-database aggregation of mirror events: counters plus mergeable HDR latency
//! histograms (never lists of samples). The plugin records each event twice, in its
//! database's aggregate and in the overall one, so a snapshot merges nothing.

use hdrhistogram::Histogram;
use pgdog_plugin_api::{
    abi_stable::std_types::{ROption, RString},
    Counts, DatabaseStats, LatencyBucket, LatencySummary, MirrorEvent,
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

/// Latencies in microseconds, in HDR histogram buckets (the configured significant
/// digits): the upper edge of each non-empty bucket, ascending, with its count.
///
/// A snapshot summarises every database, so the summary must be cheap: one pass over
/// two short contiguous arrays, O(distinct buckets). (Walking a `Histogram`'s counts
/// through its iterators visited every slot up to the largest value, several times;
/// reading just the non-empty slots still missed the cache once per bucket in a 180 KB
/// array per database: with 1,000 databases either was most of a scrape.) Recording
/// finds the bucket by binary search, O(log distinct buckets).
#[derive(Clone)]
pub struct Latency {
    /// The bucket scheme only (equivalent ranges); nothing is recorded into it, so its
    /// bounds do not matter (the arithmetic depends on the lowest value and precision).
    scale: Histogram<u64>,
    edges: Vec<u64>,
    counts: Vec<u64>,
}

impl Latency {
    fn new(significant_digits: u8) -> Self {
        Self {
            scale: Histogram::new_with_bounds(1, 2, significant_digits)
                .expect("valid histogram bounds"),
            edges: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// One sample (clamped to [`MAX_TRACKED_US`]).
    pub fn record(&mut self, us: u64) {
        let edge = self.scale.highest_equivalent(us.min(MAX_TRACKED_US));
        match self.edges.binary_search(&edge) {
            Ok(i) => self.counts[i] = self.counts[i].saturating_add(1),
            Err(i) => {
                self.edges.insert(i, edge);
                self.counts.insert(i, 1);
            }
        }
    }

    /// Adds `other`'s samples (same precision on both sides).
    pub fn merge(&mut self, other: &Latency) {
        let (mut edges, mut counts) = (Vec::new(), Vec::new());
        let (mut i, mut j) = (0, 0);
        while i < self.edges.len() || j < other.edges.len() {
            let (a, b) = (self.edges.get(i), other.edges.get(j));
            let (edge, count) = match (a, b) {
                (Some(&a), Some(&b)) if a == b => {
                    i += 1;
                    j += 1;
                    (a, self.counts[i - 1].saturating_add(other.counts[j - 1]))
                }
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    (a, self.counts[i - 1])
                }
                (Some(&a), None) => {
                    i += 1;
                    (a, self.counts[i - 1])
                }
                (_, Some(&b)) => {
                    j += 1;
                    (b, other.counts[j - 1])
                }
                (None, None) => unreachable!("loop condition"),
            };
            edges.push(edge);
            counts.push(count);
        }
        self.edges = edges;
        self.counts = counts;
    }

    /// Quantiles and the bucketed distribution, in milliseconds: the figures an
    /// hdrhistogram `Histogram` holding the same samples gives with `mean`, `max`,
    /// `value_at_quantile` and `iter_recorded` (tested), in one pass.
    pub fn summary(&self) -> LatencySummary {
        let total = self.counts.iter().fold(0u64, |t, &c| t.saturating_add(c));
        if total == 0 {
            return LatencySummary::default();
        }
        let quantiles = [0.50, 0.95, 0.99];
        let targets = quantiles.map(|q: f64| ((q * total as f64).ceil() as u64).max(1));
        let mut at = [0u64; 3];
        let mut next = 0;
        let mut cumulative = 0u64;
        let mut mean_us = 0.0;
        let buckets = self
            .edges
            .iter()
            .zip(&self.counts)
            .map(|(&edge, &count)| {
                cumulative = cumulative.saturating_add(count);
                while next < at.len() && cumulative >= targets[next] {
                    at[next] = edge;
                    next += 1;
                }
                mean_us += self.scale.median_equivalent(edge) as f64 * count as f64 / total as f64;
                LatencyBucket { le_us: edge, count }
            })
            .collect();
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            samples: total,
            avg_ms: mean_us / 1000.0,
            max_ms: ms(self.edges.last().copied().unwrap_or(0)),
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
        self.counts.record(ev);

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
    use pgdog_plugin_api::ErrorCategory;

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

    /// What the summary was when the samples were recorded into a `Histogram`:
    /// hdrhistogram's own read-outs.
    fn reference(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
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
            let hist = || Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_US, digits).unwrap();
            let (mut a, mut b) = (Latency::new(digits), Latency::new(digits));
            let (mut ha, mut hb) = (hist(), hist());
            assert_eq!(a.summary(), reference(&ha));
            for i in 0..20_000u64 {
                let us = match i % 5 {
                    0 => random() % 5_000,
                    1 => 200 + random() % 100_000_000,
                    2 => random() % 8,
                    3 => MAX_TRACKED_US - 10 + random() % 20,
                    _ => 1 << (random() % 40),
                };
                let (l, h) = if i % 3 == 0 {
                    (&mut a, &mut ha)
                } else {
                    (&mut b, &mut hb)
                };
                l.record(us);
                h.saturating_record(us.min(MAX_TRACKED_US));
                if i % 4_999 == 0 {
                    assert_eq!(a.summary(), reference(&ha), "{digits} digits, {i}");
                }
            }
            assert_eq!(b.summary(), reference(&hb), "{digits} digits");
            a.merge(&b);
            ha.add(&hb).unwrap();
            assert_eq!(a.summary(), reference(&ha), "{digits} digits, merged");
            assert_eq!(a.summary().samples, 20_000);
        }
    }
}
