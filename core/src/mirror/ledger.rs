//! The primary's side of one mirrored session, as the mirror worker needs it: when each
//! recent request was sent, how it was answered (latency, transaction status after it,
//! its first SQLSTATE when it failed, and a digest of the answer when results are
//! compared), and a way to wait for the answer that ends a transaction.
//!
//! The SQLSTATE is kept whether or not results are compared: an error the mirror shares
//! with the primary is not the mirror's, and the error rate must mean the same with
//! `mirror_compare` off.
//!
//! The client session writes it through a [`Recorder`] (one atomic store per field, no
//! lock); the mirror worker reads it. Requests are numbered in the session's order and
//! kept in a ring of [`RING`] slots: a mirror more than that many requests behind loses
//! the pairing with the primary's answer (reported as unpaired), never correctness.

use crate::compare::ResultDigest;
use crate::protocol::TxStatus;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How many recent requests' answers are kept.
pub const RING: usize = 256;

/// Most statement digests kept of recent answers to several statements (see
/// [`Ledger::answered_parts`]): 56 bytes each, so at most 14 KB per session, and only
/// while its client sends such requests. A mirror further behind compares such a request
/// as a whole.
pub const KEPT_PARTS: usize = 256;

/// How long after a client's CancelRequest a cancel on the primary is still taken for
/// that one's doing. Under load PostgreSQL was seen applying a cancel to the statement
/// after the one it was meant for (the next statement failed with `57014` 0.3 ms after it
/// was sent, before the client had cancelled anything else). Either way the primary did
/// not run that statement, so neither may the mirror.
pub const LATE_CANCEL: Duration = Duration::from_secs(2);

/// What became of a request on the primary, as far as the ledger knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not answered yet.
    Pending,
    /// Answered, so long ago that its slot was reused: the status after it is unknown.
    Unrecorded,
    /// Answered; the transaction status after it.
    After(TxStatus),
}

impl Answer {
    pub fn is_answered(self) -> bool {
        self != Answer::Pending
    }

    /// No transaction is open after it, or it is too old to tell (a mirror that far
    /// behind treats it as a transaction end).
    pub fn ends_transaction(self) -> bool {
        matches!(self, Answer::After(TxStatus::Idle) | Answer::Unrecorded)
    }

    /// A transaction may still be open after it (unanswered and unknown count).
    pub fn may_leave_open(self) -> bool {
        self != Answer::After(TxStatus::Idle)
    }
}

pub struct Ledger {
    epoch: Instant,
    /// Answers recorded (the next answer's sequence number).
    done: AtomicU64,
    /// Per request (by sequence number modulo RING): when it was sent, in ns since `epoch`.
    started_ns: [AtomicU64; RING],
    /// Per request: the primary's latency in ns.
    latency_ns: [AtomicU64; RING],
    /// Per request: the transaction status after it ([`TxStatus::as_byte`]).
    status_at: [AtomicU8; RING],
    /// Per request: the primary's first SQLSTATE ([`pack`]ed; 0 when it succeeded).
    error_at: [AtomicU64; RING],
    /// The first SQLSTATE of the answer being received (0: none yet).
    pending_error: AtomicU64,
    /// The sequence number each answer slot belongs to (-1 while it is rewritten).
    answer_seq: [AtomicI64; RING],
    /// Per request: the digest of the primary's answer, when results are compared.
    digests: Option<Box<[DigestSlot]>>,
    /// The statement-by-statement digests of recent answers to several statements, by
    /// sequence number, oldest first (at most [`KEPT_PARTS`] digests in all). Locked only
    /// for such answers, which are rare next to the rest.
    parts: Mutex<KeptParts>,
    /// Requests sent (the next request's sequence number).
    sent: AtomicU64,
    /// Per request: its sequence number when the client sent a CancelRequest while the
    /// primary had not answered it yet (see [`Ledger::client_cancel`]).
    client_cancel: [AtomicI64; RING],
    /// Per request: its sequence number when the primary's answer was a cancel (`57014`).
    primary_canceled: [AtomicI64; RING],
    /// When the client's last CancelRequest came, in ns since `epoch` plus one (0: none).
    client_cancel_at: AtomicU64,
    /// Wakes the worker when the client cancels (one waiter: a permit is kept).
    cancels: Notify,
    /// The session is over: nothing more will be answered.
    closed: AtomicBool,
    /// Wakes the worker waiting in [`Ledger::wait_idle`].
    progress: Notify,
    /// What the waiting worker wants: an answer leaving no transaction open at or after
    /// `wake_idle`, or answers up to `wake_done`. `u64::MAX` when nobody waits, so that
    /// other answers wake nobody.
    wake_idle: AtomicU64,
    wake_done: AtomicU64,
}

