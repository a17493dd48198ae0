//! A new client connection up to its first ReadyForQuery: the opening packets (TLS on
//! request, cancel requests forwarded; see [`handshake`]), routing to a pool, password
//! check, a server connection for the session, and the startup parameters applied to it.
//! All of it within `client_login_timeout_ms`.

use super::handshake::{self, HandshakeError, Opened};
use super::session::Session;
use super::users;
use super::{ClientError, Frontend};
use crate::auth::exchange::{self, ExchangeError};
use crate::backend::{Pool, PoolError, PooledServer, UserAuth};
use crate::config::{AuthType, PoolMode};
use crate::frontend::cancel::CancelTarget;
use crate::frontend::clients::{ClientInfo, Registered};
use crate::net::Peer;
use crate::protocol::messages::{self, Severity};
use crate::protocol::{ProtocolError, TxStatus};
use crate::runtime::Runtime;
use crate::tls::Stream;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout_at, Instant};

/// Runs a client connection from accept to close.
pub async fn run(stream: Stream, peer: Peer, frontend: Arc<Frontend>) {
    let mut buf = BytesMut::with_capacity(8192);
    // One snapshot for the whole session: its pool, its mirror target, its certificate and
    // its settings come from the same generation of the configuration.
    let runtime = frontend.runtime.load();
    let limit = Duration::from_millis(runtime.config.general.client_login_timeout_ms);
    let deadline = Instant::now() + limit;
    // The handshake and the login are boxed: their state (TLS, the password exchange) is
    // let go once the session starts, instead of being reserved in this task for as long as
    // the client stays connected.
    let (mut stream, params) = match timeout_at(
        deadline,
        Box::pin(handshake::open(stream, &mut buf, &runtime.client_tls)),
    )
    .await
    {
        Ok(Ok(Opened::Startup { stream, params })) => (stream, params),
        Ok(Ok(Opened::Cancel(key))) => return frontend.cancel.cancel(key).await,
        Ok(Err(HandshakeError::Protocol(ProtocolError::Eof))) => return,
        Ok(Err(e)) => return tracing::info!(%peer, "client refused: {e}"),
        Err(_) => {
            return tracing::info!(%peer, "client refused: no startup within client_login_timeout_ms")
        }
    };
    let login = Login {
        frontend: &frontend,
        runtime: &runtime,
        peer,
    };
    let result = match timeout_at(
        deadline,
        Box::pin(login.run(&mut stream, &mut buf, &params)),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ClientError::Rejected {
            code: "08006".into(),
            message: format!(
                "login did not complete within client_login_timeout_ms ({} ms)",
                limit.as_millis()
            ),
        }),
    };
    match result {
        // The registration lasts as long as the session.
        Ok((session, _registered)) => session.run(stream, buf).await,
        Err(ClientError::Protocol(ProtocolError::Eof)) => {}
        Err(e) => {
            tracing::info!(%peer, "client refused: {e}");
            let mut out = BytesMut::new();
            messages::error_response(&mut out, Severity::Fatal, e.sqlstate(), &e.to_string());
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// One client's login, after its startup packet.
struct Login<'a> {
    frontend: &'a Arc<Frontend>,
    runtime: &'a Arc<Runtime>,
    peer: Peer,
}

impl Login<'_> {
    async fn run(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        params: &[(String, String)],
    ) -> Result<(Box<Session>, Registered), ClientError> {
        let (frontend, runtime) = (self.frontend, self.runtime);
        if frontend.shutdown.is_cancelled() {
            return Err(ClientError::Shutdown);
        }
        let slot = frontend
            .client_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ClientError::TooManyClients(runtime.config.general.max_client_conn))?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let user = param("user").ok_or_else(|| ClientError::Rejected {
            code: "28000".into(),
            message: "no PostgreSQL user name specified in startup packet".into(),
        })?;
        let database = param("database").unwrap_or(user);
        if param("replication").is_some_and(|v| v != "false" && v != "0") {
            return Err(ClientError::Rejected {
                code: "08P01".into(),
                message: "replication connections are not supported by the proxy".into(),
            });
        }
        let db = runtime
            .pools
            .route(database)
            .map_err(|e| ClientError::NoDatabase(e.to_string()))?;
        let pool = users::user_pool(&db, user, &runtime.config).await?;
        let binding = match stream {
            Stream::Tls(_) => runtime.client_tls.end_point(),
            Stream::Plain(_) | Stream::Unix(_) => None,
        };
        authenticate(
            stream,
            buf,
            runtime.config.general.auth_type,
            &pool,
            user,
            binding,
        )
        .await?;
        if pool.is_disabled() {
            return Err(ClientError::PoolDisabled(format!(
                "pool \"{}\" is disabled; try again later",
                pool.name()
            )));
        }

        let wanted = startup_params(params)?;
        let (server, server_params) = self.first_server(&pool, &wanted).await?;
        let target = server.as_ref().map(|s| CancelTarget {
            host: pool.addr().host.clone(),
            port: pool.addr().port,
            key: s.server_ref().key,
        });
        let key = frontend.cancel.register(target);
        let mut out = BytesMut::with_capacity(512);
        messages::auth_ok(&mut out);
        for (name, value) in &server_params {
            messages::parameter_status(&mut out, name, value);
        }
        messages::backend_key_data(&mut out, key);
        messages::ready_for_query(&mut out, TxStatus::Idle);
        if let Err(e) = stream.write_all(&out).await {
            frontend.cancel.unregister(key);
            if let Some(server) = server {
                server.release(None).await;
            }
            return Err(ProtocolError::Io(e).into());
        }
        tracing::debug!(pool = pool.name(), user, "client logged in");
        let pool_name = pool.name().to_string();
        let server_tls = server
            .as_ref()
            .and_then(|s| s.server_ref().stream.tls_version());
        let session = Session::new(frontend.clone(), runtime, pool, server, key, &wanted, slot);
        let registered = frontend.clients.register(ClientInfo {
            id: 0,
            peer: self.peer,
            user: user.to_string(),
            pool: pool_name,
            tls: stream.tls_version(),
            server_tls,
            connected_at: std::time::SystemTime::now(),
            tracker: session.tracker().clone(),
            stop: session.stop_token().clone(),
        });
        Ok((Box::new(session), registered))
    }

    /// The server connection the client starts with, and the parameters it is told. In
    /// session mode that is its connection for the session, with its startup parameters
    /// applied. In transaction mode it takes none when the pool already knows what its
    /// server reports (the client is told that, with its own values on top); else one, to
    /// learn it, which the session gives back at once.
    async fn first_server(
        &self,
        pool: &Pool,
        wanted: &[(String, String)],
    ) -> Result<(Option<PooledServer>, Vec<(String, String)>), ClientError> {
        let config = &self.runtime.config;
        let mode = config
            .pool(pool.name())
            .and_then(|p| p.pool_mode)
            .unwrap_or(config.general.pool_mode);
        let reported = match (mode, pool.server_params()) {
            (PoolMode::Transaction, Some(reported)) => reported.to_vec(),
            _ => {
                let mut server = pool.get().await.map_err(pool_error)?;
                if mode == PoolMode::Session {
                    apply_startup_params(&mut server, wanted).await?;
                    let params = server.server_ref().params.clone();
                    return Ok((Some(server), params));
                }
                let params = server.server_ref().params.clone();
                server.release(None).await;
                params
            }
        };
        let mut params = reported;
        for (name, value) in wanted {
            if let Some(slot) = params
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                slot.1 = value.clone();
            }
        }
        Ok((None, params))
    }
}

