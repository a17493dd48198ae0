//! A logged-in client and its server connection (session pooling): frames flow both ways
//! as raw bytes until the client leaves, the server goes away, or the proxy shuts down.
//!
//! Two pumps run concurrently in the client's task, one per direction, so neither side can
//! stall the other (a client that pipelines without reading replies cannot deadlock the
//! proxy). Each pump reads what is available, finds the prefix of whole messages, looks at
//! their tags, and writes that prefix on in a single write: no per-message allocation.
//! The client-to-server pump also feeds the mirror [`Tap`] when the pool is mirrored: the
//! prefix is frozen into shared `Bytes` so the mirror holds a reference, never a copy.

use super::tracker::Tracker;
use super::Frontend;
use crate::backend::pool::PoolStats;
use crate::backend::server::MAX_SERVER_MESSAGE;
use crate::backend::{Pool, PooledServer, Server};
use crate::compare::Digest;
use crate::mirror::{Recorder, Tap};
use crate::protocol::backend::ready_status;
use crate::protocol::frame::{complete_len, Frames};
use crate::protocol::messages::{self, Severity};
use crate::protocol::tag::{client, server};
use crate::protocol::{BackendKey, ProtocolError};
use crate::runtime::Runtime;
use crate::tls::Stream;
use crate::with_halves;
use bytes::{Buf, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// Read buffer size per direction; grows for larger messages.
const BUF_SIZE: usize = 16 * 1024;

pub struct Session {
    frontend: Arc<Frontend>,
    /// `max_message_size` of the runtime the client logged in with.
    max_message_size: usize,
    pool: Pool,
    server: PooledServer,
    key: BackendKey,
    tracker: Arc<Tracker>,
    tap: Option<Tap>,
    /// A child of `proxy.shutdown`; the admin's `KILL` cancels it alone.
    stop: CancellationToken,
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
    /// Shutdown reached an idle point of this session.
    Shutdown,
}

impl Session {
    /// A session of `pool`, found in `runtime` (the login's snapshot, which also gives the
    /// pool's mirror target, if any).
    pub fn new(
        frontend: Arc<Frontend>,
        runtime: &Runtime,
        pool: Pool,
        server: PooledServer,
        key: BackendKey,
        slot: OwnedSemaphorePermit,
    ) -> Session {
        pool.stats().clients.fetch_add(1, Ordering::Relaxed);
        let tap = runtime
            .mirrors
            .get(pool.name())
            .map(|target| frontend.mirrors.start(target.clone()));
        let stop = frontend.shutdown.child_token();
        Session {
            max_message_size: runtime.config.general.max_message_size,
            frontend,
            pool,
            server,
            key,
            tracker: Arc::new(Tracker::new()),
            tap,
            stop,
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

    pub async fn run(mut self, mut client: Stream, client_buf: BytesMut) {
        let recorder = self.tap.as_ref().map(Tap::recorder);
        let to_server = ClientToServer {
            buf: client_buf,
            max: self.max_message_size,
            tracker: &self.tracker,
            stats: self.pool.stats(),
            shutdown: &self.stop,
            tap: self.tap.as_mut(),
        };
        let to_client = ServerToClient {
            tracker: &self.tracker,
            stats: self.pool.stats(),
            shutdown: &self.stop,
            recorder,
        };
        let server = &mut self.server.server().stream;
        let end = with_halves!(&mut client, |client_rd, client_wr| {
            with_halves!(server, |server_rd, server_wr| {
                tokio::select! {
                    end = to_server.run(&mut client_rd, &mut server_wr) => end,
                    end = to_client.run(&mut server_rd, &mut client_wr) => end,
                }
            })
        });
        self.finish(end, &mut client).await;
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

        let mut server = self.server;
        if matches!(end, End::ServerGone(_)) {
            drop(server);
        } else if self.tracker.pending() > 0 {
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
            server.release().await;
        }
    }
}

/// The client-to-server direction.
struct ClientToServer<'a> {
    buf: BytesMut,
    max: usize,
    tracker: &'a Tracker,
    stats: &'a PoolStats,
    shutdown: &'a CancellationToken,
    tap: Option<&'a mut Tap>,
}

impl ClientToServer<'_> {
    async fn run<R, W>(mut self, client: &mut R, server: &mut W) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut draining = false;
        loop {
            // Forward what is already buffered (the client may have pipelined behind login).
            let len = match complete_len(&self.buf, self.max) {
                Ok(len) => len,
                Err(e) => return End::ClientProtocol(e),
            };
            if len > 0 {
                let now = Instant::now();
                let requests_before = self.tracker.requests();
                let result = match self.tap.as_deref_mut() {
                    None => {
                        let (forward, terminated) = count_requests(&self.buf[..len], self.tracker);
                        let written = server.write_all(&self.buf[..forward]).await;
                        self.buf.advance(len);
                        written.map(|()| terminated)
                    }
                    Some(tap) => {
                        // Mirrored: freeze the messages into shared bytes; the mirror queue
                        // keeps slices of the same allocation, never a copy.
                        let shared = self.buf.split_to(len).freeze();
                        let (forward, terminated) = feed_tap(tap, &shared, self.tracker, now);
                        server
                            .write_all(&shared[..forward])
                            .await
                            .map(|()| terminated)
                    }
                };
                // Metrics: two relaxed adds per forwarded chunk, not per message.
                let requests = self.tracker.requests() - requests_before;
                self.stats.queries.fetch_add(requests, Ordering::Relaxed);
                self.stats
                    .bytes_received
                    .fetch_add(len as u64, Ordering::Relaxed);
                match result {
                    Ok(true) => return End::ClientTerminated,
                    Ok(false) => {}
                    Err(e) => return End::ServerGone(e.to_string()),
                }
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(BUF_SIZE);
            }
            let read = tokio::select! {
                read = client.read_buf(&mut self.buf) => read,
                _ = self.shutdown.cancelled(), if !draining => {
                    if self.tracker.idle() {
                        return End::Shutdown;
                    }
                    draining = true;
                    continue;
                }
            };
            match read {
                Ok(0) | Err(_) => return End::ClientGone,
                Ok(_) => {}
            }
        }
    }
}

