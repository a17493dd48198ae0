//! The pipeline's rules, driven directly (no connection, no runtime): batching, linger,
//! cut transactions, the timeout cancel and the statement repair. The driver's tests
//! (`super::super::driver`) run the same pipeline over an in-memory connection.

use super::writer::{Inbox, Taken};
use super::*;
use crate::mirror::ledger::Ledger;
use crate::mirror::target::Pooling;
use crate::mirror::testing::{self, Places};
use crate::mirror::ErrorCategory;
use crate::protocol::frame::Frames;
use crate::protocol::messages::{self, Severity};
use bytes::BytesMut;
use pgdog_plugin_api::Verdict;
use std::collections::VecDeque;
use TxStatus::{Idle, InTransaction};

/// A session's queue, as the writer sees it without waiting.
#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    closed: bool,
}

impl Inbox for Queue {
    fn try_take(&mut self) -> Taken {
        match self.requests.pop_front() {
            Some(r) => Taken::Request(r),
            None if self.closed => Taken::Closed,
            None => Taken::Empty,
        }
    }
}

struct Fixture {
    places: Places,
    ledger: Arc<Ledger>,
    definitions: Arc<Definitions>,
    pipeline: Pipeline,
    queue: Queue,
}

impl Fixture {
    /// A session with `queue` places (hold limit `queue / 2`), comparing answers when
    /// `compare`.
    fn new(queue: usize, compare: bool) -> Fixture {
        Fixture::with(queue, compare, Pooling::Session)
    }

    /// [`Fixture::new`], the session holding mirror connections as `pooling` says.
    fn with(queue: usize, compare: bool, pooling: Pooling) -> Fixture {
        let target = testing::target_pooled(queue, Duration::from_secs(1), compare, pooling);
        let ledger = Arc::new(Ledger::new(compare));
        let definitions = Arc::new(Definitions::default());
        let pipeline = Pipeline::new(target.clone(), ledger.clone(), definitions.clone());
        Fixture {
            places: Places::new(target),
            ledger,
            definitions,
            pipeline,
            queue: Queue::default(),
        }
    }

    /// The client sends `sql` as request `seq`, which the primary answers (at `at`) with
    /// `status`, if given; the request is queued.
    fn query(&mut self, seq: u64, sql: &str, status: Option<TxStatus>, at: Instant) {
        let mut msg = BytesMut::new();
        messages::query(&mut msg, sql);
        self.ledger.request_sent(seq, at);
        if let Some(status) = status {
            self.ledger.answered(seq, status, at, None);
        }
        self.queue
            .requests
            .push_back(self.places.request_with(seq, &msg));
    }

    fn step(&mut self) -> Step {
        self.pipeline
            .next_step(&mut self.queue, Instant::now())
            .expect("a step")
    }

    /// The mirror answers the front request: an ErrorResponse with `error` first, if
    /// given, then ReadyForQuery with `status`.
    fn mirror_answers(&mut self, error: Option<&str>, status: TxStatus) {
        let mut out = BytesMut::new();
        match error {
            Some(code) => messages::error_response(&mut out, Severity::Error, code, "no"),
            None => messages::command_complete(&mut out, "SELECT 1"),
        }
        messages::ready_for_query(&mut out, status);
        for (_, msg) in Frames::new(&out) {
            self.pipeline
                .on_message(msg, Instant::now())
                .expect("an answer");
        }
    }

    fn events(&mut self) -> Vec<Event> {
        self.pipeline.take_events().collect()
    }
}

/// The simple queries in a write, in order.
fn queries(step: &Step) -> Vec<String> {
    let Step::Write(bytes) = step else {
        panic!("not a write: {step:?}");
    };
    Frames::new(bytes)
        .filter(|(tag, _)| *tag == b'Q')
        .map(|(_, msg)| String::from_utf8_lossy(&msg[5..msg.len() - 1]).into_owned())
        .collect()
}

fn tags(step: &Step) -> String {
    let Step::Write(bytes) = step else {
        panic!("not a write: {step:?}");
    };
    Frames::new(bytes).map(|(tag, _)| tag as char).collect()
}

#[test]
fn finished_transactions_go_out_in_one_write() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select 1", Some(Idle), t);
    f.query(1, "begin", Some(InTransaction), t);
    f.query(2, "commit", Some(Idle), t);
    f.query(3, "begin", Some(InTransaction), t);
    assert_eq!(queries(&f.step()), ["select 1", "begin", "commit"]);
    // The open transaction waits for the primary to finish it.
    assert_eq!(
        f.step(),
        Step::AwaitPrimary {
            from: 3,
            until: 3 + 64
        }
    );
}

#[test]
fn a_transaction_is_held_until_the_primary_finishes_it() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "begin", Some(InTransaction), t);
    f.query(1, "update t set x = 1", None, t);
    assert_eq!(f.step(), Step::AwaitPrimary { from: 0, until: 64 });
    // The client ends it (queued before the primary answers), and the primary's answer
    // ends the wait: the whole transaction goes out in one write.
    f.ledger.answered(1, InTransaction, t, None);
    f.query(2, "commit", Some(Idle), t);
    f.pipeline.primary_waited(true);
    assert_eq!(
        queries(&f.step()),
        ["begin", "update t set x = 1", "commit"]
    );
}

#[test]
fn a_wait_that_ended_without_progress_is_not_repeated() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "begin", Some(InTransaction), t);
    assert_eq!(f.step(), Step::AwaitPrimary { from: 0, until: 64 });
    // Woken, yet nothing can go: the same wait would return at once, so the writer
    // waits for the client's next request (and the primary ending the transaction).
    f.pipeline.primary_waited(true);
    assert_eq!(
        f.step(),
        Step::AwaitClient {
            watch_from: Some(1)
        }
    );
    f.query(1, "update t set x = 1", None, t);
    assert_eq!(f.step(), Step::AwaitPrimary { from: 0, until: 64 });
}

