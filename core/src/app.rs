//! Start-up and shutdown: bind the listeners, run until a signal, then drain.

use crate::config::{AuthType, Config};
use crate::frontend::{listener, Frontend};
use crate::mirror;
use crate::plugins::PluginHost;
use crate::proxy::Proxy;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
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

/// Binds `host:port`, naming the listener in errors.
pub async fn bind(what: &'static str, host: &str, port: u16) -> Result<TcpListener, StartError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: format!("{host}:{port}"),
            source,
        })
}

/// Runs the proxy until SIGTERM/SIGINT (or `proxy.shutdown` is cancelled), then stops
/// accepting, lets running transactions finish for up to `shutdown_timeout_ms`, and returns.
pub async fn run(
    config: Config,
    config_path: PathBuf,
    plugins: PluginHost,
) -> Result<(), StartError> {
    warn_about(&config);
    let g = config.general.clone();
    let plugins = Arc::new(plugins);
    let proxy = Proxy::new(config, config_path, plugins.clone())?;
    check_sync(&proxy).await?;
    let frontend = Arc::new(Frontend {
        runtime: proxy.runtime.clone(),
        cancel: Default::default(),
        clients: proxy.clients.clone(),
        shutdown: proxy.shutdown.clone(),
        sessions: tokio_util::task::TaskTracker::new(),
        client_slots: Arc::new(tokio::sync::Semaphore::new(g.max_client_conn)),
        mirrors: mirror::Workers::new(plugins.events()),
        statements: proxy.statements.clone(),
    });
    let listener = bind("proxy", &g.host, g.port).await?;
    tracing::info!(
        "pgdog {} listening on {}:{}",
        env!("CARGO_PKG_VERSION"),
        g.host,
        g.port
    );

    let metrics_listener = bind("metrics", g.metrics_host(), g.metrics_port).await?;
    tracing::info!(
        "metrics on http://{}:{}/metrics",
        g.metrics_host(),
        g.metrics_port
    );
    let metrics = tokio::spawn(crate::metrics::serve(proxy.clone(), metrics_listener));
    // admin_port = 0 turns the admin console off.
    let admin = match g.admin_port {
        0 => None,
        port => {
            let admin = bind("admin", &g.host, port).await?;
            Some(tokio::spawn(crate::admin::serve(proxy.clone(), admin)))
        }
    };
    let accept = tokio::spawn(listener::serve(frontend.clone(), listener));
    wait_for_signal(&proxy).await;
    proxy.shutdown.cancel();
    let _ = accept.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let _ = metrics.await;
    frontend.sessions.close();
    let timeout = Duration::from_millis(g.shutdown_timeout_ms);
    if tokio::time::timeout(timeout, frontend.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} client session(s) still busy after shutdown_timeout_ms = {}; closing them",
            frontend.sessions.len(),
            g.shutdown_timeout_ms
        );
    }
    if !frontend.mirrors.drain(Duration::from_secs(2)).await {
        tracing::warn!("mirror queues not drained within 2 s of shutdown; their requests are lost");
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
    Ok(())
}

async fn wait_for_signal(proxy: &Arc<Proxy>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        _ = proxy.shutdown.cancelled() => tracing::info!("shutdown requested"),
    }
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
