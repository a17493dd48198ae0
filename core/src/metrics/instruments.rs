//! The OpenTelemetry instruments and their callbacks. Each callback locks the current
//! [`Sample`] for a moment and observes its share of it; nothing is computed here beyond
//! picking fields.
//!
//! Observable (asynchronous) instruments, because every value already exists as a
//! running total or a current level somewhere (pool atomics, the stats plugin's counts,
//! the policy's verdicts): a callback reports it as it is at collection time. They also
//! forget what was not observed: a pool removed by `RELOAD`, or every mirror family once
//! `mirror_metrics_enabled` is off, leaves the exposition, where a synchronous gauge would
//! keep its last value forever and a synchronous counter could not follow a
//! `RESET MIRROR STATS`. (Measured against synchronous instruments updated just before
//! each collection: `docs/benchmarks.md`, "Metrics scrape through OpenTelemetry".)
//!
//! Two ownerships (`docs/plugins.md`, "Who owns which series"):
//! * the plugins' families: one instrument per family a plugin declares, observing the
//!   plugin's points as they are (the spec's `mirror` gauge is the bundled plugin's);
//! * pgdog's own: the pool families, the mirror queue depth and the plugin events
//!   dropped (proxy state), and the `pgdog_mirror_*` families, which export the fields
//!   of the plugin API's typed statistics and verdicts one for one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableCounter, ObservableGauge};
use opentelemetry::{Key, KeyValue, Value};

use super::sample::{lock, Current, PoolSample, Sample};
use crate::plugins::{Counts, MetricKind};
use pgdog_plugin_api::ErrorCounts;

/// Handles of every registered instrument (registration lasts as long as they do).
pub struct Instruments {
    _gauges: Vec<ObservableGauge<f64>>,
    _counters: Vec<ObservableCounter<f64>>,
}

type Observe = fn(&Sample, &dyn AsyncInstrument<f64>);

/// One count of a database's [`Counts`].
type Pick = fn(&Counts) -> u64;

/// Registers pgdog's instruments and one per plugin family `(name, help, kind)`.
pub fn register(
    meter: &Meter,
    current: &Current,
    plugin_families: &[(String, String, MetricKind)],
) -> Instruments {
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    for (name, help, kind) in plugin_families {
        let family = name.clone();
        let current = current.clone();
        let labels = Mutex::new(Labels::default());
        let observe = move |o: &dyn AsyncInstrument<f64>| {
            let mut labels = labels.lock().unwrap_or_else(|p| p.into_inner());
            plugin_points(&lock(&current), &family, &mut labels, o)
        };
        if *kind == MetricKind::COUNTER {
            let builder = meter.f64_observable_counter(name.clone());
            counters.push(
                builder
                    .with_description(help.clone())
                    .with_callback(observe)
                    .build(),
            );
        } else {
            let builder = meter.f64_observable_gauge(name.clone());
            gauges.push(
                builder
                    .with_description(help.clone())
                    .with_callback(observe)
                    .build(),
            );
        }
    }
    let gauge_families = GAUGES
        .iter()
        .chain(super::readiness_inputs::GAUGES)
        .chain(super::replication::GAUGES);
    for (name, help, observe) in gauge_families {
        let current = current.clone();
        let builder = meter.f64_observable_gauge(*name).with_description(*help);
        gauges.push(
            builder
                .with_callback(move |o| observe(&lock(&current), o))
                .build(),
        );
    }
    let counter_families = COUNTERS
        .iter()
        .chain(super::readiness_inputs::COUNTERS)
        .chain(super::replication::COUNTERS);
    for (name, help, observe) in counter_families {
        let current = current.clone();
        let builder = meter.f64_observable_counter(*name).with_description(*help);
        counters.push(
            builder
                .with_callback(move |o| observe(&lock(&current), o))
                .build(),
        );
    }
    Instruments {
        _gauges: gauges,
        _counters: counters,
    }
}

