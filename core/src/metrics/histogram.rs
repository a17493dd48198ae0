//! `pgdog_mirror_latency_seconds{database}`: the lifetime mirror latency histogram.
//!
//! The distribution lives in the stats plugin (an HDR histogram per database, in the
//! snapshot as `(le_us, count)` buckets, ascending). Recording every event a second
//! time would put work on the event path and disagree with the plugin after a
//! `RESET MIRROR STATS`, so the snapshot's distribution is re-bucketed into fixed
//! bounds at scrape time: one merge walk per database, O(recorded buckets + bounds),
//! independent of the requests served. A sample counts in the first bound at or above
//! its HDR bucket's upper edge. A stats plugin answering the plugin API 2.1 `scrape`
//! call sends the distribution at [`BOUNDS_US`] already (by the same rule), so the walk
//! is then one step per bound.

use super::family::Family;
use super::scrape::Source;
use super::text::Kind;
use crate::plugins::DatabaseStats;

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

/// [`BOUNDS`] as the `le` label prints them (`f64` `Display`, checked in the tests).
const LE: [&str; 14] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10",
];

pub const FAMILY: Family = Family {
    name: "pgdog_mirror_latency_seconds",
    help: "Latency of requests the mirror answered, since start or RESET MIRROR STATS",
    kind: Kind::Histogram,
    source: Source::Snapshot,
    samples: |f, w, v| {
        let bucket = format!("{}_bucket{{database=\"", f.name);
        let le = LE.map(|le| format!("\",le=\"{le}\"}}"));
        let sum = format!("{}_sum{{database=\"", f.name);
        let count = format!("{}_count{{database=\"", f.name);
        for db in &v.databases {
            let (label, l) = (&db.label, &db.item.mirror_latency);
            let mut cumulative = 0;
            for (n, le) in rebucket(db.item).into_iter().zip(&le) {
                cumulative += n;
                w.line(&bucket, label, le, cumulative as f64);
            }
            w.line(&bucket, label, "\",le=\"+Inf\"}", l.samples as f64);
            w.line(&sum, label, "\"}", l.avg_ms * l.samples as f64 / 1000.0);
            w.line(&count, label, "\"}", l.samples as f64);
        }
    },
};

/// Samples per bound (not cumulative) of `db`'s mirror latency; samples above the last
/// bound are in none.
pub fn rebucket(db: &DatabaseStats) -> [u64; BOUNDS.len()] {
    let mut counts = [0u64; BOUNDS.len()];
    let mut i = 0;
    let mut previous = 0;
    for b in db.mirror_latency.buckets.iter() {
        if b.le_us < previous {
            i = 0; // not ascending after all: search from the start
        }
        previous = b.le_us;
        while i < BOUNDS_US.len() && b.le_us > BOUNDS_US[i] {
            i += 1;
        }
        if i < BOUNDS_US.len() {
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
            assert_eq!(LE[i], bound.to_string());
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
        let c = rebucket(&db(&[
            (1, 1),
            (500, 2),
            (501, 4),
            (10_000_000, 8),
            (10_000_001, 16),
        ]));
        assert_eq!(&c[..3], &[3, 4, 0]);
        assert_eq!(c[13], 8);
        assert_eq!(c.iter().sum::<u64>(), 15);
        let c = rebucket(&db(&[(2_000, 1), (400, 2), (3_000_000, 4)]));
        assert_eq!((c[0], c[2], c[12]), (2, 1, 4));
    }
}
