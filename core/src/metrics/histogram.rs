//! `pgdog_mirror_latency_seconds{database}`: the lifetime mirror latency histogram.
//!
//! Not an OpenTelemetry instrument: OpenTelemetry has no asynchronous histogram, and the
//! distribution already lives in the stats plugin (an HDR histogram per database, in the
//! snapshot as `(le_us, count)` buckets, ascending). Recording every event a second time
//! into an SDK histogram would put work on the event path, disagree with the plugin
//! after a `RESET MIRROR STATS`, and sum floating-point seconds in another order than the
//! plugin's exact integer sum. So this collector, registered in the Prometheus registry
//! the exporter writes into, turns the snapshot into the family at scrape time. A stats
//! plugin answering the plugin API 2.1 `scrape` call sends the distribution at
//! [`BOUNDS_US`] already, so this is one step per bound; a whole snapshot is re-bucketed
//! (a sample counts in the first bound at or above its HDR bucket's upper edge).
//! The OTLP push carries no latency histogram (`docs/metrics.md`).
//!
//! When `[general] mirror_max_latency_ms` is not one of the bounds, it is added as one
//! more bucket edge ([`bounds_with`]): the samples over the readiness bound are then
//! `count - bucket{le=bound}`, summable across proxies, which is what the p99 criterion
//! needs to be rebuilt from Prometheus (`pgdog readiness --prometheus`).

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::sample::{lock, Current};
use crate::plugins::DatabaseStats;

pub const NAME: &str = "pgdog_mirror_latency_seconds";
const HELP: &str = "Latency of requests the mirror answered, since start or RESET MIRROR STATS";

/// Upper bounds in seconds, 0.5 ms to 10 s.
pub const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`BOUNDS`] in microseconds: `le_us / 1e6 <= BOUNDS[i]` exactly when
/// `le_us <= BOUNDS_US[i]` (checked in the tests).
pub const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The bucket edges (µs, ascending) exported: [`BOUNDS_US`], and `bound_us` when given
/// and not one of them.
pub fn bounds_with(bound_us: Option<u64>) -> Vec<u64> {
    let mut bounds = BOUNDS_US.to_vec();
    if let Some(b) = bound_us.filter(|b| *b > 0 && !BOUNDS_US.contains(b)) {
        let at = bounds.partition_point(|&x| x < b);
        bounds.insert(at, b);
    }
    bounds
}

/// An edge in seconds: the exact constant for the standard ones.
fn seconds(us: u64) -> f64 {
    match BOUNDS_US.iter().position(|&b| b == us) {
        Some(i) => BOUNDS[i],
        None => us as f64 / 1e6,
    }
}

/// The registry's view of the current sample's distributions.
pub struct LatencyHistogram {
    current: Current,
    desc: Vec<Desc>,
}

impl LatencyHistogram {
    pub fn new(current: Current) -> Self {
        let desc = Desc::new(
            NAME.into(),
            HELP.into(),
            vec!["database".into()],
            Default::default(),
        )
        .expect("valid metric description");
        Self {
            current,
            desc: vec![desc],
        }
    }
}

impl Collector for LatencyHistogram {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sample = lock(&self.current);
        let bounds = bounds_with(sample.latency_bound_us);
        match sample.snapshot.as_ref().filter(|_| sample.mirror_enabled) {
            Some((snapshot, _)) => vec![family(&snapshot.databases, &bounds)],
            None => Vec::new(),
        }
    }
}

/// The family for `databases`, with buckets at `bounds_us`.
fn family(databases: &[DatabaseStats], bounds_us: &[u64]) -> MetricFamily {
    let metrics = databases
        .iter()
        .map(|db| {
            let l = &db.mirror_latency;
            let mut cumulative = 0;
            let buckets = bounds_us
                .iter()
                .zip(rebucket(db, bounds_us))
                .map(|(&bound, n)| {
                    cumulative += n;
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(seconds(bound));
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            let mut h = proto::Histogram::default();
            h.set_sample_count(l.samples);
            h.set_sample_sum(l.avg_ms * l.samples as f64 / 1000.0);
            h.set_bucket(buckets);
            let mut label = proto::LabelPair::default();
            label.set_name("database".into());
            label.set_value(db.database.to_string());
            let mut m = proto::Metric::default();
            m.set_label(vec![label]);
            m.set_histogram(h);
            m
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(NAME.into());
    family.set_help(HELP.into());
    family.set_field_type(MetricType::HISTOGRAM);
    family.set_metric(metrics);
    family
}

/// Samples per bound of `bounds_us` (not cumulative) of `db`'s mirror latency; samples
/// above the last bound are in none.
pub fn rebucket(db: &DatabaseStats, bounds_us: &[u64]) -> Vec<u64> {
    let mut counts = vec![0u64; bounds_us.len()];
    let mut i = 0;
    let mut previous = 0;
    for b in db.mirror_latency.buckets.iter() {
        if b.le_us < previous {
            i = 0; // not ascending after all: search from the start
        }
        previous = b.le_us;
        while i < bounds_us.len() && b.le_us > bounds_us[i] {
            i += 1;
        }
        if i < bounds_us.len() {
            counts[i] += b.count;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdog_plugin_api::{LatencyBucket, LatencySummary};

    #[test]
    fn integer_bounds_match_the_float_ones() {
        for (i, &bound) in BOUNDS.iter().enumerate() {
            let us = BOUNDS_US[i];
            for u in [us - 1, us, us + 1] {
                assert_eq!(u as f64 / 1e6 <= bound, u <= us, "{u} us vs {bound} s");
            }
        }
    }

    #[test]
    fn rebucketing_walks_once_and_tolerates_disorder() {
        let db = |buckets: &[(u64, u64)]| DatabaseStats {
            mirror_latency: LatencySummary {
                buckets: buckets
                    .iter()
                    .map(|&(le_us, count)| LatencyBucket { le_us, count })
                    .collect::<Vec<_>>()
                    .into(),
                ..LatencySummary::default()
            },
            ..DatabaseStats::default()
        };
        let c = rebucket(
            &db(&[
                (1, 1),
                (500, 2),
                (501, 4),
                (10_000_000, 8),
                (10_000_001, 16),
            ]),
            &BOUNDS_US,
        );
        assert_eq!(&c[..3], &[3, 4, 0]);
        assert_eq!(c[13], 8);
        assert_eq!(c.iter().sum::<u64>(), 15);
        let c = rebucket(&db(&[(2_000, 1), (400, 2), (3_000_000, 4)]), &BOUNDS_US);
        assert_eq!((c[0], c[2], c[12]), (2, 1, 4));
        // The readiness bound as an extra edge: 300 ms between 250 and 500.
        let bounds = bounds_with(Some(300_000));
        assert_eq!(bounds.len(), BOUNDS_US.len() + 1);
        assert_eq!(bounds_with(Some(1_000_000)), BOUNDS_US.to_vec());
        let c = rebucket(&db(&[(260_000, 1), (300_000, 2), (300_001, 4)]), &bounds);
        assert_eq!((c[8], c[9], c[10]), (0, 3, 4));
        assert_eq!(seconds(300_000), 0.3);
        assert_eq!(seconds(500), 0.0005);
    }
}
