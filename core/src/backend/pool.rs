//! A pool of server connections for one `[[pools]]` entry.
//!
//! A semaphore caps the connections (idle + in use) at `pool_size`; idle connections wait in
//! a stack (the most recently used first, so the rest can age out). A client holds a
//! [`PooledServer`] for its whole session; dropping it closes the connection, while
//! [`PooledServer::release`] resets it and returns it for reuse.

use super::{BackendError, Server, ServerAddr};
use crate::auth::scram::ScramSecret;
use crate::tls::Connector;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool \"{pool}\" is exhausted: all {size} server connections are in use (waited {waited_ms} ms)")]
    Exhausted {
        pool: String,
        size: usize,
        waited_ms: u64,
    },
    #[error("pool \"{0}\" is disabled")]
    Disabled(String),
    #[error("pool \"{pool}\": {source}")]
    Backend {
        pool: String,
        #[source]
        source: BackendError,
    },
}

/// Live counters for the admin console and metrics; updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Open server connections (idle + in use).
    pub servers: AtomicUsize,
    /// Server connections idle in the pool.
    pub idle: AtomicUsize,
    /// Callers waiting for a connection.
    pub waiting: AtomicUsize,
    /// Clients connected to this pool.
    pub clients: AtomicUsize,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Requests clients sent (simple Query, extended-protocol Sync, FunctionCall).
    pub queries: AtomicU64,
    /// Bytes forwarded from clients to servers.
    pub bytes_received: AtomicU64,
    /// Bytes forwarded from servers to clients.
    pub bytes_sent: AtomicU64,
    /// ErrorResponses servers sent to clients.
    pub errors: AtomicU64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub size: usize,
    pub connect_timeout: Duration,
    pub checkout_timeout: Duration,
    /// TLS towards the server.
    pub tls: Arc<Connector>,
}

struct Inner {
    name: String,
    addr: ServerAddr,
    settings: PoolSettings,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Server>>,
    disabled: AtomicBool,
    /// `PAUSE`: while true, new checkouts wait (admin console).
    paused: tokio::sync::watch::Sender<bool>,
    /// Bumped by `KILL`: connections checked out before are closed on release.
    epoch: AtomicU64,
    stats: PoolStats,
    /// Derived on first client login (PBKDF2 is slow).
    scram: tokio::sync::OnceCell<Option<ScramSecret>>,
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} -> {})", self.inner.name, self.inner.addr)
    }
}