#[test]
fn a_long_transaction_goes_out_at_the_hold_limit() {
    // 8 places: the hold limit is 4 sequence numbers.
    let mut f = Fixture::new(8, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "begin", Some(InTransaction), t);
    for seq in 1..4 {
        f.query(seq, "insert", Some(InTransaction), t);
    }
    assert_eq!(
        queries(&f.step()).len(),
        4,
        "as far as the primary answered"
    );
    f.query(4, "insert", None, t);
    assert_eq!(f.step(), Step::AwaitPrimary { from: 4, until: 8 });
}

#[test]
fn a_fast_client_lingers_after_a_finished_transaction_and_a_slow_one_does_not() {
    for (since_previous, lingers) in [
        (Duration::from_micros(200), true),
        (Duration::from_millis(5), false),
    ] {
        let mut f = Fixture::new(128, false);
        // Times are measured from the ledger's start.
        std::thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        f.query(0, "select 1", Some(Idle), now - since_previous);
        assert_eq!(queries(&f.step()).len(), 1);
        f.query(1, "select 2", None, now);
        assert_eq!(f.step(), Step::AwaitPrimary { from: 1, until: 65 });
        f.ledger.answered(1, Idle, now, None);
        f.pipeline.primary_waited(true);
        let step = f.step();
        if lingers {
            // Up to 16 sequence numbers past the held one, for at most LINGER.
            assert_eq!(step, Step::Linger { until: 17 });
            assert_eq!(queries(&f.step()), ["select 2"]);
        } else {
            assert_eq!(queries(&step), ["select 2"]);
        }
    }
}

#[test]
fn a_gap_drops_the_cut_head_and_rolls_back_what_the_mirror_started() {
    let mut f = Fixture::new(4, false);
    let t = Instant::now() - Duration::from_secs(1);
    // The hold limit (2) sent the head of a transaction: the mirror is inside it.
    f.query(0, "begin", Some(InTransaction), t);
    f.query(1, "insert 1", Some(InTransaction), t);
    assert_eq!(queries(&f.step()).len(), 2);
    // Its third request is held; 3..=5 were dropped by the tap; 6 is a new transaction.
    f.query(2, "insert 2", Some(InTransaction), t);
    f.query(6, "select 6", Some(Idle), t);
    assert_eq!(queries(&f.step()), ["ROLLBACK", "select 6"]);
    let events = f.events();
    assert_eq!(events.len(), 1, "the held head of the cut transaction");
    assert!(matches!(events[0].outcome, Outcome::Dropped { .. }));
    assert!(f.places.target.has_diverged());
}

#[test]
fn a_transaction_whose_end_was_dropped_is_rolled_back_once_the_primary_ends_it() {
    let mut f = Fixture::new(4, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "begin", Some(InTransaction), t);
    f.query(1, "insert", Some(InTransaction), t);
    assert_eq!(queries(&f.step()).len(), 2);
    // Its next requests were dropped by the tap, not queued: the writer watches for the
    // primary to end the transaction without waiting for the client.
    assert_eq!(
        f.step(),
        Step::AwaitClient {
            watch_from: Some(2)
        }
    );
    f.ledger.request_sent(2, t);
    f.ledger.answered(2, InTransaction, t, None);
    assert_eq!(
        f.step(),
        Step::AwaitClient {
            watch_from: Some(2)
        },
        "its end may still come"
    );
    f.ledger.request_sent(3, t);
    f.ledger.answered(3, Idle, t, None);
    assert_eq!(queries(&f.step()), ["ROLLBACK"]);
    assert_eq!(f.step(), Step::AwaitClient { watch_from: None });
}

#[test]
fn the_queue_closing_sends_what_is_held_and_finishes() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "begin", Some(InTransaction), t);
    assert!(matches!(f.step(), Step::AwaitPrimary { .. }));
    f.queue.closed = true;
    assert_eq!(queries(&f.step()), ["begin"]);
    assert_eq!(f.step(), Step::Finished);
    assert!(!f.pipeline.is_done(), "the answer is still due");
    f.mirror_answers(None, InTransaction);
    assert!(f.pipeline.is_done());
    assert_eq!(f.pipeline.mirror_status(), InTransaction);
}

#[test]
fn answers_end_requests_in_order_with_their_outcome() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select 1", Some(Idle), t);
    f.query(1, "select nope", Some(Idle), t);
    assert_eq!(queries(&f.step()).len(), 2);
    f.mirror_answers(None, Idle);
    f.mirror_answers(Some("42703"), Idle);
    let events = f.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].outcome, Outcome::Mirrored);
    assert!(events[0].mirror_latency.is_some() && events[0].primary_latency.is_some());
    assert_eq!(
        events[1].outcome,
        Outcome::Error {
            category: ErrorCategory::Query,
            sqlstate: Some(*b"42703")
        }
    );
    let mut out = BytesMut::new();
    messages::ready_for_query(&mut out, Idle);
    assert!(matches!(
        f.pipeline.on_message(&out, Instant::now()),
        Err(MirrorError::UnexpectedReady)
    ));
}

#[test]
fn without_comparison_an_error_the_primary_shared_is_still_told_apart() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    // The primary fails the first with 42P01; the second succeeds there.
    for (seq, primary) in [(0, Some(*b"42P01")), (1, None)] {
        let mut msg = BytesMut::new();
        messages::query(&mut msg, "select * from nope");
        f.ledger.request_sent(seq, t);
        if primary.is_some() {
            f.ledger.failed(primary);
        }
        f.ledger.answered(seq, Idle, t, None);
        f.queue.requests.push_back(f.places.request_with(seq, &msg));
    }
    assert_eq!(queries(&f.step()).len(), 2);
    f.mirror_answers(Some("42P01"), Idle);
    f.mirror_answers(Some("42P01"), Idle);
    let events = f.events();
    let verdicts: Vec<Verdict> = events.iter().map(|e| e.comparison.verdict).collect();
    assert_eq!(verdicts, [Verdict::MATCH, Verdict::NOT_COMPARED]);
    assert_eq!(events[0].comparison.primary_sqlstate, *b"42P01");
    assert!(events.iter().all(|e| matches!(
        e.outcome,
        Outcome::Error {
            category: ErrorCategory::Query,
            ..
        }
    )));
}

