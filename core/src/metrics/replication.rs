//! pgdog's own families of mirrors that mirror only some transactions
//! (`mirror_statements`) or gate reads on the replication position (`mirror_sync`):
//! proxy state, observed from [`Sample::mirrors`] as it is at collection time.

use opentelemetry::metrics::AsyncInstrument;
use opentelemetry::KeyValue;

use super::sample::{MirrorSample, Sample};
use crate::mirror::sync::window::Summary;

type Observe = fn(&Sample, &dyn AsyncInstrument<f64>);

pub const GAUGES: &[(&str, &str, Observe)] = &[
    (
        "pgdog_mirror_replication_lag_ms",
        "Replication lag of a mirror kept in sync by replication, ms, over the stats window (stat: p50, p99, max; current: age of the oldest primary position not yet applied)",
        |s, o| {
            gates(s, o, |g, o, db| {
                summary(o, db, &g.lag_ms);
                o.observe(g.current_lag_ms, &[db.clone(), stat("current")]);
            })
        },
    ),
    (
        "pgdog_mirror_replication_lag_bytes",
        "Replication lag of a mirror kept in sync by replication, WAL bytes, over the stats window (stat: p50, p99, max)",
        |s, o| gates(s, o, |g, o, db| summary(o, db, &g.lag_bytes)),
    ),
    (
        "pgdog_mirror_replication_up",
        "1 while the replication position can be read and replication runs, else 0 (SHOW MIRROR READINESS names the cause)",
        |s, o| {
            gates(s, o, |g, o, db| {
                let up = g.health == crate::mirror::sync::Health::Streaming;
                o.observe(if up { 1.0 } else { 0.0 }, std::slice::from_ref(db));
            })
        },
    ),
    (
        "pgdog_mirror_sync_delay_ms",
        "Time mirrored reads waited for the mirror to apply what the primary had when it answered, ms, over the stats window (stat: p50, p99, max)",
        |s, o| gates(s, o, |g, o, db| summary(o, db, &g.delay_ms)),
    ),
];

pub const COUNTERS: &[(&str, &str, Observe)] = &[
    (
        "pgdog_mirror_skipped_total",
        "Requests not mirrored because of mirror_statements, by reason (write, read, write detected); not counted in pgdog_mirror_requests_total",
        |s, o| {
            for m in mirrors(s) {
                for (reason, n) in &m.skipped {
                    o.observe(*n as f64, &[m.label.clone(), KeyValue::new("reason", *reason)]);
                }
            }
        },
    ),
    (
        "pgdog_mirror_sync_reads_total",
        "Mirrored reads by how their wait ended (synced: the mirror caught up; lagging: mirror_max_lag_ms passed, comparison set aside)",
        |s, o| {
            gates(s, o, |g, o, db| {
                for (result, n) in [("synced", g.synced), ("lagging", g.lagging)] {
                    o.observe(n as f64, &[db.clone(), KeyValue::new("result", result)]);
                }
            })
        },
    ),
    (
        "pgdog_mirror_sync_rechecks_total",
        "Gated reads whose answers differed, by what a second look found (equal: set aside as rechecked; differed: the mismatch stands; unavailable: no second look, the mismatch stands)",
        |s, o| {
            gates(s, o, |g, o, db| {
                for (result, n) in [
                    ("equal", g.rechecks[0]),
                    ("differed", g.rechecks[1]),
                    ("unavailable", g.rechecks[2]),
                ] {
                    o.observe(n as f64, &[db.clone(), KeyValue::new("result", result)]);
                }
            })
        },
    ),
    (
        "pgdog_mirror_sync_queries_total",
        "Queries the replication gate sent to read positions, by server (primary, mirror)",
        |s, o| {
            gates(s, o, |g, o, db| {
                for (server, n) in [("primary", g.queries[0]), ("mirror", g.queries[1])] {
                    o.observe(n as f64, &[db.clone(), KeyValue::new("server", server)]);
                }
            })
        },
    ),
];

fn mirrors(s: &Sample) -> impl Iterator<Item = &MirrorSample> {
    s.mirrors.iter().filter(|_| s.mirror_enabled)
}

/// `f(report, instrument, database label)` per gate.
fn gates(
    s: &Sample,
    o: &dyn AsyncInstrument<f64>,
    f: impl Fn(&crate::mirror::sync::Report, &dyn AsyncInstrument<f64>, &KeyValue),
) {
    for m in mirrors(s) {
        if let Some(report) = &m.sync {
            f(report, o, &m.label);
        }
    }
}

fn stat(name: &'static str) -> KeyValue {
    KeyValue::new("stat", name)
}

fn summary(o: &dyn AsyncInstrument<f64>, db: &KeyValue, s: &Summary) {
    for (name, v) in [("p50", s.p50), ("p99", s.p99), ("max", s.max)] {
        o.observe(v, &[db.clone(), stat(name)]);
    }
}
