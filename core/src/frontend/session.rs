//! A logged-in client and its server connection (session pooling): frames flow both ways
//! as raw bytes until the client leaves, the server goes away, or the proxy shuts down.
//!
//! Two pumps run concurrently in the client's task, one per direction, so neither side can
//! stall the other (a client that pipelines without reading replies cannot deadlock the
//! proxy). Each pump reads what is available, finds the prefix of whole messages, looks at
//! their tags, and writes that prefix on in a single write: no per-message allocation.
//! The pumps share two small counters: requests awaiting ReadyForQuery and the last
//! transaction status; they decide whether the server can be reused when the session ends.

use crate::backend::{Pool, PooledServer, Server};
use crate::protocol::backend::ready_status;
use crate::protocol::frame::{complete_len, Frames};
use crate::protocol::messages::{self, Severity};
use crate::protocol::ProtocolError;
use crate::proxy::Proxy;
use bytes::{Buf, BytesMut};
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::backend::server::MAX_SERVER_MESSAGE;

/// Read buffer size per direction; grows for larger messages.
const BUF_SIZE: usize = 16 * 1024;

pub struct Session {
    proxy: Arc<Proxy>,
    pool: Pool,
    server: PooledServer,
    key: (i32, i32),
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

/// State the two pumps share.
#[derive(Default)]
struct Shared {
    /// Requests (Query, Sync, FunctionCall) sent and not yet answered by ReadyForQuery.
    pending: AtomicI64,
    /// Transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    status: AtomicU8,
}

impl Shared {
    fn idle(&self) -> bool {
        self.pending.load(Ordering::Relaxed) <= 0 && self.status.load(Ordering::Relaxed) == b'I'
    }
}

impl Session {
    pub fn new(
        proxy: Arc<Proxy>,
        pool: Pool,
        server: PooledServer,
        key: (i32, i32),
        slot: OwnedSemaphorePermit,
    ) -> Session {
        pool.stats()
            .clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Session {
            proxy,
            pool,
            server,
            key,
            _slot: slot,
        }
    }

    pub async fn run(mut self, mut client: TcpStream, client_buf: BytesMut) {
        let shared = Shared {
            pending: AtomicI64::new(0),
            status: AtomicU8::new(b'I'),
        };
        let max = self.proxy.config.general.max_message_size;
        let end = {
            let (mut client_rd, mut client_wr) = client.split();
            let (mut server_rd, mut server_wr) = self.server.server().stream.split();
            let shutdown = &self.proxy.shutdown;
            let to_server = client_to_server(
                &mut client_rd,
                &mut server_wr,
                client_buf,
                max,
                &shared,
                shutdown,
            );
            let to_client = server_to_client(&mut server_rd, &mut client_wr, &shared, shutdown);
            tokio::select! {
                end = to_server => end,
                end = to_client => end,
            }
        };
        self.finish(end, &shared, &mut client).await;
    }

    async fn finish(self, end: End, shared: &Shared, client: &mut TcpStream) {
        self.proxy.cancel.unregister(self.key);
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
        } else if shared.pending.load(Ordering::Relaxed) > 0 {
            // The client left mid-request: stop the query rather than let it run on, and
            // close the connection (its state is unknown).
            let addr = self.pool.addr();
            let key = server.server().key;
            if let Err(e) = Server::cancel(&addr.host, addr.port, key).await {
                tracing::debug!("cancel after client left failed: {e}");
            }
            drop(server);
        } else {
            server.server().status = shared.status.load(Ordering::Relaxed);
            server.release().await;
        }
    }
}

async fn client_to_server<R, W>(
    client: &mut R,
    server: &mut W,
    mut buf: BytesMut,
    max: usize,
    shared: &Shared,
    shutdown: &tokio_util::sync::CancellationToken,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut draining = false;
    loop {
        // Forward what is already buffered (the client may have pipelined behind login).
        let len = match complete_len(&buf, max) {
            Ok(len) => len,
            Err(e) => return End::ClientProtocol(e),
        };
        if len > 0 {
            let mut forward = len;
            let mut terminated = false;
            for (tag, msg) in Frames::new(&buf[..len]) {
                match tag {
                    b'Q' | b'S' | b'F' => {
                        shared.pending.fetch_add(1, Ordering::Relaxed);
                    }
                    b'X' => {
                        // Keep the server connection: everything before Terminate goes on.
                        forward = msg.as_ptr() as usize - buf.as_ptr() as usize;
                        terminated = true;
                        break;
                    }
                    _ => {}
                }
            }
            if forward > 0 {
                if let Err(e) = server.write_all(&buf[..forward]).await {
                    return End::ServerGone(e.to_string());
                }
            }
            if terminated {
                return End::ClientTerminated;
            }
            buf.advance(len);
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(BUF_SIZE);
        }
        let read = tokio::select! {
            read = client.read_buf(&mut buf) => read,
            _ = shutdown.cancelled(), if !draining => {
                if shared.idle() {
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

async fn server_to_client<R, W>(
    server: &mut R,
    client: &mut W,
    shared: &Shared,
    shutdown: &tokio_util::sync::CancellationToken,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(BUF_SIZE);
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
        for (tag, msg) in Frames::new(&buf[..len]) {
            if tag == b'Z' {
                shared.pending.fetch_sub(1, Ordering::Relaxed);
                shared.status.store(ready_status(msg), Ordering::Relaxed);
            }
        }
        if client.write_all(&buf[..len]).await.is_err() {
            return End::ClientGone;
        }
        buf.advance(len);
        if shutdown.is_cancelled() && shared.idle() {
            return End::Shutdown;
        }
    }
}
