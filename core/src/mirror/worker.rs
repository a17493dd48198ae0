//! The mirror session of one client: replays its queue, in order, on a server connection of
//! the mirror pool, and reports an event for every request.
//!
//! Requests are pipelined: a writer sends queued requests as they come (several per write
//! when the queue has them) while a reader consumes the answers, matching each
//! ReadyForQuery to the oldest request in flight. PostgreSQL executes pipelined requests
//! one after another exactly as if they had been sent one at a time, so the mirror sees the
//! same sequence, but it is not held back by a round trip per request; this is what lets
//! a mirror as fast as the primary keep up with it. A request's mirror latency is its
//! service time: from when the mirror could start on it (sent, and the previous request
//! answered) to its ReadyForQuery.
//!
//! The writer holds a transaction's requests until the primary has finished it, then sends
//! everything finished in one write ([`Backlog`]); it wakes once per transaction, not per
//! answer ([`SessionState::wait_idle`]), and, for a client whose transactions come fast,
//! lingers up to 2 ms for its next ones to join the same write ([`Worker::linger`]). A
//! mirror that fell behind thus catches up in batches. Named prepared statements the mirror
//! lacks are defined again before use ([`super::prepared`]).
//!
//! A connection failure starts an "episode": the worker retries with exponential backoff,
//! requests that arrive meanwhile are reported as `connection` errors, and the log says so
//! once when the episode starts and once when it ends.

use super::backlog::Backlog;
use super::episode::Episode;
use super::inflight::{connection_error, ends_with_copy_data, write_batch, InFlight};
use super::prepared::{Definitions, OnMirror};
use super::request::Request;
use super::{DropReason, ErrorCategory, Event, EventSink, MirrorTarget, Outcome};
use crate::backend::server::MAX_SERVER_MESSAGE;
use crate::backend::{PooledServer, Server};
use crate::compare::statements::Statements;
use crate::compare::{judge, Digest};
use crate::frontend::state::SessionState;
use crate::plugins::QueryRef;
use crate::protocol::backend::sqlstate;
use crate::protocol::frame::read_message;
use crate::protocol::ProtocolError;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

/// After cancelling a timed-out request, how long to wait for its answer before the
/// connection is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long the writer waits after a finished transaction for more of the client's
/// requests to go in the same write ([`Worker::linger`]), and how many sequence numbers
/// it waits for at most.
const LINGER: Duration = Duration::from_millis(2);
const LINGER_SEQS: u64 = 16;

pub struct Worker {
    target: Arc<MirrorTarget>,
    events: EventSink,
    primary: Arc<SessionState>,
    conn: Option<PooledServer>,
    episode: Episode,
    /// Prepared statements of the session, when results are compared.
    statements: Option<Mutex<Statements>>,
    /// The client's named statements, to define on the mirror when it lacks them.
    definitions: Arc<Definitions>,
    /// A request of the current transaction never reached the mirror (connection failure):
    /// the rest of that transaction is reported as `connection` errors, not run on a new
    /// connection outside its transaction.
    lost_transaction: bool,
    /// The session's `mirror_queue` places (the tap's), as they were when it started.
    places: usize,
}

/// How a pipelined run on one connection ended.
enum RunEnd {
    /// The session's tap is gone and every request was answered; the mirror's transaction
    /// status after the last one.
    Closed { status: u8 },
    /// The connection failed; the requests still in flight were reported.
    Broken(String),
    /// The connection, taken from the pool, failed before answering anything: nothing was
    /// reported, and these requests can be sent again on a fresh connection.
    Retry(String, Vec<Request>),
}

impl Worker {
    pub fn new(
        target: Arc<MirrorTarget>,
        events: EventSink,
        primary: Arc<SessionState>,
        definitions: Arc<Definitions>,
        places: usize,
    ) -> Worker {
        let statements = primary.compares().then(Mutex::default);
        Worker {
            target,
            events,
            primary,
            conn: None,
            episode: Episode::default(),
            statements,
            definitions,
            lost_transaction: false,
            places,
        }
    }

