//! A connection that may have been upgraded to TLS: what the client session, the admin
//! console and a server connection read and write, whichever it is. A Unix socket
//! connection is never upgraded (libpq does not use TLS over Unix sockets either).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    /// The TLS protocol version as PostgreSQL spells it (`TLSv1.3`, as `pg_stat_ssl`
    /// shows), `None` for plain TCP.
    pub fn tls_version(&self) -> Option<&'static str> {
        let Stream::Tls(tls) = self else {
            return None;
        };
        let version = match &**tls {
            TlsStream::Client(c) => c.get_ref().1.protocol_version(),
            TlsStream::Server(s) => s.get_ref().1.protocol_version(),
        };
        Some(match version? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        })
    }

    /// The `tls-server-end-point` channel binding data of the server's certificate, on a
    /// TLS connection the proxy opened to a server.
    pub fn peer_end_point(&self) -> Option<Vec<u8>> {
        let Stream::Tls(tls) = self else {
            return None;
        };
        let TlsStream::Client(c) = &**tls else {
            return None;
        };
        let cert = c.get_ref().1.peer_certificates()?.first()?;
        super::tls_server_end_point(cert)
    }

    /// Whether a read may find bytes, without reading: `Pending` (the task is woken when
    /// the socket turns readable) while the socket has nothing and, over TLS, the library
    /// holds no decrypted bytes or close notice either (then it wants to read the socket).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(tcp) => tcp.poll_read_ready(cx),
            Stream::Unix(unix) => unix.poll_read_ready(cx),
            Stream::Tls(tls) => {
                let (tcp, state) = tls.get_ref();
                if state.wants_read() {
                    tcp.poll_read_ready(cx)
                } else {
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    /// The socket's file descriptor (for probes the stream types do not offer).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Plain(tcp) => tcp.as_raw_fd(),
            Stream::Tls(tls) => tls.get_ref().0.as_raw_fd(),
            Stream::Unix(unix) => unix.as_raw_fd(),
        }
    }
}

/// Runs `$body` with `$rd` and `$wr` bound to the read and write halves of `$stream` (a
/// `&mut Stream`): borrowed halves of the socket for plain TCP (no lock), `tokio::io::split`
/// halves for TLS.
#[macro_export]
macro_rules! with_halves {
    ($stream:expr, |$rd:ident, $wr:ident| $body:expr) => {
        match $stream {
            $crate::tls::Stream::Plain(tcp) => {
                let (mut $rd, mut $wr) = tcp.split();
                $body
            }
            $crate::tls::Stream::Tls(tls) => {
                let (mut $rd, mut $wr) = tokio::io::split(&mut **tls);
                $body
            }
            $crate::tls::Stream::Unix(unix) => {
                let (mut $rd, mut $wr) = unix.split();
                $body
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }
}
