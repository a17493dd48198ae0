//! State a client session's two pumps (and its mirror worker) share: requests awaiting
//! ReadyForQuery, the transaction status, and the primary's time for recent requests.
//!
//! Everything is an atomic written by one side and read by the other, so no lock is taken
//! on the forwarding path.

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
    /// Wakes the mirror worker waiting for the primary's answer.
    progress: Notify,
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
            progress: Notify::new(),
        }
    }
}

impl SessionState {
    /// A request was sent; returns its sequence number.
    #[inline]
    pub fn request_sent(&self, now: Instant) -> u64 {
        let seq = self.sent.fetch_add(1, Ordering::Relaxed);
        let ns = now.duration_since(self.epoch).as_nanos() as u64;
        self.started_ns[seq as usize % RING].store(ns, Ordering::Relaxed);
        seq
    }

    /// A ReadyForQuery arrived with `status`.
    #[inline]
    pub fn ready(&self, status: u8, now: Instant) {
        let seq = self.done.load(Ordering::Relaxed);
        self.status.store(status, Ordering::Relaxed);
        let slot = seq as usize % RING;
        let ns = now.duration_since(self.epoch).as_nanos() as u64;
        let started = self.started_ns[slot].load(Ordering::Relaxed);
        self.latency_ns[slot].store(ns.saturating_sub(started), Ordering::Relaxed);
        self.status_at[slot].store(status, Ordering::Relaxed);
        self.latency_seq[slot].store(seq as i64, Ordering::Release);
        self.done.store(seq + 1, Ordering::Release);
        // Only costs an atomic when no mirror worker waits.
        self.progress.notify_waiters();
    }

    /// The session is over: wakes a worker waiting for answers that will not come.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.progress.notify_waiters();
    }

    /// Waits until the primary has answered request `seq`; returns the transaction status
    /// after it, or `None` when the session ended first (or the answer is too old to be
    /// recorded).
    pub async fn answered(&self, seq: u64) -> Option<u8> {
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) > seq {
                let slot = seq as usize % RING;
                return (self.latency_seq[slot].load(Ordering::Acquire) == seq as i64)
                    .then(|| self.status_at[slot].load(Ordering::Relaxed));
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
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

    /// The primary's time for request `seq`, if it has been answered and is still recorded.
    pub fn primary_latency(&self, seq: u64) -> Option<Duration> {
        let slot = seq as usize % RING;
        if self.latency_seq[slot].load(Ordering::Acquire) != seq as i64 {
            return None;
        }
        Some(Duration::from_nanos(
            self.latency_ns[slot].load(Ordering::Relaxed),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_requests_with_ready_for_query() {
        let s = SessionState::default();
        let t0 = Instant::now();
        let a = s.request_sent(t0);
        let b = s.request_sent(t0);
        assert_eq!((a, b, s.pending()), (0, 1, 2));
        s.ready(b'T', t0 + Duration::from_millis(3));
        assert_eq!(s.primary_latency(0).unwrap().as_millis(), 3);
        assert_eq!(s.primary_latency(1), None);
        assert!(!s.idle());
        s.ready(b'I', t0 + Duration::from_millis(5));
        assert!(s.idle());
        assert_eq!(s.primary_latency(1).unwrap().as_millis(), 5);
    }
}
