//! A connection that may have been upgraded to TLS: what the client session, the admin
//! console and a server connection read and write, whichever it is. A Unix socket
//! connection is never upgraded (libpq does not use TLS over Unix sockets either).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
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

    /// Whether nothing waits to be read on the socket: how a pooled server connection is
    /// checked before reuse (an idle server sends nothing, so anything readable, end of
    /// stream or a FATAL before closing, means the connection is going).
    ///
    /// Without `ask_kernel`, the runtime's view decides, at no system call: its I/O driver
    /// marks the socket readable when the kernel reports an event, and only a marked socket
    /// is peeked at (a peek that finds nothing clears the mark). The driver collects events
    /// when a worker thread waits for work, and between batches of tasks, so it may not
    /// have collected one the kernel already has: with `ask_kernel` the socket is peeked
    /// at whatever the mark. Readable TLS records (a close_notify) count as bytes.
    pub fn is_quiet(&self, ask_kernel: bool) -> bool {
        let fd = self.raw_fd();
        let read = if ask_kernel {
            peek(fd)
        } else {
            match self {
                Stream::Plain(tcp) => tcp.try_io(Interest::READABLE, || peek(fd)),
                Stream::Tls(tls) => tls.get_ref().0.try_io(Interest::READABLE, || peek(fd)),
                Stream::Unix(unix) => unix.try_io(Interest::READABLE, || peek(fd)),
            }
        };
        matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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

/// `recv` with `MSG_PEEK`: what a read would find (0 at end of stream), taking nothing.
fn peek(fd: std::os::fd::RawFd) -> io::Result<usize> {
    let mut probe = [0u8; 1];
    // SAFETY: `probe` is a valid writable buffer of the length given, and `fd` is the
    // descriptor of a stream the caller borrows for the call.
    let n = unsafe {
        libc::recv(
            fd,
            probe.as_mut_ptr().cast(),
            probe.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Stream::Plain(ours.unwrap()), theirs.unwrap().0)
    }

    /// A quiet socket is quiet either way; a closed one is found by the kernel at once, and
    /// by the runtime's view alone once its driver has collected the event.
    #[tokio::test]
    async fn a_closed_or_talking_peer_is_not_quiet() {
        let (ours, theirs) = pair().await;
        assert!(ours.is_quiet(false));
        assert!(ours.is_quiet(true));
        drop(theirs);
        assert!(!ours.is_quiet(true), "the kernel knows of the close");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!ours.is_quiet(false), "the runtime has seen the close");

        let (ours, mut theirs) = pair().await;
        theirs.write_all(b"E").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!ours.is_quiet(false), "a message before closing counts");
        assert!(!ours.is_quiet(true));
    }

    /// A stale mark (the runtime saw the socket readable, and a read that filled its buffer
    /// left the mark set) does not make a drained socket look talking: the peek finds
    /// nothing.
    #[tokio::test]
    async fn a_peek_that_finds_nothing_leaves_the_socket_quiet() {
        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut ours, &mut byte)
            .await
            .unwrap();
        assert!(ours.is_quiet(false));
        assert!(ours.is_quiet(false));
        assert!(ours.is_quiet(true));
    }
}