    /// Replays requests until the session's tap is dropped and the queue is empty.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(request) = rx.recv().await {
            if request.continues {
                // COPY data whose request is not held here (reported already, with a
                // connection failure): nothing to complete.
                continue;
            }
            if self.lost_transaction {
                if self.starts_transaction(&request).await {
                    self.lost_transaction = false;
                } else {
                    self.emit(request.seq, connection_error(), None);
                    continue;
                }
            }
            if !self.connect().await {
                self.emit(request.seq, connection_error(), None);
                self.lost_transaction = true;
                continue;
            }
            let mut conn = self.conn.take().expect("connected");
            let mut batch = vec![request];
            let mut may_retry = true;
            loop {
                match self.pipeline(&mut conn, batch, &mut rx, may_retry).await {
                    RunEnd::Closed { status } => {
                        // The pool's reset rolls back first if a transaction was left open.
                        conn.server().status = status;
                        conn.release().await;
                        return;
                    }
                    RunEnd::Broken(why) => {
                        drop(conn);
                        self.episode.failed(&self.target, &why);
                        self.lost_transaction = true;
                        break;
                    }
                    RunEnd::Retry(why, requests) => {
                        // A pooled connection the mirror had closed (it restarted, say):
                        // once, on a fresh one, before anything counts as failed.
                        tracing::debug!(
                            mirror = self.target.pool.name(),
                            "retrying on a new connection: {why}"
                        );
                        drop(conn);
                        match self.target.pool.get().await {
                            Ok(fresh) => {
                                conn = fresh;
                                batch = requests;
                                may_retry = false;
                            }
                            Err(e) => {
                                for r in requests.iter().filter(|r| r.is_client()) {
                                    self.emit(r.seq, connection_error(), None);
                                }
                                self.episode.failed(&self.target, &e.to_string());
                                self.lost_transaction = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.release().await;
        }
    }

    /// `r` starts a transaction on the primary: the primary was idle after the request
    /// before it (or answered it too long ago to know, as [`Backlog`] counts it). A
    /// pipelining client's previous request may still be unanswered: this waits for it.
    async fn starts_transaction(&self, r: &Request) -> bool {
        let Some(before) = r.first_seq().checked_sub(1) else {
            return true;
        };
        self.primary.wait_idle(before, before + 1).await;
        matches!(self.primary.answered_now(before), Some(Some(b'I') | None))
    }

    fn emit(&self, seq: u64, outcome: Outcome, mirror_latency: Option<Duration>) {
        let mut event = Event::new(self.target.database.clone(), outcome);
        event.mirror_latency = mirror_latency;
        event.primary_latency = self.primary.primary_latency(seq);
        self.events.send(event);
    }

    /// Reports an answered request, with its comparison when results are compared.
    fn emit_answered(&self, done: &InFlight, outcome: Outcome, mirror_latency: Option<Duration>) {
        let mut event = Event::new(self.target.database.clone(), outcome);
        event.mirror_latency = mirror_latency;
        event.primary_latency = self.primary.primary_latency(done.seq);
        if let Some(statement) = &done.statement {
            event.query = Some(QueryRef {
                fingerprint: statement.id,
                text: statement.text.clone(),
            });
        }
        if self.statements.is_some() && !done.timed_out {
            let mirror_error = match outcome {
                // An error without a SQLSTATE never equals the primary's.
                Outcome::Error { sqlstate, .. } => Some(sqlstate.unwrap_or(*b"?????")),
                _ => None,
            };
            let ignored = done
                .statement
                .as_ref()
                .is_some_and(|s| self.target.ignore.contains(&s.id));
            event.comparison = judge(
                &done.paired,
                mirror_error,
                done.statement.as_deref(),
                ignored,
                self.target.has_diverged(),
            );
            if event.outcome == Outcome::Mirrored
                && event.comparison.verdict == pgdog_plugin_api::Verdict::MISMATCH
            {
                event.outcome = Outcome::Mismatch;
            }
        }
        self.events.send(event);
    }

    /// Makes sure there is a connection, respecting the backoff and `DISABLE`.
    async fn connect(&mut self) -> bool {
        if self.target.pool.is_disabled() {
            self.conn = None;
            if self.episode.is_failing() {
                self.episode.count_request();
            } else {
                self.episode.failed(&self.target, "mirror pool is disabled");
            }
            return false;
        }
        if self.conn.is_some() {
            return true;
        }
        if self.episode.backing_off() {
            self.episode.count_request();
            return false;
        }
        match self.target.pool.get().await {
            Ok(conn) => {
                self.episode.restored(&self.target);
                self.conn = Some(conn);
                true
            }
            Err(e) => {
                self.episode.failed(&self.target, &e.to_string());
                false
            }
        }
    }

    /// Most requests of one open transaction held back before they are sent anyway (a long
    /// transaction must not use up the session's queue places).
    fn hold_limit(&self) -> usize {
        (self.places / 2).max(1)
    }

    /// Once a held transaction is finished, waits a moment (at most [`LINGER`]) for the
    /// client's next requests to be answered too, so that they reach the mirror in the
    /// same write: one wake-up of the mirror's backend and of this worker for several
    /// requests rather than one each. Only this worker waits; the mirror falls behind by
    /// at most that long, and latency is measured from the send, so it is not affected.
    /// The requests stay in `backlog` meanwhile: a connection that breaks reports them.
    async fn linger(&self, backlog: &Mutex<Backlog>) {
        let Some(first) = backlog.lock().unwrap().first_seq() else {
            return;
        };
        // Only for a client whose transactions come faster than the wait: the transaction
        // held began after the previous one ended, and ended just now. A slower client's
        // next transaction would not come in time, and waiting would only delay this one.
        let cycle = first
            .checked_sub(1)
            .and_then(|before| self.primary.answered_ago(before, Instant::now()));
        if cycle.is_none_or(|cycle| cycle >= LINGER / 2) {
            return;
        }
        // A quarter of the session's places at most: requests keep their places until the
        // mirror answers them, so waiting must leave room for the ones still in flight
        // (with `mirror_queue` under 8 it does not wait at all).
        let until = first + LINGER_SEQS.min(self.places as u64 / 4);
        let _ = tokio::time::timeout(LINGER, self.primary.wait_idle(u64::MAX, until)).await;
    }

    /// Records `batch` as in flight and writes it in one go.
    async fn send<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        batch: &mut Vec<Request>,
        in_flight: &Mutex<VecDeque<InFlight>>,
        on_mirror: &Mutex<OnMirror>,
        sent: &tokio::sync::Notify,
    ) -> Result<(), (String, Vec<Request>)> {
        if self.target.pool.is_disabled() {
            return Err(("mirror pool is disabled".to_string(), std::mem::take(batch)));
        }
        // Recorded before writing: the first answers can arrive while later requests of the
        // batch are still being written.
        let now = Instant::now();
        let mut payloads = Vec::with_capacity(batch.len());
        {
            let mut statements = self.statements.as_ref().map(|s| s.lock().unwrap());
            let mut on_mirror = on_mirror.lock().unwrap();
            let mut q = in_flight.lock().unwrap();
            for mut r in batch.drain(..) {
                let first_seq = r.seq + 1 - u64::from(r.readies.max(1));
                let effects = on_mirror.prepare(&mut r.payload, first_seq, &self.definitions);
                let statement = statements
                    .as_mut()
                    .filter(|_| r.is_client())
                    .and_then(|s| s.request(&r.payload));
                q.push_back(InFlight {
                    payload: r.payload.clone(),
                    received: r.received,
                    seq: r.seq,
                    readies: r.readies.max(1),
                    has_copy_data: ends_with_copy_data(&r),
                    _slot: r.slot,
                    sent: now,
                    error: None,
                    timed_out: false,
                    statement,
                    paired: Default::default(),
                    effects,
                });
                payloads.push(r.payload);
            }
        }
        sent.notify_one();
        write_batch(wr, &payloads)
            .await
            .map_err(|e| (e.to_string(), Vec::new()))
    }

    /// Runs the connection until the queue closes or the connection breaks.
    async fn pipeline(
        &self,
        conn: &mut PooledServer,
        initial: Vec<Request>,
        rx: &mut mpsc::UnboundedReceiver<Request>,
        may_retry: bool,
    ) -> RunEnd {
        let in_flight = Mutex::new(VecDeque::<InFlight>::new());
        // The named statements this connection's server has (see `prepared`).
        let on_mirror = Mutex::new(OnMirror::default());
        // Requests the writer took from the queue and has not sent yet (see `backlog`).
        // Kept here, not inside the writer, so that a broken connection reports them
        // instead of losing them with the writer.
        let backlog = Mutex::new(Backlog::default());
        // Set when the queue is closed and everything was sent.
        let writer_finished = std::sync::atomic::AtomicBool::new(false);
        // Wakes the reader when requests were sent (their timeout starts counting) and when
        // the writer finished.
        let sent = tokio::sync::Notify::new();
        let server = conn.server();
        let key = server.key;
        let (mut rd, mut wr) = server.stream.split();

        // The number of requests in flight needs no limit of its own: each holds one of the
        // session's `mirror_queue` places until answered.
        // The first requests wait with the others from the start: if the connection turns
        // out dead before the writer ever runs, they are reported, not dropped with it.
        let status = |seq| self.primary.answered_now(seq);
        let dropped = |r: Request| {
            if r.is_client() {
                self.target.note_drop();
                self.events.send(Event::dropped(
                    self.target.database.clone(),
                    DropReason::BufferFull,
                ));
            }
        };
        for r in initial {
            backlog.lock().unwrap().take(r, status, dropped);
        }
        let writer = async {
            let mut session_over = false;
            // The last wait found the answer it waited for.
            let mut idle_seen = false;
            loop {
                // Everything already queued: the primary answered or will answer it first.
                let mut took = 0;
                loop {
                    match rx.try_recv() {
                        Ok(r) => {
                            took += 1;
                            backlog.lock().unwrap().take(r, status, dropped);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            session_over = true;
                            break;
                        }
                    }
                }
                // A transaction whose end was never queued (dropped) is held or open on the
                // mirror, and the primary has finished it: end it now rather than when the
                // client's next mirrored request shows the gap. A request is queued before
                // the primary sees it, so one the primary answered since the drain above is
                // queued by now.
                if !session_over && backlog.lock().unwrap().cut_short(status) {
                    match rx.try_recv() {
                        Ok(r) => {
                            took += 1;
                            backlog.lock().unwrap().take(r, status, dropped);
                        }
                        Err(mpsc::error::TryRecvError::Empty) => {
                            backlog.lock().unwrap().cut_off(&status, dropped);
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => session_over = true,
                    }
                }
                let mut batch = if session_over {
                    // The session ended: whatever is held goes out as it is.
                    backlog.lock().unwrap().take_all()
                } else {
                    backlog.lock().unwrap().ready(status, self.hold_limit())
                };
                let progressed = took > 0 || !batch.is_empty();
                if !batch.is_empty() {
                    self.send(&mut wr, &mut batch, &in_flight, &on_mirror, &sent)
                        .await?;
                }
                if session_over {
                    writer_finished.store(true, std::sync::atomic::Ordering::Release);
                    sent.notify_one();
                    return Ok(());
                }
                let wake = backlog.lock().unwrap().wake_at(self.hold_limit());
                match wake {
                    // Held requests wait for the primary to finish their transaction.
                    Some((from, until)) if !idle_seen || progressed => {
                        idle_seen = self.primary.wait_idle(from, until).await;
                        if idle_seen {
                            self.linger(&backlog).await;
                        } else {
                            // The session is over; its tap goes next, closing the queue.
                            match rx.recv().await {
                                Some(r) => backlog.lock().unwrap().take(r, status, dropped),
                                None => session_over = true,
                            }
                        }
                    }
                    // Nothing to send until the client's next request, or until the primary
                    // finishes a transaction whose end was dropped while its head is held or
                    // open on the mirror (`watch_from`, `cut_short`).
                    _ => {
                        idle_seen = false;
                        let watch_from = backlog.lock().unwrap().watch_from();
                        tokio::select! {
                            next = rx.recv() => match next {
                                Some(r) => backlog.lock().unwrap().take(r, status, dropped),
                                None => session_over = true,
                            },
                            // The check at the top then ends the cut transaction.
                            _ = self.primary.wait_idle(watch_from.unwrap_or(u64::MAX), u64::MAX),
                                if watch_from.is_some() => {}
                        }
                    }
                }
            }
        };

        let answered = std::sync::atomic::AtomicU64::new(0);
        // Transaction status of the mirror's last ReadyForQuery.
        let mirror_status = std::sync::atomic::AtomicU8::new(b'I');
        let compare = self.statements.is_some();
        let reader = async {
            let mut buf = BytesMut::with_capacity(8192);
            let mut digest = Digest::default();
            let mut last_done = Instant::now();
            let mut cancel_deadline: Option<Instant> = None;
            // When the last timed-out (cancelled) request was answered. The server applies
            // a cancel to whatever runs when it arrives, and under load a request right
            // after the cancelled one can fail with 57014 too (seen in tests: two cancel
            // errors 2 ms apart for one cancel sent).
            let mut last_cancelled: Option<Instant> = None;
            loop {
                let front = in_flight
                    .lock()
                    .unwrap()
                    .front()
                    .map(|f| (f.sent.max(last_done), f.timed_out));
                let read = match front {
                    None if writer_finished.load(std::sync::atomic::Ordering::Acquire) => {
                        return Ok(())
                    }
                    None => tokio::select! {
                        read = read_message(&mut rd, &mut buf, MAX_SERVER_MESSAGE) => read,
                        _ = sent.notified() => continue,
                    },
                    Some((started, timed_out)) => {
                        let deadline = if timed_out {
                            cancel_deadline.unwrap_or(started + self.target.timeout)
                        } else {
                            started + self.target.timeout
                        };
                        match tokio::time::timeout_at(
                            deadline.into(),
                            read_message(&mut rd, &mut buf, MAX_SERVER_MESSAGE),
                        )
                        .await
                        {
                            Ok(read) => read,
                            Err(_) if timed_out => {
                                return Err(
                                    "no answer after cancelling a timed-out request".to_string()
                                );
                            }
                            Err(_) => {
                                // Too slow: cancel what runs now; its answer still ends it.
                                if let Some(f) = in_flight.lock().unwrap().front_mut() {
                                    f.timed_out = true;
                                }
                                let addr = self.target.pool.addr();
                                // Within the grace: a mirror host that stopped answering
                                // must not hold the reader for the system's connect timeout.
                                let cancel = Server::cancel(&addr.host, addr.port, key);
                                let _ = tokio::time::timeout(CANCEL_GRACE, cancel).await;
                                // The answer's grace counts from the cancel, not before it.
                                cancel_deadline = Some(Instant::now() + CANCEL_GRACE);
                                continue;
                            }
                        }
                    }
                };
                let msg = match read {
                    Ok(msg) => msg,
                    Err(ProtocolError::Io(e)) => return Err(e.to_string()),
                    Err(ProtocolError::Eof) => {
                        return Err("mirror server closed the connection".to_string())
                    }
                    Err(e) => return Err(format!("protocol error: {e}")),
                };
                if compare && msg[0] != b'Z' {
                    digest.feed(msg[0], &msg);
                }
                match msg[0] {
                    b'E' => {
                        if let Some(f) = in_flight.lock().unwrap().front_mut() {
                            f.error.get_or_insert(sqlstate(&msg));
                        }
                    }
                    b'G' => {
                        let has_data = in_flight
                            .lock()
                            .unwrap()
                            .front()
                            .is_some_and(|f| f.has_copy_data);
                        if !has_data {
                            // The client's COPY data went another way (COPY through the
                            // extended protocol): end the mirror's COPY rather than hang.
                            return Err("COPY without data on the mirror".to_string());
                        }
                    }
                    b'W' => return Err("unexpected COPY BOTH from the mirror".to_string()),
                    b'Z' => {
                        let now = Instant::now();
                        let done = {
                            let mut q = in_flight.lock().unwrap();
                            if let (true, Some(front)) =
                                (compare, q.front_mut().filter(|f| f.is_client()))
                            {
                                // This answer's request among the joined ones.
                                let seq = front.seq + 1 - u64::from(front.readies.max(1));
                                let ordered = front.statement.as_ref().is_some_and(|s| s.ordered);
                                let primary = self.primary.primary_digest(seq);
                                front.paired.add(primary.as_ref(), &digest.take(), ordered);
                            } else if compare {
                                // The proxy's own request: its answer is not compared, and
                                // must not count towards the next request's.
                                digest.take();
                            }
                            match q.front_mut() {
                                None => {
                                    return Err(
                                        "ReadyForQuery with no request in flight".to_string()
                                    )
                                }
                                // A joined preparing batch: its request is not over yet.
                                Some(front) if front.readies > 1 => {
                                    front.readies -= 1;
                                    None
                                }
                                Some(_) => q.pop_front(),
                            }
                        };
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        mirror_status.store(msg.get(5).copied().unwrap_or(b'I'), Relaxed);
                        let Some(mut done) = done else { continue };
                        let ok = done.error.is_none() && !done.timed_out;
                        on_mirror
                            .lock()
                            .unwrap()
                            .answered(std::mem::take(&mut done.effects), ok);
                        let latency = now - done.sent.max(last_done);
                        last_done = now;
                        cancel_deadline = None;
                        let cancelled = done.error == Some(Some(*b"57014"));
                        // The proxy's own late cancel is a timeout, not the mirror's error.
                        let hit_by_stray = !done.timed_out
                            && cancelled
                            && last_cancelled.is_some_and(|at| now - at < CANCEL_GRACE);
                        if done.timed_out {
                            last_cancelled = Some(now);
                        }
                        let timed_out = done.timed_out || hit_by_stray;
                        done.timed_out = timed_out; // not compared either
                        let outcome = if timed_out {
                            Outcome::Error {
                                category: ErrorCategory::Timeout,
                                sqlstate: None,
                            }
                        } else {
                            match done.error {
                                None => Outcome::Mirrored,
                                Some(code) => Outcome::Error {
                                    category: ErrorCategory::Query,
                                    sqlstate: code,
                                },
                            }
                        };
                        let latency = (!timed_out).then_some(latency);
                        if done.is_client() {
                            self.emit_answered(&done, outcome, latency);
                        }
                    }
                    _ => {}
                }
            }
        };

        tokio::pin!(writer);
        tokio::pin!(reader);
        // The reader ends the run: cleanly once the writer has finished and every answer
        // arrived, or with the reason the connection broke. A writer error ends it too.
        let mut writer_done = false;
        let broken: Result<(), (String, Vec<Request>)> = loop {
            tokio::select! {
                result = &mut writer, if !writer_done => match result {
                    Ok(()) => writer_done = true,
                    Err(e) => break Err(e),
                },
                end = &mut reader => break end.map_err(|why| (why, Vec::new())),
            }
        };
        match broken {
            Ok(()) => RunEnd::Closed {
                status: mirror_status.load(Relaxed),
            },
            Err((why, unsent)) => {
                let lost: Vec<InFlight> = in_flight.lock().unwrap().drain(..).collect();
                let held = backlog.lock().unwrap().take_all();
                let nothing_answered = answered.load(std::sync::atomic::Ordering::Relaxed) == 0;
                if may_retry && nothing_answered && !lost.iter().any(|f| f.timed_out) {
                    // The proxy's own requests are not sent again: a fresh connection is not
                    // inside any transaction.
                    let again: Vec<Request> = lost
                        .into_iter()
                        .map(InFlight::into_request)
                        .chain(unsent)
                        .chain(held)
                        .filter(Request::is_client)
                        .collect();
                    return RunEnd::Retry(why, again);
                }
                // Everything unanswered failed with the connection (a request that had
                // already timed out stays a timeout).
                for f in lost.into_iter().filter(InFlight::is_client) {
                    let outcome = if f.timed_out {
                        Outcome::Error {
                            category: ErrorCategory::Timeout,
                            sqlstate: None,
                        }
                    } else {
                        connection_error()
                    };
                    self.emit(f.seq, outcome, None);
                }
                for r in unsent.iter().chain(held.iter()).filter(|r| r.is_client()) {
                    self.emit(r.seq, connection_error(), None);
                }
                RunEnd::Broken(why)
            }
        }
    }
}