impl Ledger {
    /// A ledger that keeps a digest of each answer when `compare` is set.
    pub fn new(compare: bool) -> Ledger {
        Ledger {
            epoch: Instant::now(),
            done: AtomicU64::new(0),
            started_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            status_at: std::array::from_fn(|_| AtomicU8::new(TxStatus::Idle.as_byte())),
            error_at: std::array::from_fn(|_| AtomicU64::new(0)),
            pending_error: AtomicU64::new(0),
            answer_seq: std::array::from_fn(|_| AtomicI64::new(-1)),
            digests: compare.then(|| (0..RING).map(|_| DigestSlot::default()).collect()),
            parts: Mutex::default(),
            sent: AtomicU64::new(0),
            client_cancel: std::array::from_fn(|_| AtomicI64::new(-1)),
            primary_canceled: std::array::from_fn(|_| AtomicI64::new(-1)),
            client_cancel_at: AtomicU64::new(0),
            cancels: Notify::new(),
            closed: AtomicBool::new(false),
            progress: Notify::new(),
            wake_idle: AtomicU64::new(u64::MAX),
            wake_done: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether answers are digested for comparison.
    #[inline]
    pub fn compares(&self) -> bool {
        self.digests.is_some()
    }

    /// Request `seq` was sent to the primary at `now`.
    #[inline]
    pub fn request_sent(&self, seq: u64, now: Instant) {
        let ns = now.duration_since(self.epoch).as_nanos() as u64;
        self.started_ns[seq as usize % RING].store(ns, Ordering::Relaxed);
        self.sent.fetch_max(seq + 1, Ordering::SeqCst);
    }

    /// The primary's answer to request `seq` (recorded next, by [`Ledger::answered`]) is
    /// a cancel: `57014`.
    #[inline]
    pub fn primary_canceled(&self, seq: u64) {
        self.primary_canceled[seq as usize % RING].store(seq as i64, Ordering::Release);
    }

    /// The client sent a CancelRequest (before it is passed to the primary): every request
    /// the primary has not answered yet may be the one it stops. Marked so that the mirror
    /// sets aside, and does not run, the one the primary answers with a cancel.
    pub fn client_cancel(&self) {
        let ns = Instant::now().duration_since(self.epoch).as_nanos() as u64;
        self.client_cancel_at.store(ns + 1, Ordering::SeqCst);
        let from = self.done.load(Ordering::SeqCst);
        let to = self.sent.load(Ordering::SeqCst).min(from + RING as u64);
        for seq in from..to {
            self.client_cancel[seq as usize % RING].store(seq as i64, Ordering::SeqCst);
        }
        self.cancels.notify_one();
    }

    /// Waits for the client's next CancelRequest (cancel-safe; one waiter).
    pub async fn client_cancelled_any(&self) {
        self.cancels.notified().await
    }

    /// A CancelRequest of the client's arrived while the primary had not answered `seq`.
    pub fn client_cancelled(&self, seq: u64) -> bool {
        self.client_cancel[seq as usize % RING].load(Ordering::SeqCst) == seq as i64
    }

    /// The primary answered `seq` with a cancel the client asked for: the statement did
    /// not run there (or was rolled back), whatever the mirror does with it. The client's
    /// CancelRequest came while the primary had not answered `seq`, or up to
    /// [`LATE_CANCEL`] before the answer (a cancel PostgreSQL applied late).
    pub fn cancelled_on_primary(&self, seq: u64) -> bool {
        let slot = seq as usize % RING;
        if self.primary_canceled[slot].load(Ordering::Acquire) != seq as i64 {
            return false;
        }
        let Some(slot) = self.recorded(seq) else {
            return false;
        };
        if self.client_cancelled(seq) {
            return true;
        }
        let asked = self.client_cancel_at.load(Ordering::SeqCst);
        let end_ns = self.started_ns[slot].load(Ordering::Relaxed)
            + self.latency_ns[slot].load(Ordering::Relaxed);
        asked != 0 && asked - 1 <= end_ns && end_ns - (asked - 1) <= LATE_CANCEL.as_nanos() as u64
    }

    /// The primary answered request `seq` (its ReadyForQuery) with `status` at `now`.
    #[inline]
    pub fn answered(
        &self,
        seq: u64,
        status: TxStatus,
        now: Instant,
        digest: Option<&ResultDigest>,
    ) {
        let slot = seq as usize % RING;
        if let (Some(digests), Some(d)) = (&self.digests, digest) {
            // Unpublish the slot while it is rewritten (a reader re-checks the number).
            self.answer_seq[slot].store(-1, Ordering::Relaxed);
            fence(Ordering::Release);
            digests[slot].store(d);
        }
        let ns = now.duration_since(self.epoch).as_nanos() as u64;
        let started = self.started_ns[slot].load(Ordering::Relaxed);
        self.latency_ns[slot].store(ns.saturating_sub(started), Ordering::Relaxed);
        self.status_at[slot].store(status.as_byte(), Ordering::Relaxed);
        let error = self.pending_error.swap(0, Ordering::Relaxed);
        self.error_at[slot].store(error, Ordering::Relaxed);
        self.answer_seq[slot].store(seq as i64, Ordering::Release);
        // SeqCst with `wait_idle`'s side: either this sees the worker's wish or the worker
        // sees this answer.
        self.done.store(seq + 1, Ordering::SeqCst);
        if self.primary_canceled[slot].load(Ordering::Relaxed) == seq as i64 {
            // The mirror may run it: the worker looks whether to cancel it there too.
            self.cancels.notify_one();
        }
        let wanted = (status.is_idle() && seq >= self.wake_idle.load(Ordering::SeqCst))
            || seq + 1 >= self.wake_done.load(Ordering::SeqCst);
        if wanted {
            self.progress.notify_waiters();
        }
    }

    /// The primary's answer to request `seq` (recorded next, by [`Ledger::answered`])
    /// answered several statements: their digests one by one, so that each is compared
    /// on its own. The oldest kept ones make room, past [`KEPT_PARTS`].
    pub fn answered_parts(&self, seq: u64, parts: &[ResultDigest]) {
        if parts.is_empty() || self.digests.is_none() || parts.len() > KEPT_PARTS {
            return;
        }
        let mut kept = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        while kept.total + parts.len() > KEPT_PARTS {
            let Some((_, old)) = kept.answers.pop_front() else {
                break;
            };
            kept.total -= old.len();
        }
        kept.total += parts.len();
        kept.answers.push_back((seq, parts.into()));
    }

    /// The statement-by-statement digests of the primary's answer to request `seq`, if
    /// it answered several statements and they are still kept. Taken: asked once.
    pub fn primary_parts(&self, seq: u64) -> Option<Box<[ResultDigest]>> {
        let mut kept = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let at = kept.answers.iter().position(|(s, _)| *s == seq)?;
        let (_, parts) = kept.answers.remove(at)?;
        kept.total -= parts.len();
        Some(parts)
    }

    /// The primary sent an ErrorResponse with `sqlstate` in the answer being received:
    /// the answer's first one is kept with it (see [`Ledger::primary_sqlstate`]).
    #[inline]
    pub fn failed(&self, sqlstate: Option<[u8; 5]>) {
        // One writer (the client session): a load and a store are enough.
        if self.pending_error.load(Ordering::Relaxed) == 0 {
            let code = sqlstate.unwrap_or(*b"?????");
            self.pending_error.store(pack(code), Ordering::Relaxed);
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
                || (from..done)
                    .rev()
                    .any(|seq| self.answer(seq).ends_transaction())
        };
        // Nobody waits once this returns or is dropped (the driver may race it against
        // its queue): answers stop waking anyone.
        struct Unregister<'a>(&'a Ledger);
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

    /// What became of request `seq` so far.
    pub fn answer(&self, seq: u64) -> Answer {
        if self.done.load(Ordering::Acquire) <= seq {
            return Answer::Pending;
        }
        match self.recorded(seq) {
            Some(slot) => Answer::After(TxStatus::from_byte(
                self.status_at[slot].load(Ordering::Relaxed),
            )),
            None => Answer::Unrecorded,
        }
    }

    /// How long before `now` the primary answered request `seq`, if it has been answered
    /// and is still recorded.
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

    /// The primary's first SQLSTATE in its answer to request `seq`, if it failed and the
    /// answer is still recorded.
    pub fn primary_sqlstate(&self, seq: u64) -> Option<[u8; 5]> {
        let slot = self.recorded(seq)?;
        let code = self.error_at[slot].load(Ordering::Relaxed);
        (code != 0).then(|| unpack(code))
    }

    /// The digest of the primary's answer to request `seq`, if still recorded.
    pub fn primary_digest(&self, seq: u64) -> Option<ResultDigest> {
        let digests = self.digests.as_ref()?;
        let slot = self.recorded(seq)?;
        let d = digests[slot].load();
        // Overwritten meanwhile by a request RING later: not this one's any more.
        fence(Ordering::Acquire);
        (self.answer_seq[slot].load(Ordering::Relaxed) == seq as i64).then_some(d)
    }

    /// The ring slot holding request `seq`'s answer, if it has been answered and is still
    /// recorded there.
    fn recorded(&self, seq: u64) -> Option<usize> {
        let slot = seq as usize % RING;
        (self.answer_seq[slot].load(Ordering::Acquire) == seq as i64).then_some(slot)
    }
}

/// A SQLSTATE in the low bytes of a `u64` (never 0: SQLSTATEs are five ASCII characters).
fn pack(code: [u8; 5]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..5].copy_from_slice(&code);
    u64::from_le_bytes(bytes)
}

fn unpack(code: u64) -> [u8; 5] {
    code.to_le_bytes()[..5].try_into().expect("5 bytes")
}

/// The client session's handle on its mirror [`Ledger`]: it records, the worker reads.
#[derive(Clone)]
pub struct Recorder(Arc<Ledger>);

impl Recorder {
    pub(super) fn new(ledger: Arc<Ledger>) -> Recorder {
        Recorder(ledger)
    }

