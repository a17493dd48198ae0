//! What the metrics read from the running proxy, and the plugin calls of a collection.
//!
//! [`view`] is the only code in `metrics/` that touches [`Proxy`]: everything else works
//! on the [`ProxyView`] it returns, so pointing metrics at another source of pools,
//! mirror targets, config and plugins is a change of that one function.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::histogram::bounds_with;
use super::sample::{database, MirrorSample, PoolSample, Sample};
use crate::config::Config;
use crate::plugins::{criteria_of, PluginHost, Verdicts};
use crate::proxy::Proxy;

/// The proxy as the metrics see it, read at one instant.
pub struct ProxyView {
    pub config: Arc<Config>,
    pub plugins: Arc<PluginHost>,
    pub shutdown: CancellationToken,
    pub pools: Vec<PoolSample>,
    /// Mirror queue depth per source pool.
    pub queues: Vec<(opentelemetry::KeyValue, u64)>,
    /// Skipped transactions and replication gates per source pool.
    pub mirrors: Vec<MirrorSample>,
    /// The replication gates' measures, for readiness.
    pub replication: Vec<crate::mirror::sync::readiness::Measured>,
    /// Drops while waiting for an exhausted mirror pool, per source pool.
    pub pool_exhausted: Vec<(opentelemetry::KeyValue, u64)>,
}

/// Reads the proxy: its config, plugins and shutdown token, the pool counters (relaxed
/// atomics the sessions bump) and the mirror queue depths.
pub fn view(proxy: &Proxy) -> ProxyView {
    let load = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
    let load64 = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let runtime = proxy.runtime();
    // A database's counters: its users' pools summed.
    let pools = runtime
        .pools
        .iter()
        .map(|pool| {
            let users = pool.with_users();
            let sum = |f: &dyn Fn(&crate::backend::pool::PoolStats) -> u64| {
                users.iter().map(|p| f(p.stats())).sum()
            };
            PoolSample {
                label: database(pool.name()),
                clients: sum(&|s| load(&s.clients)),
                servers: sum(&|s| load(&s.servers)),
                idle: sum(&|s| load(&s.idle)),
                waiting: sum(&|s| load(&s.waiting)),
                connects: sum(&|s| load64(&s.connects)),
                connect_errors: sum(&|s| load64(&s.connect_errors)),
                queries: sum(&|s| load64(&s.queries)),
                bytes_received: sum(&|s| load64(&s.bytes_received)),
                bytes_sent: sum(&|s| load64(&s.bytes_sent)),
                errors: sum(&|s| load64(&s.errors)),
            }
        })
        .collect();
    let queues = runtime
        .mirrors
        .values()
        .map(|t| (database(&t.database), t.queue_depth() as u64))
        .collect();
    let mirrors = runtime
        .mirrors
        .values()
        .filter_map(|t| mirror_sample(t))
        .collect();
    let pool_exhausted = runtime
        .mirrors
        .values()
        .map(|t| (database(&t.database), t.pool_exhausted_drops()))
        .collect();
    ProxyView {
        config: proxy.config(),
        plugins: proxy.plugins.clone(),
        shutdown: proxy.shutdown.clone(),
        pools,
        queues,
        mirrors,
        replication: crate::mirror::replication(&runtime.mirrors),
        pool_exhausted,
    }
}

/// What `target` skipped and its gate measured; `None` when it mirrors everything at once.
fn mirror_sample(target: &crate::mirror::MirrorTarget) -> Option<MirrorSample> {
    use crate::config::MirrorStatements;
    use crate::mirror::SkipReason;
    if target.statements == MirrorStatements::All && target.sync.is_none() {
        return None;
    }
    let skipped = match target.statements {
        MirrorStatements::All => Vec::new(),
        _ => SkipReason::ALL
            .iter()
            .map(|r| (r.as_str(), target.skips.skipped(*r)))
            .collect(),
    };
    Some(MirrorSample {
        label: database(&target.database),
        skipped,
        sync: target.sync.as_ref().map(|g| g.report()),
    })
}

/// One collection's sample: `view`'s counters, then (with mirror metrics on) the
/// plugins, after the events sent so far have reached them. Every plugin call runs off
/// the runtime's workers with a time limit; a failed or late call is logged and its
/// part left out (and so are the families it feeds), the rest is exported.
pub async fn sample(view: ProxyView) -> Sample {
    let mut sample = Sample {
        mirror_enabled: view.config.general.mirror_metrics_enabled,
        pools: view.pools,
        plugin_events_dropped: Some(view.plugins.dropped_events()),
        ..Sample::default()
    };
    if !sample.mirror_enabled {
        return sample;
    }
    sample.queues = view.queues;
    sample.mirrors = view.mirrors;
    sample.pool_exhausted = view.pool_exhausted;
    let plugins = &view.plugins;
    plugins.flush().await;
    sample.points = plugins.metric_points().await;
    let criteria = criteria_of(&view.config.general);
    sample.latency_bound_us = Some(view.config.general.mirror_max_latency_ms * 1000);
    let bounds = bounds_with(sample.latency_bound_us);
    // The gates' measures join the snapshot before a verdict: the one-call scrape
    // judges inside the stats plugin, so with gates the snapshot and verdict are had
    // apart (below).
    let scraped = match view.replication.is_empty() {
        true => plugins.scrape(&bounds, &criteria).await,
        false => Ok(None),
    };
    match scraped {
        Ok(Some(answer)) => {
            sample.set_snapshot(Arc::new(answer.snapshot));
            match answer.verdicts.into_option() {
                Some(verdicts) => sample.set_verdicts(verdicts),
                None => tracing::debug!("metrics: no readiness plugin"),
            }
            return sample;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::debug!("metrics: no stats snapshot: {e}");
            return sample;
        }
    }
    // A separate readiness plugin (or no `scrape`, or gates): a whole snapshot and report.
    let snapshot = match plugins.snapshot().await {
        Ok(mut snapshot) => {
            crate::mirror::sync::readiness::annotate_snapshot(&mut snapshot, &view.replication);
            Arc::new(snapshot)
        }
        Err(e) => {
            tracing::debug!("metrics: no stats snapshot: {e}");
            return sample;
        }
    };
    sample.set_snapshot(snapshot.clone());
    match plugins.assess_snapshot(snapshot, &criteria).await {
        Ok(report) => sample.set_verdicts(Verdicts::of(&report)),
        Err(e) => tracing::debug!("metrics: no readiness report: {e}"),
    }
    sample
}
