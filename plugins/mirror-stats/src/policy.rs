//! The default readiness policy and its confidence score.
//!
//! A database is READY when all of these hold (each failure is a [`Reason`] with numbers):
//! * requests the mirror executed (`mirrored + errors`) ≥ `min_requests`
//!   (dropped requests never reached the mirror, so they are no evidence);
//! * observation window (first event to now) ≥ `min_runtime`;
//! * error rate `errors / (mirrored + errors)` ≤ `max_error_rate`;
//! * p99 mirror latency ≤ `max_latency_ms` (p99, not the mean: the tail is what users
//!   feel after the cut-over, and the max is one outlier);
//! * dropped requests `dropped / total` ≤ `max_drop_rate` (default 1 %: a mirror that
//!   could not keep up was not tested on the whole workload);
//! * result comparison: mismatch rate `mismatched / compared` ≤ `max_mismatch_rate`
//!   (default 0); per fingerprint with at least [`MIN_PAIRED`] paired samples, the
//!   median of the paired mirror/primary ratios ≤ `max_latency_ratio`, unless the
//!   medians differ by less than [`RATIO_FLOOR_MS`]; and mirror p99 / primary p99 ≤
//!   `max_latency_ratio` once both sides have `min_requests` samples, unless the p99s
//!   differ by less than [`P99_FLOOR_SHARE`] of `max_latency_ms` (sub-millisecond tails
//!   vary by several times from scheduling alone; a regression of one statement shows
//!   in its median first).
//!
//! Overall READY needs the overall figures to pass and no database to fail the error
//! rate or latency criteria (a small pool below `min_requests` does not block).
//!
//! **Confidence** is the posterior probability, given the observations, that the
//! error-rate and the latency criteria both hold for the mirror's true long-run
//! behaviour, treating the two as independent, each with a Jeffreys Beta(½, ½) prior:
//!
//! ```text
//! P_err = P(p ≤ max_error_rate)  with p ~ Beta(e + ½, s + ½)       = I_L(e + ½, s + ½)
//! P_lat = P(q ≥ 0.99)            with q ~ Beta(k + ½, n − k + ½)   = 1 − I_0.99(k + ½, n − k + ½)
//! confidence = 100 · P_err · P_lat
//! ```
//! where `e` errors and `s` successes were seen, `n` latency samples of which `k` are at
//! or below `max_latency_ms` (the true p99 is within the bound iff the fraction `q` of
//! requests under the bound is ≥ 99 %). Small samples score low because both
//! posteriors are wide; e.g. 0 errors in 10 requests gives about 24 %.
//! Errors the primary had too (same SQLSTATE) are not the mirror's: `e` counts the
//! mirror's own errors only. With comparison on, a third factor is the posterior
//! probability that the mismatch rate is within `max_mismatch_rate`; when that limit
//! is 0 the factor is 1 without mismatches and 0 with any.

use std::collections::HashMap;

use pgdog_plugin_api::{
    DatabaseReport, DatabaseStats, FingerprintStats, ReadinessCriteria, ReadinessReport,
    ReadinessVerdict, Reason, StatsSnapshot, Verdicts,
};
use pgdog_stats_math::{incomplete_beta, jeffreys_prob_at_most};

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

/// Where the checks report a failed criterion: as a [`Reason`] with its message (the
/// report), or only as the fact that one failed (the verdicts, which skip the texts).
/// Either way the same checks run, so the two cannot disagree.
trait Findings {
    fn fail(
        &mut self,
        criterion: &str,
        measured: f64,
        limit: f64,
        message: impl FnOnce() -> String,
    );
}

impl Findings for Vec<Reason> {
    fn fail(
        &mut self,
        criterion: &str,
        measured: f64,
        limit: f64,
        message: impl FnOnce() -> String,
    ) {
        self.push(Reason::new(criterion, measured, limit, message()));
    }
}

/// Whether any criterion failed.
#[derive(Default)]
struct AnyFailed(bool);