    /// Whether the answers are to be digested (see [`Ledger::answered`]).
    #[inline]
    pub fn compares(&self) -> bool {
        self.0.compares()
    }

    /// See [`Ledger::request_sent`].
    #[inline]
    pub fn request_sent(&self, seq: u64, now: Instant) {
        self.0.request_sent(seq, now)
    }

    /// See [`Ledger::failed`].
    #[inline]
    pub fn failed(&self, sqlstate: Option<[u8; 5]>) {
        self.0.failed(sqlstate)
    }

    /// See [`Ledger::primary_canceled`].
    #[inline]
    pub fn primary_canceled(&self, seq: u64) {
        self.0.primary_canceled(seq)
    }

    /// The handle a CancelRequest of the client reaches the mirror session with.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.0.clone())
    }

    /// See [`Ledger::answered`].
    #[inline]
    pub fn answered(
        &self,
        seq: u64,
        status: TxStatus,
        now: Instant,
        digest: Option<&ResultDigest>,
    ) {
        self.0.answered(seq, status, now, digest)
    }

    /// See [`Ledger::answered_parts`].
    pub fn answered_parts(&self, seq: u64, parts: &[ResultDigest]) {
        self.0.answered_parts(seq, parts)
    }
}

/// What a client's CancelRequest does to its mirror session: see
/// [`Ledger::client_cancel`]. Held by the proxy's cancel-key map.
#[derive(Clone)]
pub struct Canceller(Arc<Ledger>);