impl Pool {
    pub fn new(name: &str, addr: ServerAddr, settings: PoolSettings) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                name: name.to_string(),
                permits: Arc::new(Semaphore::new(settings.size)),
                addr,
                settings,
                idle: Mutex::new(Vec::new()),
                disabled: AtomicBool::new(false),
                paused: tokio::sync::watch::Sender::new(false),
                epoch: AtomicU64::new(0),
                stats: PoolStats::default(),
                scram: tokio::sync::OnceCell::new(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn addr(&self) -> &ServerAddr {
        &self.inner.addr
    }

    pub fn size(&self) -> usize {
        self.inner.settings.size
    }

    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    /// Whether both handles are the same pool (not just equal settings).
    pub fn ptr_eq(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Process id and TLS version of each idle server connection (`SHOW SERVERS`).
    pub fn idle_servers(&self) -> Vec<(i32, Option<&'static str>)> {
        let idle = self.inner.idle.lock().unwrap();
        idle.iter()
            .map(|s| (s.key.pid, s.stream.tls_version()))
            .collect()
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// `PAUSE` / `RESUME`: while paused, new checkouts wait (without a timeout) until resumed;
    /// connections already checked out are unaffected.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
    }

    /// `KILL`: closes the idle connections now and every checked-out one when it is released.
    pub fn kill(&self) {
        self.inner.epoch.fetch_add(1, Ordering::Relaxed);
        self.close_idle();
    }

    pub fn is_disabled(&self) -> bool {
        self.inner.disabled.load(Ordering::Relaxed)
    }

    /// Disabled pools refuse new clients and new server connections; idle connections
    /// are closed.
    pub fn set_disabled(&self, disabled: bool) {
        self.inner.disabled.store(disabled, Ordering::Relaxed);
        if disabled {
            self.close_idle();
        }
    }

    /// Closes every idle connection (`KILL`, `DISABLE`).
    pub fn close_idle(&self) {
        let drained: Vec<Server> = std::mem::take(&mut *self.inner.idle.lock().unwrap());
        self.inner
            .stats
            .idle
            .fetch_sub(drained.len(), Ordering::Relaxed);
        self.inner
            .stats
            .servers
            .fetch_sub(drained.len(), Ordering::Relaxed);
        drop(drained);
    }

    /// The SCRAM secret clients of this pool authenticate against (None: no password).
    pub async fn scram_secret(&self) -> Option<&ScramSecret> {
        self.inner
            .scram
            .get_or_init(|| async {
                // PBKDF2 takes milliseconds of CPU: off the runtime's threads.
                let password = self.inner.addr.password.clone()?;
                tokio::task::spawn_blocking(move || ScramSecret::new(&password))
                    .await
                    .ok()
            })
            .await
            .as_ref()
    }

    /// The most recently used idle connection that is still open. A server that restarted
    /// or was terminated has closed its end (or sent a FATAL): those are dropped here, so a
    /// client never gets a dead connection from the pool.
    fn pop_live_idle(&self) -> Option<Server> {
        let stats = &self.inner.stats;
        loop {
            let server = self.inner.idle.lock().unwrap().pop()?;
            if server.is_alive() {
                return Some(server);
            }
            stats.idle.fetch_sub(1, Ordering::Relaxed);
            stats.servers.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(pool = %self.inner.name, "dropping an idle server connection the server has closed");
        }
    }

    /// A server connection for the caller's exclusive use: an idle one, or a new one.
    pub async fn get(&self) -> Result<PooledServer, PoolError> {
        if self.is_disabled() {
            return Err(PoolError::Disabled(self.inner.name.clone()));
        }
        let stats = &self.inner.stats;
        let timeout = self.inner.settings.checkout_timeout;
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        if self.is_paused() {
            // Err only if the sender is gone, which cannot happen while `self` lives.
            let _ = self.inner.paused.subscribe().wait_for(|p| !p).await;
        }
        let permit =
            tokio::time::timeout(timeout, self.inner.permits.clone().acquire_owned()).await;
        stats.waiting.fetch_sub(1, Ordering::Relaxed);
        let permit = match permit {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(PoolError::Exhausted {
                    pool: self.inner.name.clone(),
                    size: self.inner.settings.size,
                    waited_ms: timeout.as_millis() as u64,
                })
            }
        };
        let idle = self.pop_live_idle();
        let server = match idle {
            Some(server) => {
                stats.idle.fetch_sub(1, Ordering::Relaxed);
                server
            }
            None => {
                let settings = &self.inner.settings;
                let server =
                    Server::connect(&self.inner.addr, &settings.tls, settings.connect_timeout)
                        .await
                        .inspect_err(|_| {
                            stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                        })
                        .map_err(|source| PoolError::Backend {
                            pool: self.inner.name.clone(),
                            source,
                        })?;
                stats.connects.fetch_add(1, Ordering::Relaxed);
                stats.servers.fetch_add(1, Ordering::Relaxed);
                server
            }
        };
        Ok(PooledServer {
            server: Some(server),
            pool: self.clone(),
            epoch: self.inner.epoch.load(Ordering::Relaxed),
            _permit: permit,
        })
    }
}

/// A checked-out server connection. Dropped, it is closed; released, it is reset and reused.
pub struct PooledServer {
    server: Option<Server>,
    pool: Pool,
    /// The pool's `KILL` epoch at checkout.
    epoch: u64,
    _permit: OwnedSemaphorePermit,
}

impl PooledServer {
    pub fn server(&mut self) -> &mut Server {
        self.server.as_mut().expect("present until released")
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Resets the connection and puts it back in the pool; closes it if the reset fails or
    /// the pool was disabled meanwhile.
    pub async fn release(mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let inner = &self.pool.inner;
        // Not disabled or killed since checkout. Checked again under the idle lock after the
        // reset's round trip, which a `DISABLE`/`KILL` (flag, then `close_idle`) may overtake.
        let wanted =
            || !self.pool.is_disabled() && inner.epoch.load(Ordering::Relaxed) == self.epoch;
        let reset = wanted() && !server.has_buffered() && server.reset().await.is_ok();
        if reset {
            let mut idle = inner.idle.lock().unwrap();
            if wanted() {
                inner.stats.idle.fetch_add(1, Ordering::Relaxed);
                idle.push(server);
                return;
            }
        }
        inner.stats.servers.fetch_sub(1, Ordering::Relaxed);
        server.terminate().await;
    }
}

impl Drop for PooledServer {
    fn drop(&mut self) {
        if self.server.take().is_some() {
            self.pool
                .inner
                .stats
                .servers
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}
