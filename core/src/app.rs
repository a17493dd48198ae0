//! Start-up and shutdown: bind every listener, serve until a signal, then stop.
//!
//! Start-up binds every socket of the proxy, the admin console and the metrics endpoint
//! (each address of `host`, and the Unix sockets) before any of them listens, so that a
//! port another process holds stops pgdog before it has accepted anyone ([`crate::net`]).
//! Once all of them accept, systemd is told (`READY=1`, [`crate::systemd`]).
//!
//! Signals:
//! - **SIGHUP** reloads the configuration, as the admin console's `RELOAD` does (and as
//!   PostgreSQL and PgBouncer do on SIGHUP). A file that does not load is refused and
//!   logged; the running configuration stays.
//! - **SIGTERM** (and the console's `SHUTDOWN`) drains: listeners close, idle clients are
//!   told `57P01` and closed at once, clients inside a transaction or a running query may
//!   finish it for up to `shutdown_timeout_ms`, then the rest are closed as on SIGINT.
//! - **SIGINT** stops at once, but cleanly: every client is told `57P01` and closed now, a
//!   query still running is cancelled on its server and an open transaction rolled back,
//!   the mirror queues get [`MIRROR_DRAIN`], the plugins are flushed and the mirror totals
//!   logged. SIGINT during a SIGTERM drain cuts the drain short.

use crate::config::{AuthType, Config, General};
use crate::frontend::{listener, Frontend};
use crate::mirror;
use crate::net::{self, BindError, Bound, Endpoints, Listener};
use crate::plugins::PluginHost;
use crate::proxy::Proxy;
use crate::systemd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long the mirror workers get to finish their queues once the clients are gone.
pub const MIRROR_DRAIN: Duration = Duration::from_secs(2);

/// How long sessions get to close once told to stop at once (a cancel and a rollback on
/// their server each).
const HALT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error(
        "pool \"{pool}\": mirror_sync = \"{mode}\": cannot read the replication position: {why}"
    )]
    Sync {
        pool: String,
        mode: &'static str,
        why: String,
    },
}

/// Reads the replication position of every mirror with `mirror_sync` once, before
/// anything listens: a position that cannot be read (no such slot, not a standby, no
/// connection) stops start-up with the reason. Then starts their pollers.
async fn check_sync(proxy: &Proxy) -> Result<(), StartError> {
    let runtime = proxy.runtime();
    let mut targets: Vec<_> = runtime.mirrors.iter().collect();
    targets.sort_by(|a, b| a.0.cmp(b.0));
    for (name, target) in targets {
        let Some(gate) = &target.sync else {
            continue;
        };
        let mode = gate.settings().mode.as_str();
        match gate.probe().await {
            Ok(health) => {
                if let Some(problem) = health.problem() {
                    tracing::warn!("pool \"{name}\": mirror_sync = \"{mode}\": {problem}");
                }
                gate.start();
            }
            Err(why) => {
                return Err(StartError::Sync {
                    pool: name.clone(),
                    mode,
                    why,
                })
            }
        }
    }
    Ok(())
}

/// How the proxy was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM or `SHUTDOWN`: let running transactions finish.
    Drain,
    /// SIGINT: close everything now.
    Now,
}

/// The signals pgdog handles, registered before anything listens (SIGHUP's default
/// action would end the process).
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn register() -> Result<Signals, StartError> {
        let on = |kind| signal(kind).map_err(StartError::Signals);
        Ok(Signals {
            hup: on(SignalKind::hangup())?,
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
        })
    }
}

/// The sockets of the three listeners, bound and not listening yet.
struct BoundAll {
    proxy: Bound,
    admin: Option<Bound>,
    metrics: Bound,
}

/// The three listeners, listening.
struct Listeners {
    proxy: Listener,
    admin: Option<Listener>,
    metrics: Listener,
}

/// Binds every socket of every listener; nothing listens yet.
fn bind_all(g: &General) -> Result<BoundAll, BindError> {
    let unix_dir = g.unix_socket_dir.as_deref();
    let proxy = net::bind(Endpoints {
        what: "proxy",
        hosts: g.host.as_slice(),
        port: g.port,
        unix_dir,
    })?;
    // admin_port = 0 turns the admin console off.
    let admin = match g.admin_port {
        0 => None,
        port => Some(net::bind(Endpoints {
            what: "admin",
            hosts: g.host.as_slice(),
            port,
            unix_dir,
        })?),
    };
    let metrics = net::bind(Endpoints {
        what: "metrics",
        hosts: g.metrics_host().as_slice(),
        port: g.metrics_port,
        unix_dir: None,
    })?;
    Ok(BoundAll {
        proxy,
        admin,
        metrics,
    })
}

impl BoundAll {
    fn listen(self) -> Result<Listeners, BindError> {
        Ok(Listeners {
            proxy: self.proxy.listen()?,
            admin: self.admin.map(Bound::listen).transpose()?,
            metrics: self.metrics.listen()?,
        })
    }
}

