//! `SHOW POOLS`, `SHOW CLIENTS`, `SHOW SERVERS`: what the pools' counters and the client
//! registry know.

use crate::admin::output::{text, Output};
use crate::proxy::Proxy;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

const POOL_COLUMNS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "user",
    "pool_size",
    "clients",
    "servers",
    "active",
    "idle",
    "waiting",
    "connects",
    "connect_errors",
    "disabled",
    "paused",
    "mirror_to",
];

pub fn pools(proxy: &Proxy) -> Output {
    let runtime = proxy.runtime();
    let mut out = Output::table("SHOW", POOL_COLUMNS);
    for pool in runtime.pools.iter() {
        let s = pool.stats();
        let servers = s.servers.load(Ordering::Relaxed);
        let idle = s.idle.load(Ordering::Relaxed);
        let addr = pool.addr();
        out.row(vec![
            text(pool.name()),
            text(&addr.host),
            text(addr.port),
            text(&addr.database),
            text(&addr.user),
            text(pool.size()),
            text(s.clients.load(Ordering::Relaxed)),
            text(servers),
            text(servers.saturating_sub(idle)),
            text(idle),
            text(s.waiting.load(Ordering::Relaxed)),
            text(s.connects.load(Ordering::Relaxed)),
            text(s.connect_errors.load(Ordering::Relaxed)),
            text(pool.is_disabled()),
            text(pool.is_paused()),
            runtime
                .mirrors
                .get(pool.name())
                .map(|t| t.pool.name().to_string()),
        ]);
    }
    out
}

pub fn clients(proxy: &Proxy) -> Output {
    let mut out = Output::table(
        "SHOW",
        &[
            "id",
            "user",
            "pool",
            "addr",
            "port",
            "state",
            "requests",
            "connected_secs",
            "server_pid",
            "tls",
        ],
    );
    // A Unix socket client has no port of its own: the port of the socket it came
    // through, as PgBouncer shows.
    let port = proxy.config().general.port;
    for c in proxy.clients.list() {
        let age = c.connected_at.elapsed().unwrap_or_default().as_secs_f64();
        out.row(vec![
            text(c.id),
            text(&c.user),
            text(&c.pool),
            text(c.peer.addr_text()),
            text(c.peer.port().unwrap_or(port)),
            text(c.activity()),
            text(c.tracker.requests()),
            Some(format!("{age:.1}")),
            c.tracker.server_pid().map(|p| p.to_string()),
            c.tls.map(str::to_string),
        ]);
    }
    out
}

/// Each pool's server connections: those held by a client session (with the client),
/// the idle ones, and the rest (held by a mirror worker or a login in progress) without
/// details.
pub fn servers(proxy: &Proxy) -> Output {
    let mut out = Output::table(
        "SHOW",
        &[
            "pool",
            "host",
            "port",
            "database",
            "state",
            "pid",
            "client_id",
            "tls",
        ],
    );
    let mut by_pool: HashMap<String, Vec<_>> = HashMap::new();
    for c in proxy.clients.list() {
        by_pool.entry(c.pool.clone()).or_default().push(c);
    }
    for pool in proxy.runtime().pools.iter() {
        let addr = pool.addr();
        let base = || {
            vec![
                text(pool.name()),
                text(&addr.host),
                text(addr.port),
                text(&addr.database),
            ]
        };
        let held = by_pool.remove(pool.name()).unwrap_or_default();
        for c in &held {
            let mut row = base();
            row.extend([
                text(format!("client ({})", c.activity())),
                text(c.tracker.server_pid().unwrap_or_default()),
                text(c.id),
                c.server_tls.map(str::to_string),
            ]);
            out.row(row);
        }
        let idle = pool.idle_servers();
        for (pid, tls) in &idle {
            let mut row = base();
            row.extend([text("idle"), text(pid), None, tls.map(str::to_string)]);
            out.row(row);
        }
        let servers = pool.stats().servers.load(Ordering::Relaxed);
        for _ in 0..servers.saturating_sub(held.len() + idle.len()) {
            let mut row = base();
            row.extend([text("mirror or login"), None, None, None]);
            out.row(row);
        }
    }
    out
}
