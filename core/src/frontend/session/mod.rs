//! A logged-in client and its server connection: frames flow both ways as raw bytes until
//! the client leaves, the server goes away, or the proxy shuts down.
//!
//! One loop per client ([`Session::run`]) waits, all at once, for whatever can happen next:
//! bytes from the client, bytes from the server, room to write what is pending either
//! way, and the stop signal. A client that pipelines without reading replies cannot
//! deadlock the proxy: while one direction waits to be written, the other still flows.
//! Each chunk read is cut at its last whole message, its tags looked at, and the whole
//! messages passed on in one write, as shared bytes: no per-message allocation. The
//! client's direction also feeds the mirror [`Tap`] when the pool is mirrored (the mirror
//! holds a reference to the same bytes, never a copy).
//!
//! In session mode the client holds its server connection for its whole session. In
//! transaction mode ([`pooling`]) it takes one at the first message of a transaction and
//! gives it back at the ReadyForQuery that leaves it idle; its named prepared statements
//! follow it from connection to connection ([`super::prepared`]).

mod client;
mod io;
mod pooling;
mod server;

use self::io::{Buffers, Event};
use super::prepared::ClientStatements;
use super::tracker::Tracker;
use super::Frontend;
use crate::backend::{Pool, PooledServer, Server};
use crate::compare::Digest;
use crate::config::PoolMode;
use crate::mirror::{Recorder, Tap};
use crate::protocol::messages::{self, Severity};
use crate::protocol::{BackendKey, ProtocolError};
use crate::runtime::Runtime;
use crate::tls::Stream;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

pub struct Session {
    frontend: Arc<Frontend>,
    /// `max_message_size` of the runtime the client logged in with.
    max_message_size: usize,
    pool: Pool,
    mode: PoolMode,
    /// The server connection the client holds: always in session mode, during a
    /// transaction in transaction mode.
    server: Option<PooledServer>,
    key: BackendKey,
    tracker: Arc<Tracker>,
    tap: Option<Tap>,
    /// Where the primary's answers are recorded for the mirror, when mirrored.
    recorder: Option<Recorder>,
    /// The digest of the answer being received, when the mirror compares answers.
    digest: Option<Digest>,
    /// Whether the answer being received is digested, once its first message came (the
    /// mirror will not run every request: [`Tap::digests`]).
    digesting: Option<bool>,
    /// The answer being received has a `57014` error (told to the mirror's ledger).
    canceled: bool,
    /// What the client expects of the server connections it gets, and its statements.
    pooled: pooling::Pooled,
    /// A child of `proxy.shutdown`; the admin's `KILL` cancels it alone.
    stop: CancellationToken,
    /// Transaction mode: notified by the client's cancel while it holds no connection
    /// (`CancelMap::attach_waiter`), which ends a wait for one.
    cancelled: Option<Arc<Notify>>,
    _slot: OwnedSemaphorePermit,
}

/// Why forwarding stopped.
#[derive(Debug)]
enum End {
    /// Terminate received.
    ClientTerminated,
    /// The client closed its socket (or an I/O error on it).
    ClientGone,
    /// The client sent bytes that are not protocol.
    ClientProtocol(ProtocolError),
    ServerGone(String),
    /// Transaction mode: no server connection could be had (the SQLSTATE, and why).
    Checkout(&'static str, String),
    /// Shutdown reached an idle point of this session.
    Shutdown,
}

impl Session {
    /// A session of `pool`, found in `runtime` (the login's snapshot, which also gives the
    /// pool's mode and mirror target). `server` is the connection the login used, if it
    /// took one: the session keeps it in session mode, and gives it back once started in
    /// transaction mode. `params` are the client's startup parameters.
    pub fn new(
        frontend: Arc<Frontend>,
        runtime: &Runtime,
        pool: Pool,
        server: Option<PooledServer>,
        key: BackendKey,
        params: &[(String, String)],
        slot: OwnedSemaphorePermit,
    ) -> Session {
        pool.stats().clients.fetch_add(1, Ordering::Relaxed);
        let tap = runtime
            .mirrors
            .get(pool.name())
            .map(|target| frontend.mirrors.start(target.clone()));
        let stop = frontend.shutdown.child_token();
        let config = runtime.config.pool(pool.name());
        let general = &runtime.config.general;
        let mode = config
            .and_then(|p| p.pool_mode)
            .unwrap_or(general.pool_mode);
        let cancelled = (mode == PoolMode::Transaction).then(|| {
            let waiter = Arc::new(Notify::new());
            frontend.cancel.attach_waiter(key, waiter.clone());
            waiter
        });
        let tracker = Arc::new(Tracker::new());
        let recorder = tap.as_ref().map(Tap::recorder);
        if let Some(recorder) = &recorder {
            frontend.cancel.attach_mirror(key, recorder.canceller());
        }
        let digest = recorder
            .as_ref()
            .filter(|r| r.compares())
            .map(|_| Digest::default());
        Session {
            max_message_size: general.max_message_size,
            pooled: pooling::Pooled::new(
                params,
                general,
                ClientStatements::new(frontend.statements.clone()),
            ),
            recorder,
            digest,
            digesting: None,
            canceled: false,
            frontend,
            pool,
            mode,
            server,
            key,
            tracker,
            tap,
            stop,
            cancelled,
            _slot: slot,
        }
    }

