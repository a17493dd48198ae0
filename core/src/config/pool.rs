//! `[[pools]]`: one entry per server-side database the proxy serves.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Name clients use as their `database`. Required, unique.
    pub name: String,
    /// Database name on the server. Default: `name`.
    #[serde(default)]
    pub database: Option<String>,
    /// Server address. Default `127.0.0.1`.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port. Default 5432.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User clients log in as, and the proxy logs in to the server as. Default `pgdog`.
    #[serde(default = "default_user")]
    pub user: String,
    /// Password of `user`, for clients and for the server. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// Server connections in this pool. Default: `[general] pool_size`.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Name of the pool this pool's traffic is copied to. Default: none.
    #[serde(default)]
    pub mirror_of: Option<String>,
    /// Fraction of transactions mirrored, 0.0-1.0. Default 1.0.
    #[serde(default = "default_exposure")]
    pub mirror_exposure: f64,
    /// Mirror queue length per client session. Default: `[general] mirror_queue`.
    #[serde(default)]
    pub mirror_queue: Option<usize>,
    /// Compare the mirror's answers with the primary's. Default: `[general] mirror_compare`.
    #[serde(default)]
    pub mirror_compare: Option<bool>,
}

impl PoolConfig {
    /// The database name sent to the server.
    pub fn server_database(&self) -> &str {
        self.database.as_deref().unwrap_or(&self.name)
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5432
}
fn default_user() -> String {
    "pgdog".into()
}
fn default_exposure() -> f64 {
    1.0
}