impl Canceller {
    /// Marks the requests the primary has not answered yet, before the cancel is passed
    /// to the primary, and wakes the mirror worker.
    pub fn client_cancel(&self) {
        self.0.client_cancel()
    }
}

/// See [`Ledger::answered_parts`].
#[derive(Default)]
struct KeptParts {
    /// By sequence number, oldest first.
    answers: VecDeque<(u64, Box<[ResultDigest]>)>,
    /// Digests in `answers`.
    total: usize,
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use TxStatus::{Idle, InTransaction};

    /// The primary sends and answers requests `seqs`, with `status` after each, at `at`.
    pub fn answer_all(ledger: &Ledger, seqs: std::ops::Range<u64>, status: TxStatus, at: Instant) {
        for seq in seqs {
            ledger.request_sent(seq, at);
            ledger.answered(seq, status, at, None);
        }
    }

    #[test]
    fn pairs_requests_with_answers() {
        let l = Ledger::new(false);
        let t0 = Instant::now();
        l.request_sent(0, t0);
        l.request_sent(1, t0);
        assert_eq!(l.answer(0), Answer::Pending);
        l.answered(0, InTransaction, t0 + Duration::from_millis(3), None);
        assert_eq!(l.primary_latency(0).unwrap().as_millis(), 3);
        assert_eq!(l.answer(0), Answer::After(InTransaction));
        assert_eq!(l.primary_latency(1), None);
        l.answered(1, Idle, t0 + Duration::from_millis(5), None);
        assert_eq!(l.primary_latency(1).unwrap().as_millis(), 5);
        // When each was answered, seen from 9 ms after the start.
        let later = t0 + Duration::from_millis(9);
        assert_eq!(l.answered_ago(0, later).unwrap().as_millis(), 6);
        assert_eq!(l.answered_ago(1, later).unwrap().as_millis(), 4);
        assert_eq!(l.answered_ago(2, later), None, "not sent");
        // A slot reused RING requests later: the old answer is no longer recorded.
        answer_all(&l, 2..RING as u64 + 1, Idle, later);
        assert_eq!(l.answer(0), Answer::Unrecorded);
        assert!(Answer::Unrecorded.ends_transaction() && Answer::Unrecorded.may_leave_open());
    }