#[test]
fn a_request_past_its_timeout_is_cancelled_and_counted_as_a_timeout() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select pg_sleep(10)", Some(Idle), t);
    f.query(1, "select 1", Some(Idle), t);
    let sent = Instant::now();
    assert_eq!(queries(&f.step()).len(), 2);
    let deadline = f.pipeline.deadline().expect("in flight");
    assert!(
        deadline >= sent + Duration::from_secs(1)
            && deadline < Instant::now() + Duration::from_secs(1)
    );
    // The deadline passes: cancelled, and the answer gets the grace from the cancel.
    f.pipeline.deadline_passed().expect("cancel it");
    let cancelled = Instant::now();
    f.pipeline.cancel_sent(cancelled);
    assert_eq!(f.pipeline.deadline(), Some(cancelled + CANCEL_GRACE));
    // The cancel hits it, and the next request too (the server applies a cancel to what
    // runs when it arrives): both are the proxy's doing, not the mirror's errors.
    f.mirror_answers(Some("57014"), Idle);
    f.mirror_answers(Some("57014"), Idle);
    for e in f.events() {
        assert_eq!(e.outcome, crate::mirror::timeout());
        assert_eq!(e.mirror_latency, None);
    }
}

#[test]
fn no_answer_within_the_grace_gives_the_connection_up() {
    let mut f = Fixture::new(128, false);
    f.query(0, "select pg_sleep(10)", Some(Idle), Instant::now());
    assert_eq!(queries(&f.step()).len(), 1);
    f.pipeline.deadline_passed().expect("cancel it");
    f.pipeline.cancel_sent(Instant::now());
    assert!(matches!(
        f.pipeline.deadline_passed(),
        Err(MirrorError::NoAnswerAfterCancel)
    ));
    // What was in flight timed out, so it is not sent again on another connection.
    let broken = f
        .pipeline
        .connection_broken(&MirrorError::NoAnswerAfterCancel, true);
    assert!(matches!(broken, Broken::Reported));
    assert_eq!(f.events()[0].outcome, crate::mirror::timeout());
}

#[test]
fn a_pooled_connection_dead_before_any_answer_gives_its_requests_back() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select 1", Some(Idle), t);
    f.query(1, "begin", Some(InTransaction), t);
    assert_eq!(queries(&f.step()).len(), 1);
    let Broken::Retry(requests) = f.pipeline.connection_broken(&MirrorError::Closed, true) else {
        panic!("nothing was answered: retried");
    };
    assert_eq!(requests.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1]);
    // On the fresh connection, a failure is final: both are reported.
    f.pipeline.new_connection();
    for r in requests {
        f.pipeline.offer(r);
    }
    assert_eq!(queries(&f.step()).len(), 1);
    assert!(matches!(
        f.pipeline.connection_broken(&MirrorError::Closed, false),
        Broken::Reported
    ));
    let outcomes: Vec<Outcome> = f.events().into_iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, [crate::mirror::connection_error(); 2]);
}

#[test]
fn a_connection_closed_between_requests_costs_nothing_and_inside_a_transaction_it_does() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select 1", Some(Idle), t);
    assert_eq!(queries(&f.step()).len(), 1);
    f.mirror_answers(None, Idle);
    assert_eq!(f.events().len(), 1);
    // The backend is terminated while the mirror is idle: nothing to report, no failure.
    assert!(matches!(
        f.pipeline.connection_broken(&MirrorError::Closed, false),
        Broken::Quiet
    ));
    assert!(f.events().is_empty());

    // With a transaction of the client's held for it, the transaction is lost: a failure.
    f.pipeline.new_connection();
    f.query(1, "begin", Some(InTransaction), t);
    f.query(2, "select 2", Some(InTransaction), t);
    assert!(
        matches!(f.step(), Step::AwaitPrimary { .. }),
        "held until the primary ends it"
    );
    assert!(matches!(
        f.pipeline.connection_broken(&MirrorError::Closed, false),
        Broken::Reported
    ));
    let outcomes: Vec<Outcome> = f.events().into_iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, [crate::mirror::connection_error(); 2]);
}

#[test]
fn a_protocol_fault_blames_the_answer_it_broke_and_is_not_retried() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select 1", Some(Idle), t);
    f.query(1, "select 2", Some(Idle), t);
    assert_eq!(queries(&f.step()).len(), 2);
    // A pooled connection, nothing answered yet: a dead connection would be retried, a
    // server that sends a bad frame is not.
    let fault = MirrorError::Protocol(crate::protocol::ProtocolError::BadLength(-1));
    assert!(matches!(
        f.pipeline.connection_broken(&fault, true),
        Broken::Reported
    ));
    let outcomes: Vec<Outcome> = f.events().into_iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Error {
                category: ErrorCategory::Protocol,
                sqlstate: None
            },
            crate::mirror::connection_error()
        ]
    );
    // A ReadyForQuery nobody asked for is a protocol fault too.
    assert!(MirrorError::UnexpectedReady.is_protocol_fault());
    assert!(!MirrorError::Closed.is_protocol_fault());
}

#[test]
fn a_bind_of_a_statement_the_mirror_lacks_is_repaired_in_the_write() {
    let mut f = Fixture::new(128, false);
    let t = Instant::now() - Duration::from_secs(1);
    let parse = |name: &str, sql: &str| {
        let mut m = BytesMut::new();
        messages::put(&mut m, b'P', |b| {
            messages::put_cstr(b, name);
            messages::put_cstr(b, sql);
            b.extend_from_slice(&[0, 0]);
        });
        m
    };
    // The client prepared s1 in a request the mirror never got.
    f.definitions.parsed(&parse("s1", "select $1"), 0);
    let mut bind = BytesMut::new();
    messages::put(&mut bind, b'B', |b| {
        b.extend_from_slice(b"\0s1\0");
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    });
    messages::put(&mut bind, b'E', |b| b.extend_from_slice(&[0, 0, 0, 0, 0]));
    messages::sync(&mut bind);
    f.ledger.request_sent(1, t);
    f.ledger.answered(1, Idle, t, None);
    f.queue.requests.push_back(f.places.request_with(1, &bind));
    let step = f.step();
    assert_eq!(tags(&step), "CPBES");
    // Confirmed by the answer: the next Bind goes out as it is.
    f.mirror_answers(None, Idle);
    f.ledger.request_sent(2, t);
    f.ledger.answered(2, Idle, t, None);
    f.queue.requests.push_back(f.places.request_with(2, &bind));
    assert_eq!(tags(&f.step()), "BES");
}

