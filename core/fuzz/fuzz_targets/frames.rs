//! The frame walker and the startup packet parser: what the proxy reads from untrusted
//! clients before anything else looks at the bytes (the checks: `pgdog::invariants::frames`
//! and `startup`, also run on stable by `core/tests/fuzz.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pgdog::invariants::frames(data);
    pgdog::invariants::startup(data);
});