impl Findings for AnyFailed {
    fn fail(&mut self, _: &str, _: f64, _: f64, _: impl FnOnce() -> String) {
        self.0 = true;
    }
}

/// The latencies (µs) at which the policy reads a database's distribution: a snapshot
/// cut down to bounds that include these gives the same verdicts as the whole one.
pub fn latency_thresholds_us(criteria: &ReadinessCriteria) -> [u64; 1] {
    [latency_threshold_us(criteria)]
}

fn latency_threshold_us(criteria: &ReadinessCriteria) -> u64 {
    (criteria.max_latency_ms * 1000.0) as u64
}

/// The two factors of the confidence score, as probabilities in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    pub error_rate_ok: f64,
    pub latency_ok: f64,
    /// 1 when nothing was compared.
    pub mismatch_ok: f64,
}

impl Confidence {
    pub fn score(&self) -> f64 {
        100.0 * self.error_rate_ok * self.latency_ok * self.mismatch_ok
    }
}

/// See the module docs for the formula.
pub fn confidence(stats: &DatabaseStats, criteria: &ReadinessCriteria) -> Confidence {
    let c = &stats.counts;
    let error_rate_ok = if criteria.max_error_rate >= 1.0 {
        1.0
    } else {
        let own = c.mirror_errors();
        let fine = c.attempted() - own;
        jeffreys_prob_at_most(own, fine, criteria.max_error_rate.max(0.0))
    };
    let mismatch_ok = if c.compared == 0 || criteria.max_mismatch_rate >= 1.0 {
        1.0
    } else if criteria.max_mismatch_rate <= 0.0 {
        if c.mismatched == 0 {
            1.0
        } else {
            0.0
        }
    } else {
        jeffreys_prob_at_most(
            c.mismatched,
            c.compared - c.mismatched,
            criteria.max_mismatch_rate,
        )
    };
    let n = stats.mirror_latency.samples;
    let k = stats
        .mirror_latency
        .samples_at_or_below(latency_threshold_us(criteria))
        .min(n);
    let latency_ok = 1.0 - incomplete_beta(k as f64 + 0.5, (n - k) as f64 + 0.5, 0.99);
    Confidence {
        error_rate_ok,
        latency_ok,
        mismatch_ok,
    }
}

/// Judges one database (or the overall figures) against the criteria.
/// `fingerprints` are the ones of this database (all of them for the overall figures).
pub fn assess_database(
    stats: &DatabaseStats,
    fingerprints: &[&FingerprintStats],
    criteria: &ReadinessCriteria,
    now_unix_us: u64,
) -> DatabaseReport {
    let c = &stats.counts;
    let lat = &stats.mirror_latency;
    let window_secs = stats.window_secs(now_unix_us);
    let mut reasons = Vec::new();
    checks(stats, fingerprints, criteria, now_unix_us, &mut reasons);

    let conf = confidence(stats, criteria);
    let mut detail = format!(
        "P(error rate <= {:.2}%) = {:.1}% x P(p99 <= {}ms) = {:.1}%",
        criteria.max_error_rate * 100.0,
        conf.error_rate_ok * 100.0,
        criteria.max_latency_ms,
        conf.latency_ok * 100.0
    );
    if c.compared > 0 {
        detail.push_str(&format!(
            " x P(mismatch rate <= {:.2}%) = {:.1}%",
            criteria.max_mismatch_rate * 100.0,
            conf.mismatch_ok * 100.0
        ));
    }
    DatabaseReport {
        database: stats.database.clone(),
        ready: reasons.is_empty(),
        confidence: conf.score(),
        confidence_detail: detail.into(),
        error_rate: c.error_rate(),
        success_rate: c.success_rate(),
        total_requests: c.total,
        mirrored: c.mirrored,
        errors: c.errors,
        dropped: c.dropped,
        avg_latency_ms: lat.avg_ms,
        p99_latency_ms: lat.p99_ms,
        max_latency_ms: lat.max_ms,
        window_secs,
        compared: c.compared,
        mismatches: c.mismatched,
        mismatch_rate: c.mismatch_rate(),
        excluded: c.excluded,
        shared_errors: c.shared_errors,
        latency_ratio: latency_ratio(stats).unwrap_or(0.0),
        reasons: reasons.into(),
        extensions: Default::default(),
    }
}

