//! What becomes of each request offered to the mirror: exactly one event per request,
//! delivered to the plugin host's [`EventSink`] (never blocking the caller).

pub use crate::plugins::{DropReason, ErrorCategory, EventSink, MirrorEvent as Event, Outcome};
