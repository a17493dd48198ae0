//! The writer's rules: what goes to the mirror, and what to wait for before it does.
//!
//! The writer takes every request already queued, sends what the [`Backlog`] says is
//! ready (finished transactions, in one write), and otherwise says what to wait for: the
//! primary finishing the held transaction, or the client's next request. After a wait
//! for the primary it may linger a moment so that a fast client's next transactions join
//! the same write: one wake-up of the mirror's backend and of the worker for several
//! requests rather than one each.

use super::inflight::{gather, InFlight};
use super::{Gating, Pipeline};
use crate::mirror::ledger::Answer;
use crate::mirror::request::Request;
use crate::mirror::sync::Gated;
use crate::mirror::MirrorError;
use crate::protocol::TxStatus;
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long the writer lingers after a finished transaction, and how many sequence
/// numbers it waits for at most.
pub const LINGER: Duration = Duration::from_millis(2);
const LINGER_SEQS: u64 = 16;

/// What the writer does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes to the mirror in one go: the requests are in flight from now.
    Write(Bytes),
    /// Wait until the primary answers request `from` or a later one leaving no
    /// transaction open, or answers requests up to `until` (the hold limit), as
    /// [`Ledger::wait_idle`](crate::mirror::ledger::Ledger::wait_idle) does; then report
    /// the result to [`Pipeline::primary_waited`].
    AwaitPrimary { from: u64, until: u64 },
    /// Wait at most [`LINGER`] for the primary to answer requests up to `until`.
    Linger { until: u64 },
    /// Wait until the mirror has applied what the primary had committed when it answered
    /// at `answered_at` ([`crate::mirror::sync::Gate::wait`]), then report how the wait
    /// ended to [`Pipeline::synced`].
    AwaitSync { answered_at: Instant },
    /// Ask the primary these bytes again, on the gate's connection
    /// ([`crate::mirror::sync::Gate::recheck`]), and hand the answer to
    /// [`Pipeline::rechecked_on_primary`].
    Recheck(Bytes),
    /// A second look waits for the primary (the driver's [`Step::Recheck`]) or for the
    /// mirror's answer: ask again after either.
    AwaitRecheck,
    /// Wait for the client's next request ([`Pipeline::offer`], or
    /// [`Pipeline::queue_closed`]); and, when `watch_from` is set, for the primary to end
    /// a transaction from there on (a cut transaction to end), then ask again.
    AwaitClient { watch_from: Option<u64> },
    /// Transaction mode: everything was answered and the mirror is idle; give the
    /// connection back until the client's next request.
    Release,
    /// The queue is closed and everything was sent.
    Finished,
}

/// What a look at the queue found.
pub enum Taken {
    Request(Request),
    Empty,
    /// The session's tap is gone and the queue is drained.
    Closed,
}

/// The session's queue, looked at without waiting.
pub trait Inbox {
    fn try_take(&mut self) -> Taken;
}

impl Inbox for mpsc::UnboundedReceiver<Request> {
    fn try_take(&mut self) -> Taken {
        match self.try_recv() {
            Ok(r) => Taken::Request(r),
            Err(mpsc::error::TryRecvError::Empty) => Taken::Empty,
            Err(mpsc::error::TryRecvError::Disconnected) => Taken::Closed,
        }
    }
}

impl Pipeline {
    /// A request from the queue (the driver waited for it).
    pub fn offer(&mut self, mut r: Request) {
        if let Some(classifier) = &mut self.classifier {
            if r.kind.is_none() && !r.continues {
                r.kind = Some(classifier.request(&r.payload, r.first_seq(), &self.definitions));
            }
        }
        let Pipeline {
            conn,
            ledger,
            events,
            target,
            ..
        } = self;
        conn.idle_seen = false;
        conn.backlog.take(
            r,
            |seq| ledger.answer(seq),
            |r| Pipeline::dropped(events, target, r),
        );
    }

    /// The queue closed: the session is over.
    pub fn queue_closed(&mut self) {
        self.conn.queue_closed = true;
    }

