//! `[general]`: listener addresses, client authentication, timeouts and the mirror
//! defaults and readiness criteria.

use super::hosts::Hosts;
use super::tls::{ClientTlsMode, ServerTlsMode};
use super::users::PoolMode;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How clients authenticate to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum AuthType {
    /// SCRAM-SHA-256 (default), as PostgreSQL 14+ does by default.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge-response.
    #[serde(rename = "md5")]
    Md5,
    /// No password asked.
    #[serde(rename = "trust")]
    Trust,
}

impl AuthType {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthType::ScramSha256 => "scram-sha-256",
            AuthType::Md5 => "md5",
            AuthType::Trust => "trust",
        }
    }
}

/// How log lines are written (to stderr), one line per event either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-01T10:00:00.000000Z  INFO pgdog::app: message key=value` (default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, and the
    /// event's fields.
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    /// Addresses the proxy, admin and metrics listeners bind to: one, or an array
    /// (`["0.0.0.0", "::"]`). Default `127.0.0.1`.
    #[serde(default = "default_host")]
    pub host: Hosts,
    /// Proxy port. Default 6432.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Admin console port. Default 6433.
    #[serde(default = "default_admin_port")]
    pub admin_port: u16,
    /// Prometheus metrics port. Default 9090.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
    /// Addresses of the metrics listener. Default: `host`.
    #[serde(default)]
    pub metrics_host: Option<Hosts>,
    /// Directory of the Unix sockets clients (and the admin console) can connect through:
    /// `.s.PGSQL.<port>` and `.s.PGSQL.<admin_port>`, where libpq looks for them. Default:
    /// none (TCP only).
    #[serde(default)]
    pub unix_socket_dir: Option<PathBuf>,
    /// Directory searched first for plugins given by file name (and the bundled stats
    /// plugin). Default: none (beside the binary, then `../lib/pgdog/`).
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// `text` or `json`. Default `text`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Client authentication method. Default `scram-sha-256`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// Admin console user. Default `admin`.
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// Admin console password. Default: none (admin port then accepts loopback only).
    #[serde(default)]
    pub admin_password: Option<String>,
    /// Default server connections per pool. Default 10.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// `session` or `transaction` (default for pools). Default `session`.
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// In transaction mode, most prepared statements kept per server connection (the least
    /// recently used is closed past it). Default 200, as PgBouncer's.
    #[serde(default = "default_max_prepared_statements")]
    pub max_prepared_statements: usize,
    /// Session mode: run on a server connection a client gave back, before the next client
    /// gets it. Default `DISCARD ALL`.
    #[serde(default = "default_server_reset_query")]
    pub server_reset_query: String,
    /// The role pgdog logs in to a pool's server as to look up a client's password with
    /// `auth_query`, for roles `[[users]]` does not list. Default: none (no lookup).
    #[serde(default)]
    pub auth_user: Option<String>,
    /// `auth_user`'s password. Default: none.
    #[serde(default)]
    pub auth_password: Option<String>,
    /// The lookup: `$1` is the client's role; it returns the role name and its password
    /// (a SCRAM verifier). Default: PgBouncer's, on `pg_shadow`.
    #[serde(default = "default_auth_query")]
    pub auth_query: String,
    /// Runtime worker threads; 0 means one per CPU. Default 0.
    #[serde(default)]
    pub workers: usize,
    /// Most client connections at once. Default 1000.
    #[serde(default = "default_max_client_conn")]
    pub max_client_conn: usize,
    /// Time to open and authenticate a server connection. Default 5000 ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time a client waits for a free server connection. Default 5000 ms.
    #[serde(default = "default_checkout_timeout_ms")]
    pub checkout_timeout_ms: u64,
    /// On SIGTERM, time given to running transactions before connections are closed. Default 10000 ms.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Largest protocol message accepted from a client. Default 64 MiB.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Time a new client has for its TLS handshake, startup and authentication. Default
    /// 60000 ms (PgBouncer's `client_login_timeout`).
    #[serde(default = "default_client_login_timeout_ms")]
    pub client_login_timeout_ms: u64,

    /// TLS towards clients: `disable`, `allow`, `prefer`, `require`, `verify-ca` or
    /// `verify-full`. Default: `prefer` when `client_tls_cert_file` is set, else `disable`.
    #[serde(default)]
    pub client_tls_sslmode: Option<ClientTlsMode>,
    /// Certificate (PEM, with its chain) the proxy and the admin console present.
    #[serde(default)]
    pub client_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `client_tls_cert_file`.
    #[serde(default)]
    pub client_tls_key_file: Option<PathBuf>,
    /// CA bundle (PEM) client certificates are checked against (`verify-ca`/`verify-full`).
    #[serde(default)]
    pub client_tls_ca_file: Option<PathBuf>,
    /// TLS towards servers, as libpq's `sslmode`: `disable`, `prefer`, `require`,
    /// `verify-ca` or `verify-full`. Default `prefer`. A pool's own value wins.
    #[serde(default)]
    pub server_tls_sslmode: ServerTlsMode,
    /// CA bundle (PEM) server certificates are checked against. Default: the system roots.
    #[serde(default)]
    pub server_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for servers that authenticate by certificate.
    #[serde(default)]
    pub server_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of `server_tls_cert_file`.
    #[serde(default)]
    pub server_tls_key_file: Option<PathBuf>,

    /// Whether mirror statistics are collected and exported. Default true.
    #[serde(default = "default_true")]
    pub mirror_metrics_enabled: bool,
    /// Default mirror queue length per client session. Default 128.
    #[serde(default = "default_mirror_queue")]
    pub mirror_queue: usize,
    /// A mirrored request running longer than this is cancelled and counted as a timeout. Default 5000 ms.
    #[serde(default = "default_mirror_timeout_ms")]
    pub mirror_timeout_ms: u64,
    /// Readiness: highest acceptable mirror error rate, 0-1. Default 0.05.
    #[serde(default = "default_mirror_max_error_rate")]
    pub mirror_max_error_rate: f64,
    /// Readiness: highest acceptable mirror p99 latency. Default 1000 ms.
    #[serde(default = "default_mirror_max_latency_ms")]
    pub mirror_max_latency_ms: u64,
    /// Readiness: fewest mirrored requests before a verdict can be READY. Default 100.
    #[serde(default = "default_mirror_min_requests")]
    pub mirror_min_requests: u64,
    /// Readiness: shortest observation window before READY. Default 24 hours.
    #[serde(default = "default_mirror_min_runtime_hours")]
    pub mirror_min_runtime_hours: f64,
    /// Compare each mirrored answer with the primary's. Default true.
    #[serde(default = "default_true")]
    pub mirror_compare: bool,
    /// Fingerprints (16 hex digits) or statements whose differences are not counted.
    #[serde(default)]
    pub mirror_compare_ignore: Vec<String>,
    /// Readiness: highest acceptable fraction of compared answers that differ. Default 0.
    #[serde(default)]
    pub mirror_max_mismatch_rate: f64,
    /// Readiness: highest acceptable fraction of requests dropped. Default 0.01.
    #[serde(default = "default_mirror_max_drop_rate")]
    pub mirror_max_drop_rate: f64,
    /// Readiness: highest acceptable mirror/primary latency ratio (0 = off). Default 1.5.
    #[serde(default = "default_mirror_max_latency_ratio")]
    pub mirror_max_latency_ratio: f64,
    /// Readiness: highest acceptable replication lag of a mirror kept in sync by
    /// replication (`mirror_sync`), p99 over the stats window. Default 1000 ms.
    #[serde(default = "default_mirror_max_replication_lag_ms")]
    pub mirror_max_replication_lag_ms: u64,
    /// Window of the `mirror{stat=...}` latency gauges. Default 5 s.
    #[serde(default = "default_mirror_stats_window_secs")]
    pub mirror_stats_window_secs: u64,
    /// Plugin (by `[[plugins]]` name) that answers readiness. Default: the stats plugin.
    #[serde(default)]
    pub readiness_plugin: Option<String>,
    /// Plugins (by `[[plugins]]` name; `mirror-stats` is the bundled one) that judge
    /// readiness side by side; the first is the verdict of record, the others are shadow
    /// policies shown beside it. Default: none (`readiness_plugin` decides alone).
    #[serde(default)]
    pub readiness_plugins: Vec<String>,
    /// Readiness: the confidence each rate criterion (error rate, p99, drops, mismatches)
    /// must reach for READY, valid however often the verdict is read. Default 0.95.
    #[serde(default = "default_mirror_min_confidence")]
    pub mirror_min_confidence: f64,
    /// Readiness: highest acceptable estimated share of traffic that is statements the
    /// mirror has not run yet (Good-Turing: fingerprints seen once / requests). Default 0.01.
    #[serde(default = "default_mirror_max_unseen")]
    pub mirror_max_unseen: f64,
    /// Password for the metrics port (`/metrics`, `/readiness`, `/ui`) by HTTP basic
    /// auth, any user name. Default: none (no authentication).
    #[serde(default)]
    pub metrics_password: Option<String>,

    /// OTLP collector to push metrics to, e.g. `http://collector:4318` (the path
    /// `/v1/metrics` is added unless the URL has a path). Default: none (no push).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: `http/protobuf` (the only one built in). Default `http/protobuf`.
    #[serde(default = "default_otlp_protocol")]
    pub otlp_protocol: String,
    /// Time between two pushes. Default 10000 ms.
    #[serde(default = "default_otlp_interval_ms")]
    pub otlp_interval_ms: u64,
    /// Headers sent with every push (a table of strings, e.g. an API key). Default: none.
    #[serde(default)]
    pub otlp_headers: std::collections::BTreeMap<String, String>,
}

