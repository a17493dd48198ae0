//! A pool of server connections for one `[[pools]]` entry and one user.
//!
//! A semaphore caps the connections (idle + in use) at `pool_size`; idle connections wait in
//! a stack (the most recently used first, so the rest can age out). A client holds a
//! [`PooledServer`] for its session (session mode) or one transaction (transaction mode);
//! dropping it closes the connection, while [`PooledServer::release`] returns it for reuse.
//!
//! The pool of a `[[pools]]` entry is its configured user's. Other users' pools of the
//! same database ([`Pool::for_user`]: `[[users]]`, `auth_query`) hang off it, made on their
//! first login, so that `DISABLE`, `PAUSE` and `KILL` of the database reach them all.

use super::{BackendError, Server, ServerAddr};
use crate::auth::scram::{ScramKeys, ScramSecret};
use crate::auth::scram_client::Credential;
use crate::tls::Connector;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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

/// The parameters the first server connection reported, shared with every client's login.
pub type ServerParams = Arc<[(String, String)]>;

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
    /// Transactions clients completed (a ReadyForQuery leaving them idle).
    pub xacts: AtomicU64,
    /// Time from each request to its ReadyForQuery, summed (µs).
    pub query_us: AtomicU64,
    /// Time from each transaction's first request to its end, summed (µs).
    pub xact_us: AtomicU64,
    /// Transaction mode: server connections handed to clients, and the time clients waited
    /// for them, summed (µs).
    pub checkouts: AtomicU64,
    pub wait_us: AtomicU64,
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
    auth: UserAuth,
    /// The client-side SCRAM secret: the verifier's, or derived from the password on the
    /// first login (PBKDF2 is slow).
    scram: tokio::sync::OnceCell<Option<ScramSecret>>,
    /// Under a verifier: the keys the last client proved, for the server logins.
    proved: Mutex<Option<ScramKeys>>,
    /// The parameters the first server connection reported (transaction mode: what a
    /// client is told at login without taking a connection).
    server_params: Mutex<Option<ServerParams>>,
    /// When each caller waiting for a connection started, in arrival order.
    waiters: Mutex<VecDeque<(u64, Instant)>>,
    next_waiter: AtomicU64,
    /// Other users' pools of the same database (on the configured user's pool only).
    users: Mutex<HashMap<String, Pool>>,
    /// Server sessions start with `default_transaction_read_only = on` (see
    /// [`Pool::read_only`]).
    read_only: bool,
    /// The read-only pool of the same database and user, made on first use.
    read_only_pool: Mutex<Option<Pool>>,
}

/// The startup `options` of a read-only pool's sessions: the guard holds for every
/// transaction, and `RESET ALL`/`DISCARD ALL` return to it instead of lifting it.
const READ_ONLY_OPTIONS: &str = "-c default_transaction_read_only=on";

/// How a pool's user authenticates, to clients and to the server.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum UserAuth {
    /// No password: clients are trusted (`auth_type = "trust"`), and so must the server
    /// trust pgdog.
    #[default]
    None,
    /// A plaintext password: checked for clients, and used with the server however it asks.
    Password(String),
    /// A SCRAM verifier: clients prove it, and server logins use the keys the last one
    /// proved (SCRAM pass-through: the server must hold the same verifier).
    Verifier(ScramSecret),
}

impl std::fmt::Debug for UserAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserAuth::None => "None",
            UserAuth::Password(_) => "Password(..)",
            UserAuth::Verifier(_) => "Verifier(..)",
        })
    }
}

impl UserAuth {
    /// A configured `password`: a SCRAM verifier when it is one, else plaintext.
    pub fn from_config(password: Option<&str>) -> UserAuth {
        match password {
            None => UserAuth::None,
            Some(p) => match ScramSecret::from_verifier(p) {
                Some(secret) => UserAuth::Verifier(secret),
                None => UserAuth::Password(p.to_string()),
            },
        }
    }
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
    pub fn new(name: &str, addr: ServerAddr, settings: PoolSettings, auth: UserAuth) -> Pool {
        Pool::build(name, addr, settings, auth, false)
    }

