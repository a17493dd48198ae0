//! The default readiness policy and its confidence score.
//!
//! A database is READY when all of these hold (each failure is a [`Reason`] with numbers):
//! * requests the mirror executed (`mirrored + errors`) ≥ `min_requests`
//!   (dropped requests never reached the mirror, so they are no evidence);
//! * observation window (first event to now) ≥ `min_runtime`;
//! * error rate `errors / (mirrored + errors)` ≤ `max_error_rate`;
//! * p99 mirror latency ≤ `max_latency_ms` (p99, not the mean: the tail is what users
//!   feel after the cut-over, and the max is one outlier).
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

use pgdog_plugin_api::{
    math::{incomplete_beta, jeffreys_prob_at_most},
    DatabaseReport, DatabaseStats, ReadinessCriteria, ReadinessReport, Reason, StatsSnapshot,
};

/// The two factors of the confidence score, as probabilities in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    pub error_rate_ok: f64,
    pub latency_ok: f64,
}

impl Confidence {
    pub fn score(&self) -> f64 {
        100.0 * self.error_rate_ok * self.latency_ok
    }
}

/// See the module docs for the formula.
pub fn confidence(stats: &DatabaseStats, criteria: &ReadinessCriteria) -> Confidence {
    let c = &stats.counts;
    let error_rate_ok = if criteria.max_error_rate >= 1.0 {
        1.0
    } else {
        jeffreys_prob_at_most(c.errors, c.mirrored, criteria.max_error_rate.max(0.0))
    };
    let n = stats.mirror_latency.samples;
    let k = stats
        .mirror_latency
        .samples_at_or_below((criteria.max_latency_ms * 1000.0) as u64)
        .min(n);
    let latency_ok = 1.0 - incomplete_beta(k as f64 + 0.5, (n - k) as f64 + 0.5, 0.99);
    Confidence {
        error_rate_ok,
        latency_ok,
    }
}

/// Judges one database (or the overall figures) against the criteria.
pub fn assess_database(
    stats: &DatabaseStats,
    criteria: &ReadinessCriteria,
    now_unix_us: u64,
) -> DatabaseReport {
    let c = &stats.counts;
    let lat = &stats.mirror_latency;
    let window_secs = stats.window_secs(now_unix_us);
    let mut reasons = Vec::new();

    let attempted = c.attempted();
    if attempted < criteria.min_requests {
        let dropped = if c.dropped > 0 {
            format!(" ({} dropped requests not counted)", c.dropped)
        } else {
            String::new()
        };
        reasons.push(Reason::new(
            "min_requests",
            attempted as f64,
            criteria.min_requests as f64,
            format!(
                "Total requests {attempted} < minimum {}{dropped}",
                criteria.min_requests
            ),
        ));
    }
    if window_secs < criteria.min_runtime_secs {
        reasons.push(Reason::min_runtime(window_secs, criteria.min_runtime_secs));
    }
    reasons.extend(quality_reasons(stats, criteria));

    let conf = confidence(stats, criteria);
    DatabaseReport {
        database: stats.database.clone(),
        ready: reasons.is_empty(),
        confidence: conf.score(),
        confidence_detail: format!(
            "P(error rate <= {:.2}%) = {:.1}% x P(p99 <= {}ms) = {:.1}%",
            criteria.max_error_rate * 100.0,
            conf.error_rate_ok * 100.0,
            criteria.max_latency_ms,
            conf.latency_ok * 100.0
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
        window_secs,
        reasons: reasons.into(),
    }
}

/// The error-rate and latency criteria: the ones no database may fail.
fn quality_reasons(stats: &DatabaseStats, criteria: &ReadinessCriteria) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let rate = stats.counts.error_rate();
    if rate > criteria.max_error_rate {
        reasons.push(Reason::new(
            "max_error_rate",
            rate,
            criteria.max_error_rate,
            format!(
                "Error rate {:.2}% > maximum {:.2}%",
                rate * 100.0,
                criteria.max_error_rate * 100.0
            ),
        ));
    }
    let p99 = stats.mirror_latency.p99_ms;
    if p99 > criteria.max_latency_ms {
        reasons.push(Reason::new(
            "max_latency",
            p99,
            criteria.max_latency_ms,
            format!(
                "p99 latency {p99:.1}ms > maximum {}ms",
                criteria.max_latency_ms
            ),
        ));
    }
    reasons
}

/// The whole report: overall first, then each database.
pub fn assess(
    policy: &str,
    snapshot: &StatsSnapshot,
    criteria: &ReadinessCriteria,
) -> ReadinessReport {
    let now = snapshot.taken_at_unix_us;
    let mut overall = assess_database(&snapshot.overall, criteria, now);
    let mut blocking = Vec::new();
    for db in snapshot.databases.iter() {
        for r in quality_reasons(db, criteria) {
            blocking.push(Reason {
                message: format!("Database {}: {}", db.database, r.message).into(),
                ..r
            });
        }
    }
    if !blocking.is_empty() {
        overall.ready = false;
        overall.reasons.extend(blocking);
    }
    ReadinessReport {
        policy: policy.into(),
        overall,
        databases: snapshot
            .databases
            .iter()
            .map(|db| assess_database(db, criteria, now))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{error, ok};
    use crate::Stats;
    use pgdog_plugin_api::ErrorCategory;

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
        let msgs: Vec<_> = report
            .overall
            .reasons
            .iter()
            .map(|r| r.message.to_string())
            .collect();
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
}
