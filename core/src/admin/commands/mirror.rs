//! `SHOW MIRROR READINESS`, `SHOW MIRROR STATS`, `RESET MIRROR STATS`: the plugin host's
//! view of the mirror, after delivering every event sent so far.

use crate::admin::output::{ms, text, Output};
use crate::admin::AdminError;
use crate::plugins::{criteria_of, DatabaseStats, ReadinessReport};
use crate::proxy::Proxy;
use std::collections::BTreeSet;

/// The readiness policy's verdict against `[general]`'s criteria, one text row per line:
/// overall first, then each database (or only `database`).
pub async fn readiness(proxy: &Proxy, database: Option<&str>) -> Result<Output, AdminError> {
    proxy.plugins.flush().await;
    let criteria = criteria_of(&proxy.config().general);
    let report = proxy.plugins.assess(&criteria)?;
    let rows = match database {
        None => report.to_text_rows(),
        Some(name) => {
            let Some(db) = report
                .databases
                .iter()
                .find(|d| d.database.as_str() == name)
            else {
                return Err(AdminError::NoSuchDatabase {
                    name: name.to_string(),
                    known: join(report.databases.iter().map(|d| d.database.as_str())),
                });
            };
            let single = ReadinessReport {
                policy: report.policy.clone(),
                overall: db.clone(),
                databases: Default::default(),
            };
            let mut rows = vec![format!("Database: {name}")];
            rows.extend(single.to_text_rows());
            rows
        }
    };
    Ok(Output::lines("SHOW", "mirror_readiness", rows))
}

const STATS_COLUMNS: &[&str] = &[
    "database",
    "mirror_pool",
    "total",
    "mirrored",
    "dropped",
    "errors",
    "err_connection",
    "err_query",
    "err_timeout",
    "err_buffer_full",
    "err_protocol",
    "err_other",
    "avg_ms",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "queue_depth",
];

/// One row per mirrored database (configured or seen in the statistics), then `total`.
pub async fn stats(proxy: &Proxy) -> Result<Output, AdminError> {
    proxy.plugins.flush().await;
    let snapshot = proxy.plugins.snapshot()?;
    let mirrors = proxy.mirrors();
    let names: BTreeSet<&str> = mirrors
        .keys()
        .map(String::as_str)
        .chain(snapshot.databases.iter().map(|d| d.database.as_str()))
        .collect();
    let mut out = Output::table("SHOW", STATS_COLUMNS);
    let empty = DatabaseStats::default();
    let mut depth_total = 0;
    for name in names {
        let stats = snapshot
            .databases
            .iter()
            .find(|d| d.database.as_str() == name)
            .unwrap_or(&empty);
        let target = mirrors.get(name);
        let depth = target.map_or(0, |t| t.queue_depth());
        depth_total += depth;
        out.row(row(
            name,
            target.map(|t| t.pool.name().to_string()),
            stats,
            depth,
        ));
    }
    out.row(row("total", None, &snapshot.overall, depth_total));
    Ok(out)
}

fn row(
    name: &str,
    mirror_pool: Option<String>,
    s: &DatabaseStats,
    depth: usize,
) -> Vec<Option<String>> {
    let c = &s.counts;
    let e = &c.by_category;
    let lat = &s.mirror_latency;
    // No latency without samples: NULL rather than a misleading 0.
    let latency = |v: f64| if lat.samples == 0 { None } else { ms(v) };
    vec![
        text(name),
        mirror_pool,
        text(c.total),
        text(c.mirrored),
        text(c.dropped),
        text(c.errors),
        text(e.connection),
        text(e.query),
        text(e.timeout),
        text(e.buffer_full),
        text(e.protocol),
        text(e.other),
        latency(lat.avg_ms),
        latency(lat.p50_ms),
        latency(lat.p99_ms),
        latency(lat.max_ms),
        text(depth),
    ]
}

/// Forgets every count and latency (after the events sent so far are delivered).
pub async fn reset(proxy: &Proxy) -> Result<Output, AdminError> {
    proxy
        .plugins
        .reset()
        .await
        .map_err(|errors| AdminError::Reset(join(errors.iter().map(|e| e.to_string()))))?;
    Ok(Output::done("RESET"))
}

fn join<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<String> = items.map(|s| s.as_ref().to_string()).collect();
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}
