//! The password exchanges with a connecting client (MD5 challenge, SCRAM-SHA-256), shared
//! by the proxy's login and the admin console's. Each returns whether the client proved it
//! knows the password; what a failure means to the client is the caller's business.

use super::scram::{self, ScramKeys, ScramSecret};
use super::{md5, AuthError};
use crate::protocol::frame::{body, read_message, Reader};
use crate::protocol::tag::client;
use crate::protocol::{messages, ProtocolError};
use bytes::BytesMut;
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Longest authentication message accepted from a client.
const MAX_AUTH_MESSAGE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("SASL authentication mechanism \"{0}\" is not supported")]
    Mechanism(String),
    /// The client's first SCRAM message was malformed or asked for channel binding.
    #[error("{0}")]
    Scram(AuthError),
}

/// MD5: sends a salt, checks the answer.
pub async fn md5<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    user: &str,
    password: &str,
) -> Result<bool, ExchangeError> {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    let mut out = BytesMut::new();
    messages::auth_md5(&mut out, salt);
    write(stream, &out).await?;
    let msg = read_password(stream, buf).await?;
    let answer = Reader::new(body(&msg), "PasswordMessage").cstr()?;
    Ok(md5::verify(user, password, salt, answer))
}

/// SCRAM-SHA-256 against `secret`; on success the server signature has been sent and the
/// keys the client proved are returned (`None`: wrong password). With `end_point` (the
/// connection is TLS), `SCRAM-SHA-256-PLUS` is offered first, binding the exchange to the
/// connection's certificate.
pub async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    secret: &ScramSecret,
    end_point: Option<&[u8]>,
) -> Result<Option<ScramKeys>, ExchangeError> {
    let mut out = BytesMut::new();
    match end_point {
        Some(_) => messages::auth_sasl(&mut out, &[scram::MECHANISM_PLUS, scram::MECHANISM]),
        None => messages::auth_sasl(&mut out, &[scram::MECHANISM]),
    }
    write(stream, &out).await?;
    let msg = read_password(stream, buf).await?;
    let mut r = Reader::new(body(&msg), "SASLInitialResponse");
    let mechanism = r.cstr()?;
    let plus = match mechanism {
        scram::MECHANISM => false,
        scram::MECHANISM_PLUS if end_point.is_some() => true,
        _ => return Err(ExchangeError::Mechanism(mechanism.to_string())),
    };
    let len = r.i32()?;
    let data = r.bytes(len.max(0) as usize)?;
    let offer = scram::Offer { end_point, plus };
    let (exchange, server_first) =
        scram::ScramExchange::start_with(secret, data, offer).map_err(ExchangeError::Scram)?;
    out.clear();
    messages::auth_sasl_continue(&mut out, server_first.as_bytes());
    write(stream, &out).await?;
    let msg = read_password(stream, buf).await?;
    let Ok((server_final, keys)) = exchange.finish_with_keys(body(&msg)) else {
        return Ok(None);
    };
    out.clear();
    messages::auth_sasl_final(&mut out, server_final.as_bytes());
    write(stream, &out).await?;
    Ok(Some(keys))
}

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> Result<(), ProtocolError> {
    stream.write_all(out).await.map_err(ProtocolError::Io)
}

/// Reads the client's next message, which must be a password message (`p`).
pub async fn read_password<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<BytesMut, ProtocolError> {
    let msg = read_message(stream, buf, MAX_AUTH_MESSAGE).await?;
    if msg[0] != client::PASSWORD {
        return Err(ProtocolError::Unexpected {
            tag: msg[0],
            context: "expected a password message",
        });
    }
    Ok(msg)
}
