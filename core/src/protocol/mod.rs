//! The PostgreSQL v3 wire protocol, as far as a proxy needs it.
//!
//! Frames stay raw bytes: [`frame`] finds message boundaries in a read buffer without
//! copying, [`startup`] parses the untagged first packet, [`messages`] builds the few
//! messages the proxy itself sends, [`backend`] reads the fields of the server messages
//! the proxy inspects, and [`tag`] names message tags, transaction status and backend keys.

pub mod backend;
pub mod frame;
pub mod messages;
pub mod startup;
pub mod tag;

mod error;
pub use error::ProtocolError;
pub use tag::{BackendKey, TxStatus};