/// Every criterion of one database (or of the overall figures), in the report's order.
fn checks(
    stats: &DatabaseStats,
    fingerprints: &[&FingerprintStats],
    criteria: &ReadinessCriteria,
    now_unix_us: u64,
    out: &mut impl Findings,
) {
    let c = &stats.counts;
    let attempted = c.attempted();
    if attempted < criteria.min_requests {
        out.fail(
            "min_requests",
            attempted as f64,
            criteria.min_requests as f64,
            || {
                let dropped = if c.dropped > 0 {
                    format!(" ({} dropped requests not counted)", c.dropped)
                } else {
                    String::new()
                };
                format!(
                    "Total requests {attempted} < minimum {}{dropped}",
                    criteria.min_requests
                )
            },
        );
    }
    let window_secs = stats.window_secs(now_unix_us);
    if window_secs < criteria.min_runtime_secs {
        let (measured, limit) = (window_secs / 3600.0, criteria.min_runtime_secs / 3600.0);
        out.fail("min_runtime", measured, limit, || {
            Reason::min_runtime(window_secs, criteria.min_runtime_secs)
                .message
                .into()
        });
    }
    quality_reasons(stats, criteria, out);
    comparison_reasons(stats, fingerprints, criteria, out);
    crate::replication::check(stats, criteria, |c, m, l, msg| out.fail(c, m, l, || msg));
}

