//! Per-database aggregation of mirror events: counters plus mergeable HDR latency
//! histograms (never lists of samples). The plugin records each event twice, in its
//! database's aggregate and in the overall one, so a snapshot merges nothing.

use hdrhistogram::Histogram;
use pgdog_plugin_api::errors::write_classes;
use pgdog_plugin_api::{
    abi_stable::std_types::{ROption, RString},
    Counts, DatabaseStats, LatencyBucket, LatencySummary, MirrorEvent,
};
use pgdog_plugin_api::{ErrorClass, ExtensionValue};

/// Highest latency the histograms track exactly: one hour, in microseconds. Longer
/// values are clamped (a mirror that slow fails every latency criterion anyway).
const MAX_TRACKED_US: u64 = 3_600_000_000;

use crate::classes::Classes;

/// Counters and histograms for one database.
#[derive(Clone)]
pub struct Aggregate {
    pub counts: Counts,
    /// The mirror's own query errors by SQLSTATE class (recorded by the plugin, which
    /// has the fingerprints' texts; not merged by [`Aggregate::merge`]).
    pub classes: Classes,
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
///
/// A scrape needs less than the whole distribution, and must not cost more as it
/// fills up (up to thousands of buckets per database): the figures it reads are kept
/// up to date as samples are recorded, so [`Latency::bounded_summary`] is O(bounds):
/// the mean's exact sum, the bucket each quantile falls in ([`Rank`]), and the samples
/// per bound of the last bounds asked for.
#[derive(Clone)]
pub struct Latency {
    /// The bucket scheme only (equivalent ranges); nothing is recorded into it, so its
    /// bounds do not matter (the arithmetic depends on the lowest value and precision).
    scale: Histogram<u64>,
    edges: Vec<u64>,
    counts: Vec<u64>,
    total: u64,
    /// Sum over samples of their bucket's median value (hdrhistogram's mean), exact.
    weighted_us: u128,
    /// Where p50, p95 and p99 fall.
    ranks: [Rank; 3],
    /// Samples per bound of the bounds last given to [`Latency::set_bounds`] (each in
    /// the first bound at or above its bucket's edge; above the last, in none).
    at_bounds: Vec<u64>,
}

/// The quantiles a summary reports.
const QUANTILES: [f64; 3] = [0.50, 0.95, 0.99];

/// The first bucket whose cumulative count reaches a quantile's rank, and that count.
#[derive(Clone, Copy, Default)]
struct Rank {
    index: usize,
    cumulative: u64,
}

/// The rank of quantile `q` among `total` samples, as hdrhistogram counts it.
fn target(q: f64, total: u64) -> u64 {
    ((q * total as f64).ceil() as u64).max(1)
}

impl Latency {
    fn new(significant_digits: u8) -> Self {
        Self {
            scale: Histogram::new_with_bounds(1, 2, significant_digits)
                .expect("valid histogram bounds"),
            edges: Vec::new(),
            counts: Vec::new(),
            total: 0,
            weighted_us: 0,
            ranks: [Rank::default(); 3],
            at_bounds: Vec::new(),
        }
    }

    /// One sample (clamped to [`MAX_TRACKED_US`]); `bounds` are the ones last given to
    /// [`Latency::set_bounds`].
    pub fn record(&mut self, us: u64, bounds: &[u64]) {
        let edge = self.scale.highest_equivalent(us.min(MAX_TRACKED_US));
        let j = match self.edges.binary_search(&edge) {
            Ok(j) => {
                self.counts[j] = self.counts[j].saturating_add(1);
                j
            }
            Err(j) => {
                self.edges.insert(j, edge);
                self.counts.insert(j, 1);
                for r in &mut self.ranks {
                    if self.total > 0 && r.index >= j {
                        r.index += 1;
                    }
                }
                j
            }
        };
        self.total = self.total.saturating_add(1);
        self.weighted_us += u128::from(self.scale.median_equivalent(edge));
        for (r, q) in self.ranks.iter_mut().zip(QUANTILES) {
            if self.total == 1 {
                *r = Rank {
                    index: 0,
                    cumulative: 1,
                };
                continue;
            }
            if j <= r.index {
                r.cumulative += 1;
            }
            let t = target(q, self.total);
            while r.cumulative < t {
                r.index += 1;
                r.cumulative += self.counts[r.index];
            }
            while r.index > 0 && r.cumulative - self.counts[r.index] >= t {
                r.cumulative -= self.counts[r.index];
                r.index -= 1;
            }
        }
        if self.at_bounds.len() == bounds.len() {
            let i = bounds.partition_point(|&b| b < edge);
            if let Some(c) = self.at_bounds.get_mut(i) {
                *c = c.saturating_add(1);
            }
        }
    }

