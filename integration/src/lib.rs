//! End-to-end test harness for pgdog: throwaway PostgreSQL clusters and the real `pgdog` binary.
//!
//! No mocks and no Docker: [`PgCluster`] runs the installed PostgreSQL 15 binaries (`$PG_BIN` to
//! override) in a temp dir on a free port, [`Pgdog`] runs the `pgdog` binary built by cargo
//! (`$PGDOG_BIN` to override) with a config from [`ConfigBuilder`] or raw TOML. Both clean up on drop,
//! also when a test panics (and print their log tails then); a later test process reaps what a killed
//! one left behind. Set `PGDOG_KEEP_TEMP=1` to keep the temp dirs for inspection.
//!
//! ```no_run
//! use pgdog_integration::{ConfigBuilder, PgCluster};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = PgCluster::start().await?;
//! let pgdog = ConfigBuilder::new().pool("pgdog", &cluster, "pgdog").start().await?;
//! let client = pgdog.connect("pgdog", "pgdog", "pgdog").await?;
//! client.simple_query("SELECT 1").await?;
//! let n: i64 = cluster.query_scalar_in("pgdog", "SELECT count(*) FROM pg_stat_activity").await?;
//! # let _ = n; Ok(()) }
//! ```

mod binary;
pub mod certs;
mod cluster;
mod config;
mod http;
mod net;
mod pgdog;
mod ports;
mod reaper;
mod sys;
mod template;
pub mod tls;

pub use binary::pgdog_binary;
pub use certs::Certs;
pub use cluster::{connect_dsn, kv_dsn, password_for, pg_bin, PgCluster};
pub use config::ConfigBuilder;
pub use http::{http_get, HttpResponse};
pub use net::{listens_on, port_open, Listen};
pub use pgdog::Pgdog;
pub use ports::free_port;
pub use sys::raise_fd_limit;
pub use sys::tail as file_tail;
pub use tls::{connect_tls, ClientTls};
