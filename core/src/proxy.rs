//! The running proxy: the handles every connection needs, built once from the config and
//! passed down (no globals, so tests can run several proxies in one process).

use crate::backend::Pools;
use crate::config::Config;
use crate::frontend::cancel::CancelMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Proxy {
    pub config: Arc<Config>,
    pub config_path: PathBuf,
    pub pools: Pools,
    pub cancel: CancelMap,
    /// Cancelled on SIGTERM/SIGINT or `SHUTDOWN`: listeners stop, idle clients are closed.
    pub shutdown: CancellationToken,
    /// Every client session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Caps client connections at `max_client_conn`.
    pub client_slots: Arc<Semaphore>,
}

impl Proxy {
    pub fn new(config: Config, config_path: PathBuf) -> Arc<Proxy> {
        let pools = Pools::from_config(&config);
        let slots = config.general.max_client_conn;
        Arc::new(Proxy {
            config: Arc::new(config),
            config_path,
            pools,
            cancel: CancelMap::default(),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            client_slots: Arc::new(Semaphore::new(slots)),
        })
    }
}
