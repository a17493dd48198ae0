//! State a client session's two pumps (and its mirror worker) share: requests awaiting
//! ReadyForQuery, the transaction status, and the primary's time for recent requests.
//!
//! Everything is an atomic written by one side and read by the other, so no lock is taken
//! on the forwarding path.

use crate::compare::ResultDigest;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How many recent requests' primary timings are kept (pipelines deeper than this lose
/// the pairing, not correctness).
const RING: usize = 256;

pub struct SessionState {
    epoch: Instant,
    /// Requests (Query, Sync, FunctionCall) sent to the server.
    sent: AtomicU64,
    /// ReadyForQuery messages received from the server.
    done: AtomicU64,
    /// Transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    status: AtomicU8,
    /// Per request (by sequence number modulo RING): start, in ns since `epoch`.
    started_ns: [AtomicU64; RING],
    /// Per request: primary latency in ns (written at its ReadyForQuery).
    latency_ns: [AtomicU64; RING],
    /// Per request: transaction status after it (`I`, `T`, `E`).
    status_at: [AtomicU8; RING],
    /// Sequence number each `latency_ns`/`status_at` slot belongs to.
    latency_seq: [AtomicI64; RING],
    /// Set when the session ends: nothing more will be answered.
    closed: AtomicBool,
    /// The last request sent ended with a Sync (extended protocol).
    last_sync: AtomicBool,
    /// The server started COPY FROM STDIN for a request that ended with a Sync: it ignores
    /// Syncs during the copy, and answers the one the client sends after CopyDone/CopyFail,
    /// which completes that request rather than starting one.
    copy_sync_owed: AtomicBool,
    /// Wakes the mirror worker waiting for the primary's answer.
    progress: Notify,
    /// What the waiting mirror worker wants (see [`SessionState::wait_idle`]): an answer
    /// leaving no transaction open, to request `wake_idle` or a later one; or answers up to
    /// `wake_done`. `u64::MAX` when nobody waits: other answers wake nobody.
    wake_idle: AtomicU64,
    wake_done: AtomicU64,
    /// Per request: the digest of the primary's answer, when results are compared.
    digests: Option<Box<[DigestSlot]>>,
}

/// A [`ResultDigest`] in atomics (written by the primary's pump before the slot's
/// sequence number is published, read by the mirror worker after).
#[derive(Default)]
struct DigestSlot {
    tags: AtomicU64,
    tag_rows: AtomicU64,
    columns: AtomicU64,
    rows: AtomicU64,
    unordered: AtomicU64,
    ordered: AtomicU64,
    sqlstate: AtomicU64,
}

impl DigestSlot {
    fn store(&self, d: &ResultDigest) {
        let r = Ordering::Relaxed;
        self.tags.store(d.tags, r);
        self.tag_rows.store(d.tag_rows, r);
        self.columns.store(d.columns, r);
        self.rows.store(d.rows, r);
        self.unordered.store(d.unordered, r);
        self.ordered.store(d.ordered, r);
        let mut code = [0u8; 8];
        code[..5].copy_from_slice(&d.sqlstate);
        self.sqlstate.store(u64::from_le_bytes(code), r);
    }

    fn load(&self) -> ResultDigest {
        let r = Ordering::Relaxed;
        let code = self.sqlstate.load(r).to_le_bytes();
        ResultDigest {
            tags: self.tags.load(r),
            tag_rows: self.tag_rows.load(r),
            columns: self.columns.load(r),
            rows: self.rows.load(r),
            unordered: self.unordered.load(r),
            ordered: self.ordered.load(r),
            sqlstate: code[..5].try_into().expect("5 bytes"),
        }
    }
}

impl SessionState {
    /// State of a session whose answers are compared with the mirror's: keeps a digest
    /// of each recent answer too.
    pub fn comparing() -> Self {
        SessionState {
            digests: Some((0..RING).map(|_| DigestSlot::default()).collect()),
            ..SessionState::default()
        }
    }

    /// Whether answers are digested for comparison.
    #[inline]
    pub fn compares(&self) -> bool {
        self.digests.is_some()
    }

    /// The digest of the primary's answer to request `seq`, if still recorded.
    pub fn primary_digest(&self, seq: u64) -> Option<ResultDigest> {
        let digests = self.digests.as_ref()?;
        let slot = seq as usize % RING;
        if self.latency_seq[slot].load(Ordering::Acquire) != seq as i64 {
            return None;
        }
        let d = digests[slot].load();
        // Overwritten meanwhile by a request RING later: not this one's any more.
        std::sync::atomic::fence(Ordering::Acquire);
        (self.latency_seq[slot].load(Ordering::Relaxed) == seq as i64).then_some(d)
    }
}

