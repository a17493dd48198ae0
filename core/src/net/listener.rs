//! Accepting on all of a listener's sockets at once, and what happens when the process has
//! no file descriptor left.
//!
//! An `accept` that fails with `EMFILE`/`ENFILE` leaves the connection in the kernel's
//! queue, where the client waits for nothing. So each listener keeps one descriptor in
//! reserve (`/dev/null`): when the process is out of them, it lets the reserve go,
//! accepts the connection and returns it as [`Accepted::Shed`] for the caller to refuse
//! with a message; the reserve is taken again before the next accept.

use super::Peer;
use crate::tls::Stream;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, UnixListener};

/// What an accept produced.
pub enum Accepted {
    /// A connection to serve.
    Open(Stream, Peer),
    /// A connection accepted while the process is out of file descriptors, only to be
    /// told so and closed.
    Shed(Stream, Peer),
}

/// The listening sockets of one service.
pub struct Listener {
    what: &'static str,
    tcp: Vec<TcpListener>,
    unix: Option<(UnixListener, SocketFile)>,
    addrs: Vec<String>,
    /// Where the next accept starts looking, so no socket starves the others.
    next: AtomicUsize,
    reserve: Mutex<Option<File>>,
}

impl Listener {
    pub(super) fn new(
        what: &'static str,
        tcp: Vec<TcpListener>,
        unix: Option<(UnixListener, SocketFile)>,
        addrs: Vec<String>,
    ) -> Listener {
        Listener {
            what,
            tcp,
            unix,
            addrs,
            next: AtomicUsize::new(0),
            reserve: Mutex::new(File::open("/dev/null").ok()),
        }
    }

    /// A listener on one TCP socket that already listens (tests, tools).
    pub fn from_tcp(what: &'static str, listener: TcpListener) -> Listener {
        let addrs = listener
            .local_addr()
            .map(|a| a.to_string())
            .into_iter()
            .collect();
        Listener::new(what, vec![listener], None, addrs)
    }

    /// `proxy`, `admin` or `metrics`.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Every address listened on (`host:port`, and the Unix socket's path).
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The next connection on any of the sockets. Errors are the accept's own (the caller
    /// backs off), except running out of descriptors, which sheds (see the module docs).
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Takes the reserve descriptor again if it was let go (fails, harmlessly, while the
    /// process is still out of descriptors).
    fn retake_reserve(&self) {
        let mut reserve = self.reserve.lock().unwrap();
        if reserve.is_none() {
            *reserve = File::open("/dev/null").ok();
        }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<Accepted>> {
        self.retake_reserve();
        let sockets = self.tcp.len() + usize::from(self.unix.is_some());
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..sockets {
            let at = (start + i) % sockets;
            let polled = match self.tcp.get(at) {
                Some(tcp) => poll_tcp(tcp, cx),
                None => poll_unix(&self.unix.as_ref().expect("counted").0, cx),
            };
            match polled {
                Poll::Pending => continue,
                Poll::Ready(Ok((stream, peer))) => {
                    return Poll::Ready(Ok(Accepted::Open(stream, peer)))
                }
                Poll::Ready(Err(e)) if out_of_descriptors(&e) => {
                    let Some(reserve) = self.reserve.lock().unwrap().take() else {
                        return Poll::Ready(Err(e));
                    };
                    drop(reserve);
                    let again = match self.tcp.get(at) {
                        Some(tcp) => poll_tcp(tcp, cx),
                        None => poll_unix(&self.unix.as_ref().expect("counted").0, cx),
                    };
                    match again {
                        Poll::Ready(Ok((stream, peer))) => {
                            return Poll::Ready(Ok(Accepted::Shed(stream, peer)))
                        }
                        // Linux answers EMFILE before it looks at the queue, so an accept
                        // right after the last descriptor was taken fails so even with
                        // nobody waiting. Then the reserve is taken back at once: left
                        // free, the descriptor goes to the next thing pgdog opens (the
                        // server connection of the client just accepted), and the next
                        // client would wait in the kernel's queue for nothing.
                        Poll::Pending => {
                            self.retake_reserve();
                            continue;
                        }
                        Poll::Ready(Err(e)) => {
                            self.retake_reserve();
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Pending
    }
}

fn poll_tcp(l: &TcpListener, cx: &mut Context<'_>) -> Poll<std::io::Result<(Stream, Peer)>> {
    l.poll_accept(cx).map_ok(|(stream, addr)| {
        // Protocol messages are small and answered at once: never wait to coalesce them.
        let _ = stream.set_nodelay(true);
        (Stream::Plain(stream), Peer::Tcp(addr))
    })
}

fn poll_unix(l: &UnixListener, cx: &mut Context<'_>) -> Poll<std::io::Result<(Stream, Peer)>> {
    l.poll_accept(cx)
        .map_ok(|(stream, _)| (Stream::Unix(stream), Peer::Unix))
}

/// The process (`EMFILE`) or the system (`ENFILE`) has no file descriptor left.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// A Unix socket's file, removed when the listener goes.
pub struct SocketFile(PathBuf);

impl SocketFile {
    pub(super) fn new(path: PathBuf) -> SocketFile {
        SocketFile(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
