//! The first packets of a client connection, for the proxy and the admin console alike:
//! SSLRequest (answered `S` and followed by the TLS handshake when TLS is offered, else
//! `N`), GSSENCRequest (always `N`), then a StartupMessage or a CancelRequest.
//!
//! Under `client_tls_sslmode = require` (or `verify-*`), a StartupMessage on a plaintext
//! connection is refused with `28000` before anything else is said; a CancelRequest is
//! still taken (libpq sends them unencrypted, and they carry nothing secret).

use crate::protocol::messages::{self, Severity};
use crate::protocol::startup::{self, Startup};
use crate::protocol::{BackendKey, ProtocolError};
use crate::tls::{Acceptor, Stream};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

/// What the client opened the connection for.
pub enum Opened {
    /// A session, with its startup parameters, on `Stream` (TLS if it asked for it).
    Startup {
        stream: Stream,
        params: Vec<(String, String)>,
    },
    Cancel(BackendKey),
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Bytes after an SSLRequest, before the handshake: they would be read as if they had
    /// come encrypted (PostgreSQL refuses them too).
    #[error("unencrypted data after the SSL request")]
    DataAfterSslRequest,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("TLS is required (client_tls_sslmode = {0})")]
    TlsRequired(&'static str),
}

impl HandshakeError {
    /// The SQLSTATE the client is told, when it can still be told anything.
    fn sqlstate(&self) -> Option<&'static str> {
        match self {
            HandshakeError::Protocol(ProtocolError::Eof | ProtocolError::Io(_)) => None,
            HandshakeError::Protocol(_) | HandshakeError::DataAfterSslRequest => Some("08P01"),
            HandshakeError::Tls(_) => None,
            HandshakeError::TlsRequired(_) => Some("28000"),
        }
    }
}

/// Reads the client's opening packets from `stream` (as accepted: plain TCP or a Unix
/// socket), upgrading TCP to TLS on request when `tls` offers it. A Unix socket client is
/// on this host: it is answered `N` and never required to use TLS, as PostgreSQL's `local`
/// connections are not. A refusal is written to the client (as a FATAL error, when the connection
/// can still carry one) before the error is returned; `buf` keeps whatever the client
/// sent after its startup packet.
pub async fn open(
    stream: Stream,
    buf: &mut BytesMut,
    tls: &Acceptor,
) -> Result<Opened, HandshakeError> {
    let mut stream = Some(stream);
    match negotiate(&mut stream, buf, tls).await {
        Ok(Opening::Startup(params)) => Ok(Opened::Startup {
            stream: stream.expect("open after negotiating"),
            params,
        }),
        Ok(Opening::Cancel(key)) => Ok(Opened::Cancel(key)),
        Err(e) => {
            if let (Some(stream), Some(code)) = (stream.as_mut(), e.sqlstate()) {
                let mut out = BytesMut::new();
                messages::error_response(&mut out, Severity::Fatal, code, &e.to_string());
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
            }
            Err(e)
        }
    }
}

enum Opening {
    Startup(Vec<(String, String)>),
    Cancel(BackendKey),
}

/// The packets up to a StartupMessage or a CancelRequest. `stream` is `None` once a
/// failed handshake consumed it.
async fn negotiate(
    stream: &mut Option<Stream>,
    buf: &mut BytesMut,
    tls: &Acceptor,
) -> Result<Opening, HandshakeError> {
    loop {
        let current = stream.as_mut().expect("open until a handshake fails");
        match startup::read(current, buf).await? {
            Startup::Ssl if tls.offers_tls() && matches!(current, Stream::Plain(_)) => {
                if !buf.is_empty() {
                    return Err(HandshakeError::DataAfterSslRequest);
                }
                let Some(Stream::Plain(mut tcp)) = stream.take() else {
                    unreachable!("matched above")
                };
                tcp.write_all(b"S").await.map_err(ProtocolError::Io)?;
                *stream = Some(tls.accept(tcp).await.map_err(HandshakeError::Tls)?);
            }
            Startup::Ssl | Startup::GssEnc => {
                current.write_all(b"N").await.map_err(ProtocolError::Io)?;
            }
            Startup::Cancel(key) => return Ok(Opening::Cancel(key)),
            Startup::Startup { params } => {
                if tls.mode.requires_tls() && matches!(current, Stream::Plain(_)) {
                    return Err(HandshakeError::TlsRequired(tls.mode.as_str()));
                }
                return Ok(Opening::Startup(params));
            }
        }
    }
}
