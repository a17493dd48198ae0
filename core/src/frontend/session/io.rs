//! The session loop's one wait: everything that can happen next, polled together, so that
//! neither direction can stall the other.

use crate::tls::Stream;
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;
use tokio_util::sync::WaitForCancellationFuture;

/// Read buffer size per direction; grows for larger messages.
pub const BUF_SIZE: usize = 16 * 1024;

/// The session's bytes in both directions.
pub struct Buffers {
    /// Read from the client, not yet passed on (a partial message, or whole ones waiting
    /// for the server to take the previous write).
    pub client_buf: BytesMut,
    /// Read from the server, not yet passed on.
    pub server_buf: BytesMut,
    /// Whole messages on their way to the server.
    pub to_server: Bytes,
    /// Whole messages on their way to the client.
    pub to_client: Bytes,
    /// Written to a stream that buffers (TLS) and not flushed yet.
    server_unflushed: bool,
    client_unflushed: bool,
}

impl Buffers {
    /// The read buffers are allocated when each direction has bytes to read (see `read`):
    /// a client that logged in and sent nothing yet holds none.
    pub fn new(client_buf: BytesMut) -> Buffers {
        let client_buf = if client_buf.is_empty() {
            BytesMut::new() // the login's buffer goes; nothing of the client is pending
        } else {
            client_buf
        };
        Buffers {
            client_buf,
            server_buf: BytesMut::new(),
            to_server: Bytes::new(),
            to_client: Bytes::new(),
            server_unflushed: false,
            client_unflushed: false,
        }
    }

    /// Lets go of the read buffers that hold nothing (transaction mode, at each
    /// transaction's end, with the server connection): the next read takes a new one once
    /// there is something to read. A client idle between transactions then costs what one
    /// that never ran anything costs, 32 KB less. Taking 16 KB again per transaction was
    /// not measurable in select-only throughput (docs/benchmarks.md, issue 19).
    pub fn shed(&mut self) {
        if self.client_buf.is_empty() {
            self.client_buf = BytesMut::new();
        }
        if self.server_buf.is_empty() {
            self.server_buf = BytesMut::new();
        }
    }
}

/// What ended a wait.
#[derive(Debug)]
pub enum Event {
    /// Bytes from the client.
    Client,
    /// Bytes from the server.
    Server,
    /// A pending write finished.
    Written,
    /// The stop signal (shutdown, the admin's `KILL`, or, while draining, the order to
    /// stop at once).
    Stop,
    ClientGone,
    ServerGone(String),
}

/// Writes what is pending, reads when the previous chunk of that direction is passed on,
/// and returns at the first thing that calls for the session's attention. `server` is
/// `None` while the session holds no server connection.
pub async fn wait(
    client: &mut Stream,
    mut server: Option<&mut Stream>,
    bufs: &mut Buffers,
    mut stopped: Pin<&mut WaitForCancellationFuture<'_>>,
) -> Event {
    std::future::poll_fn(|cx| {
        if let Some(server) = server.as_deref_mut() {
            match write(server, &mut bufs.to_server, &mut bufs.server_unflushed, cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Event::Written),
                Poll::Ready(Err(e)) => return Poll::Ready(Event::ServerGone(e.to_string())),
                Poll::Pending => {}
            }
        }
        match write(client, &mut bufs.to_client, &mut bufs.client_unflushed, cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Event::Written),
            Poll::Ready(Err(_)) => return Poll::Ready(Event::ClientGone),
            Poll::Pending => {}
        }
        // A direction reads again once its previous chunk is on its way.
        if bufs.to_server.is_empty() {
            match read(client, &mut bufs.client_buf, cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Event::ClientGone),
                Poll::Ready(Ok(_)) => return Poll::Ready(Event::Client),
                Poll::Pending => {}
            }
        }
        if let (Some(server), true) = (server.as_deref_mut(), bufs.to_client.is_empty()) {
            match read(server, &mut bufs.server_buf, cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Event::ServerGone("server closed the connection".into()))
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Event::ServerGone(e.to_string())),
                Poll::Ready(Ok(_)) => return Poll::Ready(Event::Server),
                Poll::Pending => {}
            }
        }
        if stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Stop);
        }
        Poll::Pending
    })
    .await
}

/// Writes `pending` and flushes it (TLS buffers what it encrypts): `Ready(Ok)` once it is
/// all on its way, `Pending` while the stream would block or when there is nothing to do.
fn write(
    stream: &mut Stream,
    pending: &mut Bytes,
    unflushed: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    while !pending.is_empty() {
        match Pin::new(&mut *stream).poll_write(cx, pending) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                pending.advance(n);
                *unflushed = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    if *unflushed {
        // Let go of the read buffer the bytes were cut from: unshared, it is reused for
        // the next read instead of a new allocation.
        *pending = Bytes::new();
    }
    if !*unflushed {
        return Poll::Pending;
    }
    match Pin::new(&mut *stream).poll_flush(cx) {
        Poll::Ready(Ok(())) => {
            *unflushed = false;
            Poll::Ready(Ok(()))
        }
        other => other,
    }
}

fn read(
    stream: &mut Stream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() == 0 {
        // No buffer yet: take one only once there is something to read, so that a client
        // that logged in and waits holds none (16 KB each otherwise, on every idle client,
        // over TLS too).
        std::task::ready!(stream.poll_read_ready(cx))?;
    }
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUF_SIZE);
    }
    poll_read_buf(Pin::new(stream), cx, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shedding lets go of empty buffers only: bytes a client pipelined behind its
    /// transaction stay to be passed on.
    #[test]
    fn shedding_keeps_what_is_unread() {
        let mut bufs = Buffers::new(BytesMut::new());
        bufs.client_buf.reserve(BUF_SIZE);
        bufs.server_buf.reserve(BUF_SIZE);
        bufs.shed();
        assert_eq!(bufs.client_buf.capacity(), 0);
        assert_eq!(bufs.server_buf.capacity(), 0);

        bufs.client_buf.extend_from_slice(b"Q\0\0\0\x0dselect 1\0");
        bufs.server_buf.reserve(BUF_SIZE);
        bufs.shed();
        assert_eq!(&bufs.client_buf[..], b"Q\0\0\0\x0dselect 1\0");
        assert_eq!(bufs.server_buf.capacity(), 0);
    }
}