impl Default for General {
    fn default() -> Self {
        // An empty table gets every field's default.
        toml::from_str("").expect("defaults parse")
    }
}

impl General {
    pub fn metrics_host(&self) -> &Hosts {
        self.metrics_host.as_ref().unwrap_or(&self.host)
    }

    /// The readiness plugins by name, the verdict of record first: `readiness_plugins`,
    /// else `readiness_plugin`; empty means the stats plugin.
    pub fn readiness_policies(&self) -> Vec<String> {
        if !self.readiness_plugins.is_empty() {
            return self.readiness_plugins.clone();
        }
        self.readiness_plugin.iter().cloned().collect()
    }

    /// The client TLS mode in effect: the configured one, else `prefer` when a
    /// certificate is set, else `disable`.
    pub fn client_tls_mode(&self) -> ClientTlsMode {
        self.client_tls_sslmode
            .unwrap_or(match self.client_tls_cert_file {
                Some(_) => ClientTlsMode::Prefer,
                None => ClientTlsMode::Disable,
            })
    }
}

fn default_host() -> Hosts {
    Hosts::one("127.0.0.1")
}
fn default_port() -> u16 {
    6432
}
fn default_admin_port() -> u16 {
    6433
}
fn default_metrics_port() -> u16 {
    9090
}
fn default_admin_user() -> String {
    "admin".into()
}
fn default_pool_size() -> usize {
    10
}
fn default_max_client_conn() -> usize {
    1000
}
fn default_connect_timeout_ms() -> u64 {
    5000
}
fn default_checkout_timeout_ms() -> u64 {
    5000
}
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}
fn default_max_message_size() -> usize {
    64 * 1024 * 1024
}
fn default_max_prepared_statements() -> usize {
    200
}
fn default_server_reset_query() -> String {
    "DISCARD ALL".into()
}
fn default_auth_query() -> String {
    "SELECT usename, passwd FROM pg_shadow WHERE usename = $1".into()
}
fn default_client_login_timeout_ms() -> u64 {
    60_000
}
fn default_true() -> bool {
    true
}
fn default_mirror_max_drop_rate() -> f64 {
    0.01
}
fn default_mirror_max_latency_ratio() -> f64 {
    1.5
}
fn default_mirror_queue() -> usize {
    128
}
fn default_mirror_timeout_ms() -> u64 {
    5000
}
fn default_mirror_max_error_rate() -> f64 {
    0.05
}
fn default_mirror_max_latency_ms() -> u64 {
    1000
}
fn default_mirror_min_requests() -> u64 {
    100
}
fn default_mirror_min_runtime_hours() -> f64 {
    24.0
}
fn default_mirror_min_confidence() -> f64 {
    0.95
}
fn default_mirror_max_unseen() -> f64 {
    0.01
}
fn default_mirror_max_replication_lag_ms() -> u64 {
    1000
}
fn default_mirror_stats_window_secs() -> u64 {
    5
}
fn default_otlp_protocol() -> String {
    "http/protobuf".into()
}
fn default_otlp_interval_ms() -> u64 {
    10_000
}
