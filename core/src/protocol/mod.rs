//! The PostgreSQL v3 wire protocol, as far as a proxy needs it.
//!
//! Frames stay raw bytes: [`frame`] finds message boundaries in a read buffer without
//! copying, [`startup`] parses the untagged first packet, [`messages`] builds the few
//! messages the proxy itself sends, and [`backend`] reads the fields of the server messages
//! the proxy inspects.

pub mod backend;
pub mod frame;
pub mod messages;
pub mod startup;

mod error;
pub use error::ProtocolError;
