//! Where one source pool's traffic is mirrored to, and how: the settings, fixed for the
//! life of a [`crate::runtime::Runtime`], and the state its sessions share across RELOADs.

use crate::backend::Pool;
use crate::config::{Config, PoolConfig, PoolMode};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Source pool name -> where its traffic is mirrored.
pub type MirrorMap = HashMap<String, Arc<MirrorTarget>>;

/// Where one source pool's traffic is mirrored to. Immutable: a RELOAD that changes a
/// setting builds a new one; sessions keep the one they started with.
pub struct MirrorTarget {
    /// The source pool's name: the `database` label of its mirror statistics.
    pub database: Arc<str>,
    /// The pool requests are replayed on.
    pub pool: Pool,
    /// `mirror_queue`: places per client session.
    pub queue: usize,
    /// A mirrored request running longer than this is cancelled and counted as a timeout.
    pub timeout: Duration,
    pub compare: CompareSettings,
    /// How the source pool's sessions hold mirror connections.
    pub pooling: Pooling,
    /// `mirror_exposure` as configured: published to the shared state by
    /// [`MirrorTarget::apply_exposure`] when this target's generation takes over.
    configured_exposure: f64,
    /// What the target's sessions share and a RELOAD keeps.
    state: Arc<TargetState>,
}

/// How a mirror session holds connections of the mirror pool: as the source pool's
/// clients hold the primary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// For the session's whole life (session mode).
    Session,
    /// Only while it replays a transaction (transaction mode); a connection keeps at most
    /// `statements` prepared statements (`max_prepared_statements`).
    Transaction { statements: usize },
}

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
    pub fn of(config: &Config, pool: &PoolConfig) -> Self {
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

/// What a target's sessions share, kept by a RELOAD that keeps the target's pool,
/// timeout and comparison settings.
struct TargetState {
    /// `mirror_exposure` as `f64` bits: the one setting a RELOAD changes for running
    /// sessions too (they read it at each transaction).
    exposure: AtomicU64,
    /// Requests queued across the pool's sessions (`SHOW MIRROR STATS`, metrics).
    depth: AtomicUsize,
    /// Requests dropped because a session's queue filled while it waited for a connection
    /// of an exhausted mirror pool (`pgdog_mirror_pool_exhausted_total`).
    pool_exhausted: AtomicU64,
    /// A request was dropped: the mirror may have missed writes, so its answers are no
    /// longer compared (set aside as "after drops") until `RESET MIRROR STATS`.
    diverged: AtomicBool,
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
            queue,
            timeout,
            compare,
            pooling: Pooling::Session,
            configured_exposure: exposure,
            state: Arc::new(TargetState {
                exposure: AtomicU64::new(exposure.to_bits()),
                depth: AtomicUsize::new(0),
                pool_exhausted: AtomicU64::new(0),
                diverged: AtomicBool::new(false),
            }),
        }
    }

    /// The target with its sessions holding mirror connections as `pooling` says.
    pub fn with_pooling(mut self, pooling: Pooling) -> MirrorTarget {
        self.pooling = pooling;
        self
    }

    /// Fraction of transactions mirrored.
    pub fn exposure(&self) -> f64 {
        f64::from_bits(self.state.exposure.load(Relaxed))
    }

    /// This target's configured exposure applies from now on, to the sessions already
    /// running on its shared state too.
    pub fn apply_exposure(&self) {
        self.state
            .exposure
            .store(self.configured_exposure.to_bits(), Relaxed);
    }

    pub fn queue_depth(&self) -> usize {
        self.state.depth.load(Relaxed)
    }

    /// Requests dropped while their session waited for a mirror connection.
    pub fn pool_exhausted_drops(&self) -> u64 {
        self.state.pool_exhausted.load(Relaxed)
    }

    /// A request was dropped while its session waited for a mirror connection.
    pub(super) fn note_pool_exhausted(&self) {
        self.state.pool_exhausted.fetch_add(1, Relaxed);
    }

    /// A request took (`true`) or gave back a queue place.
    pub(super) fn queued(&self, taken: bool) {
        if taken {
            self.state.depth.fetch_add(1, Relaxed);
        } else {
            self.state.depth.fetch_sub(1, Relaxed);
        }
    }

    /// A request offered to this mirror was dropped (see `diverged`).
    pub fn note_drop(&self) {
        // Every session of the pool drops under a stalled mirror: read first, so that the
        // shared flag's cache line is not written again and again from every core.
        if !self.state.diverged.load(Relaxed) {
            self.state.diverged.store(true, Relaxed);
        }
    }

    pub fn has_diverged(&self) -> bool {
        self.state.diverged.load(Relaxed)
    }

    /// `RESET MIRROR STATS`: answers are compared again.
    pub fn forget_drops(&self) {
        self.state.diverged.store(false, Relaxed);
    }

    /// Whether `self` can stand in for `other`'s settings that sessions cannot change
    /// once started with them (pool, timeout, comparison).
    fn same_replay(&self, other: &MirrorTarget) -> bool {
        self.pool.ptr_eq(&other.pool)
            && self.timeout == other.timeout
            && self.compare == other.compare
            && self.pooling == other.pooling
    }
}

