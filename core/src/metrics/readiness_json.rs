//! The readiness report as JSON, for `GET /readiness` (schema in `docs/metrics.md`).

use serde_json::{json, Value};

use crate::plugins::{DatabaseReport, ReadinessReport};

/// `{"status", "ready", "policy", "overall": {...}, "databases": [{...}]}`.
pub fn report(report: &ReadinessReport) -> Value {
    json!({
        "status": status(report.overall.ready),
        "ready": report.overall.ready,
        "policy": report.policy.as_str(),
        "overall": database(&report.overall),
        "databases": report.databases.iter().map(database).collect::<Vec<_>>(),
    })
}

/// No verdict could be had (no readiness plugin, or it failed).
pub fn unavailable(error: &str) -> Value {
    json!({ "status": "UNKNOWN", "ready": false, "error": error })
}

fn status(ready: bool) -> &'static str {
    if ready {
        "READY"
    } else {
        "NOT READY"
    }
}

fn database(r: &DatabaseReport) -> Value {
    json!({
        "database": r.database.as_str(),
        "status": status(r.ready),
        "ready": r.ready,
        "confidence": r.confidence,
        "confidence_detail": r.confidence_detail.as_str(),
        "error_rate": r.error_rate,
        "success_rate": r.success_rate,
        "total_requests": r.total_requests,
        "mirrored": r.mirrored,
        "errors": r.errors,
        "dropped": r.dropped,
        "avg_latency_ms": r.avg_latency_ms,
        "p99_latency_ms": r.p99_latency_ms,
        "max_latency_ms": r.max_latency_ms,
        "window_secs": r.window_secs,
        "reasons": r.reasons.iter().map(|reason| json!({
            "criterion": reason.criterion.as_str(),
            "measured": reason.measured,
            "limit": reason.limit,
            "message": reason.message.as_str(),
        })).collect::<Vec<_>>(),
    })
}
