//! The readiness policy's inputs, rebuilt from Prometheus' sums over every proxy.
//!
//! Every figure the bundled policy reads is a count (`pgdog_stats_math::anytime`), and
//! counts add up across proxies, so the fleet's statistics are the sums of the families
//! pgdog exports (`docs/metrics.md`, "Fleet readiness"):
//!
//! | input | from |
//! |---|---|
//! | mirrored, errors, dropped | `pgdog_mirror_requests_total` by `outcome` |
//! | drops of a full queue | `outcome="dropped"` less `pgdog_mirror_pool_exhausted_total` |
//! | errors by category | `pgdog_mirror_errors_total` by `category` |
//! | mismatched, compared, shared errors | `pgdog_mirror_mismatches_total`, `_compared_total`, `_shared_errors_total` |
//! | latency samples over the bound | `pgdog_mirror_latency_seconds_bucket` at `le` = the bound (pgdog adds that edge) |
//! | error classes | `pgdog_mirror_error_classes_total` by `class` |
//! | coverage | `pgdog_mirror_statement_requests_total`, `pgdog_mirror_statements_seen_once` |
//! | observation window | the earliest `pgdog_mirror_first_event_timestamp_seconds` |
//!
//! What is not a count cannot be summed and is left out rather than made up (see
//! [`NOT_FROM_PROMETHEUS`]): per-fingerprint detail, and the primary's latency.
//! Coverage sums each proxy's statements seen once; a statement seen once on each of two
//! proxies was seen twice, so the fleet's estimate can only be overstated, never
//! understated (the report says so).

use std::collections::BTreeMap;

use super::prometheus::{quote, Endpoint, PrometheusError, Sample};
use crate::plugins::{DatabaseStats, StatsSnapshot};
use pgdog_plugin_api::{Counts, Coverage, ExtensionValue, LatencyBucket, LatencySummary};

/// What the report says cannot come from Prometheus.
pub const NOT_FROM_PROMETHEUS: &str = "per-fingerprint detail (the statements behind mismatches, errors and latency regressions, their examples, the worst fingerprint of each error class) and the primary's latency (the latency-ratio criterion is not judged); run SHOW MIRROR QUERIES on each proxy for those";

/// The figures of one database (or all of them), as Prometheus sums them.
#[derive(Debug, Default, Clone)]
struct Raw {
    counts: Counts,
    /// Cumulative count per bucket edge (µs; `u64::MAX` for `+Inf`).
    cumulative: BTreeMap<u64, f64>,
    latency_sum_s: f64,
    coverage: Option<Coverage>,
    classes: BTreeMap<String, u64>,
    first_event_s: Option<f64>,
    /// Drops because the mirror pool was exhausted (the proxy's `pool_size`), not the
    /// queue: not counted as `buffer_full`.
    pool_exhausted: u64,
}

impl Raw {
    fn add(&mut self, other: &Raw) {
        self.counts.add(&other.counts);
        for (le, n) in &other.cumulative {
            *self.cumulative.entry(*le).or_default() += n;
        }
        self.latency_sum_s += other.latency_sum_s;
        if let Some(c) = &other.coverage {
            self.coverage.get_or_insert_with(Coverage::default).add(c);
        }
        for (class, n) in &other.classes {
            *self.classes.entry(class.clone()).or_default() += n;
        }
        self.first_event_s = match (self.first_event_s, other.first_event_s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.pool_exhausted += other.pool_exhausted;
    }

    fn to_stats(&self, database: &str) -> DatabaseStats {
        let mut stats = DatabaseStats {
            database: database.into(),
            counts: self.counts,
            mirror_latency: latency(&self.cumulative, self.latency_sum_s),
            first_event_unix_us: self.first_event_s.map(|s| (s * 1e6) as u64).into(),
            ..DatabaseStats::default()
        };
        if let Some(c) = self.coverage {
            c.write(&mut stats.extensions);
        }
        for (class, n) in &self.classes {
            let name = format!("errors.class.{class}");
            stats.extensions.set(&name, ExtensionValue::Count(*n));
        }
        stats
    }
}

/// A latency summary from cumulative buckets: counts per bucket, quantiles and maximum at
/// bucket edges (the upper edge of the bucket holding them; the last finite edge when in
/// `+Inf`).
fn latency(cumulative: &BTreeMap<u64, f64>, sum_s: f64) -> LatencySummary {
    let total = cumulative.get(&u64::MAX).copied().unwrap_or(0.0).round() as u64;
    if total == 0 {
        return LatencySummary::default();
    }
    let mut buckets = Vec::with_capacity(cumulative.len());
    let mut previous = 0.0;
    for (&le, &c) in cumulative {
        let count = (c - previous).max(0.0).round() as u64;
        previous = c.max(previous);
        buckets.push(LatencyBucket { le_us: le, count });
    }
    let last_finite = cumulative.keys().rev().find(|&&le| le != u64::MAX).copied();
    let edge_ms = |le: u64| match (le, last_finite) {
        (u64::MAX, Some(f)) => f as f64 / 1000.0,
        (u64::MAX, None) => 0.0,
        (le, _) => le as f64 / 1000.0,
    };
    let at = |q: f64| {
        let rank = (q * total as f64).ceil().max(1.0);
        let le = cumulative
            .iter()
            .find(|(_, &c)| c >= rank)
            .map_or(u64::MAX, |(&le, _)| le);
        edge_ms(le)
    };
    let max = buckets
        .iter()
        .rev()
        .find(|b| b.count > 0)
        .map_or(0.0, |b| edge_ms(b.le_us));
    LatencySummary {
        samples: total,
        avg_ms: sum_s * 1000.0 / total as f64,
        max_ms: max,
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        buckets: buckets.into(),
    }
}

/// The fleet's statistics and how many proxies report each database.
#[derive(Debug)]
pub struct FleetInputs {
    pub snapshot: StatsSnapshot,
    /// Database -> proxies (Prometheus series) reporting it.
    pub proxies: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error("Prometheus at {url} has no pgdog mirror series{which}: is it scraping the proxies (their metrics_port), and have they mirrored traffic?")]
    NoData { url: String, which: String },
    #[error("the proxies export no latency bucket at the readiness bound, mirror_max_latency_ms = {bound_ms} (le=\"{le}\"): pgdog adds that edge at its own configured bound, so give this command the proxies' pgdog.toml (--config), or the same mirror_max_latency_ms")]
    NoBoundBucket { bound_ms: u64, le: String },
}

