//! Metric points under the spec's names: one gauge family `mirror`, with exactly the
//! label sets the spec's scripts grep for and nothing else:
//!
//! ```text
//! mirror{type="total|mirrored|dropped"}
//! mirror{error_type="connection|query|timeout|buffer_full|protocol"}
//! mirror{stat="avg_latency_ms|max_latency_ms"}       (recent window, see `window`)
//! mirror{database="<pool>",metric="mirrored|dropped|errors|total"}
//! ```
//!
//! Counts are whole numbers (they print as integers). Lifetime latency, quantiles and
//! per-database error categories are in the snapshot, which the host exports under its
//! own `pgdog_mirror_*` families; adding them here would put a second line under a
//! pattern like `error_type="connection"` and break `grep | awk` scripts.

use pgdog_plugin_api::{Counts, MetricPoint};

use crate::window::WindowStats;

pub const NAME: &str = "mirror";
const HELP: &str = "Query mirroring: requests, errors by type, recent latency (ms), per database";

/// The points, from the overall counts, the per-database counts (sorted by name) and
/// the recent-latency window.
pub fn metric_points<'a>(
    overall: &Counts,
    databases: impl IntoIterator<Item = (&'a str, &'a Counts)>,
    window: WindowStats,
) -> Vec<MetricPoint> {
    let g = |labels: &[(&str, &str)], value: f64| MetricPoint::gauge(NAME, HELP, labels, value);
    let c = overall;
    let e = &c.by_category;
    let mut points = vec![
        g(&[("type", "total")], c.total as f64),
        g(&[("type", "mirrored")], c.mirrored as f64),
        g(&[("type", "dropped")], c.dropped as f64),
        g(&[("error_type", "connection")], e.connection as f64),
        g(&[("error_type", "query")], e.query as f64),
        g(&[("error_type", "timeout")], e.timeout as f64),
        g(&[("error_type", "buffer_full")], e.buffer_full as f64),
        g(&[("error_type", "protocol")], e.protocol as f64),
        g(&[("stat", "avg_latency_ms")], window.avg_ms),
        g(&[("stat", "max_latency_ms")], window.max_ms),
    ];
    for (name, c) in databases {
        for (metric, v) in [
            ("mirrored", c.mirrored),
            ("dropped", c.dropped),
            ("errors", c.errors),
            ("total", c.total),
        ] {
            points.push(g(&[("database", name), ("metric", metric)], v as f64));
        }
    }
    points
}