fn pool_error(e: PoolError) -> ClientError {
    match e {
        PoolError::Exhausted { .. } => ClientError::Exhausted(e.to_string()),
        PoolError::Disabled(_) => ClientError::PoolDisabled(e.to_string()),
        // The proxy's own limit, as a full pool is: come back later.
        PoolError::Backend { ref source, .. } if source.out_of_descriptors() => {
            ClientError::Exhausted(format!(
                "too many connections: pgdog is out of file descriptors ({e})"
            ))
        }
        PoolError::Backend { .. } => ClientError::ServerUnavailable(e.to_string()),
    }
}

/// Checks the client's password against the pool's. `binding` is the channel binding
/// data SCRAM-SHA-256-PLUS checks, on a TLS connection.
async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    auth_type: AuthType,
    pool: &Pool,
    user: &str,
    binding: Option<&[u8]>,
) -> Result<(), ClientError> {
    if user != pool.addr().user {
        return Err(ClientError::wrong_password(user));
    }
    if auth_type == AuthType::Trust {
        return Ok(());
    }
    let verified = match (auth_type, pool.auth()) {
        (_, UserAuth::None) => {
            return Err(ClientError::Auth(format!(
                "pool \"{}\" has no password configured for user \"{user}\", so {} authentication cannot succeed",
                pool.name(),
                auth_type.as_str()
            )))
        }
        (AuthType::Md5, UserAuth::Password(password)) => {
            exchange::md5(stream, buf, user, password).await
        }
        (AuthType::Md5, UserAuth::Verifier(_)) => {
            return Err(ClientError::Rejected {
                code: "28000".into(),
                message: format!(
                    "user \"{user}\" has a SCRAM verifier, which md5 authentication cannot check (auth_type = \"scram-sha-256\")"
                ),
            })
        }
        (_, _) => {
            let secret = pool.scram_secret().await.expect("a password or verifier");
            let keys = exchange::scram(stream, buf, secret, binding).await;
            if let Ok(Some(keys)) = &keys {
                pool.proved(*keys);
            }
            keys.map(|k| k.is_some())
        }
    }
    .map_err(|e| match e {
        ExchangeError::Protocol(e) => ClientError::Protocol(e),
        ExchangeError::Mechanism(_) => ClientError::Rejected {
            code: "28000".into(),
            message: e.to_string(),
        },
        ExchangeError::Scram(_) => ClientError::Rejected {
            code: "08P01".into(),
            message: e.to_string(),
        },
    })?;
    if !verified {
        return Err(ClientError::wrong_password(user));
    }
    Ok(())
}

