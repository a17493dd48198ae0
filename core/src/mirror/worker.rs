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
//! A connection failure starts an "episode": the worker retries with exponential backoff,
//! requests that arrive meanwhile are reported as `connection` errors, and the log says so
//! once when the episode starts and once when it ends.

use super::request::Request;
use super::{ErrorCategory, Event, EventSink, MirrorTarget, Outcome};
use crate::backend::server::MAX_SERVER_MESSAGE;
use crate::backend::{PooledServer, Server};
use crate::frontend::state::SessionState;
use crate::protocol::backend::{ready_status, sqlstate};
use crate::protocol::frame::{read_message, Frames};
use crate::protocol::ProtocolError;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After cancelling a timed-out request, how long to wait for its answer before the
/// connection is given up.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// Most requests in flight on the mirror connection at once.
const MAX_IN_FLIGHT: usize = 64;
/// Most requests gathered into one write.
const MAX_BATCH: usize = 16;

pub struct Worker {
    target: Arc<MirrorTarget>,
    events: EventSink,
    primary: Arc<SessionState>,
    conn: Option<PooledServer>,
    /// While set, no connection attempt before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    failing_since: Option<Instant>,
    failed_requests: u64,
}

/// A request sent to the mirror and not yet answered.
struct InFlight {
    seq: u64,
    sent: Instant,
    /// The request carries its own COPY data (ends with CopyDone/CopyFail).
    has_copy_data: bool,
    /// First ErrorResponse's SQLSTATE seen for it.
    error: Option<Option<[u8; 5]>>,
    /// A cancel was sent for it after `mirror_timeout_ms`.
    timed_out: bool,
}

/// How a pipelined run on one connection ended.
enum RunEnd {
    /// The session's tap is gone and every request was answered.
    Closed,
    /// The connection failed; the requests still in flight were reported.
    Broken(String),
}

impl Worker {
    pub fn new(target: Arc<MirrorTarget>, events: EventSink, primary: Arc<SessionState>) -> Worker {
        Worker {
            target,
            events,
            primary,
            conn: None,
            retry_at: None,
            backoff: BACKOFF_MIN,
            failing_since: None,
            failed_requests: 0,
        }
    }

