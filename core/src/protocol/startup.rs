//! The untagged first packet a client sends: `length | code | payload`.

use super::frame::Reader;
use super::{BackendKey, ProtocolError};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest startup packet accepted (PostgreSQL uses the same limit).
pub const MAX_STARTUP_LEN: usize = 10_000;

const PROTOCOL_3_0: i32 = 196_608;
const CANCEL_REQUEST: i32 = 80_877_102;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Protocol 3.x startup with its parameters (`user`, `database`, ...), in order.
    Startup {
        params: Vec<(String, String)>,
    },
    Ssl,
    GssEnc,
    /// A CancelRequest for the backend with this key.
    Cancel(BackendKey),
}

impl Startup {
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Startup { params } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Parses a whole startup packet (length prefix included).
pub fn parse(packet: &[u8]) -> Result<Startup, ProtocolError> {
    let mut r = Reader::new(packet, "startup");
    let len = r.i32()?;
    if len as usize != packet.len() {
        return Err(ProtocolError::BadLength(len));
    }
    let code = r.i32()?;
    match code {
        SSL_REQUEST if r.is_empty() => Ok(Startup::Ssl),
        GSSENC_REQUEST if r.is_empty() => Ok(Startup::GssEnc),
        CANCEL_REQUEST => {
            let pid = r.i32()?;
            let secret = r.i32()?;
            if !r.is_empty() {
                // PostgreSQL 15 refuses a cancel request of any other length too.
                return Err(ProtocolError::malformed("cancel request", "trailing bytes"));
            }
            Ok(Startup::Cancel(BackendKey { pid, secret }))
        }
        SSL_REQUEST | GSSENC_REQUEST => Err(ProtocolError::malformed("startup", "trailing bytes")),
        _ if code >> 16 == 3 => {
            if code != PROTOCOL_3_0 {
                // Minor versions above 0 would need NegotiateProtocolVersion; PostgreSQL 15
                // clients only send 3.0.
                return Err(ProtocolError::UnsupportedVersion {
                    major: 3,
                    minor: (code & 0xffff) as u16,
                });
            }
            let mut params = Vec::new();
            loop {
                let key = r.cstr()?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((key.to_string(), value.to_string()));
            }
            if !r.is_empty() {
                return Err(ProtocolError::malformed(
                    "startup",
                    "bytes after the parameter list",
                ));
            }
            Ok(Startup::Startup { params })
        }
        _ => Err(ProtocolError::UnsupportedVersion {
            major: (code >> 16) as u16,
            minor: (code & 0xffff) as u16,
        }),
    }
}

/// Reads one startup packet from a fresh connection.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Startup, ProtocolError> {
    while buf.len() < 4 {
        if stream.read_buf(buf).await? == 0 {
            return Err(ProtocolError::Eof);
        }
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(ProtocolError::BadLength(len));
    }
    while buf.len() < len as usize {
        if stream.read_buf(buf).await? == 0 {
            return Err(ProtocolError::Eof);
        }
    }
    let packet = buf.split_to(len as usize);
    parse(&packet)
}

/// Encodes a startup packet (used when the proxy connects to servers).
pub fn encode(params: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out.push(0);
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Encodes an SSLRequest.
pub fn encode_ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8i32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    out
}

/// Encodes a CancelRequest.
pub fn encode_cancel(key: BackendKey) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&key.pid.to_be_bytes());
    out[12..].copy_from_slice(&key.secret.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_startup() {
        let packet = encode(&[("user", "pgdog"), ("database", "db")]);
        let s = parse(&packet).unwrap();
        assert_eq!(s.param("user"), Some("pgdog"));
        assert_eq!(s.param("database"), Some("db"));
    }

    #[test]
    fn cancel_and_ssl() {
        assert_eq!(
            parse(&encode_cancel(BackendKey { pid: 7, secret: 9 })).unwrap(),
            Startup::Cancel(BackendKey { pid: 7, secret: 9 })
        );
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        assert_eq!(parse(&ssl).unwrap(), Startup::Ssl);
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut p = encode(&[("user", "x")]);
        p.pop(); // lose the final terminator
        let len = p.len() as i32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        assert!(parse(&p).is_err());
        let mut v2 = 8i32.to_be_bytes().to_vec();
        v2.extend_from_slice(&(2i32 << 16).to_be_bytes());
        assert!(matches!(
            parse(&v2),
            Err(ProtocolError::UnsupportedVersion { major: 2, .. })
        ));
    }
}
