//! The observable instruments and their callbacks. Each callback locks the current
//! [`Scrape`] for a moment and observes its share of it; nothing is computed here
//! beyond picking fields.

use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableCounter, ObservableGauge};
use opentelemetry::KeyValue;

use super::scrape::{database, PoolSample, Scrape};

/// Handles of every registered instrument (registration lasts as long as they do).
pub struct Instruments {
    _gauges: Vec<ObservableGauge<f64>>,
    _counters: Vec<ObservableCounter<f64>>,
}

type Current = Arc<Mutex<Scrape>>;

fn lock(current: &Current) -> MutexGuard<'_, Scrape> {
    current.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn register(
    meter: &Meter,
    current: &Current,
    plugin_families: &[(String, String, bool)],
) -> Instruments {
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    let gauge =
        |name: &'static str, help: &'static str, f: fn(&Scrape, &dyn AsyncInstrument<f64>)| {
            let current = current.clone();
            meter
                .f64_observable_gauge(name)
                .with_description(help)
                .with_callback(move |o| f(&lock(&current), o))
                .build()
        };
    let counter =
        |name: &'static str, help: &'static str, f: fn(&Scrape, &dyn AsyncInstrument<f64>)| {
            let current = current.clone();
            meter
                .f64_observable_counter(name)
                .with_description(help)
                .with_callback(move |o| f(&lock(&current), o))
                .build()
        };

    // The plugins' families: the spec's `mirror` gauge, and whatever else plugins add.
    for (name, help, is_counter) in plugin_families {
        let family = name.clone();
        let current = current.clone();
        let observe = move |o: &dyn AsyncInstrument<f64>| {
            let scrape = lock(&current);
            if !scrape.mirror_enabled {
                return;
            }
            for p in scrape.points.iter().filter(|p| p.name.as_str() == family) {
                let labels: Vec<KeyValue> = p
                    .labels
                    .iter()
                    .map(|t| KeyValue::new(t.0.to_string(), t.1.to_string()))
                    .collect();
                o.observe(p.value, &labels);
            }
        };
        if *is_counter {
            counters.push(
                meter
                    .f64_observable_counter(name.clone())
                    .with_description(help.clone())
                    .with_callback(observe)
                    .build(),
            );
        } else {
            gauges.push(
                meter
                    .f64_observable_gauge(name.clone())
                    .with_description(help.clone())
                    .with_callback(observe)
                    .build(),
            );
        }
    }

    // Mirror, idiomatic.
    counters.push(counter(
        "pgdog_mirror_requests_total",
        "Requests the proxy tried to mirror, by outcome (mirrored, error, dropped)",
        |s, o| {
            for (db, c) in mirror_databases(s) {
                for (outcome, n) in [
                    ("mirrored", c.mirrored),
                    ("error", c.errors),
                    ("dropped", c.dropped),
                ] {
                    o.observe(n as f64, &[db.clone(), KeyValue::new("outcome", outcome)]);
                }
            }
        },
    ));
    counters.push(counter(
        "pgdog_mirror_errors_total",
        "Mirror failures by category (queue-full drops are in pgdog_mirror_requests_total{outcome=\"dropped\"})",
        |s, o| {
            for (db, c) in mirror_databases(s) {
                let e = &c.by_category;
                for (category, n) in [
                    ("connection", e.connection),
                    ("query", e.query),
                    ("timeout", e.timeout),
                    ("protocol", e.protocol),
                    ("other", e.other),
                ] {
                    o.observe(n as f64, &[db.clone(), KeyValue::new("category", category)]);
                }
            }
        },
    ));
    counters.push(counter(
        "pgdog_mirror_mismatches_total",
        "Mirrored requests whose answer differed from the primary's (result comparison; per fingerprint in SHOW MIRROR QUERIES)",
        |s, o| {
            for (db, c) in mirror_databases(s) {
                o.observe(c.mismatched as f64, std::slice::from_ref(&db));
            }
        },
    ));
    gauges.push(gauge(
        "pgdog_mirror_queue_depth",
        "Requests waiting in the mirror queues of a source pool's sessions",
        |s, o| {
            if s.mirror_enabled {
                for (db, depth) in &s.queues {
                    o.observe(*depth as f64, std::slice::from_ref(db));
                }
            }
        },
    ));
    gauges.push(gauge(
        "pgdog_mirror_ready",
        "1 when the readiness policy judges the database ready to take over, else 0",
        |s, o| {
            for r in readiness(s) {
                o.observe(if r.ready { 1.0 } else { 0.0 }, &[database(&r.database)]);
            }
        },
    ));
    gauges.push(gauge(
        "pgdog_mirror_readiness_confidence",
        "Readiness policy's confidence that the database meets the criteria, 0 to 1",
        |s, o| {
            for r in readiness(s) {
                o.observe(r.confidence / 100.0, &[database(&r.database)]);
            }
        },
    ));

    // The proxy's own, per pool.
    gauges.push(gauge(
        "pgdog_pool_clients",
        "Clients connected to the pool",
        |s, o| pools(s, o, |p| p.clients),
    ));
    gauges.push(gauge(
        "pgdog_pool_waiting_clients",
        "Callers waiting for a server connection",
        |s, o| pools(s, o, |p| p.waiting),
    ));
    gauges.push(gauge(
        "pgdog_pool_server_connections",
        "Open server connections, by state (active: lent to a client, idle: in the pool)",
        |s, o| {
            for p in &s.pools {
                let idle = p.idle.min(p.servers);
                o.observe(
                    (p.servers - idle) as f64,
                    &[p.label.clone(), KeyValue::new("state", "active")],
                );
                o.observe(
                    idle as f64,
                    &[p.label.clone(), KeyValue::new("state", "idle")],
                );
            }
        },
    ));
    counters.push(counter(
        "pgdog_pool_server_connects_total",
        "Server connections opened",
        |s, o| pools(s, o, |p| p.connects),
    ));
    counters.push(counter(
        "pgdog_pool_server_connect_errors_total",
        "Server connections that could not be opened",
        |s, o| pools(s, o, |p| p.connect_errors),
    ));
    counters.push(counter(
        "pgdog_pool_queries_total",
        "Requests clients sent (simple Query, extended-protocol Sync, FunctionCall)",
        |s, o| pools(s, o, |p| p.queries),
    ));
    counters.push(counter(
        "pgdog_pool_bytes_total",
        "Bytes forwarded, by direction (received: from clients, sent: to clients)",
        |s, o| {
            for p in &s.pools {
                for (direction, n) in [("received", p.bytes_received), ("sent", p.bytes_sent)] {
                    o.observe(
                        n as f64,
                        &[p.label.clone(), KeyValue::new("direction", direction)],
                    );
                }
            }
        },
    ));
    counters.push(counter(
        "pgdog_pool_errors_total",
        "ErrorResponses servers sent to clients",
        |s, o| pools(s, o, |p| p.errors),
    ));

    Instruments {
        _gauges: gauges,
        _counters: counters,
    }
}

fn pools(s: &Scrape, o: &dyn AsyncInstrument<f64>, f: fn(&PoolSample) -> u64) {
    for p in &s.pools {
        o.observe(f(p) as f64, std::slice::from_ref(&p.label));
    }
}

/// `(database label, counts)` of each database in the snapshot, when mirror metrics are on.
fn mirror_databases(s: &Scrape) -> impl Iterator<Item = (KeyValue, &pgdog_plugin_api::Counts)> {
    s.snapshot
        .as_ref()
        .filter(|_| s.mirror_enabled)
        .into_iter()
        .flat_map(|snap| snap.databases.iter())
        .map(|d| (database(&d.database), &d.counts))
}

fn readiness(s: &Scrape) -> impl Iterator<Item = &crate::plugins::DatabaseReport> {
    s.report
        .as_ref()
        .filter(|_| s.mirror_enabled)
        .into_iter()
        .flat_map(|r| r.databases.iter())
}
