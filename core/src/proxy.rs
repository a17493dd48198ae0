//! What the operator's surfaces (the admin console and the metrics endpoint) share: the
//! running configuration, the plugins, the logged-in clients and the shutdown signal.
//! Built once at start-up and passed down (no globals, so tests can run several proxies
//! in one process). The client side gets its own handles ([`crate::frontend::Frontend`]).

use crate::backend::statements::StatementRegistry;
use crate::config::Config;
use crate::frontend::clients::ClientRegistry;
use crate::plugins::PluginHost;
use crate::runtime::{Live, Runtime};
use crate::tls::TlsError;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    /// The running configuration, pools and mirror targets; `RELOAD` replaces them.
    pub runtime: Arc<Live>,
    /// Where `RELOAD` reads the configuration from.
    pub config_path: PathBuf,
    /// Loaded plugins: mirror statistics and the readiness policy.
    pub plugins: Arc<PluginHost>,
    /// Logged-in clients.
    pub clients: Arc<ClientRegistry>,
    /// Transaction mode's prepared statements (`SHOW PREPARED_STATEMENTS`).
    pub statements: Arc<StatementRegistry>,
    /// Cancelled on SIGTERM/SIGINT or `SHUTDOWN`.
    pub shutdown: CancellationToken,
}

impl Proxy {
    /// The proxy of `config`; its TLS files are read here.
    pub fn new(
        config: Config,
        config_path: PathBuf,
        plugins: Arc<PluginHost>,
    ) -> Result<Arc<Proxy>, TlsError> {
        Ok(Arc::new(Proxy {
            runtime: Arc::new(Live::new(config)?),
            config_path,
            plugins,
            clients: Arc::default(),
            statements: Arc::default(),
            shutdown: CancellationToken::new(),
        }))
    }

    /// The running config (a snapshot: a later `RELOAD` does not change it).
    pub fn config(&self) -> Arc<Config> {
        self.runtime.config()
    }

    /// The running generation: config, pools and mirror targets (a snapshot).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load()
    }
}
