//! One collection's worth of data: what the instruments observe when the SDK collects
//! (for a scrape or an OTLP push). A leaf module: plain data, read from the proxy and
//! its plugins by `read.rs`, observed by `instruments.rs` and `histogram.rs`.

use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry::KeyValue;

use crate::plugins::{MetricPoint, StatsSnapshot, Verdicts};

/// Counters of one pool, with its `database` label built once per collection.
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

/// Everything one collection exports.
#[derive(Debug, Default)]
pub struct Sample {
    /// `[general] mirror_metrics_enabled`: when false, no mirror family is observed.
    pub mirror_enabled: bool,
    /// The plugins' metric points: every family a plugin defines (the spec's `mirror`
    /// among them), exported as they are.
    pub points: Vec<MetricPoint>,
    /// The stats plugin's snapshot (the `pgdog_mirror_*` families), with a `database`
    /// label per database, in the snapshot's order.
    pub snapshot: Option<(Arc<StatsSnapshot>, Vec<KeyValue>)>,
    /// The readiness plugin's verdicts, with a `database` label each.
    pub verdicts: Option<(Verdicts, Vec<KeyValue>)>,
    pub pools: Vec<PoolSample>,
    /// Mirror queue depth per source pool.
    pub queues: Vec<(KeyValue, u64)>,
    /// Drops while waiting for an exhausted mirror pool, per source pool.
    pub pool_exhausted: Vec<(KeyValue, u64)>,
    /// Events dropped on the way to the plugins (`None`: no plugin host).
    pub plugin_events_dropped: Option<u64>,
    /// The readiness latency bound (µs), exported as one more bucket edge of the latency
    /// histogram when it is not one of its standard bounds.
    pub latency_bound_us: Option<u64>,
    /// Source pools that mirror only some transactions (`mirror_statements`) or gate
    /// reads on the replication position (`mirror_sync`).
    pub mirrors: Vec<MirrorSample>,
}

/// What one source pool's mirror skipped and, with `mirror_sync`, what its gate measured.
#[derive(Debug, Clone)]
pub struct MirrorSample {
    pub label: KeyValue,
    /// Skipped requests by `reason` label (empty under `mirror_statements = "all"`).
    pub skipped: Vec<(&'static str, u64)>,
    pub sync: Option<crate::mirror::sync::Report>,
}

impl Sample {
    /// Sets the snapshot, labelling its databases.
    pub fn set_snapshot(&mut self, snapshot: Arc<StatsSnapshot>) {
        let labels = snapshot
            .databases
            .iter()
            .map(|d| database(&d.database))
            .collect();
        self.snapshot = Some((snapshot, labels));
    }

    /// Sets the verdicts, labelling their databases.
    pub fn set_verdicts(&mut self, verdicts: Verdicts) {
        let labels = verdicts
            .databases
            .iter()
            .map(|d| database(&d.database))
            .collect();
        self.verdicts = Some((verdicts, labels));
    }
}

/// `database="<name>"`, sharing one allocation between every series of that name.
pub fn database(name: &str) -> KeyValue {
    KeyValue::new("database", Arc::<str>::from(name))
}

/// What the instruments' callbacks read: the sample of the collection in progress.
pub type Current = Arc<Mutex<Sample>>;

pub fn lock(current: &Current) -> MutexGuard<'_, Sample> {
    current.lock().unwrap_or_else(|p| p.into_inner())
}
