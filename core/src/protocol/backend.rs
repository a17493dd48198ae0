//! Reading fields of the server messages the proxy looks into.

use super::frame::{body, Reader};
use super::{BackendKey, ProtocolError, TxStatus};

/// Fields of an ErrorResponse / NoticeResponse the proxy uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.severity, self.message, self.code)
    }
}

/// Parses an ErrorResponse or NoticeResponse (whole message).
pub fn error_fields(msg: &[u8]) -> Result<ErrorFields, ProtocolError> {
    let mut r = Reader::new(body(msg), "ErrorResponse");
    let mut out = ErrorFields::default();
    loop {
        let field = r.bytes(1)?[0];
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        match field {
            b'S' => out.severity = value.to_string(),
            b'C' => out.code = value.to_string(),
            b'M' => out.message = value.to_string(),
            _ => {}
        }
    }
    Ok(out)
}

/// SQLSTATE of a statement stopped by a CancelRequest (or `statement_timeout`).
pub const QUERY_CANCELED: [u8; 5] = *b"57014";

/// SQLSTATE of an ErrorResponse without allocating (5 ASCII bytes).
pub fn sqlstate(msg: &[u8]) -> Option<[u8; 5]> {
    let mut r = Reader::new(body(msg), "ErrorResponse");
    loop {
        let field = r.bytes(1).ok()?[0];
        if field == 0 {
            return None;
        }
        let value = r.cstr().ok()?;
        if field == b'C' {
            return value.as_bytes().try_into().ok();
        }
    }
}

/// Transaction status of a ReadyForQuery (whole message).
#[inline]
pub fn ready_status(msg: &[u8]) -> TxStatus {
    msg.get(5)
        .map_or(TxStatus::Idle, |&b| TxStatus::from_byte(b))
}

/// `(name, value)` of a ParameterStatus.
pub fn parameter_status(msg: &[u8]) -> Result<(String, String), ProtocolError> {
    let mut r = Reader::new(body(msg), "ParameterStatus");
    Ok((r.cstr()?.to_string(), r.cstr()?.to_string()))
}

/// The columns of a DataRow as text (`None` for NULL; invalid UTF-8 replaced).
pub fn data_row(msg: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = Reader::new(body(msg), "DataRow");
    let n = r.i16()?;
    (0..n.max(0))
        .map(|_| {
            let len = r.i32()?;
            if len < 0 {
                return Ok(None);
            }
            Ok(Some(
                String::from_utf8_lossy(r.bytes(len as usize)?).into_owned(),
            ))
        })
        .collect()
}

/// The key of a BackendKeyData.
pub fn backend_key(msg: &[u8]) -> Result<BackendKey, ProtocolError> {
    let mut r = Reader::new(body(msg), "BackendKeyData");
    Ok(BackendKey {
        pid: r.i32()?,
        secret: r.i32()?,
    })
}
