//! The client-side frame walker and the startup packet parser: what the proxy reads from
//! untrusted clients before anything else looks at the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgdog::protocol::frame::{complete_len, frame_len, Frames};
use pgdog::protocol::startup;

fuzz_target!(|data: &[u8]| {
    if let Ok(len) = complete_len(data, 1 << 20) {
        assert!(len <= data.len());
        let mut total = 0;
        for (_, msg) in Frames::new(&data[..len]) {
            assert_eq!(frame_len(msg, 1 << 20).unwrap(), Some(msg.len()));
            total += msg.len();
        }
        assert_eq!(total, len);
    }
    let _ = startup::parse(data);
});