/// Startup parameters the server connection got from the proxy, not from the client.
const NOT_SETTABLE: &[&str] = &["user", "database", "replication", "options"];

/// The startup parameters to set on the client's server connections
/// (`application_name`, `client_encoding`, `DateStyle`, `options -c ...`).
fn startup_params(params: &[(String, String)]) -> Result<Vec<(String, String)>, ClientError> {
    let mut wanted: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !NOT_SETTABLE.contains(&k.as_str()))
        .cloned()
        .collect();
    if let Some((_, options)) = params.iter().find(|(k, _)| k == "options") {
        wanted.extend(parse_options(options)?);
    }
    for (name, _) in &wanted {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(ClientError::Rejected {
                code: "42704".into(),
                message: format!("unrecognized configuration parameter \"{name}\""),
            });
        }
    }
    Ok(wanted)
}

/// Runs `SET` on the server for the startup parameters that differ from what it reports.
async fn apply_startup_params(
    server: &mut PooledServer,
    wanted: &[(String, String)],
) -> Result<(), ClientError> {
    let mut sql = String::new();
    for (name, value) in wanted {
        if server.server().param(name) == Some(value.as_str()) {
            continue;
        }
        sql.push_str(&format!(
            "SET \"{name}\" TO '{}';",
            value.replace('\'', "''")
        ));
    }
    if sql.is_empty() {
        return Ok(());
    }
    server.server().execute(&sql).await.map_err(|e| match e {
        crate::backend::BackendError::Server(fields) => ClientError::Rejected {
            code: fields.code,
            message: fields.message,
        },
        other => ClientError::ServerUnavailable(other.to_string()),
    })
}

/// `-c name=value` and `--name=value` pairs of the `options` startup parameter.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, ClientError> {
    let mut out = Vec::new();
    let mut words = options.split_ascii_whitespace();
    while let Some(word) = words.next() {
        let pair = if word == "-c" {
            words.next()
        } else {
            word.strip_prefix("-c").or_else(|| word.strip_prefix("--"))
        };
        match pair.and_then(|p| p.split_once('=')) {
            Some((k, v)) => out.push((k.replace('-', "_"), v.to_string())),
            None => {
                return Err(ClientError::Rejected {
                    code: "08P01".into(),
                    message: format!("unsupported startup option \"{word}\" (only -c name=value)"),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_options;

    #[test]
    fn options_pairs() {
        let pairs =
            parse_options("-c search_path=a -cstatement_timeout=5 --work-mem=64kB").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("search_path".into(), "a".into()),
                ("statement_timeout".into(), "5".into()),
                ("work_mem".into(), "64kB".into())
            ]
        );
        assert!(parse_options("-x").is_err());
    }
}