#[test]
fn answers_are_compared_with_the_primarys() {
    let mut f = Fixture::new(128, true);
    let t = Instant::now() - Duration::from_secs(1);
    // The primary answered "SELECT 2"; the mirror will answer "SELECT 1".
    let primary = {
        let mut d = crate::compare::Digest::default();
        let mut out = BytesMut::new();
        messages::command_complete(&mut out, "SELECT 2");
        for (tag, msg) in Frames::new(&out) {
            d.feed(tag, msg);
        }
        d.take()
    };
    let mut msg = BytesMut::new();
    messages::query(&mut msg, "select * from t");
    f.ledger.request_sent(0, t);
    f.ledger.answered(0, Idle, t, Some(&primary));
    f.queue.requests.push_back(f.places.request_with(0, &msg));
    assert_eq!(queries(&f.step()).len(), 1);
    f.mirror_answers(None, Idle);
    let events = f.events();
    assert_eq!(events[0].outcome, Outcome::Mismatch);
    assert_eq!(
        events[0].query.as_ref().map(|q| &*q.text),
        Some("select * from t")
    );
}

/// A request of several different statements: each statement's answer is compared
/// with the primary's answer to the same statement, under its own fingerprint.
#[test]
fn each_statement_of_a_request_is_compared_on_its_own() {
    let sql = "BEGIN; select a from t; select b from u; update t set a = 1; COMMIT";
    // The answers of the five statements, the second select's row differing by side.
    let answer = |b: &str| {
        let mut out = BytesMut::new();
        messages::command_complete(&mut out, "BEGIN");
        messages::data_row(&mut out, &[Some("1")]);
        messages::command_complete(&mut out, "SELECT 1");
        messages::data_row(&mut out, &[Some(b)]);
        messages::command_complete(&mut out, "SELECT 1");
        messages::command_complete(&mut out, "UPDATE 3");
        messages::command_complete(&mut out, "COMMIT");
        out
    };
    let mut f = Fixture::new(128, true);
    let t = Instant::now() - Duration::from_secs(1);
    let mut d = crate::compare::Digest::default();
    for (tag, msg) in Frames::new(&answer("x")) {
        d.feed(tag, msg);
    }
    let mut msg = BytesMut::new();
    messages::query(&mut msg, sql);
    f.ledger.request_sent(0, t);
    f.ledger.answered_parts(0, d.parts());
    f.ledger.answered(0, Idle, t, Some(&d.take()));
    f.queue.requests.push_back(f.places.request_with(0, &msg));
    assert_eq!(queries(&f.step()).len(), 1);
    let mut out = answer("y");
    messages::ready_for_query(&mut out, Idle);
    for (_, msg) in Frames::new(&out) {
        f.pipeline.on_message(msg, Instant::now()).unwrap();
    }
    let events = f.events();
    let [event] = &events[..] else {
        panic!("one event per request: {events:?}");
    };
    // As a whole (for plugins that take requests only): a mismatch, filed under the first
    // data statement.
    assert_eq!(event.outcome, Outcome::Mismatch);
    assert_eq!(
        event.query.as_ref().map(|q| &*q.text),
        Some("select a from t")
    );
    // Statement by statement: only the second select differs; BEGIN and COMMIT are none.
    let each: Vec<_> = event
        .statements
        .as_deref()
        .expect("compared one by one")
        .iter()
        .map(|s| (&*s.query.text, s.comparison.verdict))
        .collect();
    assert_eq!(
        each,
        [
            ("select a from t", Verdict::MATCH),
            ("select b from u", Verdict::MISMATCH),
            ("update t set a = ?", Verdict::MATCH),
        ]
    );
}

/// A mirror error in a request of several statements is filed under the statement that
/// failed, not the request's first.
#[test]
fn a_mirror_error_is_filed_under_the_statement_that_failed() {
    let mut f = Fixture::new(128, true);
    let t = Instant::now() - Duration::from_secs(1);
    let mut msg = BytesMut::new();
    messages::query(&mut msg, "select a from t; select b from u");
    f.ledger.request_sent(0, t);
    f.ledger.answered(0, Idle, t, Some(&Default::default()));
    f.queue.requests.push_back(f.places.request_with(0, &msg));
    f.step();
    let mut out = BytesMut::new();
    messages::command_complete(&mut out, "SELECT 0");
    messages::error_response(&mut out, Severity::Error, "42703", "no column b");
    messages::ready_for_query(&mut out, Idle);
    for (_, msg) in Frames::new(&out) {
        f.pipeline.on_message(msg, Instant::now()).unwrap();
    }
    let events = f.events();
    assert!(matches!(events[0].outcome, Outcome::Error { .. }));
    assert_eq!(
        events[0].query.as_ref().map(|q| &*q.text),
        Some("select b from u")
    );
    assert!(events[0].statements.is_none());
}

/// Transaction mode: the connection goes back to the pool once everything taken was
/// answered and the mirror is idle, not while the mirror is inside a transaction.
#[test]
fn in_transaction_mode_the_connection_goes_back_when_the_mirror_is_idle() {
    let pooled = Pooling::Transaction { statements: 8 };
    for (pooling, after) in [(pooled, Step::Release), (Pooling::Session, client_wait())] {
        let mut f = Fixture::with(128, false, pooling);
        let t = Instant::now() - Duration::from_secs(1);
        f.query(0, "begin", Some(InTransaction), t);
        f.query(1, "insert into t values (1)", Some(InTransaction), t);
        f.query(2, "commit", Some(Idle), t);
        assert_eq!(queries(&f.step()).len(), 3);
        assert_eq!(f.step(), client_wait(), "answers outstanding");
        f.mirror_answers(None, InTransaction);
        f.mirror_answers(None, InTransaction);
        assert!(
            !f.pipeline.may_release(),
            "the mirror is inside the transaction"
        );
        f.mirror_answers(None, Idle);
        assert_eq!(f.pipeline.may_release(), pooling != Pooling::Session);
        assert_eq!(f.step(), after, "{pooling:?}");
    }
}

