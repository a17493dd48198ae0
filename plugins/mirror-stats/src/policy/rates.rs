//! The rate criteria and their anytime-valid confidence.
//!
//! Four criteria are rates of bad outcomes among trials, judged by the same statistic
//! (`pgdog_stats_math::anytime`, formula in `docs/plugins.md`):
//!
//! | criterion | bad | trials | limit |
//! |---|---|---|---|
//! | `max_error_rate` | the mirror's own errors | requests it executed | `mirror_max_error_rate` |
//! | `max_latency` | latency samples over `mirror_max_latency_ms` | latency samples | 1 % (a p99) |
//! | `max_drop_rate` | dropped requests | requests offered | `mirror_max_drop_rate` |
//! | `max_mismatch_rate` | mismatched answers | answers compared | `mirror_max_mismatch_rate` |
//!
//! A criterion holds when its confidence reaches `min_confidence` (default 95 %). A limit
//! of 0 is a hard rule (any bad outcome fails it); a limit of 1 or more is no criterion.
//! The mismatch criterion applies once answers were compared.

use pgdog_plugin_api::{DatabaseStats, FingerprintStats, ReadinessCriteria};
use pgdog_stats_math::anytime::{confidence_within, trials_needed};

use super::{comparison, latency_threshold_us, Findings};

/// The confidence each rate criterion must reach when the host does not say
/// (`[general] mirror_min_confidence`'s default).
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.95;

/// The share of requests a p99 may leave over its bound.
pub const P99_TAIL: f64 = 0.01;

/// One rate criterion of one database, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// As in the reasons: `max_error_rate`, `max_latency`, `max_drop_rate`,
    /// `max_mismatch_rate`.
    pub criterion: &'static str,
    pub bad: u64,
    pub trials: u64,
    /// The largest acceptable share of bad outcomes.
    pub limit: f64,
    /// 0 to 1.
    pub confidence: f64,
}

impl Rate {
    fn new(criterion: &'static str, bad: u64, trials: u64, limit: f64) -> Self {
        Self {
            criterion,
            bad,
            trials,
            limit,
            confidence: confidence_within(bad, trials, limit),
        }
    }

    /// `bad / trials` (0 before any trial).
    pub fn observed(&self) -> f64 {
        match self.trials {
            0 => 0.0,
            n => self.bad as f64 / n as f64,
        }
    }

