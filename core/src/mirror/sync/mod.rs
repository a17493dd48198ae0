//! Comparing answers at the same point of the replication stream: a mirror kept in sync by
//! replication (`mirror_sync`) lags the primary, so a read mirrored at once can see older
//! data than the primary's answer did and differ for no fault of the new server.
//!
//! ```text
//! mirror worker: transaction answered by the primary at t --wait(t)--> Gate
//!   Gate <--positions-- poller task (own connections) --rounds--> primary [+ standby]
//!   released when a round sent after t read the primary at L and the mirror has applied L,
//!   or after mirror_max_lag_ms (then the comparison is set aside as `lagging`)
//! ```
//!
//! * [`positions`]: the rules, without I/O (why a position read after the answer is
//!   enough, when rounds are due, the lag they measure).
//! * [`poller`]: the task and its queries.
//! * [`recheck`]: the rules of a second look at a gated read whose answers differed
//!   ([`Gate::recheck`] asks the primary again on the gate's own connection).
//! * [`lsn`], [`window`]: WAL positions, recent quantiles.
//!
//! A target's [`Gate`] is shared by all its sessions and kept by a RELOAD that leaves its
//! settings alone; its task stops when the last target holding it goes.

pub mod lsn;
mod poller;
pub mod positions;
pub mod readiness;
pub mod recheck;
pub mod window;

use crate::backend::{Pool, Server};
use crate::compare::{Digest, ResultDigest};
use crate::config::MirrorSync;
use bytes::Bytes;
use positions::{Check, Positions};
pub use positions::{Health, Report};
use recheck::Budget;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// How a gate reads positions and how long reads may wait.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `logical` or `physical` (a gate is never made for `none`).
    pub mode: MirrorSync,
    /// `mirror_sync_slot`.
    pub slot: Option<String>,
    /// `mirror_max_lag_ms`.
    pub max_lag: Duration,
    /// `mirror_sync_interval_ms`.
    pub interval: Duration,
    /// The window of the lag quantiles (`mirror_stats_window_secs`).
    pub window: Duration,
    /// The source pool: where the primary's position is read.
    pub primary: Pool,
    /// The mirror pool: where a standby's replay position is read.
    pub mirror: Pool,
}

impl PartialEq for Settings {
    fn eq(&self, other: &Settings) -> bool {
        self.mode == other.mode
            && self.slot == other.slot
            && self.max_lag == other.max_lag
            && self.interval == other.interval
            && self.window == other.window
            && self.primary.ptr_eq(&other.primary)
            && self.mirror.ptr_eq(&other.mirror)
    }
}

/// How a read waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gated {
    /// The mirror had applied what the primary had when it answered.
    Synced,
    /// It had not, after `mirror_max_lag_ms`: the read goes anyway, its comparison set
    /// aside.
    Lagging,
}

/// What the gate's sessions and its poller share.
pub(crate) struct Shared {
    settings: Settings,
    positions: Mutex<Positions>,
    /// Reads waiting now.
    waiting: AtomicUsize,
    /// A read started waiting (the poller may owe a round sooner).
    wake: Notify,
    /// Raised after each round.
    progress: watch::Sender<u64>,
    started: AtomicBool,
    /// Second looks left ([`recheck`]).
    budget: Mutex<Budget>,
    /// The connection second looks run on at the primary, opened at the first.
    recheck_conn: tokio::sync::Mutex<Option<Server>>,
    /// Second looks by what they found ([`Rechecked`]).
    rechecks: [AtomicU64; 3],
}

/// What a second look at a differing read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rechecked {
    /// Equal: the first comparison is set aside.
    Equal,
    /// Different again: the mismatch stands.
    Differed,
    /// None was possible (budget spent, the primary failed, the mirror lagged, the
    /// connection broke, or the read cannot run again alone: inside a transaction, part of
    /// a batch, its primary answer no longer recorded): the mismatch stands.
    Unavailable,
}