/// `{database="NAME"}` (or nothing), with extra matchers.
fn selector(database: Option<&str>, extra: &[(&str, &str)]) -> String {
    let matchers: Vec<String> = database
        .map(|d| format!("database={}", quote(d)))
        .into_iter()
        .chain(extra.iter().map(|(k, v)| format!("{k}={}", quote(v))))
        .collect();
    if matchers.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", matchers.join(","))
    }
}

/// A series' value as a count (NaN and negatives read as 0).
fn count(s: &Sample) -> u64 {
    if s.value.is_finite() {
        s.value.max(0.0).round() as u64
    } else {
        0
    }
}

/// The figures per database, filled family by family.
struct Reader<'a> {
    prometheus: &'a Endpoint,
    /// `{database="..."}` or nothing.
    sel: String,
    raw: BTreeMap<String, Raw>,
}

impl Reader<'_> {
    /// Runs `promql` and hands each series to `f` with its database's figures.
    async fn each(
        &mut self,
        promql: String,
        f: impl Fn(&mut Raw, &Sample),
    ) -> Result<(), PrometheusError> {
        for s in self.prometheus.query(&promql).await? {
            f(
                self.raw.entry(s.label("database").to_string()).or_default(),
                &s,
            );
        }
        Ok(())
    }

    /// Requests by outcome and errors by category.
    async fn counts(&mut self) -> Result<(), PrometheusError> {
        let sel = self.sel.clone();
        self.each(
            format!("sum by (database, outcome) (pgdog_mirror_requests_total{sel})"),
            |r, s| match s.label("outcome") {
                "mirrored" => r.counts.mirrored = count(s),
                "error" => r.counts.errors = count(s),
                "dropped" => r.counts.dropped = count(s),
                _ => {}
            },
        )
        .await?;
        self.each(
            format!("sum by (database, category) (pgdog_mirror_errors_total{sel})"),
            |r, s| {
                let e = &mut r.counts.by_category;
                match s.label("category") {
                    "connection" => e.connection = count(s),
                    "query" => e.query = count(s),
                    "timeout" => e.timeout = count(s),
                    "protocol" => e.protocol = count(s),
                    _ => e.other += count(s),
                }
            },
        )
        .await
    }

    /// Comparison, coverage, the latency sum, the first event and the error classes.
    async fn figures(&mut self) -> Result<(), PrometheusError> {
        let sel = self.sel.clone();
        type Set = fn(&mut Raw, &Sample);
        let families: [(&str, Set); 7] = [
            ("pgdog_mirror_pool_exhausted_total", |r, s| {
                r.pool_exhausted = count(s)
            }),
            ("pgdog_mirror_mismatches_total", |r, s| {
                r.counts.mismatched = count(s)
            }),
            ("pgdog_mirror_compared_total", |r, s| {
                r.counts.compared = count(s)
            }),
            ("pgdog_mirror_shared_errors_total", |r, s| {
                r.counts.shared_errors = count(s)
            }),
            ("pgdog_mirror_statement_requests_total", |r, s| {
                r.coverage.get_or_insert_with(Coverage::default).requests = count(s)
            }),
            ("pgdog_mirror_statements_seen_once", |r, s| {
                r.coverage.get_or_insert_with(Coverage::default).seen_once = count(s)
            }),
            ("pgdog_mirror_latency_seconds_sum", |r, s| {
                r.latency_sum_s = s.value
            }),
        ];
        for (family, set) in families {
            self.each(format!("sum by (database) ({family}{sel})"), set)
                .await?;
        }
        self.each(
            format!("min by (database) (pgdog_mirror_first_event_timestamp_seconds{sel})"),
            |r, s| r.first_event_s = Some(s.value),
        )
        .await?;
        self.each(
            format!("sum by (database, class) (pgdog_mirror_error_classes_total{sel})"),
            |r, s| {
                r.classes.insert(s.label("class").to_string(), count(s));
            },
        )
        .await?;
        self.each(
            format!("sum by (database, le) (pgdog_mirror_latency_seconds_bucket{sel})"),
            |r, s| {
                let le = match s.label("le") {
                    "+Inf" => u64::MAX,
                    le => match le.parse::<f64>() {
                        Ok(v) => (v * 1e6).round() as u64,
                        Err(_) => return,
                    },
                };
                r.cumulative.insert(le, s.value);
            },
        )
        .await
    }
}