/// A statement prepared in SQL lives on one connection: the session keeps it.
#[test]
fn a_session_that_prepares_in_sql_keeps_its_connection() {
    let mut f = Fixture::with(128, false, Pooling::Transaction { statements: 8 });
    let t = Instant::now() - Duration::from_secs(1);
    f.query(0, "select 1", Some(Idle), t);
    f.step();
    f.mirror_answers(None, Idle);
    assert_eq!(f.step(), Step::Release);
    f.pipeline.attach(None);
    f.query(1, "/* c */ PREPARE q AS select 1", Some(Idle), t);
    f.step();
    f.mirror_answers(None, Idle);
    assert!(f.pipeline.is_pinned());
    assert_eq!(f.step(), client_wait());
}

fn client_wait() -> Step {
    Step::AwaitClient { watch_from: None }
}

/// The client cancelled request 1 and the primary answered it with `57014`: the mirror
/// runs a stand-in that fails the same way (nothing of the statement runs), and the
/// request is set aside as cancelled on the primary, neither an error nor a mismatch.
/// Request 0, answered before the cancel, and request 2 run as sent.
#[test]
fn a_request_cancelled_on_the_primary_does_not_run_on_the_mirror() {
    let mut f = Fixture::new(16, true);
    let t = Instant::now();
    f.query(0, "UPDATE t SET v = 0", Some(Idle), t);
    f.ledger.request_sent(1, t);
    f.ledger.client_cancel();
    f.ledger.primary_canceled(1);
    f.ledger.answered(1, Idle, t, None);
    let mut msg = BytesMut::new();
    messages::query(&mut msg, "UPDATE t SET v = 1");
    f.queue.requests.push_back(f.places.request_with(1, &msg));
    f.query(2, "UPDATE t SET v = 2", Some(Idle), t);
    assert!(!f.ledger.cancelled_on_primary(0) && f.ledger.cancelled_on_primary(1));

    let step = f.step();
    let sent = queries(&step);
    assert_eq!(sent[0], "UPDATE t SET v = 0");
    assert!(sent[1].starts_with("DO $pgdog$") && sent[1].contains("query_canceled"));
    assert_eq!(sent[2], "UPDATE t SET v = 2");
    for error in [None, Some("57014"), None] {
        f.mirror_answers(error, Idle);
    }
    let events = f.events();
    assert_eq!(events.len(), 3);
    let aside = &events[1];
    assert_eq!(aside.outcome, Outcome::Mirrored);
    assert_eq!(
        aside.comparison.excluded,
        pgdog_plugin_api::Exclusion::CANCELLED
    );
    assert_eq!(aside.mirror_latency, None);
    assert_ne!(
        events[2].comparison.excluded,
        pgdog_plugin_api::Exclusion::CANCELLED
    );
}

/// A statement the primary answered with a failed transaction after its BEGIN (pgjdbc's
/// BEGIN sent with the statement that was cancelled): the stand-in leaves the mirror in a
/// failed transaction too, so the client's ROLLBACK finds the same state.
#[test]
fn a_cancelled_first_statement_leaves_the_mirror_in_a_failed_transaction() {
    let mut f = Fixture::new(16, false);
    let t = Instant::now();
    f.ledger.request_sent(0, t);
    f.ledger.client_cancel();
    f.ledger.primary_canceled(0);
    f.ledger.answered(0, TxStatus::Failed, t, None);
    let mut msg = BytesMut::new();
    messages::query(&mut msg, "BEGIN; UPDATE t SET v = 1");
    f.queue.requests.push_back(f.places.request_with(0, &msg));
    f.query(1, "ROLLBACK", Some(Idle), t);
    let step = f.step();
    let sent = queries(&step);
    assert!(sent[0].starts_with("BEGIN; DO $pgdog$"), "{sent:?}");
    assert_eq!(sent[1], "ROLLBACK");
}

/// A statement_timeout of the client's is not a cancel of the client's: `57014` on both
/// sides stays a shared error (the request ran on the mirror as sent).
#[test]
fn a_statement_timeout_is_not_set_aside() {
    let mut f = Fixture::new(16, true);
    let t = Instant::now();
    f.ledger.request_sent(0, t);
    f.ledger.primary_canceled(0);
    f.ledger.answered(0, Idle, t, None);
    let mut msg = BytesMut::new();
    messages::query(&mut msg, "SELECT pg_sleep(10)");
    f.queue.requests.push_back(f.places.request_with(0, &msg));
    assert_eq!(queries(&f.step()), ["SELECT pg_sleep(10)"]);
    f.mirror_answers(Some("57014"), Idle);
    let events = f.events();
    assert_ne!(
        events[0].comparison.excluded,
        pgdog_plugin_api::Exclusion::CANCELLED
    );
}

/// `mirror_statements` and `mirror_sync`: which transactions reach the mirror, and when.
mod statements {
    use super::*;
    use crate::config::MirrorStatements::{self, Reads, Writes};
    use crate::mirror::sync::Gated;
    use crate::mirror::SkipReason;

    pub(super) fn fixture(queue: usize, statements: MirrorStatements, gated: bool) -> Fixture {
        let target = testing::target_statements(queue, statements, gated);
        let ledger = Arc::new(Ledger::new(true));
        let definitions = Arc::new(Definitions::default());
        let pipeline = Pipeline::new(target.clone(), ledger.clone(), definitions.clone());
        Fixture {
            places: Places::new(target),
            ledger,
            definitions,
            pipeline,
            queue: Queue::default(),
        }
    }

    fn skipped(f: &Fixture, reason: SkipReason) -> u64 {
        f.places.target.skips.skipped(reason)
    }

