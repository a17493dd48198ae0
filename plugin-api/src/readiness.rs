//! Readiness criteria (in) and the readiness report (out).
//!
//! The report renders to the text rows `SHOW MIRROR READINESS` returns
//! ([`ReadinessReport::to_text_rows`]), so every policy reads the same way.
//!
//! Extension names (3.1.0):
//! * on [`ReadinessCriteria`]: `min_confidence` (`Number`, 0 to 1: the confidence each
//!   rate criterion must reach, `[general] mirror_min_confidence`) and `max_unseen`
//!   (`Number`, 0 to 1: the largest estimated share of traffic not yet mirrored,
//!   `mirror_max_unseen`); see [`ReadinessCriteria::min_confidence`];
//! * on [`DatabaseReport`] and [`crate::ReadinessVerdict`]: `confidence.<criterion>`
//!   (`Number`, 0 to 100) and `criterion.<criterion>` (`Text`, what was measured against
//!   what), one pair per rate criterion ([`CriterionConfidence`]); `<criterion>` is the
//!   name its [`Reason`]s use (`max_error_rate`, `max_latency`, ...);
//! * on [`DatabaseReport`]: the coverage counts of [`crate::coverage`] and the error
//!   classes of [`crate::errors`], when the policy copies them from the statistics.

use std::fmt::Write as _;

use crate::coverage::Coverage;
use crate::errors::read_classes;
use crate::{ExtensionValue, Extensions};
use abi_stable::{
    std_types::{RString, RVec, Tuple2},
    StableAbi,
};

/// The operator's limits, from `[general]` in `pgdog.toml`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ReadinessCriteria {
    /// Fraction, e.g. `0.05` for 5 %.
    pub max_error_rate: f64,
    /// Bound on the p99 mirror latency, in milliseconds.
    pub max_latency_ms: f64,
    pub min_requests: u64,
    /// Minimum observation window, in seconds.
    pub min_runtime_secs: f64,
    /// Largest fraction of compared requests whose answers may differ (0 by default:
    /// any difference in results blocks the cut-over).
    pub max_mismatch_rate: f64,
    /// Largest fraction of requests dropped (mirror queue full): a mirror that cannot keep
    /// up has not been tested on the whole workload.
    pub max_drop_rate: f64,
    /// Largest mirror/primary latency ratio: p99 against p99 overall, and the median of
    /// paired ratios per fingerprint with enough samples. 0 turns the check off.
    pub max_latency_ratio: f64,
    /// Free-form options for policies that need more (`key`, `value`).
    pub options: RVec<Tuple2<RString, RString>>,
    /// Fields added after 3.0.0 (see [`crate::extension`]): `min_confidence` and
    /// `max_unseen` (3.1.0, module docs); `max_replication_lag_ms` (number; absent or 0:
    /// no limit), the limit on the `replication.lag_ms.*` fields of a
    /// [`crate::DatabaseStats`].
    pub extensions: Extensions,
}

impl Default for ReadinessCriteria {
    /// The defaults of `[general]`: 5 %, 1000 ms, 100 requests, no minimum runtime, no
    /// mismatch, 1 % dropped, latency ratio 1.5.
    fn default() -> Self {
        Self {
            max_error_rate: 0.05,
            max_latency_ms: 1000.0,
            min_requests: 100,
            min_runtime_secs: 0.0,
            max_mismatch_rate: 0.0,
            max_drop_rate: 0.01,
            max_latency_ratio: 1.5,
            options: RVec::new(),
            extensions: Extensions::default(),
        }
    }
}

/// `min_confidence` in [`ReadinessCriteria::extensions`].
pub const MIN_CONFIDENCE: &str = "min_confidence";
/// `max_unseen` in [`ReadinessCriteria::extensions`].
pub const MAX_UNSEEN: &str = "max_unseen";

impl ReadinessCriteria {
    /// The confidence (0 to 1) each rate criterion must reach, when the host set one.
    pub fn min_confidence(&self) -> Option<f64> {
        self.extensions.number(MIN_CONFIDENCE)
    }

    /// The largest estimated share of traffic not yet mirrored, when the host set one.
    pub fn max_unseen(&self) -> Option<f64> {
        self.extensions.number(MAX_UNSEEN)
    }

    /// `self` with `min_confidence` and `max_unseen` set.
    pub fn with_confidence_and_coverage(mut self, min_confidence: f64, max_unseen: f64) -> Self {
        self.extensions
            .set(MIN_CONFIDENCE, ExtensionValue::Number(min_confidence));
        self.extensions
            .set(MAX_UNSEEN, ExtensionValue::Number(max_unseen));
        self
    }

