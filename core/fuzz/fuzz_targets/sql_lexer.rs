//! The SQL lexer and everything built on it read whatever clients send as query text (the
//! checks: `pgdog::invariants::sql` and `fingerprint_text`, also run on stable by
//! `core/tests/fuzz.rs`; the lexer's properties in `core/src/sql/proptests.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgdog::invariants::sql(data);
    pgdog::invariants::fingerprint_text(data);
});
