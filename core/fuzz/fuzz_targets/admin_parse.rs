//! The admin command parser gets whatever anyone who reaches the admin port types (the
//! checks: `pgdog::invariants::admin`, also run on stable by `core/tests/fuzz.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pgdog::invariants::admin(data));
