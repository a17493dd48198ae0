//! `[[users]]` and pool modes: who may log in to which pools, and how server connections
//! are shared between them.

use serde::{Deserialize, Serialize};

/// How clients share a pool's server connections (`pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client holds one server connection for its whole session.
    #[default]
    Session,
    /// A client holds a server connection for one transaction at a time.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// One `[[users]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The role name clients log in as, and pgdog logs in to the servers as. Required.
    pub name: String,
    /// Plaintext, or a SCRAM verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
    /// as `pg_authid.rolpassword` holds it) so that no plaintext sits in the file. With a
    /// verifier, pgdog logs in to the servers with the keys the client proved (SCRAM
    /// pass-through): the servers must hold the same verifier. Required.
    pub password: String,
    /// The pools (by `[[pools]]` name) the user may log in to. Default: every pool.
    #[serde(default)]
    pub pools: Vec<String>,
}

impl UserConfig {
    /// Whether the user may log in to pool `pool`.
    pub fn may_use(&self, pool: &str) -> bool {
        self.pools.is_empty() || self.pools.iter().any(|p| p == pool)
    }
}
