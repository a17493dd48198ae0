//! Binding a listener's sockets, and only then letting them listen (see the module docs).
//!
//! Every address a host resolves to gets a socket (`localhost` may be both `127.0.0.1`
//! and `::1`; `*` is every IPv4 and IPv6 address). IPv6 sockets are IPv6-only, as
//! PostgreSQL's and PgBouncer's are, so that `host = ["0.0.0.0", "::"]` binds both
//! families on the same port instead of the second failing. The Unix socket is
//! `<dir>/.s.PGSQL.<port>`, where libpq looks for it: a file left by a process that is
//! gone is replaced, one a running server answers on is an error, and the file is removed
//! when the listener is dropped.

use super::listener::{Listener, SocketFile};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Connections waiting to be accepted, per socket.
const BACKLOG: i32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {host} ({what}): the host name does not resolve: {source}")]
    Resolve {
        what: &'static str,
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {path} ({what}): another server is listening on it")]
    UnixInUse { what: &'static str, path: PathBuf },
}

/// What one listener binds: each of `hosts` on `port`, and the Unix socket for `port` in
/// `unix_dir`.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints<'a> {
    /// `proxy`, `admin` or `metrics`, for messages.
    pub what: &'static str,
    pub hosts: &'a [String],
    pub port: u16,
    pub unix_dir: Option<&'a Path>,
}

/// A listener's sockets, bound but not listening yet: connections to them are refused.
pub struct Bound {
    what: &'static str,
    tcp: Vec<(Socket, SocketAddr)>,
    unix: Option<(Socket, SocketFile)>,
}

/// Where libpq looks for the Unix socket of `port` in `dir`.
pub fn unix_socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Binds every socket of `e` (none listens yet).
pub fn bind(e: Endpoints<'_>) -> Result<Bound, BindError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for host in e.hosts {
        for addr in resolve(e.what, host, e.port)? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    let mut tcp = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let err = |source| BindError::Bind {
            what: e.what,
            addr: addr.to_string(),
            source,
        };
        let socket = tcp_socket(addr).map_err(err)?;
        // The port the kernel picked, when asked for port 0.
        let bound = socket
            .local_addr()
            .map_err(err)?
            .as_socket()
            .unwrap_or(addr);
        tcp.push((socket, bound));
    }
    let unix = match e.unix_dir {
        Some(dir) => Some(unix_socket(e.what, &unix_socket_path(dir, e.port))?),
        None => None,
    };
    Ok(Bound {
        what: e.what,
        tcp,
        unix,
    })
}

impl Bound {
    /// The addresses, as the log names them.
    pub fn addrs(&self) -> Vec<String> {
        let tcp = self.tcp.iter().map(|(_, addr)| addr.to_string());
        let unix = self
            .unix
            .iter()
            .map(|(_, f)| f.path().display().to_string());
        tcp.chain(unix).collect()
    }

    /// Lets every socket listen. Needs a tokio runtime.
    pub fn listen(self) -> Result<Listener, BindError> {
        let what = self.what;
        let addrs = self.addrs();
        let mut tcp = Vec::with_capacity(self.tcp.len());
        for (socket, addr) in self.tcp {
            let err = |source| BindError::Bind {
                what,
                addr: addr.to_string(),
                source,
            };
            socket.listen(BACKLOG).map_err(err)?;
            let std: std::net::TcpListener = socket.into();
            tcp.push(tokio::net::TcpListener::from_std(std).map_err(err)?);
        }
        let unix = match self.unix {
            Some((socket, file)) => {
                let err = |source| BindError::Bind {
                    what,
                    addr: file.path().display().to_string(),
                    source,
                };
                socket.listen(BACKLOG).map_err(err)?;
                let std: std::os::unix::net::UnixListener = socket.into();
                Some((tokio::net::UnixListener::from_std(std).map_err(err)?, file))
            }
            None => None,
        };
        Ok(Listener::new(what, tcp, unix, addrs))
    }
}

/// The addresses `host` stands for on `port`.
fn resolve(what: &'static str, host: &str, port: u16) -> Result<Vec<SocketAddr>, BindError> {
    if host == "*" {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ]);
    }
    // An IPv6 literal may come bracketed, as in URLs.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    (bare, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|source| BindError::Resolve {
            what,
            host: host.to_string(),
            source,
        })
}

fn tcp_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // A restarted pgdog binds again while the old connections are in TIME_WAIT; a port
    // another socket listens on is still refused.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn unix_socket(what: &'static str, path: &Path) -> Result<(Socket, SocketFile), BindError> {
    let err = |source| BindError::Bind {
        what,
        addr: path.display().to_string(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::UnixInUse {
                what,
                path: path.to_path_buf(),
            });
        }
        // Left behind by a process that is gone (PostgreSQL and PgBouncer do the same).
        use std::os::unix::fs::FileTypeExt;
        let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket
        .bind(&SockAddr::unix(path).map_err(err)?)
        .map_err(err)?;
    let file = SocketFile::new(path.to_path_buf());
    // Anyone on the host may connect, as PostgreSQL's default `unix_socket_permissions`
    // (authentication still applies); the directory's permissions narrow it down.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(err)?;
    Ok((socket, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints<'a>(hosts: &'a [String], port: u16, unix: Option<&'a Path>) -> Endpoints<'a> {
        Endpoints {
            what: "test",
            hosts,
            port,
            unix_dir: unix,
        }
    }

    #[tokio::test]
    async fn both_families_on_one_port_and_nothing_accepted_before_listen() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let hosts = vec!["127.0.0.1".to_string(), "::1".to_string()];
        let bound = bind(endpoints(&hosts, port, None)).unwrap();
        assert_eq!(
            bound.addrs(),
            [format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
        );
        // Bound, not listening: refused.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        let listener = bound.listen().unwrap();
        for host in ["127.0.0.1", "::1"] {
            let _client = tokio::net::TcpStream::connect((host, port)).await.unwrap();
            assert!(matches!(
                listener.accept().await.unwrap(),
                super::super::Accepted::Open(_, super::super::Peer::Tcp(_))
            ));
        }
        // The port is taken now: a second bind fails, naming the address.
        let err = bind(endpoints(&hosts, port, None))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    }

    #[tokio::test]
    async fn a_unix_socket_replaces_a_stale_file_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = unix_socket_path(dir.path(), 7777);
        // A socket file nobody listens on (a process that died).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = bind(endpoints(&[], 7777, Some(dir.path())))
            .unwrap()
            .listen()
            .unwrap();
        let _client = tokio::net::UnixStream::connect(&path).await.unwrap();
        assert!(matches!(
            listener.accept().await.unwrap(),
            super::super::Accepted::Open(_, super::super::Peer::Unix)
        ));
        let err = bind(endpoints(&[], 7777, Some(dir.path()))).err().unwrap();
        assert!(matches!(err, BindError::UnixInUse { .. }), "{err}");
        drop(listener);
        assert!(!path.exists(), "removed with its listener");
    }

    #[test]
    fn hosts_resolve() {
        assert_eq!(resolve("t", "*", 5).unwrap().len(), 2);
        assert_eq!(
            resolve("t", "[::1]", 5).unwrap(),
            ["[::1]:5".parse().unwrap()]
        );
        assert!(!resolve("t", "localhost", 5).unwrap().is_empty());
        assert!(matches!(
            resolve("t", "no-such-host.invalid", 5),
            Err(BindError::Resolve { .. })
        ));
    }
}
