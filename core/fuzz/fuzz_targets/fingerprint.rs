//! The statement normaliser reads whatever SQL clients send (the checks:
//! `pgdog::invariants::fingerprint_text`, also run on stable by `core/tests/fuzz.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pgdog::invariants::fingerprint_text(data));
