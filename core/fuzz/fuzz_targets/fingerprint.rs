//! The statement normaliser reads whatever SQL clients send (and, through the mirror worker,
//! the Parse/Bind messages that name statements): it must never panic, must keep its display
//! text bounded, and must give the same fingerprint for the same text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgdog::compare::fingerprint;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let a = fingerprint(&text);
    assert!(a.text.len() <= pgdog::compare::fingerprint::MAX_TEXT);
    assert_eq!(a, fingerprint(&text));
});
