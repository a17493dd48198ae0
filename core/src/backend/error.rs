use crate::protocol::backend::ErrorFields;
use crate::protocol::ProtocolError;

/// Failures talking to a PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {ms} ms connecting to {addr}")]
    ConnectTimeout { addr: String, ms: u64 },
    #[error("server refused login: {0}")]
    Auth(ErrorFields),
    #[error("server asks for {0}, which the proxy does not support")]
    UnsupportedAuth(String),
    #[error("server requires a password but the pool has none")]
    NoPassword,
    #[error("server asks for a password, and pgdog has only the SCRAM keys a client proved (SCRAM pass-through needs the server to use scram-sha-256 for this user)")]
    OnlyScramKeys,
    #[error("SCRAM exchange with the server failed: {0}")]
    Scram(String),
    #[error("the server refused TLS, which server_tls_sslmode = {0} requires")]
    TlsRefused(&'static str),
    #[error("TLS handshake with the server failed: {0}")]
    Tls(std::io::Error),
    #[error("server error: {0}")]
    Server(ErrorFields),
    #[error("server protocol error: {0}")]
    Protocol(#[from] ProtocolError),
}

impl BackendError {
    /// The connection could not be opened because pgdog itself is out of file descriptors
    /// (`EMFILE`/`ENFILE`): pgdog's limit, not the server's fault.
    pub fn out_of_descriptors(&self) -> bool {
        matches!(
            self,
            BackendError::Connect { source, .. }
                if matches!(source.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
        )
    }
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError::Protocol(ProtocolError::Io(e))
    }
}