    /// Replays requests until the session's tap is dropped and the queue is empty.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut next = None;
        loop {
            let request = match next.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => break,
                },
            };
            self.target.depth.fetch_sub(1, Ordering::Relaxed);
            if !self.connect().await {
                self.emit(request.seq, connection_error(), None);
                continue;
            }
            let mut conn = self.conn.take().expect("connected");
            match self.pipeline(&mut conn, request, &mut rx).await {
                RunEnd::Closed => {
                    conn.release().await;
                    return;
                }
                RunEnd::Broken(why) => {
                    drop(conn);
                    self.connection_failed(&why);
                    // Keep draining: `next` stays empty and the loop reads the queue again.
                    next = None;
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.release().await;
        }
    }

    fn emit(&self, seq: u64, outcome: Outcome, mirror_latency: Option<Duration>) {
        let mut event = Event::new(self.target.database.clone(), outcome);
        event.mirror_latency = mirror_latency;
        event.primary_latency = self.primary.primary_latency(seq);
        self.events.send(event);
    }

    /// Makes sure there is a connection, respecting the backoff and `DISABLE`.
    async fn connect(&mut self) -> bool {
        if self.target.pool.is_disabled() {
            self.conn = None;
            if self.failing_since.is_none() {
                self.connection_failed("mirror pool is disabled");
            } else {
                self.failed_requests += 1;
            }
            return false;
        }
        if self.conn.is_some() {
            return true;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            self.failed_requests += 1;
            return false;
        }
        match self.target.pool.get().await {
            Ok(conn) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        database = &*self.target.database,
                        mirror = self.target.pool.name(),
                        "mirror connection restored after {:.1}s ({} requests failed meanwhile)",
                        since.elapsed().as_secs_f64(),
                        self.failed_requests
                    );
                }
                self.conn = Some(conn);
                self.retry_at = None;
                self.backoff = BACKOFF_MIN;
                self.failed_requests = 0;
                true
            }
            Err(e) => {
                self.connection_failed(&e.to_string());
                false
            }
        }
    }

    fn connection_failed(&mut self, why: &str) {
        self.failed_requests += 1;
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::warn!(
                database = &*self.target.database,
                mirror = self.target.pool.name(),
                "mirror unavailable, requests are counted as connection errors until it is back: {why}"
            );
        } else {
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    /// Runs the connection until the queue closes or the connection breaks.
    async fn pipeline(
        &self,
        conn: &mut PooledServer,
        first: Request,
        rx: &mut mpsc::Receiver<Request>,
    ) -> RunEnd {
        let in_flight = Mutex::new(VecDeque::<InFlight>::with_capacity(MAX_IN_FLIGHT));
        // Wakes the writer when the reader frees room in the pipeline.
        let room = tokio::sync::Notify::new();
        // Wakes the reader when requests were sent, so their timeout starts counting.
        let sent = tokio::sync::Notify::new();
        let server = conn.server();
        let key = server.key;
        let (mut rd, mut wr) = server.stream.split();

        let writer = async {
            let mut batch: Vec<Request> = vec![first];
            loop {
                // Gather what is already queued, up to the batch and pipeline limits.
                while batch.len() < MAX_BATCH
                    && in_flight.lock().unwrap().len() + batch.len() < MAX_IN_FLIGHT
                {
                    match rx.try_recv() {
                        Ok(r) => {
                            self.target.depth.fetch_sub(1, Ordering::Relaxed);
                            batch.push(r);
                        }
                        Err(_) => break,
                    }
                }
                if self.target.pool.is_disabled() {
                    return Err(("mirror pool is disabled".to_string(), batch));
                }
                let now = Instant::now();
                {
                    let mut q = in_flight.lock().unwrap();
                    for r in &batch {
                        q.push_back(InFlight {
                            seq: r.seq,
                            sent: now,
                            has_copy_data: ends_with_copy_data(r),
                            error: None,
                            timed_out: false,
                        });
                    }
                }
                sent.notify_one();
                if let Err(e) = write_batch(&mut wr, &batch).await {
                    return Err((e.to_string(), Vec::new()));
                }
                batch.clear();
                // Wait for room, then for the next request.
                while in_flight.lock().unwrap().len() >= MAX_IN_FLIGHT {
                    room.notified().await;
                }
                match rx.recv().await {
                    Some(r) => {
                        self.target.depth.fetch_sub(1, Ordering::Relaxed);
                        batch.push(r);
                    }
                    None => return Ok(()),
                }
            }
        };

        let reader = async {
            let mut buf = BytesMut::with_capacity(8192);
            let mut last_done = Instant::now();
            let mut cancel_deadline: Option<Instant> = None;
            loop {
                let front = in_flight
                    .lock()
                    .unwrap()
                    .front()
                    .map(|f| (f.sent.max(last_done), f.timed_out));
                let read = match front {
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
                                return "no answer after cancelling a timed-out request".to_string()
                            }
                            Err(_) => {
                                // Too slow: cancel what runs now; its answer still ends it.
                                if let Some(f) = in_flight.lock().unwrap().front_mut() {
                                    f.timed_out = true;
                                }
                                cancel_deadline = Some(Instant::now() + CANCEL_GRACE);
                                let addr = self.target.pool.addr();
                                let _ = Server::cancel(&addr.host, addr.port, key).await;
                                continue;
                            }
                        }
                    }
                };
                let msg = match read {
                    Ok(msg) => msg,
                    Err(ProtocolError::Io(e)) => return e.to_string(),
                    Err(ProtocolError::Eof) => {
                        return "mirror server closed the connection".to_string()
                    }
                    Err(e) => return format!("protocol error: {e}"),
                };
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
                            return "COPY without data on the mirror".to_string();
                        }
                    }
                    b'W' => return "unexpected COPY BOTH from the mirror".to_string(),
                    b'Z' => {
                        let now = Instant::now();
                        let done = in_flight.lock().unwrap().pop_front();
                        room.notify_one();
                        let Some(done) = done else {
                            return "ReadyForQuery with no request in flight".to_string();
                        };
                        let latency = now - done.sent.max(last_done);
                        last_done = now;
                        cancel_deadline = None;
                        let _ = ready_status(&msg);
                        let outcome = if done.timed_out {
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
                        let latency = (!done.timed_out).then_some(latency);
                        self.emit(done.seq, outcome, latency);
                    }
                    _ => {}
                }
            }
        };

        tokio::pin!(writer);
        tokio::pin!(reader);
        let mut writer_done = false;
        let broken: Result<(), (String, Vec<Request>)> = loop {
            tokio::select! {
                result = &mut writer, if !writer_done => match result {
                    Ok(()) => {
                        writer_done = true;
                        if in_flight.lock().unwrap().is_empty() {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                },
                why = &mut reader => break Err((why, Vec::new())),
            }
            if writer_done && in_flight.lock().unwrap().is_empty() {
                break Ok(());
            }
        };
        match broken {
            Ok(()) => RunEnd::Closed,
            Err((why, unsent)) => {
                // Everything unanswered failed with the connection (a request that had
                // already timed out stays a timeout).
                let lost: Vec<InFlight> = in_flight.lock().unwrap().drain(..).collect();
                for f in lost {
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
                for r in unsent {
                    self.emit(r.seq, connection_error(), None);
                }
                RunEnd::Broken(why)
            }
        }
    }
}

async fn write_batch<W: AsyncWrite + Unpin>(wr: &mut W, batch: &[Request]) -> std::io::Result<()> {
    let slices: Vec<IoSlice<'_>> = batch
        .iter()
        .flat_map(|r| r.payload.iter().map(|b| IoSlice::new(b)))
        .collect();
    let total: usize = slices.iter().map(|s| s.len()).sum();
    if slices.len() == 1 {
        return wr.write_all(&slices[0]).await;
    }
    // Gather small batches into one buffer: one syscall, and write_vectored may stop early.
    let mut out = BytesMut::with_capacity(total);
    for s in &slices {
        out.extend_from_slice(s);
    }
    wr.write_all(&out).await
}

fn connection_error() -> Outcome {
    Outcome::Error {
        category: ErrorCategory::Connection,
        sqlstate: None,
    }
}

/// Whether the request carries its own COPY data (it ends with CopyDone or CopyFail).
fn ends_with_copy_data(request: &Request) -> bool {
    request
        .payload
        .last()
        .and_then(|last| Frames::new(last).last())
        .is_some_and(|(tag, _)| tag == b'c' || tag == b'f')
}
