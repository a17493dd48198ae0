//! Metrics: OpenTelemetry instruments, exported in the Prometheus text format on
//! `[general] metrics_host:metrics_port` and, with `otlp_endpoint` set, pushed by OTLP.
//!
//! ```text
//! GET /metrics ---------> read::view (the proxy) + read::sample (plugins, off the
//! OTLP push, every         runtime, time-limited) --> pipeline::Metrics: the SDK runs the
//!   otlp_interval_ms      instruments' callbacks on that sample --> opentelemetry-
//!                         prometheus + TextEncoder (scrape) | OTLP/HTTP exporter (push)
//! ```
//!
//! Files, in the order of the data (imports run one way, `sample` is the leaf):
//! `read` (the one reader of `Proxy`) -> `sample` (one collection's data) ->
//! `instruments`, `readiness_inputs` and `histogram` (what the SDK and the registry
//! observe) -> `pipeline`
//! (provider, readers, render) -> `http` (server) and `otlp` (push).
//!
//! Who decides which series exist (`docs/plugins.md`, "Who owns which series"): a
//! plugin's families are its metric points, exported as they are (the spec's `mirror`
//! gauge is the bundled plugin's); pgdog's own families export proxy state and the
//! fields of the plugin API's typed statistics and verdicts, one for one. Nothing here
//! re-derives a plugin's series.
//!
//! Nothing here runs on the query path: sessions bump relaxed atomics in
//! [`crate::backend::pool::PoolStats`] and the mirror reports events to the plugin host;
//! everything is read when a collection happens, and costs O(pools + databases),
//! whatever the number of requests served. Figures: `docs/benchmarks.md`.
//!
//! Families: see `docs/metrics.md`.

mod histogram;
pub mod http;
mod instruments;
pub mod otlp;
mod otlp_client;
mod page;
mod pipeline;
pub mod read;
mod readiness_inputs;
mod readiness_json;
mod replication;
pub mod sample;

pub use histogram::BOUNDS_US as LATENCY_BOUNDS_US;
pub use http::serve;
pub use pipeline::{cardinality_limit, Metrics, MetricsError, Options, CONTENT_TYPE};
pub use sample::Sample;

#[cfg(test)]
mod tests;