    #[test]
    fn reads_mirror_only_transactions_that_do_not_write() {
        let mut f = fixture(128, Reads, false);
        let t = Instant::now() - Duration::from_secs(1);
        f.query(0, "select 1", Some(Idle), t);
        f.query(1, "begin", Some(InTransaction), t);
        f.query(2, "select * from t", Some(InTransaction), t);
        f.query(3, "update t set x = 1", Some(InTransaction), t);
        f.query(4, "commit", Some(Idle), t);
        f.query(5, "SET search_path = s", Some(Idle), t);
        f.query(6, "insert into t values (1)", Some(Idle), t);
        f.query(7, "begin; select 2; commit", Some(Idle), t);
        assert_eq!(
            queries(&f.step()),
            ["select 1", "SET search_path = s", "begin; select 2; commit"]
        );
        assert_eq!(
            skipped(&f, SkipReason::Write),
            5,
            "the whole write transaction"
        );
        // Skipped requests are not events: the places they held are free again.
        for _ in 0..3 {
            f.mirror_answers(None, Idle);
        }
        assert_eq!(f.events().len(), 3);
        assert_eq!(f.places.target.queue_depth(), 0);
    }

    /// The tap skipped a pipelining client's write (seqs 0-1, never queued) and queued
    /// what it sent behind it, marked as following skipped requests: the worker finds out
    /// from the primary's answers which of it was the rest of the skipped transaction.
    #[test]
    fn requests_behind_a_skipped_write_are_skipped_while_its_transaction_lasts() {
        let mut f = fixture(128, Reads, false);
        let t = Instant::now() - Duration::from_secs(1);
        f.ledger.request_sent(0, t);
        f.ledger.answered(0, InTransaction, t, None);
        f.ledger.request_sent(1, t);
        f.ledger.answered(1, InTransaction, t, None);
        f.query(2, "select 1", Some(InTransaction), t);
        f.query(3, "commit", Some(Idle), t);
        f.query(4, "select 2", Some(Idle), t);
        f.queue.requests[0].follows_skipped = true;
        assert_eq!(queries(&f.step()), ["select 2"]);
        assert_eq!(
            skipped(&f, SkipReason::Write),
            2,
            "the rest of the write transaction"
        );

        // Behind a skipped autocommit write, the next request starts a transaction of its own.
        f.ledger.request_sent(5, t);
        f.ledger.answered(5, Idle, t, None);
        f.query(6, "select 3", Some(Idle), t);
        f.queue.requests[0].follows_skipped = true;
        f.mirror_answers(None, Idle);
        assert_eq!(queries(&f.step()), ["select 3"]);
        assert_eq!(skipped(&f, SkipReason::Write), 2);
    }

    #[test]
    fn writes_mirror_transactions_with_a_write_and_session_changes() {
        let mut f = fixture(128, Writes, false);
        let t = Instant::now() - Duration::from_secs(1);
        f.query(0, "select 1", Some(Idle), t);
        f.query(1, "begin", Some(InTransaction), t);
        f.query(2, "select * from t", Some(InTransaction), t);
        f.query(3, "update t set x = 1", Some(InTransaction), t);
        f.query(4, "commit", Some(Idle), t);
        f.query(5, "SET search_path = s", Some(Idle), t);
        f.query(6, "show x", Some(Idle), t);
        assert_eq!(
            queries(&f.step()),
            [
                "begin",
                "select * from t",
                "update t set x = 1",
                "commit",
                "SET search_path = s"
            ]
        );
        assert_eq!(skipped(&f, SkipReason::Read), 2);
    }

    #[test]
    fn a_long_read_transaction_that_writes_late_is_rolled_back_on_the_mirror() {
        // 8 places: the hold limit (4) sends the head before the transaction is whole.
        let mut f = fixture(8, Reads, false);
        let t = Instant::now() - Duration::from_secs(1);
        f.query(0, "begin", Some(InTransaction), t);
        for seq in 1..4 {
            f.query(seq, "select 1", Some(InTransaction), t);
        }
        assert_eq!(queries(&f.step()).len(), 4, "the head, all reads");
        f.query(4, "select 2", Some(InTransaction), t);
        f.query(5, "delete from t", Some(InTransaction), t);
        f.query(6, "commit", Some(Idle), t);
        assert_eq!(queries(&f.step()), ["select 2", "ROLLBACK"]);
        assert_eq!(skipped(&f, SkipReason::Write), 2);
    }

    #[test]
    fn a_long_transaction_whose_head_writes_is_skipped_to_its_end() {
        let mut f = fixture(8, Reads, false);
        let t = Instant::now() - Duration::from_secs(1);
        f.query(0, "begin", Some(InTransaction), t);
        f.query(1, "insert into t values (1)", Some(InTransaction), t);
        f.query(2, "select 1", Some(InTransaction), t);
        f.query(3, "select 1", Some(InTransaction), t);
        f.query(4, "select 1", None, t);
        assert!(
            matches!(f.step(), Step::AwaitPrimary { .. }),
            "nothing sent"
        );
        f.ledger.answered(4, InTransaction, t, None);
        f.query(5, "commit", Some(Idle), t);
        f.query(6, "select 3", Some(Idle), t);
        f.pipeline.primary_waited(true);
        let mut step = f.step();
        if let Step::Linger { .. } = step {
            step = f.step();
        }
        assert_eq!(queries(&step), ["select 3"]);
        assert_eq!(skipped(&f, SkipReason::Write), 6);
    }

    #[test]
    fn a_write_the_mirror_refuses_is_skipped_and_remembered() {
        let mut f = fixture(128, Reads, false);
        let t = Instant::now() - Duration::from_secs(1);
        f.query(0, "begin", Some(InTransaction), t);
        f.query(1, "select f(1)", Some(InTransaction), t);
        f.query(2, "select 2", Some(InTransaction), t);
        f.query(3, "commit", Some(Idle), t);
        assert_eq!(queries(&f.step()).len(), 4);
        f.mirror_answers(None, InTransaction);
        // Read-only: the function's write is refused, the rest of the transaction fails.
        f.mirror_answers(Some("25006"), crate::protocol::TxStatus::Failed);
        f.mirror_answers(Some("25P02"), crate::protocol::TxStatus::Failed);
        f.mirror_answers(None, Idle);
        let events = f.events();
        assert_eq!(events.len(), 1, "only the BEGIN before the refusal");
        assert_eq!(skipped(&f, SkipReason::WriteDetected), 3);
        // The next transaction with that statement is not mirrored at all.
        f.query(4, "select f(2)", Some(Idle), t);
        f.query(5, "select 3", Some(Idle), t);
        assert_eq!(queries(&f.step()), ["select 3"]);
        assert_eq!(skipped(&f, SkipReason::WriteDetected), 4);
    }