    fn build(
        name: &str,
        addr: ServerAddr,
        settings: PoolSettings,
        auth: UserAuth,
        read_only: bool,
    ) -> Pool {
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
                auth,
                scram: tokio::sync::OnceCell::new(),
                proved: Mutex::new(None),
                server_params: Mutex::new(None),
                waiters: Mutex::new(VecDeque::new()),
                next_waiter: AtomicU64::new(0),
                users: Mutex::new(HashMap::new()),
                read_only,
                read_only_pool: Mutex::new(None),
            }),
        }
    }

    /// The pool of the same database, user and settings whose server sessions start with
    /// `default_transaction_read_only = on`, so that the server refuses any write with
    /// `25006` (a mirror that must only read). Made on first use, inheriting `DISABLE` and
    /// `PAUSE`; `DISABLE`, `PAUSE` and `KILL` of this pool reach it.
    pub fn read_only(&self) -> Pool {
        if self.inner.read_only {
            return self.clone();
        }
        let mut slot = self.inner.read_only_pool.lock().unwrap();
        if let Some(pool) = &*slot {
            return pool.clone();
        }
        let pool = Pool::build(
            &self.inner.name,
            self.inner.addr.clone(),
            self.inner.settings.clone(),
            self.inner.auth.clone(),
            true,
        );
        pool.set_disabled(self.is_disabled());
        pool.set_paused(self.is_paused());
        let proved = *self.inner.proved.lock().unwrap();
        *pool.inner.proved.lock().unwrap() = proved;
        *slot = Some(pool.clone());
        pool
    }

    /// Whether server sessions start read-only ([`Pool::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// A connection of the pool's address, user, TLS and connect timeout that is not the
    /// pool's: it takes no place in it and is never given back. For the proxy's own
    /// queries beside the clients' (the mirror's replication position).
    pub async fn connect_dedicated(&self) -> Result<Server, PoolError> {
        let settings = &self.inner.settings;
        let credential = self.credential();
        Server::connect(
            &self.inner.addr,
            credential.as_ref(),
            &settings.tls,
            settings.connect_timeout,
        )
        .await
        .map_err(|source| PoolError::Backend {
            pool: self.inner.name.clone(),
            source,
        })
    }

    /// The pool of `user` on the same database, authenticating with `auth`: made on first
    /// use (inheriting `DISABLE` and `PAUSE`), and made again when `auth` changed (its old
    /// connections close as they are given back). The configured user's is this pool.
    pub fn for_user(&self, user: &str, auth: UserAuth) -> Pool {
        if user == self.inner.addr.user {
            return self.clone();
        }
        let mut users = self.inner.users.lock().unwrap();
        if let Some(pool) = users.get(user).filter(|p| p.inner.auth == auth) {
            return pool.clone();
        }
        let addr = ServerAddr {
            user: user.to_string(),
            ..self.inner.addr.clone()
        };
        let pool = Pool::new(&self.inner.name, addr, self.inner.settings.clone(), auth);
        pool.set_disabled(self.is_disabled());
        pool.set_paused(self.is_paused());
        if let Some(old) = users.insert(user.to_string(), pool.clone()) {
            old.kill();
        }
        pool
    }

    /// This pool and its other users' pools, the configured user's first (its read-only
    /// pool, if made, right after it).
    pub fn with_users(&self) -> Vec<Pool> {
        let users = self.inner.users.lock().unwrap();
        let mut others: Vec<Pool> = users.values().cloned().collect();
        others.sort_by(|a, b| a.addr().user.cmp(&b.addr().user));
        let read_only = self.inner.read_only_pool.lock().unwrap().clone();
        std::iter::once(self.clone())
            .chain(read_only)
            .chain(others)
            .collect()
    }

    /// The other users' pools and the read-only one, for `DISABLE`, `PAUSE` and `KILL`.
    fn others(&self) -> Vec<Pool> {
        let read_only = self.inner.read_only_pool.lock().unwrap().clone();
        let users = self.inner.users.lock().unwrap();
        users.values().cloned().chain(read_only).collect()
    }

    pub fn auth(&self) -> &UserAuth {
        &self.inner.auth
    }

    /// What the pool's first server connection reported (`None` until one connected).
    pub fn server_params(&self) -> Option<ServerParams> {
        self.inner.server_params.lock().unwrap().clone()
    }

    /// How long the caller waiting longest for a connection has waited.
    pub fn max_wait(&self) -> Duration {
        let waiters = self.inner.waiters.lock().unwrap();
        waiters
            .front()
            .map_or(Duration::ZERO, |(_, since)| since.elapsed())
    }

    /// A client proved `keys` for this pool's verifier: server logins use them.
    pub fn proved(&self, keys: ScramKeys) {
        if matches!(self.inner.auth, UserAuth::Verifier(_)) {
            *self.inner.proved.lock().unwrap() = Some(keys);
            let read_only = self.inner.read_only_pool.lock().unwrap().clone();
            if let Some(read_only) = read_only {
                read_only.proved(keys);
            }
        }
    }

    /// What the proxy logs in to the server with.
    fn credential(&self) -> Option<Credential> {
        match &self.inner.auth {
            UserAuth::None => None,
            UserAuth::Password(p) => Some(Credential::Password(p.clone())),
            UserAuth::Verifier(_) => (*self.inner.proved.lock().unwrap()).map(Credential::Keys),
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
    /// connections already checked out are unaffected. Every user's pool of the database.
    pub fn set_paused(&self, paused: bool) {
        self.inner.paused.send_replace(paused);
        self.others().iter().for_each(|p| p.set_paused(paused));
    }

    /// `KILL`: closes the idle connections now and every checked-out one when it is
    /// released. Every user's pool of the database.
    pub fn kill(&self) {
        self.inner.epoch.fetch_add(1, Ordering::Relaxed);
        self.close_idle();
        self.others().iter().for_each(Pool::kill);
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
        self.others().iter().for_each(|p| p.set_disabled(disabled));
    }

    /// Closes every idle connection (`KILL`, `DISABLE`, a pool a RELOAD replaced), of every
    /// user's pool of the database.
    pub fn close_idle(&self) {
        self.others().iter().for_each(Pool::close_idle);
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
                match &self.inner.auth {
                    UserAuth::None => None,
                    UserAuth::Verifier(secret) => Some(secret.clone()),
                    UserAuth::Password(password) => {
                        // PBKDF2 takes milliseconds of CPU: off the runtime's threads.
                        let password = password.clone();
                        tokio::task::spawn_blocking(move || ScramSecret::new(&password))
                            .await
                            .ok()
                    }
                }
            })
            .await
            .as_ref()
    }

    /// The most recently used idle connection that is still open. A server that restarted
    /// or was terminated has closed its end (or sent a FATAL): those are dropped here, so a
    /// client never gets a connection the proxy can know is dead ([`Server::is_alive`]).
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

    /// A place in the pool, waited for in arrival order up to `checkout_timeout_ms` (and
    /// for as long as the pool is paused).
    async fn wait_for_permit(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        let stats = &self.inner.stats;
        let timeout = self.inner.settings.checkout_timeout;
        stats.waiting.fetch_add(1, Ordering::Relaxed);
        let id = self.inner.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.inner
            .waiters
            .lock()
            .unwrap()
            .push_back((id, Instant::now()));
        struct Waiting<'a>(&'a Inner, u64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                self.0
                    .waiters
                    .lock()
                    .unwrap()
                    .retain(|(id, _)| *id != self.1);
            }
        }
        let _waiting = Waiting(&self.inner, id);
        if self.is_paused() {
            // Err only if the sender is gone, which cannot happen while `self` lives.
            let _ = self.inner.paused.subscribe().wait_for(|p| !p).await;
        }
        match tokio::time::timeout(timeout, self.inner.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PoolError::Exhausted {
                pool: self.inner.name.clone(),
                size: self.inner.settings.size,
                waited_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// A new server connection, counted in the pool's stats.
    async fn open(&self) -> Result<Server, PoolError> {
        let stats = &self.inner.stats;
        let settings = &self.inner.settings;
        let credential = self.credential();
        let server = Server::connect_with(
            &self.inner.addr,
            credential.as_ref(),
            &settings.tls,
            settings.connect_timeout,
            self.inner.read_only.then_some(READ_ONLY_OPTIONS),
        )
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
        let mut params = self.inner.server_params.lock().unwrap();
        if params.is_none() {
            *params = Some(server.params.clone().into());
        }
        drop(params);
        Ok(server)
    }

    /// A server connection for the caller's exclusive use: an idle one, or a new one.
    pub async fn get(&self) -> Result<PooledServer, PoolError> {
        self.get_noting_wait(None).await
    }

    /// As [`Pool::get`], and `waiting` is set while the caller waits for one of the
    /// pool's `pool_size` connections to come back (not while a new one is opened): the
    /// proxy's limit, told apart from a slow server. It stays set when the wait ends in
    /// [`PoolError::Exhausted`]; the caller clears it.
    pub async fn get_noting_wait(
        &self,
        waiting: Option<&AtomicBool>,
    ) -> Result<PooledServer, PoolError> {
        match self.acquire(waiting, None).await? {
            Some(conn) => Ok(conn),
            None => unreachable!("nothing to abandon the wait"),
        }
    }

    /// As [`Pool::get`], but a wait for one of the pool's connections to come back ends
    /// when `abandon` is notified (the client cancelled its request): `Ok(None)`. Only
    /// the wait: a connection being opened is not abandoned.
    pub async fn get_unless(&self, abandon: &Notify) -> Result<Option<PooledServer>, PoolError> {
        self.acquire(None, Some(abandon)).await
    }

    async fn acquire(
        &self,
        waiting: Option<&AtomicBool>,
        abandon: Option<&Notify>,
    ) -> Result<Option<PooledServer>, PoolError> {
        if self.is_disabled() {
            return Err(PoolError::Disabled(self.inner.name.clone()));
        }
        let stats = &self.inner.stats;
        // The semaphore is fair: a permit free now is no waiter's (permits go to waiters,
        // in arrival order, as they are given back).
        let permit = match self.inner.permits.clone().try_acquire_owned() {
            Ok(permit) if !self.is_paused() => permit,
            _ => {
                if let Some(waiting) = waiting {
                    waiting.store(true, Ordering::Relaxed);
                }
                let permit = match abandon {
                    None => self.wait_for_permit().await?,
                    Some(abandon) => {
                        // Created before the first poll, so a notification from then on
                        // counts (`Notify::notify_waiters`).
                        let abandoned = abandon.notified();
                        tokio::select! {
                            biased;
                            permit = self.wait_for_permit() => permit?,
                            () = abandoned => return Ok(None),
                        }
                    }
                };
                if let Some(waiting) = waiting {
                    waiting.store(false, Ordering::Relaxed);
                }
                permit
            }
        };
        let idle = self.pop_live_idle();
        let server = match idle {
            Some(server) => {
                stats.idle.fetch_sub(1, Ordering::Relaxed);
                server
            }
            // Opening one is rare next to reusing one: boxed, so that every caller's
            // future (a client's session, held while it is idle) does not carry the
            // login's state.
            None => Box::pin(self.open()).await?,
        };
        Ok(Some(PooledServer {
            server: Some(server),
            pool: self.clone(),
            epoch: self.inner.epoch.load(Ordering::Relaxed),
            _permit: permit,
        }))
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

    pub fn server_ref(&self) -> &Server {
        self.server.as_ref().expect("present until released")
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Puts the connection back in the pool at once when that needs no round trip (no
    /// transaction open, no `reset_query`, nothing buffered, the pool neither disabled nor
    /// killed since checkout); otherwise hands it back, for [`PooledServer::release`].
    pub fn release_now(mut self, reset_query: Option<&str>) -> Option<PooledServer> {
        let server = self.server.take()?;
        if server.needs_reset(reset_query) || server.has_buffered() {
            self.server = Some(server);
            return Some(self);
        }
        self.server = self.put_back(server);
        self.server.is_some().then_some(self)
    }

    /// Puts the connection back in the pool after `reset_query` (session mode; a
    /// transaction left open is rolled back first); closes it if that fails or the pool was
    /// disabled or killed meanwhile.
    pub async fn release(self, reset_query: Option<&str>) {
        // When it needs no round trip, at once.
        let Some(mut this) = self.release_now(reset_query) else {
            return;
        };
        let Some(mut server) = this.server.take() else {
            return;
        };
        // The reset (and the goodbye below) boxed, so that a session's future stays small.
        let reset = this.wanted()
            && !server.has_buffered()
            && Box::pin(server.reset(reset_query)).await.is_ok();
        if reset {
            // Checked again under the idle lock: a `DISABLE`/`KILL` (flag, then
            // `close_idle`) may overtake the reset's round trip.
            match this.put_back(server) {
                None => return,
                Some(back) => server = back,
            }
        }
        this.pool
            .inner
            .stats
            .servers
            .fetch_sub(1, Ordering::Relaxed);
        Box::pin(server.terminate()).await;
    }

    /// The pool was neither disabled nor killed since checkout.
    fn wanted(&self) -> bool {
        !self.pool.is_disabled() && self.pool.inner.epoch.load(Ordering::Relaxed) == self.epoch
    }

    /// Puts `server` with the idle ones, under the idle lock, if the pool still
    /// [wants](PooledServer::wanted) it; otherwise gives it back.
    fn put_back(&self, mut server: Server) -> Option<Server> {
        let inner = &self.pool.inner;
        server.idle_since = Instant::now(); // before the lock, to keep it short
        let mut idle = inner.idle.lock().unwrap();
        if !self.wanted() {
            return Some(server);
        }
        inner.stats.idle.fetch_add(1, Ordering::Relaxed);
        idle.push(server);
        None
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
