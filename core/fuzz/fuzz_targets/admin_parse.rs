//! The admin command parser gets whatever anyone who reaches the admin port types: it must
//! never panic, and whatever it accepts must be stable (parsing a statement twice agrees).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pgdog::admin::parse::{parse, statements};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for statement in statements(text) {
        let first = parse(statement);
        assert_eq!(first, parse(statement));
        if let Err(e) = first {
            // Error messages quote at most a bounded prefix of the input.
            assert!(e.to_string().len() < 2048);
        }
    }
    let _ = parse(text);
});
