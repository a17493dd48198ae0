//! The proxy's own families, per pool: `pgdog_pool_*`.

use super::family::Family;
use super::scrape::{PoolSample, Source, View};
use super::text::{Kind, Writer};

/// One counter of a pool.
type Pick = fn(&PoolSample) -> u64;

/// `name{database} value` for every pool.
fn per_pool(family: &Family, w: &mut Writer, view: &View<'_>, f: Pick) {
    family.per_database(w, &view.pools, |p| f(p) as f64);
}

/// `name{database,<label>} value` for every pool and each `(label value, f)`, the label
/// values in order (as the registry sorted them).
fn per_pool_by(
    family: &Family,
    w: &mut Writer,
    view: &View<'_>,
    label: &str,
    values: [(&str, Pick); 2],
) {
    let head = format!("{}{{database=\"", family.name);
    let tails = values.map(|(value, _)| format!("\",{label}=\"{value}\"}}"));
    for p in &view.pools {
        for (tail, (_, f)) in tails.iter().zip(values) {
            w.line(&head, &p.label, tail, f(p.item) as f64);
        }
    }
}

pub const FAMILIES: [Family; 8] = [
    Family {
        name: "pgdog_pool_clients",
        help: "Clients connected to the pool",
        kind: Kind::Gauge,
        source: Source::Proxy,
        samples: |f, w, v| per_pool(f, w, v, |p| p.clients),
    },
    Family {
        name: "pgdog_pool_waiting_clients",
        help: "Callers waiting for a server connection",
        kind: Kind::Gauge,
        source: Source::Proxy,
        samples: |f, w, v| per_pool(f, w, v, |p| p.waiting),
    },
    Family {
        name: "pgdog_pool_server_connections",
        help: "Open server connections, by state (active: lent to a client, idle: in the pool)",
        kind: Kind::Gauge,
        source: Source::Proxy,
        samples: |f, w, v| {
            per_pool_by(
                f,
                w,
                v,
                "state",
                [
                    ("active", |p| p.servers - p.idle.min(p.servers)),
                    ("idle", |p| p.idle.min(p.servers)),
                ],
            )
        },
    },
    Family {
        name: "pgdog_pool_server_connects_total",
        help: "Server connections opened",
        kind: Kind::Counter,
        source: Source::Proxy,
        samples: |f, w, v| per_pool(f, w, v, |p| p.connects),
    },
    Family {
        name: "pgdog_pool_server_connect_errors_total",
        help: "Server connections that could not be opened",
        kind: Kind::Counter,
        source: Source::Proxy,
        samples: |f, w, v| per_pool(f, w, v, |p| p.connect_errors),
    },
    Family {
        name: "pgdog_pool_queries_total",
        help: "Requests clients sent (simple Query, extended-protocol Sync, FunctionCall)",
        kind: Kind::Counter,
        source: Source::Proxy,
        samples: |f, w, v| per_pool(f, w, v, |p| p.queries),
    },
    Family {
        name: "pgdog_pool_bytes_total",
        help: "Bytes forwarded, by direction (received: from clients, sent: to clients)",
        kind: Kind::Counter,
        source: Source::Proxy,
        samples: |f, w, v| {
            per_pool_by(
                f,
                w,
                v,
                "direction",
                [
                    ("received", |p| p.bytes_received),
                    ("sent", |p| p.bytes_sent),
                ],
            )
        },
    },
    Family {
        name: "pgdog_pool_errors_total",
        help: "ErrorResponses servers sent to clients",
        kind: Kind::Counter,
        source: Source::Proxy,
        samples: |f, w, v| per_pool(f, w, v, |p| p.errors),
    },
];
