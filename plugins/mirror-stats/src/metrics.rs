//! Metric points under the spec's names: one gauge family `mirror` with
//! `type`, `error_type`, `stat`, and `database` + `metric` labels.

use pgdog_plugin_api::{MetricPoint, StatsSnapshot};

const NAME: &str = "mirror";
const HELP: &str = "Query mirroring: requests, errors by type, latency (ms), per database";

pub fn metric_points(snapshot: &StatsSnapshot) -> Vec<MetricPoint> {
    let g = |labels: &[(&str, &str)], value: f64| MetricPoint::gauge(NAME, HELP, labels, value);
    let o = &snapshot.overall;
    let c = &o.counts;
    let mut points = vec![
        g(&[("type", "total")], c.total as f64),
        g(&[("type", "mirrored")], c.mirrored as f64),
        g(&[("type", "dropped")], c.dropped as f64),
        g(&[("type", "errors")], c.errors as f64),
    ];
    for (label, n) in c.by_category.labelled() {
        // `other` only appears once something uncategorised happened.
        if label != "other" || n > 0 {
            points.push(g(&[("error_type", label)], n as f64));
        }
    }
    let l = &o.mirror_latency;
    for (stat, v) in [
        ("avg_latency_ms", l.avg_ms),
        ("max_latency_ms", l.max_ms),
        ("p50_latency_ms", l.p50_ms),
        ("p95_latency_ms", l.p95_ms),
        ("p99_latency_ms", l.p99_ms),
        ("primary_avg_latency_ms", o.primary_latency.avg_ms),
        ("primary_p99_latency_ms", o.primary_latency.p99_ms),
    ] {
        points.push(g(&[("stat", stat)], v));
    }
    for db in snapshot.databases.iter() {
        let name = db.database.as_str();
        let c = &db.counts;
        let l = &db.mirror_latency;
        for (metric, v) in [
            ("total", c.total as f64),
            ("mirrored", c.mirrored as f64),
            ("dropped", c.dropped as f64),
            ("errors", c.errors as f64),
            ("avg_latency_ms", l.avg_ms),
            ("p99_latency_ms", l.p99_ms),
            ("max_latency_ms", l.max_ms),
        ] {
            points.push(g(&[("database", name), ("metric", metric)], v));
        }
        for (label, n) in c.by_category.labelled() {
            if label != "other" || n > 0 {
                points.push(g(&[("database", name), ("error_type", label)], n as f64));
            }
        }
    }
    points
}
