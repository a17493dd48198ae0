//! Where one source pool's traffic is mirrored to, and how: the settings, fixed for the
//! life of a [`crate::runtime::Runtime`], and the state its sessions share across RELOADs.

use crate::backend::Pool;
use crate::config::{Config, MirrorStatements, MirrorSync, PoolConfig, PoolMode};
use crate::mirror::sync::Gate;
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
    /// `mirror_statements`: which transactions go to the mirror.
    pub statements: MirrorStatements,
    /// Transactions not mirrored by `mirror_statements`, and the statements the mirror
    /// refused as writes: kept by every RELOAD of the source pool.
    pub skips: Arc<Skips>,
    /// `mirror_sync`: reads wait until the mirror has applied what the primary had
    /// committed when it answered them.
    pub sync: Option<Arc<Gate>>,
}

/// Why a transaction was not mirrored (`pgdog_mirror_skipped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `mirror_statements = "reads"`: a statement writes (or is not known to read).
    Write,
    /// `mirror_statements = "writes"`: no statement writes.
    Read,
    /// `mirror_statements = "reads"`: the mirror refused a statement as a write (`25006`,
    /// such as `SELECT f()` where `f` writes), or a statement with the fingerprint of one
    /// it refused.
    WriteDetected,
}

impl SkipReason {
    pub const ALL: [SkipReason; 3] = [
        SkipReason::Write,
        SkipReason::Read,
        SkipReason::WriteDetected,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Write => "write",
            SkipReason::Read => "read",
            SkipReason::WriteDetected => "write detected",
        }
    }
}

/// Requests not mirrored because of `mirror_statements`, by reason, and the fingerprints
/// of statements the mirror refused as writes.
#[derive(Default)]
pub struct Skips {
    counts: [AtomicU64; 3],
    /// Fingerprints of statements the mirror refused with `25006`.
    writers: std::sync::RwLock<HashSet<u64>>,
    /// `writers` is not empty (read without the lock on every transaction).
    any_writer: AtomicBool,
}

/// Most fingerprints remembered as writers (a client that generates statement texts
/// without end must not grow the proxy without end; past it, refusals are still counted).
const MAX_WRITERS: usize = 10_000;

impl Skips {
    /// `n` requests were skipped for `reason`.
    pub fn count(&self, reason: SkipReason, n: u64) {
        self.counts[reason as usize].fetch_add(n, Relaxed);
    }

    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.counts[reason as usize].load(Relaxed)
    }

    pub fn total(&self) -> u64 {
        SkipReason::ALL.iter().map(|r| self.skipped(*r)).sum()
    }

    /// The mirror refused a statement with fingerprint `fingerprint` as a write.
    pub fn remember_writer(&self, fingerprint: u64) {
        let mut writers = self.writers.write().unwrap_or_else(|e| e.into_inner());
        if writers.len() < MAX_WRITERS && writers.insert(fingerprint) {
            self.any_writer.store(true, Relaxed);
        }
    }

    /// Whether any of `fingerprints` was refused as a write before. `fingerprints` is
    /// called only when some statement was.
    pub fn any_writer<I: Iterator<Item = u64>>(&self, fingerprints: impl FnOnce() -> I) -> bool {
        if !self.any_writer.load(Relaxed) {
            return false;
        }
        let writers = self.writers.read().unwrap_or_else(|e| e.into_inner());
        fingerprints().any(|fp| writers.contains(&fp))
    }

    /// Fingerprints remembered as writers.
    pub fn writers(&self) -> usize {
        self.writers.read().map(|w| w.len()).unwrap_or(0)
    }

    /// `RESET MIRROR STATS`: the counts start again (the writers stay remembered: they
    /// are a property of the statements, not of the statistics).
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Relaxed);
        }
    }
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
            statements: MirrorStatements::All,
            skips: Arc::default(),
            sync: None,
        }
    }

    /// The target with its sessions holding mirror connections as `pooling` says.
    pub fn with_pooling(mut self, pooling: Pooling) -> MirrorTarget {
        self.pooling = pooling;
        self
    }

    /// The target mirroring the transactions `statements` says. A mirror that only
    /// reads runs its sessions read-only ([`Pool::read_only`]): a write the classifier
    /// missed is refused by the server instead of changing the mirror.
    pub fn with_statements(mut self, statements: MirrorStatements) -> MirrorTarget {
        if statements == MirrorStatements::Reads {
            self.pool = self.pool.read_only();
        }
        self.statements = statements;
        self
    }

    /// The target whose reads wait for `gate`.
    pub fn with_sync(mut self, gate: Option<Arc<Gate>>) -> MirrorTarget {
        self.sync = gate;
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

    /// Requests were dropped since the last `RESET MIRROR STATS`, and the mirror's data
    /// may lack writes because of it. Never for a mirror that only reads: replication
    /// keeps its data, and a dropped read changes nothing.
    pub fn has_diverged(&self) -> bool {
        self.statements != MirrorStatements::Reads && self.state.diverged.load(Relaxed)
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
            && self.statements == other.statements
            && match (&self.sync, &other.sync) {
                (Some(a), Some(b)) => a.settings() == b.settings(),
                (None, None) => true,
                _ => false,
            }
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
    pool_of: impl Fn(&str) -> Option<Pool>,
    previous: Option<&MirrorMap>,
) -> (MirrorMap, Vec<String>) {
    let pool = &pool_of;
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
        let gate = gate(config, p, &pool, &pool_of);
        let mut target = MirrorTarget::new(
            &p.name,
            pool,
            p.mirror_exposure,
            queue,
            timeout,
            CompareSettings::of(config, p),
        )
        .with_pooling(pooling)
        .with_statements(p.mirror_statements.unwrap_or_default())
        .with_sync(gate);
        let old = previous.and_then(|m| m.get(&p.name));
        if let Some(old) = old {
            // The counts of skipped transactions, and the statements known to write,
            // belong to the source pool whatever else changed.
            target.skips = old.skips.clone();
        }
        match old {
            Some(old) if old.same_replay(&target) => {
                target.sync = old.sync.clone();
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
                "pool \"{}\": mirror to \"{to}\" rebuilt (target pool, mirror_timeout_ms, comparison, pool mode, mirror_statements or mirror_sync changed; new sessions)",
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

/// The gate of pool `p`'s reads, when it has `mirror_sync`: positions read on the source
/// pool (the primary) and, for a standby, on `mirror`.
fn gate(
    config: &Config,
    p: &PoolConfig,
    mirror: &Pool,
    pool_of: &impl Fn(&str) -> Option<Pool>,
) -> Option<Arc<Gate>> {
    let mode = p.mirror_sync.unwrap_or_default();
    if mode == MirrorSync::None {
        return None;
    }
    let settings = crate::mirror::sync::Settings {
        mode,
        slot: p.mirror_sync_slot.clone(),
        max_lag: Duration::from_millis(p.mirror_max_lag_ms.unwrap_or(DEFAULT_MAX_LAG_MS)),
        interval: Duration::from_millis(
            p.mirror_sync_interval_ms
                .unwrap_or(DEFAULT_SYNC_INTERVAL_MS),
        ),
        window: Duration::from_secs(config.general.mirror_stats_window_secs.max(1)),
        primary: pool_of(&p.name)?,
        mirror: mirror.clone(),
    };
    Some(Arc::new(Gate::new(settings)))
}

/// `mirror_max_lag_ms` when not set.
pub const DEFAULT_MAX_LAG_MS: u64 = 1000;
/// `mirror_sync_interval_ms` when not set.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 10;