    /// Counts samples per bound of `bounds` (ascending) from now on: one walk over the
    /// buckets; later samples are added as they are recorded.
    pub fn set_bounds(&mut self, bounds: &[u64]) {
        self.at_bounds = self
            .bounded_buckets(bounds)
            .iter()
            .map(|b| b.count)
            .collect();
    }

    fn bounded_buckets(&self, bounds: &[u64]) -> Vec<LatencyBucket> {
        let mut counts = vec![0u64; bounds.len()];
        let mut i = 0;
        for (&edge, &count) in self.edges.iter().zip(&self.counts) {
            while i < bounds.len() && bounds[i] < edge {
                i += 1;
            }
            match counts.get_mut(i) {
                Some(c) => *c = c.saturating_add(count),
                None => break,
            }
        }
        bounds
            .iter()
            .zip(counts)
            .map(|(&le_us, count)| LatencyBucket { le_us, count })
            .collect()
    }

    /// Recomputes what [`Latency::record`] keeps up to date (after a merge): one walk.
    fn recount(&mut self, bounds: &[u64]) {
        self.total = self.counts.iter().fold(0u64, |t, &c| t.saturating_add(c));
        self.weighted_us = self
            .edges
            .iter()
            .zip(&self.counts)
            .map(|(&e, &c)| u128::from(self.scale.median_equivalent(e)) * u128::from(c))
            .sum();
        for (r, q) in self.ranks.iter_mut().zip(QUANTILES) {
            let t = target(q, self.total);
            *r = Rank::default();
            for (i, &c) in self.counts.iter().enumerate() {
                *r = Rank {
                    index: i,
                    cumulative: r.cumulative.saturating_add(c),
                };
                if r.cumulative >= t {
                    break;
                }
            }
        }
        self.set_bounds(bounds);
    }

    /// Adds `other`'s samples (same precision on both sides).
    pub fn merge(&mut self, other: &Latency, bounds: &[u64]) {
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
        self.recount(bounds);
    }

    /// Quantiles and the bucketed distribution, in milliseconds: the figures an
    /// hdrhistogram `Histogram` holding the same samples gives with `mean` (but summed
    /// exactly), `max`, `value_at_quantile` and `iter_recorded` (tested).
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            buckets: self
                .edges
                .iter()
                .zip(&self.counts)
                .map(|(&le_us, &count)| LatencyBucket { le_us, count })
                .collect(),
            ..self.figures()
        }
    }

    /// [`Latency::summary`] with the distribution at the bounds last given to
    /// [`Latency::set_bounds`] (see `LatencySummary::at_bounds`): O(bounds).
    pub fn bounded_summary(&self, bounds: &[u64]) -> LatencySummary {
        debug_assert_eq!(self.at_bounds.len(), bounds.len());
        LatencySummary {
            buckets: bounds
                .iter()
                .zip(&self.at_bounds)
                .map(|(&le_us, &count)| LatencyBucket { le_us, count })
                .collect(),
            ..self.figures()
        }
    }

    /// Everything but the buckets, from the figures kept up to date: O(1).
    fn figures(&self) -> LatencySummary {
        if self.total == 0 {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |i: usize| ms(self.edges[self.ranks[i].index]);
        LatencySummary {
            samples: self.total,
            avg_ms: self.weighted_us as f64 / self.total as f64 / 1000.0,
            max_ms: ms(self.edges.last().copied().unwrap_or(0)),
            p50_ms: at(0),
            p95_ms: at(1),
            p99_ms: at(2),
            buckets: Default::default(),
        }
    }
}

impl Aggregate {
    pub fn new(significant_digits: u8) -> Self {
        let latency = Latency::new(significant_digits);
        Self {
            counts: Counts::default(),
            classes: Classes::default(),
            mirror_latency: latency.clone(),
            primary_latency: latency,
            first_event_us: None,
            last_event_us: None,
        }
    }

    /// Counts one event. See `pgdog_plugin_api::stats` for the counting rules.
    /// `bounds`: the ones last given to [`Aggregate::set_bounds`].
    pub fn record(&mut self, ev: &MirrorEvent, bounds: &[u64]) {
        self.counts.record(ev);

        if let ROption::RSome(us) = ev.mirror_latency_us {
            self.mirror_latency.record(us, bounds);
        }
        if let ROption::RSome(us) = ev.primary_latency_us {
            self.primary_latency.record(us, bounds);
        }
        let at = ev.at_unix_us;
        self.first_event_us = Some(self.first_event_us.map_or(at, |f| f.min(at)));
        self.last_event_us = Some(self.last_event_us.map_or(at, |l| l.max(at)));
    }

    /// Adds `other` into `self` (histograms are mergeable; counts add up).
    pub fn merge(&mut self, other: &Aggregate, bounds: &[u64]) {
        self.counts.add(&other.counts);
        self.mirror_latency.merge(&other.mirror_latency, bounds);
        self.primary_latency.merge(&other.primary_latency, bounds);
        self.first_event_us = min_opt(self.first_event_us, other.first_event_us);
        self.last_event_us = max_opt(self.last_event_us, other.last_event_us);
    }

