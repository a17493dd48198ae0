use crate::protocol::ProtocolError;

/// Why a client session ended abnormally. Each variant knows the SQLSTATE the client is told.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    NoDatabase(String),
    #[error("{0}")]
    PoolDisabled(String),
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    ServerUnavailable(String),
    #[error("{message}")]
    Rejected { code: String, message: String },
    #[error("too many client connections (max_client_conn {0})")]
    TooManyClients(usize),
    #[error("the proxy is shutting down")]
    Shutdown,
}

impl ClientError {
    /// The refusal of a wrong password (or of a role nobody knows: the same, so that a
    /// client cannot tell which roles exist).
    pub fn wrong_password(user: &str) -> ClientError {
        ClientError::Auth(format!(
            "password authentication failed for user \"{user}\""
        ))
    }

    pub fn sqlstate(&self) -> &str {
        match self {
            ClientError::Protocol(_) => "08P01",
            ClientError::Auth(_) => "28P01",
            ClientError::NoDatabase(_) => "3D000",
            ClientError::PoolDisabled(_) => "57P03",
            ClientError::Exhausted(_) => "53300",
            ClientError::ServerUnavailable(_) => "08006",
            ClientError::Rejected { code, .. } => code,
            ClientError::TooManyClients(_) => "53300",
            ClientError::Shutdown => "57P01",
        }
    }
}