    #[test]
    fn gated_reads_wait_and_a_lagging_one_is_set_aside() {
        let mut f = fixture(128, Reads, true);
        // Times are measured from the ledger's start.
        std::thread::sleep(Duration::from_millis(30));
        let t = Instant::now() - Duration::from_millis(20);
        f.query(0, "select 1", Some(Idle), t);
        let Step::AwaitSync { answered_at } = f.step() else {
            panic!("not gated");
        };
        let off = answered_at.max(t) - answered_at.min(t);
        assert!(
            off < Duration::from_millis(2),
            "the primary's answer: {off:?}"
        );
        // Still waiting: asked again, the same wait.
        assert_eq!(f.step(), Step::AwaitSync { answered_at });
        f.pipeline.synced(Gated::Lagging);
        assert_eq!(queries(&f.step()), ["select 1"]);
        f.mirror_answers(None, Idle);
        let events = f.events();
        assert_eq!(events[0].outcome, Outcome::Mirrored);
        assert_eq!(
            events[0].comparison.excluded,
            pgdog_plugin_api::Exclusion::LAGGING
        );
        // A write transaction skipped is not waited for.
        f.query(1, "delete from t", Some(Idle), t);
        assert_eq!(f.step(), client_wait());
    }

    #[test]
    fn drops_do_not_set_a_reads_mirrors_answers_aside() {
        let f = fixture(128, Reads, false);
        f.places.target.note_drop();
        assert!(!f.places.target.has_diverged());
    }
}

/// A second look at a gated read whose answers differed (`super::recheck`).
mod recheck {
    use super::statements::fixture;
    use super::*;
    use crate::compare::{Digest, ResultDigest};
    use crate::config::MirrorStatements::Reads;
    use crate::mirror::sync::Gated;
    use pgdog_plugin_api::Exclusion;

    const READ: &str = "select v from t where id = 1";

    /// The messages of an answer of one row `v`.
    fn answer(v: &str) -> BytesMut {
        let mut out = BytesMut::new();
        messages::row_description(&mut out, &["v"]);
        messages::data_row(&mut out, &[Some(v)]);
        messages::command_complete(&mut out, "SELECT 1");
        out
    }

    fn digest(v: &str) -> ResultDigest {
        let mut d = Digest::default();
        for (tag, msg) in Frames::new(&answer(v)) {
            d.feed(tag, msg);
        }
        d.take()
    }

    /// The mirror answers the front request with row `v`.
    fn mirror_row(f: &mut Fixture, v: &str) {
        let mut out = answer(v);
        messages::ready_for_query(&mut out, Idle);
        for (_, msg) in Frames::new(&out) {
            f.pipeline
                .on_message(msg, Instant::now())
                .expect("an answer");
        }
    }

    /// `reads` requests of `READ` the primary answered with `primary`, gone through the
    /// gate as one batch, not answered by the mirror yet.
    fn gated_batch(primary: &str, reads: u64) -> Fixture {
        let mut f = fixture(128, Reads, true);
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        for seq in 0..reads {
            let mut msg = BytesMut::new();
            messages::query(&mut msg, READ);
            f.ledger.request_sent(seq, t);
            f.ledger.answered(seq, Idle, t, Some(&digest(primary)));
            f.queue.requests.push_back(f.places.request_with(seq, &msg));
        }
        assert!(matches!(f.step(), Step::AwaitSync { .. }));
        f.pipeline.synced(Gated::Synced);
        assert_eq!(queries(&f.step()), vec![READ; reads as usize], "one batch");
        f
    }

    /// The primary answered `READ` with `primary`; the read went through the gate and the
    /// mirror answered `mirror`.
    fn gated_read(primary: &str, mirror: &str) -> Fixture {
        let mut f = gated_batch(primary, 1);
        mirror_row(&mut f, mirror);
        f
    }

    /// Runs the second look: the primary answers `primary` again, the mirror `mirror`.
    fn second_look(f: &mut Fixture, primary: Result<&str, &str>, mirror: &str) {
        assert!(f.pipeline.recheck_due());
        let Step::Recheck(bytes) = f.step() else {
            panic!("no second look");
        };
        assert_eq!(
            queries(&Step::Write(bytes)),
            [READ],
            "the request as it was"
        );
        assert_eq!(
            f.step(),
            Step::AwaitRecheck,
            "the primary's answer is awaited"
        );
        f.pipeline.rechecked_on_primary(
            primary
                .map(|v| (digest(v), Instant::now()))
                .map_err(String::from),
        );
        if primary.is_err() {
            return;
        }
        assert!(matches!(f.step(), Step::AwaitSync { .. }), "gated again");
        f.pipeline.synced(Gated::Synced);
        assert_eq!(queries(&f.step()), [READ], "run again on the session");
        assert_eq!(f.step(), Step::AwaitRecheck);
        mirror_row(f, mirror);
    }

