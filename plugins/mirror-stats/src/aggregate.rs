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
    pub mirror_latency: Histogram<u64>,
    pub primary_latency: Histogram<u64>,
    pub first_event_us: Option<u64>,
    pub last_event_us: Option<u64>,
}

impl Aggregate {
    pub fn new(significant_digits: u8) -> Self {
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_US, significant_digits)
            .expect("valid histogram bounds");
        Self {
            counts: Counts::default(),
            mirror_latency: hist.clone(),
            primary_latency: hist,
            first_event_us: None,
            last_event_us: None,
        }
    }

    /// Counts one event. See `pgdog_plugin_api::stats` for the counting rules.
    pub fn record(&mut self, ev: &MirrorEvent) {
        self.counts.record(ev);

        if let ROption::RSome(us) = ev.mirror_latency_us {
            self.mirror_latency.saturating_record(us);
        }
        if let ROption::RSome(us) = ev.primary_latency_us {
            self.primary_latency.saturating_record(us);
        }
        let at = ev.at_unix_us;
        self.first_event_us = Some(self.first_event_us.map_or(at, |f| f.min(at)));
        self.last_event_us = Some(self.last_event_us.map_or(at, |l| l.max(at)));
    }

    /// Adds `other` into `self` (histograms are mergeable; counts add up).
    pub fn merge(&mut self, other: &Aggregate) {
        self.counts.add(&other.counts);
        // Same bounds and precision on both sides: addition cannot fail.
        let _ = self.mirror_latency.add(&other.mirror_latency);
        let _ = self.primary_latency.add(&other.primary_latency);
        self.first_event_us = min_opt(self.first_event_us, other.first_event_us);
        self.last_event_us = max_opt(self.last_event_us, other.last_event_us);
    }

    pub fn to_stats(&self, database: &str) -> DatabaseStats {
        DatabaseStats {
            database: RString::from(database),
            counts: self.counts,
            mirror_latency: summarize(&self.mirror_latency),
            primary_latency: summarize(&self.primary_latency),
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

/// Quantiles and the bucketed distribution of a histogram, in milliseconds.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
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
}