    /// The value of a free-form option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|t| t.0.as_str() == key)
            .map(|t| t.1.as_str())
    }
}

/// One failing criterion, with the numbers.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Reason {
    /// Machine-readable name, e.g. `min_requests`, `max_error_rate`.
    pub criterion: RString,
    pub measured: f64,
    pub limit: f64,
    /// Human-readable, e.g. `Total requests 5 < minimum 100`.
    pub message: RString,
}

impl Reason {
    pub fn new(criterion: &str, measured: f64, limit: f64, message: String) -> Self {
        Self {
            criterion: criterion.into(),
            measured,
            limit,
            message: message.into(),
        }
    }

    /// The `min_runtime` reason, worded the same by every policy.
    pub fn min_runtime(window_secs: f64, min_secs: f64) -> Self {
        Self::new(
            "min_runtime",
            window_secs / 3600.0,
            min_secs / 3600.0,
            format!(
                "Observation window {:.2}h < minimum {:.2}h",
                window_secs / 3600.0,
                min_secs / 3600.0
            ),
        )
    }
}

/// The verdict for one database, or for all of them.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct DatabaseReport {
    /// Pool name; empty for the overall verdict.
    pub database: RString,
    pub ready: bool,
    /// 0 to 100.
    pub confidence: f64,
    /// How the confidence was obtained (shown under the score), may be empty.
    pub confidence_detail: RString,
    /// Fractions (0.05 = 5 %).
    pub error_rate: f64,
    pub success_rate: f64,
    pub total_requests: u64,
    pub mirrored: u64,
    pub errors: u64,
    pub dropped: u64,
    pub avg_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub max_latency_ms: f64,
    pub window_secs: f64,
    /// Result comparison: requests compared, of which mismatched; set aside.
    pub compared: u64,
    pub mismatches: u64,
    pub mismatch_rate: f64,
    pub excluded: u64,
    /// Query errors the primary had too (not counted in `error_rate`).
    pub shared_errors: u64,
    /// Mirror p99 / primary p99 (0 when either is unknown).
    pub latency_ratio: f64,
    /// Empty when ready.
    pub reasons: RVec<Reason>,
    /// Fields added after 3.0.0 (see [`crate::extension`]): criterion confidences,
    /// coverage and error classes (3.1.0, module docs); the `replication.*` fields of
    /// [`crate::DatabaseStats`], which pgdog copies here for the report to show them.
    pub extensions: Extensions,
}

/// One rate criterion's confidence (3.1.0), in a report's or a verdict's extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct CriterionConfidence {
    /// The criterion's name, as in [`Reason::criterion`] (`max_error_rate`).
    pub criterion: String,
    /// 0 to 100.
    pub confidence: f64,
    /// What was measured against what (`error rate 0.00% (0 of 300), maximum 5.00%`);
    /// may be empty (verdicts carry none).
    pub text: String,
}

/// Writes `confidences` into `ext` (`confidence.<criterion>`, and `criterion.<criterion>`
/// when there is a text).
pub fn write_confidences(ext: &mut Extensions, confidences: &[CriterionConfidence]) {
    for c in confidences {
        ext.set(
            &format!("confidence.{}", c.criterion),
            ExtensionValue::Number(c.confidence),
        );
        if !c.text.is_empty() {
            ext.set(
                &format!("criterion.{}", c.criterion),
                ExtensionValue::Text(c.text.as_str().into()),
            );
        }
    }
}

/// The criterion confidences in `ext`, in the order they were written.
pub fn read_confidences(ext: &Extensions) -> Vec<CriterionConfidence> {
    ext.fields
        .iter()
        .filter_map(|f| {
            let criterion = f.name.as_str().strip_prefix("confidence.")?;
            let confidence = ext.number(f.name.as_str())?;
            Some(CriterionConfidence {
                criterion: criterion.to_string(),
                confidence,
                text: ext
                    .text(&format!("criterion.{criterion}"))
                    .unwrap_or("")
                    .to_string(),
            })
        })
        .collect()
}

/// A policy's verdict.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ReadinessReport {
    /// Name of the policy (plugin) that judged.
    pub policy: RString,
    pub overall: DatabaseReport,
    pub databases: RVec<DatabaseReport>,
    /// Fields added after 3.0.0 (see [`crate::extension`]). None yet.
    pub extensions: Extensions,
}