    /// A wait the writer was told to do ([`Step::AwaitPrimary`]) ended: `seen` when the
    /// primary answered as waited for, `false` when the session ended first.
    pub fn primary_waited(&mut self, seen: bool) {
        if seen {
            self.conn.idle_seen = true;
            self.conn.linger_due = true;
        } else {
            self.conn.session_closed = true;
        }
    }

    /// The wait of [`Step::AwaitSync`] ended.
    pub fn synced(&mut self, gated: Gated) {
        if self.recheck_synced(gated) {
            return;
        }
        if let Some(gating) = &mut self.conn.gating {
            gating.gated = Some(gated);
        }
    }

    /// What the writer does next, having taken what `inbox` already has.
    pub fn next_step(&mut self, inbox: &mut impl Inbox, now: Instant) -> Result<Step, MirrorError> {
        if let Some(step) = self.recheck_next(now) {
            return Ok(step);
        }
        if self.conn.finished {
            return Ok(Step::Finished);
        }
        if let Some(gating) = self.conn.gating.take() {
            let Some(gated) = gating.gated else {
                let answered_at = gating.answered_at;
                self.conn.gating = Some(gating);
                return Ok(Step::AwaitSync { answered_at });
            };
            self.conn.idle_seen = false;
            return self.send(gating.batch, now, Some(gated)).map(Step::Write);
        }
        if std::mem::take(&mut self.conn.linger_due) {
            if let Some(until) = self.linger_until(now) {
                return Ok(Step::Linger { until });
            }
        }
        self.take_queued(inbox);
        self.end_cut_transaction(inbox);
        let batch = if self.conn.queue_closed {
            // The session ended: whatever is held goes out as it is.
            self.conn.backlog.take_all()
        } else {
            let ledger = &self.ledger;
            let hold_limit = self.hold_limit();
            self.conn
                .backlog
                .ready(|seq| ledger.answer(seq), hold_limit)
        };
        let batch = self.filter(batch);
        if !batch.is_empty() {
            self.conn.idle_seen = false;
            if let Some(answered_at) = self.gate_for(&batch, now) {
                self.conn.gating = Some(Gating {
                    batch,
                    answered_at,
                    gated: None,
                });
                return Ok(Step::AwaitSync { answered_at });
            }
            return self.send(batch, now, None).map(Step::Write);
        }
        if self.conn.queue_closed {
            self.conn.finished = true;
            return Ok(Step::Finished);
        }
        if std::mem::take(&mut self.conn.session_closed) {
            // Nothing more will be answered: the tap goes next, closing the queue.
            return Ok(Step::AwaitClient { watch_from: None });
        }
        match self.conn.backlog.wake_at(self.hold_limit()) {
            // Held requests wait for the primary to finish their transaction.
            Some((from, until)) if !self.conn.idle_seen => Ok(Step::AwaitPrimary { from, until }),
            // Nothing to send until the client's next request, or until the primary
            // finishes a transaction whose end was dropped while its head is held or open
            // on the mirror.
            _ => {
                self.conn.idle_seen = false;
                let watch_from = self.conn.backlog.watch_from();
                if watch_from.is_none() && self.may_release() {
                    return Ok(Step::Release);
                }
                Ok(Step::AwaitClient { watch_from })
            }
        }
    }

    /// Takes everything already queued: the primary answered it or will answer it first.
    fn take_queued(&mut self, inbox: &mut impl Inbox) {
        while !self.conn.queue_closed {
            match inbox.try_take() {
                Taken::Request(r) => self.offer(r),
                Taken::Empty => break,
                Taken::Closed => self.conn.queue_closed = true,
            }
        }
    }

    /// A transaction whose end was never queued (dropped) is held or open on the mirror,
    /// and the primary has finished it: it ends now rather than when the client's next
    /// mirrored request shows the gap. A request is queued before the primary sees it, so
    /// one the primary answered since the queue was last looked at is queued by now:
    /// looked at once more before cutting.
    fn end_cut_transaction(&mut self, inbox: &mut impl Inbox) {
        let ledger = &self.ledger;
        if self.conn.queue_closed || !self.conn.backlog.cut_short(|seq| ledger.answer(seq)) {
            return;
        }
        match inbox.try_take() {
            Taken::Request(r) => self.offer(r),
            Taken::Closed => self.conn.queue_closed = true,
            Taken::Empty => {
                let Pipeline {
                    conn,
                    ledger,
                    events,
                    target,
                    ..
                } = self;
                conn.backlog.cut_off(&|seq| ledger.answer(seq), |r| {
                    Pipeline::dropped(events, target, r)
                });
            }
        }
    }

