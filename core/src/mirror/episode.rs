//! Connection failure episodes of a mirror session. A failure starts an episode: attempts
//! back off exponentially (100 ms to 5 s), requests arriving meanwhile are counted as
//! `connection` errors without trying, and the log says so once when the episode starts and
//! once when it ends, never once per request.

use super::MirrorTarget;
use std::time::{Duration, Instant};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Episode {
    /// While set, no connection attempt before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// When the current episode started (None: the mirror is healthy).
    failing_since: Option<Instant>,
    failed_requests: u64,
}

impl Default for Episode {
    fn default() -> Self {
        Episode {
            retry_at: None,
            backoff: BACKOFF_MIN,
            failing_since: None,
            failed_requests: 0,
        }
    }
}

impl Episode {
    pub fn is_failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// Whether an attempt must wait for the backoff to expire.
    pub fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// A request failed without an attempt (backoff, disabled pool).
    pub fn count_request(&mut self) {
        self.failed_requests += 1;
    }

    /// An attempt or a connection failed: starts an episode, or backs off further.
    pub fn failed(&mut self, target: &MirrorTarget, why: &str) {
        self.failed_requests += 1;
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::warn!(
                database = &*target.database,
                mirror = target.pool.name(),
                "mirror unavailable, requests are counted as connection errors until it is back: {why}"
            );
        } else {
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    /// A connection was made: ends the episode, if any.
    pub fn restored(&mut self, target: &MirrorTarget) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                database = &*target.database,
                mirror = target.pool.name(),
                "mirror connection restored after {:.1}s ({} requests failed meanwhile)",
                since.elapsed().as_secs_f64(),
                self.failed_requests
            );
        }
        *self = Episode::default();
    }
}