impl ReadinessReport {
    /// One text row per line: the overall verdict first, then each database.
    ///
    /// ```text
    /// Status: NOT READY
    /// Confidence Score: 7.3%
    /// ...
    /// Reason: Total requests 5 < minimum 100
    /// Database: primary
    /// primary Status: NOT READY
    /// ```
    pub fn to_text_rows(&self) -> Vec<String> {
        let mut rows = Vec::with_capacity(16 * (1 + self.databases.len()));
        render(&self.overall, "", &mut rows);
        rows.push(format!("Policy: {}", self.policy));
        for db in self.databases.iter() {
            rows.push(format!("Database: {}", db.database));
            let prefix = format!("{} ", db.database);
            render(db, &prefix, &mut rows);
        }
        rows
    }
}

fn render(r: &DatabaseReport, prefix: &str, rows: &mut Vec<String>) {
    let status = if r.ready { "READY" } else { "NOT READY" };
    rows.push(format!("{prefix}Status: {status}"));
    rows.push(format!("{prefix}Confidence Score: {:.1}%", r.confidence));
    if !r.confidence_detail.is_empty() {
        rows.push(format!(
            "{prefix}Confidence Detail: {}",
            r.confidence_detail
        ));
    }
    for c in read_confidences(&r.extensions) {
        let text = if c.text.is_empty() {
            c.criterion.clone()
        } else {
            c.text
        };
        rows.push(format!(
            "{prefix}Criterion: {text}: confidence {:.1}%",
            c.confidence
        ));
    }
    rows.push(format!("{prefix}Error Rate: {:.2}%", r.error_rate * 100.0));
    rows.push(format!(
        "{prefix}Success Rate: {:.2}%",
        r.success_rate * 100.0
    ));
    rows.push(format!("{prefix}Total Requests: {}", r.total_requests));
    rows.push(format!(
        "{prefix}Mirrored: {}, Errors: {}, Dropped: {}",
        r.mirrored, r.errors, r.dropped
    ));
    rows.push(format!(
        "{prefix}Latency: avg {:.2}ms, p99 {:.2}ms, max {:.2}ms",
        r.avg_latency_ms, r.p99_latency_ms, r.max_latency_ms
    ));
    if r.shared_errors > 0 {
        rows.push(format!(
            "{prefix}Errors: {} mirror only, {} on both sides (not counted)",
            r.errors.saturating_sub(r.shared_errors),
            r.shared_errors
        ));
    }
    if r.compared + r.excluded > 0 {
        rows.push(format!(
            "{prefix}Result Mismatches: {} of {} compared ({:.2}%), {} excluded",
            r.mismatches,
            r.compared,
            r.mismatch_rate * 100.0,
            r.excluded
        ));
    }
    if r.latency_ratio > 0.0 {
        rows.push(format!(
            "{prefix}Latency Ratio: mirror p99 / primary p99 = {:.2}",
            r.latency_ratio
        ));
    }
    if let Some(coverage) = Coverage::read(&r.extensions) {
        rows.push(format!("{prefix}Coverage: {}", coverage.describe()));
    }
    let classes = read_classes(&r.extensions);
    if !classes.is_empty() {
        let described: Vec<String> = classes.iter().map(|c| c.describe()).collect();
        rows.push(format!(
            "{prefix}Mirror Errors by Class: {}",
            described.join("; ")
        ));
    }
    if let Some(row) = replication_row(&r.extensions) {
        rows.push(format!("{prefix}{row}"));
    }
    rows.push(format!(
        "{prefix}Observation Window: {}",
        format_window(r.window_secs)
    ));
    for reason in r.reasons.iter() {
        rows.push(format!("{prefix}Reason: {}", reason.message));
    }
}

/// `Replication: logical, streaming; lag p50 ..., p99 ..., max ... (p99 N bytes); ...`
/// from a report's `replication.*` extension fields (pgdog adds them for a mirror kept
/// in sync by replication), `None` without them.
fn replication_row(e: &Extensions) -> Option<String> {
    let status = e.text("replication.status")?;
    let mode = e.text("replication.mode").unwrap_or("replication");
    let n = |name: &str| e.number(name).unwrap_or(0.0);
    let mut row = format!("Replication: {mode}, {status}");
    if let Some(problem) = e.text("replication.problem") {
        row.push_str(&format!(" ({problem})"));
    }
    row.push_str(&format!(
        "; lag p50 {:.1}ms, p99 {:.1}ms, max {:.1}ms (p99 {} bytes)",
        n("replication.lag_ms.p50"),
        n("replication.lag_ms.p99"),
        n("replication.lag_ms.max"),
        n("replication.lag_bytes.p99") as u64,
    ));
    if let (Some(synced), Some(lagging)) = (
        e.count("replication.reads.synced"),
        e.count("replication.reads.lagging"),
    ) {
        row.push_str(&format!(
            "; reads waited p50 {:.1}ms, {synced} in sync, {lagging} lagging",
            n("replication.delay_ms.p50")
        ));
    }
    Some(row)
}

