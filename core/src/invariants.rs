//! What the parsers of untrusted bytes promise, whatever bytes they get: never to panic,
//! and the properties below. One home for them, checked by the nightly fuzz targets
//! (`core/fuzz`, `cargo +nightly fuzz run <target>`) and, in every CI run on stable, by the
//! seeded mutation loop in `core/tests/fuzz.rs` with its corpus of past crashers.
//!
//! Each check panics (an assertion) when a promise is broken.

use crate::admin::parse::{parse, statements as admin_statements};
use crate::compare::fingerprint::{fingerprint, MAX_TEXT};
use crate::protocol::backend::{error_fields, parameter_status, ready_status, sqlstate};
use crate::protocol::frame::{complete_len, frame_len, Frames};
use crate::protocol::startup::{self, Startup};
use crate::protocol::tag::server;
use crate::sql::{
    classify, copy_from_stdin, deallocation, statements, tokens, Class, Deallocation,
};

/// Largest message the checks let the frame walker accept.
const MAX_MESSAGE: usize = 1 << 20;

/// The first packet of a client connection (`startup::parse`): an accepted startup
/// packet carries what it said, and encodes back to the same parameters.
pub fn startup(data: &[u8]) {
    match startup::parse(data) {
        Ok(Startup::Startup { params }) => {
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let again = startup::parse(&startup::encode(&pairs)).expect("re-encoded startup");
            assert_eq!(again, Startup::Startup { params });
        }
        Ok(Startup::Cancel(key)) => {
            assert_eq!(startup::encode_cancel(key).as_slice(), data);
        }
        Ok(Startup::Ssl | Startup::GssEnc) => assert_eq!(data.len(), 8),
        Err(_) => {}
    }
}

/// The frame walker (`complete_len`, `frame_len`, `Frames`): the whole messages it finds
/// cover exactly the prefix it reports, each one's own length; and the server message
/// readers the proxy applies to them (error fields, SQLSTATE, ReadyForQuery status,
/// ParameterStatus) take any message.
pub fn frames(data: &[u8]) {
    let Ok(len) = complete_len(data, MAX_MESSAGE) else {
        return;
    };
    assert!(len <= data.len());
    let mut total = 0;
    for (tag, msg) in Frames::new(&data[..len]) {
        assert_eq!(frame_len(msg, MAX_MESSAGE).unwrap(), Some(msg.len()));
        assert_eq!(tag, msg[0]);
        total += msg.len();
        match tag {
            server::ERROR_RESPONSE | server::NOTICE_RESPONSE => {
                let _ = error_fields(msg);
                let _ = sqlstate(msg);
            }
            server::READY_FOR_QUERY => {
                let _ = ready_status(msg);
            }
            server::PARAMETER_STATUS => {
                let _ = parameter_status(msg);
            }
            _ => {}
        }
    }
    assert_eq!(total, len);
    // Whatever follows the whole messages is an incomplete one.
    assert_eq!(frame_len(&data[len..], MAX_MESSAGE).unwrap(), None);
}

/// The admin console's parser, on whatever a console client types: parsing is stable,
/// and error messages quote a bounded part of the input.
pub fn admin(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for statement in admin_statements(text) {
        assert!(!statement.trim().is_empty());
        let first = parse(statement);
        assert_eq!(first, parse(statement));
        if let Err(e) = first {
            assert!(e.to_string().len() < 2048);
        }
    }
    let _ = parse(text);
}

/// The statement fingerprint: bounded text, the same for the same input.
pub fn fingerprint_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let a = fingerprint(&text);
    assert!(a.text.len() <= MAX_TEXT);
    assert_eq!(a, fingerprint(&text));
}

/// The SQL lexer and what is built on it: tokens cover the text end to end, statements
/// are non-empty sub-slices of it in order, a text's class is the strongest of its
/// statements', and COPY and DEALLOCATE detection take any text.
pub fn sql(data: &[u8]) {
    let mut at = 0;
    for t in tokens(data) {
        assert_eq!(t.start, at);
        assert!(!t.text.is_empty());
        at = t.end();
    }
    assert_eq!(at, data.len());

    let base = data.as_ptr() as usize;
    let mut at = 0;
    for s in statements(data) {
        let start = s.as_ptr() as usize - base;
        assert!(start >= at && start + s.len() <= data.len());
        assert!(!s.is_empty());
        at = start + s.len();
    }

    let each = statements(data).map(classify).max().unwrap_or(Class::Read);
    assert_eq!(classify(data), each);
    let _ = copy_from_stdin(data);
    if let Some(Deallocation::One(name)) = deallocation(data) {
        assert!(!name.is_empty());
    }
}
