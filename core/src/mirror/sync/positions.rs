//! The rules of gating reads on the replication position, without I/O: what the poller's
//! rounds learned (the primary's position and the mirror's, each with when it was
//! read), whether a read answered at a given instant may go to the mirror, when the
//! next round is due, and the lag the rounds measured.
//!
//! # Why a position read after the primary's answer is enough
//! A read's snapshot sees exactly the transactions whose commit records were in the WAL
//! before it was taken, and it was taken before the primary answered. A position read
//! by a query *sent* after the answer reached the proxy (`pg_current_wal_insert_lsn()`
//! is evaluated later still) is therefore at or past the end of every commit the read
//! saw. Once the mirror has applied that far, it has everything the read saw, and the
//! client's session gained nothing: no query of its own, no wait. One such position
//! serves every read answered before the round was sent, so the rate of rounds, not of
//! reads, is what the primary sees.
//!
//! The position is an upper bound: the mirror may also have applied transactions that
//! committed after the primary's snapshot (another client's write of a row the read
//! returns, committed while the read waited for the next round). Those comparisons can
//! still differ; `docs/benchmarks.md` measures how often, and [`super::recheck`] gives
//! each such comparison a second look before it counts as a mismatch.
//!
//! # Lag
//! Each primary position is *resolved* by the first round that finds the mirror at or
//! past it: its lag is the time from the round that read it being sent to the round that
//! saw it applied being answered, an upper bound with the resolution of the rounds. A
//! position not yet resolved gives the current lag's lower bound (its age), which keeps
//! growing while replication is stopped.

use super::lsn::Lsn;
use super::window::{Summary, Window};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Time between two rounds when no read waits: the status and lag of the replication are
/// read once a second whatever the traffic.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// After a round fails, the next waits at least this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Most positions awaiting resolution (replication stopped for a long time): past it,
/// new ones are not tracked, the oldest still ages.
const MAX_UNRESOLVED: usize = 10_000;

/// What one round read.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// When the round's queries were sent.
    pub sent: Instant,
    /// When their answers arrived.
    pub received: Instant,
    /// The primary's insert position.
    pub primary: Lsn,
    /// The primary's WAL page size (`wal_block_size`).
    pub page_size: u64,
    /// How far the mirror has applied, when it can be read.
    pub applied: Option<Lsn>,
    /// Why replication is not running, when it is not.
    pub stopped: Option<String>,
}

/// The state of the replication, as the last round found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// No round yet.
    Unknown,
    Streaming,
    /// Replication is not running: the cause.
    Stopped(String),
    /// The positions could not be read: why.
    Unreadable(String),
}

impl Health {
    /// The cause of a replication that is not known to run (`None` while streaming or
    /// before the first round).
    pub fn problem(&self) -> Option<String> {
        match self {
            Health::Unknown | Health::Streaming => None,
            Health::Stopped(cause) => Some(format!("replication stopped: {cause}")),
            Health::Unreadable(why) => Some(format!("replication position unreadable: {why}")),
        }
    }
}

/// Whether a read may go to the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The mirror has applied what the primary had when it answered.
    Synced,
    /// Not yet (or no round since the answer).
    Wait,
}

/// What the rounds measured, for metrics and readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub health: Health,
    /// Lag over the stats window: time (ms) and WAL bytes.
    pub lag_ms: Summary,
    pub lag_bytes: Summary,
    /// Age of the oldest primary position not yet seen applied (ms), 0 when none.
    pub current_lag_ms: f64,
    /// Delay gating added to reads (ms, from the primary's answer to the release).
    pub delay_ms: Summary,
    /// Reads released because the mirror caught up, and after `mirror_max_lag_ms`.
    pub synced: u64,
    pub lagging: u64,
    /// Rounds run, and queries sent per server: the primary, the mirror.
    pub rounds: u64,
    pub queries: [u64; 2],
    /// Second looks at differing reads ([`super::recheck`]): equal, differed again, not
    /// possible.
    pub rechecks: [u64; 3],
}

/// The positions and measures of one mirror target's gate.
pub struct Positions {
    interval: Duration,
    max_lag: Duration,
    /// Primary positions by when their round was sent, oldest first.
    primary: VecDeque<(Instant, Lsn)>,
    /// The furthest the mirror was seen to have applied.
    applied: Option<Lsn>,
    /// Primary positions not yet seen applied (for the lag in time).
    unresolved: VecDeque<(Instant, Lsn)>,
    lag_ms: Window,
    lag_bytes: Window,
    delay_ms: Window,
    health: Health,
    /// When the last round was sent, and whether it failed.
    last_sent: Option<Instant>,
    last_failed: bool,
    last_probe: Option<Instant>,
    /// Rounds since the last probe that found positions unresolved (their spacing grows).
    follow_ups: u32,
    synced: u64,
    lagging: u64,
    rounds: u64,
    queries: [u64; 2],
}

