//! What the metrics endpoint asks of the stats plugin once per scrape (API 2.1):
//! the statistics with each latency distribution at fixed bounds only, and, when the
//! stats plugin is also the readiness plugin, the verdicts without their text.
//!
//! A [`StatsSnapshot`] carries each database's whole latency distribution and
//! `assess` writes a report full of human-readable details: both cost in proportion to
//! what was recorded, while the Prometheus families need a few bucket counts, `ready`
//! and `confidence` per database. [`ScrapeRequest`] / [`ScrapeAnswer`] carry just that.

use crate::Extensions;
use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

use crate::{LatencyBucket, LatencySummary, ReadinessCriteria, ReadinessReport, StatsSnapshot};

/// A scrape's request to the stats plugin.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ScrapeRequest {
    /// Upper bounds, microseconds, ascending: report latency distributions at these
    /// bounds only (see [`LatencySummary::at_bounds`]).
    pub latency_bounds_us: RVec<u64>,
    /// Judge readiness under these criteria too (asked only of a plugin that is the
    /// readiness plugin as well). `RNone`: no verdicts.
    pub criteria: ROption<ReadinessCriteria>,
    /// Fields added after 3.0.0 (see [`crate::extension`]). None yet.
    pub extensions: Extensions,
}

/// The stats plugin's answer to a [`ScrapeRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ScrapeAnswer {
    /// The statistics, with every `LatencySummary::buckets` at the requested bounds and
    /// no `fingerprints`.
    pub snapshot: StatsSnapshot,
    /// What `assess` on the whole snapshot, at the same instant, would conclude under
    /// the request's criteria; `RNone` when no criteria were given.
    pub verdicts: ROption<Verdicts>,
    /// The recent-latency window of the spec's `mirror` family. Hosts before 3.0 wrote
    /// that family from this answer; pgdog now exports the stats plugin's metric points
    /// as they are and ignores this field (kept so the layout stays as it was).
    pub recent: ROption<RecentLatency>,
    /// Fields added after 3.0.0 (see [`crate::extension`]). None yet.
    pub extensions: Extensions,
}

/// Latency of the requests mirrored successfully in a recent window (the spec's
/// `mirror{stat="avg_latency_ms"}` and `mirror{stat="max_latency_ms"}`).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq)]
pub struct RecentLatency {
    pub avg_ms: f64,
    pub max_ms: f64,
}

/// The verdict on one database (or on all of them), without reasons or details.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ReadinessVerdict {
    /// The pool name; empty for the overall verdict.
    pub database: RString,
    pub ready: bool,
    /// 0 to 100, as in [`crate::DatabaseReport::confidence`].
    pub confidence: f64,
    /// Fields added after 3.0.0 (see [`crate::extension`]): `confidence.<criterion>`
    /// (3.1.0, see [`crate::readiness`]).
    pub extensions: Extensions,
}

/// Verdicts: overall, and per database in the snapshot's order.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Verdicts {
    pub overall: ReadinessVerdict,
    pub databases: RVec<ReadinessVerdict>,
}

impl Verdicts {
    /// The verdicts of a full report (with its criterion confidences, without texts).
    pub fn of(report: &ReadinessReport) -> Self {
        let verdict = |d: &crate::DatabaseReport| {
            let mut extensions = Extensions::default();
            let confidences: Vec<_> = crate::read_confidences(&d.extensions)
                .into_iter()
                .map(|c| crate::CriterionConfidence {
                    text: String::new(),
                    ..c
                })
                .collect();
            crate::write_confidences(&mut extensions, &confidences);
            ReadinessVerdict {
                database: d.database.clone(),
                ready: d.ready,
                confidence: d.confidence,
                extensions,
            }
        };
        Self {
            overall: verdict(&report.overall),
            databases: report.databases.iter().map(verdict).collect(),
        }
    }
}

impl LatencySummary {
    /// The distribution at `bounds_us` (ascending): one bucket per bound, `le_us` the
    /// bound, counting the samples whose bucket's `le_us` is above the previous bound
    /// and at most this one. Samples above the last bound are in no bucket (`samples`
    /// still counts them). Reading the result with the same rule at a subset of the
    /// bounds gives what reading the whole distribution would.
    pub fn at_bounds(&self, bounds_us: &[u64]) -> RVec<LatencyBucket> {
        let mut counts = vec![0u64; bounds_us.len()];
        for b in self.buckets.iter() {
            let i = bounds_us.partition_point(|&bound| bound < b.le_us);
            if let Some(c) = counts.get_mut(i) {
                *c = c.saturating_add(b.count);
            }
        }
        bounds_us
            .iter()
            .zip(counts)
            .map(|(&le_us, count)| LatencyBucket { le_us, count })
            .collect()
    }
}

/// `snapshot` as a [`ScrapeAnswer`] asks for it: distributions at `bounds_us`, no
/// fingerprints.
pub fn bounded(mut snapshot: StatsSnapshot, bounds_us: &[u64]) -> StatsSnapshot {
    let overall = std::iter::once(&mut snapshot.overall);
    for db in overall.chain(snapshot.databases.iter_mut()) {
        for l in [&mut db.mirror_latency, &mut db.primary_latency] {
            l.buckets = l.at_bounds(bounds_us);
        }
    }
    snapshot.fingerprints = RVec::new();
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(buckets: &[(u64, u64)]) -> LatencySummary {
        LatencySummary {
            samples: buckets.iter().map(|b| b.1).sum(),
            buckets: buckets
                .iter()
                .map(|&(le_us, count)| LatencyBucket { le_us, count })
                .collect(),
            ..LatencySummary::default()
        }
    }

    #[test]
    fn bounds_take_the_samples_up_to_them() {
        let s = summary(&[(1, 1), (500, 2), (501, 4), (999, 8), (5_000, 16)]);
        let b = s.at_bounds(&[500, 1_000]);
        let pairs: Vec<_> = b.iter().map(|b| (b.le_us, b.count)).collect();
        assert_eq!(pairs, [(500, 3), (1_000, 12)]);
        // Reading at a threshold that is one of the bounds gives the full answer.
        for threshold in [500, 1_000] {
            let bounded = summary(&pairs);
            assert_eq!(
                bounded.samples_at_or_below(threshold),
                s.samples_at_or_below(threshold)
            );
        }
        assert!(s.at_bounds(&[]).is_empty());
    }

    #[test]
    fn finer_bounds_read_at_coarser_ones_agree() {
        let s = summary(&[(3, 1), (40, 2), (41, 4), (700, 8), (701, 16), (9_000, 32)]);
        let fine = [10u64, 40, 100, 700, 1_000];
        let coarse = [40u64, 1_000];
        let via_fine = summary(
            &s.at_bounds(&fine)
                .iter()
                .map(|b| (b.le_us, b.count))
                .collect::<Vec<_>>(),
        )
        .at_bounds(&coarse);
        assert_eq!(via_fine, s.at_bounds(&coarse));
    }
}
