//! One console connection: login, then simple queries until Terminate or shutdown.

use super::{auth, commands, parse, AdminError, Console};
use crate::frontend::handshake::{self, HandshakeError, Opened};
use crate::net::Peer;
use crate::protocol::frame::{body, read_message, Reader};
use crate::protocol::messages::{self, Severity};
use crate::protocol::tag::client;
use crate::protocol::{ProtocolError, TxStatus};
use crate::proxy::Proxy;
use crate::tls::Stream;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest message accepted from a console client (admin statements are short).
const MAX_MESSAGE: usize = 1024 * 1024;

pub(super) async fn run(stream: Stream, peer: Peer, proxy: Arc<Proxy>, console: Arc<Console>) {
    let mut buf = BytesMut::with_capacity(4096);
    let Some(mut stream) = login(stream, &mut buf, peer, &proxy, &console).await else {
        return;
    };
    // After an extended-protocol error, messages are skipped up to Sync, as PostgreSQL does.
    let mut skipping = false;
    loop {
        let read = tokio::select! {
            _ = proxy.shutdown.cancelled() => {
                let mut out = BytesMut::new();
                messages::error_response(&mut out, Severity::Fatal, "57P01", "the proxy is shutting down");
                let _ = stream.write_all(&out).await;
                break;
            }
            read = read_message(&mut stream, &mut buf, MAX_MESSAGE) => read,
        };
        let msg = match read {
            Ok(msg) => msg,
            Err(ProtocolError::Eof) | Err(ProtocolError::Io(_)) => break,
            Err(e) => {
                fatal(&mut stream, &AdminError::Protocol(e)).await;
                break;
            }
        };
        let mut out = BytesMut::new();
        match msg[0] {
            client::QUERY => {
                skipping = false;
                match Reader::new(body(&msg), "Query").cstr() {
                    Ok(sql) => run_query(&proxy, sql, peer, &mut out).await,
                    Err(e) => error(&mut out, &AdminError::Protocol(e)),
                }
                messages::ready_for_query(&mut out, TxStatus::Idle);
            }
            client::TERMINATE => break,
            client::SYNC => {
                skipping = false;
                messages::ready_for_query(&mut out, TxStatus::Idle);
            }
            client::FLUSH => {}
            tag @ (client::PARSE
            | client::BIND
            | client::DESCRIBE
            | client::EXECUTE
            | client::CLOSE) => {
                if !skipping {
                    skipping = true;
                    error(&mut out, &AdminError::Extended(tag));
                }
            }
            client::FUNCTION_CALL => {
                error(&mut out, &AdminError::Extended(client::FUNCTION_CALL));
                messages::ready_for_query(&mut out, TxStatus::Idle);
            }
            // Stray COPY messages outside COPY are ignored, as PostgreSQL does.
            client::COPY_DATA | client::COPY_DONE | client::COPY_FAIL => {}
            tag => {
                let e = AdminError::Protocol(ProtocolError::Unexpected {
                    tag,
                    context: "not a frontend message",
                });
                fatal(&mut stream, &e).await;
                break;
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = stream.shutdown().await;
}

/// The console's login: the opening packets (TLS on request), then the password. `None`
/// when the client left, or was refused (and told why when it could be).
async fn login(
    stream: Stream,
    buf: &mut BytesMut,
    peer: Peer,
    proxy: &Proxy,
    console: &Console,
) -> Option<Stream> {
    let runtime = proxy.runtime();
    let general = &runtime.config.general;
    let secrets = console.credentials(general);
    let limit = Duration::from_millis(general.client_login_timeout_ms);
    let opened = tokio::select! {
        _ = proxy.shutdown.cancelled() => return None,
        opened = tokio::time::timeout(limit, handshake::open(stream, buf, &runtime.client_tls)) => opened,
    };
    let (mut stream, params) = match opened {
        Ok(Ok(Opened::Startup { stream, params })) => (stream, params),
        // Nothing on the console runs long enough to be worth cancelling.
        Ok(Ok(Opened::Cancel(_))) => return None,
        Ok(Err(HandshakeError::Protocol(ProtocolError::Eof))) => return None,
        Ok(Err(e)) => {
            tracing::info!(%peer, "admin login refused: {e}");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "admin login refused: no startup within client_login_timeout_ms");
            return None;
        }
    };
    let end_point = match stream {
        Stream::Tls(_) => runtime.client_tls.end_point(),
        Stream::Plain(_) | Stream::Unix(_) => None,
    };
    let login = auth::login(
        &mut stream,
        buf,
        peer.ip(),
        &params,
        &secrets.creds,
        secrets.scram.as_ref(),
        end_point,
    );
    let login = tokio::select! {
        _ = proxy.shutdown.cancelled() => return None,
        login = tokio::time::timeout(limit, login) => login.unwrap_or(Err(AdminError::Refused(
            "login did not complete within client_login_timeout_ms".into(),
        ))),
    };
    match login {
        Ok(user) => {
            tracing::debug!(%peer, user, "admin logged in");
            Some(stream)
        }
        Err(AdminError::Protocol(ProtocolError::Eof)) => None,
        Err(e) => {
            tracing::info!(%peer, "admin login refused: {e}");
            let mut out = BytesMut::new();
            messages::error_response(&mut out, Severity::Fatal, e.sqlstate(), &e.to_string());
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// Runs each statement of a simple Query; the first failure ends the query.
async fn run_query(proxy: &Arc<Proxy>, sql: &str, peer: Peer, out: &mut BytesMut) {
    let statements = parse::statements(sql);
    if statements.is_empty() {
        messages::empty_query_response(out);
        return;
    }
    for statement in statements {
        let result = match parse::parse(statement) {
            Ok(command) => {
                if command.changes_state() {
                    tracing::info!(%peer, "admin: {}", statement.trim());
                }
                commands::execute(proxy, command).await
            }
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(output) => output.encode(out),
            Err(e) => {
                error(out, &e);
                return;
            }
        }
    }
}

fn error(out: &mut BytesMut, e: &AdminError) {
    messages::error_response(out, Severity::Error, e.sqlstate(), &e.to_string());
}

async fn fatal(stream: &mut Stream, e: &AdminError) {
    let mut out = BytesMut::new();
    messages::error_response(&mut out, Severity::Fatal, e.sqlstate(), &e.to_string());
    let _ = stream.write_all(&out).await;
}
