//! The OpenTelemetry pipeline: one [`SdkMeterProvider`] per proxy (no process-wide
//! global, so tests run several proxies in one process), with the instruments and up to
//! two readers: the `opentelemetry-prometheus` exporter behind `GET /metrics`, and, when
//! `otlp_endpoint` is set, a manual reader whose collections the OTLP push sends.
//!
//! A collection is: store the [`Sample`] read for it, then let the reader collect (the
//! SDK runs the instruments' callbacks, which observe that sample). Collections are
//! serialised, so a scrape and a push never observe each other's sample.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::Resource;
use prometheus::{Encoder, Registry, TextEncoder};

use super::histogram::LatencyHistogram;
use super::instruments::{self, Instruments};
use super::sample::{lock, Current, Sample};
use crate::plugins::MetricKind;

/// Content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot build the Prometheus exporter: {0}")]
    Exporter(String),
    #[error("cannot register a collector: {0}")]
    Register(#[from] prometheus::Error),
}

/// How to build a [`Metrics`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The plugins' families `(name, help, kind)`, one instrument each.
    pub plugin_families: Vec<(String, String, MetricKind)>,
    /// Configured pools: sizes the series cap of each instrument.
    pub pools: usize,
    /// Add the reader the OTLP push collects with.
    pub otlp: bool,
}

/// The meter provider, its readers and the sample of the collection in progress.
pub struct Metrics {
    provider: SdkMeterProvider,
    registry: Registry,
    otlp: Option<SharedReader>,
    current: Current,
    /// One collection at a time.
    collecting: Mutex<()>,
    /// Observable instruments stay registered as long as their handles live.
    _instruments: Instruments,
}

impl Metrics {
    pub fn new(options: &Options) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        // Without target_info, scope labels, unit and `_total` suffixes the spec's `mirror`
        // family comes out exactly as the user's scripts expect; the `pgdog_*` families
        // carry their suffixes in their instrument names instead.
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .without_units()
            .without_counter_suffixes()
            .build()
            .map_err(|e| MetricsError::Exporter(e.to_string()))?;
        let limit = cardinality_limit(options.pools);
        let resource = Resource::builder().with_service_name("pgdog").build();
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(exporter)
            .with_view(move |_: &Instrument| {
                Stream::builder().with_cardinality_limit(limit).build().ok()
            });
        let otlp = options.otlp.then(|| {
            SharedReader(Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Cumulative)
                    .build(),
            ))
        });
        if let Some(reader) = &otlp {
            builder = builder.with_reader(reader.clone());
        }
        let provider = builder.build();
        let meter = provider.meter("pgdog");
        let current = Arc::new(Mutex::new(Sample::default()));
        let instruments = instruments::register(&meter, &current, &options.plugin_families);
        registry.register(Box::new(LatencyHistogram::new(current.clone())))?;
        Ok(Self {
            provider,
            registry,
            otlp,
            current,
            collecting: Mutex::new(()),
            _instruments: instruments,
        })
    }

    /// The Prometheus exposition of `sample`. Blocking (the SDK aggregates every series):
    /// call it off the async workers. Returns the sample of the previous collection, for
    /// the caller to free when convenient.
    pub fn render(&self, sample: Sample) -> (Vec<u8>, Sample) {
        let _one = self
            .collecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::replace(&mut *lock(&self.current), sample);
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(64 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("metrics: cannot encode the exposition: {e}");
        }
        (out, previous)
    }

    /// [`Metrics::render`]'s two steps, timed in CPU time of this thread (ms):
    /// `Registry::gather` (the SDK's collection, the exporter's conversion, the latency
    /// histogram) and the text encoding. For the benchmark.
    #[doc(hidden)]
    pub fn render_steps(&self, sample: Sample) -> (f64, f64) {
        let _one = self
            .collecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *lock(&self.current) = sample;
        let start = thread_cpu_ms();
        let families = self.registry.gather();
        let gathered = thread_cpu_ms();
        let mut out = Vec::with_capacity(64 * 1024);
        let _ = TextEncoder::new().encode(&families, &mut out);
        let encoded = thread_cpu_ms();
        (gathered - start, encoded - gathered)
    }

    /// A collection of `sample` for the OTLP push (`None` without the OTLP reader).
    /// Blocking, like [`Metrics::render`].
    pub fn collect_otlp(&self, sample: Sample) -> Option<(ResourceMetrics, Sample)> {
        let reader = self.otlp.as_ref()?;
        let _one = self
            .collecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::replace(&mut *lock(&self.current), sample);
        let mut rm = ResourceMetrics::default();
        if let Err(e) = reader.collect(&mut rm) {
            tracing::warn!("metrics: OTLP collection failed: {e}");
            return None;
        }
        Some((rm, previous))
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Series per instrument: the SDK's default of 2,000 merges the rest into an overflow
/// series. The widest family is a per-database one with the most label values (the
/// spec's `mirror`: 10 + 4 per database; errors: 5 categories per database): 16 per
/// pool, doubled for pools added by `RELOAD`, and never below the default.
pub fn cardinality_limit(pools: usize) -> usize {
    32 * pools + 2000
}

/// CPU time of the calling thread so far, ms.
fn thread_cpu_ms() -> f64 {
    // SAFETY: clock_gettime only writes the struct it is given.
    let t = unsafe {
        let mut t = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t
    };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// A [`ManualReader`] the provider and the OTLP push share.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
