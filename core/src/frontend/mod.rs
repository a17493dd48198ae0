//! The client side: [`listener`] accepts connections, [`login`] runs startup and
//! authentication, [`session`] forwards frames between the client and its server, and
//! [`cancel`] maps the keys we hand out to the servers' own.

pub mod cancel;
pub mod clients;
pub mod listener;
pub mod login;
pub mod session;
pub mod state;

mod error;
pub use error::ClientError;
