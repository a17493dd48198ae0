//! `SHOW MIRROR READINESS`, `SHOW MIRROR STATS`, `SHOW MIRROR QUERIES`,
//! `RESET MIRROR STATS`: the plugin host's view of the mirror, after delivering every
//! event sent so far.

use crate::admin::output::{ms, text, Output};
use crate::admin::AdminError;
use crate::plugins::{
    criteria_of, DatabaseReport, DatabaseStats, FingerprintStats, Judgement, ReadinessReport,
};
use crate::proxy::Proxy;
use std::collections::BTreeSet;

/// The readiness policy's verdict against `[general]`'s criteria, one text row per line:
/// overall first, then each database (or only `database`); with shadow policies
/// (`readiness_plugins`), each one's verdict and confidence beside it, and a
/// `Policies Disagree:` row when one differs from the verdict of record.
pub async fn readiness(proxy: &Proxy, database: Option<&str>) -> Result<Output, AdminError> {
    proxy.plugins.flush().await;
    let criteria = criteria_of(&proxy.config().general);
    let measured = crate::mirror::replication(&proxy.runtime().mirrors);
    let judgement =
        crate::mirror::sync::readiness::assess(&proxy.plugins, &criteria, &measured).await?;
    let report = &judgement.record;
    let rows = match database {
        None => with_shadows(report.to_text_rows(), &judgement),
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
                extensions: Default::default(),
            };
            let mut rows = vec![format!("Database: {name}")];
            rows.extend(single.to_text_rows());
            rows.extend(shadow_rows(&judgement, Some(name), ""));
            rows
        }
    };
    Ok(Output::lines("SHOW", "mirror_readiness", rows))
}

/// The report's rows with the shadow policies' rows after the overall `Policy:` row and
/// at the end of each database's section.
fn with_shadows(rows: Vec<String>, judgement: &Judgement) -> Vec<String> {
    if judgement.shadows.is_empty() {
        return rows;
    }
    let mut out = Vec::with_capacity(rows.len() + 4 * judgement.shadows.len());
    let mut section: Option<String> = None;
    let close = |out: &mut Vec<String>, section: &Option<String>| {
        if let Some(db) = section {
            out.extend(shadow_rows(judgement, Some(db), &format!("{db} ")));
        }
    };
    for row in rows {
        if let Some(db) = row.strip_prefix("Database: ") {
            close(&mut out, &section);
            section = Some(db.to_string());
            out.push(row);
            continue;
        }
        let policy_row = section.is_none() && row.starts_with("Policy: ");
        out.push(row);
        if policy_row {
            out.extend(shadow_rows(judgement, None, ""));
        }
    }
    close(&mut out, &section);
    out
}

/// One row per shadow policy for the overall verdict (`database` = None) or one
/// database, then `Policies Disagree:` when any differs from the verdict of record.
fn shadow_rows(judgement: &Judgement, database: Option<&str>, prefix: &str) -> Vec<String> {
    let pick = |r: &ReadinessReport| -> Option<DatabaseReport> {
        match database {
            None => Some(r.overall.clone()),
            Some(name) => r
                .databases
                .iter()
                .find(|d| d.database.as_str() == name)
                .cloned(),
        }
    };
    let status = |ready: bool| if ready { "READY" } else { "NOT READY" };
    let Some(record) = pick(&judgement.record) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut differing = Vec::new();
    for shadow in &judgement.shadows {
        match &shadow.report {
            Err(e) => rows.push(format!(
                "{prefix}Shadow Policy: {}: no verdict: {e}",
                shadow.name
            )),
            Ok(report) => {
                let Some(verdict) = pick(report) else {
                    continue;
                };
                let agrees = verdict.ready == record.ready;
                rows.push(format!(
                    "{prefix}Shadow Policy: {} ({}): {}, confidence {:.1}%{}",
                    shadow.name,
                    report.policy,
                    status(verdict.ready),
                    verdict.confidence,
                    if agrees { "" } else { " (disagrees)" }
                ));
                if !agrees {
                    differing.push(format!("{} says {}", report.policy, status(verdict.ready)));
                }
            }
        }
    }
    if !differing.is_empty() {
        rows.push(format!(
            "{prefix}Policies Disagree: {} says {} (the verdict of record); {}",
            judgement.record.policy,
            status(record.ready),
            differing.join("; ")
        ));
    }
    rows
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
    "skipped",
    "skipped_write",
    "skipped_read",
    "skipped_write_detected",
    "replication",
    "replication_lag_p99_ms",
    "replication_lag_p99_bytes",
];

/// One row per mirrored database (configured or seen in the statistics), then `total`.
pub async fn stats(proxy: &Proxy) -> Result<Output, AdminError> {
    proxy.plugins.flush().await;
    let snapshot = proxy.plugins.snapshot().await?;
    let runtime = proxy.runtime();
    let mirrors = &runtime.mirrors;
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
        let mut cells = row(
            name,
            target.map(|t| t.pool.name().to_string()),
            stats,
            depth,
        );
        cells.extend(judged(target.map(|t| &**t)));
        out.row(cells);
    }
    let mut total = row("total", None, &snapshot.overall, depth_total);
    total.extend(judged(None));
    out.row(total);
    Ok(out)
}

