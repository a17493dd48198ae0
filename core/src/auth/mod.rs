//! Passwords: checking clients' (SCRAM-SHA-256 with channel binding over TLS, MD5), and the
//! proxy's own logins to servers with SCRAM ([`scram_client`]: by password, or with the
//! keys a client proved, which is SCRAM pass-through).

pub mod exchange;
pub mod md5;
pub mod scram;
pub mod scram_client;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported (no TLS)")]
    ChannelBinding,
    #[error("the client did not bind to the channel the server offered to bind to")]
    Downgrade,
    #[error("channel binding data does not match the connection's")]
    BindingMismatch,
    #[error("SCRAM nonce mismatch")]
    Nonce,
    #[error("password authentication failed")]
    BadPassword,
}