/// The gate of one mirror target.
pub struct Gate {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Gate {
    pub fn new(settings: Settings) -> Gate {
        let positions = Positions::new(settings.interval, settings.max_lag, settings.window);
        Gate {
            shared: Arc::new(Shared {
                settings,
                positions: Mutex::new(positions),
                waiting: AtomicUsize::new(0),
                wake: Notify::new(),
                progress: watch::Sender::new(0),
                started: AtomicBool::new(false),
                budget: Mutex::new(Budget::new(recheck::RECHECKS_PER_SECOND)),
                recheck_conn: tokio::sync::Mutex::new(None),
                rechecks: Default::default(),
            }),
            stop: CancellationToken::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Starts the poller task on the current runtime, once (no-op outside a runtime: the
    /// first wait starts it then).
    pub fn start(&self) {
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(poller::run(self.shared.clone(), self.stop.clone()));
            }
            Err(_) => self.shared.started.store(false, Ordering::Release),
        }
    }

    /// Reads the positions once, on connections of its own: why they cannot be read, if
    /// they cannot (no connection, no such slot, not a standby). A replication that is
    /// merely stopped can be read and is not an error here (readiness says it).
    pub async fn probe(&self) -> Result<Health, String> {
        let mut poller = poller::Poller::new(self.shared.settings.clone()).slot_only();
        let round = poller.round(Instant::now()).await?;
        if round.applied.is_none() {
            return Err(round
                .stopped
                .unwrap_or_else(|| "the mirror's position is NULL".to_string()));
        }
        Ok(match round.stopped {
            Some(cause) => Health::Stopped(cause),
            None => Health::Streaming,
        })
    }

    /// Waits until the mirror has applied what the primary had committed when it
    /// answered at `answered_at`, or until `mirror_max_lag_ms` after that. Cancel-safe: a
    /// wait dropped and made again finds the rounds it missed.
    pub async fn wait(&self, answered_at: Instant) -> Gated {
        self.start();
        let deadline = answered_at + self.shared.settings.max_lag;
        let mut progress = self.shared.progress.subscribe();
        let _waiting = Waiting::register(&self.shared);
        loop {
            progress.borrow_and_update();
            let now = Instant::now();
            let check = self.positions().check(answered_at);
            let gated = match check {
                Check::Synced => Some(Gated::Synced),
                Check::Wait if now >= deadline => Some(Gated::Lagging),
                Check::Wait => None,
            };
            if let Some(gated) = gated {
                self.positions()
                    .released(answered_at, now, gated == Gated::Lagging);
                return gated;
            }
            tokio::select! {
                changed = progress.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(deadline.into()).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// Whether a second look at a differing read may start now ([`recheck::Budget`]).
    pub fn recheck_allowed(&self, now: Instant) -> bool {
        self.shared
            .budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(now)
    }

    /// Asks the primary `request` (a read, [`recheck::rerun`]) again, on the gate's
    /// own connection, read-only: the digest of its answer and when it arrived, or why
    /// there is none (an error answer included). Whatever session state the request left
    /// (settings, advisory locks) is discarded after it.
    pub async fn recheck(&self, request: Bytes) -> Result<(ResultDigest, Instant), String> {
        let mut conn = self.shared.recheck_conn.lock().await;
        let primary = &self.shared.settings.primary;
        let asked = tokio::time::timeout(recheck::PRIMARY_TIMEOUT, async {
            if conn.is_none() {
                *conn = Some(
                    primary
                        .connect_dedicated()
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            let server = conn.as_mut().expect("connected");
            server
                .execute("SET default_transaction_read_only = on; SET statement_timeout = 2000")
                .await
                .map_err(|e| e.to_string())?;
            let mut digest = Digest::default();
            server
                .replay(&request, |tag, msg| digest.feed(tag, msg))
                .await
                .map_err(|e| e.to_string())?;
            let answered_at = Instant::now();
            server
                .execute("DISCARD ALL")
                .await
                .map_err(|e| e.to_string())?;
            let digest = digest.take();
            if digest.failed() {
                return Err(format!(
                    "the primary answered with {}",
                    String::from_utf8_lossy(&digest.sqlstate)
                ));
            }
            Ok((digest, answered_at))
        })
        .await;
        match asked {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(why)) => {
                *conn = None;
                Err(why)
            }
            Err(_) => {
                *conn = None;
                Err("no answer in time".to_string())
            }
        }
    }

    /// Counts what a second look found.
    pub fn rechecked(&self, found: Rechecked) {
        self.shared.rechecks[found as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// What the rounds measured so far.
    pub fn report(&self) -> Report {
        let mut report = self.positions().report(Instant::now());
        for (n, count) in report.rechecks.iter_mut().zip(&self.shared.rechecks) {
            *n = count.load(Ordering::Relaxed);
        }
        report
    }

    /// `RESET MIRROR STATS`.
    pub fn reset(&self) {
        self.positions().reset();
        for count in &self.shared.rechecks {
            count.store(0, Ordering::Relaxed);
        }
    }

    fn positions(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.shared
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a waiting read while it waits, and wakes the poller when it starts.
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn register(shared: &'a Shared) -> Waiting<'a> {
        shared.waiting.fetch_add(1, Ordering::AcqRel);
        shared.wake.notify_one();
        Waiting(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
