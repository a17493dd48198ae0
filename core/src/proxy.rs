//! The running proxy: the handles every connection needs, built once from the config and
//! passed down (no globals, so tests can run several proxies in one process).

use crate::backend::Pools;
use crate::config::Config;
use crate::frontend::cancel::CancelMap;
use crate::frontend::clients::ClientRegistry;
use crate::frontend::state::SessionState;
use crate::mirror::prepared::Definitions;
use crate::mirror::tap::Tap;
use crate::mirror::worker::Worker;
use crate::mirror::{EventSink, MirrorTarget};
use crate::plugins::PluginHost;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Source pool name -> where its traffic is mirrored.
pub type MirrorMap = HashMap<String, Arc<MirrorTarget>>;

pub struct Proxy {
    /// The running config: read it with [`Proxy::config`]; the admin's `RELOAD` swaps it.
    config: RwLock<Arc<Config>>,
    pub config_path: PathBuf,
    pub pools: Pools,
    pub cancel: CancelMap,
    /// Cancelled on SIGTERM/SIGINT or `SHUTDOWN`: listeners stop, idle clients are closed.
    pub shutdown: CancellationToken,
    /// Every client session, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Caps client connections at `max_client_conn`.
    pub client_slots: Arc<Semaphore>,
    /// Source pool name -> where its traffic is mirrored: read it with [`Proxy::mirrors`];
    /// `RELOAD` swaps it.
    mirrors: RwLock<Arc<MirrorMap>>,
    /// Where mirror events go (the plugin host).
    pub events: EventSink,
    /// Loaded plugins: mirror statistics and the readiness policy.
    pub plugins: Arc<PluginHost>,
    /// Mirror workers, so shutdown can let them drain.
    pub mirror_tasks: TaskTracker,
    /// Logged-in clients, for the admin console.
    pub clients: Arc<ClientRegistry>,
}

impl Proxy {
    pub fn new(config: Config, config_path: PathBuf, plugins: Arc<PluginHost>) -> Arc<Proxy> {
        let pools = Pools::from_config(&config);
        let mirrors = crate::mirror::targets(&config, &pools);
        let slots = config.general.max_client_conn;
        Arc::new(Proxy {
            mirrors: RwLock::new(Arc::new(mirrors)),
            events: plugins.events(),
            plugins,
            mirror_tasks: TaskTracker::new(),
            config: RwLock::new(Arc::new(config)),
            config_path,
            pools,
            cancel: CancelMap::default(),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            client_slots: Arc::new(Semaphore::new(slots)),
            clients: Arc::default(),
        })
    }

    /// The running config (a snapshot: a later `RELOAD` does not change it).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap().clone()
    }

    /// Replaces the running config (`RELOAD`, after validation).
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap() = config;
    }

    /// The mirror targets, by source pool name (a snapshot).
    pub fn mirrors(&self) -> Arc<MirrorMap> {
        self.mirrors.read().unwrap().clone()
    }

    /// Replaces the mirror targets (`RELOAD`); sessions already mirroring keep theirs.
    pub fn set_mirrors(&self, mirrors: MirrorMap) {
        *self.mirrors.write().unwrap() = Arc::new(mirrors);
    }
}

impl Proxy {
    /// Starts the mirror session of a new client of a pool mirrored to `target`: the
    /// bounded queue, and its worker as a tracked task.
    pub fn start_mirror(&self, target: Arc<MirrorTarget>, state: &Arc<SessionState>) -> Tap {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let definitions = Arc::new(Definitions::default());
        // The session keeps its queue length: a `RELOAD` changing `mirror_queue` applies
        // to sessions started after it, and the worker's hold limit must stay within the
        // tap's places.
        let places = target.queue();
        let worker = Worker::new(
            target.clone(),
            self.events.clone(),
            state.clone(),
            definitions.clone(),
            places,
        );
        self.mirror_tasks.spawn(worker.run(rx));
        Tap::new(target, tx, self.events.clone(), definitions, places)
    }
}