    /// After the held transaction finished: how far to linger, if at all. Only for a
    /// client whose transactions come faster than the wait (the transaction held began
    /// less than `LINGER / 2` after the previous one ended); a slower client's next
    /// transaction would not come in time, and waiting would only delay this one. At most
    /// a quarter of the session's places: requests keep their places until the mirror
    /// answers them, so waiting must leave room for the ones in flight (with
    /// `mirror_queue` under 8 it does not wait at all). Only this worker waits; latency
    /// is measured from the send, so it is not affected.
    fn linger_until(&self, now: Instant) -> Option<u64> {
        let first = self.conn.backlog.first_seq()?;
        let cycle = first
            .checked_sub(1)
            .and_then(|before| self.ledger.answered_ago(before, now));
        if cycle.is_none_or(|cycle| cycle >= LINGER / 2) {
            return None;
        }
        Some(first + LINGER_SEQS.min(self.places as u64 / 4))
    }

    /// The primary answered one of requests `first..=last` with the client's cancel.
    pub(super) fn cancelled_on_primary(&self, first: u64, last: u64) -> bool {
        (first..=last).any(|seq| self.ledger.cancelled_on_primary(seq))
    }

    /// The primary was idle before `r` and in a failed transaction after it: `r` began a
    /// transaction whose statement was then cancelled.
    fn began_failed(&self, r: &Request) -> bool {
        let before_idle = r
            .first_seq()
            .checked_sub(1)
            .is_none_or(|before| self.ledger.answer(before).ends_transaction());
        before_idle && self.ledger.answer(r.seq) == Answer::After(TxStatus::Failed)
    }

    /// Records `batch` as in flight (before it is written: the first answers can arrive
    /// while later requests are still being written) and returns its bytes, with the
    /// statements the mirror lacks defined in front of the requests that need them.
    /// `mirror_sync`: when the primary answered the last request of `batch`, whose
    /// reads go to the mirror only once it has applied what the primary had then.
    /// `None` without a gate, or for the proxy's own requests alone. An answer too old to
    /// be recorded counts as now: the wait is then for the mirror to catch up entirely.
    fn gate_for(&self, batch: &[Request], now: Instant) -> Option<Instant> {
        self.target.sync.as_ref()?;
        let last = batch.iter().rev().find(|r| r.is_client())?;
        let ago = self.ledger.answered_ago(last.seq, now).unwrap_or_default();
        Some(now.checked_sub(ago).unwrap_or(now))
    }

    fn send(
        &mut self,
        batch: Vec<Request>,
        now: Instant,
        gated: Option<Gated>,
    ) -> Result<Bytes, MirrorError> {
        if self.target.pool.is_disabled() {
            self.conn.unsent = batch;
            return Err(MirrorError::Disabled);
        }
        let n = batch.len();
        for mut r in batch {
            let first_seq = r.first_seq();
            // The client's statements are followed as the client sent them.
            let run = match &mut self.statements {
                Some(s) if r.is_client() => s.run(&r.payload),
                _ => Default::default(),
            };
            let stood_in = r.is_client() && self.cancelled_on_primary(first_seq, r.seq);
            if stood_in {
                r.payload = Request::cancelled_stand_in(r.readies, self.began_failed(&r));
            }
            let effects = self
                .conn
                .on_mirror
                .prepare(&mut r.payload, first_seq, &self.definitions);
            self.pinned |= effects.sql_prepare;
            let mut f = InFlight::new(r, now, effects, run);
            f.gated = gated;
            f.stood_in = stood_in;
            self.conn.in_flight.push_back(f);
        }
        let from = self.conn.in_flight.len() - n;
        Ok(gather(
            self.conn.in_flight.range(from..).map(|f| &f.payload),
        ))
    }
}