/// Observes a plugin family's points, label pairs as the plugin gave them (the exporter
/// sanitises names and merges duplicates).
fn plugin_points(s: &Sample, family: &str, labels: &mut Labels, o: &dyn AsyncInstrument<f64>) {
    if !s.mirror_enabled {
        return;
    }
    let mut attributes = Vec::new();
    for p in s.points.iter().filter(|p| p.name.as_str() == family) {
        attributes.clear();
        attributes.extend(p.labels.iter().map(|t| labels.pair(&t.0, &t.1)));
        o.observe(p.value, &attributes);
    }
    labels.trim();
}

/// A plugin family's label names and values, each kept as one shared string from one
/// collection to the next: a point's attributes are then reference-count increments,
/// not two new strings per label (at 1,000 databases the spec's family alone has 8,000
/// labels per collection).
#[derive(Default)]
struct Labels {
    keys: HashMap<String, Key>,
    values: HashMap<String, Value>,
}

impl Labels {
    /// Most distinct names and values kept between collections.
    const MAX: usize = 100_000;

    fn pair(&mut self, key: &str, value: &str) -> KeyValue {
        let key = match self.keys.get(key) {
            Some(k) => k.clone(),
            None => {
                let k = Key::from(Arc::<str>::from(key));
                self.keys.insert(key.to_string(), k.clone());
                k
            }
        };
        let value = match self.values.get(value) {
            Some(v) => v.clone(),
            None => {
                let v = Value::from(Arc::<str>::from(value));
                self.values.insert(value.to_string(), v.clone());
                v
            }
        };
        KeyValue::new(key, value)
    }

    /// Forgets everything when plugins send ever new names (say a label per request).
    fn trim(&mut self) {
        if self.keys.len() + self.values.len() > Self::MAX {
            *self = Self::default();
        }
    }
}

const GAUGES: &[(&str, &str, Observe)] = &[
    (
        "pgdog_mirror_queue_depth",
        "Requests waiting in the mirror queues of a source pool's sessions",
        |s, o| {
            if s.mirror_enabled {
                for (db, depth) in &s.queues {
                    o.observe(*depth as f64, std::slice::from_ref(db));
                }
            }
        },
    ),
    (
        "pgdog_mirror_ready",
        "1 when the readiness policy judges the database ready to take over, else 0",
        |s, o| verdicts(s, o, |ready, _| if ready { 1.0 } else { 0.0 }),
    ),
    (
        "pgdog_mirror_readiness_confidence",
        "Readiness policy's confidence that the database meets the criteria, 0 to 1",
        |s, o| verdicts(s, o, |_, confidence| confidence / 100.0),
    ),
    (
        "pgdog_pool_clients",
        "Clients connected to the pool",
        |s, o| pools(s, o, |p| p.clients),
    ),
    (
        "pgdog_pool_waiting_clients",
        "Callers waiting for a server connection",
        |s, o| pools(s, o, |p| p.waiting),
    ),
    (
        "pgdog_pool_server_connections",
        "Open server connections, by state (active: lent to a client, idle: in the pool)",
        |s, o| {
            for p in &s.pools {
                let idle = p.idle.min(p.servers);
                let active = KeyValue::new("state", "active");
                o.observe((p.servers - idle) as f64, &[p.label.clone(), active]);
                let idle_state = KeyValue::new("state", "idle");
                o.observe(idle as f64, &[p.label.clone(), idle_state]);
            }
        },
    ),
];

