//! Telling systemd where the service stands (`Type=notify`): the `sd_notify` datagram,
//! written here rather than linked from libsystemd (it is one `sendto` on a Unix socket).
//!
//! When systemd starts pgdog as a `Type=notify` service it sets `NOTIFY_SOCKET`; pgdog
//! sends `READY=1` once every listener accepts, `RELOADING=1` (then `READY=1`) around a
//! SIGHUP reload and `STOPPING=1` when it begins to shut down. Without `NOTIFY_SOCKET`
//! nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Environment variable systemd names its notification socket in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The service is up: every listener accepts.
pub fn ready() {
    notify("READY=1\nSTATUS=accepting connections");
}

/// A SIGHUP reload begins (systemd expects `READY=1` again once it is done).
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// Shutdown begins.
pub fn stopping() {
    notify("STOPPING=1");
}

/// Sends `state` to systemd's notification socket, if there is one. Failures are logged
/// at debug level only: a service manager that stopped listening is no reason to stop.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send(path.as_encoded_bytes(), state) {
        tracing::debug!("sd_notify {state:?} failed: {e}");
    }
}

fn send(path: &[u8], state: &str) -> std::io::Result<()> {
    let addr = match path.strip_prefix(b"@") {
        // An abstract socket (Linux): `@name`.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))?
        }
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str().as_encoded_bytes(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("pgdog-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(format!("@{name}").as_bytes(), "STOPPING=1").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        assert!(monotonic_usec() > 0);
    }
}