    #[test]
    fn a_read_equal_the_second_time_is_set_aside_as_rechecked() {
        // Another client changed the row between the primary's read and the mirror's.
        let mut f = gated_read("1", "2");
        assert!(f.events().is_empty(), "held until the second look");
        second_look(&mut f, Ok("2"), "2");
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Mirrored);
        assert_eq!(events[0].comparison.verdict, Verdict::EXCLUDED);
        assert_eq!(events[0].comparison.excluded, Exclusion::RECHECKED);
        assert!(f.pipeline.may_release() || f.pipeline.mirror_status().is_idle());
        assert!(!f.pipeline.recheck_due());
    }

    #[test]
    fn a_read_sent_in_a_gated_batch_is_looked_at_again_once_the_batch_is_answered() {
        let mut f = gated_batch("1", 2);
        // The first differs (a row changed in between); the second is still in flight.
        mirror_row(&mut f, "2");
        assert!(f.events().is_empty(), "held");
        assert!(f.pipeline.recheck_due());
        assert_eq!(f.step(), Step::AwaitRecheck, "the batch is answered first");
        mirror_row(&mut f, "1");
        let events = f.events();
        assert_eq!(events.len(), 1, "the second read, reported at once");
        assert_eq!(events[0].comparison.verdict, Verdict::MATCH);
        second_look(&mut f, Ok("2"), "2");
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].comparison.excluded, Exclusion::RECHECKED);
    }

    #[test]
    fn reads_of_one_batch_that_differ_are_looked_at_one_after_the_other() {
        let mut f = gated_batch("1", 2);
        mirror_row(&mut f, "2");
        mirror_row(&mut f, "3");
        assert!(f.events().is_empty(), "both held");
        // The first is equal the second time, the second differs again.
        second_look(&mut f, Ok("2"), "2");
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].comparison.excluded, Exclusion::RECHECKED);
        second_look(&mut f, Ok("1"), "3");
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Mismatch);
        assert!(!f.pipeline.recheck_due());
        assert_eq!(f.step(), client_wait());
    }

    #[test]
    fn a_read_that_differs_again_stays_a_mismatch() {
        // A row changed on the mirror only: it differs both times.
        let mut f = gated_read("1", "changed");
        second_look(&mut f, Ok("1"), "changed");
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Mismatch);
        assert_eq!(events[0].comparison.verdict, Verdict::MISMATCH);
    }

    /// A gated read that differs inside a transaction cannot be run again alone: its
    /// mismatch stands, and is counted as one without a second look.
    #[test]
    fn a_differing_read_inside_a_transaction_is_counted_as_not_looked_at_again() {
        let mut f = fixture(128, Reads, true);
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        let tag = |tag: &str| {
            let (mut d, mut out) = (Digest::default(), BytesMut::new());
            messages::command_complete(&mut out, tag);
            d.feed(b'C', &out);
            d.take()
        };
        let steps = [
            ("BEGIN", InTransaction, tag("BEGIN")),
            (READ, InTransaction, digest("1")),
            ("COMMIT", Idle, tag("COMMIT")),
        ];
        for (seq, (sql, status, d)) in steps.iter().enumerate() {
            let mut msg = BytesMut::new();
            messages::query(&mut msg, sql);
            f.ledger.request_sent(seq as u64, t);
            f.ledger.answered(seq as u64, *status, t, Some(d));
            f.queue
                .requests
                .push_back(f.places.request_with(seq as u64, &msg));
        }
        assert!(matches!(f.step(), Step::AwaitSync { .. }));
        f.pipeline.synced(Gated::Synced);
        assert_eq!(queries(&f.step()), ["BEGIN", READ, "COMMIT"]);
        let mut out = BytesMut::new();
        messages::command_complete(&mut out, "BEGIN");
        messages::ready_for_query(&mut out, InTransaction);
        out.extend_from_slice(&answer("2"));
        messages::ready_for_query(&mut out, InTransaction);
        messages::command_complete(&mut out, "COMMIT");
        messages::ready_for_query(&mut out, Idle);
        for (_, msg) in Frames::new(&out) {
            f.pipeline.on_message(msg, Instant::now()).unwrap();
        }
        let outcomes: Vec<_> = f.events().iter().map(|e| e.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Mirrored, Outcome::Mismatch, Outcome::Mirrored]
        );
        assert!(!f.pipeline.recheck_due());
        let gate = f.places.target.sync.clone().unwrap();
        assert_eq!(
            gate.report().rechecks,
            [0, 0, 1],
            "equal, differed, unavailable"
        );
    }

    #[test]
    fn no_second_look_leaves_the_mismatch_as_it_was() {
        // The primary could not answer again.
        let mut f = gated_read("1", "2");
        second_look(&mut f, Err("no answer in time"), "");
        assert_eq!(f.events()[0].outcome, Outcome::Mismatch);
        // The mirror lagged past mirror_max_lag_ms the second time.
        let mut f = gated_read("1", "2");
        let Step::Recheck(_) = f.step() else {
            panic!("no second look");
        };
        f.pipeline
            .rechecked_on_primary(Ok((digest("2"), Instant::now())));
        assert!(matches!(f.step(), Step::AwaitSync { .. }));
        f.pipeline.synced(Gated::Lagging);
        assert_eq!(f.step(), client_wait());
        assert_eq!(f.events()[0].outcome, Outcome::Mismatch);
        // The connection broke meanwhile: reported, not lost.
        let mut f = gated_read("1", "2");
        f.pipeline
            .connection_broken(&crate::mirror::MirrorError::Closed, false);
        assert_eq!(f.events()[0].outcome, Outcome::Mismatch);
    }

    #[test]
    fn only_gated_reads_get_a_second_look_and_within_the_budget() {
        // Without a gate, a mismatch is reported at once.
        let mut f = fixture(128, Reads, false);
        let t = Instant::now();
        let mut msg = BytesMut::new();
        messages::query(&mut msg, READ);
        f.ledger.request_sent(0, t);
        f.ledger.answered(0, Idle, t, Some(&digest("1")));
        f.queue.requests.push_back(f.places.request_with(0, &msg));
        assert_eq!(queries(&f.step()), [READ]);
        mirror_row(&mut f, "2");
        assert_eq!(f.events()[0].outcome, Outcome::Mismatch);
        assert!(!f.pipeline.recheck_due());
        // The target's budget spent: reported at once.
        let mut f = gated_read("1", "2");
        let _ = f.events();
        let gate = f.places.target.sync.clone().unwrap();
        // Spent as of a minute from now: nothing refills before then.
        let later = Instant::now() + Duration::from_secs(60);
        while gate.recheck_allowed(later) {}
        let Step::Recheck(_) = f.step() else {
            panic!("the first was within the budget");
        };
        f.pipeline.rechecked_on_primary(Err("stop".into()));
        let _ = f.events();
        let mut msg = BytesMut::new();
        messages::query(&mut msg, READ);
        let t = Instant::now();
        f.ledger.request_sent(1, t);
        f.ledger.answered(1, Idle, t, Some(&digest("1")));
        f.queue.requests.push_back(f.places.request_with(1, &msg));
        assert!(matches!(f.step(), Step::AwaitSync { .. }));
        f.pipeline.synced(Gated::Synced);
        assert_eq!(queries(&f.step()), [READ]);
        mirror_row(&mut f, "2");
        assert_eq!(f.events()[0].outcome, Outcome::Mismatch);
        assert!(!f.pipeline.recheck_due());
    }
}
