//! The client side: [`listener`] accepts connections, [`login`] runs startup and
//! authentication, [`session`] forwards frames between the client and its server (its
//! [`tracker`] counts requests and answers, and its mirror tap copies them), and
//! [`cancel`] maps the keys we hand out to the servers' own.

pub mod cancel;
pub mod clients;
pub mod handshake;
pub mod listener;
pub mod login;
pub mod prepared;
pub mod session;
pub mod tracker;
pub mod users;

mod error;
mod footprint;
pub use error::ClientError;

use crate::backend::statements::StatementRegistry;
use crate::mirror;
use crate::runtime::Live;
use cancel::CancelMap;
use clients::ClientRegistry;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the client side needs: built once at start-up, shared by every connection.
pub struct Frontend {
    /// The running configuration: each login takes one snapshot of it.
    pub runtime: Arc<Live>,
    pub cancel: CancelMap,
    /// Logged-in clients, for the admin console.
    pub clients: Arc<ClientRegistry>,
    /// Cancelled on SIGTERM/SIGINT or `SHUTDOWN`: the listener stops, idle clients close.
    pub shutdown: CancellationToken,
    /// Cancelled on SIGINT, or when the drain after SIGTERM runs out of time: every
    /// session closes now, busy or not (after `shutdown`).
    pub halt: CancellationToken,
    /// Every client session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Caps client connections at `max_client_conn`.
    pub client_slots: Arc<Semaphore>,
    /// Starts the mirror sessions of clients of mirrored pools.
    pub mirrors: mirror::Workers,
    /// Transaction mode's prepared statements, for the admin console.
    pub statements: Arc<StatementRegistry>,
}
