//! pgdog: a PostgreSQL proxy that mirrors live traffic to a new database and tells you when
//! that database is ready to take over.
//!
//! The path of a query, by module: [`frontend`] (listener, login, session) ->
//! [`protocol`] (frames as raw bytes) -> [`backend`] (pools of server connections) -> the
//! primary server. [`proxy`] holds the handles they share; [`app`] starts and stops it all.

pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod compare;
pub mod config;
pub mod fleet;
pub mod frontend;
pub mod invariants;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod net;
pub mod plugins;
pub mod protocol;
pub mod proxy;
pub mod runtime;
pub mod sql;
pub mod stats;
pub mod systemd;
pub mod tls;
