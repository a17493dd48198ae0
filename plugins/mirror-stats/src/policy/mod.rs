//! The default readiness policy: READY only with stated, anytime-valid confidence.
//!
//! A database is READY when all of these hold (each failure is a [`Reason`] with numbers):
//! * requests the mirror executed (`mirrored + errors`) ≥ `min_requests` (drops never
//!   reached the mirror, so they are no evidence) and an observation window (first event
//!   to now) ≥ `min_runtime`;
//! * each **rate criterion** ([`rates`]: error rate, the share of latencies over
//!   `max_latency_ms` against the 1 % a p99 allows, drop rate, and mismatch rate once
//!   answers were compared) is within its limit with a confidence of at least
//!   `min_confidence` (default 95 %). The confidence is anytime-valid: however often the
//!   verdict is read, the chance that a rate truly at or over its limit is ever shown
//!   within it is at most `1 − min_confidence`. A limit of 0 is a hard rule;
//! * no **deterministic error** ([`workload`]): a schema-drift or permission error the
//!   mirror has and the primary has not blocks on its own;
//! * **coverage**: the Good-Turing estimate of the share of traffic that is statements the
//!   mirror has not run yet is at most `max_unseen` (default 1 %), when measured;
//! * **latency ratio** ([`comparison`]): mirror p99 / primary p99 and each fingerprint's
//!   median paired ratio ≤ `max_latency_ratio`, above noise floors.
//!
//! Overall READY needs the overall figures to pass, and no database whose own figures
//! are over a limit (observed rate over it, or a deterministic error): a small database
//! still short of evidence does not hold the others back.
//!
//! The **confidence score** is the smallest of the rate criteria's confidences: the one
//! that holds READY back. Formulas: `pgdog_stats_math::anytime` and `docs/plugins.md`.

mod comparison;
pub mod rates;
mod workload;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use pgdog_plugin_api::{
    errors::{read_classes, write_classes},
    write_confidences, Coverage, CriterionConfidence, DatabaseReport, DatabaseStats,
    ExtensionValue, FingerprintStats, ReadinessCriteria, ReadinessReport, ReadinessVerdict, Reason,
    StatsSnapshot, Verdicts,
};

pub use comparison::{name_fingerprint, MIN_PAIRED, P99_FLOOR_SHARE, RATIO_FLOOR_MS};
pub use rates::{min_confidence, rate_criteria, Rate, DEFAULT_MIN_CONFIDENCE};
pub use workload::DEFAULT_MAX_UNSEEN;

/// Where the checks report a failed criterion: as a [`Reason`] with its message (the
/// report), or only as the fact that one failed (the verdicts, which skip the texts).
/// Either way the same checks run, so the two cannot disagree.
pub trait Findings {
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

/// The confidence score, 0 to 100: the smallest rate criterion's confidence.
pub fn confidence(stats: &DatabaseStats, criteria: &ReadinessCriteria) -> f64 {
    100.0 * rates::smallest(&rate_criteria(stats, criteria))
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
    let mut reasons = Vec::new();
    checks(stats, fingerprints, criteria, now_unix_us, &mut reasons);
    let rates = rate_criteria(stats, criteria);
    let mut extensions = Default::default();
    let confidences: Vec<CriterionConfidence> = rates
        .iter()
        .map(|r| CriterionConfidence {
            criterion: r.criterion.to_string(),
            confidence: 100.0 * r.confidence,
            text: r.describe(stats, criteria),
        })
        .collect();
    write_confidences(&mut extensions, &confidences);
    if let Some(coverage) = Coverage::read(&stats.extensions) {
        coverage.write(&mut extensions);
    }
    write_classes(&mut extensions, &read_classes(&stats.extensions));
    DatabaseReport {
        database: stats.database.clone(),
        ready: reasons.is_empty(),
        confidence: 100.0 * rates::smallest(&rates),
        confidence_detail: format!(
            "the smallest criterion confidence below; anytime-valid, READY needs each at least {:.1}%",
            100.0 * min_confidence(criteria)
        )
        .into(),
        error_rate: c.error_rate(),
        success_rate: c.success_rate(),
        total_requests: c.total,
        mirrored: c.mirrored,
        errors: c.errors,
        dropped: c.dropped,
        avg_latency_ms: lat.avg_ms,
        p99_latency_ms: lat.p99_ms,
        max_latency_ms: lat.max_ms,
        window_secs: stats.window_secs(now_unix_us),
        compared: c.compared,
        mismatches: c.mismatched,
        mismatch_rate: c.mismatch_rate(),
        excluded: c.excluded,
        shared_errors: c.shared_errors,
        latency_ratio: comparison::latency_ratio(stats).unwrap_or(0.0),
        reasons: reasons.into(),
        extensions,
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
    rates::reasons(stats, fingerprints, criteria, out);
    workload::reasons(stats, criteria, out);
    comparison::ratio_reasons(stats, fingerprints, criteria, out);
    crate::replication::check(stats, criteria, |c, m, l, msg| out.fail(c, m, l, || msg));
}

/// What one database's figures hold against the overall verdict: rates observed over
/// their limit, and deterministic errors.
fn blocking(db: &DatabaseStats, criteria: &ReadinessCriteria, out: &mut impl Findings) {
    rates::over_limit(db, criteria, out);
    workload::deterministic(db, out);
    crate::replication::check(db, criteria, |c, m, l, msg| out.fail(c, m, l, || msg));
}

/// Criteria whose overall reason already covers every database (the overall figures
/// hold every database's mismatches and classed errors): not repeated per database.
const COVERED_OVERALL: [&str; 3] = ["max_mismatch_rate", "schema_drift", "permissions"];

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
    for db in snapshot.databases.iter() {
        let mut found = Vec::new();
        blocking(db, criteria, &mut found);
        for r in found {
            let covered = COVERED_OVERALL.contains(&r.criterion.as_str())
                && overall.reasons.iter().any(|o| o.criterion == r.criterion);
            if covered {
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
    let mut extensions = pgdog_plugin_api::Extensions::default();
    extensions.set(
        "min_confidence",
        ExtensionValue::Number(min_confidence(criteria)),
    );
    ReadinessReport {
        policy: policy.into(),
        overall,
        databases: snapshot
            .databases
            .iter()
            .map(|db| assess_database(db, &of(db), criteria, now))
            .collect(),
        extensions,
    }
}

/// What [`assess`] concludes, without its texts: ready and confidence (and each rate
/// criterion's confidence), overall and per database. The same checks run;
/// fingerprints are grouped by database once instead of filtered per database.
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
        let rates = rate_criteria(db, criteria);
        let mut extensions = Default::default();
        let confidences: Vec<CriterionConfidence> = rates
            .iter()
            .map(|r| CriterionConfidence {
                criterion: r.criterion.to_string(),
                confidence: 100.0 * r.confidence,
                text: String::new(),
            })
            .collect();
        write_confidences(&mut extensions, &confidences);
        ReadinessVerdict {
            database: db.database.clone(),
            ready: !failed.0,
            confidence: 100.0 * rates::smallest(&rates),
            extensions,
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
