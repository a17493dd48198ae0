//! Metrics: OpenTelemetry instruments exported in the Prometheus text format on
//! `[general] metrics_host:metrics_port`.
//!
//! ```text
//! GET /metrics --http--> Metrics::scrape: flush plugin events, take one Scrape
//!     (plugin metric points, stats snapshot, readiness report, pool atomics,
//!     mirror queue depths) --> registry.gather(): the SDK runs the observable
//!     instruments' callbacks, which read that Scrape --> TextEncoder
//! ```
//!
//! Nothing here runs on the query path: sessions bump relaxed atomics in
//! [`crate::backend::pool::PoolStats`] and the mirror reports events to the plugin host;
//! everything is read and aggregated when Prometheus scrapes.
//!
//! One [`SdkMeterProvider`] per [`Metrics`], owned by the metrics server of one proxy
//! (no process-wide global provider, so tests can run several proxies in one process).
//! The exporter is built without target_info, scope labels, unit and counter suffixes,
//! so the spec's `mirror` family comes out byte for byte as the user's scripts expect;
//! the idiomatic families carry their suffixes in their instrument names instead.
//!
//! Families: see `docs/metrics.md`.

mod histogram;
pub mod http;
mod instruments;
mod readiness_json;
mod scrape;

use std::sync::{Arc, Mutex};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::proxy::Proxy;
pub use http::serve;
pub use scrape::Scrape;

/// Content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot build the Prometheus exporter: {0}")]
    Exporter(String),
    #[error("cannot register a collector: {0}")]
    Register(#[from] prometheus::Error),
}

/// The meter provider, its Prometheus registry, and the data of the scrape in progress.
pub struct Metrics {
    provider: SdkMeterProvider,
    registry: Registry,
    /// What the instruments' callbacks read; replaced at the start of every scrape.
    current: Arc<Mutex<Scrape>>,
    /// Observable instruments stay registered as long as their handles live.
    _instruments: instruments::Instruments,
}

impl Metrics {
    /// Builds the provider and registers every instrument. `plugin_families` are the
    /// metric point names the plugins produce (one observable instrument each);
    /// `pools` sizes the per-series cap.
    pub fn new(
        plugin_families: &[(String, String, bool)],
        pools: usize,
    ) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .without_units()
            .without_counter_suffixes()
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let limit = cardinality_limit(pools);
        let provider = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_view(move |_: &Instrument| {
                Stream::builder().with_cardinality_limit(limit).build().ok()
            })
            .build();
        let meter = provider.meter("pgdog");
        let current = Arc::new(Mutex::new(Scrape::default()));
        let instruments = instruments::register(&meter, &current, plugin_families);
        registry.register(Box::new(histogram::LatencyHistogram::new(current.clone())))?;
        Ok(Self {
            provider,
            registry,
            current,
            _instruments: instruments,
        })
    }

    /// Sets up metrics for `proxy`: the plugin families are discovered from one call
    /// to the plugins' `metric_points` (a family a plugin only starts producing later
    /// is not exported; plugins are expected to emit their families from the start).
    pub fn for_proxy(proxy: &Proxy) -> Result<Self, MetricsError> {
        let mut families: Vec<(String, String, bool)> = Vec::new();
        for p in proxy.plugins.metric_points() {
            if !families.iter().any(|(name, _, _)| name == p.name.as_str()) {
                let counter = p.kind == crate::plugins::MetricKind::COUNTER;
                families.push((p.name.to_string(), p.help.to_string(), counter));
            }
        }
        let pools = proxy.config().pools.len();
        Self::new(&families, pools)
    }

    /// Renders the exposition from `scrape`. Blocking (plugin-free, but the SDK
    /// aggregates every series): call it off the async workers.
    pub fn render(&self, scrape: Scrape) -> Vec<u8> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = scrape;
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(64 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("metrics: cannot encode the exposition: {e}");
        }
        out
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Series per metric: the SDK's default of 2,000 merges the rest into an overflow
/// series. The widest family is the per-database one with the most label values
/// (spec `mirror`: 10 + 4 per database; errors: 5 categories per database), so allow
/// 16 per pool, and never less than the default.
pub fn cardinality_limit(pools: usize) -> usize {
    (16 * pools + 100).max(2000)
}

#[cfg(test)]
mod tests;
