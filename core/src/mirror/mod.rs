//! Query mirroring: copy a pool's traffic to another pool, asynchronously.
//!
//! The data flow: the client session's [`tap`] groups the frames it forwards into requests
//! (one simple Query, one extended-protocol batch up to Sync, or one COPY), decides per
//! transaction whether to mirror (`mirror_exposure`), and hands each request, as shared
//! bytes, to a bounded queue with a non-blocking send; a full queue drops the request and
//! reports it. The session's [`worker`] replays the queue in order on its own mirror server
//! connection, measures each request and reports one [`event::Event`] for it.

mod backlog;
pub mod episode;
pub mod event;
mod inflight;
pub mod prepared;
pub mod request;
pub mod tap;
pub mod worker;

pub use event::{DropReason, ErrorCategory, Event, EventSink, Outcome};

impl MirrorTarget {
    /// This target's comparison settings.
    pub fn compare_settings(&self) -> CompareSettings {
        CompareSettings {
            enabled: self.compare,
            ignore: self.ignore.clone(),
        }
    }
}

use crate::backend::Pool;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Result comparison settings of one mirrored pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompareSettings {
    /// `mirror_compare`: digest both answers and compare them.
    pub enabled: bool,
    /// `mirror_compare_ignore`: fingerprints whose differences are not counted.
    pub ignore: Arc<HashSet<u64>>,
}

impl CompareSettings {
    /// The settings of pool `pool` in `config`.
    pub fn of(config: &crate::config::Config, pool: &crate::config::PoolConfig) -> Self {
        CompareSettings {
            enabled: pool.mirror_compare.unwrap_or(config.general.mirror_compare),
            ignore: Arc::new(
                config
                    .general
                    .mirror_compare_ignore
                    .iter()
                    .map(|entry| ignore_entry(entry))
                    .collect(),
            ),
        }
    }
}

/// A `mirror_compare_ignore` entry: a fingerprint as 16 hex digits (as `SHOW MIRROR
/// QUERIES` prints it), or a statement, which is normalised to its fingerprint.
pub fn ignore_entry(entry: &str) -> u64 {
    let t = entry.trim();
    if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Ok(id) = u64::from_str_radix(t, 16) {
            return id;
        }
    }
    crate::compare::fingerprint(t).id
}

/// Where one source pool's traffic is mirrored to, and how.
pub struct MirrorTarget {
    /// The source pool's name: the `database` label of its mirror statistics.
    pub database: Arc<str>,
    /// The pool requests are replayed on.
    pub pool: Pool,
    /// Fraction of transactions mirrored, as `f64` bits: `RELOAD` changes it live.
    exposure: AtomicU64,
    /// Queue length of new client sessions (`RELOAD` changes it for new sessions).
    queue: AtomicUsize,
    /// A mirrored request running longer than this is cancelled and counted as a timeout.
    pub timeout: Duration,
    /// Requests queued across this pool's sessions, for `SHOW MIRROR STATS` and metrics.
    pub depth: AtomicUsize,
    /// Result comparison (new sessions take it up).
    pub compare: bool,
    pub ignore: Arc<HashSet<u64>>,
    /// A request was dropped: the mirror may have missed writes, so its answers are no
    /// longer compared (set aside as "after drops") until `RESET MIRROR STATS`.
    pub diverged: std::sync::atomic::AtomicBool,
}

impl MirrorTarget {
    pub fn new(
        database: &str,
        pool: Pool,
        exposure: f64,
        queue: usize,
        timeout: Duration,
        compare: CompareSettings,
    ) -> MirrorTarget {
        MirrorTarget {
            database: Arc::from(database),
            pool,
            exposure: AtomicU64::new(exposure.to_bits()),
            queue: AtomicUsize::new(queue),
            timeout,
            depth: AtomicUsize::new(0),
            compare: compare.enabled,
            ignore: compare.ignore,
            diverged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A request offered to this mirror was dropped (see `diverged`).
    pub fn note_drop(&self) {
        // Every session of the pool drops under a stalled mirror: read first, so that the
        // shared flag's cache line is not written again and again from every core.
        if !self.diverged.load(Ordering::Relaxed) {
            self.diverged.store(true, Ordering::Relaxed);
        }
    }

    pub fn has_diverged(&self) -> bool {
        self.diverged.load(Ordering::Relaxed)
    }

    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Fraction of transactions mirrored.
    pub fn exposure(&self) -> f64 {
        f64::from_bits(self.exposure.load(Ordering::Relaxed))
    }

    pub fn set_exposure(&self, exposure: f64) {
        self.exposure.store(exposure.to_bits(), Ordering::Relaxed);
    }

    /// Queue length per client session.
    pub fn queue(&self) -> usize {
        self.queue.load(Ordering::Relaxed)
    }

    pub fn set_queue(&self, queue: usize) {
        self.queue.store(queue, Ordering::Relaxed);
    }
}

/// Builds the mirror targets of every pool that has `mirror_of`.
pub fn targets(
    config: &crate::config::Config,
    pools: &crate::backend::Pools,
) -> std::collections::HashMap<String, Arc<MirrorTarget>> {
    config
        .pools
        .iter()
        .filter_map(|p| {
            let to = p.mirror_of.as_deref()?;
            let pool = pools.get(to)?.clone();
            Some((
                p.name.clone(),
                Arc::new(MirrorTarget::new(
                    &p.name,
                    pool,
                    p.mirror_exposure,
                    p.mirror_queue.unwrap_or(config.general.mirror_queue),
                    Duration::from_millis(config.general.mirror_timeout_ms),
                    CompareSettings::of(config, p),
                )),
            ))
        })
        .collect()
}
