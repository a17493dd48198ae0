//! Readiness of a mirror kept in sync by replication (`mirror_sync`): a criterion of its
//! own, read from the `replication.*` fields pgdog adds to a database's statistics (see
//! `pgdog_plugin_api::DatabaseStats::extensions`). A database without them is not judged
//! here.
//!
//! * Replication must run: a stopped subscription or standby (slot inactive or gone,
//!   replay paused, no WAL receiver) or a position that cannot be read is a reason,
//!   with its cause.
//! * `max_replication_lag_ms` (criteria extension, 0 or absent: no limit): the lag's p99
//!   over the stats window, or the age of the oldest position not yet applied if that is
//!   larger (it grows while replication is stopped), must be within it.

use pgdog_plugin_api::{DatabaseStats, ReadinessCriteria};

/// Calls `fail(criterion, measured, limit, message)` for each replication criterion
/// `stats` fails.
pub fn check(
    stats: &DatabaseStats,
    criteria: &ReadinessCriteria,
    mut fail: impl FnMut(&str, f64, f64, String),
) {
    let e = &stats.extensions;
    let Some(status) = e.text("replication.status") else {
        return;
    };
    if matches!(status, "stopped" | "unreadable") {
        let problem = e.text("replication.problem").unwrap_or(status);
        fail("replication", 0.0, 1.0, capitalised(problem));
    }
    let limit = criteria
        .extensions
        .number("max_replication_lag_ms")
        .unwrap_or(0.0);
    let p99 = e.number("replication.lag_ms.p99").unwrap_or(0.0);
    let current = e.number("replication.lag_ms.current").unwrap_or(0.0);
    let lag = p99.max(current);
    if limit > 0.0 && lag > limit {
        fail(
            "max_replication_lag_ms",
            lag,
            limit,
            format!(
                "Replication lag {lag:.0}ms > maximum {limit:.0}ms (p99 {p99:.0}ms over the window, oldest position not applied {current:.0}ms ago)"
            ),
        );
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgdog_plugin_api::{ExtensionValue, Extensions};

    fn stats(fields: &[(&str, ExtensionValue)]) -> DatabaseStats {
        let mut extensions = Extensions::default();
        for (name, value) in fields {
            extensions.set(name, value.clone());
        }
        DatabaseStats {
            database: "app".into(),
            extensions,
            ..DatabaseStats::default()
        }
    }

    fn reasons(stats: &DatabaseStats, limit: f64) -> Vec<(String, String)> {
        let mut criteria = ReadinessCriteria::default();
        criteria
            .extensions
            .set("max_replication_lag_ms", ExtensionValue::Number(limit));
        let mut out = Vec::new();
        check(stats, &criteria, |c, _, _, m| out.push((c.to_string(), m)));
        out
    }

    #[test]
    fn without_replication_fields_nothing_is_judged() {
        assert!(reasons(&stats(&[]), 1.0).is_empty());
    }

    #[test]
    fn a_stopped_replication_is_a_reason_with_its_cause() {
        let s = stats(&[
            ("replication.status", ExtensionValue::Text("stopped".into())),
            (
                "replication.problem",
                ExtensionValue::Text("replication stopped: slot \"s\" is not active".into()),
            ),
            ("replication.lag_ms.current", ExtensionValue::Number(4000.0)),
        ]);
        let r = reasons(&s, 1000.0);
        assert_eq!(r[0].0, "replication");
        assert_eq!(r[0].1, "Replication stopped: slot \"s\" is not active");
        assert_eq!(r[1].0, "max_replication_lag_ms");
        assert!(
            r[1].1
                .starts_with("Replication lag 4000ms > maximum 1000ms"),
            "{}",
            r[1].1
        );
    }

    #[test]
    fn lag_within_the_limit_passes_and_zero_turns_it_off() {
        let s = stats(&[
            (
                "replication.status",
                ExtensionValue::Text("streaming".into()),
            ),
            ("replication.lag_ms.p99", ExtensionValue::Number(1500.0)),
        ]);
        assert!(reasons(&s, 2000.0).is_empty());
        assert_eq!(reasons(&s, 1000.0).len(), 1);
        assert!(reasons(&s, 0.0).is_empty());
    }
}
