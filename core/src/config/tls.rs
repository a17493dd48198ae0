//! TLS settings, with PgBouncer's key names and modes: `client_tls_*` for clients
//! connecting to the proxy, `server_tls_*` for the proxy connecting to servers (in
//! `[general]`, and per pool, where the pool's value wins).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `client_tls_sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// SSLRequest is answered `N`.
    Disable,
    /// TLS when the client asks (as `prefer`: the proxy never asks the client).
    Allow,
    /// TLS when the client asks.
    Prefer,
    /// Only TLS: a plaintext client is refused with `28000`.
    Require,
    /// Only TLS with a client certificate signed by `client_tls_ca_file`.
    VerifyCa,
    /// As `verify-ca` (PgBouncer's meaning).
    VerifyFull,
}

impl ClientTlsMode {
    /// Whether a plaintext client is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            ClientTlsMode::Require | ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull
        )
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(self) -> bool {
        matches!(self, ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientTlsMode::Disable => "disable",
            ClientTlsMode::Allow => "allow",
            ClientTlsMode::Prefer => "prefer",
            ClientTlsMode::Require => "require",
            ClientTlsMode::VerifyCa => "verify-ca",
            ClientTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// `server_tls_sslmode`, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server accepts it, else plain; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, with the server's certificate chain checked against the CA bundle.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the pool's `host`.
    VerifyFull,
}

impl ServerTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerTlsMode::Disable => "disable",
            ServerTlsMode::Prefer => "prefer",
            ServerTlsMode::Require => "require",
            ServerTlsMode::VerifyCa => "verify-ca",
            ServerTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS settings of a pool's server connections: the pool's own values, else
/// `[general]`'s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerTlsSettings {
    pub mode: ServerTlsMode,
    /// CA bundle (PEM); without one, the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}