    /// Where the session stands (for the admin console's client list).
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Cancelling this ends the session at its next idle point, as shutdown does.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Serves the client until it leaves. The session lives on the heap: an async fn's
    /// argument taken by value is kept twice in its future, and this one is held by every
    /// client for as long as it is connected.
    pub async fn run(mut self: Box<Self>, mut client: Stream, client_buf: BytesMut) {
        if self.mode == PoolMode::Transaction && self.server.is_some() {
            self.release().await;
        } else if let Some(server) = &self.server {
            self.tracker.set_server(Some(server.server_ref().key.pid));
        }
        let end = self.forward(&mut client, client_buf).await;
        // Boxed: the goodbye's state (an error to write, a server connection to reset)
        // would otherwise be part of every idle client's task.
        self.finish_boxed(end, &mut client).await;
    }

    /// [`Session::finish`], built on the heap (built in place, its state would still be
    /// reserved in the caller's).
    fn finish_boxed(
        self: Box<Self>,
        end: End,
        client: &mut Stream,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin((*self).finish(end, client))
    }

    /// The loop: see the module docs.
    async fn forward(&mut self, client: &mut Stream, client_buf: BytesMut) -> End {
        let mut bufs = Buffers::new(client_buf);
        let stop = self.stop.clone();
        // While draining, the session watches for the order to stop at once instead.
        let halt = self.frontend.halt.clone();
        let stopped = stop.cancelled();
        let halted = halt.cancelled();
        tokio::pin!(stopped, halted);
        let mut draining = false;
        loop {
            // Whole client messages already buffered go on first (the client may have
            // pipelined behind its login, or behind what was just written).
            if bufs.to_server.is_empty() {
                if let Some(end) = self.pass_client_messages(&mut bufs).await {
                    return end;
                }
            }
            let server = self.server.as_mut().map(|s| &mut s.server().stream);
            let signal = match draining {
                false => stopped.as_mut(),
                true => halted.as_mut(),
            };
            let event = io::wait(client, server, &mut bufs, signal).await;
            match event {
                Event::Client => {}
                Event::Server => {
                    if let Some(end) = self.pass_server_messages(&mut bufs) {
                        return end;
                    }
                    self.after_answers(&mut bufs).await;
                }
                Event::Written => self.after_answers(&mut bufs).await,
                Event::Stop => {
                    if draining || (self.tracker.idle() && self.server_free(&bufs)) {
                        return End::Shutdown;
                    }
                    draining = true;
                }
                Event::ClientGone => return End::ClientGone,
                Event::ServerGone(why) => return End::ServerGone(why),
            }
            if draining && self.tracker.idle() && bufs.to_client.is_empty() {
                return End::Shutdown;
            }
        }
    }

    /// Transaction mode: gives the server connection back once the client is idle and
    /// everything it was sent has been answered, and with it the read buffers, so that a
    /// client idle between transactions holds none (`io::Buffers::shed`).
    async fn after_answers(&mut self, bufs: &mut Buffers) {
        if self.mode == PoolMode::Transaction && self.server.is_some() && self.server_free(bufs) {
            self.release().await;
            bufs.shed();
        }
    }

    /// Nothing is under way on the server connection: no request unanswered, no
    /// transaction open, no extended-protocol batch without its Sync, nothing unsent.
    fn server_free(&self, bufs: &Buffers) -> bool {
        self.tracker.idle()
            && !self.pooled.mid_batch
            && bufs.to_server.is_empty()
            && bufs.server_buf.is_empty()
            && self.pooled.plan.is_empty()
    }

    async fn finish(mut self, end: End, client: &mut Stream) {
        // Dropping the tap closes the mirror queue: the worker drains it and stops.
        self.tap.take();
        self.frontend.cancel.unregister(self.key);
        self.pool.stats().clients.fetch_sub(1, Ordering::Relaxed);
        let mut out = BytesMut::new();
        match &end {
            End::ClientTerminated | End::ClientGone => {}
            End::ClientProtocol(e) => {
                tracing::warn!(
                    pool = self.pool.name(),
                    "closing client: protocol violation: {e}"
                );
                messages::error_response(
                    &mut out,
                    Severity::Fatal,
                    "08P01",
                    &format!("protocol violation: {e}"),
                );
            }
            End::ServerGone(why) => {
                tracing::warn!(pool = self.pool.name(), "server connection lost: {why}");
                messages::error_response(
                    &mut out,
                    Severity::Fatal,
                    "08006",
                    &format!(
                        "server connection for pool \"{}\" lost: {why}",
                        self.pool.name()
                    ),
                );
            }
            End::Checkout(code, why) => {
                tracing::info!(pool = self.pool.name(), "closing client: {why}");
                messages::error_response(&mut out, Severity::Fatal, code, why);
            }
            End::Shutdown => messages::error_response(
                &mut out,
                Severity::Fatal,
                "57P01",
                "terminating connection due to administrator command",
            ),
        }
        if !out.is_empty() {
            let _ = client.write_all(&out).await;
        }
        let _ = client.shutdown().await;

        let Some(mut server) = self.server.take() else {
            return;
        };
        if matches!(end, End::ServerGone(_)) {
            drop(server);
        } else if self.tracker.pending() > 0 || self.pooled.mid_batch {
            // The client left mid-request: stop the query rather than let it run on, and
            // close the connection (its state is unknown).
            let addr = self.pool.addr();
            let key = server.server().key;
            if let Err(e) = Server::cancel(&addr.host, addr.port, key).await {
                tracing::debug!("cancel after client left failed: {e}");
            }
            drop(server);
        } else {
            server.server().status = self.tracker.status();
            let reset =
                (self.mode == PoolMode::Session).then_some(self.pooled.reset_query.as_str());
            server.release(reset).await;
        }
    }
}