    #[test]
    fn the_primarys_first_sqlstate_is_kept_without_comparison() {
        let l = Ledger::new(false);
        let t0 = Instant::now();
        l.request_sent(0, t0);
        l.failed(Some(*b"42P01"));
        l.failed(Some(*b"25P02"));
        l.answered(0, Idle, t0, None);
        l.request_sent(1, t0);
        l.answered(1, Idle, t0, None);
        assert_eq!(l.primary_sqlstate(0), Some(*b"42P01"));
        assert_eq!(l.primary_sqlstate(1), None, "the next answer starts clean");
        assert_eq!(l.primary_sqlstate(2), None, "not answered");
    }

    #[test]
    fn digests_are_kept_per_answer() {
        let l = Ledger::new(true);
        let t0 = Instant::now();
        let d = ResultDigest {
            rows: 3,
            ..ResultDigest::default()
        };
        l.request_sent(0, t0);
        l.answered(0, Idle, t0, Some(&d));
        assert_eq!(l.primary_digest(0), Some(d));
        assert_eq!(l.primary_digest(1), None);
        assert_eq!(Ledger::new(false).primary_digest(0), None);
    }

    #[test]
    fn statement_digests_are_kept_for_a_while() {
        let l = Ledger::new(true);
        let part = |rows| ResultDigest {
            rows,
            ..ResultDigest::default()
        };
        l.answered_parts(0, &[part(1), part(2)]);
        assert_eq!(l.primary_parts(1), None);
        assert_eq!(l.primary_parts(0).as_deref(), Some(&[part(1), part(2)][..]));
        assert_eq!(l.primary_parts(0), None, "taken");
        // Bounded: the oldest make room.
        let big = vec![part(3); KEPT_PARTS / 2];
        for seq in 1..=3 {
            l.answered_parts(seq, &big);
        }
        assert_eq!(l.primary_parts(1), None);
        assert!(l.primary_parts(2).is_some() && l.primary_parts(3).is_some());
        // Without comparison nothing is kept.
        let off = Ledger::new(false);
        off.answered_parts(0, &[part(1), part(2)]);
        assert_eq!(off.primary_parts(0), None);
    }

