//! Errors of the admin console. Each knows the SQLSTATE the client is told, and says what
//! was wrong and what to do.

use super::parse::ParseError;
use crate::plugins::PluginError;
use crate::protocol::ProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The statement is not an admin command (or malformed).
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("no pool named \"{name}\"; pools: {known}")]
    NoSuchPool { name: String, known: String },
    #[error(
        "no mirror statistics for database \"{name}\" yet; databases with statistics: {known}"
    )]
    NoSuchDatabase { name: String, known: String },
    #[error("{0}")]
    Plugin(#[from] PluginError),
    #[error("plugins could not reset: {0}")]
    Reset(String),
    /// `RELOAD` found the new config invalid; the running one is kept.
    #[error("RELOAD refused, the running configuration is kept: {0}")]
    Reload(String),
    /// Extended query protocol (Parse, Bind, ...): the console speaks simple queries only.
    #[error("the admin console supports only the simple query protocol (psql, or simple_query in drivers); got message '{}'", char::from(*.0))]
    Extended(u8),
    // Login failures.
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Refused(String),
    #[error(
        "database \"{0}\" does not exist on the admin console; connect to \"pgdog\" or \"admin\""
    )]
    NoDatabase(String),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
}

impl AdminError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AdminError::Parse(ParseError::Unknown(_)) => "42601",
            AdminError::Parse(_) => "42601",
            AdminError::NoSuchPool { .. } | AdminError::NoSuchDatabase { .. } => "42704",
            AdminError::Plugin(_) | AdminError::Reset(_) => "58000",
            AdminError::Reload(_) => "F0000",
            AdminError::Extended(_) => "0A000",
            AdminError::Auth(_) => "28P01",
            AdminError::Refused(_) => "28000",
            AdminError::NoDatabase(_) => "3D000",
            AdminError::Protocol(_) => "08P01",
        }
    }
}
