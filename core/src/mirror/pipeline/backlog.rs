//! Requests the mirror writer took from the queue and has not sent yet, and the rule for
//! when they go out: a transaction is replayed once the primary has finished it, so the
//! mirror runs it back to back instead of holding its locks while waiting for the client's
//! next statement (which would stall other mirror sessions behind those locks).
//!
//! The rule needs only what became of each request on the primary (`status`,
//! [`Ledger::answer`](crate::mirror::ledger::Ledger::answer)):
//! - the longest run of held requests that ends where the primary was idle again goes out
//!   in one write ([`Backlog::ready`]); a request answered too long ago for its status to
//!   be recorded belongs to a mirror far behind, and counts as a transaction end;
//! - a transaction longer than the hold limit (counted in sequence numbers, as
//!   [`Backlog::wake_at`] counts it) goes out as far as the primary answered it;
//! - a gap in the sequence (requests dropped in between, see [`Backlog::take`]) drops the
//!   held head of the transaction it cut, and rolls back the transaction the mirror may
//!   have open: its rest will never come;
//! - so does the primary finishing a transaction whose end was never queued
//!   ([`Backlog::cut_short`]), without waiting for the client's next mirrored request.

use crate::mirror::ledger::Answer;
use crate::mirror::request::Request;

#[derive(Default)]
pub struct Backlog {
    held: Vec<Request>,
    /// Sequence number of the last request taken (to see gaps).
    last_taken: Option<u64>,
    /// The mirror may be inside a transaction after the last request sent (a pooled
    /// connection starts idle).
    open: bool,
}