/// Reads the sums from Prometheus: per database, or only `database`.
pub async fn read(
    prometheus: &Endpoint,
    database: Option<&str>,
    bound_us: u64,
    now_unix_us: u64,
) -> Result<FleetInputs, InputsError> {
    let mut reader = Reader {
        prometheus,
        sel: selector(database, &[]),
        raw: BTreeMap::new(),
    };
    reader.counts().await?;
    reader.figures().await?;
    let mirrored = selector(database, &[("outcome", "mirrored")]);
    let proxies: BTreeMap<String, u64> = prometheus
        .query(&format!(
            "count by (database) (pgdog_mirror_requests_total{mirrored})"
        ))
        .await?
        .iter()
        .map(|s| (s.label("database").to_string(), count(s)))
        .collect();
    let mut raw = reader.raw;
    raw.retain(|name, _| !name.is_empty() && proxies.contains_key(name));
    if raw.is_empty() {
        return Err(InputsError::NoData {
            url: prometheus.shown().to_string(),
            which: database
                .map(|d| format!(" for database {d:?}"))
                .unwrap_or_default(),
        });
    }
    let mut overall = Raw::default();
    for r in raw.values_mut() {
        r.counts.total = r.counts.mirrored + r.counts.errors + r.counts.dropped;
        r.counts.by_category.buffer_full = r.counts.dropped.saturating_sub(r.pool_exhausted);
        let latency_samples = r.cumulative.get(&u64::MAX).copied().unwrap_or(0.0);
        if latency_samples > 0.0 && !r.cumulative.contains_key(&bound_us) {
            return Err(InputsError::NoBoundBucket {
                bound_ms: bound_us / 1000,
                le: format!("{}", bound_us as f64 / 1e6),
            });
        }
        overall.add(r);
    }
    let databases: Vec<DatabaseStats> = raw.iter().map(|(name, r)| r.to_stats(name)).collect();
    Ok(FleetInputs {
        snapshot: StatsSnapshot {
            overall: overall.to_stats(""),
            databases: databases.into(),
            taken_at_unix_us: now_unix_us,
            fingerprints: Default::default(),
            extensions: Default::default(),
        },
        proxies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_become_a_summary_the_policy_can_read() {
        let cumulative: BTreeMap<u64, f64> = [
            (500, 10.0),
            (1_000, 90.0),
            (300_000, 98.0),
            (1_000_000, 99.0),
            (u64::MAX, 100.0),
        ]
        .into_iter()
        .collect();
        let l = latency(&cumulative, 2.0);
        assert_eq!(l.samples, 100);
        assert_eq!(l.avg_ms, 20.0);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms), (1.0, 300.0, 1000.0));
        // The one sample over the last edge: the maximum is that edge, at least.
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(l.samples_at_or_below(300_000), 98);
        assert_eq!(latency(&BTreeMap::new(), 0.0), LatencySummary::default());
    }

    #[test]
    fn selectors_quote_database_names() {
        assert_eq!(selector(None, &[]), "");
        assert_eq!(
            selector(Some("we\"ird"), &[("outcome", "mirrored")]),
            r#"{database="we\"ird",outcome="mirrored"}"#
        );
    }
}
