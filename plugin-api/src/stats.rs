//! The statistics snapshot a stats plugin produces, per database and in total.
//!
//! Counting rules (shared by every plugin, so reports agree with metrics):
//! * `total = mirrored + errors + dropped`: every request the proxy tried to mirror.
//! * `errors` are mirror failures only; a full mirror queue is a drop
//!   (`dropped` and `by_category.buffer_full` both count it), not a mirror failure.

use abi_stable::{
    std_types::{ROption, RString, RVec},
    StableAbi,
};

/// Errors by category (`buffer_full` counts queue drops, see module docs).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub connection: u64,
    pub query: u64,
    pub timeout: u64,
    pub buffer_full: u64,
    pub protocol: u64,
    /// Categories this plugin does not know.
    pub other: u64,
}

impl ErrorCounts {
    /// `(label, count)` for each category, in a fixed order.
    pub fn labelled(&self) -> [(&'static str, u64); 6] {
        [
            ("connection", self.connection),
            ("query", self.query),
            ("timeout", self.timeout),
            ("buffer_full", self.buffer_full),
            ("protocol", self.protocol),
            ("other", self.other),
        ]
    }
}

/// Request counts.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `mirrored + errors + dropped`.
    pub total: u64,
    pub mirrored: u64,
    /// Requests that never reached the mirror (queue full, shutdown, ...).
    pub dropped: u64,
    /// Mirror failures (connection, query, timeout, protocol, other; not buffer_full).
    pub errors: u64,
    pub by_category: ErrorCounts,
}

impl Counts {
    /// Adds `other` into `self` (merging databases into a total).
    pub fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.mirrored += other.mirrored;
        self.dropped += other.dropped;
        self.errors += other.errors;
        let (x, y) = (&mut self.by_category, &other.by_category);
        x.connection += y.connection;
        x.query += y.query;
        x.timeout += y.timeout;
        x.buffer_full += y.buffer_full;
        x.protocol += y.protocol;
        x.other += y.other;
    }

    /// Requests the mirror actually executed: the evidence for readiness.
    pub fn attempted(&self) -> u64 {
        self.mirrored + self.errors
    }

    /// `errors / attempted` (0 when nothing was attempted).
    pub fn error_rate(&self) -> f64 {
        match self.attempted() {
            0 => 0.0,
            n => self.errors as f64 / n as f64,
        }
    }

    /// `mirrored / attempted` (0 when nothing was attempted).
    pub fn success_rate(&self) -> f64 {
        match self.attempted() {
            0 => 0.0,
            n => self.mirrored as f64 / n as f64,
        }
    }
}

/// One bucket of a latency distribution: `count` samples at or below `le_us`
/// (and above the previous bucket's bound).
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyBucket {
    pub le_us: u64,
    pub count: u64,
}

/// A latency summary. Quantiles come from an HDR histogram (3 significant digits).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// The distribution, ascending by `le_us`, so a policy can count the samples
    /// under any threshold of its own.
    pub buckets: RVec<LatencyBucket>,
}

impl LatencySummary {
    /// Samples at or below `threshold_us` (within the histogram's precision).
    pub fn samples_at_or_below(&self, threshold_us: u64) -> u64 {
        self.buckets
            .iter()
            .take_while(|b| b.le_us <= threshold_us)
            .map(|b| b.count)
            .sum()
    }
}

/// Statistics of one database (pool), or of all of them.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct DatabaseStats {
    /// The pool name; empty for the overall figures.
    pub database: RString,
    pub counts: Counts,
    /// Latency of requests the mirror answered.
    pub mirror_latency: LatencySummary,
    /// Latency of the primary for the same requests, when known.
    pub primary_latency: LatencySummary,
    pub first_event_unix_us: ROption<u64>,
    pub last_event_unix_us: ROption<u64>,
}

impl DatabaseStats {
    /// Seconds from the first event to `now_unix_us` (0 before any event).
    pub fn window_secs(&self, now_unix_us: u64) -> f64 {
        match self.first_event_unix_us {
            ROption::RSome(first) => now_unix_us.saturating_sub(first) as f64 / 1e6,
            ROption::RNone => 0.0,
        }
    }
}

/// Everything a stats plugin knows, at one instant.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub overall: DatabaseStats,
    /// Sorted by database name.
    pub databases: RVec<DatabaseStats>,
    /// When the snapshot was taken, microseconds since the Unix epoch.
    pub taken_at_unix_us: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn now_unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
