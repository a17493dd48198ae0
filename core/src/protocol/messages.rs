//! Messages the proxy writes itself (to clients during login and from the admin console,
//! and to servers for resets). Forwarded traffic never goes through here.

use super::tag::{client, server};
use super::{BackendKey, TxStatus};
use bytes::{BufMut, BytesMut};

/// Appends a message: tag, length placeholder, body from `f`, then patches the length.
pub fn put(buf: &mut BytesMut, tag: u8, f: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    f(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

pub fn auth_ok(buf: &mut BytesMut) {
    put(buf, server::AUTHENTICATION, |b| b.put_i32(0));
}

pub fn auth_cleartext(buf: &mut BytesMut) {
    put(buf, server::AUTHENTICATION, |b| b.put_i32(3));
}

pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put(buf, server::AUTHENTICATION, |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    put(buf, server::AUTHENTICATION, |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m);
        }
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put(buf, server::AUTHENTICATION, |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put(buf, server::AUTHENTICATION, |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(buf, server::PARAMETER_STATUS, |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub fn backend_key_data(buf: &mut BytesMut, key: BackendKey) {
    put(buf, server::BACKEND_KEY_DATA, |b| {
        b.put_i32(key.pid);
        b.put_i32(key.secret);
    });
}

pub fn ready_for_query(buf: &mut BytesMut, status: TxStatus) {
    put(buf, server::READY_FOR_QUERY, |b| b.put_u8(status.as_byte()));
}

/// Severity of an ErrorResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

/// An ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(buf: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    let sev = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    put(buf, server::ERROR_RESPONSE, |b| {
        b.put_u8(b'S');
        put_cstr(b, sev);
        b.put_u8(b'V');
        put_cstr(b, sev);
        b.put_u8(b'C');
        put_cstr(b, code);
        b.put_u8(b'M');
        put_cstr(b, message);
        b.put_u8(0);
    });
}

pub fn notice(buf: &mut BytesMut, code: &str, message: &str) {
    put(buf, server::NOTICE_RESPONSE, |b| {
        for (field, value) in [
            (b'S', "WARNING"),
            (b'V', "WARNING"),
            (b'C', code),
            (b'M', message),
        ] {
            b.put_u8(field);
            put_cstr(b, value);
        }
        b.put_u8(0);
    });
}

/// A simple Query.
pub fn query(buf: &mut BytesMut, sql: &str) {
    put(buf, client::QUERY, |b| put_cstr(b, sql));
}

/// A Parse of statement `name` (no parameter types given).
pub fn parse(buf: &mut BytesMut, name: &str, sql: &str) {
    put(buf, client::PARSE, |b| {
        put_cstr(b, name);
        put_cstr(b, sql);
        b.put_i16(0);
    });
}

/// A Bind of the unnamed statement to the unnamed portal, `params` as text, results as
/// text.
pub fn bind_text(buf: &mut BytesMut, params: &[&str]) {
    put(buf, client::BIND, |b| {
        b.put_u8(0); // portal
        b.put_u8(0); // statement
        b.put_i16(0); // parameter formats: all text
        b.put_i16(params.len() as i16);
        for p in params {
            b.put_i32(p.len() as i32);
            b.put_slice(p.as_bytes());
        }
        b.put_i16(0); // result formats: all text
    });
}

/// An Execute of the unnamed portal, every row.
pub fn execute(buf: &mut BytesMut) {
    put(buf, client::EXECUTE, |b| {
        b.put_u8(0);
        b.put_i32(0);
    });
}

pub fn copy_fail(buf: &mut BytesMut, reason: &str) {
    put(buf, client::COPY_FAIL, |b| put_cstr(b, reason));
}

pub fn sync(buf: &mut BytesMut) {
    put(buf, client::SYNC, |_| {});
}

pub fn password(buf: &mut BytesMut, password: &str) {
    put(buf, client::PASSWORD, |b| put_cstr(b, password));
}

pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    put(buf, client::PASSWORD, |b| {
        put_cstr(b, mechanism);
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    });
}

pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    put(buf, client::PASSWORD, |b| b.put_slice(data));
}

pub fn terminate(buf: &mut BytesMut) {
    put(buf, client::TERMINATE, |_| {});
}

/// A text-format column of a RowDescription.
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    put(buf, server::ROW_DESCRIPTION, |b| {
        b.put_i16(columns.len() as i16);
        for name in columns {
            put_cstr(b, name);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_i32(25); // text
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0); // text format
        }
    });
}

/// A DataRow of text values (`None` is NULL).
pub fn data_row<S: AsRef<str>>(buf: &mut BytesMut, values: &[Option<S>]) {
    put(buf, server::DATA_ROW, |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(v) => {
                    b.put_i32(v.as_ref().len() as i32);
                    b.put_slice(v.as_ref().as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put(buf, server::COMMAND_COMPLETE, |b| put_cstr(b, tag));
}

pub fn empty_query_response(buf: &mut BytesMut) {
    put(buf, server::EMPTY_QUERY_RESPONSE, |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{frame_len, Frames};

    #[test]
    fn lengths_are_patched() {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Fatal, "28P01", "nope");
        ready_for_query(&mut buf, TxStatus::Idle);
        let first = frame_len(&buf, 1024).unwrap().unwrap();
        assert_eq!(buf[0], b'E');
        assert_eq!(&buf[first..], &[b'Z', 0, 0, 0, 5, b'I']);
        assert_eq!(Frames::new(&buf).count(), 2);
    }
}
