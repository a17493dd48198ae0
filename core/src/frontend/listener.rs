//! Accepts client connections until shutdown; each runs as a tracked task.
//!
//! A connection accepted while the process is out of file descriptors
//! ([`Accepted::Shed`]) is refused with `53300` rather than left waiting in the kernel's
//! queue: the clients already connected keep their descriptors and go on.

use super::{login, Frontend};
use crate::net::{Accepted, Listener};
use crate::protocol::messages::{self, Severity};
use crate::tls::Stream;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a refused client gets to send its first packet before it is told why.
const REFUSAL_READ: Duration = Duration::from_millis(500);

pub async fn serve(frontend: Arc<Frontend>, listener: Listener) {
    loop {
        let accepted = tokio::select! {
            _ = frontend.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(Accepted::Open(stream, peer)) => {
                let frontend = frontend.clone();
                frontend.sessions.clone().spawn(async move {
                    login::run(stream, peer, frontend).await;
                });
            }
            Ok(Accepted::Shed(stream, peer)) => {
                tracing::warn!(%peer, "client refused: out of file descriptors (raise ulimit -n, LimitNOFILE=)");
                tokio::spawn(refuse(
                    stream,
                    "53300",
                    "too many connections: pgdog is out of file descriptors",
                ));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("proxy listener closed");
}

/// Tells a client it is refused, as PostgreSQL does when it cannot take a connection:
/// after its first packet (a StartupMessage, or an SSLRequest, which libpq answers an
/// error to as well), so that closing the socket does not reset it before the client
/// read the message.
pub async fn refuse(mut stream: Stream, sqlstate: &str, message: &str) {
    let mut first = [0u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_READ, stream.read(&mut first)).await;
    let mut out = BytesMut::new();
    messages::error_response(&mut out, Severity::Fatal, sqlstate, message);
    let _ = tokio::time::timeout(REFUSAL_READ, async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
