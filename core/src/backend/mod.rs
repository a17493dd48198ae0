//! The server side: connections to PostgreSQL ([`server`]) kept in per-database
//! [`pool`]s, found by client database name through [`Pools`].

pub mod pool;
pub mod pools;
pub mod server;
pub mod statements;

mod error;
pub use error::BackendError;
pub use pool::{Pool, PoolError, PooledServer, UserAuth};
pub use pools::{PoolChange, Pools, RouteError};
pub use server::{Server, ServerAddr};
