//! `DISABLE`/`ENABLE`, `KILL`, `PAUSE`/`RESUME`, `SHUTDOWN`.

use super::pool;
use crate::admin::output::Output;
use crate::admin::AdminError;
use crate::proxy::Proxy;

/// A disabled pool refuses new clients and new server connections (its idle ones are
/// closed). For a mirror pool, the mirror workers then count each request as a
/// `connection` error: the spec's "stop the mirror" test.
pub fn set_disabled(proxy: &Proxy, name: &str, disabled: bool) -> Result<Output, AdminError> {
    pool(proxy, name)?.set_disabled(disabled);
    Ok(Output::done(if disabled { "DISABLE" } else { "ENABLE" }))
}

/// Drops the pool's server connections: idle ones now; clients of the pool are
/// disconnected at their next idle point (a running transaction finishes first) and their
/// connections closed rather than reused.
pub fn kill(proxy: &Proxy, name: &str) -> Result<Output, AdminError> {
    let pool = pool(proxy, name)?;
    pool.kill();
    for client in proxy.clients.list() {
        if client.pool == name {
            client.stop.cancel();
        }
    }
    Ok(Output::done("KILL"))
}

/// `PAUSE`: new server checkouts wait until `RESUME` (every pool, or the one named).
pub fn set_paused(proxy: &Proxy, name: Option<&str>, paused: bool) -> Result<Output, AdminError> {
    match name {
        Some(name) => pool(proxy, name)?.set_paused(paused),
        None => proxy
            .runtime()
            .pools
            .iter()
            .for_each(|p| p.set_paused(paused)),
    }
    Ok(Output::done(if paused { "PAUSE" } else { "RESUME" }))
}

/// Starts the same graceful shutdown as SIGTERM.
pub fn shutdown(proxy: &Proxy) -> Output {
    tracing::info!("shutdown requested from the admin console");
    proxy.shutdown.cancel();
    Output::done("SHUTDOWN")
}