    /// What was measured against what, for the report's `Criterion:` rows.
    pub fn describe(&self, stats: &DatabaseStats, criteria: &ReadinessCriteria) -> String {
        let pct = |v: f64| format!("{:.2}%", v * 100.0);
        match self.criterion {
            "max_error_rate" => format!(
                "error rate {} ({} of {} executed), maximum {}",
                pct(self.observed()),
                self.bad,
                self.trials,
                pct(self.limit)
            ),
            "max_latency" => format!(
                "p99 latency {:.1}ms ({} of {} over {}ms), maximum {}ms",
                stats.mirror_latency.p99_ms,
                self.bad,
                self.trials,
                criteria.max_latency_ms,
                criteria.max_latency_ms
            ),
            "max_drop_rate" => format!(
                "drop rate {} ({} of {} offered), maximum {}",
                pct(self.observed()),
                self.bad,
                self.trials,
                pct(self.limit)
            ),
            _ => format!(
                "mismatch rate {} ({} of {} compared), maximum {}{}",
                pct(self.observed()),
                self.bad,
                self.trials,
                pct(self.limit),
                if self.limit <= 0.0 {
                    " (any blocks)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The confidence every rate criterion must reach under `criteria`.
pub fn min_confidence(criteria: &ReadinessCriteria) -> f64 {
    criteria
        .min_confidence()
        .filter(|c| (0.0..1.0).contains(c))
        .unwrap_or(DEFAULT_MIN_CONFIDENCE)
}

/// The rate criteria that apply to `stats` under `criteria`, in the report's order.
pub fn rate_criteria(stats: &DatabaseStats, criteria: &ReadinessCriteria) -> Vec<Rate> {
    let c = &stats.counts;
    let mut rates = Vec::with_capacity(4);
    if criteria.max_error_rate < 1.0 {
        rates.push(Rate::new(
            "max_error_rate",
            c.mirror_errors(),
            c.attempted(),
            criteria.max_error_rate,
        ));
    }
    if criteria.max_latency_ms > 0.0 {
        let n = stats.mirror_latency.samples;
        let within = stats
            .mirror_latency
            .samples_at_or_below(latency_threshold_us(criteria))
            .min(n);
        rates.push(Rate::new("max_latency", n - within, n, P99_TAIL));
    }
    if criteria.max_drop_rate < 1.0 {
        rates.push(Rate::new(
            "max_drop_rate",
            c.dropped,
            c.total,
            criteria.max_drop_rate,
        ));
    }
    if c.compared > 0 && criteria.max_mismatch_rate < 1.0 {
        rates.push(Rate::new(
            "max_mismatch_rate",
            c.mismatched,
            c.compared,
            criteria.max_mismatch_rate,
        ));
    }
    rates
}

/// The smallest confidence of `rates`, 0 to 1 (1 when no criterion applies).
pub fn smallest(rates: &[Rate]) -> f64 {
    rates.iter().map(|r| r.confidence).fold(1.0, f64::min)
}

/// Whether the observed value is over the limit (rather than merely not shown within).
fn over(rate: &Rate, stats: &DatabaseStats, criteria: &ReadinessCriteria) -> bool {
    match rate.criterion {
        "max_latency" => stats.mirror_latency.p99_ms > criteria.max_latency_ms,
        _ => rate.observed() > rate.limit,
    }
}

/// The measured value and limit a reason reports (the p99 against its bound, in ms;
/// a rate against its limit otherwise).
fn measured(rate: &Rate, stats: &DatabaseStats, criteria: &ReadinessCriteria) -> (f64, f64) {
    match rate.criterion {
        "max_latency" => (stats.mirror_latency.p99_ms, criteria.max_latency_ms),
        _ => (rate.observed(), rate.limit),
    }
}

/// A reason for each rate criterion short of `min_confidence`.
pub fn reasons(
    stats: &DatabaseStats,
    fingerprints: &[&FingerprintStats],
    criteria: &ReadinessCriteria,
    out: &mut impl Findings,
) {
    let required = min_confidence(criteria);
    for rate in rate_criteria(stats, criteria) {
        if rate.confidence >= required {
            continue;
        }
        let (value, limit) = measured(&rate, stats, criteria);
        out.fail(rate.criterion, value, limit, || {
            message(&rate, stats, fingerprints, criteria, required)
        });
    }
}

/// Only the criteria whose observed value is over the limit: what one database's
/// figures hold against the overall verdict (a small database short of evidence does
/// not block the others).
pub fn over_limit(stats: &DatabaseStats, criteria: &ReadinessCriteria, out: &mut impl Findings) {
    let required = min_confidence(criteria);
    for rate in rate_criteria(stats, criteria) {
        if over(&rate, stats, criteria) && rate.confidence < required {
            let (value, limit) = measured(&rate, stats, criteria);
            out.fail(rate.criterion, value, limit, || {
                message(&rate, stats, &[], criteria, required)
            });
        }
    }
}

fn message(
    rate: &Rate,
    stats: &DatabaseStats,
    fingerprints: &[&FingerprintStats],
    criteria: &ReadinessCriteria,
    required: f64,
) -> String {
    let c = &stats.counts;
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let over = over(rate, stats, criteria);
    // Over the limit the confidence is shown as it is (0 %); merely not shown within
    // it, with what is required and what more traffic at this rate would do.
    let confidence = if rate.limit <= 0.0 {
        String::new()
    } else if over {
        format!(" (confidence {:.1}%)", rate.confidence * 100.0)
    } else {
        format!(
            " (confidence {:.1}% < {:.1}% required{})",
            rate.confidence * 100.0,
            required * 100.0,
            outlook(rate, required)
        )
    };
    let mut text = match (rate.criterion, over) {
        ("max_error_rate", true) => format!(
            "Error rate {} > maximum {}{confidence}",
            pct(rate.observed()),
            pct(rate.limit)
        ),
        ("max_error_rate", false) => format!(
            "Error rate {} ({} of {} executed) is not shown to be within the maximum {}{confidence}",
            pct(rate.observed()),
            rate.bad,
            rate.trials,
            pct(rate.limit)
        ),
        ("max_latency", true) => format!(
            "p99 latency {:.1}ms > maximum {}ms{confidence}",
            stats.mirror_latency.p99_ms, criteria.max_latency_ms
        ),
        ("max_latency", false) => format!(
            "p99 latency {:.1}ms ({} of {} requests over {}ms) is not shown to be within the maximum {}ms{confidence}",
            stats.mirror_latency.p99_ms,
            rate.bad,
            rate.trials,
            criteria.max_latency_ms,
            criteria.max_latency_ms
        ),
        ("max_drop_rate", true) => format!(
            "Dropped {} of {} requests ({}) > maximum {}{confidence}: {}",
            c.dropped,
            c.total,
            pct(rate.observed()),
            pct(rate.limit),
            drop_causes(c)
        ),
        ("max_drop_rate", false) => format!(
            "Dropped {} of {} requests ({}), not shown to be within the maximum {}{confidence}",
            c.dropped,
            c.total,
            pct(rate.observed()),
            pct(rate.limit)
        ),
        (_, over) => {
            let named = comparison::worst_mismatches(fingerprints);
            let verb = if over { ">" } else { "not shown to be within" };
            format!(
                "Result mismatches {} of {} compared ({}) {verb} maximum {}{confidence}{}{}",
                c.mismatched,
                c.compared,
                pct(rate.observed()),
                pct(rate.limit),
                if named.is_empty() { "" } else { "; worst: " },
                named
            )
        }
    };
    if rate.criterion == "max_error_rate" {
        let breakdown = super::workload::error_breakdown(stats);
        if !breakdown.is_empty() {
            text.push_str("; mirror errors: ");
            text.push_str(&breakdown);
        }
    }
    text
}

/// `; about 80 more at this rate` or `; never at this rate`.
fn outlook(rate: &Rate, required: f64) -> String {
    match trials_needed(rate.bad, rate.trials, rate.limit, required) {
        Some(n) if n > rate.trials => format!(
            "; about {} more {} at this rate would show it",
            n - rate.trials,
            match rate.criterion {
                "max_mismatch_rate" => "compared answers",
                _ => "requests",
            }
        ),
        Some(_) => String::new(),
        None => "; at this rate no amount of traffic will".to_string(),
    }
}

/// Why requests were dropped, from what the counts tell apart: a full `mirror_queue`
/// (the mirror fell behind), or the rest (the proxy's mirror pool had no free connection,
/// or pgdog was shutting down).
fn drop_causes(c: &pgdog_plugin_api::Counts) -> String {
    let queue_full = c.by_category.buffer_full.min(c.dropped);
    let rest = c.dropped - queue_full;
    match (queue_full, rest) {
        (_, 0) => "the mirror fell behind (mirror_queue full)".to_string(),
        (0, _) => "not for a full mirror_queue: the mirror pool had no free connection (its pool_size), or pgdog was shutting down".to_string(),
        (q, r) => format!(
            "{q} as the mirror fell behind (mirror_queue full), {r} as the mirror pool had no free connection (its pool_size) or pgdog was shutting down"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdog_plugin_api::{Counts, LatencyBucket, LatencySummary};

    fn stats(errors: u64, mirrored: u64, over_bound: u64) -> DatabaseStats {
        DatabaseStats {
            counts: Counts {
                total: errors + mirrored,
                mirrored,
                errors,
                ..Counts::default()
            },
            mirror_latency: LatencySummary {
                samples: mirrored,
                p99_ms: 2.0,
                buckets: vec![
                    LatencyBucket {
                        le_us: 2_000,
                        count: mirrored - over_bound,
                    },
                    LatencyBucket {
                        le_us: 5_000_000,
                        count: over_bound,
                    },
                ]
                .into(),
                ..LatencySummary::default()
            },
            ..DatabaseStats::default()
        }
    }

    #[test]
    fn the_four_rates_and_their_inputs() {
        let criteria = ReadinessCriteria {
            max_mismatch_rate: 0.001,
            ..ReadinessCriteria::default()
        };
        let mut s = stats(3, 997, 4);
        s.counts.compared = 500;
        s.counts.mismatched = 1;
        let rates = rate_criteria(&s, &criteria);
        let inputs: Vec<_> = rates
            .iter()
            .map(|r| (r.criterion, r.bad, r.trials, r.limit))
            .collect();
        assert_eq!(
            inputs,
            [
                ("max_error_rate", 3, 1000, 0.05),
                ("max_latency", 4, 997, 0.01),
                ("max_drop_rate", 0, 1000, 0.01),
                ("max_mismatch_rate", 1, 500, 0.001),
            ]
        );
        assert!(rates[0].confidence > 0.99);
        // No comparison, no mismatch criterion; limits of 1 are no criterion.
        let lax = ReadinessCriteria {
            max_error_rate: 1.0,
            max_drop_rate: 1.0,
            ..ReadinessCriteria::default()
        };
        let names: Vec<_> = rate_criteria(&stats(0, 10, 0), &lax)
            .iter()
            .map(|r| r.criterion)
            .collect();
        assert_eq!(names, ["max_latency"]);
    }

    #[test]
    fn reasons_say_over_or_not_shown_with_the_confidence() {
        let criteria = ReadinessCriteria::default();
        let mut found: Vec<pgdog_plugin_api::Reason> = Vec::new();
        reasons(&stats(5, 95, 0), &[], &criteria, &mut found);
        let error = &found[0];
        assert_eq!(error.criterion.as_str(), "max_error_rate");
        assert_eq!(
            error.message.as_str(),
            "Error rate 5.00% (5 of 100 executed) is not shown to be within the maximum 5.00% \
             (confidence 0.0% < 95.0% required; at this rate no amount of traffic will)"
        );
        let mut found: Vec<pgdog_plugin_api::Reason> = Vec::new();
        reasons(&stats(0, 300, 0), &[], &criteria, &mut found);
        let names: Vec<_> = found.iter().map(|r| r.criterion.as_str()).collect();
        // 300 offered requests cannot show a 1 % drop rate either.
        assert_eq!(names, ["max_latency", "max_drop_rate"], "{found:?}");
        assert!(
            found[0].message.starts_with(
                "p99 latency 2.0ms (0 of 300 requests over 1000ms) is not shown to be within the maximum 1000ms (confidence 90."
            ),
            "{}",
            found[0].message
        );
        assert!(found[0]
            .message
            .contains("more requests at this rate would show it"));
        let mut found: Vec<pgdog_plugin_api::Reason> = Vec::new();
        reasons(&stats(20, 80, 0), &[], &criteria, &mut found);
        assert!(found[0]
            .message
            .starts_with("Error rate 20.00% > maximum 5.00% (confidence 0.0%"));
    }
}