/// `1h 02m 03s (1.03h)`.
pub fn format_window(secs: f64) -> String {
    let total = secs.max(0.0) as u64;
    let mut out = String::new();
    let _ = write!(
        out,
        "{}h {:02}m {:02}s ({:.2}h)",
        total / 3600,
        (total % 3600) / 60,
        total % 60,
        secs / 3600.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spec_rows() {
        let report = ReadinessReport {
            policy: "mirror-stats".into(),
            overall: DatabaseReport {
                ready: false,
                confidence: 87.54,
                error_rate: 0.05,
                success_rate: 0.95,
                total_requests: 100,
                mirrored: 95,
                errors: 5,
                window_secs: 3723.0,
                reasons: vec![Reason::new(
                    "min_requests",
                    5.0,
                    100.0,
                    "Total requests 5 < minimum 100".into(),
                )]
                .into(),
                ..Default::default()
            },
            databases: vec![DatabaseReport {
                database: "primary".into(),
                ready: true,
                ..Default::default()
            }]
            .into(),
            extensions: Default::default(),
        };
        let rows = report.to_text_rows();
        assert_eq!(rows[0], "Status: NOT READY");
        assert!(rows.contains(&"Confidence Score: 87.5%".to_string()));
        assert!(rows.contains(&"Error Rate: 5.00%".to_string()));
        assert!(rows.contains(&"Success Rate: 95.00%".to_string()));
        assert!(rows.contains(&"Total Requests: 100".to_string()));
        assert!(rows.contains(&"Observation Window: 1h 02m 03s (1.03h)".to_string()));
        assert!(rows.contains(&"Reason: Total requests 5 < minimum 100".to_string()));
        assert!(rows.contains(&"Database: primary".to_string()));
        assert!(rows.contains(&"primary Status: READY".to_string()));
    }

    #[test]
    fn renders_criterion_confidences_coverage_and_classes() {
        use crate::errors::{write_classes, ClassErrors, ErrorClass};
        let mut overall = DatabaseReport {
            confidence: 90.3,
            ..Default::default()
        };
        write_confidences(
            &mut overall.extensions,
            &[
                CriterionConfidence {
                    criterion: "max_error_rate".into(),
                    confidence: 99.99,
                    text: "error rate 0.00% (0 of 300), maximum 5.00%".into(),
                },
                CriterionConfidence {
                    criterion: "max_latency".into(),
                    confidence: 90.3,
                    text: String::new(),
                },
            ],
        );
        Coverage {
            requests: 300,
            seen_once: 3,
            fingerprints: 5,
            untracked: 0,
        }
        .write(&mut overall.extensions);
        write_classes(
            &mut overall.extensions,
            &[ClassErrors {
                class: ErrorClass::Data,
                count: 2,
                worst: None,
                sqlstates: vec![("22012".into(), 2)],
            }],
        );
        let confidences = read_confidences(&overall.extensions);
        assert_eq!(confidences.len(), 2);
        assert_eq!(confidences[1].criterion, "max_latency");
        let report = ReadinessReport {
            overall,
            ..Default::default()
        };
        let rows = report.to_text_rows();
        for want in [
            "Criterion: error rate 0.00% (0 of 300), maximum 5.00%: confidence 100.0%",
            "Criterion: max_latency: confidence 90.3%",
            "Coverage: an estimated 1.00% of traffic is statements not yet mirrored (3 seen once in 300 requests)",
            "Mirror Errors by Class: data 2 (22012 division by zero 2)",
        ] {
            assert!(rows.contains(&want.to_string()), "{want}: {rows:#?}");
        }
        let criteria = ReadinessCriteria::default().with_confidence_and_coverage(0.95, 0.01);
        assert_eq!(criteria.min_confidence(), Some(0.95));
        assert_eq!(criteria.max_unseen(), Some(0.01));
        assert_eq!(ReadinessCriteria::default().min_confidence(), None);
    }
}