impl Backlog {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.len()
    }

    /// What the writer waits for while requests are held: the primary's first answer
    /// leaving no transaction open at or after the returned sequence number (the first held
    /// request's), and the sequence number at which the hold limit is reached. `None` when
    /// nothing is held.
    ///
    /// The wait starts at the first held request even when it is answered already: an
    /// answer that came after [`Backlog::ready`] looked must satisfy the wait at once, or
    /// the writer would sleep on a finished transaction until the client's next request.
    pub fn wake_at(&self, hold_limit: usize) -> Option<(u64, u64)> {
        let first = self.first_client()?;
        // A request's status is the one after its last ReadyForQuery (a joined preparing
        // batch answers idle before its execution is even sent). Nothing goes out before
        // that answer, so the hold limit is not reached before it either, however many
        // sequence numbers the request spans.
        let limit = first
            .first_seq()
            .saturating_add(hold_limit as u64)
            .max(first.seq + 1);
        Some((first.seq, limit))
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Sequence number of the first held request of the client's (its first
    /// ReadyForQuery's), `None` when none is held.
    pub fn first_seq(&self) -> Option<u64> {
        self.first_client().map(Request::first_seq)
    }

    fn first_client(&self) -> Option<&Request> {
        self.held.iter().find(|r| r.is_client())
    }

    /// Takes `r` from the queue. After a gap, the held requests past the last transaction
    /// end are handed to `dropped` (their transaction was cut), and a `ROLLBACK` goes
    /// before `r` if the mirror may be inside a transaction by then.
    pub fn take(
        &mut self,
        r: Request,
        status: impl Fn(u64) -> Answer,
        dropped: impl FnMut(Request),
    ) {
        if r.continues {
            // COPY data joins the held request that started the copy. Held it is: its
            // answer comes after this data, and it goes out only once answered. Without it
            // (dropped, or lost with a connection) the data has nothing to complete.
            if let Some(head) = self.held.last_mut().filter(|h| h.seq == r.seq) {
                head.payload.extend(r.payload);
            }
            return;
        }
        let gap = self
            .last_taken
            .is_some_and(|last| r.first_seq() != last + 1);
        if gap {
            self.cut_off(&status, dropped);
        }
        self.last_taken = Some(r.seq);
        self.held.push(r);
    }

    /// The requests after the last one taken were never queued (dropped), and the primary
    /// has finished a transaction among them: the backlog holds the head of a transaction
    /// whose end will never come, or the mirror may be inside one with nothing held to end
    /// it. The caller checks the queue once more (a request is queued before the primary
    /// sees it) and then calls [`Backlog::cut_off`], rather than leaving it all for the
    /// client's next mirrored request, which may be hours away.
    pub fn cut_short(&self, status: impl Fn(u64) -> Answer) -> bool {
        let Some(last) = self.last_taken else {
            return false;
        };
        let ended_since = (last + 1..)
            .map(&status)
            .take_while(|answer| answer.is_answered())
            .any(Answer::ends_transaction);
        ended_since && self.dangling(&status)
    }

    /// Held requests past the last transaction end, or no ROLLBACK on its way to a mirror
    /// that may be inside a transaction after them.
    fn dangling(&self, status: &impl Fn(u64) -> Answer) -> bool {
        let (cut, last) = self.cut(status);
        let rest = &self.held[cut..];
        if rest.iter().any(Request::is_client) {
            return true;
        }
        // Only the proxy's own ROLLBACK can be past the end: it is on its way.
        rest.is_empty() && self.open_after_cut(cut, last)
    }

    /// Ends a transaction that was cut by drops: its held requests past the last transaction
    /// end go to `dropped`, and a `ROLLBACK` (numbered after the last request taken) is
    /// queued if the mirror may be inside it by then.
    pub fn cut_off(&mut self, status: &impl Fn(u64) -> Answer, mut dropped: impl FnMut(Request)) {
        let (cut, last) = self.cut(status);
        for cut_off in self.held.drain(cut..) {
            dropped(cut_off);
        }
        if self.open_after_cut(cut, last) {
            let seq = self.last_taken.unwrap_or_default();
            self.held.push(Request::rollback(seq));
        }
    }

    /// The mirror may be inside a transaction once the held requests up to `cut` (ending
    /// with answer `last`) are sent: after them if any, else after what was sent already.
    fn open_after_cut(&self, cut: usize, last: Answer) -> bool {
        if cut > 0 {
            last.may_leave_open()
        } else {
            self.open
        }
    }

    /// What to send now: the held requests up to the last one after which the primary was
    /// idle; or, once the held requests span `hold_limit` sequence numbers, those the
    /// primary has answered; or the proxy's own requests when nothing else is held.
    pub fn ready(&mut self, status: impl Fn(u64) -> Answer, hold_limit: usize) -> Vec<Request> {
        let (cut, last) = self.cut(&status);
        if cut > 0 {
            self.open = last.may_leave_open();
            let mut batch: Vec<Request> = self.held.drain(..cut).collect();
            batch.extend(self.proxy_only());
            return batch;
        }
        if self.held.iter().all(|r| !r.is_client()) {
            return self.proxy_only();
        }
        if self.span() >= hold_limit as u64 {
            let answered = self
                .held
                .iter()
                .take_while(|r| !r.is_client() || status(r.seq).is_answered())
                .count();
            if answered > 0 {
                self.open = true;
                return self.held.drain(..answered).collect();
            }
        }
        Vec::new()
    }

    /// Everything held when it is only the proxy's own requests (ROLLBACKs: after them, no
    /// transaction is open); else nothing. They wait for no answer of the primary's.
    fn proxy_only(&mut self) -> Vec<Request> {
        if self.held.is_empty() || self.held.iter().any(Request::is_client) {
            return Vec::new();
        }
        self.open = false;
        std::mem::take(&mut self.held)
    }

    /// Sequence numbers from the first held client request to the last: the measure of the
    /// hold limit ([`Backlog::wake_at`] wakes the writer when it is reached).
    fn span(&self) -> u64 {
        let mut clients = self.held.iter().filter(|r| r.is_client());
        match (clients.next(), clients.last()) {
            (Some(first), last) => last.unwrap_or(first).seq + 1 - first.first_seq(),
            (None, _) => 0,
        }
    }

    /// Sequence number from which an idle answer of the primary can make
    /// [`Backlog::cut_short`] hold: the writer, with nothing to send, waits for it as well
    /// as for the client's next request. `None` when no transaction of the client's is
    /// held or open on the mirror.
    pub fn watch_from(&self) -> Option<u64> {
        let held = self.held.iter().any(Request::is_client);
        let open = self.open && self.held.is_empty();
        self.last_taken
            .filter(|_| held || open)
            .map(|last| last + 1)
    }

    /// Everything held, as it is (the session ended, or the connection broke).
    pub fn take_all(&mut self) -> Vec<Request> {
        self.open = true;
        std::mem::take(&mut self.held)
    }

    /// Length of the longest run of held requests ending at a transaction end, and the
    /// answer that ends it. The proxy's own requests neither end nor interrupt a run.
    fn cut(&self, status: &impl Fn(u64) -> Answer) -> (usize, Answer) {
        let mut cut = (0, Answer::Pending);
        for (i, r) in self.held.iter().enumerate() {
            if !r.is_client() {
                continue;
            }
            match status(r.seq) {
                Answer::Pending => break,
                answer if answer.ends_transaction() => cut = (i + 1, answer),
                _ => {}
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::testing::{self, Places};
    use crate::protocol::TxStatus::{self, Idle as I, InTransaction as T};
    use std::collections::HashMap;

    struct Fixture {
        places: Places,
        /// Transaction status after each answered request (`None`: no longer recorded).
        answers: HashMap<u64, Option<TxStatus>>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let target = testing::target(100, std::time::Duration::from_secs(1), false);
            Fixture {
                places: Places::new(target),
                answers: HashMap::new(),
            }
        }

        fn request(&self, seq: u64) -> Request {
            self.places.request(seq)
        }

        fn status(&self) -> impl Fn(u64) -> Answer + '_ {
            |seq| match self.answers.get(&seq) {
                None => Answer::Pending,
                Some(None) => Answer::Unrecorded,
                Some(&Some(s)) => Answer::After(s),
            }
        }

        /// Requests `seq` the primary answered with status `s`, taken in order (no gap,
        /// nothing dropped).
        fn take_answered(&mut self, b: &mut Backlog, answers: &[(u64, TxStatus)]) {
            for &(seq, s) in answers {
                self.answers.insert(seq, Some(s));
                b.take(self.request(seq), self.status(), |_| {
                    panic!("nothing dropped")
                });
            }
        }
    }

    impl Fixture {
        /// A preparing batch joined to its execution, taken: two ReadyForQuery, `seq - 1`
        /// and `seq`. The first (idle) was answered before the request was even queued;
        /// `seq` is unanswered.
        fn take_joined(&mut self, b: &mut Backlog, seq: u64) {
            let mut joined = self.request(seq);
            joined.readies = 2;
            self.answers.insert(seq - 1, Some(I));
            b.take(joined, self.status(), |_| panic!("nothing dropped"));
        }
    }

    fn seqs(batch: &[Request]) -> Vec<Option<u64>> {
        batch
            .iter()
            .map(|r| r.is_client().then_some(r.seq))
            .collect()
    }

    #[test]
    fn a_transaction_goes_out_once_the_primary_finished_it() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        for seq in 0..3 {
            b.take(f.request(seq), f.status(), |_| panic!("nothing dropped"));
        }
        assert!(b.ready(f.status(), 64).is_empty(), "unanswered");
        f.answers.insert(0, Some(T));
        f.answers.insert(1, Some(T));
        assert!(b.ready(f.status(), 64).is_empty(), "transaction open");
        f.answers.insert(2, Some(I));
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(0), Some(1), Some(2)]);
        assert!(b.is_empty() && !b.open);
    }

    #[test]
    fn several_finished_transactions_go_out_together_and_an_open_one_waits() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        f.take_answered(&mut b, &[(0, I), (1, T), (2, I), (3, T)]);
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(0), Some(1), Some(2)]);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_long_transaction_goes_out_at_the_hold_limit() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        f.take_answered(&mut b, &[(0, T), (1, T), (2, T), (3, T)]);
        b.take(f.request(4), f.status(), |_| panic!()); // unanswered
        assert!(b.ready(f.status(), 8).is_empty());
        assert_eq!(b.ready(f.status(), 5).len(), 4);
        assert!(b.open, "the mirror is inside the transaction now");
    }

    #[test]
    fn a_gap_drops_the_cut_head_and_rolls_back_what_the_mirror_started() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        // Sent: a transaction's first two requests (hold limit), so the mirror is in it.
        f.take_answered(&mut b, &[(0, T), (1, T)]);
        assert_eq!(b.ready(f.status(), 2).len(), 2);
        // Held: its third; then 3..=5 were dropped, and 6 starts a new transaction.
        f.answers.insert(2, Some(T));
        b.take(f.request(2), f.status(), |_| panic!());
        let mut dropped = Vec::new();
        b.take(f.request(6), f.status(), |r| dropped.push(r.seq));
        assert_eq!(dropped, [2]);
        f.answers.insert(6, Some(I));
        assert_eq!(seqs(&b.ready(f.status(), 64)), [None, Some(6)]);
        assert!(!b.open);
    }

    #[test]
    fn a_gap_after_finished_transactions_keeps_them_and_rolls_back_nothing() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        f.take_answered(&mut b, &[(0, T), (1, I)]);
        b.take(f.request(5), f.status(), |_| {
            panic!("a finished transaction is kept")
        });
        f.answers.insert(5, Some(I));
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(0), Some(1), Some(5)]);
    }

    #[test]
    fn the_writer_waits_for_the_answer_after_a_requests_last_ready() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        assert_eq!(b.wake_at(64), None);
        f.take_joined(&mut b, 5);
        assert_eq!(b.wake_at(64), Some((5, 4 + 64)));
        // All answered, transaction open: a later answer leaving it (the next request's,
        // queued before the primary sees it) ends the wait.
        f.answers.insert(5, Some(T));
        assert_eq!(b.wake_at(64), Some((5, 4 + 64)));
    }

    #[test]
    fn a_joined_request_longer_than_the_hold_limit_is_waited_for_to_its_last_answer() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        // Hold limit 1, and a request spanning two sequence numbers.
        f.take_joined(&mut b, 5);
        assert!(b.ready(f.status(), 1).is_empty());
        let wake = b.wake_at(1).unwrap();
        assert!(
            !wait_satisfied(&f, wake, 5),
            "woken before the answer: {wake:?}"
        );
        f.answers.insert(5, Some(I));
        assert!(wait_satisfied(&f, wake, 6), "{wake:?}");
        assert_eq!(seqs(&b.ready(f.status(), 1)), [Some(5)]);
    }

    #[test]
    fn a_rollback_after_held_requests_goes_out_with_them() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        // Answer too long ago for its status to be known: maybe inside a transaction.
        f.answers.insert(0, None);
        b.take(f.request(0), f.status(), |_| panic!());
        // 1 and 2 were dropped; the primary ended a transaction at 2.
        f.answers.insert(1, Some(T));
        f.answers.insert(2, Some(I));
        assert!(b.cut_short(f.status()));
        b.cut_off(&f.status(), |_| panic!("nothing past an end"));
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(0), None]);
        assert!(!b.open && b.watch_from().is_none());
    }

    /// Whether the primary's answers already satisfy the wait [`Backlog::wake_at`] asks for,
    /// as `SessionState::wait_idle` judges it with `done` answers so far.
    fn wait_satisfied(f: &Fixture, (from, until): (u64, u64), done: u64) -> bool {
        done >= until || (from..done).any(|seq| f.answers.get(&seq) == Some(&Some(I)))
    }

    #[test]
    fn an_answer_arriving_after_ready_looked_does_not_leave_the_writer_asleep() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        f.take_answered(&mut b, &[(0, I)]);
        assert_eq!(b.ready(f.status(), 64).len(), 1);
        // The client's last request: unanswered when the writer looks...
        b.take(f.request(1), f.status(), |_| panic!());
        assert!(b.ready(f.status(), 64).is_empty());
        // ...answered before it computes what to wait for. No further request will come,
        // so the wait must be satisfied now, and then the request goes out.
        f.answers.insert(1, Some(I));
        let wake = b.wake_at(64).expect("a request is held");
        assert!(wait_satisfied(&f, wake, 2), "{wake:?}");
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(1)]);
    }

    #[test]
    fn the_hold_limit_counts_sequence_numbers_as_the_wake_up_does() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        // Three joined prepare+execute requests: 3 held, 6 sequence numbers.
        for seq in [1, 3, 5] {
            let mut r = f.request(seq);
            r.readies = 2;
            f.answers.insert(seq - 1, Some(T));
            f.answers.insert(seq, Some(T));
            b.take(r, f.status(), |_| panic!());
        }
        // The writer is woken once the primary answered up to the limit...
        assert_eq!(b.wake_at(6), Some((1, 6)));
        // ...and then has something to send, though fewer than 6 requests are held.
        assert_eq!(seqs(&b.ready(f.status(), 6)), [Some(1), Some(3), Some(5)]);
        assert!(b.open);
    }

    #[test]
    fn an_open_transaction_whose_end_never_comes_is_rolled_back_once_the_primary_ends_it() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        // The hold limit sent the head of a transaction: the mirror is inside it.
        f.take_answered(&mut b, &[(0, T), (1, T)]);
        assert_eq!(b.ready(f.status(), 2).len(), 2);
        assert_eq!(b.watch_from(), Some(2));
        // Its next requests were dropped, not queued; the primary is still inside it.
        f.answers.insert(2, Some(T));
        assert!(!b.cut_short(f.status()), "its end may still be queued");
        // The primary ended it: the end will never be queued.
        f.answers.insert(3, Some(I));
        assert!(b.cut_short(f.status()));
        b.cut_off(&f.status(), |_| panic!("nothing held to drop"));
        assert!(!b.cut_short(f.status()), "the ROLLBACK is on its way");
        assert_eq!(
            seqs(&b.ready(f.status(), 2)),
            [None],
            "the proxy's ROLLBACK alone"
        );
        assert_eq!(b.watch_from(), None);
        // The client's next request shows the gap, and is not preceded by a second one.
        b.take(f.request(4), f.status(), |_| panic!("nothing held to drop"));
        f.answers.insert(4, Some(I));
        assert_eq!(seqs(&b.ready(f.status(), 2)), [Some(4)]);
    }

    #[test]
    fn a_finished_transaction_is_not_cut_short() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        f.take_answered(&mut b, &[(0, T), (1, I)]);
        assert!(!b.cut_short(f.status()), "held, but finished");
        assert_eq!(b.ready(f.status(), 64).len(), 2);
        f.answers.insert(2, Some(I));
        assert!(!b.cut_short(f.status()) && b.watch_from().is_none());
    }

    #[test]
    fn a_held_head_whose_end_was_dropped_is_dropped_once_the_primary_ends_it() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        // A finished transaction, then the head of the next one, held.
        f.take_answered(&mut b, &[(0, I), (1, T), (2, T)]);
        // Its rest (3, 4) was dropped, and the primary finished it.
        f.answers.insert(3, Some(T));
        assert!(!b.cut_short(f.status()), "its end may still be queued");
        f.answers.insert(4, Some(I));
        assert!(b.cut_short(f.status()));
        let mut dropped = Vec::new();
        b.cut_off(&f.status(), |r| dropped.push(r.seq));
        assert_eq!(dropped, [1, 2]);
        // The finished one goes out; the mirror never started the cut one: no ROLLBACK.
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(0)]);
        assert!(!b.cut_short(f.status()) && b.watch_from().is_none());
        // The client's next request shows the gap, and finds nothing left to cut.
        b.take(f.request(5), f.status(), |_| panic!("nothing held to drop"));
        f.answers.insert(5, Some(I));
        assert_eq!(seqs(&b.ready(f.status(), 64)), [Some(5)]);
    }

    #[test]
    fn unknown_status_counts_as_an_end_and_as_possibly_open() {
        let mut f = Fixture::new();
        let mut b = Backlog::default();
        f.answers.insert(0, None); // answered too long ago
        b.take(f.request(0), f.status(), |_| panic!());
        assert_eq!(b.ready(f.status(), 64).len(), 1);
        assert!(b.open);
        b.take(f.request(3), f.status(), |_| panic!());
        f.answers.insert(3, Some(I));
        assert_eq!(seqs(&b.ready(f.status(), 64)), [None, Some(3)]);
    }
}
