//! One scrape's worth of data, read from the proxy when Prometheus asks, and the
//! sorted [`View`]s of it the families are written from. Reading it costs
//! O(pools + databases + recorded latency buckets), whatever the traffic served.
//!
//! The data comes in four [`Source`]s, each of which some families need: the proxy's own
//! counters (at once), then, from the plugins and one after the other (the calls share
//! the plugins' locks), the metric points, the stats snapshot and the readiness
//! verdicts. The snapshot and the verdicts come from one call to the stats plugin when
//! it is also the readiness plugin (plugin API 2.1): latency distributions at the
//! histogram's bounds only and verdicts without the report's texts, so their cost does
//! not grow with what the plugin recorded. Otherwise (a separate readiness plugin, or
//! a plugin that answers the call as unsupported) from a whole snapshot and report.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::histogram::BOUNDS_US;
use super::text::escaped;
use crate::plugins::{
    Counts, DatabaseStats, MetricPoint, ReadinessVerdict, RecentLatency, StatsSnapshot, Verdicts,
};
use crate::proxy::Proxy;

/// Where a family's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Pool counters and mirror queue depths.
    Proxy,
    /// The plugins' metric points.
    Points,
    /// The stats plugin's snapshot.
    Snapshot,
    /// The readiness plugin's verdicts on that snapshot.
    Report,
}

impl Source {
    /// In the order they become available.
    pub const ALL: [Source; 4] = [
        Source::Proxy,
        Source::Points,
        Source::Snapshot,
        Source::Report,
    ];
}

/// What a plugin call produced.
pub enum Part {
    /// Plugins' metric points; with the recent-latency window when the stats plugin's
    /// `scrape` answer carried the spec family's data (see [`SpecRows`]).
    Points(Vec<MetricPoint>, Option<RecentLatency>),
    Snapshot(Arc<StatsSnapshot>),
    Verdicts(Verdicts),
}

/// Counters of one pool.
#[derive(Debug, Clone)]
pub struct PoolSample {
    /// The pool name: the `database` label.
    pub name: String,
    pub clients: u64,
    pub servers: u64,
    pub idle: u64,
    pub waiting: u64,
    pub connects: u64,
    pub connect_errors: u64,
    pub queries: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub errors: u64,
}

/// Everything one scrape exports.
#[derive(Debug, Default)]
pub struct Scrape {
    /// `[general] mirror_metrics_enabled`: when false, no mirror family is observed.
    pub mirror_enabled: bool,
    /// The plugins' metric points (the spec's `mirror` family comes from here).
    pub points: Vec<MetricPoint>,
    /// The stats plugin's snapshot (idiomatic `pgdog_mirror_*` families).
    pub snapshot: Option<Arc<StatsSnapshot>>,
    /// The spec family's recent-latency window, when the host writes that family from
    /// the snapshot.
    pub recent: Option<RecentLatency>,
    /// The readiness plugin's verdicts on `snapshot`.
    pub verdicts: Option<Verdicts>,
    pub pools: Vec<PoolSample>,
    /// Mirror queue depth per source pool.
    pub queues: Vec<(String, u64)>,
}

impl Scrape {
    /// Reads the proxy and its plugins. Blocking: plugin calls take the plugins' locks
    /// (the event thread may hold one for the length of a batch). Flush pending events
    /// first (async).
    pub fn collect(proxy: &Proxy) -> Scrape {
        let mirror = proxy.config().general.mirror_metrics_enabled;
        let mut scrape = Scrape::own(proxy, mirror);
        if mirror {
            read_plugins(proxy, |part| {
                scrape.add(part);
            });
        }
        scrape
    }