const COUNTERS: &[(&str, &str, Observe)] = &[
    (
        "pgdog_mirror_pool_exhausted_total",
        "Mirror requests dropped (in pgdog_mirror_requests_total{outcome=\"dropped\"}) because the session's queue filled while it waited for a connection of the mirror pool, all in use: pgdog's pool_size, not the new database",
        |s, o| {
            if s.mirror_enabled {
                for (db, n) in &s.pool_exhausted {
                    o.observe(*n as f64, std::slice::from_ref(db));
                }
            }
        },
    ),
    (
        "pgdog_mirror_requests_total",
        "Requests the proxy tried to mirror, by outcome (mirrored, error, dropped)",
        |s, o| {
            const OUTCOMES: [(&str, Pick); 3] = [
                ("mirrored", |c| c.mirrored),
                ("error", |c| c.errors),
                ("dropped", |c| c.dropped),
            ];
            databases(s, o, &OUTCOMES.map(|(v, pick)| ("outcome", v, pick)));
        },
    ),
    (
        "pgdog_mirror_errors_total",
        "Mirror failures by category (queue-full drops are in pgdog_mirror_requests_total{outcome=\"dropped\"})",
        |s, o| {
            type Pick = fn(&ErrorCounts) -> u64;
            const CATEGORIES: [(&str, Pick); 5] = [
                ("connection", |e| e.connection),
                ("query", |e| e.query),
                ("timeout", |e| e.timeout),
                ("protocol", |e| e.protocol),
                ("other", |e| e.other),
            ];
            for (category, pick) in CATEGORIES {
                let label = KeyValue::new("category", category);
                for (db, c) in mirror_databases(s) {
                    let value = pick(&c.by_category) as f64;
                    o.observe(value, &[db.clone(), label.clone()]);
                }
            }
        },
    ),
    (
        "pgdog_mirror_mismatches_total",
        "Comparisons where the mirror's answer differed from the primary's: per request, or per statement of a request of several (per fingerprint in SHOW MIRROR QUERIES)",
        |s, o| {
            for (db, c) in mirror_databases(s) {
                o.observe(c.mismatched as f64, std::slice::from_ref(db));
            }
        },
    ),
    (
        "pgdog_plugin_events_dropped_total",
        "Mirror events dropped because the plugins did not keep up (the channel to them was full)",
        |s, o| {
            if let Some(n) = s.plugin_events_dropped {
                o.observe(n as f64, &[]);
            }
        },
    ),
    (
        "pgdog_pool_server_connects_total",
        "Server connections opened",
        |s, o| pools(s, o, |p| p.connects),
    ),
    (
        "pgdog_pool_server_connect_errors_total",
        "Server connections that could not be opened",
        |s, o| pools(s, o, |p| p.connect_errors),
    ),
    (
        "pgdog_pool_queries_total",
        "Requests clients sent (simple Query, extended-protocol Sync, FunctionCall)",
        |s, o| pools(s, o, |p| p.queries),
    ),
    (
        "pgdog_pool_bytes_total",
        "Bytes forwarded, by direction (received: from clients, sent: to clients)",
        |s, o| {
            for p in &s.pools {
                for (direction, n) in [("received", p.bytes_received), ("sent", p.bytes_sent)] {
                    let label = KeyValue::new("direction", direction);
                    o.observe(n as f64, &[p.label.clone(), label]);
                }
            }
        },
    ),
    (
        "pgdog_pool_errors_total",
        "ErrorResponses servers sent to clients",
        |s, o| pools(s, o, |p| p.errors),
    ),
];

fn pools(s: &Sample, o: &dyn AsyncInstrument<f64>, f: fn(&PoolSample) -> u64) {
    for p in &s.pools {
        o.observe(f(p) as f64, std::slice::from_ref(&p.label));
    }
}

/// `(database label, counts)` of each database in the snapshot, when mirror metrics are on.
fn mirror_databases(s: &Sample) -> impl Iterator<Item = (&KeyValue, &Counts)> {
    s.snapshot
        .as_ref()
        .filter(|_| s.mirror_enabled)
        .into_iter()
        .flat_map(|(snap, labels)| labels.iter().zip(snap.databases.iter().map(|d| &d.counts)))
}

/// `name{database, <key>=<value>}` for each database and each `(key, value, pick)`.
fn databases(s: &Sample, o: &dyn AsyncInstrument<f64>, by: &[(&'static str, &'static str, Pick)]) {
    for (key, value, pick) in by {
        let label = KeyValue::new(*key, *value);
        for (db, c) in mirror_databases(s) {
            o.observe(pick(c) as f64, &[db.clone(), label.clone()]);
        }
    }
}

/// `f(ready, confidence)` per database of the readiness verdicts, when mirror metrics are on.
fn verdicts(s: &Sample, o: &dyn AsyncInstrument<f64>, f: fn(bool, f64) -> f64) {
    let Some((verdicts, labels)) = s.verdicts.as_ref().filter(|_| s.mirror_enabled) else {
        return;
    };
    for (v, label) in verdicts.databases.iter().zip(labels) {
        o.observe(f(v.ready, v.confidence), std::slice::from_ref(label));
    }
}
