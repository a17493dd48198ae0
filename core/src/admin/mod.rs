//! The admin console: a PostgreSQL-protocol listener on `[general] admin_port` where an
//! operator (with `psql`) or automation (any driver's simple query) asks whether the mirror
//! is ready to take over and operates the pools.
//!
//! ```text
//! serve (accept loop) -> conn::run (one task per connection)
//!     -> auth::login (startup, who may connect, password)
//!     -> parse::statements / parse::parse (text -> Command)
//!     -> commands::execute (one file per command family) -> Output -> RowDescription/DataRow
//! ```
//!
//! Only the simple query protocol is spoken: an extended-protocol message (Parse, Bind, ...)
//! gets an ErrorResponse that says so. The listener stops when `proxy.shutdown` is cancelled
//! (SIGTERM or the console's own `SHUTDOWN`), and open console connections are closed.

mod auth;
mod commands;
mod conn;
mod error;
pub mod output;
pub mod parse;

pub use auth::{admission, Admission, DATABASES};
/// `RELOAD`, for SIGHUP too.
pub use commands::reload;
pub use error::AdminError;
pub use parse::{Command, ParseError};

use crate::auth::scram::ScramSecret;
use crate::config::General;
use crate::net::{Accepted, Listener};
use crate::proxy::Proxy;
use auth::Credentials;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Accepts console connections until shutdown.
pub async fn serve(proxy: Arc<Proxy>, listener: Listener) {
    let console = Arc::new(Console::default());
    let general = proxy.config().general.clone();
    if general.admin_password.is_none() {
        tracing::warn!(
            "[general] admin_password is not set: the admin console on port {} accepts only \
             loopback connections, without a password",
            general.admin_port
        );
    }
    // Derive the SCRAM secret now rather than on the first login.
    console.credentials(&general);
    tracing::info!("admin console listening on {}", listener.addrs().join(", "));

    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = proxy.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(Accepted::Open(stream, peer)) => {
                tasks.spawn(conn::run(stream, peer, proxy.clone(), console.clone()));
            }
            Ok(Accepted::Shed(stream, _)) => {
                tokio::spawn(crate::frontend::listener::refuse(
                    stream,
                    "53300",
                    "too many connections: pgdog is out of file descriptors",
                ));
            }
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tasks.close();
    // Connections see the shutdown too and close at once; do not hang on a stuck peer.
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
    tracing::info!("admin console closed");
}

/// What the console's connections share: the login credentials, rebuilt when `RELOAD`
/// changes `admin_user`, `admin_password` or `auth_type`.
#[derive(Default)]
struct Console {
    credentials: Mutex<Option<(CredentialKey, Arc<LoginSecrets>)>>,
}

type CredentialKey = (String, Option<String>, crate::config::AuthType);

struct LoginSecrets {
    creds: Credentials,
    scram: Option<ScramSecret>,
}

impl Console {
    fn credentials(&self, general: &General) -> Arc<LoginSecrets> {
        let key = (
            general.admin_user.clone(),
            general.admin_password.clone(),
            general.auth_type,
        );
        let mut cached = self.credentials.lock().unwrap();
        match &*cached {
            Some((k, secrets)) if *k == key => secrets.clone(),
            _ => {
                let (creds, scram) = Credentials::new(general);
                let secrets = Arc::new(LoginSecrets { creds, scram });
                *cached = Some((key, secrets.clone()));
                secrets
            }
        }
    }
}
