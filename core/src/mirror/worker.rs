//! The mirror session of one client: takes its queue, in order, to a server connection of
//! the mirror pool, and reports an event for every request.
//!
//! The replay itself is [`Pipeline`]'s (the rules) and [`driver`]'s (the I/O); this is
//! the connection's life around it. A connection failure starts an [`Episode`]: the
//! worker retries with backoff, requests that arrive meanwhile are reported as
//! `connection` errors, and the log says so once when the episode starts and once when it
//! ends. A pooled connection that turns out dead before answering anything (the mirror
//! restarted, say) is replaced once, and its requests sent again, before anything counts
//! as failed.

use super::driver::{self, Context, Queue};
use super::episode::Episode;
use super::ledger::Ledger;
use super::pipeline::{Broken, Pipeline};
use super::prepared::Definitions;
use super::request::Request;
use super::{connection_error, EventSink, MirrorError, MirrorTarget};
use crate::backend::{PooledServer, Server};
use crate::with_halves;
use std::sync::Arc;

pub struct Worker {
    target: Arc<MirrorTarget>,
    ledger: Arc<Ledger>,
    events: EventSink,
    pipeline: Pipeline,
    /// A connection kept between runs (none while failing).
    conn: Option<PooledServer>,
    episode: Episode,
    /// A request of the current transaction never reached the mirror (connection failure):
    /// the rest of that transaction is reported as `connection` errors, not run on a new
    /// connection outside its transaction.
    lost_transaction: bool,
}

impl Worker {
    pub fn new(
        target: Arc<MirrorTarget>,
        events: EventSink,
        ledger: Arc<Ledger>,
        definitions: Arc<Definitions>,
    ) -> Worker {
        Worker {
            pipeline: Pipeline::new(target.clone(), ledger.clone(), definitions),
            target,
            ledger,
            events,
            conn: None,
            episode: Episode::default(),
            lost_transaction: false,
        }
    }

    /// Replays requests until the session's tap is dropped and the queue is empty.
    pub async fn run(mut self, mut queue: Queue) {
        while let Some(request) = queue.recv().await {
            if request.continues {
                // COPY data whose request is not held here (reported already, with a
                // connection failure): nothing to complete.
                continue;
            }
            if self.lost_transaction {
                if self.starts_transaction(&request).await {
                    self.lost_transaction = false;
                } else {
                    self.fail(request.seq);
                    continue;
                }
            }
            if !self.connect().await {
                self.fail(request.seq);
                self.lost_transaction = true;
                continue;
            }
            let conn = self.conn.take().expect("connected");
            if self.replay(conn, request, &mut queue).await {
                return;
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.release(Some("DISCARD ALL")).await;
        }
    }

    /// Replays from `first` on `conn` until the session ends (`true`) or the connection
    /// fails for good (`false`, with everything unanswered reported).
    async fn replay(&mut self, mut conn: PooledServer, first: Request, queue: &mut Queue) -> bool {
        self.pipeline.new_connection();
        self.pipeline.offer(first);
        let mut may_retry = true;
        loop {
            let end = self.drive(&mut conn, queue).await;
            let error = match end {
                Ok(status) => {
                    // The pool's reset rolls back first if a transaction was left open.
                    conn.server().status = status;
                    conn.release(Some("DISCARD ALL")).await;
                    return true;
                }
                Err(e) => e,
            };
            drop(conn);
            let broken = self.pipeline.connection_broken(&error, may_retry);
            self.pipeline.flush_events(&self.events);
            let Broken::Retry(requests) = broken else {
                self.failed(&error);
                return false;
            };
            // A pooled connection the mirror had closed: once, on a fresh one.
            tracing::debug!(
                mirror = self.target.pool.name(),
                "retrying on a new connection: {error}"
            );
            match self.target.pool.get().await {
                Ok(fresh) => {
                    conn = fresh;
                    self.pipeline.new_connection();
                    for r in requests {
                        self.pipeline.offer(r);
                    }
                    may_retry = false;
                }
                Err(e) => {
                    for r in &requests {
                        self.pipeline.report(r.seq, connection_error());
                    }
                    self.pipeline.flush_events(&self.events);
                    self.failed(&MirrorError::Pool(e));
                    return false;
                }
            }
        }
    }

    /// One run of the pipeline on `conn`.
    async fn drive(
        &mut self,
        conn: &mut PooledServer,
        queue: &mut Queue,
    ) -> Result<crate::protocol::TxStatus, MirrorError> {
        let server = conn.server();
        let key = server.key;
        let addr = self.target.pool.addr();
        let cx = Context {
            ledger: &self.ledger,
            events: &self.events,
            cancel: || {
                let (host, port) = (addr.host.clone(), addr.port);
                async move {
                    if let Err(e) = Server::cancel(&host, port, key).await {
                        tracing::debug!("cancelling a timed-out mirror request failed: {e}");
                    }
                }
            },
        };
        let pipeline = &mut self.pipeline;
        with_halves!(&mut server.stream, |rd, wr| {
            driver::run(&mut rd, &mut wr, pipeline, queue, cx).await
        })
    }

    /// The connection failed for good: the episode goes on, and the rest of the
    /// transaction is lost.
    fn failed(&mut self, error: &MirrorError) {
        self.episode.failed(&self.target, &error.to_string());
        self.lost_transaction = true;
    }

    /// Reports client request `seq` as a `connection` error without trying it.
    fn fail(&mut self, seq: u64) {
        self.pipeline.report(seq, connection_error());
        self.pipeline.flush_events(&self.events);
    }

    /// `r` starts a transaction on the primary: the primary was idle after the request
    /// before it (or answered it too long ago to know). A pipelining client's previous
    /// request may still be unanswered: this waits for it.
    async fn starts_transaction(&self, r: &Request) -> bool {
        let Some(before) = r.first_seq().checked_sub(1) else {
            return true;
        };
        self.ledger.wait_idle(before, before + 1).await;
        self.ledger.answer(before).ends_transaction()
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
}