impl Positions {
    /// Rounds at most every `interval` while reads wait; reads wait at most `max_lag`;
    /// lag quantiles over `window`.
    pub fn new(interval: Duration, max_lag: Duration, window: Duration) -> Positions {
        Positions {
            interval,
            max_lag,
            primary: VecDeque::new(),
            applied: None,
            unresolved: VecDeque::new(),
            lag_ms: Window::new(window),
            lag_bytes: Window::new(window),
            delay_ms: Window::new(window),
            health: Health::Unknown,
            last_sent: None,
            last_failed: false,
            last_probe: None,
            follow_ups: 0,
            synced: 0,
            lagging: 0,
            rounds: 0,
            queries: [0; 2],
        }
    }

    /// A round is sent at `at`, with `queries` queries to the primary and the mirror.
    pub fn round_sent(&mut self, at: Instant, waiting: bool, queries: [u64; 2]) {
        if self.last_probe.is_none_or(|p| at >= p + PROBE_EVERY) {
            self.last_probe = Some(at);
            self.follow_ups = 0;
        } else if !waiting {
            self.follow_ups += 1;
        }
        self.last_sent = Some(at);
        self.rounds += 1;
        self.queries[0] += queries[0];
        self.queries[1] += queries[1];
    }

    /// A round's answers.
    pub fn round_done(&mut self, r: Round) {
        self.last_failed = false;
        self.health = match &r.stopped {
            Some(cause) => Health::Stopped(cause.clone()),
            None if r.applied.is_none() => {
                Health::Unreadable("the mirror's position is NULL".into())
            }
            None => Health::Streaming,
        };
        let primary = r.primary.record_boundary(r.page_size);
        if self.primary.back().is_none_or(|&(_, last)| primary >= last) {
            self.primary.push_back((r.sent, primary));
        }
        // Positions read before any read still waiting could use them.
        while self.primary.len() > 1
            && r.sent.saturating_duration_since(self.primary[0].0) > self.max_lag + PROBE_EVERY
        {
            self.primary.pop_front();
        }
        if self.unresolved.len() < MAX_UNRESOLVED
            && self.unresolved.back().is_none_or(|&(_, l)| primary > l)
        {
            self.unresolved.push_back((r.sent, primary));
        }
        if let Some(applied) = r.applied {
            let applied = self.applied.map_or(applied, |a| a.max(applied));
            self.applied = Some(applied);
            self.lag_bytes
                .record(r.received, primary.bytes_after(applied) as f64);
            while let Some(&(sent, lsn)) = self.unresolved.front() {
                if lsn > applied {
                    break;
                }
                self.unresolved.pop_front();
                let ms = r.received.saturating_duration_since(sent).as_secs_f64() * 1e3;
                self.lag_ms.record(r.received, ms);
            }
        }
    }

    /// A round failed (no connection, an error, no answer in time).
    pub fn round_failed(&mut self, why: String) {
        self.last_failed = true;
        self.health = Health::Unreadable(why);
    }

    /// Whether a read the primary answered at `answered_at` may go to the mirror: a round
    /// sent after the answer read the primary's position, and the mirror has applied it.
    pub fn check(&self, answered_at: Instant) -> Check {
        let required = self.primary.iter().find(|&&(sent, _)| sent >= answered_at);
        match (required, self.applied) {
            (Some(&(_, required)), Some(applied)) if applied >= required => Check::Synced,
            _ => Check::Wait,
        }
    }

    /// A read answered at `answered_at` was released at `now`: synced, or after
    /// `mirror_max_lag_ms` (lagging).
    pub fn released(&mut self, answered_at: Instant, now: Instant, lagging: bool) {
        if lagging {
            self.lagging += 1;
        } else {
            self.synced += 1;
        }
        let ms = now.saturating_duration_since(answered_at).as_secs_f64() * 1e3;
        self.delay_ms.record(now, ms);
    }

    /// When the next round is due, `waiting` when reads wait for one: every `interval`
    /// while reads wait; while a position read without waiters is unresolved, after a
    /// spacing that doubles from `interval` up to [`PROBE_EVERY`]; else the next probe.
    /// After a failed round, not before [`RETRY_AFTER`].
    pub fn next_due(&self, waiting: bool) -> Option<Instant> {
        let Some(last) = self.last_sent else {
            return None; // now
        };
        if self.last_failed {
            return Some(last + RETRY_AFTER);
        }
        let probe = self.last_probe.map_or(last, |p| p + PROBE_EVERY);
        let sooner = if waiting {
            Some(last + self.interval)
        } else if !self.unresolved.is_empty() && matches!(self.health, Health::Streaming) {
            let spacing = self.interval.saturating_mul(1 << self.follow_ups.min(16));
            Some(last + spacing.min(PROBE_EVERY))
        } else {
            None
        };
        Some(sooner.map_or(probe, |s| s.min(probe)))
    }

    /// What the rounds measured, at `now`.
    pub fn report(&mut self, now: Instant) -> Report {
        Report {
            health: self.health.clone(),
            lag_ms: self.lag_ms.summary(now),
            lag_bytes: self.lag_bytes.summary(now),
            current_lag_ms: self.unresolved.front().map_or(0.0, |&(sent, _)| {
                now.saturating_duration_since(sent).as_secs_f64() * 1e3
            }),
            delay_ms: self.delay_ms.summary(now),
            synced: self.synced,
            lagging: self.lagging,
            rounds: self.rounds,
            queries: self.queries,
            rechecks: [0; 3],
        }
    }