    /// Counts latency samples per bound of `bounds` from now on (see [`Latency`]).
    pub fn set_bounds(&mut self, bounds: &[u64]) {
        self.mirror_latency.set_bounds(bounds);
        self.primary_latency.set_bounds(bounds);
    }

    pub fn to_stats(&self, database: &str) -> DatabaseStats {
        self.stats_with(database, Latency::summary)
    }

    /// [`Aggregate::to_stats`] with the distributions at `bounds`, the ones last given to
    /// [`Aggregate::set_bounds`]: O(bounds).
    pub fn to_bounded_stats(&self, database: &str, bounds: &[u64]) -> DatabaseStats {
        self.stats_with(database, |l| l.bounded_summary(bounds))
    }

    fn stats_with(
        &self,
        database: &str,
        summary: impl Fn(&Latency) -> LatencySummary,
    ) -> DatabaseStats {
        let mut stats = DatabaseStats {
            database: RString::from(database),
            counts: self.counts,
            mirror_latency: summary(&self.mirror_latency),
            primary_latency: summary(&self.primary_latency),
            first_event_unix_us: self.first_event_us.into(),
            last_event_unix_us: self.last_event_us.into(),
            extensions: Default::default(),
        };
        // Every class, zeros included, so that exporters see the family from the start.
        for class in ErrorClass::ALL {
            let name = format!("errors.class.{}", class.as_str());
            stats.extensions.set(&name, ExtensionValue::Count(0));
        }
        write_classes(&mut stats.extensions, &self.classes.read());
        stats
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
            a.record(&ok(0, 1_000 + i), &[]);
        }
        for _ in 0..5 {
            a.record(&error(0, ErrorCategory::CONNECTION), &[]);
        }
        a.record(&dropped(0), &[]);
        // An ERROR with category BUFFER_FULL is a drop, not a mirror failure.
        a.record(&error(0, ErrorCategory::BUFFER_FULL), &[]);
        a.record(&error(0, ErrorCategory::QUERY), &[]);
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
            target.record(&ok(0, ms * 1000), &[]);
        }
        a.merge(&b, &[]);
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

    /// Equal, but for the mean: hdrhistogram adds `median * count / total` bucket by
    /// bucket in floating point, the summary divides an exact sum once, so the two may
    /// differ in the last bits.
    fn same(ours: &LatencySummary, reference: &LatencySummary, what: &str) {
        let tolerance = 1e-12 * reference.avg_ms.abs();
        assert!(
            (ours.avg_ms - reference.avg_ms).abs() <= tolerance,
            "{what}: mean {} vs {}",
            ours.avg_ms,
            reference.avg_ms
        );
        let exact = LatencySummary {
            avg_ms: reference.avg_ms,
            ..ours.clone()
        };
        assert_eq!(&exact, reference, "{what}");
    }

    /// The bounded summary kept up to date while recording is the whole summary cut
    /// down to the bounds, whenever the bounds were set.
    #[test]
    fn bounded_summary_follows_the_samples() {
        let bounds = [500u64, 1_000, 2_500, 5_000, 10_000, 1_000_000];
        let mut l = Latency::new(3);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..30_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if i == 7_000 {
                l.set_bounds(&bounds);
            }
            let set = if i >= 7_000 { &bounds[..] } else { &[] };
            l.record(200 + seed % 20_000, set);
            if i >= 7_000 && i % 997 == 0 {
                let whole = l.summary();
                let cut = LatencySummary {
                    buckets: whole.at_bounds(&bounds),
                    ..whole
                };
                assert_eq!(l.bounded_summary(&bounds), cut, "{i}");
            }
        }
        // Samples above the last bound are in no bucket.
        l.record(5_000_000, &bounds);
        let b = l.bounded_summary(&bounds);
        assert_eq!(b.samples, 30_001);
        assert_eq!(b.buckets.iter().map(|b| b.count).sum::<u64>(), 30_000);
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
            same(&a.summary(), &reference(&ha), "empty");
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
                l.record(us, &[]);
                h.saturating_record(us.min(MAX_TRACKED_US));
                if i % 4_999 == 0 {
                    same(
                        &a.summary(),
                        &reference(&ha),
                        &format!("{digits} digits, {i}"),
                    );
                }
            }
            same(&b.summary(), &reference(&hb), &format!("{digits} digits"));
            a.merge(&b, &[]);
            ha.add(&hb).unwrap();
            same(
                &a.summary(),
                &reference(&ha),
                &format!("{digits} digits, merged"),
            );
            assert_eq!(a.summary().samples, 20_000);
        }
    }
}
