//! The statistics snapshot a stats plugin produces, per database and in total.
//!
//! Counting rules (shared by every plugin, so reports agree with metrics):
//! * `total = mirrored + errors + dropped`: every request the proxy tried to mirror.
//! * `errors` are mirror failures only; a full mirror queue is a drop
//!   (`dropped` and `by_category.buffer_full` both count it), not a mirror failure.
//! * Result comparison adds subsets, never new terms of the sum: `mismatched` are
//!   `mirrored` requests whose answer differed from the primary's; `shared_errors` are
//!   `errors` (query errors) the primary had too, with the same SQLSTATE; `compared`
//!   and `excluded` count requests whose answers were compared or set aside.
//! * A request that ran several different statements, compared statement by statement
//!   (3.2, [`crate::Outcome::STATEMENT`]), counts once in `total` and once per
//!   statement in `compared`, `mismatched` and `excluded`: those count comparisons.

use crate::Extensions;
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
    /// Of `mirrored`: answered differently from the primary.
    pub mismatched: u64,
    /// Of `errors`: query errors the primary had too (same SQLSTATE).
    pub shared_errors: u64,
    /// Requests whose two answers were compared (match or mismatch, errors included).
    pub compared: u64,
    /// Requests answered on both sides but set aside (non-deterministic, ignored, ...).
    pub excluded: u64,
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
        self.mismatched += other.mismatched;
        self.shared_errors += other.shared_errors;
        self.compared += other.compared;
        self.excluded += other.excluded;
    }

    /// Counts one event by the rules in the module docs.
    pub fn record(&mut self, ev: &crate::MirrorEvent) {
        use crate::{DropReason, ErrorCategory, Outcome};
        if ev.is_statement() {
            // One more comparison of the request before it, not a request.
            self.mismatched += u64::from(ev.is_mismatch());
            self.count_comparison(ev);
            return;
        }
        self.total += 1;
        if ev.is_dropped() {
            self.dropped += 1;
            if ev.drop_reason == DropReason::BUFFER_FULL
                || ev.category == ErrorCategory::BUFFER_FULL
            {
                self.by_category.buffer_full += 1;
            }
            return;
        }
        if ev.outcome == Outcome::MIRRORED || ev.outcome == Outcome::MISMATCH {
            self.mirrored += 1;
            if ev.outcome == Outcome::MISMATCH {
                self.mismatched += 1;
            }
        } else if ev.outcome == Outcome::ERROR {
            self.errors += 1;
            let e = &mut self.by_category;
            match ev.category {
                ErrorCategory::CONNECTION => e.connection += 1,
                ErrorCategory::QUERY => e.query += 1,
                ErrorCategory::TIMEOUT => e.timeout += 1,
                ErrorCategory::PROTOCOL => e.protocol += 1,
                _ => e.other += 1,
            }
            if ev.is_shared_error() {
                self.shared_errors += 1;
            }
        }
        // Outcomes this version does not know count in `total` only.
        self.count_comparison(ev);
    }

    fn count_comparison(&mut self, ev: &crate::MirrorEvent) {
        use crate::Verdict;
        match ev.comparison.verdict {
            Verdict::MATCH | Verdict::MISMATCH => self.compared += 1,
            Verdict::EXCLUDED => self.excluded += 1,
            _ => {}
        }
    }

    /// Errors that are the mirror's own: all errors but the shared ones.
    pub fn mirror_errors(&self) -> u64 {
        self.errors.saturating_sub(self.shared_errors)
    }

    /// `dropped / total` (0 before any request).
    pub fn drop_rate(&self) -> f64 {
        match self.total {
            0 => 0.0,
            n => self.dropped as f64 / n as f64,
        }
    }

    /// `mismatched / compared` (0 when nothing was compared).
    pub fn mismatch_rate(&self) -> f64 {
        match self.compared {
            0 => 0.0,
            n => self.mismatched as f64 / n as f64,
        }
    }

    /// Requests the mirror actually executed: the evidence for readiness.
    pub fn attempted(&self) -> u64 {
        self.mirrored + self.errors
    }

    /// The mirror's own errors over what it executed: `mirror_errors / attempted`
    /// (0 when nothing was attempted). Shared errors are not the mirror's fault.
    pub fn error_rate(&self) -> f64 {
        match self.attempted() {
            0 => 0.0,
            n => self.mirror_errors() as f64 / n as f64,
        }
    }

    /// `1 - error_rate` over what the mirror executed (0 when nothing was attempted).
    pub fn success_rate(&self) -> f64 {
        match self.attempted() {
            0 => 0.0,
            n => (n - self.mirror_errors()) as f64 / n as f64,
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
    /// Fields added after 3.0.0 (see [`crate::extension`]). pgdog adds, for a database
    /// whose mirror is kept in sync by replication (`mirror_sync`), before the readiness
    /// plugin judges the snapshot: `replication.mode` and `replication.status` (text:
    /// `streaming`, `stopped`, `unreadable`, `starting`), `replication.problem` (text,
    /// when not streaming), `replication.lag_ms.p50|p99|max|current` and
    /// `replication.lag_bytes.p50|p99|max` (numbers, over the stats window; `current` is
    /// the age of the oldest primary position not yet applied),
    /// `replication.delay_ms.p50|p99` (numbers: what gating added to reads) and
    /// `replication.reads.synced|lagging` (counts).
    pub extensions: Extensions,
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

/// Result comparison and latency of one query fingerprint (normalised statement) on
/// one database.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct FingerprintStats {
    pub database: RString,
    pub fingerprint: u64,
    /// Normalised text (literals as `?`), possibly shortened.
    pub text: RString,
    /// Requests the mirror executed for it (`mirrored + errors`).
    pub requests: u64,
    /// The mirror's own errors (shared errors excluded).
    pub errors: u64,
    pub shared_errors: u64,
    pub mismatches: u64,
    pub compared: u64,
    pub excluded: u64,
    /// Why requests were excluded, when some were (e.g. `non-deterministic`).
    pub excluded_reason: RString,
    /// One example of a difference (see `Comparison::describe`), empty if none.
    pub example: RString,
    /// Median and p99 latencies, ms.
    pub mirror_p50_ms: f64,
    pub mirror_p99_ms: f64,
    pub primary_p50_ms: f64,
    pub primary_p99_ms: f64,
    /// Requests with both latencies known, and the median of their mirror/primary ratios.
    pub paired: u64,
    pub ratio_p50: f64,
    /// Fields added after 3.0.0 (see [`crate::extension`]): when the plugin first recorded
    /// a request, a mismatch and an error of the mirror's own for this fingerprint, in
    /// microseconds since the Unix epoch (`Count`s named [`FIRST_SEEN`],
    /// [`FIRST_MISMATCH`], [`FIRST_ERROR`]; read with [`FingerprintStats::first`]). Absent
    /// when it never happened, or from a plugin that does not keep them.
    pub extensions: Extensions,
}

/// Extension of [`FingerprintStats`]: its first request (`Count`, Unix µs).
pub const FIRST_SEEN: &str = "first_seen_unix_us";
/// Extension of [`FingerprintStats`]: its first mismatch (`Count`, Unix µs).
pub const FIRST_MISMATCH: &str = "first_mismatch_unix_us";
/// Extension of [`FingerprintStats`]: its first error of the mirror's own (`Count`, Unix µs).
pub const FIRST_ERROR: &str = "first_error_unix_us";

impl FingerprintStats {
    /// The instant named `name` ([`FIRST_SEEN`], [`FIRST_MISMATCH`] or [`FIRST_ERROR`]),
    /// in Unix microseconds, when the plugin keeps it and it happened.
    pub fn first(&self, name: &str) -> Option<u64> {
        self.extensions.count(name).filter(|&us| us > 0)
    }

    /// `mismatches / compared` (0 when nothing was compared).
    pub fn mismatch_rate(&self) -> f64 {
        match self.compared {
            0 => 0.0,
            n => self.mismatches as f64 / n as f64,
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
    /// Per fingerprint and database (empty when comparison is off); a plugin may keep
    /// only the most frequent ones.
    pub fingerprints: RVec<FingerprintStats>,
    /// Fields added after 3.0.0 (see [`crate::extension`]). None yet.
    pub extensions: Extensions,
}

/// Microseconds since the Unix epoch, now.
pub fn now_unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