impl Default for SessionState {
    fn default() -> Self {
        SessionState {
            epoch: Instant::now(),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            status: AtomicU8::new(b'I'),
            started_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            status_at: std::array::from_fn(|_| AtomicU8::new(b'I')),
            latency_seq: std::array::from_fn(|_| AtomicI64::new(-1)),
            closed: AtomicBool::new(false),
            last_sync: AtomicBool::new(false),
            copy_sync_owed: AtomicBool::new(false),
            progress: Notify::new(),
            wake_idle: AtomicU64::new(u64::MAX),
            wake_done: AtomicU64::new(u64::MAX),
            digests: None,
        }
    }
}

impl SessionState {
    /// A request was sent; returns its sequence number.
    #[inline]
    pub fn request_sent(&self, now: Instant, sync: bool) -> u64 {
        self.last_sync.store(sync, Ordering::Relaxed);
        let seq = self.sent.fetch_add(1, Ordering::Relaxed);
        let ns = now.duration_since(self.epoch).as_nanos() as u64;
        self.started_ns[seq as usize % RING].store(ns, Ordering::Relaxed);
        seq
    }

    /// The server answered CopyInResponse. The client sends nothing more before it gets it,
    /// so the last request sent is the one that started the copy.
    #[inline]
    pub fn copy_in_started(&self) {
        if self.last_sync.load(Ordering::Relaxed) {
            self.copy_sync_owed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a Sync from the client now completes an extended-protocol COPY (see
    /// `copy_sync_owed`) instead of being a request of its own.
    #[inline]
    pub fn copy_sync_owed(&self) -> bool {
        self.copy_sync_owed.load(Ordering::Relaxed)
    }

    /// The client sent the Sync [`SessionState::copy_sync_owed`] waited for.
    #[inline]
    pub fn copy_sync_received(&self) {
        self.copy_sync_owed.store(false, Ordering::Relaxed);
    }

    /// A ReadyForQuery arrived with `status`.
    #[inline]
    pub fn ready(&self, status: u8, now: Instant) {
        self.ready_with(status, now, None)
    }

    /// [`SessionState::ready`], with the digest of the answer it ends.
    #[inline]
    pub fn ready_with(&self, status: u8, now: Instant, digest: Option<&ResultDigest>) {
        let seq = self.done.load(Ordering::Relaxed);
        if let (Some(digests), Some(d)) = (&self.digests, digest) {
            // Unpublish the slot while it is rewritten (a reader re-checks the sequence).
            self.latency_seq[seq as usize % RING].store(-1, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Release);
            digests[seq as usize % RING].store(d);
        }
        self.status.store(status, Ordering::Relaxed);
        let slot = seq as usize % RING;
        let ns = now.duration_since(self.epoch).as_nanos() as u64;
        let started = self.started_ns[slot].load(Ordering::Relaxed);
        self.latency_ns[slot].store(ns.saturating_sub(started), Ordering::Relaxed);
        self.status_at[slot].store(status, Ordering::Relaxed);
        self.latency_seq[slot].store(seq as i64, Ordering::Release);
        // SeqCst with `wait_idle`'s side: either this sees the worker's wish or the worker
        // sees this answer.
        self.done.store(seq + 1, Ordering::SeqCst);
        let wanted = (status == b'I' && seq >= self.wake_idle.load(Ordering::SeqCst))
            || seq + 1 >= self.wake_done.load(Ordering::SeqCst);
        if wanted {
            self.progress.notify_waiters();
        }
    }

    /// The session is over: wakes a worker waiting for answers that will not come.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.progress.notify_waiters();
    }

    /// Waits until the primary has answered request `from` or a later one with no
    /// transaction open after it, or has answered requests up to `until` (exclusive).
    /// Returns `false` when the session ended instead.
    ///
    /// The mirror worker waits here for the end of the transaction it holds: one wake-up
    /// per transaction rather than one per answer.
    pub async fn wait_idle(&self, from: u64, until: u64) -> bool {
        let satisfied = |done: u64| {
            done >= until
                || (from..done).rev().any(|seq| {
                    // Too old to be recorded counts as an end: it was answered long ago.
                    self.answered_now(seq)
                        .is_some_and(|s| s.is_none_or(|status| status == b'I'))
                })
        };
        // Nobody waits once this returns or is dropped (the writer may race it against its
        // queue): answers stop waking anyone.
        struct Unregister<'a>(&'a SessionState);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.wake_idle.store(u64::MAX, Ordering::Relaxed);
                self.0.wake_done.store(u64::MAX, Ordering::Relaxed);
            }
        }
        let _unregister = Unregister(self);
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.wake_idle.store(from, Ordering::SeqCst);
            self.wake_done.store(until, Ordering::SeqCst);
            if satisfied(self.done.load(Ordering::SeqCst)) {
                return true;
            }
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            notified.await;
        }
    }

    /// The primary's answer to request `seq` so far: `None` while it is unanswered, else
    /// the status after it (`None` inside when no longer recorded).
    pub fn answered_now(&self, seq: u64) -> Option<Option<u8>> {
        if self.done.load(Ordering::Acquire) <= seq {
            return None;
        }
        let slot = seq as usize % RING;
        Some(
            (self.latency_seq[slot].load(Ordering::Acquire) == seq as i64)
                .then(|| self.status_at[slot].load(Ordering::Relaxed)),
        )
    }

    /// Requests sent and not yet answered.
    #[inline]
    pub fn pending(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(self.done.load(Ordering::Relaxed))
    }

    /// Sequence number the next request will get.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn status(&self) -> u8 {
        self.status.load(Ordering::Relaxed)
    }

    /// No request in flight and no transaction open: a safe point to reuse or close.
    #[inline]
    pub fn idle(&self) -> bool {
        self.pending() == 0 && self.status() == b'I'
    }

    /// How long before `now` the primary answered request `seq`, if it has been answered and
    /// is still recorded.
    pub fn answered_ago(&self, seq: u64, now: Instant) -> Option<Duration> {
        let slot = self.recorded(seq)?;
        let end_ns = self.started_ns[slot].load(Ordering::Relaxed)
            + self.latency_ns[slot].load(Ordering::Relaxed);
        let since_epoch = now.saturating_duration_since(self.epoch);
        Some(since_epoch.saturating_sub(Duration::from_nanos(end_ns)))
    }

    /// The primary's time for request `seq`, if it has been answered and is still recorded.
    pub fn primary_latency(&self, seq: u64) -> Option<Duration> {
        let slot = self.recorded(seq)?;
        Some(Duration::from_nanos(
            self.latency_ns[slot].load(Ordering::Relaxed),
        ))
    }

    /// The ring slot holding request `seq`'s answer, if it has been answered and is still
    /// recorded there.
    fn recorded(&self, seq: u64) -> Option<usize> {
        let slot = seq as usize % RING;
        (self.latency_seq[slot].load(Ordering::Acquire) == seq as i64).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_requests_with_ready_for_query() {
        let s = SessionState::default();
        let t0 = Instant::now();
        let a = s.request_sent(t0, false);
        let b = s.request_sent(t0, false);
        assert_eq!((a, b, s.pending()), (0, 1, 2));
        s.ready(b'T', t0 + Duration::from_millis(3));
        assert_eq!(s.primary_latency(0).unwrap().as_millis(), 3);
        assert_eq!(s.primary_latency(1), None);
        assert!(!s.idle());
        s.ready(b'I', t0 + Duration::from_millis(5));
        assert!(s.idle());
        assert_eq!(s.primary_latency(1).unwrap().as_millis(), 5);
        // When each was answered, seen from 9 ms after the start.
        let later = t0 + Duration::from_millis(9);
        assert_eq!(s.answered_ago(0, later).unwrap().as_millis(), 6);
        assert_eq!(s.answered_ago(1, later).unwrap().as_millis(), 4);
        assert_eq!(s.answered_ago(2, later), None, "not sent");
    }

    /// The mirror writer's wait: an end that came before the wait began satisfies it at
    /// once (the writer computes what to wait for after looking at the answers, and one may
    /// arrive in between); an end that comes later wakes it; answers inside a transaction
    /// do not.
    #[tokio::test]
    async fn wait_idle_sees_ends_from_before_and_after_it_began() {
        let s = std::sync::Arc::new(SessionState::default());
        let t0 = Instant::now();
        const WITHIN: Duration = Duration::from_secs(10);
        s.request_sent(t0, false);
        s.request_sent(t0, false);
        s.ready(b'T', t0);
        s.ready(b'I', t0);
        let now = tokio::time::timeout(WITHIN, s.wait_idle(1, u64::MAX)).await;
        assert!(now.expect("an end already there"));

        s.request_sent(t0, false);
        s.request_sent(t0, false);
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_idle(2, u64::MAX).await }
        });
        s.ready(b'T', t0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "woken inside the transaction");
        s.ready(b'I', t0);
        let woken = tokio::time::timeout(WITHIN, waiter).await;
        assert!(woken.expect("woken by the end").unwrap());
    }
}
