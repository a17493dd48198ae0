//! Admin console login: startup packet, who may connect, password check.
//!
//! The rule: with `[general] admin_password` set, anyone who can reach the port must give
//! `admin_user` and that password (SCRAM-SHA-256, or MD5 when `auth_type = "md5"`; a
//! `trust` auth_type does not make the console passwordless, SCRAM is used then). Without
//! a password, only loopback peers are accepted, without a password (start-up logs a
//! warning saying so).

use super::AdminError;
use crate::auth::exchange::{self, ExchangeError};
use crate::auth::scram::ScramSecret;
use crate::config::{AuthType, General};
use crate::protocol::messages;
use crate::protocol::ProtocolError;
use bytes::BytesMut;
use std::net::IpAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Databases a client may name to reach the console.
pub const DATABASES: [&str; 2] = ["pgdog", "admin"];

/// How a peer may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A password is configured: ask for it.
    Password,
    /// No password configured and the peer is on this host.
    Loopback,
    /// No password configured and the peer is remote.
    Refused,
}

/// The rule of the module docs, as a function of the peer and the config.
pub fn admission(peer: IpAddr, password_set: bool) -> Admission {
    if password_set {
        Admission::Password
    } else if peer.to_canonical().is_loopback() {
        Admission::Loopback
    } else {
        Admission::Refused
    }
}

/// What login checks against, prepared once (the SCRAM secret costs a PBKDF2 run).
pub struct Credentials {
    pub user: String,
    password: Option<String>,
    method: Method,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Scram,
    Md5,
}

impl Credentials {
    pub fn new(general: &General) -> (Credentials, Option<ScramSecret>) {
        let method = match general.auth_type {
            AuthType::Md5 => Method::Md5,
            AuthType::ScramSha256 | AuthType::Trust => Method::Scram,
        };
        let secret = general.admin_password.as_deref().map(ScramSecret::new);
        (
            Credentials {
                user: general.admin_user.clone(),
                password: general.admin_password.clone(),
                method,
            },
            secret,
        )
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }
}

/// Authenticates a console client that sent startup `params`. `end_point` is the
/// channel binding data of a TLS connection. On success AuthenticationOk, the parameters
/// and ReadyForQuery have been written.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    peer: IpAddr,
    params: &[(String, String)],
    creds: &Credentials,
    secret: Option<&ScramSecret>,
    end_point: Option<&[u8]>,
) -> Result<String, AdminError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let user = param("user")
        .ok_or_else(|| AdminError::Refused("no user name specified in startup packet".into()))?;
    let database = param("database").unwrap_or(user);
    if !DATABASES.contains(&database) {
        return Err(AdminError::NoDatabase(database.to_string()));
    }
    let failed = || {
        AdminError::Auth(format!(
            "password authentication failed for user \"{user}\""
        ))
    };
    match admission(peer, creds.has_password()) {
        Admission::Refused => {
            return Err(AdminError::Refused(format!(
                "the admin console has no password ([general] admin_password), so it accepts \
                 only connections from this host; {peer} is not loopback"
            )))
        }
        Admission::Loopback => {
            if user != creds.user {
                return Err(AdminError::Auth(format!(
                    "user \"{user}\" is not the admin user (\"{}\")",
                    creds.user
                )));
            }
        }
        Admission::Password => {
            let password = creds.password.as_deref().expect("admission checked it");
            let ok = match creds.method {
                Method::Md5 => exchange::md5(stream, buf, user, password).await,
                Method::Scram => {
                    let secret = secret.expect("a secret exists when a password does");
                    exchange::scram(stream, buf, secret, end_point)
                        .await
                        .map(|keys| keys.is_some())
                }
            }
            .map_err(|e| match e {
                ExchangeError::Protocol(e) => AdminError::Protocol(e),
                other => AdminError::Refused(other.to_string()),
            })?;
            if !ok || user != creds.user {
                return Err(failed());
            }
        }
    }
    let mut out = BytesMut::with_capacity(256);
    messages::auth_ok(&mut out);
    for (name, value) in [
        ("server_version", "15.0 (pgdog admin)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", param("application_name").unwrap_or("")),
    ] {
        messages::parameter_status(&mut out, name, value);
    }
    let key = crate::protocol::BackendKey {
        pid: rand::random(),
        secret: rand::random(),
    };
    messages::backend_key_data(&mut out, key);
    messages::ready_for_query(&mut out, crate::protocol::TxStatus::Idle);
    write(stream, &out).await?;
    Ok(user.to_string())
}

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), AdminError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| AdminError::Protocol(ProtocolError::Io(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::NoTls;

    #[test]
    fn loopback_only_without_password() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let local6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        let remote6: IpAddr = "2001:db8::1".parse().unwrap();
        for ip in [local, local6, mapped] {
            assert_eq!(admission(ip, false), Admission::Loopback, "{ip}");
            assert_eq!(admission(ip, true), Admission::Password, "{ip}");
        }
        for ip in [remote, remote6] {
            assert_eq!(admission(ip, false), Admission::Refused, "{ip}");
            assert_eq!(admission(ip, true), Admission::Password, "{ip}");
        }
    }

    /// Drives a login over an in-memory pipe with tokio-postgres's client side.
    async fn try_login(general: General, peer: &str, password: &str) -> Result<(), String> {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let (creds, secret) = Credentials::new(&general);
        let peer: IpAddr = peer.parse().unwrap();
        let server = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let params = match crate::protocol::startup::read(&mut server, &mut buf).await {
                Ok(crate::protocol::startup::Startup::Startup { params }) => params,
                other => return Err(format!("no startup packet: {other:?}")),
            };
            login(
                &mut server,
                &mut buf,
                peer,
                &params,
                &creds,
                secret.as_ref(),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        });
        let mut config = tokio_postgres_config(password);
        config.user("admin");
        let client_side = config.connect_raw(client, NoTls).await;
        let server_side = server.await.unwrap();
        server_side?;
        client_side.map(|_| ()).map_err(|e| e.to_string())
    }

    fn tokio_postgres_config(password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.dbname("pgdog").password(password);
        config
    }

    #[tokio::test]
    async fn password_checked_when_set() {
        let mut general = General {
            admin_password: Some("s3cret".into()),
            ..General::default()
        };
        try_login(general.clone(), "10.0.0.1", "s3cret")
            .await
            .unwrap();
        let err = try_login(general.clone(), "127.0.0.1", "wrong")
            .await
            .unwrap_err();
        assert!(err.contains("password authentication failed"), "{err}");
        general.auth_type = AuthType::Md5;
        try_login(general.clone(), "10.0.0.1", "s3cret")
            .await
            .unwrap();
        assert!(try_login(general, "10.0.0.1", "nope").await.is_err());
    }

    #[tokio::test]
    async fn no_password_means_loopback_only() {
        let general = General::default();
        try_login(general.clone(), "127.0.0.1", "").await.unwrap();
        let err = try_login(general, "192.168.1.5", "").await.unwrap_err();
        assert!(err.contains("loopback"), "{err}");
    }
}
