//! `SHOW POOLS`, `SHOW CLIENTS`, `SHOW SERVERS`: what the pools' counters and the client
//! registry know.

use crate::admin::output::{text, Output};
use crate::proxy::Proxy;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// PgBouncer's columns first (a row per user and database, `database` being the server's
/// database name here), then pgdog's own.
const POOL_COLUMNS: &[&str] = &[
    "name",
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "host",
    "port",
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

/// A row per user of each pool: the configured user's, then the users of `[[users]]` and
/// `auth_query` who logged in. `cl_active` counts clients not waiting for a server
/// connection (PgBouncer counts idle clients there too), `cl_waiting` the callers waiting
/// (clients, logins, and mirror sessions on a mirror pool).
pub fn pools(proxy: &Proxy) -> Output {
    let runtime = proxy.runtime();
    let mut out = Output::table("SHOW", POOL_COLUMNS);
    for configured in runtime.pools.iter() {
        let mode = runtime
            .config
            .pool(configured.name())
            .and_then(|p| p.pool_mode)
            .unwrap_or(runtime.config.general.pool_mode);
        let mirror_to = runtime
            .mirrors
            .get(configured.name())
            .map(|t| t.pool.name().to_string());
        for pool in configured.with_users() {
            let s = pool.stats();
            let servers = s.servers.load(Ordering::Relaxed);
            let idle = s.idle.load(Ordering::Relaxed);
            let waiting = s.waiting.load(Ordering::Relaxed);
            let clients = s.clients.load(Ordering::Relaxed);
            let maxwait = pool.max_wait();
            let addr = pool.addr();
            out.row(vec![
                text(pool.name()),
                text(&addr.database),
                text(&addr.user),
                text(clients.saturating_sub(waiting)),
                text(waiting),
                text(servers.saturating_sub(idle)),
                text(idle),
                text(maxwait.as_secs()),
                text(maxwait.subsec_micros()),
                text(mode.as_str()),
                text(&addr.host),
                text(addr.port),
                text(pool.size()),
                text(clients),
                text(servers),
                text(servers.saturating_sub(idle)),
                text(idle),
                text(waiting),
                text(s.connects.load(Ordering::Relaxed)),
                text(s.connect_errors.load(Ordering::Relaxed)),
                text(pool.is_disabled()),
                text(pool.is_paused()),
                mirror_to.clone(),
            ]);
        }
    }
    out
}

/// PgBouncer's `SHOW STATS`, a row per pool (its users summed), since start: totals, and
/// averages per transaction, query and checkout in microseconds (PgBouncer's `avg_*`
/// columns are rates over its last stats period; these are means since start).
pub fn stats(proxy: &Proxy) -> Output {
    let mut out = Output::table(
        "SHOW",
        &[
            "database",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_xact_time",
            "total_query_time",
            "total_wait_time",
            "total_server_assignment_count",
            "avg_xact_time",
            "avg_query_time",
            "avg_wait_time",
        ],
    );
    for configured in proxy.runtime().pools.iter() {
        let mut sum = [0u64; 8];
        for pool in configured.with_users() {
            let s = pool.stats();
            let values = [
                &s.xacts,
                &s.queries,
                &s.bytes_received,
                &s.bytes_sent,
                &s.xact_us,
                &s.query_us,
                &s.wait_us,
                &s.checkouts,
            ];
            for (total, v) in sum.iter_mut().zip(values) {
                *total += v.load(Ordering::Relaxed);
            }
        }
        let [xacts, queries, _, _, xact_us, query_us, wait_us, checkouts] = sum;
        let mean = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
        let mut row = vec![text(configured.name())];
        row.extend(sum.map(text));
        row.extend([
            text(mean(xact_us, xacts)),
            text(mean(query_us, queries)),
            text(mean(wait_us, checkouts)),
        ]);
        out.row(row);
    }
    out
}

/// Transaction mode's prepared statements: the server-side name, the query, how many
/// client statements stand for it now, and how often it was prepared on a server
/// connection.
pub fn prepared_statements(proxy: &Proxy) -> Output {
    let mut out = Output::table("SHOW", &["name", "statement", "clients", "prepares"]);
    for (name, r) in proxy.statements.list() {
        out.row(vec![
            text(name),
            text(r.text),
            text(r.clients),
            text(r.prepares),
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
    for c in proxy.clients.list() {
        let age = c.connected_at.elapsed().unwrap_or_default().as_secs_f64();
        out.row(vec![
            text(c.id),
            text(&c.user),
            text(&c.pool),
            text(c.peer.ip()),
            text(c.peer.port()),
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
