//! `[[pools]]`: one entry per server-side database the proxy serves.

use super::replication::{MirrorStatements, MirrorSync};
use super::tls::{ServerTlsMode, ServerTlsSettings};
use super::General;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// `session` or `transaction`. Default: `[general] pool_mode`.
    #[serde(default)]
    pub pool_mode: Option<super::PoolMode>,
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
    /// TLS to this pool's server. Default: `[general] server_tls_sslmode`.
    #[serde(default)]
    pub server_tls_sslmode: Option<ServerTlsMode>,
    /// Default: `[general] server_tls_ca_file`.
    #[serde(default)]
    pub server_tls_ca_file: Option<PathBuf>,
    /// Default: `[general] server_tls_cert_file`.
    #[serde(default)]
    pub server_tls_cert_file: Option<PathBuf>,
    /// Default: `[general] server_tls_key_file`.
    #[serde(default)]
    pub server_tls_key_file: Option<PathBuf>,
    /// Which transactions are mirrored: `all`, `reads` or `writes`. Default `all`.
    #[serde(default)]
    pub mirror_statements: Option<MirrorStatements>,
    /// Where the mirror's replication position is read: `none`, `logical` or `physical`.
    /// Default `none`.
    #[serde(default)]
    pub mirror_sync: Option<MirrorSync>,
    /// `mirror_sync = "logical"`: the subscription's replication slot on the primary.
    #[serde(default)]
    pub mirror_sync_slot: Option<String>,
    /// A read that waits longer than this for the mirror to catch up is mirrored anyway and
    /// its comparison set aside as `lagging`. Default 1000 ms.
    #[serde(default)]
    pub mirror_max_lag_ms: Option<u64>,
    /// Shortest time between two reads of the replication positions while reads wait.
    /// Default 10 ms.
    #[serde(default)]
    pub mirror_sync_interval_ms: Option<u64>,
}

impl PoolConfig {
    /// The database name sent to the server.
    pub fn server_database(&self) -> &str {
        self.database.as_deref().unwrap_or(&self.name)
    }

    /// TLS towards this pool's server: its own settings, else `general`'s.
    pub fn server_tls(&self, general: &General) -> ServerTlsSettings {
        let or = |own: &Option<PathBuf>, default: &Option<PathBuf>| own.clone().or(default.clone());
        ServerTlsSettings {
            mode: self
                .server_tls_sslmode
                .unwrap_or(general.server_tls_sslmode),
            ca_file: or(&self.server_tls_ca_file, &general.server_tls_ca_file),
            cert_file: or(&self.server_tls_cert_file, &general.server_tls_cert_file),
            key_file: or(&self.server_tls_key_file, &general.server_tls_key_file),
        }
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
