//! What kind of errors the mirror makes, and how much of the workload it has seen:
//! deterministic error classes (schema drift, permissions) block on their own, and the
//! Good-Turing estimate of traffic not yet mirrored must stay under `max_unseen`.

use pgdog_plugin_api::{errors::read_classes, Coverage, DatabaseStats, ReadinessCriteria};

use super::Findings;

/// `[general] mirror_max_unseen`'s default, when the host does not say: at most an
/// estimated 1 % of traffic may be statements the mirror has not run yet, the same share
/// of untested traffic `mirror_max_drop_rate` tolerates.
pub const DEFAULT_MAX_UNSEEN: f64 = 0.01;

/// Both checks.
pub fn reasons(stats: &DatabaseStats, criteria: &ReadinessCriteria, out: &mut impl Findings) {
    deterministic(stats, out);
    coverage(stats, criteria, out);
}

/// A reason per deterministic class with errors: a statement that fails with schema
/// drift or a missing grant on the mirror, and not on the primary, fails for every
/// caller after the cut-over, whatever the overall error rate.
pub fn deterministic(stats: &DatabaseStats, out: &mut impl Findings) {
    for class in read_classes(&stats.extensions) {
        if !class.class.deterministic() {
            continue;
        }
        out.fail(class.class.as_str(), class.count as f64, 0.0, || {
            let what = match class.class.as_str() {
                "permissions" => "Permission errors on the mirror",
                _ => "Schema drift on the mirror",
            };
            format!(
                "{what}: {}: these statements fail on the mirror and not on the primary, so they would fail for every caller (any such error blocks)",
                class.describe()
            )
        });
    }
}

/// The coverage criterion, when the statistics measure it.
pub fn coverage(stats: &DatabaseStats, criteria: &ReadinessCriteria, out: &mut impl Findings) {
    let Some(coverage) = Coverage::read(&stats.extensions) else {
        return;
    };
    let max = criteria
        .max_unseen()
        .filter(|m| (0.0..=1.0).contains(m))
        .unwrap_or(DEFAULT_MAX_UNSEEN);
    let share = coverage.unseen_share();
    if coverage.requests > 0 && share > max {
        out.fail("max_unseen", share, max, || {
            format!(
                "Coverage: {} > maximum {:.2}%",
                coverage.describe(),
                max * 100.0
            )
        });
    }
}

/// The mirror's own errors, by class for query errors and by category for the rest:
/// `data 3 (22012 division by zero 3; worst …); connection 2`. Empty without errors.
pub fn error_breakdown(stats: &DatabaseStats) -> String {
    let mut parts: Vec<String> = read_classes(&stats.extensions)
        .iter()
        .map(|c| c.describe())
        .collect();
    let e = &stats.counts.by_category;
    for (name, n) in [
        ("connection", e.connection),
        ("timeout", e.timeout),
        ("protocol", e.protocol),
        ("other", e.other),
    ] {
        if n > 0 {
            parts.push(format!("{name} {n}"));
        }
    }
    parts.join("; ")
}
