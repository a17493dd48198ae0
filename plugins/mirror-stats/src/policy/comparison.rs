//! Result comparison against the primary: the latency-ratio criterion (overall p99 and
//! per fingerprint) and the naming of the statements whose answers differ.

use pgdog_plugin_api::{DatabaseStats, FingerprintStats, ReadinessCriteria};

use super::Findings;

/// Paired samples a fingerprint needs before its latency ratio is judged.
pub const MIN_PAIRED: u64 = 20;

/// Milliseconds by which the mirror must be slower (at the compared median) before a
/// fingerprint's latency ratio counts against it.
pub const RATIO_FLOOR_MS: f64 = 1.0;

/// Share of `max_latency_ms` by which the mirror's overall p99 must exceed the primary's
/// before the p99 ratio counts against it: a p99 is one request in a hundred, and on a
/// busy host sub-millisecond tails differ by several times from scheduling alone.
pub const P99_FLOOR_SHARE: f64 = 0.1;

/// Fingerprints named in one reason.
const NAMED: usize = 3;

/// Mirror p99 / primary p99, when both are known.
pub fn latency_ratio(stats: &DatabaseStats) -> Option<f64> {
    let (m, p) = (&stats.mirror_latency, &stats.primary_latency);
    (m.samples > 0 && p.samples > 0 && p.p99_ms > 0.0).then(|| m.p99_ms / p.p99_ms)
}

/// `a1b2c3d4e5f6a7b8 "select * from t where id = ?"`, shortened.
pub fn name_fingerprint(fp: &FingerprintStats) -> String {
    let text: String = fp.text.chars().take(60).collect();
    let more = if fp.text.chars().count() > 60 {
        "…"
    } else {
        ""
    };
    format!("{:016x} \"{text}{more}\"", fp.fingerprint)
}

/// The fingerprints with the most mismatches, named with their counts and an example:
/// `5ee9… "select …" (3 of 3: same 10 rows, different contents); …`.
pub fn worst_mismatches(fingerprints: &[&FingerprintStats]) -> String {
    let mut worst: Vec<_> = fingerprints.iter().filter(|f| f.mismatches > 0).collect();
    worst.sort_by_key(|f| std::cmp::Reverse(f.mismatches));
    let named: Vec<String> = worst
        .iter()
        .take(NAMED)
        .map(|f| {
            format!(
                "{} ({} of {}: {})",
                name_fingerprint(f),
                f.mismatches,
                f.compared,
                f.example
            )
        })
        .collect();
    named.join("; ")
}

/// Latency regressions against the primary: the overall p99 ratio, and each fingerprint's
/// median paired ratio.
pub fn ratio_reasons(
    stats: &DatabaseStats,
    fingerprints: &[&FingerprintStats],
    criteria: &ReadinessCriteria,
    reasons: &mut impl Findings,
) {
    let limit = criteria.max_latency_ratio;
    if limit <= 0.0 {
        return;
    }
    let (m, p) = (&stats.mirror_latency, &stats.primary_latency);
    if let Some(ratio) = latency_ratio(stats) {
        let enough = m.samples >= criteria.min_requests && p.samples >= criteria.min_requests;
        let floor = (criteria.max_latency_ms * P99_FLOOR_SHARE).max(RATIO_FLOOR_MS);
        if enough && ratio > limit && m.p99_ms - p.p99_ms >= floor {
            reasons.fail("max_latency_ratio", ratio, limit, || {
                format!(
                    "Mirror p99 {:.1}ms is {ratio:.1}x the primary's {:.1}ms > maximum {limit}x",
                    m.p99_ms, p.p99_ms
                )
            });
        }
    }
    let mut slow: Vec<_> = fingerprints
        .iter()
        .filter(|f| {
            f.paired >= MIN_PAIRED
                && f.ratio_p50 > limit
                && f.mirror_p50_ms - f.primary_p50_ms >= RATIO_FLOOR_MS
        })
        .collect();
    slow.sort_by(|a, b| b.ratio_p50.total_cmp(&a.ratio_p50));
    for f in slow.iter().take(NAMED) {
        reasons.fail("max_latency_ratio", f.ratio_p50, limit, || {
            format!(
                "Query {} is {:.1}x slower on the mirror (median of {} paired ratios; p50 {:.2}ms vs {:.2}ms) > maximum {limit}x",
                name_fingerprint(f),
                f.ratio_p50,
                f.paired,
                f.mirror_p50_ms,
                f.primary_p50_ms
            )
        });
    }
    if slow.len() > NAMED {
        reasons.fail("max_latency_ratio", slow.len() as f64, limit, || {
            format!("{} more queries slower on the mirror", slow.len() - NAMED)
        });
    }
}
