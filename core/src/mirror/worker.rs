//! The mirror session of one client: takes its queue, in order, to server connections of
//! the mirror pool, and reports an event for every request.
//!
//! The replay itself is [`Pipeline`]'s (the rules) and [`driver`]'s (the I/O); this is
//! the connections' life around it:
//! - in session mode the session holds one connection for its whole life; in transaction
//!   mode it takes one when the primary has finished the transaction to replay (or passed
//!   the hold limit in it), and gives it back, with the prepared statements it has, when
//!   the mirror has answered everything and is idle again ([`Stop::Released`]);
//! - a pool with every connection in use is the proxy's own limit (`pool_size`), not the
//!   new server's: the session waits for a connection, for as long as it takes, and its
//!   requests wait in its queue meanwhile; when the queue is full the tap drops them as
//!   `pool_exhausted`;
//! - a connection failure starts an [`Episode`]: the worker retries with backoff,
//!   requests that arrive meanwhile are reported as `connection` errors, and the log says
//!   so once when the episode starts and once when it ends;
//! - a pooled connection that turns out dead before answering anything (the mirror
//!   restarted, say) is replaced once, and its requests sent again, before anything
//!   counts as failed;
//! - a connection that closes while the mirror is idle between requests (its backend
//!   terminated, say) costs nothing: no episode, and the next request takes a fresh one.

use super::driver::{self, Context, Queue, Stop};
use super::episode::Episode;
use super::ledger::Ledger;
use super::pipeline::{Broken, Pipeline};
use super::prepared::{Definitions, OnMirror};
use super::request::Request;
use super::target::Pooling;
use super::{connection_error, EventSink, MirrorError, MirrorTarget};
use crate::backend::{PoolError, PooledServer, Server};
use crate::with_halves;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Worker {
    target: Arc<MirrorTarget>,
    ledger: Arc<Ledger>,
    events: EventSink,
    pipeline: Pipeline,
    /// A connection kept between runs (none while failing, or given back).
    conn: Option<PooledServer>,
    /// Set while the session waits for a connection of an exhausted pool: the tap then
    /// drops what does not fit in the queue as `pool_exhausted`.
    awaiting_pool: Arc<AtomicBool>,
    episode: Episode,
    /// A request of the current transaction never reached the mirror (connection failure):
    /// the rest of that transaction is reported as `connection` errors, not run on a new
    /// connection outside its transaction.
    lost_transaction: bool,
}

/// How a replay on a connection ended.
enum Replayed {
    /// The session is over (its connection given back).
    SessionEnded,
    /// Transaction mode: the connection went back to the pool between transactions.
    Released,
    /// The connection failed for good; everything unanswered was reported.
    Failed,
    /// The connection closed between requests, with nothing lost (see [`Broken::Quiet`]).
    Closed,
}

impl Worker {
    pub fn new(
        target: Arc<MirrorTarget>,
        events: EventSink,
        ledger: Arc<Ledger>,
        definitions: Arc<Definitions>,
        awaiting_pool: Arc<AtomicBool>,
    ) -> Worker {
        Worker {
            pipeline: Pipeline::new(target.clone(), ledger.clone(), definitions),
            target,
            ledger,
            events,
            conn: None,
            awaiting_pool,
            episode: Episode::default(),
            lost_transaction: false,
        }
    }

    fn per_transaction(&self) -> bool {
        matches!(self.target.pooling, Pooling::Transaction { .. })
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
            if self.conn.is_none() && self.per_transaction() {
                // The connection is needed once the transaction can go out.
                let until = request.first_seq() + self.pipeline.hold_limit() as u64;
                self.ledger.wait_idle(request.seq, until).await;
            }
            if !self.connect().await {
                self.fail(request.seq);
                self.lost_transaction = true;
                continue;
            }
            let conn = self.conn.take().expect("connected");
            match self.replay(conn, request, &mut queue).await {
                Replayed::SessionEnded => return,
                Replayed::Released | Replayed::Failed | Replayed::Closed => {}
            }
        }
        if let Some(conn) = self.conn.take() {
            self.give_back(conn).await;
        }
    }

    /// Replays from `first` on `conn` until the session ends, the connection goes back
    /// between transactions, or it fails for good (with everything unanswered reported).
    async fn replay(
        &mut self,
        mut conn: PooledServer,
        first: Request,
        queue: &mut Queue,
    ) -> Replayed {
        self.pipeline.attach(statements_of(&mut conn));
        self.pipeline.offer(first);
        let mut may_retry = true;
        loop {
            let end = self.drive(&mut conn, queue).await;
            let error = match end {
                Ok(Stop::Finished(status)) => {
                    // The pool's reset rolls back first if a transaction was left open.
                    conn.server().status = status;
                    self.give_back(conn).await;
                    return Replayed::SessionEnded;
                }
                Ok(Stop::Released) => {
                    conn.server().status = self.pipeline.mirror_status();
                    self.give_back(conn).await;
                    return Replayed::Released;
                }
                Err(e) => e,
            };
            drop(conn);
            let broken = self.pipeline.connection_broken(&error, may_retry);
            self.pipeline.flush_events(&self.events);
            let requests = match broken {
                Broken::Retry(requests) => requests,
                Broken::Reported => {
                    self.failed(&error);
                    return Replayed::Failed;
                }
                // Nothing lost: no episode, no backoff; the next request connects.
                Broken::Quiet => return Replayed::Closed,
            };
            // A pooled connection the mirror had closed: once, on a fresh one.
            tracing::debug!(
                mirror = self.target.pool.name(),
                "retrying on a new connection: {error}"
            );
            match self.checkout().await {
                Ok(mut fresh) => {
                    self.pipeline.attach(statements_of(&mut fresh));
                    conn = fresh;
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
                    return Replayed::Failed;
                }
            }
        }
    }

    /// Gives `conn` back to the pool. In transaction mode it keeps its prepared
    /// statements for the next session, unless this one prepared statements in SQL
    /// (then its session state goes, as in session mode: `DISCARD ALL`).
    async fn give_back(&mut self, mut conn: PooledServer) {
        let statements = self.pipeline.detach();
        if self.per_transaction() && !self.pipeline.is_pinned() {
            conn.server().attached = Some(Box::new(statements));
            conn.release(None).await;
        } else {
            conn.release(Some("DISCARD ALL")).await;
        }
    }

    /// One run of the pipeline on `conn`.
    async fn drive(
        &mut self,
        conn: &mut PooledServer,
        queue: &mut Queue,
    ) -> Result<Stop, MirrorError> {
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

    /// A connection of the mirror pool. While every one is in use the session waits,
    /// however long it takes: that is the proxy's `pool_size`, never a failure of the
    /// mirror. Only a connection that cannot be opened, or a disabled pool, is an error.
    async fn checkout(&self) -> Result<PooledServer, PoolError> {
        loop {
            match self
                .target
                .pool
                .get_noting_wait(Some(&self.awaiting_pool))
                .await
            {
                Err(PoolError::Exhausted { .. }) => {}
                got => {
                    self.awaiting_pool.store(false, Ordering::Relaxed);
                    return got;
                }
            }
        }
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
        match self.checkout().await {
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

/// The statements another session of the mirror left on `conn` (transaction mode).
fn statements_of(conn: &mut PooledServer) -> Option<OnMirror> {
    let attached = conn.server().attached.take()?;
    attached.downcast::<OnMirror>().ok().map(|s| *s)
}