/// The mirror targets of every pool of `config` that has `mirror_of`, on the pools
/// `pool` finds by name, and what changed from `previous`. A target whose pool, timeout
/// and comparison settings are unchanged keeps its shared state (queue depth, drops, and
/// the exposure its running sessions read, which [`MirrorTarget::apply_exposure`]
/// updates); any other change makes a new target, which only sessions started after it
/// use. `previous` is not changed.
pub fn targets(
    config: &Config,
    pool: impl Fn(&str) -> Option<Pool>,
    previous: Option<&MirrorMap>,
) -> (MirrorMap, Vec<String>) {
    let mut targets = MirrorMap::new();
    let mut changes = Vec::new();
    let timeout = Duration::from_millis(config.general.mirror_timeout_ms);
    for p in &config.pools {
        let Some(to) = p.mirror_of.as_deref() else {
            continue;
        };
        // Validation makes sure the target pool exists.
        let Some(pool) = pool(to) else {
            continue;
        };
        let queue = p.mirror_queue.unwrap_or(config.general.mirror_queue);
        let pooling = match p.pool_mode.unwrap_or(config.general.pool_mode) {
            PoolMode::Session => Pooling::Session,
            PoolMode::Transaction => Pooling::Transaction {
                statements: config.general.max_prepared_statements,
            },
        };
        let mut target = MirrorTarget::new(
            &p.name,
            pool,
            p.mirror_exposure,
            queue,
            timeout,
            CompareSettings::of(config, p),
        )
        .with_pooling(pooling);
        match previous.and_then(|m| m.get(&p.name)) {
            Some(old) if old.same_replay(&target) => {
                if old.exposure() != p.mirror_exposure {
                    changes.push(format!(
                        "pool \"{}\": mirror_exposure {} -> {} (applied)",
                        p.name,
                        old.exposure(),
                        p.mirror_exposure
                    ));
                }
                if old.queue != queue {
                    changes.push(format!(
                        "pool \"{}\": mirror_queue {} -> {} (new sessions)",
                        p.name, old.queue, queue
                    ));
                }
                target.state = old.state.clone();
            }
            Some(_) => changes.push(format!(
                "pool \"{}\": mirror to \"{to}\" rebuilt (target pool, mirror_timeout_ms, comparison or pool mode changed; new sessions)",
                p.name
            )),
            None if previous.is_some() => changes.push(format!(
                "pool \"{}\": now mirrored to \"{to}\" (new sessions)",
                p.name
            )),
            None => {}
        }
        targets.insert(p.name.clone(), Arc::new(target));
    }
    if let Some(old) = previous {
        let mut stopped: Vec<&String> = old.keys().filter(|k| !targets.contains_key(*k)).collect();
        stopped.sort();
        for name in stopped {
            changes.push(format!("pool \"{name}\": mirroring stopped (new sessions)"));
        }
    }
    (targets, changes)
}