/// Counts requests, feeds the mirror tap, and finds Terminate in a run of whole client
/// messages. Returns how many bytes to forward and whether Terminate was seen.
#[inline]
fn feed_tap(
    tap: &mut Tap,
    shared: &bytes::Bytes,
    tracker: &Tracker,
    now: Instant,
) -> (usize, bool) {
    let mut at = 0;
    for (tag, msg) in Frames::new(shared) {
        if tag == client::TERMINATE {
            return (at, true);
        }
        let end = at + msg.len();
        // The tap sees the frame before it is counted: a request's first frame finds the
        // session as it was before the request.
        tap.frame(tag, shared, at, end, tracker, now);
        if let Some(seq) = tracker.client_message(tag) {
            tap.sent(seq, now);
        }
        at = end;
    }
    (shared.len(), false)
}

/// Counts requests and finds Terminate in a run of whole client messages.
#[inline]
fn count_requests(buf: &[u8], tracker: &Tracker) -> (usize, bool) {
    let mut at = 0;
    for (tag, msg) in Frames::new(buf) {
        if tag == client::TERMINATE {
            return (at, true);
        }
        tracker.client_message(tag);
        at += msg.len();
    }
    (buf.len(), false)
}

/// The server-to-client direction.
struct ServerToClient<'a> {
    tracker: &'a Tracker,
    stats: &'a PoolStats,
    shutdown: &'a CancellationToken,
    /// Where the primary's answers are recorded for the mirror, when mirrored.
    recorder: Option<Recorder>,
}

impl ServerToClient<'_> {
    async fn run<R, W>(self, server: &mut R, client: &mut W) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(BUF_SIZE);
        // Answers are digested only when they will be compared with the mirror's.
        let mut digest = self
            .recorder
            .as_ref()
            .filter(|r| r.compares())
            .map(|_| Digest::default());
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(BUF_SIZE);
            }
            match server.read_buf(&mut buf).await {
                Ok(0) => return End::ServerGone("server closed the connection".into()),
                Err(e) => return End::ServerGone(e.to_string()),
                Ok(_) => {}
            }
            let len = match complete_len(&buf, MAX_SERVER_MESSAGE) {
                Ok(len) => len,
                Err(e) => return End::ServerGone(e.to_string()),
            };
            if len == 0 {
                continue;
            }
            let now = Instant::now();
            let errors = self.answers(&buf[..len], digest.as_mut(), now);
            self.stats
                .bytes_sent
                .fetch_add(len as u64, Ordering::Relaxed);
            if errors > 0 {
                self.stats.errors.fetch_add(errors, Ordering::Relaxed);
            }
            if client.write_all(&buf[..len]).await.is_err() {
                return End::ClientGone;
            }
            buf.advance(len);
            if self.shutdown.is_cancelled() && self.tracker.idle() {
                return End::Shutdown;
            }
        }
    }

    /// Looks at a run of whole server messages: counts answers (recording them for the
    /// mirror) and COPY starts; returns how many were errors.
    #[inline]
    fn answers(&self, buf: &[u8], mut digest: Option<&mut Digest>, now: Instant) -> u64 {
        let mut errors = 0;
        for (tag, msg) in Frames::new(buf) {
            match tag {
                server::READY_FOR_QUERY => {
                    let status = ready_status(msg);
                    let seq = self.tracker.ready(status);
                    if let Some(recorder) = &self.recorder {
                        let answer = digest.as_deref_mut().map(Digest::take);
                        recorder.answered(seq, status, now, answer.as_ref());
                    }
                    continue;
                }
                server::ERROR_RESPONSE => errors += 1,
                server::COPY_IN_RESPONSE => self.tracker.copy_in_started(),
                _ => {}
            }
            if let Some(digest) = digest.as_deref_mut() {
                digest.feed(tag, msg);
            }
        }
        errors
    }
}