/// Mirror p99 / primary p99, when both are known.
fn latency_ratio(stats: &DatabaseStats) -> Option<f64> {
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

/// Mismatches and latency regressions against the primary.
fn comparison_reasons(
    stats: &DatabaseStats,
    fingerprints: &[&FingerprintStats],
    criteria: &ReadinessCriteria,
    reasons: &mut impl Findings,
) {
    let c = &stats.counts;
    let rate = c.mismatch_rate();
    if c.compared > 0 && rate > criteria.max_mismatch_rate {
        reasons.fail(
            "max_mismatch_rate",
            rate,
            criteria.max_mismatch_rate,
            || {
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
                format!(
                    "Result mismatches {} of {} compared ({:.2}%) > maximum {:.2}%{}{}",
                    c.mismatched,
                    c.compared,
                    rate * 100.0,
                    criteria.max_mismatch_rate * 100.0,
                    if named.is_empty() { "" } else { "; worst: " },
                    named.join("; ")
                )
            },
        );
    }
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

/// The error-rate and latency criteria: the ones no database may fail.
fn quality_reasons(
    stats: &DatabaseStats,
    criteria: &ReadinessCriteria,
    reasons: &mut impl Findings,
) {
    let rate = stats.counts.error_rate();
    if rate > criteria.max_error_rate {
        reasons.fail("max_error_rate", rate, criteria.max_error_rate, || {
            format!(
                "Error rate {:.2}% > maximum {:.2}%",
                rate * 100.0,
                criteria.max_error_rate * 100.0
            )
        });
    }
    let c = &stats.counts;
    let dropped = c.drop_rate();
    if dropped > criteria.max_drop_rate {
        reasons.fail("max_drop_rate", dropped, criteria.max_drop_rate, || {
            format!(
                "Dropped {} of {} requests ({:.2}%) > maximum {:.2}%: the mirror fell behind (mirror_queue full)",
                c.dropped,
                c.total,
                dropped * 100.0,
                criteria.max_drop_rate * 100.0
            )
        });
    }
    let p99 = stats.mirror_latency.p99_ms;
    if p99 > criteria.max_latency_ms {
        reasons.fail("max_latency", p99, criteria.max_latency_ms, || {
            format!(
                "p99 latency {p99:.1}ms > maximum {}ms",
                criteria.max_latency_ms
            )
        });
    }
}

/// The criteria no database may fail for the overall verdict: error rate, drops,
/// latency, and (when the overall figures pass it) the mismatch rate.
fn blocking(db: &DatabaseStats, criteria: &ReadinessCriteria, out: &mut impl Findings) {
    quality_reasons(db, criteria, out);
    let no_ratio = ReadinessCriteria {
        max_latency_ratio: 0.0,
        ..criteria.clone()
    };
    comparison_reasons(db, &[], &no_ratio, out);
    crate::replication::check(db, criteria, |c, m, l, msg| out.fail(c, m, l, || msg));
}

/// The whole report: overall first, then each database.
pub fn assess(
    policy: &str,
    snapshot: &StatsSnapshot,
    criteria: &ReadinessCriteria,
) -> ReadinessReport {
    let now = snapshot.taken_at_unix_us;
    let all: Vec<&FingerprintStats> = snapshot.fingerprints.iter().collect();
    let of = |db: &DatabaseStats| -> Vec<&FingerprintStats> {
        all.iter()
            .copied()
            .filter(|f| f.database == db.database)
            .collect()
    };
    let mut overall = assess_database(&snapshot.overall, &all, criteria, now);
    let mut blocked = Vec::new();
    let already = overall
        .reasons
        .iter()
        .any(|r| r.criterion.as_str() == "max_mismatch_rate");
    for db in snapshot.databases.iter() {
        let mut found = Vec::new();
        blocking(db, criteria, &mut found);
        for r in found {
            if already && r.criterion.as_str() == "max_mismatch_rate" {
                continue;
            }
            blocked.push(Reason {
                message: format!("Database {}: {}", db.database, r.message).into(),
                ..r
            });
        }
    }
    if !blocked.is_empty() {
        overall.ready = false;
        overall.reasons.extend(blocked);
    }
    ReadinessReport {
        policy: policy.into(),
        overall,
        databases: snapshot
            .databases
            .iter()
            .map(|db| assess_database(db, &of(db), criteria, now))
            .collect(),
        extensions: Default::default(),
    }
}

/// What [`assess`] concludes, without its texts: ready and confidence, overall and per
/// database. The same checks run; fingerprints are grouped by database once instead
/// of filtered per database.
pub fn verdicts(snapshot: &StatsSnapshot, criteria: &ReadinessCriteria) -> Verdicts {
    let now = snapshot.taken_at_unix_us;
    let all: Vec<&FingerprintStats> = snapshot.fingerprints.iter().collect();
    let mut of: HashMap<&str, Vec<&FingerprintStats>> = HashMap::new();
    for &f in &all {
        of.entry(f.database.as_str()).or_default().push(f);
    }
    let verdict = |db: &DatabaseStats, fingerprints: &[&FingerprintStats]| {
        let mut failed = AnyFailed::default();
        checks(db, fingerprints, criteria, now, &mut failed);
        ReadinessVerdict {
            database: db.database.clone(),
            ready: !failed.0,
            confidence: confidence(db, criteria).score(),
            extensions: Default::default(),
        }
    };
    let mut overall = verdict(&snapshot.overall, &all);
    if overall.ready {
        overall.ready = snapshot.databases.iter().all(|db| {
            let mut failed = AnyFailed::default();
            blocking(db, criteria, &mut failed);
            !failed.0
        });
    }
    let none = Vec::new();
    Verdicts {
        overall,
        databases: snapshot
            .databases
            .iter()
            .map(|db| verdict(db, of.get(db.database.as_str()).unwrap_or(&none)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{error, ok};
    use crate::Stats;
    use pgdog_plugin_api::ErrorCategory;

    /// The overall reasons' messages.
    fn messages(report: &ReadinessReport) -> Vec<String> {
        report
            .overall
            .reasons
            .iter()
            .map(|r| r.message.to_string())
            .collect()
    }

    /// `ok_n` successes at 2 ms and `err_n` connection errors, on database "db".
    fn snapshot(ok_n: u64, err_n: u64) -> StatsSnapshot {
        let mut stats = Stats::new(3);
        let mut events: Vec<_> = (0..ok_n).map(|_| ok(0, 2_000)).collect();
        events.extend((0..err_n).map(|_| error(0, ErrorCategory::CONNECTION)));
        stats.consume_events(&["db"], &events);
        stats.snapshot()
    }

    fn criteria() -> ReadinessCriteria {
        ReadinessCriteria::default() // 5 %, 1000 ms, 100 requests, no min runtime
    }

    #[test]
    fn confidence_low_with_little_evidence() {
        let c = confidence(&snapshot(10, 0).overall, &criteria());
        assert!(c.score() < 30.0, "{c:?} {}", c.score());
    }

    #[test]
    fn confidence_high_with_much_evidence() {
        let c = confidence(&snapshot(10_000, 0).overall, &criteria());
        assert!(c.score() > 99.0, "{c:?} {}", c.score());
    }

    #[test]
    fn confidence_near_half_at_the_limit() {
        // 5 errors in 100 against a 5 % limit: the error-rate factor is a coin flip.
        let c = confidence(&snapshot(95, 5).overall, &criteria());
        assert!((0.40..=0.55).contains(&c.error_rate_ok), "{c:?}");
        // With ten times the traffic at the same rate, the latency factor reaches ~1 and
        // the score is the error-rate factor alone.
        let c = confidence(&snapshot(950, 50).overall, &criteria());
        assert!((45.0..=55.0).contains(&c.score()), "{c:?} {}", c.score());
    }

    #[test]
    fn spec_case_95_ok_5_errors() {
        let report = assess("mirror-stats", &snapshot(95, 5), &criteria());
        let rows = report.to_text_rows();
        assert!(rows.contains(&"Error Rate: 5.00%".to_string()), "{rows:?}");
        assert!(rows.contains(&"Success Rate: 95.00%".to_string()));
        assert!(rows.contains(&"Total Requests: 100".to_string()));
        // 5 % is within a 5 % limit.
        assert!(report.overall.ready, "{rows:?}");
        assert_eq!(rows[0], "Status: READY");
    }

    #[test]
    fn too_few_requests_is_not_ready_with_numbers() {
        let report = assess("mirror-stats", &snapshot(5, 0), &criteria());
        assert!(!report.overall.ready);
        let rows = report.to_text_rows();
        assert_eq!(rows[0], "Status: NOT READY");
        assert!(
            rows.contains(&"Reason: Total requests 5 < minimum 100".to_string()),
            "{rows:?}"
        );
    }

    #[test]
    fn every_failing_criterion_is_a_reason() {
        let mut stats = Stats::new(3);
        let mut events: Vec<_> = (0..150).map(|_| ok(0, 2_000_000)).collect(); // 2 s each
        events.extend((0..50).map(|_| error(0, ErrorCategory::QUERY)));
        stats.consume_events(&["db"], &events);
        let criteria = ReadinessCriteria {
            min_runtime_secs: 3600.0,
            ..criteria()
        };
        let report = assess("mirror-stats", &stats.snapshot(), &criteria);
        let names: Vec<_> = report
            .overall
            .reasons
            .iter()
            .map(|r| r.criterion.as_str())
            .collect();
        assert!(names.contains(&"min_runtime"), "{names:?}");
        assert!(names.contains(&"max_error_rate"));
        assert!(names.contains(&"max_latency"));
        let msgs = messages(&report);
        assert!(
            msgs.contains(&"Error rate 25.00% > maximum 5.00%".to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with("p99 latency 2")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("Database db: Error rate")),
            "{msgs:?}"
        );
        assert_eq!(report.databases.len(), 1);
        assert!(!report.databases[0].ready);
    }

    #[test]
    fn shared_errors_are_not_the_mirrors_and_mismatches_block() {
        use crate::testing::{compared, shared_error};
        let mut stats = Stats::new(3);
        let mut events: Vec<_> = (0..200).map(|_| compared(0, 1, 500, 500, false)).collect();
        events.extend((0..20).map(|_| shared_error(0, 2)));
        stats.consume_with_texts(&["db"], &events, |fp| {
            Some(if fp == 1 {
                "select a from t where id = ?"
            } else {
                "select * from gone"
            })
        });
        let snap = stats.snapshot();
        let c = snap.overall.counts;
        assert_eq!(
            (c.errors, c.shared_errors, c.mismatched, c.compared),
            (20, 20, 0, 220)
        );
        let report = assess("mirror-stats", &snap, &criteria());
        // 20 errors of 220, all shared: an error rate of 0, READY.
        assert_eq!(report.overall.error_rate, 0.0);
        assert!(report.overall.ready, "{:?}", report.overall.reasons);
        let rows = report.to_text_rows();
        assert!(
            rows.contains(&"Errors: 0 mirror only, 20 on both sides (not counted)".to_string()),
            "{rows:?}"
        );

        // Two rows that differ: NOT READY, the reason names the fingerprint.
        stats.consume_with_texts(
            &["db"],
            &[
                compared(0, 3, 500, 500, true),
                compared(0, 3, 500, 500, true),
            ],
            |_| Some("select b from u"),
        );
        let report = assess("mirror-stats", &stats.snapshot(), &criteria());
        assert!(!report.overall.ready);
        let reason = report
            .overall
            .reasons
            .iter()
            .find(|r| r.criterion.as_str() == "max_mismatch_rate")
            .expect("a mismatch reason");
        assert!(
            reason
                .message
                .contains("Result mismatches 2 of 222 compared"),
            "{}",
            reason.message
        );
        assert!(
            reason
                .message
                .contains("\"select b from u\" (2 of 2: same 3 rows, different contents)"),
            "{}",
            reason.message
        );
        assert_eq!(report.overall.confidence, 0.0);
        // A tolerated rate: READY again, with the mismatch factor in the confidence.
        let lenient = ReadinessCriteria {
            max_mismatch_rate: 0.05,
            ..criteria()
        };
        let report = assess("mirror-stats", &stats.snapshot(), &lenient);
        assert!(report.overall.ready, "{:?}", report.overall.reasons);
        assert!(
            report.overall.confidence > 90.0,
            "{}",
            report.overall.confidence
        );
    }

    #[test]
    fn latency_regressions_are_named_per_fingerprint() {
        use crate::testing::compared;
        let mut stats = Stats::new(3);
        // Fingerprint 7 is 40x slower on the mirror (8 ms against 0.2 ms); 8 is as fast.
        let mut events: Vec<_> = (0..30).map(|_| compared(0, 7, 8_000, 200, false)).collect();
        events.extend((0..300).map(|_| compared(0, 8, 210, 200, false)));
        // Slower by a ratio but by less than a millisecond: noise, not blamed.
        events.extend((0..30).map(|_| compared(0, 9, 600, 100, false)));
        stats.consume_with_texts(&["db"], &events, |fp| {
            Some(match fp {
                7 => "select pad from big where k = ?",
                8 => "select 1",
                _ => "select 2",
            })
        });
        let slow = |criteria: &ReadinessCriteria| -> Vec<String> {
            assess("mirror-stats", &stats.snapshot(), criteria)
                .overall
                .reasons
                .iter()
                .filter(|r| r.criterion.as_str() == "max_latency_ratio")
                .map(|r| r.message.to_string())
                .collect()
        };
        // The one fingerprint; the overall p99s differ by 7.8 ms, under the floor of
        // 10 % of the 1000 ms latency budget.
        let reasons = slow(&criteria());
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("\"select pad from big where k = ?\" is 39.7x slower on the mirror (median of 30 paired ratios"),
            "{reasons:?}"
        );
        // With a 50 ms budget (floor 5 ms) the overall p99 counts too.
        let tight = ReadinessCriteria {
            max_latency_ms: 50.0,
            ..criteria()
        };
        let reasons = slow(&tight);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with("Mirror p99 8.0ms is 40.0x"),
            "{reasons:?}"
        );
        // Too few samples: not judged yet.
        let mut few = Stats::new(3);
        few.consume_events(
            &["db"],
            &(0..10)
                .map(|_| compared(0, 7, 8_000, 200, false))
                .collect::<Vec<_>>(),
        );
        let report = assess("mirror-stats", &few.snapshot(), &criteria());
        assert!(report
            .overall
            .reasons
            .iter()
            .all(|r| r.criterion.as_str() != "max_latency_ratio"));
    }

    #[test]
    fn too_many_drops_is_not_ready() {
        use crate::testing::dropped;
        let mut stats = Stats::new(3);
        let mut events: Vec<_> = (0..990).map(|_| ok(0, 2_000)).collect();
        events.extend((0..10).map(|_| dropped(0)));
        stats.consume_events(&["db"], &events);
        // 1 % dropped: at the limit, READY.
        assert!(
            assess("mirror-stats", &stats.snapshot(), &criteria())
                .overall
                .ready
        );
        stats.consume_events(&["db"], &(0..20).map(|_| dropped(0)).collect::<Vec<_>>());
        let report = assess("mirror-stats", &stats.snapshot(), &criteria());
        assert!(!report.overall.ready);
        let msgs = messages(&report);
        assert!(
            msgs.contains(
                &"Dropped 30 of 1020 requests (2.94%) > maximum 1.00%: the mirror fell behind (mirror_queue full)"
                    .to_string()
            ),
            "{msgs:?}"
        );
    }

    /// The verdicts are the report's ready and confidence, whichever criteria fail.
    #[test]
    fn verdicts_agree_with_the_report() {
        use crate::testing::{compared, dropped, shared_error};
        let mut stats = Stats::new(3);
        let mut events: Vec<_> = (0..150).map(|_| ok(0, 2_000)).collect();
        events.extend((0..30).map(|_| error(1, ErrorCategory::QUERY)));
        events.extend((0..120).map(|_| ok(1, 2_000_000)));
        events.extend((0..40).map(|_| compared(2, 7, 8_000, 200, false)));
        events.extend((0..200).map(|_| compared(2, 8, 500, 500, false)));
        events.push(compared(3, 9, 500, 500, true));
        events.extend((0..150).map(|_| compared(3, 9, 500, 500, false)));
        events.extend((0..5).map(|_| shared_error(3, 10)));
        events.extend((0..50).map(|_| dropped(4)));
        events.extend((0..5).map(|_| ok(5, 900)));
        stats.consume_with_texts(&["a", "b", "c", "d", "e", "f"], &events, |_| {
            Some("select ?")
        });
        let snap = stats.snapshot();
        let mut some_ready = false;
        for criteria in [
            criteria(),
            ReadinessCriteria {
                max_mismatch_rate: 0.05,
                max_error_rate: 0.5,
                max_drop_rate: 1.0,
                max_latency_ms: 5_000.0,
                ..criteria()
            },
            ReadinessCriteria {
                min_runtime_secs: 3600.0,
                max_latency_ratio: 0.0,
                ..criteria()
            },
            ReadinessCriteria {
                min_requests: 1,
                max_error_rate: 1.0,
                max_mismatch_rate: 1.0,
                max_drop_rate: 1.0,
                max_latency_ms: 10_000.0,
                max_latency_ratio: 100.0,
                ..criteria()
            },
        ] {
            let report = assess("mirror-stats", &snap, &criteria);
            some_ready |= report.databases.iter().any(|d| d.ready);
            assert_eq!(
                verdicts(&snap, &criteria),
                Verdicts::of(&report),
                "{criteria:?}"
            );
        }
        assert!(some_ready);
    }
}
