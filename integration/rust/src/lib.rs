//! The user's Rust acceptance suite lives in `tests/integration/mirror_metrics.rs`, with its
//! helpers in `tests/helpers/mirror_test_helpers.rs`; this library is empty.