    /// `RESET MIRROR STATS`: the counts of released reads start again.
    pub fn reset(&mut self) {
        self.synced = 0;
        self.lagging = 0;
        self.delay_ms.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn positions() -> Positions {
        Positions::new(10 * MS, 1000 * MS, Duration::from_secs(5))
    }

    fn round(t0: Instant, sent_ms: u32, primary: u64, applied: u64) -> Round {
        Round {
            sent: t0 + sent_ms * MS,
            received: t0 + (sent_ms + 1) * MS,
            primary: Lsn(primary),
            page_size: 8192,
            applied: Some(Lsn(applied)),
            stopped: None,
        }
    }

    #[test]
    fn a_read_waits_for_a_position_read_after_its_answer_and_for_the_mirror_to_apply_it() {
        let t0 = Instant::now();
        let mut p = positions();
        // A round before the answer: its position says nothing about the read.
        p.round_done(round(t0, 0, 5000, 5000));
        let answered = t0 + 2 * MS;
        assert_eq!(p.check(answered), Check::Wait);
        // The next round: the primary is at 6000, the mirror at 5500.
        p.round_done(round(t0, 10, 6000, 5500));
        assert_eq!(p.check(answered), Check::Wait);
        // The mirror applies 6000: the read may go.
        p.round_done(round(t0, 20, 7000, 6000));
        assert_eq!(p.check(answered), Check::Synced);
        // A later read needs the later position.
        assert_eq!(p.check(t0 + 15 * MS), Check::Wait);
        // Lag of the positions: 6000 read at 10 ms, seen applied at 21 ms.
        let r = p.report(t0 + 21 * MS);
        assert_eq!(r.lag_ms.samples, 2);
        assert_eq!(r.lag_ms.max, 11.0);
        assert_eq!(r.lag_bytes.max, 1000.0);
        assert_eq!(
            r.current_lag_ms, 1.0,
            "7000, read at 20 ms, is not applied yet"
        );
        assert_eq!(r.health, Health::Streaming);
    }

    #[test]
    fn an_idle_primary_just_past_a_page_header_counts_as_applied() {
        let t0 = Instant::now();
        let mut p = positions();
        p.round_done(round(t0, 5, 8192 * 7 + 24, 8192 * 7));
        assert_eq!(p.check(t0), Check::Synced);
    }

    #[test]
    fn rounds_come_every_interval_while_reads_wait_and_once_a_second_otherwise() {
        let t0 = Instant::now();
        let mut p = positions();
        assert_eq!(p.next_due(false), None, "the first round at once");
        p.round_sent(t0, false, [1, 0]);
        p.round_done(round(t0, 0, 5000, 5000));
        assert_eq!(p.next_due(true), Some(t0 + 10 * MS));
        assert_eq!(p.next_due(false), Some(t0 + PROBE_EVERY));
        // A probe that finds the mirror behind follows up, more slowly each time.
        let t1 = t0 + PROBE_EVERY;
        p.round_sent(t1, false, [1, 0]);
        p.round_done(Round {
            sent: t1,
            received: t1,
            ..round(t0, 0, 9000, 5000)
        });
        assert_eq!(p.next_due(false), Some(t1 + 10 * MS));
        p.round_sent(t1 + 10 * MS, false, [1, 0]);
        assert_eq!(p.next_due(false), Some(t1 + 30 * MS));
        // A failure backs off.
        p.round_failed("connection refused".into());
        assert_eq!(p.next_due(true), Some(t1 + 10 * MS + RETRY_AFTER));
        assert!(p
            .report(t1)
            .health
            .problem()
            .unwrap()
            .contains("connection refused"));
        let r = p.report(t1);
        assert_eq!((r.rounds, r.queries), (3, [3, 0]));
    }

    #[test]
    fn a_stopped_replication_is_named_and_its_lag_keeps_growing() {
        let t0 = Instant::now();
        let mut p = positions();
        p.round_done(Round {
            stopped: Some("replication slot \"s\" is not active".into()),
            ..round(t0, 0, 9000, 5000)
        });
        let r = p.report(t0 + 3000 * MS);
        assert!(r.health.problem().unwrap().contains("not active"));
        assert_eq!(r.current_lag_ms, 3000.0);
        // No follow-ups while stopped: the next probe only.
        p.round_sent(t0, false, [1, 0]);
        assert_eq!(p.next_due(false), Some(t0 + PROBE_EVERY));
    }

    #[test]
    fn released_reads_are_counted_with_their_delay() {
        let t0 = Instant::now();
        let mut p = positions();
        p.released(t0, t0 + 12 * MS, false);
        p.released(t0, t0 + 1000 * MS, true);
        let r = p.report(t0 + 1000 * MS);
        assert_eq!((r.synced, r.lagging), (1, 1));
        assert_eq!(r.delay_ms.p50, 12.0);
        p.reset();
        assert_eq!(p.report(t0).synced, 0);
    }
}
