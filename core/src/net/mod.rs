//! Where clients reach pgdog: the listening sockets of the proxy, the admin console and the
//! metrics endpoint, and who is at the other end of an accepted connection.
//!
//! Start-up ([`crate::app`]) binds every socket of every listener first ([`bind`]: each
//! address of `host`, or `metrics_host`, and the Unix socket in `unix_socket_dir`), and
//! only when all of them are bound does it let any of them listen: a port that is taken
//! stops start-up before a single client could connect and be dropped. A bound socket
//! that does not listen yet refuses connections.
//!
//! A [`Listener`] accepts on all its sockets at once. When the process runs out of file
//! descriptors it keeps one in reserve to accept the next connection anyway and hand it
//! back as [`Accepted::Shed`], for the caller to refuse with a message instead of leaving
//! the client waiting in the kernel's queue (see [`listener`]).

mod bind;
pub mod http1;
mod listener;

pub use bind::{bind, unix_socket_path, BindError, Bound, Endpoints};
pub use listener::{Accepted, Listener};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The other end of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix socket client: on this host.
    Unix,
}

impl Peer {
    /// The address as `SHOW CLIENTS` shows it: the IP, or `unix`.
    pub fn addr_text(&self) -> String {
        match self {
            Peer::Tcp(addr) => addr.ip().to_string(),
            Peer::Unix => "unix".into(),
        }
    }

    /// The client's port, if it has one.
    pub fn port(&self) -> Option<u16> {
        match self {
            Peer::Tcp(addr) => Some(addr.port()),
            Peer::Unix => None,
        }
    }

    /// The address a host-based rule sees: a Unix socket client is on this host, as
    /// loopback is.
    pub fn ip(&self) -> IpAddr {
        match self {
            Peer::Tcp(addr) => addr.ip(),
            Peer::Unix => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix => f.write_str("unix socket"),
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer::Tcp(addr)
    }
}