    /// The proxy's own counters: pools, and mirror queues when `mirror` metrics are on.
    pub fn own(proxy: &Proxy, mirror: bool) -> Scrape {
        let pools = proxy
            .runtime()
            .pools
            .iter()
            .map(|pool| {
                let s = pool.stats();
                let load = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
                let load64 = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                PoolSample {
                    name: pool.name().to_string(),
                    clients: load(&s.clients),
                    servers: load(&s.servers),
                    idle: load(&s.idle),
                    waiting: load(&s.waiting),
                    connects: load64(&s.connects),
                    connect_errors: load64(&s.connect_errors),
                    queries: load64(&s.queries),
                    bytes_received: load64(&s.bytes_received),
                    bytes_sent: load64(&s.bytes_sent),
                    errors: load64(&s.errors),
                }
            })
            .collect();
        let mut scrape = Scrape {
            mirror_enabled: mirror,
            pools,
            ..Scrape::default()
        };
        if scrape.mirror_enabled {
            scrape.queues = proxy
                .runtime()
                .mirrors
                .values()
                .map(|t| (t.database.to_string(), t.queue_depth() as u64))
                .collect();
        }
        scrape
    }

    /// Stores a plugin call's result; returns the source it completes.
    pub fn add(&mut self, part: Part) -> Source {
        match part {
            Part::Points(points, recent) => {
                self.points = points;
                self.recent = recent;
                Source::Points
            }
            Part::Snapshot(snapshot) => {
                self.snapshot = Some(snapshot);
                Source::Snapshot
            }
            Part::Verdicts(verdicts) => {
                self.verdicts = Some(verdicts);
                Source::Report
            }
        }
    }
}

/// Calls the plugins: metric points, snapshot, then the readiness verdicts on that
/// snapshot, handing each result to `got` as soon as it is there. A failed call is
/// logged and its part left out (and so are the families it feeds).
pub fn read_plugins(proxy: &Proxy, mut got: impl FnMut(Part)) {
    let criteria = crate::plugins::criteria_of(&proxy.config().general);
    match proxy.plugins.scrape(&BOUNDS_US, &criteria) {
        Ok(Some(answer)) => {
            got(Part::Snapshot(Arc::new(answer.snapshot)));
            match answer.verdicts.into_option() {
                Some(verdicts) => got(Part::Verdicts(verdicts)),
                None => tracing::debug!("metrics: no readiness plugin"),
            }
            // The spec family from the answer: the stats plugin's points are not needed.
            let recent = answer.recent.into_option();
            let points = match recent {
                Some(_) => proxy.plugins.metric_points_besides_stats(),
                None => proxy.plugins.metric_points(),
            };
            got(Part::Points(points, recent));
            return;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::debug!("metrics: no stats snapshot: {e}");
            got(Part::Points(proxy.plugins.metric_points(), None));
            return;
        }
    }
    // A separate readiness plugin (or no `scrape`): a whole snapshot and report.
    got(Part::Points(proxy.plugins.metric_points(), None));
    let snapshot = match proxy.plugins.snapshot() {
        Ok(snapshot) => Arc::new(snapshot),
        Err(e) => {
            tracing::debug!("metrics: no stats snapshot: {e}");
            return;
        }
    };
    got(Part::Snapshot(snapshot.clone()));
    match proxy.plugins.assess_snapshot(&snapshot, &criteria) {
        Ok(report) => got(Part::Verdicts(Verdicts::of(&report))),
        Err(e) => tracing::debug!("metrics: no readiness report: {e}"),
    }
}

/// An item of a per-database list, with its name escaped as a label value.
pub struct Named<'a, T> {
    pub item: &'a T,
    pub label: Cow<'a, str>,
}

/// What the families of one [`Source`] read from a [`Scrape`], in exposition order:
/// every list sorted by database name, as the Prometheus registry sorted series (by
/// label values), each name escaped once for the dozens of lines that carry it. Lists of
/// other sources are empty, and so are the mirror ones when mirror metrics are off.
/// Sorting costs O(n) when the input is sorted already (pools come sorted from the
/// proxy, databases from the stats plugin).
pub struct View<'a> {
    pub points: &'a [MetricPoint],
    /// The spec family's rows, when written from the stats plugin's `scrape` answer.
    pub spec: Option<SpecRows<'a>>,
    pub pools: Vec<Named<'a, PoolSample>>,
    pub databases: Vec<Named<'a, DatabaseStats>>,
    pub reports: Vec<Named<'a, ReadinessVerdict>>,
    pub queues: Vec<Named<'a, (String, u64)>>,
}

