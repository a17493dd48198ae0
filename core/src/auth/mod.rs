//! Password checks for client authentication: SCRAM-SHA-256 (server side of the exchange)
//! and MD5. The proxy's own logins to servers use `postgres-protocol`'s client side.

pub mod exchange;
pub mod md5;
pub mod scram;

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