/// Runs the proxy until a signal (or `proxy.shutdown` is cancelled), then stops as the
/// module docs say, and returns.
pub async fn run(
    config: Config,
    config_path: PathBuf,
    plugins: PluginHost,
) -> Result<(), StartError> {
    let mut signals = Signals::register()?;
    warn_about(&config);
    let g = config.general.clone();
    let bound = bind_all(&g)?;
    let plugins = Arc::new(plugins);
    let proxy = Proxy::new(config, config_path, plugins.clone())?;
    check_sync(&proxy).await?;
    let frontend = Arc::new(Frontend {
        runtime: proxy.runtime.clone(),
        cancel: Default::default(),
        clients: proxy.clients.clone(),
        shutdown: proxy.shutdown.clone(),
        halt: Default::default(),
        sessions: tokio_util::task::TaskTracker::new(),
        client_slots: Arc::new(tokio::sync::Semaphore::new(g.max_client_conn)),
        mirrors: mirror::Workers::new(plugins.events()),
        statements: proxy.statements.clone(),
    });
    let listeners = bound.listen()?;
    tracing::info!(
        "pgdog {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        listeners.proxy.addrs().join(", ")
    );
    tracing::info!(
        "metrics on {}",
        listeners
            .metrics
            .addrs()
            .iter()
            .map(|a| format!("http://{a}/metrics"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let metrics = tokio::spawn(crate::metrics::serve(proxy.clone(), listeners.metrics));
    let admin = listeners
        .admin
        .map(|admin| tokio::spawn(crate::admin::serve(proxy.clone(), admin)));
    let accept = tokio::spawn(listener::serve(frontend.clone(), listeners.proxy));
    systemd::ready();

    let stop = serve_until_stopped(&proxy, &mut signals).await;
    systemd::stopping();
    proxy.shutdown.cancel();
    let _ = accept.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let _ = metrics.await;
    close_sessions(&frontend, &g, stop, &mut signals).await;
    finish(&frontend, &plugins).await;
    Ok(())
}

/// Handles SIGHUP until something asks the proxy to stop; says how.
async fn serve_until_stopped(proxy: &Arc<Proxy>, signals: &mut Signals) -> Stop {
    loop {
        tokio::select! {
            _ = signals.hup.recv() => reload(proxy),
            _ = signals.term.recv() => {
                tracing::info!("SIGTERM received: draining (running transactions may finish)");
                return Stop::Drain;
            }
            _ = signals.int.recv() => {
                tracing::info!("SIGINT received: closing every connection now");
                return Stop::Now;
            }
            _ = proxy.shutdown.cancelled() => {
                tracing::info!("shutdown requested: draining");
                return Stop::Drain;
            }
        }
    }
}

/// SIGHUP: what `RELOAD` does.
fn reload(proxy: &Proxy) {
    systemd::reloading();
    match crate::admin::reload(proxy) {
        // `reload` logs what changed.
        Ok(_) => {}
        Err(e) => tracing::error!("SIGHUP: configuration not reloaded, the running one stays: {e}"),
    }
    systemd::ready();
}

/// Ends the client sessions: a drain first (SIGTERM), up to `shutdown_timeout_ms` or a
/// SIGINT; then whatever is left is closed at once.
async fn close_sessions(frontend: &Frontend, g: &General, stop: Stop, signals: &mut Signals) {
    frontend.sessions.close();
    if stop == Stop::Drain {
        let timeout = Duration::from_millis(g.shutdown_timeout_ms);
        tokio::select! {
            _ = frontend.sessions.wait() => return,
            _ = tokio::time::sleep(timeout) => tracing::warn!(
                "{} client session(s) still busy after shutdown_timeout_ms = {}; closing them",
                frontend.sessions.len(),
                g.shutdown_timeout_ms
            ),
            _ = signals.int.recv() => tracing::info!(
                "SIGINT received: closing the {} session(s) still draining now",
                frontend.sessions.len()
            ),
        }
    }
    frontend.halt.cancel();
    if tokio::time::timeout(HALT_TIMEOUT, frontend.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} client session(s) did not close within {HALT_TIMEOUT:?}",
            frontend.sessions.len()
        );
    }
}

/// After the sessions: the mirror queues, the plugins, the totals.
async fn finish(frontend: &Frontend, plugins: &PluginHost) {
    if !frontend.mirrors.drain(MIRROR_DRAIN).await {
        tracing::warn!(
            "mirror queues not drained within {MIRROR_DRAIN:?} of shutdown; their requests are lost"
        );
    }
    plugins.flush().await;
    if let Ok(snapshot) = plugins.snapshot().await {
        let c = &snapshot.overall.counts;
        if c.total > 0 {
            tracing::info!(
                "mirror totals: {} requests, {} mirrored, {} dropped, {} errors {:?}",
                c.total,
                c.mirrored,
                c.dropped,
                c.errors,
                c.by_category
            );
        }
    }
    plugins.shutdown().await;
    tracing::info!("pgdog stopped");
}

fn warn_about(config: &Config) {
    if config.general.auth_type != AuthType::Trust {
        for pool in config.pools.iter().filter(|p| p.password.is_none()) {
            tracing::warn!(
                "pool \"{}\" has no password: clients cannot log in to it with {}",
                pool.name,
                config.general.auth_type.as_str()
            );
        }
    }
}