    /// The mirror writer's wait: an end that came before the wait began satisfies it at
    /// once (the writer computes what to wait for after looking at the answers, and one may
    /// arrive in between); an end that comes later wakes it; answers inside a transaction
    /// do not.
    #[tokio::test]
    async fn wait_idle_sees_ends_from_before_and_after_it_began() {
        let l = Arc::new(Ledger::new(false));
        let t0 = Instant::now();
        const WITHIN: Duration = Duration::from_secs(10);
        answer_all(&l, 0..1, InTransaction, t0);
        answer_all(&l, 1..2, Idle, t0);
        let now = tokio::time::timeout(WITHIN, l.wait_idle(1, u64::MAX)).await;
        assert!(now.expect("an end already there"));

        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.wait_idle(2, u64::MAX).await }
        });
        answer_all(&l, 2..3, InTransaction, t0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "woken inside the transaction");
        answer_all(&l, 3..4, Idle, t0);
        let woken = tokio::time::timeout(WITHIN, waiter).await;
        assert!(woken.expect("woken by the end").unwrap());
    }

    /// A client's cancel marks what the primary has not answered; only a request the
    /// primary then answers with `57014` counts as cancelled on the primary.
    #[test]
    fn a_client_cancel_marks_the_unanswered_requests() {
        let l = Ledger::new(false);
        let t0 = Instant::now();
        answer_all(&l, 0..2, Idle, t0);
        l.request_sent(2, t0);
        l.request_sent(3, t0);
        l.client_cancel();
        assert!(!l.client_cancelled(1) && l.client_cancelled(2) && l.client_cancelled(3));
        // 2 finished before the cancel reached the primary, which stopped 3.
        l.answered(2, Idle, t0, None);
        l.primary_canceled(3);
        l.answered(3, Idle, t0, None);
        assert!(!l.cancelled_on_primary(2) && l.cancelled_on_primary(3));
        // A 57014 without a cancel of the client's before it (statement_timeout): not
        // set aside.
        l.request_sent(4, t0);
        l.primary_canceled(4);
        l.answered(4, Idle, t0, None);
        assert!(!l.cancelled_on_primary(4));
        // The cancel applied late, to a request sent after it: set aside within
        // LATE_CANCEL of the cancel, not after.
        let later = Instant::now() + Duration::from_millis(5);
        l.request_sent(5, later);
        l.primary_canceled(5);
        l.answered(5, Idle, later, None);
        assert!(!l.client_cancelled(5) && l.cancelled_on_primary(5));
        let much_later = later + LATE_CANCEL + Duration::from_millis(5);
        l.request_sent(6, much_later);
        l.primary_canceled(6);
        l.answered(6, Idle, much_later, None);
        assert!(!l.cancelled_on_primary(6));
        // A slot reused RING requests later does not inherit the marks.
        answer_all(&l, 7..RING as u64 + 4, Idle, t0);
        assert!(!l.cancelled_on_primary(RING as u64 + 3));
    }

    #[tokio::test]
    async fn wait_idle_ends_with_the_session() {
        let l = Arc::new(Ledger::new(false));
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.wait_idle(0, u64::MAX).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        l.close();
        let woken = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        assert!(!woken.expect("woken by the close").unwrap());
    }
}