/// The `skipped*` and `replication*` cells of a source pool's row: NULL where they do not
/// apply (`mirror_statements = "all"`, no `mirror_sync`, the total row).
fn judged(target: Option<&crate::mirror::MirrorTarget>) -> Vec<Option<String>> {
    use crate::config::MirrorStatements;
    use crate::mirror::SkipReason;
    let skips = target.filter(|t| t.statements != MirrorStatements::All);
    let mut cells = vec![skips.map(|t| t.skips.total().to_string())];
    for reason in SkipReason::ALL {
        cells.push(skips.map(|t| t.skips.skipped(reason).to_string()));
    }
    let report = target.and_then(|t| t.sync.as_ref()).map(|g| g.report());
    cells.push(report.as_ref().map(|r| {
        match r.health {
            crate::mirror::sync::Health::Unknown => "starting".to_string(),
            _ => r
                .health
                .problem()
                .unwrap_or_else(|| "streaming".to_string()),
        }
    }));
    cells.push(
        report
            .as_ref()
            .and_then(|r| ms(r.lag_ms.p99.max(r.current_lag_ms))),
    );
    cells.push(
        report
            .as_ref()
            .map(|r| format!("{}", r.lag_bytes.p99 as u64)),
    );
    cells
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

const QUERY_COLUMNS: &[&str] = &[
    "ranking",
    "database",
    "fingerprint",
    "query",
    "requests",
    "compared",
    "mismatches",
    "mirror_errors",
    "shared_errors",
    "excluded",
    "excluded_reason",
    "mirror_p50_ms",
    "primary_p50_ms",
    "latency_ratio",
    "paired",
    "example",
];

/// Fingerprints shown per ranking.
const TOP: usize = 10;

/// Paired samples a fingerprint needs to be ranked by latency (the default policy judges a
/// fingerprint's latency ratio from the same number on).
const LATENCY_MIN_PAIRED: u64 = 20;

/// The top fingerprints by mismatches, by the mirror's own errors, by latency
/// regression (median of paired mirror/primary ratios) and by requests set aside from
/// comparison, then statements seen only once (the coverage criterion's tail), each a
/// block of rows named in the `ranking` column.
pub async fn queries(proxy: &Proxy, database: Option<&str>) -> Result<Output, AdminError> {
    proxy.plugins.flush().await;
    let snapshot = proxy.plugins.snapshot().await?;
    let all: Vec<&FingerprintStats> = snapshot
        .fingerprints
        .iter()
        .filter(|f| database.is_none_or(|d| f.database.as_str() == d))
        .collect();
    let mut out = Output::table("SHOW", QUERY_COLUMNS);
    let mut by_mismatches: Vec<_> = all.iter().filter(|f| f.mismatches > 0).collect();
    by_mismatches.sort_by_key(|f| std::cmp::Reverse(f.mismatches));
    let mut by_errors: Vec<_> = all.iter().filter(|f| f.errors > 0).collect();
    by_errors.sort_by_key(|f| std::cmp::Reverse(f.errors));
    let mut by_latency: Vec<_> = all
        .iter()
        .filter(|f| f.paired >= LATENCY_MIN_PAIRED)
        .collect();
    by_latency.sort_by(|a, b| b.ratio_p50.total_cmp(&a.ratio_p50));
    let mut by_excluded: Vec<_> = all.iter().filter(|f| f.excluded > 0).collect();
    by_excluded.sort_by_key(|f| std::cmp::Reverse(f.excluded));
    // The coverage criterion's tail: statements the mirror has run once only.
    let mut seen_once: Vec<_> = all.iter().filter(|f| f.requests == 1).collect();
    seen_once.sort_by_key(|f| (f.database.as_str(), f.fingerprint));
    for (ranking, list) in [
        ("mismatches", by_mismatches),
        ("errors", by_errors),
        ("latency", by_latency),
        ("excluded", by_excluded),
        ("seen_once", seen_once),
    ] {
        for f in list.into_iter().take(TOP) {
            out.row(query_row(ranking, f));
        }
    }
    Ok(out)
}

fn query_row(ranking: &str, f: &FingerprintStats) -> Vec<Option<String>> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let paired = f.paired > 0;
    vec![
        text(ranking),
        text(&f.database),
        text(format!("{:016x}", f.fingerprint)),
        text(&f.text),
        text(f.requests),
        text(f.compared),
        text(f.mismatches),
        text(f.errors),
        text(f.shared_errors),
        text(f.excluded),
        nonempty(&f.excluded_reason),
        if paired { ms(f.mirror_p50_ms) } else { None },
        if paired { ms(f.primary_p50_ms) } else { None },
        paired.then(|| format!("{:.2}", f.ratio_p50)),
        text(f.paired),
        nonempty(&f.example),
    ]
}

/// Forgets every count and latency (after the events sent so far are delivered), and
/// starts comparing answers again on mirrors that had dropped requests (the operator
/// re-synced their data, or accepts that it differs).
pub async fn reset(proxy: &Proxy) -> Result<Output, AdminError> {
    for target in proxy.runtime().mirrors.values() {
        target.forget_drops();
        target.skips.reset();
        if let Some(gate) = &target.sync {
            gate.reset();
        }
    }
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
