//! TLS with rustls (the `ring` provider: it builds with a C compiler alone): accepted
//! from clients ([`Acceptor`], for the proxy and the admin console alike) and used towards
//! servers ([`Connector`], one per pool). Certificates are read from their PEM files when
//! a [`Runtime`](crate::runtime::Runtime) is built, so a `RELOAD` takes rotated files up
//! for new connections, and a file that cannot be read refuses the RELOAD with the reason.

mod binding;
mod files;
mod stream;
mod verify;

pub use binding::tls_server_end_point;
pub use stream::Stream;

use crate::config::{ClientTlsMode, General, ServerTlsMode, ServerTlsSettings};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot use {}: {reason}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no system CA certificates ({0}): install ca-certificates or set server_tls_ca_file")]
    SystemRoots(String),
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("pool \"{pool}\": server_tls_sslmode = verify-full needs a host name or IP address, got \"{host}\"")]
    HostName { pool: String, host: String },
}

impl TlsError {
    fn file(key: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
        TlsError::File {
            key,
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// The `ring` provider. rustls 0.23.48 marks it deprecated because it has no
/// post-quantum key exchange (only `aws-lc-rs` does, and that needs cmake to build);
/// PostgreSQL's own TLS (OpenSSL 3.0 on Debian 12) offers none either, so nothing is lost
/// towards today's servers and clients.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS towards clients: `client_tls_*`.
pub struct Acceptor {
    pub mode: ClientTlsMode,
    config: Option<tokio_rustls::TlsAcceptor>,
    /// The `tls-server-end-point` channel binding data of the certificate, when it has
    /// any (SCRAM-SHA-256-PLUS is offered to TLS clients then).
    end_point: Option<Vec<u8>>,
}

impl Acceptor {
    /// Reads the certificate, key and CA files `general` names.
    pub fn build(general: &General) -> Result<Acceptor, TlsError> {
        let mode = general.client_tls_mode();
        let (Some(cert_file), Some(key_file)) =
            (&general.client_tls_cert_file, &general.client_tls_key_file)
        else {
            return Ok(Acceptor {
                mode: ClientTlsMode::Disable,
                config: None,
                end_point: None,
            });
        };
        if mode == ClientTlsMode::Disable {
            return Ok(Acceptor {
                mode,
                config: None,
                end_point: None,
            });
        }
        let certs = files::certificates("client_tls_cert_file", cert_file)?;
        let key = files::private_key("client_tls_key_file", key_file)?;
        let end_point = tls_server_end_point(&certs[0]);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                key: "client_tls_sslmode",
                reason: e.to_string(),
            })?;
        let builder = match (
            &general.client_tls_ca_file,
            mode.requires_client_certificate(),
        ) {
            (Some(ca), true) => {
                let roots = files::roots("client_tls_ca_file", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                        .build()
                        .map_err(|e| TlsError::file("client_tls_ca_file", ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::file("client_tls_key_file", key_file, e))?;
        Ok(Acceptor {
            mode,
            config: Some(Arc::new(config).into()),
            end_point,
        })
    }

    /// Whether an SSLRequest is answered `S`.
    pub fn offers_tls(&self) -> bool {
        self.config.is_some()
    }

    /// The handshake on a connection whose SSLRequest was answered `S`.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let acceptor = self.config.as_ref().expect("offers_tls() was checked");
        let tls = acceptor.accept(tcp).await?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }

    /// The channel binding data SCRAM-SHA-256-PLUS checks against.
    pub fn end_point(&self) -> Option<&[u8]> {
        self.end_point.as_deref()
    }
}

/// TLS towards one pool's server: `server_tls_*`.
pub struct Connector {
    pub mode: ServerTlsMode,
    config: Option<tokio_rustls::TlsConnector>,
    /// The name certificates are checked against (and sent as SNI for host names).
    name: ServerName<'static>,
    /// What the settings and the files held when read: equal connectors need not be
    /// rebuilt, and a pool on an unchanged connector is kept by a RELOAD.
    fingerprint: (ServerTlsSettings, u64),
}

impl PartialEq for Connector {
    fn eq(&self, other: &Connector) -> bool {
        self.fingerprint == other.fingerprint && self.name == other.name
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({})", self.mode.as_str())
    }
}

impl Connector {
    /// Reads the files `settings` names for pool `pool` on `host`.
    pub fn build(
        pool: &str,
        host: &str,
        settings: &ServerTlsSettings,
    ) -> Result<Connector, TlsError> {
        if host.starts_with('/') {
            // A Unix socket directory: libpq never uses TLS there, whatever the mode.
            return Ok(Connector::disabled());
        }
        let name = match ServerName::try_from(host.to_string()) {
            Ok(name) => name,
            Err(_) if settings.mode != ServerTlsMode::VerifyFull => {
                ServerName::try_from("localhost").expect("a valid name")
            }
            Err(_) => {
                return Err(TlsError::HostName {
                    pool: pool.into(),
                    host: host.into(),
                })
            }
        };
        let files = [&settings.ca_file, &settings.cert_file, &settings.key_file];
        let fingerprint = (
            settings.clone(),
            files::contents_hash(files.into_iter().flatten().map(PathBuf::as_path)),
        );
        let config = match settings.mode {
            ServerTlsMode::Disable => None,
            mode => Some(Arc::new(client_config(mode, settings)?).into()),
        };
        Ok(Connector {
            mode: settings.mode,
            config,
            name,
            fingerprint,
        })
    }

    /// A connector that never uses TLS.
    pub fn disabled() -> Connector {
        let settings = ServerTlsSettings {
            mode: ServerTlsMode::Disable,
            ..Default::default()
        };
        Connector::build("", "localhost", &settings).expect("no files to read")
    }

    /// The handshake, after the server answered `S` to an SSLRequest.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let connector = self.config.as_ref().expect("TLS is not disabled");
        let tls = connector.connect(self.name.clone(), tcp).await?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

fn client_config(
    mode: ServerTlsMode,
    settings: &ServerTlsSettings,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            key: "server_tls_sslmode",
            reason: e.to_string(),
        })?;
    let builder = match mode {
        ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull => {
            let roots = match &settings.ca_file {
                Some(ca) => files::roots("server_tls_ca_file", ca)?,
                None => files::system_roots()?,
            };
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config {
                key: "server_tls_ca_file",
                reason: e.to_string(),
            })?;
            if mode == ServerTlsMode::VerifyCa {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verify::ChainOnly(webpki)))
            } else {
                builder.with_webpki_verifier(webpki)
            }
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::AnyCertificate(provider()))),
    };
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let certs = files::certificates("server_tls_cert_file", cert)?;
            let key_der = files::private_key("server_tls_key_file", key)?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| TlsError::file("server_tls_key_file", key, e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
