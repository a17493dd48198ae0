//! The families that let the readiness policy be rebuilt from counters alone (plugin API
//! 3.1 figures), so that `pgdog readiness --prometheus` can judge a fleet of proxies from
//! Prometheus' sums (`docs/metrics.md`, "Fleet readiness").
//!
//! Each is observed only for the databases whose statistics carry its figures: answers
//! compared (comparison on for that database), the 3.1 extension fields (error classes,
//! coverage), a first event, per-criterion confidences. A stats plugin without them, or a
//! database without comparison, adds no series (Prometheus' sums then read them as 0).
//! The latency bound itself is a bucket edge of `pgdog_mirror_latency_seconds`
//! (`histogram.rs`).

use opentelemetry::metrics::AsyncInstrument;
use opentelemetry::KeyValue;

use super::sample::Sample;
use crate::plugins::{DatabaseStats, ReadinessVerdict};
use pgdog_plugin_api::{read_confidences, Coverage, ErrorClass};

type Observe = fn(&Sample, &dyn AsyncInstrument<f64>);

pub const GAUGES: &[(&str, &str, Observe)] = &[
    (
        "pgdog_mirror_criterion_confidence",
        "Readiness policy's anytime-valid confidence that a rate criterion holds, 0 to 1 (criterion: max_error_rate, max_latency, max_drop_rate, max_mismatch_rate)",
        |s, o| {
            for (v, db) in verdicts(s) {
                for c in read_confidences(&v.extensions) {
                    let criterion = KeyValue::new("criterion", c.criterion);
                    o.observe(c.confidence / 100.0, &[db.clone(), criterion]);
                }
            }
        },
    ),
    (
        "pgdog_mirror_statements_seen_once",
        "Statements (fingerprints) the mirror ran exactly once, plus requests whose fingerprint was not tracked: the Good-Turing numerator of coverage",
        |s, o| {
            for (d, db) in databases(s) {
                if let Some(c) = Coverage::read(&d.extensions) {
                    o.observe((c.seen_once + c.untracked) as f64, std::slice::from_ref(db));
                }
            }
        },
    ),
    (
        "pgdog_mirror_first_event_timestamp_seconds",
        "Unix time of the first mirrored request counted (since start or RESET MIRROR STATS)",
        |s, o| {
            for (d, db) in databases(s) {
                if let Some(us) = d.first_event_unix_us.into_option() {
                    o.observe(us as f64 / 1e6, std::slice::from_ref(db));
                }
            }
        },
    ),
];

pub const COUNTERS: &[(&str, &str, Observe)] = &[
    (
        "pgdog_mirror_compared_total",
        "Mirror answers compared with the primary's: per request, or per statement of a request of several (databases with comparison on)",
        |s, o| {
            for (d, db) in compared(s) {
                o.observe(d.counts.compared as f64, std::slice::from_ref(db));
            }
        },
    ),
    (
        "pgdog_mirror_shared_errors_total",
        "Query errors the primary had too, with the same SQLSTATE: counted as errors, not held against the mirror (databases with comparison on)",
        |s, o| {
            for (d, db) in compared(s) {
                o.observe(d.counts.shared_errors as f64, std::slice::from_ref(db));
            }
        },
    ),
    (
        "pgdog_mirror_error_classes_total",
        "The mirror's own query errors by SQLSTATE class (schema_drift, permissions, capacity, concurrency, data, configuration, other)",
        |s, o| {
            for (d, db) in databases(s) {
                for class in ErrorClass::ALL {
                    let name = format!("errors.class.{}", class.as_str());
                    if let Some(n) = d.extensions.count(&name) {
                        let label = KeyValue::new("class", class.as_str());
                        o.observe(n as f64, &[db.clone(), label]);
                    }
                }
            }
        },
    ),
    (
        "pgdog_mirror_statement_requests_total",
        "Requests the mirror executed with a statement fingerprint: the Good-Turing denominator of coverage",
        |s, o| {
            for (d, db) in databases(s) {
                if let Some(c) = Coverage::read(&d.extensions) {
                    o.observe(c.requests as f64, std::slice::from_ref(db));
                }
            }
        },
    ),
];

/// Each database of the snapshot with its label, when mirror metrics are on.
fn databases(s: &Sample) -> impl Iterator<Item = (&DatabaseStats, &KeyValue)> {
    s.snapshot
        .as_ref()
        .filter(|_| s.mirror_enabled)
        .into_iter()
        .flat_map(|(snap, labels)| snap.databases.iter().zip(labels))
}

/// The databases whose answers are compared.
fn compared(s: &Sample) -> impl Iterator<Item = (&DatabaseStats, &KeyValue)> {
    databases(s).filter(|(d, _)| d.counts.compared + d.counts.excluded > 0)
}

/// Each database's verdict with its label, when mirror metrics are on.
fn verdicts(s: &Sample) -> impl Iterator<Item = (&ReadinessVerdict, &KeyValue)> {
    s.verdicts
        .as_ref()
        .filter(|_| s.mirror_enabled)
        .into_iter()
        .flat_map(|(v, labels)| v.databases.iter().zip(labels))
}
