//! One scrape's worth of data, read from the proxy when Prometheus asks: what the
//! instruments' callbacks observe. Reading it costs O(pools + databases), whatever
//! the traffic served.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use opentelemetry::KeyValue;

use crate::plugins::{MetricPoint, ReadinessReport, StatsSnapshot};
use crate::proxy::Proxy;

/// Counters of one pool, with its `database` label built once per scrape.
#[derive(Debug, Clone)]
pub struct PoolSample {
    pub label: KeyValue,
    pub clients: u64,
    pub servers: u64,
    pub idle: u64,
    pub waiting: u64,
    pub connects: u64,
    pub connect_errors: u64,
    pub queries: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub errors: u64,
}

/// Everything one scrape exports.
#[derive(Debug, Default)]
pub struct Scrape {
    /// `[general] mirror_metrics_enabled`: when false, no mirror family is observed.
    pub mirror_enabled: bool,
    /// The plugins' metric points (the spec's `mirror` family comes from here).
    pub points: Vec<MetricPoint>,
    /// The stats plugin's snapshot (idiomatic `pgdog_mirror_*` families).
    pub snapshot: Option<StatsSnapshot>,
    /// The readiness plugin's verdict on `snapshot`.
    pub report: Option<ReadinessReport>,
    pub pools: Vec<PoolSample>,
    /// Mirror queue depth per source pool.
    pub queues: Vec<(KeyValue, u64)>,
}

/// `database="<name>"`, sharing one allocation between every series of that name.
pub fn database(name: &str) -> KeyValue {
    KeyValue::new("database", Arc::<str>::from(name))
}

impl Scrape {
    /// Reads the proxy. Blocking: plugin calls take the plugins' locks (the event thread
    /// may hold one for the length of a batch). Flush pending events first (async).
    pub fn collect(proxy: &Proxy) -> Scrape {
        let config = proxy.config();
        let pools = proxy
            .pools
            .iter()
            .map(|pool| {
                let s = pool.stats();
                let load = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
                let load64 = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                PoolSample {
                    label: database(pool.name()),
                    clients: load(&s.clients),
                    servers: load(&s.servers),
                    idle: load(&s.idle),
                    waiting: load(&s.waiting),
                    connects: load64(&s.connects),
                    connect_errors: load64(&s.connect_errors),
                    queries: load64(&s.queries),
                    bytes_received: load64(&s.bytes_received),
                    bytes_sent: load64(&s.bytes_sent),
                    errors: load64(&s.errors),
                }
            })
            .collect();
        let mut scrape = Scrape {
            mirror_enabled: config.general.mirror_metrics_enabled,
            pools,
            ..Scrape::default()
        };
        if !scrape.mirror_enabled {
            return scrape;
        }
        let mut queues: Vec<_> = proxy
            .mirrors()
            .values()
            .map(|t| (database(&t.database), t.queue_depth() as u64))
            .collect();
        queues.sort_by(|a, b| a.0.value.as_str().cmp(&b.0.value.as_str()));
        scrape.queues = queues;
        scrape.points = proxy.plugins.metric_points();
        match proxy.plugins.snapshot() {
            Ok(snapshot) => {
                let criteria = crate::plugins::criteria_of(&config.general);
                match proxy.plugins.assess_snapshot(&snapshot, &criteria) {
                    Ok(report) => scrape.report = Some(report),
                    Err(e) => tracing::debug!("metrics: no readiness report: {e}"),
                }
                scrape.snapshot = Some(snapshot);
            }
            Err(e) => tracing::debug!("metrics: no stats snapshot: {e}"),
        }
        scrape
    }
}