impl<'a> View<'a> {
    pub fn new(scrape: &'a Scrape, source: Source) -> Self {
        let mut view = View {
            points: &[],
            spec: None,
            pools: Vec::new(),
            databases: Vec::new(),
            reports: Vec::new(),
            queues: Vec::new(),
        };
        let mirror = scrape.mirror_enabled;
        match source {
            Source::Proxy => {
                view.pools = sorted(&scrape.pools, |p| &p.name);
                if mirror {
                    view.queues = sorted(&scrape.queues, |q| &q.0);
                }
            }
            Source::Points if mirror => {
                view.points = &scrape.points;
                view.spec = scrape
                    .recent
                    .zip(scrape.snapshot.as_deref())
                    .map(|(recent, snapshot)| SpecRows::new(snapshot, recent));
            }
            Source::Snapshot if mirror => {
                if let Some(s) = &scrape.snapshot {
                    view.databases = sorted(&s.databases, |d| d.database.as_str());
                }
            }
            Source::Report if mirror => {
                if let Some(v) = &scrape.verdicts {
                    view.reports = sorted(&v.databases, |d| d.database.as_str());
                }
            }
            _ => {}
        }
        view
    }
}

/// The spec's `mirror` family, from the stats snapshot's counts and the recent-latency
/// window: the same series, with the same values, as the bundled plugin's metric points
/// (`plugins/mirror-stats/src/metrics.rs`), without building 4 points per database.
pub struct SpecRows<'a> {
    overall: Counts,
    databases: &'a [DatabaseStats],
    recent: RecentLatency,
}

impl<'a> SpecRows<'a> {
    fn new(snapshot: &'a StatsSnapshot, recent: RecentLatency) -> Self {
        let mut overall = Counts::default();
        for d in snapshot.databases.iter() {
            overall.add(&d.counts);
        }
        SpecRows {
            overall,
            databases: &snapshot.databases,
            recent,
        }
    }

    pub fn databases_len(&self) -> usize {
        self.databases.len()
    }

    /// Every series: its labels (as the plugin names them; the first `n` pairs) and value.
    pub fn series(&self) -> impl Iterator<Item = ([(&'a str, &'a str); 2], usize, f64)> + '_ {
        let c = &self.overall;
        let e = &c.by_category;
        let one = |k: &'static str, v: &'static str, value: f64| ([(k, v), ("", "")], 1, value);
        let totals = [
            one("type", "total", c.total as f64),
            one("type", "mirrored", c.mirrored as f64),
            one("type", "dropped", c.dropped as f64),
            one("error_type", "connection", e.connection as f64),
            one("error_type", "query", e.query as f64),
            one("error_type", "timeout", e.timeout as f64),
            one("error_type", "buffer_full", e.buffer_full as f64),
            one("error_type", "protocol", e.protocol as f64),
            one("stat", "avg_latency_ms", self.recent.avg_ms),
            one("stat", "max_latency_ms", self.recent.max_ms),
        ];
        let per_database = self.databases.iter().flat_map(|d| {
            let name = d.database.as_str();
            let c = &d.counts;
            [
                ("mirrored", c.mirrored),
                ("dropped", c.dropped),
                ("errors", c.errors),
                ("total", c.total),
            ]
            .map(|(metric, v)| ([("database", name), ("metric", metric)], 2, v as f64))
        });
        totals.into_iter().chain(per_database)
    }
}

/// `items`, stably sorted by `name`, with their names escaped.
fn sorted<'a, T>(items: &'a [T], name: impl Fn(&'a T) -> &'a str) -> Vec<Named<'a, T>> {
    let mut refs: Vec<&T> = items.iter().collect();
    if refs.windows(2).any(|w| name(w[0]) > name(w[1])) {
        refs.sort_by(|a, b| name(a).cmp(name(b)));
    }
    refs.into_iter()
        .map(|item| Named {
            item,
            label: escaped(name(item)),
        })
        .collect()
}
