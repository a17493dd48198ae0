//! The SQL lexer and everything built on it read whatever clients send as query text: they
//! must never panic, the tokens must cover the text end to end, statements must be
//! sub-slices of the text in order, and a fingerprint must be bounded and stable. (The
//! same invariants run for a bounded number of cases in `core/src/sql/proptests.rs`.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgdog::compare::fingerprint::{fingerprint, MAX_TEXT};
use pgdog::sql::{
    classify, copy_from_stdin, deallocation, statements, tokens, Class, Deallocation,
};

fuzz_target!(|data: &[u8]| {
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

    let text = String::from_utf8_lossy(data);
    let a = fingerprint(&text);
    assert!(a.text.len() <= MAX_TEXT);
    assert_eq!(a, fingerprint(&text));
});
