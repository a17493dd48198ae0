//! The readiness report as JSON, for `GET /readiness` (schema in `docs/metrics.md`).

use serde_json::{json, Value};

use crate::plugins::{DatabaseReport, Judgement, ReadinessReport};
use pgdog_plugin_api::{errors::read_classes, read_confidences, Coverage};

/// `{"status", "ready", "policy", "overall": {...}, "databases": [{...}], "shadows": [...]}`:
/// the verdict of record, and each shadow policy's verdict beside it.
pub fn judgement(judgement: &Judgement) -> Value {
    let mut value = report(&judgement.record);
    let shadows: Vec<Value> = judgement
        .shadows
        .iter()
        .map(|shadow| match &shadow.report {
            Ok(r) => json!({
                "name": shadow.name,
                "policy": r.policy.as_str(),
                "status": status(r.overall.ready),
                "ready": r.overall.ready,
                "confidence": r.overall.confidence,
                "agrees": shadow.agrees(&judgement.record),
                "databases": r.databases.iter().map(|d| json!({
                    "database": d.database.as_str(),
                    "status": status(d.ready),
                    "ready": d.ready,
                    "confidence": d.confidence,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => json!({
                "name": shadow.name,
                "status": "UNKNOWN",
                "agrees": false,
                "error": e.to_string(),
            }),
        })
        .collect();
    value["shadows"] = Value::Array(shadows);
    value["policies_disagree"] = Value::Bool(judgement.disagreement());
    value
}

/// `{"status", "ready", "policy", "overall": {...}, "databases": [{...}]}`.
pub fn report(report: &ReadinessReport) -> Value {
    json!({
        "status": status(report.overall.ready),
        "ready": report.overall.ready,
        "policy": report.policy.as_str(),
        "min_confidence": report.extensions.number("min_confidence"),
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
    let coverage = Coverage::read(&r.extensions).map(|c| {
        json!({
            "requests": c.requests,
            "seen_once": c.seen_once,
            "fingerprints": c.fingerprints,
            "untracked": c.untracked,
            "unseen_share": c.unseen_share(),
        })
    });
    json!({
        "database": r.database.as_str(),
        "status": status(r.ready),
        "ready": r.ready,
        "confidence": r.confidence,
        "confidence_detail": r.confidence_detail.as_str(),
        "criteria": read_confidences(&r.extensions).iter().map(|c| json!({
            "criterion": c.criterion,
            "confidence": c.confidence,
            "measured": c.text,
        })).collect::<Vec<_>>(),
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
        "coverage": coverage,
        "error_classes": read_classes(&r.extensions).iter().map(|c| json!({
            "class": c.class.as_str(),
            "count": c.count,
            "sqlstates": c.sqlstates.iter().map(|(code, n)| json!({"sqlstate": code, "count": n})).collect::<Vec<_>>(),
            "worst": c.worst.as_ref().map(|w| json!({
                "fingerprint": format!("{:016x}", w.fingerprint),
                "count": w.count,
                "query": w.text,
                "sqlstate": w.sqlstate,
            })),
        })).collect::<Vec<_>>(),
        "reasons": r.reasons.iter().map(|reason| json!({
            "criterion": reason.criterion.as_str(),
            "measured": reason.measured,
            "limit": reason.limit,
            "message": reason.message.as_str(),
        })).collect::<Vec<_>>(),
    })
}
